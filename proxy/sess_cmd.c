/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sess_cmd: the SMTP verbs, as one command table.
 *
 * Each verb is check -> plugin phase -> proceed. `check` validates the
 * command in the current state (syntax, limits) and either replies (and
 * the command is over) or prepares what the phase and `proceed` need.
 * When the verb has a phase and the chain has instances, the phase runs
 * and `proceed` is called from the loop with its result (NULL when no
 * phase ran); `proceed` replies, or sends the command to the upstream and
 * replies when it answers. While a verb waits (s->busy), no further input
 * is processed.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "conn.h"
#include "server.h"
#include "sess_int.h"

/* Flags of a verb. */
enum {
    SV_BARRIER = 1 << 0,       /* waits for every earlier reply (not pipelinable) */
    SV_COUNT_ERROR = 1 << 1,   /* a refusal counts toward max_errors */
    SV_DISCARD_AFTER = 1 << 2, /* input pipelined after it is discarded (STARTTLS) */
    SV_NEEDS_TX = 1 << 3,      /* needs a transaction (MAIL given) */
    SV_JUNK = 1 << 4,          /* counts toward junk_command_limit */
    SV_PRE_TLS = 1 << 5,       /* allowed before STARTTLS where the listener requires TLS */
    SV_PRE_AUTH = 1 << 6,      /* allowed before AUTH where the listener requires it */
};
/* RFC 4954 §6: everything but AUTH, EHLO, HELO, NOOP, RSET and QUIT gets
 * 530 before AUTH; STARTTLS too, or AUTH could never be reached. */
#define SV_PRE (SV_PRE_TLS | SV_PRE_AUTH)

#define SV_NO_PHASE SLUICE_PHASE_COUNT
#define ST_COMMAND                                                                                 \
    (S_BIT(S_GREETED) | S_BIT(S_HELO) | S_BIT(S_MAIL) | S_BIT(S_RCPT) | S_BIT(S_CHUNKED))
#define ST_TX (S_BIT(S_MAIL) | S_BIT(S_RCPT))

struct sess_verb {
    enum cmd_verb verb;
    unsigned states; /* where it is legal; elsewhere 503 with `seq_text` */
    const char *seq_text;
    unsigned flags;
    enum sluice_phase phase; /* plugin phase, or SV_NO_PHASE */
    bool (*check)(struct sess *s, const struct cmd *c);
    void (*proceed)(struct sess *s, const struct host_result *r);
};

/* ---- helpers ------------------------------------------------------------- */

/* A refusing verdict becomes the command's reply. true if refused. */
static bool sess_cmd__refused(struct sess *s, const struct host_result *r)
{
    if (!r)
        return false;
    switch (r->verdict) {
    case SLUICE_REJECT:
    case SLUICE_TEMPFAIL:
        sess_reply_text(s, r->code, r->enh, r->text);
        return true;
    case SLUICE_DISCONNECT:
        sess_reply_text(s, 421, r->enh[0] == '4' ? r->enh : "4.7.0", r->text);
        sess_close(s, true);
        return true;
    default:
        return false;
    }
}

static bool sess_cmd__syntax(struct sess *s, const char *usage)
{
    sess_reply(s, 501, "5.5.4", "Syntax: %s", usage);
    sess_error(s);
    return false;
}

/* Parse MAIL/RCPT's path and parameters; on error reply (RFC 5321 §4.1.1.11:
 * 501 with 5.1.7 for the sender, 5.1.3 for a recipient; RFC 1869 §6: 555
 * for an unknown parameter) and return false. */
static bool sess_cmd__path(struct sess *s, const struct cmd *c, bool is_rcpt, struct cmd_path *path,
                           struct cmd_params *prm)
{
    const char *why = "syntax error";
    switch (cmd_parse_mailrcpt(c->arg, c->arg_len, is_rcpt, path, prm, &why)) {
    case CMD_PATH_OK:
        return true;
    case CMD_PATH_PARAM:
        sess_reply(s, 555, "5.5.4", "Error: %s", why);
        break;
    case CMD_PATH_PARAM_DUP:
        sess_reply(s, 501, "5.5.4", "Error: %s", why);
        break;
    default:
        if (is_rcpt)
            sess_reply(s, 501, "5.1.3", "Bad recipient address syntax (%s)", why);
        else
            sess_reply(s, 501, "5.1.7", "Bad sender address syntax (%s)", why);
        break;
    }
    sess_error(s);
    return false;
}

static const struct sess_verb sess_cmd__table[CMD_VERB_COUNT];

/* ---- HELO / EHLO ----------------------------------------------------------- */

static bool sess_cmd__helo_check(struct sess *s, const struct cmd *c, bool esmtp)
{
    if (c->arg_len == 0 || !cmd_helo_valid(c->arg, c->arg_len))
        return sess_cmd__syntax(s, esmtp ? "EHLO hostname" : "HELO hostname");
    s->offered = 0; /* until this EHLO's reply offers again */
    /* A new HELO/EHLO resets any transaction (RFC 5321 §4.1.4). */
    sess_tx_end(s, true);
    size_t n = c->arg_len < sizeof s->info.helo - 1 ? c->arg_len : sizeof s->info.helo - 1;
    memcpy(s->info.helo, c->arg, n);
    s->info.helo[n] = 0;
    s->info.esmtp = esmtp;
    if (s->hc)
        host_conn_info(s->hc, &s->info);
    return true;
}

