/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qstore: the quarantine index in SQLite; see qstore.h. */
#include "qstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "xalloc.h"

#define QSTORE_SCHEMA_VERSION 1
#define QSTORE_HEAD_MAX (16u << 20)

struct qstore {
    sqlite3 *h;
    char *dir;
    char err[512];
};

static const char qstore__schema[] =
    "CREATE TABLE IF NOT EXISTS msgs("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " time INTEGER NOT NULL,"
    " sid TEXT NOT NULL DEFAULT '', client_addr TEXT NOT NULL DEFAULT '',"
    " client_name TEXT NOT NULL DEFAULT '', helo TEXT NOT NULL DEFAULT '',"
    " tls TEXT NOT NULL DEFAULT '', auth_user TEXT NOT NULL DEFAULT '',"
    " sender TEXT NOT NULL DEFAULT '', rcpts TEXT NOT NULL DEFAULT '',"
    " size INTEGER NOT NULL DEFAULT 0,"
    " plugin TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',"
    " score REAL NOT NULL DEFAULT 0, symbols TEXT NOT NULL DEFAULT '',"
    " record TEXT NOT NULL DEFAULT '{}',"
    " status INTEGER NOT NULL DEFAULT 0, status_time INTEGER NOT NULL,"
    " note TEXT NOT NULL DEFAULT '',"
    " path TEXT NOT NULL UNIQUE);"
    "CREATE INDEX IF NOT EXISTS msgs_time ON msgs(time);"
    "CREATE INDEX IF NOT EXISTS msgs_status ON msgs(status, time);";

static const char *const qstore__names[QSTORE_NSTATUS] = {"held", "releasing", "released",
                                                          "deleted", "expired"};

const char *qstore_status_name(enum qstore_status st)
{
    return (unsigned)st < QSTORE_NSTATUS ? qstore__names[st] : "unknown";
}

int qstore_status_parse(const char *name)
{
    for (int i = 0; i < QSTORE_NSTATUS; i++)
        if (strcmp(name, qstore__names[i]) == 0)
            return i;
    return -1;
}

static int qstore__dberr(struct qstore *qs, const char *what)
{
    snprintf(qs->err, sizeof qs->err, "%s/%s: %s: %s", qs->dir, QSTORE_INDEX_NAME, what,
             sqlite3_errmsg(qs->h));
    return QSTORE_EDB;
}

const char *qstore_error(const struct qstore *qs)
{
    return qs->err;
}

const char *qstore_dir(const struct qstore *qs)
{
    return qs->dir;
}

struct qstore *qstore_open(const char *dir, bool create, char *err, size_t errlen)
{
    struct qstore *qs = xcalloc(1, sizeof *qs);
    qs->dir = xstrdup(dir);
    size_t dl = strlen(qs->dir);
    while (dl > 1 && qs->dir[dl - 1] == '/')
        qs->dir[--dl] = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", qs->dir, QSTORE_INDEX_NAME);
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
    /* The index holds envelope data of other people's mail: 0600 like the
     * bodies. SQLite would create it 0644 & ~umask, and changing the
     * process's umask here would race the other threads that open the
     * index (the console's) or create files; so the file is made first,
     * and SQLite gives its -wal and -shm files the database's mode. */
    if (create) {
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0)
            close(fd);
    }
    int rc = sqlite3_open_v2(path, &qs->h, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, qs->h ? sqlite3_errmsg(qs->h) : "cannot open");
        qstore_close(qs);
        return NULL;
    }
    sqlite3_busy_timeout(qs->h, 5000);
    sqlite3_stmt *st = NULL;
    int ver = -1;
    if (sqlite3_exec(qs->h, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     NULL) != SQLITE_OK)
        goto fail;
    if (sqlite3_prepare_v2(qs->h, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        goto fail;
    if (sqlite3_step(st) == SQLITE_ROW)
        ver = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (ver > QSTORE_SCHEMA_VERSION) {
        snprintf(err, errlen, "%s: schema version %d is newer than this program's (%d)", path, ver,
                 QSTORE_SCHEMA_VERSION);
        qstore_close(qs);
        return NULL;
    }
    if (ver < QSTORE_SCHEMA_VERSION) {
        char sql[sizeof qstore__schema + 64];
        snprintf(sql, sizeof sql, "BEGIN IMMEDIATE;%sPRAGMA user_version=%d;COMMIT;",
                 qstore__schema, QSTORE_SCHEMA_VERSION);
        if (sqlite3_exec(qs->h, sql, NULL, NULL, NULL) != SQLITE_OK) {
            sqlite3_exec(qs->h, "ROLLBACK", NULL, NULL, NULL);
            goto fail;
        }
    }
    return qs;
fail:
    snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(qs->h));
    qstore_close(qs);
    return NULL;
}

