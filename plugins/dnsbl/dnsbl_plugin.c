/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dnsbl: DNS block and allow lists as a sluice plugin.
 *
 * The client's address is looked up in the `ip` lists as soon as MAIL
 * arrives (the answers come while the client sends RCPT and DATA); at the
 * end of data the message's links and its sender domains are looked up in
 * the `uri` lists, all at once, and every listing found by then becomes a
 * symbol with the list's score in the transaction's record (so the spam
 * plugin later in the chain counts it against its thresholds). The plugin
 * never refuses mail itself.
 *
 * Threads: every DNS lookup runs on the host's resolver, on the loop. Only
 * the link extraction (GMime: base64, quoted-printable, HTML) runs on a
 * libuv pool thread, at most max_threads of them for every instance
 * together, the rest waiting in order. The wait at the end of data is
 * bounded by `deadline`: what has not answered by then counts as not
 * listed.
 *
 * Ownership: struct dnsbl_inst is the instance's, freed by shutdown(). A
 * struct dnsbl_tx is the transaction's (tx_data), made at MAIL or at the
 * end of data, freed by the host at the end of the transaction (on the
 * loop), which cancels its lookups and closes its timer first. While a
 * DATA hook is out (SLUICE_ASYNC) the tx holds the ctx, and one place
 * gives it back: dnsbl__finish().
 */
#include "regdom.h"
#include "dnsbl_list.h"
#include "spam_msg.h"
#include "spam_uri.h"
#include "cidr.h"

#include <sluice/plugin.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#define DNSBL_DEFAULT_LISTS "/etc/sluice/rules/dnsbl.lists"
#define DNSBL_MAX_ADDRS 8 /* A records kept per answer */

SLUICE_API_DECLARE;

struct dnsbl_conf {
    const char *lists;
    const char *skip_networks;
    const char *dns_servers;
    unsigned lookup_timeout_ms;
    unsigned deadline_ms;
    unsigned max_domains;
    uint64_t max_scan;
    unsigned max_threads;
    bool check_sender;
};

static const struct sluice_config_key dnsbl__keys[] = {
    {.name = "lists",
     .type = SLUICE_CONFIG_PATH,
     .def = DNSBL_DEFAULT_LISTS,
     .offset = offsetof(struct dnsbl_conf, lists)},
    /* Addresses no public list holds: asking about them only leaks them. */
    {.name = "skip_networks",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_KEEP_EMPTY,
     .def = "127.0.0.0/8 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10 169.254.0.0/16 "
            "::1/128 fc00::/7 fe80::/10",
     .offset = offsetof(struct dnsbl_conf, skip_networks)},
    {.name = "dns_servers",
     .type = SLUICE_CONFIG_STRING,
     .offset = offsetof(struct dnsbl_conf, dns_servers)},
    {.name = "lookup_timeout",
     .type = SLUICE_CONFIG_DURATION,
     .def = "2s",
     .min = 100,
     .max = 30000,
     .offset = offsetof(struct dnsbl_conf, lookup_timeout_ms)},
    {.name = "deadline",
     .type = SLUICE_CONFIG_DURATION,
     .def = "3s",
     .min = 100,
     .max = 60000,
     .offset = offsetof(struct dnsbl_conf, deadline_ms)},
    {.name = "max_domains",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "20",
     .min = 1,
     .max = 200,
     .offset = offsetof(struct dnsbl_conf, max_domains)},
    {.name = "max_scan_size",
     .type = SLUICE_CONFIG_SIZE,
     .def = "256k",
     .min = 1024,
     .max = 64ULL << 20,
     .offset = offsetof(struct dnsbl_conf, max_scan)},
    {.name = "max_threads",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "0",
     .max = 1024,
     .offset = offsetof(struct dnsbl_conf, max_threads)},
    {.name = "check_sender",
     .type = SLUICE_CONFIG_BOOL,
     .def = "yes",
     .offset = offsetof(struct dnsbl_conf, check_sender)},
    {.name = NULL},
};

struct dnsbl_inst {
    sluice_instance *inst;
    struct dnsbl_conf conf;
    struct dnsbl_lists lists;
    struct cidr_list skip;
    size_t nip, nuri;               /* zones of each kind */
    time_t warned[DNSBL_MAX_ZONES]; /* last "list answers oddly" log, per zone */
    sluice_counter *c_lookups, *c_listed;
};

