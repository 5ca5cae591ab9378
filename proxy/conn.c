/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * conn: one TCP stream on the libuv loop with optional TLS through OpenSSL
 * memory BIOs. See conn.h for the contract.
 *
 * Ownership: struct conn owns the uv_tcp_t (embedded), a lazily created
 * uv_timer_t, the SSL (which owns both memory BIOs), the output buffers and
 * the TLS error text. Every uv_write request owns the bytes it sends (the
 * output buffer is handed over, not copied), so a write in flight never
 * points into the conn. The struct is freed in the close callback of the
 * last handle, which libuv runs after every pending request callback of the
 * stream (with UV_ECANCELED), so those callbacks may still look at it.
 *
 * Reading: one static 64 KiB buffer serves every conn. libuv calls alloc_cb
 * and read_cb back to back on the loop thread, and nothing here reads a
 * socket from inside on_read, so the buffer is never in use twice. This
 * keeps an idle connection at sizeof(struct conn). The consequence: conns
 * must all live on one loop thread.
 *
 * TLS: ciphertext from the socket goes into rbio; the handshake and SSL_read
 * run from there; whatever OpenSSL writes to wbio (handshake flights,
 * session tickets, alerts, close_notify) is moved to the output at once and
 * sent. OpenSSL has no backpressure of its own with memory BIOs:
 * conn_pending() counts ciphertext, so callers see the real queue.
 *
 * Reentrancy: a user callback may call conn_close(). After each callback
 * the code checks `closing` and unwinds without touching the user again;
 * the memory is only freed later, from libuv's close callback.
 */
#include "conn.h"

#include "buf.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define CONN_RBUF_SIZE (64 * 1024)
/* How long a graceful close waits for pending output to reach the peer. */
#define CONN_CLOSE_DEADLINE_MS 3000

struct conn {
    uv_tcp_t tcp;         /* handle; tcp.data == this conn */
    uv_loop_t *loop;
    conn_read_fn on_read;
    conn_event_fn on_event;
    void *ud;
    uv_timer_t *timer;    /* owned, lazy: deferred TLS delivery, close deadline */
    SSL *ssl;             /* owned; owns rbio and wbio */
    BIO *rbio;            /* ciphertext from the peer */
    BIO *wbio;            /* ciphertext for the peer */
    buf_t out;            /* wire bytes not yet handed to uv_write */
    buf_t early;          /* plaintext written before the handshake finished */
    size_t inflight;      /* bytes in uv_write requests not yet completed */
    char *tls_err;        /* owned; NULL means "" */
    unsigned nhandles;    /* handles not yet closed (tcp, timer) */
    unsigned reading : 1;      /* the caller wants on_read */
    unsigned sock_reading : 1; /* uv_read_start is in effect */
    unsigned connecting : 1;
    unsigned closing : 1;      /* conn_close() was called: no more callbacks */
    unsigned handles_closed : 1;
    unsigned tls_done : 1;
    unsigned tls_failed : 1;
    unsigned drain_armed : 1;  /* pending was non-zero since the last DRAINED */
    unsigned sock_eof : 1;     /* the socket returned EOF */
    unsigned eof : 1;          /* EOF was reported (after all data before it) */
    unsigned error : 1;        /* ERROR was reported */
    unsigned flush_queued : 1; /* on the dirty list, flushed at the loop's check phase */
    struct conn *dirty_prev, *dirty_next;
    struct conn_loopq *lq;
};

/*
 * Output is flushed once per loop iteration, after all I/O callbacks ran
 * (libuv's check phase): the replies to a pipelined group, or the commands
 * several replies caused, leave in one write. The list is the conns that
 * asked for a flush since the last check.
 */
struct conn_loopq {
    uv_loop_t *loop;
    uv_check_t *check; /* heap; closed when the loop has no conn left */
    uv_idle_t *idle;   /* heap; active while flushes are pending, so that the
                          loop does not block in poll before the check runs
                          (writes made from timers or outside callbacks) */
    struct conn *dirty;
    unsigned nconns;
};
#define CONN_MAX_LOOPS 8
static struct conn_loopq conn__loops[CONN_MAX_LOOPS];

/* A uv_write in flight; owns the bytes. */
struct conn_wreq {
    uv_write_t req;
    struct conn *c;
    char *data;
    size_t len;
};

static char conn__rbuf[CONN_RBUF_SIZE];

