/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_cfg: parsing and validation of the [plugin NAME] keys of virus.so.
 * Every key is checked even after an earlier one failed, so `sluice
 * --check` lists all problems at once.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vir_cfg.h"

void vir_cfg_defaults(struct vir_config *c)
{
    memset(c, 0, sizeof *c);
    c->backend = VIR_BACKEND_LIBCLAMAV;
    snprintf(c->database, sizeof c->database, "/var/lib/clamav");
    c->reload_check_ms = 60000;
    c->cache = true;
    c->clamd_connect_timeout_ms = 2000;
    c->clamd_timeout_ms = 20000;
    /* Below the host's default plugin timeout (30 s), so a slow scan ends
     * as a limit decision of ours rather than a host timeout. */
    c->max_scan_size = 25u << 20;
    c->max_file_size = 25u << 20;
    c->max_recursion = 16;
    c->max_files = 10000;
    c->max_scan_time_ms = 20000;
    c->action = VIR_ACT_REJECT;
    c->limit_action = VIR_LIM_TEMPFAIL;
    c->failure = VIR_FAIL_TEMPFAIL;
    snprintf(c->reject_text, sizeof c->reject_text, "Virus found: %%s");
    c->scanned_header = false;
}

/* Parse a non-negative decimal number with an optional fraction, then a
 * unit looked up in `units`; 0 ok. */
struct vir__unit {
    const char *name;
    double mult;
};

static int vir__number_unit(const char *s, const struct vir__unit *units, double dflt_mult,
                            double max, uint64_t *out)
{
    if (!s)
        return -1;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!isdigit((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || v < 0)
        return -1;
    while (*end == ' ' || *end == '\t')
        end++;
    double mult = dflt_mult;
    if (*end) {
        size_t n = strlen(end);
        while (n && (end[n - 1] == ' ' || end[n - 1] == '\t'))
            n--;
        const struct vir__unit *u = units;
        for (; u->name; u++)
            if (strlen(u->name) == n && !strncasecmp(end, u->name, n))
                break;
        if (!u->name)
            return -1;
        mult = u->mult;
    }
    double r = v * mult;
    if (r > max)
        return -1;
    *out = (uint64_t)(r + 0.5);
    return 0;
}

int vir_cfg_size(const char *s, uint64_t *out)
{
    static const struct vir__unit units[] = {
        {"b", 1},
        {"k", 1024.0},
        {"kb", 1024.0},
        {"kib", 1024.0},
        {"m", 1048576.0},
        {"mb", 1048576.0},
        {"mib", 1048576.0},
        {"g", 1073741824.0},
        {"gb", 1073741824.0},
        {"gib", 1073741824.0},
        {NULL, 0},
    };
    return vir__number_unit(s, units, 1, 1e15, out);
}

int vir_cfg_duration_ms(const char *s, uint64_t *out)
{
    static const struct vir__unit units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {NULL, 0},
    };
    return vir__number_unit(s, units, 1000, 1e12, out);
}

int vir_cfg_bool(const char *s, bool *out)
{
    if (!s)
        return -1;
    if (!strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcasecmp(s, "on") ||
        !strcmp(s, "1"))
        *out = true;
    else if (!strcasecmp(s, "no") || !strcasecmp(s, "false") || !strcasecmp(s, "off") ||
             !strcmp(s, "0"))
        *out = false;
    else
        return -1;
    return 0;
}

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

/* ---- one parser per kind of key, each reporting its own error ---------- */

struct vir__ctx {
    vir_cfg_get_fn get;
    vir_cfg_err_fn err;
    void *ud;
    int errors;
};

