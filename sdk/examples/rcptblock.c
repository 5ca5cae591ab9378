/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rcptblock: an example sluice plugin, small enough to read in one sitting.
 *
 *  - RCPT phase: rejects recipients listed in a file with 550 5.7.1.
 *  - DATA phase: adds a header to mail from configured client networks.
 *
 * Keys of its [plugin NAME] section:
 *   blocklist    = FILE      one address per line ("user@example.com"), or a
 *                            whole domain ("@example.com"); '#' starts a
 *                            comment; matched case-insensitively. Required.
 *   reject_text  = TEXT      text of the 550 reply (default "Recipient blocked")
 *   tag_networks = CIDR ...  client networks to tag, separated by spaces or
 *                            commas ("192.0.2.0/24 2001:db8::/32 127.0.0.1")
 *   tag_header   = NAME: VALUE  header added to tagged mail
 *                            (default "X-Sluice-Network: internal")
 *
 * Counters on the stats endpoint:
 *   sluice_plugin_<instance>_blocked_total   recipients refused
 *   sluice_plugin_<instance>_tagged_total    messages tagged
 *
 * Design notes (why it looks like this):
 *  - The keys are a typed key table: the host reads them with sluice.conf's
 *    own grammar, applies the defaults, and reports unknown keys and
 *    missing required ones as FILE:LINE; init() only checks what a table
 *    cannot say (the file's contents, the networks, the header's shape).
 *  - Everything is read at init; the hooks only look up memory, so they run
 *    on the event loop (no blocking_phases). SIGHUP re-runs init on a fresh
 *    instance, which is how the list is reloaded.
 *  - The instance state is never written after init, so hooks of many
 *    sessions may read it at once without locking.
 *  - Whether a connection is tagged is computed once per connection and kept
 *    as connection private data, freed by the host when the connection ends.
 */
/* strdup, strtok_r, inet_pton with a plain -std=c11. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sluice/plugin.h>

#define RB_MAX_NETS 64

struct rb_net {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char addr[16];  /* network address, host bits cleared */
    unsigned prefix;
};

/* The section as the host reads it (strings stay valid for the
 * instance's life). */
struct rb_conf {
    const char *blocklist;
    const char *reject_text;
    const char *tag_networks;
    const char *tag_header;
};

static const struct sluice_config_key rb_keys[] = {
    {.name = "blocklist",
     .type = SLUICE_CONFIG_PATH,
     .flags = SLUICE_CONFIG_REQUIRED,
     .offset = offsetof(struct rb_conf, blocklist)},
    {.name = "reject_text",
     .type = SLUICE_CONFIG_STRING,
     .def = "Recipient blocked",
     .flags = SLUICE_CONFIG_PRINTABLE,
     .max = 199,
     .offset = offsetof(struct rb_conf, reject_text)},
    {.name = "tag_networks",
     .type = SLUICE_CONFIG_STRING,
     .offset = offsetof(struct rb_conf, tag_networks)},
    {.name = "tag_header",
     .type = SLUICE_CONFIG_STRING,
     .def = "X-Sluice-Network: internal",
     .offset = offsetof(struct rb_conf, tag_header)},
    {.name = NULL},
};

struct rb {
    char **blocked;          /* sorted, lower case; "@domain" for whole domains */
    size_t nblocked;
    char reject_text[200];
    struct rb_net nets[RB_MAX_NETS];
    size_t nnets;
    char tag_name[80];
    char tag_value[200];
    sluice_counter *c_blocked;
    sluice_counter *c_tagged;
};

/* The host table is the same for every instance of this plugin; hooks
 * reach their instance's state through it (api->instance_data). */
SLUICE_API_DECLARE;

static int rb_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void rb_lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static void rb_free(struct rb *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nblocked; i++)
        free(r->blocked[i]);
    free(r->blocked);
    free(r);
}

