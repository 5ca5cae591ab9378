/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz esmtp: EHLO capabilities from any reply the reply reader accepts,
 * and the XCLIENT / XFORWARD / EHLO-name renderings of hostile client
 * data. Invariants: the capability bits are exactly the keywords
 * reply_has_keyword() finds, SIZE's limit is 0 without SIZE; xtext output
 * is bytes 33..126 only, every '+' starts "+HH" and decoding gives the
 * input back; the command lines hold no CR, LF or NUL and start with their
 * verb; the EHLO name fits its buffer, is bytes 33..126 and is the HELO
 * itself whenever that is usable.
 *
 * Input: byte 0 = flags (bit 0 ESMTP, bit 1 IPv6, bits 2..7 EHLO-name
 * buffer size), bytes 1..16 = address, 17..18 = port, then NAME NUL HELO
 * NUL and the rest is an upstream's EHLO reply.
 */
#include "fuzz.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "esmtp.h"
#include "reply.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void check_xtext(const char *s)
{
    buf_t x = BUF_INIT, back = BUF_INIT;

    esmtp_xtext(&x, s);
    for (size_t i = 0; i < x.len; i++) {
        unsigned char c = (unsigned char)x.ptr[i];

        FUZZ_CHECK(c >= 33 && c <= 126 && c != '=');
        if (c == '+') {
            FUZZ_CHECK(i + 2 < x.len);
            int h = hexval(x.ptr[i + 1]), l = hexval(x.ptr[i + 2]);
            FUZZ_CHECK(h >= 0 && l >= 0);
            char ch = (char)(h * 16 + l);
            buf_append(&back, &ch, 1);
            i += 2;
        } else {
            buf_append(&back, &x.ptr[i], 1);
        }
    }
    FUZZ_CHECK(back.len == strlen(s) && (back.len == 0 || memcmp(back.ptr, s, back.len) == 0));
    buf_free(&x);
    buf_free(&back);
}

static void check_line(const buf_t *b, const char *verb)
{
    FUZZ_CHECK(b->len >= strlen(verb) && memcmp(b->ptr, verb, strlen(verb)) == 0);
    for (size_t i = 0; i < b->len; i++)
        FUZZ_CHECK(b->ptr[i] != '\r' && b->ptr[i] != '\n' && b->ptr[i] != '\0');
}

/* Every attribute value within what Postfix takes (ESMTP_VALUE_MAX). */
static void check_values(const buf_t *b)
{
    for (const char *t = b->len ? b->ptr : ""; (t = strchr(t, '=')) != NULL;) {
        size_t v = strcspn(t + 1, " ");
        FUZZ_CHECK(v <= ESMTP_VALUE_MAX);
        t += 1 + v;
    }
}

static void check_caps(const char *in, size_t len)
{
    static const char *const kws[] = {
        "PIPELINING",          "8BITMIME", "SIZE",    "DSN",      "SMTPUTF8",
        "ENHANCEDSTATUSCODES", "STARTTLS", "XCLIENT", "XFORWARD", "CHUNKING"};
    static struct smtp_reply out;
    struct reply_reader rd;
    size_t off = 0;

    reply_reader_init(&rd);
    while (off < len) {
        size_t used = 0;
        enum reply_rd r = reply_reader_next(&rd, in + off, len - off, &used, &out);

        FUZZ_CHECK(used <= len - off);
        off += used;
        if (r != REPLY_DONE)
            break;
        unsigned long long size = 1;
        unsigned caps = esmtp_caps(&out, &size);
        for (size_t i = 0; i < sizeof kws / sizeof kws[0]; i++) {
            const char *params = NULL;
            bool has = reply_has_keyword(&out, kws[i], &params);

            FUZZ_CHECK(has == ((caps & (1u << i)) != 0));
        }
        FUZZ_CHECK(caps < (1u << (sizeof kws / sizeof kws[0])));
        if (!(caps & ESMTP_SIZE))
            FUZZ_CHECK(size == 0);
        if (used == 0)
            break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char addr[INET6_ADDRSTRLEN], ehlo[64];
    const char *name, *helo, *end, *p;
    struct esmtp_client w;
    buf_t fields = BUF_INIT, a = BUF_INIT, b = BUF_INIT, c = BUF_INIT;

    if (size < 19)
        return 0;
    bool v6 = data[0] & 2;
    FUZZ_CHECK(inet_ntop(v6 ? AF_INET6 : AF_INET, data + 1, addr, sizeof addr) != NULL);

    /* NAME and HELO, NUL-terminated copies (the rest is the reply). */
    p = (const char *)data + 19;
    end = (const char *)data + size;
    const char *z1 = memchr(p, '\0', (size_t)(end - p));
    const char *z2 = z1 ? memchr(z1 + 1, '\0', (size_t)(end - z1 - 1)) : NULL;
    buf_append(&fields, p, (size_t)(end - p));
    buf_append(&fields, "\0\0", 2);
    name = fields.ptr;
    helo = z1 ? fields.ptr + (z1 - p) + 1 : "";
    if (z2)
        check_caps(z2 + 1, (size_t)(end - z2 - 1));

    check_xtext(name);
    check_xtext(helo);

    memset(&w, 0, sizeof w);
    w.addr = addr;
    w.port = data[17] << 8 | data[18];
    w.name = name;
    w.helo = helo;
    w.esmtp = data[0] & 1;
    esmtp_xclient_line(&a, &w);
    check_line(&a, "XCLIENT ADDR=");
    esmtp_xforward_lines(&b, &c, &w);
    check_line(&b, "XFORWARD ADDR=");
    check_values(&b);
    check_values(&c);
    if (c.len) {
        /* Two commands only when one would not fit. */
        check_line(&c, "XFORWARD HELO=");
        FUZZ_CHECK(b.len + c.len - strlen("XFORWARD") > ESMTP_LINE_MAX);
    } else {
        FUZZ_CHECK(b.len <= ESMTP_LINE_MAX && strstr(b.ptr, " HELO=") != NULL);
    }

    size_t n = (size_t)(data[0] >> 2) + 1;
    memset(ehlo, 'Z', sizeof ehlo);
    esmtp_ehlo_name(ehlo, n, helo, addr);
    size_t el = strnlen(ehlo, n);
    FUZZ_CHECK(el < n);
    FUZZ_CHECK(n == sizeof ehlo || ehlo[n] == 'Z');
    for (size_t i = 0; i < el; i++)
        FUZZ_CHECK((unsigned char)ehlo[i] >= 33 && (unsigned char)ehlo[i] <= 126);
    bool usable = helo[0] && strlen(helo) < n;
    for (size_t i = 0; usable && helo[i]; i++)
        usable = (unsigned char)helo[i] >= 33 && (unsigned char)helo[i] <= 126;
    if (usable)
        FUZZ_CHECK(strcmp(ehlo, helo) == 0);
    else
        FUZZ_CHECK(ehlo[0] == '[' || el == 0);

    buf_free(&fields);
    buf_free(&a);
    buf_free(&b);
    buf_free(&c);
    return 0;
}
