/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_cfg: the [plugin NAME] keys of virus.so as a typed key table, and
 * the checks a table cannot express. Every key is checked even after an
 * earlier one failed, so `sluice --check` lists all problems at once.
 */
#include <stdio.h>
#include <string.h>

#include "vir_cfg.h"

_Static_assert(sizeof(enum vir_backend) == sizeof(int), "enum keys are stored as int");
_Static_assert(sizeof(enum vir_action) == sizeof(int), "enum keys are stored as int");
_Static_assert(sizeof(enum vir_limit_action) == sizeof(int), "enum keys are stored as int");
_Static_assert(sizeof(enum vir_failure) == sizeof(int), "enum keys are stored as int");

static const char *const vir__backends[] = {"libclamav", "clamd", NULL};
static const char *const vir__actions[] = {"reject", "quarantine", "tag", NULL};
static const char *const vir__limits[] = {"tempfail", "tag", "reject", NULL};
/* `failure` is the host's key (it validates it too); read here to apply
 * the same policy to scanner errors. */
static const char *const vir__failures[] = {"tempfail", "accept", "tag", NULL};

#define VIR_KEY(n, t, f) .name = n, .type = t, .offset = offsetof(struct vir_config, f)
#define VIR_HOUR_MS 3600000u
const struct sluice_config_key vir_cfg_keys[] = {
    {VIR_KEY("backend", SLUICE_CONFIG_ENUM, backend), .choices = vir__backends, .def = "libclamav"},
    {VIR_KEY("database", SLUICE_CONFIG_PATH, database), .flags = SLUICE_CONFIG_ABSOLUTE,
     .def = "/var/lib/clamav", .max = VIR_PATH_MAX - 1},
    {VIR_KEY("tmpdir", SLUICE_CONFIG_PATH, tmpdir), .flags = SLUICE_CONFIG_ABSOLUTE,
     .max = VIR_PATH_MAX - 1},
    {VIR_KEY("reload_check", SLUICE_CONFIG_DURATION, reload_check_ms), .def = "60s", .min = 0,
     .max = 24 * VIR_HOUR_MS},
    {VIR_KEY("cache", SLUICE_CONFIG_BOOL, cache), .def = "yes"},
    {VIR_KEY("clamd", SLUICE_CONFIG_STRING, clamd), .max = VIR_PATH_MAX - 1},
    {VIR_KEY("clamd_connect_timeout", SLUICE_CONFIG_DURATION, clamd_connect_timeout_ms),
     .def = "2s", .min = 1, .max = VIR_HOUR_MS},
    {VIR_KEY("clamd_timeout", SLUICE_CONFIG_DURATION, clamd_timeout_ms), .def = "20s", .min = 1,
     .max = VIR_HOUR_MS},
    /* libclamav keeps these in 32-bit fields for some paths; 4 GiB - 1 max. */
    {VIR_KEY("max_scan_size", SLUICE_CONFIG_SIZE, max_scan_size), .def = "25M", .min = 1,
     .max = 0xffffffffu},
    {VIR_KEY("max_file_size", SLUICE_CONFIG_SIZE, max_file_size), .def = "25M", .min = 1,
     .max = 0xffffffffu},
    {VIR_KEY("max_recursion", SLUICE_CONFIG_UNSIGNED, max_recursion), .def = "16", .min = 1,
     .max = 100},
    {VIR_KEY("max_files", SLUICE_CONFIG_UNSIGNED, max_files), .def = "10000", .min = 1,
     .max = 1000000},
    /* Below the host's default plugin timeout (30 s), so a slow scan ends
     * as a limit decision of ours rather than a host timeout. */
    {VIR_KEY("max_scan_time", SLUICE_CONFIG_DURATION, max_scan_time_ms), .def = "20s", .min = 1,
     .max = VIR_HOUR_MS},
    {VIR_KEY("action", SLUICE_CONFIG_ENUM, action), .choices = vir__actions, .def = "reject"},
    {VIR_KEY("limit_action", SLUICE_CONFIG_ENUM, limit_action), .choices = vir__limits,
     .def = "tempfail"},
    {VIR_KEY("failure", SLUICE_CONFIG_ENUM, failure), .choices = vir__failures, .def = "tempfail"},
    {VIR_KEY("reject_text", SLUICE_CONFIG_STRING, reject_text), .flags = SLUICE_CONFIG_KEEP_EMPTY,
     .def = "Virus found: %s"},
    {VIR_KEY("scanned_header", SLUICE_CONFIG_BOOL, scanned_header), .def = "no"},
    {.name = NULL},
};
#undef VIR_KEY

int vir_cfg_check_template(const char *t, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (strlen(t) >= VIR_TEXT_MAX) {
        *why = "too long";
        return -1;
    }
    int n_s = 0;
    for (const char *p = t; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c > 0x7e) {
            *why = "only printable ASCII is allowed in an SMTP reply";
            return -1;
        }
        if (c != '%')
            continue;
        if (p[1] == '%') {
            p++;
        } else if (p[1] == 's') {
            if (++n_s > 1) {
                *why = "at most one %s (the signature name)";
                return -1;
            }
            p++;
        } else {
            *why = "only %s (the signature name) and %% may follow '%'";
            return -1;
        }
    }
    if (!*t) {
        *why = "empty";
        return -1;
    }
    return 0;
}

int vir_cfg_check(const struct vir_config *c, vir_cfg_err_fn err, void *ud)
{
    int errors = 0;
    char msg[300];
    if (c->backend == VIR_BACKEND_CLAMD && !c->clamd) {
        err(ud, "backend", "backend clamd needs a clamd = unix:/path | IP:port key");
        errors++;
    }
    const char *why;
    if (c->reject_text && vir_cfg_check_template(c->reject_text, &why) < 0) {
        snprintf(msg, sizeof msg, "invalid template: %s", why);
        err(ud, "reject_text", msg);
        errors++;
    }
    return errors;
}
