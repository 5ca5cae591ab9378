/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats_priv: the registry's layout, shared by stats.c (which owns and
 * writes it) and the renderers stats_prom.c and stats_json.c (which only
 * read it). Nothing outside those three files includes this header.
 *
 * Reading rules (see stats.c for why they hold):
 *   - every figure is a C11 atomic: load it relaxed (stats__ld());
 *   - the arrays from stats__plugins() and stats__counters() are
 *     append-only: entries [0, n) are complete and never move or go away
 *     (stats_reset() aside, which is for tests and runs alone);
 *   - a counter's values [0, nvalues) likewise (load nvalues with acquire);
 *   - decision records are read only inside stats__decisions_each(), which
 *     holds the ring's lock.
 * Readers run on the HTTP thread (or a test), concurrently with writers on
 * the SMTP loop and pool threads.
 */
#ifndef SLUICE_STATS_PRIV_H
#define SLUICE_STATS_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stats.h"
#include "stats_hist.h"

/* SMTP reply classes 2xx..5xx (label `class`). */
enum { STATS__RC_2XX = 0, STATS__RC_3XX, STATS__RC_4XX, STATS__RC_5XX, STATS__RC_COUNT };

/* The daemon-wide figures. [0] failure / [1] success where a pair. */
struct stats__core {
    _Atomic int64_t conn_current;
    _Atomic uint64_t conn_total;
    _Atomic uint64_t conn_refused;
    _Atomic uint64_t tls[2];
    _Atomic uint64_t proxy_hdr[STATS_PROXY_COUNT];
    _Atomic uint64_t smtp_reply[STATS__RC_COUNT];
    _Atomic uint64_t up_reply[STATS__RC_COUNT];
    _Atomic uint64_t up_error[STATS_UPERR_COUNT];
    _Atomic uint64_t timeout[STATS_TO_COUNT];
    _Atomic uint64_t errors;
    _Atomic uint64_t dns[STATS_DNS_COUNT];
    _Atomic uint64_t upslot[STATS_UPSLOT_COUNT];
    _Atomic uint64_t upslot_held, upslot_waiting;
    _Atomic uint64_t upconn[STATS_UPCONN_COUNT];
    _Atomic uint64_t upconn_idle;
    /* the plugins' shared state (state.c): keys and bytes now, counts so far */
    _Atomic uint64_t state_keys, state_bytes, state_ops, state_errors, state_evicted, state_expired;
    /* the Redis backend's connection: 0 not that backend, 1 down, 2 up */
    _Atomic int state_redis;
    _Atomic uint64_t state_redis_reconnects;
    /* quarantine: events so far and their bytes; the index now (0: never read) */
    _Atomic uint64_t quar_ev[STATS_QUAR_EVENT_COUNT], quar_ev_bytes[STATS_QUAR_EVENT_COUNT];
    _Atomic uint64_t quar_n[STATS_QUAR_STATUS_COUNT], quar_bytes[STATS_QUAR_STATUS_COUNT];
    _Atomic bool quar_seen;
    _Atomic uint64_t auth[STATS_AUTH_COUNT];
    _Atomic uint64_t tx[STATS_V_COUNT];  /* every finished transaction */
    _Atomic uint64_t msg[STATS_V_COUNT]; /* those that carried content */
    _Atomic uint64_t rcpts;
    _Atomic uint64_t bytes_in;
    _Atomic uint64_t bytes_out;
    _Atomic uint64_t reloads[2];
    _Atomic int last_reload_ok;
    _Atomic bool listening;
    _Atomic bool upstream_ok;
    _Atomic bool chain_loaded;
    struct stats_hist msg_size; /* stats__spec_size */
    struct stats_hist tx_time;  /* stats__spec_tx */
};

/* One plugin instance (stats_plugin_get()). */
struct stats_plugin {
    char name[STATS_NAME_MAX]; /* printable ASCII */
    _Atomic uint64_t verdict[STATS_PV_COUNT];
    _Atomic uint64_t timeouts;
    _Atomic uint64_t errors;
    _Atomic uint64_t trips;
    _Atomic uint64_t thread_waits;
    _Atomic unsigned threads;                /* gauge */
    _Atomic int breaker;                     /* enum stats_breaker */
    struct stats_hist phase[STATS_PH_COUNT]; /* stats__spec_plugin */
};

/* One series of a plugin-defined counter. */
struct stats__cvalue {
    char label[STATS_LABEL_VALUE_MAX]; /* printable ASCII; "" when unlabelled */
    _Atomic uint64_t n;
};

#define STATS__COUNTER_NAME_MAX 128

/* A plugin-defined counter (stats_counter_new*()). Several records (one per
 * plugin instance) may share a name: they form one family. */
struct stats_counter {
    char name[STATS__COUNTER_NAME_MAX + 16]; /* sluice_ + name + _total */
    char plugin[STATS_NAME_MAX];             /* value of the `plugin` label; "" for none */
    char label_name[STATS_NAME_MAX];         /* "" when unlabelled */
    char *help;                              /* owned; any bytes, the family's first */
    unsigned max_values;                     /* distinct values before "other" */
    pthread_mutex_t lock;                    /* serialises appends to values */
    _Atomic size_t nvalues;
    struct stats__cvalue *values; /* owned; capacity max_values + 1 ("other") */
};

/* Bucket layouts: plugin hook time, transaction time (both ns), message size. */
extern const struct stats_hist_spec stats__spec_plugin;
extern const struct stats_hist_spec stats__spec_tx;
extern const struct stats_hist_spec stats__spec_size;

static inline uint64_t stats__ld(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

const struct stats__core *stats__core(void);
/* Names, for stats_gauge.c: what stats.c does to label values and metric
 * names, and whether a full family name belongs to the core. */
void stats__printable(char *dst, size_t n, const char *src);
void stats__ident(char *dst, size_t n, const char *src);
bool stats__name_reserved(const char *full);
double stats__start_time(void);
/* The version label (stats_set_build_info(), else the build's). */
const char *stats__version(void);
/* Published records, oldest first; *n is loaded with acquire. */
struct stats_plugin *const *stats__plugins(size_t *n);
struct stats_counter *const *stats__counters(size_t *n);

/* Call fn(record, k) for every decision record, newest first (k = 0, 1, ...),
 * under the ring's lock: fn must not call back into stats. */
typedef void stats__decision_fn(const char *json, size_t k, void *arg);
void stats__decisions_each(stats__decision_fn *fn, void *arg);

/* The word for member i of a label set: these five and names_phase(),
 * names_pverdict(), names_txverdict(). */
typedef const char *stats__word_fn(int i);

/* Label words of the stats-only sets; "unknown" outside them. */
const char *stats__result_name(int ok); /* 0 failure, 1 success */
const char *stats__auth_name(int a);    /* enum stats_auth */
const char *stats__class_name(int rc);  /* STATS__RC_* */
const char *stats__timeout_name(int t); /* enum stats_timeout */
const char *stats__upslot_name(int e);
const char *stats__quar_event_name(int e);
const char *stats__quar_status_name(int s);
const char *stats__upconn_name(int e); /* enum stats_upconn */ /* enum stats_upslot_event */
const char *stats__dns_name(int e);                            /* enum stats_dns_event */
const char *stats__uperr_name(int e);                          /* enum stats_up_error */
const char *stats__breaker_name(int b);                        /* enum stats_breaker */

#endif
