/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_plugin: the dkim.so plugin, glue between the sluice host API and the
 * engine modules (dkp_*). One instance runs in one mode:
 *
 *   mode = verify  check every DKIM-Signature, delete forged
 *                  Authentication-Results carrying our authserv-id, add ours
 *                  at the top, optionally reject per require_valid_from;
 *   mode = sign    for outbound mail (From domain in the signing table AND
 *                  client in internal_networks or authenticated) add one
 *                  DKIM-Signature per table line for that domain.
 *
 * A chain usually holds a verify instance first and a sign instance last,
 * so the signature covers the message exactly as it will be forwarded.
 *
 * The DATA hook runs on the loop thread and answers asynchronously. In
 * verify mode it reads the first max_signatures DKIM-Signature fields,
 * looks their key records up (the key cache, else api->dns_query on the
 * host's resolver, all at once, nothing blocking), and only when every
 * answer is in hands the message to a libuv pool thread for the CPU part
 * (libopendkim, RSA), which edits the message; the loop thread then calls
 * api->complete() from the work's after-callback.
 * Sign mode goes to the pool thread straight away. So no pool thread ever
 * waits for the network, and a message with hundreds of signatures costs
 * max_signatures lookups at most; the rest get one dkim=policy result.
 * The instance state (struct dkp_inst) is built by init(), read-only
 * afterwards and shared by those threads; the only mutable shared piece,
 * the key cache, has its own lock. A job (struct dkp_job) belongs to the
 * hook call that made it: the loop thread while keys are looked up, then
 * the pool thread, then the loop again, which frees it and then completes
 * the ctx.
 *
 * Keys: one typed key table for both modes (api->config_load, the daemon's
 * grammar); a key of the other mode is reported as such.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sluice/plugin.h>
#include <uv.h>

#include "dkp_ar.h"
#include "dkp_cache.h"
#include "dkp_dns.h"
#include "dkp_key.h"
#include "dkp_keyfile.h"
#include "dkp_policy.h"
#include "dkp_sign.h"
#include "dkp_table.h"
#include "dkp_verify.h"

#include "cidr.h"

#define DKP_MAX_FILE (4 * 1024 * 1024)

enum dkp_mode { DKP_MODE_VERIFY, DKP_MODE_SIGN };

/* Hooks receive only a ctx, so the host's table is kept here; it is the
 * same table for every instance and set before any hook can run. */
SLUICE_API_DECLARE;

/* The section as the key table reads it (strings point into the host's
 * configuration, valid for the instance's life). */
struct dkp_conf {
    int mode; /* enum dkp_mode */
    /* verify */
    const char *authserv_id, *keys_file, *dns_servers;
    unsigned dns_timeout_ms, max_signatures, cache_size, cache_max_ttl_ms, min_key_bits;
    unsigned max_threads; /* both modes */
    bool allow_sha1;
    const char *require_valid_from, *on_fail, *on_temperror;
    /* sign */
    const char *signing_table, *internal_networks;
    bool sign_authenticated;
    int sender; /* index in dkp__senders */
    const char *canonicalization, *sign_headers, *oversign_headers;
};

static const char *const dkp__modes[] = {"verify", "sign", NULL};
static const char *const dkp__senders[] = {"header", "envelope", "from", NULL};

#define DKP_KEY(n, t, f) .name = n, .type = t, .offset = offsetof(struct dkp_conf, f)
static const struct sluice_config_key dkp__keys[] = {
    {DKP_KEY("mode", SLUICE_CONFIG_ENUM, mode), .choices = dkp__modes,
     .flags = SLUICE_CONFIG_REQUIRED},
    {DKP_KEY("authserv_id", SLUICE_CONFIG_STRING, authserv_id)},
    {DKP_KEY("keys_file", SLUICE_CONFIG_PATH, keys_file)},
    {DKP_KEY("dns_servers", SLUICE_CONFIG_STRING, dns_servers)},
    {DKP_KEY("dns_timeout", SLUICE_CONFIG_DURATION, dns_timeout_ms), .def = "5s", .min = 100,
     .max = 60000},
    /* The host's own key for blocking hooks, read here too: DKIM's work
     * goes to the same pool from an asynchronous hook. */
    {DKP_KEY("max_threads", SLUICE_CONFIG_UNSIGNED, max_threads), .def = "0", .min = 0,
     .max = 1024},
    {DKP_KEY("max_signatures", SLUICE_CONFIG_UNSIGNED, max_signatures), .def = "5", .min = 1,
     .max = DKP_VERIFY_MAX_SIGS},
    {DKP_KEY("cache_size", SLUICE_CONFIG_UNSIGNED, cache_size), .def = "10000", .min = 1,
     .max = 1000000},
    {DKP_KEY("cache_max_ttl", SLUICE_CONFIG_DURATION, cache_max_ttl_ms), .def = "1h", .min = 0,
     .max = 7ULL * 24 * 3600 * 1000},
    {DKP_KEY("min_key_bits", SLUICE_CONFIG_UNSIGNED, min_key_bits), .def = "1024", .min = 1024,
     .max = 16384},
    {DKP_KEY("allow_sha1", SLUICE_CONFIG_BOOL, allow_sha1), .def = "no"},
    {DKP_KEY("require_valid_from", SLUICE_CONFIG_STRING, require_valid_from)},
    {DKP_KEY("on_fail", SLUICE_CONFIG_STRING, on_fail)},
    {DKP_KEY("on_temperror", SLUICE_CONFIG_STRING, on_temperror)},
    {DKP_KEY("signing_table", SLUICE_CONFIG_PATH, signing_table)},
    {DKP_KEY("internal_networks", SLUICE_CONFIG_STRING, internal_networks),
     .def = "127.0.0.0/8, ::1/128"},
    {DKP_KEY("sign_authenticated", SLUICE_CONFIG_BOOL, sign_authenticated), .def = "yes"},
    {DKP_KEY("sender", SLUICE_CONFIG_ENUM, sender), .choices = dkp__senders, .def = "header"},
    {DKP_KEY("canonicalization", SLUICE_CONFIG_STRING, canonicalization)},
    {DKP_KEY("sign_headers", SLUICE_CONFIG_STRING, sign_headers)},
    {DKP_KEY("oversign_headers", SLUICE_CONFIG_STRING, oversign_headers)},
    {.name = NULL},
};
#undef DKP_KEY

struct dkp_inst {
    sluice_instance *inst;
    struct dkp_conf conf;
    enum dkp_mode mode;

    /* verify */
    char authserv_id[256];
    struct dkp_keyfile keyfile; /* owned; used when have_keyfile */
    int have_keyfile;
    struct dkp_cache *cache;    /* owned */
    struct dkp_verify *verify;  /* owned */
    struct dkp_policy policy;   /* owned */
    sluice_counter *c_results;

    /* sign */
    struct dkp_table table;     /* owned */
    char **pems;                /* owned, one per table entry */
    struct cidr_list nets;      /* owned */
    int sign_authenticated;
    int sender_envelope;        /* 1: envelope sender's domain; 0: From field */
    char **sign_headers;        /* owned NULL-terminated lists, NULL = defaults */
    char **oversign_headers;
    struct dkp_sign *sign;      /* owned */
    sluice_counter *c_sign;
    sluice_counter *c_waits; /* jobs that waited for one of max_threads */
};

/* ---- config values ---------------------------------------------------- */

/* A header name list "From, To, Subject" into a NULL-terminated array. */
static char **dkp__name_list(const char *s)
{
    size_t n = 0, cap = 8;
    char **v = calloc(cap + 1, sizeof *v);

    if (!v)
        return NULL;
    while (*s) {
        size_t l = 0;
        while (*s == ' ' || *s == '\t' || *s == ',' || *s == ':')
            s++;
        if (!*s)
            break;
        while (s[l] && s[l] != ' ' && s[l] != '\t' && s[l] != ',' && s[l] != ':')
            l++;
        for (size_t i = 0; i < l; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c <= 0x20 || c >= 0x7f) {
                l = 0;
                break;
            }
        }
        if (l == 0)
            goto fail;
        if (n == cap) {
            char **nv = realloc(v, (cap * 2 + 1) * sizeof *nv);
            if (!nv)
                goto fail;
            v = nv;
            cap *= 2;
        }
        v[n] = strndup(s, l);
        if (!v[n])
            goto fail;
        n++;
        v[n] = NULL;
        s += l;
    }
    if (n == 0)
        goto fail;
    return v;
fail:
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return NULL;
}

