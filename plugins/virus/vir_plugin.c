/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_plugin: virus.so, glue between the sluice host API and the virus
 * engine modules:
 *
 *   vir_cfg     keys of [plugin NAME] (a typed key table) -> struct vir_config
 *   vir_engine  libclamav in process (shared engine, background reload)
 *   vir_clamd   clamd over INSTREAM
 *   vir_policy  scan result -> verdict, reply, headers
 *   vir_tmp     libclamav's private scratch directory (memory-backed when
 *               possible) when the tmpdir key is unset
 *
 * The DATA hook runs on a thread of the host's pool (it blocks for the
 * whole scan). The instance state is built by init() and read-only after
 * that, except the engine holder, which has its own lock.
 *
 * Scanner errors: this plugin applies the instance's `failure` key itself
 * (tempfail -> 451 4.7.1, accept, tag -> X-Sluice-Skipped) rather than
 * answering SLUICE_ERROR, so the reply and the tag say what went wrong
 * with the scanner. The host's circuit breaker therefore does not count
 * scanner errors; it does count hook timeouts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sluice/plugin.h>

#include "vir_cfg.h"
#include "vir_clamd.h"
#include "vir_engine.h"
#include "vir_policy.h"
#include "vir_result.h"
#include "vir_tmp.h"

/* Hooks only get a ctx; the host's table (one for all instances) is kept
 * here, set by init() before any hook can run. */
SLUICE_API_DECLARE;

/* Upper bounds (seconds) of the scan-time buckets, label "seconds". */
static const struct {
    double le;
    const char *label;
} vir__buckets[] = {
    {0.001, "0.001"}, {0.005, "0.005"}, {0.01, "0.01"}, {0.025, "0.025"}, {0.05, "0.05"},
    {0.1, "0.1"},     {0.25, "0.25"},   {0.5, "0.5"},   {1, "1"},         {2.5, "2.5"},
    {5, "5"},         {10, "10"},       {1e300, "+Inf"},
};
#define VIR_NBUCKETS (sizeof vir__buckets / sizeof vir__buckets[0])

struct vir_inst {
    sluice_instance *inst;
    struct vir_config cfg;
    struct vir_engine *engine;   /* owned; libclamav backend */
    struct vir_clamd_addr clamd; /* clamd backend */
    char tmpdir[VIR_PATH_MAX];   /* libclamav scratch dir */
    bool own_tmpdir;             /* we made it: remove (with contents) at shutdown */
    char scanner[80];            /* for X-Virus-Scanned */
    sluice_counter *c_scans;     /* label result */
    sluice_counter *c_detect;    /* label signature */
    sluice_counter *c_bucket;    /* label seconds: cumulative scan-time buckets */
    sluice_counter *c_usec;      /* total scan time, microseconds */
};

/* ---- config callbacks ------------------------------------------------------ */

static void vir__err(void *ud, const char *key, const char *msg)
{
    struct vir_inst *vi = ud;
    sluice_api->config_error(vi->inst, key, "%s", msg);
}

static void vir__engine_log(void *ud, int level, const char *msg)
{
    struct vir_inst *vi = ud;
    sluice_api->log(vi->inst, level, "%s", msg);
}

