/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_msg: build the per-message view the rules match (see spam_msg.h).
 *
 * Header fields are split by our own small parser (exact raw values, no
 * reordering), decoded with GMime's RFC 2047 decoder. The body is parsed
 * by GMime; a walk over the MIME tree collects the text of text/plain and
 * text/html leaves (converted to UTF-8 by GMime), feeds HTML to spam_html
 * and text to spam_uri. All GMime objects live within spam_msg_parse()
 * or spam_msg_field(); the view owns only plain C strings.
 */
#include "spam_msg.h"
#include "spam_html.h"
#include "spam_uri.h"
#include "spam_utf8.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

static pthread_once_t spam_msg__once = PTHREAD_ONCE_INIT;

static void spam_msg__init(void)
{
    /* Never paired with g_mime_shutdown(): the daemon may use GMime too. */
    g_mime_init();
}

void spam_msg_global_init(void)
{
    pthread_once(&spam_msg__once, spam_msg__init);
}

/* ---- headers ----------------------------------------------------------- */

char *spam_msg_decode_header(const char *raw)
{
    /* ASCII without "=?" holds no encoded word and nothing to convert:
     * GMime would give it back as it is (most fields of most mail). */
    const char *p = raw;
    while (*p && (unsigned char)*p < 0x80 && !(p[0] == '=' && p[1] == '?'))
        p++;
    if (!*p)
        return pstr_xstrdup(raw);
    char *dec = g_mime_utils_header_decode_text(NULL, raw);
    char *out = pstr_xstrdup(dec ? dec : raw);
    g_free(dec);
    return out;
}

static void spam_msg__add_header(struct spam_msg *m, const char *name, size_t nlen, const char *v, size_t vlen,
                                 size_t *cap)
{
    if (m->nhdrs == *cap) {
        *cap = *cap ? *cap * 2 : 32;
        m->hdrs = pstr_xrealloc(m->hdrs, *cap * sizeof(*m->hdrs));
    }
    struct pstr raw = PSTR_INIT;
    /* Unfold: drop CR and LF; the WSP that follows them stays. */
    size_t i = 0;
    while (i < vlen && (v[i] == ' ' || v[i] == '\t'))
        i++;
    for (; i < vlen; i++)
        if (v[i] != '\r' && v[i] != '\n')
            pstr_putc(&raw, v[i]);
    while (raw.len > 0 && (raw.ptr[raw.len - 1] == ' ' || raw.ptr[raw.len - 1] == '\t'))
        raw.ptr[--raw.len] = '\0';
    struct spam_msg_header *h = &m->hdrs[m->nhdrs++];
    h->name = pstr_xstrndup(name, nlen);
    h->raw = pstr_steal(&raw);
    h->decoded = spam_msg_decode_header(h->raw);
}

/* A field name GMime takes as it is: visible ASCII, no colon. */
static int spam_msg__name_ok(const char *p, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if ((unsigned char)p[k] < 33 || (unsigned char)p[k] > 126 || p[k] == ':')
            return 0;
    return n > 0;
}

/*
 * Split the header section; returns the offset of the body. *plain is
 * cleared unless the section is one that GMime's parser splits exactly as
 * we do: "name: value" lines and their continuations, no NUL or bare CR,
 * ended by an empty line (see spam_msg__plain_body).
 */