enum dnsbl_state { DNSBL_PENDING = 0, DNSBL_ANSWERED, DNSBL_UNANSWERED };

/* One question to one zone. */
struct dnsbl_look {
    struct dnsbl_tx *tx;
    size_t zone;
    char subject[256]; /* the address or domain asked about */
    sluice_dns_query *q;
    enum dnsbl_state state;
    uint8_t addrs[DNSBL_MAX_ADDRS][4];
    size_t naddrs;
};

/* Lookups of one kind, allocated once (queries in flight point into it). */
struct dnsbl_batch {
    struct dnsbl_look *v; /* owned */
    size_t n, cap;
};

struct dnsbl_tx {
    struct dnsbl_inst *d;
    sluice_ctx *ctx;        /* while the DATA hook is out, else NULL */
    struct dnsbl_batch ip;  /* started at MAIL */
    struct dnsbl_batch uri; /* started after the link extraction */
    size_t pending;         /* lookups started and not answered */
    int ip_started;
    /* Domains for the uri lists (registrable, lower case). */
    char (*domains)[256]; /* owned */
    size_t ndomains;
    uv_timer_t timer; /* the deadline, initialised while timer_on */
    int timer_on;
    int expired; /* the deadline passed while the extraction ran */
    uv_work_t work;
    struct dnsbl_tx *next_waiting;
    int in_work; /* on a pool thread or waiting for one */
    int freed;   /* the host let go while in_work: free after the work */
};

static uv_loop_t *dnsbl__loop;

/* ---- lookups ---------------------------------------------------------- */

static int dnsbl__batch_alloc(struct dnsbl_batch *b, size_t cap)
{
    b->v = calloc(cap ? cap : 1, sizeof *b->v);
    b->n = 0;
    b->cap = b->v ? cap : 0;
    return b->v ? 0 : -1;
}

static void dnsbl__finish(struct dnsbl_tx *t);

static void dnsbl__answer_cb(void *ud, const struct sluice_dns_answer *ans)
{
    struct dnsbl_look *lk = ud;
    struct dnsbl_tx *t = lk->tx;
    struct dnsbl_inst *d = t->d;
    const char *result = "clean";

    lk->q = NULL;
    lk->state = DNSBL_ANSWERED;
    if (ans->status == SLUICE_DNS_OK) {
        for (size_t i = 0; i < ans->count && lk->naddrs < DNSBL_MAX_ADDRS; i++) {
            uint8_t a[4];
            if (dnsbl_answer_parse(ans->records[i], a) != DNSBL_ANSWER_LISTED) {
                /* A listing outside 127.0.0.0/8 or a "refused" code: the
                 * list (or the resolver in front of it) is not usable. */
                time_t now = time(NULL);
                if (now - d->warned[lk->zone] >= 60) {
                    d->warned[lk->zone] = now;
                    sluice_api->log(d->inst, SLUICE_LOG_WARN,
                                    "list %s answers %.40s for %s: not a listing; check the "
                                    "resolver (public resolvers are refused by some lists)",
                                    d->lists.zones[lk->zone].name, ans->records[i], lk->subject);
                }
                lk->naddrs = 0;
                lk->state = DNSBL_UNANSWERED;
                result = "error";
                break;
            }
            memcpy(lk->addrs[lk->naddrs++], a, 4);
            result = "listed";
        }
    } else if (ans->status != SLUICE_DNS_NXDOMAIN && ans->status != SLUICE_DNS_NODATA) {
        lk->state = DNSBL_UNANSWERED;
        result = ans->status == SLUICE_DNS_TIMEOUT ? "timeout" : "error";
    }
    if (d->c_lookups)
        sluice_api->counter_add(d->c_lookups, result, 1);
    t->pending--;
    if (t->pending == 0 && t->ctx && !t->in_work)
        dnsbl__finish(t);
}

