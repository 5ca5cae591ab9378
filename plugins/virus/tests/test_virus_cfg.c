/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vir_cfg: key parsing, value parsers, template checks (table-driven). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "vir_cfg.h"

/* A config section as a NULL-terminated key/value list. */
struct kv {
    const char *k, *v;
};

struct fake_section {
    const struct kv *kv;
    char errkeys[512]; /* "key1 key2 " of reported errors */
    char lastmsg[512];
};

static const char *get(void *ud, const char *key)
{
    struct fake_section *s = ud;
    for (const struct kv *p = s->kv; p && p->k; p++)
        if (!strcmp(p->k, key))
            return p->v;
    return NULL;
}

static void err(void *ud, const char *key, const char *msg)
{
    struct fake_section *s = ud;
    size_t n = strlen(s->errkeys);
    snprintf(s->errkeys + n, sizeof s->errkeys - n, "%s ", key ? key : "-");
    snprintf(s->lastmsg, sizeof s->lastmsg, "%s", msg);
}

static void test_defaults(void **state)
{
    (void)state;
    struct vir_config c;
    vir_cfg_defaults(&c);
    struct fake_section s = {0};
    assert_int_equal(vir_cfg_parse(&c, get, err, &s), 0);
    assert_int_equal(c.backend, VIR_BACKEND_LIBCLAMAV);
    assert_string_equal(c.database, "/var/lib/clamav");
    assert_int_equal(c.action, VIR_ACT_REJECT);
    assert_int_equal(c.limit_action, VIR_LIM_TEMPFAIL);
    assert_int_equal(c.failure, VIR_FAIL_TEMPFAIL);
    assert_string_equal(c.reject_text, "Virus found: %s");
    assert_true(c.max_scan_size == 25u << 20);
    assert_int_equal(c.max_recursion, 16);
    assert_int_equal(c.max_scan_time_ms, 20000);
    assert_true(c.cache);
    assert_false(c.scanned_header);
}

static void test_all_keys(void **state)
{
    (void)state;
    static const struct kv kv[] = {
        {"backend", "clamd"},
        {"database", "/srv/db"},
        {"tmpdir", "/run/sluice/tmp"},
        {"reload_check", "250ms"},
        {"cache", "no"},
        {"clamd", "unix:/run/clamd.sock"},
        {"clamd_connect_timeout", "1s"},
        {"clamd_timeout", "2m"},
        {"max_scan_size", "10M"},
        {"max_file_size", "512k"},
        {"max_recursion", "5"},
        {"max_files", "100"},
        {"max_scan_time", "3s"},
        {"action", "quarantine"},
        {"limit_action", "tag"},
        {"failure", "accept"},
        {"reject_text", "Infected by %s (100%%)"},
        {"scanned_header", "yes"},
        {NULL, NULL},
    };
    struct vir_config c;
    vir_cfg_defaults(&c);
    struct fake_section s = {.kv = kv};
    assert_int_equal(vir_cfg_parse(&c, get, err, &s), 0);
    assert_string_equal(s.errkeys, "");
    assert_int_equal(c.backend, VIR_BACKEND_CLAMD);
    assert_string_equal(c.database, "/srv/db");
    assert_string_equal(c.tmpdir, "/run/sluice/tmp");
    assert_int_equal(c.reload_check_ms, 250);
    assert_false(c.cache);
    assert_string_equal(c.clamd, "unix:/run/clamd.sock");
    assert_int_equal(c.clamd_connect_timeout_ms, 1000);
    assert_int_equal(c.clamd_timeout_ms, 120000);
    assert_true(c.max_scan_size == 10u << 20);
    assert_true(c.max_file_size == 512u << 10);
    assert_int_equal(c.max_recursion, 5);
    assert_int_equal(c.max_files, 100);
    assert_int_equal(c.max_scan_time_ms, 3000);
    assert_int_equal(c.action, VIR_ACT_QUARANTINE);
    assert_int_equal(c.limit_action, VIR_LIM_TAG);
    assert_int_equal(c.failure, VIR_FAIL_ACCEPT);
    assert_string_equal(c.reject_text, "Infected by %s (100%%)");
    assert_true(c.scanned_header);
}

