/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the SMTP session (proxy/sess.c, sess_cmd.c, sess_reply.c,
 * sess_eom.c) driven in-process, on one private libuv loop:
 *  - a real `struct server` (server_init + server_start, empty chain, no
 *    stats endpoint, no reverse DNS) listening on 127.0.0.1;
 *  - a fake upstream MTA (a uv_tcp listener on 127.0.0.1:0) that answers
 *    from a small script, can delay a reply, stay silent or drop the
 *    connection, and records every line it receives;
 *  - scripted clients (uv_tcp) that send bytes and collect the replies.
 *
 * Dialogues are table rows: what the client sends, the replies it must get
 * (one per command, in order, matched by prefix), what the upstream must
 * have seen. Every dialogue ends with QUIT (or the server closing) and then
 * checks that the reply count is exact (no command answered twice, none
 * left unanswered) and that the server's session count is back to 0.
 * Every wait on the loop is bounded (WAIT_MS).
 *
 * The server's readiness probe (server_start) also connects to the fake
 * upstream; its connection only ever says EHLO (and QUIT), so the
 * "session transcript" leaves such connections out.
 *
 * SESS_TEST_DEBUG=1 in the environment shows the daemon's debug log.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "buf.h"
#include "cfg.h"
#include "chain.h"
#include "log.h"
#include "sasl.h"
#include "server.h"
#include "stats.h"

#define WAIT_MS 3000 /* the longest any single wait may take */
#define MAX_RULES 8
#define MAX_REPLIES 256
#define NCLIENTS 4

static char g_tmpdir[64];
static int g_cfgno;

/* server.c's SIGHUP reload reads the command-line overrides, which main.c
 * defines; the daemon's main is not linked here. */

/* ==== the fake upstream ================================================== */

enum fu_act {
    FU_REPLY = 0,   /* send `reply` (after `delay_ms`) */
    FU_CLOSE,       /* close the connection without a reply (after earlier replies) */
    FU_SILENT,      /* never answer */
    FU_REPLY_CLOSE, /* send `reply`, then close */
};

/* A scripted answer: the first rule whose prefix starts the received line
 * wins ("." is the end of data). Replies are lines separated by '\n'. */
struct fu_rule {
    const char *prefix;
    const char *reply;
    enum fu_act act;
    unsigned delay_ms;
    bool once; /* used up after one match */
};

struct fu_out {
    struct fu_out *next;
    uint64_t due;
    char *text; /* CRLF lines, NULL for a close */
    size_t len;
    char *event; /* what the event log says when it leaves */
};

struct fake_up;

struct fu_conn {
    struct fake_up *fu;
    struct fu_conn *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    int id;
    bool closing; /* we closed (or started closing) it */
    bool eof;     /* the proxy closed its side */
    bool in_data, in_tx;
    unsigned nrcpt;
    buf_t acc;  /* partial line */
    buf_t seen; /* every line received, each ending in "\n" (data raw, dot-stuffed) */
    buf_t body; /* the message as delivered (unstuffed), "\n" line ends */
    struct fu_out *out_head, *out_tail;
    uint64_t last_due;
};

struct fake_up {
    uv_loop_t *loop;
    uv_tcp_t listener;
    bool listening;
    int port;
    const struct fu_rule *rules;
    bool used[MAX_RULES];
    struct fu_conn *conns, *conns_tail;
    int nconns;
    buf_t events; /* ">line" received, "<reply" sent, "#close", across connections */
};

static void fu_write_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

static void fu_close_cb(uv_handle_t *h)
{
    (void)h; /* the conn is freed at teardown, after the loop has drained */
}

static void fu_conn_close(struct fu_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, fu_close_cb);
    uv_close((uv_handle_t *)&c->timer, fu_close_cb);
}

static void fu_timer_cb(uv_timer_t *t);

/* Send whatever is due, in order; re-arm the timer for the rest. */
static void fu_pump(struct fu_conn *c)
{
    uint64_t now = uv_now(c->fu->loop);
    while (c->out_head && !c->closing && c->out_head->due <= now) {
        struct fu_out *o = c->out_head;
        c->out_head = o->next;
        if (!c->out_head)
            c->out_tail = NULL;
        buf_puts(&c->fu->events, o->event);
        buf_puts(&c->fu->events, "\n");
        if (o->text) {
            uv_write_t *req = malloc(sizeof *req);
            assert_non_null(req);
            req->data = o->text;
            uv_buf_t b = uv_buf_init(o->text, (unsigned)o->len);
            if (uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, fu_write_cb) != 0) {
                free(o->text);
                free(req);
            }
        } else {
            fu_conn_close(c);
        }
        free(o->event);
        free(o);
    }
    if (c->out_head && !c->closing)
        uv_timer_start(&c->timer, fu_timer_cb, c->out_head->due - now, 0);
}

static void fu_timer_cb(uv_timer_t *t)
{
    fu_pump(t->data);
}

/* Queue a reply ('\n'-separated lines; NULL: close) after delay_ms, never
 * before an earlier one. */
static void fu_queue(struct fu_conn *c, const char *reply, unsigned delay_ms)
{
    struct fu_out *o = calloc(1, sizeof *o);
    assert_non_null(o);
    uint64_t due = uv_now(c->fu->loop) + delay_ms;
    o->due = due > c->last_due ? due : c->last_due;
    c->last_due = o->due;
    buf_t ev = BUF_INIT;
    if (reply) {
        buf_t b = BUF_INIT;
        for (const char *p = reply; *p;) {
            const char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            buf_append(&b, p, n);
            buf_puts(&b, "\r\n");
            p += n + (nl ? 1 : 0);
        }
        o->text = b.ptr;
        o->len = b.len;
        const char *nl = strchr(reply, '\n');
        buf_printf(&ev, "<%.*s", (int)(nl ? (size_t)(nl - reply) : strlen(reply)), reply);
    } else {
        buf_puts(&ev, "#close");
    }
    o->event = ev.ptr;
    if (c->out_tail)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
    fu_pump(c);
}

static const struct fu_rule *fu_match(struct fake_up *fu, const char *line)
{
    for (size_t i = 0; fu->rules && i < MAX_RULES && fu->rules[i].prefix; i++) {
        const struct fu_rule *r = &fu->rules[i];
        if (r->once && fu->used[i])
            continue;
        if (strncmp(line, r->prefix, strlen(r->prefix)) == 0) {
            fu->used[i] = true;
            return r;
        }
    }
    return NULL;
}

static const char fu_ehlo_reply[] = "250-fake.test\n250-PIPELINING\n250-8BITMIME\n"
                                    "250-SIZE 100000000\n250 ENHANCEDSTATUSCODES";

/* What a plain MTA answers when no rule says otherwise. */
static const char *fu_default(struct fu_conn *c, const char *line, bool *close_after)
{
    *close_after = false;
    if (strcmp(line, ".") == 0)
        return "250 2.0.0 Ok: queued as FAKE";
    if (!strncmp(line, "EHLO", 4) || !strncmp(line, "HELO", 4))
        return fu_ehlo_reply;
    if (!strncmp(line, "MAIL", 4))
        return c->in_tx ? "503 5.5.1 Error: nested MAIL command" : "250 2.1.0 Ok";
    if (!strncmp(line, "RCPT", 4))
        return c->in_tx ? "250 2.1.5 Ok" : "503 5.5.1 Error: need MAIL command";
    if (!strncmp(line, "DATA", 4))
        return c->in_tx && c->nrcpt ? "354 End data with <CR><LF>.<CR><LF>"
                                    : "554 5.5.1 Error: no valid recipients";
    if (!strncmp(line, "RSET", 4) || !strncmp(line, "NOOP", 4) || !strncmp(line, "XFORWARD", 8))
        return "250 2.0.0 Ok";
    if (!strncmp(line, "QUIT", 4)) {
        *close_after = true;
        return "221 2.0.0 Bye";
    }
    return "502 5.5.2 Error: command not recognized";
}

/* One line from the proxy (CRLF removed). false: stop reading (closed). */
static bool fu_on_line(struct fu_conn *c, const char *line)
{
    struct fake_up *fu = c->fu;
    buf_printf(&c->seen, "%s\n", line);
    bool eod = false;
    if (c->in_data) {
        if (strcmp(line, ".") != 0) {
            buf_printf(&c->body, "%s\n", line[0] == '.' ? line + 1 : line);
            return true;
        }
        c->in_data = false;
        eod = true;
    }
    buf_printf(&fu->events, ">%s\n", line);
    const struct fu_rule *r = fu_match(fu, line);
    bool close_after = false;
    const char *reply = r ? r->reply : fu_default(c, line, &close_after);
    if (r && r->act == FU_CLOSE) {
        fu_queue(c, NULL, r->delay_ms);
        return !c->closing;
    }
    if (r && r->act == FU_SILENT)
        return true;
    int code = atoi(reply);
    if (eod || !strncmp(line, "RSET", 4)) {
        c->in_tx = false;
    } else if (!strncmp(line, "MAIL", 4) && code / 100 == 2) {
        c->in_tx = true;
        c->nrcpt = 0;
    } else if (!strncmp(line, "RCPT", 4) && code / 100 == 2) {
        c->nrcpt++;
    } else if (!strncmp(line, "DATA", 4) && code == 354) {
        c->in_data = true;
    }
    fu_queue(c, reply, r ? r->delay_ms : 0);
    if (close_after || (r && r->act == FU_REPLY_CLOSE))
        fu_queue(c, NULL, 0);
    return !c->closing;
}

static void fu_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(hint);
    b->len = b->base ? hint : 0;
}

static void fu_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct fu_conn *c = st->data;
    if (n < 0) {
        c->eof = true;
        buf_puts(&c->fu->events, "#eof\n");
        fu_conn_close(c);
    } else if (n > 0 && !c->closing) {
        buf_append(&c->acc, b->base, (size_t)n);
        size_t off = 0;
        char *nl;
        while (!c->closing && (nl = memchr(c->acc.ptr + off, '\n', c->acc.len - off))) {
            size_t len = (size_t)(nl - (c->acc.ptr + off));
            char *line = strndup(c->acc.ptr + off, len && nl[-1] == '\r' ? len - 1 : len);
            assert_non_null(line);
            off += len + 1;
            bool go_on = fu_on_line(c, line);
            free(line);
            if (!go_on)
                break;
        }
        buf_consume(&c->acc, off);
    }
    free(b->base);
}

static void fu_on_connection(uv_stream_t *l, int status)
{
    struct fake_up *fu = l->data;
    assert_int_equal(status, 0);
    struct fu_conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fu = fu;
    c->id = ++fu->nconns;
    uv_tcp_init(fu->loop, &c->tcp);
    uv_timer_init(fu->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    if (fu->conns_tail)
        fu->conns_tail->next = c;
    else
        fu->conns = c;
    fu->conns_tail = c;
    uv_read_start((uv_stream_t *)&c->tcp, fu_alloc_cb, fu_read_cb);
    fu_queue(c, "220 fake.test ESMTP", 0);
}

static void fu_listen(struct fake_up *fu, uv_loop_t *loop, const struct fu_rule *rules)
{
    fu->loop = loop;
    fu->rules = rules;
    uv_tcp_init(loop, &fu->listener);
    fu->listener.data = fu;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&fu->listener, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&fu->listener, 64, fu_on_connection), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&fu->listener, (struct sockaddr *)&ss, &len);
    fu->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    fu->listening = true;
}

/* A connection's lines after its handshake EHLO, without a final QUIT:
 * what the session asked of the upstream. */
static void fu_conn_script(const struct fu_conn *c, buf_t *out)
{
    const char *p = c->seen.ptr ? c->seen.ptr : "";
    size_t n = c->seen.len;
    if (!strncmp(p, "EHLO ", 5)) {
        const char *nl = memchr(p, '\n', n);
        n -= nl ? (size_t)(nl + 1 - p) : n;
        p = nl ? nl + 1 : p + strlen(p);
    }
    if (n >= 5 && !memcmp(p + n - 5, "QUIT\n", 5) && (n == 5 || p[n - 6] == '\n'))
        n -= 5;
    buf_append(out, p, n);
}

static bool fu_conn_is_probe(const struct fu_conn *c)
{
    buf_t b = BUF_INIT;
    fu_conn_script(c, &b);
    bool probe = b.len == 0;
    buf_free(&b);
    return probe;
}

/* Everything the sessions asked of the upstream, connection after
 * connection (caller frees). */
static char *fu_transcript(const struct fake_up *fu)
{
    buf_t b = BUF_INIT;
    for (const struct fu_conn *c = fu->conns; c; c = c->next)
        fu_conn_script(c, &b);
    return b.ptr ? b.ptr : strdup("");
}

static void fu_close_all(struct fake_up *fu)
{
    if (fu->listening) {
        uv_close((uv_handle_t *)&fu->listener, NULL);
        fu->listening = false;
    }
    for (struct fu_conn *c = fu->conns; c; c = c->next)
        fu_conn_close(c);
}

static void fu_free(struct fake_up *fu)
{
    while (fu->conns) {
        struct fu_conn *c = fu->conns;
        fu->conns = c->next;
        while (c->out_head) {
            struct fu_out *o = c->out_head;
            c->out_head = o->next;
            free(o->text);
            free(o->event);
            free(o);
        }
        buf_free(&c->acc);
        buf_free(&c->seen);
        buf_free(&c->body);
        free(c);
    }
    buf_free(&fu->events);
}

/* ==== the client ========================================================= */

struct cli {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_connect_t creq;
    bool open;    /* handle initialised and not closed */
    bool closing; /* uv_close called, its callback not yet run */
    bool connected, eof;
    buf_t rx;      /* everything received */
    size_t parsed; /* rx bytes cut into replies */
    size_t reply_start;
    char *replies[MAX_REPLIES]; /* complete replies, CRLF lines */
    size_t nreplies;
};

static void cli_write_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

