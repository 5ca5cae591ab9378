/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sess_auth: SMTP AUTH (RFC 4954) on a listener with auth = dovecot.
 *
 * The verb: "AUTH PLAIN [ir]" or "AUTH LOGIN [ir]" (sasl.h parses). The
 * exchange collects the whole credentials on our side, PLAIN's one
 * response or LOGIN's user name and password (334 prompts), and then asks
 * Dovecot once (authpool.h, dvauth_client.h): 235 2.7.0 when it says OK,
 * 535 5.7.8 when it says FAIL, 454 4.7.0 when it cannot answer.
 *
 * States (sess_set_state; the command table in sess_cmd.c):
 *   HELO --AUTH, a 334 to send--> AUTH --response line(s)--> AUTH (busy:
 *   Dovecot asked) --answer--> HELO
 *   HELO --AUTH PLAIN with its initial response--> AUTH (busy) --> HELO
 * In S_AUTH every input line is a SASL response, never a command (sess.c
 * feeds them here, through their own line reader bounded to the longest
 * response sasl.h accepts); "*" cancels (501 5.0.0). While Dovecot is
 * asked, s->busy is AUTH's table entry: no input is read (a MAIL
 * pipelined after "AUTH PLAIN <ir>", which RFC 4954 §4 allows, waits for
 * the answer and then sees its result), and the client's deadline is off,
 * as for any command we work on; Dovecot's answer is bounded by
 * AUTHPOOL_TIMEOUT_MS. Waiting for a response line, the command timeout
 * runs as for any command.
 *
 * Where AUTH is refused: not offered on this listener (502), before EHLO
 * or in a transaction (503 5.5.1), authenticated already (503 5.5.1),
 * without TLS unless auth_plaintext (538 5.7.11, checked before the
 * listener's require_tls would say 530, so the client learns why).
 *
 * Brute force: each 535 counts; at auth_max_failures the session ends
 * (421 4.7.0 after the 535). Dovecot adds its own brake: it is told the
 * client's address (rip) and never asked for no-penalty, so it delays every
 * failure (auth_failure_delay) and each later attempt from that address
 * (its auth penalty), across sessions.
 *
 * Secrets: the password lives in s->auth.login.creds from the response
 * that brings it until the request is made (dvauth_client copies and
 * wipes its own copy), then it is wiped (sasl_wipe); decoded responses on
 * the stack are wiped too. The log has the user name, never a password.
 *
 * Teardown: sess_auth_cancel() cancels the pending request, so no
 * callback ever reaches a freed session.
 */
#include <stdio.h>
#include <string.h>

#include "authlimit.h"
#include "server.h"
#include "sess_int.h"

bool sess_auth_offered(const struct sess *s)
{
    return s->lst->auth.mode == CFG_AUTH_DOVECOT && (s->tls || s->lst->auth.plaintext);
}

/* The exchange is over (any outcome): no secret stays, input is commands. */
static void sess_auth__end(struct sess *s)
{
    sasl_wipe(&s->auth.login, sizeof s->auth.login);
    s->auth.mech = SASL_MECH_NONE;
    if (s->state == S_AUTH)
        sess_set_state(s, S_HELO);
    s->log.action = NULL;
}

/* A sasl.h error as the reply RFC 4954 asks for; the exchange ends. */
static void sess_auth__refuse(struct sess *s, int rc)
{
    switch (rc) {
    case SASL_ECANCEL:
        sess_reply(s, 501, "5.0.0", "Authentication cancelled");
        stats_auth(STATS_AUTH_ABORTED);
        sess_auth__end(s);
        return; /* the client's right, not an error */
    case SASL_EMECH:
        sess_reply(s, 504, "5.5.4", "Unrecognized authentication type");
        break;
    case SASL_ESYNTAX:
        sess_reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
        break;
    case SASL_ETOOLONG:
        sess_reply(s, 500, "5.5.6", "Authentication exchange line is too long");
        break;
    default: /* SASL_EBASE64, SASL_EMSG */
        sess_reply(s, 501, "5.5.2", "Invalid authentication response (%s)", sasl_strerror(rc));
        break;
    }
    stats_auth(STATS_AUTH_ABORTED);
    sess_auth__end(s);
    sess_error(s);
}

bool sess_auth_check(struct sess *s, const struct cmd *c)
{
    if (s->lst->auth.mode != CFG_AUTH_DOVECOT) {
        sess_reply(s, 502, "5.5.1", "Error: command not implemented");
        sess_error(s);
        return false;
    }
    if (s->state == S_GREETED) {
        sess_reply(s, 503, "5.5.1", "Error: send EHLO first");
        sess_error(s);
        return false;
    }
    if (s->tx || s->state != S_HELO) {
        sess_reply(s, 503, "5.5.1", "Error: AUTH not permitted during a mail transaction");
        sess_error(s);
        return false;
    }
    if (s->info.auth_user[0]) {
        sess_reply(s, 503, "5.5.1", "Error: already authenticated");
        sess_error(s);
        return false;
    }
    if (!sess_auth_offered(s)) {
        sess_reply(s, 538, "5.7.11", "Encryption required for requested authentication mechanism");
        sess_error(s);
        return false;
    }
    char key[64];
    uint64_t retry_ms = 0;
    if (authlimit_blocked(s->srv->authfail,
                          server_ip_key(s->srv, s->info.client_addr, key, sizeof key),
                          uv_now(s->srv->loop), &retry_ms)) {
        /* Across connections: reconnecting does not buy more guesses.
         * Dovecot is not asked, so its own penalty is not fed either. */
        log_c_warn(&s->log, "event=auth client=%s result=blocked retry_in=%llus",
                   s->info.client_addr, (unsigned long long)(retry_ms + 999) / 1000);
        stats_auth(STATS_AUTH_BLOCKED);
        sess_reply(s, 454, "4.7.0",
                   "Too many failed authentications from your address, try again later");
        sess_error(s);
        return false;
    }
    /* The syntax now, so that a refusal counts as the command's error;
     * proceed decodes it again from s->line (no secret kept in between). */
    struct sasl_auth_cmd a;
    int rc =
        sasl_auth_parse(c->arg ? c->arg : "", c->arg_len, SASL_MECH_PLAIN | SASL_MECH_LOGIN, &a);
    sasl_wipe(&a, sizeof a);
    if (rc < 0) {
        sess_auth__refuse(s, rc);
        return false;
    }
    return true;
}

static void sess_auth__done(void *ud, const struct dvauth_client_result *r);

static bool sess_auth__printable(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || *v == 0x7f)
            return false;
    return true;
}

