/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz the spam plugin's HTML scanner (spam_html) and URI finder
 * (spam_uri), which see every text part of every message.
 *
 * HTML invariants: the URI list stays within SPAM_HTML_MAX_URIS, every
 * URI and link is a NUL-terminated string, the visible and hidden texts
 * are NUL-terminated and bounded by the input's size (entities and line
 * breaks never expand more than 4x), a second parse gives the same result.
 * URI invariants: at most `max` URIs, each non-empty, without blanks or
 * line ends, starting with a scheme the finder knows; the host of a URI is
 * lower case, NUL-terminated within its buffer and holds no '/', '@' or
 * blank; spam_uri_hosts_differ() is symmetric, false for a host and
 * itself and for "www." + host.
 *
 * Input: byte 0 = mode (bit 0: HTML, else text for the URI finder; bits
 * 1..3: URI limit), then the text.
 */
#include "fuzz.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "spam_html.h"
#include "spam_uri.h"

struct uris {
    size_t n;
};

static bool has_scheme(const char *u, size_t n)
{
    static const char *const schemes[] = {"http://", "https://", "ftp://", "mailto:"};

    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t l = strlen(schemes[i]);
        if (n >= l && strncasecmp(u, schemes[i], l) == 0)
            return true;
    }
    return false;
}

static void check_host(const char *host)
{
    char www[300], *cut;

    for (const char *p = host; *p; p++)
        FUZZ_CHECK(!isupper((unsigned char)*p) && *p != '/' && *p != '@' && *p != ' ' &&
                   *p != '\t' && *p != '\r' && *p != '\n');
    FUZZ_CHECK(spam_uri_hosts_differ(host, host) == 0);
    snprintf(www, sizeof www, "www.%s", host);
    FUZZ_CHECK(spam_uri_hosts_differ(www, host) == 0);
    FUZZ_CHECK(spam_uri_hosts_differ(host, www) == 0);
    cut = strchr(host, '.');
    if (cut && cut[1]) {
        int d1 = spam_uri_hosts_differ(host, cut + 1), d2 = spam_uri_hosts_differ(cut + 1, host);
        FUZZ_CHECK(d1 == d2);
    }
}

static void on_uri(void *arg, const char *uri, size_t ulen)
{
    struct uris *u = arg;
    char host[256];
    char *copy;

    u->n++;
    FUZZ_CHECK(ulen > 0);
    for (size_t i = 0; i < ulen; i++)
        FUZZ_CHECK(uri[i] != ' ' && uri[i] != '\t' && uri[i] != '\r' && uri[i] != '\n' &&
                   uri[i] != '\0');
    FUZZ_CHECK(has_scheme(uri, ulen));
    copy = strndup(uri, ulen);
    FUZZ_CHECK(copy != NULL);
    memset(host, 'Z', sizeof host);
    if (spam_uri_host(copy, host, sizeof host) == 0) {
        FUZZ_CHECK(memchr(host, '\0', sizeof host) != NULL);
        check_host(host);
    }
    free(copy);
}

static void same_strings(char **a, char **b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(a[i] && b[i] && strcmp(a[i], b[i]) == 0);
}

static void fuzz_html(const char *h, size_t len)
{
    struct spam_html_result r, r2;

    memset(&r, 0, sizeof r);
    memset(&r2, 0, sizeof r2);
    spam_html_parse(h, len, &r);
    FUZZ_CHECK(r.nuris <= SPAM_HTML_MAX_URIS);
    FUZZ_CHECK(r.text.len <= 4 * len + 16 && r.hidden.len <= 4 * len + 16);
    FUZZ_CHECK(r.text.len == 0 || r.text.ptr[r.text.len] == '\0');
    FUZZ_CHECK(r.hidden.len == 0 || r.hidden.ptr[r.hidden.len] == '\0');
    for (size_t i = 0; i < r.nlinks; i++) {
        char host[256];

        FUZZ_CHECK(r.links[i].href != NULL && r.links[i].text != NULL);
        if (spam_uri_host(r.links[i].href, host, sizeof host) == 0)
            check_host(host);
        if (spam_uri_text_host(r.links[i].text, host, sizeof host) == 0)
            check_host(host);
    }

    spam_html_parse(h, len, &r2);
    FUZZ_CHECK(r2.nuris == r.nuris && r2.nlinks == r.nlinks);
    FUZZ_CHECK(r2.text.len == r.text.len && r2.hidden.len == r.hidden.len);
    FUZZ_CHECK(r.text.len == 0 || memcmp(r.text.ptr, r2.text.ptr, r.text.len) == 0);
    FUZZ_CHECK(r.hidden.len == 0 || memcmp(r.hidden.ptr, r2.hidden.ptr, r.hidden.len) == 0);
    same_strings(r.uris, r2.uris, r.nuris);
    for (size_t i = 0; i < r.nlinks; i++)
        FUZZ_CHECK(strcmp(r.links[i].href, r2.links[i].href) == 0 &&
                   strcmp(r.links[i].text, r2.links[i].text) == 0);
    spam_html_result_free(&r);
    spam_html_result_free(&r2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    if (data[0] & 1) {
        fuzz_html(text, len);
    } else {
        size_t max = (size_t)((data[0] >> 1) & 7) * 4 + 1;
        struct uris u = {0};
        char host[64];
        char *t = strndup(text, len);

        FUZZ_CHECK(t != NULL);
        FUZZ_CHECK(spam_uri_extract(text, len, max, on_uri, &u) == u.n);
        FUZZ_CHECK(u.n <= max);
        memset(host, 'Z', sizeof host);
        if (spam_uri_text_host(t, host, sizeof host) == 0) {
            FUZZ_CHECK(memchr(host, '\0', sizeof host) != NULL);
            check_host(host);
        }
        free(t);
    }
    return 0;
}
