/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats_http: serves the stats over HTTP with libmicrohttpd.
 *
 * MHD runs its own polling thread (MHD_USE_INTERNAL_POLLING_THREAD), so the
 * SMTP loop never waits for a scraper. Each request renders a fresh
 * document (stats_prom.c or stats_json.c) into a buf_t whose memory is
 * handed to MHD (MHD_RESPMEM_MUST_FREE): nothing is shared between
 * requests.
 *
 * We create the listening socket ourselves for every address family and give
 * it to MHD (MHD_OPTION_LISTEN_SOCKET): one code path for TCP and unix
 * sockets, and port 0 can be resolved with getsockname(). The socket belongs
 * to this module; MHD_stop_daemon() closes it (MHD owns a socket passed in).
 */
#include "stats_http.h"

#include <arpa/inet.h>
#include <errno.h>
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
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "stats.h"
#include "stats_json.h"
#include "stats_prom.h"

static struct MHD_Daemon *g_daemon;
static struct stats_http_addr g_addr; /* the listener, for the Host check */
static char g_allowed[512];           /* extra Host names */
static char g_token[256];             /* bearer token, "" for none */
static int g_port;
static char g_unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

int stats_http_parse_listen(const char *listen, struct stats_http_addr *out, char *err,
                            size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (listen == NULL || listen[0] == '\0')
        return fail(err, errlen, -EINVAL, "stats listen address is empty");
    if (strncmp(listen, "unix:", 5) == 0) {
        const char *path = listen + 5;
        if (path[0] != '/')
            return fail(err, errlen, -EINVAL, "stats listen \"%s\": unix path must be absolute",
                        listen);
        if (strlen(path) >= sizeof out->path)
            return fail(err, errlen, -EINVAL, "stats listen \"%s\": unix path too long", listen);
        out->family = STATS_HTTP_UNIX;
        snprintf(out->path, sizeof out->path, "%s", path);
        return 0;
    }

    const char *host = listen, *colon;
    size_t hostlen;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (close == NULL || close[1] != ':')
            return fail(err, errlen, -EINVAL, "stats listen \"%s\": expected [addr]:port", listen);
        host = listen + 1;
        hostlen = (size_t)(close - host);
        colon = close + 1;
        out->family = STATS_HTTP_INET6;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL)
            return fail(err, errlen, -EINVAL, "stats listen \"%s\": expected addr:port", listen);
        hostlen = (size_t)(colon - listen);
        out->family = STATS_HTTP_INET;
    }
    if (hostlen == 0 || hostlen >= sizeof out->host)
        return fail(err, errlen, -EINVAL, "stats listen \"%s\": bad address", listen);
    memcpy(out->host, host, hostlen);
    out->host[hostlen] = '\0';

    const char *p = colon + 1;
    long port = 0;
    if (*p == '\0')
        return fail(err, errlen, -EINVAL, "stats listen \"%s\": missing port", listen);
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || port > 65535)
            return fail(err, errlen, -EINVAL, "stats listen \"%s\": bad port", listen);
        port = port * 10 + (*p - '0');
    }
    if (port > 65535)
        return fail(err, errlen, -EINVAL, "stats listen \"%s\": bad port", listen);
    out->port = (int)port;

    unsigned char tmp[sizeof(struct in6_addr)];
    int af = out->family == STATS_HTTP_INET6 ? AF_INET6 : AF_INET;
    if (inet_pton(af, out->host, tmp) != 1)
        return fail(err, errlen, -EINVAL, "stats listen \"%s\": \"%s\" is not a numeric %s address",
                    listen, out->host, af == AF_INET6 ? "IPv6" : "IPv4");
    return 0;
}

