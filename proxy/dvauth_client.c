/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dvauth_client: the Dovecot auth-client socket on the loop; see
 * dvauth_client.h.
 *
 * Pieces:
 *   - struct dvauth_client__conn: one socket (uv_pipe_t or uv_tcp_t). It
 *     is a heap object of its own so that closing it (asynchronous in
 *     libuv) never delays the client: a failed connection is detached
 *     (conn->cl = NULL), closed, and freed by its close callback while the
 *     client may already be connecting again.
 *   - requests: `reqs` holds the live ones in the order they were made.
 *     All have the same timeout, so deadlines grow along the list and the
 *     one timer only ever watches the head. A request is WAITING (made
 *     while the connection is not ready), SENT (its line is written; the
 *     answer is matched by id) or DONE (result known, on the `done` FIFO
 *     for delivery).
 *   - delivery: results are only ever queued; dvauth_client__deliver(),
 *     run by defer.h from the loop, calls the callbacks. It is the one
 *     entry point into the caller's code, so it alone holds `depth`; a
 *     dvauth_client_free() from a callback marks the client dead and the
 *     entry point destroys it when the callback returns.
 *
 * Writes: each line goes into its own heap block with its uv_write_t; the
 * block is wiped (it holds a password in base64) and freed by the write
 * callback, which also runs when the handle closes first.
 */
#include "dvauth_client.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "defer.h"
#include "log.h"
#include "sasl.h"
#include "xalloc.h"

enum dvauth_client__state {
    DC_IDLE = 0,   /* no connection */
    DC_CONNECTING, /* connect() under way */
    DC_HANDSHAKE,  /* connected; waiting for the server's DONE */
    DC_READY,      /* requests flow */
};

static const char *const dvauth_client__state_names[] = {"idle", "connecting", "handshake",
                                                         "ready"};

enum dvauth_client__rstate { DR_WAITING = 0, DR_SENT, DR_DONE, DR_DELIVERING };

struct dvauth_client_req {
    struct dvauth_client_req *prev, *next; /* on cl->reqs, or next on cl->done */
    struct dvauth_client *cl;
    enum dvauth_client__rstate st;
    bool cancelled; /* cancelled from its own callback */
    unsigned id;
    uint64_t deadline; /* uv_now() ms */
    uint64_t sent_at;
    buf_t line; /* the AUTH line while WAITING (a password inside) */
    dvauth_client_cb cb;
    void *ud;
    /* result, once DONE */
    enum dvauth_client_status status;
    bool has_user, has_reason;
    char user[DVAUTH_USER_MAX + 1];
    char reason[DVAUTH_REASON_MAX + 1];
};

struct dvauth_client__conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } u;
    uv_connect_t creq;
    struct dvauth_client *cl; /* NULL once detached */
};

struct dvauth_client {
    uv_loop_t *loop;
    char addr[128]; /* as given, for logs */
    bool is_unix;
    struct sockaddr_storage sa;
    unsigned timeout_ms;
    enum dvauth_client__state state;
    struct dvauth_client__conn *conn; /* NULL when IDLE */
    struct dvauth_hs hs;
    buf_t in;         /* input not yet split into lines */
    uint64_t last_rx; /* uv_now() of the last input */
    unsigned next_id;
    struct dvauth_client_req reqs;                   /* sentinel of the live list */
    struct dvauth_client_req *done_head, *done_tail; /* results to deliver */
    size_t done_n;
    struct defer_ev defer;
    uv_timer_t *timer; /* heap: closed asynchronously */
    int depth;
    bool dead;
};

static void dvauth_client__fail_conn(struct dvauth_client *cl, const char *why);

/* ---- small helpers ------------------------------------------------------ */

static void dvauth_client__set_state(struct dvauth_client *cl, enum dvauth_client__state to)
{
    log_debug("dvauth %s: state %s -> %s", cl->addr, dvauth_client__state_names[cl->state],
              dvauth_client__state_names[to]);
    cl->state = to;
}

static void dvauth_client__wipe_line(struct dvauth_client_req *r)
{
    if (r->line.ptr)
        sasl_wipe(r->line.ptr, r->line.cap);
    buf_free(&r->line);
}