static bool sess_cmd__ehlo_check(struct sess *s, const struct cmd *c)
{
    return sess_cmd__helo_check(s, c, true);
}

static bool sess_cmd__helo_only_check(struct sess *s, const struct cmd *c)
{
    return sess_cmd__helo_check(s, c, false);
}

static void sess_cmd__helo_proceed(struct sess *s, const struct host_result *r)
{
    if (sess_cmd__refused(s, r)) {
        s->info.helo[0] = 0;
        if (s->state == S_HELO)
            sess_set_state(s, S_GREETED);
        return;
    }
    sess_set_state(s, S_HELO);
    if (!s->info.esmtp) {
        sess_reply(s, 250, "2.0.0", "%s", s->cfg->hostname);
        return;
    }
    if (!s->srv->upstream_caps_known && !(s->up && up_ready(s->up))) {
        /* What the EHLO reply offers must be what the upstream takes: until
         * the first upstream EHLO is known (just after start), this session
         * opens its upstream first and answers when it is ready. */
        sess_up_start(s); /* the open callback or the slot's expiry answers */
        s->busy = &sess_cmd__table[CMD_EHLO];
        s->up_wait = true;
        s->log.action = "learning what the upstream offers";
        return;
    }
    sess_reply_ehlo(s, s->info.helo);
}

/* ---- the upstream for a transaction ------------------------------------------ */

static void sess_cmd__mail_send(struct sess *s);

/* Answer MAIL with an upstream failure and give up the transaction. */
static void sess_cmd__mail_failed(struct sess *s, const struct up_result *r)
{
    buf_t b = BUF_INIT;
    if (r->err != UP_OK)
        sess_reply_up_error(&b, r->err);
    else
        sess_reply_relay(&b, r->reply);
    sess_reply_raw(s, b.ptr, b.len);
    buf_free(&b);
    sess_last_upstream(s, r);
    s->busy = NULL;
    sess_tx_end(s, false);
}

void sess_cmd_up_open_cb(void *ud, const struct up_result *r)
{
    struct sess *s = ud;
    if (s->state == S_CLOSING)
        return;
    if (r->err == UP_OK) {
        s->srv->upstream_caps = up_own_caps(s->up);
        s->srv->upstream_caps_known = true;
    }
    if (!s->up_wait)
        return; /* opened at connect: nobody waits yet */
    s->up_wait = false;
    if (s->busy == &sess_cmd__table[CMD_EHLO]) {
        s->busy = NULL; /* offers what the upstream offers, or nothing extra */
        sess_reply_ehlo(s, s->info.helo);
    } else if (r->err != UP_OK) {
        sess_cmd__mail_failed(s, r);
    } else {
        sess_cmd__mail_send(s);
    }
    sess_kick(s);
}

void sess_cmd_up_wait_expired(struct sess *s)
{
    if (!s->up_wait)
        return;
    s->up_wait = false;
    if (s->busy == &sess_cmd__table[CMD_EHLO]) {
        s->busy = NULL; /* offers nothing the upstream might not take */
        sess_reply_ehlo(s, s->info.helo);
    } else {
        snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: no upstream session free");
        sess_reply(s, 451, "4.4.5", "Too many transactions in progress, try again later");
        s->busy = NULL;
        sess_tx_end(s, false);
    }
    sess_kick(s);
}

static void sess_cmd__up_ident_cb(void *ud, const struct up_result *r)
{
    struct sess *s = ud;
    if (s->state == S_CLOSING || !s->up_wait)
        return;
    s->up_wait = false;
    if (r->err != UP_OK || r->reply->code >= 400) {
        /* The upstream refused the real client (its policy) or failed. */
        sess_cmd__mail_failed(s, r);
        if (r->err == UP_OK && r->reply->code == 421)
            sess_close(s, true);
        sess_kick(s);
        return;
    }
    s->identified = true;
    sess_cmd__mail_send(s);
    sess_kick(s);
}

void sess_client_info(const struct sess *s, struct up_client_info *ci)
{
    memset(ci, 0, sizeof *ci);
    snprintf(ci->addr, sizeof ci->addr, "%s", s->info.client_addr);
    ci->port = s->info.client_port;
    snprintf(ci->name, sizeof ci->name, "%s", s->info.client_name);
    snprintf(ci->helo, sizeof ci->helo, "%s", s->info.helo);
    ci->esmtp = s->info.esmtp;
    ci->tls = s->tls;
    snprintf(ci->login, sizeof ci->login, "%s", s->info.auth_user);
}

/* The upstream must be open and told who the client is before MAIL.
 * false: that is under way, and its callback sends MAIL. */
static bool sess_cmd__upstream_ready(struct sess *s)
{
    if (s->up && !s->identified && up_ready(s->up)) {
        struct up_client_info ci;
        sess_client_info(s, &ci);
        if (up_identity_stale(s->up, &ci)) {
            /* The MTA was told another HELO or login with XCLIENT and
             * would refuse to be told again: a new connection. */
            log_c_info(&s->log, "client=%s new HELO or login: new upstream connection",
                       s->info.client_addr);
            sess_up_drop(s);
        }
    }
    bool had = s->up && !up_failed(s->up);
    if (!sess_up_start(s) || !had)
        return false; /* waiting for a slot, or opening: a callback resumes */
    if (!up_ready(s->up))
        return false; /* opening (connect-at-connect); the open callback resumes */
    if (!s->identified) {
        struct up_client_info ci;
        sess_client_info(s, &ci);
        /* XFORWARD that can go in one group with the MAIL is queued by
         * sess_cmd__mail_send, once the MAIL passed its last checks. */
        if (!up_identify_rides_next(s->up, &ci) && up_identify_needed(s->up, &ci)) {
            up_identify(s->up, &ci, sess_cmd__up_ident_cb, s);
            return false;
        }
        s->identified = true;
    }
    return true;
}

