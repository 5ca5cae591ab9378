/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rw_eval: the rewrite engine (see rw_eval.h for the phase model and what
 * "fires" means).
 *
 * Matching happens on decoded text: header values unfolded with RFC 2047
 * words decoded to UTF-8, addresses as given. Writing goes through the
 * header model (rw_hdr), which encodes non-ASCII text and folds. Regex
 * runs are bounded by the scratch's match limit; a run stopped by it
 * counts as "no match" (the rule does nothing), never as an error.
 */
#include "rw_eval.h"

#include "rw_srs.h"
#include "pstr.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct rw_scratch {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *js;
    uint64_t limited;
};

struct rw_scratch *rw_scratch_new(uint32_t match_limit)
{
    struct rw_scratch *s = pstr_xcalloc(1, sizeof(*s));
    s->md = pcre2_match_data_create(32, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    s->js = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
    if (!s->md || !s->mctx) {
        rw_scratch_free(s);
        return NULL;
    }
    pcre2_set_match_limit(s->mctx, match_limit);
    pcre2_set_heap_limit(s->mctx, 64 * 1024); /* KiB: bounds the interpreter too */
    if (s->js)
        pcre2_jit_stack_assign(s->mctx, NULL, s->js);
    return s;
}

void rw_scratch_free(struct rw_scratch *s)
{
    if (!s)
        return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->js);
    free(s);
}

uint64_t rw_scratch_limited(const struct rw_scratch *s)
{
    return s->limited;
}

struct rw_tx *rw_tx_new(struct rw_ruleset *rs)
{
    struct rw_tx *tx = pstr_xcalloc(1, sizeof(*tx));
    rw_ruleset_ref(rs);
    tx->rs = rs;
    tx->stop_at = rs->nrules;
    tx->fired = pstr_xcalloc(rs->nrules + 1, 1);
    return tx;
}

void rw_tx_free(struct rw_tx *tx)
{
    if (!tx)
        return;
    rw_ruleset_unref(tx->rs);
    free(tx->fired);
    free(tx);
}

/* ---- matching ----------------------------------------------------------- */

static int rw_eval__match(struct rw_scratch *sc, const pcre2_code *re, const char *s, size_t len)
{
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, sc->md, sc->mctx);
    if (rc >= 0)
        return 1;
    if (rc != PCRE2_ERROR_NOMATCH)
        sc->limited++;
    return 0;
}

static int rw_eval__matchz(struct rw_scratch *sc, const pcre2_code *re, const char *s)
{
    return rw_eval__match(sc, re, s, strlen(s));
}

/* s/re/tpl/ on the first match; NULL when there is none. */
static char *rw_eval__subst(struct rw_scratch *sc, const pcre2_code *re, const char *s, const char *tpl)
{
    size_t len = strlen(s);
    if (!rw_eval__match(sc, re, s, len))
        return NULL;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
    uint32_t npairs = pcre2_get_ovector_count(sc->md);
    struct pstr out = PSTR_INIT;
    pstr_append(&out, s, ov[0]);
    for (const char *t = tpl; *t; t++) {
        if (*t != '$') {
            pstr_putc(&out, *t);
            continue;
        }
        if (t[1] == '$') {
            pstr_putc(&out, '$');
            t++;
            continue;
        }
        const char *d = t + 1;
        int brace = *d == '{';
        if (brace)
            d++;
        char *e;
        unsigned long g = strtoul(d, &e, 10);
        t = brace ? e : e - 1; /* the parser checked the template */
        if (g < npairs && ov[2 * g] != PCRE2_UNSET)
            pstr_append(&out, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
    }
    pstr_append(&out, s + ov[1], len - ov[1]);
    return pstr_steal(&out);
}

/* ASCII case-insensitive substring search (UTF-8 bytes compared as is). */
static int rw_eval__contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return 1;
    return n == 0;
}

/* ---- conditions -------------------------------------------------------------- */