static void conn__close_handles(struct conn *c);
static void conn__tls_pump(struct conn *c);
static int conn__flush(struct conn *c);
static int conn__flush_now(struct conn *c);
static void conn__enqueue(struct conn *c);

static void conn__emit(struct conn *c, enum conn_event ev, int err)
{
    if (!c->closing && c->on_event)
        c->on_event(c, ev, err, c->ud);
}

static void conn__emit_error(struct conn *c, int err)
{
    if (c->error)
        return;
    c->error = 1;
    conn__emit(c, CONN_EV_ERROR, err);
}

static void conn__report_eof(struct conn *c)
{
    if (c->eof)
        return;
    c->eof = 1;
    conn__emit(c, CONN_EV_EOF, 0);
}

static void conn__set_tls_err(struct conn *c, const char *text)
{
    free(c->tls_err);
    c->tls_err = xstrdup(text);
}

static void conn__dirty_remove(struct conn *c)
{
    if (!c->flush_queued)
        return;
    if (c->dirty_prev)
        c->dirty_prev->dirty_next = c->dirty_next;
    else
        c->lq->dirty = c->dirty_next;
    if (c->dirty_next)
        c->dirty_next->dirty_prev = c->dirty_prev;
    c->dirty_prev = c->dirty_next = NULL;
    c->flush_queued = 0;
}

static void conn__idle_cb(uv_idle_t *h)
{
    (void)h;
}

static void conn__check_cb(uv_check_t *h)
{
    struct conn_loopq *lq = h->data;
    uv_idle_stop(lq->idle);
    while (lq->dirty) {
        struct conn *c = lq->dirty;
        conn__dirty_remove(c);
        if (c->closing || c->connecting)
            continue;
        int rc = conn__flush_now(c);
        if (rc != 0) {
            conn__emit_error(c, rc);
        } else if (c->drain_armed && conn_pending(c) == 0) {
            c->drain_armed = 0;
            conn__emit(c, CONN_EV_DRAINED, 0);
        }
    }
}

struct conn *conn_new(uv_loop_t *loop, conn_read_fn on_read, conn_event_fn on_event, void *ud)
{
    struct conn *c = xcalloc(1, sizeof *c);
    struct conn_loopq *lq = NULL, *spare = NULL;
    for (size_t i = 0; i < CONN_MAX_LOOPS; i++) {
        if (conn__loops[i].loop == loop)
            lq = &conn__loops[i];
        else if (!conn__loops[i].loop && !spare)
            spare = &conn__loops[i];
    }
    if (!lq) {
        if (!spare) {
            free(c);
            return NULL; /* more loops than CONN_MAX_LOOPS: a bug */
        }
        spare->check = xmalloc(sizeof *spare->check);
        spare->idle = xmalloc(sizeof *spare->idle);
        lq = spare;
        lq->loop = loop;
        lq->dirty = NULL;
        lq->nconns = 0;
        /* The check never keeps the loop alive; it goes with the last conn. */
        uv_check_init(loop, lq->check);
        lq->check->data = lq;
        uv_check_start(lq->check, conn__check_cb);
        uv_unref((uv_handle_t *)lq->check);
        uv_idle_init(loop, lq->idle);
        lq->idle->data = lq;
        uv_unref((uv_handle_t *)lq->idle);
    }
    lq->nconns++;
    c->lq = lq;
    if (uv_tcp_init(loop, &c->tcp) != 0) {
        lq->nconns--; /* the check stays until the loop's next conn goes */
        free(c);
        return NULL;
    }
    c->tcp.data = c;
    c->loop = loop;
    c->on_read = on_read;
    c->on_event = on_event;
    c->ud = ud;
    c->nhandles = 1;
    buf_init(&c->out);
    buf_init(&c->early);
    return c;
}

uv_tcp_t *conn_tcp(struct conn *c)
{
    return &c->tcp;
}

/* ---- connect ---------------------------------------------------------- */

static void conn__connect_cb(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    free(req);
    c->connecting = 0;
    if (c->closing)
        return;
    /* Output queued and flushed while connecting goes out now. */
    if (status == 0 && conn__flush(c) != 0)
        status = UV_EPIPE;
    conn__emit(c, status == 0 ? CONN_EV_CONNECTED : CONN_EV_CONNECT_FAIL, status);
}

