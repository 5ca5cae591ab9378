/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rw_hdr: header model, folding, RFC 2047, address fields (see rw_hdr.h).
 *
 * Folding is the host's (the model's fold function, proxy/msg.c's rule):
 * the value handed to the host is already final, so the host keeps it as
 * is and the engine's rendering is byte-exact.
 */
#include "rw_hdr.h"

#include <gmime/gmime.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static pthread_once_t rw_hdr__once = PTHREAD_ONCE_INIT;

static void rw_hdr__init(void)
{
    g_mime_init();
}

void rw_hdr_global_init(void)
{
    pthread_once(&rw_hdr__once, rw_hdr__init);
}

static int rw_hdr__wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* ---- the model -------------------------------------------------------- */

static struct rw_field *rw_hdrs__new(struct rw_hdrs *h)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 32;
        h->f = pstr_xrealloc(h->f, h->cap * sizeof(*h->f));
    }
    struct rw_field *f = &h->f[h->n++];
    memset(f, 0, sizeof(*f));
    return f;
}

void rw_hdrs_push(struct rw_hdrs *h, const char *name, size_t name_len, const char *raw, size_t raw_len)
{
    long orig = 0;
    for (size_t i = 0; i < h->n; i++)
        if (h->f[i].orig >= 0)
            orig++;
    struct rw_field *f = rw_hdrs__new(h);
    f->name = pstr_xstrndup(name, name_len);
    f->raw = pstr_xstrndup(raw, raw_len);
    f->orig = orig;
}

void rw_hdrs_parse(struct rw_hdrs *h, const char *data, size_t len, size_t *body_off)
{
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t eol = nl ? (size_t)(nl - data) : len;
        size_t line_end = eol > i && data[eol - 1] == '\r' ? eol - 1 : eol;
        if (line_end == i) { /* the blank line */
            i = nl ? eol + 1 : len;
            break;
        }
        const char *colon = memchr(data + i, ':', line_end - i);
        if (!colon || rw_hdr__wsp(data[i]))
            break; /* not a field: the body starts here */
        size_t name_len = (size_t)(colon - (data + i));
        size_t vstart = (size_t)(colon - data) + 1;
        /* The field runs on over continuation lines. */
        size_t end = nl ? eol + 1 : len;
        while (end < len && rw_hdr__wsp(data[end])) {
            const char *n2 = memchr(data + end, '\n', len - end);
            end = n2 ? (size_t)(n2 - data) + 1 : len;
        }
        size_t vend = end;
        if (vend > vstart && data[vend - 1] == '\n')
            vend--;
        if (vend > vstart && data[vend - 1] == '\r')
            vend--;
        rw_hdrs_push(h, data + i, name_len, data + vstart, vend - vstart);
        i = end;
    }
    if (body_off)
        *body_off = i;
}

void rw_hdrs_free(struct rw_hdrs *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->f[i].name);
        free(h->f[i].raw);
    }
    free(h->f);
    h->f = NULL;
    h->n = h->cap = 0;
}

long rw_hdrs_find(const struct rw_hdrs *h, const char *name, size_t nth)
{
    for (size_t i = 0; i < h->n; i++) {
        if (h->f[i].deleted || strcasecmp(h->f[i].name, name) != 0)
            continue;
        if (nth-- == 0)
            return (long)i;
    }
    return -1;
}

/* " " + value, folded by the host's rule for "Name:"; NULL when it
 * cannot be folded. */
static char *rw_hdrs__make(const struct rw_hdrs *h, const char *name, const char *text)
{
    char *enc = rw_hdr_encode(text);
    struct pstr v = PSTR_INIT;
    pstr_putc(&v, ' ');
    pstr_puts(&v, enc);
    free(enc);
    char small[256];
    char *raw = NULL;
    int n = h->fold(name, pstr_cstr(&v), small, sizeof small);
    if (n >= 0 && (size_t)n < sizeof small) {
        raw = pstr_xstrdup(small);
    } else if (n >= 0) {
        raw = pstr_xmalloc((size_t)n + 1);
        if (h->fold(name, pstr_cstr(&v), raw, (size_t)n + 1) != n) {
            free(raw);
            raw = NULL;
        }
    }
    pstr_free(&v);
    return raw;
}

int rw_hdrs_set(struct rw_hdrs *h, size_t i, const char *text)
{
    char *raw = rw_hdrs__make(h, h->f[i].name, text);
    if (!raw)
        return -1;
    if (strcmp(raw, h->f[i].raw) == 0) {
        free(raw);
        return 0;
    }
    free(h->f[i].raw);
    h->f[i].raw = raw;
    h->f[i].changed = 1;
    return 1;
}

