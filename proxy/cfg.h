/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cfg: the daemon's configuration, loaded from an INI file with libinih.
 * Every problem is reported as "FILE:LINE: message" (all of them, not just
 * the first). A loaded struct cfg is immutable and reference-counted: a
 * session keeps the cfg it started with across a SIGHUP reload.
 */
#ifndef SLUICE_CFG_H
#define SLUICE_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "cfg_parse.h"
#include "cidr.h"

#define CFG_MAX_LISTEN 16
#define CFG_MAX_UPSTREAM 16
#define CFG_MAX_PLUGINS 32
#define CFG_MAX_LISTENERS 8
#define CFG_LISTENER_NAME_MAX 32

enum cfg_upstream_tls { CFG_UP_TLS_NO = 0, CFG_UP_TLS_MAY, CFG_UP_TLS_ENCRYPT };
enum cfg_connect_at { CFG_CONNECT_AT_MAIL = 0, CFG_CONNECT_AT_CONNECT };
enum cfg_long_lines { CFG_LONG_REJECT = 0, CFG_LONG_PASS };
enum cfg_bare_nl { CFG_BARE_REJECT = 0, CFG_BARE_NORMALIZE };
enum cfg_failure { CFG_FAIL_TEMPFAIL = 0, CFG_FAIL_ACCEPT, CFG_FAIL_TAG };
/* auto: STARTTLS when the listener has a certificate, else none */
enum cfg_tls_mode { CFG_TLS_AUTO = 0, CFG_TLS_NONE, CFG_TLS_STARTTLS, CFG_TLS_IMPLICIT };
enum cfg_auth_mode { CFG_AUTH_NONE = 0, CFG_AUTH_DOVECOT };

/* SMTP AUTH (RFC 4954, proxy/sess_auth.c). [server] holds the defaults
 * (and the "default" listener's values); a [listener NAME] key overrides
 * its own. */
struct cfg_auth {
    enum cfg_auth_mode mode; /* "auth" = none|dovecot (none) */
    char *socket;            /* "auth_socket", owned: "/path" or "ip:port" of Dovecot's
                                auth-client socket; required with dovecot */
    bool plaintext;          /* "auth_plaintext": offered without TLS too (no) */
    bool require;            /* "require_auth": 530 5.7.0 for mail before AUTH (no) */
    unsigned max_failures;   /* "auth_max_failures": failed AUTHs per session, then 421 (3) */
};

/* ---- inbound TLS policy (tlssrv.h builds the contexts) ---- */
enum cfg_tls_proto { CFG_TLS_V12 = 0, CFG_TLS_V13 };
enum cfg_tls_verify { CFG_TLS_VERIFY_NO = 0, CFG_TLS_VERIFY_OPTIONAL, CFG_TLS_VERIFY_REQUIRE };
#define CFG_MAX_SNI 64

/* One "tls_sni = HOST CERT KEY" line: the certificate for clients naming HOST. */
struct cfg_tls_sni {
    char *host;                 /* owned: "mx.example.com" or "*.example.com" */
    char *cert_file, *key_file; /* owned */
    int line;
};

/* A listener's TLS policy; a [listener] section's unset keys take [server]'s. */
struct cfg_tls_policy {
    int min_protocol;        /* enum cfg_tls_proto, "tls_min_protocol" (TLSv1.2) */
    char *ciphers;           /* owned, "tls_ciphers" (TLS <= 1.2), NULL: OpenSSL's */
    char *ciphersuites;      /* owned, "tls_ciphersuites" (TLS 1.3), NULL: OpenSSL's */
    struct cfg_tls_sni *sni; /* owned, "tls_sni" lines in file order */
    size_t nsni;
    int verify_client;         /* enum cfg_tls_verify, "tls_verify_client" (no) */
    char *client_ca_file;      /* owned, "tls_client_ca_file" */
    char *client_fingerprints; /* owned, "tls_client_fingerprints" as written (tlspol.h) */
    bool session_tickets;      /* "tls_session_tickets" (yes) */
};

/* A key=value from any section, kept for plugins (their own sections). */
struct cfg_kv {
    char *section;
    char *key;
    char *value;
    int line;
};

struct cfg_plugin {
    char *name;      /* instance name: section [plugin NAME] */
    char *path;      /* "path" key: a .so path or bundled plugin name; default = name */
    unsigned timeout_ms;      /* "timeout", default 30 s */
    enum cfg_failure failure; /* "failure" = tempfail|accept|tag */
    unsigned breaker_failures;  /* "breaker_failures", default 5 (0 = off) */
    unsigned breaker_window_ms; /* "breaker_window", default 60 s */
    unsigned breaker_cooldown_ms; /* "breaker_cooldown", default 30 s */
    unsigned max_threads;         /* "max_threads": pool threads its blocking hooks may
                                     hold at once, abandoned ones included; 0 = the
                                     pool less one (at least 1) */
    int line;        /* where the instance was named in [chain] plugins */
};

