/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cfg_keys: the configuration's key table; see cfg_keys.h. */
#include "cfg_keys.h"

#include "cfg.h"

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)
#define SEC 1000ULL
#define MIN (60ULL * SEC)
#define HOUR (60ULL * MIN)

const char *const cfg_keys_sec_names[] = {
    [SEC_SERVER] = "server", [SEC_UPSTREAM] = "upstream", [SEC_STATS] = "stats",
    [SEC_CHAIN] = "chain",   [SEC_STATE] = "state",       [SEC_CONSOLE] = "console",
};

static const char *const cfg_keys__long_lines[] = {"reject", "pass", NULL};
static const char *const cfg_keys__bare_nl[] = {"reject", "normalize", NULL};
static const char *const cfg_keys__levels[] = {"debug", "info", "warn", "error", NULL};
/* in the order of enum log_format */
static const char *const cfg_keys__log_format[] = {"text", "json", NULL};
static const char *const cfg_keys__connect[] = {"mail", "connect", NULL};
static const char *const cfg_keys__up_tls[] = {"no", "may", "encrypt", NULL};
static const char *const cfg_keys__failure[] = {"tempfail", "accept", "tag", NULL};
/* in the order of enum cfg_tls_mode */
static const char *const cfg_keys__tls_mode[] = {"auto", "none", "starttls", "implicit", NULL};
static const char *const cfg_keys__state_backend[] = {"memory", "redis",
                                                      NULL};           /* enum state_backend */
static const char *const cfg_keys__auth[] = {"none", "dovecot", NULL}; /* enum cfg_auth_mode */
/* in the order of enum cfg_tls_proto and enum cfg_tls_verify */
static const char *const cfg_keys__tls_proto[] = {"TLSv1.2", "TLSv1.3", NULL};
static const char *const cfg_keys__tls_verify[] = {"no", "optional", "require", NULL};

/* The inbound TLS policy keys, the same in [server] and [listener NAME]
 * (X: the offset macro of the struct holding the policy). */
// clang-format off
#define CFG_KEYS__TLS_POLICY(sec, X)                                                               \
    {sec, "tls_min_protocol", T_ENUM, X(tlsp.min_protocol), 0, 0, 0, cfg_keys__tls_proto, 0},      \
    {sec, "tls_ciphers", T_STR, X(tlsp.ciphers), 0, 0, 0, NULL, F_PRINTABLE},                      \
    {sec, "tls_ciphersuites", T_STR, X(tlsp.ciphersuites), 0, 0, 0, NULL, F_PRINTABLE},            \
    {sec, "tls_sni", T_SNI, X(tlsp.sni), X(tlsp.nsni), 0, CFG_MAX_SNI, NULL, 0},                   \
    {sec, "tls_verify_client", T_ENUM, X(tlsp.verify_client), 0, 0, 0, cfg_keys__tls_verify, 0},   \
    {sec, "tls_client_ca_file", T_STR, X(tlsp.client_ca_file), 0, 0, 0, NULL, 0},                  \
    {sec, "tls_client_fingerprints", T_STR, X(tlsp.client_fingerprints), 0, 0, 0, NULL, 0},        \
    {sec, "tls_session_tickets", T_BOOL, X(tlsp.session_tickets), 0, 0, 0, NULL, 0}
// clang-format on

#define O(f) offsetof(struct cfg, f)
#define P(f) offsetof(struct cfg_plugin, f)