static void vir__err(struct vir__ctx *x, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vir__err(struct vir__ctx *x, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    x->err(x->ud, key, msg);
    x->errors++;
}

/* Looks up one of `names` (NULL-terminated); index or -1. */
static int vir__choice(struct vir__ctx *x, const char *key, const char *const *names, int *out)
{
    const char *v = x->get(x->ud, key);
    if (!v)
        return 0;
    for (int i = 0; names[i]; i++) {
        if (!strcasecmp(v, names[i])) {
            *out = i;
            return 0;
        }
    }
    char list[200] = "";
    for (int i = 0; names[i]; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", names[i]);
    }
    vir__err(x, key, "\"%s\" is not one of: %s", v, list);
    return -1;
}

static void vir__size(struct vir__ctx *x, const char *key, uint64_t min, uint64_t max,
                      uint64_t *out)
{
    const char *v = x->get(x->ud, key);
    if (!v)
        return;
    uint64_t n;
    if (vir_cfg_size(v, &n) < 0) {
        vir__err(x, key, "\"%s\" is not a size (e.g. 25M, 512k, 1G, bytes)", v);
        return;
    }
    if (n < min || n > max) {
        vir__err(x, key, "%s is out of range (%llu-%llu bytes)", v, (unsigned long long)min,
                 (unsigned long long)max);
        return;
    }
    *out = n;
}

static void vir__duration(struct vir__ctx *x, const char *key, uint64_t min_ms, uint64_t max_ms,
                          uint32_t *out)
{
    const char *v = x->get(x->ud, key);
    if (!v)
        return;
    uint64_t n;
    if (vir_cfg_duration_ms(v, &n) < 0) {
        vir__err(x, key, "\"%s\" is not a duration (e.g. 250ms, 5s, 2m)", v);
        return;
    }
    if (n < min_ms || n > max_ms) {
        vir__err(x, key, "%s is out of range (%llums-%llums)", v, (unsigned long long)min_ms,
                 (unsigned long long)max_ms);
        return;
    }
    *out = (uint32_t)n;
}

static void vir__uint(struct vir__ctx *x, const char *key, uint32_t min, uint32_t max,
                      uint32_t *out)
{
    const char *v = x->get(x->ud, key);
    if (!v)
        return;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (!isdigit((unsigned char)*v) || *end || errno || n < min || n > max) {
        vir__err(x, key, "\"%s\" is not a whole number in %u-%u", v, min, max);
        return;
    }
    *out = (uint32_t)n;
}

static void vir__flag(struct vir__ctx *x, const char *key, bool *out)
{
    const char *v = x->get(x->ud, key);
    if (v && vir_cfg_bool(v, out) < 0)
        vir__err(x, key, "\"%s\" is not yes or no", v);
}

static void vir__path(struct vir__ctx *x, const char *key, char *out, size_t outsz)
{
    const char *v = x->get(x->ud, key);
    if (!v)
        return;
    if (!*v || v[0] != '/') {
        vir__err(x, key, "\"%s\" must be an absolute path", v);
        return;
    }
    if (strlen(v) >= outsz) {
        vir__err(x, key, "path too long");
        return;
    }
    snprintf(out, outsz, "%s", v);
}

int vir_cfg_parse(struct vir_config *c, vir_cfg_get_fn get, vir_cfg_err_fn err, void *ud)
{
    struct vir__ctx x = {get, err, ud, 0};
    int v;

    static const char *const backends[] = {"libclamav", "clamd", NULL};
    if (vir__choice(&x, "backend", backends, &v) == 0 && get(ud, "backend"))
        c->backend = (enum vir_backend)v;

    vir__path(&x, "database", c->database, sizeof c->database);
    vir__path(&x, "tmpdir", c->tmpdir, sizeof c->tmpdir);
    vir__duration(&x, "reload_check", 0, 86400000, &c->reload_check_ms);
    vir__flag(&x, "cache", &c->cache);

    const char *cd = get(ud, "clamd");
    if (cd) {
        if (!*cd || strlen(cd) >= sizeof c->clamd)
            vir__err(&x, "clamd", "\"%s\" is not unix:/path or IP:port", cd);
        else
            snprintf(c->clamd, sizeof c->clamd, "%s", cd);
    }
    if (c->backend == VIR_BACKEND_CLAMD && !cd)
        vir__err(&x, "backend", "backend clamd needs a clamd = unix:/path | IP:port key");
    vir__duration(&x, "clamd_connect_timeout", 1, 3600000, &c->clamd_connect_timeout_ms);
    vir__duration(&x, "clamd_timeout", 1, 3600000, &c->clamd_timeout_ms);

    /* libclamav keeps these in 32-bit fields for some paths; 4 GiB - 1 max. */
    vir__size(&x, "max_scan_size", 1, 0xffffffffu, &c->max_scan_size);
    vir__size(&x, "max_file_size", 1, 0xffffffffu, &c->max_file_size);
    vir__uint(&x, "max_recursion", 1, 100, &c->max_recursion);
    vir__uint(&x, "max_files", 1, 1000000, &c->max_files);
    vir__duration(&x, "max_scan_time", 1, 3600000, &c->max_scan_time_ms);

    static const char *const actions[] = {"reject", "quarantine", "tag", NULL};
    if (vir__choice(&x, "action", actions, &v) == 0 && get(ud, "action"))
        c->action = (enum vir_action)v;
    static const char *const limits[] = {"tempfail", "tag", "reject", NULL};
    if (vir__choice(&x, "limit_action", limits, &v) == 0 && get(ud, "limit_action"))
        c->limit_action = (enum vir_limit_action)v;
    /* `failure` is the host's key (it validates it); read it to apply the
     * same policy to scanner errors. Unknown values are the host's error. */
    const char *f = get(ud, "failure");
    if (f && !strcasecmp(f, "accept"))
        c->failure = VIR_FAIL_ACCEPT;
    else if (f && !strcasecmp(f, "tag"))
        c->failure = VIR_FAIL_TAG;

    const char *rt = get(ud, "reject_text");
    if (rt) {
        const char *why;
        if (vir_cfg_check_template(rt, &why) < 0)
            vir__err(&x, "reject_text", "invalid template: %s", why);
        else
            snprintf(c->reject_text, sizeof c->reject_text, "%s", rt);
    }
    vir__flag(&x, "scanned_header", &c->scanned_header);
    return x.errors;
}
