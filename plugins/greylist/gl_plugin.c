/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * greylist: the first delivery attempt of an unknown (client network,
 * sender, recipient) triplet is answered 451 4.7.1; a retry after `delay`
 * passes and the triplet is let through for `lifetime`. A client network
 * whose triplets passed `auto_allow` times is let through without
 * greylisting for `lifetime`. Real mail servers retry; most spam software
 * does not.
 *
 * Everything is in the daemon's shared state (api->state_call), so with
 * [state] backend = redis a retry that lands on another sluice instance
 * finds the first attempt. Per RCPT: GET of the network's pass count and
 * GET of the triplet, started together; then at most a SET (and an INCR
 * when a triplet passes), whose answers are not waited for.
 *
 * A new triplet is one more key in a store that other plugins share (the
 * in-memory one is an LRU: a flood of random senders would push out rate
 * limit counters and passed triplets). So each network may start at most
 * max_pending triplets per retry_window: an INCR of its "c:NET" counter,
 * waited for, comes before the "w:" key is written; past the cap the RCPT
 * is refused (451 4.7.1) and nothing is written.
 *
 * Nothing blocks: the RCPT hook is non-blocking and answers from the state
 * callbacks on the loop thread.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice/plugin.h>

#include "cidr.h"
#include "gl_key.h"

SLUICE_API_DECLARE;

static const char *const gl__policies[] = {"open", "closed", NULL};

struct gl_conf {
    unsigned delay_ms, retry_window_ms, lifetime_ms; /* DURATION keys are unsigned ms */
    unsigned auto_allow;
    unsigned max_pending; /* new triplets per network per retry_window */
    unsigned ipv4_prefix, ipv6_prefix;
    const char *exempt_networks;
    bool exempt_authenticated;
    int on_state_error; /* 0 open, 1 closed */
};

static const struct sluice_config_key gl__keys[] = {
    {.name = "delay",
     .type = SLUICE_CONFIG_DURATION,
     .def = "5m",
     .min = 1000,
     .max = 24ULL * 3600 * 1000,
     .offset = offsetof(struct gl_conf, delay_ms)},
    {.name = "retry_window",
     .type = SLUICE_CONFIG_DURATION,
     .def = "24h",
     .min = 60ULL * 1000,
     .max = 7ULL * 86400 * 1000,
     .offset = offsetof(struct gl_conf, retry_window_ms)},
    {.name = "lifetime",
     .type = SLUICE_CONFIG_DURATION,
     .def = "840h", /* 35 days */
     .min = 3600ULL * 1000,
     .max = 49ULL * 86400 * 1000, /* what an unsigned number of ms holds */
     .offset = offsetof(struct gl_conf, lifetime_ms)},
    {.name = "auto_allow",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "5",
     .max = 1000000,
     .offset = offsetof(struct gl_conf, auto_allow)},
    {.name = "max_pending",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "100",
     .min = 1,
     .max = 100000,
     .offset = offsetof(struct gl_conf, max_pending)},
    {.name = "ipv4_prefix",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "24",
     .min = 8,
     .max = 32,
     .offset = offsetof(struct gl_conf, ipv4_prefix)},
    {.name = "ipv6_prefix",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "64",
     .min = 16,
     .max = 128,
     .offset = offsetof(struct gl_conf, ipv6_prefix)},
    {.name = "exempt_networks",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_KEEP_EMPTY,
     .def = "127.0.0.0/8 ::1/128",
     .offset = offsetof(struct gl_conf, exempt_networks)},
    {.name = "exempt_authenticated",
     .type = SLUICE_CONFIG_BOOL,
     .def = "yes",
     .offset = offsetof(struct gl_conf, exempt_authenticated)},
    {.name = "on_state_error",
     .type = SLUICE_CONFIG_ENUM,
     .choices = gl__policies,
     .def = "open",
     .offset = offsetof(struct gl_conf, on_state_error)},
    {.name = NULL},
};

