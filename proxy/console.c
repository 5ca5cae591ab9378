/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * console: the quarantine web console; see console.h for the routes,
 * refusals and threads.
 *
 * Request life: MHD calls on_request once with the headers (we check the
 * Host, the method and, for a POST, the origin, and refuse at once), then
 * with body pieces (kept up to CONSOLE__MAX_BODY in the per-request
 * struct console__req), then a last time to answer. Pages are rendered by
 * console_page into a buf_t whose memory is handed to MHD.
 *
 * What lives here for the daemon's life (set in console_start, read-only
 * afterwards except the two tables that lock themselves): the users
 * table, the session table, the login throttle, copies of the
 * configuration values.
 */
#include "console.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "console_auth.h"
#include "console_html.h"
#include "console_mime.h"
#include "console_page.h"
#include "console_session.h"
#include "log.h"
#include "qrelease.h"
#include "qstore.h"
#include "stats_http.h"

#define CONSOLE__MAX_BODY 8192 /* our forms are a few hundred bytes */
#define CONSOLE__PER_PAGE 50
#define CONSOLE__TEXT_MAX (512 * 1024) /* of a message shown */

static struct MHD_Daemon *g_daemon;
static struct stats_http_addr g_addr;
static int g_port;
static char g_unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static char g_allowed[512];
static char g_qdir[4096];
static char g_dashboard[320];
static char g_helo[256];
static struct sockaddr_storage g_up;
static socklen_t g_uplen;
static struct console_auth_users *g_users;
static struct console_sessions *g_sessions;
static struct console_auth_throttle *g_throttle;

struct console__req {
    buf_t body;
    bool too_big;
};

static uint64_t console__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- responses ------------------------------------------------------------ */

/* Headers on every answer: nothing may frame, script, load from elsewhere,
 * leak the URL (message ids, searches) or be cached. */
static void console__secure(struct MHD_Response *r)
{
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; style-src 'self'; form-action 'self'; "
                            "frame-ancestors 'none'; base-uri 'none'");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Cross-Origin-Opener-Policy", "same-origin");
    MHD_add_response_header(r, "Cross-Origin-Resource-Policy", "same-origin");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
}

struct console__extra {
    const char *location;   /* a 303's target */
    const char *set_cookie; /* a whole Set-Cookie value */
    const char *retry_after;
};

static enum MHD_Result console__send(struct MHD_Connection *c, unsigned status, const char *ctype,
                                     buf_t *b, const struct console__extra *x)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(b->len, b->ptr ? b->ptr : (void *)"",
                                        b->ptr ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        buf_free(b);
        return MHD_NO;
    }
    b->ptr = NULL; /* MHD frees it */
    b->len = b->cap = 0;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    console__secure(r);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, POST");
    if (x && x->location)
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, x->location);
    if (x && x->set_cookie)
        MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, x->set_cookie);
    if (x && x->retry_after)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, x->retry_after);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result console__text(struct MHD_Connection *c, unsigned status, const char *text)
{
    buf_t b = BUF_INIT;
    buf_puts(&b, text);
    return console__send(c, status, "text/plain; charset=utf-8", &b, NULL);
}

static enum MHD_Result console__html(struct MHD_Connection *c, unsigned status, buf_t *b)
{
    return console__send(c, status, "text/html; charset=utf-8", b, NULL);
}

static enum MHD_Result console__redirect(struct MHD_Connection *c, const char *to,
                                         const char *set_cookie)
{
    buf_t b = BUF_INIT;
    struct console__extra x = {.location = to, .set_cookie = set_cookie};
    buf_puts(&b, "see other\n");
    return console__send(c, MHD_HTTP_SEE_OTHER, "text/plain; charset=utf-8", &b, &x);
}

static enum MHD_Result console__page(struct MHD_Connection *c, unsigned status,
                                     const struct console_page_ctx *ctx, const char *title,
                                     const char *msg)
{
    buf_t b = BUF_INIT;
    console_page_simple(&b, ctx, title, msg);
    return console__html(c, status, &b);
}

/* ---- request checks ------------------------------------------------------- */

