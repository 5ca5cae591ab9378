/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats_json: JSON output of the registry; see stats_json.h.
 *
 * Strings that can hold arbitrary text (version, plugin and counter
 * names, HELP, label values) go through json_escape(); keys and enum words
 * are fixed ASCII and are printed as they are.
 */
#include "stats_json.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "json.h"
#include "names.h"
#include "stats_hist.h"
#include "stats_gauge.h"
#include "stats_priv.h"

static const char *jbool(bool b)
{
    return b ? "true" : "false";
}

/* "key":{"word(0)":n,...}, one member per member of an enum. */
static void emit_enum(buf_t *out, const char *key, stats__word_fn *word,
                      const _Atomic uint64_t *counts, size_t n)
{
    buf_printf(out, "\"%s\":{", key);
    for (size_t i = 0; i < n; i++)
        buf_printf(out, "%s\"%s\":%" PRIu64, i ? "," : "", word((int)i), stats__ld(&counts[i]));
    buf_puts(out, "}");
}

/* {"buckets":[{"le":"0.1","count":n},...,{"le":"+Inf",...}],"sum":x,"count":n} */
static void emit_hist(buf_t *out, const struct stats_hist *h, const struct stats_hist_spec *spec)
{
    struct stats_hist_snap s;
    char num[40];
    stats_hist_snapshot(h, spec, &s);
    buf_puts(out, "{\"buckets\":[");
    for (size_t i = 0; i <= spec->nbounds; i++) {
        if (i < spec->nbounds)
            stats_hist_fmt(num, sizeof num, spec->bounds[i], spec->scale);
        else
            snprintf(num, sizeof num, "+Inf");
        buf_printf(out, "%s{\"le\":\"%s\",\"count\":%" PRIu64 "}", i ? "," : "", num, s.cum[i]);
    }
    stats_hist_fmt(num, sizeof num, s.sum, spec->scale);
    buf_printf(out, "],\"sum\":%s,\"count\":%" PRIu64 "}", num, s.count);
}

/* ---- Core figures ----------------------------------------------------------- */

/* Version, times, readiness, reloads and connections. */
static void emit_process(buf_t *out, const struct stats__core *g, double now)
{
    double start = stats__start_time();
    double up = now - start;
    if (up < 0)
        up = 0;
    int64_t cur = atomic_load_explicit(&g->conn_current, memory_order_relaxed);
    char why[64];
    bool ready = stats_ready(why, sizeof why);

    buf_puts(out, "{\"version\":");
    json_escape(out, stats__version());
    buf_printf(out,
               ",\"start_time_seconds\":%.3f,\"uptime_seconds\":%.3f,"
               "\"ready\":%s,\"ready_reason\":\"%s\",\"listening\":%s,"
               "\"upstream_ok\":%s,\"chain_loaded\":%s,",
               start, up, jbool(ready), why, jbool(atomic_load(&g->listening)),
               jbool(atomic_load(&g->upstream_ok)), jbool(atomic_load(&g->chain_loaded)));
    emit_enum(out, "config_reloads", stats__result_name, g->reloads, 2);
    buf_printf(out,
               ",\"config_last_reload_success\":%d,"
               "\"connections\":{\"current\":%" PRId64 ",\"total\":%" PRIu64 ",\"refused\":%" PRIu64
               "},",
               atomic_load(&g->last_reload_ok), cur > 0 ? cur : 0, stats__ld(&g->conn_total),
               stats__ld(&g->conn_refused));
}

