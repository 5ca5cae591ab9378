/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_msg: the view of one message that rules are matched against,
 * built once per message: header fields (raw and decoded), the decoded
 * text of the text parts (HTML converted and as is), the URIs, the MIME
 * structure, HTML hidden text and misleading links, and the envelope.
 *
 * MIME decoding (transfer encodings, charsets to UTF-8, nested multiparts
 * and attached messages) is GMime's; header parsing, HTML and URIs are
 * ours. Everything is bounded: at most max_scan bytes of decoded text per
 * part, at most SPAM_MSG_MAX_URIS URIs, nesting at most SPAM_MSG_MAX_DEPTH.
 */
#ifndef SPAM_MSG_H
#define SPAM_MSG_H

#include "spam_rules.h"
#include "pstr.h"

#include <stddef.h>

#define SPAM_MSG_MAX_URIS 1000
#define SPAM_MSG_MAX_DEPTH 20
#define SPAM_MSG_MAX_PARTS 500

/* The envelope and session facts; any member may be NULL. */
struct spam_msg_env {
    const char *sender;
    const char *const *rcpts;
    size_t nrcpts;
    const char *client_ip;
    const char *helo;
    const char *client_name;
};

struct spam_msg_header {
    char *name;    /* owned */
    char *raw;     /* owned; unfolded, leading blanks trimmed */
    char *decoded; /* owned; RFC 2047 words decoded (UTF-8) */
};

struct spam_msg {
    const char *raw;  /* the message, not owned: valid while the msg is used */
    size_t rawlen;
    struct spam_msg_header *hdrs; /* owned */
    size_t nhdrs;
    struct pstr text;      /* decoded text parts, HTML as text */
    struct pstr rawtext;   /* decoded text parts, HTML as is */
    char **uris;               /* owned */
    size_t nuris;
    struct pstr parts;     /* MIME:parts */
    struct pstr filenames; /* MIME:filenames */
    struct pstr hidden;    /* HTML:hidden */
    struct pstr mismatch;  /* HTML:linkmismatch */
    char *env_from, *client_ip, *helo, *client_name; /* owned, never NULL */
    struct pstr env_rcpt;
    int truncated;             /* some text part was longer than max_scan */
    int plain;                 /* read without GMime (spam_msg_set_plain_shortcut) */
};

/* Initialise GMime once per process (safe to call from any thread). */
void spam_msg_global_init(void);

/* Build the view of data[0..len) (CRLF or LF line ends). Never NULL. */
struct spam_msg *spam_msg_parse(const char *data, size_t len, const struct spam_msg_env *env,
                                size_t max_scan);
void spam_msg_free(struct spam_msg *m);

/*
 * A message with one text/plain part that needs no decoding is read
 * without GMime (see spam_msg.c); off, every message goes through GMime.
 * For tests, which hold the two to the same view. Default on.
 */
void spam_msg_set_plain_shortcut(int on);

/* RFC 2047 words of a header value decoded to UTF-8; the result is owned
 * by the caller. */
char *spam_msg_decode_header(const char *raw);

/*
 * The value a header rule's field has for this message, into out
 * (cleared first); *exists tells whether the field is present (for
 * pseudo fields: whether the value is non-empty).
 */
void spam_msg_field(const struct spam_msg *m, const struct spam_rule *r, struct pstr *out, int *exists);

#endif
