/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_engine: libclamav engine holder (contract in vir_engine.h).
 *
 * libclamav facts this relies on (see shared notes §1): an all-zero scan
 * options struct runs no parser, so parse = ~0; exceeded limits pass as
 * clean unless general HEURISTICS + heuristic EXCEEDS_MAX are set, and then
 * come back as CL_VIRUS "Heuristics.Limits.Exceeded.*" (mapped to
 * VIR_LIMIT here); the clean cache ignores scan options, which is fine
 * because every scan of one engine uses the same options; limits must be
 * set before compiling. libclamav's log goes through one process-wide
 * callback, so the sink of the current thread is kept in a thread-local
 * and set around every load and scan.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <time.h>

#include <clamav.h>

#include "vir_engine.h"

struct vir__loaded {
    struct cl_engine *cl; /* owned; freed with the last reference */
    atomic_uint refs;
    unsigned sigs;
};

struct vir_engine {
    struct vir_engine_opts o; /* strings below are the owned copies */
    char *database;
    char *tmpdir;

    pthread_mutex_t lock;      /* guards everything below */
    pthread_cond_t idle;       /* signalled when a reload ends */
    struct vir__loaded *cur;   /* NULL = not ready */
    uint64_t dir_sig;          /* signature of the directory last loaded (or tried) */
    uint64_t last_check_ms;
    uint64_t generation;
    bool reloading;
    bool have_thread;          /* thr must be joined */
    pthread_t thr;
};

/* ---- logging ------------------------------------------------------------ */

struct vir__sink {
    vir_log_fn fn;
    void *ud;
};
static _Thread_local struct vir__sink vir__tls_sink;

static void vir__log(const struct vir_engine *e, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vir__log(const struct vir_engine *e, int level, const char *fmt, ...)
{
    if (!e->o.log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    e->o.log(e->o.log_ud, level, msg);
}

static void vir__clcb(enum cl_msg severity, const char *fullmsg, const char *msg, void *context)
{
    (void)fullmsg;
    (void)context;
    struct vir__sink s = vir__tls_sink;
    if (!s.fn || !msg)
        return;
    int level = severity >= CL_MSG_ERROR ? 3 : severity >= CL_MSG_WARN ? 2 : 0;
    char line[1024];
    snprintf(line, sizeof line, "libclamav: %s", msg);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    s.fn(s.ud, level, line);
}

/* ---- process-wide init ---------------------------------------------------- */

static pthread_once_t vir__once = PTHREAD_ONCE_INIT;
static cl_error_t vir__init_rc;
static char vir__version[64];

static void vir__global_init(void)
{
    /* Before cl_init, so its own messages are routed too. */
    cl_set_clcb_msg(vir__clcb);
    vir__init_rc = cl_init(CL_INIT_DEFAULT);
    snprintf(vir__version, sizeof vir__version, "ClamAV %s", cl_retver());
}

int vir_engine_global_init(char *err, size_t errsz)
{
    pthread_once(&vir__once, vir__global_init);
    if (vir__init_rc != CL_SUCCESS) {
        if (err)
            snprintf(err, errsz, "cl_init: %s", cl_strerror(vir__init_rc));
        return -1;
    }
    return 0;
}

const char *vir_engine_version(void)
{
    pthread_once(&vir__once, vir__global_init);
    return vir__version;
}

static uint64_t vir__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- directory signature ---------------------------------------------------- */

static uint64_t vir__fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Order-independent hash of (name, size, mtime, inode) of every entry; 0
 * when the path does not exist. A single file is hashed alone. */
static uint64_t vir__dir_signature(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    if (!S_ISDIR(st.st_mode)) {
        uint64_t h = 0xcbf29ce484222325ull;
        h = vir__fnv(h, &st.st_size, sizeof st.st_size);
        h = vir__fnv(h, &st.st_mtim, sizeof st.st_mtim);
        return vir__fnv(h, &st.st_ino, sizeof st.st_ino) | 1;
    }
    /* open() + fdopendir(), not opendir(): the same, but a race detector
     * sees the descriptor being made (opendir's open inside libc is
     * invisible to TSan, which then mistakes a reused number for a race
     * with the loop's socket of that number). */
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d && fd >= 0)
        close(fd);
    if (!d)
        return 0;
    uint64_t sum = 0x9e3779b97f4a7c15ull;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        struct stat fst;
        if (fstatat(dirfd(d), de->d_name, &fst, 0) < 0)
            continue;
        uint64_t h = 0xcbf29ce484222325ull;
        h = vir__fnv(h, de->d_name, strlen(de->d_name));
        h = vir__fnv(h, &fst.st_size, sizeof fst.st_size);
        h = vir__fnv(h, &fst.st_mtim, sizeof fst.st_mtim);
        h = vir__fnv(h, &fst.st_ino, sizeof fst.st_ino);
        sum += h;
    }
    closedir(d);
    return sum | 1;
}

