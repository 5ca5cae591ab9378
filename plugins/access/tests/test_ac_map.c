/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests of ac_map: the access plugin's map parser and lookups. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ac_map.h"

/* ---- helpers ------------------------------------------------------------- */

struct errs {
    char all[8192];
    int n;
};

static void on_err(void *arg, const char *msg)
{
    struct errs *e = arg;
    size_t l = strlen(e->all);
    snprintf(e->all + l, sizeof e->all - l, "%s\n", msg);
    e->n++;
}

static struct ac_map *parse_ok(enum ac_kind kind, const char *text)
{
    struct errs e = {{0}, 0};
    struct ac_map *m = NULL;
    int n = ac_map_parse(text, strlen(text), "t.map", kind, &m, on_err, &e);
    if (n != 0)
        fail_msg("unexpected errors:\n%s", e.all);
    assert_non_null(m);
    return m;
}

/* The errors of a bad map, all in one string. */
static struct errs parse_bad(enum ac_kind kind, const char *text, size_t len)
{
    struct errs e = {{0}, 0};
    struct ac_map *m = (struct ac_map *)1;
    int n = ac_map_parse(text, len, "t.map", kind, &m, on_err, &e);
    assert_true(n > 0);
    assert_int_equal(n, e.n);
    assert_null(m);
    return e;
}

static struct ac_scratch *sc;

static int setup(void **state)
{
    (void)state;
    sc = ac_scratch_new(10000);
    return sc ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    ac_scratch_free(sc);
    return 0;
}

/* "action:line" of the decision, or "none". */
static const char *decide(const struct ac_map *m, const char *value, const char *name)
{
    static char buf[64];
    const struct ac_rule *r = ac_map_lookup(m, sc, value, name);
    if (!r)
        return "none";
    snprintf(buf, sizeof buf, "%s:%u", ac_action_name(r->action), r->line);
    return buf;
}

struct want {
    const char *value, *name, *result;
};

static void check_all(const struct ac_map *m, const struct want *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *got = decide(m, w[i].value, w[i].name);
        if (strcmp(got, w[i].result) != 0)
            fail_msg("lookup '%s' (name '%s'): got %s, want %s", w[i].value,
                     w[i].name ? w[i].name : "", got, w[i].result);
    }
}

/* ---- tests ------------------------------------------------------------------ */

static void test_client_map(void **state)
{
    (void)state;
    struct ac_map *m = parse_ok(AC_MAP_CLIENT, "# comment\n"
                                               "\n"
                                               "192.0.2.0/24 deny Go away\n"           /* 3 */
                                               "192.0.2.7 allow\n"                     /* 4 */
                                               "192.0.2.128/25 tempfail\n"             /* 5 */
                                               "2001:DB8::/32 deny\n"                  /* 6 */
                                               "2001:db8::1 allow\n"                   /* 7 */
                                               "mail.Example.COM allow\n"              /* 8 */
                                               ".bad.example deny\n"                   /* 9 */
                                               "/^dyn-[0-9]+\\./ tempfail slow down\n" /* 10 */
                                               "10.0.0.0/8 deny   # trailing comment\n");
    static const struct want w[] = {
        {"192.0.2.7", NULL, "allow:4"}, /* exact before networks */
        {"192.0.2.1", NULL, "deny:3"},
        {"192.0.2.200", NULL, "tempfail:5"},        /* longest prefix first */
        {"::ffff:192.0.2.200", NULL, "tempfail:5"}, /* mapped is IPv4 */
        {"::ffff:192.0.2.7", NULL, "allow:4"},
        {"2001:db8::1", NULL, "allow:7"},
        {"2001:0db8:0::0001", NULL, "allow:7"}, /* any spelling */
        {"2001:db8::2", NULL, "deny:6"},
        {"198.51.100.1", NULL, "none"},
        {"198.51.100.1", "MAIL.example.com", "allow:8"},
        {"198.51.100.1", "x.y.bad.example", "deny:9"},
        {"198.51.100.1", "bad.example", "none"}, /* .domain: strictly below */
        {"198.51.100.1", "dyn-42.isp.example", "tempfail:10"},
        {"10.1.2.3", NULL, "deny:11"},
        {"not an address", "", "none"},
    };
    check_all(m, w, sizeof w / sizeof w[0]);
    const struct ac_rule *r = ac_map_lookup(m, sc, "192.0.2.1", NULL);
    assert_string_equal(r->text, "Go away");
    r = ac_map_lookup(m, sc, "10.1.2.3", NULL);
    assert_null(r->text); /* the comment is not the text */
    r = ac_map_lookup(m, sc, "1.2.3.4", "dyn-1.x");
    assert_string_equal(r->text, "slow down");
    assert_int_equal(ac_map_rules(m), 9);
    ac_map_free(m);
}

