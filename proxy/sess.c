/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sess: the session's life, input and clock; see sess.h.
 *
 * Input: bytes from the client are processed from a view (the read buffer
 * when nothing is pending, else s->in). In command states the cmd_reader
 * cuts lines; in DATA the data_reader consumes bytes into the message
 * buffer until CRLF.CRLF. Processing stops while a command waits (s->busy:
 * plugin phase or upstream), while the state is not a command state
 * (lookup, connect, end of data, TLS handshake), or when a barrier command
 * must wait for earlier replies; the completion calls sess_kick(), which
 * resumes from s->in.
 *
 * Teardown: sess_close() marks the session CLOSING (every entry point
 * checks that first) and posts its teardown, which runs from the loop:
 * the session is never freed inside its own call stack.
 */
#include "sess.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "conn.h"
#include "names.h"
#include "dns.h"
#include "proxyhdr.h"
#include "server.h"
#include "sess_int.h"
#include "stats.h"
#include "tlssrv.h"
#include "xalloc.h"

static void sess__start(struct sess *s);
static void sess__accepted(struct sess *s, const char *early, size_t early_len);
static void sess__proxy_read(struct sess *s, const char *data, size_t len);

static const char *const sess__state_names[S_COUNT] = {
    [S_LOOKUP] = "lookup",   [S_CONNECT] = "connect", [S_GREETED] = "greeted",
    [S_HELO] = "helo",       [S_MAIL] = "mail",       [S_RCPT] = "rcpt",
    [S_DATA] = "data",       [S_EOM] = "eom",         [S_TLS] = "tls",
    [S_CLOSING] = "closing", [S_BDAT] = "bdat",       [S_CHUNKED] = "chunked",
    [S_PROXY] = "proxy",     [S_AUTH] = "auth",
};

const char *sess_state_name(enum sess_state st)
{
    return st < S_COUNT ? sess__state_names[st] : "?";
}

/* The one place the state changes. CLOSING is final. */
void sess_set_state(struct sess *s, enum sess_state st)
{
    if (s->state == st)
        return;
    if (s->state == S_CLOSING)
        log_panic("sid=%s state change %s -> %s after close", s->info.sid,
                  sess_state_name(s->state), sess_state_name(st));
    log_c_debug(&s->log, "state %s -> %s", sess_state_name(s->state), sess_state_name(st));
    s->state = st;
}

/* Message bytes are arriving (DATA, or BDAT chunks and the commands
 * between them): data_timeout is the clock. */
static bool sess__in_message(const struct sess *s)
{
    return s->state == S_DATA || s->state == S_BDAT || s->state == S_CHUNKED;
}

/* ---- transaction ------------------------------------------------------------ */

bool sess_tx_open(const struct sess *s)
{
    return s->tx && (s->state == S_MAIL || s->state == S_RCPT || s->state == S_DATA ||
                     s->state == S_EOM || s->state == S_BDAT || s->state == S_CHUNKED);
}

/* One log line per transaction, session id first. */
void sess_log_tx(struct sess *s, enum stats_verdict v, uint64_t size_out)
{
    struct tx *tx = s->tx;
    uint64_t ns = tx && tx->started_ns ? clock_mono_ns() - tx->started_ns : 0;
    unsigned long long ms = (unsigned long long)(ns / 1000000u);
    buf_t extra = BUF_INIT;
    bool plugins = s->hc && tx && host_conn_active(s->hc);
    if (plugins)
        host_summary(s->hc, tx, &extra);
    size_t nrcpts = tx ? tx_accepted(tx) : 0;
    uint64_t bytes = tx ? tx->bytes_in : 0;
    /* Everything the client or the upstream chose is quoted: a key=value
     * parser must read back exactly what happened. */
    char from[CMD_ADDR_MAX + 3], qfrom[4 * sizeof from + 3], qhelo[4 * sizeof s->info.helo + 3];
    char qup[4 * sizeof s->last_upstream + 3], qauth[4 * sizeof s->info.auth_user + 3];
    snprintf(from, sizeof from, "<%s>", tx && tx->orig_sender ? tx->orig_sender : "");
    log_c_info(&s->log,
               "event=tx client=%s:%d helo=%s tls=%s cipher=%s auth=%s from=%s rcpts=%zu size=%llu "
               "upstream=%s verdict=%s duration=%llu.%03llu%s",
               s->info.client_addr, s->info.client_port,
               s->info.helo[0] ? log_quote(qhelo, sizeof qhelo, s->info.helo) : "-",
               s->info.tls_version[0] ? s->info.tls_version : "none",
               s->info.tls_cipher[0] ? s->info.tls_cipher : "-",
               s->info.auth_user[0] ? log_quote(qauth, sizeof qauth, s->info.auth_user) : "-",
               log_quote(qfrom, sizeof qfrom, from), nrcpts, (unsigned long long)bytes,
               log_quote(qup, sizeof qup, s->last_upstream), names_txverdict(v), ms / 1000,
               ms % 1000, extra.ptr ? extra.ptr : "");
    buf_free(&extra);
    if (plugins)
        host_record(s->hc, tx, names_txverdict(v), s->last_upstream);
    stats_transaction(v, (unsigned)nrcpts, bytes, size_out, (double)ns / 1e9);
}

