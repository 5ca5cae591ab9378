/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for upstream: a real `struct up` against a fake SMTP server
 * that runs on the same libuv loop (a uv_tcp listener on 127.0.0.1, port
 * 0) and answers from a script. Every scenario is a dialogue written as a
 * table of {command the server expects, what it answers}; the tests check
 * what the caller of up_* sees (callbacks, order, errors, never a relayed
 * out-of-protocol reply, never a callback inside the call) and what went
 * over the wire. Every loop run is bounded by a watchdog.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "buf.h"
#include "cfg.h"
#include "defer.h"
#include "log.h"
#include "up.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WATCHDOG_MS 5000
#define HELO_NAME "proxy.test"

/* ---- the fake server ------------------------------------------------------ */

#define FS_CLOSE "\001close"   /* close the connection instead of answering */
#define FS_SILENT "\001silent" /* answer nothing */

struct step {
    const char *expect; /* the command line starts so; NULL: the greeting; ".": end of data */
    const char *reply;  /* raw bytes with their CRLFs, FS_CLOSE or FS_SILENT; NULL ends */
    int need;           /* answer only once this many lines have arrived (pipelining) */
    bool alone;         /* this line must arrive with nothing behind it */
};

struct fake {
    uv_tcp_t listener;
    int port;
    uv_tcp_t *client; /* the accepted connection, NULL when none */
    int accepted;
    const struct step *script;
    size_t pos; /* next step */
    buf_t in;   /* received, not handled yet */
    buf_t wire; /* every byte received */
    buf_t body; /* DATA content as on the wire (dot-stuffed), without the final dot */
    bool in_data;
    size_t bdat_left;             /* BDAT bytes still to come (into `body`) */
    const struct step *bdat_step; /* answered once they are in */
    int errors;                   /* lines the script did not expect */
    char error[256];
    int open_handles;
};

static uv_loop_t loop;
static struct fake srv;
static struct cfg *cfg;
static uv_timer_t watchdog, pause_timer;
static bool timed_out, paused;
static uv_tcp_t refused_sock; /* bound, never listening: connections are refused */
static int refused_port;

static void fs_handle_closed(uv_handle_t *h)
{
    (void)h;
    srv.open_handles--;
}

static void fs_client_closed(uv_handle_t *h)
{
    free(h);
    srv.open_handles--;
}

static void fs_close_client(void)
{
    if (srv.client) {
        uv_close((uv_handle_t *)srv.client, fs_client_closed);
        srv.client = NULL;
    }
}

static void fs_write_done(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void fs_send(const char *text)
{
    size_t n = strlen(text);
    uv_write_t *req = malloc(sizeof *req + n);
    assert_non_null(req);
    memcpy(req + 1, text, n);
    uv_buf_t b = uv_buf_init((char *)(req + 1), (unsigned)n);
    assert_int_equal(uv_write(req, (uv_stream_t *)srv.client, &b, 1, fs_write_done), 0);
}

static void fs_error(const char *what, const char *line)
{
    srv.errors++;
    snprintf(srv.error, sizeof srv.error, "want %.60s, got \"%.120s\" (step %zu)", what, line,
             srv.pos);
}

static void fs_answer(const struct step *st)
{
    srv.pos++;
    if (strcmp(st->reply, FS_CLOSE) == 0)
        fs_close_client();
    else if (strcmp(st->reply, FS_SILENT) != 0)
        fs_send(st->reply);
}

static size_t fs_lines_buffered(void)
{
    size_t n = 0;
    for (size_t i = 0; i < srv.in.len; i++)
        n += srv.in.ptr[i] == '\n';
    return n;
}

/* Handle the next complete line; false when it must wait. */
static bool fs_handle_line(void)
{
    if (srv.bdat_left) {
        /* RFC 3030: exactly this many bytes, whatever they look like. */
        size_t k = srv.bdat_left < srv.in.len ? srv.bdat_left : srv.in.len;
        buf_append(&srv.body, srv.in.ptr, k);
        buf_consume(&srv.in, k);
        srv.bdat_left -= k;
        if (srv.bdat_left)
            return false;
        fs_answer(srv.bdat_step);
        return true;
    }
    char *nl = memchr(srv.in.ptr, '\n', srv.in.len);
    if (!nl)
        return false;
    const struct step *st = srv.script && srv.script[srv.pos].reply ? &srv.script[srv.pos] : NULL;
    if (!srv.in_data && st && st->need && fs_lines_buffered() < (size_t)st->need)
        return false;
    if (!srv.in_data && st && st->alone && fs_lines_buffered() > 1)
        fs_error("arrived pipelined", srv.in.ptr);
    size_t n = (size_t)(nl - srv.in.ptr) + 1;
    char line[4096];
    size_t ll = n - 1 - (n >= 2 && srv.in.ptr[n - 2] == '\r');
    snprintf(line, sizeof line, "%.*s", (int)ll, srv.in.ptr);
    if (srv.in_data && strcmp(line, ".") != 0) {
        buf_append(&srv.body, srv.in.ptr, n);
        buf_consume(&srv.in, n);
        return true;
    }
    buf_consume(&srv.in, n);
    bool was_data = srv.in_data;
    srv.in_data = false;
    if (!st) {
        if (strcmp(line, "QUIT") == 0) {
            fs_send("221 2.0.0 bye\r\n");
            return true;
        }
        fs_error("past the script", line);
        fs_send("500 5.5.1 unexpected\r\n");
        return true;
    }
    const char *want = st->expect ? st->expect : "(greeting)";
    if (was_data ? strcmp(want, ".") != 0 : strncmp(line, want, strlen(want)) != 0)
        fs_error(want, line);
    if (strncmp(line, "DATA", 4) == 0 && strncmp(st->reply, "354", 3) == 0)
        srv.in_data = true;
    if (strncmp(line, "BDAT ", 5) == 0 && strtoul(line + 5, NULL, 10) > 0) {
        srv.bdat_left = strtoul(line + 5, NULL, 10);
        srv.bdat_step = st;
        return true; /* answered after the bytes */
    }
    fs_answer(st);
    return true;
}

static void fs_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    static char chunk[64 * 1024];
    *b = uv_buf_init(chunk, sizeof chunk);
}

static void fs_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)s;
    if (n < 0) {
        fs_close_client();
        return;
    }
    buf_append(&srv.in, b->base, (size_t)n);
    buf_append(&srv.wire, b->base, (size_t)n);
    while (srv.client && fs_handle_line())
        ;
}

