/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_man_keys: sluice.conf(5) documents exactly the keys of the
 * configuration's key tables (proxy/cfg_keys.c), so the manual cannot
 * drift from the loader. The page's source (contrib/man/sluice.conf.5.scd)
 * has one "## [section]" heading per section and one line per key that
 * starts with the key in bold ("*name* ..."). A key in a table but not on
 * the page, or on the page but in no table, fails with both names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cfg_keys.h"

#define MAN_KEYS_MAX 512

struct man_keys__entry {
    char sec[32];
    char key[64];
    int seen; /* found on the other side */
};

struct man_keys__set {
    struct man_keys__entry v[MAN_KEYS_MAX];
    size_t n;
};

static void man_keys__add(struct man_keys__set *s, const char *sec, const char *key)
{
    assert_non_null(sec);
    assert_non_null(key);
    assert_true(s->n < MAN_KEYS_MAX);
    struct man_keys__entry *e = &s->v[s->n++];
    snprintf(e->sec, sizeof e->sec, "%s", sec);
    snprintf(e->key, sizeof e->key, "%s", key);
    e->seen = 0;
}

static struct man_keys__entry *man_keys__find(struct man_keys__set *s, const char *sec,
                                              const char *key)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].sec, sec) == 0 && strcmp(s->v[i].key, key) == 0)
            return &s->v[i];
    return NULL;
}

/* The page's section name for a table entry: [listener NAME] and
 * [plugin NAME] are "listener" and "plugin". */
static const char *man_keys__sec_name(enum cfg_keys_sec sec)
{
    switch (sec) {
    case SEC_PLUGIN:
        return "plugin";
    case SEC_LISTENER:
        return "listener";
    default:
        return cfg_keys_sec_names[sec];
    }
}

/* A table declared with a count larger than its entries ends in
 * zero-filled entries (section SEC_NONE, no name), which the loader skips
 * by their section and its _Static_assert cannot see: not keys. */
static int man_keys__unused(const struct cfg_key *k)
{
    return k->sec == SEC_NONE && !k->name;
}

static void man_keys__tables(struct man_keys__set *s)
{
    for (size_t i = 0; i < CFG_KEYS_N; i++)
        if (!man_keys__unused(&cfg_keys[i]))
            man_keys__add(s, man_keys__sec_name(cfg_keys[i].sec), cfg_keys[i].name);
    for (size_t i = 0; i < CFG_KEYS_LISTENER_N; i++)
        if (!man_keys__unused(&cfg_keys_listener[i]))
            man_keys__add(s, "listener", cfg_keys_listener[i].name);
    for (size_t i = 0; i < CFG_KEYS_PLUGIN_N; i++)
        if (!man_keys__unused(&cfg_keys_plugin[i]))
            man_keys__add(s, "plugin", cfg_keys_plugin[i].name);
    for (size_t i = 0; cfg_keys_plugin_extra[i]; i++)
        man_keys__add(s, "plugin", cfg_keys_plugin_extra[i]);
}

/* The page source: SLUICE_SRC_DIR from ctest, else relative to this file
 * (CMake compiles it by its absolute path). */
static FILE *man_keys__open(void)
{
    char path[4096];
    const char *src = getenv("SLUICE_SRC_DIR");
    if (src && *src) {
        snprintf(path, sizeof path, "%s/contrib/man/sluice.conf.5.scd", src);
    } else {
        const char *me = __FILE__;
        const char *cut = strstr(me, "tests/unit/test_man_keys.c");
        assert_non_null(cut);
        snprintf(path, sizeof path, "%.*scontrib/man/sluice.conf.5.scd", (int)(cut - me), me);
    }
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    return f;
}

/* "## [server]" -> "server"; "## [listener NAME]" -> "listener". */
static int man_keys__heading(const char *line, char *sec, size_t n)
{
    if (strncmp(line, "## [", 4) != 0)
        return 0;
    size_t len = strcspn(line + 4, " ]");
    if (len == 0 || len >= n)
        return 0;
    memcpy(sec, line + 4, len);
    sec[len] = 0;
    return 1;
}

/* "*name* = ..." -> "name" (lower-case letters, digits, '_'). */
static int man_keys__key(const char *line, char *key, size_t n)
{
    if (line[0] != '*')
        return 0;
    size_t len = strspn(line + 1, "abcdefghijklmnopqrstuvwxyz0123456789_");
    if (len == 0 || len >= n || line[1 + len] != '*')
        return 0;
    memcpy(key, line + 1, len);
    key[len] = 0;
    return 1;
}

static void man_keys__page(struct man_keys__set *s)
{
    FILE *f = man_keys__open();
    char line[1024], sec[32] = "", key[64];
    int in_keys = 0, nline = 0;
    while (fgets(line, sizeof line, f)) {
        nline++;
        if (strncmp(line, "# ", 2) == 0) {
            in_keys = strncmp(line, "# KEYS", 6) == 0;
            sec[0] = 0;
            continue;
        }
        if (!in_keys)
            continue;
        if (man_keys__heading(line, sec, sizeof sec))
            continue;
        if (man_keys__key(line, key, sizeof key)) {
            if (!sec[0])
                fail_msg("sluice.conf.5.scd:%d: key %s before any ## [section]", nline, key);
            if (man_keys__find(s, sec, key))
                fail_msg("sluice.conf.5.scd:%d: [%s] %s documented twice", nline, sec, key);
            man_keys__add(s, sec, key);
        }
    }
    fclose(f);
}

static void test_every_key_documented(void **state)
{
    (void)state;
    static struct man_keys__set table, page;
    table.n = page.n = 0;
    man_keys__tables(&table);
    man_keys__page(&page);
    assert_true(page.n > 50); /* the parser found the page's keys at all */
    int bad = 0;
    for (size_t i = 0; i < table.n; i++) {
        struct man_keys__entry *p = man_keys__find(&page, table.v[i].sec, table.v[i].key);
        if (!p) {
            print_error("[%s] %s is in proxy/cfg_keys.c but not in contrib/man/sluice.conf.5.scd\n",
                        table.v[i].sec, table.v[i].key);
            bad++;
        } else {
            p->seen = 1;
        }
    }
    for (size_t i = 0; i < page.n; i++) {
        if (!page.v[i].seen) {
            print_error("[%s] %s is in contrib/man/sluice.conf.5.scd but in no key table\n",
                        page.v[i].sec, page.v[i].key);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

/* The parser itself: headings and key lines, and what is neither. */
static void test_parser_lines(void **state)
{
    (void)state;
    char out[64];
    assert_true(man_keys__heading("## [server]\n", out, sizeof out));
    assert_string_equal(out, "server");
    assert_true(man_keys__heading("## [listener NAME]\n", out, sizeof out));
    assert_string_equal(out, "listener");
    assert_false(man_keys__heading("# KEYS\n", out, sizeof out));
    assert_false(man_keys__heading("## []\n", out, sizeof out));
    assert_true(man_keys__key("*max_errors* = _N_\n", out, sizeof out));
    assert_string_equal(out, "max_errors");
    assert_true(man_keys__key("*tls_min_protocol* = *TLSv1.2*\n", out, sizeof out));
    assert_string_equal(out, "tls_min_protocol");
    assert_false(man_keys__key("\t*no* turns it off\n", out, sizeof out));
    assert_false(man_keys__key("*--listen*, *--upstream*\n", out, sizeof out));
    assert_false(man_keys__key("*Max* = 1\n", out, sizeof out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_lines),
        cmocka_unit_test(test_every_key_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
