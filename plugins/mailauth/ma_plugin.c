/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mailauth: SPF and DMARC as a sluice plugin, and one Authentication-Results
 * field for dkim, spf and dmarc.
 *
 * SPF starts at MAIL: libspf2 evaluates on the loop against a table of
 * answers; the names it wants are looked up on the host's resolver, all of
 * a round at once, and it evaluates again (ma_spf.h). Unless SPF failures
 * are refused at MAIL, the transaction goes on meanwhile and the result is
 * awaited at the end of data. There the _dmarc record of the From domain
 * (else of its organizational domain) is looked up, DMARC is judged with
 * libopendmarc from the SPF result and the DKIM plugin's results (its
 * Authentication-Results fields under our authserv-id), those fields are
 * replaced by one that carries all three, and the domain's policy is
 * applied as configured.
 *
 * Nothing blocks and nothing runs on a pool thread: every hook is a loop
 * hook; a hook that waits returns SLUICE_ASYNC and a DNS callback or the
 * deadline timer completes it, in ma__finish_mail() or ma__finish_data().
 *
 * Ownership: struct ma_inst is the instance's (shutdown frees it). A struct
 * ma_tx is the transaction's (tx_data, freed on the loop by the host at the
 * end of the transaction after cancelling its lookups and closing its
 * timer); while a hook is out it holds the ctx. Each lookup in flight is a
 * struct ma_look on the tx's list, freed when answered or cancelled.
 */
#include "cidr.h"
#include "ma_ar.h"
#include "ma_dmarc.h"
#include "ma_spf.h"
#include "regdom.h"

#include <sluice/plugin.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

SLUICE_API_DECLARE;

#define MA_DEFAULT_PSL "/usr/share/publicsuffix/public_suffix_list.dat"
#define MA_MAX_AR 64 /* A-R fields looked at */

enum ma_action { MA_ACT_REJECT = 0, MA_ACT_QUARANTINE, MA_ACT_TAG, MA_ACT_IGNORE };
static const char *const ma__spf_fail_choices[] = {"tag", "reject", NULL};
static const char *const ma__reject_choices[] = {"reject", "quarantine", "tag", "ignore", NULL};
static const char *const ma__quar_choices[] = {"quarantine", "tag", "ignore", NULL};

struct ma_conf {
    const char *authserv_id;
    const char *dns_servers;
    const char *skip_networks;
    const char *psl_file;
    const char *scores;
    unsigned dns_timeout_ms;
    unsigned deadline_ms;
    int spf_fail;         /* 0 tag, 1 reject */
    int dmarc_reject;     /* ma__reject_choices */
    int dmarc_quarantine; /* ma__quar_choices */
    bool skip_authenticated;
};

static const struct sluice_config_key ma__keys[] = {
    {.name = "authserv_id",
     .type = SLUICE_CONFIG_STRING,
     .max = 255,
     .offset = offsetof(struct ma_conf, authserv_id)},
    {.name = "dns_servers",
     .type = SLUICE_CONFIG_STRING,
     .offset = offsetof(struct ma_conf, dns_servers)},
    {.name = "skip_networks",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_KEEP_EMPTY,
     .def = "",
     .offset = offsetof(struct ma_conf, skip_networks)},
    {.name = "psl_file",
     .type = SLUICE_CONFIG_PATH,
     .def = MA_DEFAULT_PSL,
     .offset = offsetof(struct ma_conf, psl_file)},
    {.name = "scores", .type = SLUICE_CONFIG_STRING, .offset = offsetof(struct ma_conf, scores)},
    {.name = "dns_timeout",
     .type = SLUICE_CONFIG_DURATION,
     .def = "2s",
     .min = 100,
     .max = 30000,
     .offset = offsetof(struct ma_conf, dns_timeout_ms)},
    {.name = "deadline",
     .type = SLUICE_CONFIG_DURATION,
     .def = "5s",
     .min = 100,
     .max = 60000,
     .offset = offsetof(struct ma_conf, deadline_ms)},
    {.name = "spf_fail",
     .type = SLUICE_CONFIG_ENUM,
     .def = "tag",
     .choices = ma__spf_fail_choices,
     .offset = offsetof(struct ma_conf, spf_fail)},
    {.name = "dmarc_reject",
     .type = SLUICE_CONFIG_ENUM,
     .def = "reject",
     .choices = ma__reject_choices,
     .offset = offsetof(struct ma_conf, dmarc_reject)},
    {.name = "dmarc_quarantine",
     .type = SLUICE_CONFIG_ENUM,
     .def = "tag",
     .choices = ma__quar_choices,
     .offset = offsetof(struct ma_conf, dmarc_quarantine)},
    {.name = "skip_authenticated",
     .type = SLUICE_CONFIG_BOOL,
     .def = "yes",
     .offset = offsetof(struct ma_conf, skip_authenticated)},
    {.name = NULL},
};

