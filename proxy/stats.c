/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats: the registry. Counters, gauges and histograms of the daemon,
 * plugin records, plugin-defined counters and the ring of recent decision
 * records, and the stats_* event API the rest of the daemon reports to.
 * Rendering lives in stats_prom.c (/metrics) and stats_json.c (/stats),
 * which read the layout declared in stats_priv.h.
 *
 * Writers are the SMTP loop, pool threads and the plugin host; the reader is
 * the HTTP thread (stats_http.c). Every figure is a C11 atomic updated with
 * relaxed ordering: a scrape may see a transaction half-counted (its verdict
 * but not yet its bytes), which Prometheus tolerates, and the hot path pays
 * one uncontended atomic add per figure.
 *
 * Registries (plugin records, plugin counters, label values) are
 * append-only arrays of fixed capacity: an entry is fully written, then the
 * count is published with a release store, and readers load the count with
 * acquire. Nothing is ever moved or freed while the process runs, so readers
 * need no lock. Only appends take a mutex (registration, first sighting of a
 * label value). stats_reset() is the one exception and is for tests only.
 *
 * Out of memory is fatal (xalloc.h): registration fails only on a full
 * registry or a bad name, never for lack of memory.
 */
#include "stats.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "names.h"
#include "stats_gauge.h"
#include "stats_hist.h"
#include "stats_json.h"
#include "stats_priv.h"
#include "stats_prom.h"
#include "xalloc.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "unknown"
#endif

/* The stats enums are numbered as the shared name lists (names.h). */
#define STATS__SAME_PH(id, word) _Static_assert(STATS_PH_##id == (int)NAMES_PH_##id, #id);
#define STATS__SAME_PV(id, word) _Static_assert(STATS_PV_##id == (int)NAMES_PV_##id, #id);
#define STATS__SAME_TX(id, word) _Static_assert(STATS_V_##id == (int)NAMES_TX_##id, #id);
NAMES_PHASES(STATS__SAME_PH)
NAMES_PVERDICTS(STATS__SAME_PV)
NAMES_TXVERDICTS(STATS__SAME_TX)
#undef STATS__SAME_PH
#undef STATS__SAME_PV
#undef STATS__SAME_TX
_Static_assert(STATS_PH_COUNT == (int)NAMES_PHASE_COUNT, "phase count");
_Static_assert(STATS_PV_COUNT == (int)NAMES_PVERDICT_COUNT, "plugin verdict count");
_Static_assert(STATS_V_COUNT == (int)NAMES_TXVERDICT_COUNT, "transaction verdict count");

/* ---- Histogram layouts ------------------------------------------------------ */

#define NS(x) ((uint64_t)((x) * 1000000000.0 + 0.5))

/* Plugin hooks: from a regex test to a slow network lookup. */
const struct stats_hist_spec stats__spec_plugin = {
    15,
    {NS(0.0001), NS(0.00025), NS(0.0005), NS(0.001), NS(0.0025), NS(0.005), NS(0.01), NS(0.025),
     NS(0.05), NS(0.1), NS(0.25), NS(0.5), NS(1), NS(2.5), NS(10)},
    9,
};

/* Whole transactions: MAIL FROM to final reply, client speed included. */
const struct stats_hist_spec stats__spec_tx = {
    14,
    {NS(0.005), NS(0.01), NS(0.025), NS(0.05), NS(0.1), NS(0.25), NS(0.5), NS(1), NS(2.5), NS(5),
     NS(10), NS(30), NS(60), NS(300)},
    9,
};

/* Message sizes: 1 KiB to 64 MiB, powers of four. */
const struct stats_hist_spec stats__spec_size = {
    9,
    {1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864},
    0,
};

/* ---- Label words of the stats-only sets ------------------------------------ */

static const char *word(const char *const *tab, size_t n, int i)
{
    return i >= 0 && (size_t)i < n ? tab[i] : "unknown";
}

#define WORD(tab, i) word(tab, sizeof tab / sizeof tab[0], i)

const char *stats__result_name(int ok)
{
    static const char *const tab[] = {"failure", "success"};
    return WORD(tab, ok);
}

