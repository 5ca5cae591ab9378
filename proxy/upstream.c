/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * upstream: SMTP client towards the real MTA; see upstream.h.
 *
 * State machine: CONNECTING -> GREETING -> EHLO -> [STARTTLS -> HANDSHAKE ->
 * EHLO] -> READY. Commands live in two FIFOs: `waiting` (not sent yet) and
 * `inflight` (sent, reply pending). Replies pop `inflight` in order. The
 * handshake itself uses the same FIFOs with internal callbacks, so there is
 * one reply path.
 *
 * Ownership: struct up owns its conn, its timer and every queued command.
 * Segments given to up_data() belong to the caller. Freeing is deferred
 * while a callback is running (u->depth), so a session may call up_free()
 * from inside a callback.
 */
#include "upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "conn.h"
#include "log.h"
#include "smtp_data.h"
#include "stats.h"

enum up_state {
    UP_S_NEW = 0,
    UP_S_CONNECTING,
    UP_S_GREETING,
    UP_S_HANDSHAKE, /* EHLO / STARTTLS / TLS / EHLO via the command queue */
    UP_S_READY,
    UP_S_FAILED,
    UP_S_CLOSED,
};

enum up_cmd_kind {
    UP_K_USER = 0, /* MAIL, RCPT, RSET, ... from the session */
    UP_K_GREETING, /* pseudo command: the 220 banner */
    UP_K_EHLO,
    UP_K_STARTTLS,
    UP_K_XCLIENT,
    UP_K_XCLIENT_GREETING, /* pseudo command: the 220 after XCLIENT */
    UP_K_XFORWARD,
    UP_K_DATA,  /* DATA; on 354 the message follows */
    UP_K_DOT,   /* pseudo command: the final reply after the dot */
    UP_K_QUIT,
};

struct up_cmd {
    struct up_cmd *next;
    enum up_cmd_kind kind;
    up_cb cb;
    void *ud;
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
    struct conn *conn;
    uv_timer_t *timer; /* heap: closed asynchronously */
    size_t server_idx;
    char server[300];
    unsigned caps;
    unsigned long long size_limit;
    bool tls_done;
    bool xclient_done;
    char client_helo[256]; /* the real client's HELO, for the EHLO after XCLIENT */
    int depth;      /* >0 while inside a callback */
    bool dead;      /* up_free() called */

    up_cb open_cb; /* pending open result */
    void *open_ud;
    up_cb ident_cb; /* pending identify result */
    void *ident_ud;

    struct up_fifo waiting, inflight;
    struct reply_reader rr;
    struct smtp_reply reply;
    buf_t in;  /* unparsed input */

    /* message being streamed after 354 */
    const struct iovec *segs;
    size_t nsegs, seg_idx, seg_off;
    bool at_line_start;
    bool streaming;
    unsigned long long data_bytes;
};

#define UP_CHUNK (256 * 1024)

static void up__fail(struct up *u, enum up_err err, const char *why);
static void up__pump(struct up *u);
static void up__stream(struct up *u);

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
    struct up_cmd *c = malloc(sizeof *c + len + 1);
    if (!c)
        return NULL;
    c->kind = kind;
    c->cb = cb;
    c->ud = ud;
    c->len = len;
    if (len)
        memcpy(c->line, line, len);
    c->line[len] = 0;
    c->next = NULL;
    return c;
}

static void up__timer_close_cb(uv_handle_t *h)
{
    free(h);
}

static void up__destroy(struct up *u)
{
    struct up_cmd *c;
    while ((c = fifo_pop(&u->waiting)))
        free(c);
    while ((c = fifo_pop(&u->inflight)))
        free(c);
    if (u->conn)
        conn_close(u->conn, true);
    u->conn = NULL;
    uv_timer_stop(u->timer);
    uv_close((uv_handle_t *)u->timer, up__timer_close_cb);
    buf_free(&u->in);
    cfg_unref(u->cfg);
    free(u);
}

