/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam: the sluice plugin around the spam engine.
 *
 * init() loads and compiles the rule file (errors printed as
 * RULEFILE:LINE: message, and the instance fails, so `sluice --check` and
 * a SIGHUP with a broken file both refuse it; on SIGHUP the host keeps the
 * old instance). The DATA hook runs on the host's thread pool: it builds
 * the message view, evaluates the current rule set, records every rule hit
 * as a symbol and acts on the transaction's total score.
 *
 * Rule-file watch: at most once a second, at the start of a DATA hook, the
 * files of the current set are stat()ed; when they changed, the thread
 * that noticed builds a new set and swaps it in under the instance lock
 * (evaluations in flight keep their reference to the old set). A file with
 * errors is logged and refused; the old set stays until the files change
 * again.
 *
 * Ownership: struct spam_inst is the instance data, freed by shutdown();
 * it owns the current rule set's reference and the scratch pool.
 */
#include "spam_eval.h"
#include "spam_msg.h"
#include "spam_rules.h"
#include "pstr.h"

#include <sluice/plugin.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define SPAM_DEFAULT_RULES "/etc/sluice/rules/spam.rules"
#define SPAM_MAX_STATUS_TESTS 60

struct spam_inst {
    const struct sluice_host_api *api;
    sluice_instance *inst;
    char *rules_path;
    /* thresholds; NAN = off */
    double header_threshold, tag_threshold, quarantine_threshold, reject_threshold;
    char *subject_tag;
    char *reject_text;
    size_t max_scan;
    int watch;
    int strip_headers;
    struct spam_eval_limits limits;
    struct spam_scratch_pool *pool;

    pthread_mutex_t lock;       /* guards rs, sig, last_check, reloading */
    struct spam_ruleset *rs;
    uint64_t sig;               /* of the rule files when last (tried to be) loaded */
    struct timespec last_check;
    int reloading;

    sluice_counter *c_hits, *c_limits, *c_msgs, *c_score, *c_reloads;
};

/* The host's table, the same for every instance: hooks get only a ctx and
 * reach their instance's state through it (api->instance_data). */
static const struct sluice_host_api *spam__api;

/* ---- config parsing ----------------------------------------------------- */

static int spam__parse_double(const char *v, double *out)
{
    char *e;
    errno = 0;
    double d = strtod(v, &e);
    while (*e == ' ')
        e++;
    if (e == v || *e || errno || !isfinite(d))
        return -1;
    *out = d;
    return 0;
}

/* A threshold: a number, or "off". */
static int spam__threshold(struct spam_inst *si, const char *key, double def, double *out)
{
    const char *v = si->api->config_get(si->inst, key);
    *out = def;
    if (!v)
        return 0;
    if (strcasecmp(v, "off") == 0 || strcasecmp(v, "none") == 0 || strcasecmp(v, "no") == 0) {
        *out = NAN;
        return 0;
    }
    if (spam__parse_double(v, out) < 0 || fabs(*out) > 1e6) {
        si->api->config_error(si->inst, key, "want a score (e.g. 5.0) or off, got '%s'", v);
        return -1;
    }
    return 0;
}

/* Unsigned with an optional suffix from `units` (name, multiplier). */
struct spam__unit {
    const char *suffix;
    uint64_t mult;
};

static int spam__number(struct spam_inst *si, const char *key, const struct spam__unit *units, uint64_t def,
                        uint64_t min, uint64_t max, const char *range, uint64_t *out)
{
    const char *v = si->api->config_get(si->inst, key);
    *out = def;
    if (!v)
        return 0;
    char *e;
    errno = 0;
    unsigned long long n = strtoull(v, &e, 10);
    if (e == v || errno || *v == '-')
        goto bad;
    uint64_t mult = units ? units[0].mult : 1;
    if (*e) {
        int found = 0;
        for (size_t i = 0; units && units[i].suffix; i++)
            if (strcasecmp(e, units[i].suffix) == 0) {
                mult = units[i].mult;
                found = 1;
            }
        if (!found)
            goto bad;
    }
    if (n > max / (mult ? mult : 1))
        goto bad;
    *out = n * mult;
    if (*out < min || *out > max)
        goto bad;
    return 0;
bad:
    si->api->config_error(si->inst, key, "bad value '%s' (want %s)", v, range);
    return -1;
}

