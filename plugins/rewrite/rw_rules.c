/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rw_rules: rule-file parser (see rw_rules.h; format in rules/README.md).
 *
 * A line is tokenised first (words, "quoted strings", /regex/flags), then
 * read as: ACTION ARGS... [headers] [stop] [if COND [and COND]...].
 * Each problem is recorded with its line and parsing goes on with the next
 * line, so one run reports every error. Nothing here touches the network;
 * the only I/O is reading the rule file and its map files.
 */
#include "rw_rules.h"

#include "rw_hdr.h"
#include "pstr.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RW_MAX_TOKENS 64

enum rw_tok_type { RW_TOK_WORD, RW_TOK_QUOTED, RW_TOK_REGEX };

struct rw_tok {
    enum rw_tok_type type;
    char *s;          /* owned: word, unquoted string, or pattern */
    uint32_t reflags; /* PCRE2 options from /re/flags */
};

struct rw_parser {
    const char *file;
    char *dir; /* for relative map paths */
    unsigned line;
    struct rw_errors *errs;
    struct rw_ruleset *rs;
    int bad_line;
};

/* ---- errors ----------------------------------------------------------- */

static void rw_rules__err_at(struct rw_errors *errs, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void rw_rules__err_at(struct rw_errors *errs, const char *file, unsigned line, const char *fmt, ...)
{
    if (!errs)
        return;
    if (errs->n == errs->cap) {
        errs->cap = errs->cap ? errs->cap * 2 : 8;
        errs->v = pstr_xrealloc(errs->v, errs->cap * sizeof(*errs->v));
    }
    struct pstr m = PSTR_INIT;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    pstr_puts(&m, buf);
    errs->v[errs->n++] = (struct rw_error){pstr_xstrdup(file), line, pstr_steal(&m)};
}

#define rw_rules__err(p, ...)                                                                           \
    do {                                                                                                \
        rw_rules__err_at((p)->errs, (p)->file, (p)->line, __VA_ARGS__);                                  \
        (p)->bad_line = 1;                                                                              \
    } while (0)

void rw_errors_free(struct rw_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++) {
        free(errs->v[i].file);
        free(errs->v[i].msg);
    }
    free(errs->v);
    errs->v = NULL;
    errs->n = errs->cap = 0;
}

/* ---- tokens --------------------------------------------------------------------- */

static void rw_toks_free(struct rw_tok *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(t[i].s);
}

/* "/.../" followed by nothing but letters (the flags) up to a blank; else
 * it is a word, like the path "/etc/sluice/senders.map". */
static int rw_rules__looks_regex(const char *s)
{
    const char *p = s + 1;
    while (*p && *p != '/') {
        if (*p == '\\' && p[1])
            p++;
        p++;
    }
    if (*p != '/')
        return 0;
    for (p++; *p && *p != ' ' && *p != '\t'; p++)
        if (!isalpha((unsigned char)*p))
            return 0;
    return 1;
}

