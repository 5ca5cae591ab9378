/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * host: plugin loading, the chain runner and the host API; see host.h.
 *
 * Threads: everything here runs on the loop thread except the plugin
 * hooks declared blocking, which run on the libuv pool. While such a hook
 * runs the session is paused, so the data it reads (struct host_tx) is
 * stable; the hook's edits go into its ctx's journal and are applied on the
 * loop thread when it returns. If it times out, the session's transaction
 * switches to a clone and the abandoned hook keeps the old host_tx alive by
 * reference until it returns; its journal is dropped. Reference counts are
 * only changed on the loop thread. Private-data slots, which plugins may
 * set from pool threads, are guarded by a mutex.
 */
#include "host.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "msg.h"
#include "plugcfg.h"
#include "plugdone.h"
#include "plughdr.h"
#include "smtp_cmd.h"
#include "stats.h"

/* ---- instances and chains ------------------------------------------------ */

struct sluice_instance {
    struct chain *chain;         /* not referenced (the chain owns us) */
    size_t idx;
    char *name;
    char *path;                  /* resolved .so path */
    struct cfg_plugin settings;  /* copy; name/path point into cfg */
    struct cfg *cfg;             /* referenced */
    void *dl;
    const struct sluice_plugin *desc;
    void *data;                  /* plugin's instance data */
    bool initialised;
    bool checking;
    buf_t *errors;               /* during init only */
    int nerrors;
    bool quarantine_accepts;
    struct stats_plugin *stats;
    /* circuit breaker (loop thread only) */
    unsigned fails;
    uint64_t window_start_ns;
    uint64_t open_until_ns;
    enum stats_breaker breaker;
};

struct chain {
    int refs;
    struct cfg *cfg;
    struct sluice_instance **inst;
    size_t n;
};

static struct chain *host_chain; /* current */
static const struct sluice_host_api host_api;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- transaction data (what plugins read) ------------------------------- */

struct host_rcpt {
    char *addr;
    char *params;
    bool added;
    bool removed;
};

struct host_sym {
    char *name;
    char *desc;
    double score;
    const char *plugin; /* instance name (chain outlives the tx) */
};

struct host_tx {
    int refs;
    bool fresh;            /* nothing happened in it yet: can be reused */
    struct sess_info info;
    char *sender;
    char *sender_params;
    char *orig_sender;
    bool sender_changed;
    struct host_rcpt *rcpts;
    size_t nrcpts, cap;
    char *cur_rcpt;        /* RCPT phase: the one being decided */
    char *cur_rcpt_params;
    bool cur_removed;
    struct msgbuf *mb;     /* owned */
    char *copy;            /* owned message bytes of a clone */
    struct msg *msg;
    /* verdict record */
    struct host_sym *syms;
    size_t nsyms, capsyms;
    double score;
    bool discard, quarantine, quarantine_accepts;
    char decided_by[96];
    char decision[24];
    char reason[200];
    double plugin_ms[CFG_MAX_PLUGINS];
    /* per-instance transaction data */
    pthread_mutex_t mu;
    void *txdata[CFG_MAX_PLUGINS];
    void (*txfree[CFG_MAX_PLUGINS])(void *);
};

struct host_conn {
    int refs;
    bool closed;
    uv_loop_t *loop;
    struct sess_info info;
    struct chain *chain;   /* pinned for the current transaction / connection */
    struct host_tx *tx;
    bool in_tx;
    pthread_mutex_t mu;
    void *conndata[CFG_MAX_PLUGINS];
    void (*connfree[CFG_MAX_PLUGINS])(void *);
    /* the phase being run */
    struct sluice_ctx *cur;
    struct sluice_ctx *spare; /* a free ctx kept for reuse */
    uint64_t clock_ns;        /* end of the last hook of the running phase, or 0 */
    enum sluice_phase phase;
    size_t next_idx;
    host_done_fn done;
    void *done_ud;
    bool running;
    uv_timer_t *timer;
};

enum edit_kind {
    E_HDR_ADD, E_HDR_INSERT, E_HDR_CHANGE, E_HDR_DELETE, E_BODY,
    E_SENDER, E_RCPT_ADD, E_RCPT_REMOVE, E_SYMBOL,
};

struct edit {
    struct edit *next;
    enum edit_kind kind;
    size_t index;
    char *name;
    char *value;   /* header value / address / symbol description */
    char *params;
    char *data;    /* body */
    size_t len;
    double score;
};

struct sluice_ctx {
    struct host_conn *hc;      /* referenced */
    struct host_tx *tx;        /* referenced */
    struct sluice_instance *inst;
    enum sluice_phase phase;
    int refs;
    atomic_bool abandoned;
    bool outstanding;          /* pool work or async answer pending */
    bool completed;
    bool in_hook;              /* complete() called from inside the hook */
    int verdict;
    int code;                  /* 0: no reply set (enh/text unset) */
    struct edit *edits, *edits_tail;
    buf_t scratch;             /* header_get results */
    char **strs;               /* other host-owned strings for this call */
    size_t nstrs;
    uint64_t started_ns;
    /* Members below are not cleared for a new call (only read when set). */
    char enh[16];
    char text[400];
    uv_work_t work;
};

#define CTX_CLEAR_SIZE offsetof(struct sluice_ctx, enh)

/* ---- small helpers -------------------------------------------------------- */

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void tx_unref(struct host_tx *tx);

static struct host_tx *tx_new(const struct sess_info *info)
{
    struct host_tx *tx = calloc(1, sizeof *tx);
    if (!tx)
        return NULL;
    tx->refs = 1;
    tx->fresh = true;
    tx->info = *info;
    pthread_mutex_init(&tx->mu, NULL);
    return tx;
}

static void tx_free_data(struct host_tx *tx)
{
    for (size_t i = 0; i < CFG_MAX_PLUGINS; i++) {
        if (tx->txdata[i] && tx->txfree[i])
            tx->txfree[i](tx->txdata[i]);
        tx->txdata[i] = NULL;
        tx->txfree[i] = NULL;
    }
}

static void tx_unref(struct host_tx *tx)
{
    if (!tx || --tx->refs > 0)
        return;
    tx_free_data(tx);
    free(tx->sender);
    free(tx->sender_params);
    free(tx->orig_sender);
    for (size_t i = 0; i < tx->nrcpts; i++) {
        free(tx->rcpts[i].addr);
        free(tx->rcpts[i].params);
    }
    free(tx->rcpts);
    free(tx->cur_rcpt);
    free(tx->cur_rcpt_params);
    for (size_t i = 0; i < tx->nsyms; i++) {
        free(tx->syms[i].name);
        free(tx->syms[i].desc);
    }
    free(tx->syms);
    if (tx->msg)
        msg_free(tx->msg);
    if (tx->mb)
        msgbuf_free(tx->mb);
    free(tx->copy);
    pthread_mutex_destroy(&tx->mu);
    free(tx);
}

static int tx_add_rcpt(struct host_tx *tx, const char *addr, const char *params, bool added)
{
    if (tx->nrcpts == tx->cap) {
        size_t ncap = tx->cap ? tx->cap * 2 : 8;
        struct host_rcpt *n = realloc(tx->rcpts, ncap * sizeof *n);
        if (!n)
            return -ENOMEM;
        tx->rcpts = n;
        tx->cap = ncap;
    }
    struct host_rcpt *r = &tx->rcpts[tx->nrcpts];
    r->addr = xstrdup(addr);
    r->params = xstrdup(params ? params : "");
    r->added = added;
    r->removed = false;
    if (!r->addr || !r->params) {
        free(r->addr);
        free(r->params);
        return -ENOMEM;
    }
    tx->nrcpts++;
    return 0;
}

/* A copy of tx for the session to go on with, after a hook was abandoned
 * (the abandoned hook keeps reading the original). Plugin tx data stays
 * with the original and is freed with it. */
