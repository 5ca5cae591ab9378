/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * session: the SMTP server side; see session.h.
 *
 * Input handling: bytes from the client are processed from a view (the
 * read buffer when nothing is pending, else s->in). In command states the
 * cmd_reader cuts lines; in DATA the data_reader consumes bytes into the
 * message buffer until CRLF.CRLF. Whenever a command must wait (upstream
 * reply, plugin phase, TLS handshake) s->wait is set and processing stops;
 * the completion clears it and kicks processing again from s->in.
 *
 * Replies: every command produces exactly one reply, in order. A reply that
 * is known at once goes into the output (or behind pending slots); a reply
 * that depends on the upstream reserves a slot in s->slots and is filled
 * when the upstream answers. Commands that must see every earlier reply
 * (DATA, RSET, QUIT, EHLO ...) wait until the slot FIFO is empty.
 */
#include "session.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "conn.h"
#include "host.h"
#include "log.h"
#include "mime7.h"
#include "msgbuf.h"
#include "resolve.h"
#include "server.h"
#include "smtp_data.h"
#include "stats.h"
#include "upstream.h"

enum sess_state {
    S_GREETING = 0, /* connect phase running, greeting not sent */
    S_CONNECTED,    /* greeting sent, no HELO yet */
    S_HELO,         /* HELO/EHLO done, no transaction */
    S_MAIL,         /* MAIL sent */
    S_RCPT,         /* at least one RCPT sent */
    S_DATA,         /* reading the message */
    S_EOM,          /* message complete, chain + upstream running */
    S_TLS,          /* STARTTLS handshake running */
    S_QUIT,         /* closing after the last reply */
};

static const char *const sess_state_names[] = {
    "greeting", "connected", "helo", "mail", "rcpt", "data", "eom", "tls", "quit",
};

enum sess_wait {
    W_NONE = 0,
    W_UPSTREAM, /* opening / identifying the upstream */
    W_SLOTS,    /* barrier: waiting for earlier replies */
    W_EOM,      /* end of data being processed */
    W_TLS,
    W_PHASE,    /* plugin phase */
};

struct slot {
    struct slot *next;
    struct sess *s;
    bool filled;
    bool is_mail;       /* reply belongs to MAIL */
    bool is_rcpt;       /* reply belongs to RCPT */
    char *rcpt_addr;    /* owned, for RCPT: added to the tx on 2xx */
    char *rcpt_dsn;     /* owned */
    buf_t text;         /* the reply, CRLF-terminated lines */
};

struct sess {
    struct sess *next, *prev; /* server list */
    struct server *srv;
    struct cfg *cfg;          /* referenced for the session's life */
    struct conn *conn;
    uv_timer_t timer;
    struct sess_info info;
    enum sess_state state;
    enum sess_wait wait;
    bool processing;
    bool closing;       /* close after output is flushed */
    bool closed;        /* conn closed; free when handles are */
    bool read_paused;   /* backpressure */
    bool shutdown;      /* SIGTERM: close at the next idle point */
    bool ip_counted;
    bool close_after_reply;  /* a 421 was sent: close once it is out */
    unsigned ncmds;          /* commands handled (timer bookkeeping) */
    unsigned timer_ncmds;    /* ncmds when the timer was last armed */
    size_t timer_bytes;      /* DATA bytes since the timer was last armed */
    uint64_t deadline;       /* loop time (ms) the client must act by; 0: none */
    uint64_t timer_due;      /* when the libuv timer fires, if active */
    bool tls;
    unsigned errors;
    struct cmd_reader rd;
    buf_t in;           /* unprocessed client input */
    struct slot *slots_head, *slots_tail;
    size_t nslots;

    struct up *up;
    struct sess_tx tx;
    struct data_reader dr;
    struct msgbuf *msg;
    buf_t mime7_out;
    struct iovec segs[4];
    /* the command line being handled across an asynchronous step */
    char pending_line[CMD_LINE_MAX + 1];
    size_t pending_len;
    int pending_verb;
    void (*phase_cont)(struct sess *s, const struct host_result *r);
    bool tx_identified; /* XCLIENT/XFORWARD done for the MAIL in progress */

    struct host_conn *hc;      /* plugin host state (NULL if none) */
    struct resolve_req *dns;   /* client name lookup in progress */
    char phase_addr[CMD_ADDR_MAX + 1]; /* MAIL/RCPT address across a plugin phase */
    char phase_params[600];
    unsigned replay_pending;    /* envelope replay commands in flight */
    unsigned replay_ok;         /* recipients the upstream accepted in the replay */
    char replay_fail[300];      /* last replay refusal */
    bool replay_mail_failed;

    /* for the transaction log line */
    char last_upstream[300];
    uint64_t bytes_in;
    uint64_t conn_started_ns;
};

static void sess__kick(struct sess *s);
static void sess__close(struct sess *s, bool graceful);
static void sess__process_input(struct sess *s);
static void sess__mail_proceed(struct sess *s);

/* ---- utilities ----------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sess__set_state(struct sess *s, enum sess_state st)
{
    if (s->state != st && log_enabled(LOG_LVL_DEBUG))
        log_debug("sid=%s state %s -> %s", s->info.sid, sess_state_names[s->state],
                  sess_state_names[st]);
    s->state = st;
}

static void sess__arm_timer(struct sess *s);

/* Hand queued output to the conn (which writes it once per loop turn). */
static void sess__flush(struct sess *s)
{
    if (!s->closed && s->conn)
        conn_flush(s->conn);
}

/* Append a complete reply (already formatted, CRLF-terminated). */
static void sess__emit(struct sess *s, const char *p, size_t n)
{
    if (s->closed)
        return;
    int code = atoi(p);
    stats_smtp_reply(code);
    if (code == 421)
        s->close_after_reply = true; /* 421 means the session ends (RFC 5321 §3.8) */
    if (log_enabled(LOG_LVL_DEBUG))
        log_debug("sid=%s client< %.*s", s->info.sid, (int)(n > 2 ? n - 2 : n), p);
    conn_write(s->conn, p, n);
}

static void sess__flush_slots(struct sess *s)
{
    while (s->slots_head && s->slots_head->filled) {
        struct slot *sl = s->slots_head;
        s->slots_head = sl->next;
        if (!s->slots_head)
            s->slots_tail = NULL;
        s->nslots--;
        sess__emit(s, sl->text.ptr, sl->text.len);
        buf_free(&sl->text);
        free(sl->rcpt_addr);
        free(sl->rcpt_dsn);
        free(sl);
    }
}

/* Format "CODE ENH text" (single line) into b. */
static void fmt_reply(buf_t *b, int code, const char *enh, const char *fmt, va_list ap)
{
    if (enh && *enh)
        buf_printf(b, "%d %s ", code, enh);
    else
        buf_printf(b, "%d ", code);
    buf_vprintf(b, fmt, ap);
    buf_puts(b, "\r\n");
}