/* Create, bind and listen; returns the fd or a negative errno. */
static int open_listener(const struct stats_http_addr *a, char *err, size_t errlen)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
    } sa;
    socklen_t salen;
    int fam;

    memset(&sa, 0, sizeof sa);
    if (a->family == STATS_HTTP_UNIX) {
        fam = AF_UNIX;
        sa.un.sun_family = AF_UNIX;
        snprintf(sa.un.sun_path, sizeof sa.un.sun_path, "%s", a->path);
        salen = sizeof sa.un;
        /* Replace a stale socket from a previous run, never a regular file. */
        struct stat st;
        if (lstat(a->path, &st) == 0) {
            if (!S_ISSOCK(st.st_mode))
                return fail(err, errlen, -EEXIST, "stats socket %s exists and is not a socket",
                            a->path);
            unlink(a->path);
        }
    } else if (a->family == STATS_HTTP_INET6) {
        fam = AF_INET6;
        sa.in6.sin6_family = AF_INET6;
        sa.in6.sin6_port = htons((uint16_t)a->port);
        inet_pton(AF_INET6, a->host, &sa.in6.sin6_addr);
        salen = sizeof sa.in6;
    } else {
        fam = AF_INET;
        sa.in.sin_family = AF_INET;
        sa.in.sin_port = htons((uint16_t)a->port);
        inet_pton(AF_INET, a->host, &sa.in.sin_addr);
        salen = sizeof sa.in;
    }

    int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(err, errlen, -errno, "stats socket: %s", strerror(errno));
    int one = 1;
    if (fam != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fam == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, &sa.sa, salen) < 0 || listen(fd, 64) < 0) {
        int e = errno;
        close(fd);
        return fail(err, errlen, -e, "stats listen: bind/listen: %s", strerror(e));
    }
    if (fam != AF_UNIX) {
        salen = sizeof sa;
        if (getsockname(fd, &sa.sa, &salen) == 0)
            g_port = ntohs(fam == AF_INET6 ? sa.in6.sin6_port : sa.in.sin_port);
    }
    return fd;
}

/* ---- Requests ------------------------------------------------------------- */

static enum MHD_Result send_resp(struct MHD_Connection *c, unsigned status, const char *ctype,
                                 struct MHD_Response *r)
{
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    /* The dashboard uses only its own files and fetches only /stats. */
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    return send_resp(c, status, "text/plain; charset=utf-8", r);
}

/* Hand the rendered buffer's memory to MHD, which frees it with free(). */
static enum MHD_Result send_buf(struct MHD_Connection *c, const char *ctype, buf_t *b)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(b->len, b->ptr, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        buf_free(b);
        return MHD_NO;
    }
    return send_resp(c, MHD_HTTP_OK, ctype, r);
}

void stats_http_access(const char *allowed_hosts, const char *token)
{
    snprintf(g_allowed, sizeof g_allowed, "%s", allowed_hosts ? allowed_hosts : "");
    snprintf(g_token, sizeof g_token, "%s", token ? token : "");
}

/* Is `name` (len bytes) one of the space/comma separated names? */
static bool stats_http__listed(const char *name, size_t len, const char *list)
{
    const char *p = list ? list : "";
    while (*p) {
        p += strspn(p, " ,\t");
        size_t n = strcspn(p, " ,\t");
        if (n == len && n && strncasecmp(p, name, n) == 0)
            return true;
        p += n;
    }
    return false;
}

bool stats_http_host_ok(const char *host, const struct stats_http_addr *a, int port,
                        const char *allowed_hosts)
{
    if (!host)
        return true;
    if (a->family == STATS_HTTP_UNIX)
        return true; /* no browser reaches a unix socket */
    /* name[:port] or [v6][:port] */
    const char *name = host, *end, *colon = NULL;
    if (*host == '[') {
        name = host + 1;
        end = strchr(name, ']');
        if (!end)
            return false;
        if (end[1] == ':')
            colon = end + 1;
        else if (end[1])
            return false;
    } else {
        colon = strchr(host, ':');
        if (colon && strchr(colon + 1, ':'))
            return false; /* a bare IPv6 address needs brackets */
        end = colon ? colon : host + strlen(host);
    }
    if (colon) {
        /* digits only: strtol() alone would take " 80" and "+80" */
        size_t nd = strspn(colon + 1, "0123456789");
        if (nd == 0 || nd > 5 || colon[1 + nd] || strtol(colon + 1, NULL, 10) != port)
            return false;
    }
    size_t len = (size_t)(end - name);
    if (len == strlen(a->host) && strncasecmp(name, a->host, len) == 0)
        return true;
    bool loopback = strncmp(a->host, "127.", 4) == 0 || strcmp(a->host, "::1") == 0;
    if (loopback && len == 9 && strncasecmp(name, "localhost", 9) == 0)
        return true;
    return stats_http__listed(name, len, allowed_hosts);
}

