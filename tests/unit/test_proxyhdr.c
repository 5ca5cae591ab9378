/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for proxyhdr: PROXY protocol v1 and v2 headers, valid and
 * refused, fed whole and byte by byte, and the "refuse early" promise.
 *
 * The hap_* vectors were captured from HAProxy 2.6.12 (Debian 12): haproxy
 * ran on loopback with frontends forwarding to a Python listener that
 * recorded the first bytes of each connection; the client then sent
 * "EHLO client.example\r\n", so each capture is the header followed by
 * the SMTP bytes it must not consume. Server lines used:
 *   send-proxy                                   (v1 TCP4 and TCP6)
 *   send-proxy-v2                                (v2 IPv4 and IPv6)
 *   send-proxy-v2 check check-send-proxy         (v2 LOCAL, health check)
 *   send-proxy-v2-ssl-cn proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,
 *       cert-key,authority,crc32c,unique-id      (TLS frontend with
 *       "verify optional alpn smtp", openssl s_client with a client
 *       certificate, SNI mx.example.test, ALPN smtp)
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "proxyhdr.h"

#define EHLO "EHLO client.example\r\n"

static const char hap_v1_tcp4[] = "PROXY TCP4 127.0.0.1 127.0.0.1 59950 47101\r\n" EHLO;
static const char hap_v1_tcp6[] = "PROXY TCP6 ::1 ::1 46198 47102\r\n" EHLO;

static const unsigned char hap_v2_local[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                             0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00};

static const unsigned char hap_v2_ssl[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0xb5,
    0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01, 0x9a, 0x18, 0xb8, 0x01, 0x03, 0x00, 0x04, 0x68,
    0x3a, 0x19, 0x03, 0x01, 0x00, 0x04, 0x73, 0x6d, 0x74, 0x70, 0x02, 0x00, 0x0f, 0x6d, 0x78, 0x2e,
    0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x74, 0x65, 0x73, 0x74, 0x05, 0x00, 0x2e, 0x37,
    0x46, 0x30, 0x30, 0x30, 0x30, 0x30, 0x31, 0x3a, 0x39, 0x41, 0x31, 0x38, 0x5f, 0x37, 0x46, 0x30,
    0x30, 0x30, 0x30, 0x30, 0x31, 0x3a, 0x42, 0x38, 0x30, 0x31, 0x5f, 0x36, 0x42, 0x31, 0x34, 0x37,
    0x43, 0x44, 0x45, 0x5f, 0x30, 0x30, 0x30, 0x34, 0x3a, 0x37, 0x37, 0x34, 0x31, 0x20, 0x00, 0x55,
    0x07, 0x00, 0x00, 0x00, 0x00, 0x21, 0x00, 0x07, 0x54, 0x4c, 0x53, 0x76, 0x31, 0x2e, 0x33, 0x22,
    0x00, 0x13, 0x72, 0x65, 0x6c, 0x61, 0x79, 0x31, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65,
    0x2e, 0x74, 0x65, 0x73, 0x74, 0x25, 0x00, 0x07, 0x52, 0x53, 0x41, 0x32, 0x30, 0x34, 0x38, 0x24,
    0x00, 0x0a, 0x52, 0x53, 0x41, 0x2d, 0x53, 0x48, 0x41, 0x32, 0x35, 0x36, 0x23, 0x00, 0x16, 0x54,
    0x4c, 0x53, 0x5f, 0x41, 0x45, 0x53, 0x5f, 0x32, 0x35, 0x36, 0x5f, 0x47, 0x43, 0x4d, 0x5f, 0x53,
    0x48, 0x41, 0x33, 0x38, 0x34, 0x45, 0x48, 0x4c, 0x4f, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74,
    0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x0d, 0x0a};

static const unsigned char hap_v2_tcp4[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21,
    0x11, 0x00, 0x0c, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01, 0xd0, 0xdc,
    0xb7, 0xff, 0x45, 0x48, 0x4c, 0x4f, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74,
    0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x0d, 0x0a};

static const unsigned char hap_v2_tcp6[] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00,
    0x24, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x01, 0xe7, 0x7c, 0xb8, 0x00, 0x45, 0x48, 0x4c, 0x4f, 0x20, 0x63, 0x6c, 0x69,
    0x65, 0x6e, 0x74, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x0d, 0x0a};

static const unsigned char v2sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                        0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static struct proxyhdr hdr; /* about 1 KiB: keep it off the stack */
static char err[128];

static int parse(const void *p, size_t n)
{
    return proxyhdr_parse(p, n, &hdr, err, sizeof(err));
}

/*
 * Every prefix of buf[0..len) shorter than want returns 0 with an empty
 * error; from want on (trailing bytes included) the result is want.
 */
