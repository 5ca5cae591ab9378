/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-bench: a small SMTP load generator that times every message.
 *
 * Why our own client: Postfix's smtp-source gives throughput but no
 * per-message latency and no PIPELINING. This tool runs N sessions as N
 * threads with blocking sockets (simplest thing that is obviously correct),
 * each taking message numbers from one shared counter until M messages were
 * attempted, and records the time from writing MAIL to reading the final
 * reply after the dot. With --reconnect every message gets a connection of
 * its own (connect, EHLO, transaction, QUIT), as a real MTA's delivery
 * does, and the time runs from connect() to that final reply. It also holds many idle EHLO'd
 * connections (to measure a server's memory per connection) and can scrape an HTTP metrics endpoint
 * in the background (to measure what scraping costs).
 *
 * Every socket operation is bounded by --timeout; the whole run by
 * --deadline. Output: human-readable lines on stderr and one line starting
 * with "RESULT " (key=value) on stdout for scripts.
 *
 * Ownership: each session thread owns its struct bench_conn and its latency
 * array; main() owns the shared struct bench_run and merges the arrays after
 * joining the threads.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BENCH_LINE_MAX 1024      /* longest reply line we keep (RFC 5321: 512) */
#define BENCH_RBUF 16384
#define BENCH_MAX_SESSIONS 4096
#define BENCH_ERR_SHOWN 5        /* first few errors are printed verbatim */

/* Options and shared counters for one run. */
struct bench_run {
    /* options */
    struct sockaddr_storage server;
    socklen_t server_len;
    char server_text[300];
    unsigned sessions;
    unsigned long messages;
    size_t size;
    bool pipelining;
    bool reconnect; /* one connection per message */
    unsigned idle;
    double hold_s;
    unsigned source_spread;      /* bind sessions to 127.0.0.2 .. 127.0.0.(1+n) */
    unsigned timeout_ms;
    double deadline_s;
    const char *from;
    const char *to;
    const char *helo;
    struct sockaddr_storage scrape;
    socklen_t scrape_len;
    char scrape_text[300];
    const char *scrape_path;
    unsigned scrape_interval_ms;
    bool quiet;

    /* shared state */
    double t_start;
    atomic_ulong next_msg;
    atomic_ulong ok;
    atomic_ulong errors;
    atomic_ulong io_errors;
    atomic_ulong reconnects;
    atomic_ulong quit_errors; /* --reconnect: QUIT not answered with 221 */
    atomic_uint err_shown;
    atomic_bool stop;
    atomic_bool pipelining_used;
};

/* One SMTP connection with a small read buffer (replies are short). */
struct bench_conn {
    int fd;
    char rbuf[BENCH_RBUF];
    size_t rpos, rlen;
    bool pipelining; /* server offered PIPELINING in its EHLO reply */
    char last[BENCH_LINE_MAX]; /* last reply line, for error messages */
};

/* Per-session thread: owns its connection, message copy and latencies. */
struct bench_session {
    struct bench_run *run;
    unsigned index;
    pthread_t thread;
    double *lat;        /* seconds, one per successful message */
    size_t nlat, caplat;
};

static double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench_note_error(struct bench_run *run, const char *what, const char *detail)
{
    /* Only the first few errors are shown: a broken server would flood. */
    if (atomic_fetch_add(&run->err_shown, 1) < BENCH_ERR_SHOWN)
        fprintf(stderr, "sluice-bench: error: %s: %s\n", what, detail);
}

/* "HOST:PORT" or "[V6]:PORT", numeric or a resolvable name. */
static int bench_parse_hostport(const char *text, struct sockaddr_storage *out, socklen_t *outlen)
{
    char host[256];
    const char *port;
    struct addrinfo hints, *res = NULL;
    int rc;

    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (!end || end[1] != ':' || (size_t)(end - text - 1) >= sizeof(host))
            return -1;
        memcpy(host, text + 1, (size_t)(end - text - 1));
        host[end - text - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || (size_t)(colon - text) >= sizeof(host))
            return -1;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        port = colon + 1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res)
        return -1;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *outlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void bench_set_timeouts(int fd, unsigned timeout_ms)
{
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/*
 * Connect with a bounded wait. `src` (may be NULL) is a local IPv4 address
 * to bind first, so that many connections can come from different loopback
 * addresses (a per-client-IP limit would otherwise count them all as one).
 */
static int bench_connect(const struct sockaddr_storage *sa, socklen_t salen, const char *src,
                         unsigned timeout_ms)
{
    int fd, flags, one = 1, err = 0;
    socklen_t errlen = sizeof(err);
    struct pollfd pfd;

    fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (src && sa->ss_family == AF_INET) {
        struct sockaddr_in local = { .sin_family = AF_INET };
        if (inet_pton(AF_INET, src, &local.sin_addr) == 1 &&
            bind(fd, (struct sockaddr *)&local, sizeof(local)) != 0) {
            err = -errno;
            close(fd);
            return err;
        }
    }
    flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(fd, (const struct sockaddr *)sa, salen) != 0) {
        if (errno != EINPROGRESS) {
            err = -errno;
            close(fd);
            return err;
        }
        pfd.fd = fd;
        pfd.events = POLLOUT;
        pfd.revents = 0;
        if (poll(&pfd, 1, (int)timeout_ms) != 1) {
            close(fd);
            return -ETIMEDOUT;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) != 0 || err != 0) {
            close(fd);
            return err ? -err : -EIO;
        }
    }
    fcntl(fd, F_SETFL, flags);
    /* Commands are written whole; no reason to let Nagle hold them back. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bench_set_timeouts(fd, timeout_ms);
    return fd;
}

static int bench_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One line (without CRLF) into `line`; -1 on EOF, timeout or error. */
static int bench_read_line(struct bench_conn *c, char *line, size_t linecap)
{
    size_t used = 0;

    for (;;) {
        while (c->rpos < c->rlen) {
            char ch = c->rbuf[c->rpos++];
            if (ch == '\n') {
                if (used > 0 && line[used - 1] == '\r')
                    used--;
                line[used] = '\0';
                return 0;
            }
            if (used + 1 < linecap)
                line[used++] = ch;
        }
        ssize_t n = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        c->rpos = 0;
        c->rlen = (size_t)n;
    }
}

/*
 * Read a whole (possibly multi-line) reply; returns its code or -1 on I/O
 * trouble or garbage. With `ehlo` set, notes whether PIPELINING was offered.
 */
static int bench_read_reply(struct bench_conn *c, bool ehlo)
{
    char line[BENCH_LINE_MAX];
    int code = -1;

    for (;;) {
        if (bench_read_line(c, line, sizeof(line)) != 0)
            return -1;
        if (strlen(line) < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' ||
            line[1] > '9' || line[2] < '0' || line[2] > '9')
            return -1;
        int this_code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (code >= 0 && this_code != code)
            return -1;
        code = this_code;
        snprintf(c->last, sizeof(c->last), "%s", line);
        if (ehlo && strncasecmp(line + 4, "PIPELINING", 10) == 0 &&
            (line[14] == '\0' || line[14] == ' '))
            c->pipelining = true;
        if (line[3] == ' ' || line[3] == '\0')
            return code;
        if (line[3] != '-')
            return -1;
    }
}

static void bench_conn_close(struct bench_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->rpos = c->rlen = 0;
    c->pipelining = false;
}

/* Connect, read the greeting, EHLO. 0 or -1 (connection closed). */
static int bench_conn_open(struct bench_run *run, struct bench_conn *c, unsigned index)
{
    char src[32], cmd[300];
    int fd, code;

    c->rpos = c->rlen = 0;
    c->pipelining = false;
    snprintf(src, sizeof(src), "127.0.0.%u", 2 + index % (run->source_spread ? run->source_spread : 1));
    fd = bench_connect(&run->server, run->server_len, run->source_spread ? src : NULL,
                       run->timeout_ms);
    if (fd < 0) {
        bench_note_error(run, "connect", strerror(-fd));
        return -1;
    }
    c->fd = fd;
    code = bench_read_reply(c, false);
    if (code != 220) {
        bench_note_error(run, "greeting", code < 0 ? "no reply" : c->last);
        bench_conn_close(c);
        return -1;
    }
    snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", run->helo);
    if (bench_write_all(c->fd, cmd, strlen(cmd)) != 0 || (code = bench_read_reply(c, true)) != 250) {
        bench_note_error(run, "EHLO", code < 0 ? "no reply" : c->last);
        bench_conn_close(c);
        return -1;
    }
    return 0;
}

/*
 * Build a message of exactly `size` octets (CRLF line ends, no final dot):
 * a realistic header block, then body lines of 76 characters. The
 * Message-ID carries a fixed-width field that bench_msg_stamp() rewrites so
 * every message is distinct without rebuilding it. Returns the offset of
 * that field via *idpos.
 */
static char *bench_msg_build(const struct bench_run *run, size_t size, size_t *idpos,
                             size_t *outlen)
{
    static const char words[] =
        "the quick brown fox jumps over a lazy dog while sluice relays mail "
        "between client and upstream without a queue of its own and every "
        "filter plugin sees the message once before it is forwarded ";
    char hdr[1024], date[64];
    time_t now = time(NULL);
    struct tm tm;
    size_t hlen, pos, w = 0;
    char *msg;
    int n;

    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    n = snprintf(hdr, sizeof(hdr),
                 "From: Bench Sender <%s>\r\n"
                 "To: Bench Recipient <%s>\r\n"
                 "Subject: sluice-bench test message of %zu octets\r\n"
                 "Date: %s\r\n"
                 "Message-ID: <%012u.%06u.sluice-bench@bench.invalid>\r\n"
                 "MIME-Version: 1.0\r\n"
                 "Content-Type: text/plain; charset=us-ascii\r\n"
                 "Content-Transfer-Encoding: 7bit\r\n"
                 "\r\n",
                 run->from, run->to, size, date, 0u, 0u);
    if (n < 0 || (size_t)n >= sizeof(hdr))
        return NULL;
    hlen = (size_t)n;
    if (size < hlen + 2)
        size = hlen + 2; /* at least the header and one empty body line */
    msg = malloc(size + 8);
    if (!msg)
        return NULL;
    memcpy(msg, hdr, hlen);
    *idpos = (size_t)(strstr(hdr, "Message-ID: <") - hdr) + strlen("Message-ID: <");
    pos = hlen;
    /* Body: lines of 76 characters + CRLF; the last one shortened to fit. */
    while (pos < size) {
        size_t room = size - pos;
        size_t linelen = room >= 78 ? 76 : (room >= 2 ? room - 2 : 0);
        if (room < 2) {
            /* One octet left: fold it into the previous line. */
            msg[pos - 2] = 'x';
            msg[pos - 1] = '\r';
            msg[pos] = '\n';
            pos++;
            break;
        }
        for (size_t i = 0; i < linelen; i++) {
            msg[pos + i] = words[w % (sizeof(words) - 1)];
            w++;
        }
        /* Never start a line with '.', so the message needs no stuffing. */
        if (linelen > 0 && msg[pos] == '.')
            msg[pos] = 'x';
        pos += linelen;
        msg[pos++] = '\r';
        msg[pos++] = '\n';
    }
    memcpy(msg + pos, ".\r\n", 3);
    *outlen = pos;
    return msg;
}

static void bench_msg_stamp(char *msg, size_t idpos, unsigned long seq, unsigned session)
{
    char tmp[24];

    snprintf(tmp, sizeof(tmp), "%012lu.%06u", seq % 1000000000000UL, session % 1000000u);
    memcpy(msg + idpos, tmp, 19);
}

static int bench_lat_push(struct bench_session *s, double v)
{
    if (s->nlat == s->caplat) {
        size_t cap = s->caplat ? s->caplat * 2 : 1024;
        double *p = realloc(s->lat, cap * sizeof(*p));
        if (!p)
            return -1;
        s->lat = p;
        s->caplat = cap;
    }
    s->lat[s->nlat++] = v;
    return 0;
}

/*
 * One transaction. 1 = accepted, 0 = refused (connection usable), -1 = I/O.
 * The latency runs from `t_from` (when the connection was opened, in
 * --reconnect mode) or, if that is 0, from writing MAIL.
 */
static int bench_send_one(struct bench_run *run, struct bench_conn *c, const char *msg,
                          size_t msglen, double t_from, double *lat)
{
    char cmds[1024];
    int n, mail, rcpt, data, fin;
    double t0;

    n = snprintf(cmds, sizeof(cmds), "MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n", run->from,
                 run->to);
    if (n < 0 || (size_t)n >= sizeof(cmds))
        return -1;
    t0 = t_from > 0 ? t_from : bench_now();
    if (run->pipelining && c->pipelining) {
        atomic_store(&run->pipelining_used, true);
        if (bench_write_all(c->fd, cmds, (size_t)n) != 0)
            return -1;
        if ((mail = bench_read_reply(c, false)) < 0 || (rcpt = bench_read_reply(c, false)) < 0 ||
            (data = bench_read_reply(c, false)) < 0)
            return -1;
    } else {
        const char *rcpt_cmd = strstr(cmds, "\r\n") + 2;
        const char *data_cmd = strstr(rcpt_cmd, "\r\n") + 2;
        if (bench_write_all(c->fd, cmds, (size_t)(rcpt_cmd - cmds)) != 0 ||
            (mail = bench_read_reply(c, false)) < 0)
            return -1;
        if (mail / 100 != 2)
            goto refused;
        if (bench_write_all(c->fd, rcpt_cmd, (size_t)(data_cmd - rcpt_cmd)) != 0 ||
            (rcpt = bench_read_reply(c, false)) < 0)
            return -1;
        if (rcpt / 100 != 2)
            goto refused;
        if (bench_write_all(c->fd, data_cmd, strlen(data_cmd)) != 0 ||
            (data = bench_read_reply(c, false)) < 0)
            return -1;
    }
    if (data == 354) {
        /* The message and its terminating dot in one write (msg has room). */
        if (bench_write_all(c->fd, msg, msglen + 3) != 0 || (fin = bench_read_reply(c, false)) < 0)
            return -1;
        if (mail / 100 == 2 && rcpt / 100 == 2 && fin / 100 == 2) {
            *lat = bench_now() - t0;
            return 1;
        }
        bench_note_error(run, "end of data", c->last);
        return 0;
    }
refused:
    bench_note_error(run, "envelope", c->last);
    if (bench_write_all(c->fd, "RSET\r\n", 6) != 0 || bench_read_reply(c, false) < 0)
        return -1;
    return 0;
}

static void *bench_session_main(void *arg)
{
    struct bench_session *s = arg;
    struct bench_run *run = s->run;
    struct bench_conn *c;
    size_t idpos = 0, msglen = 0;
    char *msg;
    unsigned long seq;

    c = calloc(1, sizeof(*c));
    msg = bench_msg_build(run, run->size, &idpos, &msglen);
    if (!c || !msg) {
        fprintf(stderr, "sluice-bench: out of memory\n");
        free(c);
        free(msg);
        return NULL;
    }
    c->fd = -1;
    while (!atomic_load(&run->stop) && (seq = atomic_fetch_add(&run->next_msg, 1)) < run->messages) {
        double lat = 0, t_conn = 0;
        int rc;

        if (bench_now() - run->t_start > run->deadline_s) {
            atomic_store(&run->stop, true);
            bench_note_error(run, "deadline", "run took longer than --deadline; stopping");
            break;
        }
        if (c->fd < 0) {
            t_conn = bench_now();
            if (bench_conn_open(run, c, s->index) != 0) {
                atomic_fetch_add(&run->errors, 1);
                atomic_fetch_add(&run->io_errors, 1);
                usleep(10000); /* a server that refuses must not make us spin */
                continue;
            }
        }
        bench_msg_stamp(msg, idpos, seq, s->index);
        rc = bench_send_one(run, c, msg, msglen, run->reconnect ? t_conn : 0, &lat);
        if (rc == 1) {
            atomic_fetch_add(&run->ok, 1);
            if (bench_lat_push(s, lat) != 0)
                atomic_store(&run->stop, true);
        } else {
            atomic_fetch_add(&run->errors, 1);
            if (rc < 0) {
                atomic_fetch_add(&run->io_errors, 1);
                atomic_fetch_add(&run->reconnects, 1);
                bench_note_error(run, "connection lost or timed out; last reply was",
                                 c->last[0] ? c->last : "(none)");
                bench_conn_close(c);
            }
        }
        /* --reconnect: QUIT after every message (not part of its latency). */
        if (run->reconnect && c->fd >= 0) {
            if (bench_write_all(c->fd, "QUIT\r\n", 6) != 0 || bench_read_reply(c, false) != 221)
                atomic_fetch_add(&run->quit_errors, 1);
            bench_conn_close(c);
        }
    }
    if (c->fd >= 0) {
        if (bench_write_all(c->fd, "QUIT\r\n", 6) == 0)
            (void)bench_read_reply(c, false);
        bench_conn_close(c);
    }
    free(msg);
    free(c);
    return NULL;
}

/* Background scraper: GET path every interval until run->stop. */
struct bench_scrape {
    struct bench_run *run;
    pthread_t thread;
    unsigned long ok, failed;
    double total_s, max_s;
    size_t last_bytes;
};

static int bench_scrape_once(struct bench_scrape *sc)
{
    struct bench_run *run = sc->run;
    char req[512], buf[16384];
    size_t got = 0;
    bool status_ok = false;
    /* A metrics page answers in milliseconds; a short bound keeps a stuck
     * endpoint from holding the run up after the load is done. */
    int fd = bench_connect(&run->scrape, run->scrape_len, NULL,
                           run->timeout_ms < 2000 ? run->timeout_ms : 2000);
    int n;

    if (fd < 0)
        return -1;
    n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n",
                 run->scrape_path, run->scrape_text);
    if (n < 0 || (size_t)n >= sizeof(req) || bench_write_all(fd, req, (size_t)n) != 0) {
        close(fd);
        return -1;
    }
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        if (got == 0 && r >= 12 && memcmp(buf, "HTTP/1.", 7) == 0 && memcmp(buf + 9, "200", 3) == 0)
            status_ok = true;
        got += (size_t)r;
    }
    close(fd);
    sc->last_bytes = got;
    return status_ok ? 0 : -1;
}

