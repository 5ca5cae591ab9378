/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_html: a tolerant, single-pass HTML scanner (see spam_html.h).
 *
 * The scanner keeps a stack of open elements, each with the hidden flag
 * and the foreground/background colours it inherits or sets. End tags pop
 * up to the matching element (if any is open); unmatched end tags are
 * ignored, which is what lenient renderers do with broken spam HTML.
 * Colours are compared after normalising to "#rrggbb" for the forms
 * spammers use (#rgb, #rrggbb, a handful of names); anything else is left
 * as written and only compared literally.
 */
#include "spam_html.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SPAM_HTML_NAME 16
#define SPAM_HTML_COLOR 24
#define SPAM_HTML_ATTR 2048

struct spam_html__elem {
    char name[SPAM_HTML_NAME];
    int hidden;
    char fg[SPAM_HTML_COLOR];
    char bg[SPAM_HTML_COLOR];
    int fg_set; /* a colour was chosen (not the reader's default) */
};

struct spam_html__state {
    struct spam_html_result *out;
    struct spam_html__elem stack[SPAM_HTML_MAX_DEPTH];
    size_t depth;
    int space_vis, space_hid; /* last byte written was white space */
    int in_link;
    struct pstr link_text;
    char *link_href;
};

static const struct {
    const char *name;
    unsigned cp;
} spam_html__entities[] = {
    {"amp", '&'},     {"lt", '<'},        {"gt", '>'},       {"quot", '"'},     {"apos", '\''},
    {"nbsp", 0xA0},   {"copy", 0xA9},     {"reg", 0xAE},     {"trade", 0x2122}, {"euro", 0x20AC},
    {"pound", 0xA3},  {"yen", 0xA5},      {"cent", 0xA2},    {"mdash", 0x2014}, {"ndash", 0x2013},
    {"hellip", 0x2026}, {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"ldquo", 0x201C}, {"rdquo", 0x201D},
    {"laquo", 0xAB},  {"raquo", 0xBB},    {"bull", 0x2022},  {"middot", 0xB7},  {"zwnj", 0x200C},
    {"zwj", 0x200D},  {"shy", 0xAD},      {"deg", 0xB0},     {"times", 0xD7},   {"eacute", 0xE9},
    {"egrave", 0xE8}, {"agrave", 0xE0},   {"uuml", 0xFC},    {"ouml", 0xF6},    {"auml", 0xE4},
    {"szlig", 0xDF},  {"ccedil", 0xE7},   {"iexcl", 0xA1},   {"iquest", 0xBF},
};

static size_t spam_html__utf8(unsigned cp, char *o)
{
    if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        cp = 0xFFFD;
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode one entity at s (which starts with '&'); writes UTF-8 to out
 * (at least 8 bytes) and returns the bytes consumed, or 0 if s is not an
 * entity. */
static size_t spam_html_entity(const char *s, size_t len, char *out, size_t *outlen)
{
    if (len < 3 || s[0] != '&')
        return 0;
    size_t i = 1;
    if (s[1] == '#') {
        unsigned long cp = 0;
        int hex = 0;
        i = 2;
        if (i < len && (s[i] == 'x' || s[i] == 'X')) {
            hex = 1;
            i++;
        }
        size_t digits = 0;
        while (i < len && digits < 8 && (hex ? isxdigit((unsigned char)s[i]) : isdigit((unsigned char)s[i]))) {
            int c = (unsigned char)s[i];
            int v = isdigit(c) ? c - '0' : (tolower(c) - 'a' + 10);
            cp = cp * (hex ? 16 : 10) + (unsigned long)v;
            i++;
            digits++;
        }
        if (digits == 0)
            return 0;
        if (i < len && s[i] == ';')
            i++;
        *outlen = spam_html__utf8(cp > 0x10FFFF ? 0xFFFD : (unsigned)cp, out);
        return i;
    }
    while (i < len && i < 10 && isalnum((unsigned char)s[i]))
        i++;
    size_t nlen = i - 1;
    if (nlen == 0)
        return 0;
    for (size_t k = 0; k < sizeof(spam_html__entities) / sizeof(spam_html__entities[0]); k++) {
        if (strlen(spam_html__entities[k].name) == nlen && memcmp(spam_html__entities[k].name, s + 1, nlen) == 0) {
            if (i < len && s[i] == ';')
                i++;
            *outlen = spam_html__utf8(spam_html__entities[k].cp, out);
            return i;
        }
    }
    return 0;
}

/* Append text to the visible or hidden buffer, collapsing white space. */
static void spam_html__emit(struct spam_html__state *st, const char *p, size_t n)
{
    int hidden = st->depth > 0 && st->stack[st->depth - 1].hidden;
    struct pstr *dst = hidden ? &st->out->hidden : &st->out->text;
    int *sp = hidden ? &st->space_hid : &st->space_vis;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        int ws = c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f';
        /* U+00A0 (nbsp) counts as a space for collapsing. */
        if (c == 0xC2 && i + 1 < n && (unsigned char)p[i + 1] == 0xA0) {
            ws = 1;
            i++;
        }
        if (ws) {
            if (!*sp && dst->len > 0) {
                pstr_putc(dst, ' ');
                *sp = 1;
            }
            if (st->in_link && st->link_text.len > 0 && st->link_text.ptr[st->link_text.len - 1] != ' ')
                pstr_putc(&st->link_text, ' ');
            continue;
        }
        pstr_putc(dst, (char)c);
        *sp = 0;
        if (st->in_link && st->link_text.len < 1024)
            pstr_putc(&st->link_text, (char)c);
    }
}

static void spam_html__newline(struct spam_html__state *st)
{
    struct pstr *dst = &st->out->text;
    if (dst->len == 0)
        return;
    while (dst->len > 0 && dst->ptr[dst->len - 1] == ' ')
        dst->len--;
    dst->ptr[dst->len] = '\0';
    if (dst->len > 0 && dst->ptr[dst->len - 1] != '\n')
        pstr_putc(dst, '\n');
    st->space_vis = 1;
    if (st->out->hidden.len > 0 && !st->space_hid) {
        pstr_putc(&st->out->hidden, ' ');
        st->space_hid = 1;
    }
}

static void spam_html__add_uri(struct spam_html_result *r, const char *v)
{
    while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
        v++;
    if (!*v || r->nuris >= SPAM_HTML_MAX_URIS)
        return;
    r->uris = pstr_xrealloc(r->uris, (r->nuris + 1) * sizeof(*r->uris));
    r->uris[r->nuris++] = pstr_xstrdup(v);
}

static void spam_html__end_link(struct spam_html__state *st)
{
    if (!st->in_link)
        return;
    struct spam_html_result *r = st->out;
    if (r->nlinks < SPAM_HTML_MAX_URIS) {
        r->links = pstr_xrealloc(r->links, (r->nlinks + 1) * sizeof(*r->links));
        struct pstr *t = &st->link_text;
        while (t->len > 0 && t->ptr[t->len - 1] == ' ')
            t->len--;
        size_t s = 0;
        while (s < t->len && t->ptr[s] == ' ')
            s++;
        r->links[r->nlinks].href = st->link_href;
        r->links[r->nlinks].text = pstr_xstrndup(t->ptr ? t->ptr + s : "", t->len - s);
        r->nlinks++;
    } else {
        free(st->link_href);
    }
    st->link_href = NULL;
    pstr_clear(&st->link_text);
    st->in_link = 0;
}

/* Normalise a colour into out ("#rrggbb" when recognised). */
static void spam_html__color(const char *v, size_t n, char *out)
{
    static const struct {
        const char *name, *hex;
    } names[] = {
        {"white", "#ffffff"}, {"black", "#000000"}, {"red", "#ff0000"},  {"green", "#008000"},
        {"blue", "#0000ff"},  {"yellow", "#ffff00"}, {"gray", "#808080"}, {"grey", "#808080"},
        {"silver", "#c0c0c0"}, {"lime", "#00ff00"},  {"navy", "#000080"},
    };
    while (n > 0 && (*v == ' ' || *v == '"' || *v == '\''))
        v++, n--;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '"' || v[n - 1] == '\'' || v[n - 1] == ';'))
        n--;
    char buf[SPAM_HTML_COLOR];
    size_t k = 0;
    for (size_t i = 0; i < n && k < sizeof(buf) - 1; i++)
        if (v[i] != ' ')
            buf[k++] = (char)tolower((unsigned char)v[i]);
    buf[k] = '\0';
    /* "!important" and the like do not change the colour. */
    char *bang = strchr(buf, '!');
    if (bang)
        *bang = '\0';
    k = strlen(buf);
    if (k == 4 && buf[0] == '#') {
        char h[8] = {'#', buf[1], buf[1], buf[2], buf[2], buf[3], buf[3], '\0'};
        memcpy(out, h, 8);
        return;
    }
    if (k == 6 && strspn(buf, "0123456789abcdef") == 6) {
        out[0] = '#';
        memcpy(out + 1, buf, 7);
        return;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(buf, names[i].name) == 0) {
            strcpy(out, names[i].hex);
            return;
        }
    memcpy(out, buf, k + 1);
}

