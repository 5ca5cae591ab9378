/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rw_srs: standard SRS0/SRS1 forward and reverse (see rw_srs.h for the
 * format), plus the reverse of the format this plugin wrote before.
 */
#include "rw_srs.h"

#include "pstr.h"
#include "rw_hdr.h"

#include <ctype.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <strings.h>

#define RW_SRS_HASHLEN 4
#define RW_SRS_OLD_HASHLEN 8 /* the format before: base32 of HMAC-SHA256 */
#define RW_SRS_DAY 86400
#define RW_SRS_SLOTS 1024 /* two base32 letters of day stamp */

struct rw_srs {
    char sep;
    unsigned max_age;
    size_t n;
    char *secret[RW_SRS_SECRETS_MAX];
    size_t len[RW_SRS_SECRETS_MAX];
};

static const char rw_srs__b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char rw_srs__b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ---- the set ------------------------------------------------------------ */

struct rw_srs *rw_srs_new(char separator, unsigned max_age_days)
{
    if (separator != '=' && separator != '+' && separator != '-')
        return NULL;
    struct rw_srs *k = pstr_xcalloc(1, sizeof *k);
    k->sep = separator;
    k->max_age = max_age_days;
    return k;
}

void rw_srs_free(struct rw_srs *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->n; i++) {
        /* volatile: the zeroing of memory about to be freed must stay */
        volatile char *p = k->secret[i];
        for (size_t j = 0; j < k->len[i]; j++)
            p[j] = 0;
        free(k->secret[i]);
    }
    free(k);
}

size_t rw_srs_nsecrets(const struct rw_srs *k)
{
    return k ? k->n : 0;
}

int rw_srs_add_secret(struct rw_srs *k, const char *s, size_t len, const char **why)
{
    if (len < RW_SRS_SECRET_MIN) {
        *why = "secret too short (at least 16 characters)";
        return -1;
    }
    if (len > RW_SRS_SECRET_MAX) {
        *why = "secret too long (at most 1023 characters)";
        return -1;
    }
    if (memchr(s, 0, len) || memchr(s, '\n', len) || memchr(s, '\r', len)) {
        *why = "secret holds a NUL, CR or LF";
        return -1;
    }
    if (k->n == RW_SRS_SECRETS_MAX) {
        *why = "too many secrets (at most 64)";
        return -1;
    }
    k->secret[k->n] = pstr_xstrndup(s, len);
    k->len[k->n] = len;
    k->n++;
    return 0;
}

int rw_srs_parse_secrets(struct rw_srs *k, const char *text, size_t len, const char *file,
                         struct pstr *err)
{
    int bad = 0, added = 0;
    unsigned line = 0;
    size_t i = 0;
    if (len > RW_SRS_FILE_MAX) {
        pstr_printf(err, "%s: file too large (at most %d octets)\n", file, RW_SRS_FILE_MAX);
        return -1;
    }
    while (i < len) {
        line++;
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t next = nl ? end + 1 : len;
        if (end > i && text[end - 1] == '\r')
            end--;
        if (end > i) {
            const char *why = NULL;
            if (rw_srs_add_secret(k, text + i, end - i, &why) != 0) {
                pstr_printf(err, "%s:%u: %s\n", file, line, why);
                bad = 1;
            } else {
                added++;
            }
        }
        i = next;
    }
    if (!bad && added == 0) {
        pstr_printf(err, "%s: no secret in the file (one per line)\n", file);
        bad = 1;
    }
    return bad ? -1 : added;
}

/* ---- hashes and stamps -------------------------------------------------- */

/* The first RW_SRS_HASHLEN characters of base64(HMAC-SHA1(secret,
 * lower(a b [c]))). */
