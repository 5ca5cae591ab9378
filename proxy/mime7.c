/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mime7: 8BITMIME -> 7-bit downgrade (see mime7.h for what is converted
 * and what is refused).
 *
 * How: GMime parses the canonical message into a tree; a walk fixes what
 * is 8-bit (headers, leaf contents, preambles) in place, refusing what it
 * cannot fix; GMime writes the tree back with CRLF newlines; a last pass
 * copies that into the caller's buffer, turning any stray bare LF into CRLF
 * and checking that no 8-bit byte is left. That check is the safety net: a
 * case the walk did not foresee ends as "unconvertible", never as 8-bit
 * data sent to an upstream that did not ask for it.
 *
 * Ownership: every GMime object is created and released inside one
 * mime7_downgrade() call; the caller owns msg and out.
 */
#include "mime7.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

/*
 * g_mime_init() counts calls without a lock, and GMime cannot be set up
 * again after g_mime_shutdown() (its type registry stays torn down), so
 * the state only moves forward: NONE -> READY -> DOWN.
 */
enum mime7__state { MIME7_NONE, MIME7_READY, MIME7_DOWN };
static pthread_mutex_t mime7_lock = PTHREAD_MUTEX_INITIALIZER;
static enum mime7__state mime7_state;

void mime7_init(void)
{
    pthread_mutex_lock(&mime7_lock);
    if (mime7_state == MIME7_NONE) {
        g_mime_init();
        mime7_state = MIME7_READY;
    }
    pthread_mutex_unlock(&mime7_lock);
}

void mime7_shutdown(void)
{
    pthread_mutex_lock(&mime7_lock);
    if (mime7_state == MIME7_READY)
        g_mime_shutdown();
    mime7_state = MIME7_DOWN;
    pthread_mutex_unlock(&mime7_lock);
}

/* Initialise if needed; false once shut down. */
static bool mime7__ready(void)
{
    bool ok;

    mime7_init();
    pthread_mutex_lock(&mime7_lock);
    ok = mime7_state == MIME7_READY;
    pthread_mutex_unlock(&mime7_lock);
    return ok;
}

bool mime7_is_8bit(const char *msg, size_t len)
{
    const uint64_t high = 0x8080808080808080ULL;
    size_t i = 0;

    /* Eight bytes at a time; memcpy keeps it legal for any alignment. */
    for (; i + 32 <= len; i += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, msg + i, 8);
        memcpy(&b, msg + i + 8, 8);
        memcpy(&c, msg + i + 16, 8);
        memcpy(&d, msg + i + 24, 8);
        if ((a | b | c | d) & high)
            return true;
    }
    for (; i < len; i++)
        if ((unsigned char)msg[i] >= 0x80)
            return true;
    return false;
}

/* ---- the walk ---------------------------------------------------------- */

struct mime7__walk {
    char *why;        /* caller's reason buffer; may be NULL */
    size_t whylen;
    int rc;           /* first failure: MIME7_UNCONVERTIBLE or -errno */
    int in_signed;    /* depth inside multipart/signed: nothing may change */
    bool changed_body; /* a leaf of the current message was re-encoded */
};

