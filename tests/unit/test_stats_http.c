/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for the stats endpoint's Host check (DNS rebinding): which
 * Host header values name the listener. Table-driven. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "stats_http.h"

struct host_case {
    const char *listen;
    int port; /* the bound port */
    const char *allowed;
    const char *host; /* NULL: no Host header */
    bool want;
};

static const struct host_case cases[] = {
    {"127.0.0.1:9025", 9025, "", "127.0.0.1:9025", true},
    {"127.0.0.1:9025", 9025, "", "127.0.0.1", true},
    {"127.0.0.1:9025", 9025, "", "localhost:9025", true},
    {"127.0.0.1:9025", 9025, "", "LOCALHOST:9025", true},
    {"127.0.0.1:9025", 9025, "", "evil.example:9025", false}, /* rebinding */
    {"127.0.0.1:9025", 9025, "", "127.0.0.1:9026", false},
    {"127.0.0.1:9025", 9025, "", "127.0.0.1:", false},
    {"127.0.0.1:9025", 9025, "", "127.0.0.1:90x", false},
    {"127.0.0.1:9025", 9025, "", "127.0.0.1:+9025", false}, /* digits only (fuzz_stats_host) */
    {"127.0.0.1:9025", 9025, "", "127.0.0.1: 9025", false},
    {"127.0.0.1:9025", 9025, "", "", false},
    {"127.0.0.1:9025", 9025, "", NULL, true}, /* HTTP/1.0 */
    {"127.0.0.1:9025", 9025, "mon.example, stats.example", "stats.example:9025", true},
    {"127.0.0.1:9025", 9025, "mon.example, stats.example", "stats.example.evil:9025", false},
    {"127.0.0.1:9025", 9025, "mon.example", "mon.examplex", false},
    {"192.0.2.5:9025", 9025, "", "localhost:9025", false}, /* not a loopback listener */
    {"[::1]:9025", 9025, "", "[::1]:9025", true},
    {"[::1]:9025", 9025, "", "localhost", true},
    {"[::1]:9025", 9025, "", "::1", false}, /* brackets needed */
    {"[::1]:9025", 9025, "", "[::1", false},
    {"127.0.0.1:0", 41234, "", "127.0.0.1:41234", true}, /* port 0: the bound one */
    {"unix:/run/sluice/stats.sock", 0, "", "anything", true},
};

static void test_host_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct host_case *c = &cases[i];
        struct stats_http_addr a;
        char err[200];
        assert_int_equal(stats_http_parse_listen(c->listen, &a, err, sizeof err), 0);
        bool got = stats_http_host_ok(c->host, &a, c->port, c->allowed);
        if (got != c->want)
            fail_msg("listen %s, Host %s: got %d, want %d", c->listen, c->host ? c->host : "(none)",
                     got, c->want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
