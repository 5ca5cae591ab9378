/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cmd: pure, resumable SMTP command parsing (RFC 5321 §4.1, RFC 1869,
 * RFC 3461, RFC 6152, RFC 6531). No I/O: bytes in, lines and commands out.
 * Everything returned points into caller memory or into the output struct;
 * nothing is allocated. Threads: any (no globals).
 */
#ifndef SLUICE_CMD_H
#define SLUICE_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- line assembly ---------------------------------------------------- */

/* RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF. */
#define CMD_LINE_MAX 512

struct cmd_reader {
    size_t max;      /* longest accepted line incl. terminator; CMD_LINE_MAX */
    bool discarding; /* inside an over-long line, dropping until its LF */
};

enum cmd_rd {
    CMD_RD_AGAIN,    /* need more input; *consumed bytes may be dropped */
    CMD_RD_LINE,     /* a complete line: *line / *line_len (no CR/LF) */
    CMD_RD_TOO_LONG, /* an over-long line ended; reply 500 5.5.2 */
};

void cmd_reader_init(struct cmd_reader *r, size_t max);
/*
 * Look at in[0..len). A line ends at LF (a CR before it is stripped; a lone
 * LF is accepted for commands as most MTAs do). On CMD_RD_LINE the line is
 * in[0..*line_len) and *consumed covers it and its terminator. On AGAIN with
 * no LF within `max` bytes the reader starts discarding and consumes
 * everything; the next LF then yields CMD_RD_TOO_LONG.
 */
enum cmd_rd cmd_reader_next(struct cmd_reader *r, const char *in, size_t len, size_t *consumed,
                            const char **line, size_t *line_len);

/* ---- commands --------------------------------------------------------- */

enum cmd_verb {
    CMD_UNKNOWN = 0,
    CMD_HELO,
    CMD_EHLO,
    CMD_MAIL,
    CMD_RCPT,
    CMD_DATA,
    CMD_RSET,
    CMD_NOOP,
    CMD_QUIT,
    CMD_HELP,
    CMD_VRFY,
    CMD_EXPN,
    CMD_STARTTLS,
    CMD_AUTH,
    CMD_BDAT,
    CMD_ETRN,
    CMD_TURN,
    CMD_XCLIENT,
    CMD_XFORWARD,
    CMD_VERB_COUNT
};

struct cmd {
    enum cmd_verb verb;
    const char *arg; /* after the verb and one or more spaces; "" when none */
    size_t arg_len;  /* arg is NOT NUL-terminated in general */
    bool has_nul;    /* the line contained a NUL byte (reply 500 5.5.2) */
    bool has_8bit;   /* the line contained bytes >= 0x80 */
};

/* Split a line (without CRLF) into verb and argument; verbs are
 * case-insensitive. "MAIL FROM:" and "RCPT TO:" are recognised as verbs MAIL
 * and RCPT with arg pointing at the '<' (or whatever follows the colon, after
 * optional spaces, as many clients send "MAIL FROM: <a@b>"). A MAIL/RCPT
 * without the FROM:/TO: keyword yields verb MAIL/RCPT with arg NULL.
 * The verb ends at the first space: "NOOPX" is CMD_UNKNOWN (its arg is
 * still what follows the spaces). Trailing spaces are dropped from arg. */
void cmd_parse(const char *line, size_t len, struct cmd *out);
const char *cmd_verb_name(enum cmd_verb v);

/* ---- MAIL FROM / RCPT TO paths and parameters ------------------------ */

#define CMD_ADDR_MAX 512 /* local-part 64 + @ + domain 255, with slack for quoting */

enum cmd_body { CMD_BODY_NONE = 0, CMD_BODY_7BIT, CMD_BODY_8BITMIME, CMD_BODY_BINARYMIME };
enum cmd_ret { CMD_RET_NONE = 0, CMD_RET_FULL, CMD_RET_HDRS };
enum cmd_notify {
    CMD_NOTIFY_NEVER = 1,
    CMD_NOTIFY_SUCCESS = 2,
    CMD_NOTIFY_FAILURE = 4,
    CMD_NOTIFY_DELAY = 8,
};

struct cmd_path {
    /* The mailbox exactly as written between < and >, source route dropped
     * (RFC 5321 §4.1.2: "@a,@b:user@d" -> "user@d"). "" for the null path.
     * NUL-terminated. Quoted local parts keep their quotes. */
    char addr[CMD_ADDR_MAX + 1];
    size_t addr_len;
    bool null_path;  /* "<>" */
    bool utf8;       /* contains bytes >= 0x80 (needs SMTPUTF8) */
    bool postmaster; /* RCPT TO:<Postmaster> without domain */
};