/* Checks that touch the disk; returns the number of problems. */
static int vir__check_paths(struct vir_inst *vi)
{
    const struct sluice_host_api *api = sluice_api;
    int errors = 0;
    struct stat st;
    if (vi->cfg.backend == VIR_BACKEND_LIBCLAMAV) {
        if (stat(vi->cfg.database, &st) < 0) {
            /* Not fatal by design: the scanner starts "not ready" and
             * picks the database up when it appears (see README). */
            api->log(vi->inst, SLUICE_LOG_WARN,
                     "database %s: %s (scans will fail until signatures are there)",
                     vi->cfg.database, strerror(errno));
        } else if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
            api->config_error(vi->inst, "database", "%s is neither a directory nor a file",
                              vi->cfg.database);
            errors++;
        }
        if (vi->cfg.tmpdir) {
            if (stat(vi->cfg.tmpdir, &st) < 0) {
                api->config_error(vi->inst, "tmpdir", "%s: %s", vi->cfg.tmpdir,
                                  strerror(errno));
                errors++;
            } else if (!S_ISDIR(st.st_mode)) {
                api->config_error(vi->inst, "tmpdir", "%s is not a directory", vi->cfg.tmpdir);
                errors++;
            } else if ((st.st_mode & 077) || st.st_uid != geteuid()) {
                /* Decoded attachments are written there. */
                api->config_error(vi->inst, "tmpdir",
                                  "%s must be private: owned by uid %u, mode 0700 (is %04o, "
                                  "uid %u)",
                                  vi->cfg.tmpdir, (unsigned)geteuid(),
                                  (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
                errors++;
            }
        }
    }
    return errors;
}

static void vir__free(struct vir_inst *vi)
{
    if (!vi)
        return;
    vir_engine_free(vi->engine);
    if (vi->own_tmpdir && vir_tmp_remove(vi->tmpdir) < 0 && errno != ENOENT)
        sluice_api->log(vi->inst, SLUICE_LOG_WARN, "cannot remove %s: %s", vi->tmpdir,
                        strerror(errno));
    free(vi);
}

static int vir_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, config_load)) {
        api->config_error(inst, NULL, "this plugin needs a newer sluice (typed keys)");
        return -1;
    }
    struct vir_inst *vi = calloc(1, sizeof *vi);
    if (!vi) {
        api->config_error(inst, NULL, "out of memory");
        return -1;
    }
    vi->inst = inst;
    int errors = SLUICE_CONFIG_LOAD(api, inst, vir_cfg_keys, &vi->cfg, SLUICE_CONFIG_STRICT) != 0;
    errors += vir_cfg_check(&vi->cfg, vir__err, vi);
    if (vi->cfg.backend == VIR_BACKEND_CLAMD && vi->cfg.clamd) {
        const char *why;
        if (vir_clamd_parse_addr(vi->cfg.clamd, &vi->clamd, &why) < 0) {
            api->config_error(inst, "clamd", "\"%s\": %s", vi->cfg.clamd, why);
            errors++;
        }
    }
    if (!errors)
        errors += vir__check_paths(vi);
    char err[256];
    if (vi->cfg.backend == VIR_BACKEND_LIBCLAMAV && vir_engine_global_init(err, sizeof err) < 0) {
        api->config_error(inst, "backend", "%s", err);
        errors++;
    }
    if (errors) {
        free(vi);
        return -1;
    }
    if (vi->cfg.backend == VIR_BACKEND_LIBCLAMAV)
        snprintf(vi->scanner, sizeof vi->scanner, "%s", vir_engine_version());
    else
        snprintf(vi->scanner, sizeof vi->scanner, "ClamAV clamd");
    if (api->checking(inst)) {
        *data = vi;
        return 0;
    }

    vi->c_scans = api->counter_new(inst, "virus_scans", "Messages scanned, by result "
                                   "(clean, virus, limit, error)", "result", VIR_KIND_COUNT);
    vi->c_detect = api->counter_new(inst, "virus_detections", "Viruses found, by signature name",
                                    "signature", 100);
    /* A histogram approximated by counters: "le" is reserved for real
     * histograms, so the label is "seconds" (cumulative, like buckets). */
    vi->c_bucket = api->counter_new(inst, "virus_scans_within",
                                    "Scans that took at most `seconds` seconds (cumulative)",
                                    "seconds", (unsigned)VIR_NBUCKETS);
    vi->c_usec = api->counter_new(inst, "virus_scan_microseconds",
                                  "Time spent scanning, microseconds", NULL, 0);

    if (vi->cfg.backend == VIR_BACKEND_LIBCLAMAV) {
        if (vi->cfg.tmpdir) {
            snprintf(vi->tmpdir, sizeof vi->tmpdir, "%s", vi->cfg.tmpdir);
        } else {
            struct vir_tmp t;
            char why[600];
            if (vir_tmp_make(&t, why, sizeof why) < 0) {
                api->config_error(inst, "tmpdir", "%s", why);
                free(vi);
                return -1;
            }
            snprintf(vi->tmpdir, sizeof vi->tmpdir, "%s", t.path);
            /* libclamav writes every decoded part of every mail there. */
            api->log(inst, t.memory ? SLUICE_LOG_INFO : SLUICE_LOG_WARN,
                     "scratch directory %s (%s)", vi->tmpdir,
                     t.memory ? "memory-backed" : "on disk: no tmpfs found; set tmpdir");
            vi->own_tmpdir = true;
        }
        struct vir_engine_opts o = {
            .database = vi->cfg.database,
            .tmpdir = vi->tmpdir,
            .cache = vi->cfg.cache,
            .max_scan_size = vi->cfg.max_scan_size,
            .max_file_size = vi->cfg.max_file_size,
            .max_recursion = vi->cfg.max_recursion,
            .max_files = vi->cfg.max_files,
            .max_scan_time_ms = vi->cfg.max_scan_time_ms,
            .reload_check_ms = vi->cfg.reload_check_ms,
            .log = vir__engine_log,
            .log_ud = vi,
        };
        vi->engine = vir_engine_new(&o);
        if (!vi->engine) {
            api->config_error(inst, "database", "cannot set up the libclamav engine");
            vir__free(vi);
            return -1;
        }
    } else {
        api->log(inst, SLUICE_LOG_INFO, "backend clamd at %s", vi->clamd.text);
    }
    *data = vi;
    return 0;
}

