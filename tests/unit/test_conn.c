/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for conn: two real conns on a private libuv loop over
 * loopback (server side accepted from a listener, client side from
 * conn_connect), plaintext and STARTTLS with a certificate generated at
 * startup. Every loop run is bounded by a watchdog timer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "buf.h"
#include "conn.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define WATCHDOG_MS 8000
#define BIG_TOTAL (8u << 20)
#define BIG_CHUNK (64u * 1024)

/* ---- fixture ----------------------------------------------------------- */

struct fixture;

struct side {
    struct fixture *fx;
    struct conn *c;
    bool closed;          /* the test called conn_close */
    bool tls_started;
    buf_t acc;            /* line assembly */
    buf_t pre;            /* lines received before STARTTLS, "\n"-joined */
    buf_t post;           /* lines received after STARTTLS */
    buf_t raw;            /* raw bytes (for tests that do not use lines) */
    int reads;
    int ev[CONN_EV_CONNECT_FAIL + 1];
    int ev_err[CONN_EV_CONNECT_FAIL + 1];
    void (*on_read)(struct side *s, const char *p, size_t n);
    void (*on_event)(struct side *s, enum conn_event ev, int err);
};

struct fixture {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_tcp_t idle_sock;   /* bound, never listening: connections are refused */
    uv_timer_t watchdog;
    uv_timer_t aux;
    bool timed_out;
    int port;
    struct side srv, cli;
    /* TLS parameters of the scripted dialogue */
    SSL_CTX *cli_ctx;
    const char *sni;
    bool verify;
    const char *first_write; /* what the client sends once connected */
    const char *early;       /* written right after conn_starttls_client */
    const char *after_tls;   /* written on TLS_DONE */
    bool plain_before_tls;   /* client sends "NOOP" in clear after the 220 */
    bool srv_close_on_read;
    bool srv_quiet;          /* no replies after TLS */
    bool srv_pause_once;     /* stop reading after the 1st TLS line, resume later */
    int reads_base;
    /* large transfer */
    size_t sent, recvd, max_pending, eof_at;
    bool bad_byte;
};

static char tmpdir[64];
static char cert_file[128], key_file[128], other_key_file[128];
static SSL_CTX *srv_ctx;

static void side_read_cb(struct conn *c, const char *p, size_t n, void *ud)
{
    struct side *s = ud;
    assert_ptr_equal(c, s->c);
    assert_false(s->closed); /* no callback after conn_close */
    s->reads++;
    if (s->on_read)
        s->on_read(s, p, n);
    else
        buf_append(&s->raw, p, n);
}

static void side_event_cb(struct conn *c, enum conn_event ev, int err, void *ud)
{
    struct side *s = ud;
    assert_ptr_equal(c, s->c);
    assert_false(s->closed);
    s->ev[ev]++;
    s->ev_err[ev] = err;
    if (ev == CONN_EV_CONNECTED)
        assert_int_equal(conn_read_start(c), 0);
    if (s->on_event)
        s->on_event(s, ev, err);
}

static void side_close(struct side *s, bool graceful)
{
    if (s->c && !s->closed) {
        s->closed = true;
        conn_close(s->c, graceful);
    }
}

static void on_connection(uv_stream_t *l, int status)
{
    struct fixture *fx = l->data;
    assert_int_equal(status, 0);
    assert_null(fx->srv.c);
    fx->srv.c = conn_new(&fx->loop, side_read_cb, side_event_cb, &fx->srv);
    assert_non_null(fx->srv.c);
    assert_int_equal(uv_accept(l, (uv_stream_t *)conn_tcp(fx->srv.c)), 0);
    assert_int_equal(conn_read_start(fx->srv.c), 0);
    assert_true(conn_reading(fx->srv.c));
}

