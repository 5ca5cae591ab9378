/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * up: the SMTP client side of the proxy. One `struct up` is one
 * connection to the upstream MTA, owned by one client session and reused for
 * all of that session's transactions; between sessions it may wait in the
 * idle pool (uppool.h) and pass to the next session (up_detach, up_rebind).
 *
 * Life: up_open() connects (trying the configured servers in order), reads
 * the greeting, sends EHLO, does STARTTLS when offered and configured (then
 * EHLO again), and reports readiness once. Commands queued with up_command()
 * are sent pipelined when the upstream offers PIPELINING, one at a time
 * otherwise; replies come back in order through each command's callback.
 * up_data() sends DATA, waits for 354, streams the message (dot-stuffed,
 * CRLF) in large chunks with backpressure and reports the final reply; to
 * an upstream that offers CHUNKING it sends "BDAT n LAST" and the bytes
 * unchanged instead.
 *
 * Any reply out of protocol (garbage, unexpected code, unsolicited), a
 * timeout or a lost connection fails the connection: every queued callback
 * is called once with `err` set, and the session synthesises its own 4xx.
 * A 421 reply is relayed to its command's callback, then the connection
 * counts as lost for everything queued behind it (RFC 5321 §3.8).
 *
 * Callbacks: every callback given to a function here is called exactly
 * once, unless up_free() comes first. Callbacks are never called from
 * inside the call that queued them, and never after up_free(): results
 * known at once (a failed or closed upstream, a synthetic identify reply,
 * up_open() on an open upstream) are delivered from the event loop, like
 * replies. A callback may call any function here on its own up, up_free()
 * included (the memory then goes when the callback returns).
 *
 * Ownership: the caller owns the struct up and ends it with up_free(); the
 * up holds a reference on the cfg and owns everything it queued.
 *
 * Threads: loop thread only (the loop given to up_new(), which must be the
 * one defer_init() was given).
 */
#ifndef SLUICE_UP_H
#define SLUICE_UP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <uv.h>

#include "cfg.h"
#include "esmtp.h"
#include "reply.h"

struct up;

enum up_err {
    UP_OK = 0,
    UP_ERR_CONNECT,  /* no server reachable / greeting refused: 451 4.4.1 */
    UP_ERR_TIMEOUT,  /* no reply in time: 451 4.4.2 */
    UP_ERR_LOST,     /* connection closed or reset: 451 4.4.2 */
    UP_ERR_PROTOCOL, /* garbage or unexpected reply: 451 4.4.0 (never relayed) */
    UP_ERR_TLS,      /* TLS required but failed / not offered: 451 4.7.5 */
    UP_ERR_LOCAL,    /* our own resource trouble: 451 4.3.0 */
};

struct up_result {
    enum up_err err;
    const struct smtp_reply *reply; /* when err == UP_OK; valid during the callback only */
    const char *why;                /* short text for logs when err != UP_OK */
};

typedef void (*up_cb)(void *ud, const struct up_result *r);

/* The upstream's capabilities (from its last EHLO reply; esmtp.h parses). */
enum up_cap {
    UP_CAP_PIPELINING = ESMTP_PIPELINING,
    UP_CAP_8BITMIME = ESMTP_8BITMIME,
    UP_CAP_SIZE = ESMTP_SIZE,
    UP_CAP_DSN = ESMTP_DSN,
    UP_CAP_SMTPUTF8 = ESMTP_SMTPUTF8,
    UP_CAP_ENHANCED = ESMTP_ENHANCED,
    UP_CAP_STARTTLS = ESMTP_STARTTLS,
    UP_CAP_XCLIENT = ESMTP_XCLIENT,
    UP_CAP_XFORWARD = ESMTP_XFORWARD,
    UP_CAP_CHUNKING = ESMTP_CHUNKING,
    UP_CAP_BINARYMIME = ESMTP_BINARYMIME,
};

/* What the upstream should be told about the real client (XCLIENT/XFORWARD). */
struct up_client_info {
    char addr[64]; /* "192.0.2.1" / "2001:db8::1" */
    int port;
    char name[256]; /* reverse name or "" (sent as [UNAVAILABLE]) */
    char helo[256]; /* "" until known */
    bool esmtp;
    bool tls;        /* client used STARTTLS (PROTO stays SMTP/ESMTP) */
    char login[256]; /* SMTP AUTH login name, "" when none */
};

/* Never NULL (allocation failure is fatal). `log_sid` is copied. */
struct up *up_new(uv_loop_t *loop, struct cfg *cfg, const char *log_sid);
/* Connect and handshake; `cb` is called exactly once (reply = the last EHLO
 * reply on success; NULL when the up was already open). One pending open at
 * a time. */
void up_open(struct up *u, up_cb cb, void *ud);
/* Open: the handshake is done and the connection alive (also while an
 * XCLIENT or a message is under way). */
