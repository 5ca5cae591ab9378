/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz smtp_reply: the sequence of replies (and where an error happens)
 * must not depend on how the bytes are split, and every reply must keep
 * the promises of the header (code range, enhanced code shape, line
 * count, NUL-terminated lines inside out->text).
 */
#include "fuzz.h"

#include <string.h>

#include "reply.h"

/* A digest of the replies: enough to compare two runs exactly. */
struct trace {
    char buf[1 << 16];
    size_t len;
    bool overflow;
};

static void trace_add(struct trace *t, const void *p, size_t n)
{
    if (t->len + n > sizeof(t->buf)) {
        t->overflow = true;
        return;
    }
    memcpy(t->buf + t->len, p, n);
    t->len += n;
}

static void check_reply(const struct smtp_reply *out, struct trace *t)
{
    static const char *const kws[] = {"PIPELINING", "SIZE", "STARTTLS", "8BITMIME", "AUTH"};
    size_t i, e;

    FUZZ_CHECK(out->code >= 200 && out->code <= 599);
    FUZZ_CHECK(out->nlines >= 1 && out->nlines <= REPLY_LINES_MAX);
    e = strlen(out->enh);
    FUZZ_CHECK(e < sizeof(out->enh));
    if (e > 0)
        FUZZ_CHECK(e >= 5 && out->enh[0] == '0' + out->code / 100 && out->enh[1] == '.');
    FUZZ_CHECK(out->text_used <= sizeof(out->text));
    trace_add(t, &out->code, sizeof(out->code));
    trace_add(t, out->enh, e + 1);
    for (i = 0; i < out->nlines; i++) {
        const char *l = out->lines[i];

        FUZZ_CHECK(l >= out->text && l < out->text + sizeof(out->text));
        FUZZ_CHECK(memchr(l, '\0', (size_t)(out->text + sizeof(out->text) - l)) != NULL);
        FUZZ_CHECK(strlen(l) <= REPLY_LINE_MAX);
        trace_add(t, l, strlen(l) + 1);
    }
    for (i = 0; i < sizeof(kws) / sizeof(kws[0]); i++) {
        const char *params = NULL;
        bool has = reply_has_keyword(out, kws[i], &params);

        FUZZ_CHECK(has == (params != NULL));
        trace_add(t, &has, sizeof(has));
    }
}

static void run(const uint8_t *data, size_t size, size_t step, struct trace *t)
{
    static struct smtp_reply out;
    struct reply_reader r;
    size_t base = 0, avail = 0;

    reply_reader_init(&r);
    t->len = 0;
    t->overflow = false;
    while (base + avail < size) {
        size_t add = size - base - avail < step ? size - base - avail : step;

        avail += add;
        for (;;) {
            size_t consumed;
            enum reply_rd rd =
                reply_reader_next(&r, (const char *)data + base, avail, &consumed, &out);

            FUZZ_CHECK(consumed <= avail);
            if (rd == REPLY_ERROR) {
                trace_add(t, "E", 1);
                return;
            }
            base += consumed;
            avail -= consumed;
            if (rd == REPLY_AGAIN)
                break;
            check_reply(&out, t);
        }
    }
    /* Whatever is left is less than a line. */
    FUZZ_CHECK(memchr(data + base, '\n', avail) == NULL);
    trace_add(t, &base, sizeof(base));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct trace a, b;

    run(data, size, size ? size : 1, &a);
    run(data, size, 1, &b);
    FUZZ_CHECK(a.overflow == b.overflow);
    FUZZ_CHECK(a.len == b.len && memcmp(a.buf, b.buf, a.len) == 0);
    if (size > 1) {
        run(data, size, size / 2 + 1, &b);
        FUZZ_CHECK(a.len == b.len && memcmp(a.buf, b.buf, a.len) == 0);
    }
    return 0;
}
