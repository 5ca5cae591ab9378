/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ma_dmarc: DMARC through libopendmarc (see ma_dmarc.h).
 */
#include "ma_dmarc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/param.h>
#include <sys/types.h>

#include <opendmarc/dmarc.h>

static pthread_mutex_t ma__mu = PTHREAD_MUTEX_INITIALIZER;
static int ma__inited; /* 0 not yet, 1 ok, -1 failed */
static char ma__init_err[200];

int ma_dmarc_init(const char *psl_file, char *err, size_t errlen)
{
    pthread_mutex_lock(&ma__mu);
    if (!ma__inited) {
        static OPENDMARC_LIB_T lib;
        memset(&lib, 0, sizeof lib);
        lib.tld_type = OPENDMARC_TLD_TYPE_MOZILLA;
        snprintf((char *)lib.tld_source_file, sizeof lib.tld_source_file, "%s", psl_file);
        if (strlen(psl_file) >= sizeof lib.tld_source_file) {
            ma__inited = -1;
            snprintf(ma__init_err, sizeof ma__init_err, "public suffix list path too long");
        } else if (opendmarc_policy_library_init(&lib) != DMARC_PARSE_OKAY) {
            ma__inited = -1;
            snprintf(ma__init_err, sizeof ma__init_err,
                     "libopendmarc cannot load the public suffix list %.120s", psl_file);
        } else {
            ma__inited = 1;
        }
    }
    int rc = ma__inited > 0 ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "%s", ma__init_err);
    pthread_mutex_unlock(&ma__mu);
    return rc;
}

const char *ma_dmarc_result_name(enum ma_dmarc_result r)
{
    static const char *const names[] = {"none", "pass", "fail", "temperror", "permerror"};
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "none";
}

static int ma__spf_outcome(enum ma_spf_result r)
{
    switch (r) {
    case MA_SPF_PASS:
        return DMARC_POLICY_SPF_OUTCOME_PASS;
    case MA_SPF_FAIL:
    case MA_SPF_SOFTFAIL:
        return DMARC_POLICY_SPF_OUTCOME_FAIL;
    case MA_SPF_TEMPERROR:
        return DMARC_POLICY_SPF_OUTCOME_TMPFAIL;
    default:
        return DMARC_POLICY_SPF_OUTCOME_NONE;
    }
}

static int ma__dkim_outcome(const char *r)
{
    if (!strcmp(r, "pass"))
        return DMARC_POLICY_DKIM_OUTCOME_PASS;
    if (!strcmp(r, "fail"))
        return DMARC_POLICY_DKIM_OUTCOME_FAIL;
    if (!strcmp(r, "temperror"))
        return DMARC_POLICY_DKIM_OUTCOME_TMPFAIL;
    return DMARC_POLICY_DKIM_OUTCOME_NONE;
}

static char ma__p(int p)
{
    switch (p) {
    case DMARC_RECORD_P_REJECT:
        return 'r';
    case DMARC_RECORD_P_QUARANTINE:
        return 'q';
    case DMARC_RECORD_P_NONE:
        return 'n';
    default:
        return '\0';
    }
}

static const char *ma__pname(char p)
{
    return p == 'r' ? "reject" : p == 'q' ? "quarantine" : p == 'n' ? "none" : "unspecified";
}

