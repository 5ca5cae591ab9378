/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * server: listeners, limits, signals, reload and shutdown; see server.h.
 *
 * Ownership: the server owns the listeners and the current cfg reference.
 * Each session holds its own cfg reference, so a reload only affects
 * sessions accepted after it.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "authlimit.h"
#include "authpool.h"
#include "conn.h"
#include "defer.h"
#include "host.h"
#include "log.h"
#include "notify.h"
#include "quar.h"
#include "sess.h"
#include "stats.h"
#include "tlssrv.h"
#include "up.h"
#include "xalloc.h"

/* ---- per-IP connection counts: a small open hash ------------------------- */

struct server_ipcount {
    char ip[64];
    unsigned n;
};

static size_t ip_hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct server_ipcount *ip_slot(struct server *srv, const char *ip, bool create)
{
    if (!srv->ipcounts) {
        srv->ipcount_cap = 1024;
        srv->ipcounts = xcalloc(srv->ipcount_cap, sizeof *srv->ipcounts);
    }
    size_t mask = srv->ipcount_cap - 1;
    size_t i = ip_hash(ip) & mask;
    struct server_ipcount *free_slot = NULL;
    for (size_t probe = 0; probe < srv->ipcount_cap; probe++, i = (i + 1) & mask) {
        struct server_ipcount *e = &srv->ipcounts[i];
        if (e->ip[0] == 0) {
            if (!free_slot)
                free_slot = e;
            break;
        }
        if (e->n == 0 && !free_slot)
            free_slot = e;
        if (strcmp(e->ip, ip) == 0)
            return e;
    }
    if (!create || !free_slot)
        return NULL;
    snprintf(free_slot->ip, sizeof free_slot->ip, "%s", ip);
    free_slot->n = 0;
    return free_slot;
}

/* The key an address is counted under: IPv4 as is, IPv6 as its network of
 * ipv6_prefix bits ("2001:db8:1:2::/64"), since one IPv6 host commonly
 * holds a whole /64 and could otherwise take every slot. */
const char *server_ip_key(const struct server *srv, const char *ip, char *out, size_t n)
{
    struct in6_addr a;
    if (!strchr(ip, ':') || inet_pton(AF_INET6, ip, &a) != 1)
        return ip;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
        /* an IPv4 client, whoever wrote it as IPv6: counted as itself */
        if (!inet_ntop(AF_INET, &a.s6_addr[12], out, (socklen_t)n))
            return ip;
        return out;
    }
    unsigned prefix = srv->cfg->ipv6_prefix ? srv->cfg->ipv6_prefix : 128;
    for (unsigned bit = prefix; bit < 128; bit++)
        a.s6_addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    char text[INET6_ADDRSTRLEN];
    if (!inet_ntop(AF_INET6, &a, text, sizeof text))
        return ip;
    snprintf(out, n, "%s/%u", text, prefix);
    return out;
}

bool server_ip_acquire(struct server *srv, const char *ip, char *key, size_t n)
{
    unsigned limit = srv->cfg->max_connections_per_ip;
    char tmp[64];
    snprintf(key, n, "%s", server_ip_key(srv, ip, tmp, sizeof tmp));
    struct server_ipcount *e = ip_slot(srv, key, true);
    if (!e)
        return limit == 0; /* table full: only refuse when limits apply */
    if (limit && e->n >= limit)
        return false;
    e->n++;
    return true;
}

void server_ip_release(struct server *srv, const char *key)
{
    struct server_ipcount *e = ip_slot(srv, key, false);
    if (e && e->n > 0)
        e->n--;
}

void server_sess_link(struct server *srv, struct server_link *l, struct sess *s)
{
    l->sess = s;
    l->prev = NULL;
    l->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = l;
    srv->sessions = l;
    srv->nconns++;
}

void server_sess_unlink(struct server *srv, struct server_link *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else if (srv->sessions == l)
        srv->sessions = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->next = l->prev = NULL;
    srv->nconns--;
}

uint64_t server_next_sid(struct server *srv)
{
    return ++srv->next_sid;
}

/* ---- accepting ----------------------------------------------------------- */

