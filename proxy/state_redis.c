/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * state_redis: see state_redis.h. hiredis (Debian's 0.14) on the loop
 * through its libuv adapter. hiredis calls every command's callback
 * exactly once: with the reply, or with NULL when the connection goes
 * away; a request therefore lives until that call, and a deadline or an
 * abandon only detaches it from whoever waited.
 *
 * The connection is never freed inside a hiredis callback: a failure there
 * schedules the drop on a zero-delay timer.
 */
#include "state_redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <hiredis/adapters/libuv.h>
#pragma GCC diagnostic pop

#include "clock.h"
#include "log.h"
#include "stats.h"
#include "xalloc.h"

#define STATE_REDIS__BACKOFF_MIN_MS 100
#define STATE_REDIS__BACKOFF_MAX_MS 5000

struct state_redis_req {
    struct state_redis_req *prev, *next; /* in flight, oldest first */
    uint64_t deadline_ms;
    state_redis_done done; /* NULL once answered or abandoned */
    void *ud;
    enum state_opcode op;
    size_t nkeys; /* MGET */
};

static struct {
    bool started, up, was_up;
    bool ever_up;        /* a later PING that makes it up is a reconnect */
    uint64_t reconnects; /* sluice_state_redis_reconnects_total */
    bool failed;         /* this connection had trouble: nothing makes it up again */
    uv_loop_t *loop;
    char *display; /* the address as configured, for the log */
    char *host, *unix_path, *user, *password;
    int port;
    unsigned db, timeout_ms;
    redisAsyncContext *ac;
    uint64_t connect_deadline_ms; /* while connecting; 0 when not */
    unsigned backoff_ms;
    uv_timer_t retry; /* reconnect, or drop (0 ms) */
    uv_timer_t tick;  /* deadlines */
    struct state_redis_req *first, *last;
    char last_error[200];
} g;

static uint64_t state_redis__now(void)
{
    return clock_mono_ns() / 1000000;
}

bool state_redis_up(void)
{
    return g.up;
}

/* ---- requests ---- */

/* sluice_state_redis_up and _reconnects_total follow every change. */
static void state_redis__publish(void)
{
    stats_state_redis(g.up, g.reconnects);
}

static void state_redis__unlink(struct state_redis_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (g.first == r)
        g.first = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else if (g.last == r)
        g.last = r->prev;
    r->prev = r->next = NULL;
}

/* Answer r's waiter (once). */
static void state_redis__answer(struct state_redis_req *r, const struct state_ans *a)
{
    state_redis_done done = r->done;
    r->done = NULL;
    state_redis__unlink(r);
    if (done)
        done(r->ud, a);
}

static void state_redis__fail(struct state_redis_req *r, int status)
{
    struct state_ans a = {.status = status, .ttl_ms = -1};
    state_redis__answer(r, &a);
}

void state_redis_abandon(struct state_redis_req *r)
{
    if (!r)
        return;
    r->done = NULL;
    state_redis__unlink(r); /* freed when hiredis calls back */
}

/* ---- the connection ---- */

static void state_redis__connect(void);

static void state_redis__retry_cb(uv_timer_t *t)
{
    (void)t;
    if (!g.started)
        return;
    if (g.ac) { /* a drop was scheduled */
        redisAsyncContext *ac = g.ac;
        g.ac = NULL;
        g.up = false;
        g.connect_deadline_ms = 0;
        redisAsyncFree(ac); /* pending callbacks run with NULL */
        uv_timer_start(&g.retry, state_redis__retry_cb, g.backoff_ms, 0);
        return;
    }
    state_redis__connect();
}

/* The connection failed or misbehaved: drop it (not from inside a hiredis
 * callback) and connect again after the backoff. */
static void state_redis__trouble(const char *why)
{
    if (g.was_up || strcmp(why, g.last_error) != 0)
        log_warn("state: redis %s: %s; operations fail (-EAGAIN) until it is back", g.display, why);
    snprintf(g.last_error, sizeof g.last_error, "%s", why);
    g.was_up = false;
    g.up = false;
    g.failed = true;
    state_redis__publish();
    g.connect_deadline_ms = 0;
    g.backoff_ms = g.backoff_ms ? g.backoff_ms * 2 : STATE_REDIS__BACKOFF_MIN_MS;
    if (g.backoff_ms > STATE_REDIS__BACKOFF_MAX_MS)
        g.backoff_ms = STATE_REDIS__BACKOFF_MAX_MS;
    uv_timer_start(&g.retry, state_redis__retry_cb, g.ac ? 0 : g.backoff_ms, 0);
}

static void state_redis__setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    const char *step = priv;
    redisReply *rp = reply;
    if (!rp || !g.ac || g.failed)
        return; /* going away, or a step before this one failed */
    if (rp->type == REDIS_REPLY_ERROR) {
        char why[200];
        snprintf(why, sizeof why, "%s refused: %.150s", step, rp->str);
        state_redis__trouble(why);
        return;
    }
    if (strcmp(step, "PING") == 0) {
        g.up = true;
        g.connect_deadline_ms = 0;
        g.backoff_ms = 0;
        g.last_error[0] = 0;
        if (!g.was_up)
            log_info("state: redis %s connected", g.display);
        g.was_up = true;
        if (g.ever_up)
            g.reconnects++;
        g.ever_up = true;
        state_redis__publish();
    }
}

