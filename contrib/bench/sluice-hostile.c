/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-hostile: a well-behaved mail client measured with and without a
 * hostile crowd on the same server.
 *
 * The run has four phases, back to back:
 *   baseline   the good client alone (--baseline seconds)
 *   ramp       the crowd connects: --idle connections that greet, EHLO and
 *              then say nothing; --slowloris connections that send one
 *              byte of a command every --slow-interval seconds; --flood
 *              connections that pipeline NOOP/RSET/VRFY/junk as fast as
 *              the server answers (and reconnect when it hangs up)
 *   loaded     the good client again, the crowd still on (--duration s)
 *   after      the crowd gone, the good client alone once more (drift check)
 *
 * The good client sends one message per connection (connect, greeting,
 * EHLO, MAIL, RCPT, DATA, message, dot, QUIT); its latency is connect to
 * the final reply after the dot. With --pid, the server's CPU (utime +
 * stime from /proc/PID/stat) and RSS (VmRSS, VmHWM) are read at every phase
 * boundary.
 *
 * The crowd runs in one thread on one epoll set (10,000 connections need no
 * 10,000 threads); the good client is one thread with blocking sockets;
 * main() owns the phases and the figures. Crowd connections bind to
 * 127.0.0.(2 + i % --spread) so that a per-IP limit does not count them
 * all as one client; the good client connects from 127.0.0.1 (the
 * default source), an address the crowd never uses.
 *
 * Output: a human table on stdout plus one "RESULT phase=... key=value"
 * line per phase. Exit 0 if the good client had no failure in any phase.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum hk_kind { HK_IDLE, HK_SLOW, HK_FLOOD, HK_DEAF, HK_MAILIDLE, HK_KINDS };
enum hk_state { HS_CONNECTING, HS_GREETING, HS_EHLO, HS_READY, HS_CLOSED };

/* One crowd connection; small, there are 10,000 of them. */
struct hconn {
    int fd;
    uint8_t kind;
    uint8_t state;
    uint8_t lpos;      /* bytes of the current reply line seen (capped at 4) */
    char lhead[4];     /* its first 4 bytes: "250 " ends a reply */
    uint32_t slow_pos; /* slowloris: next byte of its script */
    uint32_t inflight; /* flood: commands sent, not yet answered */
    double next_at;    /* slowloris: next byte due; flood: reconnect at */
};

struct hstats {
    atomic_ulong ready[HK_KINDS];  /* EHLO answered, by kind */
    atomic_ulong closed[HK_KINDS]; /* closed by the server after ready, by kind */
    atomic_ulong failed[HK_KINDS]; /* connect/greeting failed, by kind */
    atomic_ulong flood_sent, flood_replies, flood_reconnects, slow_bytes, deaf_bytes;
};

struct phase {
    const char *name;
    double t0, t1;
    double *lat;
    size_t nlat, caplat;
    unsigned long ok, fail;
    char first_err[200];
    long cpu0, cpu1;                                /* server ticks */
    long rss1, hwm1;                                /* KiB at the end */
    unsigned long open_idle, open_slow, open_flood; /* crowd open at the end */
    unsigned long open_deaf, open_mailidle;
};

struct opts {
    struct sockaddr_in server;
    char server_text[64];
    int pid;
    unsigned idle, slow, flood, deaf, mailidle, spread;
    double baseline_s, duration_s, ramp_s, slow_interval_s;
    size_t size;
    unsigned timeout_ms;
    const char *from, *to;
};

static struct opts O;
static struct hstats H;
static atomic_bool crowd_stop, good_stop;
static struct phase *volatile good_phase;
static pthread_mutex_t good_mu = PTHREAD_MUTEX_INITIALIZER;
/* messages that began in one phase and ended in the next: not in any
 * phase's figures (under good_mu) */
static unsigned long straddle_n;
static double straddle_max;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- server figures --------------------------------------------------- */
static long proc_cpu_ticks(int pid)
{
    char path[64], buf[1024];
    FILE *f;
    size_t n;
    char *p;
    long ut = 0, st = 0;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (!(f = fopen(path, "r")))
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the command name may hold spaces: fields count from the last ')' */
    if (!(p = strrchr(buf, ')')))
        return -1;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &ut, &st) != 2)
        return -1;
    return ut + st;
}