void qstore_close(struct qstore *qs)
{
    if (!qs)
        return;
    if (qs->h)
        sqlite3_close_v2(qs->h);
    free(qs->dir);
    free(qs);
}

/* ---- rows ------------------------------------------------------------- */

static const char *qstore__base(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static char *qstore__col(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return xstrdup(t ? (const char *)t : "");
}

#define QSTORE__COLS                                                                               \
    "id,time,sid,client_addr,client_name,helo,tls,auth_user,sender,rcpts,size,plugin,reason,"      \
    "score,symbols,record,status,status_time,note,path"

static void qstore__row(struct qstore *qs, sqlite3_stmt *st, struct qstore_msg *m)
{
    memset(m, 0, sizeof *m);
    m->id = sqlite3_column_int64(st, 0);
    m->time = sqlite3_column_int64(st, 1);
    m->sid = qstore__col(st, 2);
    m->client_addr = qstore__col(st, 3);
    m->client_name = qstore__col(st, 4);
    m->helo = qstore__col(st, 5);
    m->tls = qstore__col(st, 6);
    m->auth_user = qstore__col(st, 7);
    m->sender = qstore__col(st, 8);
    const char *r = (const char *)sqlite3_column_text(st, 9);
    size_t cap = 0;
    while (r && *r) {
        const char *e = strchr(r, '\n');
        size_t l = e ? (size_t)(e - r) : strlen(r);
        m->rcpts = xgrow(m->rcpts, &cap, m->nrcpts + 1, sizeof *m->rcpts, 4);
        m->rcpts[m->nrcpts++] = xstrndup(r, l);
        r = e ? e + 1 : r + l;
    }
    m->size = (uint64_t)sqlite3_column_int64(st, 10);
    m->plugin = qstore__col(st, 11);
    m->reason = qstore__col(st, 12);
    m->score = sqlite3_column_double(st, 13);
    m->symbols = qstore__col(st, 14);
    m->record = qstore__col(st, 15);
    int s = sqlite3_column_int(st, 16);
    m->status = (s >= 0 && s < QSTORE_NSTATUS) ? (enum qstore_status)s : QSTORE_HELD;
    m->status_time = sqlite3_column_int64(st, 17);
    m->note = qstore__col(st, 18);
    const char *p = (const char *)sqlite3_column_text(st, 19);
    size_t pl = strlen(qs->dir) + strlen(p ? p : "") + 2;
    m->path = xmalloc(pl);
    snprintf(m->path, pl, "%s/%s", qs->dir, p ? p : "");
}

void qstore_msg_free(struct qstore_msg *m)
{
    if (!m)
        return;
    free(m->sid);
    free(m->client_addr);
    free(m->client_name);
    free(m->helo);
    free(m->tls);
    free(m->auth_user);
    free(m->sender);
    for (size_t i = 0; i < m->nrcpts; i++)
        free(m->rcpts[i]);
    free(m->rcpts);
    free(m->plugin);
    free(m->reason);
    free(m->symbols);
    free(m->record);
    free(m->note);
    free(m->path);
    memset(m, 0, sizeof *m);
}

void qstore_msgs_free(struct qstore_msg *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        qstore_msg_free(&v[i]);
    free(v);
}

static void qstore__bind_str(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_TRANSIENT);
}

