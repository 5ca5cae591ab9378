/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ctx: one call of one plugin hook (struct sluice_ctx, opaque to plugins)
 * and its edit journal.
 *
 * A hook never changes the transaction directly: its edits (headers,
 * body, envelope, symbols) go into the ctx's journal, and ctx_apply()
 * plays the journal onto the transaction on the loop thread when the hook
 * has answered. A hook that timed out is abandoned: its journal is
 * dropped, so a late hook can never change a transaction that moved on.
 *
 * Ownership: the runner (host.c) creates a ctx per call and holds one
 * reference; pool work or an outstanding asynchronous answer holds
 * another. A ctx references its connection (host_conn) and its tx.
 * Threads: a ctx is created, applied and freed on the loop thread; the
 * hook may fill the journal from a pool thread while the loop does not
 * touch the ctx. `abandoned` is the one field both sides read.
 */
#ifndef SLUICE_CTX_H
#define SLUICE_CTX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <sluice/plugin.h>

#include "buf.h"
#include "chain.h"
#include "tx.h"

struct host_conn;

enum ctx_edit_kind {
    CTX_E_HDR_ADD,
    CTX_E_HDR_INSERT,
    CTX_E_HDR_CHANGE,
    CTX_E_HDR_DELETE,
    CTX_E_BODY,
    CTX_E_SENDER,
    CTX_E_RCPT_ADD,
    CTX_E_RCPT_REMOVE,
    CTX_E_SYMBOL,
};

struct ctx_edit {
    struct ctx_edit *next;
    enum ctx_edit_kind kind;
    size_t index;
    char *name;   /* owned */
    char *value;  /* owned; header value / address / symbol description */
    char *params; /* owned */
    char *data;   /* owned; body */
    size_t len;
    double score;
};

struct sluice_ctx {
    struct host_conn *hc; /* referenced */
    struct tx *tx;        /* referenced; never NULL */
    struct sluice_instance *inst; /* its chain referenced: an abandoned hook
                                     still runs the instance's code */
    enum sluice_phase phase;
    int refs;
    atomic_bool abandoned;
    bool outstanding; /* pool work or async answer pending */
    bool completed;
    bool in_hook; /* complete() called from inside the hook */
    bool waiting; /* queued for one of its instance's pool threads */
    struct sluice_ctx *next_wait;
    int verdict;
    int code; /* 0: no reply set (enh/text unset) */
    struct ctx_edit *edits, *edits_tail;
    buf_t scratch; /* header_get results */
    char **strs;   /* other host-owned strings for this call */
    size_t nstrs;
    uint64_t started_ns;
    /* Members below are not cleared for a new call (only read when set). */
    struct sluice_ctx *next_done; /* host's cross-thread completion list */
    char enh[16];
    char text[SLUICE_REPLY_TEXT_MAX + 1]; /* lines separated by \n */
    uv_work_t work;
};

#define CTX_CLEAR_SIZE offsetof(struct sluice_ctx, next_done)

/* Prepare `c` (fresh or recycled memory) for one call. */
void ctx_init(struct sluice_ctx *c, struct host_conn *hc, struct tx *tx, struct sluice_instance *in,
              enum sluice_phase ph, uint64_t now_ns);
/* Release the call's resources (journal, strings, references to tx);
 * the memory itself is the caller's (host_ctx_release). */
void ctx_fini(struct sluice_ctx *c);
/* Keep a host-allocated string alive for the rest of the call. */
const char *ctx_keep(struct sluice_ctx *c, char *s);
/* Append an edit of kind k to the journal. */
struct ctx_edit *ctx_edit_new(struct sluice_ctx *c, enum ctx_edit_kind k);
/* Play the journal onto c->tx (loop thread). */
void ctx_apply(struct sluice_ctx *c);

#endif
