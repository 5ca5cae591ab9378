/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats_hist: lock-free histograms with fixed-point sums, for stats.c and
 * its two renderers.
 *
 * A histogram is an array of relaxed C11 atomics (one non-cumulative count
 * per bucket, the last one +Inf, and the sum). Values are fixed-point
 * integers (nanoseconds, bytes; `scale` decimal digits after the point) so
 * that the sum is a plain atomic add and prints exactly. The layout of the
 * buckets lives in a const spec shared by every histogram of one kind.
 *
 * stats_hist_observe() may run on any thread concurrently with
 * stats_hist_snapshot() on the reader's (HTTP) thread; the snapshot is
 * "consistent enough": its total is the +Inf bucket, so _count always
 * equals the last cumulative bucket. stats_hist_clear() is for tests only.
 */
#ifndef SLUICE_STATS_HIST_H
#define SLUICE_STATS_HIST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define STATS_HIST_MAX_BOUNDS 16

struct stats_hist_spec {
    size_t nbounds;
    uint64_t bounds[STATS_HIST_MAX_BOUNDS]; /* fixed-point upper bounds, ascending */
    unsigned scale;                         /* decimal digits after the point (9: ns) */
};

struct stats_hist {
    _Atomic uint64_t bucket[STATS_HIST_MAX_BOUNDS + 1]; /* non-cumulative; last: +Inf */
    _Atomic uint64_t sum;                               /* fixed-point, see spec->scale */
};

/* A copy for rendering: cumulative counts; count == the +Inf bucket. */
struct stats_hist_snap {
    uint64_t cum[STATS_HIST_MAX_BOUNDS + 1];
    uint64_t count;
    uint64_t sum;
};

/* Seconds to the nanoseconds of a scale-9 histogram; <= 0 and NaN give 0. */
uint64_t stats_hist_secs_to_ns(double seconds);
void stats_hist_observe(struct stats_hist *h, const struct stats_hist_spec *spec, uint64_t v);
void stats_hist_clear(struct stats_hist *h);
void stats_hist_snapshot(const struct stats_hist *h, const struct stats_hist_spec *spec,
                         struct stats_hist_snap *out);
/* Exact decimal text of a fixed-point value: 1500000000 at scale 9 -> "1.5". */
void stats_hist_fmt(char *dst, size_t n, uint64_t v, unsigned scale);

#endif
