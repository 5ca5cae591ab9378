/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dns_parse: the resolver's pure parts, apart from its I/O (dns.c): the
 * server-list grammar of dns_servers (also checked by the config loader),
 * the reverse-lookup name of an address, and the TTL of an answer. No
 * libuv, no c-ares, no allocation; unit-tested (tests/unit/test_dns.c).
 */
#ifndef SLUICE_DNS_PARSE_H
#define SLUICE_DNS_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DNS_SERVERS_MAX 512 /* longest server list, as text */

/* "127.0.0.1:5353, [::1]:53, 192.0.2.1" (commas and/or blanks; port 53 by
 * default) into c-ares' "127.0.0.1:5353,[::1]:53,192.0.2.1:53". 0, or -1
 * with a message naming the bad entry. */
int dns_parse_servers(const char *list, char *csv, size_t csvlen, char *err, size_t errlen);
/* "4.3.2.1.in-addr.arpa" / nibble ".ip6.arpa" name of an address. 0 or -1. */
int dns_parse_ptr_name(const struct sockaddr *sa, char *out, size_t outlen);
/* Smallest TTL of the answer section of a DNS message; 0 when there is no
 * answer record or the message is malformed. */
uint32_t dns_parse_answer_ttl(const unsigned char *msg, size_t len);

#endif
