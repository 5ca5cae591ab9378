/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats: the daemon's metrics. The SMTP loop reports events through the
 * functions below; each is a handful of relaxed atomic increments on
 * pre-resolved counters (no locks, no allocation, no label lookups in the
 * hot path). The HTTP side (stats_http.c) reads them from its own thread.
 * Plugins register their own counters through the plugin host, which calls
 * stats_plugin_counter().
 */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum stats_verdict {
    STATS_V_ACCEPTED = 0,
    STATS_V_REJECTED,
    STATS_V_TEMPFAILED,
    STATS_V_DISCARDED,
    STATS_V_QUARANTINED,
    STATS_V_ABORTED, /* client vanished / no final reply */
    STATS_V_COUNT
};

enum stats_timeout {
    STATS_TO_COMMAND = 0, STATS_TO_DATA, STATS_TO_UPSTREAM, STATS_TO_PLUGIN, STATS_TO_COUNT
};

enum stats_up_error {
    STATS_UPERR_CONNECT = 0, STATS_UPERR_PROTOCOL, STATS_UPERR_TIMEOUT, STATS_UPERR_LOST,
    STATS_UPERR_TLS, STATS_UPERR_COUNT
};

int stats_init(void);             /* once, before anything else */
void stats_set_build_info(const char *version);

void stats_conn_open(void);       /* current++, total++ */
void stats_conn_close(void);      /* current-- */
void stats_conn_refused(void);    /* by limit (total or per IP) */
void stats_tls_handshake(bool ok);
void stats_smtp_reply(int code);  /* every reply sluice sends to a client */
void stats_upstream_reply(int code);
void stats_upstream_error(enum stats_up_error e);
void stats_timeout(enum stats_timeout t);
void stats_error(void);           /* internal errors (spool, memory) */

/* One call per transaction that reached a final answer (or was aborted). */
void stats_transaction(enum stats_verdict v, unsigned rcpts, uint64_t bytes_in,
                       uint64_t bytes_out, double seconds);

void stats_config_reload(bool ok);
/* Set by the server for /readyz. */
void stats_set_listening(bool on);
void stats_set_upstream_ok(bool ok);
void stats_set_chain_loaded(bool ok);

#endif
