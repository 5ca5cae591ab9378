/* SPDX-License-Identifier: GPL-2.0-or-later */
/* rl_rules: see rl_rules.h. */
#include "rl_rules.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const rl__what[] = {"connections", "messages", "recipients", "bytes"};
static const char *const rl__per[] = {"client_ip", "auth_user", "sender", "sender_domain",
                                      "rcpt_domain"};

const char *rl_what_name(enum rl_what w)
{
    return (unsigned)w < sizeof rl__what / sizeof rl__what[0] ? rl__what[w] : "?";
}

const char *rl_per_name(enum rl_per p)
{
    return (unsigned)p < sizeof rl__per / sizeof rl__per[0] ? rl__per[p] : "?";
}

static void rl__err(rl_err_fn fn, void *arg, int *errors, const char *file, unsigned line,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void rl__err(rl_err_fn fn, void *arg, int *errors, const char *file, unsigned line,
                    const char *fmt, ...)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg, "%s:%u: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    /* The words quoted come from the file: one printable line whatever
     * bytes they hold. */
    for (char *c = msg; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
    (*errors)++;
    if (fn)
        fn(arg, msg);
}

static int rl__lookup(const char *const *names, size_t n, const char *w)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(names[i], w) == 0)
            return (int)i;
    return -1;
}

/* "500", "200M", "1k": bytes take k/M/G (1024s). */
static int rl__number(const char *w, int with_unit, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*w))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(w, &end, 10);
    if (errno || v == 0)
        return -1;
    uint64_t mul = 1;
    if (*end && with_unit && !end[1]) {
        switch (*end) {
        case 'k':
        case 'K':
            mul = 1024ULL;
            break;
        case 'm':
        case 'M':
            mul = 1024ULL * 1024;
            break;
        case 'g':
        case 'G':
            mul = 1024ULL * 1024 * 1024;
            break;
        default:
            return -1;
        }
    } else if (*end) {
        return -1;
    }
    if (v > UINT64_MAX / mul || v * mul > (1ULL << 50))
        return -1;
    *out = v * mul;
    return 0;
}

/* "30s", "10m", "1h", "1d": 1 s to 7 days. */
static int rl__duration(const char *w, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*w))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(w, &end, 10);
    if (errno || v == 0 || !*end || end[1])
        return -1;
    uint64_t mul;
    switch (*end) {
    case 's':
        mul = 1000ULL;
        break;
    case 'm':
        mul = 60ULL * 1000;
        break;
    case 'h':
        mul = 3600ULL * 1000;
        break;
    case 'd':
        mul = 86400ULL * 1000;
        break;
    default:
        return -1;
    }
    if (v > (7ULL * 86400 * 1000) / mul)
        return -1;
    *out = v * mul;
    return 0;
}