/* End the transaction locally; `abort_upstream` sends RSET when the
 * upstream has one open. */
void sess_tx_end(struct sess *s, bool abort_upstream)
{
    if (abort_upstream && sess_tx_open(s) && s->up && up_ready(s->up))
        up_command(s->up, "RSET", NULL, NULL);
    if (s->tx) {
        if (s->hc)
            host_tx_end(s->hc, s->tx);
        if (!s->msg)
            s->msg = tx_take_msgbuf(s->tx); /* reuse its memory */
        if (s->tx->refs == 1 && !s->spare_tx)
            s->spare_tx = tx_renew(s->tx, &s->info, 0); /* emptied now, reused at MAIL */
        else
            tx_unref(s->tx);
        s->tx = NULL;
    }
    if (s->msg)
        msgbuf_reset(s->msg);
    buf_free(&s->mime7_out);
    s->last_upstream[0] = 0;
    if (s->state == S_MAIL || s->state == S_RCPT || s->state == S_DATA || s->state == S_EOM ||
        s->state == S_CHUNKED)
        sess_set_state(s, S_HELO);
    s->log.action = NULL;
}

/* Every line of the reply goes to the log, joined by " / ": MTAs put what
 * an admin looks for (Exim's message id after BDAT LAST, the reason of a
 * multi-line refusal) on any line, not only the first. */
void sess_last_upstream(struct sess *s, const struct up_result *r)
{
    if (r->err == UP_OK && r->reply) {
        const struct smtp_reply *rp = r->reply;
        int n = snprintf(s->last_upstream, sizeof s->last_upstream, "%d %s%s%s", rp->code, rp->enh,
                         rp->enh[0] ? " " : "", rp->nlines ? rp->lines[0] : "");
        for (size_t i = 1; i < rp->nlines && n >= 0 && (size_t)n < sizeof s->last_upstream; i++)
            n += snprintf(s->last_upstream + n, sizeof s->last_upstream - (size_t)n, " / %s",
                          rp->lines[i]);
    } else
        snprintf(s->last_upstream, sizeof s->last_upstream, "error: %s",
                 r->why ? r->why : "upstream failure");
}

unsigned sess_upstream_caps(struct sess *s)
{
    if (s->up && up_ready(s->up))
        return up_caps(s->up);
    return s->srv->upstream_caps_known ? s->srv->upstream_caps : 0;
}

/* Count a client error; past the limit the session ends with 421. */
bool sess_error(struct sess *s)
{
    s->errors++;
    if (s->cfg->max_errors && s->errors >= s->cfg->max_errors) {
        sess_reply(s, 421, "4.7.0", "%s Error: too many errors, closing connection",
                   s->cfg->hostname);
        sess_close(s, true);
        return false;
    }
    return true;
}

/* ---- input ------------------------------------------------------------------ */

/* Can the next command line be handled now? */
static bool sess__can_take_command(const struct sess *s)
{
    /* A client that does not read its replies gets no more answers
     * produced for it: input waits until the output queue drains. */
    if (sess_reply_queued(s) > s->cfg->client_output_limit)
        return false;
    return !s->busy && (s->state == S_GREETED || s->state == S_HELO || s->state == S_MAIL ||
                        s->state == S_RCPT || s->state == S_CHUNKED);
}

/* Commands handled per session per loop turn. One 64 KiB read holds
 * thousands of pipelined NOOPs: answered in one go, a client that never
 * reads its replies would hold the loop for every other session. */
#define SESS_CMDS_PER_TURN 64

static void sess__more_ev(struct defer_ev *ev)
{
    struct sess *s = (struct sess *)((char *)ev - offsetof(struct sess, more_ev));
    sess_kick(s);
}

/* Process in[0..len); returns bytes consumed. Stops when waiting, or
 * after SESS_CMDS_PER_TURN commands (the rest on a later turn). */
