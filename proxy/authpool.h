/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * authpool: the Dovecot auth clients of the running daemon, one per
 * auth_socket address, shared by every listener that names it
 * (dvauth_client.h: one client per Dovecot). The server makes the pool at
 * start and syncs it with each configuration it takes (start, reload);
 * sessions ask it for one authentication at a time.
 *
 * Reload: an address the new configuration no longer names is retired,
 * not freed: a session that started under the old configuration may still
 * wait for an answer from it (or start one: sessions keep their cfg). A
 * retired client is freed once no request is pending on it; asked again,
 * it is made again. So a changed auth_socket takes effect for every
 * session that starts after the reload, and no callback is ever lost.
 *
 * Callbacks: as dvauth_client.h (exactly once unless cancelled, always
 * from the loop, never inside authpool_auth()).
 *
 * Ownership: the server owns the pool; the pool owns its clients and each
 * request until its callback returned or it was cancelled.
 * Threads: loop thread only.
 */
#ifndef SLUICE_AUTHPOOL_H
#define SLUICE_AUTHPOOL_H

#include <uv.h>

#include "cfg.h"
#include "dvauth_client.h"

/* A request waits this long for Dovecot: above Dovecot's failure delay
 * (2 s) plus its auth penalty for a client IP that failed before (up to
 * 15 s), so a slow FAIL is not taken for a dead Dovecot. */
#define AUTHPOOL_TIMEOUT_MS 30000u

struct authpool;
struct authpool_req;

struct authpool *authpool_new(uv_loop_t *loop);
/* Clients for every auth_socket of c's listeners; the others retire.
 * 0, or -1 when an address is unusable (logged; cfg checks make that a
 * bug). */
int authpool_sync(struct authpool *p, const struct cfg *c);
/* One authentication at Dovecot `addr` (made if the pool has no client for
 * it). NULL, and no callback, when the request is unusable. */
struct authpool_req *authpool_auth(struct authpool *p, const char *addr,
                                   const struct dvauth_req *req, dvauth_client_cb cb, void *ud);
/* No callback for r after this (not from inside r's own callback). */
void authpool_cancel(struct authpool_req *r);
/* Every client closed, every request dropped without a callback; the
 * loop must run afterwards for the handles to close. */
void authpool_free(struct authpool *p);

#endif