/* Cut complete replies out of rx (a reply ends with "ddd " or "ddd"). */
static void cli_parse(struct cli *c)
{
    for (;;) {
        const char *p = c->rx.ptr + c->parsed;
        const char *end = memmem(p, c->rx.len - c->parsed, "\r\n", 2);
        if (!end)
            return;
        size_t len = (size_t)(end - p);
        c->parsed += len + 2;
        if (len > 3 && p[3] == '-')
            continue;
        assert_true(c->nreplies < MAX_REPLIES);
        c->replies[c->nreplies++] = strndup(c->rx.ptr + c->reply_start, c->parsed - c->reply_start);
        c->reply_start = c->parsed;
    }
}

static void cli_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct cli *c = st->data;
    if (n < 0) {
        c->eof = true;
        uv_read_stop(st);
    } else if (n > 0) {
        buf_append(&c->rx, b->base, (size_t)n);
        cli_parse(c);
    }
    free(b->base);
}

static void cli_connect_cb(uv_connect_t *req, int status)
{
    struct cli *c = req->data;
    assert_int_equal(status, 0);
    c->connected = true;
    uv_read_start((uv_stream_t *)&c->tcp, fu_alloc_cb, cli_read_cb);
}

static void cli_reset(struct cli *c)
{
    assert_false(c->closing); /* the handle's memory is libuv's until then */
    for (size_t i = 0; i < c->nreplies; i++)
        free(c->replies[i]);
    buf_free(&c->rx);
    uv_loop_t *loop = c->loop;
    memset(c, 0, sizeof *c);
    c->loop = loop;
}

static void cli_open(struct cli *c, int port)
{
    cli_reset(c);
    uv_tcp_init(c->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    c->open = true;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    assert_int_equal(uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&a, cli_connect_cb),
                     0);
}

static void cli_send(struct cli *c, const char *p, size_t n)
{
    uv_write_t *req = malloc(sizeof *req + n);
    assert_non_null(req);
    char *copy = (char *)(req + 1);
    memcpy(copy, p, n);
    uv_buf_t b = uv_buf_init(copy, (unsigned)n);
    assert_int_equal(uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, cli_write_cb), 0);
}

static void cli_close_cb(uv_handle_t *hd)
{
    ((struct cli *)hd->data)->closing = false;
}

static void cli_close(struct cli *c)
{
    if (c->open) {
        c->open = false;
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, cli_close_cb);
    }
}

/* ==== the fake Dovecot auth service ====================================== */

/* Enough of Dovecot's auth-client protocol for the session's AUTH: the
 * handshake, then one answer per AUTH line, decided by the PLAIN response:
 * alice/secret -> OK user=alice; Bob/hunter2 -> OK user=bob (Dovecot's
 * canonical name differs from the authcid); password "slow" -> no answer;
 * anything else -> FAIL. Every AUTH line is recorded (checked for rip=,
 * secured, session=, and that no-penalty is never asked). */
struct fd_conn {
    uv_tcp_t tcp;
    struct fake_dv *dv;
    buf_t in;
    struct fd_conn *next;
};

struct fake_dv {
    uv_tcp_t srv;
    int port;
    bool on;
    struct fd_conn *conns;
    buf_t seen; /* the AUTH lines, '\n'-terminated */
};

static void fd_close_cb(uv_handle_t *h)
{
    (void)h; /* freed in fd_free, after the loop drained */
}

static void fd_send(struct fd_conn *c, const char *text)
{
    uv_write_t *req = malloc(sizeof *req);
    assert_non_null(req);
    req->data = strdup(text);
    uv_buf_t b = uv_buf_init(req->data, (unsigned)strlen(text));
    if (uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, fu_write_cb) != 0) {
        free(req->data);
        free(req);
    }
}

static void fd_line(struct fd_conn *c, const char *line)
{
    if (strncmp(line, "AUTH\t", 5) != 0)
        return; /* VERSION, CPID */
    buf_printf(&c->dv->seen, "%s\n", line);
    unsigned id = (unsigned)strtoul(line + 5, NULL, 10);
    const char *resp = strstr(line, "\tresp=");
    unsigned char msg[SASL_MSG_MAX];
    size_t n = 0;
    struct sasl_creds cr;
    char out[300];
    if (!resp || sasl_b64_decode(resp + 6, strlen(resp + 6), msg, sizeof msg, &n) < 0 ||
        sasl_plain_decode(msg, n, &cr) < 0) {
        snprintf(out, sizeof out, "FAIL\t%u\n", id);
    } else if (strcmp(cr.passwd, "slow") == 0) {
        return;
    } else if (strcmp(cr.authcid, "alice") == 0 && strcmp(cr.passwd, "secret") == 0) {
        snprintf(out, sizeof out, "OK\t%u\tuser=alice\n", id);
    } else if (strcmp(cr.authcid, "Bob") == 0 && strcmp(cr.passwd, "hunter2") == 0) {
        snprintf(out, sizeof out, "OK\t%u\tuser=bob\n", id);
    } else {
        snprintf(out, sizeof out, "FAIL\t%u\tuser=%s\n", id, cr.authcid);
    }
    fd_send(c, out);
}

static void fd_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct fd_conn *c = st->data;
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)st))
            uv_close((uv_handle_t *)st, fd_close_cb);
    } else if (n > 0) {
        buf_append(&c->in, b->base, (size_t)n);
        char *nl;
        while (c->in.ptr && (nl = memchr(c->in.ptr, '\n', c->in.len)) != NULL) {
            *nl = 0;
            fd_line(c, c->in.ptr);
            buf_consume(&c->in, (size_t)(nl - c->in.ptr) + 1);
        }
    }
    free(b->base);
}

static void fd_on_connection(uv_stream_t *l, int status)
{
    struct fake_dv *dv = l->data;
    if (status != 0)
        return;
    struct fd_conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->dv = dv;
    c->next = dv->conns;
    dv->conns = c;
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, fd_close_cb);
        return;
    }
    fd_send(c, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
               "SPID\t4242\nCUID\t7\nCOOKIE\t0123456789abcdef0123456789abcdef\nDONE\n");
    uv_read_start((uv_stream_t *)&c->tcp, fu_alloc_cb, fd_read_cb);
}

static void fd_listen(struct fake_dv *dv, uv_loop_t *loop)
{
    uv_tcp_init(loop, &dv->srv);
    dv->srv.data = dv;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&dv->srv, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&dv->srv, 16, fd_on_connection), 0);
    int len = sizeof a;
    uv_tcp_getsockname(&dv->srv, (struct sockaddr *)&a, &len);
    dv->port = ntohs(a.sin_port);
    dv->on = true;
}

static void fd_close_all(struct fake_dv *dv)
{
    if (!dv->on)
        return;
    uv_close((uv_handle_t *)&dv->srv, fd_close_cb);
    for (struct fd_conn *c = dv->conns; c; c = c->next)
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, fd_close_cb);
}

static void fd_free(struct fake_dv *dv)
{
    while (dv->conns) {
        struct fd_conn *c = dv->conns;
        dv->conns = c->next;
        buf_free(&c->in);
        free(c);
    }
    buf_free(&dv->seen);
    memset(dv, 0, sizeof *dv);
}

/* ==== the harness ======================================================== */

struct opts {
    const char *server_cfg;   /* extra [server] lines */
    const char *upstream_cfg; /* extra [upstream] lines */
    const struct fu_rule *rules;
    bool upstream_down; /* nothing listens where the upstream should be */
    /* Upstream connections reused across sessions: off unless a test is
     * about it, so that every other test sees one connection a session. */
    bool reuse;
    /* SMTP AUTH: off, on (auth_plaintext, the fake Dovecot), on without
     * auth_plaintext (TLS only: never offered here), on with Dovecot down */
    enum { AUTH_OFF = 0, AUTH_ON, AUTH_DV_DOWN } auth;
};

struct h {
    uv_loop_t loop;
    uv_timer_t tick;
    struct server srv;
    bool running;
    struct fake_up fu;
    struct fake_dv dv;
    struct cli cli[NCLIENTS];
    int port; /* the server's SMTP port */
};

static struct h *g_h;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

typedef bool (*pred_fn)(struct h *h, const void *arg);

/* Run the loop until pred holds; false after ms. */
static bool run_until(struct h *h, pred_fn pred, const void *arg, unsigned ms)
{
    uv_update_time(&h->loop);
    uint64_t end = uv_now(&h->loop) + ms;
    while (!pred(h, arg)) {
        uv_update_time(&h->loop);
        if (uv_now(&h->loop) >= end)
            return false;
        uv_timer_start(&h->tick, tick_cb, 5, 0);
        uv_run(&h->loop, UV_RUN_ONCE);
    }
    return true;
}

static void run_for(struct h *h, unsigned ms)
{
    uv_update_time(&h->loop);
    uint64_t end = uv_now(&h->loop) + ms;
    while (uv_now(&h->loop) < end) {
        uv_timer_start(&h->tick, tick_cb, 5, 0);
        uv_run(&h->loop, UV_RUN_ONCE);
        uv_update_time(&h->loop);
    }
}

static void h_dump(struct h *h, const struct cli *c)
{
    char *t = fu_transcript(&h->fu);
    print_error("client received:\n%s\nupstream events:\n%s\nsession transcript:\n%s\n"
                "sessions open: %u\n",
                c && c->rx.ptr ? c->rx.ptr : "", h->fu.events.ptr ? h->fu.events.ptr : "", t,
                h->srv.nconns);
    free(t);
}

static void h_start(struct h *h, const struct opts *o)
{
    assert_int_equal(uv_loop_init(&h->loop), 0);
    uv_timer_init(&h->loop, &h->tick);
    for (int i = 0; i < NCLIENTS; i++)
        h->cli[i].loop = &h->loop;
    int up_port;
    if (o->upstream_down) {
        up_port = free_port();
    } else {
        fu_listen(&h->fu, &h->loop, o->rules);
        up_port = h->fu.port;
    }
    h->port = free_port();
    char auth[200] = "";
    if (o->auth) {
        int dv_port = free_port(); /* nothing listens there: Dovecot down */
        if (o->auth != AUTH_DV_DOWN) {
            fd_listen(&h->dv, &h->loop);
            dv_port = h->dv.port;
        }
        /* No certificate here: AUTH in the clear (auth_plaintext). */
        snprintf(auth, sizeof auth,
                 "auth = dovecot\nauth_socket = 127.0.0.1:%d\nauth_plaintext = yes\n", dv_port);
    }

    char path[128];
    snprintf(path, sizeof path, "%s/s%d.conf", g_tmpdir, ++g_cfgno);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "[server]\nlisten = 127.0.0.1:%d\nhostname = sluice.test\nspool_dir = %s\n"
            "reverse_dns = no\n%s%s\n"
            "[upstream]\nservers = 127.0.0.1:%d\n%s%s\n"
            "[stats]\nlisten = no\n",
            h->port, g_tmpdir, auth, o->server_cfg ? o->server_cfg : "", up_port,
            o->reuse ? "" : "reuse_max_idle = 0\n", o->upstream_cfg ? o->upstream_cfg : "");
    fclose(f);
    buf_t errs = BUF_INIT;
    struct cfg *cfg = cfg_load(path, NULL, &errs);
    if (!cfg)
        fail_msg("config refused: %s", errs.ptr ? errs.ptr : "?");
    struct chain *ch = chain_load(cfg, false, &errs);
    if (!ch)
        fail_msg("chain refused: %s", errs.ptr ? errs.ptr : "?");
    buf_free(&errs);
    assert_int_equal(chain_size(ch), 0);
    chain_set_current(ch);
    chain_unref(ch);
    assert_int_equal(server_init(&h->srv, &h->loop, cfg), 0);
    cfg_unref(cfg);
    assert_int_equal(server_start(&h->srv), 0);
    h->running = true;
}

static void h_stop(struct h *h)
{
    if (!h->running)
        return;
    h->running = false;
    for (int i = 0; i < NCLIENTS; i++)
        cli_close(&h->cli[i]);
    fu_close_all(&h->fu);
    fd_close_all(&h->dv);
    uv_close((uv_handle_t *)&h->tick, NULL);
    server_free(&h->srv); /* runs the loop until everything closed */
    chain_shutdown();
    uv_run(&h->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&h->loop), 0);
    fu_free(&h->fu);
    fd_free(&h->dv);
    for (int i = 0; i < NCLIENTS; i++)
        cli_reset(&h->cli[i]);
}

static int h_setup(void **state)
{
    (void)state;
    g_h = calloc(1, sizeof *g_h);
    return g_h ? 0 : -1;
}

static int h_teardown(void **state)
{
    (void)state;
    h_stop(g_h); /* after a failure: best effort */
    free(g_h);
    g_h = NULL;
    return 0;
}

/* ---- predicates ---------------------------------------------------------- */

struct want_replies {
    const struct cli *c;
    size_t n;
};

static bool p_replies(struct h *h, const void *arg)
{
    const struct want_replies *w = arg;
    (void)h;
    return w->c->nreplies >= w->n || w->c->eof;
}

static bool p_eof(struct h *h, const void *arg)
{
    (void)h;
    return ((const struct cli *)arg)->eof;
}

static bool p_connected(struct h *h, const void *arg)
{
    (void)h;
    return ((const struct cli *)arg)->connected;
}

/* No session left, and every upstream connection a session used closed. */
static bool p_idle(struct h *h, const void *arg)
{
    (void)arg;
    if (h->srv.nconns != 0)
        return false;
    for (const struct fu_conn *c = h->fu.conns; c; c = c->next)
        if (!c->closing && !fu_conn_is_probe(c))
            return false;
    return true;
}

/* The fake upstream accepted one more connection than *arg. */
static bool p_fu_accepted(struct h *h, const void *arg)
{
    return h->fu.nconns > *(const int *)arg;
}

static bool p_events(struct h *h, const void *arg)
{
    return h->fu.events.ptr && strstr(h->fu.events.ptr, arg);
}

/* ---- assertions ------------------------------------------------------------ */

