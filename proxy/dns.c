/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dns: see dns.h.
 *
 * Ownership: the module owns its channels; a channel owns its c-ares
 * channel, socket watchers, timer, cache, wait queue and in-flight query
 * records (struct dns__q, the argument c-ares hands back). A request
 * (struct dns_req) belongs to the module from dns_query() until its
 * callback has run or dns_cancel() freed it; while it waits it sits on
 * the channel's queue, while on the network it is one of its dns__q's
 * waiters. Requests for a (type, name) already on the network join that
 * query instead of sending another (twelve connections from one address
 * make one PTR query). A dns__q outlives its requests when they timed out
 * or were cancelled (no waiters left): c-ares always calls back once per
 * query, and only then is the dns__q freed and its slot given back.
 */
#include "dns.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>
#include <arpa/nameser.h>
#include <uv.h>

#include "defer.h"
#include "dns_parse.h"
#include "log.h"
#include "stats.h"
#include "xalloc.h"

#define DNS__NEG_TTL 60 /* NXDOMAIN / NODATA kept at most this long */
#define DNS__MAX_TTL 3600
#define DNS__NAME_MAX 254

struct dns__chan;

struct dns__sock {
    struct dns__sock *next;
    struct dns__chan *chan;
    ares_socket_t fd;
    uv_poll_t poll;
};

struct dns__q {
    struct dns__q *prev, *next; /* the channel's queries on the network */
    struct dns__chan *chan;
    struct dns_req *waiters; /* requests waiting for the answer; none once they went away */
    int type;                /* cache key type (DNS__HOST marks the hosts-file path) */
    char name[DNS__NAME_MAX + 1];
};

/* The client-name path asks c-ares' host functions (ares_gethostbyaddr,
 * ares_gethostbyname), which read /etc/hosts before DNS, like
 * getnameinfo(); their answers are cached under type | DNS__HOST. */
#define DNS__HOST 0x10000
#define DNS__HOST_TTL 300

enum dns__rstate { DNS__QUEUED, DNS__INFLIGHT, DNS__DONE };

struct dns_req {
    struct defer_ev ev;          /* delivery; first member */
    struct dns_req *prev, *next; /* on the channel's queue or inflight list */
    struct dns__chan *chan;
    struct dns__q *q;              /* DNS__INFLIGHT: the query it waits for */
    struct dns_req *wprev, *wnext; /* on q->waiters */
    enum dns__rstate state;
    int type;                  /* DNS_T_*, | DNS__HOST for the host functions */
    int family;                /* DNS__HOST: AF_INET or AF_INET6 */
    unsigned char addr[16];    /* DNS__HOST with DNS_T_PTR: the address */
    uint64_t deadline;         /* uv_now() ms */
    struct dns_cache_val *ans; /* DNS__DONE; owned */
    dns_cb cb;
    void *ud;
    char name[DNS__NAME_MAX + 1];
};

struct dns__list {
    struct dns_req *head, *tail;
    unsigned n;
};

struct dns__chan {
    char key[DNS_SERVERS_MAX]; /* canonical server list; "" = default */
    ares_channel ch;
    bool ch_ok;
    uv_timer_t timer;
    struct dns__sock *socks;
    struct dns_cache *cache;
    struct dns__list queue, inflight;
    unsigned nq;       /* dns__q records alive (network slots in use) */
    struct dns__q *qs; /* those records */
    struct defer_ev pump_ev;
};

static struct {
    bool started;
    pthread_t thread; /* the loop's */
    uv_loop_t *loop;
    struct dns_conf conf;
    struct dns__chan *chans[DNS_MAX_CHANNELS];
    size_t nchans;
} dns__g;

/* ---- lists ---------------------------------------------------------------------------- */

static void dns__list_add(struct dns__list *l, struct dns_req *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->n++;
}

static void dns__list_del(struct dns__list *l, struct dns_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->n--;
}

static void dns__q_attach(struct dns__q *q, struct dns_req *r)
{
    r->q = q;
    r->wprev = NULL;
    r->wnext = q->waiters;
    if (q->waiters)
        q->waiters->wprev = r;
    q->waiters = r;
}

static void dns__q_detach(struct dns_req *r)
{
    struct dns__q *q = r->q;
    if (!q)
        return;
    if (r->wprev)
        r->wprev->wnext = r->wnext;
    else
        q->waiters = r->wnext;
    if (r->wnext)
        r->wnext->wprev = r->wprev;
    r->wprev = r->wnext = NULL;
    r->q = NULL;
}