/* Find CSS property `prop` in a lowercased, blank-free style; its value or NULL. */
static const char *spam_html__css(const char *style, const char *prop, size_t *vlen)
{
    size_t pl = strlen(prop);
    for (const char *p = style; (p = strstr(p, prop)) != NULL; p += pl) {
        if (p != style && p[-1] != ';' && p[-1] != '{')
            continue;
        if (p[pl] != ':')
            continue;
        const char *v = p + pl + 1;
        *vlen = strcspn(v, ";");
        return v;
    }
    return NULL;
}

static int spam_html__zero_size(const char *v, size_t n)
{
    /* 0, 0px, 0pt, 0em, 0.0, 1px: nothing a reader can see. */
    size_t i = 0;
    while (i < n && v[i] == '0')
        i++;
    if (i > 0) {
        if (i < n && v[i] == '.') {
            i++;
            while (i < n && v[i] == '0')
                i++;
        }
        return i == n || !isdigit((unsigned char)v[i]);
    }
    return n >= 3 && memcmp(v, "1px", 3) == 0;
}

struct spam_html__tag {
    char name[SPAM_HTML_NAME];
    int end;          /* </name> */
    int selfclose;    /* <name/> */
    char *href, *src, *action, *style, *color, *bgcolor, *background, *text;
    int hidden;
};

