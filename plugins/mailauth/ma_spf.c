/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ma_spf: SPF through libspf2 with a DNS layer that answers from a table
 * (see ma_spf.h for the rounds).
 */
#include "ma_spf.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>

/* ---- the table ----------------------------------------------------------- */

struct ma__entry {
    char *name; /* owned, lower case, no trailing dot */
    int type;
    enum ma_dns_status st;
    char **recs; /* owned */
    size_t n;
};

struct ma_dns {
    struct ma__entry *v; /* owned */
    size_t n, cap;
    bool full; /* an evaluation wanted a name the table had no room for */
};

struct ma_dns *ma_dns_new(void)
{
    return calloc(1, sizeof(struct ma_dns));
}

static void ma__entry_clear(struct ma__entry *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->recs[i]);
    free(e->recs);
    e->recs = NULL;
    e->n = 0;
}

void ma_dns_free(struct ma_dns *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        ma__entry_clear(&t->v[i]);
        free(t->v[i].name);
    }
    free(t->v);
    free(t);
}

static void ma__norm(const char *name, char *out, size_t outsz)
{
    size_t n = 0;
    for (; name[n] && n + 1 < outsz; n++)
        out[n] = (char)tolower((unsigned char)name[n]);
    out[n] = '\0';
    if (n && out[n - 1] == '.')
        out[n - 1] = '\0';
}

static struct ma__entry *ma__find(struct ma_dns *t, const char *norm, int type)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].type == type && !strcmp(t->v[i].name, norm))
            return &t->v[i];
    return NULL;
}

static struct ma__entry *ma__add(struct ma_dns *t, const char *norm, int type)
{
    if (t->n == MA_DNS_MAX_NAMES)
        return NULL;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct ma__entry *v = realloc(t->v, cap * sizeof *v);
        if (!v)
            return NULL;
        t->v = v;
        t->cap = cap;
    }
    struct ma__entry *e = &t->v[t->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(norm);
    if (!e->name)
        return NULL;
    e->type = type;
    e->st = MA_DNS_WANTED;
    t->n++;
    return e;
}

int ma_dns_put(struct ma_dns *t, const char *name, int type, enum ma_dns_status st,
               const char *const *recs, size_t n)
{
    char norm[256];
    ma__norm(name, norm, sizeof norm);
    struct ma__entry *e = ma__find(t, norm, type);
    if (!e && !(e = ma__add(t, norm, type)))
        return -1;
    ma__entry_clear(e);
    e->st = st;
    if (st != MA_DNS_FOUND || n == 0) {
        if (st == MA_DNS_FOUND)
            e->st = MA_DNS_NODATA;
        return 0;
    }
    e->recs = calloc(n, sizeof *e->recs);
    if (!e->recs) {
        e->st = MA_DNS_TEMPFAIL;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        e->recs[i] = strdup(recs[i] ? recs[i] : "");
        if (!e->recs[i]) {
            ma__entry_clear(e);
            e->st = MA_DNS_TEMPFAIL;
            return -1;
        }
        e->n++;
    }
    return 0;
}

int ma_dns_wanted(const struct ma_dns *t, size_t *i, const char **name, int *type)
{
    for (; *i < t->n; (*i)++) {
        if (t->v[*i].st == MA_DNS_WANTED) {
            *name = t->v[*i].name;
            *type = t->v[*i].type;
            (*i)++;
            return 1;
        }
    }
    return 0;
}

size_t ma_dns_count(const struct ma_dns *t)
{
    return t->n;
}

/* ---- the libspf2 DNS layer ----------------------------------------------------- */

struct ma_spf {
    SPF_server_t *server;
    SPF_dns_server_t layer; /* ours; hook = the table of the running evaluation */
    int wanted;             /* names the running evaluation added as WANTED */
};

static SPF_dns_rr_t *ma__rr_status(SPF_dns_server_t *layer, const char *domain, ns_type type,
                                   SPF_dns_stat_t herrno)
{
    return SPF_dns_rr_new_init(layer, domain, type, 0, herrno);
}