struct gl_inst {
    sluice_instance *inst;
    struct gl_conf conf;
    struct cidr_list exempt;
    sluice_counter *c_result; /* greylisted, passed, allowed, error, flood */
};

struct gl_job {
    struct gl_inst *d;
    sluice_ctx *ctx;
    uint64_t now_ms;
    int waiting;
    int status_auto, status_trip;
    uint64_t passes;
    enum gl_state state;
    uint64_t since_ms;
    char net[64];
    char triplet[GL_KEY_MAX];
};

static uint64_t gl__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void gl__noop(void *ud, const struct sluice_state_answer *a)
{
    (void)ud;
    (void)a;
}

/* A write whose answer nobody waits for (a lost one only means one more
 * greylisting round). */
static void gl__write(struct gl_job *j, uint32_t op, const char *key, const char *value,
                      uint64_t ttl_ms)
{
    struct sluice_state_request rq = {.size = sizeof rq,
                                      .op = op,
                                      .key = key,
                                      .value = value,
                                      .len = value ? strlen(value) : 0,
                                      .delta = 1,
                                      .ttl_ms = ttl_ms};
    sluice_api->state_call(j->d->inst, &rq, gl__noop, NULL);
}

/* The job's last step: answer the RCPT and free the job. */
static void gl__finish(struct gl_job *j, int verdict)
{
    sluice_ctx *ctx = j->ctx;
    free(j);
    sluice_api->complete(ctx, verdict);
}

/* The shared state failed: on_state_error decides. */
static int gl__state_error(struct gl_job *j)
{
    sluice_api->counter_add(j->d->c_result, "error", 1);
    if (j->d->conf.on_state_error == 1) {
        sluice_api->log_ctx(j->ctx, SLUICE_LOG_WARN,
                            "shared state unavailable: tempfail (on_state_error = closed)");
        sluice_api->set_reply(j->ctx, 451, "4.7.1",
                              "Greylisting unavailable, please try again later");
        return SLUICE_TEMPFAIL;
    }
    sluice_api->log_ctx(j->ctx, SLUICE_LOG_WARN,
                        "shared state unavailable: not greylisted (on_state_error = open)");
    return SLUICE_CONTINUE;
}

/* 451 4.7.1 "try again in N seconds"; a new triplet is written first. */
static int gl__greylist(struct gl_job *j, uint64_t left_ms)
{
    const struct gl_conf *cf = &j->d->conf;
    char text[160];
    if (j->state != GL_WAITING) {
        char first[32];
        snprintf(first, sizeof first, "w:%llu", (unsigned long long)j->now_ms);
        gl__write(j, SLUICE_STATE_SET, j->triplet, first, cf->retry_window_ms);
    }
    snprintf(text, sizeof text, "Greylisted, please try again in %llu seconds",
             (unsigned long long)((left_ms + 999) / 1000));
    sluice_api->set_reply(j->ctx, 451, "4.7.1", text);
    sluice_api->log_ctx(j->ctx, SLUICE_LOG_INFO, "greylisted (%s): %s",
                        j->state == GL_WAITING ? "retry too early" : "new", j->triplet);
    sluice_api->counter_add(j->d->c_result, "greylisted", 1);
    return SLUICE_TEMPFAIL;
}

/* The answer to the INCR of the network's new-triplet counter. */
static void gl__pending_cb(void *ud, const struct sluice_state_answer *a)
{
    struct gl_job *j = ud;
    const struct gl_conf *cf = &j->d->conf;
    if (a->status != 0) {
        gl__finish(j, gl__state_error(j));
        return;
    }
    if (a->num > (int64_t)cf->max_pending) {
        /* Said once per window (the count only grows until it expires):
         * a flood is one log line, not one per recipient. */
        if (a->num == (int64_t)cf->max_pending + 1)
            sluice_api->log_ctx(j->ctx, SLUICE_LOG_WARN,
                                "network %s started max_pending (%u) new triplets within "
                                "retry_window: new ones refused until it ends",
                                j->net, cf->max_pending);
        sluice_api->counter_add(j->d->c_result, "flood", 1);
        sluice_api->set_reply(j->ctx, 451, "4.7.1",
                              "Too many unconfirmed deliveries from your network, "
                              "please try again later");
        gl__finish(j, SLUICE_TEMPFAIL);
        return;
    }
    gl__finish(j, gl__greylist(j, cf->delay_ms));
}

