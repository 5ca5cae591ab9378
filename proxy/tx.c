/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tx: the transaction object; see tx.h. */
#include "tx.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xalloc.h"

static char *tx__dup(const char *s)
{
    return xstrdup(s ? s : "");
}

static void tx__replace(char **dst, const char *s)
{
    free(*dst);
    *dst = tx__dup(s);
}

struct tx *tx_new(const struct client_info *client, uint64_t now_ns)
{
    struct tx *tx = xcalloc(1, sizeof *tx);
    tx->refs = 1;
    tx->client = *client;
    tx->started_ns = now_ns;
    pthread_mutex_init(&tx->mu, NULL);
    return tx;
}

struct tx *tx_ref(struct tx *tx)
{
    tx->refs++;
    return tx;
}

static void tx__rcpt_free(struct tx_rcpt *r)
{
    free(r->addr);
    free(r->params);
    r->addr = r->params = NULL;
}

/* Everything the tx owns, released; the struct itself stays. */
static void tx__release(struct tx *tx)
{
    for (size_t i = 0; i < CFG_MAX_PLUGINS; i++)
        if (tx->data[i] && tx->data_free[i])
            tx->data_free[i](tx->data[i]);
    free(tx->sender);
    free(tx->sender_params);
    free(tx->orig_sender);
    free(tx->mail_params);
    for (size_t i = 0; i < tx->nrcpts; i++)
        tx__rcpt_free(&tx->rcpts[i]);
    free(tx->rcpts);
    tx__rcpt_free(&tx->cur);
    for (size_t i = 0; i < tx->nsyms; i++) {
        free(tx->syms[i].name);
        free(tx->syms[i].desc);
    }
    free(tx->syms);
    if (tx->msg)
        msg_free(tx->msg);
    if (tx->mb)
        msgbuf_free(tx->mb);
    tx_unref(tx->src);
    if (tx->rendered)
        msgbuf_free(tx->rendered);
}

void tx_unref(struct tx *tx)
{
    if (!tx || --tx->refs > 0)
        return;
    tx__release(tx);
    pthread_mutex_destroy(&tx->mu);
    free(tx);
}

struct tx *tx_renew(struct tx *tx, const struct client_info *client, uint64_t now_ns)
{
    if (!tx || tx->refs != 1) {
        tx_unref(tx);
        return tx_new(client, now_ns);
    }
    tx__release(tx);
    /* The mutex is the first member and stays as it is. */
    memset((char *)tx + offsetof(struct tx, refs), 0, sizeof *tx - offsetof(struct tx, refs));
    tx->refs = 1;
    tx->client = *client;
    tx->started_ns = now_ns;
    return tx;
}

static struct tx_rcpt *tx__push(struct tx *tx, const char *addr, const char *params,
                                enum tx_rcpt_state st)
{
    tx->rcpts = xgrow(tx->rcpts, &tx->caprcpts, tx->nrcpts + 1, sizeof *tx->rcpts, 8);
    struct tx_rcpt *r = &tx->rcpts[tx->nrcpts++];
    r->addr = tx__dup(addr);
    r->params = tx__dup(params);
    r->st = st;
    r->removed = false;
    return r;
}