static void wait_replies(struct h *h, struct cli *c, size_t n)
{
    struct want_replies w = {c, n};
    if (!run_until(h, p_replies, &w, WAIT_MS) || c->nreplies < n) {
        h_dump(h, c);
        fail_msg("waited for %zu replies, got %zu%s", n, c->nreplies, c->eof ? " (closed)" : "");
    }
}

static void wait_eof(struct h *h, struct cli *c)
{
    if (!run_until(h, p_eof, c, WAIT_MS)) {
        h_dump(h, c);
        fail_msg("the server did not close the connection");
    }
}

static void wait_idle(struct h *h)
{
    if (!run_until(h, p_idle, NULL, WAIT_MS)) {
        h_dump(h, NULL);
        fail_msg("sessions still open: %u", h->srv.nconns);
    }
    assert_int_equal(h->srv.nconns, 0);
    assert_null(h->srv.sessions);
}

/* Reply `idx` must start with `want`. */
static void check_reply(struct h *h, struct cli *c, size_t idx, const char *want, size_t wlen)
{
    const char *got = idx < c->nreplies ? c->replies[idx] : "";
    if (strlen(got) < wlen || memcmp(got, want, wlen) != 0) {
        h_dump(h, c);
        fail_msg("reply #%zu: want \"%.*s...\", got \"%s\"", idx, (int)wlen, want, got);
    }
}

/* Check `expect` ('|'-separated prefixes) against replies from `first`;
 * returns how many there were. */
static size_t check_replies(struct h *h, struct cli *c, size_t first, const char *expect)
{
    size_t n = 0;
    for (const char *p = expect; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        check_reply(h, c, first + n, p, len);
        n++;
        p += len + (bar ? 1 : 0);
    }
    return n;
}

static size_t count_expect(const char *expect)
{
    if (!expect || !*expect)
        return 0;
    size_t n = 1;
    for (const char *p = expect; *p; p++)
        n += *p == '|';
    return n;
}

/* Each '\n'-terminated line of `want` occurs in `events`, in this order
 * (a line ending in '*' only has to start an event). */
static void check_order(struct h *h, const char *want)
{
    const char *ev = h->fu.events.ptr ? h->fu.events.ptr : "";
    const char *at = ev;
    for (const char *p = want; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char needle[600];
        if (len && p[len - 1] == '*')
            snprintf(needle, sizeof needle, "%.*s", (int)len - 1, p);
        else
            snprintf(needle, sizeof needle, "%.*s\n", (int)len, p);
        const char *hit = strstr(at, needle);
        if (!hit) {
            h_dump(h, NULL);
            fail_msg("upstream events: \"%.*s\" missing or out of order", (int)len, p);
        }
        at = hit + strlen(needle);
        p += len + (nl ? 1 : 0);
    }
}

static bool p_cli_closed(struct h *h, const void *arg)
{
    (void)h;
    return !((const struct cli *)arg)->closing;
}

static void open_client(struct h *h, struct cli *c)
{
    if (!run_until(h, p_cli_closed, c, WAIT_MS))
        fail_msg("the client's handle never closed");
    cli_open(c, h->port);
    if (!run_until(h, p_connected, c, WAIT_MS))
        fail_msg("cannot connect to the server");
    wait_replies(h, c, 1);
    check_reply(h, c, 0, "220 sluice.test ESMTP", 21);
}

/* ==== dialogues ============================================================ */

struct step {
    const char *send; /* bytes written in one write (NULL: none) */
    size_t len;
    const char *expect; /* the replies this step brings, '|'-separated prefixes */
    bool eof;           /* then the server closes the connection */
    unsigned pause_ms;  /* run the loop this long before sending */
};

#define SEND(s, e)                                                                                 \
    {                                                                                              \
        s, sizeof(s) - 1, e, false                                                                 \
    }
#define SEND_EOF(s, e)                                                                             \
    {                                                                                              \
        s, sizeof(s) - 1, e, true                                                                  \
    }
#define WAIT(e)                                                                                    \
    {                                                                                              \
        NULL, 0, e, false                                                                          \
    }
#define WAIT_EOF(e)                                                                                \
    {                                                                                              \
        NULL, 0, e, true                                                                           \
    }
#define PAUSE_SEND(ms, s, e)                                                                       \
    {                                                                                              \
        s, sizeof(s) - 1, e, false, ms                                                             \
    }
#define MAX_STEPS 12

struct dialogue {
    struct opts o;
    struct step steps[MAX_STEPS];
    const char *up_saw;   /* the session transcript, exactly (NULL: not checked) */
    const char *up_order; /* events that must occur in this order */
    const char *up_body;  /* the message the upstream received, unstuffed */
    const char *rx_lacks; /* text no reply may contain */
    const char *up_lacks; /* text no upstream event may contain */
    unsigned min_ms;      /* the dialogue takes at least this long */
    const char *rx_has;   /* text the replies must contain */
    const char *up_has;   /* text an upstream event must contain */
    const char *dv_has;   /* text Dovecot's AUTH lines must contain */
    const char *dv_lacks; /* ... must not contain */
};

#define EHLO_OK SEND("EHLO c.test\r\n", "250-sluice.test Hello c.test")
#define MAIL_A "MAIL FROM:<a@x.test>\r\n"
#define RCPT_B "RCPT TO:<b@x.test>\r\n"
#define RCPT_C "RCPT TO:<c@x.test>\r\n"
#define UP_MAIL_A "MAIL FROM:<a@x.test>\n"
#define UP_RCPT_B "RCPT TO:<b@x.test>\n"
#define UP_RCPT_C "RCPT TO:<c@x.test>\n"

static void run_dialogue(void **state)
{
    const struct dialogue *d = *state;
    struct h *h = g_h;
    h_start(h, &d->o);
    struct cli *c = &h->cli[0];
    uint64_t t0 = uv_now(&h->loop);
    open_client(h, c);
    size_t total = 1;
    bool closed = false;
    for (const struct step *st = d->steps; st < d->steps + MAX_STEPS && (st->send || st->expect);
         st++) {
        if (st->pause_ms)
            run_for(h, st->pause_ms);
        if (st->send)
            cli_send(c, st->send, st->len);
        size_t n = count_expect(st->expect);
        wait_replies(h, c, total + n);
        check_replies(h, c, total, st->expect);
        total += n;
        if (st->eof) {
            wait_eof(h, c);
            closed = true;
            break;
        }
    }
    if (!closed) {
        cli_send(c, "QUIT\r\n", 6);
        wait_replies(h, c, total + 1);
        check_reply(h, c, total, "221 2.0.0", 9);
        total++;
        wait_eof(h, c);
    }
    /* Exactly one reply per command: nothing more came before the close. */
    if (c->nreplies != total || c->parsed != c->rx.len) {
        h_dump(h, c);
        fail_msg("%zu replies (+%zu stray bytes), want %zu", c->nreplies, c->rx.len - c->parsed,
                 total);
    }
    cli_close(c);
    wait_idle(h);
    uv_update_time(&h->loop);
    if (d->min_ms)
        assert_true(uv_now(&h->loop) - t0 >= d->min_ms);
    if (d->up_saw) {
        char *t = fu_transcript(&h->fu);
        bool same = strcmp(t, d->up_saw) == 0;
        if (!same) {
            h_dump(h, c);
            print_error("upstream saw:\n%s\nwant:\n%s\n", t, d->up_saw);
        }
        free(t);
        if (!same)
            fail_msg("the upstream transcript differs");
    }
    if (d->up_order)
        check_order(h, d->up_order);
    if (d->up_body) {
        const struct fu_conn *fc = h->fu.conns;
        while (fc && !fc->body.len)
            fc = fc->next;
        assert_non_null(fc);
        assert_string_equal(fc->body.ptr, d->up_body);
    }
    if (d->up_lacks) {
        char *t = fu_transcript(&h->fu);
        bool seen =
            strstr(t, d->up_lacks) || (h->fu.events.ptr && strstr(h->fu.events.ptr, d->up_lacks));
        free(t);
        if (seen) {
            h_dump(h, c);
            fail_msg("the upstream saw \"%s\"", d->up_lacks);
        }
    }
    if (d->rx_lacks && c->rx.ptr && strstr(c->rx.ptr, d->rx_lacks)) {
        h_dump(h, c);
        fail_msg("a reply contains \"%s\"", d->rx_lacks);
    }
    if (d->rx_has && !(c->rx.ptr && strstr(c->rx.ptr, d->rx_has))) {
        h_dump(h, c);
        fail_msg("no reply contains \"%s\"", d->rx_has);
    }
    if (d->up_has && !(h->fu.events.ptr && strstr(h->fu.events.ptr, d->up_has))) {
        h_dump(h, c);
        fail_msg("no upstream event contains \"%s\"", d->up_has);
    }
    const char *dv = h->dv.seen.ptr ? h->dv.seen.ptr : "";
    if (d->dv_has && !strstr(dv, d->dv_has))
        fail_msg("Dovecot was not sent \"%s\"; it saw:\n%s", d->dv_has, dv);
    if (d->dv_lacks && strstr(dv, d->dv_lacks))
        fail_msg("Dovecot was sent \"%s\":\n%s", d->dv_lacks, dv);
    h_stop(h);
}

/* ---- the scripts ----------------------------------------------------------- */

