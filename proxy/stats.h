/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats: the daemon's metrics registry. The SMTP loop reports events through
 * the functions below; each is a handful of relaxed atomic increments on
 * pre-resolved counters (no locks, no allocation, no label lookups in the
 * hot path). The event calls are safe from any thread (loop, pool threads).
 * The HTTP side (stats_http.c) reads the registry from its own thread and
 * renders it with stats_prom.c (/metrics) and stats_json.c (/stats).
 * Plugins register their own counters through the plugin host, which calls
 * stats_plugin_counter().
 *
 * Ownership: stats owns every record it hands out (struct stats_plugin,
 * struct stats_counter); they live until the process ends. Out of memory is
 * fatal (xalloc.h), so no call here fails for lack of memory.
 *
 * The words used as label values for phases and verdicts come from names.h.
 */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum stats_verdict {
    STATS_V_ACCEPTED = 0,
    STATS_V_REJECTED,
    STATS_V_TEMPFAILED,
    STATS_V_DISCARDED,
    STATS_V_QUARANTINED,
    STATS_V_ABORTED, /* client vanished / no final reply */
    STATS_V_COUNT
};

enum stats_timeout {
    STATS_TO_COMMAND = 0, STATS_TO_DATA, STATS_TO_UPSTREAM, STATS_TO_PLUGIN, STATS_TO_COUNT
};

enum stats_up_error {
    STATS_UPERR_CONNECT = 0, STATS_UPERR_PROTOCOL, STATS_UPERR_TIMEOUT, STATS_UPERR_LOST,
    STATS_UPERR_TLS, STATS_UPERR_COUNT
};

/* What became of one DNS request (dns.c). */
enum stats_dns_event {
    STATS_DNS_QUERY = 0, /* sent to the network */
    STATS_DNS_CACHE_HIT, /* answered from the cache */
    STATS_DNS_TIMEOUT,   /* the caller's deadline passed (or c-ares gave up) */
    STATS_DNS_DROPPED,   /* refused: the wait queue was full */
    STATS_DNS_FAILURE,   /* SERVFAIL, REFUSED, unusable answer, network error */
    STATS_DNS_CANCELLED, /* the caller went away first (a queued one is never sent) */
    STATS_DNS_JOINED,    /* shared the answer of the same query already on the network */
    STATS_DNS_COUNT
};

/* What the upstream session pool did (upslot.c). */
enum stats_upslot_event {
    STATS_UPSLOT_WAIT = 0,     /* a client waited for a slot */
    STATS_UPSLOT_EXPIRED,      /* ... and was told 451 4.4.5 */
    STATS_UPSLOT_RECLAIM_IDLE, /* taken from a client outside a transaction */
    STATS_UPSLOT_RECLAIM_TX,   /* taken from a client idle inside one (421 4.4.2) */
    STATS_UPSLOT_COUNT
};

/* What the daemon did to the quarantine (quar.c, the expiry sweep). */
enum stats_quar_event {
    STATS_QUAR_HELD = 0,    /* a message held (file and index row written) */
    STATS_QUAR_EXPIRED,     /* expired by the sweep (max_age, max_size) */
    STATS_QUAR_INDEX_ERROR, /* file kept but its index row not written */
    STATS_QUAR_SWEEP_ERROR, /* the sweep or the gauges' query failed */
    STATS_QUAR_EVENT_COUNT
};
#define STATS_QUAR_STATUS_COUNT 5 /* qstore_status: held releasing released deleted expired */

/* Upstream connections: opened anew, or reused from the idle pool, and
 * why idle ones were closed (uppool.c). */
enum stats_upconn {
    STATS_UPCONN_OPENED = 0, /* a new connection for a session */
    STATS_UPCONN_REUSED,     /* an idle one taken from the pool */
    STATS_UPCONN_EXPIRED,    /* idle too long or too old: closed by us */
    STATS_UPCONN_ENDED,      /* idle and ended by the MTA */
    STATS_UPCONN_NOT_KEPT,   /* closed at a session's end: not reusable (XCLIENT, errors,
                              * a message under way), pool full, RSET refused, reload */
    STATS_UPCONN_COUNT
};

/* What became of one SMTP AUTH exchange (sess_auth.c). */
enum stats_auth {
    STATS_AUTH_SUCCESS = 0, /* 235 */
    STATS_AUTH_FAILURE,     /* 535: credentials refused */
    STATS_AUTH_TEMPFAIL,    /* 454: Dovecot unreachable, timed out or temp_fail */
    STATS_AUTH_ABORTED,     /* cancelled by the client, or malformed (5xx, Dovecot not asked) */
    STATS_AUTH_BLOCKED,     /* 454: the address failed too often (auth_max_failures_per_ip) */
    STATS_AUTH_COUNT
};

int stats_init(void);             /* once, before anything else */
void stats_set_build_info(const char *version);

