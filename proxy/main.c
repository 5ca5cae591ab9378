/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * main: command line, configuration check, process set-up. sluice runs in
 * the foreground (systemd style) and logs to stderr unless told to use
 * syslog.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "buf.h"
#include "cfg.h"
#include "chain.h"
#include "console.h"
#include "log.h"
#include "mime7.h"
#include "notify.h"
#include "dns.h"
#include "server.h"
#include "state.h"
#include "stats.h"
#include "stats_http.h"
#include "tlssrv.h"
#include "xalloc.h"

static struct cfg_overrides main__overrides;

/* Buffered log lines go out once per loop iteration. */
static void main__log_check(uv_check_t *h)
{
    (void)h;
    log_flush();
}

static void main__usage(FILE *f)
{
    fprintf(f, "Usage: sluice [-c FILE] [options]\n"
               "\n"
               "A mail-filtering SMTP proxy in front of an existing MTA.\n"
               "\n"
               "  -c, --config FILE       configuration file (INI)\n"
               "      --check             validate the configuration and everything it names,\n"
               "                          print problems as FILE:LINE: message, exit 1 on error\n"
               "      --listen ADDR:PORT  SMTP listen address (overrides [server] listen)\n"
               "      --upstream HOST:PORT  upstream MTA (overrides [upstream] servers)\n"
               "      --stats-listen ADDR:PORT  stats endpoint (overrides [stats] listen;\n"
               "                          'no' disables it)\n"
               "      --plugin-dir DIR    where bundled plugins are looked up\n"
               "  -d, --debug             log at debug level\n"
               "  -V, --version           print the version and exit\n"
               "  -h, --help              this text\n");
}

/* Everything --check verifies beyond cfg_load: that the TLS material
 * actually loads. */
static int main__check_extra(const struct cfg *cfg, buf_t *errs)
{
    int bad = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        if (l->tls == CFG_TLS_NONE || !l->tls_cert_file || !l->tls_key_file)
            continue;
        char err[512];
        int line = 0;
        SSL_CTX *ctx = tlssrv_ctx_new(l, err, sizeof err, &line);
        if (!ctx) {
            char sec[CFG_LISTENER_NAME_MAX + 16];
            snprintf(sec, sizeof sec, "listener %s", l->name);
            if (!line && !cfg_get(cfg, sec, "tls_cert_file", &line))
                cfg_get(cfg, "server", "tls_cert_file", &line);
            buf_printf(errs, "%s:%d: [listener %s] TLS certificate/key: %s\n",
                       cfg->path ? cfg->path : "-", line, l->name, err);
            bad = 1;
        } else {
            SSL_CTX_free(ctx);
        }
    }
    bad |= console_check(cfg, errs); /* [console]: listen, users file */
    return bad;
}

struct main__args {
    const char *config_path;
    bool check, debug;
};

/* Parse the command line; -1 to go on, else the exit code. */
static int main__args(int argc, char **argv, struct main__args *a)
{
    enum { OPT_CHECK = 256, OPT_LISTEN, OPT_UPSTREAM, OPT_STATS, OPT_PLUGIN_DIR };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, OPT_CHECK},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"upstream", required_argument, NULL, OPT_UPSTREAM},
        {"stats-listen", required_argument, NULL, OPT_STATS},
        {"plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR},
        {"debug", no_argument, NULL, 'd'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:dVh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            a->config_path = optarg;
            break;
        case OPT_CHECK:
            a->check = true;
            break;
        case OPT_LISTEN:
            main__overrides.listen = optarg;
            break;
        case OPT_UPSTREAM:
            main__overrides.upstream = optarg;
            break;
        case OPT_STATS:
            main__overrides.stats_listen = optarg;
            break;
        case OPT_PLUGIN_DIR:
            main__overrides.plugin_dir = optarg;
            break;
        case 'd':
            a->debug = true;
            break;
        case 'V':
            printf("sluice %s (libuv %s, %s)\n", SLUICE_VERSION, uv_version_string(),
                   OpenSSL_version(OPENSSL_VERSION));
            return 0;
        case 'h':
            main__usage(stdout);
            return 0;
        default:
            main__usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice: unexpected argument '%s'\n", argv[optind]);
        main__usage(stderr);
        return 2;
    }
    return -1;
}