static void on_watchdog(uv_timer_t *t)
{
    struct fixture *fx = t->data;
    fx->timed_out = true;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    fx->srv.fx = fx->cli.fx = fx;
    uv_tcp_init(&fx->loop, &fx->listener);
    fx->listener.data = fx;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&fx->listener, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&fx->listener, 8, on_connection), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&fx->listener, (struct sockaddr *)&got, &len);
    fx->port = ntohs(got.sin_port);
    uv_timer_init(&fx->loop, &fx->watchdog);
    fx->watchdog.data = fx;
    uv_timer_start(&fx->watchdog, on_watchdog, WATCHDOG_MS, 0);
    uv_timer_init(&fx->loop, &fx->aux);
    fx->aux.data = fx;
    uv_tcp_init(&fx->loop, &fx->idle_sock);
    assert_int_equal(uv_tcp_bind(&fx->idle_sock, (struct sockaddr *)&a, 0), 0);
    *state = fx;
    return 0;
}

static void side_free(struct side *s)
{
    side_close(s, false);
    buf_free(&s->acc);
    buf_free(&s->pre);
    buf_free(&s->post);
    buf_free(&s->raw);
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    side_free(&fx->srv);
    side_free(&fx->cli);
    uv_close((uv_handle_t *)&fx->listener, NULL);
    uv_close((uv_handle_t *)&fx->watchdog, NULL);
    uv_close((uv_handle_t *)&fx->aux, NULL);
    uv_close((uv_handle_t *)&fx->idle_sock, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    /* Every handle of every conn was closed and freed. */
    int rc = uv_loop_close(&fx->loop);
    if (fx->cli_ctx)
        SSL_CTX_free(fx->cli_ctx);
    free(fx);
    assert_int_equal(rc, 0);
    return 0;
}

typedef bool (*pred_fn)(struct fixture *fx);

static void run_until(struct fixture *fx, pred_fn pred)
{
    while (!pred(fx) && !fx->timed_out)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_false(fx->timed_out);
}

static void connect_client(struct fixture *fx, const char *bind_ip)
{
    fx->cli.c = conn_new(&fx->loop, side_read_cb, side_event_cb, &fx->cli);
    assert_non_null(fx->cli.c);
    struct sockaddr_in dst, src;
    uv_ip4_addr("127.0.0.1", fx->port, &dst);
    if (bind_ip)
        uv_ip4_addr(bind_ip, 0, &src);
    assert_int_equal(conn_connect(fx->cli.c, (struct sockaddr *)&dst,
                                  bind_ip ? (struct sockaddr *)&src : NULL), 0);
    conn_set_nodelay(fx->cli.c);
}

/* Pops one CRLF line from s->acc into line (NUL-terminated). */
static bool next_line(struct side *s, char *line, size_t cap)
{
    char *nl = s->acc.len ? memchr(s->acc.ptr, '\n', s->acc.len) : NULL;
    if (!nl)
        return false;
    size_t n = (size_t)(nl - s->acc.ptr) + 1;
    size_t l = n >= 2 && nl[-1] == '\r' ? n - 2 : n - 1;
    if (l >= cap)
        l = cap - 1;
    memcpy(line, s->acc.ptr, l);
    line[l] = 0;
    buf_consume(&s->acc, n);
    return true;
}

static void write_str(struct side *s, const char *str)
{
    assert_int_equal(conn_write(s->c, str, strlen(str)), 0);
    assert_int_equal(conn_flush(s->c), 0);
}

/* ---- scripted dialogue: a tiny SMTP-like server and client ------------- */

static void resume_srv(uv_timer_t *t)
{
    struct fixture *fx = t->data;
    assert_int_equal(fx->srv.reads, fx->reads_base + 1); /* nothing while paused */
    if (!fx->srv.closed)
        assert_int_equal(conn_read_start(fx->srv.c), 0);
}

static void srv_lines(struct side *s, const char *p, size_t n)
{
    buf_append(&s->acc, p, n);
    char line[256];
    while (next_line(s, line, sizeof line)) {
        buf_printf(s->tls_started ? &s->post : &s->pre, "%s\n", line);
        if (s->fx->srv_close_on_read && s->tls_started) {
            side_close(s, false);
            return;
        }
        if (!s->tls_started && strcmp(line, "STARTTLS") == 0) {
            assert_int_equal(conn_write(s->c, "220 go\r\n", 8), 0);
            assert_int_equal(conn_starttls_server(s->c, srv_ctx), 0);
            s->tls_started = true;
            /* The contract: the rest of this chunk and whatever we had
             * buffered arrived in clear and must be dropped. */
            buf_reset(&s->acc);
            return;
        }
        if (s->tls_started && s->fx->srv_pause_once) {
            s->fx->srv_pause_once = false;
            conn_read_stop(s->c);
            uv_timer_start(&s->fx->aux, resume_srv, 30, 0);
            return;
        }
        if (s->tls_started && !s->fx->srv_quiet) {
            char reply[300];
            snprintf(reply, sizeof reply, "250 %s\r\n", line);
            write_str(s, reply);
        }
    }
}

static void cli_lines(struct side *s, const char *p, size_t n)
{
    struct fixture *fx = s->fx;
    buf_append(&s->acc, p, n);
    char line[256];
    while (next_line(s, line, sizeof line)) {
        buf_printf(s->tls_started ? &s->post : &s->pre, "%s\n", line);
        if (!s->tls_started && strncmp(line, "220", 3) == 0) {
            if (fx->plain_before_tls)
                write_str(s, "NOOP\r\n");
            assert_int_equal(conn_starttls_client(s->c, fx->cli_ctx, fx->sni, fx->verify), 0);
            s->tls_started = true;
            buf_reset(&s->acc);
            if (fx->early)
                write_str(s, fx->early);
            return;
        }
    }
}

static void cli_events(struct side *s, enum conn_event ev, int err)
{
    (void)err;
    struct fixture *fx = s->fx;
    if (ev == CONN_EV_CONNECTED && fx->first_write)
        write_str(s, fx->first_write);
    if (ev == CONN_EV_TLS_DONE && fx->after_tls)
        write_str(s, fx->after_tls);
    if (ev == CONN_EV_TLS_FAIL)
        side_close(s, false); /* closing from inside on_event */
}

static void start_dialogue(struct fixture *fx, const char *ca, bool verify, const char *sni)
{
    char err[256] = "";
    fx->cli_ctx = conn_tls_client_ctx_new(ca, verify, err, sizeof err);
    assert_non_null(fx->cli_ctx);
    fx->verify = verify;
    fx->sni = sni;
    if (!fx->first_write)
        fx->first_write = "STARTTLS\r\n";
    fx->srv.on_read = srv_lines;
    fx->cli.on_read = cli_lines;
    fx->cli.on_event = cli_events;
    connect_client(fx, NULL);
}

/* ---- certificates --------------------------------------------------- */

static void write_key(EVP_PKEY *key, const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

static void add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* Self-signed EC P-256 certificate for "localhost" and 127.0.0.1. */
static void make_cert(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    EVP_PKEY *other = EVP_EC_gen("P-256");
    assert_non_null(key);
    assert_non_null(other);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, name);
    add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    FILE *f = fopen(cert_file, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    write_key(key, key_file);
    write_key(other, other_key_file);
    X509_free(x);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    strcpy(tmpdir, "/tmp/test_conn.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(cert_file, sizeof cert_file, "%s/cert.pem", tmpdir);
    snprintf(key_file, sizeof key_file, "%s/key.pem", tmpdir);
    snprintf(other_key_file, sizeof other_key_file, "%s/other.pem", tmpdir);
    make_cert();
    char err[256];
    srv_ctx = conn_tls_server_ctx_new(cert_file, key_file, err, sizeof err);
    if (!srv_ctx) {
        fprintf(stderr, "server ctx: %s\n", err);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    SSL_CTX_free(srv_ctx);
    unlink(cert_file);
    unlink(key_file);
    unlink(other_key_file);
    return rmdir(tmpdir);
}

/* ---- predicates ---------------------------------------------------------- */

static bool both_connected(struct fixture *fx)
{
    return fx->srv.c != NULL && fx->cli.ev[CONN_EV_CONNECTED] > 0;
}
static bool cli_got_7(struct fixture *fx) { return fx->cli.raw.len >= 7; }
static bool both_tls_done(struct fixture *fx)
{
    return fx->cli.ev[CONN_EV_TLS_DONE] && fx->srv.ev[CONN_EV_TLS_DONE];
}
static bool cli_tls_fail_srv_ended(struct fixture *fx)
{
    struct side *s = &fx->srv;
    return fx->cli.ev[CONN_EV_TLS_FAIL] &&
           (s->ev[CONN_EV_TLS_FAIL] || s->ev[CONN_EV_EOF] || s->ev[CONN_EV_ERROR]);
}
static bool srv_ended(struct fixture *fx)
{
    struct side *s = &fx->srv;
    return s->ev[CONN_EV_TLS_FAIL] || s->ev[CONN_EV_EOF] || s->ev[CONN_EV_ERROR];
}
static bool cli_ended(struct fixture *fx)
{
    return fx->cli.ev[CONN_EV_EOF] || fx->cli.ev[CONN_EV_ERROR];
}
static bool cli_connect_failed(struct fixture *fx) { return fx->cli.ev[CONN_EV_CONNECT_FAIL] > 0; }

/* ---- tests --------------------------------------------------------------- */

static void echo_read(struct side *s, const char *p, size_t n)
{
    assert_int_equal(conn_write(s->c, p, n), 0);
    assert_int_equal(conn_flush(s->c), 0);
}

static void test_echo_and_addresses(void **state)
{
    struct fixture *fx = *state;
    fx->srv.on_read = echo_read;
    connect_client(fx, "127.0.0.2"); /* bind first: the server must see it */
    run_until(fx, both_connected);
    assert_int_equal(fx->cli.ev[CONN_EV_CONNECTED], 1);
    write_str(&fx->cli, "hello\r\n");
    run_until(fx, cli_got_7);
    assert_int_equal(fx->cli.raw.len, 7);
    assert_memory_equal(fx->cli.raw.ptr, "hello\r\n", 7);

    char ip[64];
    int port = 0, cport = 0;
    assert_int_equal(conn_peer(fx->cli.c, ip, sizeof ip, &port), 0);
    assert_string_equal(ip, "127.0.0.1");
    assert_int_equal(port, fx->port);
    assert_int_equal(conn_local(fx->srv.c, ip, sizeof ip, &port), 0);
    assert_string_equal(ip, "127.0.0.1");
    assert_int_equal(port, fx->port);
    assert_int_equal(conn_local(fx->cli.c, ip, sizeof ip, &cport), 0);
    assert_string_equal(ip, "127.0.0.2");
    assert_int_equal(conn_peer(fx->srv.c, ip, sizeof ip, &port), 0);
    assert_string_equal(ip, "127.0.0.2");
    assert_int_equal(port, cport);

    assert_false(conn_tls_active(fx->cli.c));
    assert_null(conn_tls_version(fx->cli.c));
    assert_string_equal(conn_tls_error(fx->cli.c), "");
}

static bool coalesced_done(struct fixture *fx)
{
    return fx->srv.raw.len >= 1000 && fx->cli.ev[CONN_EV_DRAINED] > 0;
}

static void test_coalescing_and_drained(void **state)
{
    struct fixture *fx = *state;
    connect_client(fx, NULL);
    run_until(fx, both_connected);
    char want[1001];
    size_t total = 0;
    for (int i = 0; i < 100; i++) {
        char line[16];
        snprintf(line, sizeof line, "line %03d\r\n", i); /* 10 bytes */
        assert_int_equal(conn_write(fx->cli.c, line, 10), 0);
        memcpy(want + total, line, 10);
        total += 10;
        assert_int_equal(conn_pending(fx->cli.c), total);
    }
    assert_int_equal(fx->cli.ev[CONN_EV_DRAINED], 0);
    assert_int_equal(conn_flush(fx->cli.c), 0);
    /* Handed to libuv but not confirmed yet: still pending. */
    assert_int_equal(conn_pending(fx->cli.c), total);
    run_until(fx, coalesced_done);
    assert_int_equal(fx->cli.ev[CONN_EV_DRAINED], 1);
    assert_int_equal(conn_pending(fx->cli.c), 0);
    assert_int_equal(fx->srv.raw.len, total);
    assert_memory_equal(fx->srv.raw.ptr, want, total);
    /* 100 conn_write calls left as one write: one read on loopback. */
    assert_int_equal(fx->srv.reads, 1);
    /* An empty flush does not produce another DRAINED. */
    assert_int_equal(conn_flush(fx->cli.c), 0);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(fx->cli.ev[CONN_EV_DRAINED], 1);
}

static bool dialogue_done(struct fixture *fx)
{
    return fx->cli.post.len >= strlen("250 early\n250 secret\n");
}

static void test_starttls_roundtrip(void **state)
{
    struct fixture *fx = *state;
    fx->early = "early\r\n";       /* queued before the handshake finishes */
    fx->after_tls = "secret\r\n";
    start_dialogue(fx, NULL, false, "localhost");
    run_until(fx, both_tls_done);
    run_until(fx, dialogue_done);
    assert_string_equal(fx->srv.pre.ptr, "STARTTLS\n");
    assert_string_equal(fx->srv.post.ptr, "early\nsecret\n");
    assert_string_equal(fx->cli.pre.ptr, "220 go\n");
    assert_string_equal(fx->cli.post.ptr, "250 early\n250 secret\n");
    for (int i = 0; i < 2; i++) {
        struct conn *c = i ? fx->srv.c : fx->cli.c;
        assert_true(conn_tls_active(c));
        assert_string_equal(conn_tls_version(c), "TLSv1.3");
        assert_non_null(conn_tls_cipher(c));
        assert_string_equal(conn_tls_error(c), "");
    }
    assert_int_equal(conn_starttls_server(fx->srv.c, srv_ctx), UV_EALREADY);
    /* Graceful close sends close_notify: the server sees EOF. */
    side_close(&fx->cli, true);
    run_until(fx, srv_ended);
    assert_int_equal(fx->srv.ev[CONN_EV_EOF], 1);
    assert_int_equal(fx->srv.ev[CONN_EV_ERROR], 0);
}

static void test_verify_table(void **state)
{
    (void)state;
    static const struct {
        bool use_ca, verify;
        const char *sni;
        bool want_ok;
        const char *want_err1, *want_err2;
    } cases[] = {
        {false, true, "localhost", false, "certificate verify failed", "self-signed certificate"},
        {true, true, "localhost", true, NULL, NULL},
        {true, true, "127.0.0.1", true, NULL, NULL},
        {true, true, "mail.example.org", false, "certificate verify failed", "hostname mismatch"},
        {false, false, "mail.example.org", true, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        void *st;
        assert_int_equal(setup(&st), 0);
        struct fixture *fx = st;
        start_dialogue(fx, cases[i].use_ca ? cert_file : NULL, cases[i].verify, cases[i].sni);
        if (cases[i].want_ok) {
            run_until(fx, both_tls_done);
            assert_string_equal(conn_tls_error(fx->cli.c), "");
        } else {
            run_until(fx, cli_tls_fail_srv_ended);
            /* the client closed itself from on_event: its text was read there */
            assert_true(fx->cli.closed);
            assert_int_equal(fx->cli.ev[CONN_EV_TLS_DONE], 0);
            assert_int_equal(fx->srv.ev[CONN_EV_TLS_DONE], 0);
            assert_false(conn_tls_active(fx->srv.c));
            assert_int_equal(fx->srv.post.len, 0);
        }
        assert_int_equal(teardown(&st), 0);
    }
}

/* Same as above but reads the client's error text before it closes. */
static char fail_text[256];
static void cli_events_keep_text(struct side *s, enum conn_event ev, int err)
{
    if (ev == CONN_EV_TLS_FAIL)
        snprintf(fail_text, sizeof fail_text, "%s", conn_tls_error(s->c));
    cli_events(s, ev, err);
}

static void test_verify_error_text(void **state)
{
    static const struct {
        bool use_ca;
        const char *sni;
        const char *want;
    } cases[] = {
        {false, "localhost", "certificate verify failed: self-signed certificate"},
        {true, "mail.example.org", "certificate verify failed: hostname mismatch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        void *st;
        assert_int_equal(setup(&st), 0);
        struct fixture *fx = st;
        fail_text[0] = 0;
        start_dialogue(fx, cases[i].use_ca ? cert_file : NULL, true, cases[i].sni);
        fx->cli.on_event = cli_events_keep_text;
        run_until(fx, cli_tls_fail_srv_ended);
        assert_string_equal(fail_text, cases[i].want);
        /* The server learnt it from the client's alert. */
        if (fx->srv.ev[CONN_EV_TLS_FAIL])
            assert_non_null(strstr(conn_tls_error(fx->srv.c), "alert"));
        assert_int_equal(teardown(&st), 0);
    }
    (void)state;
}

static bool quit_seen(struct fixture *fx) { return fx->cli.post.len >= strlen("250 QUIT\n"); }

/* CVE-2011-0411: "STARTTLS\r\nNOOP\r\n" in one segment. */
static void test_starttls_injection_same_segment(void **state)
{
    struct fixture *fx = *state;
    fx->first_write = "STARTTLS\r\nNOOP\r\n";
    fx->after_tls = "QUIT\r\n";
    start_dialogue(fx, cert_file, true, "localhost");
    run_until(fx, quit_seen);
    assert_string_equal(fx->srv.pre.ptr, "STARTTLS\n");
    assert_string_equal(fx->srv.post.ptr, "QUIT\n");
    assert_string_equal(fx->cli.post.ptr, "250 QUIT\n");
}

/* Plaintext that arrives after conn_starttls_server went to the TLS engine,
 * never to on_read: the handshake fails instead. */
static void test_starttls_injection_later_segment(void **state)
{
    struct fixture *fx = *state;
    fx->plain_before_tls = true;
    fx->after_tls = "QUIT\r\n";
    start_dialogue(fx, cert_file, true, "localhost");
    run_until(fx, srv_ended);
    assert_string_equal(fx->srv.pre.ptr, "STARTTLS\n");
    assert_int_equal(fx->srv.post.len, 0);
    assert_int_equal(fx->srv.ev[CONN_EV_TLS_DONE], 0);
    assert_int_equal(fx->srv.ev[CONN_EV_TLS_FAIL], 1);
    assert_string_not_equal(conn_tls_error(fx->srv.c), "");
}

static void test_close_from_on_read_tls(void **state)
{
    struct fixture *fx = *state;
    start_dialogue(fx, NULL, false, NULL);
    run_until(fx, both_tls_done);
    fx->srv_close_on_read = true;
    int reads_before = fx->srv.reads;
    /* three records in one segment */
    assert_int_equal(conn_write(fx->cli.c, "A\r\n", 3), 0);
    assert_int_equal(conn_write(fx->cli.c, "B\r\n", 3), 0);
    assert_int_equal(conn_write(fx->cli.c, "C\r\n", 3), 0);
    assert_int_equal(conn_flush(fx->cli.c), 0);
    run_until(fx, cli_ended);
    assert_int_equal(fx->srv.reads, reads_before + 1);
    assert_string_equal(fx->srv.post.ptr, "A\n");
}


static bool srv_eof(struct fixture *fx) { return fx->srv.ev[CONN_EV_EOF] > 0; }
static bool srv_got_abc(struct fixture *fx) { return fx->srv.post.len >= 6; }

/* Records already received while the reader paused are delivered after
 * conn_read_start although no new byte arrives (the client stays silent). */
static void test_tls_pause_resume(void **state)
{
    struct fixture *fx = *state;
    start_dialogue(fx, NULL, false, NULL);
    run_until(fx, both_tls_done);
    fx->srv_quiet = true;
    fx->srv_pause_once = true;
    fx->reads_base = fx->srv.reads;
    assert_int_equal(conn_write(fx->cli.c, "A\r\n", 3), 0);
    assert_int_equal(conn_write(fx->cli.c, "B\r\n", 3), 0);
    assert_int_equal(conn_write(fx->cli.c, "C\r\n", 3), 0);
    assert_int_equal(conn_flush(fx->cli.c), 0);
    run_until(fx, srv_got_abc);
    assert_string_equal(fx->srv.post.ptr, "A\nB\nC\n");
    assert_int_equal(fx->srv.reads, fx->reads_base + 3);
    side_close(&fx->cli, true);
    run_until(fx, srv_eof);
    assert_int_equal(fx->srv.ev[CONN_EV_ERROR], 0);
}

static void test_close_with_writes_in_flight(void **state)
{
    struct fixture *fx = *state;
    connect_client(fx, NULL);
    run_until(fx, both_connected);
    conn_read_stop(fx->srv.c); /* the server does not read: writes stay queued */
    assert_false(conn_reading(fx->srv.c));
    char *big = calloc(1, BIG_TOTAL);
    assert_non_null(big);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(conn_write(fx->cli.c, big, BIG_TOTAL), 0);
        assert_int_equal(conn_flush(fx->cli.c), 0);
    }
    free(big);
    for (int i = 0; i < 5; i++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_true(conn_pending(fx->cli.c) > 0);
    int events[CONN_EV_CONNECT_FAIL + 1];
    memcpy(events, fx->cli.ev, sizeof events);
    side_close(&fx->cli, false);
    assert_int_equal(conn_read_start(fx->srv.c), 0);
    run_until(fx, srv_ended);
    /* no client callback after close (side_*_cb would also fail) */
    assert_memory_equal(events, fx->cli.ev, sizeof events);
    assert_true(fx->srv.raw.len < 4 * (size_t)BIG_TOTAL);
}

static void count_tcp(uv_handle_t *h, void *arg)
{
    if (h->type == UV_TCP && !uv_is_closing(h))
        (*(int *)arg)++;
}

/* listener + idle_sock + the server conn: the client's handle is gone */
static bool cli_handle_closed(struct fixture *fx)
{
    int n = 0;
    uv_walk(&fx->loop, count_tcp, &n);
    return n == 3;
}

/* A graceful close towards a peer that never reads gives up after the
 * deadline and releases everything. */
static void test_graceful_close_deadline(void **state)
{
    struct fixture *fx = *state;
    connect_client(fx, NULL);
    run_until(fx, both_connected);
    conn_read_stop(fx->srv.c);
    char *big = calloc(1, BIG_TOTAL);
    assert_non_null(big);
    for (int i = 0; i < 4; i++)
        assert_int_equal(conn_write(fx->cli.c, big, BIG_TOTAL), 0);
    free(big);
    uv_update_time(&fx->loop);
    uint64_t t0 = uv_now(&fx->loop);
    side_close(&fx->cli, true);
    assert_false(cli_handle_closed(fx));
    run_until(fx, cli_handle_closed);
    uint64_t waited = uv_now(&fx->loop) - t0;
    assert_true(waited >= 2900);
    assert_true(waited < 6000);
}

static bool cli_eof(struct fixture *fx) { return fx->cli.ev[CONN_EV_EOF] > 0; }

static void test_graceful_close_delivers_pending(void **state)
{
    struct fixture *fx = *state;
    connect_client(fx, NULL);
    run_until(fx, both_connected);
    size_t total = 1u << 20;
    char *big = malloc(total);
    assert_non_null(big);
    for (size_t i = 0; i < total; i++)
        big[i] = (char)(i % 251);
    assert_int_equal(conn_write(fx->srv.c, big, total), 0);
    side_close(&fx->srv, true); /* not even flushed: close must send it */
    run_until(fx, cli_eof);
    assert_int_equal(fx->cli.raw.len, total);
    assert_memory_equal(fx->cli.raw.ptr, big, total);
    free(big);
}

static void test_connect_refused(void **state)
{
    struct fixture *fx = *state;
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&fx->idle_sock, (struct sockaddr *)&got, &len);
    fx->port = ntohs(got.sin_port);
    connect_client(fx, NULL);
    run_until(fx, cli_connect_failed);
    assert_int_equal(fx->cli.ev_err[CONN_EV_CONNECT_FAIL], UV_ECONNREFUSED);
    assert_int_equal(fx->cli.ev[CONN_EV_CONNECTED], 0);
}

/* ---- large transfer through TLS with backpressure ---------------------- */

static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 7 + i / 4093) & 0xff);
}

static void big_send_next(struct side *s)
{
    struct fixture *fx = s->fx;
    if (fx->sent >= BIG_TOTAL) {
        side_close(s, true);
        return;
    }
    unsigned char chunk[BIG_CHUNK];
    for (size_t i = 0; i < BIG_CHUNK; i++)
        chunk[i] = pattern(fx->sent + i);
    assert_int_equal(conn_write(s->c, chunk, BIG_CHUNK), 0);
    fx->sent += BIG_CHUNK;
    assert_int_equal(conn_flush(s->c), 0);
    if (conn_pending(s->c) > fx->max_pending)
        fx->max_pending = conn_pending(s->c);
}

static void big_cli_events(struct side *s, enum conn_event ev, int err)
{
    cli_events(s, ev, err);
    /* Next chunk only once the previous one left: bounded queue. */
    if (ev == CONN_EV_TLS_DONE || (ev == CONN_EV_DRAINED && conn_tls_active(s->c)))
        big_send_next(s);
}

static void big_resume(uv_timer_t *t)
{
    struct fixture *fx = t->data;
    if (!fx->srv.closed)
        assert_int_equal(conn_read_start(fx->srv.c), 0);
}

static void big_srv_read(struct side *s, const char *p, size_t n)
{
    struct fixture *fx = s->fx;
    if (!s->tls_started) {
        srv_lines(s, p, n);
        return;
    }
    assert_true(conn_reading(s->c));
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] != pattern(fx->recvd + i))
            fx->bad_byte = true;
    size_t before = fx->recvd;
    fx->recvd += n;
    /* Pause every 512 KiB: data already decrypted or in the TLS buffers
     * must come back after conn_read_start without new socket input. */
    if (before / (512 * 1024) != fx->recvd / (512 * 1024)) {
        conn_read_stop(s->c);
        uv_timer_start(&fx->aux, big_resume, 2, 0);
    }
}