const struct cfg_key cfg_keys[CFG_KEYS_N] = {
    {SEC_SERVER, "listen", T_ADDRS, O(listen), O(nlisten), 0, CFG_MAX_LISTEN, NULL, 0},
    {SEC_SERVER, "hostname", T_NAME, O(hostname), 0, 0, 0, NULL, 0},
    {SEC_SERVER, "banner", T_STR, O(banner), 0, 0, 0, NULL, F_PRINTABLE | F_KEEP_EMPTY},
    {SEC_SERVER, "max_connections", T_UINT, O(max_connections), 0, 1, 1000000, NULL, 0},
    {SEC_SERVER, "max_connections_per_ip", T_UINT, O(max_connections_per_ip), 0, 1, 1000000, NULL,
     0},
    {SEC_SERVER, "ipv6_prefix", T_UINT, O(ipv6_prefix), 0, 16, 128, NULL, 0},
    {SEC_SERVER, "max_message_size", T_U64, O(max_message_size), 0, KIB, 64 * GIB, NULL, 0},
    {SEC_SERVER, "max_recipients", T_UINT, O(max_recipients), 0, 1, 100000, NULL, 0},
    {SEC_SERVER, "max_errors", T_UINT, O(max_errors), 0, 1, 10000, NULL, 0},
    {SEC_SERVER, "junk_command_limit", T_UINT, O(junk_command_limit), 0, 0, 1000000, NULL, 0},
    {SEC_SERVER, "max_line_length", T_SIZE, O(max_line_length), 0, 512, 65536, NULL, 0},
    {SEC_SERVER, "long_lines", T_ENUM, O(long_lines), 0, 0, 0, cfg_keys__long_lines, 0},
    {SEC_SERVER, "bare_newline", T_ENUM, O(bare_newline), 0, 0, 0, cfg_keys__bare_nl, 0},
    {SEC_SERVER, "max_header_size", T_SIZE, O(max_header_size), 0, KIB, 64 * MIB, NULL, 0},
    {SEC_SERVER, "chunking", T_BOOL, O(chunking), 0, 0, 0, NULL, 0},
    {SEC_SERVER, "memory_buffer", T_SIZE, O(memory_buffer), 0, 0, GIB, NULL, 0},
    {SEC_SERVER, "spool_dir", T_STR, O(spool_dir), 0, 0, 0, NULL, 0},
    {SEC_SERVER, "command_timeout", T_MS, O(command_timeout_ms), 0, 1, 24 * HOUR, NULL, 0},
    {SEC_SERVER, "data_timeout", T_MS, O(data_timeout_ms), 0, 1, 24 * HOUR, NULL, 0},
    {SEC_SERVER, "greeting_timeout", T_MS, O(greeting_timeout_ms), 0, 1, 24 * HOUR, NULL, 0},
    {SEC_SERVER, "client_output_limit", T_SIZE, O(client_output_limit), 0, 4 * KIB, GIB, NULL, 0},
    {SEC_SERVER, "tls_cert_file", T_STR, O(tls_cert_file), 0, 0, 0, NULL, 0},
    {SEC_SERVER, "tls_key_file", T_STR, O(tls_key_file), 0, 0, 0, NULL, 0},
    CFG_KEYS__TLS_POLICY(SEC_SERVER, O),
    {SEC_SERVER, "user", T_STR, O(user), 0, 0, 0, NULL, 0},
    {SEC_SERVER, "group", T_STR, O(group), 0, 0, 0, NULL, 0},
    {SEC_SERVER, "thread_pool_size", T_UINT, O(thread_pool_size), 0, 1, 1024, NULL, 0},
    {SEC_SERVER, "shutdown_timeout", T_MS, O(shutdown_timeout_ms), 0, 0, 24 * HOUR, NULL, 0},
    {SEC_SERVER, "log_syslog", T_BOOL, O(log_syslog), 0, 0, 0, NULL, 0},
    {SEC_SERVER, "reverse_dns", T_BOOL, O(reverse_dns), 0, 0, 0, NULL, 0},
    {SEC_SERVER, "rdns_wait", T_MS, O(rdns_wait_ms), 0, 100, 60 * SEC, NULL, 0},
    {SEC_SERVER, "dns_servers", T_STR, O(dns_servers), 0, 0, 0, NULL, 0},
    {SEC_SERVER, "dns_timeout", T_MS, O(dns_timeout_ms), 0, 100, 60 * SEC, NULL, 0},
    {SEC_SERVER, "dns_max_inflight", T_UINT, O(dns_max_inflight), 0, 1, 10000, NULL, 0},
    {SEC_SERVER, "dns_max_queued", T_UINT, O(dns_max_queued), 0, 0, 1000000, NULL, 0},
    {SEC_SERVER, "dns_cache_size", T_UINT, O(dns_cache_size), 0, 0, 1000000, NULL, 0},
    {SEC_SERVER, "log_level", T_ENUM, O(log_level), 0, 0, 0, cfg_keys__levels, 0},
    {SEC_SERVER, "log_format", T_ENUM, O(log_format), 0, 0, 0, cfg_keys__log_format, 0},
    {SEC_SERVER, "plugin_dir", T_STR, O(plugin_dir), 0, 0, 0, NULL, 0},
    {SEC_SERVER, "quarantine_dir", T_STR, O(quarantine_dir), 0, 0, 0, NULL, 0},
    /* quarantine limits and the expiry sweep (server.c, qstore.h); 0: none */
    {SEC_SERVER, "quarantine_max_age", T_MS, O(quarantine_max_age_ms), 0, 0, 1190 * HOUR, NULL, 0},
    {SEC_SERVER, "quarantine_max_size", T_U64, O(quarantine_max_size), 0, 0, 1024 * GIB, NULL, 0},
    {SEC_SERVER, "quarantine_sweep_interval", T_MS, O(quarantine_sweep_ms), 0, SEC, 24 * HOUR, NULL,
     0},
    /* SMTP AUTH: the same keys in [server] (defaults) and [listener NAME] */
    {SEC_SERVER, "auth", T_ENUM, O(auth.mode), 0, 0, 0, cfg_keys__auth, 0},
    {SEC_SERVER, "auth_socket", T_STR, O(auth.socket), 0, 0, 0, NULL, F_PRINTABLE},
    {SEC_SERVER, "auth_plaintext", T_BOOL, O(auth.plaintext), 0, 0, 0, NULL, 0},
    {SEC_SERVER, "require_auth", T_BOOL, O(auth.require), 0, 0, 0, NULL, 0},
    {SEC_SERVER, "auth_max_failures", T_UINT, O(auth.max_failures), 0, 1, 1000, NULL, 0},
    /* across connections, per client address (proxy/authlimit.c); [server] only */
    {SEC_SERVER, "auth_max_failures_per_ip", T_UINT, O(auth_ip_max_failures), 0, 0, 100000, NULL,
     0},
    {SEC_SERVER, "auth_failure_window", T_MS, O(auth_ip_window_ms), 0, 1000, 24 * HOUR, NULL, 0},

    {SEC_UPSTREAM, "servers", T_ADDRS, O(upstream), O(nupstream), 0, CFG_MAX_UPSTREAM, NULL, 0},
    {SEC_UPSTREAM, "connect", T_ENUM, O(connect_at), 0, 0, 0, cfg_keys__connect, 0},
    {SEC_UPSTREAM, "helo_name", T_STR, O(upstream_helo), 0, 0, 0, NULL, F_HOSTNAME},
    {SEC_UPSTREAM, "tls", T_ENUM, O(upstream_tls), 0, 0, 0, cfg_keys__up_tls, 0},
    {SEC_UPSTREAM, "tls_verify", T_BOOL, O(upstream_tls_verify), 0, 0, 0, NULL, 0},
    {SEC_UPSTREAM, "tls_ca_file", T_STR, O(upstream_tls_ca_file), 0, 0, 0, NULL, 0},
    {SEC_UPSTREAM, "tls_verify_name", T_STR, O(upstream_tls_verify_name), 0, 0, 0, NULL,
     F_HOSTNAME},
    {SEC_UPSTREAM, "xclient", T_BOOL, O(xclient), 0, 0, 0, NULL, 0},
    {SEC_UPSTREAM, "xforward", T_BOOL, O(xforward), 0, 0, 0, NULL, 0},
    {SEC_UPSTREAM, "connect_timeout", T_MS, O(upstream_connect_timeout_ms), 0, 1, 24 * HOUR, NULL,
     0},
    {SEC_UPSTREAM, "command_timeout", T_MS, O(upstream_command_timeout_ms), 0, 1, 24 * HOUR, NULL,
     0},
    {SEC_UPSTREAM, "data_timeout", T_MS, O(upstream_data_timeout_ms), 0, 1, 24 * HOUR, NULL, 0},
    {SEC_UPSTREAM, "max_sessions", T_UINT, O(upstream_max_sessions), 0, 0, 1000000, NULL, 0},
    {SEC_UPSTREAM, "max_sessions_per_ip", T_UINT, O(upstream_max_sessions_per_ip), 0, 0, 1000000,
     NULL, 0},
    {SEC_UPSTREAM, "reclaim_idle", T_MS, O(upstream_reclaim_idle_ms), 0, 100, HOUR, NULL, 0},
    {SEC_UPSTREAM, "queue_timeout", T_MS, O(upstream_queue_timeout_ms), 0, 100, HOUR, NULL, 0},
    {SEC_UPSTREAM, "reuse_max_idle", T_UINT, O(upstream_reuse_max_idle), 0, 0, 100000, NULL, 0},
    {SEC_UPSTREAM, "reuse_idle_timeout", T_MS, O(upstream_reuse_idle_ms), 0, 100, HOUR, NULL, 0},
    {SEC_UPSTREAM, "reuse_time_limit", T_MS, O(upstream_reuse_age_ms), 0, 1000, 24 * HOUR, NULL, 0},

    {SEC_STATS, "listen", T_STATS, O(stats_listen), 0, 0, 0, NULL, 0},
    {SEC_STATS, "allowed_hosts", T_STR, O(stats_allowed_hosts), 0, 0, 0, NULL, F_PRINTABLE},
    {SEC_STATS, "token_file", T_STR, O(stats_token_file), 0, 0, 0, NULL, 0},

    {SEC_CHAIN, "plugins", T_CHAIN, 0, 0, 0, 0, NULL, 0},

    /* the quarantine console (console.c); 0 in the numbers: the default */
    {SEC_CONSOLE, "listen", T_STATS, O(console_listen), 0, 0, 0, NULL, 0},
    {SEC_CONSOLE, "users", T_STR, O(console_users), 0, 0, 0, NULL, 0},
    {SEC_CONSOLE, "allowed_hosts", T_STR, O(console_allowed_hosts), 0, 0, 0, NULL, F_PRINTABLE},
    {SEC_CONSOLE, "session_timeout", T_MS, O(console_session_timeout_ms), 0, MIN, 24 * HOUR, NULL,
     0},
    {SEC_CONSOLE, "login_max_failures", T_UINT, O(console_login_max_failures), 0, 1, 1000, NULL, 0},
    {SEC_CONSOLE, "login_failure_window", T_MS, O(console_login_window_ms), 0, SEC, 24 * HOUR, NULL,
     0},

    {SEC_STATE, "backend", T_ENUM, O(state_backend), 0, 0, 0, cfg_keys__state_backend, 0},
    {SEC_STATE, "max_keys", T_UINT, O(state_max_keys), 0, 0, 100000000, NULL, 0},
    {SEC_STATE, "max_memory", T_SIZE, O(state_max_memory), 0, 0, 64 * GIB, NULL, 0},
    {SEC_STATE, "redis", T_STR, O(state_redis), 0, 0, 0, NULL, F_PRINTABLE},
    {SEC_STATE, "redis_user", T_STR, O(state_redis_user), 0, 0, 0, NULL, F_PRINTABLE},
    {SEC_STATE, "redis_password_file", T_STR, O(state_redis_password_file), 0, 0, 0, NULL, 0},
    {SEC_STATE, "redis_db", T_UINT, O(state_redis_db), 0, 0, 10000, NULL, 0},
    {SEC_STATE, "redis_timeout", T_MS, O(state_redis_timeout_ms), 0, 10, 60 * SEC, NULL, 0},
    {SEC_STATE, "key_prefix", T_STR, O(state_key_prefix), 0, 0, 0, NULL,
     F_PRINTABLE | F_KEEP_EMPTY},
};
_Static_assert(sizeof cfg_keys / sizeof cfg_keys[0] == CFG_KEYS_N, "CFG_KEYS_N");

