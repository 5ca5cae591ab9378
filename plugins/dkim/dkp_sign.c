/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_sign: DKIM signing (RFC 6376, RFC 8463) on OpenSSL EVP. See dkp_sign.h.
 *
 * Why not libopendkim: its dkim_sign() takes the private key as text and
 * parses it again for every signature (OpenSSL 3's decoder, with its
 * locks), and each freshly parsed RSA key sets up blinding again; together
 * that was most of the signing cost. Here a key text is parsed once into an
 * EVP_PKEY, kept in a small cache owned by struct dkp_sign, and shared by
 * the pool threads (each signature has its own EVP_MD_CTX).
 *
 * The output is byte for byte what libopendkim 2.11 produced before, so
 * that switching changes nothing for receivers (tests/test_dkim_sign.c signs
 * with both and compares). That means following libopendkim where it reads
 * the RFC in its own way; each such place says "as libopendkim". The parts
 * are, in message order:
 *   dkp__split      header fields and body, as dkim_chunk() cuts them;
 *   dkp__select     which fields are signed, in which order (the sign list
 *                   as a case-insensitive POSIX regex, fields bottom-up);
 *   dkp__canon_*    header and body canonicalisation (dkim-canon.c);
 *   dkp__fold       the DKIM-Signature text, folded at 75 columns.
 * Deliberate differences (all cases where libopendkim failed or produced a
 * signature that cannot verify): a DKIM-Signature field already in the
 * message is not parsed (libopendkim refused to sign when it was
 * malformed), and header fields of 64 KiB or more, or sign lists longer
 * than 4 KiB, are not truncated.
 *
 * Ownership: struct dkp_sign owns its header lists, its compiled regex and
 * the cached keys; a signature borrows a key by reference count, so a key
 * evicted from the cache meanwhile stays valid until that signature ends.
 */
#include "dkp_sign.h"

#include <ctype.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <dkim.h>

/* Header fields signed by default (RFC 6376 §5.4.1 plus Message-ID, MIME
 * and list fields) and the subset signed once more than present
 * ("over-signed"), so that adding such a field breaks the signature. */
static const char *const dkp_sign_default_headers[] = {
    "from",
    "sender",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "to",
    "cc",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-id",
    "content-description",
    "resent-date",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-message-id",
    "in-reply-to",
    "references",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
    NULL,
};

static const char *const dkp_sign_default_oversign[] = {
    "from",   "to",         "cc",           "subject",      "date", "reply-to",
    "sender", "message-id", "mime-version", "content-type", NULL,
};

#define DKP_SIGN_MARGIN 75    /* fold column (libopendkim's DKIM_HDRMARGIN) */
#define DKP_SIGN_NAMELEN 16   /* strlen("DKIM-Signature: "), where folding starts */
#define DKP_SIGN_HASHBUF 4096 /* libopendkim's hash buffer; see dkp__sink */
#define DKP_SIGN_LISTMAX 4096 /* libopendkim cuts the h= selection list here */
#define DKP_SIGN_REMAX 1024   /* and refuses sign lists whose regex is longer */
#define DKP_SIGN_MINBITS 1024 /* RSA keys below this are refused (RFC 8301) */
#define DKP_SIGN_KEYS_MAX 64  /* cached keys per signer */

struct dkp_sign_key {
    uint64_t hash; /* of text; 0 with text NULL = free slot */
    size_t len;
    char *text;     /* owned copy of the key text: the cache key */
    EVP_PKEY *pkey; /* owned reference */
    unsigned bits;  /* RSA: modulus bytes * 8 (what b= folding needs) */
    uint64_t used;  /* LRU clock */
};

struct dkp_sign {
    int hdr_relaxed, body_relaxed;
    uint64_t fixed_time;
    char **sign;          /* owned NULL-terminated copies */
    char **oversign;      /* owned; printed in h= as given */
    int use_regex;        /* sign list has regex characters: match with re */
    regex_t re;           /* valid when use_regex */
    EVP_MD *sha256;       /* owned, fetched once */
    pthread_mutex_t lock; /* guards keys, nkeys, clock */
    struct dkp_sign_key keys[DKP_SIGN_KEYS_MAX];
    size_t nkeys;
    uint64_t clock;
};

/* ---- a growing byte buffer ------------------------------------------------ */

struct dkp_buf {
    char *p;
    size_t len, cap;
    int oom; /* set once an allocation failed; later adds are no-ops */
};

