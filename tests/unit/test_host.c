/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the plugin host (proxy/host.c, chain.c, ctx.c, api.c) driven through its public
 * interface with real plugins and a real libuv loop:
 *  - loader: a missing file, a wrong ABI version, no descriptor symbol, and
 *    malformed descriptors (compiled at test time from a small source, one
 *    variant per check) are refused with "FILE:LINE: [plugin NAME] ..."
 *    naming the .so; a good chain loads;
 *  - verdict merging: first non-CONTINUE wins, ACCEPT skips the rest of
 *    the phase, default and custom replies, mismatched reply classes;
 *  - edits through host_run with testplug instances, applied in chain order
 *    and visible to later instances; envelope edits; capability refusal;
 *  - failure policies (timeout on the pool and async, invalid verdict),
 *    the circuit breaker and its cool-down, async answers.
 *
 * The test plugins live in BUILD/tests/plugins (found from /proc/self/exe:
 * this binary is BUILD/tests/unit/test_host).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "buf.h"
#include "cfg.h"
#include "defer.h"
#include "host.h"
#include "log.h"
#include "msg.h"
#include "msgbuf.h"
#include "tx.h"
#include "stats.h"
#include "stats_prom.h"

static char g_plugdir[PATH_MAX];  /* BUILD/tests/plugins */
static char g_tmpdir[PATH_MAX];   /* per-run scratch dir: configs, compiled variants */
static int g_cfgno;

/* ---- helpers ------------------------------------------------------------- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Write a config: [server] basics + the given chain sections. */
static struct cfg *load_cfg(const char *sections, buf_t *errs)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/c%d.conf", g_tmpdir, ++g_cfgno);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "[server]\nlisten = 127.0.0.1:1\nspool_dir = %s\n\n[upstream]\n"
               "servers = 127.0.0.1:2\n\n[stats]\nlisten = no\n\n%s",
            g_tmpdir, sections);
    fclose(f);
    return cfg_load(path, NULL, errs);
}

/* Load a chain from config text; fails the test on errors. */
static struct chain *chain_from(const char *sections)
{
    buf_t errs = BUF_INIT;
    struct cfg *cfg = load_cfg(sections, &errs);
    if (!cfg)
        fail_msg("config refused: %s", errs.ptr ? errs.ptr : "?");
    struct chain *ch = chain_load(cfg, false, &errs);
    if (!ch)
        fail_msg("chain refused: %s", errs.ptr ? errs.ptr : "?");
    cfg_unref(cfg);
    buf_free(&errs);
    return ch;
}

/* Load a chain that must fail; returns its error text (caller frees). */
static char *chain_errors(const char *sections, bool checking)
{
    buf_t errs = BUF_INIT;
    struct cfg *cfg = load_cfg(sections, &errs);
    if (!cfg)
        fail_msg("config refused: %s", errs.ptr ? errs.ptr : "?");
    struct chain *ch = chain_load(cfg, checking, &errs);
    cfg_unref(cfg);
    if (ch) {
        chain_unref(ch);
        buf_free(&errs);
        return NULL;
    }
    char *s = strdup(errs.ptr ? errs.ptr : "");
    buf_free(&errs);
    return s;
}

/* A session's worth of host state on a private loop. */
struct fx {
    uv_loop_t loop;
    struct host_conn *hc;
    struct tx *tx;             /* the transaction, owned as the session owns it */
    struct client_info info;
    struct host_result res;
    bool done;
};