int conn_connect(struct conn *c, const struct sockaddr *addr, const struct sockaddr *bind_addr)
{
    if (c->closing || c->connecting)
        return UV_EINVAL;
    int rc;
    if (bind_addr && (rc = uv_tcp_bind(&c->tcp, bind_addr, 0)) != 0)
        return rc;
    uv_connect_t *req = xmalloc(sizeof *req);
    req->data = c;
    rc = uv_tcp_connect(req, &c->tcp, addr, conn__connect_cb);
    if (rc != 0) {
        free(req);
        return rc;
    }
    c->connecting = 1;
    return 0;
}

void conn_set_nodelay(struct conn *c)
{
    uv_tcp_nodelay(&c->tcp, 1);
}

/* ---- output ----------------------------------------------------------- */

size_t conn_pending(const struct conn *c)
{
    return c->out.len + c->early.len + c->inflight;
}

static void conn__arm(struct conn *c)
{
    if (conn_pending(c) > 0)
        c->drain_armed = 1;
}

static void conn__write_cb(uv_write_t *req, int status)
{
    struct conn_wreq *w = (struct conn_wreq *)req;
    struct conn *c = w->c;
    c->inflight -= w->len;
    free(w->data);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        conn__emit_error(c, status);
        return;
    }
    if (c->drain_armed && conn_pending(c) == 0) {
        c->drain_armed = 0;
        conn__emit(c, CONN_EV_DRAINED, 0);
    }
}

/* Send the output: straight to the socket when nothing is queued before it
 * (no request, no poll registration), else (or for the rest) one uv_write
 * that takes the buffer over. DRAINED is never emitted from here (callers
 * may be in the middle of something); the check phase reports it. */
static int conn__flush_now(struct conn *c)
{
    if (c->out.len == 0)
        return 0;
    if (c->inflight == 0) {
        uv_buf_t tb = uv_buf_init(c->out.ptr, (unsigned)c->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &tb, 1);
        if (n > 0) {
            if ((size_t)n == c->out.len) {
                /* Keep a small buffer for the next replies; drop a big one. */
                if (c->out.cap > 16384)
                    buf_free(&c->out);
                else
                    buf_reset(&c->out);
                return 0;
            }
            buf_consume(&c->out, (size_t)n);
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            return n;
        }
    }
    struct conn_wreq *w = xmalloc(sizeof *w);
    w->c = c;
    w->data = c->out.ptr;
    w->len = c->out.len;
    buf_init(&c->out);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn__write_cb);
    if (rc != 0) {
        free(w->data);
        free(w);
        return rc;
    }
    c->inflight += w->len;
    return 0;
}

static void conn__enqueue(struct conn *c)
{
    if (c->flush_queued || c->closing)
        return;
    if (!c->lq->dirty)
        uv_idle_start(c->lq->idle, conn__idle_cb);
    c->flush_queued = 1;
    c->dirty_prev = NULL;
    c->dirty_next = c->lq->dirty;
    if (c->lq->dirty)
        c->lq->dirty->dirty_prev = c;
    c->lq->dirty = c;
}

/* Flush now (internal paths: TLS handshake, close); a DRAINED it causes is
 * reported from the check phase. */
static int conn__flush(struct conn *c)
{
    int rc = conn__flush_now(c);
    if (rc == 0 && c->drain_armed && conn_pending(c) == 0)
        conn__enqueue(c);
    return rc;
}

int conn_flush(struct conn *c)
{
    if (c->closing)
        return UV_EPIPE;
    if (c->connecting)
        return 0; /* sent by the connect callback */
    if (c->out.len == 0)
        return 0;
    /* Deferred to the check phase: see conn__check_cb. */
    conn__enqueue(c);
    return 0;
}

/* Move everything OpenSSL produced into the output. Returns bytes moved or
 * a negative error. */
static long conn__tls_out(struct conn *c)
{
    long moved = 0;
    size_t n;
    while ((n = BIO_ctrl_pending(c->wbio)) > 0) {
        if (n > INT_MAX)
            n = INT_MAX;
        buf_reserve(&c->out, n);
        int got = BIO_read(c->wbio, c->out.ptr + c->out.len, (int)n);
        if (got <= 0)
            break;
        c->out.len += (size_t)got;
        c->out.ptr[c->out.len] = 0;
        moved += got;
    }
    conn__arm(c);
    return moved;
}