/* TLS, replies, upstream trouble, timeouts, errors, transactions, bytes. */
static void emit_traffic(buf_t *out, const struct stats__core *g)
{
    emit_enum(out, "tls_handshakes", stats__result_name, g->tls, 2);
    buf_puts(out, ",");
    emit_enum(out, "proxy_headers", stats_proxy_name, g->proxy_hdr, STATS_PROXY_COUNT);
    buf_puts(out, ",");
    emit_enum(out, "smtp_auth", stats__auth_name, g->auth, STATS_AUTH_COUNT);
    buf_puts(out, ",");
    emit_enum(out, "smtp_replies", stats__class_name, g->smtp_reply, STATS__RC_COUNT);
    buf_puts(out, ",");
    emit_enum(out, "upstream_replies", stats__class_name, g->up_reply, STATS__RC_COUNT);
    buf_puts(out, ",");
    emit_enum(out, "upstream_errors", stats__uperr_name, g->up_error, STATS_UPERR_COUNT);
    buf_puts(out, ",");
    emit_enum(out, "timeouts", stats__timeout_name, g->timeout, STATS_TO_COUNT);
    buf_printf(out, ",\"errors\":%" PRIu64 ",", stats__ld(&g->errors));
    emit_enum(out, "dns", stats__dns_name, g->dns, STATS_DNS_COUNT);
    buf_printf(out, ",\"upstream_sessions\":{\"held\":%" PRIu64 ",\"waiting\":%" PRIu64 ",",
               stats__ld(&g->upslot_held), stats__ld(&g->upslot_waiting));
    emit_enum(out, "events", stats__upslot_name, g->upslot, STATS_UPSLOT_COUNT);
    buf_printf(out, "},\"upstream_connections\":{\"idle\":%" PRIu64 ",",
               stats__ld(&g->upconn_idle));
    emit_enum(out, "events", stats__upconn_name, g->upconn, STATS_UPCONN_COUNT);
    buf_puts(out, "},\"quarantine\":{");
    emit_enum(out, "events", stats__quar_event_name, g->quar_ev, STATS_QUAR_EVENT_COUNT);
    buf_puts(out, ",");
    emit_enum(out, "event_bytes", stats__quar_event_name, g->quar_ev_bytes, STATS_QUAR_EVENT_COUNT);
    if (atomic_load_explicit(&g->quar_seen, memory_order_relaxed)) {
        buf_puts(out, ",");
        emit_enum(out, "messages", stats__quar_status_name, g->quar_n, STATS_QUAR_STATUS_COUNT);
        buf_puts(out, ",");
        emit_enum(out, "bytes", stats__quar_status_name, g->quar_bytes, STATS_QUAR_STATUS_COUNT);
    }
    buf_printf(out,
               "},\"state\":{\"keys\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"operations\":%" PRIu64
               ",\"errors\":%" PRIu64 ",\"evictions\":%" PRIu64 ",\"expirations\":%" PRIu64,
               stats__ld(&g->state_keys), stats__ld(&g->state_bytes), stats__ld(&g->state_ops),
               stats__ld(&g->state_errors), stats__ld(&g->state_evicted),
               stats__ld(&g->state_expired));
    int redis = atomic_load_explicit(&g->state_redis, memory_order_relaxed);
    if (redis) /* the Redis backend only */
        buf_printf(out, ",\"redis_up\":%d,\"redis_reconnects\":%" PRIu64, redis == 2,
                   stats__ld(&g->state_redis_reconnects));
    buf_puts(out, "},");
    emit_enum(out, "transactions", names_txverdict, g->tx, STATS_V_COUNT);
    buf_puts(out, ",");
    emit_enum(out, "messages", names_txverdict, g->msg, STATS_V_COUNT);
    buf_printf(out,
               ",\"recipients\":%" PRIu64 ",\"received_bytes\":%" PRIu64
               ",\"forwarded_bytes\":%" PRIu64 ",\"message_size_bytes\":",
               stats__ld(&g->rcpts), stats__ld(&g->bytes_in), stats__ld(&g->bytes_out));
    emit_hist(out, &g->msg_size, &stats__spec_size);
    buf_puts(out, ",\"transaction_duration_seconds\":");
    emit_hist(out, &g->tx_time, &stats__spec_tx);
}

/* ---- Plugin records, counters, decisions ------------------------------------ */

