/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * host: the plugin runner; see host.h.
 *
 * Threads: everything here runs on the loop thread except the plugin
 * hooks declared blocking, which run on the libuv pool. While such a hook
 * runs the session waits, so the tx it reads is stable; the hook's edits
 * go into its ctx's journal and are applied on the loop thread when it
 * returns. If it times out, the phase switches to a clone of the tx and
 * the abandoned hook keeps the old one alive by reference until it
 * returns; its journal is dropped. Reference counts are only changed on
 * the loop thread. Private-data slots, which plugins may set from pool
 * threads, are guarded by a mutex.
 */
#include "host.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "ctx.h"
#include "defer.h"
#include "json.h"
#include "log.h"
#include "names.h"
#include "plugdone.h"
#include "msg.h"
#include "stats.h"
#include "xalloc.h"

struct host_conn {
    int refs;
    bool closed;
    uv_loop_t *loop;
    struct client_info info;
    struct log_conn log; /* "sid=..." on every line */
    struct chain *chain; /* pinned for the current transaction / connection */
    const struct chain_view *view; /* this connection's listener's part of `chain` */
    bool in_tx;
    pthread_mutex_t mu;
    void *conndata[CFG_MAX_PLUGINS];
    void (*connfree[CFG_MAX_PLUGINS])(void *);
    /* the phase being run */
    struct tx *tx; /* referenced while the phase runs */
    bool tx_temp;  /* made for a phase without a transaction */
    struct sluice_ctx *cur;
    struct sluice_ctx *spare; /* a free ctx kept for reuse */
    uint64_t clock_ns;        /* end of the last hook of the running phase, or 0 */
    enum sluice_phase phase;
    size_t next_idx;
    host_done_fn done;
    void *done_ud;
    bool running;
    uv_timer_t *timer;
    struct defer_ev done_ev; /* delivers `result` from the loop */
    struct host_result result;
};

/* ---- connections ------------------------------------------------------- */

static void host__timer_close_cb(uv_handle_t *h)
{
    free(h);
}

static void host__free_conndata(struct host_conn *hc)
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

static void host__unref(struct host_conn *hc)
{
    if (--hc->refs > 0)
        return;
    host__free_conndata(hc);
    chain_unref(hc->chain);
    free(hc->spare);
    pthread_mutex_destroy(&hc->mu);
    uv_close((uv_handle_t *)hc->timer, host__timer_close_cb);
    plugdone_detach(hc->loop);
    free(hc);
}

struct host_conn *host_conn_new(uv_loop_t *loop, const struct client_info *info)
{
    struct host_conn *hc = xcalloc(1, sizeof *hc);
    hc->timer = xmalloc(sizeof *hc->timer);
    hc->refs = 1;
    hc->loop = loop;
    hc->info = *info;
    memcpy(hc->log.sid, info->sid, sizeof hc->log.sid);
    hc->chain = chain_ref(chain_current());
    hc->view = hc->chain ? chain_view(hc->chain, hc->info.listener) : NULL;
    pthread_mutex_init(&hc->mu, NULL);
    uv_timer_init(loop, hc->timer);
    hc->timer->data = hc;
    plugdone_attach(loop);
    return hc;
}

void host_conn_info(struct host_conn *hc, const struct client_info *info)
{
    hc->info = *info;
}

bool host_conn_active(struct host_conn *hc)
{
    struct chain *c = hc->in_tx ? hc->chain : chain_current();
    return c && chain_view(c, hc->info.listener)->n > 0;
}

const struct log_conn *host_conn_log(const struct host_conn *hc)
{
    return &hc->log;
}

uv_loop_t *host_conn_loop(struct host_conn *hc)
{
    return hc->loop;
}

void host_conn_data_set(struct host_conn *hc, const struct chain *ch, size_t slot, void *data,
                        void (*free_fn)(void *))
{
    pthread_mutex_lock(&hc->mu);
    if (ch != hc->chain) {
        pthread_mutex_unlock(&hc->mu);
        if (data && free_fn)
            free_fn(data);
        return;
    }
    if (hc->conndata[slot] && hc->connfree[slot] && hc->conndata[slot] != data)
        hc->connfree[slot](hc->conndata[slot]);
    hc->conndata[slot] = data;
    hc->connfree[slot] = free_fn;
    pthread_mutex_unlock(&hc->mu);
}

