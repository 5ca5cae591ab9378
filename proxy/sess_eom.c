/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sess_eom: the end of data. The message is complete: check what the DATA
 * reader saw, run the DATA phase, apply the verdict (reject, tempfail,
 * discard, quarantine), bring the upstream's envelope in line with the
 * plugins' edits (tx_envelope_plan: as is, new RCPTs, or RSET + replay),
 * forward the message (7-bit downgrade when the upstream lacks 8BITMIME)
 * and relay the upstream's final reply. Exactly one reply and one log line
 * per message, whatever happens.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn.h"
#include "mime7.h"
#include "quar.h"
#include "server.h"
#include "xalloc.h"
#include "sess_int.h"

/* Answer the message without sending it, log it, end the transaction. */
static void sess_eom__finish(struct sess *s, enum stats_verdict v, const char *why)
{
    snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: %.280s", why);
    sess_log_tx(s, v, 0);
    sess_tx_end(s, true);
}

/* ---- forwarding ------------------------------------------------------------- */

static void sess_eom__reply_cb(void *ud, const struct up_result *r)
{
    struct sess *s = ud;
    if (s->state == S_CLOSING)
        return;
    buf_t b = BUF_INIT;
    enum stats_verdict v;
    sess_last_upstream(s, r);
    if (r->err != UP_OK) {
        sess_reply_up_error(&b, r->err);
        v = STATS_V_TEMPFAILED;
    } else {
        sess_reply_relay(&b, r->reply);
        if (r->reply->code < 300)
            s->junk = 0; /* mail delivered: the client does real work */
        v = r->reply->code < 300   ? STATS_V_ACCEPTED
            : r->reply->code < 500 ? STATS_V_TEMPFAILED
                                   : STATS_V_REJECTED;
    }
    sess_reply_raw(s, b.ptr, b.len);
    buf_free(&b);
    sess_log_tx(s, v, r->err == UP_OK ? up_data_bytes(s->up) : 0);
    /* After the message, the upstream's transaction ended with its final
     * reply: no RSET. A refused DATA command (nothing streamed) leaves
     * the upstream's transaction open: RSET it, or the next MAIL of this
     * session gets "503 nested MAIL command". A refused BDAT LAST may
     * leave it open too (RFC 3030 only says the transaction failed):
     * RSET, which is harmless when it did not. */
    bool refused = !(r->err == UP_OK && r->reply->code < 300);
    sess_tx_end(s, up_data_bytes(s->up) == 0 || (up_data_chunked(s->up) && refused));
    sess_kick(s);
}

/* Downgrade to 7 bits when the upstream cannot take 8-bit data. false: a
 * reply was given and the transaction ended. */
static bool sess_eom__downgrade(struct sess *s, int *n)
{
    const char *whole;
    size_t wlen;
    tx_render_edits(s->tx); /* else in memory: still correct */
    tx_render(s->tx, &whole, &wlen);
    if (!mime7_is_8bit(whole, wlen))
        return true;
    char why[200] = "";
    buf_reset(&s->mime7_out);
    int mrc = mime7_downgrade(whole, wlen, &s->mime7_out, why, sizeof why);
    if (mrc != 0) {
        if (mrc > 0)
            sess_reply(s, 554, "5.6.3", "Conversion required but not possible: %s", why);
        else
            sess_reply(s, 451, "4.3.0", "Local error in conversion");
        sess_eom__finish(s, mrc > 0 ? STATS_V_REJECTED : STATS_V_TEMPFAILED,
                         mrc > 0 ? why : "conversion error");
        return false;
    }
    s->segs[0].iov_base = s->mime7_out.ptr;
    s->segs[0].iov_len = s->mime7_out.len;
    *n = 1;
    return true;
}

/* The upstream went away while the message arrived (an MTA closes idle
 * sessions): one tempfail, the client retries. false: answered. */
static bool sess_eom__upstream_there(struct sess *s)
{
    if (s->up && up_ready(s->up))
        return true;
    buf_t b = BUF_INIT;
    sess_reply_up_error(&b, UP_ERR_LOST);
    sess_reply_raw(s, b.ptr, b.len);
    buf_free(&b);
    sess_eom__finish(s, STATS_V_TEMPFAILED, "upstream connection lost");
    return false;
}

