/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_prefilter: Hyperscan prefilter of body-like rules (see
 * spam_prefilter.h).
 *
 * Why the result is a superset of PCRE2's matches:
 *  - HS_FLAG_PREFILTER: Hyperscan replaces what it cannot do exactly
 *    (lookarounds, back-references, possessive and atomic groups, ...)
 *    with broader constructs; what it cannot approximate it refuses, and
 *    such a rule is always run.
 *  - Same pattern semantics as the PCRE2 compile in spam_rules.c: UTF-8
 *    (PCRE2_UTF), no UCP (\w \d \s \b are ASCII in both), LF the only
 *    line end (checked), the rule's i/m/s flags as Hyperscan flags and x
 *    as an inline (?x).
 *  - Hyperscan's UTF-8 mode is undefined on invalid UTF-8, which mail is
 *    full of. PCRE2 (PCRE2_MATCH_INVALID_UTF) treats an invalid sequence
 *    as a barrier no match crosses, where \b behaves as at the ends of the
 *    subject and ^ $ do not match. The text is scanned with each byte of
 *    an invalid sequence replaced by a space: valid stretches are left
 *    as they are, and a space is what PCRE2 assumes beside a barrier (a
 *    non-word character, no line end); only a match Hyperscan adds can
 *    come of it, and PCRE2 then says no.
 *  - Rules that can match the empty string are compiled with
 *    HS_FLAG_ALLOWEMPTY, and empty texts are not scanned at all.
 * Hyperscan's validation is strict RFC 3629, the same as PCRE2's: no
 * overlong forms, no surrogates, nothing above U+10FFFF.
 */
#include "spam_prefilter.h"
#include "spam_utf8.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef SPAM_HAVE_HYPERSCAN

#include <hs.h>

/* The types whose text is scanned once per message. */
static const enum spam_rule_type spam_prefilter__types[] = {SPAM_RULE_BODY, SPAM_RULE_RAWBODY,
                                                            SPAM_RULE_FULL, SPAM_RULE_URI};
#define SPAM_PREFILTER_NTYPES (sizeof(spam_prefilter__types) / sizeof(spam_prefilter__types[0]))

/*
 * Hyperscan finds a literal in most rules ("\\bclick\\s+here") and runs
 * the rest of the rule only where the literal is. A rule without one
 * ("(?:\\pL[ .*_-]){6,}\\pL") needs an automaton over every byte; alone it
 * is a small fast one, but Hyperscan merges all such rules of a database
 * into one large automaton, and two of the shipped rules together made
 * the body scan of a 64 KiB message 2.4 times as slow. So each rule
 * without a literal gets a database of its own (up to
 * SPAM_PREFILTER_MAX_SOLO per type; the scan of one stops at its first
 * match), and the others share one.
 */
#define SPAM_PREFILTER_MAX_SOLO 16

/* Where a rule is: in the shared database, always run, in its own. */
enum { SPAM_PREFILTER__SHARED, SPAM_PREFILTER__ALWAYS, SPAM_PREFILTER__OWN };

struct spam_prefilter__db {
    hs_database_t *db;    /* owned; NULL: no rule of the type in it */
    hs_database_t **solo; /* owned; one rule each */
    size_t *solo_rule;    /* owned; the rule of solo[i] */
    size_t nsolo;
    size_t *always; /* owned; rule indices Hyperscan refused */
    size_t nalways;
    size_t nfiltered; /* rules in db and solo */
};

struct spam_prefilter {
    unsigned long gen; /* tells scratches which prefilter they were sized for */
    size_t nrules;
    unsigned char *where; /* owned; per rule: SPAM_PREFILTER__SHARED, __ALWAYS or __OWN */
    struct spam_prefilter__db db[SPAM_RULE_TYPE_COUNT];
    hs_scratch_t *proto; /* owned; fits every database, cloned for new scratches */
    int isolated;        /* compiled by a child process */
};

struct spam_prefilter_scratch {
    hs_scratch_t *hs;  /* owned */
    unsigned long gen; /* of the prefilter hs was last sized for */
    char *buf;         /* owned; the text with invalid UTF-8 blanked */
    size_t cap;
};

static atomic_ulong spam_prefilter__gen = 1;

static char spam_prefilter__version[96];
static pthread_once_t spam_prefilter__once = PTHREAD_ONCE_INIT;

static void spam_prefilter__version_init(void)
{
    snprintf(spam_prefilter__version, sizeof(spam_prefilter__version), "hyperscan %s",
             hs_version());
}

const char *spam_prefilter_engine(void)
{
    pthread_once(&spam_prefilter__once, spam_prefilter__version_init);
    return spam_prefilter__version;
}

static unsigned spam_prefilter__flags(uint32_t opts)
{
    unsigned f = HS_FLAG_PREFILTER | HS_FLAG_SINGLEMATCH | HS_FLAG_UTF8 | HS_FLAG_ALLOWEMPTY;
    if (opts & PCRE2_CASELESS)
        f |= HS_FLAG_CASELESS;
    if (opts & PCRE2_DOTALL)
        f |= HS_FLAG_DOTALL;
    if (opts & PCRE2_MULTILINE)
        f |= HS_FLAG_MULTILINE;
    return f;
}

/* Length of the escape at p (p[0] == '\\'), braces of \x{..} and kin included. */
static size_t spam_prefilter__escape_len(const char *p)
{
    if (!p[1])
        return 1;
    if (strchr("xoNgkpP", p[1]) && p[2] == '{') {
        const char *c = strchr(p + 3, '}');
        return c ? (size_t)(c - p) + 1 : 2;
    }
    if (p[1] == 'c' && p[2])
        return 3;
    return 2;
}

