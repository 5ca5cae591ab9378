/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ratelimit: the rule file (the shipped one, every error with its line),
 * subjects (IPv6 prefixes, mapped IPv4, domains, case) and the sliding
 * window's estimate.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl_rules.h"

struct errs {
    char text[8192];
    int n;
};

static void collect(void *arg, const char *msg)
{
    struct errs *e = arg;
    size_t used = strlen(e->text);
    snprintf(e->text + used, sizeof e->text - used, "%s\n", msg);
    e->n++;
}

static int parse(const char *text, struct rl_rules *r, struct errs *e)
{
    memset(e, 0, sizeof *e);
    return rl_rules_parse(text, strlen(text), "t.rules", r, collect, e);
}

static void test_shipped_file(void **state)
{
    (void)state;
    FILE *f = fopen(RL_RULES_FILE, "rb");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    static struct rl_rules r;
    struct errs e;
    memset(&e, 0, sizeof e);
    assert_int_equal(rl_rules_parse(buf, n, RL_RULES_FILE, &r, collect, &e), 0);
    assert_true(r.n >= 5);
}

static void test_rules_parsed(void **state)
{
    (void)state;
    static struct rl_rules r;
    struct errs e;
    assert_int_equal(parse("# comment\n\n"
                           "conn_ip connections client_ip 60 1m   # trailing comment\n"
                           "bytes_user\tbytes\tauth_user\t200M\t1d\r\n"
                           "rd recipients RCPT_DOMAIN 500 10s",
                           &r, &e),
                     0);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.v[0].name, "conn_ip");
    assert_int_equal(r.v[0].what, RL_CONNECTIONS);
    assert_int_equal(r.v[0].per, RL_CLIENT_IP);
    assert_int_equal(r.v[0].limit, 60);
    assert_int_equal(r.v[0].window_ms, 60000);
    assert_int_equal(r.v[0].line, 3);
    assert_int_equal(r.v[1].what, RL_BYTES);
    assert_int_equal(r.v[1].limit, 200ULL << 20);
    assert_int_equal(r.v[1].window_ms, 86400000);
    assert_int_equal(r.v[2].per, RL_RCPT_DOMAIN);
    assert_int_equal(r.v[2].window_ms, 10000);
}

static void test_errors_name_the_line(void **state)
{
    (void)state;
    static struct rl_rules r;
    struct errs e;
    int n = parse("a messages client_ip 10 1m\n"
                  "a messages sender 10 1m\n"            /* 2: duplicate */
                  "b mails client_ip 10 1m\n"            /* 3: what */
                  "c messages somebody 10 1m\n"          /* 4: per */
                  "d connections sender 10 1m\n"         /* 5: connections per sender */
                  "e messages rcpt_domain 10 1m\n"       /* 6: rcpt_domain + messages */
                  "f messages client_ip 0 1m\n"          /* 7: limit 0 */
                  "g messages client_ip 10M 1m\n"        /* 8: unit on a count */
                  "h messages client_ip 10 8d\n"         /* 9: window too long */
                  "i messages client_ip 10 5\n"          /* 10: no unit */
                  "j messages client_ip 10\n"            /* 11: 4 words */
                  "bad/name messages client_ip 10 1m\n", /* 12: name */
                  &r, &e);
    assert_int_equal(n, 11);
    const char *want[] = {"t.rules:2: rule 'a' already defined on line 1",
                          "t.rules:3: 'mails'",
                          "t.rules:4: 'somebody'",
                          "t.rules:5: connections are counted per client_ip only",
                          "t.rules:6: rcpt_domain counts recipients only",
                          "t.rules:7: limit '0'",
                          "t.rules:8: limit '10M'",
                          "t.rules:9: window '8d'",
                          "t.rules:10: window '5'",
                          "t.rules:11: expected NAME WHAT PER LIMIT WINDOW",
                          "t.rules:12: rule name 'bad/name'"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(e.text, want[i]))
            fail_msg("missing \"%s\" in:\n%s", want[i], e.text);
    assert_int_equal(r.n, 1);
    /* a NUL byte and an overlong line */
    char text[1200];
    memset(text, 'x', sizeof text);
    text[sizeof text - 1] = 0;
    assert_int_equal(parse(text, &r, &e), 1);
    assert_non_null(strstr(e.text, "t.rules:1: line longer"));
    static const char nul[] = "a messages client_ip 1 1m\0x\n";
    memset(&e, 0, sizeof e);
    assert_int_equal(rl_rules_parse(nul, sizeof nul - 1, "t.rules", &r, collect, &e), 1);
    /* too many rules */
    static char many[RL_MAX_RULES * 40 + 100];
    size_t w = 0;
    for (int i = 0; i <= RL_MAX_RULES; i++)
        w += (size_t)snprintf(many + w, sizeof many - w, "r%d messages sender 1 1m\n", i);
    assert_int_equal(parse(many, &r, &e), 1);
    assert_int_equal(r.n, RL_MAX_RULES);
}