static const struct fu_rule rules_mail_451[] = {
    {"MAIL", "451 4.3.0 Try again later", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};
/* Out of protocol: 250 for RCPTs after it refused MAIL. */
static const struct fu_rule rules_mail_451_rcpt_250[] = {
    {"MAIL", "451 4.3.0 Try again later", FU_REPLY, 0, false},
    {"RCPT", "250 2.1.5 Ok", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};
static const struct fu_rule rules_rcpt_bad[] = {
    {"RCPT TO:<bad", "550 5.1.1 <bad@x.test>: Recipient address rejected", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};
static const struct fu_rule rules_queued[] = {
    {".", "250 2.0.0 Ok: queued as ABC123", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};
static const struct fu_rule rules_final_554[] = {
    {".", "554 5.7.1 Message refused: spam", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};
static const struct fu_rule rules_data_451[] = {
    {"DATA", "451 4.3.0 Not now", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};
static const struct fu_rule rules_lost_after_mail[] = {
    {"MAIL", NULL, FU_CLOSE, 0, true},
    {NULL, NULL, 0, 0, false},
};
static const struct fu_rule rules_lost_at_dot[] = {
    {".", NULL, FU_CLOSE, 0, true},
    {NULL, NULL, 0, 0, false},
};
static const struct fu_rule rules_slow_tx[] = {
    {"MAIL", "250 2.1.0 Ok", FU_REPLY, 150, false},
    {"RCPT", "250 2.1.5 Ok", FU_REPLY, 150, false},
    {NULL, NULL, 0, 0, false},
};
static const struct fu_rule rules_rcpt_silent[] = {
    {"RCPT", NULL, FU_SILENT, 0, true},
    {NULL, NULL, 0, 0, false},
};
static const struct fu_rule rules_rcpt_252[] = {
    {"RCPT", "252 2.1.5 Maybe", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};

/* ---- the table ------------------------------------------------------------- */

static const struct dialogue d_mail_before_helo = {
    .steps = {SEND(MAIL_A, "503 5.5.1 Error: send HELO/EHLO first")},
    .up_saw = "",
};

static const struct dialogue d_rcpt_before_mail = {
    .steps = {EHLO_OK, SEND(RCPT_B, "503 5.5.1 Error: need MAIL command")},
    .up_saw = "",
};

static const struct dialogue d_data_before_mail = {
    .steps = {EHLO_OK, SEND("DATA\r\n", "503 5.5.1")},
    .up_saw = "",
};

static const struct dialogue d_data_before_rcpt = {
    .steps = {EHLO_OK, SEND(MAIL_A, "250 2.1.0 Ok"),
              SEND("DATA\r\n", "554 5.5.1 Error: no valid recipients")},
    /* QUIT with a transaction open resets it upstream. */
    .up_saw = UP_MAIL_A "RSET\n",
};

static const struct dialogue d_nested_mail = {
    .steps = {EHLO_OK, SEND(MAIL_A, "250 2.1.0"),
              SEND("MAIL FROM:<z@x.test>\r\n", "503 5.5.1 Error: nested MAIL command"),
              SEND(RCPT_B, "250 2.1.5")},
    .up_saw = UP_MAIL_A UP_RCPT_B "RSET\n",
};

static const struct dialogue d_unknown_verb = {
    .steps = {SEND("FROB x\r\n", "500 5.5.1 Error: command not recognized"), EHLO_OK,
              SEND("MAILX FROM:<a@x.test>\r\n", "500 5.5.1")},
    .up_saw = "",
};

static const struct dialogue d_not_implemented = {
    .steps = {EHLO_OK,
              SEND("EXPN staff\r\nAUTH PLAIN\r\nETRN x.test\r\nTURN\r\n"
                   "XCLIENT ADDR=192.0.2.1\r\nXFORWARD ADDR=192.0.2.1\r\n",
                   "502 5.5.1|502 5.5.1|502 5.5.1|502 5.5.1|502 5.5.1|502 5.5.1"),
              SEND("NOOP\r\n", "250 2.0.0")},
    .up_saw = "",
};

static const struct dialogue d_nul_in_command = {
    .steps = {EHLO_OK, SEND("NOOP\0x\r\n", "500 5.5.2 Error: NUL character in command"),
              SEND("MAIL FROM:<a@x.test>\0\r\n", "500 5.5.2"),
              SEND("NOOP \xff\r\n", "500 5.5.2 Error: 8-bit characters in command")},
    .up_saw = "",
};

static const struct dialogue d_helo_syntax = {
    .steps = {SEND("HELO\r\n", "501 5.5.4 Syntax: HELO hostname"),
              SEND("EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname"),
              SEND("HELO a b\r\n", "501 5.5.4"), SEND("EHLO a\tb\r\n", "501 5.5.4"),
              /* still no HELO: a transaction is refused */
              SEND(MAIL_A, "503 5.5.1"), SEND("HELO c.test\r\n", "250 2.0.0 sluice.test"),
              SEND(MAIL_A, "250 2.1.0")},
    .up_saw = UP_MAIL_A "RSET\n",
};

static const struct dialogue d_line_too_long = {
    .steps =
        {EHLO_OK,
         SEND("NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
              "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
              "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
              "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
              "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
              "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
              "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
              "\r\nNOOP\r\n",
              "500 5.5.2 Error: line too long|250 2.0.0")},
    .up_saw = "",
};

static const struct dialogue d_simple_verbs = {
    .steps = {SEND("NOOP\r\n", "250 2.0.0 Ok"), SEND("HELP\r\n", "214 2.0.0"),
              SEND("VRFY postmaster\r\n", "252 2.1.5"), SEND("RSET\r\n", "250 2.0.0 Ok"), EHLO_OK,
              SEND("RSET\r\n", "250 2.0.0 Ok")},
    .up_saw = "",
    .rx_lacks = "STARTTLS",
};

static const struct dialogue d_starttls_without_tls = {
    .steps = {EHLO_OK, SEND("STARTTLS\r\n", "502 5.5.1 Error: command not implemented"),
              /* the session goes on in clear */
              SEND(MAIL_A, "250 2.1.0")},
    .up_saw = UP_MAIL_A "RSET\n",
    .rx_lacks = "STARTTLS",
};

/* MAIL+RCPT+RCPT+DATA in one write: one reply each, in order; the message
 * follows; the upstream sees the commands in order. */
static const struct dialogue d_pipelining = {
    .o = {.rules = rules_queued},
    .steps = {EHLO_OK,
              SEND(MAIL_A RCPT_B RCPT_C "DATA\r\n", "250 2.1.0 Ok|250 2.1.5 Ok|250 2.1.5 Ok|354 "),
              SEND("Subject: t\r\n\r\nhello\r\n.\r\n", "250 2.0.0 Ok: queued as ABC123")},
    .up_saw = UP_MAIL_A UP_RCPT_B UP_RCPT_C "DATA\nSubject: t\n\nhello\n.\n",
    .up_body = "Subject: t\n\nhello\n",
};

/* The whole message, pipelined with the envelope in one write. */
static const struct dialogue d_pipelining_whole = {
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B "DATA\r\nSubject: t\r\n\r\nbody\r\n.\r\nNOOP\r\n",
                            "250 2.1.0|250 2.1.5|354 |250 2.0.0 Ok: queued as FAKE|250 2.0.0 Ok")},
    .up_saw = UP_MAIL_A UP_RCPT_B "DATA\nSubject: t\n\nbody\n.\n",
};

/* Barriers: RSET, EHLO and QUIT behind pipelined MAIL/RCPT wait for their
 * replies (the upstream answers late); the RSET they cause reaches the
 * upstream only after it answered. */
static const struct dialogue d_barrier_rset = {
    .o = {.rules = rules_slow_tx},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B "RSET\r\n", "250 2.1.0|250 2.1.5|250 2.0.0 Ok")},
    .up_saw = UP_MAIL_A UP_RCPT_B "RSET\n",
    .up_order = ">" UP_MAIL_A ">" UP_RCPT_B "<250 2.1.0 Ok\n<250 2.1.5 Ok\n>RSET\n",
};

static const struct dialogue d_barrier_ehlo = {
    .o = {.rules = rules_slow_tx},
    .steps = {EHLO_OK,
              SEND(MAIL_A RCPT_B "EHLO d.test\r\n",
                   "250 2.1.0|250 2.1.5|250-sluice.test Hello d.test"),
              /* EHLO reset the transaction */
              SEND(RCPT_C, "503 5.5.1")},
    .up_saw = UP_MAIL_A UP_RCPT_B "RSET\n",
    .up_order = ">" UP_MAIL_A ">" UP_RCPT_B "<250 2.1.0 Ok\n<250 2.1.5 Ok\n>RSET\n",
};

static const struct dialogue d_barrier_quit = {
    .o = {.rules = rules_slow_tx},
    .steps = {EHLO_OK,
              SEND_EOF(MAIL_A RCPT_B "QUIT\r\nNOOP\r\n", "250 2.1.0|250 2.1.5|221 2.0.0 Bye")},
    .up_saw = UP_MAIL_A UP_RCPT_B "RSET\n",
    .up_order = ">" UP_MAIL_A ">" UP_RCPT_B "<250 2.1.0 Ok\n<250 2.1.5 Ok\n>RSET\n",
};

/* The upstream refuses MAIL: relayed; RCPTs pipelined behind it get the
 * upstream's own 503, DATA sluice's 503; nothing is ever a 250. */
static const struct dialogue d_mail_refused = {
    .o = {.rules = rules_mail_451},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B RCPT_C "DATA\r\n",
                            "451 4.3.0 Try again later|503 5.5.1|503 5.5.1|503 5.5.1")},
    .up_saw = UP_MAIL_A UP_RCPT_B UP_RCPT_C,
};

/* ... even when the upstream (out of protocol) accepts those RCPTs. */
static const struct dialogue d_mail_refused_rcpt_accepted = {
    .o = {.rules = rules_mail_451_rcpt_250},
    .steps = {EHLO_OK,
              SEND(MAIL_A RCPT_B RCPT_C "DATA\r\n", "451 4.3.0|503 5.5.1|503 5.5.1|503 5.5.1")},
    .up_saw = UP_MAIL_A UP_RCPT_B UP_RCPT_C,
};

static const struct dialogue d_rcpt_refused_one = {
    .o = {.rules = rules_rcpt_bad},
    .steps = {EHLO_OK,
              SEND(MAIL_A "RCPT TO:<bad@x.test>\r\n" RCPT_B "DATA\r\n",
                   "250 2.1.0|550 5.1.1 <bad@x.test>: Recipient address rejected|250 2.1.5|354 "),
              SEND("Subject: t\r\n\r\nx\r\n.\r\n", "250 2.0.0")},
    .up_saw = UP_MAIL_A "RCPT TO:<bad@x.test>\n" UP_RCPT_B "DATA\nSubject: t\n\nx\n.\n",
};

static const struct dialogue d_rcpt_refused_all = {
    .o = {.rules = rules_rcpt_bad},
    .steps = {EHLO_OK,
              SEND(MAIL_A "RCPT TO:<bad@x.test>\r\nRCPT TO:<bad2@x.test>\r\nDATA\r\n",
                   "250 2.1.0|550 5.1.1|550 5.1.1|554 5.5.1 Error: no valid recipients"),
              /* the transaction is still open: a good RCPT makes DATA work */
              SEND(RCPT_B "DATA\r\n", "250 2.1.5|354 "), SEND(".\r\n", "250 2.0.0")},
    .up_saw = UP_MAIL_A "RCPT TO:<bad@x.test>\nRCPT TO:<bad2@x.test>\n" UP_RCPT_B "DATA\n.\n",
};

/* Dot-stuffing both ways: the client's "..x" is ".x" in the message and
 * "..x" again on the wire to the upstream; the message arrives in two
 * writes; exactly one final reply. */
static const struct dialogue d_dot_stuffing = {
    .o = {.rules = rules_queued},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B, "250 2.1.0|250 2.1.5"),
              SEND("DATA\r\n", "354 End data with <CR><LF>.<CR><LF>"),
              SEND("Subject: dots\r\n\r\n..x\r\n...\r\nx.\r\n.. y\r\n", NULL),
              SEND("..\r\n.\r\n", "250 2.0.0 Ok: queued as ABC123"),
              SEND("NOOP\r\n", "250 2.0.0 Ok")},
    .up_saw = UP_MAIL_A UP_RCPT_B "DATA\nSubject: dots\n\n..x\n...\nx.\n.. y\n..\n.\n",
    .up_body = "Subject: dots\n\n.x\n..\nx.\n. y\n.\n",
};

/* BDAT (RFC 3030): chunks pipelined with their bytes, one of them a single
 * byte (half a CR LF), and an empty LAST; the content's dots and its
 * ".\r\n" lines are text, stuffed on the way to an upstream without
 * CHUNKING. One 250 per chunk with its size, then the upstream's reply. */
static const struct dialogue d_bdat_chunks = {
    .o = {.rules = rules_queued},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B, "250 2.1.0|250 2.1.5"),
              SEND("BDAT 16\r\nSubject: dots\r\n\rBDAT 1\r\n\nBDAT 13\r\n.x\r\n.\r\nQUIT\r\n"
                   "BDAT 0 LAST\r\n",
                   "250 2.0.0 16 octets received|250 2.0.0 1 octets received|"
                   "250 2.0.0 13 octets received|250 2.0.0 Ok: queued as ABC123"),
              SEND("NOOP\r\n", "250 2.0.0 Ok")},
    .up_saw = UP_MAIL_A UP_RCPT_B "DATA\nSubject: dots\n\n..x\n..\nQUIT\n.\n",
    .up_body = "Subject: dots\n\n.x\n.\nQUIT\n",
};

/* Out of place, a BDAT's bytes are read all the same (here they would be
 * commands); DATA and MAIL between chunks are refused; RSET drops the
 * chunks and the upstream's transaction. */
static const struct dialogue d_bdat_sequence = {
    .steps = {EHLO_OK, SEND("BDAT 6\r\nQUIT\r\n", "503 5.5.1 Error: need MAIL command"),
              SEND(MAIL_A, "250 2.1.0"), SEND("BDAT 6 LAST\r\nQUIT\r\n", "554 5.5.1"),
              SEND(RCPT_B, "250 2.1.5"), SEND("BDAT 4\r\nSubj", "250 2.0.0 4 octets"),
              SEND("DATA\r\n", "503 5.5.1 Error: BDAT transaction in progress"),
              SEND(MAIL_A, "503 5.5.1"), SEND("RSET\r\n", "250 2.0.0"),
              SEND("BDAT 1 LAST\r\nx", "503 5.5.1"), SEND("BDAT x\r\n", "501 5.5.4"),
              SEND("NOOP\r\n", "250 2.0.0")},
    .up_saw = UP_MAIL_A UP_RCPT_B "RSET\n",
};

/* A bare LF in a chunk under bare_newline = reject: the chunk that holds it
 * is answered with DATA's 550 at once, and so is the rest of the message. */
static const struct dialogue d_bdat_bare_lf = {
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B, "250|250"),
              SEND("BDAT 5\r\nab\ncdBDAT 2 LAST\r\n\r\n",
                   "550 5.5.2 Error: bare <CR> or <LF>|550 5.5.2 Error: bare <CR> or <LF>"),
              SEND(MAIL_A, "250 2.1.0")},
    .up_saw = UP_MAIL_A UP_RCPT_B "RSET\n" UP_MAIL_A "RSET\n",
};

static const struct dialogue d_final_reply_relayed = {
    .o = {.rules = rules_final_554},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B "DATA\r\n", "250|250|354"),
              SEND("Subject: t\r\n\r\nx\r\n.\r\n", "554 5.7.1 Message refused: spam"),
              /* the transaction is over: a new one starts clean */
              SEND(MAIL_A, "250 2.1.0")},
    .up_saw = UP_MAIL_A UP_RCPT_B "DATA\nSubject: t\n\nx\n.\n" UP_MAIL_A "RSET\n",
};

static const struct dialogue d_upstream_refuses_data = {
    .o = {.rules = rules_data_451},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B "DATA\r\n", "250|250|354"),
              SEND("Subject: t\r\n\r\nx\r\n.\r\n", "451 4.3.0 Not now")},
    /* DATA refused: the upstream's transaction is still open; reset it */
    .up_saw = UP_MAIL_A UP_RCPT_B "DATA\nRSET\n",
};

static const struct dialogue d_data_bare_lf = {
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B "DATA\r\n", "250|250|354"),
              SEND("Subject: t\r\n\r\nbare\nlf\r\n.\r\n", "550 5.5.2")},
    /* never forwarded; the upstream transaction is reset */
    .up_saw = UP_MAIL_A UP_RCPT_B "RSET\n",
};

/* The upstream drops the connection after MAIL: one 451 4.4.2 per command,
 * DATA then has no transaction; the next MAIL opens a new connection. */
static const struct dialogue d_upstream_lost_after_mail = {
    .o = {.rules = rules_lost_after_mail},
    .steps = {EHLO_OK,
              SEND(MAIL_A RCPT_B RCPT_C "DATA\r\n",
                   "451 4.4.2 Connection to upstream server lost|451 4.4.2|451 4.4.2|503 5.5.1"),
              SEND(MAIL_A RCPT_B, "250 2.1.0|250 2.1.5")},
    .up_order = ">" UP_MAIL_A "#close\n>" UP_MAIL_A ">" UP_RCPT_B ">RSET\n",
};

static const struct dialogue d_upstream_lost_at_dot = {
    .o = {.rules = rules_lost_at_dot},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B "DATA\r\n", "250|250|354"),
              SEND("Subject: t\r\n\r\nx\r\n.\r\n", "451 4.4.2"), SEND("NOOP\r\n", "250 2.0.0")},
    .up_saw = UP_MAIL_A UP_RCPT_B "DATA\nSubject: t\n\nx\n.\n",
};

static const struct dialogue d_upstream_timeout = {
    .o = {.rules = rules_rcpt_silent, .upstream_cfg = "command_timeout = 300ms\n"},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B, "250 2.1.0|451 4.4.2 Upstream server timed out"),
              /* the upstream is gone: a further RCPT fails too, DATA has nobody */
              SEND(RCPT_C, "451 4.4.2"), SEND("DATA\r\n", "554 5.5.1"),
              SEND("RSET\r\n" MAIL_A RCPT_B, "250 2.0.0|250 2.1.0|250 2.1.5")},
    .up_saw = UP_MAIL_A UP_RCPT_B UP_MAIL_A UP_RCPT_B "RSET\n",
    .min_ms = 250,
};

static const struct dialogue d_upstream_out_of_protocol = {
    .o = {.rules = rules_rcpt_252},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B, "250 2.1.0|451 4.4.0 Upstream protocol error")},
    .rx_lacks = "252",
};