/* Split a line; -1 after reporting a problem. */
static int rw_rules__tokenize(struct rw_parser *p, const char *s, struct rw_tok *t, size_t *nt)
{
    size_t n = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        if (n == RW_MAX_TOKENS) {
            rw_rules__err(p, "too many words on one line (at most %d)", RW_MAX_TOKENS);
            goto fail;
        }
        struct pstr v = PSTR_INIT;
        if (*s == '"') {
            s++;
            while (*s && *s != '"') {
                if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
                    s++;
                pstr_putc(&v, *s++);
            }
            if (*s != '"') {
                pstr_free(&v);
                rw_rules__err(p, "unterminated \"quoted string\"");
                goto fail;
            }
            s++;
            t[n].type = RW_TOK_QUOTED;
            t[n].reflags = 0;
        } else if (*s == '/' && rw_rules__looks_regex(s)) {
            s++;
            while (*s && *s != '/') {
                if (*s == '\\' && s[1] == '/') {
                    s++; /* "\/" is a slash in the pattern */
                } else if (*s == '\\' && s[1]) {
                    pstr_putc(&v, *s++);
                }
                pstr_putc(&v, *s++);
            }
            if (*s != '/') {
                pstr_free(&v);
                rw_rules__err(p, "unterminated /regex/");
                goto fail;
            }
            s++;
            uint32_t fl = 0;
            while (*s && *s != ' ' && *s != '\t') {
                switch (*s) {
                case 'i': fl |= PCRE2_CASELESS; break;
                case 'm': fl |= PCRE2_MULTILINE; break;
                case 's': fl |= PCRE2_DOTALL; break;
                case 'x': fl |= PCRE2_EXTENDED; break;
                default:
                    pstr_free(&v);
                    rw_rules__err(p, "unknown regex flag '%c' (want i, m, s or x)", *s);
                    goto fail;
                }
                s++;
            }
            if (v.len == 0) {
                pstr_free(&v);
                rw_rules__err(p, "empty /regex/");
                goto fail;
            }
            t[n].type = RW_TOK_REGEX;
            t[n].reflags = fl;
        } else {
            while (*s && *s != ' ' && *s != '\t')
                pstr_putc(&v, *s++);
            t[n].type = RW_TOK_WORD;
            t[n].reflags = 0;
        }
        t[n].s = pstr_steal(&v);
        n++;
    }
    *nt = n;
    return 0;
fail:
    rw_toks_free(t, n);
    *nt = 0;
    return -1;
}

/* ---- pieces ------------------------------------------------------------------------ */

static pcre2_code *rw_rules__regex(struct rw_parser *p, const struct rw_tok *t)
{
    int ec;
    PCRE2_SIZE off;
    if (strncmp(t->s, "(*", 2) == 0) {
        rw_rules__err(p, "(*VERB) options at the start of a pattern are not allowed");
        return NULL;
    }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)t->s, PCRE2_ZERO_TERMINATED,
                                   t->reflags | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        rw_rules__err(p, "bad regex /%s/: %s at offset %zu", t->s, (const char *)msg, (size_t)off);
        return NULL;
    }
    if (pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) != 0)
        p->rs->jit = 0;
    return re;
}

static int rw_rules__want_regex(struct rw_parser *p, const struct rw_tok *t, const char *what)
{
    if (!t || t->type != RW_TOK_REGEX) {
        rw_rules__err(p, "%s: want a /regex/%s%s", what, t ? ", got " : "", t ? t->s : "");
        return -1;
    }
    return 0;
}

static int rw_rules__field_name(struct rw_parser *p, const struct rw_tok *t)
{
    if (!t || t->type != RW_TOK_WORD) {
        rw_rules__err(p, "want a header field name");
        return -1;
    }
    size_t n = strlen(t->s);
    if (n == 0 || n > 76)
        goto bad;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t->s[i];
        if (c <= 32 || c >= 127 || c == ':')
            goto bad;
    }
    return 0;
bad:
    rw_rules__err(p, "bad header field name '%s' (printable ASCII without ':', 1 to 76 characters)", t->s);
    return -1;
}

static int rw_rules__value(struct rw_parser *p, const struct rw_tok *t, const char *what)
{
    if (!t || t->type == RW_TOK_REGEX) {
        rw_rules__err(p, "%s: want a value (a word or a \"quoted string\")", what);
        return -1;
    }
    for (const unsigned char *c = (const unsigned char *)t->s; *c; c++)
        if (*c < 0x20 && *c != '\t') {
            rw_rules__err(p, "%s: control characters are not allowed", what);
            return -1;
        }
    if (strlen(t->s) > 900) {
        rw_rules__err(p, "%s: longer than 900 characters", what);
        return -1;
    }
    return 0;
}

/* A replacement template: $N, ${N}, $$. Checks group numbers against the
 * pattern; for addresses also that the literal text can be part of one. */
