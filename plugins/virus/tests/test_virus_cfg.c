/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_cfg: the virus keys as the host reads them (the key table through
 * the daemon's own loader, plugcfg_load, as api->config_load runs it), the
 * checks across keys, template checks (table-driven).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "plugcfg.h"
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

static const char *key_at(void *ud, size_t i)
{
    struct fake_section *s = ud;
    for (const struct kv *p = s->kv; p && p->k; p++)
        if (i-- == 0)
            return p->k;
    return NULL;
}

/* What init() does: the table (strict), then the checks across keys. */
static int vir_cfg_parse(struct vir_config *c, struct fake_section *s)
{
    memset(c, 0, sizeof *c);
    struct plugcfg_io io = {get, err, key_at, s};
    int n = plugcfg_load(vir_cfg_keys, sizeof vir_cfg_keys[0], c, SLUICE_CONFIG_STRICT, &io);
    return n + vir_cfg_check(c, err, s);
}

static void test_defaults(void **state)
{
    (void)state;
    struct vir_config c;
    struct fake_section s = {0};
    assert_int_equal(vir_cfg_parse(&c, &s), 0);
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
    struct fake_section s = {.kv = kv};
    assert_int_equal(vir_cfg_parse(&c, &s), 0);
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
        {{{"backend", "clamd"}, {"clamd", ""}}, "backend "},
        {{{"tmpdir", "tmp"}}, "tmpdir "},
        {{{"Action", "tag"}}, "Action "}, /* an unknown key */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vir_config c;
        struct fake_section s = {.kv = cases[i].kv};
        int n = vir_cfg_parse(&c, &s);
        if (strcmp(s.errkeys, cases[i].want_keys) != 0 || n == 0)
            fail_msg("case %zu: got errors on \"%s\" (%d), want \"%s\"", i, s.errkeys, n,
                     cases[i].want_keys);
    }
}

/* One value of one key through the table: 0 and the value, or -1. */
static int one(const char *key, const char *value, struct vir_config *c)
{
    struct kv kv[] = {{key, value}, {NULL, NULL}};
    struct fake_section s = {.kv = kv};
    memset(c, 0, sizeof *c);
    struct plugcfg_io io = {get, err, key_at, &s};
    return plugcfg_load(vir_cfg_keys, sizeof vir_cfg_keys[0], c, SLUICE_CONFIG_STRICT, &io) ? -1
                                                                                            : 0;
}

/*
 * Sizes and durations are the daemon's grammar now (one syntax for the
 * whole file): what [server] max_message_size or command_timeout accept.
 * The texts are the ones the plugin's own parser took before; the marked
 * ones it accepted and the daemon never did.
 */
static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        uint64_t want;
    } cases[] = {
        {"1000", 0, 1000},     {"1k", 0, 1024},   {"512K", 0, 524288}, {"25M", 0, 26214400},
        {"1G", 0, 1073741824}, {"", -1, 0},       {"M", -1, 0},        {"-1", -1, 0},
        {"10 X", -1, 0},       {"25 MiB", -1, 0}, /* was 26214400 */
        {"1.5k", -1, 0},                          /* was 1536 */
        {" 7b", -1, 0},                           /* was 7 */
        {"0", -1, 0},                             /* a valid size, below the key's 1 byte */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vir_config c;
        int rc = one("max_scan_size", cases[i].in, &c);
        uint64_t daemon;
        int drc = cfg_parse_size(cases[i].in, &daemon);
        if (rc != cases[i].rc || (rc == 0 && c.max_scan_size != cases[i].want) ||
            (cases[i].in[0] != '0' && drc != rc))
            fail_msg("size \"%s\": got rc %d value %llu (daemon %d), want rc %d value %llu",
                     cases[i].in, rc, (unsigned long long)c.max_scan_size, drc, cases[i].rc,
                     (unsigned long long)cases[i].want);
    }
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        unsigned want;
    } cases[] = {
        {"250ms", 0, 250},  {"5s", 0, 5000},   {"5", 0, 5000}, {"2m", 0, 120000},
        {"1h", 0, 3600000}, {"5 days", -1, 0}, {"s", -1, 0},   {"0.5s", -1, 0}, /* was 500 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct vir_config c;
        int rc = one("clamd_timeout", cases[i].in, &c);
        unsigned daemon;
        int drc = cfg_parse_duration_ms(cases[i].in, &daemon);
        if (rc != cases[i].rc || drc != rc || (rc == 0 && c.clamd_timeout_ms != cases[i].want))
            fail_msg("duration \"%s\": got rc %d value %u (daemon %d), want rc %d value %u",
                     cases[i].in, rc, c.clamd_timeout_ms, drc, cases[i].rc, cases[i].want);
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
