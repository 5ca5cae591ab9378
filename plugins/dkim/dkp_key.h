/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_key: load a private signing key from a file and check it before any
 * message needs it: a regular file, not accessible to group or others,
 * a PEM private key of the type the signing table line names, and an RSA
 * key of at least 1024 bits (RFC 8301).
 */
#ifndef DKP_KEY_H
#define DKP_KEY_H

#include <stddef.h>

#include "dkp_table.h"

/* On success returns 0 with *pem the file's text (malloc'd, NUL-terminated;
 * what libopendkim takes) and *bits the key size. On failure -1 and a
 * message (without the path) in err. */
int dkp_key_load(const char *path, enum dkp_alg alg, char **pem, unsigned *bits, char *err,
                 size_t errlen);

#endif