static void state_redis__on_connect(const redisAsyncContext *ac, int status)
{
    if (ac != g.ac)
        return;
    if (status != REDIS_OK) {
        char why[200];
        snprintf(why, sizeof why, "cannot connect: %.150s", ac->errstr);
        g.ac = NULL; /* hiredis frees it after this callback */
        state_redis__trouble(why);
        return;
    }
    /* AUTH and SELECT first, then PING: the connection is usable once the
     * PING's answer is in (replies come in order). */
    redisAsyncContext *c = g.ac;
    if (g.password) {
        const char *argv[3] = {"AUTH", g.user ? g.user : g.password, g.password};
        redisAsyncCommandArgv(c, state_redis__setup_reply, "AUTH", g.user ? 3 : 2, argv, NULL);
    }
    if (g.db) {
        char db[16];
        snprintf(db, sizeof db, "%u", g.db);
        const char *argv[2] = {"SELECT", db};
        redisAsyncCommandArgv(c, state_redis__setup_reply, "SELECT", 2, argv, NULL);
    }
    const char *argv[1] = {"PING"};
    redisAsyncCommandArgv(c, state_redis__setup_reply, "PING", 1, argv, NULL);
}

static void state_redis__on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    if (ac != g.ac)
        return;  /* one we dropped ourselves */
    g.ac = NULL; /* hiredis frees it */
    state_redis__trouble("connection lost");
}

