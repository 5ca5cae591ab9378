/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz the rewrite engine's header model and text helpers (rw_hdr) and
 * its Sender Rewriting Scheme (rw_srs): both see what senders write.
 *
 * Header invariants: an unedited header renders as the input's header
 * block byte for byte; after edits (set, add, delete) the rendering parses
 * to the live fields with their raw values, no line of a changed or added
 * field is longer than 998 octets or holds a bare CR or LF, and the edit list names only live
 * values. rw_hdr_map_addrs() that keeps every address gives the raw value
 * back; one that replaces every address gives a value that maps to the
 * same number of addresses, all of them the replacement. rw_hdr_encode()
 * is 7-bit for valid UTF-8, without CR or LF unless the text had them.
 * SRS invariants: only a valid sender is forwarded, into a valid address
 * of our domain with the set's separator: SRS0 for a plain sender, which
 * reverses to the original exactly a day later (also with the secrets in
 * the other order: rotation), and not after max_age days; SRS1 for an
 * SRS0/SRS1 sender, whose reverse is refused or a valid address (the SRS0
 * sender itself when it was one); a reverse result is a valid address.
 *
 * Input: byte 0 = mode (0..1 header + edit script, 2 address field, 3 SRS),
 * then for header mode byte 1 = number k of edit bytes, k edit bytes, the
 * message; for SRS: SECRET NUL DOMAIN NUL ADDRESS (the secret's length
 * modulo 3 picks the separator; a secret under 16 octets is replaced).
 */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include <glib.h>

#include "plughdr.h"
#include "rw_hdr.h"
#include "rw_srs.h"

static const char *const values[] = {
    "v",
    "",
    "  spaced  ",
    "Caf\xc3\xa9 cr\xc3\xa8me",
    "bad\r\nInjected: yes",
    ("a rather long value with many words in it so that it has to be folded at least once "
     "and maybe twice if the name is long enough to push it over the limit of the line"),
};

static void check_lines(const char *p, size_t n)
{
    size_t line = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r') {
            FUZZ_CHECK(i + 1 < n && p[i + 1] == '\n');
            line = 0;
            i++;
        } else {
            FUZZ_CHECK(p[i] != '\n');
            FUZZ_CHECK(++line <= RW_LINE_HARD);
        }
    }
}

static void check_render(const struct rw_hdrs *h)
{
    struct pstr r = PSTR_INIT;
    struct rw_hdrs h2 = RW_HDRS_INIT(plughdr_fold);
    size_t off = 0, live = 0;
    struct rw_edit *ed = NULL;

    rw_hdrs_render(h, &r);
    /* Only what the engine wrote is held to 998: an unchanged field keeps
     * its lines as they came, and a server with a raised max_line_length
     * lets longer ones in (regress-long-unchanged-line). */
    for (size_t i = 0; i < h->n; i++) {
        if (h->f[i].deleted || !h->f[i].changed)
            continue;
        struct pstr one = PSTR_INIT;
        pstr_puts(&one, h->f[i].name);
        pstr_putc(&one, ':');
        pstr_puts(&one, h->f[i].raw);
        check_lines(one.ptr, one.len);
        pstr_free(&one);
    }
    pstr_append(&r, "\r\n", 2);
    rw_hdrs_parse(&h2, r.ptr, r.len, &off);
    FUZZ_CHECK(off == r.len);
    for (size_t i = 0; i < h->n; i++) {
        if (h->f[i].deleted)
            continue;
        FUZZ_CHECK(live < h2.n);
        FUZZ_CHECK(strcmp(h2.f[live].name, h->f[i].name) == 0);
        FUZZ_CHECK(strcmp(h2.f[live].raw, h->f[i].raw) == 0);
        live++;
    }
    FUZZ_CHECK(live == h2.n);
    size_t ne = rw_hdrs_edits(h, &ed);
    for (size_t i = 0; i < ne; i++) {
        FUZZ_CHECK(ed[i].name != NULL);
        FUZZ_CHECK(ed[i].kind == RW_EDIT_DELETE || ed[i].value != NULL);
    }
    /* nothing changed means no edits; the converse does not hold (the
     * fuzzer found an "edited" model with no edit, regress-edited-no-edits) */
    if (!rw_hdrs_edited(h))
        FUZZ_CHECK(ne == 0);
    free(ed);
    rw_hdrs_free(&h2);
    pstr_free(&r);
}

