/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats_gauge: gauges a plugin sets, series by series: small tables of
 * current values such as a rate limiter's top offenders
 * (sluice_plugin_ratelimit_top{rule="...",subject="..."} 57).
 *
 * A counter only grows and its label values are kept for ever; a gauge's
 * series come and go. So a gauge holds at most max_series series, the
 * plugin removes what no longer belongs, and each series may carry an
 * expiry (wall clock): a series past it is neither rendered nor counted
 * against max_series, which keeps a top list honest when the plugin sees
 * no more traffic to tell it that a window has ended.
 *
 * Names follow the counters' rules (stats.h): sanitised to [a-z0-9_],
 * "sluice_" prefixed; a name that is a core family, or ends in a suffix
 * Prometheus gives meaning to (_total, _bucket, _sum, _count, _info,
 * _created), is refused. Up to two labels; label values are copied as
 * printable ASCII, cut at STATS_LABEL_VALUE_MAX - 1 bytes (the renderers
 * escape them). The same name again (a reload) returns the same gauge with
 * its series, its bound set to the new max_series (the largest series
 * kept); the new instance clears it if it starts afresh.
 *
 * Threads: set/remove/clear from any thread (a mutex per gauge); the
 * renderers take a copy under that mutex.
 */
#ifndef SLUICE_STATS_GAUGE_H
#define SLUICE_STATS_GAUGE_H

#include <stddef.h>
#include <stdint.h>

#include "stats.h"

#define STATS_GAUGES_MAX 64
#define STATS_GAUGE_SERIES_MAX 1000

struct stats_gauge;

struct stats_gauge *stats_gauge_new(const char *name, const char *help, const char *label1,
                                    const char *label2, unsigned max_series);
/* Set series (v1, v2); expires_ms: Unix time in ms after which it is
 * gone, 0 for never. 0, -ENOSPC (max_series live series and this is a new
 * one), -EINVAL (g NULL, value NaN or infinite). Values of labels the
 * gauge lacks are ignored. Label values are cut and made printable, so
 * distinct values can meet in one series: a caller with long or binary
 * values makes them distinct itself (ratelimit adds a hash). */
int stats_gauge_set(struct stats_gauge *g, const char *v1, const char *v2, double value,
                    uint64_t expires_ms);
/* 0, or -ENOENT. */
int stats_gauge_remove(struct stats_gauge *g, const char *v1, const char *v2);
void stats_gauge_clear(struct stats_gauge *g);

/* ---- for the renderers ---- */

struct stats_gauge_row {
    char v1[STATS_LABEL_VALUE_MAX], v2[STATS_LABEL_VALUE_MAX];
    double value;
};

/* A copy of gauge i's live series at now_ms (rows sorted by value,
 * largest first); free with stats_gauge_view_free. */
struct stats_gauge_view {
    const char *name, *help, *label1, *label2; /* label "" when the gauge has none */
    size_t n;
    struct stats_gauge_row *rows; /* owned */
};

size_t stats_gauge_count(void);
void stats_gauge_view(size_t i, uint64_t now_ms, struct stats_gauge_view *out);
void stats_gauge_view_free(struct stats_gauge_view *v);

/* Tests only (stats_reset calls it): drop every gauge. */
void stats_gauge_reset(void);

#endif
