/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats_gauge: plugin-set gauges (see stats_gauge.h).
 *
 * A gauge is a small array of series searched linearly: max_series is in
 * the tens for what it is meant for (top lists), and a set is one pass
 * under the gauge's own mutex, never the registry's.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats_gauge.h"
#include "stats_priv.h"
#include "xalloc.h"

#define GAUGE_NAME_MAX 128 /* as a counter's */

struct stats__gseries {
    char v1[STATS_LABEL_VALUE_MAX], v2[STATS_LABEL_VALUE_MAX];
    double value;
    uint64_t expires_ms; /* 0: never */
};

struct stats_gauge {
    char name[GAUGE_NAME_MAX + 16];
    char label1[STATS_NAME_MAX], label2[STATS_NAME_MAX];
    char *help; /* owned */
    unsigned max;
    pthread_mutex_t lock; /* guards n and v */
    size_t n;
    struct stats__gseries *v; /* owned, capacity max */
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* serialises registration */
static struct stats_gauge *g_gauges[STATS_GAUGES_MAX];
static _Atomic size_t g_ngauges;

/* Largest value first. */
static int series_cmp(const void *a, const void *b)
{
    const struct stats__gseries *x = a, *y = b;
    return x->value > y->value ? -1 : x->value < y->value ? 1 : 0;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t ls = strlen(s), lf = strlen(suf);
    return ls >= lf && strcmp(s + ls - lf, suf) == 0;
}

/* A usable label name into dst ("" for none); false when refused. */
static bool label_name(char *dst, size_t n, const char *l)
{
    dst[0] = '\0';
    if (l == NULL)
        return true;
    stats__ident(dst, n, l);
    return dst[0] != '\0' && !(dst[0] >= '0' && dst[0] <= '9') && strncmp(dst, "__", 2) != 0 &&
           strcmp(dst, "le") != 0 && strcmp(dst, "quantile") != 0;
}

/* New bound; series past it (the smallest, after a sort) are dropped. */
static void gauge_resize(struct stats_gauge *g, unsigned max_series)
{
    pthread_mutex_lock(&g->lock);
    if (max_series != g->max) {
        if (g->n > max_series) {
            qsort(g->v, g->n, sizeof *g->v, series_cmp);
            g->n = max_series;
        }
        struct stats__gseries *v = xcalloc(max_series, sizeof *v);
        memcpy(v, g->v, g->n * sizeof *v);
        free(g->v);
        g->v = v;
        g->max = max_series;
    }
    pthread_mutex_unlock(&g->lock);
}

struct stats_gauge *stats_gauge_new(const char *name, const char *help, const char *label1,
                                    const char *label2, unsigned max_series)
{
    static const char *const suffixes[] = {"_total", "_bucket", "_sum",
                                           "_count", "_info",   "_created"};
    if (name == NULL || name[0] == '\0')
        return NULL;
    char base[GAUGE_NAME_MAX], full[GAUGE_NAME_MAX + 16], l1[STATS_NAME_MAX], l2[STATS_NAME_MAX];
    stats__ident(base, sizeof base, name);
    snprintf(full, sizeof full, "%s%s", strncmp(base, "sluice_", 7) == 0 ? "" : "sluice_", base);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
        if (has_suffix(full, suffixes[i]))
            return NULL;
    if (stats__name_reserved(full) || !label_name(l1, sizeof l1, label1) ||
        !label_name(l2, sizeof l2, label2) || (l1[0] == '\0' && l2[0] != '\0') ||
        (l1[0] != '\0' && strcmp(l1, l2) == 0))
        return NULL;
    if (max_series < 1)
        max_series = 1;
    if (max_series > STATS_GAUGE_SERIES_MAX)
        max_series = STATS_GAUGE_SERIES_MAX;

    struct stats_gauge *g = NULL;
    pthread_mutex_lock(&g_lock);
    size_t n = atomic_load_explicit(&g_ngauges, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(g_gauges[i]->name, full) != 0)
            continue;
        /* A reload: the same gauge, if it has the same labels; its bound
         * follows the new instance (a rule more or less changes it). */
        if (strcmp(g_gauges[i]->label1, l1) == 0 && strcmp(g_gauges[i]->label2, l2) == 0) {
            g = g_gauges[i];
            gauge_resize(g, max_series);
        }
        goto out;
    }
    if (n == STATS_GAUGES_MAX)
        goto out;
    g = xcalloc(1, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", full);
    snprintf(g->label1, sizeof g->label1, "%s", l1);
    snprintf(g->label2, sizeof g->label2, "%s", l2);
    g->help = xstrdup(help != NULL && help[0] != '\0' ? help : "Plugin-defined gauge.");
    g->max = max_series;
    g->v = xcalloc(max_series, sizeof *g->v);
    pthread_mutex_init(&g->lock, NULL);
    g_gauges[n] = g;
    atomic_store_explicit(&g_ngauges, n + 1, memory_order_release);
out:
    pthread_mutex_unlock(&g_lock);
    return g;
}

/* The label values as stored: printable, cut; "" for a label the gauge
 * does not have. */
static void norm(const struct stats_gauge *g, const char *v1, const char *v2, char *o1, char *o2)
{
    o1[0] = o2[0] = '\0';
    if (g->label1[0])
        stats__printable(o1, STATS_LABEL_VALUE_MAX, v1 != NULL ? v1 : "");
    if (g->label2[0])
        stats__printable(o2, STATS_LABEL_VALUE_MAX, v2 != NULL ? v2 : "");
}

static uint64_t now_ms(void)
{
    return (uint64_t)(stats_now() * 1000.0);
}

/* Drop expired series (order does not matter: the views sort). Locked. */
static void sweep(struct stats_gauge *g, uint64_t now)
{
    for (size_t i = 0; i < g->n;) {
        if (g->v[i].expires_ms != 0 && g->v[i].expires_ms <= now)
            g->v[i] = g->v[--g->n];
        else
            i++;
    }
}

static struct stats__gseries *find(struct stats_gauge *g, const char *v1, const char *v2)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->v[i].v1, v1) == 0 && strcmp(g->v[i].v2, v2) == 0)
            return &g->v[i];
    return NULL;
}

