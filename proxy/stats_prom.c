/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats_prom: Prometheus text output of the registry; see stats_prom.h.
 *
 * Escaping follows the exposition format: in HELP text backslash and
 * newline, in label values also the double quote. Names and label values
 * the registry produces are printable ASCII already (stats.c sanitises
 * them on the way in); HELP text of plugin counters and the version are
 * free text and go through emit_escaped().
 */
#include "stats_prom.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "names.h"
#include "stats_hist.h"
#include "stats_gauge.h"
#include "stats_priv.h"

/* Free text: backslash and newline escaped, and `"` too when quote is set. */
static void emit_escaped(buf_t *out, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            buf_puts(out, "\\\\");
        else if (*s == '\n')
            buf_puts(out, "\\n");
        else if (quote && *s == '"')
            buf_puts(out, "\\\"");
        else
            buf_append(out, s, 1);
    }
}

static void emit_head(buf_t *out, const char *name, const char *type, const char *help)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{label="word(i)"} counts[i], one line per member of an enum. */
static void emit_enum(buf_t *out, const char *name, const char *type, const char *help,
                      const char *label, stats__word_fn *word, const _Atomic uint64_t *counts,
                      size_t n)
{
    emit_head(out, name, type, help);
    for (size_t i = 0; i < n; i++)
        buf_printf(out, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, word((int)i),
                   stats__ld(&counts[i]));
}

static void emit_scalar(buf_t *out, const char *name, const char *type, const char *help,
                        uint64_t v)
{
    emit_head(out, name, type, help);
    buf_printf(out, "%s %" PRIu64 "\n", name, v);
}

/* Samples of one histogram series; `labels` is "" or `plugin="x",...` (with
 * a trailing comma) prepended inside the braces. */
static void emit_hist(buf_t *out, const char *name, const char *labels, const struct stats_hist *h,
                      const struct stats_hist_spec *spec)
{
    struct stats_hist_snap s;
    char num[40];
    stats_hist_snapshot(h, spec, &s);
    for (size_t i = 0; i < spec->nbounds; i++) {
        stats_hist_fmt(num, sizeof num, spec->bounds[i], spec->scale);
        buf_printf(out, "%s_bucket{%sle=\"%s\"} %" PRIu64 "\n", name, labels, num, s.cum[i]);
    }
    buf_printf(out, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, s.count);
    stats_hist_fmt(num, sizeof num, s.sum, spec->scale);
    size_t ll = strlen(labels);
    /* _sum/_count carry the labels without the trailing comma. */
    if (ll > 0)
        buf_printf(out, "%s_sum{%.*s} %s\n%s_count{%.*s} %" PRIu64 "\n", name, (int)(ll - 1),
                   labels, num, name, (int)(ll - 1), labels, s.count);
    else
        buf_printf(out, "%s_sum %s\n%s_count %" PRIu64 "\n", name, num, name, s.count);
}

/* ---- Core figures ----------------------------------------------------------- */

/* Build, process and readiness gauges. */
static void emit_process(buf_t *out, const struct stats__core *g, double now)
{
    double start = stats__start_time();
    double up = now - start;
    if (up < 0)
        up = 0;
    emit_head(out, "sluice_build_info", "gauge", "Build information; the value is always 1.");
    buf_puts(out, "sluice_build_info{version=\"");
    emit_escaped(out, stats__version(), true);
    buf_puts(out, "\"} 1\n");
    emit_head(out, "sluice_start_time_seconds", "gauge", "Unix time the process started.");
    buf_printf(out, "sluice_start_time_seconds %.3f\n", start);
    emit_head(out, "sluice_uptime_seconds", "gauge", "Seconds since the process started.");
    buf_printf(out, "sluice_uptime_seconds %.3f\n", up);
    emit_enum(out, "sluice_config_reloads_total", "counter",
              "Configuration reloads (SIGHUP) by result.", "result", stats__result_name, g->reloads,
              2);
    emit_scalar(out, "sluice_config_last_reload_success", "gauge",
                "1 if the last configuration reload succeeded (or none happened yet).",
                (uint64_t)atomic_load(&g->last_reload_ok));
    emit_scalar(out, "sluice_ready", "gauge",
                "1 when listening, upstream reachable and plugin chain loaded.",
                stats_ready(NULL, 0) ? 1 : 0);
}