static size_t spam_msg__headers(struct spam_msg *m, const char *d, size_t len, int *plain)
{
    size_t cap = 0, i = 0;
    const char *name = NULL, *val = NULL;
    size_t nlen = 0;
    while (i < len) {
        const char *nl = memchr(d + i, '\n', len - i);
        size_t le = nl ? (size_t)(nl - d) : len;
        size_t next = nl ? le + 1 : len;
        size_t content = le;
        if (content > i && d[content - 1] == '\r')
            content--;
        if (*plain && (memchr(d + i, '\0', content - i) || memchr(d + i, '\r', content - i)))
            *plain = 0;
        if (content == i) { /* empty line: end of the header section */
            if (name)
                spam_msg__add_header(m, name, nlen, val, (size_t)(d + i - val), &cap);
            if (!nl)
                *plain = 0;
            return next;
        }
        if (d[i] == ' ' || d[i] == '\t') {
            /* A continuation before any field, or one of blanks only. */
            size_t b = i;
            while (b < content && (d[b] == ' ' || d[b] == '\t'))
                b++;
            if (!name || b == content)
                *plain = 0;
            i = next; /* continuation: stays inside [val, ...) */
            continue;
        }
        if (name) {
            spam_msg__add_header(m, name, nlen, val, (size_t)(d + i - val), &cap);
            name = NULL;
        }
        const char *colon = memchr(d + i, ':', content - i);
        if (colon) {
            size_t n = (size_t)(colon - (d + i));
            if (!spam_msg__name_ok(d + i, n))
                *plain = 0;
            while (n > 0 && (d[i + n - 1] == ' ' || d[i + n - 1] == '\t'))
                n--;
            if (n > 0) {
                name = d + i;
                nlen = n;
                val = colon + 1;
            }
        } else if (m->nhdrs > 0 || !(content - i >= 5 && memcmp(d + i, "From ", 5) == 0)) {
            /* Not a header line: the body starts here (malformed message). */
            *plain = 0;
            return i;
        } else {
            *plain = 0;
        }
        i = next;
    }
    if (name)
        spam_msg__add_header(m, name, nlen, val, (size_t)(d + len - val), &cap);
    *plain = 0;
    return len;
}

/* ---- body -------------------------------------------------------------- */

struct spam_msg__walk {
    struct spam_msg *m;
    size_t max_scan;
    size_t nparts;
};

static void spam_msg__add_uri(void *arg, const char *uri, size_t ulen)
{
    struct spam_msg *m = arg;
    if (m->nuris >= SPAM_MSG_MAX_URIS)
        return;
    for (size_t i = 0; i < m->nuris; i++)
        if (strlen(m->uris[i]) == ulen && memcmp(m->uris[i], uri, ulen) == 0)
            return;
    m->uris = pstr_xrealloc(m->uris, (m->nuris + 1) * sizeof(*m->uris));
    m->uris[m->nuris++] = pstr_xstrndup(uri, ulen);
}

static void spam_msg__sep(struct pstr *s)
{
    if (s->len > 0 && s->ptr[s->len - 1] != '\n')
        pstr_putc(s, '\n');
}

static void spam_msg__text(struct spam_msg__walk *w, const char *t, size_t n, int html)
{
    struct spam_msg *m = w->m;
    if (n > w->max_scan) {
        n = w->max_scan;
        m->truncated = 1;
    }
    spam_msg__sep(&m->rawtext);
    pstr_append(&m->rawtext, t, n);
    spam_msg__sep(&m->text);
    if (!html) {
        pstr_append(&m->text, t, n);
        spam_uri_extract(t, n, SPAM_MSG_MAX_URIS, spam_msg__add_uri, m);
        return;
    }
    struct spam_html_result h;
    memset(&h, 0, sizeof(h));
    spam_html_parse(t, n, &h);
    pstr_append(&m->text, pstr_cstr(&h.text), h.text.len);
    if (h.hidden.len) {
        spam_msg__sep(&m->hidden);
        pstr_append(&m->hidden, h.hidden.ptr, h.hidden.len);
    }
    for (size_t i = 0; i < h.nuris; i++)
        spam_msg__add_uri(m, h.uris[i], strlen(h.uris[i]));
    spam_uri_extract(pstr_cstr(&h.text), h.text.len, SPAM_MSG_MAX_URIS, spam_msg__add_uri, m);
    for (size_t i = 0; i < h.nlinks; i++) {
        char th[256], hh[256];
        if (spam_uri_text_host(h.links[i].text, th, sizeof(th)) == 0 &&
            spam_uri_host(h.links[i].href, hh, sizeof(hh)) == 0 && spam_uri_hosts_differ(th, hh)) {
            spam_msg__sep(&m->mismatch);
            pstr_printf(&m->mismatch, "%s %s", th, hh);
        }
    }
    spam_html_result_free(&h);
}

