/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dvauth_driver: proxy/dvauth_client.c against a real Dovecot, for
 * tests/integration/test_dvauth.py.
 *
 *   dvauth_driver [-t MS] [-u] [-n] [-r RIP] [-x N] ADDR USER PASS [USER PASS]...
 *       every pair is sent at once over one client (one connection);
 *       -x N cancels request N (1-based) right after making it.
 *   dvauth_driver [-t MS] [-u] [-n] [-r RIP] -i ADDR
 *       reads "USER PASS" lines on stdin, one request each, answering
 *       before reading on; EOF ends it. The client stays the same, so a
 *       Dovecot restarted in between shows the reconnect.
 *
 * For each request one line, in the order the answers come:
 *   N OK user=NAME ms=T | N FAIL reason=TEXT ms=T | N TEMPFAIL reason=TEXT ms=T
 * (NAME "-" when Dovecot sent none, TEXT "-" when there is none), and
 * "N CANCELLED" for -x. Exit status 0 when every request got its line, 3
 * on a usage error or a request the client refused. -u: not secured
 * (default: secured, i.e. the SMTP client is on TLS); -n: no-penalty;
 * -r: the remote IP told to Dovecot (default 127.0.0.1). ADDR is a socket
 * path or host:port.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "defer.h"
#include "dvauth_client.h"
#include "log.h"

struct job {
    int n;
    uint64_t t0;
    struct dvauth_client_req *h;
};

static uv_loop_t *loop;
static struct dvauth_client *cl;
static int outstanding;
static bool interactive;
static unsigned opt_timeout = 5000;
static bool opt_secured = true, opt_nopen;
static const char *opt_rip = "127.0.0.1";
static int next_n;

static uv_pipe_t in_pipe;
static char in_buf[4096];
static size_t in_len;
static bool in_eof;

static void read_more(void);

static void done_cb(void *ud, const struct dvauth_client_result *r)
{
    struct job *j = ud;
    static const char *const names[] = {"OK", "FAIL", "TEMPFAIL"};
    unsigned long ms = (unsigned long)(uv_now(loop) - j->t0);
    if (r->status == DVAUTH_CLIENT_OK)
        printf("%d OK user=%s ms=%lu\n", j->n, r->user ? r->user : "-", ms);
    else
        printf("%d %s reason=%s ms=%lu\n", j->n, names[r->status], r->reason ? r->reason : "-", ms);
    fflush(stdout);
    free(j);
    if (--outstanding == 0 && interactive)
        read_more();
    if (outstanding == 0 && (!interactive || in_eof)) {
        dvauth_client_free(cl); /* from inside a callback: allowed */
        cl = NULL;
        if (interactive)
            uv_close((uv_handle_t *)&in_pipe, NULL);
    }
}

static bool submit(const char *user, const char *pass, bool cancel)
{
    struct job *j = calloc(1, sizeof *j);
    j->n = ++next_n;
    j->t0 = uv_now(loop);
    struct dvauth_req req = {
        .user = user,
        .pass = pass,
        .service = "smtp",
        .lip = "127.0.0.1",
        .lport = 587,
        .rip = opt_rip,
        .rport = 40000 + (unsigned)j->n,
        .secured = opt_secured,
        .no_penalty = opt_nopen,
        .session = "dvauth-driver",
    };
    j->h = dvauth_client_auth(cl, &req, done_cb, j);
    if (!j->h) {
        printf("%d REFUSED\n", j->n);
        free(j);
        return false;
    }
    if (cancel) {
        dvauth_client_cancel(j->h);
        printf("%d CANCELLED\n", j->n);
        free(j);
        return true;
    }
    outstanding++;
    return true;
}

/* Interactive mode: take one line from in_buf if there is one. */
static void read_more(void)
{
    char *lf = memchr(in_buf, '\n', in_len);
    if (!lf) {
        if (in_eof && outstanding == 0 && cl) {
            dvauth_client_free(cl);
            cl = NULL;
            uv_close((uv_handle_t *)&in_pipe, NULL);
        }
        return;
    }
    *lf = 0;
    char *user = in_buf, *pass = strchr(in_buf, ' ');
    if (pass)
        *pass++ = 0;
    bool ok = pass && submit(user, pass, false);
    size_t used = (size_t)(lf + 1 - in_buf);
    memmove(in_buf, lf + 1, in_len - used);
    in_len -= used;
    if (!ok)
        read_more(); /* nothing outstanding: go on with the next line */
}

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)h;
    (void)sz;
    static char tmp[1024];
    *b = uv_buf_init(tmp, sizeof tmp);
}

static void stdin_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    (void)s;
    if (nread < 0) {
        in_eof = true;
        uv_read_stop((uv_stream_t *)&in_pipe);
    } else if (nread > 0) {
        if (in_len + (size_t)nread > sizeof in_buf) {
            fprintf(stderr, "dvauth_driver: input line too long\n");
            exit(3);
        }
        memcpy(in_buf + in_len, b->base, (size_t)nread);
        in_len += (size_t)nread;
    }
    if (outstanding == 0)
        read_more();
}

static void usage(void)
{
    fprintf(stderr, "usage: dvauth_driver [-t MS] [-u] [-n] [-r RIP] [-x N] ADDR USER PASS...\n"
                    "       dvauth_driver [-t MS] [-u] [-n] [-r RIP] -i ADDR\n");
    exit(3);
}

int main(int argc, char **argv)
{
    int opt, cancel_n = 0;
    while ((opt = getopt(argc, argv, "t:unr:x:i")) != -1) {
        switch (opt) {
        case 't':
            opt_timeout = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'u':
            opt_secured = false;
            break;
        case 'n':
            opt_nopen = true;
            break;
        case 'r':
            opt_rip = optarg;
            break;
        case 'x':
            cancel_n = atoi(optarg);
            break;
        case 'i':
            interactive = true;
            break;
        default:
            usage();
        }
    }
    argc -= optind;
    argv += optind;
    if (argc < 1 || (!interactive && (argc < 3 || (argc - 1) % 2 != 0)))
        usage();
    /* as the daemon does: a write to a socket Dovecot closed is an error
     * (EPIPE, then TEMPFAIL), not the end of the process */
    signal(SIGPIPE, SIG_IGN);
    log_init("dvauth_driver", 0, getenv("DVAUTH_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_WARN);
    loop = uv_default_loop();
    defer_init(loop);
    cl = dvauth_client_new(loop, argv[0], opt_timeout);
    if (!cl) {
        fprintf(stderr, "dvauth_driver: unusable address %s\n", argv[0]);
        return 3;
    }
    int rc = 0;
    if (interactive) {
        uv_pipe_init(loop, &in_pipe, 0);
        if (uv_pipe_open(&in_pipe, 0) < 0 ||
            uv_read_start((uv_stream_t *)&in_pipe, alloc_cb, stdin_cb) < 0) {
            fprintf(stderr, "dvauth_driver: stdin must be a pipe with -i\n");
            return 3;
        }
    } else {
        for (int i = 1; i + 1 < argc; i += 2)
            if (!submit(argv[i], argv[i + 1], next_n + 1 == cancel_n))
                rc = 3;
        fflush(stdout);
        if (outstanding == 0) {
            dvauth_client_free(cl);
            cl = NULL;
        }
    }
    uv_run(loop, UV_RUN_DEFAULT);
    defer_shutdown();
    uv_run(loop, UV_RUN_DEFAULT);
    if (outstanding != 0)
        rc = 3;
    uv_loop_close(loop);
    return rc;
}
