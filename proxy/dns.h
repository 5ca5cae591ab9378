/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dns: sluice's one asynchronous DNS resolver, on c-ares, driven by the
 * libuv loop (a uv_poll per c-ares socket, one uv_timer per channel for
 * c-ares' retransmissions and for the callers' deadlines). Nothing blocks
 * and no thread is involved: the client's reverse lookup before the
 * greeting and the plugins' queries (api.c, e.g. DKIM keys) all go here.
 *
 * Bounds, so that a zone that never answers cannot pile work up:
 *   - every request has a deadline (dns_timeout unless the caller gives
 *     one): when it passes, the caller gets DNS_TIMEOUT at once, whatever
 *     c-ares is still doing;
 *   - at most max_inflight queries are on the network per channel, at most
 *     max_queued more wait; past that a request gets DNS_TEMPFAIL at once
 *     (counted as "dropped");
 *   - a cancelled request that still waits is skipped (never sent); one on
 *     the network runs out on its own (its answer still fills the cache);
 *   - answers (and NXDOMAIN/NODATA, for 60 s at most) are cached, bounded
 *     by TTL and by size (dns_cache.h).
 *
 * A channel is one server list: the [server] dns_servers one (or
 * /etc/resolv.conf), plus up to DNS_MAX_CHANNELS - 1 more that plugins
 * name (created on first use, each with its own cache and bounds).
 *
 * Callbacks: delivered from the loop through defer.c, never inside the
 * caller's stack (not even for a cache hit or an overflow); exactly once
 * per request unless it was cancelled first, then never. If a call that
 * takes a callback returns NULL, the callback is never called.
 *
 * Pure parts (server lists, PTR names, answer TTLs): dns_parse.h.
 *
 * Metrics: every request is counted in stats (stats_dns()): query (sent to
 * the network), cache_hit, timeout, dropped, failure, cancelled.
 *
 * Threads: loop thread only.
 */
#ifndef SLUICE_DNS_H
#define SLUICE_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dns_cache.h"
#include "dns_parse.h"

/* Outcomes; the same numbers as the SDK's SLUICE_DNS_* (plugin.h). */
enum dns_status {
    DNS_OK = 0,       /* n >= 1 records */
    DNS_NOTFOUND = 1, /* NXDOMAIN */
    DNS_NODATA = 2,   /* the name exists, no record of that type */
    DNS_TEMPFAIL = 3, /* SERVFAIL, REFUSED, network trouble, queue full */
    DNS_TIMEOUT = 4,  /* no answer before the deadline */
    DNS_BADREPLY = 5, /* an answer that could not be parsed */
};

/* Record types (the DNS numbers). */
enum dns_type { DNS_T_A = 1, DNS_T_PTR = 12, DNS_T_MX = 15, DNS_T_TXT = 16, DNS_T_AAAA = 28 };

#define DNS_MAX_CHANNELS 8

struct dns_conf {
    const char *servers;   /* "127.0.0.1:5353, [::1]:53"; NULL: /etc/resolv.conf */
    unsigned timeout_ms;   /* default deadline of a request (and c-ares' budget) */
    unsigned max_inflight; /* per channel, >= 1 */
    unsigned max_queued;   /* per channel */
    size_t cache_size;     /* entries per channel; 0: no cache */
};

/* Start (once, on the loop thread). 0, or -1 with a message. */
struct uv_loop_s; /* uv_loop_t */
int dns_init(struct uv_loop_s *loop, const struct dns_conf *conf, char *err, size_t errlen);
/* True on the thread that called dns_init() (the loop's); false before. */
bool dns_on_loop_thread(void);
/* Stop: every request still open is dropped without its callback; the
 * handles close with the loop's next run. */
void dns_shutdown(void);

struct dns_req;
/* ans: never NULL, owned by the module, valid during the call only. For
 * PTR the records are names, for A/AAAA addresses as text, for TXT each
 * record's strings joined. */
typedef void (*dns_cb)(void *ud, const struct dns_cache_val *ans);

/* Look (type, name) up. servers: NULL for the default channel, else a
 * list as for dns_servers; timeout_ms 0 for the default. NULL (and no
 * callback) when the module is not started, the name or list is unusable
 * or no channel can be had. */
struct dns_req *dns_query(int type, const char *name, const char *servers, unsigned timeout_ms,
                          dns_cb cb, void *ud);
/* No callback after this; r is freed. */
void dns_cancel(struct dns_req *r);

/* The client's name: PTR, then forward confirmation (the name must have an
 * A/AAAA record equal to the address), both within timeout_ms together.
 * name: the confirmed name, or NULL (none, not confirmed, timeout). */
struct dns_name_req;
typedef void (*dns_name_cb)(void *ud, const char *name);
struct dns_name_req *dns_client_name(const struct sockaddr *sa, unsigned timeout_ms, dns_name_cb cb,
                                     void *ud);
void dns_name_cancel(struct dns_name_req *r);

#endif
