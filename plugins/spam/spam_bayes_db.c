/* SPDX-License-Identifier: GPL-2.0-or-later */
/* spam_bayes_db: the SQLite token store; see spam_bayes_db.h. */
#include "spam_bayes_db.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pstr.h"

struct spam_bayes_db {
    sqlite3 *h;
    sqlite3_stmt *get_seen, *put_seen, *del_seen, *upd_tok, *get_meta, *put_meta;
    int in_batch;
    char err[256];
};

static const char db__schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS tokens(h INTEGER PRIMARY KEY, spam INTEGER NOT NULL DEFAULT 0,"
    " ham INTEGER NOT NULL DEFAULT 0, atime INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS seen(id INTEGER PRIMARY KEY, class INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta VALUES('nspam', 0);"
    "INSERT OR IGNORE INTO meta VALUES('nham', 0);"
    "INSERT OR IGNORE INTO meta VALUES('version', 1);";

static void db__seterr(struct spam_bayes_db *db, const char *what)
{
    snprintf(db->err, sizeof db->err, "%s: %s", what, db->h ? sqlite3_errmsg(db->h) : "no db");
}

const char *spam_bayes_db_error(struct spam_bayes_db *db)
{
    return db->err;
}

static int db__prep(struct spam_bayes_db *db, sqlite3_stmt **st, const char *sql)
{
    if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        db__seterr(db, "prepare");
        return -1;
    }
    return 0;
}

struct spam_bayes_db *spam_bayes_db_open(const char *path, bool create, bool readonly, char *err,
                                         size_t errlen)
{
    struct spam_bayes_db *db = pstr_xcalloc(1, sizeof *db);
    int flags =
        readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &db->h, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, db->h ? sqlite3_errmsg(db->h) : "cannot open");
        spam_bayes_db_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db->h, 5000);
    char *msg = NULL;
    if (!readonly && sqlite3_exec(db->h, db__schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, msg ? msg : "cannot create the schema");
        sqlite3_free(msg);
        spam_bayes_db_close(db);
        return NULL;
    }
    if (db__prep(db, &db->get_meta, "SELECT v FROM meta WHERE k = ?1") ||
        (!readonly &&
         (db__prep(db, &db->get_seen, "SELECT class FROM seen WHERE id = ?1") ||
          db__prep(db, &db->put_seen, "INSERT OR REPLACE INTO seen VALUES(?1, ?2)") ||
          db__prep(db, &db->del_seen, "DELETE FROM seen WHERE id = ?1") ||
          db__prep(db, &db->upd_tok,
                   "INSERT INTO tokens(h, spam, ham, atime) VALUES(?1, max(?2, 0), max(?3, 0), ?4)"
                   " ON CONFLICT(h) DO UPDATE SET spam = max(spam + ?2, 0),"
                   " ham = max(ham + ?3, 0), atime = ?4") ||
          db__prep(db, &db->put_meta, "UPDATE meta SET v = max(v + ?2, 0) WHERE k = ?1")))) {
        snprintf(err, errlen, "%s: %s (not a sluice Bayes store?)", path, db->err);
        spam_bayes_db_close(db);
        return NULL;
    }
    return db;
}

void spam_bayes_db_close(struct spam_bayes_db *db)
{
    if (!db)
        return;
    sqlite3_stmt *all[] = {db->get_seen, db->put_seen, db->del_seen,
                           db->upd_tok,  db->get_meta, db->put_meta};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(db->h);
    free(db);
}

static int db__exec(struct spam_bayes_db *db, const char *sql)
{
    if (sqlite3_exec(db->h, sql, NULL, NULL, NULL) != SQLITE_OK) {
        db__seterr(db, sql);
        return -1;
    }
    return 0;
}

int spam_bayes_db_begin(struct spam_bayes_db *db)
{
    if (db__exec(db, "BEGIN IMMEDIATE") != 0)
        return -1;
    db->in_batch = 1;
    return 0;
}

int spam_bayes_db_commit(struct spam_bayes_db *db)
{
    db->in_batch = 0;
    return db__exec(db, "COMMIT");
}

static int db__meta_add(struct spam_bayes_db *db, const char *k, int64_t d)
{
    sqlite3_reset(db->put_meta);
    sqlite3_bind_text(db->put_meta, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_int64(db->put_meta, 2, d);
    if (sqlite3_step(db->put_meta) != SQLITE_DONE) {
        db__seterr(db, "meta");
        return -1;
    }
    return 0;
}

static int db__count(struct spam_bayes_db *db, const uint64_t *tok, size_t n, int dspam, int dham)
{
    int64_t now = (int64_t)(time(NULL) / 86400); /* days: enough for expiry */
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(db->upd_tok);
        sqlite3_bind_int64(db->upd_tok, 1, (int64_t)tok[i]);
        sqlite3_bind_int(db->upd_tok, 2, dspam);
        sqlite3_bind_int(db->upd_tok, 3, dham);
        sqlite3_bind_int64(db->upd_tok, 4, now);
        if (sqlite3_step(db->upd_tok) != SQLITE_DONE) {
            db__seterr(db, "token");
            return -1;
        }
    }
    return (db__meta_add(db, "nspam", dspam) || db__meta_add(db, "nham", dham)) ? -1 : 0;
}