/* Symbols and their default scores (the `scores` key overrides them). */
enum ma_sym {
    MA_SYM_SPF_PASS,
    MA_SYM_SPF_FAIL,
    MA_SYM_SPF_SOFTFAIL,
    MA_SYM_SPF_NEUTRAL,
    MA_SYM_SPF_NONE,
    MA_SYM_SPF_TEMPERROR,
    MA_SYM_SPF_PERMERROR,
    MA_SYM_DMARC_PASS,
    MA_SYM_DMARC_REJECT,
    MA_SYM_DMARC_QUARANTINE,
    MA_SYM_DMARC_POLICY_NONE,
    MA_SYM_DMARC_NONE,
    MA_SYM_DMARC_TEMPERROR,
    MA_SYM_DMARC_PERMERROR,
    MA_SYM_COUNT
};
static const struct {
    const char *name;
    double score;
} ma__syms[MA_SYM_COUNT] = {
    [MA_SYM_SPF_PASS] = {"SPF_PASS", -0.1},
    [MA_SYM_SPF_FAIL] = {"SPF_FAIL", 1.5},
    [MA_SYM_SPF_SOFTFAIL] = {"SPF_SOFTFAIL", 0.7},
    [MA_SYM_SPF_NEUTRAL] = {"SPF_NEUTRAL", 0.0},
    [MA_SYM_SPF_NONE] = {"SPF_NONE", 0.0},
    [MA_SYM_SPF_TEMPERROR] = {"SPF_TEMPERROR", 0.0},
    [MA_SYM_SPF_PERMERROR] = {"SPF_PERMERROR", 0.3},
    [MA_SYM_DMARC_PASS] = {"DMARC_PASS", -0.1},
    [MA_SYM_DMARC_REJECT] = {"DMARC_FAIL_REJECT", 4.0},
    [MA_SYM_DMARC_QUARANTINE] = {"DMARC_FAIL_QUARANTINE", 3.0},
    [MA_SYM_DMARC_POLICY_NONE] = {"DMARC_FAIL_NONE", 1.0},
    [MA_SYM_DMARC_NONE] = {"DMARC_NONE", 0.0},
    [MA_SYM_DMARC_TEMPERROR] = {"DMARC_TEMPERROR", 0.0},
    [MA_SYM_DMARC_PERMERROR] = {"DMARC_PERMERROR", 0.3},
};

struct ma_inst {
    sluice_instance *inst;
    struct ma_conf conf;
    char authserv_id[256];
    struct cidr_list skip;
    struct ma_spf *spf;
    double score[MA_SYM_COUNT];
    sluice_counter *c_spf, *c_dmarc, *c_actions;
};

struct ma_tx;

enum ma_purpose { MA_LOOK_SPF = 0, MA_LOOK_DMARC_FROM, MA_LOOK_DMARC_ORG };

/* One DNS lookup in flight. */
struct ma_look {
    struct ma_look *next, *prev;
    struct ma_tx *tx;
    sluice_dns_query *q;
    enum ma_purpose purpose;
    int type;
    char name[256];
};

enum ma_wait { MA_WAIT_NONE = 0, MA_WAIT_MAIL, MA_WAIT_DATA };

struct ma_tx {
    struct ma_inst *d;
    sluice_ctx *ctx; /* while a hook is out */
    enum ma_wait waiting;
    struct ma_look *looks; /* in flight, owned */
    /* SPF */
    char ip[64], helo[256], mail_from[600];
    struct ma_dns *dns; /* owned */
    unsigned round;
    size_t spf_pending;
    bool spf_started, spf_done;
    struct ma_spf_out spf;
    /* DMARC */
    size_t dmarc_pending;
    char from_dom[256], org_dom[256], record_dom[256];
    char *record; /* owned; NULL: none found */
    bool record_tempfail;
    uv_timer_t timer;
    bool timer_on;
};

static uv_loop_t *ma__loop;
static unsigned ma__seed; /* pct= sampling (loop thread) */

/* ---- lookups ------------------------------------------------------------- */

static void ma__answer_cb(void *ud, const struct sluice_dns_answer *ans);