/* Connections, replies, upstream trouble, timeouts and errors. */
static void emit_smtp(buf_t *out, const struct stats__core *g)
{
    int64_t cur = atomic_load_explicit(&g->conn_current, memory_order_relaxed);
    emit_scalar(out, "sluice_connections_current", "gauge", "Client connections open now.",
                cur > 0 ? (uint64_t)cur : 0);
    emit_scalar(out, "sluice_connections_total", "counter", "Client connections accepted.",
                stats__ld(&g->conn_total));
    emit_scalar(out, "sluice_connections_refused_total", "counter",
                "Client connections refused by a connection limit.", stats__ld(&g->conn_refused));
    emit_enum(out, "sluice_tls_handshakes_total", "counter",
              "TLS handshakes with clients by result.", "result", stats__result_name, g->tls, 2);
    emit_enum(out, "sluice_proxy_headers_total", "counter",
              "PROXY protocol headers on listeners that take them, by result.", "result",
              stats_proxy_name, g->proxy_hdr, STATS_PROXY_COUNT);
    emit_enum(out, "sluice_smtp_auth_total", "counter",
              "SMTP AUTH exchanges by result (failure: credentials refused).", "result",
              stats__auth_name, g->auth, STATS_AUTH_COUNT);
    emit_enum(out, "sluice_smtp_replies_total", "counter",
              "SMTP replies sent to clients by code class.", "class", stats__class_name,
              g->smtp_reply, STATS__RC_COUNT);
    emit_enum(out, "sluice_upstream_replies_total", "counter",
              "SMTP replies received from the upstream MTA by code class.", "class",
              stats__class_name, g->up_reply, STATS__RC_COUNT);
    emit_enum(out, "sluice_upstream_errors_total", "counter",
              "Failures talking to the upstream MTA by kind.", "kind", stats__uperr_name,
              g->up_error, STATS_UPERR_COUNT);
    emit_enum(out, "sluice_timeouts_total", "counter", "Timeouts by kind.", "kind",
              stats__timeout_name, g->timeout, STATS_TO_COUNT);
    emit_scalar(out, "sluice_errors_total", "counter", "Internal errors (memory, spool).",
                stats__ld(&g->errors));
    emit_enum(out, "sluice_dns_requests_total", "counter",
              "DNS requests (client names, plugin queries) by what became of them.", "outcome",
              stats__dns_name, g->dns, STATS_DNS_COUNT);
    emit_scalar(out, "sluice_upstream_sessions", "gauge",
                "Upstream MTA sessions held for clients ([upstream] max_sessions).",
                stats__ld(&g->upslot_held));
    emit_scalar(out, "sluice_upstream_sessions_waiting", "gauge",
                "Clients waiting for an upstream session.", stats__ld(&g->upslot_waiting));
    emit_enum(out, "sluice_upstream_session_events_total", "counter",
              "Upstream session pool: waits, waits that timed out (451 4.4.5), sessions taken "
              "back from idle clients.",
              "event", stats__upslot_name, g->upslot, STATS_UPSLOT_COUNT);
    emit_enum(out, "sluice_quarantine_events_total", "counter",
              "What the daemon did to the quarantine: messages held, expired by the sweep, index "
              "rows that could not be written (file kept), sweep failures.",
              "event", stats__quar_event_name, g->quar_ev, STATS_QUAR_EVENT_COUNT);
    emit_enum(out, "sluice_quarantine_event_bytes_total", "counter",
              "Bytes of the messages held and expired by the daemon.", "event",
              stats__quar_event_name, g->quar_ev_bytes, STATS_QUAR_EVENT_COUNT);
    if (atomic_load_explicit(&g->quar_seen, memory_order_relaxed)) {
        emit_enum(out, "sluice_quarantine_messages", "gauge",
                  "Messages in the quarantine index by status (read from the index by the sweep; "
                  "the CLI and the console release and delete in other processes).",
                  "status", stats__quar_status_name, g->quar_n, STATS_QUAR_STATUS_COUNT);
        emit_enum(out, "sluice_quarantine_bytes", "gauge",
                  "Bytes of the messages in the quarantine index by status.", "status",
                  stats__quar_status_name, g->quar_bytes, STATS_QUAR_STATUS_COUNT);
    }
    emit_scalar(out, "sluice_state_keys", "gauge",
                "Keys in the plugins' shared state store ([state] max_keys).",
                stats__ld(&g->state_keys));
    emit_scalar(out, "sluice_state_bytes", "gauge",
                "Bytes of keys and values in the shared state store ([state] max_memory).",
                stats__ld(&g->state_bytes));
    emit_scalar(out, "sluice_state_operations_total", "counter",
                "Operations plugins made on the shared state.", stats__ld(&g->state_ops));
    emit_scalar(out, "sluice_state_errors_total", "counter",
                "Shared state operations that failed (wrong type, overflow, full set).",
                stats__ld(&g->state_errors));
    emit_scalar(out, "sluice_state_evictions_total", "counter",
                "Keys pushed out of the shared state store by its bounds (least recently used).",
                stats__ld(&g->state_evicted));
    emit_scalar(out, "sluice_state_expirations_total", "counter",
                "Keys dropped from the shared state store when their time was up.",
                stats__ld(&g->state_expired));
    int redis = atomic_load_explicit(&g->state_redis, memory_order_relaxed);
    if (redis) { /* the Redis backend only */
        emit_scalar(out, "sluice_state_redis_up", "gauge",
                    "1 while the connection to the shared state's Redis is usable, else 0.",
                    redis == 2);
        emit_scalar(out, "sluice_state_redis_reconnects_total", "counter",
                    "Times the connection to the shared state's Redis came back after a loss.",
                    stats__ld(&g->state_redis_reconnects));
    }
    emit_enum(out, "sluice_upstream_connections_total", "counter",
              "Upstream connections for sessions: opened anew or reused from the idle pool; "
              "idle ones closed by sluice (expired) or by the MTA (ended).",
              "event", stats__upconn_name, g->upconn, STATS_UPCONN_COUNT);
    emit_scalar(out, "sluice_upstream_connections_idle", "gauge",
                "Upstream connections kept idle for reuse ([upstream] reuse_max_idle).",
                stats__ld(&g->upconn_idle));
}

