/* SPDX-License-Identifier: GPL-2.0-or-later */
/* quar: quarantine files written on the thread pool; see quar.h. */
#include "quar.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "json.h"
#include "log.h"
#include "qstore.h"
#include "stats.h"
#include "xalloc.h"

struct quar_req {
    uv_work_t work;
    struct tx *tx; /* referenced */
    buf_t head;    /* X-Sluice-* lines, made on the loop */
    char path[1024];
    char dir[1024];
    struct qstore_msg row; /* the index row, made on the loop */
    int rc;
    int idx_rc; /* the index write: 0 or QSTORE_E* */
    char idx_err[512];
    bool cancelled;
    quar_cb cb;
    void *ud;
};

static int quar__write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync a directory, so that a name made or removed in it survives a
 * power failure. */
static int quar__sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rc;
}

static void quar__work(uv_work_t *w)
{
    struct quar_req *q = w->data;
    /* Written under a temporary name (not *.eml: reindex never takes a
     * half-written file), fsynced, then linked to its name (link, unlike
     * rename, refuses an existing name) and the directory fsynced: only
     * then is the message on disk, and only then is the client told so. */
    char tmp[sizeof q->dir + sizeof q->path + 8];
    const char *base = strrchr(q->path, '/');
    base = base ? base + 1 : q->path;
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", q->dir, base);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        q->rc = -errno;
        return;
    }
    const char *data;
    size_t len;
    tx_render(q->tx, &data, &len);
    int rc = quar__write_all(fd, q->head.ptr, q->head.len);
    if (rc == 0)
        rc = quar__write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    bool linked = false;
    if (rc == 0) {
        if (link(tmp, q->path) == 0)
            linked = true;
        else
            rc = -errno; /* EEXIST: another message's file, left alone */
    }
    unlink(tmp);
    if (rc == 0)
        rc = quar__sync_dir(q->dir);
    if (rc != 0 && linked)
        unlink(q->path);
    q->rc = rc;
    if (rc != 0)
        return;
    /* The file is on disk: it is the message. The index row comes after,
     * and if it cannot be written the file stays (the client is told the
     * message was taken; `sluice-quarantine reindex` adds the row). */
    q->row.size = q->head.len + len;
    char err[512];
    struct qstore *qs = qstore_open(q->dir, true, err, sizeof err);
    if (!qs) {
        q->idx_rc = QSTORE_EDB;
        snprintf(q->idx_err, sizeof q->idx_err, "%s", err);
        return;
    }
    q->idx_rc = qstore_add(qs, &q->row, NULL);
    if (q->idx_rc != 0)
        snprintf(q->idx_err, sizeof q->idx_err, "%s", qstore_error(qs));
    qstore_close(qs);
}

static void quar__done(uv_work_t *w, int status)
{
    struct quar_req *q = w->data;
    if (status == UV_ECANCELED && q->rc == 0)
        q->rc = -ECANCELED;
    if (q->rc == 0 && status != UV_ECANCELED) {
        if (q->idx_rc != 0) {
            log_error("quarantine index: cannot add %s (the file is kept; run "
                      "sluice-quarantine reindex): %s",
                      q->path, q->idx_err);
            stats_quarantine_event(STATS_QUAR_INDEX_ERROR, 1, 0);
        } else {
            stats_quarantine_event(STATS_QUAR_HELD, 1, q->row.size);
        }
    }
    if (!q->cancelled)
        q->cb(q->ud, q->rc, q->path);
    tx_unref(q->tx);
    buf_free(&q->head);
    qstore_msg_free(&q->row);
    free(q);
}

/* The decision record as one JSON object: the fields of the stats
 * decision records (host_record) plus the client's facts and the
 * recipients, so a reindex from the file alone loses nothing. */