void rw_hdrs_set_raw(struct rw_hdrs *h, size_t i, const char *raw)
{
    if (strcmp(h->f[i].raw, raw) == 0)
        return;
    free(h->f[i].raw);
    h->f[i].raw = pstr_xstrdup(raw);
    h->f[i].changed = 1;
}

int rw_hdrs_add(struct rw_hdrs *h, const char *name, const char *text)
{
    char *raw = rw_hdrs__make(h, name, text);
    if (!raw)
        return -1;
    struct rw_field *f = rw_hdrs__new(h);
    f->name = pstr_xstrdup(name);
    f->raw = raw;
    f->orig = -1;
    f->changed = 1;
    return 0;
}

void rw_hdrs_delete(struct rw_hdrs *h, size_t i)
{
    h->f[i].deleted = 1;
}

int rw_hdrs_edited(const struct rw_hdrs *h)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->f[i].changed || h->f[i].deleted)
            return 1;
    return 0;
}

void rw_hdrs_render(const struct rw_hdrs *h, struct pstr *out)
{
    for (size_t i = 0; i < h->n; i++) {
        const struct rw_field *f = &h->f[i];
        if (f->deleted)
            continue;
        pstr_puts(out, f->name);
        pstr_putc(out, ':');
        /* The host writes "Name: " before a value that does not start
         * with white space; unchanged fields are as they came. */
        if (f->changed && !rw_hdr__wsp(f->raw[0]))
            pstr_putc(out, ' ');
        pstr_puts(out, f->raw);
        pstr_puts(out, "\r\n");
    }
}

size_t rw_hdrs_edits(const struct rw_hdrs *h, struct rw_edit **out)
{
    struct rw_edit *e = pstr_xcalloc(h->n + 1, sizeof(*e));
    size_t k = 0;
    /* nth of each original field among the originals of its name */
    size_t *nth = pstr_xcalloc(h->n + 1, sizeof(*nth));
    for (size_t i = 0; i < h->n; i++) {
        if (h->f[i].orig < 0)
            continue;
        for (size_t j = 0; j < i; j++)
            if (h->f[j].orig >= 0 && strcasecmp(h->f[j].name, h->f[i].name) == 0)
                nth[i]++;
    }
    for (size_t i = 0; i < h->n; i++)
        if (h->f[i].orig >= 0 && h->f[i].changed && !h->f[i].deleted)
            e[k++] = (struct rw_edit){RW_EDIT_CHANGE, h->f[i].name, nth[i], h->f[i].raw};
    for (size_t i = h->n; i-- > 0;)
        if (h->f[i].orig >= 0 && h->f[i].deleted)
            e[k++] = (struct rw_edit){RW_EDIT_DELETE, h->f[i].name, nth[i], NULL};
    for (size_t i = 0; i < h->n; i++)
        if (h->f[i].orig < 0 && !h->f[i].deleted)
            e[k++] = (struct rw_edit){RW_EDIT_ADD, h->f[i].name, 0, h->f[i].raw};
    free(nth);
    *out = e;
    return k;
}

/* ---- text ---------------------------------------------------------------- */

char *rw_hdr_unfold(const char *raw, size_t len)
{
    struct pstr s = PSTR_INIT;
    for (size_t i = 0; i < len; i++) {
        if (raw[i] == '\r' && i + 1 < len && raw[i + 1] == '\n')
            continue;
        if (raw[i] == '\n')
            continue;
        pstr_putc(&s, raw[i]);
    }
    char *p = pstr_steal(&s);
    size_t n = strlen(p);
    while (n > 0 && rw_hdr__wsp(p[n - 1]))
        p[--n] = 0;
    size_t lead = 0;
    while (rw_hdr__wsp(p[lead]))
        lead++;
    memmove(p, p + lead, n - lead + 1);
    return p;
}

char *rw_hdr_decode(const char *raw, size_t len)
{
    char *u = rw_hdr_unfold(raw, len);
    if (!strstr(u, "=?"))
        return u;
    rw_hdr_global_init();
    char *d = g_mime_utils_header_decode_text(NULL, u);
    if (!d)
        return u;
    free(u);
    char *r = pstr_xstrdup(d);
    g_free(d);
    return r;
}

char *rw_hdr_encode(const char *text)
{
    int ascii = 1;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p >= 0x80)
            ascii = 0;
    if (ascii)
        return pstr_xstrdup(text);
    rw_hdr_global_init();
    char *e = g_mime_utils_header_encode_text(NULL, text, "utf-8");
    if (!e)
        return pstr_xstrdup(text);
    /* Folding is ours: keep the encoded words on one line here. */
    char *r = rw_hdr_unfold(e, strlen(e));
    g_free(e);
    return r;
}

/* ---- addresses ------------------------------------------------------------- */

