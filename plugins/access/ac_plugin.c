/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * access: allow, deny or tempfail by client, HELO name, sender and
 * recipient, from map files (ac_map: exact keys, domains, networks,
 * patterns), reloaded when they change.
 *
 * Phases and what they consult (all hooks on the loop thread: a lookup is
 * binary searches, a short network scan and patterns bounded by
 * match_limit):
 *   connect  client_map     deny 554 5.7.1, tempfail 421 4.7.1 (closed)
 *   HELO     helo_map       deny 550 5.7.1, tempfail 451 4.7.1
 *   MAIL     sender_map     deny 550 5.7.1, tempfail 451 4.7.1
 *   RCPT     recipient_map  deny 550 5.7.1, tempfail 450 4.7.1
 * `allow` answers CONTINUE (never ACCEPT: the other plugins still run) and
 * skips this instance's later maps: a client or HELO allow for the whole
 * connection, a sender allow for its transaction's recipients. Those
 * allows live in the connection's and transaction's data; the host drops
 * connection data when the chain is reloaded, so a missing one is worked
 * out again from the client and HELO (without counting it twice).
 *
 * Map files (plugins/common/watch): every reload_interval at most, when a
 * hook runs, the files are stat()ed and, when one changed, all are parsed
 * again, both on libuv's thread pool while the hook waits (SLUICE_ASYNC);
 * the new set is swapped in on the loop thread, and this hook already uses
 * it. A set with errors is logged line by line (FILE:LINE: message) and
 * refused: the previous set stays until the files change again.
 *
 * Ownership: struct ac_inst (instance data, freed by shutdown()) owns the
 * watch, which holds the current struct ac_set (reference-counted, so a
 * build finishing on the pool never frees what a hook is using) and the
 * struct ac_source the builds read. ac_conn and ac_tx are the host's to
 * free through free().
 */
#include "ac_map.h"
#include "pstr.h"
#include "watch.h"

#include <sluice/plugin.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AC_FILE_MAX (64u * 1024 * 1024) /* bytes of one map file */

SLUICE_API_DECLARE;

struct ac_conf {
    const char *maps[AC_MAP_KINDS]; /* client_map ... recipient_map, NULL when unset */
    unsigned reload_ms;
    unsigned match_limit;
};

static const char *const ac__keynames[AC_MAP_KINDS] = {"client_map", "helo_map", "sender_map",
                                                       "recipient_map"};

static const struct sluice_config_key ac__keys[] = {
    {.name = "client_map",
     .type = SLUICE_CONFIG_PATH,
     .offset = offsetof(struct ac_conf, maps[AC_MAP_CLIENT])},
    {.name = "helo_map",
     .type = SLUICE_CONFIG_PATH,
     .offset = offsetof(struct ac_conf, maps[AC_MAP_HELO])},
    {.name = "sender_map",
     .type = SLUICE_CONFIG_PATH,
     .offset = offsetof(struct ac_conf, maps[AC_MAP_SENDER])},
    {.name = "recipient_map",
     .type = SLUICE_CONFIG_PATH,
     .offset = offsetof(struct ac_conf, maps[AC_MAP_RCPT])},
    {.name = "reload_interval",
     .type = SLUICE_CONFIG_DURATION,
     .def = "1s",
     .min = 0,
     .max = 3600u * 1000,
     .offset = offsetof(struct ac_conf, reload_ms)},
    {.name = "match_limit",
     .type = SLUICE_CONFIG_UNSIGNED,
     .def = "100000",
     .min = 100,
     .max = 100000000,
     .offset = offsetof(struct ac_conf, match_limit)},
    {.name = NULL},
};

/* What a build reads; owned by the watch (a build may end on the pool
 * after the instance is gone). */
struct ac_source {
    char *paths[AC_MAP_KINDS]; /* owned, NULL when not configured */
};

/* One generation of the maps. */
struct ac_set {
    atomic_int refs;
    char *files[AC_MAP_KINDS]; /* owned: the configured paths, packed */
    size_t nfiles;
    struct ac_map *maps[AC_MAP_KINDS]; /* owned, NULL when not configured */
};

struct ac_inst {
    sluice_instance *inst;
    struct ac_conf conf;
    struct watch *watch; /* holds the current set */
    struct ac_scratch *sc;
    sluice_counter *c_checks, *c_reloads, *c_limited;
};

