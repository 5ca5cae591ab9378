/* SPDX-License-Identifier: GPL-2.0-or-later */
/* spam_bayes: tokens, Robinson/Fisher classifier, count snapshot; see
 * spam_bayes.h. */
#include "spam_bayes.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pstr.h"

/* SpamBayes' defaults, which SpamAssassin also settled near. */
#define BAYES_S 0.45 /* strength of the prior for rare tokens */
#define BAYES_X 0.5  /* the prior: an unknown token says nothing */
#define BAYES_MIN_STRENGTH 0.1
#define BAYES_WORD_MIN 3
#define BAYES_WORD_MAX 20

/* ---- tokens ---------------------------------------------------------------- */

uint64_t spam_bayes_hash(const char *tok, size_t len)
{
    /* FNV-1a, 64 bits: the store keeps only hashes (collisions at a few
     * million tokens are rare and merely blur two tokens' counts). */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)tok[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

struct tok_out {
    uint64_t *v;
    size_t n, max;
};

static void tok__emit(struct tok_out *o, const char *prefix, const char *w, size_t len)
{
    if (o->n >= o->max)
        return;
    char buf[96];
    size_t pl = strlen(prefix);
    if (pl + len > sizeof buf)
        len = sizeof buf - pl;
    memcpy(buf, prefix, pl);
    for (size_t i = 0; i < len; i++) {
        char c = w[i];
        buf[pl + i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    o->v[o->n++] = spam_bayes_hash(buf, pl + len);
}

static bool tok__sep(unsigned char c)
{
    switch (c) {
    case ' ':
    case '\t':
    case '\r':
    case '\n':
    case '\f':
    case '\v':
    case '<':
    case '>':
    case '(':
    case ')':
    case '[':
    case ']':
    case '{':
    case '}':
    case '"':
    case ',':
    case ';':
    case ':':
    case '|':
    case '=':
    case '*':
    case '`':
    case '\\':
    case '#':
    case '^':
    case '~':
        return true;
    default:
        return c < 0x20 || c == 0x7f;
    }
}

static bool tok__trim(unsigned char c)
{
    return c == '.' || c == '!' || c == '?' || c == '\'' || c == '-' || c == '_' || c == '/' ||
           c == '&' || c == '+';
}

/* Words of text[0..len) under `prefix`. */
static void tok__words(struct tok_out *o, const char *prefix, const char *text, size_t len)
{
    size_t i = 0;
    while (i < len && o->n < o->max) {
        while (i < len && tok__sep((unsigned char)text[i]))
            i++;
        size_t b = i;
        while (i < len && !tok__sep((unsigned char)text[i]))
            i++;
        size_t e = i;
        while (b < e && tok__trim((unsigned char)text[b]))
            b++;
        while (e > b && tok__trim((unsigned char)text[e - 1]))
            e--;
        size_t n = e - b;
        if (n < BAYES_WORD_MIN)
            continue;
        if (n > BAYES_WORD_MAX) {
            char skip[48];
            int k = snprintf(skip, sizeof skip, "skip:%c:%zu",
                             (text[b] >= 'A' && text[b] <= 'Z') ? text[b] - 'A' + 'a' : text[b],
                             n / 10 * 10);
            tok__emit(o, prefix, skip, (size_t)k);
            continue;
        }
        tok__emit(o, prefix, text + b, n);
    }
}

static const char *tok__header(const struct spam_msg *m, const char *name)
{
    for (size_t i = 0; i < m->nhdrs; i++)
        if (strcasecmp(m->hdrs[i].name, name) == 0)
            return m->hdrs[i].decoded ? m->hdrs[i].decoded : m->hdrs[i].raw;
    return NULL;
}

/* An address header: the address, its domain and the display name's words. */
static void tok__address(struct tok_out *o, const char *pfx, const char *v)
{
    if (!v)
        return;
    const char *lt = strrchr(v, '<');
    const char *a = lt ? lt + 1 : v;
    size_t alen = strcspn(a, ">, \t");
    char p[32];
    if (alen) {
        snprintf(p, sizeof p, "%s:a:", pfx);
        tok__emit(o, p, a, alen);
        const char *at = memchr(a, '@', alen);
        if (at) {
            snprintf(p, sizeof p, "%s:d:", pfx);
            tok__emit(o, p, at + 1, alen - (size_t)(at + 1 - a));
        }
    }
    if (lt && lt > v) {
        snprintf(p, sizeof p, "%s:n:", pfx);
        tok__words(o, p, v, (size_t)(lt - v));
    }
}

/* A link's host and its parent domains (down to two labels). */
static void tok__uri(struct tok_out *o, const char *uri)
{
    const char *h = strstr(uri, "://");
    h = h ? h + 3 : uri;
    size_t n = strcspn(h, "/?#:");
    const char *at = memchr(h, '@', n);
    if (at) {
        n -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    while (n > 0) {
        tok__emit(o, "u:", h, n);
        const char *dot = memchr(h, '.', n);
        if (!dot || !memchr(dot + 1, '.', n - (size_t)(dot + 1 - h)))
            break;
        n -= (size_t)(dot + 1 - h);
        h = dot + 1;
    }
}

/* One token per line of a newline-separated list. */
static void tok__lines(struct tok_out *o, const char *pfx, const char *s)
{
    while (s && *s) {
        size_t n = strcspn(s, "\n");
        if (n)
            tok__emit(o, pfx, s, n);
        s += n;
        if (*s)
            s++;
    }
}

/* The shape of s[0..n): letters, digits and case as classes, runs
 * collapsed ("Ab12-XY" -> "Aad-A"); says which software made an ID. */
static void tok__shape(struct tok_out *o, const char *pfx, const char *s, size_t n)
{
    char buf[40];
    size_t k = 0;
    char last = 0;
    for (size_t i = 0; i < n && k < sizeof buf; i++) {
        unsigned char c = (unsigned char)s[i];
        char t = (c >= 'a' && c <= 'z')   ? 'a'
                 : (c >= 'A' && c <= 'Z') ? 'A'
                 : (c >= '0' && c <= '9') ? 'd'
                 : c >= 0x80              ? 'u'
                                          : (char)c;
        if (t != last)
            buf[k++] = t;
        last = t;
    }
    /* The shape is case-sensitive: emit it as is, not through the
     * lower-casing tok__emit. */
    char tok[48];
    size_t pl = strlen(pfx);
    if (pl + k > sizeof tok)
        k = sizeof tok - pl;
    memcpy(tok, pfx, pl);
    memcpy(tok + pl, buf, k);
    if (o->n < o->max)
        o->v[o->n++] = spam_bayes_hash(tok, pl + k);
}

/* Received fields: the host names and addresses of the relays (the part
 * before the date), with the /24 and /16 of each IPv4 address, which tell
 * a mail's route apart from a spam gang's. Other words (IDs, dates) are
 * unique per message and only bloat the store. */
static void tok__received(struct tok_out *o, const struct spam_msg *m)
{
    size_t seen = 0;
    for (size_t i = 0; i < m->nhdrs && seen < 8; i++) {
        if (strcasecmp(m->hdrs[i].name, "Received") != 0)
            continue;
        seen++;
        const char *v = m->hdrs[i].raw;
        size_t len = strcspn(v, ";");
        size_t j = 0;
        while (j < len) {
            while (j < len && (tok__sep((unsigned char)v[j]) || v[j] == '@'))
                j++;
            size_t b = j;
            while (j < len && !tok__sep((unsigned char)v[j]) && v[j] != '@')
                j++;
            size_t e = j;
            while (b < e && tok__trim((unsigned char)v[b]))
                b++;
            while (e > b && tok__trim((unsigned char)v[e - 1]))
                e--;
            size_t n = e - b;
            if (n < 4 || n > 60 || !memchr(v + b, '.', n))
                continue;
            size_t dots = 0, digits = 0;
            for (size_t q = b; q < e; q++) {
                dots += v[q] == '.';
                digits += v[q] >= '0' && v[q] <= '9';
            }
            if (dots == 3 && digits + dots == n) {
                /* An IPv4 address: the /24 and the /16. */
                size_t c1 = 0, q = b;
                for (; q < e && c1 < 3; q++)
                    if (v[q] == '.' && ++c1 == 2)
                        tok__emit(o, "r:ip:", v + b, q - b);
                tok__emit(o, "r:ip:", v + b, q - 1 - b);
                continue;
            }
            tok__emit(o, "r:", v + b, n);
        }
    }
}

/* The names of the HTML tags, from the raw HTML: spam of a kind is
 * written by the same tools, and their markup (<font>, <center>, <table>
 * layouts, <form>) outlives its wording. (Attribute values were tried
 * too: they added false positives on newsletters.) */
static void tok__html(struct tok_out *o, const char *s, size_t len)
{
    size_t ntags = 0;
    for (size_t i = 0; i + 1 < len && ntags < 400; i++) {
        if (s[i] != '<')
            continue;
        size_t j = i + 1;
        if (s[j] == '/')
            j++;
        size_t b = j;
        while (j < len && j - b <= 12 &&
               ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') ||
                (s[j] >= '0' && s[j] <= '9')))
            j++;
        if (j == b || j - b > 12)
            continue;
        ntags++;
        tok__emit(o, "ht:", s + b, j - b);
        i = j - 1;
    }
}

/* Words of a link's path and query ("remove", "unsubscribe", "cgi-bin"). */
static void tok__uri_path(struct tok_out *o, const char *uri)
{
    const char *h = strstr(uri, "://");
    if (!h)
        return;
    h += 3;
    const char *p = h + strcspn(h, "/?#");
    /* Path segments and query parameters are the words. */
    char buf[200];
    size_t n = strnlen(p, sizeof buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = strchr("/?#&+%", p[i]) ? ' ' : p[i];
    tok__words(o, "up:", buf, n);
}

/* The message's own envelope of headers: Message-ID's domain and shape,
 * how many recipients it shows, the charset and the MIME boundary's shape. */
static void tok__meta(struct tok_out *o, const struct spam_msg *m)
{
    const char *v;
    if ((v = tok__header(m, "Message-ID"))) {
        const char *lt = strchr(v, '<');
        const char *a = lt ? lt + 1 : v;
        const char *at = strchr(a, '@');
        if (at) {
            tok__shape(o, "mid:s:", a, (size_t)(at - a));
            tok__emit(o, "mid:d:", at + 1, strcspn(at + 1, "> \t"));
        } else {
            tok__shape(o, "mid:s:", a, strcspn(a, "> \t"));
        }
    } else {
        tok__emit(o, "mid:", "none", 4);
    }
    size_t nrcpt = 0;
    for (size_t i = 0; i < m->nhdrs && i < 100; i++) {
        if (strcasecmp(m->hdrs[i].name, "To") != 0 && strcasecmp(m->hdrs[i].name, "Cc") != 0)
            continue;
        nrcpt++;
        for (const char *c = m->hdrs[i].raw; *c; c++)
            nrcpt += *c == ',';
    }
    static const char *const bucket[] = {"0", "1", "2", "3-5", "3-5", "3-5", "6+"};
    const char *bk = bucket[nrcpt < 6 ? nrcpt : 6];
    tok__emit(o, "nrcpt:", bk, strlen(bk));
    tok__address(o, "t", tok__header(m, "To"));
    if ((v = tok__header(m, "Content-Type"))) {
        const char *cs = strcasestr(v, "charset=");
        if (cs) {
            cs += 8;
            cs += *cs == '"';
            tok__emit(o, "cs:", cs, strcspn(cs, "\"; \t"));
        }
        const char *bd = strcasestr(v, "boundary=");
        if (bd) {
            bd += 9;
            bd += *bd == '"';
            tok__shape(o, "bd:", bd, strcspn(bd, "\"; \t"));
        }
    }
    if ((v = tok__header(m, "Content-Transfer-Encoding")))
        tok__emit(o, "cte:", v, strnlen(v, 20));
    if ((v = tok__header(m, "Date")))
        tok__shape(o, "date:", v, strlen(v));
}

static int tok__cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

size_t spam_bayes_tokens(const struct spam_msg *m, uint64_t *out, size_t max)
{
    struct tok_out o = {.v = out, .max = max};
    const char *v;
    /* Headers first: they are few and telling, and must not be crowded
     * out by a long body. */
    if ((v = tok__header(m, "Subject")))
        tok__words(&o, "s:", v, strlen(v));
    tok__address(&o, "f", tok__header(m, "From"));
    tok__address(&o, "rt", tok__header(m, "Reply-To"));
    if ((v = tok__header(m, "X-Mailer")) || (v = tok__header(m, "User-Agent")))
        tok__emit(&o, "xm:", v, strnlen(v, 40));
    for (size_t i = 0; i < m->nhdrs && i < 100; i++)
        tok__emit(&o, "h:", m->hdrs[i].name, strlen(m->hdrs[i].name));
    tok__lines(&o, "ct:", pstr_cstr(&m->parts));
    const char *fn = pstr_cstr(&m->filenames);
    while (*fn) {
        size_t n = strcspn(fn, "\n");
        const char *dot = NULL;
        for (size_t i = 0; i < n; i++)
            if (fn[i] == '.')
                dot = fn + i;
        if (dot && (size_t)(fn + n - dot - 1) <= 10)
            tok__emit(&o, "fx:", dot + 1, (size_t)(fn + n - dot - 1));
        fn += n;
        if (*fn)
            fn++;
    }
    tok__meta(&o, m);
    tok__received(&o, m);
    for (size_t i = 0; i < m->nuris && i < 200; i++) {
        tok__uri(&o, m->uris[i]);
        tok__uri_path(&o, m->uris[i]);
    }
    tok__html(&o, m->rawtext.ptr ? m->rawtext.ptr : "", m->rawtext.len);
    tok__words(&o, "", m->text.ptr ? m->text.ptr : "", m->text.len);

    qsort(out, o.n, sizeof *out, tok__cmp);
    size_t k = 0;
    for (size_t i = 0; i < o.n; i++)
        if (k == 0 || out[k - 1] != out[i])
            out[k++] = out[i];
    return k;
}

/* ---- classifier ------------------------------------------------------------ */

double spam_bayes_token_prob(struct spam_bayes_count c, uint32_t nspam, uint32_t nham)
{
    double n = (double)c.spam + (double)c.ham;
    if (n == 0 || nspam == 0 || nham == 0)
        return BAYES_X;
    double b = (double)c.spam / nspam, g = (double)c.ham / nham;
    double p = b + g > 0 ? b / (b + g) : BAYES_X;
    return (BAYES_S * BAYES_X + n * p) / (BAYES_S + n);
}

/* P(chi-square with v degrees of freedom >= x2), v even. */
static double bayes__chi2q(double x2, size_t v)
{
    double m = x2 / 2.0;
    double sum = exp(-m), term = sum;
    for (size_t i = 1; i < v / 2; i++) {
        term *= m / (double)i;
        sum += term;
    }
    return sum < 1.0 ? sum : 1.0;
}

struct bayes_pick {
    double f, strength;
};

static int bayes__by_strength(const void *a, const void *b)
{
    double x = ((const struct bayes_pick *)a)->strength,
           y = ((const struct bayes_pick *)b)->strength;
    return x > y ? -1 : x < y;
}

double spam_bayes_classify(const struct spam_bayes_count *c, size_t n, uint32_t nspam,
                           uint32_t nham, size_t *used)
{
    struct bayes_pick *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) {
        *used = 0;
        return 0.5;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].spam == 0 && c[i].ham == 0)
            continue;
        double f = spam_bayes_token_prob(c[i], nspam, nham);
        double st = fabs(f - 0.5);
        if (st < BAYES_MIN_STRENGTH)
            continue;
        p[k++] = (struct bayes_pick){f, st};
    }
    if (k > SPAM_BAYES_MAX_DISCRIMINATORS) {
        qsort(p, k, sizeof *p, bayes__by_strength);
        k = SPAM_BAYES_MAX_DISCRIMINATORS;
    }
    *used = k;
    if (k == 0) {
        free(p);
        return 0.5;
    }
    /* Sums of logs, not products: 150 factors near 0 underflow. */
    double ls = 0, lh = 0;
    for (size_t i = 0; i < k; i++) {
        double f = p[i].f < 1e-6 ? 1e-6 : p[i].f > 1 - 1e-6 ? 1 - 1e-6 : p[i].f;
        ls += log(1.0 - f);
        lh += log(f);
    }
    free(p);
    double s = 1.0 - bayes__chi2q(-2.0 * ls, 2 * k);
    double h = 1.0 - bayes__chi2q(-2.0 * lh, 2 * k);
    return (1.0 + s - h) / 2.0;
}

/* ---- snapshot ---------------------------------------------------------------- */

struct bayes_slot {
    uint64_t h; /* 0: empty (a token hashing to 0 is stored as 1) */
    struct spam_bayes_count c;
};

struct spam_bayes_snap {
    struct bayes_slot *t;
    size_t mask, n;
    uint32_t nspam, nham;
};

static uint64_t bayes__key(uint64_t h)
{
    return h ? h : 1;
}

struct spam_bayes_snap *spam_bayes_snap_new(size_t n, uint32_t nspam, uint32_t nham)
{
    struct spam_bayes_snap *s = pstr_xcalloc(1, sizeof *s);
    size_t cap = 16;
    while (cap < n * 2 + 16)
        cap <<= 1;
    s->t = pstr_xcalloc(cap, sizeof *s->t);
    s->mask = cap - 1;
    s->nspam = nspam;
    s->nham = nham;
    return s;
}

static void bayes__grow(struct spam_bayes_snap *s)
{
    struct bayes_slot *old = s->t;
    size_t ocap = s->mask + 1, cap = ocap * 2;
    s->t = pstr_xcalloc(cap, sizeof *s->t);
    s->mask = cap - 1;
    s->n = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].h)
            spam_bayes_snap_put(s, old[i].h, old[i].c);
    free(old);
}

