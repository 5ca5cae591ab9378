/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qrelease: blocking re-injection of a held message; see qrelease.h. */
#include "qrelease.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include "buf.h"

struct qr_conn {
    int fd;
    int timeout_ms;
    char in[8192];
    size_t inlen;
    char reply[512]; /* last reply, lines joined by " / " */
    bool ext_8bit, ext_utf8;
};

static int qr__write(struct qr_conn *c, const char *p, size_t n)
{
    while (n) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
        int pr = poll(&pfd, 1, c->timeout_ms);
        if (pr <= 0)
            return -1;
        ssize_t w = write(c->fd, p, n);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One reply (all its lines): the code, or -1 on timeout/EOF/garbage. */
static int qr__reply(struct qr_conn *c)
{
    c->reply[0] = 0;
    size_t rl = 0;
    for (;;) {
        char *nl = memchr(c->in, '\n', c->inlen);
        if (!nl) {
            if (c->inlen == sizeof c->in)
                return -1; /* a line longer than any SMTP reply line */
            struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
            if (poll(&pfd, 1, c->timeout_ms) <= 0)
                return -1;
            ssize_t r = read(c->fd, c->in + c->inlen, sizeof c->in - c->inlen);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return -1;
            c->inlen += (size_t)r;
            continue;
        }
        size_t ll = (size_t)(nl - c->in);
        size_t keep = ll && c->in[ll - 1] == '\r' ? ll - 1 : ll;
        if (keep < 3 || c->in[0] < '2' || c->in[0] > '5')
            return -1;
        int code = (c->in[0] - '0') * 100 + (c->in[1] - '0') * 10 + (c->in[2] - '0');
        bool more = keep > 3 && c->in[3] == '-';
        if (keep > 4) {
            const char *t = c->in + 4;
            if (strncasecmp(t, "8BITMIME", 8) == 0)
                c->ext_8bit = true;
            if (strncasecmp(t, "SMTPUTF8", 8) == 0)
                c->ext_utf8 = true;
        }
        /* the reply for the caller: printable bytes only */
        if (rl < sizeof c->reply - 1) {
            int n = snprintf(c->reply + rl, sizeof c->reply - rl, "%s%.*s", rl ? " / " : "",
                             (int)keep, c->in);
            for (size_t i = rl; i < sizeof c->reply && c->reply[i]; i++)
                if ((unsigned char)c->reply[i] < 0x20 || (unsigned char)c->reply[i] == 0x7f)
                    c->reply[i] = '?';
            rl += n > 0 ? (size_t)n : 0;
            if (rl >= sizeof c->reply)
                rl = sizeof c->reply - 1;
        }
        memmove(c->in, nl + 1, c->inlen - ll - 1);
        c->inlen -= ll + 1;
        if (!more)
            return code;
    }
}

/* One command line (with its CRLF) and its reply's code, or -1. */
static int qr__cmd(struct qr_conn *c, const char *line)
{
    if (qr__write(c, line, strlen(line)) != 0)
        return -1;
    return qr__reply(c);
}

/* The output side of qr__data: where the current line stands. */
struct qr__lines {
    bool bol; /* at the start of a line: a '.' there is doubled */
    bool cr;  /* a CR was read and held back: CRLF, or a bare CR */
};

/* One byte of the message into out, as DATA must carry it: dot-stuffed,
 * and every line end CRLF. A bare LF and a bare CR each become CRLF: a
 * message taken in with BDAT (BINARYMIME) is stored byte for byte and may
 * hold them, and an upstream that ends lines at a bare CR must not see
 * "\r.\r\n" as the end of the data (SMTP smuggling). */
static void qr__emit(buf_t *out, char ch, struct qr__lines *l)
{
    if (l->cr) {
        l->cr = false;
        buf_append(out, "\r\n", 2);
        l->bol = true;
        if (ch == '\n')
            return; /* that CRLF */
    }
    if (ch == '\r') {
        l->cr = true;
        return;
    }
    if (ch == '\n') {
        buf_append(out, "\r\n", 2);
        l->bol = true;
        return;
    }
    if (l->bol && ch == '.')
        buf_append(out, ".", 1);
    buf_append(out, &ch, 1);
    l->bol = false;
}

/* Send the file after its head, dot-stuffed, CRLF lines. The head is what
 * qstore_parse_head() reads: quar.c's X-Sluice-* lines up to and including
 * X-Sluice-Decision (in files of older versions, without one, every
 * leading X-Sluice-* line). X-Sluice-* fields after it are the message's
 * own and go with it. */
static int qr__data(struct qr_conn *c, int fd)
{
    static const char decision[] = "X-Sluice-Decision:";
    buf_t out = BUF_INIT;
    char blk[65536];
    bool in_head = true, head_line = false, last_head = false;
    struct qr__lines l = {.bol = true};
    char hold[sizeof decision - 1]; /* the current head line's first bytes */
    size_t nh = 0;
    int ret = 0;
    ssize_t r;
    while ((r = read(fd, blk, sizeof blk)) != 0) {
        if (r < 0) {
            if (errno == EINTR)
                continue;
            ret = -2;
            break;
        }
        for (ssize_t i = 0; i < r; i++) {
            char ch = blk[i];
            if (!in_head) {
                qr__emit(&out, ch, &l);
                continue;
            }
            if (head_line) { /* one of ours: dropped; the decision line is the last */
                if (nh < sizeof hold) {
                    hold[nh++] = ch;
                    if (nh == sizeof hold)
                        last_head = strncasecmp(hold, decision, sizeof hold) == 0;
                }
                if (ch == '\n') {
                    head_line = false;
                    nh = 0;
                    in_head = !last_head;
                }
                continue;
            }
            hold[nh++] = ch;
            if (nh < 9 && ch != '\n')
                continue; /* not yet known whose line this is */
            if (nh == 9 && strncasecmp(hold, "X-Sluice-", 9) == 0) {
                head_line = true;
                continue;
            }
            /* the message starts with this line: what was held first */
            in_head = false;
            for (size_t k = 0; k < nh; k++)
                qr__emit(&out, hold[k], &l);
            nh = 0;
        }
        if (out.len >= 65536) {
            if (qr__write(c, out.ptr, out.len) != 0) {
                ret = -1;
                break;
            }
            buf_reset(&out);
        }
    }
    if (ret == 0 && in_head && !head_line)
        for (size_t k = 0; k < nh; k++) /* a message shorter than the prefix */
            qr__emit(&out, hold[k], &l);
    if (ret == 0) {
        if (l.cr)
            qr__emit(&out, '\n', &l); /* a CR at the very end: its line ends */
        if (!l.bol)
            buf_puts(&out, "\r\n");
        buf_puts(&out, ".\r\n");
        if (qr__write(c, out.ptr, out.len) != 0)
            ret = -1;
    }
    buf_free(&out);
    return ret;
}

static bool qr__ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* The SMTP dialogue; returns QRELEASE_* and settles nothing. *sent tells
 * whether the final dot went out. */
static int qr__session(const struct qstore_msg *m, const struct qrelease_opts *o, int fd,
                       bool *sent, char *why, size_t whylen)
{
    struct qr_conn c = {.fd = -1, .timeout_ms = o->timeout_ms ? (int)o->timeout_ms : 300000};
    *sent = false;
    c.fd = socket(o->upstream->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c.fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        return QRELEASE_ETEMP;
    }
    int ret = QRELEASE_ETEMP;
    if (connect(c.fd, o->upstream, o->upstream_len) != 0 && errno != EINPROGRESS) {
        snprintf(why, whylen, "connect: %s", strerror(errno));
        goto out;
    }
    struct pollfd pfd = {.fd = c.fd, .events = POLLOUT};
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (poll(&pfd, 1, c.timeout_ms) <= 0 ||
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
        snprintf(why, whylen, "connect: %s", soerr ? strerror(soerr) : "timed out");
        goto out;
    }
    int code = qr__reply(&c);
    if (code != 220)
        goto refused;
    char hello[300];
    snprintf(hello, sizeof hello, "EHLO %.280s\r\n", o->helo && *o->helo ? o->helo : "localhost");
    code = qr__cmd(&c, hello);
    if (code != 250) {
        memcpy(hello, "HELO", 4);
        code = qr__cmd(&c, hello);
        if (code != 250)
            goto refused;
    }
    bool utf8 = !qr__ascii(m->sender) || (o->to ? !qr__ascii(o->to) : false);
    for (size_t i = 0; !o->to && i < m->nrcpts; i++)
        utf8 |= !qr__ascii(m->rcpts[i]);
    char mail[1200];
    snprintf(mail, sizeof mail, "MAIL FROM:<%s>%s%s\r\n", m->sender,
             c.ext_8bit ? " BODY=8BITMIME" : "", utf8 && c.ext_utf8 ? " SMTPUTF8" : "");
    code = qr__cmd(&c, mail);
    if (code != 250)
        goto refused;
    size_t ok = 0, n = o->to ? 1 : m->nrcpts;
    char refused_rcpts[256] = "";
    for (size_t i = 0; i < n; i++) {
        const char *r = o->to ? o->to : m->rcpts[i];
        char line[1100];
        snprintf(line, sizeof line, "RCPT TO:<%s>\r\n", r);
        code = qr__cmd(&c, line);
        if (code < 0)
            goto refused;
        if (code / 100 == 2)
            ok++;
        else
            snprintf(refused_rcpts + strlen(refused_rcpts),
                     sizeof refused_rcpts - strlen(refused_rcpts), " %s(%d)", r, code);
    }
    if (ok == 0)
        goto refused;
    code = qr__cmd(&c, "DATA\r\n");
    if (code != 354)
        goto refused;
    int dr = qr__data(&c, fd);
    if (dr == -2) {
        snprintf(why, whylen, "cannot read the message file: %s", strerror(errno));
        ret = QRELEASE_EIO;
        goto out;
    }
    if (dr != 0) {
        /* part of the data went out: the MTA drops an unfinished message */
        snprintf(why, whylen, "connection lost while sending the message");
        goto out;
    }
    *sent = true;
    code = qr__reply(&c);
    if (code < 0) {
        snprintf(why, whylen, "no reply after the message was sent");
        ret = QRELEASE_EUNKNOWN;
        goto out;
    }
    if (code / 100 != 2) {
        *sent = false; /* refused: the MTA does not have it */
        goto refused;
    }
    snprintf(why, whylen, "%s%s%s", c.reply, *refused_rcpts ? "; refused:" : "", refused_rcpts);
    ret = QRELEASE_OK;
    qr__cmd(&c, "QUIT\r\n");
    goto out;
refused:
    if (code < 0) {
        snprintf(why, whylen, "connection lost or timed out (%s)", c.reply[0] ? c.reply : "-");
        ret = QRELEASE_ETEMP;
    } else {
        snprintf(why, whylen, "%s", c.reply);
        ret = code / 100 == 5 ? QRELEASE_EREFUSED : QRELEASE_ETEMP;
        qr__cmd(&c, "QUIT\r\n");
    }
out:
    close(c.fd);
    return ret;
}

int qrelease_send(struct qstore *qs, int64_t id, const struct qrelease_opts *o, char *why,
                  size_t whylen)
{
    why[0] = 0;
    enum qstore_status now = QSTORE_HELD;
    int rc = qstore_claim(qs, id, o->force, &now);
    if (rc == QSTORE_ENOTFOUND) {
        snprintf(why, whylen, "no message %lld", (long long)id);
        return QRELEASE_ENOTFOUND;
    }
    if (rc == QSTORE_ESTATE) {
        snprintf(why, whylen, "message %lld is %s, not held", (long long)id,
                 qstore_status_name(now));
        return QRELEASE_EALREADY;
    }
    if (rc != 0) {
        snprintf(why, whylen, "%s", qstore_error(qs));
        return QRELEASE_EDB;
    }
    /* Claimed: from here every path settles the row or leaves it
     * releasing on purpose (EUNKNOWN). */
    struct qstore_msg m;
    rc = qstore_get(qs, id, &m);
    if (rc != 0) {
        snprintf(why, whylen, "%s", qstore_error(qs));
        qstore_settle(qs, id, false, why);
        return QRELEASE_EDB;
    }
    int fd = open(m.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(why, whylen, "%s: %s", m.path, strerror(errno));
        qstore_settle(qs, id, false, why);
        qstore_msg_free(&m);
        return QRELEASE_EIO;
    }
    bool sent = false;
    int ret = qr__session(&m, o, fd, &sent, why, whylen);
    close(fd);
    char note[700];
    snprintf(note, sizeof note, "to %s: %s", o->to ? o->to : "original recipients", why);
    if (ret == QRELEASE_OK) {
        if (qstore_settle(qs, id, true, note) != 0) {
            /* delivered, but the index says releasing: never sent again */
            snprintf(why + strlen(why), whylen - strlen(why), " (index not updated: %s)",
                     qstore_error(qs));
        }
    } else if (ret != QRELEASE_EUNKNOWN) {
        qstore_settle(qs, id, false, note);
    }
    qstore_msg_free(&m);
    return ret;
}
