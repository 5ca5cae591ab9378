/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_rules: rule-file parser, meta-expression compiler and rule set.
 *
 * Parsing is line by line and never stops at the first problem: an admin
 * running the linter wants every mistake of a file at once. Each rule name
 * has one builder entry, created by whichever line mentions it first
 * (a definition, a score or a describe), so scores may come before or
 * after the rule, in any file. A second definition of a name in the same
 * file is a mistake (duplicate); in a later file it is an override, which
 * is how a local file re-defines a shipped rule. The builder owns every
 * allocation until finish() hands the compiled set over (or frees it all
 * when there were errors).
 */
#include "spam_rules.h"
#include "spam_bayes.h"
#include "spam_prefilter.h"
#include "pstr.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SPAM_RULES_MAX_INCLUDE_DEPTH 16
#define SPAM_RULES_MAX_NAME 100
#define SPAM_RULES_MAX_SCORE 10000.0

_Static_assert(SPAM_RULES_BAYES_BANDS == SPAM_BAYES_NBANDS, "one score per Bayes band");

struct spam_rules__entry {
    struct spam_rule rule;   /* name, definition; rule.re / rule.prog owned */
    int defined;
    size_t def_file;         /* index in files of the definition */
    char **refs;             /* meta: names used, indexed by op.arg until resolved */
    size_t nrefs;
    int has_score;
    const char *mention_file; /* first score/describe line, for "unknown rule" */
    unsigned mention_line;
};

struct spam_rules_builder {
    struct spam_rules__entry *ents;
    size_t nents, capents;
    struct spam_rules_file *files;
    size_t nfiles, capfiles;
    struct spam_rules_errors errs;
    const char *stack[SPAM_RULES_MAX_INCLUDE_DEPTH]; /* real paths being read */
    size_t depth;
    /* `score BAYES_xx N` lines: the last one of a band wins, like rules. */
    double bayes_score[SPAM_BAYES_NBANDS];
    unsigned char bayes_set[SPAM_BAYES_NBANDS];
};

static const char *const spam_rules__type_names[SPAM_RULE_TYPE_COUNT] = {
    "header", "body", "rawbody", "full", "uri", "meta",
};

/* ---- errors ------------------------------------------------------------ */

static void spam_rules__err(struct spam_rules_builder *b, const char *file, unsigned line,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void spam_rules__err(struct spam_rules_builder *b, const char *file, unsigned line,
                            const char *fmt, ...)
{
    struct spam_rules_errors *e = &b->errs;
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 16;
        e->v = pstr_xrealloc(e->v, e->cap * sizeof(*e->v));
    }
    struct pstr s = PSTR_INIT;
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    pstr_puts(&s, tmp);
    e->v[e->n].file = pstr_xstrdup(file);
    e->v[e->n].line = line;
    e->v[e->n].msg = pstr_steal(&s);
    e->n++;
}

void spam_rules_errors_free(struct spam_rules_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++) {
        free(errs->v[i].file);
        free(errs->v[i].msg);
    }
    free(errs->v);
    errs->v = NULL;
    errs->n = errs->cap = 0;
}

/* ---- builder basics ---------------------------------------------------- */

struct spam_rules_builder *spam_rules_builder_new(void)
{
    return pstr_xcalloc(1, sizeof(struct spam_rules_builder));
}

/* Register a file; returns its index (existing one for the same path). */
static size_t spam_rules__file(struct spam_rules_builder *b, const char *path)
{
    for (size_t i = 0; i < b->nfiles; i++)
        if (strcmp(b->files[i].path, path) == 0)
            return i;
    if (b->nfiles == b->capfiles) {
        b->capfiles = b->capfiles ? b->capfiles * 2 : 8;
        b->files = pstr_xrealloc(b->files, b->capfiles * sizeof(*b->files));
    }
    struct spam_rules_file *f = &b->files[b->nfiles];
    memset(f, 0, sizeof(*f));
    f->path = pstr_xstrdup(path);
    return b->nfiles++;
}

static void spam_rules__rule_clear(struct spam_rule *r)
{
    free(r->field_name);
    r->field_name = NULL;
    free(r->pattern);
    r->pattern = NULL;
    if (r->re)
        pcre2_code_free(r->re);
    r->re = NULL;
    free(r->prog);
    r->prog = NULL;
    r->prog_len = 0;
}

static void spam_rules__entry_clear_refs(struct spam_rules__entry *e)
{
    for (size_t i = 0; i < e->nrefs; i++)
        free(e->refs[i]);
    free(e->refs);
    e->refs = NULL;
    e->nrefs = 0;
}

static struct spam_rules__entry *spam_rules__lookup(struct spam_rules_builder *b, const char *name)
{
    for (size_t i = 0; i < b->nents; i++)
        if (strcmp(b->ents[i].rule.name, name) == 0)
            return &b->ents[i];
    return NULL;
}