static void fs_accept(uv_stream_t *l, int status)
{
    assert_int_equal(status, 0);
    uv_tcp_t *c = malloc(sizeof *c);
    assert_non_null(c);
    uv_tcp_init(&loop, c);
    srv.open_handles++;
    if (srv.client) { /* one client at a time */
        uv_close((uv_handle_t *)c, fs_client_closed);
        return;
    }
    assert_int_equal(uv_accept(l, (uv_stream_t *)c), 0);
    srv.client = c;
    srv.accepted++;
    srv.pos = 0;
    if (srv.script && srv.script[0].reply && !srv.script[0].expect)
        fs_answer(&srv.script[0]);
    uv_read_start((uv_stream_t *)c, fs_alloc, fs_read);
}

static int bound_port(uv_tcp_t *t)
{
    struct sockaddr_in a;
    int len = sizeof a;
    assert_int_equal(uv_tcp_getsockname(t, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

/* ---- the loop ---------------------------------------------------------------- */

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    timed_out = true;
}

static void on_pause(uv_timer_t *t)
{
    (void)t;
    paused = true;
}

#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        timed_out = false;                                                                         \
        uv_timer_start(&watchdog, on_watchdog, WATCHDOG_MS, 0);                                    \
        while (!(cond) && !timed_out)                                                              \
            uv_run(&loop, UV_RUN_ONCE);                                                            \
        uv_timer_stop(&watchdog);                                                                  \
        if (timed_out)                                                                             \
            fail_msg("timed out waiting for: %s (server: %d errors, %s)", #cond, srv.errors,       \
                     srv.error);                                                                   \
    } while (0)

/* Let the loop run for `ms` (to see that nothing else happens). */
static void run_for(unsigned ms)
{
    paused = false;
    uv_timer_start(&pause_timer, on_pause, ms, 0);
    while (!paused)
        uv_run(&loop, UV_RUN_ONCE);
}

/* ---- what the caller sees ---------------------------------------------------- */

struct rec {
    int calls;
    enum up_err err;
    int code;          /* reply code when err == UP_OK and a reply came */
    char text[256];    /* its first line */
    bool inside_call;  /* called while the test was inside an up_* call */
    bool reply_on_err; /* a reply came with an error (relayed garbage) */
    int order;
    struct up *free_up; /* call up_free() on it from the callback */
};

static bool in_call;
static int seq;

static void rec_cb(void *ud, const struct up_result *r)
{
    struct rec *x = ud;
    x->calls++;
    x->inside_call |= in_call;
    x->err = r->err;
    x->code = r->err == UP_OK && r->reply ? r->reply->code : 0;
    x->reply_on_err |= r->err != UP_OK && r->reply != NULL;
    snprintf(x->text, sizeof x->text, "%s",
             r->err == UP_OK && r->reply && r->reply->nlines ? r->reply->lines[0] : "");
    x->order = ++seq;
    if (x->free_up)
        up_free(x->free_up);
}

/* Call into the upstream with the "inside a call" flag set. */
#define CALL(expr)                                                                                 \
    do {                                                                                           \
        in_call = true;                                                                            \
        expr;                                                                                      \
        in_call = false;                                                                           \
    } while (0)

static void assert_from_loop(const struct rec *x, int calls)
{
    assert_int_equal(x->calls, calls);
    assert_false(x->inside_call);
    assert_false(x->reply_on_err);
}

/* ---- fixture ------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    log_set_level(getenv("UP_TEST_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_FATAL);
    assert_int_equal(uv_loop_init(&loop), 0);
    defer_init(&loop);
    uv_timer_init(&loop, &watchdog);
    uv_timer_init(&loop, &pause_timer);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(&loop, &refused_sock);
    assert_int_equal(uv_tcp_bind(&refused_sock, (const struct sockaddr *)&a, 0), 0);
    refused_port = bound_port(&refused_sock);
    return 0;
}

static void close_leftover(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int group_teardown(void **state)
{
    (void)state;
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_close((uv_handle_t *)&pause_timer, NULL);
    uv_close((uv_handle_t *)&refused_sock, NULL);
    defer_shutdown();
    /* Conns finish closing by themselves; after a failed test something
     * may be left open: close it so that the binary still ends. */
    uint64_t deadline = uv_now(&loop) + WATCHDOG_MS;
    while (uv_run(&loop, UV_RUN_NOWAIT) && uv_now(&loop) < deadline)
        uv_update_time(&loop);
    uv_walk(&loop, close_leftover, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    return 0;
}

static void set_upstream(size_t i, int port)
{
    char text[64], err[128];
    snprintf(text, sizeof text, "127.0.0.1:%d", port);
    assert_int_equal(cfg_parse_addr(text, &cfg->upstream[i], err, sizeof err), 0);
    if (cfg->nupstream < i + 1)
        cfg->nupstream = i + 1;
}

static int setup(void **state)
{
    (void)state;
    memset(&srv, 0, sizeof srv);
    uv_tcp_init(&loop, &srv.listener);
    srv.open_handles = 1;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&srv.listener, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv.listener, 8, fs_accept), 0);
    srv.port = bound_port(&srv.listener);

    buf_t errs = BUF_INIT;
    cfg = cfg_load(NULL, NULL, &errs);
    if (!cfg)
        fail_msg("cfg_load: %s", errs.ptr ? errs.ptr : "?");
    buf_free(&errs);
    cfg->nupstream = 0;
    set_upstream(0, srv.port);
    free(cfg->upstream_helo); /* the cfg owns it */
    cfg->upstream_helo = strdup(HELO_NAME);
    cfg->upstream_tls = CFG_UP_TLS_NO;
    cfg->xclient = cfg->xforward = true;
    cfg->upstream_connect_timeout_ms = 3000;
    cfg->upstream_command_timeout_ms = 3000;
    cfg->upstream_data_timeout_ms = 3000;
    in_call = false;
    seq = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fs_close_client();
    uv_close((uv_handle_t *)&srv.listener, fs_handle_closed);
    RUN_UNTIL(srv.open_handles == 0);
    buf_free(&srv.in);
    buf_free(&srv.wire);
    buf_free(&srv.body);
    cfg_unref(cfg);
    cfg = NULL;
    return 0;
}

/* Does the server's input hold this exact command line? */
static bool wire_has_line(const char *line)
{
    size_t n = strlen(line);
    for (const char *p = srv.wire.ptr; p && (p = strstr(p, line)); p++)
        if ((p == srv.wire.ptr || p[-1] == '\n') && strncmp(p + n, "\r\n", 2) == 0)
            return true;
    return false;
}

/* One dialogue step per line. */
/* clang-format off */
#define GREET {NULL, "220 fake.test ESMTP\r\n", 0, false}
#define EHLO_PIPE {"EHLO " HELO_NAME, "250-fake.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n", 0, false}
#define EHLO_PLAIN {"EHLO " HELO_NAME, "250 fake.test\r\n", 0, false}
#define END {NULL, NULL, 0, false}
/* clang-format on */

