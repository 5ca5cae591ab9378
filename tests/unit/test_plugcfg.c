/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * plugcfg: the typed keys of plugin sections. Table-driven: a section as a
 * key/value list, a key table, what lands in the struct and which keys get
 * which message. The grammar cases are the daemon's own (test_cfg.c): a
 * value is accepted or refused in a plugin section exactly as in [server].
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "plugcfg.h"

struct kv {
    const char *k, *v;
};

struct fake {
    const struct kv *kv;
    char errs[2048]; /* "key: msg\n" per problem */
};

static const char *fake_get(void *ud, const char *key)
{
    struct fake *f = ud;
    const char *v = NULL;
    for (const struct kv *p = f->kv; p && p->k; p++)
        if (strcmp(p->k, key) == 0)
            v = p->v; /* the last one wins, as in cfg_get */
    return v;
}

static void fake_err(void *ud, const char *key, const char *msg)
{
    struct fake *f = ud;
    size_t n = strlen(f->errs);
    snprintf(f->errs + n, sizeof f->errs - n, "%s: %s\n", key ? key : "-", msg);
}

static const char *fake_key_at(void *ud, size_t i)
{
    struct fake *f = ud;
    for (const struct kv *p = f->kv; p && p->k; p++)
        if (i-- == 0)
            return p->k;
    return NULL;
}

struct conf {
    bool flag;
    unsigned n;
    unsigned ms;
    uint64_t size;
    int mode;
    const char *path;
    const char *text;
};

static const char *const modes[] = {"verify", "sign", NULL};

static const struct sluice_config_key keys[] = {
    {.name = "flag",
     .type = SLUICE_CONFIG_BOOL,
     .offset = offsetof(struct conf, flag),
     .def = "yes"},
    {.name = "n",
     .type = SLUICE_CONFIG_UNSIGNED,
     .offset = offsetof(struct conf, n),
     .def = "7",
     .min = 1,
     .max = 100},
    {.name = "ms",
     .type = SLUICE_CONFIG_DURATION,
     .offset = offsetof(struct conf, ms),
     .def = "5s",
     .min = 100,
     .max = 60000},
    {.name = "size",
     .type = SLUICE_CONFIG_SIZE,
     .offset = offsetof(struct conf, size),
     .def = "256k",
     .min = 1024,
     .max = 64ULL << 20},
    {.name = "mode",
     .type = SLUICE_CONFIG_ENUM,
     .offset = offsetof(struct conf, mode),
     .def = "verify",
     .choices = modes},
    {.name = "path",
     .type = SLUICE_CONFIG_PATH,
     .offset = offsetof(struct conf, path),
     .flags = SLUICE_CONFIG_ABSOLUTE},
    {.name = "text",
     .type = SLUICE_CONFIG_STRING,
     .offset = offsetof(struct conf, text),
     .def = "hello",
     .flags = SLUICE_CONFIG_PRINTABLE,
     .max = 10},
    {.name = NULL},
};

static int load(const struct kv *kv, struct conf *c, struct fake *f, uint32_t flags)
{
    memset(f, 0, sizeof *f);
    f->kv = kv;
    memset(c, 0, sizeof *c);
    struct plugcfg_io io = {fake_get, fake_err, fake_key_at, f};
    return plugcfg_load(keys, sizeof keys[0], c, flags, &io);
}

static void test_defaults(void **state)
{
    (void)state;
    struct conf c;
    struct fake f;
    assert_int_equal(load(NULL, &c, &f, SLUICE_CONFIG_STRICT), 0);
    assert_string_equal(f.errs, "");
    assert_true(c.flag);
    assert_int_equal(c.n, 7);
    assert_int_equal(c.ms, 5000);
    assert_true(c.size == 256 * 1024);
    assert_int_equal(c.mode, 0);
    assert_null(c.path);
    assert_string_equal(c.text, "hello");
}

static void test_values(void **state)
{
    (void)state;
    static const struct kv kv[] = {
        {"flag", "Off"},    {"n", "100"}, {"ms", "250ms"},   {"size", "25M"},    {"mode", "sign"},
        {"path", "/etc/x"}, {"text", ""}, {"timeout", "5s"}, {"failure", "tag"}, {NULL, NULL},
    };
    struct conf c;
    struct fake f;
    assert_int_equal(load(kv, &c, &f, SLUICE_CONFIG_STRICT), 0);
    assert_string_equal(f.errs, "");
    assert_false(c.flag);
    assert_int_equal(c.n, 100);
    assert_int_equal(c.ms, 250);
    assert_true(c.size == 25u << 20);
    assert_int_equal(c.mode, 1);
    assert_string_equal(c.path, "/etc/x");
    assert_string_equal(c.text, "hello"); /* "" is unset without KEEP_EMPTY */
}

