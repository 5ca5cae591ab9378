/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * oldabi: a plugin built against the very first ABI 1 header (frozen in
 * tests/plugins/abi1-first/sluice/plugin.h: no reload member in the
 * descriptor, no current_rcpt_params, config_load or header_fold in the
 * table). Every later host must still load and run it: the table and the
 * descriptor only grow at their ends.
 *
 * Keys: reject = ADDR (refused at RCPT), header = Name: value (added at DATA).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sluice/plugin.h>

static const struct sluice_host_api *old_api;

struct old {
    const char *reject;
    char name[64];
    const char *value;
};

static struct old old_inst; /* one instance is enough for the test */

static int old_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    old_api = api;
    /* The host's table is at least as large as the one this was built for. */
    if (api->size < sizeof(struct sluice_host_api) || api->version != SLUICE_PLUGIN_ABI_VERSION) {
        api->config_error(inst, NULL, "host table %u bytes, built for %zu", api->size,
                          sizeof(struct sluice_host_api));
        return -1;
    }
    old_inst.reject = api->config_get(inst, "reject");
    const char *h = api->config_get(inst, "header");
    const char *colon = h ? strchr(h, ':') : NULL;
    if (h && (!colon || colon == h || (size_t)(colon - h) >= sizeof old_inst.name)) {
        api->config_error(inst, "header", "expected 'Name: value'");
        return -1;
    }
    if (colon) {
        snprintf(old_inst.name, sizeof old_inst.name, "%.*s", (int)(colon - h), h);
        old_inst.value = colon + 1 + strspn(colon + 1, " ");
    }
    api->log(inst, SLUICE_LOG_INFO, "built for a %zu-byte table, host has %u bytes",
             sizeof(struct sluice_host_api), api->size);
    *data = &old_inst;
    return 0;
}

static int old_rcpt(sluice_ctx *ctx)
{
    struct old *o = old_api->instance_data(ctx);
    const char *r = old_api->current_rcpt(ctx);
    if (o->reject && r && strcasecmp(r, o->reject) == 0) {
        old_api->set_reply(ctx, 550, "5.7.1", "refused by an old plugin");
        return SLUICE_REJECT;
    }
    return SLUICE_CONTINUE;
}

static int old_data(sluice_ctx *ctx)
{
    struct old *o = old_api->instance_data(ctx);
    if (o->name[0])
        old_api->header_add(ctx, o->name, o->value);
    return SLUICE_CONTINUE;
}

SLUICE_PLUGIN_DEFINE(.name = "oldabi", .version = "1",
                     .description = "built against ABI 1's first header",
                     .capabilities = SLUICE_CAP_HEADERS, .init = old_init, .on_rcpt = old_rcpt,
                     .on_data = old_data);
