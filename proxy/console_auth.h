/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * console_auth: who may use the quarantine console.
 *
 * The password file ([console] users) holds one "name:HASH" per line; HASH
 * is a crypt(3) string of a strong method only: yescrypt ("$y$", what
 * `mkpasswd -m yescrypt` and Debian's passwd write) or sha512-crypt
 * ("$6$"). Blank lines and lines starting with '#' are ignored. Anything
 * else is an error naming FILE:LINE, and the file is refused as a whole.
 * The file is read once at start, before privileges are dropped (so it may
 * be root-only); the table is then read-only and shared by MHD's threads.
 *
 * Passwords are checked with crypt_rn (libcrypt, thread-safe with its own
 * buffer) and a constant-time comparison; an unknown user costs a hash
 * too, so timing does not tell which names exist.
 *
 * Failed logins are counted per client address (the throttle): after
 * `max_failures` within `window_ms` the address gets no password check
 * until the window has passed. The throttle is locked internally.
 */
#ifndef SLUICE_CONSOLE_AUTH_H
#define SLUICE_CONSOLE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct console_auth_users;
struct console_auth_throttle;

/* Parse a password file's text (len bytes; `file` names it in errors).
 * Returns the table, or NULL with one "FILE:LINE: message\n" per problem
 * appended to errors (also for an empty file: nobody could log in). */
struct console_auth_users *console_auth_parse(const char *file, const char *text, size_t len,
                                              buf_t *errors);
/* Read and parse the file at `path` (at most 1 MiB). NULL on error, with
 * "FILE: reason" or "FILE:LINE: message" lines in errors. */
struct console_auth_users *console_auth_load(const char *path, buf_t *errors);
void console_auth_free(struct console_auth_users *u);
/* The number of users. */
size_t console_auth_count(const struct console_auth_users *u);

/* Does `password` belong to `user`? Costs one crypt whatever the answer. */
bool console_auth_verify(const struct console_auth_users *u, const char *user,
                         const char *password);

/* A throttle of `slots` client addresses (the oldest forgotten first). */
struct console_auth_throttle *console_auth_throttle_new(size_t slots, unsigned max_failures,
                                                        uint64_t window_ms);
void console_auth_throttle_free(struct console_auth_throttle *t);
/* 0 when `addr` may try a password at `now` (ms), else the milliseconds
 * left before it may. max_failures 0 disables the throttle. */
uint64_t console_auth_throttle_wait(struct console_auth_throttle *t, const char *addr,
                                    uint64_t now);
/* Count a failed (ok false) or successful (ok true: forgets the address)
 * login from `addr`. */
void console_auth_throttle_note(struct console_auth_throttle *t, const char *addr, bool ok,
                                uint64_t now);
/* The same in one step, for a request: begin() answers like wait() and,
 * when the attempt may go ahead, counts it as a failure at once (under the
 * lock), so requests in flight together cannot pass max_failures; end()
 * with ok true forgets the address, with ok false leaves the count. */
uint64_t console_auth_throttle_begin(struct console_auth_throttle *t, const char *addr,
                                     uint64_t now);
void console_auth_throttle_end(struct console_auth_throttle *t, const char *addr, bool ok);

#endif