static void dvauth_client__unlink(struct dvauth_client_req *r)
{
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void dvauth_client__free_req(struct dvauth_client_req *r)
{
    dvauth_client__wipe_line(r);
    free(r);
}

/* The timer watches the head of `reqs` (the earliest deadline). */
static void dvauth_client__timer_cb(uv_timer_t *t);
static void dvauth_client__arm(struct dvauth_client *cl)
{
    struct dvauth_client_req *head = cl->reqs.next;
    if (head == &cl->reqs) {
        uv_timer_stop(cl->timer);
        return;
    }
    uint64_t now = uv_now(cl->loop);
    uv_timer_start(cl->timer, dvauth_client__timer_cb,
                   head->deadline > now ? head->deadline - now : 0, 0);
}

/* ---- delivery ----------------------------------------------------------- */

static void dvauth_client__destroy(struct dvauth_client *cl);

static void dvauth_client__deliver(struct defer_ev *ev)
{
    struct dvauth_client *cl =
        (struct dvauth_client *)(void *)((char *)ev - offsetof(struct dvauth_client, defer));
    /* Only what is queued now: results queued by these callbacks wait for
     * the next turn of the loop. Pop one at a time, so that a callback
     * cancelling a result still queued finds it on the FIFO. */
    size_t n = cl->done_n;
    cl->depth++;
    while (n-- > 0 && cl->done_head && !cl->dead) {
        struct dvauth_client_req *r = cl->done_head;
        cl->done_head = r->next;
        if (!cl->done_head)
            cl->done_tail = NULL;
        cl->done_n--;
        r->st = DR_DELIVERING;
        struct dvauth_client_result res = {
            .status = r->status,
            .user = r->has_user ? r->user : NULL,
            .reason = r->has_reason ? r->reason : NULL,
        };
        r->cb(r->ud, &res);
        dvauth_client__free_req(r); /* also when cancelled from its callback */
    }
    if (--cl->depth == 0 && cl->dead)
        dvauth_client__destroy(cl);
}

/* End r with a result; it is called back from the loop. */
static void dvauth_client__finish(struct dvauth_client *cl, struct dvauth_client_req *r,
                                  enum dvauth_client_status st, const char *user,
                                  const char *reason)
{
    dvauth_client__unlink(r);
    dvauth_client__wipe_line(r);
    r->st = DR_DONE;
    r->status = st;
    if (user) {
        snprintf(r->user, sizeof r->user, "%s", user);
        r->has_user = true;
    }
    if (reason) {
        snprintf(r->reason, sizeof r->reason, "%s", reason);
        r->has_reason = true;
    }
    r->next = NULL;
    if (cl->done_tail)
        cl->done_tail->next = r;
    else
        cl->done_head = r;
    cl->done_tail = r;
    cl->done_n++;
    defer_post(&cl->defer, dvauth_client__deliver);
}

/* ---- writing ------------------------------------------------------------ */

struct dvauth_client__wr {
    uv_write_t w;
    size_t len;
    char data[];
};

static void dvauth_client__write_cb(uv_write_t *w, int status)
{
    struct dvauth_client__wr *wr = (struct dvauth_client__wr *)(void *)w;
    struct dvauth_client__conn *conn = w->data;
    sasl_wipe(wr->data, wr->len);
    free(wr);
    if (status < 0 && status != UV_ECANCELED && conn->cl) {
        char why[128];
        snprintf(why, sizeof why, "write: %s", uv_strerror(status));
        dvauth_client__fail_conn(conn->cl, why);
    }
}

/* Queue bytes on the connection; false when it failed (already handled). */
static bool dvauth_client__write(struct dvauth_client *cl, const char *p, size_t n)
{
    struct dvauth_client__wr *wr = xmalloc(sizeof *wr + n);
    wr->len = n;
    memcpy(wr->data, p, n);
    wr->w.data = cl->conn;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
    int rc = uv_write(&wr->w, &cl->conn->u.stream, &b, 1, dvauth_client__write_cb);
    if (rc < 0) {
        sasl_wipe(wr->data, n);
        free(wr);
        char why[128];
        snprintf(why, sizeof why, "write: %s", uv_strerror(rc));
        dvauth_client__fail_conn(cl, why);
        return false;
    }
    return true;
}

static bool dvauth_client__send(struct dvauth_client *cl, struct dvauth_client_req *r)
{
    bool ok = dvauth_client__write(cl, r->line.ptr, r->line.len);
    if (ok) {
        r->st = DR_SENT;
        r->sent_at = uv_now(cl->loop);
        dvauth_client__wipe_line(r);
    }
    return ok;
}

/* ---- the connection ----------------------------------------------------- */

static void dvauth_client__close_cb(uv_handle_t *h)
{
    free(h); /* the conn: u.handle is its first member */
}

/* Detach and close the connection (no callback of it reaches cl again). */
static void dvauth_client__drop_conn(struct dvauth_client *cl)
{
    struct dvauth_client__conn *conn = cl->conn;
    if (!conn)
        return;
    conn->cl = NULL;
    cl->conn = NULL;
    uv_close(&conn->u.handle, dvauth_client__close_cb);
    buf_reset(&cl->in);
    dvauth_client__set_state(cl, DC_IDLE);
}

/* The connection does not work: close it; every request that was on it or
 * waiting for it ends with TEMPFAIL. */
static void dvauth_client__fail_conn(struct dvauth_client *cl, const char *why)
{
    if (!cl->conn)
        return;
    log_warn("dvauth %s: %s (while %s)", cl->addr, why, dvauth_client__state_names[cl->state]);
    dvauth_client__drop_conn(cl);
    struct dvauth_client_req *r = cl->reqs.next;
    while (r != &cl->reqs) {
        struct dvauth_client_req *next = r->next;
        dvauth_client__finish(cl, r, DVAUTH_CLIENT_TEMPFAIL, NULL, why);
        r = next;
    }
    dvauth_client__arm(cl);
}

static struct dvauth_client_req *dvauth_client__by_id(struct dvauth_client *cl, unsigned id)
{
    /* A linear walk: the requests in flight are the SMTP sessions inside
     * AUTH at this moment, a handful. */
    for (struct dvauth_client_req *r = cl->reqs.next; r != &cl->reqs; r = r->next)
        if (r->st == DR_SENT && r->id == id)
            return r;
    return NULL;
}

/* One server line. false: the connection was failed. */
static bool dvauth_client__line(struct dvauth_client *cl, const char *line, size_t len)
{
    if (cl->state == DC_HANDSHAKE) {
        int rc = dvauth_hs_line(&cl->hs, line, len);
        if (rc == DVAUTH_MORE)
            return true;
        if (rc == DVAUTH_OK && !(cl->hs.mechs & DVAUTH_MECH_PLAIN))
            rc = DVAUTH_ENOMECH;
        if (rc < 0) {
            char why[128];
            snprintf(why, sizeof why, "handshake: %s", dvauth_strerror(rc));
            dvauth_client__fail_conn(cl, why);
            return false;
        }
        dvauth_client__set_state(cl, DC_READY);
        for (struct dvauth_client_req *r = cl->reqs.next; r != &cl->reqs; r = r->next)
            if (r->st == DR_WAITING && !dvauth_client__send(cl, r))
                return false;
        return true;
    }
    struct dvauth_reply rep;
    if (dvauth_reply_parse(line, len, &rep) < 0) {
        dvauth_client__fail_conn(cl, "malformed reply");
        return false;
    }
    if (rep.kind == DVAUTH_R_IGNORE)
        return true;
    struct dvauth_client_req *r = dvauth_client__by_id(cl, rep.id);
    if (!r)
        return true; /* cancelled or timed out meanwhile */
    switch (rep.kind) {
    case DVAUTH_R_OK:
        if (rep.user_bad) /* a success under a name we cannot use is none */
            dvauth_client__finish(cl, r, DVAUTH_CLIENT_TEMPFAIL, NULL, "unusable user name");
        else
            dvauth_client__finish(cl, r, DVAUTH_CLIENT_OK, rep.has_user ? rep.user : NULL, NULL);
        break;
    case DVAUTH_R_FAIL:
        dvauth_client__finish(cl, r, rep.temp ? DVAUTH_CLIENT_TEMPFAIL : DVAUTH_CLIENT_FAIL,
                              rep.has_user ? rep.user : NULL,
                              rep.has_reason ? rep.reason
                                             : (rep.temp ? "temporary failure" : NULL));
        break;
    default:
        /* CONT: PLAIN with its initial response never needs one; Dovecot
         * keeps the request until its own timeout, we answer now. */
        dvauth_client__finish(cl, r, DVAUTH_CLIENT_TEMPFAIL, NULL, "unexpected CONT");
        break;
    }
    dvauth_client__arm(cl);
    return true;
}

static void dvauth_client__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    /* One buffer for every client: reads are consumed at once. */
    static char rbuf[65536];
    (void)h;
    (void)suggested;
    *b = uv_buf_init(rbuf, sizeof rbuf);
}

