/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dvauth: the codec of Dovecot's authentication protocol (the client side
 * of the "auth-client" socket, protocol 1.x, as Postfix speaks it with
 * smtpd_sasl_type = dovecot). Pure: it builds lines into a buf_t and parses
 * lines given as (pointer, length); no socket, no libuv, no clock. The I/O
 * is dvauth_client.h; tests: tests/unit/test_dvauth.c, tests/fuzz/fuzz_sasl.c.
 *
 * The protocol, in short (Dovecot's "Dovecot Authentication Protocol"
 * document): LF-terminated lines of TAB-separated fields.
 *
 *   C: VERSION 1 2 / CPID <pid>
 *   S: VERSION 1 x / SPID / CUID / COOKIE / MECH <name> <flags>... / DONE
 *   C: AUTH <id> <mech> service=smtp [secured] [lip= rip= lport= rport=]
 *        [session=] resp=<base64>        (resp must be the last field)
 *   S: OK <id> [user=...]...  |  FAIL <id> [user=] [reason=] [code=temp_fail
 *        | temp]...  |  CONT <id> <base64>
 *
 * Escaping. Field values use Dovecot's "tab-escaping" with \001 as the
 * escape byte: \001 1 = \001, \001 t = TAB, \001 r = CR, \001 n = LF (the
 * 2.3 document says 'l' for LF, but Dovecot's own str_tabescape() writes
 * and reads 'n', and the 2.4 document agrees), anything else = that byte.
 * Backslash is not special. \001 0 would be NUL, which a C string cannot
 * hold: a value that unescapes to NUL is refused.
 *
 * Hostile server: every line is bounded (DVAUTH_LINE_MAX, Dovecot's own
 * limit), every stored value too; a malformed known command is an error
 * (the caller drops the connection), an unknown command or an unknown
 * optional field is ignored, as the protocol asks.
 *
 * Errors: 0 ok (DVAUTH_MORE during the handshake), negative DVAUTH_E*.
 */
#ifndef SLUICE_DVAUTH_H
#define SLUICE_DVAUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define DVAUTH_MAJOR 1
#define DVAUTH_MINOR 2
#define DVAUTH_LINE_MAX 16384 /* bytes of a line, LF included */
#define DVAUTH_USER_MAX 255   /* bytes of a user name in OK/FAIL */
#define DVAUTH_REASON_MAX 255 /* bytes of a FAIL reason (longer ones are cut) */
#define DVAUTH_CODE_MAX 31    /* bytes of a FAIL code */

enum dvauth_rc {
    DVAUTH_OK = 0,
    DVAUTH_MORE = 1,      /* handshake: more lines to come */
    DVAUTH_EPROTO = -1,   /* malformed line or command out of place */
    DVAUTH_EVERSION = -2, /* the server's major version is not 1 */
    DVAUTH_ETOOLONG = -3, /* over a bound */
    DVAUTH_EARG = -4,     /* unusable request (caller's bug or bad input) */
    DVAUTH_ENOMECH = -5,  /* handshake done without the mechanism we need */
};

const char *dvauth_strerror(int rc);

/* ---- framing and escaping ------------------------------------------- */

/* The first line of data: the offset of its LF (>= 0), -1 when no LF yet
 * (read more), or DVAUTH_ETOOLONG when there is none within
 * DVAUTH_LINE_MAX bytes (drop the connection). */
long dvauth_line_end(const char *data, size_t len);

/* Append s tab-escaped. */
void dvauth_escape(buf_t *out, const char *s);
/* Unescape len bytes into out (outcap >= 1; NUL-terminated). DVAUTH_EPROTO
 * if the result would contain NUL, DVAUTH_ETOOLONG if it does not fit. */
int dvauth_unescape(const char *in, size_t len, char *out, size_t outcap);

/* ---- handshake -------------------------------------------------------- */

/* Append the client's handshake: "VERSION\t1\t2\nCPID\t<pid>\n". */
void dvauth_build_hello(buf_t *out, unsigned long pid);

/* Mechanisms this client cares about (bits). */
enum { DVAUTH_MECH_PLAIN = 1u << 0, DVAUTH_MECH_LOGIN = 1u << 1 };

struct dvauth_hs {
    bool got_version;
    bool done;
    unsigned major, minor;
    unsigned long spid; /* 0 until SPID */
    unsigned long cuid; /* 0 until CUID */
    char cookie[65];    /* hex, "" until COOKIE */
    unsigned mechs;     /* DVAUTH_MECH_* announced */
    unsigned nmechs;    /* MECH lines seen (any name) */
};

void dvauth_hs_init(struct dvauth_hs *hs);
/* One server line (without LF). The first must be VERSION (major 1, else
 * DVAUTH_EVERSION). DVAUTH_MORE until DONE, then DVAUTH_OK; unknown
 * commands are ignored; a line after DONE is DVAUTH_EPROTO here (replies
 * go to dvauth_reply_parse()). */
int dvauth_hs_line(struct dvauth_hs *hs, const char *line, size_t len);

/* ---- requests --------------------------------------------------------- */

/* One authentication, as the SMTP session knows it. Either user + pass
 * (sent as a PLAIN initial response, authzid optional), or a raw initial
 * response (resp/resp_len) for `mech`. */
struct dvauth_req {
    const char *mech;    /* NULL: "PLAIN" (required with user/pass) */
    const char *authzid; /* NULL or "": none */
    const char *user;    /* authcid; NULL: use resp */
    const char *pass;
    const void *resp; /* raw initial response when user is NULL */
    size_t resp_len;
    const char *service;   /* NULL: "smtp" */
    const char *lip, *rip; /* NULL: not sent */
    unsigned lport, rport; /* 0: not sent */
    const char *session;   /* NULL: not sent; shows in Dovecot's log */
    bool secured;          /* the client's transport is TLS (or trusted) */
    bool no_penalty;       /* ask Dovecot not to count failures from rip */
};

/* Append "AUTH\t<id>\t..." (LF-terminated) for req. id >= 1. The line
 * holds the password in base64: the caller wipes the buffer. DVAUTH_EARG
 * when the request is unusable (no user and no resp, empty user or
 * password, a part over SASL_FIELD_MAX, a bad mechanism name) or too long. */
int dvauth_build_auth(buf_t *out, unsigned id, const struct dvauth_req *req);

/* ---- replies ---------------------------------------------------------- */

enum dvauth_kind {
    DVAUTH_R_IGNORE = 0, /* a command we do not know: skip the line */
    DVAUTH_R_OK,
    DVAUTH_R_FAIL,
    DVAUTH_R_CONT,
};

struct dvauth_reply {
    enum dvauth_kind kind;
    unsigned id;
    bool has_user;
    char user[DVAUTH_USER_MAX + 1]; /* user=, unescaped, printable */
    bool user_bad; /* a user= too long or with control bytes: not kept (has_user false) */
    bool has_reason;
    char reason[DVAUTH_REASON_MAX + 1]; /* reason=, unescaped, control bytes as '?' */
    char code[DVAUTH_CODE_MAX + 1];     /* code= ("" if none) */
    bool temp;                          /* code=temp_fail, or the 2.2 "temp" flag */
    const char *data;                   /* CONT: the base64 field, inside line */
    size_t data_len;
};

/* Parse one line after the handshake (without LF). DVAUTH_OK with r->kind
 * set, or DVAUTH_EPROTO (bad id, missing field, user name with control
 * bytes or over DVAUTH_USER_MAX, unescaping to NUL). */
int dvauth_reply_parse(const char *line, size_t len, struct dvauth_reply *r);

#endif
