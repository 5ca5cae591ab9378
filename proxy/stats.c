/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats: counters, gauges and histograms of the daemon, plugin records,
 * plugin-defined counters and the ring of recent decision records.
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
 * Histogram sums are fixed-point integers (nanoseconds, bytes) so that they
 * can be plain atomic adds and render exactly.
 */
#include "stats.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "unknown"
#endif

/* ---- Histograms ----------------------------------------------------------- */

#define HIST_MAX_BOUNDS 16

struct hist_spec {
    size_t nbounds;
    uint64_t bounds[HIST_MAX_BOUNDS]; /* in fixed-point units, ascending */
    unsigned scale;                   /* decimal digits after the point (9: ns) */
};

struct hist {
    _Atomic uint64_t bucket[HIST_MAX_BOUNDS + 1]; /* non-cumulative; last: +Inf */
    _Atomic uint64_t sum;                         /* fixed-point, see spec->scale */
};

#define NS(x) ((uint64_t)((x) * 1000000000.0 + 0.5))

/* Plugin hooks: from a regex test to a slow network lookup. */
static const struct hist_spec spec_plugin = {
    15,
    {NS(0.0001), NS(0.00025), NS(0.0005), NS(0.001), NS(0.0025), NS(0.005), NS(0.01),
     NS(0.025), NS(0.05), NS(0.1), NS(0.25), NS(0.5), NS(1), NS(2.5), NS(10)},
    9,
};

/* Whole transactions: MAIL FROM to final reply, client speed included. */
static const struct hist_spec spec_tx = {
    14,
    {NS(0.005), NS(0.01), NS(0.025), NS(0.05), NS(0.1), NS(0.25), NS(0.5), NS(1),
     NS(2.5), NS(5), NS(10), NS(30), NS(60), NS(300)},
    9,
};

/* Message sizes: 1 KiB to 64 MiB, powers of four. */
static const struct hist_spec spec_size = {
    9,
    {1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864},
    0,
};

static uint64_t secs_to_ns(double s)
{
    if (!(s > 0)) /* also NaN */
        return 0;
    if (s > 1e9) /* 31 years: treat as garbage but keep the sum sane */
        s = 1e9;
    return (uint64_t)(s * 1e9 + 0.5);
}