/*
 * Whether p starts a quantifier {m}, {m,} or {m,n}; its length in *len,
 * and its largest finite bound (m for {m} and {m,}, n for {m,n}) in *bound.
 */
static int spam_prefilter__quant(const char *p, size_t *len, unsigned long *min,
                                 unsigned long *bound)
{
    const char *q = p + 1;
    if (*q < '0' || *q > '9')
        return 0;
    *min = strtoul(q, (char **)&q, 10);
    *bound = *min;
    if (*q == ',') {
        q++;
        if (*q >= '0' && *q <= '9')
            *bound = strtoul(q, (char **)&q, 10);
    }
    if (*q != '}')
        return 0;
    *len = (size_t)(q - p) + 1;
    return 1;
}

/*
 * p at "[:" inside a class: the end of the POSIX class it starts ("[:alpha:]"),
 * or NULL when it starts none. As PCRE2 reads it: a "]" (other than "\\]")
 * or another "[:" before the ":]" means the "[" was a member, and the
 * class may end at that "]".
 */
static const char *spam_prefilter__posix_end(const char *p)
{
    for (const char *q = p + 2; *q; q++) {
        if (q[0] == '\\' && (q[1] == ']' || q[1] == '\\'))
            q++;
        else if ((q[0] == '[' && q[1] == ':') || q[0] == ']')
            return NULL;
        else if (q[0] == ':' && q[1] == ']')
            return q + 2;
    }
    return NULL;
}

/*
 * A looser pattern for the prefilter: one that matches wherever the rule's
 * matches, and that Hyperscan compiles in milliseconds instead of seconds.
 * Counted repeats x{m,n} become x+ (or x* for m == 0), which every string
 * matching x{m,n} matches too: the bounded repeats mail rules love
 * ("[^.\n]{0,120}?") are what makes Hyperscan's compile slow and its
 * databases large. A repeat whose bounds are all small (up to
 * SPAM_PREFILTER_EXACT_REPEAT: "{6,}", "{0,2}"; not "{0}", which Hyperscan
 * refuses) stays as written: it costs Hyperscan little, and loosening it
 * can make the filter pass nearly every message ("(?:\pL[ .*_-]){6,}\pL",
 * seven spaced letters, would become "two words"), and PCRE2 then runs
 * the rule on all of them. \pL and \pN become "ASCII letters (digits) or any
 * non-ASCII character", a superset that is a few byte ranges in UTF-8
 * instead of hundreds. Character classes, escapes, \Q..\E and comments
 * are copied as they are, and so is whatever a looser part would make
 * match less: negated classes, negative lookarounds, conditions, atomic
 * groups and possessive repeats.
 */
#define SPAM_PREFILTER_EXACT_REPEAT 8

static void spam_prefilter__loosen(const char *p, int extended, char *out)
{
    char *o = out;
    int in_class = 0;  /* 1 in a class, 2 in a negated one */
    int depth = 0;     /* open groups */
    int verbatim = -1; /* the depth to get back to before loosening again */
    while (*p) {
        if (p[0] == '\\' && p[1] == 'Q') {
            const char *e = strstr(p + 2, "\\E");
            size_t n = e ? (size_t)(e - p) + 2 : strlen(p);
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        }
        if (p[0] == '\\') {
            size_t n = spam_prefilter__escape_len(p);
            const char *set = NULL;
            if (strncmp(p, "\\pL", 3) == 0 || strncmp(p, "\\p{L}", 5) == 0)
                set = "A-Za-z\\x{80}-\\x{10FFFF}";
            else if (strncmp(p, "\\pN", 3) == 0 || strncmp(p, "\\p{N}", 5) == 0)
                set = "0-9\\x{80}-\\x{10FFFF}";
            if (set && verbatim < 0 && in_class != 2) {
                o += sprintf(o, in_class ? "%s" : "[%s]", set);
                p += p[2] == '{' ? 5 : 3;
                continue;
            }
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        }
        if (in_class) {
            if (p[0] == '[' && p[1] == ':') {
                const char *e = spam_prefilter__posix_end(p);
                if (e) {
                    size_t n = (size_t)(e - p);
                    memcpy(o, p, n);
                    o += n;
                    p += n;
                    continue;
                }
            }
            if (*p == ']')
                in_class = 0;
            *o++ = *p++;
            continue;
        }
        if (*p == '[') {
            /* A ']' first in the class (after '^') is a member. */
            *o++ = *p++;
            in_class = 1;
            if (*p == '^') {
                *o++ = *p++;
                in_class = 2;
            }
            if (*p == ']')
                *o++ = *p++;
            continue;
        }
        if (*p == '(' && p[1] != '*' && !(p[1] == '?' && p[2] == '#')) {
            depth++;
            if (verbatim < 0 && p[1] == '?' &&
                (p[2] == '!' || p[2] == '(' || p[2] == '>' || (p[2] == '<' && p[3] == '!')))
                verbatim = depth - 1;
            *o++ = *p++;
            continue;
        }
        if (*p == ')') {
            if (depth > 0)
                depth--;
            if (depth == verbatim)
                verbatim = -1;
            *o++ = *p++;
            continue;
        }
        if ((p[0] == '(' && p[1] == '?' && p[2] == '#') || (extended && *p == '#')) {
            const char *e = strchr(p, *p == '#' ? '\n' : ')');
            size_t n = e ? (size_t)(e - p) + 1 : strlen(p);
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        }
        size_t qn;
        unsigned long min, bound;
        if (*p == '{' && spam_prefilter__quant(p, &qn, &min, &bound) && verbatim < 0 &&
            p[qn] != '+' && (bound > SPAM_PREFILTER_EXACT_REPEAT || bound == 0)) {
            *o++ = min == 0 ? '*' : '+';
            p += qn;
            continue;
        }
        *o++ = *p++;
    }
    *o = '\0';
}