/* Send the message (as the chain left it) to the upstream. */
static void sess_eom__forward(struct sess *s)
{
    if (!sess_eom__upstream_there(s))
        return;
    int n;
    if (s->tx->msg) {
        n = msg_segments(s->tx->msg, s->segs, (int)(sizeof s->segs / sizeof s->segs[0]));
    } else {
        size_t len = 0;
        s->segs[0].iov_base = (void *)msgbuf_data(s->tx->mb, &len);
        s->segs[0].iov_len = len;
        n = 1;
    }
    if (n < 0) {
        sess_reply(s, 451, "4.3.0", "Local error in processing");
        sess_eom__finish(s, STATS_V_TEMPFAILED, "local error");
        return;
    }
    if (!(up_caps(s->up) & UP_CAP_8BITMIME) && s->tx->body != CMD_BODY_BINARYMIME &&
        (s->dr.has_8bit || s->tx->body == CMD_BODY_8BITMIME ||
         (s->tx->msg && msg_edited(s->tx->msg))) &&
        !sess_eom__downgrade(s, &n))
        return;
    s->log.action = "sending the message to upstream";
    up_data(s->up, s->segs, (size_t)n, sess_eom__reply_cb, s);
}

/* ---- envelope replay after plugin edits ----------------------------------- */

static void sess_eom__replay_done(struct sess *s)
{
    struct sess_replay *rp = &s->replay;
    if (rp->failed || rp->told_refused) {
        /* The client was told 250 for every recipient it gave: if the
         * upstream will not take exactly those, the message is tempfailed
         * (or refused as the upstream refused the new sender). */
        const char *t =
            rp->failed && rp->fail[0]
                ? rp->fail
                : "451 4.3.0 Envelope change refused by the upstream server, try again later";
        enum stats_verdict v = atoi(t) >= 500 ? STATS_V_REJECTED : STATS_V_TEMPFAILED;
        buf_t b = BUF_INIT;
        buf_printf(&b, "%s\r\n", t);
        sess_reply_raw(s, b.ptr, b.len);
        buf_free(&b);
        char why[300];
        snprintf(why, sizeof why, "%.280s", t);
        sess_eom__finish(s, v, why);
        sess_kick(s);
        return;
    }
    tx_envelope_committed(s->tx);
    sess_eom__forward(s);
    sess_kick(s);
}

static void sess_eom__replay_cb(void *ud, const struct up_result *r)
{
    struct sess_replay_item *it = ud;
    struct sess *s = it->s;
    struct sess_replay *rp = &s->replay;
    bool ok = r->err == UP_OK && r->reply->code < 300;
    if (r->err != UP_OK) {
        rp->failed = true;
        snprintf(rp->fail, sizeof rp->fail,
                 "451 4.4.2 Upstream failure during envelope change, try again later");
    } else if (!ok) {
        char text[280];
        snprintf(text, sizeof text, "%d %s %s", r->reply->code,
                 r->reply->enh[0] ? r->reply->enh : sess_reply_default_enh(r->reply->code),
                 r->reply->nlines ? r->reply->lines[0] : "");
        log_c_warn(&s->log, "upstream refused a plugin envelope change: %s", text);
        if (it->rcpt_idx == SIZE_MAX) {
            rp->failed = true; /* RSET or the new MAIL */
            snprintf(rp->fail, sizeof rp->fail, "%s",
                     it->is_mail ? text : "451 4.4.2 Upstream refused RSET, try again later");
        }
    }
    if (it->rcpt_idx != SIZE_MAX && s->tx && it->rcpt_idx < s->tx->nrcpts) {
        struct tx_rcpt *rc = &s->tx->rcpts[it->rcpt_idx];
        if (!ok && rc->st == TX_R_ACCEPTED)
            rp->told_refused = true;
        else if (!ok)
            rc->st = TX_R_REFUSED; /* one a plugin added: the client never heard of it */
    }
    if (--rp->pending == 0 && s->state != S_CLOSING)
        sess_eom__replay_done(s);
}

