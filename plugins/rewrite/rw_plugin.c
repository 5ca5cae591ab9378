/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rewrite: the sluice plugin around the rewrite engine.
 *
 * init() reads the keys (a typed key table: api->config_load) and loads
 * the rule file; every rule-file error is logged as RULEFILE:LINE: message
 * (map files as MAPFILE:LINE) and the instance fails, so `sluice --check`
 * and a SIGHUP with a broken file refuse it (on SIGHUP the host keeps the
 * old instance).
 *
 * Hooks, all on the loop thread (matching is bounded by the PCRE2 match
 * limit, and header work is small):
 *   MAIL  sender rules -> api->sender_change (the upstream has not seen
 *         MAIL FROM yet, so it gets the new one)
 *   RCPT  recipient rules -> rcpt_remove(current) + rcpt_add(new), which
 *         the host sends instead, so the upstream still judges it
 *   DATA  header rules, and the header side of `headers` envelope rules,
 *         on a model of the header; the difference becomes host edits
 * A rewrite into an invalid address is never sent: the command gets
 * 451 4.3.0 and a log line.
 *
 * Rule-file watch (plugins/common/watch): at most once a second, when a
 * transaction starts, the rule file and its map files are stat()ed and,
 * when they changed, a new set is built: both on libuv's thread pool while
 * the first hook waits (it answers SLUICE_ASYNC), never on the loop; the
 * new set is swapped in on the loop thread and that transaction already
 * uses it. A file with errors is logged and refused; the old set stays
 * until the files change again. A transaction keeps the set it started
 * with (struct rw_tx holds a reference).
 *
 * Ownership: struct rw_inst is the instance data, freed by shutdown(); it
 * owns the watch (which holds the current set) and the regex scratch.
 * struct rw_tx is the transaction data, freed by the host through
 * rw__tx_free.
 */
#include "rw_eval.h"
#include "rw_hdr.h"
#include "rw_rules.h"
#include "rw_srs.h"
#include "pstr.h"
#include "watch.h"

#include <sluice/plugin.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RW_DEFAULT_RULES "/etc/sluice/rules/rewrite.rules"
#define RW_WATCH_MS 1000

struct rw_conf {
    const char *rules;
    bool watch;
    unsigned match_limit;
    unsigned srs_max_age;
    const char *srs_secret;
    const char *srs_secret_file;
    int srs_separator; /* index in rw__separators */
};

static const char *const rw__separators[] = {"=", "+", "-", NULL};

static const struct sluice_config_key rw__keys[] = {
    {.name = "rules",
     .type = SLUICE_CONFIG_PATH,
     .def = RW_DEFAULT_RULES,
     .offset = offsetof(struct rw_conf, rules)},
    {.name = "watch_rules",
     .type = SLUICE_CONFIG_BOOL,
     .def = "yes",
     .offset = offsetof(struct rw_conf, watch)},
    {.name = "match_limit",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "100000",
     .min = 100,
     .max = 100000000,
     .offset = offsetof(struct rw_conf, match_limit)},
    {.name = "srs_max_age",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "21",
     .min = 1,
     .max = 1000,
     .offset = offsetof(struct rw_conf, srs_max_age)},
    {.name = "srs_secret",
     .type = SLUICE_CONFIG_STRING,
     .offset = offsetof(struct rw_conf, srs_secret)},
    {.name = "srs_secret_file",
     .type = SLUICE_CONFIG_PATH,
     .offset = offsetof(struct rw_conf, srs_secret_file)},
    {.name = "srs_separator",
     .type = SLUICE_CONFIG_ENUM,
     .def = "=",
     .choices = rw__separators,
     .offset = offsetof(struct rw_conf, srs_separator)},
    {.name = NULL},
};

/* What a rule-set build needs; owned by the watch (a build may finish on
 * the pool after the instance is gone). */
struct rw_source {
    char *path;
    bool have_secret;
};

