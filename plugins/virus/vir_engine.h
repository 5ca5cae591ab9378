/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_engine: the libclamav backend. Holds the compiled engine of one
 * signature directory, shares it read-only among scanning threads and
 * replaces it when the directory changes.
 *
 * Lifetimes: struct vir_engine (the holder) is owned by the plugin
 * instance. The compiled engine inside it is refcounted: a scan takes a
 * reference under the holder's lock and drops it when done, so a reload can
 * swap in a new engine at any time and scans in flight finish on the old
 * one, which is freed by whoever drops the last reference.
 *
 * Reload: vir_engine_maybe_reload() (called before each scan) compares a
 * cheap signature of the directory (names, sizes, mtimes of its files) at
 * most every reload_check_ms; on a change it starts one thread that loads
 * and compiles a new engine beside the old (memory for both is needed
 * briefly) and swaps it in. A failed load keeps the old engine and is not
 * retried until the directory changes again. SIGHUP needs nothing here:
 * the host builds a new instance, hence a new holder.
 *
 * "Not ready": a missing directory, or one without any signature, leaves
 * the holder without an engine (logged as an error); scans then return
 * VIR_ERROR "not-ready", and the reload check keeps watching the directory.
 */
#ifndef VIR_ENGINE_H
#define VIR_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vir_result.h"

/* Log sink for the engine's own messages and libclamav's (level as
 * enum sluice_log_level: 0 debug .. 3 error). */
typedef void (*vir_log_fn)(void *ud, int level, const char *msg);

struct vir_engine_opts {
    const char *database;     /* directory (or single file) to cl_load */
    const char *tmpdir;       /* CL_ENGINE_TMPDIR, NULL/"" = libclamav default */
    bool cache;               /* false: CL_ENGINE_DISABLE_CACHE */
    uint64_t max_scan_size;
    uint64_t max_file_size;
    uint32_t max_recursion;
    uint32_t max_files;
    uint32_t max_scan_time_ms;
    uint32_t reload_check_ms; /* 0: never look for changes */
    vir_log_fn log;           /* may be NULL */
    void *log_ud;
};

struct vir_engine;

/* cl_init once per process. 0, or -1 with a message in err. */
int vir_engine_global_init(char *err, size_t errsz);

/* "ClamAV 1.4.6". */
const char *vir_engine_version(void);

/* Build the holder and load the database synchronously (a missing or empty
 * database is "not ready", not a failure). NULL only on allocation or
 * global-init failure. Strings in opts are copied. */
struct vir_engine *vir_engine_new(const struct vir_engine_opts *o);

/* Join a running reload, release the engine. No scan may be running. */
void vir_engine_free(struct vir_engine *e);

/* Scan a whole message held in memory (MIME, archives and the rest parsed;
 * limits reported as VIR_LIMIT). Thread-safe. */
void vir_engine_scan(struct vir_engine *e, const void *data, size_t len, struct vir_result *out);

/* The periodic change check; starts a background reload when needed.
 * Cheap when not due. Thread-safe. */
void vir_engine_maybe_reload(struct vir_engine *e);

/* Signatures in the current engine (0 = not ready). */
unsigned vir_engine_signatures(struct vir_engine *e);
/* Number of successful loads so far (tests watch it change). */
uint64_t vir_engine_generation(struct vir_engine *e);
/* Wait up to timeout_ms for a background reload to finish (tests). */
bool vir_engine_wait_idle(struct vir_engine *e, uint32_t timeout_ms);

#endif
