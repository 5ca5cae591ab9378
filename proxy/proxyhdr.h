/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * proxyhdr: pure parser of the HAProxy PROXY protocol header (version 1
 * text line and version 2 binary block, with v2 TLVs), as sent by HAProxy
 * (send-proxy, send-proxy-v2[-ssl[-cn]]), AWS NLB and others in front of a
 * listener. The header precedes the SMTP bytes on an inbound connection;
 * it may only be believed from trusted peers (that check is the caller's).
 * Pure: no I/O, no allocation, no globals, no libuv; any thread.
 *
 * Incremental use on a non-blocking socket: keep the bytes read so far in
 * one buffer of at least PROXYHDR_MAX_LEN bytes and call proxyhdr_parse()
 * on the whole buffer after each read. 0 means "read more and call again";
 * it is returned only while the bytes so far are a possible beginning of
 * a valid header, so anything that cannot be one (a client speaking SMTP,
 * a v1 line without CRLF within 107 bytes, a v2 length past the limit) is
 * refused on the read that brings the first bad byte. A positive result n
 * is the header's length: buf[n..] (possibly already read) is SMTP and
 * belongs to the session. Never read more than PROXYHDR_MAX_LEN bytes
 * before a verdict: the parser returns one by then.
 */
#ifndef SLUICE_PROXYHDR_H
#define SLUICE_PROXYHDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>
#include <sys/socket.h>

#define PROXYHDR_V1_MAX 107 /* the spec's longest v1 line, CRLF included */
/*
 * Longest v2 header accepted (16-byte fixed part included). The spec
 * allows 16 + 65535, but everything sluice uses fits easily: the largest
 * address block (AF_UNIX, 216) plus every TLV we read at its own bound
 * (SSL with version, cipher, CN, algorithms; a 128-byte unique id; a
 * 255-byte authority; ALPN; CRC32C) stays under ~700 bytes, and cloud
 * TLVs (AWS VPC endpoint id, Azure link id, GCP PSC id) are a few dozen.
 * Keeping the cap small keeps the caller's pre-SMTP buffer small and stops
 * a peer from making us hold 64 KiB before deciding.
 */
#define PROXYHDR_MAX_LEN 1024

#define PROXYHDR_ADDR_MAX 46       /* INET6_ADDRSTRLEN */
#define PROXYHDR_UNIQUE_ID_MAX 128 /* the spec's bound for PP2_TYPE_UNIQUE_ID */

enum proxyhdr_cmd {
    PROXYHDR_CMD_LOCAL = 0, /* v2 LOCAL: the proxy's own connection (health check) */
    PROXYHDR_CMD_PROXY = 1, /* relayed for a client (v1 lines are always this) */
};

enum proxyhdr_family {
    PROXYHDR_FAM_UNSPEC = 0, /* v1 UNKNOWN, v2 AF_UNSPEC */
    PROXYHDR_FAM_INET = 1,   /* v1 TCP4, v2 AF_INET */
    PROXYHDR_FAM_INET6 = 2,  /* v1 TCP6, v2 AF_INET6 */
    PROXYHDR_FAM_UNIX = 3,   /* v2 AF_UNIX: paths are skipped, not reported */
};

enum proxyhdr_transport {
    PROXYHDR_TRANSPORT_UNSPEC = 0,
    PROXYHDR_TRANSPORT_STREAM = 1, /* v1 TCP4/TCP6 */
    PROXYHDR_TRANSPORT_DGRAM = 2,
};

/* PP2_CLIENT_* bits of the SSL TLV's client field. */
#define PROXYHDR_SSL_CLIENT_SSL 0x01       /* client came over TLS */
#define PROXYHDR_SSL_CLIENT_CERT_CONN 0x02 /* presented a certificate on this connection */
#define PROXYHDR_SSL_CLIENT_CERT_SESS 0x04 /* ... on this TLS session (resumption) */

/* Bits of proxyhdr.truncated: which text fields were cut to fit. */
#define PROXYHDR_TRUNC_SSL_VERSION 0x01
#define PROXYHDR_TRUNC_SSL_CIPHER 0x02
#define PROXYHDR_TRUNC_SSL_CN 0x04
#define PROXYHDR_TRUNC_SSL_SIG_ALG 0x08
#define PROXYHDR_TRUNC_SSL_KEY_ALG 0x10
#define PROXYHDR_TRUNC_AUTHORITY 0x20
#define PROXYHDR_TRUNC_ALPN 0x40
#define PROXYHDR_TRUNC_NETNS 0x80

/*
 * The parsed header. Filled by proxyhdr_parse() only when it returns > 0
 * (it is cleared on every call). Every char array is NUL-terminated and
 * holds only printable ASCII (0x20..0x7e): TLV texts come from the peer,
 * so other bytes are replaced by '?' and over-long values are cut (the
 * matching PROXYHDR_TRUNC_* bit is set). Empty string = absent.
 */
struct proxyhdr {
    int version;                       /* 1 or 2 */
    enum proxyhdr_cmd command;         /* see has_addrs: PROXY alone does not imply addresses */
    enum proxyhdr_family family;       /* as declared, even when no addresses follow */
    enum proxyhdr_transport transport; /* as declared */
    /*
     * The one thing a caller must look at: true only for PROXY with an
     * INET/INET6 family (v1 TCP4/TCP6). Then src/dst below are the real
     * client and the address it connected to. When false (v2 LOCAL, v1
     * UNKNOWN, v2 UNSPEC or UNIX) keep the connection's own addresses, as
     * the spec says; the fields below are then zero/empty.
     */
    bool has_addrs;
    char src_addr[PROXYHDR_ADDR_MAX]; /* canonical inet_ntop() text */
    char dst_addr[PROXYHDR_ADDR_MAX];
    uint16_t src_port; /* host order */
    uint16_t dst_port;
    struct sockaddr_storage src; /* sockaddr_in/in6 (port in network order); */
    struct sockaddr_storage dst; /* ss_family AF_UNSPEC when !has_addrs */

    /* v2 TLVs (all absent for v1). */
    bool ssl;             /* PP2_TYPE_SSL present: the fields below are meaningful */
    uint8_t ssl_client;   /* PROXYHDR_SSL_CLIENT_* bits */
    uint32_t ssl_verify;  /* 0: the client's certificate was verified (if one was sent) */
    char ssl_version[32]; /* e.g. "TLSv1.3" */
    char ssl_cipher[64];  /* e.g. "TLS_AES_256_GCM_SHA384" */
    char ssl_cn[65];      /* client certificate's subject CN (X.509 bounds it at 64) */
    char ssl_sig_alg[32]; /* certificate signature algorithm, e.g. "SHA256" */
    char ssl_key_alg[32]; /* certificate key algorithm, e.g. "RSA2048" */
    char authority[256];  /* PP2_TYPE_AUTHORITY: the client's SNI host name */
    char alpn[64];        /* PP2_TYPE_ALPN: the negotiated protocol */
    char netns[64];       /* PP2_TYPE_NETNS: the proxy's network namespace */
    unsigned char unique_id[PROXYHDR_UNIQUE_ID_MAX]; /* PP2_TYPE_UNIQUE_ID: opaque */
    size_t unique_id_len;                            /* 0: absent */
    bool crc_checked;     /* a PP2_TYPE_CRC32C TLV was present and matched */
    unsigned truncated;   /* PROXYHDR_TRUNC_* */
    unsigned tlv_unknown; /* number of TLVs of types we do not read (skipped) */
};

/*
 * Parse the header at the start of buf[0..len).
 * Returns > 0: the header is complete and valid; it is that many bytes
 *              long (never more than len); *out holds it.
 *           0: incomplete but valid so far: read more, call again with
 *              the whole buffer.
 *          -1: not a valid PROXY header: drop the connection. err (if
 *              errlen > 0) gets one short printable line for the log,
 *              e.g. "bad v2 signature", "v1 line too long".
 * err is set to "" for results >= 0. Deterministic: the result for a
 * buffer depends only on its bytes, and a valid header followed by any
 * bytes gives the same n.
 */
int proxyhdr_parse(const unsigned char *buf, size_t len, struct proxyhdr *out, char *err,
                   size_t errlen);

/*
 * One printable line naming a parsed header, for the log, e.g.
 * "v2 PROXY tcp6 [2001:db8::1]:4711 -> [2001:db8::2]:25 tls=TLSv1.3
 * cipher=... cn=... sni=... alpn=... uid=<hex>" or "v2 LOCAL".
 * Writes at most size bytes (always NUL-terminated when size > 0) and
 * returns buf.
 */
const char *proxyhdr_describe(const struct proxyhdr *h, char *buf, size_t size);

/* CRC32C (Castagnoli, as in iSCSI/SCTP), continuing from crc (0 to start). */
uint32_t proxyhdr_crc32c(uint32_t crc, const unsigned char *p, size_t n);

#endif
