/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_keyfile: the test-mode key source. A file of lines
 *
 *     selector._domainkey.domain  v=DKIM1; k=rsa; p=MIIB...
 *
 * (name, white space, the TXT record text; the text may also be written as
 * zone-file style quoted chunks "..." "..." which are concatenated). '#'
 * at the start of a line is a comment. Loaded whole at init; lookups are
 * read-only afterwards, so threads share it without a lock.
 */
#ifndef DKP_KEYFILE_H
#define DKP_KEYFILE_H

#include <stddef.h>

struct dkp_keyfile_rec {
    char *name;   /* owned, lower case, no trailing dot */
    char *record; /* owned */
};

struct dkp_keyfile {
    struct dkp_keyfile_rec *v; /* owned */
    size_t n;
};

/* 0, or -1 with *err_line and a message. */
int dkp_keyfile_parse(const char *text, size_t len, struct dkp_keyfile *out, unsigned *err_line,
                      char *err, size_t errlen);
void dkp_keyfile_free(struct dkp_keyfile *kf);
/* The record for `name` (case-insensitive, trailing dot ignored) or NULL. */
const char *dkp_keyfile_find(const struct dkp_keyfile *kf, const char *name);

#endif