static int rw_rules__template(struct rw_parser *p, const char *tpl, pcre2_code *re, int addr)
{
    uint32_t groups = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
    for (const char *s = tpl; *s; s++) {
        if (*s == '$') {
            if (s[1] == '$') {
                s++;
                continue;
            }
            const char *d = s + 1;
            int brace = *d == '{';
            if (brace)
                d++;
            if (!isdigit((unsigned char)*d)) {
                rw_rules__err(p, "replacement: '$' must be followed by a group number or '$'");
                return -1;
            }
            unsigned long g = strtoul(d, (char **)&d, 10);
            if (brace && *d != '}') {
                rw_rules__err(p, "replacement: unterminated ${...}");
                return -1;
            }
            if (g > groups) {
                rw_rules__err(p, "replacement uses $%lu but the pattern has %u group%s", g, groups,
                              groups == 1 ? "" : "s");
                return -1;
            }
            s = brace ? d : d - 1;
            continue;
        }
        unsigned char c = (unsigned char)*s;
        if (addr && (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == ',' || c == ';' || c == '(' ||
                     c == ')' || c == '[' || c == ']' || c == '\\')) {
            rw_rules__err(p, "replacement would make an invalid address: '%c' is not allowed in one",
                          c <= 0x20 ? '?' : c);
            return -1;
        }
    }
    return 0;
}

static char *rw_rules__path(struct rw_parser *p, const char *name)
{
    if (name[0] == '/' || !p->dir)
        return pstr_xstrdup(name);
    struct pstr s = PSTR_INIT;
    pstr_printf(&s, "%s/%s", p->dir, name);
    return pstr_steal(&s);
}

static void rw_rules__add_file(struct rw_ruleset *rs, const char *path)
{
    rs->files = pstr_xrealloc(rs->files, (rs->nfiles + 1) * sizeof(char *));
    rs->files[rs->nfiles++] = pstr_xstrdup(path);
}

static void rw_rules__lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static int rw_map__cmp(const void *a, const void *b)
{
    return strcmp(((const struct rw_map_entry *)a)->key, ((const struct rw_map_entry *)b)->key);
}

const char *rw_map_get(const struct rw_map *m, const char *key)
{
    struct rw_map_entry k = {(char *)key, NULL, 0};
    const struct rw_map_entry *e = bsearch(&k, m->e, m->n, sizeof(*m->e), rw_map__cmp);
    return e ? e->value : NULL;
}

static void rw_map_free(struct rw_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].key);
        free(m->e[i].value);
    }
    free(m->e);
    free(m->path);
    free(m);
}

/* A side of a map line: "user@domain" or "@domain". */
static int rw_map__side_ok(const char *s)
{
    if (s[0] == '@') {
        struct pstr t = PSTR_INIT;
        pstr_printf(&t, "x%s", s);
        int ok = rw_addr_valid(pstr_cstr(&t));
        pstr_free(&t);
        return ok;
    }
    return rw_addr_valid(s);
}