static long proc_status_kib(int pid, const char *key)
{
    char path[64], line[256];
    FILE *f;
    long v = -1;
    size_t kl = strlen(key);

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* ---- sockets -------------------------------------------------------------- */
static int sock_open(const char *src, bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    int one = 1;

    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (src) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        inet_pton(AF_INET, src, &a.sin_addr);
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&O.server, sizeof(O.server)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the good client ------------------------------------------------------ */
struct gconn {
    int fd;
    char buf[8192];
    size_t pos, len;
    char last[256];
};

static int g_line(struct gconn *c, char *line, size_t cap)
{
    size_t used = 0;

    for (;;) {
        while (c->pos < c->len) {
            char ch = c->buf[c->pos++];
            if (ch == '\n') {
                if (used && line[used - 1] == '\r')
                    used--;
                line[used] = '\0';
                return 0;
            }
            if (used + 1 < cap)
                line[used++] = ch;
        }
        ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        c->pos = 0;
        c->len = (size_t)n;
    }
}

static int g_reply(struct gconn *c)
{
    char line[512];

    for (;;) {
        if (g_line(c, line, sizeof(line)) != 0 || strlen(line) < 3)
            return -1;
        snprintf(c->last, sizeof(c->last), "%.250s", line);
        if (line[3] != '-')
            return atoi(line);
    }
}

static int g_send(struct gconn *c, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static char *g_message(size_t size, size_t *len)
{
    char hdr[512];
    int h = snprintf(hdr, sizeof(hdr),
                     "From: <%s>\r\nTo: <%s>\r\nSubject: sluice-hostile good client\r\n"
                     "Message-ID: <0000000000.good@hostile.invalid>\r\n\r\n",
                     O.from, O.to);
    size_t total = size > (size_t)h + 80 ? size : (size_t)h + 80, pos;
    char *m = malloc(total + 8);

    if (!m)
        return NULL;
    memcpy(m, hdr, (size_t)h);
    pos = (size_t)h;
    while (pos + 78 <= total) {
        memset(m + pos, 'a' + (char)(pos % 26), 76);
        pos += 76;
        m[pos++] = '\r';
        m[pos++] = '\n';
    }
    memcpy(m + pos, ".\r\n", 3);
    *len = pos + 3;
    return m;
}

static void g_fail(struct phase *ph, const char *what, const struct gconn *c)
{
    ph->fail++;
    if (!ph->first_err[0])
        snprintf(ph->first_err, sizeof(ph->first_err), "%.40s: %.150s", what,
                 c && c->last[0] ? c->last : strerror(errno));
}

/* One message on its own connection. Returns latency or -1. */
static double g_one(struct phase *ph, const char *msg, size_t msglen, unsigned long seq)
{
    struct gconn c = {.fd = -1};
    struct timeval tv = {.tv_sec = O.timeout_ms / 1000, .tv_usec = (O.timeout_ms % 1000) * 1000};
    char cmd[600];
    double t0 = now_s(), lat = -1;
    int code;

    c.fd = sock_open(NULL, false);
    if (c.fd < 0) {
        g_fail(ph, "connect", NULL);
        return -1;
    }
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if ((code = g_reply(&c)) != 220) {
        g_fail(ph, "greeting", &c);
        goto out;
    }
    snprintf(cmd, sizeof(cmd), "EHLO good.example.com\r\n");
    if (g_send(&c, cmd, strlen(cmd)) || (code = g_reply(&c)) != 250) {
        g_fail(ph, "EHLO", &c);
        goto out;
    }
    snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s>\r\n", O.from);
    if (g_send(&c, cmd, strlen(cmd)) || (code = g_reply(&c)) != 250) {
        g_fail(ph, "MAIL", &c);
        goto out;
    }
    snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\n", O.to);
    if (g_send(&c, cmd, strlen(cmd)) || (code = g_reply(&c)) != 250) {
        g_fail(ph, "RCPT", &c);
        goto out;
    }
    if (g_send(&c, "DATA\r\n", 6) || (code = g_reply(&c)) != 354) {
        g_fail(ph, "DATA", &c);
        goto out;
    }
    (void)seq;
    if (g_send(&c, msg, msglen) || (code = g_reply(&c)) / 100 != 2) {
        g_fail(ph, "end of data", &c);
        goto out;
    }
    lat = now_s() - t0;
    if (g_send(&c, "QUIT\r\n", 6) == 0)
        (void)g_reply(&c);
out:
    close(c.fd);
    return lat;
}

static void *good_main(void *arg)
{
    size_t msglen;
    char *msg = g_message(O.size, &msglen);
    unsigned long seq = 0;

    (void)arg;
    if (!msg)
        return NULL;
    while (!atomic_load(&good_stop)) {
        struct phase *ph = good_phase;
        if (!ph) {
            usleep(5000);
            continue;
        }
        double lat = g_one(ph, msg, msglen, seq++);
        pthread_mutex_lock(&good_mu);
        if (ph == good_phase) { /* a message that straddles phases is dropped */
            if (lat >= 0) {
                if (ph->nlat == ph->caplat) {
                    size_t cap = ph->caplat ? ph->caplat * 2 : 1024;
                    double *p = realloc(ph->lat, cap * sizeof(*p));
                    if (p) {
                        ph->lat = p;
                        ph->caplat = cap;
                    }
                }
                if (ph->nlat < ph->caplat)
                    ph->lat[ph->nlat++] = lat;
                ph->ok++;
            }
        } else if (lat >= 0) {
            ph->ok++; /* counted for the sink check, not for the figures */
            straddle_n++;
            if (lat > straddle_max)
                straddle_max = lat;
        }
        pthread_mutex_unlock(&good_mu);
        if (lat < 0)
            usleep(10000);
    }
    free(msg);
    return NULL;
}

/* ---- the crowd -------------------------------------------------------------- */
static const char slow_script[] = "EHLO slowloris.example.com\r\nNOOP\r\nNOOP\r\nNOOP\r\n";
static const char *const flood_cmds[] = {
    "NOOP\r\n", "RSET\r\n", "VRFY postmaster\r\n", "XJUNK aaaaaaaaaaaaaaaa\r\n",
    "HELP\r\n", "NOOP\r\n"};
#define FLOOD_BATCH 32
#define FLOOD_WINDOW 128

static struct hconn *crowd;
static unsigned ncrowd;
static int epfd;

static void h_src(unsigned i, char *src, size_t cap)
{
    snprintf(src, cap, "127.0.0.%u", 2 + i % (O.spread ? O.spread : 1));
}

static void h_close(struct hconn *h, bool by_server)
{
    if (h->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, h->fd, NULL);
        close(h->fd);
    }
    if (by_server && h->state == HS_READY)
        atomic_fetch_add(&H.closed[h->kind], 1);
    else if (h->state != HS_READY && h->state != HS_CLOSED)
        atomic_fetch_add(&H.failed[h->kind], 1);
    h->fd = -1;
    h->state = HS_CLOSED;
}

static int h_open(struct hconn *h, unsigned i)
{
    char src[32];
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};

    h_src(i, src, sizeof(src));
    h->fd = sock_open(src, true);
    h->state = HS_CONNECTING;
    h->lpos = 0;
    h->inflight = 0;
    h->slow_pos = 0;
    if (h->fd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, h->fd, &ev) != 0) {
        if (h->fd >= 0)
            close(h->fd);
        h->fd = -1;
        h->state = HS_CLOSED;
        atomic_fetch_add(&H.failed[h->kind], 1);
        return -1;
    }
    return 0;
}