int qstore_add(struct qstore *qs, const struct qstore_msg *m, int64_t *id)
{
    static const char sql[] =
        "INSERT INTO msgs(time,sid,client_addr,client_name,helo,tls,auth_user,sender,rcpts,size,"
        "plugin,reason,score,symbols,record,status,status_time,note,path)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,?,'',?)";
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(qs->h, sql, -1, &st, NULL) != SQLITE_OK)
        return qstore__dberr(qs, "add");
    buf_t rc = BUF_INIT;
    for (size_t i = 0; i < m->nrcpts; i++) {
        if (i)
            buf_append(&rc, "\n", 1);
        buf_puts(&rc, m->rcpts[i]);
    }
    sqlite3_bind_int64(st, 1, m->time);
    qstore__bind_str(st, 2, m->sid);
    qstore__bind_str(st, 3, m->client_addr);
    qstore__bind_str(st, 4, m->client_name);
    qstore__bind_str(st, 5, m->helo);
    qstore__bind_str(st, 6, m->tls);
    qstore__bind_str(st, 7, m->auth_user);
    qstore__bind_str(st, 8, m->sender);
    qstore__bind_str(st, 9, rc.ptr);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)m->size);
    qstore__bind_str(st, 11, m->plugin);
    qstore__bind_str(st, 12, m->reason);
    sqlite3_bind_double(st, 13, m->score);
    qstore__bind_str(st, 14, m->symbols);
    qstore__bind_str(st, 15, m->record && *m->record ? m->record : "{}");
    sqlite3_bind_int64(st, 16, m->time);
    qstore__bind_str(st, 17, m->path ? qstore__base(m->path) : "");
    int r = sqlite3_step(st);
    buf_free(&rc);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return qstore__dberr(qs, "add");
    if (id)
        *id = sqlite3_last_insert_rowid(qs->h);
    return 0;
}

int qstore_has_path(struct qstore *qs, const char *path)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(qs->h, "SELECT 1 FROM msgs WHERE path=?", -1, &st, NULL) != SQLITE_OK)
        return qstore__dberr(qs, "lookup");
    qstore__bind_str(st, 1, qstore__base(path));
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r == SQLITE_ROW)
        return 1;
    if (r == SQLITE_DONE)
        return 0;
    return qstore__dberr(qs, "lookup");
}

/* WHERE clause for a filter; binds follow in order (qstore__bind_filter). */
static void qstore__where(buf_t *sql, const struct qstore_filter *f)
{
    buf_puts(sql, " WHERE 1");
    if (f->since)
        buf_puts(sql, " AND time >= ?");
    if (f->until)
        buf_puts(sql, " AND time < ?");
    if (f->status >= 0)
        buf_puts(sql, " AND status = ?");
    /* instr on lower(): a plain substring (no LIKE wildcards to escape) */
    if (f->sender && *f->sender)
        buf_puts(sql, " AND instr(lower(sender), lower(?)) > 0");
    if (f->rcpt && *f->rcpt)
        buf_puts(sql, " AND instr(lower(rcpts), lower(?)) > 0");
    if (f->plugin && *f->plugin)
        buf_puts(sql, " AND instr(lower(plugin), lower(?)) > 0");
    if (f->reason && *f->reason)
        buf_puts(sql, " AND instr(lower(reason), lower(?)) > 0");
    if (f->text && *f->text)
        buf_puts(sql, " AND instr(lower(sender||' '||rcpts||' '||plugin||' '||reason||' '||"
                      "symbols||' '||sid||' '||client_addr||' '||client_name), lower(?)) > 0");
}

static int qstore__bind_filter(sqlite3_stmt *st, const struct qstore_filter *f)
{
    int i = 1;
    if (f->since)
        sqlite3_bind_int64(st, i++, f->since);
    if (f->until)
        sqlite3_bind_int64(st, i++, f->until);
    if (f->status >= 0)
        sqlite3_bind_int(st, i++, f->status);
    const char *s[] = {f->sender, f->rcpt, f->plugin, f->reason, f->text};
    for (size_t k = 0; k < sizeof s / sizeof *s; k++)
        if (s[k] && *s[k])
            qstore__bind_str(st, i++, s[k]);
    return i;
}