/* Encrypt plaintext into the output. */
static int conn__tls_write(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        ERR_clear_error();
        int r = SSL_write(c->ssl, p, chunk);
        if (r <= 0) {
            char text[160];
            ERR_error_string_n(ERR_get_error(), text, sizeof text);
            ERR_clear_error();
            conn__set_tls_err(c, text);
            return UV_EPROTO;
        }
        p += r;
        n -= (size_t)r;
        long rc = conn__tls_out(c);
        if (rc < 0)
            return (int)rc;
    }
    return 0;
}

int conn_write(struct conn *c, const void *p, size_t n)
{
    if (c->closing)
        return UV_EPIPE;
    if (n == 0)
        return 0;
    int rc;
    if (c->ssl && c->tls_failed)
        return UV_EPROTO;
    if (c->ssl && !c->tls_done)
        rc = buf_append(&c->early, p, n); /* never fails (xalloc) */
    else if (c->ssl)
        rc = conn__tls_write(c, p, n);
    else
        rc = buf_append(&c->out, p, n);
    conn__arm(c);
    return rc;
}

/* ---- input ------------------------------------------------------------ */

static void conn__alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    (void)suggested;
    b->base = conn__rbuf;
    b->len = sizeof conn__rbuf;
}

static void conn__read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

/* The socket is read when the caller wants data, or while a handshake needs
 * the peer's flights whatever the caller wants. */
static int conn__sync_reading(struct conn *c)
{
    bool handshaking = c->ssl && !c->tls_done && !c->tls_failed;
    bool want = !c->closing && !c->sock_eof && !c->eof && !c->tls_failed &&
                (c->reading || handshaking);
    if (want && !c->sock_reading) {
        int rc = uv_read_start((uv_stream_t *)&c->tcp, conn__alloc_cb, conn__read_cb);
        if (rc != 0)
            return rc;
        c->sock_reading = 1;
    } else if (!want && c->sock_reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->sock_reading = 0;
    }
    return 0;
}

static void conn__kick_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (!c->closing && c->ssl && !c->tls_failed && (!c->tls_done || c->reading))
        conn__tls_pump(c);
}

static int conn__timer(struct conn *c)
{
    if (c->timer)
        return 0;
    c->timer = xmalloc(sizeof *c->timer);
    uv_timer_init(c->loop, c->timer);
    c->timer->data = c;
    c->nhandles++;
    return 0;
}

int conn_read_start(struct conn *c)
{
    if (c->closing)
        return UV_EINVAL;
    c->reading = 1;
    int rc = conn__sync_reading(c);
    if (rc != 0) {
        c->reading = 0;
        return rc;
    }
    /* Plaintext already decrypted (or ciphertext already received) while
     * reading was stopped will not be announced by the socket again:
     * deliver it from the loop, not from inside this call. */
    if (c->ssl && c->tls_done && !c->eof &&
        (SSL_has_pending(c->ssl) || BIO_ctrl_pending(c->rbio) > 0 || c->sock_eof)) {
        if ((rc = conn__timer(c)) != 0)
            return rc;
        uv_timer_start(c->timer, conn__kick_cb, 0, 0);
    }
    return 0;
}

void conn_read_stop(struct conn *c)
{
    c->reading = 0;
    conn__sync_reading(c);
}

bool conn_reading(const struct conn *c)
{
    return c->reading;
}

/* The text a TLS failure is reported with: OpenSSL's first reason, plus the
 * certificate verification result when that is what failed. */
static void conn__tls_fail_text(struct conn *c, int sslerr)
{
    char text[256];
    unsigned long e = ERR_get_error();
    if (e != 0) {
        const char *reason = ERR_reason_error_string(e);
        if (reason)
            snprintf(text, sizeof text, "%s", reason);
        else
            ERR_error_string_n(e, text, sizeof text);
    } else if (sslerr == SSL_ERROR_SYSCALL) {
        snprintf(text, sizeof text, "unexpected end of TLS stream");
    } else {
        snprintf(text, sizeof text, "TLS error %d", sslerr);
    }
    ERR_clear_error();
    long vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK) {
        size_t l = strlen(text);
        snprintf(text + l, sizeof text - l, ": %s", X509_verify_cert_error_string(vr));
    }
    conn__set_tls_err(c, text);
}

