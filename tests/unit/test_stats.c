/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for the stats registry (stats.c: counters, histograms, plugin
 * records, bounded labels, decision ring), its renderers (stats_prom.c
 * exposition text, stats_json.c document) and the listen-address parser of
 * stats_http.c. Every test starts from stats_reset().
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "stats.h"
#include "stats_http.h"
#include "stats_json.h"
#include "stats_prom.h"

#define T0 1700000000.0

static int reset(void **state)
{
    (void)state;
    stats_reset(T0);
    return 0;
}

/* The whole exposition at now = T0 + 60.5. Caller frees. */
static char *render(void)
{
    buf_t b = BUF_INIT;
    stats_prom_render(&b, T0 + 60.5);
    return b.ptr;
}

/* A text from `from` (inclusive) to the end. */
static const char *from(const char *text, const char *marker)
{
    const char *p = strstr(text, marker);
    assert_non_null(p);
    return p;
}

static void assert_has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return;
    }
    fail_msg("line not found: %s\n--- in ---\n%s", line, text);
}

/* ---- The exact core exposition for a known state ------------------------- */

static const char want_core[] =
    "# HELP sluice_build_info Build information; the value is always 1.\n"
    "# TYPE sluice_build_info gauge\n"
    "sluice_build_info{version=\"1.2.3\"} 1\n"
    "# HELP sluice_start_time_seconds Unix time the process started.\n"
    "# TYPE sluice_start_time_seconds gauge\n"
    "sluice_start_time_seconds 1700000000.000\n"
    "# HELP sluice_uptime_seconds Seconds since the process started.\n"
    "# TYPE sluice_uptime_seconds gauge\n"
    "sluice_uptime_seconds 60.500\n"
    "# HELP sluice_config_reloads_total Configuration reloads (SIGHUP) by result.\n"
    "# TYPE sluice_config_reloads_total counter\n"
    "sluice_config_reloads_total{result=\"failure\"} 1\n"
    "sluice_config_reloads_total{result=\"success\"} 1\n"
    "# HELP sluice_config_last_reload_success 1 if the last configuration reload succeeded "
    "(or none happened yet).\n"
    "# TYPE sluice_config_last_reload_success gauge\n"
    "sluice_config_last_reload_success 0\n"
    "# HELP sluice_ready 1 when listening, upstream reachable and plugin chain loaded.\n"
    "# TYPE sluice_ready gauge\n"
    "sluice_ready 0\n"
    "# HELP sluice_connections_current Client connections open now.\n"
    "# TYPE sluice_connections_current gauge\n"
    "sluice_connections_current 2\n"
    "# HELP sluice_connections_total Client connections accepted.\n"
    "# TYPE sluice_connections_total counter\n"
    "sluice_connections_total 3\n"
    "# HELP sluice_connections_refused_total Client connections refused by a connection limit.\n"
    "# TYPE sluice_connections_refused_total counter\n"
    "sluice_connections_refused_total 1\n"
    "# HELP sluice_tls_handshakes_total TLS handshakes with clients by result.\n"
    "# TYPE sluice_tls_handshakes_total counter\n"
    "sluice_tls_handshakes_total{result=\"failure\"} 1\n"
    "sluice_tls_handshakes_total{result=\"success\"} 2\n"
    "# HELP sluice_proxy_headers_total PROXY protocol headers on listeners that take them, by "
    "result.\n"
    "# TYPE sluice_proxy_headers_total counter\n"
    "sluice_proxy_headers_total{result=\"ok\"} 0\n"
    "sluice_proxy_headers_total{result=\"malformed\"} 0\n"
    "sluice_proxy_headers_total{result=\"untrusted\"} 0\n"
    "# HELP sluice_smtp_auth_total SMTP AUTH exchanges by result (failure: credentials "
    "refused).\n"
    "# TYPE sluice_smtp_auth_total counter\n"
    "sluice_smtp_auth_total{result=\"success\"} 1\n"
    "sluice_smtp_auth_total{result=\"failure\"} 2\n"
    "sluice_smtp_auth_total{result=\"tempfail\"} 0\n"
    "sluice_smtp_auth_total{result=\"aborted\"} 1\n"
    "sluice_smtp_auth_total{result=\"blocked\"} 0\n"
    "# HELP sluice_smtp_replies_total SMTP replies sent to clients by code class.\n"
    "# TYPE sluice_smtp_replies_total counter\n"
    "sluice_smtp_replies_total{class=\"2xx\"} 3\n"
    "sluice_smtp_replies_total{class=\"3xx\"} 1\n"
    "sluice_smtp_replies_total{class=\"4xx\"} 1\n"
    "sluice_smtp_replies_total{class=\"5xx\"} 1\n"
    "# HELP sluice_upstream_replies_total SMTP replies received from the upstream MTA by code "
    "class.\n"
    "# TYPE sluice_upstream_replies_total counter\n"
    "sluice_upstream_replies_total{class=\"2xx\"} 2\n"
    "sluice_upstream_replies_total{class=\"3xx\"} 0\n"
    "sluice_upstream_replies_total{class=\"4xx\"} 0\n"
    "sluice_upstream_replies_total{class=\"5xx\"} 1\n"
    "# HELP sluice_upstream_errors_total Failures talking to the upstream MTA by kind.\n"
    "# TYPE sluice_upstream_errors_total counter\n"
    "sluice_upstream_errors_total{kind=\"connect\"} 1\n"
    "sluice_upstream_errors_total{kind=\"protocol\"} 0\n"
    "sluice_upstream_errors_total{kind=\"timeout\"} 0\n"
    "sluice_upstream_errors_total{kind=\"lost\"} 0\n"
    "sluice_upstream_errors_total{kind=\"tls\"} 1\n"
    "# HELP sluice_timeouts_total Timeouts by kind.\n"
    "# TYPE sluice_timeouts_total counter\n"
    "sluice_timeouts_total{kind=\"command\"} 2\n"
    "sluice_timeouts_total{kind=\"data\"} 0\n"
    "sluice_timeouts_total{kind=\"upstream\"} 0\n"
    "sluice_timeouts_total{kind=\"plugin\"} 1\n"
    "# HELP sluice_errors_total Internal errors (memory, spool).\n"
    "# TYPE sluice_errors_total counter\n"
    "sluice_errors_total 1\n"
    "# HELP sluice_dns_requests_total DNS requests (client names, plugin queries) by what became "
    "of them.\n"
    "# TYPE sluice_dns_requests_total counter\n"
    "sluice_dns_requests_total{outcome=\"query\"} 3\n"
    "sluice_dns_requests_total{outcome=\"cache_hit\"} 1\n"
    "sluice_dns_requests_total{outcome=\"timeout\"} 2\n"
    "sluice_dns_requests_total{outcome=\"dropped\"} 1\n"
    "sluice_dns_requests_total{outcome=\"failure\"} 0\n"
    "sluice_dns_requests_total{outcome=\"cancelled\"} 1\n"
    "sluice_dns_requests_total{outcome=\"joined\"} 0\n"
    "# HELP sluice_upstream_sessions Upstream MTA sessions held for clients ([upstream] "
    "max_sessions).\n"
    "# TYPE sluice_upstream_sessions gauge\n"
    "sluice_upstream_sessions 7\n"
    "# HELP sluice_upstream_sessions_waiting Clients waiting for an upstream session.\n"
    "# TYPE sluice_upstream_sessions_waiting gauge\n"
    "sluice_upstream_sessions_waiting 2\n"
    "# HELP sluice_upstream_session_events_total Upstream session pool: waits, waits that timed "
    "out (451 4.4.5), sessions taken back from idle clients.\n"
    "# TYPE sluice_upstream_session_events_total counter\n"
    "sluice_upstream_session_events_total{event=\"wait\"} 2\n"
    "sluice_upstream_session_events_total{event=\"expired\"} 0\n"
    "sluice_upstream_session_events_total{event=\"reclaimed_idle\"} 0\n"
    "sluice_upstream_session_events_total{event=\"reclaimed_in_transaction\"} 1\n"
    "# HELP sluice_quarantine_events_total What the daemon did to the quarantine: messages "
    "held, expired by the sweep, index rows that could not be written (file kept), sweep "
    "failures.\n"
    "# TYPE sluice_quarantine_events_total counter\n"
    "sluice_quarantine_events_total{event=\"held\"} 0\n"
    "sluice_quarantine_events_total{event=\"expired\"} 0\n"
    "sluice_quarantine_events_total{event=\"index_error\"} 0\n"
    "sluice_quarantine_events_total{event=\"sweep_error\"} 0\n"
    "# HELP sluice_quarantine_event_bytes_total Bytes of the messages held and expired by the "
    "daemon.\n"
    "# TYPE sluice_quarantine_event_bytes_total counter\n"
    "sluice_quarantine_event_bytes_total{event=\"held\"} 0\n"
    "sluice_quarantine_event_bytes_total{event=\"expired\"} 0\n"
    "sluice_quarantine_event_bytes_total{event=\"index_error\"} 0\n"
    "sluice_quarantine_event_bytes_total{event=\"sweep_error\"} 0\n"
    "# HELP sluice_state_keys Keys in the plugins' shared state store ([state] max_keys).\n"
    "# TYPE sluice_state_keys gauge\n"
    "sluice_state_keys 5\n"
    "# HELP sluice_state_bytes Bytes of keys and values in the shared state store ([state] "
    "max_memory).\n"
    "# TYPE sluice_state_bytes gauge\n"
    "sluice_state_bytes 900\n"
    "# HELP sluice_state_operations_total Operations plugins made on the shared state.\n"
    "# TYPE sluice_state_operations_total counter\n"
    "sluice_state_operations_total 40\n"
    "# HELP sluice_state_errors_total Shared state operations that failed (wrong type, "
    "overflow, full set).\n"
    "# TYPE sluice_state_errors_total counter\n"
    "sluice_state_errors_total 1\n"
    "# HELP sluice_state_evictions_total Keys pushed out of the shared state store by its bounds "
    "(least recently used).\n"
    "# TYPE sluice_state_evictions_total counter\n"
    "sluice_state_evictions_total 2\n"
    "# HELP sluice_state_expirations_total Keys dropped from the shared state store when their "
    "time was up.\n"
    "# TYPE sluice_state_expirations_total counter\n"
    "sluice_state_expirations_total 3\n"
    "# HELP sluice_upstream_connections_total Upstream connections for sessions: opened anew or "
    "reused from the idle pool; idle ones closed by sluice (expired) or by the MTA (ended).\n"
    "# TYPE sluice_upstream_connections_total counter\n"
    "sluice_upstream_connections_total{event=\"opened\"} 1\n"
    "sluice_upstream_connections_total{event=\"reused\"} 2\n"
    "sluice_upstream_connections_total{event=\"expired\"} 0\n"
    "sluice_upstream_connections_total{event=\"ended\"} 1\n"
    "sluice_upstream_connections_total{event=\"not_kept\"} 0\n"
    "# HELP sluice_upstream_connections_idle Upstream connections kept idle for reuse "
    "([upstream] reuse_max_idle).\n"
    "# TYPE sluice_upstream_connections_idle gauge\n"
    "sluice_upstream_connections_idle 3\n"
    "# HELP sluice_transactions_total Transactions (MAIL FROM to final answer) by final verdict.\n"
    "# TYPE sluice_transactions_total counter\n"
    "sluice_transactions_total{verdict=\"accepted\"} 1\n"
    "sluice_transactions_total{verdict=\"rejected\"} 1\n"
    "sluice_transactions_total{verdict=\"tempfailed\"} 1\n"
    "sluice_transactions_total{verdict=\"discarded\"} 0\n"
    "sluice_transactions_total{verdict=\"quarantined\"} 0\n"
    "sluice_transactions_total{verdict=\"aborted\"} 1\n"
    "# HELP sluice_messages_total Transactions that carried message content, by final verdict.\n"
    "# TYPE sluice_messages_total counter\n"
    "sluice_messages_total{verdict=\"accepted\"} 1\n"
    "sluice_messages_total{verdict=\"rejected\"} 1\n"
    "sluice_messages_total{verdict=\"tempfailed\"} 0\n"
    "sluice_messages_total{verdict=\"discarded\"} 0\n"
    "sluice_messages_total{verdict=\"quarantined\"} 0\n"
    "sluice_messages_total{verdict=\"aborted\"} 0\n"
    "# HELP sluice_recipients_total Recipients of finished transactions.\n"
    "# TYPE sluice_recipients_total counter\n"
    "sluice_recipients_total 4\n"
    "# HELP sluice_received_bytes_total Message bytes received from clients.\n"
    "# TYPE sluice_received_bytes_total counter\n"
    "sluice_received_bytes_total 6000\n"
    "# HELP sluice_forwarded_bytes_total Message bytes forwarded to the upstream MTA.\n"
    "# TYPE sluice_forwarded_bytes_total counter\n"
    "sluice_forwarded_bytes_total 1100\n"
    "# HELP sluice_message_size_bytes Size of received messages.\n"
    "# TYPE sluice_message_size_bytes histogram\n"
    "sluice_message_size_bytes_bucket{le=\"1024\"} 1\n"
    "sluice_message_size_bytes_bucket{le=\"4096\"} 1\n"
    "sluice_message_size_bytes_bucket{le=\"16384\"} 2\n"
    "sluice_message_size_bytes_bucket{le=\"65536\"} 2\n"
    "sluice_message_size_bytes_bucket{le=\"262144\"} 2\n"
    "sluice_message_size_bytes_bucket{le=\"1048576\"} 2\n"
    "sluice_message_size_bytes_bucket{le=\"4194304\"} 2\n"
    "sluice_message_size_bytes_bucket{le=\"16777216\"} 2\n"
    "sluice_message_size_bytes_bucket{le=\"67108864\"} 2\n"
    "sluice_message_size_bytes_bucket{le=\"+Inf\"} 2\n"
    "sluice_message_size_bytes_sum 6000\n"
    "sluice_message_size_bytes_count 2\n"
    "# HELP sluice_transaction_duration_seconds Transaction time from MAIL FROM to the final "
    "reply.\n"
    "# TYPE sluice_transaction_duration_seconds histogram\n"
    "sluice_transaction_duration_seconds_bucket{le=\"0.005\"} 1\n"
    "sluice_transaction_duration_seconds_bucket{le=\"0.01\"} 2\n"
    "sluice_transaction_duration_seconds_bucket{le=\"0.025\"} 2\n"
    "sluice_transaction_duration_seconds_bucket{le=\"0.05\"} 2\n"
    "sluice_transaction_duration_seconds_bucket{le=\"0.1\"} 2\n"
    "sluice_transaction_duration_seconds_bucket{le=\"0.25\"} 2\n"
    "sluice_transaction_duration_seconds_bucket{le=\"0.5\"} 3\n"
    "sluice_transaction_duration_seconds_bucket{le=\"1\"} 3\n"
    "sluice_transaction_duration_seconds_bucket{le=\"2.5\"} 3\n"
    "sluice_transaction_duration_seconds_bucket{le=\"5\"} 3\n"
    "sluice_transaction_duration_seconds_bucket{le=\"10\"} 3\n"
    "sluice_transaction_duration_seconds_bucket{le=\"30\"} 3\n"
    "sluice_transaction_duration_seconds_bucket{le=\"60\"} 3\n"
    "sluice_transaction_duration_seconds_bucket{le=\"300\"} 3\n"
    "sluice_transaction_duration_seconds_bucket{le=\"+Inf\"} 4\n"
    "sluice_transaction_duration_seconds_sum 400.515\n"
    "sluice_transaction_duration_seconds_count 4\n";