static void h_want(struct hconn *h, unsigned i, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u32 = i};

    epoll_ctl(epfd, EPOLL_CTL_MOD, h->fd, &ev);
}

static void h_flood_write(struct hconn *h, unsigned i)
{
    char out[FLOOD_BATCH * 32];
    size_t len = 0;
    unsigned n = 0;

    while (n < FLOOD_BATCH && h->inflight + n < FLOOD_WINDOW) {
        const char *c = flood_cmds[(h->slow_pos++) % (sizeof(flood_cmds) / sizeof(flood_cmds[0]))];
        size_t l = strlen(c);
        memcpy(out + len, c, l);
        len += l;
        n++;
    }
    if (!n) {
        /* window full: wait for answers (level-triggered EPOLLOUT would spin) */
        h_want(h, i, EPOLLIN);
        return;
    }
    ssize_t w = send(h->fd, out, len, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (w < 0) {
        h_close(h, true);
        return;
    }
    /* a partial write loses the tail of a command: count whole ones only
     * and finish the cut line so the server is not left mid-command */
    if ((size_t)w < len) {
        const char *nl = memchr(out + w, '\n', len - (size_t)w);
        size_t rest = nl ? (size_t)(nl - (out + w)) + 1 : 0;
        if (rest)
            (void)send(h->fd, out + w, rest, MSG_NOSIGNAL);
        n = 0;
        for (size_t k = 0; k < (size_t)w + rest; k++)
            if (out[k] == '\n')
                n++;
    }
    h->inflight += n;
    atomic_fetch_add(&H.flood_sent, n);
}

/* Deaf: NOOPs as long as the kernel takes them, replies never read. */
static void h_deaf_write(struct hconn *h)
{
    static char out[64 * 6];
    static bool made;
    ssize_t w;

    if (!made) {
        for (size_t k = 0; k < sizeof(out); k += 6)
            memcpy(out + k, "NOOP\r\n", 6);
        made = true;
    }
    while ((w = send(h->fd, out, sizeof(out), MSG_NOSIGNAL)) > 0) {
        atomic_fetch_add(&H.deaf_bytes, (unsigned long)w);
        if ((size_t)w < sizeof(out))
            break; /* a cut NOOP: the server sees a long line, that is fine */
    }
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        h_close(h, true);
}

/* Count reply ends in what arrived; returns the number of complete replies. */
static unsigned h_scan(struct hconn *h, const char *p, size_t n)
{
    unsigned replies = 0;

    for (size_t k = 0; k < n; k++) {
        if (p[k] == '\n') {
            if (h->lpos >= 4 && h->lhead[3] == ' ')
                replies++;
            else if (h->lpos == 3 || (h->lpos >= 4 && h->lhead[3] == '\r'))
                replies++;
            h->lpos = 0;
            continue;
        }
        if (h->lpos < 4)
            h->lhead[h->lpos] = p[k];
        if (h->lpos < 255)
            h->lpos++;
    }
    return replies;
}

static void h_event(unsigned i, uint32_t ev)
{
    struct hconn *h = &crowd[i];
    char buf[16384];

    if (h->state == HS_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        if ((ev & (EPOLLERR | EPOLLHUP)) ||
            getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
            h_close(h, false);
            return;
        }
        h->state = HS_GREETING;
        h_want(h, i, EPOLLIN);
        return;
    }
    if (ev & EPOLLIN || ev & (EPOLLERR | EPOLLHUP)) {
        for (;;) {
            ssize_t n = recv(h->fd, buf, sizeof(buf), 0);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n <= 0) {
                h_close(h, true);
                return;
            }
            unsigned r = h_scan(h, buf, (size_t)n);
            if (!r)
                continue;
            if (h->state == HS_GREETING) {
                if (h->kind == HK_SLOW) {
                    h->state = HS_READY; /* the slowloris script starts with its own EHLO */
                    atomic_fetch_add(&H.ready[h->kind], 1);
                    h->next_at = now_s() + O.slow_interval_s;
                    r--;
                } else {
                    static const char ehlo[] = "EHLO crowd.example.com\r\n";
                    if (send(h->fd, ehlo, sizeof(ehlo) - 1, MSG_NOSIGNAL) !=
                        (ssize_t)sizeof(ehlo) - 1) {
                        h_close(h, true);
                        return;
                    }
                    h->state = HS_EHLO;
                    r--;
                }
            }
            if (r && h->state == HS_EHLO) {
                h->state = HS_READY;
                atomic_fetch_add(&H.ready[h->kind], 1);
                r--;
                if (h->kind == HK_FLOOD)
                    h_want(h, i, EPOLLIN | EPOLLOUT);
                if (h->kind == HK_DEAF) {
                    h_want(h, i, EPOLLOUT); /* never reads again */
                    h_deaf_write(h);
                    return;
                }
                if (h->kind == HK_MAILIDLE) {
                    /* open a transaction (sluice connects upstream), then idle */
                    static const char mail[] = "MAIL FROM:<idle@example.com>\r\n";
                    if (send(h->fd, mail, sizeof(mail) - 1, MSG_NOSIGNAL) !=
                        (ssize_t)sizeof(mail) - 1) {
                        h_close(h, true);
                        return;
                    }
                }
            }
            if (r && h->kind == HK_FLOOD) {
                bool was_full = h->inflight >= FLOOD_WINDOW;
                h->inflight = h->inflight > r ? h->inflight - r : 0;
                atomic_fetch_add(&H.flood_replies, r);
                if (was_full && h->inflight < FLOOD_WINDOW)
                    h_want(h, i, EPOLLIN | EPOLLOUT);
            }
        }
    }
    if (h->state == HS_READY && h->kind == HK_FLOOD && (ev & EPOLLOUT) && !atomic_load(&crowd_stop))
        h_flood_write(h, i);
    if (h->state == HS_READY && h->kind == HK_DEAF && (ev & EPOLLOUT) && !atomic_load(&crowd_stop))
        h_deaf_write(h);
}