/* The rule's pattern for Hyperscan, loosened or as written. */
static char *spam_prefilter__expr(const struct spam_rule *r, int loosen)
{
    size_t n = strlen(r->pattern);
    /* Each \pL (3 bytes) grows to at most 26 bytes. */
    char *e = malloc(n * 9 + 8);
    if (!e)
        return NULL;
    char *o = e;
    int x = (r->opts & PCRE2_EXTENDED) != 0;
    /* Hyperscan has no flag for /x; the inline option does the same. */
    if (x)
        o += sprintf(o, "(?x)");
    if (loosen)
        spam_prefilter__loosen(r->pattern, x, o);
    else
        memcpy(o, r->pattern, n + 1);
    /* Hyperscan wants a /x comment ended by a newline; PCRE2 takes the end. */
    if (x)
        strcat(o, "\n");
    return e;
}

/* ---- does a pattern have a literal? ---------------------------------------
 * A conservative reading of the pattern Hyperscan gets: "yes" only when
 * every match must contain a literal of two or more bytes (a
 * group counts when it is not optional and each of its alternatives has
 * such a literal). Classes, escapes such as \d or \pL, and optional atoms
 * end a run; assertions (^ $ \b, lookarounds, comments) are skipped. A
 * wrong "no" costs a scan, never a match.
 */

/* p at '[': just past the class's ']' (or the end). */
static const char *spam_prefilter__skip_class(const char *p)
{
    p++;
    if (*p == '^')
        p++;
    if (*p == ']')
        p++;
    while (*p && *p != ']') {
        if (p[0] == '[' && p[1] == ':') {
            const char *e = spam_prefilter__posix_end(p);
            if (e) {
                p = e;
                continue;
            }
        }
        p += *p == '\\' ? spam_prefilter__escape_len(p) : 1;
    }
    return *p ? p + 1 : p;
}

/* p at '(': just past the matching ')' (or the end). */
static const char *spam_prefilter__skip_group(const char *p)
{
    int depth = 0;
    while (*p) {
        if (*p == '\\') {
            p += spam_prefilter__escape_len(p);
            continue;
        }
        if (*p == '[') {
            p = spam_prefilter__skip_class(p);
            continue;
        }
        if (*p == '(')
            depth++;
        else if (*p == ')' && --depth == 0)
            return p + 1;
        p++;
    }
    return p;
}

static int spam_prefilter__alt_literal(const char **pp);

/* One alternative, up to '|', ')' or the end. */
static int spam_prefilter__seq_literal(const char **pp)
{
    const char *p = *pp;
    int found = 0;
    size_t run = 0; /* required literal bytes in a row */
    while (*p && *p != '|' && *p != ')') {
        size_t lit = 0; /* bytes of a literal character (UTF-8) */
        int sub = 0, zero = 0;
        if (p[0] == '\\' && p[1] == 'Q') {
            const char *e = strstr(p + 2, "\\E");
            size_t n = e ? (size_t)(e - p) - 2 : strlen(p + 2);
            p = e ? e + 2 : p + strlen(p);
            /* Quoted text counts when no quantifier follows (that would
             * be on its last character only: rare enough to give up). */
            if (n >= 2 && (!*p || !strchr("?*+{", *p)))
                found = 1;
        } else if (*p == '\\') {
            if (p[1] && strchr("bBAzZG", p[1]))
                zero = 1;
            else if (p[1] && !((unsigned char)p[1] & 0x80) && !isalnum((unsigned char)p[1]))
                lit = 1; /* \. \$ \/ ... */
            else if (p[1] == 'x' && p[2] == '{') {
                /* A non-ASCII character is a literal of its UTF-8 bytes. */
                unsigned long c = strtoul(p + 3, NULL, 16);
                lit = c < 0x80 ? 0 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
            }
            size_t n = spam_prefilter__escape_len(p);
            /* \xHH, back references and octal: their digits go with them;
             * \pS: the property letter. */
            if ((p[1] == 'p' || p[1] == 'P') && p[2] != '{' && p[2])
                n = 3;
            else if (p[1] == 'x' && p[2] != '{')
                while (n < 4 && isxdigit((unsigned char)p[n]))
                    n++;
            else if (p[1] >= '0' && p[1] <= '9')
                while (n < 5 && p[n] >= '0' && p[n] <= '9')
                    n++;
            p += n;
        } else if (*p == '[') {
            p = spam_prefilter__skip_class(p);
        } else if (*p == '(') {
            /* A condition, back reference or subroutine call: what it
             * matches is not read here. */
            int opaque = p[1] == '?' && (p[2] == '(' || p[2] == '&' || p[2] == 'R' || p[2] == '+' ||
                                         isdigit((unsigned char)p[2]) ||
                                         (p[2] == '-' && isdigit((unsigned char)p[3])) ||
                                         (p[2] == 'P' && (p[3] == '=' || p[3] == '>')));
            if (p[1] == '?' && (p[2] == '#' || p[2] == '=' || p[2] == '!' ||
                                (p[2] == '<' && (p[3] == '=' || p[3] == '!')))) {
                p = spam_prefilter__skip_group(p);
                zero = 1;
            } else if (p[1] == '*') { /* a verb */
                p = spam_prefilter__skip_group(p);
                zero = 1;
            } else if (opaque) {
                p = spam_prefilter__skip_group(p);
            } else {
                p++;
                if (*p == '?') {
                    p++;
                    if (*p == '<' || *p == '\'' || (*p == 'P' && p[1] == '<')) {
                        const char *e = strchr(p, *p == '\'' ? '\'' : '>');
                        if (*p == '\'' && e == p)
                            e = strchr(p + 1, '\'');
                        p = e ? e + 1 : p + strlen(p);
                    } else {
                        while (*p && (isalpha((unsigned char)*p) || *p == '-' || *p == '^'))
                            p++;
                        if (*p == ')') { /* (?i): an option setting */
                            p++;
                            continue;
                        }
                        if (*p == ':' || *p == '|' || *p == '>')
                            p++;
                    }
                }
                sub = spam_prefilter__alt_literal(&p);
                if (*p == ')')
                    p++;
            }
        } else if (*p == '^' || *p == '$') {
            p++;
            zero = 1;
        } else if (*p == '.' || *p == '*' || *p == '+' || *p == '?' || *p == '{') {
            p++; /* any character, or a quantifier with nothing before it */
        } else {
            lit = 1;
            p++;
            while (((unsigned char)*p & 0xc0) == 0x80) { /* the rest of a UTF-8 character */
                lit++;
                p++;
            }
        }
        int quant = 1;
        unsigned long min = 1, bound;
        size_t qn;
        if (*p == '?' || *p == '*')
            min = 0, p++;
        else if (*p == '+')
            p++;
        else if (*p == '{' && spam_prefilter__quant(p, &qn, &min, &bound))
            p += qn;
        else
            quant = 0;
        if (quant && (*p == '?' || *p == '+'))
            p++;
        if (zero) {
            /* "a(?#c)?b" is "a?b": a quantifier there is on what came before. */
            if (quant)
                run = 0;
            continue;
        }
        if (lit && min > 0) {
            run += lit;
            if (run >= 2)
                found = 1;
            if (quant)
                run = 0;
            continue;
        }
        run = 0;
        if (sub && min > 0)
            found = 1;
    }
    *pp = p;
    return found;
}