static struct host_tx *tx_clone(struct host_tx *old)
{
    struct host_tx *tx = tx_new(&old->info);
    if (!tx)
        return NULL;
    tx->sender = xstrdup(old->sender);
    tx->sender_params = xstrdup(old->sender_params);
    tx->orig_sender = xstrdup(old->orig_sender);
    tx->sender_changed = old->sender_changed;
    for (size_t i = 0; i < old->nrcpts; i++) {
        if (tx_add_rcpt(tx, old->rcpts[i].addr, old->rcpts[i].params, old->rcpts[i].added) == 0)
            tx->rcpts[tx->nrcpts - 1].removed = old->rcpts[i].removed;
    }
    tx->cur_rcpt = xstrdup(old->cur_rcpt);
    tx->cur_rcpt_params = xstrdup(old->cur_rcpt_params);
    tx->cur_removed = old->cur_removed;
    if (old->msg) {
        const char *data;
        size_t len;
        msg_render(old->msg, &data, &len);
        tx->copy = malloc(len ? len : 1);
        if (tx->copy) {
            memcpy(tx->copy, data, len);
            tx->msg = msg_parse(tx->copy, len);
        }
    }
    for (size_t i = 0; i < old->nsyms; i++) {
        struct host_sym *s = &old->syms[i];
        if (tx->nsyms == tx->capsyms) {
            size_t ncap = tx->capsyms ? tx->capsyms * 2 : 16;
            struct host_sym *n = realloc(tx->syms, ncap * sizeof *n);
            if (!n)
                break;
            tx->syms = n;
            tx->capsyms = ncap;
        }
        tx->syms[tx->nsyms].name = xstrdup(s->name);
        tx->syms[tx->nsyms].desc = xstrdup(s->desc);
        tx->syms[tx->nsyms].score = s->score;
        tx->syms[tx->nsyms].plugin = s->plugin;
        tx->nsyms++;
    }
    tx->score = old->score;
    tx->discard = old->discard;
    tx->quarantine = old->quarantine;
    tx->quarantine_accepts = old->quarantine_accepts;
    memcpy(tx->decided_by, old->decided_by, sizeof tx->decided_by);
    memcpy(tx->decision, old->decision, sizeof tx->decision);
    memcpy(tx->reason, old->reason, sizeof tx->reason);
    memcpy(tx->plugin_ms, old->plugin_ms, sizeof tx->plugin_ms);
    return tx;
}

/* ---- loading ---------------------------------------------------------------- */

static void chain_free(struct chain *c);

static bool file_exists(const char *p)
{
    return access(p, R_OK) == 0;
}

/* Where is bundled plugin `name`? --plugin-dir / [server] plugin_dir, then
 * the build tree next to the binary, then the install directory. */
static char *resolve_plugin(const struct cfg *cfg, const char *name)
{
    char buf[PATH_MAX];
    if (strchr(name, '/'))
        return strdup(name);
    if (cfg->plugin_dir) {
        snprintf(buf, sizeof buf, "%s/%s.so", cfg->plugin_dir, name);
        return strdup(buf);
    }
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, sizeof buf, "%s/../plugins/%s.so", exe, name);
            if (file_exists(buf))
                return strdup(buf);
            snprintf(buf, sizeof buf, "%s/plugins/%s.so", exe, name);
            if (file_exists(buf))
                return strdup(buf);
        }
    }
    snprintf(buf, sizeof buf, "%s/%s.so", SLUICE_PLUGIN_INSTALL_DIR, name);
    return strdup(buf);
}

static const char *cfg_file(const struct cfg *cfg)
{
    return cfg->path ? cfg->path : "(command line)";
}