static void test_subjects(void **state)
{
    (void)state;
    char s[RL_SUBJECT_MAX];
    assert_int_equal(rl_subject(RL_CLIENT_IP, "192.0.2.7", 64, s, sizeof s), 0);
    assert_string_equal(s, "192.0.2.7");
    assert_int_equal(rl_subject(RL_CLIENT_IP, "::ffff:192.0.2.7", 64, s, sizeof s), 0);
    assert_string_equal(s, "192.0.2.7");
    assert_int_equal(rl_subject(RL_CLIENT_IP, "2001:db8:1:2:3:4:5:6", 64, s, sizeof s), 0);
    assert_string_equal(s, "2001:db8:1:2::/64");
    assert_int_equal(rl_subject(RL_CLIENT_IP, "2001:db8:1:2ff::1", 56, s, sizeof s), 0);
    assert_string_equal(s, "2001:db8:1:200::/56");
    assert_int_equal(rl_subject(RL_SENDER, "Ann@Example.COM", 64, s, sizeof s), 0);
    assert_string_equal(s, "ann@example.com");
    assert_int_equal(rl_subject(RL_SENDER_DOMAIN, "ann@Example.COM", 64, s, sizeof s), 0);
    assert_string_equal(s, "example.com");
    assert_int_equal(rl_subject(RL_RCPT_DOMAIN, "\"a@b\"@Dest.example", 64, s, sizeof s), 0);
    assert_string_equal(s, "dest.example");
    assert_int_equal(rl_subject(RL_AUTH_USER, "Alice", 64, s, sizeof s), 0);
    assert_string_equal(s, "Alice");
    assert_int_equal(rl_subject(RL_SENDER, "", 64, s, sizeof s), -1); /* null sender */
    assert_int_equal(rl_subject(RL_AUTH_USER, "", 64, s, sizeof s), -1);
    assert_int_equal(rl_subject(RL_SENDER_DOMAIN, "postmaster", 64, s, sizeof s), -1);
    assert_int_equal(rl_subject(RL_SENDER_DOMAIN, "a@", 64, s, sizeof s), -1);
    char longv[500];
    memset(longv, 'a', sizeof longv);
    longv[sizeof longv - 1] = 0;
    assert_int_equal(rl_subject(RL_SENDER, longv, 64, s, sizeof s), -1);
}

static void test_estimate(void **state)
{
    (void)state;
    /* at the start of a bucket the previous one counts whole */
    assert_int_equal(rl_estimate(0, 100, 60000, 60000), 100);
    /* half way: half of it */
    assert_int_equal(rl_estimate(10, 100, 90000, 60000), 60);
    /* at the end: almost none */
    assert_int_equal(rl_estimate(10, 100, 119999, 60000), 10);
    assert_int_equal(rl_estimate(5, 0, 1234, 1000), 5);
    /* huge counts do not overflow */
    assert_true(rl_estimate(1ULL << 50, 1ULL << 50, 0, 1000) == 1ULL << 51);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_file),
        cmocka_unit_test(test_rules_parsed),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_subjects),
        cmocka_unit_test(test_estimate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