static void state_redis__connect(void)
{
    redisAsyncContext *ac =
        g.unix_path ? redisAsyncConnectUnix(g.unix_path) : redisAsyncConnect(g.host, g.port);
    if (!ac || ac->err) {
        char why[200];
        snprintf(why, sizeof why, "cannot connect: %.150s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        state_redis__trouble(why);
        return;
    }
    if (redisLibuvAttach(ac, g.loop) != REDIS_OK) {
        redisAsyncFree(ac);
        state_redis__trouble("cannot attach to the event loop");
        return;
    }
    /* The connection must not hold the loop by itself: at shutdown the
     * server runs the loop until its own handles are closed, and the
     * store is closed only after the plugins (they cancel what they wait
     * for). An operation in flight is bounded by the tick's deadlines. */
    uv_unref((uv_handle_t *)&((redisLibuvEvents *)ac->ev.data)->handle);
    redisAsyncSetConnectCallback(ac, state_redis__on_connect);
    redisAsyncSetDisconnectCallback(ac, state_redis__on_disconnect);
    g.ac = ac;
    g.failed = false;
    g.connect_deadline_ms = state_redis__now() + g.timeout_ms;
}

static void state_redis__tick_cb(uv_timer_t *t)
{
    (void)t;
    uint64_t now = state_redis__now();
    if (g.ac && g.connect_deadline_ms && now >= g.connect_deadline_ms) {
        state_redis__trouble("no answer to connect, AUTH or PING in time");
        return;
    }
    bool late = false;
    while (g.first && g.first->deadline_ms <= now) {
        state_redis__fail(g.first, -EAGAIN);
        late = true;
    }
    if (late && g.ac)
        state_redis__trouble("an operation got no answer in time");
}

/* "host:port", "[v6]:port", "unix:/path" */
static int state_redis__parse_addr(const char *addr, char **host_out, int *port_out,
                                   char **unix_out, char *err, size_t errlen)
{
    if (strncmp(addr, "unix:", 5) == 0) {
        if (addr[5] != '/') {
            snprintf(err, errlen, "redis address '%s': unix: needs an absolute path", addr);
            return -1;
        }
        *unix_out = xstrdup(addr + 5);
        return 0;
    }
    const char *colon = strrchr(addr, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || colon == addr || *end || port < 1 || port > 65535) {
        snprintf(err, errlen, "redis address '%s': expected HOST:PORT, [IPv6]:PORT or unix:/PATH",
                 addr);
        return -1;
    }
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    char host[INET6_ADDRSTRLEN];
    unsigned char bin[16];
    if (hl >= sizeof host) {
        snprintf(err, errlen, "redis address '%s': not an IP address", addr);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = 0;
    /* hiredis 0.14 resolves a host name with a blocking getaddrinfo() on
     * every reconnect, which would stall every session: addresses only. */
    if (inet_pton(AF_INET, host, bin) != 1 && inet_pton(AF_INET6, host, bin) != 1) {
        snprintf(err, errlen,
                 "redis address '%s': an IP address is needed (a host name would be "
                 "resolved blocking the event loop at every reconnect)",
                 addr);
        return -1;
    }
    *host_out = xstrdup(host);
    *port_out = (int)port;
    return 0;
}

int state_redis_addr_check(const char *addr, char *err, size_t errlen)
{
    char *host = NULL, *path = NULL;
    int port;
    int rc = state_redis__parse_addr(addr, &host, &port, &path, err, errlen);
    free(host);
    free(path);
    return rc;
}

int state_redis_start(struct uv_loop_s *loop, const struct state_redis_conf *conf, char *err,
                      size_t errlen)
{
    memset(&g, 0, sizeof g);
    if (!conf->addr ||
        state_redis__parse_addr(conf->addr, &g.host, &g.port, &g.unix_path, err, errlen) != 0) {
        if (!conf->addr)
            snprintf(err, errlen, "[state] backend = redis needs a redis address");
        free(g.host);
        free(g.unix_path);
        memset(&g, 0, sizeof g);
        return -1;
    }
    g.loop = loop;
    g.display = xstrdup(conf->addr);
    g.user = conf->user ? xstrdup(conf->user) : NULL;
    g.password = conf->password ? xstrdup(conf->password) : NULL;
    g.db = conf->db;
    g.timeout_ms = conf->timeout_ms ? conf->timeout_ms : 500;
    uv_timer_init(loop, &g.retry);
    uv_timer_init(loop, &g.tick);
    unsigned every = g.timeout_ms / 4 ? g.timeout_ms / 4 : 1;
    uv_timer_start(&g.tick, state_redis__tick_cb, every, every);
    uv_unref((uv_handle_t *)&g.tick);
    uv_unref((uv_handle_t *)&g.retry);
    g.started = true;
    state_redis__publish(); /* down until the first PING is answered */
    state_redis__connect();
    return 0;
}

void state_redis_stop(void)
{
    if (!g.started)
        return;
    g.started = false;
    while (g.first)
        state_redis_abandon(g.first);
    if (g.ac) {
        redisAsyncContext *ac = g.ac;
        g.ac = NULL;
        redisAsyncFree(ac);
    }
    uv_timer_stop(&g.retry);
    uv_timer_stop(&g.tick);
    uv_close((uv_handle_t *)&g.retry, NULL);
    uv_close((uv_handle_t *)&g.tick, NULL);
    free(g.display);
    free(g.host);
    free(g.unix_path);
    free(g.user);
    if (g.password)
        memset(g.password, 0, strlen(g.password));
    free(g.password);
    g.display = g.host = g.unix_path = g.user = g.password = NULL;
    g.up = false;
}

/* ---- operations ---- */

/* One step: the counter and, when it is new, its window; then the time left. */
static const char STATE_REDIS__INCR[] =
    "local e = redis.call('EXISTS', KEYS[1]) "
    "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
    "if e == 0 and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
    "return {v, redis.call('PTTL', KEYS[1])}";
static const char STATE_REDIS__GET[] =
    "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}";
/* ARGV: member, ttl, the most members a set holds (-1: full) */
static const char STATE_REDIS__SADD[] =
    "local t = tonumber(ARGV[2]) "
    "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then "
    "  if t > 0 then redis.call('PEXPIRE', KEYS[1], t) end return 0 end "
    "if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end "
    "redis.call('SADD', KEYS[1], ARGV[1]) "
    "if t > 0 then redis.call('PEXPIRE', KEYS[1], t) end return 1";

/* KEYS: the guard (when ARGV[1] is 1), then the counters; ARGV: guard?,
 * its value, its ttl, the limit (decimal), then one delta per counter.
 * Every check before the first write (a script's writes are not rolled
 * back): a set under a counter's name fails GET with WRONGTYPE before
 * anything changed, and a value INCRBY would refuse is refused here first.
 * That takes Redis's own integer grammar, not Lua's tonumber (which takes
 * " 5", "012", "0x10", "1e3", "+5", "5.0"). Lua numbers are doubles: the
 * value is compared with the limit as text, and x + d is never computed
 * (2^53-1 + 2 rounds to 2^53); x > L - d is exact for |x|, |d| <= L. */
static const char STATE_REDIS__MINCR[] =
    "local g = tonumber(ARGV[1]) local first = 1 "
    "if g == 1 then "
    "  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end first = 2 end "
    "local lim = ARGV[4] local L = tonumber(lim) "
    "local function num(v) "
    "  if v == '0' then return 0 end "
    "  local neg, d = string.match(v, '^(%-?)([1-9]%d*)$') "
    "  local top = '9223372036854775807' if neg == '-' then top = '9223372036854775808' end "
    "  if not d or #d > 19 or (#d == 19 and d > top) then "
    "    return nil, 'ERR value is not an integer' end "
    "  if #d > #lim or (#d == #lim and d > lim) then "
    "    return nil, 'ERR increment or decrement would overflow' end "
    "  local x = tonumber(d) if neg == '-' then x = -x end return x end "
    "for i = first, #KEYS do "
    "  local d = tonumber(ARGV[5 + i - first]) "
    "  local v = redis.call('GET', KEYS[i]) "
    "  local x = 0 "
    "  if v then local err x, err = num(v) "
    "    if not x then return redis.error_reply(err) end end "
    "  if (d > 0 and x > L - d) or (d < 0 and x < -L - d) then "
    "    return redis.error_reply('ERR increment or decrement would overflow') end "
    "end "
    "for i = first, #KEYS do redis.call('INCRBY', KEYS[i], ARGV[5 + i - first]) end "
    "if g == 1 then "
    "  if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) "
    "  else redis.call('SET', KEYS[1], ARGV[2]) end end "
    "return 1";

static int state_redis__error(const char *s)
{
    if (strstr(s, "WRONGTYPE") || strstr(s, "not an integer"))
        return -EPROTOTYPE;
    if (strstr(s, "overflow"))
        return -ERANGE;
    return -EIO;
}

static int64_t state_redis__ttl(long long pttl)
{
    return pttl >= 0 ? (int64_t)pttl : -1;
}

static void state_redis__reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct state_redis_req *r = priv;
    redisReply *rp = reply;
    const char **values = NULL;
    size_t *lens = NULL;
    if (r->done) {
        struct state_ans a = {.status = 0, .ttl_ms = -1};
        if (!rp) {
            a.status = -EAGAIN;
        } else if (rp->type == REDIS_REPLY_ERROR) {
            a.status = state_redis__error(rp->str);
        } else {
            switch (r->op) {
            case STATE_INCR:
                if (rp->type == REDIS_REPLY_ARRAY && rp->elements == 2 &&
                    rp->element[0]->type == REDIS_REPLY_INTEGER) {
                    a.num = rp->element[0]->integer;
                    a.ttl_ms = state_redis__ttl(rp->element[1]->integer);
                } else {
                    a.status = -EIO;
                }
                break;
            case STATE_GET:
                if (rp->type == REDIS_REPLY_ARRAY && rp->elements == 2 &&
                    rp->element[0]->type == REDIS_REPLY_STRING &&
                    rp->element[0]->len > STATE_VALUE_MAX) {
                    a.status = -EIO; /* as for MGET below */
                } else if (rp->type == REDIS_REPLY_ARRAY && rp->elements == 2 &&
                           rp->element[0]->type == REDIS_REPLY_STRING) {
                    a.value = rp->element[0]->str;
                    a.len = rp->element[0]->len;
                    a.ttl_ms = state_redis__ttl(rp->element[1]->integer);
                } else if (rp->type == REDIS_REPLY_ARRAY) {
                    a.status = -ENOENT;
                } else {
                    a.status = -EIO;
                }
                break;
            case STATE_SET:
                a.status = rp->type == REDIS_REPLY_STATUS ? 0 : -EIO;
                break;
            case STATE_DEL:
            case STATE_SISMEMBER:
                if (rp->type == REDIS_REPLY_INTEGER)
                    a.num = rp->integer > 0;
                else
                    a.status = -EIO;
                break;
            case STATE_SADD:
                if (rp->type != REDIS_REPLY_INTEGER)
                    a.status = -EIO;
                else if (rp->integer < 0)
                    a.status = -ENOSPC;
                else
                    a.num = rp->integer;
                break;
            case STATE_MINCR:
                if (rp->type == REDIS_REPLY_INTEGER)
                    a.num = rp->integer;
                else
                    a.status = -EIO;
                break;
            case STATE_MGET:
                if (rp->type != REDIS_REPLY_ARRAY || rp->elements != r->nkeys) {
                    a.status = -EIO;
                    break;
                }
                /* A value over STATE_VALUE_MAX was not written through
                 * the state (state_call refuses it): another writer or a
                 * hostile server. An error, not megabytes copied on the
                 * loop thread for a plugin that expects small values. */
                for (size_t i = 0; i < r->nkeys && a.status == 0; i++)
                    if (rp->element[i]->type == REDIS_REPLY_STRING &&
                        rp->element[i]->len > STATE_VALUE_MAX)
                        a.status = -EIO;
                if (a.status != 0)
                    break;
                /* pointers into the reply, which lives until we return */
                values = xcalloc(r->nkeys, sizeof *values);
                lens = xcalloc(r->nkeys, sizeof *lens);
                for (size_t i = 0; i < r->nkeys; i++) {
                    const redisReply *e = rp->element[i];
                    if (e->type == REDIS_REPLY_STRING) {
                        values[i] = e->str;
                        lens[i] = e->len;
                    }
                }
                a.values = values;
                a.lens = lens;
                a.count = r->nkeys;
                break;
            }
        }
        state_redis__answer(r, &a);
    }
    free(values);
    free(lens);
    free(r);
}

/* MGET and MINCR: argv of their own size. */
static struct state_redis_req *state_redis__submit_multi(const struct state_req *rq,
                                                         const char *key, const char *const *keys,
                                                         state_redis_done done, void *ud)
{
    size_t n = rq->nkeys, max = n * 2 + 8, argc = 0;
    const char **argv = xcalloc(max, sizeof *argv);
    size_t *len = xcalloc(max, sizeof *len);
    char *nums = NULL;
    char lim[24], gttl[24], nk[24];
    bool guard = *key != 0;
#define ARG(s, l) (argv[argc] = (s), len[argc] = (l), argc++)
#define ARGZ(s) ARG((s), strlen(s))
    if (rq->op == STATE_MGET) {
        ARGZ("MGET");
        for (size_t i = 0; i < n; i++)
            ARGZ(keys[i]);
    } else {
        snprintf(nk, sizeof nk, "%zu", n + guard);
        snprintf(gttl, sizeof gttl, "%" PRIu64, rq->ttl_ms);
        snprintf(lim, sizeof lim, "%lld", (long long)STATE_MINCR_LIMIT);
        ARGZ("EVAL");
        ARGZ(STATE_REDIS__MINCR);
        ARGZ(nk);
        if (guard)
            ARGZ(key);
        for (size_t i = 0; i < n; i++)
            ARGZ(keys[i]);
        ARGZ(guard ? "1" : "0");
        ARG(guard ? rq->value : "", guard ? rq->len : 0);
        ARGZ(gttl);
        ARGZ(lim);
        nums = xmalloc(n * 24);
        for (size_t i = 0; i < n; i++) {
            snprintf(nums + i * 24, 24, "%" PRId64, rq->deltas[i]);
            ARGZ(nums + i * 24);
        }
    }
#undef ARG
#undef ARGZ
    struct state_redis_req *r = xcalloc(1, sizeof *r);
    r->done = done;
    r->ud = ud;
    r->op = rq->op;
    r->nkeys = n;
    r->deadline_ms = state_redis__now() + g.timeout_ms;
    /* hiredis formats the command into its buffer here: argv may go */
    int rc = redisAsyncCommandArgv(g.ac, state_redis__reply, r, (int)argc, argv, len);
    free(argv);
    free(len);
    free(nums);
    if (rc != REDIS_OK) {
        free(r);
        return NULL;
    }
    r->prev = g.last;
    if (g.last)
        g.last->next = r;
    else
        g.first = r;
    g.last = r;
    return r;
}

struct state_redis_req *state_redis_submit(const struct state_req *rq, const char *key,
                                           const char *const *keys, state_redis_done done, void *ud)
{
    if (!g.up || !g.ac)
        return NULL;
    if (rq->op == STATE_MGET || rq->op == STATE_MINCR)
        return state_redis__submit_multi(rq, key, keys, done, ud);
    const char *argv[7];
    size_t len[7];
    int argc = 0;
    char n1[24], n2[24], n3[24];
#define ARG(s, l) (argv[argc] = (s), len[argc] = (l), argc++)
#define ARGZ(s) ARG((s), strlen(s))
    switch (rq->op) {
    case STATE_INCR:
        snprintf(n1, sizeof n1, "%" PRId64, rq->delta);
        snprintf(n2, sizeof n2, "%" PRIu64, rq->ttl_ms);
        ARGZ("EVAL");
        ARGZ(STATE_REDIS__INCR);
        ARGZ("1");
        ARGZ(key);
        ARGZ(n1);
        ARGZ(n2);
        break;
    case STATE_GET:
        ARGZ("EVAL");
        ARGZ(STATE_REDIS__GET);
        ARGZ("1");
        ARGZ(key);
        break;
    case STATE_SET:
        ARGZ("SET");
        ARGZ(key);
        ARG(rq->value, rq->len);
        if (rq->ttl_ms) {
            snprintf(n1, sizeof n1, "%" PRIu64, rq->ttl_ms);
            ARGZ("PX");
            ARGZ(n1);
        }
        break;
    case STATE_DEL:
        ARGZ("DEL");
        ARGZ(key);
        break;
    case STATE_SADD:
        snprintf(n2, sizeof n2, "%" PRIu64, rq->ttl_ms);
        snprintf(n3, sizeof n3, "%d", STATE_SET_MAX);
        ARGZ("EVAL");
        ARGZ(STATE_REDIS__SADD);
        ARGZ("1");
        ARGZ(key);
        ARG(rq->value, rq->len);
        ARGZ(n2);
        ARGZ(n3);
        break;
    case STATE_SISMEMBER:
        ARGZ("SISMEMBER");
        ARGZ(key);
        ARG(rq->value, rq->len);
        break;
    case STATE_MGET:
    case STATE_MINCR: /* state_redis__submit_multi */
        break;
    }
#undef ARG
#undef ARGZ
    struct state_redis_req *r = xcalloc(1, sizeof *r);
    r->done = done;
    r->ud = ud;
    r->op = rq->op;
    r->deadline_ms = state_redis__now() + g.timeout_ms;
    if (redisAsyncCommandArgv(g.ac, state_redis__reply, r, argc, argv, len) != REDIS_OK) {
        free(r);
        return NULL;
    }
    r->prev = g.last;
    if (g.last)
        g.last->next = r;
    else
        g.first = r;
    g.last = r;
    return r;
}
