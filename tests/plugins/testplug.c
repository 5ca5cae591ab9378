/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * testplug: a plugin for the test suite that does, per phase, what its
 * [plugin NAME] section says, so integration tests can drive every verdict,
 * edit and failure path of the host end to end.
 *
 * Keys (all optional):
 *   connect|helo|mail|rcpt|data = continue|accept|reject|tempfail|discard|
 *                                 quarantine|disconnect|invalid|error
 *   reply = CODE ENH text        reply for reject/tempfail/disconnect
 *   match_rcpt = ADDR            rcpt verdict only for this recipient
 *   blocking = yes               the data hook runs on the thread pool
 *   sleep_ms = N                 the data hook sleeps N ms (use with blocking)
 *   async_ms = N                 the data hook answers N ms later (async)
 *   add_header = Name: value     (data)
 *   insert_header = Name: value  (data, at the top)
 *   change_header = Name: value  (data, first field of that name)
 *   delete_header = Name         (data)
 *   replace_body = text          (data; "\n" sequences become line breaks)
 *   change_sender = ADDR         (mail or data, see sender_phase)
 *   sender_params = PARAMS       (the ESMTP parameters change_sender gives)
 *   sender_phase = mail|data
 *   add_rcpt = ADDR              (data)
 *   remove_rcpt = ADDR           (data)
 *   rewrite_rcpt = FROM TO       (rcpt: remove FROM, add TO)
 *   symbol = NAME SCORE          (data)
 *   counter = yes                counts data calls in a counter
 *   tls_header = Name            (data) adds "Name: version=V; cipher=C; fp=F;
 *                                subject=S; issuer=I" from the TLS accessors
 *                                ("-" for an empty value)
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <uv.h>

#include <sluice/plugin.h>

struct tp {
    const struct sluice_host_api *api;
    sluice_instance *inst;
    int verdict[SLUICE_PHASE_COUNT];
    int code;
    char enh[16];
    char text[200];
    const char *match_rcpt;
    unsigned sleep_ms, async_ms;
    const char *add_header, *insert_header, *change_header, *delete_header, *tls_header;
    char *replace_body;
    const char *change_sender;
    const char *sender_params;
    bool sender_at_mail;
    const char *add_rcpt, *remove_rcpt;
    char rw_from[256], rw_to[256];
    char sym_name[64];
    double sym_score;
    sluice_counter *calls;
    unsigned long ndata; /* data hook calls, handed over on reload */
};

/* The host table is the same for every instance; keep it for tp_of().
 * Atomic: a reload runs tp_init again on the loop thread (the module stays
 * loaded) while hooks of the old chain read it on pool threads. */
static _Atomic(const struct sluice_host_api *) g_api;

static int parse_verdict(const char *s)
{
    static const char *const names[] = {"continue", "accept", "reject", "tempfail",
                                        "discard", "quarantine", "disconnect"};
    for (int i = 0; i < 7; i++)
        if (strcasecmp(s, names[i]) == 0)
            return i;
    if (strcasecmp(s, "invalid") == 0)
        return 42;
    if (strcasecmp(s, "error") == 0)
        return SLUICE_ERROR;
    return -1;
}