static struct spam_rules__entry *spam_rules__entry(struct spam_rules_builder *b, const char *name)
{
    struct spam_rules__entry *e = spam_rules__lookup(b, name);
    if (e)
        return e;
    if (b->nents == b->capents) {
        b->capents = b->capents ? b->capents * 2 : 64;
        b->ents = pstr_xrealloc(b->ents, b->capents * sizeof(*b->ents));
    }
    e = &b->ents[b->nents++];
    memset(e, 0, sizeof(*e));
    e->rule.name = pstr_xstrdup(name);
    e->rule.score = strncmp(name, "__", 2) == 0 ? 0.0 : 1.0;
    return e;
}

static void spam_rules__builder_free(struct spam_rules_builder *b)
{
    for (size_t i = 0; i < b->nents; i++) {
        spam_rules__rule_clear(&b->ents[i].rule);
        spam_rules__entry_clear_refs(&b->ents[i]);
        free(b->ents[i].rule.name);
        free(b->ents[i].rule.describe);
    }
    free(b->ents);
    for (size_t i = 0; i < b->nfiles; i++)
        free(b->files[i].path);
    free(b->files);
    spam_rules_errors_free(&b->errs);
    free(b);
}

/* ---- lexing helpers ---------------------------------------------------- */

/* The next blank-separated word of *p; advances *p past it and blanks. */
static int spam_rules__word(const char **p, const char *end, const char **w, size_t *wlen)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    const char *start = s;
    while (s < end && *s != ' ' && *s != '\t')
        s++;
    *w = start;
    *wlen = (size_t)(s - start);
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    *p = s;
    return *wlen > 0;
}

static int spam_rules__valid_name(const char *w, size_t n)
{
    if (n == 0 || n > SPAM_RULES_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)w[i]) || w[i] == '_'))
            return 0;
    return 1;
}

/*
 * Parse "/re/flags" or "m<d>re<d>flags" (<d> any punctuation; brackets
 * close with their pair) at the start of [p, end). The pattern text goes
 * to *pat (malloc'ed), the PCRE2 options to *opts. Returns NULL on
 * success, else a static error message.
 */
static const char *spam_rules__regex(const char *p, const char *end, char **pat, uint32_t *opts)
{
    char open, close;
    if (p < end && *p == '/') {
        open = close = '/';
        p++;
    } else if (end - p >= 2 && *p == 'm' && ispunct((unsigned char)p[1]) && p[1] != '\\') {
        open = p[1];
        switch (open) {
        case '{': close = '}'; break;
        case '(': close = ')'; break;
        case '[': close = ']'; break;
        case '<': close = '>'; break;
        default: close = open; break;
        }
        p += 2;
    } else {
        return "expected a regular expression /.../";
    }
    const char *start = p;
    int nest = 0;
    while (p < end) {
        if (*p == '\\' && p + 1 < end) {
            p += 2;
            continue;
        }
        if (open != close && *p == open)
            nest++;
        else if (*p == close) {
            if (nest == 0)
                break;
            nest--;
        }
        p++;
    }
    if (p >= end)
        return "unterminated regular expression";
    *pat = pstr_xstrndup(start, (size_t)(p - start));
    p++;
    uint32_t o = 0;
    for (; p < end && *p != ' ' && *p != '\t'; p++) {
        switch (*p) {
        case 'i': o |= PCRE2_CASELESS; break;
        case 'm': o |= PCRE2_MULTILINE; break;
        case 's': o |= PCRE2_DOTALL; break;
        case 'x': o |= PCRE2_EXTENDED; break;
        default:
            free(*pat);
            *pat = NULL;
            return "unknown regex flag (want i, m, s or x)";
        }
    }
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p != end) {
        free(*pat);
        *pat = NULL;
        return "unexpected text after the regular expression";
    }
    *opts = o;
    return NULL;
}

/*
 * Compile with the engine's fixed options; reports errors with the offset
 * in the pattern as written.
 *
 * Every pattern is wrapped as "(?C1)(?:PATTERN)": the callout runs at each
 * start position PCRE2 tries, which is where spam_eval checks the rule's
 * time budget. PCRE2's match limit only bounds the work from one start
 * position, so without this a hostile message of N bytes could cost N
 * times the limit. Start-of-pattern (*VERB)s are refused: they would be
 * misplaced by the wrapper and could lift the limits.
 */
#define SPAM_RULES_WRAP_PREFIX "(?C1)(?:"

static pcre2_code *spam_rules__compile(struct spam_rules_builder *b, const char *file, unsigned line,
                                       const char *pat, uint32_t opts)
{
    if (strncmp(pat, "(*", 2) == 0) {
        spam_rules__err(b, file, line, "bad regex /%s/: (*...) options are not allowed at offset 0", pat);
        return NULL;
    }
    struct pstr w = PSTR_INIT;
    pstr_puts(&w, SPAM_RULES_WRAP_PREFIX);
    pstr_puts(&w, pat);
    /* With /x a trailing comment would swallow the closing parenthesis. */
    pstr_puts(&w, (opts & PCRE2_EXTENDED) ? "\n)" : ")");
    int ec;
    PCRE2_SIZE off;
    /*
     * UTF mode so that (?i) and \w work on decoded (UTF-8) text, and
     * MATCH_INVALID_UTF because raw mail is full of invalid UTF-8 which
     * must never turn a match into an error.
     */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pstr_cstr(&w), w.len,
                                   opts | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_NEVER_BACKSLASH_C,
                                   &ec, &off, NULL);
    pstr_free(&w);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        size_t pre = strlen(SPAM_RULES_WRAP_PREFIX), plen = strlen(pat);
        off = off > pre ? off - pre : 0;
        if (off > plen)
            off = plen;
        spam_rules__err(b, file, line, "bad regex /%s/: %s at offset %zu", pat, (char *)msg, (size_t)off);
        return NULL;
    }
    /* Without JIT the interpreter still works (slower); not an error. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

/* ---- fields ------------------------------------------------------------ */

