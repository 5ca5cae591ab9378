/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * console_session: the console's server-side sessions and CSRF tokens.
 *
 * A session is a random 256-bit id (getrandom), sent to the browser as a
 * cookie (64 lower-case hex digits) and nothing else: the user name, the
 * CSRF token and the expiry stay here. Each session has its own random
 * 256-bit CSRF token, put in every form as a hidden field and compared in
 * constant time on every POST. A session ends after `idle_ms` without a
 * request, after `max_age_ms` in any case, or at logout; when the table is
 * full the least recently used one is dropped.
 *
 * The table is locked internally: MHD answers requests on several threads.
 * Time is passed in (milliseconds of a monotonic clock) so that tests drive
 * expiry. Cookie-header parsing is pure.
 */
#ifndef SLUICE_CONSOLE_SESSION_H
#define SLUICE_CONSOLE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONSOLE_SESSION_HEX 65  /* 64 hex digits + NUL: ids and CSRF tokens */
#define CONSOLE_SESSION_USER 64 /* user names, NUL included */
#define CONSOLE_SESSION_COOKIE "sluice_console"

struct console_sessions;

/* A table of at most `max` sessions. NULL on allocation failure. */
struct console_sessions *console_session_table_new(size_t max, uint64_t idle_ms,
                                                   uint64_t max_age_ms);
/* Forget every session and free the table (NULL is a no-op). */
void console_session_table_free(struct console_sessions *t);

/* Start a session for `user` at `now`: writes its id and CSRF token. 0, or
 * -EIO when no randomness could be had (no session is made then). */
int console_session_create(struct console_sessions *t, const char *user, uint64_t now,
                           char id[CONSOLE_SESSION_HEX], char csrf[CONSOLE_SESSION_HEX]);
/* The live session with this id: true, with its user and CSRF token
 * copied out (either may be NULL), and its idle timer restarted. false for
 * an unknown, malformed or expired id (an expired one is removed). */
bool console_session_find(struct console_sessions *t, const char *id, uint64_t now,
                          char user[CONSOLE_SESSION_USER], char csrf[CONSOLE_SESSION_HEX]);
/* End the session with this id (logout); unknown ids are ignored. */
void console_session_destroy(struct console_sessions *t, const char *id);
/* The number of live sessions at `now` (for tests and the log). */
size_t console_session_count(struct console_sessions *t, uint64_t now);

/* Does `given` (from a form, any content, NULL allowed) equal the session's
 * token `want`? Constant time in the token's length. */
bool console_session_csrf_ok(const char *want, const char *given);

/* Extract our cookie's value from a Cookie request header (NULL allowed):
 * true only when it is exactly 64 lower-case hex digits (anything else, a
 * quoted value, CR/LF, ';' inside, a second cookie of the same name, is
 * treated as no session). */
bool console_session_cookie(const char *header, char out[CONSOLE_SESSION_HEX]);

#endif