static const struct dialogue d_upstream_unreachable = {
    .o = {.upstream_down = true},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B, "451 4.4.1 Upstream server unavailable|503 5.5.1"),
              SEND(MAIL_A, "451 4.4.1")},
};

static const struct dialogue d_rset_mid_transaction = {
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B, "250 2.1.0|250 2.1.5"), SEND("RSET\r\n", "250 2.0.0 Ok"),
              SEND(RCPT_C, "503 5.5.1"), SEND(MAIL_A RCPT_C "DATA\r\n", "250 2.1.0|250 2.1.5|354"),
              SEND(".\r\n", "250 2.0.0")},
    .up_saw = UP_MAIL_A UP_RCPT_B "RSET\n" UP_MAIL_A UP_RCPT_C "DATA\n.\n",
};

static const struct dialogue d_quit = {
    .steps = {EHLO_OK, SEND(MAIL_A, "250 2.1.0"), SEND_EOF("QUIT\r\n", "221 2.0.0 Bye")},
    .up_saw = UP_MAIL_A "RSET\n",
};

static const struct dialogue d_max_errors = {
    .o = {.server_cfg = "max_errors = 3\n"},
    .steps = {SEND("FROB\r\n", "500 5.5.1"), SEND("HELO\r\n", "501 5.5.4"),
              SEND_EOF("EXPN x\r\n", "502 5.5.1|421 4.7.0 sluice.test Error: too many errors")},
};

static const struct dialogue d_max_errors_pipelined = {
    .o = {.server_cfg = "max_errors = 3\n"},
    .steps = {SEND_EOF("FROB\r\nFROB\r\nFROB\r\nNOOP\r\nNOOP\r\n",
                       "500 5.5.1|500 5.5.1|500 5.5.1|421 4.7.0")},
};

static const struct dialogue d_command_timeout = {
    .o = {.server_cfg = "command_timeout = 300ms\n"},
    .steps = {EHLO_OK, WAIT_EOF("421 4.4.2 sluice.test Error: timeout exceeded")},
    .min_ms = 250,
};

static const struct dialogue d_command_timeout_in_tx = {
    .o = {.server_cfg = "command_timeout = 300ms\n"},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B, "250 2.1.0|250 2.1.5"), WAIT_EOF("421 4.4.2")},
    .up_saw = UP_MAIL_A UP_RCPT_B "RSET\n",
    .min_ms = 250,
};

static const struct dialogue d_greeting_timeout = {
    .o = {.server_cfg = "greeting_timeout = 300ms\n"},
    .steps = {WAIT_EOF("421 4.4.2")},
    .min_ms = 250,
};

static const struct fu_rule rules_rcpt_slow[] = {
    {"RCPT", "250 2.1.5 Ok", FU_REPLY, 700, false},
    {NULL, NULL, 0, 0, false},
};

/* The client waits for replies the session owes it (the upstream is slow
 * to answer RCPT, within its own timeout): that is not the client being
 * idle, so command_timeout must not end the session. */
static const struct dialogue d_slow_upstream_is_not_client_timeout = {
    .o = {.rules = rules_rcpt_slow, .server_cfg = "command_timeout = 300ms\n"},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B, "250 2.1.0|250 2.1.5")},
    .up_saw = UP_MAIL_A UP_RCPT_B "RSET\n",
    .min_ms = 650,
};

static const struct fu_rule rules_rcpt_421[] = {
    {"RCPT", "421 4.3.2 Shutting down", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};

/* An upstream 421 is relayed, and a 421 ends the client's session too:
 * nothing follows it, not even the reply to a NOOP pipelined behind. */
static const struct dialogue d_upstream_421 = {
    .o = {.rules = rules_rcpt_421},
    .steps = {EHLO_OK, SEND_EOF(MAIL_A RCPT_B "NOOP\r\n", "250 2.1.0|421 4.3.2 Shutting down")},
};

#define EHLO_XCLIENT                                                                               \
    "250-fake.test\n250-PIPELINING\n250-XCLIENT ADDR PORT NAME PROTO HELO\n"                       \
    "250 ENHANCEDSTATUSCODES"
static const struct fu_rule rules_xclient[] = {
    {"EHLO", EHLO_XCLIENT, FU_REPLY, 0, false},
    {"XCLIENT", "220 fake.test ESMTP", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};
static const struct fu_rule rules_xclient_refused[] = {
    {"EHLO", EHLO_XCLIENT, FU_REPLY, 0, false},
    {"XCLIENT", "550 5.7.1 Client host rejected", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};

/* The upstream learns who the client is before the first MAIL. */
static const struct dialogue d_xclient = {
    .o = {.rules = rules_xclient},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B "DATA\r\n", "250 2.1.0|250 2.1.5|354"),
              SEND(".\r\n" MAIL_A, "250 2.0.0|250 2.1.0")},
    .up_order = ">XCLIENT ADDR=127.0.0.1 PORT=*\n>EHLO c.test\n>" UP_MAIL_A ">" UP_RCPT_B
                ">DATA\n>.\n>" UP_MAIL_A ">RSET\n",
};

/* The upstream refuses XCLIENT for good (sluice not authorized there):
 * about sluice, not the client, so MAIL is tempfailed, never bounced; the
 * RCPT behind it has no transaction. */
static const struct dialogue d_xclient_refused = {
    .o = {.rules = rules_xclient_refused},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B, "451 4.4.0|503 5.5.1")},
    .up_order = ">XCLIENT ADDR=127.0.0.1 PORT=*\n",
    .up_lacks = ">MAIL",
};

/* connect = connect: the upstream is opened with the client; a MAIL
 * pipelined right behind EHLO waits for it. */
static const struct dialogue d_connect_at_connect = {
    .o = {.upstream_cfg = "connect = connect\n"},
    .steps = {SEND("EHLO c.test\r\n" MAIL_A RCPT_B "DATA\r\n",
                   "250-sluice.test|250 2.1.0|250 2.1.5|354"),
              SEND("Subject: t\r\n\r\nx\r\n.\r\n", "250 2.0.0")},
    .up_saw = UP_MAIL_A UP_RCPT_B "DATA\nSubject: t\n\nx\n.\n",
};

static const struct dialogue d_connect_at_connect_down = {
    .o = {.upstream_cfg = "connect = connect\n", .upstream_down = true},
    .steps = {EHLO_OK, SEND(MAIL_A, "451 4.4.1"), SEND(MAIL_A, "451 4.4.1")},
};

#define L70 "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
static const struct dialogue d_message_too_large = {
    .o = {.server_cfg = "max_message_size = 1k\n"},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B "DATA\r\n", "250|250|354"),
              SEND("Subject: big\r\n\r\n" L70 L70 L70 L70 L70 L70 L70 L70 L70 L70 L70 L70 L70 L70
                       L70 L70 ".\r\n",
                   "552 5.3.4 Error: message too large"),
              SEND(MAIL_A, "250 2.1.0")},
    .up_saw = UP_MAIL_A UP_RCPT_B "RSET\n" UP_MAIL_A "RSET\n",
    .up_lacks = ">DATA",
};

/* Replies the session gives itself (a syntax error, NOOP) queue behind
 * the upstream's late ones: the client reads them in command order. */
static const struct dialogue d_mixed_local_and_upstream_replies = {
    .o = {.rules = rules_slow_tx},
    .steps = {EHLO_OK,
              SEND(MAIL_A "NOOP\r\nRCPT TO:<no-brackets@x.test\r\n" RCPT_B "RCPT TO:<>\r\n" RCPT_C
                          "DATA\r\n",
                   "250 2.1.0 Ok|250 2.0.0 Ok|501 5.1.3|250 2.1.5 Ok|501 5.1.3|250 2.1.5 Ok|354"),
              SEND(".\r\n", "250 2.0.0")},
    .up_saw = UP_MAIL_A UP_RCPT_B UP_RCPT_C "DATA\n.\n",
};

static const struct dialogue d_max_recipients = {
    .o = {.server_cfg = "max_recipients = 2\n"},
    .steps = {EHLO_OK,
              SEND(MAIL_A RCPT_B RCPT_C "RCPT TO:<d@x.test>\r\nDATA\r\n",
                   "250 2.1.0|250 2.1.5|250 2.1.5|452 4.5.3 Error: too many recipients|354"),
              SEND(".\r\n", "250 2.0.0")},
    .up_saw = UP_MAIL_A UP_RCPT_B UP_RCPT_C "DATA\n.\n",
};

static const struct fu_rule rules_replies_as_written[] = {
    {"RCPT TO:<multi", "550-5.1.1 first line\n550-5.1.1 second line\n550 5.1.1 last line", FU_REPLY,
     0, false},
    {"RCPT TO:<plain", "250 Ok", FU_REPLY, 0, false},
    {"RCPT TO:<temp", "450 Mailbox busy", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};

/* Upstream replies keep their lines; a missing enhanced code is added
 * (sluice offers ENHANCEDSTATUSCODES). */
static const struct dialogue d_upstream_replies_relayed = {
    .o = {.rules = rules_replies_as_written},
    .steps = {EHLO_OK, SEND(MAIL_A "RCPT TO:<multi@x.test>\r\nRCPT TO:<plain@x.test>\r\n"
                                   "RCPT TO:<temp@x.test>\r\n",
                            "250 2.1.0|550-5.1.1 first line\r\n550-5.1.1 second line\r\n"
                            "550 5.1.1 last line\r\n|250 2.0.0 Ok\r\n|450 4.0.0 Mailbox busy\r\n")},
};

static const struct fu_rule rules_close_after_message[] = {
    {".", "250 2.0.0 Ok: queued as ONE", FU_REPLY_CLOSE, 0, true},
    {NULL, NULL, 0, 0, false},
};

/* The upstream drops its connection between two transactions (its idle
 * timeout): the next MAIL opens a new one, the client notices nothing. */
static const struct dialogue d_upstream_gone_between_transactions = {
    .o = {.rules = rules_close_after_message},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B "DATA\r\n", "250|250|354"),
              SEND(".\r\n", "250 2.0.0 Ok: queued as ONE"),
              PAUSE_SEND(100, MAIL_A RCPT_C "DATA\r\n", "250 2.1.0|250 2.1.5|354"),
              SEND(".\r\n", "250 2.0.0 Ok: queued as FAKE")},
    .up_saw = UP_MAIL_A UP_RCPT_B "DATA\n.\n" UP_MAIL_A UP_RCPT_C "DATA\n.\n",
};

#define EHLO_XFORWARD                                                                              \
    "250-fake.test\n250-PIPELINING\n250-XFORWARD NAME ADDR PROTO HELO\n"                           \
    "250 ENHANCEDSTATUSCODES"
static const struct fu_rule rules_xforward[] = {
    {"EHLO", EHLO_XFORWARD, FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};

/* XFORWARD goes before every transaction's MAIL. */
static const struct dialogue d_xforward = {
    .o = {.rules = rules_xforward},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B "RSET\r\n", "250 2.1.0|250 2.1.5|250 2.0.0"),
              SEND(MAIL_A, "250 2.1.0")},
    .up_order =
        ">XFORWARD ADDR=127.0.0.1 PROTO=*\n NAME=[UNAVAILABLE] HELO=c.test\n>" UP_MAIL_A
        ">" UP_RCPT_B
        ">RSET\n>XFORWARD ADDR=127.0.0.1 PROTO=*\n NAME=[UNAVAILABLE] HELO=c.test\n>" UP_MAIL_A,
};

