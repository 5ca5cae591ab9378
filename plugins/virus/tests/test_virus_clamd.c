/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_clamd: address parsing, chunk framing, reply parsing, and the
 * INSTREAM exchange against a fake clamd on a socketpair (a thread that
 * checks the framing and answers as scripted).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

#include "vir_clamd.h"

static void test_parse_addr(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        int family;
        int port;
    } cases[] = {
        {"unix:/run/clamav/clamd.ctl", 0, AF_UNIX, 0},
        {"127.0.0.1:3310", 0, AF_INET, 3310},
        {"[::1]:3310", 0, AF_INET6, 3310},
        {"unix:relative.sock", -1, 0, 0},
        {"localhost:3310", -1, 0, 0}, /* no DNS */
        {"127.0.0.1", -1, 0, 0},
        {"127.0.0.1:0", -1, 0, 0},
        {"127.0.0.1:65536", -1, 0, 0},
        {"::1:3310", -1, 0, 0},
        {"[::1]3310", -1, 0, 0},
        {"", -1, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vir_clamd_addr a;
        const char *why = NULL;
        int rc = vir_clamd_parse_addr(cases[i].in, &a, &why);
        if (rc != cases[i].rc)
            fail_msg("addr \"%s\": got %d (%s), want %d", cases[i].in, rc, why ? why : "",
                     cases[i].rc);
        if (rc)
            continue;
        assert_int_equal(a.sa.ss_family, cases[i].family);
        if (cases[i].family == AF_INET)
            assert_int_equal(ntohs(((struct sockaddr_in *)&a.sa)->sin_port), cases[i].port);
        if (cases[i].family == AF_INET6)
            assert_int_equal(ntohs(((struct sockaddr_in6 *)&a.sa)->sin6_port), cases[i].port);
        if (cases[i].family == AF_UNIX)
            assert_string_equal(((struct sockaddr_un *)&a.sa)->sun_path, cases[i].in + 5);
    }
}

static void test_chunk_header(void **state)
{
    (void)state;
    static const struct {
        uint32_t len;
        unsigned char want[4];
    } cases[] = {
        {0, {0, 0, 0, 0}},
        {1, {0, 0, 0, 1}},
        {65536, {0, 1, 0, 0}},
        {0x01020304u, {1, 2, 3, 4}},
        {0xffffffffu, {0xff, 0xff, 0xff, 0xff}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char got[4];
        vir_clamd_chunk_header(cases[i].len, got);
        assert_memory_equal(got, cases[i].want, 4);
    }
}

static void test_parse_reply(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        enum vir_kind kind;
        const char *name;
    } cases[] = {
        {"stream: OK", VIR_CLEAN, ""},
        {"stream: OK\n", VIR_CLEAN, ""},
        {"stream: Eicar-Test-Signature FOUND", VIR_VIRUS, "Eicar-Test-Signature"},
        {"stream: Test.EICAR.NDB.UNOFFICIAL FOUND\n", VIR_VIRUS, "Test.EICAR.NDB.UNOFFICIAL"},
        {"1: stream: X.Y FOUND", VIR_VIRUS, "X.Y"},
        {"stream: Bad\r\nName FOUND", VIR_VIRUS, "Bad__Name"},
        {"INSTREAM size limit exceeded. ERROR", VIR_LIMIT, "StreamMaxLength"},
        {"stream: Can't allocate memory ERROR", VIR_ERROR, VIR_ERR_SCAN},
        {"UNKNOWN COMMAND", VIR_ERROR, VIR_ERR_PROTOCOL},
        {"stream: FOUND", VIR_ERROR, VIR_ERR_PROTOCOL},
        {"", VIR_ERROR, VIR_ERR_PROTOCOL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vir_result r;
        vir_clamd_parse_reply(cases[i].in, strlen(cases[i].in), &r);
        if (r.kind != cases[i].kind || strcmp(r.name, cases[i].name))
            fail_msg("reply \"%s\": got %s \"%s\", want %s \"%s\"", cases[i].in,
                     vir_result_kind_name(r.kind), r.name, vir_result_kind_name(cases[i].kind),
                     cases[i].name);
    }
}

/* ---- fake clamd ---------------------------------------------------------- */

enum fake_mode {
    FAKE_ANSWER,       /* read the whole stream, then answer `reply` */
    FAKE_LIMIT_EARLY,  /* after `limit` bytes: answer the size-limit error, close */
    FAKE_SILENT,       /* read everything, never answer */
    FAKE_CLOSE,        /* read the command, close without a word */
};

struct fake {
    int fd;
    enum fake_mode mode;
    const char *reply;
    size_t limit;
    /* observed */
    char cmd[16];
    unsigned char *data; /* reassembled stream */
    size_t len;
    size_t chunks;
    int framing_ok;
};

static int read_full(int fd, void *p, size_t n)
{
    char *b = p;
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    f->framing_ok = 0;
    if (read_full(f->fd, f->cmd, 10) < 0)
        goto out;
    if (f->mode == FAKE_CLOSE)
        goto out;
    for (;;) {
        unsigned char h[4];
        if (read_full(f->fd, h, 4) < 0)
            goto out;
        uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        if (n == 0)
            break;
        if (n > VIR_CLAMD_CHUNK)
            goto out;
        f->data = realloc(f->data, f->len + n);
        if (read_full(f->fd, f->data + f->len, n) < 0)
            goto out;
        f->len += n;
        f->chunks++;
        if (f->mode == FAKE_LIMIT_EARLY && f->len >= f->limit) {
            static const char lim[] = "INSTREAM size limit exceeded. ERROR";
            if (write(f->fd, lim, sizeof lim) < 0)
                goto out;
            goto out;
        }
    }
    f->framing_ok = 1;
    if (f->mode == FAKE_ANSWER) {
        if (write(f->fd, f->reply, strlen(f->reply) + 1) < 0)
            goto out;
    } else if (f->mode == FAKE_SILENT) {
        struct pollfd p = {.fd = f->fd, .events = POLLIN};
        poll(&p, 1, 3000); /* until the client gives up and closes */
    }
out:
    close(f->fd);
    return NULL;
}

static void run_fake(struct fake *f, const void *data, size_t len, uint32_t timeout_ms,
                     struct vir_result *r)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    f->fd = sv[1];
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fake_main, f), 0);
    vir_clamd_exchange(sv[0], data, len, vir_clamd_now_ms() + timeout_ms, r);
    close(sv[0]);
    pthread_join(t, NULL);
}

