/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for state_mem, the in-process store behind the plugins' shared
 * state: SipHash against the reference vectors, Redis's semantics for
 * counters with a window, values with a time to live and sets, the type
 * errors, both bounds (keys and bytes, least recently used first), the
 * sweep that gives back keys nobody asks for, and a table that keeps
 * nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "state_mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t seed[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* The paper's appendix: key 00..0f, message 00..0e (15 bytes), and the
 * first vectors of the reference implementation's table (messages 00..i-1). */
static void test_siphash_vectors(void **state)
{
    (void)state;
    uint8_t msg[64];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)i;
    assert_true(state_mem_siphash(seed, msg, 15) == 0xa129ca6149be45e5ULL);
    assert_true(state_mem_siphash(seed, msg, 0) == 0x726fdb47dd0e0e31ULL);
    assert_true(state_mem_siphash(seed, msg, 1) == 0x74f839c593dc67fdULL);
    assert_true(state_mem_siphash(seed, msg, 8) == 0x93f5f5799a932462ULL);
    assert_true(state_mem_siphash(seed, msg, 63) == 0x958a324ceb064572ULL);
}

static void test_incr_fixed_window(void **state)
{
    (void)state;
    struct state_mem *m = state_mem_new(100, 1 << 20, seed);
    int64_t v, ttl;
    assert_int_equal(state_mem_incr(m, "rl:192.0.2.1", 1, 60000, 1000, &v, &ttl), 0);
    assert_int_equal(v, 1);
    assert_int_equal(ttl, 60000);
    /* later increments keep the first expiry */
    assert_int_equal(state_mem_incr(m, "rl:192.0.2.1", 5, 60000, 31000, &v, &ttl), 0);
    assert_int_equal(v, 6);
    assert_int_equal(ttl, 30000);
    /* at the end of the window the counter starts again */
    assert_int_equal(state_mem_incr(m, "rl:192.0.2.1", 1, 60000, 61000, &v, &ttl), 0);
    assert_int_equal(v, 1);
    assert_int_equal(ttl, 60000);
    /* no window: no expiry */
    assert_int_equal(state_mem_incr(m, "total", -3, 0, 61000, &v, &ttl), 0);
    assert_int_equal(v, -3);
    assert_int_equal(ttl, -1);
    /* overflow is refused and leaves the value */
    assert_int_equal(state_mem_incr(m, "total", INT64_MIN, 0, 61000, &v, &ttl), -ERANGE);
    const char *s;
    size_t len;
    assert_int_equal(state_mem_get(m, "total", 61000, &s, &len, &ttl), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(s, "-3", 2);
    struct state_mem_stats st;
    state_mem_stats(m, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.expired, 1);
    state_mem_free(m);
}

static void test_set_get_del_and_types(void **state)
{
    (void)state;
    struct state_mem *m = state_mem_new(100, 1 << 20, seed);
    const char *s;
    size_t len;
    int64_t ttl, v;
    assert_int_equal(state_mem_get(m, "grey:a", 0, &s, &len, &ttl), -ENOENT);
    state_mem_set(m, "grey:a", "1700000000\0x", 12, 5000, 100); /* binary-safe */
    assert_int_equal(state_mem_get(m, "grey:a", 200, &s, &len, &ttl), 0);
    assert_int_equal(len, 12);
    assert_memory_equal(s, "1700000000\0x", 12);
    assert_int_equal(ttl, 4900);
    assert_int_equal(state_mem_get(m, "grey:a", 5100, &s, &len, &ttl), -ENOENT);
    /* a string holding an integer counts on, like Redis's INCRBY */
    state_mem_set(m, "n", "41", 2, 0, 0);
    assert_int_equal(state_mem_incr(m, "n", 1, 1000, 0, &v, &ttl), 0);
    assert_int_equal(v, 42);
    assert_int_equal(ttl, -1);
    state_mem_set(m, "word", "abc", 3, 0, 0);
    assert_int_equal(state_mem_incr(m, "word", 1, 0, 0, &v, &ttl), -EPROTOTYPE);
    /* sets */
    assert_int_equal(state_mem_sadd(m, "allow", "a", 1, 0, 0), 1);
    assert_int_equal(state_mem_sadd(m, "allow", "a", 1, 0, 0), 0);
    assert_int_equal(state_mem_sadd(m, "allow", "ab", 2, 0, 0), 1);
    assert_int_equal(state_mem_sismember(m, "allow", "ab", 2, 0), 1);
    assert_int_equal(state_mem_sismember(m, "allow", "b", 1, 0), 0);
    assert_int_equal(state_mem_sismember(m, "none", "b", 1, 0), 0);
    assert_int_equal(state_mem_get(m, "allow", 0, &s, &len, &ttl), -EPROTOTYPE);
    assert_int_equal(state_mem_incr(m, "allow", 1, 0, 0, &v, &ttl), -EPROTOTYPE);
    assert_int_equal(state_mem_sadd(m, "word", "a", 1, 0, 0), -EPROTOTYPE);
    assert_int_equal(state_mem_sismember(m, "word", "a", 1, 0), -EPROTOTYPE);
    /* set replaces any type */
    state_mem_set(m, "allow", "x", 1, 0, 0);
    assert_int_equal(state_mem_get(m, "allow", 0, &s, &len, &ttl), 0);
    assert_int_equal(state_mem_del(m, "allow", 0), 1);
    assert_int_equal(state_mem_del(m, "allow", 0), 0);
    /* a set's expiry is renewed by sadd with a ttl */
    assert_int_equal(state_mem_sadd(m, "seen", "x", 1, 1000, 0), 1);
    assert_int_equal(state_mem_sadd(m, "seen", "y", 1, 1000, 900), 1);
    assert_int_equal(state_mem_sismember(m, "seen", "x", 1, 1800), 1);
    assert_int_equal(state_mem_sismember(m, "seen", "x", 1, 1900), 0);
    state_mem_free(m);
}

static void test_set_full(void **state)
{
    (void)state;
    struct state_mem *m = state_mem_new(10, 1 << 24, seed);
    char b[16];
    for (int i = 0; i < STATE_MEM_SET_MAX; i++) {
        int n = snprintf(b, sizeof b, "m%d", i);
        assert_int_equal(state_mem_sadd(m, "big", b, (size_t)n, 0, 0), 1);
    }
    assert_int_equal(state_mem_sadd(m, "big", "one more", 8, 0, 0), -ENOSPC);
    assert_int_equal(state_mem_sadd(m, "big", "m7", 2, 0, 0), 0);
    state_mem_free(m);
}

static void test_bounds_lru(void **state)
{
    (void)state;
    struct state_mem *m = state_mem_new(3, 1 << 20, seed);
    int64_t v, ttl;
    const char *s;
    size_t len;
    state_mem_set(m, "a", "1", 1, 0, 0);
    state_mem_set(m, "b", "1", 1, 0, 0);
    state_mem_set(m, "c", "1", 1, 0, 0);
    assert_int_equal(state_mem_get(m, "a", 0, &s, &len, &ttl), 0); /* a is recent now */
    assert_int_equal(state_mem_incr(m, "d", 1, 0, 0, &v, &ttl), 0);
    assert_int_equal(state_mem_get(m, "b", 0, &s, &len, &ttl), -ENOENT);
    assert_int_equal(state_mem_get(m, "a", 0, &s, &len, &ttl), 0);
    assert_int_equal(state_mem_get(m, "c", 0, &s, &len, &ttl), 0);
    struct state_mem_stats st;
    state_mem_stats(m, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.evicted, 1);
    state_mem_free(m);

    /* bytes: a big value pushes out the old ones; one over the bound
     * alone is not kept at all */
    m = state_mem_new(1000, 4096, seed);
    char big[3000];
    memset(big, 'x', sizeof big);
    for (int i = 0; i < 10; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        state_mem_set(m, k, "v", 1, 0, 0);
    }
    state_mem_set(m, "big", big, sizeof big, 0, 0);
    state_mem_stats(m, &st);
    assert_true(st.bytes <= 4096);
    assert_int_equal(state_mem_get(m, "big", 0, &s, &len, &ttl), 0);
    assert_int_equal(state_mem_get(m, "k0", 0, &s, &len, &ttl), -ENOENT);
    char huge[5000];
    memset(huge, 'y', sizeof huge);
    state_mem_set(m, "huge", huge, sizeof huge, 0, 0);
    assert_int_equal(state_mem_get(m, "huge", 0, &s, &len, &ttl), -ENOENT);
    state_mem_stats(m, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    state_mem_free(m);

    /* a table that keeps nothing */
    m = state_mem_new(0, 0, seed);
    assert_int_equal(state_mem_incr(m, "x", 1, 0, 0, &v, &ttl), 0);
    assert_int_equal(v, 1);
    assert_int_equal(state_mem_incr(m, "x", 1, 0, 0, &v, &ttl), 0);
    assert_int_equal(v, 1);
    assert_int_equal(state_mem_sadd(m, "s", "a", 1, 0, 0), 1);
    assert_int_equal(state_mem_sismember(m, "s", "a", 1, 0), 0);
    state_mem_free(m);
}

static void test_sweep(void **state)
{
    (void)state;
    struct state_mem *m = state_mem_new(10000, 1 << 24, seed);
    int64_t v, ttl;
    char k[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof k, "c%d", i);
        assert_int_equal(state_mem_incr(m, k, 1, i % 2 ? 1000 : 0, 0, &v, &ttl), 0);
    }
    struct state_mem_stats st;
    assert_int_equal(state_mem_sweep(m, 500, 100000), 0);
    /* a budget bounds one sweep; repeated sweeps get them all */
    size_t dropped = state_mem_sweep(m, 2000, 100);
    assert_true(dropped <= 100);
    for (int i = 0; i < 1000 && dropped < 500; i++)
        dropped += state_mem_sweep(m, 2000, 100);
    assert_int_equal(dropped, 500);
    state_mem_stats(m, &st);
    assert_int_equal(st.entries, 500);
    assert_int_equal(st.expired, 500);
    state_mem_free(m);
}

/* MINCR: several counters in one step, all or none, with an optional
 * guard key that makes it happen once (a message learned once). */
static void test_mincr_all_or_none_and_guard(void **state)
{
    (void)state;
    struct state_mem *m = state_mem_new(100, 1 << 20, seed);
    const char *keys[3] = {"t:a", "t:b", "n"};
    int64_t d[3] = {1, 1LL << 32, 5};
    int applied;
    int64_t v, ttl;
    const char *p;
    size_t len;
    assert_int_equal(state_mem_mincr(m, keys, d, 3, 1LL << 53, NULL, NULL, 0, 0, 10, &applied), 0);
    assert_int_equal(applied, 1);
    assert_int_equal(state_mem_mincr(m, keys, d, 3, 1LL << 53, NULL, NULL, 0, 0, 10, &applied), 0);
    assert_int_equal(state_mem_get(m, "t:b", 10, &p, &len, &ttl), 0);
    assert_int_equal(len, strlen("8589934592"));
    assert_memory_equal(p, "8589934592", len);
    assert_int_equal(ttl, -1); /* counters of MINCR never expire */
    /* the guard: applied once, the guard set to its value with its ttl */
    assert_int_equal(
        state_mem_mincr(m, keys, d, 3, 1LL << 53, "seen:1", "s", 1, 1000, 10, &applied), 0);
    assert_int_equal(applied, 1);
    assert_int_equal(
        state_mem_mincr(m, keys, d, 3, 1LL << 53, "seen:1", "s", 1, 1000, 20, &applied), 0);
    assert_int_equal(applied, 0);
    assert_int_equal(state_mem_incr(m, "n", 0, 0, 20, &v, &ttl), 0);
    assert_int_equal(v, 15);
    assert_int_equal(state_mem_get(m, "seen:1", 20, &p, &len, &ttl), 0);
    assert_int_equal(ttl, 990);
    /* the guard expired: applies again */
    assert_int_equal(
        state_mem_mincr(m, keys, d, 3, 1LL << 53, "seen:1", "s", 1, 1000, 1010, &applied), 0);
    assert_int_equal(applied, 1);
    assert_int_equal(state_mem_incr(m, "n", 0, 0, 1010, &v, &ttl), 0);
    assert_int_equal(v, 20);
    /* a set among the counters: nothing applied */
    assert_int_equal(state_mem_sadd(m, "s", "x", 1, 0, 1010), 1);
    const char *bad[3] = {"n", "s", "t:a"};
    assert_int_equal(state_mem_mincr(m, bad, d, 3, 1LL << 53, NULL, NULL, 0, 0, 1010, &applied),
                     -EPROTOTYPE);
    assert_int_equal(applied, 0);
    assert_int_equal(state_mem_incr(m, "n", 0, 0, 1010, &v, &ttl), 0);
    assert_int_equal(v, 20);
    /* a string that is a number counts; one that is not is refused */
    state_mem_set(m, "str", "41", 2, 0, 1010);
    const char *sk[2] = {"n", "str"};
    int64_t one[2] = {1, 1};
    assert_int_equal(state_mem_mincr(m, sk, one, 2, 1LL << 53, NULL, NULL, 0, 0, 1010, &applied),
                     0);
    assert_int_equal(state_mem_incr(m, "str", 0, 0, 1010, &v, &ttl), 0);
    assert_int_equal(v, 42);
    state_mem_set(m, "str", "x1", 2, 0, 1010);
    assert_int_equal(state_mem_mincr(m, sk, one, 2, 1LL << 53, NULL, NULL, 0, 0, 1010, &applied),
                     -EPROTOTYPE);
    assert_int_equal(state_mem_incr(m, "n", 0, 0, 1010, &v, &ttl), 0);
    assert_int_equal(v, 21);
    /* past the limit: -ERANGE, nothing applied (n stays) */
    int64_t big[2] = {1, 100};
    const char *rk[2] = {"n", "t:a"};
    assert_int_equal(state_mem_mincr(m, rk, big, 2, 50, NULL, NULL, 0, 0, 1010, &applied), -ERANGE);
    assert_int_equal(state_mem_incr(m, "n", 0, 0, 1010, &v, &ttl), 0);
    assert_int_equal(v, 21);
    /* negative deltas take back */
    int64_t back[1] = {-21};
    assert_int_equal(state_mem_mincr(m, rk, back, 1, 1LL << 53, NULL, NULL, 0, 0, 1010, &applied),
                     0);
    assert_int_equal(state_mem_incr(m, "n", 0, 0, 1010, &v, &ttl), 0);
    assert_int_equal(v, 0);
    state_mem_free(m);
}

/* Redis's integer grammar (what INCRBY takes): "0" or an optional '-' and
 * digits without a leading zero, nothing around them, within int64. The
 * memory store must refuse what Redis refuses, for INCR and MINCR alike,
 * or a site moving to Redis finds its counters broken. */
static void test_integer_grammar(void **state)
{
    (void)state;
    static const char *const bad[] = {
        " 5",  "5 ", "+5", "012", "-0", "0x10", "1e3", "5.0", "-", "", "9223372036854775808",
        "--1", "1-"};
    static const char *const good[] = {
        "0", "5", "-5", "9007199254740992", "-9223372036854775807", "9223372036854775807"};
    struct state_mem *m = state_mem_new(100, 1 << 20, seed);
    int64_t v, ttl;
    int applied;
    const char *k[1] = {"c"};
    int64_t zero[1] = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        state_mem_set(m, "c", bad[i], strlen(bad[i]), 0, 10);
        assert_int_equal(state_mem_incr(m, "c", 1, 0, 10, &v, &ttl), -EPROTOTYPE);
        assert_int_equal(state_mem_mincr(m, k, zero, 1, INT64_MAX, NULL, NULL, 0, 0, 10, &applied),
                         -EPROTOTYPE);
        assert_int_equal(applied, 0);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        state_mem_set(m, "c", good[i], strlen(good[i]), 0, 10);
        assert_int_equal(state_mem_mincr(m, k, zero, 1, INT64_MAX, NULL, NULL, 0, 0, 10, &applied),
                         0);
        assert_int_equal(applied, 1);
        state_mem_set(m, "c", good[i], strlen(good[i]), 0, 10);
        assert_int_equal(state_mem_incr(m, "c", 0, 0, 10, &v, &ttl), 0);
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)v);
        assert_string_equal(buf, good[i]);
    }
    state_mem_free(m);
}