const char *stats__auth_name(int a)
{
    static const char *const tab[STATS_AUTH_COUNT] = {"success", "failure", "tempfail", "aborted",
                                                      "blocked"};
    return WORD(tab, a);
}

const char *stats__class_name(int rc)
{
    static const char *const tab[STATS__RC_COUNT] = {"2xx", "3xx", "4xx", "5xx"};
    return WORD(tab, rc);
}

const char *stats__timeout_name(int t)
{
    static const char *const tab[STATS_TO_COUNT] = {"command", "data", "upstream", "plugin"};
    return WORD(tab, t);
}

const char *stats__upslot_name(int e)
{
    static const char *const tab[STATS_UPSLOT_COUNT] = {
        "wait",
        "expired",
        "reclaimed_idle",
        "reclaimed_in_transaction",
    };
    return WORD(tab, e);
}

const char *stats__quar_event_name(int e)
{
    static const char *const tab[STATS_QUAR_EVENT_COUNT] = {"held", "expired", "index_error",
                                                            "sweep_error"};
    return WORD(tab, e);
}

const char *stats__quar_status_name(int s)
{
    static const char *const tab[STATS_QUAR_STATUS_COUNT] = {"held", "releasing", "released",
                                                             "deleted", "expired"};
    return WORD(tab, s);
}

const char *stats__upconn_name(int e)
{
    static const char *const tab[STATS_UPCONN_COUNT] = {"opened", "reused", "expired", "ended",
                                                        "not_kept"};
    return WORD(tab, e);
}

const char *stats__dns_name(int e)
{
    static const char *const tab[STATS_DNS_COUNT] = {
        "query", "cache_hit", "timeout", "dropped", "failure", "cancelled", "joined",
    };
    return WORD(tab, e);
}

const char *stats__uperr_name(int e)
{
    static const char *const tab[STATS_UPERR_COUNT] = {
        "connect", "protocol", "timeout", "lost", "tls",
    };
    return WORD(tab, e);
}

const char *stats__breaker_name(int b)
{
    static const char *const tab[] = {"closed", "open", "half_open"};
    return WORD(tab, b);
}

/* ---- Core figures ----------------------------------------------------------- */

static struct stats__core g = {.last_reload_ok = 1};

/* Written once at start-up, before the HTTP thread exists (or by tests). */
static double g_start_time;
static char g_version[64] = SLUICE_VERSION;