static size_t sess__process(struct sess *s, const char *in, size_t len)
{
    size_t off = 0;
    unsigned ncmds = 0;
    while (off < len && !s->end_after_reply) {
        if (s->state == S_DATA) {
            off += data_reader_feed(&s->dr, in + off, len - off);
            if (data_reader_done(&s->dr))
                sess_eom_begin(s);
            continue;
        }
        if (s->state == S_BDAT) {
            off += sess_bdat_feed(s, in + off, len - off);
            continue;
        }
        if (s->state == S_AUTH) {
            /* A SASL response, never a command; none while Dovecot is
             * asked (busy): what follows waits for its answer. */
            if (s->busy || sess_reply_queued(s) > s->cfg->client_output_limit)
                break;
            size_t used = 0, llen = 0;
            const char *line = NULL;
            enum cmd_rd rd = cmd_reader_next(&s->auth.rd, in + off, len - off, &used, &line, &llen);
            off += used;
            if (rd == CMD_RD_AGAIN)
                break;
            s->ncmds++; /* progress, for the client's deadline */
            sess_auth_feed(s, rd == CMD_RD_LINE ? line : NULL, llen);
            continue;
        }
        if (!sess__can_take_command(s))
            break;
        if (ncmds++ == SESS_CMDS_PER_TURN) {
            if (!defer_queued(&s->more_ev))
                defer_post(&s->more_ev, sess__more_ev);
            break;
        }
        size_t used = 0, llen = 0;
        const char *line = NULL;
        enum cmd_rd rd = cmd_reader_next(&s->rd, in + off, len - off, &used, &line, &llen);
        if (rd == CMD_RD_AGAIN) {
            off += used;
            break;
        }
        if (rd == CMD_RD_TOO_LONG) {
            off += used;
            sess_reply(s, 500, "5.5.2", "Error: line too long");
            sess_error(s);
            continue;
        }
        /* A barrier command waits for every earlier reply; the line stays
         * unconsumed in the input until then. */
        struct cmd c;
        cmd_parse(line, llen, &c);
        if (s->slots_head && sess_cmd_is_barrier(c.verb))
            break;
        off += used;
        if (sess_cmd_handle(s, line, llen))
            return len; /* STARTTLS: everything after it in this read is discarded */
    }
    return off;
}

static void sess__process_input(struct sess *s)
{
    if (s->processing)
        log_panic("sid=%s session input processed re-entrantly", s->info.sid);
    if (s->state == S_CLOSING)
        return;
    s->processing = true;
    size_t used = sess__process(s, s->in.ptr, s->in.len);
    buf_consume(&s->in, used);
    s->processing = false;
}

static void sess__check_backpressure(struct sess *s)
{
    if (s->state == S_CLOSING)
        return;
    bool too_much_out = sess_reply_queued(s) > s->cfg->client_output_limit;
    bool too_much_in = s->in.len > 4 * CMD_LINE_MAX + 65536;
    if ((too_much_out || too_much_in) && !s->read_paused) {
        conn_read_stop(s->conn);
        s->read_paused = true;
    } else if (!too_much_out && !too_much_in && s->read_paused) {
        conn_read_start(s->conn);
        s->read_paused = false;
    }
}

/* Resume after an asynchronous step completed (called from the loop). */
void sess_kick(struct sess *s)
{
    if (s->state == S_CLOSING)
        return;
    if (s->end_after_reply) {
        sess_close(s, true);
        return;
    }
    if (!s->processing && s->in.len)
        sess__process_input(s);
    if (s->state == S_CLOSING)
        return;
    if (s->end_after_reply) {
        sess_close(s, true);
        return;
    }
    conn_flush(s->conn);
    if (s->shutdown && !s->busy && !sess_tx_open(s) && !s->slots_head &&
        (s->state == S_GREETED || s->state == S_HELO)) {
        sess_reply(s, 421, "4.3.2", "%s Service shutting down", s->cfg->hostname);
        sess_close(s, true);
        return;
    }
    sess__check_backpressure(s);
    sess_arm_timer(s);
}

static void sess__on_read(struct conn *c, const char *data, size_t len, void *ud)
{
    (void)c;
    struct sess *s = ud;
    if (s->state == S_CLOSING)
        return;
    if (s->state == S_PROXY) {
        sess__proxy_read(s, data, len);
    } else if (s->in.len == 0 && !s->processing) {
        /* Fast path: process straight from the read buffer. */
        s->processing = true;
        size_t used = sess__process(s, data, len);
        s->processing = false;
        if (used < len && s->state != S_CLOSING && s->state != S_TLS)
            buf_append(&s->in, data + used, len - used);
    } else {
        buf_append(&s->in, data, len);
        sess__process_input(s);
    }
    if (s->state == S_CLOSING)
        return;
    if (s->end_after_reply) {
        sess_close(s, true);
        return;
    }
    conn_flush(s->conn);
    sess__check_backpressure(s);
    /* The clock restarts on progress, not on every byte: a command must be
     * complete within command_timeout, and DATA must bring at least 1 KiB
     * (or its end) per data_timeout, so a client sending a byte a second
     * is bounded. */
    if (sess__in_message(s)) {
        s->timer_bytes += len;
        if (s->timer_bytes >= 1024 || s->deadline == 0)
            sess_arm_timer(s);
    } else if (s->ncmds != s->timer_ncmds || s->deadline == 0) {
        sess_arm_timer(s);
    }
}

/* The client has gone quiet: end its transaction upstream, tell it 421
 * 4.4.2 (not behind pending replies) and close. */