static int tp_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    struct tp *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    atomic_store_explicit(&g_api, api, memory_order_release);
    t->api = api;
    t->inst = inst;
    static const char *const phases[] = {"connect", "helo", "mail", "rcpt", "data"};
    int bad = 0;
    for (int i = 0; i < 5; i++) {
        const char *v = api->config_get(inst, phases[i]);
        t->verdict[i] = SLUICE_CONTINUE;
        if (v && (t->verdict[i] = parse_verdict(v)) < 0) {
            api->config_error(inst, phases[i], "unknown verdict '%s'", v);
            bad = 1;
        }
    }
    const char *r = api->config_get(inst, "reply");
    if (r && sscanf(r, "%d %15s %199[^\n]", &t->code, t->enh, t->text) < 3) {
        api->config_error(inst, "reply", "expected 'CODE ENH text'");
        bad = 1;
    }
    t->match_rcpt = api->config_get(inst, "match_rcpt");
    const char *v;
    if ((v = api->config_get(inst, "sleep_ms")))
        t->sleep_ms = (unsigned)atoi(v);
    if ((v = api->config_get(inst, "async_ms")))
        t->async_ms = (unsigned)atoi(v);
    t->add_header = api->config_get(inst, "add_header");
    t->insert_header = api->config_get(inst, "insert_header");
    t->change_header = api->config_get(inst, "change_header");
    t->delete_header = api->config_get(inst, "delete_header");
    t->tls_header = api->config_get(inst, "tls_header");
    if ((v = api->config_get(inst, "replace_body"))) {
        t->replace_body = malloc(strlen(v) * 2 + 3);
        char *o = t->replace_body;
        for (const char *p = v; *p; p++) {
            if (p[0] == '\\' && p[1] == 'n') {
                *o++ = '\r';
                *o++ = '\n';
                p++;
            } else {
                *o++ = *p;
            }
        }
        *o = 0;
    }
    t->change_sender = api->config_get(inst, "change_sender");
    t->sender_params = api->config_get(inst, "sender_params");
    v = api->config_get(inst, "sender_phase");
    t->sender_at_mail = v && strcasecmp(v, "mail") == 0;
    t->add_rcpt = api->config_get(inst, "add_rcpt");
    t->remove_rcpt = api->config_get(inst, "remove_rcpt");
    if ((v = api->config_get(inst, "rewrite_rcpt")) &&
        sscanf(v, "%255s %255s", t->rw_from, t->rw_to) != 2) {
        api->config_error(inst, "rewrite_rcpt", "expected 'FROM TO'");
        bad = 1;
    }
    if ((v = api->config_get(inst, "symbol")) &&
        sscanf(v, "%63s %lf", t->sym_name, &t->sym_score) != 2) {
        api->config_error(inst, "symbol", "expected 'NAME SCORE'");
        bad = 1;
    }
    if ((v = api->config_get(inst, "counter")) && strcasecmp(v, "yes") == 0)
        t->calls = api->counter_new(inst, "data_calls", "Data hook calls of the test plugin",
                                    NULL, 0);
    if (bad) {
        free(t->replace_body);
        free(t);
        return -1;
    }
    *data = t;
    return 0;
}

static void tp_shutdown(void *data)
{
    struct tp *t = data;
    free(t->replace_body);
    free(t);
}

static int answer(sluice_ctx *ctx, struct tp *t, enum sluice_phase ph)
{
    int v = t->verdict[ph];
    if (t->code && (v == SLUICE_REJECT || v == SLUICE_TEMPFAIL || v == SLUICE_DISCONNECT))
        t->api->set_reply(ctx, t->code, t->enh, t->text);
    return v;
}


static struct tp *tp_of(sluice_ctx *ctx)
{
    return atomic_load_explicit(&g_api, memory_order_acquire)->instance_data(ctx);
}

static int tp_hook_connect(sluice_ctx *ctx)
{
    struct tp *t = tp_of(ctx);
    return answer(ctx, t, SLUICE_PHASE_CONNECT);
}

static int tp_hook_helo(sluice_ctx *ctx)
{
    struct tp *t = tp_of(ctx);
    return answer(ctx, t, SLUICE_PHASE_HELO);
}

static int tp_hook_mail(sluice_ctx *ctx)
{
    struct tp *t = tp_of(ctx);
    if (t->change_sender && t->sender_at_mail)
        t->api->sender_change(ctx, t->change_sender, t->sender_params);
    return answer(ctx, t, SLUICE_PHASE_MAIL);
}

static int tp_hook_rcpt(sluice_ctx *ctx)
{
    struct tp *t = tp_of(ctx);
    const char *cur = t->api->current_rcpt(ctx);
    if (t->rw_from[0] && cur && strcasecmp(cur, t->rw_from) == 0) {
        t->api->rcpt_remove(ctx, cur);
        t->api->rcpt_add(ctx, t->rw_to, NULL);
    }
    if (t->match_rcpt && (!cur || strcasecmp(cur, t->match_rcpt) != 0))
        return SLUICE_CONTINUE;
    return answer(ctx, t, SLUICE_PHASE_RCPT);
}

static void split_header(const char *spec, char *name, size_t nlen, const char **value)
{
    const char *colon = strchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    if (n >= nlen)
        n = nlen - 1;
    memcpy(name, spec, n);
    name[n] = 0;
    *value = colon ? colon + 1 : "";
    while (**value == ' ')
        (*value)++;
}

static const char *or_dash(const char *v)
{
    return v && *v ? v : "-";
}