static void sess_auth__failed(struct sess *s, const char *reason);

/* The credentials are complete: ask Dovecot. The attempt counts against
 * the client's address now, while it waits (concurrent sessions cannot
 * have more guesses in flight than the limit); an answer other than FAIL
 * gives it back. */
static void sess_auth__submit(struct sess *s)
{
    const struct sasl_creds *cr = &s->auth.login.creds;
    snprintf(s->auth.user, sizeof s->auth.user, "%s", cr->authcid);
    char key[64];
    authlimit_fail(s->srv->authfail, server_ip_key(s->srv, s->info.client_addr, key, sizeof key),
                   uv_now(s->srv->loop));
    if (!sess_auth__printable(cr->authcid) || !sess_auth__printable(cr->authzid)) {
        /* No account has such a name; Dovecot is not asked. */
        sasl_wipe(&s->auth.login, sizeof s->auth.login);
        sess_auth__failed(s, "control characters in the user name");
        return;
    }
    struct dvauth_req q = {
        .mech = "PLAIN",
        .authzid = cr->authzid,
        .user = cr->authcid,
        .pass = cr->passwd,
        .service = "smtp",
        .lip = s->info.local_addr,
        .rip = s->info.client_addr,
        .lport = s->info.local_port > 0 ? (unsigned)s->info.local_port : 0,
        .rport = s->info.client_port > 0 ? (unsigned)s->info.client_port : 0,
        .session = s->info.sid,
        .secured = s->tls,
    };
    s->auth.req = authpool_auth(s->srv->auth, s->lst->auth.socket, &q, sess_auth__done, s);
    sasl_wipe(&s->auth.login, sizeof s->auth.login); /* copied by the client */
    if (!s->auth.req) {
        authlimit_refund(s->srv->authfail, key, uv_now(s->srv->loop));
        log_c_warn(&s->log, "client=%s auth request not made (auth_socket %s)", s->info.client_addr,
                   s->lst->auth.socket);
        sess_reply(s, 454, "4.7.0", "Temporary authentication failure");
        stats_auth(STATS_AUTH_TEMPFAIL);
        sess_auth__end(s);
        return;
    }
    sess_set_state(s, S_AUTH);
    s->busy = sess_cmd_verb(CMD_AUTH);
    s->log.action = "waiting for Dovecot's answer to AUTH";
}