static const struct spam__unit spam__ms_units[] = {{"s", 1000}, {"ms", 1}, {"m", 60000}, {NULL, 0}};
static const struct spam__unit spam__size_units[] = {{"", 1}, {"k", 1024}, {"m", 1024 * 1024}, {NULL, 0}};

static int spam__bool(struct spam_inst *si, const char *key, int def, int *out)
{
    const char *v = si->api->config_get(si->inst, key);
    *out = def;
    if (!v)
        return 0;
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcasecmp(v, "on") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcasecmp(v, "off") || !strcmp(v, "0"))
        *out = 0;
    else {
        si->api->config_error(si->inst, key, "want yes or no, got '%s'", v);
        return -1;
    }
    return 0;
}

/* A one-line text (for header values and SMTP replies). */
static int spam__text(struct spam_inst *si, const char *key, const char *def, char **out)
{
    const char *v = si->api->config_get(si->inst, key);
    if (!v)
        v = def;
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) {
            si->api->config_error(si->inst, key, "printable ASCII only");
            return -1;
        }
    if (strlen(v) > 200) {
        si->api->config_error(si->inst, key, "at most 200 characters");
        return -1;
    }
    *out = pstr_xstrdup(v);
    return 0;
}

/* ---- rule set loading ----------------------------------------------------- */

static uint64_t spam__sig(const struct spam_ruleset *rs)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < rs->nfiles; i++) {
        struct stat st;
        uint64_t v[5] = {0, 0, 0, 0, 0};
        if (stat(rs->files[i].path, &st) == 0) {
            v[0] = (uint64_t)st.st_ino;
            v[1] = (uint64_t)st.st_size;
            v[2] = (uint64_t)st.st_mtim.tv_sec;
            v[3] = (uint64_t)st.st_mtim.tv_nsec;
            v[4] = (uint64_t)st.st_dev;
        }
        for (int k = 0; k < 5; k++) {
            h ^= v[k];
            h *= 1099511628211ULL;
        }
    }
    return h;
}

/* Load the rule file; logs each error as FILE:LINE: message. */
static struct spam_ruleset *spam__load(struct spam_inst *si, size_t *nerr)
{
    struct spam_rules_errors errs;
    struct spam_ruleset *rs = spam_rules_load(si->rules_path, &errs);
    *nerr = errs.n;
    for (size_t i = 0; i < errs.n; i++)
        si->api->log(si->inst, SLUICE_LOG_ERROR, "%s:%u: %s", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
    spam_rules_errors_free(&errs);
    return rs;
}

/* The set to use for one message (a reference), reloading first if due. */
static struct spam_ruleset *spam__acquire(struct spam_inst *si)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    pthread_mutex_lock(&si->lock);
    int check = si->watch && !si->reloading && now.tv_sec - si->last_check.tv_sec >= 1;
    struct spam_ruleset *cur = si->rs;
    if (check) {
        si->last_check = now;
        si->reloading = 1;
        spam_ruleset_ref(cur);
    }
    pthread_mutex_unlock(&si->lock);
    if (check) {
        uint64_t sig = spam__sig(cur);
        spam_ruleset_unref(cur);
        if (sig != si->sig) {
            size_t nerr = 0;
            struct spam_ruleset *nrs = spam__load(si, &nerr);
            pthread_mutex_lock(&si->lock);
            if (nrs) {
                struct spam_ruleset *old = si->rs;
                si->rs = nrs;
                si->sig = spam__sig(nrs);
                spam_ruleset_unref(old);
            } else {
                si->sig = sig; /* retry only when the files change again */
            }
            pthread_mutex_unlock(&si->lock);
            if (si->c_reloads)
                si->api->counter_add(si->c_reloads, nrs ? "ok" : "failed", 1);
            if (nrs)
                si->api->log(si->inst, SLUICE_LOG_INFO, "rules reloaded from %s: %zu rules", si->rules_path,
                             nrs->nrules);
            else
                si->api->log(si->inst, SLUICE_LOG_ERROR,
                             "rule file %s has %zu error%s; keeping the previous rules", si->rules_path, nerr,
                             nerr == 1 ? "" : "s");
        }
        pthread_mutex_lock(&si->lock);
        si->reloading = 0;
        pthread_mutex_unlock(&si->lock);
    }
    pthread_mutex_lock(&si->lock);
    cur = si->rs;
    spam_ruleset_ref(cur);
    pthread_mutex_unlock(&si->lock);
    return cur;
}