static void sess__give_up(struct sess *s, const char *log_why, const char *reply_why)
{
    if (sess_tx_open(s)) {
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: %s", log_why);
        sess_log_tx(s, STATS_V_ABORTED, 0);
    }
    sess_tx_end(s, true);
    sess_reply_drop_all(s);
    sess_reply(s, 421, "4.4.2", "%s Error: %s", s->cfg->hostname, reply_why);
    sess_close(s, true);
}

/* ---- the upstream session and its slot ------------------------------------------- */

/* With a slot held: an idle connection from the pool, else a new one. The
 * open callback runs from the loop either way. */
static void sess__up_open(struct sess *s)
{
    s->up = uppool_take(&s->srv->uppool, s->cfg, s->info.sid);
    if (!s->up) {
        s->up = up_new(s->srv->loop, s->cfg, s->info.sid);
        stats_upconn(STATS_UPCONN_OPENED);
    }
    up_open(s->up, sess_cmd_up_open_cb, s);
}

static struct sess *sess__of_slot(struct upslot *sl)
{
    return (struct sess *)((char *)sl - offsetof(struct sess, slot));
}

static void sess__slot_granted(struct upslot *sl)
{
    struct sess *s = sess__of_slot(sl);
    if (s->up)
        return; /* cannot happen: an upstream is only opened with a slot */
    if (s->state == S_CLOSING) {
        upslot_release(sl);
        return;
    }
    sess__up_open(s);
}

static void sess__slot_expired(struct upslot *sl)
{
    struct sess *s = sess__of_slot(sl);
    if (s->state != S_CLOSING)
        sess_cmd_up_wait_expired(s);
}

static void sess__slot_reclaim(struct upslot *sl)
{
    struct sess *s = sess__of_slot(sl);
    if (s->state == S_CLOSING) {
        sess_up_drop(s);
        return;
    }
    if (!s->tx) {
        /* Between transactions it loses nothing: the next MAIL reopens. */
        log_c_info(&s->log, "client=%s upstream session given to a waiting client",
                   s->info.client_addr);
        sess_up_drop(s);
        return;
    }
    log_c_warn(&s->log, "client=%s idle in a transaction while others wait for the upstream",
               s->info.client_addr);
    sess__give_up(s, "idle while others waited", "idle too long, the server is busy");
    sess_up_drop(s);
}

static const struct upslot_ops sess__slot_ops = {
    .granted = sess__slot_granted,
    .expired = sess__slot_expired,
    .reclaim = sess__slot_reclaim,
};

bool sess_up_start(struct sess *s)
{
    if (s->up && up_failed(s->up)) {
        up_free(s->up);
        s->up = NULL;
        /* The client was told to that connection only: the next one is
         * told again before the MAIL goes out. */
        s->identified = false;
    }
    if (s->up)
        return true;
    char key[64];
    if (!upslot_acquire(&s->srv->upslots, &s->slot, &sess__slot_ops,
                        server_ip_key(s->srv, s->info.client_addr, key, sizeof key))) {
        s->log.action = "waiting for a free upstream session";
        return false; /* sess__slot_granted() opens it */
    }
    sess__up_open(s);
    return true;
}

void sess_up_drop(struct sess *s)
{
    bool held = s->slot.st == UPSLOT_HELD;
    upslot_release(&s->slot);
    if (s->up) {
        /* A healthy connection serves the next session (uppool.h). */
        if (held && !up_failed(s->up))
            uppool_put(&s->srv->uppool, s->up);
        else
            up_free(s->up);
        s->up = NULL;
    }
    s->identified = false;
}

/* ---- the client's deadline ------------------------------------------------------ */

static void sess__timeout_cb(uv_timer_t *t)
{
    struct sess *s = t->data;
    if (s->state == S_CLOSING || s->deadline == 0)
        return;
    /* The timer runs lazily (see sess_arm_timer): only a deadline that
     * has really passed counts; an earlier wake-up re-arms for the rest. */
    uint64_t now = uv_now(s->srv->loop);
    if (now < s->deadline) {
        uv_timer_start(&s->timer, sess__timeout_cb, s->deadline - now, 0);
        s->timer_due = s->deadline;
        return;
    }
    stats_timeout(sess__in_message(s) ? STATS_TO_DATA : STATS_TO_COMMAND);
    log_c_warn(&s->log, "client=%s timeout in state %s", s->info.client_addr,
               sess_state_name(s->state));
    if (s->state == S_TLS || s->state == S_PROXY) {
        /* A handshake (or PROXY header) that stalls holds a slot like an
         * idle client: the command deadline applies; there is no channel
         * for a reply. */
        sess_close(s, false);
        return;
    }
    sess__give_up(s, "client timeout", "timeout exceeded");
}

