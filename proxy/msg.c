/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * msg: one parse of a message, shared by the plugin chain, plus the edits
 * the plugins make; see msg.h for the contract.
 *
 * Ownership. The original bytes belong to the caller and are never written.
 * Parsed fields point into them (edited == false). A field created or
 * changed by an edit owns its `raw` (one malloc'd "Name: value\r\n"; name
 * and value point into it), freed when the field is changed again, deleted
 * or the msg is freed. The replacement body, the header rendering used
 * when the iovecs run out and the full rendering are msg-owned buffers.
 *
 * Output. The message is emitted as a walk over "pieces" (each field's raw
 * bytes, the separator, the body). Adjacent pieces that are contiguous in
 * memory merge into one iovec, so runs of untouched original fields (and
 * the untouched tail of header + separator + body) cost one iovec each, and
 * an unedited message is exactly one iovec over the original.
 */
#include "msg.h"
#include "xalloc.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* RFC 5322 §2.1.1: lines SHOULD be at most 78 octets and MUST be at most
 * 998, both without the CRLF. */
#define MSG_LINE_SOFT 78
#define MSG_LINE_HARD 998
/* A name longer than this cannot fit "Name: x" in 78 octets. */
#define MSG_NAME_MAX 76

struct msg {
    const char *data; /* the original, caller-owned */
    size_t len;
    struct msg_field *f; /* fields in current order */
    size_t n;
    size_t cap;
    size_t sep_off;  /* offset of the separator line (== body_off if none) */
    size_t body_off; /* offset of the original body */
    bool has_sep;    /* the original had a blank line */
    bool edited;
    bool body_replaced;
    buf_t body; /* replacement body, canonical CRLF */
    buf_t hdr;  /* header rendered in one piece (msg_segments fallback) */
    bool hdr_valid;
    unsigned long generation; /* edits made so far */
    buf_t out; /* whole message rendered (msg_render) */
    bool out_valid;
};

static bool msg__is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 5322 ftext: printable US-ASCII except ':'. */
static bool msg__is_ftext(unsigned char c)
{
    return c >= 33 && c <= 126 && c != ':';
}

static char msg__lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static int msg__grow(struct msg *m, size_t need)
{
    m->f = xgrow(m->f, &m->cap, need, sizeof(*m->f), 16);
    return 0;
}

/*
 * One pass over the header lines. Lines end at LF (a CR before it belongs
 * to the line end); a line is a field ("name *WSP :"), a continuation of
 * the previous field (leading WSP), the blank separator, or anything else,
 * which ends the header and starts the body.
 */
struct msg *msg_parse(const char *data, size_t len)
{
    struct msg *m = xcalloc(1, sizeof(*m));
    m->data = data ? data : ""; /* no arithmetic on NULL */
    m->len = data ? len : 0;
    m->sep_off = m->body_off = len;

    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t line_end = nl ? (size_t)(nl - data) + 1 : len;
        size_t cend = nl ? (size_t)(nl - data) : len;
        if (nl && cend > pos && data[cend - 1] == '\r')
            cend--;

        if (cend == pos && nl) {
            m->has_sep = true;
            m->sep_off = pos;
            m->body_off = line_end;
            break;
        }
        if (msg__is_wsp(data[pos])) {
            if (m->n == 0)
                goto body; /* a continuation of nothing */
            struct msg_field *f = &m->f[m->n - 1];
            f->raw_len = line_end - (size_t)(f->raw - data);
            f->value_len = cend - (size_t)(f->value - data);
            pos = line_end;
            continue;
        }
        size_t i = pos;
        while (i < cend && msg__is_ftext((unsigned char)data[i]))
            i++;
        size_t name_len = i - pos;
        while (i < cend && msg__is_wsp(data[i])) /* obs-optional: WSP before ':' */
            i++;
        if (name_len == 0 || i >= cend || data[i] != ':')
            goto body; /* also catches an mbox "From " line */
        if (msg__grow(m, m->n + 1)) {
            msg_free(m);
            return NULL;
        }
        m->f[m->n++] = (struct msg_field){
            .name = data + pos,
            .name_len = name_len,
            .value = data + i + 1,
            .value_len = cend - (i + 1),
            .raw = data + pos,
            .raw_len = line_end - pos,
            .edited = false,
        };
        pos = line_end;
        continue;
    body:
        m->sep_off = m->body_off = pos;
        break;
    }
    return m;
}