void *host_conn_data_get(struct host_conn *hc, const struct chain *ch, size_t slot)
{
    pthread_mutex_lock(&hc->mu);
    void *d = ch == hc->chain ? hc->conndata[slot] : NULL;
    pthread_mutex_unlock(&hc->mu);
    return d;
}

/* Notifications (reset/close) run on the loop, never block, no verdict. */
static void host__notify(struct host_conn *hc, struct tx *tx, enum sluice_phase ph);

void host_conn_free(struct host_conn *hc)
{
    if (!hc)
        return;
    host_cancel(hc);
    assert(!hc->in_tx); /* the session ends its transaction first */
    if (hc->view && hc->view->n) {
        struct tx *tmp = tx_new(&hc->info, 0);
        host__notify(hc, tmp, SLUICE_PHASE_CLOSE);
        tx_unref(tmp);
    }
    hc->closed = true;
    uv_timer_stop(hc->timer);
    host__unref(hc);
}

/* ---- transactions ------------------------------------------------------ */

void host_tx_begin(struct host_conn *hc)
{
    assert(!hc->in_tx);
    if (hc->chain != chain_current()) {
        /* A reload happened: new transactions use the new chain. Private
         * connection data belonged to the old instances. */
        struct chain *old = hc->chain;
        pthread_mutex_lock(&hc->mu); /* an abandoned hook may be reading it */
        hc->chain = chain_ref(chain_current());
        hc->view = hc->chain ? chain_view(hc->chain, hc->info.listener) : NULL;
        pthread_mutex_unlock(&hc->mu);
        host__free_conndata(hc); /* stale hooks can no longer add to it */
        chain_unref(old);
    }
    hc->in_tx = true;
}

void host_tx_end(struct host_conn *hc, struct tx *tx)
{
    if (!hc->in_tx)
        return;
    host__notify(hc, tx, SLUICE_PHASE_RESET);
    hc->in_tx = false;
}

/* ---- contexts ---------------------------------------------------------- */

static struct sluice_ctx *host__ctx_new(struct host_conn *hc, struct tx *tx,
                                        struct sluice_instance *in, enum sluice_phase ph)
{
    /* One spare per connection: most hooks answer at once, so the same ctx
     * serves every call of a transaction without malloc/free. */
    struct sluice_ctx *c = hc->spare;
    hc->spare = NULL;
    if (!c)
        c = xmalloc(sizeof *c);
    /* Hooks of one phase run back to back: the end of the previous one is
     * the start of this one (one clock reading per hook, not two). */
    ctx_init(c, hc, tx, in, ph, hc->clock_ns ? hc->clock_ns : clock_mono_ns());
    hc->clock_ns = 0;
    hc->refs++;
    return c;
}

static void host__ctx_unref(struct sluice_ctx *c)
{
    if (--c->refs > 0)
        return;
    struct host_conn *hc = c->hc;
    ctx_fini(c);
    if (!hc->spare && hc->refs > 1 && !atomic_load(&c->abandoned)) {
        hc->spare = c;
        host__unref(hc);
        return;
    }
    host__unref(hc);
    free(c);
}

/* ---- the decision record ----------------------------------------------- */

/* "%.3f" / "%.2f" without the libc float formatter (hot path: once per
 * transaction). */
static void host__fmt_fixed(buf_t *b, double v, int digits)
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

static void host__fmt_milli(buf_t *b, double v)
{
    host__fmt_fixed(b, v, 3);
}

void host_summary(struct host_conn *hc, const struct tx *tx, buf_t *out)
{
    const struct chain_view *v = hc->view;
    if (!v || v->n == 0)
        return;
    if (tx->decided_by[0])
        buf_printf(out, " decision=%s:%s", tx->decided_by, tx->decision);
    if (tx->nsyms) {
        buf_puts(out, " score=");
        host__fmt_fixed(out, tx->score, 2);
        buf_puts(out, " symbols=");
        for (size_t i = 0; i < tx->nsyms; i++) {
            if (i)
                buf_append(out, ",", 1);
            buf_puts(out, tx->syms[i].name);
        }
    }
    buf_puts(out, " plugins=");
    for (size_t i = 0; i < v->n; i++) {
        if (i)
            buf_append(out, ",", 1);
        buf_puts(out, v->inst[i]->name);
        buf_append(out, ":", 1);
        host__fmt_fixed(out, tx->plugin_ms[v->inst[i]->idx], 2);
        buf_append(out, "ms", 2);
    }
}