/*
 * One SMTP listener: its addresses, how it does TLS, whether it takes a
 * PROXY protocol header, its plugin chain and its limits. A [listener
 * NAME] section makes one; [server] listen (or --listen) makes the one
 * named "default", with [server]'s settings and [chain]'s plugins.
 * After loading, every field holds its effective value (what the section
 * left unset is [server]'s), except tls, which is resolved to NONE,
 * STARTTLS or IMPLICIT.
 */
struct cfg_listener {
    char name[CFG_LISTENER_NAME_MAX + 1];
    int line; /* the section header (0 for "default") */
    struct cfg_addr listen[CFG_MAX_LISTEN];
    size_t nlisten;
    enum cfg_tls_mode tls;
    bool require_tls;    /* 530 5.7.0 for mail commands before STARTTLS */
    char *tls_cert_file; /* owned; [server]'s when the section sets none */
    char *tls_key_file;
    struct cfg_tls_policy tlsp;    /* effective: [server]'s for what the section leaves unset */
    bool proxy_protocol;           /* a PROXY v1/v2 header comes first */
    char *proxy_trusted;           /* owned: the networks allowed to send one (CIDR list) */
    struct cidr_list proxy_nets;   /* owned: proxy_trusted parsed */
    size_t chain[CFG_MAX_PLUGINS]; /* indexes into cfg->plugins, in order */
    size_t nchain;
    unsigned max_connections; /* this listener's share; 0 = no own limit */
    uint64_t max_message_size;
    unsigned max_recipients;
    struct cfg_auth auth; /* the section's own keys, else [server]'s */
};

struct cfg {
    int refs;
    char *path;      /* file this came from, or NULL for defaults + overrides */

    /* [server] */
    struct cfg_addr listen[CFG_MAX_LISTEN];
    size_t nlisten;
    char hostname[256];           /* default: gethostname() */
    char *banner;                 /* text after "220 hostname ESMTP " */
    unsigned max_connections;     /* 1000 */
    unsigned max_connections_per_ip; /* 50 */
    unsigned ipv6_prefix;            /* 64: IPv6 clients are counted per /N network */
    uint64_t max_message_size;    /* 26214400 (25 MiB) */
    unsigned max_recipients;      /* 100 */
    unsigned max_errors;          /* 10 */
    unsigned junk_command_limit;  /* 100: NOOP/RSET/HELP/VRFY/HELO/EHLO between messages */
    size_t max_line_length;       /* 998 */
    enum cfg_long_lines long_lines; /* reject */
    enum cfg_bare_nl bare_newline;  /* reject */
    size_t max_header_size;       /* 262144 */
    bool chunking;                /* yes: offer CHUNKING (BDAT, RFC 3030) */
    size_t memory_buffer;         /* 1 MiB kept in RAM, then spool file */
    char *spool_dir;              /* "/var/spool/sluice", fallback $TMPDIR or /tmp when unset */
    unsigned command_timeout_ms;  /* 300 s (RFC 5321 §4.5.3.2.7) */
    unsigned data_timeout_ms;     /* 180 s between data blocks (§4.5.3.2.6 uses 3 min for client) */
    unsigned greeting_timeout_ms; /* 300 s */
    size_t client_output_limit;   /* 256 KiB: stop reading a client whose replies pile up */
    char *tls_cert_file;          /* STARTTLS offered when both set */
    char *tls_key_file;
    struct cfg_tls_policy tlsp;   /* the listeners' defaults */
    char *user;                   /* drop privileges to this user after binding (when root) */
    char *group;
    unsigned thread_pool_size;    /* 4 */
    unsigned shutdown_timeout_ms; /* 30 s */
    bool log_syslog;
    bool reverse_dns;             /* yes: look up (and forward-confirm) the client's name */
    unsigned rdns_wait_ms;        /* 2 s: the greeting waits at most this for the name */
    char *dns_servers;            /* resolver list ("ip[:port], ..."); NULL: /etc/resolv.conf */
    unsigned dns_timeout_ms;      /* 2 s: deadline of one DNS request */
    unsigned dns_max_inflight;    /* 64 queries on the network at once (per server list) */
    unsigned dns_max_queued;      /* 256 more may wait; past that: tempfail at once */
    unsigned dns_cache_size;      /* 10000 answers */
    int log_level;                /* enum log_level */
    int log_format;               /* enum log_format: text (default) or json */
    char *plugin_dir;             /* bundled plugin directory override */
    char *quarantine_dir;         /* for QUARANTINE verdicts */
    unsigned quarantine_max_age_ms; /* expire held mail older than this; 0: never */
    uint64_t quarantine_max_size;   /* expire the oldest past these bytes; 0: no limit */
    unsigned quarantine_sweep_ms;   /* how often the sweep runs; 0: 60 s */
    struct cfg_auth auth;           /* auth, auth_socket, ...: defaults of every listener */
    unsigned auth_ip_max_failures;  /* failed AUTHs per client address per window (10; 0 off) */
    unsigned auth_ip_window_ms;     /* that window (10 min) */