static void inst_error(struct sluice_instance *in, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void inst_error(struct sluice_instance *in, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_printf(in->errors, "%s:%d: [plugin %s] ", cfg_file(in->cfg), line, in->name);
    buf_vprintf(in->errors, fmt, ap);
    buf_puts(in->errors, "\n");
    va_end(ap);
    in->nerrors++;
}

/* Validate a descriptor before calling anything in it. */
static const char *desc_problem(const struct sluice_plugin *d)
{
    static char why[160];
    if (d->abi_version != SLUICE_PLUGIN_ABI_VERSION) {
        snprintf(why, sizeof why, "plugin ABI version %u, this sluice supports %u",
                 d->abi_version, SLUICE_PLUGIN_ABI_VERSION);
        return why;
    }
    if (d->size < offsetof(struct sluice_plugin, on_close) + sizeof d->on_close)
        return "descriptor too small (built against a different SDK?)";
    if (!d->name || !d->name[0])
        return "descriptor has no name";
    if (!d->init)
        return "descriptor has no init function";
    uint32_t known = SLUICE_CAP_HEADERS | SLUICE_CAP_BODY | SLUICE_CAP_SENDER |
                     SLUICE_CAP_RECIPIENTS | SLUICE_CAP_QUARANTINE;
    if (d->capabilities & ~known)
        return "descriptor asks for unknown capabilities";
    if (d->blocking_phases & ~((1u << SLUICE_PHASE_COUNT) - 1))
        return "descriptor marks unknown phases as blocking";
    return NULL;
}

static struct sluice_instance *inst_load(struct chain *ch, const struct cfg_plugin *cp,
                                         size_t idx, bool checking, buf_t *errors)
{
    struct sluice_instance *in = calloc(1, sizeof *in);
    if (!in)
        return NULL;
    in->chain = ch;
    in->idx = idx;
    in->name = strdup(cp->name);
    in->settings = *cp;
    in->cfg = cfg_ref(ch->cfg);
    in->checking = checking;
    in->errors = errors;
    in->breaker = STATS_CB_CLOSED;
    in->quarantine_accepts = true;
    int qline = cp->line;
    char section[300];
    snprintf(section, sizeof section, "plugin %s", cp->name);
    const char *q = cfg_get(ch->cfg, section, "quarantine_reply", &qline);
    if (q) {
        if (strcasecmp(q, "accept") == 0)
            in->quarantine_accepts = true;
        else if (strcasecmp(q, "reject") == 0)
            in->quarantine_accepts = false;
        else
            inst_error(in, qline, "quarantine_reply: expected accept or reject, got '%s'", q);
    }
    in->path = resolve_plugin(ch->cfg, cp->path ? cp->path : cp->name);
    if (!in->path)
        return in;
    in->dl = dlopen(in->path, RTLD_NOW | RTLD_LOCAL);
    if (!in->dl) {
        inst_error(in, cp->line, "cannot load %s: %s", in->path, dlerror());
        return in;
    }
    in->desc = dlsym(in->dl, SLUICE_PLUGIN_SYMBOL);
    if (!in->desc) {
        inst_error(in, cp->line, "%s is not a sluice plugin (no '%s' symbol)", in->path,
                   SLUICE_PLUGIN_SYMBOL);
        return in;
    }
    const char *why = desc_problem(in->desc);
    if (why) {
        inst_error(in, cp->line, "%s refused: %s", in->path, why);
        in->desc = NULL;
        return in;
    }
    if ((in->desc->blocking_phases &
         (SLUICE_PHASE_BIT(SLUICE_PHASE_RESET) | SLUICE_PHASE_BIT(SLUICE_PHASE_CLOSE))) != 0) {
        inst_error(in, cp->line, "%s refused: reset/close notifications cannot be blocking",
                   in->path);
        in->desc = NULL;
        return in;
    }
    int before = in->nerrors;
    int rc = in->desc->init(&host_api, in, &in->data);
    if (rc != 0 && in->nerrors == before)
        inst_error(in, cp->line, "plugin %s failed to initialise", in->desc->name);
    if (rc == 0)
        in->initialised = true;
    in->stats = checking ? NULL : stats_plugin_get(in->name);
    return in;
}

static void inst_free(struct sluice_instance *in)
{
    if (!in)
        return;
    if (in->initialised && in->desc->shutdown)
        in->desc->shutdown(in->data);
    /* The .so stays loaded: a plugin's counters, strings or threads may
     * still be referenced; dlclose would be a use-after-unmap risk. */
    free(in->name);
    free(in->path);
    cfg_unref(in->cfg);
    free(in);
}

struct chain *chain_load(struct cfg *cfg, bool checking, buf_t *errors)
{
    struct chain *ch = calloc(1, sizeof *ch);
    if (!ch)
        return NULL;
    ch->refs = 1;
    ch->cfg = cfg_ref(cfg);
    ch->inst = calloc(cfg->nplugins ? cfg->nplugins : 1, sizeof *ch->inst);
    if (!ch->inst) {
        chain_free(ch);
        return NULL;
    }
    int nerr = 0;
    for (size_t i = 0; i < cfg->nplugins; i++) {
        struct sluice_instance *in = inst_load(ch, &cfg->plugins[i], i, checking, errors);
        if (!in) {
            buf_puts(errors, "out of memory loading plugins\n");
            nerr++;
            break;
        }
        ch->inst[ch->n++] = in;
        nerr += in->nerrors;
        in->errors = NULL;
    }
    if (nerr) {
        chain_free(ch);
        return NULL;
    }
    for (size_t i = 0; i < ch->n; i++)
        log_info("chain: %zu. %s (%s %s) from %s", i + 1, ch->inst[i]->name,
                 ch->inst[i]->desc->name,
                 ch->inst[i]->desc->version ? ch->inst[i]->desc->version : "",
                 ch->inst[i]->path);
    return ch;
}

static void chain_free(struct chain *c)
{
    for (size_t i = 0; i < c->n; i++)
        inst_free(c->inst[i]);
    free(c->inst);
    cfg_unref(c->cfg);
    free(c);
}

struct chain *chain_ref(struct chain *c)
{
    if (c)
        c->refs++;
    return c;
}

void chain_unref(struct chain *c)
{
    if (c && --c->refs == 0)
        chain_free(c);
}

size_t chain_size(const struct chain *c)
{
    return c ? c->n : 0;
}

void host_chain_handover(struct chain *old, struct chain *nw)
{
    if (!old || !nw)
        return;
    for (size_t i = 0; i < nw->n; i++) {
        struct sluice_instance *n = nw->inst[i];
        if (n->desc->size < offsetof(struct sluice_plugin, reload) + sizeof n->desc->reload ||
            !n->desc->reload)
            continue;
        for (size_t j = 0; j < old->n; j++) {
            struct sluice_instance *o = old->inst[j];
            if (strcmp(o->name, n->name) == 0 && o->desc == n->desc && o->initialised) {
                n->desc->reload(o->data, n->data);
                break;
            }
        }
    }
}

void host_set_current_chain(struct chain *c)
{
    struct chain *old = host_chain;
    host_chain = chain_ref(c);
    chain_unref(old);
}

struct chain *host_current_chain(void)
{
    return host_chain;
}

void host_shutdown(void)
{
    chain_unref(host_chain);
    host_chain = NULL;
}

/* ---- connections -------------------------------------------------------------- */

static void hc_timer_close_cb(uv_handle_t *h)
{
    free(h);
}

static void hc_free_conndata(struct host_conn *hc)
{
    pthread_mutex_lock(&hc->mu);
    for (size_t i = 0; i < CFG_MAX_PLUGINS; i++) {
        if (hc->conndata[i] && hc->connfree[i])
            hc->connfree[i](hc->conndata[i]);
        hc->conndata[i] = NULL;
        hc->connfree[i] = NULL;
    }
    pthread_mutex_unlock(&hc->mu);
}

static void hc_unref(struct host_conn *hc)
{
    if (--hc->refs > 0)
        return;
    hc_free_conndata(hc);
    tx_unref(hc->tx);
    chain_unref(hc->chain);
    free(hc->spare);
    pthread_mutex_destroy(&hc->mu);
    uv_close((uv_handle_t *)hc->timer, hc_timer_close_cb);
    plugdone_detach(hc->loop);
    free(hc);
}

struct host_conn *host_conn_new(uv_loop_t *loop, const struct sess_info *info)
{
    struct host_conn *hc = calloc(1, sizeof *hc);
    if (!hc)
        return NULL;
    hc->timer = malloc(sizeof *hc->timer);
    hc->tx = tx_new(info);
    if (!hc->timer || !hc->tx) {
        free(hc->timer);
        tx_unref(hc->tx);
        free(hc);
        return NULL;
    }
    hc->refs = 1;
    hc->loop = loop;
    hc->info = *info;
    hc->chain = chain_ref(host_chain);
    pthread_mutex_init(&hc->mu, NULL);
    uv_timer_init(loop, hc->timer);
    hc->timer->data = hc;
    plugdone_attach(loop);
    return hc;
}

void host_conn_info(struct host_conn *hc, const struct sess_info *info)
{
    hc->info = *info;
    hc->tx->info = *info;
}

bool host_conn_active(struct host_conn *hc)
{
    struct chain *c = hc->in_tx ? hc->chain : host_chain;
    return c && c->n > 0;
}

/* Notifications (reset/close) run on the loop, never block, no verdict. */
static void hc_notify(struct host_conn *hc, enum sluice_phase ph);

void host_conn_free(struct host_conn *hc)
{
    if (!hc)
        return;
    host_cancel(hc);
    if (hc->in_tx)
        host_tx_end(hc);
    hc_notify(hc, SLUICE_PHASE_CLOSE);
    hc->closed = true;
    uv_timer_stop(hc->timer);
    hc_unref(hc);
}

/* ---- transactions ------------------------------------------------------------ */

static void hc_new_tx(struct host_conn *hc)
{
    struct host_tx *cur = hc->tx;
    if (cur && cur->refs == 1 && cur->fresh) {
        cur->info = hc->info; /* unused since it was made: reuse it */
        return;
    }
    struct host_tx *tx = tx_new(&hc->info);
    if (tx) {
        tx_unref(hc->tx);
        hc->tx = tx;
    }
}

void host_tx_begin(struct host_conn *hc)
{
    if (hc->in_tx)
        return;
    if (hc->chain != host_chain) {
        /* A reload happened: new transactions use the new chain. Private
         * connection data belonged to the old instances. */
        hc_free_conndata(hc);
        chain_unref(hc->chain);
        hc->chain = chain_ref(host_chain);
    }
    hc_new_tx(hc);
    hc->tx->fresh = false;
    hc->in_tx = true;
}

void host_tx_sender(struct host_conn *hc, const char *addr, const char *params)
{
    struct host_tx *tx = hc->tx;
    free(tx->sender);
    free(tx->sender_params);
    free(tx->orig_sender);
    tx->sender = xstrdup(addr);
    tx->orig_sender = xstrdup(addr);
    tx->sender_params = xstrdup(params ? params : "");
    tx->sender_changed = false;
}

void host_tx_current_rcpt(struct host_conn *hc, const char *addr, const char *params)
{
    struct host_tx *tx = hc->tx;
    free(tx->cur_rcpt);
    free(tx->cur_rcpt_params);
    tx->cur_rcpt = xstrdup(addr);
    tx->cur_rcpt_params = xstrdup(params ? params : "");
    tx->cur_removed = false;
}

void host_tx_rcpt_accepted(struct host_conn *hc, const char *addr, const char *params)
{
    tx_add_rcpt(hc->tx, addr, params, false);
}

int host_tx_message(struct host_conn *hc, struct msgbuf *mb)
{
    struct host_tx *tx = hc->tx;
    if (tx->mb)
        msgbuf_free(tx->mb);
    tx->mb = mb;
    size_t len = 0;
    const char *data = msgbuf_data(mb, &len);
    if (tx->msg)
        msg_free(tx->msg);
    tx->msg = msg_parse(data, len);
    return tx->msg ? 0 : -ENOMEM;
}

struct msgbuf *host_tx_reclaim_msgbuf(struct host_conn *hc)
{
    struct host_tx *tx = hc->tx;
    if (!tx->mb || tx->refs != 1)
        return NULL; /* an abandoned hook may still read it */
    if (tx->msg) {
        msg_free(tx->msg);
        tx->msg = NULL;
    }
    struct msgbuf *mb = tx->mb;
    tx->mb = NULL;
    return mb;
}

void host_tx_end(struct host_conn *hc)
{
    if (!hc->in_tx)
        return;
    hc_notify(hc, SLUICE_PHASE_RESET);
    hc->in_tx = false;
    /* Free the tx (and the plugins' tx data) now unless an abandoned hook
     * still reads it; the session gets a fresh one either way. */
    hc_new_tx(hc);
}

int host_tx_segments(struct host_conn *hc, struct iovec *iov, int max)
{
    if (!hc->tx->msg)
        return -1;
    return msg_segments(hc->tx->msg, iov, max);
}

void host_tx_render(struct host_conn *hc, const char **data, size_t *len)
{
    if (!hc->tx->msg) {
        *data = "";
        *len = 0;
        return;
    }
    msg_render(hc->tx->msg, data, len);
}

const char *host_tx_sender_now(struct host_conn *hc, bool *changed, const char **params)
{
    *changed = hc->tx->sender_changed;
    if (params)
        *params = hc->tx->sender_params ? hc->tx->sender_params : "";
    return hc->tx->sender ? hc->tx->sender : "";
}

size_t host_tx_rcpt_view(struct host_conn *hc, struct host_rcpt_view *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < hc->tx->nrcpts && n < max; i++, n++) {
        out[n].addr = hc->tx->rcpts[i].addr;
        out[n].params = hc->tx->rcpts[i].params;
        out[n].added = hc->tx->rcpts[i].added;
        out[n].removed = hc->tx->rcpts[i].removed;
    }
    return hc->tx->nrcpts;
}

void host_tx_envelope_committed(struct host_conn *hc)
{
    struct host_tx *tx = hc->tx;
    tx->sender_changed = false;
    size_t j = 0;
    for (size_t i = 0; i < tx->nrcpts; i++) {
        if (tx->rcpts[i].removed) {
            free(tx->rcpts[i].addr);
            free(tx->rcpts[i].params);
            continue;
        }
        tx->rcpts[i].added = false;
        tx->rcpts[j++] = tx->rcpts[i];
    }
    tx->nrcpts = j;
}

const char *host_tx_current_rcpt_params(struct host_conn *hc)
{
    return hc->tx->cur_rcpt_params ? hc->tx->cur_rcpt_params : "";
}

const char *host_tx_current_rcpt_now(struct host_conn *hc, bool *removed)
{
    *removed = hc->tx->cur_removed;
    return hc->tx->cur_rcpt;
}

bool host_tx_discard(struct host_conn *hc)
{
    return hc->tx->discard;
}

bool host_tx_quarantine(struct host_conn *hc)
{
    return hc->tx->quarantine;
}

bool host_tx_quarantine_accepts(struct host_conn *hc)
{
    return hc->tx->quarantine_accepts;
}

/* "%.3f" / "%.2f" without the libc float formatter (hot path: once per
 * transaction). */