int qstore_list(struct qstore *qs, const struct qstore_filter *f, struct qstore_msg **out,
                size_t *n, size_t *total)
{
    *out = NULL;
    *n = 0;
    size_t limit = f->limit && f->limit < QSTORE_LIST_MAX ? f->limit : QSTORE_LIST_MAX;
    buf_t sql = BUF_INIT;
    sqlite3_stmt *st = NULL;
    int ret = 0;
    if (total) {
        buf_puts(&sql, "SELECT count(*) FROM msgs");
        qstore__where(&sql, f);
        if (sqlite3_prepare_v2(qs->h, sql.ptr, -1, &st, NULL) != SQLITE_OK) {
            ret = qstore__dberr(qs, "list");
            goto out;
        }
        qstore__bind_filter(st, f);
        if (sqlite3_step(st) != SQLITE_ROW) {
            ret = qstore__dberr(qs, "list");
            goto out;
        }
        *total = (size_t)sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        st = NULL;
        buf_reset(&sql);
    }
    buf_puts(&sql, "SELECT " QSTORE__COLS " FROM msgs");
    qstore__where(&sql, f);
    buf_printf(&sql, " ORDER BY time %s, id %s LIMIT ? OFFSET ?", f->oldest_first ? "ASC" : "DESC",
               f->oldest_first ? "ASC" : "DESC");
    if (sqlite3_prepare_v2(qs->h, sql.ptr, -1, &st, NULL) != SQLITE_OK) {
        ret = qstore__dberr(qs, "list");
        goto out;
    }
    int i = qstore__bind_filter(st, f);
    sqlite3_bind_int64(st, i++, (sqlite3_int64)limit);
    sqlite3_bind_int64(st, i, (sqlite3_int64)f->offset);
    size_t cap = 0;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        *out = xgrow(*out, &cap, *n + 1, sizeof **out, 16);
        qstore__row(qs, st, &(*out)[(*n)++]);
    }
    if (r != SQLITE_DONE) {
        ret = qstore__dberr(qs, "list");
        qstore_msgs_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
out:
    sqlite3_finalize(st);
    buf_free(&sql);
    return ret;
}

int qstore_get(struct qstore *qs, int64_t id, struct qstore_msg *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(qs->h, "SELECT " QSTORE__COLS " FROM msgs WHERE id=?", -1, &st, NULL) !=
        SQLITE_OK)
        return qstore__dberr(qs, "get");
    sqlite3_bind_int64(st, 1, id);
    int r = sqlite3_step(st);
    int ret = 0;
    if (r == SQLITE_ROW)
        qstore__row(qs, st, out);
    else if (r == SQLITE_DONE)
        ret = QSTORE_ENOTFOUND;
    else
        ret = qstore__dberr(qs, "get");
    sqlite3_finalize(st);
    return ret;
}

/* The status of a row: >= 0, QSTORE_ENOTFOUND or QSTORE_EDB. */
static int qstore__status(struct qstore *qs, int64_t id)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(qs->h, "SELECT status FROM msgs WHERE id=?", -1, &st, NULL) != SQLITE_OK)
        return qstore__dberr(qs, "status");
    sqlite3_bind_int64(st, 1, id);
    int r = sqlite3_step(st);
    int ret = r == SQLITE_ROW    ? sqlite3_column_int(st, 0)
              : r == SQLITE_DONE ? QSTORE_ENOTFOUND
                                 : qstore__dberr(qs, "status");
    sqlite3_finalize(st);
    return ret;
}

/* One UPDATE; *changed gets the number of rows it changed. */
static int qstore__update(struct qstore *qs, const char *sql, int64_t id, int64_t a,
                          const char *note, int *changed)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(qs->h, sql, -1, &st, NULL) != SQLITE_OK)
        return qstore__dberr(qs, "update");
    int n = sqlite3_bind_parameter_count(st);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)time(NULL));
    sqlite3_bind_int64(st, 2, id);
    if (n >= 3)
        sqlite3_bind_int64(st, 3, a);
    if (n >= 4)
        qstore__bind_str(st, 4, note);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return qstore__dberr(qs, "update");
    *changed = sqlite3_changes(qs->h);
    return 0;
}

/* After an UPDATE that changed nothing: why. */
static int qstore__why(struct qstore *qs, int64_t id, enum qstore_status *now)
{
    int s = qstore__status(qs, id);
    if (s < 0)
        return s;
    if (now)
        *now = (enum qstore_status)s;
    return QSTORE_ESTATE;
}

int qstore_claim(struct qstore *qs, int64_t id, bool force, enum qstore_status *now)
{
    /* The claim is this one statement: SQLite runs a write under the
     * database's write lock, so two claimers in any processes serialize
     * and the second sees status != held. */
    int changed = 0;
    int rc = qstore__update(qs,
                            "UPDATE msgs SET status=1, status_time=?1 WHERE id=?2 AND (status=0"
                            " OR (?3 AND status=1 AND status_time < ?1 - " /* stuck */
                            "3600))",
                            id, force, NULL, &changed);
    if (rc != 0)
        return rc;
    if (changed == 1)
        return 0;
    return qstore__why(qs, id, now);
}

