/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ac_map: see ac_map.h.
 *
 * A parsed map holds its rules (one per line that has one, in file
 * order: action, text, line) and three indexes pointing into them:
 *  - keys: "TAG" + lower-cased key, sorted, for binary search. Tags:
 *      'a' an exact value (address, host name, HELO word),
 *      'i' an exact client address, in inet_ntop form,
 *      'd' a domain (`example.com`, `@example.com` in address maps),
 *      's' a parent domain (`.example.com`: strictly below it),
 *      'l' a local part (`user@`),
 *      'n' the null sender (`<>`);
 *  - nets: client networks, longest prefix first (then file order);
 *  - res: patterns, in file order.
 */
#include "ac_map.h"

#include "cidr.h"
#include "pstr.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

struct ac_key {
    char *key; /* owned: tag + lower-cased key */
    uint32_t rule;
};

struct ac_net {
    struct cidr net;
    uint32_t rule;
};

struct ac_re {
    pcre2_code *re; /* owned */
    uint32_t rule;
};

struct ac_map {
    enum ac_kind kind;
    struct ac_rule *rules; /* owned, text owned */
    size_t nrules, caprules;
    struct ac_key *keys;
    size_t nkeys, capkeys;
    struct ac_net *nets;
    size_t nnets, capnets;
    struct ac_re *res;
    size_t nres, capres;
    int jit;
};

struct ac_scratch {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *js;
    uint64_t limited;
};

static const char *const ac__actions[] = {"none", "allow", "deny", "tempfail"};
static const char *const ac__kinds[] = {"client", "helo", "sender", "recipient"};

const char *ac_action_name(enum ac_action a)
{
    return (unsigned)a < 4 ? ac__actions[a] : "?";
}

const char *ac_kind_name(enum ac_kind k)
{
    return (unsigned)k < AC_MAP_KINDS ? ac__kinds[k] : "?";
}

/* ---- parser --------------------------------------------------------------- */

struct ac_parser {
    const char *file;
    unsigned line;
    ac_err_fn fn;
    void *arg;
    int errors;
};

static void ac__err(struct ac_parser *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ac__err(struct ac_parser *p, unsigned line, const char *fmt, ...)
{
    char msg[600];
    int n = snprintf(msg, sizeof msg, "%s:%u: ", p->file, line);
    if (n < 0 || (size_t)n >= sizeof msg)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    /* Words quoted from the file: one printable line whatever they hold. */
    for (char *c = msg; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
    p->errors++;
    if (p->fn)
        p->fn(p->arg, msg);
}

static void ac__lower(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            s[i] = (char)(s[i] - 'A' + 'a');
}

static uint32_t ac__add_rule(struct ac_map *m, enum ac_action a, const char *text, unsigned line)
{
    if (m->nrules == m->caprules) {
        m->caprules = m->caprules ? m->caprules * 2 : 16;
        m->rules = pstr_xrealloc(m->rules, m->caprules * sizeof *m->rules);
    }
    m->rules[m->nrules] = (struct ac_rule){a, text ? pstr_xstrdup(text) : NULL, line};
    return (uint32_t)m->nrules++;
}

static void ac__add_key(struct ac_map *m, char tag, const char *key, size_t n, uint32_t rule)
{
    if (m->nkeys == m->capkeys) {
        m->capkeys = m->capkeys ? m->capkeys * 2 : 16;
        m->keys = pstr_xrealloc(m->keys, m->capkeys * sizeof *m->keys);
    }
    char *k = pstr_xmalloc(n + 2);
    k[0] = tag;
    memcpy(k + 1, key, n);
    k[n + 1] = 0;
    ac__lower(k + 1, n);
    m->keys[m->nkeys++] = (struct ac_key){k, rule};
}

static void ac__add_net(struct ac_map *m, const struct cidr *c, uint32_t rule)
{
    if (m->nnets == m->capnets) {
        m->capnets = m->capnets ? m->capnets * 2 : 16;
        m->nets = pstr_xrealloc(m->nets, m->capnets * sizeof *m->nets);
    }
    m->nets[m->nnets++] = (struct ac_net){*c, rule};
}

static void ac__add_re(struct ac_map *m, pcre2_code *re, uint32_t rule)
{
    if (m->nres == m->capres) {
        m->capres = m->capres ? m->capres * 2 : 8;
        m->res = pstr_xrealloc(m->res, m->capres * sizeof *m->res);
    }
    m->res[m->nres++] = (struct ac_re){re, rule};
}

/* An IPv4-mapped IPv6 address is the IPv4 address. */
static void ac__unmap(struct cidr *c)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (c->family == AF_INET6 && c->prefix >= 96 && memcmp(c->addr, mapped, 12) == 0) {
        memmove(c->addr, c->addr + 12, 4);
        memset(c->addr + 4, 0, 12);
        c->family = AF_INET;
        c->prefix -= 96;
    }
}

/* text -> one address (no prefix); 0 or -1. */
static int ac__addr(const char *text, struct cidr *out)
{
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, text, out->addr) == 1) {
        out->family = AF_INET;
        out->prefix = 32;
    } else if (inet_pton(AF_INET6, text, out->addr) == 1) {
        out->family = AF_INET6;
        out->prefix = 128;
        ac__unmap(out);
    } else {
        return -1;
    }
    return 0;
}

