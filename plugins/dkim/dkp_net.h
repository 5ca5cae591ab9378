/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_net: a list of CIDR networks ("127.0.0.0/8, 10.0.0.0/8, ::1/128")
 * and membership of a textual client address. Used by the signer to decide
 * which clients are internal. Pure: no I/O.
 */
#ifndef DKP_NET_H
#define DKP_NET_H

#include <stddef.h>

struct dkp_cidr {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char addr[16];  /* network address, host bits cleared */
    unsigned prefix;         /* 0..32 or 0..128 */
};

struct dkp_netlist {
    struct dkp_cidr *v; /* owned */
    size_t n;
};

/* Parse a comma- and/or space-separated list; a bare address means a host
 * (/32 or /128). Returns 0, or -1 with a message naming the bad item. */
int dkp_net_parse(const char *list, struct dkp_netlist *out, char *err, size_t errlen);
void dkp_net_free(struct dkp_netlist *l);

/* 1 if `addr` ("192.0.2.1", "::1", "::ffff:10.1.2.3") is in the list, 0
 * otherwise (also for unparsable text). IPv4-mapped IPv6 addresses match
 * IPv4 networks. */
int dkp_net_match(const struct dkp_netlist *l, const char *addr);

#endif