static void fmt_fixed(buf_t *b, double v, int digits)
{
    long long scale = digits == 0 ? 1 : digits == 2 ? 100 : 1000;
    long long m = (long long)(v * (double)scale + (v < 0 ? -0.5 : 0.5));
    char tmp[32];
    char *e = tmp + sizeof tmp, *p = e;
    bool neg = m < 0;
    unsigned long long u = neg ? (unsigned long long)-m : (unsigned long long)m;
    for (int i = 0; i < digits; i++, u /= 10)
        *--p = (char)('0' + u % 10);
    if (digits)
        *--p = '.';
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (neg)
        *--p = '-';
    buf_append(b, p, (size_t)(e - p));
}

static void fmt_milli(buf_t *b, double v)
{
    fmt_fixed(b, v, 3);
}

/* JSON string escaping for the decision record. */
static void json_str(buf_t *b, const char *s)
{
    buf_append(b, "\"", 1);
    while (s && *s) {
        const char *run = s;
        while (*s && *s != '"' && *s != '\\' && (unsigned char)*s >= 0x20 &&
               (unsigned char)*s < 0x7f)
            s++;
        buf_append(b, run, (size_t)(s - run));
        if (!*s)
            break;
        unsigned char c = (unsigned char)*s++;
        if (c == '"' || c == '\\')
            buf_printf(b, "\\%c", c);
        else
            buf_printf(b, "\\u%04x", c);
    }
    buf_append(b, "\"", 1);
}

void host_tx_summary(struct host_conn *hc, buf_t *out)
{
    struct host_tx *tx = hc->tx;
    struct chain *ch = hc->chain;
    if (!ch || ch->n == 0)
        return;
    if (tx->decided_by[0])
        buf_printf(out, " decision=%s:%s", tx->decided_by, tx->decision);
    if (tx->nsyms) {
        buf_puts(out, " score=");
        fmt_fixed(out, tx->score, 2);
        buf_puts(out, " symbols=");
        for (size_t i = 0; i < tx->nsyms; i++) {
            if (i)
                buf_append(out, ",", 1);
            buf_puts(out, tx->syms[i].name);
        }
    }
    buf_puts(out, " plugins=");
    for (size_t i = 0; i < ch->n; i++) {
        if (i)
            buf_append(out, ",", 1);
        buf_puts(out, ch->inst[i]->name);
        buf_append(out, ":", 1);
        fmt_fixed(out, tx->plugin_ms[i], 2);
        buf_append(out, "ms", 2);
    }
}

void host_tx_record(struct host_conn *hc, const char *verdict, const char *upstream_reply)
{
    struct host_tx *tx = hc->tx;
    struct chain *ch = hc->chain;
    buf_t b = BUF_INIT;
    buf_puts(&b, "{\"sid\":");
    json_str(&b, tx->info.sid);
    buf_puts(&b, ",\"time\":");
    fmt_fixed(&b, (double)time(NULL), 0);
    buf_puts(&b, ",\"client\":");
    json_str(&b, tx->info.client_addr);
    buf_puts(&b, ",\"from\":");
    json_str(&b, tx->orig_sender ? tx->orig_sender : "");
    buf_puts(&b, ",\"rcpts\":");
    fmt_fixed(&b, (double)tx->nrcpts, 0);
    buf_puts(&b, ",\"verdict\":");
    json_str(&b, verdict);
    buf_puts(&b, ",\"plugin\":");
    json_str(&b, tx->decided_by);
    buf_puts(&b, ",\"reason\":");
    json_str(&b, tx->reason[0] ? tx->reason : (upstream_reply ? upstream_reply : ""));
    buf_puts(&b, ",\"score\":");
    fmt_milli(&b, tx->score);
    buf_puts(&b, ",\"symbols\":[");
    for (size_t i = 0; i < tx->nsyms && i < 50; i++) {
        buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
        json_str(&b, tx->syms[i].name);
        buf_puts(&b, ",\"score\":");
        fmt_milli(&b, tx->syms[i].score);
        buf_puts(&b, ",\"plugin\":");
        json_str(&b, tx->syms[i].plugin);
        buf_puts(&b, "}");
    }
    buf_puts(&b, "],\"plugin_ms\":{");
    for (size_t i = 0; ch && i < ch->n; i++) {
        buf_puts(&b, i ? "," : "");
        json_str(&b, ch->inst[i]->name);
        buf_puts(&b, ":");
        fmt_milli(&b, tx->plugin_ms[i]);
    }
    buf_puts(&b, "}}");
    if (b.ptr)
        stats_decision_push_owned(b.ptr, b.len); /* takes the buffer */
}

/* ---- contexts ------------------------------------------------------------------ */

static struct sluice_ctx *ctx_new(struct host_conn *hc, struct sluice_instance *in,
                                  enum sluice_phase ph)
{
    /* One spare per connection: most hooks answer at once, so the same ctx
     * serves every call of a transaction without malloc/free. */
    struct sluice_ctx *c = hc->spare;
    if (c) {
        hc->spare = NULL;
        memset(c, 0, CTX_CLEAR_SIZE);
    } else {
        c = calloc(1, sizeof *c);
    }
    if (!c)
        return NULL;
    c->hc = hc;
    hc->refs++;
    hc->tx->fresh = false;
    c->tx = hc->tx;
    c->tx->refs++;
    c->inst = in;
    c->phase = ph;
    c->refs = 1;
    atomic_init(&c->abandoned, false);
    /* Hooks of one phase run back to back: the end of the previous one is
     * the start of this one (one clock reading per hook, not two). */
    c->started_ns = hc->clock_ns ? hc->clock_ns : now_ns();
    hc->clock_ns = 0;
    return c;
}

static void edits_free(struct edit *e)
{
    while (e) {
        struct edit *n = e->next;
        free(e->name);
        free(e->value);
        free(e->params);
        free(e->data);
        free(e);
        e = n;
    }
}

static void ctx_unref(struct sluice_ctx *c)
{
    if (--c->refs > 0)
        return;
    edits_free(c->edits);
    buf_free(&c->scratch);
    for (size_t i = 0; i < c->nstrs; i++)
        free(c->strs[i]);
    free(c->strs);
    struct host_conn *hc = c->hc;
    tx_unref(c->tx);
    if (!hc->spare && hc->refs > 1 && !atomic_load(&c->abandoned)) {
        hc->spare = c;
        hc_unref(hc);
        return;
    }
    hc_unref(hc);
    free(c);
}

static const char *ctx_keep(struct sluice_ctx *c, char *s)
{
    if (!s)
        return NULL;
    char **n = realloc(c->strs, (c->nstrs + 1) * sizeof *n);
    if (!n) {
        free(s);
        return NULL;
    }
    c->strs = n;
    c->strs[c->nstrs++] = s;
    return s;
}

static struct edit *ctx_edit(struct sluice_ctx *c, enum edit_kind k)
{
    struct edit *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->kind = k;
    if (c->edits_tail)
        c->edits_tail->next = e;
    else
        c->edits = e;
    c->edits_tail = e;
    return e;
}

/* ---- applying a hook's journal (loop thread) -------------------------------- */

static void sym_add(struct host_tx *tx, const char *name, double score, const char *desc,
                    const char *plugin)
{
    if (tx->nsyms == tx->capsyms) {
        size_t ncap = tx->capsyms ? tx->capsyms * 2 : 16;
        struct host_sym *n = realloc(tx->syms, ncap * sizeof *n);
        if (!n)
            return;
        tx->syms = n;
        tx->capsyms = ncap;
    }
    tx->syms[tx->nsyms].name = xstrdup(name);
    tx->syms[tx->nsyms].desc = xstrdup(desc ? desc : "");
    tx->syms[tx->nsyms].score = score;
    tx->syms[tx->nsyms].plugin = plugin;
    tx->nsyms++;
    tx->score += score;
}