static int rw_eval__header_matches(struct rw_scratch *sc, const struct rw_hdrs *h, const char *name,
                                   const pcre2_code *re)
{
    if (!h)
        return 0;
    for (size_t i = 0; i < h->n; i++) {
        if (h->f[i].deleted || strcasecmp(h->f[i].name, name) != 0)
            continue;
        char *d = rw_hdr_decode(h->f[i].raw, strlen(h->f[i].raw));
        int m = rw_eval__matchz(sc, re, d);
        free(d);
        if (m)
            return 1;
    }
    return 0;
}

static int rw_eval__cond(const struct rw_cond *c, const struct rw_env *env, struct rw_scratch *sc,
                         const struct rw_hdrs *h)
{
    int v = 0;
    switch (c->kind) {
    case RW_C_SENDER:
        v = rw_eval__matchz(sc, c->re, env->sender ? env->sender : "");
        break;
    case RW_C_RCPT:
        if (env->rcpt) {
            v = rw_eval__matchz(sc, c->re, env->rcpt);
        } else {
            for (size_t i = 0; i < env->nrcpts && !v; i++)
                v = rw_eval__matchz(sc, c->re, env->rcpts[i]);
        }
        break;
    case RW_C_CLIENT:
        v = cidr_match(c->nets, c->nnets, env->client_ip);
        break;
    case RW_C_HEADER:
        v = rw_eval__header_matches(sc, h, c->name, c->re);
        break;
    case RW_C_SYMBOL:
        v = env->has_symbol ? env->has_symbol(env->ud, c->name) : 0;
        break;
    case RW_C_SCORE: {
        double s = env->score ? env->score(env->ud) : 0.0;
        if (c->cmp[0] == '>')
            v = c->cmp[1] ? s >= c->num : s > c->num;
        else
            v = c->cmp[1] ? s <= c->num : s < c->num;
        break;
    }
    case RW_C_AUTH:
        v = env->authenticated;
        break;
    }
    return c->neg ? !v : v;
}

static int rw_eval__conds(const struct rw_rule *r, const struct rw_env *env, struct rw_scratch *sc,
                          const struct rw_hdrs *h)
{
    for (size_t i = 0; i < r->nconds; i++)
        if (!rw_eval__cond(&r->conds[i], env, sc, h))
            return 0;
    return 1;
}

/* ---- addresses ------------------------------------------------------------------ */