static void check_prefixes(const void *p, size_t len, int want)
{
    size_t k;

    assert_true(want > 0 && (size_t)want <= len);
    for (k = 0; k <= len; k++) {
        int r = parse(p, k);

        if (k < (size_t)want) {
            if (r != 0)
                fail_msg("prefix %zu of %d: got %d (%s), want 0", k, want, r, err);
            assert_string_equal(err, "");
        } else {
            if (r != want)
                fail_msg("length %zu: got %d (%s), want %d", k, r, err, want);
        }
    }
    assert_int_equal(parse(p, len), want);
}

/*
 * buf[0..len) is refused; the verdict, once given for a prefix, stays for
 * every longer one; returns the shortest refused prefix length.
 */
static size_t check_refused(const void *p, size_t len, const char *why)
{
    size_t k, first = 0;

    for (k = 0; k <= len; k++) {
        int r = parse(p, k);

        if (first == 0 && r == -1)
            first = k;
        if (first != 0 && r != -1)
            fail_msg("prefix %zu: got %d after a refusal at %zu", k, r, first);
        if (first == 0 && r != 0)
            fail_msg("prefix %zu: got %d, want 0 or -1", k, r);
    }
    if (first == 0)
        fail_msg("never refused (%s)", why);
    assert_int_equal(parse(p, len), -1);
    if (strstr(err, why) == NULL)
        fail_msg("error \"%s\", want one with \"%s\"", err, why);
    return first;
}

/* ---- v2 header builder ------------------------------------------------ */

struct v2b {
    unsigned char b[2048];
    size_t n;
};

static void v2_start(struct v2b *v, unsigned ver_cmd, unsigned fam)
{
    memcpy(v->b, v2sig, 12);
    v->b[12] = (unsigned char)ver_cmd;
    v->b[13] = (unsigned char)fam;
    v->n = 16;
}

static void v2_add(struct v2b *v, const void *p, size_t n)
{
    assert_true(v->n + n <= sizeof(v->b));
    if (n > 0) /* memcpy() wants a valid pointer even for 0 bytes */
        memcpy(v->b + v->n, p, n);
    v->n += n;
}

static void v2_tlv(struct v2b *v, unsigned type, const void *p, size_t n)
{
    unsigned char h[3] = {(unsigned char)type, (unsigned char)(n >> 8), (unsigned char)n};

    v2_add(v, h, 3);
    v2_add(v, p, n);
}

/* Set the length field from what was added. */
static size_t v2_end(struct v2b *v)
{
    size_t plen = v->n - 16;

    v->b[14] = (unsigned char)(plen >> 8);
    v->b[15] = (unsigned char)plen;
    return v->n;
}

static void v2_inet(struct v2b *v)
{
    static const unsigned char a[12] = {192, 0, 2, 1, 198, 51, 100, 7, 0x12, 0x67, 0x00, 25};

    v2_start(v, 0x21, 0x11);
    v2_add(v, a, sizeof(a));
}

/* ---- tests ------------------------------------------------------------ */

static void test_crc32c(void **state)
{
    (void)state;
    /* The check value of CRC-32C (RFC 3720 appendix B.4 style). */
    assert_int_equal(proxyhdr_crc32c(0, (const unsigned char *)"123456789", 9), 0xe3069283u);
    assert_int_equal(proxyhdr_crc32c(proxyhdr_crc32c(0, (const unsigned char *)"1234", 4),
                                     (const unsigned char *)"56789", 5),
                     0xe3069283u);
    assert_int_equal(proxyhdr_crc32c(0, NULL, 0), 0);
}

static void test_v1_haproxy(void **state)
{
    char d[512];

    (void)state;
    check_prefixes(hap_v1_tcp4, strlen(hap_v1_tcp4), 44);
    assert_int_equal(hdr.version, 1);
    assert_int_equal(hdr.command, PROXYHDR_CMD_PROXY);
    assert_int_equal(hdr.family, PROXYHDR_FAM_INET);
    assert_int_equal(hdr.transport, PROXYHDR_TRANSPORT_STREAM);
    assert_true(hdr.has_addrs);
    assert_string_equal(hdr.src_addr, "127.0.0.1");
    assert_string_equal(hdr.dst_addr, "127.0.0.1");
    assert_int_equal(hdr.src_port, 59950);
    assert_int_equal(hdr.dst_port, 47101);
    assert_int_equal(hdr.src.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&hdr.src)->sin_port), 59950);
    assert_int_equal(ntohl(((struct sockaddr_in *)&hdr.dst)->sin_addr.s_addr), 0x7f000001);
    assert_false(hdr.ssl);
    assert_string_equal(proxyhdr_describe(&hdr, d, sizeof(d)),
                        "v1 PROXY tcp4 127.0.0.1:59950 -> 127.0.0.1:47101");

    check_prefixes(hap_v1_tcp6, strlen(hap_v1_tcp6), 32);
    assert_int_equal(hdr.family, PROXYHDR_FAM_INET6);
    assert_string_equal(hdr.src_addr, "::1");
    assert_int_equal(hdr.src_port, 46198);
    assert_int_equal(hdr.dst_port, 47102);
    assert_int_equal(hdr.dst.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&hdr.dst)->sin6_port), 47102);
    assert_string_equal(proxyhdr_describe(&hdr, d, sizeof(d)),
                        "v1 PROXY tcp6 [::1]:46198 -> [::1]:47102");
}

