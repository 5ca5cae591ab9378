/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Bayes: tokens (prefixes, case, length bounds, de-duplication), Robinson's
 * token probability and Fisher combining against hand-computed values,
 * the snapshot table, and the SQLite store (learn, relearn as the other
 * class, already learned, forget, totals, snapshot) end to end, with a
 * classifier trained on a small synthetic corpus separating the classes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spam_bayes.h"
#include "spam_bayes_db.h"
#include "spam_msg.h"

static struct spam_msg *parse(const char *text)
{
    return spam_msg_parse(text, strlen(text), NULL, 65536);
}

static int has(const uint64_t *t, size_t n, const char *tok)
{
    uint64_t h = spam_bayes_hash(tok, strlen(tok));
    for (size_t i = 0; i < n; i++)
        if (t[i] == h)
            return 1;
    return 0;
}

static void test_tokens(void **state)
{
    (void)state;
    struct spam_msg *m =
        parse("From: \"Cheap Meds\" <Sales@Pharma.Example>\r\n"
              "Subject: FREE offer, act now!\r\n"
              "Reply-To: x@other.example\r\n"
              "\r\n"
              "Free free FREE pills at https://www.shop.pharma.example/buy now.\r\n"
              "ok a an the aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    uint64_t t[SPAM_BAYES_MAX_TOKENS];
    size_t n = spam_bayes_tokens(m, t, SPAM_BAYES_MAX_TOKENS);
    assert_true(has(t, n, "s:free"));
    assert_true(has(t, n, "s:offer"));
    assert_true(has(t, n, "s:now")); /* "now!" trimmed */
    assert_true(has(t, n, "free"));  /* body, lower-cased, counted once */
    assert_true(has(t, n, "pills"));
    assert_true(has(t, n, "the"));
    assert_false(has(t, n, "ok")); /* too short */
    assert_false(has(t, n, "an"));
    assert_true(has(t, n, "skip:a:40")); /* 43 a's */
    assert_true(has(t, n, "f:a:sales@pharma.example"));
    assert_true(has(t, n, "f:d:pharma.example"));
    assert_true(has(t, n, "f:n:cheap"));
    assert_true(has(t, n, "rt:d:other.example"));
    assert_true(has(t, n, "u:www.shop.pharma.example"));
    assert_true(has(t, n, "u:shop.pharma.example"));
    assert_true(has(t, n, "u:pharma.example"));
    assert_false(has(t, n, "u:example"));
    assert_true(has(t, n, "h:subject"));
    for (size_t i = 1; i < n; i++)
        assert_true(t[i - 1] < t[i]); /* sorted, distinct */
    /* The bound holds. */
    assert_int_equal(spam_bayes_tokens(m, t, 5), 5);
    spam_msg_free(m);
}

/* The route, the message's own metadata, link paths and HTML tags. */
static void test_tokens_meta(void **state)
{
    (void)state;
    struct spam_msg *m =
        parse("Received: from mx.sender.example (mx.sender.example [192.0.2.55])\r\n"
              "\tby relay.example.org (Postfix) with ESMTP id 4F2A1B; Mon, 2 Dec 2002 10:00:00\r\n"
              "Message-ID: <Ab12-XY@mailer.example>\r\n"
              "To: a@one.example, b@two.example\r\n"
              "Date: Mon, 2 Dec 2002 10:00:00 +0100\r\n"
              "MIME-Version: 1.0\r\n"
              "Content-Type: text/html; charset=\"Windows-1252\"\r\n"
              "\r\n"
              "<html><body><FONT size=5>Hi</FONT> "
              "<a href=\"http://shop.example/cgi-bin/remove.pl?id=1\">x</a></body></html>\r\n");
    uint64_t t[SPAM_BAYES_MAX_TOKENS];
    size_t n = spam_bayes_tokens(m, t, SPAM_BAYES_MAX_TOKENS);
    assert_true(has(t, n, "r:mx.sender.example"));
    assert_true(has(t, n, "r:relay.example.org"));
    assert_true(has(t, n, "r:ip:192.0.2"));
    assert_true(has(t, n, "r:ip:192.0"));
    assert_false(has(t, n, "r:4f2a1b")); /* the queue ID is unique: not a token */
    assert_false(has(t, n, "r:ip:192.0.2.55"));
    assert_true(has(t, n, "mid:d:mailer.example"));
    assert_true(has(t, n, "mid:s:Aad-A")); /* case kept in shapes */
    assert_true(has(t, n, "nrcpt:2"));
    assert_true(has(t, n, "t:d:one.example"));
    assert_true(has(t, n, "cs:windows-1252"));
    assert_true(has(t, n, "date:Aa, d Aa d d:d:d +d"));
    assert_true(has(t, n, "up:cgi-bin"));
    assert_true(has(t, n, "up:remove.pl"));
    assert_true(has(t, n, "ht:font"));
    assert_true(has(t, n, "ht:body"));
    spam_msg_free(m);
    /* No Message-ID is a token too. */
    m = parse("Subject: x\r\n\r\nbody\r\n");
    n = spam_bayes_tokens(m, t, SPAM_BAYES_MAX_TOKENS);
    assert_true(has(t, n, "mid:none"));
    assert_true(has(t, n, "nrcpt:0"));
    spam_msg_free(m);
}

static void test_probabilities(void **state)
{
    (void)state;
    /* Unknown token: the prior. */
    assert_true(fabs(spam_bayes_token_prob((struct spam_bayes_count){0, 0}, 10, 10) - 0.5) < 1e-12);
    /* 9 of 10 spam, 1 of 10 ham: p = 0.9, n = 10: (0.45*0.5 + 10*0.9)/10.45 */
    double f = spam_bayes_token_prob((struct spam_bayes_count){9, 1}, 10, 10);
    assert_true(fabs(f - (0.225 + 9.0) / 10.45) < 1e-12);
    /* Class sizes are normalised: 10 of 100 spam vs 1 of 10 ham is neutral. */
    f = spam_bayes_token_prob((struct spam_bayes_count){10, 1}, 100, 10);
    assert_true(fabs(f - 0.5) < 1e-12);

    /* Fisher combining: strong spam evidence -> near 1, ham -> near 0,
     * conflicting or weak -> 0.5. */
    struct spam_bayes_count spam[20], ham[20], mix[20];
    for (int i = 0; i < 20; i++) {
        spam[i] = (struct spam_bayes_count){50, 1};
        ham[i] = (struct spam_bayes_count){1, 50};
        mix[i] = i % 2 ? spam[i] : ham[i];
    }
    size_t used;
    assert_true(spam_bayes_classify(spam, 20, 100, 100, &used) > 0.99);
    assert_int_equal(used, 20);
    assert_true(spam_bayes_classify(ham, 20, 100, 100, &used) < 0.01);
    double p = spam_bayes_classify(mix, 20, 100, 100, &used);
    assert_true(fabs(p - 0.5) < 0.01);
    struct spam_bayes_count weak[3] = {{5, 5}, {0, 0}, {6, 5}};
    assert_true(fabs(spam_bayes_classify(weak, 3, 100, 100, &used) - 0.5) < 1e-12);
    assert_int_equal(used, 0);
    /* At most 150 discriminators, the strongest. */
    struct spam_bayes_count many[400];
    for (int i = 0; i < 400; i++)
        many[i] = i < 200 ? (struct spam_bayes_count){3, 1} : (struct spam_bayes_count){1, 90};
    p = spam_bayes_classify(many, 400, 100, 100, &used);
    assert_int_equal(used, 150);
    assert_true(p < 0.01); /* the strong ham tokens win */
}

/* The bands' edges: a band covers [previous below, below). */
static void test_bands(void **state)
{
    (void)state;
    assert_string_equal(spam_bayes_band(0.0)->name, "BAYES_00");
    assert_string_equal(spam_bayes_band(0.0099)->name, "BAYES_00");
    assert_string_equal(spam_bayes_band(0.01)->name, "BAYES_05");
    assert_string_equal(spam_bayes_band(0.5)->name, "BAYES_50");
    assert_true(spam_bayes_band(0.5)->score == 0.0); /* unsure says nothing */
    /* the outermost band is a verdict: it reaches the tag threshold (6) */
    assert_true(spam_bayes_band(0.9995)->score >= 6.0);
    assert_string_equal(spam_bayes_band(0.99)->name, "BAYES_99");
    assert_string_equal(spam_bayes_band(0.999)->name, "BAYES_999");
    assert_string_equal(spam_bayes_band(1.0)->name, "BAYES_999");
    assert_string_equal(spam_bayes_band(7.0)->name, "BAYES_999");
    assert_true(spam_bayes_band(0.0)->score < 0);
}

static void test_snapshot(void **state)
{
    (void)state;
    struct spam_bayes_snap *s = spam_bayes_snap_new(1, 7, 9);
    for (uint64_t i = 0; i < 5000; i++) /* grows past its first size */
        spam_bayes_snap_put(s, i * 7919, (struct spam_bayes_count){(uint32_t)i, 1});
    spam_bayes_snap_put(s, 0, (struct spam_bayes_count){42, 43}); /* hash 0 is legal */
    assert_int_equal(spam_bayes_snap_size(s), 5000);              /* 0*7919 == 0 again */
    for (uint64_t i = 1; i < 5000; i++)
        assert_int_equal(spam_bayes_snap_get(s, i * 7919).spam, i);
    assert_int_equal(spam_bayes_snap_get(s, 0).spam, 42);
    assert_int_equal(spam_bayes_snap_get(s, 123456789).spam, 0);
    uint32_t ns, nh;
    spam_bayes_snap_totals(s, &ns, &nh);
    assert_int_equal(ns, 7);
    assert_int_equal(nh, 9);
    spam_bayes_snap_free(s);
}

static const char *spam_words[] = {"viagra",      "casino",   "winner",   "lottery", "bitcoin",
                                   "unsubscribe", "pharmacy", "discount", "million", "urgent"};
static const char *ham_words[] = {"meeting", "agenda", "patch",  "review", "kernel",
                                  "thanks",  "lunch",  "report", "budget", "schedule"};

static char *make_msg(int spam, int i)
{
    const char **w = spam ? spam_words : ham_words;
    char *buf = malloc(2048);
    snprintf(buf, 2048,
             "From: %s%d@example.%s\r\nSubject: %s %s\r\nMessage-ID: <%s%d@x>\r\n\r\n"
             "%s %s %s common words here %d\r\n",
             spam ? "promo" : "colleague", i, spam ? "biz" : "org", w[i % 10], w[(i + 3) % 10],
             spam ? "s" : "h", i, w[(i + 1) % 10], w[(i + 2) % 10], w[(i + 5) % 10], i);
    return buf;
}

static void test_store(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-bayes-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    char err[256];
    struct spam_bayes_db *db = spam_bayes_db_open(path, true, false, err, sizeof err);
    assert_non_null(db);
    uint64_t tok[SPAM_BAYES_MAX_TOKENS];
    assert_int_equal(spam_bayes_db_begin(db), 0);
    for (int c = 0; c < 2; c++) {
        for (int i = 0; i < 30; i++) {
            char *t = make_msg(c, i);
            struct spam_msg *m = parse(t);
            size_t n = spam_bayes_tokens(m, tok, SPAM_BAYES_MAX_TOKENS);
            assert_int_equal(
                spam_bayes_db_learn(db, spam_bayes_msg_id(m, tok, n), tok, n, c, false),
                SPAM_BAYES_LEARNED);
            spam_msg_free(m);
            free(t);
        }
    }
    assert_int_equal(spam_bayes_db_commit(db), 0);
    uint32_t ns, nh;
    uint64_t nt;
    assert_int_equal(spam_bayes_db_totals(db, &ns, &nh, &nt), 0);
    assert_int_equal(ns, 30);
    assert_int_equal(nh, 30);
    assert_true(nt > 40);

    /* The same message again: nothing; as the other class: moved; forget. */
    char *t = make_msg(1, 0);
    struct spam_msg *m = parse(t);
    size_t n = spam_bayes_tokens(m, tok, SPAM_BAYES_MAX_TOKENS);
    uint64_t id = spam_bayes_msg_id(m, tok, n);
    assert_int_equal(spam_bayes_db_learn(db, id, tok, n, true, false), SPAM_BAYES_ALREADY);
    assert_int_equal(spam_bayes_db_learn(db, id, tok, n, false, false), SPAM_BAYES_RELEARNED);
    assert_int_equal(spam_bayes_db_totals(db, &ns, &nh, NULL), 0);
    assert_int_equal(ns, 29);
    assert_int_equal(nh, 31);
    assert_int_equal(spam_bayes_db_learn(db, id, tok, n, false, true), SPAM_BAYES_FORGOTTEN);
    assert_int_equal(spam_bayes_db_learn(db, id, tok, n, false, true), SPAM_BAYES_UNKNOWN);
    assert_int_equal(spam_bayes_db_learn(db, id, tok, n, true, false), SPAM_BAYES_LEARNED);
    spam_msg_free(m);
    free(t);

    /* Classify unseen messages of each class with the snapshot. */
    struct spam_bayes_snap *s = spam_bayes_db_snapshot(db);
    assert_non_null(s);
    for (int c = 0; c < 2; c++) {
        for (int i = 100; i < 110; i++) {
            t = make_msg(c, i);
            m = parse(t);
            size_t ntok, used;
            double p = spam_bayes_score(s, m, 20, &ntok, &used);
            assert_true(used > 0);
            if (c)
                assert_true(p > 0.9);
            else
                assert_true(p < 0.1);
            /* Not enough learned: no judgement. */
            assert_true(spam_bayes_score(s, m, 1000, &ntok, &used) < 0);
            spam_msg_free(m);
            free(t);
        }
    }
    spam_bayes_snap_free(s);
    spam_bayes_db_close(db);

    /* Read-only open of the same store works; of garbage, an error. */
    db = spam_bayes_db_open(path, false, true, err, sizeof err);
    assert_non_null(db);
    spam_bayes_db_close(db);
    FILE *f = fopen(path, "w");
    fputs("not a database at all, just text\n", f);
    fclose(f);
    assert_null(spam_bayes_db_open(path, false, false, err, sizeof err));
    assert_non_null(strstr(err, path));
    unlink(path);
    char wal[64];
    snprintf(wal, sizeof wal, "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", path);
    unlink(wal);
}

int main(void)
{
    spam_msg_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens),        cmocka_unit_test(test_tokens_meta),
        cmocka_unit_test(test_probabilities), cmocka_unit_test(test_bands),
        cmocka_unit_test(test_snapshot),      cmocka_unit_test(test_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