struct rw_inst {
    sluice_instance *inst;
    struct rw_conf conf;
    struct rw_srs *srs; /* owned, NULL when no secret is set */

    struct watch *watch; /* holds the current set */
    struct rw_scratch *sc;

    sluice_counter *c_rewrites, *c_refused, *c_reloads, *c_limited;
};

SLUICE_API_DECLARE;

/* ---- config ------------------------------------------------------------- */

/* The SRS secrets: srs_secret (one), or srs_secret_file (one per line,
 * the format of postsrsd's secret file, so both can share it). */
static int rw__secret(struct rw_inst *ri)
{
    const char *s = ri->conf.srs_secret;
    const char *f = ri->conf.srs_secret_file;
    if (s && f) {
        sluice_api->config_error(ri->inst, "srs_secret_file",
                                 "give srs_secret or srs_secret_file, not both");
        return -1;
    }
    if (!s && !f)
        return 0;
    /* an unusable srs_separator was reported by the key loader already */
    int sep =
        ri->conf.srs_separator >= 0 && ri->conf.srs_separator < 3 ? ri->conf.srs_separator : 0;
    struct rw_srs *k = rw_srs_new(rw__separators[sep][0], ri->conf.srs_max_age);
    if (s) {
        const char *why = NULL;
        if (rw_srs_add_secret(k, s, strlen(s), &why) != 0) {
            sluice_api->config_error(ri->inst, "srs_secret", "%s", why);
            rw_srs_free(k);
            return -1;
        }
        ri->srs = k;
        return 0;
    }
    FILE *fp = fopen(f, "r");
    if (!fp) {
        sluice_api->config_error(ri->inst, "srs_secret_file", "cannot read %s: %s", f,
                                 strerror(errno));
        rw_srs_free(k);
        return -1;
    }
    /* One octet more than allowed, to tell a file that is too large. */
    char *buf = pstr_xmalloc(RW_SRS_FILE_MAX + 1);
    size_t n = fread(buf, 1, RW_SRS_FILE_MAX + 1, fp);
    int rerr = ferror(fp);
    fclose(fp);
    struct pstr err = PSTR_INIT;
    int rc = -1;
    if (rerr)
        pstr_printf(&err, "%s: read error\n", f);
    else
        rc = rw_srs_parse_secrets(k, buf, n, f, &err);
    memset(buf, 0, n);
    free(buf);
    if (rc < 0) {
        /* every problem, one FILE:LINE: message each */
        const char *e = pstr_cstr(&err);
        while (*e) {
            const char *nl = strchr(e, '\n');
            int len = nl ? (int)(nl - e) : (int)strlen(e);
            sluice_api->config_error(ri->inst, "srs_secret_file", "%.*s", len, e);
            e += len + (nl ? 1 : 0);
        }
        pstr_free(&err);
        rw_srs_free(k);
        return -1;
    }
    pstr_free(&err);
    ri->srs = k;
    return 0;
}

/* ---- rule sets (struct watch_ops) ---------------------------------------------- */

