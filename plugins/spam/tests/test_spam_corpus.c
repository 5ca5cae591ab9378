/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The shipped rules against their corpus (tests/corpus.txt): every
 * reported rule of rules/spam.rules must hit each of its "hit" messages
 * and miss each of its "miss" messages (at least one of each), and the
 * clean base message must score 0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spam_eval.h"
#include "spam_msg.h"
#include "spam_rules.h"
#include "pstr.h"
#include "same_view.h"

#include <gmime/gmime.h>

static const char *const base_headers[] = {
    "Received: from mail.example.org (mail.example.org [192.0.2.10])\n"
    " by mx.example.net with ESMTPS id 4AbC; Mon, 6 May 2024 10:00:01 +0200",
    "From: Alice Example <alice@example.org>",
    "To: Bob <bob@example.net>",
    "Subject: Lunch on Thursday",
    "Date: Mon, 6 May 2024 10:00:00 +0200",
    "Message-ID: <20240506100000.1234@example.org>",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    NULL,
};
static const char base_body[] = "Hi Bob,\n\nsee you at noon at the usual place.\n\nAlice\n";

struct entry {
    char name[128];
    int want_hit;
    struct pstr text;
};

static struct entry *entries;
static size_t nentries;

static int header_named(const char *line, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* Turn an entry's text into a message (CRLF), per the corpus rules. */
static void build(const char *text, struct pstr *out, char *helo, size_t helosz)
{
    struct pstr msg = PSTR_INIT;
    snprintf(helo, helosz, "mail.example.org");
    if (strncmp(text, "@clean\n", 7) != 0) {
        pstr_puts(&msg, text);
    } else {
        const char *p = text + 7;
        char *removed[32];
        size_t nremoved = 0;
        struct pstr own = PSTR_INIT;
        /* Directives and own header lines, up to the first empty line. */
        while (*p && *p != '\n') {
            const char *nl = strchr(p, '\n');
            size_t l = nl ? (size_t)(nl - p) : strlen(p);
            if (strncmp(p, "@helo ", 6) == 0) {
                snprintf(helo, helosz, "%.*s", (int)(l - 6), p + 6);
            } else if (*p == '-') {
                if (nremoved < 32)
                    removed[nremoved++] = strndup(p + 1, l - 1);
            } else {
                pstr_append(&own, p, l);
                pstr_putc(&own, '\n');
                if (*p != ' ' && *p != '\t' && nremoved < 32) {
                    const char *c = memchr(p, ':', l);
                    if (c)
                        removed[nremoved++] = strndup(p, (size_t)(c - p));
                }
            }
            p = nl ? nl + 1 : p + l;
        }
        for (size_t i = 0; base_headers[i]; i++) {
            int skip = 0;
            for (size_t k = 0; k < nremoved; k++)
                if (header_named(base_headers[i], removed[k]))
                    skip = 1;
            if (!skip) {
                pstr_puts(&msg, base_headers[i]);
                pstr_putc(&msg, '\n');
            }
        }
        pstr_append(&msg, pstr_cstr(&own), own.len);
        pstr_putc(&msg, '\n');
        if (*p == '\n' && p[1])
            pstr_puts(&msg, p + 1);
        else
            pstr_puts(&msg, base_body);
        for (size_t k = 0; k < nremoved; k++)
            free(removed[k]);
        pstr_free(&own);
    }
    for (const char *c = pstr_cstr(&msg); *c; c++) {
        if (*c == '\n')
            pstr_putc(out, '\r');
        pstr_putc(out, *c);
    }
    pstr_free(&msg);
}

static void load_corpus(void)
{
    FILE *fp = fopen(SPAM_SRC_DIR "/tests/corpus.txt", "r");
    assert_non_null(fp);
    char line[4096];
    struct entry *cur = NULL;
    while (fgets(line, sizeof(line), fp)) {
        if (strncmp(line, "%% ", 3) == 0) {
            entries = realloc(entries, (nentries + 1) * sizeof(*entries));
            cur = &entries[nentries++];
            memset(cur, 0, sizeof(*cur));
            char kind[16] = "";
            assert_int_equal(sscanf(line + 3, "%127s %15s", cur->name, kind), 2);
            assert_true(strcmp(kind, "hit") == 0 || strcmp(kind, "miss") == 0);
            cur->want_hit = strcmp(kind, "hit") == 0;
            continue;
        }
        if (!cur)
            continue; /* the file's comment block */
        pstr_puts(&cur->text, line);
    }
    fclose(fp);
    /* The blank line before the next "%%" separates entries, not content. */
    for (size_t i = 0; i < nentries; i++) {
        struct pstr *t = &entries[i].text;
        while (t->len >= 2 && t->ptr[t->len - 1] == '\n' && t->ptr[t->len - 2] == '\n')
            t->ptr[--t->len] = '\0';
    }
}

static struct spam_ruleset *load_rules(void)
{
    struct spam_rules_errors errs;
    struct spam_ruleset *rs = spam_rules_load(SPAM_RULES_FILE, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s:%u: %s\n", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
    spam_rules_errors_free(&errs);
    assert_non_null(rs);
    return rs;
}

static size_t nplain;

/* Header values decoded without GMime are the ones GMime decodes. */
static void same_decoding(const struct spam_msg *m)
{
    for (size_t i = 0; i < m->nhdrs; i++) {
        char *g = g_mime_utils_header_decode_text(NULL, m->hdrs[i].raw);
        assert_string_equal(m->hdrs[i].decoded, g ? g : m->hdrs[i].raw);
        g_free(g);
    }
}

static void eval_text(const struct spam_ruleset *rs, struct spam_scratch_pool *pool, const char *text,
                      struct spam_result *res)
{
    struct pstr msg = PSTR_INIT;
    char helo[256];
    build(text, &msg, helo, sizeof(helo));
    const char *rcpts[] = {"bob@example.net"};
    struct spam_msg_env env = {"alice@example.org", rcpts, 1, "192.0.2.10", helo, "mail.example.org"};
    struct spam_msg *m = spam_msg_parse(pstr_cstr(&msg), msg.len, &env, 256 * 1024);
    spam_msg_set_plain_shortcut(0);
    struct spam_msg *g = spam_msg_parse(pstr_cstr(&msg), msg.len, &env, 256 * 1024);
    spam_msg_set_plain_shortcut(1);
    assert_int_equal(g->plain, 0);
    same_view(m, g);
    same_decoding(m);
    nplain += (size_t)m->plain;
    assert_int_equal(spam_eval_run(rs, m, pool, res), 0);
    struct spam_result gres;
    assert_int_equal(spam_eval_run(rs, g, pool, &gres), 0);
    assert_memory_equal(res->hit, gres.hit, rs->nrules);
    spam_result_free(&gres);
    spam_msg_free(g);
    spam_msg_free(m);
    pstr_free(&msg);
}

static void test_corpus_each_rule(void **state)
{
    (void)state;
    struct spam_ruleset *rs = load_rules();
    struct spam_eval_limits lim = SPAM_EVAL_LIMITS_DEFAULT;
    struct spam_scratch_pool *pool = spam_scratch_pool_new(&lim);
    load_corpus();
    int failures = 0;
    for (size_t i = 0; i < nentries; i++) {
        long idx = spam_ruleset_find(rs, entries[i].name);
        if (idx < 0) {
            fprintf(stderr, "corpus entry for unknown rule %s\n", entries[i].name);
            failures++;
            continue;
        }
        struct spam_result res;
        eval_text(rs, pool, pstr_cstr(&entries[i].text), &res);
        if (res.hit[idx] != entries[i].want_hit) {
            fprintf(stderr, "%s %s: got %s, want %s (score %.2f)\n", entries[i].name,
                    entries[i].want_hit ? "hit" : "miss", res.hit[idx] ? "hit" : "miss",
                    entries[i].want_hit ? "hit" : "miss", res.score);
            failures++;
        }
        if (res.nlimited) {
            fprintf(stderr, "%s: %zu rules hit a limit\n", entries[i].name, res.nlimited);
            failures++;
        }
        spam_result_free(&res);
    }
    /* Every reported rule has both kinds of message. */
    for (size_t r = 0; r < rs->nrules; r++) {
        if (strncmp(rs->rules[r].name, "__", 2) == 0)
            continue;
        int hit = 0, miss = 0;
        for (size_t i = 0; i < nentries; i++)
            if (strcmp(entries[i].name, rs->rules[r].name) == 0)
                *(entries[i].want_hit ? &hit : &miss) += 1;
        if (hit < 1 || miss < 1) {
            fprintf(stderr, "rule %s: %d hit and %d miss messages, want at least 1 of each\n",
                    rs->rules[r].name, hit, miss);
            failures++;
        }
    }
    /* The shortcut serves the plain text messages of the corpus, most of
     * them: the base message is text/plain; charset=utf-8. */
    fprintf(stderr, "%zu of %zu corpus messages read without GMime\n", nplain, nentries);
    assert_true(nplain * 2 > nentries);
    for (size_t i = 0; i < nentries; i++)
        pstr_free(&entries[i].text);
    free(entries);
    entries = NULL;
    nentries = 0;
    spam_scratch_pool_free(pool);
    spam_ruleset_unref(rs);
    assert_int_equal(failures, 0);
}

static void test_corpus_clean_base_scores_zero(void **state)
{
    (void)state;
    struct spam_ruleset *rs = load_rules();
    struct spam_eval_limits lim = SPAM_EVAL_LIMITS_DEFAULT;
    struct spam_scratch_pool *pool = spam_scratch_pool_new(&lim);
    struct spam_result res;
    eval_text(rs, pool, "@clean\n", &res);
    for (size_t i = 0; i < rs->nrules; i++)
        if (res.hit[i] && strncmp(rs->rules[i].name, "__", 2) != 0)
            fprintf(stderr, "clean message hits %s\n", rs->rules[i].name);
    assert_true(res.score == 0.0);
    spam_result_free(&res);
    spam_scratch_pool_free(pool);
    spam_ruleset_unref(rs);
}

static void test_corpus_at_least_60_rules(void **state)
{
    (void)state;
    struct spam_ruleset *rs = load_rules();
    size_t reported = 0;
    for (size_t i = 0; i < rs->nrules; i++)
        if (strncmp(rs->rules[i].name, "__", 2) != 0)
            reported++;
    assert_true(reported >= 60);
    assert_true(rs->jit);
    spam_ruleset_unref(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_at_least_60_rules),
        cmocka_unit_test(test_corpus_clean_base_scores_zero),
        cmocka_unit_test(test_corpus_each_rule),
    };
    return cmocka_run_group_tests_name("spam_corpus", tests, NULL, NULL);
}