static void vir_shutdown(void *data)
{
    vir__free(data);
}

static void vir__count(struct vir_inst *vi, const struct vir_result *r, double secs)
{
    const struct sluice_host_api *api = sluice_api;
    if (vi->c_scans)
        api->counter_add(vi->c_scans, vir_result_kind_name(r->kind), 1);
    if (vi->c_detect && r->kind == VIR_VIRUS)
        api->counter_add(vi->c_detect, r->name, 1);
    if (vi->c_bucket)
        for (size_t i = 0; i < VIR_NBUCKETS; i++)
            if (secs <= vir__buckets[i].le)
                api->counter_add(vi->c_bucket, vir__buckets[i].label, 1);
    if (vi->c_usec)
        api->counter_add(vi->c_usec, NULL, (uint64_t)(secs * 1e6));
}

static double vir__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int vir_on_data(sluice_ctx *ctx)
{
    const struct sluice_host_api *api = sluice_api;
    struct vir_inst *vi = api->instance_data(ctx);
    struct vir_result r;
    memset(&r, 0, sizeof r);
    const char *msg = NULL;
    size_t len = 0;
    double t0 = vir__now();

    if (api->message(ctx, &msg, &len) < 0) {
        vir_result_error(&r, VIR_ERR_SCAN, "the host gave no message");
    } else if (len > vi->cfg.max_scan_size) {
        /* Checked here so a huge message meets limit_action rather than
         * whatever each scanner does with it. */
        vir_result_set(&r, VIR_LIMIT, "MaxScanSize", 11);
    } else if (vi->cfg.backend == VIR_BACKEND_LIBCLAMAV) {
        vir_engine_maybe_reload(vi->engine);
        vir_engine_scan(vi->engine, msg, len, &r);
    } else {
        vir_clamd_scan(&vi->clamd, msg, len, vi->cfg.clamd_connect_timeout_ms,
                       vi->cfg.clamd_timeout_ms, &r);
    }
    double secs = vir__now() - t0;
    vir__count(vi, &r, secs);

    struct vir_outcome o;
    vir_policy_decide(&vi->cfg, &r, vi->scanner, api->instance_name(vi->inst), &o);
    static const char *const vnames[] = {"continue", "reject", "tempfail", "quarantine"};
    if (r.kind == VIR_ERROR)
        api->log_ctx(ctx, SLUICE_LOG_WARN, "scan=error reason=%s detail=\"%s\" size=%zu "
                     "ms=%.1f action=%s", r.name, r.detail, len, secs * 1000, vnames[o.verdict]);
    else
        api->log_ctx(ctx, r.kind == VIR_CLEAN ? SLUICE_LOG_DEBUG : SLUICE_LOG_INFO,
                     "scan=%s%s%s size=%zu ms=%.1f action=%s", vir_result_kind_name(r.kind),
                     r.name[0] ? " name=" : "", r.name, len, secs * 1000, vnames[o.verdict]);

    for (size_t i = 0; i < o.nheaders; i++) {
        int rc = api->header_add(ctx, o.headers[i].name, o.headers[i].value);
        if (rc < 0)
            api->log_ctx(ctx, SLUICE_LOG_WARN, "cannot add %s: %s", o.headers[i].name,
                         strerror(-rc));
    }
    switch (o.verdict) {
    case VIR_V_REJECT:
        api->set_reply(ctx, o.code, o.enh, o.text);
        return SLUICE_REJECT;
    case VIR_V_TEMPFAIL:
        api->set_reply(ctx, o.code, o.enh, o.text);
        return SLUICE_TEMPFAIL;
    case VIR_V_QUARANTINE:
        return SLUICE_QUARANTINE;
    default:
        return SLUICE_CONTINUE;
    }
}

SLUICE_PLUGIN_DEFINE(.name = "virus", .version = "1.0",
                     .description = "virus scanning with libclamav in process or clamd",
                     .capabilities = SLUICE_CAP_HEADERS | SLUICE_CAP_QUARANTINE,
                     .blocking_phases = SLUICE_PHASE_BIT(SLUICE_PHASE_DATA), .init = vir_init,
                     .shutdown = vir_shutdown, .on_data = vir_on_data);