void host_record(struct host_conn *hc, const struct tx *tx, const char *verdict,
                 const char *upstream_reply)
{
    const struct chain_view *v = hc->view;
    buf_t b = BUF_INIT;
    buf_puts(&b, "{\"sid\":");
    json_escape(&b, tx->client.sid);
    buf_puts(&b, ",\"time\":");
    host__fmt_fixed(&b, (double)time(NULL), 0);
    buf_puts(&b, ",\"client\":");
    json_escape(&b, tx->client.client_addr);
    buf_puts(&b, ",\"from\":");
    json_escape(&b, tx->orig_sender ? tx->orig_sender : "");
    buf_puts(&b, ",\"rcpts\":");
    host__fmt_fixed(&b, (double)tx_accepted(tx), 0);
    buf_puts(&b, ",\"verdict\":");
    json_escape(&b, verdict);
    buf_puts(&b, ",\"plugin\":");
    json_escape(&b, tx->decided_by);
    buf_puts(&b, ",\"reason\":");
    json_escape(&b, tx->reason[0] ? tx->reason : (upstream_reply ? upstream_reply : ""));
    buf_puts(&b, ",\"score\":");
    host__fmt_milli(&b, tx->score);
    buf_puts(&b, ",\"symbols\":[");
    for (size_t i = 0; i < tx->nsyms && i < 50; i++) {
        buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
        json_escape(&b, tx->syms[i].name);
        buf_puts(&b, ",\"score\":");
        host__fmt_milli(&b, tx->syms[i].score);
        buf_puts(&b, ",\"plugin\":");
        json_escape(&b, tx->syms[i].plugin);
        buf_puts(&b, "}");
    }
    buf_puts(&b, "],\"plugin_ms\":{");
    for (size_t i = 0; v && i < v->n; i++) {
        buf_puts(&b, i ? "," : "");
        json_escape(&b, v->inst[i]->name);
        buf_puts(&b, ":");
        host__fmt_milli(&b, tx->plugin_ms[v->inst[i]->idx]);
    }
    buf_puts(&b, "}}");
    if (b.ptr)
        stats_decision_push_owned(b.ptr, b.len); /* takes the buffer */
}

/* ---- the runner -------------------------------------------------------- */

static enum stats_pverdict host__to_pv(int v)
{
    return (v >= 0 && v <= SLUICE_DISCONNECT) ? (enum stats_pverdict)v : STATS_PV_CONTINUE;
}

static sluice_hook_fn host__hook_for(const struct sluice_plugin *d, enum sluice_phase ph)
{
    switch (ph) {
    case SLUICE_PHASE_CONNECT:
        return d->on_connect;
    case SLUICE_PHASE_HELO:
        return d->on_helo;
    case SLUICE_PHASE_MAIL:
        return d->on_mail;
    case SLUICE_PHASE_RCPT:
        return d->on_rcpt;
    case SLUICE_PHASE_DATA:
        return d->on_data;
    default:
        return NULL;
    }
}

static void host__run_next(struct host_conn *hc);

/* Deliver the result from the loop (never inside the caller's stack). */
static void host__deliver(struct defer_ev *ev)
{
    struct host_conn *hc = (struct host_conn *)((char *)ev - offsetof(struct host_conn, done_ev));
    host_done_fn cb = hc->done;
    struct host_result r = hc->result;
    hc->done = NULL;
    hc->result.tx = NULL;
    hc->running = false;
    cb(hc->done_ud, &r);
}