static void quar__record(buf_t *b, const struct tx *tx, int64_t now)
{
    const struct client_info *c = &tx->client;
    buf_puts(b, "{\"sid\":");
    json_escape(b, c->sid);
    buf_printf(b, ",\"time\":%lld,\"client\":", (long long)now);
    json_escape(b, c->client_addr);
    buf_puts(b, ",\"client_name\":");
    json_escape(b, c->client_name);
    buf_puts(b, ",\"helo\":");
    json_escape(b, c->helo);
    buf_puts(b, ",\"tls\":");
    char tls[128];
    snprintf(tls, sizeof tls, "%s%s%s", c->tls_version, c->tls_version[0] ? " " : "",
             c->tls_version[0] ? c->tls_cipher : "");
    json_escape(b, tls);
    buf_puts(b, ",\"auth_user\":");
    json_escape(b, c->auth_user);
    buf_puts(b, ",\"from\":");
    json_escape(b, tx->orig_sender ? tx->orig_sender : "");
    buf_puts(b, ",\"verdict\":\"quarantined\",\"plugin\":");
    json_escape(b, tx->decided_by);
    buf_puts(b, ",\"reason\":");
    json_escape(b, tx->reason);
    buf_printf(b, ",\"score\":%.3f,\"rcpt_list\":[", tx->score);
    bool first = true;
    for (size_t i = 0; i < tx->nrcpts; i++)
        if (tx->rcpts[i].st == TX_R_ACCEPTED) {
            if (!first)
                buf_puts(b, ",");
            first = false;
            json_escape(b, tx->rcpts[i].addr);
        }
    buf_puts(b, "],\"symbols\":[");
    for (size_t i = 0; i < tx->nsyms && i < 50; i++) {
        buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        json_escape(b, tx->syms[i].name);
        buf_printf(b, ",\"score\":%.3f,\"plugin\":", tx->syms[i].score);
        json_escape(b, tx->syms[i].plugin);
        buf_puts(b, "}");
    }
    buf_puts(b, "]}");
}

struct quar_req *quar_write(uv_loop_t *loop, const char *dir, struct tx *tx, quar_cb cb, void *ud)
{
    struct quar_req *q = xcalloc(1, sizeof *q);
    q->tx = tx_ref(tx);
    q->cb = cb;
    q->ud = ud;
    int64_t now = (int64_t)time(NULL);
    snprintf(q->path, sizeof q->path, "%s/%lld-%s.eml", dir, (long long)now, tx->client.sid);
    snprintf(q->dir, sizeof q->dir, "%s", dir);
    /* The message itself is rendered on the loop before it leaves: later
     * reads on the pool thread only see the cache. */
    const char *data;
    size_t len;
    tx_render_edits(tx); /* else in memory: still correct */
    tx_render(tx, &data, &len);
    buf_printf(&q->head,
               "X-Sluice-Quarantine: sid=%s client=%s\r\nX-Sluice-Envelope-From: <%s>\r\n",
               tx->client.sid, tx->client.client_addr, tx->orig_sender ? tx->orig_sender : "");
    struct qstore_msg *m = &q->row;
    size_t cap = 0;
    for (size_t i = 0; i < tx->nrcpts; i++)
        if (tx->rcpts[i].st == TX_R_ACCEPTED) {
            buf_printf(&q->head, "X-Sluice-Envelope-To: <%s>\r\n", tx->rcpts[i].addr);
            m->rcpts = xgrow(m->rcpts, &cap, m->nrcpts + 1, sizeof *m->rcpts, 4);
            m->rcpts[m->nrcpts++] = xstrdup(tx->rcpts[i].addr);
        }
    buf_t rec = BUF_INIT;
    quar__record(&rec, tx, now);
    /* json_escape leaves no CR or LF: the record is one header line */
    buf_printf(&q->head, "X-Sluice-Decision: %s\r\n", rec.ptr);
    const struct client_info *c = &tx->client;
    m->time = now;
    m->sid = xstrdup(c->sid);
    m->client_addr = xstrdup(c->client_addr);
    m->client_name = xstrdup(c->client_name);
    m->helo = xstrdup(c->helo);
    char tls[128];
    snprintf(tls, sizeof tls, "%s%s%s", c->tls_version, c->tls_version[0] ? " " : "",
             c->tls_version[0] ? c->tls_cipher : "");
    m->tls = xstrdup(tls);
    m->auth_user = xstrdup(c->auth_user);
    m->sender = xstrdup(tx->orig_sender ? tx->orig_sender : "");
    m->plugin = xstrdup(tx->decided_by);
    m->reason = xstrdup(tx->reason);
    m->score = tx->score;
    buf_t syms = BUF_INIT;
    for (size_t i = 0; i < tx->nsyms; i++) {
        if (i)
            buf_append(&syms, ",", 1);
        buf_puts(&syms, tx->syms[i].name);
    }
    m->symbols = xstrdup(syms.ptr ? syms.ptr : "");
    buf_free(&syms);
    m->record = xstrdup(rec.ptr);
    buf_free(&rec);
    m->path = xstrdup(q->path);
    q->work.data = q;
    int rc = uv_queue_work(loop, &q->work, quar__work, quar__done);
    if (rc != 0)
        xalloc_die(0); /* uv_queue_work only fails on bad arguments */
    return q;
}

void quar_cancel(struct quar_req *q)
{
    q->cancelled = true;
}

/* ---- the expiry sweep ------------------------------------------------------ */