/* A reply known now: straight out, or behind the pending slots. */
static void sess__reply(struct sess *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void sess__reply(struct sess *s, int code, const char *enh, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (!s->slots_head) {
        buf_t b = BUF_INIT;
        fmt_reply(&b, code, enh, fmt, ap);
        sess__emit(s, b.ptr, b.len);
        buf_free(&b);
    } else {
        struct slot *sl = calloc(1, sizeof *sl);
        if (sl) {
            sl->s = s;
            sl->filled = true;
            fmt_reply(&sl->text, code, enh, fmt, ap);
            s->slots_tail->next = sl;
            s->slots_tail = sl;
            s->nslots++;
        }
    }
    va_end(ap);
}

static struct slot *sess__slot_new(struct sess *s)
{
    struct slot *sl = calloc(1, sizeof *sl);
    if (!sl)
        return NULL;
    sl->s = s;
    if (s->slots_tail)
        s->slots_tail->next = sl;
    else
        s->slots_head = sl;
    s->slots_tail = sl;
    s->nslots++;
    return sl;
}

/* Default enhanced code for a reply that came without one. */
static const char *default_enh(int code)
{
    if (code >= 500)
        return "5.0.0";
    if (code >= 400)
        return "4.0.0";
    return "2.0.0";
}

/* Relay an upstream reply: same code and text, always with an enhanced code
 * (we announce ENHANCEDSTATUSCODES even when the upstream does not). */
static void fmt_relay(buf_t *b, const struct smtp_reply *r)
{
    const char *enh = r->enh[0] ? r->enh : default_enh(r->code);
    size_t n = r->nlines ? r->nlines : 1;
    for (size_t i = 0; i < n; i++) {
        const char *t = r->nlines ? r->lines[i] : "";
        buf_printf(b, "%d%c%s%s%s\r\n", r->code, i + 1 < n ? '-' : ' ', enh, *t ? " " : "", t);
    }
}

/* Map an upstream failure to our own reply (never relayed). */
static void fmt_up_error(buf_t *b, enum up_err e)
{
    switch (e) {
    case UP_ERR_CONNECT:
        buf_puts(b, "451 4.4.1 Upstream server unavailable, try again later\r\n");
        break;
    case UP_ERR_TIMEOUT:
        buf_puts(b, "451 4.4.2 Upstream server timed out, try again later\r\n");
        break;
    case UP_ERR_LOST:
        buf_puts(b, "451 4.4.2 Connection to upstream server lost, try again later\r\n");
        break;
    case UP_ERR_TLS:
        buf_puts(b, "451 4.7.5 Secure connection to upstream server failed, try again later\r\n");
        break;
    case UP_ERR_LOCAL:
        buf_puts(b, "451 4.3.0 Local error in processing, try again later\r\n");
        break;
    default:
        buf_puts(b, "451 4.4.0 Upstream protocol error, try again later\r\n");
        break;
    }
}

static void sess__last_upstream(struct sess *s, const struct up_result *r)
{
    if (r->err == UP_OK && r->reply)
        snprintf(s->last_upstream, sizeof s->last_upstream, "%d %s%s%s", r->reply->code,
                 r->reply->enh, r->reply->enh[0] ? " " : "",
                 r->reply->nlines ? r->reply->lines[0] : "");
    else
        snprintf(s->last_upstream, sizeof s->last_upstream, "error: %s",
                 r->why ? r->why : "upstream failure");
}

/* ---- transaction --------------------------------------------------------- */

static void tx_clear(struct sess_tx *tx)
{
    for (size_t i = 0; i < tx->nrcpts; i++) {
        free(tx->rcpts[i].addr);
        free(tx->rcpts[i].dsn);
    }
    free(tx->rcpts);
    memset(tx, 0, sizeof *tx);
}

static int tx_add_rcpt(struct sess_tx *tx, char *addr, char *dsn)
{
    if (tx->nrcpts == tx->cap_rcpts) {
        size_t ncap = tx->cap_rcpts ? tx->cap_rcpts * 2 : 4;
        struct sess_rcpt *n = realloc(tx->rcpts, ncap * sizeof *n);
        if (!n)
            return -ENOMEM;
        tx->rcpts = n;
        tx->cap_rcpts = ncap;
    }
    tx->rcpts[tx->nrcpts].addr = addr;
    tx->rcpts[tx->nrcpts].dsn = dsn;
    tx->rcpts[tx->nrcpts].removed = false;
    tx->nrcpts++;
    return 0;
}

static const char *const verdict_names[] = {
    "accepted", "rejected", "tempfailed", "discarded", "quarantined", "aborted",
};

/* One log line per transaction, session id first. */
static void sess__log_tx(struct sess *s, enum stats_verdict v, uint64_t size_out)
{
    uint64_t ns = s->tx.started_ns ? now_ns() - s->tx.started_ns : 0;
    double secs = (double)ns / 1e9;
    unsigned long long ms = (unsigned long long)(ns / 1000000u);
    buf_t extra = BUF_INIT;
    bool plugins = s->hc && host_conn_active(s->hc);
    if (plugins)
        host_tx_summary(s->hc, &extra);
    log_info("sid=%s event=tx client=%s:%d helo=%s tls=%s from=<%s> rcpts=%zu size=%llu "
             "upstream=\"%s\" verdict=%s duration=%llu.%03llu%s",
             s->info.sid, s->info.client_addr, s->info.client_port,
             s->info.helo[0] ? s->info.helo : "-",
             s->info.tls_version[0] ? s->info.tls_version : "none", s->tx.sender, s->tx.nrcpts,
             (unsigned long long)s->bytes_in, s->last_upstream, verdict_names[v], ms / 1000,
             ms % 1000, extra.ptr ? extra.ptr : "");
    buf_free(&extra);
    if (plugins)
        host_tx_record(s->hc, verdict_names[v], s->last_upstream);
    stats_transaction(v, (unsigned)s->tx.nrcpts, s->bytes_in, size_out, secs);
}

/* End the transaction locally; `abort_upstream` sends RSET when the
 * upstream has a transaction open. */
static void sess__tx_end(struct sess *s, bool abort_upstream)
{
    if (abort_upstream && s->tx.active && s->up && up_ready(s->up))
        up_command(s->up, "RSET", NULL, NULL);
    if (s->hc) {
        if (!s->msg)
            s->msg = host_tx_reclaim_msgbuf(s->hc); /* reuse its memory */
        host_tx_end(s->hc);
    }
    tx_clear(&s->tx);
    if (s->msg)
        msgbuf_reset(s->msg);
    buf_free(&s->mime7_out);
    s->bytes_in = 0;
    s->last_upstream[0] = 0;
    if (s->state == S_MAIL || s->state == S_RCPT || s->state == S_DATA || s->state == S_EOM)
        sess__set_state(s, S_HELO);
}

/* ---- errors and limits --------------------------------------------------- */

/* Count a client error; past the limit the session ends with 421. */
static bool sess__error(struct sess *s)
{
    s->errors++;
    if (s->cfg->max_errors && s->errors >= s->cfg->max_errors) {
        sess__reply(s, 421, "4.7.0", "%s Error: too many errors, closing connection",
                    s->cfg->hostname);
        sess__close(s, true);
        return false;
    }
    return true;
}

/* ---- upstream callbacks ---------------------------------------------------- */

static void sess__mail_reply_cb(void *ud, const struct up_result *r)
{
    struct slot *sl = ud;
    struct sess *s = sl->s;
    sess__last_upstream(s, r);
    if (r->err != UP_OK) {
        fmt_up_error(&sl->text, r->err);
        s->tx.active = false;
        if (s->state == S_MAIL || s->state == S_RCPT)
            sess__set_state(s, S_HELO);
    } else {
        fmt_relay(&sl->text, r->reply);
        if (r->reply->code >= 200 && r->reply->code < 300) {
            s->tx.mail_ok = true;
        } else if (s->state == S_MAIL || s->state == S_RCPT) {
            /* No transaction upstream: RCPTs already pipelined behind this
             * MAIL get the upstream's own 503, relayed in order. */
            s->tx.active = false;
            s->tx.mail_ok = false;
            sess__set_state(s, S_HELO);
        }
    }
    sl->filled = true;
    sess__flush_slots(s);
    sess__flush(s);
    sess__kick(s);
}

static void sess__rcpt_reply_cb(void *ud, const struct up_result *r)
{
    struct slot *sl = ud;
    struct sess *s = sl->s;
    sess__last_upstream(s, r);
    if (r->err != UP_OK) {
        fmt_up_error(&sl->text, r->err);
    } else if (r->reply->code >= 200 && r->reply->code < 300 && !s->tx.mail_ok) {
        /* Out of protocol: an upstream 250 for a RCPT without a transaction
         * is never relayed. */
        buf_puts(&sl->text, "503 5.5.1 Error: need MAIL command\r\n");
    } else {
        fmt_relay(&sl->text, r->reply);
        if (r->reply->code >= 200 && r->reply->code < 300) {
            if (s->hc && host_conn_active(s->hc))
                host_tx_rcpt_accepted(s->hc, sl->rcpt_addr, sl->rcpt_dsn);
            if (tx_add_rcpt(&s->tx, sl->rcpt_addr, sl->rcpt_dsn) == 0) {
                sl->rcpt_addr = NULL;
                sl->rcpt_dsn = NULL;
            }
        }
    }
    sl->filled = true;
    sess__flush_slots(s);
    sess__flush(s);
    sess__kick(s);
}

/* ---- EHLO ------------------------------------------------------------------- */

static unsigned sess__upstream_caps(struct sess *s)
{
    if (s->up && up_ready(s->up))
        return up_caps(s->up);
    return s->srv->upstream_caps_known ? s->srv->upstream_caps : 0;
}

static void sess__ehlo_reply(struct sess *s, const char *helo)
{
    buf_t b = BUF_INIT;
    unsigned caps = sess__upstream_caps(s);
    buf_printf(&b, "250-%s Hello %s\r\n", s->cfg->hostname, helo);
    buf_puts(&b, "250-PIPELINING\r\n");
    buf_printf(&b, "250-SIZE %llu\r\n", (unsigned long long)s->cfg->max_message_size);
    buf_puts(&b, "250-8BITMIME\r\n");
    if (s->srv->tls_ctx && !s->tls)
        buf_puts(&b, "250-STARTTLS\r\n");
    if (caps & UP_CAP_DSN)
        buf_puts(&b, "250-DSN\r\n");
    if (caps & UP_CAP_SMTPUTF8)
        buf_puts(&b, "250-SMTPUTF8\r\n");
    buf_puts(&b, "250 ENHANCEDSTATUSCODES\r\n");
    stats_smtp_reply(250);
    conn_write(s->conn, b.ptr, b.len);
    buf_free(&b);
}

/* ---- plugin phases -------------------------------------------------------- */

typedef void (*sess_phase_cont)(struct sess *s, const struct host_result *r);

static void sess__phase_done(void *ud, const struct host_result *r)
{
    struct sess *s = ud;
    sess_phase_cont cont = s->phase_cont;
    s->phase_cont = NULL;
    s->wait = W_NONE;
    cont(s, r);
    if (s->closed)
        return;
    sess__flush(s);
    if (s->wait == W_NONE)
        sess__kick(s);
}

/* check -> plugin phase -> proceed: `cont` runs when the chain answered
 * (r NULL when the chain is empty), maybe before this returns. */
static void sess__phase(struct sess *s, enum sluice_phase ph, sess_phase_cont cont)
{
    if (!s->hc || !host_conn_active(s->hc)) {
        cont(s, NULL);
        return;
    }
    s->wait = W_PHASE;
    s->phase_cont = cont;
    host_run(s->hc, ph, sess__phase_done, s);
}

/* A refusing verdict becomes the command's reply. true if refused. */
static bool sess__refused(struct sess *s, const struct host_result *r)
{
    if (!r)
        return false;
    switch (r->verdict) {
    case SLUICE_REJECT:
    case SLUICE_TEMPFAIL:
        sess__reply(s, r->code, r->enh, "%s", r->text);
        return true;
    case SLUICE_DISCONNECT:
        sess__reply(s, 421, r->enh[0] == '4' ? r->enh : "4.7.0", "%s", r->text);
        sess__close(s, true);
        return true;
    default:
        return false;
    }
}

/* ---- commands ------------------------------------------------------------- */

static bool sess__is_barrier(enum cmd_verb v)
{
    return !(v == CMD_MAIL || v == CMD_RCPT || v == CMD_NOOP);
}

static void sess__helo_cont(struct sess *s, const struct host_result *r)
{
    bool esmtp = s->pending_verb == CMD_EHLO;
    s->pending_verb = 0;
    if (sess__refused(s, r)) {
        s->info.helo[0] = 0;
        if (!s->closed && s->state == S_HELO)
            sess__set_state(s, S_CONNECTED);
        return;
    }
    sess__set_state(s, S_HELO);
    if (esmtp)
        sess__ehlo_reply(s, s->info.helo);
    else
        sess__reply(s, 250, "2.0.0", "%s", s->cfg->hostname);
}

static void sess__cmd_helo(struct sess *s, const struct cmd *c, bool esmtp)
{
    if (c->arg_len == 0 || !cmd_helo_valid(c->arg, c->arg_len)) {
        sess__reply(s, 501, "5.5.4", "Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        sess__error(s);
        return;
    }
    /* A new HELO/EHLO resets any transaction (RFC 5321 §4.1.4). */
    if (s->tx.active)
        sess__tx_end(s, true);
    size_t n = c->arg_len < sizeof s->info.helo - 1 ? c->arg_len : sizeof s->info.helo - 1;
    memcpy(s->info.helo, c->arg, n);
    s->info.helo[n] = 0;
    s->info.esmtp = esmtp;
    s->pending_verb = esmtp ? CMD_EHLO : CMD_HELO;
    if (s->hc)
        host_conn_info(s->hc, &s->info);
    sess__phase(s, SLUICE_PHASE_HELO, sess__helo_cont);
}

static void sess__up_open_cb(void *ud, const struct up_result *r);
static void sess__up_ident_cb(void *ud, const struct up_result *r);

/* Upstream ready for a transaction (opened and identified)? If not, start
 * that and return false; sess__mail_proceed() runs again when it is. */
static bool sess__ensure_upstream(struct sess *s)
{
    if (s->up && up_failed(s->up)) {
        up_free(s->up);
        s->up = NULL;
    }
    if (!s->up) {
        s->up = up_new(s->srv->loop, s->cfg, s->info.sid);
        if (!s->up) {
            sess__reply(s, 451, "4.3.0", "Local error in processing");
            return false;
        }
        s->wait = W_UPSTREAM;
        up_open(s->up, sess__up_open_cb, s);
        return false;
    }
    if (!up_ready(s->up)) {
        s->wait = W_UPSTREAM;
        return false; /* opening (connect-at-connect); the open callback resumes */
    }
    return true;
}

static void sess__up_open_cb(void *ud, const struct up_result *r)
{
    struct sess *s = ud;
    if (r->err != UP_OK) {
        if (s->wait == W_UPSTREAM && s->pending_verb == CMD_MAIL) {
            buf_t b = BUF_INIT;
            fmt_up_error(&b, r->err);
            sess__emit(s, b.ptr, b.len);
            buf_free(&b);
            sess__last_upstream(s, r);
            s->wait = W_NONE;
            s->pending_verb = 0;
            sess__flush(s);
            sess__kick(s);
        }
        return;
    }
    s->srv->upstream_caps = up_caps(s->up);
    s->srv->upstream_caps_known = true;
    if (s->wait == W_UPSTREAM && s->pending_verb == CMD_MAIL) {
        s->wait = W_NONE;
        sess__mail_proceed(s);
        if (s->wait == W_NONE) {
            sess__flush(s);
            sess__kick(s);
        }
    }
}

static void sess__up_ident_cb(void *ud, const struct up_result *r)
{
    struct sess *s = ud;
    if (s->wait != W_UPSTREAM || s->pending_verb != CMD_MAIL)
        return;
    s->wait = W_NONE;
    if (r->err != UP_OK || r->reply->code >= 400) {
        /* The upstream refused the real client (its policy) or failed. */
        buf_t b = BUF_INIT;
        if (r->err != UP_OK)
            fmt_up_error(&b, r->err);
        else
            fmt_relay(&b, r->reply);
        sess__emit(s, b.ptr, b.len);
        buf_free(&b);
        sess__last_upstream(s, r);
        s->pending_verb = 0;
        if (r->err == UP_OK && r->reply->code == 421)
            sess__close(s, true);
        else
            sess__kick(s);
        return;
    }
    s->tx_identified = true;
    sess__mail_proceed(s);
    if (s->wait == W_NONE) {
        sess__flush(s);
        sess__kick(s);
    }
}

/* MAIL: the checks passed and the plugin phase continued; now upstream. */
static void sess__mail_proceed(struct sess *s)
{
    if (!sess__ensure_upstream(s))
        return;
    if (!s->tx_identified) {
        struct up_client_info ci;
        memset(&ci, 0, sizeof ci);
        snprintf(ci.addr, sizeof ci.addr, "%s", s->info.client_addr);
        ci.port = s->info.client_port;
        snprintf(ci.name, sizeof ci.name, "%s", s->info.client_name);
        snprintf(ci.helo, sizeof ci.helo, "%s", s->info.helo);
        ci.esmtp = s->info.esmtp;
        ci.tls = s->tls;
        s->wait = W_UPSTREAM;
        up_identify(s->up, &ci, sess__up_ident_cb, s);
        return; /* the callback (maybe already run) continues */
    }
    s->tx_identified = false;
    struct cmd c;
    cmd_parse(s->pending_line, s->pending_len, &c);
    struct cmd_path path;
    struct cmd_params prm;
    const char *why = NULL;
    cmd_parse_mailrcpt(c.arg, c.arg_len, false, &path, &prm, &why);
    s->pending_verb = 0;
    unsigned caps = up_caps(s->up);

    if (prm.smtputf8 && !(caps & UP_CAP_SMTPUTF8)) {
        sess__reply(s, 553, "5.6.7", "Upstream server does not support SMTPUTF8");
        return;
    }
    if (caps & UP_CAP_SIZE && up_size_limit(s->up) && prm.has_size &&
        prm.size > up_size_limit(s->up)) {
        sess__reply(s, 552, "5.3.4", "Message size exceeds the upstream's limit");
        return;
    }
    buf_t line = BUF_INIT;
    buf_printf(&line, "MAIL FROM:<%s>", s->phase_addr);
    buf_t params = BUF_INIT;
    if (prm.has_size && (caps & UP_CAP_SIZE))
        buf_printf(&params, " SIZE=%llu", (unsigned long long)prm.size);
    if ((caps & UP_CAP_8BITMIME) && prm.body == CMD_BODY_8BITMIME)
        buf_puts(&params, " BODY=8BITMIME");
    else if ((caps & UP_CAP_8BITMIME) && prm.body == CMD_BODY_7BIT)
        buf_puts(&params, " BODY=7BIT");
    if (prm.smtputf8)
        buf_puts(&params, " SMTPUTF8");
    if (caps & UP_CAP_DSN) {
        if (prm.ret == CMD_RET_FULL)
            buf_puts(&params, " RET=FULL");
        else if (prm.ret == CMD_RET_HDRS)
            buf_puts(&params, " RET=HDRS");
        if (prm.envid)
            buf_printf(&params, " ENVID=%.*s", (int)prm.envid_len, prm.envid);
    }
    buf_append(&line, params.ptr ? params.ptr : "", params.len);

    uint64_t started = s->tx.started_ns;
    tx_clear(&s->tx);
    s->tx.active = true;
    s->tx.started_ns = started ? started : now_ns();
    snprintf(s->tx.sender, sizeof s->tx.sender, "%s", s->phase_addr);
    if (s->hc)
        host_tx_envelope_committed(s->hc);
    snprintf(s->tx.mail_params, sizeof s->tx.mail_params, "%s", params.ptr ? params.ptr : "");
    s->tx.body = prm.body;
    s->tx.smtputf8 = prm.smtputf8;
    s->tx.declared_size = prm.has_size ? prm.size : 0;
    buf_free(&params);

    struct slot *sl = sess__slot_new(s);
    if (!sl) {
        buf_free(&line);
        sess__reply(s, 451, "4.3.0", "Local error in processing");
        return;
    }
    sl->is_mail = true;
    sess__set_state(s, S_MAIL);
    up_command(s->up, line.ptr, sess__mail_reply_cb, sl);
    buf_free(&line);
}

/* Parse MAIL/RCPT's path and parameters; on error reply (RFC 5321 §4.1.1.11:
 * 501 with 5.1.7 for the sender, 5.1.3 for a recipient; RFC 1869 §6: 555
 * for an unknown parameter) and return false. */
static bool sess__parse_path(struct sess *s, const struct cmd *c, bool is_rcpt,
                             struct cmd_path *path, struct cmd_params *prm)
{
    const char *why = "syntax error";
    switch (cmd_parse_mailrcpt(c->arg, c->arg_len, is_rcpt, path, prm, &why)) {
    case CMD_PATH_OK:
        return true;
    case CMD_PATH_PARAM:
        sess__reply(s, 555, "5.5.4", "Error: %s", why);
        break;
    case CMD_PATH_PARAM_DUP:
        sess__reply(s, 501, "5.5.4", "Error: %s", why);
        break;
    default:
        if (is_rcpt)
            sess__reply(s, 501, "5.1.3", "Bad recipient address syntax (%s)", why);
        else
            sess__reply(s, 501, "5.1.7", "Bad sender address syntax (%s)", why);
        break;
    }
    sess__error(s);
    return false;
}

static void sess__mail_cont(struct sess *s, const struct host_result *r)
{
    if (sess__refused(s, r)) {
        if (s->hc)
            host_tx_end(s->hc);
        s->tx.started_ns = 0;
        return;
    }
    if (r && s->hc) {
        bool changed = false;
        const char *snd = host_tx_sender_now(s->hc, &changed, NULL);
        if (changed) {
            log_info("sid=%s sender rewritten by plugin: <%s> -> <%s>", s->info.sid,
                     s->phase_addr, snd);
            snprintf(s->phase_addr, sizeof s->phase_addr, "%s", snd);
        }
    }
    s->pending_verb = CMD_MAIL;
    s->tx_identified = false;
    sess__mail_proceed(s);
}

static void sess__cmd_mail(struct sess *s, const struct cmd *c)
{
    if (s->state == S_CONNECTED) {
        sess__reply(s, 503, "5.5.1", "Error: send HELO/EHLO first");
        sess__error(s);
        return;
    }
    if (s->tx.active) {
        sess__reply(s, 503, "5.5.1", "Error: nested MAIL command");
        sess__error(s);
        return;
    }
    if (!c->arg) {
        sess__reply(s, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
        sess__error(s);
        return;
    }
    struct cmd_path path;
    struct cmd_params prm;
    if (!sess__parse_path(s, c, false, &path, &prm))
        return;
    if (prm.has_size && s->cfg->max_message_size && prm.size > s->cfg->max_message_size) {
        sess__reply(s, 552, "5.3.4", "Message size exceeds fixed limit");
        return;
    }
    if (prm.body == CMD_BODY_BINARYMIME) {
        sess__reply(s, 555, "5.5.4", "BODY=BINARYMIME requires CHUNKING, which is not offered");
        return;
    }
    if (path.utf8 && !prm.smtputf8) {
        sess__reply(s, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
        return;
    }
    if (prm.smtputf8 && !(sess__upstream_caps(s) & UP_CAP_SMTPUTF8) && s->srv->upstream_caps_known) {
        sess__reply(s, 553, "5.6.7", "SMTPUTF8 is not supported by the upstream server");
        return;
    }
    snprintf(s->phase_addr, sizeof s->phase_addr, "%s", path.addr);
    s->tx.started_ns = now_ns();
    if (s->hc && host_conn_active(s->hc)) {
        host_tx_begin(s->hc);
        /* Plugins see the client's own ESMTP parameters (after the path). */
        const char *gt = memchr(c->arg, '>', c->arg_len);
        buf_t raw = BUF_INIT;
        if (gt)
            buf_append(&raw, gt + 1, c->arg_len - (size_t)(gt + 1 - c->arg));
        host_tx_sender(s->hc, path.addr, raw.ptr ? raw.ptr : "");
        buf_free(&raw);
    }
    sess__phase(s, SLUICE_PHASE_MAIL, sess__mail_cont);
}

static void sess__rcpt_cont(struct sess *s, const struct host_result *r)
{
    if (sess__refused(s, r))
        return;
    if (r && s->hc) {
        bool removed = false;
        const char *now = host_tx_current_rcpt_now(s->hc, &removed);
        if (removed) {
            log_info("sid=%s recipient <%s> dropped by plugin %s", s->info.sid, s->phase_addr,
                     r->plugin ? r->plugin : "");
            sess__reply(s, 250, "2.1.5", "Ok");
            return;
        }
        if (now && strcmp(now, s->phase_addr) != 0) {
            log_info("sid=%s recipient rewritten by plugin: <%s> -> <%s>", s->info.sid,
                     s->phase_addr, now);
            snprintf(s->phase_addr, sizeof s->phase_addr, "%s", now);
            const char *p = host_tx_current_rcpt_params(s->hc);
            if (up_caps(s->up) & UP_CAP_DSN)
                snprintf(s->phase_params, sizeof s->phase_params, "%s%s",
                         *p && *p != ' ' ? " " : "", p);
        }
    }
    if (!s->tx.active || (s->state != S_MAIL && s->state != S_RCPT)) {
        /* The MAIL failed meanwhile (its reply came during the phase). */
        sess__reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    struct slot *sl = sess__slot_new(s);
    if (!sl) {
        sess__reply(s, 451, "4.3.0", "Local error in processing");
        return;
    }
    sl->is_rcpt = true;
    sl->rcpt_addr = strdup(s->phase_addr);
    sl->rcpt_dsn = strdup(s->phase_params);
    s->tx.rcpts_sent++;
    sess__set_state(s, S_RCPT);
    buf_t line = BUF_INIT;
    buf_printf(&line, "RCPT TO:<%s>%s", s->phase_addr, s->phase_params);
    up_command(s->up, line.ptr, sess__rcpt_reply_cb, sl);
    buf_free(&line);
}

static void sess__cmd_rcpt(struct sess *s, const struct cmd *c)
{
    if (s->state != S_MAIL && s->state != S_RCPT) {
        sess__reply(s, 503, "5.5.1", "Error: need MAIL command");
        sess__error(s);
        return;
    }
    if (!c->arg) {
        sess__reply(s, 501, "5.5.4", "Syntax: RCPT TO:<address>");
        sess__error(s);
        return;
    }
    struct cmd_path path;
    struct cmd_params prm;
    if (!sess__parse_path(s, c, true, &path, &prm))
        return;
    if (s->cfg->max_recipients && s->tx.rcpts_sent >= s->cfg->max_recipients) {
        sess__reply(s, 452, "4.5.3", "Error: too many recipients");
        return;
    }
    if (path.utf8 && !s->tx.smtputf8) {
        sess__reply(s, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
        return;
    }
    buf_t dsn = BUF_INIT;
    if (up_caps(s->up) & UP_CAP_DSN) {
        if (prm.notify) {
            buf_puts(&dsn, " NOTIFY=");
            if (prm.notify & CMD_NOTIFY_NEVER) {
                buf_puts(&dsn, "NEVER");
            } else {
                const char *sep = "";
                if (prm.notify & CMD_NOTIFY_SUCCESS) { buf_printf(&dsn, "%sSUCCESS", sep); sep = ","; }
                if (prm.notify & CMD_NOTIFY_FAILURE) { buf_printf(&dsn, "%sFAILURE", sep); sep = ","; }
                if (prm.notify & CMD_NOTIFY_DELAY) { buf_printf(&dsn, "%sDELAY", sep); }
            }
        }
        if (prm.orcpt)
            buf_printf(&dsn, " ORCPT=%.*s", (int)prm.orcpt_len, prm.orcpt);
    }
    snprintf(s->phase_addr, sizeof s->phase_addr, "%s", path.addr);
    snprintf(s->phase_params, sizeof s->phase_params, "%s", dsn.ptr ? dsn.ptr : "");
    buf_free(&dsn);
    if (s->hc && host_conn_active(s->hc))
        host_tx_current_rcpt(s->hc, s->phase_addr, s->phase_params);
    sess__phase(s, SLUICE_PHASE_RCPT, sess__rcpt_cont);
}

static void sess__cmd_data(struct sess *s, const struct cmd *c)
{
    if (c->arg_len) {
        sess__reply(s, 501, "5.5.4", "Syntax: DATA");
        sess__error(s);
        return;
    }
    if (!s->tx.active || (s->state != S_MAIL && s->state != S_RCPT)) {
        sess__reply(s, 503, "5.5.1", "Error: need MAIL command");
        sess__error(s);
        return;
    }
    if (s->tx.nrcpts == 0) {
        sess__reply(s, 554, "5.5.1", "Error: no valid recipients");
        return;
    }
    if (!s->msg) {
        s->msg = msgbuf_new(s->cfg->memory_buffer, s->cfg->spool_dir);
        if (!s->msg) {
            sess__reply(s, 451, "4.3.0", "Local error in processing");
            return;
        }
    } else {
        msgbuf_reset(s->msg);
    }
    struct data_limits lim = {
        .max_line = s->cfg->max_line_length,
        .reject_long_lines = s->cfg->long_lines == CFG_LONG_REJECT,
        .bare = s->cfg->bare_newline == CFG_BARE_NORMALIZE ? DATA_BARE_NORMALIZE : DATA_BARE_REJECT,
        .reject_nul = true,
        .max_header = s->cfg->max_header_size,
        .max_size = s->cfg->max_message_size,
    };
    data_reader_init(&s->dr, &lim, msgbuf_sink, s->msg);
    s->bytes_in = 0;
    sess__set_state(s, S_DATA);
    sess__arm_timer(s); /* data_timeout from now on */
    sess__reply(s, 354, "", "End data with <CR><LF>.<CR><LF>");
}

static void sess__eom_reply_cb(void *ud, const struct up_result *r);
static void sess__data_cont(struct sess *s, const struct host_result *r);
static void sess__forward(struct sess *s);

/* Send the message (as the chain left it) to the upstream. */
static void sess__forward(struct sess *s)
{
    bool hosted = s->hc && host_conn_active(s->hc);
    int n;
    const char *whole = NULL;
    size_t wlen = 0;
    if (hosted) {
        n = host_tx_segments(s->hc, s->segs, (int)(sizeof s->segs / sizeof s->segs[0]));
        if (n < 0) {
            sess__reply(s, 451, "4.3.0", "Local error in processing");
            snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: local error");
            sess__log_tx(s, STATS_V_TEMPFAILED, 0);
            sess__tx_end(s, true);
            return;
        }
    } else {
        whole = msgbuf_data(s->msg, &wlen);
        s->segs[0].iov_base = (void *)whole;
        s->segs[0].iov_len = wlen;
        n = 1;
    }
    if (!(up_caps(s->up) & UP_CAP_8BITMIME) &&
        (s->dr.has_8bit || s->tx.body == CMD_BODY_8BITMIME || hosted)) {
        if (hosted)
            host_tx_render(s->hc, &whole, &wlen);
        if (mime7_is_8bit(whole, wlen)) {
            char why[200] = "";
            buf_reset(&s->mime7_out);
            int mrc = mime7_downgrade(whole, wlen, &s->mime7_out, why, sizeof why);
            if (mrc != 0) {
                if (mrc > 0)
                    sess__reply(s, 554, "5.6.3", "Conversion required but not possible: %s", why);
                else
                    sess__reply(s, 451, "4.3.0", "Local error in conversion");
                snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: %s",
                         mrc > 0 ? why : "conversion error");
                sess__log_tx(s, mrc > 0 ? STATS_V_REJECTED : STATS_V_TEMPFAILED, 0);
                sess__tx_end(s, true);
                return;
            }
            s->segs[0].iov_base = s->mime7_out.ptr;
            s->segs[0].iov_len = s->mime7_out.len;
            n = 1;
        }
    }
    sess__set_state(s, S_EOM);
    s->wait = W_EOM;
    up_data(s->up, s->segs, (size_t)n, sess__eom_reply_cb, s);
}

/* ---- envelope replay after plugin edits --------------------------------- */

static void sess__replay_done(struct sess *s)
{
    s->wait = W_NONE;
    if (s->replay_mail_failed || s->replay_ok == 0) {
        /* Nobody left to deliver to: answer with what the upstream said. */
        const char *t = s->replay_fail[0] ? s->replay_fail : "451 4.3.0 Envelope change failed";
        int code = atoi(t);
        enum stats_verdict v = code >= 500 ? STATS_V_REJECTED : STATS_V_TEMPFAILED;
        buf_t b = BUF_INIT;
        buf_printf(&b, "%s\r\n", t);
        sess__emit(s, b.ptr, b.len);
        buf_free(&b);
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: %.280s", t);
        sess__log_tx(s, v, 0);
        sess__tx_end(s, true);
        sess__flush(s);
        sess__kick(s);
        return;
    }
    host_tx_envelope_committed(s->hc);
    sess__forward(s);
    sess__flush(s);
}

static void sess__replay_cb(void *ud, const struct up_result *r, bool is_mail)
{
    struct sess *s = ud;
    if (r->err != UP_OK) {
        s->replay_mail_failed = true;
        snprintf(s->replay_fail, sizeof s->replay_fail, "451 4.4.2 Upstream failure during "
                 "envelope change");
    } else if (r->reply->code >= 300) {
        if (is_mail)
            s->replay_mail_failed = true;
        snprintf(s->replay_fail, sizeof s->replay_fail, "%d %s %s", r->reply->code,
                 r->reply->enh[0] ? r->reply->enh : default_enh(r->reply->code),
                 r->reply->nlines ? r->reply->lines[0] : "");
        log_warn("sid=%s upstream refused a plugin envelope change: %s", s->info.sid,
                 s->replay_fail);
    } else if (!is_mail) {
        s->replay_ok++;
    }
    if (--s->replay_pending == 0)
        sess__replay_done(s);
}

static void sess__replay_mail_cb(void *ud, const struct up_result *r)
{
    sess__replay_cb(ud, r, true);
}

static void sess__replay_rcpt_cb(void *ud, const struct up_result *r)
{
    sess__replay_cb(ud, r, false);
}

static void sess__replay_rset_cb(void *ud, const struct up_result *r)
{
    struct sess *s = ud;
    if (r->err != UP_OK || r->reply->code >= 300) {
        s->replay_mail_failed = true;
        snprintf(s->replay_fail, sizeof s->replay_fail, "451 4.4.2 Upstream refused RSET");
    }
    if (--s->replay_pending == 0)
        sess__replay_done(s);
}

static const char *space_params(const char *p, char *tmp, size_t tmplen)
{
    if (!p || !*p)
        return "";
    if (*p == ' ')
        return p;
    snprintf(tmp, tmplen, " %s", p);
    return tmp;
}

/* Apply the chain's envelope changes to the upstream, then forward:
 * extra recipients are added with RCPT; a changed sender or a removed
 * recipient needs RSET and the whole envelope again. */
static void sess__apply_envelope(struct sess *s)
{
    bool sender_changed = false;
    const char *params = NULL;
    const char *sender = host_tx_sender_now(s->hc, &sender_changed, &params);
    struct host_rcpt_view v[256];
    size_t total = host_tx_rcpt_view(s->hc, v, 256);
    size_t n = total < 256 ? total : 256;
    bool removed = false, added = false;
    size_t left = 0;
    for (size_t i = 0; i < n; i++) {
        removed |= v[i].removed && !v[i].added;
        added |= v[i].added && !v[i].removed;
        left += !v[i].removed;
    }
    if (left == 0) {
        /* The chain removed every recipient: nobody to deliver to. Like
         * DISCARD, the client hears 250 (a 4xx would make it retry a
         * message that can never go anywhere) and it is logged loudly. */
        log_warn("sid=%s plugins removed every recipient: message accepted and dropped",
                 s->info.sid);
        sess__reply(s, 250, "2.0.0", "Ok");
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: no recipients left");
        sess__log_tx(s, STATS_V_DISCARDED, 0);
        sess__tx_end(s, true);
        return;
    }
    if (!sender_changed && !removed && !added) {
        sess__forward(s);
        return;
    }
    bool replay = sender_changed || removed;
    s->replay_pending = 0;
    s->replay_ok = replay ? 0 : 1;
    s->replay_fail[0] = 0;
    s->replay_mail_failed = false;
    s->wait = W_EOM;
    char tmp[700];
    buf_t line = BUF_INIT;
    if (replay) {
        log_info("sid=%s envelope changed by plugins: replaying MAIL <%s> -> <%s> with %zu "
                 "recipient(s)", s->info.sid, s->tx.sender, sender, n);
        s->replay_pending += 2;
        up_command(s->up, "RSET", sess__replay_rset_cb, s);
        buf_printf(&line, "MAIL FROM:<%s>%s", sender,
                   params && *params && sender_changed ? space_params(params, tmp, sizeof tmp)
                                                       : s->tx.mail_params);
        up_command(s->up, line.ptr, sess__replay_mail_cb, s);
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].removed || (!replay && !v[i].added))
            continue;
        if (v[i].added)
            log_info("sid=%s recipient <%s> added by plugin", s->info.sid, v[i].addr);
        buf_reset(&line);
        buf_printf(&line, "RCPT TO:<%s>%s", v[i].addr, space_params(v[i].params, tmp, sizeof tmp));
        s->replay_pending++;
        up_command(s->up, line.ptr, sess__replay_rcpt_cb, s);
    }
    buf_free(&line);
    if (s->replay_pending == 0)
        sess__replay_done(s);
}

static int sess__quarantine(struct sess *s)
{
    if (!s->cfg->quarantine_dir) {
        log_error("sid=%s quarantine requested but [server] quarantine_dir is not set",
                  s->info.sid);
        return -1;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%lld-%s.eml", s->cfg->quarantine_dir, (long long)time(NULL),
             s->info.sid);
    FILE *f = fopen(path, "wx");
    if (!f) {
        log_error("sid=%s cannot create %s: %s", s->info.sid, path, strerror(errno));
        return -1;
    }
    const char *data;
    size_t len;
    host_tx_render(s->hc, &data, &len);
    fprintf(f, "X-Sluice-Quarantine: sid=%s client=%s\r\nX-Sluice-Envelope-From: <%s>\r\n",
            s->info.sid, s->info.client_addr, s->tx.sender);
    for (size_t i = 0; i < s->tx.nrcpts; i++)
        fprintf(f, "X-Sluice-Envelope-To: <%s>\r\n", s->tx.rcpts[i].addr);
    size_t w = fwrite(data, 1, len, f);
    int rc = (w == len && fflush(f) == 0 && fsync(fileno(f)) == 0) ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    if (rc != 0) {
        log_error("sid=%s cannot write %s: %s", s->info.sid, path, strerror(errno));
        unlink(path);
        return -1;
    }
    log_warn("sid=%s message quarantined in %s", s->info.sid, path);
    return 0;
}

static void sess__data_cont(struct sess *s, const struct host_result *r)
{
    if (r && (r->verdict == SLUICE_REJECT || r->verdict == SLUICE_TEMPFAIL ||
              r->verdict == SLUICE_DISCONNECT)) {
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: %s by %s",
                 r->verdict == SLUICE_REJECT ? "rejected" : "tempfailed",
                 r->plugin ? r->plugin : "chain");
        enum stats_verdict v = r->verdict == SLUICE_REJECT ? STATS_V_REJECTED : STATS_V_TEMPFAILED;
        if (r->verdict != SLUICE_DISCONNECT)
            sess__log_tx(s, v, 0);
        sess__refused(s, r);
        if (!s->closed)
            sess__tx_end(s, true);
        return;
    }
    if (host_tx_quarantine(s->hc)) {
        if (sess__quarantine(s) != 0) {
            sess__reply(s, 451, "4.3.0", "Local error in processing, try again later");
            snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: quarantine failed");
            sess__log_tx(s, STATS_V_TEMPFAILED, 0);
        } else {
            if (host_tx_quarantine_accepts(s->hc))
                sess__reply(s, 250, "2.0.0", "Ok");
            else
                sess__reply(s, 554, "5.7.1", "Message quarantined");
            snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: quarantined");
            sess__log_tx(s, STATS_V_QUARANTINED, 0);
        }
        sess__tx_end(s, true);
        return;
    }
    if (host_tx_discard(s->hc)) {
        sess__reply(s, 250, "2.0.0", "Ok");
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: discarded");
        sess__log_tx(s, STATS_V_DISCARDED, 0);
        sess__tx_end(s, true);
        return;
    }
    sess__apply_envelope(s);
}

/* The whole message is in; decide and forward. */
static void sess__end_of_data(struct sess *s)
{
    unsigned errs = data_reader_errors(&s->dr);
    s->bytes_in = s->dr.out_bytes;
    int merr = msgbuf_error(s->msg);
    enum stats_verdict v = STATS_V_REJECTED;
    if (errs & DATA_ERR_SINK || merr) {
        log_warn("sid=%s spool write failed: %s", s->info.sid, strerror(merr ? -merr : EIO));
        stats_error();
        sess__reply(s, 452, "4.3.1", "Insufficient system storage");
        v = STATS_V_TEMPFAILED;
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: spool error");
    } else if (errs & DATA_ERR_TOO_BIG) {
        sess__reply(s, 552, "5.3.4", "Error: message too large");
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: too large");
    } else if (errs & DATA_ERR_BARE_NL) {
        sess__reply(s, 550, "5.5.2", "Error: bare <CR> or <LF> received in message data");
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: bare newline");
    } else if (errs & DATA_ERR_NUL) {
        sess__reply(s, 550, "5.6.0", "Error: NUL byte in message data");
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: NUL byte");
    } else if (errs & DATA_ERR_LINE_TOO_LONG) {
        sess__reply(s, 550, "5.5.2", "Error: message line longer than %zu octets",
                    s->cfg->max_line_length);
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: line too long");
    } else if (errs & DATA_ERR_HEADER_TOO_BIG) {
        sess__reply(s, 552, "5.3.4", "Error: message header too large");
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: header too large");
    } else {
        int rc = msgbuf_finish(s->msg);
        if (rc != 0) {
            log_warn("sid=%s spool finish failed: %s", s->info.sid, strerror(-rc));
            stats_error();
            sess__reply(s, 452, "4.3.1", "Insufficient system storage");
            snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: spool error");
            v = STATS_V_TEMPFAILED;
        } else if (s->hc && host_conn_active(s->hc)) {
            if (host_tx_message(s->hc, s->msg) != 0) {
                s->msg = NULL;
                sess__reply(s, 451, "4.3.0", "Local error in processing");
                v = STATS_V_TEMPFAILED;
                goto refused;
            }
            s->msg = NULL; /* the host owns it now */
            sess__set_state(s, S_EOM);
            sess__phase(s, SLUICE_PHASE_DATA, sess__data_cont);
            return;
        } else {
            sess__set_state(s, S_EOM);
            sess__forward(s);
            return;
        }
    }
refused:
    sess__log_tx(s, v, 0);
    sess__tx_end(s, true);
    if (errs && !sess__error(s))
        return;
}

static void sess__eom_reply_cb(void *ud, const struct up_result *r)
{
    struct sess *s = ud;
    buf_t b = BUF_INIT;
    enum stats_verdict v;
    sess__last_upstream(s, r);
    if (r->err != UP_OK) {
        fmt_up_error(&b, r->err);
        v = STATS_V_TEMPFAILED;
    } else {
        fmt_relay(&b, r->reply);
        v = r->reply->code < 300 ? STATS_V_ACCEPTED
            : r->reply->code < 500 ? STATS_V_TEMPFAILED : STATS_V_REJECTED;
    }
    sess__emit(s, b.ptr, b.len);
    buf_free(&b);
    sess__log_tx(s, v, r->err == UP_OK ? up_data_bytes(s->up) : 0);
    /* The upstream's transaction ended with its final reply. */
    s->tx.active = false;
    sess__tx_end(s, false);
    s->wait = W_NONE;
    sess__flush(s);
    sess__kick(s);
}

static void sess__cmd_rset(struct sess *s, const struct cmd *c)
{
    if (c->arg_len) {
        sess__reply(s, 501, "5.5.4", "Syntax: RSET");
        sess__error(s);
        return;
    }
    if (s->tx.active)
        sess__log_tx(s, STATS_V_ABORTED, 0);
    sess__tx_end(s, true);
    sess__reply(s, 250, "2.0.0", "Ok");
}

static void sess__cmd_starttls(struct sess *s, const struct cmd *c)
{
    if (!s->srv->tls_ctx) {
        sess__reply(s, 502, "5.5.1", "Error: command not implemented");
        sess__error(s);
        return;
    }
    if (s->tls) {
        sess__reply(s, 503, "5.5.1", "Error: TLS already active");
        sess__error(s);
        return;
    }
    if (c->arg_len) {
        sess__reply(s, 501, "5.5.4", "Syntax: STARTTLS");
        sess__error(s);
        return;
    }
    if (s->tx.active)
        sess__tx_end(s, true);
    sess__reply(s, 220, "2.0.0", "Ready to start TLS");
    sess__flush(s);
    if (conn_starttls_server(s->conn, s->srv->tls_ctx) != 0) {
        sess__close(s, false);
        return;
    }
    /* CVE-2011-0411: anything pipelined after STARTTLS is discarded. */
    buf_reset(&s->in);
    sess__set_state(s, S_TLS);
    s->wait = W_TLS;
}

/* Handle one command line. */
static void sess__command(struct sess *s, const char *line, size_t len)
{
    s->ncmds++;
    struct cmd c;
    cmd_parse(line, len, &c);
    if (log_enabled(LOG_LVL_DEBUG))
        log_debug("sid=%s client> %.*s", s->info.sid, (int)len, line);
    if (c.has_nul) {
        sess__reply(s, 500, "5.5.2", "Error: NUL character in command");
        sess__error(s);
        return;
    }
    if (c.has_8bit && c.verb != CMD_MAIL && c.verb != CMD_RCPT) {
        sess__reply(s, 500, "5.5.2", "Error: 8-bit characters in command");
        sess__error(s);
        return;
    }
    memcpy(s->pending_line, line, len);
    s->pending_line[len] = 0;
    s->pending_len = len;
    switch (c.verb) {
    case CMD_EHLO: sess__cmd_helo(s, &c, true); break;
    case CMD_HELO: sess__cmd_helo(s, &c, false); break;
    case CMD_MAIL: sess__cmd_mail(s, &c); break;
    case CMD_RCPT: sess__cmd_rcpt(s, &c); break;
    case CMD_DATA: sess__cmd_data(s, &c); break;
    case CMD_RSET: sess__cmd_rset(s, &c); break;
    case CMD_NOOP: sess__reply(s, 250, "2.0.0", "Ok"); break;
    case CMD_QUIT:
        sess__reply(s, 221, "2.0.0", "Bye");
        if (s->tx.active)
            sess__log_tx(s, STATS_V_ABORTED, 0);
        sess__tx_end(s, true);
        sess__close(s, true);
        break;
    case CMD_HELP:
        sess__reply(s, 214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY%s",
                    s->srv->tls_ctx && !s->tls ? " STARTTLS" : "");
        break;
    case CMD_VRFY:
        sess__reply(s, 252, "2.1.5", "Cannot VRFY user, but will accept message and attempt delivery");
        break;
    case CMD_STARTTLS: sess__cmd_starttls(s, &c); break;
    case CMD_EXPN:
    case CMD_AUTH:
    case CMD_BDAT:
    case CMD_ETRN:
    case CMD_TURN:
    case CMD_XCLIENT:
    case CMD_XFORWARD:
        sess__reply(s, 502, "5.5.1", "Error: command not implemented");
        sess__error(s);
        break;
    default:
        sess__reply(s, 500, "5.5.1", "Error: command not recognized");
        sess__error(s);
        break;
    }
}

/* ---- input processing ------------------------------------------------------ */

/* Process in[0..len); returns bytes consumed. Stops when waiting. */
static size_t sess__process(struct sess *s, const char *in, size_t len)
{
    size_t off = 0;
    while (off < len && s->wait == W_NONE && !s->closing && !s->closed &&
           !s->close_after_reply) {
        if (s->state == S_DATA) {
            size_t n = data_reader_feed(&s->dr, in + off, len - off);
            off += n;
            if (data_reader_done(&s->dr))
                sess__end_of_data(s);
            continue;
        }
        if (s->state == S_GREETING || s->state == S_TLS || s->state == S_EOM)
            break;
        size_t used = 0, llen = 0;
        const char *line = NULL;
        enum cmd_rd rd = cmd_reader_next(&s->rd, in + off, len - off, &used, &line, &llen);
        if (rd == CMD_RD_AGAIN) {
            off += used;
            break;
        }
        if (rd == CMD_RD_TOO_LONG) {
            off += used;
            sess__reply(s, 500, "5.5.2", "Error: line too long");
            sess__error(s);
            continue;
        }
        /* A barrier command waits for every earlier reply; the line stays
         * unconsumed in the input until then. */
        struct cmd c;
        cmd_parse(line, llen, &c);
        if (s->slots_head && sess__is_barrier(c.verb)) {
            s->wait = W_SLOTS;
            break;
        }
        off += used;
        sess__command(s, line, llen);
        if (s->state == S_TLS) {
            /* Everything after STARTTLS in this read is discarded. */
            off = len;
            break;
        }
    }
    return off;
}

static void sess__process_input(struct sess *s)
{
    if (s->processing || s->closed)
        return;
    s->processing = true;
    size_t used = sess__process(s, s->in.ptr, s->in.len);
    buf_consume(&s->in, used);
    s->processing = false;
}

static void sess__check_backpressure(struct sess *s)
{
    if (s->closed || s->closing)
        return;
    bool too_much_out = conn_pending(s->conn) > s->cfg->client_output_limit;
    bool too_much_in = s->in.len > 4 * CMD_LINE_MAX + 65536;
    if ((too_much_out || too_much_in) && !s->read_paused) {
        conn_read_stop(s->conn);
        s->read_paused = true;
    } else if (!too_much_out && !too_much_in && s->read_paused) {
        conn_read_start(s->conn);
        s->read_paused = false;
    }
}

/* Resume after an asynchronous step completed. */
static void sess__kick(struct sess *s)
{
    if (s->closed)
        return;
    if (s->close_after_reply) {
        sess__close(s, true);
        return;
    }
    if (s->wait == W_SLOTS && !s->slots_head)
        s->wait = W_NONE;
    if (s->wait == W_NONE && !s->processing) {
        sess__process_input(s);
        sess__flush(s);
    }
    if (s->shutdown && s->wait == W_NONE && !s->tx.active && !s->slots_head && !s->closing) {
        sess__reply(s, 421, "4.3.2", "%s Service shutting down", s->cfg->hostname);
        sess__close(s, true);
    }
    sess__check_backpressure(s);
    sess__arm_timer(s);
}

static void sess__on_read(struct conn *c, const char *data, size_t len, void *ud)
{
    (void)c;
    struct sess *s = ud;
    if (s->closing || s->closed)
        return;
    if (s->in.len == 0 && s->wait == W_NONE && !s->processing) {
        /* Fast path: process straight from the read buffer. */
        s->processing = true;
        size_t used = sess__process(s, data, len);
        s->processing = false;
        if (used < len && !s->closed && s->state != S_TLS)
            buf_append(&s->in, data + used, len - used);
    } else {
        buf_append(&s->in, data, len);
        sess__process_input(s);
    }
    if (s->closed)
        return;
    if (s->close_after_reply) {
        sess__close(s, true);
        return;
    }
    sess__flush(s);
    if (s->wait == W_SLOTS && !s->slots_head)
        sess__kick(s);
    if (s->closed)
        return;
    sess__check_backpressure(s);
    /* The clock restarts on progress, not on every byte: a command must be
     * complete within command_timeout, and DATA must bring at least 1 KiB
     * (or its end) per data_timeout, so a client sending a byte a second
     * is bounded. */
    if (s->state == S_DATA) {
        s->timer_bytes += len;
        if (s->timer_bytes >= 1024 || s->deadline == 0)
            sess__arm_timer(s);
    } else if (s->ncmds != s->timer_ncmds || s->deadline == 0) {
        sess__arm_timer(s);
    }
}

/* ---- timers, events, close ------------------------------------------------ */

static void sess__timeout_cb(uv_timer_t *t)
{
    struct sess *s = t->data;
    if (s->closed || s->closing)
        return;
    /* The timer runs lazily (see sess__arm_timer): only a deadline that
     * has really passed counts; an earlier wake-up re-arms for the rest. */
    if (s->deadline == 0)
        return;
    uint64_t now = uv_now(s->srv->loop);
    if (now < s->deadline) {
        uv_timer_start(&s->timer, sess__timeout_cb, s->deadline - now, 0);
        s->timer_due = s->deadline;
        return;
    }
    stats_timeout(s->state == S_DATA ? STATS_TO_DATA : STATS_TO_COMMAND);
    log_warn("sid=%s client=%s timeout in state %s", s->info.sid, s->info.client_addr,
             sess_state_names[s->state]);
    if (s->tx.active) {
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: client timeout");
        sess__log_tx(s, STATS_V_ABORTED, 0);
    }
    sess__tx_end(s, true);
    /* Queue behind pending slots is pointless: the client is gone quiet. */
    buf_t b = BUF_INIT;
    buf_printf(&b, "421 4.4.2 %s Error: timeout exceeded\r\n", s->cfg->hostname);
    sess__emit(s, b.ptr, b.len);
    buf_free(&b);
    sess__close(s, true);
}

static void sess__arm_timer(struct sess *s)
{
    if (s->closed || s->closing)
        return;
    if (s->wait != W_NONE && s->wait != W_SLOTS) {
        /* Our turn to work (upstream, plugins): the client is not idle. */
        s->deadline = 0;
        return;
    }
    unsigned ms = s->state == S_DATA ? s->cfg->data_timeout_ms
                  : s->state == S_CONNECTED ? s->cfg->greeting_timeout_ms
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

static void sess__timer_close_cb(uv_handle_t *h)
{
    struct sess *s = h->data;
    buf_free(&s->in);
    buf_free(&s->mime7_out);
    if (s->msg)
        msgbuf_free(s->msg);
    cfg_unref(s->cfg);
    free(s);
}

static void sess__close(struct sess *s, bool graceful)
{
    if (s->closed)
        return;
    s->closed = true;
    s->closing = true;
    if (s->tx.active) {
        if (!s->last_upstream[0])
            snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: client disconnected");
        sess__log_tx(s, STATS_V_ABORTED, 0);
        sess__tx_end(s, true);
    }
    while (s->slots_head) {
        struct slot *sl = s->slots_head;
        s->slots_head = sl->next;
        buf_free(&sl->text);
        free(sl->rcpt_addr);
        free(sl->rcpt_dsn);
        free(sl);
    }
    s->slots_tail = NULL;
    if (s->up) {
        up_free(s->up);
        s->up = NULL;
    }
    if (s->hc) {
        host_conn_free(s->hc);
        s->hc = NULL;
    }
    if (s->dns) {
        resolve_cancel(s->dns); /* no callback after this */
        s->dns = NULL;
    }
    if (s->conn) {
        sess__flush(s);
        conn_close(s->conn, graceful);
        s->conn = NULL;
    }
    if (s->ip_counted)
        server_ip_release(s->srv, s->info.client_addr);
    server_sess_unlink(s->srv, s);
    stats_conn_close();
    log_info("sid=%s event=disconnect client=%s:%d errors=%u duration=%.3f", s->info.sid,
             s->info.client_addr, s->info.client_port, s->errors,
             (double)(now_ns() - s->conn_started_ns) / 1e9);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, sess__timer_close_cb);
}

static void sess__on_event(struct conn *c, enum conn_event ev, int err, void *ud)
{
    (void)c;
    struct sess *s = ud;
    switch (ev) {
    case CONN_EV_EOF:
        sess__close(s, false);
        break;
    case CONN_EV_ERROR:
        log_debug("sid=%s client connection error: %s", s->info.sid, uv_strerror(err));
        sess__close(s, false);
        break;
    case CONN_EV_TLS_DONE:
        stats_tls_handshake(true);
        s->tls = true;
        snprintf(s->info.tls_version, sizeof s->info.tls_version, "%s",
                 conn_tls_version(s->conn) ? conn_tls_version(s->conn) : "");
        snprintf(s->info.tls_cipher, sizeof s->info.tls_cipher, "%s",
                 conn_tls_cipher(s->conn) ? conn_tls_cipher(s->conn) : "");
        /* RFC 3207: the session starts over; a new EHLO is required. */
        s->info.helo[0] = 0;
        s->info.esmtp = false;
        if (s->hc)
            host_conn_info(s->hc, &s->info);
        buf_reset(&s->in);
        cmd_reader_init(&s->rd, CMD_LINE_MAX);
        sess__set_state(s, S_CONNECTED);
        s->wait = W_NONE;
        sess__kick(s);
        break;
    case CONN_EV_TLS_FAIL:
        stats_tls_handshake(false);
        log_warn("sid=%s client=%s TLS handshake failed: %s", s->info.sid, s->info.client_addr,
                 conn_tls_error(s->conn));
        sess__close(s, false);
        break;
    case CONN_EV_DRAINED:
        if (s->closing)
            break;
        sess__check_backpressure(s);
        break;
    default:
        break;
    }
}

/* ---- creation ---------------------------------------------------------------- */

static void sess__greet(struct sess *s)
{
    sess__set_state(s, S_CONNECTED);
    buf_t b = BUF_INIT;
    buf_printf(&b, "220 %s ESMTP %s\r\n", s->cfg->hostname, s->cfg->banner ? s->cfg->banner : "");
    sess__emit(s, b.ptr, b.len);
    buf_free(&b);
    sess__flush(s);
}

/* ---- the client's name ------------------------------------------------------
 * Reverse lookup, then forward confirmation (the name must resolve back to
 * the client's address), on sluice's resolver threads before the greeting,
 * as MTAs do: plugins and the upstream (XCLIENT NAME) only ever get a
 * verified name. */

static void sess__begin(struct sess *s);

static void sess__dns_cb(void *ud, const char *name)
{
    struct sess *s = ud;
    s->dns = NULL;
    if (name)
        snprintf(s->info.client_name, sizeof s->info.client_name, "%s", name);
    sess__begin(s);
}

static bool sess__start_dns(struct sess *s)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(conn_tcp(s->conn), (struct sockaddr *)&ss, &len) != 0)
        return false;
    s->dns = resolve_client((struct sockaddr *)&ss, sess__dns_cb, s);
    if (!s->dns)
        return false;
    s->wait = W_PHASE; /* nothing is processed before the greeting */
    return true;
}