static int ac__addr_text(const struct cidr *c, char *buf, size_t n)
{
    return inet_ntop(c->family, c->addr, buf, (socklen_t)n) ? 0 : -1;
}

/* Bytes a key may hold: printable, or UTF-8 (bytes >= 0x80). */
static bool ac__key_bytes_ok(const char *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c <= 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* A domain key: labels of letters, digits, '-' and '_' (UTF-8 bytes too,
 * for internationalized names) separated by single dots, or an address
 * literal "[192.0.2.1]" / "[IPv6:2001:db8::1]". */
static bool ac__domain_ok(const char *d, size_t n)
{
    if (n == 0)
        return false;
    if (d[0] == '[') {
        if (n < 3 || d[n - 1] != ']')
            return false;
        for (size_t i = 1; i + 1 < n; i++)
            if (!isalnum((unsigned char)d[i]) && d[i] != ':' && d[i] != '.')
                return false;
        return true;
    }
    if (d[0] == '.' || d[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.') {
            if (d[i + 1] == '.')
                return false;
        } else if (!isalnum(c) && c != '-' && c != '_' && c < 0x80) {
            return false;
        }
    }
    return true;
}

static bool ac__all_digits_dots(const char *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((k[i] >= '0' && k[i] <= '9') || k[i] == '.'))
            return false;
    return true;
}

/* "/pattern/flags" starting at s (s[0] == '/'): the length of the whole
 * key, with *plen the pattern's; -1 when there is no closing slash. A '/'
 * in the pattern is written "\/". */
static long ac__regex_span(const char *s, size_t n, size_t *plen)
{
    for (size_t i = 1; i < n; i++) {
        if (s[i] == '\\') {
            i++;
            continue;
        }
        if (s[i] == '/') {
            *plen = i - 1;
            size_t j = i + 1;
            while (j < n && s[j] != ' ' && s[j] != '\t')
                j++;
            return (long)j;
        }
    }
    return -1;
}

static int ac__regex(struct ac_parser *p, struct ac_map *m, const char *key, size_t klen,
                     size_t plen, uint32_t rule)
{
    const char *flags = key + 1 + plen + 1;
    for (const char *f = flags; f < key + klen; f++)
        if (*f != 'i') {
            ac__err(p, p->line,
                    "unknown pattern flag '%c' (patterns are case-insensitive; no flag is needed)",
                    *f);
            return -1;
        }
    if (plen == 0) {
        ac__err(p, p->line, "empty pattern");
        return -1;
    }
    if (plen >= 2 && key[1] == '(' && key[2] == '*') {
        ac__err(p, p->line, "(*VERB) options at the start of a pattern are not allowed");
        return -1;
    }
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)(key + 1), plen,
                      PCRE2_CASELESS | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        ac__err(p, p->line, "bad pattern /%.*s/: %s at offset %zu", (int)(plen > 80 ? 80 : plen),
                key + 1, (const char *)msg, (size_t)off);
        return -1;
    }
    if (m->nres == AC_PATTERNS_MAX) {
        pcre2_code_free(re);
        ac__err(p, p->line, "more than %d patterns", AC_PATTERNS_MAX);
        return -1;
    }
    if (pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) != 0)
        m->jit = 0;
    ac__add_re(m, re, rule);
    return 0;
}

