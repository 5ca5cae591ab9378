/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for dns and dns_cache: the cache's TTL and size bounds, the
 * server-list grammar, PTR names, answer TTLs, and the resolver's bounds on
 * a real loop against a loopback UDP port that never answers: one query in
 * flight, one waiting, the next refused at once; a cancelled waiting one is
 * never sent and never called back; deadlines; nothing is ever delivered
 * inside the caller's stack. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "defer.h"
#include "dns.h"
#include "dns_cache.h"
#include "stats.h"
#include "stats_json.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- dns_cache ---------------------------------------------------------- */

static struct dns_cache_val *val(const char *rec)
{
    const char *rr[] = {rec};
    return dns_cache_val_new(DNS_OK, rr, rec ? 1 : 0, 300);
}

static void test_cache_ttl(void **state)
{
    (void)state;
    struct dns_cache *c = dns_cache_new(10, 3600);
    struct dns_cache_val *v = val("v=DKIM1; p=AAA");
    dns_cache_put(c, DNS_T_TXT, "Sel._DomainKey.Example.com", v, 30, 1000);
    /* got: a lookup in another case 10 s later; want: the record, 20 s left */
    struct dns_cache_val *got = dns_cache_get(c, DNS_T_TXT, "sel._domainkey.example.com", 11000);
    assert_non_null(got);
    assert_int_equal(got->status, DNS_OK);
    assert_int_equal(got->n, 1);
    assert_string_equal(got->rr[0], "v=DKIM1; p=AAA");
    assert_int_equal(got->ttl, 20);
    free(got);
    /* another type is another entry */
    assert_null(dns_cache_get(c, DNS_T_A, "sel._domainkey.example.com", 11000));
    /* expired at put time + ttl, and then gone */
    assert_null(dns_cache_get(c, DNS_T_TXT, "sel._domainkey.example.com", 31000));
    assert_int_equal(dns_cache_count(c), 0);
    /* ttl 0 stores nothing; max_ttl caps a long one */
    dns_cache_put(c, DNS_T_TXT, "a", v, 0, 0);
    assert_int_equal(dns_cache_count(c), 0);
    struct dns_cache *short_c = dns_cache_new(10, 60);
    dns_cache_put(short_c, DNS_T_TXT, "a", v, 86400, 0);
    assert_non_null(got = dns_cache_get(short_c, DNS_T_TXT, "a", 59000));
    free(got);
    assert_null(dns_cache_get(short_c, DNS_T_TXT, "a", 60000));
    dns_cache_free(short_c);
    free(v);
    dns_cache_free(c);
}

static void test_cache_size_lru(void **state)
{
    (void)state;
    struct dns_cache *c = dns_cache_new(3, 3600);
    char name[16];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "n%d", i);
        struct dns_cache_val *v = val(name);
        dns_cache_put(c, DNS_T_TXT, name, v, 60, 0);
        free(v);
    }
    /* n0 used again: n1 is now the least recently used */
    free(dns_cache_get(c, DNS_T_TXT, "n0", 1));
    struct dns_cache_val *v = val("n3");
    dns_cache_put(c, DNS_T_TXT, "n3", v, 60, 2);
    assert_int_equal(dns_cache_count(c), 3);
    struct {
        const char *name;
        bool want;
    } cases[] = {{"n0", true}, {"n1", false}, {"n2", true}, {"n3", true}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dns_cache_val *got = dns_cache_get(c, DNS_T_TXT, cases[i].name, 3);
        if ((got != NULL) != cases[i].want)
            fail_msg("%s: got %s, want %s", cases[i].name, got ? "cached" : "absent",
                     cases[i].want ? "cached" : "absent");
        free(got);
    }
    /* a new answer for a cached name replaces it */
    struct dns_cache_val *neg = dns_cache_val_new(DNS_NOTFOUND, NULL, 0, 0);
    dns_cache_put(c, DNS_T_TXT, "n3", neg, 60, 4);
    struct dns_cache_val *got = dns_cache_get(c, DNS_T_TXT, "n3", 5);
    assert_int_equal(got->status, DNS_NOTFOUND);
    assert_int_equal(got->n, 0);
    assert_int_equal(dns_cache_count(c), 3);
    free(got);
    free(neg);
    free(v);
    dns_cache_free(c);
    /* size 0: nothing is kept */
    c = dns_cache_new(0, 3600);
    v = val("x");
    dns_cache_put(c, DNS_T_TXT, "x", v, 60, 0);
    assert_null(dns_cache_get(c, DNS_T_TXT, "x", 1));
    free(v);
    dns_cache_free(c);
}