/* Is a POST from our own pages? A browser says where a request comes from
 * in Sec-Fetch-Site (a header no page can set): only "same-origin" (and
 * "none", typed by the user) pass. Without it, the Origin header decides
 * (scheme://host[:port]; behind a TLS proxy the scheme is https and the
 * Host the proxy passed on, so only host[:port] is compared). Our pages
 * send no referrer, so Chromium names the origin "null" even on our own
 * forms: "null" passes only with Sec-Fetch-Site: same-origin. Neither
 * header (curl, old clients): the CSRF token alone decides. */
static bool console__same_origin(struct MHD_Connection *c, const char *host)
{
    const char *site = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-Fetch-Site");
    if (site)
        return strcmp(site, "same-origin") == 0 || strcmp(site, "none") == 0;
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!origin)
        return true;
    const char *rest = NULL;
    if (strncasecmp(origin, "http://", 7) == 0)
        rest = origin + 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        rest = origin + 8;
    return rest && host && strcasecmp(rest, host) == 0;
}

static void console__client(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, n, "local");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)n);
}

/* The signed-in user of this request, with the session's CSRF token. */
struct console__who {
    char id[CONSOLE_SESSION_HEX];
    char user[CONSOLE_SESSION_USER];
    char csrf[CONSOLE_SESSION_HEX];
};

static bool console__session(struct MHD_Connection *c, struct console__who *w)
{
    const char *cookie = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_COOKIE);
    return console_session_cookie(cookie, w->id) &&
           console_session_find(g_sessions, w->id, console__now_ms(), w->user, w->csrf);
}

static const char *console__arg(struct MHD_Connection *c, const char *name)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    return v && strlen(v) <= 256 ? v : NULL;
}

/* A positive message id, or -1. */
static int64_t console__id(const char *s)
{
    if (!s || !*s || strlen(s) > 18 || strspn(s, "0123456789") != strlen(s))
        return -1;
    long long v = strtoll(s, NULL, 10);
    return v > 0 ? (int64_t)v : -1;
}

static void console__ctx(struct console_page_ctx *ctx, const struct console__who *w)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->user = w ? w->user : NULL;
    ctx->csrf = w ? w->csrf : NULL;
    ctx->dashboard_url = g_dashboard[0] ? g_dashboard : NULL;
}

/* The index, created when nothing was ever held (a fresh install shows an
 * empty list, not an error); we run as the service user, as quar.c does. */
static struct qstore *console__store(char *err, size_t errlen)
{
    struct qstore *qs = qstore_open(g_qdir, true, err, errlen);
    if (!qs)
        log_warn("console: quarantine index in %s: %s", g_qdir, err);
    return qs;
}

/* ---- pages ---------------------------------------------------------------- */

static enum MHD_Result console__login(struct MHD_Connection *c, const struct console__req *rq)
{
    struct console_page_ctx ctx;
    console__ctx(&ctx, NULL);
    char addr[INET6_ADDRSTRLEN + 8], user[CONSOLE_SESSION_USER] = "", pw[1025] = "";
    console__client(c, addr, sizeof addr);
    uint64_t now = console__now_ms();
    uint64_t wait = console_auth_throttle_begin(g_throttle, addr, now);
    buf_t b = BUF_INIT;
    if (wait) {
        char retry[24];
        snprintf(retry, sizeof retry, "%" PRIu64, (wait + 999) / 1000);
        log_warn("console: client=%s login refused: too many failures", addr);
        console_page_login(&b, &ctx,
                           "Too many failed sign-ins from your address: try again later.");
        struct console__extra x = {.retry_after = retry};
        return console__send(c, MHD_HTTP_TOO_MANY_REQUESTS, "text/html; charset=utf-8", &b, &x);
    }
    const char *body = rq->body.ptr ? rq->body.ptr : "";
    bool got = console_html_form_get(body, rq->body.len, "user", user, sizeof user) > 0 &&
               console_html_form_get(body, rq->body.len, "password", pw, sizeof pw) >= 0;
    bool ok = got && console_auth_verify(g_users, user, pw);
    explicit_bzero(pw, sizeof pw);
    console_auth_throttle_end(g_throttle, addr, ok);
    if (!ok) {
        /* the name as typed goes to the log quoted by the logger's rules */
        char q[200];
        log_warn("console: client=%s login failed user=%s", addr,
                 log_quote(q, sizeof q, got ? user : ""));
        console_page_login(&b, &ctx, "Wrong user name or password.");
        return console__html(c, MHD_HTTP_FORBIDDEN, &b);
    }
    char id[CONSOLE_SESSION_HEX], csrf[CONSOLE_SESSION_HEX], cookie[200];
    if (console_session_create(g_sessions, user, now, id, csrf) != 0)
        return console__page(c, MHD_HTTP_INTERNAL_SERVER_ERROR, &ctx, "Error",
                             "No session could be made (no randomness).");
    snprintf(cookie, sizeof cookie, "%s=%s; Path=/; Secure; HttpOnly; SameSite=Strict",
             CONSOLE_SESSION_COOKIE, id);
    log_info("console: client=%s user=%s signed in", addr, user);
    enum MHD_Result r = console__redirect(c, "/", cookie);
    explicit_bzero(id, sizeof id);
    explicit_bzero(cookie, sizeof cookie);
    return r;
}