void spam_bayes_snap_put(struct spam_bayes_snap *s, uint64_t h, struct spam_bayes_count c)
{
    if ((s->n + 1) * 2 > s->mask + 1)
        bayes__grow(s);
    uint64_t k = bayes__key(h);
    size_t i = (size_t)(k * 0x9e3779b97f4a7c15ULL >> 16) & s->mask;
    while (s->t[i].h && s->t[i].h != k)
        i = (i + 1) & s->mask;
    if (!s->t[i].h)
        s->n++;
    s->t[i].h = k;
    s->t[i].c = c;
}

struct spam_bayes_count spam_bayes_snap_get(const struct spam_bayes_snap *s, uint64_t h)
{
    uint64_t k = bayes__key(h);
    size_t i = (size_t)(k * 0x9e3779b97f4a7c15ULL >> 16) & s->mask;
    while (s->t[i].h) {
        if (s->t[i].h == k)
            return s->t[i].c;
        i = (i + 1) & s->mask;
    }
    return (struct spam_bayes_count){0, 0};
}

void spam_bayes_snap_totals(const struct spam_bayes_snap *s, uint32_t *nspam, uint32_t *nham)
{
    *nspam = s->nspam;
    *nham = s->nham;
}

size_t spam_bayes_snap_size(const struct spam_bayes_snap *s)
{
    return s->n;
}

