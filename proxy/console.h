/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * console: the quarantine web console ([console] listen), served by the
 * daemon with libmicrohttpd.
 *
 *   GET  /login          the sign-in form
 *   POST /login          user, password -> session cookie, 303 to /
 *   POST /logout         csrf -> session ended, 303 to /login
 *   GET  /               held messages: search (sender, rcpt, plugin,
 *                        reason, since, until, status) and pages
 *   GET  /msg?id=N       one message: envelope, client, decision, headers,
 *                        body as text
 *   POST /release        id, csrf -> re-injected through the upstream MTA
 *                        (qrelease), exactly once
 *   POST /delete         id, csrf -> removed, 303 to /
 *   GET  /console.css    the stylesheet
 *
 * Refusals: a Host that does not name the listener 421; GET of a page
 * without a session 303 to /login; POST without a session, with a missing
 * or wrong CSRF token, or from another origin (Origin, Sec-Fetch-Site) 403;
 * a client over the failed-login limit 429; other methods 405.
 *
 * Threads: MHD runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION),
 * so a release, a blocking SMTP dialogue with the MTA on that connection's
 * thread, never holds up other requests, the SMTP event loop or MHD's
 * listening thread. Each request opens its own qstore connection.
 * console_start()/stop() are called from the main thread.
 *
 * TLS: none here. The listener is meant for loopback, with a reverse proxy
 * (nginx, HAProxy) terminating TLS in front (README: "Quarantine
 * console"); cookies are Secure, so browsers only keep them over HTTPS or
 * from a loopback address.
 */
#ifndef SLUICE_CONSOLE_H
#define SLUICE_CONSOLE_H

#include "buf.h"
#include "cfg.h"

/* --check: [console] listen needs users, the users file must load.
 * Appends "FILE:LINE: message" lines; 1 when something is wrong, else 0. */
int console_check(const struct cfg *cfg, buf_t *errs);
/* Start when [console] listen is set (else a no-op returning 0): reads the
 * users file (before privileges are dropped), binds, starts MHD. The
 * configuration's values are copied. 0, or -1 with err set. */
int console_start(const struct cfg *cfg, char *err, size_t errlen);
/* Stop the listener, its threads, forget sessions; no-op when not started. */
void console_stop(void);
/* Answer requests from now on (503 before): called once the server has
 * dropped its privileges, so no request is served as root. */
void console_serve(void);
/* The TCP port bound (useful with port 0); 0 when not running. */
int console_port(void);

#endif