int qstore_settle(struct qstore *qs, int64_t id, bool delivered, const char *note)
{
    int changed = 0;
    int rc = qstore__update(qs,
                            "UPDATE msgs SET status=CASE WHEN ?3 THEN 2 ELSE 0 END,"
                            " status_time=?1, note=?4 WHERE id=?2 AND status=1",
                            id, delivered, note, &changed);
    if (rc != 0)
        return rc;
    if (changed == 1) {
        if (delivered) {
            /* the body goes once the release is recorded */
            struct qstore_msg m;
            if (qstore_get(qs, id, &m) == 0) {
                unlink(m.path);
                qstore_msg_free(&m);
            }
        }
        return 0;
    }
    return qstore__why(qs, id, NULL);
}

int qstore_delete(struct qstore *qs, int64_t id)
{
    int changed = 0;
    int rc = qstore__update(qs, "UPDATE msgs SET status=3, status_time=?1 WHERE id=?2 AND status=0",
                            id, 0, NULL, &changed);
    if (rc != 0)
        return rc;
    if (changed != 1)
        return qstore__why(qs, id, NULL);
    struct qstore_msg m;
    if (qstore_get(qs, id, &m) != 0)
        return 0;
    int ret = 0;
    if (unlink(m.path) != 0 && errno != ENOENT) {
        snprintf(qs->err, sizeof qs->err, "%s: %s", m.path, strerror(errno));
        ret = QSTORE_EIO;
    }
    qstore_msg_free(&m);
    return ret;
}