static void sess__connect_cont(struct sess *s, const struct host_result *r)
{
    if (r && (r->verdict == SLUICE_REJECT || r->verdict == SLUICE_TEMPFAIL ||
              r->verdict == SLUICE_DISCONNECT)) {
        /* Refused at connect: say why and close (a 554 greeting would
         * oblige us to keep answering 503 until QUIT; closing is simpler
         * and what clients handle best). */
        buf_t b = BUF_INIT;
        if (r->verdict == SLUICE_REJECT)
            buf_printf(&b, "554 %s %s\r\n", r->enh, r->text);
        else
            buf_printf(&b, "421 %s %s\r\n", r->enh[0] == '4' ? r->enh : "4.7.0", r->text);
        sess__emit(s, b.ptr, b.len);
        buf_free(&b);
        log_info("sid=%s client=%s refused at connect by %s", s->info.sid, s->info.client_addr,
                 r->plugin ? r->plugin : "chain");
        sess__close(s, true);
        return;
    }
    sess__greet(s);
}

int sess_accept(struct server *srv, uv_stream_t *listener)
{
    struct sess *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->srv = srv;
    s->cfg = cfg_ref(srv->cfg);
    s->conn = conn_new(srv->loop, sess__on_read, sess__on_event, s);
    if (!s->conn) {
        cfg_unref(s->cfg);
        free(s);
        return -ENOMEM;
    }
    int rc = uv_accept(listener, (uv_stream_t *)conn_tcp(s->conn));
    if (rc != 0) {
        conn_close(s->conn, false);
        cfg_unref(s->cfg);
        free(s);
        return rc;
    }
    uv_timer_init(srv->loop, &s->timer);
    s->timer.data = s;
    s->conn_started_ns = now_ns();
    snprintf(s->info.sid, sizeof s->info.sid, "%010llX",
             (unsigned long long)server_next_sid(srv));
    conn_peer(s->conn, s->info.client_addr, sizeof s->info.client_addr, &s->info.client_port);
    conn_local(s->conn, s->info.local_addr, sizeof s->info.local_addr, &s->info.local_port);
    cmd_reader_init(&s->rd, CMD_LINE_MAX);
    server_sess_link(srv, s);
    stats_conn_open();

    bool over_total = srv->cfg->max_connections && srv->nconns > srv->cfg->max_connections;
    bool over_ip = !server_ip_acquire(srv, s->info.client_addr);
    s->ip_counted = !over_ip;
    if (over_total || over_ip || srv->stopping) {
        stats_conn_refused();
        log_warn("sid=%s client=%s refused: %s", s->info.sid, s->info.client_addr,
                 srv->stopping ? "shutting down" : over_total ? "too many connections"
                                                              : "too many connections from this address");
        buf_t b = BUF_INIT;
        buf_printf(&b, "421 4.7.0 %s Error: too many connections, try again later\r\n",
                   srv->cfg->hostname);
        sess__emit(s, b.ptr, b.len);
        buf_free(&b);
        sess__close(s, true);
        return 0;
    }
    log_info("sid=%s event=connect client=%s:%d", s->info.sid, s->info.client_addr,
             s->info.client_port);
    conn_set_nodelay(s->conn);
    conn_read_start(s->conn);
    if (s->cfg->connect_at == CFG_CONNECT_AT_CONNECT) {
        s->up = up_new(srv->loop, s->cfg, s->info.sid);
        if (s->up)
            up_open(s->up, sess__up_open_cb, s);
    }
    if (s->cfg->reverse_dns && sess__start_dns(s)) {
        sess__arm_timer(s);
        return 0; /* sess__begin() runs when the lookup is done */
    }
    sess__begin(s);
    return 0;
}

