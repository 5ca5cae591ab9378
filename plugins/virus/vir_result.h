/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_result: what one scan found, independent of the backend (libclamav
 * in process or clamd over a socket). Both backends fill a struct
 * vir_result; vir_policy turns it into a verdict. The struct owns its
 * strings (fixed arrays), so a result can outlive the engine that made it:
 * libclamav's virname points into engine memory and an engine may be
 * swapped out right after the scan.
 */
#ifndef VIR_RESULT_H
#define VIR_RESULT_H

#include <stddef.h>

enum vir_kind {
    VIR_CLEAN = 0, /* nothing found */
    VIR_VIRUS,     /* a signature matched: name holds it */
    VIR_LIMIT,     /* a scan limit was exceeded: name says which */
    VIR_ERROR,     /* the scanner failed: name holds a short reason */
    VIR_KIND_COUNT
};

#define VIR_NAME_MAX 128

struct vir_result {
    enum vir_kind kind;
    char name[VIR_NAME_MAX]; /* signature, limit name, or error code such as
                                "not-ready"; "" when clean */
    char detail[256];        /* free text for the log (errors), may be "" */
};

/* "clean", "virus", "limit", "error" (the counters' label values). */
const char *vir_result_kind_name(enum vir_kind k);

/* Set kind and name; the name is copied through vir_result_clean_name so
 * it is safe in an SMTP reply, a header and a log line. */
void vir_result_set(struct vir_result *r, enum vir_kind k, const char *name, size_t len);

/* Copy `len` bytes of `in` into out (size outsz, NUL-terminated), keeping
 * only [A-Za-z0-9] and ._-:/+ (signature names from clamd are not trusted
 * to be printable); anything else becomes '_'. Returns the length written. */
/* An error: code is a short token (see VIR_ERR_*), detail printf-style. */
void vir_result_error(struct vir_result *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Put before every message a scanner (libclamav or clamd) sees. ClamAV
 * takes a message for mail, and decodes its uuencoded, BinHex and MIME
 * parts, only when it begins with a field it knows (From:, Received:,
 * Subject: ...); a message that begins with another field (one the client
 * chose, or the Authentication-Results dkim_verify puts on top) was
 * scanned as plain text, and a uuencoded virus in it went through.
 */
#define VIR_MAIL_MARK "Received: by sluice (virus scan)\r\n"

/* Error codes (vir_result.name for VIR_ERROR). */
#define VIR_ERR_NOT_READY "not-ready" /* no engine / no signatures loaded */
#define VIR_ERR_SCAN "scan-failed"    /* libclamav or clamd reported an error */
#define VIR_ERR_CONNECT "connect"     /* clamd unreachable */
#define VIR_ERR_TIMEOUT "timeout"     /* clamd did not answer in time */
#define VIR_ERR_PROTOCOL "protocol"   /* clamd answered something unexpected */

size_t vir_result_clean_name(char *out, size_t outsz, const char *in, size_t len);

#endif
