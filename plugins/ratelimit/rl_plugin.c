/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ratelimit: connections, messages, recipients and bytes per client
 * address, user, sender, sender domain or recipient domain over sliding
 * windows (rl_rules.h), counted in the daemon's shared state
 * (api->state_call), so that with [state] backend = redis a limit holds
 * across every sluice instance.
 *
 * Each rule a hook applies to costs two state operations, started
 * together: INCR of the current bucket ("NAME:SUBJECT:BUCKET", expiring
 * two windows later) and GET of the previous one. When every answer is in,
 * the first rule over its limit decides: 421 4.7.0 at connect (and the
 * connection is closed), 451 4.7.0 elsewhere. When the store fails
 * (-EAGAIN: Redis unreachable or slow), on_state_error decides: open lets
 * the mail through and logs it, closed answers 451 4.7.0.
 *
 * Nothing blocks: the hooks are non-blocking and answer through complete()
 * from the state callbacks, on the loop thread.
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
#include "rl_rules.h"
#include "rl_top.h"

SLUICE_API_DECLARE;

#define RL_DEFAULT_RULES "/etc/sluice/rules/ratelimit.rules"

static const char *const rl__policies[] = {"open", "closed", NULL};

struct rl_conf {
    const char *rules;
    const char *exempt_networks;
    bool exempt_authenticated;
    unsigned ipv6_prefix;
    int on_state_error; /* 0 open, 1 closed */
    unsigned top_offenders;
};

static const struct sluice_config_key rl__keys[] = {
    {.name = "rules",
     .type = SLUICE_CONFIG_PATH,
     .def = RL_DEFAULT_RULES,
     .offset = offsetof(struct rl_conf, rules)},
    {.name = "exempt_networks",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_KEEP_EMPTY,
     .def = "127.0.0.0/8 ::1/128",
     .offset = offsetof(struct rl_conf, exempt_networks)},
    {.name = "exempt_authenticated",
     .type = SLUICE_CONFIG_BOOL,
     .def = "no",
     .offset = offsetof(struct rl_conf, exempt_authenticated)},
    {.name = "ipv6_prefix",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "64",
     .min = 16,
     .max = 128,
     .offset = offsetof(struct rl_conf, ipv6_prefix)},
    {.name = "on_state_error",
     .type = SLUICE_CONFIG_ENUM,
     .choices = rl__policies,
     .def = "open",
     .offset = offsetof(struct rl_conf, on_state_error)},
    {.name = "top_offenders",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "10",
     .min = 0,
     .max = RL_TOP_MAX,
     .offset = offsetof(struct rl_conf, top_offenders)},
    {.name = NULL},
};

struct rl_inst {
    sluice_instance *inst;
    struct rl_conf conf;
    struct cidr_list exempt;
    struct rl_rules rules;
    sluice_counter *c_refused; /* by rule */
    sluice_counter *c_errors;
    sluice_gauge *g_top; /* NULL: no top lists (top_offenders = 0, or an older host) */
    struct rl_top *top;  /* one per rule, owned; loop thread */
};

/* One rule's pair of operations. */
struct rl_check {
    const struct rl_rule *rule;
    sluice_state_op *cur_op, *prev_op;
    int status;
    bool counted; /* the INCR went in: a refusal takes it back */
    uint64_t cur, prev;
    char subject[RL_SUBJECT_MAX];
};

/* One hook call: every applicable rule, answered when `waiting` is 0. */
struct rl_job {
    struct rl_inst *d;
    sluice_ctx *ctx;
    enum sluice_phase phase;
    uint64_t now_ms; /* wall clock: instances must agree on buckets */
    uint64_t delta;  /* what this event adds: 1, or the message's bytes */
    size_t n, waiting;
    struct rl_check c[RL_MAX_RULES];
};

static uint64_t rl__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void rl__noop(void *ud, const struct sluice_state_answer *a)
{
    (void)ud;
    (void)a;
}

/* A refused event does not count: take back what check i added (the
 * answer does not matter; if it is lost, the event counts after all). */
static void rl__undo(struct rl_job *j, size_t i)
{
    const struct rl_check *c = &j->c[i];
    char key[RL_NAME_MAX + RL_SUBJECT_MAX + 32];
    snprintf(key, sizeof key, "%s:%s:%llu", c->rule->name, c->subject,
             (unsigned long long)(j->now_ms / c->rule->window_ms));
    struct sluice_state_request rq = {.size = sizeof rq,
                                      .op = SLUICE_STATE_INCR,
                                      .key = key,
                                      .delta = -(int64_t)j->delta,
                                      .ttl_ms = 2 * c->rule->window_ms};
    sluice_api->state_call(j->d->inst, &rq, rl__noop, NULL);
}

/* Keep rule's top list, and its gauge series, up to date with a count
 * the store just gave. A count is shown for one window after its event:
 * by then the sliding estimate has decayed, and a later event renews it. */
