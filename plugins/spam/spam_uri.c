/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_uri: URI extraction and host comparison (see spam_uri.h).
 */
#include "spam_uri.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define SPAM_URI_MAX 2048

static int spam_uri__stop(unsigned char c)
{
    return c <= ' ' || c == '"' || c == '<' || c == '>' || c == '\'' || c == '`' || c == '{' || c == '}' ||
           c == '|' || c == '\\' || c == '^' || c == 0x7f;
}

static const char *const spam_uri__schemes[] = {"http://", "https://", "ftp://", "mailto:", "www.", NULL};

size_t spam_uri_extract(const char *text, size_t len, size_t max,
                        void (*fn)(void *arg, const char *uri, size_t ulen), void *arg)
{
    char buf[SPAM_URI_MAX + 8];
    size_t found = 0;
    size_t i = 0;
    while (i < len && found < max) {
        /* Candidates start with h, f, m or w; skip quickly to the next
         * (| 0x20 lowers exactly the ASCII letters among these: no other
         * byte becomes one of them; no locale call per byte). */
        unsigned char lc = (unsigned char)text[i] | 0x20;
        if (lc != 'h' && lc != 'f' && lc != 'm' && lc != 'w') {
            i++;
            continue;
        }
        /* Must start a word: "xwww." or "shttp://" are not URIs. */
        if (i > 0 && isalnum((unsigned char)text[i - 1])) {
            i++;
            continue;
        }
        const char *match = NULL;
        for (size_t s = 0; spam_uri__schemes[s]; s++) {
            size_t sl = strlen(spam_uri__schemes[s]);
            if (len - i > sl && strncasecmp(text + i, spam_uri__schemes[s], sl) == 0) {
                match = spam_uri__schemes[s];
                break;
            }
        }
        if (!match) {
            i++;
            continue;
        }
        size_t j = i + strlen(match);
        while (j < len && !spam_uri__stop((unsigned char)text[j]))
            j++;
        size_t end = j;
        while (end > i && strchr(".,;:!?)]*'", text[end - 1]))
            end--;
        size_t ulen = end - i;
        if (ulen > strlen(match) + 1) {
            size_t o = 0;
            if (match[0] == 'w') {
                memcpy(buf, "http://", 7);
                o = 7;
            }
            if (ulen > SPAM_URI_MAX)
                ulen = SPAM_URI_MAX;
            memcpy(buf + o, text + i, ulen);
            buf[o + ulen] = '\0';
            fn(arg, buf, o + ulen);
            found++;
        }
        i = j > i ? j : i + 1;
    }
    return found;
}

static int spam_uri__host_chars(const char *s, size_t n, char *out, size_t outsz)
{
    /* Strip userinfo, port; keep [IPv6] as written. */
    const char *at = NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '@')
            at = s + i;
    if (at) {
        n -= (size_t)(at + 1 - s);
        s = at + 1;
    }
    size_t hl = 0;
    if (n > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        hl = rb ? (size_t)(rb - s) + 1 : n;
    } else {
        while (hl < n && s[hl] != ':')
            hl++;
    }
    while (hl > 0 && s[hl - 1] == '.')
        hl--;
    if (hl == 0 || hl >= outsz)
        return -1;
    for (size_t i = 0; i < hl; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[hl] = '\0';
    return 0;
}

int spam_uri_host(const char *uri, char *out, size_t outsz)
{
    const char *p = uri;
    while (*p == ' ' || *p == '\t')
        p++;
    const char *colon = strchr(p, ':');
    if (!colon || colon[1] != '/' || colon[2] != '/') {
        if (strncasecmp(p, "www.", 4) != 0)
            return -1;
    } else {
        for (const char *q = p; q < colon; q++)
            if (!isalnum((unsigned char)*q) && *q != '+' && *q != '-' && *q != '.')
                return -1;
        p = colon + 3;
    }
    size_t n = strcspn(p, "/?#\\ \t\r\n");
    return spam_uri__host_chars(p, n, out, outsz);
}

int spam_uri_text_host(const char *text, char *out, size_t outsz)
{
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
    if (strncasecmp(p, "http://", 7) == 0 || strncasecmp(p, "https://", 8) == 0)
        return spam_uri_host(p, out, outsz);
    /* A bare domain: labels of [a-z0-9-] joined by dots, alphabetic TLD. */
    size_t n = 0, dots = 0, last_dot = 0;
    while (p[n] && (isalnum((unsigned char)p[n]) || p[n] == '-' || p[n] == '.')) {
        if (p[n] == '.') {
            dots++;
            last_dot = n;
        }
        n++;
    }
    while (n > 0 && p[n - 1] == '.')
        n--, dots--;
    if (dots == 0 || n == 0 || last_dot + 1 >= n)
        return -1;
    /* The text must be the domain, optionally followed by a path. */
    const char *rest = p + n;
    while (*rest == ' ' || *rest == '\t' || *rest == '\n')
        rest++;
    if (*rest && p[n] != '/')
        return -1;
    size_t tld = n - last_dot - 1;
    if (tld < 2)
        return -1;
    for (size_t i = last_dot + 1; i < n; i++)
        if (!isalpha((unsigned char)p[i]))
            return -1;
    return spam_uri__host_chars(p, n, out, outsz);
}

static const char *spam_uri__strip_www(const char *h)
{
    return strncmp(h, "www.", 4) == 0 ? h + 4 : h;
}

/* 1 when sub == dom or sub ends with "." dom. */
static int spam_uri__within(const char *sub, const char *dom)
{
    size_t ls = strlen(sub), ld = strlen(dom);
    if (ls == ld)
        return strcmp(sub, dom) == 0;
    return ls > ld && sub[ls - ld - 1] == '.' && strcmp(sub + ls - ld, dom) == 0;
}

int spam_uri_hosts_differ(const char *a, const char *b)
{
    a = spam_uri__strip_www(a);
    b = spam_uri__strip_www(b);
    return !spam_uri__within(a, b) && !spam_uri__within(b, a);
}