/* Read the blocklist file. Problems are reported through config_error. */
static int rb_read_list(struct rb *r, sluice_instance *inst, const char *path)
{
    const struct sluice_host_api *api = sluice_api;
    FILE *f = fopen(path, "r");
    if (!f) {
        api->config_error(inst, "blocklist", "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 0;
    char line[512];
    unsigned lineno = 0;
    int bad = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        char *end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1]))
            *--end = 0;
        if (!*p)
            continue;
        if (!strchr(p, '@') || strchr(p, ' ')) {
            api->config_error(inst, "blocklist", "%s:%u: not an address or @domain: '%s'",
                              path, lineno, p);
            bad = 1;
            continue;
        }
        if (r->nblocked == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **n = realloc(r->blocked, ncap * sizeof *n);
            if (!n) {
                bad = 1;
                break;
            }
            r->blocked = n;
            cap = ncap;
        }
        char *s = strdup(p);
        if (!s) {
            bad = 1;
            break;
        }
        rb_lower(s);
        r->blocked[r->nblocked++] = s;
    }
    fclose(f);
    if (r->nblocked)
        qsort(r->blocked, r->nblocked, sizeof *r->blocked, rb_cmp);
    return bad ? -1 : 0;
}

static int rb_parse_net(const char *text, struct rb_net *out)
{
    char addr[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    if (n == 0 || n >= sizeof addr)
        return -1;
    memcpy(addr, text, n);
    addr[n] = 0;
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, addr, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, addr, out->addr) == 1)
        out->family = AF_INET6;
    else
        return -1;
    unsigned max = out->family == AF_INET ? 32 : 128;
    out->prefix = max;
    if (slash) {
        char *end;
        errno = 0;
        unsigned long p = strtoul(slash + 1, &end, 10);
        if (errno || end == slash + 1 || *end || p > max)
            return -1;
        out->prefix = (unsigned)p;
    }
    /* Clear the host bits so a match is a plain prefix compare. */
    for (unsigned bit = out->prefix; bit < max; bit++)
        out->addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    return 0;
}

static bool rb_net_match(const struct rb_net *net, int family, const unsigned char *a)
{
    if (net->family != family)
        return false;
    unsigned full = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(net->addr, a, full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[full] & mask) == net->addr[full];
}

static int rb_parse_nets(struct rb *r, sluice_instance *inst, const char *list)
{
    char *copy = strdup(list);
    if (!copy)
        return -1;
    int bad = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, " ,\t", &save); tok; tok = strtok_r(NULL, " ,\t", &save)) {
        if (r->nnets == RB_MAX_NETS) {
            sluice_api->config_error(inst, "tag_networks", "more than %d networks", RB_MAX_NETS);
            bad = 1;
            break;
        }
        if (rb_parse_net(tok, &r->nets[r->nnets]) != 0) {
            sluice_api->config_error(inst, "tag_networks", "'%s' is not an address or CIDR network",
                                     tok);
            bad = 1;
            continue;
        }
        r->nnets++;
    }
    free(copy);
    return bad ? -1 : 0;
}

static int rb_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, config_load)) {
        api->config_error(inst, NULL, "this plugin needs a newer sluice (typed keys)");
        return -1;
    }
    struct rb *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    /* Unset keys get their defaults, wrong ones are reported: all of them. */
    struct rb_conf conf = {0};
    int bad = SLUICE_CONFIG_LOAD(api, inst, rb_keys, &conf, SLUICE_CONFIG_STRICT) != 0;

    if (conf.blocklist && rb_read_list(r, inst, conf.blocklist) != 0)
        bad = 1;
    if (conf.reject_text)
        snprintf(r->reject_text, sizeof r->reject_text, "%s", conf.reject_text);
    if (conf.tag_networks && rb_parse_nets(r, inst, conf.tag_networks) != 0)
        bad = 1;

    const char *v = conf.tag_header ? conf.tag_header : "";
    const char *colon = strchr(v, ':');
    if (!colon || colon == v || (size_t)(colon - v) >= sizeof r->tag_name) {
        api->config_error(inst, "tag_header", "expected 'Name: value', got '%s'", v);
        bad = 1;
    } else {
        memcpy(r->tag_name, v, (size_t)(colon - v));
        r->tag_name[colon - v] = 0;
        const char *val = colon + 1;
        while (*val == ' ' || *val == '\t')
            val++;
        snprintf(r->tag_value, sizeof r->tag_value, "%s", val);
    }

    if (bad) {
        rb_free(r);
        return -1;
    }
    /* Under `sluice --check` counter_new returns NULL; counter_add is then
     * never reached because no hook runs. */
    r->c_blocked = api->counter_new(inst, "blocked", "Recipients refused by the blocklist",
                                    NULL, 0);
    r->c_tagged = api->counter_new(inst, "tagged", "Messages tagged by client network",
                                   NULL, 0);
    if (!api->checking(inst))
        api->log(inst, SLUICE_LOG_INFO, "%zu blocked address(es), %zu tagged network(s)",
                 r->nblocked, r->nnets);
    *data = r;
    return 0;
}