/* ---- loading --------------------------------------------------------------- */

static void vir__loaded_unref(struct vir__loaded *l)
{
    if (l && atomic_fetch_sub(&l->refs, 1) == 1) {
        cl_engine_free(l->cl);
        free(l);
    }
}

#define VIR__SET(e, cl, field, v, what)                                                    \
    do {                                                                                   \
        cl_error_t rc_ = cl_engine_set_num(cl, field, (long long)(v));                     \
        if (rc_ != CL_SUCCESS)                                                             \
            vir__log(e, 2, "cannot set %s: %s", what, cl_strerror(rc_));                  \
    } while (0)

/* Load and compile a new engine from the directory; NULL when there is
 * nothing usable (reason logged). */
static struct vir__loaded *vir__load(struct vir_engine *e)
{
    struct vir__sink saved = vir__tls_sink;
    vir__tls_sink = (struct vir__sink){e->o.log, e->o.log_ud};
    struct vir__loaded *l = NULL;
    uint64_t t0 = vir__now_ms();

    struct stat st;
    if (stat(e->database, &st) < 0) {
        vir__log(e, 3, "database %s: %s", e->database, strerror(errno));
        goto out;
    }
    struct cl_engine *cl = cl_engine_new();
    if (!cl) {
        vir__log(e, 3, "cl_engine_new failed");
        goto out;
    }
    /* libclamav counts VIR_MAIL_MARK as part of the message. */
    VIR__SET(e, cl, CL_ENGINE_MAX_SCANSIZE, e->o.max_scan_size + (sizeof VIR_MAIL_MARK - 1),
             "max_scan_size");
    VIR__SET(e, cl, CL_ENGINE_MAX_FILESIZE, e->o.max_file_size + (sizeof VIR_MAIL_MARK - 1),
             "max_file_size");
    VIR__SET(e, cl, CL_ENGINE_MAX_RECURSION, e->o.max_recursion, "max_recursion");
    VIR__SET(e, cl, CL_ENGINE_MAX_FILES, e->o.max_files, "max_files");
    VIR__SET(e, cl, CL_ENGINE_MAX_SCANTIME, e->o.max_scan_time_ms, "max_scan_time");
    if (!e->o.cache)
        VIR__SET(e, cl, CL_ENGINE_DISABLE_CACHE, 1, "cache");
    if (e->tmpdir && *e->tmpdir) {
        cl_error_t rc = cl_engine_set_str(cl, CL_ENGINE_TMPDIR, e->tmpdir);
        if (rc != CL_SUCCESS)
            vir__log(e, 2, "cannot set tmpdir: %s", cl_strerror(rc));
    }
    unsigned sigs = 0;
    cl_error_t rc = cl_load(e->database, cl, &sigs, CL_DB_STDOPT);
    if (rc != CL_SUCCESS) {
        vir__log(e, 3, "loading database %s: %s", e->database, cl_strerror(rc));
        cl_engine_free(cl);
        goto out;
    }
    if (sigs == 0) {
        vir__log(e, 3, "database %s has no signatures", e->database);
        cl_engine_free(cl);
        goto out;
    }
    rc = cl_engine_compile(cl);
    if (rc != CL_SUCCESS) {
        vir__log(e, 3, "compiling database %s: %s", e->database, cl_strerror(rc));
        cl_engine_free(cl);
        goto out;
    }
    l = calloc(1, sizeof *l);
    if (!l) {
        cl_engine_free(cl);
        goto out;
    }
    l->cl = cl;
    l->sigs = sigs;
    atomic_init(&l->refs, 1);
    vir__log(e, 1, "loaded %u signature(s) from %s in %llu ms (%s)", sigs, e->database,
             (unsigned long long)(vir__now_ms() - t0), vir__version);
out:
    vir__tls_sink = saved;
    return l;
}