/* Transactions, messages, their sizes and durations. */
static void emit_mail(buf_t *out, const struct stats__core *g)
{
    emit_enum(out, "sluice_transactions_total", "counter",
              "Transactions (MAIL FROM to final answer) by final verdict.", "verdict",
              names_txverdict, g->tx, STATS_V_COUNT);
    emit_enum(out, "sluice_messages_total", "counter",
              "Transactions that carried message content, by final verdict.", "verdict",
              names_txverdict, g->msg, STATS_V_COUNT);
    emit_scalar(out, "sluice_recipients_total", "counter", "Recipients of finished transactions.",
                stats__ld(&g->rcpts));
    emit_scalar(out, "sluice_received_bytes_total", "counter",
                "Message bytes received from clients.", stats__ld(&g->bytes_in));
    emit_scalar(out, "sluice_forwarded_bytes_total", "counter",
                "Message bytes forwarded to the upstream MTA.", stats__ld(&g->bytes_out));
    emit_head(out, "sluice_message_size_bytes", "histogram", "Size of received messages.");
    emit_hist(out, "sluice_message_size_bytes", "", &g->msg_size, &stats__spec_size);
    emit_head(out, "sluice_transaction_duration_seconds", "histogram",
              "Transaction time from MAIL FROM to the final reply.");
    emit_hist(out, "sluice_transaction_duration_seconds", "", &g->tx_time, &stats__spec_tx);
}