static void fire_core_events(void)
{
    stats_set_build_info("1.2.3");
    stats_conn_open();
    stats_conn_open();
    stats_conn_open();
    stats_conn_close();
    stats_conn_refused();
    stats_tls_handshake(true);
    stats_tls_handshake(true);
    stats_tls_handshake(false);
    stats_auth(STATS_AUTH_SUCCESS);
    stats_auth(STATS_AUTH_FAILURE);
    stats_auth(STATS_AUTH_FAILURE);
    stats_auth(STATS_AUTH_ABORTED);
    static const int replies[] = {220, 250, 250, 354, 451, 550, 199, 600};
    for (size_t i = 0; i < sizeof replies / sizeof replies[0]; i++)
        stats_smtp_reply(replies[i]);
    stats_upstream_reply(250);
    stats_upstream_reply(250);
    stats_upstream_reply(554);
    stats_upstream_error(STATS_UPERR_CONNECT);
    stats_upstream_error(STATS_UPERR_TLS);
    stats_timeout(STATS_TO_COMMAND);
    stats_timeout(STATS_TO_COMMAND);
    stats_timeout(STATS_TO_PLUGIN);
    stats_error();
    static const enum stats_dns_event dns[] = {
        STATS_DNS_QUERY,     STATS_DNS_QUERY,     STATS_DNS_QUERY,
        STATS_DNS_CACHE_HIT, STATS_DNS_TIMEOUT,   STATS_DNS_TIMEOUT,
        STATS_DNS_DROPPED,   STATS_DNS_CANCELLED, STATS_DNS_COUNT, /* out of range: ignored */
    };
    for (size_t i = 0; i < sizeof dns / sizeof dns[0]; i++)
        stats_dns(dns[i]);
    stats_upslots(7, 2);
    stats_upslot(STATS_UPSLOT_WAIT);
    stats_upslot(STATS_UPSLOT_WAIT);
    stats_upslot(STATS_UPSLOT_RECLAIM_TX);
    stats_upconn(STATS_UPCONN_OPENED);
    stats_upconn(STATS_UPCONN_REUSED);
    stats_upconn(STATS_UPCONN_REUSED);
    stats_upconn(STATS_UPCONN_ENDED);
    stats_upconn_idle(3);
    stats_state(5, 900, 40, 1, 2, 3);
    stats_upslot(STATS_UPSLOT_COUNT); /* out of range: ignored */
    stats_transaction(STATS_V_ACCEPTED, 2, 1000, 1100, 0.5);
    stats_transaction(STATS_V_REJECTED, 1, 5000, 0, 0.01);
    stats_transaction(STATS_V_TEMPFAILED, 1, 0, 0, 0.005);
    stats_transaction(STATS_V_ABORTED, 0, 0, 0, 400);
    stats_config_reload(true);
    stats_config_reload(false);
    stats_set_listening(true);
    stats_set_upstream_ok(true);
    stats_set_chain_loaded(false);
}