/* ---- delivery ------------------------------------------------------------------------- */

static void dns__deliver(struct defer_ev *ev)
{
    struct dns_req *r = (struct dns_req *)ev; /* ev is the first member */
    r->cb(r->ud, r->ans);
    free(r->ans);
    free(r);
}

static void dns__arm(struct dns__chan *c);

/* The request's answer is ans (owned): off the lists, to the caller from
 * the loop. */
static void dns__finish(struct dns_req *r, struct dns_cache_val *ans)
{
    struct dns__chan *c = r->chan;
    if (r->state == DNS__QUEUED)
        dns__list_del(&c->queue, r);
    else if (r->state == DNS__INFLIGHT) {
        dns__list_del(&c->inflight, r);
        dns__q_detach(r);
    }
    r->state = DNS__DONE;
    r->ans = ans;
    defer_post(&r->ev, dns__deliver);
}

static struct dns_cache_val *dns__status(int st)
{
    return dns_cache_val_new(st, NULL, 0, 0);
}

/* ---- c-ares answers -------------------------------------------------------------------- */

/* A successful answer into a value for type; NODATA when no record. */
static struct dns_cache_val *dns__parse(int type, const unsigned char *abuf, int alen)
{
    uint32_t ttl = dns_parse_answer_ttl(abuf, (size_t)alen);
    struct dns_cache_val *v = NULL;
    if (type == DNS_T_TXT) {
        struct ares_txt_ext *txt = NULL;
        int rc = ares_parse_txt_reply_ext(abuf, alen, &txt);
        if (rc == ARES_ENODATA)
            return dns__status(DNS_NODATA);
        if (rc != ARES_SUCCESS)
            return dns__status(DNS_BADREPLY);
        /* Records are sequences of strings; record_start marks the first. */
        char *rec[64];
        unsigned n = 0;
        size_t cur = 0, cap = 0;
        char *buf = NULL;
        for (struct ares_txt_ext *t = txt; t; t = t->next) {
            if (t->record_start) {
                if (buf && n < 64)
                    rec[n++] = buf;
                else
                    free(buf);
                buf = NULL;
                cur = cap = 0;
            }
            buf = xgrow(buf, &cap, cur + t->length + 1, 1, 256);
            if (t->length) /* an empty string may come with txt == NULL */
                memcpy(buf + cur, t->txt, t->length);
            cur += t->length;
            buf[cur] = '\0';
        }
        if (buf && n < 64)
            rec[n++] = buf;
        else
            free(buf);
        ares_free_data(txt);
        v = n ? dns_cache_val_new(DNS_OK, (const char *const *)rec, n, ttl)
              : dns__status(DNS_NODATA);
        for (unsigned i = 0; i < n; i++)
            free(rec[i]);
        return v;
    }
    if (type == DNS_T_MX) {
        /* "PREFERENCE HOST" per record, in the answer's order. */
        struct ares_mx_reply *mx = NULL;
        int rc = ares_parse_mx_reply(abuf, alen, &mx);
        if (rc == ARES_ENODATA)
            return dns__status(DNS_NODATA);
        if (rc != ARES_SUCCESS)
            return dns__status(DNS_BADREPLY);
        char text[32][300];
        const char *rec[32];
        unsigned n = 0;
        for (struct ares_mx_reply *m = mx; m && n < 32; m = m->next) {
            int len = snprintf(text[n], sizeof text[n], "%u %s", (unsigned)m->priority, m->host);
            if (len < 0 || (size_t)len >= sizeof text[n])
                continue;
            rec[n] = text[n];
            n++;
        }
        ares_free_data(mx);
        return n ? dns_cache_val_new(DNS_OK, rec, n, ttl) : dns__status(DNS_NODATA);
    }
    struct hostent *h = NULL;
    int rc;
    if (type == DNS_T_PTR) {
        unsigned char dummy[4] = {0};
        rc = ares_parse_ptr_reply(abuf, alen, dummy, sizeof dummy, AF_INET, &h);
    } else if (type == DNS_T_A) {
        rc = ares_parse_a_reply(abuf, alen, &h, NULL, NULL);
    } else {
        rc = ares_parse_aaaa_reply(abuf, alen, &h, NULL, NULL);
    }
    if (rc == ARES_ENODATA)
        return dns__status(DNS_NODATA);
    if (rc != ARES_SUCCESS || !h)
        return dns__status(DNS_BADREPLY);
    const char *rec[32];
    char text[32][INET6_ADDRSTRLEN];
    unsigned n = 0;
    if (type == DNS_T_PTR) {
        if (h->h_name)
            rec[n++] = h->h_name;
        for (char **a = h->h_aliases; a && *a && n < 32; a++)
            rec[n++] = *a;
    } else {
        for (char **a = h->h_addr_list; a && *a && n < 32; a++) {
            if (!inet_ntop(type == DNS_T_A ? AF_INET : AF_INET6, *a, text[n], sizeof text[n]))
                continue;
            rec[n] = text[n];
            n++;
        }
    }
    v = n ? dns_cache_val_new(DNS_OK, rec, n, ttl) : dns__status(DNS_NODATA);
    ares_free_hostent(h);
    return v;
}

