/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * plugcfg: typed keys of plugin sections; see plugcfg.h.
 *
 * The grammar is cfg.c's (cfg_parse_*), the messages follow cfg.c's own
 * ("not a duration '1.5s' (use e.g. ...)", "2h is out of range
 * (100ms..1m)"), so an administrator meets one syntax and one way of being
 * told about it in every section of sluice.conf.
 */
#include "plugcfg.h"

#include "api.h"
#include "cfg_keys.h"
#include "chain.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"

/* The keys of a plugin section that belong to the host: the one list in
 * cfg_keys.c. */
int plugcfg_host_key(const char *key)
{
    for (size_t i = 0; i < CFG_KEYS_PLUGIN_N; i++)
        if (strcmp(key, cfg_keys_plugin[i].name) == 0)
            return 1;
    for (size_t i = 0; cfg_keys_plugin_extra[i]; i++)
        if (strcmp(key, cfg_keys_plugin_extra[i]) == 0)
            return 1;
    return 0;
}

/* ---- one run of the loader ---------------------------------------------- */

struct plugcfg__run {
    const struct plugcfg_io *io;
    int problems;
};

static void plugcfg__err(struct plugcfg__run *r, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void plugcfg__err(struct plugcfg__run *r, const char *key, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->io->err(r->io->ud, key, msg);
    r->problems++;
}

static void plugcfg__fmt(uint32_t type, char *out, size_t n, uint64_t v)
{
    if (type == SLUICE_CONFIG_DURATION)
        cfg_parse_fmt_ms(out, n, v);
    else if (type == SLUICE_CONFIG_SIZE)
        cfg_parse_fmt_size(out, n, v);
    else
        snprintf(out, n, "%llu", (unsigned long long)v);
}

static bool plugcfg__printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/*
 * Parse `text` for key k into `field`. `what` is "" for a value from the
 * file, or "default " when the plugin's own default is being parsed (a
 * problem there is the plugin's bug, and says so).
 */
static void plugcfg__set(struct plugcfg__run *r, const struct sluice_config_key *k, char *field,
                         const char *text, const char *what)
{
    const char *bug = *what ? " (a bug in the plugin)" : "";
    uint64_t v = 0;
    uint64_t lim = UINT_MAX;
    bool ok;

    switch (k->type) {
    case SLUICE_CONFIG_BOOL: {
        bool b;
        if (cfg_parse_bool(text, &b) != 0) {
            plugcfg__err(r, k->name, "%sexpected yes or no, not '%s'%s", what, text, bug);
            return;
        }
        *(bool *)field = b;
        return;
    }
    case SLUICE_CONFIG_UNSIGNED:
    case SLUICE_CONFIG_DURATION:
    case SLUICE_CONFIG_SIZE:
        if (k->type == SLUICE_CONFIG_UNSIGNED) {
            ok = cfg_parse_uint(text, &v) == 0;
            if (!ok)
                plugcfg__err(r, k->name, "%snot a number '%s'%s", what, text, bug);
        } else if (k->type == SLUICE_CONFIG_DURATION) {
            unsigned ms;
            ok = cfg_parse_duration_ms(text, &ms) == 0;
            v = ms;
            if (!ok)
                plugcfg__err(r, k->name, "%snot a duration '%s' (use e.g. 500ms, 30s, 5m, 1h)%s",
                             what, text, bug);
        } else {
            ok = cfg_parse_size(text, &v) == 0;
            lim = UINT64_MAX;
            if (!ok)
                plugcfg__err(r, k->name, "%snot a size '%s' (use e.g. 65536, 64k, 25M, 1G)%s", what,
                             text, bug);
        }
        if (!ok)
            return;
        {
            uint64_t lo = k->min, hi = k->max;
            if (lo == 0 && hi == 0)
                hi = lim;
            if (hi > lim)
                hi = lim;
            if (v < lo || v > hi) {
                char slo[32], shi[32];
                plugcfg__fmt(k->type, slo, sizeof slo, lo);
                plugcfg__fmt(k->type, shi, sizeof shi, hi);
                plugcfg__err(r, k->name, "%s%s is out of range (%s..%s)%s", what, text, slo, shi,
                             bug);
                return;
            }
        }
        if (k->type == SLUICE_CONFIG_SIZE)
            *(uint64_t *)field = v;
        else
            *(unsigned *)field = (unsigned)v;
        return;
    case SLUICE_CONFIG_ENUM: {
        int idx;
        if (cfg_parse_enum(text, k->choices, &idx) != 0) {
            buf_t b = BUF_INIT;
            for (int i = 0; k->choices[i]; i++)
                buf_printf(&b, "%s%s", i ? "|" : "", k->choices[i]);
            plugcfg__err(r, k->name, "%sexpected %s, not '%s'%s", what, b.ptr ? b.ptr : "?", text,
                         bug);
            buf_free(&b);
            return;
        }
        *(int *)field = idx;
        return;
    }
    case SLUICE_CONFIG_PATH:
    case SLUICE_CONFIG_STRING: {
        size_t len = strlen(text);
        size_t max = k->max ? (size_t)k->max : k->type == SLUICE_CONFIG_PATH ? PATH_MAX - 1 : 0;
        if (k->type == SLUICE_CONFIG_PATH && !plugcfg__printable(text)) {
            plugcfg__err(r, k->name, "%scontrol characters in a path%s", what, bug);
            return;
        }
        if (k->type == SLUICE_CONFIG_PATH && (k->flags & SLUICE_CONFIG_ABSOLUTE) &&
            text[0] != '/') {
            plugcfg__err(r, k->name, "%s'%s' is not an absolute path%s", what, text, bug);
            return;
        }
        if ((k->flags & SLUICE_CONFIG_PRINTABLE) && !plugcfg__printable(text)) {
            plugcfg__err(r, k->name, "%sonly printable ASCII is allowed%s", what, bug);
            return;
        }
        if (max && len > max) {
            plugcfg__err(r, k->name, "%slonger than %zu characters%s", what, max, bug);
            return;
        }
        *(const char **)field = text;
        return;
    }
    }
}

/* A table entry the loader cannot use is the plugin's bug: say so once. */
static bool plugcfg__entry_ok(struct plugcfg__run *r, const struct sluice_config_key *k)
{
    if (k->type < SLUICE_CONFIG_BOOL || k->type > SLUICE_CONFIG_STRING) {
        plugcfg__err(r, k->name,
                     "unknown key type %u in the plugin's key table (a bug in the plugin)",
                     (unsigned)k->type);
        return false;
    }
    if (k->type == SLUICE_CONFIG_ENUM && !k->choices) {
        plugcfg__err(r, k->name,
                     "enum key without choices in the plugin's key table (a bug in the plugin)");
        return false;
    }
    return true;
}

/* Entry i of a table whose entries are key_size bytes apart; members the
 * plugin's SDK did not have read as zero. */
static void plugcfg__entry(const struct sluice_config_key *keys, size_t key_size, size_t i,
                           struct sluice_config_key *out)
{
    memset(out, 0, sizeof *out);
    memcpy(out, (const char *)keys + i * key_size, key_size < sizeof *out ? key_size : sizeof *out);
}

static bool plugcfg__in_table(const struct sluice_config_key *keys, size_t key_size,
                              const char *key)
{
    struct sluice_config_key k;
    for (size_t i = 0;; i++) {
        plugcfg__entry(keys, key_size, i, &k);
        if (!k.name)
            return false;
        if (strcmp(k.name, key) == 0)
            return true;
    }
}

int plugcfg_load(const struct sluice_config_key *keys, size_t key_size, void *base, uint32_t flags,
                 const struct plugcfg_io *io)
{
    struct plugcfg__run r = {io, 0};
    /* The first published key struct ends with `choices`. */
    size_t v1 = offsetof(struct sluice_config_key, choices) + sizeof keys->choices;
    if (!keys || !base || key_size < v1) {
        plugcfg__err(&r, NULL, "config_load: bad key table (a bug in the plugin)");
        return r.problems;
    }
    struct sluice_config_key k;
    for (size_t i = 0;; i++) {
        plugcfg__entry(keys, key_size, i, &k);
        if (!k.name)
            break;
        if (!plugcfg__entry_ok(&r, &k))
            continue;
        char *field = (char *)base + k.offset;
        const char *v = io->get(io->ud, k.name);
        bool text = k.type == SLUICE_CONFIG_PATH || k.type == SLUICE_CONFIG_STRING;
        /* As in the daemon's own sections, an empty text value is "unset". */
        if (v && !*v && text &&
            !(k.type == SLUICE_CONFIG_STRING && (k.flags & SLUICE_CONFIG_KEEP_EMPTY)))
            v = NULL;
        if (v) {
            plugcfg__set(&r, &k, field, v, "");
        } else if (k.flags & SLUICE_CONFIG_REQUIRED) {
            plugcfg__err(&r, k.name, "required key missing");
        } else if (k.def) {
            plugcfg__set(&r, &k, field, k.def, "default ");
        }
    }
    if ((flags & SLUICE_CONFIG_STRICT) && io->key_at) {
        const char *key;
        for (size_t i = 0; (key = io->key_at(io->ud, i)); i++) {
            if (plugcfg_host_key(key) || plugcfg__in_table(keys, key_size, key))
                continue;
            /* Report a repeated unknown key once. */
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++)
                seen = strcmp(io->key_at(io->ud, j), key) == 0;
            if (!seen)
                plugcfg__err(&r, key, "unknown key for this plugin");
        }
    }
    return r.problems;
}

/* ---- the API member -------------------------------------------------------- */

struct plugcfg__inst {
    sluice_instance *inst;
    const struct sluice_host_api *api;
    const struct cfg *cfg;
    char section[300];
};

static const char *plugcfg__get(void *ud, const char *key)
{
    struct plugcfg__inst *x = ud;
    return x->api->config_get(x->inst, key);
}

static void plugcfg__report(void *ud, const char *key, const char *msg)
{
    struct plugcfg__inst *x = ud;
    x->api->config_error(x->inst, key, "%s", msg);
}

static const char *plugcfg__key_at(void *ud, size_t want)
{
    struct plugcfg__inst *x = ud;
    for (size_t i = 0; i < x->cfg->nkv; i++) {
        const struct cfg_kv *kv = &x->cfg->kv[i];
        if (strcmp(kv->section, x->section) == 0 && want-- == 0)
            return kv->key;
    }
    return NULL;
}

int plugcfg_api_load(sluice_instance *inst, const struct sluice_config_key *keys, size_t key_size,
                     void *base, uint32_t flags)
{
    struct plugcfg__inst x = {.inst = inst, .api = api_table(), .cfg = inst->cfg};
    snprintf(x.section, sizeof x.section, "plugin %s", x.api->instance_name(inst));
    struct plugcfg_io io = {plugcfg__get, plugcfg__report, plugcfg__key_at, &x};
    return plugcfg_load(keys, key_size, base, flags, &io) ? -1 : 0;
}
