/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_eval: rule evaluation (see spam_eval.h).
 *
 * Order: the prefilter scans (one per body-like text), every non-meta
 * rule the scans did not rule out (each regex at most once per message; a
 * header rule's field value is built per rule, cheap for header sizes),
 * then metas in dependency order. GTUBE is looked for before anything and
 * does not depend on the rule set, so no rule file can switch it off.
 */
#include "spam_eval.h"
#include "spam_prefilter.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Split so that this source file is not itself a GTUBE message. */
const char spam_gtube[] = "XJS*C4JDBQADN1.NSBN3*2IDNEN*"
                          "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

struct spam_scratch {
    struct spam_scratch *next;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *js;
    struct spam_prefilter_scratch *pfs; /* owned; NULL until first used */
    struct timespec deadline; /* of the rule being matched */
    unsigned calls;           /* callouts since the last clock read */
    int expired;
};

struct spam_scratch_pool {
    pthread_mutex_t lock;
    struct spam_scratch *free_list;
    struct spam_eval_limits lim;
};

static int spam_eval__past(const struct timespec *dl)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return now.tv_sec > dl->tv_sec || (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

/* The start-of-match callout: stop the match once the rule is out of time. */
static int spam_eval__callout(pcre2_callout_block *cb, void *arg)
{
    (void)cb;
    struct spam_scratch *s = arg;
    /*
     * Reading the clock at every start position costs a quarter of the
     * scan time; every 32nd is enough: between two reads at most 32 start
     * positions run, each bounded by the match limit.
     */
    if ((++s->calls & 31) != 0)
        return 0;
    if (spam_eval__past(&s->deadline)) {
        s->expired = 1;
        return PCRE2_ERROR_CALLOUT;
    }
    return 0;
}

struct spam_scratch_pool *spam_scratch_pool_new(const struct spam_eval_limits *lim)
{
    struct spam_scratch_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    p->lim = *lim;
    return p;
}

static void spam_scratch__free(struct spam_scratch *s)
{
    if (s->md)
        pcre2_match_data_free(s->md);
    if (s->mctx)
        pcre2_match_context_free(s->mctx);
    if (s->js)
        pcre2_jit_stack_free(s->js);
    spam_prefilter_scratch_free(s->pfs);
    free(s);
}

void spam_scratch_pool_free(struct spam_scratch_pool *p)
{
    if (!p)
        return;
    struct spam_scratch *s = p->free_list;
    while (s) {
        struct spam_scratch *n = s->next;
        spam_scratch__free(s);
        s = n;
    }
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static struct spam_scratch *spam_scratch__get(struct spam_scratch_pool *p)
{
    pthread_mutex_lock(&p->lock);
    struct spam_scratch *s = p->free_list;
    if (s)
        p->free_list = s->next;
    pthread_mutex_unlock(&p->lock);
    if (s)
        return s;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->md = pcre2_match_data_create(1, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    s->js = pcre2_jit_stack_create(32 * 1024, p->lim.jit_stack_max ? p->lim.jit_stack_max : 1024 * 1024, NULL);
    if (!s->md || !s->mctx || !s->js) {
        spam_scratch__free(s);
        return NULL;
    }
    pcre2_set_match_limit(s->mctx, p->lim.match_limit);
    pcre2_set_heap_limit(s->mctx, p->lim.heap_limit_kib);
    pcre2_set_depth_limit(s->mctx, p->lim.match_limit);
    pcre2_set_callout(s->mctx, spam_eval__callout, s);
    pcre2_jit_stack_assign(s->mctx, NULL, s->js);
    return s;
}

static void spam_scratch__put(struct spam_scratch_pool *p, struct spam_scratch *s)
{
    pthread_mutex_lock(&p->lock);
    s->next = p->free_list;
    p->free_list = s;
    pthread_mutex_unlock(&p->lock);
}

/* 1 match, 0 no match, -1 stopped by a limit. */
static int spam_eval__match(struct spam_scratch *s, const pcre2_code *re, const char *subj, size_t len)
{
    int rc = pcre2_match(re, (PCRE2_SPTR)subj, len, 0, 0, s->md, s->mctx);
    if (rc >= 0)
        return 1;
    if (rc == PCRE2_ERROR_NOMATCH || rc == PCRE2_ERROR_PARTIAL)
        return 0;
    /* Match/heap/depth limit, JIT stack, callout (time): fail safe. */
    return -1;
}

static void spam_eval__add_ms(struct timespec *t, unsigned ms)
{
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static double spam_eval__meta(const struct spam_rule *r, const unsigned char *hit, double *stack)
{
    size_t sp = 0;
    for (size_t i = 0; i < r->prog_len; i++) {
        const struct spam_meta_op *op = &r->prog[i];
        double a, b;
        switch (op->op) {
        case SPAM_META_RULE: stack[sp++] = hit[op->arg] ? 1.0 : 0.0; continue;
        case SPAM_META_NUM: stack[sp++] = op->num; continue;
        case SPAM_META_NOT: stack[sp - 1] = stack[sp - 1] == 0.0; continue;
        case SPAM_META_NEG: stack[sp - 1] = -stack[sp - 1]; continue;
        default: break;
        }
        b = stack[--sp];
        a = stack[sp - 1];
        double v = 0;
        switch (op->op) {
        case SPAM_META_AND: v = (a != 0.0) && (b != 0.0); break;
        case SPAM_META_OR: v = (a != 0.0) || (b != 0.0); break;
        case SPAM_META_ADD: v = a + b; break;
        case SPAM_META_SUB: v = a - b; break;
        case SPAM_META_MUL: v = a * b; break;
        case SPAM_META_LT: v = a < b; break;
        case SPAM_META_LE: v = a <= b; break;
        case SPAM_META_GT: v = a > b; break;
        case SPAM_META_GE: v = a >= b; break;
        case SPAM_META_EQ: v = a == b; break;
        case SPAM_META_NE: v = a != b; break;
        default: break;
        }
        stack[sp - 1] = v;
    }
    return sp ? stack[sp - 1] : 0.0;
}

/*
 * Scan each body-like text once; filtered[t] = 1 when cand[] tells for
 * type t. A failed scan leaves its type unfiltered (every rule runs).
 */
static void spam_eval__prefilter(const struct spam_ruleset *rs, const struct spam_msg *m,
                                 struct spam_scratch *s, unsigned char *cand, int *filtered)
{
    const struct spam_prefilter *pf = rs->pf;
    if (rs->count[SPAM_RULE_BODY])
        filtered[SPAM_RULE_BODY] =
            spam_prefilter_scan(pf, &s->pfs, SPAM_RULE_BODY, m->text.ptr, m->text.len, cand) == 0;
    if (rs->count[SPAM_RULE_RAWBODY])
        filtered[SPAM_RULE_RAWBODY] =
            spam_prefilter_scan(pf, &s->pfs, SPAM_RULE_RAWBODY, m->rawtext.ptr, m->rawtext.len,
                                cand) == 0;
    if (rs->count[SPAM_RULE_FULL])
        filtered[SPAM_RULE_FULL] =
            spam_prefilter_scan(pf, &s->pfs, SPAM_RULE_FULL, m->raw, m->rawlen, cand) == 0;
    /* A URI rule runs on every URI when any one of them can match it. */
    if (rs->count[SPAM_RULE_URI] && m->nuris > 0) {
        filtered[SPAM_RULE_URI] = 1;
        for (size_t u = 0; u < m->nuris && filtered[SPAM_RULE_URI]; u++)
            if (spam_prefilter_scan(pf, &s->pfs, SPAM_RULE_URI, m->uris[u], strlen(m->uris[u]),
                                    cand) < 0)
                filtered[SPAM_RULE_URI] = 0;
    }
}

int spam_eval_run(const struct spam_ruleset *rs, const struct spam_msg *m, struct spam_scratch_pool *pool,
                  struct spam_result *res)
{
    memset(res, 0, sizeof(*res));
    res->nrules = rs->nrules;
    res->hit = calloc(rs->nrules + 1, 1);
    res->limited = calloc(rs->nrules + 1, 1);
    if (m->rawlen >= sizeof(spam_gtube) - 1 && memmem(m->raw, m->rawlen, spam_gtube, sizeof(spam_gtube) - 1)) {
        res->gtube = 1;
        res->score += SPAM_GTUBE_SCORE;
    }
    struct spam_scratch *s = spam_scratch__get(pool);
    if (!s || !res->hit || !res->limited) {
        if (s)
            spam_scratch__put(pool, s);
        return -1;
    }
    struct timespec msg_deadline;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &msg_deadline);
    spam_eval__add_ms(&msg_deadline, pool->lim.msg_time_ms);
    struct pstr val = PSTR_INIT;

    /* Body-like rules: which ones can match at all, from one scan per text. */
    int filtered[SPAM_RULE_TYPE_COUNT] = {0};
    unsigned char *cand = NULL;
    if (rs->pf && !pool->lim.no_prefilter && (cand = calloc(rs->nrules + 1, 1)) != NULL)
        spam_eval__prefilter(rs, m, s, cand, filtered);

    for (size_t i = 0; i < rs->nrules; i++) {
        const struct spam_rule *r = &rs->rules[i];
        if (r->type == SPAM_RULE_META)
            continue;
        /* Proven not to match: decided, so neither run nor "limited". */
        if (filtered[r->type] && !cand[i])
            continue;
        if (spam_eval__past(&msg_deadline)) {
            res->out_of_time = 1;
            res->limited[i] = 1;
            res->nlimited++;
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC_COARSE, &s->deadline);
        spam_eval__add_ms(&s->deadline, pool->lim.rule_time_ms);
        if (s->deadline.tv_sec > msg_deadline.tv_sec ||
            (s->deadline.tv_sec == msg_deadline.tv_sec && s->deadline.tv_nsec > msg_deadline.tv_nsec))
            s->deadline = msg_deadline;
        s->expired = 0;
        int rc = 0;
        switch (r->type) {
        case SPAM_RULE_HEADER: {
            int exists = 0;
            spam_msg_field(m, r, &val, &exists);
            if (r->op == SPAM_OP_EXISTS) {
                rc = exists;
            } else {
                rc = spam_eval__match(s, r->re, pstr_cstr(&val), val.len);
                if (rc >= 0 && r->op == SPAM_OP_NOMATCH)
                    rc = !rc;
            }
            break;
        }
        case SPAM_RULE_BODY: rc = spam_eval__match(s, r->re, pstr_cstr(&m->text), m->text.len); break;
        case SPAM_RULE_RAWBODY: rc = spam_eval__match(s, r->re, pstr_cstr(&m->rawtext), m->rawtext.len); break;
        case SPAM_RULE_FULL: rc = spam_eval__match(s, r->re, m->raw ? m->raw : "", m->rawlen); break;
        case SPAM_RULE_URI:
            for (size_t u = 0; u < m->nuris && rc == 0; u++)
                rc = spam_eval__match(s, r->re, m->uris[u], strlen(m->uris[u]));
            break;
        default: break;
        }
        if (rc < 0) {
            res->limited[i] = 1;
            res->nlimited++;
        } else if (rc > 0) {
            res->hit[i] = 1;
        }
    }
    pstr_free(&val);
    free(cand);
    spam_scratch__put(pool, s);

    size_t maxprog = 1;
    for (size_t k = 0; k < rs->nmeta; k++)
        if (rs->rules[rs->meta_order[k]].prog_len > maxprog)
            maxprog = rs->rules[rs->meta_order[k]].prog_len;
    double *stack = malloc(maxprog * sizeof(double));
    for (size_t k = 0; stack && k < rs->nmeta; k++) {
        size_t i = rs->meta_order[k];
        if (spam_eval__meta(&rs->rules[i], res->hit, stack) != 0.0)
            res->hit[i] = 1;
    }
    free(stack);
    for (size_t i = 0; i < rs->nrules; i++) {
        if (res->hit[i]) {
            res->score += rs->rules[i].score;
            res->nhits++;
        }
    }
    return 0;
}

void spam_result_free(struct spam_result *res)
{
    free(res->hit);
    free(res->limited);
    memset(res, 0, sizeof(*res));
}
