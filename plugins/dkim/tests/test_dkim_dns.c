/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_dns against loopback UDP servers run in a thread: one that answers a
 * TXT query, one that never answers (the lookup must give up at the
 * configured timeout and report a temporary failure).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dkp_dns.h"

struct server {
    int fd;
    int answer; /* 0: stay silent */
    int rcode;
};

static void *serve(void *arg)
{
    struct server *s = arg;
    unsigned char buf[1024];
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    struct pollfd p = {.fd = s->fd, .events = POLLIN};

    if (poll(&p, 1, 5000) != 1)
        return NULL;
    ssize_t n = recvfrom(s->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    if (n < 12 || !s->answer)
        return NULL;
    /* reply: the question without the OPT record, plus one TXT answer */
    size_t qend = (size_t)n - 11;
    static const unsigned char rr[] = {0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 120, 0, 12,
                                       11, 'v', '=', 'D', 'K', 'I', 'M', '1', ';', 'p', '=', 'Q'};
    buf[2] = 0x81;
    buf[3] = (unsigned char)(0x80 | s->rcode);
    buf[7] = s->rcode ? 0 : 1;
    buf[11] = 0;
    size_t len = qend;
    if (!s->rcode) {
        memcpy(buf + qend, rr, sizeof rr);
        len += sizeof rr;
    }
    sendto(s->fd, buf, len, 0, (struct sockaddr *)&from, fl);
    return NULL;
}

static int start(struct server *s, pthread_t *t, struct dkp_dns_conf *conf, unsigned timeout_ms)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    char spec[64], err[128];

    s->fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(s->fd >= 0);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &al), 0);
    snprintf(spec, sizeof spec, "127.0.0.1:%u", ntohs(a.sin_port));
    assert_int_equal(dkp_dns_parse_servers(spec, conf, err, sizeof err), 0);
    conf->timeout_ms = timeout_ms;
    return pthread_create(t, NULL, serve, s);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_lookup(void **state)
{
    (void)state;
    struct {
        const char *what;
        int answer, rcode;
        enum dkp_keystat want;
        double min_s, max_s;
    } cases[] = {
        {"answer", 1, 0, DKP_KEY_FOUND, 0, 1.0},
        {"nxdomain", 1, 3, DKP_KEY_NONE, 0, 1.0},
        {"servfail", 1, 2, DKP_KEY_TEMPFAIL, 0, 1.0},
        {"silent server", 0, 0, DKP_KEY_TEMPFAIL, 0.28, 1.5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct server s = {.answer = cases[i].answer, .rcode = cases[i].rcode};
        struct dkp_dns_conf conf;
        pthread_t t;
        char out[256] = "";
        uint32_t ttl = 0;
        assert_int_equal(start(&s, &t, &conf, 300), 0);
        double t0 = now_s();
        enum dkp_keystat st = dkp_dns_lookup_txt(&conf, "sel._domainkey.example.com", out,
                                                 sizeof out, &ttl);
        double took = now_s() - t0;
        if (st != cases[i].want)
            fail_msg("%s: got %d, want %d", cases[i].what, st, cases[i].want);
        if (took < cases[i].min_s || took > cases[i].max_s)
            fail_msg("%s: took %.3fs, want %.2f..%.2f", cases[i].what, took, cases[i].min_s,
                     cases[i].max_s);
        if (st == DKP_KEY_FOUND) {
            assert_string_equal(out, "v=DKIM1;p=Q");
            assert_int_equal(ttl, 120);
        }
        shutdown(s.fd, SHUT_RDWR);
        pthread_join(t, NULL);
        close(s.fd);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_lookup)};
    return cmocka_run_group_tests_name("dkim_dns", tests, NULL, NULL);
}