/* Install l (NULL = the load failed: keep the old one, say what now). */
static void vir__swap(struct vir_engine *e, struct vir__loaded *l)
{
    pthread_mutex_lock(&e->lock);
    if (!l) {
        bool ready = e->cur != NULL;
        pthread_mutex_unlock(&e->lock);
        if (ready)
            vir__log(e, 2, "keeping the previously loaded database");
        else
            vir__log(e, 3, "the virus scanner is NOT READY: every scan fails and gets the "
                     "failure policy until signatures appear in %s", e->database);
        return;
    }
    struct vir__loaded *old = e->cur;
    e->cur = l;
    e->generation++;
    pthread_mutex_unlock(&e->lock);
    vir__loaded_unref(old); /* freed now, or by the last scan still using it */
}

struct vir_engine *vir_engine_new(const struct vir_engine_opts *o)
{
    if (vir_engine_global_init(NULL, 0) < 0)
        return NULL;
    struct vir_engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->o = *o;
    e->database = strdup(o->database ? o->database : "");
    e->tmpdir = o->tmpdir ? strdup(o->tmpdir) : NULL;
    if (!e->database || (o->tmpdir && !e->tmpdir)) {
        free(e->database);
        free(e->tmpdir);
        free(e);
        return NULL;
    }
    e->o.database = e->database;
    e->o.tmpdir = e->tmpdir;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->idle, NULL);
    e->dir_sig = vir__dir_signature(e->database);
    e->last_check_ms = vir__now_ms();
    vir__swap(e, vir__load(e));
    return e;
}

void vir_engine_free(struct vir_engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    bool join = e->have_thread;
    e->have_thread = false;
    pthread_mutex_unlock(&e->lock);
    if (join)
        pthread_join(e->thr, NULL);
    vir__loaded_unref(e->cur);
    pthread_cond_destroy(&e->idle);
    pthread_mutex_destroy(&e->lock);
    free(e->database);
    free(e->tmpdir);
    free(e);
}

/* ---- reload ---------------------------------------------------------------- */

static void *vir__reload_thread(void *arg)
{
    struct vir_engine *e = arg;
    vir__log(e, 1, "database %s changed: reloading in the background", e->database);
    vir__swap(e, vir__load(e));
    pthread_mutex_lock(&e->lock);
    e->reloading = false;
    pthread_cond_broadcast(&e->idle);
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

void vir_engine_maybe_reload(struct vir_engine *e)
{
    if (!e->o.reload_check_ms)
        return;
    uint64_t now = vir__now_ms();
    pthread_mutex_lock(&e->lock);
    if (e->reloading || now - e->last_check_ms < e->o.reload_check_ms) {
        pthread_mutex_unlock(&e->lock);
        return;
    }
    /* Claim this check so other threads skip it while we stat. */
    e->last_check_ms = now;
    e->reloading = true;
    pthread_mutex_unlock(&e->lock);

    uint64_t sig = vir__dir_signature(e->database);
    pthread_mutex_lock(&e->lock);
    if (sig == e->dir_sig) {
        e->reloading = false;
        pthread_cond_broadcast(&e->idle);
        pthread_mutex_unlock(&e->lock);
        return;
    }
    /* Recorded before loading: a change made during the load is seen by
     * the next check; a failed load is not retried until the next change. */
    e->dir_sig = sig;
    if (e->have_thread) {
        /* The previous reload thread has finished (reloading was false). */
        pthread_join(e->thr, NULL);
        e->have_thread = false;
    }
    if (pthread_create(&e->thr, NULL, vir__reload_thread, e) == 0) {
        e->have_thread = true;
    } else {
        e->reloading = false;
        pthread_cond_broadcast(&e->idle);
        vir__log(e, 3, "cannot start the reload thread: %s", strerror(errno));
    }
    pthread_mutex_unlock(&e->lock);
}

bool vir_engine_wait_idle(struct vir_engine *e, uint32_t timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&e->lock);
    int rc = 0;
    while (e->reloading && rc == 0)
        rc = pthread_cond_timedwait(&e->idle, &e->lock, &ts);
    bool idle = !e->reloading;
    pthread_mutex_unlock(&e->lock);
    return idle;
}