static void dns__pump_ev(struct defer_ev *ev);

/* c-ares is done with q (v: its outcome, owned; NULL at shutdown). */
static void dns__q_done(struct dns__q *q, struct dns_cache_val *v)
{
    struct dns__chan *c = q->chan;
    c->nq--;
    if (q->prev)
        q->prev->next = q->next;
    else
        c->qs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    if (!v) {
        while (q->waiters) /* only at shutdown; callers are not told */
            dns__q_detach(q->waiters);
        free(q);
        return;
    }
    uint64_t now = uv_now(dns__g.loop);
    if (v->status == DNS_OK)
        dns_cache_put(c->cache, q->type, q->name, v, v->ttl, now);
    else if (v->status == DNS_NOTFOUND || v->status == DNS_NODATA)
        dns_cache_put(c->cache, q->type, q->name, v, DNS__NEG_TTL, now);
    while (q->waiters) {
        struct dns_req *r = q->waiters;
        bool last = r->wnext == NULL;
        if (v->status == DNS_TIMEOUT)
            stats_dns(STATS_DNS_TIMEOUT);
        else if (v->status == DNS_TEMPFAIL || v->status == DNS_BADREPLY)
            stats_dns(STATS_DNS_FAILURE);
        /* Each waiter gets its own copy; the last one takes v. */
        dns__finish(r, last ? v : dns_cache_val_dup(v));
        if (last)
            v = NULL;
    }
    free(v);
    free(q);
    /* A slot is free: start waiting work from the loop, not from inside
     * ares_process_fd(). */
    if (c->queue.n)
        defer_post(&c->pump_ev, dns__pump_ev);
}

/* A c-ares status other than success into a value (NULL: shutdown). */
static struct dns_cache_val *dns__ares_status(int status)
{
    switch (status) {
    case ARES_EDESTRUCTION:
    case ARES_ECANCELLED:
        return NULL;
    case ARES_ENOTFOUND:
        return dns__status(DNS_NOTFOUND);
    case ARES_ENODATA:
        return dns__status(DNS_NODATA);
    case ARES_ETIMEOUT:
        return dns__status(DNS_TIMEOUT);
    case ARES_EBADRESP:
        return dns__status(DNS_BADREPLY);
    default:
        return dns__status(DNS_TEMPFAIL);
    }
}

static void dns__answer_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct dns__q *q = arg;
    dns__q_done(q, status == ARES_SUCCESS ? dns__parse(q->type, abuf, alen)
                                          : dns__ares_status(status));
}

static void dns__host_cb(void *arg, int status, int timeouts, struct hostent *h)
{
    (void)timeouts;
    struct dns__q *q = arg;
    if (status != ARES_SUCCESS || !h) {
        dns__q_done(q, dns__ares_status(status == ARES_SUCCESS ? ARES_ENODATA : status));
        return;
    }
    const char *rec[32];
    char text[32][INET6_ADDRSTRLEN];
    unsigned n = 0;
    if ((q->type & ~DNS__HOST) == DNS_T_PTR) {
        if (h->h_name)
            rec[n++] = h->h_name;
    } else {
        for (char **a = h->h_addr_list; a && *a && n < 32; a++) {
            if (!inet_ntop(h->h_addrtype, *a, text[n], sizeof text[n]))
                continue;
            rec[n] = text[n];
            n++;
        }
    }
    dns__q_done(q, n ? dns_cache_val_new(DNS_OK, rec, n, DNS__HOST_TTL) : dns__status(DNS_NODATA));
}

