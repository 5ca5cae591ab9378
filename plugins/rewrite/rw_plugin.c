/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rewrite: the sluice plugin around the rewrite engine.
 *
 * init() reads the keys and loads the rule file; every rule-file error is
 * logged as RULEFILE:LINE: message (map files as MAPFILE:LINE) and the
 * instance fails, so `sluice --check` and a SIGHUP with a broken file
 * refuse it (on SIGHUP the host keeps the old instance).
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
 * Rule-file watch: at most once a second, when a transaction starts, the
 * rule file and its map files are stat()ed; when they changed a new set
 * is built and swapped in. A file with errors is logged and refused; the
 * old set stays until the files change again. A transaction keeps the set
 * it started with (struct rw_tx holds a reference).
 *
 * Ownership: struct rw_inst is the instance data, freed by shutdown(); it
 * owns the current set's reference and the regex scratch. struct rw_tx is
 * the transaction data, freed by the host through rw_plugin__tx_free.
 */
#include "rw_eval.h"
#include "rw_hdr.h"
#include "rw_rules.h"
#include "pstr.h"

#include <sluice/plugin.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define RW_DEFAULT_RULES "/etc/sluice/rules/rewrite.rules"

struct rw_inst {
    const struct sluice_host_api *api;
    sluice_instance *inst;
    char *rules_path;
    int watch;
    uint32_t match_limit;
    char *srs_secret; /* owned, NULL when none */
    size_t srs_secret_len;
    unsigned srs_max_age;

    struct rw_ruleset *rs; /* loop thread only */
    uint64_t sig;
    time_t last_check;
    struct rw_scratch *sc;

    sluice_counter *c_rewrites, *c_refused, *c_reloads, *c_limited;
};

static const struct sluice_host_api *rw__api;

/* ---- config ------------------------------------------------------------- */

static int rw__bool(struct rw_inst *ri, const char *key, int def, int *out)
{
    const char *v = ri->api->config_get(ri->inst, key);
    *out = def;
    if (!v)
        return 0;
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcasecmp(v, "on") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcasecmp(v, "off") || !strcmp(v, "0"))
        *out = 0;
    else {
        ri->api->config_error(ri->inst, key, "want yes or no, got '%s'", v);
        return -1;
    }
    return 0;
}

static int rw__uint(struct rw_inst *ri, const char *key, unsigned long def, unsigned long min, unsigned long max,
                    unsigned long *out)
{
    const char *v = ri->api->config_get(ri->inst, key);
    *out = def;
    if (!v)
        return 0;
    char *e;
    errno = 0;
    unsigned long n = strtoul(v, &e, 10);
    if (e == v || *e || errno || *v == '-' || n < min || n > max) {
        ri->api->config_error(ri->inst, key, "want a number from %lu to %lu, got '%s'", min, max, v);
        return -1;
    }
    *out = n;
    return 0;
}

static int rw__secret(struct rw_inst *ri)
{
    const char *s = ri->api->config_get(ri->inst, "srs_secret");
    const char *f = ri->api->config_get(ri->inst, "srs_secret_file");
    if (s && f) {
        ri->api->config_error(ri->inst, "srs_secret_file", "give srs_secret or srs_secret_file, not both");
        return -1;
    }
    if (s) {
        if (strlen(s) < 16) {
            ri->api->config_error(ri->inst, "srs_secret", "too short (at least 16 characters)");
            return -1;
        }
        ri->srs_secret = pstr_xstrdup(s);
    } else if (f) {
        FILE *fp = fopen(f, "r");
        if (!fp) {
            ri->api->config_error(ri->inst, "srs_secret_file", "cannot read %s: %s", f, strerror(errno));
            return -1;
        }
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = 0;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
            buf[--n] = 0;
        if (n < 16) {
            ri->api->config_error(ri->inst, "srs_secret_file", "%s: secret too short (at least 16 characters)", f);
            return -1;
        }
        ri->srs_secret = pstr_xstrdup(buf);
    }
    ri->srs_secret_len = ri->srs_secret ? strlen(ri->srs_secret) : 0;
    return 0;
}

/* ---- rule sets --------------------------------------------------------------- */