static inline void inc(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

const struct stats__core *stats__core(void)
{
    return &g;
}

double stats__start_time(void)
{
    return g_start_time;
}

const char *stats__version(void)
{
    return g_version;
}

double stats_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int stats_init(void)
{
    g_start_time = stats_now();
    return 0;
}

void stats_set_build_info(const char *version)
{
    if (version != NULL)
        snprintf(g_version, sizeof g_version, "%s", version);
}

void stats_conn_open(void)
{
    atomic_fetch_add_explicit(&g.conn_current, 1, memory_order_relaxed);
    inc(&g.conn_total);
}

void stats_conn_close(void)
{
    atomic_fetch_sub_explicit(&g.conn_current, 1, memory_order_relaxed);
}

void stats_conn_refused(void) { inc(&g.conn_refused); }

void stats_tls_handshake(bool ok) { inc(&g.tls[ok ? 1 : 0]); }
void stats_proxy_header(enum stats_proxy r)
{
    inc(&g.proxy_hdr[r < STATS_PROXY_COUNT ? r : 0]);
}

const char *stats_proxy_name(int r)
{
    static const char *const names[STATS_PROXY_COUNT] = {"ok", "malformed", "untrusted"};
    return r >= 0 && r < STATS_PROXY_COUNT ? names[r] : "?";
}

void stats_auth(enum stats_auth a)
{
    if ((unsigned)a < STATS_AUTH_COUNT)
        inc(&g.auth[a]);
}

/* 2xx..5xx -> index; anything else is not an SMTP reply and is not counted. */
static int reply_class(int code)
{
    if (code < 200 || code > 599)
        return -1;
    return code / 100 - 2;
}

void stats_smtp_reply(int code)
{
    int c = reply_class(code);
    if (c >= 0)
        inc(&g.smtp_reply[c]);
}

void stats_upstream_reply(int code)
{
    int c = reply_class(code);
    if (c >= 0)
        inc(&g.up_reply[c]);
}

void stats_upstream_error(enum stats_up_error e)
{
    if ((unsigned)e < STATS_UPERR_COUNT)
        inc(&g.up_error[e]);
}

void stats_timeout(enum stats_timeout t)
{
    if ((unsigned)t < STATS_TO_COUNT)
        inc(&g.timeout[t]);
}

void stats_error(void) { inc(&g.errors); }

void stats_upslot(enum stats_upslot_event e)
{
    if ((unsigned)e < STATS_UPSLOT_COUNT)
        inc(&g.upslot[e]);
}

void stats_upconn(enum stats_upconn e)
{
    if ((unsigned)e < STATS_UPCONN_COUNT)
        inc(&g.upconn[e]);
}

void stats_state(uint64_t keys, uint64_t bytes, uint64_t ops, uint64_t errors, uint64_t evicted,
                 uint64_t expired)
{
    atomic_store_explicit(&g.state_keys, keys, memory_order_relaxed);
    atomic_store_explicit(&g.state_bytes, bytes, memory_order_relaxed);
    atomic_store_explicit(&g.state_ops, ops, memory_order_relaxed);
    atomic_store_explicit(&g.state_errors, errors, memory_order_relaxed);
    atomic_store_explicit(&g.state_evicted, evicted, memory_order_relaxed);
    atomic_store_explicit(&g.state_expired, expired, memory_order_relaxed);
}

void stats_quarantine_event(enum stats_quar_event e, uint64_t n, uint64_t bytes)
{
    if ((unsigned)e >= STATS_QUAR_EVENT_COUNT)
        return;
    atomic_fetch_add_explicit(&g.quar_ev[e], n, memory_order_relaxed);
    atomic_fetch_add_explicit(&g.quar_ev_bytes[e], bytes, memory_order_relaxed);
}

void stats_quarantine_index(const uint64_t n[STATS_QUAR_STATUS_COUNT],
                            const uint64_t bytes[STATS_QUAR_STATUS_COUNT])
{
    for (int i = 0; i < STATS_QUAR_STATUS_COUNT; i++) {
        atomic_store_explicit(&g.quar_n[i], n[i], memory_order_relaxed);
        atomic_store_explicit(&g.quar_bytes[i], bytes[i], memory_order_relaxed);
    }
    atomic_store_explicit(&g.quar_seen, true, memory_order_relaxed);
}

void stats_state_redis(bool up, uint64_t reconnects)
{
    atomic_store_explicit(&g.state_redis, up ? 2 : 1, memory_order_relaxed);
    atomic_store_explicit(&g.state_redis_reconnects, reconnects, memory_order_relaxed);
}

void stats_upconn_idle(unsigned idle)
{
    atomic_store_explicit(&g.upconn_idle, idle, memory_order_relaxed);
}

void stats_upslots(unsigned held, unsigned waiting)
{
    atomic_store_explicit(&g.upslot_held, held, memory_order_relaxed);
    atomic_store_explicit(&g.upslot_waiting, waiting, memory_order_relaxed);
}

void stats_dns(enum stats_dns_event e)
{
    if ((unsigned)e < STATS_DNS_COUNT)
        inc(&g.dns[e]);
}

void stats_transaction(enum stats_verdict v, unsigned rcpts, uint64_t bytes_in,
                       uint64_t bytes_out, double seconds)
{
    if ((unsigned)v >= STATS_V_COUNT)
        return;
    inc(&g.tx[v]);
    atomic_fetch_add_explicit(&g.rcpts, rcpts, memory_order_relaxed);
    atomic_fetch_add_explicit(&g.bytes_in, bytes_in, memory_order_relaxed);
    atomic_fetch_add_explicit(&g.bytes_out, bytes_out, memory_order_relaxed);
    /* A message is a transaction that got as far as sending content. */
    if (bytes_in > 0) {
        inc(&g.msg[v]);
        stats_hist_observe(&g.msg_size, &stats__spec_size, bytes_in);
    }
    stats_hist_observe(&g.tx_time, &stats__spec_tx, stats_hist_secs_to_ns(seconds));
}

void stats_config_reload(bool ok)
{
    inc(&g.reloads[ok ? 1 : 0]);
    atomic_store_explicit(&g.last_reload_ok, ok ? 1 : 0, memory_order_relaxed);
}

void stats_set_listening(bool on) { atomic_store(&g.listening, on); }
void stats_set_upstream_ok(bool ok) { atomic_store(&g.upstream_ok, ok); }
void stats_set_chain_loaded(bool ok) { atomic_store(&g.chain_loaded, ok); }

bool stats_ready(char *why, size_t whylen)
{
    const char *missing = NULL;
    if (!atomic_load(&g.listening))
        missing = "not listening";
    else if (!atomic_load(&g.upstream_ok))
        missing = "upstream unreachable";
    else if (!atomic_load(&g.chain_loaded))
        missing = "plugin chain not loaded";
    if (why != NULL && whylen > 0)
        snprintf(why, whylen, "%s", missing ? missing : "ready");
    return missing == NULL;
}

/* ---- Names ------------------------------------------------------------------ */

/* Copy, keeping printable ASCII only: label values and JSON stay trivial. */
static void copy_printable(char *dst, size_t n, const char *src)
{
    size_t i = 0;
    for (; src[i] != '\0' && i + 1 < n; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '_';
    }
    dst[i] = '\0';
}

/* Prometheus-safe identifier: lower case [a-z0-9_]. */
static void sanitize_ident(char *dst, size_t n, const char *src)
{
    size_t i = 0;
    for (; src[i] != '\0' && i + 1 < n; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch - 'A' + 'a');
        dst[i] = ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) ? (char)ch : '_';
    }
    dst[i] = '\0';
}

