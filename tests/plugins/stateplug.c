/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stateplug: a test plugin for the SDK's shared state (api->state_call).
 *  - RCPT: counts recipients per client address over `window_ms` (INCR);
 *    past `limit` it answers 451 4.7.0 "rate limit: N recipients"; it also
 *    starts a GET of that counter and cancels it at once (that callback must never
 *    run), and one with an empty key, which must be refused (NULL).
 *  - DATA (not on the pool): reads "last" (GET) into the header
 *    X-State-Last ("none" when absent), then stores this message's sender
 *    there (SET, ttl `last_ttl_ms`), and adds whether the sender was seen
 *    before (SISMEMBER, then SADD) as X-State-Seen: yes|no.
 *  - with `multi = yes`, then: MINCR of "m:a" += 1 and "m:b" += 2 guarded by
 *    "g:<sender>" (once per sender), and MGET of m:a, m:b, m:none and
 *    senders (a set: absent) into X-State-Multi: "applied=1 1 2 - -"; an
 *    MGET of no keys, and a MINCR with a key twice or its guard among its
 *    counters, must be refused (NULL).
 * A callback that runs inside state_call(), or a cancelled one that runs,
 * aborts the daemon (the test sees it die).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/plugin.h>

SLUICE_API_DECLARE;

struct sp {
    sluice_instance *inst;
    long long limit;
    unsigned long window_ms, last_ttl_ms;
    bool multi;
};

struct sp_job {
    sluice_ctx *ctx;
    struct sp *sp;
    int step;
    long long applied;
    char sender[300];
};

static bool sp_in_call; /* loop thread only */

static int sp_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, state_cancel)) {
        api->config_error(inst, NULL, "needs state_call");
        return -1;
    }
    struct sp *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    const char *v;
    d->inst = inst;
    d->limit = (v = api->config_get(inst, "limit")) ? strtoll(v, NULL, 10) : 3;
    d->window_ms = (v = api->config_get(inst, "window_ms")) ? strtoul(v, NULL, 10) : 60000;
    d->last_ttl_ms = (v = api->config_get(inst, "last_ttl_ms")) ? strtoul(v, NULL, 10) : 0;
    d->multi = (v = api->config_get(inst, "multi")) && strcmp(v, "yes") == 0;
    *data = d;
    return 0;
}

static void sp_shutdown(void *data)
{
    free(data);
}

static void sp_never(void *ud, const struct sluice_state_answer *a)
{
    (void)ud;
    (void)a;
    abort(); /* a cancelled call called back */
}

static sluice_state_op *sp_call(struct sp_job *j, struct sluice_state_request rq,
                                sluice_state_cb cb)
{
    rq.size = sizeof rq;
    sp_in_call = true;
    sluice_state_op *op = sluice_api->state_call(j->sp->inst, &rq, cb, j);
    sp_in_call = false;
    return op;
}

static void sp_counted(void *ud, const struct sluice_state_answer *a)
{
    struct sp_job *j = ud;
    int v = SLUICE_CONTINUE;
    if (sp_in_call)
        abort(); /* called inside state_call() */
    if (a->status != 0) {
        v = SLUICE_ERROR;
    } else if (a->num > j->sp->limit) {
        char text[100];
        snprintf(text, sizeof text, "rate limit: %lld recipients", (long long)a->num);
        sluice_api->set_reply(j->ctx, 451, "4.7.0", text);
        v = SLUICE_TEMPFAIL;
    }
    sluice_api->complete(j->ctx, v);
    free(j);
}

static int sp_rcpt(sluice_ctx *ctx)
{
    struct sp_job *j = calloc(1, sizeof *j);
    if (!j)
        return SLUICE_ERROR;
    j->ctx = ctx;
    j->sp = sluice_api->instance_data(ctx);
    char key[300];
    snprintf(key, sizeof key, "rcpt:%s", sluice_api->client_addr(ctx));
    struct sluice_state_request rq = {
        .op = SLUICE_STATE_INCR, .key = key, .delta = 1, .ttl_ms = j->sp->window_ms};
    struct sluice_state_request peek = {.op = SLUICE_STATE_GET, .key = key};
    sluice_state_op *gone = sp_call(j, peek, sp_never);
    if (!gone)
        abort();
    sluice_api->state_cancel(gone);
    struct sluice_state_request empty = {.op = SLUICE_STATE_GET, .key = ""};
    if (sp_call(j, empty, sp_never))
        abort(); /* an empty key was accepted */
    if (!sp_call(j, rq, sp_counted)) {
        free(j);
        return SLUICE_ERROR;
    }
    return SLUICE_ASYNC;
}