static void *bench_scrape_main(void *arg)
{
    struct bench_scrape *sc = arg;
    struct bench_run *run = sc->run;
    double next = bench_now();

    while (!atomic_load(&run->stop)) {
        double t0 = bench_now(), dt;
        if (bench_scrape_once(sc) == 0)
            sc->ok++;
        else
            sc->failed++;
        dt = bench_now() - t0;
        sc->total_s += dt;
        if (dt > sc->max_s)
            sc->max_s = dt;
        /* Fixed cadence, not fixed gap: a slow scrape does not stretch it. */
        next += run->scrape_interval_ms / 1000.0;
        while (!atomic_load(&run->stop)) {
            double left = next - bench_now();
            if (left <= 0)
                break;
            usleep(left > 0.01 ? 10000 : (useconds_t)(left * 1e6));
        }
    }
    return NULL;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static double bench_percentile(const double *v, size_t n, double p)
{
    size_t rank;

    if (n == 0)
        return 0;
    rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static int bench_run_load(struct bench_run *run)
{
    struct bench_session *ss;
    struct bench_scrape sc = { .run = run };
    bool scraping = run->scrape_len > 0;
    double *all, elapsed;
    size_t nall = 0;

    ss = calloc(run->sessions, sizeof(*ss));
    if (!ss)
        return -1;
    run->t_start = bench_now();
    if (scraping && pthread_create(&sc.thread, NULL, bench_scrape_main, &sc) != 0)
        scraping = false;
    for (unsigned i = 0; i < run->sessions; i++) {
        ss[i].run = run;
        ss[i].index = i;
        if (pthread_create(&ss[i].thread, NULL, bench_session_main, &ss[i]) != 0) {
            fprintf(stderr, "sluice-bench: cannot start session thread %u\n", i);
            atomic_store(&run->stop, true);
            run->sessions = i;
            break;
        }
    }
    for (unsigned i = 0; i < run->sessions; i++) {
        pthread_join(ss[i].thread, NULL);
        nall += ss[i].nlat;
    }
    elapsed = bench_now() - run->t_start;
    atomic_store(&run->stop, true);
    if (scraping)
        pthread_join(sc.thread, NULL);

    all = malloc((nall ? nall : 1) * sizeof(*all));
    if (!all)
        return -1;
    nall = 0;
    for (unsigned i = 0; i < run->sessions; i++) {
        if (ss[i].nlat > 0)
            memcpy(all + nall, ss[i].lat, ss[i].nlat * sizeof(*all));
        nall += ss[i].nlat;
        free(ss[i].lat);
    }
    free(ss);
    qsort(all, nall, sizeof(*all), bench_cmp_double);

    unsigned long ok = atomic_load(&run->ok), errors = atomic_load(&run->errors);
    double rate = elapsed > 0 ? (double)ok / elapsed : 0;
    double sum = 0;
    for (size_t i = 0; i < nall; i++)
        sum += all[i];
    double mean = nall ? sum / (double)nall : 0;
    double p50 = bench_percentile(all, nall, 50), p90 = bench_percentile(all, nall, 90);
    double p99 = bench_percentile(all, nall, 99), mx = nall ? all[nall - 1] : 0;
    double mn = nall ? all[0] : 0;
    bool pipe = atomic_load(&run->pipelining_used);

    if (!run->quiet) {
        fprintf(
            stderr,
            "sluice-bench: %s sessions=%u size=%zu pipelining=%s%s: %lu ok, %lu errors in %.3f s"
            " = %.1f msgs/s\n",
            run->server_text, run->sessions, run->size, pipe ? "yes" : "no",
            run->reconnect ? " one connection per message" : "", ok, errors, elapsed, rate);
        fprintf(stderr,
                "sluice-bench: latency (%s) ms: min %.3f p50 %.3f p90 %.3f p99 %.3f max %.3f mean "
                "%.3f\n",
                run->reconnect ? "connect to final reply" : "MAIL to final reply", mn * 1e3,
                p50 * 1e3, p90 * 1e3, p99 * 1e3, mx * 1e3, mean * 1e3);
        if (scraping)
            fprintf(stderr, "sluice-bench: scrapes: %lu ok, %lu failed, mean %.3f ms, max %.3f ms,"
                            " last %zu bytes\n",
                    sc.ok, sc.failed, (sc.ok + sc.failed) ? sc.total_s * 1e3 / (double)(sc.ok + sc.failed) : 0,
                    sc.max_s * 1e3, sc.last_bytes);
    }
    printf("RESULT mode=load server=%s sessions=%u size=%zu pipelining=%d reconnect=%d "
           "messages=%lu ok=%lu errors=%lu io_errors=%lu quit_errors=%lu elapsed_s=%.4f "
           "msgs_per_s=%.2f lat_min_ms=%.3f lat_p50_ms=%.3f lat_p90_ms=%.3f lat_p99_ms=%.3f "
           "lat_max_ms=%.3f lat_mean_ms=%.3f",
           run->server_text, run->sessions, run->size, pipe ? 1 : 0, run->reconnect ? 1 : 0,
           run->messages, ok, errors, (unsigned long)atomic_load(&run->io_errors),
           (unsigned long)atomic_load(&run->quit_errors), elapsed, rate, mn * 1e3, p50 * 1e3,
           p90 * 1e3, p99 * 1e3, mx * 1e3, mean * 1e3);
    if (scraping)
        printf(" scrapes_ok=%lu scrapes_failed=%lu scrape_mean_ms=%.3f", sc.ok, sc.failed,
               (sc.ok + sc.failed) ? sc.total_s * 1e3 / (double)(sc.ok + sc.failed) : 0);
    printf("\n");
    fflush(stdout);
    free(all);
    return errors == 0 && ok == run->messages && atomic_load(&run->quit_errors) == 0 ? 0 : 1;
}

/*
 * Idle mode: open N connections, EHLO each, then hold them for --hold
 * seconds. "IDLE_READY n=K" on stdout tells a script when to measure.
 */
static int bench_run_idle(struct bench_run *run)
{
    struct bench_conn *cs = calloc(run->idle, sizeof(*cs));
    unsigned open_ok = 0, failed = 0;
    double t0 = bench_now(), t_open;

    if (!cs)
        return -1;
    for (unsigned i = 0; i < run->idle; i++) {
        cs[i].fd = -1;
        if (bench_now() - t0 > run->deadline_s)
            break;
        if (bench_conn_open(run, &cs[i], i) == 0)
            open_ok++;
        else
            failed++;
    }
    t_open = bench_now() - t0;
    printf("IDLE_READY n=%u failed=%u open_s=%.3f\n", open_ok, failed, t_open);
    fflush(stdout);
    if (!run->quiet)
        fprintf(stderr, "sluice-bench: %u idle connections open (%u failed) in %.3f s; holding %.1f s\n",
                open_ok, failed, t_open, run->hold_s);

    /* Hold; then check every connection is still alive with a NOOP. */
    double until = bench_now() + run->hold_s;
    while (!atomic_load(&run->stop) && bench_now() < until)
        usleep(20000);
    unsigned alive = 0;
    for (unsigned i = 0; i < run->idle; i++) {
        if (cs[i].fd < 0)
            continue;
        if (bench_write_all(cs[i].fd, "NOOP\r\n", 6) == 0 && bench_read_reply(&cs[i], false) == 250)
            alive++;
        if (bench_write_all(cs[i].fd, "QUIT\r\n", 6) == 0)
            (void)bench_read_reply(&cs[i], false);
        bench_conn_close(&cs[i]);
    }
    printf("RESULT mode=idle server=%s idle=%u open=%u failed=%u alive_after_hold=%u open_s=%.3f\n",
           run->server_text, run->idle, open_ok, failed, alive, t_open);
    fflush(stdout);
    free(cs);
    return failed == 0 && alive == open_ok ? 0 : 1;
}

static void bench_usage(FILE *f)
{
    fprintf(
        f,
        "usage: sluice-bench --server HOST:PORT [options]\n"
        "  --server HOST:PORT   SMTP server to load (required)\n"
        "  --sessions N         concurrent sessions (default 1)\n"
        "  --messages M         messages in total (default 1000)\n"
        "  --size BYTES         message size incl. header, CRLF lines of 76 chars (default 4096)\n"
        "  --pipelining         send MAIL/RCPT/DATA in one write when PIPELINING is offered\n"
        "  --reconnect          one connection per message (connect, EHLO, transaction, QUIT);\n"
        "                       latency then runs from connect() to the final reply\n"
        "  --from ADDR          envelope sender (default bench@example.com)\n"
        "  --to ADDR            envelope recipient (default rcpt@example.net)\n"
        "  --helo NAME          EHLO argument (default bench.example.com)\n"
        "  --idle N             instead of load: open N idle EHLO'd connections ...\n"
        "  --hold SECONDS       ... and hold them this long (default 5)\n"
        "  --source-spread K    bind connection i to 127.0.0.(2 + i %% K) (default: no bind)\n"
        "  --scrape HOST:PORT   during the load, GET --scrape-path every --scrape-interval\n"
        "  --scrape-path PATH   (default /metrics)\n"
        "  --scrape-interval MS (default 100)\n"
        "  --timeout MS         bound on connect and on every read/write (default 30000)\n"
        "  --deadline SECONDS   bound on the whole run (default 600)\n"
        "  --quiet              only the RESULT line\n"
        "Prints one 'RESULT key=value ...' line on stdout; exit 0 if every message was\n"
        "accepted (load) or every idle connection stayed up (idle), 1 otherwise.\n");
}

static int bench_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    enum {
        O_SERVER = 256,
        O_SESS,
        O_MSGS,
        O_SIZE,
        O_PIPE,
        O_RECONNECT,
        O_IDLE,
        O_HOLD,
        O_SPREAD,
        O_TIMEOUT,
        O_DEADLINE,
        O_FROM,
        O_TO,
        O_HELO,
        O_SCRAPE,
        O_SCRAPE_PATH,
        O_SCRAPE_IVL,
        O_QUIET,
        O_HELP
    };
    static const struct option opts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"sessions", required_argument, NULL, O_SESS},
        {"messages", required_argument, NULL, O_MSGS},
        {"size", required_argument, NULL, O_SIZE},
        {"pipelining", no_argument, NULL, O_PIPE},
        {"reconnect", no_argument, NULL, O_RECONNECT},
        {"idle", required_argument, NULL, O_IDLE},
        {"hold", required_argument, NULL, O_HOLD},
        {"source-spread", required_argument, NULL, O_SPREAD},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"deadline", required_argument, NULL, O_DEADLINE},
        {"from", required_argument, NULL, O_FROM},
        {"to", required_argument, NULL, O_TO},
        {"helo", required_argument, NULL, O_HELO},
        {"scrape", required_argument, NULL, O_SCRAPE},
        {"scrape-path", required_argument, NULL, O_SCRAPE_PATH},
        {"scrape-interval", required_argument, NULL, O_SCRAPE_IVL},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    struct bench_run *run = calloc(1, sizeof(*run));
    unsigned long v;
    int o, rc;

    if (!run)
        return 2;
    run->sessions = 1;
    run->messages = 1000;
    run->size = 4096;
    run->hold_s = 5;
    run->timeout_ms = 30000;
    run->deadline_s = 600;
    run->from = "bench@example.com";
    run->to = "rcpt@example.net";
    run->helo = "bench.example.com";
    run->scrape_path = "/metrics";
    run->scrape_interval_ms = 100;

    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case O_SERVER:
            snprintf(run->server_text, sizeof(run->server_text), "%s", optarg);
            if (bench_parse_hostport(optarg, &run->server, &run->server_len) != 0) {
                fprintf(stderr, "sluice-bench: bad --server '%s' (want HOST:PORT)\n", optarg);
                return 2;
            }
            break;
        case O_SCRAPE:
            snprintf(run->scrape_text, sizeof(run->scrape_text), "%s", optarg);
            if (bench_parse_hostport(optarg, &run->scrape, &run->scrape_len) != 0) {
                fprintf(stderr, "sluice-bench: bad --scrape '%s' (want HOST:PORT)\n", optarg);
                return 2;
            }
            break;
        case O_SESS:
            if (bench_parse_uint(optarg, BENCH_MAX_SESSIONS, &v) != 0 || v == 0)
                goto bad;
            run->sessions = (unsigned)v;
            break;
        case O_MSGS:
            if (bench_parse_uint(optarg, 1000000000UL, &v) != 0)
                goto bad;
            run->messages = v;
            break;
        case O_SIZE:
            if (bench_parse_uint(optarg, 1UL << 30, &v) != 0)
                goto bad;
            run->size = v;
            break;
        case O_PIPE:
            run->pipelining = true;
            break;
        case O_RECONNECT:
            run->reconnect = true;
            break;
        case O_IDLE:
            if (bench_parse_uint(optarg, 1000000UL, &v) != 0 || v == 0)
                goto bad;
            run->idle = (unsigned)v;
            break;
        case O_HOLD:
            run->hold_s = atof(optarg);
            break;
        case O_SPREAD:
            if (bench_parse_uint(optarg, 250, &v) != 0)
                goto bad;
            run->source_spread = (unsigned)v;
            break;
        case O_TIMEOUT:
            if (bench_parse_uint(optarg, 3600000UL, &v) != 0 || v == 0)
                goto bad;
            run->timeout_ms = (unsigned)v;
            break;
        case O_DEADLINE:
            run->deadline_s = atof(optarg);
            break;
        case O_FROM:
            run->from = optarg;
            break;
        case O_TO:
            run->to = optarg;
            break;
        case O_HELO:
            run->helo = optarg;
            break;
        case O_SCRAPE_PATH:
            run->scrape_path = optarg;
            break;
        case O_SCRAPE_IVL:
            if (bench_parse_uint(optarg, 3600000UL, &v) != 0 || v == 0)
                goto bad;
            run->scrape_interval_ms = (unsigned)v;
            break;
        case O_QUIET:
            run->quiet = true;
            break;
        case O_HELP:
        case 'h':
            bench_usage(stdout);
            return 0;
        default:
            bench_usage(stderr);
            return 2;
        }
        continue;
bad:
        fprintf(stderr, "sluice-bench: bad value '%s' for option\n", optarg);
        return 2;
    }
    if (optind != argc || run->server_len == 0) {
        bench_usage(stderr);
        return 2;
    }
    if (run->hold_s < 0 || run->deadline_s <= 0) {
        fprintf(stderr, "sluice-bench: --hold must be >= 0 and --deadline > 0\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    /* N idle connections need N descriptors; raise the soft limit if we can. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    rc = run->idle ? bench_run_idle(run) : bench_run_load(run);
    free(run);
    return rc < 0 ? 2 : rc;
}
