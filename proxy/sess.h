/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sess: one SMTP client connection, as an explicit state machine.
 *
 * Each command is: check (sequence, syntax, limits) -> plugin phase ->
 * proceed (usually: relay to the upstream and relay its reply). Which verb
 * is legal in which state, and how it behaves under pipelining, is one
 * const table (sess_cmd.c); the state changes in one function
 * (sess_set_state). Replies go out in command order through a FIFO of
 * reply slots (sess_reply.c); the end of data (verdicts, envelope changes,
 * forwarding, quarantine) is sess_eom.c.
 *
 * Ownership: the server owns the list of sessions; a session owns its
 * conn, its upstream connection, its plugin-host connection, its message
 * buffer and its transaction (struct tx). Every completion (plugin phase,
 * upstream reply, name lookup, quarantine write) reaches it from the event
 * loop; teardown is marked (state CLOSING) and finished from the loop, so
 * a session is never freed inside its own call stack.
 * Threads: loop thread only.
 */
#ifndef SLUICE_SESS_H
#define SLUICE_SESS_H

#include <uv.h>

struct server;
struct server_listener;
struct sess;

/* Accept a connection from `listener`; the session starts itself. */
int sess_accept(struct server_listener *sl, uv_stream_t *sock);
/* Begin a graceful shutdown of this session (SIGTERM): finish the
 * transaction in flight, then close with 421. */
void sess_shutdown(struct sess *s);
/* Close now, without waiting (exit after the shutdown deadline). */
void sess_abort(struct sess *s);

#endif