int qstore_expire(struct qstore *qs, int64_t before, uint64_t max_bytes,
                  struct qstore_counts *expired)
{
    if (expired)
        memset(expired, 0, sizeof *expired);
    /* Which rows go is decided in one write transaction; the files are
     * removed after it committed (a crash in between leaves files without
     * a held row: reindex skips them as indexed, see qstore_reindex). */
    if (sqlite3_exec(qs->h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return qstore__dberr(qs, "expire");
    sqlite3_stmt *sel = NULL, *upd = NULL;
    char **paths = NULL;
    size_t npaths = 0, cap = 0;
    int ret = 0;
    if (sqlite3_prepare_v2(qs->h,
                           "SELECT id, time, size, path FROM msgs WHERE status=0 ORDER BY"
                           " time ASC, id ASC",
                           -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(qs->h, "UPDATE msgs SET status=4, status_time=? WHERE id=?", -1, &upd,
                           NULL) != SQLITE_OK) {
        ret = qstore__dberr(qs, "expire");
        goto out;
    }
    uint64_t held = 0;
    {
        sqlite3_stmt *sum;
        if (sqlite3_prepare_v2(qs->h, "SELECT coalesce(sum(size),0) FROM msgs WHERE status=0", -1,
                               &sum, NULL) != SQLITE_OK) {
            ret = qstore__dberr(qs, "expire");
            goto out;
        }
        if (sqlite3_step(sum) == SQLITE_ROW)
            held = (uint64_t)sqlite3_column_int64(sum, 0);
        sqlite3_finalize(sum);
    }
    int64_t now = time(NULL);
    int r;
    while ((r = sqlite3_step(sel)) == SQLITE_ROW) {
        int64_t t = sqlite3_column_int64(sel, 1);
        uint64_t size = (uint64_t)sqlite3_column_int64(sel, 2);
        bool old = before && t < before;
        bool over = max_bytes && held > max_bytes;
        if (!old && !over)
            break; /* ordered by time: the rest are younger and fit */
        sqlite3_bind_int64(upd, 1, now);
        sqlite3_bind_int64(upd, 2, sqlite3_column_int64(sel, 0));
        if (sqlite3_step(upd) != SQLITE_DONE) {
            ret = qstore__dberr(qs, "expire");
            goto out;
        }
        sqlite3_reset(upd);
        held -= size < held ? size : held;
        if (expired) {
            expired->n[QSTORE_EXPIRED]++;
            expired->bytes[QSTORE_EXPIRED] += size;
        }
        const char *p = (const char *)sqlite3_column_text(sel, 3);
        paths = xgrow(paths, &cap, npaths + 1, sizeof *paths, 16);
        paths[npaths++] = xstrdup(p ? p : "");
    }
    if (r != SQLITE_ROW && r != SQLITE_DONE) {
        ret = qstore__dberr(qs, "expire");
        goto out;
    }
    if (before) {
        /* history: finished rows leave max_age after they finished */
        sqlite3_stmt *del;
        if (sqlite3_prepare_v2(qs->h, "DELETE FROM msgs WHERE status>=2 AND status_time < ?", -1,
                               &del, NULL) != SQLITE_OK) {
            ret = qstore__dberr(qs, "expire");
            goto out;
        }
        sqlite3_bind_int64(del, 1, before);
        r = sqlite3_step(del);
        sqlite3_finalize(del);
        if (r != SQLITE_DONE) {
            ret = qstore__dberr(qs, "expire");
            goto out;
        }
    }
out:
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    if (ret == 0 && sqlite3_exec(qs->h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        ret = qstore__dberr(qs, "expire commit");
    if (ret != 0) {
        sqlite3_exec(qs->h, "ROLLBACK", NULL, NULL, NULL);
        if (expired)
            memset(expired, 0, sizeof *expired);
    }
    for (size_t i = 0; i < npaths; i++) {
        if (ret == 0 && *paths[i]) {
            char full[4096];
            snprintf(full, sizeof full, "%s/%s", qs->dir, paths[i]);
            unlink(full);
        }
        free(paths[i]);
    }
    free(paths);
    return ret;
}

int qstore_counts(struct qstore *qs, struct qstore_counts *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            qs->h, "SELECT status, count(*), coalesce(sum(size),0) FROM msgs GROUP BY status", -1,
            &st, NULL) != SQLITE_OK)
        return qstore__dberr(qs, "counts");
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        int s = sqlite3_column_int(st, 0);
        if (s < 0 || s >= QSTORE_NSTATUS)
            continue;
        out->n[s] = (uint64_t)sqlite3_column_int64(st, 1);
        out->bytes[s] = (uint64_t)sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return qstore__dberr(qs, "counts");
    return 0;
}

/* ---- the file head ------------------------------------------------------ */

/* A JSON string member "key":"..." at the top of a record we wrote
 * (top-level keys come before nested ones). Decodes \" \\ \/ \n \t and
 * \u00XX; other escapes keep the character. NULL when absent. */
static char *qstore__json_str(const char *rec, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(rec, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    buf_t b = BUF_INIT;
    while (*p && *p != '"') {
        if (*p == '\\' && p[1]) {
            p++;
            char c = *p;
            if (c == 'n')
                c = '\n';
            else if (c == 't')
                c = '\t';
            else if (c == 'r')
                c = '\r';
            else if (c == 'u' && p[1] && p[2] && p[3] && p[4]) {
                char hex[5] = {p[1], p[2], p[3], p[4], 0};
                unsigned long v = strtoul(hex, NULL, 16);
                c = v < 0x100 ? (char)v : '?';
                p += 4;
            }
            buf_append(&b, &c, 1);
            p++;
        } else {
            buf_append(&b, p++, 1);
        }
    }
    char *s = xstrdup(b.ptr ? b.ptr : "");
    buf_free(&b);
    return s;
}

static char *qstore__angle(const char *v, size_t n)
{
    if (n >= 2 && v[0] == '<' && v[n - 1] == '>')
        return xstrndup(v + 1, n - 2);
    return xstrndup(v, n);
}

long qstore_parse_head(const char *buf, size_t len, struct qstore_msg *m)
{
    memset(m, 0, sizeof *m);
    size_t pos = 0, cap = 0;
    bool first = true;
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        if (!nl)
            break;
        size_t ll = (size_t)(nl - line);
        if (ll && line[ll - 1] == '\r')
            ll--;
        static const char pre[] = "X-Sluice-";
        if (ll < sizeof pre - 1 || strncasecmp(line, pre, sizeof pre - 1) != 0)
            break;
        const char *colon = memchr(line, ':', ll);
        if (!colon)
            break;
        size_t nl_name = (size_t)(colon - line);
        const char *v = colon + 1;
        while (v < line + ll && *v == ' ')
            v++;
        size_t vl = (size_t)(line + ll - v);
        if (first) {
            if (nl_name != 19 || strncasecmp(line, "X-Sluice-Quarantine", 19) != 0)
                return -1;
            first = false;
            /* sid=SID client=ADDR */
            char *tmp = xstrndup(v, vl);
            char *save = NULL; /* strtok_r: the console parses heads on many threads */
            for (char *tok = strtok_r(tmp, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
                if (strncmp(tok, "sid=", 4) == 0 && !m->sid)
                    m->sid = xstrdup(tok + 4);
                else if (strncmp(tok, "client=", 7) == 0 && !m->client_addr)
                    m->client_addr = xstrdup(tok + 7);
            }
            free(tmp);
        } else if (nl_name == 22 && strncasecmp(line, "X-Sluice-Envelope-From", 22) == 0) {
            if (!m->sender) /* quar.c writes one */
                m->sender = qstore__angle(v, vl);
        } else if (nl_name == 20 && strncasecmp(line, "X-Sluice-Envelope-To", 20) == 0) {
            m->rcpts = xgrow(m->rcpts, &cap, m->nrcpts + 1, sizeof *m->rcpts, 4);
            m->rcpts[m->nrcpts++] = qstore__angle(v, vl);
        } else if (nl_name == 17 && strncasecmp(line, "X-Sluice-Decision", 17) == 0) {
            /* quar.c's last line: what follows is the message, whose own
             * X-Sluice-* fields (a client writes what it likes) are not
             * envelope */
            m->record = xstrndup(v, vl);
            pos = (size_t)(nl - buf) + 1;
            break;
        }
        pos = (size_t)(nl - buf) + 1;
    }
    if (first)
        return -1;
    if (m->record) {
        m->plugin = qstore__json_str(m->record, "plugin");
        m->reason = qstore__json_str(m->record, "reason");
        m->client_name = qstore__json_str(m->record, "client_name");
        m->helo = qstore__json_str(m->record, "helo");
        m->tls = qstore__json_str(m->record, "tls");
        m->auth_user = qstore__json_str(m->record, "auth_user");
        const char *s = strstr(m->record, "\"score\":");
        if (s)
            m->score = strtod(s + 8, NULL);
        /* symbols: every "name":"X" member */
        buf_t syms = BUF_INIT;
        for (const char *p = m->record; (p = strstr(p, "{\"name\":\"")) != NULL; p++) {
            char *n = qstore__json_str(p, "name");
            if (n) {
                if (syms.len)
                    buf_append(&syms, ",", 1);
                buf_puts(&syms, n);
                free(n);
            }
        }
        m->symbols = xstrdup(syms.ptr ? syms.ptr : "");
        buf_free(&syms);
    }
    return (long)pos;
}

int qstore_reindex(struct qstore *qs, size_t *added, size_t *bad)
{
    size_t a = 0, b = 0;
    DIR *d = opendir(qs->dir);
    if (!d) {
        snprintf(qs->err, sizeof qs->err, "%s: %s", qs->dir, strerror(errno));
        return QSTORE_EIO;
    }
    int ret = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl < 5 || strcmp(de->d_name + nl - 4, ".eml") != 0)
            continue;
        int has = qstore_has_path(qs, de->d_name);
        if (has < 0) {
            ret = has;
            break;
        }
        if (has)
            continue;
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", qs->dir, de->d_name);
        int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            if (fd >= 0)
                close(fd);
            b++;
            continue;
        }
        /* The head is what quar.c wrote before the message: a few lines,
         * one per recipient (max_recipients bounds them) and the record,
         * which lists them again: QSTORE_HEAD_MAX holds it. */
        size_t want = (uint64_t)sb.st_size < QSTORE_HEAD_MAX ? (size_t)sb.st_size : QSTORE_HEAD_MAX;
        char *head = xmalloc(want + 1);
        size_t got = 0;
        while (got < want) {
            ssize_t r = read(fd, head + got, want - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        close(fd);
        struct qstore_msg m;
        if (got == 0 || qstore_parse_head(head, got, &m) < 0) {
            free(head);
            b++;
            continue;
        }
        free(head);
        /* TIME-SID.eml: the time it was held */
        m.time = strtoll(de->d_name, NULL, 10);
        if (m.time <= 0)
            m.time = (int64_t)sb.st_mtime;
        m.size = (uint64_t)sb.st_size;
        m.path = xstrdup(de->d_name);
        int rc = qstore_add(qs, &m, NULL);
        qstore_msg_free(&m);
        if (rc != 0) {
            ret = rc;
            break;
        }
        a++;
    }
    closedir(d);
    if (added)
        *added = a;
    if (bad)
        *bad = b;
    return ret;
}
