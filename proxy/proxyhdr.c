/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * proxyhdr: the PROXY protocol header parser (HAProxy's proxy-protocol.txt,
 * versions 1 and 2). See proxyhdr.h for the contract.
 *
 * Shape: the first byte picks the version ('P' for the v1 text line, CR
 * for the v2 signature); anything else is refused at once. Both versions
 * are checked as far as the bytes go on every call, so that "need more"
 * (0) is only ever answered for a possible prefix of a valid header, and
 * once a prefix is refused every longer buffer is refused too. The parser
 * keeps no state between calls: the caller passes the whole buffer again,
 * which costs at most PROXYHDR_MAX_LEN bytes of re-scanning per read.
 *
 * Strictness is deliberate: the header decides which client address the
 * rest of sluice (access rules, DNSBL, SPF, logs) believes, so anything
 * the spec does not allow is refused rather than guessed at.
 */
#include "proxyhdr.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const unsigned char proxyhdr__v1sig[6] = {'P', 'R', 'O', 'X', 'Y', ' '};
static const unsigned char proxyhdr__v2sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                                  0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

#define V2_FIXED 16 /* signature, ver/cmd, fam/proto, length */

/* v2 TLV types (spec section 2.2.x). */
enum {
    PP2_TYPE_ALPN = 0x01,
    PP2_TYPE_AUTHORITY = 0x02,
    PP2_TYPE_CRC32C = 0x03,
    PP2_TYPE_NOOP = 0x04,
    PP2_TYPE_UNIQUE_ID = 0x05,
    PP2_TYPE_SSL = 0x20,
    PP2_SUBTYPE_SSL_VERSION = 0x21,
    PP2_SUBTYPE_SSL_CN = 0x22,
    PP2_SUBTYPE_SSL_CIPHER = 0x23,
    PP2_SUBTYPE_SSL_SIG_ALG = 0x24,
    PP2_SUBTYPE_SSL_KEY_ALG = 0x25,
    PP2_TYPE_NETNS = 0x30,
};

static int proxyhdr__fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int proxyhdr__fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- CRC32C ---------------------------------------------------------- */

/* Reflected Castagnoli polynomial. Bitwise: headers are at most 1 KiB and
 * are checked once per connection, so a table buys nothing. */
#define CRC32C_POLY 0x82f63b78u

uint32_t proxyhdr_crc32c(uint32_t crc, const unsigned char *p, size_t n)
{
    size_t i;
    int k;

    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (CRC32C_POLY & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* ---- version 1 ------------------------------------------------------- */

enum v1_field { V1_PROTO, V1_SRC, V1_DST, V1_SPORT, V1_DPORT, V1_NFIELDS };

static const char *const proxyhdr__v1names[V1_NFIELDS] = {
    "protocol", "source address", "destination address", "source port", "destination port"};

/*
 * Can tok[0..n) (digits and dots) still grow into a dotted quad the way
 * inet_pton() takes it: at most four parts of 1..3 digits, each <= 255,
 * no leading zero? Lets "1111" or "1..2" be refused before the space.
 */
static bool proxyhdr__v1_ipv4_prefix_ok(const unsigned char *tok, size_t n)
{
    unsigned parts = 1, digits = 0, value = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        if (tok[i] == '.') {
            if (digits == 0 || ++parts > 4)
                return false;
            digits = value = 0;
            continue;
        }
        if (digits == 1 && value == 0)
            return false;
        value = value * 10 + (unsigned)(tok[i] - '0');
        if (++digits > 3 || value > 255)
            return false;
    }
    return true;
}

/*
 * The same for IPv6 text (hex digits, ':' and '.' already checked): no
 * group of more than 4 characters, no ":::", at most one "::". Only what
 * no continuation can repair; inet_pton() has the last word.
 */
static bool proxyhdr__v1_ipv6_prefix_ok(const unsigned char *tok, size_t n)
{
    unsigned run = 0, gaps = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        if (tok[i] == ':' || tok[i] == '.') {
            run = 0;
            if (tok[i] == ':' && i > 0 && tok[i - 1] == ':') {
                if (++gaps > 1 || (i > 1 && tok[i - 2] == ':'))
                    return false;
            }
        } else if (++run > 4) {
            return false;
        }
    }
    return true;
}