struct spam_rules__pseudo {
    const char *name;
    enum spam_field_kind kind;
};

static const struct spam_rules__pseudo spam_rules__pseudos[] = {
    {"ALL", SPAM_FIELD_ALL},
    {"ENV:from", SPAM_FIELD_ENV_FROM},
    {"ENV:rcpt", SPAM_FIELD_ENV_RCPT},
    {"CLIENT:ip", SPAM_FIELD_CLIENT_IP},
    {"CLIENT:helo", SPAM_FIELD_CLIENT_HELO},
    {"CLIENT:name", SPAM_FIELD_CLIENT_NAME},
    {"MIME:parts", SPAM_FIELD_MIME_PARTS},
    {"MIME:filenames", SPAM_FIELD_MIME_FILENAMES},
    {"HTML:hidden", SPAM_FIELD_HTML_HIDDEN},
    {"HTML:linkmismatch", SPAM_FIELD_HTML_MISMATCH},
};

/* Namespaces of the pseudo fields: "ENV:x" is never a header "ENV". */
static const char *const spam_rules__namespaces[] = {"ENV", "CLIENT", "MIME", "HTML"};

/* Parse a field spec into r; 0 or -1 (unknown field). */
static int spam_rules__field(const char *w, size_t n, int allow_mod, struct spam_rule *r)
{
    for (size_t i = 0; i < sizeof(spam_rules__pseudos) / sizeof(spam_rules__pseudos[0]); i++) {
        if (strlen(spam_rules__pseudos[i].name) == n && memcmp(spam_rules__pseudos[i].name, w, n) == 0) {
            r->field = spam_rules__pseudos[i].kind;
            r->mod = SPAM_MOD_DECODED;
            return 0;
        }
    }
    const char *colon = memchr(w, ':', n);
    size_t nlen = colon ? (size_t)(colon - w) : n;
    if (nlen == 0)
        return -1;
    for (size_t i = 0; i < sizeof(spam_rules__namespaces) / sizeof(spam_rules__namespaces[0]); i++)
        if (strlen(spam_rules__namespaces[i]) == nlen && memcmp(spam_rules__namespaces[i], w, nlen) == 0)
            return -1;
    for (size_t i = 0; i < nlen; i++)
        if (w[i] < 33 || w[i] > 126)
            return -1;
    enum spam_field_mod mod = SPAM_MOD_DECODED;
    if (colon) {
        if (!allow_mod)
            return -1;
        const char *m = colon + 1;
        size_t mlen = n - nlen - 1;
        if (mlen == 3 && memcmp(m, "raw", 3) == 0)
            mod = SPAM_MOD_RAW;
        else if (mlen == 4 && memcmp(m, "addr", 4) == 0)
            mod = SPAM_MOD_ADDR;
        else if (mlen == 4 && memcmp(m, "name", 4) == 0)
            mod = SPAM_MOD_NAME;
        else if (mlen == 5 && memcmp(m, "count", 5) == 0)
            mod = SPAM_MOD_COUNT;
        else
            return -1;
    }
    if (nlen == 4 && memcmp(w, "ToCc", 4) == 0) {
        r->field = SPAM_FIELD_TOCC;
    } else {
        r->field = SPAM_FIELD_HEADER;
        r->field_name = pstr_xstrndup(w, nlen);
    }
    r->mod = mod;
    return 0;
}

/* ---- meta expressions -------------------------------------------------- */

struct spam_rules__mp {
    const char *p, *end;
    struct spam_meta_op *ops;
    size_t nops, cap;
    char **refs;
    size_t nrefs;
    const char *err;
    char errbuf[160];
};

static void spam_rules__mp_emit(struct spam_rules__mp *m, enum spam_meta_opcode op, size_t arg, double num)
{
    if (m->nops == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 16;
        m->ops = pstr_xrealloc(m->ops, m->cap * sizeof(*m->ops));
    }
    m->ops[m->nops].op = op;
    m->ops[m->nops].arg = arg;
    m->ops[m->nops].num = num;
    m->nops++;
}

static void spam_rules__mp_ws(struct spam_rules__mp *m)
{
    while (m->p < m->end && (*m->p == ' ' || *m->p == '\t'))
        m->p++;
}

/* Consume `tok` if it is next (and, for "!" or "<", not the start of "!=" or "<="). */
static int spam_rules__mp_eat(struct spam_rules__mp *m, const char *tok)
{
    spam_rules__mp_ws(m);
    size_t n = strlen(tok);
    if ((size_t)(m->end - m->p) < n || memcmp(m->p, tok, n) != 0)
        return 0;
    if (n == 1 && (tok[0] == '!' || tok[0] == '<' || tok[0] == '>' || tok[0] == '=') && m->p + 1 < m->end &&
        m->p[1] == '=')
        return 0;
    m->p += n;
    return 1;
}

