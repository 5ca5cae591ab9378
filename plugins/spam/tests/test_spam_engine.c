/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Engine tables: HTML to text and hidden text, URI extraction and hosts,
 * message fields, evaluation (meta arithmetic, GTUBE, invalid UTF-8) and
 * the time bound on a catastrophic regex over a 1 MB hostile message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spam_eval.h"
#include "spam_html.h"
#include "spam_msg.h"
#include "spam_rules.h"
#include "pstr.h"
#include "spam_uri.h"
#include "same_view.h"

#include <gmime/gmime.h>

static void test_html_text_and_hidden(void **state)
{
    (void)state;
    static const struct {
        const char *html, *text, *hidden;
    } cases[] = {
        {"<p>Hello <b>world</b></p>", "Hello world", ""},
        {"a&amp;b &lt;c&gt; &#65;&#x42; caf&eacute;", "a&b <c> AB caf\xc3\xa9", ""},
        {"x<style>p{color:red}</style>y<script>var a='<p>';</script>z", "xyz", ""},
        {"<!-- hidden comment -->seen", "seen", ""},
        {"<p>one</p><p>two</p>", "one\ntwo", ""},
        {"  lots   of\n\n  space  ", "lots of space", ""},
        {"ok<div style=\"display:none\">secret words</div>", "ok", "secret words"},
        {"ok<span style=\"visibility: hidden\">sh</span>", "ok", "sh"},
        {"ok<span style=\"font-size:0px\">tiny</span>", "ok", "tiny"},
        {"ok<span style=\"font-size:0.9em\">small</span>", "oksmall", ""},
        {"ok<font color=\"#FFF\">white</font>", "ok", "white"},
        {"<body bgcolor=black>a<font color=white>b</font></body>", "ab", ""},
        {"<div style=\"background-color:#123456\"><span style=\"color:#123456\">same</span></div>", "", "same"},
        {"<span hidden>h</span>v", "v", "h"},
        {"<div style=\"display:none\"><p>nested <b>deep</b></p></div>after", "after", "nested deep"},
        {"unclosed <b>bold", "unclosed bold", ""},
        {"stray </div></span> end", "stray\nend", ""},
        {"a < b and c > d", "a < b and c > d", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct spam_html_result r;
        memset(&r, 0, sizeof(r));
        spam_html_parse(cases[i].html, strlen(cases[i].html), &r);
        if (strcmp(pstr_cstr(&r.text), cases[i].text) || strcmp(pstr_cstr(&r.hidden), cases[i].hidden))
            fprintf(stderr, "case %zu: got text '%s' hidden '%s', want '%s' / '%s'\n", i, pstr_cstr(&r.text),
                    pstr_cstr(&r.hidden), cases[i].text, cases[i].hidden);
        assert_string_equal(pstr_cstr(&r.text), cases[i].text);
        assert_string_equal(pstr_cstr(&r.hidden), cases[i].hidden);
        spam_html_result_free(&r);
    }
}

static void test_html_links_and_uris(void **state)
{
    (void)state;
    const char *h = "<a href=\"https://evil.example/x?a=1&amp;b=2\">www.bank.example</a>"
                    "<img src='http://img.example/p.gif'><form action=/post></form>"
                    "<a href=https://plain.example>click <b>here</b></a>";
    struct spam_html_result r;
    memset(&r, 0, sizeof(r));
    spam_html_parse(h, strlen(h), &r);
    assert_int_equal(r.nuris, 4);
    assert_string_equal(r.uris[0], "https://evil.example/x?a=1&b=2");
    assert_string_equal(r.uris[1], "http://img.example/p.gif");
    assert_string_equal(r.uris[2], "/post");
    assert_string_equal(r.uris[3], "https://plain.example");
    assert_int_equal(r.nlinks, 2);
    assert_string_equal(r.links[0].text, "www.bank.example");
    assert_string_equal(r.links[1].text, "click here");
    spam_html_result_free(&r);
}

struct uris {
    char v[8][256];
    size_t n;
};

static void collect(void *arg, const char *u, size_t n)
{
    struct uris *c = arg;
    if (c->n < 8)
        snprintf(c->v[c->n++], sizeof(c->v[0]), "%.*s", (int)n, u);
}

static void test_uri_extract_and_hosts(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want[3];
    } cases[] = {
        {"see http://a.example/x.", {"http://a.example/x", NULL, NULL}},
        {"(https://b.example/p?q=1), and www.c.example!", {"https://b.example/p?q=1", "http://www.c.example", NULL}},
        {"<http://d.example/>", {"http://d.example/", NULL, NULL}},
        {"nohttp://x.example xwww.y.example", {NULL, NULL, NULL}},
        {"mailto:a@b.example", {"mailto:a@b.example", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct uris c;
        memset(&c, 0, sizeof(c));
        spam_uri_extract(cases[i].text, strlen(cases[i].text), 10, collect, &c);
        size_t want = 0;
        while (want < 3 && cases[i].want[want])
            want++;
        assert_int_equal(c.n, want);
        for (size_t k = 0; k < want; k++)
            assert_string_equal(c.v[k], cases[i].want[k]);
    }
    static const struct {
        const char *uri;
        int rc;
        const char *host;
    } hosts[] = {
        {"http://User@Host.Example:80/x", 0, "host.example"},
        {"https://[2001:db8::1]/", 0, "[2001:db8::1]"},
        {"www.a.example/path", 0, "www.a.example"},
        {"mailto:x@y.example", -1, NULL},
        {"/relative", -1, NULL},
    };
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        char out[256];
        assert_int_equal(spam_uri_host(hosts[i].uri, out, sizeof(out)), hosts[i].rc);
        if (hosts[i].rc == 0)
            assert_string_equal(out, hosts[i].host);
    }
    static const struct {
        const char *text;
        int rc;
        const char *host;
    } texts[] = {
        {"www.Bank.example", 0, "www.bank.example"},
        {" https://bank.example/login ", 0, "bank.example"},
        {"bank.example/login", 0, "bank.example"},
        {"click here", -1, NULL},
        {"version 1.2", -1, NULL},
        {"bank.example is great", -1, NULL},
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        char out[256];
        assert_int_equal(spam_uri_text_host(texts[i].text, out, sizeof(out)), texts[i].rc);
        if (texts[i].rc == 0)
            assert_string_equal(out, texts[i].host);
    }
    assert_int_equal(spam_uri_hosts_differ("www.bank.example", "login.bank.example"), 0);
    assert_int_equal(spam_uri_hosts_differ("bank.example", "bank.example"), 0);
    assert_int_equal(spam_uri_hosts_differ("bank.example", "evil.example"), 1);
    assert_int_equal(spam_uri_hosts_differ("bank.example", "notbank.example"), 1);
}

static struct spam_ruleset *rules(const char *text)
{
    struct spam_rules_errors errs;
    struct spam_rules_builder *b = spam_rules_builder_new();
    spam_rules_builder_add_text(b, "t.rules", text, strlen(text));
    struct spam_ruleset *rs = spam_rules_builder_finish(b, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s:%u: %s\n", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
    spam_rules_errors_free(&errs);
    assert_non_null(rs);
    return rs;
}

static const char field_msg[] =
    "From: =?UTF-8?Q?Andr=C3=A9?= <andre@example.org>\r\n"
    "To: a@example.net, \"B\" <b@example.net>\r\n"
    "Cc: c@example.net\r\n"
    "Subject: =?UTF-8?B?Q2Fmw6k=?=\r\n"
    "Received: one\r\n"
    "Received: two\r\n"
    "X-Folded: first\r\n second\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b\"\r\n"
    "\r\n"
    "--b\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Gr=FC=DFe, see http://x.example/\r\n"
    "--b\r\n"
    "Content-Type: application/zip; name=\"a.zip\"\r\n"
    "Content-Disposition: attachment; filename=\"a.zip\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "UEsDBA==\r\n"
    "--b--\r\n";

static void test_msg_fields(void **state)
{
    (void)state;
    static const struct {
        const char *field;
        const char *value;
        int exists;
    } cases[] = {
        {"From", "Andr\xc3\xa9 <andre@example.org>", 1},
        {"From:addr", "andre@example.org", 1},
        {"From:name", "Andr\xc3\xa9", 1},
        {"Subject", "Caf\xc3\xa9", 1},
        {"Subject:raw", "=?UTF-8?B?Q2Fmw6k=?=", 1},
        {"Received", "one\ntwo", 1},
        {"Received:count", "2", 1},
        {"X-Folded", "first second", 1},
        {"X-Missing", "", 0},
        {"X-Missing:count", "0", 0},
        {"ToCc:addr", "a@example.net\nb@example.net\nc@example.net", 1},
        {"To:name", "\nB", 1},
        {"ENV:from", "s@example.org", 1},
        {"ENV:rcpt", "r1@example.net\nr2@example.net", 1},
        {"CLIENT:ip", "192.0.2.1", 1},
        {"CLIENT:helo", "helo.example", 1},
        {"CLIENT:name", "", 0},
        {"MIME:parts", "text/plain quoted-printable inline\napplication/zip base64 attachment", 1},
        {"MIME:filenames", "a.zip", 1},
        {"HTML:hidden", "", 0},
    };
    const char *rcpts[] = {"r1@example.net", "r2@example.net"};
    struct spam_msg_env env = {"s@example.org", rcpts, 2, "192.0.2.1", "helo.example", NULL};
    struct spam_msg *m = spam_msg_parse(field_msg, strlen(field_msg), &env, 65536);
    assert_string_equal(pstr_cstr(&m->text), "Gr\xc3\xbc\xc3\x9f" "e, see http://x.example/");
    assert_int_equal(m->nuris, 1);
    assert_string_equal(m->uris[0], "http://x.example/");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "header R %s =~ /x/", cases[i].field);
        struct spam_ruleset *rs = rules(text);
        struct pstr v = PSTR_INIT;
        int exists = -1;
        spam_msg_field(m, &rs->rules[0], &v, &exists);
        if (strcmp(pstr_cstr(&v), cases[i].value) != 0)
            fprintf(stderr, "%s: got '%s', want '%s'\n", cases[i].field, pstr_cstr(&v), cases[i].value);
        assert_string_equal(pstr_cstr(&v), cases[i].value);
        assert_int_equal(exists, cases[i].exists);
        pstr_free(&v);
        spam_ruleset_unref(rs);
    }
    spam_msg_free(m);
}

