/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz the spam rule-file parser (spam_rules), with "include m" reaching a
 * second fuzzed file (fuzz_file.h).
 *
 * Invariants: the rule set is refused exactly when errors are reported;
 * each error has a file, a line within that file's text and a one-line
 * message. A rule set holds uniquely named rules that spam_ruleset_find()
 * finds at their index, per-type counts that add up, regexes for every
 * regex rule, and meta programs that only name existing rules, keep the
 * stack from underflowing and leave exactly one value; meta_order lists
 * every meta rule once with its meta dependencies first.
 *
 * Input: MAIN NUL INCLUDED (both rule texts).
 */
#include "fuzz.h"
#include "fuzz_file.h"

#include <string.h>

#include "spam_rules.h"

static size_t nlines(const char *p, size_t n)
{
    size_t l = 1;
    for (size_t i = 0; i < n; i++)
        l += p[i] == '\n';
    return l;
}

static void check_prog(const struct spam_ruleset *rs, const struct spam_rule *r)
{
    long depth = 0;

    FUZZ_CHECK(r->prog != NULL && r->prog_len > 0);
    for (size_t k = 0; k < r->prog_len; k++) {
        const struct spam_meta_op *op = &r->prog[k];

        switch (op->op) {
        case SPAM_META_RULE:
            FUZZ_CHECK(op->arg < rs->nrules);
            depth++;
            break;
        case SPAM_META_NUM:
            depth++;
            break;
        case SPAM_META_NOT:
        case SPAM_META_NEG:
            FUZZ_CHECK(depth >= 1);
            break;
        default:
            FUZZ_CHECK(op->op <= SPAM_META_NE);
            FUZZ_CHECK(depth >= 2);
            depth--;
            break;
        }
    }
    FUZZ_CHECK(depth == 1);
}

static void check_ruleset(const struct spam_ruleset *rs)
{
    size_t total = 0;

    for (int t = 0; t < SPAM_RULE_TYPE_COUNT; t++)
        total += rs->count[t];
    FUZZ_CHECK(total == rs->nrules);
    FUZZ_CHECK(rs->nmeta == rs->count[SPAM_RULE_META]);
    for (size_t i = 0; i < rs->nrules; i++) {
        const struct spam_rule *r = &rs->rules[i];

        FUZZ_CHECK(r->name && r->name[0]);
        FUZZ_CHECK(spam_ruleset_find(rs, r->name) == (long)i);
        FUZZ_CHECK(r->type < SPAM_RULE_TYPE_COUNT);
        if (r->type == SPAM_RULE_META)
            check_prog(rs, r);
        else if (!(r->type == SPAM_RULE_HEADER && r->op == SPAM_OP_EXISTS))
            FUZZ_CHECK(r->re != NULL && r->pattern != NULL);
        if (r->type == SPAM_RULE_HEADER && r->field == SPAM_FIELD_HEADER)
            FUZZ_CHECK(r->field_name && r->field_name[0]);
    }
    for (size_t i = 0; i < rs->nmeta; i++) {
        size_t m = rs->meta_order[i];
        const struct spam_rule *r = &rs->rules[m];

        FUZZ_CHECK(m < rs->nrules && r->type == SPAM_RULE_META);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(rs->meta_order[j] != m);
        for (size_t k = 0; k < r->prog_len; k++) {
            if (r->prog[k].op != SPAM_META_RULE || rs->rules[r->prog[k].arg].type != SPAM_RULE_META)
                continue;
            bool before = false;
            for (size_t j = 0; j < i; j++)
                before = before || rs->meta_order[j] == r->prog[k].arg;
            FUZZ_CHECK(before);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char label[400];
    struct spam_rules_errors errs = {0};

    if (!fuzz_file_safe(data, size))
        return 0;
    const char *text = (const char *)data;
    const char *z = memchr(text, '\0', size);
    size_t len = z ? (size_t)(z - text) : size;
    const char *aux = z ? z + 1 : "";
    size_t auxlen = z ? size - len - 1 : 0;
    const char *dir = fuzz_file_set(aux, auxlen);
    snprintf(label, sizeof label, "%s/main.rules", dir);

    struct spam_rules_builder *b = spam_rules_builder_new();
    FUZZ_CHECK(b != NULL);
    spam_rules_builder_add_text(b, label, text, len);
    struct spam_ruleset *rs = spam_rules_builder_finish(b, &errs);
    FUZZ_CHECK((rs == NULL) == (errs.n > 0));
    for (size_t i = 0; i < errs.n; i++) {
        const struct spam_rules_error *e = &errs.v[i];

        FUZZ_CHECK(e->file != NULL && e->msg != NULL && e->msg[0]);
        FUZZ_CHECK(strchr(e->msg, '\n') == NULL);
        if (strcmp(e->file, label) == 0)
            FUZZ_CHECK(e->line <= nlines(text, len));
    }
    if (rs) {
        check_ruleset(rs);
        spam_ruleset_ref(rs);
        spam_ruleset_unref(rs);
        spam_ruleset_unref(rs);
    }
    spam_rules_errors_free(&errs);
    return 0;
}
