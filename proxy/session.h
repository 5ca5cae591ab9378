/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * session: one SMTP client connection, as an explicit state machine.
 *
 * Each command is: check (sequence, syntax, limits) -> plugin phase ->
 * proceed (usually: relay to the upstream and relay its reply). The session
 * never advances while a phase or an upstream reply is outstanding; replies
 * go out in command order (pipelining) through a FIFO of reply slots.
 *
 * Ownership: the server owns the list of sessions; a session owns its conn,
 * its upstream connection, its message buffer and its transaction. It is
 * freed from the loop (after its handles are closed), never inside its own
 * call stack.
 */
#ifndef SLUICE_SESSION_H
#define SLUICE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "cfg.h"
#include "smtp_cmd.h"

struct server;
struct sess;

/* A recipient as accepted by the upstream. */
struct sess_rcpt {
    char *addr;    /* owned; mailbox without <> */
    char *dsn;     /* owned; " NOTIFY=... ORCPT=..." as given, or "" */
    bool removed;  /* removed by a plugin; not sent again on replay */
};

/* Read-only facts of a session, for plugins (through the host). */
struct sess_info {
    char sid[24];
    char client_addr[64];
    int client_port;
    char client_name[256];  /* verified reverse name, "" if unknown */
    char helo[256];
    bool esmtp;
    char tls_version[32];   /* "" when no TLS */
    char tls_cipher[64];
    char auth_user[256];    /* "" (sluice does not offer AUTH itself) */
    char local_addr[64];
    int local_port;
};

/* The transaction in progress. */
struct sess_tx {
    bool active;            /* MAIL sent */
    bool mail_ok;           /* upstream accepted MAIL */
    char sender[CMD_ADDR_MAX + 1];
    char mail_params[600];  /* params we may forward (" SIZE=.. BODY=.. RET=.. ENVID=..") */
    int body;               /* enum cmd_body of MAIL */
    bool smtputf8;
    uint64_t declared_size;
    struct sess_rcpt *rcpts;
    size_t nrcpts, cap_rcpts;
    unsigned rcpts_sent;    /* RCPTs sent to upstream (limit accounting) */
    uint64_t started_ns;
};

/* Accept a connection from `listener`; the session starts itself. */
int sess_accept(struct server *srv, uv_stream_t *listener);
/* Begin a graceful shutdown of this session (SIGTERM): finish the
 * transaction in flight, then close with 421. */
void sess_shutdown(struct sess *s);
/* Close now, without waiting (exit after the shutdown deadline). */
void sess_abort(struct sess *s);
/* Next session in the server list (for shutdown). */
struct sess *sess_next(struct sess *s);
const struct sess_info *sess_info(const struct sess *s);
const struct sess_tx *sess_tx(const struct sess *s);

#endif