static void test_helo_map(void **state)
{
    (void)state;
    struct ac_map *m = parse_ok(AC_MAP_HELO, "localhost deny\n"
                                             "[192.0.2.1] allow\n"
                                             ".example.com tempfail\n"
                                             "a.example.com allow\n"
                                             "/^[0-9.]+$/ deny\n");
    static const struct want w[] = {
        {"LocalHost", NULL, "deny:1"},
        {"[192.0.2.1]", NULL, "allow:2"},
        {"x.example.com", NULL, "tempfail:3"},
        {"a.example.com", NULL, "allow:4"},
        {"example.com", NULL, "none"},
        {"192.0.2.1", NULL, "deny:5"},
        {"", NULL, "none"},
    };
    check_all(m, w, sizeof w / sizeof w[0]);
    ac_map_free(m);
}

static void test_address_precedence(void **state)
{
    (void)state;
    /* Written least specific first: file order must not matter. */
    struct ac_map *m = parse_ok(AC_MAP_SENDER, "/spam/ deny pattern\n"       /* 1 */
                                               ".example.com deny parent\n"  /* 2 */
                                               ".sub.example.com tempfail\n" /* 3 */
                                               "@Example.com deny domain\n"  /* 4 */
                                               "postmaster@ allow\n"         /* 5 */
                                               "boss@example.com allow\n"    /* 6 */
                                               "<> tempfail bounces later\n" /* 7 */
                                               "other.test deny\n");         /* 8 */
    static const struct want w[] = {
        {"Boss@EXAMPLE.com", NULL, "allow:6"},      /* exact */
        {"joe@example.com", NULL, "deny:4"},        /* domain */
        {"postmaster@example.com", NULL, "deny:4"}, /* domain before local part */
        {"postmaster@elsewhere.test", NULL, "allow:5"},
        {"joe@a.sub.example.com", NULL, "tempfail:3"}, /* nearest parent */
        {"joe@x.example.com", NULL, "deny:2"},
        {"joe@other.test", NULL, "deny:8"},
        {"joe@sub.other.test", NULL, "none"}, /* a domain key is that domain only */
        {"spammer@nowhere.test", NULL, "deny:1"},
        {"SPAM@nowhere.test", NULL, "deny:1"}, /* patterns ignore case */
        {"", NULL, "tempfail:7"},
        {"nobody@nowhere.test", NULL, "none"},
    };
    check_all(m, w, sizeof w / sizeof w[0]);
    ac_map_free(m);

    m = parse_ok(AC_MAP_RCPT, "postmaster@ deny\n/^$/ allow\n");
    static const struct want w2[] = {
        {"postmaster", NULL, "deny:1"}, /* no domain: the local part */
        {"PostMaster@x.test", NULL, "deny:1"},
        {"", NULL, "allow:2"},
    };
    check_all(m, w2, sizeof w2 / sizeof w2[0]);
    ac_map_free(m);
}

static void test_null_sender_pattern(void **state)
{
    (void)state;
    struct ac_map *m = parse_ok(AC_MAP_SENDER, "/^$/ deny no bounces\n");
    assert_string_equal(decide(m, "", NULL), "deny:1");
    assert_string_equal(decide(m, "a@b", NULL), "none");
    ac_map_free(m);
}

static void test_actions_and_text(void **state)
{
    (void)state;
    struct ac_map *m = parse_ok(AC_MAP_SENDER, "a@x.test DENY   Not  you   \n"
                                               "b@x.test TempFail\ttry later\n"
                                               "c@x.test allow\r\n"
                                               "d@x.test deny see http://x.test/#a\n");
    const struct ac_rule *r = ac_map_lookup(m, sc, "a@x.test", NULL);
    assert_int_equal(r->action, AC_DENY);
    assert_string_equal(r->text, "Not  you");
    r = ac_map_lookup(m, sc, "b@x.test", NULL);
    assert_int_equal(r->action, AC_TEMPFAIL);
    assert_string_equal(r->text, "try later");
    r = ac_map_lookup(m, sc, "c@x.test", NULL);
    assert_int_equal(r->action, AC_ALLOW);
    assert_null(r->text);
    r = ac_map_lookup(m, sc, "d@x.test", NULL);
    assert_string_equal(r->text, "see http://x.test/#a"); /* '#' without a blank before */
    ac_map_free(m);
}