static void dvauth_client__read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct dvauth_client__conn *conn = (struct dvauth_client__conn *)(void *)s;
    struct dvauth_client *cl = conn->cl;
    if (!cl || nread == 0)
        return;
    if (nread < 0) {
        char why[128];
        if (nread == UV_EOF)
            snprintf(why, sizeof why, "connection closed by the server");
        else
            snprintf(why, sizeof why, "read: %s", uv_strerror((int)nread));
        if (cl->reqs.next == &cl->reqs && nread == UV_EOF) {
            /* idle: Dovecot restarted or closed us; just reconnect later */
            log_debug("dvauth %s: %s", cl->addr, why);
            dvauth_client__drop_conn(cl);
            return;
        }
        dvauth_client__fail_conn(cl, why);
        return;
    }
    cl->last_rx = uv_now(cl->loop);
    buf_append(&cl->in, b->base, (size_t)nread);
    size_t off = 0;
    for (;;) {
        long end = dvauth_line_end(cl->in.ptr + off, cl->in.len - off);
        if (end == -1)
            break;
        if (end < 0) {
            dvauth_client__fail_conn(cl, "line too long");
            return;
        }
        if (!dvauth_client__line(cl, cl->in.ptr + off, (size_t)end))
            return; /* failed: cl->in was reset */
        off += (size_t)end + 1;
    }
    buf_consume(&cl->in, off);
}