/* ---- instance life ----------------------------------------------------------- */

static void spam_shutdown(void *data)
{
    struct spam_inst *si = data;
    if (!si)
        return;
    spam_ruleset_unref(si->rs);
    spam_scratch_pool_free(si->pool);
    pthread_mutex_destroy(&si->lock);
    free(si->rules_path);
    free(si->subject_tag);
    free(si->reject_text);
    free(si);
}

static int spam_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    struct spam_inst *si = pstr_xcalloc(1, sizeof(*si));
    spam__api = api;
    si->api = api;
    si->inst = inst;
    pthread_mutex_init(&si->lock, NULL);
    spam_msg_global_init();

    int bad = 0;
    const char *rules = api->config_get(inst, "rules");
    si->rules_path = pstr_xstrdup(rules && *rules ? rules : SPAM_DEFAULT_RULES);
    bad |= spam__threshold(si, "header_threshold", 4.0, &si->header_threshold);
    bad |= spam__threshold(si, "tag_threshold", 6.0, &si->tag_threshold);
    bad |= spam__threshold(si, "quarantine_threshold", NAN, &si->quarantine_threshold);
    bad |= spam__threshold(si, "reject_threshold", 15.0, &si->reject_threshold);
    bad |= spam__text(si, "subject_tag", "[SPAM]", &si->subject_tag);
    bad |= spam__text(si, "reject_text", "Message rejected as spam", &si->reject_text);
    uint64_t v;
    struct spam_eval_limits lim = SPAM_EVAL_LIMITS_DEFAULT;
    bad |= spam__number(si, "max_scan_size", spam__size_units, 256 * 1024, 1024, 64ULL << 20,
                        "a size from 1k to 64M", &v);
    si->max_scan = (size_t)v;
    bad |= spam__number(si, "match_limit", NULL, lim.match_limit, 100, 100000000,
                        "a number from 100 to 100000000", &v);
    lim.match_limit = (uint32_t)v;
    bad |= spam__number(si, "rule_time_limit", spam__ms_units, lim.rule_time_ms, 1, 60000,
                        "a duration from 1ms to 60s", &v);
    lim.rule_time_ms = (unsigned)v;
    bad |= spam__number(si, "scan_time_limit", spam__ms_units, lim.msg_time_ms, 1, 600000,
                        "a duration from 1ms to 10m", &v);
    lim.msg_time_ms = (unsigned)v;
    bad |= spam__bool(si, "watch_rules", 1, &si->watch);
    bad |= spam__bool(si, "strip_headers", 1, &si->strip_headers);
    si->limits = lim;

    /* Thresholds must make sense together (an off one is ignored). */
    if (!isnan(si->reject_threshold) && !isnan(si->tag_threshold) && si->reject_threshold < si->tag_threshold) {
        api->config_error(inst, "reject_threshold", "is below tag_threshold (%.2f)", si->tag_threshold);
        bad = 1;
    }
    if (!isnan(si->tag_threshold) && !isnan(si->header_threshold) && si->tag_threshold < si->header_threshold) {
        api->config_error(inst, "tag_threshold", "is below header_threshold (%.2f)", si->header_threshold);
        bad = 1;
    }

    size_t nerr = 0;
    si->rs = spam__load(si, &nerr);
    if (!si->rs) {
        api->config_error(inst, "rules", "rule file %s has %zu error%s", si->rules_path, nerr,
                          nerr == 1 ? "" : "s");
        bad = 1;
    }
    if (bad) {
        spam_shutdown(si);
        return -1;
    }
    si->sig = spam__sig(si->rs);
    clock_gettime(CLOCK_MONOTONIC_COARSE, &si->last_check);
    if (!api->checking(inst)) {
        si->pool = spam_scratch_pool_new(&si->limits);
        if (!si->pool) {
            api->config_error(inst, NULL, "out of memory");
            spam_shutdown(si);
            return -1;
        }
        si->c_hits = api->counter_new(inst, "rule_hits", "Messages that hit each spam rule", "rule", 500);
        si->c_limits = api->counter_new(inst, "rule_limits",
                                        "Rules stopped by a match or time limit (counted as not matched)",
                                        "rule", 500);
        si->c_msgs = api->counter_new(inst, "messages", "Messages scanned, by action taken", "action", 8);
        si->c_score = api->counter_new(inst, "scores", "Messages scanned, by score range", "range", 8);
        si->c_reloads = api->counter_new(inst, "reloads", "Rule file reloads on change", "result", 2);
        api->log(inst, SLUICE_LOG_INFO, "%zu rules from %s%s", si->rs->nrules, si->rules_path,
                 si->rs->jit ? "" : " (some without JIT)");
    }
    *data = si;
    return 0;
}

