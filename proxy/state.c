/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * state: see state.h. The in-process backend applies an operation when it
 * is called (so operations on one key apply in call order) and keeps the
 * answer in the op until the loop delivers it through defer. A timer sweeps
 * expired keys a little at a time.
 */
#include "state.h"

#include <uv.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "clock.h"
#include "defer.h"
#include "state_mem.h"
#include "state_redis.h"
#include "stats.h"
#include "xalloc.h"

/* A sweep every second looks at this many keys at most: 1 M keys take a
 * few minutes to go round, at a cost of microseconds per tick. */
#define STATE__SWEEP_MS 1000
#define STATE__SWEEP_BUDGET 4096

struct state_op {
    struct defer_ev ev;           /* first: the defer callback finds the op from it */
    struct state_op *prev, *next; /* pending list */
    state_cb cb;
    void *ud;
    struct state_redis_req *rr; /* redis: in flight; NULL once answered */
    struct state_ans ans;
    char *value; /* GET: owned copy of the answer's value */
    /* MGET: owned copies of the answer's values (one block) and lengths */
    char **values;
    size_t *lens;
};

_Static_assert(STATE_SET_MAX == STATE_MEM_SET_MAX, "one set bound for both backends");

static struct {
    bool running;
    enum state_backend backend;
    char *prefix; /* redis: in front of every key */
    pthread_t thread;
    struct state_mem *mem;
    uv_timer_t sweep;
    struct state_op *pending; /* answers not delivered yet */
    uint64_t ops, errors;
} state__g;

bool state_running(void)
{
    return state__g.running;
}

static void state__publish(void)
{
    struct state_stats st;
    state_get_stats(&st);
    stats_state(st.keys, st.bytes, st.ops, st.errors, st.evicted, st.expired);
}

static void state__sweep_cb(uv_timer_t *t)
{
    (void)t;
    if (!state__g.mem)
        return;
    state_mem_sweep(state__g.mem, clock_mono_ns() / 1000000, STATE__SWEEP_BUDGET);
    state__publish();
}

int state_init(struct uv_loop_s *loop, const struct state_conf *conf, char *err, size_t errlen)
{
    if (state__g.running) {
        snprintf(err, errlen, "state: already running");
        return -1;
    }
    state__g.backend = conf->backend;
    if (conf->backend == STATE_REDIS) {
        struct state_redis_conf rc = {.addr = conf->redis,
                                      .user = conf->redis_user,
                                      .password = conf->redis_password,
                                      .db = conf->redis_db,
                                      .timeout_ms = conf->redis_timeout_ms};
        if (state_redis_start(loop, &rc, err, errlen) != 0)
            return -1;
        state__g.prefix = xstrdup(conf->key_prefix ? conf->key_prefix : "");
        state__g.thread = pthread_self();
        state__g.running = true;
        return 0;
    }
    uint8_t seed[16];
    if (RAND_bytes(seed, sizeof seed) != 1) {
        snprintf(err, errlen, "state: no random bytes for the hash seed");
        return -1;
    }
    state__g.mem = state_mem_new(conf->max_keys, conf->max_memory, seed);
    uv_timer_init(loop, &state__g.sweep);
    uv_timer_start(&state__g.sweep, state__sweep_cb, STATE__SWEEP_MS, STATE__SWEEP_MS);
    uv_unref((uv_handle_t *)&state__g.sweep);
    state__g.thread = pthread_self();
    state__g.running = true;
    return 0;
}

