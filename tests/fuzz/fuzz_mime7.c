/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz mime7 (7-bit downgrade through GMime). Invariants besides "no
 * crash": mime7_is_8bit() agrees with a plain scan; a 7-bit message comes
 * back byte for byte; a converted message is 7-bit, NUL-free and, when the
 * input was canonical (CRLF only), canonical too; converting it again
 * changes nothing; on refusal or error `out` is left as it was and the
 * reason is one NUL-terminated line that fits its buffer.
 *
 * Input: byte 0 bit 0 = canonicalise the rest first (bare LF -> CRLF,
 * bare CR dropped: what the DATA reader hands over), bit 1 = tiny `why`
 * buffer; then the message.
 */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>

#include "buf.h"
#include "mime7.h"

static bool canonical(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n'))
            return false;
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            return false;
    }
    return true;
}

static void canonicalise(const uint8_t *p, size_t n, buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r')
            continue;
        if (p[i] == '\n')
            buf_append(out, "\r", 1);
        buf_append(out, &p[i], 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char prefix[] = "kept";
    buf_t in = BUF_INIT, out = BUF_INIT;
    char why[200];
    size_t whylen;
    bool eight = false;
    int rc;

    if (size == 0)
        return 0;
    whylen = (data[0] & 2) ? 8 : sizeof why;
    if (data[0] & 1)
        canonicalise(data + 1, size - 1, &in);
    else
        buf_append(&in, data + 1, size - 1);
    const char *msg = in.ptr ? in.ptr : "";

    for (size_t i = 0; i < in.len; i++)
        if ((unsigned char)msg[i] >= 0x80)
            eight = true;
    FUZZ_CHECK(mime7_is_8bit(msg, in.len) == eight);

    buf_append(&out, prefix, sizeof prefix - 1);
    memset(why, 'Z', sizeof why);
    rc = mime7_downgrade(msg, in.len, &out, why, whylen);
    FUZZ_CHECK(rc == 0 || rc == MIME7_UNCONVERTIBLE || rc < 0);
    FUZZ_CHECK(out.len >= sizeof prefix - 1 && memcmp(out.ptr, prefix, sizeof prefix - 1) == 0);
    if (rc != 0) {
        size_t wl = strnlen(why, whylen);
        FUZZ_CHECK(out.len == sizeof prefix - 1);
        FUZZ_CHECK(wl < whylen);
        FUZZ_CHECK(memchr(why, '\n', wl) == NULL && memchr(why, '\r', wl) == NULL);
        FUZZ_CHECK(whylen == sizeof why || why[whylen] == 'Z');
    } else {
        const char *o = out.ptr + sizeof prefix - 1;
        size_t olen = out.len - (sizeof prefix - 1);

        if (!eight) {
            FUZZ_CHECK(olen == in.len && memcmp(o, msg, olen) == 0);
        } else {
            buf_t again = BUF_INIT;

            FUZZ_CHECK(!mime7_is_8bit(o, olen));
            FUZZ_CHECK(memchr(o, '\0', olen) == NULL);
            if (canonical(msg, in.len))
                FUZZ_CHECK(canonical(o, olen));
            FUZZ_CHECK(mime7_downgrade(o, olen, &again, why, whylen) == 0);
            FUZZ_CHECK(again.len == olen && memcmp(again.ptr, o, olen) == 0);
            buf_free(&again);
        }
    }
    buf_free(&in);
    buf_free(&out);
    return 0;
}
