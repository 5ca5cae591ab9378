/* SPDX-License-Identifier: GPL-2.0-or-later */
/* chain: loading plugin instances; see chain.h. */
#include "chain.h"

#include <assert.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api.h"
#include "log.h"
#include "xalloc.h"

static struct chain *chain__current;

static void chain__free(struct chain *c);

static bool chain__file_exists(const char *p)
{
    return access(p, R_OK) == 0;
}

/* libuv's pool size, fixed for the life of the process at its first use
 * (a reload cannot change it). */
static unsigned chain__pool = 4;

void chain_pool_size(unsigned n)
{
    chain__pool = n ? n : 1;
}

/* An instance may hold every pool thread but one unless told otherwise, so
 * that one plugin stuck in its hooks cannot stop the others. */
static unsigned chain__thread_limit(unsigned configured)
{
    if (configured)
        return configured;
    return chain__pool > 1 ? chain__pool - 1 : 1;
}

/* Where is bundled plugin `name`? --plugin-dir / [server] plugin_dir, then
 * the build tree next to the binary, then the install directory. */
static char *chain__resolve_plugin(const struct cfg *cfg, const char *name)
{
    char buf[PATH_MAX];
    if (strchr(name, '/'))
        return xstrdup(name);
    if (cfg->plugin_dir) {
        snprintf(buf, sizeof buf, "%s/%s.so", cfg->plugin_dir, name);
        return xstrdup(buf);
    }
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, sizeof buf, "%s/../plugins/%s.so", exe, name);
            if (chain__file_exists(buf))
                return xstrdup(buf);
            snprintf(buf, sizeof buf, "%s/plugins/%s.so", exe, name);
            if (chain__file_exists(buf))
                return xstrdup(buf);
        }
    }
    snprintf(buf, sizeof buf, "%s/%s.so", SLUICE_PLUGIN_INSTALL_DIR, name);
    return xstrdup(buf);
}

const char *chain_cfg_file(const struct cfg *cfg)
{
    return cfg->path ? cfg->path : "(command line)";
}

void chain_inst_error(struct sluice_instance *in, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_printf(in->errors, "%s:%d: [plugin %s] ", chain_cfg_file(in->cfg), line, in->name);
    buf_vprintf(in->errors, fmt, ap);
    buf_puts(in->errors, "\n");
    va_end(ap);
    in->nerrors++;
}