static void spam_rules__mp_fail(struct spam_rules__mp *m, const char *what)
{
    if (m->err)
        return;
    spam_rules__mp_ws(m);
    if (m->p >= m->end)
        snprintf(m->errbuf, sizeof(m->errbuf), "bad meta expression: %s at end", what);
    else
        snprintf(m->errbuf, sizeof(m->errbuf), "bad meta expression: %s at '%.*s'", what,
                 (int)(m->end - m->p < 20 ? m->end - m->p : 20), m->p);
    m->err = m->errbuf;
}

static void spam_rules__mp_or(struct spam_rules__mp *m, int depth);

static void spam_rules__mp_primary(struct spam_rules__mp *m, int depth)
{
    spam_rules__mp_ws(m);
    if (m->err)
        return;
    if (depth > 100) {
        spam_rules__mp_fail(m, "nested too deeply");
        return;
    }
    if (spam_rules__mp_eat(m, "(")) {
        spam_rules__mp_or(m, depth + 1);
        if (!m->err && !spam_rules__mp_eat(m, ")"))
            spam_rules__mp_fail(m, "expected ')'");
        return;
    }
    if (m->p < m->end && (isdigit((unsigned char)*m->p) || *m->p == '.')) {
        char buf[64];
        size_t n = 0;
        while (m->p + n < m->end && n < sizeof(buf) - 1 &&
               (isdigit((unsigned char)m->p[n]) || m->p[n] == '.'))
            n++;
        memcpy(buf, m->p, n);
        buf[n] = '\0';
        char *e;
        double v = strtod(buf, &e);
        if (*e != '\0') {
            spam_rules__mp_fail(m, "bad number");
            return;
        }
        m->p += n;
        spam_rules__mp_emit(m, SPAM_META_NUM, 0, v);
        return;
    }
    const char *s = m->p;
    while (m->p < m->end && (isalnum((unsigned char)*m->p) || *m->p == '_'))
        m->p++;
    if (m->p == s) {
        spam_rules__mp_fail(m, "expected a rule name, number or '('");
        return;
    }
    if ((size_t)(m->p - s) > SPAM_RULES_MAX_NAME) {
        spam_rules__mp_fail(m, "name too long");
        return;
    }
    m->refs = pstr_xrealloc(m->refs, (m->nrefs + 1) * sizeof(*m->refs));
    m->refs[m->nrefs] = pstr_xstrndup(s, (size_t)(m->p - s));
    spam_rules__mp_emit(m, SPAM_META_RULE, m->nrefs, 0);
    m->nrefs++;
}

static void spam_rules__mp_unary(struct spam_rules__mp *m, int depth)
{
    if (depth > 100) {
        spam_rules__mp_fail(m, "nested too deeply");
        return;
    }
    if (spam_rules__mp_eat(m, "!")) {
        spam_rules__mp_unary(m, depth + 1);
        spam_rules__mp_emit(m, SPAM_META_NOT, 0, 0);
    } else if (spam_rules__mp_eat(m, "-")) {
        spam_rules__mp_unary(m, depth + 1);
        spam_rules__mp_emit(m, SPAM_META_NEG, 0, 0);
    } else {
        spam_rules__mp_primary(m, depth);
    }
}

static void spam_rules__mp_mul(struct spam_rules__mp *m, int depth)
{
    spam_rules__mp_unary(m, depth);
    while (!m->err && spam_rules__mp_eat(m, "*")) {
        spam_rules__mp_unary(m, depth);
        spam_rules__mp_emit(m, SPAM_META_MUL, 0, 0);
    }
}

static void spam_rules__mp_add(struct spam_rules__mp *m, int depth)
{
    spam_rules__mp_mul(m, depth);
    while (!m->err) {
        enum spam_meta_opcode op;
        if (spam_rules__mp_eat(m, "+"))
            op = SPAM_META_ADD;
        else if (spam_rules__mp_eat(m, "-"))
            op = SPAM_META_SUB;
        else
            break;
        spam_rules__mp_mul(m, depth);
        spam_rules__mp_emit(m, op, 0, 0);
    }
}

static void spam_rules__mp_cmp(struct spam_rules__mp *m, int depth)
{
    static const struct {
        const char *tok;
        enum spam_meta_opcode op;
    } cmps[] = {
        {"<=", SPAM_META_LE}, {">=", SPAM_META_GE}, {"==", SPAM_META_EQ},
        {"!=", SPAM_META_NE}, {"<", SPAM_META_LT},  {">", SPAM_META_GT},
    };
    spam_rules__mp_add(m, depth);
    if (m->err)
        return;
    for (size_t i = 0; i < sizeof(cmps) / sizeof(cmps[0]); i++) {
        if (spam_rules__mp_eat(m, cmps[i].tok)) {
            spam_rules__mp_add(m, depth);
            spam_rules__mp_emit(m, cmps[i].op, 0, 0);
            return;
        }
    }
}