static void spam_html__tag_free(struct spam_html__tag *t)
{
    free(t->href);
    free(t->src);
    free(t->action);
    free(t->style);
    free(t->color);
    free(t->bgcolor);
    free(t->background);
    free(t->text);
}

/* Entity-decode an attribute value. */
static char *spam_html__attr_value(const char *v, size_t n)
{
    struct pstr s = PSTR_INIT;
    if (n > SPAM_HTML_ATTR)
        n = SPAM_HTML_ATTR;
    for (size_t i = 0; i < n;) {
        if (v[i] == '&') {
            char o[8];
            size_t ol;
            size_t used = spam_html_entity(v + i, n - i, o, &ol);
            if (used) {
                pstr_append(&s, o, ol);
                i += used;
                continue;
            }
        }
        pstr_putc(&s, v[i]);
        i++;
    }
    return pstr_steal(&s);
}

/* Parse a tag starting after '<'; returns the index after '>'. */
static size_t spam_html__parse_tag(const char *h, size_t len, size_t i, struct spam_html__tag *t)
{
    memset(t, 0, sizeof(*t));
    if (i < len && h[i] == '/') {
        t->end = 1;
        i++;
    }
    size_t k = 0;
    while (i < len && (isalnum((unsigned char)h[i]) || h[i] == '-' || h[i] == ':')) {
        if (k < SPAM_HTML_NAME - 1)
            t->name[k++] = (char)tolower((unsigned char)h[i]);
        i++;
    }
    t->name[k] = '\0';
    for (;;) {
        while (i < len && (isspace((unsigned char)h[i]) || h[i] == '/')) {
            if (h[i] == '/' && i + 1 < len && h[i + 1] == '>')
                t->selfclose = 1;
            i++;
        }
        if (i >= len)
            return len;
        if (h[i] == '>')
            return i + 1;
        size_t an = i;
        while (i < len && !isspace((unsigned char)h[i]) && h[i] != '=' && h[i] != '>' && h[i] != '/')
            i++;
        size_t alen = i - an;
        if (alen == 0) {
            i++;
            continue;
        }
        while (i < len && isspace((unsigned char)h[i]))
            i++;
        const char *v = NULL;
        size_t vlen = 0;
        if (i < len && h[i] == '=') {
            i++;
            while (i < len && isspace((unsigned char)h[i]))
                i++;
            if (i < len && (h[i] == '"' || h[i] == '\'')) {
                char q = h[i++];
                v = h + i;
                while (i < len && h[i] != q)
                    i++;
                vlen = (size_t)(h + i - v);
                if (i < len)
                    i++;
            } else {
                v = h + i;
                while (i < len && !isspace((unsigned char)h[i]) && h[i] != '>')
                    i++;
                vlen = (size_t)(h + i - v);
            }
        }
        char **slot = NULL;
#define SPAM_HTML_IS(s) (alen == sizeof(s) - 1 && strncasecmp(h + an, s, alen) == 0)
        if (SPAM_HTML_IS("href"))
            slot = &t->href;
        else if (SPAM_HTML_IS("src"))
            slot = &t->src;
        else if (SPAM_HTML_IS("action"))
            slot = &t->action;
        else if (SPAM_HTML_IS("style"))
            slot = &t->style;
        else if (SPAM_HTML_IS("color"))
            slot = &t->color;
        else if (SPAM_HTML_IS("bgcolor"))
            slot = &t->bgcolor;
        else if (SPAM_HTML_IS("background"))
            slot = &t->background;
        else if (SPAM_HTML_IS("text"))
            slot = &t->text;
        else if (SPAM_HTML_IS("hidden"))
            t->hidden = 1;
#undef SPAM_HTML_IS
        if (slot && !*slot)
            *slot = spam_html__attr_value(v ? v : "", v ? vlen : 0);
    }
}

