/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz msg: the parse must cover the input exactly (fields + separator +
 * body), an unedited message must come out as the original, and after any
 * sequence of edits the iovecs, the rendering and msg_size must agree and
 * parsing the rendering must give back the same fields and body.
 *
 * Input: byte 0 = number of edit bytes k (mod 16), then k edit bytes, then
 * the message. An edit byte is (index << 3 | kind).
 * Needs proxy/msg.c and proxy/buf.c.
 */
#include "fuzz.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "msg.h"

static const char *const values[] = {
    "v",
    "",
    "\tleading tab",
    "already\r\n folded",
    "bad\nvalue",
    ("a rather long value with many words in it so that it has to be folded at least once "
     "and maybe twice if the name is long enough to push it over"),
    "x\xc3\xa9y",
};

static const char *const names[] = {"X-Fuzz", "Subject", "bad name", "received"};

static void dump(const struct msg *m, buf_t *out)
{
    const char *b;
    size_t blen;

    for (size_t i = 0; i < msg_field_count(m); i++) {
        const struct msg_field *f = msg_field_at(m, i);
        buf_append(out, f->name, f->name_len);
        buf_append(out, "\0", 1);
        buf_append(out, f->value, f->value_len);
        buf_append(out, "\0", 1);
    }
    msg_body(m, &b, &blen);
    buf_append(out, b, blen);
    buf_append(out, msg_has_separator(m) ? "S" : "N", 1);
}

static void check_parse(const struct msg *m, const char *data, size_t len)
{
    const char *b;
    size_t blen, pos = 0;

    for (size_t i = 0; i < msg_field_count(m); i++) {
        const struct msg_field *f = msg_field_at(m, i);

        FUZZ_CHECK(!f->edited);
        FUZZ_CHECK(f->raw == data + pos && f->name == f->raw);
        FUZZ_CHECK(f->name_len >= 1);
        for (size_t k = 0; k < f->name_len; k++)
            FUZZ_CHECK((unsigned char)f->name[k] > 32 && (unsigned char)f->name[k] < 127 &&
                       f->name[k] != ':');
        FUZZ_CHECK(f->value > f->name && f->value + f->value_len <= f->raw + f->raw_len);
        pos += f->raw_len;
    }
    msg_body(m, &b, &blen);
    FUZZ_CHECK(b + blen == data + len || len == 0);
    size_t sep = len - pos - blen;
    FUZZ_CHECK(pos + blen <= len);
    FUZZ_CHECK(msg_has_separator(m) ? (sep == 1 || sep == 2) : sep == 0);
}

static void check_output(struct msg *m)
{
    static const int maxes[] = {3, 16};
    const char *r;
    size_t rlen;

    msg_render(m, &r, &rlen);
    FUZZ_CHECK(r != NULL);
    FUZZ_CHECK(msg_size(m) == rlen);
    for (size_t k = 0; k < sizeof(maxes) / sizeof(maxes[0]); k++) {
        struct iovec iov[16];
        size_t off = 0;
        int n = msg_segments(m, iov, maxes[k]);

        FUZZ_CHECK(n >= 0 && n <= maxes[k]);
        for (int i = 0; i < n; i++) {
            FUZZ_CHECK(off + iov[i].iov_len <= rlen);
            FUZZ_CHECK(memcmp(r + off, iov[i].iov_base, iov[i].iov_len) == 0);
            off += iov[i].iov_len;
        }
        FUZZ_CHECK(off == rlen);
    }

    /* parse(render(m)) has the same fields and body */
    struct msg *m2 = msg_parse(r, rlen);
    buf_t a = BUF_INIT, b = BUF_INIT;
    FUZZ_CHECK(m2 != NULL);
    dump(m, &a);
    dump(m2, &b);
    FUZZ_CHECK(a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0);
    buf_free(&a);
    buf_free(&b);
    msg_free(m2);

    /* edited fields: no line over 998 octets */
    for (size_t i = 0; i < msg_field_count(m); i++) {
        const struct msg_field *f = msg_field_at(m, i);
        size_t line = 0;

        if (!f->edited)
            continue;
        for (size_t k = 0; k < f->raw_len; k++) {
            if (f->raw[k] == '\n')
                line = 0;
            else if (f->raw[k] != '\r')
                FUZZ_CHECK(++line <= 998);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t k = data[0] % 16;
    if (k > size - 1)
        k = size - 1;
    const uint8_t *ops = data + 1;
    const char *text = (const char *)data + 1 + k;
    size_t len = size - 1 - k;

    struct msg *m = msg_parse(text, len);
    FUZZ_CHECK(m != NULL);
    check_parse(m, text, len);
    check_output(m);
    FUZZ_CHECK(!msg_edited(m));

    for (size_t i = 0; i < k; i++) {
        size_t n = msg_field_count(m);
        size_t idx = (size_t)(ops[i] >> 3);
        const char *v = values[idx % (sizeof(values) / sizeof(values[0]))];
        const char *name = names[idx % (sizeof(names) / sizeof(names[0]))];
        int rc = 0;

        switch (ops[i] & 7) {
        case 0:
            rc = msg_field_add(m, name, v);
            FUZZ_CHECK(rc != 0 || msg_field_count(m) == n + 1);
            break;
        case 1:
            rc = msg_field_insert(m, idx % (n + 1), name, v);
            break;
        case 2:
            rc = msg_field_change(m, n ? idx % n : 0, v);
            FUZZ_CHECK(n > 0 || rc == -ENOENT);
            break;
        case 3:
            rc = msg_field_delete(m, n ? idx % n : 0);
            FUZZ_CHECK(rc != 0 || msg_field_count(m) == n - 1);
            break;
        case 4:
            rc = msg_body_replace(m, text + idx % (len + 1), len - idx % (len + 1));
            FUZZ_CHECK(rc == 0);
            break;
        default: {
            long at = msg_field_find(m, name, idx % 3);
            FUZZ_CHECK(at >= -1 && at < (long)n);
            if (at >= 0) {
                buf_t u = BUF_INIT;
                const struct msg_field *f = msg_field_at(m, (size_t)at);
                msg_unfold(f->value, f->value_len, &u);
                FUZZ_CHECK(u.len <= f->value_len);
                buf_free(&u);
            }
            break;
        }
        }
        FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOENT);
        check_output(m);
    }
    msg_free(m);
    return 0;
}
