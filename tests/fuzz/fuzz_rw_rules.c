/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz the rewrite rule-file parser (rw_rules), with "map m" reaching a
 * fuzzed map file (fuzz_file.h).
 *
 * Invariants: the rule set is refused exactly when errors are reported;
 * each error names a file, a line within it and a one-line message. Every
 * rule has a known kind; header rules name a field; the text that ends up
 * in a header (added, prepended, appended, replacement values and the
 * subject tag) holds no CR, LF or NUL; address rules name their target;
 * map files are sorted, lower-cased and rw_map_get() finds each key's
 * value; conditions and networks are well formed.
 *
 * Input: RULES NUL MAPFILE.
 */
#include "fuzz.h"
#include "fuzz_file.h"

#include <ctype.h>
#include <string.h>
#include <sys/socket.h>

#include "rw_rules.h"

static size_t nlines(const char *p, size_t n)
{
    size_t l = 1;
    for (size_t i = 0; i < n; i++)
        l += p[i] == '\n';
    return l;
}

static void check_map(const struct rw_map *m)
{
    FUZZ_CHECK(m->path != NULL);
    for (size_t i = 0; i < m->n; i++) {
        const struct rw_map_entry *e = &m->e[i];

        FUZZ_CHECK(e->key && e->value && e->key[0]);
        for (const char *p = e->key; *p; p++)
            FUZZ_CHECK(!isupper((unsigned char)*p));
        if (i > 0)
            FUZZ_CHECK(strcmp(m->e[i - 1].key, e->key) < 0);
        const char *v = rw_map_get(m, e->key);
        FUZZ_CHECK(v != NULL && strcmp(v, e->value) == 0);
    }
}

static void check_rule(const struct rw_rule *r)
{
    FUZZ_CHECK(r->kind <= RW_STOP);
    switch (r->kind) {
    case RW_HDR_ADD:
    case RW_HDR_REMOVE:
    case RW_HDR_REPLACE:
    case RW_HDR_PREPEND:
    case RW_HDR_APPEND:
        FUZZ_CHECK(r->field && r->field[0]);
        for (const char *p = r->field; *p; p++)
            FUZZ_CHECK((unsigned char)*p > 32 && (unsigned char)*p < 127 && *p != ':');
        if (r->kind == RW_HDR_REPLACE)
            FUZZ_CHECK(r->re != NULL);
        if (r->kind != RW_HDR_REMOVE)
            FUZZ_CHECK(r->text != NULL);
        break;
    case RW_SUBJECT_TAG:
        FUZZ_CHECK(r->text != NULL);
        break;
    case RW_STRIP_RECEIVED:
        FUZZ_CHECK(r->nnets + r->nres > 0);
        break;
    case RW_ADDR:
        FUZZ_CHECK(r->target == RW_TGT_SENDER || r->target == RW_TGT_RCPT);
        FUZZ_CHECK(r->op <= RW_OP_SRS_REVERSE);
        if (r->op == RW_OP_MAP) {
            FUZZ_CHECK(r->map != NULL);
            check_map(r->map);
        }
        if (r->op == RW_OP_REGEX)
            FUZZ_CHECK(r->re != NULL && r->text != NULL);
        if (r->op == RW_OP_SRS || r->op == RW_OP_SRS_REVERSE)
            FUZZ_CHECK(r->text && r->text[0]);
        break;
    case RW_STOP:
        break;
    }
    if (r->text && r->kind != RW_ADDR)
        for (const char *p = r->text; *p; p++)
            FUZZ_CHECK(*p != '\r' && *p != '\n');
    for (size_t i = 0; i < r->nconds; i++) {
        const struct rw_cond *c = &r->conds[i];

        FUZZ_CHECK(c->kind <= RW_C_AUTH);
        if (c->kind == RW_C_SENDER || c->kind == RW_C_RCPT || c->kind == RW_C_HEADER)
            FUZZ_CHECK(c->re != NULL);
        if (c->kind == RW_C_HEADER || c->kind == RW_C_SYMBOL)
            FUZZ_CHECK(c->name && c->name[0]);
        if (c->kind == RW_C_CLIENT)
            FUZZ_CHECK(c->nnets > 0 && c->nets != NULL);
        if (c->kind == RW_C_SCORE)
            FUZZ_CHECK(c->cmp[0] == '<' || c->cmp[0] == '>' || c->cmp[0] == '=' ||
                       c->cmp[0] == '!');
    }
    for (size_t i = 0; i < r->nnets; i++)
        FUZZ_CHECK(r->nets[i].prefix <= (r->nets[i].family == AF_INET ? 32u : 128u));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char label[400], mappath[400];
    struct rw_errors errs = RW_ERRORS_INIT;

    if (!fuzz_file_safe(data, size))
        return 0;
    const char *text = (const char *)data;
    const char *z = memchr(text, '\0', size);
    size_t len = z ? (size_t)(z - text) : size;
    const char *aux = z ? z + 1 : "";
    size_t auxlen = z ? size - len - 1 : 0;
    const char *dir = fuzz_file_set(aux, auxlen);
    snprintf(label, sizeof label, "%s/main.rules", dir);
    snprintf(mappath, sizeof mappath, "%s/m", dir);

    struct rw_ruleset *rs = rw_rules_parse(text, len, label, &errs);
    FUZZ_CHECK((rs == NULL) == (errs.n > 0));
    for (size_t i = 0; i < errs.n; i++) {
        const struct rw_error *e = &errs.v[i];

        FUZZ_CHECK(e->file != NULL && e->msg != NULL && e->msg[0]);
        FUZZ_CHECK(strchr(e->msg, '\n') == NULL);
        if (strcmp(e->file, label) == 0)
            FUZZ_CHECK(e->line >= 1 && e->line <= nlines(text, len));
        else if (strcmp(e->file, mappath) == 0)
            FUZZ_CHECK(e->line <= nlines(aux, auxlen));
    }
    if (rs) {
        FUZZ_CHECK(rs->nfiles >= 1);
        for (size_t i = 0; i < rs->nrules; i++)
            check_rule(&rs->rules[i]);
        rw_ruleset_ref(rs);
        rw_ruleset_unref(rs);
        rw_ruleset_unref(rs);
    }
    rw_errors_free(&errs);
    return 0;
}
