/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * milter_sess: one SMTP session's conversation with one milter, on the
 * host's libuv loop (no thread). The plugin (milter_plugin.c) asks for a
 * stage (connect, helo, mail, rcpt, data, abort, quit) with msess_run();
 * this module opens the connection when it has none (connect, option
 * negotiation, then the stages the milter missed: connect, helo, mail and
 * the accepted recipients, so a reconnect mid-session picks up where the
 * broken connection stopped), sends the stage's commands in the order the
 * protocol wants (macros first; no waiting where the milter asked not to be
 * answered), and calls the done callback once per msess_run() that
 * returned 1, never inside it, with the milter's final reply or a failure.
 *
 * Modifications (and quarantine) are only legal while the end of message
 * waits for its answer; each is handed to the mod callback as it arrives
 * (pointers valid during the call), before done. A reply the stage does
 * not allow, an action the milter did not negotiate, a timeout, a broken
 * or refused connection: the connection is closed and done reports
 * MSESS_FAILED with a reason; the next msess_run() reconnects.
 *
 * Ownership: the session copies what it keeps of the facts it is given
 * (client, helo, envelope); message bytes are read from the plugin's
 * callbacks while the data stage runs and never copied whole.
 */
#ifndef SLUICE_MILTER_SESS_H
#define SLUICE_MILTER_SESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <uv.h>

#include "milter_codec.h"

/* What an instance's sessions share (read-only once configured). */
struct msess_cfg {
    int family; /* AF_UNIX, AF_INET or AF_INET6 */
    struct sockaddr_storage addr;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    unsigned connect_ms, command_ms, eom_ms;
    uint32_t actions; /* MILTER_ACT_* offered */
    uint32_t steps;   /* MILTER_STEP_* offered */
    /* Macro names sent per stage, space separated ("" none); a milter's
     * own list from option negotiation replies replaces them. */
    char *macros[MILTER_STAGES];
};

enum msess_stage {
    MSESS_CONNECT,
    MSESS_HELO,
    MSESS_MAIL,
    MSESS_RCPT,
    MSESS_DATA, /* data, headers, end of headers, body, end of message */
};

enum msess_outcome {
    MSESS_REPLY,  /* the milter answered: reply.type says how */
    MSESS_FAILED, /* no usable answer: why says what went wrong */
};

struct msess_result {
    enum msess_outcome outcome;
    enum milter_reply_type type;         /* CONTINUE when the stage sent nothing or
                                            needed no answer */
    const struct milter_replycode *code; /* REPLYCODE: the parsed reply */
    const char *why;                     /* FAILED: one line; REPLY: NULL, or a warning (a
                                            malformed reply code, answered as tempfail) */
};

/* The message and the macros, read while a stage is being sent (within the
 * hook that called msess_run, or before done: the plugin's ctx is valid
 * then). */
struct msess_source {
    /* Value of a macro ("{client_addr}", "j"), NULL when sluice has none. */
    const char *(*macro)(void *ud, const char *name);
    size_t (*header_count)(void *ud);
    /* The i-th header field: name and raw value (after the colon, folding
     * with CRLF kept); 0 or -1. */
    int (*header_at)(void *ud, size_t i, const char **name, size_t *name_len, const char **value,
                     size_t *value_len);
    void (*body)(void *ud, const char **data, size_t *len);
};

typedef void (*msess_done_fn)(void *ud, const struct msess_result *res);
typedef void (*msess_mod_fn)(void *ud, const struct milter_reply *mod);

struct msess;

struct msess *msess_new(uv_loop_t *loop, const struct msess_cfg *cfg);
/* The session's facts, as the stages reach them (copied). The client: name
 * ("unknown" when none), address as text and port (family from the
 * address). */
void msess_set_client(struct msess *ms, const char *name, const char *addr, int port);
void msess_set_helo(struct msess *ms, const char *helo);
/* A new transaction's sender (without <>, "" for the null sender) and its
 * ESMTP parameters as on the MAIL command (" SIZE=10 BODY=8BITMIME"). */
void msess_set_sender(struct msess *ms, const char *addr, const char *params);
/* The transaction's sender when the MAIL stage did not run here (the
 * instance was skipped then: breaker open, a reload): the milter must see
 * MAIL before RCPT. Nothing when the sender is known. */
void msess_ensure_sender(struct msess *ms, const char *addr, const char *params);
/* The recipient the RCPT stage is about. */
void msess_set_rcpt(struct msess *ms, const char *addr, const char *params);
/* The RCPT stage's recipient was accepted by everyone: a reconnect
 * replays it. */
void msess_rcpt_accepted(struct msess *ms);

/* Send a stage and wait for the milter's answer: 1, and done (and mod, at
 * end of message) comes later, on the loop; 0 when there is nothing to ask
 * (the milter accepted the session, or the transaction, already): no
 * callback; -1 when a stage is still running (a bug in the caller). */
int msess_run(struct msess *ms, enum msess_stage st, const struct msess_source *src, void *src_ud,
              msess_mod_fn mod, msess_done_fn done, void *ud);
/* A stage still running that its caller no longer waits for (the host
 * gave up on the hook and the session went on): its done runs now, inside
 * this call, with MSESS_FAILED, and the connection is dropped (the next
 * stage reconnects). Nothing when no stage runs. */
void msess_abandon(struct msess *ms);
/* End of transaction: abort at the milter if it saw MAIL (no answer is
 * waited for), forget the envelope. */
void msess_abort(struct msess *ms);
/* End of the SMTP session: quit, close, free once the handles are closed.
 * Returns the ud of a stage still running (its done will never come: the
 * caller finishes it), else NULL. */
void *msess_free(struct msess *ms);

#endif
