/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz proxyhdr_parse: the whole input is the bytes read so far on a
 * PROXY-protocol listener. Checked besides memory safety:
 *  - the result is -1, 0 or a length within the input, and err is empty
 *    exactly when the result is not -1, one printable line otherwise;
 *  - "need more" (0) is never answered at PROXYHDR_MAX_LEN bytes or more;
 *  - verdicts are consistent over prefixes, the way a caller sees them
 *    while reading: an accepted length n is 0 for every shorter prefix and
 *    n again for every longer one (and for buf[0..n) alone, with the same
 *    parsed fields); a refused or incomplete input has no accepted prefix,
 *    and an incomplete one no refused prefix;
 *  - the parsed header keeps the promises of proxyhdr.h: known enum
 *    values, NUL-terminated printable texts, addresses only with
 *    has_addrs, in canonical text that inet_pton() reads back to the
 *    sockaddr, ports matching; v1 ends in CRLF within 107 bytes, v2 is
 *    exactly 16 + its length field; proxyhdr_describe() stays in bounds.
 */
#include "fuzz.h"

#include <arpa/inet.h>
#include <string.h>

#include "proxyhdr.h"

static void check_text(const char *s, size_t cap)
{
    size_t i, n;

    FUZZ_CHECK(memchr(s, '\0', cap) != NULL);
    n = strlen(s);
    for (i = 0; i < n; i++)
        FUZZ_CHECK(s[i] >= 0x20 && s[i] <= 0x7e);
}