static enum MHD_Result console__list(struct MHD_Connection *c, const struct console__who *w)
{
    struct console_page_ctx ctx;
    console__ctx(&ctx, w);
    struct console_page_search s = {
        .sender = console__arg(c, "sender"),
        .rcpt = console__arg(c, "rcpt"),
        .plugin = console__arg(c, "plugin"),
        .reason = console__arg(c, "reason"),
        .since = console__arg(c, "since"),
        .until = console__arg(c, "until"),
        .status = console__arg(c, "status"),
        .per_page = CONSOLE__PER_PAGE,
        .page = 1,
    };
    const char *page = console__arg(c, "page");
    int64_t pg = console__id(page);
    if (pg > 0 && pg < 1000000)
        s.page = (size_t)pg;
    const char *done = console__arg(c, "done");
    if (done && strcmp(done, "deleted") == 0)
        ctx.notice = "The message was deleted.";
    struct qstore_filter f = {
        .sender = s.sender,
        .rcpt = s.rcpt,
        .plugin = s.plugin,
        .reason = s.reason,
        .status = QSTORE_HELD,
        .offset = (s.page - 1) * CONSOLE__PER_PAGE,
        .limit = CONSOLE__PER_PAGE,
    };
    if (s.status && *s.status)
        f.status = strcmp(s.status, "any") == 0 ? -1 : qstore_status_parse(s.status);
    long long since = console_page_parse_time(s.since), until = console_page_parse_time(s.until);
    if (since < 0 || until < 0 ||
        (s.status && *s.status && strcmp(s.status, "any") != 0 && f.status < 0)) {
        ctx.notice = "Dates are YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC); status one of the list.";
        ctx.notice_error = true;
        buf_t b = BUF_INIT;
        console_page_list(&b, &ctx, &s, NULL, 0, 0);
        return console__html(c, MHD_HTTP_BAD_REQUEST, &b);
    }
    f.since = since;
    /* a bare date as upper bound means "up to the end of that day" */
    f.until = until && s.until && strlen(s.until) == 10 ? until + 86400 : until;
    char err[256];
    struct qstore *qs = console__store(err, sizeof err);
    if (!qs)
        return console__page(c, MHD_HTTP_SERVICE_UNAVAILABLE, &ctx, "Quarantine unavailable",
                             "The quarantine index cannot be opened; see the daemon's log.");
    struct qstore_msg *v = NULL;
    size_t n = 0, total = 0;
    int rc = qstore_list(qs, &f, &v, &n, &total);
    if (rc != 0) {
        log_warn("console: listing the quarantine: %s", qstore_error(qs));
        qstore_close(qs);
        return console__page(c, MHD_HTTP_INTERNAL_SERVER_ERROR, &ctx, "Error",
                             "The quarantine index could not be read; see the daemon's log.");
    }
    qstore_close(qs);
    buf_t b = BUF_INIT;
    console_page_list(&b, &ctx, &s, v, n, total);
    qstore_msgs_free(v, n);
    return console__html(c, MHD_HTTP_OK, &b);
}

/* Read the start of the message file: after the X-Sluice-* head, split
 * into header block and body. Owned by *raw (free). */
