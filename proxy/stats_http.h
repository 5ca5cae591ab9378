/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * stats_http: the read-only HTTP listener for the stats (libmicrohttpd, on
 * its own thread, so a slow scraper never touches the SMTP loop; it only
 * reads the registry in stats.c, through stats_prom and stats_json).
 * stats_http_start()/stop() are called from the main thread; requests are
 * answered on MHD's thread. The module owns the listening socket (handed
 * to MHD) and the unix socket file it created.
 *
 *   GET /metrics   Prometheus text format 0.0.4
 *   GET /stats     the same figures as JSON, plus the last decision records
 *   GET /healthz   200 "ok" while the process runs
 *   GET /readyz    200 when listening, upstream reachable and chain loaded,
 *                  else 503 with the reason
 *   GET /          the dashboard (index.html, dashboard.js, dashboard.css)
 * HEAD works wherever GET does; any other method gets 405 with
 * "Allow: GET, HEAD"; an unknown path gets 404. There are no write endpoints.
 */
#ifndef SLUICE_STATS_HTTP_H
#define SLUICE_STATS_HTTP_H

#include <stdbool.h>

#include <stddef.h>

/*
 * Start listening on `listen`: "127.0.0.1:9025", "[::1]:9025" (numeric
 * addresses only; port 0 picks a free port, see stats_http_port()) or
 * "unix:/path" (a stale socket file at path is replaced; it is removed
 * again by stats_http_stop()). 0 on success; a negative errno-style code
 * with a message in err (if not NULL) otherwise. Call stats_init() first.
 * One listener per process: a second start without a stop is -EALREADY.
 */
int stats_http_start(const char *listen, char *err, size_t errlen);
/* Who may read (call before start). The Host header must name the listen
 * address (or localhost on a loopback listener, or one of `allowed_hosts`,
 * separated by spaces or commas), else 421: a web page on another name
 * cannot read the stats through DNS rebinding. With a non-empty `token`
 * every request but /healthz and /readyz needs "Authorization: Bearer
 * TOKEN" (else 401). Copies both. */
void stats_http_access(const char *allowed_hosts, const char *token);
/* Stop the listener and its thread; no-op when not started. */
void stats_http_stop(void);
/* The TCP port actually bound (useful with port 0); 0 if none / unix. */
int stats_http_port(void);

/* A parsed listen address (pure; unit-tested). */
enum stats_http_family { STATS_HTTP_INET = 0, STATS_HTTP_INET6, STATS_HTTP_UNIX };

struct stats_http_addr {
    enum stats_http_family family;
    char host[64];  /* numeric address, without brackets (inet/inet6) */
    int port;       /* 0..65535 (inet/inet6) */
    char path[108]; /* socket path (unix) */
};

/* 0, or -EINVAL with a message in err. */
/* Does a Host header value name this listener (pure; unit-tested)?
 * host NULL (HTTP/1.0 without Host) is accepted: browsers always send one. */
bool stats_http_host_ok(const char *host, const struct stats_http_addr *a, int port,
                        const char *allowed_hosts);
int stats_http_parse_listen(const char *listen, struct stats_http_addr *out, char *err,
                            size_t errlen);

/* The embedded dashboard files, generated at build time from proxy/dashboard/. */
struct stats_http_asset {
    const char *path;         /* URL path, e.g. "/dashboard.js" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
};

extern const struct stats_http_asset stats_http_assets[];
extern const size_t stats_http_assets_count;

#endif
