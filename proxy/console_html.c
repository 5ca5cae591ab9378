/* SPDX-License-Identifier: GPL-2.0-or-later */
/* console_html: escaping and form decoding for the console; see console_html.h. */
#include "console_html.h"

#include <errno.h>
#include <string.h>

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0 when the
 * bytes there are not one (overlong, surrogate, above U+10FFFF, cut). */
static size_t console_html__utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min, cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, min = 0x80, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, min = 0x800, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int console_html_escape(buf_t *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* the longest run that needs nothing */
        size_t run = 0;
        while (i + run < n) {
            unsigned char c = p[i + run];
            if (c < 0x20 || c == 0x7f || c >= 0x80 || c == '&' || c == '<' || c == '>' ||
                c == '"' || c == '\'')
                break;
            run++;
        }
        if (run && buf_append(b, p + i, run) != 0)
            return -ENOMEM;
        i += run;
        if (i >= n)
            break;
        unsigned char c = p[i];
        const char *rep = NULL;
        size_t step = 1;
        switch (c) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        case '\t':
            rep = "\t";
            break;
        case '\n':
            rep = "\n";
            break;
        case '\r':
            rep = "";
            break;
        default:
            if (c >= 0x80) {
                step = console_html__utf8_len(p + i, n - i);
                if (step > 0) {
                    /* C1 controls (U+0080..U+009F) are invisible too */
                    if (step == 2 && c == 0xc2 && p[i + 1] < 0xa0) {
                        rep = "\xef\xbf\xbd";
                    } else if (buf_append(b, p + i, step) != 0) {
                        return -ENOMEM;
                    }
                } else {
                    step = 1;
                    rep = "\xef\xbf\xbd";
                }
            } else {
                rep = "\xef\xbf\xbd"; /* C0 control, DEL */
            }
        }
        if (rep && buf_puts(b, rep) != 0)
            return -ENOMEM;
        i += step;
    }
    return 0;
}

int console_html_escape_str(buf_t *b, const char *s)
{
    return s ? console_html_escape(b, s, strlen(s)) : 0;
}

int console_html_urlenc(buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        unsigned char c = *p;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~';
        char tmp[3] = {(char)c, 0, 0};
        size_t len = 1;
        if (!plain) {
            tmp[0] = '%', tmp[1] = hex[c >> 4], tmp[2] = hex[c & 15];
            len = 3;
        }
        if (buf_append(b, tmp, len) != 0)
            return -ENOMEM;
    }
    return 0;
}

static int console_html__hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int console_html_form_get(const char *body, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    size_t i = 0;
    if (outlen == 0)
        return -E2BIG;
    while (i < len) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        size_t eq = i;
        while (eq < end && body[eq] != '=')
            eq++;
        /* field names are plain ASCII in our forms: compare undecoded */
        if (eq - i == nlen && memcmp(body + i, name, nlen) == 0) {
            size_t o = 0;
            for (size_t k = eq < end ? eq + 1 : end; k < end; k++) {
                char c = body[k];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%') {
                    if (k + 2 >= end)
                        return -EINVAL; /* "%" or "%4" at the end */
                    int h = console_html__hex(body[k + 1]), l = console_html__hex(body[k + 2]);
                    if (h < 0 || l < 0)
                        return -EINVAL;
                    c = (char)(h << 4 | l);
                    k += 2;
                }
                if (c == '\0')
                    return -EINVAL;
                if (o + 1 >= outlen)
                    return -E2BIG;
                out[o++] = c;
            }
            out[o] = '\0';
            return (int)o;
        }
        i = end + 1;
    }
    return -ENOENT;
}