void msg_free(struct msg *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        if (m->f[i].edited)
            free((char *)m->f[i].raw);
    free(m->f);
    buf_free(&m->body);
    buf_free(&m->hdr);
    buf_free(&m->out);
    free(m);
}

size_t msg_field_count(const struct msg *m)
{
    return m->n;
}

const struct msg_field *msg_field_at(const struct msg *m, size_t i)
{
    return i < m->n ? &m->f[i] : NULL;
}

long msg_field_find(const struct msg *m, const char *name, size_t nth)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < m->n; i++) {
        const struct msg_field *f = &m->f[i];
        if (f->name_len != nlen)
            continue;
        size_t k = 0;
        while (k < nlen && msg__lower(f->name[k]) == msg__lower(name[k]))
            k++;
        if (k == nlen && nth-- == 0)
            return (long)i;
    }
    return -1;
}

void msg_unfold(const char *value, size_t len, buf_t *out)
{
    size_t start = out->len;
    size_t i = 0;
    while (i < len && msg__is_wsp(value[i]))
        i++;
    while (i < len) {
        /* Append the run up to the next line end in one go. */
        const char *nl = memchr(value + i, '\n', len - i);
        size_t stop = nl ? (size_t)(nl - value) : len;
        size_t run_end = stop;
        if (nl && stop > i && value[stop - 1] == '\r')
            run_end--;
        if (nl && !(stop + 1 < len && msg__is_wsp(value[stop + 1])))
            run_end = stop + 1; /* not a fold: keep the bytes */
        buf_append(out, value + i, run_end - i);
        i = nl ? stop + 1 : len;
    }
    /* Trim trailing WSP, and leading WSP a fold at the very start exposed. */
    while (out->len > start && msg__is_wsp(out->ptr[out->len - 1]))
        out->len--;
    size_t lead = start;
    while (lead < out->len && msg__is_wsp(out->ptr[lead]))
        lead++;
    if (lead > start) {
        memmove(out->ptr + start, out->ptr + lead, out->len - lead);
        out->len -= lead - start;
    }
    if (out->ptr)
        out->ptr[out->len] = 0;
}

void msg_body(const struct msg *m, const char **data, size_t *len)
{
    if (m->body_replaced) {
        *data = m->body.ptr ? m->body.ptr : "";
        *len = m->body.len;
    } else {
        *data = m->data + m->body_off;
        *len = m->len - m->body_off;
    }
}

/*
 * Without a separator in the original, the body starts at a line that is
 * not a field. That stays true after header edits except for a body that
 * starts with WSP (it would continue the last field) and a replaced body
 * (anything): then a blank line is added so that the body stays the body.
 */
static bool msg__need_sep(const struct msg *m)
{
    const char *b;
    size_t blen;

    if (m->has_sep)
        return false;
    msg_body(m, &b, &blen);
    if (blen == 0)
        return false;
    return m->body_replaced || (m->n > 0 && msg__is_wsp(b[0]));
}

bool msg_has_separator(const struct msg *m)
{
    return m->has_sep || msg__need_sep(m);
}

bool msg_edited(const struct msg *m)
{
    return m->edited;
}

/* ---- edits ------------------------------------------------------------ */

static void msg__touch(struct msg *m)
{
    m->edited = true;
    m->generation++;
    m->hdr_valid = false;
    m->out_valid = false;
}

unsigned long msg_generation(const struct msg *m)
{
    return m->generation;
}

static int msg__check_name(const char *name, size_t len)
{
    if (len == 0 || len > MSG_NAME_MAX)
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        if (!msg__is_ftext((unsigned char)name[i]))
            return -EINVAL;
    return 0;
}

/* An already-folded value: every CR starts a CRLF WSP, no bare LF, no line
 * over 998 octets (the first one counting the "Name: " prefix). Kept as is. */
static int msg__put_folded(buf_t *b, size_t prefix, const char *v, size_t vlen)
{
    size_t line = prefix;
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] == '\r') {
            if (i + 2 >= vlen || v[i + 1] != '\n' || !msg__is_wsp(v[i + 2]))
                return -EINVAL;
            i++;
            line = 0;
            continue;
        }
        if (v[i] == '\n')
            return -EINVAL;
        if (++line > MSG_LINE_HARD)
            return -EINVAL;
    }
    buf_append(b, v, vlen);
    return 0;
}