static void spam_rules__mp_and(struct spam_rules__mp *m, int depth)
{
    spam_rules__mp_cmp(m, depth);
    while (!m->err && spam_rules__mp_eat(m, "&&")) {
        spam_rules__mp_cmp(m, depth);
        spam_rules__mp_emit(m, SPAM_META_AND, 0, 0);
    }
}

static void spam_rules__mp_or(struct spam_rules__mp *m, int depth)
{
    spam_rules__mp_and(m, depth);
    while (!m->err && spam_rules__mp_eat(m, "||")) {
        spam_rules__mp_and(m, depth);
        spam_rules__mp_emit(m, SPAM_META_OR, 0, 0);
    }
}

/* ---- directives -------------------------------------------------------- */

/* Start (re)defining entry `name` from this line; NULL after reporting an error. */
static struct spam_rules__entry *spam_rules__define(struct spam_rules_builder *b, size_t fidx,
                                                    unsigned line, const char *name)
{
    const char *file = b->files[fidx].path;
    struct spam_rules__entry *e = spam_rules__lookup(b, name);
    if (e && e->defined && e->def_file == fidx) {
        spam_rules__err(b, file, line, "duplicate rule %s (first defined at %s:%u)", name,
                        e->rule.file, e->rule.line);
        return NULL;
    }
    if (strcmp(name, "GTUBE") == 0) {
        spam_rules__err(b, file, line, "GTUBE is built in and cannot be redefined");
        return NULL;
    }
    e = spam_rules__entry(b, name);
    /* An override in a later file replaces the definition, keeps score and text. */
    spam_rules__rule_clear(&e->rule);
    spam_rules__entry_clear_refs(e);
    e->defined = 0;
    e->rule.op = SPAM_OP_MATCH;
    e->rule.field = SPAM_FIELD_HEADER;
    e->rule.mod = SPAM_MOD_DECODED;
    e->def_file = fidx;
    e->rule.file = file;
    e->rule.line = line;
    return e;
}

static void spam_rules__line(struct spam_rules_builder *b, size_t fidx, unsigned line, const char *p,
                             const char *end);

static void spam_rules__include(struct spam_rules_builder *b, const char *from, unsigned line,
                                const char *arg, size_t len)
{
    char *rel = pstr_xstrndup(arg, len);
    struct pstr path = PSTR_INIT;
    if (rel[0] == '/') {
        pstr_puts(&path, rel);
    } else {
        const char *slash = strrchr(from, '/');
        if (slash)
            pstr_append(&path, from, (size_t)(slash - from + 1));
        pstr_puts(&path, rel);
    }
    free(rel);
    if (b->depth >= SPAM_RULES_MAX_INCLUDE_DEPTH) {
        spam_rules__err(b, from, line, "include nested too deeply");
    } else {
        char real[PATH_MAX];
        const char *key = realpath(pstr_cstr(&path), real) ? real : pstr_cstr(&path);
        int loop = 0;
        for (size_t i = 0; i < b->depth; i++)
            if (strcmp(b->stack[i], key) == 0)
                loop = 1;
        if (loop) {
            spam_rules__err(b, from, line, "include loop: %s includes itself", pstr_cstr(&path));
        } else {
            FILE *fp = fopen(pstr_cstr(&path), "r");
            if (!fp) {
                spam_rules__err(b, from, line, "cannot read include %s: %s", pstr_cstr(&path),
                                strerror(errno));
            } else {
                fclose(fp);
                spam_rules_builder_add_file(b, pstr_cstr(&path));
            }
        }
    }
    pstr_free(&path);
}