static void conn__tls_handshake(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    int sslerr = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
    if (sslerr != SSL_ERROR_NONE && sslerr != SSL_ERROR_WANT_READ && sslerr != SSL_ERROR_WANT_WRITE)
        conn__tls_fail_text(c, sslerr);
    conn__tls_out(c); /* the last flight, or the alert */
    if (sslerr == SSL_ERROR_WANT_READ || sslerr == SSL_ERROR_WANT_WRITE) {
        conn__flush(c);
        return;
    }
    if (sslerr != SSL_ERROR_NONE) {
        c->tls_failed = 1;
        buf_free(&c->early);
        conn__flush(c);
        conn__sync_reading(c);
        conn__emit(c, CONN_EV_TLS_FAIL, UV_EPROTO);
        return;
    }
    c->tls_done = 1;
    int rc = 0;
    if (c->early.len) {
        buf_t early = c->early;
        buf_init(&c->early);
        rc = conn__tls_write(c, early.ptr, early.len);
        buf_free(&early);
    }
    int frc = conn__flush(c);
    conn__sync_reading(c);
    conn__emit(c, CONN_EV_TLS_DONE, 0);
    if (rc == 0)
        rc = frc;
    if (rc != 0)
        conn__emit_error(c, rc);
}

/* Drive TLS with whatever sits in rbio: finish the handshake, then decrypt
 * and deliver records while the caller keeps reading. */
static void conn__tls_pump(struct conn *c)
{
    if (!c->tls_done) {
        conn__tls_handshake(c);
        if (!c->tls_done || c->closing)
            return;
    }
    bool produced = false;
    while (!c->closing && c->reading && !c->eof) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, conn__rbuf, sizeof conn__rbuf);
        int sslerr = n > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, n);
        if (sslerr != SSL_ERROR_NONE && sslerr != SSL_ERROR_WANT_READ &&
            sslerr != SSL_ERROR_ZERO_RETURN)
            conn__tls_fail_text(c, sslerr);
        if (conn__tls_out(c) > 0)
            produced = true;
        if (n > 0) {
            if (c->on_read)
                c->on_read(c, conn__rbuf, (size_t)n, c->ud);
            continue;
        }
        if (sslerr == SSL_ERROR_WANT_READ) {
            /* All data before the socket's EOF is delivered: now EOF. */
            if (c->sock_eof)
                conn__report_eof(c);
            break;
        }
        if (sslerr == SSL_ERROR_ZERO_RETURN) {
            conn__report_eof(c);
            conn__sync_reading(c);
        } else {
            conn__emit_error(c, UV_EPROTO);
        }
        break;
    }
    /* Only what OpenSSL produced by itself is sent here; the caller's own
     * writes wait for its conn_flush(). */
    if (produced && !c->closing)
        conn__flush(c);
}

static void conn__read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (c->closing || nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF) {
            uv_read_stop(s);
            c->sock_reading = 0;
            conn__emit_error(c, (int)nread);
            return;
        }
        c->sock_eof = 1;
        conn__sync_reading(c);
        if (!c->ssl) {
            conn__report_eof(c);
        } else if (!c->tls_done && !c->tls_failed) {
            c->tls_failed = 1;
            conn__set_tls_err(c, "connection closed during TLS handshake");
            conn__emit(c, CONN_EV_TLS_FAIL, UV_EOF);
        } else if (c->tls_done) {
            /* Records may still wait in rbio (the caller paused reading):
             * they come first, EOF after them. */
            conn__tls_pump(c);
        }
        return;
    }
    if (!c->ssl) {
        if (c->on_read)
            c->on_read(c, b->base, (size_t)nread, c->ud);
        return;
    }
    if (c->tls_failed)
        return;
    /* A memory BIO grows as needed; it fails only on allocation. */
    if (BIO_write(c->rbio, b->base, (int)nread) != (int)nread)
        xalloc_die((size_t)nread);
    conn__tls_pump(c);
}

/* ---- TLS -------------------------------------------------------------- */