static void state__unlink(struct state_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        state__g.pending = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

static void state__op_free(struct state_op *op)
{
    free(op->values);
    free(op->lens);
    free(op->value);
    free(op);
}

static void state__deliver(struct defer_ev *ev)
{
    struct state_op *op = (struct state_op *)ev;
    state__unlink(op);
    /* Out of the module before the call: the callback may not cancel it. */
    op->cb(op->ud, &op->ans);
    state__op_free(op);
}

/* Keep a copy of an MGET answer's values in op (one allocation for the
 * pointers and the bytes, freed with op->values). */
static void state__keep_values(struct state_op *op, const char *const *v, const size_t *len,
                               size_t n)
{
    size_t bytes = n * sizeof(char *);
    for (size_t i = 0; i < n; i++)
        bytes += v[i] ? len[i] + 1 : 0;
    op->values = xmalloc(bytes ? bytes : 1);
    op->lens = xcalloc(n ? n : 1, sizeof *op->lens);
    char *p = (char *)(op->values + n);
    for (size_t i = 0; i < n; i++) {
        op->values[i] = NULL;
        if (!v[i])
            continue;
        memcpy(p, v[i], len[i]);
        p[len[i]] = 0;
        op->values[i] = p;
        op->lens[i] = len[i];
        p += len[i] + 1;
    }
    op->ans.values = (const char *const *)op->values;
    op->ans.lens = op->lens;
    op->ans.count = n;
}

/* Apply rq to the in-process store; the answer goes in op. */
static void state__apply_mem(struct state_op *op, const struct state_req *rq, const char *key,
                             const char *const *keys)
{
    struct state_mem *m = state__g.mem;
    uint64_t now = clock_mono_ns() / 1000000;
    struct state_ans *a = &op->ans;
    a->ttl_ms = -1;
    switch (rq->op) {
    case STATE_INCR:
        a->status = state_mem_incr(m, key, rq->delta, rq->ttl_ms, now, &a->num, &a->ttl_ms);
        break;
    case STATE_GET: {
        const char *v;
        size_t len;
        a->status = state_mem_get(m, key, now, &v, &len, &a->ttl_ms);
        if (a->status == 0) {
            op->value = xmalloc(len + 1);
            memcpy(op->value, v, len);
            op->value[len] = 0;
            a->value = op->value;
            a->len = len;
        }
        break;
    }
    case STATE_SET:
        state_mem_set(m, key, rq->value, rq->len, rq->ttl_ms, now);
        a->status = 0;
        break;
    case STATE_DEL:
        a->num = state_mem_del(m, key, now);
        a->status = 0;
        break;
    case STATE_SADD: {
        int r = state_mem_sadd(m, key, rq->value, rq->len, rq->ttl_ms, now);
        a->status = r < 0 ? r : 0;
        a->num = r > 0;
        break;
    }
    case STATE_SISMEMBER: {
        int r = state_mem_sismember(m, key, rq->value, rq->len, now);
        a->status = r < 0 ? r : 0;
        a->num = r > 0;
        break;
    }
    case STATE_MGET: {
        /* each value points into the table until the next call: copied
         * one at a time */
        size_t n = rq->nkeys;
        const char **v = xcalloc(n, sizeof *v);
        size_t *len = xcalloc(n, sizeof *len);
        char **tmp = xcalloc(n, sizeof *tmp);
        for (size_t i = 0; i < n; i++) {
            const char *p;
            int64_t ttl;
            if (state_mem_get(m, keys[i], now, &p, &len[i], &ttl) == 0) {
                tmp[i] = xmalloc(len[i] + 1);
                memcpy(tmp[i], p, len[i]);
                v[i] = tmp[i];
            }
        }
        state__keep_values(op, v, len, n);
        for (size_t i = 0; i < n; i++)
            free(tmp[i]);
        free(tmp);
        free(v);
        free(len);
        a->status = 0;
        break;
    }
    case STATE_MINCR: {
        int applied;
        a->status =
            state_mem_mincr(m, keys, rq->deltas, rq->nkeys, STATE_MINCR_LIMIT, *key ? key : NULL,
                            rq->value, rq->len, rq->ttl_ms, now, &applied);
        a->num = applied;
        break;
    }
    }
}

/* The redis backend's answer (from the loop, never inside state_call). */
static void state__redis_done(void *ud, const struct state_ans *a)
{
    struct state_op *op = ud;
    op->rr = NULL;
    op->ans = *a;
    op->ans.value = NULL;
    op->ans.values = NULL;
    op->ans.lens = NULL;
    op->ans.count = 0;
    if (a->status == 0 && a->value) {
        op->value = xmalloc(a->len + 1);
        memcpy(op->value, a->value, a->len);
        op->value[a->len] = 0;
        op->ans.value = op->value;
    }
    if (a->status == 0 && a->count)
        state__keep_values(op, a->values, a->lens, a->count);
    if (a->status != 0 && a->status != -ENOENT)
        state__g.errors++;
    state__publish();
    defer_post(&op->ev, state__deliver);
}

/* prefix + ns + ":" + k into out[STATE_KEY_MAX + 1]; -1 when too long. */
static int state__full_key(const char *prefix, const char *ns, const char *k, char *out)
{
    size_t pl = strlen(prefix), nl = strlen(ns), kl = strlen(k);
    if (pl + nl + 1 + kl > STATE_KEY_MAX)
        return -1;
    memcpy(out, prefix, pl);
    memcpy(out + pl, ns, nl);
    out[pl + nl] = ':';
    memcpy(out + pl + nl + 1, k, kl + 1);
    return 0;
}

/* MGET, MINCR: the namespaced keys, in one allocation (freed by the
 * caller), or NULL when one is empty or too long. */
static char **state__full_keys(const char *prefix, const struct state_req *rq)
{
    size_t fixed = strlen(prefix) + strlen(rq->ns) + 2, bytes = rq->nkeys * sizeof(char *);
    for (size_t i = 0; i < rq->nkeys; i++) {
        if (!rq->keys[i] || !*rq->keys[i])
            return NULL;
        size_t kl = strnlen(rq->keys[i], STATE_KEY_MAX + 1);
        if (fixed - 1 + kl > STATE_KEY_MAX)
            return NULL;
        bytes += fixed + kl;
    }
    char **keys = xmalloc(bytes);
    char *p = (char *)(keys + rq->nkeys);
    for (size_t i = 0; i < rq->nkeys; i++) {
        char k[STATE_KEY_MAX + 1];
        (void)state__full_key(prefix, rq->ns, rq->keys[i], k);
        size_t l = strlen(k) + 1;
        memcpy(p, k, l);
        keys[i] = p;
        p += l;
    }
    return keys;
}

static int state__cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* MINCR: true when a key comes twice, or the guard is one of the counters.
 * Either would break all-or-none: each occurrence is checked against the
 * limit alone and then both are applied, and a guard written over a
 * counter. Sorted copies: n log n for the 4,096 keys a call may have. */
static bool state__mincr_dup(const struct state_req *rq, const char *guard)
{
    size_t n = rq->nkeys + (*guard != 0);
    const char **k = xmalloc(n * sizeof *k);
    memcpy(k, rq->keys, rq->nkeys * sizeof *k);
    if (*guard)
        k[rq->nkeys] = guard;
    qsort(k, n, sizeof *k, state__cmp_str);
    bool dup = false;
    for (size_t i = 1; i < n && !dup; i++)
        dup = strcmp(k[i - 1], k[i]) == 0;
    free(k);
    return dup;
}

struct state_op *state_call(const struct state_req *rq, state_cb cb, void *ud)
{
    if (!state__g.running || !pthread_equal(state__g.thread, pthread_self()) || !rq || !cb ||
        !rq->ns || rq->op < STATE_INCR || rq->op > STATE_MINCR)
        return NULL;
    bool multi = rq->op == STATE_MGET || rq->op == STATE_MINCR;
    /* MGET has no key of its own; MINCR's is an optional guard */
    if (!multi && (!rq->key || !*rq->key))
        return NULL;
    if (multi && (!rq->keys || rq->nkeys == 0 || rq->nkeys > STATE_MULTI_MAX ||
                  (rq->op == STATE_MINCR && !rq->deltas)))
        return NULL;
    /* 2^40 ms is 34 years: more is a caller's bug, and now + ttl must not wrap */
    if (rq->ttl_ms > ((uint64_t)1 << 40))
        return NULL;
    const char *guard = rq->op == STATE_MGET ? "" : rq->key ? rq->key : "";
    bool has_value = rq->op == STATE_SET || rq->op == STATE_SADD || rq->op == STATE_SISMEMBER ||
                     (rq->op == STATE_MINCR && *guard);
    if (has_value && ((!rq->value && rq->len) || rq->len > STATE_VALUE_MAX))
        return NULL;
    if (rq->op == STATE_MINCR)
        for (size_t i = 0; i < rq->nkeys; i++)
            if (rq->deltas[i] > STATE_MINCR_LIMIT || rq->deltas[i] < -STATE_MINCR_LIMIT)
                return NULL;
    const char *prefix = state__g.backend == STATE_REDIS ? state__g.prefix : "";
    char key[STATE_KEY_MAX + 1] = "";
    if (rq->op == STATE_MINCR) {
        for (size_t i = 0; i < rq->nkeys; i++)
            if (!rq->keys[i])
                return NULL;
        if (state__mincr_dup(rq, guard))
            return NULL;
    }
    if (*guard && state__full_key(prefix, rq->ns, guard, key) != 0)
        return NULL;
    char **keys = NULL;
    if (multi && !(keys = state__full_keys(prefix, rq)))
        return NULL;

    struct state_op *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->ud = ud;
    struct state_req r = *rq;
    if (!has_value) {
        r.value = "";
        r.len = 0;
    } else if (!r.value) {
        r.value = "";
    }
    op->next = state__g.pending;
    if (op->next)
        op->next->prev = op;
    state__g.pending = op;
    state__g.ops++;
    if (state__g.backend == STATE_REDIS) {
        op->rr = state_redis_submit(&r, key, (const char *const *)keys, state__redis_done, op);
        free(keys);
        if (!op->rr) { /* down: the plugin hears it from the loop */
            op->ans = (struct state_ans){.status = -EAGAIN, .ttl_ms = -1};
            state__g.errors++;
            state__publish();
            defer_post(&op->ev, state__deliver);
        }
        return op;
    }
    state__apply_mem(op, &r, key, (const char *const *)keys);
    free(keys);
    if (op->ans.status != 0 && op->ans.status != -ENOENT)
        state__g.errors++;
    state__publish();
    defer_post(&op->ev, state__deliver);
    return op;
}

void state_cancel(struct state_op *op)
{
    if (!op)
        return;
    defer_cancel(&op->ev);
    state_redis_abandon(op->rr);
    state__unlink(op);
    state__op_free(op);
}

void state_get_stats(struct state_stats *out)
{
    memset(out, 0, sizeof *out);
    if (state__g.mem) {
        struct state_mem_stats ms;
        state_mem_stats(state__g.mem, &ms);
        out->keys = ms.entries;
        out->bytes = ms.bytes;
        out->evicted = ms.evicted;
        out->expired = ms.expired;
    }
    out->ops = state__g.ops;
    out->errors = state__g.errors;
}

static void state__closed(uv_handle_t *h)
{
    (void)h;
}

void state_shutdown(void)
{
    if (!state__g.running)
        return;
    /* Called after the plugins are gone (they had to cancel what they
     * waited for before their shutdown): nobody is left to call back. */
    while (state__g.pending)
        state_cancel(state__g.pending);
    state_redis_stop();
    free(state__g.prefix);
    state__g.prefix = NULL;
    if (state__g.mem) {
        uv_timer_stop(&state__g.sweep);
        uv_close((uv_handle_t *)&state__g.sweep, state__closed);
        state_mem_free(state__g.mem);
        state__g.mem = NULL;
    }
    state__g.running = false;
}