/*
 * Is tok[0..n) acceptable as field f? complete: the token is followed by
 * its delimiter; otherwise it may still grow, and only what can already
 * be known to be wrong is refused.
 */
static bool proxyhdr__v1_token_ok(enum v1_field f, int af, const unsigned char *tok, size_t n,
                                  bool complete)
{
    static const char *const protos[] = {"TCP4", "TCP6", "UNKNOWN"};
    char text[PROXYHDR_ADDR_MAX];
    unsigned char bin[16];
    unsigned long v = 0;
    size_t i;

    switch (f) {
    case V1_PROTO:
        for (i = 0; i < sizeof(protos) / sizeof(protos[0]); i++) {
            size_t pl = strlen(protos[i]);

            if (complete ? n == pl && memcmp(tok, protos[i], n) == 0
                         : n <= pl && memcmp(tok, protos[i], n) == 0)
                return true;
        }
        return false;
    case V1_SRC:
    case V1_DST:
        /* inet_pton() judges complete tokens; before that only the
         * character set and length can be judged. */
        if (n > (af == AF_INET ? 15u : 45u))
            return false;
        for (i = 0; i < n; i++) {
            unsigned char c = tok[i];
            bool ok = (c >= '0' && c <= '9') || c == '.';

            if (af == AF_INET6)
                ok = ok || c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
            if (!ok)
                return false;
        }
        if (!complete)
            return af == AF_INET6 ? proxyhdr__v1_ipv6_prefix_ok(tok, n)
                                  : proxyhdr__v1_ipv4_prefix_ok(tok, n);
        memcpy(text, tok, n);
        text[n] = '\0';
        return inet_pton(af, text, bin) == 1;
    case V1_SPORT:
    case V1_DPORT:
        /* Plain decimal 0..65535: no sign, no leading zero but "0". */
        if (n > 5 || (n > 1 && tok[0] == '0') || (complete && n == 0))
            return false;
        for (i = 0; i < n; i++) {
            if (tok[i] < '0' || tok[i] > '9')
                return false;
            v = v * 10 + (unsigned long)(tok[i] - '0');
        }
        return v <= 65535;
    default:
        return false;
    }
}

static uint16_t proxyhdr__v1_port(const unsigned char *tok, size_t n)
{
    unsigned v = 0;
    size_t i;

    for (i = 0; i < n; i++)
        v = v * 10 + (unsigned)(tok[i] - '0');
    return (uint16_t)v;
}

/* Fill src/dst from validated v1 tokens; re-rendered so that the text is
 * canonical (lower case, compressed) whatever the proxy wrote. */
static void proxyhdr__set_addr(struct proxyhdr *out, int af, bool is_src, const void *bin,
                               uint16_t port)
{
    struct sockaddr_storage *ss = is_src ? &out->src : &out->dst;
    char *text = is_src ? out->src_addr : out->dst_addr;

    memset(ss, 0, sizeof(*ss));
    if (af == AF_INET) {
        struct sockaddr_in sin;

        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons(port);
        memcpy(&sin.sin_addr, bin, 4);
        memcpy(ss, &sin, sizeof(sin));
    } else {
        struct sockaddr_in6 sin6;

        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(port);
        memcpy(&sin6.sin6_addr, bin, 16);
        memcpy(ss, &sin6, sizeof(sin6));
    }
    if (inet_ntop(af, bin, text, PROXYHDR_ADDR_MAX) == NULL)
        text[0] = '\0'; /* cannot happen with a 46-byte buffer */
    if (is_src)
        out->src_port = port;
    else
        out->dst_port = port;
}

/*
 * "PROXY UNKNOWN": the rest of the line up to CRLF is ignored (spec
 * 2.1), but it must still be printable and fit the 107 bytes.
 */