/* Allows that skip later maps. */
struct ac_conn {
    bool client_allowed, helo_allowed;
};

struct ac_tx {
    bool sender_allowed;
};

/* ---- sets (struct watch_ops) ---------------------------------------------- */

static void ac__set_unref(void *obj)
{
    struct ac_set *s = obj;
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < AC_MAP_KINDS; i++) {
        free(s->files[i]);
        ac_map_free(s->maps[i]);
    }
    free(s);
}

static void ac__set_ref(void *obj)
{
    atomic_fetch_add(&((struct ac_set *)obj)->refs, 1);
}

static const char *ac__set_path(const void *obj, size_t i)
{
    const struct ac_set *s = obj;
    return i < s->nfiles ? s->files[i] : NULL;
}

/* The whole file, NUL-terminated; NULL with errno set. */
static char *ac__slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    struct pstr b = PSTR_INIT;
    char chunk[65536];
    size_t n;
    int bad = 0;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) {
        if (b.len + n > AC_FILE_MAX) {
            bad = EFBIG;
            break;
        }
        pstr_append(&b, chunk, n);
    }
    if (!bad && ferror(fp))
        bad = EIO;
    fclose(fp);
    if (bad) {
        pstr_free(&b);
        errno = bad;
        return NULL;
    }
    *len = b.len;
    return pstr_steal(&b);
}

static void ac__collect(void *arg, const char *msg)
{
    struct pstr *errors = arg;
    pstr_printf(errors, "%s\n", msg);
}

/* Any thread: only the source is used; problems become lines. */
static void *ac__build(const void *arg, struct pstr *errors)
{
    const struct ac_source *src = arg;
    struct ac_set *s = pstr_xcalloc(1, sizeof *s);
    atomic_init(&s->refs, 1);
    int bad = 0;
    for (int k = 0; k < AC_MAP_KINDS; k++) {
        const char *path = src->paths[k];
        if (!path)
            continue;
        s->files[s->nfiles++] = pstr_xstrdup(path);
        size_t len = 0;
        char *text = ac__slurp(path, &len);
        if (!text) {
            pstr_printf(errors, "%s: cannot read: %s\n", path, strerror(errno));
            bad = 1;
            continue;
        }
        if (ac_map_parse(text, len, path, (enum ac_kind)k, &s->maps[k], ac__collect, errors) != 0)
            bad = 1;
        free(text);
    }
    if (bad) {
        ac__set_unref(s);
        return NULL;
    }
    return s;
}

/* Log each error line; the number of lines. */
static size_t ac__log_errors(struct ac_inst *ai, const char *errors)
{
    size_t n = 0;
    while (*errors) {
        const char *nl = strchr(errors, '\n');
        int len = nl ? (int)(nl - errors) : (int)strlen(errors);
        sluice_api->log(ai->inst, SLUICE_LOG_ERROR, "%.*s", len, errors);
        n++;
        errors += len + (nl ? 1 : 0);
    }
    return n;
}

static size_t ac__set_rules(const struct ac_set *s)
{
    size_t n = 0;
    for (int k = 0; k < AC_MAP_KINDS; k++)
        if (s->maps[k])
            n += ac_map_rules(s->maps[k]);
    return n;
}

/* The watch rebuilt the set (loop thread). */
static void ac__reloaded(void *owner, const void *obj, const char *errors)
{
    struct ac_inst *ai = owner;
    size_t nerr = ac__log_errors(ai, errors);
    if (obj)
        sluice_api->log(ai->inst, SLUICE_LOG_INFO, "maps reloaded: %zu rules", ac__set_rules(obj));
    else
        sluice_api->log(ai->inst, SLUICE_LOG_ERROR,
                        "map files have %zu error%s; keeping the previous maps", nerr,
                        nerr == 1 ? "" : "s");
    if (ai->c_reloads)
        sluice_api->counter_add(ai->c_reloads, obj ? "ok" : "failed", 1);
}

static const struct watch_ops ac__watch_ops = {ac__build, ac__set_path, ac__set_ref, ac__set_unref,
                                               ac__reloaded};

static void ac__source_free(void *p)
{
    struct ac_source *src = p;
    for (int k = 0; k < AC_MAP_KINDS; k++)
        free(src->paths[k]);
    free(src);
}

