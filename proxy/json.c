/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * json: string quoting and a small validating scanner; see json.h.
 *
 * The scanner exists so that a record built by a plugin cannot corrupt a
 * document it is pasted into (the /stats decision ring); it accepts what
 * RFC 8259 accepts and builds nothing.
 */
#include "json.h"

#include <stddef.h>
#include <string.h>

/* ---- Quoting --------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s (2..4), or 0 if there is none. */
static size_t json__utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) /* the NUL ends the string: not a continuation */
            return 0;
    return n;
}

void json_escape(buf_t *b, const char *s)
{
    if (s == NULL) {
        buf_puts(b, "null");
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    buf_puts(b, "\"");
    while (*p != '\0') {
        /* Copy the longest run that needs no escape in one append. */
        const unsigned char *run = p;
        for (;;) {
            if (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
                p++;
                continue;
            }
            size_t n = *p >= 0x80 ? json__utf8_len(p) : 0;
            if (n == 0)
                break;
            p += n;
        }
        buf_append(b, run, (size_t)(p - run));
        if (*p == '\0')
            break;
        if (*p == '"' || *p == '\\')
            buf_printf(b, "\\%c", *p);
        else
            buf_printf(b, "\\u%04x", *p);
        p++;
    }
    buf_puts(b, "\"");
}

/* ---- Validation ------------------------------------------------------------ */

struct json__scan {
    const char *p;
    int depth;
};

static bool json__value(struct json__scan *s);

static void json__ws(struct json__scan *s)
{
    while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')
        s->p++;
}

static bool json__hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool json__string(struct json__scan *s)
{
    if (*s->p != '"')
        return false;
    s->p++;
    for (;;) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            return true;
        }
        if (c < 0x20) /* also the terminating NUL */
            return false;
        if (c == '\\') {
            s->p++;
            char e = *s->p;
            if (e == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!json__hex(s->p[i]))
                        return false;
                s->p += 5;
                continue;
            }
            if (e == '\0' || strchr("\"\\/bfnrt", e) == NULL)
                return false;
        }
        s->p++;
    }
}

static bool json__digits(struct json__scan *s)
{
    if (!(*s->p >= '0' && *s->p <= '9'))
        return false;
    while (*s->p >= '0' && *s->p <= '9')
        s->p++;
    return true;
}

static bool json__number(struct json__scan *s)
{
    if (*s->p == '-')
        s->p++;
    if (*s->p == '0')
        s->p++;
    else if (!json__digits(s))
        return false;
    if (*s->p == '.') {
        s->p++;
        if (!json__digits(s))
            return false;
    }
    if (*s->p == 'e' || *s->p == 'E') {
        s->p++;
        if (*s->p == '+' || *s->p == '-')
            s->p++;
        if (!json__digits(s))
            return false;
    }
    return true;
}

static bool json__word(struct json__scan *s, const char *w)
{
    size_t n = strlen(w);
    if (strncmp(s->p, w, n) != 0)
        return false;
    s->p += n;
    return true;
}

/* An object or array; s->p is on its opening bracket. */
static bool json__container(struct json__scan *s, char close, bool object)
{
    if (++s->depth > JSON_MAX_DEPTH)
        return false;
    s->p++;
    json__ws(s);
    if (*s->p == close) {
        s->p++;
        s->depth--;
        return true;
    }
    for (;;) {
        json__ws(s);
        if (object) {
            if (!json__string(s))
                return false;
            json__ws(s);
            if (*s->p++ != ':')
                return false;
        }
        if (!json__value(s))
            return false;
        json__ws(s);
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p != close)
            return false;
        s->p++;
        s->depth--;
        return true;
    }
}

static bool json__value(struct json__scan *s)
{
    json__ws(s);
    switch (*s->p) {
    case '{':
        return json__container(s, '}', true);
    case '[':
        return json__container(s, ']', false);
    case '"':
        return json__string(s);
    case 't':
        return json__word(s, "true");
    case 'f':
        return json__word(s, "false");
    case 'n':
        return json__word(s, "null");
    default:
        return json__number(s);
    }
}

bool json_is_object(const char *text)
{
    if (text == NULL)
        return false;
    struct json__scan s = {text, 0};
    json__ws(&s);
    if (*s.p != '{' || !json__value(&s))
        return false;
    json__ws(&s);
    return *s.p == '\0';
}
