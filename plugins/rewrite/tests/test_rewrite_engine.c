/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Rewrite engine: each rule type on real messages, byte-exact results
 * (envelope after MAIL/RCPT, header after DATA), conditions, stop, SRS,
 * the edit list the plugin hands to the host, and the match limit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "rw_eval.h"
#include "rw_hdr.h"
#include "rw_rules.h"
#include "rw_srs.h"
#include "plughdr.h" /* the host's folding rule, as the plugin gets it */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "0123456789abcdef-test-secret"
#define NOW ((time_t)1717200000) /* 2024-06-01 */

static struct rw_srs *srs_keys; /* SECRET, '=', 21 days (setup) */

struct tcase {
    const char *name;
    const char *rules;
    const char *sender;
    const char *rcpts[4];
    const char *ip;
    const char *symbols[3];
    double score;
    const char *msg;
    /* want */
    const char *want_sender;
    const char *want_rcpts[4];
    const char *want_msg; /* NULL: unchanged */
    int want_rc;          /* of the sender or first failing recipient, when not RW_CHANGED/KEEP */
};

struct sym_ctx {
    const char *const *symbols;
    double score;
};

static int has_symbol(void *ud, const char *name)
{
    const struct sym_ctx *c = ud;
    for (size_t i = 0; i < 3 && c->symbols[i]; i++)
        if (strcmp(c->symbols[i], name) == 0)
            return 1;
    return 0;
}

static double score(void *ud)
{
    return ((const struct sym_ctx *)ud)->score;
}