static void dkp__free_list(char **l)
{
    for (size_t i = 0; l && l[i]; i++)
        free(l[i]);
    free(l);
}

/* Whole file into a malloc'd NUL-terminated buffer; NULL with errno. */
static char *dkp__slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL;
    size_t cap = 0, n = 0;

    if (!f)
        return NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > DKP_MAX_FILE) {
                errno = EFBIG;
                goto fail;
            }
            char *nb = realloc(buf, cap);
            if (!nb)
                goto fail;
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                errno = EIO;
                goto fail;
            }
            break;
        }
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

/* ---- instance life ----------------------------------------------------- */

static void dkp__shutdown(void *data)
{
    struct dkp_inst *d = data;

    if (!d)
        return;
    dkp_verify_free(d->verify);
    dkp_cache_free(d->cache);
    dkp_keyfile_free(&d->keyfile);
    dkp_policy_free(&d->policy);
    dkp_sign_free(d->sign);
    for (size_t i = 0; d->pems && i < d->table.n; i++) {
        if (d->pems[i]) {
            /* private key material: do not leave it in freed memory */
            memset(d->pems[i], 0, strlen(d->pems[i]));
            free(d->pems[i]);
        }
    }
    free(d->pems);
    dkp_table_free(&d->table);
    cidr_list_free(&d->nets);
    dkp__free_list(d->sign_headers);
    dkp__free_list(d->oversign_headers);
    free(d);
}

/* Keys that belong to the other mode are a mistake worth reporting. */
static const char *const dkp__verify_keys[] = {
    "authserv_id", "keys_file",     "dns_servers",  "dns_timeout", "max_signatures",
    "cache_size",  "cache_max_ttl", "min_key_bits", "allow_sha1",  "require_valid_from",
    "on_fail",     "on_temperror",  NULL,
};
static const char *const dkp__sign_keys[] = {
    "signing_table", "internal_networks", "sign_authenticated", "sender", "canonicalization",
    "sign_headers", "oversign_headers", NULL,
};