void stats__printable(char *dst, size_t n, const char *src)
{
    copy_printable(dst, n, src);
}

void stats__ident(char *dst, size_t n, const char *src)
{
    sanitize_ident(dst, n, src);
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t ls = strlen(s), lf = strlen(suf);
    return ls >= lf && strcmp(s + ls - lf, suf) == 0;
}

/* ---- Plugin records --------------------------------------------------------- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stats_plugin *g_plugins[STATS_PLUGINS_MAX];
static _Atomic size_t g_nplugins;

struct stats_plugin *const *stats__plugins(size_t *n)
{
    *n = atomic_load_explicit(&g_nplugins, memory_order_acquire);
    return g_plugins;
}

struct stats_plugin *stats_plugin_get(const char *instance_name)
{
    if (instance_name == NULL)
        return NULL;
    char name[STATS_NAME_MAX];
    copy_printable(name, sizeof name, instance_name);

    struct stats_plugin *p = NULL;
    pthread_mutex_lock(&reg_lock);
    size_t n = atomic_load_explicit(&g_nplugins, memory_order_relaxed);
    for (size_t i = 0; i < n && p == NULL; i++)
        if (strcmp(g_plugins[i]->name, name) == 0)
            p = g_plugins[i];
    if (p == NULL && n < STATS_PLUGINS_MAX) {
        p = xcalloc(1, sizeof *p);
        memcpy(p->name, name, sizeof name);
        g_plugins[n] = p;
        atomic_store_explicit(&g_nplugins, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&reg_lock);
    return p;
}

void stats_plugin_verdict(struct stats_plugin *p, enum stats_pverdict v)
{
    if (p != NULL && (unsigned)v < STATS_PV_COUNT)
        inc(&p->verdict[v]);
}

void stats_plugin_latency(struct stats_plugin *p, enum stats_phase ph, double seconds)
{
    if (p != NULL && (unsigned)ph < STATS_PH_COUNT)
        stats_hist_observe(&p->phase[ph], &stats__spec_plugin, stats_hist_secs_to_ns(seconds));
}

void stats_plugin_timeout(struct stats_plugin *p)
{
    if (p != NULL)
        inc(&p->timeouts);
}

void stats_plugin_error(struct stats_plugin *p)
{
    if (p != NULL)
        inc(&p->errors);
}

void stats_plugin_breaker(struct stats_plugin *p, enum stats_breaker st)
{
    if (p == NULL || (unsigned)st > STATS_CB_HALF_OPEN)
        return;
    int old = atomic_exchange_explicit(&p->breaker, (int)st, memory_order_relaxed);
    if (st == STATS_CB_OPEN && old != STATS_CB_OPEN)
        inc(&p->trips);
}

void stats_plugin_threads(struct stats_plugin *p, unsigned busy)
{
    if (p != NULL)
        atomic_store_explicit(&p->threads, busy, memory_order_relaxed);
}

void stats_plugin_thread_wait(struct stats_plugin *p)
{
    if (p != NULL)
        inc(&p->thread_waits);
}

/* ---- Plugin-defined counters ------------------------------------------------ */