/* A client map key: address, network, host name, parent domain. */
static int ac__client_key(struct ac_parser *p, struct ac_map *m, const char *key, size_t n,
                          uint32_t rule)
{
    char k[AC_KEY_MAX + 1];
    memcpy(k, key, n);
    k[n] = 0;
    if (memchr(k, '/', n)) {
        struct cidr c;
        char why[160];
        if (cidr_parse(k, 0, &c, why, sizeof why) != 0) {
            ac__err(p, p->line, "%s", why);
            return -1;
        }
        ac__unmap(&c);
        ac__add_net(m, &c, rule);
        return 0;
    }
    struct cidr a;
    if (ac__addr(k, &a) == 0) {
        char txt[INET6_ADDRSTRLEN];
        ac__addr_text(&a, txt, sizeof txt);
        ac__add_key(m, 'i', txt, strlen(txt), rule);
        return 0;
    }
    if (strchr(k, ':') || ac__all_digits_dots(k, n)) {
        ac__err(p, p->line,
                "'%.80s' is not an address (a network is written with its length: 10.0.0.0/8)", k);
        return -1;
    }
    if (k[0] == '.') {
        if (!ac__domain_ok(k + 1, n - 1) || strchr(k, '@')) {
            ac__err(p, p->line, "'%.80s' is not a domain", k);
            return -1;
        }
        ac__add_key(m, 's', k, n, rule);
        return 0;
    }
    if (!ac__domain_ok(k, n)) {
        ac__err(p, p->line, "'%.80s' is neither an address, a network nor a host name", k);
        return -1;
    }
    ac__add_key(m, 'a', k, n, rule);
    return 0;
}

/* A HELO map key: the word as the client sends it, or `.domain`. */
static int ac__helo_key(struct ac_parser *p, struct ac_map *m, const char *key, size_t n,
                        uint32_t rule)
{
    if (key[0] == '.') {
        if (!ac__domain_ok(key + 1, n - 1)) {
            ac__err(p, p->line, "'%.*s' is not a domain", (int)(n > 80 ? 80 : n), key);
            return -1;
        }
        ac__add_key(m, 's', key, n, rule);
        return 0;
    }
    ac__add_key(m, 'a', key, n, rule);
    return 0;
}

/* A sender or recipient map key. */
static int ac__addr_key(struct ac_parser *p, struct ac_map *m, const char *key, size_t n,
                        uint32_t rule)
{
    int kl = (int)(n > 80 ? 80 : n);
    if (n == 2 && key[0] == '<' && key[1] == '>') {
        if (m->kind != AC_MAP_SENDER) {
            ac__err(p, p->line, "<> (the null sender) only in a sender map");
            return -1;
        }
        ac__add_key(m, 'n', "", 0, rule);
        return 0;
    }
    if (memchr(key, '<', n) || memchr(key, '>', n)) {
        ac__err(p, p->line, "'%.*s': write addresses without <> (the null sender is <>)", kl, key);
        return -1;
    }
    const char *at = NULL;
    for (size_t i = n; i-- > 0;)
        if (key[i] == '@') {
            at = key + i;
            break;
        }
    if (!at) {
        if (key[0] == '.') {
            if (!ac__domain_ok(key + 1, n - 1)) {
                ac__err(p, p->line, "'%.*s' is not a domain", kl, key);
                return -1;
            }
            ac__add_key(m, 's', key, n, rule);
            return 0;
        }
        if (!ac__domain_ok(key, n)) {
            ac__err(p, p->line, "'%.*s' is not a domain", kl, key);
            return -1;
        }
        ac__add_key(m, 'd', key, n, rule);
        return 0;
    }
    size_t lp = (size_t)(at - key), dl = n - lp - 1;
    if (lp == 0) { /* @example.com */
        if (!ac__domain_ok(at + 1, dl)) {
            ac__err(p, p->line, "'%.*s' is not a domain", kl, key);
            return -1;
        }
        ac__add_key(m, 'd', at + 1, dl, rule);
        return 0;
    }
    if (dl == 0) { /* user@ */
        ac__add_key(m, 'l', key, lp, rule);
        return 0;
    }
    if (!ac__domain_ok(at + 1, dl)) {
        ac__err(p, p->line, "'%.*s': the domain is not valid", kl, key);
        return -1;
    }
    ac__add_key(m, 'a', key, n, rule);
    return 0;
}