static int dkp__init_verify(struct dkp_inst *d, int bad)
{
    const struct sluice_host_api *api = sluice_api;
    sluice_instance *inst = d->inst;
    const struct dkp_conf *c = &d->conf;
    const char *v;
    char err[256];

    v = c->authserv_id;
    if (v) {
        if (!dkp_ar_valid_authserv_id(v)) {
            api->config_error(inst, "authserv_id", "must be a host-name-like token, got \"%s\"", v);
            bad = 1;
        } else {
            snprintf(d->authserv_id, sizeof d->authserv_id, "%s", v);
        }
    } else if (gethostname(d->authserv_id, sizeof d->authserv_id - 1) != 0 ||
               !dkp_ar_valid_authserv_id(d->authserv_id)) {
        api->config_error(inst, "authserv_id", "not set and the host name is unusable; set it");
        bad = 1;
    }

    v = c->keys_file;
    if (v) {
        size_t len;
        char *text = dkp__slurp(v, &len);
        unsigned line = 0;
        if (!text) {
            api->config_error(inst, "keys_file", "cannot read %s: %s", v, strerror(errno));
            bad = 1;
        } else if (dkp_keyfile_parse(text, len, &d->keyfile, &line, err, sizeof err) < 0) {
            api->log(inst, SLUICE_LOG_ERROR, "%s:%u: %s", v, line, err);
            api->config_error(inst, "keys_file", "%s:%u: %s", v, line, err);
            bad = 1;
        } else {
            d->have_keyfile = 1;
        }
        free(text);
    }

    /* Key records are looked up on the host's resolver: its servers, or
     * the ones named here (checked now, handed over as written). */
    v = c->dns_servers;
    if (v) {
        struct dkp_dns_conf dc;
        if (dkp_dns_parse_servers(v, &dc, err, sizeof err) < 0) {
            api->config_error(inst, "dns_servers", "%s", err);
            bad = 1;
        }
    }
    if (!d->have_keyfile && !SLUICE_API_HAS(api, dns_cancel)) {
        api->config_error(inst, NULL, "key lookups need a newer sluice (host DNS), or keys_file");
        bad = 1;
    }

    d->policy.on_fail = DKP_ACT_REJECT;
    d->policy.on_temperror = DKP_ACT_TEMPFAIL;
    v = c->require_valid_from;
    if (v && dkp_policy_parse_domains(&d->policy, v, err, sizeof err) < 0) {
        api->config_error(inst, "require_valid_from", "%s", err);
        bad = 1;
    }
    v = c->on_fail;
    if (v && dkp_policy_parse_action(v, &d->policy.on_fail) < 0) {
        api->config_error(inst, "on_fail", "must be reject, tempfail or tag, got \"%s\"", v);
        bad = 1;
    }
    v = c->on_temperror;
    if (v && dkp_policy_parse_action(v, &d->policy.on_temperror) < 0) {
        api->config_error(inst, "on_temperror", "must be tempfail, reject or tag, got \"%s\"", v);
        bad = 1;
    }
    if (bad)
        return -1;

    if (!d->have_keyfile) {
        d->cache = dkp_cache_new(c->cache_size, 0, c->cache_max_ttl_ms / 1000, 60);
        if (!d->cache) {
            api->config_error(inst, "cache_size", "cannot allocate the key cache");
            return -1;
        }
    }
    struct dkp_verify_conf vc = {
        .keyfile = d->have_keyfile ? &d->keyfile : NULL,
        .max_sigs = c->max_signatures,
        .min_key_bits = c->min_key_bits,
        .allow_sha1 = c->allow_sha1,
    };
    d->verify = dkp_verify_new(&vc, err, sizeof err);
    if (!d->verify) {
        api->config_error(inst, NULL, "%s", err);
        return -1;
    }
    d->c_results = api->counter_new(inst, "results", "DKIM signature results", "result", 8);
    return 0;
}

/* Resolve a key path relative to the signing table's directory. */
static char *dkp__key_path(const char *table, const char *key)
{
    if (key[0] == '/')
        return strdup(key);
    const char *slash = strrchr(table, '/');
    if (!slash)
        return strdup(key);
    size_t dl = (size_t)(slash - table);
    char *p = malloc(dl + 1 + strlen(key) + 1);
    if (p)
        sprintf(p, "%.*s/%s", (int)dl, table, key);
    return p;
}

