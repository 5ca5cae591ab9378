/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats_prom: the registry (stats.c) as Prometheus text exposition format
 * 0.0.4, the body of GET /metrics.
 *
 * Metric names, HELP texts, label names and label values are an interface
 * (dashboards, alerts, tests/unit/test_stats.c pins them byte for byte).
 * Families come in a fixed order: the core figures, then the per-plugin
 * families (only when a plugin record exists), then plugin-defined counter
 * families (only those with at least one series).
 *
 * Runs on the HTTP thread (or a test), concurrently with the event calls;
 * reads only, no lock but the one stats_priv.h names. Owns nothing.
 */
#ifndef SLUICE_STATS_PROM_H
#define SLUICE_STATS_PROM_H

#include "buf.h"

/* Append the whole exposition to out; `now` (Unix seconds) gives the
 * uptime. Never fails (out of memory is fatal, see buf.h). */
void stats_prom_render(buf_t *out, double now);

#endif