/* ---- the DATA hook --------------------------------------------------------- */

static const char *spam__range(double s)
{
    if (s < 0)
        return "<0";
    if (s < 2)
        return "0-2";
    if (s < 5)
        return "2-5";
    if (s < 10)
        return "5-10";
    if (s < 20)
        return "10-20";
    if (s < 1000)
        return "20+";
    return "gtube";
}

static int spam__at(double score, double threshold)
{
    return !isnan(threshold) && score >= threshold;
}

static void spam__strip(const struct sluice_host_api *api, sluice_ctx *ctx, const char *name)
{
    size_t n = 0;
    while (n < 100 && api->header_get(ctx, name, n))
        n++;
    while (n-- > 0)
        api->header_delete(ctx, name, n);
}

static void spam__headers(struct spam_inst *si, sluice_ctx *ctx, double score, int spam, const char *tests)
{
    const struct sluice_host_api *api = si->api;
    char buf[64];
    snprintf(buf, sizeof(buf), "%.2f", score);
    api->header_add(ctx, "X-Spam-Score", buf);
    struct pstr st = PSTR_INIT;
    double req = !isnan(si->tag_threshold) ? si->tag_threshold : si->header_threshold;
    pstr_printf(&st, "%s, score=%.2f required=%.2f tests=%s", spam ? "Yes" : "No", score, req,
                    *tests ? tests : "none");
    api->header_add(ctx, "X-Spam-Status", pstr_cstr(&st));
    pstr_free(&st);
    api->header_add(ctx, "X-Spam-Flag", spam ? "YES" : "NO");
}

static void spam__tag_subject(struct spam_inst *si, sluice_ctx *ctx)
{
    const struct sluice_host_api *api = si->api;
    const char *subj = api->header_get(ctx, "Subject", 0);
    size_t tl = strlen(si->subject_tag);
    if (!subj) {
        api->header_add(ctx, "Subject", si->subject_tag);
        return;
    }
    if (strncmp(subj, si->subject_tag, tl) == 0)
        return;
    struct pstr s = PSTR_INIT;
    pstr_printf(&s, "%s %s", si->subject_tag, subj);
    api->header_change(ctx, "Subject", 0, pstr_cstr(&s));
    pstr_free(&s);
}