static int dkp__init_sign(struct dkp_inst *d, int bad)
{
    const struct sluice_host_api *api = sluice_api;
    sluice_instance *inst = d->inst;
    const struct dkp_conf *c = &d->conf;
    const char *v;
    char err[256];
    struct dkp_sign_conf sc = {.header_relaxed = 1, .body_relaxed = 1};

    const char *table = c->signing_table;
    if (!table) {
        api->config_error(inst, "signing_table", "required with mode = sign");
        bad = 1;
    } else {
        size_t len;
        unsigned line = 0;
        char *text = dkp__slurp(table, &len);
        if (!text) {
            api->config_error(inst, "signing_table", "cannot read %s: %s", table,
                              strerror(errno));
            bad = 1;
        } else if (dkp_table_parse(text, len, &d->table, &line, err, sizeof err) < 0) {
            api->log(inst, SLUICE_LOG_ERROR, "%s:%u: %s", table, line, err);
            api->config_error(inst, "signing_table", "%s:%u: %s", table, line, err);
            bad = 1;
        } else if (d->table.n == 0 && !api->checking(inst)) {
            /* An empty table is a valid choice (sign nothing yet), but say so. */
            api->log(inst, SLUICE_LOG_WARN, "%s has no entries: nothing will be signed", table);
        }
        free(text);
    }
    if (!bad) {
        d->pems = calloc(d->table.n ? d->table.n : 1, sizeof *d->pems);
        if (!d->pems)
            return -1;
        for (size_t i = 0; i < d->table.n; i++) {
            struct dkp_table_entry *e = &d->table.v[i];
            char *path = dkp__key_path(table, e->keyfile);
            unsigned bits = 0;
            if (!path || dkp_key_load(path, e->alg, &d->pems[i], &bits, err, sizeof err) < 0) {
                api->log(inst, SLUICE_LOG_ERROR, "%s:%u: key %s: %s", table, e->line,
                         path ? path : e->keyfile, path ? err : "out of memory");
                api->config_error(inst, "signing_table", "%s:%u: key %s: %s", table, e->line,
                                  path ? path : e->keyfile, path ? err : "out of memory");
                bad = 1;
            } else if (e->alg == DKP_ALG_RSA_SHA256 && bits < 2048) {
                api->log(inst, SLUICE_LOG_WARN,
                         "%s:%u: %u-bit RSA key for %s; 2048 bits are recommended", table,
                         e->line, bits, e->domain);
            }
            free(path);
        }
    }

    if (c->internal_networks &&
        cidr_list_parse(c->internal_networks, 0, &d->nets, err, sizeof err) < 0) {
        api->config_error(inst, "internal_networks", "%s", err);
        bad = 1;
    }
    d->sign_authenticated = c->sign_authenticated;
    d->sender_envelope = c->sender == 1; /* "envelope"; "header" and "from" are the From field */
    v = c->canonicalization;
    if (v) {
        char h[16] = "", b[16] = "simple";
        const char *slash = strchr(v, '/');
        snprintf(h, sizeof h, "%.*s", slash ? (int)(slash - v) : (int)strlen(v), v);
        if (slash)
            snprintf(b, sizeof b, "%s", slash + 1);
        int hok = !strcmp(h, "relaxed") || !strcmp(h, "simple");
        int bok = !strcmp(b, "relaxed") || !strcmp(b, "simple");
        if (!hok || !bok) {
            api->config_error(inst, "canonicalization",
                              "must be HEADER/BODY with relaxed or simple, got \"%s\"", v);
            bad = 1;
        }
        sc.header_relaxed = !strcmp(h, "relaxed");
        sc.body_relaxed = !strcmp(b, "relaxed");
    }
    v = c->sign_headers;
    if (v) {
        d->sign_headers = dkp__name_list(v);
        if (!d->sign_headers) {
            api->config_error(inst, "sign_headers", "must be a list of header field names");
            bad = 1;
        } else {
            int has_from = 0;
            for (size_t i = 0; d->sign_headers[i]; i++)
                if (!strcasecmp(d->sign_headers[i], "from"))
                    has_from = 1;
            if (!has_from) {
                api->config_error(inst, "sign_headers", "must include From (RFC 6376 5.4)");
                bad = 1;
            }
        }
    }
    v = c->oversign_headers;
    if (v) {
        d->oversign_headers = strcmp(v, "none") ? dkp__name_list(v) : calloc(1, sizeof(char *));
        if (!d->oversign_headers) {
            api->config_error(inst, "oversign_headers",
                              "must be a list of header field names or none");
            bad = 1;
        }
    }
    if (bad)
        return -1;
    sc.sign_headers = (const char *const *)d->sign_headers;
    sc.oversign_headers = (const char *const *)d->oversign_headers;
    d->sign = dkp_sign_new(&sc, err, sizeof err);
    if (!d->sign) {
        api->config_error(inst, NULL, "%s", err);
        return -1;
    }
    d->c_sign = api->counter_new(inst, "signatures", "DKIM signing decisions", "outcome", 8);
    return 0;
}

static int dkp__init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    *data = NULL;
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, config_load)) {
        api->config_error(inst, NULL, "this plugin needs a newer sluice (typed keys)");
        return -1;
    }
    struct dkp_inst *d = calloc(1, sizeof *d);
    if (!d) {
        api->config_error(inst, NULL, "out of memory");
        return -1;
    }
    d->inst = inst;
    d->conf.mode = -1;
    int bad = SLUICE_CONFIG_LOAD(api, inst, dkp__keys, &d->conf, SLUICE_CONFIG_STRICT) != 0;
    if (d->conf.mode < 0) { /* missing or invalid: reported */
        dkp__shutdown(d);
        return -1;
    }
    d->mode = d->conf.mode == 0 ? DKP_MODE_VERIFY : DKP_MODE_SIGN;
    const char *const *other = d->mode == DKP_MODE_VERIFY ? dkp__sign_keys : dkp__verify_keys;
    for (size_t i = 0; other[i]; i++) {
        if (api->config_get(inst, other[i])) {
            api->config_error(inst, other[i], "only for mode = %s",
                              d->mode == DKP_MODE_VERIFY ? "sign" : "verify");
            bad = 1;
        }
    }
    /* The mode's own checks run even after a bad key, so --check lists
     * every problem; nothing is built then. */
    if ((d->mode == DKP_MODE_VERIFY ? dkp__init_verify(d, bad) : dkp__init_sign(d, bad)) < 0) {
        dkp__shutdown(d);
        return -1;
    }
    d->c_waits = api->counter_new(
        inst, "thread_waits", "DKIM jobs that waited for one of max_threads pool threads", NULL, 1);
    *data = d;
    return 0;
}

