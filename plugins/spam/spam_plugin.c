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
 * Keys: a typed key table (api->config_load); the score thresholds, a
 * number or "off", are read as text and parsed here.
 *
 * Rule-file watch (plugins/common/watch): at most once a second, at the
 * start of a DATA hook (on its pool thread, never the loop), the files of
 * the current set are stat()ed; when they changed, that thread builds a
 * new set and swaps it in (evaluations in flight keep their reference to
 * the old set). A file with errors is logged and refused; the old set
 * stays until the files change again.
 *
 * Bayes in the shared state (bayes_store = state): the DATA hook runs on a
 * pool thread, and state_call is for the loop thread, and a blocking hook
 * cannot answer SLUICE_ASYNC. So the pool thread computes everything else
 * first, hands the message's tokens to the loop (a uv_async made by the
 * first of its loop hooks to run, spam__doorbell) and waits at most bayes_timeout for the
 * one MGET of its tokens; on an error or past the deadline it scores
 * without Bayes (symbol BAYES_UNAVAILABLE) and the late answer is dropped.
 * Autolearn hands a MINCR to the loop and does not wait.
 *
 * Ownership: struct spam_inst is the instance data, freed by shutdown();
 * it owns the watch (which holds the current rule set) and the scratch
 * pool. A struct spam_job (one lookup or one learn) is shared by the pool
 * thread that made it and the loop under si->mu, refcounted; the loop
 * keeps the jobs whose state call is out in si->inflight, and shutdown()
 * (on the loop, after the last transaction) cancels them.
 */
#include "spam_bayes.h"
#include "spam_bayes_db.h"
#include "spam_bayes_kv.h"
#include "spam_eval.h"
#include "spam_msg.h"
#include "spam_prefilter.h"
#include "spam_rules.h"
#include "pstr.h"
#include "watch.h"

#include <sluice/plugin.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <time.h>
#include <uv.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SPAM_DEFAULT_RULES "/etc/sluice/rules/spam.rules"
#define SPAM_MAX_STATUS_TESTS 60
#define SPAM_WATCH_MS 1000

struct spam_conf {
    const char *rules;
    const char *header_threshold, *tag_threshold, *quarantine_threshold, *reject_threshold;
    const char *subject_tag;
    const char *reject_text;
    uint64_t max_scan;
    unsigned match_limit;
    unsigned rule_time_ms;
    unsigned msg_time_ms;
    bool watch;
    bool strip_headers;
    const char *bayes_db;
    unsigned bayes_min_learned;
    const char *bayes_autolearn_spam, *bayes_autolearn_ham;
    int bayes_store; /* SPAM_STORE_* */
    unsigned bayes_timeout_ms;
    unsigned bayes_seen_days;
};

enum { SPAM_STORE_SQLITE = 0, SPAM_STORE_STATE };
static const char *const spam__stores[] = {"sqlite", "state", NULL};

#define SPAM_TEXT (SLUICE_CONFIG_PRINTABLE)
static const struct sluice_config_key spam__keys[] = {
    {.name = "rules",
     .type = SLUICE_CONFIG_PATH,
     .def = SPAM_DEFAULT_RULES,
     .offset = offsetof(struct spam_conf, rules)},
    {.name = "header_threshold",
     .type = SLUICE_CONFIG_STRING,
     .def = "4.0",
     .offset = offsetof(struct spam_conf, header_threshold)},
    {.name = "tag_threshold",
     .type = SLUICE_CONFIG_STRING,
     .def = "6.0",
     .offset = offsetof(struct spam_conf, tag_threshold)},
    {.name = "quarantine_threshold",
     .type = SLUICE_CONFIG_STRING,
     .def = "off",
     .offset = offsetof(struct spam_conf, quarantine_threshold)},
    {.name = "reject_threshold",
     .type = SLUICE_CONFIG_STRING,
     .def = "15.0",
     .offset = offsetof(struct spam_conf, reject_threshold)},
    {.name = "subject_tag",
     .type = SLUICE_CONFIG_STRING,
     .def = "[SPAM]",
     .max = 200,
     .flags = SPAM_TEXT | SLUICE_CONFIG_KEEP_EMPTY,
     .offset = offsetof(struct spam_conf, subject_tag)},
    {.name = "reject_text",
     .type = SLUICE_CONFIG_STRING,
     .def = "Message rejected as spam",
     .max = 200,
     .flags = SPAM_TEXT | SLUICE_CONFIG_KEEP_EMPTY,
     .offset = offsetof(struct spam_conf, reject_text)},
    {.name = "max_scan_size",
     .type = SLUICE_CONFIG_SIZE,
     .def = "256k",
     .min = 1024,
     .max = 64ULL << 20,
     .offset = offsetof(struct spam_conf, max_scan)},
    /* Defaults of the three limits: the engine's (preset, .def NULL). */
    {.name = "match_limit",
     .type = SLUICE_CONFIG_UNSIGNED,
     .min = 100,
     .max = 100000000,
     .offset = offsetof(struct spam_conf, match_limit)},
    {.name = "rule_time_limit",
     .type = SLUICE_CONFIG_DURATION,
     .min = 1,
     .max = 60000,
     .offset = offsetof(struct spam_conf, rule_time_ms)},
    {.name = "scan_time_limit",
     .type = SLUICE_CONFIG_DURATION,
     .min = 1,
     .max = 600000,
     .offset = offsetof(struct spam_conf, msg_time_ms)},
    {.name = "watch_rules",
     .type = SLUICE_CONFIG_BOOL,
     .def = "yes",
     .offset = offsetof(struct spam_conf, watch)},
    {.name = "strip_headers",
     .type = SLUICE_CONFIG_BOOL,
     .def = "yes",
     .offset = offsetof(struct spam_conf, strip_headers)},
    {.name = "bayes_db",
     .type = SLUICE_CONFIG_PATH,
     .offset = offsetof(struct spam_conf, bayes_db)},
    {.name = "bayes_min_learned",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "200",
     .min = 1,
     .max = 100000000,
     .offset = offsetof(struct spam_conf, bayes_min_learned)},
    {.name = "bayes_autolearn_spam",
     .type = SLUICE_CONFIG_STRING,
     .def = "off",
     .offset = offsetof(struct spam_conf, bayes_autolearn_spam)},
    {.name = "bayes_autolearn_ham",
     .type = SLUICE_CONFIG_STRING,
     .def = "off",
     .offset = offsetof(struct spam_conf, bayes_autolearn_ham)},
    {.name = "bayes_store",
     .type = SLUICE_CONFIG_ENUM,
     .choices = spam__stores,
     .def = "sqlite",
     .offset = offsetof(struct spam_conf, bayes_store)},
    {.name = "bayes_timeout",
     .type = SLUICE_CONFIG_DURATION,
     .def = "500ms",
     .min = 10,
     .max = 10000,
     .offset = offsetof(struct spam_conf, bayes_timeout_ms)},
    /* bayes_store = state: how long a learned message's guard key
     * (bayes:seen:<id>) lives; one key per message kept forever would
     * grow the store without bound. */
    {.name = "bayes_seen_days",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "30",
     .min = 1,
     .max = 3650,
     .offset = offsetof(struct spam_conf, bayes_seen_days)},
    {.name = NULL},
};