static void fx_open(struct fx *fx, struct chain *ch)
{
    memset(fx, 0, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    defer_init(&fx->loop);
    chain_set_current(ch);
    chain_unref(ch);
    struct client_info *info = &fx->info;
    snprintf(info->sid, sizeof info->sid, "T%d", g_cfgno);
    snprintf(info->client_addr, sizeof info->client_addr, "192.0.2.7");
    info->client_port = 40000;
    snprintf(info->helo, sizeof info->helo, "client.test");
    fx->hc = host_conn_new(&fx->loop, info);
    assert_non_null(fx->hc);
}

/* End the transaction as the session does. */
static void fx_end(struct fx *fx)
{
    if (!fx->tx)
        return;
    host_tx_end(fx->hc, fx->tx);
    tx_unref(fx->tx);
    fx->tx = NULL;
}

static void fx_close(struct fx *fx)
{
    fx_end(fx);
    host_conn_free(fx->hc);
    chain_shutdown();
    defer_shutdown();
    /* Run until the host's handles (and any late async timers) are closed. */
    uint64_t end = mono_ms() + 5000;
    while (uv_run(&fx->loop, UV_RUN_NOWAIT) != 0 && mono_ms() < end)
        usleep(1000);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static void fx_done(void *ud, struct host_result *r)
{
    struct fx *fx = ud;
    if (r->tx && r->tx != fx->tx) {
        tx_unref(fx->tx); /* a hook timed out: go on with the clone */
        fx->tx = r->tx;
    } else {
        tx_unref(r->tx);
    }
    r->tx = NULL;
    fx->res = *r;
    fx->done = true;
}

/* Run one phase to completion (bounded). */
static const struct host_result *fx_run(struct fx *fx, enum sluice_phase ph)
{
    fx->done = false;
    memset(&fx->res, 0, sizeof fx->res);
    host_run(fx->hc, ph >= SLUICE_PHASE_MAIL ? fx->tx : NULL, ph, fx_done, fx);
    assert_false(fx->done); /* never answered inside host_run */
    uint64_t end = mono_ms() + 10000;
    while (!fx->done && mono_ms() < end)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_true(fx->done);
    return &fx->res;
}

/* Let the loop run for ms (late async answers, pool work). */
static void fx_spin(struct fx *fx, unsigned ms)
{
    uint64_t end = mono_ms() + ms;
    while (mono_ms() < end) {
        uv_run(&fx->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static const char MSG[] = "From: a@example.com\r\n"
                          "To: b@example.net\r\n"
                          "Subject: hello\r\n"
                          "\r\n"
                          "body line\r\n";

/* MAIL + one RCPT + message, as the session would report them. */
static void fx_begin(struct fx *fx)
{
    host_tx_begin(fx->hc);
    fx->tx = tx_new(&fx->info, 1);
    tx_set_sender(fx->tx, "a@example.com", "");
}

static void fx_tx(struct fx *fx, const char *msg)
{
    fx_begin(fx);
    tx_set_current(fx->tx, "b@example.net", "");
    tx_rcpt_answered(fx->tx, tx_rcpt_sent(fx->tx), true);
    struct msgbuf *mb = msgbuf_new(1 << 20, g_tmpdir);
    assert_non_null(mb);
    assert_int_equal(msgbuf_append(mb, msg, strlen(msg)), 0);
    assert_int_equal(msgbuf_finish(mb), 0);
    tx_set_message(fx->tx, mb, true);
}

/* The envelope as the end of data sees it (all recipients, with marks). */
struct rcpt_view {
    const char *addr;
    bool added, removed;
};

static size_t fx_view(struct fx *fx, struct rcpt_view *v, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < fx->tx->nrcpts && n < max; i++, n++) {
        v[n].addr = fx->tx->rcpts[i].addr;
        v[n].added = fx->tx->rcpts[i].st == TX_R_ADDED;
        v[n].removed = fx->tx->rcpts[i].removed;
    }
    return fx->tx->nrcpts;
}

static const char *fx_sender(struct fx *fx, bool *changed)
{
    *changed = fx->tx->sender_changed;
    return fx->tx->sender;
}

static char *fx_render(struct fx *fx)
{
    const char *d;
    size_t n;
    tx_render(fx->tx, &d, &n);
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, d, n);
    s[n] = 0;
    return s;
}

/* The data_calls counter of a testplug instance with counter = yes. */
static uint64_t calls_of(const char *inst)
{
    char name[128];
    snprintf(name, sizeof name, "plugin_%s_data_calls", inst);
    return stats_counter_get(stats_plugin_counter(name, "x", NULL, 0), NULL);
}

/* "[plugin NAME]\npath = testplug.so\n" + extra lines. */
static void plug_section(buf_t *b, const char *name, const char *so, const char *extra)
{
    buf_printf(b, "[plugin %s]\npath = %s/%s\n%s\n", name, g_plugdir, so, extra);
}

/* ---- loader ----------------------------------------------------------------- */

static void test_load_good_chain(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    buf_puts(&b, "[chain]\nplugins = one two\n\n");
    plug_section(&b, "one", "testplug.so", "");
    plug_section(&b, "two", "testplug.so", "data = reject");
    struct chain *ch = chain_from(b.ptr);
    assert_int_equal(chain_size(ch), 2);
    chain_unref(ch);
    buf_free(&b);
}

/* Refusals of the prebuilt broken plugins and of a missing file. */
static void test_load_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *so;
        const char *want; /* substring of the error line */
    } cases[] = {
        {"badabi.so", "refused: plugin ABI version 99, this sluice supports 1"},
        {"nosymbol.so", "is not a sluice plugin (no 'sluice_plugin' symbol)"},
        {"does-not-exist.so", "cannot load"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b = BUF_INIT;
        buf_puts(&b, "[chain]\nplugins = bad\n\n");
        plug_section(&b, "bad", cases[i].so, "");
        char *err = chain_errors(b.ptr, false);
        if (!err)
            fail_msg("%s: loaded, want refusal", cases[i].so);
        /* "FILE:LINE: [plugin bad] PATH ...": the config line of the chain
         * entry (line 12 of the generated file), and the .so named. */
        char want_prefix[PATH_MAX + 64];
        snprintf(want_prefix, sizeof want_prefix, "%s/c%d.conf:12: [plugin bad] ", g_tmpdir,
                 g_cfgno);
        if (strncmp(err, want_prefix, strlen(want_prefix)) != 0)
            fail_msg("%s: got %s, want prefix %s", cases[i].so, err, want_prefix);
        if (!strstr(err, cases[i].so) || !strstr(err, cases[i].want))
            fail_msg("%s: got %s, want the file and '%s'", cases[i].so, err, cases[i].want);
        /* One line for the one problem. */
        size_t lines = 0;
        for (const char *p = err; *p; p++)
            lines += *p == '\n';
        assert_int_equal(lines, 1);
        free(err);
        buf_free(&b);
    }
}

/* Malformed descriptors, compiled from one source with -D switches. */
static const char VARIANT_SRC[] =
    "#include <errno.h>\n"
    "#include <stddef.h>\n"
    "#include <sluice/plugin.h>\n"
    "static const struct sluice_host_api *A;\n"
    "static int vi(const struct sluice_host_api *api, sluice_instance *i, void **d)\n"
    "{ (void)i; A = api; *d = NULL;\n"
    "#ifdef INIT_FAIL\n"
    "  api->config_error(i, \"answer\", \"must be %d\", 42); return -1;\n"
    "#endif\n"
    "#ifdef INIT_FAIL_SILENT\n"
    "  return -1;\n"
    "#endif\n"
    "  return 0; }\n"
    "static int vd(sluice_ctx *c) {\n"
    "  int rc = A->header_add(c, \"X-Nocap\", \"1\");\n"
    "  int rs = A->sender_change(c, \"x@example.org\", NULL);\n"
    "  int rb = A->body_replace(c, \"x\\r\\n\", 3);\n"
    "  return (rc == -EPERM && rs == -EPERM && rb == -EPERM) ? SLUICE_CONTINUE : SLUICE_REJECT; }\n"
    "static void vr(sluice_ctx *c) { (void)c; }\n"
    "__attribute__((visibility(\"default\"))) const struct sluice_plugin sluice_plugin = {\n"
    "  .abi_version = SLUICE_PLUGIN_ABI_VERSION,\n"
    "#ifdef SMALL\n"
    "  .size = offsetof(struct sluice_plugin, on_data),\n"
    "#else\n"
    "  .size = sizeof(struct sluice_plugin),\n"
    "#endif\n"
    "#ifndef NO_NAME\n"
    "  .name = \"variant\",\n"
    "#endif\n"
    "#ifndef NO_INIT\n"
    "  .init = vi,\n"
    "#endif\n"
    "#ifdef BAD_CAPS\n"
    "  .capabilities = 1u << 20,\n"
    "#endif\n"
    "#ifdef BAD_PHASE\n"
    "  .blocking_phases = 1u << 12,\n"
    "#endif\n"
    "#ifdef BLOCKING_RESET\n"
    "  .blocking_phases = SLUICE_PHASE_BIT(SLUICE_PHASE_RESET),\n"
    "#endif\n"
    "  .on_data = vd, .on_reset = vr,\n"
    "};\n";

/* Compile VARIANT_SRC with -D<def> into g_tmpdir/<def>.so; false if no cc. */
static bool build_variant(const char *def, char *out, size_t outlen)
{
    char src[PATH_MAX + 16], inc[PATH_MAX], cmd[3 * PATH_MAX + 200];
    snprintf(src, sizeof src, "%s/variant.c", g_tmpdir);
    if (access(src, R_OK) != 0) {
        FILE *f = fopen(src, "w");
        assert_non_null(f);
        fputs(VARIANT_SRC, f);
        fclose(f);
    }
    /* The SDK header from the source tree (this file is tests/unit/). */
    snprintf(inc, sizeof inc, "%s", __FILE__);
    char *slash = strrchr(inc, '/');
    assert_non_null(slash);
    snprintf(slash, sizeof inc - (size_t)(slash - inc), "/../../sdk/include");
    snprintf(out, outlen, "%s/%s.so", g_tmpdir, def);
    snprintf(cmd, sizeof cmd,
             "cc -shared -fPIC -fvisibility=hidden -std=c11 -D%s -I'%s' -o '%s' '%s' 2>&1", def,
             inc, out, src);
    return system(cmd) == 0;
}

static void test_load_malformed_descriptors(void **state)
{
    (void)state;
    if (system("command -v cc >/dev/null 2>&1") != 0)
        skip();
    static const struct {
        const char *def;
        const char *want;
    } cases[] = {
        {"SMALL", "refused: descriptor too small"},
        {"NO_NAME", "refused: descriptor has no name"},
        {"NO_INIT", "refused: descriptor has no init function"},
        {"BAD_CAPS", "refused: descriptor asks for unknown capabilities"},
        {"BAD_PHASE", "refused: descriptor marks unknown phases as blocking"},
        {"BLOCKING_RESET", "refused: reset/close notifications cannot be blocking"},
        {"INIT_FAIL", "[plugin v] answer: must be 42"},
        {"INIT_FAIL_SILENT", "[plugin v] plugin variant failed to initialise"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char so[PATH_MAX + 40];
        if (!build_variant(cases[i].def, so, sizeof so))
            fail_msg("cannot compile variant %s", cases[i].def);
        char sec[2 * PATH_MAX];
        snprintf(sec, sizeof sec, "[chain]\nplugins = v\n\n[plugin v]\npath = %s\nanswer = 1\n",
                 so);
        char *err = chain_errors(sec, true);
        if (!err)
            fail_msg("%s: loaded, want '%s'", cases[i].def, cases[i].want);
        if (!strstr(err, cases[i].want))
            fail_msg("%s: got %s, want '%s'", cases[i].def, err, cases[i].want);
        /* Checks of the descriptor name the file. */
        if (strncmp(cases[i].def, "INIT", 4) != 0 && !strstr(err, so))
            fail_msg("%s: error does not name %s: %s", cases[i].def, so, err);
        /* INIT_FAIL: the line is that of the key (line 16). */
        if (strcmp(cases[i].def, "INIT_FAIL") == 0 && !strstr(err, ".conf:16: "))
            fail_msg("INIT_FAIL: want the key's line 16: %s", err);
        free(err);
    }
}

/* A plugin without capabilities gets -EPERM for edits; nothing changes. */
static void test_capabilities_enforced(void **state)
{
    (void)state;
    if (system("command -v cc >/dev/null 2>&1") != 0)
        skip();
    char so[PATH_MAX + 40];
    if (!build_variant("NOCAPS", so, sizeof so))
        fail_msg("cannot compile variant");
    char sec[2 * PATH_MAX];
    snprintf(sec, sizeof sec, "[chain]\nplugins = v\n\n[plugin v]\npath = %s\n", so);
    struct fx fx;
    fx_open(&fx, chain_from(sec));
    fx_tx(&fx, MSG);
    const struct host_result *r = fx_run(&fx, SLUICE_PHASE_DATA);
    assert_int_equal(r->verdict, SLUICE_CONTINUE); /* all three edits got -EPERM */
    char *m = fx_render(&fx);
    assert_string_equal(m, MSG);
    free(m);
    bool changed = true;
    assert_string_equal(fx_sender(&fx, &changed), "a@example.com");
    assert_false(changed);
    fx_end(&fx);
    fx_close(&fx);
}

/* ---- verdict merging ------------------------------------------------------------ */

static void test_verdict_merging(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b;        /* extra keys of instances a and b */
        enum sluice_phase ph;
        int want_verdict;
        const char *want_plugin;  /* NULL: nobody decided */
        int want_code;
        const char *want_enh, *want_text;
        uint64_t want_b_calls;    /* data phase only: was b called */
    } cases[] = {
        {"", "", SLUICE_PHASE_DATA, SLUICE_CONTINUE, NULL, 0, "", "", 1},
        {"", "data = reject", SLUICE_PHASE_DATA, SLUICE_REJECT, "b", 554, "5.7.1",
         "Rejected by policy", 1},
        {"data = reject\nreply = 550 5.7.9 go away", "data = tempfail", SLUICE_PHASE_DATA,
         SLUICE_REJECT, "a", 550, "5.7.9", "go away", 0},
        {"data = accept", "data = reject", SLUICE_PHASE_DATA, SLUICE_ACCEPT, "a", 0, "", "", 0},
        {"data = tempfail", "data = reject", SLUICE_PHASE_DATA, SLUICE_TEMPFAIL, "a", 451,
         "4.7.1", "Temporarily rejected by policy, try again later", 0},
        {"data = tempfail\nreply = 452 4.3.1 full", "", SLUICE_PHASE_DATA, SLUICE_TEMPFAIL, "a",
         452, "4.3.1", "full", 0},
        /* reply class does not match the verdict: the default is used */
        {"data = reject\nreply = 450 4.1.1 nope", "", SLUICE_PHASE_DATA, SLUICE_REJECT, "a", 554,
         "5.7.1", "Rejected by policy", 0},
        {"data = disconnect", "", SLUICE_PHASE_DATA, SLUICE_DISCONNECT, "a", 421, "4.7.0",
         "Closing connection", 0},
        {"", "data = discard", SLUICE_PHASE_DATA, SLUICE_DISCARD, "b", 0, "", "", 1},
        {"data = quarantine", "data = reject", SLUICE_PHASE_DATA, SLUICE_QUARANTINE, "a", 0, "",
         "", 0},
        /* rcpt phase: default reject code is 550 */
        {"", "rcpt = reject", SLUICE_PHASE_RCPT, SLUICE_REJECT, "b", 550, "5.7.1",
         "Rejected by policy", 0},
        {"mail = reject\nreply = 553 5.1.8 bad sender", "", SLUICE_PHASE_MAIL, SLUICE_REJECT,
         "a", 553, "5.1.8", "bad sender", 0},
        {"helo = tempfail", "", SLUICE_PHASE_HELO, SLUICE_TEMPFAIL, "a", 451, "4.7.1",
         "Temporarily rejected by policy, try again later", 0},
        {"connect = accept", "connect = disconnect", SLUICE_PHASE_CONNECT, SLUICE_ACCEPT, "a", 0,
         "", "", 0},
        {"", "connect = disconnect\nreply = 421 4.3.2 bye", SLUICE_PHASE_CONNECT,
         SLUICE_DISCONNECT, "b", 421, "4.3.2", "bye", 0},
        /* DISCARD / QUARANTINE before DATA decide the transaction; the
         * phase itself answers like ACCEPT */
        {"mail = discard", "mail = reject", SLUICE_PHASE_MAIL, SLUICE_ACCEPT, "a", 0, "", "", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        stats_reset(0);
        buf_t b = BUF_INIT;
        buf_puts(&b, "[chain]\nplugins = a b\n\n");
        plug_section(&b, "a", "testplug.so", cases[i].a);
        buf_t bx = BUF_INIT;
        buf_printf(&bx, "counter = yes\n%s", cases[i].b);
        plug_section(&b, "b", "testplug.so", bx.ptr);
        struct fx fx;
        fx_open(&fx, chain_from(b.ptr));
        if (cases[i].ph >= SLUICE_PHASE_MAIL)
            fx_tx(&fx, MSG);
        const struct host_result *r = fx_run(&fx, cases[i].ph);
        if ((int)r->verdict != cases[i].want_verdict)
            fail_msg("case %zu: got verdict %d, want %d", i, r->verdict,
                     cases[i].want_verdict);
        if (cases[i].want_plugin) {
            assert_non_null(r->plugin);
            assert_string_equal(r->plugin, cases[i].want_plugin);
        }
        if (cases[i].want_code) {
            if (r->code != cases[i].want_code || strcmp(r->enh, cases[i].want_enh) != 0 ||
                strcmp(r->text, cases[i].want_text) != 0)
                fail_msg("case %zu: got %d %s %s, want %d %s %s", i, r->code, r->enh, r->text,
                         cases[i].want_code, cases[i].want_enh, cases[i].want_text);
        }
        if (cases[i].ph == SLUICE_PHASE_DATA && calls_of("b") != cases[i].want_b_calls)
            fail_msg("case %zu: b called %llu times, want %llu", i,
                     (unsigned long long)calls_of("b"),
                     (unsigned long long)cases[i].want_b_calls);
        if (cases[i].want_verdict == SLUICE_DISCARD)
            assert_true(fx.tx->discard);
        if (cases[i].want_verdict == SLUICE_QUARANTINE) {
            assert_true(fx.tx->quarantine);
            assert_true(fx.tx->quarantine_accepts);
        }
        if (cases[i].ph == SLUICE_PHASE_MAIL && cases[i].want_verdict == SLUICE_ACCEPT)
            assert_true(fx.tx->discard);
        if (cases[i].ph >= SLUICE_PHASE_MAIL)
            fx_end(&fx);
        fx_close(&fx);
        buf_free(&bx);
        buf_free(&b);
    }
}

/* quarantine_reply = reject is carried to the session. */
static void test_quarantine_reply_reject(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    buf_puts(&b, "[chain]\nplugins = q\n\n");
    plug_section(&b, "q", "testplug.so", "data = quarantine\nquarantine_reply = reject");
    struct fx fx;
    fx_open(&fx, chain_from(b.ptr));
    fx_tx(&fx, MSG);
    assert_int_equal(fx_run(&fx, SLUICE_PHASE_DATA)->verdict, SLUICE_QUARANTINE);
    assert_true(fx.tx->quarantine);
    assert_false(fx.tx->quarantine_accepts);
    fx_end(&fx);
    fx_close(&fx);
    buf_free(&b);
}

/* ---- edits ---------------------------------------------------------------------- */

static void test_edits_applied(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b; /* keys of instance a, then b (sees a's edits) */
        const char *want;
    } cases[] = {
        {"add_header = X-Added: yes", "",
         "From: a@example.com\r\nTo: b@example.net\r\nSubject: hello\r\nX-Added: yes\r\n\r\n"
         "body line\r\n"},
        {"insert_header = X-Top: 1", "",
         "X-Top: 1\r\nFrom: a@example.com\r\nTo: b@example.net\r\nSubject: hello\r\n\r\n"
         "body line\r\n"},
        {"change_header = Subject: changed", "",
         "From: a@example.com\r\nTo: b@example.net\r\nSubject: changed\r\n\r\nbody line\r\n"},
        {"delete_header = To", "",
         "From: a@example.com\r\nSubject: hello\r\n\r\nbody line\r\n"},
        {"replace_body = new\\nbody", "",
         "From: a@example.com\r\nTo: b@example.net\r\nSubject: hello\r\n\r\nnew\r\nbody\r\n"},
        /* b sees a's edits: changes the header a added, deletes one a inserted */
        {"add_header = X-A: 1", "change_header = X-A: 2",
         "From: a@example.com\r\nTo: b@example.net\r\nSubject: hello\r\nX-A: 2\r\n\r\n"
         "body line\r\n"},
        {"insert_header = X-B: 1", "delete_header = X-B",
         "From: a@example.com\r\nTo: b@example.net\r\nSubject: hello\r\n\r\nbody line\r\n"},
        /* a changes a header that does not exist: nothing happens */
        {"change_header = X-None: 1", "",
         "From: a@example.com\r\nTo: b@example.net\r\nSubject: hello\r\n\r\nbody line\r\n"},
        /* a rejects: b does not run, a's own edits are still applied */
        {"add_header = X-A: 1\ndata = reject", "add_header = X-B: 1",
         "From: a@example.com\r\nTo: b@example.net\r\nSubject: hello\r\nX-A: 1\r\n\r\n"
         "body line\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b = BUF_INIT;
        buf_puts(&b, "[chain]\nplugins = a b\n\n");
        plug_section(&b, "a", "testplug.so", cases[i].a);
        plug_section(&b, "b", "testplug.so", cases[i].b);
        struct fx fx;
        fx_open(&fx, chain_from(b.ptr));
        fx_tx(&fx, MSG);
        fx_run(&fx, SLUICE_PHASE_DATA);
        char *m = fx_render(&fx);
        if (strcmp(m, cases[i].want) != 0)
            fail_msg("case %zu: got\n%s\nwant\n%s", i, m, cases[i].want);
        /* The segments forwarded are the same bytes. */
        struct iovec iov[64];
        int n = msg_segments(fx.tx->msg, iov, 64);
        assert_true(n > 0);
        buf_t seg = BUF_INIT;
        for (int k = 0; k < n; k++)
            buf_append(&seg, iov[k].iov_base, iov[k].iov_len);
        assert_int_equal(seg.len, strlen(m));
        assert_memory_equal(seg.ptr, m, seg.len);
        buf_free(&seg);
        free(m);
        fx_end(&fx);
        fx_close(&fx);
        buf_free(&b);
    }
}

static void test_envelope_edits(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    buf_puts(&b, "[chain]\nplugins = a b\n\n");
    plug_section(&b, "a", "testplug.so",
                 "change_sender = new@example.org\nadd_rcpt = extra@example.net\n"
                 "symbol = A_SYM 1.5");
    plug_section(&b, "b", "testplug.so", "remove_rcpt = b@example.net\nsymbol = B_SYM 2");
    struct fx fx;
    fx_open(&fx, chain_from(b.ptr));
    fx_tx(&fx, MSG);
    assert_int_equal(fx_run(&fx, SLUICE_PHASE_DATA)->verdict, SLUICE_CONTINUE);
    bool changed = false;
    assert_string_equal(fx_sender(&fx, &changed), "new@example.org");
    assert_true(changed);
    struct rcpt_view v[8];
    size_t n = fx_view(&fx, v, 8);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].addr, "b@example.net");
    assert_true(v[0].removed);
    assert_false(v[0].added);
    assert_string_equal(v[1].addr, "extra@example.net");
    assert_true(v[1].added);
    assert_false(v[1].removed);
    buf_t sum = BUF_INIT;
    host_summary(fx.hc, fx.tx, &sum);
    assert_non_null(strstr(sum.ptr, "score=3.50 symbols=A_SYM,B_SYM"));
    assert_non_null(strstr(sum.ptr, "plugins=a:"));
    buf_free(&sum);
    tx_envelope_committed(fx.tx);
    n = fx_view(&fx, v, 8);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].addr, "extra@example.net");
    assert_false(v[0].added);
    fx_sender(&fx, &changed);
    assert_false(changed);
    fx_end(&fx);
    fx_close(&fx);
    buf_free(&b);
}