static void dkp__add(struct dkp_buf *b, const void *data, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void dkp__addc(struct dkp_buf *b, char c)
{
    dkp__add(b, &c, 1);
}

static void dkp__adds(struct dkp_buf *b, const char *s)
{
    dkp__add(b, s, strlen(s));
}

/* ---- set-up ----------------------------------------------------------------- */

static char **dkp__dup_list(const char *const *l)
{
    size_t n = 0;
    while (l[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        out[i] = strdup(l[i]);
        if (!out[i]) {
            while (i-- > 0)
                free(out[i]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static void dkp__free_list(char **l)
{
    for (size_t i = 0; l && l[i]; i++)
        free(l[i]);
    free(l);
}

/* The sign-list regex "^(from|name|...)$", built as libopendkim's
 * dkim_hdrlist() does ('*' is a wildcard, '.' literal, and its odd
 * handling of '\'), so that names with regex characters match alike. */
static void dkp__regex_add(struct dkp_buf *b, const char *name)
{
    int escape = 0;
    for (const char *p = name; *p; p++) {
        if (escape) {
            dkp__addc(b, *p);
            escape = 0;
        }
        switch (*p) {
        case '*':
            dkp__adds(b, ".*");
            break;
        case '.':
            dkp__adds(b, "\\.");
            break;
        case '\\':
            escape = 1;
            break;
        default:
            dkp__addc(b, *p);
            break;
        }
    }
}

void dkp_sign_free(struct dkp_sign *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nkeys; i++) {
        EVP_PKEY_free(s->keys[i].pkey);
        free(s->keys[i].text);
    }
    if (s->use_regex)
        regfree(&s->re);
    EVP_MD_free(s->sha256);
    pthread_mutex_destroy(&s->lock);
    dkp__free_list(s->sign);
    dkp__free_list(s->oversign);
    free(s);
}

struct dkp_sign *dkp_sign_new(const struct dkp_sign_conf *conf, char *err, size_t errlen)
{
    struct dkp_sign *s = calloc(1, sizeof *s);
    struct dkp_buf re = {0};

    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->hdr_relaxed = conf->header_relaxed;
    s->body_relaxed = conf->body_relaxed;
    s->fixed_time = conf->fixed_time;
    s->sign = dkp__dup_list(conf->sign_headers ? conf->sign_headers : dkp_sign_default_headers);
    s->oversign =
        dkp__dup_list(conf->oversign_headers ? conf->oversign_headers : dkp_sign_default_oversign);
    s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!s->sign || !s->oversign) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (!s->sha256) {
        snprintf(err, errlen, "OpenSSL has no SHA-256");
        goto fail;
    }
    /* From is always signed (libopendkim's required header list). */
    dkp__adds(&re, "^(from");
    for (size_t i = 0; s->sign[i]; i++) {
        dkp__addc(&re, '|');
        dkp__regex_add(&re, s->sign[i]);
        if (strpbrk(s->sign[i], "\\*[](){}|^$+?"))
            s->use_regex = 1;
    }
    dkp__adds(&re, ")$");
    if (re.oom || re.len > DKP_SIGN_REMAX) {
        snprintf(err, errlen, "%s", re.oom ? "out of memory" : "sign_headers list too long");
        s->use_regex = 0;
        goto fail;
    }
    if (s->use_regex && regcomp(&s->re, re.p, REG_EXTENDED | REG_ICASE | REG_NOSUB) != 0) {
        snprintf(err, errlen, "bad header name pattern in sign_headers");
        s->use_regex = 0;
        goto fail;
    }
    free(re.p);
    return s;
fail:
    free(re.p);
    dkp_sign_free(s);
    return NULL;
}

/* ---- keys ------------------------------------------------------------------ */

static int dkp__no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0; /* encrypted keys fail instead of prompting on a terminal */
}

static void dkp__ssl_error(const char *what, char *err, size_t errlen)
{
    unsigned long e = ERR_get_error();
    char buf[256];

    ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, errlen, "%s%s%s", what, e ? ": " : "", e ? buf : "");
    ERR_clear_error();
}

static uint64_t dkp__fnv1a(const char *p, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Key text as libopendkim takes it: PEM when it starts with "-----",
 * otherwise DER. */
static EVP_PKEY *dkp__key_parse(const char *text, size_t len, char *err, size_t errlen)
{
    BIO *bio = BIO_new_mem_buf(text, (int)len);
    EVP_PKEY *k = NULL;

    if (bio)
        k = strncmp(text, "-----", 5) == 0
                ? PEM_read_bio_PrivateKey(bio, NULL, dkp__no_passphrase, NULL)
                : d2i_PrivateKey_bio(bio, NULL);
    BIO_free(bio);
    if (!k)
        dkp__ssl_error("cannot parse the private key", err, errlen);
    return k;
}

static int dkp__key_find(const struct dkp_sign *s, uint64_t h, const char *text, size_t len)
{
    for (size_t i = 0; i < s->nkeys; i++)
        if (s->keys[i].hash == h && s->keys[i].len == len && !memcmp(s->keys[i].text, text, len))
            return (int)i;
    return -1;
}

/* The parsed key for text: a new reference (EVP_PKEY_free it) and its
 * size in bits, or NULL with a message. Parsed once per distinct text;
 * a changed key file is a different text, hence a different key. */
static EVP_PKEY *dkp__key_get(struct dkp_sign *s, const char *text, unsigned *bits, char *err,
                              size_t errlen)
{
    size_t len = strlen(text);
    uint64_t h = dkp__fnv1a(text, len);
    EVP_PKEY *k;
    int i;

    pthread_mutex_lock(&s->lock);
    i = dkp__key_find(s, h, text, len);
    if (i >= 0) {
        k = s->keys[i].pkey;
        EVP_PKEY_up_ref(k);
        *bits = s->keys[i].bits;
        s->keys[i].used = ++s->clock;
        pthread_mutex_unlock(&s->lock);
        return k;
    }
    pthread_mutex_unlock(&s->lock);

    /* Parse outside the lock: other threads keep signing meanwhile. */
    k = dkp__key_parse(text, len, err, errlen);
    if (!k)
        return NULL;
    unsigned b = (unsigned)EVP_PKEY_get_size(k) * 8;
    char *copy = malloc(len + 1);

    pthread_mutex_lock(&s->lock);
    i = dkp__key_find(s, h, text, len);
    if (i >= 0) { /* another thread was quicker */
        EVP_PKEY_free(k);
        k = s->keys[i].pkey;
        b = s->keys[i].bits;
        s->keys[i].used = ++s->clock;
        free(copy);
    } else if (copy) {
        size_t slot = s->nkeys;
        if (slot == DKP_SIGN_KEYS_MAX) { /* evict the least recently used */
            slot = 0;
            for (size_t j = 1; j < s->nkeys; j++)
                if (s->keys[j].used < s->keys[slot].used)
                    slot = j;
            EVP_PKEY_free(s->keys[slot].pkey);
            free(s->keys[slot].text);
        } else {
            s->nkeys++;
        }
        memcpy(copy, text, len + 1);
        s->keys[slot] = (struct dkp_sign_key){
            .hash = h, .len = len, .text = copy, .pkey = k, .bits = b, .used = ++s->clock};
    } else {
        /* No memory for the cache entry: use the key once, uncached. */
        pthread_mutex_unlock(&s->lock);
        *bits = b;
        return k;
    }
    EVP_PKEY_up_ref(k);
    pthread_mutex_unlock(&s->lock);
    *bits = b;
    return k;
}

/* ---- the message: header fields and body ------------------------------------ */

struct dkp__hdr {
    const char *text; /* the field as in the message, without its final CRLF */
    size_t len;
    size_t namelen; /* name without white space before the colon */
    int signed_;    /* chosen by dkp__select */
};

struct dkp__msg {
    struct dkp__hdr *h; /* owned array */
    size_t n, cap;
    const char *body;
    size_t bodylen;
};

static int dkp__isspace(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* One header field, checked as libopendkim's dkim_header() does. */
static int dkp__add_header(struct dkp__msg *m, const char *t, size_t len, char *err, size_t errlen)
{
    const char *colon = NULL, *end;

    for (size_t c = 0; c < len && !colon; c++) {
        unsigned char ch = (unsigned char)t[c];
        if (ch < 32 || ch > 126) {
            snprintf(err, errlen, "header field name with a non-printable character");
            return -1;
        }
        if (ch == ':')
            colon = t + c;
    }
    if (!colon) {
        snprintf(err, errlen, "header line without a colon: \"%.40s\"", t);
        return -1;
    }
    const char *semi = memchr(t, ';', len);
    if (semi && semi < colon) {
        snprintf(err, errlen, "header field name with a semicolon");
        return -1;
    }
    end = colon;
    while (end > t && dkp__isspace((unsigned char)end[-1]))
        end--;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 32;
        struct dkp__hdr *h = realloc(m->h, cap * sizeof *h);
        if (!h) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        m->h = h;
        m->cap = cap;
    }
    m->h[m->n++] = (struct dkp__hdr){.text = t, .len = len, .namelen = (size_t)(end - t)};
    return 0;
}

/* Cut msg into header fields and body the way dkim_chunk() does with CRLF
 * line ends: a field ends at CRLF not followed by SP, HT, VT or FF; the
 * header ends at an empty line (or with the message). The field text
 * libopendkim keeps is always one contiguous piece of msg. */
static int dkp__split(const char *msg, size_t len, struct dkp__msg *m, char *err, size_t errlen)
{
    size_t start = 0, hlen = 0;
    int sm = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)msg[i];
        switch (sm) {
        case 0: /* in a line */
            hlen++;
            if (c == '\r')
                sm = 1;
            break;
        case 1: /* after CR */
            hlen++;
            if (c == '\n') {
                if (m->n == 0 && hlen == 2) { /* the message starts with CRLF */
                    m->body = msg + i + 1;
                    m->bodylen = len - i - 1;
                    return 0;
                }
                sm = 2;
            } else if (c != '\r') {
                sm = 0;
            }
            break;
        case 2: /* after CRLF */
            if (c == ' ' || c == '\t' || c == '\v' || c == '\f') {
                hlen++;
                sm = 0;
            } else if (c == '\r') {
                sm = 3;
            } else {
                if (dkp__add_header(m, msg + start, hlen - 2, err, errlen) < 0)
                    return -1;
                start = i;
                hlen = 1;
                sm = 0;
            }
            break;
        default:            /* after CRLF CR */
            if (hlen < 3) { /* libopendkim asserts here; cannot happen */
                snprintf(err, errlen, "malformed header");
                return -1;
            }
            if (dkp__add_header(m, msg + start, hlen - 2, err, errlen) < 0)
                return -1;
            if (c == '\n') {
                m->body = msg + i + 1;
                m->bodylen = len - i - 1;
                return 0;
            }
            start = i - 1; /* a new field "\r" + c */
            hlen = 2;
            sm = 0;
            break;
        }
    }
    /* No empty line: whatever is left is the last field, CRLF included. */
    if (hlen > 0 && dkp__add_header(m, msg + start, hlen, err, errlen) < 0)
        return -1;
    m->body = msg + len;
    m->bodylen = 0;
    return 0;
}

static int dkp__name_matches(const struct dkp_sign *s, const struct dkp__hdr *h)
{
    if (s->use_regex) {
        char small[128], *name = h->namelen < sizeof small ? small : malloc(h->namelen + 1);
        if (!name)
            return 0;
        memcpy(name, h->text, h->namelen);
        name[h->namelen] = '\0';
        int rc = regexec(&s->re, name, 0, NULL, 0) == 0;
        if (name != small)
            free(name);
        return rc;
    }
    /* Plain names: the regex would match exactly these, ignoring case. */
    if (h->namelen == 4 && !strncasecmp(h->text, "from", 4))
        return 1;
    for (size_t i = 0; s->sign[i]; i++)
        if (strlen(s->sign[i]) == h->namelen && !strncasecmp(s->sign[i], h->text, h->namelen))
            return 1;
    return 0;
}

/* Choose the fields to sign, as dkim_canon_runheaders() and
 * dkim_canon_selecthdrs(): the names of matching fields in message order
 * make a list "A:B:A" (cut at 4095 characters); for each name in it the
 * last not yet used field of that name is signed (RFC 6376 §5.4.2,
 * bottom-up). order[] receives the fields in hashing order; returns how
 * many, or -1. */
static ssize_t dkp__select(const struct dkp_sign *s, struct dkp__msg *m, size_t *order)
{
    struct dkp_buf list = {0};
    size_t n = 0;

    for (size_t i = 0; i < m->n; i++) {
        if (!dkp__name_matches(s, &m->h[i]))
            continue;
        if (list.len && list.p[0] != '\0')
            dkp__addc(&list, ':');
        dkp__add(&list, m->h[i].text, m->h[i].namelen);
    }
    if (list.oom)
        return -1;
    if (list.len > DKP_SIGN_LISTMAX - 1)
        list.len = DKP_SIGN_LISTMAX - 1;
    for (size_t at = 0; at < list.len;) {
        size_t e = at;
        while (e < list.len && list.p[e] != ':')
            e++;
        size_t tl = e - at;
        while (tl > 0 && (list.p[at + tl - 1] == ' ' || list.p[at + tl - 1] == '\t'))
            tl--;
        if (tl > 0) {
            ssize_t last = -1;
            for (size_t i = 0; i < m->n; i++)
                if (!m->h[i].signed_ && m->h[i].namelen == tl &&
                    !strncasecmp(m->h[i].text, list.p + at, tl))
                    last = (ssize_t)i;
            if (last >= 0) {
                m->h[last].signed_ = 1;
                order[n++] = (size_t)last;
            }
        }
        at = e + 1;
    }
    free(list.p);
    return (ssize_t)n;
}

/* ---- canonicalisation ------------------------------------------------------ */

/* Header field canonicalisation as dkim_canon_header_string(). Relaxed:
 * the name lower-cased without white space; after the colon leading SP,
 * HT, CR, LF skipped, runs of white space made one SP, trailing white
 * space dropped; the value ends at a NUL byte (libopendkim keeps fields
 * as C strings). */
static void dkp__canon_header(struct dkp_buf *out, int relaxed, const char *t, size_t len, int crlf)
{
    if (!relaxed) {
        dkp__add(out, t, len);
    } else {
        size_t i = 0;
        for (; i < len; i++) {
            unsigned char c = (unsigned char)t[i];
            if (c == '\t' || c == '\n' || c == '\r' || c == ' ')
                continue;
            dkp__addc(out, (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c));
            if (c == ':') {
                i++;
                break;
            }
        }
        while (i < len && t[i] && (t[i] == '\t' || t[i] == '\n' || t[i] == '\r' || t[i] == ' '))
            i++;
        int space = 0;
        for (; i < len && t[i]; i++) {
            if (dkp__isspace((unsigned char)t[i])) {
                space = 1;
                continue;
            }
            if (space)
                dkp__addc(out, ' ');
            space = 0;
            dkp__addc(out, t[i]);
        }
    }
    if (crlf)
        dkp__add(out, "\r\n", 2);
}

/* libopendkim's hash input buffer (dkim_canon_buffer): data is collected in
 * 4 KiB and "wrote" counts what went to the hash. It matters for one
 * rule: simple body canonicalisation adds a CRLF at the end when nothing
 * was written yet, which makes a short body without a final CRLF end in
 * one while a long one does not. */
struct dkp__sink {
    EVP_MD_CTX *md;
    unsigned char buf[DKP_SIGN_HASHBUF];
    size_t buflen;
    size_t wrote;
    int bad; /* a digest call failed */
};

static void dkp__sink_write(struct dkp__sink *k, const void *p, size_t n)
{
    k->wrote += n;
    if (p && n && EVP_DigestUpdate(k->md, p, n) != 1)
        k->bad = 1;
}

static void dkp__sink_add(struct dkp__sink *k, const void *p, size_t n)
{
    if (!p || n == 0) { /* flush */
        if (k->buflen) {
            dkp__sink_write(k, k->buf, k->buflen);
            k->buflen = 0;
        }
        return;
    }
    if (k->buflen + n > sizeof k->buf) {
        dkp__sink_write(k, k->buf, k->buflen);
        k->buflen = 0;
    }
    if (n >= sizeof k->buf) {
        dkp__sink_write(k, p, n);
    } else {
        memcpy(k->buf + k->buflen, p, n);
        k->buflen += n;
    }
}

static void dkp__sink_blanks(struct dkp__sink *k, size_t *blanks)
{
    for (; *blanks > 0; (*blanks)--)
        dkp__sink_add(k, "\r\n", 2);
}

/* Simple body canonicalisation (RFC 6376 §3.4.3) as libopendkim's
 * dkim_canon_bodychunk() on one chunk: empty lines at the end dropped, an
 * empty body is CRLF. */
static void dkp__body_simple(struct dkp__sink *k, const unsigned char *b, size_t n)
{
    const unsigned char *wrote = b;
    size_t wlen = 0, blanks = 0;
    int blank = 1;
    unsigned char last = '\0';

    for (const unsigned char *p = b; p < b + n; p++) {
        if (*p == '\n') {
            if (last == '\r') {
                if (blank)
                    blanks++;
                else if (wlen == 1 || p == b)
                    dkp__sink_add(k, "\r\n", 2);
                else
                    dkp__sink_add(k, wrote, wlen + 1);
                wrote = p + 1;
                wlen = 0;
                blank = 1;
            }
        } else {
            if (*p != '\r') {
                dkp__sink_blanks(k, &blanks);
                blank = 0;
            }
            wlen++;
        }
        last = *p;
    }
    if (wlen > 0 && wrote[wlen - 1] == '\r')
        wlen--;
    dkp__sink_add(k, wrote, wlen);
    if (k->wrote == 0)
        dkp__sink_add(k, "\r\n", 2);
    dkp__sink_add(k, NULL, 0);
}

/* Relaxed body canonicalisation (RFC 6376 §3.4.4) as libopendkim: white
 * space runs become one SP, white space at line ends and empty lines at
 * the end go, an empty body stays empty. A last line without CRLF is an
 * error (libopendkim: "CRLF at end of body missing"). */
static int dkp__body_relaxed(struct dkp__sink *k, const unsigned char *b, size_t n, char *err,
                             size_t errlen)
{
    struct dkp_buf line = {0};
    size_t blanks = 0;
    int blank = 1, st = 0;

    for (const unsigned char *p = b; p < b + n; p++) {
        int wsp = *p == ' ' || *p == '\t';
        switch (st) {
        case 0: /* line start */
            if (wsp) {
                st = 1;
            } else if (*p == '\r') {
                st = 2;
            } else {
                blank = 0;
                dkp__addc(&line, (char)*p);
                st = 3;
            }
            break;
        case 1: /* in white space */
            if (wsp)
                break;
            if (*p == '\r') {
                st = 2;
            } else {
                dkp__sink_blanks(k, &blanks);
                dkp__sink_add(k, " ", 1);
                blank = 0;
                dkp__addc(&line, (char)*p);
                st = 3;
            }
            break;
        case 2: /* after CR */
            if (*p == '\n') {
                if (blank) {
                    blanks++;
                } else {
                    dkp__sink_blanks(k, &blanks);
                    dkp__sink_add(k, line.p, line.len);
                    dkp__sink_add(k, "\r\n", 2);
                    line.len = 0;
                    blank = 1;
                }
                st = 0;
            } else if (*p == '\r') {
                blank = 0;
                dkp__addc(&line, '\r');
            } else if (wsp) {
                dkp__sink_blanks(k, &blanks);
                dkp__sink_add(k, line.p, line.len);
                line.len = 0;
                st = 1;
            } else {
                blank = 0;
                dkp__addc(&line, (char)*p);
                st = 3;
            }
            break;
        default: /* in a word */
            if (wsp) {
                dkp__sink_blanks(k, &blanks);
                dkp__sink_add(k, line.p, line.len);
                line.len = 0;
                st = 1;
            } else if (*p == '\r') {
                st = 2;
            } else {
                /* The run of word bytes up to the next WSP or CR goes in
                 * at once: per byte, this loop was most of the signing
                 * cost of a large body. */
                const unsigned char *q = p + 1;
                while (q < b + n && *q != ' ' && *q != '\t' && *q != '\r')
                    q++;
                dkp__add(&line, p, (size_t)(q - p));
                p = q - 1;
            }
            break;
        }
    }
    int oom = line.oom, rest = line.len > 0;
    free(line.p);
    if (oom) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (rest) {
        snprintf(err, errlen, "CRLF at end of body missing");
        return -1;
    }
    dkp__sink_add(k, NULL, 0);
    return 0;
}

/* ---- the DKIM-Signature field ---------------------------------------------- */

/* Fold the tag list as dkim_getsighdr_d() with its 75-column margin,
 * starting after "DKIM-Signature: ". A tag that does not fit starts a new
 * line (CRLF HT); h= then breaks after colons, b= and bh= anywhere (CRLF
 * HT SP); an RSA b= always starts a line of its own. */
static void dkp__fold(struct dkp_buf *out, char **tags, size_t ntags, int rsa, unsigned bits,
                      size_t *b_end)
{
    size_t len = DKP_SIGN_NAMELEN;
    int first = 1;

    for (size_t t = 0; t < ntags; t++) {
        char *pv = tags[t];
        size_t pvlen = strlen(pv), wl = strcspn(pv, "=");
        char which[16];
        snprintf(which, sizeof which, "%.*s", (int)(wl < 9 ? wl : 9), pv);
        wl = strlen(which);
        size_t b64 = ((bits / 8 + 2) / 3) * 4;
        int force = rsa && !strcmp(which, "b") && len + wl + b64 + 1 >= DKP_SIGN_MARGIN;

        if (!strcmp(which, "b")) /* where "b=" ends, unless broken below */
            *b_end = out->len + (len == 0 || first ? 0 : 1) + wl + 1;
        if (len == 0 || first) {
            dkp__add(out, pv, pvlen);
            len += pvlen;
            first = 0;
        } else if (force || len + pvlen > DKP_SIGN_MARGIN) {
            dkp__add(out, "\r\n\t", 3);
            len = 8;
            if (!strcmp(which, "b"))
                *b_end = out->len + wl + 1;
            if (!strcmp(which, "h")) {
                int ifirst = 1;
                for (size_t at = 0; at < pvlen;) {
                    size_t tl = strcspn(pv + at, ":");
                    if (tl > 0) {
                        if (ifirst) {
                            ifirst = 0;
                        } else if (len + tl + 1 > DKP_SIGN_MARGIN) {
                            dkp__add(out, ":\r\n\t ", 5);
                            len = 9;
                        } else {
                            dkp__addc(out, ':');
                            len++;
                        }
                        dkp__add(out, pv + at, tl);
                        len += tl;
                    }
                    at += tl + 1;
                }
            } else if (!strcmp(which, "b") || !strcmp(which, "bh") || !strcmp(which, "z")) {
                size_t x = wl + 1;
                dkp__add(out, pv, x);
                len += x;
                if (x < pvlen) /* (libopendkim appends a NUL for an empty b=) */
                    dkp__addc(out, pv[x]);
                len++;
                for (x++; x < pvlen;) {
                    if (DKP_SIGN_MARGIN - len == 0) {
                        dkp__add(out, "\r\n\t ", 4);
                        len = 9;
                    }
                    size_t room = DKP_SIGN_MARGIN - len; /* wraps when len > margin, as there */
                    size_t k = room < pvlen - x ? room : pvlen - x;
                    dkp__add(out, pv + x, k);
                    x += k;
                    len += k;
                }
            } else {
                dkp__add(out, pv, pvlen);
                len += pvlen;
            }
        } else {
            dkp__addc(out, ' ');
            dkp__add(out, pv, pvlen);
            len += 1 + pvlen;
        }
    }
}

/* The tags in libopendkim's order: v a c d s t bh h b, b= last. Returns
 * the folded text (malloc'd) or NULL; *b_end is where "b=" ends in it. */
static char *dkp__sighdr(const struct dkp_sign *s, const char *domain, const char *selector,
                         enum dkp_alg alg, uint64_t t, const char *bh, const struct dkp__msg *m,
                         unsigned bits, const char *sig, size_t *b_end)
{
    struct dkp_buf tag[9] = {{0}}, out = {0};
    char *tags[9];
    int oom = 0;

    dkp__adds(&tag[0], "v=1;");
    dkp__adds(&tag[1], "a=");
    dkp__adds(&tag[1], dkp_alg_name(alg));
    dkp__adds(&tag[1], ";");
    dkp__adds(&tag[2], s->hdr_relaxed ? "c=relaxed/" : "c=simple/");
    dkp__adds(&tag[2], s->body_relaxed ? "relaxed;" : "simple;");
    dkp__adds(&tag[3], "d=");
    dkp__adds(&tag[3], domain);
    dkp__adds(&tag[3], ";");
    dkp__adds(&tag[4], "s=");
    dkp__adds(&tag[4], selector);
    dkp__adds(&tag[4], ";");
    char ts[32];
    snprintf(ts, sizeof ts, "t=%llu;", (unsigned long long)t);
    dkp__adds(&tag[5], ts);
    dkp__adds(&tag[6], "bh=");
    dkp__adds(&tag[6], bh);
    dkp__adds(&tag[6], ";");
    /* h=: the signed fields in message order with their names as written,
     * then every over-sign name once more, as configured. */
    dkp__adds(&tag[7], "h=");
    int firsth = 1;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->h[i].signed_)
            continue;
        if (!firsth)
            dkp__addc(&tag[7], ':');
        firsth = 0;
        dkp__add(&tag[7], m->h[i].text, m->h[i].namelen);
    }
    if (s->oversign[0]) {
        int wrote = 0;
        if (!firsth)
            dkp__addc(&tag[7], ':');
        for (size_t i = 0; s->oversign[i]; i++) {
            if (!s->oversign[i][0])
                continue;
            if (wrote)
                dkp__addc(&tag[7], ':');
            dkp__adds(&tag[7], s->oversign[i]);
            wrote = 1;
        }
    }
    dkp__adds(&tag[7], ";");
    dkp__adds(&tag[8], "b=");
    dkp__adds(&tag[8], sig);
    for (int i = 0; i < 9; i++) {
        oom |= tag[i].oom;
        tags[i] = tag[i].p;
    }
    if (!oom)
        dkp__fold(&out, tags, 9, alg == DKP_ALG_RSA_SHA256, bits, b_end);
    for (int i = 0; i < 9; i++)
        free(tag[i].p);
    if (oom || out.oom || !out.p) {
        free(out.p);
        return NULL;
    }
    return out.p;
}

