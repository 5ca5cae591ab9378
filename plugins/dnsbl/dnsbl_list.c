/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dnsbl_list: parser of the list file and the meaning of answers (see
 * dnsbl_list.h for the format).
 */
#include "dnsbl_list.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dnsbl__parser {
    const char *fname;
    unsigned line;
    size_t nerr;
    void (*errfn)(void *arg, const char *msg);
    void *arg;
};

static void dnsbl__err(struct dnsbl__parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void dnsbl__err(struct dnsbl__parser *p, const char *fmt, ...)
{
    char msg[512], out[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Quoted file text may hold anything: keep the message one printable line. */
    for (char *c = msg; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
    snprintf(out, sizeof out, "%s:%u: %s", p->fname, p->line, msg);
    p->nerr++;
    if (p->errfn)
        p->errfn(p->arg, out);
}

/* A zone or domain name: labels of letters, digits, '-' and '_', 1..63
 * octets each, no empty label. */
static int dnsbl__valid_name(const char *s, size_t max)
{
    size_t len = strlen(s), lab = 0;
    if (len == 0 || len > max)
        return 0;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.' || c == '\0') {
            if (lab == 0 || lab > 63)
                return 0;
            lab = 0;
        } else if (isalnum(c) || c == '-' || c == '_') {
            lab++;
        } else {
            return 0;
        }
    }
    return 1;
}

/* One octet of a MATCH: N, [lo-hi] or '*'. Advances *s. */
static int dnsbl__octet(const char **s, uint8_t *lo, uint8_t *hi)
{
    const char *p = *s;
    unsigned long a, b;
    char *end;
    if (*p == '*') {
        *lo = 0;
        *hi = 255;
        *s = p + 1;
        return 0;
    }
    if (*p == '[') {
        if (!isdigit((unsigned char)p[1]))
            return -1;
        a = strtoul(p + 1, &end, 10);
        if (*end != '-' || !isdigit((unsigned char)end[1]))
            return -1;
        b = strtoul(end + 1, &end, 10);
        if (*end != ']' || a > 255 || b > 255 || a > b)
            return -1;
        *lo = (uint8_t)a;
        *hi = (uint8_t)b;
        *s = end + 1;
        return 0;
    }
    if (!isdigit((unsigned char)*p))
        return -1;
    a = strtoul(p, &end, 10);
    if (a > 255 || end - p > 3)
        return -1;
    *lo = *hi = (uint8_t)a;
    *s = end;
    return 0;
}

/* A pattern of four octets; 0 or -1. */
static int dnsbl__pattern(const char *s, uint8_t lo[4], uint8_t hi[4])
{
    for (int i = 0; i < 4; i++) {
        if (dnsbl__octet(&s, &lo[i], &hi[i]) < 0)
            return -1;
        if (i < 3 && *s++ != '.')
            return -1;
    }
    return *s ? -1 : 0;
}

static int dnsbl__addr(const char *s, uint8_t out[4])
{
    uint8_t lo[4], hi[4];
    if (dnsbl__pattern(s, lo, hi) < 0 || memcmp(lo, hi, 4) != 0)
        return -1;
    memcpy(out, lo, 4);
    return 0;
}

static int dnsbl__match(const char *tok, struct dnsbl_match *m)
{
    memset(m, 0, sizeof *m);
    if (!strncmp(tok, "mask=", 5)) {
        char *end;
        const char *v = tok + 5;
        if (!isdigit((unsigned char)*v))
            return -1;
        errno = 0;
        unsigned long n = strtoul(v, &end, 0);
        if (*end || errno || n == 0 || n > 255)
            return -1;
        m->how = DNSBL_MATCH_MASK;
        m->mask = (uint8_t)n;
        return 0;
    }
    const char *dash = strchr(tok, '-');
    if (dash && !strchr(tok, '[')) {
        /* A-B: two full addresses, A <= B. */
        char a[32];
        uint8_t lo[4], hi[4];
        size_t n = (size_t)(dash - tok);
        if (n >= sizeof a)
            return -1;
        memcpy(a, tok, n);
        a[n] = '\0';
        if (dnsbl__addr(a, lo) < 0 || dnsbl__addr(dash + 1, hi) < 0 || memcmp(lo, hi, 4) > 0)
            return -1;
        memcpy(m->lo, lo, 4);
        memcpy(m->hi, hi, 4);
        m->how = DNSBL_MATCH_RANGE;
        return 0;
    }
    return dnsbl__pattern(tok, m->lo, m->hi);
}

static size_t dnsbl__zone_index(struct dnsbl_lists *l, const char *name, enum dnsbl_kind kind,
                                struct dnsbl__parser *p)
{
    for (size_t i = 0; i < l->nzones; i++) {
        if (!strcmp(l->zones[i].name, name)) {
            if (l->zones[i].kind != kind) {
                dnsbl__err(p, "zone %s is used both as an ip and a uri list", name);
                return SIZE_MAX;
            }
            return i;
        }
    }
    if (l->nzones == DNSBL_MAX_ZONES) {
        dnsbl__err(p, "more than %d zones", DNSBL_MAX_ZONES);
        return SIZE_MAX;
    }
    struct dnsbl_zone *z = &l->zones[l->nzones];
    snprintf(z->name, sizeof z->name, "%s", name);
    z->kind = kind;
    return l->nzones++;
}

static int dnsbl__valid_symbol(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= DNSBL_SYMBOL_MAX || !(isupper((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isupper((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '_')
            return 0;
    return 1;
}

#define DNSBL_MAX_TOKENS (4 + DNSBL_MAX_MATCH + 1)

static void dnsbl__line(struct dnsbl__parser *p, struct dnsbl_lists *l, char *s)
{
    char *tok[DNSBL_MAX_TOKENS];
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(s, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (t[0] == '#')
            break;
        if (n == DNSBL_MAX_TOKENS) {
            dnsbl__err(p, "more than %d answers to match", DNSBL_MAX_MATCH);
            return;
        }
        tok[n++] = t;
    }
    if (n == 0)
        return;
    if (n < 4) {
        dnsbl__err(p, "expected KIND ZONE SYMBOL SCORE [MATCH ...]");
        return;
    }
    enum dnsbl_kind kind;
    if (!strcmp(tok[0], "ip")) {
        kind = DNSBL_KIND_IP;
    } else if (!strcmp(tok[0], "uri")) {
        kind = DNSBL_KIND_URI;
    } else {
        dnsbl__err(p, "unknown kind \"%.40s\" (ip or uri)", tok[0]);
        return;
    }
    char *zone = tok[1];
    size_t zl = strlen(zone);
    if (zl && zone[zl - 1] == '.')
        zone[--zl] = '\0';
    for (char *c = zone; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (!dnsbl__valid_name(zone, DNSBL_ZONE_MAX)) {
        dnsbl__err(p, "\"%.80s\" is not a zone name", tok[1]);
        return;
    }
    if (!dnsbl__valid_symbol(tok[2])) {
        dnsbl__err(p, "symbol \"%.80s\": A-Z, 0-9 and _, at most %d characters", tok[2],
                   DNSBL_SYMBOL_MAX - 1);
        return;
    }
    char *end;
    errno = 0;
    double score = strtod(tok[3], &end);
    if (*end || errno || !isfinite(score) || fabs(score) > 1000 || end == tok[3]) {
        dnsbl__err(p, "score \"%.40s\" is not a number from -1000 to 1000", tok[3]);
        return;
    }
    for (size_t i = 0; i < l->nentries; i++) {
        if (!strcmp(l->entries[i].symbol, tok[2])) {
            dnsbl__err(p, "symbol %s already defined on line %u", tok[2], l->entries[i].line);
            return;
        }
    }
    if (l->nentries == DNSBL_MAX_ENTRIES) {
        dnsbl__err(p, "more than %d lines", DNSBL_MAX_ENTRIES);
        return;
    }
    struct dnsbl_entry e = {.score = score, .line = p->line};
    snprintf(e.symbol, sizeof e.symbol, "%s", tok[2]);
    for (size_t i = 4; i < n; i++) {
        if (dnsbl__match(tok[i], &e.match[e.nmatch]) < 0) {
            dnsbl__err(p, "answer \"%.60s\": an address, A-B, octets with [lo-hi] or *, or mask=N",
                       tok[i]);
            return;
        }
        const struct dnsbl_match *m = &e.match[e.nmatch];
        if (m->how != DNSBL_MATCH_MASK && (m->lo[0] != 127 || m->hi[0] != 127)) {
            dnsbl__err(p, "answer \"%.60s\" is outside 127.0.0.0/8, where lists answer", tok[i]);
            return;
        }
        e.nmatch++;
    }
    size_t zi = dnsbl__zone_index(l, zone, kind, p);
    if (zi == SIZE_MAX)
        return;
    e.zone = zi;
    struct dnsbl_entry *grown = realloc(l->entries, (l->nentries + 1) * sizeof *grown);
    if (!grown) {
        dnsbl__err(p, "out of memory");
        return;
    }
    l->entries = grown;
    l->entries[l->nentries++] = e;
}

size_t dnsbl_lists_parse(const char *text, size_t len, const char *fname, struct dnsbl_lists *out,
                         void (*errfn)(void *arg, const char *msg), void *arg)
{
    struct dnsbl__parser p = {.fname = fname, .errfn = errfn, .arg = arg};
    memset(out, 0, sizeof *out);
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        p.line++;
        if (n && text[pos + n - 1] == '\r')
            n--;
        if (n > 1000) {
            dnsbl__err(&p, "line longer than 1000 characters");
        } else if (memchr(text + pos, '\0', n)) {
            dnsbl__err(&p, "NUL character in the line");
        } else {
            char buf[1001];
            int bad = 0;
            memcpy(buf, text + pos, n);
            buf[n] = '\0';
            for (size_t i = 0; i < n; i++)
                if (((unsigned char)buf[i] < 0x20 && buf[i] != '\t') || buf[i] == 0x7f)
                    bad = 1;
            if (bad)
                dnsbl__err(&p, "control character in the line");
            else
                dnsbl__line(&p, out, buf);
        }
        pos += (nl ? (size_t)(nl - (text + pos)) + 1 : len - pos);
    }
    if (p.nerr)
        dnsbl_lists_free(out);
    return p.nerr;
}

void dnsbl_lists_free(struct dnsbl_lists *l)
{
    free(l->entries);
    memset(l, 0, sizeof *l);
}

enum dnsbl_answer dnsbl_answer_parse(const char *text, uint8_t out[4])
{
    struct in_addr a;
    if (!text || inet_pton(AF_INET, text, &a) != 1)
        return DNSBL_ANSWER_ERROR;
    memcpy(out, &a.s_addr, 4);
    if (out[0] != 127 || (out[1] == 255 && out[2] == 255))
        return DNSBL_ANSWER_ERROR;
    return DNSBL_ANSWER_LISTED;
}

static uint32_t dnsbl__u32(const uint8_t a[4])
{
    return (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
}

int dnsbl_entry_matches(const struct dnsbl_entry *e, const uint8_t addr[4])
{
    if (addr[0] != 127)
        return 0;
    if (e->nmatch == 0)
        return 1;
    for (size_t i = 0; i < e->nmatch; i++) {
        const struct dnsbl_match *m = &e->match[i];
        if (m->how == DNSBL_MATCH_MASK) {
            if (addr[3] & m->mask)
                return 1;
        } else if (m->how == DNSBL_MATCH_RANGE) {
            uint32_t v = dnsbl__u32(addr);
            if (v >= dnsbl__u32(m->lo) && v <= dnsbl__u32(m->hi))
                return 1;
        } else {
            int ok = 1;
            for (int k = 0; k < 4; k++)
                if (addr[k] < m->lo[k] || addr[k] > m->hi[k])
                    ok = 0;
            if (ok)
                return 1;
        }
    }
    return 0;
}

int dnsbl_ip_qname(const char *ip, const char *zone, char *out, size_t outsz)
{
    struct in6_addr a6;
    struct in_addr a4;
    int n;
    if (!ip || !zone)
        return -1;
    if (!strncasecmp(ip, "::ffff:", 7) && inet_pton(AF_INET, ip + 7, &a4) == 1)
        ip += 7;
    if (inet_pton(AF_INET, ip, &a4) == 1) {
        const uint8_t *b = (const uint8_t *)&a4.s_addr;
        n = snprintf(out, outsz, "%u.%u.%u.%u.%s", b[3], b[2], b[1], b[0], zone);
    } else if (inet_pton(AF_INET6, ip, &a6) == 1) {
        static const char hex[] = "0123456789abcdef";
        char nib[64];
        for (int i = 0; i < 16; i++) {
            uint8_t b = a6.s6_addr[15 - i];
            nib[4 * i] = hex[b & 0xf];
            nib[4 * i + 1] = '.';
            nib[4 * i + 2] = hex[b >> 4];
            nib[4 * i + 3] = '.';
        }
        n = snprintf(out, outsz, "%.64s%s", nib, zone);
    } else {
        return -1;
    }
    if (n < 0 || (size_t)n >= outsz || n > DNSBL_NAME_MAX - 1)
        return -1;
    return n;
}

int dnsbl_dom_qname(const char *dom, const char *zone, char *out, size_t outsz)
{
    if (!dom || !zone || !dnsbl__valid_name(dom, DNSBL_NAME_MAX))
        return -1;
    int n = snprintf(out, outsz, "%s.%s", dom, zone);
    if (n < 0 || (size_t)n >= outsz || n > DNSBL_NAME_MAX - 1)
        return -1;
    return n;
}

static int dnsbl__port(const char *s)
{
    if (!*s || strlen(s) > 5)
        return -1;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            return -1;
    long v = strtol(s, NULL, 10);
    return v >= 1 && v <= 65535 ? 0 : -1;
}

static int dnsbl__server(const char *item)
{
    char host[64];
    struct in6_addr a6;
    const char *port = NULL;
    size_t n;

    if (item[0] == '[') {
        const char *rb = strchr(item, ']');
        if (!rb || (rb[1] != '\0' && rb[1] != ':'))
            return -1;
        n = (size_t)(rb - item - 1);
        port = rb[1] == ':' ? rb + 2 : NULL;
        if (n >= sizeof host)
            return -1;
        memcpy(host, item + 1, n);
        host[n] = '\0';
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return -1;
    } else {
        const char *colon = strchr(item, ':');
        if (colon && strchr(colon + 1, ':')) {
            /* A bare IPv6 address, no port. */
            return inet_pton(AF_INET6, item, &a6) == 1 ? 0 : -1;
        }
        n = colon ? (size_t)(colon - item) : strlen(item);
        if (n >= sizeof host)
            return -1;
        memcpy(host, item, n);
        host[n] = '\0';
        port = colon ? colon + 1 : NULL;
        if (inet_pton(AF_INET, host, &a6) != 1)
            return -1;
    }
    return port ? dnsbl__port(port) : 0;
}

int dnsbl_servers_valid(const char *list, char *err, size_t errlen)
{
    char buf[512];
    size_t count = 0;
    if (!list || strlen(list) >= sizeof buf) {
        snprintf(err, errlen, "empty or too long");
        return -1;
    }
    snprintf(buf, sizeof buf, "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(buf, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        if (dnsbl__server(t) < 0) {
            snprintf(err, errlen, "\"%.80s\" is not IP[:PORT] or [IPv6]:PORT", t);
            return -1;
        }
        if (++count > 8) {
            snprintf(err, errlen, "more than 8 servers");
            return -1;
        }
    }
    if (count == 0) {
        snprintf(err, errlen, "no server given");
        return -1;
    }
    return 0;
}