/* ---- instance ---------------------------------------------------------------- */

static void ac_shutdown(void *data)
{
    struct ac_inst *ai = data;
    if (!ai)
        return;
    watch_free(ai->watch);
    ac_scratch_free(ai->sc);
    free(ai);
}

static int ac_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, config_load)) {
        api->config_error(inst, NULL, "this plugin needs a newer sluice (typed keys)");
        return -1;
    }
    struct ac_inst *ai = pstr_xcalloc(1, sizeof *ai);
    ai->inst = inst;
    int bad = SLUICE_CONFIG_LOAD(api, inst, ac__keys, &ai->conf, SLUICE_CONFIG_STRICT) != 0;
    struct ac_source *src = pstr_xcalloc(1, sizeof *src);
    size_t nmaps = 0;
    for (int k = 0; k < AC_MAP_KINDS; k++)
        if (ai->conf.maps[k]) {
            src->paths[k] = pstr_xstrdup(ai->conf.maps[k]);
            nmaps++;
        }
    if (!bad && nmaps == 0) {
        api->config_error(inst, NULL,
                          "no map: set client_map, helo_map, sender_map or recipient_map");
        bad = 1;
    }
    /* Every problem of every map at once, each under its key. */
    struct ac_set *set = NULL;
    if (!bad) {
        struct pstr errors = PSTR_INIT;
        set = ac__build(src, &errors);
        const char *e = pstr_cstr(&errors);
        while (*e) {
            const char *nl = strchr(e, '\n');
            int len = nl ? (int)(nl - e) : (int)strlen(e);
            const char *key = NULL;
            for (int k = 0; k < AC_MAP_KINDS && !key; k++) {
                size_t pl = src->paths[k] ? strlen(src->paths[k]) : 0;
                if (pl && strncmp(e, src->paths[k], pl) == 0 && e[pl] == ':')
                    key = ac__keynames[k];
            }
            api->config_error(inst, key, "%.*s", len, e);
            e += len + (nl ? 1 : 0);
        }
        pstr_free(&errors);
        if (!set)
            bad = 1;
    }
    if (bad) {
        ac__source_free(src);
        ac_shutdown(ai);
        return -1;
    }
    ai->watch = watch_new(&ac__watch_ops, src, ac__source_free, ai, set,
                          ai->conf.reload_ms ? ai->conf.reload_ms : 1000);
    if (!api->checking(inst)) {
        ai->sc = ac_scratch_new(ai->conf.match_limit);
        if (!ai->sc) {
            api->config_error(inst, NULL, "out of memory");
            ac_shutdown(ai);
            return -1;
        }
        ai->c_checks = api->counter_new(
            inst, "checks", "Map lookups by what they decided (none: no key matched)", "result", 4);
        ai->c_reloads = api->counter_new(inst, "reloads", "Map reloads on change", "result", 2);
        ai->c_limited =
            api->counter_new(inst, "match_limits",
                             "Pattern runs stopped by match_limit (counted as no match)", NULL, 0);
        bool jit = true;
        for (int k = 0; k < AC_MAP_KINDS; k++)
            if (set->maps[k] && !ac_map_jit(set->maps[k]))
                jit = false;
        api->log(inst, SLUICE_LOG_INFO, "%zu access rules from %zu map%s%s", ac__set_rules(set),
                 nmaps, nmaps == 1 ? "" : "s", jit ? "" : " (some patterns without JIT)");
    }
    *data = ai;
    return 0;
}

/* ---- lookups ------------------------------------------------------------------- */

static const struct ac_rule *ac__lookup(struct ac_inst *ai, const struct ac_set *set,
                                        enum ac_kind k, const char *value, const char *name,
                                        bool count)
{
    const struct ac_map *m = set->maps[k];
    if (!m)
        return NULL;
    uint64_t lim = ac_scratch_limited(ai->sc);
    const struct ac_rule *r = ac_map_lookup(m, ai->sc, value, name);
    uint64_t stopped = ac_scratch_limited(ai->sc) - lim;
    if (count) {
        if (stopped && ai->c_limited)
            sluice_api->counter_add(ai->c_limited, NULL, stopped);
        if (ai->c_checks)
            sluice_api->counter_add(ai->c_checks, ac_action_name(r ? r->action : AC_NONE), 1);
    }
    return r;
}