/* Alternatives up to ')' or the end: whether each one has a literal. */
static int spam_prefilter__alt_literal(const char **pp)
{
    int all = 1;
    for (;;) {
        all &= spam_prefilter__seq_literal(pp);
        if (**pp != '|')
            return all;
        (*pp)++;
    }
}

/* Whether Hyperscan can find the rule by a literal (see above). /x
 * patterns count as having one: their blanks are not literals. */
static int spam_prefilter__has_literal(const char *expr, uint32_t opts)
{
    if (opts & PCRE2_EXTENDED)
        return 1;
    /* An inline x anywhere ("(?x)", "(?ix:", "(?-x)"): the same. */
    for (const char *q = strstr(expr, "(?"); q; q = strstr(q + 2, "(?")) {
        const char *o = q + 2;
        while (isalpha((unsigned char)*o) || *o == '-' || *o == '^') {
            if (*o == 'x')
                return 1;
            o++;
        }
    }
    const char *p = expr;
    int yes = spam_prefilter__alt_literal(&p);
    /* An unmatched ')' ends the parse early: then we cannot tell. */
    return *p ? 1 : yes;
}

/* Take expression j (freed) out of the k of the compile lists. */
static void spam_prefilter__drop(char **exprs, unsigned *flags, unsigned *ids, size_t *k, size_t j)
{
    free(exprs[j]);
    memmove(&exprs[j], &exprs[j + 1], (*k - j - 1) * sizeof(*exprs));
    memmove(&flags[j], &flags[j + 1], (*k - j - 1) * sizeof(*flags));
    memmove(&ids[j], &ids[j + 1], (*k - j - 1) * sizeof(*ids));
    (*k)--;
}