struct console__text {
    char *raw;
    const char *msg, *hdr, *body; /* the message after sluice's lines */
    size_t mlen, hlen, blen;
    bool truncated;
};

static void console__read_msg(const struct qstore_msg *m, struct console__text *t)
{
    memset(t, 0, sizeof t[0]);
    if (!m->path || !*m->path)
        return;
    char path[8192];
    if (m->path[0] == '/')
        snprintf(path, sizeof path, "%s", m->path);
    else
        snprintf(path, sizeof path, "%s/%s", g_qdir, m->path);
    FILE *f = fopen(path, "rbe");
    if (!f)
        return;
    t->raw = malloc(CONSOLE__TEXT_MAX + 1);
    size_t n = t->raw ? fread(t->raw, 1, CONSOLE__TEXT_MAX + 1, f) : 0;
    fclose(f);
    if (!t->raw)
        return;
    t->truncated = n > CONSOLE__TEXT_MAX;
    if (t->truncated)
        n = CONSOLE__TEXT_MAX;
    t->raw[n] = '\0';
    struct qstore_msg head;
    long skip = qstore_parse_head(t->raw, n, &head);
    qstore_msg_free(&head);
    size_t start = skip > 0 ? (size_t)skip : 0;
    const char *msg = t->raw + start;
    size_t len = n - start;
    const char *sep = NULL;
    size_t seplen = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (msg[i] == '\n' && msg[i + 1] == '\n') {
            sep = msg + i, seplen = 2;
            break;
        }
        if (msg[i] == '\n' && msg[i + 1] == '\r' && i + 2 < len && msg[i + 2] == '\n') {
            sep = msg + i, seplen = 3;
            break;
        }
    }
    t->msg = msg;
    t->mlen = len;
    t->hdr = msg;
    t->hlen = sep ? (size_t)(sep - msg) + 1 : len;
    t->body = sep ? sep + seplen : msg + len;
    t->blen = sep ? len - (size_t)(t->body - msg) : 0;
}

static enum MHD_Result console__view(struct MHD_Connection *c, const struct console__who *w,
                                     int64_t id, const char *notice, bool error)
{
    struct console_page_ctx ctx;
    console__ctx(&ctx, w);
    ctx.notice = notice;
    ctx.notice_error = error;
    if (id <= 0)
        return console__page(c, MHD_HTTP_NOT_FOUND, &ctx, "Not found", "No such message.");
    char err[256];
    struct qstore *qs = console__store(err, sizeof err);
    if (!qs)
        return console__page(c, MHD_HTTP_SERVICE_UNAVAILABLE, &ctx, "Quarantine unavailable",
                             "The quarantine index cannot be opened; see the daemon's log.");
    struct qstore_msg m;
    int rc = qstore_get(qs, id, &m);
    qstore_close(qs);
    if (rc == QSTORE_ENOTFOUND)
        return console__page(c, MHD_HTTP_NOT_FOUND, &ctx, "Not found", "No such message.");
    if (rc != 0)
        return console__page(c, MHD_HTTP_INTERNAL_SERVER_ERROR, &ctx, "Error",
                             "The quarantine index could not be read; see the daemon's log.");
    struct console__text t;
    console__read_msg(&m, &t);
    /* the parts decoded to text; the raw body if GMime finds no message */
    buf_t text = BUF_INIT;
    bool cut = t.truncated;
    bool decoded = t.raw && console_mime_text(&text, t.msg, t.mlen, CONSOLE__TEXT_MAX, &cut) == 0;
    buf_t b = BUF_INIT;
    console_page_msg(&b, &ctx, &m, t.hdr, t.hlen, decoded ? (text.ptr ? text.ptr : "") : t.body,
                     decoded ? text.len : t.blen, cut);
    buf_free(&text);
    free(t.raw);
    qstore_msg_free(&m);
    return console__html(c, MHD_HTTP_OK, &b);
}

