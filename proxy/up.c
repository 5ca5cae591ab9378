/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * up: the SMTP client towards the real MTA (the upstream); see up.h.
 *
 * State machine: `u->state` changes in up__set_state() only, which checks
 * the change against up__states[] (states and legal transitions in one
 * table, below the enum) and logs `old -> new` at debug.
 *
 * Commands live in three FIFOs: `waiting` (not sent yet), `inflight` (sent,
 * reply pending; replies pop it in order) and `done` (result known without
 * a reply: failures and synthetic answers). The handshake uses the same
 * FIFOs with internal callbacks, so there is one reply path; what may be
 * sent in which state is up__may_send().
 *
 * Callbacks. The caller's callbacks run only from two loop entry points:
 * up__on_read() (a reply arrived) and up__deliver() (the defer event that
 * empties `done`). No public function calls back. Both entry points hold
 * u->depth while they run; up_free() inside a callback only marks the up
 * dead, and the entry point frees it when the callback returns.
 *
 * Ownership: struct up owns its conn, its timer, its defer event and every
 * queued command. Segments given to up_data() belong to the caller.
 */
#include "up.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "conn.h"
#include "defer.h"
#include "log.h"
#include "data.h"
#include "stats.h"
#include "xalloc.h"

enum up_state {
    UP_S_NEW = 0,    /* up_new(): nothing done yet */
    UP_S_CONNECTING, /* TCP connect to cfg->upstream[server_idx] */
    UP_S_GREETING,   /* connected; waiting for the 220 banner */
    UP_S_EHLO,       /* EHLO queued or sent (first, or again after TLS) */
    UP_S_STARTTLS,   /* STARTTLS queued or sent; waiting for its 220 */
    UP_S_TLS,        /* TLS handshake running */
    UP_S_READY,      /* usable: the caller's commands flow */
    UP_S_XCLIENT,    /* XCLIENT sent; until its reply and the EHLO it needs */
    UP_S_DATA,       /* 354 received: the message is being written */
    UP_S_FAILED,     /* connection dead; owners hear it from the loop */
    UP_S_CLOSED,     /* up_free() called */
};

#define S_(x) (1u << UP_S_##x)
#define S_END (S_(FAILED) | S_(CLOSED)) /* every live state may end so */
static const struct {
    const char *name;
    unsigned next; /* bit set of the states it may change to */
} up__states[] = {
    [UP_S_NEW] = {"new", S_(CONNECTING) | S_END},
    [UP_S_CONNECTING] = {"connecting", S_(CONNECTING) | S_(GREETING) | S_END},
    [UP_S_GREETING] = {"greeting", S_(EHLO) | S_END},
    [UP_S_EHLO] = {"ehlo", S_(STARTTLS) | S_(READY) | S_END},
    [UP_S_STARTTLS] = {"starttls", S_(TLS) | S_(READY) | S_END},
    [UP_S_TLS] = {"tls", S_(EHLO) | S_END},
    [UP_S_READY] = {"ready", S_(XCLIENT) | S_(DATA) | S_END},
    [UP_S_XCLIENT] = {"xclient", S_(READY) | S_END},
    [UP_S_DATA] = {"data", S_(READY) | S_END},
    [UP_S_FAILED] = {"failed", S_(CLOSED)},
    [UP_S_CLOSED] = {"closed", 0},
};
#undef S_
#undef S_END

enum up_cmd_kind {
    UP_K_USER = 0, /* MAIL, RCPT, RSET, ... from the caller; also `done` results */
    UP_K_GREETING, /* pseudo command: the 220 banner */
    UP_K_EHLO,
    UP_K_STARTTLS,
    UP_K_XCLIENT,
    UP_K_XFORWARD,
    UP_K_DATA,  /* DATA; on 354 the message follows */
    UP_K_DOT,   /* pseudo command: the final reply after the dot */
    UP_K_BDAT,  /* "BDAT n LAST" and the message (RFC 3030); its reply is final */
    UP_K_RESET, /* the idle pool's RSET (up_reset): the caller's, not a client's */
};

struct up_cmd {
    struct up_cmd *next;
    enum up_cmd_kind kind;
    up_cb cb;
    void *ud;
    /* Held in `waiting` until a command that is not held follows, and sent
     * in one write with it: XFORWARD lines ahead of their MAIL. (A group
     * split over two segments can stall 40 ms: the MTA answers the first
     * part, its Nagle holds the next answer until our delayed ACK.) */
    bool hold;
    /* The result, for commands on `done` (delivered from the loop). */
    enum up_err err;
    const char *why;                /* static, or u->fail_why */
    const struct smtp_reply *reply; /* static synthetic reply or NULL */
    size_t len;
    char line[]; /* NUL-terminated, without CRLF */
};

struct up_fifo {
    struct up_cmd *head, *tail;
    size_t n;
};

struct up {
    uv_loop_t *loop;
    struct cfg *cfg; /* referenced */
    char sid[32];
    enum up_state state;
    struct conn *conn;     /* NULL unless connecting or connected */
    uv_timer_t *timer;     /* heap: closed asynchronously */
    struct defer_ev defer; /* runs up__deliver() while `done` is not empty */
    size_t server_idx;
    char server[300];
    unsigned caps;
    unsigned own_caps;       /* from sluice's own EHLO, before any XCLIENT */
    unsigned xclient_attrs;  /* ESMTP_XA_* the last EHLO's XCLIENT lists */
    unsigned xforward_attrs; /* ... and its XFORWARD */
    unsigned long long size_limit;
    bool tls_done;
    bool xclient_done;
    bool xclient_ever;     /* an XCLIENT was sent on this connection */
    bool xforward_refused; /* the MTA refused an XFORWARD: not sent again here */
    bool xclient_again;    /* ... and the EHLO after the last one offered XCLIENT again:
                            * the MTA lets the next client be told here (reusable) */
    unsigned errors;       /* 4xx/5xx to clients' commands since the last delivery */
    char client_helo[256]; /* the real client's HELO, for the EHLO after XCLIENT */
    char told_helo[256];   /* the HELO the last XCLIENT told (re-sent when it changes) */
    char told_login[256];  /* ... and the login name */
    int depth;             /* loop entry points on the stack (see the top) */
    bool dead;             /* up_free() called */
    bool parked;           /* idle in the reuse pool: its end is no error */
    /* The last reply the MTA gave left no transaction open (up__closes_tx).
     * With nothing in flight, the connection can serve the next client
     * without an RSET. */
    bool tx_closed;
    uint64_t born;        /* loop ms at up_new() */
    enum up_err fail_err; /* why FAILED */
    char fail_why[256];

    up_cb open_cb; /* pending open result */
    void *open_ud;
    up_cb ident_cb; /* pending identify result */
    void *ident_ud;

