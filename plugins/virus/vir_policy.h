/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_policy: turns a scan result into what the plugin does with the
 * message (verdict, reply, headers). Pure: the plugin applies the outcome
 * through the host API; the tests compare outcomes with tables.
 *
 *   clean  -> continue
 *   virus  -> action: reject (554 5.7.1 reject_text), quarantine, tag
 *             (X-Virus: NAME, message passes)
 *   limit  -> limit_action: tempfail (452 4.3.4), reject (552 5.3.4),
 *             tag (X-Virus-Limit: WHAT, message passes)
 *   error  -> the instance's failure policy: tempfail (451 4.7.1),
 *             accept (continue), tag (X-Sluice-Skipped: INST (why), like
 *             the host does for a failed plugin)
 *
 * With scanned_header, X-Virus-Scanned: sluice (SCANNER) is added to every
 * message that passes after a completed scan (clean, tagged virus or tagged
 * limit); not after an error, where nothing was scanned.
 */
#ifndef VIR_POLICY_H
#define VIR_POLICY_H

#include "vir_cfg.h"
#include "vir_result.h"

enum vir_verdict {
    VIR_V_CONTINUE = 0,
    VIR_V_REJECT,
    VIR_V_TEMPFAIL,
    VIR_V_QUARANTINE,
};

#define VIR_MAX_HEADERS 2

struct vir_outcome {
    enum vir_verdict verdict;
    int code;           /* reply for REJECT / TEMPFAIL; 0 otherwise */
    char enh[16];
    char text[VIR_TEXT_MAX + VIR_NAME_MAX];
    size_t nheaders;    /* fields to add at the end of the header */
    struct {
        char name[32];
        char value[VIR_NAME_MAX + 96];
    } headers[VIR_MAX_HEADERS];
};

/* scanner: e.g. "ClamAV 1.4.6" (for X-Virus-Scanned); inst: the instance
 * name (for the failure-policy tag). */
void vir_policy_decide(const struct vir_config *cfg, const struct vir_result *r,
                       const char *scanner, const char *inst, struct vir_outcome *out);

/* Expand a reject_text template (valid per vir_cfg_check_template): "%s"
 * becomes name, "%%" a '%'. Truncates to outsz. */
void vir_policy_render(const char *tmpl, const char *name, char *out, size_t outsz);

#endif