struct spam_inst {
    sluice_instance *inst;
    struct spam_conf conf;
    /* thresholds; NAN = off */
    double header_threshold, tag_threshold, quarantine_threshold, reject_threshold;
    struct spam_eval_limits limits;
    struct spam_scratch_pool *pool;
    struct watch *watch;                  /* holds the current rule set */
    struct watch *bayes;                  /* holds the current Bayes snapshot (NULL: Bayes off) */
    double autolearn_spam, autolearn_ham; /* NAN = off */

    /* bayes_store = state */
    bool state;
    struct spam_async *async;  /* made by the first loop hook that runs; then read-only */
    pthread_mutex_t mu;        /* queue, jobs' refs and answers */
    pthread_cond_t cv;         /* a lookup was answered */
    struct spam_job *queue;    /* handed to the loop, not started (under mu) */
    struct spam_job *inflight; /* state call out (loop thread only) */

    sluice_counter *c_hits, *c_limits, *c_msgs, *c_score, *c_reloads, *c_learn, *c_bayes;
};

SLUICE_API_DECLARE;

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
static int spam__threshold(struct spam_inst *si, const char *key, const char *v, double *out)
{
    if (strcasecmp(v, "off") == 0 || strcasecmp(v, "none") == 0 || strcasecmp(v, "no") == 0) {
        *out = NAN;
        return 0;
    }
    if (spam__parse_double(v, out) < 0 || fabs(*out) > 1e6) {
        sluice_api->config_error(si->inst, key, "want a score (e.g. 5.0) or off, got '%s'", v);
        return -1;
    }
    return 0;
}

/* ---- rule sets (struct watch_ops) ------------------------------------------ */