/* Start one lookup of name in zone z (subject for the record). */
static void dnsbl__ask(struct dnsbl_tx *t, struct dnsbl_batch *b, sluice_ctx *ctx, size_t z,
                       const char *subject, const char *qname)
{
    struct dnsbl_inst *d = t->d;
    if (b->n == b->cap)
        return;
    struct dnsbl_look *lk = &b->v[b->n];
    memset(lk, 0, sizeof *lk);
    lk->tx = t;
    lk->zone = z;
    snprintf(lk->subject, sizeof lk->subject, "%s", subject);
    struct sluice_dns_request rq = {
        .size = sizeof rq,
        .type = SLUICE_DNS_A,
        .name = qname,
        .timeout_ms = d->conf.lookup_timeout_ms,
        .servers = d->conf.dns_servers,
    };
    b->n++;
    t->pending++;
    lk->q = sluice_api->dns_query(ctx, &rq, dnsbl__answer_cb, lk);
    if (!lk->q) {
        t->pending--;
        lk->state = DNSBL_UNANSWERED;
        if (d->c_lookups)
            sluice_api->counter_add(d->c_lookups, "error", 1);
    }
}

/* The client's address in every ip list (once per transaction). */
static void dnsbl__ask_ip(struct dnsbl_tx *t, sluice_ctx *ctx)
{
    struct dnsbl_inst *d = t->d;
    const char *ip = sluice_api->client_addr(ctx);

    t->ip_started = 1;
    if (!ip || !*ip || cidr_match(d->skip.v, d->skip.n, ip))
        return;
    if (dnsbl__batch_alloc(&t->ip, d->nip) < 0)
        return;
    for (size_t z = 0; z < d->lists.nzones; z++) {
        char qname[DNSBL_NAME_MAX];
        if (d->lists.zones[z].kind != DNSBL_KIND_IP)
            continue;
        if (dnsbl_ip_qname(ip, d->lists.zones[z].name, qname, sizeof qname) < 0)
            continue;
        dnsbl__ask(t, &t->ip, ctx, z, ip, qname);
    }
}

static void dnsbl__cancel_batch(struct dnsbl_tx *t, struct dnsbl_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i].q) {
            sluice_api->dns_cancel(b->v[i].q);
            b->v[i].q = NULL;
            b->v[i].state = DNSBL_UNANSWERED;
            t->pending--;
        }
    }
}

static void dnsbl__cancel_all(struct dnsbl_tx *t)
{
    dnsbl__cancel_batch(t, &t->ip);
    dnsbl__cancel_batch(t, &t->uri);
}

/* ---- the transaction's state ------------------------------------------- */

static void dnsbl__tx_destroy(struct dnsbl_tx *t)
{
    free(t->ip.v);
    free(t->uri.v);
    free(t->domains);
    free(t);
}

static void dnsbl__timer_closed(uv_handle_t *h)
{
    dnsbl__tx_destroy(h->data);
}

/* The host's free callback, at the end of the transaction (loop thread). */
static void dnsbl__tx_free(void *p)
{
    struct dnsbl_tx *t = p;
    dnsbl__cancel_all(t);
    if (t->in_work) {
        /* Cannot happen while a DATA hook is out (the host waits for it),
         * but keep the memory until the pool is done with it. */
        t->freed = 1;
        return;
    }
    if (t->timer_on) {
        t->timer_on = 0;
        uv_close((uv_handle_t *)&t->timer, dnsbl__timer_closed);
        return;
    }
    dnsbl__tx_destroy(t);
}

static struct dnsbl_tx *dnsbl__tx_get(sluice_ctx *ctx, struct dnsbl_inst *d)
{
    struct dnsbl_tx *t = sluice_api->tx_data_get(ctx);
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->d = d;
    sluice_api->tx_data_set(ctx, t, dnsbl__tx_free);
    return t;
}

/* ---- the end: symbols, and the ctx back to the host -------------------- */

/* The first look of batch b whose answer means entry en, and the answer. */
static const struct dnsbl_look *dnsbl__hit(const struct dnsbl_batch *b,
                                           const struct dnsbl_entry *en, size_t *which)
{
    for (size_t i = 0; i < b->n; i++) {
        const struct dnsbl_look *lk = &b->v[i];
        if (lk->zone != en->zone || lk->state != DNSBL_ANSWERED)
            continue;
        for (size_t k = 0; k < lk->naddrs; k++) {
            if (dnsbl_entry_matches(en, lk->addrs[k])) {
                *which = k;
                return lk;
            }
        }
    }
    return NULL;
}