static void test_pattern_slash_and_flags(void **state)
{
    (void)state;
    struct ac_map *m = parse_ok(AC_MAP_RCPT, "/a\\/b@/i deny slash\n");
    assert_string_equal(decide(m, "A/B@x.test", NULL), "deny:1");
    ac_map_free(m);
}

static void test_errors_name_file_and_line(void **state)
{
    (void)state;
    static const struct {
        enum ac_kind kind;
        const char *text, *want;
    } cases[] = {
        {AC_MAP_CLIENT, "10.0.0.1/8 deny\n", "t.map:1: "},
        {AC_MAP_CLIENT, "ok.test allow\n10.0.0.0/33 deny\n", "t.map:2: "},
        {AC_MAP_CLIENT, "192.168 deny\n", "t.map:1: '192.168' is not an address"},
        {AC_MAP_CLIENT, "a..b deny\n", "t.map:1: 'a..b' is neither"},
        {AC_MAP_CLIENT, "1.2.3.4 block\n", "t.map:1: unknown action 'block'"},
        {AC_MAP_CLIENT, "1.2.3.4\n", "t.map:1: key without an action"},
        {AC_MAP_HELO, "x allow text\n", "t.map:1: allow takes no text"},
        {AC_MAP_HELO, "/a(/ deny\n",
         "t.map:1: bad pattern /a(/: missing closing parenthesis at offset 2"},
        {AC_MAP_HELO, "/abc deny\n", "t.map:1: pattern without its closing '/'"},
        {AC_MAP_HELO, "/abc/x deny\n", "t.map:1: unknown pattern flag 'x'"},
        {AC_MAP_HELO, "// deny\n", "t.map:1: empty pattern"},
        {AC_MAP_HELO, "/(*LIMIT_MATCH=99999999)a/ deny\n", "t.map:1: (*VERB)"},
        {AC_MAP_RCPT, "<> deny\n", "t.map:1: <> (the null sender) only in a sender map"},
        {AC_MAP_SENDER, "<a@b> deny\n", "t.map:1: '<a@b>': write addresses without <>"},
        {AC_MAP_SENDER, "10.0.0.0/8 deny\n", "t.map:1: '10.0.0.0/8' is not a domain"},
        {AC_MAP_SENDER, "a@[192.0.2.1] deny\n@[IPv6:2001:db8::1] deny\nx@b_c.d-e allow\n", NULL},
        {AC_MAP_CLIENT, "host!name deny\n", "t.map:1: 'host!name' is neither"},
        {AC_MAP_SENDER, "@ deny\n", "t.map:1: '@' is not a domain"},
        {AC_MAP_SENDER, "a@b..c deny\n", "t.map:1: 'a@b..c': the domain is not valid"},
        {AC_MAP_SENDER, "a@b.c deny caf\xc3\xa9\n",
         "t.map:1: reply text: character 4 is not printable"},
        {AC_MAP_SENDER, "a@b.c deny \x01\n", "t.map:1: reply text"},
        {AC_MAP_SENDER, "a@b.c allow\n\nA@B.C deny\n",
         "t.map:3: duplicate key 'a@b.c' (first on line 1)"},
        {AC_MAP_SENDER, "x@ allow\nX@ deny\n", "t.map:2: duplicate key 'x@' (first on line 1)"},
        {AC_MAP_SENDER, "<> allow\n<> deny\n", "t.map:2: duplicate key '<>' (first on line 1)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!cases[i].want) { /* valid keys beside the bad ones */
            ac_map_free(parse_ok(cases[i].kind, cases[i].text));
            continue;
        }
        struct errs e = parse_bad(cases[i].kind, cases[i].text, strlen(cases[i].text));
        if (!strstr(e.all, cases[i].want))
            fail_msg("case %zu: want '%s' in:\n%s", i, cases[i].want, e.all);
    }
}

static void test_every_bad_line_reported(void **state)
{
    (void)state;
    static const char text[] = "good.test allow\n"
                               "bad..test deny\n"
                               "x.test nope\n"
                               "a\0b deny\n"
                               "/(/ deny\n";
    struct errs e = parse_bad(AC_MAP_CLIENT, text, sizeof text - 1);
    assert_int_equal(e.n, 4);
    assert_non_null(strstr(e.all, "t.map:2: "));
    assert_non_null(strstr(e.all, "t.map:3: "));
    assert_non_null(strstr(e.all, "t.map:4: NUL byte"));
    assert_non_null(strstr(e.all, "t.map:5: bad pattern"));
    for (const char *c = e.all; *c; c++)
        assert_true(*c == '\n' || (*c >= 0x20 && *c < 0x7f));
}