static void mime7__fail(struct mime7__walk *w, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void mime7__fail(struct mime7__walk *w, int rc, const char *fmt, ...)
{
    va_list ap;

    if (w->rc != 0)
        return; /* the first reason is the one the client hears */
    w->rc = rc;
    if (w->why != NULL && w->whylen > 0) {
        va_start(ap, fmt);
        vsnprintf(w->why, w->whylen, fmt, ap);
        va_end(ap);
    }
}

/*
 * GMime's "critical" findings mean it skipped or reinterpreted part of the
 * input (a header line without a colon is dropped, a part without headers
 * or content ignored, conflicting headers resolved one way). Converting
 * what it understood would silently lose or change content, so refuse.
 * Plain warnings (a missing closing boundary, duplicated headers) leave
 * every byte in the tree and are fine.
 */
static void mime7__parser_warning(gint64 offset, GMimeParserWarning code, const gchar *item,
                                  gpointer user_data)
{
    struct mime7__walk *w = user_data;
    const char *what;

    (void)item;
    switch (code) {
    case GMIME_CRIT_INVALID_HEADER_NAME:
        what = "invalid header line";
        break;
    case GMIME_CRIT_CONFLICTING_HEADER:
        what = "conflicting MIME headers";
        break;
    case GMIME_CRIT_CONFLICTING_PARAMETER:
        what = "conflicting MIME parameters";
        break;
    case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
        what = "multipart without boundary";
        break;
    case GMIME_CRIT_NESTING_OVERFLOW:
        what = "MIME structure nested too deeply";
        break;
    case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
        what = "MIME part without headers or content";
        break;
    default:
        return;
    }
    mime7__fail(w, MIME7_UNCONVERTIBLE, "malformed MIME (%s near offset %lld)", what,
                (long long)offset);
}

static bool mime7__str_8bit(const char *s)
{
    return s != NULL && mime7_is_8bit(s, strlen(s));
}

/* Copy a header name into a bounded, printable form for a reply text. */
static const char *mime7__printable(const char *s, char *tmp, size_t tmplen)
{
    size_t i;

    for (i = 0; s != NULL && s[i] != '\0' && i + 1 < tmplen; i++)
        tmp[i] = ((unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f) ? s[i] : '?';
    tmp[i] = '\0';
    return tmp;
}

/* Fields whose value may carry RFC 2047 encoded-words as a whole
 * (unstructured, RFC 5322 §3.6.5 and §3.6.8, RFC 2045 §8) or in phrases of
 * an address list, which GMime's address formatter re-encodes. */
static bool mime7__header_encodable(const char *name)
{
    static const char *const fields[] = {
        "Subject", "Comments", "Content-Description",
        "From", "Sender", "Reply-To", "To", "Cc", "Bcc",
        "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Bcc",
    };

    if (strncasecmp(name, "X-", 2) == 0)
        return true;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (strcasecmp(name, fields[i]) == 0)
            return true;
    return false;
}

static void mime7__fix_headers(struct mime7__walk *w, GMimeObject *obj)
{
    GMimeHeaderList *list = g_mime_object_get_header_list(obj);
    char tmp[64];
    int n;

    if (list == NULL)
        return;
    n = g_mime_header_list_get_count(list);
    for (int i = 0; i < n && w->rc == 0; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(list, i);
        const char *name = g_mime_header_get_raw_name(h);
        const char *raw = g_mime_header_get_raw_value(h);
        const char *value;
        char *copy;

        if (!mime7__str_8bit(raw) && !mime7__str_8bit(name))
            continue;
        if (mime7__str_8bit(name)) {
            mime7__fail(w, MIME7_UNCONVERTIBLE, "8-bit header field name");
            return;
        }
        if (w->in_signed) {
            mime7__fail(w, MIME7_UNCONVERTIBLE,
                        "8-bit %s header inside multipart/signed",
                        mime7__printable(name, tmp, sizeof(tmp)));
            return;
        }
        if (!mime7__header_encodable(name)) {
            mime7__fail(w, MIME7_UNCONVERTIBLE, "8-bit data in %s header field",
                        mime7__printable(name, tmp, sizeof(tmp)));
            return;
        }
        /* Raw 8-bit headers without a declared charset: only UTF-8
         * (RFC 6532's choice) can be labelled honestly. */
        if (!g_utf8_validate(raw, -1, NULL)) {
            mime7__fail(w, MIME7_UNCONVERTIBLE, "%s header is 8-bit but not UTF-8",
                        mime7__printable(name, tmp, sizeof(tmp)));
            return;
        }
        /* The decoded value (unfolded, encoded-words already decoded);
         * setting it makes GMime encode and fold it afresh. Copied first:
         * set_value frees the string get_value returned. */
        value = g_mime_header_get_value(h);
        if (value == NULL) {
            mime7__fail(w, MIME7_UNCONVERTIBLE, "unreadable %s header",
                        mime7__printable(name, tmp, sizeof(tmp)));
            return;
        }
        copy = g_strdup(value);
        g_mime_header_set_value(h, NULL, copy, "utf-8");
        g_free(copy);
    }
}

/* Replace 8-bit bytes of a preamble/epilogue with '?'. */
static char *mime7__sanitize(const char *s)
{
    char *copy = g_strdup(s);

    for (char *p = copy; *p != '\0'; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    return copy;
}

/* Change an 8bit/binary Content-Transfer-Encoding label of a composite
 * (multipart, message/rfc822) to 7bit once its inside is 7-bit. */
static void mime7__relabel_composite(struct mime7__walk *w, GMimeObject *obj)
{
    const char *cte = g_mime_object_get_header(obj, "Content-Transfer-Encoding");
    char *trimmed;
    bool eightbit;

    if (cte == NULL)
        return;
    trimmed = g_strstrip(g_strdup(cte));
    eightbit = g_ascii_strcasecmp(trimmed, "8bit") == 0 ||
               g_ascii_strcasecmp(trimmed, "binary") == 0;
    g_free(trimmed);
    if (eightbit && !w->in_signed)
        g_mime_object_set_header(obj, "Content-Transfer-Encoding", "7bit", NULL);
}

/* The raw (still encoded) bytes of a leaf, in a new mem stream. */
static GMimeStream *mime7__raw_content(GMimeDataWrapper *dw)
{
    GMimeStream *src = g_mime_data_wrapper_get_stream(dw);
    GMimeStream *mem = g_mime_stream_mem_new();

    if (src != NULL) {
        g_mime_stream_reset(src);
        if (g_mime_stream_write_to_stream(src, mem) < 0) {
            g_object_unref(mem);
            return NULL;
        }
        g_mime_stream_reset(src);
    }
    return mem;
}

static void mime7__fix_leaf(struct mime7__walk *w, GMimePart *part)
{
    GMimeObject *obj = GMIME_OBJECT(part);
    GMimeDataWrapper *dw = g_mime_part_get_content(part);
    GMimeContentEncoding enc = g_mime_part_get_content_encoding(part);
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    GMimeStream *raw, *decoded;
    GMimeDataWrapper *ndw;
    GByteArray *bytes;
    bool text, eightbit;

    if (dw == NULL)
        return; /* empty body: nothing to encode */
    raw = mime7__raw_content(dw);
    if (raw == NULL) {
        mime7__fail(w, -EIO, "cannot read a MIME part");
        return;
    }
    bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(raw));
    eightbit = mime7_is_8bit((const char *)bytes->data, bytes->len);

    if (!eightbit && enc != GMIME_CONTENT_ENCODING_BINARY) {
        /* 7-bit bytes under an 8bit label: the label alone is the lie. */
        if (enc == GMIME_CONTENT_ENCODING_8BIT && !w->in_signed)
            g_mime_part_set_content_encoding(part, GMIME_CONTENT_ENCODING_7BIT);
        g_object_unref(raw);
        return;
    }
    if (w->in_signed) {
        mime7__fail(w, MIME7_UNCONVERTIBLE,
                    "8-bit part inside multipart/signed; re-encoding would break the signature");
        g_object_unref(raw);
        return;
    }
    if (GMIME_IS_MESSAGE_PARTIAL(part)) {
        mime7__fail(w, MIME7_UNCONVERTIBLE, "8-bit message/partial cannot be re-encoded");
        g_object_unref(raw);
        return;
    }

    text = ct != NULL && g_mime_content_type_is_type(ct, "text", "*");
    if (text && g_mime_content_type_get_parameter(ct, "charset") == NULL) {
        /* Without a charset the reader would assume US-ASCII (RFC 2045
         * §5.2) and the 8-bit bytes would be garbage after decoding. */
        bool utf8 = enc != GMIME_CONTENT_ENCODING_BASE64 &&
                    enc != GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE &&
                    g_utf8_validate((const char *)bytes->data, (gssize)bytes->len, NULL);
        g_mime_object_set_content_type_parameter(obj, "charset", utf8 ? "utf-8" : "unknown-8bit");
    }
    g_object_unref(raw);

    /* Decode once (identity for 7bit/8bit/binary; undoes a QP or base64
     * body that carried stray 8-bit bytes) and let GMime encode on write. */
    decoded = g_mime_stream_mem_new();
    if (g_mime_data_wrapper_write_to_stream(dw, decoded) < 0) {
        g_object_unref(decoded);
        mime7__fail(w, -EIO, "cannot decode a MIME part");
        return;
    }
    g_mime_stream_reset(decoded);
    ndw = g_mime_data_wrapper_new_with_stream(decoded, GMIME_CONTENT_ENCODING_DEFAULT);
    g_object_unref(decoded);
    g_mime_part_set_content(part, ndw); /* takes its own reference */
    g_object_unref(ndw);
    g_mime_part_set_content_encoding(part, text ? GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE
                                                : GMIME_CONTENT_ENCODING_BASE64);
    w->changed_body = true;
}

static void mime7__walk_object(struct mime7__walk *w, GMimeObject *obj, int depth);

static void mime7__walk_message(struct mime7__walk *w, GMimeMessage *msg, int depth)
{
    GMimeObject *body;
    bool changed_before = w->changed_body;

    w->changed_body = false;
    mime7__fix_headers(w, GMIME_OBJECT(msg));
    body = g_mime_message_get_mime_part(msg);
    if (body != NULL && w->rc == 0)
        mime7__walk_object(w, body, depth + 1);
    /* A body we gave a Content-Transfer-Encoding is MIME now, and MIME
     * needs its version field (RFC 2045 §4), also in an inner message. */
    if (w->rc == 0 && w->changed_body &&
        g_mime_object_get_header(GMIME_OBJECT(msg), "MIME-Version") == NULL)
        g_mime_object_set_header(GMIME_OBJECT(msg), "MIME-Version", "1.0", NULL);
    w->changed_body = w->changed_body || changed_before;
}

static void mime7__walk_multipart(struct mime7__walk *w, GMimeMultipart *mp, int depth)
{
    const char *pro = g_mime_multipart_get_prologue(mp);
    const char *epi = g_mime_multipart_get_epilogue(mp);
    int n = g_mime_multipart_get_count(mp);
    bool is_signed = GMIME_IS_MULTIPART_SIGNED(mp);

    if (n == 0 && (mime7__str_8bit(pro) || mime7__str_8bit(epi))) {
        /* No boundary found: the whole body landed in the preamble. It is
         * content, not ignorable text, and its type is unknown. */
        mime7__fail(w, MIME7_UNCONVERTIBLE, "8-bit multipart body without any part");
        return;
    }
    if (mime7__str_8bit(pro) || mime7__str_8bit(epi)) {
        if (w->in_signed) {
            mime7__fail(w, MIME7_UNCONVERTIBLE, "8-bit preamble inside multipart/signed");
            return;
        }
        if (mime7__str_8bit(pro)) {
            char *s = mime7__sanitize(pro);
            g_mime_multipart_set_prologue(mp, s);
            g_free(s);
        }
        if (mime7__str_8bit(epi)) {
            char *s = mime7__sanitize(epi);
            g_mime_multipart_set_epilogue(mp, s);
            g_free(s);
        }
    }
    if (is_signed)
        w->in_signed++;
    for (int i = 0; i < n && w->rc == 0; i++)
        mime7__walk_object(w, g_mime_multipart_get_part(mp, i), depth + 1);
    if (is_signed)
        w->in_signed--;
}

/* Deep enough for any real message; GMime's parser has its own limits,
 * this only keeps our recursion bounded whatever it builds. */
#define MIME7_MAX_DEPTH 64

static void mime7__walk_object(struct mime7__walk *w, GMimeObject *obj, int depth)
{
    if (depth > MIME7_MAX_DEPTH) {
        mime7__fail(w, MIME7_UNCONVERTIBLE, "MIME structure nested too deeply");
        return;
    }
    mime7__fix_headers(w, obj);
    if (w->rc != 0)
        return;
    if (GMIME_IS_MULTIPART(obj)) {
        mime7__walk_multipart(w, GMIME_MULTIPART(obj), depth);
        if (w->rc == 0)
            mime7__relabel_composite(w, obj);
    } else if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        if (inner != NULL)
            mime7__walk_message(w, inner, depth);
        if (w->rc == 0)
            mime7__relabel_composite(w, obj);
    } else if (GMIME_IS_PART(obj)) {
        mime7__fix_leaf(w, GMIME_PART(obj));
    }
}

/* ---- output ------------------------------------------------------------ */

/*
 * Append GMime's output to out with every line ending CRLF (GMime writes
 * some raw text, such as an epilogue, with the newline it stored) and
 * check that nothing 8-bit is left. Linear in the size.
 */
static int mime7__emit(const unsigned char *p, size_t n, buf_t *out, struct mime7__walk *w)
{
    size_t start = 0;

    buf_reserve(out, n + n / 32 + 2);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];

        if (c >= 0x80) {
            mime7__fail(w, MIME7_UNCONVERTIBLE, "8-bit data left that cannot be re-encoded");
            return MIME7_UNCONVERTIBLE;
        }
        if (c == '\n' && (i == 0 || p[i - 1] != '\r')) {
            buf_append(out, p + start, i - start);
            buf_append(out, "\r\n", 2);
            start = i + 1;
        } else if (c == '\r' && (i + 1 == n || p[i + 1] != '\n')) {
            buf_append(out, p + start, i - start);
            buf_append(out, "\r\n", 2);
            start = i + 1;
        }
    }
    buf_append(out, p + start, n - start);
    return 0;
}