static void spam_rules__line(struct spam_rules_builder *b, size_t fidx, unsigned line, const char *p,
                             const char *end)
{
    const char *file = b->files[fidx].path;
    const char *w, *nm;
    size_t wlen, nmlen;
    if (!spam_rules__word(&p, end, &w, &wlen))
        return;
    if (wlen == 7 && memcmp(w, "include", 7) == 0) {
        if (p == end)
            spam_rules__err(b, file, line, "include needs a file name");
        else
            spam_rules__include(b, file, line, p, (size_t)(end - p));
        return;
    }
    enum spam_rule_type type = SPAM_RULE_TYPE_COUNT;
    int is_score = 0, is_desc = 0;
    for (int t = 0; t < SPAM_RULE_TYPE_COUNT; t++)
        if (strlen(spam_rules__type_names[t]) == wlen && memcmp(spam_rules__type_names[t], w, wlen) == 0)
            type = (enum spam_rule_type)t;
    if (wlen == 5 && memcmp(w, "score", 5) == 0)
        is_score = 1;
    else if (wlen == 8 && memcmp(w, "describe", 8) == 0)
        is_desc = 1;
    else if (type == SPAM_RULE_TYPE_COUNT) {
        spam_rules__err(b, file, line, "unknown directive '%.*s'", (int)(wlen > 40 ? 40 : wlen), w);
        return;
    }
    if (!spam_rules__word(&p, end, &nm, &nmlen)) {
        spam_rules__err(b, file, line, "%.*s needs a rule name", (int)wlen, w);
        return;
    }
    if (!spam_rules__valid_name(nm, nmlen)) {
        spam_rules__err(b, file, line, "bad rule name '%.*s' (letters, digits and _, at most %d)",
                        (int)(nmlen > 40 ? 40 : nmlen), nm, SPAM_RULES_MAX_NAME);
        return;
    }
    char name[SPAM_RULES_MAX_NAME + 1];
    memcpy(name, nm, nmlen);
    name[nmlen] = '\0';

    if (is_score) {
        const char *v;
        size_t vlen;
        if (!spam_rules__word(&p, end, &v, &vlen) || p != end || vlen > 30) {
            spam_rules__err(b, file, line, "score needs exactly one number");
            return;
        }
        char buf[32];
        memcpy(buf, v, vlen);
        buf[vlen] = '\0';
        char *e;
        double d = strtod(buf, &e);
        if (*e != '\0' || !isfinite(d) || fabs(d) > SPAM_RULES_MAX_SCORE) {
            spam_rules__err(b, file, line, "bad score '%s' (a number from -%g to %g)", buf,
                            SPAM_RULES_MAX_SCORE, SPAM_RULES_MAX_SCORE);
            return;
        }
        /* A band's name is not a rule: its score replaces the default of
         * spam_bayes.c. Another BAYES_ name is an ordinary rule name (a score
         * for it without a definition is reported at finish). */
        long band = spam_bayes_band_find(name, nmlen);
        if (band >= 0) {
            b->bayes_score[band] = d;
            b->bayes_set[band] = 1;
            return;
        }
        struct spam_rules__entry *en = spam_rules__entry(b, name);
        en->rule.score = d;
        en->has_score = 1;
        if (!en->mention_file) {
            en->mention_file = file;
            en->mention_line = line;
        }
        return;
    }
    if (is_desc) {
        if (p == end) {
            spam_rules__err(b, file, line, "describe needs a text");
            return;
        }
        struct spam_rules__entry *en = spam_rules__entry(b, name);
        free(en->rule.describe);
        en->rule.describe = pstr_xstrndup(p, (size_t)(end - p));
        if (!en->mention_file) {
            en->mention_file = file;
            en->mention_line = line;
        }
        return;
    }

    if (spam_bayes_band_find(name, nmlen) >= 0) {
        spam_rules__err(b, file, line,
                        "%s is a Bayes band, not a rule name (only 'score %s N' sets it)", name,
                        name);
        return;
    }
    struct spam_rule tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.type = type;
    char *pat = NULL;
    uint32_t opts = 0;
    const char *msg;
    if (type == SPAM_RULE_META) {
        struct spam_rules__mp m;
        memset(&m, 0, sizeof(m));
        m.p = p;
        m.end = end;
        if (p == end)
            spam_rules__mp_fail(&m, "empty expression");
        else
            spam_rules__mp_or(&m, 0);
        spam_rules__mp_ws(&m);
        if (!m.err && m.p != m.end)
            spam_rules__mp_fail(&m, "unexpected text");
        if (m.err) {
            spam_rules__err(b, file, line, "%s", m.err);
            free(m.ops);
            for (size_t i = 0; i < m.nrefs; i++)
                free(m.refs[i]);
            free(m.refs);
            return;
        }
        struct spam_rules__entry *en = spam_rules__define(b, fidx, line, name);
        if (!en) {
            free(m.ops);
            for (size_t i = 0; i < m.nrefs; i++)
                free(m.refs[i]);
            free(m.refs);
            return;
        }
        en->rule.type = SPAM_RULE_META;
        en->rule.prog = m.ops;
        en->rule.prog_len = m.nops;
        en->refs = m.refs;
        en->nrefs = m.nrefs;
        en->defined = 1;
        return;
    }
    if (type == SPAM_RULE_HEADER) {
        const char *f;
        size_t flen;
        if (!spam_rules__word(&p, end, &f, &flen)) {
            spam_rules__err(b, file, line, "header needs a field");
            return;
        }
        if (flen > 7 && memcmp(f, "exists:", 7) == 0) {
            if (p != end) {
                spam_rules__err(b, file, line, "unexpected text after exists:FIELD");
                return;
            }
            if (spam_rules__field(f + 7, flen - 7, 0, &tmp) < 0) {
                spam_rules__err(b, file, line, "unknown field '%.*s'", (int)(flen - 7 > 60 ? 60 : flen - 7),
                                f + 7);
                return;
            }
            tmp.op = SPAM_OP_EXISTS;
        } else {
            if (spam_rules__field(f, flen, 1, &tmp) < 0) {
                spam_rules__err(b, file, line, "unknown field '%.*s'", (int)(flen > 60 ? 60 : flen), f);
                return;
            }
            const char *o;
            size_t olen;
            if (!spam_rules__word(&p, end, &o, &olen) || olen != 2 ||
                (memcmp(o, "=~", 2) != 0 && memcmp(o, "!~", 2) != 0)) {
                spam_rules__err(b, file, line, "expected =~ or !~ after the field");
                free(tmp.field_name);
                return;
            }
            tmp.op = o[0] == '!' ? SPAM_OP_NOMATCH : SPAM_OP_MATCH;
            if ((msg = spam_rules__regex(p, end, &pat, &opts)) != NULL) {
                spam_rules__err(b, file, line, "%s", msg);
                free(tmp.field_name);
                return;
            }
        }
    } else if ((msg = spam_rules__regex(p, end, &pat, &opts)) != NULL) {
        spam_rules__err(b, file, line, "%s", msg);
        return;
    }
    if (pat) {
        tmp.re = spam_rules__compile(b, file, line, pat, opts);
        if (!tmp.re) {
            free(pat);
            free(tmp.field_name);
            return;
        }
        tmp.pattern = pat;
        tmp.opts = opts;
    }
    struct spam_rules__entry *en = spam_rules__define(b, fidx, line, name);
    if (!en) {
        spam_rules__rule_clear(&tmp);
        return;
    }
    en->rule.type = tmp.type;
    en->rule.field = tmp.field;
    en->rule.mod = tmp.mod;
    en->rule.field_name = tmp.field_name;
    en->rule.op = tmp.op;
    en->rule.pattern = tmp.pattern;
    en->rule.opts = tmp.opts;
    en->rule.re = tmp.re;
    en->defined = 1;
}

