/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tx: the one SMTP transaction object (MAIL .. end of data).
 *
 * There is exactly one copy of a transaction: the session creates it at
 * MAIL and owns it; the plugin host reads and writes the same object
 * through the SDK while a phase runs (it takes a reference for the phase,
 * it never keeps a copy). It holds the envelope (the sender as the client
 * gave it and as plugins left it; each recipient with its state), the
 * message buffer and its parsed model, the decision record (symbols,
 * score, verdict) and the plugins' per-transaction private data.
 *
 * Recipients: a recipient is PENDING while its RCPT is with the upstream,
 * ACCEPTED once the upstream said 2xx (the client was told 250), REFUSED
 * otherwise; ADDED when a plugin added it and the upstream has not seen it
 * yet. `removed` marks one a plugin removed. What the end of data must do
 * to the upstream's envelope is decided by one pure function,
 * tx_envelope_plan().
 *
 * Threads and lifetime: refcounted, counts changed on the loop thread only.
 * A blocking hook on a pool thread reads the tx while the session waits;
 * if the hook times out it keeps its reference to this tx and the session
 * goes on with tx_clone() (so nothing it reads ever changes under it).
 * The private-data slots are guarded by `mu` (plugins may set them from
 * pool threads). Allocation failure is fatal (xalloc).
 */
#ifndef SLUICE_TX_H
#define SLUICE_TX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "client_info.h"
#include "msg.h"
#include "msgbuf.h"

enum tx_rcpt_state {
    TX_R_PENDING = 0, /* RCPT sent, upstream reply outstanding */
    TX_R_ACCEPTED,    /* upstream 2xx: the client was told 250 */
    TX_R_REFUSED,     /* upstream (or sluice) refused it: not in the envelope */
    TX_R_ADDED,       /* added by a plugin: the upstream has not seen it */
};

struct tx_rcpt {
    char *addr;   /* owned; mailbox without <> */
    char *params; /* owned; " NOTIFY=... ORCPT=..." to forward, or "" */
    enum tx_rcpt_state st;
    bool removed; /* removed by a plugin: must not be delivered */
};

struct tx_sym {
    char *name; /* owned */
    char *desc; /* owned */
    double score;
    const char *plugin; /* instance name (the pinned chain outlives the tx) */
};

struct tx {
    pthread_mutex_t mu; /* guards data[] (first: kept when the tx is reused) */
    int refs;
    struct client_info client; /* snapshot taken at MAIL (and HELO changes) */
    uint64_t started_ns;

    /* sender */
    char *sender;        /* owned; current (after plugin edits) */
    char *sender_params; /* owned; ESMTP params as plugins see/set them */
    char *orig_sender;   /* owned; as the client gave it */
    bool sender_changed; /* changed by a plugin, upstream not told yet */
    char *mail_params;   /* owned; what is forwarded upstream (" SIZE=.. BODY=..") */
    int body;            /* enum cmd_body */
    bool smtputf8;
    uint64_t declared_size;
    bool mail_ok; /* the upstream accepted MAIL */

    /* recipients */
    struct tx_rcpt *rcpts;
    size_t nrcpts, caprcpts;
    unsigned rcpts_sent; /* RCPT commands sent (max_recipients) */
    struct tx_rcpt cur;  /* RCPT phase: the recipient being decided */
    bool cur_set;

    /* message */
    struct msgbuf *mb; /* owned */
    struct msg *msg;   /* owned; model over mb's bytes (or src's) */
    /* referenced: a clone's original, whose message bytes (immutable once
     * received or rendered) the clone's model reads instead of a copy */
    struct tx *src;
    /* owned: the edited message as plugins read it, in memory up to the
     * message's memory limit, else in the spool (tx_render_edits) */
    struct msgbuf *rendered;
    unsigned long rendered_gen; /* msg_generation() it was made at */
    uint64_t bytes_in;

    /* decision record */
    struct tx_sym *syms;
    size_t nsyms, capsyms;
    double score;
    bool discard, quarantine, quarantine_accepts;
    char decided_by[96];
    char decision[24];
    char reason[200];
    double plugin_ms[CFG_MAX_PLUGINS];