struct quar_sweep {
    uv_timer_t timer;
    uv_work_t work;
    bool busy, stopping, timer_open;
    /* the configuration's values (loop thread), copied into the job's
     * input at each tick: a reload during a job applies from the next */
    char cfg_dir[1024];
    unsigned cfg_max_age_ms;
    uint64_t cfg_max_size;
    /* the job's input and output (the pool thread's while busy) */
    char dir[1024];
    unsigned max_age_ms;
    uint64_t max_size;
    struct qstore_counts expired, counts;
    int rc;
    char err[512];
};

static struct quar_sweep *quar__sw; /* loop thread only */

static void quar__sweep_work(uv_work_t *w)
{
    struct quar_sweep *sw = w->data;
    char err[512];
    memset(&sw->expired, 0, sizeof sw->expired);
    struct qstore *qs = qstore_open(sw->dir, true, err, sizeof err);
    if (!qs) {
        sw->rc = QSTORE_EDB;
        snprintf(sw->err, sizeof sw->err, "%s", err);
        return;
    }
    int64_t before = sw->max_age_ms ? (int64_t)time(NULL) - (int64_t)(sw->max_age_ms / 1000) : 0;
    sw->rc = qstore_expire(qs, before, sw->max_size, &sw->expired);
    if (sw->rc == 0)
        sw->rc = qstore_counts(qs, &sw->counts);
    if (sw->rc != 0)
        snprintf(sw->err, sizeof sw->err, "%s", qstore_error(qs));
    qstore_close(qs);
}

static void quar__sweep_free(uv_handle_t *h)
{
    struct quar_sweep *sw = h->data;
    if (sw->busy) {
        sw->timer_open = false; /* the job's end frees it */
        return;
    }
    free(sw);
}

static void quar__sweep_done(uv_work_t *w, int status)
{
    struct quar_sweep *sw = w->data;
    sw->busy = false;
    if (status == 0) {
        if (sw->rc != 0) {
            log_error("quarantine sweep: %s", sw->err);
            stats_quarantine_event(STATS_QUAR_SWEEP_ERROR, 1, 0);
        } else {
            uint64_t n = sw->expired.n[QSTORE_EXPIRED];
            if (n) {
                log_info("quarantine sweep: expired %llu message(s), %llu bytes",
                         (unsigned long long)n,
                         (unsigned long long)sw->expired.bytes[QSTORE_EXPIRED]);
                stats_quarantine_event(STATS_QUAR_EXPIRED, n, sw->expired.bytes[QSTORE_EXPIRED]);
            }
            stats_quarantine_index(sw->counts.n, sw->counts.bytes);
        }
    }
    if (sw->stopping && !sw->timer_open)
        free(sw);
}

static void quar__sweep_tick(uv_timer_t *t)
{
    struct quar_sweep *sw = t->data;
    if (sw->busy || sw->stopping || !sw->cfg_dir[0])
        return;
    memcpy(sw->dir, sw->cfg_dir, sizeof sw->dir);
    sw->max_age_ms = sw->cfg_max_age_ms;
    sw->max_size = sw->cfg_max_size;
    sw->busy = true;
    sw->work.data = sw;
    if (uv_queue_work(t->loop, &sw->work, quar__sweep_work, quar__sweep_done) != 0)
        sw->busy = false;
}

void quar_sweep_start(uv_loop_t *loop, const struct cfg *cfg)
{
    struct quar_sweep *sw = quar__sw;
    if (!sw) {
        sw = quar__sw = xcalloc(1, sizeof *sw);
        uv_timer_init(loop, &sw->timer);
        sw->timer.data = sw;
        sw->timer_open = true;
    }
    snprintf(sw->cfg_dir, sizeof sw->cfg_dir, "%s", cfg->quarantine_dir ? cfg->quarantine_dir : "");
    sw->cfg_max_age_ms = cfg->quarantine_max_age_ms;
    sw->cfg_max_size = cfg->quarantine_max_size;
    uint64_t every = cfg->quarantine_sweep_ms ? cfg->quarantine_sweep_ms : 60000;
    if (!cfg->quarantine_dir) {
        uv_timer_stop(&sw->timer);
        return;
    }
    /* the first run soon after start: the gauges are there at once */
    uv_timer_start(&sw->timer, quar__sweep_tick, 1000, every);
}

void quar_sweep_stop(void)
{
    struct quar_sweep *sw = quar__sw;
    if (!sw)
        return;
    quar__sw = NULL;
    sw->stopping = true;
    uv_close((uv_handle_t *)&sw->timer, quar__sweep_free);
}