static void host__finish(struct host_conn *hc, const struct host_result *r)
{
    hc->clock_ns = 0;
    hc->cur = NULL;
    if (uv_is_active((uv_handle_t *)hc->timer))
        uv_timer_stop(hc->timer);
    hc->result = *r;
    if (hc->tx_temp) {
        tx_unref(hc->tx);
        hc->result.tx = NULL;
    } else {
        hc->result.tx = hc->tx; /* the reference goes to the session */
    }
    hc->tx = NULL;
    defer_post(&hc->done_ev, host__deliver);
}

static void host__default_reply(int verdict, enum sluice_phase ph, struct host_result *r)
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

static void host__breaker_result(struct sluice_instance *in, bool failed)
{
    if (!in->settings.breaker_failures)
        return;
    uint64_t now = clock_mono_ns();
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
static bool host__breaker_blocks(struct sluice_instance *in)
{
    if (in->breaker != STATS_CB_OPEN)
        return false;
    if (clock_mono_ns() >= in->open_until_ns) {
        in->breaker = STATS_CB_HALF_OPEN;
        stats_plugin_breaker(in->stats, STATS_CB_HALF_OPEN);
        log_info("plugin=%s circuit breaker half-open: trying one call", in->name);
        return false;
    }
    return true;
}

/* A plugin failed (timeout, error, open breaker): apply its policy. Returns
 * true if the phase goes on with the next plugin. */
static bool host__failure_policy(struct host_conn *hc, struct sluice_instance *in, const char *what,
                                 struct host_result *r)
{
    struct tx *tx = hc->tx;
    switch (in->settings.failure) {
    case CFG_FAIL_ACCEPT:
        log_c_warn(&hc->log, "plugin=%s %s: failure policy accept, skipping it", in->name, what);
        return true;
    case CFG_FAIL_TAG:
        log_c_warn(&hc->log, "plugin=%s %s: failure policy tag, skipping it", in->name, what);
        if (hc->phase == SLUICE_PHASE_DATA && tx->msg) {
            char val[300];
            snprintf(val, sizeof val, "%s (%s)", in->name, what);
            msg_field_add(tx->msg, "X-Sluice-Skipped", val);
        } else {
            char sym[128];
            snprintf(sym, sizeof sym, "SKIPPED_%s", in->name);
            tx_sym_add(tx, sym, 0, what, in->name);
        }
        return true;
    default:
        log_c_warn(&hc->log, "plugin=%s %s: failure policy tempfail", in->name, what);
        r->verdict = SLUICE_TEMPFAIL;
        r->code = 451;
        snprintf(r->enh, sizeof r->enh, "4.3.0");
        snprintf(r->text, sizeof r->text, "Filter %s unavailable, try again later", in->name);
        r->plugin = in->name;
        return false;
    }
}

/* A hook's answer is in (loop thread). */
static void host__ctx_done(struct sluice_ctx *c)
{
    struct host_conn *hc = c->hc;
    struct sluice_instance *in = c->inst;
    uint64_t now = clock_mono_ns();
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
            log_c_error(&hc->log, "plugin=%s returned an invalid verdict %d", in->name, v);
        stats_plugin_error(in->stats);
        host__breaker_result(in, true);
        hc->cur = NULL;
        bool go_on = host__failure_policy(
            hc, in, v == SLUICE_ERROR ? "reported an error" : "invalid verdict", &r);
        host__ctx_unref(c);
        if (go_on)
            host__run_next(hc);
        else
            host__finish(hc, &r);
        return;
    }
    host__breaker_result(in, false);
    stats_plugin_verdict(in->stats, host__to_pv(v));
    ctx_apply(c);
    hc->cur = NULL;
    if (v == SLUICE_CONTINUE) {
        host__ctx_unref(c);
        host__run_next(hc);
        return;
    }
    struct tx *tx = c->tx;
    r.verdict = (enum sluice_verdict)v;
    r.plugin = in->name;
    host__default_reply(v, c->phase, &r);
    if (c->code) {
        bool ok =
            (v == SLUICE_REJECT && c->code >= 500 && c->code < 600) ||
            ((v == SLUICE_TEMPFAIL || v == SLUICE_DISCONNECT) && c->code >= 400 && c->code < 500);
        if (ok) {
            r.code = c->code;
            snprintf(r.enh, sizeof r.enh, "%s", c->enh);
            snprintf(r.text, sizeof r.text, "%s", c->text);
        } else {
            log_c_warn(&hc->log, "plugin=%s reply code %d does not match verdict %s; using default",
                       in->name, c->code, names_pverdict(v));
        }
    }
    snprintf(tx->decided_by, sizeof tx->decided_by, "%s", in->name);
    snprintf(tx->decision, sizeof tx->decision, "%s", names_pverdict(v));
    snprintf(tx->reason, sizeof tx->reason, "%.190s", r.code ? r.text : "");
    for (char *q = tx->reason; (q = strchr(q, '\n')) != NULL;)
        *q = ' ';
    if (v == SLUICE_DISCARD) {
        tx->discard = true;
        log_c_warn(&hc->log, "plugin=%s DISCARD: the message will be accepted and dropped",
                   in->name);
    }
    if (v == SLUICE_QUARANTINE) {
        tx->quarantine = true;
        tx->quarantine_accepts = in->quarantine_accepts;
    }
    host__ctx_unref(c);
    if (v == SLUICE_DISCARD || v == SLUICE_QUARANTINE) {
        /* Decided for the transaction; the rest of this phase is skipped
         * like ACCEPT; the session applies it at end of data. */
        r.verdict =
            (v == SLUICE_DISCARD || v == SLUICE_QUARANTINE) && hc->phase != SLUICE_PHASE_DATA
                ? SLUICE_ACCEPT
                : r.verdict;
    }
    host__finish(hc, &r);
}

