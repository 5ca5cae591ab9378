/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * state: the shared state plugins keep across sessions (counters with a
 * window, values with a time to live, sets), behind one asynchronous
 * interface so that a plugin written against it runs the same on one
 * machine (the in-process backend, state_mem) and, with the Redis backend,
 * on several instances sharing one store.
 *
 * Every call answers through its callback, on the loop thread, from a later
 * loop iteration: never inside state_call() itself, whatever the backend
 * (the in-process one knows the answer at once; it still waits for the
 * loop, so a plugin sees the same order of events with either backend).
 * Operations on one key apply in the order they were called.
 *
 * Keys are namespaced by the caller (the host passes the plugin instance's
 * name): "ns" + ":" + key, so that two plugins never see each other's keys
 * and the same plugin instance on several sluice instances shares them.
 *
 * Ownership: a state_op belongs to the module from state_call() until its
 * callback has returned or state_cancel(); the caller must cancel what it
 * no longer waits for before freeing what ud points to. The answer's value
 * is valid during the callback only.
 *
 * Threads: loop thread only.
 */
#ifndef SLUICE_STATE_H
#define SLUICE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uv_loop_s; /* uv.h's uv_loop_t; not included here: cfg.c reads these headers */

enum state_backend { STATE_MEMORY = 0, STATE_REDIS };

struct state_conf {
    enum state_backend backend;
    size_t max_keys;   /* memory backend: keys kept at most */
    size_t max_memory; /* memory backend: bytes of keys and values at most */
    /* redis backend (state_redis.h) */
    const char *redis;          /* address */
    const char *redis_user;     /* or NULL */
    const char *redis_password; /* or NULL */
    unsigned redis_db;
    unsigned redis_timeout_ms;
    const char *key_prefix; /* in front of every Redis key ("sluice:") */
};

#define STATE_SET_MAX 4096 /* members of one set, whatever the backend */

/* Operations, in the SDK's numbering (SLUICE_STATE_*). */
enum state_opcode {
    STATE_INCR = 1,
    STATE_GET,
    STATE_SET,
    STATE_DEL,
    STATE_SADD,
    STATE_SISMEMBER,
    STATE_MGET,  /* keys[0..nkeys): values, NULL when absent or a set */
    STATE_MINCR, /* counters keys[i] += deltas[i], all or none; guarded by `key`
                    when given (applied only when it is not there; then it is
                    set to value, expiring ttl_ms later); refused when a key
                    comes twice or the guard is one of the counters */
};

#define STATE_MULTI_MAX 4096 /* keys of one MGET or MINCR */
#define STATE_MINCR_LIMIT                                                                          \
    (1LL << 53) /* MINCR counters stay within +-2^53                                               \
                   (what a Lua number holds exactly) */

#define STATE_KEY_MAX 1200          /* bytes of key, namespace included */
#define STATE_VALUE_MAX (64 * 1024) /* bytes of a value or set member */

struct state_req {
    enum state_opcode op;
    const char *ns;          /* namespace: the plugin instance's name */
    const char *key;         /* NUL-terminated */
    const char *value;       /* SET: the value; SADD, SISMEMBER: the member */
    size_t len;              /* of value */
    int64_t delta;           /* INCR */
    uint64_t ttl_ms;         /* INCR: window of a new counter; SET, SADD: expiry; 0: none */
    const char *const *keys; /* MGET, MINCR: nkeys keys (namespaced like key) */
    const int64_t *deltas;   /* MINCR */
    size_t nkeys;
};

struct state_ans {
    int status;        /* 0, or -ENOENT (GET: no such key), -EPROTOTYPE (wrong
                          type), -ERANGE (INCR overflow), -ENOSPC (set full;
                          MINCR: more keys than the memory store holds),
                          -EAGAIN (store unreachable or too slow), -EIO
                          (the store answered something else) */
    int64_t num;       /* INCR: the value after; DEL, SADD: 1 when it changed
                          something; SISMEMBER: 1 when a member */
    const char *value; /* GET */
    size_t len;
    int64_t ttl_ms; /* INCR, GET: time left; -1: no expiry */
    /* MGET: count values in key order (NULL: absent) */
    const char *const *values;
    const size_t *lens;
    size_t count;
};

typedef void (*state_cb)(void *ud, const struct state_ans *a);

struct state_op;

/* Start the service (before plugins run). 0, or -1 with err filled. */
int state_init(struct uv_loop_s *loop, const struct state_conf *conf, char *err, size_t errlen);
/* Stop, after the plugins have shut down: what is still pending is dropped
 * without a callback. */
void state_shutdown(void);
bool state_running(void);

/* NULL when the request is unusable (not running, bad opcode, key empty or
 * over STATE_KEY_MAX with its namespace, value over STATE_VALUE_MAX, not on
 * the loop thread): then cb is never called. */
struct state_op *state_call(const struct state_req *rq, state_cb cb, void *ud);
/* Before the callback ran: it never will. An operation the store already
 * applied stays applied. */
void state_cancel(struct state_op *op);

/* For the stats endpoint and tests. */
struct state_stats {
    size_t keys, bytes;
    uint64_t ops, errors, evicted, expired;
};
void state_get_stats(struct state_stats *out);

#endif