static void spam_msg__leaf(struct spam_msg__walk *w, GMimeObject *o)
{
    struct spam_msg *m = w->m;
    GMimeContentType *ct = g_mime_object_get_content_type(o);
    char *type = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
    char lt[128];
    snprintf(lt, sizeof(lt), "%s", type ? type : "text/plain");
    g_free(type);
    for (char *p = lt; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *disp = g_mime_object_get_disposition(o);
    GMimePart *part = GMIME_PART(o);
    GMimeContentEncoding enc = g_mime_part_get_content_encoding(part);
    const char *encs = enc == GMIME_CONTENT_ENCODING_DEFAULT ? "7bit" : g_mime_content_encoding_to_string(enc);
    char ld[32];
    snprintf(ld, sizeof(ld), "%s", disp && *disp ? disp : "inline");
    for (char *p = ld; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    spam_msg__sep(&m->parts);
    pstr_printf(&m->parts, "%s %s %s", lt, encs ? encs : "7bit", ld);
    const char *fn = g_mime_part_get_filename(part);
    if (fn && *fn) {
        spam_msg__sep(&m->filenames);
        for (const char *p = fn; *p; p++)
            pstr_putc(&m->filenames, (*p == '\r' || *p == '\n') ? ' ' : *p);
    }
    int html = strcmp(lt, "text/html") == 0;
    if ((html || strcmp(lt, "text/plain") == 0) && GMIME_IS_TEXT_PART(o)) {
        char *t = g_mime_text_part_get_text(GMIME_TEXT_PART(o));
        if (t) {
            spam_msg__text(w, t, strlen(t), html);
            g_free(t);
        }
    }
}

static void spam_msg__walk(struct spam_msg__walk *w, GMimeObject *o, int depth)
{
    if (!o || depth > SPAM_MSG_MAX_DEPTH || w->nparts >= SPAM_MSG_MAX_PARTS)
        return;
    w->nparts++;
    if (GMIME_IS_MULTIPART(o)) {
        GMimeMultipart *mp = GMIME_MULTIPART(o);
        int n = g_mime_multipart_get_count(mp);
        for (int i = 0; i < n; i++)
            spam_msg__walk(w, g_mime_multipart_get_part(mp, i), depth + 1);
    } else if (GMIME_IS_MESSAGE_PART(o)) {
        GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));
        spam_msg__sep(&w->m->parts);
        pstr_puts(&w->m->parts, "message/rfc822 7bit inline");
        if (inner)
            spam_msg__walk(w, g_mime_message_get_mime_part(inner), depth + 1);
    } else if (GMIME_IS_PART(o)) {
        spam_msg__leaf(w, o);
    }
}

/* ---- messages that need no MIME parser ------------------------------------ */

static int spam_msg__shortcut = 1;

void spam_msg_set_plain_shortcut(int on)
{
    spam_msg__shortcut = on;
}

/* p[0..n) without leading and trailing blanks. */
static void spam_msg__trim(const char **p, size_t *n)
{
    while (*n > 0 && (**p == ' ' || **p == '\t'))
        (*p)++, (*n)--;
    while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
        (*n)--;
}