static void dvauth_client__connect_cb(uv_connect_t *c, int status)
{
    struct dvauth_client__conn *conn = c->data;
    struct dvauth_client *cl = conn->cl;
    if (!cl)
        return; /* detached while connecting */
    if (status < 0) {
        char why[160];
        snprintf(why, sizeof why, "connect: %s", uv_strerror(status));
        dvauth_client__fail_conn(cl, why);
        return;
    }
    dvauth_client__set_state(cl, DC_HANDSHAKE);
    dvauth_hs_init(&cl->hs);
    cl->last_rx = uv_now(cl->loop);
    int rc = uv_read_start(&conn->u.stream, dvauth_client__alloc_cb, dvauth_client__read_cb);
    if (rc < 0) {
        char why[160];
        snprintf(why, sizeof why, "read: %s", uv_strerror(rc));
        dvauth_client__fail_conn(cl, why);
        return;
    }
    buf_t hello = BUF_INIT;
    dvauth_build_hello(&hello, (unsigned long)getpid());
    dvauth_client__write(cl, hello.ptr, hello.len);
    buf_free(&hello);
}

static void dvauth_client__connect(struct dvauth_client *cl)
{
    struct dvauth_client__conn *conn = xcalloc(1, sizeof *conn);
    conn->cl = cl;
    conn->creq.data = conn;
    cl->conn = conn;
    buf_reset(&cl->in);
    dvauth_client__set_state(cl, DC_CONNECTING);
    if (cl->is_unix) {
        uv_pipe_init(cl->loop, &conn->u.pipe, 0);
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&cl->sa;
        /* errors come through the callback, from the loop */
        uv_pipe_connect(&conn->creq, &conn->u.pipe, sun->sun_path, dvauth_client__connect_cb);
        return;
    }
    uv_tcp_init(cl->loop, &conn->u.tcp);
    int rc = uv_tcp_connect(&conn->creq, &conn->u.tcp, (const struct sockaddr *)&cl->sa,
                            dvauth_client__connect_cb);
    if (rc < 0) {
        char why[160];
        snprintf(why, sizeof why, "connect: %s", uv_strerror(rc));
        dvauth_client__fail_conn(cl, why); /* results still go through the loop */
    }
}

static void dvauth_client__timer_cb(uv_timer_t *t)
{
    struct dvauth_client *cl = t->data;
    uint64_t now = uv_now(cl->loop);
    struct dvauth_client_req *r;
    while ((r = cl->reqs.next) != &cl->reqs && r->deadline <= now) {
        if (r->st == DR_WAITING && cl->conn) {
            /* still connecting or in the handshake after a whole timeout:
             * that connection is not going to work (this fails r too) */
            dvauth_client__fail_conn(cl, "timeout connecting to the auth server");
            continue;
        }
        bool silent = r->st == DR_SENT && cl->last_rx <= r->sent_at;
        dvauth_client__finish(cl, r, DVAUTH_CLIENT_TEMPFAIL, NULL, "timeout");
        if (silent)
            dvauth_client__fail_conn(cl, "no answer from the auth server");
    }
    dvauth_client__arm(cl);
}

/* ---- public ------------------------------------------------------------- */