/* ---- sockets and the timer -------------------------------------------------------------- */

static void dns__sock_close_cb(uv_handle_t *h)
{
    free(h->data);
}

static void dns__poll_cb(uv_poll_t *p, int status, int events)
{
    struct dns__sock *s = p->data;
    struct dns__chan *c = s->chan;
    ares_socket_t fd = s->fd;
    bool rd = status < 0 || (events & UV_READABLE);
    bool wr = status < 0 || (events & UV_WRITABLE);
    /* s may be closed by the state callback inside. */
    ares_process_fd(c->ch, rd ? fd : ARES_SOCKET_BAD, wr ? fd : ARES_SOCKET_BAD);
    dns__arm(c);
}

static void dns__sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns__chan *c = data;
    struct dns__sock **pp = &c->socks, *s;
    for (; (s = *pp); pp = &s->next)
        if (s->fd == fd)
            break;
    if (!readable && !writable) {
        if (s) {
            *pp = s->next;
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, dns__sock_close_cb);
        }
        return;
    }
    if (!s) {
        s = xcalloc(1, sizeof *s);
        s->chan = c;
        s->fd = fd;
        if (uv_poll_init_socket(dns__g.loop, &s->poll, fd) != 0) {
            log_error("dns: cannot watch socket %d", (int)fd);
            free(s);
            return;
        }
        s->poll.data = s;
        uv_unref((uv_handle_t *)&s->poll);
        s->next = c->socks;
        c->socks = s;
    }
    uv_poll_start(&s->poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
                  dns__poll_cb);
}

/* Requests whose deadline passed get DNS_TIMEOUT now. */
static void dns__expire(struct dns__chan *c, uint64_t now)
{
    struct dns__list *lists[2] = {&c->queue, &c->inflight};
    for (int i = 0; i < 2; i++) {
        struct dns_req *r = lists[i]->head, *next;
        for (; r; r = next) {
            next = r->next;
            if (r->deadline <= now) {
                stats_dns(STATS_DNS_TIMEOUT);
                dns__finish(r, dns__status(DNS_TIMEOUT));
            }
        }
    }
}

static void dns__timer_cb(uv_timer_t *t)
{
    struct dns__chan *c = t->data;
    ares_process_fd(c->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* c-ares' own timeouts */
    dns__expire(c, uv_now(dns__g.loop));
    dns__arm(c);
}

/* The timer at the earliest of c-ares' next timeout and the requests'
 * deadlines; stopped when nothing waits. */
static void dns__arm(struct dns__chan *c)
{
    uint64_t now = uv_now(dns__g.loop), due = UINT64_MAX;
    struct timeval tv, *tvp = c->nq ? ares_timeout(c->ch, NULL, &tv) : NULL;
    if (tvp)
        due = now + (uint64_t)tvp->tv_sec * 1000 + (uint64_t)(tvp->tv_usec + 999) / 1000;
    struct dns__list *lists[2] = {&c->queue, &c->inflight};
    for (int i = 0; i < 2; i++)
        for (struct dns_req *r = lists[i]->head; r; r = r->next)
            if (r->deadline < due)
                due = r->deadline;
    if (due == UINT64_MAX) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, dns__timer_cb, due > now ? due - now : 0, 0);
}

/* ---- channels ------------------------------------------------------------------------- */

/* r joins a query for the same (type, name) already on the network;
 * false when there is none. */
static bool dns__join(struct dns__chan *c, struct dns_req *r)
{
    struct dns__q *q = c->qs;
    for (; q; q = q->next)
        if (q->type == r->type && strcasecmp(q->name, r->name) == 0)
            break;
    if (!q)
        return false;
    stats_dns(STATS_DNS_JOINED);
    dns__q_attach(q, r);
    r->state = DNS__INFLIGHT;
    dns__list_add(&c->inflight, r);
    return true;
}