static SPF_dns_rr_t *ma__lookup(SPF_dns_server_t *layer, const char *domain, ns_type type,
                                int should_cache)
{
    struct ma_spf *s = (struct ma_spf *)((char *)layer - offsetof(struct ma_spf, layer));
    struct ma_dns *t = layer->hook;
    char norm[256];
    (void)should_cache;

    if (!domain || strlen(domain) > 253)
        return ma__rr_status(layer, domain ? domain : "", type, HOST_NOT_FOUND);
    if (type != ns_t_a && type != ns_t_aaaa && type != ns_t_mx && type != ns_t_txt &&
        type != ns_t_ptr)
        return ma__rr_status(layer, domain, type, NO_DATA); /* type 99 (SPF): gone, RFC 7208 */
    ma__norm(domain, norm, sizeof norm);
    struct ma__entry *e = ma__find(t, norm, (int)type);
    if (!e) {
        /* Not known yet: written down, and "not found" for this round so
         * the evaluation goes on and shows what else it needs. */
        if (ma__add(t, norm, (int)type))
            s->wanted++;
        else
            t->full = true;
        return ma__rr_status(layer, domain, type, HOST_NOT_FOUND);
    }
    switch (e->st) {
    case MA_DNS_WANTED:
        s->wanted++;
        return ma__rr_status(layer, domain, type, HOST_NOT_FOUND);
    case MA_DNS_NOTFOUND:
        return ma__rr_status(layer, domain, type, HOST_NOT_FOUND);
    case MA_DNS_NODATA:
        return ma__rr_status(layer, domain, type, NO_DATA);
    case MA_DNS_TEMPFAIL:
        return ma__rr_status(layer, domain, type, TRY_AGAIN);
    case MA_DNS_FOUND:
        break;
    }
    SPF_dns_rr_t *rr = ma__rr_status(layer, domain, type, NETDB_SUCCESS);
    if (!rr)
        return NULL;
    int cnt = 0;
    for (size_t i = 0; i < e->n; i++) {
        const char *rec = e->recs[i];
        switch (type) {
        case ns_t_a:
            if (SPF_dns_rr_buf_realloc(rr, cnt, sizeof rr->rr[cnt]->a) != SPF_E_SUCCESS ||
                inet_pton(AF_INET, rec, &rr->rr[cnt]->a) != 1)
                continue;
            break;
        case ns_t_aaaa:
            if (SPF_dns_rr_buf_realloc(rr, cnt, sizeof rr->rr[cnt]->aaaa) != SPF_E_SUCCESS ||
                inet_pton(AF_INET6, rec, &rr->rr[cnt]->aaaa) != 1)
                continue;
            break;
        case ns_t_mx:
            /* "PREF HOST": libspf2 wants the host only. */
            while (isdigit((unsigned char)*rec))
                rec++;
            while (*rec == ' ')
                rec++;
            __attribute__((fallthrough));
        case ns_t_txt:
        case ns_t_ptr:
            if (SPF_dns_rr_buf_realloc(rr, cnt, strlen(rec) + 1) != SPF_E_SUCCESS)
                continue;
            memcpy(rr->rr[cnt]->txt, rec, strlen(rec) + 1);
            break;
        default:
            continue;
        }
        cnt++;
    }
    rr->num_rr = cnt;
    if (cnt == 0)
        rr->herrno = NO_DATA;
    return rr;
}

/* Explanations (exp=) are never fetched or expanded. libspf2 1.2.10 in
 * Debian 12 overflows a stack buffer while expanding the macros of a
 * hostile explanation record (found by fuzz_mailauth: corpus/mailauth/
 * regress-spf-exp-stack-overflow), and an explanation is text for the
 * sender's domain to show in our reply anyway: its owner, not the client,
 * controls it. This layer hook answers every exp= with fixed text. */
#define MA_SPF_EXP "sender not allowed by the domain's SPF record"

