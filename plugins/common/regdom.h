/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * regdom: registrable (organizational) domains through the Public Suffix
 * List, for the bundled plugins: the domain a URI block list is asked
 * about (dnsbl) and the organizational domain of DMARC (mailauth). Lists such as
 * Spamhaus DBL, SURBL and URIBL hold registrable domains ("example.co.uk",
 * not "www.example.co.uk" and not "co.uk"), so a link's host is cut down
 * with the Public Suffix List, through libpsl (Debian's, which reads the
 * list of the publicsuffix package and falls back to its built-in copy).
 *
 * Thread-safe after regdom_init(): the list is read-only.
 */
#ifndef SLUICE_REGDOM_H
#define SLUICE_REGDOM_H

#include <stddef.h>

/* Load the list once per process; 0, or -1 when libpsl has none. */
int regdom_init(void);

/* The registrable domain of host (any case, trailing dot allowed) into
 * out, lower case: 0, or -1 for an IP address, a public suffix itself, a
 * name that is not a host name, or when it does not fit. */
int regdom_registrable(const char *host, char *out, size_t outsz);

#endif