void spam_bayes_snap_free(struct spam_bayes_snap *s)
{
    if (!s)
        return;
    free(s->t);
    free(s);
}

double spam_bayes_score(const struct spam_bayes_snap *s, const struct spam_msg *m,
                        uint32_t min_learned, size_t *ntokens, size_t *used)
{
    *ntokens = *used = 0;
    if (!s || s->nspam < min_learned || s->nham < min_learned)
        return -1;
    uint64_t *tok = pstr_xmalloc(SPAM_BAYES_MAX_TOKENS * sizeof *tok);
    size_t n = spam_bayes_tokens(m, tok, SPAM_BAYES_MAX_TOKENS);
    struct spam_bayes_count *c = pstr_xmalloc((n ? n : 1) * sizeof *c);
    for (size_t i = 0; i < n; i++)
        c[i] = spam_bayes_snap_get(s, tok[i]);
    double p = spam_bayes_classify(c, n, s->nspam, s->nham, used);
    free(c);
    free(tok);
    *ntokens = n;
    return p;
}

/* Default band scores, set from what the combined probability means, not
 * fitted to a corpus (a rule file's `score BAYES_95 3.5` overrides one:
 * rules/spam-scores.rules holds scores fitted to labelled mail). Chi-square combining puts a
 * message in its outer bands only when the spam and the ham evidence agree, so with a store trained
 * on the site's own mail (bayes_min_learned) the outermost band is a
 * verdict: BAYES_999 reaches the tag threshold (6) by itself, as a
 * SpamBayes score over its spam cutoff is spam; BAYES_99 reaches the
 * header threshold (4) and tags with any other sign. The middle (0.4 to
 * 0.6) is "unsure": it says nothing and scores nothing. The ham side
 * mirrors it more gently: a ham verdict takes back what two or three
 * structural rules (HTML newsletters) add. */