/* Any thread: only the source is used; errors become lines. */
static void *rw__build(const void *arg, struct pstr *errors)
{
    const struct rw_source *src = arg;
    struct rw_errors errs = RW_ERRORS_INIT;
    struct rw_ruleset *rs = rw_rules_load(src->path, &errs);
    for (size_t i = 0; i < errs.n; i++) {
        if (errs.v[i].line)
            pstr_printf(errors, "%s:%u: %s\n", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
        else
            pstr_printf(errors, "%s: %s\n", errs.v[i].file, errs.v[i].msg);
    }
    rw_errors_free(&errs);
    if (rs && rs->uses_srs && !src->have_secret) {
        pstr_printf(errors, "%s: the rules use SRS but srs_secret / srs_secret_file is not set\n",
                    src->path);
        rw_ruleset_unref(rs);
        return NULL;
    }
    return rs;
}

static const char *rw__set_path(const void *obj, size_t i)
{
    const struct rw_ruleset *rs = obj;
    return i < rs->nfiles ? rs->files[i] : NULL;
}

static void rw__set_ref(void *obj)
{
    rw_ruleset_ref(obj);
}

static void rw__set_unref(void *obj)
{
    rw_ruleset_unref(obj);
}

/* Log each error line; the number of lines. */
static size_t rw__log_errors(struct rw_inst *ri, const char *errors)
{
    size_t n = 0;
    while (*errors) {
        const char *nl = strchr(errors, '\n');
        int len = nl ? (int)(nl - errors) : (int)strlen(errors);
        sluice_api->log(ri->inst, SLUICE_LOG_ERROR, "%.*s", len, errors);
        n++;
        errors += len + (nl ? 1 : 0);
    }
    return n;
}

/* The watch rebuilt the set (loop thread). */
static void rw__reloaded(void *owner, const void *obj, const char *errors)
{
    struct rw_inst *ri = owner;
    size_t nerr = rw__log_errors(ri, errors);
    const struct rw_ruleset *rs = obj;
    if (rs)
        sluice_api->log(ri->inst, SLUICE_LOG_INFO, "rules reloaded from %s: %zu rules",
                        ri->conf.rules, rs->nrules);
    else
        sluice_api->log(ri->inst, SLUICE_LOG_ERROR,
                        "rule file %s has %zu error%s; keeping the previous rules", ri->conf.rules,
                        nerr, nerr == 1 ? "" : "s");
    if (ri->c_reloads)
        sluice_api->counter_add(ri->c_reloads, rs ? "ok" : "failed", 1);
}

static const struct watch_ops rw__watch_ops = {rw__build, rw__set_path, rw__set_ref, rw__set_unref,
                                               rw__reloaded};

static void rw__source_free(void *p)
{
    struct rw_source *src = p;
    free(src->path);
    free(src);
}

/* ---- instance ------------------------------------------------------------------ */

static void rw_shutdown(void *data)
{
    struct rw_inst *ri = data;
    if (!ri)
        return;
    watch_free(ri->watch);
    rw_scratch_free(ri->sc);
    rw_srs_free(ri->srs);
    free(ri);
}

static int rw_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, header_fold)) {
        api->config_error(inst, NULL, "this plugin needs a newer sluice (typed keys, header_fold)");
        return -1;
    }
    struct rw_inst *ri = pstr_xcalloc(1, sizeof(*ri));
    ri->inst = inst;
    rw_hdr_global_init();

    /* Every problem at once: the keys, then the rule file (when its path
     * is usable), so `sluice --check` shows them all. */
    int bad = SLUICE_CONFIG_LOAD(api, inst, rw__keys, &ri->conf, SLUICE_CONFIG_STRICT) != 0;
    if (rw__secret(ri) != 0)
        bad = 1;
    struct rw_ruleset *rs = NULL;
    struct rw_source *src = pstr_xcalloc(1, sizeof *src);
    if (ri->conf.rules) {
        src->path = pstr_xstrdup(ri->conf.rules);
        src->have_secret = ri->srs != NULL;
        struct pstr errors = PSTR_INIT;
        rs = rw__build(src, &errors);
        size_t nerr = rw__log_errors(ri, pstr_cstr(&errors));
        pstr_free(&errors);
        if (!rs)
            api->config_error(inst, "rules", "rule file %s has %zu error%s", ri->conf.rules, nerr,
                              nerr == 1 ? "" : "s");
    }
    if (bad || !rs) {
        rw_ruleset_unref(rs);
        rw__source_free(src);
        rw_shutdown(ri);
        return -1;
    }
    ri->watch = watch_new(&rw__watch_ops, src, rw__source_free, ri, rs, RW_WATCH_MS);
    if (!api->checking(inst)) {
        ri->sc = rw_scratch_new(ri->conf.match_limit);
        if (!ri->sc) {
            api->config_error(inst, NULL, "out of memory");
            rw_shutdown(ri);
            return -1;
        }
        ri->c_rewrites = api->counter_new(inst, "rewrites", "Rewrites made, by what was rewritten", "what", 4);
        ri->c_refused = api->counter_new(inst, "refused",
                                         "Transactions refused: rewrite into an invalid address, bad SRS bounce",
                                         "reason", 4);
        ri->c_reloads = api->counter_new(inst, "reloads", "Rule file reloads on change", "result", 2);
        ri->c_limited = api->counter_new(inst, "match_limits", "Regex runs stopped by match_limit", NULL, 0);
        api->log(inst, SLUICE_LOG_INFO, "%zu rewrite rules from %s%s", rs->nrules, ri->conf.rules,
                 rs->jit ? "" : " (some without JIT)");
    }
    *data = ri;
    return 0;
}