static struct stats_counter *g_counters[STATS_COUNTERS_MAX];
static _Atomic size_t g_ncounters;

struct stats_counter *const *stats__counters(size_t *n)
{
    *n = atomic_load_explicit(&g_ncounters, memory_order_acquire);
    return g_counters;
}

/* Families rendered by the core; a plugin counter must not reuse them. */
static const char *const core_names[] = {
    "sluice_build_info",
    "sluice_start_time_seconds",
    "sluice_uptime_seconds",
    "sluice_config_reloads_total",
    "sluice_config_last_reload_success",
    "sluice_ready",
    "sluice_connections_current",
    "sluice_connections_total",
    "sluice_connections_refused_total",
    "sluice_tls_handshakes_total",
    "sluice_proxy_headers_total",
    "sluice_smtp_auth_total",
    "sluice_smtp_replies_total",
    "sluice_upstream_replies_total",
    "sluice_upstream_errors_total",
    "sluice_timeouts_total",
    "sluice_errors_total",
    "sluice_transactions_total",
    "sluice_messages_total",
    "sluice_recipients_total",
    "sluice_received_bytes_total",
    "sluice_forwarded_bytes_total",
    "sluice_message_size_bytes",
    "sluice_transaction_duration_seconds",
    "sluice_plugin_verdicts_total",
    "sluice_plugin_timeouts_total",
    "sluice_plugin_errors_total",
    "sluice_plugin_circuit_state",
    "sluice_plugin_circuit_trips_total",
    "sluice_plugin_duration_seconds",
    "sluice_plugin_threads_busy",
    "sluice_plugin_thread_waits_total",
};

/* Core families added later (kept apart so the list above stays as it is). */
static const char *const core_names_more[] = {"sluice_dns_requests_total",
                                              "sluice_state_keys",
                                              "sluice_state_bytes",
                                              "sluice_state_operations_total",
                                              "sluice_state_errors_total",
                                              "sluice_state_evictions_total",
                                              "sluice_state_expirations_total",
                                              "sluice_state_redis_up",
                                              "sluice_state_redis_reconnects_total",
                                              "sluice_quarantine_messages",
                                              "sluice_quarantine_bytes",
                                              "sluice_quarantine_events_total",
                                              "sluice_quarantine_event_bytes_total"};

bool stats__name_reserved(const char *full)
{
    for (size_t i = 0; i < sizeof core_names / sizeof core_names[0]; i++)
        if (strcmp(full, core_names[i]) == 0)
            return true;
    for (size_t i = 0; i < sizeof core_names_more / sizeof core_names_more[0]; i++)
        if (strcmp(full, core_names_more[i]) == 0)
            return true;
    return false;
}

static bool label_name_ok(const char *l)
{
    return l[0] != '\0' && !(l[0] >= '0' && l[0] <= '9') && strncmp(l, "__", 2) != 0 &&
           strcmp(l, "le") != 0 && strcmp(l, "quantile") != 0;
}

/* What identifies a counter, sanitised (see stats.h). */
struct counter_key {
    char full[STATS__COUNTER_NAME_MAX + 16]; /* sluice_<name>_total */
    char plugin[STATS_NAME_MAX];             /* "" for none */
    char label[STATS_NAME_MAX];              /* "" for none */
};