static void rb_shutdown(void *data)
{
    rb_free(data);
}

static bool rb_is_blocked(const struct rb *r, const char *rcpt)
{
    char key[320];
    snprintf(key, sizeof key, "%s", rcpt);
    rb_lower(key);
    const char *k = key;
    if (bsearch(&k, r->blocked, r->nblocked, sizeof *r->blocked, rb_cmp))
        return true;
    const char *at = strrchr(key, '@');
    if (!at)
        return false;
    k = at; /* "@domain" */
    return bsearch(&k, r->blocked, r->nblocked, sizeof *r->blocked, rb_cmp) != NULL;
}

static int rb_on_rcpt(sluice_ctx *ctx)
{
    struct rb *r = sluice_api->instance_data(ctx);
    const char *rcpt = sluice_api->current_rcpt(ctx);
    if (!rcpt || !rb_is_blocked(r, rcpt))
        return SLUICE_CONTINUE;
    sluice_api->log_ctx(ctx, SLUICE_LOG_INFO, "blocked recipient <%s>", rcpt);
    if (r->c_blocked)
        sluice_api->counter_add(r->c_blocked, NULL, 1);
    sluice_api->set_reply(ctx, 550, "5.7.1", r->reject_text);
    return SLUICE_REJECT;
}

/* Connection private data: 1 = tag, 0 = don't; allocated so the host's
 * free callback has something to free (and so "not computed yet" is NULL). */
static bool rb_conn_tagged(sluice_ctx *ctx, const struct rb *r)
{
    int *known = sluice_api->conn_data_get(ctx);
    if (known)
        return *known;
    unsigned char a[16];
    int family = 0;
    const char *addr = sluice_api->client_addr(ctx);
    if (inet_pton(AF_INET, addr, a) == 1)
        family = AF_INET;
    else if (inet_pton(AF_INET6, addr, a) == 1)
        family = AF_INET6;
    bool tag = false;
    for (size_t i = 0; family && i < r->nnets && !tag; i++)
        tag = rb_net_match(&r->nets[i], family, a);
    known = malloc(sizeof *known);
    if (known) {
        *known = tag;
        sluice_api->conn_data_set(ctx, known, free);
    }
    return tag;
}

static int rb_on_data(sluice_ctx *ctx)
{
    struct rb *r = sluice_api->instance_data(ctx);
    if (r->nnets == 0 || !rb_conn_tagged(ctx, r))
        return SLUICE_CONTINUE;
    int rc = sluice_api->header_add(ctx, r->tag_name, r->tag_value);
    if (rc != 0)
        sluice_api->log_ctx(ctx, SLUICE_LOG_WARN, "cannot add %s: %s", r->tag_name, strerror(-rc));
    else if (r->c_tagged)
        sluice_api->counter_add(r->c_tagged, NULL, 1);
    return SLUICE_CONTINUE;
}

SLUICE_PLUGIN_DEFINE(.name = "rcptblock", .version = "1.0",
                     .description = "reject listed recipients, tag mail from client networks",
                     .capabilities = SLUICE_CAP_HEADERS, .init = rb_init,
                     .shutdown = rb_shutdown, .on_rcpt = rb_on_rcpt, .on_data = rb_on_data);
