/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * authlimit: failed SMTP AUTH attempts per client address, across its
 * connections. A session's own limit (auth_max_failures) ends that
 * session; a guesser simply reconnects. This table remembers, per client
 * key (server_ip_key: an IPv4 address or an IPv6 network), how many
 * attempts failed in the current window; past the limit AUTH is refused
 * from that key until the window ends.
 *
 * Fixed windows: the first failure opens a window of `window_ms`; the
 * count restarts with the first failure after it. Coarser than a sliding
 * window, but one counter and one time per key, and a guesser gets at most
 * twice the limit across a window boundary.
 *
 * Bounded memory: a table of `cap` entries (a power of two) with open
 * addressing; an entry whose window has ended is free again. When every
 * slot holds a live window, new keys are not tracked (fail open: counted in
 * authlimit_untracked) rather than evicting a key under attack.
 *
 * Pure: no I/O, no clock of its own (times are passed in), no libuv; one
 * owner (the server), loop thread only.
 */
#ifndef SLUICE_AUTHLIMIT_H
#define SLUICE_AUTHLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct authlimit;

/* limit 0: never blocks (the table is not even allocated). */
struct authlimit *authlimit_new(size_t cap, unsigned limit, uint64_t window_ms);
void authlimit_free(struct authlimit *al);
/* A reload may change the limit and window; counts are kept. */
void authlimit_set(struct authlimit *al, unsigned limit, uint64_t window_ms);

/* true: `key` reached the limit in its current window; *retry_ms gets the
 * time left (optional). */
bool authlimit_blocked(const struct authlimit *al, const char *key, uint64_t now_ms,
                       uint64_t *retry_ms);
/* One more failure of `key`; returns its count in the current window (0
 * when it could not be tracked). */
unsigned authlimit_fail(struct authlimit *al, const char *key, uint64_t now_ms);
/* An attempt counted by authlimit_fail() turned out not to fail (success,
 * or no answer): taken back if its window is still the current one. */
void authlimit_refund(struct authlimit *al, const char *key, uint64_t now_ms);
/* How many failures went untracked because the table was full. */
uint64_t authlimit_untracked(const struct authlimit *al);

#endif