/* Every listing found becomes a symbol (once per symbol and message). */
static void dnsbl__symbols(struct dnsbl_tx *t, sluice_ctx *ctx)
{
    struct dnsbl_inst *d = t->d;
    for (size_t e = 0; e < d->lists.nentries; e++) {
        const struct dnsbl_entry *en = &d->lists.entries[e];
        size_t k = 0;
        const struct dnsbl_look *lk = dnsbl__hit(&t->ip, en, &k);
        if (!lk)
            lk = dnsbl__hit(&t->uri, en, &k);
        if (!lk)
            continue;
        char why[400];
        snprintf(why, sizeof why, "%s listed in %s (%u.%u.%u.%u)", lk->subject,
                 d->lists.zones[en->zone].name, lk->addrs[k][0], lk->addrs[k][1], lk->addrs[k][2],
                 lk->addrs[k][3]);
        sluice_api->symbol_add(ctx, en->symbol, en->score, why);
        if (d->c_listed)
            sluice_api->counter_add(d->c_listed, en->symbol, 1);
    }
}

/* The one place the DATA hook's ctx goes back to the host. */
static void dnsbl__finish(struct dnsbl_tx *t)
{
    sluice_ctx *ctx = t->ctx;

    t->ctx = NULL;
    uv_timer_stop(&t->timer);
    /* Lookups still out at the deadline: not listed, as far as we know. */
    dnsbl__cancel_all(t);
    dnsbl__symbols(t, ctx);
    sluice_api->complete(ctx, SLUICE_CONTINUE);
}

static void dnsbl__deadline_cb(uv_timer_t *h)
{
    struct dnsbl_tx *t = h->data;
    if (t->ctx && t->in_work) {
        t->expired = 1; /* the extraction is slow: no uri lookups after it */
    } else if (t->ctx) {
        sluice_api->log_ctx(t->ctx, SLUICE_LOG_INFO,
                            "%zu list lookups not answered by the deadline", t->pending);
        dnsbl__finish(t);
    }
}

/* ---- link extraction on the pool ---------------------------------------- */

static unsigned dnsbl__running;
static struct dnsbl_tx *dnsbl__waiting, *dnsbl__waiting_tail;

static void dnsbl__add_domain(struct dnsbl_tx *t, const char *host)
{
    char reg[256];
    if (t->ndomains >= t->d->conf.max_domains)
        return;
    if (regdom_registrable(host, reg, sizeof reg) < 0)
        return;
    for (size_t i = 0; i < t->ndomains; i++)
        if (!strcmp(t->domains[i], reg))
            return;
    memcpy(t->domains[t->ndomains++], reg, sizeof reg);
}