static enum MHD_Result console__release(struct MHD_Connection *c, const struct console__who *w,
                                        int64_t id)
{
    char err[256], why[512] = "";
    struct qstore *qs = console__store(err, sizeof err);
    if (!qs)
        return console__view(c, w, id, "The quarantine index cannot be opened.", true);
    struct qrelease_opts o = {
        .upstream = (const struct sockaddr *)&g_up,
        .upstream_len = g_uplen,
        .helo = g_helo,
        .timeout_ms = 30000, /* per read/write; also what a stop waits at most */
    };
    /* blocks this connection's thread only (thread per connection) */
    int rc = qrelease_send(qs, id, &o, why, sizeof why);
    qstore_close(qs);
    static const char *const done[] = {
        [-QRELEASE_OK] = "released",      [-QRELEASE_ENOTFOUND] = "notfound",
        [-QRELEASE_EALREADY] = "notheld", [-QRELEASE_EDB] = "failed",
        [-QRELEASE_EIO] = "failed",       [-QRELEASE_ETEMP] = "temp",
        [-QRELEASE_EREFUSED] = "refused", [-QRELEASE_EUNKNOWN] = "unknown",
    };
    char q[600];
    log_info("console: user=%s release id=%" PRId64 " rc=%d result=%s", w->user, id, rc,
             log_quote(q, sizeof q, why));
    /* see the result on a GET (a reload does not post again) */
    char to[96];
    snprintf(to, sizeof to, "/msg?id=%" PRId64 "&done=%s", id,
             rc <= 0 && -rc < (int)(sizeof done / sizeof done[0]) && done[-rc] ? done[-rc]
                                                                               : "failed");
    return console__redirect(c, to, NULL);
}

/* The notice for a done= code (our own fixed texts: nothing of the URL is
 * shown). Sets *error for failures. */
static const char *console__done_text(const char *done, bool *error)
{
    static const struct {
        const char *code, *text;
        bool error;
    } t[] = {
        {"released", "Released: the MTA accepted the message (its answer is in Status).", false},
        {"notheld", "Not released: the message is no longer held.", true},
        {"notfound", "No such message.", true},
        {"temp",
         "Not released, still held: the MTA could not take it now (see Status and "
         "the daemon's log); try again later.",
         true},
        {"refused", "Not released, still held: the MTA refused it (see Status).", true},
        {"unknown",
         "Sent, but the MTA did not answer: the message is left releasing and is "
         "not sent again by itself (check the MTA's log).",
         true},
        {"failed", "Not released: see the daemon's log.", true},
    };
    for (size_t i = 0; done && i < sizeof t / sizeof t[0]; i++)
        if (strcmp(done, t[i].code) == 0) {
            *error = t[i].error;
            return t[i].text;
        }
    return NULL;
}

static enum MHD_Result console__delete(struct MHD_Connection *c, const struct console__who *w,
                                       int64_t id)
{
    char err[256];
    struct qstore *qs = console__store(err, sizeof err);
    if (!qs)
        return console__view(c, w, id, "The quarantine index cannot be opened.", true);
    int rc = qstore_delete(qs, id);
    qstore_close(qs);
    log_info("console: user=%s delete id=%" PRId64 " rc=%d", w->user, id, rc);
    if (rc == 0)
        return console__redirect(c, "/?done=deleted", NULL);
    return console__view(c, w, id,
                         rc == QSTORE_ESTATE ? "Not deleted: the message is no longer held."
                                             : "Not deleted: see the daemon's log.",
                         true);
}

/* ---- dispatch ------------------------------------------------------------- */