/* The keys of a [plugin NAME] section that the host uses; offsets into
 * struct cfg_plugin. Every other key there belongs to the plugin. */
const struct cfg_key cfg_keys_plugin[CFG_KEYS_PLUGIN_N] = {
    {SEC_PLUGIN, "path", T_STR, P(path), 0, 0, 0, NULL, 0},
    {SEC_PLUGIN, "timeout", T_MS, P(timeout_ms), 0, 1, HOUR, NULL, 0},
    {SEC_PLUGIN, "failure", T_ENUM, P(failure), 0, 0, 0, cfg_keys__failure, 0},
    {SEC_PLUGIN, "breaker_failures", T_UINT, P(breaker_failures), 0, 0, 1000000, NULL, 0},
    {SEC_PLUGIN, "breaker_window", T_MS, P(breaker_window_ms), 0, 1, 24 * HOUR, NULL, 0},
    {SEC_PLUGIN, "breaker_cooldown", T_MS, P(breaker_cooldown_ms), 0, 1, 24 * HOUR, NULL, 0},
    {SEC_PLUGIN, "max_threads", T_UINT, P(max_threads), 0, 0, 1024, NULL, 0},
};
_Static_assert(sizeof cfg_keys_plugin / sizeof cfg_keys_plugin[0] == CFG_KEYS_PLUGIN_N,
               "CFG_KEYS_PLUGIN_N");