/* Build the key; false for a name or label stats.h refuses. */
static bool counter_key(struct counter_key *k, const char *plugin_name, const char *name,
                        const char *label_name)
{
    char base[STATS__COUNTER_NAME_MAX];
    if (name == NULL || name[0] == '\0')
        return false;
    k->plugin[0] = k->label[0] = '\0';
    if (plugin_name != NULL) {
        copy_printable(k->plugin, sizeof k->plugin, plugin_name);
        if (k->plugin[0] == '\0')
            return false;
    }
    sanitize_ident(base, sizeof base, name);
    snprintf(k->full, sizeof k->full, "%s%s%s", strncmp(base, "sluice_", 7) == 0 ? "" : "sluice_",
             base, has_suffix(base, "_total") ? "" : "_total");
    if (stats__name_reserved(k->full))
        return false;
    if (label_name != NULL) {
        sanitize_ident(k->label, sizeof k->label, label_name);
        if (!label_name_ok(k->label) || (k->plugin[0] && strcmp(k->label, "plugin") == 0))
            return false;
    }
    return true;
}

/* A new record for key; the caller holds reg_lock and publishes it. */
static struct stats_counter *counter_alloc(const struct counter_key *k, const char *help,
                                           unsigned max_label_values)
{
    struct stats_counter *c = xcalloc(1, sizeof *c);
    size_t cap = k->label[0] ? (size_t)max_label_values + 1 : 1;
    c->values = xcalloc(cap, sizeof *c->values);
    c->help = xstrdup(help);
    snprintf(c->name, sizeof c->name, "%s", k->full);
    snprintf(c->plugin, sizeof c->plugin, "%s", k->plugin);
    snprintf(c->label_name, sizeof c->label_name, "%s", k->label);
    c->max_values = max_label_values;
    pthread_mutex_init(&c->lock, NULL);
    /* An unlabelled counter is one value with an empty label, always present. */
    atomic_store_explicit(&c->nvalues, k->label[0] ? 0 : 1, memory_order_relaxed);
    return c;
}

/* Register or find (full name, plugin): see stats.h. plugin may be NULL. */
static struct stats_counter *counter_register(const char *plugin_name, const char *name,
                                              const char *help, const char *label_name,
                                              unsigned max_label_values)
{
    struct counter_key k;
    if (!counter_key(&k, plugin_name, name, label_name))
        return NULL;
    if (max_label_values < 1)
        max_label_values = 1;
    if (max_label_values > STATS_LABEL_VALUES_MAX)
        max_label_values = STATS_LABEL_VALUES_MAX;

    struct stats_counter *c = NULL;
    pthread_mutex_lock(&reg_lock);
    size_t n = atomic_load_explicit(&g_ncounters, memory_order_relaxed);
    const char *family_help = NULL; /* a family has one HELP: its first record's */
    for (size_t i = 0; i < n; i++) {
        struct stats_counter *o = g_counters[i];
        if (strcmp(o->name, k.full) != 0)
            continue;
        family_help = o->help;
        /* One family, one label set: same label, and plugin label or not. */
        if (strcmp(o->label_name, k.label) != 0 || (o->plugin[0] == '\0') != (k.plugin[0] == '\0'))
            goto out;
        /* Same name (and instance) again, e.g. a reload: the same counter. */
        if (strcmp(o->plugin, k.plugin) == 0) {
            c = o;
            goto out;
        }
    }
    if (n == STATS_COUNTERS_MAX)
        goto out;
    if (family_help == NULL)
        family_help = help != NULL && help[0] != '\0' ? help : "Plugin-defined counter.";
    c = counter_alloc(&k, family_help, max_label_values);
    g_counters[n] = c;
    atomic_store_explicit(&g_ncounters, n + 1, memory_order_release);
out:
    pthread_mutex_unlock(&reg_lock);
    return c;
}

struct stats_counter *stats_counter_new(const char *name, const char *help,
                                        const char *label_name, unsigned max_label_values)
{
    return counter_register(NULL, name, help, label_name, max_label_values);
}

struct stats_counter *stats_counter_new_plugin(const char *instance_name, const char *name,
                                               const char *help, const char *label_name,
                                               unsigned max_label_values)
{
    if (instance_name == NULL)
        return NULL;
    return counter_register(instance_name, name, help, label_name, max_label_values);
}

