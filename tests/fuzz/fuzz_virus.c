/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz the virus plugin's pure parts: clamd's reply (vir_clamd), the
 * signature-name cleaner (vir_result), reject_text templates (vir_cfg,
 * vir_policy) and clamd addresses.
 *
 * Invariants: a parsed reply has a known kind, a NUL-terminated name of
 * only [A-Za-z0-9._-:/+] (the name goes into replies, headers and logs),
 * a name for a virus, and does not change with a trailing newline or NUL.
 * The cleaner writes at most outsz - 1 safe bytes and returns that count.
 * A template the checker accepts renders to printable ASCII, exactly the
 * reference expansion ("%s" -> name, "%%" -> '%') cut to the buffer. A
 * parsed clamd address has a NUL-terminated text and a socket length.
 *
 * Input: byte 0 = mode (0 reply, 1 TEMPLATE NUL NAME, 2 address, 3 name
 * with byte 1 = buffer size), then the text.
 */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>

#include "vir_cfg.h"
#include "vir_clamd.h"
#include "vir_policy.h"
#include "vir_result.h"

static bool safe_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           strchr("._-:/+", c) != NULL;
}

static void check_result(const struct vir_result *r)
{
    FUZZ_CHECK(r->kind < VIR_KIND_COUNT);
    FUZZ_CHECK(vir_result_kind_name(r->kind) != NULL);
    FUZZ_CHECK(memchr(r->name, '\0', sizeof r->name) != NULL);
    FUZZ_CHECK(memchr(r->detail, '\0', sizeof r->detail) != NULL);
    if (r->kind == VIR_VIRUS)
        FUZZ_CHECK(r->name[0] != '\0');
    if (r->kind == VIR_VIRUS || r->kind == VIR_LIMIT)
        for (const char *p = r->name; *p; p++)
            FUZZ_CHECK(safe_char(*p));
}

static void fuzz_reply(const char *text, size_t len)
{
    struct vir_result a, b;
    char *nl = malloc(len + 1);

    FUZZ_CHECK(nl != NULL);
    memset(&a, 0x5a, sizeof a);
    vir_clamd_parse_reply(text, len, &a);
    check_result(&a);
    if (len == 0 || (text[len - 1] != '\n' && text[len - 1] != '\0')) {
        memcpy(nl, text, len);
        nl[len] = '\n';
        memset(&b, 0x5a, sizeof b);
        vir_clamd_parse_reply(nl, len + 1, &b);
        FUZZ_CHECK(a.kind == b.kind && strcmp(a.name, b.name) == 0);
    }
    free(nl);
}

static void fuzz_template(const char *text, size_t len)
{
    char *t = strndup(text, len);
    const char *z = memchr(text, '\0', len);
    char name[VIR_NAME_MAX], out[600], ref[1200];
    const char *why = NULL;

    FUZZ_CHECK(t != NULL);
    vir_result_clean_name(name, sizeof name, z ? z + 1 : "", z ? len - (size_t)(z + 1 - text) : 0);
    if (vir_cfg_check_template(t, &why) != 0) {
        FUZZ_CHECK(why != NULL);
        free(t);
        return;
    }
    size_t outsz = sizeof out - (len % 64);
    memset(out, 'Z', sizeof out);
    vir_policy_render(t, name, out, outsz);
    size_t ol = strnlen(out, outsz);
    FUZZ_CHECK(ol < outsz);
    for (size_t i = 0; i < ol; i++)
        FUZZ_CHECK(out[i] >= 0x20 && out[i] < 0x7f);

    size_t n = 0;
    for (const char *p = t; *p && n < sizeof ref - 1; p++) {
        if (p[0] == '%' && p[1] == 's') {
            for (const char *q = name; *q && n < sizeof ref - 1; q++)
                ref[n++] = *q;
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            ref[n++] = '%';
            p++;
        } else {
            ref[n++] = *p;
        }
    }
    ref[n] = '\0';
    if (n > outsz - 1)
        n = outsz - 1;
    FUZZ_CHECK(ol == n && memcmp(out, ref, n) == 0);
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    switch (data[0] % 4) {
    case 0:
        fuzz_reply(text, len);
        break;
    case 1:
        fuzz_template(text, len);
        break;
    case 2: {
        char *s = strndup(text, len);
        struct vir_clamd_addr a;
        const char *why = NULL;

        FUZZ_CHECK(s != NULL);
        if (vir_clamd_parse_addr(s, &a, &why) == 0) {
            FUZZ_CHECK(memchr(a.text, '\0', sizeof a.text) != NULL);
            FUZZ_CHECK(a.salen > 0 && a.salen <= sizeof a.sa);
        } else {
            FUZZ_CHECK(why != NULL);
        }
        free(s);
        break;
    }
    default: {
        char out[300];
        size_t outsz = len ? (size_t)(unsigned char)text[0] % sizeof out + 1 : 1;

        memset(out, 'Z', sizeof out);
        size_t n = vir_result_clean_name(out, outsz, len ? text + 1 : "", len ? len - 1 : 0);
        FUZZ_CHECK(n < outsz && out[n] == '\0');
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(safe_char(out[i]));
        FUZZ_CHECK(outsz == sizeof out || out[outsz] == 'Z');
        break;
    }
    }
    return 0;
}