/* The subject as the gauge shows it, distinct for distinct subjects: the
 * host cuts label values at 95 bytes and blanks out bytes that are not
 * printable ASCII, so a long or 8-bit address (senders choose theirs) is
 * shown as its first 72 bytes, '~' and a hash of the whole; otherwise one
 * sender could overwrite, or on leaving the list remove, another's series.
 * FNV-1a: the hash tells subjects apart for the admin, it is no secret. */
static void rl__top_label(const char *subject, char *out, size_t n)
{
    size_t len = strlen(subject);
    bool plain = len <= 80;
    for (size_t i = 0; plain && i < len; i++)
        plain = subject[i] > 0x20 && subject[i] < 0x7f;
    if (plain) {
        snprintf(out, n, "%s", subject);
        return;
    }
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)subject[i]) * 1099511628211ULL;
    char head[73];
    size_t k = 0;
    for (; k < len && k < sizeof head - 1; k++)
        head[k] = subject[k] > 0x20 && subject[k] < 0x7f ? subject[k] : '_';
    head[k] = 0;
    snprintf(out, n, "%s~%016llx", head, (unsigned long long)h);
}

static void rl__top(struct rl_inst *d, const struct rl_check *c, uint64_t est, uint64_t now_ms)
{
    if (!d->g_top)
        return;
    struct rl_top *t = &d->top[c->rule - d->rules.v];
    uint64_t until = now_ms + c->rule->window_ms;
    char label[96], evicted[RL_SUBJECT_MAX];
    rl__top_label(c->subject, label, sizeof label);
    switch (rl_top_note(t, label, est, now_ms, until, evicted, sizeof evicted)) {
    case RL_TOP_OUT:
        return;
    case RL_TOP_REPLACE:
        sluice_api->gauge_remove(d->g_top, c->rule->name, evicted);
        /* fall through */
    case RL_TOP_IN:
        sluice_api->gauge_set(d->g_top, c->rule->name, label, (double)est, until);
        return;
    }
}

static void rl__finish(struct rl_job *j)
{
    struct rl_inst *d = j->d;
    const struct rl_check *over = NULL;
    uint64_t count = 0;
    bool failed = false;
    for (size_t i = 0; i < j->n; i++) {
        const struct rl_check *c = &j->c[i];
        if (c->status != 0) {
            failed = true;
            continue;
        }
        uint64_t est = rl_estimate(c->cur, c->prev, j->now_ms, c->rule->window_ms);
        rl__top(d, c, est, j->now_ms);
        if (est > c->rule->limit && !over) {
            over = c;
            count = est;
        }
    }
    int verdict = SLUICE_CONTINUE;
    if (over) {
        char text[200];
        snprintf(text, sizeof text,
                 "Rate limit reached (%s: %llu %s per %s in %llus), try again later",
                 over->rule->name, (unsigned long long)count, rl_what_name(over->rule->what),
                 rl_per_name(over->rule->per), (unsigned long long)(over->rule->window_ms / 1000));
        sluice_api->log_ctx(j->ctx, SLUICE_LOG_INFO, "rule %s: %s %s over %llu (%llu)",
                            over->rule->name, rl_per_name(over->rule->per), over->subject,
                            (unsigned long long)over->rule->limit, (unsigned long long)count);
        sluice_api->counter_add(d->c_refused, over->rule->name, 1);
        for (size_t i = 0; i < j->n; i++)
            if (j->c[i].counted)
                rl__undo(j, i);
        if (j->phase == SLUICE_PHASE_CONNECT) {
            sluice_api->set_reply(j->ctx, 421, "4.7.0", text);
            verdict = SLUICE_DISCONNECT;
        } else {
            sluice_api->set_reply(j->ctx, 451, "4.7.0", text);
            verdict = SLUICE_TEMPFAIL;
        }
    } else if (failed) {
        sluice_api->counter_add(d->c_errors, NULL, 1);
        if (d->conf.on_state_error == 1) {
            sluice_api->log_ctx(j->ctx, SLUICE_LOG_WARN,
                                "shared state unavailable: tempfail (on_state_error = closed)");
            sluice_api->set_reply(j->ctx, j->phase == SLUICE_PHASE_CONNECT ? 421 : 451, "4.7.0",
                                  "Rate limit check unavailable, try again later");
            verdict = j->phase == SLUICE_PHASE_CONNECT ? SLUICE_DISCONNECT : SLUICE_TEMPFAIL;
        } else {
            sluice_api->log_ctx(j->ctx, SLUICE_LOG_WARN,
                                "shared state unavailable: not limited (on_state_error = open)");
        }
    }
    sluice_ctx *ctx = j->ctx;
    free(j);
    sluice_api->complete(ctx, verdict);
}

