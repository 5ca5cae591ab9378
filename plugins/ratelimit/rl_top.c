/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rl_top: a rule's top offenders (see rl_top.h). Linear scans: the table
 * holds at most RL_TOP_MAX entries and is touched once per counted event.
 */
#include <stdio.h>
#include <string.h>

#include "rl_top.h"

/* Drop entries whose time has passed (order is of no meaning). */
static void rl_top__expire(struct rl_top *t, uint64_t now_ms)
{
    for (size_t i = 0; i < t->n;) {
        if (t->e[i].until_ms <= now_ms)
            t->e[i] = t->e[--t->n];
        else
            i++;
    }
}

static void rl_top__fill(struct rl_top_entry *e, const char *subject, uint64_t count,
                         uint64_t until_ms)
{
    snprintf(e->subject, sizeof e->subject, "%s", subject);
    e->count = count;
    e->until_ms = until_ms;
}

enum rl_top_result rl_top_note(struct rl_top *t, const char *subject, uint64_t count,
                               uint64_t now_ms, uint64_t until_ms, char *evicted, size_t evlen)
{
    size_t cap = t->cap < RL_TOP_MAX ? t->cap : RL_TOP_MAX;
    if (cap == 0 || count == 0)
        return RL_TOP_OUT;
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->e[i].subject, subject) == 0) {
            t->e[i].count = count;
            t->e[i].until_ms = until_ms;
            return RL_TOP_IN;
        }
    }
    if (t->n == cap)
        rl_top__expire(t, now_ms);
    if (t->n < cap) {
        rl_top__fill(&t->e[t->n++], subject, count, until_ms);
        return RL_TOP_IN;
    }
    size_t min = 0;
    for (size_t i = 1; i < t->n; i++)
        if (t->e[i].count < t->e[min].count)
            min = i;
    if (count <= t->e[min].count)
        return RL_TOP_OUT;
    snprintf(evicted, evlen, "%s", t->e[min].subject);
    rl_top__fill(&t->e[min], subject, count, until_ms);
    return RL_TOP_REPLACE;
}