int mime7_downgrade(const char *msg, size_t len, buf_t *out, char *why, size_t whylen)
{
    struct mime7__walk w = {.why = why, .whylen = whylen};
    GMimeStream *in = NULL, *res = NULL;
    GMimeParser *parser = NULL;
    GMimeMessage *m = NULL;
    GMimeFormatOptions *fo = NULL;
    GMimeParserOptions *po = NULL;
    GByteArray *bytes;
    size_t orig_len = out->len;
    int rc;

    if (why != NULL && whylen > 0)
        why[0] = '\0';
    if (!mime7_is_8bit(msg, len)) {
        buf_append(out, msg, len);
        return 0;
    }
    /* 8BITMIME data has no NUL (RFC 6152 §2 via RFC 5321 §2.3.8); GMime
     * keeps header values as C strings and would cut them there. */
    if (memchr(msg, '\0', len) != NULL) {
        mime7__fail(&w, MIME7_UNCONVERTIBLE, "NUL byte in an 8-bit message");
        return w.rc;
    }

    if (!mime7__ready()) {
        mime7__fail(&w, -EINVAL, "MIME library already shut down");
        return w.rc;
    }
    in = g_mime_stream_mem_new_with_buffer(msg, len);
    parser = g_mime_parser_new_with_stream(in);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    /* Header lists keep a pointer to the options: freed after the tree. */
    po = g_mime_parser_options_new();
    g_mime_parser_options_set_warning_callback(po, mime7__parser_warning, &w);
    m = g_mime_parser_construct_message(parser, po);
    if (m == NULL) {
        mime7__fail(&w, MIME7_UNCONVERTIBLE, "message cannot be parsed as MIME");
        goto done;
    }
    if (w.rc != 0)
        goto done;

    mime7__walk_message(&w, m, 0);
    if (w.rc != 0)
        goto done;

    fo = g_mime_format_options_new();
    g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
    res = g_mime_stream_mem_new();
    if (g_mime_object_write_to_stream(GMIME_OBJECT(m), fo, res) < 0) {
        mime7__fail(&w, -EIO, "cannot write the converted message");
        goto done;
    }
    bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(res));
    rc = mime7__emit(bytes->data, bytes->len, out, &w);
    if (rc < 0)
        mime7__fail(&w, rc, "out of memory");

done:
    if (res != NULL)
        g_object_unref(res);
    if (fo != NULL)
        g_mime_format_options_free(fo);
    if (m != NULL)
        g_object_unref(m);
    if (parser != NULL)
        g_object_unref(parser);
    if (in != NULL)
        g_object_unref(in);
    if (po != NULL)
        g_mime_parser_options_free(po);
    if (w.rc != 0 && out->len > orig_len) {
        out->len = orig_len;
        out->ptr[orig_len] = '\0';
    }
    return w.rc;
}