static int conn__starttls(struct conn *c, SSL_CTX *ctx, bool server, const char *sni_host,
                          bool verify)
{
    if (c->closing)
        return UV_EINVAL;
    if (c->ssl)
        return UV_EALREADY;
    SSL *ssl = SSL_new(ctx);
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());
    if (!ssl || !rbio || !wbio)
        xalloc_die(0); /* OpenSSL reports allocation failure only */
    /* An empty memory BIO must mean "no data yet", not end of stream. */
    BIO_set_mem_eof_return(rbio, -1);
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    if (server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
        unsigned char ipbuf[16];
        bool is_ip = sni_host && (inet_pton(AF_INET, sni_host, ipbuf) == 1 ||
                                  inet_pton(AF_INET6, sni_host, ipbuf) == 1);
        /* RFC 6066: SNI carries host names only, never address literals. */
        if (sni_host && !is_ip && !SSL_set_tlsext_host_name(ssl, sni_host)) {
            SSL_free(ssl);
            return UV_EINVAL;
        }
        if (verify) {
            SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
            if (sni_host) {
                int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), sni_host)
                               : SSL_set1_host(ssl, sni_host);
                if (!ok) {
                    SSL_free(ssl);
                    return UV_EINVAL;
                }
            }
        } else {
            SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
        }
    }
    c->ssl = ssl;
    c->rbio = rbio;
    c->wbio = wbio;
    /* The plaintext reply announcing TLS ("220 ready") must precede the
     * handshake on the wire. */
    int rc = conn__flush(c);
    if (rc == 0)
        rc = conn__sync_reading(c);
    if (rc == 0 && !server) {
        /* Produce the ClientHello now; nothing can fail yet but memory. */
        ERR_clear_error();
        int r = SSL_do_handshake(ssl);
        if (r != 1 && SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ) {
            conn__tls_fail_text(c, SSL_get_error(ssl, r));
            c->tls_failed = 1;
            rc = UV_EPROTO;
        } else {
            conn__tls_out(c);
            rc = conn__flush(c);
        }
    }
    return rc;
}

int conn_starttls_server(struct conn *c, SSL_CTX *ctx)
{
    return conn__starttls(c, ctx, true, NULL, false);
}

int conn_starttls_server_early(struct conn *c, SSL_CTX *ctx, const void *early, size_t n)
{
    int rc = conn__starttls(c, ctx, true, NULL, false);
    if (rc != 0 || n == 0)
        return rc;
    if (BIO_write(c->rbio, early, (int)n) != (int)n)
        xalloc_die(n);
    /* The handshake goes on from the loop, not inside this call. */
    if ((rc = conn__timer(c)) != 0)
        return rc;
    uv_timer_start(c->timer, conn__kick_cb, 0, 0);
    return 0;
}

int conn_starttls_client(struct conn *c, SSL_CTX *ctx, const char *sni_host, bool verify)
{
    return conn__starttls(c, ctx, false, sni_host, verify);
}

bool conn_tls_active(const struct conn *c)
{
    return c->ssl && c->tls_done && !c->tls_failed;
}

const char *conn_tls_version(const struct conn *c)
{
    return conn_tls_active(c) ? SSL_get_version(c->ssl) : NULL;
}

const char *conn_tls_cipher(const struct conn *c)
{
    return conn_tls_active(c) ? SSL_get_cipher_name(c->ssl) : NULL;
}

SSL *conn_tls_ssl(const struct conn *c)
{
    return conn_tls_active(c) ? c->ssl : NULL;
}

const char *conn_tls_error(const struct conn *c)
{
    return c->tls_err ? c->tls_err : "";
}

/* ---- addresses -------------------------------------------------------- */

static int conn__addr_text(const struct sockaddr_storage *ss, char *ip, size_t iplen, int *port)
{
    int rc;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        rc = uv_ip4_name(a, ip, iplen);
        if (port)
            *port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        rc = uv_ip6_name(a, ip, iplen);
        if (port)
            *port = ntohs(a->sin6_port);
    } else {
        rc = UV_EAFNOSUPPORT;
    }
    return rc;
}

int conn_peer(const struct conn *c, char *ip, size_t iplen, int *port)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rc = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
    return rc ? rc : conn__addr_text(&ss, ip, iplen, port);
}

int conn_local(const struct conn *c, char *ip, size_t iplen, int *port)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rc = uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len);
    return rc ? rc : conn__addr_text(&ss, ip, iplen, port);
}

/* ---- close ------------------------------------------------------------ */

static void conn__check_closed(uv_handle_t *h)
{
    free(h);
}

static void conn__free(struct conn *c)
{
    conn__dirty_remove(c);
    struct conn_loopq *lq = c->lq;
    if (--lq->nconns == 0) {
        uv_close((uv_handle_t *)lq->check, conn__check_closed);
        uv_close((uv_handle_t *)lq->idle, conn__check_closed);
        memset(lq, 0, sizeof *lq);
    }
    SSL_free(c->ssl); /* frees rbio and wbio */
    buf_free(&c->out);
    buf_free(&c->early);
    free(c->tls_err);
    free(c);
}