/* A MINCR is all or none with the bounds too: eviction never takes a
 * counter of the same call out while the others stay incremented. More
 * keys than the table holds: refused (-ENOSPC), nothing changed; keys that
 * fit: all applied and all there afterwards (older keys make room). */
static void test_mincr_bounds(void **state)
{
    (void)state;
    struct state_mem *m = state_mem_new(100, 1 << 20, seed);
    char names[200][16];
    const char *keys[200];
    int64_t d[200];
    for (int i = 0; i < 200; i++) {
        snprintf(names[i], sizeof names[i], "t:%d", i);
        keys[i] = names[i];
        d[i] = 1;
    }
    int applied;
    int64_t v, ttl;
    assert_int_equal(state_mem_incr(m, "old", 1, 0, 10, &v, &ttl), 0);
    assert_int_equal(state_mem_mincr(m, keys, d, 200, 1LL << 53, "g", "s", 1, 0, 10, &applied),
                     -ENOSPC);
    assert_int_equal(applied, 0);
    struct state_mem_stats st;
    state_mem_stats(m, &st);
    assert_int_equal(st.entries, 1); /* only "old" */
    assert_int_equal(st.evicted, 0);
    /* 99 counters and the guard fill the table: "old" makes room */
    assert_int_equal(state_mem_mincr(m, keys, d, 99, 1LL << 53, "g", "s", 1, 0, 10, &applied), 0);
    assert_int_equal(applied, 1);
    state_mem_stats(m, &st);
    assert_int_equal(st.entries, 100);
    const char *p;
    size_t len;
    for (int i = 0; i < 99; i++)
        assert_int_equal(state_mem_get(m, keys[i], 10, &p, &len, &ttl), 0);
    assert_int_equal(state_mem_get(m, "g", 10, &p, &len, &ttl), 0);
    assert_int_equal(state_mem_get(m, "old", 10, &p, &len, &ttl), -ENOENT);
    state_mem_free(m);
    /* the byte bound likewise */
    m = state_mem_new(1000, 2000, seed);
    assert_int_equal(state_mem_mincr(m, keys, d, 200, 1LL << 53, NULL, NULL, 0, 0, 10, &applied),
                     -ENOSPC);
    state_mem_stats(m, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.evicted, 0);
    state_mem_free(m);
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

/* The daemon's default store (a million keys) is swept every second: an
 * empty or nearly empty one must not cost a walk of its whole bucket array
 * each time (a million buckets read per second; where reading untouched
 * memory faults pages in, sluice grew by the array's 8 MB, which is how
 * test_core_hardening's memory check failed), and an expired key is still
 * found in due course. */
static void test_sweep_bounded_by_buckets(void **state)
{
    (void)state;
    struct state_mem *m = state_mem_new(1000000, 64u << 20, seed);
    long before = rss_kb();
    for (int i = 0; i < 5; i++)
        state_mem_sweep(m, 1000, 256);
    long grew = rss_kb() - before;
    assert_true(grew < 1024);
    /* a key with a TTL is dropped once the sweep has gone round */
    state_mem_set(m, "k", "v", 1, 100, 0);
    size_t dropped = 0;
    for (int i = 0; i < 10000 && dropped == 0; i++)
        dropped += state_mem_sweep(m, 1000, 256);
    assert_int_equal(dropped, 1);
    /* the array grows with the keys: every one is still found, and the
     * expired ones are all swept */
    char k[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "key%d", i);
        state_mem_set(m, k, "v", 1, i % 2 ? 0 : 100, 0);
    }
    const char *v;
    size_t len;
    int64_t ttl;
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "key%d", i);
        assert_int_equal(state_mem_get(m, k, 50, &v, &len, &ttl), 0);
    }
    dropped = 0;
    for (int i = 0; i < 100; i++)
        dropped += state_mem_sweep(m, 1000, 256);
    assert_int_equal(dropped, 2500);
    struct state_mem_stats st;
    state_mem_stats(m, &st);
    assert_int_equal(st.entries, 2500);
    state_mem_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vectors),
        cmocka_unit_test(test_sweep_bounded_by_buckets),
        cmocka_unit_test(test_incr_fixed_window),
        cmocka_unit_test(test_set_get_del_and_types),
        cmocka_unit_test(test_set_full),
        cmocka_unit_test(test_bounds_lru),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_mincr_all_or_none_and_guard),
        cmocka_unit_test(test_integer_grammar),
        cmocka_unit_test(test_mincr_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