/* ---- hooks ------------------------------------------------------------------------ */

static void rw__tx_free(void *p)
{
    rw_tx_free(p);
}

/* The transaction's state, on the rule set current when it starts. */
static struct rw_tx *rw__tx_new(struct rw_inst *ri, sluice_ctx *ctx)
{
    struct rw_ruleset *rs = watch_get(ri->watch);
    struct rw_tx *tx = rw_tx_new(rs);
    rw_ruleset_unref(rs);
    sluice_api->tx_data_set(ctx, tx, rw__tx_free);
    return tx;
}

/* What a hook does once the transaction has its rule set. */
typedef int (*rw_step_fn)(sluice_ctx *ctx, struct rw_inst *ri, struct rw_tx *tx);

/* A hook waiting for a rule-file check on the pool. */
struct rw_wait {
    sluice_ctx *ctx;
    struct rw_inst *ri;
    rw_step_fn step;
};

/* The check is done and the new set (if any) swapped in: loop thread. */
static void rw__resume(void *ud, int stopped)
{
    struct rw_wait *wt = ud;
    int v = SLUICE_ERROR; /* the instance is gone: the host gave up on us */
    if (!stopped)
        v = wt->step(wt->ctx, wt->ri, rw__tx_new(wt->ri, wt->ctx));
    sluice_api->complete(wt->ctx, v);
    free(wt);
}

/*
 * Every hook goes through here. The first hook of a transaction checks the
 * rule files when a check is due (at most once a second): the stat() calls
 * and any rebuild run on the thread pool while this hook waits (SLUICE_ASYNC),
 * so the transaction that notices a change is the first to use the new set
 * and the loop never blocks on the files.
 */
static int rw__run(sluice_ctx *ctx, rw_step_fn step)
{
    struct rw_inst *ri = sluice_api->instance_data(ctx);
    struct rw_tx *tx = sluice_api->tx_data_get(ctx);
    if (!tx) {
        if (ri->conf.watch) {
            struct rw_wait *wt = pstr_xcalloc(1, sizeof *wt);
            *wt = (struct rw_wait){ctx, ri, step};
            if (watch_check_async(ri->watch, sluice_api->event_loop(ctx), rw__resume, wt))
                return SLUICE_ASYNC;
            free(wt);
        }
        tx = rw__tx_new(ri, ctx);
    }
    return step(ctx, ri, tx);
}

static int rw__has_symbol(void *ud, const char *name)
{
    return sluice_api->has_symbol(ud, name);
}

static double rw__score(void *ud)
{
    return sluice_api->score(ud);
}

static void rw__env(struct rw_inst *ri, sluice_ctx *ctx, struct rw_env *env)
{
    const struct sluice_host_api *api = sluice_api;
    const char *auth = api->auth_user(ctx);
    *env = (struct rw_env){
        .sender = api->sender(ctx),
        .client_ip = api->client_addr(ctx),
        .authenticated = auth && *auth,
        .has_symbol = rw__has_symbol,
        .score = rw__score,
        .ud = ctx,
        .now = time(NULL),
        .srs = ri->srs,
    };
}