/* MAIL-phase sender change, RCPT-phase rewrite (remove + add). */
static void test_envelope_edits_early_phases(void **state)
{
    (void)state;
    buf_t b = BUF_INIT;
    buf_puts(&b, "[chain]\nplugins = a\n\n");
    plug_section(&b, "a", "testplug.so",
                 "change_sender = m@example.org\nsender_phase = mail\n"
                 "rewrite_rcpt = old@example.net new@example.net");
    struct fx fx;
    fx_open(&fx, chain_from(b.ptr));
    fx_begin(&fx);
    assert_int_equal(fx_run(&fx, SLUICE_PHASE_MAIL)->verdict, SLUICE_CONTINUE);
    bool changed = false;
    assert_string_equal(fx_sender(&fx, &changed), "m@example.org");
    assert_true(changed);
    static const struct {
        const char *rcpt, *want;
    } rc[] = {
        {"other@example.net", "other@example.net"},
        {"old@example.net", "new@example.net"},
        {"OLD@example.net", "new@example.net"},
    };
    for (size_t i = 0; i < sizeof rc / sizeof rc[0]; i++) {
        tx_set_current(fx.tx, rc[i].rcpt, "");
        assert_int_equal(fx_run(&fx, SLUICE_PHASE_RCPT)->verdict, SLUICE_CONTINUE);
        bool removed = fx.tx->cur.removed;
        const char *now = fx.tx->cur.addr;
        assert_false(removed);
        if (strcmp(now, rc[i].want) != 0)
            fail_msg("rcpt %s: got %s, want %s", rc[i].rcpt, now, rc[i].want);
    }
    fx_end(&fx);
    fx_close(&fx);
    buf_free(&b);
}