    struct up_fifo waiting, inflight, done;
    struct reply_reader rr;
    struct smtp_reply reply;
    buf_t in; /* unparsed input */

    /* message being written in state DATA */
    const struct iovec *segs;
    size_t nsegs, seg_idx, seg_off;
    bool at_line_start;
    bool chunked; /* the last up_data() went as BDAT: bytes as they are */
    unsigned long long data_bytes;
};

#define UP_CHUNK (256 * 1024)

static void up__fail(struct up *u, enum up_err err, const char *why);
static void up__pump(struct up *u);
static void up__stream(struct up *u);
static void up__arm_timer(struct up *u);

/* ---- helpers ------------------------------------------------------------ */

static void fifo_push(struct up_fifo *f, struct up_cmd *c)
{
    c->next = NULL;
    if (f->tail)
        f->tail->next = c;
    else
        f->head = c;
    f->tail = c;
    f->n++;
}

static struct up_cmd *fifo_pop(struct up_fifo *f)
{
    struct up_cmd *c = f->head;
    if (c) {
        f->head = c->next;
        if (!f->head)
            f->tail = NULL;
        f->n--;
    }
    return c;
}

static struct up_cmd *cmd_new(enum up_cmd_kind kind, const char *line, up_cb cb, void *ud)
{
    size_t len = line ? strlen(line) : 0;
    struct up_cmd *c = xmalloc(sizeof *c + len + 1);
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->cb = cb;
    c->ud = ud;
    c->len = len;
    if (len)
        memcpy(c->line, line, len);
    c->line[len] = 0;
    return c;
}

/* Does the caller own this command's callback (as opposed to the handshake
 * or the identify machinery, whose owners hear results another way)? */
static bool cmd_is_callers(const struct up_cmd *c)
{
    return c->kind == UP_K_USER || c->kind == UP_K_DATA || c->kind == UP_K_DOT ||
           c->kind == UP_K_BDAT || c->kind == UP_K_RESET;
}

/* A broken contract is our bug: say which and stop. */
static void up__bug(const struct up *u, const char *what, enum up_state to)
{
    log_fatal("sid=%s upstream: bug: %s (state %s -> %s)", u->sid, what, up__states[u->state].name,
              up__states[to].name);
    abort();
}

/* The one place the state changes. */
static void up__set_state(struct up *u, enum up_state to)
{
    enum up_state from = u->state;
    if (!(up__states[from].next & (1u << to)))
        up__bug(u, "illegal state change", to);
    log_debug("sid=%s upstream=%s state %s -> %s", u->sid, u->server[0] ? u->server : "-",
              up__states[from].name, up__states[to].name);
    u->state = to;
    up__arm_timer(u);
}

static bool up__live(const struct up *u)
{
    return u->state != UP_S_FAILED && u->state != UP_S_CLOSED;
}

static void up__timer_close_cb(uv_handle_t *h)
{
    free(h);
}

static void up__destroy(struct up *u)
{
    defer_cancel(&u->defer);
    struct up_fifo *queues[] = {&u->waiting, &u->inflight, &u->done};
    for (size_t i = 0; i < sizeof queues / sizeof queues[0]; i++) {
        struct up_cmd *c;
        while ((c = fifo_pop(queues[i])))
            free(c);
    }
    if (u->conn)
        conn_close(u->conn, true);
    u->conn = NULL;
    uv_timer_stop(u->timer);
    uv_close((uv_handle_t *)u->timer, up__timer_close_cb);
    buf_free(&u->in);
    cfg_unref(u->cfg);
    free(u);
}

/* Loop entry points that call back hold u->depth (++ on entry) and end
 * with this; afterwards the up may be gone. */
static void up__leave(struct up *u)
{
    if (--u->depth == 0 && u->dead)
        up__destroy(u);
}

/* Call a callback from an entry point; false if the up was freed meanwhile
 * (it is still allocated until up__leave()). */
static bool up__call(struct up *u, up_cb cb, void *ud, const struct up_result *r)
{
    if (cb && !u->dead)
        cb(ud, r);
    return !u->dead;
}

static void up__deliver(struct defer_ev *ev)
{
    struct up *u = (struct up *)(void *)((char *)ev - offsetof(struct up, defer));
    size_t n = u->done.n; /* results posted by these callbacks wait a turn */
    u->depth++;
    while (n-- > 0 && !u->dead) {
        struct up_cmd *c = fifo_pop(&u->done);
        struct up_result r = {.err = c->err, .reply = c->reply, .why = c->why};
        up__call(u, c->cb, c->ud, &r); /* c is off every queue: ours to free */
        free(c);
    }
    up__leave(u);
}

/* Queue c's result for delivery from the loop (takes c). */
static void up__post(struct up *u, struct up_cmd *c, enum up_err err, const char *why,
                     const struct smtp_reply *reply)
{
    if (!c->cb || u->dead) {
        free(c);
        return;
    }
    c->err = err;
    c->why = why;
    c->reply = reply;
    fifo_push(&u->done, c);
    defer_post(&u->defer, up__deliver);
}

static void up__post_cb(struct up *u, up_cb cb, void *ud, enum up_err err, const char *why,
                        const struct smtp_reply *reply)
{
    up__post(u, cmd_new(UP_K_USER, NULL, cb, ud), err, why, reply);
}

static void up__timer_cb(uv_timer_t *t)
{
    struct up *u = t->data;
    stats_timeout(STATS_TO_UPSTREAM);
    up__fail(u, UP_ERR_TIMEOUT, "upstream timeout");
}

/* The timer runs whenever something is expected from the upstream; every
 * send, reply and state change restarts it (an inactivity timeout). */
static void up__arm_timer(struct up *u)
{
    const struct cfg *cfg = u->cfg;
    const struct up_cmd *head = u->inflight.head;
    enum up_state st = u->state;
    unsigned ms = cfg->upstream_command_timeout_ms;
    if (st == UP_S_CONNECTING)
        ms = cfg->upstream_connect_timeout_ms;
    else if (st == UP_S_DATA || (head && (head->kind == UP_K_DOT || head->kind == UP_K_BDAT)))
        ms = cfg->upstream_data_timeout_ms;
    if (!up__live(u) || (!head && st != UP_S_CONNECTING && st != UP_S_GREETING && st != UP_S_TLS &&
                         st != UP_S_DATA))
        uv_timer_stop(u->timer);
    else
        uv_timer_start(u->timer, up__timer_cb, ms, 0);
}

static int up__send_line(struct up *u, const char *line, size_t len)
{
    if (log_enabled(LOG_LVL_DEBUG))
        log_debug("sid=%s upstream> %.*s", u->sid, (int)len, line);
    int rc = conn_write(u->conn, line, len);
    if (!rc)
        rc = conn_write(u->conn, "\r\n", 2);
    return rc;
}