static void emit_plugin(buf_t *out, const struct stats_plugin *p)
{
    int br = atomic_load_explicit(&p->breaker, memory_order_relaxed);
    buf_puts(out, "{\"name\":");
    json_escape(out, p->name);
    buf_puts(out, ",");
    emit_enum(out, "verdicts", names_pverdict, p->verdict, STATS_PV_COUNT);
    buf_printf(out,
               ",\"timeouts\":%" PRIu64 ",\"errors\":%" PRIu64
               ",\"circuit_state\":%d,\"circuit_state_name\":\"%s\""
               ",\"circuit_trips\":%" PRIu64 ",\"threads_busy\":%u,\"thread_waits\":%" PRIu64
               ",\"phases\":{",
               stats__ld(&p->timeouts), stats__ld(&p->errors), br,
               stats__breaker_name(br >= 0 && br <= 2 ? br : 0), stats__ld(&p->trips),
               atomic_load_explicit(&p->threads, memory_order_relaxed),
               stats__ld(&p->thread_waits));
    bool first = true;
    for (size_t ph = 0; ph < STATS_PH_COUNT; ph++) {
        struct stats_hist_snap s;
        stats_hist_snapshot(&p->phase[ph], &stats__spec_plugin, &s);
        if (s.count == 0) /* only phases the plugin hooks */
            continue;
        buf_printf(out, "%s\"%s\":", first ? "" : ",", names_phase((int)ph));
        emit_hist(out, &p->phase[ph], &stats__spec_plugin);
        first = false;
    }
    buf_puts(out, "}}");
}

static void emit_counter(buf_t *out, const struct stats_counter *c)
{
    size_t nv = atomic_load_explicit(&c->nvalues, memory_order_acquire);
    buf_printf(out, "{\"name\":\"%s\",\"plugin\":", c->name);
    json_escape(out, c->plugin[0] ? c->plugin : NULL);
    buf_puts(out, ",\"help\":");
    json_escape(out, c->help);
    if (c->label_name[0] == '\0') {
        buf_printf(out, ",\"label\":null,\"value\":%" PRIu64 "}", stats__ld(&c->values[0].n));
        return;
    }
    buf_printf(out, ",\"label\":\"%s\",\"values\":{", c->label_name);
    for (size_t v = 0; v < nv; v++) {
        buf_puts(out, v ? "," : "");
        json_escape(out, c->values[v].label);
        buf_printf(out, ":%" PRIu64, stats__ld(&c->values[v].n));
    }
    buf_puts(out, "}}");
}

/* {"name":..,"help":..,"labels":[..],"series":[{"labels":[..],"value":N}]},
 * live series only, largest value first. */
static void emit_gauge(buf_t *out, size_t i, double now)
{
    struct stats_gauge_view v;
    stats_gauge_view(i, (uint64_t)(now * 1000.0), &v);
    size_t nl = v.label2[0] ? 2 : v.label1[0] ? 1 : 0;
    buf_printf(out, "{\"name\":\"%s\",\"help\":", v.name);
    json_escape(out, v.help);
    buf_puts(out, ",\"labels\":[");
    if (nl > 0)
        buf_printf(out, "\"%s\"", v.label1);
    if (nl > 1)
        buf_printf(out, ",\"%s\"", v.label2);
    buf_puts(out, "],\"series\":[");
    for (size_t k = 0; k < v.n; k++) {
        buf_puts(out, k ? ",{\"labels\":[" : "{\"labels\":[");
        if (nl > 0)
            json_escape(out, v.rows[k].v1);
        if (nl > 1) {
            buf_puts(out, ",");
            json_escape(out, v.rows[k].v2);
        }
        buf_printf(out, "],\"value\":%.15g}", v.rows[k].value);
    }
    buf_puts(out, "]}");
    stats_gauge_view_free(&v);
}

static void emit_decision(const char *json, size_t k, void *arg)
{
    buf_t *out = arg;
    buf_puts(out, k ? "," : "");
    buf_puts(out, json);
}

void stats_json_render(buf_t *out, double now)
{
    const struct stats__core *g = stats__core();
    size_t n;
    emit_process(out, g, now);
    emit_traffic(out, g);

    struct stats_plugin *const *pl = stats__plugins(&n);
    buf_puts(out, ",\"plugins\":[");
    for (size_t i = 0; i < n; i++) {
        buf_puts(out, i ? "," : "");
        emit_plugin(out, pl[i]);
    }
    struct stats_counter *const *cs = stats__counters(&n);
    buf_puts(out, "],\"counters\":[");
    for (size_t i = 0; i < n; i++) {
        buf_puts(out, i ? "," : "");
        emit_counter(out, cs[i]);
    }
    buf_puts(out, "],\"gauges\":[");
    n = stats_gauge_count();
    for (size_t i = 0; i < n; i++) {
        buf_puts(out, i ? "," : "");
        emit_gauge(out, i, now);
    }
    buf_puts(out, "],\"decisions\":[");
    stats__decisions_each(emit_decision, out);
    buf_puts(out, "]}\n");
}