static const char *sess_eom__space(const char *p, char *tmp, size_t tmplen)
{
    if (!p || !*p)
        return "";
    if (*p == ' ')
        return p;
    snprintf(tmp, tmplen, " %s", p);
    return tmp;
}

/* A plugin's own MAIL parameters replace the client's, but not what
 * describes the bytes about to be sent: BODY= (a BINARYMIME body only goes
 * as such) and SMTPUTF8 are kept from the client's unless the plugin's
 * name them itself. */
static void sess_eom__keep_body_params(buf_t *line, const char *client, const char *plugin)
{
    static const char *const keep[] = {"BODY=", "SMTPUTF8"};
    for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
        size_t kl = strlen(keep[k]);
        bool in_plugin = false;
        for (const char *p = plugin; p && *p;) {
            while (*p == ' ')
                p++;
            if (strncasecmp(p, keep[k], kl) == 0)
                in_plugin = true;
            p += strcspn(p, " ");
        }
        if (in_plugin)
            continue;
        for (const char *p = client; p && *p;) {
            while (*p == ' ')
                p++;
            size_t tl = strcspn(p, " ");
            if (tl && strncasecmp(p, keep[k], kl) == 0)
                buf_printf(line, " %.*s", (int)tl, p);
            p += tl;
        }
    }
}

static struct sess_replay_item *sess_eom__item(struct sess *s, size_t idx, bool is_mail)
{
    struct sess_replay *rp = &s->replay;
    struct sess_replay_item *it = &rp->items[rp->nitems++];
    *it = (struct sess_replay_item){.s = s, .rcpt_idx = idx, .is_mail = is_mail};
    return it;
}

/* The upstream's envelope in line with the plugins' edits: RCPT for the
 * added recipients, or RSET + MAIL + every recipient. */
static void sess_eom__replay(struct sess *s, bool replay)
{
    struct tx *tx = s->tx;
    struct sess_replay *rp = &s->replay;
    size_t n = replay ? 2 : 0;
    for (size_t i = 0; i < tx->nrcpts; i++) {
        const struct tx_rcpt *r = &tx->rcpts[i];
        bool in = (r->st == TX_R_ACCEPTED || r->st == TX_R_ADDED) && !r->removed;
        n += in && (replay || r->st == TX_R_ADDED);
    }
    /* Every item exists before the first command is queued: answers index
     * into the array, and all are counted before any can arrive. */
    rp->items = xgrow(rp->items, &rp->capitems, n, sizeof *rp->items, 8);
    rp->nitems = 0;
    rp->pending = (unsigned)n;
    rp->failed = rp->told_refused = false;
    rp->fail[0] = 0;
    char tmp[700];
    buf_t line = BUF_INIT;
    s->log.action = "changing the envelope at the upstream";
    if (replay) {
        char q1[4 * CMD_ADDR_MAX + 3], q2[4 * CMD_ADDR_MAX + 3];
        log_c_info(&s->log, "envelope changed by plugins: replaying old=%s new=%s rcpts=%zu",
                   log_quote(q1, sizeof q1, tx->orig_sender), log_quote(q2, sizeof q2, tx->sender),
                   tx_visible_count(tx));
        up_command(s->up, "RSET", sess_eom__replay_cb, sess_eom__item(s, SIZE_MAX, false));
        struct up_client_info ci;
        sess_client_info(s, &ci);
        up_retell(s->up, &ci);
        bool own = tx->sender_changed && tx->sender_params && *tx->sender_params;
        buf_printf(&line, "MAIL FROM:<%s>%s", tx->sender,
                   own ? sess_eom__space(tx->sender_params, tmp, sizeof tmp) : tx->mail_params);
        if (own)
            sess_eom__keep_body_params(&line, tx->mail_params, tx->sender_params);
        up_command(s->up, line.ptr, sess_eom__replay_cb, sess_eom__item(s, SIZE_MAX, true));
    }
    for (size_t i = 0; i < tx->nrcpts; i++) {
        const struct tx_rcpt *r = &tx->rcpts[i];
        bool in = (r->st == TX_R_ACCEPTED || r->st == TX_R_ADDED) && !r->removed;
        if (!in || (!replay && r->st != TX_R_ADDED))
            continue;
        if (r->st == TX_R_ADDED) {
            char q[4 * CMD_ADDR_MAX + 3];
            log_c_info(&s->log, "recipient added by plugin: rcpt=%s",
                       log_quote(q, sizeof q, r->addr));
        }
        buf_reset(&line);
        buf_printf(&line, "RCPT TO:<%s>%s", r->addr, sess_eom__space(r->params, tmp, sizeof tmp));
        up_command(s->up, line.ptr, sess_eom__replay_cb, sess_eom__item(s, i, false));
    }
    buf_free(&line);
}

