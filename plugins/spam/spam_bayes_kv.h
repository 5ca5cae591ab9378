/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_bayes_kv: the Bayes token store's layout in a key-value store (the
 * daemon's shared state, [state] backend = memory | redis), shared by the
 * plugin and sluice-spam-learn so that both read and write the same keys.
 * Pure: no I/O.
 *
 * Keys (inside the plugin instance's namespace, which the daemon puts in
 * front: key_prefix + instance name + ":"; in Redis with the defaults
 * "sluice:spam:bayes:t:0123456789abcdef"):
 *   bayes:nspam, bayes:nham   messages learned (counters)
 *   bayes:t:<16 hex>          one token: spam * 2^32 + ham in one counter,
 *                             so a message's lookup is one MGET of one key
 *                             per token and its learning one INCRBY each
 *
 * The state keeps counters within +-2^53 (state.h), so the spam half holds
 * at most 2^21 - 1: each half saturates at a cap below its room
 * (SPAM_BAYES_KV_SPAM_MAX, _HAM_MAX) instead of making the whole learn
 * fail. The learner leaves out of a message's increments the tokens
 * already at the cap for its class (spam_bayes_kv_room, from the counts of
 * the lookup just before; sluice-spam-learn's script clamps). The margins
 * under the room (1023 spam, 65535 ham) absorb learns racing between that
 * lookup and the increment, so a half never carries into the other one.
 *   bayes:seen:<16 hex>       "s" or "h": a message learned, by its id
 *                             (spam_bayes_msg_id), so learning is once
 */
#ifndef SPAM_BAYES_KV_H
#define SPAM_BAYES_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spam_bayes.h"

#define SPAM_BAYES_KV_NSPAM "bayes:nspam"
#define SPAM_BAYES_KV_NHAM "bayes:nham"
#define SPAM_BAYES_KV_KEY_MAX 40 /* bytes of a token or seen key, NUL included */
#define SPAM_BAYES_KV_SPAM_ONE (INT64_C(1) << 32)
#define SPAM_BAYES_KV_SPAM_MAX ((UINT32_C(1) << 21) - 1024) /* 2,096,128 */
#define SPAM_BAYES_KV_HAM_MAX (UINT32_MAX - 65535)          /* 4,294,901,760 */

/* "bayes:t:<16 hex>" */
void spam_bayes_kv_token_key(uint64_t h, char out[SPAM_BAYES_KV_KEY_MAX]);
/* "bayes:seen:<16 hex>" */
void spam_bayes_kv_seen_key(uint64_t id, char out[SPAM_BAYES_KV_KEY_MAX]);
/* What one message adds to each of its tokens' counters: +-2^32 for spam,
 * +-1 for ham. */
int64_t spam_bayes_kv_delta(bool spam, bool forget);
/* Whether learning one more message of the class may add to a token
 * counted c: false once that class's half is at its cap (it saturates). */
bool spam_bayes_kv_room(struct spam_bayes_count c, bool spam);
/* A token counter's value (decimal text; NULL = absent) as counts. A value
 * that is not a number, or a half below zero, counts as 0. */
struct spam_bayes_count spam_bayes_kv_decode(const char *v, size_t len);
/* A total's value (decimal text; NULL = absent): 0 when absent or bad. */
uint32_t spam_bayes_kv_total(const char *v, size_t len);

#endif