/* A 535: counted per session (then 421) and, already at submit, per
 * address. */
static void sess_auth__failed(struct sess *s, const char *reason)
{
    char quser[4 * sizeof s->auth.user + 3], qwhy[1200];
    s->auth.failures++;
    log_c_warn(&s->log, "event=auth client=%s result=fail mech=%s user=%s failures=%u%s%s",
               s->info.client_addr, sasl_mech_name(s->auth.mech),
               log_quote(quser, sizeof quser, s->auth.user), s->auth.failures,
               reason ? " reason=" : "", reason ? log_quote(qwhy, sizeof qwhy, reason) : "");
    stats_auth(STATS_AUTH_FAILURE);
    sess_reply(s, 535, "5.7.8", "Authentication credentials invalid");
    sess_auth__end(s);
    if (s->lst->auth.max_failures && s->auth.failures >= s->lst->auth.max_failures) {
        sess_reply(s, 421, "4.7.0", "%s Error: too many failed authentications", s->cfg->hostname);
        sess_close(s, true);
    }
}

static void sess_auth__done(void *ud, const struct dvauth_client_result *r)
{
    struct sess *s = ud;
    s->auth.req = NULL;
    char key[64];
    if (r->status != DVAUTH_CLIENT_FAIL) /* only a refusal keeps its count */
        authlimit_refund(s->srv->authfail,
                         server_ip_key(s->srv, s->info.client_addr, key, sizeof key),
                         uv_now(s->srv->loop));
    if (s->state == S_CLOSING)
        return;
    s->busy = NULL;
    s->log.action = NULL; /* the answer is in */
    const char *mech = sasl_mech_name(s->auth.mech);
    char quser[4 * sizeof s->auth.user + 3], qwhy[1200];
    switch (r->status) {
    case DVAUTH_CLIENT_OK:
        /* Dovecot's canonical name is the one plugins, the log and the
         * upstream (XCLIENT LOGIN=) see. */
        snprintf(s->info.auth_user, sizeof s->info.auth_user, "%s",
                 r->user && *r->user ? r->user : s->auth.user);
        if (s->hc)
            host_conn_info(s->hc, &s->info);
        log_c_info(&s->log, "event=auth client=%s result=ok mech=%s user=%s", s->info.client_addr,
                   mech, log_quote(quser, sizeof quser, s->info.auth_user));
        stats_auth(STATS_AUTH_SUCCESS);
        sess_reply(s, 235, "2.7.0", "Authentication successful");
        sess_auth__end(s);
        break;
    case DVAUTH_CLIENT_FAIL:
        sess_auth__failed(s, r->reason);
        if (s->state == S_CLOSING)
            return;
        break;
    default:
        log_c_warn(&s->log, "event=auth client=%s result=tempfail mech=%s user=%s why=%s",
                   s->info.client_addr, mech, log_quote(quser, sizeof quser, s->auth.user),
                   log_quote(qwhy, sizeof qwhy, r->reason ? r->reason : "?"));
        stats_auth(STATS_AUTH_TEMPFAIL);
        sess_reply(s, 454, "4.7.0", "Temporary authentication failure");
        sess_auth__end(s);
        break;
    }
    sess_kick(s);
}