static char *rw_eval__lower(const char *s)
{
    char *p = pstr_xstrdup(s);
    for (char *q = p; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    return p;
}

/* One envelope rule's address transformation, without its conditions
 * (RW_KEEP, RW_CHANGED with *out, RW_SRS_BAD). */
static int rw_eval_addr(const struct rw_rule *r, const struct rw_env *env, struct rw_scratch *sc,
                        const char *addr, char **out)
{
    char *n = NULL;
    const char *at = strrchr(addr, '@');
    switch (r->op) {
    case RW_OP_MAP: {
        char *key = rw_eval__lower(addr);
        const char *v = rw_map_get(r->map, key);
        if (!v && at)
            v = rw_map_get(r->map, key + (at - addr));
        free(key);
        if (v && v[0] == '@') {
            struct pstr s = PSTR_INIT;
            pstr_append(&s, addr, at ? (size_t)(at - addr) : strlen(addr));
            pstr_puts(&s, v);
            n = pstr_steal(&s);
        } else if (v) {
            n = pstr_xstrdup(v);
        }
        break;
    }
    case RW_OP_REGEX:
        n = rw_eval__subst(sc, r->re, addr, r->text);
        break;
    case RW_OP_LOWER:
        n = rw_eval__lower(addr);
        break;
    case RW_OP_LOWER_DOMAIN:
        if (at) {
            n = pstr_xstrdup(addr);
            for (char *q = n + (at - addr); *q; q++)
                *q = (char)tolower((unsigned char)*q);
        }
        break;
    case RW_OP_STRIP_PLUS:
        if (at && addr[0] != '"') {
            const char *plus = memchr(addr, '+', (size_t)(at - addr));
            if (plus && plus > addr) {
                struct pstr s = PSTR_INIT;
                pstr_append(&s, addr, (size_t)(plus - addr));
                pstr_puts(&s, at);
                n = pstr_steal(&s);
            }
        }
        break;
    case RW_OP_SRS:
        if (env->srs && rw_srs_forward(env->srs, r->text, addr, env->now, &n) != 1)
            n = NULL;
        break;
    case RW_OP_SRS_REVERSE:
        if (env->srs) {
            int rc = rw_srs_reverse(env->srs, r->text, addr, env->now, &n);
            if (rc < 0)
                return RW_SRS_BAD;
            if (rc == 0)
                n = NULL;
        }
        break;
    }
    if (!n)
        return RW_KEEP;
    if (strcmp(n, addr) == 0) {
        free(n);
        return RW_KEEP;
    }
    *out = n;
    return RW_CHANGED;
}

static int rw_eval__envelope(struct rw_tx *tx, const struct rw_env *env0, struct rw_scratch *sc,
                             enum rw_target target, char **out, unsigned *line)
{
    const struct rw_ruleset *rs = tx->rs;
    struct rw_env env = *env0;
    char *cur = pstr_xstrdup(target == RW_TGT_SENDER ? env0->sender : env0->rcpt);
    int changed = 0;
    for (size_t i = 0; i < tx->stop_at && i < rs->nrules; i++) {
        const struct rw_rule *r = &rs->rules[i];
        if (target == RW_TGT_SENDER)
            env.sender = cur;
        else
            env.rcpt = cur;
        if (r->kind == RW_STOP) {
            if (rw_eval__conds(r, &env, sc, NULL)) {
                if (target == RW_TGT_SENDER)
                    tx->stop_at = i;
                break;
            }
            continue;
        }
        if (r->kind != RW_ADDR || r->target != target || !*cur)
            continue;
        if (!rw_eval__conds(r, &env, sc, NULL))
            continue;
        char *n = NULL;
        int rc = rw_eval_addr(r, &env, sc, cur, &n);
        if (rc == RW_SRS_BAD) {
            *line = r->line;
            *out = cur;
            return RW_SRS_BAD;
        }
        if (rc != RW_CHANGED)
            continue;
        free(cur);
        cur = n;
        changed = 1;
        *line = r->line;
        tx->fired[i] = 1;
        if (r->stop) {
            if (target == RW_TGT_SENDER)
                tx->stop_at = i + 1;
            break;
        }
    }
    if (!changed) {
        free(cur);
        return RW_KEEP;
    }
    *out = cur;
    return rw_addr_valid(cur) ? RW_CHANGED : RW_INVALID;
}

int rw_eval_sender(struct rw_tx *tx, const struct rw_env *env, struct rw_scratch *sc, char **out, unsigned *line)
{
    return rw_eval__envelope(tx, env, sc, RW_TGT_SENDER, out, line);
}

int rw_eval_rcpt(struct rw_tx *tx, const struct rw_env *env, struct rw_scratch *sc, char **out, unsigned *line)
{
    if (!env->rcpt)
        return RW_KEEP;
    return rw_eval__envelope(tx, env, sc, RW_TGT_RCPT, out, line);
}

/* ---- headers ------------------------------------------------------------------------ */

struct rw_eval__addr_ud {
    const struct rw_rule *r;
    const struct rw_env *env;
    struct rw_scratch *sc;
};

static int rw_eval__addr_cb(void *ud, const char *addr, char **out)
{
    struct rw_eval__addr_ud *u = ud;
    char *n = NULL;
    if (rw_eval_addr(u->r, u->env, u->sc, addr, &n) != RW_CHANGED)
        return 0;
    if (!rw_addr_valid(n)) { /* never write a broken address into a header */
        free(n);
        return 0;
    }
    *out = n;
    return 1;
}

static int rw_eval__lines_ok(const char *name, const char *raw)
{
    size_t line = strlen(name) + 1;
    for (const char *p = raw; *p; p++) {
        if (*p == '\n') {
            line = 0;
            continue;
        }
        if (*p != '\r' && ++line > RW_LINE_HARD)
            return 0;
    }
    return 1;
}

/* The header side of an envelope rule with the `headers` flag. */
static int rw_eval__addr_headers(const struct rw_rule *r, const struct rw_env *env, struct rw_scratch *sc,
                                 struct rw_hdrs *h)
{
    static const char *const sender_fields[] = {"From", NULL};
    static const char *const rcpt_fields[] = {"To", "Cc", NULL};
    const char *const *fields = r->target == RW_TGT_SENDER ? sender_fields : rcpt_fields;
    struct rw_eval__addr_ud ud = {r, env, sc};
    int fired = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (h->f[i].deleted)
            continue;
        int want = 0;
        for (size_t k = 0; fields[k]; k++)
            want |= strcasecmp(h->f[i].name, fields[k]) == 0;
        if (!want)
            continue;
        struct pstr out = PSTR_INIT;
        int n = rw_hdr_map_addrs(h->f[i].raw, rw_eval__addr_cb, &ud, &out);
        if (n > 0 && rw_eval__lines_ok(h->f[i].name, pstr_cstr(&out))) {
            rw_hdrs_set_raw(h, i, pstr_cstr(&out));
            fired = 1;
        }
        pstr_free(&out);
    }
    return fired;
}

