/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_policy: the mapping from scan result to verdict, reply and headers
 * (the table is in vir_policy.h). Reply codes: a virus is a permanent
 * policy refusal (5.7.1); an exceeded limit is a size/resource problem of
 * this message (x.3.4 "message too big for system"), temporary by default
 * because a larger limit or a less loaded scanner may pass it later.
 */
#include <stdio.h>
#include <string.h>

#include "vir_policy.h"

void vir_policy_render(const char *tmpl, const char *name, char *out, size_t outsz)
{
    if (!outsz)
        return;
    size_t n = 0;
    for (const char *p = tmpl; *p && n + 1 < outsz; p++) {
        if (p[0] == '%' && p[1] == 's') {
            for (const char *q = name; *q && n + 1 < outsz; q++)
                out[n++] = *q;
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            out[n++] = '%';
            p++;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

static void vir__reply(struct vir_outcome *o, enum vir_verdict v, int code, const char *enh,
                       const char *text)
{
    o->verdict = v;
    o->code = code;
    snprintf(o->enh, sizeof o->enh, "%s", enh);
    snprintf(o->text, sizeof o->text, "%s", text);
}

static void vir__header(struct vir_outcome *o, const char *name, const char *value)
{
    if (o->nheaders >= VIR_MAX_HEADERS)
        return;
    snprintf(o->headers[o->nheaders].name, sizeof o->headers[0].name, "%s", name);
    snprintf(o->headers[o->nheaders].value, sizeof o->headers[0].value, "%s", value);
    o->nheaders++;
}

void vir_policy_decide(const struct vir_config *cfg, const struct vir_result *r,
                       const char *scanner, const char *inst, struct vir_outcome *out)
{
    memset(out, 0, sizeof *out);
    out->verdict = VIR_V_CONTINUE;
    bool scanned = false; /* a scan completed: X-Virus-Scanned applies */
    char buf[VIR_TEXT_MAX + VIR_NAME_MAX];

    switch (r->kind) {
    case VIR_CLEAN:
        scanned = true;
        break;
    case VIR_VIRUS:
        switch (cfg->action) {
        case VIR_ACT_REJECT:
            vir_policy_render(cfg->reject_text, r->name, buf, sizeof buf);
            vir__reply(out, VIR_V_REJECT, 554, "5.7.1", buf);
            break;
        case VIR_ACT_QUARANTINE:
            out->verdict = VIR_V_QUARANTINE;
            break;
        case VIR_ACT_TAG:
            vir__header(out, "X-Virus", r->name);
            scanned = true;
            break;
        }
        break;
    case VIR_LIMIT:
        switch (cfg->limit_action) {
        case VIR_LIM_TEMPFAIL:
            snprintf(buf, sizeof buf, "Message could not be scanned for viruses (%s), try again later",
                     r->name);
            vir__reply(out, VIR_V_TEMPFAIL, 452, "4.3.4", buf);
            break;
        case VIR_LIM_REJECT:
            snprintf(buf, sizeof buf, "Message could not be scanned for viruses (%s)", r->name);
            vir__reply(out, VIR_V_REJECT, 552, "5.3.4", buf);
            break;
        case VIR_LIM_TAG:
            snprintf(buf, sizeof buf, "limit exceeded (%s)", r->name);
            vir__header(out, "X-Virus-Limit", buf);
            scanned = true;
            break;
        }
        break;
    default: /* VIR_ERROR */
        switch (cfg->failure) {
        case VIR_FAIL_ACCEPT:
            break;
        case VIR_FAIL_TAG:
            snprintf(buf, sizeof buf, "%s (virus scan failed: %s)", inst ? inst : "virus",
                     r->name);
            vir__header(out, "X-Sluice-Skipped", buf);
            break;
        default:
            vir__reply(out, VIR_V_TEMPFAIL, 451, "4.7.1",
                       strcmp(r->name, VIR_ERR_NOT_READY) == 0
                           ? "Virus scanner not ready, try again later"
                           : "Virus scan failed, try again later");
            break;
        }
        break;
    }
    if (scanned && cfg->scanned_header) {
        snprintf(buf, sizeof buf, "sluice (%s)", scanner && *scanner ? scanner : "ClamAV");
        vir__header(out, "X-Virus-Scanned", buf);
    }
}