/* Waiting for a response line: the 334 goes out, input is SASL from now. */
static void sess_auth__prompt(struct sess *s, const char *prompt)
{
    sess_set_state(s, S_AUTH);
    /* Its own bound: a response may be longer than a command line. */
    cmd_reader_init(&s->auth.rd, SASL_B64_MAX + 2);
    s->log.action = "reading the AUTH exchange";
    sess_reply(s, 334, "", "%s", prompt);
}

void sess_auth_proceed(struct sess *s, const struct host_result *r)
{
    (void)r; /* AUTH has no plugin phase */
    struct cmd c;
    cmd_parse(s->line, s->line_len, &c);
    struct sasl_auth_cmd a;
    int rc = sasl_auth_parse(c.arg ? c.arg : "", c.arg_len, SASL_MECH_PLAIN | SASL_MECH_LOGIN, &a);
    sasl_wipe(s->line, sizeof s->line); /* an initial response holds the password */
    s->line_len = 0;
    if (rc < 0) { /* cannot be: check parsed the same line */
        sasl_wipe(&a, sizeof a);
        sess_auth__refuse(s, rc);
        return;
    }
    memset(&s->auth.login, 0, sizeof s->auth.login);
    s->auth.mech = a.mech;
    const char *prompt = NULL;
    if (a.mech == SASL_MECH_LOGIN) {
        rc = sasl_login_begin(&s->auth.login, &a, &prompt);
        sasl_wipe(&a, sizeof a);
        if (rc == SASL_MORE)
            sess_auth__prompt(s, prompt);
        else
            sess_auth__refuse(s, rc);
        return;
    }
    if (!a.has_ir) {
        sasl_wipe(&a, sizeof a);
        sess_auth__prompt(s, ""); /* PLAIN: an empty challenge */
        return;
    }
    rc = sasl_plain_decode(a.ir, a.ir_len, &s->auth.login.creds);
    sasl_wipe(&a, sizeof a);
    if (rc < 0)
        sess_auth__refuse(s, rc);
    else
        sess_auth__submit(s);
}

void sess_auth_feed(struct sess *s, const char *line, size_t len)
{
    if (!line) {
        sess_auth__refuse(s, SASL_ETOOLONG);
        return;
    }
    int rc;
    if (s->auth.mech == SASL_MECH_LOGIN) {
        const char *prompt = NULL;
        rc = sasl_login_feed(&s->auth.login, line, len, &prompt);
        if (rc == SASL_MORE) {
            sess_reply(s, 334, "", "%s", prompt);
            return;
        }
    } else {
        unsigned char msg[SASL_MSG_MAX];
        size_t n = 0;
        rc = sasl_response_decode(line, len, msg, &n);
        if (rc >= 0)
            rc = sasl_plain_decode(msg, n, &s->auth.login.creds);
        sasl_wipe(msg, sizeof msg);
    }
    if (rc < 0)
        sess_auth__refuse(s, rc);
    else
        sess_auth__submit(s);
}

void sess_auth_forget(struct sess *s)
{
    s->info.auth_user[0] = 0;
    s->auth.user[0] = 0;
}

void sess_auth_cancel(struct sess *s)
{
    if (s->auth.req) {
        authpool_cancel(s->auth.req);
        s->auth.req = NULL;
    }
    sasl_wipe(&s->auth.login, sizeof s->auth.login);
}