/* Compile the rules of type t; refused ones go to the always list. */
static int spam_prefilter__build_type(struct spam_prefilter *pf, const struct spam_ruleset *rs,
                                      enum spam_rule_type t)
{
    struct spam_prefilter__db *d = &pf->db[t];
    size_t n = rs->count[t];
    if (n == 0)
        return 0;
    char **exprs = calloc(n, sizeof(*exprs));
    unsigned *flags = calloc(n, sizeof(*flags));
    unsigned *ids = calloc(n, sizeof(*ids));
    d->always = calloc(n, sizeof(*d->always));
    int rc = -1;
    if (!exprs || !flags || !ids || !d->always)
        goto out;
    size_t k = 0;
    for (size_t i = 0; i < rs->nrules; i++) {
        const struct spam_rule *r = &rs->rules[i];
        if (r->type != t)
            continue;
        unsigned f = spam_prefilter__flags(r->opts);
        char *e = NULL;
        /* Loosened first, as written if Hyperscan refuses that. */
        for (int loosen = 1; loosen >= 0 && !e && r->pattern && r->re; loosen--) {
            hs_expr_info_t *info = NULL;
            hs_compile_error_t *err = NULL;
            e = spam_prefilter__expr(r, loosen);
            /* Cheap first check, so that the database compile rarely fails. */
            if (e && hs_expression_info(e, f, &info, &err) != HS_SUCCESS) {
                free(e);
                e = NULL;
            }
            free(info);
            if (err)
                hs_free_compile_error(err);
        }
        if (e) {
            exprs[k] = e;
            flags[k] = f;
            ids[k] = (unsigned)i;
            k++;
            continue;
        }
        d->always[d->nalways++] = i;
        pf->where[i] = SPAM_PREFILTER__ALWAYS;
    }
    /* Rules without a literal to their own databases (URIs are short:
     * there one scan of each is dearer than the merged automaton). */
    if (t != SPAM_RULE_URI && k > 1) {
        d->solo = calloc(SPAM_PREFILTER_MAX_SOLO, sizeof(*d->solo));
        d->solo_rule = calloc(SPAM_PREFILTER_MAX_SOLO, sizeof(*d->solo_rule));
    }
    /* Out of memory: all in the shared database. */
    for (size_t j = 0; d->solo && d->solo_rule && j < k && d->nsolo < SPAM_PREFILTER_MAX_SOLO;) {
        if (spam_prefilter__has_literal(exprs[j], rs->rules[ids[j]].opts)) {
            j++;
            continue;
        }
        hs_compile_error_t *err = NULL;
        hs_database_t *db = NULL;
        if (hs_compile_multi((const char *const *)&exprs[j], &flags[j], &ids[j], 1, HS_MODE_BLOCK,
                             NULL, &db, &err) == HS_SUCCESS) {
            d->solo_rule[d->nsolo] = ids[j];
            d->solo[d->nsolo++] = db;
            d->nfiltered++;
            pf->where[ids[j]] = SPAM_PREFILTER__OWN;
        } else {
            d->always[d->nalways++] = ids[j];
            pf->where[ids[j]] = SPAM_PREFILTER__ALWAYS;
        }
        if (err)
            hs_free_compile_error(err);
        spam_prefilter__drop(exprs, flags, ids, &k, j);
    }
    while (k > 0) {
        hs_compile_error_t *err = NULL;
        if (hs_compile_multi((const char *const *)exprs, flags, ids, (unsigned)k, HS_MODE_BLOCK,
                             NULL, &d->db, &err) == HS_SUCCESS)
            break;
        int bad = err ? err->expression : -1;
        if (err)
            hs_free_compile_error(err);
        d->db = NULL;
        if (bad < 0 || (size_t)bad >= k) {
            /* Not one pattern's fault (too large, out of memory): all run. */
            for (size_t j = 0; j < k; j++) {
                d->always[d->nalways++] = ids[j];
                pf->where[ids[j]] = SPAM_PREFILTER__ALWAYS;
                free(exprs[j]);
            }
            k = 0;
            break;
        }
        d->always[d->nalways++] = ids[bad];
        pf->where[ids[bad]] = SPAM_PREFILTER__ALWAYS;
        spam_prefilter__drop(exprs, flags, ids, &k, (size_t)bad);
    }
    d->nfiltered += k;
    for (size_t j = 0; j < k; j++)
        free(exprs[j]);
    rc = 0;
out:
    free(exprs);
    free(flags);
    free(ids);
    return rc;
}

/* Compile every filtered type here (pf->where sized for rs). */
static int spam_prefilter__build_all(struct spam_prefilter *pf, const struct spam_ruleset *rs)
{
    for (size_t k = 0; k < SPAM_PREFILTER_NTYPES; k++)
        if (spam_prefilter__build_type(pf, rs, spam_prefilter__types[k]) < 0)
            return -1;
    return 0;
}

/* ---- compiling in a child process -------------------------------------------
 * Hyperscan's compiler is most of libhs (about 3 MB of its code is touched
 * by one compile) and takes tens of MB of heap for a rule set; the daemon
 * only needs the scanning side. So the databases are compiled in a forked
 * child and handed back serialized through a pipe, as rspamd's hs_helper
 * does with its cache files: the compiler's pages and heap are the child's
 * and go away with it. When no child can be made (pipe, fork) the
 * compile runs here. When the child fails (a crash, the OOM killer, no
 * answer within SPAM_PREFILTER_CHILD_MS, a wrong stream) it does not:
 * the same compile would fail, stall or blow up the daemon in turn; the
 * rules run without a prefilter (PCRE2 on every rule: the same hits,
 * slower) and the reason is logged.
 *
 * Stream, per type of spam_prefilter__types in order: four uint64 (number
 * of always-run rules, number of filtered rules, number of one-rule
 * databases, bytes of the shared database), the always-run rule indices
 * (uint64 each), the serialized shared database, then per one-rule
 * database its rule index and bytes (uint64 each) and itself; then the
 * magic again. The child is our own fork: the parent's checks catch a
 * torn or garbled stream, not a forged one (a rule index swapped for
 * another of the same type would pass; Hyperscan cannot list the rule ids
 * a database reports).
 */
/* Under systemd's WatchdogSec (30 s in contrib/systemd): a reload runs on
 * the loop thread. Our shipped rules compile in about a second. */
#define SPAM_PREFILTER_CHILD_MS 20000
#define SPAM_PREFILTER_MAGIC 0x53504632u /* "SPF2" */
#define SPAM_PREFILTER_STREAM_MAX ((size_t)1 << 30)

static enum spam_prefilter_mode spam_prefilter__mode = SPAM_PREFILTER_CHILD;

void spam_prefilter_set_mode(enum spam_prefilter_mode m)
{
    spam_prefilter__mode = m;
}