/* Constant-time comparison of the presented credentials with the token. */
static bool stats_http__token_ok(struct MHD_Connection *c)
{
    const char *auth =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    const char *given = auth + 7;
    size_t n = strlen(g_token), m = strlen(given);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(g_token[i] ^ (i < m ? given[i] : 0));
    return diff == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;

    /* Answer on the first call: we never read a request body. */
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return send_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");

    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (!stats_http_host_ok(host, &g_addr, g_port, g_allowed))
        return send_text(c, 421, "misdirected request: unknown Host\n");
    bool probe = strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0;
    if (g_token[0] && !probe && !stats_http__token_ok(c)) {
        struct MHD_Response *r = MHD_create_response_from_buffer(
            sizeof "unauthorized\n" - 1, (void *)"unauthorized\n", MHD_RESPMEM_PERSISTENT);
        if (r)
            MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"sluice\"");
        return send_resp(c, MHD_HTTP_UNAUTHORIZED, "text/plain; charset=utf-8", r);
    }
    if (strcmp(url, "/metrics") == 0 || strcmp(url, "/stats") == 0) {
        buf_t b = BUF_INIT;
        bool metrics = url[1] == 'm';
        if (metrics)
            stats_prom_render(&b, stats_now());
        else
            stats_json_render(&b, stats_now());
        return send_buf(c,
                        metrics ? "text/plain; version=0.0.4; charset=utf-8"
                                : "application/json",
                        &b);
    }
    if (strcmp(url, "/healthz") == 0)
        return send_text(c, MHD_HTTP_OK, "ok\n");
    if (strcmp(url, "/readyz") == 0) {
        char why[64], text[80];
        bool ready = stats_ready(why, sizeof why);
        snprintf(text, sizeof text, "%s%s\n", ready ? "" : "not ready: ", why);
        return send_text(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text);
    }
    const char *path = strcmp(url, "/") == 0 ? "/index.html" : url;
    for (size_t i = 0; i < stats_http_assets_count; i++) {
        const struct stats_http_asset *a = &stats_http_assets[i];
        if (strcmp(path, a->path) == 0) {
            struct MHD_Response *r = MHD_create_response_from_buffer(
                a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
            return send_resp(c, MHD_HTTP_OK, a->content_type, r);
        }
    }
    return send_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* MHD's own error messages go to our log. */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    log_warn("stats_http: %s", line);
}

int stats_http_start(const char *listen, char *err, size_t errlen)
{
    struct stats_http_addr a;
    if (g_daemon != NULL)
        return fail(err, errlen, -EALREADY, "stats listener already running");
    int rc = stats_http_parse_listen(listen, &a, err, errlen);
    if (rc < 0)
        return rc;
    g_port = 0;
    g_addr = a;
    int fd = open_listener(&a, err, errlen);
    if (fd < 0)
        return fd;

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_AUTO;
    if (a.family == STATS_HTTP_INET6)
        flags |= MHD_USE_IPv6;
    g_daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, NULL,
        /* The logger first, or MHD logs the options' errors its own way. */
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)16,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
        MHD_OPTION_END);
    if (g_daemon == NULL) {
        close(fd);
        if (a.family == STATS_HTTP_UNIX)
            unlink(a.path);
        g_port = 0;
        return fail(err, errlen, -EIO, "stats listener on %s: libmicrohttpd failed to start",
                    listen);
    }
    g_unix_path[0] = '\0';
    if (a.family == STATS_HTTP_UNIX)
        snprintf(g_unix_path, sizeof g_unix_path, "%s", a.path);
    log_info("stats: listening on %s", listen);
    return 0;
}

void stats_http_stop(void)
{
    if (g_daemon == NULL)
        return;
    /* MHD_stop_daemon() closes the listening socket it was given. */
    MHD_stop_daemon(g_daemon);
    g_daemon = NULL;
    g_port = 0;
    if (g_unix_path[0] != '\0') {
        unlink(g_unix_path);
        g_unix_path[0] = '\0';
    }
}

int stats_http_port(void)
{
    return g_port;
}