static void rw__count_limits(struct rw_inst *ri, uint64_t before)
{
    uint64_t n = rw_scratch_limited(ri->sc) - before;
    if (n && ri->c_limited)
        sluice_api->counter_add(ri->c_limited, NULL, n);
}

static int rw__tempfail(struct rw_inst *ri, sluice_ctx *ctx, const char *what, const char *from, const char *to,
                        unsigned line, const char *why)
{
    sluice_api->log_ctx(ctx, SLUICE_LOG_WARN, "rewrite %s <%s> -> <%s> refused: %s (%s:%u)", what,
                        from, to, why, ri->conf.rules, line);
    sluice_api->set_reply(ctx, 451, "4.3.0", "Address rewriting failed, please try again later");
    if (ri->c_refused)
        sluice_api->counter_add(ri->c_refused, "invalid_address", 1);
    return SLUICE_TEMPFAIL;
}

static int rw__mail(sluice_ctx *ctx, struct rw_inst *ri, struct rw_tx *tx)
{
    const struct sluice_host_api *api = sluice_api;
    struct rw_env env;
    rw__env(ri, ctx, &env);
    char *out = NULL;
    unsigned line = 0;
    uint64_t lim = rw_scratch_limited(ri->sc);
    int rc = rw_eval_sender(tx, &env, ri->sc, &out, &line);
    rw__count_limits(ri, lim);
    int verdict = SLUICE_CONTINUE;
    if (rc == RW_INVALID) {
        verdict = rw__tempfail(ri, ctx, "sender", env.sender, out, line, "not a valid address");
    } else if (rc == RW_CHANGED) {
        int e = api->sender_change(ctx, out, api->sender_params(ctx));
        if (e < 0) {
            verdict = rw__tempfail(ri, ctx, "sender", env.sender, out, line, strerror(-e));
        } else {
            api->log_ctx(ctx, SLUICE_LOG_INFO, "rewrite sender <%s> -> <%s> (%s:%u)", env.sender,
                         out, ri->conf.rules, line);
            if (ri->c_rewrites)
                api->counter_add(ri->c_rewrites, "sender", 1);
        }
    }
    free(out);
    return verdict;
}

static int rw__rcpt(sluice_ctx *ctx, struct rw_inst *ri, struct rw_tx *tx)
{
    const struct sluice_host_api *api = sluice_api;
    struct rw_env env;
    rw__env(ri, ctx, &env);
    env.rcpt = api->current_rcpt(ctx);
    if (!env.rcpt)
        return SLUICE_CONTINUE;
    char *out = NULL;
    unsigned line = 0;
    uint64_t lim = rw_scratch_limited(ri->sc);
    int rc = rw_eval_rcpt(tx, &env, ri->sc, &out, &line);
    rw__count_limits(ri, lim);
    int verdict = SLUICE_CONTINUE;
    if (rc == RW_SRS_BAD) {
        api->log_ctx(ctx, SLUICE_LOG_WARN,
                     "rewrite recipient <%s> refused: forged, damaged or expired SRS address "
                     "(%s:%u)",
                     env.rcpt, ri->conf.rules, line);
        api->set_reply(ctx, 550, "5.1.1", "Invalid or expired SRS bounce address");
        if (ri->c_refused)
            api->counter_add(ri->c_refused, "bad_srs", 1);
        verdict = SLUICE_REJECT;
    } else if (rc == RW_INVALID) {
        verdict = rw__tempfail(ri, ctx, "recipient", env.rcpt, out, line, "not a valid address");
    } else if (rc == RW_CHANGED) {
        char *old = pstr_xstrdup(env.rcpt);
        int e = api->rcpt_remove(ctx, old);
        if (e == 0)
            e = api->rcpt_add(ctx, out, NULL);
        if (e < 0) {
            verdict = rw__tempfail(ri, ctx, "recipient", old, out, line, strerror(-e));
        } else {
            api->log_ctx(ctx, SLUICE_LOG_INFO, "rewrite recipient <%s> -> <%s> (%s:%u)", old, out,
                         ri->conf.rules, line);
            if (ri->c_rewrites)
                api->counter_add(ri->c_rewrites, "recipient", 1);
        }
        free(old);
    }
    free(out);
    return verdict;
}