static int spam_html__in(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(name, *list) == 0)
            return 1;
    return 0;
}

static const char *const spam_html__void[] = {"area", "base", "br", "col", "embed", "hr", "img", "input",
                                              "link", "meta", "param", "source", "track", "wbr", NULL};
static const char *const spam_html__block[] = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5",
                                               "h6", "table", "ul", "ol", "blockquote", "pre", "hr",
                                               "section", "article", "header", "footer", "center",
                                               "dl", "dt", "dd", "form", NULL};
static const char *const spam_html__skip[] = {"style", "script", "template", "title", NULL};

/* Apply a start tag: push it with its inherited and own visibility. */
static void spam_html__start(struct spam_html__state *st, const struct spam_html__tag *t)
{
    struct spam_html_result *r = st->out;
    if (t->href)
        spam_html__add_uri(r, t->href);
    if (t->src)
        spam_html__add_uri(r, t->src);
    if (t->action)
        spam_html__add_uri(r, t->action);
    if (t->background)
        spam_html__add_uri(r, t->background);
    if (strcmp(t->name, "a") == 0) {
        spam_html__end_link(st);
        if (t->href) {
            st->in_link = 1;
            st->link_href = pstr_xstrdup(t->href);
        }
    }
    if (spam_html__in(t->name, spam_html__block))
        spam_html__newline(st);
    else if (strcmp(t->name, "td") == 0 || strcmp(t->name, "th") == 0)
        spam_html__emit(st, " ", 1);
    if (t->selfclose || spam_html__in(t->name, spam_html__void))
        return;

    struct spam_html__elem e;
    const struct spam_html__elem *parent = st->depth ? &st->stack[st->depth - 1] : NULL;
    memset(&e, 0, sizeof(e));
    memcpy(e.name, t->name, sizeof(e.name));
    e.hidden = (parent && parent->hidden) || t->hidden;
    strcpy(e.fg, parent ? parent->fg : "#000000");
    strcpy(e.bg, parent ? parent->bg : "#ffffff");
    e.fg_set = parent && parent->fg_set;
    if (t->color) {
        spam_html__color(t->color, strlen(t->color), e.fg);
        e.fg_set = 1;
    }
    if (t->text && strcmp(t->name, "body") == 0) {
        spam_html__color(t->text, strlen(t->text), e.fg);
        e.fg_set = 1;
    }
    if (t->bgcolor)
        spam_html__color(t->bgcolor, strlen(t->bgcolor), e.bg);
    if (t->style) {
        char css[SPAM_HTML_ATTR + 1];
        size_t k = 0;
        for (const char *p = t->style; *p && k < SPAM_HTML_ATTR; p++)
            if (!isspace((unsigned char)*p))
                css[k++] = (char)tolower((unsigned char)*p);
        css[k] = '\0';
        const char *v;
        size_t vl;
        if ((v = spam_html__css(css, "display", &vl)) && vl >= 4 && memcmp(v, "none", 4) == 0)
            e.hidden = 1;
        if ((v = spam_html__css(css, "visibility", &vl)) && vl >= 6 && memcmp(v, "hidden", 6) == 0)
            e.hidden = 1;
        if ((v = spam_html__css(css, "opacity", &vl)) && spam_html__zero_size(v, vl) && v[0] == '0')
            e.hidden = 1;
        if ((v = spam_html__css(css, "font-size", &vl)) && spam_html__zero_size(v, vl))
            e.hidden = 1;
        if ((v = spam_html__css(css, "color", &vl))) {
            spam_html__color(v, vl, e.fg);
            e.fg_set = 1;
        }
        if ((v = spam_html__css(css, "background-color", &vl)))
            spam_html__color(v, vl, e.bg);
        else if ((v = spam_html__css(css, "background", &vl)) && vl > 0 && vl < SPAM_HTML_COLOR &&
                 !memchr(v, '(', vl))
            spam_html__color(v, vl, e.bg);
    }
    /* Text in the background's colour; the reader's default colour does not
     * count (a dark background alone hides nothing in a mail client). */
    if (e.fg_set && strcmp(e.fg, e.bg) == 0)
        e.hidden = 1;
    if (st->depth < SPAM_HTML_MAX_DEPTH)
        st->stack[st->depth++] = e;
}