static int ma__ask(struct ma_tx *t, sluice_ctx *ctx, enum ma_purpose purpose, int type,
                   const char *name)
{
    struct ma_look *lk = calloc(1, sizeof *lk);
    if (!lk)
        return -1;
    lk->tx = t;
    lk->purpose = purpose;
    lk->type = type;
    snprintf(lk->name, sizeof lk->name, "%s", name);
    struct sluice_dns_request rq = {
        .size = sizeof rq,
        .type = (uint32_t)type,
        .name = name,
        .timeout_ms = t->d->conf.dns_timeout_ms,
        .servers = t->d->conf.dns_servers,
    };
    lk->q = sluice_api->dns_query(ctx, &rq, ma__answer_cb, lk);
    if (!lk->q) {
        free(lk);
        return -1;
    }
    lk->next = t->looks;
    if (t->looks)
        t->looks->prev = lk;
    t->looks = lk;
    return 0;
}

static void ma__unlink(struct ma_tx *t, struct ma_look *lk)
{
    if (lk->prev)
        lk->prev->next = lk->next;
    else
        t->looks = lk->next;
    if (lk->next)
        lk->next->prev = lk->prev;
}

static void ma__cancel_all(struct ma_tx *t)
{
    while (t->looks) {
        struct ma_look *lk = t->looks;
        ma__unlink(t, lk);
        sluice_api->dns_cancel(lk->q);
        free(lk);
    }
    t->spf_pending = t->dmarc_pending = 0;
}

/* ---- SPF ------------------------------------------------------------------ */

static void ma__spf_done(struct ma_tx *t);

/* Evaluate with what the table holds; ask for what it wants. */
static void ma__spf_step(struct ma_tx *t, sluice_ctx *ctx)
{
    while (!t->spf_done) {
        if (ma_spf_check(t->d->spf, t->dns, t->ip, t->helo, t->mail_from, t->round, &t->spf) == 0) {
            ma__spf_done(t);
            return;
        }
        t->round++;
        size_t i = 0;
        const char *name;
        int type;
        while (ma_dns_wanted(t->dns, &i, &name, &type)) {
            if (ma__ask(t, ctx, MA_LOOK_SPF, type, name) == 0) {
                t->spf_pending++;
            } else {
                /* Unusable name (or resolver gone): "try again later". */
                ma_dns_put(t->dns, name, type, MA_DNS_TEMPFAIL, NULL, 0);
            }
        }
        if (t->spf_pending)
            return; /* the answers continue it */
    }
}

static enum ma_dns_status ma__status(int st)
{
    switch (st) {
    case SLUICE_DNS_OK:
        return MA_DNS_FOUND;
    case SLUICE_DNS_NXDOMAIN:
        return MA_DNS_NOTFOUND;
    case SLUICE_DNS_NODATA:
        return MA_DNS_NODATA;
    default:
        return MA_DNS_TEMPFAIL;
    }
}

/* ---- DMARC lookups ------------------------------------------------------- */

/* The one v=DMARC1 record among TXT records, or NULL (none, or several:
 * RFC 7489 6.6.3 step 5). */
static const char *ma__dmarc_record(const struct sluice_dns_answer *ans)
{
    const char *found = NULL;
    for (size_t i = 0; i < ans->count; i++) {
        const char *r = ans->records[i];
        while (*r == ' ')
            r++;
        if (strncasecmp(r, "v=DMARC1", 8) != 0 || (r[8] != ';' && r[8] != ' ' && r[8] != '\0'))
            continue;
        if (found)
            return NULL;
        found = ans->records[i];
    }
    return found;
}

static void ma__data_step(struct ma_tx *t);

static void ma__dmarc_answer(struct ma_tx *t, struct ma_look *lk,
                             const struct sluice_dns_answer *ans)
{
    if (ans->status != SLUICE_DNS_OK && ans->status != SLUICE_DNS_NXDOMAIN &&
        ans->status != SLUICE_DNS_NODATA) {
        t->record_tempfail = true;
        return;
    }
    const char *rec = ans->status == SLUICE_DNS_OK ? ma__dmarc_record(ans) : NULL;
    if (rec) {
        free(t->record);
        t->record = strdup(rec);
        if (!t->record)
            t->record_tempfail = true;
        snprintf(t->record_dom, sizeof t->record_dom, "%s",
                 lk->purpose == MA_LOOK_DMARC_FROM ? t->from_dom : t->org_dom);
        return;
    }
    /* Nothing at the From domain: the organizational domain's record. */
    if (lk->purpose == MA_LOOK_DMARC_FROM && t->org_dom[0] && strcmp(t->org_dom, t->from_dom)) {
        char name[300];
        snprintf(name, sizeof name, "_dmarc.%s", t->org_dom);
        if (ma__ask(t, t->ctx, MA_LOOK_DMARC_ORG, SLUICE_DNS_TXT, name) == 0)
            t->dmarc_pending++;
        else
            t->record_tempfail = true;
    }
}