/* New up on the script; open it and wait for the result. */
static struct up *open_up(const struct step *script, struct rec *open)
{
    srv.script = script;
    struct up *u = up_new(&loop, cfg, "t1");
    assert_non_null(u);
    CALL(up_open(u, rec_cb, open));
    assert_int_equal(open->calls, 0);
    RUN_UNTIL(open->calls > 0);
    assert_from_loop(open, 1);
    return u;
}

/* ---- greeting, EHLO, capabilities ------------------------------------------- */

static const struct caps_case {
    const char *name;
    const char *greeting;
    const char *ehlo_reply; /* NULL: EHLO must never be sent */
    enum cfg_upstream_tls tls;
    enum up_err want_err;
    unsigned want_caps;
    unsigned long long want_size;
} caps_cases[] = {
    {"every extension we use", "220 fake ESMTP\r\n",
     "250-fake.test\r\n250-PIPELINING\r\n250-SIZE 10485760\r\n250-8BITMIME\r\n250-DSN\r\n"
     "250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-XCLIENT NAME ADDR PORT PROTO HELO\r\n"
     "250 XFORWARD NAME ADDR PROTO HELO\r\n",
     CFG_UP_TLS_NO, UP_OK,
     UP_CAP_PIPELINING | UP_CAP_SIZE | UP_CAP_8BITMIME | UP_CAP_DSN | UP_CAP_SMTPUTF8 |
         UP_CAP_ENHANCED | UP_CAP_XCLIENT | UP_CAP_XFORWARD,
     10485760},
    {"no extensions", "220 fake\r\n", "250 fake.test\r\n", CFG_UP_TLS_NO, UP_OK, 0, 0},
    {"lower-case keywords, SIZE without a limit", "220 fake\r\n",
     "250-fake.test\r\n250-pipelining\r\n250-size\r\n250 chunking\r\n", CFG_UP_TLS_NO, UP_OK,
     UP_CAP_PIPELINING | UP_CAP_SIZE | UP_CAP_CHUNKING, 0},
    {"the greeting line is not a capability", "220 PIPELINING\r\n", "250 PIPELINING\r\n",
     CFG_UP_TLS_NO, UP_OK, 0, 0},
    {"multi-line greeting", "220-fake\r\n220 ESMTP ready\r\n", "250 fake.test\r\n", CFG_UP_TLS_NO,
     UP_OK, 0, 0},
    {"STARTTLS offered, TLS off", "220 fake\r\n", "250-fake.test\r\n250 STARTTLS\r\n",
     CFG_UP_TLS_NO, UP_OK, UP_CAP_STARTTLS, 0},
    {"refused greeting 554", "554 5.7.1 go away\r\n", NULL, CFG_UP_TLS_NO, UP_ERR_CONNECT, 0, 0},
    {"greeting 421", "421 4.3.2 busy\r\n", NULL, CFG_UP_TLS_NO, UP_ERR_CONNECT, 0, 0},
    {"greeting with a 250", "250 hi\r\n", NULL, CFG_UP_TLS_NO, UP_ERR_PROTOCOL, 0, 0},
    {"garbage greeting", "hello there\r\n", NULL, CFG_UP_TLS_NO, UP_ERR_PROTOCOL, 0, 0},
    {"EHLO refused", "220 fake\r\n", "502 5.5.1 HELO only\r\n", CFG_UP_TLS_NO, UP_ERR_CONNECT, 0,
     0},
    {"TLS required, STARTTLS not offered", "220 fake\r\n", "250 fake.test\r\n", CFG_UP_TLS_ENCRYPT,
     UP_ERR_TLS, 0, 0},
};

static void test_handshake_and_caps(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof caps_cases / sizeof caps_cases[0]; i++) {
        const struct caps_case *tc = &caps_cases[i];
        print_message("case: %s\n", tc->name);
        if (i > 0) {
            teardown(state);
            setup(state);
        }
        cfg->upstream_tls = tc->tls;
        struct step script[] = {
            {NULL, tc->greeting, 0, false},
            {"EHLO " HELO_NAME, tc->ehlo_reply ? tc->ehlo_reply : FS_SILENT, 0, false},
            END,
        };
        if (!tc->ehlo_reply)
            script[1] = (struct step)END;
        struct rec open = {0};
        struct up *u = open_up(script, &open);
        assert_int_equal(open.err, tc->want_err);
        if (tc->want_err == UP_OK) {
            assert_int_equal(open.code, 250); /* the EHLO reply */
            assert_true(up_ready(u));
            assert_int_equal(up_caps(u), tc->want_caps);
            assert_int_equal(up_size_limit(u), tc->want_size);
            assert_true(wire_has_line("EHLO " HELO_NAME));
            assert_null(up_tls_version(u));
        } else {
            assert_true(up_failed(u));
            assert_false(up_ready(u));
        }
        if (!tc->ehlo_reply)
            assert_false(wire_has_line("EHLO " HELO_NAME));
        char want_server[64];
        snprintf(want_server, sizeof want_server, "127.0.0.1:%d", srv.port);
        assert_string_equal(up_server(u), want_server);
        up_free(u);
        RUN_UNTIL(srv.client == NULL || tc->want_err == UP_OK);
        assert_int_equal(srv.errors, 0);
    }
}

/* The first server refuses connections: the next one is used. With none
 * left, the open fails with UP_ERR_CONNECT, from the loop. */
static void test_next_server_and_none_left(void **state)
{
    (void)state;
    static const struct step script[] = {GREET, EHLO_PLAIN, END};
    cfg->nupstream = 0;
    set_upstream(0, refused_port);
    set_upstream(1, srv.port);
    struct rec open = {0};
    struct up *u = open_up(script, &open);
    assert_int_equal(open.err, UP_OK);
    assert_int_equal(srv.accepted, 1);
    up_free(u);

    cfg->nupstream = 0;
    set_upstream(0, refused_port);
    struct rec open2 = {0};
    u = open_up(script, &open2);
    assert_int_equal(open2.err, UP_ERR_CONNECT);
    assert_true(up_failed(u));
    up_free(u);
}

/* up_open() on an open upstream answers from the loop too. */
static void test_open_again_when_ready(void **state)
{
    (void)state;
    static const struct step script[] = {GREET, EHLO_PLAIN, END};
    struct rec open = {0}, again = {0};
    struct up *u = open_up(script, &open);
    CALL(up_open(u, rec_cb, &again));
    assert_int_equal(again.calls, 0);
    RUN_UNTIL(again.calls > 0);
    assert_from_loop(&again, 1);
    assert_int_equal(again.err, UP_OK);
    up_free(u);
}

