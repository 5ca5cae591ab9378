/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * msgbuf: a message in transit, in memory up to mem_limit, then in an
 * anonymous temp file in the spool directory.
 *
 * Ownership: the msgbuf owns its memory buffer, its file descriptor, the
 * write buffer used while spilling and the read-only mapping made by
 * msgbuf_finish(). Nothing else keeps pointers into them except the view
 * returned by msgbuf_data(), which lives until reset/free.
 *
 * Why a write buffer: the DATA reader hands us one line at a time; a
 * write(2) per line would dominate the cost of a large message on disk.
 * Why mmap: filters want the whole message as one contiguous byte range
 * whether it sits in memory or on disk.
 */
#include "msgbuf.h"

#include "buf.h"
#include "xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MSGBUF_WBUF_SIZE (64 * 1024)
/* After a reset, a memory buffer larger than this is released so an idle
 * session does not hold on to its largest message. */
#define MSGBUF_KEEP_CAP (64 * 1024)

struct msgbuf {
    size_t mem_limit;
    char *spool_dir; /* owned copy */
    buf_t mem;       /* contents while in memory */
    int fd;          /* -1 until spilled */
    char *wbuf;      /* owned; allocated at spill, freed at finish/reset */
    size_t wlen;
    size_t len;      /* total bytes appended */
    int err;         /* sticky negative errno */
    bool finished;
    void *map;       /* read-only mapping of fd after finish (len > 0) */
};

struct msgbuf *msgbuf_new(size_t mem_limit, const char *spool_dir)
{
    struct msgbuf *m = xcalloc(1, sizeof *m);
    m->spool_dir = xstrdup(spool_dir ? spool_dir : "/tmp");
    m->mem_limit = mem_limit;
    buf_init(&m->mem);
    m->fd = -1;
    return m;
}

struct msgbuf *msgbuf_new_like(const struct msgbuf *m)
{
    return msgbuf_new(m->mem_limit, m->spool_dir);
}

/* An unnamed file that disappears with its last descriptor. O_TMPFILE is not
 * supported by every filesystem, hence the mkstemp fallback. */
static int msgbuf__open_tmp(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    if (errno == ENOENT || errno == ENOTDIR || errno == EACCES)
        return -errno;
    size_t n = strlen(dir) + sizeof "/sluice-msg-XXXXXX";
    char *path = xmalloc(n);
    snprintf(path, n, "%s/sluice-msg-XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC); /* mkostemp creates with 0600 */
    if (fd < 0) {
        int e = -errno;
        free(path);
        return e;
    }
    unlink(path);
    free(path);
    return fd;
}

static int msgbuf__write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int msgbuf__fail(struct msgbuf *m, int err)
{
    m->err = err;
    return err;
}

static int msgbuf__flush(struct msgbuf *m)
{
    if (m->wlen == 0)
        return 0;
    int rc = msgbuf__write_all(m->fd, m->wbuf, m->wlen);
    m->wlen = 0;
    return rc;
}

/* Buffered write to the spill file. */
static int msgbuf__file_append(struct msgbuf *m, const char *p, size_t n)
{
    if (m->wlen + n > MSGBUF_WBUF_SIZE) {
        int rc = msgbuf__flush(m);
        if (rc)
            return rc;
    }
    if (n >= MSGBUF_WBUF_SIZE)
        return msgbuf__write_all(m->fd, p, n);
    memcpy(m->wbuf + m->wlen, p, n);
    m->wlen += n;
    return 0;
}

/* Move what is in memory to a fresh temp file. */
static int msgbuf__spill(struct msgbuf *m)
{
    int fd = msgbuf__open_tmp(m->spool_dir);
    if (fd < 0)
        return fd;
    m->wbuf = xmalloc(MSGBUF_WBUF_SIZE);
    m->fd = fd;
    m->wlen = 0;
    int rc = 0;
    if (m->mem.len)
        rc = msgbuf__file_append(m, m->mem.ptr, m->mem.len);
    buf_free(&m->mem);
    return rc;
}

int msgbuf_append(struct msgbuf *m, const char *p, size_t n)
{
    if (m->err)
        return m->err;
    if (m->finished)
        return -EINVAL; /* caller bug, not a property of the message */
    if (n == 0)
        return 0;
    int rc;
    if (m->fd < 0 && m->len <= m->mem_limit && n <= m->mem_limit - m->len) {
        rc = buf_append(&m->mem, p, n);
    } else {
        rc = m->fd < 0 ? msgbuf__spill(m) : 0;
        if (rc == 0)
            rc = msgbuf__file_append(m, p, n);
    }
    if (rc)
        return msgbuf__fail(m, rc);
    m->len += n;
    return 0;
}

int msgbuf_sink(void *ctx, const char *p, size_t n)
{
    return msgbuf_append(ctx, p, n);
}

int msgbuf_finish(struct msgbuf *m)
{
    if (m->err)
        return m->err;
    if (m->finished)
        return 0;
    if (m->fd >= 0) {
        int rc = msgbuf__flush(m);
        if (rc)
            return msgbuf__fail(m, rc);
        free(m->wbuf);
        m->wbuf = NULL;
        /* mmap of 0 bytes is EINVAL; msgbuf_data handles len 0 itself. */
        if (m->len > 0) {
            void *p = mmap(NULL, m->len, PROT_READ, MAP_PRIVATE, m->fd, 0);
            if (p == MAP_FAILED)
                return msgbuf__fail(m, -errno);
            m->map = p;
        }
    }
    m->finished = true;
    return 0;
}

const char *msgbuf_data(const struct msgbuf *m, size_t *len)
{
    if (m->err || (m->fd >= 0 && !m->finished)) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = m->len;
    if (m->fd >= 0)
        return m->map ? m->map : "";
    return m->mem.ptr ? m->mem.ptr : "";
}

size_t msgbuf_len(const struct msgbuf *m)
{
    return m->len;
}

int msgbuf_error(const struct msgbuf *m)
{
    return m->err;
}

int msgbuf_on_disk(const struct msgbuf *m)
{
    return m->fd >= 0;
}

void msgbuf_reset(struct msgbuf *m)
{
    if (m->map)
        munmap(m->map, m->len);
    m->map = NULL;
    /* Closing the unlinked file is what releases its blocks. */
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
    free(m->wbuf);
    m->wbuf = NULL;
    m->wlen = 0;
    if (m->mem.cap > MSGBUF_KEEP_CAP)
        buf_free(&m->mem);
    else
        buf_reset(&m->mem);
    m->len = 0;
    m->err = 0;
    m->finished = false;
}

void msgbuf_free(struct msgbuf *m)
{
    if (!m)
        return;
    msgbuf_reset(m);
    buf_free(&m->mem);
    free(m->spool_dir);
    free(m);
}