    /* plugins' private data, one slot per chain position (under mu) */
    void *data[CFG_MAX_PLUGINS];
    void (*data_free[CFG_MAX_PLUGINS])(void *);
};

struct tx *tx_new(const struct client_info *client, uint64_t now_ns);
/* The next transaction of the same session in the same memory: `tx` must
 * have no other reference (else a new one is made and tx released).
 * Saves an allocation per message. */
struct tx *tx_renew(struct tx *tx, const struct client_info *client, uint64_t now_ns);
struct tx *tx_ref(struct tx *tx);
void tx_unref(struct tx *tx);
/* A copy to go on with after a hook was abandoned (see above). Plugin
 * private data stays with the original. */
struct tx *tx_clone(const struct tx *old);

/* The client's MAIL: sender and its raw ESMTP params (for plugins). */
void tx_set_sender(struct tx *tx, const char *addr, const char *client_params);
/* A plugin changes the sender (upstream told at the next plan). */
void tx_change_sender(struct tx *tx, const char *addr, const char *params);
/* The upstream got MAIL with these forwarded params. */
void tx_set_mail_params(struct tx *tx, const char *params);

/* RCPT phase: the recipient being decided. */
void tx_set_current(struct tx *tx, const char *addr, const char *params);
/* The current recipient goes to the upstream: returns its index (PENDING). */
size_t tx_rcpt_sent(struct tx *tx);
void tx_rcpt_answered(struct tx *tx, size_t idx, bool accepted);
/* A plugin adds / removes a recipient. Remove matches case-insensitively
 * (RFC 5321 domains); in the RCPT phase it removes the current recipient
 * only (never an earlier one). 0, or -ENOENT if nothing matched. */
/* In the RCPT phase, remove(current) then add(new) is a rewrite of the
 * current recipient (the upstream still validates the new address). */
void tx_rcpt_add(struct tx *tx, const char *addr, const char *params, bool rcpt_phase);
int tx_rcpt_remove(struct tx *tx, const char *addr, bool rcpt_phase);
/* Recipients the client was told 250 for (log line, DATA check). */
size_t tx_accepted(const struct tx *tx);
/* What plugins see: accepted or added, not removed. */
size_t tx_visible_count(const struct tx *tx);
const struct tx_rcpt *tx_visible_at(const struct tx *tx, size_t i);

/* End of data: what the upstream's envelope needs. Pure. */
enum tx_plan {
    TX_PLAN_AS_IS = 0, /* nothing changed: send the message */
    TX_PLAN_ADD_RCPTS, /* only new recipients: RCPT each, then send */
    TX_PLAN_REPLAY,    /* sender changed or a recipient removed: RSET + MAIL + RCPTs */
    TX_PLAN_NONE_LEFT, /* every recipient removed: nobody to deliver to */
};
enum tx_plan tx_envelope_plan(const struct tx *tx);
/* The upstream has the envelope as it stands now: drop removed and
 * refused recipients, added ones become accepted, sender unchanged. */
void tx_envelope_committed(struct tx *tx);

/* The complete message (the tx takes mb). `model`: parse it for plugins
 * (headers, edits); without it the bytes are forwarded as received. */
void tx_set_message(struct tx *tx, struct msgbuf *mb, bool model);
/* Give the message buffer back for reuse when nobody else reads it. */
struct msgbuf *tx_take_msgbuf(struct tx *tx);
/* The message as it stands (edited), contiguous; "" if none. Any thread
 * while the tx is stable; it reads the copy tx_render_edits() made. */
void tx_render(struct tx *tx, const char **data, size_t *len);
/* After edits (loop thread): write the edited message out as the
 * upstream will get it (headers from memory, body from the original) into
 * a msgbuf like the message's own, so an edit never puts a whole message
 * in memory. 0, or negative errno (tx_render then renders in memory). */
int tx_render_edits(struct tx *tx);

void tx_sym_add(struct tx *tx, const char *name, double score, const char *desc,
                const char *plugin);

/* Plugin private data (any thread). */
void tx_data_set(struct tx *tx, size_t slot, void *data, void (*free_fn)(void *));
void *tx_data_get(struct tx *tx, size_t slot);

#endif