/* ---- verify ------------------------------------------------------------ */

static const char *dkp__symbol(enum dkp_result r)
{
    switch (r) {
    case DKP_RES_PASS:
        return "DKIM_PASS";
    case DKP_RES_FAIL:
        return "DKIM_FAIL";
    case DKP_RES_NEUTRAL:
        return "DKIM_NEUTRAL";
    case DKP_RES_POLICY:
        return "DKIM_POLICY";
    case DKP_RES_TEMPERROR:
        return "DKIM_TEMPERROR";
    case DKP_RES_PERMERROR:
        return "DKIM_PERMERROR";
    case DKP_RES_NONE:
        break;
    }
    return "DKIM_NONE";
}

static void dkp__delete_forged(sluice_ctx *ctx, struct dkp_inst *d)
{
    const struct sluice_host_api *api = sluice_api;
    static const char ar_name[] = "Authentication-Results";
    size_t ours[64], n = 0, nth = 0, count = api->header_count(ctx);

    /* One pass over the fields (header_get per nth would rescan from the
     * top each time: a header of thousands of short fields would cost
     * millions of compares, on the loop thread for an unsigned message). */
    for (size_t i = 0; i < count && nth < 1000 && n < sizeof ours / sizeof ours[0]; i++) {
        struct sluice_header h = {.size = sizeof h};
        if (api->header_at(ctx, i, &h) != 0)
            break;
        if (h.name_len != sizeof ar_name - 1 || strncasecmp(h.name, ar_name, h.name_len) != 0)
            continue;
        /* The raw value, folds and all: the authserv-id parser takes CR
         * and LF for the white space of a fold. */
        if (dkp_ar_has_authserv_id(h.value, h.value_len, d->authserv_id))
            ours[n++] = nth;
        nth++;
    }
    /* Highest first, so the indices of the remaining ones stay valid
     * whether the host applies deletions at once or at the end. */
    while (n > 0) {
        size_t k = ours[--n];
        if (api->header_delete(ctx, ar_name, k) == 0)
            api->log_ctx(ctx, SLUICE_LOG_INFO,
                         "dkim: removed Authentication-Results #%zu claiming to be from %s", k,
                         d->authserv_id);
    }
}

/* The CPU part of verification, with the key records looked up before:
 * verify, record the results, apply the policy. Pool thread, or the loop
 * thread for an unsigned message: then libopendkim has nothing to check
 * (it answers "none" for every unsigned message, parsable or not) and
 * what is left is a few header edits, cheaper than a trip to the pool. */