static enum MHD_Result console__dispatch(struct MHD_Connection *c, const char *url, bool post,
                                         const struct console__req *rq)
{
    struct console__who w;
    bool in = console__session(c, &w);
    struct console_page_ctx ctx;
    console__ctx(&ctx, in ? &w : NULL);

    if (!post && strcmp(url, "/console.css") == 0) {
        buf_t b = BUF_INIT;
        buf_puts(&b, console_page_css);
        return console__send(c, MHD_HTTP_OK, "text/css; charset=utf-8", &b, NULL);
    }
    if (strcmp(url, "/login") == 0) {
        if (post)
            return console__login(c, rq);
        buf_t b = BUF_INIT;
        console__ctx(&ctx, NULL);
        console_page_login(&b, &ctx, NULL);
        return console__html(c, MHD_HTTP_OK, &b);
    }
    bool known = strcmp(url, "/") == 0 || strcmp(url, "/msg") == 0 ||
                 strcmp(url, "/release") == 0 || strcmp(url, "/delete") == 0 ||
                 strcmp(url, "/logout") == 0;
    if (!known)
        return console__page(c, MHD_HTTP_NOT_FOUND, &ctx, "Not found", "No such page.");
    if (!in) {
        if (!post)
            return console__redirect(c, "/login", NULL);
        return console__text(c, MHD_HTTP_FORBIDDEN, "forbidden: sign in first\n");
    }
    if (!post) {
        if (strcmp(url, "/") == 0)
            return console__list(c, &w);
        if (strcmp(url, "/msg") == 0) {
            bool error = false;
            const char *notice = console__done_text(console__arg(c, "done"), &error);
            return console__view(c, &w, console__id(console__arg(c, "id")), notice, error);
        }
        return console__text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use POST\n");
    }
    /* every state change: the session's CSRF token, compared in constant time */
    char token[CONSOLE_SESSION_HEX + 2] = "", idtext[24] = "";
    const char *body = rq->body.ptr ? rq->body.ptr : "";
    if (console_html_form_get(body, rq->body.len, "csrf", token, sizeof token) <= 0 ||
        !console_session_csrf_ok(w.csrf, token)) {
        char q[200];
        log_warn("console: user=%s POST %s refused: bad CSRF token", w.user,
                 log_quote(q, sizeof q, url));
        return console__text(c, MHD_HTTP_FORBIDDEN, "forbidden: missing or wrong CSRF token\n");
    }
    if (strcmp(url, "/logout") == 0) {
        console_session_destroy(g_sessions, w.id);
        log_info("console: user=%s signed out", w.user);
        char cookie[120];
        snprintf(cookie, sizeof cookie, "%s=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict",
                 CONSOLE_SESSION_COOKIE);
        return console__redirect(c, "/login", cookie);
    }
    /* a value that does not decode (id=12%zz) is no id: its decoded
     * prefix must not name message 12 */
    int64_t id = console_html_form_get(body, rq->body.len, "id", idtext, sizeof idtext) > 0
                     ? console__id(idtext)
                     : 0;
    if (id <= 0)
        return console__page(c, MHD_HTTP_BAD_REQUEST, &ctx, "Bad request", "No message id.");
    if (strcmp(url, "/release") == 0)
        return console__release(c, &w, id);
    if (strcmp(url, "/delete") == 0)
        return console__delete(c, &w, id);
    return console__text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET\n");
}