static void test_bounds(void **state)
{
    (void)state;
    char *line = malloc(AC_LINE_MAX + 100);
    memset(line, 'a', AC_LINE_MAX + 1);
    strcpy(line + AC_LINE_MAX + 1, " deny\n");
    struct errs e = parse_bad(AC_MAP_HELO, line, strlen(line));
    assert_non_null(strstr(e.all, "t.map:1: line longer than"));
    memset(line, 'a', AC_KEY_MAX + 1);
    strcpy(line + AC_KEY_MAX + 1, " deny\n");
    e = parse_bad(AC_MAP_HELO, line, strlen(line));
    assert_non_null(strstr(e.all, "t.map:1: key longer than"));
    strcpy(line, "x deny ");
    memset(line + 7, 'b', AC_TEXT_MAX + 1);
    strcpy(line + 7 + AC_TEXT_MAX + 1, "\n");
    e = parse_bad(AC_MAP_HELO, line, strlen(line));
    assert_non_null(strstr(e.all, "t.map:1: reply text longer than"));
    free(line);

    /* A value longer than any key only reaches the patterns. */
    struct ac_map *m = parse_ok(AC_MAP_RCPT, "example.com deny\n/^z+@/ tempfail\n");
    char *v = malloc(5000);
    memset(v, 'z', 4000);
    strcpy(v + 4000, "@example.com");
    assert_string_equal(decide(m, v, NULL), "deny:1");
    memset(v, 'z', 4990);
    v[4990] = 0;
    strcat(v, "@x");
    assert_string_equal(decide(m, v, NULL), "tempfail:2");
    free(v);
    ac_map_free(m);
}

static void test_match_limit(void **state)
{
    (void)state;
    struct ac_map *m = parse_ok(AC_MAP_HELO, "/^(a+)+$/ deny\nb allow\n");
    char v[64];
    memset(v, 'a', 40);
    strcpy(v + 40, "b");
    uint64_t before = ac_scratch_limited(sc);
    assert_string_equal(decide(m, v, NULL), "none"); /* stopped: no match */
    assert_true(ac_scratch_limited(sc) > before);
    ac_map_free(m);
}

/* Many exact keys: found by binary search, each one. */
static void test_large_map(void **state)
{
    (void)state;
    size_t n = 50000;
    char *text = malloc(n * 40);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(text + len, "user%zu@d%zu.example %s\n", i, i % 97,
                               i % 2 ? "deny" : "allow");
    struct errs e = {{0}, 0};
    struct ac_map *m = NULL;
    assert_int_equal(ac_map_parse(text, len, "big.map", AC_MAP_SENDER, &m, on_err, &e), 0);
    for (size_t i = 0; i < n; i += 997) {
        char v[64], want[32];
        snprintf(v, sizeof v, "USER%zu@D%zu.example", i, i % 97);
        snprintf(want, sizeof want, "%s:%zu", i % 2 ? "deny" : "allow", i + 1);
        assert_string_equal(decide(m, v, NULL), want);
    }
    assert_string_equal(decide(m, "user1@d2.example", NULL), "none");
    ac_map_free(m);
    free(text);
}

static void test_shipped_maps_parse(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        enum ac_kind kind;
    } maps[] = {{"client.map", AC_MAP_CLIENT},
                {"helo.map", AC_MAP_HELO},
                {"sender.map", AC_MAP_SENDER},
                {"recipient.map", AC_MAP_RCPT}};
    for (size_t i = 0; i < 4; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", AC_SAMPLE_DIR, maps[i].file);
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        static char buf[65536];
        size_t n = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        struct errs e = {{0}, 0};
        struct ac_map *m = NULL;
        if (ac_map_parse(buf, n, path, maps[i].kind, &m, on_err, &e) != 0)
            fail_msg("%s", e.all);
        assert_true(ac_map_rules(m) > 0);
        ac_map_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_map),
        cmocka_unit_test(test_helo_map),
        cmocka_unit_test(test_address_precedence),
        cmocka_unit_test(test_null_sender_pattern),
        cmocka_unit_test(test_actions_and_text),
        cmocka_unit_test(test_pattern_slash_and_flags),
        cmocka_unit_test(test_errors_name_file_and_line),
        cmocka_unit_test(test_every_bad_line_reported),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_match_limit),
        cmocka_unit_test(test_large_map),
        cmocka_unit_test(test_shipped_maps_parse),
    };
    return cmocka_run_group_tests_name("ac_map", tests, setup, teardown);
}
