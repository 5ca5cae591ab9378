/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cidr: IP networks written as text ("10.0.0.0/8", "2001:db8::/32", a bare
 * address for one host) and whether a client address, as the host gives
 * it ("192.0.2.1", "::1", "::ffff:10.1.2.3"), is in one of them. IPv4-mapped
 * IPv6 addresses match IPv4 networks. The one matcher of the bundled
 * plugins (dkim's internal_networks, rewrite's `client` conditions and
 * strip-received).
 *
 * Pure: no I/O, no globals, any thread. A cidr_list owns its array.
 */
#ifndef SLUICE_CIDR_H
#define SLUICE_CIDR_H

#include <stddef.h>

struct cidr {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network address, host bits cleared */
    unsigned prefix;        /* 0..32 or 0..128 */
};

struct cidr_list {
    struct cidr *v; /* owned */
    size_t n;
};

/* cidr_parse() flags */
#define CIDR_HOST_BITS_OK                                                                          \
    1u /* "10.1.2.3/8" means 10.0.0.0/8; without it a                                              \
          network with host bits set is refused (a                                                 \
          typo in the prefix length, usually) */

/* Parse one network. 0, or -1 with the reason in err (the text quoted). */
int cidr_parse(const char *text, unsigned flags, struct cidr *out, char *err, size_t errlen);

/* Parse a list separated by commas and/or blanks into *out (emptied first).
 * 0, or -1 with the first bad item's reason in err (*out then empty). */
int cidr_list_parse(const char *list, unsigned flags, struct cidr_list *out, char *err,
                    size_t errlen);
void cidr_list_free(struct cidr_list *l);

/* 1 when addr (text) is in one of v[0..n), 0 otherwise (also for text that
 * is not an address). */
int cidr_match(const struct cidr *v, size_t n, const char *addr);

#endif