/* ---- failures, breaker, async ------------------------------------------------------ */

static void test_failure_policies(void **state)
{
    (void)state;
    static const struct {
        const char *so;
        const char *keys;
        int want_verdict;
        int want_code;
        const char *want_hdr; /* NULL: message unchanged */
    } cases[] = {
        /* a blocking hook sleeping past its timeout */
        {"testplug_blocking.so", "sleep_ms = 400\ntimeout = 50ms", SLUICE_TEMPFAIL, 451, NULL},
        {"testplug_blocking.so", "sleep_ms = 400\ntimeout = 50ms\nfailure = accept",
         SLUICE_CONTINUE, 0, NULL},
        {"testplug_blocking.so", "sleep_ms = 400\ntimeout = 50ms\nfailure = tag",
         SLUICE_CONTINUE, 0, "X-Sluice-Skipped: p (timeout after 50 ms)\r\n"},
        /* an async answer that comes too late */
        {"testplug.so", "async_ms = 400\ntimeout = 50ms\nadd_header = X-Late: 1",
         SLUICE_TEMPFAIL, 451, NULL},
        {"testplug.so", "async_ms = 400\ntimeout = 50ms\nfailure = tag\nadd_header = X-Late: 1",
         SLUICE_CONTINUE, 0, "X-Sluice-Skipped: p (timeout after 50 ms)\r\n"},
        /* an invalid verdict */
        {"testplug.so", "data = invalid", SLUICE_TEMPFAIL, 451, NULL},
        {"testplug.so", "data = invalid\nfailure = accept", SLUICE_CONTINUE, 0, NULL},
        {"testplug.so", "data = invalid\nfailure = tag", SLUICE_CONTINUE, 0,
         "X-Sluice-Skipped: p (invalid verdict)\r\n"},
        /* a blocking hook in time, with an edit */
        {"testplug_blocking.so", "sleep_ms = 20\ntimeout = 5s\nadd_header = X-Pool: 1",
         SLUICE_CONTINUE, 0, "X-Pool: 1\r\n"},
        /* an async answer in time, with an edit and a verdict */
        {"testplug.so", "async_ms = 20\nadd_header = X-Async: 1\ndata = reject",
         SLUICE_REJECT, 554, "X-Async: 1\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b = BUF_INIT;
        buf_puts(&b, "[chain]\nplugins = p\n\n");
        plug_section(&b, "p", cases[i].so, cases[i].keys);
        struct fx fx;
        fx_open(&fx, chain_from(b.ptr));
        fx_tx(&fx, MSG);
        uint64_t t0 = mono_ms();
        const struct host_result *r = fx_run(&fx, SLUICE_PHASE_DATA);
        uint64_t took = mono_ms() - t0;
        if ((int)r->verdict != cases[i].want_verdict || r->code != cases[i].want_code)
            fail_msg("case %zu: got %d/%d, want %d/%d", i, r->verdict, r->code,
                     cases[i].want_verdict, cases[i].want_code);
        if (cases[i].want_code == 451 && strstr(cases[i].keys, "timeout = 50ms")) {
            assert_string_equal(r->enh, "4.3.0");
            assert_string_equal(r->text, "Filter p unavailable, try again later");
            /* The policy applied at the timeout, not when the hook ended. */
            if (took > 350)
                fail_msg("case %zu: answered after %llu ms", i, (unsigned long long)took);
        }
        char *m = fx_render(&fx);
        if (cases[i].want_hdr) {
            buf_t want = BUF_INIT;
            buf_puts(&want, "From: a@example.com\r\nTo: b@example.net\r\nSubject: hello\r\n");
            buf_puts(&want, cases[i].want_hdr);
            buf_puts(&want, "\r\nbody line\r\n");
            if (strcmp(m, want.ptr) != 0)
                fail_msg("case %zu: got\n%s\nwant\n%s", i, m, want.ptr);
            buf_free(&want);
        } else if (strcmp(m, MSG) != 0) {
            fail_msg("case %zu: message changed:\n%s", i, m);
        }
        free(m);
        /* Late answers arrive now and must change nothing. */
        fx_spin(&fx, strstr(cases[i].keys, "400") ? 450 : 10);
        m = fx_render(&fx);
        assert_null(strstr(m, "X-Late"));
        free(m);
        fx_end(&fx);
        fx_close(&fx);
        buf_free(&b);
    }
}

static void test_circuit_breaker(void **state)
{
    (void)state;
    stats_reset(0);
    buf_t b = BUF_INIT;
    buf_puts(&b, "[chain]\nplugins = flaky ok\n\n");
    plug_section(&b, "flaky", "testplug.so",
                 "data = invalid\ncounter = yes\nfailure = accept\nbreaker_failures = 2\n"
                 "breaker_window = 10s\nbreaker_cooldown = 300ms");
    plug_section(&b, "ok", "testplug.so", "counter = yes");
    struct fx fx;
    fx_open(&fx, chain_from(b.ptr));
    /* Two failures call the plugin; then it is skipped (policy accept). */
    static const uint64_t want_calls[] = {1, 2, 2, 2, 2};
    for (size_t i = 0; i < sizeof want_calls / sizeof want_calls[0]; i++) {
        fx_tx(&fx, MSG);
        assert_int_equal(fx_run(&fx, SLUICE_PHASE_DATA)->verdict, SLUICE_CONTINUE);
        fx_end(&fx);
        if (calls_of("flaky") != want_calls[i])
            fail_msg("message %zu: flaky called %llu times, want %llu", i,
                     (unsigned long long)calls_of("flaky"), (unsigned long long)want_calls[i]);
        /* The next plugin still runs every time. */
        assert_int_equal(calls_of("ok"), i + 1);
    }
    /* After the cool-down one trial call; it fails again: open again. */
    usleep(350 * 1000);
    fx_tx(&fx, MSG);
    fx_run(&fx, SLUICE_PHASE_DATA);
    fx_end(&fx);
    assert_int_equal(calls_of("flaky"), 3);
    fx_tx(&fx, MSG);
    fx_run(&fx, SLUICE_PHASE_DATA);
    fx_end(&fx);
    assert_int_equal(calls_of("flaky"), 3);
    /* The breaker is visible on /metrics. */
    buf_t out = BUF_INIT;
    stats_prom_render(&out, 1);
    assert_non_null(strstr(out.ptr, "sluice_plugin_circuit_state{plugin=\"flaky\"} 1"));
    assert_non_null(strstr(out.ptr, "sluice_plugin_circuit_trips_total{plugin=\"flaky\"} 2"));
    buf_free(&out);
    fx_close(&fx);
    buf_free(&b);
}

/* An open breaker with policy tempfail answers 451 without calling. */
static void test_breaker_tempfail(void **state)
{
    (void)state;
    stats_reset(0);
    buf_t b = BUF_INIT;
    buf_puts(&b, "[chain]\nplugins = flaky\n\n");
    plug_section(&b, "flaky", "testplug.so",
                 "data = invalid\ncounter = yes\nbreaker_failures = 1\nbreaker_cooldown = 1h");
    struct fx fx;
    fx_open(&fx, chain_from(b.ptr));
    for (int i = 0; i < 3; i++) {
        fx_tx(&fx, MSG);
        const struct host_result *r = fx_run(&fx, SLUICE_PHASE_DATA);
        assert_int_equal(r->verdict, SLUICE_TEMPFAIL);
        assert_int_equal(r->code, 451);
        fx_end(&fx);
    }
    assert_int_equal(calls_of("flaky"), 1);
    fx_close(&fx);
    buf_free(&b);
}

/* Connection and transaction data of two instances, and a chain switch. */
static void test_reload_pins_chain(void **state)
{
    (void)state;
    buf_t b1 = BUF_INIT, b2 = BUF_INIT;
    buf_puts(&b1, "[chain]\nplugins = p\n\n");
    plug_section(&b1, "p", "testplug.so", "add_header = X-Chain: old");
    buf_puts(&b2, "[chain]\nplugins = p\n\n");
    plug_section(&b2, "p", "testplug.so", "add_header = X-Chain: new");
    struct fx fx;
    fx_open(&fx, chain_from(b1.ptr));
    fx_tx(&fx, MSG);
    /* A reload while the transaction is open: it finishes on the old chain. */
    struct chain *n = chain_from(b2.ptr);
    chain_set_current(n);
    chain_unref(n);
    fx_run(&fx, SLUICE_PHASE_DATA);
    char *m = fx_render(&fx);
    assert_non_null(strstr(m, "X-Chain: old\r\n"));
    free(m);
    fx_end(&fx);
    /* The next transaction uses the new one. */
    fx_tx(&fx, MSG);
    fx_run(&fx, SLUICE_PHASE_DATA);
    m = fx_render(&fx);
    assert_non_null(strstr(m, "X-Chain: new\r\n"));
    free(m);
    fx_end(&fx);
    fx_close(&fx);
    buf_free(&b1);
    buf_free(&b2);
}

/* ---- setup --------------------------------------------------------------------- */

static int rm_rf_cb(const char *dir)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static int group_setup(void **state)
{
    (void)state;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = 0;
    snprintf(g_plugdir, sizeof g_plugdir, "%.*s/../plugins", (int)(sizeof g_plugdir - 20), exe);
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/testplug.so", g_plugdir);
    if (access(probe, R_OK) != 0) {
        fprintf(stderr, "test plugins not built: %s missing (make testplug "
                        "testplug_blocking badabi nosymbol)\n", probe);
        return -1;
    }
    const char *t = getenv("TMPDIR");
    snprintf(g_tmpdir, sizeof g_tmpdir, "%s/test_host.XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(g_tmpdir))
        return -1;
    log_init("test_host", 0, LOG_LVL_ERROR + 1);
    stats_init();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    chain_shutdown();
    return rm_rf_cb(g_tmpdir) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_good_chain),
        cmocka_unit_test(test_load_refusals),
        cmocka_unit_test(test_load_malformed_descriptors),
        cmocka_unit_test(test_capabilities_enforced),
        cmocka_unit_test(test_verdict_merging),
        cmocka_unit_test(test_quarantine_reply_reject),
        cmocka_unit_test(test_edits_applied),
        cmocka_unit_test(test_envelope_edits),
        cmocka_unit_test(test_envelope_edits_early_phases),
        cmocka_unit_test(test_failure_policies),
        cmocka_unit_test(test_circuit_breaker),
        cmocka_unit_test(test_breaker_tempfail),
        cmocka_unit_test(test_reload_pins_chain),
    };
    return cmocka_run_group_tests_name("host", tests, group_setup, group_teardown);
}