/* ---- failure ------------------------------------------------------------ */

static const enum stats_up_error up__stats_err[] = {
    [UP_ERR_CONNECT] = STATS_UPERR_CONNECT, [UP_ERR_TIMEOUT] = STATS_UPERR_TIMEOUT,
    [UP_ERR_LOST] = STATS_UPERR_LOST,       [UP_ERR_PROTOCOL] = STATS_UPERR_PROTOCOL,
    [UP_ERR_TLS] = STATS_UPERR_TLS,         [UP_ERR_LOCAL] = STATS_UPERR_PROTOCOL,
};

/* Fail the connection. Nobody is called back here: every owner hears the
 * failure once, from the loop, in queue order (open, identify, in flight,
 * waiting). */
static void up__fail(struct up *u, enum up_err err, const char *why)
{
    if (!up__live(u))
        return;
    if (u->parked) {
        /* An idle connection the MTA ended (its idle timeout, a 421 on
         * shutdown): expected, and nobody's mail was on it. */
        log_debug("sid=%s upstream=%s idle connection ended: %s", u->sid,
                  u->server[0] ? u->server : "-", why);
    } else {
        log_warn("sid=%s upstream=%s error=\"%s\"", u->sid, u->server[0] ? u->server : "-", why);
        stats_upstream_error(up__stats_err[err]);
    }
    u->fail_err = err;
    snprintf(u->fail_why, sizeof u->fail_why, "%s", why);
    up__set_state(u, UP_S_FAILED);
    if (u->conn) {
        conn_close(u->conn, false);
        u->conn = NULL;
    }
    if (u->open_cb)
        up__post_cb(u, u->open_cb, u->open_ud, err, u->fail_why, NULL);
    if (u->ident_cb)
        up__post_cb(u, u->ident_cb, u->ident_ud, err, u->fail_why, NULL);
    u->open_cb = u->ident_cb = NULL;
    struct up_fifo *queues[] = {&u->inflight, &u->waiting};
    for (size_t i = 0; i < 2; i++) {
        struct up_cmd *c;
        while ((c = fifo_pop(queues[i]))) {
            if (cmd_is_callers(c))
                up__post(u, c, err, u->fail_why, NULL);
            else
                free(c);
        }
    }
}

/* ---- handshake ---------------------------------------------------------- */

static void up__hs_ehlo_cb(void *ud, const struct up_result *r);

/* Handshake commands go before anything the caller queued. */
static void up__queue_front(struct up *u, enum up_cmd_kind kind, const char *line, up_cb cb)
{
    struct up_cmd *c = cmd_new(kind, line, cb, u);
    c->next = u->waiting.head;
    u->waiting.head = c;
    if (!u->waiting.tail)
        u->waiting.tail = c;
    u->waiting.n++;
}

static void up__queue_ehlo(struct up *u, const char *helo, up_cb cb)
{
    char line[300];
    if (!helo)
        helo = u->cfg->upstream_helo ? u->cfg->upstream_helo : u->cfg->hostname;
    snprintf(line, sizeof line, "EHLO %s", helo);
    up__queue_front(u, UP_K_EHLO, line, cb);
}

static void up__ready(struct up *u, const struct smtp_reply *r)
{
    up__set_state(u, UP_S_READY);
    stats_set_upstream_ok(true);
    if (u->open_cb) {
        up_cb cb = u->open_cb;
        u->open_cb = NULL;
        struct up_result res = {.err = UP_OK, .reply = r, .why = NULL};
        if (!up__call(u, cb, u->open_ud, &res))
            return;
    }
    up__pump(u);
}

static void up__hs_tls_event(struct up *u, bool ok)
{
    if (!ok) {
        char why[256];
        snprintf(why, sizeof why, "TLS handshake failed: %s", conn_tls_error(u->conn));
        /* Even with opportunistic TLS a failed handshake leaves the
         * connection unusable; the client retries (a 4xx), never a loss. */
        up__fail(u, UP_ERR_TLS, why);
        return;
    }
    u->tls_done = true;
    log_debug("sid=%s upstream TLS %s %s", u->sid, conn_tls_version(u->conn),
              conn_tls_cipher(u->conn));
    up__set_state(u, UP_S_EHLO);
    up__queue_ehlo(u, NULL, up__hs_ehlo_cb);
    up__pump(u);
}

static SSL_CTX *up__client_ctx(struct up *u, char *err, size_t errlen)
{
    /* One client context per process and CA setting would be better; the
     * handshake cost dominates anyway. Cached per cfg via a static. */
    static SSL_CTX *ctx;
    static char ctx_ca[4096];
    static bool ctx_verify;
    const char *ca = u->cfg->upstream_tls_ca_file ? u->cfg->upstream_tls_ca_file : "";
    if (ctx && ctx_verify == u->cfg->upstream_tls_verify && strcmp(ctx_ca, ca) == 0)
        return ctx;
    SSL_CTX *n = conn_tls_client_ctx_new(u->cfg->upstream_tls_ca_file, u->cfg->upstream_tls_verify,
                                         err, errlen);
    if (!n)
        return NULL;
    if (ctx)
        SSL_CTX_free(ctx); /* connections hold their own reference */
    ctx = n;
    ctx_verify = u->cfg->upstream_tls_verify;
    snprintf(ctx_ca, sizeof ctx_ca, "%s", ca);
    return ctx;
}

static void up__hs_starttls_cb(void *ud, const struct up_result *r)
{
    struct up *u = ud;
    if (r->reply->code != 220) {
        if (u->cfg->upstream_tls == CFG_UP_TLS_ENCRYPT) {
            up__fail(u, UP_ERR_TLS, "upstream refused STARTTLS");
            return;
        }
        up__ready(u, r->reply);
        return;
    }
    /* Response injection (mirror of CVE-2011-0411): nothing may follow 220. */
    buf_reset(&u->in);
    char err[256];
    SSL_CTX *ctx = up__client_ctx(u, err, sizeof err);
    if (!ctx) {
        up__fail(u, UP_ERR_TLS, err);
        return;
    }
    const struct cfg_addr *a = &u->cfg->upstream[u->server_idx];
    const char *name =
        u->cfg->upstream_tls_verify_name ? u->cfg->upstream_tls_verify_name : a->host;
    up__set_state(u, UP_S_TLS);
    if (conn_starttls_client(u->conn, ctx, name, u->cfg->upstream_tls_verify) != 0)
        up__fail(u, UP_ERR_TLS, "cannot start TLS");
}