#define L(f) offsetof(struct cfg_listener, f)
const struct cfg_key cfg_keys_listener[CFG_KEYS_LISTENER_N] = {
    {SEC_LISTENER, "listen", T_ADDRS, L(listen), L(nlisten), 0, CFG_MAX_LISTEN, NULL, 0},
    {SEC_LISTENER, "tls", T_ENUM, L(tls), 0, 0, 0, cfg_keys__tls_mode, 0},
    {SEC_LISTENER, "require_tls", T_BOOL, L(require_tls), 0, 0, 0, NULL, 0},
    {SEC_LISTENER, "tls_cert_file", T_STR, L(tls_cert_file), 0, 0, 0, NULL, 0},
    {SEC_LISTENER, "tls_key_file", T_STR, L(tls_key_file), 0, 0, 0, NULL, 0},
    CFG_KEYS__TLS_POLICY(SEC_LISTENER, L),
    {SEC_LISTENER, "proxy_protocol", T_BOOL, L(proxy_protocol), 0, 0, 0, NULL, 0},
    {SEC_LISTENER, "proxy_trusted", T_STR, L(proxy_trusted), 0, 0, 0, NULL, 0},
    {SEC_LISTENER, "chain", T_CHAIN, 0, 0, 0, 0, NULL, 0},
    {SEC_LISTENER, "max_connections", T_UINT, L(max_connections), 0, 1, 1000000, NULL, 0},
    {SEC_LISTENER, "max_message_size", T_U64, L(max_message_size), 0, KIB, 64 * GIB, NULL, 0},
    {SEC_LISTENER, "max_recipients", T_UINT, L(max_recipients), 0, 1, 100000, NULL, 0},
    /* SMTP AUTH: the same keys in [server] (defaults) and [listener NAME] */
    {SEC_LISTENER, "auth", T_ENUM, L(auth.mode), 0, 0, 0, cfg_keys__auth, 0},
    {SEC_LISTENER, "auth_socket", T_STR, L(auth.socket), 0, 0, 0, NULL, F_PRINTABLE},
    {SEC_LISTENER, "auth_plaintext", T_BOOL, L(auth.plaintext), 0, 0, 0, NULL, 0},
    {SEC_LISTENER, "require_auth", T_BOOL, L(auth.require), 0, 0, 0, NULL, 0},
    {SEC_LISTENER, "auth_max_failures", T_UINT, L(auth.max_failures), 0, 1, 1000, NULL, 0},
};
_Static_assert(sizeof cfg_keys_listener / sizeof cfg_keys_listener[0] == CFG_KEYS_LISTENER_N,
               "CFG_KEYS_LISTENER_N");
#undef L

const char *const cfg_keys_plugin_extra[] = {"quarantine_reply", NULL};

#undef O
#undef P
