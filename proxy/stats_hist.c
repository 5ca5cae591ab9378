/* SPDX-License-Identifier: GPL-2.0-or-later */
/* stats_hist: fixed-point histograms on relaxed atomics; see stats_hist.h. */
#include "stats_hist.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

uint64_t stats_hist_secs_to_ns(double s)
{
    if (!(s > 0)) /* also NaN */
        return 0;
    if (s > 1e9) /* 31 years: treat as garbage but keep the sum sane */
        s = 1e9;
    return (uint64_t)(s * 1e9 + 0.5);
}

void stats_hist_observe(struct stats_hist *h, const struct stats_hist_spec *spec, uint64_t v)
{
    size_t i = 0;
    while (i < spec->nbounds && v > spec->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

void stats_hist_clear(struct stats_hist *h)
{
    for (size_t i = 0; i <= STATS_HIST_MAX_BOUNDS; i++)
        atomic_store_explicit(&h->bucket[i], 0, memory_order_relaxed);
    atomic_store_explicit(&h->sum, 0, memory_order_relaxed);
}

void stats_hist_snapshot(const struct stats_hist *h, const struct stats_hist_spec *spec,
                         struct stats_hist_snap *s)
{
    uint64_t acc = 0;
    for (size_t i = 0; i <= spec->nbounds; i++) {
        acc += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        s->cum[i] = acc;
    }
    s->count = acc;
    s->sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
}

void stats_hist_fmt(char *dst, size_t n, uint64_t v, unsigned scale)
{
    if (scale == 0) {
        snprintf(dst, n, "%" PRIu64, v);
        return;
    }
    uint64_t div = 1;
    for (unsigned i = 0; i < scale; i++)
        div *= 10;
    char frac[24];
    snprintf(frac, sizeof frac, "%0*" PRIu64, (int)scale, v % div);
    size_t fl = strlen(frac);
    while (fl > 0 && frac[fl - 1] == '0')
        frac[--fl] = '\0';
    if (fl == 0)
        snprintf(dst, n, "%" PRIu64, v / div);
    else
        snprintf(dst, n, "%" PRIu64 ".%s", v / div, frac);
}
