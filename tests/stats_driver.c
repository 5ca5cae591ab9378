/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats_driver: the stats HTTP endpoint with scripted events, for the
 * integration tests (tests/integration/test_stats_*.py) while no daemon is
 * needed. Usage: stats_driver LISTEN
 * Prints "listening PORT" once the endpoint is up, then reads one command
 * per line on stdin and answers "ok" or "err <why>" for each:
 *
 *   conn open|close|refused      tls ok|fail          error
 *   reply CODE                   upreply CODE         uperr KIND
 *   timeout KIND                 reload ok|fail       ready L U C   (0/1 each)
 *   tx VERDICT RCPTS BYTES_IN BYTES_OUT SECONDS
 *   plugin NAME verdict V | latency PHASE SECONDS | timeout | error | breaker STATE
 *   counter NAME LABEL|- MAX VALUE|- N
 *   pcounter INSTANCE NAME LABEL|- MAX VALUE|- N   (stats_counter_new_plugin)
 *   decision {JSON object}
 *   auto RATE                    (random accepted/rejected mail at RATE/s; 0 stops)
 *   quit                         (EOF too)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "names.h"
#include "stats.h"
#include "stats_http.h"

static int lookup(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (s != NULL && strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

#define LOOKUP(tab, s) lookup(tab, sizeof tab / sizeof tab[0], s)

static const char *const timeouts[] = {"command", "data", "upstream", "plugin"};
static const char *const uperrs[] = {"connect", "protocol", "timeout", "lost", "tls"};
static const char *const breakers[] = {"closed", "open", "half_open"};

/* ---- Background load for the dashboard test ----------------------------- */

static _Atomic int g_rate;
static pthread_t g_auto;
static bool g_auto_running;

static void *auto_load(void *arg)
{
    (void)arg;
    struct stats_plugin *spam = stats_plugin_get("spam");
    struct stats_counter *rules =
        stats_counter_new("plugin_spam_rule_hits", "Spam rules that matched.", "rule", 20);
    static const char *const rule_names[] = {"BAYES_99", "URIBL_BLACK", "MISSING_DATE", "HTML_ONLY"};
    unsigned n = 0;
    int rate;
    while ((rate = atomic_load(&g_rate)) > 0) {
        bool reject = n % 4 == 3;
        stats_conn_open();
        stats_plugin_latency(spam, STATS_PH_DATA, 0.001 + (n % 10) * 0.002);
        stats_plugin_verdict(spam, reject ? STATS_PV_REJECT : STATS_PV_CONTINUE);
        stats_counter_add(rules, rule_names[n % 4], 1);
        stats_transaction(reject ? STATS_V_REJECTED : STATS_V_ACCEPTED, 1, 2000 + n, 2000 + n,
                          0.05);
        stats_smtp_reply(reject ? 550 : 250);
        char rec[256];
        snprintf(rec, sizeof rec,
                 "{\"sid\":\"auto%u\",\"time\":%.3f,\"client\":\"127.0.0.1\",\"from\":\"a@b.example\","
                 "\"rcpts\":[\"c@d.example\"],\"verdict\":\"%s\",\"plugin\":\"%s\",\"reason\":\"%s\"}",
                 n, stats_now(), reject ? "rejected" : "accepted", reject ? "spam" : "",
                 reject ? "5.7.1 spam score 12.0" : "");
        stats_decision_push(rec);
        stats_conn_close();
        n++;
        usleep((useconds_t)(1000000 / rate));
    }
    return NULL;
}

static void auto_stop(void)
{
    atomic_store(&g_rate, 0);
    if (g_auto_running)
        pthread_join(g_auto, NULL);
    g_auto_running = false;
}

/* ---- Commands ------------------------------------------------------------ */

/* plugin NAME verdict V | latency PHASE SECONDS | timeout | error | breaker STATE */
static const char *run_plugin(const char *name, char **save)
{
    struct stats_plugin *p = stats_plugin_get(name);
    char *what = strtok_r(NULL, " \t\r\n", save), *x = strtok_r(NULL, " \t\r\n", save);
    int i;
    if (p == NULL || what == NULL)
        return "plugin NAME WHAT";
    if (strcmp(what, "verdict") == 0 && (i = names_pverdict_find(x)) >= 0)
        stats_plugin_verdict(p, (enum stats_pverdict)i);
    else if (strcmp(what, "latency") == 0 && (i = names_phase_find(x)) >= 0) {
        char *s = strtok_r(NULL, " \t\r\n", save);
        if (!s)
            return "latency PHASE SECONDS";
        stats_plugin_latency(p, (enum stats_phase)i, strtod(s, NULL));
    } else if (strcmp(what, "timeout") == 0)
        stats_plugin_timeout(p);
    else if (strcmp(what, "error") == 0)
        stats_plugin_error(p);
    else if (strcmp(what, "breaker") == 0 && (i = LOOKUP(breakers, x)) >= 0)
        stats_plugin_breaker(p, (enum stats_breaker)i);
    else
        return "plugin what";
    return NULL;
}

/* counter NAME LABEL|- MAX VALUE|- N, or with per_instance: pcounter INSTANCE NAME ... */
static const char *run_counter(bool per_instance, char *a1, char **save)
{
    const char *instance = NULL;
    if (per_instance) {
        instance = a1;
        a1 = strtok_r(NULL, " \t\r\n", save);
        if (a1 == NULL)
            return "pcounter INSTANCE NAME LABEL MAX VALUE N";
    }
    char *label = strtok_r(NULL, " \t\r\n", save), *max = strtok_r(NULL, " \t\r\n", save);
    char *value = strtok_r(NULL, " \t\r\n", save), *n = strtok_r(NULL, " \t\r\n", save);
    if (!label || !max || !value || !n)
        return "counter NAME LABEL MAX VALUE N";
    const char *ln = strcmp(label, "-") ? label : NULL;
    struct stats_counter *c =
        instance ? stats_counter_new_plugin(instance, a1, "Test counter.", ln, (unsigned)atoi(max))
                 : stats_counter_new(a1, "Test counter.", ln, (unsigned)atoi(max));
    if (c == NULL)
        return "counter refused";
    stats_counter_add(c, strcmp(value, "-") ? value : NULL, strtoull(n, NULL, 10));
    return NULL;
}

static const char *run(char *line)
{
    /* The record is the rest of the line, spaces and all: before strtok. */
    if (strncmp(line, "decision ", 9) == 0)
        return stats_decision_push(line + 9) < 0 ? "bad decision" : NULL;

    char *save = NULL;
    char *cmd = strtok_r(line, " \t\r\n", &save);
    char *a1 = strtok_r(NULL, " \t\r\n", &save);
    int i;

    if (cmd == NULL)
        return "empty";
    if (strcmp(cmd, "conn") == 0) {
        if (a1 && strcmp(a1, "open") == 0)
            stats_conn_open();
        else if (a1 && strcmp(a1, "close") == 0)
            stats_conn_close();
        else if (a1 && strcmp(a1, "refused") == 0)
            stats_conn_refused();
        else
            return "conn what";
    } else if (strcmp(cmd, "tls") == 0) {
        stats_tls_handshake(a1 && strcmp(a1, "ok") == 0);
    } else if (strcmp(cmd, "error") == 0) {
        stats_error();
    } else if (strcmp(cmd, "reply") == 0 && a1) {
        stats_smtp_reply(atoi(a1));
    } else if (strcmp(cmd, "upreply") == 0 && a1) {
        stats_upstream_reply(atoi(a1));
    } else if (strcmp(cmd, "uperr") == 0 && (i = LOOKUP(uperrs, a1)) >= 0) {
        stats_upstream_error((enum stats_up_error)i);
    } else if (strcmp(cmd, "timeout") == 0 && (i = LOOKUP(timeouts, a1)) >= 0) {
        stats_timeout((enum stats_timeout)i);
    } else if (strcmp(cmd, "reload") == 0) {
        stats_config_reload(a1 && strcmp(a1, "ok") == 0);
    } else if (strcmp(cmd, "ready") == 0) {
        char *u = strtok_r(NULL, " \t\r\n", &save), *c = strtok_r(NULL, " \t\r\n", &save);
        if (!a1 || !u || !c)
            return "ready L U C";
        stats_set_listening(atoi(a1));
        stats_set_upstream_ok(atoi(u));
        stats_set_chain_loaded(atoi(c));
    } else if (strcmp(cmd, "tx") == 0 && (i = names_txverdict_find(a1)) >= 0) {
        char *r = strtok_r(NULL, " \t\r\n", &save), *bi = strtok_r(NULL, " \t\r\n", &save);
        char *bo = strtok_r(NULL, " \t\r\n", &save), *s = strtok_r(NULL, " \t\r\n", &save);
        if (!r || !bi || !bo || !s)
            return "tx VERDICT RCPTS IN OUT SECONDS";
        stats_transaction((enum stats_verdict)i, (unsigned)strtoul(r, NULL, 10),
                          strtoull(bi, NULL, 10), strtoull(bo, NULL, 10), strtod(s, NULL));
    } else if (strcmp(cmd, "plugin") == 0 && a1) {
        return run_plugin(a1, &save);
    } else if ((strcmp(cmd, "counter") == 0 || strcmp(cmd, "pcounter") == 0) && a1) {
        return run_counter(cmd[0] == 'p', a1, &save);
    } else if (strcmp(cmd, "auto") == 0 && a1) {
        auto_stop();
        atomic_store(&g_rate, atoi(a1));
        if (atoi(a1) > 0) {
            if (pthread_create(&g_auto, NULL, auto_load, NULL) != 0)
                return "thread";
            g_auto_running = true;
        }
    } else {
        return "unknown command";
    }
    return NULL;
}

int main(int argc, char **argv)
{
    char err[256];
    if (argc != 2) {
        fprintf(stderr, "usage: %s LISTEN\n", argv[0]);
        return 2;
    }
    log_init("stats_driver", 0, LOG_LVL_WARN);
    stats_init();
    if (stats_http_start(argv[1], err, sizeof err) < 0) {
        fprintf(stderr, "stats_driver: %s\n", err);
        return 1;
    }
    printf("listening %d\n", stats_http_port());
    fflush(stdout);

    char line[20000];
    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (strcmp(line, "quit") == 0)
            break;
        const char *why = run(line);
        if (why)
            printf("err %s\n", why);
        else
            printf("ok\n");
        fflush(stdout);
    }
    auto_stop();
    stats_http_stop();
    stats_reset(0);
    return 0;
}