/* Any thread; errors as "FILE:LINE: message" lines. */
static void *spam__build(const void *arg, struct pstr *errors)
{
    struct spam_rules_errors errs;
    struct spam_ruleset *rs = spam_rules_load(arg, &errs);
    for (size_t i = 0; i < errs.n; i++)
        pstr_printf(errors, "%s:%u: %s\n", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
    spam_rules_errors_free(&errs);
    return rs;
}

static const char *spam__set_path(const void *obj, size_t i)
{
    const struct spam_ruleset *rs = obj;
    return i < rs->nfiles ? rs->files[i].path : NULL;
}

static void spam__set_ref(void *obj)
{
    spam_ruleset_ref(obj);
}

static void spam__set_unref(void *obj)
{
    spam_ruleset_unref(obj);
}

/* Log each error line; the number of lines. */
static size_t spam__log_errors(struct spam_inst *si, const char *errors)
{
    size_t n = 0;
    while (*errors) {
        const char *nl = strchr(errors, '\n');
        int len = nl ? (int)(nl - errors) : (int)strlen(errors);
        sluice_api->log(si->inst, SLUICE_LOG_ERROR, "%.*s", len, errors);
        n++;
        errors += len + (nl ? 1 : 0);
    }
    return n;
}

/* The watch tried a new set (on the pool thread of a DATA hook). */
static void spam__reloaded(void *owner, const void *obj, const char *errors)
{
    struct spam_inst *si = owner;
    size_t nerr = spam__log_errors(si, errors);
    const struct spam_ruleset *nrs = obj;
    if (si->c_reloads)
        sluice_api->counter_add(si->c_reloads, nrs ? "ok" : "failed", 1);
    if (nrs)
        sluice_api->log(si->inst, nrs->pf_why[0] ? SLUICE_LOG_WARN : SLUICE_LOG_INFO,
                        "rules reloaded from %s: %zu rules%s%s%s", si->conf.rules, nrs->nrules,
                        nrs->pf ? "" : ", no prefilter", nrs->pf_why[0] ? ": " : "", nrs->pf_why);
    else
        sluice_api->log(si->inst, SLUICE_LOG_ERROR,
                        "rule file %s has %zu error%s; keeping the previous rules", si->conf.rules,
                        nerr, nerr == 1 ? "" : "s");
}

static const struct watch_ops spam__watch_ops = {spam__build, spam__set_path, spam__set_ref,
                                                 spam__set_unref, spam__reloaded};

/* ---- the Bayes snapshot (struct watch_ops) ------------------------------------ */

/* A snapshot of the store, shared by the hooks that classify with it. */
struct spam_bayes_held {
    atomic_int refs;
    struct spam_bayes_snap *snap;
    char *files[2]; /* the store and its write-ahead log: either changes */
};

static void *spam__bayes_load(const void *arg, struct pstr *errors)
{
    const char *path = arg;
    char err[512];
    struct spam_bayes_db *db = spam_bayes_db_open(path, false, true, err, sizeof err);
    if (!db) {
        pstr_printf(errors, "%s\n", err);
        return NULL;
    }
    struct spam_bayes_snap *snap = spam_bayes_db_snapshot(db);
    if (!snap)
        pstr_printf(errors, "%s: %s\n", path, spam_bayes_db_error(db));
    spam_bayes_db_close(db);
    if (!snap)
        return NULL;
    struct spam_bayes_held *h = pstr_xcalloc(1, sizeof *h);
    atomic_init(&h->refs, 1);
    h->snap = snap;
    h->files[0] = pstr_xstrdup(path);
    struct pstr wal = PSTR_INIT;
    pstr_printf(&wal, "%s-wal", path);
    h->files[1] = pstr_steal(&wal);
    return h;
}

static const char *spam__bayes_path(const void *obj, size_t i)
{
    const struct spam_bayes_held *h = obj;
    return i < 2 ? h->files[i] : NULL;
}

static void spam__bayes_ref(void *obj)
{
    atomic_fetch_add(&((struct spam_bayes_held *)obj)->refs, 1);
}

static void spam__bayes_unref(void *obj)
{
    struct spam_bayes_held *h = obj;
    if (!h || atomic_fetch_sub(&h->refs, 1) != 1)
        return;
    spam_bayes_snap_free(h->snap);
    free(h->files[0]);
    free(h->files[1]);
    free(h);
}

static void spam__bayes_reloaded(void *owner, const void *obj, const char *errors)
{
    struct spam_inst *si = owner;
    spam__log_errors(si, errors);
    const struct spam_bayes_held *h = obj;
    if (h) {
        uint32_t ns, nh;
        spam_bayes_snap_totals(h->snap, &ns, &nh);
        sluice_api->log(si->inst, SLUICE_LOG_INFO,
                        "Bayes store %s reloaded: %u spam, %u ham, %zu tokens", si->conf.bayes_db,
                        ns, nh, spam_bayes_snap_size(h->snap));
    } else {
        sluice_api->log(si->inst, SLUICE_LOG_ERROR,
                        "Bayes store %s unreadable; keeping the previous snapshot",
                        si->conf.bayes_db);
    }
}

static const struct watch_ops spam__bayes_ops = {
    spam__bayes_load, spam__bayes_path, spam__bayes_ref, spam__bayes_unref, spam__bayes_reloaded};

/* ---- Bayes in the shared state (bayes_store = state) ------------------------- */

/* The loop's doorbell: its own allocation, freed by the close callback
 * (the .so stays loaded, so the callback is still there). */
struct spam_async {
    uv_async_t h;
    struct spam_inst *si;
};

enum { SPAM_JOB_LOOKUP, SPAM_JOB_LEARN };

struct spam_job {
    struct spam_job *next;          /* si->queue (under mu) */
    struct spam_job *iprev, *inext; /* si->inflight (loop) */
    struct spam_inst *si;
    int kind;
    int refs; /* under si->mu: the pool thread's (LOOKUP) and the loop's */
    bool done;
    int status;                      /* 0, -errno, or 1: not started (refused) */
    sluice_state_op *op;             /* loop */
    size_t n;                        /* tokens */
    uint64_t *tok;                   /* owned */
    struct spam_bayes_count *counts; /* LOOKUP answer: owned, n of them */
    uint32_t nspam, nham;
    bool spam;   /* LEARN: the class */
    uint64_t id; /* LEARN: the message's id */
};

/* Under si->mu. */
static void spam__job_unref_locked(struct spam_job *j)
{
    if (--j->refs > 0)
        return;
    free(j->tok);
    free(j->counts);
    free(j);
}

static void spam__inflight_unlink(struct spam_inst *si, struct spam_job *j)
{
    if (j->iprev)
        j->iprev->inext = j->inext;
    else
        si->inflight = j->inext;
    if (j->inext)
        j->inext->iprev = j->iprev;
    j->iprev = j->inext = NULL;
}

/* Loop: the state's answer to a job. */
static void spam__job_answer(void *ud, const struct sluice_state_answer *a)
{
    struct spam_job *j = ud;
    struct spam_inst *si = j->si;
    j->op = NULL;
    spam__inflight_unlink(si, j);
    if (j->kind == SPAM_JOB_LEARN) {
        if (a->status != 0)
            sluice_api->log(si->inst, SLUICE_LOG_WARN, "autolearn: Bayes store: %s",
                            strerror(-a->status));
        else if (a->num == 1 && si->c_learn)
            sluice_api->counter_add(si->c_learn, j->spam ? "spam" : "ham", 1);
        pthread_mutex_lock(&si->mu);
        spam__job_unref_locked(j);
        pthread_mutex_unlock(&si->mu);
        return;
    }
    /* decoded before taking the lock: the pool thread may have gone */
    int status = a->status;
    struct spam_bayes_count *c = NULL;
    uint32_t ns = 0, nh = 0;
    if (status == 0 && (a->size < offsetof(struct sluice_state_answer, count) + sizeof a->count ||
                        a->count != j->n + 2))
        status = -EIO;
    if (status == 0) {
        c = pstr_xcalloc(j->n ? j->n : 1, sizeof *c);
        ns = spam_bayes_kv_total(a->values[0], a->lens[0]);
        nh = spam_bayes_kv_total(a->values[1], a->lens[1]);
        for (size_t i = 0; i < j->n; i++)
            c[i] = spam_bayes_kv_decode(a->values[i + 2], a->lens[i + 2]);
    }
    pthread_mutex_lock(&si->mu);
    j->status = status;
    j->counts = c;
    j->nspam = ns;
    j->nham = nh;
    j->done = true;
    pthread_cond_broadcast(&si->cv);
    spam__job_unref_locked(j);
    pthread_mutex_unlock(&si->mu);
}

/* Loop: start one job's state call (its keys are copied by state_call). */
static void spam__job_start(struct spam_inst *si, struct spam_job *j)
{
    size_t extra = j->kind == SPAM_JOB_LOOKUP ? 2 : 1, nk = j->n + extra;
    const char **keys = pstr_xcalloc(nk, sizeof *keys);
    char *buf = pstr_xmalloc(nk * SPAM_BAYES_KV_KEY_MAX);
    int64_t *deltas = NULL;
    char seen[SPAM_BAYES_KV_KEY_MAX];
    struct sluice_state_request rq = {.size = sizeof rq};
    if (j->kind == SPAM_JOB_LOOKUP) {
        keys[0] = SPAM_BAYES_KV_NSPAM;
        keys[1] = SPAM_BAYES_KV_NHAM;
        rq.op = SLUICE_STATE_MGET;
    } else {
        deltas = pstr_xmalloc(nk * sizeof *deltas);
        keys[0] = j->spam ? SPAM_BAYES_KV_NSPAM : SPAM_BAYES_KV_NHAM;
        deltas[0] = 1;
        for (size_t i = 0; i < j->n; i++)
            deltas[i + 1] = spam_bayes_kv_delta(j->spam, false);
        /* once per message: a message learned (by hand or by another
         * instance) is not counted again */
        spam_bayes_kv_seen_key(j->id, seen);
        rq.op = SLUICE_STATE_MINCR;
        rq.key = seen;
        rq.value = j->spam ? "s" : "h";
        rq.len = 1;
        rq.ttl_ms = (uint64_t)si->conf.bayes_seen_days * 86400000u;
        rq.deltas = deltas;
    }
    for (size_t i = 0; i < j->n; i++) {
        spam_bayes_kv_token_key(j->tok[i], buf + i * SPAM_BAYES_KV_KEY_MAX);
        keys[i + extra] = buf + i * SPAM_BAYES_KV_KEY_MAX;
    }
    rq.keys = keys;
    rq.nkeys = nk;
    j->op = sluice_api->state_call(si->inst, &rq, spam__job_answer, j);
    free(keys);
    free(buf);
    free(deltas);
    if (j->op) {
        j->iprev = NULL;
        j->inext = si->inflight;
        if (si->inflight)
            si->inflight->iprev = j;
        si->inflight = j;
        return;
    }
    /* refused (an older sluice without MGET/MINCR, a state service that is
     * not running): the waiter hears it now */
    pthread_mutex_lock(&si->mu);
    j->status = 1;
    j->done = true;
    pthread_cond_broadcast(&si->cv);
    spam__job_unref_locked(j);
    pthread_mutex_unlock(&si->mu);
}

/* Loop: the pool threads rang. */
static void spam__async_cb(uv_async_t *h)
{
    struct spam_inst *si = ((struct spam_async *)h)->si;
    pthread_mutex_lock(&si->mu);
    struct spam_job *q = si->queue;
    si->queue = NULL;
    pthread_mutex_unlock(&si->mu);
    /* oldest first */
    struct spam_job *rev = NULL;
    while (q) {
        struct spam_job *next = q->next;
        q->next = rev;
        rev = q;
        q = next;
    }
    while (rev) {
        struct spam_job *next = rev->next;
        spam__job_start(si, rev);
        rev = next;
    }
}

static void spam__async_closed(uv_handle_t *h)
{
    free(h);
}

/* Pool thread: hand j to the loop. */
static bool spam__job_post(struct spam_inst *si, struct spam_job *j)
{
    struct spam_async *as = __atomic_load_n(&si->async, __ATOMIC_ACQUIRE);
    if (!as)
        return false;
    pthread_mutex_lock(&si->mu);
    j->next = si->queue;
    si->queue = j;
    pthread_mutex_unlock(&si->mu);
    uv_async_send(&as->h);
    return true;
}

static struct spam_job *spam__job_new(struct spam_inst *si, int kind, const uint64_t *tok, size_t n)
{
    struct spam_job *j = pstr_xcalloc(1, sizeof *j);
    j->si = si;
    j->kind = kind;
    j->refs = kind == SPAM_JOB_LOOKUP ? 2 : 1;
    j->n = n;
    j->tok = pstr_xmalloc((n ? n : 1) * sizeof *tok);
    memcpy(j->tok, tok, n * sizeof *tok);
    return j;
}

/* Pool thread: the counts of tok[0..n) from the shared state, waiting at
 * most bayes_timeout. 0 with c[] and the totals filled, or why not (a
 * negative errno, -ETIMEDOUT, 1: refused). */
static int spam__state_lookup(struct spam_inst *si, const uint64_t *tok, size_t n,
                              struct spam_bayes_count *c, uint32_t *ns, uint32_t *nh)
{
    struct spam_job *j = spam__job_new(si, SPAM_JOB_LOOKUP, tok, n);
    if (!spam__job_post(si, j)) {
        free(j->tok);
        free(j);
        return 1;
    }
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += si->conf.bayes_timeout_ms / 1000;
    dl.tv_nsec += (long)(si->conf.bayes_timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    int rc = -ETIMEDOUT;
    pthread_mutex_lock(&si->mu);
    while (!j->done)
        if (pthread_cond_timedwait(&si->cv, &si->mu, &dl) == ETIMEDOUT)
            break;
    if (j->done) {
        rc = j->status;
        if (rc == 0) {
            memcpy(c, j->counts, n * sizeof *c);
            *ns = j->nspam;
            *nh = j->nham;
        }
    }
    spam__job_unref_locked(j); /* a late answer finds the loop's reference */
    pthread_mutex_unlock(&si->mu);
    return rc;
}

/* Classify against the shared state; its score (0 when Bayes had no say).
 * c[0..n) receives the tokens' counts and *have whether they came (for
 * autolearn's saturation). */
static double spam__bayes_state(struct spam_inst *si, sluice_ctx *ctx,
                                const struct spam_ruleset *rs, const uint64_t *tok, size_t n,
                                struct spam_bayes_count *c, bool *have, struct pstr *tests,
                                size_t *ntests)
{
    uint32_t ns = 0, nh = 0;
    int rc = spam__state_lookup(si, tok, n, c, &ns, &nh);
    *have = rc == 0;
    const char *name = NULL;
    double score = 0;
    char desc[128];
    if (rc != 0) {
        name = "BAYES_UNAVAILABLE";
        snprintf(desc, sizeof desc, "Bayes skipped: the shared store %s",
                 rc == 1            ? "refused the lookup"
                 : rc == -ETIMEDOUT ? "did not answer in time"
                 : rc == -EAGAIN    ? "is unreachable"
                                    : "failed");
        if (si->c_bayes)
            sluice_api->counter_add(si->c_bayes, "unavailable", 1);
    } else if (ns < si->conf.bayes_min_learned || nh < si->conf.bayes_min_learned) {
        if (si->c_bayes)
            sluice_api->counter_add(si->c_bayes, "too_few_learned", 1);
    } else {
        size_t used;
        double p = spam_bayes_classify(c, n, ns, nh, &used);
        size_t bi = spam_bayes_band_index(p);
        name = spam_bayes_band_at(bi)->name;
        score = rs->bayes_score[bi]; /* the rule files' score, or the default */
        snprintf(desc, sizeof desc, "Bayes spam probability %.4f (%zu of %zu tokens)", p, used, n);
        if (si->c_bayes)
            sluice_api->counter_add(si->c_bayes, "scored", 1);
    }
    if (!name)
        return 0;
    sluice_api->symbol_add(ctx, name, score, desc);
    if (tests->len)
        pstr_putc(tests, ',');
    pstr_puts(tests, name);
    (*ntests)++;
    return score;
}

/* Loop: the first of a state-backed instance's loop hooks to run makes
 * the loop's doorbell for its DATA hooks (uv_async_init needs the loop and
 * its thread, which only a hook names: init has neither). Any of them,
 * since an earlier plugin's ACCEPT skips the rest of a phase: made at MAIL
 * only, one plugin accepting every MAIL left every lookup unavailable.
 * The reset and close notifications run for every instance, whatever the
 * verdicts; so at worst (every phase before DATA accepted by another
 * plugin) the first transaction goes without Bayes. */
static void spam__doorbell(sluice_ctx *ctx)
{
    struct spam_inst *si = sluice_api->instance_data(ctx);
    if (!si || !si->state || si->async)
        return;
    struct spam_async *as = pstr_xcalloc(1, sizeof *as);
    as->si = si;
    if (uv_async_init(sluice_api->event_loop(ctx), &as->h, spam__async_cb) != 0) {
        free(as);
        return;
    }
    uv_unref((uv_handle_t *)&as->h);
    __atomic_store_n(&si->async, as, __ATOMIC_RELEASE);
}

static int spam_on_envelope(sluice_ctx *ctx)
{
    spam__doorbell(ctx);
    return SLUICE_CONTINUE;
}

/* Classify and add the band's symbol with the score the rule set gives it;
 * that score (0 when Bayes had no say). */
static double spam__bayes(struct spam_inst *si, sluice_ctx *ctx, const struct spam_ruleset *rs,
                          const struct spam_msg *m, struct pstr *tests, size_t *ntests)
{
    if (!si->bayes)
        return 0;
    if (si->conf.watch)
        watch_poll(si->bayes);
    struct spam_bayes_held *h = watch_get(si->bayes);
    if (!h)
        return 0;
    size_t ntok, used;
    double p = spam_bayes_score(h->snap, m, si->conf.bayes_min_learned, &ntok, &used);
    spam__bayes_unref(h);
    if (p < 0)
        return 0; /* not enough learned yet */
    size_t bi = spam_bayes_band_index(p);
    const char *name = spam_bayes_band_at(bi)->name;
    double score = rs->bayes_score[bi];
    char desc[96];
    snprintf(desc, sizeof desc, "Bayes spam probability %.4f (%zu of %zu tokens)", p, used, ntok);
    sluice_api->symbol_add(ctx, name, score, desc);
    if (tests->len)
        pstr_putc(tests, ',');
    pstr_puts(tests, name);
    (*ntests)++;
    return score;
}

/* Autolearn (off by default): a message whose score without Bayes is at
 * or above autolearn_spam (at or below autolearn_ham) is learned as such.
 * State store: tok[0..n) are the message's tokens and c their counts from
 * the lookup (NULL when it failed): a token whose half of the class is at
 * its cap is left out, so it saturates instead of failing the whole learn
 * with -ERANGE (spam_bayes_kv.h). */
static void spam__autolearn(struct spam_inst *si, const struct spam_msg *m, double score,
                            const uint64_t *tok, size_t n, const struct spam_bayes_count *c)
{
    bool spam = !isnan(si->autolearn_spam) && score >= si->autolearn_spam;
    bool ham = !isnan(si->autolearn_ham) && score <= si->autolearn_ham;
    if (!spam && !ham)
        return;
    if (si->state) {
        struct spam_job *j = spam__job_new(si, SPAM_JOB_LEARN, tok, n);
        j->spam = spam;
        j->id = spam_bayes_msg_id(m, tok, n); /* of every token, as sluice-spam-learn */
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (!c || spam_bayes_kv_room(c[i], spam))
                j->tok[k++] = tok[i];
        j->n = k;
        if (!spam__job_post(si, j)) {
            free(j->tok);
            free(j);
        }
        return;
    }
    char err[512];
    struct spam_bayes_db *db = spam_bayes_db_open(si->conf.bayes_db, false, false, err, sizeof err);
    if (!db) {
        sluice_api->log(si->inst, SLUICE_LOG_WARN, "autolearn: %s", err);
        return;
    }
    uint64_t *t = pstr_xmalloc(SPAM_BAYES_MAX_TOKENS * sizeof *t);
    size_t nt = spam_bayes_tokens(m, t, SPAM_BAYES_MAX_TOKENS);
    enum spam_bayes_learn r =
        spam_bayes_db_learn(db, spam_bayes_msg_id(m, t, nt), t, nt, spam, false);
    if (r == SPAM_BAYES_ERROR)
        sluice_api->log(si->inst, SLUICE_LOG_WARN, "autolearn: %s", spam_bayes_db_error(db));
    else if (si->c_learn)
        sluice_api->counter_add(si->c_learn, spam ? "spam" : "ham", 1);
    free(t);
    spam_bayes_db_close(db);
}

/* ---- instance life ----------------------------------------------------------- */

static void spam_shutdown(void *data)
{
    struct spam_inst *si = data;
    if (!si)
        return;
    if (si->state) {
        /* On the loop, after the last transaction: no pool thread waits;
         * what the loop still has out or queued is dropped. */
        while (si->inflight) {
            struct spam_job *j = si->inflight;
            spam__inflight_unlink(si, j);
            sluice_api->state_cancel(j->op);
            spam__job_unref_locked(j);
        }
        while (si->queue) {
            struct spam_job *j = si->queue;
            si->queue = j->next;
            spam__job_unref_locked(j);
        }
        if (si->async)
            uv_close((uv_handle_t *)&si->async->h, spam__async_closed);
        pthread_mutex_destroy(&si->mu);
        pthread_cond_destroy(&si->cv);
    }
    watch_free(si->watch);
    watch_free(si->bayes);
    spam_scratch_pool_free(si->pool);
    free(si);
}

static int spam_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, config_load)) {
        api->config_error(inst, NULL, "this plugin needs a newer sluice (typed keys)");
        return -1;
    }
    struct spam_inst *si = pstr_xcalloc(1, sizeof(*si));
    si->inst = inst;
    spam_msg_global_init();

    struct spam_eval_limits lim = SPAM_EVAL_LIMITS_DEFAULT;
    si->conf.match_limit = lim.match_limit;
    si->conf.rule_time_ms = lim.rule_time_ms;
    si->conf.msg_time_ms = lim.msg_time_ms;
    int bad = SLUICE_CONFIG_LOAD(api, inst, spam__keys, &si->conf, SLUICE_CONFIG_STRICT) != 0;
    /* A threshold that failed above stays NULL: not checked twice. */
    const struct {
        const char *key, *text;
        double *out;
    } th[] = {
        {"header_threshold", si->conf.header_threshold, &si->header_threshold},
        {"tag_threshold", si->conf.tag_threshold, &si->tag_threshold},
        {"quarantine_threshold", si->conf.quarantine_threshold, &si->quarantine_threshold},
        {"reject_threshold", si->conf.reject_threshold, &si->reject_threshold},
        {"bayes_autolearn_spam", si->conf.bayes_autolearn_spam, &si->autolearn_spam},
        {"bayes_autolearn_ham", si->conf.bayes_autolearn_ham, &si->autolearn_ham},
    };
    for (size_t i = 0; i < sizeof th / sizeof th[0]; i++) {
        *th[i].out = NAN;
        if (th[i].text && spam__threshold(si, th[i].key, th[i].text, th[i].out) < 0)
            bad = 1;
    }
    lim.match_limit = si->conf.match_limit;
    lim.rule_time_ms = si->conf.rule_time_ms;
    lim.msg_time_ms = si->conf.msg_time_ms;
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

    struct spam_ruleset *rs = NULL;
    if (si->conf.rules) {
        struct pstr errors = PSTR_INIT;
        rs = spam__build(si->conf.rules, &errors);
        size_t nerr = spam__log_errors(si, pstr_cstr(&errors));
        pstr_free(&errors);
        if (!rs)
            api->config_error(inst, "rules", "rule file %s has %zu error%s", si->conf.rules, nerr,
                              nerr == 1 ? "" : "s");
    }
    if (bad || !rs) {
        spam_ruleset_unref(rs);
        spam_shutdown(si);
        return -1;
    }
    si->watch =
        watch_new(&spam__watch_ops, pstr_xstrdup(si->conf.rules), free, si, rs, SPAM_WATCH_MS);
    /* si->state only once the mutex and cv exist: spam_shutdown destroys
     * them when it is set */
    bool state = si->conf.bayes_store == SPAM_STORE_STATE;
    if (state && si->conf.bayes_db) {
        api->config_error(inst, "bayes_db",
                          "is for bayes_store = sqlite (the store is the "
                          "daemon's shared state with bayes_store = state)");
        spam_shutdown(si);
        return -1;
    }
    if (state && !SLUICE_API_HAS(api, state_cancel)) {
        api->config_error(inst, "bayes_store", "state needs a sluice with the shared state");
        spam_shutdown(si);
        return -1;
    }
    si->state = state;
    if (si->state) {
        pthread_mutex_init(&si->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&si->cv, &ca);
        pthread_condattr_destroy(&ca);
    } else if (si->conf.bayes_db) {
        /* Made (empty) when missing, so that learning can start at once;
         * a store that cannot be opened is a configuration error. */
        char err[512];
        struct spam_bayes_db *db =
            spam_bayes_db_open(si->conf.bayes_db, true, api->checking(inst), err, sizeof err);
        spam_bayes_db_close(db);
        struct pstr errors = PSTR_INIT;
        void *h = db ? spam__bayes_load(si->conf.bayes_db, &errors) : NULL;
        if (!h) {
            api->config_error(inst, "bayes_db", "%s", db ? pstr_cstr(&errors) : err);
            pstr_free(&errors);
            spam_shutdown(si);
            return -1;
        }
        pstr_free(&errors);
        si->bayes = watch_new(&spam__bayes_ops, pstr_xstrdup(si->conf.bayes_db), free, si, h,
                              SPAM_WATCH_MS);
    } else if (!isnan(si->autolearn_spam) || !isnan(si->autolearn_ham)) {
        api->config_error(inst, "bayes_db",
                          "autolearn needs a Bayes store (bayes_db, or bayes_store = state)");
        spam_shutdown(si);
        return -1;
    }
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
        si->c_learn =
            api->counter_new(inst, "autolearned", "Messages learned by autolearn", "class", 2);
        if (si->state)
            si->c_bayes = api->counter_new(
                inst, "bayes_lookups", "Bayes lookups in the shared state, by result", "result", 3);
        size_t pf_rules, pf_always;
        spam_prefilter_counts(rs->pf, &pf_rules, &pf_always);
        char pf[160];
        if (rs->pf)
            snprintf(pf, sizeof(pf), "prefilter=%s (%zu rules, %zu always run, compiled %s)",
                     spam_prefilter_engine(), pf_rules, pf_always,
                     spam_prefilter_isolated(rs->pf) ? "by a child process" : "in process");
        else
            snprintf(pf, sizeof(pf), "prefilter=none (%s)",
                     strcmp(spam_prefilter_engine(), "none") == 0 ? "built without Hyperscan"
                     : rs->pf_why[0]                              ? rs->pf_why
                                                                  : "no Hyperscan database");
        api->log(inst, rs->pf_why[0] ? SLUICE_LOG_WARN : SLUICE_LOG_INFO, "%zu rules from %s%s; %s",
                 rs->nrules, si->conf.rules, rs->jit ? "" : " (some without JIT)", pf);
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
    const struct sluice_host_api *api = sluice_api;
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
    const struct sluice_host_api *api = sluice_api;
    const char *subj = api->header_get(ctx, "Subject", 0);
    const char *tag = si->conf.subject_tag;
    size_t tl = strlen(tag);
    if (!subj) {
        api->header_add(ctx, "Subject", tag);
        return;
    }
    if (strncmp(subj, tag, tl) == 0)
        return;
    struct pstr s = PSTR_INIT;
    pstr_printf(&s, "%s %s", tag, subj);
    api->header_change(ctx, "Subject", 0, pstr_cstr(&s));
    pstr_free(&s);
}