static void gl__decide(struct gl_job *j)
{
    struct gl_inst *d = j->d;
    const struct gl_conf *cf = &d->conf;
    int verdict = SLUICE_CONTINUE;
    if (j->status_trip != 0 && j->status_trip != -ENOENT) {
        verdict = gl__state_error(j);
    } else if (cf->auto_allow && j->status_auto == 0 && j->passes >= cf->auto_allow) {
        sluice_api->counter_add(d->c_result, "allowed", 1);
    } else if (j->state == GL_PASSED) {
        sluice_api->counter_add(d->c_result, "passed", 1);
    } else if (j->state == GL_WAITING && j->now_ms >= j->since_ms + cf->delay_ms) {
        /* The retry came after the delay: a real sender. */
        gl__write(j, SLUICE_STATE_SET, j->triplet, "p", cf->lifetime_ms);
        char key[96];
        snprintf(key, sizeof key, "n:%s", j->net);
        gl__write(j, SLUICE_STATE_INCR, key, NULL, cf->lifetime_ms);
        sluice_api->counter_add(d->c_result, "passed", 1);
        sluice_api->log_ctx(j->ctx, SLUICE_LOG_INFO, "greylist passed after %llus: %s",
                            (unsigned long long)((j->now_ms - j->since_ms) / 1000), j->triplet);
    } else if (j->state == GL_WAITING) {
        verdict = gl__greylist(j, j->since_ms + cf->delay_ms - j->now_ms);
    } else {
        /* A new triplet: count it against its network's share first (an
         * atomic INCR, so parallel sessions cannot all slip under the cap);
         * the counter's window starts with the network's first new triplet
         * and lasts as long as that triplet is remembered. */
        char key[96];
        snprintf(key, sizeof key, "c:%s", j->net);
        struct sluice_state_request rq = {.size = sizeof rq,
                                          .op = SLUICE_STATE_INCR,
                                          .key = key,
                                          .delta = 1,
                                          .ttl_ms = cf->retry_window_ms};
        if (sluice_api->state_call(d->inst, &rq, gl__pending_cb, j))
            return; /* gl__pending_cb answers */
        verdict = gl__state_error(j);
    }
    gl__finish(j, verdict);
}

static void gl__auto_cb(void *ud, const struct sluice_state_answer *a)
{
    struct gl_job *j = ud;
    j->status_auto = a->status;
    if (a->status == 0) {
        char num[24];
        snprintf(num, sizeof num, "%.*s", (int)(a->len < 23 ? a->len : 23), a->value);
        long long v = strtoll(num, NULL, 10);
        j->passes = v > 0 ? (uint64_t)v : 0;
    }
    if (--j->waiting == 0)
        gl__decide(j);
}

static void gl__trip_cb(void *ud, const struct sluice_state_answer *a)
{
    struct gl_job *j = ud;
    j->status_trip = a->status;
    j->state = a->status == 0 ? gl_parse_value(a->value, a->len, &j->since_ms) : GL_NEW;
    if (--j->waiting == 0)
        gl__decide(j);
}