void sess_arm_timer(struct sess *s)
{
    if (s->state == S_CLOSING)
        return;
    if (s->busy || s->slots_head || s->state == S_EOM || s->state == S_LOOKUP ||
        s->state == S_CONNECT) {
        /* Our turn to work (upstream, plugins, replies we still owe): the
         * client is not idle. */
        s->deadline = 0;
        upslot_activity(&s->slot, uv_now(s->srv->loop), true, false, s->tx != NULL);
        return;
    }
    /* Message bytes move a transaction on; NOOP and friends do not. */
    upslot_activity(&s->slot, uv_now(s->srv->loop), false, sess__in_message(s), s->tx != NULL);
    unsigned ms = sess__in_message(s)     ? s->cfg->data_timeout_ms
                  : s->state == S_GREETED ? s->cfg->greeting_timeout_ms
                                          : s->cfg->command_timeout_ms;
    s->timer_ncmds = s->ncmds;
    s->timer_bytes = 0;
    /* Moving a deadline is a store; the libuv timer (a heap operation) is
     * only started when none is pending, and its callback re-arms for
     * whatever is left. */
    s->deadline = uv_now(s->srv->loop) + ms;
    if (!uv_is_active((uv_handle_t *)&s->timer) || s->deadline < s->timer_due) {
        uv_timer_start(&s->timer, sess__timeout_cb, ms, 0);
        s->timer_due = s->deadline;
    }
}

/* ---- teardown --------------------------------------------------------------------- */

static void sess__timer_close_cb(uv_handle_t *h)
{
    struct sess *s = h->data;
    buf_free(&s->in);
    buf_free(&s->mime7_out);
    free(s->replay.items);
    tx_unref(s->spare_tx);
    if (s->msg)
        msgbuf_free(s->msg);
    cfg_unref(s->cfg);
    free(s);
}

/* Everything sess_close() marked, done from the loop. */
static void sess__teardown(struct sess *s, bool graceful)
{
    defer_cancel(&s->close_ev);
    sess_auth_cancel(s); /* no Dovecot answer reaches a freed session */
    if (s->hc)
        host_cancel(s->hc);
    sess_eom_cancel(s);
    if (s->tx) {
        if (s->closing_tx_open) {
            if (!s->last_upstream[0])
                snprintf(s->last_upstream, sizeof s->last_upstream,
                         "not sent: client disconnected");
            sess_log_tx(s, STATS_V_ABORTED, 0);
        }
        if (s->up && up_ready(s->up) && s->tx->mail_ok)
            up_command(s->up, "RSET", NULL, NULL);
        if (s->hc)
            host_tx_end(s->hc, s->tx);
        tx_unref(s->tx);
        s->tx = NULL;
    }
    sess_reply_drop_all(s);
    sess_up_drop(s);
    if (s->hc) {
        host_conn_free(s->hc);
        s->hc = NULL;
    }
    if (s->dns) {
        dns_name_cancel(s->dns); /* no callback after this */
        s->dns = NULL;
    }
    if (s->conn) {
        conn_flush(s->conn);
        conn_close(s->conn, graceful);
        s->conn = NULL;
    }
    if (s->ip_counted)
        server_ip_release(s->srv, s->ip_key);
    if (s->sl_counted)
        s->sl->nconns--;
    server_sess_unlink(s->srv, &s->link);
    stats_conn_close();
    log_c_info(&s->log, "event=disconnect client=%s:%d errors=%u duration=%.3f",
               s->info.client_addr, s->info.client_port, s->errors,
               (double)(clock_mono_ns() - s->conn_started_ns) / 1e9);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, sess__timer_close_cb);
}

static void sess__close_ev(struct defer_ev *ev)
{
    struct sess *s = (struct sess *)((char *)ev - offsetof(struct sess, close_ev));
    defer_cancel(&s->more_ev);
    sess__teardown(s, s->graceful_close);
}

void sess_close(struct sess *s, bool graceful)
{
    if (s->state == S_CLOSING)
        return;
    /* What is already queued for the client still goes out. */
    if (s->conn)
        conn_flush(s->conn);
    if (s->conn && !s->read_paused)
        conn_read_stop(s->conn);
    s->read_paused = true;
    s->graceful_close = graceful;
    /* The transaction was open in this state: remember it for the log. */
    s->closing_tx_open = sess_tx_open(s);
    sess_set_state(s, S_CLOSING);
    defer_post(&s->close_ev, sess__close_ev);
}

/* The handshake is done: what it negotiated goes to client_info (plugins,
 * the transaction log line) and to one log line of its own. */