/* Map file: "KEY VALUE" lines, # comments. Errors as MAPFILE:LINE. */
static struct rw_map *rw_map_load(struct rw_parser *p, const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        rw_rules__err(p, "cannot read map file %s: %s", path, strerror(errno));
        return NULL;
    }
    struct rw_map *m = pstr_xcalloc(1, sizeof(*m));
    m->path = pstr_xstrdup(path);
    size_t cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    unsigned ln = 0;
    int bad = 0;
    while (getline(&line, &lcap, fp) > 0) {
        ln++;
        char *save = NULL;
        char *k = strtok_r(line, " \t\r\n", &save);
        if (!k || k[0] == '#')
            continue;
        char *v = strtok_r(NULL, " \t\r\n", &save);
        char *extra = v ? strtok_r(NULL, " \t\r\n", &save) : NULL;
        if (!v || (extra && extra[0] != '#')) {
            rw_rules__err_at(p->errs, path, ln, "want two fields: ADDRESS-OR-@DOMAIN REPLACEMENT");
            bad = 1;
            continue;
        }
        if (!rw_map__side_ok(k)) {
            rw_rules__err_at(p->errs, path, ln, "bad key '%s' (want user@domain or @domain)", k);
            bad = 1;
            continue;
        }
        if (!rw_map__side_ok(v)) {
            rw_rules__err_at(p->errs, path, ln, "'%s' is not a valid address (want user@domain or @domain)", v);
            bad = 1;
            continue;
        }
        if (m->n == cap) {
            cap = cap ? cap * 2 : 64;
            m->e = pstr_xrealloc(m->e, cap * sizeof(*m->e));
        }
        m->e[m->n].key = pstr_xstrdup(k);
        rw_rules__lower(m->e[m->n].key);
        m->e[m->n].value = pstr_xstrdup(v);
        m->e[m->n].line = ln;
        m->n++;
    }
    free(line);
    fclose(fp);
    if (m->n > 0) /* m->e is NULL for an empty map */
        qsort(m->e, m->n, sizeof(*m->e), rw_map__cmp);
    for (size_t i = 1; i < m->n; i++)
        if (strcmp(m->e[i].key, m->e[i - 1].key) == 0) {
            rw_rules__err_at(p->errs, path, m->e[i].line > m->e[i - 1].line ? m->e[i].line : m->e[i - 1].line,
                             "key '%s' is listed twice", m->e[i].key);
            bad = 1;
        }
    if (bad) {
        p->bad_line = 1;
        rw_map_free(m);
        return NULL;
    }
    return m;
}

static int rw_rules__nets(struct rw_parser *p, const char *list, struct cidr **out, size_t *n)
{
    char *dup = pstr_xstrdup(list), *save = NULL;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        struct cidr net;
        char why[128];
        if (cidr_parse(tok, CIDR_HOST_BITS_OK, &net, why, sizeof why) < 0) {
            rw_rules__err(p, "bad network '%s' (want an address or CIDR, e.g. 10.0.0.0/8)", tok);
            free(dup);
            return -1;
        }
        *out = pstr_xrealloc(*out, (*n + 1) * sizeof(**out));
        (*out)[(*n)++] = net;
    }
    free(dup);
    if (*n == 0) {
        rw_rules__err(p, "want a network");
        return -1;
    }
    return 0;
}

/* ---- conditions ------------------------------------------------------------------------ */

static void rw_cond_free(struct rw_cond *c)
{
    pcre2_code_free(c->re);
    free(c->name);
    free(c->nets);
}