/* The session proper starts: plugins' CONNECT phase, then the greeting. */
static void sess__begin(struct sess *s)
{
    struct server *srv = s->srv;
    s->wait = W_NONE;
    s->hc = host_conn_new(srv->loop, &s->info);
    if (!s->hc) {
        buf_t b = BUF_INIT;
        buf_printf(&b, "421 4.3.0 %s Error: out of resources, try again later\r\n",
                   srv->cfg->hostname);
        sess__emit(s, b.ptr, b.len);
        buf_free(&b);
        sess__close(s, true);
        return;
    }
    sess__phase(s, SLUICE_PHASE_CONNECT, sess__connect_cont);
    if (!s->closed) {
        sess__flush(s);
        sess__kick(s);
    }
}

void sess_abort(struct sess *s)
{
    sess__close(s, false);
}

void sess_shutdown(struct sess *s)
{
    s->shutdown = true;
    sess__kick(s);
}

const struct sess_info *sess_info(const struct sess *s)
{
    return &s->info;
}

const struct sess_tx *sess_tx(const struct sess *s)
{
    return &s->tx;
}

/* List linkage lives here because struct sess is private. */
void server_sess_link(struct server *srv, struct sess *s)
{
    s->prev = NULL;
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->nconns++;
}

void server_sess_unlink(struct server *srv, struct sess *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else if (srv->sessions == s)
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
    srv->nconns--;
}

struct sess *sess_next(struct sess *s)
{
    return s->next;
}
