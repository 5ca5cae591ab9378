/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qstore: the quarantine index. One SQLite database, QUARANTINE_DIR/index.db
 * (WAL, busy_timeout, schema version in PRAGMA user_version), with one row
 * per held message; the message itself stays a 0600 file in the same
 * directory (quar.c writes it, fsynced, before the row is added).
 *
 * Why bodies are files and not BLOBs: the file is written and fsynced
 * first and is the commit point, so a message is never lost when the
 * index cannot be written (full disk, locked database, corrupt index):
 * `sluice-quarantine reindex` rebuilds rows from the files' X-Sluice-*
 * header lines. Large messages stream to and from disk without being held
 * in memory or in SQLite's page cache, and the index stays small and fast
 * to query from the daemon, the CLI and the console at the same time.
 *
 * Status of a row (enum qstore_status):
 *   held      -> releasing (qstore_claim, atomically, once)
 *   releasing -> released  (qstore_settle(ok)) | held (qstore_settle(!ok))
 *   held      -> deleted   (qstore_delete; the file is removed)
 *   held      -> expired   (qstore_expire; the file is removed)
 * Rows that left `held` are kept as history (the metrics count them) until
 * qstore_expire drops them, max_age after their status time.
 * A crash between claim and settle leaves the row `releasing`: it is never
 * sent again by itself (the MTA may have the message), and the sweep
 * leaves it and its file alone; only the CLI (`release --force`, after
 * QSTORE_STUCK_SECS) sends it again (at most one duplicate, only after a
 * crash, only when an admin asks). A crash between a row's update and its file's
 * unlink (settle, delete, expire) leaves the file: reindex skips files
 * whose name has a row, but once that row's history has expired it would
 * index the file again as held, so an admin deletes such strays rather
 * than reindexing them blindly.
 *
 * Threads: a struct qstore is one SQLite connection, used by one thread at
 * a time (open one per thread: the daemon's pool work, each console worker
 * and the CLI each have their own). Different connections and processes
 * share the database safely (WAL; a writer waits up to 5 s for another).
 * Every call blocks on disk: never call on the event loop or MHD's polling
 * thread.
 *
 * Errors: functions return 0 or a negative QSTORE_E*; qstore_error()
 * holds the text of the last QSTORE_EDB ("index.db: ...").
 * Strings handed in are copied; struct qstore_msg returned own their
 * strings (free with qstore_msg_free / qstore_msgs_free).
 */
#ifndef SLUICE_QSTORE_H
#define SLUICE_QSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QSTORE_INDEX_NAME "index.db"
#define QSTORE_STUCK_SECS 3600 /* a release unsettled this long: crashed */

enum {
    QSTORE_OK = 0,
    QSTORE_EDB = -1,       /* SQLite error; see qstore_error() */
    QSTORE_ENOTFOUND = -2, /* no such id */
    QSTORE_ESTATE = -3,    /* the row is not in the status the call needs */
    QSTORE_EIO = -4,       /* a file could not be read/removed (errno kept) */
};

enum qstore_status {
    QSTORE_HELD = 0,
    QSTORE_RELEASING,
    QSTORE_RELEASED,
    QSTORE_DELETED,
    QSTORE_EXPIRED,
    QSTORE_NSTATUS
};

/* One row. On add, id/status/status_time are ignored; NULL strings are
 * stored as "". */
struct qstore_msg {
    int64_t id;
    int64_t time; /* held at, Unix seconds */
    char *sid;    /* session id (log lines carry it) */
    char *client_addr, *client_name, *helo;
    char *tls;       /* "TLSv1.3 TLS_AES_256_GCM_SHA384" or "" */
    char *auth_user; /* "" when none */
    char *sender;    /* envelope sender as the client gave it, no <>; "" = null sender */
    char **rcpts;    /* envelope recipients (accepted ones), no <> */
    size_t nrcpts;
    uint64_t size; /* bytes of the body file */
    /* the decision record: the fields filtered on, and the whole JSON
     * object (the same shape as stats_decision_push's records) */
    char *plugin; /* instance that decided ("" if none) */
    char *reason;
    double score;
    char *symbols; /* "NAME,NAME,..." */
    char *record;  /* JSON object */
    enum qstore_status status;
    int64_t status_time; /* when the status last changed */
    char *note;          /* release: "to a@b: 250 2.0.0 Ok: queued as X"; else "" */
    char *path;          /* body file (absolute or relative to the dir as stored) */
};