/* ---- commands ---------------------------------------------------------------- */

/* With PIPELINING the three commands reach the server together (it answers
 * only once all three are there); without, one at a time. Either way the
 * replies come back in order, each to its own command. */
static void test_replies_in_order(void **state)
{
    (void)state;
    static const struct step piped[] = {
        GREET,
        EHLO_PIPE,
        {"MAIL FROM:<a@example.org>", "250 2.1.0 sender ok\r\n", 3, false},
        {"RCPT TO:<b@example.org>", "250 2.1.5 b ok\r\n", 0, false},
        {"RCPT TO:<c@example.org>", "550 5.1.1 no such user\r\n", 0, false},
        END,
    };
    static const struct step lockstep[] = {
        GREET,
        EHLO_PLAIN,
        {"MAIL FROM:<a@example.org>", "250 2.1.0 sender ok\r\n", 0, true},
        {"RCPT TO:<b@example.org>", "250 2.1.5 b ok\r\n", 0, true},
        {"RCPT TO:<c@example.org>", "550 5.1.1 no such user\r\n", 0, true},
        END,
    };
    const struct step *scripts[] = {piped, lockstep};
    for (size_t i = 0; i < 2; i++) {
        if (i > 0) {
            teardown(state);
            setup(state);
        }
        struct rec open = {0}, r[3] = {{0}};
        struct up *u = open_up(scripts[i], &open);
        assert_int_equal(open.err, UP_OK);
        assert_int_equal(!!(up_caps(u) & UP_CAP_PIPELINING), i == 0);
        CALL(up_command(u, "MAIL FROM:<a@example.org>", rec_cb, &r[0]));
        CALL(up_command(u, "RCPT TO:<b@example.org>", rec_cb, &r[1]));
        CALL(up_command(u, "RCPT TO:<c@example.org>", rec_cb, &r[2]));
        RUN_UNTIL(r[2].calls > 0);
        const int want_code[] = {250, 250, 550};
        const char *want_text[] = {"sender ok", "b ok", "no such user"};
        for (int k = 0; k < 3; k++) {
            assert_from_loop(&r[k], 1);
            assert_int_equal(r[k].err, UP_OK);
            assert_int_equal(r[k].code, want_code[k]);
            assert_string_equal(r[k].text, want_text[k]);
            assert_int_equal(r[k].order, 2 + k); /* after the open */
        }
        assert_int_equal(srv.errors, 0);
        up_free(u);
    }
}

/* Replies out of protocol fail the upstream with UP_ERR_PROTOCOL: the
 * command hears an error, never the reply, and so does the one behind it. */
static const struct proto_case {
    const char *name;
    const char *reply_to_mail;
} proto_cases[] = {
    {"354 to MAIL", "354 go ahead\r\n"},
    {"220 to MAIL", "220 hello again\r\n"},
    {"221 to MAIL", "221 bye\r\n"},
    {"334 to MAIL", "334 VXNlcm5hbWU6\r\n"},
    {"no code", "sender ok\r\n"},
    {"bad code", "25O sender ok\r\n"},
    {"mixed codes in one reply", "250-sender\r\n550 ok\r\n"},
    {"code out of range", "650 what\r\n"},
};

static void test_out_of_protocol_never_relayed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof proto_cases / sizeof proto_cases[0]; i++) {
        const struct proto_case *tc = &proto_cases[i];
        print_message("case: %s\n", tc->name);
        if (i > 0) {
            teardown(state);
            setup(state);
        }
        struct step script[] = {
            GREET,
            EHLO_PIPE,
            {"MAIL FROM:<a@example.org>", tc->reply_to_mail, 2, false},
            {"RCPT TO:<b@example.org>", "250 2.1.5 ok\r\n", 0, false},
            END,
        };
        struct rec open = {0}, mail = {0}, rcpt = {0};
        struct up *u = open_up(script, &open);
        CALL(up_command(u, "MAIL FROM:<a@example.org>", rec_cb, &mail));
        CALL(up_command(u, "RCPT TO:<b@example.org>", rec_cb, &rcpt));
        RUN_UNTIL(rcpt.calls > 0);
        assert_from_loop(&mail, 1);
        assert_from_loop(&rcpt, 1);
        assert_int_equal(mail.err, UP_ERR_PROTOCOL);
        assert_int_equal(mail.code, 0);
        assert_int_not_equal(rcpt.err, UP_OK);
        assert_true(mail.order < rcpt.order);
        assert_true(up_failed(u));
        up_free(u);
    }
}

/* A reply with nothing in flight fails the upstream too. */
static void test_unsolicited_reply(void **state)
{
    (void)state;
    static const struct step script[] = {
        GREET,
        EHLO_PLAIN,
        {"MAIL FROM:<a@example.org>", "250 2.1.0 ok\r\n250 2.1.0 and another\r\n", 0, false},
        END,
    };
    struct rec open = {0}, mail = {0}, later = {0};
    struct up *u = open_up(script, &open);
    CALL(up_command(u, "MAIL FROM:<a@example.org>", rec_cb, &mail));
    RUN_UNTIL(up_failed(u));
    assert_from_loop(&mail, 1);
    assert_int_equal(mail.code, 250);
    CALL(up_command(u, "RSET", rec_cb, &later));
    assert_int_equal(later.calls, 0);
    RUN_UNTIL(later.calls > 0);
    assert_from_loop(&later, 1);
    assert_int_equal(later.err, UP_ERR_LOST);
    up_free(u);
}

/* A 421 is relayed to its command; what was pipelined behind it is lost at
 * once, without waiting for the server to close (it does not here). */
static void test_421_mid_session(void **state)
{
    (void)state;
    static const struct step script[] = {
        GREET,
        EHLO_PIPE,
        {"MAIL FROM:<a@example.org>", "250 2.1.0 ok\r\n", 3, false},
        {"RCPT TO:<b@example.org>", "421 4.3.2 shutting down\r\n", 0, false},
        {"RCPT TO:<c@example.org>", FS_SILENT, 0, false},
        END,
    };
    cfg->upstream_command_timeout_ms = 60000; /* a wait would trip the watchdog */
    struct rec open = {0}, r[4] = {{0}};
    struct up *u = open_up(script, &open);
    CALL(up_command(u, "MAIL FROM:<a@example.org>", rec_cb, &r[0]));
    CALL(up_command(u, "RCPT TO:<b@example.org>", rec_cb, &r[1]));
    CALL(up_command(u, "RCPT TO:<c@example.org>", rec_cb, &r[2]));
    RUN_UNTIL(r[2].calls > 0);
    assert_int_equal(r[0].code, 250);
    assert_int_equal(r[1].err, UP_OK);
    assert_int_equal(r[1].code, 421);
    assert_string_equal(r[1].text, "shutting down");
    assert_int_equal(r[2].err, UP_ERR_LOST);
    for (int k = 0; k < 3; k++)
        assert_from_loop(&r[k], 1);
    assert_true(up_failed(u));
    CALL(up_command(u, "RSET", rec_cb, &r[3]));
    RUN_UNTIL(r[3].calls > 0);
    assert_from_loop(&r[3], 1);
    assert_int_equal(r[3].err, UP_ERR_LOST);
    up_free(u);
}