/* Conditions from t[i..n): COND [and COND]... */
static int rw_rules__conds(struct rw_parser *p, struct rw_rule *r, struct rw_tok *t, size_t i, size_t n)
{
    if (i >= n) {
        rw_rules__err(p, "'if' without a condition");
        return -1;
    }
    while (i < n) {
        struct rw_cond c;
        memset(&c, 0, sizeof(c));
        if (t[i].type == RW_TOK_WORD && strcmp(t[i].s, "not") == 0) {
            c.neg = 1;
            i++;
        }
        if (i >= n || t[i].type != RW_TOK_WORD) {
            rw_rules__err(p, "want a condition (sender, recipient, client, header, symbol, score, authenticated)");
            return -1;
        }
        const char *w = t[i++].s;
        if (strcmp(w, "sender") == 0 || strcmp(w, "recipient") == 0) {
            c.kind = w[0] == 's' ? RW_C_SENDER : RW_C_RCPT;
            if (rw_rules__want_regex(p, i < n ? &t[i] : NULL, w) < 0 || !(c.re = rw_rules__regex(p, &t[i])))
                return -1;
            i++;
            if (c.kind == RW_C_RCPT && r->kind == RW_ADDR && r->target == RW_TGT_SENDER) {
                rw_cond_free(&c);
                rw_rules__err(p, "a sender rule runs at MAIL FROM, before any recipient is known: "
                                 "'recipient' cannot be its condition");
                return -1;
            }
        } else if (strcmp(w, "client") == 0) {
            c.kind = RW_C_CLIENT;
            if (i >= n || t[i].type != RW_TOK_WORD) {
                rw_rules__err(p, "client: want a network list (e.g. 10.0.0.0/8,192.168.0.0/16)");
                return -1;
            }
            if (rw_rules__nets(p, t[i].s, &c.nets, &c.nnets) < 0) {
                rw_cond_free(&c);
                return -1;
            }
            i++;
        } else if (strcmp(w, "header") == 0) {
            c.kind = RW_C_HEADER;
            if (r->kind == RW_ADDR) {
                rw_rules__err(p, "envelope rules run before the message arrives: 'header' cannot be their "
                                 "condition");
                return -1;
            }
            if (rw_rules__field_name(p, i < n ? &t[i] : NULL) < 0)
                return -1;
            c.name = pstr_xstrdup(t[i++].s);
            if (rw_rules__want_regex(p, i < n ? &t[i] : NULL, "header condition") < 0 ||
                !(c.re = rw_rules__regex(p, &t[i]))) {
                rw_cond_free(&c);
                return -1;
            }
            i++;
        } else if (strcmp(w, "symbol") == 0) {
            c.kind = RW_C_SYMBOL;
            if (i >= n || t[i].type != RW_TOK_WORD) {
                rw_rules__err(p, "symbol: want a symbol name");
                return -1;
            }
            c.name = pstr_xstrdup(t[i++].s);
        } else if (strcmp(w, "score") == 0) {
            c.kind = RW_C_SCORE;
            if (i + 1 >= n || t[i].type != RW_TOK_WORD ||
                (strcmp(t[i].s, ">") && strcmp(t[i].s, ">=") && strcmp(t[i].s, "<") && strcmp(t[i].s, "<="))) {
                rw_rules__err(p, "score: want 'score >|>=|<|<= NUMBER'");
                return -1;
            }
            strcpy(c.cmp, t[i++].s);
            char *e;
            errno = 0;
            c.num = strtod(t[i].s, &e);
            if (e == t[i].s || *e || errno) {
                rw_rules__err(p, "score: '%s' is not a number", t[i].s);
                return -1;
            }
            i++;
        } else if (strcmp(w, "authenticated") == 0) {
            c.kind = RW_C_AUTH;
        } else {
            rw_rules__err(p, "unknown condition '%s' (want sender, recipient, client, header, symbol, score, "
                             "authenticated)",
                          w);
            return -1;
        }
        r->conds = pstr_xrealloc(r->conds, (r->nconds + 1) * sizeof(*r->conds));
        r->conds[r->nconds++] = c;
        if (i < n) {
            if (t[i].type != RW_TOK_WORD || strcmp(t[i].s, "and") != 0) {
                rw_rules__err(p, "want 'and' between conditions, got '%s'", t[i].s);
                return -1;
            }
            if (++i >= n) {
                rw_rules__err(p, "'and' without a condition");
                return -1;
            }
        }
    }
    return 0;
}

/* ---- rules ------------------------------------------------------------------------------ */

static void rw_rule_free(struct rw_rule *r)
{
    free(r->field);
    pcre2_code_free(r->re);
    free(r->text);
    rw_map_free(r->map);
    free(r->nets);
    for (size_t i = 0; i < r->nres; i++)
        pcre2_code_free(r->res[i]);
    free(r->res);
    for (size_t i = 0; i < r->nconds; i++)
        rw_cond_free(&r->conds[i]);
    free(r->conds);
}

static int rw_rules__is(const struct rw_tok *t, const char *w)
{
    return t->type == RW_TOK_WORD && strcmp(t->s, w) == 0;
}