/* Bring the upstream's envelope in line with the plugins' edits, then
 * forward (tx_envelope_plan decides what that takes). */
static void sess_eom__envelope(struct sess *s)
{
    enum tx_plan plan = tx_envelope_plan(s->tx);
    if (plan == TX_PLAN_NONE_LEFT) {
        /* The chain removed every recipient: nobody to deliver to. Like
         * DISCARD, the client hears 250 (a 4xx would make it retry a
         * message that can never go anywhere) and it is logged loudly. */
        log_c_warn(&s->log, "plugins removed every recipient: message accepted and dropped");
        sess_reply(s, 250, "2.0.0", "Ok");
        sess_eom__finish(s, STATS_V_DISCARDED, "no recipients left");
        return;
    }
    if (!sess_eom__upstream_there(s))
        return;
    if (plan == TX_PLAN_AS_IS)
        sess_eom__forward(s);
    else
        sess_eom__replay(s, plan == TX_PLAN_REPLAY);
}

/* ---- verdicts ------------------------------------------------------------------ */

static void sess_eom__quar_cb(void *ud, int rc, const char *path)
{
    struct sess *s = ud;
    s->quar = NULL;
    if (rc != 0) {
        log_c_error(&s->log, "cannot write quarantine file %s: %s", path, strerror(-rc));
        sess_reply(s, 451, "4.3.0", "Local error in processing, try again later");
        sess_eom__finish(s, STATS_V_TEMPFAILED, "quarantine failed");
    } else {
        log_c_warn(&s->log, "message quarantined in %s", path);
        if (s->tx->quarantine_accepts)
            sess_reply(s, 250, "2.0.0", "Ok");
        else
            sess_reply(s, 554, "5.7.1", "Message quarantined");
        sess_eom__finish(s, STATS_V_QUARANTINED, "quarantined");
    }
    sess_kick(s);
}

static void sess_eom__quarantine(struct sess *s)
{
    if (!s->cfg->quarantine_dir) {
        log_c_error(&s->log, "quarantine requested but [server] quarantine_dir is not set");
        sess_reply(s, 451, "4.3.0", "Local error in processing, try again later");
        sess_eom__finish(s, STATS_V_TEMPFAILED, "quarantine failed");
        return;
    }
    s->log.action = "writing the quarantine file";
    s->quar = quar_write(s->srv->loop, s->cfg->quarantine_dir, s->tx, sess_eom__quar_cb, s);
}

static void sess_eom__data_done(void *ud, struct host_result *r)
{
    struct sess *s = ud;
    if (r->tx && s->tx && r->tx != s->tx) {
        tx_unref(s->tx); /* a hook timed out: go on with the clone */
        s->tx = r->tx;
    } else {
        tx_unref(r->tx);
    }
    r->tx = NULL;
    if (s->state == S_CLOSING)
        return;
    if (r->verdict == SLUICE_REJECT || r->verdict == SLUICE_TEMPFAIL ||
        r->verdict == SLUICE_DISCONNECT) {
        char why[120];
        snprintf(why, sizeof why, "%s by %s",
                 r->verdict == SLUICE_REJECT ? "rejected" : "tempfailed",
                 r->plugin ? r->plugin : "chain");
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: %s", why);
        if (r->verdict != SLUICE_DISCONNECT)
            sess_log_tx(s, r->verdict == SLUICE_REJECT ? STATS_V_REJECTED : STATS_V_TEMPFAILED, 0);
        if (r->verdict == SLUICE_DISCONNECT) {
            sess_reply_text(s, 421, r->enh[0] == '4' ? r->enh : "4.7.0", r->text);
            sess_close(s, true);
            return;
        }
        sess_reply_text(s, r->code, r->enh, r->text);
        sess_tx_end(s, true);
    } else if (s->tx->quarantine) {
        sess_eom__quarantine(s);
    } else if (s->tx->discard) {
        sess_reply(s, 250, "2.0.0", "Ok");
        sess_eom__finish(s, STATS_V_DISCARDED, "discarded");
    } else {
        sess_eom__envelope(s);
    }
    sess_kick(s);
}

