/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats_json: the registry (stats.c) as one JSON document, the body of
 * GET /stats that the dashboard reads: the same figures as /metrics, grouped
 * by subject, plus readiness with its reason and the recent decision
 * records (newest first, pasted in as validated or host-built objects).
 *
 * Keys and label words are an interface (the dashboard, tests). Runs on the
 * HTTP thread (or a test), concurrently with the event calls; reads only,
 * holding the decision ring's lock while it copies the records. Owns nothing.
 */
#ifndef SLUICE_STATS_JSON_H
#define SLUICE_STATS_JSON_H

#include "buf.h"

/* Append the document and a newline to out; `now` (Unix seconds) gives the
 * uptime. Never fails (out of memory is fatal, see buf.h). */
void stats_json_render(buf_t *out, double now);

#endif