/* The action part t[0..end); returns 0 or -1 (reported). */
static int rw_rules__action(struct rw_parser *p, struct rw_rule *r, struct rw_tok *t, size_t end)
{
    const char *a = t[0].s;
    if (t[0].type != RW_TOK_WORD)
        goto unknown;
    if (strcmp(a, "header") == 0) {
        if (end < 2 || t[1].type != RW_TOK_WORD) {
            rw_rules__err(p, "header: want add, remove, replace, prepend or append");
            return -1;
        }
        const char *op = t[1].s;
        if (rw_rules__field_name(p, end > 2 ? &t[2] : NULL) < 0)
            return -1;
        r->field = pstr_xstrdup(t[2].s);
        if (strcmp(op, "add") == 0 || strcmp(op, "prepend") == 0 || strcmp(op, "append") == 0) {
            r->kind = op[0] == 'a' ? (op[1] == 'd' ? RW_HDR_ADD : RW_HDR_APPEND) : RW_HDR_PREPEND;
            if (end != 4) {
                rw_rules__err(p, "header %s NAME VALUE: want one value (quote it when it has spaces)", op);
                return -1;
            }
            if (rw_rules__value(p, &t[3], op) < 0)
                return -1;
            r->text = pstr_xstrdup(t[3].s);
        } else if (strcmp(op, "remove") == 0) {
            r->kind = RW_HDR_REMOVE;
            if (end > 4) {
                rw_rules__err(p, "header remove NAME [/regex/]: too many arguments");
                return -1;
            }
            if (end == 4 && (rw_rules__want_regex(p, &t[3], "header remove NAME [/regex/]") < 0 ||
                             !(r->re = rw_rules__regex(p, &t[3]))))
                return -1;
        } else if (strcmp(op, "replace") == 0) {
            r->kind = RW_HDR_REPLACE;
            if (end != 5) {
                rw_rules__err(p, "header replace NAME /regex/ REPLACEMENT: want a regex and a replacement");
                return -1;
            }
            if (rw_rules__want_regex(p, &t[3], "header replace") < 0 || !(r->re = rw_rules__regex(p, &t[3])))
                return -1;
            if (rw_rules__value(p, &t[4], "replacement") < 0 || rw_rules__template(p, t[4].s, r->re, 0) < 0)
                return -1;
            r->text = pstr_xstrdup(t[4].s);
        } else {
            rw_rules__err(p, "header: unknown operation '%s' (want add, remove, replace, prepend or append)", op);
            return -1;
        }
        return 0;
    }
    if (strcmp(a, "subject-tag") == 0) {
        r->kind = RW_SUBJECT_TAG;
        if (end != 2) {
            rw_rules__err(p, "subject-tag: want one tag (quote it when it has spaces)");
            return -1;
        }
        if (rw_rules__value(p, &t[1], "subject-tag") < 0)
            return -1;
        if (!t[1].s[0]) {
            rw_rules__err(p, "subject-tag: the tag is empty");
            return -1;
        }
        r->text = pstr_xstrdup(t[1].s);
        return 0;
    }
    if (strcmp(a, "strip-received") == 0) {
        r->kind = RW_STRIP_RECEIVED;
        if (end < 2) {
            rw_rules__err(p, "strip-received: want networks and/or /regex/ patterns");
            return -1;
        }
        for (size_t i = 1; i < end; i++) {
            if (t[i].type == RW_TOK_REGEX) {
                pcre2_code *re = rw_rules__regex(p, &t[i]);
                if (!re)
                    return -1;
                r->res = pstr_xrealloc(r->res, (r->nres + 1) * sizeof(*r->res));
                r->res[r->nres++] = re;
            } else if (rw_rules__nets(p, t[i].s, &r->nets, &r->nnets) < 0) {
                return -1;
            }
        }
        return 0;
    }
    if (strcmp(a, "sender") == 0 || strcmp(a, "recipient") == 0) {
        r->kind = RW_ADDR;
        r->target = a[0] == 's' ? RW_TGT_SENDER : RW_TGT_RCPT;
        if (end < 2) {
            rw_rules__err(p, "%s: want map FILE, /regex/ REPLACEMENT, lowercase, lowercase-domain, strip-plus, "
                             "srs DOMAIN or srs-reverse DOMAIN",
                          a);
            return -1;
        }
        if (t[1].type == RW_TOK_REGEX) {
            r->op = RW_OP_REGEX;
            if (end != 3) {
                rw_rules__err(p, "%s /regex/ REPLACEMENT: want one replacement", a);
                return -1;
            }
            if (!(r->re = rw_rules__regex(p, &t[1])))
                return -1;
            if (rw_rules__value(p, &t[2], "replacement") < 0 || rw_rules__template(p, t[2].s, r->re, 1) < 0)
                return -1;
            r->text = pstr_xstrdup(t[2].s);
            return 0;
        }
        const char *op = t[1].s;
        if (strcmp(op, "map") == 0) {
            r->op = RW_OP_MAP;
            if (end != 3) {
                rw_rules__err(p, "%s map FILE: want one file", a);
                return -1;
            }
            char *path = rw_rules__path(p, t[2].s);
            r->map = rw_map_load(p, path);
            if (r->map)
                rw_rules__add_file(p->rs, path);
            free(path);
            return r->map ? 0 : -1;
        }
        if (strcmp(op, "lowercase") == 0 || strcmp(op, "lowercase-domain") == 0 || strcmp(op, "strip-plus") == 0) {
            r->op = strcmp(op, "lowercase") == 0 ? RW_OP_LOWER
                    : op[0] == 'l'               ? RW_OP_LOWER_DOMAIN
                                                 : RW_OP_STRIP_PLUS;
            if (end != 2) {
                rw_rules__err(p, "%s %s takes no argument", a, op);
                return -1;
            }
            return 0;
        }
        if (strcmp(op, "srs") == 0 || strcmp(op, "srs-reverse") == 0) {
            r->op = op[3] ? RW_OP_SRS_REVERSE : RW_OP_SRS;
            if (r->op == RW_OP_SRS && r->target != RW_TGT_SENDER) {
                rw_rules__err(p, "srs rewrites the sender: use 'sender srs DOMAIN' (and 'recipient srs-reverse "
                                 "DOMAIN' for bounces)");
                return -1;
            }
            if (r->op == RW_OP_SRS_REVERSE && r->target != RW_TGT_RCPT) {
                rw_rules__err(p, "srs-reverse rewrites bounce recipients: use 'recipient srs-reverse DOMAIN'");
                return -1;
            }
            struct pstr probe = PSTR_INIT;
            if (end == 3)
                pstr_printf(&probe, "x@%s", t[2].s);
            if (end != 3 || !rw_addr_valid(pstr_cstr(&probe))) {
                pstr_free(&probe);
                rw_rules__err(p, "%s %s: want the forwarding domain (e.g. fwd.example.org)", a, op);
                return -1;
            }
            pstr_free(&probe);
            r->text = pstr_xstrdup(t[2].s);
            p->rs->uses_srs = 1;
            return 0;
        }
        rw_rules__err(p, "%s: unknown operation '%s'", a, op);
        return -1;
    }
    if (strcmp(a, "stop") == 0) {
        r->kind = RW_STOP;
        if (end != 1) {
            rw_rules__err(p, "stop takes no argument (conditions go after 'if')");
            return -1;
        }
        return 0;
    }
unknown:
    rw_rules__err(p, "unknown rule '%s' (want header, subject-tag, strip-received, sender, recipient or stop)", a);
    return -1;
}