static SPF_errcode_t ma__get_exp(SPF_server_t *server, const char *domain, char **buf,
                                 size_t *buflen)
{
    (void)server;
    (void)domain;
    size_t need = sizeof MA_SPF_EXP;
    if (*buflen < need) {
        char *g = realloc(*buf, need);
        if (!g)
            return SPF_E_NO_MEMORY;
        *buf = g;
        *buflen = need;
    }
    memcpy(*buf, MA_SPF_EXP, need);
    return SPF_E_SUCCESS;
}

/* libspf2 logs through global handlers; it has nothing to say that the
 * result does not carry. Its error handler (fatal) stays as it is. */
static void ma__quiet(const char *file, int line, const char *msg)
{
    (void)file;
    (void)line;
    (void)msg;
}

static pthread_once_t ma__once = PTHREAD_ONCE_INIT;
static void ma__handlers(void)
{
    SPF_warning_handler = ma__quiet;
    SPF_info_handler = ma__quiet;
    SPF_debug_handler = ma__quiet;
}

struct ma_spf *ma_spf_new(const char *receiver, char *err, size_t errlen)
{
    pthread_once(&ma__once, ma__handlers);
    struct ma_spf *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->layer.destroy = NULL; /* ours, freed with s */
    s->layer.lookup = ma__lookup;
    s->layer.get_exp = ma__get_exp;
    s->layer.name = "sluice";
    s->server = SPF_server_new_dns(&s->layer, 0);
    if (!s->server) {
        snprintf(err, errlen, "libspf2: cannot make a server");
        free(s);
        return NULL;
    }
    /* The default explanation carries macros (%{S}, the sender, the
     * client's choice): plain text instead, for the same reason. */
    SPF_response_t *resp = NULL;
    SPF_errcode_t e = SPF_server_set_explanation(s->server, MA_SPF_EXP, &resp);
    if (resp)
        SPF_response_free(resp);
    if (e != SPF_E_SUCCESS) {
        snprintf(err, errlen, "libspf2: cannot set the explanation");
        ma_spf_free(s);
        return NULL;
    }
    if (receiver && *receiver && SPF_server_set_rec_dom(s->server, receiver) != SPF_E_SUCCESS) {
        snprintf(err, errlen, "libspf2: bad receiver name %.100s", receiver);
        ma_spf_free(s);
        return NULL;
    }
    return s;
}

void ma_spf_free(struct ma_spf *s)
{
    if (!s)
        return;
    SPF_server_free(s->server);
    free(s);
}

const char *ma_spf_result_name(enum ma_spf_result r)
{
    static const char *const names[] = {"none",     "neutral",   "pass",     "fail",
                                        "softfail", "temperror", "permerror"};
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "none";
}

static enum ma_spf_result ma__map(SPF_result_t r)
{
    switch (r) {
    case SPF_RESULT_NEUTRAL:
        return MA_SPF_NEUTRAL;
    case SPF_RESULT_PASS:
        return MA_SPF_PASS;
    case SPF_RESULT_FAIL:
        return MA_SPF_FAIL;
    case SPF_RESULT_SOFTFAIL:
        return MA_SPF_SOFTFAIL;
    case SPF_RESULT_TEMPERROR:
        return MA_SPF_TEMPERROR;
    case SPF_RESULT_PERMERROR:
        return MA_SPF_PERMERROR;
    default:
        return MA_SPF_NONE;
    }
}

/* No result but an error code: a broken record is the domain's problem
 * (permerror), a DNS or memory failure ours for now (temperror). */
static enum ma_spf_result ma__map_error(SPF_errcode_t err)
{
    switch (err) {
    case SPF_E_SUCCESS:
    case SPF_E_NOT_SPF:
        return MA_SPF_NONE;
    case SPF_E_DNS_ERROR:
    case SPF_E_NO_MEMORY:
    case SPF_E_INTERNAL_ERROR:
        return MA_SPF_TEMPERROR;
    default:
        return MA_SPF_PERMERROR;
    }
}