/* ---- pool threads per instance --------------------------------------------- */

static void host__work_cb(uv_work_t *w);
static void host__after_work_cb(uv_work_t *w, int status);

static void host__gate_stats(const struct sluice_instance *in)
{
    stats_plugin_threads(in->stats, in->gate->busy);
}

/* Hand c's hook to the pool; it holds one of its instance's threads until
 * host__after_work_cb, whether or not the session still waits for it. */
static void host__gate_start(struct sluice_ctx *c)
{
    struct sluice_instance *in = c->inst;
    in->gate->busy++;
    host__gate_stats(in);
    if (uv_queue_work(c->hc->loop, &c->work, host__work_cb, host__after_work_cb) != 0) {
        in->gate->busy--;
        host__gate_stats(in);
        c->refs--;
        c->outstanding = false;
        c->verdict = -1;
        uv_timer_stop(c->hc->timer);
        host__ctx_done(c);
    }
}

/* Every thread the instance may hold is taken: c waits its turn (FIFO).
 * The wait list holds the outstanding reference. */
static void host__gate_wait(struct sluice_ctx *c)
{
    struct chain_gate *g = c->inst->gate;
    c->waiting = true;
    c->next_wait = NULL;
    if (g->wait_last)
        g->wait_last->next_wait = c;
    else
        g->wait_first = c;
    g->wait_last = c;
    stats_plugin_thread_wait(c->inst->stats);
}

/* Take c off the wait list (it keeps the list's reference). */
static void host__gate_unlink(struct sluice_ctx *c)
{
    struct chain_gate *g = c->inst->gate;
    struct sluice_ctx **pp = &g->wait_first, *prev = NULL;
    while (*pp && *pp != c) {
        prev = *pp;
        pp = &(*pp)->next_wait;
    }
    assert(*pp == c);
    *pp = c->next_wait;
    if (g->wait_last == c)
        g->wait_last = prev;
    c->waiting = false;
}

/* c leaves the wait list without running (timeout, session gone). */
static void host__gate_unwait(struct sluice_ctx *c)
{
    host__gate_unlink(c);
    c->outstanding = false;
    c->refs--; /* the wait list's; the caller holds the runner's */
}

/* Start waiting calls, in order, while the gate has room. A call with
 * almost none of its time left is not started: it would be abandoned at
 * once and then hold a thread for nobody; its timer applies the failure
 * policy. */
static void host__gate_drain(struct chain_gate *g)
{
    struct sluice_ctx *c = g->wait_first;
    while (c && g->busy < g->limit) {
        struct sluice_ctx *next = c->next_wait;
        uint64_t left = uv_timer_get_due_in(c->hc->timer);
        if (left * 10 >= c->inst->settings.timeout_ms && left >= 20) {
            host__gate_unlink(c);
            c->started_ns = clock_mono_ns(); /* latency: the hook's own time */
            host__gate_start(c);
        }
        c = next;
    }
}