/* Load the configuration and the chain (and, with --check, report).
 * -1 to go on (the chain is current, *cfgp set), else the exit code. */
static int main__load(const struct main__args *a, struct cfg **cfgp)
{
    buf_t errs = BUF_INIT;
    struct cfg *cfg = cfg_load(a->config_path, &main__overrides, &errs);
    if (cfg && a->check)
        main__check_extra(cfg, &errs);
    struct chain *chain = NULL;
    if (cfg && !errs.len) {
        /* Plugins log through our logger while they initialise. */
        log_init("sluice", 0,
                 a->check   ? LOG_LVL_WARN
                 : a->debug ? LOG_LVL_DEBUG
                            : (enum log_level)cfg->log_level);
        /* What plugins log while they load is in the configured format
         * already; --check talks to a terminal: text. */
        if (!a->check)
            log_set_format((enum log_format)cfg->log_format);
        mime7_init();
        if (!a->check)
            stats_init();
        chain_pool_size(cfg->thread_pool_size);
        chain = chain_load(cfg, a->check, &errs);
    }
    if (!cfg || errs.len || !chain) {
        fputs(errs.ptr ? errs.ptr : "sluice: invalid configuration\n", stderr);
        buf_free(&errs);
        if (cfg)
            cfg_unref(cfg);
        return 1;
    }
    buf_free(&errs);
    if (a->check) {
        printf("%s: configuration OK (%zu plugin instance%s)\n",
               a->config_path ? a->config_path : "(defaults)", chain_size(chain),
               chain_size(chain) == 1 ? "" : "s");
        chain_unref(chain);
        cfg_unref(cfg);
        return 0;
    }
    chain_set_current(chain);
    chain_unref(chain);
    *cfgp = cfg;
    return -1;
}

/* The stats endpoint's bearer token, read before privileges are dropped
 * (the file may be root-only). 0, or -1 (logged). */
/* The first line of the file at path (a secret: read at start, before
 * privileges are dropped, so it may be root-only), at least min_len
 * characters. No path: "" and 0. */