struct stats_counter *stats_plugin_counter(const char *name, const char *help,
                                           const char *label_name, unsigned max_label_values)
{
    return stats_counter_new(name, help, label_name, max_label_values);
}

static struct stats__cvalue *cvalue_find(struct stats_counter *c, const char *v, size_t from,
                                         size_t to)
{
    for (size_t i = from; i < to; i++)
        if (strcmp(c->values[i].label, v) == 0)
            return &c->values[i];
    return NULL;
}

static void label_value_norm(char *dst, size_t n, const char *v)
{
    copy_printable(dst, n, v != NULL && v[0] != '\0' ? v : "none");
}

void stats_counter_add(struct stats_counter *c, const char *label_value, uint64_t n)
{
    if (c == NULL)
        return;
    if (c->label_name[0] == '\0') {
        atomic_fetch_add_explicit(&c->values[0].n, n, memory_order_relaxed);
        return;
    }
    char v[STATS_LABEL_VALUE_MAX];
    label_value_norm(v, sizeof v, label_value);

    /* Fast path: a value seen before, found without the lock. */
    size_t seen = atomic_load_explicit(&c->nvalues, memory_order_acquire);
    struct stats__cvalue *cv = cvalue_find(c, v, 0, seen);
    if (cv == NULL) {
        pthread_mutex_lock(&c->lock);
        size_t now = atomic_load_explicit(&c->nvalues, memory_order_relaxed);
        cv = cvalue_find(c, v, seen, now);
        if (cv == NULL) {
            /* Over the bound: fold into "other" (the spare last slot). */
            if (now >= c->max_values) {
                snprintf(v, sizeof v, "other");
                cv = cvalue_find(c, v, 0, now);
            }
            if (cv == NULL && now < (size_t)c->max_values + 1) {
                cv = &c->values[now];
                snprintf(cv->label, sizeof cv->label, "%s", v);
                atomic_store_explicit(&c->nvalues, now + 1, memory_order_release);
            }
        }
        pthread_mutex_unlock(&c->lock);
    }
    if (cv != NULL)
        atomic_fetch_add_explicit(&cv->n, n, memory_order_relaxed);
}

uint64_t stats_counter_get(const struct stats_counter *c, const char *label_value)
{
    if (c == NULL)
        return 0;
    if (c->label_name[0] == '\0')
        return stats__ld(&c->values[0].n);
    char v[STATS_LABEL_VALUE_MAX];
    label_value_norm(v, sizeof v, label_value);
    size_t n = atomic_load_explicit(&c->nvalues, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(c->values[i].label, v) == 0)
            return stats__ld(&c->values[i].n);
    return 0;
}

/* ---- Decision records ------------------------------------------------------- */

static pthread_mutex_t dec_lock = PTHREAD_MUTEX_INITIALIZER;
static char *g_dec[STATS_DECISIONS_MAX]; /* owned; ring, g_dec_next is the oldest */
static size_t g_dec_next;
static size_t g_dec_count;

/* Put an owned record into the ring, dropping the oldest when full. */
static void decision_store(char *json_object)
{
    pthread_mutex_lock(&dec_lock);
    char *old = g_dec[g_dec_next];
    g_dec[g_dec_next] = json_object;
    g_dec_next = (g_dec_next + 1) % STATS_DECISIONS_MAX;
    if (g_dec_count < STATS_DECISIONS_MAX)
        g_dec_count++;
    pthread_mutex_unlock(&dec_lock);
    free(old);
}

int stats_decision_push(const char *json_object)
{
    if (json_object == NULL)
        return -EINVAL;
    size_t len = strlen(json_object);
    if (len > STATS_DECISION_MAX_LEN)
        return -E2BIG;
    /* A plugin's bad record must not corrupt the /stats document. */
    if (!json_is_object(json_object))
        return -EINVAL;
    decision_store(xstrndup(json_object, len));
    return 0;
}

int stats_decision_push_owned(char *json_object, size_t len)
{
    if (json_object == NULL)
        return -EINVAL;
    if (len > STATS_DECISION_MAX_LEN) {
        free(json_object);
        return -E2BIG;
    }
    decision_store(json_object);
    return 0;
}