static int dkp__verify_with_keys(sluice_ctx *ctx, struct dkp_inst *d,
                                 const struct dkp_verify_key *keys, size_t nkeys)
{
    const struct sluice_host_api *api = sluice_api;
    const char *msg;
    size_t len, n = 0, skipped = 0, nevaluated;
    struct dkp_sigres *res = NULL;
    char err[256], ar[1024], from_dom[256];
    struct dkp_policy_decision dec;

    if (!api->header_get(ctx, "DKIM-Signature", 0)) {
        /* unsigned: n = 0, "none" */
    } else if (api->message(ctx, &msg, &len) != 0) {
        api->log_ctx(ctx, SLUICE_LOG_WARN, "dkim: message not available");
        return SLUICE_CONTINUE;
    } else if (dkp_verify_message(d->verify, msg, len, keys, nkeys, &res, &n, &skipped, err,
                                  sizeof err) < 0) {
        /* libopendkim refuses messages it cannot parse (no From: field,
         * say) before looking at signatures: permerror. */
        api->log_ctx(ctx, SLUICE_LOG_INFO, "dkim: not verifiable: %s", err);
        n = 0;
        if ((res = calloc(1, sizeof *res))) {
            res->result = DKP_RES_PERMERROR;
            snprintf(res->reason, sizeof res->reason, "message not verifiable: %.90s", err);
            n = 1;
        }
    }
    nevaluated = n;
    if (skipped > 0) {
        /* One result for all signatures past the cap: not evaluated,
         * by local policy (RFC 8601 2.7.1 "policy"). */
        struct dkp_sigres *more = realloc(res, (n + 1) * sizeof *res);
        if (more) {
            res = more;
            memset(&res[n], 0, sizeof res[n]);
            res[n].result = DKP_RES_POLICY;
            snprintf(res[n].reason, sizeof res[n].reason,
                     "too many signatures: %zu more not evaluated (max_signatures = %u)", skipped,
                     d->conf.max_signatures);
            n++;
        }
    }
    dkp__delete_forged(ctx, d);
    if (n == 0) {
        if (dkp_ar_format(d->authserv_id, NULL, ar, sizeof ar) > 0)
            api->header_insert(ctx, 0, "Authentication-Results", ar);
        api->symbol_add(ctx, "DKIM_NONE", 0.0, "no DKIM signature");
        if (d->c_results)
            api->counter_add(d->c_results, "none", 1);
    }
    /* Inserted at the top in reverse, so they read in signature order. */
    for (size_t i = n; i-- > 0;) {
        const struct dkp_sigres *r = &res[i];
        if (dkp_ar_format(d->authserv_id, r, ar, sizeof ar) > 0)
            api->header_insert(ctx, 0, "Authentication-Results", ar);
    }
    for (size_t i = 0; i < n; i++) {
        const struct dkp_sigres *r = &res[i];
        char why[600];
        if (r->domain[0])
            snprintf(why, sizeof why, "d=%s s=%s%s%s", r->domain, r->selector,
                     r->reason[0] ? ": " : "", r->reason);
        else
            snprintf(why, sizeof why, "%s", r->reason);
        api->symbol_add(ctx, dkp__symbol(r->result), 0.0, why);
        if (d->c_results)
            api->counter_add(d->c_results, dkp_ar_result_name(r->result), 1);
        if (r->reason[0])
            api->log_ctx(ctx, SLUICE_LOG_INFO, "dkim: d=%s s=%s a=%s result=%s reason=\"%s\"",
                         r->domain, r->selector, r->alg, dkp_ar_result_name(r->result), r->reason);
        else
            api->log_ctx(ctx, SLUICE_LOG_INFO, "dkim: d=%s s=%s a=%s result=%s", r->domain,
                         r->selector, r->alg, dkp_ar_result_name(r->result));
    }

    int have_from = dkp_sign_addr_domain(api->header_get(ctx, "From", 0), from_dom,
                                         sizeof from_dom) == 0;
    /* The author policy looks at evaluated signatures only. */
    dkp_policy_eval(&d->policy, have_from ? from_dom : NULL, res, nevaluated, &dec);
    free(res);
    if (dec.symbol)
        api->symbol_add(ctx, dec.symbol, 0.0, dec.text);
    if (dec.action == DKP_ACT_REJECT) {
        api->set_reply(ctx, dec.code, dec.enh, dec.text);
        return SLUICE_REJECT;
    }
    if (dec.action == DKP_ACT_TEMPFAIL) {
        api->set_reply(ctx, dec.code, dec.enh, dec.text);
        return SLUICE_TEMPFAIL;
    }
    return SLUICE_CONTINUE;
}

/* ---- sign ---------------------------------------------------------------- */

static int dkp__on_data_sign(sluice_ctx *ctx, struct dkp_inst *d)
{
    const struct sluice_host_api *api = sluice_api;
    const char *client = api->client_addr(ctx);
    const char *user = api->auth_user(ctx);
    char dom[256], err[256];
    const char *msg;
    size_t len;

    int internal = cidr_match(d->nets.v, d->nets.n, client);
    int authed = d->sign_authenticated && user && *user;
    if (!internal && !authed) {
        if (d->c_sign)
            api->counter_add(d->c_sign, "not_outbound", 1);
        return SLUICE_CONTINUE;
    }
    if (d->sender_envelope) {
        const char *s = api->sender(ctx);
        const char *at = s ? strrchr(s, '@') : NULL;
        if (!at || !at[1] || strlen(at + 1) >= sizeof dom)
            dom[0] = '\0';
        else
            snprintf(dom, sizeof dom, "%s", at + 1);
    } else if (dkp_sign_addr_domain(api->header_get(ctx, "From", 0), dom, sizeof dom) < 0) {
        dom[0] = '\0';
    }
    size_t i = dom[0] ? dkp_table_find(&d->table, dom, 0) : d->table.n;
    if (i == d->table.n) {
        api->log_ctx(ctx, SLUICE_LOG_DEBUG, "dkim: no signing table entry for \"%s\"", dom);
        if (d->c_sign)
            api->counter_add(d->c_sign, "no_entry", 1);
        return SLUICE_CONTINUE;
    }
    if (api->message(ctx, &msg, &len) != 0) {
        api->log_ctx(ctx, SLUICE_LOG_WARN, "dkim: message not available, not signed");
        return SLUICE_CONTINUE;
    }
    /* Sign everything first: the message must not change between
     * signatures (each one covers the original, not the others). */
    char *sigs[16];
    size_t nsig = 0;
    for (; i < d->table.n && nsig < 16; i = dkp_table_find(&d->table, dom, i + 1)) {
        const struct dkp_table_entry *e = &d->table.v[i];
        char *value = NULL;
        if (dkp_sign_message(d->sign, e->domain, e->selector, d->pems[i], e->alg, msg, len,
                             &value, err, sizeof err) < 0) {
            api->log_ctx(ctx, SLUICE_LOG_WARN, "dkim: cannot sign as d=%s s=%s: %s", e->domain,
                         e->selector, err);
            if (d->c_sign)
                api->counter_add(d->c_sign, "error", 1);
            continue;
        }
        api->log_ctx(ctx, SLUICE_LOG_INFO, "dkim: signed d=%s s=%s a=%s", e->domain,
                     e->selector, dkp_alg_name(e->alg));
        if (d->c_sign)
            api->counter_add(d->c_sign, "signed", 1);
        sigs[nsig++] = value;
    }
    for (size_t k = nsig; k-- > 0;) {
        int rc = api->header_insert(ctx, 0, "DKIM-Signature", sigs[k]);
        if (rc != 0)
            api->log_ctx(ctx, SLUICE_LOG_WARN, "dkim: cannot add DKIM-Signature: %s",
                         strerror(-rc));
        free(sigs[k]);
    }
    return SLUICE_CONTINUE;
}