static const struct fu_rule rules_7bit_upstream[] = {
    {"EHLO", "250-fake.test\n250-PIPELINING\n250 ENHANCEDSTATUSCODES", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};

/* An upstream without 8BITMIME gets 8-bit text converted, and no BODY=. */
static const struct dialogue d_8bit_downgraded = {
    .o = {.rules = rules_7bit_upstream},
    .steps = {EHLO_OK,
              SEND("MAIL FROM:<a@x.test> BODY=8BITMIME\r\n" RCPT_B "DATA\r\n", "250|250|354"),
              SEND("Subject: t\r\nMIME-Version: 1.0\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\n\r\ncaf\xc3\xa9\r\n.\r\n",
                   "250 2.0.0")},
    .up_saw = UP_MAIL_A UP_RCPT_B "DATA\nSubject: t\nMIME-Version: 1.0\n"
                                  "Content-Type: text/plain; charset=utf-8\n"
                                  "Content-Transfer-Encoding: quoted-printable\n\ncaf=C3=A9\n.\n",
    .up_lacks = "\xc3",
};

static const struct fu_rule rules_lost_after_rcpt[] = {
    {"RCPT", "250 2.1.5 Ok", FU_REPLY_CLOSE, 0, true},
    {NULL, NULL, 0, 0, false},
};

/* The upstream accepted the recipient and then went away: DATA is still
 * local (354), the end of data gets one 451 4.4.2, the session goes on. */
static const struct dialogue d_upstream_lost_before_data = {
    .o = {.rules = rules_lost_after_rcpt},
    .steps = {EHLO_OK, SEND(MAIL_A RCPT_B, "250 2.1.0|250 2.1.5"),
              PAUSE_SEND(50, "DATA\r\n", "354"),
              SEND("Subject: t\r\n\r\nx\r\n.\r\nNOOP\r\n",
                   "451 4.4.2 Connection to upstream server lost|250 2.0.0"),
              SEND(MAIL_A RCPT_B, "250 2.1.0|250 2.1.5")},
    .up_saw = UP_MAIL_A UP_RCPT_B UP_MAIL_A UP_RCPT_B "RSET\n",
};

/* ==== the per-state table ================================================== */

/* Every verb in every command state: the reply a client gets. The states
 * are reached by: nothing (greeted), EHLO (helo), + MAIL (mail), + RCPT
 * (rcpt). */

/* ---- SMTP AUTH against the fake Dovecot (auth_plaintext: no TLS here) ---- */

#define EHLO_XCLIENT_LOGIN                                                                         \
    "250-fake.test\n250-PIPELINING\n250-XCLIENT ADDR PORT NAME PROTO HELO LOGIN\n"                 \
    "250 ENHANCEDSTATUSCODES"
static const struct fu_rule rules_xclient_login[] = {
    {"EHLO", EHLO_XCLIENT_LOGIN, FU_REPLY, 0, false},
    {"XCLIENT", "220 fake.test ESMTP", FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};
#define AUTH_ALICE "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n" /* \0alice\0secret */
#define AUTH_WRONG "AUTH PLAIN AGFsaWNlAHdyb25n\r\n"     /* \0alice\0wrong */

/* PLAIN with its initial response: 235, offered in EHLO, the name goes
 * upstream as XCLIENT LOGIN=; Dovecot is told the client's address, the
 * session, and never asked for no-penalty; no TLS, so not "secured". */
static const struct dialogue d_auth_plain_ir = {
    .o = {.rules = rules_xclient_login, .auth = AUTH_ON},
    .steps = {EHLO_OK, SEND(AUTH_ALICE, "235 2.7.0 Authentication successful"),
              SEND(AUTH_ALICE, "503 5.5.1 Error: already authenticated"),
              SEND(MAIL_A RCPT_B "DATA\r\n", "250 2.1.0|250 2.1.5|354"), SEND(".\r\n", "250")},
    .rx_has = "250-AUTH PLAIN LOGIN\r\n",
    .up_has = " HELO=c.test LOGIN=alice\n",
    .dv_has = "\tservice=smtp\tsession=",
    .dv_lacks = "penalty",
    .up_order = ">XCLIENT ADDR=127.0.0.1 PORT=*\n>" UP_MAIL_A,
};

/* PLAIN without it: an empty 334, the response on its own line; Dovecot's
 * canonical name (bob, not Bob) is the one passed on. */
static const struct dialogue d_auth_plain_continued = {
    .o = {.rules = rules_xclient_login, .auth = AUTH_ON},
    .steps = {EHLO_OK, SEND("AUTH PLAIN\r\n", "334 \r\n"),
              SEND("AEJvYgBodW50ZXIy\r\n", "235 2.7.0"), SEND(MAIL_A, "250 2.1.0")},
    .up_has = " LOGIN=bob\n",
    .dv_has = "\trip=127.0.0.1\t",
};

/* LOGIN: Username: and Password: prompts; with the user name as initial
 * response only the second. */
static const struct dialogue d_auth_login = {
    .o = {.auth = AUTH_ON},
    .steps = {EHLO_OK, SEND("AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n"),
              SEND("YWxpY2U=\r\n", "334 UGFzc3dvcmQ6\r\n"), SEND("d3Jvbmc=\r\n", "535 5.7.8"),
              SEND("AUTH LOGIN YWxpY2U=\r\n", "334 UGFzc3dvcmQ6\r\n"),
              SEND("c2VjcmV0\r\n", "235 2.7.0")},
};

/* "*" cancels at any prompt (501 5.0.0); malformed ones get 501/504. */
static const struct dialogue d_auth_cancel_and_syntax = {
    .o = {.auth = AUTH_ON},
    .steps = {EHLO_OK, SEND("AUTH PLAIN\r\n*\r\n", "334 |501 5.0.0 Authentication cancelled"),
              SEND("AUTH LOGIN\r\n", "334 VXNlcm5hbWU6"),
              SEND("YWxpY2U=\r\n*\r\n", "334 UGFzc3dvcmQ6|501 5.0.0"),
              SEND("AUTH CRAM-MD5\r\n", "504 5.5.4 Unrecognized authentication type"),
              SEND("AUTH\r\nAUTH PLAIN !!!!\r\nAUTH PLAIN =\r\n", "501 5.5.4|501 5.5.2|501 5.5.2"),
              SEND("AUTH PLAIN\r\n", "334 "), SEND("not base64\r\n", "501 5.5.2"),
              SEND("NOOP\r\n", "250 2.0.0")},
    .dv_lacks = "AUTH",
};

/* Before EHLO and inside a transaction: 503. */
static const struct dialogue d_auth_sequence = {
    .o = {.auth = AUTH_ON},
    .steps = {SEND(AUTH_ALICE, "503 5.5.1 Error: send EHLO first"), EHLO_OK,
              SEND(MAIL_A, "250 2.1.0"),
              SEND(AUTH_ALICE, "503 5.5.1 Error: AUTH not permitted during a mail transaction"),
              SEND("RSET\r\n", "250 2.0.0"), SEND(AUTH_ALICE, "235 2.7.0")},
};

/* require_auth: 530 before AUTH for mail commands, not for NOOP; the MAIL
 * pipelined after AUTH PLAIN (RFC 4954 §4 allows it) waits for the answer. */
static const struct dialogue d_auth_required = {
    .o = {.auth = AUTH_ON, .server_cfg = "require_auth = yes\n"},
    .steps = {EHLO_OK,
              SEND(MAIL_A RCPT_B "NOOP\r\n",
                   "530 5.7.0 Authentication required|530 5.7.0|250 2.0.0"),
              SEND(AUTH_ALICE MAIL_A RCPT_B, "235 2.7.0|250 2.1.0|250 2.1.5")},
    .up_order = ">" UP_MAIL_A ">" UP_RCPT_B,
};

/* auth_max_failures: the last 535 is followed by 421 and the close. */
static const struct dialogue d_auth_max_failures = {
    .o = {.auth = AUTH_ON, .server_cfg = "auth_max_failures = 2\n"},
    .steps = {EHLO_OK, SEND(AUTH_WRONG, "535 5.7.8 Authentication credentials invalid"),
              SEND_EOF(AUTH_WRONG, "535 5.7.8|421 4.7.0")},
};

/* Dovecot unreachable: 454, and the session goes on. */
static const struct dialogue d_auth_dovecot_down = {
    .o = {.auth = AUTH_DV_DOWN},
    .steps = {EHLO_OK, SEND(AUTH_ALICE, "454 4.7.0 Temporary authentication failure"),
              SEND("NOOP\r\n", "250 2.0.0")},
};

/* AUTH= on MAIL is accepted and never forwarded (RFC 4954 §5: sluice
 * cannot vouch for it upstream; the login goes as XCLIENT LOGIN=). */
static const struct dialogue d_auth_mail_param = {
    .o = {.rules = rules_xclient_login, .auth = AUTH_ON},
    .steps = {EHLO_OK, SEND("MAIL FROM:<a@x.test> AUTH=<>\r\n", "250 2.1.0"),
              SEND("RSET\r\n", "250 2.0.0"), SEND(AUTH_ALICE, "235 2.7.0"),
              SEND("MAIL FROM:<a@x.test> AUTH=forged+40x.test\r\n", "250 2.1.0")},
    .up_lacks = "AUTH=",
    .up_has = "LOGIN=alice",
};

struct verb_case {
    const char *line;
    const char *want[4]; /* greeted, helo, mail, rcpt */
};

static const struct verb_case verb_cases[] = {
    {"EHLO c2.test", {"250-sluice.test", "250-sluice.test", "250-sluice.test", "250-sluice.test"}},
    {"HELO c2.test",
     {"250 2.0.0 sluice.test", "250 2.0.0 sluice.test", "250 2.0.0 sluice.test",
      "250 2.0.0 sluice.test"}},
    {"MAIL FROM:<z@x.test>", {"503 5.5.1", "250 2.1.0", "503 5.5.1", "503 5.5.1"}},
    {"RCPT TO:<y@x.test>", {"503 5.5.1", "503 5.5.1", "250 2.1.5", "250 2.1.5"}},
    {"DATA", {"503 5.5.1", "503 5.5.1", "554 5.5.1", "354 "}},
    {"RSET", {"250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"}},
    {"NOOP", {"250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"}},
    {"QUIT", {"221 2.0.0", "221 2.0.0", "221 2.0.0", "221 2.0.0"}},
    {"HELP", {"214 2.0.0", "214 2.0.0", "214 2.0.0", "214 2.0.0"}},
    {"VRFY postmaster", {"252 2.1.5", "252 2.1.5", "252 2.1.5", "252 2.1.5"}},
    {"STARTTLS", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}},
    {"EXPN staff", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}},
    {"AUTH PLAIN", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}},
    /* Not offered before EHLO; then its (empty) chunk is read and judged. */
    {"BDAT 0 LAST", {"502 5.5.1", "503 5.5.1", "554 5.5.1", "250 "}},
    {"ETRN x.test", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}},
    {"TURN", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}},
    {"XCLIENT ADDR=192.0.2.1", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}},
    {"XFORWARD ADDR=192.0.2.1", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}},
    {"FROB", {"500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1"}},
};

static void test_verbs_per_state(void **state)
{
    (void)state;
    static const char *const reach[4] = {NULL, "EHLO c.test\r\n", MAIL_A, RCPT_B};
    struct h *h = g_h;
    struct opts o = {0};
    h_start(h, &o);
    struct cli *c = &h->cli[0];
    for (size_t v = 0; v < sizeof verb_cases / sizeof verb_cases[0]; v++) {
        for (int st = 0; st < 4; st++) {
            open_client(h, c);
            size_t n = 1;
            for (int i = 1; i <= st; i++) {
                cli_send(c, reach[i], strlen(reach[i]));
                wait_replies(h, c, ++n);
                check_reply(h, c, n - 1, "2", 1);
            }
            char line[128];
            snprintf(line, sizeof line, "%s\r\n", verb_cases[v].line);
            cli_send(c, line, strlen(line));
            wait_replies(h, c, n + 1);
            const char *want = verb_cases[v].want[st];
            if (strncmp(c->replies[n], want, strlen(want)) != 0) {
                h_dump(h, c);
                fail_msg("%s in state %d: want \"%s\", got \"%s\"", verb_cases[v].line, st, want,
                         c->replies[n]);
            }
            if (!strcmp(verb_cases[v].line, "QUIT"))
                wait_eof(h, c);
            /* Whatever the state, a client that goes away ends the session. */
            cli_close(c);
            wait_idle(h);
            assert_int_equal(c->nreplies, n + 1);
        }
    }
    h_stop(h);
}

/* ==== teardown in every wait =============================================== */

static const struct fu_rule rules_slow_all[] = {
    {"MAIL", "250 2.1.0 Ok", FU_REPLY, 200, false},
    {".", "250 2.0.0 Ok", FU_REPLY, 200, false},
    {NULL, NULL, 0, 0, false},
};

/* The client disconnects while the session waits: for the upstream to
 * open, for a MAIL reply, in the middle of DATA, for the final reply. No
 * session leaks, nothing is used after free (run under ASan), and a
 * transaction left open upstream is reset. */
static void test_disconnect_while_waiting(void **state)
{
    (void)state;
    struct h *h = g_h;
    struct opts o = {.rules = rules_slow_all};
    h_start(h, &o);
    struct cli *c = &h->cli[0];
    static const struct {
        const char *script;
        const char *up_event; /* wait until the upstream shows this, or */
        size_t replies;       /* until the client has this many replies */
        bool reset;           /* the upstream transaction must be reset */
    } cases[] = {
        /* upstream opening */
        {"EHLO c.test\r\n" MAIL_A, NULL, 0, false},
        /* MAIL reply pending */
        {"EHLO c.test\r\n" MAIL_A RCPT_B, ">" UP_RCPT_B, 0, false},
        /* mid-DATA */
        {"EHLO c.test\r\n" MAIL_A RCPT_B "DATA\r\nSubject: t\r\n\r\npart", NULL, 5, true},
        /* final reply pending */
        {"EHLO c.test\r\n" MAIL_A RCPT_B "DATA\r\nSubject: t\r\n\r\nall\r\n.\r\n", ">.\n", 0,
         false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_reset(&h->fu.events);
        int nconns = h->fu.nconns;
        open_client(h, c);
        cli_send(c, cases[i].script, strlen(cases[i].script));
        bool ok = true;
        if (cases[i].up_event)
            ok = run_until(h, p_events, cases[i].up_event, WAIT_MS);
        else if (cases[i].replies)
            wait_replies(h, c, cases[i].replies);
        else
            ok = run_until(h, p_fu_accepted, &nconns, WAIT_MS);
        if (!ok) {
            h_dump(h, c);
            fail_msg("case %zu: the session never reached its wait", i);
        }
        cli_close(c);
        wait_idle(h);
        if (cases[i].reset)
            check_order(h, ">RSET\n");
    }
    /* The server still serves. */
    open_client(h, c);
    const char *last = "EHLO c.test\r\n" MAIL_A "QUIT\r\n";
    cli_send(c, last, strlen(last));
    wait_eof(h, c);
    assert_int_equal(c->nreplies, 4);
    check_reply(h, c, 2, "250 2.1.0", 9);
    check_reply(h, c, 3, "221", 3);
    cli_close(c);
    wait_idle(h);
    h_stop(h);
}

static bool p_dv_saw(struct h *h, const void *arg)
{
    return h->dv.seen.ptr && strstr(h->dv.seen.ptr, arg);
}

/* The client leaves while Dovecot has not answered (password "slow": the
 * fake never does), at a 334 prompt, and in the middle of a response line:
 * the request is cancelled, no callback reaches the freed session (ASan),
 * and the server goes on serving. */
static void test_auth_disconnect_while_waiting(void **state)
{
    (void)state;
    struct h *h = g_h;
    struct opts o = {.auth = AUTH_ON};
    h_start(h, &o);
    struct cli *c = &h->cli[0];
    static const char *const scripts[] = {
        "EHLO c.test\r\nAUTH PLAIN AGFsaWNlAHNsb3c=\r\n", /* \0alice\0slow */
        "EHLO c.test\r\nAUTH LOGIN\r\n",
        "EHLO c.test\r\nAUTH PLAIN\r\nAGFsaW",
    };
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        open_client(h, c);
        cli_send(c, scripts[i], strlen(scripts[i]));
        if (i == 0) {
            if (!run_until(h, p_dv_saw, "AGFsaWNlAHNsb3c=", WAIT_MS))
                fail_msg("Dovecot was never asked");
        } else {
            wait_replies(h, c, 3);
        }
        cli_close(c);
        wait_idle(h);
    }
    open_client(h, c);
    const char *last = "EHLO c.test\r\n" AUTH_ALICE "QUIT\r\n";
    cli_send(c, last, strlen(last));
    wait_eof(h, c);
    assert_int_equal(c->nreplies, 4);
    check_reply(h, c, 2, "235 2.7.0", 9);
    cli_close(c);
    wait_idle(h);
    h_stop(h);
}