static void spam_rules__text(struct spam_rules_builder *b, size_t fidx, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    unsigned line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        const char *s = p, *e = le;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (s < e && *s != '#') {
            if (memchr(s, '\0', (size_t)(e - s)))
                spam_rules__err(b, b->files[fidx].path, line, "NUL byte in line");
            else
                spam_rules__line(b, fidx, line, s, e);
        }
        p = nl ? nl + 1 : end;
    }
}

void spam_rules_builder_add_text(struct spam_rules_builder *b, const char *file, const char *text,
                                 size_t len)
{
    size_t fidx = spam_rules__file(b, file);
    if (b->depth < SPAM_RULES_MAX_INCLUDE_DEPTH) {
        b->stack[b->depth++] = file;
        spam_rules__text(b, fidx, text, len);
        b->depth--;
    }
}

void spam_rules_builder_add_file(struct spam_rules_builder *b, const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        spam_rules__err(b, path, 0, "cannot read rule file: %s", strerror(errno));
        return;
    }
    struct pstr s = PSTR_INIT;
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
        pstr_append(&s, buf, n);
    int rerr = ferror(fp);
    fclose(fp);
    if (rerr) {
        spam_rules__err(b, path, 0, "cannot read rule file");
        pstr_free(&s);
        return;
    }
    size_t fidx = spam_rules__file(b, path);
    char real[PATH_MAX];
    char *key = pstr_xstrdup(realpath(path, real) ? real : path);
    if (b->depth < SPAM_RULES_MAX_INCLUDE_DEPTH) {
        b->stack[b->depth++] = key;
        spam_rules__text(b, fidx, pstr_cstr(&s), s.len);
        b->depth--;
    }
    free(key);
    pstr_free(&s);
}

/* ---- finishing --------------------------------------------------------- */

struct spam_rules__sortkey {
    size_t file;
    unsigned line;
    size_t seq;
};