static void ctx_apply(struct sluice_ctx *c)
{
    struct host_tx *tx = c->tx;
    bool msg_changed = false;
    for (struct edit *e = c->edits; e; e = e->next) {
        int rc = 0;
        long idx;
        switch (e->kind) {
        case E_HDR_ADD:
            rc = tx->msg ? msg_field_add(tx->msg, e->name, e->value) : -ENOENT;
            msg_changed = true;
            break;
        case E_HDR_INSERT: {
            size_t cnt = tx->msg ? msg_field_count(tx->msg) : 0;
            rc = tx->msg ? msg_field_insert(tx->msg, e->index > cnt ? cnt : e->index, e->name,
                                            e->value)
                         : -ENOENT;
            msg_changed = true;
            break;
        }
        case E_HDR_CHANGE:
        case E_HDR_DELETE:
            idx = tx->msg ? msg_field_find(tx->msg, e->name, e->index) : -1;
            if (idx < 0) {
                rc = -ENOENT;
                break;
            }
            if (e->kind == E_HDR_DELETE || !e->value)
                rc = msg_field_delete(tx->msg, (size_t)idx);
            else
                rc = msg_field_change(tx->msg, (size_t)idx, e->value);
            msg_changed = true;
            break;
        case E_BODY:
            rc = tx->msg ? msg_body_replace(tx->msg, e->data, e->len) : -ENOENT;
            msg_changed = true;
            break;
        case E_SENDER:
            free(tx->sender);
            free(tx->sender_params);
            tx->sender = xstrdup(e->value);
            tx->sender_params = xstrdup(e->params ? e->params : "");
            tx->sender_changed = true;
            break;
        case E_RCPT_ADD: {
            if (c->phase == SLUICE_PHASE_RCPT && tx->cur_removed) {
                /* remove(current) then add(new) in the RCPT phase is a
                 * rewrite: the new address is sent in its place, so the
                 * upstream still validates it. */
                free(tx->cur_rcpt);
                tx->cur_rcpt = xstrdup(e->value);
                /* No parameters given: the client's (NOTIFY, ORCPT) stay. */
                if (e->params && *e->params) {
                    free(tx->cur_rcpt_params);
                    tx->cur_rcpt_params = xstrdup(e->params);
                }
                tx->cur_removed = false;
                break;
            }
            bool dup = false;
            for (size_t i = 0; i < tx->nrcpts; i++)
                if (!tx->rcpts[i].removed && strcasecmp(tx->rcpts[i].addr, e->value) == 0)
                    dup = true;
            if (!dup)
                rc = tx_add_rcpt(tx, e->value, e->params, true);
            break;
        }
        case E_RCPT_REMOVE:
            rc = -ENOENT;
            for (size_t i = 0; i < tx->nrcpts; i++)
                if (!tx->rcpts[i].removed && strcasecmp(tx->rcpts[i].addr, e->value) == 0) {
                    tx->rcpts[i].removed = true;
                    rc = 0;
                }
            if (c->phase == SLUICE_PHASE_RCPT && tx->cur_rcpt &&
                strcasecmp(tx->cur_rcpt, e->value) == 0) {
                tx->cur_removed = true;
                rc = 0;
            }
            break;
        case E_SYMBOL:
            sym_add(tx, e->name, e->score, e->value, c->inst->name);
            break;
        }
        if (rc != 0)
            log_warn("sid=%s plugin=%s edit failed: %s", tx->info.sid, c->inst->name,
                     strerror(-rc));
    }
    if (msg_changed && tx->msg) {
        /* Render now, on the loop, so later hooks (maybe on pool threads)
         * only ever read the cache. */
        const char *d;
        size_t l;
        msg_render(tx->msg, &d, &l);
    }
}

/* ---- the runner -------------------------------------------------------------------- */

static const char *const verdict_names[] = {
    "continue", "accept", "reject", "tempfail", "discard", "quarantine", "disconnect",
};

static enum stats_pverdict to_pv(int v)
{
    return (v >= 0 && v <= SLUICE_DISCONNECT) ? (enum stats_pverdict)v : STATS_PV_CONTINUE;
}

static sluice_hook_fn hook_for(const struct sluice_plugin *d, enum sluice_phase ph)
{
    switch (ph) {
    case SLUICE_PHASE_CONNECT: return d->on_connect;
    case SLUICE_PHASE_HELO: return d->on_helo;
    case SLUICE_PHASE_MAIL: return d->on_mail;
    case SLUICE_PHASE_RCPT: return d->on_rcpt;
    case SLUICE_PHASE_DATA: return d->on_data;
    default: return NULL;
    }
}

static void run_next(struct host_conn *hc);

static void finish_phase(struct host_conn *hc, const struct host_result *r)
{
    hc->clock_ns = 0;
    hc->running = false;
    hc->cur = NULL;
    if (uv_is_active((uv_handle_t *)hc->timer))
        uv_timer_stop(hc->timer);
    host_done_fn cb = hc->done;
    hc->done = NULL;
    if (cb)
        cb(hc->done_ud, r);
}

static void default_reply(int verdict, enum sluice_phase ph, struct host_result *r)
{
    switch (verdict) {
    case SLUICE_REJECT:
        r->code = ph == SLUICE_PHASE_RCPT ? 550 : 554;
        snprintf(r->enh, sizeof r->enh, "5.7.1");
        snprintf(r->text, sizeof r->text, "Rejected by policy");
        break;
    case SLUICE_TEMPFAIL:
        r->code = 451;
        snprintf(r->enh, sizeof r->enh, "4.7.1");
        snprintf(r->text, sizeof r->text, "Temporarily rejected by policy, try again later");
        break;
    case SLUICE_DISCONNECT:
        r->code = 421;
        snprintf(r->enh, sizeof r->enh, "4.7.0");
        snprintf(r->text, sizeof r->text, "Closing connection");
        break;
    default:
        break;
    }
}

static void breaker_result(struct sluice_instance *in, bool failed)
{
    if (!in->settings.breaker_failures)
        return;
    uint64_t now = now_ns();
    if (!failed) {
        /* Only a successful trial closes the breaker. Other successes do not
         * wipe the failure count: a plugin failing in one phase only would
         * never trip it; counts expire with the window instead. */
        if (in->breaker == STATS_CB_HALF_OPEN) {
            log_info("plugin=%s circuit breaker closed (plugin answers again)", in->name);
            in->breaker = STATS_CB_CLOSED;
            stats_plugin_breaker(in->stats, STATS_CB_CLOSED);
            in->fails = 0;
        }
        return;
    }
    if (in->breaker == STATS_CB_HALF_OPEN ||
        (now - in->window_start_ns) > (uint64_t)in->settings.breaker_window_ms * 1000000u) {
        if (in->breaker != STATS_CB_HALF_OPEN) {
            in->window_start_ns = now;
            in->fails = 0;
        }
    }
    in->fails++;
    if (in->breaker == STATS_CB_HALF_OPEN || in->fails >= in->settings.breaker_failures) {
        in->breaker = STATS_CB_OPEN;
        in->open_until_ns = now + (uint64_t)in->settings.breaker_cooldown_ms * 1000000u;
        stats_plugin_breaker(in->stats, STATS_CB_OPEN);
        log_warn("plugin=%s circuit breaker OPEN after %u failure(s): its failure policy "
                 "applies without calling it for %u ms",
                 in->name, in->fails, in->settings.breaker_cooldown_ms);
    }
}

/* Breaker state before calling: true = skip the plugin (open). */
static bool breaker_blocks(struct sluice_instance *in)
{
    if (in->breaker != STATS_CB_OPEN)
        return false;
    if (now_ns() >= in->open_until_ns) {
        in->breaker = STATS_CB_HALF_OPEN;
        stats_plugin_breaker(in->stats, STATS_CB_HALF_OPEN);
        log_info("plugin=%s circuit breaker half-open: trying one call", in->name);
        return false;
    }
    return true;
}

/* A plugin failed (timeout, error, open breaker): apply its policy. Returns
 * true if the phase goes on with the next plugin. */
static bool apply_failure_policy(struct host_conn *hc, struct sluice_instance *in,
                                 const char *what, struct host_result *r)
{
    struct host_tx *tx = hc->tx;
    switch (in->settings.failure) {
    case CFG_FAIL_ACCEPT:
        log_warn("sid=%s plugin=%s %s: failure policy accept, skipping it", tx->info.sid,
                 in->name, what);
        return true;
    case CFG_FAIL_TAG:
        log_warn("sid=%s plugin=%s %s: failure policy tag, skipping it", tx->info.sid, in->name,
                 what);
        if (hc->phase == SLUICE_PHASE_DATA && tx->msg) {
            char val[300];
            snprintf(val, sizeof val, "%s (%s)", in->name, what);
            msg_field_add(tx->msg, "X-Sluice-Skipped", val);
            const char *d;
            size_t l;
            msg_render(tx->msg, &d, &l);
        } else {
            char sym[128];
            snprintf(sym, sizeof sym, "SKIPPED_%s", in->name);
            sym_add(tx, sym, 0, what, in->name);
        }
        return true;
    default:
        log_warn("sid=%s plugin=%s %s: failure policy tempfail", tx->info.sid, in->name, what);
        r->verdict = SLUICE_TEMPFAIL;
        r->code = 451;
        snprintf(r->enh, sizeof r->enh, "4.3.0");
        snprintf(r->text, sizeof r->text, "Filter %s unavailable, try again later", in->name);
        r->plugin = in->name;
        return false;
    }
}