static void ma__answer_cb(void *ud, const struct sluice_dns_answer *ans)
{
    struct ma_look *lk = ud;
    struct ma_tx *t = lk->tx;
    ma__unlink(t, lk);
    if (lk->purpose == MA_LOOK_SPF) {
        ma_dns_put(t->dns, lk->name, lk->type, ma__status(ans->status),
                   ans->status == SLUICE_DNS_OK ? ans->records : NULL,
                   ans->status == SLUICE_DNS_OK ? ans->count : 0);
        if (--t->spf_pending == 0)
            ma__spf_step(t, t->ctx);
    } else {
        t->dmarc_pending--;
        ma__dmarc_answer(t, lk, ans);
        if (t->waiting == MA_WAIT_DATA)
            ma__data_step(t);
    }
    free(lk);
}

/* ---- the transaction's state ------------------------------------------- */

static void ma__tx_destroy(struct ma_tx *t)
{
    ma_dns_free(t->dns);
    free(t->record);
    free(t);
}

static void ma__timer_closed(uv_handle_t *h)
{
    ma__tx_destroy(h->data);
}

static void ma__tx_free(void *p)
{
    struct ma_tx *t = p;
    ma__cancel_all(t);
    if (t->timer_on) {
        t->timer_on = false;
        uv_close((uv_handle_t *)&t->timer, ma__timer_closed);
        return;
    }
    ma__tx_destroy(t);
}

static bool ma__skipped(struct ma_inst *d, sluice_ctx *ctx)
{
    const char *ip = sluice_api->client_addr(ctx);
    if (ip && d->skip.n && cidr_match(d->skip.v, d->skip.n, ip))
        return true;
    const char *user = sluice_api->auth_user(ctx);
    return d->conf.skip_authenticated && user && *user;
}

static struct ma_tx *ma__tx_new(sluice_ctx *ctx, struct ma_inst *d)
{
    struct ma_tx *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->d = d;
    t->dns = ma_dns_new();
    if (!t->dns) {
        free(t);
        return NULL;
    }
    const char *ip = sluice_api->client_addr(ctx), *helo = sluice_api->helo(ctx),
               *from = sluice_api->sender(ctx);
    snprintf(t->ip, sizeof t->ip, "%s", ip ? ip : "");
    snprintf(t->helo, sizeof t->helo, "%s", helo ? helo : "");
    snprintf(t->mail_from, sizeof t->mail_from, "%s", from ? from : "");
    sluice_api->tx_data_set(ctx, t, ma__tx_free);
    return t;
}

static void ma__deadline_cb(uv_timer_t *h);

/* The hook goes out: arm the deadline. */
static void ma__wait(struct ma_tx *t, sluice_ctx *ctx, enum ma_wait w)
{
    t->ctx = ctx;
    t->waiting = w;
    if (!t->timer_on) {
        uv_timer_init(ma__loop, &t->timer);
        t->timer.data = t;
        t->timer_on = true;
    }
    uv_timer_start(&t->timer, ma__deadline_cb, t->d->conf.deadline_ms, 0);
}

/* ---- MAIL ------------------------------------------------------------------ */

static void ma__spf_symbol(struct ma_tx *t, sluice_ctx *ctx)
{
    static const enum ma_sym map[] = {
        [MA_SPF_NONE] = MA_SYM_SPF_NONE,           [MA_SPF_NEUTRAL] = MA_SYM_SPF_NEUTRAL,
        [MA_SPF_PASS] = MA_SYM_SPF_PASS,           [MA_SPF_FAIL] = MA_SYM_SPF_FAIL,
        [MA_SPF_SOFTFAIL] = MA_SYM_SPF_SOFTFAIL,   [MA_SPF_TEMPERROR] = MA_SYM_SPF_TEMPERROR,
        [MA_SPF_PERMERROR] = MA_SYM_SPF_PERMERROR,
    };
    enum ma_sym s = map[t->spf.result];
    char why[700];
    snprintf(why, sizeof why, "%s %s for %s: %s", t->spf.used_helo ? "helo" : "mailfrom",
             t->spf.domain[0] ? t->spf.domain : "(none)", t->ip, t->spf.comment);
    sluice_api->symbol_add(ctx, ma__syms[s].name, t->d->score[s], why);
}