static const struct spam_bayes_band spam_bayes__bands[] = {
    {0.01, "BAYES_00", -2.0}, {0.05, "BAYES_05", -1.0}, {0.20, "BAYES_20", -0.3},
    {0.40, "BAYES_40", -0.1}, {0.60, "BAYES_50", 0.0},  {0.80, "BAYES_60", 1.0},
    {0.95, "BAYES_80", 2.0},  {0.99, "BAYES_95", 3.0},  {0.999, "BAYES_99", 4.5},
    {2.0, "BAYES_999", 6.0},
};

_Static_assert(sizeof spam_bayes__bands / sizeof spam_bayes__bands[0] == SPAM_BAYES_NBANDS,
               "SPAM_BAYES_NBANDS is the number of bands");

size_t spam_bayes_band_index(double p)
{
    size_t b = 0;
    while (b < SPAM_BAYES_NBANDS - 1 && !(p < spam_bayes__bands[b].below))
        b++;
    return b;
}

const struct spam_bayes_band *spam_bayes_band(double p)
{
    return &spam_bayes__bands[spam_bayes_band_index(p)];
}

const struct spam_bayes_band *spam_bayes_band_at(size_t i)
{
    return i < SPAM_BAYES_NBANDS ? &spam_bayes__bands[i] : NULL;
}

long spam_bayes_band_find(const char *name, size_t len)
{
    for (size_t i = 0; i < SPAM_BAYES_NBANDS; i++)
        if (strlen(spam_bayes__bands[i].name) == len &&
            memcmp(spam_bayes__bands[i].name, name, len) == 0)
            return (long)i;
    return -1;
}