static uint64_t rw__sig(const struct rw_ruleset *rs)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < rs->nfiles; i++) {
        struct stat st;
        uint64_t v[5] = {0, 0, 0, 0, 0};
        if (stat(rs->files[i], &st) == 0) {
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

static struct rw_ruleset *rw__load(struct rw_inst *ri, size_t *nerr)
{
    struct rw_errors errs = RW_ERRORS_INIT;
    struct rw_ruleset *rs = rw_rules_load(ri->rules_path, &errs);
    *nerr = errs.n;
    for (size_t i = 0; i < errs.n; i++) {
        if (errs.v[i].line)
            ri->api->log(ri->inst, SLUICE_LOG_ERROR, "%s:%u: %s", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
        else
            ri->api->log(ri->inst, SLUICE_LOG_ERROR, "%s: %s", errs.v[i].file, errs.v[i].msg);
    }
    rw_errors_free(&errs);
    if (rs && rs->uses_srs && !ri->srs_secret) {
        ri->api->log(ri->inst, SLUICE_LOG_ERROR, "%s: the rules use SRS but srs_secret / srs_secret_file is not set",
                     ri->rules_path);
        rw_ruleset_unref(rs);
        *nerr = 1;
        return NULL;
    }
    return rs;
}

/* The set a new transaction uses, reloading first when the files changed. */
static struct rw_ruleset *rw__current(struct rw_inst *ri)
{
    time_t now = time(NULL);
    if (ri->watch && now != ri->last_check) {
        ri->last_check = now;
        uint64_t sig = rw__sig(ri->rs);
        if (sig != ri->sig) {
            size_t nerr = 0;
            struct rw_ruleset *rs = rw__load(ri, &nerr);
            if (rs) {
                rw_ruleset_unref(ri->rs);
                ri->rs = rs;
                ri->sig = rw__sig(rs);
                ri->api->log(ri->inst, SLUICE_LOG_INFO, "rules reloaded from %s: %zu rules", ri->rules_path,
                             rs->nrules);
            } else {
                ri->sig = sig; /* try again when the files change again */
                ri->api->log(ri->inst, SLUICE_LOG_ERROR, "rule file %s has %zu error%s; keeping the previous rules",
                             ri->rules_path, nerr, nerr == 1 ? "" : "s");
            }
            if (ri->c_reloads)
                ri->api->counter_add(ri->c_reloads, rs ? "ok" : "failed", 1);
        }
    }
    return ri->rs;
}

/* ---- instance ------------------------------------------------------------------ */

static void rw_shutdown(void *data)
{
    struct rw_inst *ri = data;
    if (!ri)
        return;
    rw_ruleset_unref(ri->rs);
    rw_scratch_free(ri->sc);
    free(ri->rules_path);
    if (ri->srs_secret)
        memset(ri->srs_secret, 0, ri->srs_secret_len);
    free(ri->srs_secret);
    free(ri);
}

static int rw_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    struct rw_inst *ri = pstr_xcalloc(1, sizeof(*ri));
    rw__api = api;
    ri->api = api;
    ri->inst = inst;
    rw_hdr_global_init();

    int bad = 0;
    const char *rules = api->config_get(inst, "rules");
    ri->rules_path = pstr_xstrdup(rules && *rules ? rules : RW_DEFAULT_RULES);
    bad |= rw__bool(ri, "watch_rules", 1, &ri->watch);
    unsigned long v;
    bad |= rw__uint(ri, "match_limit", 100000, 100, 100000000, &v);
    ri->match_limit = (uint32_t)v;
    bad |= rw__uint(ri, "srs_max_age", 21, 1, 1000, &v);
    ri->srs_max_age = (unsigned)v;
    bad |= rw__secret(ri);

    size_t nerr = 0;
    ri->rs = rw__load(ri, &nerr);
    if (!ri->rs) {
        api->config_error(inst, "rules", "rule file %s has %zu error%s", ri->rules_path, nerr, nerr == 1 ? "" : "s");
        bad = 1;
    }
    if (bad) {
        rw_shutdown(ri);
        return -1;
    }
    ri->sig = rw__sig(ri->rs);
    ri->last_check = time(NULL);
    if (!api->checking(inst)) {
        ri->sc = rw_scratch_new(ri->match_limit);
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
        api->log(inst, SLUICE_LOG_INFO, "%zu rewrite rules from %s%s", ri->rs->nrules, ri->rules_path,
                 ri->rs->jit ? "" : " (some without JIT)");
    }
    *data = ri;
    return 0;
}

/* ---- hooks ------------------------------------------------------------------------ */

static void rw__tx_free(void *p)
{
    rw_tx_free(p);
}

static struct rw_tx *rw__tx(struct rw_inst *ri, sluice_ctx *ctx)
{
    struct rw_tx *tx = rw__api->tx_data_get(ctx);
    if (!tx) {
        tx = rw_tx_new(rw__current(ri));
        rw__api->tx_data_set(ctx, tx, rw__tx_free);
    }
    return tx;
}

static int rw__has_symbol(void *ud, const char *name)
{
    return rw__api->has_symbol(ud, name);
}

static double rw__score(void *ud)
{
    return rw__api->score(ud);
}

static void rw__env(struct rw_inst *ri, sluice_ctx *ctx, struct rw_env *env)
{
    const struct sluice_host_api *api = ri->api;
    const char *auth = api->auth_user(ctx);
    *env = (struct rw_env){
        .sender = api->sender(ctx),
        .client_ip = api->client_addr(ctx),
        .authenticated = auth && *auth,
        .has_symbol = rw__has_symbol,
        .score = rw__score,
        .ud = ctx,
        .now = time(NULL),
        .srs_secret = ri->srs_secret,
        .srs_secret_len = ri->srs_secret_len,
        .srs_max_age = ri->srs_max_age,
    };
}

static void rw__count_limits(struct rw_inst *ri, uint64_t before)
{
    uint64_t n = rw_scratch_limited(ri->sc) - before;
    if (n && ri->c_limited)
        ri->api->counter_add(ri->c_limited, NULL, n);
}

static int rw__tempfail(struct rw_inst *ri, sluice_ctx *ctx, const char *what, const char *from, const char *to,
                        unsigned line, const char *why)
{
    ri->api->log_ctx(ctx, SLUICE_LOG_WARN, "rewrite %s <%s> -> <%s> refused: %s (%s:%u)", what, from, to, why,
                     ri->rules_path, line);
    ri->api->set_reply(ctx, 451, "4.3.0", "Address rewriting failed, please try again later");
    if (ri->c_refused)
        ri->api->counter_add(ri->c_refused, "invalid_address", 1);
    return SLUICE_TEMPFAIL;
}

static int rw_on_mail(sluice_ctx *ctx)
{
    const struct sluice_host_api *api = rw__api;
    struct rw_inst *ri = api->instance_data(ctx);
    struct rw_tx *tx = rw__tx(ri, ctx);
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
            api->log_ctx(ctx, SLUICE_LOG_INFO, "rewrite sender <%s> -> <%s> (%s:%u)", env.sender, out,
                         ri->rules_path, line);
            if (ri->c_rewrites)
                api->counter_add(ri->c_rewrites, "sender", 1);
        }
    }
    free(out);
    return verdict;
}