/* The server hangs up: every queued callback (in flight and waiting) is
 * called exactly once with UP_ERR_LOST, in order, from the loop. */
static void test_connection_lost(void **state)
{
    (void)state;
    static const struct step script[] = {
        GREET,
        EHLO_PIPE,
        {"MAIL FROM:<a@example.org>", FS_CLOSE, 3, false},
        END,
    };
    static const struct iovec msg[] = {{"Subject: x\r\n\r\nbody\r\n", 20}};
    struct rec open = {0}, r[4] = {{0}};
    struct up *u = open_up(script, &open);
    CALL(up_command(u, "MAIL FROM:<a@example.org>", rec_cb, &r[0]));
    CALL(up_command(u, "RCPT TO:<b@example.org>", rec_cb, &r[1]));
    CALL(up_command(u, "RCPT TO:<c@example.org>", rec_cb, &r[2]));
    CALL(up_data(u, msg, 1, rec_cb, &r[3])); /* waits: DATA is never pipelined */
    RUN_UNTIL(r[3].calls > 0);
    run_for(50); /* and nothing more comes */
    for (int k = 0; k < 4; k++) {
        assert_from_loop(&r[k], 1);
        assert_int_equal(r[k].err, UP_ERR_LOST);
        assert_int_equal(r[k].order, 2 + k);
    }
    assert_false(wire_has_line("DATA"));
    up_free(u);
}

/* On an upstream that failed, every call answers from the loop: the call
 * returns first, then the callback runs. */
static void test_calls_on_failed_upstream(void **state)
{
    (void)state;
    static const struct step script[] = {{NULL, "554 5.3.2 not now\r\n", 0, false}, END};
    static const struct iovec msg[] = {{"x\r\n", 3}};
    struct up_client_info ci = {.addr = "192.0.2.1", .port = 1234, .esmtp = true};
    struct rec open = {0}, r[4] = {{0}};
    struct up *u = open_up(script, &open);
    assert_int_equal(open.err, UP_ERR_CONNECT);
    CALL(up_command(u, "RSET", rec_cb, &r[0]));
    CALL(up_data(u, msg, 1, rec_cb, &r[1]));
    CALL(up_identify(u, &ci, rec_cb, &r[2]));
    CALL(up_open(u, rec_cb, &r[3]));
    for (int k = 0; k < 4; k++)
        assert_int_equal(r[k].calls, 0); /* the calls returned first */
    RUN_UNTIL(r[3].calls > 0);
    for (int k = 0; k < 4; k++)
        assert_from_loop(&r[k], 1);
    assert_int_equal(r[0].err, UP_ERR_LOST);
    assert_int_equal(r[1].err, UP_ERR_LOST);
    assert_int_equal(r[2].err, UP_ERR_LOST);
    assert_int_equal(r[3].err, UP_ERR_CONNECT); /* why it failed */
    up_free(u);
}

/* After up_free() nothing is called back: not the commands in flight, not
 * results already queued for the loop. */
static void test_free_with_commands_queued(void **state)
{
    (void)state;
    static const struct step script[] = {
        GREET,
        EHLO_PIPE,
        {"MAIL FROM:<a@example.org>", FS_SILENT, 2, false},
        {"RCPT TO:<b@example.org>", FS_SILENT, 0, false},
        END,
    };
    struct rec open = {0}, r[3] = {{0}};
    struct up *u = open_up(script, &open);
    CALL(up_command(u, "MAIL FROM:<a@example.org>", rec_cb, &r[0]));
    CALL(up_command(u, "RCPT TO:<b@example.org>", rec_cb, &r[1]));
    RUN_UNTIL(srv.pos == 4);
    up_free(u);
    run_for(100);
    assert_int_equal(r[0].calls, 0);
    assert_int_equal(r[1].calls, 0);
    RUN_UNTIL(srv.client == NULL); /* the up hung up */

    /* A result queued for the loop and not delivered yet. */
    static const struct step refuse[] = {{NULL, "554 no\r\n", 0, false}, END};
    struct rec open2 = {0};
    u = open_up(refuse, &open2);
    CALL(up_command(u, "RSET", rec_cb, &r[2]));
    up_free(u);
    run_for(50);
    assert_int_equal(r[2].calls, 0);
}

/* up_free() from inside a callback, with the next reply already read: the
 * next callback never runs (and nothing touches freed memory: ASan). */
static void test_free_inside_callback(void **state)
{
    (void)state;
    static const struct step script[] = {
        GREET,
        EHLO_PIPE,
        {"MAIL FROM:<a@example.org>", "250 2.1.0 ok\r\n250 2.1.5 ok\r\n", 2, false},
        {"RCPT TO:<b@example.org>", FS_SILENT, 0, false},
        END,
    };
    struct rec open = {0}, mail = {0}, rcpt = {0};
    struct up *u = open_up(script, &open);
    mail.free_up = u;
    CALL(up_command(u, "MAIL FROM:<a@example.org>", rec_cb, &mail));
    CALL(up_command(u, "RCPT TO:<b@example.org>", rec_cb, &rcpt));
    RUN_UNTIL(mail.calls > 0);
    run_for(50);
    assert_from_loop(&mail, 1);
    assert_int_equal(rcpt.calls, 0);
}

/* ---- identify --------------------------------------------------------------- */

