/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sasl: the pure SASL pieces of SMTP AUTH (RFC 4954) for the mechanisms
 * sluice offers, PLAIN (RFC 4616) and LOGIN (the de-facto two-prompt
 * mechanism): strict base64 (RFC 4648), the PLAIN message, the LOGIN
 * exchange as a small state machine, and the arguments of the AUTH command.
 * No I/O, no allocation, no libuv; unit-tested (tests/unit/test_sasl.c) and
 * fuzzed (tests/fuzz/fuzz_sasl.c).
 *
 * What the SMTP session does with it: parse "AUTH mech [ir]" with
 * sasl_auth_parse(); for PLAIN decode the (initial or 334-prompted)
 * response with sasl_plain_decode(); for LOGIN run sasl_login_begin() /
 * sasl_login_feed() until it reports SASL_DONE. Either way it ends with an
 * authcid and a password, which it hands to Dovecot as one PLAIN request
 * (dvauth_client.h explains why).
 *
 * Bounds: every decoded message is at most SASL_MSG_MAX bytes, every part
 * (authzid, authcid, password) at most SASL_FIELD_MAX bytes; longer input
 * is refused (SASL_ETOOLONG), never cut. A PLAIN message cannot be longer
 * than 3 * SASL_FIELD_MAX + 2 bytes, so nothing valid is lost.
 *
 * Secrets: passwords sit in caller-owned structs; sasl_wipe() clears them
 * in a way the compiler keeps.
 *
 * Errors: 0 (or SASL_MORE) ok, a negative SASL_E* otherwise. What the
 * session should answer is written at each code.
 */
#ifndef SLUICE_SASL_H
#define SLUICE_SASL_H

#include <stdbool.h>
#include <stddef.h>

#define SASL_FIELD_MAX 255    /* bytes of an authzid, authcid or password */
#define SASL_MSG_MAX 1024     /* bytes of a decoded client response */
#define SASL_B64_MAX 1368     /* base64 characters of SASL_MSG_MAX bytes */
#define SASL_MECH_NAME_MAX 20 /* RFC 4954: sasl-mech = 1*20mech-char */

/* The LOGIN prompts, base64 of "Username:" and "Password:" (sent as
 * "334 <prompt>"). */
#define SASL_LOGIN_PROMPT_USER "VXNlcm5hbWU6"
#define SASL_LOGIN_PROMPT_PASS "UGFzc3dvcmQ6"

enum sasl_rc {
    SASL_DONE = 0,      /* ok / finished */
    SASL_MORE = 1,      /* LOGIN: send the prompt, feed the next line */
    SASL_EBASE64 = -1,  /* not strict base64: 501 5.5.2 */
    SASL_ETOOLONG = -2, /* over a bound: 500 5.5.6 (line) or 501 5.5.2 */
    SASL_EMSG = -3,     /* malformed PLAIN/LOGIN content: 501 5.5.2 */
    SASL_ESYNTAX = -4,  /* AUTH arguments malformed: 501 5.5.4 */
    SASL_EMECH = -5,    /* mechanism not offered: 504 5.5.4 */
    SASL_ECANCEL = -6,  /* the client sent "*": 501 5.0.0 (RFC 4954 §4) */
};

/* Text for logs ("bad base64", ...). */
const char *sasl_strerror(int rc);

/* ---- base64 (RFC 4648 §4, the standard alphabet, padded) -------------- */

/* Characters base64 of n bytes takes (without a NUL). */
size_t sasl_b64_len(size_t n);
/* Encode n bytes into out (outlen must hold sasl_b64_len(n) + 1; the text
 * is NUL-terminated). Returns the length, or SASL_ETOOLONG (out untouched
 * beyond outlen). */
int sasl_b64_encode(const void *in, size_t n, char *out, size_t outlen);
/* Decode exactly len characters. Strict: only the alphabet, length a
 * multiple of 4, '=' only as the last one or two characters, unused bits
 * of the last symbol zero (so every accepted text is the one encoding of
 * its bytes), no whitespace. The empty text decodes to zero bytes. At most
 * outcap bytes are written (SASL_ETOOLONG past that). *outlen: bytes out. */