static int spam_on_data(sluice_ctx *ctx)
{
    const struct sluice_host_api *api = spam__api;
    struct spam_inst *si = api->instance_data(ctx);
    const char *data = NULL;
    size_t len = 0;
    if (api->message(ctx, &data, &len) != 0)
        return SLUICE_CONTINUE;

    size_t nr = api->rcpt_count(ctx);
    const char **rcpts = pstr_xcalloc(nr + 1, sizeof(char *));
    for (size_t i = 0; i < nr; i++)
        rcpts[i] = api->rcpt(ctx, i);
    struct spam_msg_env env = {
        .sender = api->sender(ctx),
        .rcpts = rcpts,
        .nrcpts = nr,
        .client_ip = api->client_addr(ctx),
        .helo = api->helo(ctx),
        .client_name = api->client_name(ctx),
    };
    struct spam_ruleset *rs = spam__acquire(si);
    struct spam_msg *m = spam_msg_parse(data, len, &env, si->max_scan);
    struct spam_result res;
    spam_eval_run(rs, m, si->pool, &res);

    /* Symbols: every rule hit (but "__" sub-rules), GTUBE first. */
    struct pstr tests = PSTR_INIT;
    size_t ntests = 0;
    if (res.gtube) {
        api->symbol_add(ctx, "GTUBE", SPAM_GTUBE_SCORE, "the GTUBE test string");
        pstr_puts(&tests, "GTUBE");
        ntests++;
    }
    for (size_t i = 0; i < rs->nrules; i++) {
        const struct spam_rule *r = &rs->rules[i];
        if (res.limited[i] && si->c_limits)
            api->counter_add(si->c_limits, r->name, 1);
        if (!res.hit[i])
            continue;
        if (strncmp(r->name, "__", 2) == 0) {
            if (r->score != 0)
                api->symbol_add(ctx, r->name, r->score, r->describe ? r->describe : r->name);
            continue;
        }
        api->symbol_add(ctx, r->name, r->score, r->describe ? r->describe : r->name);
        if (si->c_hits)
            api->counter_add(si->c_hits, r->name, 1);
        if (ntests < SPAM_MAX_STATUS_TESTS) {
            if (tests.len)
                pstr_putc(&tests, ',');
            pstr_puts(&tests, r->name);
        } else if (ntests == SPAM_MAX_STATUS_TESTS) {
            pstr_puts(&tests, ",...");
        }
        ntests++;
    }
    /* The total includes what earlier plugins in the chain scored. */
    double score = api->score(ctx);
    if (si->c_score)
        api->counter_add(si->c_score, spam__range(score), 1);

    int verdict = SLUICE_CONTINUE;
    const char *action = "ham";
    if (si->strip_headers) {
        spam__strip(api, ctx, "X-Spam-Flag");
        spam__strip(api, ctx, "X-Spam-Status");
        spam__strip(api, ctx, "X-Spam-Score");
    }
    if (spam__at(score, si->reject_threshold)) {
        api->set_reply(ctx, 554, "5.7.1", si->reject_text);
        verdict = SLUICE_REJECT;
        action = "rejected";
    } else {
        int spam = spam__at(score, si->tag_threshold);
        if (spam__at(score, si->header_threshold) || spam || spam__at(score, si->quarantine_threshold)) {
            spam__headers(si, ctx, score, spam, pstr_cstr(&tests));
            action = "headers";
        }
        if (spam) {
            spam__tag_subject(si, ctx);
            action = "tagged";
        }
        if (spam__at(score, si->quarantine_threshold)) {
            verdict = SLUICE_QUARANTINE;
            action = "quarantined";
        }
    }
    if (si->c_msgs)
        api->counter_add(si->c_msgs, action, 1);
    api->log_ctx(ctx, verdict == SLUICE_CONTINUE && ntests == 0 ? SLUICE_LOG_DEBUG : SLUICE_LOG_INFO,
                 "spam score=%.2f action=%s tests=%s%s%s", score, action, tests.len ? pstr_cstr(&tests) : "none",
                 res.nlimited ? " limited=" : "", res.nlimited ? (res.out_of_time ? "time" : "match") : "");

    pstr_free(&tests);
    spam_result_free(&res);
    spam_msg_free(m);
    spam_ruleset_unref(rs);
    free(rcpts);
    return verdict;
}

SLUICE_PLUGIN_DEFINE(.name = "spam", .version = "1.0",
                     .description = "rule-based spam scoring (PCRE2 rules, meta rules, thresholds)",
                     .capabilities = SLUICE_CAP_HEADERS | SLUICE_CAP_QUARANTINE,
                     .blocking_phases = SLUICE_PHASE_BIT(SLUICE_PHASE_DATA), .init = spam_init,
                     .shutdown = spam_shutdown, .on_data = spam_on_data);
