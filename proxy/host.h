/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * host: the plugin runner. Runs one SMTP phase of one connection through
 * the chain (hooks on the loop, on the thread pool for blocking hooks, or
 * answering later through `complete`), with per-instance timeouts, failure
 * policies and circuit breakers, and keeps each connection's plugin state
 * (the pinned chain, the plugins' per-connection private data).
 *
 * The runner keeps no copy of the transaction: host_run() is given the
 * session's struct tx and holds a reference to it only while the phase
 * runs. If a blocking hook times out it keeps reading its tx, so the phase
 * goes on with a clone, which the result hands back to the session.
 *
 * Every answer is delivered from the event loop (defer), never from inside
 * host_run() or the call that completed a hook: the session may free
 * itself in the callback.
 *
 * Ownership: struct host_conn is owned by its session (host_conn_free);
 * contexts of abandoned hooks keep it alive by reference until they end.
 * Threads: loop thread only, except what the API table says.
 */
#ifndef SLUICE_HOST_H
#define SLUICE_HOST_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include <sluice/plugin.h>

#include "buf.h"
#include "chain.h"
#include "client_info.h"
#include "log.h"
#include "tx.h"

struct host_conn;
struct sluice_ctx;

/* Outcome of one phase. */
struct host_result {
    enum sluice_verdict verdict; /* CONTINUE, ACCEPT, REJECT, TEMPFAIL or DISCONNECT
                                    (DISCARD/QUARANTINE are marked on the tx) */
    int code;                    /* reply to give for REJECT/TEMPFAIL/DISCONNECT */
    char enh[16];
    char text[SLUICE_REPLY_TEXT_MAX + 1]; /* lines separated by \n */
    const char *plugin; /* instance that decided, or NULL */
    struct tx *tx;      /* the tx to go on with (a reference the callee
                           takes over); NULL for phases run without one */
};

typedef void (*host_done_fn)(void *ud, struct host_result *r);

struct host_conn *host_conn_new(uv_loop_t *loop, const struct client_info *info);
/* Client facts changed (HELO, TLS): later phases see the new ones. */
void host_conn_info(struct host_conn *hc, const struct client_info *info);
/* Runs the CLOSE notifications and releases the connection. */
void host_conn_free(struct host_conn *hc);
/* Does the chain a new phase would use have any instance? (The session
 * skips all plugin work when it is empty.) */
bool host_conn_active(struct host_conn *hc);
uv_loop_t *host_conn_loop(struct host_conn *hc);
const struct log_conn *host_conn_log(const struct host_conn *hc);
/* Per-connection private data of the instance at `slot` of the chain `ch`
 * (a stale instance's call, from before a reload, is refused: its slot
 * now belongs to another plugin; set frees what it was given). */
void host_conn_data_set(struct host_conn *hc, const struct chain *ch, size_t slot, void *data,
                        void (*free_fn)(void *));
void *host_conn_data_get(struct host_conn *hc, const struct chain *ch, size_t slot);

/* A transaction starts (pins the current chain) / ends (runs the RESET
 * notifications with it). */
void host_tx_begin(struct host_conn *hc);
void host_tx_end(struct host_conn *hc, struct tx *tx);

/* Run phase `ph` through the chain for `tx` (NULL for CONNECT and HELO).
 * `cb` is called exactly once, from the loop. A phase must not be started
 * while one runs (assertion). */
void host_run(struct host_conn *hc, struct tx *tx, enum sluice_phase ph, host_done_fn cb, void *ud);
/* Abandon a running phase (the session is going away): cb is not called. */
void host_cancel(struct host_conn *hc);

/* A hook's asynchronous answer (the API's `complete`). */
void host_complete(struct sluice_ctx *ctx, int verdict);

/* The decision record: " decision=.. score=.. symbols=.. plugins=.." for
 * the transaction log line, and the JSON object for the stats endpoint. */
void host_summary(struct host_conn *hc, const struct tx *tx, buf_t *out);
void host_record(struct host_conn *hc, const struct tx *tx, const char *verdict,
                 const char *upstream_reply);

#endif