static int spam_prefilter__write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* In the child: compile, send, exit (never returns). */
static void spam_prefilter__child(int fd, const struct spam_ruleset *rs)
{
    struct spam_prefilter pf = {.nrules = rs->nrules};
    uint32_t magic = SPAM_PREFILTER_MAGIC;
    pf.where = calloc(rs->nrules + 1, 1);
    if (spam_prefilter__mode == SPAM_PREFILTER_CHILD_FAILS || !pf.where ||
        spam_prefilter__build_all(&pf, rs) < 0 ||
        spam_prefilter__write_all(fd, &magic, sizeof magic) < 0)
        _exit(1);
    for (size_t k = 0; k < SPAM_PREFILTER_NTYPES; k++) {
        const struct spam_prefilter__db *d = &pf.db[spam_prefilter__types[k]];
        char *bytes = NULL;
        size_t len = 0;
        if (d->db && hs_serialize_database(d->db, &bytes, &len) != HS_SUCCESS)
            _exit(1);
        uint64_t hdr[4] = {d->nalways, d->nfiltered, d->nsolo, len};
        if (spam_prefilter__write_all(fd, hdr, sizeof hdr) < 0)
            _exit(1);
        for (size_t i = 0; i < d->nalways; i++) {
            uint64_t v = d->always[i];
            if (spam_prefilter__write_all(fd, &v, sizeof v) < 0)
                _exit(1);
        }
        if (len && spam_prefilter__write_all(fd, bytes, len) < 0)
            _exit(1);
        for (size_t i = 0; i < d->nsolo; i++) {
            char *one = NULL;
            size_t n1 = 0;
            if (hs_serialize_database(d->solo[i], &one, &n1) != HS_SUCCESS)
                _exit(1);
            uint64_t v[2] = {d->solo_rule[i], n1};
            if (spam_prefilter__write_all(fd, v, sizeof v) < 0 ||
                spam_prefilter__write_all(fd, one, n1) < 0)
                _exit(1);
        }
    }
    if (spam_prefilter__write_all(fd, &magic, sizeof magic) < 0)
        _exit(1);
    _exit(0);
}

static int64_t spam_prefilter__ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Everything the child writes until it closes the pipe, within the time
 * limit. 0, or -1 (time out, read error, too much). */
static int spam_prefilter__read_all(int fd, char **out, size_t *outlen)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int64_t deadline = spam_prefilter__ms_now() + SPAM_PREFILTER_CHILD_MS;
    while (buf) {
        int64_t left = deadline - spam_prefilter__ms_now();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0)
            break;
        int rc = poll(&pfd, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;
        if (n == cap) {
            char *more = cap < SPAM_PREFILTER_STREAM_MAX ? realloc(buf, cap * 2) : NULL;
            if (!more)
                break;
            buf = more;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        if (r == 0) {
            *out = buf;
            *outlen = n;
            return 0;
        }
        n += (size_t)r;
    }
    free(buf);
    return -1;
}

/* The child's stream into pf (pf->where sized for rs). 0, or -1 with pf
 * partly filled (the caller clears it). */
static int spam_prefilter__parse(struct spam_prefilter *pf, const struct spam_ruleset *rs,
                                 const char *p, size_t n)
{
    uint32_t magic;
    if (n < sizeof magic)
        return -1;
    memcpy(&magic, p, sizeof magic);
    if (magic != SPAM_PREFILTER_MAGIC)
        return -1;
    p += sizeof magic;
    n -= sizeof magic;
    for (size_t k = 0; k < SPAM_PREFILTER_NTYPES; k++) {
        enum spam_rule_type t = spam_prefilter__types[k];
        struct spam_prefilter__db *d = &pf->db[t];
        uint64_t hdr[4];
        if (n < sizeof hdr)
            return -1;
        memcpy(hdr, p, sizeof hdr);
        p += sizeof hdr;
        n -= sizeof hdr;
        /* Every rule of the type either filtered or always run. */
        if (hdr[0] > rs->count[t] || hdr[1] != rs->count[t] - hdr[0] ||
            hdr[2] > SPAM_PREFILTER_MAX_SOLO || hdr[2] > hdr[1] || n / sizeof(uint64_t) < hdr[0])
            return -1;
        d->nfiltered = (size_t)hdr[1];
        d->always = calloc((size_t)hdr[0] + 1, sizeof *d->always);
        if (!d->always)
            return -1;
        for (uint64_t i = 0; i < hdr[0]; i++) {
            uint64_t v;
            memcpy(&v, p, sizeof v);
            p += sizeof v;
            n -= sizeof v;
            if (v >= pf->nrules || rs->rules[v].type != t || pf->where[v])
                return -1;
            d->always[d->nalways++] = (size_t)v;
            pf->where[v] = SPAM_PREFILTER__ALWAYS;
        }
        if (hdr[3] > n)
            return -1;
        if (hdr[3] && hs_deserialize_database(p, (size_t)hdr[3], &d->db) != HS_SUCCESS) {
            d->db = NULL;
            return -1;
        }
        if (!d->db && d->nfiltered > hdr[2])
            return -1;
        p += hdr[3];
        n -= (size_t)hdr[3];
        if (hdr[2]) {
            d->solo = calloc((size_t)hdr[2], sizeof(*d->solo));
            d->solo_rule = calloc((size_t)hdr[2], sizeof(*d->solo_rule));
            if (!d->solo || !d->solo_rule)
                return -1;
        }
        for (uint64_t i = 0; i < hdr[2]; i++) {
            uint64_t v[2]; /* rule, bytes */
            if (n < sizeof v)
                return -1;
            memcpy(v, p, sizeof v);
            p += sizeof v;
            n -= sizeof v;
            if (v[0] >= pf->nrules || rs->rules[v[0]].type != t || pf->where[v[0]] || v[1] == 0 ||
                v[1] > n ||
                hs_deserialize_database(p, (size_t)v[1], &d->solo[d->nsolo]) != HS_SUCCESS)
                return -1;
            d->solo_rule[d->nsolo++] = (size_t)v[0];
            pf->where[v[0]] = SPAM_PREFILTER__OWN;
            uint64_t len = v[1];
            p += len;
            n -= (size_t)len;
        }
    }
    if (n != sizeof magic || memcmp(p, &(uint32_t){SPAM_PREFILTER_MAGIC}, sizeof magic) != 0)
        return -1;
    return 0;
}