static int spam_msg__is(const char *p, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

/* The charsets spam_msg__plain_body knows GMime converts to nothing new. */
enum spam_msg__cs { SPAM_MSG_CS_NONE, SPAM_MSG_CS_ASCII, SPAM_MSG_CS_UTF8 };

/*
 * A Content-Type value that GMime reads as text/plain: "text/plain", then
 * only the parameters charset (us-ascii or utf-8), format and delsp,
 * unquoted or quoted without escapes, no comments, no encoded words,
 * ASCII only. *cs is the charset named. Anything else (a name= parameter, say, which GMime takes as
 * the part's file name) is left to GMime.
 */
static int spam_msg__plain_type(const char *v, enum spam_msg__cs *cs)
{
    /* GMime decodes RFC 2047 words (and 8-bit text) in the whole value
     * before it reads the parameters: "=?us-ascii?q?=3B_charset=3Dutf-7?="
     * would become a charset of its own. */
    if (strchr(v, '(') || strchr(v, '\\') || strstr(v, "=?"))
        return 0;
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p >= 0x80)
            return 0;
    const char *semi = strchr(v, ';');
    size_t n = semi ? (size_t)(semi - v) : strlen(v);
    const char *t = v;
    spam_msg__trim(&t, &n);
    if (!spam_msg__is(t, n, "text/plain"))
        return 0;
    int seen_charset = 0, seen_format = 0, seen_delsp = 0;
    *cs = SPAM_MSG_CS_NONE;
    while (semi) {
        const char *p = semi + 1;
        semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq)
            return 0;
        const char *k = p, *val = eq + 1;
        size_t kn = (size_t)(eq - p), vn = len - kn - 1;
        spam_msg__trim(&k, &kn);
        spam_msg__trim(&val, &vn);
        if (vn >= 2 && val[0] == '"' && val[vn - 1] == '"')
            val++, vn -= 2;
        if (vn == 0 || memchr(val, '"', vn))
            return 0;
        if (spam_msg__is(k, kn, "charset")) {
            if (seen_charset++)
                return 0;
            if (spam_msg__is(val, vn, "us-ascii"))
                *cs = SPAM_MSG_CS_ASCII;
            else if (spam_msg__is(val, vn, "utf-8"))
                *cs = SPAM_MSG_CS_UTF8;
            else
                return 0;
        } else if (spam_msg__is(k, kn, "format")) {
            if (seen_format++)
                return 0;
        } else if (spam_msg__is(k, kn, "delsp")) {
            if (seen_delsp++)
                return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

/*
 * Whether the message is one text/plain part whose text GMime would give
 * back as the body bytes themselves, so that spam_msg_parse can skip the
 * MIME parser (a third of the plugin's work on a small message): a header
 * section GMime splits as we do (spam_msg__headers), at most one
 * Content-Type and it plain text (spam_msg__plain_type), at most one
 * Content-Transfer-Encoding and it one that decodes nothing, no
 * Content-Disposition, and a body without NUL bytes that the charset's
 * conversion to UTF-8 leaves as it is: any bytes without a charset (GMime
 * converts nothing then), ASCII for us-ascii, valid UTF-8 for utf-8 (an
 * invalid byte, GMime drops). *enc is what MIME:parts shows for the
 * encoding. The unit tests hold every corpus message and the edge cases,
 * and tests/fuzz/fuzz_spam_msg.c any input, to the same view with and
 * without this shortcut.
 */
static int spam_msg__plain_body(const struct spam_msg *m, const char *body, size_t blen,
                                const char **enc)
{
    int ntype = 0, nenc = 0;
    enum spam_msg__cs cs = SPAM_MSG_CS_NONE;
    *enc = "7bit";
    for (size_t i = 0; i < m->nhdrs; i++) {
        const struct spam_msg_header *h = &m->hdrs[i];
        if (strcasecmp(h->name, "Content-Type") == 0) {
            if (ntype++ || !spam_msg__plain_type(h->raw, &cs))
                return 0;
        } else if (strcasecmp(h->name, "Content-Transfer-Encoding") == 0) {
            if (nenc++)
                return 0;
            if (strcasecmp(h->raw, "7bit") == 0)
                *enc = "7bit";
            else if (strcasecmp(h->raw, "8bit") == 0)
                *enc = "8bit";
            else if (strcasecmp(h->raw, "binary") == 0)
                *enc = "binary";
            else
                return 0;
        } else if (strcasecmp(h->name, "Content-Disposition") == 0) {
            return 0;
        }
    }
    if (memchr(body, '\0', blen))
        return 0;
    const unsigned char *b = (const unsigned char *)body;
    switch (cs) {
    case SPAM_MSG_CS_NONE:
        return 1;
    case SPAM_MSG_CS_ASCII:
        for (size_t i = 0; i < blen; i++)
            if (b[i] >= 0x80)
                return 0;
        return 1;
    case SPAM_MSG_CS_UTF8:
        return spam_utf8_valid_prefix(b, blen) == blen;
    }
    return 0;
}

static char *spam_msg__dup(const char *s)
{
    return pstr_xstrdup(s ? s : "");
}

static void spam_msg__env(struct spam_msg *m, const struct spam_msg_env *env)
{
    m->env_from = spam_msg__dup(env ? env->sender : NULL);
    m->client_ip = spam_msg__dup(env ? env->client_ip : NULL);
    m->helo = spam_msg__dup(env ? env->helo : NULL);
    m->client_name = spam_msg__dup(env ? env->client_name : NULL);
    for (size_t i = 0; env && i < env->nrcpts; i++) {
        spam_msg__sep(&m->env_rcpt);
        pstr_puts(&m->env_rcpt, env->rcpts[i] ? env->rcpts[i] : "");
    }
}

struct spam_msg *spam_msg_parse(const char *data, size_t len, const struct spam_msg_env *env, size_t max_scan)
{
    spam_msg_global_init();
    struct spam_msg *m = pstr_xcalloc(1, sizeof(*m));
    m->raw = data;
    m->rawlen = len;
    int plain = spam_msg__shortcut;
    size_t body = spam_msg__headers(m, data, len, &plain);
    struct spam_msg__walk w = {m, max_scan ? max_scan : (size_t)-1, 0};
    const char *enc;
    if (plain && spam_msg__plain_body(m, data + body, len - body, &enc)) {
        m->plain = 1;
        pstr_printf(&m->parts, "text/plain %s inline", enc);
        spam_msg__text(&w, data + body, len - body, 0);
        spam_msg__env(m, env);
        return m;
    }

    GMimeStream *stream = g_mime_stream_mem_new_with_buffer(data, len);
    GMimeParser *parser = g_mime_parser_new_with_stream(stream);
    GMimeMessage *gm = g_mime_parser_construct_message(parser, NULL);
    if (gm && g_mime_message_get_mime_part(gm)) {
        spam_msg__walk(&w, g_mime_message_get_mime_part(gm), 0);
    } else if (body < len) {
        spam_msg__text(&w, data + body, len - body, 0);
    }
    if (gm)
        g_object_unref(gm);
    g_object_unref(parser);
    g_object_unref(stream);
    spam_msg__env(m, env);
    return m;
}

void spam_msg_free(struct spam_msg *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nhdrs; i++) {
        free(m->hdrs[i].name);
        free(m->hdrs[i].raw);
        free(m->hdrs[i].decoded);
    }
    free(m->hdrs);
    for (size_t i = 0; i < m->nuris; i++)
        free(m->uris[i]);
    free(m->uris);
    pstr_free(&m->text);
    pstr_free(&m->rawtext);
    pstr_free(&m->parts);
    pstr_free(&m->filenames);
    pstr_free(&m->hidden);
    pstr_free(&m->mismatch);
    pstr_free(&m->env_rcpt);
    free(m->env_from);
    free(m->client_ip);
    free(m->helo);
    free(m->client_name);
    free(m);
}

/* ---- field values ------------------------------------------------------ */

/* Append v as a new line of a joined value (no separator before the first). */
static void spam_msg__line(struct pstr *out, int *first, const char *v)
{
    if (!*first)
        pstr_putc(out, '\n');
    pstr_puts(out, v ? v : "");
    *first = 0;
}

static void spam_msg__addresses(InternetAddressList *l, enum spam_field_mod mod, struct pstr *out, int *first,
                                int depth)
{
    int n = l ? internet_address_list_length(l) : 0;
    for (int i = 0; i < n; i++) {
        InternetAddress *ia = internet_address_list_get_address(l, i);
        if (INTERNET_ADDRESS_IS_GROUP(ia)) {
            if (depth < 2)
                spam_msg__addresses(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)), mod, out,
                                    first, depth + 1);
            continue;
        }
        spam_msg__line(out, first,
                       mod == SPAM_MOD_ADDR ? internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia))
                                            : internet_address_get_name(ia));
    }
}

