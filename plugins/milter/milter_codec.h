/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * milter_codec: the MTA side of the Sendmail milter protocol, version 6
 * (what libmilter 8.14+ and Postfix's milter8 speak), as a pure codec:
 * encoders that append framed commands to a pstr, a streaming reader that
 * cuts the milter's byte stream into packets, and decoders that turn a
 * packet into a typed reply. No I/O, no clock, no globals; any thread.
 *
 * A packet is a 4-byte big-endian length (command byte + payload), the
 * command byte and the payload. Strings in payloads are NUL-terminated.
 *
 * Ownership: encoders only append to the caller's pstr. The reader owns
 * the bytes fed to it; a decoded reply points into them and is valid until
 * the next milter_reader_feed() or milter_reader_free(). A reply decoded
 * with milter_reply_decode() points into the caller's buffer.
 *
 * What the protocol leaves to the caller (the plugin's event loop):
 * which reply may answer which command. Only the final replies (accept,
 * continue, reject, tempfail, discard, replycode, skip, shutdown,
 * connfail) end the wait for a command's answer; progress, quarantine and
 * the modifications (legal only after end of message) come before the
 * final reply. Macro, abort, quit and quit_nc are never answered; the
 * other commands are, unless the milter negotiated their MILTER_STEP_NR_*
 * bit.
 */
#ifndef SLUICE_MILTER_CODEC_H
#define SLUICE_MILTER_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pstr.h"

/* ---- protocol constants (values of libmilter 8.17's mfdef.h/mfapi.h) --- */

#define MILTER_VERSION 6     /* the protocol version sluice speaks */
#define MILTER_VERSION_MIN 2 /* oldest version a milter may answer with */

/* Largest payload a command may carry: libmilter refuses longer ones
 * (MILTER_MAX_DATA_SIZE) and closes the connection. Body chunks are cut
 * to this size. */
#define MILTER_PAYLOAD_MAX 65535u
/* Largest reply payload the reader accepts: libmilter never writes more
 * than 65535 (its own limit); twice that, as Postfix 2.x accepted, leaves
 * room for other milter implementations without letting a broken one make
 * the reader buffer megabytes. */
#define MILTER_READ_MAX (2u * MILTER_PAYLOAD_MAX)

/* Commands, MTA to milter. */
enum milter_cmd {
    MILTER_CMD_ABORT = 'A',
    MILTER_CMD_BODY = 'B',
    MILTER_CMD_CONNECT = 'C',
    MILTER_CMD_MACRO = 'D',
    MILTER_CMD_EOM = 'E', /* SMFIC_BODYEOB */
    MILTER_CMD_HELO = 'H',
    MILTER_CMD_QUIT_NC = 'K',
    MILTER_CMD_HEADER = 'L',
    MILTER_CMD_MAIL = 'M',
    MILTER_CMD_EOH = 'N',
    MILTER_CMD_OPTNEG = 'O',
    MILTER_CMD_QUIT = 'Q',
    MILTER_CMD_RCPT = 'R',
    MILTER_CMD_DATA = 'T',
    MILTER_CMD_UNKNOWN = 'U',
};

/* Replies, milter to MTA. */
enum milter_reply_type {
    MILTER_REPLY_ADDRCPT = '+',
    MILTER_REPLY_DELRCPT = '-',
    MILTER_REPLY_ADDRCPT_PAR = '2',
    MILTER_REPLY_SHUTDOWN = '4', /* 421 and close */
    MILTER_REPLY_OPTNEG = 'O',
    MILTER_REPLY_ACCEPT = 'a',
    MILTER_REPLY_REPLBODY = 'b',
    MILTER_REPLY_CONTINUE = 'c',
    MILTER_REPLY_DISCARD = 'd',
    MILTER_REPLY_CHGFROM = 'e',
    MILTER_REPLY_CONNFAIL = 'f',
    MILTER_REPLY_ADDHEADER = 'h',
    MILTER_REPLY_INSHEADER = 'i',
    MILTER_REPLY_SETSYMLIST = 'l',
    MILTER_REPLY_CHGHEADER = 'm',
    MILTER_REPLY_PROGRESS = 'p',
    MILTER_REPLY_QUARANTINE = 'q',
    MILTER_REPLY_REJECT = 'r',
    MILTER_REPLY_SKIP = 's',
    MILTER_REPLY_TEMPFAIL = 't',
    MILTER_REPLY_REPLYCODE = 'y',
};

/* Address family of the SMTP client in the connect command. */
enum milter_family {
    MILTER_FAMILY_UNKNOWN = 'U', /* only the host name is sent */
    MILTER_FAMILY_UNIX = 'L',
    MILTER_FAMILY_INET = '4',
    MILTER_FAMILY_INET6 = '6',
};

/* Actions (SMFIF_*): what the MTA lets the milter do, offered in optneg. */
#define MILTER_ACT_ADDHDRS 0x001u     /* add and insert header fields */
#define MILTER_ACT_CHGBODY 0x002u     /* replace the body */
#define MILTER_ACT_ADDRCPT 0x004u     /* add recipients */
#define MILTER_ACT_DELRCPT 0x008u     /* remove recipients */
#define MILTER_ACT_CHGHDRS 0x010u     /* change and delete header fields */
#define MILTER_ACT_QUARANTINE 0x020u  /* quarantine the message */
#define MILTER_ACT_CHGFROM 0x040u     /* change the envelope sender */
#define MILTER_ACT_ADDRCPT_PAR 0x080u /* add recipients with ESMTP args */
#define MILTER_ACT_SETSYMLIST 0x100u  /* choose the macros sent per stage */
#define MILTER_ACT_ALL 0x1ffu

/* Protocol steps (SMFIP_*): in the MTA's optneg what it can do, in the
 * milter's answer what it wants. NO*: do not send that command; NR_*: the
 * milter will not answer that command. */
#define MILTER_STEP_NOCONNECT 0x000001u
#define MILTER_STEP_NOHELO 0x000002u
#define MILTER_STEP_NOMAIL 0x000004u
#define MILTER_STEP_NORCPT 0x000008u
#define MILTER_STEP_NOBODY 0x000010u
#define MILTER_STEP_NOHDRS 0x000020u
#define MILTER_STEP_NOEOH 0x000040u
#define MILTER_STEP_NR_HDR 0x000080u
#define MILTER_STEP_NOUNKNOWN 0x000100u
#define MILTER_STEP_NODATA 0x000200u
#define MILTER_STEP_SKIP 0x000400u     /* the MTA understands the skip reply */
#define MILTER_STEP_RCPT_REJ 0x000800u /* send rejected recipients too */
#define MILTER_STEP_NR_CONN 0x001000u
#define MILTER_STEP_NR_HELO 0x002000u
#define MILTER_STEP_NR_MAIL 0x004000u
#define MILTER_STEP_NR_RCPT 0x008000u
#define MILTER_STEP_NR_DATA 0x010000u
#define MILTER_STEP_NR_UNKN 0x020000u
#define MILTER_STEP_NR_EOH 0x040000u
#define MILTER_STEP_NR_BODY 0x080000u
/* Header values keep their leading space, both ways (without it the MTA
 * drops the one space after the colon and adds it back to the values the
 * milter sends). */
#define MILTER_STEP_HDR_LEADSPC 0x100000u
#define MILTER_STEP_ALL 0x1fffffu

/* Macro stages (SMFIM_*): the index of a macro list in optneg. */
enum milter_stage {
    MILTER_STAGE_CONNECT = 0,
    MILTER_STAGE_HELO = 1,
    MILTER_STAGE_ENVFROM = 2,
    MILTER_STAGE_ENVRCPT = 3,
    MILTER_STAGE_DATA = 4,
    MILTER_STAGE_EOM = 5,
    MILTER_STAGE_EOH = 6,
};
#define MILTER_STAGES 7

/* ---- encoders ------------------------------------------------------------
 * Each appends one packet to *out and returns 0, or returns -EINVAL (a
 * field libmilter would refuse) or -EMSGSIZE (payload over
 * MILTER_PAYLOAD_MAX) and appends nothing. */

/* actions and steps must be non-zero: libmilter reads 0 as "the version 1
 * sets", which would allow modifications the MTA did not offer. */
int milter_put_optneg(struct pstr *out, uint32_t version, uint32_t actions, uint32_t steps);

struct milter_macro {
    const char *name; /* as the milter asks for it: "j", "{client_addr}" */
    const char *value;
};
/* The macros for the command `stage` (connect, helo, mail, rcpt, data,
 * eoh or eom), sent just before it. Names must be non-empty. n == 0
 * appends nothing. */
int milter_put_macro(struct pstr *out, enum milter_cmd stage, const struct milter_macro *macros,
                     size_t n);

/* hostname: the client's name (Postfix sends "unknown" without one).
 * INET and INET6 need a textual address that inet_pton() reads (no
 * "IPv6:" prefix: libmilter would drop the connection); UNIX a socket
 * path shorter than 108 bytes (libmilter's sun_path), port 0; UNKNOWN
 * sends neither port nor address (address may be NULL). */
int milter_put_connect(struct pstr *out, const char *hostname, enum milter_family family,
                       uint16_t port, const char *address);
int milter_put_helo(struct pstr *out, const char *helo);
/* addr as in the SMTP command, angle brackets included ("<>" for the null
 * sender); args the ESMTP parameters, one "KEY=VALUE" each, non-empty. */
int milter_put_envfrom(struct pstr *out, const char *addr, const char *const *args, size_t nargs);
int milter_put_envrcpt(struct pstr *out, const char *addr, const char *const *args, size_t nargs);
int milter_put_data(struct pstr *out);
/* Lengths given because message bytes may hold NUL, which the protocol
 * cannot carry (-EINVAL). name non-empty. Folded values go with LF alone
 * between lines, as sendmail and Postfix send them. */
int milter_put_header(struct pstr *out, const char *name, size_t name_len, const char *value,
                      size_t value_len);
int milter_put_eoh(struct pstr *out);
/* 1..MILTER_PAYLOAD_MAX bytes of the body as on the wire (CRLF): libmilter
 * drops the connection on an empty chunk. */
int milter_put_body(struct pstr *out, const void *chunk, size_t len);
int milter_put_eom(struct pstr *out);
int milter_put_abort(struct pstr *out);
int milter_put_quit(struct pstr *out);
/* Quit this SMTP session but keep the milter connection for the next. */
int milter_put_quit_nc(struct pstr *out);
/* An SMTP command the MTA does not know, as the client sent it. */
int milter_put_unknown(struct pstr *out, const char *line);

/* ---- replies -------------------------------------------------------------- */

struct milter_optneg {
    uint32_t version;
    uint32_t actions; /* MILTER_ACT_* */
    uint32_t steps;   /* MILTER_STEP_* */
    /* The milter's reply only: the macro-list extension after the three
     * words (milter_optneg_macros), len 0 when absent. */
    const unsigned char *macros;
    size_t macros_len;
};

/* A decoded reply. Strings are NUL-terminated, NUL-free within the packet. */
struct milter_reply {
    enum milter_reply_type type;
    union {
        struct milter_optneg optneg; /* OPTNEG */
        /* REPLYCODE: the SMTP reply, unchecked (milter_replycode_parse);
         * QUARANTINE: the reason, any bytes but NUL, maybe empty. */
        const char *text;
        /* ADDHEADER (index 0), INSHEADER (index 0 = before the first
         * field), CHGHEADER (index: the index-th field of that name,
         * counting from 1; sendmail reads 0 as 1; empty value = delete).
         * name: printable ASCII without ':' or blank; value: LF or CRLF
         * only as folding (followed by a blank). */
        struct {
            uint32_t index;
            const char *name;
            const char *value;
        } header;
        /* CHGFROM, ADDRCPT_PAR (args NULL when the milter sent none),
         * ADDRCPT, DELRCPT (args NULL): addr non-empty. */
        struct {
            const char *addr;
            const char *args;
        } env;
        /* REPLBODY: one chunk of the new body; the chunks of one
         * replacement arrive in a row. */
        struct {
            const unsigned char *data;
            size_t len;
        } body;
        /* SETSYMLIST: decoded like one entry of the optneg macro lists.
         * No libmilter sends it (the lists travel inside the optneg
         * reply) and neither sendmail nor Postfix accepts it: the plugin
         * should treat it as a protocol error wherever it comes. */
        struct {
            enum milter_stage stage;
            const char *names;
        } symlist;
    };
};

/* "addheader", "replycode", ... for logs; NULL for a byte that is no reply. */
const char *milter_reply_name(int cmd);

/* Decode the packet with command byte cmd and payload data[0..len).
 * 0 and *out set, or -EPROTO and *why (a static string) says what is
 * wrong: unknown command, payload where none belongs, missing or extra
 * NUL, empty or invalid header name, bad folding, empty address, short
 * optneg. */
int milter_reply_decode(unsigned char cmd, const unsigned char *data, size_t len,
                        struct milter_reply *out, const char **why);

/* The action bit a reply needs from the negotiated actions (0: none).
 * A modification whose bit the milter did not negotiate is a protocol
 * violation, as in libmilter, which refuses to send it. */
uint32_t milter_reply_action(enum milter_reply_type type);

/* Check the milter's optneg reply against the MTA's offer: its version
 * must be MILTER_VERSION_MIN..offer's, its actions and steps subsets of
 * the offer (a milter may take fewer; a step the MTA did not offer, an NR
 * bit above all, would desynchronise the dialogue). 0, or -EPROTO with a
 * static *why. */
int milter_optneg_check(const struct milter_optneg *offer, const struct milter_optneg *reply,
                        const char **why);

/* The macro lists a milter asked for in its optneg reply (libmilter's
 * smfi_setsymlist(); sent whether or not MILTER_ACT_SETSYMLIST was
 * negotiated, so honour them only if you offered it). names[stage] is the
 * space-separated list for that stage, "" for "send none", NULL when the
 * milter left the stage alone. Pointers into neg->macros. 0, or -EPROTO
 * with a static *why: unknown or repeated stage, missing NUL, a byte
 * other than printable ASCII. */
struct milter_macro_lists {
    const char *names[MILTER_STAGES];
};
int milter_optneg_macros(const struct milter_optneg *neg, struct milter_macro_lists *out,
                         const char **why);

/* ---- SMTP replies from SMFIR_REPLYCODE -------------------------------------
 * "550 5.7.1 text" or multi-line "550-5.7.1 one\r\n550 5.7.1 two": every
 * line has the same 4xx or 5xx code, '-' after it on all lines but the
 * last, which has ' ' or ends at the code. A line whose text starts with a
 * digit starts with an RFC 3463 enhanced code, class equal to the code's
 * first digit, followed by a space or the end of the line; either every
 * line has the same enhanced code or none has. Text is printable ASCII
 * and HT. Limits are libmilter's smfi_setmlreply(): 32 lines
 * (MAXREPLIES), 980 octets of text per line (MAXREPLYLEN). As with
 * Postfix, "%%" stands for "%" (sendmail formats the text with printf)
 * and a lone '%' is dropped. */
#define MILTER_REPLY_LINES_MAX 32
#define MILTER_REPLY_TEXT_MAX 980

struct milter_replycode {
    int code;      /* 400..599 */
    char enh[12];  /* "5.7.1", or "" when the milter gave none */
    size_t nlines; /* 1..MILTER_REPLY_LINES_MAX */
    /* Each line's text after the code and enhanced code, NUL-terminated,
     * in `storage`: do not copy the struct by value. */
    const char *lines[MILTER_REPLY_LINES_MAX];
    char storage[MILTER_REPLY_LINES_MAX * (MILTER_REPLY_TEXT_MAX + 1)];
};
/* 0 and *out filled, or -EPROTO with a static *why. */
int milter_replycode_parse(const char *text, struct milter_replycode *out, const char **why);

/* ---- the streaming reader ------------------------------------------------ */

struct milter_reader {
    unsigned char *buf; /* owned: bytes fed and not yet dropped */
    size_t len;         /* bytes in buf */
    size_t cap;
    size_t pos;      /* bytes of buf already returned as replies */
    char error[160]; /* "" until a protocol error, then sticky */
};

void milter_reader_init(struct milter_reader *r);
void milter_reader_free(struct milter_reader *r);
/* Append bytes as read from the milter, split anywhere. Drops what
 * earlier replies pointed into. Ignored after an error. Call
 * milter_reader_next() until it returns 0 after each feed: the reader
 * keeps every byte it was given until then. */
void milter_reader_feed(struct milter_reader *r, const void *data, size_t len);
/* 1 and the next reply in *out (valid until the next feed or free), 0
 * when no whole packet is buffered, or -EPROTO, for good: a packet length
 * of 0 or over 1 + MILTER_READ_MAX, an unknown command byte (both seen as
 * soon as the first 5 bytes are in), or a payload milter_reply_decode()
 * refuses. */
int milter_reader_next(struct milter_reader *r, struct milter_reply *out);
/* The protocol error, one line, or NULL. */
const char *milter_reader_error(const struct milter_reader *r);
/* No byte buffered beyond the replies returned: nothing half-received. */
bool milter_reader_idle(const struct milter_reader *r);

#endif
