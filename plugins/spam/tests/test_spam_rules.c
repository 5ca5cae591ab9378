/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Rule-file parser tables: each rule type and directive parses to what it
 * says; each error is reported with its line; includes and overrides.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spam_bayes.h"
#include "spam_rules.h"
#include "watch.h"

static struct spam_ruleset *parse(const char *text, struct spam_rules_errors *errs)
{
    struct spam_rules_builder *b = spam_rules_builder_new();
    spam_rules_builder_add_text(b, "t.rules", text, strlen(text));
    return spam_rules_builder_finish(b, errs);
}

static void test_rules_valid(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *name;
        enum spam_rule_type type;
        enum spam_field_kind field;
        enum spam_field_mod mod;
        enum spam_header_op op;
        const char *field_name;
        double score;
    } cases[] = {
        {"header A Subject =~ /x/i", "A", SPAM_RULE_HEADER, SPAM_FIELD_HEADER, SPAM_MOD_DECODED, SPAM_OP_MATCH, "Subject", 1.0},
        {"header A Subject !~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_HEADER, SPAM_MOD_DECODED, SPAM_OP_NOMATCH, "Subject", 1.0},
        {"header A exists:X-Foo", "A", SPAM_RULE_HEADER, SPAM_FIELD_HEADER, SPAM_MOD_DECODED, SPAM_OP_EXISTS, "X-Foo", 1.0},
        {"header A From:addr =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_HEADER, SPAM_MOD_ADDR, SPAM_OP_MATCH, "From", 1.0},
        {"header A From:name =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_HEADER, SPAM_MOD_NAME, SPAM_OP_MATCH, "From", 1.0},
        {"header A Subject:raw =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_HEADER, SPAM_MOD_RAW, SPAM_OP_MATCH, "Subject", 1.0},
        {"header A Received:count =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_HEADER, SPAM_MOD_COUNT, SPAM_OP_MATCH, "Received", 1.0},
        {"header A ToCc:addr =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_TOCC, SPAM_MOD_ADDR, SPAM_OP_MATCH, NULL, 1.0},
        {"header A ALL =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_ALL, SPAM_MOD_DECODED, SPAM_OP_MATCH, NULL, 1.0},
        {"header A ENV:from =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_ENV_FROM, SPAM_MOD_DECODED, SPAM_OP_MATCH, NULL, 1.0},
        {"header A ENV:rcpt =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_ENV_RCPT, SPAM_MOD_DECODED, SPAM_OP_MATCH, NULL, 1.0},
        {"header A CLIENT:ip =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_CLIENT_IP, SPAM_MOD_DECODED, SPAM_OP_MATCH, NULL, 1.0},
        {"header A CLIENT:helo =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_CLIENT_HELO, SPAM_MOD_DECODED, SPAM_OP_MATCH, NULL, 1.0},
        {"header A CLIENT:name =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_CLIENT_NAME, SPAM_MOD_DECODED, SPAM_OP_MATCH, NULL, 1.0},
        {"header A MIME:parts =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_MIME_PARTS, SPAM_MOD_DECODED, SPAM_OP_MATCH, NULL, 1.0},
        {"header A MIME:filenames =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_MIME_FILENAMES, SPAM_MOD_DECODED, SPAM_OP_MATCH, NULL, 1.0},
        {"header A HTML:hidden =~ /x/", "A", SPAM_RULE_HEADER, SPAM_FIELD_HTML_HIDDEN, SPAM_MOD_DECODED, SPAM_OP_MATCH, NULL, 1.0},
        {"header A exists:HTML:linkmismatch", "A", SPAM_RULE_HEADER, SPAM_FIELD_HTML_MISMATCH, SPAM_MOD_DECODED, SPAM_OP_EXISTS, NULL, 1.0},
        {"body B /money/i\nscore B 2.5", "B", SPAM_RULE_BODY, 0, 0, 0, NULL, 2.5},
        {"rawbody B m{<a\\s}i", "B", SPAM_RULE_RAWBODY, 0, 0, 0, NULL, 1.0},
        {"full B m!^X-Foo:!m", "B", SPAM_RULE_FULL, 0, 0, 0, NULL, 1.0},
        {"uri B m{^https?://bit\\.ly/}", "B", SPAM_RULE_URI, 0, 0, 0, NULL, 1.0},
        {"body __SUB /x/", "__SUB", SPAM_RULE_BODY, 0, 0, 0, NULL, 0.0},
        {"score C -1.5\nbody C /x/", "C", SPAM_RULE_BODY, 0, 0, 0, NULL, -1.5},
        {"body D /a b # c/x", "D", SPAM_RULE_BODY, 0, 0, 0, NULL, 1.0},
        {"  # comment\n\n\tbody E /x/  \r\n", "E", SPAM_RULE_BODY, 0, 0, 0, NULL, 1.0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct spam_rules_errors errs;
        struct spam_ruleset *rs = parse(cases[i].text, &errs);
        if (!rs)
            fprintf(stderr, "case %zu (%s): %s\n", i, cases[i].text, errs.n ? errs.v[0].msg : "?");
        assert_non_null(rs);
        long k = spam_ruleset_find(rs, cases[i].name);
        assert_true(k >= 0);
        const struct spam_rule *r = &rs->rules[k];
        assert_int_equal(r->type, cases[i].type);
        if (r->type == SPAM_RULE_HEADER) {
            assert_int_equal(r->field, cases[i].field);
            assert_int_equal(r->mod, cases[i].mod);
            assert_int_equal(r->op, cases[i].op);
            if (cases[i].field_name)
                assert_string_equal(r->field_name, cases[i].field_name);
            else
                assert_null(r->field_name);
        }
        assert_true(r->score == cases[i].score);
        assert_true(r->op == SPAM_OP_EXISTS || r->type == SPAM_RULE_META || r->re != NULL);
        spam_ruleset_unref(rs);
        spam_rules_errors_free(&errs);
    }
}

static void test_rules_meta_and_describe(void **state)
{
    (void)state;
    struct spam_rules_errors errs;
    struct spam_ruleset *rs = parse("body A /a/\nbody B /b/\nmeta M1 (A || B) && !A\n"
                                    "meta M2 A + B >= 2\nmeta M3 M1 || M2\ndescribe M3 either\n",
                                    &errs);
    assert_non_null(rs);
    assert_int_equal(rs->count[SPAM_RULE_META], 3);
    assert_int_equal(rs->nmeta, 3);
    /* M3 uses M1 and M2: it comes after both. */
    long m3 = spam_ruleset_find(rs, "M3");
    assert_int_equal((long)rs->meta_order[2], m3);
    assert_string_equal(rs->rules[m3].describe, "either");
    spam_ruleset_unref(rs);
    spam_rules_errors_free(&errs);
}

static void test_rules_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        unsigned line;
        const char *msg; /* substring */
    } cases[] = {
        {"body A /(/", 1, "bad regex /(/: missing closing parenthesis at offset 1"},
        {"\nbody A /a[/", 2, "at offset 2"},
        {"body A /x", 1, "unterminated regular expression"},
        {"body A /x/q", 1, "unknown regex flag"},
        {"body A /x/ trailing", 1, "unexpected text after the regular expression"},
        {"body A x", 1, "expected a regular expression"},
        {"body A /(*LIMIT_MATCH=1)x/", 1, "(*...) options are not allowed"},
        {"frob A /x/", 1, "unknown directive 'frob'"},
        {"body", 1, "needs a rule name"},
        {"body A-B /x/", 1, "bad rule name"},
        {"header A Subject /x/", 1, "expected =~ or !~"},
        {"header A ENV:nope =~ /x/", 1, "unknown field 'ENV:nope'"},
        {"header A From:bogus =~ /x/", 1, "unknown field 'From:bogus'"},
        {"header A exists:From:addr", 1, "unknown field"},
        {"header A", 1, "header needs a field"},
        {"body A /x/\nbody A /y/", 2, "duplicate rule A (first defined at t.rules:1)"},
        {"meta M A && NOPE\nbody A /x/", 1, "unknown rule NOPE in meta M"},
        {"meta M1 M2\nmeta M2 M1", 1, "circular meta"},
        {"meta M M", 1, "circular meta"},
        {"meta M A &&", 1, "bad meta expression"},
        {"meta M (A", 1, "expected ')'"},
        {"meta M A B", 1, "unexpected text"},
        {"meta M", 1, "empty expression"},
        {"body A /x/\nscore A lots", 2, "bad score 'lots'"},
        {"body A /x/\nscore A 1 2", 2, "score needs exactly one number"},
        {"score Z 1.0", 1, "score or describe for unknown rule Z"},
        {"describe Z text", 1, "score or describe for unknown rule Z"},
        {"body A /x/\ndescribe A", 2, "describe needs a text"},
        {"body GTUBE /x/", 1, "GTUBE is built in"},
        {"body A /x/\nscore BAYES_95 lots", 2, "bad score 'lots'"},
        {"body A /x/\nscore BAYES_95 nan", 2, "bad score 'nan'"},
        {"body A /x/\n\nscore BAYES_96 1", 3, "unknown rule or Bayes band BAYES_96"},
        {"body BAYES_95 /x/", 1, "BAYES_95 is a Bayes band, not a rule name"},
        {"include", 1, "include needs a file name"},
        {"include /nonexistent/sluice-x.rules", 1, "cannot read include"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct spam_rules_errors errs;
        struct spam_ruleset *rs = parse(cases[i].text, &errs);
        if (rs || errs.n == 0 || errs.v[0].line != cases[i].line || !strstr(errs.v[0].msg, cases[i].msg))
            fprintf(stderr, "case %zu (%s): got %s:%u: %s, want line %u: %s\n", i, cases[i].text,
                    errs.n ? errs.v[0].file : "-", errs.n ? errs.v[0].line : 0, errs.n ? errs.v[0].msg : "(none)",
                    cases[i].line, cases[i].msg);
        assert_null(rs);
        assert_true(errs.n >= 1);
        assert_string_equal(errs.v[0].file, "t.rules");
        assert_int_equal(errs.v[0].line, cases[i].line);
        assert_non_null(strstr(errs.v[0].msg, cases[i].msg));
        spam_rules_errors_free(&errs);
    }
}

static void test_rules_all_errors_in_order(void **state)
{
    (void)state;
    struct spam_rules_errors errs;
    struct spam_ruleset *rs = parse("score X 1\nbody A /(/\nok\nbody B /x/\nmeta M NOPE\n", &errs);
    assert_null(rs);
    static const unsigned want[] = {1, 2, 3, 5};
    assert_int_equal(errs.n, 4);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(errs.v[i].line, want[i]);
    spam_rules_errors_free(&errs);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static const char *set_path(const void *obj, size_t i)
{
    const struct spam_ruleset *rs = obj;
    return i < rs->nfiles ? rs->files[i].path : NULL;
}

static void test_rules_include_override_and_watch(void **state)
{
    (void)state;
    char dir[] = "/tmp/spam-rules-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char base[256], local[256], loop[256];
    snprintf(base, sizeof(base), "%s/base.rules", dir);
    snprintf(local, sizeof(local), "%s/local.rules", dir);
    snprintf(loop, sizeof(loop), "%s/loop.rules", dir);
    write_file(base, "body A /a/\nscore A 1.0\nbody B /b/\n");
    write_file(local, "include base.rules\nscore A 4.0\nbody B /bb/\n");
    struct spam_rules_errors errs;
    struct spam_ruleset *rs = spam_rules_load(local, &errs);
    assert_non_null(rs);
    assert_int_equal(errs.n, 0);
    long a = spam_ruleset_find(rs, "A"), b = spam_ruleset_find(rs, "B");
    assert_true(rs->rules[a].score == 4.0);               /* re-scored */
    assert_string_equal(rs->rules[b].pattern, "bb");      /* redefined in a later file */
    assert_int_equal(rs->nfiles, 2);
    /* The plugin watches every file of the set, included ones too
     * (plugins/common/watch over rs->files). */
    static const struct watch_ops ops = {.path = set_path};
    uint64_t sig = watch_signature(&ops, rs);
    assert_true(watch_signature(&ops, rs) == sig);
    sleep(1);
    write_file(base, "body A /a/\nscore A 1.0\nbody B /b/\nbody C /c/\n");
    assert_true(watch_signature(&ops, rs) != sig);
    spam_ruleset_unref(rs);

    /* Errors in an included file carry that file's name. */
    write_file(base, "body A /(/\n");
    rs = spam_rules_load(local, &errs);
    assert_null(rs);
    assert_string_equal(errs.v[0].file, base);
    assert_int_equal(errs.v[0].line, 1);
    spam_rules_errors_free(&errs);

    write_file(loop, "include loop.rules\n");
    rs = spam_rules_load(loop, &errs);
    assert_null(rs);
    assert_non_null(strstr(errs.v[0].msg, "include loop"));
    spam_rules_errors_free(&errs);

    rs = spam_rules_load("/nonexistent/x.rules", &errs);
    assert_null(rs);
    assert_int_equal(errs.v[0].line, 0);
    spam_rules_errors_free(&errs);
    unlink(base);
    unlink(local);
    unlink(loop);
    rmdir(dir);
}

/* `score BAYES_xx N` sets that band's score; the last line wins, later
 * files override earlier ones; bands not named keep the default table. */
static void test_rules_bayes_band_scores(void **state)
{
    (void)state;
    struct spam_rules_errors errs;
    /* Without an override: the default table, band for band. */
    struct spam_ruleset *rs = parse("body A /a/\n", &errs);
    assert_non_null(rs);
    for (size_t i = 0; i < SPAM_BAYES_NBANDS; i++)
        assert_true(rs->bayes_score[i] == spam_bayes_band_at(i)->score);
    assert_true(rs->bayes_score[spam_bayes_band_index(0.97)] == 3.0); /* BAYES_95 */
    spam_ruleset_unref(rs);
    spam_rules_errors_free(&errs);

    rs = parse("score BAYES_95 3.5\nbody A /a/\nscore BAYES_00 -2.5\nscore BAYES_95 3.7\n", &errs);
    assert_non_null(rs);
    assert_int_equal(errs.n, 0);
    assert_true(rs->bayes_score[spam_bayes_band_index(0.97)] == 3.7);   /* last line wins */
    assert_true(rs->bayes_score[spam_bayes_band_index(0.001)] == -2.5); /* BAYES_00 */
    assert_true(rs->bayes_score[spam_bayes_band_index(0.9)] == 2.0);    /* BAYES_80: default */
    assert_true(spam_bayes_band(0.97)->score == 3.0);        /* the default table is untouched */
    assert_int_equal(spam_ruleset_find(rs, "BAYES_95"), -1); /* not a rule */
    assert_int_equal(rs->nrules, 1);
    spam_ruleset_unref(rs);
    spam_rules_errors_free(&errs);

    /* A site file after the shipped one re-scores a band. */
    char dir[] = "/tmp/spam-bayes-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char base[256], local[256];
    snprintf(base, sizeof(base), "%s/base.rules", dir);
    snprintf(local, sizeof(local), "%s/local.rules", dir);
    write_file(base, "body A /a/\nscore BAYES_99 5.0\n");
    write_file(local, "include base.rules\nscore BAYES_99 4.0\n");
    rs = spam_rules_load(local, &errs);
    assert_non_null(rs);
    assert_true(rs->bayes_score[spam_bayes_band_index(0.995)] == 4.0);
    spam_ruleset_unref(rs);
    spam_rules_errors_free(&errs);

    /* An unknown band, named at its file and line, as the linter shows it. */
    write_file(local, "include base.rules\n\nscore BAYES_96 4.0\n");
    rs = spam_rules_load(local, &errs);
    assert_null(rs);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.v[0].file, local);
    assert_int_equal(errs.v[0].line, 3);
    assert_non_null(strstr(errs.v[0].msg, "BAYES_96"));
    assert_non_null(strstr(errs.v[0].msg, "Bayes band"));
    spam_rules_errors_free(&errs);
    unlink(base);
    unlink(local);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_valid),
        cmocka_unit_test(test_rules_meta_and_describe),
        cmocka_unit_test(test_rules_errors),
        cmocka_unit_test(test_rules_all_errors_in_order),
        cmocka_unit_test(test_rules_include_override_and_watch),
        cmocka_unit_test(test_rules_bayes_band_scores),
    };
    return cmocka_run_group_tests_name("spam_rules", tests, NULL, NULL);
}