static void *crowd_main(void *arg)
{
    struct epoll_event evs[512];
    unsigned opened = 0;
    double last_tick = 0;
    /* open at most this many per loop turn: a SYN burst of 10,000 would
     * overflow the listen backlog and measure that instead */
    const unsigned per_turn = 200;

    (void)arg;
    while (!atomic_load(&crowd_stop)) {
        for (unsigned k = 0; k < per_turn && opened < ncrowd; k++, opened++)
            h_open(&crowd[opened], opened);
        int n = epoll_wait(epfd, evs, 512, 20);
        for (int k = 0; k < n; k++)
            h_event(evs[k].data.u32, evs[k].events);
        double t = now_s();
        if (t - last_tick < 0.05)
            continue;
        last_tick = t;
        for (unsigned k = 0; k < ncrowd && k < opened; k++) {
            struct hconn *h = &crowd[k];
            if (h->kind == HK_SLOW && h->state == HS_READY && t >= h->next_at) {
                char ch = slow_script[h->slow_pos % (sizeof(slow_script) - 1)];
                if (send(h->fd, &ch, 1, MSG_NOSIGNAL) != 1) {
                    h_close(h, true);
                    continue;
                }
                h->slow_pos++;
                atomic_fetch_add(&H.slow_bytes, 1);
                h->next_at = t + O.slow_interval_s;
            } else if (h->kind == HK_FLOOD && h->state == HS_CLOSED) {
                /* the server hung up (junk limit, errors): come back */
                if (h->next_at == 0) {
                    h->next_at = t + 0.01;
                } else if (t >= h->next_at) {
                    h->next_at = 0;
                    atomic_fetch_add(&H.flood_reconnects, 1);
                    h_open(h, k);
                }
            }
        }
    }
    return NULL;
}

