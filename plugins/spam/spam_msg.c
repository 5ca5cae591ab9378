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
    char *dec = g_mime_utils_header_decode_text(NULL, h->raw);
    h->decoded = pstr_xstrdup(dec ? dec : h->raw);
    g_free(dec);
}

/* Split the header section; returns the offset of the body. */
static size_t spam_msg__headers(struct spam_msg *m, const char *d, size_t len)
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
        if (content == i) { /* empty line: end of the header section */
            if (name)
                spam_msg__add_header(m, name, nlen, val, (size_t)(d + i - val), &cap);
            return next;
        }
        if (d[i] == ' ' || d[i] == '\t') {
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
            while (n > 0 && (d[i + n - 1] == ' ' || d[i + n - 1] == '\t'))
                n--;
            if (n > 0) {
                name = d + i;
                nlen = n;
                val = colon + 1;
            }
        } else if (m->nhdrs > 0 || !(content - i >= 5 && memcmp(d + i, "From ", 5) == 0)) {
            /* Not a header line: the body starts here (malformed message). */
            return i;
        }
        i = next;
    }
    if (name)
        spam_msg__add_header(m, name, nlen, val, (size_t)(d + len - val), &cap);
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

static char *spam_msg__dup(const char *s)
{
    return pstr_xstrdup(s ? s : "");
}

struct spam_msg *spam_msg_parse(const char *data, size_t len, const struct spam_msg_env *env, size_t max_scan)
{
    spam_msg_global_init();
    struct spam_msg *m = pstr_xcalloc(1, sizeof(*m));
    m->raw = data;
    m->rawlen = len;
    size_t body = spam_msg__headers(m, data, len);
    struct spam_msg__walk w = {m, max_scan ? max_scan : (size_t)-1, 0};

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

    m->env_from = spam_msg__dup(env ? env->sender : NULL);
    m->client_ip = spam_msg__dup(env ? env->client_ip : NULL);
    m->helo = spam_msg__dup(env ? env->helo : NULL);
    m->client_name = spam_msg__dup(env ? env->client_name : NULL);
    for (size_t i = 0; env && i < env->nrcpts; i++) {
        spam_msg__sep(&m->env_rcpt);
        pstr_puts(&m->env_rcpt, env->rcpts[i] ? env->rcpts[i] : "");
    }
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
