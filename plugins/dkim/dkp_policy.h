/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_policy: the optional "require a valid author signature" rule. For
 * mail whose From domain is listed, a missing or broken DKIM signature is
 * rejected (or tempfailed) with the RFC 7372 codes:
 *   5.7.20 no passing DKIM signature found
 *   5.7.21 no acceptable DKIM signature found (only ones local policy refuses)
 *   5.7.22 no valid author-matched DKIM signature found (passes from others)
 * A temporary key lookup failure can be answered with 451 4.7.20 instead,
 * so the sender retries rather than bounces. Pure.
 */
#ifndef DKP_POLICY_H
#define DKP_POLICY_H

#include <stddef.h>

#include "dkp_ar.h"

enum dkp_policy_action {
    DKP_ACT_TAG = 0, /* only the A-R header */
    DKP_ACT_REJECT,
    DKP_ACT_TEMPFAIL,
};

struct dkp_policy {
    char **domains; /* owned, lower case */
    size_t ndomains;
    enum dkp_policy_action on_fail;      /* no valid author signature */
    enum dkp_policy_action on_temperror; /* ... and a key lookup failed temporarily */
};

struct dkp_policy_decision {
    enum dkp_policy_action action; /* DKP_ACT_TAG: let it through */
    int code;                      /* 550 / 451 */
    const char *enh;               /* "5.7.20" ... (static) */
    const char *text;              /* static */
    const char *symbol;            /* for the verdict record, NULL when ok */
};

/* "example.com, example.org" into p->domains. 0, or -1 naming the bad item. */
int dkp_policy_parse_domains(struct dkp_policy *p, const char *list, char *err, size_t errlen);
/* "reject" / "tempfail" / "tag"; 0 or -1. */
int dkp_policy_parse_action(const char *s, enum dkp_policy_action *out);
void dkp_policy_free(struct dkp_policy *p);

/* Decide for a message with author domain from_domain (NULL when the From
 * field is unusable) and its signature results. */
void dkp_policy_eval(const struct dkp_policy *p, const char *from_domain,
                     const struct dkp_sigres *res, size_t n, struct dkp_policy_decision *out);

#endif