enum spam_bayes_learn spam_bayes_db_learn(struct spam_bayes_db *db, uint64_t id,
                                          const uint64_t *tok, size_t n, bool spam, bool forget)
{
    if (!db->upd_tok) {
        snprintf(db->err, sizeof db->err, "store opened read-only");
        return SPAM_BAYES_ERROR;
    }
    bool own = !db->in_batch;
    if (own && db__exec(db, "BEGIN IMMEDIATE") != 0)
        return SPAM_BAYES_ERROR;
    int was = -1;
    sqlite3_reset(db->get_seen);
    sqlite3_bind_int64(db->get_seen, 1, (int64_t)id);
    int rc = sqlite3_step(db->get_seen);
    if (rc == SQLITE_ROW)
        was = sqlite3_column_int(db->get_seen, 0);
    else if (rc != SQLITE_DONE)
        goto fail;
    enum spam_bayes_learn out;
    if (forget) {
        if (was < 0) {
            out = SPAM_BAYES_UNKNOWN;
        } else {
            if (db__count(db, tok, n, was ? -1 : 0, was ? 0 : -1) != 0)
                goto fail;
            sqlite3_reset(db->del_seen);
            sqlite3_bind_int64(db->del_seen, 1, (int64_t)id);
            if (sqlite3_step(db->del_seen) != SQLITE_DONE)
                goto fail;
            out = SPAM_BAYES_FORGOTTEN;
        }
    } else if (was == (spam ? 1 : 0)) {
        out = SPAM_BAYES_ALREADY;
    } else {
        if (was >= 0 && db__count(db, tok, n, was ? -1 : 0, was ? 0 : -1) != 0)
            goto fail;
        if (db__count(db, tok, n, spam ? 1 : 0, spam ? 0 : 1) != 0)
            goto fail;
        sqlite3_reset(db->put_seen);
        sqlite3_bind_int64(db->put_seen, 1, (int64_t)id);
        sqlite3_bind_int(db->put_seen, 2, spam ? 1 : 0);
        if (sqlite3_step(db->put_seen) != SQLITE_DONE)
            goto fail;
        out = was >= 0 ? SPAM_BAYES_RELEARNED : SPAM_BAYES_LEARNED;
    }
    if (own && db__exec(db, "COMMIT") != 0)
        goto fail;
    return out;
fail:
    if (!db->err[0])
        db__seterr(db, "learn");
    if (own)
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    return SPAM_BAYES_ERROR;
}

static int64_t db__meta(struct spam_bayes_db *db, const char *k)
{
    sqlite3_reset(db->get_meta);
    sqlite3_bind_text(db->get_meta, 1, k, -1, SQLITE_STATIC);
    if (sqlite3_step(db->get_meta) != SQLITE_ROW)
        return -1;
    return sqlite3_column_int64(db->get_meta, 0);
}

int spam_bayes_db_totals(struct spam_bayes_db *db, uint32_t *nspam, uint32_t *nham,
                         uint64_t *ntokens)
{
    int64_t s = db__meta(db, "nspam"), h = db__meta(db, "nham");
    if (s < 0 || h < 0) {
        db__seterr(db, "totals");
        return -1;
    }
    *nspam = (uint32_t)s;
    *nham = (uint32_t)h;
    if (ntokens) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db->h, "SELECT count(*) FROM tokens", -1, &st, NULL) != SQLITE_OK)
            return -1;
        *ntokens = sqlite3_step(st) == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
        sqlite3_finalize(st);
    }
    return 0;
}

struct spam_bayes_snap *spam_bayes_db_snapshot(struct spam_bayes_db *db)
{
    /* One read transaction: totals and tokens agree. */
    if (db__exec(db, "BEGIN") != 0)
        return NULL;
    uint32_t ns, nh;
    uint64_t nt;
    struct spam_bayes_snap *s = NULL;
    sqlite3_stmt *st = NULL;
    if (spam_bayes_db_totals(db, &ns, &nh, &nt) != 0)
        goto out;
    if (sqlite3_prepare_v2(db->h, "SELECT h, spam, ham FROM tokens", -1, &st, NULL) != SQLITE_OK) {
        db__seterr(db, "snapshot");
        goto out;
    }
    s = spam_bayes_snap_new((size_t)nt, ns, nh);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct spam_bayes_count c = {(uint32_t)sqlite3_column_int64(st, 1),
                                     (uint32_t)sqlite3_column_int64(st, 2)};
        if (c.spam || c.ham)
            spam_bayes_snap_put(s, (uint64_t)sqlite3_column_int64(st, 0), c);
    }
    if (rc != SQLITE_DONE) {
        db__seterr(db, "snapshot");
        spam_bayes_snap_free(s);
        s = NULL;
    }
out:
    sqlite3_finalize(st);
    sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL);
    return s;
}

int spam_bayes_db_expire(struct spam_bayes_db *db, unsigned min, unsigned days, uint64_t *dropped)
{
    sqlite3_stmt *st;
    int64_t before = (int64_t)(time(NULL) / 86400) - days;
    if (sqlite3_prepare_v2(db->h, "DELETE FROM tokens WHERE spam + ham < ?1 AND atime < ?2", -1,
                           &st, NULL) != SQLITE_OK) {
        db__seterr(db, "expire");
        return -1;
    }
    sqlite3_bind_int(st, 1, (int)min);
    sqlite3_bind_int64(st, 2, before);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        db__seterr(db, "expire");
        return -1;
    }
    *dropped = (uint64_t)sqlite3_changes(db->h);
    return 0;
}

uint64_t spam_bayes_msg_id(const struct spam_msg *m, const uint64_t *tok, size_t n)
{
    for (size_t i = 0; i < m->nhdrs; i++) {
        if (strcasecmp(m->hdrs[i].name, "Message-ID") == 0 && m->hdrs[i].raw[0]) {
            char buf[300];
            int k = snprintf(buf, sizeof buf, "mid:%s", m->hdrs[i].raw);
            return spam_bayes_hash(buf, (size_t)k < sizeof buf ? (size_t)k : sizeof buf - 1);
        }
    }
    /* No Message-ID: the token set itself. */
    return spam_bayes_hash((const char *)tok, n * sizeof *tok);
}