static void test_v1_valid(void **state)
{
    static const struct {
        const char *in;
        const char *src, *dst;
        unsigned sport, dport;
    } t[] = {
        {"PROXY TCP4 192.0.2.1 198.51.100.7 0 65535\r\n", "192.0.2.1", "198.51.100.7", 0, 65535},
        /* Text is re-rendered: lower case, compressed. */
        {"PROXY TCP6 2001:DB8:0:0:0:0:0:1 2001:db8::0:2 1 25\r\n", "2001:db8::1", "2001:db8::2", 1,
         25},
        {"PROXY TCP6 ::ffff:192.0.2.1 ::ffff:192.0.2.2 10 20\r\n", "::ffff:192.0.2.1",
         "::ffff:192.0.2.2", 10, 20},
        /* The spec's worst case, 104 bytes. */
        {"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
         65535, 65535},
    };
    char buf[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t n = strlen(t[i].in);

        snprintf(buf, sizeof(buf), "%sQUIT\r\n", t[i].in);
        check_prefixes(buf, strlen(buf), (int)n);
        assert_true(hdr.has_addrs);
        assert_string_equal(hdr.src_addr, t[i].src);
        assert_string_equal(hdr.dst_addr, t[i].dst);
        assert_int_equal(hdr.src_port, t[i].sport);
        assert_int_equal(hdr.dst_port, t[i].dport);
    }
}

static void test_v1_unknown(void **state)
{
    static const char *const t[] = {
        "PROXY UNKNOWN\r\n",
        /* Whatever follows UNKNOWN is ignored (spec 2.1). */
        "PROXY UNKNOWN ffff:ffff::1 ffff::2 65535 65535\r\n",
        "PROXY UNKNOWN whatever, even $%^&\r\n",
    };
    char buf[256], d[128];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        snprintf(buf, sizeof(buf), "%s" EHLO, t[i]);
        check_prefixes(buf, strlen(buf), (int)strlen(t[i]));
        assert_int_equal(hdr.version, 1);
        assert_int_equal(hdr.command, PROXYHDR_CMD_PROXY);
        assert_int_equal(hdr.family, PROXYHDR_FAM_UNSPEC);
        assert_false(hdr.has_addrs);
        assert_string_equal(hdr.src_addr, "");
        assert_int_equal(hdr.src.ss_family, AF_UNSPEC);
        assert_string_equal(proxyhdr_describe(&hdr, d, sizeof(d)), "v1 PROXY unknown");
    }
}

static void test_v1_length_limit(void **state)
{
    char buf[200];

    (void)state;
    /* UNKNOWN padded to exactly 107 bytes with its CRLF: accepted. */
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memcpy(buf + 105, "\r\n", 2);
    memcpy(buf + 107, EHLO, sizeof(EHLO));
    check_prefixes(buf, strlen(buf), 107);
    /* 108: refused once the 107th byte is not the LF. */
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    memcpy(buf + 106, "\r\n", 3);
    assert_int_equal(check_refused(buf, strlen(buf), "too long"), 107);
    /* No CRLF at all: refused at 107 bytes, not waited on. */
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "PROXY UNKNOWN ", 14);
    buf[150] = '\0';
    assert_int_equal(check_refused(buf, 150, "too long"), 107);
    /* IPv4-mapped TCP6 at full length is over 107: refused. */
    snprintf(buf, sizeof(buf),
             "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
             "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n");
    check_refused(buf, strlen(buf), "too long");
}

