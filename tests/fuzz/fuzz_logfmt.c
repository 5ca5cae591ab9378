/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz logfmt (log_format = json, journald fields): the input is the text
 * of a log line, its first byte picks the JSON buffer size. Checked
 * besides memory safety:
 *  - logfmt_json gives one line of valid UTF-8 that json_is_object accepts,
 *    within its buffer, ending in "}\n", cut only with "truncated":true;
 *  - every field's key is a letter and [A-Za-z0-9_.-], inside the text,
 *    at most LOGFMT_KEY_MAX bytes, no two alike; its value lies inside the
 *    text; logfmt_value gives valid UTF-8 within its buffer; the journald
 *    name is SLUICE_ and [A-Z0-9_], at most 64 bytes;
 *  - a value written by log_quote comes back: "k=" + log_quote(input as a
 *    C string) has one field, whose JSON is exactly json_escape(input).
 */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "log.h"
#include "logfmt.h"

static bool utf8_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 3;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 4;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else {
            return false;
        }
        if (i + k > n || p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t j = 2; j < k; j++)
            if (p[i + j] < 0x80 || p[i + j] > 0xbf)
                return false;
        i += k;
    }
    return true;
}

static char out[20000];

static size_t check_json(const char *text, size_t len, size_t cap)
{
    struct logfmt_rec r = {"2026-12-06T22:01:29.123Z", "info", "sluice", text, len};
    size_t n = logfmt_json(out, cap, &r);
    FUZZ_CHECK(n >= 3 && n < cap);
    FUZZ_CHECK(out[n] == 0 && strlen(out) == n);
    FUZZ_CHECK(out[n - 2] == '}' && out[n - 1] == '\n');
    FUZZ_CHECK(memchr(out, '\n', n - 1) == NULL);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)out[i] >= 0x20 || out[i] == '\n');
    FUZZ_CHECK(utf8_ok((const unsigned char *)out, n));
    FUZZ_CHECK(json_is_object(out));
    return n;
}

static void check_fields(const char *text, size_t len)
{
    struct logfmt_field f[LOGFMT_FIELDS_MAX];
    size_t nf = logfmt_fields(text, len, f, LOGFMT_FIELDS_MAX);
    FUZZ_CHECK(nf <= LOGFMT_FIELDS_MAX);
    for (size_t i = 0; i < nf; i++) {
        FUZZ_CHECK(f[i].key >= text && f[i].key + f[i].keylen <= text + len);
        FUZZ_CHECK(f[i].val >= text && f[i].val + f[i].vallen <= text + len);
        FUZZ_CHECK(f[i].keylen >= 1 && f[i].keylen <= LOGFMT_KEY_MAX);
        char c0 = f[i].key[0];
        FUZZ_CHECK((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z'));
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(f[j].keylen != f[i].keylen || memcmp(f[j].key, f[i].key, f[i].keylen) != 0);
        char v[512];
        size_t cap = 1 + (size_t)(unsigned char)f[i].key[0] % sizeof v;
        size_t vl = logfmt_value(&f[i], v, cap);
        FUZZ_CHECK(vl < cap && v[vl] == 0);
        FUZZ_CHECK(utf8_ok((const unsigned char *)v, vl));
        char name[80];
        size_t nl = logfmt_journal_name(name, sizeof name, f[i].key, f[i].keylen);
        FUZZ_CHECK(nl > 7 && nl <= 64 && strlen(name) == nl && memcmp(name, "SLUICE_", 7) == 0);
        for (size_t j = 0; j < nl; j++)
            FUZZ_CHECK((name[j] >= 'A' && name[j] <= 'Z') || (name[j] >= '0' && name[j] <= '9') ||
                       name[j] == '_');
    }
}

static void check_roundtrip(const char *s)
{
    size_t sl = strlen(s);
    if (sl > 2000)
        return;
    static char text[2 + 4 * 2000 + 3];
    memcpy(text, "k=", 2);
    log_quote(text + 2, sizeof text - 2, s);
    size_t len = strlen(text);
    struct logfmt_field f[2];
    FUZZ_CHECK(logfmt_fields(text, len, f, 2) == 1);
    FUZZ_CHECK(f[0].quoted);
    check_json(text, len, sizeof out);
    buf_t b = BUF_INIT;
    json_escape(&b, s);
    const char *m = strstr(out, ",\"k\":");
    FUZZ_CHECK(m != NULL);
    m += 5;
    FUZZ_CHECK(strncmp(m, b.ptr, b.len) == 0 && m[b.len] == ',');
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8000)
        return 0;
    size_t cap = LOGFMT_JSON_MIN + (size_t)data[0] * 64;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    check_fields(text, len);
    check_json(text, len, cap);
    check_json(text, len, sizeof out);
    static char cstr[8001];
    memcpy(cstr, text, len);
    cstr[len] = 0;
    check_roundtrip(cstr);
    return 0;
}