static int proxyhdr__v1_rest(const unsigned char *b, size_t len, size_t pos, char *err,
                             size_t errlen)
{
    for (; pos < len && pos < PROXYHDR_V1_MAX; pos++) {
        if (b[pos] == '\r') {
            if (pos + 1 >= PROXYHDR_V1_MAX) /* its LF would be byte 108 */
                return proxyhdr__fail(err, errlen, "v1 line too long");
            if (pos + 1 == len)
                return 0;
            if (b[pos + 1] != '\n')
                return proxyhdr__fail(err, errlen, "v1 CR without LF");
            return (int)(pos + 2);
        }
        if (b[pos] < 0x20 || b[pos] > 0x7e)
            return proxyhdr__fail(err, errlen, "v1 control or 8-bit byte 0x%02x", b[pos]);
    }
    if (pos >= PROXYHDR_V1_MAX)
        return proxyhdr__fail(err, errlen, "v1 line too long");
    return 0;
}

static int proxyhdr__v1(const unsigned char *b, size_t len, struct proxyhdr *out, char *err,
                        size_t errlen)
{
    const unsigned char *tok[V1_NFIELDS];
    size_t tlen[V1_NFIELDS];
    size_t pos = sizeof(proxyhdr__v1sig), end;
    int af = AF_INET, f;
    unsigned char bin[16];

    for (f = 0; f < V1_NFIELDS; f++) {
        bool last = f == V1_DPORT;

        /* A token ends at SP or CR; any other byte belongs to it and is
         * judged by the character checks. */
        for (end = pos; end < len && end < PROXYHDR_V1_MAX; end++)
            if (b[end] == ' ' || b[end] == '\r')
                break;
        tok[f] = b + pos;
        tlen[f] = end - pos;
        if (end == len || end >= PROXYHDR_V1_MAX) {
            if (!proxyhdr__v1_token_ok((enum v1_field)f, af, tok[f], tlen[f], false))
                return proxyhdr__fail(err, errlen, "v1 bad %s", proxyhdr__v1names[f]);
            if (end >= PROXYHDR_V1_MAX)
                return proxyhdr__fail(err, errlen, "v1 line too long");
            return 0;
        }
        if (!proxyhdr__v1_token_ok((enum v1_field)f, af, tok[f], tlen[f], true))
            return proxyhdr__fail(err, errlen, "v1 bad %s", proxyhdr__v1names[f]);
        if (f == V1_PROTO) {
            if (tlen[f] == 7) /* UNKNOWN */
                break;
            af = tok[f][3] == '4' ? AF_INET : AF_INET6;
        }
        if (b[end] != (last ? '\r' : ' '))
            return proxyhdr__fail(err, errlen, "v1 %s after the %s", last ? "no CRLF" : "line ends",
                                  proxyhdr__v1names[f]);
        pos = end + (last ? 0 : 1);
    }

    if (f == V1_PROTO) {
        /* UNKNOWN: the delimiter after it is SP or CR, both fine. */
        int r = proxyhdr__v1_rest(b, len, end, err, errlen);

        if (r <= 0)
            return r;
        out->version = 1;
        out->command = PROXYHDR_CMD_PROXY;
        out->family = PROXYHDR_FAM_UNSPEC;
        out->transport = PROXYHDR_TRANSPORT_UNSPEC;
        return r;
    }

    /* pos is at the CR after the destination port. */
    if (pos + 1 >= PROXYHDR_V1_MAX)
        return proxyhdr__fail(err, errlen, "v1 line too long");
    if (pos + 1 == len)
        return 0;
    if (b[pos + 1] != '\n')
        return proxyhdr__fail(err, errlen, "v1 CR without LF");

    out->version = 1;
    out->command = PROXYHDR_CMD_PROXY;
    out->family = af == AF_INET ? PROXYHDR_FAM_INET : PROXYHDR_FAM_INET6;
    out->transport = PROXYHDR_TRANSPORT_STREAM;
    out->has_addrs = true;
    for (f = V1_SRC; f <= V1_DST; f++) {
        char text[PROXYHDR_ADDR_MAX];
        const unsigned char *ptok = tok[f == V1_SRC ? V1_SPORT : V1_DPORT];
        size_t plen = tlen[f == V1_SRC ? V1_SPORT : V1_DPORT];

        memcpy(text, tok[f], tlen[f]);
        text[tlen[f]] = '\0';
        if (inet_pton(af, text, bin) != 1) /* checked above; keeps the compiler honest */
            return proxyhdr__fail(err, errlen, "v1 bad %s", proxyhdr__v1names[f]);
        proxyhdr__set_addr(out, af, f == V1_SRC, bin, proxyhdr__v1_port(ptok, plen));
    }
    return (int)(pos + 2);
}