static void hist_observe(struct hist *h, const struct hist_spec *spec, uint64_t v)
{
    size_t i = 0;
    while (i < spec->nbounds && v > spec->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

static void hist_clear(struct hist *h)
{
    for (size_t i = 0; i <= HIST_MAX_BOUNDS; i++)
        atomic_store_explicit(&h->bucket[i], 0, memory_order_relaxed);
    atomic_store_explicit(&h->sum, 0, memory_order_relaxed);
}

/* A consistent-enough copy: cumulative counts, and count == +Inf bucket. */
struct hist_snap {
    uint64_t cum[HIST_MAX_BOUNDS + 1];
    uint64_t count;
    uint64_t sum;
};

static void hist_snapshot(const struct hist *h, const struct hist_spec *spec,
                          struct hist_snap *s)
{
    uint64_t acc = 0;
    for (size_t i = 0; i <= spec->nbounds; i++) {
        acc += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        s->cum[i] = acc;
    }
    s->count = acc;
    s->sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
}

/* Exact decimal text of a fixed-point value: 1500000000 at scale 9 -> "1.5". */
static void fmt_fixed(char *dst, size_t n, uint64_t v, unsigned scale)
{
    if (scale == 0) {
        snprintf(dst, n, "%" PRIu64, v);
        return;
    }
    uint64_t div = 1;
    for (unsigned i = 0; i < scale; i++)
        div *= 10;
    char frac[24];
    snprintf(frac, sizeof frac, "%0*" PRIu64, (int)scale, v % div);
    size_t fl = strlen(frac);
    while (fl > 0 && frac[fl - 1] == '0')
        frac[--fl] = '\0';
    if (fl == 0)
        snprintf(dst, n, "%" PRIu64, v / div);
    else
        snprintf(dst, n, "%" PRIu64 ".%s", v / div, frac);
}

/* ---- Core figures --------------------------------------------------------- */

enum { RC_2XX = 0, RC_3XX, RC_4XX, RC_5XX, RC_COUNT };

static const char *const verdict_names[STATS_V_COUNT] = {
    "accepted", "rejected", "tempfailed", "discarded", "quarantined", "aborted",
};
static const char *const timeout_names[STATS_TO_COUNT] = {
    "command", "data", "upstream", "plugin",
};
static const char *const uperr_names[STATS_UPERR_COUNT] = {
    "connect", "protocol", "timeout", "lost", "tls",
};
static const char *const rc_names[RC_COUNT] = {"2xx", "3xx", "4xx", "5xx"};
static const char *const pverdict_names[STATS_PV_COUNT] = {
    "continue", "accept", "reject", "tempfail", "discard", "quarantine", "disconnect",
};
static const char *const phase_names[STATS_PH_COUNT] = {
    "connect", "helo", "mail", "rcpt", "data", "reset", "close",
};
static const char *const breaker_names[3] = {"closed", "open", "half_open"};

static struct {
    _Atomic int64_t conn_current;
    _Atomic uint64_t conn_total;
    _Atomic uint64_t conn_refused;
    _Atomic uint64_t tls[2]; /* [0] failure, [1] success */
    _Atomic uint64_t smtp_reply[RC_COUNT];
    _Atomic uint64_t up_reply[RC_COUNT];
    _Atomic uint64_t up_error[STATS_UPERR_COUNT];
    _Atomic uint64_t timeout[STATS_TO_COUNT];
    _Atomic uint64_t errors;
    _Atomic uint64_t tx[STATS_V_COUNT];
    _Atomic uint64_t msg[STATS_V_COUNT];
    _Atomic uint64_t rcpts;
    _Atomic uint64_t bytes_in;
    _Atomic uint64_t bytes_out;
    _Atomic uint64_t reloads[2]; /* [0] failure, [1] success */
    _Atomic int last_reload_ok;
    _Atomic bool listening;
    _Atomic bool upstream_ok;
    _Atomic bool chain_loaded;
    struct hist msg_size;
    struct hist tx_time;
} g = {.last_reload_ok = 1};

/* Written once at start-up, before the HTTP thread exists (or by tests). */
static double g_start_time;
static char g_version[64] = SLUICE_VERSION;

static inline void inc(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static inline uint64_t ld(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
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
        hist_observe(&g.msg_size, &spec_size, bytes_in);
    }
    hist_observe(&g.tx_time, &spec_tx, secs_to_ns(seconds));
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

/* ---- Names ---------------------------------------------------------------- */

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

static bool has_suffix(const char *s, const char *suf)
{
    size_t ls = strlen(s), lf = strlen(suf);
    return ls >= lf && strcmp(s + ls - lf, suf) == 0;
}

/* ---- Plugin records ------------------------------------------------------- */

struct stats_plugin {
    char name[STATS_NAME_MAX];
    _Atomic uint64_t verdict[STATS_PV_COUNT];
    _Atomic uint64_t timeouts;
    _Atomic uint64_t errors;
    _Atomic uint64_t trips;
    _Atomic int breaker;
    struct hist phase[STATS_PH_COUNT];
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stats_plugin *g_plugins[STATS_PLUGINS_MAX];
static _Atomic size_t g_nplugins;

struct stats_plugin *stats_plugin_get(const char *instance_name)
{
    if (instance_name == NULL)
        return NULL;
    char name[STATS_NAME_MAX];
    copy_printable(name, sizeof name, instance_name);

    struct stats_plugin *p = NULL;
    pthread_mutex_lock(&reg_lock);
    size_t n = atomic_load_explicit(&g_nplugins, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(g_plugins[i]->name, name) == 0) {
            p = g_plugins[i];
            goto out;
        }
    }
    if (n == STATS_PLUGINS_MAX)
        goto out;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        goto out;
    memcpy(p->name, name, sizeof name);
    g_plugins[n] = p;
    atomic_store_explicit(&g_nplugins, n + 1, memory_order_release);
out:
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
        hist_observe(&p->phase[ph], &spec_plugin, secs_to_ns(seconds));
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

/* ---- Plugin-defined counters ---------------------------------------------- */

struct cvalue {
    char label[STATS_LABEL_VALUE_MAX];
    _Atomic uint64_t n;
};

#define COUNTER_NAME_MAX 128

struct stats_counter {
    char name[COUNTER_NAME_MAX + 16]; /* sluice_ + name + _total */
    char plugin[STATS_NAME_MAX];      /* value of the `plugin` label; "" for none */
    char label_name[STATS_NAME_MAX];  /* "" when unlabelled */
    char *help;                      /* owned */
    unsigned max_values;             /* distinct values before "other" */
    pthread_mutex_t lock;            /* serialises appends to values */
    _Atomic size_t nvalues;
    struct cvalue *values; /* owned; capacity max_values + 1 ("other") */
};

static struct stats_counter *g_counters[STATS_COUNTERS_MAX];
static _Atomic size_t g_ncounters;

/* Families rendered by the core; a plugin counter must not reuse them. */
static const char *const core_names[] = {
    "sluice_build_info", "sluice_start_time_seconds", "sluice_uptime_seconds",
    "sluice_config_reloads_total", "sluice_config_last_reload_success", "sluice_ready",
    "sluice_connections_current", "sluice_connections_total",
    "sluice_connections_refused_total", "sluice_tls_handshakes_total",
    "sluice_smtp_replies_total", "sluice_upstream_replies_total",
    "sluice_upstream_errors_total", "sluice_timeouts_total", "sluice_errors_total",
    "sluice_transactions_total", "sluice_messages_total", "sluice_recipients_total",
    "sluice_received_bytes_total", "sluice_forwarded_bytes_total",
    "sluice_message_size_bytes", "sluice_transaction_duration_seconds",
    "sluice_plugin_verdicts_total", "sluice_plugin_timeouts_total",
    "sluice_plugin_errors_total", "sluice_plugin_circuit_state",
    "sluice_plugin_circuit_trips_total", "sluice_plugin_duration_seconds",
};

static bool label_name_ok(const char *l)
{
    return l[0] != '\0' && !(l[0] >= '0' && l[0] <= '9') && strncmp(l, "__", 2) != 0 &&
           strcmp(l, "le") != 0 && strcmp(l, "quantile") != 0;
}

/* Register or find (full name, plugin): see stats.h. plugin may be NULL. */
static struct stats_counter *counter_register(const char *plugin_name, const char *name,
                                              const char *help, const char *label_name,
                                              unsigned max_label_values)
{
    if (name == NULL || name[0] == '\0')
        return NULL;
    char base[COUNTER_NAME_MAX], full[COUNTER_NAME_MAX + 16], label[STATS_NAME_MAX] = "";
    char plugin[STATS_NAME_MAX] = "";
    if (plugin_name != NULL) {
        copy_printable(plugin, sizeof plugin, plugin_name);
        if (plugin[0] == '\0')
            return NULL;
    }
    sanitize_ident(base, sizeof base, name);
    snprintf(full, sizeof full, "%s%s%s", strncmp(base, "sluice_", 7) == 0 ? "" : "sluice_",
             base, has_suffix(base, "_total") ? "" : "_total");
    for (size_t i = 0; i < sizeof core_names / sizeof core_names[0]; i++)
        if (strcmp(full, core_names[i]) == 0)
            return NULL;
    if (label_name != NULL) {
        sanitize_ident(label, sizeof label, label_name);
        if (!label_name_ok(label) || (plugin[0] && strcmp(label, "plugin") == 0))
            return NULL;
    }
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
        if (strcmp(o->name, full) != 0)
            continue;
        family_help = o->help;
        /* One family, one label set: same label, and plugin label or not. */
        if (strcmp(o->label_name, label) != 0 || (o->plugin[0] == '\0') != (plugin[0] == '\0'))
            goto out;
        /* Same name (and instance) again, e.g. a reload: the same counter. */
        if (strcmp(o->plugin, plugin) == 0) {
            c = o;
            goto out;
        }
    }
    if (n == STATS_COUNTERS_MAX)
        goto out;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        goto out;
    size_t cap = label[0] ? (size_t)max_label_values + 1 : 1;
    c->values = calloc(cap, sizeof *c->values);
    if (family_help == NULL)
        family_help = help != NULL && help[0] != '\0' ? help : "Plugin-defined counter.";
    c->help = strdup(family_help);
    if (c->values == NULL || c->help == NULL) {
        free(c->values);
        free(c->help);
        free(c);
        c = NULL;
        goto out;
    }
    snprintf(c->name, sizeof c->name, "%s", full);
    snprintf(c->plugin, sizeof c->plugin, "%s", plugin);
    snprintf(c->label_name, sizeof c->label_name, "%s", label);
    c->max_values = max_label_values;
    pthread_mutex_init(&c->lock, NULL);
    /* An unlabelled counter is one value with an empty label, always present. */
    atomic_store_explicit(&c->nvalues, label[0] ? 0 : 1, memory_order_relaxed);
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

static struct cvalue *cvalue_find(struct stats_counter *c, const char *v, size_t from, size_t to)
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
    struct cvalue *cv = cvalue_find(c, v, 0, seen);
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
        return ld(&c->values[0].n);
    char v[STATS_LABEL_VALUE_MAX];
    label_value_norm(v, sizeof v, label_value);
    size_t n = atomic_load_explicit(&c->nvalues, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(c->values[i].label, v) == 0)
            return ld(&c->values[i].n);
    return 0;
}

/* ---- Decision records ----------------------------------------------------- */

static pthread_mutex_t dec_lock = PTHREAD_MUTEX_INITIALIZER;
static char *g_dec[STATS_DECISIONS_MAX]; /* owned; ring, g_dec_next is the oldest */
static size_t g_dec_next;
static size_t g_dec_count;

/*
 * A small validating JSON scanner (RFC 8259), so that a bad record from a
 * plugin cannot corrupt the /stats document it is pasted into.
 */
struct jscan {
    const char *p;
    int depth;
};

static bool js_value(struct jscan *s);

static void js_ws(struct jscan *s)
{
    while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')
        s->p++;
}

static bool js_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool js_string(struct jscan *s)
{
    if (*s->p != '"')
        return false;
    s->p++;
    for (;;) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            return true;
        }
        if (c < 0x20) /* also the terminating NUL */
            return false;
        if (c == '\\') {
            s->p++;
            char e = *s->p;
            if (e == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!js_hex(s->p[i]))
                        return false;
                s->p += 5;
                continue;
            }
            if (strchr("\"\\/bfnrt", e) == NULL || e == '\0')
                return false;
        }
        s->p++;
    }
}

