/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_clamd: INSTREAM client for clamd (protocol summary in vir_clamd.h).
 *
 * clamd stops reading when a stream passes its StreamMaxLength and answers
 * at once; the next write then fails with EPIPE. So while sending we also
 * watch for readability, writes use MSG_NOSIGNAL, and a failed write is not
 * yet an error: the reply is read in every case and decides.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vir_clamd.h"

#define VIR_CLAMD_REPLY_MAX 4096

uint64_t vir_clamd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int vir_clamd_parse_addr(const char *s, struct vir_clamd_addr *out, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    memset(out, 0, sizeof *out);
    if (!s || !*s) {
        *why = "empty address";
        return -1;
    }
    snprintf(out->text, sizeof out->text, "%s", s);
    if (!strncmp(s, "unix:", 5)) {
        struct sockaddr_un *un = (struct sockaddr_un *)&out->sa;
        const char *path = s + 5;
        if (path[0] != '/') {
            *why = "unix socket path must be absolute";
            return -1;
        }
        if (strlen(path) >= sizeof un->sun_path) {
            *why = "unix socket path too long";
            return -1;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, strlen(path) + 1);
        out->salen = (socklen_t)sizeof *un;
        return 0;
    }
    char host[64];
    const char *port;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof host) {
            *why = "expected [IPv6]:port";
            return -1;
        }
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        port = rb + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host || strchr(s, ':') != colon) {
            *why = "expected unix:/path, IPv4:port or [IPv6]:port";
            return -1;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (!*port || *end || errno || p < 1 || p > 65535) {
        *why = "port must be 1-65535";
        return -1;
    }
    struct sockaddr_in *in4 = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->sa;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)p);
        out->salen = (socklen_t)sizeof *in4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)p);
        out->salen = (socklen_t)sizeof *in6;
        return 0;
    }
    *why = "host must be a numeric IP address (no DNS lookups)";
    return -1;
}

void vir_clamd_chunk_header(uint32_t len, unsigned char out[4])
{
    out[0] = (unsigned char)(len >> 24);
    out[1] = (unsigned char)(len >> 16);
    out[2] = (unsigned char)(len >> 8);
    out[3] = (unsigned char)len;
}

void vir_clamd_parse_reply(const char *reply, size_t len, struct vir_result *out)
{
    while (len && (reply[len - 1] == '\0' || reply[len - 1] == '\n' || reply[len - 1] == '\r'))
        len--;
    /* IDSESSION replies carry "N: "; accept and drop it. */
    size_t i = 0;
    while (i < len && reply[i] >= '0' && reply[i] <= '9')
        i++;
    if (i && i + 1 < len && reply[i] == ':' && reply[i + 1] == ' ') {
        reply += i + 2;
        len -= i + 2;
    }
    static const char lim[] = "INSTREAM size limit exceeded";
    static const char pfx[] = "stream: ";
    static const char found[] = " FOUND";
    static const char err[] = " ERROR";
    if (len >= sizeof lim - 1 && !memcmp(reply, lim, sizeof lim - 1)) {
        vir_result_set(out, VIR_LIMIT, "StreamMaxLength", 15);
        return;
    }
    if (len == sizeof pfx - 1 + 2 && !memcmp(reply, "stream: OK", len)) {
        vir_result_set(out, VIR_CLEAN, NULL, 0);
        return;
    }
    if (len > sizeof pfx - 1 + sizeof found - 1 && !memcmp(reply, pfx, sizeof pfx - 1) &&
        !memcmp(reply + len - (sizeof found - 1), found, sizeof found - 1)) {
        size_t nlen = len - (sizeof pfx - 1) - (sizeof found - 1);
        vir_result_set(out, VIR_VIRUS, reply + sizeof pfx - 1, nlen);
        return;
    }
    if (len >= sizeof err - 1 && !memcmp(reply + len - (sizeof err - 1), err, sizeof err - 1)) {
        vir_result_error(out, VIR_ERR_SCAN, "clamd: %.*s", (int)(len > 200 ? 200 : len), reply);
        return;
    }
    vir_result_error(out, VIR_ERR_PROTOCOL, "clamd: unexpected reply \"%.*s\"",
                     (int)(len > 200 ? 200 : len), reply);
}

/* ---- I/O ---------------------------------------------------------------- */

enum vir__send { VIR__SENT = 0, VIR__PEER_SPOKE, VIR__TIMEOUT, VIR__FAILED };

static int vir__left(uint64_t deadline_ms)
{
    uint64_t now = vir_clamd_now_ms();
    if (now >= deadline_ms)
        return 0;
    uint64_t d = deadline_ms - now;
    return d > 60000 ? 60000 : (int)d;
}

/* Send everything, or stop early when the peer has something to say (a
 * reply before the end means clamd refused the stream) or hung up. */
static enum vir__send vir__send_all(int fd, const void *p, size_t n, uint64_t deadline_ms)
{
    const char *b = p;
    while (n) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT | POLLIN};
        int left = vir__left(deadline_ms);
        if (!left)
            return VIR__TIMEOUT;
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return VIR__FAILED;
        if (r == 0)
            return VIR__TIMEOUT;
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
            return VIR__PEER_SPOKE;
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                continue;
            if (errno == EPIPE || errno == ECONNRESET)
                return VIR__PEER_SPOKE;
            return VIR__FAILED;
        }
        b += w;
        n -= (size_t)w;
    }
    return VIR__SENT;
}

