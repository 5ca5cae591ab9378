/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * state_mem: the in-process backend of the plugins' shared state (state.h):
 * counters with a window, values with a time to live, and sets, in one
 * bounded table. Pure: no I/O and no clock (callers pass "now" in
 * milliseconds), so it is unit-tested on its own.
 *
 * Semantics are Redis's, so that a site can move to the Redis backend
 * without its plugins noticing:
 *  - incr: a missing (or expired) key starts at 0 and, when window_ms > 0,
 *    expires window_ms after that first increment; later increments keep
 *    that expiry (a fixed window, like INCRBY + PEXPIRE NX);
 *  - set replaces any value and type, ttl 0 = no expiry;
 *  - sadd adds one member; with ttl_ms > 0 the set's expiry is renewed;
 *  - a key of the wrong type for the operation answers -EPROTOTYPE; a
 *    string counts as a counter only in Redis's integer grammar ("0", or
 *    an optional '-' and digits without a leading zero, within int64).
 *
 * Bounded twice: max_entries keys and max_bytes of keys, values and members
 * together (the least recently used key goes first), and a set holds at most
 * STATE_MEM_SET_MAX members. Keys come from clients (addresses, senders),
 * so the table's hash is keyed with a secret seed: no one can choose keys
 * that all land in one bucket.
 *
 * Threads: one owner (the loop thread); no locking.
 */
#ifndef SLUICE_STATE_MEM_H
#define SLUICE_STATE_MEM_H

#include <stddef.h>
#include <stdint.h>

#define STATE_MEM_SET_MAX 4096

struct state_mem;

struct state_mem_stats {
    size_t entries, bytes;
    uint64_t evicted; /* pushed out by the bounds */
    uint64_t expired; /* dropped after their time */
};

/* seed: 16 secret bytes for the hash. max_entries 0 or max_bytes 0: a
 * table that keeps nothing (every write is evicted at once). */
struct state_mem *state_mem_new(size_t max_entries, size_t max_bytes, const uint8_t seed[16]);
void state_mem_free(struct state_mem *m);

/* Add delta; *value = the value after, *ttl_ms = time left (-1: none).
 * 0, or -EPROTOTYPE, or -ERANGE when the sum would overflow. */
int state_mem_incr(struct state_mem *m, const char *key, int64_t delta, uint64_t window_ms,
                   uint64_t now_ms, int64_t *value, int64_t *ttl_ms);
/* The value of key: a counter in decimal, a string as stored. *val points
 * into the table and is valid until the next call on m. 0, -ENOENT or
 * -EPROTOTYPE (a set). */
int state_mem_get(struct state_mem *m, const char *key, uint64_t now_ms, const char **val,
                  size_t *len, int64_t *ttl_ms);
void state_mem_set(struct state_mem *m, const char *key, const char *val, size_t len,
                   uint64_t ttl_ms, uint64_t now_ms);
/* 1 when key was there, else 0. */
int state_mem_del(struct state_mem *m, const char *key, uint64_t now_ms);
/* 1 added, 0 already a member, -EPROTOTYPE, -ENOSPC (set full). */
int state_mem_sadd(struct state_mem *m, const char *key, const char *member, size_t len,
                   uint64_t ttl_ms, uint64_t now_ms);
/* 1 a member, 0 not (or no such set), -EPROTOTYPE. */
int state_mem_sismember(struct state_mem *m, const char *key, const char *member, size_t len,
                        uint64_t now_ms);

/* Counters keys[i] += deltas[i] (a missing key starts at 0, without
 * expiry), all or none: -EPROTOTYPE when one holds a set or a string that
 * is not an integer in Redis's grammar, -ERANGE when one would leave
 * +-limit, -ENOSPC when the call's keys alone exceed the table's bounds;
 * nothing changed then. Evictions for room happen after the last write and
 * take older keys only. With a guard: only when that key is not there, and
 * it is then set to gval (expiring gttl_ms later, 0 never); *applied = 0
 * when it was there. Keys must be distinct (state.c refuses duplicates). */
int state_mem_mincr(struct state_mem *m, const char *const *keys, const int64_t *deltas, size_t n,
                    int64_t limit, const char *guard, const char *gval, size_t glen,
                    uint64_t gttl_ms, uint64_t now_ms, int *applied);

/* Drop expired keys, looking at no more than `budget` of them; returns how
 * many were dropped. Called from a timer so that memory held by keys no one
 * asks for again is given back. */
size_t state_mem_sweep(struct state_mem *m, uint64_t now_ms, size_t budget);
void state_mem_stats(const struct state_mem *m, struct state_mem_stats *out);

/* SipHash-2-4 of data under key (exposed for the unit test's vectors). */
uint64_t state_mem_siphash(const uint8_t key[16], const void *data, size_t len);

#endif