static void rw_rules__line(struct rw_parser *p, const char *text)
{
    struct rw_tok t[RW_MAX_TOKENS];
    size_t n = 0;
    if (rw_rules__tokenize(p, text, t, &n) < 0 || n == 0)
        return;
    struct rw_rule r;
    memset(&r, 0, sizeof(r));
    r.line = p->line;
    /* The action ends at the first flag word or "if". A quoted "if" or
     * "stop" is a value, not a keyword. */
    size_t end = n, cond = 0;
    for (size_t i = 1; i < n; i++)
        if (rw_rules__is(&t[i], "if")) {
            cond = i + 1;
            end = i;
            break;
        }
    while (end > 1 && (rw_rules__is(&t[end - 1], "stop") || rw_rules__is(&t[end - 1], "headers"))) {
        if (t[end - 1].s[0] == 's')
            r.stop = 1;
        else
            r.headers = 1;
        end--;
    }
    int rc = rw_rules__action(p, &r, t, end);
    if (rc == 0 && r.headers && r.kind != RW_ADDR) {
        rw_rules__err(p, "the 'headers' flag belongs to sender and recipient rules");
        rc = -1;
    }
    if (rc == 0 && r.headers && (r.op == RW_OP_SRS || r.op == RW_OP_SRS_REVERSE)) {
        rw_rules__err(p, "SRS rewrites the envelope only: 'headers' makes no sense here");
        rc = -1;
    }
    if (rc == 0 && r.kind == RW_STOP && r.stop) {
        rw_rules__err(p, "'stop stop'");
        rc = -1;
    }
    if (rc == 0 && cond)
        rc = rw_rules__conds(p, &r, t, cond, n);
    rw_toks_free(t, n);
    if (rc < 0 || p->bad_line) {
        rw_rule_free(&r);
        return;
    }
    struct rw_ruleset *rs = p->rs;
    rs->rules = pstr_xrealloc(rs->rules, (rs->nrules + 1) * sizeof(*rs->rules));
    rs->rules[rs->nrules++] = r;
}