static void sess__tls_done(struct sess *s)
{
    snprintf(s->info.tls_version, sizeof s->info.tls_version, "%s",
             conn_tls_version(s->conn) ? conn_tls_version(s->conn) : "");
    snprintf(s->info.tls_cipher, sizeof s->info.tls_cipher, "%s",
             conn_tls_cipher(s->conn) ? conn_tls_cipher(s->conn) : "");
    struct tlssrv_peer p;
    SSL *ssl = conn_tls_ssl(s->conn);
    if (ssl)
        tlssrv_peer(ssl, &p);
    else
        memset(&p, 0, sizeof p);
    snprintf(s->info.tls_peer_subject, sizeof s->info.tls_peer_subject, "%s", p.subject);
    snprintf(s->info.tls_peer_issuer, sizeof s->info.tls_peer_issuer, "%s", p.issuer);
    snprintf(s->info.tls_peer_fp, sizeof s->info.tls_peer_fp, "%s", p.verified ? p.fp : "");
    char qsni[4 * sizeof p.sni + 3], qsub[4 * sizeof p.subject + 3];
    log_c_info(&s->log,
               "event=tls client=%s:%d tls=%s cipher=%s sni=%s resumed=%s peer_cert=%s "
               "peer_fp=%s peer_subject=%s",
               s->info.client_addr, s->info.client_port, s->info.tls_version, s->info.tls_cipher,
               p.sni[0] ? log_quote(qsni, sizeof qsni, p.sni) : "-",
               ssl && SSL_session_reused(ssl) ? "yes" : "no",
               !p.cert      ? "none"
               : p.verified ? "verified"
                            : "unverified",
               p.fp[0] ? p.fp : "-", p.subject[0] ? log_quote(qsub, sizeof qsub, p.subject) : "-");
}

static void sess__on_event(struct conn *c, enum conn_event ev, int err, void *ud)
{
    (void)c;
    struct sess *s = ud;
    if (s->state == S_CLOSING)
        return;
    switch (ev) {
    case CONN_EV_EOF:
        sess_close(s, false);
        break;
    case CONN_EV_ERROR:
        log_c_debug(&s->log, "client connection error: %s", uv_strerror(err));
        sess_close(s, false);
        break;
    case CONN_EV_TLS_DONE:
        stats_tls_handshake(true);
        s->tls = true;
        sess__tls_done(s);
        if (s->tls_first) {
            /* Implicit TLS (RFC 8314): the session proper starts now. */
            s->tls_first = false;
            s->log.action = NULL;
            sess__start(s);
            break;
        }
        /* RFC 3207: the session starts over; a new EHLO is required, and
         * nothing learnt before counts (an AUTH in the clear included). */
        s->info.helo[0] = 0;
        s->info.esmtp = false;
        sess_auth_forget(s);
        if (s->hc)
            host_conn_info(s->hc, &s->info);
        buf_reset(&s->in);
        cmd_reader_init(&s->rd, CMD_LINE_MAX);
        s->log.action = NULL;
        sess_set_state(s, S_GREETED);
        sess_kick(s);
        break;
    case CONN_EV_TLS_FAIL:
        stats_tls_handshake(false);
        log_c_warn(&s->log, "client=%s TLS handshake failed: %s", s->info.client_addr,
                   conn_tls_error(s->conn));
        sess_close(s, false);
        break;
    case CONN_EV_DRAINED:
        /* Input held back while the output queue was full goes on. */
        sess_kick(s);
        break;
    default:
        break;
    }
}

/* ---- creation ---------------------------------------------------------------------- */

SSL_CTX *sess_starttls_ctx(const struct sess *s)
{
    return !s->tls && s->lst->tls == CFG_TLS_STARTTLS ? s->sl->tls_ctx : NULL;
}

/* The session proper starts: plugins' CONNECT phase, then the greeting. */
static void sess__begin(struct sess *s)
{
    s->hc = host_conn_new(s->srv->loop, &s->info);
    sess_cmd_connect(s);
}

/* Reverse lookup, then forward confirmation (the name must resolve back to
 * the client's address) on the loop's resolver (dns.c) before the
 * greeting, as MTAs do: plugins and the upstream (XCLIENT NAME) only ever
 * get a verified name. The wait is bounded by rdns_wait: past it the
 * session greets without a name (sess__dns_cb gets NULL); an answer that
 * comes later is not used by this session, but it fills the resolver's
 * cache for the client's next connection. */
static void sess__dns_cb(void *ud, const char *name)
{
    struct sess *s = ud;
    s->dns = NULL;
    if (s->state == S_CLOSING)
        return;
    if (name)
        snprintf(s->info.client_name, sizeof s->info.client_name, "%s", name);
    sess__begin(s);
}

static bool sess__start_dns(struct sess *s)
{
    /* The client's address as the session knows it: a PROXY header may
     * have replaced the socket's. */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(s->info.client_addr, s->info.client_port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(s->info.client_addr, s->info.client_port, (struct sockaddr_in6 *)&ss) != 0)
        return false;
    s->dns = dns_client_name((struct sockaddr *)&ss, s->cfg->rdns_wait_ms, sess__dns_cb, s);
    if (!s->dns)
        return false;
    s->log.action = "looking up the client's name";
    return true;
}

static void sess__refuse_busy(struct sess *s)
{
    struct server *srv = s->srv;
    bool over_total = srv->cfg->max_connections && srv->nconns > srv->cfg->max_connections;
    stats_conn_refused();
    log_c_warn(&s->log, "client=%s refused: %s", s->info.client_addr,
               srv->stopping ? "shutting down"
               : over_total  ? "too many connections"
                             : "too many connections from this address");
    sess_reply(s, 421, "4.7.0", "%s Error: too many connections, try again later",
               srv->cfg->hostname);
    sess_close(s, true);
}