struct cmd_params {
    /* SIZE (RFC 1870) */
    bool has_size;
    uint64_t size;
    /* BODY (RFC 6152 / RFC 3030) */
    enum cmd_body body;
    /* SMTPUTF8 (RFC 6531) */
    bool smtputf8;
    /* DSN (RFC 3461): raw values, already validated (xtext syntax etc.) */
    enum cmd_ret ret;
    const char *envid; size_t envid_len;   /* MAIL; points into the arg */
    unsigned notify;                       /* RCPT; CMD_NOTIFY_* bits, 0 = absent */
    const char *orcpt; size_t orcpt_len;   /* RCPT; "addr-type;xtext", into the arg */
    /* AUTH= (RFC 4954) on MAIL: value into the arg, carried verbatim */
    const char *auth; size_t auth_len;
};

enum cmd_path_err {
    CMD_PATH_OK = 0,
    CMD_PATH_SYNTAX,      /* 501 5.1.7 (MAIL) / 501 5.1.3 (RCPT) */
    CMD_PATH_TOO_LONG,    /* 501 5.1.7 / 5.1.3 (RFC 5321 §4.5.3.1: 552 for too many rcpts, 501 for length) */
    CMD_PATH_NULL_RCPT,   /* RCPT TO:<> -> 501 5.1.3 */
    CMD_PATH_PARAM,       /* unknown or malformed parameter -> 555 5.5.4 */
    CMD_PATH_PARAM_DUP,   /* parameter given twice -> 501 5.5.4 */
};

/*
 * Parse the argument of MAIL (is_rcpt false; arg as set by cmd_parse) or RCPT:
 * "<path> [SP param[=value]]*". Parameters recognised: SIZE, BODY, SMTPUTF8,
 * RET, ENVID, AUTH (MAIL); NOTIFY, ORCPT (RCPT). Any other parameter, or
 * a MAIL parameter on RCPT and vice versa, gives CMD_PATH_PARAM
 * (cmd_parse_mailrcpt_ex() also reports which one). A path may be given
 * without brackets by lax clients: not accepted (syntax error), as Postfix's
 * strict mode does. `err_text` (optional) gets a short static reason ("ok"
 * on success). arg NULL (no FROM:/TO:) is CMD_PATH_SYNTAX. On error *path
 * and *params are zeroed. ENVID's 100-character limit applies to the
 * decoded value; the 256-octet total path limit is not enforced (only the
 * local-part 64 and domain 255 limits are).
 */
enum cmd_path_err cmd_parse_mailrcpt(const char *arg, size_t len, bool is_rcpt,
                                     struct cmd_path *path, struct cmd_params *params,
                                     const char **err_text);
/* The same, and on CMD_PATH_PARAM / CMD_PATH_PARAM_DUP *bad_param /
 * *bad_param_len (both optional) get the offending "keyword[=value]" token,
 * pointing into arg; NULL / 0 otherwise. */
enum cmd_path_err cmd_parse_mailrcpt_ex(const char *arg, size_t len, bool is_rcpt,
                                        struct cmd_path *path, struct cmd_params *params,
                                        const char **err_text, const char **bad_param,
                                        size_t *bad_param_len);

/* Validate a mailbox (local@domain, or quoted local part; domain a dot-atom
 * or address literal) as it would appear in a path; used to validate
 * rewritten addresses before they go upstream. true if valid. */
bool cmd_mailbox_valid(const char *addr, size_t len, bool allow_utf8);

/* ---- BDAT (RFC 3030) --------------------------------------------------- */

/* Longest chunk size accepted as a number: 19 digits fit in uint64_t. A
 * longer one cannot be counted, so its bytes cannot be skipped either. */
#define CMD_BDAT_DIGITS_MAX 19

/*
 * Parse the argument of BDAT (as set by cmd_parse): chunk-size = 1*DIGIT,
 * then optionally one or more spaces and "LAST" (any case). Leading zeros
 * are fine; a sign, a trailing token or more than CMD_BDAT_DIGITS_MAX
 * digits is not. true and *size / *last set on success; false on a syntax
 * error (both then 0 / false).
 */
bool cmd_parse_bdat(const char *arg, size_t len, uint64_t *size, bool *last);

/* EHLO/HELO argument: a domain or address literal (lenient: any printable
 * non-space token). true if acceptable. */
bool cmd_helo_valid(const char *arg, size_t len);

#endif