static void add_tls_header(sluice_ctx *ctx, const struct sluice_host_api *api, const char *name)
{
    bool peer = SLUICE_API_HAS(api, tls_peer_fingerprint);
    char v[1024];
    snprintf(v, sizeof v, "version=%s; cipher=%s; fp=%s; subject=%s; issuer=%s",
             or_dash(api->tls_version(ctx)), or_dash(api->tls_cipher(ctx)),
             or_dash(peer ? api->tls_peer_fingerprint(ctx) : NULL),
             or_dash(peer ? api->tls_peer_subject(ctx) : NULL),
             or_dash(peer ? api->tls_peer_issuer(ctx) : NULL));
    api->header_add(ctx, name, v);
}

static void tp_reload(void *old_data, void *new_data)
{
    struct tp *o = old_data, *n = new_data;
    n->ndata = __atomic_load_n(&o->ndata, __ATOMIC_RELAXED);
    n->api->log(n->inst, SLUICE_LOG_INFO, "reload: took over %lu data calls", n->ndata);
}

static int tp_data_work(sluice_ctx *ctx, struct tp *t)
{
    __atomic_add_fetch(&t->ndata, 1, __ATOMIC_RELAXED);
    const struct sluice_host_api *api = t->api;
    char name[128];
    const char *value;
    if (t->calls)
        api->counter_add(t->calls, NULL, 1);
    if (t->add_header) {
        split_header(t->add_header, name, sizeof name, &value);
        api->header_add(ctx, name, value);
    }
    if (t->insert_header) {
        split_header(t->insert_header, name, sizeof name, &value);
        api->header_insert(ctx, 0, name, value);
    }
    if (t->change_header) {
        split_header(t->change_header, name, sizeof name, &value);
        api->header_change(ctx, name, 0, value);
    }
    if (t->delete_header)
        api->header_delete(ctx, t->delete_header, 0);
    if (t->tls_header)
        add_tls_header(ctx, api, t->tls_header);
    if (t->replace_body)
        api->body_replace(ctx, t->replace_body, strlen(t->replace_body));
    if (t->change_sender && !t->sender_at_mail)
        api->sender_change(ctx, t->change_sender, t->sender_params);
    if (t->add_rcpt)
        api->rcpt_add(ctx, t->add_rcpt, NULL);
    if (t->remove_rcpt)
        api->rcpt_remove(ctx, t->remove_rcpt);
    if (t->sym_name[0])
        api->symbol_add(ctx, t->sym_name, t->sym_score, "test symbol");
    return answer(ctx, t, SLUICE_PHASE_DATA);
}

static void tp_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void tp_timer_fired(uv_timer_t *h)
{
    sluice_ctx *ctx = h->data;
    struct tp *t = tp_of(ctx);
    int v = tp_data_work(ctx, t);
    uv_close((uv_handle_t *)h, tp_timer_closed);
    t->api->complete(ctx, v);
}

static int tp_hook_data(sluice_ctx *ctx)
{
    struct tp *t = tp_of(ctx);
    if (t->sleep_ms) {
        struct timespec ts = {t->sleep_ms / 1000, (long)(t->sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (t->async_ms) {
        uv_timer_t *tm = malloc(sizeof *tm);
        if (!tm)
            return SLUICE_TEMPFAIL;
        uv_timer_init(t->api->event_loop(ctx), tm);
        tm->data = ctx;
        uv_timer_start(tm, tp_timer_fired, t->async_ms, 0);
        return SLUICE_ASYNC;
    }
    return tp_data_work(ctx, t);
}

/* Same hooks, but the data hook runs on the thread pool. */
SLUICE_PLUGIN_DEFINE(.name = "testplug", .version = "1", .description = "test plugin",
                     .capabilities = SLUICE_CAP_HEADERS | SLUICE_CAP_BODY | SLUICE_CAP_SENDER |
                                     SLUICE_CAP_RECIPIENTS | SLUICE_CAP_QUARANTINE,
                     .blocking_phases = TESTPLUG_BLOCKING, .init = tp_init,
                     .shutdown = tp_shutdown, .on_connect = tp_hook_connect,
                     .on_helo = tp_hook_helo, .on_mail = tp_hook_mail, .on_rcpt = tp_hook_rcpt,
                     .on_data = tp_hook_data, .reload = tp_reload);