/* ---- version 2 ------------------------------------------------------- */

static uint16_t proxyhdr__be16(const unsigned char *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t proxyhdr__be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Copy a peer-supplied text into dst[size]: printable ASCII only ('?' for
 * anything else, NUL included), cut to fit; returns whether it was cut. */
static bool proxyhdr__copy_text(char *dst, size_t size, const unsigned char *src, size_t n)
{
    size_t i, m = n < size - 1 ? n : size - 1;

    for (i = 0; i < m; i++)
        dst[i] = src[i] >= 0x20 && src[i] <= 0x7e ? (char)src[i] : '?';
    dst[m] = '\0';
    return m < n;
}

/* Address block size by family nibble (spec 2.2: 12, 36, 216). */
static size_t proxyhdr__v2_addrlen(unsigned fam)
{
    switch (fam) {
    case PROXYHDR_FAM_INET:
        return 12;
    case PROXYHDR_FAM_INET6:
        return 36;
    case PROXYHDR_FAM_UNIX:
        return 216;
    default:
        return 0;
    }
}

/* The sub-TLVs of PP2_TYPE_SSL, in v[0..n) after client and verify. */
static int proxyhdr__v2_ssl(const unsigned char *v, size_t n, struct proxyhdr *out, char *err,
                            size_t errlen)
{
    size_t off = 0;

    while (off < n) {
        unsigned type;
        size_t l;
        const unsigned char *val;

        if (n - off < 3)
            return proxyhdr__fail(err, errlen, "v2 SSL sub-TLV header truncated");
        type = v[off];
        l = proxyhdr__be16(v + off + 1);
        if (l > n - off - 3)
            return proxyhdr__fail(err, errlen, "v2 SSL sub-TLV 0x%02x runs past the SSL TLV", type);
        val = v + off + 3;
        switch (type) {
        case PP2_SUBTYPE_SSL_VERSION:
            if (proxyhdr__copy_text(out->ssl_version, sizeof(out->ssl_version), val, l))
                out->truncated |= PROXYHDR_TRUNC_SSL_VERSION;
            break;
        case PP2_SUBTYPE_SSL_CN:
            if (proxyhdr__copy_text(out->ssl_cn, sizeof(out->ssl_cn), val, l))
                out->truncated |= PROXYHDR_TRUNC_SSL_CN;
            break;
        case PP2_SUBTYPE_SSL_CIPHER:
            if (proxyhdr__copy_text(out->ssl_cipher, sizeof(out->ssl_cipher), val, l))
                out->truncated |= PROXYHDR_TRUNC_SSL_CIPHER;
            break;
        case PP2_SUBTYPE_SSL_SIG_ALG:
            if (proxyhdr__copy_text(out->ssl_sig_alg, sizeof(out->ssl_sig_alg), val, l))
                out->truncated |= PROXYHDR_TRUNC_SSL_SIG_ALG;
            break;
        case PP2_SUBTYPE_SSL_KEY_ALG:
            if (proxyhdr__copy_text(out->ssl_key_alg, sizeof(out->ssl_key_alg), val, l))
                out->truncated |= PROXYHDR_TRUNC_SSL_KEY_ALG;
            break;
        default:
            out->tlv_unknown++; /* the spec tells receivers to skip unknown types */
            break;
        }
        off += 3 + l;
    }
    return 0;
}

/* A bit of its own for each TLV type that may appear once; 0 for NOOP
 * (padding, repeatable) and types we skip. */
static unsigned proxyhdr__tlv_bit(unsigned type)
{
    switch (type) {
    case PP2_TYPE_ALPN:
    case PP2_TYPE_AUTHORITY:
    case PP2_TYPE_CRC32C:
    case PP2_TYPE_UNIQUE_ID:
        return 1u << type;
    case PP2_TYPE_SSL:
        return 1u << 6;
    case PP2_TYPE_NETNS:
        return 1u << 7;
    default:
        return 0;
    }
}

/*
 * The TLVs in b[off..n) of a complete header b[0..n). Types we read may
 * appear once each: two different SNI names or unique ids would leave the
 * choice to whichever parser reads the header, so they are refused.
 */
static int proxyhdr__v2_tlvs(const unsigned char *b, size_t n, size_t off, struct proxyhdr *out,
                             char *err, size_t errlen)
{
    size_t crc_at = 0;
    unsigned seen = 0; /* proxyhdr__tlv_bit() of the types met so far */

    while (off < n) {
        unsigned type, bit;
        size_t l;
        const unsigned char *val;

        if (n - off < 3)
            return proxyhdr__fail(err, errlen, "v2 TLV header truncated");
        type = b[off];
        l = proxyhdr__be16(b + off + 1);
        if (l > n - off - 3)
            return proxyhdr__fail(err, errlen, "v2 TLV 0x%02x runs past the end", type);
        val = b + off + 3;
        bit = proxyhdr__tlv_bit(type);
        if (bit != 0) {
            if (seen & bit)
                return proxyhdr__fail(err, errlen, "v2 TLV 0x%02x repeated", type);
            seen |= bit;
        }
        switch (type) {
        case PP2_TYPE_ALPN:
            if (proxyhdr__copy_text(out->alpn, sizeof(out->alpn), val, l))
                out->truncated |= PROXYHDR_TRUNC_ALPN;
            break;
        case PP2_TYPE_AUTHORITY:
            if (proxyhdr__copy_text(out->authority, sizeof(out->authority), val, l))
                out->truncated |= PROXYHDR_TRUNC_AUTHORITY;
            break;
        case PP2_TYPE_CRC32C:
            if (l != 4)
                return proxyhdr__fail(err, errlen, "v2 CRC32C TLV length %zu, not 4", l);
            crc_at = off + 3;
            break;
        case PP2_TYPE_NOOP:
            break;
        case PP2_TYPE_UNIQUE_ID:
            if (l > PROXYHDR_UNIQUE_ID_MAX)
                return proxyhdr__fail(err, errlen, "v2 unique id of %zu bytes, over 128", l);
            memcpy(out->unique_id, val, l);
            out->unique_id_len = l;
            break;
        case PP2_TYPE_SSL:
            if (l < 5)
                return proxyhdr__fail(err, errlen, "v2 SSL TLV of %zu bytes, under 5", l);
            out->ssl = true;
            out->ssl_client = val[0];
            out->ssl_verify = proxyhdr__be32(val + 1);
            if (proxyhdr__v2_ssl(val + 5, l - 5, out, err, errlen) < 0)
                return -1;
            break;
        case PP2_TYPE_NETNS:
            if (proxyhdr__copy_text(out->netns, sizeof(out->netns), val, l))
                out->truncated |= PROXYHDR_TRUNC_NETNS;
            break;
        default:
            out->tlv_unknown++;
            break;
        }
        off += 3 + l;
    }

    if (crc_at != 0) {
        /* Over the whole header with the checksum's own bytes as zeros. */
        static const unsigned char zero[4];
        uint32_t crc = proxyhdr_crc32c(0, b, crc_at);

        crc = proxyhdr_crc32c(crc, zero, sizeof(zero));
        crc = proxyhdr_crc32c(crc, b + crc_at + 4, n - crc_at - 4);
        if (crc != proxyhdr__be32(b + crc_at))
            return proxyhdr__fail(err, errlen, "v2 CRC32C mismatch (got %08x, computed %08x)",
                                  (unsigned)proxyhdr__be32(b + crc_at), (unsigned)crc);
        out->crc_checked = true;
    }
    return 0;
}

static int proxyhdr__v2(const unsigned char *b, size_t len, struct proxyhdr *out, char *err,
                        size_t errlen)
{
    unsigned ver, cmd, fam, proto;
    size_t plen, total, alen;

    /* The caller made sure the available part of the signature matches. */
    if (len < sizeof(proxyhdr__v2sig) + 1)
        return 0;
    ver = b[12] >> 4;
    cmd = b[12] & 0x0f;
    if (ver != 2)
        return proxyhdr__fail(err, errlen, "v2 unknown version %u", ver);
    if (cmd > PROXYHDR_CMD_PROXY)
        return proxyhdr__fail(err, errlen, "v2 unknown command %u", cmd);
    if (len < 14)
        return 0;
    /* Only the combinations the spec lists; it says receivers must refuse
     * the others (e.g. AF_INET with an unspecified transport). */
    fam = b[13] >> 4;
    proto = b[13] & 0x0f;
    if (fam > PROXYHDR_FAM_UNIX || proto > PROXYHDR_TRANSPORT_DGRAM ||
        (fam == PROXYHDR_FAM_UNSPEC) != (proto == PROXYHDR_TRANSPORT_UNSPEC))
        return proxyhdr__fail(err, errlen, "v2 unknown family/protocol 0x%02x", b[13]);
    if (len < V2_FIXED)
        return 0;
    plen = proxyhdr__be16(b + 14);
    total = V2_FIXED + plen;
    if (total > PROXYHDR_MAX_LEN)
        return proxyhdr__fail(err, errlen, "v2 length %zu past limit %d", plen,
                              PROXYHDR_MAX_LEN - V2_FIXED);
    /* The family fixes the address block even under LOCAL, where it is
     * skipped: TLVs start after it either way. */
    alen = proxyhdr__v2_addrlen(fam);
    if (plen < alen)
        return proxyhdr__fail(err, errlen, "v2 length %zu short of the %zu-byte address block",
                              plen, alen);
    if (len < total)
        return 0;

    out->version = 2;
    out->command = (enum proxyhdr_cmd)cmd;
    out->family = (enum proxyhdr_family)fam;
    out->transport = (enum proxyhdr_transport)proto;
    if (cmd == PROXYHDR_CMD_PROXY && (fam == PROXYHDR_FAM_INET || fam == PROXYHDR_FAM_INET6)) {
        const unsigned char *a = b + V2_FIXED;
        int af = fam == PROXYHDR_FAM_INET ? AF_INET : AF_INET6;
        size_t al = fam == PROXYHDR_FAM_INET ? 4 : 16;

        out->has_addrs = true;
        proxyhdr__set_addr(out, af, true, a, proxyhdr__be16(a + 2 * al));
        proxyhdr__set_addr(out, af, false, a + al, proxyhdr__be16(a + 2 * al + 2));
    }
    /* AF_UNIX paths are skipped: sluice's access rules and logs are about
     * IP clients, so such a connection keeps its own addresses (as for
     * LOCAL and UNSPEC). */
    if (proxyhdr__v2_tlvs(b, total, V2_FIXED + alen, out, err, errlen) < 0)
        return -1;
    return (int)total;
}

/* ---- entry points ---------------------------------------------------- */

int proxyhdr_parse(const unsigned char *buf, size_t len, struct proxyhdr *out, char *err,
                   size_t errlen)
{
    const unsigned char *sig;
    size_t siglen, m;
    int r;

    memset(out, 0, sizeof(*out));
    if (errlen > 0)
        err[0] = '\0';
    if (len == 0)
        return 0;
    if (buf[0] == 'P') {
        sig = proxyhdr__v1sig;
        siglen = sizeof(proxyhdr__v1sig);
    } else if (buf[0] == 0x0d) {
        sig = proxyhdr__v2sig;
        siglen = sizeof(proxyhdr__v2sig);
    } else {
        /* The common mistake: a client (or a proxy without send-proxy)
         * speaking SMTP. Refused on its first byte, not waited on. */
        return proxyhdr__fail(err, errlen, "not a PROXY header (first byte 0x%02x)", buf[0]);
    }
    m = len < siglen ? len : siglen;
    if (memcmp(buf, sig, m) != 0)
        return proxyhdr__fail(err, errlen, "bad %s signature", siglen == 6 ? "v1" : "v2");
    if (len <= siglen)
        return 0;
    r = siglen == 6 ? proxyhdr__v1(buf, len, out, err, errlen)
                    : proxyhdr__v2(buf, len, out, err, errlen);
    if (r <= 0) {
        /* Nothing half-filled is left behind for a careless caller. */
        memset(out, 0, sizeof(*out));
        if (r == 0 && errlen > 0)
            err[0] = '\0';
    }
    return r;
}

static const char *proxyhdr__fam_name(const struct proxyhdr *h)
{
    static const char *const names[] = {"unspec", "inet", "inet6", "unix"};
    unsigned f = (unsigned)h->family;

    if (h->version == 1)
        return f == PROXYHDR_FAM_INET ? "tcp4" : f == PROXYHDR_FAM_INET6 ? "tcp6" : "unknown";
    return f < 4 ? names[f] : "?";
}

/* Append to buf[size] at *used, keeping it NUL-terminated when cut. */
static void proxyhdr__put(char *buf, size_t size, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void proxyhdr__put(char *buf, size_t size, size_t *used, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*used >= size)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf + *used, size - *used, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *used = (size_t)n >= size - *used ? size : *used + (size_t)n;
}

const char *proxyhdr_describe(const struct proxyhdr *h, char *buf, size_t size)
{
    size_t used = 0, i;

    if (size == 0)
        return buf;
    buf[0] = '\0';
    proxyhdr__put(buf, size, &used, "v%d %s %s", h->version,
                  h->command == PROXYHDR_CMD_PROXY ? "PROXY" : "LOCAL", proxyhdr__fam_name(h));
    if (h->has_addrs) {
        bool v6 = h->family == PROXYHDR_FAM_INET6;

        proxyhdr__put(buf, size, &used, v6 ? " [%s]:%u -> [%s]:%u" : " %s:%u -> %s:%u", h->src_addr,
                      (unsigned)h->src_port, h->dst_addr, (unsigned)h->dst_port);
    }
    if (h->ssl) {
        proxyhdr__put(buf, size, &used, " tls=%s client=0x%02x verify=%u",
                      h->ssl_version[0] ? h->ssl_version : "?", (unsigned)h->ssl_client,
                      (unsigned)h->ssl_verify);
        if (h->ssl_cipher[0])
            proxyhdr__put(buf, size, &used, " cipher=%s", h->ssl_cipher);
        if (h->ssl_cn[0])
            proxyhdr__put(buf, size, &used, " cn=\"%s\"", h->ssl_cn);
    }
    if (h->authority[0])
        proxyhdr__put(buf, size, &used, " sni=%s", h->authority);
    if (h->alpn[0])
        proxyhdr__put(buf, size, &used, " alpn=%s", h->alpn);
    if (h->unique_id_len > 0) {
        proxyhdr__put(buf, size, &used, " uid=");
        for (i = 0; i < h->unique_id_len; i++)
            proxyhdr__put(buf, size, &used, "%02x", (unsigned)h->unique_id[i]);
    }
    if (h->crc_checked)
        proxyhdr__put(buf, size, &used, " crc=ok");
    return buf;
}