/* No descriptor of the daemon's (listeners, client sockets, epoll, the
 * signal pipe) stays open in the child but `keep`: a client the daemon
 * closes must see its FIN at once. */
static void spam_prefilter__close_fds(int keep)
{
    if ((keep <= 3 || close_range(3, (unsigned)keep - 1, 0) == 0) &&
        close_range((unsigned)keep + 1, ~0u, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = 3; fd < (max > 0 ? max : 65536); fd++)
        if (fd != keep)
            close((int)fd);
}

/* Compile rs in a child and load its databases into pf. 0; 1 when no
 * child could be made (compile here); -1 when the child failed (why says
 * how), pf then partly filled (the caller clears it). */
static int spam_prefilter__from_child(struct spam_prefilter *pf, const struct spam_ruleset *rs,
                                      char *why, size_t whylen)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return 1;
    /* No signal handler of the daemon may run in the child (libuv's would
     * write into the daemon's own signal pipe): everything is blocked
     * across fork and the child resets the handlers before unblocking. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        for (int sig = 1; sig < NSIG; sig++)
            sigaction(sig, &dfl, NULL);
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        /* Gone with the daemon (the forking thread lives as long). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        spam_prefilter__close_fds(fds[1]);
        spam_prefilter__child(fds[1], rs);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return 1;
    }
    char *buf = NULL;
    size_t n = 0;
    int rc = spam_prefilter__read_all(fds[0], &buf, &n);
    close(fds[0]);
    if (rc < 0)
        kill(pid, SIGKILL);
    int st = -1;
    pid_t w;
    while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
        ;
    if (w != pid)
        snprintf(why, whylen, "compile child %d: %s", (int)pid, strerror(errno));
    else if (rc < 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
        snprintf(why, whylen, "compile child gave no answer within %d s",
                 SPAM_PREFILTER_CHILD_MS / 1000);
    else if (WIFSIGNALED(st))
        snprintf(why, whylen, "compile child killed by signal %d", WTERMSIG(st));
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        snprintf(why, whylen, "compile child failed (exit %d)", WEXITSTATUS(st));
    else if (rc < 0 || spam_prefilter__parse(pf, rs, buf, n) < 0)
        snprintf(why, whylen, "compile child sent a malformed stream");
    else
        why = NULL;
    free(buf);
    return why ? -1 : 0;
}

/* Grow *scratch to fit every database of type t. */
static int spam_prefilter__fit(const struct spam_prefilter *pf, size_t t, hs_scratch_t **scratch)
{
    const struct spam_prefilter__db *d = &pf->db[t];
    if (d->db && hs_alloc_scratch(d->db, scratch) != HS_SUCCESS)
        return -1;
    for (size_t i = 0; i < d->nsolo; i++)
        if (hs_alloc_scratch(d->solo[i], scratch) != HS_SUCCESS)
            return -1;
    return 0;
}

struct spam_prefilter *spam_prefilter_new(const struct spam_ruleset *rs, char *why, size_t whylen)
{
    if (whylen)
        *why = 0;
    /*
     * Hyperscan's ^ $ know only LF as a line end: a PCRE2 built with
     * another default newline (where $ matches before CR too) would find
     * matches the prefilter does not.
     */
    uint32_t nl = 0;
    if (pcre2_config(PCRE2_CONFIG_NEWLINE, &nl) < 0 || nl != PCRE2_NEWLINE_LF)
        return NULL;
    if (hs_valid_platform() != HS_SUCCESS)
        return NULL;
    struct spam_prefilter *pf = calloc(1, sizeof(*pf));
    if (!pf)
        return NULL;
    pf->gen = atomic_fetch_add(&spam_prefilter__gen, 1);
    pf->nrules = rs->nrules;
    pf->where = calloc(rs->nrules + 1, 1);
    if (!pf->where)
        goto fail;
    int rc = spam_prefilter__mode == SPAM_PREFILTER_IN_PROCESS
                 ? 1
                 : spam_prefilter__from_child(pf, rs, why, whylen);
    if (rc < 0)
        goto fail;
    pf->isolated = rc == 0;
    if (rc > 0 && spam_prefilter__build_all(pf, rs) < 0)
        goto fail;
    size_t filtered = 0;
    for (size_t k = 0; k < SPAM_PREFILTER_NTYPES; k++) {
        enum spam_rule_type t = spam_prefilter__types[k];
        if (spam_prefilter__fit(pf, t, &pf->proto) < 0)
            goto fail;
        filtered += pf->db[t].nfiltered;
    }
    if (filtered == 0)
        goto fail;
    return pf;
fail:
    spam_prefilter_free(pf);
    return NULL;
}

void spam_prefilter_free(struct spam_prefilter *pf)
{
    if (!pf)
        return;
    for (size_t t = 0; t < SPAM_RULE_TYPE_COUNT; t++) {
        if (pf->db[t].db)
            hs_free_database(pf->db[t].db);
        for (size_t i = 0; i < pf->db[t].nsolo; i++)
            hs_free_database(pf->db[t].solo[i]);
        free(pf->db[t].solo);
        free(pf->db[t].solo_rule);
        free(pf->db[t].always);
    }
    if (pf->proto)
        hs_free_scratch(pf->proto);
    free(pf->where);
    free(pf);
}

int spam_prefilter_isolated(const struct spam_prefilter *pf)
{
    return pf && pf->isolated;
}

int spam_prefilter_always(const struct spam_prefilter *pf, size_t i)
{
    return pf && i < pf->nrules && pf->where[i] == SPAM_PREFILTER__ALWAYS;
}

int spam_prefilter_own_database(const struct spam_prefilter *pf, size_t i)
{
    return pf && i < pf->nrules && pf->where[i] == SPAM_PREFILTER__OWN;
}

void spam_prefilter_counts(const struct spam_prefilter *pf, size_t *filtered, size_t *always)
{
    *filtered = *always = 0;
    for (size_t t = 0; pf && t < SPAM_RULE_TYPE_COUNT; t++) {
        *filtered += pf->db[t].nfiltered;
        *always += pf->db[t].nalways;
    }
}

void spam_prefilter_scratch_free(struct spam_prefilter_scratch *s)
{
    if (!s)
        return;
    if (s->hs)
        hs_free_scratch(s->hs);
    free(s->buf);
    free(s);
}

/* The text, or a copy in s->buf with every invalid byte made a space. */
static const char *spam_prefilter__valid(struct spam_prefilter_scratch *s, const char *text,
                                         size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t i = spam_utf8_valid_prefix(p, len);
    if (i == len)
        return text;
    if (s->cap < len) {
        char *nb = realloc(s->buf, len);
        if (!nb)
            return NULL;
        s->buf = nb;
        s->cap = len;
    }
    memcpy(s->buf, text, i);
    while (i < len) {
        size_t l = spam_utf8_len(p + i, len - i);
        if (l == 0) {
            s->buf[i++] = ' ';
            continue;
        }
        memcpy(s->buf + i, text + i, l);
        i += l;
    }
    return s->buf;
}

static int spam_prefilter__on_match(unsigned int id, unsigned long long from, unsigned long long to,
                                    unsigned int flags, void *ctx)
{
    (void)from;
    (void)to;
    (void)flags;
    unsigned char *cand = ctx;
    cand[id] = 1;
    return 0;
}

/* A one-rule database: its first match is all there is to know. */
static int spam_prefilter__on_first(unsigned int id, unsigned long long from, unsigned long long to,
                                    unsigned int flags, void *ctx)
{
    spam_prefilter__on_match(id, from, to, flags, ctx);
    return 1;
}

static int spam_prefilter__scratch(const struct spam_prefilter *pf,
                                   struct spam_prefilter_scratch **sp)
{
    struct spam_prefilter_scratch *s = *sp;
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        *sp = s;
    }
    if (s->hs && s->gen == pf->gen)
        return 0;
    if (!s->hs) {
        if (hs_clone_scratch(pf->proto, &s->hs) != HS_SUCCESS) {
            s->hs = NULL;
            return -1;
        }
    } else {
        /* Another rule set since: grow the scratch to fit it too. */
        for (size_t t = 0; t < SPAM_RULE_TYPE_COUNT; t++)
            if (spam_prefilter__fit(pf, t, &s->hs) < 0)
                return -1;
    }
    s->gen = pf->gen;
    return 0;
}