static void rw_srs__hash(const struct rw_srs *k, size_t si, const char *a, size_t alen,
                         const char *b, size_t blen, const char *c, size_t clen,
                         char out[RW_SRS_HASHLEN + 1])
{
    struct pstr in = PSTR_INIT;
    pstr_append(&in, a, alen);
    pstr_append(&in, b, blen);
    if (c)
        pstr_append(&in, c, clen);
    for (size_t i = 0; i < in.len; i++)
        in.ptr[i] = (char)tolower((unsigned char)in.ptr[i]);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    HMAC(EVP_sha1(), k->secret[si], (int)k->len[si], (const unsigned char *)pstr_cstr(&in), in.len,
         md, &mdlen);
    pstr_free(&in);
    /* 4 characters: 24 bits, the first 3 octets */
    uint32_t v = (uint32_t)md[0] << 16 | (uint32_t)md[1] << 8 | md[2];
    out[0] = rw_srs__b64[(v >> 18) & 63];
    out[1] = rw_srs__b64[(v >> 12) & 63];
    out[2] = rw_srs__b64[(v >> 6) & 63];
    out[3] = rw_srs__b64[v & 63];
    out[4] = 0;
}

/* Whether h (RW_SRS_HASHLEN characters) is the hash of one of the secrets,
 * compared without regard to case. */
static int rw_srs__hash_ok(const struct rw_srs *k, const char *h, const char *a, size_t alen,
                           const char *b, size_t blen, const char *c, size_t clen)
{
    for (size_t i = 0; i < k->n; i++) {
        char want[RW_SRS_HASHLEN + 1];
        rw_srs__hash(k, i, a, alen, b, blen, c, clen, want);
        if (strncasecmp(want, h, RW_SRS_HASHLEN) == 0)
            return 1;
    }
    return 0;
}

/* The format before: 8 base32 letters of the first 40 bits of
 * HMAC-SHA256(secret, lower("TT=domain=local")). */
static int rw_srs__old_hash_ok(const struct rw_srs *k, const char *h, const char tt[2],
                               const char *dom, size_t dlen, const char *local, size_t llen)
{
    struct pstr in = PSTR_INIT;
    pstr_append(&in, tt, 2);
    pstr_putc(&in, '=');
    pstr_append(&in, dom, dlen);
    pstr_putc(&in, '=');
    pstr_append(&in, local, llen);
    for (size_t i = 0; i < in.len; i++)
        in.ptr[i] = (char)tolower((unsigned char)in.ptr[i]);
    int ok = 0;
    for (size_t s = 0; s < k->n && !ok; s++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        HMAC(EVP_sha256(), k->secret[s], (int)k->len[s], (const unsigned char *)pstr_cstr(&in),
             in.len, md, &mdlen);
        uint64_t v = 0;
        for (int i = 0; i < 5; i++)
            v = (v << 8) | md[i];
        char want[RW_SRS_OLD_HASHLEN];
        for (int i = RW_SRS_OLD_HASHLEN - 1; i >= 0; i--) {
            want[i] = rw_srs__b32[v & 31];
            v >>= 5;
        }
        ok = strncasecmp(want, h, RW_SRS_OLD_HASHLEN) == 0;
    }
    pstr_free(&in);
    return ok;
}

static void rw_srs__stamp(time_t now, char out[3])
{
    unsigned d = (unsigned)((now / RW_SRS_DAY) % RW_SRS_SLOTS);
    out[0] = rw_srs__b32[(d >> 5) & 31];
    out[1] = rw_srs__b32[d & 31];
    out[2] = 0;
}

static int rw_srs__b32val(char c)
{
    const char *p = c ? strchr(rw_srs__b32, toupper((unsigned char)c)) : NULL;
    return p ? (int)(p - rw_srs__b32) : -1;
}

/* Whether the two stamp letters are base32 and at most max_age days old
 * (modulo 1024 days, as libsrs2: a stamp "from tomorrow" is 1023 days
 * old). */
