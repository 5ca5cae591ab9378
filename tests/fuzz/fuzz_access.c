/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz plugins/access/ac_map: the map parser and its lookups.
 *
 * Input: the first byte picks the map kind (client, HELO, sender,
 * recipient); the rest is the map file. Its first bytes also serve as a
 * value (and reverse name) to look up.
 *
 * Invariants: every problem is one printable line naming the file and a
 * line of the text, and a map is accepted exactly when none is reported;
 * in an accepted map, a key written as an exact value (a HELO word, a
 * client address or host name, an address with '@' in a sender or
 * recipient map) looked up as that value finds its own line, whatever
 * else the map holds (exact keys come first, duplicates are refused);
 * a lookup of any bytes returns no rule or a rule of the map (a line of
 * the text, a known action, a printable text of bounded length).
 */
#include "fuzz.h"

#include <string.h>

#include "ac_map.h"

struct errs {
    size_t n;
    unsigned max_line;
};

static void on_err(void *arg, const char *msg)
{
    struct errs *e = arg;
    FUZZ_CHECK(strncmp(msg, "f.map:", 6) == 0);
    unsigned line = (unsigned)strtoul(msg + 6, NULL, 10);
    FUZZ_CHECK(line >= 1 && line <= e->max_line);
    for (const char *c = msg; *c; c++)
        FUZZ_CHECK((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
    e->n++;
}

static void check_rule(const struct ac_rule *r, unsigned max_line)
{
    if (!r)
        return;
    FUZZ_CHECK(r->line >= 1 && r->line <= max_line);
    FUZZ_CHECK(r->action == AC_ALLOW || r->action == AC_DENY || r->action == AC_TEMPFAIL);
    if (r->text) {
        FUZZ_CHECK(r->action != AC_ALLOW);
        size_t n = strlen(r->text);
        FUZZ_CHECK(n >= 1 && n <= AC_TEXT_MAX);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK((unsigned char)r->text[i] >= 0x20 && (unsigned char)r->text[i] < 0x7f);
    }
}

/* The first word of each line that is an exact key: found at its line. */
static void check_exact_keys(const struct ac_map *m, struct ac_scratch *sc, enum ac_kind kind,
                             const char *text, size_t len)
{
    unsigned line = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        const char *w = p;
        while (w < le && (*w == ' ' || *w == '\t' || *w == '\r'))
            w++;
        const char *we = w;
        while (we < le && *we != ' ' && *we != '\t' && *we != '\r')
            we++;
        p = nl ? nl + 1 : end;
        size_t wl = (size_t)(we - w);
        if (wl == 0 || wl > 200 || *w == '#' || *w == '/' || *w == '.')
            continue;
        char key[256];
        memcpy(key, w, wl);
        key[wl] = 0;
        const struct ac_rule *r = NULL;
        switch (kind) {
        case AC_MAP_CLIENT:
            if (strchr(key, '/'))
                continue;
            r = ac_map_lookup(m, sc, key, key);
            break;
        case AC_MAP_HELO:
            r = ac_map_lookup(m, sc, key, NULL);
            break;
        default:
            if (!strchr(key, '@') || strcmp(key, "<>") == 0)
                continue;
            r = ac_map_lookup(m, sc, key, NULL);
            break;
        }
        FUZZ_CHECK(r != NULL && r->line == line);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ac_scratch *sc;
    if (!sc)
        sc = ac_scratch_new(10000);
    FUZZ_CHECK(sc != NULL);
    if (size == 0)
        return 0;
    enum ac_kind kind = (enum ac_kind)(data[0] % AC_MAP_KINDS);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    struct errs e = {.max_line = 1};
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            e.max_line++;
    struct ac_map *m = NULL;
    int n = ac_map_parse(text, len, "f.map", kind, &m, on_err, &e);
    FUZZ_CHECK(n >= 0 && (size_t)n == e.n);
    FUZZ_CHECK((n == 0) == (m != NULL));
    if (!m)
        return 0;
    FUZZ_CHECK(ac_map_kind(m) == kind);
    FUZZ_CHECK(ac_map_rules(m) <= e.max_line);
    check_exact_keys(m, sc, kind, text, len);

    char value[96];
    size_t vl = len < sizeof value - 1 ? len : sizeof value - 1;
    memcpy(value, text, vl);
    value[vl] = 0;
    check_rule(ac_map_lookup(m, sc, value, value), e.max_line);
    check_rule(ac_map_lookup(m, sc, "", ""), e.max_line);
    check_rule(ac_map_lookup(m, sc, "192.0.2.1", "mail.example.com"), e.max_line);
    check_rule(ac_map_lookup(m, sc, "::ffff:10.1.2.3", NULL), e.max_line);
    check_rule(ac_map_lookup(m, sc, "User@Sub.Example.COM", NULL), e.max_line);
    ac_map_free(m);
    return 0;
}