int spam_prefilter_scan(const struct spam_prefilter *pf, struct spam_prefilter_scratch **sp,
                        enum spam_rule_type t, const char *text, size_t len, unsigned char *cand)
{
    if (!pf || (unsigned)t >= SPAM_RULE_TYPE_COUNT || (!pf->db[t].db && !pf->db[t].nsolo) ||
        len == 0 || len > 0xffffffffu)
        return -1;
    if (spam_prefilter__scratch(pf, sp) < 0)
        return -1;
    const char *v = spam_prefilter__valid(*sp, text, len);
    if (!v)
        return -1;
    const struct spam_prefilter__db *d = &pf->db[t];
    if (d->db && hs_scan(d->db, v, (unsigned)len, 0, (*sp)->hs, spam_prefilter__on_match, cand) !=
                     HS_SUCCESS)
        return -1;
    for (size_t i = 0; i < d->nsolo; i++) {
        hs_error_t rc =
            hs_scan(d->solo[i], v, (unsigned)len, 0, (*sp)->hs, spam_prefilter__on_first, cand);
        if (rc != HS_SUCCESS && rc != HS_SCAN_TERMINATED)
            return -1;
    }
    for (size_t k = 0; k < d->nalways; k++)
        cand[d->always[k]] = 1;
    return 0;
}

#else /* !SPAM_HAVE_HYPERSCAN */

void spam_prefilter_set_mode(enum spam_prefilter_mode m)
{
    (void)m;
}

int spam_prefilter_isolated(const struct spam_prefilter *pf)
{
    (void)pf;
    return 0;
}

const char *spam_prefilter_engine(void)
{
    return "none";
}

struct spam_prefilter *spam_prefilter_new(const struct spam_ruleset *rs, char *why, size_t whylen)
{
    (void)rs;
    if (whylen)
        *why = 0;
    return NULL;
}

void spam_prefilter_free(struct spam_prefilter *pf)
{
    (void)pf;
}

int spam_prefilter_always(const struct spam_prefilter *pf, size_t i)
{
    (void)pf;
    (void)i;
    return 1;
}

int spam_prefilter_own_database(const struct spam_prefilter *pf, size_t i)
{
    (void)pf;
    (void)i;
    return 0;
}

void spam_prefilter_counts(const struct spam_prefilter *pf, size_t *filtered, size_t *always)
{
    (void)pf;
    *filtered = *always = 0;
}

void spam_prefilter_scratch_free(struct spam_prefilter_scratch *s)
{
    (void)s;
}

int spam_prefilter_scan(const struct spam_prefilter *pf, struct spam_prefilter_scratch **sp,
                        enum spam_rule_type t, const char *text, size_t len, unsigned char *cand)
{
    (void)pf;
    (void)sp;
    (void)t;
    (void)text;
    (void)len;
    (void)cand;
    return -1;
}

#endif