static void fuzz_header(const uint8_t *data, size_t size)
{
    struct rw_hdrs h = RW_HDRS_INIT(plughdr_fold);
    struct pstr r = PSTR_INIT;
    size_t off = 0;

    if (size < 1)
        return;
    size_t k = data[0] % 16;
    if (k > size - 1)
        k = size - 1;
    const uint8_t *ops = data + 1;
    const char *msg = (const char *)data + 1 + k;
    size_t len = size - 1 - k;

    /* only canonical messages reach the engine */
    for (size_t i = 0; i < len; i++)
        if ((msg[i] == '\r' && (i + 1 == len || msg[i + 1] != '\n')) ||
            (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r')) || msg[i] == '\0')
            return;
    rw_hdrs_parse(&h, msg, len, &off);
    FUZZ_CHECK(off <= len);
    rw_hdrs_render(&h, &r);
    if (off >= 2 && off <= len && memcmp(msg + off - 2, "\r\n", 2) == 0 && off - 2 >= r.len &&
        h.n > 0 && !rw_hdrs_edited(&h)) {
        FUZZ_CHECK(r.len <= off && memcmp(r.ptr, msg, r.len) == 0);
    }
    pstr_free(&r);

    for (size_t i = 0; i < k; i++) {
        size_t idx = ops[i] >> 2;
        const char *v = values[idx % (sizeof values / sizeof values[0])];
        int rc;

        switch (ops[i] & 3) {
        case 0:
            if (h.n > 0 && !h.f[idx % h.n].deleted) {
                rc = rw_hdrs_set(&h, idx % h.n, v);
                FUZZ_CHECK(rc >= -1 && rc <= 1);
            }
            break;
        case 1:
            rc = rw_hdrs_add(&h, idx & 1 ? "X-Fuzz" : "Subject", v);
            FUZZ_CHECK(rc == 0 || rc == -1);
            break;
        case 2:
            if (h.n > 0)
                rw_hdrs_delete(&h, idx % h.n);
            break;
        default: {
            long at = rw_hdrs_find(&h, idx & 1 ? "subject" : "X-FUZZ", idx % 3);
            FUZZ_CHECK(at >= -1 && at < (long)h.n);
            if (at >= 0) {
                char *u = rw_hdr_unfold(h.f[at].raw, strlen(h.f[at].raw));
                char *d = rw_hdr_decode(h.f[at].raw, strlen(h.f[at].raw));
                FUZZ_CHECK(u != NULL && d != NULL);
                FUZZ_CHECK(strchr(u, '\n') == NULL);
                free(u);
                free(d);
            }
            break;
        }
        }
        check_render(&h);
    }
    rw_hdrs_free(&h);
}

static int keep(void *ud, const char *addr, char **out)
{
    (void)addr;
    (void)out;
    ++*(int *)ud;
    return 0;
}

static int replace(void *ud, const char *addr, char **out)
{
    (void)addr;
    ++*(int *)ud;
    *out = strdup("new@example.net");
    return *out ? 1 : -1;
}

static int expect(void *ud, const char *addr, char **out)
{
    (void)out;
    FUZZ_CHECK(strcmp(addr, "new@example.net") == 0);
    ++*(int *)ud;
    return 0;
}

static void fuzz_addrs(const char *raw)
{
    struct pstr out = PSTR_INIT, out2 = PSTR_INIT;
    int seen = 0, replaced = 0, again = 0;

    int n = rw_hdr_map_addrs(raw, keep, &seen, &out);
    FUZZ_CHECK(n == 0);
    FUZZ_CHECK(strcmp(pstr_cstr(&out), raw) == 0);
    pstr_clear(&out);
    n = rw_hdr_map_addrs(raw, replace, &replaced, &out);
    FUZZ_CHECK(n == replaced && replaced == seen);
    n = rw_hdr_map_addrs(pstr_cstr(&out), expect, &again, &out2);
    FUZZ_CHECK(n == 0 && again == seen);

    char *enc = rw_hdr_encode(raw);
    FUZZ_CHECK(enc != NULL);
    /* Only text that is valid UTF-8 is promised a 7-bit encoding: GMime
     * passes invalid 8-bit bytes through (left open, see README). */
    bool crlf = strpbrk(raw, "\r\n") != NULL;
    bool utf8 = g_utf8_validate(raw, -1, NULL);
    for (const char *p = enc; *p; p++)
        FUZZ_CHECK((!utf8 || (unsigned char)*p < 0x80) && (crlf || (*p != '\r' && *p != '\n')));
    free(enc);
    pstr_free(&out);
    pstr_free(&out2);
}

/* Whether the local part starts like an SRS0/SRS1 address ("SRS0=",
 * any case, any separator): those are shortened into SRS1, not wrapped. */
static int srs_tagged(const char *addr)
{
    return strncasecmp(addr, "SRS", 3) == 0 && (addr[3] == '0' || addr[3] == '1') && addr[4] &&
           strchr("=+-", addr[4]) != NULL;
}

static void fuzz_srs(const char *text, size_t len)
{
    /* every field NUL-terminated, the last one too */
    char *copy = calloc(1, len + 1);
    FUZZ_CHECK(copy != NULL);
    text = memcpy(copy, text, len);
    const char *secret = text;
    size_t slen = strnlen(text, len);
    const char *domain = slen < len ? text + slen + 1 : "";
    size_t dlen = slen < len ? strnlen(domain, len - slen - 1) : 0;
    const char *addr = slen + 1 + dlen < len ? domain + dlen + 1 : "";
    const time_t now = 1764806400; /* 2025-12-04 */
    static const char other[] = "rotation-secret-0123456789";
    const char *why = NULL;
    char *fwd = NULL, *back = NULL;

    /* k signs with the input's secret (a fixed one when it is no valid
     * secret), k2 with another and still verifies the first: rotation. */
    char sep = "=+-"[slen % 3];
    struct rw_srs *k = rw_srs_new(sep, 21), *k2 = rw_srs_new('=', 21);
    FUZZ_CHECK(k != NULL && k2 != NULL);
    if (rw_srs_add_secret(k, secret, slen, &why) != 0) {
        secret = "fallback-secret-0123456789";
        slen = strlen(secret);
        FUZZ_CHECK(rw_srs_add_secret(k, secret, slen, &why) == 0);
    }
    FUZZ_CHECK(rw_srs_add_secret(k, other, strlen(other), &why) == 0);
    FUZZ_CHECK(rw_srs_add_secret(k2, other, strlen(other), &why) == 0);
    FUZZ_CHECK(rw_srs_add_secret(k2, secret, slen, &why) == 0);

    int rc = rw_srs_reverse(k, domain, addr, now, &back);
    FUZZ_CHECK(rc >= -1 && rc <= 1);
    FUZZ_CHECK((rc == 1) == (back != NULL));
    if (rc == 1) {
        FUZZ_CHECK(rw_addr_valid(back));
        free(back);
        back = NULL;
    }

    rc = rw_srs_forward(k, domain, addr, now, &fwd);
    FUZZ_CHECK(rc >= -1 && rc <= 1);
    if (rc != 1) {
        FUZZ_CHECK(fwd == NULL);
        goto out;
    }
    FUZZ_CHECK(fwd != NULL);
    /* Only valid senders are rewritten, always into a valid address of
     * our domain (regressions: corpus/rw_hdr/regress-srs-domain-equals,
     * srs-forward-*, srs-roundtrip, srs-domain-with-at). */
    FUZZ_CHECK(rw_addr_valid(addr));
    FUZZ_CHECK(rw_addr_valid(fwd));
    const char *at = strrchr(fwd, '@');
    FUZZ_CHECK(at != NULL && strcasecmp(at + 1, domain) == 0);
    FUZZ_CHECK(fwd[4] == sep);
    if (!srs_tagged(addr)) {
        /* SRS0: back to the original exactly a day later, with either
         * set of secrets, and not after max_age days */
        FUZZ_CHECK(strncmp(fwd, "SRS0", 4) == 0);
        FUZZ_CHECK(rw_srs_reverse(k, domain, fwd, now + 86400, &back) == 1);
        FUZZ_CHECK(strcmp(back, addr) == 0);
        free(back);
        back = NULL;
        FUZZ_CHECK(rw_srs_reverse(k2, domain, fwd, now + 86400, &back) == 1);
        FUZZ_CHECK(strcmp(back, addr) == 0);
        free(back);
        back = NULL;
        FUZZ_CHECK(rw_srs_reverse(k, domain, fwd, now + 30 * 86400, &back) == -1);
    } else {
        /* SRS1, pointing at the first forwarder: its reverse is an SRS0
         * address there (or, when that is us, refused or reversed on) */
        FUZZ_CHECK(strncmp(fwd, "SRS1", 4) == 0);
        rc = rw_srs_reverse(k2, domain, fwd, now + 30 * 86400, &back);
        FUZZ_CHECK(rc == 1 || rc == -1);
        FUZZ_CHECK((rc == 1) == (back != NULL));
        if (back)
            FUZZ_CHECK(rw_addr_valid(back));
        if (back && strncmp(back, "SRS0", 4) == 0 && addr[3] == '0') {
            /* an SRS0 sender comes back as it was (tag in upper case) */
            FUZZ_CHECK(strcmp(back + 4, addr + 4) == 0);
        }
    }
    free(back);
out:
    free(fwd);
    rw_srs_free(k);
    rw_srs_free(k2);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    rw_hdr_global_init();
    switch (data[0] % 4) {
    case 0:
    case 1:
        fuzz_header(data + 1, size - 1);
        break;
    case 2: {
        char *raw = strndup(text, len);
        FUZZ_CHECK(raw != NULL);
        fuzz_addrs(raw);
        free(raw);
        break;
    }
    default:
        fuzz_srs(text, len);
        break;
    }
    return 0;
}