void stats_conn_open(void);       /* current++, total++ */
void stats_conn_close(void);      /* current-- */
void stats_conn_refused(void);    /* by limit (total or per IP) */
void stats_tls_handshake(bool ok);
/* PROXY protocol headers on listeners that take them (server.c, sess.c) */
enum stats_proxy {
    STATS_PROXY_OK,
    STATS_PROXY_MALFORMED,
    STATS_PROXY_UNTRUSTED,
    STATS_PROXY_COUNT
};
void stats_proxy_header(enum stats_proxy r);
const char *stats_proxy_name(int r);
void stats_smtp_reply(int code);  /* every reply sluice sends to a client */
void stats_upstream_reply(int code);
void stats_upstream_error(enum stats_up_error e);
void stats_timeout(enum stats_timeout t);
void stats_error(void);           /* internal errors (spool, memory) */
void stats_dns(enum stats_dns_event e);
void stats_upslot(enum stats_upslot_event e);
void stats_upslots(unsigned held, unsigned waiting); /* gauges */
void stats_auth(enum stats_auth a);
void stats_upconn(enum stats_upconn e);
void stats_upconn_idle(unsigned idle); /* gauge */
/* The shared state store (state.c, loop thread): keys and bytes held now;
 * operations, failed ones, keys evicted by the bounds and expired, so far. */
void stats_state(uint64_t keys, uint64_t bytes, uint64_t ops, uint64_t errors, uint64_t evicted,
                 uint64_t expired);
/* The Redis backend's connection (state_redis.c, loop thread): up now or
 * not, and how often it came back after being lost. Not called with the
 * in-process backend: then neither is exported. */
void stats_state_redis(bool up, uint64_t reconnects);
/* Quarantine: an event (any thread) with the bytes it concerned; and the
 * index's rows and bytes per status (the sweep, every run; the CLI and the
 * console change rows in other processes, so these are read, not counted). */
void stats_quarantine_event(enum stats_quar_event e, uint64_t n, uint64_t bytes);
void stats_quarantine_index(const uint64_t n[STATS_QUAR_STATUS_COUNT],
                            const uint64_t bytes[STATS_QUAR_STATUS_COUNT]);

/* One call per transaction that reached a final answer (or was aborted). */
void stats_transaction(enum stats_verdict v, unsigned rcpts, uint64_t bytes_in,
                       uint64_t bytes_out, double seconds);

void stats_config_reload(bool ok);
/* Set by the server for /readyz. */
void stats_set_listening(bool on);
void stats_set_upstream_ok(bool ok);
void stats_set_chain_loaded(bool ok);

/*
 * ---- Readiness (read by stats_http for /readyz) --------------------------
 * True when listening, the upstream is reachable and the chain is loaded.
 * Otherwise false, and `why` (if not NULL) names the first missing piece.
 */
bool stats_ready(char *why, size_t whylen);

/*
 * ---- Per-plugin records (called by the plugin host) ----------------------
 * One record per chain *instance name*. stats_plugin_get() is idempotent:
 * the same name returns the same record, so a reload that keeps an instance
 * keeps its counters (counters never go backwards). Records are never freed
 * while the process runs (removed instances simply stop moving). It takes a
 * lock and may allocate: call it at load/reload time, keep the pointer.
 * Returns NULL when STATS_PLUGINS_MAX records exist;
 * every stats_plugin_* function below accepts NULL and then does nothing,
 * so the host needs no special case. All of them are lock-free (relaxed
 * atomics) and safe from any thread, pool threads included.
 * The name is copied; bytes outside printable ASCII become '_' and it is
 * cut at STATS_NAME_MAX - 1 bytes.
 */
#define STATS_PLUGINS_MAX 64
#define STATS_NAME_MAX 64

/* A plugin's answer to one hook (same order as the SDK's verdict set). */
enum stats_pverdict {
    STATS_PV_CONTINUE = 0,
    STATS_PV_ACCEPT,
    STATS_PV_REJECT,
    STATS_PV_TEMPFAIL,
    STATS_PV_DISCARD,
    STATS_PV_QUARANTINE,
    STATS_PV_DISCONNECT,
    STATS_PV_COUNT
};

/* The SMTP phase a hook ran in (label `phase`). */
enum stats_phase {
    STATS_PH_CONNECT = 0,
    STATS_PH_HELO,
    STATS_PH_MAIL,
    STATS_PH_RCPT,
    STATS_PH_DATA,
    STATS_PH_RESET,
    STATS_PH_CLOSE,
    STATS_PH_COUNT
};

/* Circuit-breaker state; exported as the gauge's value (0, 1, 2). */
enum stats_breaker {
    STATS_CB_CLOSED = 0,    /* plugin is called normally */
    STATS_CB_OPEN = 1,      /* tripped: policy applied without calling it */
    STATS_CB_HALF_OPEN = 2, /* cool-down over: next call is a trial */
};

struct stats_plugin;

