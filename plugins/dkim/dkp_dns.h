/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_dns: a small blocking DNS TXT client for DKIM key records, meant to
 * run on a thread-pool thread. Its own UDP client (with EDNS0, TCP retry on
 * truncation) instead of res_nquery so that the timeout is exact to the
 * millisecond and the server list can be given in the config (tests point
 * it at a loopback port). Query building and answer parsing are pure
 * functions, unit-tested without a network.
 */
#ifndef DKP_DNS_H
#define DKP_DNS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dkp_cache.h"

#define DKP_DNS_MAX_SERVERS 3

struct dkp_dns_conf {
    struct sockaddr_storage server[DKP_DNS_MAX_SERVERS];
    socklen_t server_len[DKP_DNS_MAX_SERVERS];
    size_t nservers;
    unsigned timeout_ms; /* for the whole lookup, all servers together */
};

/* Parse "127.0.0.1:5353, [::1]:53, 192.0.2.1" (port 53 by default) into
 * conf's server list. 0, or -1 with a message. */
int dkp_dns_parse_servers(const char *list, struct dkp_dns_conf *conf, char *err, size_t errlen);

/* The "nameserver" lines of resolv.conf text into conf's server list
 * (at most DKP_DNS_MAX_SERVERS); 0, or -1 when there is none. */
int dkp_dns_parse_resolv(const char *text, size_t len, struct dkp_dns_conf *conf);

/* Build a TXT query for `name` with message id `id` and an EDNS0 OPT
 * record. Returns its length or -1 (name invalid or buffer too small). */
int dkp_dns_build_query(const char *name, uint16_t id, unsigned char *buf, size_t buflen);

/* Interpret an answer to query `id`: the character-strings of the first TXT
 * record concatenated into out, *ttl its TTL. Returns DKP_KEY_FOUND,
 * DKP_KEY_NONE (NXDOMAIN, no TXT), DKP_KEY_TEMPFAIL (SERVFAIL, REFUSED ...)
 * or DKP_KEY_BADREPLY (unparsable, wrong id, record longer than out).
 * *truncated is set when the TC bit is on. */
enum dkp_keystat dkp_dns_parse_answer(const unsigned char *msg, size_t len, uint16_t id,
                                      char *out, size_t outlen, uint32_t *ttl, int *truncated);

/* Look `name` up. DKP_KEY_TEMPFAIL when no server answered within the
 * timeout. */
enum dkp_keystat dkp_dns_lookup_txt(const struct dkp_dns_conf *conf, const char *name, char *out,
                                    size_t outlen, uint32_t *ttl);

#endif