/* Run one case like the plugin does; returns the first error rc or 0. */
static int run(const struct tcase *tc, char **sender_out, char *rcpts_out[4], char **msg_out)
{
    struct rw_errors errs = RW_ERRORS_INIT;
    struct rw_ruleset *rs = rw_rules_parse(tc->rules, strlen(tc->rules), "/tmp/rwt/e.rules", &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s: %s:%u: %s\n", tc->name, errs.v[i].file, errs.v[i].line, errs.v[i].msg);
    assert_non_null(rs);
    rw_errors_free(&errs);
    struct rw_scratch *sc = rw_scratch_new(100000);
    struct rw_tx *tx = rw_tx_new(rs);
    rw_ruleset_unref(rs);
    struct sym_ctx sctx = {tc->symbols, tc->score};
    struct rw_env env = {
        .sender = tc->sender ? tc->sender : "",
        .client_ip = tc->ip ? tc->ip : "192.0.2.1",
        .has_symbol = has_symbol,
        .score = score,
        .ud = &sctx,
        .now = NOW,
        .srs = srs_keys,
    };
    int err = 0;
    char *out = NULL;
    unsigned line;
    int rc = rw_eval_sender(tx, &env, sc, &out, &line);
    if (rc < 0)
        err = rc;
    *sender_out = rc == RW_CHANGED ? out : strdup(env.sender);
    if (rc != RW_CHANGED)
        free(out);
    env.sender = *sender_out;
    const char *accepted[4] = {0};
    size_t nacc = 0;
    for (size_t i = 0; i < 4 && tc->rcpts[i]; i++) {
        env.rcpt = tc->rcpts[i];
        out = NULL;
        rc = rw_eval_rcpt(tx, &env, sc, &out, &line);
        if (rc < 0 && !err)
            err = rc;
        if (rc == RW_CHANGED) {
            rcpts_out[i] = out;
        } else {
            free(out);
            rcpts_out[i] = rc < 0 ? NULL : strdup(tc->rcpts[i]);
        }
        if (rcpts_out[i])
            accepted[nacc++] = rcpts_out[i];
    }
    env.rcpt = NULL;
    env.rcpts = accepted;
    env.nrcpts = nacc;
    struct rw_hdrs h = RW_HDRS_INIT(plughdr_fold);
    size_t body = 0;
    rw_hdrs_parse(&h, tc->msg, strlen(tc->msg), &body);
    rw_eval_headers(tx, &env, sc, &h, NULL);
    struct pstr m = PSTR_INIT;
    rw_hdrs_render(&h, &m);
    pstr_puts(&m, "\r\n");
    pstr_puts(&m, tc->msg + body);
    *msg_out = pstr_steal(&m);
    rw_hdrs_free(&h);
    rw_tx_free(tx);
    rw_scratch_free(sc);
    return err;
}

#define MSG_BASIC                                                                                       \
    "Received: from mua.corp.example (pc12.corp.example [10.0.0.5])\r\n\tby mx.corp.example; Mon, 6 May 2024 " \
    "10:00:00 +0200\r\n"                                                                                \
    "Received: from out.partner.example (out.partner.example [203.0.113.9])\r\n\tby mx.corp.example; Mon, 6 " \
    "May 2024 09:59:00 +0200\r\n"                                                                       \
    "From: Alice Example <alice@old.example>\r\n"                                                       \
    "To: Bob <bob+lists@Example.NET>, \"Carol, C.\" <carol@example.net>\r\n"                            \
    "Cc: dave@old.example (Dave)\r\n"                                                                   \
    "Subject: Lunch\r\n"                                                                                \
    "X-Originating-IP: [10.0.0.5]\r\n"                                                                  \
    "User-Agent: Mutt/2.2\r\n"                                                                          \
    "\r\n"                                                                                              \
    "Hi Bob,\r\nsee you.\r\n"

static const struct tcase engine_cases[] = {
    {.name = "nothing fires: byte for byte",
     .rules = "header remove X-Nope\nsubject-tag [EXT] if client 10.0.0.0/8\n",
     .sender = "alice@old.example",
     .rcpts = {"bob@example.net"},
     .msg = MSG_BASIC,
     .want_sender = "alice@old.example",
     .want_rcpts = {"bob@example.net"}},
    {.name = "header add at the end",
     .rules = "header add X-Scanned-By \"sluice rewrite\"\n",
     .msg = "From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n",
     .want_msg = "From: a@b.example\r\nSubject: x\r\nX-Scanned-By: sluice rewrite\r\n\r\nbody\r\n"},
    {.name = "header remove by name, every occurrence, folded ones too",
     .rules = "header remove X-Trace\n",
     .msg = "X-Trace: one\r\nFrom: a@b.example\r\nx-trace: two\r\n  continued\r\nSubject: x\r\n\r\nbody\r\n",
     .want_msg = "From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n"},
    {.name = "header remove by regex on the value",
     .rules = "header remove Received /by mx\\.corp\\.example/\n",
     .msg = "Received: from a by mx.corp.example; x\r\nReceived: from b\r\n by gw.example; y\r\nSubject: s\r\n\r\nb\r\n",
     .want_msg = "Received: from b\r\n by gw.example; y\r\nSubject: s\r\n\r\nb\r\n"},
    {.name = "header replace with a capture",
     .rules = "header replace Subject /^\\[old-list\\]\\s*(.*)$/ \"[new-list] $1\"\n",
     .msg = "Subject: [old-list]   Meeting notes\r\n\r\nb\r\n",
     .want_msg = "Subject: [new-list] Meeting notes\r\n\r\nb\r\n"},
    {.name = "header replace: no match leaves it alone",
     .rules = "header replace Subject /^\\[old-list\\](.*)$/ \"[new-list]$1\"\n",
     .msg = "Subject:   spacing kept\r\n\r\nb\r\n",
     .want_msg = NULL},
    {.name = "header prepend and append",
     .rules = "header prepend X-Note \"checked: \"\nheader append X-Note \" (ok)\"\n",
     .msg = "X-Note: clean\r\n\r\nb\r\n",
     .want_msg = "X-Note: checked: clean (ok)\r\n\r\nb\r\n"},
    {.name = "subject tag",
     .rules = "subject-tag [EXTERNAL]\n",
     .msg = "Subject: Lunch\r\n\r\nb\r\n",
     .want_msg = "Subject: [EXTERNAL] Lunch\r\n\r\nb\r\n"},
    {.name = "subject tag not twice on a reply",
     .rules = "subject-tag [EXTERNAL]\n",
     .msg = "Subject: Re: [EXTERNAL] Lunch\r\n\r\nb\r\n",
     .want_msg = NULL},
    {.name = "subject tag found in an encoded word",
     .rules = "subject-tag [EXTERNAL]\n",
     .msg = "Subject: =?UTF-8?Q?=5BEXTERNAL=5D_Caf=C3=A9?=\r\n\r\nb\r\n",
     .want_msg = NULL},
    {.name = "subject tag before encoded words, which stay as they are",
     .rules = "subject-tag [EXT]\n",
     .msg = "Subject: =?UTF-8?B?Q2Fmw6k=?=\r\n\r\nb\r\n",
     .want_msg = "Subject: [EXT] =?UTF-8?B?Q2Fmw6k=?=\r\n\r\nb\r\n"},
    {.name = "subject tag on a message without subject",
     .rules = "subject-tag [EXT]\n",
     .msg = "From: a@b.example\r\n\r\nb\r\n",
     .want_msg = "From: a@b.example\r\nSubject: [EXT]\r\n\r\nb\r\n"},
    {.name = "subject tag: long subject folded at 78",
     .rules = "subject-tag [EXTERNAL]\n",
     .msg = "Subject: The quarterly report for the northern region is attached, please review it\r\n"
            "\r\nb\r\n",
     .want_msg = "Subject: [EXTERNAL] The quarterly report for the northern region is attached,\r\n"
                 " please review it\r\n\r\nb\r\n"},
    {.name = "non-ASCII replacement written as encoded words",
     .rules = "header replace Subject /^Invoice (\\d+)$/ \"Facture n\xc2\xb0 $1\"\n",
     .msg = "Subject: Invoice 42\r\n\r\nb\r\n",
     .want_msg = "Subject: Facture =?UTF-8?b?bsKw?= 42\r\n\r\nb\r\n"},
    {.name = "strip internal Received hops by network, and internal headers",
     .rules = "strip-received 10.0.0.0/8\nheader remove X-Originating-IP\nheader remove User-Agent\n",
     .msg = MSG_BASIC,
     .want_msg =
         "Received: from out.partner.example (out.partner.example [203.0.113.9])\r\n\tby mx.corp.example; Mon, 6 "
         "May 2024 09:59:00 +0200\r\n"
         "From: Alice Example <alice@old.example>\r\n"
         "To: Bob <bob+lists@Example.NET>, \"Carol, C.\" <carol@example.net>\r\n"
         "Cc: dave@old.example (Dave)\r\n"
         "Subject: Lunch\r\n"
         "\r\n"
         "Hi Bob,\r\nsee you.\r\n"},
    {.name = "strip Received by pattern",
     .rules = "strip-received /from mua\\.corp\\.example/\n",
     .msg = "Received: from mua.corp.example by x\r\nReceived: from y by z\r\n\r\nb\r\n",
     .want_msg = "Received: from y by z\r\n\r\nb\r\n"},
    {.name = "sender domain migration by regex, From header too",
     .rules = "sender /^(.+)@old\\.example$/ $1@new.example headers\n",
     .sender = "alice@old.example",
     .msg = "From: Alice Example <alice@old.example>\r\nTo: x@old.example\r\n\r\nb\r\n",
     .want_sender = "alice@new.example",
     .want_msg = "From: Alice Example <alice@new.example>\r\nTo: x@old.example\r\n\r\nb\r\n"},
    {.name = "sender rule without headers flag leaves From",
     .rules = "sender /^(.+)@old\\.example$/ $1@new.example\n",
     .sender = "alice@old.example",
     .msg = "From: alice@old.example\r\n\r\nb\r\n",
     .want_sender = "alice@new.example"},
    {.name = "recipient map: exact, domain, catch-all; To and Cc",
     .rules = "recipient map e.map headers\n",
     .rcpts = {"Bob@Old.Example", "carol@old.example", "x@catch.example", "y@other.example"},
     .msg = "To: Bob <Bob@Old.Example>, carol@old.example\r\nCc: \"x@catch.example\" <x@catch.example>\r\n"
            "\r\nb\r\n",
     .want_rcpts = {"robert@new.example", "carol@new.example", "inbox@catch.example", "y@other.example"},
     .want_msg = "To: Bob <robert@new.example>, carol@new.example\r\n"
                 "Cc: \"x@catch.example\" <inbox@catch.example>\r\n\r\nb\r\n"},
    {.name = "canonicalisation: lower-case domain, strip plus",
     .rules = "recipient lowercase-domain\nrecipient strip-plus\n",
     .rcpts = {"Bob+Lists@Example.NET", "+x@example.net", "\"a+b\"@example.net"},
     .want_rcpts = {"Bob@example.net", "+x@example.net", "\"a+b\"@example.net"}},
    {.name = "catch-all by regex",
     .rules = "recipient /^.*@catch\\.example$/i inbox@catch.example\n",
     .rcpts = {"anything@CATCH.example", "bob@example.net"},
     .want_rcpts = {"inbox@catch.example", "bob@example.net"}},
    {.name = "rules chain in file order",
     .rules = "recipient strip-plus\nrecipient /^bob@/ robert@\nrecipient lowercase\n",
     .rcpts = {"bob+x@EXAMPLE.net"},
     .want_rcpts = {"robert@example.net"}},
    {.name = "null sender is never rewritten",
     .rules = "sender /^.*$/ x@y.example\n",
     .sender = "",
     .want_sender = ""},
    {.name = "conditions: client network",
     .rules = "subject-tag [EXT] if not client 10.0.0.0/8,fd00::/8\nheader add X-Int yes if client 10.0.0.0/8\n",
     .ip = "10.1.2.3",
     .msg = "Subject: s\r\n\r\nb\r\n",
     .want_msg = "Subject: s\r\nX-Int: yes\r\n\r\nb\r\n"},
    {.name = "conditions: sender, recipient, header, symbol, score",
     .rules = "header add X-A 1 if sender /@partner\\.example$/\n"
              "header add X-B 1 if recipient /^sales@/\n"
              "header add X-C 1 if header Subject /invoice/i\n"
              "header add X-D 1 if symbol DKIM_FAIL\n"
              "header add X-E 1 if score > 4.5\n"
              "header add X-F 1 if score < 4.5\n"
              "header add X-G 1 if symbol NOPE\n"
              "header add X-H 1 if sender /@partner\\.example$/ and not symbol DKIM_FAIL\n",
     .sender = "a@partner.example",
     .rcpts = {"bob@example.net", "sales@example.net"},
     .symbols = {"DKIM_FAIL"},
     .score = 5,
     .msg = "Subject: Your INVOICE\r\n\r\nb\r\n",
     .want_sender = "a@partner.example",
     .want_rcpts = {"bob@example.net", "sales@example.net"},
     .want_msg = "Subject: Your INVOICE\r\nX-A: 1\r\nX-B: 1\r\nX-C: 1\r\nX-D: 1\r\nX-E: 1\r\n\r\nb\r\n"},
    {.name = "header condition sees earlier edits",
     .rules = "header replace Subject /^Lunch$/ Dinner\nheader add X-Dinner yes if header Subject /Dinner/\n",
     .msg = "Subject: Lunch\r\n\r\nb\r\n",
     .want_msg = "Subject: Dinner\r\nX-Dinner: yes\r\n\r\nb\r\n"},
    {.name = "stop on a header rule",
     .rules = "header add X-A 1 stop if client 192.0.2.0/24\nheader add X-B 1\n",
     .msg = "Subject: s\r\n\r\nb\r\n",
     .want_msg = "Subject: s\r\nX-A: 1\r\n\r\nb\r\n"},
    {.name = "stop that does not fire does not stop",
     .rules = "header remove X-Missing stop\nheader add X-B 1\n",
     .msg = "Subject: s\r\n\r\nb\r\n",
     .want_msg = "Subject: s\r\nX-B: 1\r\n\r\nb\r\n"},
    {.name = "bare stop with a condition ends the message's processing",
     .rules = "header add X-A 1\nstop if sender /@trusted\\.example$/\nsubject-tag [EXT]\n"
              "recipient lowercase\n",
     .sender = "a@trusted.example",
     .rcpts = {"BOB@example.net"},
     .msg = "Subject: s\r\n\r\nb\r\n",
     .want_sender = "a@trusted.example",
     .want_rcpts = {"BOB@example.net"},
     .want_msg = "Subject: s\r\nX-A: 1\r\n\r\nb\r\n"},
    {.name = "sender rule with stop skips later rules of every phase",
     .rules = "sender /@old\\.example$/ @new.example stop\nrecipient lowercase\nsubject-tag [EXT]\n",
     .sender = "a@old.example",
     .rcpts = {"BOB@example.net"},
     .msg = "Subject: s\r\n\r\nb\r\n",
     .want_sender = "a@new.example",
     .want_rcpts = {"BOB@example.net"}},
    {.name = "recipient stop is per recipient",
     .rules = "recipient /^vip@.*$/i boss@example.net stop\nrecipient lowercase\nsubject-tag [EXT]\n",
     .rcpts = {"vip@Example.NET", "BOB@example.net"},
     .msg = "Subject: s\r\n\r\nb\r\n",
     .want_rcpts = {"boss@example.net", "bob@example.net"},
     .want_msg = "Subject: [EXT] s\r\n\r\nb\r\n"},
    {.name = "rewrite into an invalid address is refused",
     .rules = "recipient /^(.*)@(.*)$/ $1@@$2\n",
     .rcpts = {"bob@example.net"},
     .want_rcpts = {NULL},
     .want_rc = RW_INVALID},
};

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(engine_cases) / sizeof(engine_cases[0]); i++) {
        const struct tcase *tc = &engine_cases[i];
        struct tcase t = *tc;
        if (!t.msg)
            t.msg = "Subject: s\r\n\r\nb\r\n";
        char *sender = NULL, *rcpts[4] = {0}, *msg = NULL;
        int rc = run(&t, &sender, rcpts, &msg);
        int ok = rc == tc->want_rc;
        const char *want_sender = tc->want_sender ? tc->want_sender : (tc->sender ? tc->sender : "");
        ok &= strcmp(sender, want_sender) == 0;
        for (size_t k = 0; k < 4 && tc->rcpts[k]; k++) {
            const char *w = tc->want_rcpts[k];
            ok &= (w == NULL && rcpts[k] == NULL) || (w && rcpts[k] && strcmp(w, rcpts[k]) == 0);
        }
        const char *want_msg = tc->want_msg ? tc->want_msg : t.msg;
        ok &= strcmp(msg, want_msg) == 0;
        if (!ok) {
            fprintf(stderr, "case \"%s\": rc %d want %d\n  sender got <%s> want <%s>\n", tc->name, rc, tc->want_rc,
                    sender, want_sender);
            for (size_t k = 0; k < 4 && tc->rcpts[k]; k++)
                fprintf(stderr, "  rcpt got <%s> want <%s>\n", rcpts[k] ? rcpts[k] : "(refused)",
                        tc->want_rcpts[k] ? tc->want_rcpts[k] : "(refused)");
            fprintf(stderr, "  msg got:\n%s  msg want:\n%s", msg, want_msg);
        }
        free(sender);
        for (size_t k = 0; k < 4; k++)
            free(rcpts[k]);
        free(msg);
        assert_true(ok);
    }
}