struct qstore_filter {
    int64_t since, until; /* time >= since, time < until; 0: no bound */
    /* substrings, case-insensitive; NULL or "": no filter */
    const char *sender, *rcpt, *plugin, *reason;
    const char *text;     /* any of sender, rcpts, plugin, reason, symbols, sid, client */
    int status;           /* enum qstore_status, or -1 for any */
    size_t offset, limit; /* paging; limit 0: QSTORE_LIST_MAX */
    bool oldest_first;    /* default newest first (by time, then id) */
};
#define QSTORE_LIST_MAX 1000

struct qstore_counts {
    uint64_t n[QSTORE_NSTATUS];
    uint64_t bytes[QSTORE_NSTATUS];
};

struct qstore;

/* Open (creating the database and schema when `create`) DIR/index.db.
 * On failure NULL, and err says why. */
struct qstore *qstore_open(const char *dir, bool create, char *err, size_t errlen);
void qstore_close(struct qstore *qs);
const char *qstore_error(const struct qstore *qs);
const char *qstore_dir(const struct qstore *qs);

const char *qstore_status_name(enum qstore_status st);
/* -1 when unknown */
int qstore_status_parse(const char *name);

/* Add a held row; *id gets its id. */
int qstore_add(struct qstore *qs, const struct qstore_msg *m, int64_t *id);
/* Is there a row for this body file? 1 yes, 0 no, or QSTORE_EDB. */
int qstore_has_path(struct qstore *qs, const char *path);

/* Matching rows, in order, paged. *out is an array of *n rows (free with
 * qstore_msgs_free); *total (may be NULL) the number of matches in all. */
int qstore_list(struct qstore *qs, const struct qstore_filter *f, struct qstore_msg **out,
                size_t *n, size_t *total);
int qstore_get(struct qstore *qs, int64_t id, struct qstore_msg *out);
void qstore_msg_free(struct qstore_msg *m); /* frees the strings, not m */
void qstore_msgs_free(struct qstore_msg *v, size_t n);

/* Release, step 1: held -> releasing, atomically (one UPDATE ... WHERE
 * status='held'): of any number of callers in any processes exactly one
 * gets 0; the others QSTORE_ESTATE (the row's status in *now if not NULL)
 * or QSTORE_ENOTFOUND. With `force`, a row releasing for more than
 * QSTORE_STUCK_SECS is claimed as well (after a crash). */
int qstore_claim(struct qstore *qs, int64_t id, bool force, enum qstore_status *now);
/* Release, step 2: releasing -> released (delivered) or back to held. */
int qstore_settle(struct qstore *qs, int64_t id, bool delivered, const char *note);
/* held -> deleted; the body file is removed. */
int qstore_delete(struct qstore *qs, int64_t id);

/* Expire: held rows older than `before` (Unix seconds; 0: none by age),
 * then the oldest held rows while the held bytes exceed max_bytes (0: no
 * limit), become expired and their files are removed. History rows whose
 * status time is older than `before` are dropped. Counts of what was
 * expired go to *expired (may be NULL). */
int qstore_expire(struct qstore *qs, int64_t before, uint64_t max_bytes,
                  struct qstore_counts *expired);

/* Rows and bytes per status, for the gauges. */
int qstore_counts(struct qstore *qs, struct qstore_counts *out);

/* Parse the X-Sluice-* head of a quarantine file (the lines quar.c writes
 * before the message) into m (sid, client_addr, sender, rcpts, plugin,
 * reason, score, symbols, record). The head ends after its
 * X-Sluice-Decision line (files of older versions, without one, at the
 * first other line): X-Sluice-* fields of the message are the message's.
 * Pure: used by reindex and unit tests.
 * Returns the length of the head (where the message starts), or -1 if
 * this is not a quarantine file. */
long qstore_parse_head(const char *buf, size_t len, struct qstore_msg *m);

/* Re-index: add a row for every *.eml file in the directory that has
 * none (an index write failed, or the index was lost). *added (may be
 * NULL) counts them; unreadable files are skipped and counted in *bad. */
int qstore_reindex(struct qstore *qs, size_t *added, size_t *bad);

#endif