static void rl__answer(struct rl_job *j, struct rl_check *c, bool is_cur,
                       const struct sluice_state_answer *a)
{
    if (is_cur) {
        c->cur_op = NULL;
        if (a->status == 0) {
            c->cur = a->num > 0 ? (uint64_t)a->num : 0;
            c->counted = true;
        } else {
            c->status = a->status;
        }
    } else {
        c->prev_op = NULL;
        if (a->status == 0) {
            char num[24];
            snprintf(num, sizeof num, "%.*s", (int)(a->len < 23 ? a->len : 23), a->value);
            /* below zero when an undo outlived its counter (evicted, Redis
             * restarted): that is nothing counted, not 2^64 */
            long long v = strtoll(num, NULL, 10);
            c->prev = v > 0 ? (uint64_t)v : 0;
        } else if (a->status != -ENOENT) {
            c->status = a->status;
        }
    }
    if (--j->waiting == 0)
        rl__finish(j);
}

/* The state callbacks get the check; the job is found from it. */
struct rl_ref {
    struct rl_job *j;
    size_t i;
    bool cur;
};

static void rl__cb(void *ud, const struct sluice_state_answer *a)
{
    struct rl_ref *r = ud;
    struct rl_ref copy = *r;
    free(r);
    rl__answer(copy.j, &copy.j->c[copy.i], copy.cur, a);
}

static sluice_state_op *rl__start(struct rl_job *j, size_t i, bool cur)
{
    struct rl_check *c = &j->c[i];
    const struct rl_rule *rule = c->rule;
    uint64_t bucket = j->now_ms / rule->window_ms - (cur ? 0 : 1);
    char key[RL_NAME_MAX + RL_SUBJECT_MAX + 32];
    snprintf(key, sizeof key, "%s:%s:%llu", rule->name, c->subject, (unsigned long long)bucket);
    struct rl_ref *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    *r = (struct rl_ref){j, i, cur};
    struct sluice_state_request rq = {.size = sizeof rq, .key = key};
    if (cur) {
        rq.op = SLUICE_STATE_INCR;
        rq.delta = (int64_t)j->delta;
        rq.ttl_ms = 2 * rule->window_ms; /* the next bucket reads it as its previous */
    } else {
        rq.op = SLUICE_STATE_GET;
    }
    sluice_state_op *op = sluice_api->state_call(j->d->inst, &rq, rl__cb, r);
    if (!op)
        free(r);
    return op;
}

/* The value a rule counts per, in this session. */
static const char *rl__value(sluice_ctx *ctx, enum rl_per per)
{
    switch (per) {
    case RL_CLIENT_IP:
        return sluice_api->client_addr(ctx);
    case RL_AUTH_USER:
        return sluice_api->auth_user(ctx);
    case RL_SENDER:
    case RL_SENDER_DOMAIN:
        return sluice_api->sender(ctx);
    case RL_RCPT_DOMAIN:
        return sluice_api->current_rcpt(ctx);
    }
    return NULL;
}

static int rl__check(sluice_ctx *ctx, enum rl_what what, uint64_t delta)
{
    struct rl_inst *d = sluice_api->instance_data(ctx);
    const char *addr = sluice_api->client_addr(ctx);
    if (cidr_match(d->exempt.v, d->exempt.n, addr))
        return SLUICE_CONTINUE;
    if (d->conf.exempt_authenticated && *sluice_api->auth_user(ctx))
        return SLUICE_CONTINUE;
    struct rl_job *j = calloc(1, sizeof *j);
    if (!j)
        return SLUICE_ERROR;
    j->d = d;
    j->ctx = ctx;
    j->phase = sluice_api->phase(ctx);
    j->now_ms = rl__wall_ms();
    j->delta = delta;
    for (size_t i = 0; i < d->rules.n; i++) {
        const struct rl_rule *rule = &d->rules.v[i];
        if (rule->what != what)
            continue;
        struct rl_check *c = &j->c[j->n];
        if (rl_subject(rule->per, rl__value(ctx, rule->per), d->conf.ipv6_prefix, c->subject,
                       sizeof c->subject) != 0)
            continue;
        c->rule = rule;
        j->n++;
    }
    if (j->n == 0) {
        free(j);
        return SLUICE_CONTINUE;
    }
    /* Start every operation before any answer can come (they come from the
     * loop, later): waiting counts what is started. */
    for (size_t i = 0; i < j->n; i++) {
        struct rl_check *c = &j->c[i];
        j->c[i].cur_op = rl__start(j, i, true);
        if (c->cur_op) {
            j->waiting++;
        } else {
            c->status = -EINVAL;
        }
        c->prev_op = rl__start(j, i, false);
        if (c->prev_op)
            j->waiting++;
        else
            c->status = -EINVAL;
    }
    if (j->waiting == 0) {
        /* The store refused every request: on_state_error decides, here. */
        enum sluice_phase ph = j->phase;
        free(j);
        sluice_api->counter_add(d->c_errors, NULL, 1);
        if (d->conf.on_state_error != 1)
            return SLUICE_CONTINUE;
        sluice_api->set_reply(ctx, ph == SLUICE_PHASE_CONNECT ? 421 : 451, "4.7.0",
                              "Rate limit check unavailable, try again later");
        return ph == SLUICE_PHASE_CONNECT ? SLUICE_DISCONNECT : SLUICE_TEMPFAIL;
    }
    return SLUICE_ASYNC;
}