static int ac__key_cmp(const void *a, const void *b)
{
    const struct ac_key *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->rule > y->rule) - (x->rule < y->rule);
}

static int ac__net_cmp(const void *a, const void *b)
{
    const struct ac_net *x = a, *y = b;
    if (x->net.prefix != y->net.prefix)
        return x->net.prefix > y->net.prefix ? -1 : 1;
    return (x->rule > y->rule) - (x->rule < y->rule);
}

/* One line (NUL-free, without its end). */
static void ac__line(struct ac_parser *p, struct ac_map *m, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
        i++;
    while (n > i && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        n--;
    if (i == n || s[i] == '#')
        return;
    const char *key = s + i;
    size_t klen, plen = 0;
    bool regex = key[0] == '/';
    if (regex) {
        long sp = ac__regex_span(key, n - i, &plen);
        if (sp < 0) {
            ac__err(p, p->line, "pattern without its closing '/' (write a '/' inside it as \\/)");
            return;
        }
        klen = (size_t)sp;
    } else {
        klen = 0;
        while (i + klen < n && key[klen] != ' ' && key[klen] != '\t')
            klen++;
    }
    if (klen > AC_KEY_MAX) {
        ac__err(p, p->line, "key longer than %d bytes", AC_KEY_MAX);
        return;
    }
    if (!regex && !ac__key_bytes_ok(key, klen)) {
        ac__err(p, p->line, "control character in key");
        return;
    }
    /* the action word */
    size_t j = i + klen;
    while (j < n && (s[j] == ' ' || s[j] == '\t'))
        j++;
    const char *w = s + j;
    size_t wl = 0;
    while (j + wl < n && w[wl] != ' ' && w[wl] != '\t')
        wl++;
    if (wl == 0) {
        ac__err(p, p->line, "key without an action (allow, deny or tempfail)");
        return;
    }
    enum ac_action act = AC_NONE;
    if (wl == 5 && strncasecmp(w, "allow", 5) == 0)
        act = AC_ALLOW;
    else if (wl == 4 && strncasecmp(w, "deny", 4) == 0)
        act = AC_DENY;
    else if (wl == 8 && strncasecmp(w, "tempfail", 8) == 0)
        act = AC_TEMPFAIL;
    else {
        ac__err(p, p->line, "unknown action '%.*s' (allow, deny or tempfail)",
                (int)(wl > 40 ? 40 : wl), w);
        return;
    }
    /* the text: the rest, up to a comment (" #") */
    size_t t = j + wl;
    while (t < n && (s[t] == ' ' || s[t] == '\t'))
        t++;
    size_t te = t;
    while (te < n && !(s[te] == '#' && (s[te - 1] == ' ' || s[te - 1] == '\t')))
        te++;
    while (te > t && (s[te - 1] == ' ' || s[te - 1] == '\t'))
        te--;
    char text[AC_TEXT_MAX + 1];
    if (te > t) {
        if (act == AC_ALLOW) {
            ac__err(p, p->line, "allow takes no text");
            return;
        }
        if (te - t > AC_TEXT_MAX) {
            ac__err(p, p->line, "reply text longer than %d characters", AC_TEXT_MAX);
            return;
        }
        for (size_t k = t; k < te; k++)
            if ((unsigned char)s[k] < 0x20 || (unsigned char)s[k] > 0x7e) {
                ac__err(p, p->line,
                        "reply text: character %zu is not printable ASCII (it goes on the wire)",
                        k - t + 1);
                return;
            }
        memcpy(text, s + t, te - t);
        text[te - t] = 0;
    }
    uint32_t rule = ac__add_rule(m, act, te > t ? text : NULL, p->line);
    int rc;
    if (regex)
        rc = ac__regex(p, m, key, klen, plen, rule);
    else if (m->kind == AC_MAP_CLIENT)
        rc = ac__client_key(p, m, key, klen, rule);
    else if (m->kind == AC_MAP_HELO)
        rc = ac__helo_key(p, m, key, klen, rule);
    else
        rc = ac__addr_key(p, m, key, klen, rule);
    if (rc != 0) { /* drop the rule again */
        free((char *)m->rules[rule].text);
        m->nrules--;
    }
}

int ac_map_parse(const char *text, size_t len, const char *file, enum ac_kind kind,
                 struct ac_map **out, ac_err_fn err, void *arg)
{
    *out = NULL;
    struct ac_parser p = {.file = file, .fn = err, .arg = arg};
    struct ac_map *m = pstr_xcalloc(1, sizeof *m);
    m->kind = kind;
    m->jit = 1;
    const char *s = text, *end = text + len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *le = nl ? nl : end;
        size_t l = (size_t)(le - s);
        p.line++;
        if (l > AC_LINE_MAX)
            ac__err(&p, p.line, "line longer than %d bytes", AC_LINE_MAX);
        else if (memchr(s, 0, l))
            ac__err(&p, p.line, "NUL byte");
        else
            ac__line(&p, m, s, l);
        s = nl ? nl + 1 : end;
    }
    if (m->nkeys)
        qsort(m->keys, m->nkeys, sizeof *m->keys, ac__key_cmp);
    for (size_t i = 1; i < m->nkeys; i++)
        if (strcmp(m->keys[i].key, m->keys[i - 1].key) == 0) {
            const char *k = m->keys[i].key + 1;
            ac__err(&p, m->rules[m->keys[i].rule].line,
                    "duplicate key '%.80s%s' (first on line %u)",
                    m->keys[i].key[0] == 'n' ? "<>" : k, m->keys[i].key[0] == 'l' ? "@" : "",
                    m->rules[m->keys[i - 1].rule].line);
        }
    if (m->nnets)
        qsort(m->nets, m->nnets, sizeof *m->nets, ac__net_cmp);
    if (p.errors) {
        ac_map_free(m);
        return p.errors;
    }
    *out = m;
    return 0;
}