/* ==== several clients at once =============================================== */

static bool p_all_done(struct h *h, const void *arg)
{
    (void)arg;
    for (int i = 0; i < NCLIENTS; i++)
        if (!h->cli[i].eof)
            return false;
    return true;
}

/* NCLIENTS sessions interleaved on the loop, each with its own upstream
 * connection: every client gets its own replies, every upstream connection
 * carries one client's transaction, and the count returns to 0. */
static void test_concurrent_sessions(void **state)
{
    (void)state;
    struct h *h = g_h;
    struct opts o = {.rules = rules_slow_tx};
    h_start(h, &o);
    for (int i = 0; i < NCLIENTS; i++)
        open_client(h, &h->cli[i]);
    assert_int_equal(h->srv.nconns, NCLIENTS);
    for (int i = 0; i < NCLIENTS; i++) {
        char msg[256];
        int n = snprintf(msg, sizeof msg,
                         "EHLO c%d.test\r\nMAIL FROM:<s%d@x.test>\r\nRCPT TO:<r%d@x.test>\r\n"
                         "DATA\r\nSubject: %d\r\n\r\nbody %d\r\n.\r\nQUIT\r\n",
                         i, i, i, i, i);
        cli_send(&h->cli[i], msg, (size_t)n);
    }
    if (!run_until(h, p_all_done, NULL, WAIT_MS)) {
        h_dump(h, &h->cli[0]);
        fail_msg("not every session ended");
    }
    for (int i = 0; i < NCLIENTS; i++) {
        struct cli *c = &h->cli[i];
        assert_int_equal(c->nreplies, 7);
        check_replies(h, c, 1, "250-sluice.test Hello c|250 2.1.0|250 2.1.5|354 |250 2.0.0|221");
        char want[32];
        snprintf(want, sizeof want, "Hello c%d.test", i);
        assert_non_null(strstr(c->replies[1], want));
        cli_close(c);
    }
    wait_idle(h);
    int sessions = 0;
    for (const struct fu_conn *fc = h->fu.conns; fc; fc = fc->next) {
        if (fu_conn_is_probe(fc))
            continue;
        sessions++;
        int who = -1;
        assert_int_equal(sscanf(fc->body.ptr ? fc->body.ptr : "", "Subject: %d", &who), 1);
        char want[256];
        snprintf(want, sizeof want,
                 "MAIL FROM:<s%d@x.test>\nRCPT TO:<r%d@x.test>\nDATA\nSubject: %d\n\nbody %d\n.\n",
                 who, who, who, who);
        buf_t t = BUF_INIT;
        fu_conn_script(fc, &t);
        assert_string_equal(t.ptr, want);
        buf_free(&t);
    }
    assert_int_equal(sessions, NCLIENTS);
    h_stop(h);
}

/* ==== upstream connections reused across sessions ========================== */

static bool p_no_sessions(struct h *h, const void *arg)
{
    (void)arg;
    return h->srv.nconns == 0;
}

static int count_session_conns(const struct h *h, int *open)
{
    int n = 0;
    *open = 0;
    for (const struct fu_conn *fc = h->fu.conns; fc; fc = fc->next) {
        if (fu_conn_is_probe(fc))
            continue;
        n++;
        *open += !fc->closing;
    }
    return n;
}

static void one_client(struct h *h, struct cli *c, const char *send, const char *want, bool wait)
{
    open_client(h, c);
    cli_send(c, send, strlen(send));
    size_t n = count_expect(want);
    wait_replies(h, c, 1 + n);
    check_replies(h, c, 1, want);
    if (wait)
        wait_eof(h, c);
    cli_close(c);
    if (!run_until(h, p_no_sessions, NULL, WAIT_MS))
        fail_msg("the session did not end");
    run_for(h, 50); /* the pool's RSET is answered before the next client */
}

/* One client session after another, each with its transaction, to an
 * upstream that takes XFORWARD: the second and third get the first one's
 * connection (RSET, then XFORWARD about their own client before each
 * transaction), not a new one; the idle connection is closed after
 * reuse_idle_timeout. */
#define FU_EHLO_XFORWARD                                                                           \
    "250-fake.test\n250-PIPELINING\n250-XFORWARD NAME ADDR PROTO HELO\n250 ENHANCEDSTATUSCODES"