/* Validate a descriptor before calling anything in it. */
static const char *chain__desc_problem(const struct sluice_plugin *d)
{
    static char why[160];
    if (d->abi_version != SLUICE_PLUGIN_ABI_VERSION) {
        snprintf(why, sizeof why, "plugin ABI version %u, this sluice supports %u", d->abi_version,
                 SLUICE_PLUGIN_ABI_VERSION);
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

static struct sluice_instance *chain__inst_load(struct chain *ch, const struct cfg_plugin *cp,
                                                size_t idx, bool checking, buf_t *errors)
{
    struct sluice_instance *in = xcalloc(1, sizeof *in);
    in->chain = ch;
    in->idx = idx;
    in->name = xstrdup(cp->name);
    in->settings = *cp;
    in->cfg = cfg_ref(ch->cfg);
    in->checking = checking;
    in->errors = errors;
    in->breaker = STATS_CB_CLOSED;
    in->quarantine_accepts = true;
    in->gate = xcalloc(1, sizeof *in->gate);
    in->gate->refs = 1;
    in->gate->limit = chain__thread_limit(cp->max_threads);
    if (cp->max_threads >= chain__pool && !checking)
        log_warn("plugin=%s max_threads=%u is not below the thread pool's %u threads: a stuck "
                 "hook of this plugin can hold every thread",
                 cp->name, cp->max_threads, chain__pool);
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
            chain_inst_error(in, qline, "quarantine_reply: expected accept or reject, got '%s'", q);
    }
    in->path = chain__resolve_plugin(ch->cfg, cp->path ? cp->path : cp->name);
    in->dl = dlopen(in->path, RTLD_NOW | RTLD_LOCAL);
    if (!in->dl) {
        chain_inst_error(in, cp->line, "cannot load %s: %s", in->path, dlerror());
        return in;
    }
    in->desc = dlsym(in->dl, SLUICE_PLUGIN_SYMBOL);
    if (!in->desc) {
        chain_inst_error(in, cp->line, "%s is not a sluice plugin (no '%s' symbol)", in->path,
                         SLUICE_PLUGIN_SYMBOL);
        return in;
    }
    const char *why = chain__desc_problem(in->desc);
    if (why) {
        chain_inst_error(in, cp->line, "%s refused: %s", in->path, why);
        in->desc = NULL;
        return in;
    }
    if ((in->desc->blocking_phases &
         (SLUICE_PHASE_BIT(SLUICE_PHASE_RESET) | SLUICE_PHASE_BIT(SLUICE_PHASE_CLOSE))) != 0) {
        chain_inst_error(in, cp->line, "%s refused: reset/close notifications cannot be blocking",
                         in->path);
        in->desc = NULL;
        return in;
    }
    int before = in->nerrors;
    int rc = in->desc->init(api_table(), in, &in->data);
    if (rc != 0 && in->nerrors == before)
        chain_inst_error(in, cp->line, "plugin %s failed to initialise", in->desc->name);
    if (rc == 0)
        in->initialised = true;
    in->stats = checking ? NULL : stats_plugin_get(in->name);
    return in;
}

static void chain__gate_unref(struct chain_gate *g)
{
    if (g && --g->refs == 0) {
        assert(g->busy == 0 && !g->wait_first);
        free(g);
    }
}

static void chain__inst_free(struct sluice_instance *in)
{
    if (!in)
        return;
    chain__gate_unref(in->gate);
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
    struct chain *ch = xcalloc(1, sizeof *ch);
    ch->refs = 1;
    ch->cfg = cfg_ref(cfg);
    ch->inst = xcalloc(cfg->nplugins ? cfg->nplugins : 1, sizeof *ch->inst);
    int nerr = 0;
    for (size_t i = 0; i < cfg->nplugins; i++) {
        struct sluice_instance *in = chain__inst_load(ch, &cfg->plugins[i], i, checking, errors);
        ch->inst[ch->n++] = in;
        nerr += in->nerrors;
        in->errors = NULL;
    }
    if (nerr) {
        chain__free(ch);
        return NULL;
    }
    /* [chain] plugins are the first instances; the last view is theirs. */
    size_t nbase = cfg->nchain_plugins;
    ch->nviews = cfg->nlisteners + 1;
    ch->views = xcalloc(ch->nviews, sizeof *ch->views);
    for (size_t v = 0; v < ch->nviews; v++) {
        struct chain_view *cv = &ch->views[v];
        const struct cfg_listener *l = v < cfg->nlisteners ? &cfg->listeners[v] : NULL;
        size_t n = l ? l->nchain : nbase;
        cv->inst = xcalloc(n ? n : 1, sizeof *cv->inst);
        if (l)
            snprintf(cv->listener, sizeof cv->listener, "%s", l->name);
        for (size_t i = 0; i < n; i++) {
            size_t idx = l ? l->chain[i] : i;
            if (idx < ch->n)
                cv->inst[cv->n++] = ch->inst[idx];
        }
    }
    for (size_t i = 0; i < ch->n; i++)
        log_info("chain: %zu. %s (%s %s) from %s", i + 1, ch->inst[i]->name,
                 ch->inst[i]->desc->name,
                 ch->inst[i]->desc->version ? ch->inst[i]->desc->version : "", ch->inst[i]->path);
    return ch;
}

static void chain__free(struct chain *c)
{
    for (size_t i = 0; i < c->nviews; i++)
        free(c->views[i].inst);
    free(c->views);
    for (size_t i = 0; i < c->n; i++)
        chain__inst_free(c->inst[i]);
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
        chain__free(c);
}

static void chain__release_cb(struct defer_ev *ev)
{
    struct chain *c = (struct chain *)((char *)ev - offsetof(struct chain, release_ev));
    chain_unref(c);
}

void chain_unref_later(struct chain *c)
{
    if (!c)
        return;
    if (c->refs > 1 || defer_queued(&c->release_ev)) {
        c->refs--;
        return;
    }
    defer_post(&c->release_ev, chain__release_cb); /* keeps the last reference */
}

size_t chain_size(const struct chain *c)
{
    return c ? c->n : 0;
}

const struct chain_view *chain_view(const struct chain *c, const char *listener)
{
    for (size_t i = 0; i + 1 < c->nviews; i++)
        if (strcmp(c->views[i].listener, listener) == 0)
            return &c->views[i];
    return &c->views[c->nviews - 1];
}

void chain_handover(struct chain *old, struct chain *nw)
{
    if (!old || !nw)
        return;
    for (size_t i = 0; i < nw->n; i++) {
        struct sluice_instance *n = nw->inst[i];
        for (size_t j = 0; j < old->n; j++) {
            struct sluice_instance *o = old->inst[j];
            if (strcmp(o->name, n->name) == 0) {
                /* Threads the old instance's hooks still hold count
                 * against the new one; the new configuration's limit. */
                unsigned limit = n->gate->limit;
                chain__gate_unref(n->gate);
                n->gate = o->gate;
                n->gate->refs++;
                n->gate->limit = limit;
                break;
            }
        }
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

void chain_set_current(struct chain *c)
{
    struct chain *old = chain__current;
    chain__current = chain_ref(c);
    chain_unref(old);
}

struct chain *chain_current(void)
{
    return chain__current;
}

void chain_shutdown(void)
{
    chain_unref(chain__current);
    chain__current = NULL;
}