/* A hook's answer is in (loop thread). */
static void ctx_done(struct sluice_ctx *c)
{
    struct host_conn *hc = c->hc;
    struct sluice_instance *in = c->inst;
    uint64_t now = now_ns();
    double secs = (double)(now - c->started_ns) / 1e9;
    hc->clock_ns = now;
    stats_plugin_latency(in->stats, (enum stats_phase)c->phase, secs);
    c->tx->plugin_ms[in->idx] += secs * 1000.0;
    int v = c->verdict;
    struct host_result r = {.verdict = SLUICE_CONTINUE};
    bool valid = v >= SLUICE_CONTINUE && v <= SLUICE_DISCONNECT;
    if (v == SLUICE_QUARANTINE && !(in->desc->capabilities & SLUICE_CAP_QUARANTINE))
        valid = false;
    if (!valid) {
        if (v != SLUICE_ERROR)
            log_error("sid=%s plugin=%s returned an invalid verdict %d", c->tx->info.sid,
                      in->name, v);
        stats_plugin_error(in->stats);
        breaker_result(in, true);
        hc->cur = NULL;
        bool go_on = apply_failure_policy(
            hc, in, v == SLUICE_ERROR ? "reported an error" : "invalid verdict", &r);
        ctx_unref(c);
        if (go_on)
            run_next(hc);
        else
            finish_phase(hc, &r);
        return;
    }
    breaker_result(in, false);
    stats_plugin_verdict(in->stats, to_pv(v));
    ctx_apply(c);
    hc->cur = NULL;
    if (v == SLUICE_CONTINUE) {
        ctx_unref(c);
        run_next(hc);
        return;
    }
    struct host_tx *tx = c->tx;
    r.verdict = (enum sluice_verdict)v;
    r.plugin = in->name;
    default_reply(v, c->phase, &r);
    if (c->code) {
        bool ok = (v == SLUICE_REJECT && c->code >= 500 && c->code < 600) ||
                  ((v == SLUICE_TEMPFAIL || v == SLUICE_DISCONNECT) && c->code >= 400 &&
                   c->code < 500);
        if (ok) {
            r.code = c->code;
            snprintf(r.enh, sizeof r.enh, "%s", c->enh);
            snprintf(r.text, sizeof r.text, "%s", c->text);
        } else {
            log_warn("sid=%s plugin=%s reply code %d does not match verdict %s; using default",
                     tx->info.sid, in->name, c->code, verdict_names[v]);
        }
    }
    snprintf(tx->decided_by, sizeof tx->decided_by, "%s", in->name);
    snprintf(tx->decision, sizeof tx->decision, "%s", verdict_names[v]);
    snprintf(tx->reason, sizeof tx->reason, "%.190s", r.code ? r.text : "");
    if (v == SLUICE_DISCARD) {
        tx->discard = true;
        log_warn("sid=%s plugin=%s DISCARD: the message will be accepted and dropped",
                 tx->info.sid, in->name);
    }
    if (v == SLUICE_QUARANTINE) {
        tx->quarantine = true;
        tx->quarantine_accepts = in->quarantine_accepts;
    }
    ctx_unref(c);
    if (v == SLUICE_DISCARD || v == SLUICE_QUARANTINE) {
        /* Decided for the transaction; the rest of this phase is skipped
         * like ACCEPT; the session applies it at end of data. */
        r.verdict = (v == SLUICE_DISCARD || v == SLUICE_QUARANTINE) && hc->phase != SLUICE_PHASE_DATA
                        ? SLUICE_ACCEPT
                        : r.verdict;
    }
    finish_phase(hc, &r);
}

static void timer_cb(uv_timer_t *t)
{
    struct host_conn *hc = t->data;
    struct sluice_ctx *c = hc->cur;
    if (!c)
        return;
    struct sluice_instance *in = c->inst;
    atomic_store(&c->abandoned, true);
    stats_plugin_timeout(in->stats);
    stats_timeout(STATS_TO_PLUGIN);
    c->tx->plugin_ms[in->idx] += (double)(now_ns() - c->started_ns) / 1e6;
    breaker_result(in, true);
    /* The abandoned hook keeps its tx; the session goes on with a clone. */
    struct host_tx *clone = tx_clone(hc->tx);
    if (clone) {
        /* tx data stays with the original; move the slots the session will
         * free at tx end only if no hook holds the original. */
        tx_unref(hc->tx);
        hc->tx = clone;
    }
    hc->cur = NULL;
    ctx_unref(c); /* the runner's reference; the outstanding one remains */
    char what[64];
    snprintf(what, sizeof what, "timeout after %u ms", in->settings.timeout_ms);
    struct host_result r = {.verdict = SLUICE_CONTINUE};
    if (apply_failure_policy(hc, in, what, &r))
        run_next(hc);
    else
        finish_phase(hc, &r);
}

static void work_cb(uv_work_t *w)
{
    struct sluice_ctx *c = w->data;
    sluice_hook_fn fn = hook_for(c->inst->desc, c->phase);
    c->verdict = fn(c);
}

static void after_work_cb(uv_work_t *w, int status)
{
    struct sluice_ctx *c = w->data;
    c->outstanding = false;
    if (atomic_load(&c->abandoned) || status == UV_ECANCELED) {
        ctx_unref(c);
        return;
    }
    if (c->verdict == SLUICE_ASYNC) {
        /* A blocking hook cannot also be asynchronous. */
        c->verdict = -1;
    }
    c->refs--; /* the work's reference; the runner's goes in ctx_done */
    uv_timer_stop(c->hc->timer);
    ctx_done(c);
}

static void run_next(struct host_conn *hc)
{
    struct chain *ch = hc->chain;
    while (ch && hc->next_idx < ch->n) {
        struct sluice_instance *in = ch->inst[hc->next_idx++];
        sluice_hook_fn fn = hook_for(in->desc, hc->phase);
        if (!fn)
            continue;
        if (breaker_blocks(in)) {
            struct host_result r = {.verdict = SLUICE_CONTINUE};
            if (apply_failure_policy(hc, in, "circuit breaker open", &r))
                continue;
            finish_phase(hc, &r);
            return;
        }
        struct sluice_ctx *c = ctx_new(hc, in, hc->phase);
        if (!c) {
            struct host_result r = {.verdict = SLUICE_TEMPFAIL, .code = 451};
            snprintf(r.enh, sizeof r.enh, "4.3.0");
            snprintf(r.text, sizeof r.text, "Local error in processing");
            finish_phase(hc, &r);
            return;
        }
        hc->cur = c;
        if (in->desc->blocking_phases & SLUICE_PHASE_BIT(hc->phase)) {
            uv_timer_start(hc->timer, timer_cb, in->settings.timeout_ms, 0);
            c->refs++;
            c->outstanding = true;
            c->work.data = c;
            if (uv_queue_work(hc->loop, &c->work, work_cb, after_work_cb) != 0) {
                c->refs--;
                c->outstanding = false;
                c->verdict = -1;
                uv_timer_stop(hc->timer);
                ctx_done(c);
            }
            return;
        }
        c->refs++; /* held for a possible ASYNC answer */
        c->outstanding = true;
        c->in_hook = true;
        int v = fn(c);
        c->in_hook = false;
        if (v == SLUICE_ASYNC) {
            if (c->completed) {
                /* complete() was called from inside the hook: done. */
                c->refs--;
                ctx_done(c);
            } else {
                /* A hook on the loop cannot be interrupted, so the clock
                 * only matters while we wait for its answer. */
                uv_timer_start(hc->timer, timer_cb, in->settings.timeout_ms, 0);
            }
            return;
        }
        c->outstanding = false;
        c->refs--;
        c->verdict = v;
        ctx_done(c);
        return;
    }
    struct host_result r = {.verdict = SLUICE_CONTINUE};
    finish_phase(hc, &r);
}

void host_run(struct host_conn *hc, enum sluice_phase ph, host_done_fn cb, void *ud)
{
    hc->clock_ns = 0;
    hc->phase = ph;
    hc->next_idx = 0;
    hc->done = cb;
    hc->done_ud = ud;
    hc->running = true;
    if (!hc->in_tx && ph != SLUICE_PHASE_CONNECT && ph != SLUICE_PHASE_HELO) {
        /* Transaction phases always run inside host_tx_begin/end. */
        host_tx_begin(hc);
    }
    run_next(hc);
}

void host_cancel(struct host_conn *hc)
{
    if (!hc->running)
        return;
    struct sluice_ctx *c = hc->cur;
    if (c) {
        atomic_store(&c->abandoned, true);
        hc->cur = NULL;
        ctx_unref(c);
    }
    uv_timer_stop(hc->timer);
    hc->running = false;
    hc->done = NULL;
}

static void hc_notify(struct host_conn *hc, enum sluice_phase ph)
{
    struct chain *ch = hc->chain;
    for (size_t i = 0; ch && i < ch->n; i++) {
        struct sluice_instance *in = ch->inst[i];
        sluice_notify_fn fn = ph == SLUICE_PHASE_RESET ? in->desc->on_reset : in->desc->on_close;
        if (!fn)
            continue;
        struct sluice_ctx *c = ctx_new(hc, in, ph);
        if (!c)
            continue;
        fn(c);
        stats_plugin_latency(in->stats, (enum stats_phase)ph,
                             (double)(now_ns() - c->started_ns) / 1e9);
        ctx_unref(c); /* notifications cannot edit: the journal is dropped */
    }
}

/* ---- the host API ---------------------------------------------------------------- */

static const char *api_instance_name(const sluice_instance *inst)
{
    return inst->name;
}

static const char *api_config_get(const sluice_instance *inst, const char *key)
{
    char section[300];
    snprintf(section, sizeof section, "plugin %s", inst->name);
    return cfg_get(inst->cfg, section, key, NULL);
}

