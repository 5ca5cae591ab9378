/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tlspol: SNI pattern matching and fingerprint lists; see tlspol.h.
 * Pure: strings in, answers out; nothing is kept between calls.
 */
#include "tlspol.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool tlspol__label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* A host name: labels of 1..63 label characters, not starting or ending
 * with '-', joined by single dots; at least `min_labels` of them. */
static bool tlspol__hostname(const char *h, unsigned min_labels)
{
    size_t total = strlen(h);
    if (total == 0 || total > 253)
        return false;
    unsigned labels = 0;
    const char *p = h;
    for (;;) {
        size_t n = 0;
        while (tlspol__label_char(p[n]))
            n++;
        if (n == 0 || n > 63 || p[0] == '-' || p[n - 1] == '-')
            return false;
        labels++;
        p += n;
        if (*p == 0)
            break;
        if (*p != '.')
            return false;
        p++;
    }
    return labels >= min_labels;
}

bool tlspol_sni_pattern_ok(const char *pat)
{
    if (pat[0] == '*')
        return pat[1] == '.' && tlspol__hostname(pat + 2, 2);
    return tlspol__hostname(pat, 1);
}

bool tlspol_sni_match(const char *pat, const char *host)
{
    if (!host || !*host)
        return false;
    size_t hl = strlen(host);
    if (host[hl - 1] == '.')
        hl--;
    if (pat[0] != '*')
        return strlen(pat) == hl && strncasecmp(pat, host, hl) == 0;
    /* "*.example.com": one non-empty label, then ".example.com" exactly. */
    const char *suffix = pat + 1;
    size_t sl = strlen(suffix);
    if (hl <= sl || strncasecmp(host + hl - sl, suffix, sl) != 0)
        return false;
    size_t first = hl - sl; /* length of the label the star stands for */
    return memchr(host, '.', first) == NULL;
}

size_t tlspol_sni_pick(const char *const *pats, size_t n, const char *host)
{
    if (!host || !*host)
        return SIZE_MAX;
    for (size_t i = 0; i < n; i++)
        if (pats[i][0] != '*' && tlspol_sni_match(pats[i], host))
            return i;
    for (size_t i = 0; i < n; i++)
        if (pats[i][0] == '*' && tlspol_sni_match(pats[i], host))
            return i;
    return SIZE_MAX;
}

static int tlspol__hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One entry (len bytes at p) into fp; false when it is not one. */
static bool tlspol__fp_entry(const char *p, size_t len, uint8_t fp[TLSPOL_FP_LEN])
{
    static const char prefix[] = "sha256:";
    size_t pl = sizeof prefix - 1;
    if (len < pl || strncasecmp(p, prefix, pl) != 0)
        return false;
    p += pl;
    len -= pl;
    size_t nb = 0;
    size_t i = 0;
    while (i < len) {
        if (nb == TLSPOL_FP_LEN || i + 1 >= len)
            return false;
        int hi = tlspol__hex(p[i]), lo = tlspol__hex(p[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        fp[nb++] = (uint8_t)(hi << 4 | lo);
        i += 2;
        if (i < len && p[i] == ':') {
            if (i + 1 == len)
                return false; /* a trailing colon */
            i++;
        }
    }
    return nb == TLSPOL_FP_LEN;
}

int tlspol_fp_parse(const char *text, uint8_t (*out)[TLSPOL_FP_LEN], size_t max, size_t *n,
                    char *err, size_t errlen)
{
    *n = 0;
    const char *p = text;
    for (;;) {
        p += strspn(p, ", \t");
        if (!*p)
            break;
        size_t len = strcspn(p, ", \t");
        if (*n >= max) {
            snprintf(err, errlen, "more than %zu fingerprints", max);
            return -EINVAL;
        }
        if (!tlspol__fp_entry(p, len, out[*n])) {
            snprintf(err, errlen,
                     "'%.*s%s' is not a fingerprint (want sha256: and 64 hex digits, "
                     "colons between bytes allowed)",
                     len > 40 ? 40 : (int)len, p, len > 40 ? "..." : "");
            return -EINVAL;
        }
        (*n)++;
        p += len;
    }
    if (*n == 0) {
        snprintf(err, errlen, "no fingerprint given");
        return -EINVAL;
    }
    return 0;
}

void tlspol_fp_format(const uint8_t fp[TLSPOL_FP_LEN], char out[TLSPOL_FP_TEXT])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256:", 7);
    for (size_t i = 0; i < TLSPOL_FP_LEN; i++) {
        out[7 + 2 * i] = hex[fp[i] >> 4];
        out[8 + 2 * i] = hex[fp[i] & 15];
    }
    out[7 + 2 * TLSPOL_FP_LEN] = 0;
}

bool tlspol_fp_in(const uint8_t fp[TLSPOL_FP_LEN], const uint8_t (*list)[TLSPOL_FP_LEN], size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(fp, list[i], TLSPOL_FP_LEN) == 0)
            return true;
    return false;
}