static int spam_on_data(sluice_ctx *ctx)
{
    const struct sluice_host_api *api = sluice_api;
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
    if (si->conf.watch)
        watch_poll(si->watch);
    struct spam_ruleset *rs = watch_get(si->watch);
    struct spam_msg *m = spam_msg_parse(data, len, &env, (size_t)si->conf.max_scan);
    struct spam_result res;
    spam_eval_run(rs, m, si->pool, &res);

    /* X-Spam-Status names what made the score: first what earlier plugins
     * scored (DNS lists, SPF, DMARC ...), then every rule hit (but "__"
     * sub-rules), GTUBE first, then the Bayes band. */
    struct pstr tests = PSTR_INIT;
    size_t ntests = 0;
    if (SLUICE_API_HAS(api, symbol_at)) {
        const char *sname;
        double sscore;
        for (size_t i = 0; api->symbol_at(ctx, i, &sname, &sscore) == 0; i++) {
            if (sscore == 0.0 || ntests >= SPAM_MAX_STATUS_TESTS || !*sname ||
                strspn(sname,
                       "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") !=
                    strlen(sname))
                continue; /* another plugin's name that cannot go in the header as is */
            if (tests.len)
                pstr_putc(&tests, ',');
            pstr_puts(&tests, sname);
            ntests++;
        }
    }
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
    double bayes;
    uint64_t *tok = NULL;
    size_t ntok = 0;
    struct spam_bayes_count *counts = NULL;
    bool have_counts = false;
    if (si->state) {
        tok = pstr_xmalloc(SPAM_BAYES_MAX_TOKENS * sizeof *tok);
        ntok = spam_bayes_tokens(m, tok, SPAM_BAYES_MAX_TOKENS);
        counts = pstr_xcalloc(ntok ? ntok : 1, sizeof *counts);
        bayes = spam__bayes_state(si, ctx, rs, tok, ntok, counts, &have_counts, &tests, &ntests);
    } else {
        bayes = spam__bayes(si, ctx, rs, m, &tests, &ntests);
    }
    /* The total includes what earlier plugins in the chain scored. */
    double score = api->score(ctx);
    if ((si->bayes || si->state) && !res.gtube) /* a test string teaches nothing */
        spam__autolearn(si, m, score - bayes, tok, ntok, have_counts ? counts : NULL);
    free(tok);
    free(counts);
    if (si->c_score)
        api->counter_add(si->c_score, spam__range(score), 1);

    int verdict = SLUICE_CONTINUE;
    const char *action = "ham";
    if (si->conf.strip_headers) {
        spam__strip(api, ctx, "X-Spam-Flag");
        spam__strip(api, ctx, "X-Spam-Status");
        spam__strip(api, ctx, "X-Spam-Score");
    }
    if (spam__at(score, si->reject_threshold)) {
        api->set_reply(ctx, 554, "5.7.1", si->conf.reject_text);
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
                     .shutdown = spam_shutdown, .on_connect = spam_on_envelope,
                     .on_helo = spam_on_envelope, .on_mail = spam_on_envelope,
                     .on_rcpt = spam_on_envelope, .on_data = spam_on_data,
                     .on_reset = spam__doorbell, .on_close = spam__doorbell);