/* Pool thread: the ctx is ours (the hook is out), t->d is the instance's. */
static void dnsbl__work_cb(uv_work_t *w)
{
    struct dnsbl_tx *t = w->data;
    struct dnsbl_inst *d = t->d;
    const char *data;
    size_t len;
    char host[256];

    if (d->conf.check_sender) {
        const char *s = sluice_api->sender(t->ctx);
        const char *at = s ? strrchr(s, '@') : NULL;
        if (at)
            dnsbl__add_domain(t, at + 1);
    }
    if (sluice_api->message(t->ctx, &data, &len) != 0)
        return;
    struct spam_msg *m = spam_msg_parse(data, len, NULL, d->conf.max_scan);
    if (d->conf.check_sender) {
        for (size_t i = 0; i < m->nhdrs; i++) {
            if (strcasecmp(m->hdrs[i].name, "From") != 0)
                continue;
            /* The address's domain: after the last '@', up to the first
             * character a host name cannot hold ('>', blank, ...). */
            const char *at = strrchr(m->hdrs[i].raw, '@');
            size_t n = at ? strspn(at + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789.-_")
                          : 0;
            if (n && n < sizeof host) {
                memcpy(host, at + 1, n);
                host[n] = '\0';
                dnsbl__add_domain(t, host);
            }
            break;
        }
    }
    for (size_t i = 0; i < m->nuris; i++)
        if (spam_uri_host(m->uris[i], host, sizeof host) == 0)
            dnsbl__add_domain(t, host);
    spam_msg_free(m);
}

static void dnsbl__job_start(struct dnsbl_tx *t);

static unsigned dnsbl__auto_threads(void)
{
    const char *env = getenv("UV_THREADPOOL_SIZE");
    long n = env ? strtol(env, NULL, 10) : 4;
    if (n < 1)
        n = 4;
    return n > 1 ? (unsigned)(n - 1) : 1;
}

static unsigned dnsbl__max_threads(const struct dnsbl_tx *t)
{
    return t->d->conf.max_threads ? t->d->conf.max_threads : dnsbl__auto_threads();
}

static void dnsbl__after_work_cb(uv_work_t *w, int status)
{
    struct dnsbl_tx *t = w->data;
    (void)status; /* uv_cancel is never used */
    dnsbl__running--;
    struct dnsbl_tx *next = dnsbl__waiting;
    if (next && dnsbl__running < dnsbl__max_threads(next)) {
        dnsbl__waiting = next->next_waiting;
        if (!dnsbl__waiting)
            dnsbl__waiting_tail = NULL;
        dnsbl__job_start(next);
    }
    t->in_work = 0;
    if (t->freed) {
        dnsbl__tx_free(t);
        return;
    }
    struct dnsbl_inst *d = t->d;
    if (!t->expired && t->ndomains && dnsbl__batch_alloc(&t->uri, t->ndomains * d->nuri) == 0) {
        for (size_t i = 0; i < t->ndomains; i++) {
            for (size_t z = 0; z < d->lists.nzones; z++) {
                char qname[DNSBL_NAME_MAX];
                if (d->lists.zones[z].kind != DNSBL_KIND_URI)
                    continue;
                if (dnsbl_dom_qname(t->domains[i], d->lists.zones[z].name, qname, sizeof qname) < 0)
                    continue;
                dnsbl__ask(t, &t->uri, t->ctx, z, t->domains[i], qname);
            }
        }
    }
    if (t->pending == 0)
        dnsbl__finish(t);
}

static void dnsbl__job_start(struct dnsbl_tx *t)
{
    t->work.data = t;
    dnsbl__running++;
    if (uv_queue_work(dnsbl__loop, &t->work, dnsbl__work_cb, dnsbl__after_work_cb) != 0) {
        dnsbl__running--;
        t->in_work = 0;
        sluice_api->log_ctx(t->ctx, SLUICE_LOG_WARN, "cannot queue the link extraction");
        if (t->pending == 0)
            dnsbl__finish(t);
    }
}

static void dnsbl__job_run(struct dnsbl_tx *t)
{
    t->in_work = 1;
    if (dnsbl__running < dnsbl__max_threads(t) && !dnsbl__waiting) {
        dnsbl__job_start(t);
        return;
    }
    t->next_waiting = NULL;
    if (dnsbl__waiting_tail)
        dnsbl__waiting_tail->next_waiting = t;
    else
        dnsbl__waiting = t;
    dnsbl__waiting_tail = t;
}

/* ---- hooks ---------------------------------------------------------------- */

static int dnsbl__on_mail(sluice_ctx *ctx)
{
    struct dnsbl_inst *d = sluice_api->instance_data(ctx);
    if (!d || d->nip == 0)
        return SLUICE_CONTINUE;
    struct dnsbl_tx *t = dnsbl__tx_get(ctx, d);
    if (t && !t->ip_started)
        dnsbl__ask_ip(t, ctx);
    return SLUICE_CONTINUE;
}

static int dnsbl__on_data(sluice_ctx *ctx)
{
    struct dnsbl_inst *d = sluice_api->instance_data(ctx);
    if (!d || (d->nip == 0 && d->nuri == 0))
        return SLUICE_CONTINUE;
    struct dnsbl_tx *t = dnsbl__tx_get(ctx, d);
    if (!t)
        return SLUICE_ERROR;
    if (!t->ip_started && d->nip)
        dnsbl__ask_ip(t, ctx);
    if (d->nuri == 0 && t->pending == 0) {
        /* Every ip answer is in already. */
        dnsbl__symbols(t, ctx);
        return SLUICE_CONTINUE;
    }
    if (d->nuri) {
        t->domains = calloc(d->conf.max_domains, sizeof *t->domains);
        if (!t->domains)
            return SLUICE_ERROR;
    }
    dnsbl__loop = sluice_api->event_loop(ctx);
    uv_timer_init(dnsbl__loop, &t->timer);
    t->timer.data = t;
    t->timer_on = 1;
    t->ctx = ctx;
    uv_timer_start(&t->timer, dnsbl__deadline_cb, d->conf.deadline_ms, 0);
    if (d->nuri)
        dnsbl__job_run(t);
    return SLUICE_ASYNC;
}

/* ---- instance life --------------------------------------------------------- */

static void dnsbl__list_error(void *arg, const char *msg)
{
    struct dnsbl_inst *d = arg;
    sluice_api->log(d->inst, SLUICE_LOG_ERROR, "%s", msg);
    sluice_api->config_error(d->inst, "lists", "%s", msg);
}

static char *dnsbl__slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (1u << 20)) {
                free(buf);
                fclose(fp);
                errno = EFBIG;
                return NULL;
            }
            char *g = realloc(buf, cap);
            if (!g) {
                free(buf);
                fclose(fp);
                return NULL;
            }
            buf = g;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, fp);
        n += r;
        if (r == 0)
            break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void dnsbl__shutdown(void *data)
{
    struct dnsbl_inst *d = data;
    if (!d)
        return;
    dnsbl_lists_free(&d->lists);
    cidr_list_free(&d->skip);
    free(d);
}