static bool js_digits(struct jscan *s)
{
    if (!(*s->p >= '0' && *s->p <= '9'))
        return false;
    while (*s->p >= '0' && *s->p <= '9')
        s->p++;
    return true;
}

static bool js_number(struct jscan *s)
{
    if (*s->p == '-')
        s->p++;
    if (*s->p == '0')
        s->p++;
    else if (!js_digits(s))
        return false;
    if (*s->p == '.') {
        s->p++;
        if (!js_digits(s))
            return false;
    }
    if (*s->p == 'e' || *s->p == 'E') {
        s->p++;
        if (*s->p == '+' || *s->p == '-')
            s->p++;
        if (!js_digits(s))
            return false;
    }
    return true;
}

static bool js_word(struct jscan *s, const char *w)
{
    size_t n = strlen(w);
    if (strncmp(s->p, w, n) != 0)
        return false;
    s->p += n;
    return true;
}

static bool js_container(struct jscan *s, char close, bool object)
{
    if (++s->depth > 32)
        return false;
    s->p++;
    js_ws(s);
    if (*s->p == close) {
        s->p++;
        s->depth--;
        return true;
    }
    for (;;) {
        js_ws(s);
        if (object) {
            if (!js_string(s))
                return false;
            js_ws(s);
            if (*s->p++ != ':')
                return false;
        }
        if (!js_value(s))
            return false;
        js_ws(s);
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p != close)
            return false;
        s->p++;
        s->depth--;
        return true;
    }
}