static void up__hs_ehlo_cb(void *ud, const struct up_result *r)
{
    struct up *u = ud;
    if (r->reply->code != 250) {
        /* Some servers only speak HELO; we need ESMTP for a transparent proxy. */
        char why[128];
        snprintf(why, sizeof why, "upstream refused EHLO with %d", r->reply->code);
        up__fail(u, UP_ERR_CONNECT, why);
        return;
    }
    u->caps = esmtp_caps(r->reply, &u->size_limit);
    u->own_caps = u->caps;
    u->xclient_attrs = esmtp_xclient_attrs(r->reply);
    u->xforward_attrs = esmtp_xforward_attrs(r->reply);
    if (!u->tls_done && u->cfg->upstream_tls != CFG_UP_TLS_NO) {
        if (u->caps & UP_CAP_STARTTLS) {
            up__set_state(u, UP_S_STARTTLS);
            up__queue_front(u, UP_K_STARTTLS, "STARTTLS", up__hs_starttls_cb);
            up__pump(u);
            return;
        }
        if (u->cfg->upstream_tls == CFG_UP_TLS_ENCRYPT) {
            up__fail(u, UP_ERR_TLS, "upstream does not offer STARTTLS");
            return;
        }
    }
    up__ready(u, r->reply);
}

static void up__hs_greeting_cb(void *ud, const struct up_result *r)
{
    struct up *u = ud;
    if (r->reply->code != 220) {
        char why[128];
        snprintf(why, sizeof why, "upstream greeting %d", r->reply->code);
        up__fail(u, UP_ERR_CONNECT, why);
        return;
    }
    up__set_state(u, UP_S_EHLO);
    up__queue_ehlo(u, NULL, up__hs_ehlo_cb);
    up__pump(u);
}

/* ---- I/O ---------------------------------------------------------------- */

static bool up__reply_ok_for(enum up_cmd_kind k, int code)
{
    if (code >= 400 && code < 600)
        return true; /* a refusal is always in protocol */
    switch (k) {
    case UP_K_GREETING:
    case UP_K_STARTTLS:
        return code == 220;
    case UP_K_DATA:
        return code == 354;
    case UP_K_XCLIENT:
        /* Postfix answers XCLIENT with a fresh 220 greeting. */
        return code == 220 || code == 250;
    case UP_K_EHLO:
        return code == 250;
    default:
        /* MAIL, RCPT, RSET, XFORWARD and the end of data: the only positive
         * answers RFC 5321 defines are 250/251. Anything else positive is
         * out of protocol and never relayed. */
        return code == 250 || code == 251;
    }
}

/* A 421 closes the transmission channel (RFC 5321 §3.8): after relaying it
 * to its command's owner, the up is lost for everything behind it. Replies
 * to the handshake are judged by its own callbacks. */
static bool up__reply_ends_session(enum up_cmd_kind k, int code)
{
    return code == 421 && k != UP_K_GREETING && k != UP_K_EHLO && k != UP_K_STARTTLS;
}

/* After this reply, is no transaction open on the MTA? A positive reply
 * to the end of a message ends its transaction (RFC 5321 §4.1.1.4), as a
 * 250 to RSET does; an accepted greeting, EHLO or XCLIENT starts a session
 * afresh. Anything else (MAIL, RCPT, XFORWARD, NOOP, refusals) may leave
 * one open. */
static bool up__closes_tx(const struct up_cmd *c, int code)
{
    switch (c->kind) {
    case UP_K_DOT:
    case UP_K_BDAT: /* a refused BDAT LAST may leave it open (RFC 3030) */
    case UP_K_GREETING:
    case UP_K_EHLO:
    case UP_K_XCLIENT:
        return code < 400;
    case UP_K_RESET:
        return code == 250;
    case UP_K_USER:
        return code == 250 && c->len == 4 && !strncasecmp(c->line, "RSET", 4);
    default:
        return false;
    }
}

static void up__on_reply(struct up *u)
{
    struct up_cmd *c = u->inflight.head;
    if (!c) {
        up__fail(u, UP_ERR_PROTOCOL, "unsolicited reply from upstream");
        return;
    }
    const struct smtp_reply *r = &u->reply;
    if (log_enabled(LOG_LVL_DEBUG))
        log_debug("sid=%s upstream< %d %s", u->sid, r->code, r->nlines ? r->lines[0] : "");
    /* Out of protocol: fail with the command still in flight, so that its
     * owner hears the failure and never sees the reply. */
    if (!up__reply_ok_for(c->kind, r->code)) {
        char why[96];
        snprintf(why, sizeof why, "unexpected reply code %d from upstream", r->code);
        up__fail(u, UP_ERR_PROTOCOL, why);
        return;
    }
    if ((c->kind == UP_K_DOT || c->kind == UP_K_BDAT) && u->state == UP_S_DATA) {
        /* A final reply before the end of the message could be a 250 for
         * a truncated message. */
        up__fail(u, UP_ERR_PROTOCOL, "upstream replied before the end of the message");
        return;
    }
    fifo_pop(&u->inflight);
    u->tx_closed = up__closes_tx(c, r->code);
    if (cmd_is_callers(c) && c->kind != UP_K_RESET) {
        stats_upstream_reply(r->code); /* what clients' commands got */
        /* The MTA counts errors per connection until mail is delivered
         * (Postfix: smtpd_soft/hard_error_limit): only a connection with
         * none pending may serve another client. */
        if (r->code >= 400)
            u->errors++;
        else if (c->kind == UP_K_DOT || c->kind == UP_K_BDAT)
            u->errors = 0;
    }
    if (c->kind == UP_K_DATA && r->code == 354) {
        /* The final reply comes after the dot: back in flight as DOT. */
        c->kind = UP_K_DOT;
        fifo_push(&u->inflight, c);
        u->at_line_start = true;
        up__set_state(u, UP_S_DATA);
        up__stream(u);
        return;
    }
    up__arm_timer(u);
    bool ends = up__reply_ends_session(c->kind, r->code);
    struct up_result res = {.err = UP_OK, .reply = r, .why = NULL};
    bool alive = up__call(u, c->cb, c->ud, &res); /* c is off every queue */
    free(c);
    if (!alive)
        return;
    if (ends)
        up__fail(u, UP_ERR_LOST, "upstream closed the transmission channel (421)");
    else
        up__pump(u);
}

