/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * uppool: upstream connections kept open between client sessions.
 *
 * Mail reaches an MX one connection per message, and without reuse every
 * client connection costs sluice and the MTA a TCP connection, a greeting,
 * an EHLO (and STARTTLS) and a QUIT. When a session is done with its
 * upstream connection it gives it here instead of closing it. If its last
 * message was answered and nothing followed (up_settled), the MTA has
 * already ended that transaction and it waits at once; otherwise RSET is
 * sent first, and on 250 it waits. Idle, it serves the next session, which
 * identifies its own client with XCLIENT (up_rebind, up_identify) or
 * XFORWARD before its MAIL. [upstream] reuse_max_idle bounds what waits,
 * reuse_idle_timeout how long (well under the MTA's own idle timeout, which
 * Postfix cuts to 10 s under stress), reuse_time_limit a connection's age.
 *
 * Health: an idle connection keeps reading, so an MTA that closes it or
 * says 421 marks it failed at once (up_park makes that quiet); take()
 * never returns one that failed, and the timer drops expired ones. A
 * connection is only taken by sessions of the configuration it was opened
 * under (a reload flushes the rest).
 *
 * Which connections: only those that never carried an XCLIENT (the MTA
 * then holds the connection as that client's and refuses to be told about
 * another one) and with no error reply since their last delivery (the
 * MTA's error limits count per connection); see up_detach(). With XCLIENT
 * in use a session's connection is closed at its end, as without reuse.
 *
 * The MTA's process limit: idle connections count towards [upstream]
 * max_sessions with the held ones (checked when a connection is given and
 * again when its RSET is answered).
 *
 * Ownership: the server owns the pool; the pool owns the connections given
 * to it until take() hands one out. Threads: loop thread only.
 */
#ifndef SLUICE_UPPOOL_H
#define SLUICE_UPPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "cfg.h"
#include "up.h"
#include "upslot.h"

struct uppool_ent;

struct uppool_limits {
    unsigned max_idle; /* 0: no reuse */
    unsigned idle_ms;
    unsigned age_ms;
};

struct uppool {
    uv_loop_t *loop;
    const struct upslot_pool *slots; /* the sessions held: max_sessions */
    struct uppool_limits lim;
    struct uppool_ent *idle;  /* newest first: taken first, the oldest expire */
    struct uppool_ent *reset; /* RSET sent, reply pending */
    unsigned nidle, nreset;
    uv_timer_t timer;
    bool timer_on, closed;
};

void uppool_init(struct uppool *p, uv_loop_t *loop, const struct uppool_limits *lim,
                 const struct upslot_pool *slots);
/* New limits (reload); what waits idle is closed: it was opened under the
 * old configuration. */
void uppool_set_limits(struct uppool *p, const struct uppool_limits *lim);
/* Close every connection; later puts close at once. */
void uppool_close(struct uppool *p);

/* An idle connection opened under `cfg`, rebound to log_sid, or NULL. */
struct up *uppool_take(struct uppool *p, const struct cfg *cfg, const char *log_sid);
/* Take u (never NULL): keep it for reuse when it can serve another session
 * (up_detach) and there is room (reuse_max_idle, and the sessions held
 * for clients plus those kept idle within max_sessions), else close it. */
void uppool_put(struct uppool *p, struct up *u);

#endif