static int ma__mail_verdict(struct ma_tx *t, sluice_ctx *ctx)
{
    if (t->d->conf.spf_fail == 1 && t->spf.result == MA_SPF_FAIL) {
        char text[400];
        snprintf(text, sizeof text, "SPF of %.200s does not allow %s to send for it", t->spf.domain,
                 t->ip);
        sluice_api->set_reply(ctx, 550, "5.7.23", text);
        if (t->d->c_actions)
            sluice_api->counter_add(t->d->c_actions, "spf_reject", 1);
        return SLUICE_REJECT;
    }
    return SLUICE_CONTINUE;
}

static void ma__finish_mail(struct ma_tx *t)
{
    sluice_ctx *ctx = t->ctx;
    t->ctx = NULL;
    t->waiting = MA_WAIT_NONE;
    uv_timer_stop(&t->timer);
    sluice_api->complete(ctx, ma__mail_verdict(t, ctx));
}

static void ma__spf_done(struct ma_tx *t)
{
    t->spf_done = true;
    if (t->d->c_spf)
        sluice_api->counter_add(t->d->c_spf, ma_spf_result_name(t->spf.result), 1);
    if (t->waiting == MA_WAIT_MAIL)
        ma__finish_mail(t);
    else if (t->waiting == MA_WAIT_DATA)
        ma__data_step(t);
}

/* The start of both hooks: the transaction's state, made on first use.
 * SLUICE_CONTINUE when the client is not checked, SLUICE_ERROR without
 * memory, else 0 with *tp set. */
static int ma__hook_tx(sluice_ctx *ctx, struct ma_tx **tp)
{
    struct ma_inst *d = sluice_api->instance_data(ctx);
    if (!d || ma__skipped(d, ctx))
        return SLUICE_CONTINUE;
    ma__loop = sluice_api->event_loop(ctx);
    struct ma_tx *t = sluice_api->tx_data_get(ctx);
    if (!t && !(t = ma__tx_new(ctx, d)))
        return SLUICE_ERROR;
    *tp = t;
    return 0;
}

static int ma__on_mail(sluice_ctx *ctx)
{
    struct ma_tx *t = NULL;
    int rc = ma__hook_tx(ctx, &t);
    if (!t)
        return rc;
    struct ma_inst *d = t->d;
    t->spf_started = true;
    ma__spf_step(t, ctx);
    if (t->spf_done)
        return ma__mail_verdict(t, ctx);
    if (d->conf.spf_fail == 1) {
        ma__wait(t, ctx, MA_WAIT_MAIL);
        return SLUICE_ASYNC;
    }
    return SLUICE_CONTINUE; /* SPF goes on; the end of data waits for it */
}

/* ---- end of data ------------------------------------------------------------ */

/* Our Authentication-Results fields: the DKIM plugin's when a DKIM verify
 * ran before us (its symbols say so), else forgeries. Their resinfos are
 * collected into v (when trusted); the fields are deleted either way. */
static void ma__take_ar(struct ma_tx *t, sluice_ctx *ctx, struct ma_ar_value *all)
{
    static const char *const dkim_syms[] = {"DKIM_PASS",     "DKIM_FAIL",   "DKIM_NONE",
                                            "DKIM_NEUTRAL",  "DKIM_POLICY", "DKIM_TEMPERROR",
                                            "DKIM_PERMERROR"};
    bool trusted = false;
    for (size_t i = 0; i < sizeof dkim_syms / sizeof dkim_syms[0]; i++)
        if (sluice_api->has_symbol(ctx, dkim_syms[i]))
            trusted = true;
    size_t ours[MA_MAX_AR], n = 0;
    memset(all, 0, sizeof *all);
    for (size_t nth = 0; nth < 1000 && n < MA_MAX_AR; nth++) {
        const char *v = sluice_api->header_get(ctx, "Authentication-Results", nth);
        if (!v)
            break;
        struct ma_ar_value one;
        int r = ma_ar_parse(v, t->d->authserv_id, &one);
        if (r == 0)
            continue;
        if (r < 0) {
            /* Unparsable: ours only if it starts with our id. */
            size_t idl = strlen(t->d->authserv_id);
            while (*v == ' ' || *v == '\t')
                v++;
            if (strncasecmp(v, t->d->authserv_id, idl) != 0 ||
                (v[idl] != ';' && v[idl] != ' ' && v[idl] != '\0' && v[idl] != '('))
                continue;
        }
        ours[n++] = nth;
        if (r > 0 && trusted) {
            for (size_t i = 0; i < one.nres && all->nres < MA_AR_MAX_RESINFO; i++) {
                all->res[all->nres++] = one.res[i];
                one.res[i] = NULL;
            }
            for (size_t i = 0; i < one.ndkim && all->ndkim < MA_AR_MAX_RESINFO; i++)
                all->dkim[all->ndkim++] = one.dkim[i];
        } else if (!trusted) {
            sluice_api->log_ctx(ctx, SLUICE_LOG_INFO,
                                "mailauth: removed Authentication-Results #%zu claiming to be "
                                "from %s",
                                nth, t->d->authserv_id);
        }
        if (r > 0) {
            for (size_t i = 0; i < one.nres; i++)
                free(one.res[i]);
        }
    }
    while (n > 0)
        sluice_api->header_delete(ctx, "Authentication-Results", ours[--n]);
}