/* A hook of `in` gave its thread back. */
static void host__gate_leave(struct sluice_instance *in)
{
    struct chain_gate *g = in->gate;
    assert(g->busy > 0);
    g->busy--;
    host__gate_stats(in);
    host__gate_drain(g);
}

static void host__timer_cb(uv_timer_t *t)
{
    struct host_conn *hc = t->data;
    struct sluice_ctx *c = hc->cur;
    if (!c)
        return;
    struct sluice_instance *in = c->inst;
    char what[96];
    if (c->waiting) {
        /* It never ran: nobody else reads the tx. */
        snprintf(what, sizeof what, "timeout after %u ms waiting for a thread (%u of %u busy)",
                 in->settings.timeout_ms, in->gate->busy, in->gate->limit);
        host__gate_unwait(c);
    } else {
        snprintf(what, sizeof what, "timeout after %u ms", in->settings.timeout_ms);
        atomic_store(&c->abandoned, true);
        /* Queued but not started (the pool is busy elsewhere): it never
         * runs, and gives its thread slot back in host__after_work_cb. */
        bool never_ran = (in->desc->blocking_phases & SLUICE_PHASE_BIT(hc->phase)) &&
                         uv_cancel((uv_req_t *)&c->work) == 0;
        if (!never_ran) {
            /* The abandoned hook keeps its tx; the session goes on with a
             * clone. */
            struct tx *clone = tx_clone(hc->tx);
            tx_unref(hc->tx);
            hc->tx = clone;
        }
    }
    stats_plugin_timeout(in->stats);
    stats_timeout(STATS_TO_PLUGIN);
    hc->tx->plugin_ms[in->idx] += (double)(clock_mono_ns() - c->started_ns) / 1e6;
    host__breaker_result(in, true);
    hc->cur = NULL;
    host__ctx_unref(c); /* the runner's reference; an outstanding one may remain */
    struct host_result r = {.verdict = SLUICE_CONTINUE};
    if (host__failure_policy(hc, in, what, &r))
        host__run_next(hc);
    else
        host__finish(hc, &r);
}

static void host__work_cb(uv_work_t *w)
{
    struct sluice_ctx *c = w->data;
    sluice_hook_fn fn = host__hook_for(c->inst->desc, c->phase);
    c->verdict = fn(c);
}

static void host__after_work_cb(uv_work_t *w, int status)
{
    struct sluice_ctx *c = w->data;
    host__gate_leave(c->inst);
    c->outstanding = false;
    if (atomic_load(&c->abandoned) || status == UV_ECANCELED) {
        host__ctx_unref(c);
        return;
    }
    if (c->verdict == SLUICE_ASYNC) {
        /* A blocking hook cannot also be asynchronous. */
        c->verdict = -1;
    }
    c->refs--; /* the work's reference; the runner's goes in ctx_done */
    uv_timer_stop(c->hc->timer);
    host__ctx_done(c);
}

