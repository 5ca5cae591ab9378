/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * server: the listening sockets, the session registry and the process-wide
 * state of the daemon (current config, TLS context, connection limits,
 * upstream capability cache, signals and shutdown).
 *
 * Ownership: main owns the struct server; the server owns its listeners
 * and the list of sessions (each session owns itself and unlinks at
 * teardown). Threads: loop thread only.
 */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "cfg.h"
#include "uppool.h"
#include "upslot.h"

struct authpool;
struct sess;

/* A session's place in the server's list (embedded in the session). */
struct server_link {
    struct server_link *next, *prev;
    struct sess *sess;
};

/* A listener as the server runs it: bound at start (the set of listeners
 * changes on restart only; a reload may change their settings). */
struct server_listener {
    struct server *srv;
    size_t idx;                   /* in srv->cfg->listeners, the same in every reload */
    SSL_CTX *tls_ctx;             /* its certificate (STARTTLS or implicit) or NULL */
    unsigned char tls_policy[32]; /* tlssrv_policy_digest() of what tls_ctx was built with */
    uv_tcp_t *socks[CFG_MAX_LISTEN];
    size_t nsocks;
    unsigned nconns; /* its sessions, for its max_connections */
};

/* Accepted sockets inherit the listener's TCP_NODELAY (Linux does;
 * elsewhere each connection sets it itself). */
#ifdef __linux__
#define SERVER_NODELAY_INHERITED 1
#else
#define SERVER_NODELAY_INHERITED 0
#endif

struct server {
    uv_loop_t *loop;
    struct cfg *cfg;         /* current config (referenced); sessions hold their own ref */
    struct server_listener listeners[CFG_MAX_LISTENERS + 1];
    size_t nlisteners; /* = cfg->nlisteners */
    unsigned nconns;
    struct server_ipcount *ipcounts; /* hash of connection counts per client IP */
    size_t ipcount_cap;
    struct server_link *sessions; /* intrusive list of open sessions */
    bool stopping;
    uint64_t next_sid;
    /* What the upstream offered at its last EHLO (UP_CAP_*), used to
     * decide what our own EHLO offers before a session has its upstream. */
    unsigned upstream_caps;
    bool upstream_caps_known;
    const struct cfg_overrides *overrides; /* command line (main.c), re-applied on reload */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t shutdown_timer;
    struct upslot_pool upslots; /* upstream sessions held for clients */
    struct uppool uppool;       /* idle upstream connections for the next session */
    struct authpool *auth;      /* Dovecot auth clients of the listeners (SMTP AUTH) */
    struct authlimit *authfail; /* failed AUTHs per client address, across sessions */
};

/* Bind the listeners (before dropping privileges). 0 or -1 (logged). */
int server_init(struct server *srv, uv_loop_t *loop, struct cfg *cfg);
/* Drop privileges if configured; start accepting; install signals. */
int server_start(struct server *srv);
void server_free(struct server *srv);

/* Per-IP accounting used by sessions. */
/* The count is taken under server_ip_key(ip), written to key[0..n): the
 * release must name that key, since a reload may change ipv6_prefix. */
bool server_ip_acquire(struct server *srv, const char *ip, char *key, size_t n);
void server_ip_release(struct server *srv, const char *key);
/* The key a client address is counted under: IPv4 as is, IPv6 as its
 * /ipv6_prefix network; out is used when a new string is needed. */
const char *server_ip_key(const struct server *srv, const char *ip, char *out, size_t n);
void server_sess_link(struct server *srv, struct server_link *l, struct sess *s);
void server_sess_unlink(struct server *srv, struct server_link *l);
uint64_t server_next_sid(struct server *srv);

#endif