struct stats_plugin *stats_plugin_get(const char *instance_name);
void stats_plugin_verdict(struct stats_plugin *p, enum stats_pverdict v);
/* Wall time one hook took (seconds), whatever its verdict. */
void stats_plugin_latency(struct stats_plugin *p, enum stats_phase ph, double seconds);
void stats_plugin_timeout(struct stats_plugin *p);
void stats_plugin_error(struct stats_plugin *p);
/* Set the breaker state; a change to STATS_CB_OPEN also counts one trip. */
void stats_plugin_breaker(struct stats_plugin *p, enum stats_breaker st);
/* Pool threads the instance's blocking hooks hold now (abandoned ones
 * included), and one more call that had to wait for one of them. */
void stats_plugin_threads(struct stats_plugin *p, unsigned busy);
void stats_plugin_thread_wait(struct stats_plugin *p);

/*
 * ---- Plugin-defined counters ---------------------------------------------
 * stats_counter_new() registers (or, with the same sanitised name, returns
 * the existing) counter `sluice_<name>_total` with an optional single label.
 * Name sanitising: lower-cased, every byte outside [a-z0-9_] becomes '_',
 * a leading "sluice_" and a trailing "_total" are added when missing.
 * label_name follows the same rule (no prefix/suffix) and must not be
 * empty, start with "__" or be "le"/"quantile"; NULL means no label.
 * At most max_label_values distinct values are kept (clamped to
 * 1..STATS_LABEL_VALUES_MAX); later new values are counted under the value
 * "other", so a plugin cannot blow up the scrape (spam rule names, virus
 * names). Returns NULL on a name taken by a core metric, a label mismatch
 * with an existing counter of that name, a bad label name, or more than
 * STATS_COUNTERS_MAX counters. Takes a lock: call at init.
 *
 * stats_counter_add() is safe from any thread. Known label values are found
 * without a lock; only the first sighting of a new value takes the
 * counter's mutex. label_value is ignored for an unlabelled counter; NULL or
 * "" on a labelled one counts under "none". Values are copied, bytes outside
 * printable ASCII become '_', and they are cut at STATS_LABEL_VALUE_MAX - 1.
 * c == NULL does nothing.
 */
#define STATS_COUNTERS_MAX 128
#define STATS_LABEL_VALUES_MAX 1000
#define STATS_LABEL_VALUE_MAX 96

struct stats_counter;

struct stats_counter *stats_counter_new(const char *name, const char *help,
                                        const char *label_name, unsigned max_label_values);
void stats_counter_add(struct stats_counter *c, const char *label_value, uint64_t n);
/*
 * The same, for a counter owned by one plugin *instance*: the family is
 * `sluice_<name>_total` and every series carries `plugin="<instance_name>"`
 * before its own label, so two instances of one plugin (or two plugins
 * counting the same thing) share one family and queries can sum or split by
 * plugin. The registry key is (name, instance): the same pair returns the
 * same counter (reloads), another instance gets its own series. All
 * instances of a family must use the same label_name, and label_name must
 * not be "plugin". The plugin host should prefer this over prefixing the
 * instance name into `name`.
 */
struct stats_counter *stats_counter_new_plugin(const char *instance_name, const char *name,
                                               const char *help, const char *label_name,
                                               unsigned max_label_values);
/* The same as stats_counter_new(): the name the plugin host was told about. */
struct stats_counter *stats_plugin_counter(const char *name, const char *help,
                                           const char *label_name, unsigned max_label_values);
/* Current value of one series (tests, the host's own logging); 0 if unknown. */
uint64_t stats_counter_get(const struct stats_counter *c, const char *label_value);

/*
 * ---- Decision records -----------------------------------------------------
 * One JSON object per finished transaction (built by the plugin host: sid,
 * time, client, from, rcpts, verdict, deciding plugin, reason, scores and
 * symbols, per-plugin time). The text is validated as one JSON object and
 * copied; the last STATS_DECISIONS_MAX are kept and /stats returns them,
 * newest first. 0, -EINVAL (not a JSON object, see json_is_object()) or
 * -E2BIG (longer than STATS_DECISION_MAX_LEN). Any thread; takes a mutex.
 */
#define STATS_DECISIONS_MAX 100
#define STATS_DECISION_MAX_LEN 16384

int stats_decision_push(const char *json_object);
/* The same for a record the caller built itself with correct escaping (the
 * plugin host, once per transaction): no validation, no copy. Takes
 * ownership of the malloc'd json_object (freed on error too). */
int stats_decision_push_owned(char *json_object, size_t len);

/*
 * ---- Rendering (kept for existing callers) ---------------------------------
 * Append the whole state to `out`: Prometheus text format 0.0.4, or the
 * /stats JSON document. `now` is the Unix time (seconds) used for uptime.
 * The same as stats_prom_render() and stats_json_render(), which new code
 * calls; always 0. Safe from any thread, concurrently with the event calls.
 */
/* Unix time now, as stats uses it (CLOCK_REALTIME). */
double stats_now(void);

/*
 * Tests only: zero every counter, drop plugin records, plugin counters and
 * decisions, and set the start time. Not thread-safe: nothing else may use
 * stats meanwhile (pointers from stats_plugin_get/stats_counter_new die).
 */
void stats_reset(double start_time);

#endif