static unsigned char *pattern(size_t n)
{
    unsigned char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31 + 7);
    return p;
}

static void test_exchange_clean_and_found(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        const char *reply;
        enum vir_kind kind;
        size_t chunks;
    } cases[] = {
        {10, "stream: OK", VIR_CLEAN, 1},
        {VIR_CLAMD_CHUNK, "stream: OK", VIR_CLEAN, 1},
        {VIR_CLAMD_CHUNK + 1, "stream: Test.Sig FOUND", VIR_VIRUS, 2},
        {300000, "stream: OK", VIR_CLEAN, 5},
        {0, "stream: OK", VIR_CLEAN, 0},
    };
    /* The stream is VIR_MAIL_MARK in a chunk of its own, then the message. */
    size_t mlen = sizeof VIR_MAIL_MARK - 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char *msg = pattern(cases[i].len ? cases[i].len : 1);
        struct fake f = {.mode = FAKE_ANSWER, .reply = cases[i].reply};
        struct vir_result r;
        run_fake(&f, msg, cases[i].len, 5000, &r);
        assert_memory_equal(f.cmd, "zINSTREAM", 10);
        assert_true(f.framing_ok);
        assert_int_equal(f.len, mlen + cases[i].len);
        assert_int_equal(f.chunks, 1 + cases[i].chunks);
        assert_memory_equal(f.data, VIR_MAIL_MARK, mlen);
        if (cases[i].len)
            assert_memory_equal(f.data + mlen, msg, cases[i].len);
        if (r.kind != cases[i].kind)
            fail_msg("case %zu: got %s (%s), want %s", i, vir_result_kind_name(r.kind), r.detail,
                     vir_result_kind_name(cases[i].kind));
        free(f.data);
        free(msg);
    }
}

static void test_exchange_limit_early(void **state)
{
    (void)state;
    size_t len = 4u << 20; /* more than the socket buffers: the writer hits EPIPE */
    unsigned char *msg = pattern(len);
    struct fake f = {.mode = FAKE_LIMIT_EARLY, .limit = 100000};
    struct vir_result r;
    run_fake(&f, msg, len, 5000, &r);
    assert_int_equal(r.kind, VIR_LIMIT);
    assert_string_equal(r.name, "StreamMaxLength");
    free(f.data);
    free(msg);
}

static void test_exchange_timeout(void **state)
{
    (void)state;
    unsigned char *msg = pattern(1000);
    struct fake f = {.mode = FAKE_SILENT};
    struct vir_result r;
    uint64_t t0 = vir_clamd_now_ms();
    run_fake(&f, msg, 1000, 200, &r);
    uint64_t took = vir_clamd_now_ms() - t0;
    assert_int_equal(r.kind, VIR_ERROR);
    assert_string_equal(r.name, VIR_ERR_TIMEOUT);
    assert_true(took >= 190 && took < 2000);
    free(f.data);
    free(msg);
}

static void test_exchange_closed(void **state)
{
    (void)state;
    unsigned char *msg = pattern(1000);
    struct fake f = {.mode = FAKE_CLOSE};
    struct vir_result r;
    run_fake(&f, msg, 1000, 2000, &r);
    assert_int_equal(r.kind, VIR_ERROR);
    assert_string_equal(r.name, VIR_ERR_CONNECT);
    free(f.data);
    free(msg);
}

/* Connection errors through the public scan entry: nobody listens. */
static void test_scan_connect_refused(void **state)
{
    (void)state;
    char path[] = "/tmp/vir-test-XXXXXX";
    assert_non_null(mkdtemp(path));
    char addr[200];
    snprintf(addr, sizeof addr, "unix:%s/none.sock", path);
    struct vir_clamd_addr a;
    assert_int_equal(vir_clamd_parse_addr(addr, &a, NULL), 0);
    struct vir_result r;
    vir_clamd_scan(&a, "x", 1, 500, 1000, &r);
    assert_int_equal(r.kind, VIR_ERROR);
    assert_string_equal(r.name, VIR_ERR_CONNECT);
    assert_non_null(strstr(r.detail, "none.sock"));
    rmdir(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_chunk_header),
        cmocka_unit_test(test_parse_reply),
        cmocka_unit_test(test_exchange_clean_and_found),
        cmocka_unit_test(test_exchange_limit_early),
        cmocka_unit_test(test_exchange_timeout),
        cmocka_unit_test(test_exchange_closed),
        cmocka_unit_test(test_scan_connect_refused),
    };
    return cmocka_run_group_tests_name("virus_clamd", tests, NULL, NULL);
}