/* Text for a header: leading and trailing blanks stay outside the encoded
 * words (a decoder would swallow them inside). */
static void rw_eval__encode_part(const char *text, struct pstr *out)
{
    size_t n = strlen(text), a = 0, b = n;
    while (a < n && (text[a] == ' ' || text[a] == '\t'))
        a++;
    while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t'))
        b--;
    pstr_append(out, text, a);
    char *core = pstr_xstrndup(text + a, b - a);
    char *enc = rw_hdr_encode(core);
    pstr_puts(out, enc);
    free(enc);
    free(core);
    pstr_append(out, text + b, n - b);
}

static void rw_eval__warn(struct pstr *warn, const struct rw_rule *r, const char *what)
{
    if (warn)
        pstr_printf(warn, "%srule at line %u: %s", warn->len ? "; " : "", r->line, what);
}

/* IP literals of a Received field's "from" clause in networks? */
static int rw_eval__received_internal(const struct rw_rule *r, const char *v)
{
    if (!r->nnets)
        return 0;
    size_t n = strlen(v);
    /* The "from" clause ends at " by " (the receiving host's part). */
    for (size_t i = 0; i + 4 <= n; i++)
        if ((v[i] == ' ' || v[i] == '\t') && strncasecmp(v + i + 1, "by", 2) == 0 &&
            (v[i + 3] == ' ' || v[i + 3] == '\t')) {
            n = i;
            break;
        }
    for (size_t i = 0; i < n; i++) {
        if (v[i] != '[')
            continue;
        const char *close = memchr(v + i, ']', n - i);
        if (!close)
            break;
        char *ip = pstr_xstrndup(v + i + 1, (size_t)(close - v) - i - 1);
        const char *p = ip;
        if (strncasecmp(p, "IPv6:", 5) == 0)
            p += 5;
        int in = cidr_match(r->nets, r->nnets, p);
        free(ip);
        if (in)
            return 1;
        i = (size_t)(close - v);
    }
    return 0;
}