static int main__read_secret(const char *what, const char *path, char *out, size_t n,
                             size_t min_len)
{
    out[0] = 0;
    if (!path)
        return 0;
    FILE *f = fopen(path, "r");
    if (!f || !fgets(out, (int)n, f)) {
        log_fatal("%s %s: %s", what, path, f ? "empty" : strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    out[strcspn(out, "\r\n")] = 0;
    if (strlen(out) < min_len) {
        log_fatal("%s %s: it must have at least %zu characters", what, path, min_len);
        return -1;
    }
    return 0;
}

/* Bind, start the stats endpoint and the DNS resolver, accept, run until
 * stopped, and tear down. The exit code. */
static int main__run(struct cfg *cfg)
{
    uv_loop_t *loop = uv_default_loop();
    struct server srv;
    if (server_init(&srv, loop, cfg) != 0) {
        log_fatal("cannot start: see the errors above");
        return 1;
    }
    cfg_unref(cfg); /* the server holds its own reference */
    srv.overrides = &main__overrides;
    if (srv.cfg->stats_listen[0] && strcmp(srv.cfg->stats_listen, "no") != 0) {
        char err[256], token[256] = "";
        if (main__read_secret("[stats] token_file", srv.cfg->stats_token_file, token, sizeof token,
                              16) != 0)
            return 1;
        stats_http_access(srv.cfg->stats_allowed_hosts, token);
        if (stats_http_start(srv.cfg->stats_listen, err, sizeof err) != 0) {
            log_fatal("stats endpoint %s: %s", srv.cfg->stats_listen, err);
            return 1;
        }
        log_info("stats endpoint on %s", srv.cfg->stats_listen);
    }
    {
        /* the quarantine console: its password file is read here, before
         * privileges are dropped */
        char err[512];
        if (console_start(srv.cfg, err, sizeof err) != 0) {
            log_fatal("console %s: %s", srv.cfg->console_listen, err);
            return 1;
        }
    }
    struct dns_conf dc = {
        .servers = srv.cfg->dns_servers,
        .timeout_ms = srv.cfg->dns_timeout_ms,
        .max_inflight = srv.cfg->dns_max_inflight,
        .max_queued = srv.cfg->dns_max_queued,
        .cache_size = srv.cfg->dns_cache_size,
    };
    char dns_err[256];
    if (dns_init(loop, &dc, dns_err, sizeof dns_err) != 0)
        log_warn("DNS resolver not started (client names, plugin queries off): %s", dns_err);
    char redis_password[512] = "";
    if (main__read_secret("[state] redis_password_file", srv.cfg->state_redis_password_file,
                          redis_password, sizeof redis_password, 1) != 0)
        return 1;
    struct state_conf sc = {
        .backend = (enum state_backend)srv.cfg->state_backend,
        .max_keys = srv.cfg->state_max_keys,
        .max_memory = srv.cfg->state_max_memory,
        .redis = srv.cfg->state_redis,
        .redis_user = srv.cfg->state_redis_user,
        .redis_password = redis_password[0] ? redis_password : NULL,
        .redis_db = srv.cfg->state_redis_db,
        .redis_timeout_ms = srv.cfg->state_redis_timeout_ms,
        .key_prefix = srv.cfg->state_key_prefix,
    };
    char state_err[256];
    int state_rc = state_init(loop, &sc, state_err, sizeof state_err);
    memset(redis_password, 0, sizeof redis_password);
    if (state_rc != 0) {
        log_fatal("%s", state_err);
        return 1;
    }
    if (server_start(&srv) != 0) {
        log_fatal("cannot start: see the errors above");
        return 1;
    }
    stats_set_chain_loaded(true);
    console_serve(); /* after server_start: privileges are dropped */
    log_info("sluice %s started", SLUICE_VERSION);
    xalloc_trim(); /* what loading the chain freed: about 15 MB with the bundled rules */
    if (notify_init(loop) != 0)
        return 1;
    /* Bound, privileges dropped, chain loaded: systemd may now start what
     * comes After=sluice (and `systemctl start` returns). */
    char status[128];
    snprintf(status, sizeof status, "serving: %zu listener(s), %zu plugin instance(s)",
             srv.cfg->nlisteners, chain_size(chain_current()));
    notify_ready(status);
    uv_check_t log_check;
    uv_check_init(loop, &log_check);
    uv_check_start(&log_check, main__log_check);
    uv_unref((uv_handle_t *)&log_check);
    log_set_buffered(!srv.cfg->log_syslog);
    uv_run(loop, UV_RUN_DEFAULT);
    notify_shutdown();
    log_set_buffered(0);
    uv_close((uv_handle_t *)&log_check, NULL);
    dns_shutdown();
    log_info("sluice stopped");
    console_stop();
    stats_http_stop();
    server_free(&srv);
    chain_shutdown();
    state_shutdown();            /* after the plugins: they cancel what they wait for */
    uv_run(loop, UV_RUN_NOWAIT); /* its timer's close */
    uv_loop_close(loop);
    mime7_shutdown();
    return 0;
}

/* glibc's heap: messages come and go in buffers of some 100 KB (message,
 * upstream output); by default each free at the top of the heap gives the
 * memory back (trim) and the next message faults it in again, and buffers
 * over 128 KB are mmap'd and unmapped each time. Measured with
 * contrib/bench at 32 sessions x 64 KiB, that page-fault churn cost a
 * third of sluice's CPU and varied from run to run with the allocation
 * pattern. Keep up to 8 MB of free heap and take buffers under 4 MB from
 * the heap. */
static void main__tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
}

int main(int argc, char **argv)
{
    main__tune_malloc();
    struct main__args a = {0};
    int rc = main__args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    struct cfg *cfg = NULL;
    rc = main__load(&a, &cfg);
    if (rc >= 0)
        return rc;
    log_init("sluice", cfg->log_syslog, a.debug ? LOG_LVL_DEBUG : (enum log_level)cfg->log_level);
    log_set_format((enum log_format)cfg->log_format);
    signal(SIGPIPE, SIG_IGN);
    /* The pool runs blocking plugin work; size it before first use. */
    char nthreads[16];
    snprintf(nthreads, sizeof nthreads, "%u", cfg->thread_pool_size);
    setenv("UV_THREADPOOL_SIZE", nthreads, 1);
    stats_set_build_info(SLUICE_VERSION);
    return main__run(cfg);
}