static void host__run_next(struct host_conn *hc)
{
    const struct chain_view *view = hc->view;
    while (view && hc->next_idx < view->n) {
        struct sluice_instance *in = view->inst[hc->next_idx++];
        sluice_hook_fn fn = host__hook_for(in->desc, hc->phase);
        if (!fn)
            continue;
        if (host__breaker_blocks(in)) {
            struct host_result r = {.verdict = SLUICE_CONTINUE};
            if (host__failure_policy(hc, in, "circuit breaker open", &r))
                continue;
            host__finish(hc, &r);
            return;
        }
        int wrc = hc->tx->msg ? tx_render_edits(hc->tx) : 0;
        if (wrc != 0) {
            /* The hook may read the edited message, which must then exist
             * in full; never in memory beyond memory_buffer. */
            log_c_error(&hc->log, "cannot write the edited message to the spool: %s",
                        strerror(-wrc));
            struct host_result r = {.verdict = SLUICE_TEMPFAIL, .code = 452};
            snprintf(r.enh, sizeof r.enh, "4.3.1");
            snprintf(r.text, sizeof r.text, "Insufficient system storage, try again later");
            host__finish(hc, &r);
            return;
        }
        struct sluice_ctx *c = host__ctx_new(hc, hc->tx, in, hc->phase);
        hc->cur = c;
        if (in->desc->blocking_phases & SLUICE_PHASE_BIT(hc->phase)) {
            /* The clock covers a wait for a thread too: the session's
             * budget for this plugin does not grow because it is busy. */
            uv_timer_start(hc->timer, host__timer_cb, in->settings.timeout_ms, 0);
            c->refs++;
            c->outstanding = true;
            c->work.data = c;
            if (in->gate->busy >= in->gate->limit || in->gate->wait_first) {
                host__gate_wait(c);         /* behind earlier waiters, in order */
                host__gate_drain(in->gate); /* a reload may have raised the limit */
            } else {
                host__gate_start(c);
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
                host__ctx_done(c);
            } else {
                /* A hook on the loop cannot be interrupted, so the clock
                 * only matters while we wait for its answer. */
                uv_timer_start(hc->timer, host__timer_cb, in->settings.timeout_ms, 0);
            }
            return;
        }
        c->outstanding = false;
        c->refs--;
        c->verdict = v;
        host__ctx_done(c);
        return;
    }
    struct host_result r = {.verdict = SLUICE_CONTINUE};
    host__finish(hc, &r);
}

void host_run(struct host_conn *hc, struct tx *tx, enum sluice_phase ph, host_done_fn cb, void *ud)
{
    assert(!hc->running && !hc->closed);
    assert(tx || ph == SLUICE_PHASE_CONNECT || ph == SLUICE_PHASE_HELO);
    hc->clock_ns = 0;
    hc->phase = ph;
    hc->next_idx = 0;
    hc->done = cb;
    hc->done_ud = ud;
    hc->running = true;
    hc->tx_temp = tx == NULL;
    hc->tx = tx ? tx_ref(tx) : tx_new(&hc->info, 0);
    host__run_next(hc);
}

void host_cancel(struct host_conn *hc)
{
    if (!hc->running)
        return;
    struct sluice_ctx *c = hc->cur;
    if (c) {
        if (c->waiting)
            host__gate_unwait(c);
        else
            atomic_store(&c->abandoned, true);
        hc->cur = NULL;
        host__ctx_unref(c);
    }
    uv_timer_stop(hc->timer);
    defer_cancel(&hc->done_ev);
    tx_unref(hc->result.tx);
    hc->result.tx = NULL;
    tx_unref(hc->tx);
    hc->tx = NULL;
    hc->running = false;
    hc->done = NULL;
}

static void host__notify(struct host_conn *hc, struct tx *tx, enum sluice_phase ph)
{
    const struct chain_view *v = hc->view;
    for (size_t i = 0; v && i < v->n; i++) {
        struct sluice_instance *in = v->inst[i];
        sluice_notify_fn fn = ph == SLUICE_PHASE_RESET ? in->desc->on_reset : in->desc->on_close;
        if (!fn)
            continue;
        struct sluice_ctx *c = host__ctx_new(hc, tx, in, ph);
        fn(c);
        stats_plugin_latency(in->stats, (enum stats_phase)ph,
                             (double)(clock_mono_ns() - c->started_ns) / 1e9);
        host__ctx_unref(c); /* notifications cannot edit: the journal is dropped */
    }
}

/* A hook's asynchronous answer (loop thread). */
void host_complete(struct sluice_ctx *ctx, int verdict)
{
    if (!ctx->outstanding || ctx->completed)
        return;
    if (ctx->inst->desc->blocking_phases & SLUICE_PHASE_BIT(ctx->phase))
        return; /* a blocking hook answers by returning; its work holds the call */
    ctx->completed = true;
    ctx->outstanding = false;
    ctx->verdict = verdict;
    if (atomic_load(&ctx->abandoned)) {
        host__ctx_unref(ctx);
        return;
    }
    if (ctx->in_hook)
        return;  /* completed from inside the hook itself: run_next finishes it */
    ctx->refs--; /* the async reference; the runner's stays until done */
    uv_timer_stop(ctx->hc->timer);
    host__ctx_done(ctx);
}