static void conn__close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (c->timer && h == (uv_handle_t *)c->timer) {
        free(c->timer);
        c->timer = NULL;
    }
    if (--c->nhandles == 0)
        conn__free(c);
}

static void conn__close_handles(struct conn *c)
{
    if (c->handles_closed)
        return;
    c->handles_closed = 1;
    uv_close((uv_handle_t *)&c->tcp, conn__close_cb);
    if (c->timer)
        uv_close((uv_handle_t *)c->timer, conn__close_cb);
}

static void conn__shutdown_cb(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    (void)status;
    free(req);
    conn__close_handles(c);
}

static void conn__deadline_cb(uv_timer_t *t)
{
    conn__close_handles(t->data);
}

void conn_close(struct conn *c, bool graceful)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    conn__dirty_remove(c);
    c->reading = 0;
    conn__sync_reading(c);
    if (c->timer)
        uv_timer_stop(c->timer);
    buf_free(&c->early); /* plaintext that never got its handshake */
    if (graceful && !c->connecting && uv_is_writable((uv_stream_t *)&c->tcp)) {
        if (c->ssl && c->tls_done && !c->tls_failed) {
            ERR_clear_error();
            SSL_shutdown(c->ssl); /* queues close_notify */
            ERR_clear_error();
            conn__tls_out(c);
        }
        conn__flush(c);
        if (!c->ssl && conn_pending(c) == 0) {
            /* Everything is in the kernel's send buffer: close() sends it,
             * then FIN, as shutdown() would. Waiting for libuv to shut the
             * stream down costs a poll registration, a loop turn, a timer
             * and a system call per connection, and gains nothing. */
            conn__close_handles(c);
            return;
        }
        /* uv_shutdown completes after every queued write: then FIN. */
        uv_shutdown_t *req = xmalloc(sizeof *req);
        if (conn__timer(c) == 0) {
            req->data = c;
            if (uv_shutdown(req, (uv_stream_t *)&c->tcp, conn__shutdown_cb) == 0) {
                uv_timer_start(c->timer, conn__deadline_cb, CONN_CLOSE_DEADLINE_MS, 0);
                return;
            }
        }
        free(req);
    }
    conn__close_handles(c);
}

/* ---- contexts --------------------------------------------------------- */

/* OpenSSL's reason for the oldest queued error, then clear the queue. */
void conn_tls_err(char *err, size_t errlen, const char *what, const char *arg)
{
    unsigned long e = ERR_get_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    char code[128];
    if (!reason) {
        if (e) {
            ERR_error_string_n(e, code, sizeof code);
            reason = code;
        } else {
            reason = "unknown error";
        }
    }
    if (err && errlen)
        snprintf(err, errlen, "%s%s%s: %s", what, arg ? " " : "", arg ? arg : "", reason);
    ERR_clear_error();
}

static SSL_CTX *tls__ctx_common(const SSL_METHOD *method, char *err, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx) {
        conn_tls_err(err, errlen, "cannot create TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Idle connections should not keep 2 x 17 KiB of record buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

int conn_tls_use_cert(SSL_CTX *ctx, const char *cert_file, const char *key_file, char *err,
                      size_t errlen)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        conn_tls_err(err, errlen, "cannot load certificate chain", cert_file);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        conn_tls_err(err, errlen, "cannot load private key", key_file);
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        conn_tls_err(err, errlen, "private key does not match certificate", key_file);
        return -1;
    }
    return 0;
}

SSL_CTX *conn_tls_server_ctx_new(const char *cert_file, const char *key_file, char *err,
                                 size_t errlen)
{
    SSL_CTX *ctx = tls__ctx_common(TLS_server_method(), err, errlen);
    if (ctx && conn_tls_use_cert(ctx, cert_file, key_file, err, errlen) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *conn_tls_client_ctx_new(const char *ca_file, bool verify, char *err, size_t errlen)
{
    SSL_CTX *ctx = tls__ctx_common(TLS_client_method(), err, errlen);
    if (!ctx)
        return NULL;
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        conn_tls_err(err, errlen, "cannot load CA certificates",
                     ca_file ? ca_file : "(system default)");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    return ctx;
}