/*
 * A one-line value: fold greedily before a run of WSP when the line would
 * pass 78 octets. A segment is a WSP run plus the word after it; the fold
 * goes before the run, so continuation lines start with WSP and are never
 * blank. A trailing WSP-only segment is never moved to a line of its own.
 * A line that cannot be brought under 998 octets is refused.
 */
static int msg__put_unfolded(buf_t *b, size_t prefix, const char *v, size_t vlen)
{
    if (prefix + vlen <= MSG_LINE_SOFT) {
        buf_append(b, v, vlen);
        return 0;
    }

    size_t line = prefix;
    size_t i = 0;
    while (i < vlen) {
        size_t s = i;
        while (i < vlen && msg__is_wsp(v[i]))
            i++;
        size_t word = i;
        while (i < vlen && !msg__is_wsp(v[i]))
            i++;
        size_t seg = i - s;
        bool can_fold = s > 0 && word > s && i > word;
        if (can_fold && line + seg > MSG_LINE_SOFT) {
            buf_append(b, "\r\n", 2);
            line = 0;
        }
        line += seg;
        if (line > MSG_LINE_HARD)
            return -EINVAL;
        buf_append(b, v + s, seg);
    }
    return 0;
}

/* Build an edited field "Name:[ ]value\r\n" into msg-owned memory. */
static int msg__make_field(struct msg_field *out, const char *name, size_t name_len,
                           const char *value)
{
    if (!value)
        return -EINVAL;
    size_t vlen = strlen(value);
    bool folded = memchr(value, '\r', vlen) || memchr(value, '\n', vlen);
    bool space = vlen == 0 || !msg__is_wsp(value[0]);
    size_t prefix = name_len + 1 + (space ? 1 : 0);
    buf_t b = BUF_INIT;
    buf_reserve(&b, prefix + vlen + vlen / 32 * 2 + 4);
    buf_append(&b, name, name_len);
    buf_append(&b, space ? ": " : ":", prefix - name_len);
    int rc = folded ? msg__put_folded(&b, prefix, value, vlen)
                    : msg__put_unfolded(&b, prefix, value, vlen);
    buf_append(&b, "\r\n", 2);
    if (rc) {
        buf_free(&b);
        return rc;
    }
    *out = (struct msg_field){
        .name = b.ptr,
        .name_len = name_len,
        .value = b.ptr + name_len + 1,
        .value_len = b.len - name_len - 1 - 2,
        .raw = b.ptr,
        .raw_len = b.len,
        .edited = true,
    };
    return 0;
}

int msg_field_insert(struct msg *m, size_t index, const char *name, const char *value)
{
    struct msg_field f;
    int rc;

    if (!name || index > m->n)
        return -EINVAL;
    rc = msg__check_name(name, strlen(name));
    if (rc)
        return rc;
    rc = msg__grow(m, m->n + 1);
    if (rc)
        return rc;
    rc = msg__make_field(&f, name, strlen(name), value);
    if (rc)
        return rc;
    memmove(&m->f[index + 1], &m->f[index], (m->n - index) * sizeof(*m->f));
    m->f[index] = f;
    m->n++;
    msg__touch(m);
    return 0;
}

int msg_field_add(struct msg *m, const char *name, const char *value)
{
    return msg_field_insert(m, m->n, name, value);
}

int msg_field_change(struct msg *m, size_t index, const char *value)
{
    struct msg_field f;
    int rc;

    if (index >= m->n)
        return -ENOENT;
    struct msg_field *old = &m->f[index];
    rc = msg__make_field(&f, old->name, old->name_len, value);
    if (rc)
        return rc;
    if (old->edited)
        free((char *)old->raw);
    *old = f;
    msg__touch(m);
    return 0;
}

int msg_field_delete(struct msg *m, size_t index)
{
    if (index >= m->n)
        return -ENOENT;
    if (m->f[index].edited)
        free((char *)m->f[index].raw);
    memmove(&m->f[index], &m->f[index + 1], (m->n - index - 1) * sizeof(*m->f));
    m->n--;
    msg__touch(m);
    return 0;
}

