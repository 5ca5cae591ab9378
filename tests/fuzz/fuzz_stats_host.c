/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz the stats endpoint's pure checks: stats_http_parse_listen() and the
 * Host check against DNS rebinding, stats_http_host_ok().
 *
 * Invariants: a parsed listen address has a NUL-terminated host or path
 * and a port 0..65535, and its rendering parses to the same address; an
 * error message is NUL-terminated in its buffer. A Host value is accepted
 * only when its name (without [] and port) is the listener's address, or
 * "localhost" on a loopback listener, or one of the allowed names; any
 * port in it is plain digits naming the listener's port; the answer does
 * not depend on letter case.
 *
 * Input: LISTEN NUL HOST NUL ALLOWED; a missing HOST means no Host header.
 */
#include "fuzz.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "stats_http.h"

static bool listed(const char *name, size_t len, const char *list)
{
    const char *p = list;

    while (*p) {
        p += strspn(p, " ,\t");
        size_t n = strcspn(p, " ,\t");
        if (n && n == len && strncasecmp(p, name, n) == 0)
            return true;
        p += n;
    }
    return false;
}

static void check_listen(const char *listen, struct stats_http_addr *a, bool *ok)
{
    char err[256], text[256];
    struct stats_http_addr b;

    memset(err, 'Z', sizeof err);
    *ok = stats_http_parse_listen(listen, a, err, sizeof err) == 0;
    if (!*ok) {
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
        return;
    }
    if (a->family == STATS_HTTP_UNIX) {
        FUZZ_CHECK(memchr(a->path, '\0', sizeof a->path) != NULL && a->path[0] == '/');
        snprintf(text, sizeof text, "unix:%s", a->path);
    } else {
        FUZZ_CHECK(memchr(a->host, '\0', sizeof a->host) != NULL && a->host[0]);
        FUZZ_CHECK(a->port >= 0 && a->port <= 65535);
        snprintf(text, sizeof text, a->family == STATS_HTTP_INET6 ? "[%s]:%d" : "%s:%d", a->host,
                 a->port);
    }
    FUZZ_CHECK(stats_http_parse_listen(text, &b, err, sizeof err) == 0);
    FUZZ_CHECK(b.family == a->family && b.port == a->port && strcmp(b.host, a->host) == 0 &&
               strcmp(b.path, a->path) == 0);
}

static void check_host(const char *host, const struct stats_http_addr *a, const char *allowed)
{
    bool ok = stats_http_host_ok(host, a, a->port, allowed);

    if (!host || a->family == STATS_HTTP_UNIX) {
        FUZZ_CHECK(ok);
        return;
    }

    char *flipped = strdup(host);
    FUZZ_CHECK(flipped != NULL);
    for (char *p = flipped; *p; p++)
        *p = (char)(islower((unsigned char)*p) ? toupper((unsigned char)*p)
                                               : tolower((unsigned char)*p));
    FUZZ_CHECK(stats_http_host_ok(flipped, a, a->port, allowed) == ok);
    free(flipped);
    if (!ok)
        return;

    const char *name = host, *end, *port = NULL;
    if (host[0] == '[') {
        name = host + 1;
        end = strchr(name, ']');
        FUZZ_CHECK(end != NULL);
        FUZZ_CHECK(end[1] == '\0' || end[1] == ':');
        if (end[1] == ':')
            port = end + 2;
    } else {
        end = strchr(host, ':');
        if (end)
            port = end + 1;
        else
            end = host + strlen(host);
    }
    size_t len = (size_t)(end - name);
    bool loopback = strncmp(a->host, "127.", 4) == 0 || strcmp(a->host, "::1") == 0;
    FUZZ_CHECK((len == strlen(a->host) && strncasecmp(name, a->host, len) == 0) ||
               (loopback && len == 9 && strncasecmp(name, "localhost", 9) == 0) ||
               listed(name, len, allowed));
    if (port) {
        long p = 0;
        size_t n = strlen(port);

        FUZZ_CHECK(n >= 1 && n <= 5 && strspn(port, "0123456789") == n);
        for (size_t i = 0; i < n; i++)
            p = p * 10 + (port[i] - '0');
        FUZZ_CHECK(p == a->port);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 3);
    struct stats_http_addr a;
    bool ok;

    FUZZ_CHECK(buf != NULL);
    memcpy(buf, data, size);
    buf[size] = buf[size + 1] = buf[size + 2] = '\0';
    const char *listen = buf;
    const char *host = buf + strlen(listen) + 1;
    bool have_host = (size_t)(host - buf) <= size;
    const char *allowed = have_host ? host + strlen(host) + 1 : "";
    if (allowed > buf + size)
        allowed = "";

    check_listen(listen, &a, &ok);
    if (ok)
        check_host(have_host ? host : NULL, &a, allowed);
    free(buf);
    return 0;
}