static bool dvauth_client__parse_addr(struct dvauth_client *cl, const char *addr)
{
    memset(&cl->sa, 0, sizeof cl->sa);
    if (addr[0] == '/') {
        struct sockaddr_un *sun = (struct sockaddr_un *)&cl->sa;
        if (strlen(addr) >= sizeof sun->sun_path)
            return false;
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, addr, strlen(addr) + 1);
        cl->is_unix = true;
        return true;
    }
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return false;
    size_t hlen = (size_t)(colon - addr);
    const char *h = addr;
    if (addr[0] == '[') {
        if (hlen < 2 || addr[hlen - 1] != ']')
            return false;
        h = addr + 1;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof host)
        return false;
    memcpy(host, h, hlen);
    host[hlen] = 0;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end || port == 0 || port > 65535)
        return false;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&cl->sa) == 0 && addr[0] != '[')
        return true;
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&cl->sa) == 0;
}

static void dvauth_client__timer_close_cb(uv_handle_t *h)
{
    free(h);
}

struct dvauth_client *dvauth_client_new(uv_loop_t *loop, const char *addr, unsigned timeout_ms)
{
    if (!addr || timeout_ms == 0 || strlen(addr) >= sizeof((struct dvauth_client *)0)->addr)
        return NULL;
    struct dvauth_client *cl = xcalloc(1, sizeof *cl);
    if (!dvauth_client__parse_addr(cl, addr)) {
        free(cl);
        return NULL;
    }
    cl->loop = loop;
    snprintf(cl->addr, sizeof cl->addr, "%s", addr);
    cl->timeout_ms = timeout_ms;
    cl->reqs.next = cl->reqs.prev = &cl->reqs;
    buf_init(&cl->in);
    cl->timer = xmalloc(sizeof *cl->timer);
    uv_timer_init(loop, cl->timer);
    cl->timer->data = cl;
    return cl;
}

struct dvauth_client_req *dvauth_client_auth(struct dvauth_client *cl, const struct dvauth_req *req,
                                             dvauth_client_cb cb, void *ud)
{
    if (!cb || cl->dead)
        return NULL;
    struct dvauth_client_req *r = xcalloc(1, sizeof *r);
    buf_init(&r->line);
    if (++cl->next_id == 0)
        cl->next_id = 1; /* 32-bit ids, never 0 */
    r->id = cl->next_id;
    if (dvauth_build_auth(&r->line, r->id, req) < 0) {
        dvauth_client__free_req(r);
        return NULL;
    }
    r->cl = cl;
    r->cb = cb;
    r->ud = ud;
    r->st = DR_WAITING;
    r->deadline = uv_now(cl->loop) + cl->timeout_ms;
    /* append: deadlines grow along the list */
    r->prev = cl->reqs.prev;
    r->next = &cl->reqs;
    cl->reqs.prev->next = r;
    cl->reqs.prev = r;
    if (r->prev == &cl->reqs)
        dvauth_client__arm(cl);
    if (cl->state == DC_READY)
        dvauth_client__send(cl, r); /* a failure queues r's TEMPFAIL */
    else if (cl->state == DC_IDLE)
        dvauth_client__connect(cl);
    return r;
}

void dvauth_client_cancel(struct dvauth_client_req *r)
{
    struct dvauth_client *cl = r->cl;
    switch (r->st) {
    case DR_DELIVERING:
        r->cancelled = true; /* freed when its callback returns */
        return;
    case DR_DONE: {
        /* on the done FIFO: take it out */
        struct dvauth_client_req **pp = &cl->done_head, *prev = NULL;
        while (*pp && *pp != r) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = r->next;
            if (cl->done_tail == r)
                cl->done_tail = prev;
            cl->done_n--;
        }
        dvauth_client__free_req(r);
        return;
    }
    default: {
        bool was_head = cl->reqs.next == r;
        dvauth_client__unlink(r);
        dvauth_client__free_req(r);
        if (was_head)
            dvauth_client__arm(cl);
        return;
    }
    }
}

static void dvauth_client__destroy(struct dvauth_client *cl)
{
    defer_cancel(&cl->defer);
    dvauth_client__drop_conn(cl);
    struct dvauth_client_req *r;
    while ((r = cl->reqs.next) != &cl->reqs) {
        dvauth_client__unlink(r);
        dvauth_client__free_req(r);
    }
    while ((r = cl->done_head)) {
        cl->done_head = r->next;
        dvauth_client__free_req(r);
    }
    uv_timer_stop(cl->timer);
    uv_close((uv_handle_t *)cl->timer, dvauth_client__timer_close_cb);
    buf_free(&cl->in);
    free(cl);
}

void dvauth_client_free(struct dvauth_client *cl)
{
    if (!cl)
        return;
    if (cl->depth > 0) {
        cl->dead = true;
        return;
    }
    dvauth_client__destroy(cl);
}