void ac_map_free(struct ac_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nrules; i++)
        free((char *)m->rules[i].text);
    for (size_t i = 0; i < m->nkeys; i++)
        free(m->keys[i].key);
    for (size_t i = 0; i < m->nres; i++)
        pcre2_code_free(m->res[i].re);
    free(m->rules);
    free(m->keys);
    free(m->nets);
    free(m->res);
    free(m);
}

enum ac_kind ac_map_kind(const struct ac_map *m)
{
    return m->kind;
}

size_t ac_map_rules(const struct ac_map *m)
{
    return m->nrules;
}

int ac_map_jit(const struct ac_map *m)
{
    return m->jit;
}

/* ---- matcher -------------------------------------------------------------- */

struct ac_scratch *ac_scratch_new(uint32_t match_limit)
{
    struct ac_scratch *s = pstr_xcalloc(1, sizeof *s);
    s->md = pcre2_match_data_create(1, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    s->js = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
    if (!s->md || !s->mctx) {
        ac_scratch_free(s);
        return NULL;
    }
    pcre2_set_match_limit(s->mctx, match_limit);
    pcre2_set_heap_limit(s->mctx, 64 * 1024); /* KiB: bounds the interpreter too */
    if (s->js)
        pcre2_jit_stack_assign(s->mctx, NULL, s->js);
    return s;
}

void ac_scratch_free(struct ac_scratch *s)
{
    if (!s)
        return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->js);
    free(s);
}

uint64_t ac_scratch_limited(const struct ac_scratch *s)
{
    return s->limited;
}

/* Room for a lookup key: tag + value (lower-cased) + NUL. */
struct ac_probe {
    char small[AC_KEY_MAX + 2];
};

