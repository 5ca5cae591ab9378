/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * reply: upstream reply parsing (RFC 5321 §4.2, enhanced status codes
 * RFC 3463 / RFC 2034).
 *
 * Only complete lines are consumed; a partial line stays with the caller
 * until its LF arrives, so the reader resumes at any byte split. The reply
 * being assembled lives in the caller's struct smtp_reply (line texts are
 * copied into its `text` storage) and the reader keeps the counters; that
 * is why the same `out` must be passed until REPLY_DONE.
 */
#include "reply.h"

#include <string.h>

void reply_reader_init(struct reply_reader *r)
{
    r->code = 0;
    r->nlines = 0;
    r->text_used = 0;
}

static inline bool reply__digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "x.y.z" at s[0..n) per RFC 3463: class 2/4/5, subject and detail of one
 * to three digits, followed by a space or the end. Returns its length. */
static size_t reply__enh(const char *s, size_t n)
{
    size_t i = 1, part, digits;

    if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return 0;
    for (part = 0; part < 2; part++) {
        i++; /* the dot */
        for (digits = 0; i < n && reply__digit(s[i]) && digits < 3; digits++)
            i++;
        if (digits == 0)
            return 0;
        if (part == 0 && (i >= n || s[i] != '.'))
            return 0;
    }
    if (i < n && s[i] != ' ')
        return 0;
    return i;
}

/* Copy a line's text into out->text, truncating when storage runs out
 * (64 lines of 2 KB cannot all fit; a reply that big is only ever noise). */
static void reply__store(struct smtp_reply *out, size_t *used, const char *s, size_t n)
{
    /* Keep one byte (the NUL) for each line that may still follow; the
     * caller allows at most REPLY_LINES_MAX lines, so this never wraps. */
    size_t later = REPLY_LINES_MAX - out->nlines - 1;
    size_t room = sizeof(out->text) - *used - 1 - later;

    if (n > room)
        n = room;
    memcpy(out->text + *used, s, n);
    out->text[*used + n] = '\0';
    out->lines[out->nlines++] = out->text + *used;
    *used += n + 1;
}

enum reply_rd reply_reader_next(struct reply_reader *r, const char *in, size_t len,
                                size_t *consumed, struct smtp_reply *out)
{
    size_t off = 0;

    *consumed = 0;
    if (len == 0)
        return REPLY_AGAIN; /* in may be NULL */
    for (;;) {
        const char *line = in + off, *lf, *text;
        size_t avail = len - off, n, tlen;
        int code;
        bool last;

        lf = avail > 0 ? memchr(line, '\n', avail) : NULL;
        if (lf == NULL) {
            /* Over-long already? Allow for a CR waiting for its LF. */
            if (avail > REPLY_LINE_MAX + 1 ||
                (avail == REPLY_LINE_MAX + 1 && line[avail - 1] != '\r'))
                goto error;
            return REPLY_AGAIN;
        }
        n = (size_t)(lf - line);
        off += n + 1;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n > REPLY_LINE_MAX || n < 3 || memchr(line, '\0', n) != NULL)
            goto error;
        if (line[0] < '2' || line[0] > '5' || !reply__digit(line[1]) || !reply__digit(line[2]))
            goto error;
        code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (n == 3)
            last = true;
        else if (line[3] == ' ')
            last = true;
        else if (line[3] == '-')
            last = false;
        else
            goto error;
        text = n > 3 ? line + 4 : line + 3;
        tlen = n > 3 ? n - 4 : 0;

        if (r->nlines == 0) {
            size_t e = reply__enh(text, tlen);

            out->code = code;
            out->nlines = 0;
            out->enh[0] = '\0';
            r->code = code;
            r->text_used = 0;
            /* RFC 3463: the class must agree with the reply code. */
            if (e > 0 && text[0] == line[0]) {
                memcpy(out->enh, text, e);
                out->enh[e] = '\0';
            }
        } else if (code != r->code) {
            goto error;
        }
        if (r->nlines >= REPLY_LINES_MAX)
            goto error;
        if (out->enh[0] != '\0') {
            size_t e = reply__enh(text, tlen);

            if (e > 0) {
                text += e;
                tlen -= e;
                if (tlen > 0) { /* the space after the code */
                    text++;
                    tlen--;
                }
            }
        }
        out->nlines = r->nlines;
        reply__store(out, &r->text_used, text, tlen);
        r->nlines = out->nlines;
        out->text_used = r->text_used;
        *consumed = off;

        if (last) {
            reply_reader_init(r);
            return REPLY_DONE;
        }
    }

error:
    *consumed = off;
    reply_reader_init(r);
    return REPLY_ERROR;
}

bool reply_has_keyword(const struct smtp_reply *r, const char *keyword, const char **params)
{
    size_t klen = strlen(keyword), i, j;

    for (i = 1; i < r->nlines; i++) {
        const char *t = r->lines[i];

        for (j = 0; j < klen; j++) {
            char a = t[j], b = keyword[j];

            if (a >= 'a' && a <= 'z')
                a = (char)(a - 'a' + 'A');
            if (b >= 'a' && b <= 'z')
                b = (char)(b - 'a' + 'A');
            if (a == '\0' || a != b)
                break;
        }
        if (j < klen || (t[klen] != '\0' && t[klen] != ' '))
            continue;
        if (params != NULL)
            *params = t[klen] == ' ' ? t + klen + 1 : t + klen;
        return true;
    }
    if (params != NULL)
        *params = NULL;
    return false;
}