static void ma__dmarc_symbol(struct ma_tx *t, sluice_ctx *ctx, const struct ma_dmarc_out *o)
{
    enum ma_sym s;
    switch (o->result) {
    case MA_DMARC_PASS:
        s = MA_SYM_DMARC_PASS;
        break;
    case MA_DMARC_FAIL:
        s = o->policy == 'r'   ? MA_SYM_DMARC_REJECT
            : o->policy == 'q' ? MA_SYM_DMARC_QUARANTINE
                               : MA_SYM_DMARC_POLICY_NONE;
        break;
    case MA_DMARC_TEMPERROR:
        s = MA_SYM_DMARC_TEMPERROR;
        break;
    case MA_DMARC_PERMERROR:
        s = MA_SYM_DMARC_PERMERROR;
        break;
    default:
        s = MA_SYM_DMARC_NONE;
        break;
    }
    char why[500];
    snprintf(why, sizeof why, "header.from=%s %s", t->from_dom[0] ? t->from_dom : "(none)",
             o->comment);
    sluice_api->symbol_add(ctx, ma__syms[s].name, t->d->score[s], why);
}

/* What the policy asks and the configuration allows. */
static enum ma_action ma__action(const struct ma_inst *d, const struct ma_dmarc_out *o)
{
    if (o->result != MA_DMARC_FAIL)
        return MA_ACT_IGNORE;
    if (o->policy == 'r')
        return (enum ma_action)d->conf.dmarc_reject;
    if (o->policy == 'q') {
        static const enum ma_action q[] = {MA_ACT_QUARANTINE, MA_ACT_TAG, MA_ACT_IGNORE};
        return q[d->conf.dmarc_quarantine];
    }
    return MA_ACT_IGNORE;
}

static const char *ma__dis(enum ma_action a)
{
    return a == MA_ACT_REJECT ? "reject" : a == MA_ACT_QUARANTINE ? "quarantine" : "none";
}