struct tx *tx_clone(const struct tx *old)
{
    struct tx *tx = tx_new(&old->client, old->started_ns);
    tx->sender = xstrdup(old->sender);
    tx->sender_params = xstrdup(old->sender_params);
    tx->orig_sender = xstrdup(old->orig_sender);
    tx->sender_changed = old->sender_changed;
    tx->mail_params = xstrdup(old->mail_params);
    tx->body = old->body;
    tx->smtputf8 = old->smtputf8;
    tx->declared_size = old->declared_size;
    tx->mail_ok = old->mail_ok;
    for (size_t i = 0; i < old->nrcpts; i++)
        tx__push(tx, old->rcpts[i].addr, old->rcpts[i].params, old->rcpts[i].st)->removed =
            old->rcpts[i].removed;
    tx->rcpts_sent = old->rcpts_sent;
    if (old->cur_set) {
        tx->cur.addr = tx__dup(old->cur.addr);
        tx->cur.params = tx__dup(old->cur.params);
        tx->cur.removed = old->cur.removed;
        tx->cur_set = true;
    }
    if (old->msg || old->mb) {
        const char *data;
        size_t len;
        tx_render((struct tx *)old, &data, &len);
        /* No copy: those bytes never change again (the abandoned hook's
         * edits are dropped with its journal), so the clone keeps the
         * original alive and reads them. */
        tx->src = tx_ref((struct tx *)old);
        tx->msg = msg_parse(data, len);
    }
    tx->bytes_in = old->bytes_in;
    for (size_t i = 0; i < old->nsyms; i++)
        tx_sym_add(tx, old->syms[i].name, old->syms[i].score, old->syms[i].desc,
                   old->syms[i].plugin);
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

void tx_set_sender(struct tx *tx, const char *addr, const char *client_params)
{
    tx__replace(&tx->sender, addr);
    tx__replace(&tx->orig_sender, addr);
    tx__replace(&tx->sender_params, client_params);
    tx->sender_changed = false;
}

void tx_change_sender(struct tx *tx, const char *addr, const char *params)
{
    tx__replace(&tx->sender, addr);
    tx__replace(&tx->sender_params, params);
    tx->sender_changed = true;
}

void tx_set_mail_params(struct tx *tx, const char *params)
{
    tx__replace(&tx->mail_params, params);
}

void tx_set_current(struct tx *tx, const char *addr, const char *params)
{
    tx__replace(&tx->cur.addr, addr);
    tx__replace(&tx->cur.params, params);
    tx->cur.removed = false;
    tx->cur_set = true;
}

size_t tx_rcpt_sent(struct tx *tx)
{
    tx__push(tx, tx->cur.addr, tx->cur.params, TX_R_PENDING);
    tx->rcpts_sent++;
    return tx->nrcpts - 1;
}

void tx_rcpt_answered(struct tx *tx, size_t idx, bool accepted)
{
    if (idx < tx->nrcpts && tx->rcpts[idx].st == TX_R_PENDING)
        tx->rcpts[idx].st = accepted ? TX_R_ACCEPTED : TX_R_REFUSED;
}

static bool tx__in_envelope(const struct tx_rcpt *r)
{
    return (r->st == TX_R_ACCEPTED || r->st == TX_R_ADDED) && !r->removed;
}

void tx_rcpt_add(struct tx *tx, const char *addr, const char *params, bool rcpt_phase)
{
    if (rcpt_phase && tx->cur_set && tx->cur.removed) {
        tx__replace(&tx->cur.addr, addr);
        /* No parameters given: the client's (NOTIFY, ORCPT) stay. */
        if (params && *params)
            tx__replace(&tx->cur.params, params);
        tx->cur.removed = false;
        return;
    }
    for (size_t i = 0; i < tx->nrcpts; i++)
        if (tx__in_envelope(&tx->rcpts[i]) && strcasecmp(tx->rcpts[i].addr, addr) == 0)
            return; /* already there */
    tx__push(tx, addr, params, TX_R_ADDED);
}

int tx_rcpt_remove(struct tx *tx, const char *addr, bool rcpt_phase)
{
    if (rcpt_phase) {
        /* The RCPT phase decides the current recipient only: an earlier
         * accepted one that differs only in case is another recipient. */
        if (tx->cur_set && !tx->cur.removed && strcasecmp(tx->cur.addr, addr) == 0) {
            tx->cur.removed = true;
            return 0;
        }
        return -ENOENT;
    }
    int rc = -ENOENT;
    for (size_t i = 0; i < tx->nrcpts; i++)
        if (tx__in_envelope(&tx->rcpts[i]) && strcasecmp(tx->rcpts[i].addr, addr) == 0) {
            tx->rcpts[i].removed = true;
            rc = 0;
        }
    return rc;
}

size_t tx_accepted(const struct tx *tx)
{
    size_t n = 0;
    for (size_t i = 0; i < tx->nrcpts; i++)
        n += tx->rcpts[i].st == TX_R_ACCEPTED;
    return n;
}

size_t tx_visible_count(const struct tx *tx)
{
    size_t n = 0;
    for (size_t i = 0; i < tx->nrcpts; i++)
        n += tx__in_envelope(&tx->rcpts[i]);
    return n;
}

const struct tx_rcpt *tx_visible_at(const struct tx *tx, size_t want)
{
    size_t n = 0;
    for (size_t i = 0; i < tx->nrcpts; i++) {
        if (!tx__in_envelope(&tx->rcpts[i]))
            continue;
        if (n++ == want)
            return &tx->rcpts[i];
    }
    return NULL;
}

enum tx_plan tx_envelope_plan(const struct tx *tx)
{
    bool removed = false, added = false;
    size_t left = 0;
    for (size_t i = 0; i < tx->nrcpts; i++) {
        const struct tx_rcpt *r = &tx->rcpts[i];
        if (r->st == TX_R_ACCEPTED && r->removed)
            removed = true; /* the upstream has it: only a new envelope drops it */
        if (r->st == TX_R_ADDED && !r->removed)
            added = true;
        left += tx__in_envelope(r);
    }
    if (left == 0)
        return TX_PLAN_NONE_LEFT;
    if (tx->sender_changed || removed)
        return TX_PLAN_REPLAY;
    return added ? TX_PLAN_ADD_RCPTS : TX_PLAN_AS_IS;
}

void tx_envelope_committed(struct tx *tx)
{
    tx->sender_changed = false;
    size_t j = 0;
    for (size_t i = 0; i < tx->nrcpts; i++) {
        struct tx_rcpt *r = &tx->rcpts[i];
        if (!tx__in_envelope(r)) {
            tx__rcpt_free(r);
            continue;
        }
        r->st = TX_R_ACCEPTED;
        tx->rcpts[j++] = *r;
    }
    tx->nrcpts = j;
}

static void tx__drop_rendered(struct tx *tx)
{
    if (tx->rendered)
        msgbuf_free(tx->rendered);
    tx->rendered = NULL;
    tx->rendered_gen = 0;
}

void tx_set_message(struct tx *tx, struct msgbuf *mb, bool model)
{
    tx__drop_rendered(tx);
    if (tx->msg)
        msg_free(tx->msg);
    tx->msg = NULL;
    if (tx->mb && tx->mb != mb)
        msgbuf_free(tx->mb);
    tx->mb = mb;
    if (model) {
        size_t len = 0;
        const char *data = msgbuf_data(mb, &len);
        tx->msg = msg_parse(data, len);
    }
}

struct msgbuf *tx_take_msgbuf(struct tx *tx)
{
    if (!tx->mb || tx->refs != 1)
        return NULL; /* an abandoned hook may still read it */
    if (tx->msg) {
        msg_free(tx->msg);
        tx->msg = NULL;
    }
    tx__drop_rendered(tx);
    struct msgbuf *mb = tx->mb;
    tx->mb = NULL;
    return mb;
}

int tx_render_edits(struct tx *tx)
{
    if (!tx->msg || !msg_edited(tx->msg))
        return 0;
    unsigned long gen = msg_generation(tx->msg);
    if (tx->rendered && tx->rendered_gen == gen)
        return 0;
    const struct tx *t = tx;
    while (!t->mb && t->src)
        t = t->src;
    const struct msgbuf *like = t->mb;
    if (!like)
        return -ENOENT;
    struct msgbuf *out = msgbuf_new_like(like);
    struct iovec iov[64];
    int n = msg_segments(tx->msg, iov, (int)(sizeof iov / sizeof iov[0]));
    int rc = n < 0 ? -EINVAL : 0;
    for (int i = 0; rc == 0 && i < n; i++)
        rc = msgbuf_append(out, iov[i].iov_base, iov[i].iov_len);
    if (rc == 0)
        rc = msgbuf_finish(out);
    if (rc != 0) {
        msgbuf_free(out);
        return rc;
    }
    if (tx->rendered)
        msgbuf_free(tx->rendered);
    tx->rendered = out;
    tx->rendered_gen = gen;
    return 0;
}

void tx_render(struct tx *tx, const char **data, size_t *len)
{
    if (tx->msg && msg_edited(tx->msg) && tx->rendered &&
        tx->rendered_gen == msg_generation(tx->msg)) {
        *data = msgbuf_data(tx->rendered, len);
    } else if (tx->msg) {
        msg_render(tx->msg, data, len);
    } else if (tx->mb) {
        *data = msgbuf_data(tx->mb, len); /* no model: the bytes as received */
    } else {
        *data = "";
        *len = 0;
    }
}

void tx_sym_add(struct tx *tx, const char *name, double score, const char *desc, const char *plugin)
{
    tx->syms = xgrow(tx->syms, &tx->capsyms, tx->nsyms + 1, sizeof *tx->syms, 16);
    struct tx_sym *s = &tx->syms[tx->nsyms++];
    s->name = tx__dup(name);
    s->desc = tx__dup(desc);
    s->score = score;
    s->plugin = plugin;
    tx->score += score;
}

void tx_data_set(struct tx *tx, size_t slot, void *data, void (*free_fn)(void *))
{
    pthread_mutex_lock(&tx->mu);
    if (tx->data[slot] && tx->data[slot] != data && tx->data_free[slot])
        tx->data_free[slot](tx->data[slot]);
    tx->data[slot] = data;
    tx->data_free[slot] = free_fn;
    pthread_mutex_unlock(&tx->mu);
}

void *tx_data_get(struct tx *tx, size_t slot)
{
    pthread_mutex_lock(&tx->mu);
    void *d = tx->data[slot];
    pthread_mutex_unlock(&tx->mu);
    return d;
}