static const char *sess_eom__said(struct sess_said *said, int code, const char *enh,
                                  const char *why, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static const char *sess_eom__said(struct sess_said *said, int code, const char *enh,
                                  const char *why, const char *fmt, ...)
{
    va_list ap;
    said->code = code;
    snprintf(said->enh, sizeof said->enh, "%s", enh);
    va_start(ap, fmt);
    vsnprintf(said->text, sizeof said->text, fmt, ap);
    va_end(ap);
    return why;
}

const char *sess_eom_reader_error(struct sess *s, struct sess_said *said, enum stats_verdict *v)
{
    unsigned errs = data_reader_errors(&s->dr);
    int merr = msgbuf_error(s->msg);
    *v = STATS_V_REJECTED;
    if (errs & DATA_ERR_SINK || merr) {
        log_c_warn(&s->log, "spool write failed: %s", strerror(merr ? -merr : EIO));
        stats_error();
        *v = STATS_V_TEMPFAILED;
        return sess_eom__said(said, 452, "4.3.1", "spool error", "Insufficient system storage");
    }
    if (errs & DATA_ERR_TOO_BIG)
        return sess_eom__said(said, 552, "5.3.4", "too large", "Error: message too large");
    if (errs & DATA_ERR_BARE_NL)
        return sess_eom__said(said, 550, "5.5.2", "bare newline",
                              "Error: bare <CR> or <LF> received in message data");
    if (errs & DATA_ERR_NUL)
        return sess_eom__said(said, 550, "5.6.0", "NUL byte", "Error: NUL byte in message data");
    if (errs & DATA_ERR_LINE_TOO_LONG)
        return sess_eom__said(said, 550, "5.5.2", "line too long",
                              "Error: message line longer than %zu octets",
                              s->cfg->max_line_length);
    if (errs & DATA_ERR_HEADER_TOO_BIG)
        return sess_eom__said(said, 552, "5.3.4", "header too large",
                              "Error: message header too large");
    return NULL;
}

/* What the data reader or the spool saw wrong, as a reply; NULL if fine. */
static const char *sess_eom__data_error(struct sess *s, enum stats_verdict *v)
{
    struct sess_said said;
    const char *why = sess_eom_reader_error(s, &said, v);
    if (why) {
        sess_reply(s, said.code, said.enh, "%s", said.text);
        return why;
    }
    int rc = msgbuf_finish(s->msg);
    if (rc != 0) {
        log_c_warn(&s->log, "spool finish failed: %s", strerror(-rc));
        stats_error();
        sess_reply(s, 452, "4.3.1", "Insufficient system storage");
        *v = STATS_V_TEMPFAILED;
        return "spool error";
    }
    return NULL;
}

void sess_eom_begin(struct sess *s)
{
    s->tx->bytes_in = s->dr.out_bytes;
    sess_set_state(s, S_EOM);
    enum stats_verdict v;
    const char *why = sess_eom__data_error(s, &v);
    if (why) {
        bool client_error = data_reader_errors(&s->dr) != 0;
        sess_eom__finish(s, v, why);
        if (client_error)
            sess_error(s);
        return;
    }
    /* The tx takes the message buffer; it comes back at the end. */
    struct msgbuf *mb = s->msg;
    s->msg = NULL;
    bool plugins = s->hc && host_conn_active(s->hc);
    tx_set_message(s->tx, mb, plugins);
    if (plugins) {
        s->log.action = "waiting for the plugins";
        host_run(s->hc, s->tx, SLUICE_PHASE_DATA, sess_eom__data_done, s);
        return;
    }
    sess_eom__forward(s);
}

void sess_eom_cancel(struct sess *s)
{
    if (s->quar) {
        quar_cancel(s->quar);
        s->quar = NULL;
    }
}