static bool js_value(struct jscan *s)
{
    js_ws(s);
    switch (*s->p) {
    case '{': return js_container(s, '}', true);
    case '[': return js_container(s, ']', false);
    case '"': return js_string(s);
    case 't': return js_word(s, "true");
    case 'f': return js_word(s, "false");
    case 'n': return js_word(s, "null");
    default: return js_number(s);
    }
}

static bool json_is_object(const char *text)
{
    struct jscan s = {text, 0};
    js_ws(&s);
    if (*s.p != '{' || !js_value(&s))
        return false;
    js_ws(&s);
    return *s.p == '\0';
}

int stats_decision_push(const char *json_object)
{
    if (json_object == NULL)
        return -EINVAL;
    size_t len = strlen(json_object);
    if (len > STATS_DECISION_MAX_LEN)
        return -E2BIG;
    if (!json_is_object(json_object))
        return -EINVAL;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, json_object, len + 1);

    pthread_mutex_lock(&dec_lock);
    char *old = g_dec[g_dec_next];
    g_dec[g_dec_next] = copy;
    g_dec_next = (g_dec_next + 1) % STATS_DECISIONS_MAX;
    if (g_dec_count < STATS_DECISIONS_MAX)
        g_dec_count++;
    pthread_mutex_unlock(&dec_lock);
    free(old);
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
    pthread_mutex_lock(&dec_lock);
    char *old = g_dec[g_dec_next];
    g_dec[g_dec_next] = json_object;
    g_dec_next = (g_dec_next + 1) % STATS_DECISIONS_MAX;
    if (g_dec_count < STATS_DECISIONS_MAX)
        g_dec_count++;
    pthread_mutex_unlock(&dec_lock);
    free(old);
    return 0;
}

/* ---- Reset (tests) --------------------------------------------------------- */

void stats_reset(double start_time)
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
    for (size_t i = 0; i < RC_COUNT; i++) {
        atomic_store(&g.smtp_reply[i], 0);
        atomic_store(&g.up_reply[i], 0);
    }
    for (size_t i = 0; i < STATS_UPERR_COUNT; i++)
        atomic_store(&g.up_error[i], 0);
    for (size_t i = 0; i < STATS_TO_COUNT; i++)
        atomic_store(&g.timeout[i], 0);
    for (size_t i = 0; i < STATS_V_COUNT; i++) {
        atomic_store(&g.tx[i], 0);
        atomic_store(&g.msg[i], 0);
    }
    atomic_store(&g.last_reload_ok, 1);
    atomic_store(&g.listening, false);
    atomic_store(&g.upstream_ok, false);
    atomic_store(&g.chain_loaded, false);
    hist_clear(&g.msg_size);
    hist_clear(&g.tx_time);

    size_t n = atomic_exchange(&g_nplugins, 0);
    for (size_t i = 0; i < n; i++) {
        free(g_plugins[i]);
        g_plugins[i] = NULL;
    }
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

/* ---- Prometheus text ------------------------------------------------------- */

/* HELP text escaping: backslash and newline (label values are printable ASCII
 * already; only backslash and quote need escaping there). */
