/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_policy: see dkp_policy.h. A message without a usable From field is
 * never rejected by this rule (there is no author to match); other checks
 * of the daemon deal with such messages.
 */
#include "dkp_policy.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkp_table.h"

void dkp_policy_free(struct dkp_policy *p)
{
    for (size_t i = 0; i < p->ndomains; i++)
        free(p->domains[i]);
    free(p->domains);
    p->domains = NULL;
    p->ndomains = 0;
}

int dkp_policy_parse_domains(struct dkp_policy *p, const char *list, char *err, size_t errlen)
{
    const char *s = list;

    dkp_policy_free(p);
    while (*s) {
        size_t n = 0;
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        if (!*s)
            break;
        while (s[n] && s[n] != ' ' && s[n] != '\t' && s[n] != ',')
            n++;
        if (!dkp_table_valid_name(s, n)) {
            snprintf(err, errlen, "invalid domain \"%.*s\"", (int)(n > 80 ? 80 : n), s);
            dkp_policy_free(p);
            return -1;
        }
        char **nv = realloc(p->domains, (p->ndomains + 1) * sizeof *nv);
        if (!nv || !(nv[p->ndomains] = strndup(s, n))) {
            if (nv)
                p->domains = nv;
            snprintf(err, errlen, "out of memory");
            dkp_policy_free(p);
            return -1;
        }
        for (char *c = nv[p->ndomains]; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        p->domains = nv;
        p->ndomains++;
        s += n;
    }
    return 0;
}

int dkp_policy_parse_action(const char *s, enum dkp_policy_action *out)
{
    if (strcasecmp(s, "reject") == 0)
        *out = DKP_ACT_REJECT;
    else if (strcasecmp(s, "tempfail") == 0)
        *out = DKP_ACT_TEMPFAIL;
    else if (strcasecmp(s, "tag") == 0)
        *out = DKP_ACT_TAG;
    else
        return -1;
    return 0;
}

/* 1 when a signing domain d aligns with the author domain from (equal, or
 * from is a subdomain of d). */
static int dkp_policy_aligned(const char *d, const char *from)
{
    size_t dl = strlen(d), fl = strlen(from);

    if (dl == 0 || fl < dl)
        return 0;
    if (strcasecmp(from + fl - dl, d) != 0)
        return 0;
    return fl == dl || from[fl - dl - 1] == '.';
}

void dkp_policy_eval(const struct dkp_policy *p, const char *from_domain,
                     const struct dkp_sigres *res, size_t n, struct dkp_policy_decision *out)
{
    int listed = 0, any_pass = 0, any_policy = 0, any_temp = 0;

    memset(out, 0, sizeof *out);
    out->action = DKP_ACT_TAG;
    if (!from_domain)
        return;
    for (size_t i = 0; i < p->ndomains; i++)
        if (strcasecmp(p->domains[i], from_domain) == 0)
            listed = 1;
    if (!listed)
        return;
    for (size_t i = 0; i < n; i++) {
        if (res[i].result == DKP_RES_PASS) {
            if (dkp_policy_aligned(res[i].domain, from_domain))
                return; /* a valid author signature: done */
            any_pass = 1;
        } else if (res[i].result == DKP_RES_POLICY) {
            any_policy = 1;
        } else if (res[i].result == DKP_RES_TEMPERROR &&
                   dkp_policy_aligned(res[i].domain, from_domain)) {
            any_temp = 1;
        }
    }
    if (any_temp && p->on_temperror != DKP_ACT_TAG) {
        out->action = p->on_temperror;
        out->code = p->on_temperror == DKP_ACT_TEMPFAIL ? 451 : 550;
        out->enh = p->on_temperror == DKP_ACT_TEMPFAIL ? "4.7.20" : "5.7.20";
        out->text = "DKIM key lookup failed, cannot verify the author signature";
        out->symbol = "DKIM_AUTHOR_TEMPERROR";
        return;
    }
    out->action = p->on_fail;
    out->code = p->on_fail == DKP_ACT_TEMPFAIL ? 451 : 550;
    if (any_pass) {
        out->enh = p->on_fail == DKP_ACT_TEMPFAIL ? "4.7.22" : "5.7.22";
        out->text = "No valid author-matched DKIM signature found";
        out->symbol = "DKIM_AUTHOR_UNMATCHED";
    } else if (any_policy) {
        out->enh = p->on_fail == DKP_ACT_TEMPFAIL ? "4.7.21" : "5.7.21";
        out->text = "No acceptable DKIM signature found";
        out->symbol = "DKIM_AUTHOR_UNACCEPTABLE";
    } else {
        out->enh = p->on_fail == DKP_ACT_TEMPFAIL ? "4.7.20" : "5.7.20";
        out->text = "No passing DKIM signature found";
        out->symbol = "DKIM_AUTHOR_MISSING";
    }
    if (p->on_fail == DKP_ACT_TAG)
        out->code = 0;
}