/* Call a user callback; returns false if the up was freed meanwhile. */
static bool up__call(struct up *u, up_cb cb, void *ud, const struct up_result *r)
{
    if (!cb || u->dead)
        return !u->dead;
    u->depth++;
    cb(ud, r);
    u->depth--;
    if (u->dead && u->depth == 0) {
        up__destroy(u);
        return false;
    }
    return !u->dead;
}

static void up__timer_cb(uv_timer_t *t)
{
    struct up *u = t->data;
    stats_timeout(STATS_TO_UPSTREAM);
    up__fail(u, UP_ERR_TIMEOUT, "upstream timeout");
}

static void up__arm_timer(struct up *u)
{
    if (u->state == UP_S_FAILED || u->state == UP_S_CLOSED)
        return;
    unsigned ms = u->cfg->upstream_command_timeout_ms;
    if (u->state == UP_S_CONNECTING)
        ms = u->cfg->upstream_connect_timeout_ms;
    else if (u->inflight.head && u->inflight.head->kind == UP_K_DOT)
        ms = u->cfg->upstream_data_timeout_ms;
    if (u->inflight.head || u->state == UP_S_CONNECTING || u->state == UP_S_GREETING ||
        u->streaming)
        uv_timer_start(u->timer, up__timer_cb, ms, 0);
    else
        uv_timer_stop(u->timer);
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

static void up__fail(struct up *u, enum up_err err, const char *why)
{
    if (u->state == UP_S_FAILED || u->state == UP_S_CLOSED)
        return;
    log_warn("sid=%s upstream=%s error=\"%s\"", u->sid, u->server[0] ? u->server : "-", why);
    switch (err) {
    case UP_ERR_CONNECT: stats_upstream_error(STATS_UPERR_CONNECT); break;
    case UP_ERR_TIMEOUT: stats_upstream_error(STATS_UPERR_TIMEOUT); break;
    case UP_ERR_LOST: stats_upstream_error(STATS_UPERR_LOST); break;
    case UP_ERR_TLS: stats_upstream_error(STATS_UPERR_TLS); break;
    default: stats_upstream_error(STATS_UPERR_PROTOCOL); break;
    }
    u->state = UP_S_FAILED;
    u->streaming = false;
    uv_timer_stop(u->timer);
    if (u->conn) {
        conn_close(u->conn, false);
        u->conn = NULL;
    }
    struct up_result r = {.err = err, .reply = NULL, .why = why};
    /* Keep the up alive across the callbacks. */
    u->depth++;
    if (u->open_cb) {
        up_cb cb = u->open_cb;
        u->open_cb = NULL;
        cb(u->open_ud, &r);
    }
    if (u->ident_cb && !u->dead) {
        up_cb cb = u->ident_cb;
        u->ident_cb = NULL;
        cb(u->ident_ud, &r);
    }
    struct up_cmd *c;
    while (!u->dead && (c = fifo_pop(&u->inflight))) {
        if (c->cb && c->kind != UP_K_QUIT)
            c->cb(c->ud, &r);
        free(c);
    }
    while (!u->dead && (c = fifo_pop(&u->waiting))) {
        if (c->cb)
            c->cb(c->ud, &r);
        free(c);
    }
    u->depth--;
    if (u->dead && u->depth == 0)
        up__destroy(u);
}

/* ---- handshake ---------------------------------------------------------- */

static void up__parse_ehlo(struct up *u, const struct smtp_reply *r)
{
    const char *p;
    u->caps = 0;
    u->size_limit = 0;
    if (reply_has_keyword(r, "PIPELINING", NULL)) u->caps |= UP_CAP_PIPELINING;
    if (reply_has_keyword(r, "8BITMIME", NULL)) u->caps |= UP_CAP_8BITMIME;
    if (reply_has_keyword(r, "SIZE", &p)) {
        u->caps |= UP_CAP_SIZE;
        if (p)
            u->size_limit = strtoull(p, NULL, 10);
    }
    if (reply_has_keyword(r, "DSN", NULL)) u->caps |= UP_CAP_DSN;
    if (reply_has_keyword(r, "SMTPUTF8", NULL)) u->caps |= UP_CAP_SMTPUTF8;
    if (reply_has_keyword(r, "ENHANCEDSTATUSCODES", NULL)) u->caps |= UP_CAP_ENHANCED;
    if (reply_has_keyword(r, "STARTTLS", NULL)) u->caps |= UP_CAP_STARTTLS;
    if (reply_has_keyword(r, "XCLIENT", NULL)) u->caps |= UP_CAP_XCLIENT;
    if (reply_has_keyword(r, "XFORWARD", NULL)) u->caps |= UP_CAP_XFORWARD;
    if (reply_has_keyword(r, "CHUNKING", NULL)) u->caps |= UP_CAP_CHUNKING;
}

static void up__hs_ehlo_cb(void *ud, const struct up_result *r);

static void up__queue_internal(struct up *u, enum up_cmd_kind kind, const char *line, up_cb cb,
                               bool front)
{
    struct up_cmd *c = cmd_new(kind, line, cb, u);
    if (!c) {
        up__fail(u, UP_ERR_LOCAL, "out of memory");
        return;
    }
    if (front) {
        c->next = u->waiting.head;
        u->waiting.head = c;
        if (!u->waiting.tail)
            u->waiting.tail = c;
        u->waiting.n++;
    } else {
        fifo_push(&u->waiting, c);
    }
}

static void up__send_ehlo(struct up *u)
{
    char line[300];
    const char *helo = u->cfg->upstream_helo ? u->cfg->upstream_helo : u->cfg->hostname;
    snprintf(line, sizeof line, "EHLO %s", helo);
    up__queue_internal(u, UP_K_EHLO, line, up__hs_ehlo_cb, true);
}

static void up__ready(struct up *u, const struct smtp_reply *r)
{
    u->state = UP_S_READY;
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
    up__send_ehlo(u);
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
    SSL_CTX *n = tls_client_ctx_new(u->cfg->upstream_tls_ca_file, u->cfg->upstream_tls_verify,
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
    if (r->err)
        return; /* already failing */
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
    const char *name = u->cfg->upstream_tls_verify_name ? u->cfg->upstream_tls_verify_name : a->host;
    u->state = UP_S_HANDSHAKE;
    if (conn_starttls_client(u->conn, ctx, name, u->cfg->upstream_tls_verify) != 0)
        up__fail(u, UP_ERR_TLS, "cannot start TLS");
}

static void up__hs_ehlo_cb(void *ud, const struct up_result *r)
{
    struct up *u = ud;
    if (r->err)
        return;
    if (r->reply->code != 250) {
        /* Some servers only speak HELO; we need ESMTP for a transparent proxy. */
        char why[128];
        snprintf(why, sizeof why, "upstream refused EHLO with %d", r->reply->code);
        up__fail(u, UP_ERR_CONNECT, why);
        return;
    }
    up__parse_ehlo(u, r->reply);
    if (!u->tls_done && u->cfg->upstream_tls != CFG_UP_TLS_NO) {
        if (u->caps & UP_CAP_STARTTLS) {
            up__queue_internal(u, UP_K_STARTTLS, "STARTTLS", up__hs_starttls_cb, true);
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
    if (r->err)
        return;
    if (r->reply->code != 220) {
        char why[128];
        snprintf(why, sizeof why, "upstream greeting %d", r->reply->code);
        up__fail(u, UP_ERR_CONNECT, why);
        return;
    }
    u->state = UP_S_HANDSHAKE;
    up__send_ehlo(u);
    up__pump(u);
}

/* ---- I/O ---------------------------------------------------------------- */

static bool up__reply_ok_for(enum up_cmd_kind k, int code)
{
    switch (k) {
    case UP_K_GREETING:
    case UP_K_XCLIENT_GREETING:
        return code == 220 || code == 421 || code == 554 || (code >= 400 && code < 600);
    case UP_K_DATA:
        return code == 354 || (code >= 400 && code < 600);
    case UP_K_STARTTLS:
        return code == 220 || (code >= 400 && code < 600);
    case UP_K_XCLIENT:
        /* Postfix answers XCLIENT with a fresh 220 greeting. */
        return code == 220 || code == 250 || (code >= 400 && code < 600);
    case UP_K_EHLO:
        return code == 250 || (code >= 400 && code < 600);
    default:
        /* MAIL, RCPT, RSET, XFORWARD, QUIT and the end of data: the only
         * positive answers RFC 5321 defines are 250/251 (221 for QUIT).
         * Anything else positive is out of protocol and never relayed. */
        return code == 250 || code == 251 || (code == 221 && k == UP_K_QUIT) ||
               (code >= 400 && code < 600);
    }
}

static void up__on_reply(struct up *u)
{
    struct up_cmd *c = fifo_pop(&u->inflight);
    if (!c) {
        up__fail(u, UP_ERR_PROTOCOL, "unsolicited reply from upstream");
        return;
    }
    const struct smtp_reply *r = &u->reply;
    if (log_enabled(LOG_LVL_DEBUG))
        log_debug("sid=%s upstream< %d %s", u->sid, r->code, r->nlines ? r->lines[0] : "");
    if (!up__reply_ok_for(c->kind, r->code)) {
        /* Back to the head of the queue so that its owner hears the failure. */
        c->next = u->inflight.head;
        u->inflight.head = c;
        if (!u->inflight.tail)
            u->inflight.tail = c;
        u->inflight.n++;
        char why[96];
        snprintf(why, sizeof why, "unexpected reply code %d from upstream", r->code);
        up__fail(u, UP_ERR_PROTOCOL, why);
        return;
    }
    if (c->kind == UP_K_USER || c->kind == UP_K_DOT || c->kind == UP_K_DATA)
        stats_upstream_reply(r->code);
    if (c->kind == UP_K_DATA) {
        if (r->code == 354) {
            /* The final reply comes after the dot: re-queue as DOT. */
            c->kind = UP_K_DOT;
            fifo_push(&u->inflight, c);
            u->streaming = true;
            u->at_line_start = true;
            up__arm_timer(u);
            up__stream(u);
            return;
        }
        u->streaming = false;
    }
    if (c->kind == UP_K_DOT && u->streaming) {
        /* A final reply before the end of the message is out of protocol:
         * never relay it (it could be a 250 for a truncated message). */
        c->next = u->inflight.head;
        u->inflight.head = c;
        if (!u->inflight.tail)
            u->inflight.tail = c;
        u->inflight.n++;
        up__fail(u, UP_ERR_PROTOCOL, "upstream replied before the end of the message");
        return;
    }
    up__arm_timer(u);
    struct up_result res = {.err = UP_OK, .reply = r, .why = NULL};
    up_cb cb = c->cb;
    void *ud = c->ud;
    free(c);
    if (!up__call(u, cb, ud, &res))
        return;
    up__pump(u);
}


static void up__on_read(struct conn *c, const char *data, size_t len, void *ud)
{
    (void)c;
    struct up *u = ud;
    if (u->state == UP_S_FAILED || u->state == UP_S_CLOSED)
        return;
    if (buf_append(&u->in, data, len) != 0) {
        up__fail(u, UP_ERR_LOCAL, "out of memory");
        return;
    }
    size_t off = 0;
    u->depth++;
    /* Note: a STARTTLS 220 handler resets u->in, which ends this loop and
     * drops any plaintext that followed the 220 (response injection). */
    while (off < u->in.len && u->state != UP_S_FAILED && !u->dead) {
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
    u->depth--;
    if (u->dead && u->depth == 0) {
        up__destroy(u);
        return;
    }
    if (u->state != UP_S_FAILED && !u->dead)
        buf_consume(&u->in, off);
}

static void up__try_next_server(struct up *u);

static void up__on_event(struct conn *c, enum conn_event ev, int err, void *ud)
{
    (void)c;
    struct up *u = ud;
    switch (ev) {
    case CONN_EV_CONNECTED: {
        conn_set_nodelay(u->conn);
        if (conn_read_start(u->conn) != 0) {
            up__fail(u, UP_ERR_CONNECT, "cannot read from upstream");
            return;
        }
        u->state = UP_S_GREETING;
        struct up_cmd *g = cmd_new(UP_K_GREETING, NULL, up__hs_greeting_cb, u);
        if (!g) {
            up__fail(u, UP_ERR_LOCAL, "out of memory");
            return;
        }
        fifo_push(&u->inflight, g);
        up__arm_timer(u);
        break;
    }
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
        if (u->streaming)
            up__stream(u);
        break;
    }
}

static void up__try_next_server(struct up *u)
{
    if (u->server_idx >= u->cfg->nupstream) {
        stats_set_upstream_ok(false);
        up__fail(u, UP_ERR_CONNECT, "no upstream server reachable");
        return;
    }
    const struct cfg_addr *a = &u->cfg->upstream[u->server_idx];
    snprintf(u->server, sizeof u->server, "%s", a->text);
    u->conn = conn_new(u->loop, up__on_read, up__on_event, u);
    if (!u->conn) {
        up__fail(u, UP_ERR_LOCAL, "out of memory");
        return;
    }
    u->state = UP_S_CONNECTING;
    up__arm_timer(u);
    if (conn_connect(u->conn, (const struct sockaddr *)&a->sa, NULL) != 0) {
        conn_close(u->conn, false);
        u->conn = NULL;
        u->server_idx++;
        up__try_next_server(u);
    }
}

/* Send what may be sent now: everything when pipelining (DATA only when
 * nothing else is in flight, RFC 2920 §3.1), else one command at a time.
 * Handshake commands are never pipelined. */
static void up__pump(struct up *u)
{
    if (u->dead || !u->conn || u->state == UP_S_FAILED || u->state == UP_S_CONNECTING ||
        u->state == UP_S_GREETING || u->streaming)
        return;
    bool sent = false;
    while (u->waiting.head) {
        struct up_cmd *c = u->waiting.head;
        bool internal = c->kind != UP_K_USER && c->kind != UP_K_DATA && c->kind != UP_K_QUIT &&
                        c->kind != UP_K_XFORWARD;
        if (u->state != UP_S_READY && !internal)
            break; /* user commands wait for the handshake */
        if (u->inflight.head) {
            bool can_pipeline = (u->caps & UP_CAP_PIPELINING) && !internal &&
                                c->kind != UP_K_DATA && u->inflight.tail->kind != UP_K_DATA;
            if (!can_pipeline)
                break;
        }
        fifo_pop(&u->waiting);
        if (up__send_line(u, c->line, c->len) != 0) {
            free(c);
            up__fail(u, UP_ERR_LOCAL, "cannot write to upstream");
            return;
        }
        fifo_push(&u->inflight, c);
        sent = true;
        if (c->kind == UP_K_STARTTLS || c->kind == UP_K_XCLIENT || c->kind == UP_K_EHLO)
            break;
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

static void up__stream(struct up *u)
{
    if (!u->streaming || !u->conn)
        return;
    /* Write up to UP_CHUNK at a time; continue on CONN_EV_DRAINED. */
    size_t budget = UP_CHUNK;
    while (u->seg_idx < u->nsegs && budget > 0) {
        const struct iovec *v = &u->segs[u->seg_idx];
        size_t left = v->iov_len - u->seg_off;
        size_t n = left < budget ? left : budget;
        if (data_stuff((const char *)v->iov_base + u->seg_off, n, &u->at_line_start, up__sink,
                       u) != 0) {
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
        if (data_stuff_end(u->at_line_start, up__sink, u) != 0) {
            up__fail(u, UP_ERR_LOCAL, "cannot write message to upstream");
            return;
        }
        u->streaming = false;
    }
    conn_flush(u->conn);
    up__arm_timer(u);
}

/* ---- public API ------------------------------------------------------------- */

struct up *up_new(uv_loop_t *loop, struct cfg *cfg, const char *log_sid)
{
    struct up *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->timer = malloc(sizeof *u->timer);
    if (!u->timer) {
        free(u);
        return NULL;
    }
    u->loop = loop;
    u->cfg = cfg_ref(cfg);
    snprintf(u->sid, sizeof u->sid, "%s", log_sid);
    uv_timer_init(loop, u->timer);
    u->timer->data = u;
    reply_reader_init(&u->rr);
    buf_init(&u->in);
    return u;
}

void up_open(struct up *u, up_cb cb, void *ud)
{
    u->open_cb = cb;
    u->open_ud = ud;
    if (u->state == UP_S_READY) {
        struct up_result r = {.err = UP_OK, .reply = NULL, .why = NULL};
        u->open_cb = NULL;
        up__call(u, cb, ud, &r);
        return;
    }
    if (u->state != UP_S_NEW)
        return; /* already opening; the pending open reports */
    u->server_idx = 0;
    up__try_next_server(u);
}

bool up_ready(const struct up *u)
{
    return u->state == UP_S_READY;
}

bool up_failed(const struct up *u)
{
    return u->state == UP_S_FAILED;
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

/* RFC 1891 xtext, as Postfix expects for XCLIENT/XFORWARD values. */
static void xtext_append(buf_t *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 33 || ch > 126 || ch == '+' || ch == '=')
            buf_printf(b, "+%02X", ch);
        else
            buf_append(b, s, 1);
    }
}

static void up__ident_done(struct up *u, const struct up_result *r)
{
    up_cb cb = u->ident_cb;
    u->ident_cb = NULL;
    if (cb)
        up__call(u, cb, u->ident_ud, r);
}

static void up__xclient_ehlo_cb(void *ud, const struct up_result *r)
{
    struct up *u = ud;
    if (r->err)
        return;
    if (r->reply->code != 250) {
        up__fail(u, UP_ERR_PROTOCOL, "upstream refused EHLO after XCLIENT");
        return;
    }
    up__parse_ehlo(u, r->reply);
    up__ident_done(u, r);
}

static void up__xclient_cb(void *ud, const struct up_result *r)
{
    struct up *u = ud;
    if (r->err)
        return;
    if (r->reply->code == 220 || r->reply->code == 250) {
        u->xclient_done = true;
        if (r->reply->code == 220) {
            /* XCLIENT restarts the session: EHLO again, before anything else,
             * with the client's own HELO name, so that the upstream's HELO
             * checks and Received header see the real client. */
            char line[300];
            const char *helo = u->client_helo[0] ? u->client_helo
                               : u->cfg->upstream_helo ? u->cfg->upstream_helo
                                                       : u->cfg->hostname;
            snprintf(line, sizeof line, "EHLO %s", helo);
            struct up_cmd *c = cmd_new(UP_K_EHLO, line, up__xclient_ehlo_cb, u);
            if (!c) {
                up__fail(u, UP_ERR_LOCAL, "out of memory");
                return;
            }
            c->next = u->waiting.head;
            u->waiting.head = c;
            if (!u->waiting.tail)
                u->waiting.tail = c;
            u->waiting.n++;
            return; /* up__on_reply pumps */
        }
        up__ident_done(u, r);
        return;
    }
    /* The upstream's policy refused the real client: the session relays it. */
    up__ident_done(u, r);
}

static void up__xforward_cb(void *ud, const struct up_result *r)
{
    struct up *u = ud;
    if (r->err)
        return;
    up__ident_done(u, r);
}

void up_identify(struct up *u, const struct up_client_info *ci, up_cb cb, void *ud)
{
    static struct smtp_reply ok_reply = {.code = 250, .enh = "2.0.0"};
    u->ident_cb = cb;
    u->ident_ud = ud;
    const char *proto = ci->esmtp ? "ESMTP" : "SMTP";
    const char *name = ci->name[0] ? ci->name : "[UNAVAILABLE]";
    buf_t b = BUF_INIT;
    if ((u->caps & UP_CAP_XCLIENT) && u->cfg->xclient && !u->xclient_done) {
        /* Only a syntactically plain HELO name is repeated in our EHLO. */
        u->client_helo[0] = 0;
        if (ci->helo[0] && strlen(ci->helo) < sizeof u->client_helo &&
            strspn(ci->helo, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-[]:") ==
                strlen(ci->helo))
            snprintf(u->client_helo, sizeof u->client_helo, "%s", ci->helo);
        buf_puts(&b, "XCLIENT ADDR=");
        if (strchr(ci->addr, ':'))
            buf_puts(&b, "IPV6:");
        xtext_append(&b, ci->addr);
        buf_printf(&b, " PORT=%d NAME=", ci->port);
        xtext_append(&b, name);
        buf_printf(&b, " PROTO=%s", proto);
        if (ci->helo[0]) {
            buf_puts(&b, " HELO=");
            xtext_append(&b, ci->helo);
        }
        struct up_cmd *c = cmd_new(UP_K_XCLIENT, b.ptr, up__xclient_cb, u);
        buf_free(&b);
        if (!c) {
            up__fail(u, UP_ERR_LOCAL, "out of memory");
            return;
        }
        fifo_push(&u->waiting, c);
        up__pump(u);
        return;
    }
    if ((u->caps & UP_CAP_XFORWARD) && u->cfg->xforward && !u->xclient_done) {
        /* Two commands keep each line under 512 octets with long names. */
        buf_puts(&b, "XFORWARD ADDR=");
        if (strchr(ci->addr, ':'))
            buf_puts(&b, "IPV6:");
        xtext_append(&b, ci->addr);
        buf_printf(&b, " PORT=%d PROTO=%s NAME=", ci->port, proto);
        xtext_append(&b, name);
        struct up_cmd *c1 = cmd_new(UP_K_XFORWARD, b.ptr, NULL, u);
        buf_reset(&b);
        buf_puts(&b, "XFORWARD HELO=");
        xtext_append(&b, ci->helo[0] ? ci->helo : "[UNAVAILABLE]");
        struct up_cmd *c2 = cmd_new(UP_K_XFORWARD, b.ptr, up__xforward_cb, u);
        buf_free(&b);
        if (!c1 || !c2) {
            free(c1);
            free(c2);
            up__fail(u, UP_ERR_LOCAL, "out of memory");
            return;
        }
        fifo_push(&u->waiting, c1);
        fifo_push(&u->waiting, c2);
        up__pump(u);
        return;
    }
    buf_free(&b);
    struct up_result r = {.err = UP_OK, .reply = &ok_reply, .why = NULL};
    up__ident_done(u, &r);
}

void up_command(struct up *u, const char *line, up_cb cb, void *ud)
{
    if (u->state == UP_S_FAILED || u->state == UP_S_CLOSED) {
        struct up_result r = {.err = UP_ERR_LOST, .reply = NULL, .why = "upstream not connected"};
        up__call(u, cb, ud, &r);
        return;
    }
    struct up_cmd *c = cmd_new(UP_K_USER, line, cb, ud);
    if (!c) {
        struct up_result r = {.err = UP_ERR_LOCAL, .reply = NULL, .why = "out of memory"};
        up__call(u, cb, ud, &r);
        return;
    }
    fifo_push(&u->waiting, c);
    up__pump(u);
}

void up_data(struct up *u, const struct iovec *segs, size_t nsegs, up_cb cb, void *ud)
{
    if (u->state == UP_S_FAILED || u->state == UP_S_CLOSED) {
        struct up_result r = {.err = UP_ERR_LOST, .reply = NULL, .why = "upstream not connected"};
        up__call(u, cb, ud, &r);
        return;
    }
    struct up_cmd *c = cmd_new(UP_K_DATA, "DATA", cb, ud);
    if (!c) {
        struct up_result r = {.err = UP_ERR_LOCAL, .reply = NULL, .why = "out of memory"};
        up__call(u, cb, ud, &r);
        return;
    }
    u->segs = segs;
    u->nsegs = nsegs;
    u->seg_idx = 0;
    u->seg_off = 0;
    u->data_bytes = 0;
    fifo_push(&u->waiting, c);
    up__pump(u);
}

void up_free(struct up *u)
{
    if (!u || u->dead)
        return;
    u->dead = true;
    if (u->state == UP_S_READY && u->conn && !u->streaming && !u->inflight.head) {
        /* Polite QUIT; the conn flushes it on graceful close. */
        up__send_line(u, "QUIT", 4);
        conn_flush(u->conn);
    }
    u->state = UP_S_CLOSED;
    if (u->depth == 0)
        up__destroy(u);
}