struct rw_ruleset *rw_rules_parse(const char *text, size_t len, const char *file, struct rw_errors *errs)
{
    struct rw_parser p = {.file = file ? file : "-", .errs = errs};
    p.rs = pstr_xcalloc(1, sizeof(*p.rs));
    atomic_init(&p.rs->refs, 1);
    p.rs->jit = 1;
    const char *slash = file ? strrchr(file, '/') : NULL;
    if (slash)
        p.dir = pstr_xstrndup(file, (size_t)(slash - file) + (slash == file));
    if (file)
        rw_rules__add_file(p.rs, file);
    size_t before = errs ? errs->n : 0;
    int failed = 0;
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len;
        p.line++;
        char *line = pstr_xstrndup(text + i, e - i);
        size_t ll = strlen(line);
        if (ll != e - i) {
            rw_rules__err(&p, "NUL byte in the line");
        } else {
            while (ll > 0 && (line[ll - 1] == '\r' || line[ll - 1] == ' ' || line[ll - 1] == '\t'))
                line[--ll] = 0;
            const char *s = line;
            while (*s == ' ' || *s == '\t')
                s++;
            if (*s && *s != '#')
                rw_rules__line(&p, s);
        }
        free(line);
        failed |= p.bad_line;
        p.bad_line = 0;
        i = nl ? e + 1 : len;
    }
    free(p.dir);
    if (failed || (errs && errs->n > before)) {
        rw_ruleset_unref(p.rs);
        return NULL;
    }
    return p.rs;
}

struct rw_ruleset *rw_rules_load(const char *path, struct rw_errors *errs)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        rw_rules__err_at(errs, path, 0, "cannot read the rule file: %s", strerror(errno));
        return NULL;
    }
    struct pstr s = PSTR_INIT;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
        pstr_append(&s, buf, n);
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        pstr_free(&s);
        rw_rules__err_at(errs, path, 0, "cannot read the rule file");
        return NULL;
    }
    struct rw_ruleset *rs = rw_rules_parse(pstr_cstr(&s), s.len, path, errs);
    pstr_free(&s);
    return rs;
}

void rw_ruleset_ref(struct rw_ruleset *rs)
{
    atomic_fetch_add(&rs->refs, 1);
}

void rw_ruleset_unref(struct rw_ruleset *rs)
{
    if (!rs || atomic_fetch_sub(&rs->refs, 1) != 1)
        return;
    for (size_t i = 0; i < rs->nrules; i++)
        rw_rule_free(&rs->rules[i]);
    free(rs->rules);
    for (size_t i = 0; i < rs->nfiles; i++)
        free(rs->files[i]);
    free(rs->files);
    free(rs);
}