static void spam_msg__named(const struct spam_msg *m, const char *const *names, size_t nnames,
                            enum spam_field_mod mod, struct pstr *out, int *exists)
{
    size_t count = 0;
    int first = 1;
    for (size_t i = 0; i < m->nhdrs; i++) {
        const struct spam_msg_header *h = &m->hdrs[i];
        int want = 0;
        for (size_t k = 0; k < nnames; k++)
            if (strcasecmp(h->name, names[k]) == 0)
                want = 1;
        if (!want)
            continue;
        count++;
        switch (mod) {
        case SPAM_MOD_DECODED:
            spam_msg__line(out, &first, h->decoded);
            break;
        case SPAM_MOD_RAW:
            spam_msg__line(out, &first, h->raw);
            break;
        case SPAM_MOD_ADDR:
        case SPAM_MOD_NAME: {
            InternetAddressList *l = internet_address_list_parse(NULL, h->raw);
            spam_msg__addresses(l, mod, out, &first, 0);
            if (l)
                g_object_unref(l);
            break;
        }
        case SPAM_MOD_COUNT:
            break;
        }
    }
    if (mod == SPAM_MOD_COUNT)
        pstr_printf(out, "%zu", count);
    *exists = count > 0;
}

void spam_msg_field(const struct spam_msg *m, const struct spam_rule *r, struct pstr *out, int *exists)
{
    pstr_clear(out);
    const char *v = NULL;
    const struct pstr *s = NULL;
    switch (r->field) {
    case SPAM_FIELD_HEADER: {
        const char *names[1] = {r->field_name};
        spam_msg__named(m, names, 1, r->mod, out, exists);
        return;
    }
    case SPAM_FIELD_TOCC: {
        static const char *const names[2] = {"To", "Cc"};
        spam_msg__named(m, names, 2, r->mod, out, exists);
        return;
    }
    case SPAM_FIELD_ALL:
        for (size_t i = 0; i < m->nhdrs; i++) {
            spam_msg__sep(out);
            pstr_printf(out, "%s: %s", m->hdrs[i].name, m->hdrs[i].raw);
        }
        *exists = m->nhdrs > 0;
        return;
    case SPAM_FIELD_ENV_FROM: v = m->env_from; break;
    case SPAM_FIELD_ENV_RCPT: s = &m->env_rcpt; break;
    case SPAM_FIELD_CLIENT_IP: v = m->client_ip; break;
    case SPAM_FIELD_CLIENT_HELO: v = m->helo; break;
    case SPAM_FIELD_CLIENT_NAME: v = m->client_name; break;
    case SPAM_FIELD_MIME_PARTS: s = &m->parts; break;
    case SPAM_FIELD_MIME_FILENAMES: s = &m->filenames; break;
    case SPAM_FIELD_HTML_HIDDEN: s = &m->hidden; break;
    case SPAM_FIELD_HTML_MISMATCH: s = &m->mismatch; break;
    case SPAM_FIELD_KIND_COUNT: break;
    }
    if (s)
        pstr_append(out, pstr_cstr(s), s->len);
    else if (v)
        pstr_puts(out, v);
    *exists = out->len > 0;
}