void ma_dmarc_eval(const struct ma_dmarc_in *in, struct ma_dmarc_out *out)
{
    memset(out, 0, sizeof *out);
    if (!in->from_domain || !*in->from_domain) {
        out->result = MA_DMARC_PERMERROR;
        snprintf(out->comment, sizeof out->comment, "no single From domain");
        return;
    }
    if (in->record_tempfail) {
        out->result = MA_DMARC_TEMPERROR;
        snprintf(out->comment, sizeof out->comment, "policy lookup failed");
        return;
    }
    if (!in->record) {
        out->result = MA_DMARC_NONE;
        return;
    }
    char ip[64];
    snprintf(ip, sizeof ip, "%s", in->client_ip ? in->client_ip : "0.0.0.0");
    DMARC_POLICY_T *pctx = opendmarc_policy_connect_init((u_char *)ip, strchr(ip, ':') != NULL);
    if (!pctx) {
        out->result = MA_DMARC_TEMPERROR;
        snprintf(out->comment, sizeof out->comment, "out of memory");
        return;
    }
    char from[256], org[256], rec[2048];
    snprintf(from, sizeof from, "%s", in->from_domain);
    snprintf(org, sizeof org, "%s", in->record_domain ? in->record_domain : in->from_domain);
    snprintf(rec, sizeof rec, "%s", in->record);
    opendmarc_policy_store_from_domain(pctx, (u_char *)from);
    if (in->spf_domain && *in->spf_domain) {
        char sd[256], human[32];
        snprintf(sd, sizeof sd, "%s", in->spf_domain);
        snprintf(human, sizeof human, "%s", ma_spf_result_name(in->spf));
        opendmarc_policy_store_spf(pctx, (u_char *)sd, ma__spf_outcome(in->spf),
                                   in->spf_helo ? DMARC_POLICY_SPF_ORIGIN_HELO
                                                : DMARC_POLICY_SPF_ORIGIN_MAILFROM,
                                   (u_char *)human);
    }
    for (size_t i = 0; i < in->ndkim; i++) {
        const struct ma_ar_dkim *k = &in->dkim[i];
        if (!k->d[0])
            continue;
        char d[256], s[128], human[16];
        snprintf(d, sizeof d, "%s", k->d);
        snprintf(s, sizeof s, "%s", k->s);
        snprintf(human, sizeof human, "%s", k->result);
        opendmarc_policy_store_dkim(pctx, (u_char *)d, (u_char *)s, ma__dkim_outcome(k->result),
                                    (u_char *)human);
    }
    OPENDMARC_STATUS_T st =
        opendmarc_policy_store_dmarc(pctx, (u_char *)rec, (u_char *)from, (u_char *)org);
    if (st != DMARC_PARSE_OKAY) {
        out->result = MA_DMARC_PERMERROR;
        snprintf(out->comment, sizeof out->comment, "bad policy record: %s",
                 opendmarc_policy_status_to_str(st));
        opendmarc_policy_connect_shutdown(pctx);
        return;
    }
    int p = 0, sp = 0, pct = 100, adkim = 0, aspf = 0, dkim_al = 0, spf_al = 0;
    opendmarc_policy_fetch_p(pctx, &p);
    opendmarc_policy_fetch_sp(pctx, &sp);
    opendmarc_policy_fetch_pct(pctx, &pct);
    opendmarc_policy_fetch_adkim(pctx, &adkim);
    opendmarc_policy_fetch_aspf(pctx, &aspf);
    OPENDMARC_STATUS_T pol = opendmarc_get_policy_to_enforce(pctx);
    opendmarc_policy_fetch_alignment(pctx, &dkim_al, &spf_al);
    out->dkim_aligned = dkim_al == DMARC_POLICY_DKIM_ALIGNMENT_PASS;
    out->spf_aligned = spf_al == DMARC_POLICY_SPF_ALIGNMENT_PASS;
    /* Strict alignment: the very From domain (RFC 7489 3.1). */
    if (out->spf_aligned && aspf == DMARC_RECORD_A_STRICT)
        out->spf_aligned =
            in->spf == MA_SPF_PASS && in->spf_domain && strcasecmp(in->spf_domain, from) == 0;
    if (out->dkim_aligned && adkim == DMARC_RECORD_A_STRICT) {
        out->dkim_aligned = 0;
        for (size_t i = 0; i < in->ndkim; i++)
            if (!strcmp(in->dkim[i].result, "pass") && !strcasecmp(in->dkim[i].d, from))
                out->dkim_aligned = 1;
    }
    /* The policy of the From domain: sp= when the record is the
     * organizational domain's (and has one), else p=. */
    int sub = strcasecmp(from, org) != 0 && sp != DMARC_RECORD_P_UNSPECIFIED;
    out->published = ma__p(sub ? sp : p);
    if (pol == DMARC_POLICY_ABSENT) {
        out->result = MA_DMARC_NONE;
    } else if (out->dkim_aligned || out->spf_aligned) {
        out->result = MA_DMARC_PASS;
    } else {
        out->result = MA_DMARC_FAIL;
        out->policy = out->published ? out->published : 'n';
        /* pct=: the rest of the failures get the next milder policy
         * (RFC 7489 6.6.4). */
        if (pct >= 0 && pct < 100 && in->sample >= (unsigned)pct)
            out->policy = out->policy == 'r' ? 'q' : 'n';
    }
    snprintf(out->comment, sizeof out->comment, "p=%s%s%s pct=%d", ma__pname(ma__p(p)),
             sp != DMARC_RECORD_P_UNSPECIFIED ? " sp=" : "",
             sp != DMARC_RECORD_P_UNSPECIFIED ? ma__pname(ma__p(sp)) : "", pct);
    opendmarc_policy_connect_shutdown(pctx);
}

int ma_dmarc_from_domain(const char *value, char *out, size_t outsz)
{
    char addr[512];
    size_t n = 0;
    int depth = 0, inq = 0, angle = 0, got_angle = 0, commas = 0, blank = 0, bad = 0;

    if (!value)
        return -1;
    /* One pass: drop comments and quoted strings; inside <...> keep only
     * that; a ',' or ':' outside quotes and brackets makes it a list or a
     * group. */
    for (const char *p = value; *p; p++) {
        char c = *p;
        if (inq) {
            if (c == '\\' && p[1])
                p++;
            else if (c == '"')
                inq = 0;
            continue;
        }
        if (depth) {
            if (c == '\\' && p[1])
                p++;
            else if (c == '(')
                depth++;
            else if (c == ')')
                depth--;
            continue;
        }
        if (c == '"') {
            inq = 1;
        } else if (c == '(') {
            depth = 1;
        } else if (c == '<') {
            if (got_angle)
                return -1;
            angle = got_angle = 1;
            n = 0;
            bad = 0; /* what came before was a display name */
        } else if (c == '>') {
            if (!angle)
                return -1;
            angle = 0;
        } else if ((c == ',' || c == ':' || c == ';') && !angle) {
            commas++;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            blank = 1;
        } else if (angle || !got_angle) {
            /* "exa mple.com": two words, no address ("ann @ x" is fine). */
            if (blank && n && !strchr("@.", addr[n - 1]) && !strchr("@.", c))
                bad = 1;
            if (n + 1 < sizeof addr)
                addr[n++] = c;
        }
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
            blank = 0;
    }
    if (inq || depth || angle || commas || bad)
        return -1;
    addr[n] = '\0';
    const char *at = strrchr(addr, '@');
    if (!at || at == addr || !at[1])
        return -1;
    const char *dom = at + 1;
    size_t dl = strlen(dom);
    if (dl >= outsz || dl > 253 || dom[0] == '.' || strstr(dom, ".."))
        return -1;
    for (size_t i = 0; i < dl; i++) {
        unsigned char c = (unsigned char)dom[i];
        if (!(c == '-' || c == '.' || c == '_' || (c >= '0' && c <= '9') ||
              (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return -1;
        out[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    out[dl] = '\0';
    if (out[dl - 1] == '.')
        out[dl - 1] = '\0';
    return out[0] ? 0 : -1;
}