int stats_gauge_set(struct stats_gauge *g, const char *v1, const char *v2, double value,
                    uint64_t expires_ms)
{
    /* NaN and infinities have no JSON spelling: /stats must stay valid. */
    if (g == NULL || !isfinite(value))
        return -EINVAL;
    char a[STATS_LABEL_VALUE_MAX], b[STATS_LABEL_VALUE_MAX];
    norm(g, v1, v2, a, b);
    int rc = 0;
    pthread_mutex_lock(&g->lock);
    struct stats__gseries *s = find(g, a, b);
    if (s == NULL) {
        if (g->n == g->max)
            sweep(g, now_ms());
        if (g->n == g->max) {
            rc = -ENOSPC;
            goto out;
        }
        s = &g->v[g->n++];
        memcpy(s->v1, a, sizeof a);
        memcpy(s->v2, b, sizeof b);
    }
    s->value = value;
    s->expires_ms = expires_ms;
out:
    pthread_mutex_unlock(&g->lock);
    return rc;
}

int stats_gauge_remove(struct stats_gauge *g, const char *v1, const char *v2)
{
    if (g == NULL)
        return -EINVAL;
    char a[STATS_LABEL_VALUE_MAX], b[STATS_LABEL_VALUE_MAX];
    norm(g, v1, v2, a, b);
    pthread_mutex_lock(&g->lock);
    struct stats__gseries *s = find(g, a, b);
    if (s != NULL)
        *s = g->v[--g->n];
    pthread_mutex_unlock(&g->lock);
    return s != NULL ? 0 : -ENOENT;
}

void stats_gauge_clear(struct stats_gauge *g)
{
    if (g == NULL)
        return;
    pthread_mutex_lock(&g->lock);
    g->n = 0;
    pthread_mutex_unlock(&g->lock);
}

size_t stats_gauge_count(void)
{
    return atomic_load_explicit(&g_ngauges, memory_order_acquire);
}

static int row_cmp(const void *a, const void *b)
{
    const struct stats_gauge_row *x = a, *y = b;
    if (x->value != y->value)
        return x->value > y->value ? -1 : 1;
    int c = strcmp(x->v1, y->v1);
    return c != 0 ? c : strcmp(x->v2, y->v2);
}

void stats_gauge_view(size_t i, uint64_t now, struct stats_gauge_view *out)
{
    struct stats_gauge *g = g_gauges[i];
    *out = (struct stats_gauge_view){
        .name = g->name, .help = g->help, .label1 = g->label1, .label2 = g->label2};
    pthread_mutex_lock(&g->lock);
    if (g->n > 0)
        out->rows = xcalloc(g->n, sizeof *out->rows);
    for (size_t k = 0; k < g->n; k++) {
        const struct stats__gseries *s = &g->v[k];
        if (s->expires_ms != 0 && s->expires_ms <= now)
            continue;
        struct stats_gauge_row *r = &out->rows[out->n++];
        memcpy(r->v1, s->v1, sizeof r->v1);
        memcpy(r->v2, s->v2, sizeof r->v2);
        r->value = s->value;
    }
    pthread_mutex_unlock(&g->lock);
    if (out->n > 1)
        qsort(out->rows, out->n, sizeof *out->rows, row_cmp);
}

void stats_gauge_view_free(struct stats_gauge_view *v)
{
    free(v->rows);
    v->rows = NULL;
    v->n = 0;
}

void stats_gauge_reset(void)
{
    size_t n = atomic_exchange(&g_ngauges, 0);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_destroy(&g_gauges[i]->lock);
        free(g_gauges[i]->v);
        free(g_gauges[i]->help);
        free(g_gauges[i]);
        g_gauges[i] = NULL;
    }
}
