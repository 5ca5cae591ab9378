/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_bayes_db: the Bayes token store on one machine, in SQLite.
 *
 * Why SQLite: one file, crash-safe transactions (a learning run that dies
 * half-way leaves the store as it was), concurrent readers beside one
 * writer (WAL), and a well-kept library in Debian. The daemon never reads
 * it per message: it loads a snapshot (spam_bayes.h) and reloads it when
 * the file changed. The interface below is what a shared (Redis) store
 * has to provide as well: totals, per-token counts, learn/unlearn of one
 * message's token set, and a walk over every token for the snapshot.
 *
 * Schema: meta(k, v) with nspam/nham; tokens(h, spam, ham, atime);
 * seen(id, class): messages learned, by a hash of their Message-ID (or of
 * their tokens without one), so relearning a message is a no-op and
 * learning it as the other class moves it.
 */
#ifndef SPAM_BAYES_DB_H
#define SPAM_BAYES_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spam_bayes.h"

struct spam_bayes_db;

/* Open (and create when `create`) the store at path. NULL with a message
 * in err. */
struct spam_bayes_db *spam_bayes_db_open(const char *path, bool create, bool readonly, char *err,
                                         size_t errlen);
void spam_bayes_db_close(struct spam_bayes_db *db);

enum spam_bayes_learn {
    SPAM_BAYES_LEARNED,   /* counted */
    SPAM_BAYES_RELEARNED, /* had been learned as the other class: moved */
    SPAM_BAYES_ALREADY,   /* had been learned as this class: nothing to do */
    SPAM_BAYES_FORGOTTEN, /* unlearned */
    SPAM_BAYES_UNKNOWN,   /* unlearn of a message never learned */
    SPAM_BAYES_ERROR,
};

/* Learn (spam or ham) or forget (forget = true) one message given by its
 * id and distinct tokens. One transaction. */
enum spam_bayes_learn spam_bayes_db_learn(struct spam_bayes_db *db, uint64_t id,
                                          const uint64_t *tok, size_t n, bool spam, bool forget);
/* Batch several learn calls in one transaction (much faster). */
int spam_bayes_db_begin(struct spam_bayes_db *db);
int spam_bayes_db_commit(struct spam_bayes_db *db);

int spam_bayes_db_totals(struct spam_bayes_db *db, uint32_t *nspam, uint32_t *nham,
                         uint64_t *ntokens);
/* Everything, as a snapshot for the classifier; NULL on error. */
struct spam_bayes_snap *spam_bayes_db_snapshot(struct spam_bayes_db *db);
/* Drop tokens seen in fewer than `min` messages and not used for `days`. */
int spam_bayes_db_expire(struct spam_bayes_db *db, unsigned min, unsigned days, uint64_t *dropped);

const char *spam_bayes_db_error(struct spam_bayes_db *db);

/* The id a message is learned under: its Message-ID, else its tokens. */
uint64_t spam_bayes_msg_id(const struct spam_msg *m, const uint64_t *tok, size_t n);

#endif
