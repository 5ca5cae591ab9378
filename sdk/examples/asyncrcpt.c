/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * asyncrcpt: an example sluice plugin that answers later, from a thread of
 * its own. It stands for any plugin that asks something slow (a directory
 * server, a reputation service) through a blocking client library: the
 * RCPT hook hands the question to a worker thread and returns SLUICE_ASYNC
 * at once, so the event loop goes on serving other sessions; the worker
 * answers through api->complete(), which may be called from any thread.
 *
 * Keys of its [plugin NAME] section (a typed key table, read by the host
 * with sluice.conf's own grammar):
 *   reject_domain = DOMAIN   recipients in this domain are refused (required)
 *   delay         = DURATION how long each "lookup" takes (default 0ms);
 *                            longer than the instance's `timeout` shows the
 *                            failure policy at work
 *   reject_text   = TEXT     text of the 550 reply (default "No such user here")
 *
 * Counter: sluice_plugin_<instance>_lookups_total, by result.
 *
 * Design notes:
 *  - One worker thread per instance and a FIFO of jobs under a mutex; the
 *    thread never touches libuv. A job owns a copy of the recipient; the
 *    ctx belongs to the worker from SLUICE_ASYNC until complete().
 *  - The worker may call ctx functions (set_reply here) before complete():
 *    until then the session waits for this answer and nobody else uses
 *    the ctx.
 *  - If the answer comes after the instance's timeout, the host has already
 *    applied the failure policy; complete() must still be called once so
 *    the host can free the ctx, and the late verdict is ignored.
 *  - shutdown() stops the worker: jobs still queued are answered with
 *    SLUICE_ERROR (the failure policy applies) before the thread is joined,
 *    and a lookup in progress is cut short, so shutdown never waits for a
 *    whole delay.
 */
/* strdup, pthread_condattr_setclock with a plain -std=c11. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sluice/plugin.h>

SLUICE_API_DECLARE;

struct ar_conf {
    const char *reject_domain;
    unsigned delay_ms;
    const char *reject_text;
};

static const struct sluice_config_key ar_keys[] = {
    {.name = "reject_domain",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_REQUIRED,
     .offset = offsetof(struct ar_conf, reject_domain)},
    {.name = "delay",
     .type = SLUICE_CONFIG_DURATION,
     .def = "0ms",
     .max = 60000,
     .offset = offsetof(struct ar_conf, delay_ms)},
    {.name = "reject_text",
     .type = SLUICE_CONFIG_STRING,
     .def = "No such user here",
     .flags = SLUICE_CONFIG_PRINTABLE,
     .max = 200,
     .offset = offsetof(struct ar_conf, reject_text)},
    {.name = NULL},
};

struct ar_job {
    struct ar_job *next;
    sluice_ctx *ctx;
    char *rcpt;          /* owned copy: host strings die with the hook */
    struct timespec due; /* CLOCK_MONOTONIC */
};

struct ar {
    sluice_instance *inst;
    struct ar_conf conf;
    sluice_counter *c_lookups;
    pthread_t worker;
    bool started;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* a job was queued, or stop */
    struct ar_job *head, **tail;
    bool stop;
};

static void ar_timespec_add_ms(struct timespec *t, unsigned ms)
{
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

/* The "lookup": the answer for one recipient (worker thread). */
static int ar_decide(struct ar *a, struct ar_job *j)
{
    const char *at = strrchr(j->rcpt, '@');
    bool refused = at && strcasecmp(at + 1, a->conf.reject_domain) == 0;
    if (a->c_lookups)
        sluice_api->counter_add(a->c_lookups, refused ? "refused" : "accepted", 1);
    sluice_api->log(a->inst, SLUICE_LOG_INFO, "answered <%s>: %s", j->rcpt,
                    refused ? "refused" : "accepted");
    if (!refused)
        return SLUICE_CONTINUE;
    /* Still ours until complete(): ctx functions may be used here. */
    sluice_api->set_reply(j->ctx, 550, "5.1.1", a->conf.reject_text);
    return SLUICE_REJECT;
}

static void ar_finish(struct ar_job *j, int verdict)
{
    sluice_api->complete(j->ctx, verdict); /* from this thread: allowed */
    free(j->rcpt);
    free(j);
}

static void *ar_worker(void *arg)
{
    struct ar *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->head && !a->stop)
            pthread_cond_wait(&a->cv, &a->mu);
        if (a->stop)
            break;
        struct ar_job *j = a->head;
        /* The lookup takes until j->due; stop cuts it short. */
        int rc = 0;
        while (!a->stop && rc == 0)
            rc = pthread_cond_timedwait(&a->cv, &a->mu, &j->due);
        if (a->stop)
            break;
        a->head = j->next;
        if (!a->head)
            a->tail = &a->head;
        pthread_mutex_unlock(&a->mu);
        ar_finish(j, ar_decide(a, j));
        pthread_mutex_lock(&a->mu);
    }
    /* Stopping: whoever still waits gets the failure policy. */
    struct ar_job *j = a->head;
    a->head = NULL;
    a->tail = &a->head;
    pthread_mutex_unlock(&a->mu);
    while (j) {
        struct ar_job *next = j->next;
        ar_finish(j, SLUICE_ERROR);
        j = next;
    }
    return NULL;
}

static void ar_shutdown(void *data)
{
    struct ar *a = data;
    if (!a)
        return;
    if (a->started) {
        pthread_mutex_lock(&a->mu);
        a->stop = true;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->worker, NULL);
    }
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static int ar_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    /* complete() from a thread and typed keys came with the same host. */
    if (!SLUICE_API_HAS(api, config_load)) {
        api->config_error(inst, NULL, "this plugin needs a newer sluice");
        return -1;
    }
    struct ar *a = calloc(1, sizeof *a);
    if (!a)
        return -1;
    a->inst = inst;
    a->tail = &a->head;
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (SLUICE_CONFIG_LOAD(api, inst, ar_keys, &a->conf, SLUICE_CONFIG_STRICT) != 0) {
        ar_shutdown(a);
        return -1;
    }
    if (!api->checking(inst)) { /* --check starts nothing */
        if (pthread_create(&a->worker, NULL, ar_worker, a) != 0) {
            api->config_error(inst, NULL, "cannot start the worker thread");
            ar_shutdown(a);
            return -1;
        }
        a->started = true;
        a->c_lookups =
            api->counter_new(inst, "lookups", "Recipient lookups, by result", "result", 2);
    }
    *data = a;
    return 0;
}

static int ar_on_rcpt(sluice_ctx *ctx)
{
    struct ar *a = sluice_api->instance_data(ctx);
    const char *rcpt = sluice_api->current_rcpt(ctx);
    struct ar_job *j = calloc(1, sizeof *j);
    if (!j || !rcpt || !(j->rcpt = strdup(rcpt))) {
        free(j);
        return SLUICE_ERROR;
    }
    j->ctx = ctx;
    clock_gettime(CLOCK_MONOTONIC, &j->due);
    ar_timespec_add_ms(&j->due, a->conf.delay_ms);
    pthread_mutex_lock(&a->mu);
    *a->tail = j;
    a->tail = &j->next;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    /* From here on the ctx is the worker's; the answer comes later. */
    return SLUICE_ASYNC;
}

SLUICE_PLUGIN_DEFINE(.name = "asyncrcpt", .version = "1.0",
                     .description = "recipient check answered from a worker thread",
                     .init = ar_init, .shutdown = ar_shutdown, .on_rcpt = ar_on_rcpt);