static void crowd_open_counts(unsigned long n[HK_KINDS])
{
    memset(n, 0, HK_KINDS * sizeof(n[0]));
    for (unsigned k = 0; k < ncrowd; k++)
        if (crowd[k].state == HS_READY)
            n[crowd[k].kind]++;
}

/* ---- phases ------------------------------------------------------------------ */
static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p)
{
    size_t r;

    if (!n)
        return 0;
    r = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (r < 1)
        r = 1;
    return v[(r > n ? n : r) - 1];
}

static void phase_begin(struct phase *ph, const char *name)
{
    memset(ph, 0, sizeof(*ph));
    ph->name = name;
    ph->cpu0 = proc_cpu_ticks(O.pid);
    ph->t0 = now_s();
    pthread_mutex_lock(&good_mu);
    good_phase = ph;
    pthread_mutex_unlock(&good_mu);
}

static void phase_end(struct phase *ph)
{
    pthread_mutex_lock(&good_mu);
    good_phase = NULL;
    ph->t1 = now_s();
    pthread_mutex_unlock(&good_mu);
    ph->cpu1 = proc_cpu_ticks(O.pid);
    ph->rss1 = proc_status_kib(O.pid, "VmRSS");
    ph->hwm1 = proc_status_kib(O.pid, "VmHWM");
    if (crowd) {
        unsigned long n[HK_KINDS];
        crowd_open_counts(n);
        ph->open_idle = n[HK_IDLE];
        ph->open_slow = n[HK_SLOW];
        ph->open_flood = n[HK_FLOOD];
        ph->open_deaf = n[HK_DEAF];
        ph->open_mailidle = n[HK_MAILIDLE];
    }
    qsort(ph->lat, ph->nlat, sizeof(double), cmp_d);
}

static void phase_print(const struct phase *ph, double hz)
{
    double wall = ph->t1 - ph->t0;
    double cpu = (ph->cpu0 >= 0 && ph->cpu1 >= 0) ? (double)(ph->cpu1 - ph->cpu0) / hz : -1;

    printf(
        "%-9s %7.1f %9.1f %9.2f %9.2f %9.2f %6lu %5lu %8.0f%% %9ld %9ld %7lu %6lu %6lu %6lu %6lu\n",
        ph->name, wall, (double)ph->nlat / wall, pct(ph->lat, ph->nlat, 50) * 1e3,
        pct(ph->lat, ph->nlat, 99) * 1e3, ph->nlat ? ph->lat[ph->nlat - 1] * 1e3 : 0.0,
        (unsigned long)ph->nlat, ph->fail, cpu >= 0 ? 100.0 * cpu / wall : -1.0, ph->rss1, ph->hwm1,
        ph->open_idle, ph->open_slow, ph->open_flood, ph->open_deaf, ph->open_mailidle);
}

static void phase_result(const struct phase *ph, double hz)
{
    double wall = ph->t1 - ph->t0;
    double cpu = (ph->cpu0 >= 0 && ph->cpu1 >= 0) ? (double)(ph->cpu1 - ph->cpu0) / hz : -1;

    printf("RESULT phase=%s wall_s=%.2f msgs=%zu fail=%lu msgs_per_s=%.2f p50_ms=%.3f p99_ms=%.3f "
           "max_ms=%.3f server_cpu_s=%.2f server_cpu_pct=%.1f rss_kib=%ld hwm_kib=%ld "
           "open_idle=%lu open_slow=%lu open_flood=%lu open_deaf=%lu open_mailidle=%lu\n",
           ph->name, wall, ph->nlat, ph->fail, (double)ph->nlat / wall,
           pct(ph->lat, ph->nlat, 50) * 1e3, pct(ph->lat, ph->nlat, 99) * 1e3,
           ph->nlat ? ph->lat[ph->nlat - 1] * 1e3 : 0.0, cpu, cpu >= 0 ? 100 * cpu / wall : -1,
           ph->rss1, ph->hwm1, ph->open_idle, ph->open_slow, ph->open_flood, ph->open_deaf,
           ph->open_mailidle);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sluice-hostile --server 127.0.0.1:PORT [options]\n"
            "  --pid PID             the server's pid, for its CPU and RSS\n"
            "  --idle N              idle connections (default 10000)\n"
            "  --slowloris N         slowloris connections (default 200)\n"
            "  --flood N             flooding connections (default 16)\n"
            "  --deaf N              connections that pipeline NOOPs and never read (default 0)\n"
            "  --idle-mail N         connections that send MAIL FROM and then idle (default 0)\n"
            "  --spread K            crowd binds to 127.0.0.2 .. 127.0.0.(K+1) (default 250)\n"
            "  --slow-interval S     seconds between slowloris bytes (default 3)\n"
            "  --baseline S          good client alone before and after (default 15)\n"
            "  --duration S          good client under the crowd (default 20)\n"
            "  --ramp S              longest wait for the crowd to connect (default 60)\n"
            "  --size BYTES          good message size (default 4096)\n"
            "  --timeout MS          good client's bound per read/write (default 30000)\n"
            "  --from ADDR --to ADDR envelope of the good client\n");
}

