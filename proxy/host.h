/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * host: the plugin host. Loads the chain of plugin instances named by the
 * configuration (dlopen, descriptor and ABI checks, init), runs one SMTP
 * phase through the chain for a session (on the loop, on the thread pool
 * for blocking hooks, or asynchronously), with per-instance timeouts,
 * failure policies and circuit breakers, and implements the host API table
 * that plugins call (sdk/include/sluice/plugin.h).
 *
 * Lifetimes:
 *  - struct chain: refcounted; the server holds the current one, every
 *    transaction pins the chain it started on (SIGHUP loads a new chain
 *    beside the old one, which is freed when its last transaction ends).
 *  - struct host_conn: one per client session, owned by the session.
 *  - struct host_tx (private): what plugins can read in a transaction
 *    (session facts, envelope, message); refcounted, so a hook that timed
 *    out on a pool thread can still finish reading safely while the
 *    session moves on.
 */
#ifndef SLUICE_HOST_H
#define SLUICE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include <uv.h>

#include <sluice/plugin.h>

#include "buf.h"
#include "cfg.h"
#include "msgbuf.h"
#include "session.h"

struct chain;
struct host_conn;

/* Load and initialise every instance of cfg's chain. On failure NULL and
 * one "FILE:LINE: message" line per problem in `errors`. */
struct chain *chain_load(struct cfg *cfg, bool checking, buf_t *errors);
struct chain *chain_ref(struct chain *c);
void chain_unref(struct chain *c);
size_t chain_size(const struct chain *c);

/* SIGHUP: let each instance of the new chain take over state from the
 * running instance of the same name (the plugin's reload hook). */
void host_chain_handover(struct chain *old, struct chain *nw);
/* The chain new transactions use (owned by the server). */
void host_set_current_chain(struct chain *c);
struct chain *host_current_chain(void);
/* Tear-down at exit: drop the current chain. */
void host_shutdown(void);

/* Outcome of one phase. */
struct host_result {
    enum sluice_verdict verdict; /* CONTINUE, ACCEPT, REJECT, TEMPFAIL, DISCARD,
                                    QUARANTINE or DISCONNECT */
    int code;                    /* reply to give for REJECT/TEMPFAIL/DISCONNECT */
    char enh[16];
    char text[400];
    const char *plugin;          /* instance that decided, or NULL */
};

typedef void (*host_done_fn)(void *ud, const struct host_result *r);

struct host_conn *host_conn_new(uv_loop_t *loop, const struct sess_info *info);
/* Session facts changed (HELO, TLS). */
void host_conn_info(struct host_conn *hc, const struct sess_info *info);
/* Runs the CLOSE notifications and frees everything (the connection's
 * private plugin data included). */
void host_conn_free(struct host_conn *hc);
/* Does the chain this connection would use now have any instance? (The
 * session skips all plugin work when it is empty.) */
bool host_conn_active(struct host_conn *hc);

/* Transaction bookkeeping, mirrored into what plugins see. */
void host_tx_begin(struct host_conn *hc); /* pins the current chain */
void host_tx_sender(struct host_conn *hc, const char *addr, const char *params);
void host_tx_current_rcpt(struct host_conn *hc, const char *addr, const char *params);
void host_tx_rcpt_accepted(struct host_conn *hc, const char *addr, const char *params);
/* Hand over the complete message; the host owns the msgbuf from now on. */
int host_tx_message(struct host_conn *hc, struct msgbuf *mb);
/* Give the message buffer back for the next transaction (NULL when a
 * hook that timed out may still read it). */
struct msgbuf *host_tx_reclaim_msgbuf(struct host_conn *hc);
/* Runs the RESET notifications; frees the transaction's plugin data. */
void host_tx_end(struct host_conn *hc);

/* Run one phase through the chain. `cb` is called exactly once, possibly
 * before host_run returns. Must not be called while a phase is running. */
void host_run(struct host_conn *hc, enum sluice_phase ph, host_done_fn cb, void *ud);
/* Abandon a running phase (the session is going away): cb is not called. */
void host_cancel(struct host_conn *hc);

/* After the DATA phase: the message to forward (edited), as iovecs valid
 * until host_tx_end. Returns the count, or -1. */
int host_tx_segments(struct host_conn *hc, struct iovec *iov, int max);
/* The whole current message, contiguous (for quarantine). */
void host_tx_render(struct host_conn *hc, const char **data, size_t *len);

/* Envelope after plugin edits. */
struct host_rcpt_view {
    const char *addr;
    const char *params;
    bool added;   /* by a plugin: the upstream has not seen it */
    bool removed; /* by a plugin: must not be delivered */
};
const char *host_tx_sender_now(struct host_conn *hc, bool *changed, const char **params);
size_t host_tx_rcpt_view(struct host_conn *hc, struct host_rcpt_view *out, size_t max);
/* The upstream now has the envelope as it stands (after a replay, or the
 * MAIL command built from the changed sender): clear the change marks and
 * drop removed recipients. */
void host_tx_envelope_committed(struct host_conn *hc);
/* In the RCPT phase: was the current recipient removed / replaced? */
const char *host_tx_current_rcpt_now(struct host_conn *hc, bool *removed);
/* ... and its ESMTP parameters (" NOTIFY=... ORCPT=..." or ""). */
const char *host_tx_current_rcpt_params(struct host_conn *hc);

/* Decision record: " score=.. symbols=.. plugins=.." for the log line, and
 * the JSON object for the stats endpoint (pushed by the host itself). */
void host_tx_summary(struct host_conn *hc, buf_t *out);
void host_tx_record(struct host_conn *hc, const char *verdict, const char *upstream_reply);
bool host_tx_discard(struct host_conn *hc);    /* a DISCARD verdict was given */
bool host_tx_quarantine(struct host_conn *hc); /* a QUARANTINE verdict was given */
/* Reply after quarantining: true = accept (250), false = reject (554). */
bool host_tx_quarantine_accepts(struct host_conn *hc);

#endif