/* ---- pure helpers --------------------------------------------------------- */

static void test_parse_servers(void **state)
{
    (void)state;
    struct {
        const char *in, *want; /* want NULL: refused */
    } cases[] = {
        {"127.0.0.1:5353", "127.0.0.1:5353"},
        {"127.0.0.1", "127.0.0.1:53"},
        {"127.0.0.1:5353, [::1]:53 192.0.2.1", "127.0.0.1:5353,[::1]:53,192.0.2.1:53"},
        {"::1", "[::1]:53"},
        {"[2001:db8::1]", "[2001:db8::1]:53"},
        {"", NULL},
        {" , ", NULL},
        {"ns.example.org", NULL},
        {"127.0.0.1:0", NULL},
        {"127.0.0.1:65536", NULL},
        {"127.0.0.1:x", NULL},
        {"127.0.0.1:", NULL},
        {"[::1", NULL},
        {"[::1]x", NULL},
        {"300.0.0.1", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char csv[DNS_SERVERS_MAX], err[200] = "";
        int rc = dns_parse_servers(cases[i].in, csv, sizeof csv, err, sizeof err);
        if (!cases[i].want) {
            if (rc != -1 || !err[0])
                fail_msg("\"%s\": got \"%s\", want refused with a message", cases[i].in, csv);
            continue;
        }
        if (rc != 0 || strcmp(csv, cases[i].want) != 0)
            fail_msg("\"%s\": got %d \"%s\" (%s), want \"%s\"", cases[i].in, rc, csv, err,
                     cases[i].want);
    }
    char tiny[8], err[100];
    assert_int_equal(dns_parse_servers("127.0.0.1", tiny, sizeof tiny, err, sizeof err), -1);
}

static void test_ptr_name(void **state)
{
    (void)state;
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    char out[100];
    inet_pton(AF_INET, "192.0.2.10", &a4.sin_addr);
    assert_int_equal(dns_parse_ptr_name((struct sockaddr *)&a4, out, sizeof out), 0);
    assert_string_equal(out, "10.2.0.192.in-addr.arpa");
    inet_pton(AF_INET6, "2001:db8::567:89ab", &a6.sin6_addr);
    assert_int_equal(dns_parse_ptr_name((struct sockaddr *)&a6, out, sizeof out), 0);
    assert_string_equal(out, "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."
                             "ip6.arpa");
    assert_int_equal(dns_parse_ptr_name((struct sockaddr *)&a6, out, 20), -1);
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_int_equal(dns_parse_ptr_name(&un, out, sizeof out), -1);
}

static void test_answer_ttl(void **state)
{
    (void)state;
    /* header (1 question, 2 answers), question a.b TXT IN, two TXT RRs
     * with TTL 300 and 120 */
    const unsigned char msg[] = {
        0x12, 0x34, 0x81, 0x80, 0, 1, 0,  2, 0, 0,   0, 0,         /* header */
        1,    'a',  1,    'b',  0, 0, 16, 0, 1,                    /* question */
        0xc0, 12,   0,    16,   0, 1, 0,  0, 1, 44,  0, 2, 1, 'x', /* TTL 300 */
        0xc0, 12,   0,    16,   0, 1, 0,  0, 0, 120, 0, 2, 1, 'y', /* TTL 120 */
    };
    assert_int_equal(dns_parse_answer_ttl(msg, sizeof msg), 120);
    assert_int_equal(dns_parse_answer_ttl(msg, sizeof msg - 1), 0); /* rdata cut short */
    assert_int_equal(dns_parse_answer_ttl(msg, 11), 0);
    unsigned char none[21];
    memcpy(none, msg, sizeof none);
    none[7] = 0; /* no answer */
    assert_int_equal(dns_parse_answer_ttl(none, sizeof none), 0);
}

/* ---- the resolver's bounds, on a loop ------------------------------------ */

struct got {
    int calls;
    int status;
    bool in_stack; /* set while the test is inside a dns call */
};

static bool inside_call;

static void got_cb(void *ud, const struct dns_cache_val *ans)
{
    struct got *g = ud;
    g->calls++;
    g->status = ans->status;
    g->in_stack = inside_call;
}

static void stop_cb(uv_timer_t *t)
{
    (void)t;
    uv_stop(t->loop);
}

/* Run the loop until all of `want` callbacks came or `ms` passed. */
static void run_until(uv_loop_t *loop, struct got **gs, size_t n, unsigned ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, stop_cb, ms, 0);
    for (;;) {
        uv_run(loop, UV_RUN_ONCE);
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += gs[i]->calls > 0;
        if (done == n || !uv_is_active((uv_handle_t *)&t))
            break;
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void test_bounds_and_cancel(void **state)
{
    (void)state;
    uv_loop_t *loop = uv_default_loop();
    defer_init(loop);
    stats_init();
    /* a UDP port that receives and never answers */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    char servers[64], err[200];
    snprintf(servers, sizeof servers, "127.0.0.1:%u", ntohs(sa.sin_port));
    struct dns_conf conf = {.servers = servers,
                            .timeout_ms = 300,
                            .max_inflight = 1,
                            .max_queued = 1,
                            .cache_size = 10};
    assert_int_equal(dns_init(loop, &conf, err, sizeof err), 0);
    assert_true(dns_on_loop_thread());

    struct got a = {0}, b = {0}, c = {0}, d = {0};
    inside_call = true;
    struct dns_req *ra = dns_query(DNS_T_TXT, "a.example", NULL, 0, got_cb, &a); /* in flight */
    struct dns_req *rb = dns_query(DNS_T_TXT, "b.example", NULL, 0, got_cb, &b); /* waits */
    struct dns_req *rc = dns_query(DNS_T_TXT, "c.example", NULL, 0, got_cb, &c); /* refused */
    assert_null(dns_query(DNS_T_TXT, "bad name", NULL, 0, got_cb, &d));          /* unusable */
    assert_null(dns_query(99, "x.example", NULL, 0, got_cb, &d));
    inside_call = false;
    assert_non_null(ra);
    assert_non_null(rb);
    assert_non_null(rc);
    /* nothing is delivered inside the caller's stack, not even a refusal */
    assert_int_equal(a.calls + b.calls + c.calls, 0);
    dns_cancel(rb); /* waiting: skipped, never called */
    struct got *gs[] = {&a, &c};
    uint64_t t0 = uv_now(loop);
    run_until(loop, gs, 2, 3000);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, DNS_TEMPFAIL);
    assert_false(c.in_stack);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, DNS_TIMEOUT);
    uint64_t took = uv_now(loop) - t0;
    if (took < 250 || took > 1500)
        fail_msg("timeout after %llu ms, want about 300", (unsigned long long)took);
    assert_int_equal(b.calls, 0);

    /* a per-request deadline shorter than the default */
    struct got e = {0};
    assert_non_null(dns_query(DNS_T_A, "e.example", NULL, 100, got_cb, &e));
    struct got *ge[] = {&e};
    t0 = uv_now(loop);
    run_until(loop, ge, 1, 3000);
    assert_int_equal(e.status, DNS_TIMEOUT);
    assert_true(uv_now(loop) - t0 < 290);

    /* a cancelled delivery is never called either */
    struct got f = {0};
    struct dns_req *rf = dns_query(DNS_T_A, "f.example", NULL, 0, got_cb, &f);
    dns_cancel(rf);
    run_until(loop, (struct got *[]){&f}, 1, 400);
    assert_int_equal(f.calls, 0);

    dns_shutdown();
    uv_run(loop, UV_RUN_NOWAIT);

    /* again with room: */
    conf.max_inflight = conf.max_queued = 4;
    assert_int_equal(dns_init(loop, &conf, err, sizeof err), 0);
    /* two requests for one name share one query, and both get the answer
     * (here: the deadline of each) */
    struct got g1 = {0}, g2 = {0};
    assert_non_null(dns_query(DNS_T_TXT, "same.example", NULL, 200, got_cb, &g1));
    assert_non_null(dns_query(DNS_T_TXT, "SAME.example", NULL, 250, got_cb, &g2));
    run_until(loop, (struct got *[]){&g1, &g2}, 2, 3000);
    assert_int_equal(g1.calls, 1);
    assert_int_equal(g2.calls, 1);
    assert_int_equal(g2.status, DNS_TIMEOUT);
    buf_t out = BUF_INIT;
    stats_json_render(&out, 0);
    if (!strstr(out.ptr, "\"joined\":1"))
        fail_msg("want one joined request: %s", out.ptr);
    buf_free(&out);

    dns_shutdown();
    uv_run(loop, UV_RUN_NOWAIT);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_ttl),     cmocka_unit_test(test_cache_size_lru),
        cmocka_unit_test(test_parse_servers), cmocka_unit_test(test_ptr_name),
        cmocka_unit_test(test_answer_ttl),    cmocka_unit_test(test_bounds_and_cancel),
    };
    return cmocka_run_group_tests_name("dns", tests, NULL, NULL);
}
