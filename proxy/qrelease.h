/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qrelease: re-inject one held message through the upstream MTA, with its
 * original envelope (or to one address instead), and mark it released
 * exactly once. A blocking SMTP client: call it from a worker thread (the
 * console) or the CLI, never from the event loop or MHD's polling thread.
 *
 * Exactly once: the row is claimed first (qstore_claim: held -> releasing
 * in one UPDATE, so of two releases racing in any processes one wins and
 * the other gets QRELEASE_EALREADY without sending anything). After the
 * MTA's reply to the end of data the row is settled: released on 2xx (the
 * body file is removed), back to held on a clear refusal or on a failure
 * before the data was sent.
 *
 * Crash or lost connection after the final dot and before the reply: the
 * MTA may or may not have the message, so the row stays `releasing` and is
 * never sent again by itself. An admin who checked the MTA's log can send
 * it again with `sluice-quarantine release --force ID` once the row is
 * older than QSTORE_STUCK_SECS in that status.
 *
 * The X-Sluice-* lines sluice put before the message are not sent. The
 * connection is plain SMTP (no STARTTLS): the upstream is the MTA sluice
 * itself forwards to, normally on loopback or a trusted network.
 */
#ifndef SLUICE_QRELEASE_H
#define SLUICE_QRELEASE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "qstore.h"

enum {
    QRELEASE_OK = 0,
    QRELEASE_ENOTFOUND = -2, /* no such message */
    QRELEASE_EALREADY = -3,  /* not held (released, releasing, deleted, expired) */
    QRELEASE_EDB = -4,       /* the index failed */
    QRELEASE_EIO = -5,       /* the body file cannot be read */
    QRELEASE_ETEMP = -6,     /* MTA unreachable or 4xx: still held, try again */
    QRELEASE_EREFUSED = -7,  /* MTA refused (5xx): still held */
    QRELEASE_EUNKNOWN = -8,  /* data sent, no reply: left releasing (see above) */
};

struct qrelease_opts {
    const struct sockaddr *upstream; /* the MTA ([upstream] servers, first) */
    socklen_t upstream_len;
    const char *helo;    /* EHLO name */
    unsigned timeout_ms; /* per read/write; 0: 300 s */
    const char *to;      /* NULL: the original recipients; else only this one */
    bool force;          /* claim a row stuck in releasing too (qstore_claim) */
};

/* Release message `id`. `why` gets a one-line account ("250 2.0.0 Ok:
 * queued as X", or what failed). Returns QRELEASE_*. */
int qrelease_send(struct qstore *qs, int64_t id, const struct qrelease_opts *o, char *why,
                  size_t whylen);

#endif