static void up__on_read(struct conn *c, const char *data, size_t len, void *ud)
{
    (void)c;
    struct up *u = ud;
    if (!up__live(u))
        return;
    if (buf_append(&u->in, data, len) != 0) {
        up__fail(u, UP_ERR_LOCAL, "out of memory");
        return;
    }
    size_t off = 0;
    u->depth++;
    /* Note: a STARTTLS 220 handler resets u->in, which ends this loop and
     * drops any plaintext that followed the 220 (response injection). */
    while (off < u->in.len && up__live(u) && !u->dead) {
        size_t used = 0;
        enum reply_rd rd =
            reply_reader_next(&u->rr, u->in.ptr + off, u->in.len - off, &used, &u->reply);
        off += used;
        if (rd == REPLY_AGAIN)
            break;
        if (rd == REPLY_ERROR) {
            up__fail(u, UP_ERR_PROTOCOL, "malformed reply from upstream");
            break;
        }
        reply_reader_init(&u->rr);
        up__on_reply(u);
    }
    if (up__live(u) && !u->dead)
        buf_consume(&u->in, off);
    up__leave(u);
}

static void up__try_next_server(struct up *u);

static void up__on_connected(struct up *u)
{
    conn_set_nodelay(u->conn);
    if (conn_read_start(u->conn) != 0) {
        up__fail(u, UP_ERR_CONNECT, "cannot read from upstream");
        return;
    }
    fifo_push(&u->inflight, cmd_new(UP_K_GREETING, NULL, up__hs_greeting_cb, u));
    up__set_state(u, UP_S_GREETING);
}

static void up__on_event(struct conn *c, enum conn_event ev, int err, void *ud)
{
    (void)c;
    struct up *u = ud;
    switch (ev) {
    case CONN_EV_CONNECTED:
        up__on_connected(u);
        break;
    case CONN_EV_CONNECT_FAIL:
        log_warn("sid=%s upstream=%s connect failed: %s", u->sid, u->server, uv_strerror(err));
        conn_close(u->conn, false);
        u->conn = NULL;
        u->server_idx++;
        up__try_next_server(u);
        break;
    case CONN_EV_TLS_DONE:
        up__hs_tls_event(u, true);
        break;
    case CONN_EV_TLS_FAIL:
        up__hs_tls_event(u, false);
        break;
    case CONN_EV_EOF:
        up__fail(u, UP_ERR_LOST, "upstream closed the connection");
        break;
    case CONN_EV_ERROR: {
        char why[128];
        snprintf(why, sizeof why, "upstream connection error: %s", uv_strerror(err));
        up__fail(u, UP_ERR_LOST, why);
        break;
    }
    case CONN_EV_DRAINED:
        up__stream(u);
        break;
    }
}

static void up__try_next_server(struct up *u)
{
    for (; u->server_idx < u->cfg->nupstream; u->server_idx++) {
        const struct cfg_addr *a = &u->cfg->upstream[u->server_idx];
        snprintf(u->server, sizeof u->server, "%s", a->text);
        u->conn = conn_new(u->loop, up__on_read, up__on_event, u);
        if (!u->conn) {
            up__fail(u, UP_ERR_LOCAL, "cannot create the upstream connection");
            return;
        }
        up__set_state(u, UP_S_CONNECTING);
        int rc = conn_connect(u->conn, (const struct sockaddr *)&a->sa, NULL);
        if (rc == 0)
            return;
        log_warn("sid=%s upstream=%s connect failed: %s", u->sid, u->server, uv_strerror(rc));
        conn_close(u->conn, false);
        u->conn = NULL;
    }
    stats_set_upstream_ok(false);
    up__fail(u, UP_ERR_CONNECT, "no upstream server reachable");
}

/* What may be sent now, by state: during the handshake only its own
 * command, one at a time; when ready, the caller's commands, pipelined when
 * the upstream offers PIPELINING (DATA only when nothing else is in
 * flight, RFC 2920 §3.1), else one at a time. XCLIENT goes alone and moves
 * to state XCLIENT, so that what follows waits for the new session. */
static bool up__may_send(const struct up *u, const struct up_cmd *c)
{
    const struct up_cmd *last = u->inflight.tail;
    if (c->hold) {
        const struct up_cmd *n = c->next;
        while (n && n->hold)
            n = n->next;
        if (!n)
            return false;
    }
    switch (u->state) {
    case UP_S_EHLO:
    case UP_S_XCLIENT:
        return !last && c->kind == UP_K_EHLO;
    case UP_S_STARTTLS:
        return !last && c->kind == UP_K_STARTTLS;
    case UP_S_READY:
        if (c->kind == UP_K_XCLIENT || !last)
            return !last;
        return (u->caps & UP_CAP_PIPELINING) && c->kind != UP_K_DATA && last->kind != UP_K_DATA &&
               c->kind != UP_K_BDAT && last->kind != UP_K_BDAT;
    default:
        return false;
    }
}

static void up__pump(struct up *u)
{
    bool sent = false;
    struct up_cmd *c;
    while (u->conn && !u->dead && (c = u->waiting.head) && up__may_send(u, c)) {
        fifo_pop(&u->waiting);
        if (up__send_line(u, c->line, c->len) != 0) {
            free(c);
            up__fail(u, UP_ERR_LOCAL, "cannot write to upstream");
            return;
        }
        fifo_push(&u->inflight, c);
        sent = true;
        if (c->kind == UP_K_XCLIENT) {
            /* From here the MTA may take this connection as the client's
             * for good: a second XCLIENT is judged by the client's address
             * (Postfix: 550 insufficient authorization), and the
             * attributes cannot be taken back, unless the EHLO that follows
             * offers XCLIENT again (up__xclient_ehlo_cb). */
            u->xclient_ever = true;
            u->xclient_again = false;
            up__set_state(u, UP_S_XCLIENT);
        }
        if (c->kind == UP_K_BDAT) {
            /* The message follows its BDAT line at once; the reply comes
             * after the last byte. up__stream flushes and arms the timer. */
            up__set_state(u, UP_S_DATA);
            up__stream(u);
            return;
        }
    }
    if (sent) {
        conn_flush(u->conn);
        up__arm_timer(u);
    }
}

/* ---- message streaming ---------------------------------------------------- */

static int up__sink(void *ctx, const char *p, size_t n)
{
    struct up *u = ctx;
    u->data_bytes += n;
    return conn_write(u->conn, p, n);
}

/* Write the message in state DATA, UP_CHUNK at a time; the next chunk goes
 * on CONN_EV_DRAINED (backpressure). After the dot: READY again, with the
 * final reply pending as DOT. */
static void up__stream(struct up *u)
{
    if (u->state != UP_S_DATA || !u->conn)
        return;
    size_t budget = UP_CHUNK;
    while (u->seg_idx < u->nsegs && budget > 0) {
        const struct iovec *v = &u->segs[u->seg_idx];
        size_t left = v->iov_len - u->seg_off;
        size_t n = left < budget ? left : budget;
        const char *p = (const char *)v->iov_base + u->seg_off;
        /* BDAT carries the canonical bytes as they are; DATA stuffs dots. */
        if (u->chunked ? up__sink(u, p, n) != 0
                       : data_stuff(p, n, &u->at_line_start, up__sink, u) != 0) {
            up__fail(u, UP_ERR_LOCAL, "cannot write message to upstream");
            return;
        }
        u->seg_off += n;
        budget -= n;
        if (u->seg_off == v->iov_len) {
            u->seg_idx++;
            u->seg_off = 0;
        }
    }
    if (u->seg_idx == u->nsegs) {
        if (!u->chunked && data_stuff_end(u->at_line_start, up__sink, u) != 0) {
            up__fail(u, UP_ERR_LOCAL, "cannot write message to upstream");
            return;
        }
        up__set_state(u, UP_S_READY);
    }
    conn_flush(u->conn);
    up__arm_timer(u);
}