/* got (key = value) -> want the message; every key checked in one run. */
static void test_errors(void **state)
{
    (void)state;
    static const struct {
        struct kv kv[3];
        const char *want;
    } cases[] = {
        {{{"flag", "maybe"}}, "flag: expected yes or no, not 'maybe'\n"},
        {{{"n", "0"}}, "n: 0 is out of range (1..100)\n"},
        {{{"n", "-1"}}, "n: not a number '-1'\n"},
        {{{"n", "1e3"}}, "n: not a number '1e3'\n"},
        {{{"ms", "1.5s"}}, "ms: not a duration '1.5s' (use e.g. 500ms, 30s, 5m, 1h)\n"},
        {{{"ms", "2h"}}, "ms: 2h is out of range (100ms..1m)\n"},
        {{{"ms", "7d"}}, "ms: not a duration '7d' (use e.g. 500ms, 30s, 5m, 1h)\n"},
        {{{"size", "25 MiB"}}, "size: not a size '25 MiB' (use e.g. 65536, 64k, 25M, 1G)\n"},
        {{{"size", "1.5k"}}, "size: not a size '1.5k' (use e.g. 65536, 64k, 25M, 1G)\n"},
        {{{"size", "128M"}}, "size: 128M is out of range (1k..64M)\n"},
        {{{"mode", "Sign"}}, "mode: expected verify|sign, not 'Sign'\n"},
        {{{"path", "rel/x"}}, "path: 'rel/x' is not an absolute path\n"},
        {{{"text", "caf\xc3\xa9"}}, "text: only printable ASCII is allowed\n"},
        {{{"text", "12345678901"}}, "text: longer than 10 characters\n"},
        {{{"bogus", "1"}}, "bogus: unknown key for this plugin\n"},
        {{{"bogus", "1"}, {"bogus", "2"}}, "bogus: unknown key for this plugin\n"},
        {{{"n", "x"}, {"ms", "x"}},
         "n: not a number 'x'\nms: not a duration 'x' (use e.g. 500ms, 30s, 5m, 1h)\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct conf c;
        struct fake f;
        int n = load(cases[i].kv, &c, &f, SLUICE_CONFIG_STRICT);
        if (n == 0 || strcmp(f.errs, cases[i].want) != 0)
            fail_msg("case %zu: got %d \"%s\", want \"%s\"", i, n, f.errs, cases[i].want);
    }
}

/* Without STRICT, keys the table does not name are the plugin's business. */
static void test_not_strict(void **state)
{
    (void)state;
    static const struct kv kv[] = {{"bogus", "1"}, {NULL, NULL}};
    struct conf c;
    struct fake f;
    assert_int_equal(load(kv, &c, &f, 0), 0);
    assert_string_equal(f.errs, "");
}

static void test_required_and_bad_defaults(void **state)
{
    (void)state;
    static const struct sluice_config_key req[] = {
        {.name = "mode",
         .type = SLUICE_CONFIG_ENUM,
         .offset = offsetof(struct conf, mode),
         .choices = modes,
         .flags = SLUICE_CONFIG_REQUIRED},
        {.name = "ms",
         .type = SLUICE_CONFIG_DURATION,
         .offset = offsetof(struct conf, ms),
         .def = "soon"},
        {.name = "n", .type = 99, .offset = offsetof(struct conf, n)},
        {.name = NULL},
    };
    struct conf c = {0};
    struct fake f = {0};
    struct plugcfg_io io = {fake_get, fake_err, fake_key_at, &f};
    assert_int_equal(plugcfg_load(req, sizeof req[0], &c, 0, &io), 3);
    assert_string_equal(
        f.errs,
        "mode: required key missing\n"
        "ms: default not a duration 'soon' (use e.g. 500ms, 30s, 5m, 1h) (a bug in the plugin)\n"
        "n: unknown key type 99 in the plugin's key table (a bug in the plugin)\n");
}

/* A table built with a larger (future) key struct: the stride is honoured. */
static void test_key_size(void **state)
{
    (void)state;
    struct big {
        struct sluice_config_key k;
        uint64_t future;
    } big[] = {
        {{.name = "n",
          .type = SLUICE_CONFIG_UNSIGNED,
          .offset = offsetof(struct conf, n),
          .def = "3"},
         1},
        {{.name = "flag",
          .type = SLUICE_CONFIG_BOOL,
          .offset = offsetof(struct conf, flag),
          .def = "on"},
         2},
        {{.name = NULL}, 0},
    };
    struct conf c = {0};
    struct fake f = {0};
    struct plugcfg_io io = {fake_get, fake_err, fake_key_at, &f};
    assert_int_equal(plugcfg_load(&big[0].k, sizeof big[0], &c, 0, &io), 0);
    assert_int_equal(c.n, 3);
    assert_true(c.flag);
    /* Smaller than the first published struct: refused, not misread. */
    assert_int_equal(plugcfg_load(&big[0].k, 8, &c, 0, &io), 1);
}

/* The daemon's own grammar decides: the same texts as test_cfg's cases. */
static void test_same_grammar_as_daemon(void **state)
{
    (void)state;
    static const char *const durations[] = {"30s",  "500ms", "5m", "1h", "1.5s",
                                            "10 s", "10d",   "",   "-1"};
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        unsigned daemon;
        bool daemon_ok = cfg_parse_duration_ms(durations[i], &daemon) == 0;
        struct kv kv[] = {{"ms", durations[i]}, {NULL, NULL}};
        static const struct sluice_config_key k[] = {
            {.name = "ms", .type = SLUICE_CONFIG_DURATION, .offset = offsetof(struct conf, ms)},
            {.name = NULL},
        };
        struct conf c = {0};
        struct fake f = {.kv = kv};
        struct plugcfg_io io = {fake_get, fake_err, fake_key_at, &f};
        bool plugin_ok = plugcfg_load(k, sizeof k[0], &c, 0, &io) == 0;
        if (plugin_ok != daemon_ok || (plugin_ok && c.ms != daemon))
            fail_msg("'%s': daemon %d, plugin %d", durations[i], daemon_ok, plugin_ok);
    }
}

static void test_host_keys(void **state)
{
    (void)state;
    assert_true(plugcfg_host_key("timeout"));
    assert_true(plugcfg_host_key("quarantine_reply"));
    assert_true(plugcfg_host_key("breaker_cooldown"));
    assert_false(plugcfg_host_key("rules"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_not_strict),
        cmocka_unit_test(test_required_and_bad_defaults),
        cmocka_unit_test(test_key_size),
        cmocka_unit_test(test_same_grammar_as_daemon),
        cmocka_unit_test(test_host_keys),
    };
    return cmocka_run_group_tests_name("plugcfg", tests, NULL, NULL);
}