static void server__on_connection(uv_stream_t *sock, int status)
{
    struct server_listener *sl = sock->data;
    if (status < 0) {
        log_warn("accept error: %s", uv_strerror(status));
        return;
    }
    int rc = sess_accept(sl, sock);
    if (rc < 0)
        log_warn("cannot accept connection: %s", uv_strerror(rc));
}

static int server__bind(struct server_listener *sl, const struct cfg_addr *a)
{
    struct server *srv = sl->srv;
    if (a->sa.ss_family == AF_UNIX) {
        log_error("listen %s: unix sockets are not supported for SMTP listeners", a->text);
        return -1;
    }
    uv_tcp_t *t = xmalloc(sizeof *t);
    uv_tcp_init(srv->loop, t);
    t->data = sl;
    int rc = uv_tcp_bind(t, (const struct sockaddr *)&a->sa,
                         a->sa.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    /* Replies go out as written (no Nagle delay). Set on the listener:
     * Linux gives accepted sockets the listener's TCP_NODELAY, which spares
     * a setsockopt per connection (SERVER_NODELAY_INHERITED). */
    if (rc == 0)
        rc = uv_tcp_nodelay(t, 1);
    if (rc == 0)
        /* As deep as the kernel allows (net.core.somaxconn caps it): a
         * burst of connections must wait in the queue, not lose SYNs and
         * retry a second later. */
        rc = uv_listen((uv_stream_t *)t, SOMAXCONN, server__on_connection);
    if (rc != 0) {
        log_error("cannot listen on %s: %s", a->text, uv_strerror(rc));
        uv_close((uv_handle_t *)t, (uv_close_cb)free);
        return -1;
    }
    sl->socks[sl->nsocks++] = t;
    return 0;
}

static SSL_CTX *server__tls(const struct cfg_listener *l, int *failed)
{
    *failed = 0;
    if (l->tls == CFG_TLS_NONE || !l->tls_cert_file || !l->tls_key_file)
        return NULL;
    char err[512];
    int line;
    SSL_CTX *ctx = tlssrv_ctx_new(l, err, sizeof err, &line);
    if (!ctx) {
        log_error("TLS [listener %s]: %s", l->name, err);
        *failed = 1;
    }
    return ctx;
}

static bool server__unreadable(const char *file)
{
    return access(file, R_OK) != 0 && errno == EACCES;
}

/* The same certificate and key files (tls_sni ones included) in o and n;
 * *bad: one of them the server cannot read any more. */
static bool server__same_tls_files(const struct cfg_listener *o, const struct cfg_listener *n,
                                   const char **bad)
{
    *bad = NULL;
    if (!o->tls_cert_file || !o->tls_key_file || !n->tls_cert_file || !n->tls_key_file ||
        strcmp(n->tls_cert_file, o->tls_cert_file) != 0 ||
        strcmp(n->tls_key_file, o->tls_key_file) != 0 || n->tlsp.nsni != o->tlsp.nsni)
        return false;
    for (size_t j = 0; j < n->tlsp.nsni; j++)
        if (strcmp(n->tlsp.sni[j].cert_file, o->tlsp.sni[j].cert_file) != 0 ||
            strcmp(n->tlsp.sni[j].key_file, o->tlsp.sni[j].key_file) != 0)
            return false;
    const char *files[2 + 2 * CFG_MAX_SNI];
    size_t nf = 0;
    files[nf++] = n->tls_key_file;
    files[nf++] = n->tls_cert_file;
    for (size_t j = 0; j < n->tlsp.nsni; j++) {
        files[nf++] = n->tlsp.sni[j].key_file;
        files[nf++] = n->tlsp.sni[j].cert_file;
    }
    for (size_t j = 0; j < nf && !*bad; j++)
        if (server__unreadable(files[j]))
            *bad = files[j];
    return true;
}

/* The TLS context for a reloaded configuration. A reload runs after the
 * privilege drop, so a key only root may read (as it should be) cannot be
 * read again: when the files are named as before and one is unreadable,
 * the context loaded at start stays in use, with its policy. New
 * certificate files (or a new policy) therefore take a restart when a key
 * is root-only; a reload says so. A new context takes the running one's
 * session ticket keys, so tickets issued before the reload still resume. */
static SSL_CTX *server__tls_reload(struct server *srv, size_t i, const struct cfg *n, int *failed)
{
    const struct cfg_listener *o = &srv->cfg->listeners[i], *nl = &n->listeners[i];
    SSL_CTX *cur = srv->listeners[i].tls_ctx;
    const char *bad;
    *failed = 0;
    if (cur && nl->tls != CFG_TLS_NONE && server__same_tls_files(o, nl, &bad)) {
        if (bad) {
            unsigned char want[32];
            tlssrv_policy_digest(nl, want);
            if (memcmp(want, srv->listeners[i].tls_policy, sizeof want) != 0) {
                /* Keeping the old context would keep the old policy while
                 * the reload said the new one is in force. */
                log_error("TLS [listener %s]: the TLS policy changed (or a file it names cannot "
                          "be read), but %s cannot be read as user %s to build it: restart sluice "
                          "to apply it",
                          nl->name, bad, srv->cfg->user ? srv->cfg->user : "(current)");
                *failed = 1;
                return NULL;
            }
            log_warn("TLS [listener %s]: cannot read %s as user %s; keeping the certificate and "
                     "key loaded at start (restart sluice to load new ones)",
                     nl->name, bad, srv->cfg->user ? srv->cfg->user : "(current)");
            SSL_CTX_up_ref(cur);
            return cur;
        }
    }
    SSL_CTX *ctx = server__tls(nl, failed);
    tlssrv_keep_ticket_keys(cur, ctx);
    return ctx;
}

/* A reload keeps the listeners bound at start: the new configuration must
 * name the same ones, in the same order. */
static bool server__same_listeners(const struct cfg *o, const struct cfg *n)
{
    if (o->nlisteners != n->nlisteners)
        return false;
    for (size_t i = 0; i < o->nlisteners; i++)
        if (strcmp(o->listeners[i].name, n->listeners[i].name) != 0)
            return false;
    return true;
}

static void server__uppool_limits(const struct cfg *c, struct uppool_limits *lim)
{
    lim->max_idle = c->upstream_reuse_max_idle;
    lim->idle_ms = c->upstream_reuse_idle_ms;
    lim->age_ms = c->upstream_reuse_age_ms;
}

static void server__upslot_limits(const struct cfg *c, struct upslot_limits *lim)
{
    lim->max = c->upstream_max_sessions;
    lim->max_per_ip = c->upstream_max_sessions_per_ip;
    lim->reclaim_idle = c->upstream_reclaim_idle_ms;
    lim->queue_timeout = c->upstream_queue_timeout_ms;
}

int server_init(struct server *srv, uv_loop_t *loop, struct cfg *cfg)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    defer_init(loop);
    srv->cfg = cfg_ref(cfg);
    struct upslot_limits lim;
    server__upslot_limits(cfg, &lim);
    upslot_pool_init(&srv->upslots, loop, &lim);
    struct uppool_limits plim;
    server__uppool_limits(cfg, &plim);
    uppool_init(&srv->uppool, loop, &plim, &srv->upslots);
    srv->nlisteners = cfg->nlisteners;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct server_listener *sl = &srv->listeners[i];
        int failed;
        sl->srv = srv;
        sl->idx = i;
        sl->tls_ctx = server__tls(&cfg->listeners[i], &failed);
        tlssrv_policy_digest(&cfg->listeners[i], sl->tls_policy);
        if (failed)
            return -1;
        for (size_t a = 0; a < cfg->listeners[i].nlisten; a++)
            if (server__bind(sl, &cfg->listeners[i].listen[a]) != 0)
                return -1;
    }
    srv->auth = authpool_new(loop);
    srv->authfail = authlimit_new(4096, cfg->auth_ip_max_failures, cfg->auth_ip_window_ms);
    return authpool_sync(srv->auth, cfg);
}