/* ---- the DATA hook: key lookups on the loop, the rest on the pool ---------- */

struct dkp_job;
/* What a key lookup's callback gets: its job and which key. */
struct dkp_keyref {
    struct dkp_job *j;
    size_t i;
};

struct dkp_job {
    uv_work_t work;
    struct dkp_job *next_waiting;
    unsigned max_threads; /* of the instance that queued it */
    sluice_ctx *ctx;
    struct dkp_inst *d;
    size_t pending; /* key lookups still out */
    struct dkp_verify_key keys[DKP_VERIFY_MAX_SIGS];
    char *recs[DKP_VERIFY_MAX_SIGS]; /* owned; keys[i].rec points here */
    struct dkp_keyref ref[DKP_VERIFY_MAX_SIGS];
    size_t nkeys;
    int verdict; /* the pool thread's, for the loop to hand on */
};

static void dkp__job_free(struct dkp_job *j)
{
    for (size_t i = 0; i < j->nkeys; i++)
        free(j->recs[i]);
    free(j);
}

/* Pool thread: the CPU part; the ctx is ours until complete(). */
static void dkp__work_cb(uv_work_t *w)
{
    struct dkp_job *j = w->data;
    struct dkp_inst *d = j->d;
    j->verdict = d->mode == DKP_MODE_VERIFY ? dkp__verify_with_keys(j->ctx, d, j->keys, j->nkeys)
                                            : dkp__on_data_sign(j->ctx, d);
}

/* The pool threads DKIM's jobs hold, for every instance (loop thread only;
 * the state outlives reloads since it is the plugin's, not an instance's).
 * The pool is the daemon's (thread_pool_size) and serves every blocking
 * plugin: a burst of signatures waits here, in order, instead of taking
 * all of its threads. */
static unsigned dkp__running;
static struct dkp_job *dkp__waiting, *dkp__waiting_tail;
static uv_loop_t *dkp__loop;

static void dkp__job_start(struct dkp_job *j);

/* max_threads = 0, as for the host: the pool (UV_THREADPOOL_SIZE, which
 * the daemon sets from thread_pool_size) less one, at least one. */
static unsigned dkp__auto_threads(void)
{
    const char *env = getenv("UV_THREADPOOL_SIZE");
    long n = env ? strtol(env, NULL, 10) : 4;
    if (n < 1)
        n = 4;
    return n > 1 ? (unsigned)(n - 1) : 1;
}

static void dkp__after_work_cb(uv_work_t *w, int status)
{
    (void)status; /* never cancelled: uv_cancel is not used */
    struct dkp_job *j = w->data;
    sluice_ctx *ctx = j->ctx;
    int verdict = j->verdict;
    dkp__job_free(j);
    dkp__running--;
    /* A loop, not one start: a job that cannot be queued is answered at
     * once and must not leave the ones behind it waiting for a completion
     * that never comes; and a job of an instance allowed more threads may
     * go on behind one that was not. */
    struct dkp_job *next;
    while ((next = dkp__waiting) != NULL && dkp__running < next->max_threads) {
        dkp__waiting = next->next_waiting;
        if (!dkp__waiting)
            dkp__waiting_tail = NULL;
        dkp__job_start(next);
    }
    /* Completed here, on the loop thread, rather than at the end of the
     * work: libuv wakes the loop for this callback anyway, and a
     * complete() from the pool thread would wake it a second time. Last,
     * with the thread given back: the host may run the chain on from
     * inside it, DKIM's next instance included. */
    sluice_api->complete(ctx, verdict);
}

static void dkp__job_start(struct dkp_job *j)
{
    j->work.data = j;
    dkp__running++;
    if (uv_queue_work(dkp__loop, &j->work, dkp__work_cb, dkp__after_work_cb) != 0) {
        dkp__running--;
        sluice_api->log_ctx(j->ctx, SLUICE_LOG_WARN, "dkim: cannot queue the work");
        sluice_api->complete(j->ctx, SLUICE_ERROR);
        dkp__job_free(j);
    }
}

/* Loop thread: every key is known; on to the pool, or in line for it. */
static void dkp__job_run(struct dkp_job *j)
{
    dkp__loop = sluice_api->event_loop(j->ctx);
    j->max_threads = j->d->conf.max_threads ? j->d->conf.max_threads : dkp__auto_threads();
    if (dkp__running < j->max_threads && !dkp__waiting) {
        dkp__job_start(j);
        return;
    }
    if (j->d->c_waits)
        sluice_api->counter_add(j->d->c_waits, NULL, 1);
    j->next_waiting = NULL;
    if (dkp__waiting_tail)
        dkp__waiting_tail->next_waiting = j;
    else
        dkp__waiting = j;
    dkp__waiting_tail = j;
}