static char *dkp__b64(const unsigned char *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

/* ---- signing --------------------------------------------------------------- */

/* The signature over data (canonicalised header fields + our own field):
 * RSA PKCS#1 v1.5 over SHA-256, or (RFC 8463) PureEdDSA over the SHA-256
 * hash of data. */
static int dkp__crypto_sign(const struct dkp_sign *s, EVP_PKEY *key, enum dkp_alg alg,
                            const struct dkp_buf *data, unsigned char *sig, size_t *siglen,
                            char *err, size_t errlen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = 0;

    if (!md) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (alg == DKP_ALG_RSA_SHA256) {
        ok = EVP_DigestSignInit(md, NULL, s->sha256, NULL, key) == 1 &&
             EVP_DigestSign(md, sig, siglen, (const unsigned char *)data->p, data->len) == 1;
    } else {
        unsigned char h[EVP_MAX_MD_SIZE];
        unsigned hl = 0;
        ok = EVP_Digest(data->p, data->len, h, &hl, s->sha256, NULL) == 1 &&
             EVP_DigestSignInit(md, NULL, NULL, NULL, key) == 1 &&
             EVP_DigestSign(md, sig, siglen, h, hl) == 1;
    }
    EVP_MD_CTX_free(md);
    if (!ok) {
        dkp__ssl_error("signature generation failed", err, errlen);
        return -1;
    }
    return 0;
}

int dkp_sign_message(struct dkp_sign *s, const char *domain, const char *selector, const char *pem,
                     enum dkp_alg alg, const char *msg, size_t len, char **value, char *err,
                     size_t errlen)
{
    struct dkp__msg m = {0};
    struct dkp__sink *body = NULL;
    struct dkp_buf data = {0};
    size_t *order = NULL;
    unsigned bits = 0;
    unsigned char bh[EVP_MAX_MD_SIZE], *sig = NULL;
    unsigned bhl = 0;
    size_t siglen = 0;
    char *bh64 = NULL, *presig = NULL, *sig64 = NULL;
    int rc = -1;

    *value = NULL;
    EVP_PKEY *key = dkp__key_get(s, pem, &bits, err, errlen);
    if (!key)
        return -1;
    int type = EVP_PKEY_get_base_id(key);
    if ((alg == DKP_ALG_RSA_SHA256) != (type == EVP_PKEY_RSA) ||
        (alg == DKP_ALG_ED25519_SHA256) != (type == EVP_PKEY_ED25519)) {
        snprintf(err, errlen, "the key is not of type %s", dkp_alg_name(alg));
        goto out;
    }
    if (alg == DKP_ALG_RSA_SHA256 && bits < DKP_SIGN_MINBITS) {
        snprintf(err, errlen, "private key too small (%u bits, need at least %d)", bits,
                 DKP_SIGN_MINBITS);
        goto out;
    }
    siglen = (size_t)EVP_PKEY_get_size(key);
    sig = malloc(siglen);
    if (!sig) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }

    if (dkp__split(msg, len, &m, err, errlen) < 0)
        goto out;
    int from = 0;
    for (size_t i = 0; i < m.n && !from; i++)
        from = m.h[i].namelen == 4 && !strncasecmp(m.h[i].text, "from", 4);
    if (!from) {
        snprintf(err, errlen, "required header \"from\" not found");
        goto out;
    }
    order = malloc((m.n ? m.n : 1) * sizeof *order);
    ssize_t nsel = order ? dkp__select(s, &m, order) : -1;
    if (nsel < 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }

    /* Body hash. */
    body = calloc(1, sizeof *body);
    if (!body || !(body->md = EVP_MD_CTX_new())) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (EVP_DigestInit_ex(body->md, s->sha256, NULL) != 1)
        body->bad = 1;
    if (s->body_relaxed) {
        if (dkp__body_relaxed(body, (const unsigned char *)m.body, m.bodylen, err, errlen) < 0)
            goto out;
    } else {
        dkp__body_simple(body, (const unsigned char *)m.body, m.bodylen);
    }
    if (body->bad || EVP_DigestFinal_ex(body->md, bh, &bhl) != 1) {
        dkp__ssl_error("body hash failed", err, errlen);
        goto out;
    }
    bh64 = dkp__b64(bh, bhl);

    /* The hashed data: the chosen fields, then our field with b= empty
     * (no CRLF after it, RFC 6376 §3.7), folded exactly as the field we
     * add will be: the final text with a stand-in signature of the right
     * length, cut after "b=". (libopendkim folded an empty b= instead; for
     * RSA that is the same text, as its b= always starts a new line; for
     * Ed25519 it differs in white space only, which relaxed header
     * canonicalisation removes, but it broke every Ed25519 signature with
     * c=simple/... -- the one place where we differ on purpose.) */
    uint64_t t = s->fixed_time ? s->fixed_time : (uint64_t)time(NULL);
    size_t b_end = 0, b64len = 4 * ((siglen + 2) / 3);
    char *stand_in = bh64 ? malloc(b64len + 1) : NULL;
    if (stand_in) {
        memset(stand_in, 'A', b64len);
        stand_in[b64len] = '\0';
        presig = dkp__sighdr(s, domain, selector, alg, t, bh64, &m, bits, stand_in, &b_end);
        free(stand_in);
    }
    if (!presig) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    presig[b_end] = '\0';
    for (ssize_t i = 0; i < nsel; i++)
        dkp__canon_header(&data, s->hdr_relaxed, m.h[order[i]].text, m.h[order[i]].len, 1);
    struct dkp_buf field = {0};
    dkp__adds(&field, "DKIM-Signature: ");
    dkp__adds(&field, presig);
    if (!field.oom)
        dkp__canon_header(&data, s->hdr_relaxed, field.p, field.len, 0);
    data.oom |= field.oom;
    free(field.p);
    if (data.oom) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (dkp__crypto_sign(s, key, alg, &data, sig, &siglen, err, errlen) < 0)
        goto out;
    sig64 = dkp__b64(sig, siglen);
    *value = sig64 ? dkp__sighdr(s, domain, selector, alg, t, bh64, &m, bits, sig64, &b_end) : NULL;
    if (!*value) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    if (body)
        EVP_MD_CTX_free(body->md);
    free(body);
    free(order);
    free(m.h);
    free(data.p);
    free(bh64);
    free(presig);
    free(sig64);
    free(sig);
    EVP_PKEY_free(key);
    return rc;
}

int dkp_sign_addr_domain(const char *value, char *out, size_t outlen)
{
    unsigned char *copy, *user = NULL, *dom = NULL;
    int rc = -1;

    if (!value)
        return -1;
    copy = (unsigned char *)strdup(value);
    if (!copy)
        return -1;
    /* dkim_mail_parse handles display names, comments and angle brackets;
     * it takes one address, so cut a list at its first top-level comma. */
    int depth = 0, quoted = 0;
    for (unsigned char *p = copy; *p; p++) {
        if (quoted) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                quoted = 0;
        } else if (*p == '"') {
            quoted = 1;
        } else if (*p == '(' || *p == '<') {
            depth++;
        } else if ((*p == ')' || *p == '>') && depth > 0) {
            depth--;
        } else if (*p == ',' && depth == 0) {
            *p = '\0';
            break;
        }
    }
    if (dkim_mail_parse(copy, &user, &dom) == 0 && dom && *dom && user && *user &&
        strlen((char *)dom) < outlen) {
        size_t i = 0;
        for (; dom[i]; i++)
            out[i] = (char)tolower(dom[i]);
        out[i] = '\0';
        rc = 0;
    }
    free(copy);
    return rc;
}