static atomic_bool g_serving; /* console_serve() was called: privileges are dropped */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)version;
    struct console__req *rq = *con_cls;
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    /* MHD listens from before the privilege drop (the socket and the
     * users file need root); a request served as root would create the
     * index's -wal/-shm files root-owned and lock the daemon out */
    if (!atomic_load(&g_serving))
        return console__text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "starting, try again\n");
    if (rq == NULL) {
        /* the headers: refuse what we can before any body is read */
        if (!post && strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
            strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
            return console__text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
        const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
        if (!host || !stats_http_host_ok(host, &g_addr, g_port, g_allowed))
            return console__text(c, 421, "misdirected request: unknown Host\n");
        if (post && !console__same_origin(c, host)) {
            char addr[INET6_ADDRSTRLEN + 8];
            console__client(c, addr, sizeof addr);
            char q[200];
            log_warn("console: client=%s cross-site POST %s refused", addr,
                     log_quote(q, sizeof q, url));
            return console__text(c, MHD_HTTP_FORBIDDEN, "forbidden: cross-site request\n");
        }
        rq = calloc(1, sizeof *rq);
        if (!rq)
            return MHD_NO;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (rq->body.len + *upload_data_size > CONSOLE__MAX_BODY)
            rq->too_big = true;
        else
            buf_append(&rq->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->too_big)
        return console__text(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n");
    return console__dispatch(c, url, post, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct console__req *rq = *con_cls;
    if (!rq)
        return;
    if (rq->body.ptr)
        explicit_bzero(rq->body.ptr, rq->body.len); /* may hold a password */
    buf_free(&rq->body);
    free(rq);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    log_warn("console: %s", line);
}

/* ---- start and stop ------------------------------------------------------- */

static int console__fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int console__fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static bool console__enabled(const struct cfg *cfg)
{
    return cfg->console_listen[0] && strcmp(cfg->console_listen, "no") != 0;
}

int console_check(const struct cfg *cfg, buf_t *errs)
{
    if (!console__enabled(cfg))
        return 0;
    const char *file = cfg->path ? cfg->path : "-";
    int line = 0;
    struct stats_http_addr a;
    char err[300];
    if (stats_http_parse_listen(cfg->console_listen, &a, err, sizeof err) != 0) {
        cfg_get(cfg, "console", "listen", &line);
        buf_printf(errs, "%s:%d: [console] listen: %s\n", file, line, err);
        return 1;
    }
    if (!cfg->console_users) {
        cfg_get(cfg, "console", "listen", &line);
        buf_printf(errs, "%s:%d: [console] listen needs [console] users (a password file)\n", file,
                   line);
        return 1;
    }
    if (!cfg->quarantine_dir) {
        cfg_get(cfg, "console", "listen", &line);
        buf_printf(errs, "%s:%d: [console] listen needs [server] quarantine_dir\n", file, line);
        return 1;
    }
    buf_t uerr = BUF_INIT;
    struct console_auth_users *u = console_auth_load(cfg->console_users, &uerr);
    if (!u) {
        cfg_get(cfg, "console", "users", &line);
        buf_printf(errs, "%s:%d: [console] users %s:\n", file, line, cfg->console_users);
        buf_append(errs, uerr.ptr, uerr.len);
    }
    console_auth_free(u);
    buf_free(&uerr);
    return u ? 0 : 1;
}

static int console__listener(const struct stats_http_addr *a, char *err, size_t errlen)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
    } sa;
    socklen_t salen;
    memset(&sa, 0, sizeof sa);
    int fam = a->family == STATS_HTTP_UNIX    ? AF_UNIX
              : a->family == STATS_HTTP_INET6 ? AF_INET6
                                              : AF_INET;
    if (fam == AF_UNIX) {
        struct stat st;
        if (lstat(a->path, &st) == 0) {
            if (!S_ISSOCK(st.st_mode))
                return console__fail(err, errlen, "%s exists and is not a socket", a->path);
            unlink(a->path);
        }
        sa.un.sun_family = AF_UNIX;
        snprintf(sa.un.sun_path, sizeof sa.un.sun_path, "%s", a->path);
        salen = sizeof sa.un;
    } else if (fam == AF_INET6) {
        sa.in6.sin6_family = AF_INET6;
        sa.in6.sin6_port = htons((uint16_t)a->port);
        inet_pton(AF_INET6, a->host, &sa.in6.sin6_addr);
        salen = sizeof sa.in6;
    } else {
        sa.in.sin_family = AF_INET;
        sa.in.sin_port = htons((uint16_t)a->port);
        inet_pton(AF_INET, a->host, &sa.in.sin_addr);
        salen = sizeof sa.in;
    }
    int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return console__fail(err, errlen, "socket: %s", strerror(errno));
    int one = 1;
    if (fam != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fam == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, &sa.sa, salen) < 0 || listen(fd, 32) < 0) {
        int e = errno;
        close(fd);
        return console__fail(err, errlen, "bind/listen: %s", strerror(e));
    }
    if (fam == AF_UNIX) {
        snprintf(g_unix_path, sizeof g_unix_path, "%s", a->path);
    } else {
        salen = sizeof sa;
        if (getsockname(fd, &sa.sa, &salen) == 0)
            g_port = ntohs(fam == AF_INET6 ? sa.in6.sin6_port : sa.in.sin_port);
    }
    return fd;
}

static void console__free_tables(void)
{
    console_auth_free(g_users);
    console_session_table_free(g_sessions);
    console_auth_throttle_free(g_throttle);
    g_users = NULL;
    g_sessions = NULL;
    g_throttle = NULL;
}

void console_serve(void)
{
    atomic_store(&g_serving, true);
}

