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
    /* an IPv4 client written as IPv4-mapped IPv6 (a PROXY header) is itself */
    {"mapped = IPv4", 64, "::ffff:192.0.2.1", "192.0.2.1", false},
    {"mapped others apart", 64, "::ffff:192.0.2.1", "::ffff:192.0.2.2", true},
};

static void test_limit_per_prefix(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct ip_case *c = &cases[i];
        struct server *srv = mk(1, c->prefix);
        char k1[64], k2[64];
        assert_true(server_ip_acquire(srv, c->first, k1, sizeof k1));
        if (server_ip_acquire(srv, c->second, k2, sizeof k2) != c->second_ok)
            fail_msg("%s: second connection %s", c->name, c->second_ok ? "refused" : "allowed");
        /* Releasing the first frees the slot for the second's network. */
        server_ip_release(srv, k1);
        if (!c->second_ok)
            assert_true(server_ip_acquire(srv, c->second, k2, sizeof k2));
        done(srv);
    }
}

/* The count is released under the key it was taken with, whatever
 * ipv6_prefix a reload set in between (it once leaked the /64 count). */
static void test_release_after_prefix_change(void **state)
{
    (void)state;
    struct server *srv = mk(1, 64);
    char k[64], k2[64];
    assert_true(server_ip_acquire(srv, "2001:db8::1", k, sizeof k));
    srv->cfg->ipv6_prefix = 128;
    server_ip_release(srv, k);
    srv->cfg->ipv6_prefix = 64;
    assert_true(server_ip_acquire(srv, "2001:db8::2", k2, sizeof k2));
    done(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_per_prefix),
        cmocka_unit_test(test_release_after_prefix_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