static void dns__send(struct dns__chan *c, struct dns_req *r)
{
    struct dns__q *q = xcalloc(1, sizeof *q);
    q->chan = c;
    q->type = r->type;
    memcpy(q->name, r->name, sizeof q->name);
    q->next = c->qs;
    if (c->qs)
        c->qs->prev = q;
    c->qs = q;
    dns__q_attach(q, r);
    r->state = DNS__INFLIGHT;
    dns__list_add(&c->inflight, r);
    c->nq++;
    stats_dns(STATS_DNS_QUERY);
    /* These may call back at once (say, no usable server, or a hosts
     * file hit); that only posts the delivery. */
    if (!(r->type & DNS__HOST))
        ares_query(c->ch, r->name, ns_c_in, r->type, dns__answer_cb, q);
    else if ((r->type & ~DNS__HOST) == DNS_T_PTR)
        ares_gethostbyaddr(c->ch, r->addr, r->family == AF_INET ? 4 : 16, r->family, dns__host_cb,
                           q);
    else
        ares_gethostbyname(c->ch, r->name, r->family, dns__host_cb, q);
}

static void dns__pump(struct dns__chan *c)
{
    while (c->queue.n && c->nq < dns__g.conf.max_inflight) {
        struct dns_req *r = c->queue.head;
        dns__list_del(&c->queue, r);
        if (!dns__join(c, r))
            dns__send(c, r);
    }
    dns__arm(c);
}

static void dns__pump_ev(struct defer_ev *ev)
{
    struct dns__chan *c = (struct dns__chan *)((char *)ev - offsetof(struct dns__chan, pump_ev));
    dns__pump(c);
}

static struct dns__chan *dns__chan_new(const char *csv, char *err, size_t errlen)
{
    struct dns__chan *c = xcalloc(1, sizeof *c);
    snprintf(c->key, sizeof c->key, "%s", csv ? csv : "");
    struct ares_options o = {0};
    unsigned try_ms = dns__g.conf.timeout_ms / 2;
    o.sock_state_cb = dns__sock_state_cb;
    o.sock_state_cb_data = c;
    o.timeout = (int)(try_ms < 100 ? 100 : try_ms);
    o.tries = 2;
    o.flags = ARES_FLAG_EDNS | ARES_FLAG_NOSEARCH;
    o.ednspsz = 1232;
    o.lookups = (char *)"fb"; /* /etc/hosts, then DNS (host functions only) */
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS |
               ARES_OPT_EDNSPSZ | ARES_OPT_LOOKUPS;
    int rc = ares_init_options(&c->ch, &o, mask);
    if (rc == ARES_SUCCESS && csv)
        rc = ares_set_servers_ports_csv(c->ch, csv);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        if (c->ch)
            ares_destroy(c->ch);
        free(c);
        return NULL;
    }
    c->ch_ok = true;
    uv_timer_init(dns__g.loop, &c->timer);
    c->timer.data = c;
    uv_unref((uv_handle_t *)&c->timer);
    c->cache = dns_cache_new(dns__g.conf.cache_size, DNS__MAX_TTL);
    return c;
}

static void dns__chan_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void dns__chan_free(struct dns__chan *c)
{
    /* Requests still open are dropped without callbacks. */
    struct dns__list *lists[2] = {&c->queue, &c->inflight};
    for (int i = 0; i < 2; i++) {
        while (lists[i]->head) {
            struct dns_req *r = lists[i]->head;
            dns__list_del(lists[i], r);
            dns__q_detach(r);
            free(r);
        }
    }
    defer_cancel(&c->pump_ev);
    ares_destroy(c->ch); /* dns__answer_cb(ARES_EDESTRUCTION) frees the dns__q records */
    while (c->socks) {   /* normally closed by the destroy already */
        struct dns__sock *s = c->socks;
        c->socks = s->next;
        uv_close((uv_handle_t *)&s->poll, dns__sock_close_cb);
    }
    dns_cache_free(c->cache);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, dns__chan_timer_closed);
}

static struct dns__chan *dns__chan_get(const char *servers)
{
    if (!servers)
        return dns__g.chans[0];
    char csv[DNS_SERVERS_MAX], err[200];
    if (dns_parse_servers(servers, csv, sizeof csv, err, sizeof err) != 0)
        return NULL;
    for (size_t i = 0; i < dns__g.nchans; i++)
        if (strcmp(dns__g.chans[i]->key, csv) == 0)
            return dns__g.chans[i];
    if (dns__g.nchans == DNS_MAX_CHANNELS) {
        static bool warned; /* once: this would repeat for every lookup */
        if (!warned)
            log_warn("dns: more than %d server lists in use; lookups with %s (and any other new "
                     "list) fail until a restart",
                     DNS_MAX_CHANNELS, csv);
        warned = true;
        return NULL;
    }
    struct dns__chan *c = dns__chan_new(csv, err, sizeof err);
    if (!c) {
        log_warn("dns: servers %s: %s", csv, err);
        return NULL;
    }
    dns__g.chans[dns__g.nchans++] = c;
    return c;
}