/* ---- Plugin records --------------------------------------------------------- */

/* `plugin="x"`, or `plugin="x",phase="y",` (trailing comma) for emit_hist(). */
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

/* The plain per-plugin counters, one family each. */
static const struct {
    const char *name, *help;
    size_t off; /* of an _Atomic uint64_t in struct stats_plugin */
} plugin_counters[] = {
    {"sluice_plugin_timeouts_total", "Hook calls that ran past the plugin's timeout.",
     offsetof(struct stats_plugin, timeouts)},
    {"sluice_plugin_errors_total", "Hook calls that failed (plugin error).",
     offsetof(struct stats_plugin, errors)},
    {"sluice_plugin_circuit_trips_total", "Times the plugin's circuit breaker opened.",
     offsetof(struct stats_plugin, trips)},
    {"sluice_plugin_thread_waits_total",
     "Blocking hook calls that waited because the plugin held all the pool threads it may.",
     offsetof(struct stats_plugin, thread_waits)},
};

static void emit_plugins(buf_t *out)
{
    size_t n;
    struct stats_plugin *const *pl = stats__plugins(&n);
    char lab[STATS_NAME_MAX * 2 + 32];
    if (n == 0)
        return;

    emit_head(out, "sluice_plugin_verdicts_total", "counter",
              "Hook answers per plugin instance and verdict.");
    for (size_t i = 0; i < n; i++) {
        plugin_labels(lab, sizeof lab, pl[i]->name, NULL);
        for (size_t v = 0; v < STATS_PV_COUNT; v++)
            buf_printf(out, "sluice_plugin_verdicts_total{%s,verdict=\"%s\"} %" PRIu64 "\n", lab,
                       names_pverdict((int)v), stats__ld(&pl[i]->verdict[v]));
    }
    for (size_t k = 0; k < sizeof plugin_counters / sizeof plugin_counters[0]; k++) {
        emit_head(out, plugin_counters[k].name, "counter", plugin_counters[k].help);
        for (size_t i = 0; i < n; i++) {
            plugin_labels(lab, sizeof lab, pl[i]->name, NULL);
            const _Atomic uint64_t *c =
                (const _Atomic uint64_t *)((const char *)pl[i] + plugin_counters[k].off);
            buf_printf(out, "%s{%s} %" PRIu64 "\n", plugin_counters[k].name, lab, stats__ld(c));
        }
    }
    emit_head(out, "sluice_plugin_circuit_state", "gauge",
              "Circuit-breaker state per plugin: 0 closed, 1 open, 2 half-open.");
    for (size_t i = 0; i < n; i++) {
        plugin_labels(lab, sizeof lab, pl[i]->name, NULL);
        buf_printf(out, "sluice_plugin_circuit_state{%s} %d\n", lab,
                   atomic_load_explicit(&pl[i]->breaker, memory_order_relaxed));
    }
    emit_head(out, "sluice_plugin_threads_busy", "gauge",
              "Pool threads the plugin's blocking hooks hold now, timed-out hooks included.");
    for (size_t i = 0; i < n; i++) {
        plugin_labels(lab, sizeof lab, pl[i]->name, NULL);
        buf_printf(out, "sluice_plugin_threads_busy{%s} %u\n", lab,
                   atomic_load_explicit(&pl[i]->threads, memory_order_relaxed));
    }
    emit_head(out, "sluice_plugin_duration_seconds", "histogram",
              "Time one plugin hook took, per plugin and SMTP phase.");
    for (size_t i = 0; i < n; i++) {
        for (size_t ph = 0; ph < STATS_PH_COUNT; ph++) {
            struct stats_hist_snap s;
            stats_hist_snapshot(&pl[i]->phase[ph], &stats__spec_plugin, &s);
            if (s.count == 0) /* only phases the plugin hooks */
                continue;
            plugin_labels(lab, sizeof lab, pl[i]->name, names_phase((int)ph));
            emit_hist(out, "sluice_plugin_duration_seconds", lab, &pl[i]->phase[ph],
                      &stats__spec_plugin);
        }
    }
}