static void test_encoded_output_decodes_back(void **state)
{
    (void)state;
    /* A long non-ASCII value: encoded, folded, every line <= 78, and it
     * decodes to what was written. */
    const char *text = "R\xc3\xa9union du comit\xc3\xa9 de direction \xe2\x80\x94 ordre du jour, "
                       "proc\xc3\xa8s-verbal et pi\xc3\xa8" "ces jointes \xc3\xa0 relire avant jeudi";
    struct rw_hdrs h = RW_HDRS_INIT(plughdr_fold);
    assert_int_equal(rw_hdrs_add(&h, "Subject", text), 0);
    struct pstr out = PSTR_INIT;
    rw_hdrs_render(&h, &out);
    const char *p = pstr_cstr(&out);
    size_t line = 0;
    for (; *p; p++) {
        if (*p == '\n') {
            assert_true(line <= 79); /* 78 + CR */
            line = 0;
        } else {
            assert_true((unsigned char)*p < 0x80);
            line++;
        }
    }
    char *dec = rw_hdr_decode(h.f[0].raw, strlen(h.f[0].raw));
    assert_string_equal(dec, text);
    free(dec);
    pstr_free(&out);
    rw_hdrs_free(&h);
}

static void test_edit_list_order(void **state)
{
    (void)state;
    const char *msg = "Received: a\r\nX-T: 1\r\nSubject: s\r\nX-T: 2\r\nX-T: 3\r\n\r\n";
    struct rw_hdrs h = RW_HDRS_INIT(plughdr_fold);
    rw_hdrs_parse(&h, msg, strlen(msg), NULL);
    rw_hdrs_delete(&h, 1);                 /* X-T #0 */
    rw_hdrs_delete(&h, 4);                 /* X-T #2 */
    assert_int_equal(rw_hdrs_set(&h, 2, "new"), 1); /* Subject */
    assert_int_equal(rw_hdrs_add(&h, "X-New", "v"), 0);
    struct rw_edit *e = NULL;
    size_t n = rw_hdrs_edits(&h, &e);
    assert_int_equal(n, 4);
    assert_int_equal(e[0].kind, RW_EDIT_CHANGE);
    assert_string_equal(e[0].name, "Subject");
    assert_string_equal(e[0].value, " new");
    assert_int_equal(e[1].kind, RW_EDIT_DELETE); /* last first: X-T nth 2, then nth 0 */
    assert_int_equal(e[1].nth, 2);
    assert_int_equal(e[2].kind, RW_EDIT_DELETE);
    assert_int_equal(e[2].nth, 0);
    assert_int_equal(e[3].kind, RW_EDIT_ADD);
    assert_string_equal(e[3].name, "X-New");
    free(e);
    rw_hdrs_free(&h);
}

