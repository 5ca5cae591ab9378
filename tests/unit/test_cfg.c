/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for cfg: defaults, every key, every error with its line,
 * overrides, address/duration/size parsers and the shipped example file.
 * Each test runs in a fresh temporary directory (also $TMPDIR, so the
 * default spool directory exists) and loads "x.conf" by relative path so
 * that messages read "x.conf:LINE: ...".
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cfg.h"
#include "cfg_keys.h"
#include "log.h"

static char tmpdir[PATH_MAX];
static char oldcwd[PATH_MAX];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_cfg.XXXXXX");
    if (!mkdtemp(tmpdir) || !getcwd(oldcwd, sizeof oldcwd) || chdir(tmpdir) != 0)
        return -1;
    setenv("TMPDIR", tmpdir, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (chdir(oldcwd) != 0)
        return -1;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Writes text to x.conf and loads it; errors (if any) land in *err. */
static struct cfg *load_text(const char *text, buf_t *err)
{
    write_file("x.conf", text);
    buf_reset(err);
    return cfg_load("x.conf", NULL, err);
}

static const char *default_spool(void)
{
    struct stat st;
    if (stat("/var/spool/sluice", &st) == 0 && S_ISDIR(st.st_mode))
        return "/var/spool/sluice";
    return tmpdir;
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    (void)state;
    buf_t err = BUF_INIT;
    struct cfg *c = cfg_load(NULL, NULL, &err);
    assert_non_null(c);
    assert_int_equal(err.len, 0);
    assert_int_equal(c->refs, 1);
    assert_null(c->path);
    assert_int_equal(c->nlisten, 1);
    assert_string_equal(c->listen[0].text, "127.0.0.1:2525");
    assert_int_equal(c->listen[0].port, 2525);
    assert_int_equal(c->nupstream, 1);
    assert_string_equal(c->upstream[0].text, "127.0.0.1:25");
    assert_string_equal(c->upstream[0].host, "127.0.0.1");
    assert_string_equal(c->stats_listen, "127.0.0.1:9025");
    assert_true(c->hostname[0] != 0);
    assert_string_equal(c->banner, "sluice");
    assert_int_equal(c->max_connections, 1000);
    assert_int_equal(c->max_connections_per_ip, 50);
    assert_int_equal(c->max_message_size, 26214400);
    assert_int_equal(c->max_recipients, 100);
    assert_int_equal(c->max_errors, 10);
    assert_int_equal(c->junk_command_limit, 100);
    assert_int_equal(c->ipv6_prefix, 64);
    assert_int_equal(c->max_line_length, 998);
    assert_int_equal(c->long_lines, CFG_LONG_REJECT);
    assert_int_equal(c->bare_newline, CFG_BARE_REJECT);
    assert_int_equal(c->max_header_size, 262144);
    assert_int_equal(c->memory_buffer, 1048576);
    assert_string_equal(c->spool_dir, default_spool());
    assert_int_equal(c->command_timeout_ms, 300000);
    assert_int_equal(c->data_timeout_ms, 180000);
    assert_int_equal(c->greeting_timeout_ms, 300000);
    assert_int_equal(c->rdns_wait_ms, 2000);
    assert_null(c->dns_servers);
    assert_int_equal(c->dns_timeout_ms, 2000);
    assert_int_equal(c->dns_max_inflight, 64);
    assert_int_equal(c->dns_max_queued, 256);
    assert_int_equal(c->dns_cache_size, 10000);
    assert_int_equal(c->client_output_limit, 262144);
    assert_null(c->tls_cert_file);
    assert_null(c->tls_key_file);
    assert_null(c->user);
    assert_null(c->group);
    assert_int_equal(c->thread_pool_size, 4);
    assert_int_equal(c->shutdown_timeout_ms, 30000);
    assert_false(c->log_syslog);
    assert_int_equal(c->log_level, LOG_LVL_INFO);
    assert_null(c->plugin_dir);
    assert_null(c->quarantine_dir);
    assert_int_equal(c->connect_at, CFG_CONNECT_AT_MAIL);
    assert_string_equal(c->upstream_helo, c->hostname);
    assert_int_equal(c->upstream_tls, CFG_UP_TLS_NO);
    assert_false(c->upstream_tls_verify);
    assert_null(c->upstream_tls_ca_file);
    assert_null(c->upstream_tls_verify_name);
    assert_true(c->xclient);
    assert_true(c->xforward);
    assert_int_equal(c->upstream_connect_timeout_ms, 30000);
    /* Upstream deadlines leave room to answer a client that waits 5
     * minutes for RCPT and 10 for the final reply (RFC 5321 §4.5.3.2). */
    assert_int_equal(c->upstream_command_timeout_ms, 100000);
    assert_int_equal(c->upstream_data_timeout_ms, 100000);
    assert_int_equal(c->nplugins, 0);
    assert_int_equal(c->nkv, 0);
    cfg_unref(c);
    buf_free(&err);
}

/* ---- each key ---- */

struct num_case {
    const char *text;
    size_t off, size;  /* field in struct cfg; size 1 = bool */
    uint64_t want;
};

#define F(f) offsetof(struct cfg, f), sizeof(((struct cfg *)0)->f)

static const struct num_case num_cases[] = {
    {"[server]\nmax_connections = 7\n", F(max_connections), 7},
    {"[server]\nmax_connections_per_ip = 3\n", F(max_connections_per_ip), 3},
    {"[server]\nipv6_prefix = 56\n", F(ipv6_prefix), 56},
    {"[server]\njunk_command_limit = 0\n", F(junk_command_limit), 0},
    {"[server]\nmax_message_size = 10M\n", F(max_message_size), 10485760},
    {"[server]\nmax_message_size = 2G\n", F(max_message_size), 2147483648ULL},
    {"[server]\nmax_recipients = 1000\n", F(max_recipients), 1000},
    {"[server]\nmax_errors = 3\n", F(max_errors), 3},
    {"[server]\nmax_line_length = 65536\n", F(max_line_length), 65536},
    {"[server]\nlong_lines = pass\n", F(long_lines), CFG_LONG_PASS},
    {"[server]\nlong_lines = reject\n", F(long_lines), CFG_LONG_REJECT},
    {"[server]\nbare_newline = normalize\n", F(bare_newline), CFG_BARE_NORMALIZE},
    {"[server]\nmax_header_size = 64k\n", F(max_header_size), 65536},
    {"[server]\nmemory_buffer = 0\n", F(memory_buffer), 0},
    {"[server]\nmemory_buffer = 1G\n", F(memory_buffer), 1073741824},
    {"[server]\ncommand_timeout = 500ms\n", F(command_timeout_ms), 500},
    {"[server]\ndata_timeout = 2m\n", F(data_timeout_ms), 120000},
    {"[server]\ngreeting_timeout = 10\n", F(greeting_timeout_ms), 10000},
    {"[server]\nclient_output_limit = 1M\n", F(client_output_limit), 1048576},
    {"[server]\nthread_pool_size = 1024\n", F(thread_pool_size), 1024},
    {"[server]\nshutdown_timeout = 0\n", F(shutdown_timeout_ms), 0},
    {"[server]\nlog_syslog = yes\n", F(log_syslog), 1},
    {"[server]\nlog_level = debug\n", F(log_level), LOG_LVL_DEBUG},
    {"[server]\nlog_level = warn\n", F(log_level), LOG_LVL_WARN},
    {"[server]\nlog_level = error\n", F(log_level), LOG_LVL_ERROR},
    {"[upstream]\nconnect = connect\n", F(connect_at), CFG_CONNECT_AT_CONNECT},
    {"[upstream]\ntls = may\n", F(upstream_tls), CFG_UP_TLS_MAY},
    {"[upstream]\ntls = encrypt\n", F(upstream_tls), CFG_UP_TLS_ENCRYPT},
    {"[upstream]\ntls_verify = on\n", F(upstream_tls_verify), 1},
    {"[upstream]\nxclient = no\n", F(xclient), 0},
    {"[upstream]\nxforward = false\n", F(xforward), 0},
    {"[upstream]\nconnect_timeout = 1h\n", F(upstream_connect_timeout_ms), 3600000},
    {"[upstream]\ncommand_timeout = 45s\n", F(upstream_command_timeout_ms), 45000},
    {"[upstream]\ndata_timeout = 15m\n", F(upstream_data_timeout_ms), 900000},
    /* indentation is not a continuation line */
    {"[server]\n  max_errors = 4\n  max_recipients = 5\n", F(max_recipients), 5},
    /* blanks inside the brackets, CRLF, inline comment */
    {"[ server ]\r\nmax_errors = 6 ; six\r\n", F(max_errors), 6},
};

static uint64_t get_num(const struct cfg *c, size_t off, size_t size)
{
    const char *p = (const char *)c + off;
    if (size == sizeof(uint64_t)) {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    if (size == sizeof(unsigned)) {
        unsigned v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    return *(const bool *)p;
}

static void test_numeric_keys(void **state)
{
    (void)state;
    buf_t err = BUF_INIT;
    for (size_t i = 0; i < sizeof num_cases / sizeof num_cases[0]; i++) {
        const struct num_case *t = &num_cases[i];
        struct cfg *c = load_text(t->text, &err);
        if (!c)
            fail_msg("case %zu: %s -> %s", i, t->text, err.ptr);
        uint64_t got = get_num(c, t->off, t->size);
        if (got != t->want)
            fail_msg("case %zu: %s: got %llu, want %llu", i, t->text, (unsigned long long)got,
                     (unsigned long long)t->want);
        cfg_unref(c);
    }
    buf_free(&err);
}

static void test_string_keys(void **state)
{
    (void)state;
    buf_t err = BUF_INIT;
    write_file("cert.pem", "x");
    write_file("key.pem", "x");
    write_file("ca.pem", "x");
    assert_int_equal(mkdir("spool", 0700), 0);
    assert_int_equal(mkdir("quar", 0700), 0);
    assert_int_equal(mkdir("plug", 0700), 0);
    struct cfg *c = load_text("[server]\n"
                              "listen = 127.0.0.1:2600, [::1]:2601 unix:/tmp/s.sock\n"
                              "listen = 127.0.0.2:2602\n"
                              "hostname = mx.example.org\n"
                              "banner = hello there\n"
                              "spool_dir = spool\n"
                              "tls_cert_file = cert.pem\n"
                              "tls_key_file = key.pem\n"
                              "user = nobody\n"
                              "group = nogroup\n"
                              "plugin_dir = plug\n"
                              "quarantine_dir = quar\n"
                              "[upstream]\n"
                              "servers = 127.0.0.1:10025, [::1]:10026\n"
                              "helo_name = relay.example.org\n"
                              "tls_ca_file = ca.pem\n"
                              "tls_verify_name = upstream.example.org\n"
                              "[stats]\n"
                              "listen = unix:/tmp/stats.sock\n",
                              &err);
    if (!c)
        fail_msg("%s", err.ptr);
    assert_string_equal(c->path, "x.conf");
    assert_int_equal(c->nlisten, 4);
    assert_string_equal(c->listen[0].text, "127.0.0.1:2600");
    assert_string_equal(c->listen[1].text, "[::1]:2601");
    assert_string_equal(c->listen[2].text, "unix:/tmp/s.sock");
    assert_string_equal(c->listen[3].text, "127.0.0.2:2602");
    assert_string_equal(c->hostname, "mx.example.org");
    assert_string_equal(c->banner, "hello there");
    assert_string_equal(c->spool_dir, "spool");
    assert_string_equal(c->tls_cert_file, "cert.pem");
    assert_string_equal(c->tls_key_file, "key.pem");
    assert_string_equal(c->user, "nobody");
    assert_string_equal(c->group, "nogroup");
    assert_string_equal(c->plugin_dir, "plug");
    assert_string_equal(c->quarantine_dir, "quar");
    assert_int_equal(c->nupstream, 2);
    assert_string_equal(c->upstream[1].host, "::1");
    assert_int_equal(c->upstream[1].port, 10026);
    assert_string_equal(c->upstream_helo, "relay.example.org");
    assert_string_equal(c->upstream_tls_ca_file, "ca.pem");
    assert_string_equal(c->upstream_tls_verify_name, "upstream.example.org");
    assert_string_equal(c->stats_listen, "unix:/tmp/stats.sock");
    /* every key is also in kv, in file order */
    assert_int_equal(c->nkv, 16);
    assert_string_equal(c->kv[0].section, "server");
    assert_string_equal(c->kv[0].key, "listen");
    assert_int_equal(c->kv[0].line, 2);
    assert_string_equal(c->kv[15].section, "stats");
    cfg_unref(c);

    /* helo_name defaults to hostname; stats can be turned off */
    c = load_text("[server]\nhostname = a.example\n[stats]\nlisten = no\n", &err);
    assert_non_null(c);
    assert_string_equal(c->upstream_helo, "a.example");
    assert_string_equal(c->stats_listen, "");
    cfg_unref(c);
    buf_free(&err);
}

/* ---- plugins ---- */

static void test_plugins(void **state)
{
    (void)state;
    buf_t err = BUF_INIT;
    struct cfg *c = load_text("[plugin av]\n"
                              "path = /opt/clamav.so\n"
                              "timeout = 5s\n"
                              "failure = accept\n"
                              "breaker_failures = 0\n"
                              "breaker_window = 2m\n"
                              "breaker_cooldown = 10s\n"
                              "socket = /run/clamd.ctl\n"
                              "[chain]\n"
                              "plugins = av, headers\n"
                              "[plugin unused]\n"
                              "anything = goes\n",
                              &err);
    if (!c)
        fail_msg("%s", err.ptr);
    assert_int_equal(c->nplugins, 2);
    const struct cfg_plugin *p = &c->plugins[0];
    assert_string_equal(p->name, "av");
    assert_string_equal(p->path, "/opt/clamav.so");
    assert_int_equal(p->timeout_ms, 5000);
    assert_int_equal(p->failure, CFG_FAIL_ACCEPT);
    assert_int_equal(p->breaker_failures, 0);
    assert_int_equal(p->breaker_window_ms, 120000);
    assert_int_equal(p->breaker_cooldown_ms, 10000);
    assert_int_equal(p->line, 10);
    p = &c->plugins[1];  /* no section: bundled plugin of that name, defaults */
    assert_string_equal(p->name, "headers");
    assert_string_equal(p->path, "headers");
    assert_int_equal(p->timeout_ms, 30000);
    assert_int_equal(p->failure, CFG_FAIL_TEMPFAIL);
    assert_int_equal(p->breaker_failures, 5);
    assert_int_equal(p->breaker_window_ms, 60000);
    assert_int_equal(p->breaker_cooldown_ms, 30000);

    int line = 0;
    const char *v = cfg_get(c, "plugin av", "socket", &line);
    assert_non_null(v);
    assert_string_equal(v, "/run/clamd.ctl");
    assert_int_equal(line, 8);
    assert_string_equal(cfg_get(c, "plugin unused", "anything", NULL), "goes");
    assert_null(cfg_get(c, "plugin av", "nope", NULL));
    assert_null(cfg_get(c, "plugin headers", "socket", NULL));

    /* references */
    assert_ptr_equal(cfg_ref(c), c);
    assert_int_equal(c->refs, 2);
    cfg_unref(c);
    assert_int_equal(c->refs, 1);
    cfg_unref(c);  /* ASan reports a leak or double free */
    buf_free(&err);
}

/* ---- errors, each with its line ---- */

struct err_case {
    const char *text;
    const char *want;  /* the whole error output */
};

static const struct err_case err_cases[] = {
    {"# c\n\n[server]\nlisten = 127.0.0.1:2525\n\n; c\nfoo = 1\n",
     "x.conf:7: unknown key 'foo' in [server]\n"},
    {"[upstream]\nlisten = 127.0.0.1:1\n", "x.conf:2: unknown key 'listen' in [upstream]\n"},
    {"[stats]\nport = 1\n", "x.conf:2: unknown key 'port' in [stats]\n"},
    {"[chain]\nfoo = a\n", "x.conf:2: unknown key 'foo' in [chain]\n"},
    {"listen = 1.2.3.4:5\n", "x.conf:1: 'listen' is outside any section\n"},
    {"[server]\n[srever]\nlisten = 1.2.3.4:5\nhostname = x\n", "x.conf:2: unknown section [srever]\n"},
    {"[plugin]\nx = 1\n", "x.conf:1: [plugin] section needs an instance name: [plugin NAME]\n"},
    {"[plugin a/b]\nx = 1\n", "x.conf:1: bad plugin instance name 'a/b' (letters, digits, '_', '-', '.')\n"},
    {"[server]\nmax_connections = 0\n", "x.conf:2: 'max_connections' = 0 is out of range (1..1000000)\n"},
    {"[server]\nmax_connections = many\n", "x.conf:2: 'max_connections': not a number 'many'\n"},
    {"[server]\nmax_connections = -1\n", "x.conf:2: 'max_connections': not a number '-1'\n"},
    {"[server]\nmax_line_length = 65537\n", "x.conf:2: 'max_line_length' = 65537 is out of range (512..64k)\n"},
    {"[server]\nmemory_buffer = 2G\n", "x.conf:2: 'memory_buffer' = 2G is out of range (0..1G)\n"},
    {"[server]\nmemory_buffer = 99999999999999999999\n",
     "x.conf:2: 'memory_buffer' = 99999999999999999999 is out of range (0..1G)\n"},
    {"[server]\nmax_message_size = 10X\n",
     "x.conf:2: 'max_message_size': not a size '10X' (use e.g. 65536, 64k, 25M, 1G)\n"},
    {"[server]\nthread_pool_size = 0\n", "x.conf:2: 'thread_pool_size' = 0 is out of range (1..1024)\n"},
    {"[server]\nthread_pool_size = 1025\n", "x.conf:2: 'thread_pool_size' = 1025 is out of range (1..1024)\n"},
    {"[server]\ncommand_timeout = 0\n", "x.conf:2: 'command_timeout' = 0 is out of range (1ms..24h)\n"},
    {"[server]\ncommand_timeout = 25h\n", "x.conf:2: 'command_timeout' = 25h is out of range (1ms..24h)\n"},
    {"[server]\ncommand_timeout = 5 min\n",
     "x.conf:2: 'command_timeout': not a duration '5 min' (use e.g. 500ms, 30s, 5m, 1h)\n"},
    {"[server]\nlog_syslog = maybe\n", "x.conf:2: 'log_syslog': expected yes or no, not 'maybe'\n"},
    {"[server]\nlong_lines = wrap\n", "x.conf:2: 'long_lines': expected reject|pass, not 'wrap'\n"},
    {"[server]\nlog_level = loud\n", "x.conf:2: 'log_level': expected debug|info|warn|error, not 'loud'\n"},
    {"[upstream]\ntls = yes\n", "x.conf:2: 'tls': expected no|may|encrypt, not 'yes'\n"},
    {"[server]\nhostname = bad name\n", "x.conf:2: 'hostname': 'bad name' is not a host name\n"},
    {"[server]\nmax_errors = 1\nmax_errors = 2\n",
     "x.conf:3: duplicate key 'max_errors' in [server] (first set at line 2)\n"},
    {"[server]\nlisten = mail.example.org:25\n",
     "x.conf:2: 'listen': 'mail.example.org' is not a numeric IPv4 address (no DNS lookups: use an IP "
     "address or localhost)\n"},
    {"[server]\nlisten =\n", "x.conf:2: no listen address\n"},
    {"[upstream]\nservers = 127.0.0.1:0\n", "x.conf:2: 'servers': bad port '0' (1-65535) in '127.0.0.1:0'\n"},
    {"[server]\nlisten = 127.0.0.1:1, 127.0.0.1:1\n", "x.conf:2: 'listen': address '127.0.0.1:1' given twice\n"},
    {"[stats]\nlisten = 127.0.0.1\n", "x.conf:2: 'listen': missing ':PORT' in '127.0.0.1'\n"},
    {"[chain]\nplugins = a b a\n", "x.conf:2: plugin 'a' listed twice in [chain] plugins\n"},
    {"[chain]\nplugins = a b\nplugins = c\n",
     "x.conf:3: duplicate key 'plugins' in [chain] (first set at line 2)\n"},
    {"[chain]\nplugins = a\n[plugin a]\nfailure = ignore\n",
     "x.conf:4: 'failure': expected tempfail|accept|tag, not 'ignore'\n"},
    {"[plugin a]\ntimeout = 2h\n", "x.conf:2: 'timeout' = 2h is out of range (1ms..1h)\n"},
    {"[plugin a]\npath = x\npath = y\n", "x.conf:3: duplicate key 'path' in [plugin a] (first set at line 2)\n"},
    {"[server]\nthis line has no equals sign\n",
     "x.conf:2: syntax error: expected [section], key = value or a ; comment\n"},
    /* a broken header leaves the keys after it outside any section */
    {"[server\nmax_errors = 1\n", "x.conf:1: syntax error: expected [section], key = value or a ; comment\n"
                                  "x.conf:2: 'max_errors' is outside any section\n"},
    {"[server]\nspool_dir = nowhere\n", "x.conf:2: spool_dir 'nowhere': No such file or directory\n"},
    {"[server]\nspool_dir = x.conf\n", "x.conf:2: spool_dir 'x.conf': not a directory\n"},
    {"[server]\nquarantine_dir = /nonexistent/q\n",
     "x.conf:2: quarantine_dir '/nonexistent/q': No such file or directory\n"},
    {"[server]\nuser = no_such_user_sluice\n", "x.conf:2: user 'no_such_user_sluice' does not exist\n"},
    {"[server]\ngroup = no_such_group_sluice\n", "x.conf:2: group 'no_such_group_sluice' does not exist\n"},
    {"[server]\ntls_cert_file = x.conf\n",
     "x.conf:2: tls_cert_file and tls_key_file go together: set both (STARTTLS) or neither\n"},
    {"[server]\ntls_cert_file = x.conf\ntls_key_file = missing.pem\n",
     "x.conf:3: tls_key_file 'missing.pem': cannot read: No such file or directory\n"},
    {"[upstream]\ntls_ca_file = /nonexistent/ca.pem\n",
     "x.conf:2: tls_ca_file '/nonexistent/ca.pem': cannot read: No such file or directory\n"},
};

/* The resolver's keys ([server] dns_*, rdns_wait): values and refusals. */
static const struct num_case dns_num_cases[] = {
    {"[server]\nrdns_wait = 500ms\n", F(rdns_wait_ms), 500},
    {"[server]\ndns_timeout = 3s\n", F(dns_timeout_ms), 3000},
    {"[server]\ndns_max_inflight = 8\n", F(dns_max_inflight), 8},
    {"[server]\ndns_max_queued = 0\n", F(dns_max_queued), 0},
    {"[server]\ndns_cache_size = 0\n", F(dns_cache_size), 0},
};

static const struct err_case dns_err_cases[] = {
    {"[server]\ndns_servers = ns.example.org\n",
     "x.conf:2: 'dns_servers': bad server 'ns.example.org': not an IP address\n"},
    {"[server]\ndns_servers = 127.0.0.1:0\n",
     "x.conf:2: 'dns_servers': bad server '127.0.0.1:0': port must be 1..65535\n"},
    {"[server]\ndns_timeout = 50ms\n",
     "x.conf:2: 'dns_timeout' = 50ms is out of range (100ms..1m)\n"},
    {"[server]\nrdns_wait = 2m\n", "x.conf:2: 'rdns_wait' = 2m is out of range (100ms..1m)\n"},
    {"[server]\ndns_max_inflight = 0\n",
     "x.conf:2: 'dns_max_inflight' = 0 is out of range (1..10000)\n"},
};

static void test_dns_keys(void **state)
{
    (void)state;
    buf_t err = BUF_INIT;
    for (size_t i = 0; i < sizeof dns_num_cases / sizeof dns_num_cases[0]; i++) {
        const struct num_case *t = &dns_num_cases[i];
        struct cfg *c = load_text(t->text, &err);
        if (!c)
            fail_msg("case %zu: %s -> %s", i, t->text, err.ptr);
        uint64_t got = get_num(c, t->off, t->size);
        if (got != t->want)
            fail_msg("case %zu: %s: got %llu, want %llu", i, t->text, (unsigned long long)got,
                     (unsigned long long)t->want);
        cfg_unref(c);
    }
    struct cfg *c = load_text("[server]\ndns_servers = 127.0.0.1:5353, [::1]\n", &err);
    assert_non_null(c);
    assert_string_equal(c->dns_servers, "127.0.0.1:5353, [::1]");
    cfg_unref(c);
    for (size_t i = 0; i < sizeof dns_err_cases / sizeof dns_err_cases[0]; i++) {
        const struct err_case *t = &dns_err_cases[i];
        c = load_text(t->text, &err);
        if (c) {
            cfg_unref(c);
            fail_msg("case %zu: %s: loaded, want %s", i, t->text, t->want);
        }
        if (!err.ptr || strcmp(err.ptr, t->want) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err.ptr ? err.ptr : "", t->want);
    }
    buf_free(&err);
}

static void test_errors(void **state)
{
    (void)state;
    buf_t err = BUF_INIT;
    for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
        const struct err_case *t = &err_cases[i];
        struct cfg *c = load_text(t->text, &err);
        if (c) {
            cfg_unref(c);
            fail_msg("case %zu: %s: loaded, want %s", i, t->text, t->want);
        }
        if (!err.ptr || strcmp(err.ptr, t->want) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err.ptr ? err.ptr : "", t->want);
    }
    buf_free(&err);
}

static void test_many_errors(void **state)
{
    (void)state;
    buf_t err = BUF_INIT;
    struct cfg *c = load_text("[server]\n"            /* 1 */
                              "max_errors = 0\n"      /* 2 */
                              "bogus\n"               /* 3: syntax */
                              "foo = 1\n"             /* 4 */
                              "[nope]\n"              /* 5 */
                              "x = 1\n"               /* 6: not reported again */
                              "[upstream]\n"          /* 7 */
                              "also bogus\n"          /* 8: syntax */
                              "tls = sometimes\n",    /* 9 */
                              &err);
    assert_null(c);
    assert_non_null(err.ptr);
    assert_string_equal(err.ptr,
                        "x.conf:2: 'max_errors' = 0 is out of range (1..10000)\n"
                        "x.conf:3: syntax error: expected [section], key = value or a ; comment\n"
                        "x.conf:4: unknown key 'foo' in [server]\n"
                        "x.conf:5: unknown section [nope]\n"
                        "x.conf:8: syntax error: expected [section], key = value or a ; comment\n"
                        "x.conf:9: 'tls': expected no|may|encrypt, not 'sometimes'\n");
    buf_free(&err);
}

static void test_long_line(void **state)
{
    (void)state;
    buf_t err = BUF_INIT;
    char text[1024];
    char big[400];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    snprintf(text, sizeof text, "[plugin p]\nok = 1\nlong = %s\nbad line\n", big);
    struct cfg *c = load_text(text, &err);
    assert_null(c);
    assert_non_null(err.ptr);
    assert_string_equal(err.ptr, "x.conf:3: line too long (406 characters, at most 199)\n"
                                 "x.conf:4: syntax error: expected [section], key = value or a ; comment\n");

    /* a NUL byte, and a missing file */
    write_file("x.conf", "[server]\n");
    FILE *f = fopen("x.conf", "a");
    assert_non_null(f);
    fwrite("a = \0b\n", 1, 7, f);
    fclose(f);
    buf_reset(&err);
    assert_null(cfg_load("x.conf", NULL, &err));
    assert_string_equal(err.ptr, "x.conf:2: NUL byte in line\n");
    /* a CR inside a line would end up in the message (fuzz_cfg) */
    write_file("x.conf", "[server]\na\r_b = 1\n");
    buf_reset(&err);
    assert_null(cfg_load("x.conf", NULL, &err));
    assert_string_equal(err.ptr, "x.conf:2: control character 0x0d in line\n");
    buf_reset(&err);
    assert_null(cfg_load("missing.conf", NULL, &err));
    assert_string_equal(err.ptr, "missing.conf: cannot open: No such file or directory\n");
    buf_free(&err);
}

/* ---- overrides ---- */

static void test_overrides(void **state)
{
    (void)state;
    buf_t err = BUF_INIT;
    assert_int_equal(mkdir("plug", 0700), 0);
    write_file("x.conf", "[server]\nlisten = 127.0.0.1:1, 127.0.0.1:2\n"
                         "[upstream]\nservers = 127.0.0.1:3\n[stats]\nlisten = 127.0.0.1:4\n");
    struct cfg_overrides ov = {
        .listen = "[::1]:2525", .upstream = "127.0.0.9:25", .stats_listen = "no", .plugin_dir = "plug"};
    struct cfg *c = cfg_load("x.conf", &ov, &err);
    if (!c)
        fail_msg("%s", err.ptr);
    assert_int_equal(c->nlisten, 1);
    assert_string_equal(c->listen[0].text, "[::1]:2525");
    assert_int_equal(c->nupstream, 1);
    assert_string_equal(c->upstream[0].text, "127.0.0.9:25");
    assert_string_equal(c->stats_listen, "");
    assert_string_equal(c->plugin_dir, "plug");
    cfg_unref(c);

    /* defaults + overrides, no file */
    ov = (struct cfg_overrides){.listen = "127.0.0.1:3000", .stats_listen = "127.0.0.1:3001"};
    c = cfg_load(NULL, &ov, &err);
    assert_non_null(c);
    assert_string_equal(c->listen[0].text, "127.0.0.1:3000");
    assert_string_equal(c->upstream[0].text, "127.0.0.1:25");
    assert_string_equal(c->stats_listen, "127.0.0.1:3001");
    cfg_unref(c);

    /* bad overrides are reported as such */
    ov = (struct cfg_overrides){.listen = "nohost:1", .upstream = "127.0.0.1:99999", .plugin_dir = "nope"};
    buf_reset(&err);
    c = cfg_load(NULL, &ov, &err);
    assert_null(c);
    assert_string_equal(err.ptr,
                        "(command line): '--listen': 'nohost' is not a numeric IPv4 address (no DNS lookups: "
                        "use an IP address or localhost)\n"
                        "(command line): '--upstream': bad port '99999' (1-65535) in '127.0.0.1:99999'\n"
                        "(defaults): plugin_dir 'nope': No such file or directory\n");
    buf_free(&err);
}

/* ---- parsers ---- */

struct addr_case {
    const char *text;
    int rc;
    int family;
    const char *host;
    int port;
};

static void test_parse_addr(void **state)
{
    (void)state;
    static const struct addr_case cases[] = {
        {"127.0.0.1:2525", 0, AF_INET, "127.0.0.1", 2525},
        {"0.0.0.0:25", 0, AF_INET, "0.0.0.0", 25},
        {"localhost:25", 0, AF_INET, "localhost", 25},
        {"[::1]:2525", 0, AF_INET6, "::1", 2525},
        {"[::]:1", 0, AF_INET6, "::", 1},
        {"[2001:db8::1]:65535", 0, AF_INET6, "2001:db8::1", 65535},
        {"unix:/run/sluice.sock", 0, AF_UNIX, "", 0},
        {"127.0.0.1:0", -1, 0, NULL, 0},
        {"127.0.0.1:65536", -1, 0, NULL, 0},
        {"127.0.0.1:", -1, 0, NULL, 0},
        {"127.0.0.1:25x", -1, 0, NULL, 0},
        {"127.0.0.1:+25", -1, 0, NULL, 0},
        {"127.0.0.1", -1, 0, NULL, 0},
        {":25", -1, 0, NULL, 0},
        {"", -1, 0, NULL, 0},
        {"mail.example.org:25", -1, 0, NULL, 0},
        {"127.1:25", -1, 0, NULL, 0},
        {"::1:25", -1, 0, NULL, 0},
        {"[::1:25", -1, 0, NULL, 0},
        {"[::1]25", -1, 0, NULL, 0},
        {"[localhost]:25", -1, 0, NULL, 0},
        {"[127.0.0.1]:25", -1, 0, NULL, 0},
        {"unix:relative.sock", -1, 0, NULL, 0},
        {"unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         -1, 0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct addr_case *t = &cases[i];
        struct cfg_addr a;
        char err[256] = "";
        int rc = cfg_parse_addr(t->text, &a, err, sizeof err);
        if (rc != t->rc)
            fail_msg("case %zu '%s': got rc %d (%s), want %d", i, t->text, rc, err, t->rc);
        if (rc != 0) {
            if (!err[0])
                fail_msg("case %zu '%s': no error message", i, t->text);
            continue;
        }
        assert_string_equal(a.text, t->text);
        assert_int_equal(a.sa.ss_family, t->family);
        assert_string_equal(a.host, t->host);
        assert_int_equal(a.port, t->port);
        if (t->family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.sa;
            assert_int_equal(a.salen, sizeof *sin);
            assert_int_equal(ntohs(sin->sin_port), t->port);
            char txt[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &sin->sin_addr, txt, sizeof txt);
            assert_string_equal(txt, strcmp(t->host, "localhost") == 0 ? "127.0.0.1" : t->host);
        } else if (t->family == AF_INET6) {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.sa;
            assert_int_equal(a.salen, sizeof *sin6);
            assert_int_equal(ntohs(sin6->sin6_port), t->port);
        } else {
            const struct sockaddr_un *sun = (const struct sockaddr_un *)&a.sa;
            assert_string_equal(sun->sun_path, "/run/sluice.sock");
            assert_int_equal(a.salen, offsetof(struct sockaddr_un, sun_path) + strlen(sun->sun_path) + 1);
        }
    }
}

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        unsigned want;
    } cases[] = {
        {"0", 0, 0},
        {"30", 0, 30000},
        {"30s", 0, 30000},
        {"500ms", 0, 500},
        {"5m", 0, 300000},
        {"1h", 0, 3600000},
        {"4294967295ms", 0, 4294967295u},
        {"4294967296ms", -1, 0},        /* does not fit in unsigned ms */
        {"4294968s", -1, 0},
        {"99999999999999999999999", -1, 0}, /* uint64 overflow */
        {"5000000000000000h", -1, 0},   /* overflow in the multiplication */
        {"", -1, 0},
        {"s", -1, 0},
        {"-1", -1, 0},
        {"1.5s", -1, 0},
        {"10 s", -1, 0},
        {"10S", -1, 0},
        {"10d", -1, 0},
        {"10msx", -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned got = 12345;
        int rc = cfg_parse_duration_ms(cases[i].text, &got);
        if (rc != cases[i].rc || (rc == 0 && got != cases[i].want))
            fail_msg("'%s': got rc %d value %u, want rc %d value %u", cases[i].text, rc, got, cases[i].rc,
                     cases[i].want);
    }
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint64_t want;
    } cases[] = {
        {"0", 0, 0},
        {"65536", 0, 65536},
        {"64k", 0, 65536},
        {"64K", 0, 65536},
        {"25M", 0, 26214400},
        {"1G", 0, 1073741824},
        {"1g", 0, 1073741824},
        {"18446744073709551615", 0, UINT64_MAX},
        {"18446744073709551616", -1, 0},
        {"17179869184G", -1, 0},        /* 2^34 G = 2^64 */
        {"17179869183G", 0, 17179869183ULL * 1073741824ULL},
        {"", -1, 0},
        {"k", -1, 0},
        {"10KB", -1, 0},
        {"10T", -1, 0},
        {"-5", -1, 0},
        {" 5", -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t got = 12345;
        int rc = cfg_parse_size(cases[i].text, &got);
        if (rc != cases[i].rc || (rc == 0 && got != cases[i].want))
            fail_msg("'%s': got rc %d value %llu, want rc %d value %llu", cases[i].text, rc,
                     (unsigned long long)got, cases[i].rc, (unsigned long long)cases[i].want);
    }
}

static void test_parse_bool(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        bool want;
    } cases[] = {
        {"yes", 0, true}, {"YES", 0, true}, {"true", 0, true}, {"on", 0, true}, {"1", 0, true},
        {"no", 0, false}, {"False", 0, false}, {"off", 0, false}, {"0", 0, false},
        {"", -1, false}, {"y", -1, false}, {"2", -1, false}, {"yes please", -1, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = !cases[i].want;
        int rc = cfg_parse_bool(cases[i].text, &got);
        if (rc != cases[i].rc || (rc == 0 && got != cases[i].want))
            fail_msg("'%s': got rc %d value %d, want rc %d value %d", cases[i].text, rc, got, cases[i].rc,
                     cases[i].want);
    }
}

/* ---- the shipped example ---- */

/* ---- SMTP AUTH keys: [server] defaults, listener overrides, checks ---- */

static void test_auth_keys(void **state)
{
    (void)state;
    buf_t err = BUF_INIT;
    struct cfg *c = load_text("[server]\nlisten = 127.0.0.1:2525\nauth = dovecot\n"
                              "auth_socket = /run/dovecot/auth-client\nauth_plaintext = yes\n"
                              "[listener sub]\nlisten = 127.0.0.1:2587\nrequire_auth = yes\n"
                              "auth_max_failures = 5\n"
                              "[listener mx]\nlisten = 127.0.0.1:2526\nauth = none\n",
                              &err);
    if (!c)
        fail_msg("%s", err.ptr);
    const struct cfg_listener *d = cfg_listener_find(c, "default");
    const struct cfg_listener *sub = cfg_listener_find(c, "sub");
    const struct cfg_listener *mx = cfg_listener_find(c, "mx");
    assert_non_null(d);
    assert_non_null(sub);
    assert_non_null(mx);
    /* default: all of [server]'s */
    assert_int_equal(d->auth.mode, CFG_AUTH_DOVECOT);
    assert_string_equal(d->auth.socket, "/run/dovecot/auth-client");
    assert_true(d->auth.plaintext);
    assert_false(d->auth.require);
    assert_int_equal(d->auth.max_failures, 3);
    /* sub: its own require_auth and auth_max_failures, the rest inherited */
    assert_int_equal(sub->auth.mode, CFG_AUTH_DOVECOT);
    assert_string_equal(sub->auth.socket, "/run/dovecot/auth-client");
    assert_true(sub->auth.plaintext);
    assert_true(sub->auth.require);
    assert_int_equal(sub->auth.max_failures, 5);
    assert_int_equal(mx->auth.mode, CFG_AUTH_NONE);
    cfg_unref(c);

    /* nothing set: none */
    c = load_text("[server]\nlisten = 127.0.0.1:2525\n", &err);
    assert_non_null(c);
    assert_int_equal(c->listeners[0].auth.mode, CFG_AUTH_NONE);
    assert_null(c->listeners[0].auth.socket);
    cfg_unref(c);

    static const struct err_case cases[] = {
        {"[server]\nauth = dovecot\nauth_plaintext = yes\n",
         "x.conf:2: [listener default] auth = dovecot needs auth_socket (Dovecot's auth-client "
         "socket)\n"},
        {"[server]\nauth = ldap\n", "x.conf:2: 'auth': expected none|dovecot, not 'ldap'\n"},
        {"[server]\nauth_max_failures = 0\n",
         "x.conf:2: 'auth_max_failures' = 0 is out of range (1..1000)\n"},
        {"[server]\nrequire_auth = yes\n",
         "x.conf:2: [listener default] require_auth = yes with auth = none: no client could send "
         "mail\n"},
        {"[server]\nauth = dovecot\nauth_socket = /x\n",
         "x.conf:2: [listener default] auth = dovecot with tls = none and auth_plaintext = no: "
         "AUTH would never be offered\n"},
        {"[listener a]\nlisten = 127.0.0.1:2587\nauth = dovecot\nauth_plaintext = yes\n"
         "auth_socket = dovecot.example:12345\n",
         "x.conf:5: [listener a] auth_socket: 'dovecot.example:12345' is neither /path nor a "
         "numeric ip:port\n"},
        {"[server]\nauth_socket = localhost:1\n[listener a]\nlisten = 127.0.0.1:2587\n"
         "auth = dovecot\nauth_plaintext = yes\n",
         "x.conf:2: [listener a] auth_socket: 'localhost:1' is neither /path nor a numeric "
         "ip:port\n"},
        {"[listener a]\nlisten = 127.0.0.1:2587\nrequire_auth = no\nrequire_auth = no\n",
         "x.conf:4: duplicate key 'require_auth' in [listener a] (first set at line 3)\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c = load_text(cases[i].text, &err);
        if (c) {
            cfg_unref(c);
            fail_msg("case %zu: loaded, want %s", i, cases[i].want);
        }
        if (!err.ptr || strcmp(err.ptr, cases[i].want) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err.ptr ? err.ptr : "", cases[i].want);
    }
    /* a numeric inet_listener is fine */
    c = load_text("[server]\nauth = dovecot\nauth_plaintext = yes\nauth_socket = 127.0.0.1:12345\n",
                  &err);
    if (!c)
        fail_msg("%s", err.ptr);
    cfg_unref(c);
    buf_free(&err);
}

/* ---- inbound TLS policy ---- */

static void test_tls_policy_inherit(void **state)
{
    (void)state;
    buf_t err = BUF_INIT;
    write_file("c.pem", "x");
    write_file("k.pem", "x");
    struct cfg *c = load_text("[server]\n"
                              "listen = 127.0.0.1:2525\n"
                              "tls_cert_file = c.pem\n"
                              "tls_key_file = k.pem\n"
                              "tls_min_protocol = TLSv1.3\n"
                              "tls_ciphersuites = TLS_AES_256_GCM_SHA384\n"
                              "tls_sni = mx.example.com c.pem k.pem\n"
                              "tls_verify_client = optional\n"
                              "tls_client_ca_file = c.pem\n"
                              "tls_session_tickets = no\n"
                              "[listener own]\n"
                              "listen = 127.0.0.1:2526\n"
                              "tls_min_protocol = TLSv1.2\n"
                              "tls_sni = *.example.org c.pem k.pem\n"
                              "tls_sni = mx.example.net c.pem k.pem\n"
                              "tls_verify_client = no\n"
                              "tls_session_tickets = yes\n"
                              "[listener inherits]\n"
                              "listen = 127.0.0.1:2527\n",
                              &err);
    if (!c)
        fail_msg("%s", err.ptr);
    const struct cfg_listener *d = cfg_listener_find(c, "default");
    const struct cfg_listener *own = cfg_listener_find(c, "own");
    const struct cfg_listener *inh = cfg_listener_find(c, "inherits");
    assert_non_null(d);
    assert_non_null(own);
    assert_non_null(inh);
    const struct cfg_listener *takes_server[] = {d, inh};
    for (size_t i = 0; i < 2; i++) {
        const struct cfg_tls_policy *p = &takes_server[i]->tlsp;
        assert_int_equal(p->min_protocol, CFG_TLS_V13);
        assert_string_equal(p->ciphersuites, "TLS_AES_256_GCM_SHA384");
        assert_null(p->ciphers);
        assert_int_equal(p->nsni, 1);
        assert_string_equal(p->sni[0].host, "mx.example.com");
        assert_int_equal(p->sni[0].line, 7);
        assert_int_equal(p->verify_client, CFG_TLS_VERIFY_OPTIONAL);
        assert_string_equal(p->client_ca_file, "c.pem");
        assert_false(p->session_tickets);
    }
    const struct cfg_tls_policy *p = &own->tlsp;
    assert_int_equal(p->min_protocol, CFG_TLS_V12);
    assert_string_equal(p->ciphersuites, "TLS_AES_256_GCM_SHA384"); /* not set there */
    assert_int_equal(p->nsni, 2);
    assert_string_equal(p->sni[0].host, "*.example.org");
    assert_string_equal(p->sni[1].key_file, "k.pem");
    assert_int_equal(p->sni[1].line, 15);
    assert_int_equal(p->verify_client, CFG_TLS_VERIFY_NO);
    assert_true(p->session_tickets);
    cfg_unref(c);

    /* defaults without any TLS key */
    c = load_text("[server]\nlisten = 127.0.0.1:2525\n", &err);
    assert_non_null(c);
    p = &cfg_listener_find(c, "default")->tlsp;
    assert_int_equal(p->min_protocol, CFG_TLS_V12);
    assert_int_equal(p->verify_client, CFG_TLS_VERIFY_NO);
    assert_true(p->session_tickets);
    assert_int_equal(p->nsni, 0);
    cfg_unref(c);

    /* the same name twice */
    c = load_text("[server]\ntls_sni = a.example c.pem k.pem\ntls_sni = A.example c.pem k.pem\n",
                  &err);
    assert_null(c);
    assert_non_null(
        strstr(err.ptr, "x.conf:3: 'tls_sni': A.example given twice (first at line 2)"));
    buf_free(&err);
}

static void test_contrib_conf(void **state)
{
    (void)state;
    /* __FILE__ is SRC/tests/unit/test_cfg.c (CMake passes absolute paths). */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", __FILE__);
    char *cut = strstr(path, "tests/unit/test_cfg.c");
    assert_non_null(cut);
    snprintf(cut, sizeof path - (size_t)(cut - path), "contrib/sluice.conf");

    buf_t err = BUF_INIT;
    struct cfg *c = cfg_load(path, NULL, &err);
    if (!c)
        fail_msg("%s", err.ptr);
    /* it documents the defaults: same values as no file at all */
    struct cfg *d = cfg_load(NULL, NULL, &err);
    assert_non_null(d);
    assert_string_equal(c->listen[0].text, "127.0.0.1:2525");
    assert_int_equal(c->nlisten, 1);
    assert_string_equal(c->upstream[0].text, "127.0.0.1:25");
    assert_int_equal(c->nupstream, 1);
    assert_string_equal(c->stats_listen, d->stats_listen);
    assert_string_equal(c->banner, d->banner);
    assert_string_equal(c->spool_dir, d->spool_dir);
    assert_int_equal(c->max_connections, d->max_connections);
    assert_int_equal(c->max_connections_per_ip, d->max_connections_per_ip);
    assert_int_equal(c->max_message_size, d->max_message_size);
    assert_int_equal(c->max_recipients, d->max_recipients);
    assert_int_equal(c->max_errors, d->max_errors);
    assert_int_equal(c->max_line_length, d->max_line_length);
    assert_int_equal(c->long_lines, d->long_lines);
    assert_int_equal(c->bare_newline, d->bare_newline);
    assert_int_equal(c->max_header_size, d->max_header_size);
    assert_int_equal(c->memory_buffer, d->memory_buffer);
    assert_int_equal(c->command_timeout_ms, d->command_timeout_ms);
    assert_int_equal(c->data_timeout_ms, d->data_timeout_ms);
    assert_int_equal(c->greeting_timeout_ms, d->greeting_timeout_ms);
    assert_int_equal(c->client_output_limit, d->client_output_limit);
    assert_int_equal(c->thread_pool_size, d->thread_pool_size);
    assert_int_equal(c->shutdown_timeout_ms, d->shutdown_timeout_ms);
    assert_int_equal(c->log_syslog, d->log_syslog);
    assert_int_equal(c->log_level, d->log_level);
    assert_int_equal(c->connect_at, d->connect_at);
    assert_int_equal(c->upstream_tls, d->upstream_tls);
    assert_int_equal(c->upstream_tls_verify, d->upstream_tls_verify);
    assert_int_equal(c->xclient, d->xclient);
    assert_int_equal(c->xforward, d->xforward);
    assert_int_equal(c->upstream_connect_timeout_ms, d->upstream_connect_timeout_ms);
    assert_int_equal(c->upstream_command_timeout_ms, d->upstream_command_timeout_ms);
    assert_int_equal(c->upstream_data_timeout_ms, d->upstream_data_timeout_ms);
    /* The bundled chain in its recommended order. */
    static const char *const chain[] = {"dkim_verify", "virus", "spam", "rewrite", "dkim_sign"};
    size_t want = 0;
    for (size_t i = 0; i < sizeof chain / sizeof chain[0] && want < c->nplugins; i++)
        if (strcmp(c->plugins[want].name, chain[i]) == 0)
            want++;
    assert_int_equal(want, c->nplugins); /* a subsequence, in that order */
    assert_true(c->nplugins >= 4);
    assert_string_equal(c->plugins[0].name, "dkim_verify");
    assert_string_equal(c->plugins[c->nplugins - 1].name, "dkim_sign");
    cfg_unref(d);
    cfg_unref(c);
    buf_free(&err);
}

/* CFG_KEYS_N is the table's length exactly: one too many left a zeroed
 * entry at the end, which the loader happened to skip. */
static void test_key_table_has_no_empty_entry(void **state)
{
    (void)state;
    for (size_t i = 0; i < CFG_KEYS_N; i++)
        if (cfg_keys[i].name == NULL)
            fail_msg("cfg_keys[%zu] is empty: CFG_KEYS_N is too large", i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_table_has_no_empty_entry),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numeric_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_string_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dns_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overrides, setup, teardown),
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test_setup_teardown(test_auth_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_policy_inherit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_contrib_conf, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