/* ---- public API ------------------------------------------------------------- */

struct up *up_new(uv_loop_t *loop, struct cfg *cfg, const char *log_sid)
{
    struct up *u = xcalloc(1, sizeof *u);
    u->timer = xmalloc(sizeof *u->timer);
    u->loop = loop;
    u->cfg = cfg_ref(cfg);
    snprintf(u->sid, sizeof u->sid, "%s", log_sid);
    u->born = uv_now(loop);
    uv_timer_init(loop, u->timer);
    u->timer->data = u;
    reply_reader_init(&u->rr);
    buf_init(&u->in);
    return u;
}

void up_open(struct up *u, up_cb cb, void *ud)
{
    switch (u->state) {
    case UP_S_NEW:
        u->open_cb = cb;
        u->open_ud = ud;
        u->server_idx = 0;
        up__try_next_server(u);
        break;
    case UP_S_READY:
    case UP_S_XCLIENT:
    case UP_S_DATA:
        up__post_cb(u, cb, ud, UP_OK, NULL, NULL);
        break;
    case UP_S_FAILED:
    case UP_S_CLOSED:
        up__post_cb(u, cb, ud, u->fail_err ? u->fail_err : UP_ERR_LOST,
                    u->fail_why[0] ? u->fail_why : "upstream not connected", NULL);
        break;
    default:
        /* Opening already: one pending open at a time. */
        if (u->open_cb)
            up__bug(u, "up_open() while an open is pending", u->state);
        u->open_cb = cb;
        u->open_ud = ud;
        break;
    }
}

bool up_ready(const struct up *u)
{
    return u->state == UP_S_READY || u->state == UP_S_XCLIENT || u->state == UP_S_DATA;
}

bool up_failed(const struct up *u)
{
    return u->state == UP_S_FAILED;
}

unsigned up_own_caps(const struct up *u)
{
    return u->own_caps;
}

unsigned up_caps(const struct up *u)
{
    return u->caps;
}

const char *up_server(const struct up *u)
{
    return u->server;
}

const char *up_tls_version(const struct up *u)
{
    return u->conn && u->tls_done ? conn_tls_version(u->conn) : NULL;
}

unsigned long long up_size_limit(const struct up *u)
{
    return u->size_limit;
}

unsigned long long up_data_bytes(const struct up *u)
{
    return u->data_bytes;
}

bool up_data_chunked(const struct up *u)
{
    return u->chunked;
}

/* The identify's answer (also the callback of the last XFORWARD line). */
static void up__ident_done(void *ud, const struct up_result *r)
{
    struct up *u = ud;
    up_cb cb = u->ident_cb;
    u->ident_cb = NULL;
    up__call(u, cb, u->ident_ud, r);
}

/* What a new XCLIENT must be able to tell so that nothing of the last
 * client stays: every attribute sluice sends, and REVERSE_NAME (Postfix
 * keeps the last one on NAME=[UNAVAILABLE]). LOGIN as well once an offer
 * listed it (a login may have been told, and the MTA may keep it and its
 * relay rights); an MTA that never listed it was never told one. */
#define UP__XCLIENT_RETELL                                                                         \
    (ESMTP_XA_NAME | ESMTP_XA_ADDR | ESMTP_XA_PORT | ESMTP_XA_PROTO | ESMTP_XA_HELO |              \
     ESMTP_XA_REVERSE_NAME)

static void up__xclient_ehlo_cb(void *ud, const struct up_result *r)
{
    struct up *u = ud;
    if (r->reply->code != 250) {
        up__fail(u, UP_ERR_PROTOCOL, "upstream refused EHLO after XCLIENT");
        return;
    }
    unsigned need = UP__XCLIENT_RETELL | (u->xclient_attrs & ESMTP_XA_LOGIN);
    u->caps = esmtp_caps(r->reply, &u->size_limit);
    u->xclient_attrs = esmtp_xclient_attrs(r->reply);
    u->xforward_attrs = esmtp_xforward_attrs(r->reply);
    /* Postfix judges a further XCLIENT by the address just told, and so
     * stops offering it unless the client itself may send XCLIENT: then
     * the connection is the client's for good. An MTA that offers it
     * again lets the next client be told on this connection. */
    u->xclient_again = (u->caps & UP_CAP_XCLIENT) && (u->xclient_attrs & need) == need;
    up__set_state(u, UP_S_READY);
    up__ident_done(u, r);
}

static void up__xclient_cb(void *ud, const struct up_result *r)
{
    struct up *u = ud;
    if (r->reply->code == 220) {
        /* XCLIENT restarts the session: EHLO again, before anything else,
         * with the client's own HELO name, so that the upstream's HELO
         * checks and Received header see the real client. The state stays
         * XCLIENT until that EHLO is answered. */
        u->xclient_done = true;
        up__queue_ehlo(u, u->client_helo[0] ? u->client_helo : NULL, up__xclient_ehlo_cb);
        return; /* up__on_reply pumps */
    }
    if (r->reply->code >= 500) {
        /* A permanent refusal of XCLIENT is about sluice, not the client
         * (Postfix: 550 when sluice is not in authorized_xclient_hosts,
         * 501 on syntax): relayed, it would bounce real mail. Tempfail
         * and say why in the log. */
        char why[200];
        snprintf(why, sizeof why, "upstream refused XCLIENT: %d %s%s%.120s", r->reply->code,
                 r->reply->enh, r->reply->enh[0] ? " " : "",
                 r->reply->nlines ? r->reply->lines[0] : "");
        up__fail(u, UP_ERR_PROTOCOL, why);
        return;
    }
    /* 250: done without a new greeting. Otherwise (4xx) the upstream's
     * policy refused the real client for now: the caller relays it. */
    if (r->reply->code == 250)
        u->xclient_done = true;
    u->xclient_again = false; /* no new EHLO told us */
    up__set_state(u, UP_S_READY);
    up__ident_done(u, r);
}

/* The reply to an XFORWARD line sent in one group with the MAIL behind
 * it. A refusal (sluice not in smtpd_authorized_xforward_hosts, say) is an
 * error the MTA counts against the connection, and the transaction goes on
 * under sluice's own address: said once, and not tried again here. */
