/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ctx: hook calls and their edit journal; see ctx.h. */
#include "ctx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "log.h"
#include "xalloc.h"

void ctx_init(struct sluice_ctx *c, struct host_conn *hc, struct tx *tx, struct sluice_instance *in,
              enum sluice_phase ph, uint64_t now_ns)
{
    memset(c, 0, CTX_CLEAR_SIZE);
    c->hc = hc;
    c->tx = tx_ref(tx);
    c->inst = in;
    chain_ref(in->chain);
    c->phase = ph;
    c->refs = 1;
    atomic_init(&c->abandoned, false);
    c->started_ns = now_ns;
}

static void ctx__edits_free(struct ctx_edit *e)
{
    while (e) {
        struct ctx_edit *n = e->next;
        free(e->name);
        free(e->value);
        free(e->params);
        free(e->data);
        free(e);
        e = n;
    }
}

void ctx_fini(struct sluice_ctx *c)
{
    ctx__edits_free(c->edits);
    c->edits = c->edits_tail = NULL;
    buf_free(&c->scratch);
    for (size_t i = 0; i < c->nstrs; i++)
        free(c->strs[i]);
    free(c->strs);
    c->strs = NULL;
    c->nstrs = 0;
    tx_unref(c->tx);
    c->tx = NULL;
    if (c->inst) {
        /* May shut a reloaded-away instance down, now that its hook is
         * over. */
        chain_unref_later(c->inst->chain);
        c->inst = NULL;
    }
}

const char *ctx_keep(struct sluice_ctx *c, char *s)
{
    if (!s)
        return NULL;
    c->strs = xrealloc(c->strs, (c->nstrs + 1) * sizeof *c->strs);
    c->strs[c->nstrs++] = s;
    return s;
}

struct ctx_edit *ctx_edit_new(struct sluice_ctx *c, enum ctx_edit_kind k)
{
    struct ctx_edit *e = xcalloc(1, sizeof *e);
    e->kind = k;
    if (c->edits_tail)
        c->edits_tail->next = e;
    else
        c->edits = e;
    c->edits_tail = e;
    return e;
}

/* Header and body edits; true if the message changed. */
static int ctx__apply_msg(struct msg *m, const struct ctx_edit *e)
{
    if (!m)
        return -ENOENT;
    long idx;
    switch (e->kind) {
    case CTX_E_HDR_ADD:
        return msg_field_add(m, e->name, e->value);
    case CTX_E_HDR_INSERT: {
        size_t cnt = msg_field_count(m);
        return msg_field_insert(m, e->index > cnt ? cnt : e->index, e->name, e->value);
    }
    case CTX_E_HDR_CHANGE:
    case CTX_E_HDR_DELETE:
        idx = msg_field_find(m, e->name, e->index);
        if (idx < 0)
            return -ENOENT;
        if (e->kind == CTX_E_HDR_DELETE || !e->value)
            return msg_field_delete(m, (size_t)idx);
        return msg_field_change(m, (size_t)idx, e->value);
    case CTX_E_BODY:
        return msg_body_replace(m, e->data, e->len);
    default:
        return 0;
    }
}

void ctx_apply(struct sluice_ctx *c)
{
    struct tx *tx = c->tx;
    bool rcpt_phase = c->phase == SLUICE_PHASE_RCPT;
    for (struct ctx_edit *e = c->edits; e; e = e->next) {
        int rc = 0;
        switch (e->kind) {
        case CTX_E_SENDER:
            tx_change_sender(tx, e->value, e->params);
            break;
        case CTX_E_RCPT_ADD:
            tx_rcpt_add(tx, e->value, e->params, rcpt_phase);
            break;
        case CTX_E_RCPT_REMOVE:
            rc = tx_rcpt_remove(tx, e->value, rcpt_phase);
            break;
        case CTX_E_SYMBOL:
            tx_sym_add(tx, e->name, e->score, e->value, c->inst->name);
            break;
        default:
            rc = ctx__apply_msg(tx->msg, e);
            break;
        }
        if (rc != 0)
            log_c_warn(host_conn_log(c->hc), "plugin=%s edit failed: %s", c->inst->name,
                       strerror(-rc));
    }
    /* An edited message is written out before the next hook that may
     * read it runs (host.c), not here: several editing plugins in a row
     * cost one copy, and none after the last hook (the upstream gets the
     * pieces, msg_segments). */
}