static void check_addr(const struct proxyhdr *h, const char *text, uint16_t port,
                       const struct sockaddr_storage *ss)
{
    unsigned char bin[16];
    char again[PROXYHDR_ADDR_MAX];
    int af = h->family == PROXYHDR_FAM_INET ? AF_INET : AF_INET6;

    check_text(text, PROXYHDR_ADDR_MAX);
    FUZZ_CHECK(inet_pton(af, text, bin) == 1);
    FUZZ_CHECK(inet_ntop(af, bin, again, sizeof(again)) != NULL);
    FUZZ_CHECK(strcmp(again, text) == 0);
    FUZZ_CHECK(ss->ss_family == af);
    if (af == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

        FUZZ_CHECK(memcmp(&sin->sin_addr, bin, 4) == 0);
        FUZZ_CHECK(ntohs(sin->sin_port) == port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

        FUZZ_CHECK(memcmp(&sin6->sin6_addr, bin, 16) == 0);
        FUZZ_CHECK(ntohs(sin6->sin6_port) == port);
    }
}

static void check_hdr(const struct proxyhdr *h, const uint8_t *data, int n)
{
    static char d[2048];
    size_t cut;

    FUZZ_CHECK(h->version == 1 || h->version == 2);
    FUZZ_CHECK(h->command == PROXYHDR_CMD_LOCAL || h->command == PROXYHDR_CMD_PROXY);
    FUZZ_CHECK((unsigned)h->family <= PROXYHDR_FAM_UNIX);
    FUZZ_CHECK((unsigned)h->transport <= PROXYHDR_TRANSPORT_DGRAM);
    if (h->has_addrs) {
        FUZZ_CHECK(h->command == PROXYHDR_CMD_PROXY);
        FUZZ_CHECK(h->family == PROXYHDR_FAM_INET || h->family == PROXYHDR_FAM_INET6);
        check_addr(h, h->src_addr, h->src_port, &h->src);
        check_addr(h, h->dst_addr, h->dst_port, &h->dst);
    } else {
        FUZZ_CHECK(h->src_addr[0] == '\0' && h->dst_addr[0] == '\0');
        FUZZ_CHECK(h->src_port == 0 && h->dst_port == 0);
        FUZZ_CHECK(h->src.ss_family == AF_UNSPEC && h->dst.ss_family == AF_UNSPEC);
    }
    check_text(h->ssl_version, sizeof(h->ssl_version));
    check_text(h->ssl_cipher, sizeof(h->ssl_cipher));
    check_text(h->ssl_cn, sizeof(h->ssl_cn));
    check_text(h->ssl_sig_alg, sizeof(h->ssl_sig_alg));
    check_text(h->ssl_key_alg, sizeof(h->ssl_key_alg));
    check_text(h->authority, sizeof(h->authority));
    check_text(h->alpn, sizeof(h->alpn));
    check_text(h->netns, sizeof(h->netns));
    FUZZ_CHECK(h->unique_id_len <= PROXYHDR_UNIQUE_ID_MAX);
    if (!h->ssl)
        FUZZ_CHECK(h->ssl_client == 0 && h->ssl_verify == 0 && h->ssl_version[0] == '\0' &&
                   h->ssl_cipher[0] == '\0' && h->ssl_cn[0] == '\0');
    if (h->version == 1) {
        FUZZ_CHECK(n >= 8 && n <= PROXYHDR_V1_MAX);
        FUZZ_CHECK(memcmp(data, "PROXY ", 6) == 0);
        FUZZ_CHECK(data[n - 2] == '\r' && data[n - 1] == '\n');
        FUZZ_CHECK(memchr(data, '\n', (size_t)n - 1) == NULL);
        FUZZ_CHECK(h->command == PROXYHDR_CMD_PROXY);
        FUZZ_CHECK(h->has_addrs == (h->family != PROXYHDR_FAM_UNSPEC));
        FUZZ_CHECK(!h->ssl && !h->crc_checked && h->unique_id_len == 0 && h->authority[0] == 0 &&
                   h->alpn[0] == 0 && h->tlv_unknown == 0 && h->truncated == 0);
    } else {
        FUZZ_CHECK(n >= 16 && n <= PROXYHDR_MAX_LEN);
        FUZZ_CHECK((size_t)n == 16u + ((unsigned)data[14] << 8 | data[15]));
        FUZZ_CHECK(data[12] >> 4 == 2 && (data[12] & 0x0f) == (unsigned)h->command);
        FUZZ_CHECK(data[13] >> 4 == (unsigned)h->family);
        FUZZ_CHECK((data[13] & 0x0f) == (unsigned)h->transport);
    }
    check_text(proxyhdr_describe(h, d, sizeof(d)), sizeof(d));
    FUZZ_CHECK(strlen(d) < sizeof(d) - 1); /* never cut at this size */
    cut = strlen(d) / 2 + 1;
    proxyhdr_describe(h, d, cut);
    FUZZ_CHECK(strlen(d) < cut);
    check_text(d, cut);
}

/* The same header, field by field (padding bytes are not compared). */
static bool same_hdr(const struct proxyhdr *a, const struct proxyhdr *b)
{
    return a->version == b->version && a->command == b->command && a->family == b->family &&
           a->transport == b->transport && a->has_addrs == b->has_addrs &&
           strcmp(a->src_addr, b->src_addr) == 0 && strcmp(a->dst_addr, b->dst_addr) == 0 &&
           a->src_port == b->src_port && a->dst_port == b->dst_port &&
           memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
           memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0 && a->ssl == b->ssl &&
           a->ssl_client == b->ssl_client && a->ssl_verify == b->ssl_verify &&
           strcmp(a->ssl_version, b->ssl_version) == 0 &&
           strcmp(a->ssl_cipher, b->ssl_cipher) == 0 && strcmp(a->ssl_cn, b->ssl_cn) == 0 &&
           strcmp(a->ssl_sig_alg, b->ssl_sig_alg) == 0 &&
           strcmp(a->ssl_key_alg, b->ssl_key_alg) == 0 && strcmp(a->authority, b->authority) == 0 &&
           strcmp(a->alpn, b->alpn) == 0 && strcmp(a->netns, b->netns) == 0 &&
           a->unique_id_len == b->unique_id_len &&
           memcmp(a->unique_id, b->unique_id, a->unique_id_len) == 0 &&
           a->crc_checked == b->crc_checked && a->truncated == b->truncated &&
           a->tlv_unknown == b->tlv_unknown;
}

static int parse(const uint8_t *data, size_t size, struct proxyhdr *h)
{
    char err[96];
    size_t i, n;
    int r;

    memset(err, 'x', sizeof(err));
    r = proxyhdr_parse(data, size, h, err, sizeof(err));
    FUZZ_CHECK(r >= -1);
    FUZZ_CHECK(r <= 0 || (size_t)r <= size);
    FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    n = strlen(err);
    FUZZ_CHECK((r == -1) == (n > 0));
    for (i = 0; i < n; i++)
        FUZZ_CHECK(err[i] >= 0x20 && err[i] <= 0x7e);
    if (r == 0)
        FUZZ_CHECK(size < PROXYHDR_MAX_LEN);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct proxyhdr h, h2;
    size_t probes[16], np = 0, i;
    uint32_t mix = 2166136261u;
    int r;

    r = parse(data, size, &h);
    if (r > 0) {
        check_hdr(&h, data, r);
        FUZZ_CHECK(parse(data, (size_t)r, &h2) == r);
        FUZZ_CHECK(same_hdr(&h, &h2));
    }

    /* Prefixes: the ends of every fixed part, the edges of the header,
     * and a few spread by the input's own hash. */
    for (i = 0; i < size && i < 64; i++)
        mix = (mix ^ data[i]) * 16777619u;
    probes[np++] = 1;
    probes[np++] = 6;
    probes[np++] = 12;
    probes[np++] = 13;
    probes[np++] = 14;
    probes[np++] = 16;
    probes[np++] = size / 2;
    probes[np++] = size - 1;
    if (r > 0) {
        probes[np++] = (size_t)r - 1;
        probes[np++] = (size_t)r + (size - (size_t)r) / 2;
    }
    while (np < sizeof(probes) / sizeof(probes[0])) {
        mix = mix * 1103515245u + 12345u;
        probes[np++] = size ? (mix >> 8) % size : 0;
    }
    for (i = 0; i < np; i++) {
        size_t k = probes[i];
        int rk;

        if (k >= size)
            continue;
        rk = parse(data, k, &h2);
        if (r > 0)
            FUZZ_CHECK(k < (size_t)r ? rk == 0 : rk == r);
        else if (r == 0)
            FUZZ_CHECK(rk == 0);
        else
            FUZZ_CHECK(rk <= 0);
    }
    return 0;
}
