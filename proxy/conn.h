/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * conn: one TCP stream on the loop, with optional TLS (OpenSSL 3 over memory
 * BIOs). Both sides of the proxy use it: the client session (TLS server role)
 * and the upstream client (TLS client role). Callers see plaintext only.
 *
 * Ownership: the conn owns its uv_tcp_t, its SSL and its output queue. After
 * conn_close() no callback is called again and the memory is freed after
 * libuv's close callback. Callbacks may call conn_close() on their own conn.
 *
 * Output: conn_write() copies into the pending output (coalescing small
 * writes, e.g. pipelined replies); conn_flush() hands it to the kernel.
 * conn_pending() is what is queued and not yet written; CONN_EV_DRAINED fires
 * when it falls to zero after having been non-zero, which is how callers
 * apply backpressure (stop reading a client that does not read its replies;
 * feed a large message in chunks). Output OpenSSL produces by itself
 * (handshake flights, tickets, alerts) counts too, so DRAINED may also fire
 * after a handshake.
 *
 * Threads: all conns must live on one loop thread (they share one static
 * 64 KiB read buffer, so an idle conn costs only its own ~400 bytes).
 */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>
#include <uv.h>

struct conn;

enum conn_event {
    CONN_EV_EOF = 1,      /* peer closed (or TLS close_notify) */
    CONN_EV_ERROR,        /* read/write error; err = libuv error code */
    CONN_EV_TLS_DONE,     /* handshake complete */
    CONN_EV_TLS_FAIL,     /* handshake failed; err text via conn_tls_error() */
    CONN_EV_DRAINED,      /* pending output reached 0 */
    CONN_EV_CONNECTED,    /* conn_connect() finished OK */
    CONN_EV_CONNECT_FAIL, /* conn_connect() failed; err = libuv error */
};

typedef void (*conn_read_fn)(struct conn *c, const char *data, size_t len, void *ud);
typedef void (*conn_event_fn)(struct conn *c, enum conn_event ev, int err, void *ud);

struct conn *conn_new(uv_loop_t *loop, conn_read_fn on_read, conn_event_fn on_event, void *ud);
/* The TCP handle, to pass to uv_accept(). */
uv_tcp_t *conn_tcp(struct conn *c);
/* Start an outgoing connection; reports CONN_EV_CONNECTED / CONN_EV_CONNECT_FAIL.
 * `bind_addr` (nullable) is the local address to bind first. Call
 * conn_read_start() after CONNECTED; output flushed before it is sent then. */
int conn_connect(struct conn *c, const struct sockaddr *addr, const struct sockaddr *bind_addr);
void conn_set_nodelay(struct conn *c);

int conn_read_start(struct conn *c);
void conn_read_stop(struct conn *c);
bool conn_reading(const struct conn *c);

/* Queue plaintext (copied). 0 or negative error. */
int conn_write(struct conn *c, const void *p, size_t n);
/* Send what is queued. */
int conn_flush(struct conn *c);
size_t conn_pending(const struct conn *c);

/*
 * Start TLS. Any plaintext input that already arrived and was not yet given
 * to on_read is discarded (CVE-2011-0411: no command/response injection
 * across STARTTLS); callers must also drop whatever they buffered. The
 * handshake result comes as CONN_EV_TLS_DONE / CONN_EV_TLS_FAIL.
 * Server: ctx from conn_tls_server_ctx_new(). Client: sni_host (nullable) is sent
 * as SNI and, when verify is set, checked against the certificate.
 *
 * on_read gets every chunk whole, so when the caller starts TLS while it is
 * still processing a chunk (the STARTTLS line or the 220 reply), the rest
 * of that chunk is the caller's to drop: conn holds no plaintext back.
 * Output already queued (the "220 Ready" reply) is flushed first, in clear.
 * conn_write() before the handshake completes is queued and encrypted
 * after it. After CONN_EV_TLS_FAIL the conn reads no more: close it.
 */
int conn_starttls_server(struct conn *c, SSL_CTX *ctx);
/* TLS from the start of a connection whose first bytes were already read
 * for something else (a PROXY protocol header): `early` (copied, n bytes)
 * is the start of the client's handshake. */
int conn_starttls_server_early(struct conn *c, SSL_CTX *ctx, const void *early, size_t n);
int conn_starttls_client(struct conn *c, SSL_CTX *ctx, const char *sni_host, bool verify);
bool conn_tls_active(const struct conn *c);
const char *conn_tls_version(const struct conn *c); /* "TLSv1.3" or NULL */
const char *conn_tls_cipher(const struct conn *c);
const char *conn_tls_error(const struct conn *c);    /* last TLS error text or "" */
/* The SSL of an active TLS session (for what the handshake negotiated),
 * else NULL. Owned by the conn: read it, do not keep it. */
SSL *conn_tls_ssl(const struct conn *c);

/* Peer and local addresses as text ("127.0.0.1", port) ; 0 or negative. */
int conn_peer(const struct conn *c, char *ip, size_t iplen, int *port);
int conn_local(const struct conn *c, char *ip, size_t iplen, int *port);

/*
 * Close. graceful: send pending output first (and TLS close_notify), with a
 * short deadline; otherwise drop it. No callbacks after this call. Memory is
 * freed asynchronously.
 */
void conn_close(struct conn *c, bool graceful);

/* TLS contexts (OpenSSL 3). On error NULL and a message in err. The
 * daemon's listeners build theirs with their policy in tlssrv.c; this
 * plain one serves the tests. */
SSL_CTX *conn_tls_server_ctx_new(const char *cert_file, const char *key_file, char *err,
                                 size_t errlen);
/* Certificate chain and key from PEM files into ctx, checked to match:
 * 0, or -1 with a message in err. */
int conn_tls_use_cert(SSL_CTX *ctx, const char *cert_file, const char *key_file, char *err,
                      size_t errlen);
/* err gets "what arg: OpenSSL's reason" and OpenSSL's error queue is
 * cleared. */
void conn_tls_err(char *err, size_t errlen, const char *what, const char *arg);
SSL_CTX *conn_tls_client_ctx_new(const char *ca_file, bool verify, char *err, size_t errlen);

#endif