    /* [upstream] */
    struct cfg_addr upstream[CFG_MAX_UPSTREAM];
    size_t nupstream;
    enum cfg_connect_at connect_at; /* "connect = mail|connect" */
    char *upstream_helo;          /* default: hostname */
    enum cfg_upstream_tls upstream_tls;
    bool upstream_tls_verify;
    char *upstream_tls_ca_file;
    char *upstream_tls_verify_name; /* default: the host part */
    bool xclient;                 /* use XCLIENT when offered (default yes) */
    bool xforward;                /* use XFORWARD when offered and no XCLIENT (default yes) */
    unsigned upstream_connect_timeout_ms; /* 30 s */
    unsigned upstream_command_timeout_ms; /* 300 s */
    unsigned upstream_data_timeout_ms;    /* 600 s for the final reply (§4.5.3.2.6: 10 min) */
    unsigned upstream_max_sessions;       /* 100; 0: no limit (upslot.h) */
    unsigned upstream_max_sessions_per_ip; /* 50; 0: no limit */
    unsigned upstream_reclaim_idle_ms;     /* 10 s */
    unsigned upstream_queue_timeout_ms;    /* 30 s */
    unsigned upstream_reuse_max_idle;      /* 16 idle connections kept; 0: no reuse */
    unsigned upstream_reuse_idle_ms;       /* 5 s */
    unsigned upstream_reuse_age_ms;        /* 300 s */

    /* [state]: plugins' shared state (state.h); read at start only */
    int state_backend;               /* enum state_backend: memory */
    unsigned state_max_keys;         /* 1,000,000 */
    size_t state_max_memory;         /* 64 MiB */
    char *state_redis;               /* backend = redis: its address, else NULL */
    char *state_redis_user;          /* ACL user, or NULL */
    char *state_redis_password_file; /* or NULL (no AUTH) */
    unsigned state_redis_db;         /* 0 */
    unsigned state_redis_timeout_ms; /* 500 ms */
    char *state_key_prefix;          /* "sluice:" */

    /* [stats] */
    char stats_listen[300];       /* "127.0.0.1:9025"; "" or "no" disables; "unix:/path" */
    char *stats_allowed_hosts;    /* extra Host names the endpoint answers to, or NULL */
    char *stats_token_file;       /* file holding the bearer token, or NULL (no token) */

    /* [console]: the quarantine console (console.h); read at start only */
    char console_listen[300];            /* "" (default): off; "127.0.0.1:8026" */
    char *console_users;                 /* password file (name:HASH lines); needed with listen */
    char *console_allowed_hosts;         /* extra Host names, or NULL */
    unsigned console_session_timeout_ms; /* idle session end; 0: 30 min */
    unsigned console_login_max_failures; /* per client address per window; 0: 5 */
    unsigned console_login_window_ms;    /* 0: 15 min */

    /* [chain] + [plugin NAME] sections: every instance a chain names
     * ([chain] plugins first, then each listener's own), loaded once */
    struct cfg_plugin plugins[CFG_MAX_PLUGINS];
    size_t nplugins;
    size_t nchain_plugins; /* plugins[0..n) are [chain] plugins */

    /* the listeners, in file order ("default" first when it exists) */
    struct cfg_listener *listeners; /* owned, nlisteners entries */
    size_t nlisteners;

    /* every key seen, in file order (plugins read their own sections) */
    struct cfg_kv *kv;
    size_t nkv;
};

/* Command-line overrides applied on top of the file (or of defaults). */
struct cfg_overrides {
    const char *listen;        /* --listen ADDR:PORT */
    const char *upstream;      /* --upstream HOST:PORT */
    const char *stats_listen;  /* --stats-listen ADDR:PORT */
    const char *plugin_dir;    /* --plugin-dir DIR */
    /* Reload after the privilege drop: the running configuration, whose
     * TLS files the process loaded at start. Named unchanged, they need not
     * be readable any more (a root-only key); the server keeps what it
     * loaded. */
    const struct cfg *loaded_tls;
};

/*
 * Load `path` (NULL: defaults only) and apply overrides. On success returns
 * a cfg with refs=1. On failure returns NULL and appends one
 * "FILE:LINE: message\n" per problem to `errors`.
 * Checks what the file names: cert/key readable, spool dir exists and is
 * writable, user exists, addresses parse.
 */
struct cfg *cfg_load(const char *path, const struct cfg_overrides *ov, buf_t *errors);
struct cfg *cfg_ref(struct cfg *c);
void cfg_unref(struct cfg *c);

/* The listener named `name`, or NULL. */
const struct cfg_listener *cfg_listener_find(const struct cfg *c, const char *name);

/* A plugin section's value: section is "plugin NAME". NULL if unset. */
const char *cfg_get(const struct cfg *c, const char *section, const char *key, int *line);

#endif