static const struct fu_rule rules_xforward_only[] = {
    {"EHLO", FU_EHLO_XFORWARD, FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};

static void test_upstream_reuse(void **state)
{
    (void)state;
    struct h *h = g_h;
    struct opts o = {.rules = rules_xforward_only,
                     .reuse = true,
                     .upstream_cfg = "reuse_idle_timeout = 400ms\n"};
    h_start(h, &o);
    struct cli *c = &h->cli[0];
    one_client(h, c,
               "EHLO c.test\r\n" MAIL_A RCPT_B "DATA\r\nSubject: 1\r\n\r\none\r\n.\r\nQUIT\r\n",
               "250-sluice.test Hello c.test|250 2.1.0|250 2.1.5|354 |250 2.0.0|221", true);
    one_client(h, c,
               "EHLO d.test\r\n" MAIL_A RCPT_C "DATA\r\nSubject: 2\r\n\r\ntwo\r\n.\r\nQUIT\r\n",
               "250-sluice.test Hello d.test|250 2.1.0|250 2.1.5|354 |250 2.0.0|221", true);
    one_client(h, c,
               "HELO e.test\r\n" MAIL_A RCPT_B "DATA\r\nSubject: 3\r\n\r\nthree\r\n.\r\nQUIT\r\n",
               "250 2.0.0 sluice.test|250 2.1.0|250 2.1.5|354 |250 2.0.0|221", true);
    int open = 0;
    assert_int_equal(count_session_conns(h, &open), 1);
    assert_int_equal(open, 1);
    /* Each message's final reply ended its transaction at the MTA: the
     * next client's XFORWARD follows it directly, with no RSET between. */
    check_order(h, ">XFORWARD ADDR=127.0.0.1 PROTO=*\n NAME=[UNAVAILABLE] HELO=c.test\n"
                   ">MAIL FROM:<a@x.test>\n>RCPT TO:<b@x.test>\n>DATA\n>.\n"
                   "<250 2.0.0 Ok: queued as FAKE\n"
                   ">XFORWARD ADDR=127.0.0.1 PROTO=*\n NAME=[UNAVAILABLE] HELO=d.test\n"
                   ">MAIL FROM:<a@x.test>\n>RCPT TO:<c@x.test>\n>DATA\n>.\n"
                   "<250 2.0.0 Ok: queued as FAKE\n"
                   ">XFORWARD ADDR=127.0.0.1 PROTO=*\n NAME=[UNAVAILABLE] HELO=e.test\n"
                   ">MAIL FROM:<a@x.test>\n>RCPT TO:<b@x.test>\n");
    assert_null(strstr(h->fu.events.ptr, ">RSET"));
    /* Idle past reuse_idle_timeout: closed by sluice (politely). */
    run_for(h, 900);
    count_session_conns(h, &open);
    assert_int_equal(open, 0);
    check_order(h, ">.\n<250 2.0.0 Ok: queued as FAKE\n>QUIT\n");
    assert_null(strstr(h->fu.events.ptr, ">RSET"));
    wait_idle(h);
    h_stop(h);
}

/* After XCLIENT the MTA takes the connection as that client's for good
 * (Postfix refuses a second XCLIENT for an address outside its authorized
 * hosts and stops offering it): such a connection is never given to the
 * next client, whose mail would otherwise go out as the first client's
 * (with its login: an open relay). Each session gets its own connection
 * and its own XCLIENT. */
static void test_upstream_no_reuse_after_xclient(void **state)
{
    (void)state;
    struct h *h = g_h;
    struct opts o = {.rules = rules_xclient_login, .auth = AUTH_ON, .reuse = true};
    h_start(h, &o);
    struct cli *c = &h->cli[0];
    one_client(
        h, c,
        "EHLO c.test\r\n" AUTH_ALICE MAIL_A RCPT_B "DATA\r\nSubject: 1\r\n\r\none\r\n.\r\nQUIT\r\n",
        "250-sluice.test Hello c.test|235 2.7.0|250 2.1.0|250 2.1.5|354 |250 2.0.0|221", true);
    one_client(h, c,
               "EHLO d.test\r\n" MAIL_A RCPT_C "DATA\r\nSubject: 2\r\n\r\ntwo\r\n.\r\nQUIT\r\n",
               "250-sluice.test Hello d.test|250 2.1.0|250 2.1.5|354 |250 2.0.0|221", true);
    int open = 0;
    assert_int_equal(count_session_conns(h, &open), 2);
    assert_int_equal(open, 0);
    int n = 0;
    for (const struct fu_conn *fc = h->fu.conns; fc; fc = fc->next) {
        if (fu_conn_is_probe(fc))
            continue;
        buf_t t = BUF_INIT;
        fu_conn_script(fc, &t);
        /* every session's connection starts with its own XCLIENT */
        assert_true(t.ptr && !strncmp(t.ptr, "XCLIENT ADDR=127.0.0.1 ", 23));
        assert_non_null(strstr(t.ptr, n == 0 ? "HELO=c.test LOGIN=alice\n" : "HELO=d.test\n"));
        if (n == 1)
            assert_null(strstr(t.ptr, "alice"));
        buf_free(&t);
        n++;
    }
    wait_idle(h);
    h_stop(h);
}

/* In one session, a new EHLO name (or an AUTH) after XCLIENT was sent: the
 * MTA would refuse a second XCLIENT, so the next MAIL goes out on a new
 * connection that tells the new name; never under the old one. */
static void test_upstream_new_helo_new_connection(void **state)
{
    (void)state;
    struct h *h = g_h;
    struct opts o = {.rules = rules_xclient_login, .auth = AUTH_ON};
    h_start(h, &o);
    struct cli *c = &h->cli[0];
    one_client(h, c,
               "EHLO c.test\r\n" MAIL_A RCPT_B "DATA\r\nSubject: 1\r\n\r\none\r\n.\r\n"
               "EHLO d.test\r\n" MAIL_A RCPT_C "RSET\r\n" AUTH_ALICE MAIL_A "QUIT\r\n",
               "250-sluice.test Hello c.test|250 2.1.0|250 2.1.5|354 |250 2.0.0|"
               "250-sluice.test Hello d.test|250 2.1.0|250 2.1.5|250 2.0.0|235 2.7.0|250 2.1.0|221",
               true);
    int open = 0;
    assert_int_equal(count_session_conns(h, &open), 3);
    check_order(h, ">XCLIENT ADDR=127.0.0.1 PORT=*\n>EHLO c.test\n>MAIL FROM:<a@x.test>\n"
                   ">XCLIENT ADDR=127.0.0.1 PORT=*\n>EHLO d.test\n>MAIL FROM:<a@x.test>\n"
                   ">XCLIENT ADDR=127.0.0.1 PORT=*\n>EHLO d.test\n>MAIL FROM:<a@x.test>\n");
    assert_non_null(strstr(h->fu.events.ptr, " HELO=d.test LOGIN=alice\n"));
    wait_idle(h);
    h_stop(h);
}

/* A session whose commands the MTA refused and that delivered nothing
 * leaves its connection closed: the MTA's error count (Postfix:
 * smtpd_hard_error_limit, error sleeps) is per connection and would fall
 * on the next client. */
static void test_upstream_no_reuse_with_errors(void **state)
{
    (void)state;
    struct h *h = g_h;
    static const struct fu_rule rules[] = {
        {"RCPT TO:<b@", "550 5.1.1 <b@x.test>: Recipient address rejected", FU_REPLY, 0, false},
        {NULL, NULL, 0, 0, false},
    };
    struct opts o = {.rules = rules, .reuse = true};
    h_start(h, &o);
    struct cli *c = &h->cli[0];
    one_client(h, c, "EHLO c.test\r\n" MAIL_A RCPT_B "QUIT\r\n",
               "250-sluice.test|250 2.1.0|550 5.1.1|221", true);
    one_client(h, c,
               "EHLO c.test\r\n" MAIL_A RCPT_C "DATA\r\nSubject: 2\r\n\r\ntwo\r\n.\r\nQUIT\r\n",
               "250-sluice.test|250 2.1.0|250 2.1.5|354 |250 2.0.0|221", true);
    int open = 0;
    assert_int_equal(count_session_conns(h, &open), 2);
    assert_int_equal(open, 1); /* the second delivered: kept */
    h_stop(h);
}

/* A session that leaves in the middle of a transaction: the transaction
 * upstream is reset before anyone else gets the connection. */
static void test_upstream_reuse_after_abort(void **state)
{
    (void)state;
    struct h *h = g_h;
    struct opts o = {.rules = rules_xforward_only, .reuse = true};
    h_start(h, &o);
    struct cli *c = &h->cli[0];
    one_client(h, c, "EHLO c.test\r\n" MAIL_A RCPT_B, "250-sluice.test|250 2.1.0|250 2.1.5", false);
    one_client(h, c,
               "EHLO d.test\r\n" MAIL_A RCPT_C "DATA\r\nSubject: 2\r\n\r\ntwo\r\n.\r\nQUIT\r\n",
               "250-sluice.test|250 2.1.0|250 2.1.5|354 |250 2.0.0|221", true);
    int open = 0;
    assert_int_equal(count_session_conns(h, &open), 1);
    check_order(h, ">MAIL FROM:<a@x.test>\n>RCPT TO:<b@x.test>\n>RSET\n"
                   ">XFORWARD ADDR=127.0.0.1 PROTO=*\n NAME=[UNAVAILABLE] HELO=d.test\n"
                   ">MAIL FROM:<a@x.test>\n>RCPT TO:<c@x.test>\n>DATA\n");
    h_stop(h);
}

/* A MAIL sluice refuses itself once the upstream is open (over the
 * upstream's own SIZE) sends nothing ahead of it: no XFORWARD is left
 * waiting for a command that never goes, so the next MAIL has exactly one
 * in front, and the next client on the connection none of this one's. */
static const struct fu_rule rules_xforward_size[] = {
    {"EHLO",
     "250-fake.test\n250-PIPELINING\n250-SIZE 1000\n250-XFORWARD NAME ADDR PROTO HELO\n"
     "250 ENHANCEDSTATUSCODES",
     FU_REPLY, 0, false},
    {NULL, NULL, 0, 0, false},
};

static void test_xforward_not_left_behind_a_refused_mail(void **state)
{
    (void)state;
    struct h *h = g_h;
    struct opts o = {.rules = rules_xforward_size, .reuse = true};
    h_start(h, &o);
    struct cli *c = &h->cli[0];
    one_client(h, c, "EHLO c.test\r\nMAIL FROM:<a@x.test> SIZE=5000\r\n" MAIL_A "QUIT\r\n",
               "250-sluice.test Hello c.test|552 5.3.4|250 2.1.0|221", true);
    one_client(h, c, "EHLO d.test\r\nMAIL FROM:<a@x.test> SIZE=5000\r\nQUIT\r\n",
               "250-sluice.test Hello d.test|552 5.3.4|221", true);
    one_client(h, c, "EHLO e.test\r\n" MAIL_A "QUIT\r\n",
               "250-sluice.test Hello e.test|250 2.1.0|221", true);
    int open = 0;
    assert_int_equal(count_session_conns(h, &open), 1);
    const char *ev = h->fu.events.ptr;
    size_t n = 0;
    for (const char *p = ev; (p = strstr(p, ">XFORWARD")) != NULL; p++)
        n++;
    if (n != 2) {
        h_dump(h, NULL);
        fail_msg("%zu XFORWARD lines upstream, want 2 (one per MAIL sent)", n);
    }
    assert_null(strstr(ev, "HELO=d.test"));
    check_order(h, ">XFORWARD ADDR=127.0.0.1 PROTO=*\n NAME=[UNAVAILABLE] HELO=c.test\n"
                   ">MAIL FROM:<a@x.test>\n"
                   ">XFORWARD ADDR=127.0.0.1 PROTO=*\n NAME=[UNAVAILABLE] HELO=e.test\n"
                   ">MAIL FROM:<a@x.test>\n");
    h_stop(h);
}

/* A session that leaves while its MAIL is still unanswered: the session
 * has nothing to reset (its MAIL was never accepted), so the pool's own
 * RSET must end that transaction before the next client's XFORWARD and
 * MAIL (the fake MTA answers a nested MAIL with 503). */
static const struct fu_rule rules_slow_second_mail[] = {
    {"EHLO", FU_EHLO_XFORWARD, FU_REPLY, 0, false},
    {"MAIL", "250 2.1.0 Ok", FU_REPLY, 0, true},
    {"MAIL", "250 2.1.0 Ok", FU_REPLY, 300, true},
    {NULL, NULL, 0, 0, false},
};

static void test_upstream_pool_resets_unanswered_mail(void **state)
{
    (void)state;
    struct h *h = g_h;
    struct opts o = {.rules = rules_slow_second_mail, .reuse = true};
    h_start(h, &o);
    struct cli *c = &h->cli[0];
    one_client(h, c,
               "EHLO c.test\r\n" MAIL_A RCPT_B "DATA\r\nSubject: 1\r\n\r\none\r\n.\r\nQUIT\r\n",
               "250-sluice.test Hello c.test|250 2.1.0|250 2.1.5|354 |250 2.0.0|221", true);
    open_client(h, c);
    const char *two = "EHLO d.test\r\n" MAIL_A;
    cli_send(c, two, strlen(two));
    wait_replies(h, c, 2); /* the greeting and the EHLO reply; MAIL's is late */
    cli_close(c);
    if (!run_until(h, p_no_sessions, NULL, WAIT_MS))
        fail_msg("the session did not end");
    run_for(h, 500); /* the late 250 and the pool's RSET */
    one_client(h, c,
               "EHLO e.test\r\n" MAIL_A RCPT_C "DATA\r\nSubject: 3\r\n\r\nthree\r\n.\r\nQUIT\r\n",
               "250-sluice.test Hello e.test|250 2.1.0|250 2.1.5|354 |250 2.0.0|221", true);
    int open = 0;
    assert_int_equal(count_session_conns(h, &open), 1);
    check_order(h, " NAME=[UNAVAILABLE] HELO=d.test\n>MAIL FROM:<a@x.test>\n>RSET\n"
                   ">XFORWARD ADDR=127.0.0.1 PROTO=*\n NAME=[UNAVAILABLE] HELO=e.test\n"
                   ">MAIL FROM:<a@x.test>\n>RCPT TO:<c@x.test>\n>DATA\n");
    const char *first = strstr(h->fu.events.ptr, ">RSET");
    assert_non_null(first);
    assert_null(strstr(first + 1, ">RSET")); /* the pool's, the only one */
    h_stop(h);
}

/* The MTA ends connections while they wait in the pool: one right after
 * the final reply to its message (its idle timeout), one with a 421 of its
 * own after that reply, one by refusing the RSET that follows an aborted
 * transaction (421). None is ever given to a client again: the next session
 * opens a new connection, and every message goes through; the last
 * connection serves the next client too. */
static const struct fu_rule rules_close_idle[] = {
    {".", "250 2.0.0 Ok: queued as ONE", FU_REPLY_CLOSE, 0, true},
    {".", "250 2.0.0 Ok: queued as TWO\n421 4.4.2 fake.test Error: timeout exceeded",
     FU_REPLY_CLOSE, 0, true},
    {"RSET", "421 4.4.2 fake.test Error: timeout exceeded", FU_REPLY_CLOSE, 0, true},
    {NULL, NULL, 0, 0, false},
};

static void test_upstream_reuse_mta_closes_idle(void **state)
{
    (void)state;
    struct h *h = g_h;
    struct opts o = {.rules = rules_close_idle, .reuse = true};
    h_start(h, &o);
    struct cli *c = &h->cli[0];
    for (int i = 0; i < 2; i++) {
        one_client(
            h, c, "EHLO c.test\r\n" MAIL_A RCPT_B "DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
            "250-sluice.test|250 2.1.0|250 2.1.5|354 |250 2.0.0|221", true);
        run_for(h, 100); /* the close reaches sluice while the connection is idle */
    }
    /* An envelope without a message: the RSET that ends it is refused. */
    one_client(h, c, "EHLO c.test\r\n" MAIL_A RCPT_B "QUIT\r\n",
               "250-sluice.test|250 2.1.0|250 2.1.5|221", true);
    run_for(h, 100);
    for (int i = 0; i < 2; i++) {
        one_client(
            h, c, "EHLO c.test\r\n" MAIL_A RCPT_B "DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
            "250-sluice.test|250 2.1.0|250 2.1.5|354 |250 2.0.0|221", true);
        run_for(h, 100);
    }
    int open = 0;
    /* three connections ended by the MTA, the fourth one served two clients */
    assert_int_equal(count_session_conns(h, &open), 4);
    assert_int_equal(open, 1);
    check_order(h, ">.\n<250 2.0.0 Ok: queued as ONE\n#close\n"
                   ">.\n<250 2.0.0 Ok: queued as TWO\n#close\n"
                   ">RCPT TO:<b@x.test>\n>RSET\n<421 4.4.2*\n");
    h_stop(h);
}

/* ==== graceful shutdown ===================================================== */

/* SIGTERM: an idle session is closed at once with 421 4.3.2; a session in
 * the middle of a transaction finishes it, then gets the 421; the count
 * returns to 0. */
static void test_sigterm_lets_transactions_finish(void **state)
{
    (void)state;
    struct h *h = g_h;
    struct opts o = {0};
    h_start(h, &o);
    struct cli *idle = &h->cli[0], *busy = &h->cli[1];
    open_client(h, idle);
    cli_send(idle, "EHLO c.test\r\n", 13);
    wait_replies(h, idle, 2);
    open_client(h, busy);
    const char *env = "EHLO c.test\r\n" MAIL_A RCPT_B;
    cli_send(busy, env, strlen(env));
    wait_replies(h, busy, 4);
    check_replies(h, busy, 2, "250 2.1.0|250 2.1.5");

    assert_int_equal(raise(SIGTERM), 0);
    wait_eof(h, idle);
    assert_int_equal(idle->nreplies, 3);
    check_reply(h, idle, 2, "421 4.3.2 sluice.test Service shutting down", 43);
    assert_false(busy->eof);
    assert_true(h->srv.stopping);

    const char *msg = "DATA\r\nSubject: t\r\n\r\nlast one\r\n.\r\n";
    cli_send(busy, msg, strlen(msg));
    wait_eof(h, busy);
    assert_int_equal(busy->nreplies, 7);
    check_replies(h, busy, 4, "354 |250 2.0.0 Ok: queued as FAKE|421 4.3.2");
    cli_close(idle);
    cli_close(busy);
    wait_idle(h);
    char *t = fu_transcript(&h->fu);
    assert_string_equal(t, UP_MAIL_A UP_RCPT_B "DATA\nSubject: t\n\nlast one\n.\n");
    free(t);
    h_stop(h);
}

/* ==== main ================================================================== */

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/test_sess.XXXXXX");
    if (!mkdtemp(g_tmpdir))
        return -1;
    signal(SIGPIPE, SIG_IGN);
    log_init("test_sess", 0, getenv("SESS_TEST_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_FATAL);
    stats_init();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

#define DIALOGUE(d)                                                                                \
    {                                                                                              \
#d + 2, run_dialogue, h_setup, h_teardown, (void *)&d                                      \
    }
#define TEST(f)                                                                                    \
    {                                                                                              \
#f, f, h_setup, h_teardown, NULL                                                           \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        DIALOGUE(d_mail_before_helo),
        DIALOGUE(d_rcpt_before_mail),
        DIALOGUE(d_data_before_mail),
        DIALOGUE(d_data_before_rcpt),
        DIALOGUE(d_nested_mail),
        DIALOGUE(d_unknown_verb),
        DIALOGUE(d_not_implemented),
        DIALOGUE(d_nul_in_command),
        DIALOGUE(d_helo_syntax),
        DIALOGUE(d_line_too_long),
        DIALOGUE(d_simple_verbs),
        DIALOGUE(d_starttls_without_tls),
        DIALOGUE(d_pipelining),
        DIALOGUE(d_pipelining_whole),
        DIALOGUE(d_barrier_rset),
        DIALOGUE(d_barrier_ehlo),
        DIALOGUE(d_barrier_quit),
        DIALOGUE(d_mail_refused),
        DIALOGUE(d_mail_refused_rcpt_accepted),
        DIALOGUE(d_rcpt_refused_one),
        DIALOGUE(d_rcpt_refused_all),
        DIALOGUE(d_dot_stuffing),
        DIALOGUE(d_bdat_chunks),
        DIALOGUE(d_bdat_sequence),
        DIALOGUE(d_bdat_bare_lf),
        DIALOGUE(d_final_reply_relayed),
        DIALOGUE(d_upstream_refuses_data),
        DIALOGUE(d_data_bare_lf),
        DIALOGUE(d_upstream_lost_after_mail),
        DIALOGUE(d_upstream_lost_at_dot),
        DIALOGUE(d_upstream_timeout),
        DIALOGUE(d_upstream_out_of_protocol),
        DIALOGUE(d_upstream_unreachable),
        DIALOGUE(d_rset_mid_transaction),
        DIALOGUE(d_quit),
        DIALOGUE(d_max_errors),
        DIALOGUE(d_max_errors_pipelined),
        DIALOGUE(d_command_timeout),
        DIALOGUE(d_command_timeout_in_tx),
        DIALOGUE(d_greeting_timeout),
        DIALOGUE(d_slow_upstream_is_not_client_timeout),
        DIALOGUE(d_upstream_421),
        DIALOGUE(d_xclient),
        DIALOGUE(d_xclient_refused),
        DIALOGUE(d_connect_at_connect),
        DIALOGUE(d_connect_at_connect_down),
        DIALOGUE(d_message_too_large),
        DIALOGUE(d_mixed_local_and_upstream_replies),
        DIALOGUE(d_max_recipients),
        DIALOGUE(d_upstream_replies_relayed),
        DIALOGUE(d_upstream_gone_between_transactions),
        DIALOGUE(d_xforward),
        DIALOGUE(d_8bit_downgraded),
        DIALOGUE(d_upstream_lost_before_data),
        DIALOGUE(d_auth_plain_ir),
        DIALOGUE(d_auth_plain_continued),
        DIALOGUE(d_auth_login),
        DIALOGUE(d_auth_cancel_and_syntax),
        DIALOGUE(d_auth_sequence),
        DIALOGUE(d_auth_required),
        DIALOGUE(d_auth_max_failures),
        DIALOGUE(d_auth_dovecot_down),
        DIALOGUE(d_auth_mail_param),
        TEST(test_auth_disconnect_while_waiting),
        TEST(test_verbs_per_state),
        TEST(test_disconnect_while_waiting),
        TEST(test_concurrent_sessions),
        TEST(test_upstream_reuse),
        TEST(test_upstream_no_reuse_after_xclient),
        TEST(test_upstream_new_helo_new_connection),
        TEST(test_upstream_no_reuse_with_errors),
        TEST(test_upstream_reuse_after_abort),
        TEST(test_upstream_pool_resets_unanswered_mail),
        TEST(test_xforward_not_left_behind_a_refused_mail),
        TEST(test_upstream_reuse_mta_closes_idle),
        TEST(test_sigterm_lets_transactions_finish),
    };
    return cmocka_run_group_tests_name("sess", tests, group_setup, group_teardown);
}