static int prom_escape(buf_t *out, const char *s, bool quote)
{
    for (; *s; s++) {
        int rc;
        if (*s == '\\')
            rc = buf_puts(out, "\\\\");
        else if (*s == '\n')
            rc = buf_puts(out, "\\n");
        else if (quote && *s == '"')
            rc = buf_puts(out, "\\\"");
        else
            rc = buf_append(out, s, 1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int prom_head(buf_t *out, const char *name, const char *type, const char *help)
{
    return buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{label="value"} n, one per value of an enum-indexed array. */
static int prom_enum(buf_t *out, const char *name, const char *type, const char *help,
                     const char *label, const char *const *values,
                     const _Atomic uint64_t *counts, size_t n)
{
    int rc = prom_head(out, name, type, help);
    for (size_t i = 0; i < n && rc >= 0; i++)
        rc = buf_printf(out, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, values[i],
                        ld(&counts[i]));
    return rc;
}

static int prom_scalar(buf_t *out, const char *name, const char *type, const char *help,
                       uint64_t v)
{
    int rc = prom_head(out, name, type, help);
    if (rc >= 0)
        rc = buf_printf(out, "%s %" PRIu64 "\n", name, v);
    return rc;
}

/* Samples of one histogram series; `labels` is "" or `plugin="x",...` (with
 * a trailing comma) prepended inside the braces. */
static int prom_hist(buf_t *out, const char *name, const char *labels, const struct hist *h,
                     const struct hist_spec *spec)
{
    struct hist_snap s;
    char num[40];
    int rc = 0;
    hist_snapshot(h, spec, &s);
    for (size_t i = 0; i < spec->nbounds && rc >= 0; i++) {
        fmt_fixed(num, sizeof num, spec->bounds[i], spec->scale);
        rc = buf_printf(out, "%s_bucket{%sle=\"%s\"} %" PRIu64 "\n", name, labels, num,
                        s.cum[i]);
    }
    if (rc >= 0)
        rc = buf_printf(out, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, s.count);
    fmt_fixed(num, sizeof num, s.sum, spec->scale);
    size_t ll = strlen(labels);
    /* _sum/_count carry the labels without the trailing comma. */
    if (rc >= 0) {
        if (ll > 0)
            rc = buf_printf(out, "%s_sum{%.*s} %s\n%s_count{%.*s} %" PRIu64 "\n", name,
                            (int)(ll - 1), labels, num, name, (int)(ll - 1), labels, s.count);
        else
            rc = buf_printf(out, "%s_sum %s\n%s_count %" PRIu64 "\n", name, num, name,
                            s.count);
    }
    return rc;
}

static void plugin_labels(char *dst, size_t n, const char *plugin, const char *phase)
{
    /* Names are printable ASCII; escape the two characters that need it. */
    char esc[STATS_NAME_MAX * 2];
    size_t j = 0;
    for (size_t i = 0; plugin[i] && j + 2 < sizeof esc; i++) {
        if (plugin[i] == '"' || plugin[i] == '\\')
            esc[j++] = '\\';
        esc[j++] = plugin[i];
    }
    esc[j] = '\0';
    if (phase != NULL)
        snprintf(dst, n, "plugin=\"%s\",phase=\"%s\",", esc, phase);
    else
        snprintf(dst, n, "plugin=\"%s\"", esc);
}

static int render_plugins(buf_t *out)
{
    size_t n = atomic_load_explicit(&g_nplugins, memory_order_acquire);
    char lab[STATS_NAME_MAX * 2 + 32];
    int rc = 0;
    if (n == 0)
        return 0;

    rc = prom_head(out, "sluice_plugin_verdicts_total", "counter",
                   "Hook answers per plugin instance and verdict.");
    for (size_t i = 0; i < n && rc >= 0; i++) {
        plugin_labels(lab, sizeof lab, g_plugins[i]->name, NULL);
        for (size_t v = 0; v < STATS_PV_COUNT && rc >= 0; v++)
            rc = buf_printf(out, "sluice_plugin_verdicts_total{%s,verdict=\"%s\"} %" PRIu64 "\n",
                            lab, pverdict_names[v], ld(&g_plugins[i]->verdict[v]));
    }
    struct {
        const char *name, *type, *help;
        size_t off;
    } per[] = {
        {"sluice_plugin_timeouts_total", "counter", "Hook calls that ran past the plugin's timeout.",
         offsetof(struct stats_plugin, timeouts)},
        {"sluice_plugin_errors_total", "counter", "Hook calls that failed (plugin error).",
         offsetof(struct stats_plugin, errors)},
        {"sluice_plugin_circuit_trips_total", "counter",
         "Times the plugin's circuit breaker opened.", offsetof(struct stats_plugin, trips)},
    };
    for (size_t k = 0; k < sizeof per / sizeof per[0] && rc >= 0; k++) {
        rc = prom_head(out, per[k].name, per[k].type, per[k].help);
        for (size_t i = 0; i < n && rc >= 0; i++) {
            plugin_labels(lab, sizeof lab, g_plugins[i]->name, NULL);
            const _Atomic uint64_t *c =
                (const _Atomic uint64_t *)((const char *)g_plugins[i] + per[k].off);
            rc = buf_printf(out, "%s{%s} %" PRIu64 "\n", per[k].name, lab, ld(c));
        }
    }
    if (rc >= 0)
        rc = prom_head(out, "sluice_plugin_circuit_state", "gauge",
                       "Circuit-breaker state per plugin: 0 closed, 1 open, 2 half-open.");
    for (size_t i = 0; i < n && rc >= 0; i++) {
        plugin_labels(lab, sizeof lab, g_plugins[i]->name, NULL);
        rc = buf_printf(out, "sluice_plugin_circuit_state{%s} %d\n", lab,
                        atomic_load_explicit(&g_plugins[i]->breaker, memory_order_relaxed));
    }
    if (rc >= 0)
        rc = prom_head(out, "sluice_plugin_duration_seconds", "histogram",
                       "Time one plugin hook took, per plugin and SMTP phase.");
    for (size_t i = 0; i < n && rc >= 0; i++) {
        for (size_t ph = 0; ph < STATS_PH_COUNT && rc >= 0; ph++) {
            struct hist_snap s;
            hist_snapshot(&g_plugins[i]->phase[ph], &spec_plugin, &s);
            if (s.count == 0) /* only phases the plugin hooks */
                continue;
            plugin_labels(lab, sizeof lab, g_plugins[i]->name, phase_names[ph]);
            rc = prom_hist(out, "sluice_plugin_duration_seconds", lab, &g_plugins[i]->phase[ph],
                           &spec_plugin);
        }
    }
    return rc;
}

/* Label value text, escaped for the exposition format. */
static int prom_label(buf_t *out, const char *name, const char *value, bool comma)
{
    int rc = buf_printf(out, "%s%s=\"", comma ? "," : "", name);
    if (rc >= 0)
        rc = prom_escape(out, value, true);
    if (rc >= 0)
        rc = buf_puts(out, "\"");
    return rc;
}

static int render_counter_series(buf_t *out, const struct stats_counter *c)
{
    size_t nv = atomic_load_explicit(&c->nvalues, memory_order_acquire);
    int rc = 0;
    for (size_t v = 0; v < nv && rc >= 0; v++) {
        bool labels = c->plugin[0] || c->label_name[0];
        rc = buf_printf(out, "%s%s", c->name, labels ? "{" : "");
        if (rc >= 0 && c->plugin[0])
            rc = prom_label(out, "plugin", c->plugin, false);
        if (rc >= 0 && c->label_name[0])
            rc = prom_label(out, c->label_name, c->values[v].label, c->plugin[0] != '\0');
        if (rc >= 0)
            rc = buf_printf(out, "%s %" PRIu64 "\n", labels ? "}" : "", ld(&c->values[v].n));
    }
    return rc;
}

/* One family per name: the records of several plugin instances that share a
 * name are printed together under one HELP/TYPE (the exposition format wants
 * a family's lines contiguous). A family without any sample is left out. */
static int render_counters(buf_t *out)
{
    size_t n = atomic_load_explicit(&g_ncounters, memory_order_acquire);
    int rc = 0;
    for (size_t i = 0; i < n && rc >= 0; i++) {
        const struct stats_counter *c = g_counters[i];
        bool seen = false, samples = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(g_counters[j]->name, c->name) == 0;
        if (seen)
            continue;
        for (size_t k = i; k < n && !samples; k++)
            samples = strcmp(g_counters[k]->name, c->name) == 0 &&
                      atomic_load_explicit(&g_counters[k]->nvalues, memory_order_acquire) > 0;
        if (!samples)
            continue;
        rc = buf_printf(out, "# HELP %s ", c->name);
        if (rc >= 0)
            rc = prom_escape(out, c->help, false);
        if (rc >= 0)
            rc = buf_printf(out, "\n# TYPE %s counter\n", c->name);
        for (size_t k = i; k < n && rc >= 0; k++)
            if (strcmp(g_counters[k]->name, c->name) == 0)
                rc = render_counter_series(out, g_counters[k]);
    }
    return rc;
}

int stats_render_metrics(buf_t *out, double now)
{
    int rc;
    double up = now - g_start_time;
    if (up < 0)
        up = 0;
    static const char *const result_names[2] = {"failure", "success"};
    int64_t cur = atomic_load_explicit(&g.conn_current, memory_order_relaxed);

    rc = prom_head(out, "sluice_build_info", "gauge",
                   "Build information; the value is always 1.");
    if (rc >= 0) {
        rc = buf_puts(out, "sluice_build_info{version=\"");
        if (rc >= 0)
            rc = prom_escape(out, g_version, true);
        if (rc >= 0)
            rc = buf_puts(out, "\"} 1\n");
    }
    if (rc >= 0)
        rc = prom_head(out, "sluice_start_time_seconds", "gauge",
                       "Unix time the process started.");
    if (rc >= 0)
        rc = buf_printf(out, "sluice_start_time_seconds %.3f\n", g_start_time);
    if (rc >= 0)
        rc = prom_head(out, "sluice_uptime_seconds", "gauge", "Seconds since the process started.");
    if (rc >= 0)
        rc = buf_printf(out, "sluice_uptime_seconds %.3f\n", up);
    if (rc >= 0)
        rc = prom_enum(out, "sluice_config_reloads_total", "counter",
                       "Configuration reloads (SIGHUP) by result.", "result", result_names,
                       g.reloads, 2);
    if (rc >= 0)
        rc = prom_scalar(out, "sluice_config_last_reload_success", "gauge",
                         "1 if the last configuration reload succeeded (or none happened yet).",
                         (uint64_t)atomic_load(&g.last_reload_ok));
    if (rc >= 0)
        rc = prom_scalar(out, "sluice_ready", "gauge",
                         "1 when listening, upstream reachable and plugin chain loaded.",
                         stats_ready(NULL, 0) ? 1 : 0);
    if (rc >= 0)
        rc = prom_scalar(out, "sluice_connections_current", "gauge",
                         "Client connections open now.", cur > 0 ? (uint64_t)cur : 0);
    if (rc >= 0)
        rc = prom_scalar(out, "sluice_connections_total", "counter",
                         "Client connections accepted.", ld(&g.conn_total));
    if (rc >= 0)
        rc = prom_scalar(out, "sluice_connections_refused_total", "counter",
                         "Client connections refused by a connection limit.",
                         ld(&g.conn_refused));
    if (rc >= 0)
        rc = prom_enum(out, "sluice_tls_handshakes_total", "counter",
                       "TLS handshakes with clients by result.", "result", result_names, g.tls, 2);
    if (rc >= 0)
        rc = prom_enum(out, "sluice_smtp_replies_total", "counter",
                       "SMTP replies sent to clients by code class.", "class", rc_names,
                       g.smtp_reply, RC_COUNT);
    if (rc >= 0)
        rc = prom_enum(out, "sluice_upstream_replies_total", "counter",
                       "SMTP replies received from the upstream MTA by code class.", "class",
                       rc_names, g.up_reply, RC_COUNT);
    if (rc >= 0)
        rc = prom_enum(out, "sluice_upstream_errors_total", "counter",
                       "Failures talking to the upstream MTA by kind.", "kind", uperr_names,
                       g.up_error, STATS_UPERR_COUNT);
    if (rc >= 0)
        rc = prom_enum(out, "sluice_timeouts_total", "counter", "Timeouts by kind.", "kind",
                       timeout_names, g.timeout, STATS_TO_COUNT);
    if (rc >= 0)
        rc = prom_scalar(out, "sluice_errors_total", "counter",
                         "Internal errors (memory, spool).", ld(&g.errors));
    if (rc >= 0)
        rc = prom_enum(out, "sluice_transactions_total", "counter",
                       "Transactions (MAIL FROM to final answer) by final verdict.", "verdict",
                       verdict_names, g.tx, STATS_V_COUNT);
    if (rc >= 0)
        rc = prom_enum(out, "sluice_messages_total", "counter",
                       "Transactions that carried message content, by final verdict.", "verdict",
                       verdict_names, g.msg, STATS_V_COUNT);
    if (rc >= 0)
        rc = prom_scalar(out, "sluice_recipients_total", "counter",
                         "Recipients of finished transactions.", ld(&g.rcpts));
    if (rc >= 0)
        rc = prom_scalar(out, "sluice_received_bytes_total", "counter",
                         "Message bytes received from clients.", ld(&g.bytes_in));
    if (rc >= 0)
        rc = prom_scalar(out, "sluice_forwarded_bytes_total", "counter",
                         "Message bytes forwarded to the upstream MTA.", ld(&g.bytes_out));
    if (rc >= 0)
        rc = prom_head(out, "sluice_message_size_bytes", "histogram",
                       "Size of received messages.");
    if (rc >= 0)
        rc = prom_hist(out, "sluice_message_size_bytes", "", &g.msg_size, &spec_size);
    if (rc >= 0)
        rc = prom_head(out, "sluice_transaction_duration_seconds", "histogram",
                       "Transaction time from MAIL FROM to the final reply.");
    if (rc >= 0)
        rc = prom_hist(out, "sluice_transaction_duration_seconds", "", &g.tx_time, &spec_tx);
    if (rc >= 0)
        rc = render_plugins(out);
    if (rc >= 0)
        rc = render_counters(out);
    return rc < 0 ? rc : 0;
}

/* ---- JSON ------------------------------------------------------------------ */

static int json_str(buf_t *out, const char *s)
{
    int rc = buf_puts(out, "\"");
    for (; *s && rc >= 0; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            rc = buf_printf(out, "\\%c", c);
        else if (c < 0x20)
            rc = buf_printf(out, "\\u%04x", c);
        else
            rc = buf_append(out, s, 1);
    }
    if (rc >= 0)
        rc = buf_puts(out, "\"");
    return rc;
}

static int json_enum(buf_t *out, const char *key, const char *const *names,
                     const _Atomic uint64_t *counts, size_t n)
{
    int rc = buf_printf(out, "\"%s\":{", key);
    for (size_t i = 0; i < n && rc >= 0; i++)
        rc = buf_printf(out, "%s\"%s\":%" PRIu64, i ? "," : "", names[i], ld(&counts[i]));
    if (rc >= 0)
        rc = buf_puts(out, "}");
    return rc;
}

static int json_hist(buf_t *out, const struct hist *h, const struct hist_spec *spec)
{
    struct hist_snap s;
    char num[40];
    hist_snapshot(h, spec, &s);
    int rc = buf_puts(out, "{\"buckets\":[");
    for (size_t i = 0; i <= spec->nbounds && rc >= 0; i++) {
        if (i < spec->nbounds)
            fmt_fixed(num, sizeof num, spec->bounds[i], spec->scale);
        else
            snprintf(num, sizeof num, "+Inf");
        rc = buf_printf(out, "%s{\"le\":\"%s\",\"count\":%" PRIu64 "}", i ? "," : "", num,
                        s.cum[i]);
    }
    fmt_fixed(num, sizeof num, s.sum, spec->scale);
    if (rc >= 0)
        rc = buf_printf(out, "],\"sum\":%s,\"count\":%" PRIu64 "}", num, s.count);
    return rc;
}

static int json_plugins(buf_t *out)
{
    size_t n = atomic_load_explicit(&g_nplugins, memory_order_acquire);
    int rc = buf_puts(out, "\"plugins\":[");
    for (size_t i = 0; i < n && rc >= 0; i++) {
        const struct stats_plugin *p = g_plugins[i];
        int br = atomic_load_explicit(&p->breaker, memory_order_relaxed);
        rc = buf_puts(out, i ? ",{\"name\":" : "{\"name\":");
        if (rc >= 0)
            rc = json_str(out, p->name);
        if (rc >= 0)
            rc = buf_puts(out, ",");
        if (rc >= 0)
            rc = json_enum(out, "verdicts", pverdict_names, p->verdict, STATS_PV_COUNT);
        if (rc >= 0)
            rc = buf_printf(out,
                            ",\"timeouts\":%" PRIu64 ",\"errors\":%" PRIu64
                            ",\"circuit_state\":%d,\"circuit_state_name\":\"%s\""
                            ",\"circuit_trips\":%" PRIu64 ",\"phases\":{",
                            ld(&p->timeouts), ld(&p->errors), br,
                            breaker_names[br >= 0 && br <= 2 ? br : 0], ld(&p->trips));
        bool first = true;
        for (size_t ph = 0; ph < STATS_PH_COUNT && rc >= 0; ph++) {
            struct hist_snap s;
            hist_snapshot(&p->phase[ph], &spec_plugin, &s);
            if (s.count == 0)
                continue;
            rc = buf_printf(out, "%s\"%s\":", first ? "" : ",", phase_names[ph]);
            if (rc >= 0)
                rc = json_hist(out, &p->phase[ph], &spec_plugin);
            first = false;
        }
        if (rc >= 0)
            rc = buf_puts(out, "}}");
    }
    if (rc >= 0)
        rc = buf_puts(out, "]");
    return rc;
}

static int json_counters(buf_t *out)
{
    size_t n = atomic_load_explicit(&g_ncounters, memory_order_acquire);
    int rc = buf_puts(out, "\"counters\":[");
    for (size_t i = 0; i < n && rc >= 0; i++) {
        const struct stats_counter *c = g_counters[i];
        size_t nv = atomic_load_explicit(&c->nvalues, memory_order_acquire);
        rc = buf_printf(out, "%s{\"name\":\"%s\",\"plugin\":", i ? "," : "", c->name);
        if (rc >= 0)
            rc = c->plugin[0] ? json_str(out, c->plugin) : buf_puts(out, "null");
        if (rc >= 0)
            rc = buf_puts(out, ",\"help\":");
        if (rc >= 0)
            rc = json_str(out, c->help);
        if (rc >= 0 && c->label_name[0] == '\0') {
            rc = buf_printf(out, ",\"label\":null,\"value\":%" PRIu64 "}", ld(&c->values[0].n));
            continue;
        }
        if (rc >= 0)
            rc = buf_printf(out, ",\"label\":\"%s\",\"values\":{", c->label_name);
        for (size_t v = 0; v < nv && rc >= 0; v++) {
            rc = buf_puts(out, v ? "," : "");
            if (rc >= 0)
                rc = json_str(out, c->values[v].label);
            if (rc >= 0)
                rc = buf_printf(out, ":%" PRIu64, ld(&c->values[v].n));
        }
        if (rc >= 0)
            rc = buf_puts(out, "}}");
    }
    if (rc >= 0)
        rc = buf_puts(out, "]");
    return rc;
}

static int json_decisions(buf_t *out)
{
    int rc = buf_puts(out, "\"decisions\":[");
    pthread_mutex_lock(&dec_lock);
    for (size_t k = 0; k < g_dec_count && rc >= 0; k++) {
        /* newest first: walk backwards from the slot before g_dec_next */
        size_t idx = (g_dec_next + STATS_DECISIONS_MAX - 1 - k) % STATS_DECISIONS_MAX;
        rc = buf_puts(out, k ? "," : "");
        if (rc >= 0)
            rc = buf_puts(out, g_dec[idx]);
    }
    pthread_mutex_unlock(&dec_lock);
    if (rc >= 0)
        rc = buf_puts(out, "]");
    return rc;
}

int stats_render_json(buf_t *out, double now)
{
    static const char *const result_names[2] = {"failure", "success"};
    double up = now - g_start_time;
    if (up < 0)
        up = 0;
    int64_t cur = atomic_load_explicit(&g.conn_current, memory_order_relaxed);
    char why[64];
    bool ready = stats_ready(why, sizeof why);

    int rc = buf_puts(out, "{\"version\":");
    if (rc >= 0)
        rc = json_str(out, g_version);
    if (rc >= 0)
        rc = buf_printf(out,
                        ",\"start_time_seconds\":%.3f,\"uptime_seconds\":%.3f,"
                        "\"ready\":%s,\"ready_reason\":\"%s\",\"listening\":%s,"
                        "\"upstream_ok\":%s,\"chain_loaded\":%s,",
                        g_start_time, up, ready ? "true" : "false", why,
                        atomic_load(&g.listening) ? "true" : "false",
                        atomic_load(&g.upstream_ok) ? "true" : "false",
                        atomic_load(&g.chain_loaded) ? "true" : "false");
    if (rc >= 0)
        rc = json_enum(out, "config_reloads", result_names, g.reloads, 2);
    if (rc >= 0)
        rc = buf_printf(out,
                        ",\"config_last_reload_success\":%d,"
                        "\"connections\":{\"current\":%" PRId64 ",\"total\":%" PRIu64
                        ",\"refused\":%" PRIu64 "},",
                        atomic_load(&g.last_reload_ok), cur > 0 ? cur : 0, ld(&g.conn_total),
                        ld(&g.conn_refused));
    if (rc >= 0)
        rc = json_enum(out, "tls_handshakes", result_names, g.tls, 2);
    if (rc >= 0)
        rc = buf_puts(out, ",");
    if (rc >= 0)
        rc = json_enum(out, "smtp_replies", rc_names, g.smtp_reply, RC_COUNT);
    if (rc >= 0)
        rc = buf_puts(out, ",");
    if (rc >= 0)
        rc = json_enum(out, "upstream_replies", rc_names, g.up_reply, RC_COUNT);
    if (rc >= 0)
        rc = buf_puts(out, ",");
    if (rc >= 0)
        rc = json_enum(out, "upstream_errors", uperr_names, g.up_error, STATS_UPERR_COUNT);
    if (rc >= 0)
        rc = buf_puts(out, ",");
    if (rc >= 0)
        rc = json_enum(out, "timeouts", timeout_names, g.timeout, STATS_TO_COUNT);
    if (rc >= 0)
        rc = buf_printf(out, ",\"errors\":%" PRIu64 ",", ld(&g.errors));
    if (rc >= 0)
        rc = json_enum(out, "transactions", verdict_names, g.tx, STATS_V_COUNT);
    if (rc >= 0)
        rc = buf_puts(out, ",");
    if (rc >= 0)
        rc = json_enum(out, "messages", verdict_names, g.msg, STATS_V_COUNT);
    if (rc >= 0)
        rc = buf_printf(out,
                        ",\"recipients\":%" PRIu64 ",\"received_bytes\":%" PRIu64
                        ",\"forwarded_bytes\":%" PRIu64 ",\"message_size_bytes\":",
                        ld(&g.rcpts), ld(&g.bytes_in), ld(&g.bytes_out));
    if (rc >= 0)
        rc = json_hist(out, &g.msg_size, &spec_size);
    if (rc >= 0)
        rc = buf_puts(out, ",\"transaction_duration_seconds\":");
    if (rc >= 0)
        rc = json_hist(out, &g.tx_time, &spec_tx);
    if (rc >= 0)
        rc = buf_puts(out, ",");
    if (rc >= 0)
        rc = json_plugins(out);
    if (rc >= 0)
        rc = buf_puts(out, ",");
    if (rc >= 0)
        rc = json_counters(out);
    if (rc >= 0)
        rc = buf_puts(out, ",");
    if (rc >= 0)
        rc = json_decisions(out);
    if (rc >= 0)
        rc = buf_puts(out, "}\n");
    return rc < 0 ? rc : 0;
}
