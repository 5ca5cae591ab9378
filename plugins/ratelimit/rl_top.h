/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rl_top: one rule's top offenders, the subjects with the highest count
 * this instance has seen, for /metrics and /stats.
 *
 * A fixed table of at most RL_TOP_MAX subjects per rule. Every counted
 * event brings its subject's sliding-window count (as the shared store
 * answered it, so with Redis it is the count across every instance); a
 * subject already listed is updated, a new one enters when the table has
 * room or its count beats the smallest listed one, which leaves. Entries
 * are valid until a time the caller gives (the count has decayed by
 * then): expired ones make room first. Heavy hitters enter at their first
 * event past the smallest listed count, which is what an admin looks for;
 * a subject that stopped sending falls out as its entry expires.
 *
 * Pure: no I/O, no globals; the caller serialises calls on one table.
 */
#ifndef RL_TOP_H
#define RL_TOP_H

#include <stddef.h>
#include <stdint.h>

#include "rl_rules.h"

#define RL_TOP_MAX 50

struct rl_top_entry {
    char subject[RL_SUBJECT_MAX];
    uint64_t count;
    uint64_t until_ms; /* the entry is gone at this time */
};

struct rl_top {
    size_t cap; /* 0..RL_TOP_MAX: how many are listed at most */
    size_t n;
    struct rl_top_entry e[RL_TOP_MAX];
};

enum rl_top_result {
    RL_TOP_OUT,     /* not listed: nothing to publish */
    RL_TOP_IN,      /* listed (new or updated): publish it */
    RL_TOP_REPLACE, /* listed, and `evicted` left the table: publish, and withdraw that one */
};

/* Note subject's count at now_ms, valid until until_ms. evicted (evlen
 * bytes, at least RL_SUBJECT_MAX) receives the subject that left. */
enum rl_top_result rl_top_note(struct rl_top *t, const char *subject, uint64_t count,
                               uint64_t now_ms, uint64_t until_ms, char *evicted, size_t evlen);

#endif