static int rw_eval__header_rule(const struct rw_rule *r, struct rw_scratch *sc, struct rw_hdrs *h,
                                struct pstr *warn)
{
    int fired = 0;
    switch (r->kind) {
    case RW_HDR_ADD: {
        if (rw_hdrs_add(h, r->field, r->text) == 0)
            fired = 1;
        else
            rw_eval__warn(warn, r, "value cannot be folded under 998 octets");
        break;
    }
    case RW_HDR_REMOVE:
    case RW_STRIP_RECEIVED:
        for (size_t i = 0; i < h->n; i++) {
            const char *name = r->kind == RW_HDR_REMOVE ? r->field : "Received";
            if (h->f[i].deleted || strcasecmp(h->f[i].name, name) != 0)
                continue;
            int del = r->kind == RW_HDR_REMOVE && !r->re;
            if (!del) {
                char *d = rw_hdr_decode(h->f[i].raw, strlen(h->f[i].raw));
                if (r->kind == RW_HDR_REMOVE) {
                    del = rw_eval__matchz(sc, r->re, d);
                } else {
                    for (size_t k = 0; k < r->nres && !del; k++)
                        del = rw_eval__matchz(sc, r->res[k], d);
                    if (!del)
                        del = rw_eval__received_internal(r, d);
                }
                free(d);
            }
            if (del) {
                rw_hdrs_delete(h, i);
                fired = 1;
            }
        }
        break;
    case RW_HDR_REPLACE:
        for (size_t i = 0; i < h->n; i++) {
            if (h->f[i].deleted || strcasecmp(h->f[i].name, r->field) != 0)
                continue;
            char *d = rw_hdr_decode(h->f[i].raw, strlen(h->f[i].raw));
            char *n = rw_eval__subst(sc, r->re, d, r->text);
            if (n && strcmp(n, d) != 0) {
                int rc = rw_hdrs_set(h, i, n);
                if (rc > 0)
                    fired = 1;
                else if (rc < 0)
                    rw_eval__warn(warn, r, "new value cannot be folded under 998 octets");
            }
            free(n);
            free(d);
        }
        break;
    case RW_HDR_PREPEND:
    case RW_HDR_APPEND:
        for (size_t i = 0; i < h->n; i++) {
            if (h->f[i].deleted || strcasecmp(h->f[i].name, r->field) != 0)
                continue;
            char *u = rw_hdr_unfold(h->f[i].raw, strlen(h->f[i].raw));
            struct pstr v = PSTR_INIT;
            if (r->kind == RW_HDR_APPEND)
                pstr_puts(&v, u);
            rw_eval__encode_part(r->text, &v);
            if (r->kind == RW_HDR_PREPEND)
                pstr_puts(&v, u);
            int rc = rw_hdrs_set(h, i, pstr_cstr(&v));
            if (rc > 0)
                fired = 1;
            else if (rc < 0)
                rw_eval__warn(warn, r, "new value cannot be folded under 998 octets");
            pstr_free(&v);
            free(u);
        }
        break;
    case RW_SUBJECT_TAG: {
        long i = rw_hdrs_find(h, "Subject", 0);
        if (i < 0) {
            if (rw_hdrs_add(h, "Subject", r->text) == 0)
                fired = 1;
            break;
        }
        char *d = rw_hdr_decode(h->f[i].raw, strlen(h->f[i].raw));
        if (!rw_eval__contains(d, r->text)) {
            char *u = rw_hdr_unfold(h->f[i].raw, strlen(h->f[i].raw));
            struct pstr v = PSTR_INIT;
            rw_eval__encode_part(r->text, &v);
            if (*u)
                pstr_putc(&v, ' ');
            pstr_puts(&v, u);
            int rc = rw_hdrs_set(h, (size_t)i, pstr_cstr(&v));
            if (rc > 0)
                fired = 1;
            else if (rc < 0)
                rw_eval__warn(warn, r, "tagged subject cannot be folded under 998 octets");
            pstr_free(&v);
            free(u);
        }
        free(d);
        break;
    }
    case RW_ADDR:
    case RW_STOP:
        break;
    }
    return fired;
}

int rw_eval_headers(struct rw_tx *tx, const struct rw_env *env, struct rw_scratch *sc, struct rw_hdrs *h,
                    struct pstr *warn)
{
    const struct rw_ruleset *rs = tx->rs;
    int nfired = 0;
    for (size_t i = 0; i < tx->stop_at && i < rs->nrules; i++) {
        const struct rw_rule *r = &rs->rules[i];
        if (r->kind == RW_STOP) {
            if (rw_eval__conds(r, env, sc, h))
                break;
            continue;
        }
        if (r->kind == RW_ADDR) {
            if (r->headers && tx->fired[i])
                nfired += rw_eval__addr_headers(r, env, sc, h);
            continue;
        }
        if (!rw_eval__conds(r, env, sc, h))
            continue;
        if (rw_eval__header_rule(r, sc, h, warn)) {
            nfired++;
            if (r->stop)
                break;
        }
    }
    return nfired;
}