static void up__xforward_cb(void *ud, const struct up_result *r)
{
    struct up *u = ud;
    if (r->err != UP_OK || r->reply->code < 400 || r->reply->code == 421)
        return;
    /* An error the MTA counts against the connection (Postfix's error
     * limits): no reuse before mail was delivered on it. */
    u->errors++;
    /* Only a permanent refusal (not authorized, unknown attribute) stops
     * XFORWARD on this connection; a 4xx is tried again next time. */
    if (r->reply->code < 500 || u->xforward_refused)
        return;
    u->xforward_refused = true;
    log_warn("sid=%s upstream=%s refused XFORWARD: %d %s%s%s; the MTA sees sluice as the "
             "client on this connection",
             u->sid, u->server, r->reply->code, r->reply->enh, r->reply->enh[0] ? " " : "",
             r->reply->nlines ? r->reply->lines[0] : "");
}

/* The last XFORWARD line's reply without PIPELINING (it answers the
 * identify): a refusal is about sluice's rights at the MTA, not about the
 * client, so it is logged and the MAIL goes on, as when pipelined. */
static void up__xforward_done(void *ud, const struct up_result *r)
{
    static const struct smtp_reply ok_reply = {.code = 250, .enh = "2.0.0"};
    struct up *u = ud;
    up__xforward_cb(u, r);
    if (r->err == UP_OK && r->reply->code >= 400 && r->reply->code != 421) {
        struct up_result ok = {.err = UP_OK, .reply = &ok_reply, .why = NULL};
        up__ident_done(u, &ok);
        return;
    }
    up__ident_done(u, r);
}

static void up__queue_ident(struct up *u, const struct up_client_info *ci, bool xclient,
                            bool pipelined)
{
    struct esmtp_client w = {.addr = ci->addr,
                             .port = ci->port,
                             .name = ci->name,
                             .helo = ci->helo,
                             .esmtp = ci->esmtp,
                             .login = ci->login,
                             .reset = u->xclient_ever,
                             .attrs = u->xclient_attrs};
    /* (reset: a retry after the MTA refused an XCLIENT with 4xx; it may
     * have taken some attributes before refusing.) */
    buf_t a = BUF_INIT, b = BUF_INIT;
    if (xclient) {
        /* Our EHLO after XCLIENT carries what the client sent (or its
         * address literal), so the upstream's HELO checks see the client. */
        esmtp_ehlo_name(u->client_helo, sizeof u->client_helo, ci->helo, ci->addr);
        snprintf(u->told_helo, sizeof u->told_helo, "%s", ci->helo);
        snprintf(u->told_login, sizeof u->told_login, "%s", ci->login);
        esmtp_xclient_line(&a, &w);
        fifo_push(&u->waiting, cmd_new(UP_K_XCLIENT, a.ptr, up__xclient_cb, u));
    } else {
        /* One line, or two for long names; the last one's reply answers
         * the identify, unless the MAIL goes in the same group. */
        w.attrs = u->xforward_attrs;
        esmtp_xforward_lines(&a, &b, &w);
        /* up__ident_needed made sure one of them has something to say. */
        buf_t *lines[2] = {&a, &b};
        for (size_t i = 0; i < 2; i++) {
            if (!lines[i]->len)
                continue;
            bool last = i == 1 || !b.len;
            struct up_cmd *c = cmd_new(UP_K_XFORWARD, lines[i]->ptr,
                                       pipelined || !last ? up__xforward_cb : up__xforward_done, u);
            c->hold = pipelined;
            fifo_push(&u->waiting, c);
        }
    }
    buf_free(&a);
    buf_free(&b);
}

enum up__ident { UP__IDENT_NONE = 0, UP__IDENT_XCLIENT, UP__IDENT_XFORWARD, UP__IDENT_STALE };

/* XCLIENT is there for the MTA to judge the real client. One that cannot
 * be told the client's address (smtp-sink lists only NAME HELO) does not
 * do that, and binds the connection to one client besides: XFORWARD (per
 * transaction, the connection stays reusable) is used instead where the
 * MTA offers it; without it, XCLIENT still carries what it can. */
static bool up__xclient_usable(const struct up *u)
{
    if (!(u->caps & UP_CAP_XCLIENT) || !u->cfg->xclient)
        return false;
    if (u->xclient_attrs == 0 || (u->xclient_attrs & ESMTP_XA_ADDR))
        return true;
    if (!(u->xclient_attrs & (ESMTP_XA_NAME | ESMTP_XA_HELO)))
        return false; /* nothing of ours to tell */
    return !((u->caps & UP_CAP_XFORWARD) && u->cfg->xforward);
}

bool up_identity_stale(const struct up *u, const struct up_client_info *ci)
{
    return u->xclient_done &&
           (strcmp(u->told_helo, ci->helo) != 0 || strcmp(u->told_login, ci->login) != 0);
}

static enum up__ident up__ident_needed(const struct up *u, const struct up_client_info *ci)
{
    /* Told by XCLIENT, the MTA keeps those attributes for the connection:
     * a new HELO or login (a new EHLO, STARTTLS, AUTH) needs a new
     * connection, since a second XCLIENT is refused unless the client's
     * own address may send XCLIENT (after the first one the MTA's EHLO
     * does not even offer it). */
    if (up_identity_stale(u, ci))
        return UP__IDENT_STALE;
    if (up__xclient_usable(u) && !u->xclient_done)
        return UP__IDENT_XCLIENT;
    if ((u->caps & UP_CAP_XFORWARD) && u->cfg->xforward && !u->xclient_done &&
        !u->xforward_refused &&
        (!u->xforward_attrs || (u->xforward_attrs & (ESMTP_XA_NAME | ESMTP_XA_ADDR | ESMTP_XA_PORT |
                                                     ESMTP_XA_PROTO | ESMTP_XA_HELO))))
        return UP__IDENT_XFORWARD;
    return UP__IDENT_NONE;
}

bool up_identify_needed(const struct up *u, const struct up_client_info *ci)
{
    return up__live(u) && up__ident_needed(u, ci) != UP__IDENT_NONE;
}

bool up_identify_rides_next(const struct up *u, const struct up_client_info *ci)
{
    return up__live(u) && !u->ident_cb && (u->caps & UP_CAP_PIPELINING) &&
           up__ident_needed(u, ci) == UP__IDENT_XFORWARD;
}

bool up_identify_with_next(struct up *u, const struct up_client_info *ci)
{
    if (!up_identify_rides_next(u, ci))
        return false;
    up__queue_ident(u, ci, false, true);
    return true;
}