static void big_srv_events(struct side *s, enum conn_event ev, int err)
{
    (void)err;
    if (ev == CONN_EV_EOF)
        s->fx->eof_at = s->fx->recvd;
}

static bool big_done(struct fixture *fx) { return fx->srv.ev[CONN_EV_EOF] > 0; }

static void test_tls_large_transfer(void **state)
{
    struct fixture *fx = *state;
    start_dialogue(fx, cert_file, true, "localhost");
    fx->cli.on_event = big_cli_events;
    fx->srv.on_read = big_srv_read;
    fx->srv.on_event = big_srv_events;
    run_until(fx, big_done);
    assert_int_equal(fx->sent, BIG_TOTAL);
    assert_int_equal(fx->recvd, BIG_TOTAL);
    assert_int_equal(fx->eof_at, BIG_TOTAL); /* EOF only after all data */
    assert_false(fx->bad_byte);
    /* one chunk plus TLS record overhead, never the whole message */
    assert_true(fx->max_pending >= BIG_CHUNK);
    assert_true(fx->max_pending < BIG_CHUNK + 4096);
    assert_int_equal(fx->srv.ev[CONN_EV_ERROR], 0);
}

/* ---- contexts ------------------------------------------------------------ */

static void test_ctx_errors(void **state)
{
    (void)state;
    static const struct {
        const char *cert, *key;
        const char *want;
    } cases[] = {
        {"/nonexistent/cert.pem", NULL, "cannot load certificate chain /nonexistent/cert.pem"},
        {NULL, "/nonexistent/key.pem", "cannot load private key /nonexistent/key.pem"},
        {NULL, "other", "key values mismatch"}, /* OpenSSL checks the pair on load */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        const char *key = cases[i].key ? cases[i].key : key_file;
        if (key && strcmp(key, "other") == 0)
            key = other_key_file;
        SSL_CTX *ctx = conn_tls_server_ctx_new(cases[i].cert ? cases[i].cert : cert_file, key, err,
                                               sizeof err);
        assert_null(ctx);
        if (!strstr(err, cases[i].want))
            fail_msg("got %s, want %s", err, cases[i].want);
    }
    char err[256] = "";
    assert_null(conn_tls_client_ctx_new("/nonexistent/ca.pem", true, err, sizeof err));
    assert_non_null(strstr(err, "cannot load CA certificates /nonexistent/ca.pem"));
    SSL_CTX *ok = conn_tls_client_ctx_new(NULL, true, err, sizeof err);
    assert_non_null(ok);
    SSL_CTX_free(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_errors),
        cmocka_unit_test_setup_teardown(test_echo_and_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalescing_and_drained, setup, teardown),
        cmocka_unit_test_setup_teardown(test_starttls_roundtrip, setup, teardown),
        cmocka_unit_test(test_verify_table),
        cmocka_unit_test(test_verify_error_text),
        cmocka_unit_test_setup_teardown(test_starttls_injection_same_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_starttls_injection_later_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_on_read_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_writes_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graceful_close_delivers_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graceful_close_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_large_transfer, setup, teardown),
    };
    return cmocka_run_group_tests_name("conn", tests, group_setup, group_teardown);
}