static int rl__on_connect(sluice_ctx *ctx)
{
    return rl__check(ctx, RL_CONNECTIONS, 1);
}

static int rl__on_mail(sluice_ctx *ctx)
{
    return rl__check(ctx, RL_MESSAGES, 1);
}

static int rl__on_rcpt(sluice_ctx *ctx)
{
    return rl__check(ctx, RL_RECIPIENTS, 1);
}

static int rl__on_data(sluice_ctx *ctx)
{
    const char *data;
    size_t len = 0;
    if (sluice_api->message(ctx, &data, &len) != 0)
        return SLUICE_CONTINUE;
    return rl__check(ctx, RL_BYTES, len ? len : 1);
}

static void rl__shutdown(void *data)
{
    struct rl_inst *d = data;
    if (!d)
        return;
    cidr_list_free(&d->exempt);
    free(d->top);
    free(d);
}

static void rl__rules_error(void *arg, const char *msg)
{
    struct rl_inst *d = arg;
    sluice_api->config_error(d->inst, "rules", "%s", msg);
}

static char *rl__slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *buf = malloc(256 * 1024 + 1);
    if (!buf) {
        fclose(fp);
        errno = ENOMEM;
        return NULL;
    }
    size_t n = fread(buf, 1, 256 * 1024 + 1, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad || n > 256 * 1024) {
        free(buf);
        errno = bad ? EIO : EFBIG;
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static int rl__init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, state_cancel) || !SLUICE_API_HAS(api, config_load)) {
        api->config_error(inst, NULL, "needs a sluice with shared state (state_call)");
        return -1;
    }
    struct rl_inst *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    d->inst = inst;
    int bad = SLUICE_CONFIG_LOAD(api, inst, rl__keys, &d->conf, SLUICE_CONFIG_STRICT) != 0;
    char err[256];
    if (!bad && cidr_list_parse(d->conf.exempt_networks, 0, &d->exempt, err, sizeof err) < 0) {
        api->config_error(inst, "exempt_networks", "%s", err);
        bad = 1;
    }
    if (!bad) {
        size_t len = 0;
        char *text = rl__slurp(d->conf.rules, &len);
        if (!text) {
            api->config_error(inst, "rules", "cannot read %s: %s", d->conf.rules, strerror(errno));
            bad = 1;
        } else {
            bad = rl_rules_parse(text, len, d->conf.rules, &d->rules, rl__rules_error, d) != 0;
            free(text);
        }
    }
    if (bad) {
        rl__shutdown(d);
        return -1;
    }
    d->c_refused = api->counter_new(inst, "refused", "Refusals by rate limit rule", "rule",
                                    (unsigned)d->rules.n + 1);
    d->c_errors =
        api->counter_new(inst, "state_errors", "Checks the shared state could not answer", NULL, 0);
    if (d->conf.top_offenders > 0 && d->rules.n > 0 && SLUICE_API_HAS(api, gauge_clear) &&
        !api->checking(inst)) {
        d->top = calloc(d->rules.n, sizeof *d->top);
        d->g_top = d->top ? api->gauge_new(inst, "top",
                                           "Top offenders per rule: the subjects with the "
                                           "highest sliding-window count this instance saw "
                                           "(shown for one window after their last event)",
                                           "rule", "subject",
                                           (unsigned)(d->rules.n * d->conf.top_offenders))
                          : NULL;
        if (d->g_top) {
            api->gauge_clear(d->g_top); /* a reload starts its lists afresh */
            for (size_t i = 0; i < d->rules.n; i++)
                d->top[i].cap = d->conf.top_offenders;
        }
    }
    api->log(inst, SLUICE_LOG_INFO, "%zu rate limit rules from %s (on_state_error = %s)",
             d->rules.n, d->conf.rules, rl__policies[d->conf.on_state_error]);
    *data = d;
    return 0;
}

SLUICE_PLUGIN_DEFINE(.name = "ratelimit", .version = "1.0",
                     .description = "Rate limits per client, user, sender and recipient domain",
                     .init = rl__init, .shutdown = rl__shutdown, .on_connect = rl__on_connect,
                     .on_mail = rl__on_mail, .on_rcpt = rl__on_rcpt, .on_data = rl__on_data);