/* A domain libspf2 can be given: letters, digits, '-', '_', '.', and a
 * dot somewhere (a bare label is no domain to publish SPF at). */
static bool ma__domain_ok(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 253 || !strchr(d, '.') || d[0] == '.' || strstr(d, ".."))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)d[i]) && d[i] != '-' && d[i] != '.' && d[i] != '_')
            return false;
    return true;
}

int ma_spf_check(struct ma_spf *s, struct ma_dns *t, const char *ip, const char *helo,
                 const char *mail_from, unsigned round, struct ma_spf_out *out)
{
    memset(out, 0, sizeof *out);
    out->result = MA_SPF_NONE;
    const char *at = mail_from ? strrchr(mail_from, '@') : NULL;
    const char *dom = at ? at + 1 : NULL;
    if (!dom || !*dom) {
        dom = helo;
        out->used_helo = 1;
    }
    if (!dom || !ma__domain_ok(dom)) {
        snprintf(out->comment, sizeof out->comment, "no domain to check");
        return 0;
    }
    snprintf(out->domain, sizeof out->domain, "%s", dom);
    if (round >= MA_SPF_MAX_ROUNDS || t->full) {
        out->result = MA_SPF_TEMPERROR;
        snprintf(out->comment, sizeof out->comment, "too many DNS lookups");
        return 0;
    }

    SPF_request_t *rq = SPF_request_new(s->server);
    if (!rq) {
        out->result = MA_SPF_TEMPERROR;
        return 0;
    }
    int bad;
    if (strchr(ip, ':') && strncasecmp(ip, "::ffff:", 7) != 0)
        bad = SPF_request_set_ipv6_str(rq, ip) != SPF_E_SUCCESS;
    else
        bad = SPF_request_set_ipv4_str(rq, strncasecmp(ip, "::ffff:", 7) ? ip : ip + 7) !=
              SPF_E_SUCCESS;
    if (bad) {
        SPF_request_free(rq);
        snprintf(out->comment, sizeof out->comment, "client address unusable");
        return 0;
    }
    if (helo && ma__domain_ok(helo))
        SPF_request_set_helo_dom(rq, helo);
    if (out->used_helo) {
        char pm[300];
        snprintf(pm, sizeof pm, "postmaster@%s", dom);
        SPF_request_set_env_from(rq, pm);
    } else {
        SPF_request_set_env_from(rq, mail_from);
    }

    SPF_response_t *resp = NULL;
    s->layer.hook = t;
    s->wanted = 0;
    SPF_errcode_t err = SPF_request_query_mailfrom(rq, &resp);
    s->layer.hook = NULL;
    int need = s->wanted > 0 && !t->full;
    if (t->full) {
        out->result = MA_SPF_TEMPERROR;
        snprintf(out->comment, sizeof out->comment, "too many DNS lookups");
        need = 0;
    } else if (!need && resp) {
        out->result = ma__map(SPF_response_result(resp));
        if (SPF_response_result(resp) == SPF_RESULT_INVALID) {
            /* libspf2 gave up on the record (its compiler refused it, say:
             * then err is only "not SPF"): the worst recorded error decides. */
            out->result = ma__map_error(err);
            for (int i = 0; i < SPF_response_messages(resp); i++) {
                SPF_error_t *e = SPF_response_message(resp, i);
                enum ma_spf_result r = e ? ma__map_error(SPF_error_code(e)) : MA_SPF_NONE;
                if (r > out->result)
                    out->result = r;
            }
        }
        const char *c = SPF_response_get_smtp_comment(resp);
        if (!c || !*c)
            c = SPF_strreason(SPF_response_reason(resp));
        snprintf(out->comment, sizeof out->comment, "%s", c ? c : "");
        for (char *p = out->comment; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                *p = '?';
    }
    if (resp)
        SPF_response_free(resp);
    SPF_request_free(rq);
    return need;
}