static void spam_html__end(struct spam_html__state *st, const struct spam_html__tag *t)
{
    if (strcmp(t->name, "a") == 0)
        spam_html__end_link(st);
    if (spam_html__in(t->name, spam_html__block))
        spam_html__newline(st);
    for (size_t d = st->depth; d > 0; d--) {
        if (strcmp(st->stack[d - 1].name, t->name) == 0) {
            st->depth = d - 1;
            break;
        }
    }
}

/* Index just past "</name ...>" (case-insensitive), or len. */
static size_t spam_html__skip_to_end(const char *h, size_t len, size_t i, const char *name)
{
    size_t nl = strlen(name);
    while (i < len) {
        const char *lt = memchr(h + i, '<', len - i);
        if (!lt)
            return len;
        i = (size_t)(lt - h);
        if (i + 2 + nl <= len && h[i + 1] == '/' && strncasecmp(h + i + 2, name, nl) == 0) {
            const char *gt = memchr(h + i, '>', len - i);
            return gt ? (size_t)(gt - h) + 1 : len;
        }
        i++;
    }
    return len;
}

void spam_html_parse(const char *h, size_t len, struct spam_html_result *out)
{
    struct spam_html__state *st = pstr_xcalloc(1, sizeof(*st));
    st->out = out;
    st->space_vis = st->space_hid = 1;
    size_t i = 0;
    while (i < len) {
        char c = h[i];
        if (c == '<' && i + 1 < len) {
            char n = h[i + 1];
            if (n == '!' && i + 3 < len && h[i + 2] == '-' && h[i + 3] == '-') {
                const char *e = NULL;
                for (size_t k = i + 4; k + 2 < len + 0 && !e; k++)
                    if (h[k] == '-' && h[k + 1] == '-' && h[k + 2] == '>')
                        e = h + k + 3;
                i = e ? (size_t)(e - h) : len;
                continue;
            }
            if (n == '!' || n == '?') {
                const char *gt = memchr(h + i, '>', len - i);
                i = gt ? (size_t)(gt - h) + 1 : len;
                continue;
            }
            if (isalpha((unsigned char)n) || (n == '/' && i + 2 < len && isalpha((unsigned char)h[i + 2]))) {
                struct spam_html__tag t;
                i = spam_html__parse_tag(h, len, i + 1, &t);
                if (t.end) {
                    spam_html__end(st, &t);
                } else if (spam_html__in(t.name, spam_html__skip)) {
                    if (!t.selfclose)
                        i = spam_html__skip_to_end(h, len, i, t.name);
                } else {
                    spam_html__start(st, &t);
                }
                spam_html__tag_free(&t);
                continue;
            }
        }
        if (c == '&') {
            char o[8];
            size_t ol;
            size_t used = spam_html_entity(h + i, len - i, o, &ol);
            if (used) {
                spam_html__emit(st, o, ol);
                i += used;
                continue;
            }
        }
        /* A run of plain text up to the next markup byte. */
        size_t j = i + 1;
        while (j < len && h[j] != '<' && h[j] != '&')
            j++;
        spam_html__emit(st, h + i, j - i);
        i = j;
    }
    spam_html__end_link(st);
    pstr_free(&st->link_text);
    /* Trailing blank left by collapsing. */
    struct pstr *bufs[2] = {&out->text, &out->hidden};
    for (int k = 0; k < 2; k++) {
        struct pstr *b = bufs[k];
        while (b->len > 0 && (b->ptr[b->len - 1] == ' ' || b->ptr[b->len - 1] == '\n'))
            b->ptr[--b->len] = '\0';
    }
    free(st);
}

void spam_html_result_free(struct spam_html_result *r)
{
    pstr_free(&r->text);
    pstr_free(&r->hidden);
    for (size_t i = 0; i < r->nuris; i++)
        free(r->uris[i]);
    free(r->uris);
    for (size_t i = 0; i < r->nlinks; i++) {
        free(r->links[i].href);
        free(r->links[i].text);
    }
    free(r->links);
    memset(r, 0, sizeof(*r));
}