void stats__decisions_each(stats__decision_fn *fn, void *arg)
{
    pthread_mutex_lock(&dec_lock);
    for (size_t k = 0; k < g_dec_count; k++) {
        /* newest first: walk backwards from the slot before g_dec_next */
        size_t idx = (g_dec_next + STATS_DECISIONS_MAX - 1 - k) % STATS_DECISIONS_MAX;
        fn(g_dec[idx], k, arg);
    }
    pthread_mutex_unlock(&dec_lock);
}

/* ---- Reset (tests) ---------------------------------------------------------- */

static void reset_core(void)
{
    _Atomic uint64_t *all[] = {
        &g.conn_total, &g.conn_refused, &g.errors, &g.rcpts, &g.bytes_in, &g.bytes_out,
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        atomic_store(all[i], 0);
    atomic_store(&g.conn_current, 0);
    for (size_t i = 0; i < 2; i++) {
        atomic_store(&g.tls[i], 0);
        atomic_store(&g.reloads[i], 0);
    }
    for (size_t i = 0; i < STATS_PROXY_COUNT; i++)
        atomic_store(&g.proxy_hdr[i], 0);
    for (size_t i = 0; i < STATS__RC_COUNT; i++) {
        atomic_store(&g.smtp_reply[i], 0);
        atomic_store(&g.up_reply[i], 0);
    }
    for (size_t i = 0; i < STATS_UPERR_COUNT; i++)
        atomic_store(&g.up_error[i], 0);
    for (size_t i = 0; i < STATS_TO_COUNT; i++)
        atomic_store(&g.timeout[i], 0);
    for (size_t i = 0; i < STATS_DNS_COUNT; i++)
        atomic_store(&g.dns[i], 0);
    for (size_t i = 0; i < STATS_UPSLOT_COUNT; i++)
        atomic_store(&g.upslot[i], 0);
    for (size_t i = 0; i < STATS_AUTH_COUNT; i++)
        atomic_store(&g.auth[i], 0);
    for (size_t i = 0; i < STATS_UPCONN_COUNT; i++)
        atomic_store(&g.upconn[i], 0);
    atomic_store(&g.upconn_idle, 0);
    for (size_t i = 0; i < STATS_QUAR_EVENT_COUNT; i++) {
        atomic_store(&g.quar_ev[i], 0);
        atomic_store(&g.quar_ev_bytes[i], 0);
    }
    for (size_t i = 0; i < STATS_QUAR_STATUS_COUNT; i++) {
        atomic_store(&g.quar_n[i], 0);
        atomic_store(&g.quar_bytes[i], 0);
    }
    atomic_store(&g.quar_seen, false);
    stats_state(0, 0, 0, 0, 0, 0);
    atomic_store(&g.upslot_held, 0);
    atomic_store(&g.upslot_waiting, 0);
    for (size_t i = 0; i < STATS_V_COUNT; i++) {
        atomic_store(&g.tx[i], 0);
        atomic_store(&g.msg[i], 0);
    }
    atomic_store(&g.last_reload_ok, 1);
    atomic_store(&g.listening, false);
    atomic_store(&g.upstream_ok, false);
    atomic_store(&g.chain_loaded, false);
    stats_hist_clear(&g.msg_size);
    stats_hist_clear(&g.tx_time);
}

void stats_reset(double start_time)
{
    reset_core();
    size_t n = atomic_exchange(&g_nplugins, 0);
    for (size_t i = 0; i < n; i++) {
        free(g_plugins[i]);
        g_plugins[i] = NULL;
    }
    stats_gauge_reset();
    n = atomic_exchange(&g_ncounters, 0);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_destroy(&g_counters[i]->lock);
        free(g_counters[i]->values);
        free(g_counters[i]->help);
        free(g_counters[i]);
        g_counters[i] = NULL;
    }
    for (size_t i = 0; i < STATS_DECISIONS_MAX; i++) {
        free(g_dec[i]);
        g_dec[i] = NULL;
    }
    g_dec_next = g_dec_count = 0;
    g_start_time = start_time;
    snprintf(g_version, sizeof g_version, "%s", SLUICE_VERSION);
}