static enum dkp_keystat dkp__keystat(int dns_status)
{
    switch (dns_status) {
    case SLUICE_DNS_OK:
        return DKP_KEY_FOUND;
    case SLUICE_DNS_NXDOMAIN:
    case SLUICE_DNS_NODATA:
        return DKP_KEY_NONE;
    case SLUICE_DNS_BADREPLY:
        return DKP_KEY_BADREPLY;
    default:
        return DKP_KEY_TEMPFAIL;
    }
}

/* Loop thread: one key record's answer (never inside dns_query). */
static void dkp__key_cb(void *ud, const struct sluice_dns_answer *ans)
{
    struct dkp_keyref *ref = ud;
    struct dkp_job *j = ref->j;
    size_t i = ref->i;
    struct dkp_verify_key *k = &j->keys[i];
    k->st = dkp__keystat(ans->status);
    if (k->st == DKP_KEY_FOUND) {
        /* A key name with several TXT records is ambiguous (RFC 6376
         * 3.6.2.2); the first one is tried. */
        j->recs[i] = ans->count ? strdup(ans->records[0]) : NULL;
        k->rec = j->recs[i];
        if (!k->rec)
            k->st = ans->count ? DKP_KEY_TEMPFAIL : DKP_KEY_BADREPLY;
    }
    if (j->d->cache)
        dkp_cache_put(j->d->cache, k->name, k->st, k->rec ? k->rec : "", ans->ttl, time(NULL));
    if (--j->pending == 0)
        dkp__job_run(j);
}

/* Loop thread: the keys of the first max_signatures signatures (each name
 * once): from the cache, else one DNS query each, all at once. */
static void dkp__verify_start(sluice_ctx *ctx, struct dkp_job *j)
{
    const struct sluice_host_api *api = sluice_api;
    struct dkp_inst *d = j->d;
    time_t now = time(NULL);
    char buf[4096];

    for (size_t nth = 0; nth < d->conf.max_signatures; nth++) {
        const char *sig = api->header_get(ctx, "DKIM-Signature", nth);
        char name[DKP_VERIFY_NAME_MAX];
        if (!sig)
            break;
        if (dkp_verify_key_name(sig, name, sizeof name) < 0)
            continue; /* libopendkim finds it broken by itself */
        size_t i;
        for (i = 0; i < j->nkeys; i++)
            if (!strcasecmp(j->keys[i].name, name))
                break;
        if (i < j->nkeys)
            continue;
        struct dkp_verify_key *k = &j->keys[j->nkeys];
        snprintf(k->name, sizeof k->name, "%s", name);
        j->ref[j->nkeys] = (struct dkp_keyref){.j = j, .i = j->nkeys};
        j->nkeys++;
        if (d->cache && dkp_cache_get(d->cache, name, now, &k->st, buf, sizeof buf)) {
            if (k->st == DKP_KEY_FOUND) {
                j->recs[i] = strdup(buf);
                k->rec = j->recs[i];
                if (!k->rec)
                    k->st = DKP_KEY_TEMPFAIL;
            }
            continue;
        }
        struct sluice_dns_request rq = {
            .size = sizeof rq,
            .type = SLUICE_DNS_TXT,
            .name = name,
            .timeout_ms = d->conf.dns_timeout_ms,
            .servers = d->conf.dns_servers,
        };
        /* Counted before the call: the answer never comes inside it. */
        j->pending++;
        if (!api->dns_query(ctx, &rq, dkp__key_cb, &j->ref[i])) {
            j->pending--;
            k->st = DKP_KEY_TEMPFAIL;
        }
    }
}

static int dkp__on_data(sluice_ctx *ctx)
{
    struct dkp_inst *d = sluice_api ? sluice_api->instance_data(ctx) : NULL;

    if (!d)
        return SLUICE_CONTINUE;
    if (d->mode == DKP_MODE_VERIFY && !sluice_api->header_get(ctx, "DKIM-Signature", 0))
        return dkp__verify_with_keys(ctx, d, NULL, 0);
    struct dkp_job *j = calloc(1, sizeof *j);
    if (!j)
        return SLUICE_ERROR;
    j->ctx = ctx;
    j->d = d;
    if (d->mode == DKP_MODE_VERIFY && !d->have_keyfile)
        dkp__verify_start(ctx, j);
    /* Nothing to wait for (sign mode, key file, every key cached): to the
     * pool now. Its complete() comes from the work's after-callback, so
     * after this hook has returned; only a job that cannot be queued is
     * answered from inside it (the host allows for that). */
    if (j->pending == 0)
        dkp__job_run(j);
    return SLUICE_ASYNC;
}

SLUICE_PLUGIN_DEFINE(.name = "dkim", .version = "1.1",
                     .description = "DKIM verification (Authentication-Results) and signing",
                     .capabilities = SLUICE_CAP_HEADERS, .init = dkp__init,
                     .shutdown = dkp__shutdown, .on_data = dkp__on_data);