/* ---- Plugin-defined counters ------------------------------------------------ */

/* name="value" inside braces, value escaped for the exposition format. */
static void emit_label(buf_t *out, const char *name, const char *value, bool comma)
{
    buf_printf(out, "%s%s=\"", comma ? "," : "", name);
    emit_escaped(out, value, true);
    buf_puts(out, "\"");
}

static void emit_counter_series(buf_t *out, const struct stats_counter *c)
{
    size_t nv = atomic_load_explicit(&c->nvalues, memory_order_acquire);
    bool labels = c->plugin[0] || c->label_name[0];
    for (size_t v = 0; v < nv; v++) {
        buf_printf(out, "%s%s", c->name, labels ? "{" : "");
        if (c->plugin[0])
            emit_label(out, "plugin", c->plugin, false);
        if (c->label_name[0])
            emit_label(out, c->label_name, c->values[v].label, c->plugin[0] != '\0');
        buf_printf(out, "%s %" PRIu64 "\n", labels ? "}" : "", stats__ld(&c->values[v].n));
    }
}

/* One family per name: the records of several plugin instances that share a
 * name are printed together under one HELP/TYPE (the exposition format wants
 * a family's lines contiguous). A family without any sample is left out. */
static void emit_counters(buf_t *out)
{
    size_t n;
    struct stats_counter *const *cs = stats__counters(&n);
    for (size_t i = 0; i < n; i++) {
        const struct stats_counter *c = cs[i];
        bool seen = false, samples = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(cs[j]->name, c->name) == 0;
        if (seen)
            continue;
        for (size_t k = i; k < n && !samples; k++)
            samples = strcmp(cs[k]->name, c->name) == 0 &&
                      atomic_load_explicit(&cs[k]->nvalues, memory_order_acquire) > 0;
        if (!samples)
            continue;
        buf_printf(out, "# HELP %s ", c->name);
        emit_escaped(out, c->help, false);
        buf_printf(out, "\n# TYPE %s counter\n", c->name);
        for (size_t k = i; k < n; k++)
            if (strcmp(cs[k]->name, c->name) == 0)
                emit_counter_series(out, cs[k]);
    }
}

/* Plugin-set gauges: one family each (names are unique); a gauge without
 * a live series is left out, as a counter family without samples is. */
static void emit_gauges(buf_t *out, double now)
{
    size_t n = stats_gauge_count();
    for (size_t i = 0; i < n; i++) {
        struct stats_gauge_view v;
        stats_gauge_view(i, (uint64_t)(now * 1000.0), &v);
        if (v.n > 0) {
            buf_printf(out, "# HELP %s ", v.name);
            emit_escaped(out, v.help, false);
            buf_printf(out, "\n# TYPE %s gauge\n", v.name);
        }
        for (size_t k = 0; k < v.n; k++) {
            buf_puts(out, v.name);
            if (v.label1[0]) {
                buf_puts(out, "{");
                emit_label(out, v.label1, v.rows[k].v1, false);
                if (v.label2[0])
                    emit_label(out, v.label2, v.rows[k].v2, true);
                buf_puts(out, "}");
            }
            buf_printf(out, " %.15g\n", v.rows[k].value);
        }
        stats_gauge_view_free(&v);
    }
}

void stats_prom_render(buf_t *out, double now)
{
    const struct stats__core *g = stats__core();
    emit_process(out, g, now);
    emit_smtp(out, g);
    emit_mail(out, g);
    emit_plugins(out);
    emit_counters(out);
    emit_gauges(out, now);
}