static int rw_srs__stamp_ok(const struct rw_srs *k, const char *tt, time_t now)
{
    int t0 = rw_srs__b32val(tt[0]), t1 = rw_srs__b32val(tt[1]);
    if (t0 < 0 || t1 < 0)
        return 0;
    unsigned stamp = (unsigned)(t0 << 5 | t1);
    unsigned today = (unsigned)((now / RW_SRS_DAY) % RW_SRS_SLOTS);
    return ((today + RW_SRS_SLOTS - stamp) % RW_SRS_SLOTS) <= k->max_age;
}

static int rw_srs__is_sep(char c)
{
    return c == '=' || c == '+' || c == '-';
}

/* "SRS0" or "SRS1" (any case) and a separator: 0 or 1, else -1. */
static int rw_srs__tag(const char *local, size_t llen)
{
    if (llen < 5 || strncasecmp(local, "SRS", 3) != 0 || !rw_srs__is_sep(local[4]))
        return -1;
    return local[3] == '0' ? 0 : local[3] == '1' ? 1 : -1;
}

/* ---- forward ------------------------------------------------------------ */

int rw_srs_forward(const struct rw_srs *k, const char *domain, const char *addr, time_t now,
                   char **out)
{
    if (!*addr)
        return 0;
    const char *at = strrchr(addr, '@');
    if (!at || !k || k->n == 0)
        return -1;
    if (strcasecmp(at + 1, domain) == 0)
        return 0;
    /* The reverse splits at the first '=' after the stamp, so a domain
     * holding one (an address literal) would not come back; a sender that
     * is no valid address would give a recipient nobody can bounce to. */
    if (!rw_addr_valid(addr) || strchr(at + 1, '='))
        return 0;
    const char *host = at + 1;
    size_t hlen = strlen(host), llen = (size_t)(at - addr);
    char h[RW_SRS_HASHLEN + 1];
    struct pstr s = PSTR_INIT;
    switch (rw_srs__tag(addr, llen)) {
    case 0: {
        /* SRS0 of another forwarder: SRS1 pointing at it; the SRS0 part
         * keeps its separator. */
        const char *user = addr + 4;
        size_t ulen = llen - 4;
        rw_srs__hash(k, 0, host, hlen, user, ulen, NULL, 0, h);
        pstr_printf(&s, "SRS1%c%s=%s=%.*s@%s", k->sep, h, host, (int)ulen, user, domain);
        break;
    }
    case 1: {
        /* SRS1: re-signed, still pointing at the first forwarder. */
        const char *end = addr + llen;
        const char *e1 = memchr(addr + 5, '=', (size_t)(end - addr - 5));
        const char *fhost = e1 ? e1 + 1 : NULL;
        const char *e2 = fhost ? memchr(fhost, '=', (size_t)(end - fhost)) : NULL;
        if (!e2 || e2 == fhost || e2 + 1 >= end)
            return 0; /* damaged: left alone, as libsrs2 does */
        const char *user = e2 + 1;
        size_t fhlen = (size_t)(e2 - fhost), ulen = (size_t)(end - user);
        rw_srs__hash(k, 0, fhost, fhlen, user, ulen, NULL, 0, h);
        pstr_printf(&s, "SRS1%c%s=%.*s=%.*s@%s", k->sep, h, (int)fhlen, fhost, (int)ulen, user,
                    domain);
        break;
    }
    default: {
        char tt[3];
        rw_srs__stamp(now, tt);
        rw_srs__hash(k, 0, tt, 2, host, hlen, addr, llen, h);
        pstr_printf(&s, "SRS0%c%s=%s=%s=%.*s@%s", k->sep, h, tt, host, (int)llen, addr, domain);
        break;
    }
    }
    /* Over 64 octets of local part, the bounce would be refused by our
     * own RCPT (RFC 5321 4.5.3.1.1) and by many MTAs: the sender is kept
     * (its SPF may fail at the next hop, but the mail goes). */
    if (!rw_addr_valid(pstr_cstr(&s))) {
        pstr_free(&s);
        return 0;
    }
    *out = pstr_steal(&s);
    return 1;
}