int msg_body_replace(struct msg *m, const char *data, size_t len)
{
    buf_t b = BUF_INIT;
    buf_reserve(&b, len + len / 16 + 2);
    size_t i = 0;
    while (i < len) {
        /* Copy up to the next CR or LF, then write one canonical CRLF. */
        size_t j = i;
        while (j < len && data[j] != '\r' && data[j] != '\n')
            j++;
        buf_append(&b, data + i, j - i);
        if (j == len)
            break;
        buf_append(&b, "\r\n", 2);
        i = (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n') ? j + 2 : j + 1;
    }
    if (b.len > 0 && b.ptr[b.len - 1] != '\n')
        buf_append(&b, "\r\n", 2);
    buf_free(&m->body);
    m->body = b;
    m->body_replaced = true;
    msg__touch(m);
    return 0;
}

/* ---- output ----------------------------------------------------------- */

/* Where pieces go: iovecs (merging contiguous ones), a buffer, or nowhere
 * (just counting). */
struct msg_emit {
    struct iovec *iov;
    int max;
    int n;
    bool overflow;
    buf_t *out;
    int err;
    size_t total;
};

static void msg__emit(struct msg_emit *e, const char *p, size_t len)
{
    if (len == 0)
        return;
    e->total += len;
    if (e->out) {
        if (!e->err)
            e->err = buf_append(e->out, p, len);
        return;
    }
    if (!e->iov)
        return;
    if (e->n > 0) {
        struct iovec *prev = &e->iov[e->n - 1];
        if ((const char *)prev->iov_base + prev->iov_len == p) {
            prev->iov_len += len;
            return;
        }
    }
    if (e->n >= e->max) {
        e->overflow = true;
        return;
    }
    e->iov[e->n].iov_base = (void *)(uintptr_t)p;
    e->iov[e->n].iov_len = len;
    e->n++;
}

static void msg__sep(const struct msg *m, const char **p, size_t *len)
{
    if (m->has_sep) {
        *p = m->data + m->sep_off;
        *len = m->body_off - m->sep_off;
    } else if (msg__need_sep(m)) {
        *p = "\r\n";
        *len = 2;
    } else {
        *p = "";
        *len = 0;
    }
}

static void msg__walk_header(const struct msg *m, struct msg_emit *e)
{
    const char *sep;
    size_t sep_len;

    msg__sep(m, &sep, &sep_len);
    for (size_t i = 0; i < m->n; i++) {
        const struct msg_field *f = &m->f[i];
        msg__emit(e, f->raw, f->raw_len);
        /* Only an original last line at EOF lacks its line end; give it
         * one if anything is now written after it. */
        if (f->raw[f->raw_len - 1] != '\n' && (i + 1 < m->n || sep_len > 0))
            msg__emit(e, "\r\n", 2);
    }
}

static void msg__walk_tail(const struct msg *m, struct msg_emit *e)
{
    const char *p;
    size_t len;

    msg__sep(m, &p, &len);
    msg__emit(e, p, len);
    msg_body(m, &p, &len);
    msg__emit(e, p, len);
}

int msg_segments(struct msg *m, struct iovec *iov, int max)
{
    if (max < 3)
        return -1;
    if (!m->edited) {
        iov[0].iov_base = (void *)(uintptr_t)m->data;
        iov[0].iov_len = m->len;
        return 1;
    }
    struct msg_emit e = {.iov = iov, .max = max};
    msg__walk_header(m, &e);
    msg__walk_tail(m, &e);
    if (!e.overflow)
        return e.n;

    /* Too many pieces: the header goes into one buffer. */
    if (!m->hdr_valid) {
        struct msg_emit h = {.out = &m->hdr};
        buf_reset(&m->hdr);
        msg__walk_header(m, &h);
        if (h.err)
            return -1;
        m->hdr_valid = true;
    }
    e = (struct msg_emit){.iov = iov, .max = max};
    msg__emit(&e, m->hdr.ptr, m->hdr.len);
    msg__walk_tail(m, &e);
    return e.n;
}

void msg_render(struct msg *m, const char **data, size_t *len)
{
    if (!m->edited) {
        *data = m->data;
        *len = m->len;
        return;
    }
    if (!m->out_valid) {
        struct msg_emit e = {.out = &m->out};
        buf_reset(&m->out);
        msg__walk_header(m, &e);
        msg__walk_tail(m, &e);
        if (e.err) {
            *data = NULL;
            *len = 0;
            return;
        }
        m->out_valid = true;
    }
    *data = m->out.ptr ? m->out.ptr : "";
    *len = m->out.len;
}

size_t msg_size(const struct msg *m)
{
    if (!m->edited)
        return m->len;
    struct msg_emit e = {0};
    msg__walk_header(m, &e);
    msg__walk_tail(m, &e);
    return e.total;
}