static const struct xclient_case {
    const char *name;
    struct up_client_info ci;
    const char *want_xclient;
    const char *want_ehlo; /* the EHLO after XCLIENT's new greeting */
} xclient_cases[] = {
    {"plain HELO is repeated",
     {.addr = "192.0.2.7",
      .port = 40000,
      .name = "mail.example.org",
      .helo = "mail.example.org",
      .esmtp = true},
     "XCLIENT ADDR=192.0.2.7 PORT=40000 NAME=mail.example.org PROTO=ESMTP HELO=mail.example.org",
     "EHLO mail.example.org"},
    {"HELO needing xtext, IPv6, no name",
     {.addr = "2001:db8::25", .port = 2525, .name = "", .helo = "my host+x=y", .esmtp = false},
     "XCLIENT ADDR=IPV6:2001:db8::25 PORT=2525 NAME=[UNAVAILABLE] PROTO=SMTP "
     "HELO=my+20host+2Bx+3Dy",
     "EHLO [IPv6:2001:db8::25]"}, /* cannot go on an EHLO line: the address literal */
    {"no HELO yet",
     {.addr = "192.0.2.8", .port = 1, .name = "a.example", .helo = "", .esmtp = true},
     "XCLIENT ADDR=192.0.2.8 PORT=1 NAME=a.example PROTO=ESMTP",
     "EHLO [192.0.2.8]"},
    {"a name Postfix would refuse is passed on as it is",
     {.addr = "192.0.2.9", .port = 2, .name = "", .helo = "bad!host", .esmtp = true},
     "XCLIENT ADDR=192.0.2.9 PORT=2 NAME=[UNAVAILABLE] PROTO=ESMTP HELO=bad!host",
     "EHLO bad!host"},
};

/* clang-format off */
#define EHLO_XCLIENT {"EHLO " HELO_NAME, \
    "250-fake.test\r\n250-PIPELINING\r\n250-XCLIENT NAME ADDR PORT PROTO HELO\r\n" \
    "250 XFORWARD NAME ADDR PROTO HELO\r\n", 0, false}
/* clang-format on */

/* XCLIENT, its new greeting, then EHLO again with the client's own HELO
 * (its address literal when the HELO cannot go on an EHLO line), so the
 * upstream's HELO checks judge the client; a command queued meanwhile
 * waits for all that. */
static void test_xclient(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof xclient_cases / sizeof xclient_cases[0]; i++) {
        const struct xclient_case *tc = &xclient_cases[i];
        print_message("case: %s\n", tc->name);
        if (i > 0) {
            teardown(state);
            setup(state);
        }
        struct step script[] = {
            GREET,
            EHLO_XCLIENT,
            {"XCLIENT ", "220 fake.test ESMTP\r\n", 0, true},
            {tc->want_ehlo, "250-fake.test\r\n250-PIPELINING\r\n250 XCLIENT NAME\r\n", 0, true},
            {"MAIL FROM:<a@example.org>", "250 2.1.0 ok\r\n", 0, false},
            END,
        };
        struct rec open = {0}, ident = {0}, mail = {0};
        struct up *u = open_up(script, &open);
        CALL(up_identify(u, &tc->ci, rec_cb, &ident));
        CALL(up_command(u, "MAIL FROM:<a@example.org>", rec_cb, &mail));
        RUN_UNTIL(mail.calls > 0);
        assert_from_loop(&ident, 1);
        assert_int_equal(ident.err, UP_OK);
        assert_int_equal(ident.code, 250);
        assert_true(ident.order < mail.order);
        assert_int_equal(mail.code, 250);
        assert_true(wire_has_line(tc->want_xclient));
        assert_true(wire_has_line(tc->want_ehlo));
        assert_int_equal(srv.errors, 0);
        assert_int_equal(up_caps(u), UP_CAP_PIPELINING | UP_CAP_XCLIENT); /* from the new EHLO */

        /* With the same HELO a second identify is answered at once (XCLIENT
         * is sent again only when the client's HELO changes). */
        struct rec again = {0};
        CALL(up_identify(u, &tc->ci, rec_cb, &again));
        assert_int_equal(again.calls, 0);
        RUN_UNTIL(again.calls > 0);
        assert_from_loop(&again, 1);
        assert_int_equal(again.code, 250);
        /* The session asks first and skips a call that would send nothing;
         * a changed HELO needs XCLIENT again. */
        assert_false(up_identify_needed(u, &tc->ci));
        struct up_client_info changed = tc->ci;
        snprintf(changed.helo, sizeof changed.helo, "%s", "other.example");
        assert_true(up_identify_needed(u, &changed));
        up_free(u);
    }
}

/* The upstream's policy refuses the client: the caller gets the reply. */
static void test_xclient_refused(void **state)
{
    (void)state;
    static const struct step script[] = {
        GREET,
        EHLO_XCLIENT,
        {"XCLIENT ", "550 5.7.0 not authorised\r\n", 0, false},
        END,
    };
    /* A permanent refusal of XCLIENT is about sluice (not authorized
     * upstream), never the client: the upstream session fails, so the
     * client is tempfailed rather than bounced. */
    struct up_client_info ci = {.addr = "192.0.2.1", .port = 25, .helo = "x", .esmtp = true};
    struct rec open = {0}, ident = {0};
    struct up *u = open_up(script, &open);
    CALL(up_identify(u, &ci, rec_cb, &ident));
    RUN_UNTIL(ident.calls > 0);
    assert_from_loop(&ident, 1);
    assert_int_equal(ident.err, UP_ERR_PROTOCOL);
    assert_false(up_ready(u));
    up_free(u);
}

/* XFORWARD in one line, only the attributes the MTA lists (no PORT here),
 * held until the next command, which follows it unanswered (PIPELINING).
 * up_identify answers at once, from the loop; up_identify_with_next
 * queues it in the call, with no answer to wait for (no loop turn). */
static void xforward_with_mail(bool with_next)
{
    static const struct step script[] = {
        GREET,
        EHLO_XCLIENT,
        {"XFORWARD ADDR=", "250 2.0.0 Ok\r\n", 2, false},
        {"MAIL FROM:", "250 2.1.0 Ok\r\n", 0, false},
        END,
    };
    cfg->xclient = false;
    struct up_client_info ci = {
        .addr = "192.0.2.9", .port = 587, .name = "", .helo = "a b", .esmtp = true};
    struct rec open = {0}, ident = {0}, mail = {0};
    struct up *u = open_up(script, &open);
    if (with_next) {
        assert_true(up_identify_with_next(u, &ci));
        run_for(50);
        assert_int_equal(ident.calls, 0);
    } else {
        CALL(up_identify(u, &ci, rec_cb, &ident));
        RUN_UNTIL(ident.calls > 0);
        assert_from_loop(&ident, 1);
        assert_int_equal(ident.code, 250);
    }
    assert_null(strstr(srv.wire.ptr, "XFORWARD")); /* held */
    CALL(up_command(u, "MAIL FROM:<a@example.org>", rec_cb, &mail));
    RUN_UNTIL(mail.calls > 0);
    assert_int_equal(mail.code, 250);
    assert_true(wire_has_line("XFORWARD ADDR=192.0.2.9 PROTO=ESMTP NAME=[UNAVAILABLE] HELO=a+20b"));
    assert_int_equal(srv.errors, 0);
    up_free(u);
}

static void test_xforward(void **state)
{
    (void)state;
    xforward_with_mail(false);
}