static void sp_data_step(void *ud, const struct sluice_state_answer *a)
{
    struct sp_job *j = ud;
    if (sp_in_call)
        abort();
    sluice_state_cb next = sp_data_step;
    struct sluice_state_request rq = {.key = "last"};
    static const char *const mkeys[] = {"m:a", "m:b", "m:none", "senders"};
    static const int64_t mdeltas[] = {1, 2};
    char guard[320];
    switch (j->step++) {
    case 0: /* GET last */
        if (a->status == 0) {
            char v[300];
            snprintf(v, sizeof v, "%.*s", (int)a->len, a->value);
            sluice_api->header_add(j->ctx, "X-State-Last", v);
        } else {
            sluice_api->header_add(j->ctx, "X-State-Last", a->status == -ENOENT ? "none" : "error");
        }
        rq.op = SLUICE_STATE_SET;
        rq.value = j->sender;
        rq.len = strlen(j->sender);
        rq.ttl_ms = j->sp->last_ttl_ms;
        break;
    case 1: /* SET done: was the sender seen? */
        rq.op = SLUICE_STATE_SISMEMBER;
        rq.key = "senders";
        rq.value = j->sender;
        rq.len = strlen(j->sender);
        break;
    case 2:
        sluice_api->header_add(j->ctx, "X-State-Seen", a->status == 0 && a->num ? "yes" : "no");
        rq.op = SLUICE_STATE_SADD;
        rq.key = "senders";
        rq.value = j->sender;
        rq.len = strlen(j->sender);
        break;
    case 3: /* SADD done */
        if (!j->sp->multi || a->status != 0) {
            sluice_api->complete(j->ctx, a->status == 0 ? SLUICE_CONTINUE : SLUICE_ERROR);
            free(j);
            return;
        }
        rq.op = SLUICE_STATE_MGET;
        rq.keys = mkeys;
        rq.nkeys = 0;
        if (sp_call(j, rq, sp_never))
            abort(); /* an MGET of no keys was accepted */
        /* MINCR with a key twice, or its guard among its counters: refused */
        static const char *const twice[] = {"m:a", "m:a"};
        rq.op = SLUICE_STATE_MINCR;
        rq.keys = twice;
        rq.deltas = mdeltas;
        rq.nkeys = 2;
        if (sp_call(j, rq, sp_never))
            abort();
        rq.key = "m:b";
        rq.value = "x";
        rq.len = 1;
        rq.keys = mkeys;
        if (sp_call(j, rq, sp_never))
            abort();
        snprintf(guard, sizeof guard, "g:%s", j->sender);
        rq.op = SLUICE_STATE_MINCR;
        rq.key = guard;
        rq.value = "x";
        rq.len = 1;
        rq.keys = mkeys;
        rq.deltas = mdeltas;
        rq.nkeys = 2;
        break;
    case 4: /* MINCR done */
        if (a->status != 0) {
            sluice_api->complete(j->ctx, SLUICE_ERROR);
            free(j);
            return;
        }
        j->applied = a->num;
        rq.op = SLUICE_STATE_MGET;
        rq.key = NULL;
        rq.keys = mkeys;
        rq.nkeys = 4;
        break;
    case 5: { /* MGET done */
        char h[200];
        int n = snprintf(h, sizeof h, "applied=%lld", j->applied);
        for (size_t i = 0; a->status == 0 && i < a->count && i < 4 && n < (int)sizeof h; i++)
            n += snprintf(h + n, sizeof h - (size_t)n, " %.*s", a->values[i] ? (int)a->lens[i] : 1,
                          a->values[i] ? a->values[i] : "-"); /* long values: cut at sizeof h */
        sluice_api->header_add(j->ctx, "X-State-Multi", a->status == 0 ? h : "error");
        sluice_api->complete(j->ctx, a->status == 0 ? SLUICE_CONTINUE : SLUICE_ERROR);
        free(j);
        return;
    }
    default:
        sluice_api->complete(j->ctx, a->status == 0 ? SLUICE_CONTINUE : SLUICE_ERROR);
        free(j);
        return;
    }
    if (!sp_call(j, rq, next)) {
        sluice_api->complete(j->ctx, SLUICE_ERROR);
        free(j);
    }
}

static int sp_data(sluice_ctx *ctx)
{
    struct sp_job *j = calloc(1, sizeof *j);
    if (!j)
        return SLUICE_ERROR;
    j->ctx = ctx;
    j->sp = sluice_api->instance_data(ctx);
    snprintf(j->sender, sizeof j->sender, "%s", sluice_api->sender(ctx));
    struct sluice_state_request rq = {.op = SLUICE_STATE_GET, .key = "last"};
    if (!sp_call(j, rq, sp_data_step)) {
        free(j);
        return SLUICE_ERROR;
    }
    return SLUICE_ASYNC;
}

SLUICE_PLUGIN_DEFINE(.name = "stateplug", .version = "1", .description = "SDK state test plugin",
                     .capabilities = SLUICE_CAP_HEADERS, .init = sp_init, .shutdown = sp_shutdown,
                     .on_rcpt = sp_rcpt, .on_data = sp_data);
