/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * state_redis: the Redis backend of the plugins' shared state (state.h),
 * so that several sluice instances share counters, values and sets. One
 * asynchronous hiredis connection on the event loop (Redis runs commands
 * one at a time, so more connections would not make it faster), with AUTH
 * (password, or ACL user and password) and SELECT on every connect,
 * reconnection with backoff, and a deadline on every operation.
 *
 * Every operation maps to one Redis command or one Lua script (EVAL), so
 * that it is atomic across instances: a counter's window is set in the same
 * step as its first increment, a set's size bound in the same step as the
 * add.
 *
 * While the connection is down (not yet connected, Redis unreachable,
 * AUTH refused, a deadline missed) operations fail at once with -EAGAIN:
 * the plugin applies its failure policy, nothing waits for Redis.
 *
 * Ownership: state_redis_submit() hands the module a request; `done` is
 * called exactly once for it, from the loop, never inside submit (not for
 * a refusal either: then submit returns NULL and nothing is called), unless
 * state_redis_abandon() came first.
 *
 * Threads: loop thread only.
 */
#ifndef SLUICE_STATE_REDIS_H
#define SLUICE_STATE_REDIS_H

#include <stdbool.h>

#include "state.h"

struct state_redis_conf {
    const char *addr;     /* "host:port", "[v6]:port" or "unix:/path" */
    const char *user;     /* ACL user, or NULL (AUTH with the password only) */
    const char *password; /* or NULL (no AUTH) */
    unsigned db;          /* SELECT when not 0 */
    unsigned timeout_ms;  /* per operation and for connecting */
};

struct state_redis_req;
typedef void (*state_redis_done)(void *ud, const struct state_ans *a);

/* 0 when addr is a usable address ("host" must be an IP address: hiredis
 * 0.14 would resolve a name blocking the loop), else -1 with err. */
int state_redis_addr_check(const char *addr, char *err, size_t errlen);

/* Connects in the background. 0, or -1 with err (a bad address). */
int state_redis_start(struct uv_loop_s *loop, const struct state_redis_conf *conf, char *err,
                      size_t errlen);
void state_redis_stop(void);
bool state_redis_up(void);

/* key is complete (prefix and namespace in it; "" for MINCR without a
 * guard, MGET), and so are keys[0..rq->nkeys) for MGET and MINCR. NULL when
 * the connection is down: the caller answers -EAGAIN itself. */
struct state_redis_req *state_redis_submit(const struct state_req *rq, const char *key,
                                           const char *const *keys, state_redis_done done,
                                           void *ud);
/* done will not be called; the command may still reach Redis. */
void state_redis_abandon(struct state_redis_req *r);

#endif