static void test_xforward_with_next(void **state)
{
    (void)state;
    xforward_with_mail(true);
}

/* Where XFORWARD would need a round trip of its own (no PIPELINING),
 * up_identify_with_next queues nothing and says so: up_identify() it is. */
static void test_xforward_with_next_refuses(void **state)
{
    (void)state;
    static const struct step script[] = {
        GREET,
        {"EHLO " HELO_NAME, "250-fake.test\r\n250 XFORWARD NAME ADDR PORT PROTO HELO\r\n", 0,
         false},
        END,
    };
    struct up_client_info ci = {.addr = "192.0.2.9", .port = 587, .helo = "h", .esmtp = true};
    struct rec open = {0};
    cfg->xclient = false;
    struct up *u = open_up(script, &open);
    assert_false(up_identify_with_next(u, &ci));
    assert_true(up_identify_needed(u, &ci));
    run_for(50);
    assert_null(strstr(srv.wire.ptr, "XFORWARD"));
    up_free(u);
}

/* Without PIPELINING the (last) line's reply answers the identify; a
 * refusal of it is sluice's problem, not the client's: 250, logged. */
static void test_xforward_without_pipelining(void **state)
{
    (void)state;
    static const struct step script[] = {
        GREET,
        {"EHLO " HELO_NAME, "250-fake.test\r\n250 XFORWARD NAME ADDR PORT PROTO HELO\r\n", 0,
         false},
        {"XFORWARD ADDR=", "550 5.7.0 not authorised\r\n", 0, true},
        END,
    };
    cfg->xclient = false;
    struct up_client_info ci = {.addr = "192.0.2.9", .port = 587, .helo = "h", .esmtp = true};
    struct rec open = {0}, ident = {0};
    struct up *u = open_up(script, &open);
    CALL(up_identify(u, &ci, rec_cb, &ident));
    RUN_UNTIL(ident.calls > 0);
    assert_from_loop(&ident, 1);
    assert_int_equal(ident.err, UP_OK);
    assert_int_equal(ident.code, 250);
    assert_true(
        wire_has_line("XFORWARD ADDR=192.0.2.9 PORT=587 PROTO=ESMTP NAME=[UNAVAILABLE] HELO=h"));
    assert_true(up_ready(u));
    up_free(u);
}

/* Neither extension: a synthetic 250, from the loop, nothing on the wire. */
static void test_identify_without_extensions(void **state)
{
    (void)state;
    static const struct step script[] = {GREET, EHLO_PIPE, END};
    struct up_client_info ci = {.addr = "192.0.2.1", .port = 25, .helo = "x", .esmtp = true};
    struct rec open = {0}, ident = {0};
    struct up *u = open_up(script, &open);
    size_t wire = srv.wire.len;
    CALL(up_identify(u, &ci, rec_cb, &ident));
    assert_int_equal(ident.calls, 0);
    RUN_UNTIL(ident.calls > 0);
    assert_from_loop(&ident, 1);
    assert_int_equal(ident.err, UP_OK);
    assert_int_equal(ident.code, 250);
    run_for(20);
    assert_int_equal(srv.wire.len, wire);
    up_free(u);
}

/* ---- DATA ------------------------------------------------------------------- */

static const struct data_case {
    const char *name;
    const char *segs[4];
    const char *want_body; /* on the wire, before the final ".\r\n" */
} data_cases[] = {
    {"leading dots are doubled",
     {"Subject: dots\r\n\r\n.leading dot\r\n..two\r\n", "middle . dot\r\n.\r\n"},
     "Subject: dots\r\n\r\n..leading dot\r\n...two\r\nmiddle . dot\r\n..\r\n"},
    {"a dot at a segment boundary",
     {"Subject: x\r\n\r\nline\r\n", ".", "starts the next segment\r\n", "end\r\n"},
     "Subject: x\r\n\r\nline\r\n..starts the next segment\r\nend\r\n"},
    {"no final CRLF", {"Subject: x\r\n\r\nno newline"}, "Subject: x\r\n\r\nno newline\r\n"},
};

static void test_data_dot_stuffing(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof data_cases / sizeof data_cases[0]; i++) {
        const struct data_case *tc = &data_cases[i];
        print_message("case: %s\n", tc->name);
        if (i > 0) {
            teardown(state);
            setup(state);
        }
        static const struct step script[] = {
            GREET,
            EHLO_PIPE,
            {"DATA", "354 go ahead\r\n", 0, true},
            {".", "250 2.0.0 Ok: queued as 4711\r\n", 0, false},
            END,
        };
        struct iovec segs[4];
        size_t n = 0;
        for (; n < 4 && tc->segs[n]; n++)
            segs[n] = (struct iovec){(void *)tc->segs[n], strlen(tc->segs[n])};
        struct rec open = {0}, data = {0};
        struct up *u = open_up(script, &open);
        CALL(up_data(u, segs, n, rec_cb, &data));
        RUN_UNTIL(data.calls > 0);
        assert_from_loop(&data, 1);
        assert_int_equal(data.err, UP_OK);
        assert_int_equal(data.code, 250);
        assert_string_equal(data.text, "Ok: queued as 4711");
        assert_string_equal(srv.body.ptr ? srv.body.ptr : "", tc->want_body);
        assert_int_equal(up_data_bytes(u), strlen(tc->want_body) + 3);
        assert_true(up_ready(u));
        assert_int_equal(srv.errors, 0);
        up_free(u);
    }
}

/* An upstream that offers CHUNKING gets the message as one BDAT LAST with
 * the bytes unchanged (no dot-stuffing, no terminator), and its reply to
 * it is the final reply; a refusal is relayed like DATA's; a reply before
 * the last byte is out of protocol. */
