/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cfg_parse: the value grammar of sluice's configuration (numbers,
 * durations, sizes, booleans, enums, listen/upstream addresses), shared by
 * the daemon's keys (cfg.c) and the plugins' typed keys (plugcfg.c), so
 * one syntax holds in every section. Pure: no I/O, no DNS, no globals.
 */
#include "cfg_parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)
#define SEC 1000ULL
#define MIN (60ULL * SEC)
#define HOUR (60ULL * MIN)

static int cfg_parse__fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfg_parse__fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Leading decimal digits of *p into *out; -EINVAL without a digit,
 * -ERANGE past UINT64_MAX. Advances *p. */
static int cfg_parse__digits(const char **p, uint64_t *out)
{
    const char *q = *p;
    uint64_t v = 0;
    if (*q < '0' || *q > '9')
        return -EINVAL;
    for (; *q >= '0' && *q <= '9'; q++) {
        unsigned d = (unsigned)(*q - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *p = q;
    *out = v;
    return 0;
}

int cfg_parse_u64(const char *text, uint64_t *out)
{
    int rc = cfg_parse__digits(&text, out);
    if (rc == 0 && *text)
        return -EINVAL;
    return rc;
}

int cfg_parse_ms64(const char *text, uint64_t *out)
{
    uint64_t v, mul;
    int rc = cfg_parse__digits(&text, &v);
    if (rc)
        return rc;
    if (strcmp(text, "ms") == 0)
        mul = 1;
    else if (*text == 0 || strcmp(text, "s") == 0)
        mul = SEC;
    else if (strcmp(text, "m") == 0)
        mul = MIN;
    else if (strcmp(text, "h") == 0)
        mul = HOUR;
    else
        return -EINVAL;
    if (v > UINT64_MAX / mul)
        return -ERANGE;
    *out = v * mul;
    return 0;
}

int cfg_parse_bytes(const char *text, uint64_t *out)
{
    uint64_t v, mul = 1;
    int rc = cfg_parse__digits(&text, &v);
    if (rc)
        return rc;
    switch (*text) {
    case 0:
        break;
    case 'k':
    case 'K':
        mul = KIB;
        break;
    case 'm':
    case 'M':
        mul = MIB;
        break;
    case 'g':
    case 'G':
        mul = GIB;
        break;
    default:
        return -EINVAL;
    }
    if (*text && text[1])
        return -EINVAL;
    if (v > UINT64_MAX / mul)
        return -ERANGE;
    *out = v * mul;
    return 0;
}

int cfg_parse_duration_ms(const char *text, unsigned *out)
{
    uint64_t v;
    if (!text || cfg_parse_ms64(text, &v) != 0 || v > UINT_MAX)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int cfg_parse_size(const char *text, uint64_t *out)
{
    uint64_t v;
    if (!text || cfg_parse_bytes(text, &v) != 0)
        return -1;
    *out = v;
    return 0;
}

int cfg_parse_uint(const char *text, uint64_t *out)
{
    uint64_t v;
    if (!text || cfg_parse_u64(text, &v) != 0)
        return -1;
    *out = v;
    return 0;
}

int cfg_parse_enum(const char *text, const char *const *choices, int *out)
{
    for (int i = 0; text && choices[i]; i++)
        if (strcmp(text, choices[i]) == 0) {
            *out = i;
            return 0;
        }
    return -1;
}

int cfg_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    if (!text)
        return -1;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

int cfg_parse_addr(const char *text, struct cfg_addr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t tl = text ? strlen(text) : 0;
    if (tl == 0)
        return cfg_parse__fail(err, errlen, "empty address");
    if (tl >= sizeof out->text)
        return cfg_parse__fail(err, errlen, "address longer than %zu characters",
                               sizeof out->text - 1);
    memcpy(out->text, text, tl + 1);

    if (strncmp(text, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&out->sa;
        const char *path = text + 5;
        size_t pl = strlen(path);
        if (path[0] != '/')
            return cfg_parse__fail(err, errlen, "unix socket path must be absolute: '%s'", path);
        if (pl >= sizeof sun->sun_path)
            return cfg_parse__fail(err, errlen, "unix socket path longer than %zu characters",
                                   sizeof sun->sun_path - 1);
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, path, pl + 1);
        out->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pl + 1);
        return 0;
    }

    const char *host, *hend, *colon;
    bool v6 = text[0] == '[';
    if (v6) {
        host = text + 1;
        hend = strchr(host, ']');
        if (!hend)
            return cfg_parse__fail(err, errlen, "missing ']' in '%s'", text);
        if (hend[1] != ':')
            return cfg_parse__fail(err, errlen, "missing ':PORT' after ']' in '%s'", text);
        colon = hend + 1;
    } else {
        host = text;
        colon = strrchr(text, ':');
        if (!colon)
            return cfg_parse__fail(err, errlen, "missing ':PORT' in '%s'", text);
        if (memchr(text, ':', (size_t)(colon - text)))
            return cfg_parse__fail(err, errlen, "IPv6 address needs brackets, as in [::1]:25: '%s'",
                                   text);
        hend = colon;
    }
    size_t hl = (size_t)(hend - host);
    if (hl == 0)
        return cfg_parse__fail(err, errlen, "missing host in '%s'", text);
    if (hl >= sizeof out->host)
        return cfg_parse__fail(err, errlen, "host longer than %zu characters",
                               sizeof out->host - 1);
    memcpy(out->host, host, hl);
    out->host[hl] = 0;

    const char *ps = colon + 1;
    uint64_t port;
    if (cfg_parse_u64(ps, &port) != 0 || port < 1 || port > 65535)
        return cfg_parse__fail(err, errlen, "bad port '%s' (1-65535) in '%s'", ps, text);
    out->port = (int)port;

    if (!v6) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
        /* inet_pton, not inet_aton: "127.1" or "0x7f.1" are typos here. */
        const char *lit = strcmp(out->host, "localhost") == 0 ? "127.0.0.1" : out->host;
        if (inet_pton(AF_INET, lit, &sin->sin_addr) != 1)
            return cfg_parse__fail(err, errlen,
                                   "'%s' is not a numeric IPv4 address (no DNS lookups: use an IP "
                                   "address or localhost)",
                                   out->host);
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->salen = sizeof *sin;
        return 0;
    }
    /* getaddrinfo with AI_NUMERICHOST never queries DNS and, unlike
     * inet_pton, understands scope ids such as fe80::1%eth0. */
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_INET6;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(out->host, NULL, &hints, &ai) != 0 || !ai || ai->ai_addrlen > sizeof out->sa) {
        if (ai)
            freeaddrinfo(ai);
        return cfg_parse__fail(err, errlen, "'%s' is not a numeric IPv6 address", out->host);
    }
    memcpy(&out->sa, ai->ai_addr, ai->ai_addrlen);
    out->salen = (socklen_t)ai->ai_addrlen;
    freeaddrinfo(ai);
    ((struct sockaddr_in6 *)&out->sa)->sin6_port = htons((uint16_t)port);
    return 0;
}

void cfg_parse_fmt_ms(char *out, size_t n, uint64_t ms)
{
    if (ms && ms % HOUR == 0)
        snprintf(out, n, "%lluh", (unsigned long long)(ms / HOUR));
    else if (ms && ms % MIN == 0)
        snprintf(out, n, "%llum", (unsigned long long)(ms / MIN));
    else if (ms % SEC == 0)
        snprintf(out, n, "%llus", (unsigned long long)(ms / SEC));
    else
        snprintf(out, n, "%llums", (unsigned long long)ms);
}

void cfg_parse_fmt_size(char *out, size_t n, uint64_t v)
{
    if (v && v % GIB == 0)
        snprintf(out, n, "%lluG", (unsigned long long)(v / GIB));
    else if (v && v % MIB == 0)
        snprintf(out, n, "%lluM", (unsigned long long)(v / MIB));
    else if (v && v % KIB == 0)
        snprintf(out, n, "%lluk", (unsigned long long)(v / KIB));
    else
        snprintf(out, n, "%llu", (unsigned long long)v);
}
