/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dvauth_client: an asynchronous client of Dovecot's auth-client socket on
 * the libuv loop, for SMTP AUTH. One struct dvauth_client is one Dovecot
 * (a unix socket path, or a numeric "host:port" / "[v6]:port" for an
 * inet_listener); it keeps one connection, does the handshake once per
 * connection, and multiplexes any number of requests over it by id. The
 * codec is dvauth.h.
 *
 * What is sent: always one PLAIN request with the initial response. The
 * SMTP side collects the whole credentials first (the PLAIN response, or
 * LOGIN's user name and password, sasl.h) and hands them here; Dovecot's
 * PLAIN then checks the password against its passdb. So no challenge round
 * (CONT) is relayed between the SMTP client and Dovecot, the request is
 * one line and one answer, and the SMTP session never waits on Dovecot in
 * the middle of a SASL exchange. The cost: mechanisms with real challenges
 * (SCRAM, ...) are not possible this way; sluice offers PLAIN and LOGIN
 * only, both of which carry the password itself.
 *
 * Connection life: connected lazily by the first request; kept open while
 * it works; any failure (connect refused, lost, garbage, a handshake
 * without PLAIN, a silent server) closes it and fails the requests that
 * were on it with TEMPFAIL; the next request connects again. Requests
 * made while it connects wait for the handshake and are then sent in order.
 *
 * Timeouts: every request has a deadline timeout_ms after it was made; when
 * it passes the request ends with TEMPFAIL (a late answer is dropped). A
 * request that times out while the connection is still being made, or on
 * a connection that said nothing since the request was sent, takes the
 * connection down with it (it is not working).
 *
 * Callbacks: exactly once per request, unless dvauth_client_cancel() or
 * dvauth_client_free() comes first (then never). Always from the loop
 * (through defer.h), never inside the call that made the request, not even
 * when the answer is known at once. A callback may call anything here,
 * dvauth_client_free() included.
 *
 * Timeout and Dovecot's own delays: Dovecot holds a failure back
 * (auth_failure_delay, 2 s by default, served in 0.5 s ticks) and delays
 * every request from a remote IP that failed before (auth penalty, up to
 * 15 s). A timeout shorter than that turns a brute-forcer's FAIL into
 * TEMPFAIL and, on an otherwise idle connection, makes it look dead; give
 * 20 s or more.
 *
 * Dovecot's side: the client sends its process id as CPID. Dovecot 2.3
 * accepts several connections with one CPID (tested), but the CPID is meant
 * to name one client, so a process should keep one dvauth_client per
 * Dovecot and share it between listeners.
 *
 * Ownership: the caller owns the client and frees it with
 * dvauth_client_free(); the client owns every request until its callback
 * has returned or it is cancelled. Passwords are wiped from the client's
 * memory once written to the socket (or when the request ends unsent).
 *
 * Threads: loop thread only (the loop given to dvauth_client_new(), which
 * must be the one defer_init() was given).
 */
#ifndef SLUICE_DVAUTH_CLIENT_H
#define SLUICE_DVAUTH_CLIENT_H

#include <uv.h>

#include "dvauth.h"

struct dvauth_client;
struct dvauth_client_req;

enum dvauth_client_status {
    DVAUTH_CLIENT_OK = 0,   /* authenticated: 235 2.7.0 */
    DVAUTH_CLIENT_FAIL,     /* credentials refused: 535 5.7.8 */
    DVAUTH_CLIENT_TEMPFAIL, /* Dovecot unreachable, timeout, temp_fail: 454 4.7.0 */
};

struct dvauth_client_result {
    enum dvauth_client_status status;
    /* OK: the canonical user name Dovecot returned (user=), or NULL when it
     * sent none (then the SMTP side keeps the authcid it was given). FAIL:
     * user= if Dovecot sent one, else NULL. */
    const char *user;
    /* FAIL: Dovecot's reason= (meant for the SMTP client) or NULL.
     * TEMPFAIL: why, for logs ("timeout", "connect: ...", ...). */
    const char *reason;
};

/* r and its strings are valid during the call only. */
typedef void (*dvauth_client_cb)(void *ud, const struct dvauth_client_result *r);

/* A client of the Dovecot auth socket at `addr`: a path (starting with '/')
 * or a numeric "127.0.0.1:12345" / "[::1]:12345". timeout_ms >= 1. NULL
 * when addr is unusable (nothing is connected yet either way). */
struct dvauth_client *dvauth_client_new(uv_loop_t *loop, const char *addr, unsigned timeout_ms);

/* Start one authentication (see struct dvauth_req in dvauth.h; the strings
 * are copied, nothing is kept after the call). The handle identifies the
 * request until its callback returns or it is cancelled. NULL (and no
 * callback) when the request is unusable (see dvauth_build_auth()). */
struct dvauth_client_req *dvauth_client_auth(struct dvauth_client *cl, const struct dvauth_req *req,
                                             dvauth_client_cb cb, void *ud);

/* The SMTP session went away: no callback for r after this; r is freed.
 * A request already sent stays on Dovecot's side until it answers (the
 * answer is dropped). Calling it from r's own callback is allowed and does
 * nothing; after r's callback has returned, r is gone: do not call it. */
void dvauth_client_cancel(struct dvauth_client_req *r);

/* Close the connection and drop every request without calling back; every
 * handle of this client is gone with it (do not cancel them afterwards).
 * Allowed from inside a callback. */
void dvauth_client_free(struct dvauth_client *cl);

#endif