/* ---- reverse ------------------------------------------------------------ */

/* SRS0 local part [local, end): 1 and *out, or -1. */
static int rw_srs__reverse0(const struct rw_srs *k, const char *local, const char *end, time_t now,
                            char **out)
{
    /* HHHH=TT=host=user; the user may hold '=', the host may not */
    const char *h = local + 5;
    const char *e1 = memchr(h, '=', (size_t)(end - h));
    if (!e1)
        return -1;
    const char *tt = e1 + 1;
    const char *e2 = memchr(tt, '=', (size_t)(end - tt));
    if (!e2 || e2 - tt != 2)
        return -1;
    const char *host = e2 + 1;
    const char *e3 = memchr(host, '=', (size_t)(end - host));
    if (!e3 || e3 == host || e3 + 1 >= end)
        return -1;
    const char *user = e3 + 1;
    size_t hlen = (size_t)(e3 - host), ulen = (size_t)(end - user);
    if (!rw_srs__stamp_ok(k, tt, now))
        return -1;
    int ok;
    if (e1 - h == RW_SRS_HASHLEN)
        ok = rw_srs__hash_ok(k, h, tt, 2, host, hlen, user, ulen);
    else if (e1 - h == RW_SRS_OLD_HASHLEN && local[4] == '=')
        ok = rw_srs__old_hash_ok(k, h, tt, host, hlen, user, ulen);
    else
        ok = 0;
    if (!ok)
        return -1;
    struct pstr s = PSTR_INIT;
    pstr_printf(&s, "%.*s@%.*s", (int)ulen, user, (int)hlen, host);
    if (!rw_addr_valid(pstr_cstr(&s))) {
        pstr_free(&s);
        return -1;
    }
    *out = pstr_steal(&s);
    return 1;
}

int rw_srs_reverse(const struct rw_srs *k, const char *domain, const char *addr, time_t now,
                   char **out)
{
    const char *at = strrchr(addr, '@');
    if (!at || strcasecmp(at + 1, domain) != 0)
        return 0;
    int tag = rw_srs__tag(addr, (size_t)(at - addr));
    if (tag < 0)
        return 0;
    if (!k || k->n == 0)
        return -1;
    if (tag == 0)
        return rw_srs__reverse0(k, addr, at, now, out);
    /* SRS1: HHHH=host=user, user being the SRS0 part after "SRS0" */
    const char *h = addr + 5;
    const char *e1 = memchr(h, '=', (size_t)(at - h));
    if (!e1 || e1 - h != RW_SRS_HASHLEN)
        return -1;
    const char *host = e1 + 1;
    const char *e2 = memchr(host, '=', (size_t)(at - host));
    if (!e2 || e2 == host || e2 + 1 >= at)
        return -1;
    const char *user = e2 + 1;
    size_t hlen = (size_t)(e2 - host), ulen = (size_t)(at - user);
    if (!rw_srs__hash_ok(k, h, host, hlen, user, ulen, NULL, 0))
        return -1;
    struct pstr s = PSTR_INIT;
    pstr_printf(&s, "SRS0%.*s@%.*s", (int)ulen, user, (int)hlen, host);
    const char *srs0 = pstr_cstr(&s);
    int rc;
    if (hlen == strlen(domain) && strncasecmp(host, domain, hlen) == 0) {
        /* We were the first forwarder too: our own SRS0, reversed here
         * rather than sent to ourselves. */
        const char *a0 = strrchr(srs0, '@');
        rc = rw_srs__tag(srs0, (size_t)(a0 - srs0)) == 0 ? rw_srs__reverse0(k, srs0, a0, now, out)
                                                         : -1;
        pstr_free(&s);
        return rc;
    }
    if (rw_srs__tag(srs0, (size_t)(strrchr(srs0, '@') - srs0)) != 0 || !rw_addr_valid(srs0)) {
        pstr_free(&s);
        return -1;
    }
    *out = pstr_steal(&s);
    return 1;
}