int main(int argc, char **argv)
{
    enum {
        O_SERVER = 256,
        O_PID,
        O_IDLE,
        O_SLOW,
        O_FLOOD,
        O_DEAF,
        O_MAILIDLE,
        O_SPREAD,
        O_SLOWIV,
        O_BASE,
        O_DUR,
        O_RAMP,
        O_SIZE,
        O_TIMEOUT,
        O_FROM,
        O_TO
    };
    static const struct option lo[] = {{"server", required_argument, NULL, O_SERVER},
                                       {"pid", required_argument, NULL, O_PID},
                                       {"idle", required_argument, NULL, O_IDLE},
                                       {"slowloris", required_argument, NULL, O_SLOW},
                                       {"flood", required_argument, NULL, O_FLOOD},
                                       {"spread", required_argument, NULL, O_SPREAD},
                                       {"deaf", required_argument, NULL, O_DEAF},
                                       {"idle-mail", required_argument, NULL, O_MAILIDLE},
                                       {"slow-interval", required_argument, NULL, O_SLOWIV},
                                       {"baseline", required_argument, NULL, O_BASE},
                                       {"duration", required_argument, NULL, O_DUR},
                                       {"ramp", required_argument, NULL, O_RAMP},
                                       {"size", required_argument, NULL, O_SIZE},
                                       {"timeout", required_argument, NULL, O_TIMEOUT},
                                       {"from", required_argument, NULL, O_FROM},
                                       {"to", required_argument, NULL, O_TO},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    struct phase base, ramp, loaded, after;
    pthread_t gt, ct;
    double hz = (double)sysconf(_SC_CLK_TCK);
    int o;

    O.idle = 10000;
    O.slow = 200;
    O.flood = 16;
    O.spread = 250;
    O.slow_interval_s = 3;
    O.baseline_s = 15;
    O.duration_s = 20;
    O.ramp_s = 60;
    O.size = 4096;
    O.timeout_ms = 30000;
    O.from = "good@example.com";
    O.to = "rcpt@example.net";
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case O_SERVER: {
            char host[64];
            const char *c = strrchr(optarg, ':');
            if (!c || (size_t)(c - optarg) >= sizeof(host))
                goto bad;
            memcpy(host, optarg, (size_t)(c - optarg));
            host[c - optarg] = '\0';
            O.server.sin_family = AF_INET;
            O.server.sin_port = htons((uint16_t)atoi(c + 1));
            if (inet_pton(AF_INET, host, &O.server.sin_addr) != 1)
                goto bad;
            snprintf(O.server_text, sizeof(O.server_text), "%s", optarg);
            break;
        }
        case O_PID:
            O.pid = atoi(optarg);
            break;
        case O_IDLE:
            O.idle = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_SLOW:
            O.slow = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_FLOOD:
            O.flood = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_DEAF:
            O.deaf = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_MAILIDLE:
            O.mailidle = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_SPREAD:
            O.spread = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_SLOWIV:
            O.slow_interval_s = atof(optarg);
            break;
        case O_BASE:
            O.baseline_s = atof(optarg);
            break;
        case O_DUR:
            O.duration_s = atof(optarg);
            break;
        case O_RAMP:
            O.ramp_s = atof(optarg);
            break;
        case O_SIZE:
            O.size = strtoul(optarg, NULL, 10);
            break;
        case O_TIMEOUT:
            O.timeout_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_FROM:
            O.from = optarg;
            break;
        case O_TO:
            O.to = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "sluice-hostile: bad --server '%s'\n", optarg);
        return 2;
    }
    if (!O.server_text[0] || optind != argc || O.spread == 0 || O.spread > 250) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < O.idle + O.slow + O.flood + O.deaf + O.mailidle + 64) {
            fprintf(stderr, "sluice-hostile: RLIMIT_NOFILE %lu is too small for %u connections\n",
                    (unsigned long)rl.rlim_cur, O.idle + O.slow + O.flood);
            return 2;
        }
    }
    ncrowd = O.idle + O.slow + O.flood + O.deaf + O.mailidle;
    crowd = calloc(ncrowd ? ncrowd : 1, sizeof(*crowd));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!crowd || epfd < 0)
        return 2;
    /* interleave the kinds so every phase of the ramp has some of each */
    for (unsigned k = 0; k < ncrowd; k++) {
        crowd[k].fd = -1;
        crowd[k].state = HS_CLOSED;
        crowd[k].kind = HK_IDLE;
    }
    for (unsigned k = 0; k < O.slow; k++)
        crowd[(unsigned long)k * ncrowd / (O.slow + O.flood + 1)].kind = HK_SLOW;
    for (unsigned k = 0; k < O.flood; k++) {
        unsigned idx = (unsigned)(((unsigned long)k * 2 + 1) * ncrowd / (2 * (O.flood + 1)));
        while (crowd[idx].kind != HK_IDLE)
            idx = (idx + 1) % ncrowd;
        crowd[idx].kind = HK_FLOOD;
    }
    /* deaf and in-MAIL ones: spread over the rest, on free slots */
    for (unsigned k = 0; k < O.deaf + O.mailidle; k++) {
        unsigned idx =
            (unsigned)(((unsigned long)k * 3 + 1) * ncrowd / (3 * (O.deaf + O.mailidle) + 1));
        while (crowd[idx].kind != HK_IDLE)
            idx = (idx + 1) % ncrowd;
        crowd[idx].kind = k < O.deaf ? HK_DEAF : HK_MAILIDLE;
    }

    printf("sluice-hostile: server %s pid %d; crowd: %u idle + %u slowloris (1 byte / %.1f s) + "
           "%u flood + %u deaf + %u idle in MAIL, from 127.0.0.2-127.0.0.%u; good client from "
           "127.0.0.1, %zu-byte messages, one connection each\n",
           O.server_text, O.pid, O.idle, O.slow, O.slow_interval_s, O.flood, O.deaf, O.mailidle,
           O.spread + 1, O.size);
    fflush(stdout);
    pthread_create(&gt, NULL, good_main, NULL);

    phase_begin(&base, "baseline");
    usleep((useconds_t)(O.baseline_s * 1e6));
    phase_end(&base);

    /* The crowd: ramp until every connection is ready (or the ramp bound). */
    phase_begin(&ramp, "ramp");
    pthread_create(&ct, NULL, crowd_main, NULL);
    for (;;) {
        /* every connection of every kind settled once (flood connections
         * come back after each hang-up, so they count only to their number) */
        const unsigned want[HK_KINDS] = {O.idle, O.slow, O.flood, O.deaf, O.mailidle};
        bool settled = true;
        for (int k = 0; k < HK_KINDS; k++)
            if (atomic_load(&H.ready[k]) + atomic_load(&H.failed[k]) < want[k])
                settled = false;
        if (settled || now_s() - ramp.t0 > O.ramp_s)
            break;
        usleep(100000);
    }
    phase_end(&ramp);
    unsigned long ready_idle = atomic_load(&H.ready[HK_IDLE]);
    printf("ramp: %.1f s; ready idle %lu/%u slowloris %lu/%u flood %lu/%u deaf %lu/%u in-MAIL "
           "%lu/%u; failed %lu/%lu/%lu/%lu/%lu\n",
           ramp.t1 - ramp.t0, ready_idle, O.idle, atomic_load(&H.ready[HK_SLOW]), O.slow,
           atomic_load(&H.ready[HK_FLOOD]), O.flood, atomic_load(&H.ready[HK_DEAF]), O.deaf,
           atomic_load(&H.ready[HK_MAILIDLE]), O.mailidle, atomic_load(&H.failed[HK_IDLE]),
           atomic_load(&H.failed[HK_SLOW]), atomic_load(&H.failed[HK_FLOOD]),
           atomic_load(&H.failed[HK_DEAF]), atomic_load(&H.failed[HK_MAILIDLE]));
    fflush(stdout);

    unsigned long fs0 = atomic_load(&H.flood_replies);
    phase_begin(&loaded, "loaded");
    usleep((useconds_t)(O.duration_s * 1e6));
    phase_end(&loaded);
    unsigned long fs1 = atomic_load(&H.flood_replies);

    atomic_store(&crowd_stop, true);
    pthread_join(ct, NULL);
    for (unsigned k = 0; k < ncrowd; k++) {
        if (crowd[k].fd >= 0)
            close(crowd[k].fd);
        crowd[k].fd = -1;
        crowd[k].state = HS_CLOSED;
    }
    usleep(500000); /* let the server see the hang-ups */

    phase_begin(&after, "after");
    usleep((useconds_t)(O.baseline_s * 1e6));
    phase_end(&after);
    atomic_store(&good_stop, true);
    pthread_join(gt, NULL);

    printf("\n%-9s %7s %9s %9s %9s %9s %6s %5s %9s %9s %9s %7s %6s %6s %6s %6s\n", "phase",
           "wall_s", "msgs/s", "p50_ms", "p99_ms", "max_ms", "ok", "fail", "srvCPU", "RSS_KiB",
           "HWM_KiB", "idle", "slow", "flood", "deaf", "inMAIL");
    phase_print(&base, hz);
    phase_print(&ramp, hz);
    phase_print(&loaded, hz);
    phase_print(&after, hz);
    const struct phase *all[] = {&base, &ramp, &loaded, &after};
    for (int k = 0; k < 4; k++)
        if (all[k]->fail)
            printf("  %s: %lu good-client failures, first: %s\n", all[k]->name, all[k]->fail,
                   all[k]->first_err);
    printf("\ncrowd during 'loaded': flood replies %.0f/s (%lu total sent, %lu answered, "
           "%lu reconnects); slowloris bytes %lu; deaf bytes sent %lu; closed by the server: "
           "idle %lu, slowloris %lu, flood %lu, deaf %lu, in-MAIL %lu\n",
           (double)(fs1 - fs0) / (loaded.t1 - loaded.t0), atomic_load(&H.flood_sent),
           atomic_load(&H.flood_replies), atomic_load(&H.flood_reconnects),
           atomic_load(&H.slow_bytes), atomic_load(&H.deaf_bytes), atomic_load(&H.closed[HK_IDLE]),
           atomic_load(&H.closed[HK_SLOW]), atomic_load(&H.closed[HK_FLOOD]),
           atomic_load(&H.closed[HK_DEAF]), atomic_load(&H.closed[HK_MAILIDLE]));
    printf(
        "messages that straddled a phase change (left out of the figures): %lu, longest %.2f ms\n",
        straddle_n, straddle_max * 1e3);
    if (base.nlat && loaded.nlat)
        printf("good client under the crowd vs alone: rate x%.2f, p50 x%.2f, p99 x%.2f\n",
               ((double)loaded.nlat / (loaded.t1 - loaded.t0)) /
                   ((double)base.nlat / (base.t1 - base.t0)),
               pct(loaded.lat, loaded.nlat, 50) / pct(base.lat, base.nlat, 50),
               pct(loaded.lat, loaded.nlat, 99) / pct(base.lat, base.nlat, 99));
    printf("\n");
    phase_result(&base, hz);
    phase_result(&ramp, hz);
    phase_result(&loaded, hz);
    phase_result(&after, hz);
    printf("RESULT crowd idle_ready=%lu slow_ready=%lu flood_ready=%lu idle_failed=%lu "
           "slow_failed=%lu flood_failed=%lu idle_closed=%lu slow_closed=%lu flood_closed=%lu "
           "flood_sent=%lu flood_replies=%lu flood_reconnects=%lu slow_bytes=%lu "
           "deaf_ready=%lu deaf_closed=%lu deaf_bytes=%lu mailidle_ready=%lu mailidle_closed=%lu "
           "good_total_ok=%lu\n",
           atomic_load(&H.ready[HK_IDLE]), atomic_load(&H.ready[HK_SLOW]),
           atomic_load(&H.ready[HK_FLOOD]), atomic_load(&H.failed[HK_IDLE]),
           atomic_load(&H.failed[HK_SLOW]), atomic_load(&H.failed[HK_FLOOD]),
           atomic_load(&H.closed[HK_IDLE]), atomic_load(&H.closed[HK_SLOW]),
           atomic_load(&H.closed[HK_FLOOD]), atomic_load(&H.flood_sent),
           atomic_load(&H.flood_replies), atomic_load(&H.flood_reconnects),
           atomic_load(&H.slow_bytes), atomic_load(&H.ready[HK_DEAF]),
           atomic_load(&H.closed[HK_DEAF]), atomic_load(&H.deaf_bytes),
           atomic_load(&H.ready[HK_MAILIDLE]), atomic_load(&H.closed[HK_MAILIDLE]),
           base.ok + ramp.ok + loaded.ok + after.ok);
    free(base.lat);
    free(ramp.lat);
    free(loaded.lat);
    free(after.lat);
    free(crowd);
    return (base.fail || loaded.fail || after.fail || !loaded.nlat) ? 1 : 0;
}
