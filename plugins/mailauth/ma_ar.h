/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ma_ar: Authentication-Results (RFC 8601) values, read and written.
 *
 * Reading: a value is split into its authserv-id and its resinfos
 * ("dkim=pass header.d=example.com header.s=sel"), comments and folding
 * skipped, quoted strings honoured. The DKIM plugin writes one field per
 * signature under our authserv-id; mailauth reads their dkim results (for
 * DMARC) and their resinfo texts, and writes one field that carries them
 * with spf= and dmarc=.
 *
 * Pure: strings in, strings out; any thread.
 */
#ifndef MA_AR_H
#define MA_AR_H

#include <stddef.h>

#define MA_AR_MAX_RESINFO 16

/* A dkim resinfo as DMARC needs it. */
struct ma_ar_dkim {
    char result[16]; /* pass, fail, neutral, policy, temperror, permerror, none */
    char d[256];     /* header.d, lower case ("" when absent) */
    char s[128];     /* header.s */
};

struct ma_ar_value {
    size_t nres;
    char *res[MA_AR_MAX_RESINFO]; /* owned: each resinfo as text, comments and
                                     folding removed ("dkim=pass header.d=x") */
    struct ma_ar_dkim dkim[MA_AR_MAX_RESINFO];
    size_t ndkim;
};

/* Parse value (unfolded or not). When its authserv-id is `id` (any case):
 * 1 with *out filled (free with ma_ar_value_free). 0 when it is someone
 * else's; -1 when it cannot be parsed (then it is not ours either). */
int ma_ar_parse(const char *value, const char *id, struct ma_ar_value *out);
void ma_ar_value_free(struct ma_ar_value *v);

/* A property value as RFC 8601 wants it: a token as is, anything else a
 * quoted string (control characters dropped). Written into out (NUL
 * terminated); its length, or -1 when it does not fit. */
int ma_ar_pvalue(const char *v, char *out, size_t outsz);

#endif