int dns_init(uv_loop_t *loop, const struct dns_conf *conf, char *err, size_t errlen)
{
    if (dns__g.started)
        return 0;
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        return -1;
    }
    dns__g.loop = loop;
    dns__g.thread = pthread_self();
    dns__g.conf = *conf;
    dns__g.conf.servers = NULL;
    if (dns__g.conf.timeout_ms == 0)
        dns__g.conf.timeout_ms = 2000;
    if (dns__g.conf.max_inflight == 0)
        dns__g.conf.max_inflight = 1;
    char csv[DNS_SERVERS_MAX];
    if (conf->servers && dns_parse_servers(conf->servers, csv, sizeof csv, err, errlen) != 0) {
        ares_library_cleanup();
        return -1;
    }
    /* The default channel keeps the key "" so that a plugin naming the
     * same list gets a channel of its own (harmless) rather than a clash. */
    struct dns__chan *c = dns__chan_new(conf->servers ? csv : NULL, err, errlen);
    if (!c) {
        ares_library_cleanup();
        return -1;
    }
    c->key[0] = '\0';
    dns__g.chans[0] = c;
    dns__g.nchans = 1;
    dns__g.started = true;
    return 0;
}

bool dns_on_loop_thread(void)
{
    return dns__g.started && pthread_equal(dns__g.thread, pthread_self());
}

void dns_shutdown(void)
{
    if (!dns__g.started)
        return;
    for (size_t i = 0; i < dns__g.nchans; i++)
        dns__chan_free(dns__g.chans[i]);
    dns__g.nchans = 0;
    dns__g.started = false;
    ares_library_cleanup();
}

struct dns_name_req {
    struct dns_req *q; /* the step in progress */
    int family;
    unsigned char addr[sizeof(struct in6_addr)];
    uint64_t deadline;
    char name[DNS__NAME_MAX + 1];
    dns_name_cb cb;
    void *ud;
};

static void dns__host_fill(struct dns_req *r, const struct dns_name_req *nr)
{
    r->family = nr->family;
    memcpy(r->addr, nr->addr, sizeof r->addr);
}

static bool dns__name_ok(const char *name)
{
    size_t l = strlen(name);
    if (l == 0 || l > DNS__NAME_MAX - 1)
        return false;
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return false;
    return true;
}

/* A request; host: through the host functions (family, addr for PTR). */
static struct dns_req *dns__query(int type, const char *name, const char *servers,
                                  unsigned timeout_ms, const struct dns_name_req *host, dns_cb cb,
                                  void *ud);

struct dns_req *dns_query(int type, const char *name, const char *servers, unsigned timeout_ms,
                          dns_cb cb, void *ud)
{
    return dns__query(type, name, servers, timeout_ms, NULL, cb, ud);
}

static struct dns_req *dns__query(int type, const char *name, const char *servers,
                                  unsigned timeout_ms, const struct dns_name_req *host, dns_cb cb,
                                  void *ud)
{
    if (!dns__g.started || !name || !cb || !dns__name_ok(name))
        return NULL;
    if (type != DNS_T_A && type != DNS_T_AAAA && type != DNS_T_PTR && type != DNS_T_TXT &&
        type != DNS_T_MX)
        return NULL;
    struct dns__chan *c = dns__chan_get(servers);
    if (!c)
        return NULL;
    struct dns_req *r = xcalloc(1, sizeof *r);
    r->chan = c;
    r->type = type;
    if (host) {
        r->type |= DNS__HOST;
        dns__host_fill(r, host);
    }
    r->cb = cb;
    r->ud = ud;
    snprintf(r->name, sizeof r->name, "%s", name);
    uint64_t now = uv_now(dns__g.loop);
    r->deadline = now + (timeout_ms ? timeout_ms : dns__g.conf.timeout_ms);
    r->state = DNS__QUEUED;

    struct dns_cache_val *hit = dns_cache_get(c->cache, r->type, r->name, now);
    if (hit) {
        stats_dns(STATS_DNS_CACHE_HIT);
        r->state = DNS__DONE;
        r->ans = hit;
        defer_post(&r->ev, dns__deliver);
        return r;
    }
    if (dns__join(c, r)) {
        /* the answer of the query already on the network will do */
    } else if (!c->queue.n && c->nq < dns__g.conf.max_inflight) {
        dns__send(c, r);
    } else if (c->queue.n < dns__g.conf.max_queued) {
        dns__list_add(&c->queue, r);
    } else {
        stats_dns(STATS_DNS_DROPPED);
        r->state = DNS__DONE;
        r->ans = dns__status(DNS_TEMPFAIL);
        defer_post(&r->ev, dns__deliver);
        return r;
    }
    dns__arm(c);
    return r;
}