/* ---- privileges ------------------------------------------------------------ */

/* The quarantine holds other people's mail: a directory only the service
 * user can enter (created if missing; its mode is corrected, and its owner
 * too while we are still root). 0, or -1 (logged). */
static int server__quarantine_dir(const struct cfg *cfg, uid_t uid, gid_t gid)
{
    const char *dir = cfg->quarantine_dir;
    if (!dir)
        return 0;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        log_error("quarantine_dir %s: cannot create: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        log_error("quarantine_dir %s: not a directory", dir);
        return -1;
    }
    if ((st.st_mode & 07777) != 0700) {
        log_warn("quarantine_dir %s: mode %04o changed to 0700", dir,
                 (unsigned)(st.st_mode & 07777));
        if (chmod(dir, 0700) != 0) {
            log_error("quarantine_dir %s: cannot chmod: %s", dir, strerror(errno));
            return -1;
        }
    }
    if (geteuid() == 0 && (st.st_uid != uid || st.st_gid != gid) && chown(dir, uid, gid) != 0) {
        log_error("quarantine_dir %s: cannot chown: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int server__drop_privileges(const struct cfg *cfg)
{
    if (geteuid() != 0) {
        if (cfg->user)
            log_warn("not running as root: ignoring user=%s", cfg->user);
        return server__quarantine_dir(cfg, geteuid(), getegid());
    }
    if (!cfg->user) {
        log_warn("running as root: set [server] user to an unprivileged account");
        return server__quarantine_dir(cfg, 0, 0);
    }
    struct passwd *pw = getpwnam(cfg->user);
    if (!pw) {
        log_error("user %s does not exist", cfg->user);
        return -1;
    }
    gid_t gid = pw->pw_gid;
    if (cfg->group) {
        struct group *gr = getgrnam(cfg->group);
        if (!gr) {
            log_error("group %s does not exist", cfg->group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    if (server__quarantine_dir(cfg, pw->pw_uid, gid) != 0)
        return -1;
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(pw->pw_uid) != 0) {
        log_error("cannot switch to user %s: %s", cfg->user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) {
        log_error("privileges could be regained after switching to %s", cfg->user);
        return -1;
    }
    log_info("running as user %s (uid %u)", cfg->user, (unsigned)pw->pw_uid);
    return 0;
}

/* ---- upstream probe (readiness and capability cache) ----------------------- */

static uv_timer_t probe_timer;
static struct up *probe_up;

static void server__probe_cb(void *ud, const struct up_result *r)
{
    struct server *srv = ud;
    if (r->err == UP_OK) {
        srv->upstream_caps = up_caps(probe_up);
        srv->upstream_caps_known = true;
        stats_set_upstream_ok(true);
    } else {
        stats_set_upstream_ok(false);
    }
    /* Free from the loop, not inside the upstream's own callback. */
}

static void server__probe_tick(uv_timer_t *t)
{
    struct server *srv = t->data;
    if (probe_up) {
        up_free(probe_up);
        probe_up = NULL;
    }
    if (srv->stopping)
        return;
    probe_up = up_new(srv->loop, srv->cfg, "probe");
    if (probe_up)
        up_open(probe_up, server__probe_cb, srv);
}

/* ---- signals ------------------------------------------------------------------ */

static void server__stop_listeners(struct server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++) {
        struct server_listener *sl = &srv->listeners[i];
        for (size_t a = 0; a < sl->nsocks; a++)
            uv_close((uv_handle_t *)sl->socks[a], (uv_close_cb)free);
        sl->nsocks = 0;
    }
    stats_set_listening(false);
}

static void server__shutdown_deadline(uv_timer_t *t)
{
    struct server *srv = t->data;
    log_warn("shutdown deadline reached with %u connection(s) open; exiting", srv->nconns);
    uv_stop(srv->loop);
}

static void server__check_done(struct server *srv)
{
    if (srv->stopping && srv->nconns == 0)
        uv_stop(srv->loop);
}

static void server__idle_check(uv_timer_t *t)
{
    server__check_done(t->data);
}

static uv_timer_t idle_timer;

static void server__on_term(uv_signal_t *h, int signum)
{
    struct server *srv = h->data;
    if (srv->stopping) {
        log_warn("second signal %d: exiting now", signum);
        uv_stop(srv->loop);
        return;
    }
    srv->stopping = true;
    log_info("signal %d: stopping; letting %u connection(s) finish (deadline %u ms)", signum,
             srv->nconns, srv->cfg->shutdown_timeout_ms);
    char status[96];
    snprintf(status, sizeof status, "stopping: %u connection(s) finishing", srv->nconns);
    notify_stopping(status);
    server__stop_listeners(srv);
    uppool_close(&srv->uppool); /* and sessions ending now close theirs */
    uv_timer_stop(&probe_timer);
    for (struct server_link *l = srv->sessions; l;) {
        struct server_link *next = l->next;
        sess_shutdown(l->sess);
        l = next;
    }
    uv_timer_start(&srv->shutdown_timer, server__shutdown_deadline, srv->cfg->shutdown_timeout_ms,
                   0);
    uv_timer_start(&idle_timer, server__idle_check, 50, 50);
}

static void server__on_hup(uv_signal_t *h, int signum)
{
    (void)signum;
    struct server *srv = h->data;
    if (!srv->cfg->path) {
        log_warn("SIGHUP: no configuration file to reload");
        return;
    }
    /* systemd holds `systemctl reload` until READY=1 follows (both ways). */
    notify_reloading();
    buf_t errs = BUF_INIT;
    struct cfg_overrides ov = {0};
    if (srv->overrides)
        ov = *srv->overrides;
    ov.loaded_tls = srv->cfg;
    struct cfg *n = cfg_load(srv->cfg->path, &ov, &errs);
    int failed = 0;
    SSL_CTX *tls[CFG_MAX_LISTENERS + 1] = {0};
    struct chain *chain = NULL;
    if (n && !server__same_listeners(srv->cfg, n)) {
        buf_printf(&errs,
                   "%s: listeners added, removed, renamed or reordered: that takes a "
                   "restart\n",
                   n->path);
        failed = 1;
    }
    for (size_t i = 0; n && !failed && i < n->nlisteners; i++)
        tls[i] = server__tls_reload(srv, i, n, &failed);
    if (n && !failed) {
        /* The new chain is loaded beside the old one; transactions in
         * flight keep the old one until they end. */
        chain = chain_load(n, false, &errs);
        if (!chain)
            failed = 1;
    }
    if (!n || failed) {
        for (size_t i = 0; i <= CFG_MAX_LISTENERS; i++)
            if (tls[i])
                SSL_CTX_free(tls[i]);
        log_error("reload of %s refused; keeping the running configuration",
                  srv->cfg->path);
        if (errs.ptr) {
            /* One log record per problem, so each names its file and line. */
            char *save = NULL;
            for (char *line = strtok_r(errs.ptr, "\n", &save); line;
                 line = strtok_r(NULL, "\n", &save))
                log_error("reload: %s", line);
        }
        if (n)
            cfg_unref(n);
        buf_free(&errs);
        stats_config_reload(false);
        notify_ready("reload refused: running the previous configuration (see the log)");
        return;
    }
    buf_free(&errs);
    for (size_t i = 0; i < n->nlisteners; i++) {
        const struct cfg_listener *ol = &srv->cfg->listeners[i], *nl = &n->listeners[i];
        bool listen_changed = nl->nlisten != ol->nlisten;
        for (size_t a = 0; !listen_changed && a < nl->nlisten; a++)
            listen_changed = strcmp(nl->listen[a].text, ol->listen[a].text) != 0;
        if (listen_changed)
            log_warn("reload: [listener %s] listen addresses changed; they take effect on restart",
                     nl->name);
        if (srv->listeners[i].tls_ctx)
            SSL_CTX_free(srv->listeners[i].tls_ctx);
        srv->listeners[i].tls_ctx = tls[i];
        tlssrv_policy_digest(nl, srv->listeners[i].tls_policy);
    }
    cfg_unref(srv->cfg);
    srv->cfg = n;
    authpool_sync(srv->auth, n); /* addresses checked by cfg_load() */
    authlimit_set(srv->authfail, n->auth_ip_max_failures, n->auth_ip_window_ms);
    struct upslot_limits lim;
    server__upslot_limits(n, &lim);
    upslot_pool_set_limits(&srv->upslots, &lim);
    struct uppool_limits plim;
    server__uppool_limits(n, &plim);
    uppool_set_limits(&srv->uppool, &plim); /* closes what the old config opened */
    chain_handover(chain_current(), chain);
    chain_set_current(chain);
    chain_unref(chain);
    log_set_level((enum log_level)n->log_level);
    log_set_format((enum log_format)n->log_format);
    quar_sweep_start(srv->loop, n);
    stats_config_reload(true);
    xalloc_trim(); /* what compiling the new chain freed */
    log_info("configuration reloaded from %s", n->path);
    char status[128];
    snprintf(status, sizeof status, "serving: %zu listener(s), %zu plugin instance(s)",
             n->nlisteners, chain_size(chain_current()));
    notify_ready(status);
}

int server_start(struct server *srv)
{
    if (server__drop_privileges(srv->cfg) != 0)
        return -1;
    uv_signal_init(srv->loop, &srv->sig_term);
    uv_signal_init(srv->loop, &srv->sig_int);
    uv_signal_init(srv->loop, &srv->sig_hup);
    srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv;
    uv_signal_start(&srv->sig_term, server__on_term, SIGTERM);
    uv_signal_start(&srv->sig_int, server__on_term, SIGINT);
    uv_signal_start(&srv->sig_hup, server__on_hup, SIGHUP);
    uv_timer_init(srv->loop, &srv->shutdown_timer);
    srv->shutdown_timer.data = srv;
    uv_timer_init(srv->loop, &idle_timer);
    idle_timer.data = srv;
    uv_timer_init(srv->loop, &probe_timer);
    probe_timer.data = srv;
    /* Probe at once (capability cache for EHLO, /readyz), then every 30 s. */
    uv_timer_start(&probe_timer, server__probe_tick, 0, 30000);
    quar_sweep_start(srv->loop, srv->cfg);
    for (size_t i = 0; i < srv->cfg->nlisteners; i++) {
        const struct cfg_listener *l = &srv->cfg->listeners[i];
        for (size_t a = 0; a < l->nlisten; a++)
            log_info("listening on %s (listener %s, tls=%s%s%s)", l->listen[a].text, l->name,
                     l->tls == CFG_TLS_IMPLICIT   ? "implicit"
                     : l->tls == CFG_TLS_STARTTLS ? "starttls"
                                                  : "none",
                     l->require_tls ? ", TLS required" : "",
                     l->proxy_protocol ? ", PROXY protocol" : "");
    }
    stats_set_listening(true);
    return 0;
}

static void server__close_handle(uv_handle_t *h)
{
    if (h->loop && !uv_is_closing(h))
        uv_close(h, NULL);
}

void server_free(struct server *srv)
{
    if (probe_up) {
        up_free(probe_up);
        probe_up = NULL;
    }
    /* Sessions still open past the shutdown deadline are cut off. */
    while (srv->sessions)
        sess_abort(srv->sessions->sess);
    uppool_close(&srv->uppool);
    upslot_pool_close(&srv->upslots);
    authpool_free(srv->auth); /* after the sessions: none waits on it */
    authlimit_free(srv->authfail);
    srv->auth = NULL;
    server__stop_listeners(srv);
    server__close_handle((uv_handle_t *)&srv->sig_term);
    server__close_handle((uv_handle_t *)&srv->sig_int);
    server__close_handle((uv_handle_t *)&srv->sig_hup);
    server__close_handle((uv_handle_t *)&srv->shutdown_timer);
    server__close_handle((uv_handle_t *)&idle_timer);
    server__close_handle((uv_handle_t *)&probe_timer);
    quar_sweep_stop();
    /* Let every close (graceful TLS/QUIT flushes are bounded) and every
     * deferred teardown complete, then close the defer handle itself. */
    uv_run(srv->loop, UV_RUN_DEFAULT);
    defer_shutdown();
    uv_run(srv->loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < srv->nlisteners; i++)
        if (srv->listeners[i].tls_ctx)
            SSL_CTX_free(srv->listeners[i].tls_ctx);
    free(srv->ipcounts);
    cfg_unref(srv->cfg);
}