static void test_core_exposition_exact(void **state)
{
    (void)state;
    fire_core_events();
    char *got = render();
    assert_string_equal(got, want_core);
    free(got);
}

/* A fresh process: every family present, all zero, one reload-success gauge of 1. */
static void test_zero_state(void **state)
{
    (void)state;
    char *got = render();
    static const char *const want[] = {
        "sluice_connections_current 0",
        "sluice_config_last_reload_success 1",
        "sluice_transactions_total{verdict=\"accepted\"} 0",
        "sluice_message_size_bytes_bucket{le=\"+Inf\"} 0",
        "sluice_message_size_bytes_sum 0",
        "sluice_transaction_duration_seconds_sum 0",
        "sluice_build_info{version=\"" SLUICE_VERSION "\"} 1",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_has_line(got, want[i]);
    /* No plugin families without plugins. */
    assert_null(strstr(got, "sluice_plugin_"));
    free(got);
}

/* The quarantine: the daemon's events are counters from the start; the
 * index's gauges only once a sweep read the index. */
static void test_quarantine_families(void **state)
{
    (void)state;
    char *got = render();
    assert_has_line(got, "sluice_quarantine_events_total{event=\"held\"} 0");
    assert_null(strstr(got, "sluice_quarantine_messages"));
    free(got);
    stats_quarantine_event(STATS_QUAR_HELD, 2, 300);
    stats_quarantine_event(STATS_QUAR_EXPIRED, 1, 100);
    uint64_t n[STATS_QUAR_STATUS_COUNT] = {4, 1, 2, 0, 1};
    uint64_t b[STATS_QUAR_STATUS_COUNT] = {4000, 10, 20, 0, 100};
    stats_quarantine_index(n, b);
    got = render();
    assert_has_line(got, "sluice_quarantine_events_total{event=\"held\"} 2");
    assert_has_line(got, "sluice_quarantine_event_bytes_total{event=\"held\"} 300");
    assert_has_line(got, "sluice_quarantine_events_total{event=\"expired\"} 1");
    assert_has_line(got, "sluice_quarantine_messages{status=\"held\"} 4");
    assert_has_line(got, "sluice_quarantine_messages{status=\"releasing\"} 1");
    assert_has_line(got, "sluice_quarantine_bytes{status=\"held\"} 4000");
    assert_has_line(got, "sluice_quarantine_bytes{status=\"expired\"} 100");
    free(got);
    /* a plugin cannot take the names */
    assert_null(stats_counter_new("quarantine_events", "x", NULL, 0));
}

/* ---- Table: one event, the line it must produce ---------------------------- */

static void ev_close_more(void)
{
    stats_conn_open();
    stats_conn_close();
    stats_conn_close(); /* a bug elsewhere must not show a negative gauge */
}
static void ev_tx_quarantine(void) { stats_transaction(STATS_V_QUARANTINED, 3, 10, 12, 1.0); }
static void ev_tx_discard(void) { stats_transaction(STATS_V_DISCARDED, 1, 70000, 0, 2.0); }
static void ev_bad_enum(void)
{
    stats_timeout((enum stats_timeout)99);
    stats_upstream_error((enum stats_up_error)-1);
    stats_transaction((enum stats_verdict)STATS_V_COUNT, 1, 1, 1, 1);
}
static void ev_ready(void)
{
    stats_set_listening(true);
    stats_set_upstream_ok(true);
    stats_set_chain_loaded(true);
}
static void ev_nan(void) { stats_transaction(STATS_V_ACCEPTED, 1, 1, 1, -1.0); }

static void test_event_lines(void **state)
{
    (void)state;
    static const struct {
        void (*fire)(void);
        const char *want[4];
    } cases[] = {
        {ev_close_more, {"sluice_connections_current 0", "sluice_connections_total 1"}},
        {ev_tx_quarantine,
         {"sluice_transactions_total{verdict=\"quarantined\"} 1",
          "sluice_messages_total{verdict=\"quarantined\"} 1", "sluice_recipients_total 3",
          "sluice_forwarded_bytes_total 12"}},
        {ev_tx_discard,
         {"sluice_messages_total{verdict=\"discarded\"} 1",
          "sluice_message_size_bytes_bucket{le=\"65536\"} 0",
          "sluice_message_size_bytes_bucket{le=\"262144\"} 1",
          "sluice_transaction_duration_seconds_bucket{le=\"2.5\"} 1"}},
        {ev_bad_enum,
         {"sluice_timeouts_total{kind=\"command\"} 0", "sluice_upstream_errors_total{kind=\"connect\"} 0",
          "sluice_recipients_total 0"}},
        {ev_ready, {"sluice_ready 1"}},
        {ev_nan,
         {"sluice_transaction_duration_seconds_bucket{le=\"0.005\"} 1",
          "sluice_transaction_duration_seconds_sum 0"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        stats_reset(T0);
        cases[i].fire();
        char *got = render();
        for (size_t k = 0; k < 4 && cases[i].want[k] != NULL; k++)
            assert_has_line(got, cases[i].want[k]);
        free(got);
    }
}

static void test_ready_reason(void **state)
{
    (void)state;
    static const struct {
        bool listening, upstream, chain, want;
        const char *why;
    } cases[] = {
        {false, true, true, false, "not listening"},
        {true, false, true, false, "upstream unreachable"},
        {true, true, false, false, "plugin chain not loaded"},
        {true, true, true, true, "ready"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char why[64];
        stats_set_listening(cases[i].listening);
        stats_set_upstream_ok(cases[i].upstream);
        stats_set_chain_loaded(cases[i].chain);
        assert_int_equal(stats_ready(why, sizeof why), cases[i].want);
        assert_string_equal(why, cases[i].why);
    }
}

/* ---- Plugin records and plugin counters: exact text ----------------------- */

static const char want_plugins[] =
    "# HELP sluice_plugin_verdicts_total Hook answers per plugin instance and verdict.\n"
    "# TYPE sluice_plugin_verdicts_total counter\n"
    "sluice_plugin_verdicts_total{plugin=\"spam\",verdict=\"continue\"} 3\n"
    "sluice_plugin_verdicts_total{plugin=\"spam\",verdict=\"accept\"} 0\n"
    "sluice_plugin_verdicts_total{plugin=\"spam\",verdict=\"reject\"} 1\n"
    "sluice_plugin_verdicts_total{plugin=\"spam\",verdict=\"tempfail\"} 0\n"
    "sluice_plugin_verdicts_total{plugin=\"spam\",verdict=\"discard\"} 0\n"
    "sluice_plugin_verdicts_total{plugin=\"spam\",verdict=\"quarantine\"} 0\n"
    "sluice_plugin_verdicts_total{plugin=\"spam\",verdict=\"disconnect\"} 0\n"
    "sluice_plugin_verdicts_total{plugin=\"virus_\\\"x\\\"\",verdict=\"continue\"} 0\n"
    "sluice_plugin_verdicts_total{plugin=\"virus_\\\"x\\\"\",verdict=\"accept\"} 0\n"
    "sluice_plugin_verdicts_total{plugin=\"virus_\\\"x\\\"\",verdict=\"reject\"} 0\n"
    "sluice_plugin_verdicts_total{plugin=\"virus_\\\"x\\\"\",verdict=\"tempfail\"} 0\n"
    "sluice_plugin_verdicts_total{plugin=\"virus_\\\"x\\\"\",verdict=\"discard\"} 0\n"
    "sluice_plugin_verdicts_total{plugin=\"virus_\\\"x\\\"\",verdict=\"quarantine\"} 0\n"
    "sluice_plugin_verdicts_total{plugin=\"virus_\\\"x\\\"\",verdict=\"disconnect\"} 0\n"
    "# HELP sluice_plugin_timeouts_total Hook calls that ran past the plugin's timeout.\n"
    "# TYPE sluice_plugin_timeouts_total counter\n"
    "sluice_plugin_timeouts_total{plugin=\"spam\"} 1\n"
    "sluice_plugin_timeouts_total{plugin=\"virus_\\\"x\\\"\"} 0\n"
    "# HELP sluice_plugin_errors_total Hook calls that failed (plugin error).\n"
    "# TYPE sluice_plugin_errors_total counter\n"
    "sluice_plugin_errors_total{plugin=\"spam\"} 0\n"
    "sluice_plugin_errors_total{plugin=\"virus_\\\"x\\\"\"} 2\n"
    "# HELP sluice_plugin_circuit_trips_total Times the plugin's circuit breaker opened.\n"
    "# TYPE sluice_plugin_circuit_trips_total counter\n"
    "sluice_plugin_circuit_trips_total{plugin=\"spam\"} 1\n"
    "sluice_plugin_circuit_trips_total{plugin=\"virus_\\\"x\\\"\"} 0\n"
    "# HELP sluice_plugin_thread_waits_total Blocking hook calls that waited because the "
    "plugin held all the pool threads it may.\n"
    "# TYPE sluice_plugin_thread_waits_total counter\n"
    "sluice_plugin_thread_waits_total{plugin=\"spam\"} 0\n"
    "sluice_plugin_thread_waits_total{plugin=\"virus_\\\"x\\\"\"} 0\n"
    "# HELP sluice_plugin_circuit_state Circuit-breaker state per plugin: 0 closed, 1 open, "
    "2 half-open.\n"
    "# TYPE sluice_plugin_circuit_state gauge\n"
    "sluice_plugin_circuit_state{plugin=\"spam\"} 2\n"
    "sluice_plugin_circuit_state{plugin=\"virus_\\\"x\\\"\"} 0\n"
    "# HELP sluice_plugin_threads_busy Pool threads the plugin's blocking hooks hold now, "
    "timed-out hooks included.\n"
    "# TYPE sluice_plugin_threads_busy gauge\n"
    "sluice_plugin_threads_busy{plugin=\"spam\"} 0\n"
    "sluice_plugin_threads_busy{plugin=\"virus_\\\"x\\\"\"} 0\n"
    "# HELP sluice_plugin_duration_seconds Time one plugin hook took, per plugin and SMTP "
    "phase.\n"
    "# TYPE sluice_plugin_duration_seconds histogram\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"0.0001\"} 0\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"0.00025\"} 0\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"0.0005\"} 0\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"0.001\"} 0\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"0.0025\"} 0\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"0.005\"} 1\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"0.01\"} 1\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"0.025\"} 1\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"0.05\"} 1\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"0.1\"} 1\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"0.25\"} 2\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"0.5\"} 2\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"1\"} 2\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"2.5\"} 2\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"10\"} 2\n"
    "sluice_plugin_duration_seconds_bucket{plugin=\"spam\",phase=\"data\",le=\"+Inf\"} 2\n"
    "sluice_plugin_duration_seconds_sum{plugin=\"spam\",phase=\"data\"} 0.203\n"
    "sluice_plugin_duration_seconds_count{plugin=\"spam\",phase=\"data\"} 2\n"
    "# HELP sluice_spam_rule_hits_total Spam rules that matched.\n"
    "# TYPE sluice_spam_rule_hits_total counter\n"
    "sluice_spam_rule_hits_total{rule=\"BAYES_99\"} 2\n"
    "sluice_spam_rule_hits_total{rule=\"URIBL \\\\x\"} 1\n"
    "sluice_spam_rule_hits_total{rule=\"other\"} 1\n"
    "# HELP sluice_dkim_pass_total Two\\nlines \\\\ here.\n"
    "# TYPE sluice_dkim_pass_total counter\n"
    "sluice_dkim_pass_total 4\n";

static void test_plugin_exposition_exact(void **state)
{
    (void)state;
    struct stats_plugin *spam = stats_plugin_get("spam");
    struct stats_plugin *virus = stats_plugin_get("virus\n\"x\""); /* newline -> '_' */
    assert_non_null(spam);
    assert_non_null(virus);
    for (int i = 0; i < 3; i++)
        stats_plugin_verdict(spam, STATS_PV_CONTINUE);
    stats_plugin_verdict(spam, STATS_PV_REJECT);
    stats_plugin_latency(spam, STATS_PH_DATA, 0.003);
    stats_plugin_latency(spam, STATS_PH_DATA, 0.2);
    stats_plugin_timeout(spam);
    stats_plugin_breaker(spam, STATS_CB_OPEN);
    stats_plugin_breaker(spam, STATS_CB_OPEN); /* still open: not a second trip */
    stats_plugin_breaker(spam, STATS_CB_HALF_OPEN);
    stats_plugin_error(virus);
    stats_plugin_error(virus);
    stats_plugin_breaker(virus, STATS_CB_CLOSED);

    struct stats_counter *rules = stats_counter_new("Spam rule-hits", "Spam rules that matched.",
                                                    "rule", 2);
    struct stats_counter *dkim = stats_counter_new("dkim_pass", "Two\nlines \\ here.", NULL, 0);
    assert_non_null(rules);
    assert_non_null(dkim);
    stats_counter_add(rules, "BAYES_99", 2);
    stats_counter_add(rules, "URIBL \\x", 1);
    stats_counter_add(rules, "X", 1); /* third value, bound is 2 -> other */
    stats_counter_add(dkim, "ignored", 4);

    char *got = render();
    assert_string_equal(from(got, "# HELP sluice_plugin_verdicts_total"), want_plugins);
    free(got);
}

static void test_plugin_record_idempotent(void **state)
{
    (void)state;
    struct stats_plugin *a = stats_plugin_get("spam");
    struct stats_plugin *b = stats_plugin_get("dkim");
    assert_non_null(a);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(stats_plugin_get("spam"), a); /* a reload keeps the record */
    assert_null(stats_plugin_get(NULL));

    /* NULL records are accepted everywhere and do nothing. */
    stats_plugin_verdict(NULL, STATS_PV_ACCEPT);
    stats_plugin_latency(NULL, STATS_PH_DATA, 1);
    stats_plugin_timeout(NULL);
    stats_plugin_error(NULL);
    stats_plugin_breaker(NULL, STATS_CB_OPEN);
    stats_plugin_verdict(a, (enum stats_pverdict)STATS_PV_COUNT);
    stats_plugin_latency(a, (enum stats_phase)STATS_PH_COUNT, 1);

    /* The table is bounded. */
    char name[32];
    for (int i = 2; i < STATS_PLUGINS_MAX; i++) {
        snprintf(name, sizeof name, "p%d", i);
        assert_non_null(stats_plugin_get(name));
    }
    assert_null(stats_plugin_get("one-too-many"));
    assert_ptr_equal(stats_plugin_get("spam"), a);
}

static void test_counter_names(void **state)
{
    (void)state;
    static const struct {
        const char *name, *label;
        const char *want; /* the family's TYPE line name; NULL: refused */
    } cases[] = {
        {"Spam Rule-Hits", "rule", "sluice_spam_rule_hits_total"},
        {"sluice_virus_names_total", "name", "sluice_virus_names_total"},
        {"dkim:result", "Result", "sluice_dkim_result_total"},
        {"9lives", NULL, "sluice_9lives_total"},
        {"messages", "verdict", NULL},             /* core family sluice_messages_total */
        {"sluice_errors_total", NULL, NULL},       /* core family */
        {"sluice_dns_requests_total", NULL, NULL}, /* core family, added later */
        {"x", "le", NULL},                         /* reserved for histograms */
        {"y", "__name", NULL},                     /* reserved prefix */
        {"z", "0abc", NULL},                       /* label must not start with a digit */
        {"", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct stats_counter *c = stats_counter_new(cases[i].name, "h", cases[i].label, 10);
        if (cases[i].want == NULL) {
            assert_null(c);
            continue;
        }
        assert_non_null(c);
        stats_counter_add(c, "v", 1);
        char *got = render();
        char line[128];
        snprintf(line, sizeof line, "# TYPE %s counter", cases[i].want);
        assert_has_line(got, line);
        free(got);
    }
    /* Same name again: same counter; same name with another label: refused. */
    struct stats_counter *a = stats_counter_new("spam rule hits", "h", "rule", 10);
    assert_ptr_equal(stats_counter_new("spam_rule_hits", "other help", "rule", 50), a);
    assert_null(stats_counter_new("spam_rule_hits", "h", "symbol", 10));
    assert_null(stats_counter_new("spam_rule_hits", "h", NULL, 10));
    assert_null(stats_counter_new(NULL, "h", NULL, 10));
}

static void test_label_bounding(void **state)
{
    (void)state;
    struct stats_counter *c = stats_counter_new("virus_names", "Viruses found.", "name", 3);
    assert_non_null(c);
    static const struct {
        const char *value;
        uint64_t n;
    } adds[] = {
        {"Eicar-Test", 1}, {"Win.Worm", 2}, {"Eicar-Test", 1}, {"Doc.Macro", 1},
        {"Fourth", 5},     {"Fifth", 1},    {"Win.Worm", 1},   {NULL, 1},
        {"caf\xc3\xa9", 1},
    };
    for (size_t i = 0; i < sizeof adds / sizeof adds[0]; i++)
        stats_counter_add(c, adds[i].value, adds[i].n);
    static const struct {
        const char *value;
        uint64_t want;
    } cases[] = {
        {"Eicar-Test", 2}, {"Win.Worm", 3}, {"Doc.Macro", 1},
        {"other", 8}, /* Fourth 5 + Fifth 1 + none 1 + café 1 */
        {"Fourth", 0},     {"none", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t got = stats_counter_get(c, cases[i].value);
        if (got != cases[i].want)
            fail_msg("value %s: got %llu, want %llu", cases[i].value, (unsigned long long)got,
                     (unsigned long long)cases[i].want);
    }
    char *got = render();
    assert_has_line(got, "sluice_virus_names_total{name=\"other\"} 8");
    assert_null(strstr(got, "Fourth"));
    free(got);

    /* Under the bound, odd bytes are replaced, not dropped; "" counts as "none". */
    struct stats_counter *d = stats_counter_new("dkim_results", "h", "result", 10);
    stats_counter_add(d, "caf\xc3\xa9", 1);
    stats_counter_add(d, "", 2);
    assert_int_equal(stats_counter_get(d, "caf__"), 1);
    assert_int_equal(stats_counter_get(d, "none"), 2);
    stats_counter_add(NULL, "x", 1); /* no crash */
    assert_int_equal(stats_counter_get(NULL, "x"), 0);
}

static const char want_plugin_family[] =
    "# HELP sluice_rule_hits_total Rules that matched.\n"
    "# TYPE sluice_rule_hits_total counter\n"
    "sluice_rule_hits_total{plugin=\"spam\",rule=\"BAYES_99\"} 3\n"
    "sluice_rule_hits_total{plugin=\"spam\",rule=\"other\"} 1\n"
    "sluice_rule_hits_total{plugin=\"spam-strict\",rule=\"BAYES_99\"} 5\n"
    "# HELP sluice_scanned_total Messages scanned.\n"
    "# TYPE sluice_scanned_total counter\n"
    "sluice_scanned_total{plugin=\"virus\"} 2\n";

static void test_plugin_counter_family(void **state)
{
    (void)state;
    struct stats_counter *a = stats_counter_new_plugin("spam", "rule_hits", "Rules that matched.",
                                                       "rule", 1);
    struct stats_counter *scanned = stats_counter_new_plugin("virus", "scanned",
                                                             "Messages scanned.", NULL, 0);
    struct stats_counter *b = stats_counter_new_plugin("spam-strict", "rule_hits", "ignored",
                                                       "rule", 5);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    /* (name, instance) is the key: a reload gets the same counter back. */
    assert_ptr_equal(stats_counter_new_plugin("spam", "rule_hits", "x", "rule", 1), a);
    static const struct {
        const char *instance, *name, *label;
    } refused[] = {
        {"spam", "rule_hits", "symbol"}, /* another label in the same family */
        {"spam", "rule_hits", NULL},
        {"x", "scanned", "kind"},
        {"x", "y", "plugin"},            /* would clash with the plugin label */
        {"", "y", NULL},
        {NULL, "y", NULL},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        assert_null(stats_counter_new_plugin(refused[i].instance, refused[i].name, "h",
                                             refused[i].label, 3));
    /* A plain counter cannot join a family with the plugin label, nor the reverse. */
    assert_null(stats_counter_new("rule_hits", "h", "rule", 3));
    assert_non_null(stats_counter_new("plain", "h", "plugin", 3));
    assert_null(stats_counter_new_plugin("spam", "plain", "h", "plugin", 3));

    stats_counter_add(a, "BAYES_99", 3);
    stats_counter_add(a, "URIBL", 1); /* bound 1 */
    stats_counter_add(b, "BAYES_99", 5);
    stats_counter_add(scanned, NULL, 2);
    char *got = render();
    assert_string_equal(from(got, "# HELP sluice_rule_hits_total"), want_plugin_family);
    free(got);

    buf_t j = BUF_INIT;
    stats_json_render(&j, T0);
    assert_non_null(strstr(j.ptr, "{\"name\":\"sluice_rule_hits_total\",\"plugin\":\"spam-strict\","
                                  "\"help\":\"Rules that matched.\",\"label\":\"rule\","
                                  "\"values\":{\"BAYES_99\":5}}"));
    buf_free(&j);
}

/* ---- Threads: counts are exact under contention ---------------------------- */

#define THREADS 4
#define ROUNDS 20000

static struct stats_counter *g_tc;
static struct stats_plugin *g_tp;

static void *hammer(void *arg)
{
    static const char *const values[] = {"a", "b", "c", "d", "e", "f"};
    size_t id = (size_t)(uintptr_t)arg;
    for (int i = 0; i < ROUNDS; i++) {
        stats_counter_add(g_tc, values[(id + (size_t)i) % 6], 1);
        stats_conn_open();
        stats_transaction(STATS_V_ACCEPTED, 1, 100, 100, 0.001);
        stats_plugin_latency(g_tp, STATS_PH_RCPT, 0.0002);
        stats_conn_close();
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    g_tc = stats_counter_new("hits", "h", "v", 4);
    g_tp = stats_plugin_get("p");
    pthread_t t[THREADS];
    for (size_t i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, (void *)(uintptr_t)i), 0);
    for (size_t i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);

    uint64_t total = 0;
    static const char *const vals[] = {"a", "b", "c", "d", "e", "f", "other"};
    for (size_t i = 0; i < 7; i++)
        total += stats_counter_get(g_tc, vals[i]);
    assert_int_equal(total, (uint64_t)THREADS * ROUNDS);
    /* First four distinct values seen are kept; which four depends on timing. */
    int kept = 0;
    static const char *const all[] = {"a", "b", "c", "d", "e", "f"};
    for (size_t i = 0; i < 6; i++)
        kept += stats_counter_get(g_tc, all[i]) > 0;
    assert_int_equal(kept, 4);

    char *got = render();
    char line[128];
    snprintf(line, sizeof line, "sluice_connections_total %d", THREADS * ROUNDS);
    assert_has_line(got, line);
    assert_has_line(got, "sluice_connections_current 0");
    snprintf(line, sizeof line, "sluice_received_bytes_total %d", THREADS * ROUNDS * 100);
    assert_has_line(got, line);
    /* 80000 x 0.001 s = 80 s exactly in fixed point; 80000 x 0.0002 = 16 s. */
    assert_has_line(got, "sluice_transaction_duration_seconds_sum 80");
    assert_has_line(got, "sluice_plugin_duration_seconds_sum{plugin=\"p\",phase=\"rcpt\"} 16");
    snprintf(line, sizeof line,
             "sluice_plugin_duration_seconds_bucket{plugin=\"p\",phase=\"rcpt\",le=\"0.00025\"} %d",
             THREADS * ROUNDS);
    assert_has_line(got, line);
    free(got);
}

/* ---- Decisions -------------------------------------------------------------- */

static void test_decision_validation(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int want;
    } cases[] = {
        {"{}", 0},
        {" {\"sid\":\"a1\",\"rcpts\":[\"x@y\"],\"score\":-1.5e2,\"ok\":true,\"n\":null} ", 0},
        {"{\"s\":\"\\u00e9\\n\\\"\"}", 0},
        {"{\"deep\":{\"a\":[1,2,{\"b\":[]}]}}", 0},
        {"[]", -EINVAL},
        {"\"str\"", -EINVAL},
        {"{", -EINVAL},
        {"{\"a\":1}x", -EINVAL},
        {"{\"a\":1,}", -EINVAL},
        {"{\"a\":01}", -EINVAL},
        {"{\"a\":\"\\x\"}", -EINVAL},
        {"{\"a\":\"tab\there\"}", -EINVAL},
        {"{\"a\":tru}", -EINVAL},
        {"{a:1}", -EINVAL},
        {"{\"a\":1}{}", -EINVAL},
        {"", -EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = stats_decision_push(cases[i].json);
        if (got != cases[i].want)
            fail_msg("%s: got %d, want %d", cases[i].json, got, cases[i].want);
    }
    assert_int_equal(stats_decision_push(NULL), -EINVAL);

    /* Nesting is bounded so that a hostile record cannot exhaust the stack. */
    char deep[200];
    memset(deep, '[', sizeof deep);
    deep[0] = '{';
    memcpy(deep + 1, "\"a\":", 4);
    deep[sizeof deep - 1] = '\0';
    assert_int_equal(stats_decision_push(deep), -EINVAL);

    char *big = malloc(STATS_DECISION_MAX_LEN + 16);
    memset(big, ' ', STATS_DECISION_MAX_LEN + 15);
    big[0] = '{';
    big[STATS_DECISION_MAX_LEN + 14] = '}';
    big[STATS_DECISION_MAX_LEN + 15] = '\0';
    assert_int_equal(stats_decision_push(big), -E2BIG);
    free(big);
}

static void test_decision_ring(void **state)
{
    (void)state;
    char rec[64];
    for (int i = 1; i <= STATS_DECISIONS_MAX + 5; i++) {
        snprintf(rec, sizeof rec, "{\"sid\":\"s%d\"}", i);
        assert_int_equal(stats_decision_push(rec), 0);
    }
    buf_t b = BUF_INIT;
    stats_json_render(&b, T0 + 1);
    const char *d = strstr(b.ptr, "\"decisions\":[");
    assert_non_null(d);
    /* Newest first, the 5 oldest gone. */
    snprintf(rec, sizeof rec, "\"decisions\":[{\"sid\":\"s%d\"},{\"sid\":\"s%d\"}",
             STATS_DECISIONS_MAX + 5, STATS_DECISIONS_MAX + 4);
    assert_non_null(strstr(b.ptr, rec));
    assert_non_null(strstr(b.ptr, "{\"sid\":\"s6\"}]}"));
    assert_null(strstr(b.ptr, "{\"sid\":\"s5\"}"));
    size_t count = 0;
    for (const char *p = d; (p = strstr(p, "\"sid\"")) != NULL; p++)
        count++;
    assert_int_equal(count, STATS_DECISIONS_MAX);
    buf_free(&b);
}

static void test_json_figures(void **state)
{
    (void)state;
    fire_core_events();
    struct stats_plugin *p = stats_plugin_get("spam");
    stats_plugin_verdict(p, STATS_PV_REJECT);
    stats_plugin_latency(p, STATS_PH_MAIL, 0.5);
    struct stats_counter *c = stats_counter_new("rule_hits", "Rules \"hit\".", "rule", 5);
    stats_counter_add(c, "R\"1", 7);
    buf_t b = BUF_INIT;
    stats_json_render(&b, T0 + 60.5);
    static const char *const want[] = {
        "{\"version\":\"1.2.3\",\"start_time_seconds\":1700000000.000,\"uptime_seconds\":60.500,",
        "\"ready\":false,\"ready_reason\":\"plugin chain not loaded\"",
        "\"config_reloads\":{\"failure\":1,\"success\":1},\"config_last_reload_success\":0",
        "\"connections\":{\"current\":2,\"total\":3,\"refused\":1}",
        "\"smtp_replies\":{\"2xx\":3,\"3xx\":1,\"4xx\":1,\"5xx\":1}",
        "\"transactions\":{\"accepted\":1,\"rejected\":1,\"tempfailed\":1,\"discarded\":0,"
        "\"quarantined\":0,\"aborted\":1}",
        "\"recipients\":4,\"received_bytes\":6000,\"forwarded_bytes\":1100",
        "{\"le\":\"16384\",\"count\":2}",
        "{\"le\":\"+Inf\",\"count\":2}],\"sum\":6000,\"count\":2}",
        "\"sum\":400.515,\"count\":4}",
        "\"plugins\":[{\"name\":\"spam\",\"verdicts\":{\"continue\":0,\"accept\":0,\"reject\":1",
        "\"circuit_state\":0,\"circuit_state_name\":\"closed\",\"circuit_trips\":0,"
        "\"threads_busy\":0,\"thread_waits\":0,\"phases\":{\"mail\":{\"buckets\":[",
        "\"counters\":[{\"name\":\"sluice_rule_hits_total\",\"plugin\":null,\"help\":\"Rules "
        "\\\"hit\\\".\","
        "\"label\":\"rule\",\"values\":{\"R\\\"1\":7}}]",
        "\"decisions\":[]}\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (strstr(b.ptr, want[i]) == NULL)
            fail_msg("missing %s\n--- in ---\n%s", want[i], b.ptr);
    buf_free(&b);
}

/* ---- The exact JSON document; text in JSON and in the exposition ------------ */

/* A state that touches every part of the /stats document. */
static void fire_json_state(void)
{
    fire_core_events();
    struct stats_plugin *p = stats_plugin_get("spam");
    stats_plugin_verdict(p, STATS_PV_REJECT);
    stats_plugin_verdict(p, STATS_PV_CONTINUE);
    stats_plugin_latency(p, STATS_PH_MAIL, 0.5);
    stats_plugin_latency(p, STATS_PH_DATA, 0.0002);
    stats_plugin_timeout(p);
    stats_plugin_breaker(p, STATS_CB_OPEN);
    struct stats_plugin *q = stats_plugin_get("idle");
    stats_plugin_error(q);
    struct stats_counter *c = stats_counter_new("rule_hits", "Rules \"hit\".", "rule", 5);
    stats_counter_add(c, "R1", 7);
    stats_counter_add(c, "R\\2", 1);
    struct stats_counter *u = stats_counter_new_plugin("av", "scanned", "Scanned.", NULL, 1);
    stats_counter_add(u, NULL, 3);
    assert_int_equal(stats_decision_push("{\"sid\":\"s1\",\"verdict\":\"accepted\"}"), 0);
    assert_int_equal(stats_decision_push("{\"sid\":\"s2\"}"), 0);
}

/* GET /stats for fire_json_state() at now = T0 + 60.5, byte for byte. */
static const char want_json[] =
    "{\"version\":\"1.2.3\",\"start_time_seconds\":1700000000.000,\"uptime_seconds\":60.500,"
    "\"ready\":false,\"ready_reason\":\"plugin chain not loaded\",\"listening\":true,"
    "\"upstream_ok\":true,\"chain_loaded\":false,\"config_reloads\":{\"failure\":1,"
    "\"success\":1},\"config_last_reload_success\":0,\"connections\":{\"current\":2,"
    "\"total\":3,\"refused\":1},\"tls_handshakes\":{\"failure\":1,\"success\":2},"
    "\"proxy_headers\":{\"ok\":0,\"malformed\":0,\"untrusted\":0},"
    "\"smtp_auth\":{\"success\":1,\"failure\":2,\"tempfail\":0,\"aborted\":1,\"blocked\":0},"
    "\"smtp_replies\":{\"2xx\":3,\"3xx\":1,\"4xx\":1,\"5xx\":1},\"upstream_replies\":{\"2xx\""
    ":2,\"3xx\":0,\"4xx\":0,\"5xx\":1},\"upstream_errors\":{\"connect\":1,"
    "\"protocol\":0,\"timeout\":0,\"lost\":0,\"tls\":1},\"timeouts\":{\"command\":2,"
    "\"data\":0,\"upstream\":0,\"plugin\":1},\"errors\":1,"
    "\"dns\":{\"query\":3,\"cache_hit\":1,\"timeout\":2,\"dropped\":1,\"failure\":0,"
    "\"cancelled\":1,\"joined\":0},\"upstream_sessions\":{\"held\":7,\"waiting\":2,"
    "\"events\":{\"wait\":2,\"expired\":0,\"reclaimed_idle\":0,\"reclaimed_in_transaction\":1}},"
    "\"upstream_connections\":{\"idle\":3,\"events\":{\"opened\":1,\"reused\":2,\"expired\":0,"
    "\"ended\":1,\"not_kept\":0}},"
    "\"quarantine\":{\"events\":{\"held\":0,\"expired\":0,\"index_error\":0,\"sweep_error\":0},"
    "\"event_bytes\":{\"held\":0,\"expired\":0,\"index_error\":0,\"sweep_error\":0}},"
    "\"state\":{\"keys\":5,\"bytes\":900,\"operations\":40,\"errors\":1,\"evictions\":2,"
    "\"expirations\":3},"
    "\"transactions\":{\"accepted\":1,"
    "\"rejected\":1,\"tempfailed\":1,\"discarded\":0,\"quarantined\":0,"
    "\"aborted\":1},\"messages\":{\"accepted\":1,\"rejected\":1,\"tempfailed\":0,"
    "\"discarded\":0,\"quarantined\":0,\"aborted\":0},\"recipients\":4,"
    "\"received_bytes\":6000,\"forwarded_bytes\":1100,\"message_size_bytes\":{\"buckets\":[{"
    "\"le\":\"1024\",\"count\":1},{\"le\":\"4096\",\"count\":1},{\"le\":\"16384\","
    "\"count\":2},{\"le\":\"65536\",\"count\":2},{\"le\":\"262144\",\"count\":2},"
    "{\"le\":\"1048576\",\"count\":2},{\"le\":\"4194304\",\"count\":2},"
    "{\"le\":\"16777216\",\"count\":2},{\"le\":\"67108864\",\"count\":2},"
    "{\"le\":\"+Inf\",\"count\":2}],\"sum\":6000,\"count\":2},\"transaction_duration_seconds"
    "\":{\"buckets\":[{\"le\":\"0.005\",\"count\":1},{\"le\":\"0.01\","
    "\"count\":2},{\"le\":\"0.025\",\"count\":2},{\"le\":\"0.05\",\"count\":2},"
    "{\"le\":\"0.1\",\"count\":2},{\"le\":\"0.25\",\"count\":2},{\"le\":\"0.5\","
    "\"count\":3},{\"le\":\"1\",\"count\":3},{\"le\":\"2.5\",\"count\":3},"
    "{\"le\":\"5\",\"count\":3},{\"le\":\"10\",\"count\":3},{\"le\":\"30\","
    "\"count\":3},{\"le\":\"60\",\"count\":3},{\"le\":\"300\",\"count\":3},"
    "{\"le\":\"+Inf\",\"count\":4}],\"sum\":400.515,\"count\":4},\"plugins\":[{\"name\":\"spa"
    "m\",\"verdicts\":{\"continue\":1,\"accept\":0,\"reject\":1,\"tempfail\":0,"
    "\"discard\":0,\"quarantine\":0,\"disconnect\":0},\"timeouts\":1,\"errors\":0,"
    "\"circuit_state\":1,\"circuit_state_name\":\"open\",\"circuit_trips\":1,"
    "\"threads_busy\":0,\"thread_waits\":0,\"phases\":{\"mail\":{\"buckets\":[{\"le\":\"0.0001\","
    "\"count\":0},"
    "{\"le\":\"0.00025\",\"count\":0},{\"le\":\"0.0005\",\"count\":0},"
    "{\"le\":\"0.001\",\"count\":0},{\"le\":\"0.0025\",\"count\":0},{\"le\":\"0.005\","
    "\"count\":0},{\"le\":\"0.01\",\"count\":0},{\"le\":\"0.025\",\"count\":0},"
    "{\"le\":\"0.05\",\"count\":0},{\"le\":\"0.1\",\"count\":0},{\"le\":\"0.25\","
    "\"count\":0},{\"le\":\"0.5\",\"count\":1},{\"le\":\"1\",\"count\":1},"
    "{\"le\":\"2.5\",\"count\":1},{\"le\":\"10\",\"count\":1},{\"le\":\"+Inf\","
    "\"count\":1}],\"sum\":0.5,\"count\":1},\"data\":{\"buckets\":[{\"le\":\"0.0001\","
    "\"count\":0},{\"le\":\"0.00025\",\"count\":1},{\"le\":\"0.0005\","
    "\"count\":1},{\"le\":\"0.001\",\"count\":1},{\"le\":\"0.0025\",\"count\":1},"
    "{\"le\":\"0.005\",\"count\":1},{\"le\":\"0.01\",\"count\":1},{\"le\":\"0.025\","
    "\"count\":1},{\"le\":\"0.05\",\"count\":1},{\"le\":\"0.1\",\"count\":1},"
    "{\"le\":\"0.25\",\"count\":1},{\"le\":\"0.5\",\"count\":1},{\"le\":\"1\","
    "\"count\":1},{\"le\":\"2.5\",\"count\":1},{\"le\":\"10\",\"count\":1},"
    "{\"le\":\"+Inf\",\"count\":1}],\"sum\":0.0002,\"count\":1}}},{\"name\":\"idle\","
    "\"verdicts\":{\"continue\":0,\"accept\":0,\"reject\":0,\"tempfail\":0,"
    "\"discard\":0,\"quarantine\":0,\"disconnect\":0},\"timeouts\":0,\"errors\":1,"
    "\"circuit_state\":0,\"circuit_state_name\":\"closed\",\"circuit_trips\":0,"
    "\"threads_busy\":0,\"thread_waits\":0,\"phases\":{}}],\"counters\":[{\"name\":\"sluice_rule_"
    "hits_total\","
    "\"plugin\":null,\"help\":\"Rules \\\"hit\\\".\",\"label\":\"rule\","
    "\"values\":{\"R1\":7,\"R\\\\2\":1}},{\"name\":\"sluice_scanned_total\","
    "\"plugin\":\"av\",\"help\":\"Scanned.\",\"label\":null,\"value\":3}],"
    "\"gauges\":[],\"decisions\":[{\"sid\":\"s2\"},{\"sid\":\"s1\",\"verdict\":\"accepted\"}]}\n";

static void test_json_exact(void **state)
{
    (void)state;
    fire_json_state();
    buf_t b = BUF_INIT;
    stats_json_render(&b, T0 + 60.5);
    assert_string_equal(b.ptr, want_json);
    assert_true(json_is_object(b.ptr));
    buf_free(&b);
}

/*
 * HELP text is free text from a plugin. /metrics prints its bytes with
 * backslash and newline escaped; /stats prints UTF-8 as is, control bytes
 * as \u00XX, and a byte that is not UTF-8 as \u00XX (so the document stays
 * valid JSON whatever a plugin passes).
 */
static void test_help_text(void **state)
{
    (void)state;
    struct stats_counter *c =
        stats_counter_new("odd", "caf\xc3\xa9 \"q\" a\\b\nline\ttab caf\xe9", "k", 2);
    stats_counter_add(c, "v", 1);
    char *got = render();
    assert_has_line(got, "# HELP sluice_odd_total caf\xc3\xa9 \"q\" a\\\\b\\nline\ttab caf\xe9");
    free(got);
    buf_t b = BUF_INIT;
    stats_json_render(&b, T0);
    assert_non_null(strstr(b.ptr, "\"help\":\"caf\xc3\xa9 \\\"q\\\" a\\\\b\\u000aline\\u0009tab "
                                  "caf\\u00e9\""));
    assert_true(json_is_object(b.ptr));
    buf_free(&b);
}

/* ---- stats_http's listen address parser ------------------------------------ */

static void test_parse_listen(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        enum stats_http_family family;
        const char *host;
        int port;
        const char *path;
    } cases[] = {
        {"127.0.0.1:9025", 0, STATS_HTTP_INET, "127.0.0.1", 9025, ""},
        {"0.0.0.0:0", 0, STATS_HTTP_INET, "0.0.0.0", 0, ""},
        {"[::1]:9025", 0, STATS_HTTP_INET6, "::1", 9025, ""},
        {"[fe80::1]:65535", 0, STATS_HTTP_INET6, "fe80::1", 65535, ""},
        {"unix:/run/sluice/stats.sock", 0, STATS_HTTP_UNIX, "", 0, "/run/sluice/stats.sock"},
        {"unix:relative.sock", -EINVAL, 0, "", 0, ""},
        {"127.0.0.1", -EINVAL, 0, "", 0, ""},
        {"127.0.0.1:", -EINVAL, 0, "", 0, ""},
        {"127.0.0.1:65536", -EINVAL, 0, "", 0, ""},
        {"127.0.0.1:99999999999", -EINVAL, 0, "", 0, ""},
        {"127.0.0.1:80x", -EINVAL, 0, "", 0, ""},
        {"localhost:9025", -EINVAL, 0, "", 0, ""},
        {"::1:9025", -EINVAL, 0, "", 0, ""},
        {"[::1]9025", -EINVAL, 0, "", 0, ""},
        {"[::1:9025", -EINVAL, 0, "", 0, ""},
        {":9025", -EINVAL, 0, "", 0, ""},
        {"", -EINVAL, 0, "", 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct stats_http_addr a;
        char err[160] = "";
        int rc = stats_http_parse_listen(cases[i].in, &a, err, sizeof err);
        if (rc != cases[i].rc)
            fail_msg("%s: got %d, want %d (%s)", cases[i].in, rc, cases[i].rc, err);
        if (rc < 0) {
            assert_true(err[0] != '\0');
            continue;
        }
        assert_int_equal(a.family, cases[i].family);
        assert_string_equal(a.host, cases[i].host);
        assert_int_equal(a.port, cases[i].port);
        assert_string_equal(a.path, cases[i].path);
    }
}

static void test_assets_embedded(void **state)
{
    (void)state;
    static const char *const want[] = {"/index.html", "/dashboard.js", "/dashboard.css"};
    assert_int_equal(stats_http_assets_count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(stats_http_assets[i].path, want[i]);
        assert_true(stats_http_assets[i].len > 100);
        assert_int_equal(stats_http_assets[i].data[stats_http_assets[i].len], 0);
    }
    assert_non_null(strstr((const char *)stats_http_assets[0].data, "/dashboard.js"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_core_exposition_exact, reset),
        cmocka_unit_test_setup(test_zero_state, reset),
        cmocka_unit_test_setup(test_quarantine_families, reset),
        cmocka_unit_test_setup(test_event_lines, reset),
        cmocka_unit_test_setup(test_ready_reason, reset),
        cmocka_unit_test_setup(test_plugin_exposition_exact, reset),
        cmocka_unit_test_setup(test_plugin_record_idempotent, reset),
        cmocka_unit_test_setup(test_counter_names, reset),
        cmocka_unit_test_setup(test_label_bounding, reset),
        cmocka_unit_test_setup(test_plugin_counter_family, reset),
        cmocka_unit_test_setup(test_threads, reset),
        cmocka_unit_test_setup(test_decision_validation, reset),
        cmocka_unit_test_setup(test_decision_ring, reset),
        cmocka_unit_test_setup(test_json_figures, reset),
        cmocka_unit_test_setup(test_json_exact, reset),
        cmocka_unit_test_setup(test_help_text, reset),
        cmocka_unit_test(test_parse_listen),
        cmocka_unit_test(test_assets_embedded),
    };
    int rc = cmocka_run_group_tests_name("stats", tests, NULL, NULL);
    stats_reset(0); /* free what the last test registered (LeakSanitizer) */
    return rc;
}