static int gl__on_rcpt(sluice_ctx *ctx)
{
    struct gl_inst *d = sluice_api->instance_data(ctx);
    const char *addr = sluice_api->client_addr(ctx);
    if (cidr_match(d->exempt.v, d->exempt.n, addr))
        return SLUICE_CONTINUE;
    if (d->conf.exempt_authenticated && *sluice_api->auth_user(ctx))
        return SLUICE_CONTINUE;
    struct gl_job *j = calloc(1, sizeof *j);
    if (!j)
        return SLUICE_ERROR;
    j->d = d;
    j->ctx = ctx;
    j->now_ms = gl__wall_ms();
    if (gl_net(addr, d->conf.ipv4_prefix, d->conf.ipv6_prefix, j->net, sizeof j->net) != 0 ||
        gl_triplet_key(j->net, sluice_api->sender(ctx), sluice_api->current_rcpt(ctx), j->triplet,
                       sizeof j->triplet) != 0) {
        free(j);
        return SLUICE_CONTINUE; /* nothing to remember it by */
    }
    char auto_key[96];
    snprintf(auto_key, sizeof auto_key, "n:%s", j->net);
    struct sluice_state_request a = {.size = sizeof a, .op = SLUICE_STATE_GET, .key = auto_key};
    struct sluice_state_request t = {.size = sizeof t, .op = SLUICE_STATE_GET, .key = j->triplet};
    /* Both before any answer can come (answers come from the loop, later). */
    if (sluice_api->state_call(d->inst, &a, gl__auto_cb, j))
        j->waiting++;
    else
        j->status_auto = -EINVAL;
    if (sluice_api->state_call(d->inst, &t, gl__trip_cb, j))
        j->waiting++;
    else
        j->status_trip = -EINVAL;
    if (j->waiting == 0) {
        /* The store refused both requests: on_state_error decides, here.
         * (With one in flight, gl__decide applies it to the refused one.) */
        sluice_api->counter_add(d->c_result, "error", 1);
        free(j);
        if (d->conf.on_state_error != 1)
            return SLUICE_CONTINUE;
        sluice_api->set_reply(ctx, 451, "4.7.1", "Greylisting unavailable, please try again later");
        return SLUICE_TEMPFAIL;
    }
    return SLUICE_ASYNC;
}

static void gl__shutdown(void *data)
{
    struct gl_inst *d = data;
    if (!d)
        return;
    cidr_list_free(&d->exempt);
    free(d);
}

static int gl__init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, state_cancel) || !SLUICE_API_HAS(api, config_load)) {
        api->config_error(inst, NULL, "needs a sluice with shared state (state_call)");
        return -1;
    }
    struct gl_inst *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    d->inst = inst;
    int bad = SLUICE_CONFIG_LOAD(api, inst, gl__keys, &d->conf, SLUICE_CONFIG_STRICT) != 0;
    char err[256];
    if (!bad && cidr_list_parse(d->conf.exempt_networks, 0, &d->exempt, err, sizeof err) < 0) {
        api->config_error(inst, "exempt_networks", "%s", err);
        bad = 1;
    }
    if (!bad && d->conf.retry_window_ms <= d->conf.delay_ms) {
        api->config_error(inst, "retry_window", "must be longer than delay");
        bad = 1;
    }
    if (bad) {
        gl__shutdown(d);
        return -1;
    }
    d->c_result = api->counter_new(inst, "checks", "Recipients checked, by result", "result", 5);
    api->log(inst, SLUICE_LOG_INFO,
             "delay %llus, retry window %llus, lifetime %llus, auto-allow after %u passes, "
             "at most %u new triplets per network per retry window",
             (unsigned long long)(d->conf.delay_ms / 1000),
             (unsigned long long)(d->conf.retry_window_ms / 1000),
             (unsigned long long)(d->conf.lifetime_ms / 1000), d->conf.auto_allow,
             d->conf.max_pending);
    *data = d;
    return 0;
}

SLUICE_PLUGIN_DEFINE(.name = "greylist", .version = "1.0",
                     .description = "Greylisting of unknown (network, sender, recipient) triplets",
                     .init = gl__init, .shutdown = gl__shutdown, .on_rcpt = gl__on_rcpt);