static void api_config_error(sluice_instance *inst, const char *key, const char *fmt, ...)
{
    char section[300];
    snprintf(section, sizeof section, "plugin %s", inst->name);
    int line = inst->settings.line;
    if (key)
        cfg_get(inst->cfg, section, key, &line);
    if (!line)
        line = inst->settings.line;
    char msgtxt[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msgtxt, sizeof msgtxt, fmt, ap);
    va_end(ap);
    if (inst->errors) {
        if (key)
            inst_error(inst, line, "%s: %s", key, msgtxt);
        else
            inst_error(inst, line, "%s", msgtxt);
    } else {
        log_error("%s:%d: [plugin %s] %s%s%s", cfg_file(inst->cfg), line, inst->name,
                  key ? key : "", key ? ": " : "", msgtxt);
    }
}

static int api_checking(const sluice_instance *inst)
{
    return inst->checking;
}

static int to_log_level(int level)
{
    switch (level) {
    case SLUICE_LOG_DEBUG: return LOG_LVL_DEBUG;
    case SLUICE_LOG_WARN: return LOG_LVL_WARN;
    case SLUICE_LOG_ERROR: return LOG_LVL_ERROR;
    default: return LOG_LVL_INFO;
    }
}

static void api_log(const sluice_instance *inst, int level, const char *fmt, ...)
{
    enum log_level l = (enum log_level)to_log_level(level);
    if (!log_enabled(l))
        return;
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    log_msg(l, "plugin=%s %s", inst->name, text);
}

static sluice_counter *api_counter_new(sluice_instance *inst, const char *name, const char *help,
                                       const char *label_name, unsigned max_label_values)
{
    if (inst->checking)
        return NULL;
    char full[256];
    snprintf(full, sizeof full, "plugin_%s_%s", inst->name, name);
    return (sluice_counter *)stats_plugin_counter(full, help, label_name, max_label_values);
}

static void api_counter_add(sluice_counter *c, const char *label_value, uint64_t n)
{
    stats_counter_add((struct stats_counter *)c, label_value, n);
}

static sluice_instance *api_instance(sluice_ctx *ctx)
{
    return ctx->inst;
}

static void *api_instance_data(sluice_ctx *ctx)
{
    return ctx->inst->data;
}

static enum sluice_phase api_phase(sluice_ctx *ctx)
{
    return ctx->phase;
}

static void api_log_ctx(sluice_ctx *ctx, int level, const char *fmt, ...)
{
    enum log_level l = (enum log_level)to_log_level(level);
    if (!log_enabled(l))
        return;
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    log_msg(l, "sid=%s plugin=%s %s", ctx->tx->info.sid, ctx->inst->name, text);
}

static const char *api_session_id(sluice_ctx *ctx) { return ctx->tx->info.sid; }
static const char *api_client_addr(sluice_ctx *ctx) { return ctx->tx->info.client_addr; }
static int api_client_port(sluice_ctx *ctx) { return ctx->tx->info.client_port; }
static const char *api_client_name(sluice_ctx *ctx) { return ctx->tx->info.client_name; }
static const char *api_helo(sluice_ctx *ctx) { return ctx->tx->info.helo; }
static const char *api_tls_version(sluice_ctx *ctx) { return ctx->tx->info.tls_version; }
static const char *api_tls_cipher(sluice_ctx *ctx) { return ctx->tx->info.tls_cipher; }
static const char *api_auth_user(sluice_ctx *ctx) { return ctx->tx->info.auth_user; }

static const char *api_sender(sluice_ctx *ctx)
{
    return ctx->tx->sender ? ctx->tx->sender : "";
}

static const char *api_sender_params(sluice_ctx *ctx)
{
    return ctx->tx->sender_params ? ctx->tx->sender_params : "";
}

/* Recipients visible to plugins: the accepted ones not removed. */
static size_t api_rcpt_count(sluice_ctx *ctx)
{
    size_t n = 0;
    for (size_t i = 0; i < ctx->tx->nrcpts; i++)
        if (!ctx->tx->rcpts[i].removed)
            n++;
    return n;
}

static const struct host_rcpt *nth_rcpt(sluice_ctx *ctx, size_t want)
{
    size_t n = 0;
    for (size_t i = 0; i < ctx->tx->nrcpts; i++) {
        if (ctx->tx->rcpts[i].removed)
            continue;
        if (n++ == want)
            return &ctx->tx->rcpts[i];
    }
    return NULL;
}

static const char *api_rcpt(sluice_ctx *ctx, size_t i)
{
    const struct host_rcpt *r = nth_rcpt(ctx, i);
    return r ? r->addr : NULL;
}

static const char *api_rcpt_params(sluice_ctx *ctx, size_t i)
{
    const struct host_rcpt *r = nth_rcpt(ctx, i);
    return r ? r->params : NULL;
}

static const char *api_current_rcpt(sluice_ctx *ctx)
{
    return ctx->phase == SLUICE_PHASE_RCPT ? ctx->tx->cur_rcpt : NULL;
}

static const char *api_current_rcpt_params(sluice_ctx *ctx)
{
    if (ctx->phase != SLUICE_PHASE_RCPT)
        return NULL;
    return ctx->tx->cur_rcpt_params ? ctx->tx->cur_rcpt_params : "";
}

static int api_message(sluice_ctx *ctx, const char **data, size_t *len)
{
    if (!ctx->tx->msg)
        return -ENOENT;
    msg_render(ctx->tx->msg, data, len);
    return 0;
}

static size_t api_header_count(sluice_ctx *ctx)
{
    return ctx->tx->msg ? msg_field_count(ctx->tx->msg) : 0;
}

static int api_header_at(sluice_ctx *ctx, size_t i, struct sluice_header *out)
{
    if (!ctx->tx->msg || !out || out->size < sizeof *out)
        return -EINVAL;
    const struct msg_field *f = msg_field_at(ctx->tx->msg, i);
    if (!f)
        return -ENOENT;
    out->name = f->name;
    out->name_len = f->name_len;
    out->value = f->value;
    out->value_len = f->value_len;
    return 0;
}

static const char *api_header_get(sluice_ctx *ctx, const char *name, size_t nth)
{
    if (!ctx->tx->msg || !name)
        return NULL;
    long i = msg_field_find(ctx->tx->msg, name, nth);
    if (i < 0)
        return NULL;
    const struct msg_field *f = msg_field_at(ctx->tx->msg, (size_t)i);
    buf_t b = BUF_INIT;
    msg_unfold(f->value, f->value_len, &b);
    char *s = b.ptr ? b.ptr : strdup("");
    return ctx_keep(ctx, s);
}

static int api_body(sluice_ctx *ctx, const char **data, size_t *len)
{
    if (!ctx->tx->msg)
        return -ENOENT;
    msg_body(ctx->tx->msg, data, len);
    return 0;
}

static bool has_cap(sluice_ctx *ctx, uint32_t cap)
{
    if (ctx->inst->desc->capabilities & cap)
        return true;
    log_warn("sid=%s plugin=%s attempted an edit without the capability for it", ctx->tx->info.sid,
             ctx->inst->name);
    return false;
}

/* Validate a header name/value early, so the plugin gets the error. */
static int check_header(const char *name, const char *value)
{
    if (name) {
        size_t n = strlen(name);
        if (n == 0 || n > 76)
            return -EINVAL;
        for (const char *p = name; *p; p++)
            if ((unsigned char)*p <= 32 || (unsigned char)*p >= 127 || *p == ':')
                return -EINVAL;
    }
    if (value) {
        for (const char *p = value; *p; p++) {
            if (*p == '\r' && !(p[1] == '\n' && (p[2] == ' ' || p[2] == '\t')))
                return -EINVAL;
            if (*p == '\n' && !(p > value && p[-1] == '\r'))
                return -EINVAL;
        }
    }
    return 0;
}

static int journal_header(sluice_ctx *ctx, enum edit_kind k, size_t index, const char *name,
                          const char *value)
{
    if (ctx->phase != SLUICE_PHASE_DATA)
        return -EPERM;
    if (!has_cap(ctx, SLUICE_CAP_HEADERS))
        return -EPERM;
    int rc = check_header(name, value);
    if (rc)
        return rc;
    struct edit *e = ctx_edit(ctx, k);
    if (!e)
        return -ENOMEM;
    e->index = index;
    e->name = xstrdup(name);
    e->value = xstrdup(value);
    return 0;
}

static int api_header_add(sluice_ctx *ctx, const char *name, const char *value)
{
    if (!name || !value)
        return -EINVAL;
    return journal_header(ctx, E_HDR_ADD, 0, name, value);
}

static int api_header_insert(sluice_ctx *ctx, size_t index, const char *name, const char *value)
{
    if (!name || !value)
        return -EINVAL;
    return journal_header(ctx, E_HDR_INSERT, index, name, value);
}

static int api_header_change(sluice_ctx *ctx, const char *name, size_t nth, const char *value)
{
    if (!name)
        return -EINVAL;
    if (!ctx->tx->msg || msg_field_find(ctx->tx->msg, name, nth) < 0)
        return -ENOENT;
    return journal_header(ctx, value ? E_HDR_CHANGE : E_HDR_DELETE, nth, name, value);
}

