/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for the server's per-client connection accounting: IPv4 per
 * address, IPv6 per configured prefix (one host holds a whole /64). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cfg.h"
#include "server.h"

static struct server *mk(unsigned limit, unsigned prefix)
{
    buf_t err = BUF_INIT;
    struct cfg *c = cfg_load(NULL, NULL, &err);
    assert_non_null(c);
    buf_free(&err);
    c->max_connections_per_ip = limit;
    c->ipv6_prefix = prefix;
    struct server *srv = calloc(1, sizeof *srv);
    assert_non_null(srv);
    srv->cfg = c;
    return srv;
}

static void done(struct server *srv)
{
    cfg_unref(srv->cfg);
    free(srv->ipcounts);
    free(srv);
}

struct ip_case {
    const char *name;
    unsigned prefix;
    const char *first, *second;
    bool second_ok; /* with a limit of 1 */
};

static const struct ip_case cases[] = {
    {"same IPv4", 64, "192.0.2.1", "192.0.2.1", false},
    {"other IPv4", 64, "192.0.2.1", "192.0.2.2", true},
    {"same /64", 64, "2001:db8:1:2::1", "2001:db8:1:2:ffff::9", false},
    {"other /64", 64, "2001:db8:1:2::1", "2001:db8:1:3::1", true},
    {"same /48 at 48", 48, "2001:db8:1:2::1", "2001:db8:1:ff::1", false},
    {"exact at 128", 128, "2001:db8::1", "2001:db8::2", true},
    {"spelling does not matter", 64, "2001:DB8:0:0::1", "2001:db8::2", false},
};

static void test_limit_per_prefix(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct ip_case *c = &cases[i];
        struct server *srv = mk(1, c->prefix);
        assert_true(server_ip_acquire(srv, c->first));
        if (server_ip_acquire(srv, c->second) != c->second_ok)
            fail_msg("%s: second connection %s", c->name, c->second_ok ? "refused" : "allowed");
        /* Releasing the first frees the slot for the second's network. */
        server_ip_release(srv, c->first);
        if (!c->second_ok)
            assert_true(server_ip_acquire(srv, c->second));
        done(srv);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_per_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