/* The connection's allows, worked out again when the host dropped them
 * (a chain reload) or when the connect phase never ran for this instance. */
static struct ac_conn *ac__conn(sluice_ctx *ctx, struct ac_inst *ai, const struct ac_set *set)
{
    struct ac_conn *c = sluice_api->conn_data_get(ctx);
    if (c)
        return c;
    c = pstr_xcalloc(1, sizeof *c);
    const char *name = sluice_api->client_name(ctx);
    const struct ac_rule *r =
        ac__lookup(ai, set, AC_MAP_CLIENT, sluice_api->client_addr(ctx), name, false);
    c->client_allowed = r && r->action == AC_ALLOW;
    const char *helo = sluice_api->helo(ctx);
    if (helo && *helo) {
        r = ac__lookup(ai, set, AC_MAP_HELO, helo, NULL, false);
        c->helo_allowed = r && r->action == AC_ALLOW;
    }
    sluice_api->conn_data_set(ctx, c, free);
    return c;
}

/* A rule's verdict, its reply and its log line. */
static int ac__verdict(sluice_ctx *ctx, struct ac_inst *ai, const struct ac_rule *r, enum ac_kind k,
                       const char *what, int deny_code, int temp_code)
{
    const char *file = ai->conf.maps[k];
    if (r->action == AC_DENY) {
        sluice_api->log_ctx(ctx, SLUICE_LOG_INFO, "access: %s %s denied (%s:%u)", ac_kind_name(k),
                            what, file, r->line);
        sluice_api->set_reply(ctx, deny_code, "5.7.1", r->text ? r->text : "Access denied");
        return SLUICE_REJECT;
    }
    sluice_api->log_ctx(ctx, SLUICE_LOG_INFO, "access: %s %s tempfailed (%s:%u)", ac_kind_name(k),
                        what, file, r->line);
    sluice_api->set_reply(ctx, temp_code, "4.7.1",
                          r->text ? r->text : "Access temporarily refused, try again later");
    return SLUICE_TEMPFAIL;
}

typedef int (*ac_step_fn)(sluice_ctx *ctx, struct ac_inst *ai, const struct ac_set *set);

static int ac__connect(sluice_ctx *ctx, struct ac_inst *ai, const struct ac_set *set)
{
    struct ac_conn *c = pstr_xcalloc(1, sizeof *c);
    sluice_api->conn_data_set(ctx, c, free);
    const char *addr = sluice_api->client_addr(ctx);
    const struct ac_rule *r =
        ac__lookup(ai, set, AC_MAP_CLIENT, addr, sluice_api->client_name(ctx), true);
    if (!r)
        return SLUICE_CONTINUE;
    if (r->action == AC_ALLOW) {
        c->client_allowed = true;
        sluice_api->log_ctx(ctx, SLUICE_LOG_DEBUG, "access: client %s allowed (%s:%u)", addr,
                            ai->conf.maps[AC_MAP_CLIENT], r->line);
        return SLUICE_CONTINUE;
    }
    /* At the greeting a refusal closes: 554, or 421 for a temporary one. */
    return ac__verdict(ctx, ai, r, AC_MAP_CLIENT, addr, 554, 421);
}

static int ac__helo(sluice_ctx *ctx, struct ac_inst *ai, const struct ac_set *set)
{
    struct ac_conn *c = ac__conn(ctx, ai, set);
    c->helo_allowed = false; /* a new HELO/EHLO is judged afresh */
    if (c->client_allowed)
        return SLUICE_CONTINUE;
    const char *helo = sluice_api->helo(ctx);
    const struct ac_rule *r = ac__lookup(ai, set, AC_MAP_HELO, helo, NULL, true);
    if (!r)
        return SLUICE_CONTINUE;
    if (r->action == AC_ALLOW) {
        c->helo_allowed = true;
        return SLUICE_CONTINUE;
    }
    return ac__verdict(ctx, ai, r, AC_MAP_HELO, helo, 550, 451);
}