/* Each bad value is reported against its own key; all are reported. */
static void test_errors(void **state)
{
    (void)state;
    static const struct {
        struct kv kv[3];
        const char *want_keys;
    } cases[] = {
        {{{"backend", "clamav"}}, "backend "},
        {{{"backend", "clamd"}}, "backend "}, /* clamd key missing */
        {{{"database", "relative/dir"}}, "database "},
        {{{"action", "drop"}}, "action "},
        {{{"limit_action", "accept"}}, "limit_action "},
        {{{"max_scan_size", "10X"}}, "max_scan_size "},
        {{{"max_scan_size", "0"}}, "max_scan_size "},
        {{{"max_scan_size", "8G"}}, "max_scan_size "},
        {{{"max_recursion", "-1"}}, "max_recursion "},
        {{{"max_recursion", "101"}}, "max_recursion "},
        {{{"max_files", "1e3"}}, "max_files "},
        {{{"max_scan_time", "soon"}}, "max_scan_time "},
        {{{"reload_check", "-5s"}}, "reload_check "},
        {{{"cache", "maybe"}}, "cache "},
        {{{"scanned_header", "2"}}, "scanned_header "},
        {{{"reject_text", "%s and %s"}}, "reject_text "},
        {{{"reject_text", "100% bad"}}, "reject_text "},
        {{{"reject_text", "%d"}}, "reject_text "},
        {{{"reject_text", ""}}, "reject_text "},
        {{{"clamd_timeout", "0"}}, "clamd_timeout "},
        {{{"action", "tag"}, {"max_files", "x"}}, "max_files "},
        {{{"action", "nope"}, {"max_files", "x"}}, "max_files action "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vir_config c;
        vir_cfg_defaults(&c);
        struct fake_section s = {.kv = cases[i].kv};
        int n = vir_cfg_parse(&c, get, err, &s);
        if (strcmp(s.errkeys, cases[i].want_keys) != 0 || n == 0)
            fail_msg("case %zu: got errors on \"%s\" (%d), want \"%s\"", i, s.errkeys, n,
                     cases[i].want_keys);
    }
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        uint64_t want;
    } cases[] = {
        {"1000", 0, 1000},      {"1k", 0, 1024},         {"512K", 0, 524288},
        {"25M", 0, 26214400},   {"25 MiB", 0, 26214400}, {"1G", 0, 1073741824},
        {"1.5k", 0, 1536},      {"0", 0, 0},             {"", -1, 0},
        {"M", -1, 0},           {"-1", -1, 0},           {"10 X", -1, 0},
        {" 7b", 0, 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t got = 0;
        int rc = vir_cfg_size(cases[i].in, &got);
        if (rc != cases[i].rc || (rc == 0 && got != cases[i].want))
            fail_msg("size \"%s\": got rc %d value %llu, want rc %d value %llu", cases[i].in,
                     rc, (unsigned long long)got, cases[i].rc,
                     (unsigned long long)cases[i].want);
    }
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        uint64_t want;
    } cases[] = {
        {"250ms", 0, 250}, {"5s", 0, 5000},   {"5", 0, 5000},    {"2m", 0, 120000},
        {"1h", 0, 3600000}, {"0.5s", 0, 500}, {"5 days", -1, 0}, {"s", -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t got = 0;
        int rc = vir_cfg_duration_ms(cases[i].in, &got);
        if (rc != cases[i].rc || (rc == 0 && got != cases[i].want))
            fail_msg("duration \"%s\": got rc %d value %llu, want rc %d value %llu",
                     cases[i].in, rc, (unsigned long long)got, cases[i].rc,
                     (unsigned long long)cases[i].want);
    }
}

static void test_templates(void **state)
{
    (void)state;
    static const struct {
        const char *t;
        int rc;
    } cases[] = {
        {"Virus found: %s", 0}, {"No name", 0},       {"100%% sure: %s", 0},
        {"%s %s", -1},          {"50% off", -1},      {"tab\there", -1},
        {"caf\xc3\xa9 %s", -1}, {"trailing %", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = NULL;
        int rc = vir_cfg_check_template(cases[i].t, &why);
        if (rc != cases[i].rc)
            fail_msg("template \"%s\": got %d (%s), want %d", cases[i].t, rc, why ? why : "",
                     cases[i].rc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),  cmocka_unit_test(test_all_keys),
        cmocka_unit_test(test_errors),    cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_durations), cmocka_unit_test(test_templates),
    };
    return cmocka_run_group_tests_name("virus_cfg", tests, NULL, NULL);
}