static const struct ac_rule *ac__find(const struct ac_map *m, struct ac_probe *pb, char tag,
                                      const char *v, size_t n)
{
    if (n > AC_KEY_MAX || m->nkeys == 0)
        return NULL; /* no key is that long */
    char *k = pb->small;
    k[0] = tag;
    memcpy(k + 1, v, n);
    k[n + 1] = 0;
    ac__lower(k + 1, n);
    size_t lo = 0, hi = m->nkeys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(k, m->keys[mid].key);
        if (c == 0)
            return &m->rules[m->keys[mid].rule];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* `.parent` keys for a domain, nearest first. */
static const struct ac_rule *ac__parents(const struct ac_map *m, struct ac_probe *pb, const char *d,
                                         size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (d[i] == '.') {
            const struct ac_rule *r = ac__find(m, pb, 's', d + i, n - i);
            if (r)
                return r;
        }
    return NULL;
}

static int ac__net_has(const struct cidr *net, const struct cidr *a)
{
    if (net->family != a->family)
        return 0;
    unsigned full = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(net->addr, a->addr, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (net->addr[full] & mask) == (a->addr[full] & mask);
}

static const struct ac_rule *ac__patterns(const struct ac_map *m, struct ac_scratch *sc,
                                          const char *v, size_t n)
{
    for (size_t i = 0; i < m->nres; i++) {
        int rc = pcre2_match(m->res[i].re, (PCRE2_SPTR)v, n, 0, 0, sc->md, sc->mctx);
        if (rc >= 0)
            return &m->rules[m->res[i].rule];
        if (rc != PCRE2_ERROR_NOMATCH)
            sc->limited++;
    }
    return NULL;
}

static const struct ac_rule *ac__lookup_client(const struct ac_map *m, struct ac_scratch *sc,
                                               struct ac_probe *pb, const char *addr,
                                               const char *name)
{
    const struct ac_rule *r;
    struct cidr a;
    char txt[INET6_ADDRSTRLEN] = "";
    if (ac__addr(addr, &a) == 0) {
        ac__addr_text(&a, txt, sizeof txt);
        if ((r = ac__find(m, pb, 'i', txt, strlen(txt))))
            return r;
        for (size_t i = 0; i < m->nnets; i++)
            if (ac__net_has(&m->nets[i].net, &a))
                return &m->rules[m->nets[i].rule];
    }
    size_t nl = name ? strlen(name) : 0;
    if (nl) {
        if ((r = ac__find(m, pb, 'a', name, nl)) || (r = ac__parents(m, pb, name, nl)))
            return r;
    }
    if (m->nres) {
        const char *v = txt[0] ? txt : addr;
        if ((r = ac__patterns(m, sc, v, strlen(v))))
            return r;
        if (nl && (r = ac__patterns(m, sc, name, nl)))
            return r;
    }
    return NULL;
}

static const struct ac_rule *ac__lookup_addr(const struct ac_map *m, struct ac_scratch *sc,
                                             struct ac_probe *pb, const char *v)
{
    const struct ac_rule *r;
    size_t n = strlen(v);
    if (n == 0) {
        if ((r = ac__find(m, pb, 'n', "", 0)))
            return r;
        return ac__patterns(m, sc, "", 0);
    }
    if ((r = ac__find(m, pb, 'a', v, n)))
        return r;
    const char *at = strrchr(v, '@');
    if (at) {
        const char *d = at + 1;
        size_t dl = strlen(d);
        if (dl && ((r = ac__find(m, pb, 'd', d, dl)) || (r = ac__parents(m, pb, d, dl))))
            return r;
        if (at > v && (r = ac__find(m, pb, 'l', v, (size_t)(at - v))))
            return r;
    } else {
        /* a recipient without a domain ("postmaster") is a local part */
        if ((r = ac__find(m, pb, 'l', v, n)))
            return r;
    }
    return ac__patterns(m, sc, v, n);
}

const struct ac_rule *ac_map_lookup(const struct ac_map *m, struct ac_scratch *sc,
                                    const char *value, const char *name)
{
    if (!m || !value)
        return NULL;
    struct ac_probe pb;
    switch (m->kind) {
    case AC_MAP_CLIENT:
        return ac__lookup_client(m, sc, &pb, value, name);
    case AC_MAP_HELO: {
        size_t n = strlen(value);
        const struct ac_rule *r;
        if (n == 0)
            return NULL;
        if ((r = ac__find(m, &pb, 'a', value, n)) || (r = ac__parents(m, &pb, value, n)))
            return r;
        return ac__patterns(m, sc, value, n);
    }
    case AC_MAP_SENDER:
    case AC_MAP_RCPT:
        return ac__lookup_addr(m, sc, &pb, value);
    default:
        return NULL;
    }
}
