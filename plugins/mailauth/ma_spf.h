/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ma_spf: SPF (RFC 7208) with libspf2, without letting libspf2 touch the
 * network.
 *
 * libspf2 asks its DNS layer synchronously. Here that layer answers from
 * a table the caller fills (struct ma_dns): a name it does not hold is
 * written down as wanted and answered "not found" for now, so that one
 * evaluation finds every name it can reach. When an evaluation wanted
 * anything, its result is thrown away: the caller looks the wanted names
 * up (asynchronously, on the daemon's resolver), puts the answers in the
 * table and evaluates again, until an evaluation wants nothing. Every
 * round asks at least one new name, and libspf2 bounds the names an
 * evaluation may reach (10 DNS mechanisms, 10 MX and PTR names each), so
 * the rounds end; MA_SPF_MAX_ROUNDS and MA_DNS_MAX_NAMES bound them here
 * too (then: temperror).
 *
 * Loop thread only (libspf2's layer hook is set per evaluation): one
 * struct ma_spf per instance, any number of tables.
 */
#ifndef MA_SPF_H
#define MA_SPF_H

#include <stddef.h>

#define MA_SPF_MAX_ROUNDS 24
#define MA_DNS_MAX_NAMES 128

/* Record types as DNS numbers (what ns_type and the SDK use). */
enum ma_dns_type {
    MA_DNS_A = 1,
    MA_DNS_PTR = 12,
    MA_DNS_MX = 15,
    MA_DNS_TXT = 16,
    MA_DNS_AAAA = 28
};

/* How a name was answered. */
enum ma_dns_status {
    MA_DNS_WANTED = 0, /* asked by an evaluation, no answer yet */
    MA_DNS_FOUND,      /* records */
    MA_DNS_NOTFOUND,   /* NXDOMAIN */
    MA_DNS_NODATA,     /* the name exists, no record of the type */
    MA_DNS_TEMPFAIL,   /* timeout, SERVFAIL, ... */
};

struct ma_dns;

struct ma_dns *ma_dns_new(void);
void ma_dns_free(struct ma_dns *t);
/* The answer for (name, type); records as the SDK gives them (A/AAAA
 * addresses, MX "PREF HOST", TXT strings joined, PTR names). Replaces a
 * WANTED entry or adds one. 0, or -1 (no memory, table full). */
int ma_dns_put(struct ma_dns *t, const char *name, int type, enum ma_dns_status st,
               const char *const *recs, size_t n);
/* Walk the names still WANTED: i from 0; 1 with *name and *type, or 0. */
int ma_dns_wanted(const struct ma_dns *t, size_t *i, const char **name, int *type);
size_t ma_dns_count(const struct ma_dns *t);

enum ma_spf_result {
    MA_SPF_NONE = 0,
    MA_SPF_NEUTRAL,
    MA_SPF_PASS,
    MA_SPF_FAIL,
    MA_SPF_SOFTFAIL,
    MA_SPF_TEMPERROR,
    MA_SPF_PERMERROR,
};

/* "none", "pass", ... (RFC 8601's spf= values) */
const char *ma_spf_result_name(enum ma_spf_result r);

struct ma_spf_out {
    enum ma_spf_result result;
    char domain[256];  /* the domain checked: the sender's, or the HELO's */
    int used_helo;     /* 1 when the sender was null and HELO was checked */
    char comment[256]; /* libspf2's explanation for logs and the reply */
};

struct ma_spf;

/* receiver: our host name, for the %{r} macro. NULL with err on failure. */
struct ma_spf *ma_spf_new(const char *receiver, char *err, size_t errlen);
void ma_spf_free(struct ma_spf *s);

/* Evaluate for client ip, helo and mail_from (without <>, "" for the null
 * sender) with the answers in t. 0: *out is the result. 1: t holds WANTED
 * names to look up first (then call again with the same t). The rounds
 * counter is the caller's: after MA_SPF_MAX_ROUNDS, or when the table is
 * full, out->result is temperror. */
int ma_spf_check(struct ma_spf *s, struct ma_dns *t, const char *ip, const char *helo,
                 const char *mail_from, unsigned round, struct ma_spf_out *out);

#endif