static void test_addresses(void **state)
{
    (void)state;
    static const struct {
        const char *a;
        int ok;
    } cases[] = {
        {"bob@example.net", 1},     {"b.o.b@example.net", 1},   {"\"a b\"@example.net", 1},
        {"j\xc3\xb6rg@example.de", 1}, {"x@[192.0.2.1]", 1},    {"bob@@example.net", 0},
        {"bob@", 0},                {"@example.net", 0},        {"bob example@x.net", 0},
        {".bob@example.net", 0},    {"bob.@example.net", 0},    {"bo..b@example.net", 0},
        {"bob@-x.net", 0},          {"bob@x-.net", 0},          {"<bob@x.net>", 0},
        {"bob@x..net", 0},          {"bob", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (rw_addr_valid(cases[i].a) != cases[i].ok)
            fail_msg("rw_addr_valid(%s): want %d", cases[i].a, cases[i].ok);
}

static void test_srs_through_rules(void **state)
{
    (void)state;
    struct tcase t = {.name = "srs forward",
                      .rules = "sender srs fwd.example if not sender /@fwd\\.example$/\n",
                      .sender = "alice@example.org",
                      .msg = "Subject: s\r\n\r\nb\r\n"};
    char *sender = NULL, *rcpts[4] = {0}, *msg = NULL;
    assert_int_equal(run(&t, &sender, rcpts, &msg), 0);
    assert_memory_equal(sender, "SRS0=", 5);
    free(msg);
    /* the bounce comes back to it */
    struct tcase b = {.name = "srs reverse",
                      .rules = "recipient srs-reverse fwd.example\n",
                      .sender = "",
                      .rcpts = {sender, "SRS0=AAAAAAAA=AA=example.org=alice@fwd.example"},
                      .msg = "Subject: s\r\n\r\nb\r\n"};
    char *sender2 = NULL, *rcpts2[4] = {0};
    assert_int_equal(run(&b, &sender2, rcpts2, &msg), RW_SRS_BAD);
    assert_string_equal(rcpts2[0], "alice@example.org");
    assert_null(rcpts2[1]);
    free(rcpts2[0]);
    free(sender2);
    free(msg);
    free(sender);
}

/* A sender SRS cannot carry (its SRS0 form would have a local part over
 * 64 octets, see test_rewrite_srs.c) is kept through the rules: a tempfail
 * would hold the mail until it bounces. */
static void test_srs_unencodable(void **state)
{
    (void)state;
    struct tcase t = {.name = "srs too long",
                      .rules = "sender srs fwd.example\n",
                      .sender = "list-bounces+alice.xyzw1234@ex-ample-dom.example.org",
                      .msg = "Subject: s\r\n\r\nb\r\n"};
    char *sender = NULL, *rcpts[4] = {0}, *msg = NULL;
    assert_int_equal(run(&t, &sender, rcpts, &msg), 0);
    assert_string_equal(sender, "list-bounces+alice.xyzw1234@ex-ample-dom.example.org");
    free(sender);
    free(msg);
}

static void test_match_limit(void **state)
{
    (void)state;
    const char *rules = "header remove X-Evil /^(a+)+$/\n";
    struct rw_errors errs = RW_ERRORS_INIT;
    struct rw_ruleset *rs = rw_rules_parse(rules, strlen(rules), "x.rules", &errs);
    assert_non_null(rs);
    struct rw_scratch *sc = rw_scratch_new(10000);
    struct rw_tx *tx = rw_tx_new(rs);
    rw_ruleset_unref(rs);
    char msg[200];
    snprintf(msg, sizeof(msg), "X-Evil: %s\r\n\r\n", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab");
    struct rw_hdrs h = RW_HDRS_INIT(plughdr_fold);
    rw_hdrs_parse(&h, msg, strlen(msg), NULL);
    struct rw_env env = {.sender = "", .client_ip = ""};
    assert_int_equal(rw_eval_headers(tx, &env, sc, &h, NULL), 0);
    assert_false(h.f[0].deleted);
    assert_true(rw_scratch_limited(sc) >= 1);
    rw_hdrs_free(&h);
    rw_tx_free(tx);
    rw_scratch_free(sc);
}

static int setup(void **state)
{
    (void)state;
    const char *why = NULL;
    srs_keys = rw_srs_new('=', 21);
    if (!srs_keys || rw_srs_add_secret(srs_keys, SECRET, strlen(SECRET), &why) != 0)
        return -1;
    if (system("mkdir -p /tmp/rwt") != 0)
        return -1;
    FILE *fp = fopen("/tmp/rwt/e.map", "w");
    if (!fp)
        return -1;
    fputs("# exact entries win over domain entries\n"
          "bob@old.example      robert@new.example\n"
          "@old.example         @new.example\n"
          "@catch.example       inbox@catch.example\n",
          fp);
    fclose(fp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_encoded_output_decodes_back),
        cmocka_unit_test(test_edit_list_order),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_srs_through_rules),
        cmocka_unit_test(test_srs_unencodable),
        cmocka_unit_test(test_match_limit),
    };
    int rc = cmocka_run_group_tests_name("rewrite_engine", tests, setup, NULL);
    rw_srs_free(srs_keys);
    return rc;
}