int console_start(const struct cfg *cfg, char *err, size_t errlen)
{
    if (!console__enabled(cfg))
        return 0;
    if (g_daemon)
        return console__fail(err, errlen, "console already running");
    buf_t e = BUF_INIT;
    if (console_check(cfg, &e) != 0) {
        buf_append(&e, "", 1);
        char *nl = e.ptr;
        for (char *p; (p = strchr(nl, '\n')) && p[1];)
            *p = ' ', nl = p + 1; /* one log line */
        console__fail(err, errlen, "%s", e.ptr);
        err[strcspn(err, "\n")] = '\0';
        buf_free(&e);
        return -1;
    }
    buf_free(&e);
    g_users = console_auth_load(cfg->console_users, &e);
    buf_free(&e);
    uint64_t idle =
        cfg->console_session_timeout_ms ? cfg->console_session_timeout_ms : 30 * 60 * 1000;
    g_sessions = console_session_table_new(256, idle, 12ULL * 3600 * 1000);
    g_throttle = console_auth_throttle_new(
        1024, cfg->console_login_max_failures ? cfg->console_login_max_failures : 5,
        cfg->console_login_window_ms ? cfg->console_login_window_ms : 15 * 60 * 1000);
    if (!g_users || !g_sessions || !g_throttle) {
        console__free_tables();
        return console__fail(err, errlen, "out of memory");
    }
    stats_http_parse_listen(cfg->console_listen, &g_addr, NULL, 0);
    snprintf(g_allowed, sizeof g_allowed, "%s",
             cfg->console_allowed_hosts ? cfg->console_allowed_hosts : "");
    snprintf(g_qdir, sizeof g_qdir, "%s", cfg->quarantine_dir);
    snprintf(g_helo, sizeof g_helo, "%s", cfg->upstream_helo ? cfg->upstream_helo : cfg->hostname);
    g_uplen = 0;
    if (cfg->nupstream) {
        memcpy(&g_up, &cfg->upstream[0].sa, sizeof g_up);
        g_uplen = cfg->upstream[0].salen;
    }
    /* the live dashboard: the stats listener, when it is a TCP one */
    g_dashboard[0] = '\0';
    struct stats_http_addr sa;
    if (cfg->stats_listen[0] && stats_http_parse_listen(cfg->stats_listen, &sa, NULL, 0) == 0 &&
        sa.family != STATS_HTTP_UNIX) {
        int port = stats_http_port() ? stats_http_port() : sa.port;
        snprintf(g_dashboard, sizeof g_dashboard,
                 sa.family == STATS_HTTP_INET6 ? "http://[%s]:%d/" : "http://%s:%d/", sa.host,
                 port);
    }
    g_port = 0;
    g_unix_path[0] = '\0';
    int fd = console__listener(&g_addr, err, errlen);
    if (fd < 0) {
        console__free_tables();
        return -1;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG | MHD_USE_AUTO;
    if (g_addr.family == STATS_HTTP_INET6)
        flags |= MHD_USE_IPv6;
    g_daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)32, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)16,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)65536, MHD_OPTION_END);
    if (!g_daemon) {
        close(fd);
        if (g_unix_path[0])
            unlink(g_unix_path);
        console__free_tables();
        return console__fail(err, errlen, "libmicrohttpd failed to start");
    }
    bool loopback = g_addr.family == STATS_HTTP_UNIX || strncmp(g_addr.host, "127.", 4) == 0 ||
                    strcmp(g_addr.host, "::1") == 0;
    if (!loopback)
        log_warn("console: %s is not a loopback address: put a TLS reverse proxy in front "
                 "(cookies are Secure: browsers keep them only over HTTPS)",
                 cfg->console_listen);
    log_info("console: listening on %s (%zu user%s)", cfg->console_listen,
             console_auth_count(g_users), console_auth_count(g_users) == 1 ? "" : "s");
    return 0;
}

void console_stop(void)
{
    if (!g_daemon)
        return;
    MHD_stop_daemon(g_daemon); /* closes the listening socket */
    g_daemon = NULL;
    g_port = 0;
    if (g_unix_path[0]) {
        unlink(g_unix_path);
        g_unix_path[0] = '\0';
    }
    console__free_tables();
}

int console_port(void)
{
    return g_port;
}
