/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dnsbl_domain: the domain a URI block list is asked about. Lists such as
 * Spamhaus DBL, SURBL and URIBL hold registrable domains ("example.co.uk",
 * not "www.example.co.uk" and not "co.uk"), so a link's host is cut down
 * with the Public Suffix List, through libpsl (Debian's, which reads the
 * list of the publicsuffix package and falls back to its built-in copy).
 *
 * Thread-safe after dnsbl_domain_init(): the list is read-only.
 */
#ifndef DNSBL_DOMAIN_H
#define DNSBL_DOMAIN_H

#include <stddef.h>

/* Load the list once per process; 0, or -1 when libpsl has none. */
int dnsbl_domain_init(void);

/* The registrable domain of host (any case, trailing dot allowed) into
 * out, lower case: 0, or -1 for an IP address, a public suffix itself, a
 * name that is not a host name, or when it does not fit. */
int dnsbl_domain_registrable(const char *host, char *out, size_t outsz);

#endif