static int api_header_delete(sluice_ctx *ctx, const char *name, size_t nth)
{
    return api_header_change(ctx, name, nth, NULL);
}

static int api_body_replace(sluice_ctx *ctx, const char *data, size_t len)
{
    if (ctx->phase != SLUICE_PHASE_DATA || !has_cap(ctx, SLUICE_CAP_BODY))
        return -EPERM;
    if (!data && len)
        return -EINVAL;
    if (memchr(data ? data : "", 0, len))
        return -EINVAL;
    struct edit *e = ctx_edit(ctx, E_BODY);
    if (!e)
        return -ENOMEM;
    e->data = malloc(len ? len : 1);
    if (!e->data)
        return -ENOMEM;
    if (len)
        memcpy(e->data, data, len);
    e->len = len;
    return 0;
}

static int journal_addr(sluice_ctx *ctx, enum edit_kind k, uint32_t cap, const char *addr,
                        const char *params)
{
    if (ctx->phase != SLUICE_PHASE_MAIL && ctx->phase != SLUICE_PHASE_RCPT &&
        ctx->phase != SLUICE_PHASE_DATA)
        return -EPERM;
    if (!has_cap(ctx, cap))
        return -EPERM;
    if (!addr)
        return -EINVAL;
    /* Never let a plugin produce a malformed command for the upstream. */
    if (!(k == E_SENDER && addr[0] == 0) && !cmd_mailbox_valid(addr, strlen(addr), true))
        return -EINVAL;
    if (params) {
        for (const char *p = params; *p; p++)
            if ((unsigned char)*p < 32 || (unsigned char)*p > 126)
                return -EINVAL;
    }
    struct edit *e = ctx_edit(ctx, k);
    if (!e)
        return -ENOMEM;
    e->value = xstrdup(addr);
    e->params = xstrdup(params ? params : "");
    return 0;
}

static int api_sender_change(sluice_ctx *ctx, const char *addr, const char *params)
{
    return journal_addr(ctx, E_SENDER, SLUICE_CAP_SENDER, addr, params);
}

static int api_rcpt_add(sluice_ctx *ctx, const char *addr, const char *params)
{
    return journal_addr(ctx, E_RCPT_ADD, SLUICE_CAP_RECIPIENTS, addr, params);
}

static int api_rcpt_remove(sluice_ctx *ctx, const char *addr)
{
    return journal_addr(ctx, E_RCPT_REMOVE, SLUICE_CAP_RECIPIENTS, addr, NULL);
}

static void api_symbol_add(sluice_ctx *ctx, const char *name, double score,
                           const char *description)
{
    if (!name)
        return;
    struct edit *e = ctx_edit(ctx, E_SYMBOL);
    if (!e)
        return;
    e->name = xstrdup(name);
    e->value = xstrdup(description ? description : "");
    e->score = score;
}

static double api_score(sluice_ctx *ctx)
{
    double s = ctx->tx->score;
    for (struct edit *e = ctx->edits; e; e = e->next)
        if (e->kind == E_SYMBOL)
            s += e->score;
    return s;
}

static int api_has_symbol(sluice_ctx *ctx, const char *name)
{
    for (size_t i = 0; i < ctx->tx->nsyms; i++)
        if (strcmp(ctx->tx->syms[i].name, name) == 0)
            return 1;
    for (struct edit *e = ctx->edits; e; e = e->next)
        if (e->kind == E_SYMBOL && strcmp(e->name, name) == 0)
            return 1;
    return 0;
}

static void api_set_reply(sluice_ctx *ctx, int code, const char *enh, const char *text)
{
    ctx->code = code;
    snprintf(ctx->enh, sizeof ctx->enh, "%s", enh ? enh : "");
    /* One line, printable: a plugin must not inject reply lines. */
    size_t j = 0;
    for (const char *p = text ? text : ""; *p && j < sizeof ctx->text - 1; p++)
        ctx->text[j++] = ((unsigned char)*p < 32 || (unsigned char)*p == 127) ? ' ' : *p;
    ctx->text[j] = 0;
    /* Enhanced code must be x.y.z with the reply's class. */
    int a, b, c;
    char tail;
    if (sscanf(ctx->enh, "%d.%d.%d%c", &a, &b, &c, &tail) != 3 || a != code / 100)
        snprintf(ctx->enh, sizeof ctx->enh, "%d.7.1", code / 100);
}

/* Private-data slots (per connection or per transaction): set from any
 * thread a hook runs on, so under the owner's mutex; a replaced value is
 * freed with its own free function. */
static void slot_set(pthread_mutex_t *mu, void **slot, void (**slot_free)(void *), void *data,
                     void (*free_fn)(void *))
{
    pthread_mutex_lock(mu);
    if (*slot && *slot_free && *slot != data)
        (*slot_free)(*slot);
    *slot = data;
    *slot_free = free_fn;
    pthread_mutex_unlock(mu);
}

static void *slot_get(pthread_mutex_t *mu, void *const *slot)
{
    pthread_mutex_lock(mu);
    void *d = *slot;
    pthread_mutex_unlock(mu);
    return d;
}

static void api_conn_data_set(sluice_ctx *ctx, void *data, void (*free_fn)(void *))
{
    size_t i = ctx->inst->idx;
    slot_set(&ctx->hc->mu, &ctx->hc->conndata[i], &ctx->hc->connfree[i], data, free_fn);
}

static void *api_conn_data_get(sluice_ctx *ctx)
{
    return slot_get(&ctx->hc->mu, &ctx->hc->conndata[ctx->inst->idx]);
}

static void api_tx_data_set(sluice_ctx *ctx, void *data, void (*free_fn)(void *))
{
    size_t i = ctx->inst->idx;
    slot_set(&ctx->tx->mu, &ctx->tx->txdata[i], &ctx->tx->txfree[i], data, free_fn);
}

static void *api_tx_data_get(sluice_ctx *ctx)
{
    return slot_get(&ctx->tx->mu, &ctx->tx->txdata[ctx->inst->idx]);
}

static void api_complete(sluice_ctx *ctx, int verdict)
{
    /* From a plugin thread: the loop calls us again with the same answer. */
    if (plugdone_post(ctx->hc->loop, ctx, verdict, api_complete))
        return;
    if (!ctx->outstanding || ctx->completed)
        return;
    ctx->completed = true;
    ctx->outstanding = false;
    ctx->verdict = verdict;
    if (atomic_load(&ctx->abandoned)) {
        ctx_unref(ctx);
        return;
    }
    if (ctx->in_hook)
        return; /* completed from inside the hook itself: run_next finishes it */
    ctx->refs--; /* the async reference; the runner's stays until done */
    uv_timer_stop(ctx->hc->timer);
    ctx_done(ctx);
}

static void *api_event_loop(sluice_ctx *ctx)
{
    return ctx->hc->loop;
}

static const struct sluice_host_api host_api = {
    .size = sizeof(struct sluice_host_api),
    .version = SLUICE_PLUGIN_ABI_VERSION,
    .instance_name = api_instance_name,
    .config_get = api_config_get,
    .config_error = api_config_error,
    .checking = api_checking,
    .log = api_log,
    .counter_new = api_counter_new,
    .counter_add = api_counter_add,
    .instance = api_instance,
    .instance_data = api_instance_data,
    .phase = api_phase,
    .log_ctx = api_log_ctx,
    .session_id = api_session_id,
    .client_addr = api_client_addr,
    .client_port = api_client_port,
    .client_name = api_client_name,
    .helo = api_helo,
    .tls_version = api_tls_version,
    .tls_cipher = api_tls_cipher,
    .auth_user = api_auth_user,
    .sender = api_sender,
    .sender_params = api_sender_params,
    .rcpt_count = api_rcpt_count,
    .rcpt = api_rcpt,
    .rcpt_params = api_rcpt_params,
    .current_rcpt = api_current_rcpt,
    .message = api_message,
    .header_count = api_header_count,
    .header_at = api_header_at,
    .header_get = api_header_get,
    .body = api_body,
    .header_add = api_header_add,
    .header_insert = api_header_insert,
    .header_change = api_header_change,
    .header_delete = api_header_delete,
    .body_replace = api_body_replace,
    .sender_change = api_sender_change,
    .rcpt_add = api_rcpt_add,
    .rcpt_remove = api_rcpt_remove,
    .symbol_add = api_symbol_add,
    .score = api_score,
    .has_symbol = api_has_symbol,
    .set_reply = api_set_reply,
    .conn_data_set = api_conn_data_set,
    .conn_data_get = api_conn_data_get,
    .tx_data_set = api_tx_data_set,
    .tx_data_get = api_tx_data_get,
    .complete = api_complete,
    .event_loop = api_event_loop,
    .current_rcpt_params = api_current_rcpt_params,
    .config_load = plugcfg_api_load,
    .header_fold = plughdr_fold,
};

const struct sluice_host_api *host_api_table(void)
{
    return &host_api;
}

const struct cfg *host_inst_cfg(const sluice_instance *inst)
{
    return inst->cfg;
}