void vir_clamd_exchange(int fd, const void *data, size_t len, uint64_t deadline_ms,
                        struct vir_result *out)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);

    enum vir__send st = vir__send_all(fd, "zINSTREAM", 10, deadline_ms);
    if (st == VIR__SENT) {
        /* Its own chunk: clamd scans the stream as one file. */
        unsigned char hdr[4];
        vir_clamd_chunk_header(sizeof VIR_MAIL_MARK - 1, hdr);
        st = vir__send_all(fd, hdr, 4, deadline_ms);
        if (st == VIR__SENT)
            st = vir__send_all(fd, VIR_MAIL_MARK, sizeof VIR_MAIL_MARK - 1, deadline_ms);
    }
    const unsigned char *p = data;
    size_t off = 0;
    while (st == VIR__SENT && off < len) {
        size_t n = len - off > VIR_CLAMD_CHUNK ? VIR_CLAMD_CHUNK : len - off;
        unsigned char hdr[4];
        vir_clamd_chunk_header((uint32_t)n, hdr);
        st = vir__send_all(fd, hdr, 4, deadline_ms);
        if (st == VIR__SENT)
            st = vir__send_all(fd, p + off, n, deadline_ms);
        off += n;
    }
    if (st == VIR__SENT) {
        static const unsigned char end[4] = {0, 0, 0, 0};
        st = vir__send_all(fd, end, 4, deadline_ms);
    }
    if (st == VIR__TIMEOUT) {
        vir_result_error(out, VIR_ERR_TIMEOUT, "clamd: timed out sending the message");
        return;
    }
    if (st == VIR__FAILED) {
        vir_result_error(out, VIR_ERR_CONNECT, "clamd: send failed: %s", strerror(errno));
        return;
    }

    /* VIR__SENT or VIR__PEER_SPOKE: the reply decides. */
    char reply[VIR_CLAMD_REPLY_MAX];
    size_t got = 0;
    for (;;) {
        if (got && memchr(reply, '\0', got))
            break;
        if (got == sizeof reply) {
            vir_result_error(out, VIR_ERR_PROTOCOL, "clamd: reply too long");
            return;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int left = vir__left(deadline_ms);
        if (!left) {
            vir_result_error(out, VIR_ERR_TIMEOUT, "clamd: no reply in time");
            return;
        }
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            vir_result_error(out, VIR_ERR_TIMEOUT, "clamd: no reply in time");
            return;
        }
        ssize_t n = recv(fd, reply + got, sizeof reply - got, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0) {
            vir_result_error(out, VIR_ERR_CONNECT, "clamd: read failed: %s", strerror(errno));
            return;
        }
        if (n == 0)
            break; /* EOF: what we have is the reply (newline mode, or lost) */
        got += (size_t)n;
    }
    if (!got) {
        vir_result_error(out, VIR_ERR_CONNECT, "clamd: connection closed without a reply%s",
                         st == VIR__PEER_SPOKE ? " (while sending)" : "");
        return;
    }
    char *nul = memchr(reply, '\0', got);
    vir_clamd_parse_reply(reply, nul ? (size_t)(nul - reply) : got, out);
}

void vir_clamd_scan(const struct vir_clamd_addr *addr, const void *data, size_t len,
                    uint32_t connect_timeout_ms, uint32_t timeout_ms, struct vir_result *out)
{
    uint64_t start = vir_clamd_now_ms();
    int fd = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        vir_result_error(out, VIR_ERR_CONNECT, "clamd %s: socket: %s", addr->text,
                         strerror(errno));
        return;
    }
    if (connect(fd, (const struct sockaddr *)&addr->sa, addr->salen) < 0) {
        if (errno != EINPROGRESS && errno != EAGAIN) {
            vir_result_error(out, VIR_ERR_CONNECT, "clamd %s: connect: %s", addr->text,
                             strerror(errno));
            close(fd);
            return;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        uint64_t cdl = start + connect_timeout_ms;
        int r;
        do {
            int left = vir__left(cdl);
            r = left ? poll(&pfd, 1, left) : 0;
        } while (r < 0 && errno == EINTR);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (r == 0) {
            vir_result_error(out, VIR_ERR_CONNECT, "clamd %s: connect timed out", addr->text);
            close(fd);
            return;
        }
        if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
            vir_result_error(out, VIR_ERR_CONNECT, "clamd %s: connect: %s", addr->text,
                             strerror(soerr ? soerr : errno));
            close(fd);
            return;
        }
    }
    vir_clamd_exchange(fd, data, len, start + timeout_ms, out);
    if (out->kind == VIR_ERROR && !strstr(out->detail, addr->text)) {
        size_t n = strlen(out->detail);
        if (n + 4 + strlen(addr->text) < sizeof out->detail) {
            memcpy(out->detail + n, " at ", 4);
            memcpy(out->detail + n + 4, addr->text, strlen(addr->text) + 1);
        }
    }
    close(fd);
}
