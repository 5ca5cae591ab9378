/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ma_dmarc: DMARC (RFC 7489) with libopendmarc, from results and a record
 * the caller already has: the SPF result, the DKIM plugin's results and
 * the _dmarc TXT record the plugin looked up on the daemon's resolver.
 * libopendmarc never queries DNS here (only opendmarc_policy_store_dmarc
 * is used, never opendmarc_policy_query_dmarc).
 *
 * libopendmarc 1.4.2 (Debian 12) parses the record and judges relaxed
 * alignment with the Public Suffix List, but it treats adkim=s and aspf=s
 * as relaxed and ignores pct=; both are applied here, on top of its
 * verdict (the unit tests pin each case).
 *
 * libopendmarc keeps its public-suffix list in globals: ma_dmarc_init()
 * once per process, evaluations on one thread at a time (the loop).
 */
#ifndef MA_DMARC_H
#define MA_DMARC_H

#include "ma_ar.h"
#include "ma_spf.h"

#include <stddef.h>

/* Load libopendmarc's public-suffix list (for the organizational domain
 * of relaxed alignment). 0, or -1 with err. Once; later calls return the
 * first call's outcome. */
int ma_dmarc_init(const char *psl_file, char *err, size_t errlen);

enum ma_dmarc_result {
    MA_DMARC_NONE = 0, /* no policy published */
    MA_DMARC_PASS,
    MA_DMARC_FAIL,
    MA_DMARC_TEMPERROR, /* the record could not be looked up */
    MA_DMARC_PERMERROR, /* a record that does not parse, no usable From domain */
};

const char *ma_dmarc_result_name(enum ma_dmarc_result r);

struct ma_dmarc_in {
    const char *client_ip;
    const char *from_domain;   /* lower case; NULL: no single From domain */
    const char *record;        /* the _dmarc TXT record, NULL when none */
    const char *record_domain; /* where it was found: from_domain, or its
                                  organizational domain (then sp= applies) */
    unsigned sample;           /* 0..99, uniformly random: pct= sampling */
    int record_tempfail;       /* the lookup failed (then record is NULL) */
    enum ma_spf_result spf;
    const char *spf_domain; /* the domain SPF checked */
    int spf_helo;           /* the HELO identity was checked, not MAIL FROM */
    const struct ma_ar_dkim *dkim;
    size_t ndkim;
};

struct ma_dmarc_out {
    enum ma_dmarc_result result;
    char policy;       /* what the domain asks for this message: 'n', 'q', 'r'
                          ('\0' without a record); sp= for a subdomain,
                          pct= applied */
    char published;    /* p= (or sp=) as published, before pct */
    int dkim_aligned;  /* an aligned dkim=pass */
    int spf_aligned;   /* an aligned spf=pass */
    char comment[160]; /* "p=reject sp=none pct=100" etc., for A-R and logs */
};

/* The domain of the one address in a From field value (unfolded; display
 * names, comments, quoted strings and angle brackets allowed), lower case,
 * into out: 0, or -1 when there is no address, more than one (a list or a
 * group), or its domain is not a host name (RFC 7489 6.6.1: then the
 * message has no usable author domain). */
int ma_dmarc_from_domain(const char *value, char *out, size_t outsz);

/* Evaluate; never fails (problems become permerror/temperror). */
void ma_dmarc_eval(const struct ma_dmarc_in *in, struct ma_dmarc_out *out);

#endif
