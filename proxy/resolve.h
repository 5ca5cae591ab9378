/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * resolve: the client's name (reverse lookup, then forward confirmation) on
 * sluice's own small set of resolver threads. libuv's thread pool runs the
 * blocking plugin hooks; a lookup queued behind a slow virus scan would hold
 * a new client's greeting, so lookups never go there.
 *
 * Ownership: a request belongs to the module from resolve_client() until its
 * callback, which runs on the loop thread exactly once, unless
 * resolve_cancel() was called first (then never).
 */
#ifndef SLUICE_RESOLVE_H
#define SLUICE_RESOLVE_H

#include <sys/socket.h>

#include <uv.h>

struct resolve_req;

/* name: the forward-confirmed name, or NULL (no name, not confirmed, error). */
typedef void (*resolve_cb)(void *ud, const char *name);

/* Start the resolver threads (once, on the loop thread). 0 or -errno. */
int resolve_init(uv_loop_t *loop, unsigned nthreads);
/* Stop the threads; pending requests are dropped without callbacks. */
void resolve_shutdown(void);

struct resolve_req *resolve_client(const struct sockaddr *addr, resolve_cb cb, void *ud);
void resolve_cancel(struct resolve_req *r);

#endif