static int hit(const struct spam_ruleset *rs, const struct spam_result *res, const char *name)
{
    long i = spam_ruleset_find(rs, name);
    assert_true(i >= 0);
    return res->hit[i];
}

static void run(const struct spam_ruleset *rs, const char *msg, size_t len, struct spam_result *res)
{
    struct spam_eval_limits lim = SPAM_EVAL_LIMITS_DEFAULT;
    struct spam_scratch_pool *pool = spam_scratch_pool_new(&lim);
    struct spam_msg *m = spam_msg_parse(msg, len, NULL, 256 * 1024);
    assert_int_equal(spam_eval_run(rs, m, pool, res), 0);
    spam_msg_free(m);
    spam_scratch_pool_free(pool);
}

static void test_eval_meta_and_ops(void **state)
{
    (void)state;
    struct spam_ruleset *rs = rules("body A /apple/\nbody B /banana/\nbody C /cherry/\n"
                                    "header NOSUBJ Subject !~ /./\nheader HASX exists:X-Thing\n"
                                    "meta M_AND A && B\nmeta M_OR A || C\nmeta M_NOT !C\nmeta M_CNT A + B + C >= 2\n"
                                    "meta M_CMP (A + B) * 2 == 4\nmeta M_NE A - B != 0\nmeta M_NEST M_AND && !M_NOT\n"
                                    "score A 1.5\nscore M_AND 2\nscore NOSUBJ 0.25\n");
    const char msg[] = "To: x@example.net\r\n\r\napple and banana\r\n";
    struct spam_result res;
    run(rs, msg, sizeof(msg) - 1, &res);
    static const struct {
        const char *name;
        int want;
    } cases[] = {
        {"A", 1}, {"B", 1}, {"C", 0}, {"NOSUBJ", 1}, {"HASX", 0}, {"M_AND", 1}, {"M_OR", 1},
        {"M_NOT", 1}, {"M_CNT", 1}, {"M_CMP", 1}, {"M_NE", 0}, {"M_NEST", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (hit(rs, &res, cases[i].name) != cases[i].want)
            fprintf(stderr, "%s: got %d want %d\n", cases[i].name, !cases[i].want, cases[i].want);
        assert_int_equal(hit(rs, &res, cases[i].name), cases[i].want);
    }
    /* A 1.5 + B 1 + NOSUBJ 0.25 + M_AND 2 + M_OR 1 + M_NOT 1 + M_CNT 1 + M_CMP 1 */
    assert_true(res.score > 8.749 && res.score < 8.751);
    assert_int_equal(res.gtube, 0);
    spam_result_free(&res);
    spam_ruleset_unref(rs);
}

static void test_eval_gtube_and_invalid_utf8(void **state)
{
    (void)state;
    struct spam_ruleset *rs = rules("body CAF /caf\\x{e9}/i\nfull RAW /\\xff?PASS/\nbody NEVER /zzz/\n");
    /* GTUBE assembled here so the test source is no GTUBE message itself. */
    char gtube[80];
    snprintf(gtube, sizeof(gtube), "%s%s", "XJS*C4JDBQADN1.NSBN3*2IDNEN*", "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X");
    assert_string_equal(gtube, spam_gtube);
    char msg[512];
    int n = snprintf(msg, sizeof(msg), "Subject: t\r\n\r\n%s\r\n", gtube);
    struct spam_result res;
    run(rs, msg, (size_t)n, &res);
    assert_int_equal(res.gtube, 1);
    assert_true(res.score >= 1000.0);
    spam_result_free(&res);

    /* Invalid UTF-8 (raw latin-1 bytes, stray continuation, truncated
     * sequence) next to valid text: rules still match, nothing errors. */
    const char bad[] = "Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                       "\xff\xfe\x80 CAF\xc3\x89 \xe2\x82 PASS\r\n";
    run(rs, bad, sizeof(bad) - 1, &res);
    assert_int_equal(res.gtube, 0);
    assert_int_equal(hit(rs, &res, "CAF"), 1);
    assert_int_equal(hit(rs, &res, "RAW"), 1);
    assert_int_equal(hit(rs, &res, "NEVER"), 0);
    assert_int_equal(res.nlimited, 0);
    spam_result_free(&res);
    spam_ruleset_unref(rs);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * Run with the prefilter (where built) and without: the hostile texts end
 * in a real match of EVIL, so the prefilter has to let PCRE2 run and the
 * limits are what stops it.
 */
static void catastrophic(int no_prefilter)
{
    /* Exponential backtracking at every start position of a 1 MB body. */
    struct spam_ruleset *rs = rules("body EVIL /(\\w+\\s?)+$/\nfull EVIL2 /(a|aa)+$/\nbody FINE /hello/\n");
    size_t size = 1024 * 1024;
    struct pstr msg = PSTR_INIT;
    pstr_puts(&msg, "Subject: adversarial\r\n\r\nhello\r\n");
    while (msg.len < size) {
        for (int i = 0; i < 30; i++)
            pstr_putc(&msg, 'a');
        pstr_puts(&msg, "!\r\n");
    }
    pstr_puts(&msg, "end\r\n");
    double t0 = now();
    struct spam_result res;
    struct spam_eval_limits lim = SPAM_EVAL_LIMITS_DEFAULT;
    lim.no_prefilter = no_prefilter;
    struct spam_scratch_pool *pool = spam_scratch_pool_new(&lim);
    struct spam_msg *m = spam_msg_parse(msg.ptr, msg.len, NULL, 2 * 1024 * 1024);
    assert_int_equal(spam_eval_run(rs, m, pool, &res), 0);
    double took = now() - t0;
    fprintf(stderr, "1 MB adversarial message (%s): %.3f s, %zu rules limited\n",
            no_prefilter || !rs->pf ? "PCRE2 only" : "prefilter", took, res.nlimited);
    assert_true(took < 1.5);
    assert_int_equal(hit(rs, &res, "EVIL"), 0);
    assert_int_equal(res.limited[spam_ruleset_find(rs, "EVIL")], 1);
    assert_int_equal(hit(rs, &res, "FINE"), 1);
    spam_result_free(&res);
    spam_msg_free(m);

    /*
     * Lines short enough that no single start position reaches the match
     * limit (2^11 steps each): only the time budget can stop this one
     * (it would take seconds to minutes unbounded).
     */
    pstr_clear(&msg);
    pstr_puts(&msg, "Subject: adversarial\r\n\r\nhello\r\n");
    while (msg.len < size)
        pstr_puts(&msg, "aaaaaaaaaaa!");
    pstr_puts(&msg, "aaaa\r\n");
    t0 = now();
    m = spam_msg_parse(msg.ptr, msg.len, NULL, 2 * 1024 * 1024);
    assert_int_equal(spam_eval_run(rs, m, pool, &res), 0);
    took = now() - t0;
    fprintf(stderr, "1 MB adversarial message (time budget, %s): %.3f s, %zu rules limited\n",
            no_prefilter || !rs->pf ? "PCRE2 only" : "prefilter", took, res.nlimited);
    assert_true(took < 1.5);
    assert_int_equal(res.limited[spam_ruleset_find(rs, "EVIL")], 1);
    assert_int_equal(hit(rs, &res, "EVIL"), 0);
    assert_int_equal(hit(rs, &res, "FINE"), 1);
    spam_result_free(&res);
    spam_msg_free(m);
    spam_scratch_pool_free(pool);
    pstr_free(&msg);
    spam_ruleset_unref(rs);
}

static void test_eval_catastrophic_regex_bounded(void **state)
{
    (void)state;
    catastrophic(0);
    catastrophic(1);
}

/* ---- the plain text shortcut ------------------------------------------- */

/*
 * Messages at the edges of what spam_msg_parse reads without GMime: each
 * is read with the shortcut on and off, and must give the same view
 * either way; `plain` says whether the shortcut may take it.
 */
static void test_msg_plain_shortcut_same_as_gmime(void **state)
{
    (void)state;
    static const char nul_msg[] = "Subject: x\r\n\r\nnul\0byte\r\n";
    static const struct {
        const char *msg;
        size_t len; /* 0: strlen */
        int plain;
        const char *parts;
    } cases[] = {
        /* smtp-source's mail: no MIME fields at all */
        {"From: <a@example.org>\r\nTo: <b@example.net>\r\nSubject: x\r\n\r\nLa de da "
         "http://u.example/p\r\n.dot\r\n",
         0, 1, "text/plain 7bit inline"},
        {"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nhi "
         "there\r\n",
         0, 1, "text/plain 8bit inline"},
        {"Content-Type: TEXT/Plain ; CharSet=\"US-ASCII\"; format=flowed; delsp=yes\r\n\r\nhi\r\n",
         0, 1, NULL},
        {"content-transfer-encoding: 7BIT\r\ncontent-type: text/plain;\r\n "
         "charset=utf-8\r\n\r\nfolded\r\n",
         0, 1, NULL},
        {"Content-Transfer-Encoding: Binary\r\n\r\nbin\r\n", 0, 1, "text/plain binary inline"},
        /* 8-bit text: as is when no charset is named, GMime's when one is */
        {"Subject: x\r\n\r\nGr\xc3\xbc\xc3\x9f"
         "e \xff\xfe\r\n",
         0, 1, NULL},
        /* utf-8: valid UTF-8 as is (a BOM and a noncharacter included),
         * anything else is GMime's (it drops what iconv refuses) */
        {"Content-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbc\xc3\x9f"
         "e \xef\xbb\xbf \xef\xbf\xbe \xf0\x9f\x98\x80\r\n",
         0, 1, NULL},
        {"Content-Type: text/plain; charset=utf-8\r\n\r\nbad \xc3\r\n", 0, 0, NULL},
        {"Content-Type: text/plain; charset=utf-8\r\n\r\nsurrogate \xed\xa0\x80\r\n", 0, 0, NULL},
        {"Content-Type: text/plain; charset=utf-8\r\n\r\noverlong \xc0\xaf\r\n", 0, 0, NULL},
        {"Content-Type: text/plain; charset=utf-8\r\n\r\ncut at the end \xe2\x82", 0, 0, NULL},
        {"Content-Type: text/plain; charset=us-ascii\r\n\r\nbad \xff\r\n", 0, 0, NULL},
        {"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nhi\r\n", 0, 0, NULL},
        {"Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n", 0, 0, NULL},
        {"Content-Type: text/plain; name=\"a.txt\"\r\n\r\nhi\r\n", 0, 0, NULL},
        {"Content-Type: text/plain (comment)\r\n\r\nhi\r\n", 0, 0, NULL},
        /* GMime decodes encoded words in the value before its parameters
         * (from a review): a charset and a file name in disguise */
        {"Content-Type: text/plain; format=flowed =?us-ascii?q?=3B_charset=3Dutf-7?=\r\n\r\n"
         "+AFY-iagra\r\n",
         0, 0, NULL},
        {"Content-Type: text/plain; format=flowed =?us-ascii?q?=3B_name=3Dinvoice.exe?=\r\n\r\n"
         "hi\r\n",
         0, 0, NULL},
        {"Content-Type: text/plain; format=fl\xc3\xb6wed\r\n\r\nhi\r\n", 0, 0, NULL},
        {"Content-Type: text/plain; charset=utf-8; charset=iso-8859-1\r\n\r\nhi\r\n", 0, 0, NULL},
        {"Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\n<b>hi</b>\r\n", 0, 0, NULL},
        {"Content-Type: text/html\r\n\r\n<p>hi <a "
         "href=\"http://a.example/\">http://b.example/</a></p>\r\n",
         0, 0, NULL},
        {"Content-Disposition: attachment; filename=a.txt\r\n\r\nhi\r\n", 0, 0, NULL},
        {"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe\r\n", 0, 0, NULL},
        {"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n", 0, 0, NULL},
        {"Content-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n",
         0, 0, NULL},
        /* header sections GMime might split otherwise */
        {"From sender@example.org Mon Dec  7 10:00:00 2026\r\nSubject: x\r\n\r\nhi\r\n", 0, 0,
         NULL},
        {" folded first\r\nSubject: x\r\n\r\nhi\r\n", 0, 0, NULL},
        {"Subject: x\r\n \t\r\nTo: y\r\n\r\nhi\r\n", 0, 0, NULL},
        {"Subject: x\r\nnot a header\r\nTo: y\r\n\r\nhi\r\n", 0, 0, NULL},
        {"Subject : x\r\n\r\nhi\r\n", 0, 0, NULL},
        {"Bad Name: x\r\n\r\nhi\r\n", 0, 0, NULL},
        {"Subject: a\rb\r\n\r\nhi\r\n", 0, 0, NULL},
        {"Subject: x\r\nTo: y\r\n", 0, 0, NULL},
        {nul_msg, sizeof nul_msg - 1, 0, NULL},
        /* line ends and ends of the body */
        {"Subject: x\n\nlf only\nsecond\n", 0, 1, NULL},
        {"Subject: x\r\n\r\nno newline at the end", 0, 1, NULL},
        {"Subject: x\r\n\r\n", 0, 1, NULL},
        {"Subject: x\r\n\r\n\r\n\r\n", 0, 1, NULL},
        {"Subject: =?UTF-8?B?Q2Fmw6k=?=\r\nX-A: caf\xc3\xa9 =?bogus\r\n\r\nhi\r\n", 0, 1, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].msg);
        for (size_t max_scan = 8; max_scan <= 65536; max_scan *= 8192) {
            struct spam_msg *m = spam_msg_parse(cases[i].msg, len, NULL, max_scan);
            spam_msg_set_plain_shortcut(0);
            struct spam_msg *g = spam_msg_parse(cases[i].msg, len, NULL, max_scan);
            spam_msg_set_plain_shortcut(1);
            if (m->plain != cases[i].plain)
                fail_msg("case %zu: plain %d, want %d", i, m->plain, cases[i].plain);
            assert_int_equal(g->plain, 0);
            same_view(m, g);
            if (cases[i].parts)
                assert_string_equal(pstr_cstr(&m->parts), cases[i].parts);
            spam_msg_free(g);
            spam_msg_free(m);
        }
    }
}

/* Header values decoded without GMime are the ones GMime decodes. */
static void test_msg_decode_header_same_as_gmime(void **state)
{
    (void)state;
    static const char *const values[] = {
        "",
        "plain words",
        "  two  blanks\tand a tab ",
        "a=b ?= =? x",
        "=?UTF-8?Q?Caf=C3=A9?= bar",
        "foo=?UTF-8?B?Q2Fmw6k=?=",
        "caf\xc3\xa9",
        "latin \xe9t\xe9",
        "=?",
        "x =?bogus",
        "=?UTF-8?B?YQ==?= =?UTF-8?B?Yg==?=",
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char *ours = spam_msg_decode_header(values[i]);
        char *g = g_mime_utils_header_decode_text(NULL, values[i]);
        assert_string_equal(ours, g ? g : values[i]);
        g_free(g);
        free(ours);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_html_text_and_hidden),
        cmocka_unit_test(test_html_links_and_uris),
        cmocka_unit_test(test_uri_extract_and_hosts),
        cmocka_unit_test(test_msg_fields),
        cmocka_unit_test(test_msg_plain_shortcut_same_as_gmime),
        cmocka_unit_test(test_msg_decode_header_same_as_gmime),
        cmocka_unit_test(test_eval_meta_and_ops),
        cmocka_unit_test(test_eval_gtube_and_invalid_utf8),
        cmocka_unit_test(test_eval_catastrophic_regex_bounded),
    };
    return cmocka_run_group_tests_name("spam_engine", tests, NULL, NULL);
}
