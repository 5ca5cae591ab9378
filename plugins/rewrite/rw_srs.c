/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rw_srs: SRS0 forward and reverse (see rw_srs.h for the format).
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

static const char rw_srs__b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static void rw_srs__stamp(time_t now, char out[3])
{
    unsigned d = (unsigned)((now / 86400) & 1023);
    out[0] = rw_srs__b32[(d >> 5) & 31];
    out[1] = rw_srs__b32[d & 31];
    out[2] = 0;
}

static int rw_srs__b32val(char c)
{
    const char *p = strchr(rw_srs__b32, toupper((unsigned char)c));
    return c && p ? (int)(p - rw_srs__b32) : -1;
}

/* HHHHHHHH over lower("TT=domain=local"). */
static void rw_srs__hash(const char *secret, size_t slen, const char *tt, const char *domain, size_t dlen,
                         const char *local, size_t llen, char out[9])
{
    struct pstr in = PSTR_INIT;
    pstr_puts(&in, tt);
    pstr_putc(&in, '=');
    pstr_append(&in, domain, dlen);
    pstr_putc(&in, '=');
    pstr_append(&in, local, llen);
    for (size_t i = 0; i < in.len; i++)
        in.ptr[i] = (char)tolower((unsigned char)in.ptr[i]);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    HMAC(EVP_sha256(), secret, (int)slen, (const unsigned char *)in.ptr, in.len, md, &mdlen);
    pstr_free(&in);
    /* 40 bits -> 8 base32 letters */
    uint64_t v = 0;
    for (int i = 0; i < 5; i++)
        v = (v << 8) | md[i];
    for (int i = 7; i >= 0; i--) {
        out[i] = rw_srs__b32[v & 31];
        v >>= 5;
    }
    out[8] = 0;
}

int rw_srs_forward(const char *secret, size_t slen, const char *domain, const char *addr, time_t now,
                   char **out)
{
    if (!*addr)
        return 0;
    const char *at = strrchr(addr, '@');
    if (!at)
        return -1;
    if (strcasecmp(at + 1, domain) == 0)
        return 0;
    /* The reverse splits at the first '=' after TT, so a domain holding
     * one (an address literal) would not come back; a sender that is no
     * valid address would give a recipient nobody can bounce to. */
    if (!rw_addr_valid(addr) || strchr(at + 1, '='))
        return 0;
    char tt[3], h[9];
    rw_srs__stamp(now, tt);
    rw_srs__hash(secret, slen, tt, at + 1, strlen(at + 1), addr, (size_t)(at - addr), h);
    struct pstr s = PSTR_INIT;
    pstr_printf(&s, "SRS0=%s=%s=%s=%.*s@%s", h, tt, at + 1, (int)(at - addr), addr, domain);
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

int rw_srs_reverse(const char *secret, size_t slen, const char *domain, const char *addr, time_t now,
                   unsigned max_age_days, char **out)
{
    const char *at = strrchr(addr, '@');
    if (!at || strcasecmp(at + 1, domain) != 0 || strncasecmp(addr, "SRS0=", 5) != 0)
        return 0;
    /* HHHHHHHH=TT=domain=local */
    const char *h = addr + 5;
    const char *e1 = memchr(h, '=', (size_t)(at - h));
    if (!e1 || e1 - h != 8)
        return -1;
    const char *tt = e1 + 1;
    const char *e2 = memchr(tt, '=', (size_t)(at - tt));
    if (!e2 || e2 - tt != 2)
        return -1;
    const char *dom = e2 + 1;
    const char *e3 = memchr(dom, '=', (size_t)(at - dom));
    if (!e3 || e3 == dom || e3 + 1 >= at)
        return -1;
    const char *local = e3 + 1;
    int t0 = rw_srs__b32val(tt[0]), t1 = rw_srs__b32val(tt[1]);
    if (t0 < 0 || t1 < 0)
        return -1;
    char ttu[3] = {rw_srs__b32[t0], rw_srs__b32[t1], 0};
    char want[9];
    rw_srs__hash(secret, slen, ttu, dom, (size_t)(e3 - dom), local, (size_t)(at - local), want);
    if (strncasecmp(want, h, 8) != 0)
        return -1;
    unsigned stamp = (unsigned)(t0 << 5 | t1);
    unsigned today = (unsigned)((now / 86400) & 1023);
    if (((today - stamp) & 1023) > max_age_days)
        return -1;
    struct pstr s = PSTR_INIT;
    pstr_printf(&s, "%.*s@%.*s", (int)(at - local), local, (int)(e3 - dom), dom);
    *out = pstr_steal(&s);
    return 1;
}