static int rw__data(sluice_ctx *ctx, struct rw_inst *ri, struct rw_tx *tx)
{
    const struct sluice_host_api *api = sluice_api;
    struct rw_env env;
    rw__env(ri, ctx, &env);
    size_t nr = api->rcpt_count(ctx);
    const char **rcpts = pstr_xcalloc(nr + 1, sizeof(char *));
    for (size_t i = 0; i < nr; i++)
        rcpts[i] = api->rcpt(ctx, i);
    env.rcpts = rcpts;
    env.nrcpts = nr;

    struct rw_hdrs h = RW_HDRS_INIT(sluice_api->header_fold);
    size_t nh = api->header_count(ctx);
    for (size_t i = 0; i < nh; i++) {
        struct sluice_header f = {.size = sizeof(f)};
        if (api->header_at(ctx, i, &f) == 0)
            rw_hdrs_push(&h, f.name, f.name_len, f.value, f.value_len);
    }
    struct pstr warn = PSTR_INIT;
    uint64_t lim = rw_scratch_limited(ri->sc);
    int fired = rw_eval_headers(tx, &env, ri->sc, &h, &warn);
    rw__count_limits(ri, lim);
    if (warn.len)
        api->log_ctx(ctx, SLUICE_LOG_WARN, "rewrite: %s", pstr_cstr(&warn));
    if (fired && rw_hdrs_edited(&h)) {
        struct rw_edit *e = NULL;
        size_t ne = rw_hdrs_edits(&h, &e);
        size_t failed = 0;
        for (size_t i = 0; i < ne; i++) {
            int rc = 0;
            switch (e[i].kind) {
            case RW_EDIT_CHANGE:
                rc = api->header_change(ctx, e[i].name, e[i].nth, e[i].value);
                break;
            case RW_EDIT_DELETE:
                rc = api->header_delete(ctx, e[i].name, e[i].nth);
                break;
            case RW_EDIT_ADD:
                rc = api->header_add(ctx, e[i].name, e[i].value);
                break;
            }
            if (rc < 0) {
                failed++;
                api->log_ctx(ctx, SLUICE_LOG_WARN, "rewrite: header edit of %s failed: %s", e[i].name,
                             strerror(-rc));
            }
        }
        api->log_ctx(ctx, SLUICE_LOG_INFO, "rewrite headers: %d rule%s fired, %zu edit%s", fired,
                     fired == 1 ? "" : "s", ne - failed, ne - failed == 1 ? "" : "s");
        if (ri->c_rewrites)
            api->counter_add(ri->c_rewrites, "header", ne - failed);
        free(e);
    }
    pstr_free(&warn);
    rw_hdrs_free(&h);
    free(rcpts);
    return SLUICE_CONTINUE;
}

static int rw_on_mail(sluice_ctx *ctx)
{
    return rw__run(ctx, rw__mail);
}

static int rw_on_rcpt(sluice_ctx *ctx)
{
    return rw__run(ctx, rw__rcpt);
}

static int rw_on_data(sluice_ctx *ctx)
{
    return rw__run(ctx, rw__data);
}

SLUICE_PLUGIN_DEFINE(.name = "rewrite", .version = "1.0",
                     .description = "header, subject and envelope address rewriting from a rule file",
                     .capabilities = SLUICE_CAP_HEADERS | SLUICE_CAP_SENDER | SLUICE_CAP_RECIPIENTS,
                     .blocking_phases = 0, .init = rw_init, .shutdown = rw_shutdown, .on_mail = rw_on_mail,
                     .on_rcpt = rw_on_rcpt, .on_data = rw_on_data);