int sasl_b64_decode(const char *in, size_t len, void *out, size_t outcap, size_t *outlen);

/* A client response line (after a 334, without CRLF): "*" is
 * SASL_ECANCEL; "" and "=" are the empty response ("=" is RFC 4954's
 * spelling for an empty initial response; accepted here too, since it can
 * never be base64); anything else strict base64 of at most SASL_MSG_MAX
 * bytes. out must hold SASL_MSG_MAX bytes. */
int sasl_response_decode(const char *line, size_t len, unsigned char *out, size_t *outlen);
/* Is the line the cancel line "*"? */
bool sasl_is_cancel(const char *line, size_t len);

/* ---- the AUTH command ------------------------------------------------- */

enum sasl_mech {
    SASL_MECH_NONE = 0,
    SASL_MECH_PLAIN = 1u << 0,
    SASL_MECH_LOGIN = 1u << 1,
};

struct sasl_auth_cmd {
    enum sasl_mech mech;
    bool has_ir;                    /* an initial response was given ("=" counts) */
    size_t ir_len;                  /* decoded bytes of it */
    unsigned char ir[SASL_MSG_MAX]; /* the decoded initial response */
};

/* The arguments of AUTH, i.e. what follows "AUTH " (without CRLF):
 * `mech [SP initial-response]`, one space between, nothing after. The
 * mechanism is matched case-insensitively against those in `offered` (a
 * set of enum sasl_mech bits): a well-formed name that is not offered is
 * SASL_EMECH, a malformed one (empty, over 20 characters, outside
 * [A-Z0-9-_]) SASL_ESYNTAX. The initial response is decoded as by
 * sasl_response_decode() except that "*" is a syntax error there. */
int sasl_auth_parse(const char *args, size_t len, unsigned offered, struct sasl_auth_cmd *out);
/* "PLAIN" / "LOGIN" / "?" */
const char *sasl_mech_name(enum sasl_mech m);

/* ---- PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd ------------ */

struct sasl_creds {
    char authzid[SASL_FIELD_MAX + 1]; /* "" when absent */
    char authcid[SASL_FIELD_MAX + 1]; /* never empty once decoded */
    char passwd[SASL_FIELD_MAX + 1];  /* never empty once decoded */
};

/* Split a decoded PLAIN message: exactly two NULs, authcid and password
 * non-empty (RFC 4616's 1*SAFE), every part at most SASL_FIELD_MAX bytes.
 * The bytes are not checked for UTF-8: the password check (Dovecot) owns
 * that decision. SASL_EMSG / SASL_ETOOLONG otherwise (out is wiped). */
int sasl_plain_decode(const void *msg, size_t len, struct sasl_creds *out);
/* Build a PLAIN message from parts (no NUL inside any, authcid and
 * password non-empty, bounds as above) into out (outcap bytes). Returns
 * the length, or SASL_EMSG / SASL_ETOOLONG. */
int sasl_plain_encode(const struct sasl_creds *c, unsigned char *out, size_t outcap);

/* ---- LOGIN ------------------------------------------------------------ */

enum sasl_login_step { SASL_LOGIN_USER = 0, SASL_LOGIN_PASS, SASL_LOGIN_END };

struct sasl_login {
    enum sasl_login_step step;
    struct sasl_creds creds; /* authzid stays "" */
};

/* Start a LOGIN exchange after "AUTH LOGIN [ir]": with an initial response
 * that is the user name. Returns SASL_MORE and the prompt to send as
 * "334 <prompt>", or an error (bad user name: SASL_EMSG / SASL_ETOOLONG). */
int sasl_login_begin(struct sasl_login *l, const struct sasl_auth_cmd *cmd, const char **prompt);
/* Feed one response line (without CRLF). SASL_MORE with the next prompt,
 * SASL_DONE once user name and password are in l->creds, or an error
 * (SASL_ECANCEL for "*"; the exchange is over after any error). User name
 * and password are non-empty, without NUL, at most SASL_FIELD_MAX bytes. */
int sasl_login_feed(struct sasl_login *l, const char *line, size_t len, const char **prompt);

/* Clear memory that held a secret (not optimised away). */
void sasl_wipe(void *p, size_t n);

#endif
