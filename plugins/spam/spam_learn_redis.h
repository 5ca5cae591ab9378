/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_learn_redis: sluice-spam-learn's side of the Bayes store in Redis
 * (the daemon's [state] backend = redis with bayes_store = state), in the
 * layout of spam_bayes_kv.h under the daemon's key namespace: key_prefix
 * ("sluice:" by default) + the plugin instance's name ("spam") + ":".
 *
 * Synchronous hiredis: a command-line tool may wait. Each message is
 * learned by one Lua script, atomic against the daemons reading and
 * autolearning at the same time, with the SQLite store's semantics: a
 * message learned once (by its id), learning it as the other class moves
 * it, forgetting takes it back; a count never goes below zero.
 */
#ifndef SPAM_LEARN_REDIS_H
#define SPAM_LEARN_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "spam_bayes.h"
#include "spam_bayes_db.h"

struct spam_learn_redis_conf {
    const char *addr;          /* "IP:PORT", "[IPv6]:PORT", "unix:/path" */
    const char *user;          /* ACL user or NULL */
    const char *password_file; /* or NULL */
    unsigned db;
    const char *key_prefix; /* as [state] key_prefix */
    const char *instance;   /* the plugin instance's name */
    unsigned seen_days;     /* a learned message's guard key expires then (0: 30) */
};

struct spam_learn_redis;

struct spam_learn_redis *spam_learn_redis_open(const struct spam_learn_redis_conf *c, char *err,
                                               size_t errlen);
void spam_learn_redis_close(struct spam_learn_redis *r);
const char *spam_learn_redis_error(const struct spam_learn_redis *r);

enum spam_bayes_learn spam_learn_redis_learn(struct spam_learn_redis *r, uint64_t id,
                                             const uint64_t *tok, size_t n, bool spam, bool forget);
/* Counts of tok[0..n) and the totals in one MGET. 0 or -1. */
int spam_learn_redis_counts(struct spam_learn_redis *r, const uint64_t *tok, size_t n,
                            struct spam_bayes_count *c, uint32_t *nspam, uint32_t *nham);
/* Totals, and the tokens (SCAN). 0 or -1. */
int spam_learn_redis_totals(struct spam_learn_redis *r, uint32_t *nspam, uint32_t *nham,
                            uint64_t *ntokens);
/* One line per token: "HASH SPAM HAM". 0 or -1. */
int spam_learn_redis_dump(struct spam_learn_redis *r, FILE *out);

#endif