static void ma__finish_data(struct ma_tx *t)
{
    struct ma_inst *d = t->d;
    sluice_ctx *ctx = t->ctx;
    t->ctx = NULL;
    t->waiting = MA_WAIT_NONE;
    uv_timer_stop(&t->timer);
    ma__cancel_all(t);

    struct ma_ar_value ar;
    ma__take_ar(t, ctx, &ar);

    struct ma_dmarc_in in = {
        .client_ip = t->ip,
        .from_domain = t->from_dom[0] ? t->from_dom : NULL,
        .record = t->record,
        .record_domain = t->record_dom,
        .record_tempfail = t->record_tempfail,
        .sample = (unsigned)(rand_r(&ma__seed) % 100),
        .spf = t->spf.result,
        .spf_domain = t->spf.domain,
        .spf_helo = t->spf.used_helo,
        .dkim = ar.dkim,
        .ndkim = ar.ndkim,
    };
    struct ma_dmarc_out o;
    ma_dmarc_eval(&in, &o);
    enum ma_action act = ma__action(d, &o);
    if (d->c_dmarc)
        sluice_api->counter_add(d->c_dmarc, ma_dmarc_result_name(o.result), 1);

    /* One Authentication-Results: the DKIM plugin's results, then ours. */
    char *v = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&v, &len);
    if (fp) {
        char pv[700];
        fputs(d->authserv_id, fp);
        for (size_t i = 0; i < ar.nres; i++)
            fprintf(fp, "; %s", ar.res[i]);
        fprintf(fp, "; spf=%s", ma_spf_result_name(t->spf.result));
        if (t->spf.domain[0]) {
            const char *id = t->spf.used_helo ? t->spf.domain : t->mail_from;
            if (ma_ar_pvalue(id, pv, sizeof pv) > 0)
                fprintf(fp, " smtp.%s=%s", t->spf.used_helo ? "helo" : "mailfrom", pv);
        }
        fprintf(fp, "; dmarc=%s", ma_dmarc_result_name(o.result));
        if (o.result == MA_DMARC_PASS || o.result == MA_DMARC_FAIL)
            fprintf(fp, " (%s dis=%s)", o.comment, ma__dis(act));
        if (t->from_dom[0])
            fprintf(fp, " header.from=%s", t->from_dom);
        fclose(fp);
        if (v && sluice_api->header_insert(ctx, 0, "Authentication-Results", v) != 0)
            sluice_api->log_ctx(ctx, SLUICE_LOG_WARN,
                                "mailauth: cannot add Authentication-Results");
    }
    free(v);
    for (size_t i = 0; i < ar.nres; i++)
        free(ar.res[i]);

    ma__spf_symbol(t, ctx);
    ma__dmarc_symbol(t, ctx, &o);

    int verdict = SLUICE_CONTINUE;
    if (act == MA_ACT_REJECT) {
        char text[300];
        snprintf(text, sizeof text, "DMARC policy of %s refuses this message", t->from_dom);
        sluice_api->set_reply(ctx, 550, "5.7.1", text);
        verdict = SLUICE_REJECT;
    } else if (act == MA_ACT_QUARANTINE) {
        verdict = SLUICE_QUARANTINE;
    }
    if (d->c_actions && (act == MA_ACT_REJECT || act == MA_ACT_QUARANTINE))
        sluice_api->counter_add(d->c_actions,
                                act == MA_ACT_REJECT ? "dmarc_reject" : "dmarc_quarantine", 1);
    sluice_api->log_ctx(ctx, SLUICE_LOG_INFO,
                        "mailauth: spf=%s (%s) dmarc=%s header.from=%s %s action=%s",
                        ma_spf_result_name(t->spf.result), t->spf.domain,
                        ma_dmarc_result_name(o.result), t->from_dom[0] ? t->from_dom : "-",
                        o.comment, act == MA_ACT_IGNORE ? "none" : ma__reject_choices[act]);
    sluice_api->complete(ctx, verdict);
}

/* Called whenever something the end of data waits for came in. */
static void ma__data_step(struct ma_tx *t)
{
    if (t->waiting == MA_WAIT_DATA && t->spf_done && t->dmarc_pending == 0)
        ma__finish_data(t);
}

static void ma__deadline_cb(uv_timer_t *h)
{
    struct ma_tx *t = h->data;
    if (!t->ctx)
        return;
    if (t->spf_done && t->dmarc_pending == 0) {
        /* Not the deadline: everything was known when the hook ran. */
        ma__data_step(t);
        return;
    }
    sluice_api->log_ctx(t->ctx, SLUICE_LOG_INFO, "mailauth: DNS deadline passed (%zu lookups out)",
                        t->spf_pending + t->dmarc_pending);
    if (t->dmarc_pending)
        t->record_tempfail = true;
    ma__cancel_all(t);
    if (!t->spf_done) {
        t->spf.result = MA_SPF_TEMPERROR;
        snprintf(t->spf.comment, sizeof t->spf.comment, "DNS lookups took too long");
        t->spf_done = true;
        if (t->d->c_spf)
            sluice_api->counter_add(t->d->c_spf, "temperror", 1);
    }
    if (t->waiting == MA_WAIT_MAIL)
        ma__finish_mail(t);
    else
        ma__finish_data(t);
}

static int ma__on_data(sluice_ctx *ctx)
{
    struct ma_tx *t = NULL;
    int rc = ma__hook_tx(ctx, &t);
    if (!t)
        return rc;
    if (!t->spf_started) {
        t->spf_started = true;
        ma__spf_step(t, ctx);
    }
    /* The author domain: exactly one From field with one address. */
    const char *from = sluice_api->header_get(ctx, "From", 0);
    if (from && !sluice_api->header_get(ctx, "From", 1) &&
        ma_dmarc_from_domain(from, t->from_dom, sizeof t->from_dom) == 0) {
        if (regdom_registrable(t->from_dom, t->org_dom, sizeof t->org_dom) < 0)
            snprintf(t->org_dom, sizeof t->org_dom, "%s", t->from_dom);
        char name[300];
        snprintf(name, sizeof name, "_dmarc.%s", t->from_dom);
        if (ma__ask(t, ctx, MA_LOOK_DMARC_FROM, SLUICE_DNS_TXT, name) == 0)
            t->dmarc_pending++;
        else
            t->record_tempfail = true;
    } else {
        t->from_dom[0] = '\0';
    }
    ma__wait(t, ctx, MA_WAIT_DATA);
    /* Everything may be known already (cached SPF, no From): finish from
     * the loop, not inside the hook. */
    if (t->spf_done && t->dmarc_pending == 0)
        uv_timer_start(&t->timer, ma__deadline_cb, 0, 0);
    return SLUICE_ASYNC;
}