int sess_accept(struct server_listener *sl, uv_stream_t *sock)
{
    struct server *srv = sl->srv;
    struct sess *s = xcalloc(1, sizeof *s);
    s->srv = srv;
    s->sl = sl;
    s->cfg = cfg_ref(srv->cfg);
    s->lst = &s->cfg->listeners[sl->idx];
    s->conn = conn_new(srv->loop, sess__on_read, sess__on_event, s);
    int rc = uv_accept(sock, (uv_stream_t *)conn_tcp(s->conn));
    if (rc != 0) {
        conn_close(s->conn, false);
        cfg_unref(s->cfg);
        free(s);
        return rc;
    }
    uv_timer_init(srv->loop, &s->timer);
    s->timer.data = s;
    s->conn_started_ns = clock_mono_ns();
    snprintf(s->info.sid, sizeof s->info.sid, "%010llX", (unsigned long long)server_next_sid(srv));
    snprintf(s->info.listener, sizeof s->info.listener, "%s", s->lst->name);
    memcpy(s->log.sid, s->info.sid, sizeof s->log.sid);
    conn_peer(s->conn, s->info.client_addr, sizeof s->info.client_addr, &s->info.client_port);
    conn_local(s->conn, s->info.local_addr, sizeof s->info.local_addr, &s->info.local_port);
    cmd_reader_init(&s->rd, CMD_LINE_MAX);
    server_sess_link(srv, &s->link, s);
    stats_conn_open();

    sl->nconns++;
    s->sl_counted = true;
    if (s->lst->proxy_protocol) {
        /* The peer is a proxy; the client it names comes in the header.
         * Per-address limits wait for that address. */
        if (!cidr_match(s->lst->proxy_nets.v, s->lst->proxy_nets.n, s->info.client_addr)) {
            stats_proxy_header(STATS_PROXY_UNTRUSTED);
            log_c_warn(&s->log,
                       "client=%s:%d refused: listener %s takes a PROXY header only from "
                       "proxy_trusted",
                       s->info.client_addr, s->info.client_port, s->lst->name);
            sess_close(s, false);
            return 0;
        }
        snprintf(s->proxy_peer, sizeof s->proxy_peer, "%s:%d", s->info.client_addr,
                 s->info.client_port);
        if (!SERVER_NODELAY_INHERITED)
            conn_set_nodelay(s->conn);
        conn_read_start(s->conn);
        s->log.action = "reading the PROXY header";
        sess_set_state(s, S_PROXY);
        sess_arm_timer(s);
        return 0;
    }
    if (!SERVER_NODELAY_INHERITED)
        conn_set_nodelay(s->conn);
    conn_read_start(s->conn);
    sess__accepted(s, NULL, 0);
    return 0;
}

/* The client's address is known (from the socket or a PROXY header):
 * limits, then TLS for an implicit-TLS listener (`early`: bytes of its
 * handshake that came behind the header), then the session. */
static void sess__accepted(struct sess *s, const char *early, size_t early_len)
{
    struct server *srv = s->srv;
    struct server_listener *sl = s->sl;
    bool over_total = srv->cfg->max_connections && srv->nconns > srv->cfg->max_connections;
    bool over_listener = s->lst->max_connections && sl->nconns > s->lst->max_connections;
    bool over_ip = !server_ip_acquire(srv, s->info.client_addr, s->ip_key, sizeof s->ip_key);
    s->ip_counted = !over_ip;
    if (over_total || over_listener || over_ip || srv->stopping) {
        sess__refuse_busy(s);
        return;
    }
    if (s->proxy_peer[0])
        log_c_info(&s->log, "event=connect client=%s:%d listener=%s proxy=%s", s->info.client_addr,
                   s->info.client_port, s->lst->name, s->proxy_peer);
    else
        log_c_info(&s->log, "event=connect client=%s:%d listener=%s", s->info.client_addr,
                   s->info.client_port, s->lst->name);
    if (s->lst->tls == CFG_TLS_IMPLICIT) {
        /* RFC 8314: TLS from the first byte; the greeting comes after the
         * handshake, and the command deadline bounds a stalled one. */
        if (!sl->tls_ctx ||
            (early_len ? conn_starttls_server_early(s->conn, sl->tls_ctx, early, early_len)
                       : conn_starttls_server(s->conn, sl->tls_ctx)) != 0) {
            sess_close(s, false);
            return;
        }
        s->tls_first = true;
        s->log.action = "in the client's TLS handshake";
        sess_set_state(s, S_TLS);
        sess_arm_timer(s);
        return;
    }
    sess__start(s);
}

/* An address from a PROXY header: an IPv4 client the proxy wrote as
 * IPv4-mapped IPv6 (HAProxy on a v4v6 socket) is the IPv4 client, for
 * per-address limits, XCLIENT and the logs alike. */
