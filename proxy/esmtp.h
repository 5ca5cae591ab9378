/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * esmtp: the service extensions the upstream client uses, as pure
 * functions: which capabilities an EHLO reply announces, and the lines of
 * Postfix's XCLIENT and XFORWARD that tell the upstream MTA who the real
 * client is (attribute values in RFC 1891 xtext). Replies in, lines out
 * (without CRLF); no I/O. The upstream client decides when to send them.
 *
 * Ownership: the caller owns every buf_t; functions append to them.
 * Threads: any.
 */
#ifndef SLUICE_ESMTP_H
#define SLUICE_ESMTP_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "reply.h"

/* Capability bits (upstream.h's UP_CAP_* are the same values). */
enum esmtp_cap {
    ESMTP_PIPELINING = 1 << 0,
    ESMTP_8BITMIME = 1 << 1,
    ESMTP_SIZE = 1 << 2,
    ESMTP_DSN = 1 << 3,
    ESMTP_SMTPUTF8 = 1 << 4,
    ESMTP_ENHANCED = 1 << 5, /* ENHANCEDSTATUSCODES */
    ESMTP_STARTTLS = 1 << 6,
    ESMTP_XCLIENT = 1 << 7,
    ESMTP_XFORWARD = 1 << 8,
    ESMTP_CHUNKING = 1 << 9,
    ESMTP_BINARYMIME = 1 << 10, /* RFC 3030; only with CHUNKING */
};

/* The capabilities an EHLO reply announces; *size_limit gets SIZE's
 * argument (0 when absent or without one). */
unsigned esmtp_caps(const struct smtp_reply *ehlo, unsigned long long *size_limit);

/* The attributes an EHLO reply's "XCLIENT a b c" lists (0 when it does
 * not offer XCLIENT). */
enum {
    ESMTP_XA_NAME = 1u << 0,
    ESMTP_XA_ADDR = 1u << 1,
    ESMTP_XA_PORT = 1u << 2,
    ESMTP_XA_PROTO = 1u << 3,
    ESMTP_XA_HELO = 1u << 4,
    ESMTP_XA_LOGIN = 1u << 5,
    ESMTP_XA_REVERSE_NAME = 1u << 6,
};
unsigned esmtp_xclient_attrs(const struct smtp_reply *ehlo);
/* The same bits for "XFORWARD a b c" (NAME ADDR PORT PROTO HELO). */
unsigned esmtp_xforward_attrs(const struct smtp_reply *ehlo);

/* Who the client is, as the upstream is told. */
struct esmtp_client {
    const char *addr; /* "192.0.2.1" / "2001:db8::1" (sent with IPV6:) */
    int port;
    const char *name;  /* reverse name; "" is sent as [UNAVAILABLE] */
    const char *helo;  /* "" until known */
    bool esmtp;        /* PROTO=ESMTP, else SMTP */
    const char *login; /* SMTP AUTH login name, NULL or "" when none */
    /* The connection already carried an XCLIENT (reused for another
     * client): attributes XCLIENT leaves unchanged when absent (HELO,
     * LOGIN, and REVERSE_NAME, which Postfix takes from a real NAME but
     * keeps on NAME=[UNAVAILABLE]) are sent as [UNAVAILABLE] where the MTA
     * lists them, so that nothing of the last client (its login, its
     * reverse name) sticks to this one. */
    bool reset;
    unsigned attrs; /* ESMTP_XA_* the MTA lists; 0: not known (all) */
};

/* Append s as xtext: bytes outside 33..126, '+' and '=' become "+HH". */
void esmtp_xtext(buf_t *b, const char *s);
/* The name for our own EHLO after XCLIENT: the client's HELO as it sent
 * it, so that the upstream's HELO checks judge the real client (bytes
 * 33..126, fits in out), else its address literal ("[192.0.2.1]",
 * "[IPv6:2001:db8::1]") when the HELO cannot go on an EHLO line. */
void esmtp_ehlo_name(char *out, size_t n, const char *helo, const char *addr);
/* "XCLIENT ADDR=.. PORT=.. NAME=.. PROTO=.. [HELO=..]" (HELO once known),
 * with only the attributes w->attrs lists (all when 0). */
void esmtp_xclient_line(buf_t *b, const struct esmtp_client *w);
/* A command line's text without its CRLF (RFC 5321 4.5.3.1.4: 512 octets
 * with it). */
#define ESMTP_LINE_MAX 510
/* The longest XCLIENT / XFORWARD attribute value Postfix takes, as sent
 * (xtext-encoded); a name or HELO beyond it goes as [UNAVAILABLE]. */
#define ESMTP_VALUE_MAX 255
/* The XFORWARD lines: "XFORWARD ADDR=.. PORT=.. PROTO=.. NAME=.. HELO=.."
 * when that fits in ESMTP_LINE_MAX (helo_line then stays empty), else
 * "XFORWARD ADDR=.. PORT=.. PROTO=.. NAME=.." and "XFORWARD HELO=..", each
 * within it. Only the attributes w->attrs lists (all when 0); a line left
 * without any stays empty (len 0) and is not sent. */
void esmtp_xforward_lines(buf_t *addr_line, buf_t *helo_line, const struct esmtp_client *w);

#endif