/* ---- MAIL -------------------------------------------------------------------- */

static void sess_cmd__mail_reply_cb(void *ud, const struct up_result *r)
{
    struct sess_slot *sl = ud;
    struct sess *s = sl->s;
    if (s->state == S_CLOSING)
        return;
    sess_last_upstream(s, r);
    bool ok = r->err == UP_OK && r->reply->code >= 200 && r->reply->code < 300;
    if (r->err != UP_OK)
        sess_reply_fill_error(sl, r->err);
    else
        sess_reply_fill_relay(sl, r->reply);
    if (ok && s->tx) {
        s->tx->mail_ok = true;
    } else if (!ok && (s->state == S_MAIL || s->state == S_RCPT)) {
        /* No transaction upstream: RCPTs already pipelined behind this
         * MAIL get the upstream's own 503, relayed in order. */
        sess_tx_end(s, false);
    }
    sess_reply_slot_done(sl);
    sess_kick(s);
}

static bool sess_cmd__mail_check(struct sess *s, const struct cmd *c)
{
    if (s->tx) {
        sess_reply(s, 503, "5.5.1", "Error: nested MAIL command");
        sess_error(s);
        return false;
    }
    if (!c->arg)
        return sess_cmd__syntax(s, "MAIL FROM:<address>");
    struct cmd_path path;
    struct cmd_params prm;
    if (!sess_cmd__path(s, c, false, &path, &prm))
        return false;
    if (prm.has_size && s->lst->max_message_size && prm.size > s->lst->max_message_size) {
        sess_reply(s, 552, "5.3.4", "Message size exceeds fixed limit");
        return false;
    }
    if (prm.body == CMD_BODY_BINARYMIME && !(s->offered & UP_CAP_BINARYMIME)) {
        /* Offered only where the upstream takes BDAT and BINARYMIME: a
         * binary body cannot go on as DATA. */
        sess_reply(s, 555, "5.5.4", "Error: BODY=BINARYMIME was not offered");
        return false;
    }
    if (path.utf8 && !prm.smtputf8) {
        sess_reply(s, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
        return false;
    }
    if (prm.smtputf8 && !(s->offered & UP_CAP_SMTPUTF8)) {
        /* Only what this session's EHLO reply offered is accepted. */
        sess_reply(s, 555, "5.5.4", "Error: SMTPUTF8 was not offered");
        return false;
    }
    if ((prm.ret != CMD_RET_NONE || prm.envid) && !(s->offered & UP_CAP_DSN)) {
        /* Never dropped silently: a client asking for DSN behaviour must
         * learn it will not get it (RFC 5321 §4.1.1.11). */
        sess_reply(s, 555, "5.5.4", "Error: DSN was not offered (RET, ENVID)");
        return false;
    }
    s->tx = s->spare_tx ? tx_renew(s->spare_tx, &s->info, clock_mono_ns())
                        : tx_new(&s->info, clock_mono_ns());
    s->spare_tx = NULL;
    s->tx_seq++;
    /* Plugins see the client's own ESMTP parameters (after the path). */
    const char *gt = memchr(c->arg, '>', c->arg_len);
    char raw[CMD_LINE_MAX + 1] = "";
    if (gt)
        snprintf(raw, sizeof raw, "%.*s", (int)(c->arg_len - (size_t)(gt + 1 - c->arg)), gt + 1);
    tx_set_sender(s->tx, path.addr, raw);
    s->tx->body = prm.body;
    s->tx->smtputf8 = prm.smtputf8;
    s->tx->declared_size = prm.has_size ? prm.size : 0;
    if (s->hc && host_conn_active(s->hc))
        host_tx_begin(s->hc);
    s->identified = false;
    return true;
}

static void sess_cmd__mail_proceed(struct sess *s, const struct host_result *r)
{
    if (sess_cmd__refused(s, r)) {
        sess_tx_end(s, false);
        return;
    }
    if (s->tx->sender_changed) {
        char q1[4 * CMD_ADDR_MAX + 3], q2[4 * CMD_ADDR_MAX + 3];
        log_c_info(&s->log, "sender rewritten by plugin: old=%s new=%s",
                   log_quote(q1, sizeof q1, s->tx->orig_sender),
                   log_quote(q2, sizeof q2, s->tx->sender));
        s->tx->sender_changed = false; /* MAIL is built from it: the upstream sees it */
    }
    s->busy = &sess_cmd__table[CMD_MAIL];
    sess_cmd__mail_send(s);
}

/* The forwarded MAIL parameters: only what the upstream offers.
 * AUTH= (RFC 4954 §5) is accepted from the client and never forwarded:
 * sluice does not authenticate to the upstream, so it cannot vouch for a
 * mailbox there, and a client's own claim is worth AUTH=<> (§5: an
 * untrusted value is treated as AUTH=<>). The upstream learns who the
 * client authenticated as through XCLIENT LOGIN= instead; plugins through
 * auth_user(), not through the raw parameter. */
static void sess_cmd__mail_params(struct sess *s, const struct cmd_params *prm, buf_t *out)
{
    unsigned caps = up_caps(s->up);
    if (prm->has_size && (caps & UP_CAP_SIZE))
        buf_printf(out, " SIZE=%llu", (unsigned long long)prm->size);
    if (prm->body == CMD_BODY_BINARYMIME)
        buf_puts(out, " BODY=BINARYMIME"); /* checked in sess_cmd__mail_send */
    else if ((caps & UP_CAP_8BITMIME) && prm->body == CMD_BODY_8BITMIME)
        buf_puts(out, " BODY=8BITMIME");
    else if ((caps & UP_CAP_8BITMIME) && prm->body == CMD_BODY_7BIT)
        buf_puts(out, " BODY=7BIT");
    if (prm->smtputf8)
        buf_puts(out, " SMTPUTF8");
    if (caps & UP_CAP_DSN) {
        if (prm->ret == CMD_RET_FULL)
            buf_puts(out, " RET=FULL");
        else if (prm->ret == CMD_RET_HDRS)
            buf_puts(out, " RET=HDRS");
        if (prm->envid)
            buf_printf(out, " ENVID=%.*s", (int)prm->envid_len, prm->envid);
    }
}

/* MAIL passed its checks and its phase: send it once the upstream is ready. */
static void sess_cmd__mail_send(struct sess *s)
{
    /* Set before the call: a callback (delivered from the loop) comes back
     * here while s->busy stays set. */
    s->up_wait = true;
    if (!sess_cmd__upstream_ready(s)) {
        s->log.action = "opening the upstream connection";
        return;
    }
    s->up_wait = false;
    s->busy = NULL;
    s->identified = false;
    struct cmd c;
    cmd_parse(s->line, s->line_len, &c);
    struct cmd_path path;
    struct cmd_params prm;
    const char *why = NULL;
    cmd_parse_mailrcpt(c.arg, c.arg_len, false, &path, &prm, &why);
    unsigned caps = up_caps(s->up);
    if (prm.smtputf8 && !(caps & UP_CAP_SMTPUTF8)) {
        sess_reply(s, 553, "5.6.7", "Upstream server does not support SMTPUTF8");
        sess_tx_end(s, false);
        return;
    }
    if (prm.body == CMD_BODY_BINARYMIME &&
        (caps & (UP_CAP_CHUNKING | UP_CAP_BINARYMIME)) != (UP_CAP_CHUNKING | UP_CAP_BINARYMIME)) {
        sess_reply(s, 455, "4.5.4", "Upstream server does not support BINARYMIME, try again later");
        sess_tx_end(s, false);
        return;
    }
    if ((prm.ret != CMD_RET_NONE || prm.envid) && !(caps & UP_CAP_DSN)) {
        /* Offered from what the upstream said before; this connection's
         * upstream does not take it. Temporary: another may. */
        sess_reply(s, 455, "4.5.4", "Upstream server does not support DSN, try again later");
        sess_tx_end(s, false);
        return;
    }
    if ((caps & UP_CAP_SIZE) && up_size_limit(s->up) && prm.has_size &&
        prm.size > up_size_limit(s->up)) {
        sess_reply(s, 552, "5.3.4", "Message size exceeds the upstream's limit");
        sess_tx_end(s, false);
        return;
    }
    buf_t params = BUF_INIT;
    sess_cmd__mail_params(s, &prm, &params);
    tx_set_mail_params(s->tx, params.ptr ? params.ptr : "");
    buf_t line = BUF_INIT;
    buf_printf(&line, "MAIL FROM:<%s>%s", s->tx->sender, params.ptr ? params.ptr : "");
    buf_free(&params);
    struct sess_slot *sl = sess_reply_slot(s);
    sess_set_state(s, S_MAIL);
    s->log.action = "sending MAIL to upstream";
    struct up_client_info ci;
    sess_client_info(s, &ci);
    up_identify_with_next(s->up, &ci); /* XFORWARD ahead of it, where it rides along */
    up_command(s->up, line.ptr, sess_cmd__mail_reply_cb, sl);
    buf_free(&line);
}

/* ---- RCPT -------------------------------------------------------------------- */

static void sess_cmd__rcpt_reply_cb(void *ud, const struct up_result *r)
{
    struct sess_slot *sl = ud;
    struct sess *s = sl->s;
    if (s->state == S_CLOSING)
        return;
    sess_last_upstream(s, r);
    bool ok = r->err == UP_OK && r->reply->code >= 200 && r->reply->code < 300;
    if (r->err != UP_OK) {
        sess_reply_fill_error(sl, r->err);
    } else if (ok && !(s->tx && s->tx->mail_ok)) {
        /* Out of protocol: an upstream 250 for a RCPT without a transaction
         * is never relayed. */
        buf_puts(&sl->text, "503 5.5.1 Error: need MAIL command\r\n");
        ok = false;
    } else {
        sess_reply_fill_relay(sl, r->reply);
    }
    if (s->tx && s->tx_seq == sl->tx_seq)
        tx_rcpt_answered(s->tx, sl->rcpt_idx, ok);
    sess_reply_slot_done(sl);
    sess_kick(s);
}

/* NOTIFY and ORCPT go on verbatim (re-encoded from what was validated). */
static void sess_cmd__rcpt_dsn(const struct cmd_params *prm, buf_t *dsn)
{
    if (prm->notify) {
        buf_puts(dsn, " NOTIFY=");
        if (prm->notify & CMD_NOTIFY_NEVER) {
            buf_puts(dsn, "NEVER");
        } else {
            const char *sep = "";
            if (prm->notify & CMD_NOTIFY_SUCCESS) {
                buf_printf(dsn, "%sSUCCESS", sep);
                sep = ",";
            }
            if (prm->notify & CMD_NOTIFY_FAILURE) {
                buf_printf(dsn, "%sFAILURE", sep);
                sep = ",";
            }
            if (prm->notify & CMD_NOTIFY_DELAY)
                buf_printf(dsn, "%sDELAY", sep);
        }
    }
    if (prm->orcpt)
        buf_printf(dsn, " ORCPT=%.*s", (int)prm->orcpt_len, prm->orcpt);
}

static bool sess_cmd__rcpt_check(struct sess *s, const struct cmd *c)
{
    if (!c->arg)
        return sess_cmd__syntax(s, "RCPT TO:<address>");
    struct cmd_path path;
    struct cmd_params prm;
    if (!sess_cmd__path(s, c, true, &path, &prm))
        return false;
    if (s->lst->max_recipients && s->tx->rcpts_sent >= s->lst->max_recipients) {
        sess_reply(s, 452, "4.5.3", "Error: too many recipients");
        return false;
    }
    if (path.utf8 && !s->tx->smtputf8) {
        sess_reply(s, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
        return false;
    }
    if (prm.notify || prm.orcpt) {
        if (!(s->offered & UP_CAP_DSN)) {
            sess_reply(s, 555, "5.5.4", "Error: DSN was not offered (NOTIFY, ORCPT)");
            return false;
        }
        if (s->up && !(up_caps(s->up) & UP_CAP_DSN)) {
            sess_reply(s, 455, "4.5.4", "Upstream server does not support DSN, try again later");
            return false;
        }
    }
    buf_t dsn = BUF_INIT;
    sess_cmd__rcpt_dsn(&prm, &dsn);
    snprintf(s->addr, sizeof s->addr, "%s", path.addr);
    tx_set_current(s->tx, path.addr, dsn.ptr ? dsn.ptr : "");
    buf_free(&dsn);
    return true;
}

static void sess_cmd__rcpt_proceed(struct sess *s, const struct host_result *r)
{
    if (sess_cmd__refused(s, r))
        return;
    if (!s->tx || (s->state != S_MAIL && s->state != S_RCPT)) {
        /* The MAIL failed meanwhile (its reply came during the phase). */
        sess_reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    struct tx_rcpt *cur = &s->tx->cur;
    if (r && cur->removed) {
        char q[4 * CMD_ADDR_MAX + 3];
        log_c_info(&s->log, "recipient dropped by plugin %s: rcpt=%s", r->plugin ? r->plugin : "",
                   log_quote(q, sizeof q, s->addr));
        sess_reply(s, 250, "2.1.5", "Ok");
        return;
    }
    if (strcmp(cur->addr, s->addr) != 0) {
        char q1[4 * CMD_ADDR_MAX + 3], q2[4 * CMD_ADDR_MAX + 3];
        log_c_info(&s->log, "recipient rewritten by plugin: old=%s new=%s",
                   log_quote(q1, sizeof q1, s->addr), log_quote(q2, sizeof q2, cur->addr));
    }
    struct sess_slot *sl = sess_reply_slot(s);
    sl->rcpt_idx = tx_rcpt_sent(s->tx);
    sl->tx_seq = s->tx_seq;
    sess_set_state(s, S_RCPT);
    buf_t line = BUF_INIT;
    buf_printf(&line, "RCPT TO:<%s>%s", cur->addr, cur->params);
    s->log.action = "sending RCPT to upstream";
    up_command(s->up, line.ptr, sess_cmd__rcpt_reply_cb, sl);
    buf_free(&line);
}

/* ---- DATA, RSET, QUIT, STARTTLS and the simple ones ------------------------------ */

static bool sess_cmd__data_check(struct sess *s, const struct cmd *c)
{
    if (c->arg_len)
        return sess_cmd__syntax(s, "DATA");
    if (s->tx->body == CMD_BODY_BINARYMIME) {
        /* RFC 3030 §3: a BINARYMIME message is only ever sent with BDAT. */
        sess_reply(s, 503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT");
        return false;
    }
    if (tx_accepted(s->tx) == 0) {
        sess_reply(s, 554, "5.5.1", "Error: no valid recipients");
        return false;
    }
    return true;
}

bool sess_cmd_msg_begin(struct sess *s, bool chunked)
{
    if (!s->msg)
        s->msg = msgbuf_new(s->cfg->memory_buffer, s->cfg->spool_dir);
    else
        msgbuf_reset(s->msg);
    if (!s->msg)
        return false;
    struct data_limits lim = {
        .max_line = s->cfg->max_line_length,
        .reject_long_lines = s->cfg->long_lines == CFG_LONG_REJECT,
        .bare = s->cfg->bare_newline == CFG_BARE_NORMALIZE ? DATA_BARE_NORMALIZE : DATA_BARE_REJECT,
        .reject_nul = true,
        .max_header = s->cfg->max_header_size,
        .max_size = s->lst->max_message_size,
    };
    /* BDAT content goes through the same reader, without dots: the same
     * limits, the same canonical form. */
    if (chunked) {
        data_reader_init_chunked(&s->dr, &lim, msgbuf_sink, s->msg);
        if (s->tx->body == CMD_BODY_BINARYMIME)
            data_reader_set_binary(&s->dr);
    } else
        data_reader_init(&s->dr, &lim, msgbuf_sink, s->msg);
    return true;
}

static void sess_cmd__data_proceed(struct sess *s, const struct host_result *r)
{
    (void)r;
    if (!sess_cmd_msg_begin(s, false)) {
        sess_reply(s, 451, "4.3.0", "Local error in processing");
        return;
    }
    sess_set_state(s, S_DATA);
    s->log.action = "reading the message";
    sess_arm_timer(s); /* data_timeout from now on */
    sess_reply(s, 354, "", "End data with <CR><LF>.<CR><LF>");
}

static bool sess_cmd__noarg_check(struct sess *s, const struct cmd *c, const char *usage)
{
    if (c->arg_len)
        return sess_cmd__syntax(s, usage);
    return true;
}

static bool sess_cmd__rset_check(struct sess *s, const struct cmd *c)
{
    return sess_cmd__noarg_check(s, c, "RSET");
}

static void sess_cmd__rset_proceed(struct sess *s, const struct host_result *r)
{
    (void)r;
    if (s->tx)
        sess_log_tx(s, STATS_V_ABORTED, 0);
    sess_tx_end(s, true);
    sess_reply(s, 250, "2.0.0", "Ok");
}

static void sess_cmd__noop_proceed(struct sess *s, const struct host_result *r)
{
    (void)r;
    sess_reply(s, 250, "2.0.0", "Ok");
}

static void sess_cmd__quit_proceed(struct sess *s, const struct host_result *r)
{
    (void)r;
    sess_reply(s, 221, "2.0.0", "Bye");
    if (s->tx)
        sess_log_tx(s, STATS_V_ABORTED, 0);
    sess_tx_end(s, true);
    sess_close(s, true);
}

static void sess_cmd__help_proceed(struct sess *s, const struct host_result *r)
{
    (void)r;
    sess_reply(s, 214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY%s",
               sess_starttls_ctx(s) ? " STARTTLS" : "");
}

static void sess_cmd__vrfy_proceed(struct sess *s, const struct host_result *r)
{
    (void)r;
    sess_reply(s, 252, "2.1.5", "Cannot VRFY user, but will accept message and attempt delivery");
}

static bool sess_cmd__starttls_check(struct sess *s, const struct cmd *c)
{
    if (!s->tls && !sess_starttls_ctx(s)) {
        sess_reply(s, 502, "5.5.1", "Error: command not implemented");
        sess_error(s);
        return false;
    }
    if (s->tls) {
        sess_reply(s, 503, "5.5.1", "Error: TLS already active");
        sess_error(s);
        return false;
    }
    return sess_cmd__noarg_check(s, c, "STARTTLS");
}

static void sess_cmd__starttls_proceed(struct sess *s, const struct host_result *r)
{
    (void)r;
    sess_tx_end(s, true);
    sess_reply(s, 220, "2.0.0", "Ready to start TLS");
    conn_flush(s->conn);
    if (conn_starttls_server(s->conn, sess_starttls_ctx(s)) != 0) {
        sess_close(s, false);
        return;
    }
    /* CVE-2011-0411: anything pipelined after STARTTLS is discarded. */
    buf_reset(&s->in);
    s->log.action = "in the client's TLS handshake";
    sess_set_state(s, S_TLS);
}

static bool sess_cmd__not_impl(struct sess *s, const struct cmd *c)
{
    (void)c;
    sess_reply(s, 502, "5.5.1", "Error: command not implemented");
    sess_error(s);
    return false;
}

static bool sess_cmd__ok(struct sess *s, const struct cmd *c)
{
    (void)s;
    (void)c;
    return true;
}

/* ---- the table ----------------------------------------------------------------- */

#define ANY ST_COMMAND
static const struct sess_verb sess_cmd__table[CMD_VERB_COUNT] = {
    [CMD_EHLO] = {CMD_EHLO, ANY, NULL, SV_BARRIER | SV_JUNK | SV_PRE, SLUICE_PHASE_HELO,
                  sess_cmd__ehlo_check, sess_cmd__helo_proceed},
    [CMD_HELO] = {CMD_HELO, ANY, NULL, SV_BARRIER | SV_JUNK | SV_PRE, SLUICE_PHASE_HELO,
                  sess_cmd__helo_only_check, sess_cmd__helo_proceed},
    [CMD_MAIL] = {CMD_MAIL, S_BIT(S_HELO) | ST_TX, "Error: send HELO/EHLO first", SV_COUNT_ERROR,
                  SLUICE_PHASE_MAIL, sess_cmd__mail_check, sess_cmd__mail_proceed},
    [CMD_RCPT] = {CMD_RCPT, ST_TX, "Error: need MAIL command", SV_COUNT_ERROR | SV_NEEDS_TX,
                  SLUICE_PHASE_RCPT, sess_cmd__rcpt_check, sess_cmd__rcpt_proceed},
    [CMD_DATA] = {CMD_DATA, ST_TX, "Error: need MAIL command",
                  SV_BARRIER | SV_COUNT_ERROR | SV_NEEDS_TX, SV_NO_PHASE, sess_cmd__data_check,
                  sess_cmd__data_proceed},
    [CMD_RSET] = {CMD_RSET, ANY, NULL, SV_BARRIER | SV_JUNK | SV_PRE, SV_NO_PHASE,
                  sess_cmd__rset_check, sess_cmd__rset_proceed},
    [CMD_NOOP] = {CMD_NOOP, ANY, NULL, SV_JUNK | SV_PRE, SV_NO_PHASE, sess_cmd__ok,
                  sess_cmd__noop_proceed},
    [CMD_QUIT] = {CMD_QUIT, ANY, NULL, SV_BARRIER | SV_PRE, SV_NO_PHASE, sess_cmd__ok,
                  sess_cmd__quit_proceed},
    [CMD_HELP] = {CMD_HELP, ANY, NULL, SV_BARRIER | SV_JUNK, SV_NO_PHASE, sess_cmd__ok,
                  sess_cmd__help_proceed},
    [CMD_VRFY] = {CMD_VRFY, ANY, NULL, SV_BARRIER | SV_JUNK, SV_NO_PHASE, sess_cmd__ok,
                  sess_cmd__vrfy_proceed},
    [CMD_STARTTLS] = {CMD_STARTTLS, ANY, NULL, SV_BARRIER | SV_DISCARD_AFTER | SV_PRE, SV_NO_PHASE,
                      sess_cmd__starttls_check, sess_cmd__starttls_proceed},
    [CMD_EXPN] = {CMD_EXPN, ANY, NULL, SV_BARRIER, SV_NO_PHASE, sess_cmd__not_impl, NULL},
    /* Before STARTTLS too: sess_auth_check() answers 538 itself. A barrier:
     * the lines after it may be SASL responses, not commands. */
    [CMD_AUTH] = {CMD_AUTH, ANY, NULL, SV_BARRIER | SV_JUNK | SV_PRE, SV_NO_PHASE, sess_auth_check,
                  sess_auth_proceed},
    /* Not SV_NEEDS_TX and every state: a BDAT out of place is answered
     * only after its bytes were read (sess_bdat.c). */
    [CMD_BDAT] = {CMD_BDAT, ANY, NULL, SV_BARRIER, SV_NO_PHASE, sess_bdat_check, sess_bdat_proceed},
    [CMD_ETRN] = {CMD_ETRN, ANY, NULL, SV_BARRIER, SV_NO_PHASE, sess_cmd__not_impl, NULL},
    [CMD_TURN] = {CMD_TURN, ANY, NULL, SV_BARRIER, SV_NO_PHASE, sess_cmd__not_impl, NULL},
    [CMD_XCLIENT] = {CMD_XCLIENT, ANY, NULL, SV_BARRIER, SV_NO_PHASE, sess_cmd__not_impl, NULL},
    [CMD_XFORWARD] = {CMD_XFORWARD, ANY, NULL, SV_BARRIER, SV_NO_PHASE, sess_cmd__not_impl, NULL},
};
#undef ANY

const struct sess_verb *sess_cmd_verb(enum cmd_verb v)
{
    return v < CMD_VERB_COUNT ? &sess_cmd__table[v] : NULL;
}

bool sess_cmd_is_barrier(enum cmd_verb v)
{
    const struct sess_verb *d = v < CMD_VERB_COUNT ? &sess_cmd__table[v] : NULL;
    return !d || !d->check || (d->flags & SV_BARRIER);
}

/* ---- dispatch -------------------------------------------------------------------- */

static void sess_cmd__phase_done(void *ud, struct host_result *r)
{
    struct sess *s = ud;
    if (r->tx && s->tx && s->tx_seq == s->busy_seq && r->tx != s->tx) {
        /* A hook timed out and still reads the old tx: go on with the clone. */
        tx_unref(s->tx);
        s->tx = r->tx;
    } else {
        tx_unref(r->tx); /* the same tx, or one the session ended meanwhile */
    }
    r->tx = NULL;
    if (s->state == S_CLOSING)
        return;
    const struct sess_verb *d = s->busy;
    s->busy = NULL;
    d->proceed(s, r);
    sess_kick(s);
}

static void sess_cmd__run(struct sess *s, const struct sess_verb *d, const struct cmd *c)
{
    if (s->lst->require_tls && !s->tls && !(d->flags & SV_PRE_TLS)) {
        /* RFC 3207 section 4; before the sequence check: the client
         * learns what it must do first. A BDAT's chunk is still read, or
         * its bytes would be taken as commands. */
        static const char need_tls[] = "Must issue a STARTTLS command first";
        if (c->verb == CMD_BDAT && sess_bdat_refuse(s, c, 530, "5.7.0", need_tls))
            return;
        sess_reply(s, 530, "5.7.0", "%s", need_tls);
        sess_error(s);
        return;
    }
    if (s->lst->auth.require && !s->info.auth_user[0] && !(d->flags & SV_PRE_AUTH)) {
        static const char need_auth[] = "Authentication required";
        if (c->verb == CMD_BDAT && sess_bdat_refuse(s, c, 530, "5.7.0", need_auth))
            return;
        sess_reply(s, 530, "5.7.0", "%s", need_auth);
        sess_error(s);
        return;
    }
    if (!(d->states & S_BIT(s->state)) || ((d->flags & SV_NEEDS_TX) && !s->tx)) {
        const char *seq = s->state == S_CHUNKED ? sess_bdat_seq_text() : d->seq_text;
        sess_reply(s, 503, "5.5.1", "%s", seq ? seq : "Error: bad sequence");
        if (d->flags & SV_COUNT_ERROR)
            sess_error(s);
        return;
    }
    if ((d->flags & SV_JUNK) && ++s->junk > s->cfg->junk_command_limit &&
        s->cfg->junk_command_limit) {
        /* NOOP, RSET and friends keep a connection open for nothing. */
        sess_reply(s, 421, "4.7.0", "%s Error: too many commands without mail", s->cfg->hostname);
        sess_close(s, true);
        return;
    }
    if (!d->check(s, c))
        return;
    if (d->phase != SV_NO_PHASE && s->hc && host_conn_active(s->hc)) {
        s->busy = d;
        s->busy_seq = s->tx_seq;
        s->log.action = "waiting for the plugins";
        host_run(s->hc, d->phase == SLUICE_PHASE_HELO ? NULL : s->tx, d->phase,
                 sess_cmd__phase_done, s);
        return;
    }
    d->proceed(s, NULL);
}

bool sess_cmd_handle(struct sess *s, const char *line, size_t len)
{
    s->ncmds++;
    struct cmd c;
    cmd_parse(line, len, &c);
    /* AUTH's initial response holds the password: the log has the verb
     * and mechanism only. */
    int shown = (int)len;
    if (c.verb == CMD_AUTH) {
        /* the verb, then only mechanism-name characters (RFC 4422) */
        shown = (int)(c.arg ? (size_t)(c.arg - line) : 4);
        while (shown < (int)len &&
               (isalnum((unsigned char)line[shown]) || line[shown] == '-' || line[shown] == '_'))
            shown++;
    } else if (c.verb == CMD_UNKNOWN) {
        /* Not a command: it may be a SASL response pipelined behind a
         * refused AUTH, that is a password. */
        shown = 0;
    }
    if (shown == 0)
        log_c_debug(&s->log, "client> (not a command, %zu bytes, not shown)", len);
    else
        log_c_debug(&s->log, "client> %.*s%s", shown, line, shown < (int)len ? " ..." : "");
    if (c.has_nul) {
        sess_reply(s, 500, "5.5.2", "Error: NUL character in command");
        sess_error(s);
        return false;
    }
    if (c.has_8bit && c.verb != CMD_MAIL && c.verb != CMD_RCPT) {
        sess_reply(s, 500, "5.5.2", "Error: 8-bit characters in command");
        sess_error(s);
        return false;
    }
    if (c.verb != CMD_BDAT)
        sess_bdat_forget(s);
    const struct sess_verb *d = c.verb < CMD_VERB_COUNT ? &sess_cmd__table[c.verb] : NULL;
    if (!d || !d->check) {
        sess_reply(s, 500, "5.5.1", "Error: command not recognized");
        sess_error(s);
        return false;
    }
    /* The line is kept for steps that resume later (MAIL after the
     * upstream opened); `c` points into it from here on. */
    memcpy(s->line, line, len);
    s->line[len] = 0;
    s->line_len = len;
    if (c.arg)
        c.arg = s->line + (c.arg - line);
    sess_cmd__run(s, d, &c);
    return (d->flags & SV_DISCARD_AFTER) && s->state == S_TLS;
}

/* ---- connect ------------------------------------------------------------------------ */

static void sess_cmd__connect_done(void *ud, struct host_result *r)
{
    struct sess *s = ud;
    if (s->state == S_CLOSING)
        return;
    if (r && (r->verdict == SLUICE_REJECT || r->verdict == SLUICE_TEMPFAIL ||
              r->verdict == SLUICE_DISCONNECT)) {
        /* Refused at connect: say why and close (a 554 greeting would
         * oblige us to keep answering 503 until QUIT; closing is simpler
         * and what clients handle best). */
        if (r->verdict == SLUICE_REJECT)
            sess_reply_text(s, 554, r->enh, r->text);
        else
            sess_reply_text(s, 421, r->enh[0] == '4' ? r->enh : "4.7.0", r->text);
        log_c_info(&s->log, "client=%s refused at connect by %s", s->info.client_addr,
                   r->plugin ? r->plugin : "chain");
        sess_close(s, true);
        return;
    }
    sess_set_state(s, S_GREETED);
    s->log.action = NULL;
    buf_t b = BUF_INIT;
    buf_printf(&b, "220 %s ESMTP %s\r\n", s->cfg->hostname, s->cfg->banner ? s->cfg->banner : "");
    sess_reply_raw(s, b.ptr, b.len);
    buf_free(&b);
    sess_kick(s);
}

void sess_cmd_connect(struct sess *s)
{
    sess_set_state(s, S_CONNECT);
    if (host_conn_active(s->hc)) {
        s->log.action = "running the connect phase";
        host_run(s->hc, NULL, SLUICE_PHASE_CONNECT, sess_cmd__connect_done, s);
        return;
    }
    sess_cmd__connect_done(s, NULL);
}