static int dnsbl__init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, dns_cancel) || !SLUICE_API_HAS(api, config_load)) {
        api->config_error(inst, NULL, "needs a sluice with the host resolver (dns_query)");
        return -1;
    }
    struct dnsbl_inst *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    d->inst = inst;
    int bad = SLUICE_CONFIG_LOAD(api, inst, dnsbl__keys, &d->conf, SLUICE_CONFIG_STRICT) != 0;
    char err[256];
    if (!bad && cidr_list_parse(d->conf.skip_networks, 0, &d->skip, err, sizeof err) < 0) {
        api->config_error(inst, "skip_networks", "%s", err);
        bad = 1;
    }
    if (!bad && d->conf.dns_servers &&
        dnsbl_servers_valid(d->conf.dns_servers, err, sizeof err) < 0) {
        api->config_error(inst, "dns_servers", "%s", err);
        bad = 1;
    }
    if (!bad) {
        size_t len;
        char *text = dnsbl__slurp(d->conf.lists, &len);
        if (!text) {
            api->config_error(inst, "lists", "cannot read %s: %s", d->conf.lists, strerror(errno));
            bad = 1;
        } else {
            bad = dnsbl_lists_parse(text, len, d->conf.lists, &d->lists, dnsbl__list_error, d) != 0;
            free(text);
        }
    }
    if (!bad && regdom_init() < 0) {
        api->config_error(inst, NULL, "libpsl has no public suffix list");
        bad = 1;
    }
    if (bad) {
        dnsbl__shutdown(d);
        return -1;
    }
    for (size_t z = 0; z < d->lists.nzones; z++) {
        if (d->lists.zones[z].kind == DNSBL_KIND_IP)
            d->nip++;
        else
            d->nuri++;
    }
    if (d->nuri)
        spam_msg_global_init();
    d->c_lookups = api->counter_new(inst, "lookups", "DNS list lookups by result", "result", 4);
    d->c_listed = api->counter_new(inst, "listed", "Messages listed, by symbol", "symbol",
                                   (unsigned)d->lists.nentries + 1);
    api->log(inst, SLUICE_LOG_INFO, "%zu lists (%zu ip, %zu uri), %zu symbols from %s",
             d->lists.nzones, d->nip, d->nuri, d->lists.nentries, d->conf.lists);
    *data = d;
    return 0;
}

SLUICE_PLUGIN_DEFINE(.name = "dnsbl", .version = "1.0",
                     .description = "DNS block and allow lists for client addresses and links",
                     .init = dnsbl__init, .shutdown = dnsbl__shutdown, .on_mail = dnsbl__on_mail,
                     .on_data = dnsbl__on_data);
