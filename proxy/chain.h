/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * chain: the configured chain of plugin instances. Loads each instance
 * (dlopen, descriptor and ABI checks, init with the host API table),
 * reports configuration errors as "FILE:LINE: [plugin NAME] message",
 * hands state over on SIGHUP (the plugins' reload hook) and keeps the
 * chain new transactions use.
 *
 * Lifetimes: a chain is refcounted. The server holds the current one
 * (chain_set_current); every connection and transaction pins the chain it
 * started on, so a reload loads a new chain beside the old one, which is
 * freed with its last user. Instances belong to their chain. A plugin's
 * .so is never unloaded.
 *
 * Threads: loop thread only (the breaker fields are written by the runner
 * on the loop thread).
 */
#ifndef SLUICE_CHAIN_H
#define SLUICE_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/plugin.h>

#include "buf.h"
#include "cfg.h"
#include "defer.h"
#include "stats.h"

/* The pool threads an instance's blocking hooks hold, abandoned ones
 * included (a hook that ran past its timeout still holds its thread), and
 * the calls waiting for one. Shared by the instances of one name across
 * reloads, since the old instance's stuck hooks still hold threads.
 * Lifetime: chain.c (refs); counters and the wait list: host.c alone.
 * Loop thread only. */
struct chain_gate {
    int refs;
    unsigned limit; /* > 0 */
    unsigned busy;  /* hooks queued to or running on the pool */
    struct sluice_ctx *wait_first, *wait_last;
};

struct sluice_instance {
    struct chain *chain; /* not referenced (the chain owns us) */
    size_t idx;
    char *name;
    char *path;                 /* resolved .so path */
    struct cfg_plugin settings; /* copy; name/path point into cfg */
    struct cfg *cfg;            /* referenced */
    void *dl;
    const struct sluice_plugin *desc;
    void *data; /* plugin's instance data */
    bool initialised;
    bool checking;
    buf_t *errors; /* during init only */
    int nerrors;
    bool quarantine_accepts;
    struct stats_plugin *stats;
    struct chain_gate *gate; /* referenced */
    /* circuit breaker (loop thread only) */
    unsigned fails;
    uint64_t window_start_ns;
    uint64_t open_until_ns;
    enum stats_breaker breaker;
};

/* The instances one listener runs, in its order (a listener's chain is a
 * selection of the chain's instances). */
struct chain_view {
    char listener[CFG_LISTENER_NAME_MAX + 1];
    struct sluice_instance **inst; /* owned array; the instances are the chain's */
    size_t n;
};

struct chain {
    int refs;
    struct defer_ev release_ev; /* chain_unref_later */
    struct cfg *cfg;
    struct sluice_instance **inst; /* every instance any listener names */
    size_t n;
    struct chain_view *views; /* one per listener of cfg, then [chain]'s own */
    size_t nviews;
};

/* The size of libuv's thread pool (set once, before the first chain). */
void chain_pool_size(unsigned n);
/* Load and initialise every instance of cfg's chain. On failure NULL and
 * one "FILE:LINE: message" line per problem in `errors`. */
struct chain *chain_load(struct cfg *cfg, bool checking, buf_t *errors);
struct chain *chain_ref(struct chain *c);
void chain_unref(struct chain *c);
/* The same, but a last reference is dropped from the loop, never inside
 * the caller's stack: a hook's call ends inside the plugin's own
 * complete(), and the plugin must not be shut down under itself. */
void chain_unref_later(struct chain *c);
size_t chain_size(const struct chain *c);
/* The instances listener `name` runs. A listener the chain's configuration
 * does not know (renamed in a reload: listeners change on restart) runs
 * [chain] plugins. Never NULL for a non-NULL chain. */
const struct chain_view *chain_view(const struct chain *c, const char *listener);
/* SIGHUP: let each instance of the new chain take over state from the
 * running instance of the same name (the plugin's reload hook, and the
 * host's thread accounting). */
void chain_handover(struct chain *old, struct chain *nw);
/* The chain new transactions use (owned here, referenced by users). */
void chain_set_current(struct chain *c);
struct chain *chain_current(void);
/* At exit: drop the current chain. */
void chain_shutdown(void);
/* The instance's configuration file name, for FILE:LINE errors. */
const char *chain_cfg_file(const struct cfg *cfg);
/* Report a configuration error of `in` at `line` (during init only). */
void chain_inst_error(struct sluice_instance *in, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