/* ---- instance life ------------------------------------------------------------ */

static int ma__parse_scores(struct ma_inst *d, const char *text)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL;
    for (char *it = strtok_r(buf, ", \t", &save); it; it = strtok_r(NULL, ", \t", &save)) {
        char *eq = strchr(it, '=');
        if (!eq) {
            sluice_api->config_error(d->inst, "scores", "\"%s\": SYMBOL=SCORE", it);
            return -1;
        }
        *eq = '\0';
        char *end;
        double v = strtod(eq + 1, &end);
        if (*end || end == eq + 1 || v < -1000 || v > 1000) {
            sluice_api->config_error(d->inst, "scores", "%s: \"%s\" is not a score", it, eq + 1);
            return -1;
        }
        size_t i;
        for (i = 0; i < MA_SYM_COUNT; i++)
            if (!strcmp(ma__syms[i].name, it))
                break;
        if (i == MA_SYM_COUNT) {
            sluice_api->config_error(d->inst, "scores", "unknown symbol %s", it);
            return -1;
        }
        d->score[i] = v;
    }
    return 0;
}

static void ma__shutdown(void *data)
{
    struct ma_inst *d = data;
    if (!d)
        return;
    ma_spf_free(d->spf);
    cidr_list_free(&d->skip);
    free(d);
}

static int ma__init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, dns_cancel)) {
        api->config_error(inst, NULL, "needs a sluice with the host resolver (dns_query)");
        return -1;
    }
    struct ma_inst *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    d->inst = inst;
    for (size_t i = 0; i < MA_SYM_COUNT; i++)
        d->score[i] = ma__syms[i].score;
    char err[256];
    int bad = SLUICE_CONFIG_LOAD(api, inst, ma__keys, &d->conf, SLUICE_CONFIG_STRICT) != 0;
    if (!bad) {
        const char *id = d->conf.authserv_id;
        char host[256] = "";
        if (!id) {
            if (gethostname(host, sizeof host - 1) == 0)
                id = host;
        }
        size_t n = id ? strlen(id) : 0;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)id[i] <= 0x20 || (unsigned char)id[i] >= 0x7f ||
                strchr("()<>,;:\\\"/[]?=", id[i]))
                n = 0;
        if (n == 0) {
            api->config_error(inst, "authserv_id",
                              "must be a host-name-like token (the DKIM plugin's authserv_id)");
            bad = 1;
        } else {
            snprintf(d->authserv_id, sizeof d->authserv_id, "%s", id);
        }
    }
    if (!bad && cidr_list_parse(d->conf.skip_networks, 0, &d->skip, err, sizeof err) < 0) {
        api->config_error(inst, "skip_networks", "%s", err);
        bad = 1;
    }
    /* Reported with the other keys' problems, not after them. */
    if (d->conf.scores && ma__parse_scores(d, d->conf.scores) < 0)
        bad = 1;
    if (!bad && ma_dmarc_init(d->conf.psl_file, err, sizeof err) < 0) {
        api->config_error(inst, "psl_file", "%s", err);
        bad = 1;
    }
    if (!bad && regdom_init() < 0) {
        api->config_error(inst, NULL, "libpsl has no public suffix list");
        bad = 1;
    }
    if (!bad && !(d->spf = ma_spf_new(d->authserv_id, err, sizeof err))) {
        api->config_error(inst, NULL, "%s", err);
        bad = 1;
    }
    if (bad) {
        ma__shutdown(d);
        return -1;
    }
    if (!ma__seed)
        ma__seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    d->c_spf = api->counter_new(inst, "spf", "SPF results", "result", 8);
    d->c_dmarc = api->counter_new(inst, "dmarc", "DMARC results", "result", 6);
    d->c_actions =
        api->counter_new(inst, "actions", "Messages refused or held by policy", "action", 4);
    *data = d;
    return 0;
}

SLUICE_PLUGIN_DEFINE(.name = "mailauth", .version = "1.0",
                     .description = "SPF and DMARC (one Authentication-Results with dkim)",
                     .capabilities = SLUICE_CAP_HEADERS | SLUICE_CAP_QUARANTINE, .init = ma__init,
                     .shutdown = ma__shutdown, .on_mail = ma__on_mail, .on_data = ma__on_data);
