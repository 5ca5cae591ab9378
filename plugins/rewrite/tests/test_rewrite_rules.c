/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Rule-file parser: every rule type parses into what it says, and every
 * error is reported with its line (table-driven: text -> FILE:LINE: msg).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "rw_rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct rw_ruleset *parse(const char *text, struct rw_errors *errs)
{
    return rw_rules_parse(text, strlen(text), "/tmp/rwt/t.rules", errs);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_every_rule_type(void **state)
{
    (void)state;
    write_file("/tmp/rwt/senders.map", "# old -> new\n"
                                      "alice@old.example  alice.smith@new.example\n"
                                      "@Old.Example       @new.example\n");
    const char *text = "# a comment\n"
                       "\n"
                       "header add X-Scanned-By \"sluice rewrite\"\n"
                       "header remove X-Originating-IP\n"
                       "header remove Received /by relay\\.internal/i\n"
                       "header replace Subject /^Fwd?:\\s*(.*)$/i \"Fwd: $1\"\n"
                       "header prepend X-Note \"note: \"\n"
                       "header append X-Note \" (checked)\"\n"
                       "subject-tag [EXTERNAL] if not client 10.0.0.0/8\n"
                       "strip-received 10.0.0.0/8,192.168.0.0/16 /by gw\\.corp\\b/ if client 10.0.0.0/8\n"
                       "sender map senders.map headers\n"
                       "sender /^(.*)@legacy\\.example$/ $1@new.example headers stop\n"
                       "recipient lowercase-domain\n"
                       "recipient strip-plus\n"
                       "recipient lowercase\n"
                       "recipient /@catchall\\.example$/i postmaster@catchall.example if recipient /x/ and symbol A\n"
                       "sender srs fwd.example\n"
                       "recipient srs-reverse fwd.example\n"
                       "stop if sender /@trusted\\.example$/ and score >= 5.5 and authenticated\n";
    struct rw_errors errs = RW_ERRORS_INIT;
    struct rw_ruleset *rs = parse(text, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s:%u: %s\n", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
    assert_int_equal(errs.n, 0);
    assert_non_null(rs);
    struct {
        unsigned line;
        enum rw_kind kind;
        enum rw_target target;
        enum rw_addr_op op;
        const char *field;
        const char *text;
        int headers, stop;
        size_t nconds;
    } want[] = {
        {3, RW_HDR_ADD, 0, 0, "X-Scanned-By", "sluice rewrite", 0, 0, 0},
        {4, RW_HDR_REMOVE, 0, 0, "X-Originating-IP", NULL, 0, 0, 0},
        {5, RW_HDR_REMOVE, 0, 0, "Received", NULL, 0, 0, 0},
        {6, RW_HDR_REPLACE, 0, 0, "Subject", "Fwd: $1", 0, 0, 0},
        {7, RW_HDR_PREPEND, 0, 0, "X-Note", "note: ", 0, 0, 0},
        {8, RW_HDR_APPEND, 0, 0, "X-Note", " (checked)", 0, 0, 0},
        {9, RW_SUBJECT_TAG, 0, 0, NULL, "[EXTERNAL]", 0, 0, 1},
        {10, RW_STRIP_RECEIVED, 0, 0, NULL, NULL, 0, 0, 1},
        {11, RW_ADDR, RW_TGT_SENDER, RW_OP_MAP, NULL, NULL, 1, 0, 0},
        {12, RW_ADDR, RW_TGT_SENDER, RW_OP_REGEX, NULL, "$1@new.example", 1, 1, 0},
        {13, RW_ADDR, RW_TGT_RCPT, RW_OP_LOWER_DOMAIN, NULL, NULL, 0, 0, 0},
        {14, RW_ADDR, RW_TGT_RCPT, RW_OP_STRIP_PLUS, NULL, NULL, 0, 0, 0},
        {15, RW_ADDR, RW_TGT_RCPT, RW_OP_LOWER, NULL, NULL, 0, 0, 0},
        {16, RW_ADDR, RW_TGT_RCPT, RW_OP_REGEX, NULL, "postmaster@catchall.example", 0, 0, 2},
        {17, RW_ADDR, RW_TGT_SENDER, RW_OP_SRS, NULL, "fwd.example", 0, 0, 0},
        {18, RW_ADDR, RW_TGT_RCPT, RW_OP_SRS_REVERSE, NULL, "fwd.example", 0, 0, 0},
        {19, RW_STOP, 0, 0, NULL, NULL, 0, 0, 3},
    };
    assert_int_equal(rs->nrules, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < rs->nrules; i++) {
        const struct rw_rule *r = &rs->rules[i];
        assert_int_equal(r->line, want[i].line);
        assert_int_equal(r->kind, want[i].kind);
        if (r->kind == RW_ADDR) {
            assert_int_equal(r->target, want[i].target);
            assert_int_equal(r->op, want[i].op);
        }
        if (want[i].field)
            assert_string_equal(r->field, want[i].field);
        if (want[i].text)
            assert_string_equal(r->text, want[i].text);
        assert_int_equal(r->headers, want[i].headers);
        assert_int_equal(r->stop, want[i].stop);
        assert_int_equal(r->nconds, want[i].nconds);
    }
    /* details */
    assert_non_null(rs->rules[2].re);
    assert_null(rs->rules[1].re);
    assert_int_equal(rs->rules[7].nnets, 2);
    assert_int_equal(rs->rules[7].nres, 1);
    assert_int_equal(rs->rules[8].map->n, 2);
    assert_string_equal(rw_map_get(rs->rules[8].map, "@old.example"), "@new.example");
    assert_string_equal(rw_map_get(rs->rules[8].map, "alice@old.example"), "alice.smith@new.example");
    assert_null(rw_map_get(rs->rules[8].map, "bob@old.example"));
    assert_true(rs->uses_srs);
    assert_int_equal(rs->nfiles, 2); /* the rule file and the map */
    const struct rw_rule *st = &rs->rules[16];
    assert_int_equal(st->conds[0].kind, RW_C_SENDER);
    assert_int_equal(st->conds[1].kind, RW_C_SCORE);
    assert_string_equal(st->conds[1].cmp, ">=");
    assert_true(st->conds[1].num == 5.5);
    assert_int_equal(st->conds[2].kind, RW_C_AUTH);
    assert_int_equal(rs->rules[6].conds[0].neg, 1);
    rw_ruleset_unref(rs);
    rw_errors_free(&errs);
}

static void test_errors_with_lines(void **state)
{
    (void)state;
    write_file("/tmp/rwt/bad.map", "a@b.example c@d.example\n"
                                   "broken\n"
                                   "x@y.example not an address\n"
                                   "e@f.example <bad>@x\n"
                                   "A@B.example z@z.example\n");
    static const struct {
        const char *text;
        const char *file; /* NULL: the rule file */
        unsigned line;
        const char *msg; /* substring */
    } cases[] = {
        {"frobnicate x\n", NULL, 1, "unknown rule 'frobnicate'"},
        {"\n\nheader add\n", NULL, 3, "want a header field name"},
        {"header add X-A\n", NULL, 1, "want one value"},
        {"header add X-A b c\n", NULL, 1, "want one value"},
        {"header add Bad:Name v\n", NULL, 1, "bad header field name 'Bad:Name'"},
        {"header delete X-A\n", NULL, 1, "unknown operation 'delete'"},
        {"header remove X-A notaregex\n", NULL, 1, "want a /regex/"},
        {"header remove X-A /(/\n", NULL, 1, "bad regex /(/: missing closing parenthesis at offset 1"},
        {"header replace Subject /a/\n", NULL, 1, "want a regex and a replacement"},
        {"header replace Subject /(a)/ $2\n", NULL, 1, "uses $2 but the pattern has 1 group"},
        {"header replace Subject /a/ \"x$\"\n", NULL, 1, "'$' must be followed by a group number"},
        {"header add X-A \"unterminated\n", NULL, 1, "unterminated \"quoted string\""},
        {"header remove X-A /abc\n", NULL, 1, "want a /regex/, got /abc"},
        {"header remove X-A /a/q\n", NULL, 1, "unknown regex flag 'q'"},
        {"header remove X-A /(*LIMIT_MATCH=99999999)a/\n", NULL, 1, "(*VERB)"},
        {"subject-tag\n", NULL, 1, "want one tag"},
        {"subject-tag \"\"\n", NULL, 1, "the tag is empty"},
        {"strip-received\n", NULL, 1, "want networks"},
        {"strip-received 10.0.0.0/33\n", NULL, 1, "bad network '10.0.0.0/33'"},
        {"strip-received nonsense\n", NULL, 1, "bad network 'nonsense'"},
        {"sender\n", NULL, 1, "sender: want map FILE"},
        {"sender /a/\n", NULL, 1, "want one replacement"},
        {"sender /(.*)@a/ \"$1 @b\"\n", NULL, 1, "invalid address: '?'"},
        {"recipient /(.*)@a/ <$1@b>\n", NULL, 1, "invalid address: '<'"},
        {"sender map /nonexistent/x.map\n", NULL, 1, "cannot read map file /nonexistent/x.map"},
        {"sender map bad.map\n", "/tmp/rwt/bad.map", 2, "want two fields"},
        {"sender map bad.map\n", "/tmp/rwt/bad.map", 3, "want two fields"},
        {"sender map bad.map\n", "/tmp/rwt/bad.map", 4, "'<bad>@x' is not a valid address"},
        {"sender map bad.map\n", "/tmp/rwt/bad.map", 5, "key 'a@b.example' is listed twice"},
        {"sender frob\n", NULL, 1, "unknown operation 'frob'"},
        {"sender lowercase x\n", NULL, 1, "takes no argument"},
        {"recipient srs fwd.example\n", NULL, 1, "srs rewrites the sender"},
        {"sender srs-reverse fwd.example\n", NULL, 1, "srs-reverse rewrites bounce recipients"},
        {"sender srs\n", NULL, 1, "want the forwarding domain"},
        {"sender srs bad domain\n", NULL, 1, "want the forwarding domain"},
        {"sender srs fwd.example headers\n", NULL, 1, "'headers' makes no sense"},
        {"header add X-A b headers\n", NULL, 1, "'headers' flag belongs to sender and recipient rules"},
        {"stop now\n", NULL, 1, "stop takes no argument"},
        {"stop if\n", NULL, 1, "'if' without a condition"},
        {"stop if sender\n", NULL, 1, "sender: want a /regex/"},
        {"stop if client\n", NULL, 1, "client: want a network list"},
        {"stop if client 300.1.1.1\n", NULL, 1, "bad network '300.1.1.1'"},
        {"stop if symbol\n", NULL, 1, "symbol: want a symbol name"},
        {"stop if score = 5\n", NULL, 1, "want 'score >|>=|<|<= NUMBER'"},
        {"stop if score > five\n", NULL, 1, "'five' is not a number"},
        {"stop if weather /sunny/\n", NULL, 1, "unknown condition 'weather'"},
        {"stop if symbol A or symbol B\n", NULL, 1, "want 'and' between conditions, got 'or'"},
        {"stop if symbol A and\n", NULL, 1, "'and' without a condition"},
        {"sender lowercase if recipient /x/\n", NULL, 1, "'recipient' cannot be its condition"},
        {"recipient lowercase if header Subject /x/\n", NULL, 1, "'header' cannot be their condition"},
        {"header add X-A b\nheader add X-B c\n\n   bogus\n", NULL, 4, "unknown rule 'bogus'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rw_errors errs = RW_ERRORS_INIT;
        struct rw_ruleset *rs = parse(cases[i].text, &errs);
        const char *file = cases[i].file ? cases[i].file : "/tmp/rwt/t.rules";
        int found = 0;
        for (size_t k = 0; k < errs.n; k++)
            if (strcmp(errs.v[k].file, file) == 0 && errs.v[k].line == cases[i].line &&
                strstr(errs.v[k].msg, cases[i].msg))
                found = 1;
        if (!found || rs) {
            fprintf(stderr, "case %zu: %s", i, cases[i].text);
            fprintf(stderr, "  want %s:%u: ...%s...\n", file, cases[i].line, cases[i].msg);
            for (size_t k = 0; k < errs.n; k++)
                fprintf(stderr, "  got  %s:%u: %s\n", errs.v[k].file, errs.v[k].line, errs.v[k].msg);
        }
        assert_null(rs);
        assert_true(found);
        rw_errors_free(&errs);
    }
}

static void test_all_errors_at_once(void **state)
{
    (void)state;
    struct rw_errors errs = RW_ERRORS_INIT;
    struct rw_ruleset *rs = parse("header add X-Ok yes\nbad1\nheader add X-Ok2 fine\nbad2 x\n", &errs);
    assert_null(rs);
    assert_int_equal(errs.n, 2);
    assert_int_equal(errs.v[0].line, 2);
    assert_int_equal(errs.v[1].line, 4);
    rw_errors_free(&errs);
}

static void test_quoting_and_keywords(void **state)
{
    (void)state;
    struct rw_errors errs = RW_ERRORS_INIT;
    /* A quoted "stop" / "if" is a value; \" and \\ are escapes; \/ in a regex is a slash. */
    struct rw_ruleset *rs = parse("header add X-A \"stop\"\n"
                                  "header add X-B \"say \\\"hi\\\" \\\\ if\"\n"
                                  "header remove X-C /a\\/b/\n"
                                  "header add X-D \"\" stop\n",
                                  &errs);
    assert_int_equal(errs.n, 0);
    assert_non_null(rs);
    assert_string_equal(rs->rules[0].text, "stop");
    assert_int_equal(rs->rules[0].stop, 0);
    assert_string_equal(rs->rules[1].text, "say \"hi\" \\ if");
    assert_int_equal(rs->rules[3].stop, 1);
    assert_string_equal(rs->rules[3].text, "");
    rw_ruleset_unref(rs);
    rw_errors_free(&errs);
}

static void test_shipped_rules_file(void **state)
{
    (void)state;
    struct rw_errors errs = RW_ERRORS_INIT;
    struct rw_ruleset *rs = rw_rules_load(REWRITE_RULES_FILE, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s:%u: %s\n", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
    assert_int_equal(errs.n, 0);
    assert_non_null(rs);
    assert_true(rs->nrules > 0);
    rw_ruleset_unref(rs);
    rw_errors_free(&errs);
}

static int setup(void **state)
{
    (void)state;
    return system("mkdir -p /tmp/rwt") == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_rule_type),    cmocka_unit_test(test_errors_with_lines),
        cmocka_unit_test(test_all_errors_at_once), cmocka_unit_test(test_quoting_and_keywords),
        cmocka_unit_test(test_shipped_rules_file),
    };
    return cmocka_run_group_tests_name("rewrite_rules", tests, setup, NULL);
}