static void test_v1_invalid(void **state)
{
    static const struct {
        const char *in;
        const char *why;
    } t[] = {
        {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "bad protocol"},
        {"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "bad protocol"},
        {"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad protocol"},
        {"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad protocol"},
        {"PROXY UNKNOWNX\r\n", "bad protocol"},
        {"PROXY UNKNOWN\n", "bad protocol"},
        {"PROXY UNKNOWN \x01\r\n", "control"},
        {"PROXY UNKNOWN \xc3\xa9\r\n", "8-bit"},
        {"PROXY UNKNOWN \r\r\n", "CR without LF"},
        {"PROXY TCP4\r\n", "line ends after the protocol"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "line ends after the source port"},
        {"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "bad destination address"},
        {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "bad source address"},
        {"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "bad source address"},
        {"PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n", "bad destination address"},
        {"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "bad source address"},
        {"PROXY TCP4 ::1 ::1 1 2\r\n", "bad source address"},
        {"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "bad source address"},
        {"PROXY TCP6 ::1 1.2.3.4 1 2\r\n", "bad destination address"},
        {"PROXY TCP6 1::2::3 ::1 1 2\r\n", "bad source address"},
        {"PROXY TCP6 ::1%lo ::1 1 2\r\n", "bad source address"},
        {"PROXY TCP6 [::1] ::1 1 2\r\n", "bad source address"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "bad source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "bad source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", "bad source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "bad source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", "bad source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 0x19 2\r\n", "bad source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n", "bad source port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "bad destination port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "bad destination port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bad destination port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "no CRLF after the destination port"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "CR without LF"},
        {"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", "bad source address"},
        {"PROXY\r\n", "bad v1 signature"},
        {"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad v1 signature"},
        {"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY header"},
        {"PROXZ TCP4\r\n", "bad v1 signature"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        err[0] = '\0';
        check_refused(t[i].in, strlen(t[i].in), t[i].why);
    }
}

/* A client speaking SMTP (or TLS) to a PROXY listener is refused at its
 * first byte, and partial garbage as soon as it cannot be a header. */
static void test_refused_early(void **state)
{
    static const struct {
        const char *in;
        size_t len, at;
    } t[] = {
        {"EHLO x\r\n", 8, 1},
        {"HELO x\r\n", 8, 1},
        {"\x16\x03\x01\x02\x00", 5, 1}, /* a TLS ClientHello */
        {"PROXX", 5, 5},
        {"PROXY TCP5", 10, 10},
        {"PROXY TCP4 1.2.3.4x", 19, 19},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3", 33, 31},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 12345678", 37, 35},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536", 34, 34},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 0123", 33, 31},
        {"PROXY TCP4 1111.1.1.1", 21, 15},
        {"PROXY TCP4 1.2.3.4.", 19, 19},
        {"PROXY TCP4 1..", 14, 14},
        {"PROXY TCP4 1.256", 16, 16},
        {"PROXY TCP4 1.01", 15, 15},
        {"PROXY TCP6 2001:0db81", 21, 21},
        {"PROXY TCP6 1:::", 15, 15},
        {"PROXY TCP6 1::2::", 17, 17},
        {"\r\n\r\n\0\r\nQUIX", 12, 11},
        {"\r\n\r\n\0\r\nQUIT\n\x31", 13, 13},
        {"\r\nQUIT", 6, 3},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t at = check_refused(t[i].in, t[i].len, "");

        if (at != t[i].at)
            fail_msg("\"%s\": refused at %zu, want %zu (%s)", t[i].in, at, t[i].at, err);
    }
    assert_int_equal(parse("E", 1), -1);
    assert_string_equal(err, "not a PROXY header (first byte 0x45)");
    assert_int_equal(parse("", 0), 0);
    assert_int_equal(parse("P", 1), 0);
    assert_int_equal(parse("\r", 1), 0);
}

static void test_v2_haproxy_plain(void **state)
{
    char d[256];

    (void)state;
    check_prefixes(hap_v2_tcp4, sizeof(hap_v2_tcp4), 28);
    assert_int_equal(hdr.version, 2);
    assert_int_equal(hdr.command, PROXYHDR_CMD_PROXY);
    assert_int_equal(hdr.family, PROXYHDR_FAM_INET);
    assert_int_equal(hdr.transport, PROXYHDR_TRANSPORT_STREAM);
    assert_true(hdr.has_addrs);
    assert_string_equal(hdr.src_addr, "127.0.0.1");
    assert_int_equal(hdr.src_port, 53468);
    assert_int_equal(hdr.dst_port, 47103);
    assert_false(hdr.ssl);
    assert_false(hdr.crc_checked);
    assert_string_equal(proxyhdr_describe(&hdr, d, sizeof(d)),
                        "v2 PROXY inet 127.0.0.1:53468 -> 127.0.0.1:47103");

    check_prefixes(hap_v2_tcp6, sizeof(hap_v2_tcp6), 52);
    assert_int_equal(hdr.family, PROXYHDR_FAM_INET6);
    assert_string_equal(hdr.src_addr, "::1");
    assert_string_equal(hdr.dst_addr, "::1");
    assert_int_equal(hdr.src_port, 59260);
    assert_int_equal(hdr.dst_port, 47104);
    assert_int_equal(hdr.src.ss_family, AF_INET6);

    /* Health check: LOCAL, AF_UNSPEC, no address block. */
    check_prefixes(hap_v2_local, sizeof(hap_v2_local), 16);
    assert_int_equal(hdr.command, PROXYHDR_CMD_LOCAL);
    assert_int_equal(hdr.family, PROXYHDR_FAM_UNSPEC);
    assert_false(hdr.has_addrs);
    assert_int_equal(hdr.src.ss_family, AF_UNSPEC);
    assert_string_equal(proxyhdr_describe(&hdr, d, sizeof(d)), "v2 LOCAL unspec");
}

static void test_v2_haproxy_ssl(void **state)
{
    static const char uid[] = "7F000001:9A18_7F000001:B801_6B147CDE_0004:7741";
    unsigned char bad[sizeof(hap_v2_ssl)];
    char d[512];

    (void)state;
    check_prefixes(hap_v2_ssl, sizeof(hap_v2_ssl), 197);
    assert_true(hdr.has_addrs);
    assert_int_equal(hdr.src_port, 39448);
    assert_int_equal(hdr.dst_port, 47105);
    assert_true(hdr.crc_checked);
    assert_true(hdr.ssl);
    assert_int_equal(hdr.ssl_client, PROXYHDR_SSL_CLIENT_SSL | PROXYHDR_SSL_CLIENT_CERT_CONN |
                                         PROXYHDR_SSL_CLIENT_CERT_SESS);
    assert_int_equal(hdr.ssl_verify, 0);
    assert_string_equal(hdr.ssl_version, "TLSv1.3");
    assert_string_equal(hdr.ssl_cn, "relay1.example.test");
    assert_string_equal(hdr.ssl_cipher, "TLS_AES_256_GCM_SHA384");
    assert_string_equal(hdr.ssl_sig_alg, "RSA-SHA256");
    assert_string_equal(hdr.ssl_key_alg, "RSA2048");
    assert_string_equal(hdr.authority, "mx.example.test");
    assert_string_equal(hdr.alpn, "smtp");
    assert_int_equal(hdr.unique_id_len, strlen(uid));
    assert_memory_equal(hdr.unique_id, uid, strlen(uid));
    assert_int_equal(hdr.truncated, 0);
    assert_int_equal(hdr.tlv_unknown, 0);
    assert_string_equal(proxyhdr_describe(&hdr, d, sizeof(d)),
                        "v2 PROXY inet 127.0.0.1:39448 -> 127.0.0.1:47105 tls=TLSv1.3 "
                        "client=0x07 verify=0 cipher=TLS_AES_256_GCM_SHA384 "
                        "cn=\"relay1.example.test\" sni=mx.example.test alpn=smtp "
                        "uid=37463030303030313a394131385f37463030303030313a423830315f36423134"
                        "374344455f303030343a37373431 crc=ok");
    /* A short buffer cuts the description but keeps it terminated. */
    assert_int_equal(strlen(proxyhdr_describe(&hdr, d, 20)), 19);

    /* Any changed byte (address, TLV text, the checksum itself) fails it. */
    memcpy(bad, hap_v2_ssl, sizeof(bad));
    bad[19] ^= 1;
    check_refused(bad, sizeof(bad), "CRC32C mismatch");
    memcpy(bad, hap_v2_ssl, sizeof(bad));
    bad[140] ^= 0x20; /* in the CN */
    check_refused(bad, sizeof(bad), "CRC32C mismatch");
    memcpy(bad, hap_v2_ssl, sizeof(bad));
    bad[34] ^= 0x80;
    check_refused(bad, sizeof(bad), "CRC32C mismatch");
    /* Bytes after the header are not covered. */
    memcpy(bad, hap_v2_ssl, sizeof(bad));
    bad[200] ^= 0xff;
    assert_int_equal(parse(bad, sizeof(bad)), 197);
}

static void test_v2_families(void **state)
{
    static struct v2b v;
    unsigned char unix_paths[216];
    /* 2001:db8::1 port 25 -> 2001:db8::2 port 65535 */
    static const unsigned char a6[36] = {
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    1,    0x20, 0x01,
        0x0d, 0xb8, 0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x00, 0x19, 0xff, 0xff,
    };

    (void)state;
    /* IPv4 built here, with trailing bytes. */
    v2_inet(&v);
    v2_end(&v);
    v2_add(&v, "QUIT\r\n", 6);
    check_prefixes(v.b, v.n, 28);
    assert_string_equal(hdr.src_addr, "192.0.2.1");
    assert_string_equal(hdr.dst_addr, "198.51.100.7");
    assert_int_equal(hdr.src_port, 4711);
    assert_int_equal(hdr.dst_port, 25);

    /* IPv6, UDP: the transport is reported, the caller decides. */
    v2_start(&v, 0x21, 0x22);
    v2_add(&v, a6, sizeof(a6));
    check_prefixes(v.b, v2_end(&v), 52);
    assert_int_equal(hdr.transport, PROXYHDR_TRANSPORT_DGRAM);
    assert_string_equal(hdr.src_addr, "2001:db8::1");
    assert_string_equal(hdr.dst_addr, "2001:db8::2");
    assert_int_equal(hdr.src_port, 25);
    assert_int_equal(hdr.dst_port, 65535);

    /* LOCAL with an address block: skipped, addresses not taken, TLVs
     * read after it. */
    v2_inet(&v);
    v.b[12] = 0x20;
    v2_tlv(&v, 0x02, "mx.example", 10);
    check_prefixes(v.b, v2_end(&v), 41);
    assert_int_equal(hdr.command, PROXYHDR_CMD_LOCAL);
    assert_int_equal(hdr.family, PROXYHDR_FAM_INET);
    assert_false(hdr.has_addrs);
    assert_string_equal(hdr.src_addr, "");
    assert_string_equal(hdr.authority, "mx.example");

    /* AF_UNIX: the 216-byte block is skipped like LOCAL's (sluice's
     * rules are about IP clients), TLVs after it are read. */
    memset(unix_paths, 0, sizeof(unix_paths));
    memcpy(unix_paths, "/run/client.sock", 16);
    memcpy(unix_paths + 108, "/run/sluice.sock", 16);
    v2_start(&v, 0x21, 0x31);
    v2_add(&v, unix_paths, sizeof(unix_paths));
    v2_tlv(&v, 0x01, "smtp", 4);
    check_prefixes(v.b, v2_end(&v), 16 + 216 + 7);
    assert_int_equal(hdr.family, PROXYHDR_FAM_UNIX);
    assert_false(hdr.has_addrs);
    assert_string_equal(hdr.alpn, "smtp");
    v2_start(&v, 0x21, 0x32);
    v2_add(&v, unix_paths, sizeof(unix_paths));
    check_prefixes(v.b, v2_end(&v), 16 + 216);

    /* PROXY with AF_UNSPEC: addresses ignored (spec), TLVs read. */
    v2_start(&v, 0x21, 0x00);
    v2_tlv(&v, 0x04, "", 0);
    check_prefixes(v.b, v2_end(&v), 19);
    assert_int_equal(hdr.command, PROXYHDR_CMD_PROXY);
    assert_false(hdr.has_addrs);
}

static void test_v2_header_invalid(void **state)
{
    static struct v2b v;
    static const struct {
        unsigned ver_cmd, fam;
        const char *why;
    } t[] = {
        {0x11, 0x11, "unknown version 1"},    {0x31, 0x11, "unknown version 3"},
        {0x01, 0x11, "unknown version 0"},    {0x22, 0x11, "unknown command 2"},
        {0x2f, 0x11, "unknown command 15"},   {0x21, 0x41, "family/protocol 0x41"},
        {0x21, 0x13, "family/protocol 0x13"}, {0x21, 0x10, "family/protocol 0x10"},
        {0x21, 0x01, "family/protocol 0x01"}, {0x20, 0x03, "family/protocol 0x03"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        v2_start(&v, t[i].ver_cmd, t[i].fam);
        v2_add(&v, "\0\0\0\0\0\0\0\0\0\0\0\0", 12);
        /* Refused on the byte that is wrong, before the length. */
        assert_int_equal(check_refused(v.b, v2_end(&v), t[i].why), t[i].fam == 0x11 ? 13 : 14);
    }

    /* Length shorter than the family's address block. */
    v2_start(&v, 0x21, 0x11);
    v2_add(&v, "\0\0\0\0\0\0\0\0\0\0\0", 11);
    assert_int_equal(check_refused(v.b, v2_end(&v), "short of the 12-byte"), 16);
    v2_start(&v, 0x21, 0x21);
    v2_add(&v, "\0\0\0\0\0\0\0\0\0\0\0\0", 12);
    check_refused(v.b, v2_end(&v), "short of the 36-byte");
    v2_start(&v, 0x20, 0x31);
    check_refused(v.b, v2_end(&v), "short of the 216-byte");

    /* Oversized: refused as soon as the length is read, not waited on. */
    v2_start(&v, 0x21, 0x11);
    v.b[14] = 0xff;
    v.b[15] = 0xff;
    assert_int_equal(check_refused(v.b, 16, "v2 length 65535 past limit 1008"), 16);
    /* The cap itself: 1008 bytes after the fixed part pass, 1009 do not. */
    v2_inet(&v);
    v2_tlv(&v, 0xe0, "", 0);
    memset(v.b + v.n, 'z', PROXYHDR_MAX_LEN - v.n);
    v.n = PROXYHDR_MAX_LEN;
    v.b[28 + 1] = (unsigned char)((PROXYHDR_MAX_LEN - 31) >> 8);
    v.b[28 + 2] = (unsigned char)(PROXYHDR_MAX_LEN - 31);
    assert_int_equal(parse(v.b, v2_end(&v)), PROXYHDR_MAX_LEN);
    assert_int_equal(hdr.tlv_unknown, 1);
    v.b[v.n] = 'z';
    v.n++;
    v.b[28 + 2]++;
    check_refused(v.b, v2_end(&v), "v2 length 1009 past limit 1008");

    /* Bad signature anywhere in its 12 bytes. */
    for (i = 0; i < 12; i++) {
        v2_inet(&v);
        v2_end(&v);
        v.b[i] ^= 0x40;
        assert_int_equal(check_refused(v.b, v.n, i == 0 ? "not a PROXY header" : "bad v2"), i + 1);
    }
}

static void test_v2_tlvs(void **state)
{
    static struct v2b v;
    unsigned char uid[129], cn[100], ssl[256];
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(uid); i++)
        uid[i] = (unsigned char)i;

    /* Unique id: 128 bytes, binary, kept as is. */
    v2_inet(&v);
    v2_tlv(&v, 0x05, uid, 128);
    check_prefixes(v.b, v2_end(&v), 28 + 131);
    assert_int_equal(hdr.unique_id_len, 128);
    assert_memory_equal(hdr.unique_id, uid, 128);
    v2_inet(&v);
    v2_tlv(&v, 0x05, uid, 129);
    check_refused(v.b, v2_end(&v), "unique id of 129 bytes");

    /* SSL with hostile sub-TLV texts: cut and made printable. */
    memset(cn, 'c', sizeof(cn));
    cn[0] = 0x00;
    cn[1] = '\n';
    cn[2] = 0xc3;
    n = 0;
    ssl[n++] = PROXYHDR_SSL_CLIENT_SSL;
    memcpy(ssl + n, "\0\0\0\x12", 4); /* verify failed: 18 */
    n += 4;
    memcpy(ssl + n, "\x22\x00\x64", 3);
    n += 3;
    memcpy(ssl + n, cn, 100);
    n += 100;
    memcpy(ssl + n, "\x21\x00\x03TLS", 6);
    n += 6;
    memcpy(ssl + n, "\x7f\x00\x01x", 4); /* unknown sub-TLV: skipped */
    n += 4;
    v2_inet(&v);
    v2_tlv(&v, 0x20, ssl, n);
    check_prefixes(v.b, v2_end(&v), (int)(28 + 3 + n));
    assert_true(hdr.ssl);
    assert_int_equal(hdr.ssl_client, 1);
    assert_int_equal(hdr.ssl_verify, 18);
    assert_int_equal(strlen(hdr.ssl_cn), 64);
    assert_memory_equal(hdr.ssl_cn, "???ccc", 6);
    assert_int_equal(hdr.truncated, PROXYHDR_TRUNC_SSL_CN);
    assert_string_equal(hdr.ssl_version, "TLS");
    assert_int_equal(hdr.tlv_unknown, 1);

    /* SSL TLV too short for client + verify; sub-TLV past the SSL TLV. */
    v2_inet(&v);
    v2_tlv(&v, 0x20, "\x01\0\0\0", 4);
    check_refused(v.b, v2_end(&v), "SSL TLV of 4 bytes");
    v2_inet(&v);
    v2_tlv(&v, 0x20, "\x01\0\0\0\0\x21\x00\x05TLS", 11);
    check_refused(v.b, v2_end(&v), "SSL sub-TLV 0x21 runs past");
    v2_inet(&v);
    v2_tlv(&v, 0x20, "\x01\0\0\0\0\x21\x00", 7);
    check_refused(v.b, v2_end(&v), "SSL sub-TLV header truncated");

    /* TLVs running past the end of the header, or cut in their header. */
    v2_inet(&v);
    v2_tlv(&v, 0x02, "mx.example", 10);
    v.b[v.n - 11] = 11; /* says 11, has 10 */
    check_refused(v.b, v2_end(&v), "TLV 0x02 runs past the end");
    v2_inet(&v);
    v2_add(&v, "\x02\x00", 2);
    check_refused(v.b, v2_end(&v), "TLV header truncated");
    v2_inet(&v);
    v2_add(&v, "\x04", 1);
    check_refused(v.b, v2_end(&v), "TLV header truncated");

    /* Repeats: NOOP may, the types we read may not. */
    v2_inet(&v);
    v2_tlv(&v, 0x04, "", 0);
    v2_tlv(&v, 0x04, "pad", 3);
    v2_tlv(&v, 0xea, "\x01vpce-0123", 10); /* AWS: skipped */
    v2_tlv(&v, 0xea, "\x01vpce-0123", 10);
    check_prefixes(v.b, v2_end(&v), 28 + 3 + 6 + 13 + 13);
    assert_int_equal(hdr.tlv_unknown, 2);
    v2_inet(&v);
    v2_tlv(&v, 0x02, "a.example", 9);
    v2_tlv(&v, 0x02, "b.example", 9);
    check_refused(v.b, v2_end(&v), "TLV 0x02 repeated");

    /* Long authority and ALPN, NETNS. */
    v2_inet(&v);
    memset(cn, 'a', sizeof(cn));
    v2_tlv(&v, 0x01, cn, 64);
    v2_tlv(&v, 0x30, "blue", 4);
    check_prefixes(v.b, v2_end(&v), 28 + 67 + 7);
    assert_int_equal(strlen(hdr.alpn), 63);
    assert_int_equal(hdr.truncated, PROXYHDR_TRUNC_ALPN);
    assert_string_equal(hdr.netns, "blue");
}

static void test_v2_crc(void **state)
{
    static struct v2b v;
    uint32_t crc;
    size_t at;

    (void)state;
    v2_inet(&v);
    v2_tlv(&v, 0x02, "mx.example", 10);
    at = v.n + 3;
    v2_tlv(&v, 0x03, "\0\0\0\0", 4);
    v2_tlv(&v, 0x04, "", 0);
    v2_end(&v);
    crc = proxyhdr_crc32c(0, v.b, v.n);
    v.b[at] = (unsigned char)(crc >> 24);
    v.b[at + 1] = (unsigned char)(crc >> 16);
    v.b[at + 2] = (unsigned char)(crc >> 8);
    v.b[at + 3] = (unsigned char)crc;
    check_prefixes(v.b, v.n, (int)v.n);
    assert_true(hdr.crc_checked);

    v.b[at + 3] ^= 1;
    check_refused(v.b, v.n, "CRC32C mismatch");
    /* Little-endian is not accepted either. */
    v.b[at + 3] ^= 1;
    v.b[at] = (unsigned char)crc;
    v.b[at + 3] = (unsigned char)(crc >> 24);
    v.b[at + 1] = (unsigned char)(crc >> 8);
    v.b[at + 2] = (unsigned char)(crc >> 16);
    check_refused(v.b, v.n, "CRC32C mismatch");

    v2_inet(&v);
    v2_tlv(&v, 0x03, "\0\0\0", 3);
    check_refused(v.b, v2_end(&v), "CRC32C TLV length 3");
    v2_inet(&v);
    v2_tlv(&v, 0x03, "\0\0\0\0", 4);
    v2_tlv(&v, 0x03, "\0\0\0\0", 4);
    check_refused(v.b, v2_end(&v), "TLV 0x03 repeated");
}

/* err is optional, and a small one is cut, not overrun. */
static void test_err_buffer(void **state)
{
    char small[8];

    (void)state;
    assert_int_equal(proxyhdr_parse((const unsigned char *)"EHLO", 4, &hdr, NULL, 0), -1);
    memset(small, 'x', sizeof(small));
    assert_int_equal(proxyhdr_parse((const unsigned char *)"EHLO", 4, &hdr, small, sizeof(small)),
                     -1);
    assert_string_equal(small, "not a P");
    assert_int_equal(proxyhdr_parse((const unsigned char *)"PROXY", 5, &hdr, small, sizeof(small)),
                     0);
    assert_string_equal(small, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_v1_haproxy),
        cmocka_unit_test(test_v1_valid),
        cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v1_length_limit),
        cmocka_unit_test(test_v1_invalid),
        cmocka_unit_test(test_refused_early),
        cmocka_unit_test(test_v2_haproxy_plain),
        cmocka_unit_test(test_v2_haproxy_ssl),
        cmocka_unit_test(test_v2_families),
        cmocka_unit_test(test_v2_header_invalid),
        cmocka_unit_test(test_v2_tlvs),
        cmocka_unit_test(test_v2_crc),
        cmocka_unit_test(test_err_buffer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