static int rw_addr__atext(unsigned char c)
{
    if (c >= 0x80)
        return 1; /* UTF-8 (SMTPUTF8) */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != 0;
}

int rw_addr_valid(const char *a)
{
    const char *at = strrchr(a, '@');
    if (!at || at == a || strlen(a) > 254)
        return 0;
    size_t llen = (size_t)(at - a);
    if (llen > 64)
        return 0;
    if (a[0] == '"') {
        if (llen < 2 || a[llen - 1] != '"')
            return 0;
        for (size_t i = 1; i + 1 < llen; i++) {
            unsigned char c = (unsigned char)a[i];
            if (c == '\\') {
                if (++i + 1 >= llen || (unsigned char)a[i] < 0x20)
                    return 0;
                continue;
            }
            if (c < 0x20 || c == 0x7f || c == '"')
                return 0;
        }
    } else {
        int dot = 1; /* no leading dot, no "..", no trailing dot */
        for (size_t i = 0; i < llen; i++) {
            unsigned char c = (unsigned char)a[i];
            if (c == '.') {
                if (dot)
                    return 0;
                dot = 1;
            } else if (rw_addr__atext(c)) {
                dot = 0;
            } else {
                return 0;
            }
        }
        if (dot)
            return 0;
    }
    const char *d = at + 1;
    size_t dlen = strlen(d);
    if (dlen == 0 || dlen > 253)
        return 0;
    if (d[0] == '[') {
        if (d[dlen - 1] != ']' || dlen < 3)
            return 0;
        for (size_t i = 1; i + 1 < dlen; i++) {
            unsigned char c = (unsigned char)d[i];
            if (c <= 0x20 || c >= 0x7f || c == '[' || c == ']' || c == '\\')
                return 0;
        }
        return 1;
    }
    size_t lab = 0;
    for (size_t i = 0; i < dlen; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.') {
            if (lab == 0 || d[i - 1] == '-')
                return 0;
            lab = 0;
            continue;
        }
        int ok = c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 (c == '-' && lab > 0);
        if (!ok || ++lab > 63)
            return 0;
    }
    return lab > 0 && d[dlen - 1] != '-';
}

static int rw_hdr__delim(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == ';' || c == ':' || c == '<' ||
           c == '>' || c == '"' || c == '(' || c == ')';
}

/* One address: ask fn, append the original or the replacement. */
static int rw_hdr__one(const char *a, size_t n, rw_addr_fn fn, void *ud, struct pstr *out)
{
    char *addr = pstr_xstrndup(a, n);
    char *rep = NULL;
    int rc = memchr(addr, '@', n) ? fn(ud, addr, &rep) : 0;
    if (rc == 1 && rep) {
        pstr_puts(out, rep);
    } else {
        pstr_append(out, a, n);
        if (rc > 0)
            rc = 0;
    }
    free(rep);
    free(addr);
    return rc;
}

int rw_hdr_map_addrs(const char *raw, rw_addr_fn fn, void *ud, struct pstr *out)
{
    size_t n = strlen(raw), i = 0;
    int count = 0;
    while (i < n) {
        char c = raw[i];
        if (c == '"') { /* a quoted display name: copy as is */
            size_t j = i + 1;
            while (j < n && raw[j] != '"')
                j += raw[j] == '\\' && j + 1 < n ? 2 : 1;
            j = j < n ? j + 1 : n;
            pstr_append(out, raw + i, j - i);
            i = j;
        } else if (c == '(') { /* a comment, maybe nested */
            size_t j = i, depth = 0;
            while (j < n) {
                if (raw[j] == '\\' && j + 1 < n) {
                    j += 2;
                    continue;
                }
                if (raw[j] == '(')
                    depth++;
                else if (raw[j] == ')' && --depth == 0) {
                    j++;
                    break;
                }
                j++;
            }
            pstr_append(out, raw + i, j - i);
            i = j;
        } else if (c == '<') {
            const char *gt = memchr(raw + i, '>', n - i);
            if (!gt) {
                pstr_append(out, raw + i, n - i);
                break;
            }
            size_t j = (size_t)(gt - raw);
            pstr_putc(out, '<');
            int rc = rw_hdr__one(raw + i + 1, j - i - 1, fn, ud, out);
            if (rc < 0)
                return -1;
            count += rc;
            pstr_putc(out, '>');
            i = j + 1;
        } else if (rw_hdr__delim(c)) {
            pstr_putc(out, c);
            i++;
        } else {
            size_t j = i;
            while (j < n && !rw_hdr__delim(raw[j]))
                j++;
            int rc = rw_hdr__one(raw + i, j - i, fn, ud, out);
            if (rc < 0)
                return -1;
            count += rc;
            i = j;
        }
    }
    return count;
}