bool up_ready(const struct up *u);
/* Failed: every later call answers with an error (from the loop). */
bool up_failed(const struct up *u);
unsigned up_caps(const struct up *u);
/* The capabilities of sluice's own EHLO on this connection: what the MTA
 * offers sluice, not what it offered the last client told by XCLIENT
 * (Postfix may differ per client, smtpd_discard_ehlo_keyword_address_maps). */
unsigned up_own_caps(const struct up *u);
const char *up_server(const struct up *u); /* "127.0.0.1:25" of the server in use */
const char *up_tls_version(const struct up *u);
/* SIZE limit the upstream announced, 0 if none. */
unsigned long long up_size_limit(const struct up *u);

/* Tell the upstream who the client is: XCLIENT (once per session, then EHLO
 * again, transparently) or XFORWARD (before each transaction). `cb` gets the
 * result (an XCLIENT policy refusal is a reply, relayed by the session).
 * With neither extension (or both disabled) cb gets a synthetic 250 (from
 * the loop, like any result). One pending identify at a time; call it once
 * the open succeeded. */
/* Would up_identify() send anything? (When not, the caller may skip it
 * and save the loop turn its synthetic answer takes.) */
bool up_identify_needed(const struct up *u, const struct up_client_info *ci);
/* This connection told the MTA another HELO or login with XCLIENT: the
 * client now needs a new connection (up_identify() would fail). */
bool up_identity_stale(const struct up *u, const struct up_client_info *ci);
void up_identify(struct up *u, const struct up_client_info *ci, up_cb cb, void *ud);
/* XFORWARD with PIPELINING has nothing to wait for: its lines can go out
 * in one group with the caller's next command, whose reply decides (a
 * refused XFORWARD is logged here). up_identify_rides_next says whether
 * that is the case; up_identify_with_next then queues them (true), else
 * queues nothing (false: up_identify() is needed, or nothing is). Call it
 * right before that command, so that lines never wait behind a command the
 * caller does not send; it saves the loop turn up_identify()'s answer
 * takes, per transaction. Not while an up_identify() is pending. */
bool up_identify_rides_next(const struct up *u, const struct up_client_info *ci);
bool up_identify_with_next(struct up *u, const struct up_client_info *ci);
/* After a RSET of the caller's (an envelope replayed): XFORWARD is per
 * transaction and the RSET cleared it, so its lines are queued again, to
 * go out with the next command (the replayed MAIL). Nothing to do for
 * XCLIENT (it outlives RSET) or without either. */
void up_retell(struct up *u, const struct up_client_info *ci);

/* Queue one command line (without CRLF). */
void up_command(struct up *u, const char *line, up_cb cb, void *ud);
/* RSET for sluice's own sake (the idle pool): its reply is not counted
 * among the replies to clients' commands. */
void up_reset(struct up *u, up_cb cb, void *ud);

/* Send DATA and the message given as segments of canonical bytes (CRLF
 * lines, not dot-stuffed). The segments must stay valid until cb. cb gets
 * the DATA refusal (4xx/5xx to DATA) or the final reply after the dot.
 * When the upstream offers CHUNKING the message goes as one "BDAT n LAST"
 * instead, bytes unchanged, and cb gets the reply to it. */
void up_data(struct up *u, const struct iovec *segs, size_t nsegs, up_cb cb, void *ud);
/* Bytes written to the upstream in the last up_data (wire bytes). */
unsigned long long up_data_bytes(const struct up *u);
/* The last up_data() went as BDAT. */
bool up_data_chunked(const struct up *u);

/* Send QUIT (if usable) and close; no callback is called after this. */
void up_free(struct up *u);

/* Reuse across client sessions (uppool.h). up_detach(): the owner lets go
 * of a connection that can serve someone else: open, no message or
 * handshake under way, no XCLIENT ever sent (the MTA then holds the
 * connection as that client's: see up_identity_stale), no error reply
 * since the last delivery (the MTA's error limits count per connection).
 * Commands still queued are sent and answered to nobody; no callback of
 * the old owner is called after this. false (and nothing changed) when
 * the connection cannot be handed over: up_free() it. up_park(): idle in
 * a pool, so that the MTA ending it is no error. up_rebind(): a new owner
 * (its XFORWARD, when used, goes before each of its transactions). */
bool up_detach(struct up *u);
/* Nothing is in flight or queued and the MTA's last reply left no
 * transaction open (a positive final reply to a message, a 250 to RSET,
 * the handshake): a detached connection can be parked without an RSET. */
bool up_settled(const struct up *u);
void up_park(struct up *u, bool parked);
void up_rebind(struct up *u, const char *log_sid);
uint64_t up_age_ms(const struct up *u); /* since up_new() */
const struct cfg *up_cfg(const struct up *u);

#endif
