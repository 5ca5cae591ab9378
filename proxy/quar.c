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
#include "xalloc.h"

struct quar_req {
    uv_work_t work;
    struct tx *tx; /* referenced */
    buf_t head;    /* X-Sluice-* lines, made on the loop */
    char path[1024];
    int rc;
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

static void quar__work(uv_work_t *w)
{
    struct quar_req *q = w->data;
    int fd = open(q->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
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
    if (rc != 0)
        unlink(q->path);
    q->rc = rc;
}

static void quar__done(uv_work_t *w, int status)
{
    struct quar_req *q = w->data;
    if (status == UV_ECANCELED && q->rc == 0)
        q->rc = -ECANCELED;
    if (!q->cancelled)
        q->cb(q->ud, q->rc, q->path);
    tx_unref(q->tx);
    buf_free(&q->head);
    free(q);
}

struct quar_req *quar_write(uv_loop_t *loop, const char *dir, struct tx *tx, quar_cb cb, void *ud)
{
    struct quar_req *q = xcalloc(1, sizeof *q);
    q->tx = tx_ref(tx);
    q->cb = cb;
    q->ud = ud;
    snprintf(q->path, sizeof q->path, "%s/%lld-%s.eml", dir, (long long)time(NULL), tx->client.sid);
    /* The message itself is rendered on the loop before it leaves: later
     * reads on the pool thread only see the cache. */
    const char *data;
    size_t len;
    tx_render_edits(tx); /* else in memory: still correct */
    tx_render(tx, &data, &len);
    buf_printf(&q->head,
               "X-Sluice-Quarantine: sid=%s client=%s\r\nX-Sluice-Envelope-From: <%s>\r\n",
               tx->client.sid, tx->client.client_addr, tx->orig_sender ? tx->orig_sender : "");
    for (size_t i = 0; i < tx->nrcpts; i++)
        if (tx->rcpts[i].st == TX_R_ACCEPTED)
            buf_printf(&q->head, "X-Sluice-Envelope-To: <%s>\r\n", tx->rcpts[i].addr);
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