static void test_bdat(void **state)
{
    static const char *const segs_txt[] = {"Subject: dots\r\n\r\n.\r\n", ".x\r\n", "..\r\n.\r\n"};
    static const char want[] = "Subject: dots\r\n\r\n.\r\n.x\r\n..\r\n.\r\n";
    static const struct {
        const char *final;
        enum up_err err;
        int code;
    } cases[] = {
        {"250 2.0.0 Ok: 31 bytes queued as 4711\r\n", UP_OK, 250},
        {"554 5.7.1 no thanks\r\n", UP_OK, 554},
        {"250 2.0.0 Ok\r\n", UP_OK, 250}, /* empty message: "BDAT 0 LAST" */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool empty = i == 2;
        if (i > 0) {
            teardown(state);
            setup(state);
        }
        const struct step script[] = {
            GREET,
            {"EHLO " HELO_NAME, "250-fake.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n", 0, false},
            {empty ? "BDAT 0 LAST" : "BDAT 31 LAST", cases[i].final, 0, false},
            END,
        };
        struct iovec segs[3];
        for (size_t k = 0; k < 3; k++)
            segs[k] = (struct iovec){(void *)segs_txt[k], strlen(segs_txt[k])};
        struct rec open = {0}, data = {0};
        struct up *u = open_up(script, &open);
        CALL(up_data(u, segs, empty ? 0 : 3, rec_cb, &data));
        RUN_UNTIL(data.calls > 0);
        assert_from_loop(&data, 1);
        assert_int_equal(data.err, cases[i].err);
        assert_int_equal(data.code, cases[i].code);
        assert_true(up_data_chunked(u));
        assert_string_equal(srv.body.ptr ? srv.body.ptr : "", empty ? "" : want);
        assert_int_equal(up_data_bytes(u), empty ? 0 : strlen(want));
        assert_true(up_ready(u));
        if (srv.errors)
            fail_msg("case %zu: %s", i, srv.error);
        up_free(u);
    }

    /* A reply while the message is still going out. */
    teardown(state);
    setup(state);
    size_t big = 32 * 1024 * 1024; /* more than the socket buffers hold */
    char *body = malloc(big);
    assert_non_null(body);
    for (size_t k = 0; k < big; k++)
        body[k] = (k % 64 == 62) ? '\r' : (k % 64 == 63) ? '\n' : 'x';
    struct iovec msg[] = {{body, big}};
    static const struct step early[] = {
        GREET,
        {"EHLO " HELO_NAME, "250-fake.test\r\n250 CHUNKING\r\n", 0, false},
        {"BDAT 33554432 LAST", "250 2.0.0 queued\r\n", 0, false},
        END,
    };
    struct rec open = {0}, data = {0};
    struct up *u = open_up(early, &open);
    srv.script = early;
    CALL(up_data(u, msg, 1, rec_cb, &data));
    /* The fake stops reading and answers at once: the message cannot all
     * be out when the reply comes. */
    RUN_UNTIL(srv.bdat_step != NULL);
    uv_read_stop((uv_stream_t *)srv.client);
    fs_answer(srv.bdat_step);
    srv.bdat_left = 0;
    srv.bdat_step = NULL;
    RUN_UNTIL(data.calls > 0);
    assert_int_equal(data.err, UP_ERR_PROTOCOL);
    up_free(u);
    free(body);
}

/* DATA refused: the refusal is the answer; no message is sent. */
static void test_data_refused(void **state)
{
    (void)state;
    static const struct step script[] = {
        GREET, EHLO_PIPE, {"DATA", "554 5.5.1 no valid recipients\r\n", 0, false}, END};
    static const struct iovec msg[] = {{"Subject: x\r\n\r\nbody\r\n", 20}};
    struct rec open = {0}, data = {0};
    struct up *u = open_up(script, &open);
    CALL(up_data(u, msg, 1, rec_cb, &data));
    RUN_UNTIL(data.calls > 0);
    assert_from_loop(&data, 1);
    assert_int_equal(data.code, 554);
    run_for(20);
    assert_int_equal(srv.body.len, 0);
    assert_true(up_ready(u));
    up_free(u);
}

/* A final reply while the message is still being written (it could be a
 * 250 for a truncated message) is never relayed. The message is larger
 * than one write chunk, and the server answers right after its 354. */
static void test_reply_before_end_of_message(void **state)
{
    (void)state;
    static const struct step script[] = {
        GREET, EHLO_PIPE, {"DATA", "354 go ahead\r\n250 2.0.0 queued\r\n", 0, false}, END};
    size_t big = 1024 * 1024;
    char *body = malloc(big);
    assert_non_null(body);
    for (size_t i = 0; i < big; i++)
        body[i] = (i % 64 == 62) ? '\r' : (i % 64 == 63) ? '\n' : 'x';
    struct iovec msg[] = {{body, big}};
    struct rec open = {0}, data = {0};
    struct up *u = open_up(script, &open);
    CALL(up_data(u, msg, 1, rec_cb, &data));
    RUN_UNTIL(data.calls > 0);
    assert_from_loop(&data, 1);
    assert_int_equal(data.err, UP_ERR_PROTOCOL);
    assert_int_equal(data.code, 0);
    up_free(u);
    free(body);
}

/* ---- timeouts ---------------------------------------------------------------- */

static const struct timeout_case {
    const char *name;
    const char *greeting;   /* FS_SILENT: never greets */
    const char *mail_reply; /* reply to MAIL; NULL: no MAIL (open times out) */
    bool data;              /* then DATA; the final reply never comes */
} timeout_cases[] = {
    {"no greeting", FS_SILENT, NULL, false},
    {"no reply to MAIL", "220 fake\r\n", FS_SILENT, false},
    {"no final reply after the dot", "220 fake\r\n", "250 ok\r\n", true},
};

static void test_timeout(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof timeout_cases / sizeof timeout_cases[0]; i++) {
        const struct timeout_case *tc = &timeout_cases[i];
        print_message("case: %s\n", tc->name);
        if (i > 0) {
            teardown(state);
            setup(state);
        }
        cfg->upstream_command_timeout_ms = 100;
        cfg->upstream_data_timeout_ms = 150;
        struct step script[] = {
            {NULL, tc->greeting, 0, false},
            EHLO_PLAIN,
            {"MAIL FROM:<a@example.org>", tc->mail_reply ? tc->mail_reply : FS_SILENT, 0, false},
            {"DATA", "354 go ahead\r\n", 0, false},
            {".", FS_SILENT, 0, false},
            END,
        };
        static const struct iovec msg[] = {{"Subject: x\r\n\r\nbody\r\n", 20}};
        struct rec open = {0}, mail = {0}, data = {0};
        struct up *u = open_up(script, &open);
        if (!tc->mail_reply) {
            assert_int_equal(open.err, UP_ERR_TIMEOUT);
            up_free(u);
            continue;
        }
        assert_int_equal(open.err, UP_OK);
        CALL(up_command(u, "MAIL FROM:<a@example.org>", rec_cb, &mail));
        if (tc->data)
            CALL(up_data(u, msg, 1, rec_cb, &data));
        struct rec *last = tc->data ? &data : &mail;
        RUN_UNTIL(last->calls > 0);
        assert_from_loop(last, 1);
        assert_int_equal(last->err, UP_ERR_TIMEOUT);
        assert_true(up_failed(u));
        up_free(u);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake_and_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_server_and_none_left, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_again_when_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replies_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_protocol_never_relayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsolicited_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_421_mid_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calls_on_failed_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_commands_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xclient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xclient_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xforward_with_next, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xforward_with_next_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xforward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xforward_without_pipelining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identify_without_extensions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_dot_stuffing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bdat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_before_end_of_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