static int ac__mail(sluice_ctx *ctx, struct ac_inst *ai, const struct ac_set *set)
{
    struct ac_conn *c = ac__conn(ctx, ai, set);
    if (c->client_allowed || c->helo_allowed || !set->maps[AC_MAP_SENDER])
        return SLUICE_CONTINUE;
    const char *from = sluice_api->sender(ctx);
    const struct ac_rule *r = ac__lookup(ai, set, AC_MAP_SENDER, from, NULL, true);
    if (!r)
        return SLUICE_CONTINUE;
    char what[AC_KEY_MAX + 8];
    snprintf(what, sizeof what, "<%s>", from);
    if (r->action == AC_ALLOW) {
        struct ac_tx *t = pstr_xcalloc(1, sizeof *t);
        t->sender_allowed = true;
        sluice_api->tx_data_set(ctx, t, free);
        return SLUICE_CONTINUE;
    }
    return ac__verdict(ctx, ai, r, AC_MAP_SENDER, what, 550, 451);
}

static int ac__rcpt(sluice_ctx *ctx, struct ac_inst *ai, const struct ac_set *set)
{
    if (!set->maps[AC_MAP_RCPT])
        return SLUICE_CONTINUE;
    struct ac_conn *c = ac__conn(ctx, ai, set);
    const struct ac_tx *t = sluice_api->tx_data_get(ctx);
    if (c->client_allowed || c->helo_allowed || (t && t->sender_allowed))
        return SLUICE_CONTINUE;
    const char *rcpt = sluice_api->current_rcpt(ctx);
    if (!rcpt)
        return SLUICE_CONTINUE;
    const struct ac_rule *r = ac__lookup(ai, set, AC_MAP_RCPT, rcpt, NULL, true);
    if (!r || r->action == AC_ALLOW)
        return SLUICE_CONTINUE;
    char what[AC_KEY_MAX + 8];
    snprintf(what, sizeof what, "<%s>", rcpt);
    return ac__verdict(ctx, ai, r, AC_MAP_RCPT, what, 550, 450);
}

/* A hook waiting for a map check on the pool. */
struct ac_wait {
    sluice_ctx *ctx;
    struct ac_inst *ai;
    ac_step_fn step;
};

static int ac__step(sluice_ctx *ctx, struct ac_inst *ai, ac_step_fn step)
{
    struct ac_set *set = watch_get(ai->watch);
    int v = step(ctx, ai, set);
    ac__set_unref(set);
    return v;
}

/* The check is done and the new set (if any) swapped in: loop thread. */
static void ac__resume(void *ud, int stopped)
{
    struct ac_wait *wt = ud;
    int v = SLUICE_ERROR; /* the instance is gone: the host gave up on us */
    if (!stopped)
        v = ac__step(wt->ctx, wt->ai, wt->step);
    sluice_api->complete(wt->ctx, v);
    free(wt);
}

/*
 * Every hook goes through here: when a check of the map files is due (at
 * most every reload_interval), the stat() calls and any rebuild run on the
 * thread pool while this hook waits, so the hook that notices a change is
 * the first to use the new maps and the loop never blocks on the files.
 */
static int ac__run(sluice_ctx *ctx, ac_step_fn step)
{
    struct ac_inst *ai = sluice_api->instance_data(ctx);
    if (ai->conf.reload_ms) {
        struct ac_wait *wt = pstr_xcalloc(1, sizeof *wt);
        *wt = (struct ac_wait){ctx, ai, step};
        if (watch_check_async(ai->watch, sluice_api->event_loop(ctx), ac__resume, wt))
            return SLUICE_ASYNC;
        free(wt);
    }
    return ac__step(ctx, ai, step);
}

static int ac_on_connect(sluice_ctx *ctx)
{
    return ac__run(ctx, ac__connect);
}

static int ac_on_helo(sluice_ctx *ctx)
{
    return ac__run(ctx, ac__helo);
}

static int ac_on_mail(sluice_ctx *ctx)
{
    return ac__run(ctx, ac__mail);
}

static int ac_on_rcpt(sluice_ctx *ctx)
{
    return ac__run(ctx, ac__rcpt);
}

SLUICE_PLUGIN_DEFINE(.name = "access", .version = "1.0",
                     .description = "allow, deny or tempfail by client, HELO, sender and "
                                    "recipient from map files",
                     .init = ac_init, .shutdown = ac_shutdown, .on_connect = ac_on_connect,
                     .on_helo = ac_on_helo, .on_mail = ac_on_mail, .on_rcpt = ac_on_rcpt);