static void sess__set_addr(char *dst, size_t n, const char *addr)
{
    struct in6_addr a;
    if (strchr(addr, ':') && inet_pton(AF_INET6, addr, &a) == 1 && IN6_IS_ADDR_V4MAPPED(&a) &&
        inet_ntop(AF_INET, &a.s6_addr[12], dst, (socklen_t)n))
        return;
    snprintf(dst, n, "%s", addr);
}

/* A TLS version or cipher name the proxy reports goes to logs unquoted
 * and to plugins: only the characters such names have; "unknown" when
 * the proxy sent none. */
static void sess__set_token(char *dst, size_t n, const char *v)
{
    size_t j = 0;
    for (; *v && j + 1 < n; v++)
        dst[j++] = (isalnum((unsigned char)*v) || strchr("._-", *v)) ? *v : '_';
    dst[j] = 0;
    if (!j)
        snprintf(dst, n, "unknown");
}

/* Bytes on a proxy_protocol listener before its header is complete. The
 * header is parsed from the start of the buffer each time (proxyhdr is
 * pure and bounded by PROXYHDR_MAX_LEN); what follows it is the client's. */
static void sess__proxy_read(struct sess *s, const char *data, size_t len)
{
    buf_append(&s->in, data, len);
    struct proxyhdr h;
    char err[160];
    int n = proxyhdr_parse((const unsigned char *)s->in.ptr, s->in.len, &h, err, sizeof err);
    if (n == 0)
        return; /* more to come, within the deadline */
    if (n < 0) {
        stats_proxy_header(STATS_PROXY_MALFORMED);
        log_c_warn(&s->log, "client=%s refused: malformed PROXY header: %s", s->proxy_peer, err);
        sess_close(s, false);
        return;
    }
    stats_proxy_header(STATS_PROXY_OK);
    /* The TLV strings (SNI, CN, ...) are the remote client's own words:
     * quoted like every client-chosen value in the log. */
    char desc[PROXYHDR_MAX_LEN + 256], qdesc[4 * sizeof desc + 3];
    log_c_info(&s->log, "event=proxy proxy=%s header=%s", s->proxy_peer,
               log_quote(qdesc, sizeof qdesc, proxyhdr_describe(&h, desc, sizeof desc)));
    if (h.has_addrs) {
        /* From here the proxy's client is the client: limits, plugins,
         * XCLIENT, the name lookup and the logs all use it. A LOCAL or
         * UNKNOWN header (health checks) keeps the socket's addresses. */
        sess__set_addr(s->info.client_addr, sizeof s->info.client_addr, h.src_addr);
        s->info.client_port = h.src_port;
        sess__set_addr(s->info.local_addr, sizeof s->info.local_addr, h.dst_addr);
        s->info.local_port = h.dst_port;
    }
    if (h.ssl && (h.ssl_client & PROXYHDR_SSL_CLIENT_SSL)) {
        /* The proxy ended the client's TLS (PP2_TYPE_SSL): the session is
         * as private as its hop to us, which proxy_trusted vouches for. */
        s->tls = true;
        sess__set_token(s->info.tls_version, sizeof s->info.tls_version, h.ssl_version);
        sess__set_token(s->info.tls_cipher, sizeof s->info.tls_cipher, h.ssl_cipher);
    }
    buf_consume(&s->in, (size_t)n);
    s->log.action = NULL;
    sess_set_state(s, S_LOOKUP); /* until sess__start sets the next state */
    uv_timer_stop(&s->timer);
    s->deadline = 0;
    if (s->lst->tls == CFG_TLS_IMPLICIT) {
        buf_t early = s->in;
        memset(&s->in, 0, sizeof s->in);
        sess__accepted(s, early.ptr, early.len);
        buf_free(&early);
        return;
    }
    sess__accepted(s, NULL, 0);
    if (s->state != S_CLOSING && s->in.len)
        sess_kick(s); /* the client's first bytes came with the header */
}

/* After the connection's own preliminaries (TLS on an implicit-TLS
 * listener): an upstream at connect, the client's name, the session. */
static void sess__start(struct sess *s)
{
    struct server *srv = s->srv;
    if (s->cfg->connect_at == CFG_CONNECT_AT_CONNECT) {
        /* Only from a free slot: a client that has said nothing yet does
         * not queue; its MAIL will. */
        char key[64];
        if (upslot_try(&srv->upslots, &s->slot, &sess__slot_ops,
                       server_ip_key(srv, s->info.client_addr, key, sizeof key))) {
            sess__up_open(s);
        }
    }
    if (s->cfg->reverse_dns && sess__start_dns(s)) {
        sess_set_state(s, S_LOOKUP);
        return; /* sess__begin() runs when the lookup is done */
    }
    sess__begin(s);
}

void sess_abort(struct sess *s)
{
    /* Called by the server, never from inside the session: finish now. */
    if (s->state != S_CLOSING)
        sess_close(s, false);
    sess__teardown(s, false);
}

void sess_shutdown(struct sess *s)
{
    s->shutdown = true;
    sess_kick(s);
}