void up_identify(struct up *u, const struct up_client_info *ci, up_cb cb, void *ud)
{
    static const struct smtp_reply ok_reply = {.code = 250, .enh = "2.0.0"};
    if (!up__live(u)) {
        up__post_cb(u, cb, ud, UP_ERR_LOST, "upstream not connected", NULL);
        return;
    }
    if (u->ident_cb)
        up__bug(u, "up_identify() while one is pending", u->state);
    enum up__ident how = up__ident_needed(u, ci);
    if (how == UP__IDENT_STALE) {
        /* The caller should have opened a new connection; never let a
         * command go out under the attributes of before. */
        up__post_cb(u, cb, ud, UP_ERR_LOCAL, "client identity changed after XCLIENT", NULL);
        return;
    }
    if (how == UP__IDENT_XCLIENT) {
        up__queue_ident(u, ci, true, false);
    } else if (up_identify_with_next(u, ci)) {
        /* XFORWARD is per transaction: with PIPELINING its lines go in one
         * group with the MAIL the caller sends next (as Postfix's own SMTP
         * client sends them), instead of a round trip of their own before
         * every MAIL. The MAIL's reply decides; a refused XFORWARD is
         * logged (up__xforward_cb). */
        up__post_cb(u, cb, ud, UP_OK, NULL, &ok_reply);
        return;
    } else if (how == UP__IDENT_XFORWARD) {
        up__queue_ident(u, ci, false, false);
    } else {
        up__post_cb(u, cb, ud, UP_OK, NULL, &ok_reply);
        return;
    }
    u->ident_cb = cb;
    u->ident_ud = ud;
    up__pump(u);
}

void up_retell(struct up *u, const struct up_client_info *ci)
{
    if (!up__live(u) || up__ident_needed(u, ci) != UP__IDENT_XFORWARD)
        return;
    /* Held until the caller's next command, answered to up__xforward_cb. */
    up__queue_ident(u, ci, false, true);
}

/* Queue a caller's command (takes c); on a dead upstream its callback hears
 * that from the loop. */
static void up__queue(struct up *u, struct up_cmd *c)
{
    if (!up__live(u)) {
        up__post(u, c, UP_ERR_LOST, "upstream not connected", NULL);
        return;
    }
    fifo_push(&u->waiting, c);
    up__pump(u);
}

void up_command(struct up *u, const char *line, up_cb cb, void *ud)
{
    up__queue(u, cmd_new(UP_K_USER, line, cb, ud));
}

void up_reset(struct up *u, up_cb cb, void *ud)
{
    up__queue(u, cmd_new(UP_K_RESET, "RSET", cb, ud));
}

void up_data(struct up *u, const struct iovec *segs, size_t nsegs, up_cb cb, void *ud)
{
    u->segs = segs;
    u->nsegs = nsegs;
    u->seg_idx = 0;
    u->seg_off = 0;
    u->data_bytes = 0;
    u->chunked = (u->caps & UP_CAP_CHUNKING) != 0;
    if (!u->chunked) {
        up__queue(u, cmd_new(UP_K_DATA, "DATA", cb, ud));
        return;
    }
    /* One chunk: the message is complete and its size known, and nothing
     * else may be interleaved anyway. */
    unsigned long long total = 0;
    for (size_t i = 0; i < nsegs; i++)
        total += segs[i].iov_len;
    char line[64];
    snprintf(line, sizeof line, "BDAT %llu LAST", total);
    up__queue(u, cmd_new(UP_K_BDAT, line, cb, ud));
}

bool up_detach(struct up *u)
{
    /* Never after an XCLIENT the MTA did not offer again: it holds this
     * connection as that client's (and refuses XCLIENT for the next one);
     * nor with errors pending. */
    if (u->dead || u->state != UP_S_READY || !u->conn || u->open_cb || u->ident_cb ||
        (u->xclient_ever && !u->xclient_again) || u->errors)
        return false;
    /* A message still being sent or answered reads the owner's segments
     * and decides the owner's transaction: never hand that over. */
    struct up_fifo *live[] = {&u->waiting, &u->inflight};
    for (size_t i = 0; i < 2; i++)
        for (struct up_cmd *c = live[i]->head; c; c = c->next)
            if (c->kind == UP_K_DATA || c->kind == UP_K_DOT || c->kind == UP_K_BDAT ||
                c->kind == UP_K_XCLIENT || c->kind == UP_K_EHLO)
                return false;
    /* XFORWARD lines still held for a MAIL that never came are about the
     * owner's client: dropped. */
    struct up_fifo keep = {0};
    struct up_cmd *h;
    while ((h = fifo_pop(&u->waiting)))
        if (h->hold)
            free(h);
        else
            fifo_push(&keep, h);
    u->waiting = keep;
    /* The rest (RSETs, a MAIL or RCPT in flight) still goes out and is
     * answered, to nobody: the owner is going away. (The up's own
     * callbacks, an XFORWARD's, stay: a refusal still counts.) */
    for (size_t i = 0; i < 2; i++)
        for (struct up_cmd *c = live[i]->head; c; c = c->next)
            if (cmd_is_callers(c))
                c->cb = NULL;
    struct up_cmd *c;
    while ((c = fifo_pop(&u->done)))
        free(c);
    defer_cancel(&u->defer);
    u->segs = NULL;
    u->nsegs = 0;
    return true;
}

bool up_settled(const struct up *u)
{
    return up__live(u) && u->tx_closed && !u->waiting.head && !u->inflight.head;
}

void up_park(struct up *u, bool parked)
{
    u->parked = parked;
}

void up_rebind(struct up *u, const char *log_sid)
{
    snprintf(u->sid, sizeof u->sid, "%s", log_sid);
    u->parked = false;
    if (u->xclient_ever) {
        /* Kept after XCLIENT (the MTA offers it again): the next client is
         * told before its first command, every attribute the last one had
         * set included (HELO and LOGIN as [UNAVAILABLE] where this one has
         * none), so nothing of the last client's identity carries over. */
        u->xclient_done = false;
        u->told_helo[0] = '\0';
        u->told_login[0] = '\0';
    }
}

uint64_t up_age_ms(const struct up *u)
{
    uint64_t now = uv_now(u->loop);
    return now > u->born ? now - u->born : 0;
}

const struct cfg *up_cfg(const struct up *u)
{
    return u->cfg;
}

void up_free(struct up *u)
{
    if (!u || u->dead)
        return;
    u->dead = true;
    if (u->state == UP_S_READY && u->conn && !u->inflight.head) {
        /* Polite QUIT; the conn flushes it on graceful close. */
        up__send_line(u, "QUIT", 4);
        conn_flush(u->conn);
    }
    up__set_state(u, UP_S_CLOSED);
    defer_cancel(&u->defer); /* nothing queued is delivered any more */
    if (u->depth == 0)
        up__destroy(u);
}