static int rw_on_rcpt(sluice_ctx *ctx)
{
    const struct sluice_host_api *api = rw__api;
    struct rw_inst *ri = api->instance_data(ctx);
    struct rw_tx *tx = rw__tx(ri, ctx);
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
        api->log_ctx(ctx, SLUICE_LOG_WARN, "rewrite recipient <%s> refused: forged, damaged or expired SRS address "
                     "(%s:%u)", env.rcpt, ri->rules_path, line);
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
            api->log_ctx(ctx, SLUICE_LOG_INFO, "rewrite recipient <%s> -> <%s> (%s:%u)", old, out, ri->rules_path,
                         line);
            if (ri->c_rewrites)
                api->counter_add(ri->c_rewrites, "recipient", 1);
        }
        free(old);
    }
    free(out);
    return verdict;
}

static int rw_on_data(sluice_ctx *ctx)
{
    const struct sluice_host_api *api = rw__api;
    struct rw_inst *ri = api->instance_data(ctx);
    struct rw_tx *tx = rw__tx(ri, ctx);
    struct rw_env env;
    rw__env(ri, ctx, &env);
    size_t nr = api->rcpt_count(ctx);
    const char **rcpts = pstr_xcalloc(nr + 1, sizeof(char *));
    for (size_t i = 0; i < nr; i++)
        rcpts[i] = api->rcpt(ctx, i);
    env.rcpts = rcpts;
    env.nrcpts = nr;

    struct rw_hdrs h = RW_HDRS_INIT;
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

SLUICE_PLUGIN_DEFINE(.name = "rewrite", .version = "1.0",
                     .description = "header, subject and envelope address rewriting from a rule file",
                     .capabilities = SLUICE_CAP_HEADERS | SLUICE_CAP_SENDER | SLUICE_CAP_RECIPIENTS,
                     .blocking_phases = 0, .init = rw_init, .shutdown = rw_shutdown, .on_mail = rw_on_mail,
                     .on_rcpt = rw_on_rcpt, .on_data = rw_on_data);
