/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rw_hdr: the rewrite engine's model of a message header, and the text
 * helpers that go with it (folding, RFC 2047, addresses).
 *
 * A header is a list of fields. Each keeps its raw value (after the colon,
 * folding kept, no final CRLF) and where it came from: a field the engine
 * did not touch is written back byte for byte; a changed field gets a new
 * raw value folded by the host's own rule (the model's `fold`: the SDK's
 * api->header_fold in the plugin, the daemon's plughdr_fold in the lint
 * tool and the tests), so the engine's rendering is the message the
 * upstream receives. The plugin turns the model into host edits
 * (rw_hdrs_edits), the unit tests and the lint tool render it.
 *
 * Decoding (RFC 2047 words to UTF-8) and encoding (non-ASCII to encoded
 * words) use GMime; rw_hdr_global_init() runs g_mime_init() once.
 */
#ifndef RW_HDR_H
#define RW_HDR_H

#include "pstr.h"

#include <stddef.h>

#define RW_LINE_HARD 998 /* no line may be longer than this */

struct rw_field {
    char *name;  /* owned, as written */
    char *raw;   /* owned: value after the colon, folding kept, no CRLF */
    long orig;   /* index among the original fields, -1 when added */
    int changed; /* raw differs from the original */
    int deleted;
};

/* The host's folding rule (the signature of api->header_fold): the raw
 * value a field `name` carries when `value` is added, snprintf-style;
 * negative when it cannot be folded. */
typedef int (*rw_fold_fn)(const char *name, const char *value, char *out, size_t outlen);

struct rw_hdrs {
    struct rw_field *f; /* owned array */
    size_t n, cap;
    rw_fold_fn fold; /* for changed and added fields */
};

#define RW_HDRS_INIT(fold)                                                                         \
    {                                                                                              \
        NULL, 0, 0, (fold)                                                                         \
    }

void rw_hdr_global_init(void);

/* Append an original field (the plugin feeds api->header_at here). */
void rw_hdrs_push(struct rw_hdrs *h, const char *name, size_t name_len, const char *raw, size_t raw_len);
/* Parse the header block of a canonical (CRLF) message; *body_off gets
 * the offset of the body (after the blank line). For tests and lint. */
void rw_hdrs_parse(struct rw_hdrs *h, const char *data, size_t len, size_t *body_off);
void rw_hdrs_free(struct rw_hdrs *h);

/* Index of the nth live field called name (case-insensitive), or -1. */
long rw_hdrs_find(const struct rw_hdrs *h, const char *name, size_t nth);

/* Set a field's value from text (UTF-8): non-ASCII is RFC 2047 encoded,
 * the result folded. 1 when the value changed, 0 when it came out the
 * same, -1 when it cannot be folded under 998. */
int rw_hdrs_set(struct rw_hdrs *h, size_t i, const char *text);
/* Set a raw value as is (already a valid folded value). */
void rw_hdrs_set_raw(struct rw_hdrs *h, size_t i, const char *raw);
/* Add a field at the end; value as for rw_hdrs_set. 0 or -1. */
int rw_hdrs_add(struct rw_hdrs *h, const char *name, const char *text);
void rw_hdrs_delete(struct rw_hdrs *h, size_t i);
/* Whether anything changed. */
int rw_hdrs_edited(const struct rw_hdrs *h);

/* The header block as it will be written (fields and CRLFs, no blank
 * line). */
void rw_hdrs_render(const struct rw_hdrs *h, struct pstr *out);

/*
 * The edits that turn the original header into this one, in an order that
 * keeps the host's "nth field called NAME" valid while they are applied
 * one by one: changes (by original position), deletions from the last
 * field backwards, then additions at the end.
 */
enum rw_edit_kind { RW_EDIT_CHANGE, RW_EDIT_DELETE, RW_EDIT_ADD };
struct rw_edit {
    enum rw_edit_kind kind;
    const char *name;  /* borrowed from the model */
    size_t nth;        /* change/delete: among the original fields of that name */
    const char *value; /* change/add: raw value (borrowed) */
};
/* Fills a malloc'ed array (caller frees) and returns its length. */
size_t rw_hdrs_edits(const struct rw_hdrs *h, struct rw_edit **out);

/* Unfold a raw value (CRLF before WSP removed, outer WSP trimmed). */
char *rw_hdr_unfold(const char *raw, size_t len);
/* Unfold and decode RFC 2047 encoded words to UTF-8. */
char *rw_hdr_decode(const char *raw, size_t len);
/* Text to a header value: encoded words when not pure ASCII. */
char *rw_hdr_encode(const char *text);
/* Whether addr is a mailbox the host accepts (local@domain, no spaces,
 * no angle brackets; UTF-8 allowed). */
int rw_addr_valid(const char *addr);

/*
 * Rewrite the addresses of an address field (From, To, Cc) in place: fn
 * gets each address (the text inside <> or a bare local@domain) and
 * returns 1 with a malloc'ed replacement in *out, 0 to keep it, or -1 to
 * fail. Everything else (display names, comments, folding) is kept byte
 * for byte. Returns the number of addresses replaced, or -1.
 */
typedef int (*rw_addr_fn)(void *ud, const char *addr, char **out);
int rw_hdr_map_addrs(const char *raw, rw_addr_fn fn, void *ud, struct pstr *out);

#endif