static int rl__name_ok(const char *w)
{
    size_t n = strlen(w);
    if (n == 0 || n > RL_NAME_MAX)
        return 0;
    for (const char *p = w; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return 0;
    return 1;
}

int rl_rules_parse(const char *text, size_t len, const char *file, struct rl_rules *out,
                   rl_err_fn err, void *arg)
{
    int errors = 0;
    unsigned line = 0;
    memset(out, 0, sizeof *out);
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        char buf[512];
        size_t l = (size_t)(le - p);
        if (l >= sizeof buf) {
            rl__err(err, arg, &errors, file, line, "line longer than %zu characters",
                    sizeof buf - 1);
            p = nl ? nl + 1 : end;
            continue;
        }
        memcpy(buf, p, l);
        buf[l] = 0;
        p = nl ? nl + 1 : end;
        if (memchr(buf, 0, l)) {
            rl__err(err, arg, &errors, file, line, "NUL byte");
            continue;
        }
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = 0;
        char *w[8];
        size_t nw = 0;
        char *save = NULL; /* strtok_r: pure module, any thread */
        for (char *s = strtok_r(buf, " \t\r", &save); s; s = strtok_r(NULL, " \t\r", &save)) {
            if (nw == sizeof w / sizeof w[0])
                break;
            w[nw++] = s;
        }
        if (nw == 0)
            continue;
        if (nw != 5) {
            rl__err(err, arg, &errors, file, line,
                    "expected NAME WHAT PER LIMIT WINDOW (5 words), got %zu", nw);
            continue;
        }
        struct rl_rule r = {.line = line};
        int what = rl__lookup(rl__what, sizeof rl__what / sizeof rl__what[0], w[1]);
        int per = rl__lookup(rl__per, sizeof rl__per / sizeof rl__per[0], w[2]);
        int bad = 0;
        if (!rl__name_ok(w[0])) {
            rl__err(err, arg, &errors, file, line,
                    "rule name '%.60s': 1-%d letters, digits, '_' or '-'", w[0], RL_NAME_MAX);
            bad = 1;
        }
        for (size_t i = 0; i < out->n && !bad; i++)
            if (strcmp(out->v[i].name, w[0]) == 0) {
                rl__err(err, arg, &errors, file, line, "rule '%s' already defined on line %u", w[0],
                        out->v[i].line);
                bad = 1;
            }
        if (what < 0) {
            rl__err(err, arg, &errors, file, line,
                    "'%.60s': expected connections, messages, recipients or bytes", w[1]);
            bad = 1;
        }
        if (per < 0) {
            rl__err(err, arg, &errors, file, line,
                    "'%.60s': expected client_ip, auth_user, sender, sender_domain or "
                    "rcpt_domain",
                    w[2]);
            bad = 1;
        }
        if (!bad && what == RL_CONNECTIONS && per != RL_CLIENT_IP) {
            rl__err(err, arg, &errors, file, line,
                    "connections are counted per client_ip only (nothing else is known "
                    "when a client connects)");
            bad = 1;
        }
        if (!bad && per == RL_RCPT_DOMAIN && what != RL_RECIPIENTS) {
            rl__err(err, arg, &errors, file, line, "rcpt_domain counts recipients only");
            bad = 1;
        }
        if (rl__number(w[3], what == RL_BYTES, &r.limit) != 0) {
            rl__err(err, arg, &errors, file, line, "limit '%.60s': a positive number%s", w[3],
                    what == RL_BYTES ? " (k, M, G for bytes)" : "");
            bad = 1;
        }
        if (rl__duration(w[4], &r.window_ms) != 0) {
            rl__err(err, arg, &errors, file, line,
                    "window '%.60s': a number with s, m, h or d, 1s to 7d", w[4]);
            bad = 1;
        }
        if (bad)
            continue;
        if (out->n == RL_MAX_RULES) {
            rl__err(err, arg, &errors, file, line, "more than %d rules", RL_MAX_RULES);
            continue;
        }
        snprintf(r.name, sizeof r.name, "%s", w[0]);
        r.what = (enum rl_what)what;
        r.per = (enum rl_per)per;
        out->v[out->n++] = r;
    }
    return errors;
}

static int rl__lower(const char *in, char *out, size_t n)
{
    size_t l = strlen(in);
    if (l == 0 || l >= n)
        return -1;
    for (size_t i = 0; i <= l; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    return 0;
}

int rl_subject(enum rl_per per, const char *value, unsigned v6_prefix, char *out, size_t n)
{
    if (!value || !*value || n < 2)
        return -1;
    switch (per) {
    case RL_CLIENT_IP: {
        unsigned char a[16];
        if (!strchr(value, ':') || inet_pton(AF_INET6, value, a) != 1)
            return snprintf(out, n, "%s", value) < (int)n ? 0 : -1;
        /* IPv4-mapped: the IPv4 address itself */
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) {
            char v4[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, a + 12, v4, sizeof v4);
            return snprintf(out, n, "%s", v4) < (int)n ? 0 : -1;
        }
        if (v6_prefix > 128)
            v6_prefix = 128;
        for (unsigned bit = v6_prefix; bit < 128; bit++)
            a[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
        char txt[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, a, txt, sizeof txt);
        return snprintf(out, n, "%s/%u", txt, v6_prefix) < (int)n ? 0 : -1;
    }
    case RL_AUTH_USER:
        return snprintf(out, n, "%s", value) < (int)n ? 0 : -1;
    case RL_SENDER:
        return rl__lower(value, out, n);
    case RL_SENDER_DOMAIN:
    case RL_RCPT_DOMAIN: {
        const char *at = strrchr(value, '@');
        if (!at || !at[1])
            return -1;
        return rl__lower(at + 1, out, n);
    }
    }
    return -1;
}

uint64_t rl_estimate(uint64_t cur, uint64_t prev, uint64_t now_ms, uint64_t window_ms)
{
    if (window_ms == 0)
        return cur;
    uint64_t into = now_ms % window_ms; /* how far into the current bucket */
    /* prev * (window - into) / window, without overflow for any count the
     * store can hold */
    long double share = (long double)(window_ms - into) / (long double)window_ms;
    return cur + (uint64_t)((long double)prev * share);
}