unsigned vir_engine_signatures(struct vir_engine *e)
{
    pthread_mutex_lock(&e->lock);
    unsigned n = e->cur ? e->cur->sigs : 0;
    pthread_mutex_unlock(&e->lock);
    return n;
}

uint64_t vir_engine_generation(struct vir_engine *e)
{
    pthread_mutex_lock(&e->lock);
    uint64_t g = e->generation;
    pthread_mutex_unlock(&e->lock);
    return g;
}

/* ---- scanning ---------------------------------------------------------------- */

static const char vir__limit_prefix[] = "Heuristics.Limits.Exceeded.";

void vir_engine_scan(struct vir_engine *e, const void *data, size_t len, struct vir_result *out)
{
    pthread_mutex_lock(&e->lock);
    struct vir__loaded *l = e->cur;
    if (l)
        atomic_fetch_add(&l->refs, 1);
    pthread_mutex_unlock(&e->lock);
    if (!l) {
        vir_result_error(out, VIR_ERR_NOT_READY, "no signatures loaded from %s", e->database);
        return;
    }
    /* cl_fmap_open_memory refuses an empty buffer; an empty message has
     * nothing to scan. */
    if (len == 0) {
        vir_result_set(out, VIR_CLEAN, NULL, 0);
        vir__loaded_unref(l);
        return;
    }
    /* libclamav answers a file over its max_file_size with CL_VIRUS but no
     * name, before it has a context to name the heuristic in. */
    if (len > e->o.max_file_size) {
        vir_result_set(out, VIR_LIMIT, "MaxFileSize", 11);
        vir__loaded_unref(l);
        return;
    }
    struct vir__sink saved = vir__tls_sink;
    vir__tls_sink = (struct vir__sink){e->o.log, e->o.log_ud};

    /* The mark and the message in one buffer: libclamav's file types
     * look at the first bytes (VIR_MAIL_MARK), and a memory map of a copy
     * costs less than one it fills through a read callback. */
    size_t mlen = sizeof VIR_MAIL_MARK - 1;
    char *marked = len <= SIZE_MAX - mlen ? malloc(mlen + len) : NULL;
    if (!marked) {
        vir_result_error(out, VIR_ERR_SCAN, "out of memory for a %zu-byte message", len);
        goto done;
    }
    memcpy(marked, VIR_MAIL_MARK, mlen);
    memcpy(marked + mlen, data, len);
    cl_fmap_t *map = cl_fmap_open_memory(marked, mlen + len);
    if (!map) {
        free(marked);
        vir_result_error(out, VIR_ERR_SCAN, "cl_fmap_open_memory failed");
        goto done;
    }
    struct cl_scan_options opts;
    memset(&opts, 0, sizeof opts);
    opts.parse = ~0u;
    opts.general = CL_SCAN_GENERAL_HEURISTICS;
    opts.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX;
    const char *virname = NULL;
    unsigned long scanned = 0;
    cl_error_t rc = cl_scanmap_callback(map, "message", &virname, &scanned, l->cl, &opts, NULL);
    cl_fmap_close(map);
    free(marked);
    switch (rc) {
    case CL_CLEAN:
        vir_result_set(out, VIR_CLEAN, NULL, 0);
        break;
    case CL_VIRUS:
        if (!virname)
            virname = "Unknown";
        if (!strncmp(virname, vir__limit_prefix, sizeof vir__limit_prefix - 1)) {
            const char *w = virname + sizeof vir__limit_prefix - 1;
            vir_result_set(out, VIR_LIMIT, w, strlen(w));
        } else {
            vir_result_set(out, VIR_VIRUS, virname, strlen(virname));
        }
        break;
    case CL_ETIMEOUT:
        vir_result_set(out, VIR_LIMIT, "MaxScanTime", 11);
        break;
    case CL_EMAXREC:
        vir_result_set(out, VIR_LIMIT, "MaxRecursion", 12);
        break;
    case CL_EMAXSIZE:
        vir_result_set(out, VIR_LIMIT, "MaxScanSize", 11);
        break;
    case CL_EMAXFILES:
        vir_result_set(out, VIR_LIMIT, "MaxFiles", 8);
        break;
    default:
        vir_result_error(out, VIR_ERR_SCAN, "libclamav: %s", cl_strerror(rc));
        break;
    }
done:
    vir__tls_sink = saved;
    vir__loaded_unref(l);
}