void dns_cancel(struct dns_req *r)
{
    if (!r)
        return;
    if (r->state == DNS__DONE) {
        defer_cancel(&r->ev);
    } else {
        struct dns__chan *c = r->chan;
        stats_dns(STATS_DNS_CANCELLED);
        if (r->state == DNS__QUEUED) {
            dns__list_del(&c->queue, r);
        } else {
            dns__list_del(&c->inflight, r);
            dns__q_detach(r);
        }
        dns__arm(c);
    }
    free(r->ans);
    free(r);
}

/* ---- the client's name ------------------------------------------------------------------ */

static void dns__name_done(struct dns_name_req *nr, const char *name)
{
    nr->cb(nr->ud, name);
    free(nr);
}

static void dns__name_fwd_cb(void *ud, const struct dns_cache_val *ans)
{
    struct dns_name_req *nr = ud;
    nr->q = NULL;
    for (unsigned i = 0; ans->status == DNS_OK && i < ans->n; i++) {
        unsigned char a[sizeof(struct in6_addr)];
        size_t al = nr->family == AF_INET ? 4 : 16;
        if (inet_pton(nr->family, ans->rr[i], a) == 1 && memcmp(a, nr->addr, al) == 0) {
            dns__name_done(nr, nr->name);
            return;
        }
    }
    dns__name_done(nr, NULL);
}

static void dns__name_ptr_cb(void *ud, const struct dns_cache_val *ans)
{
    struct dns_name_req *nr = ud;
    nr->q = NULL;
    uint64_t now = uv_now(dns__g.loop);
    if (ans->status != DNS_OK || ans->n == 0 || now >= nr->deadline ||
        strlen(ans->rr[0]) >= sizeof nr->name) {
        dns__name_done(nr, NULL);
        return;
    }
    snprintf(nr->name, sizeof nr->name, "%s", ans->rr[0]);
    /* From a deferred callback: a clean stack, so answering directly is fine. */
    nr->q = dns__query(nr->family == AF_INET ? DNS_T_A : DNS_T_AAAA, nr->name, NULL,
                       (unsigned)(nr->deadline - now), nr, dns__name_fwd_cb, nr);
    if (!nr->q)
        dns__name_done(nr, NULL);
}

struct dns_name_req *dns_client_name(const struct sockaddr *sa, unsigned timeout_ms, dns_name_cb cb,
                                     void *ud)
{
    char ptr[80];
    struct sockaddr_in v4;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        /* ::ffff:192.0.2.1 (a dual-stack listener): the IPv4 name. */
        memset(&v4, 0, sizeof v4);
        v4.sin_family = AF_INET;
        memcpy(&v4.sin_addr, s6->sin6_addr.s6_addr + 12, 4);
        sa = (const struct sockaddr *)&v4;
    }
    if (!dns__g.started || dns_parse_ptr_name(sa, ptr, sizeof ptr) != 0)
        return NULL;
    struct dns_name_req *nr = xcalloc(1, sizeof *nr);
    nr->family = sa->sa_family;
    if (sa->sa_family == AF_INET)
        memcpy(nr->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    else
        memcpy(nr->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    if (!timeout_ms)
        timeout_ms = dns__g.conf.timeout_ms;
    nr->deadline = uv_now(dns__g.loop) + timeout_ms;
    nr->cb = cb;
    nr->ud = ud;
    nr->q = dns__query(DNS_T_PTR, ptr, NULL, timeout_ms, nr, dns__name_ptr_cb, nr);
    if (!nr->q) {
        free(nr);
        return NULL;
    }
    return nr;
}

void dns_name_cancel(struct dns_name_req *nr)
{
    if (!nr)
        return;
    dns_cancel(nr->q);
    free(nr);
}