static int spam_rules__errcmp(const void *a, const void *b)
{
    const struct spam_rules__sortkey *x = a, *y = b;
    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void spam_rules__sort_errors(struct spam_rules_builder *b)
{
    size_t n = b->errs.n;
    if (n < 2)
        return;
    struct spam_rules__sortkey *k = pstr_xcalloc(n, sizeof(*k));
    for (size_t i = 0; i < n; i++) {
        k[i].file = b->nfiles;
        for (size_t f = 0; f < b->nfiles; f++)
            if (strcmp(b->files[f].path, b->errs.v[i].file) == 0)
                k[i].file = f;
        k[i].line = b->errs.v[i].line;
        k[i].seq = i;
    }
    qsort(k, n, sizeof(*k), spam_rules__errcmp);
    struct spam_rules_error *v = pstr_xcalloc(n, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = b->errs.v[k[i].seq];
    free(b->errs.v);
    b->errs.v = v;
    b->errs.cap = n;
    free(k);
}

/* Depth-first ordering of metas; 0 white, 1 on the path, 2 done. */
static void spam_rules__visit(struct spam_rules_builder *b, struct spam_ruleset *rs, size_t i,
                              unsigned char *color, int *cyc)
{
    if (color[i] == 2)
        return;
    if (color[i] == 1) {
        if (!cyc[i]) {
            cyc[i] = 1;
            spam_rules__err(b, rs->rules[i].file, rs->rules[i].line, "circular meta: %s depends on itself",
                            rs->rules[i].name);
        }
        return;
    }
    color[i] = 1;
    const struct spam_rule *r = &rs->rules[i];
    for (size_t k = 0; k < r->prog_len; k++) {
        if (r->prog[k].op != SPAM_META_RULE)
            continue;
        size_t d = r->prog[k].arg;
        if (rs->rules[d].type == SPAM_RULE_META)
            spam_rules__visit(b, rs, d, color, cyc);
    }
    color[i] = 2;
    rs->meta_order[rs->nmeta++] = i;
}

struct spam_ruleset *spam_rules_builder_finish(struct spam_rules_builder *b, struct spam_rules_errors *errs)
{
    /* Mentioned but never defined. */
    for (size_t i = 0; i < b->nents; i++) {
        struct spam_rules__entry *e = &b->ents[i];
        if (!e->defined && e->mention_file) {
            if (strncmp(e->rule.name, "BAYES_", 6) == 0)
                spam_rules__err(
                    b, e->mention_file, e->mention_line,
                    "score or describe for unknown rule or Bayes band %s (the bands are "
                    "BAYES_00 05 20 40 50 60 80 95 99 999)",
                    e->rule.name);
            else
                spam_rules__err(b, e->mention_file, e->mention_line,
                                "score or describe for unknown rule %s", e->rule.name);
        }
    }
    struct spam_ruleset *rs = pstr_xcalloc(1, sizeof(*rs));
    atomic_init(&rs->refs, 1);
    for (size_t i = 0; i < SPAM_BAYES_NBANDS; i++)
        rs->bayes_score[i] = b->bayes_set[i] ? b->bayes_score[i] : spam_bayes_band_at(i)->score;
    size_t *map = pstr_xcalloc(b->nents, sizeof(*map));
    rs->rules = pstr_xcalloc(b->nents, sizeof(*rs->rules));
    for (size_t i = 0; i < b->nents; i++) {
        if (!b->ents[i].defined)
            continue;
        map[i] = rs->nrules;
        rs->rules[rs->nrules++] = b->ents[i].rule;
    }
    /* Resolve meta references to rule-set indices. */
    rs->jit = 1;
    for (size_t i = 0, j = 0; i < b->nents; i++) {
        struct spam_rules__entry *e = &b->ents[i];
        if (!e->defined)
            continue;
        struct spam_rule *r = &rs->rules[j++];
        rs->count[r->type]++;
        if (r->re) {
            size_t jsz = 0;
            if (pcre2_pattern_info(r->re, PCRE2_INFO_JITSIZE, &jsz) != 0 || jsz == 0)
                rs->jit = 0;
        }
        for (size_t k = 0; k < r->prog_len; k++) {
            if (r->prog[k].op != SPAM_META_RULE)
                continue;
            const char *ref = e->refs[r->prog[k].arg];
            struct spam_rules__entry *t = spam_rules__lookup(b, ref);
            if (!t || !t->defined) {
                spam_rules__err(b, r->file, r->line, "unknown rule %s in meta %s", ref, r->name);
                r->prog[k].arg = 0;
                r->prog[k].op = SPAM_META_NUM;
                r->prog[k].num = 0;
                continue;
            }
            r->prog[k].arg = map[t - b->ents];
        }
    }
    rs->meta_order = pstr_xcalloc(rs->count[SPAM_RULE_META] + 1, sizeof(size_t));
    unsigned char *color = pstr_xcalloc(rs->nrules + 1, 1);
    int *cyc = pstr_xcalloc(rs->nrules + 1, sizeof(int));
    for (size_t i = 0; i < rs->nrules; i++)
        if (rs->rules[i].type == SPAM_RULE_META)
            spam_rules__visit(b, rs, i, color, cyc);
    free(color);
    free(cyc);
    free(map);

    /* The rule set now owns the rules' memory; the entries give it up. */
    for (size_t i = 0; i < b->nents; i++) {
        spam_rules__entry_clear_refs(&b->ents[i]);
        if (b->ents[i].defined) {
            memset(&b->ents[i].rule, 0, sizeof(b->ents[i].rule));
        }
    }
    rs->files = b->files;
    rs->nfiles = b->nfiles;
    b->files = NULL;
    b->nfiles = 0;

    spam_rules__sort_errors(b);
    *errs = b->errs;
    memset(&b->errs, 0, sizeof(b->errs));
    int failed = errs->n > 0;
    spam_rules__builder_free(b);
    if (failed) {
        spam_ruleset_unref(rs);
        return NULL;
    }
    /* Built last, from the final rule indices; NULL is fine (PCRE2 only). */
    rs->pf = spam_prefilter_new(rs, rs->pf_why, sizeof rs->pf_why);
    return rs;
}

struct spam_ruleset *spam_rules_load(const char *path, struct spam_rules_errors *errs)
{
    struct spam_rules_builder *b = spam_rules_builder_new();
    spam_rules_builder_add_file(b, path);
    return spam_rules_builder_finish(b, errs);
}

/* ---- the rule set ------------------------------------------------------ */

void spam_ruleset_ref(struct spam_ruleset *rs)
{
    atomic_fetch_add_explicit(&rs->refs, 1, memory_order_relaxed);
}

void spam_ruleset_unref(struct spam_ruleset *rs)
{
    if (!rs || atomic_fetch_sub_explicit(&rs->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < rs->nrules; i++) {
        spam_rules__rule_clear(&rs->rules[i]);
        free(rs->rules[i].name);
        free(rs->rules[i].describe);
    }
    spam_prefilter_free(rs->pf);
    free(rs->rules);
    free(rs->meta_order);
    for (size_t i = 0; i < rs->nfiles; i++)
        free(rs->files[i].path);
    free(rs->files);
    free(rs);
}

long spam_ruleset_find(const struct spam_ruleset *rs, const char *name)
{
    for (size_t i = 0; i < rs->nrules; i++)
        if (strcmp(rs->rules[i].name, name) == 0)
            return (long)i;
    return -1;
}
