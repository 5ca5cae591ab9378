/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dnsplug: a test plugin for the SDK's DNS lookups (api->dns_query). In
 * the MAIL phase it looks up the TXT record `name` (on the daemon's servers,
 * or `servers`, within `timeout_ms`) and answers from the outcome:
 *   a record containing "block"   -> 550 5.7.1 blocked by TXT
 *   TEMPFAIL / TIMEOUT            -> 451 4.4.3 lookup failed: STATUS
 *   anything else                 -> continue
 * Before that it starts one more lookup and cancels it at once: that
 * callback must never run. A callback that runs inside dns_query(), or a
 * cancelled one that runs, aborts the daemon (the test sees it die). The
 * DATA hook runs on the thread pool (blocking) and checks that dns_query
 * refuses to work there: it adds "X-Dns-Pool: refused" (or "accepted").
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/plugin.h>

SLUICE_API_DECLARE;

struct dp {
    const char *name, *servers;
    unsigned timeout_ms;
};

struct dp_job {
    sluice_ctx *ctx;
};

static bool dp_in_call; /* loop thread only */

static int dp_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, dns_cancel)) {
        api->config_error(inst, NULL, "needs dns_query");
        return -1;
    }
    struct dp *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    d->name = api->config_get(inst, "name");
    d->servers = api->config_get(inst, "servers");
    const char *t = api->config_get(inst, "timeout_ms");
    d->timeout_ms = t ? (unsigned)strtoul(t, NULL, 10) : 0;
    if (!d->name) {
        api->config_error(inst, "name", "required");
        free(d);
        return -1;
    }
    *data = d;
    return 0;
}

static void dp_shutdown(void *data)
{
    free(data);
}

static void dp_never(void *ud, const struct sluice_dns_answer *ans)
{
    (void)ud;
    (void)ans;
    abort(); /* a cancelled lookup called back */
}

static void dp_answer(void *ud, const struct sluice_dns_answer *ans)
{
    struct dp_job *j = ud;
    static const char *const names[] = {"ok",       "nxdomain", "nodata",
                                        "tempfail", "timeout",  "badreply"};
    char text[100];
    int v = SLUICE_CONTINUE;
    if (dp_in_call)
        abort(); /* called inside dns_query() */
    if (ans->status == SLUICE_DNS_OK && ans->count && strstr(ans->records[0], "block")) {
        sluice_api->set_reply(j->ctx, 550, "5.7.1", "blocked by TXT");
        v = SLUICE_REJECT;
    } else if (ans->status == SLUICE_DNS_TEMPFAIL || ans->status == SLUICE_DNS_TIMEOUT) {
        snprintf(text, sizeof text, "lookup failed: %s", names[ans->status]);
        sluice_api->set_reply(j->ctx, 451, "4.4.3", text);
        v = SLUICE_TEMPFAIL;
    }
    sluice_api->complete(j->ctx, v);
    free(j);
}

static int dp_mail(sluice_ctx *ctx)
{
    struct dp *d = sluice_api->instance_data(ctx);
    struct sluice_dns_request rq = {.size = sizeof rq,
                                    .type = SLUICE_DNS_TXT,
                                    .name = d->name,
                                    .timeout_ms = d->timeout_ms,
                                    .servers = d->servers};
    struct dp_job *j = calloc(1, sizeof *j);
    if (!j)
        return SLUICE_ERROR;
    j->ctx = ctx;
    dp_in_call = true;
    sluice_dns_query *gone = sluice_api->dns_query(ctx, &rq, dp_never, NULL);
    sluice_api->dns_cancel(gone);
    sluice_dns_query *q = sluice_api->dns_query(ctx, &rq, dp_answer, j);
    dp_in_call = false;
    if (!q) {
        free(j);
        return SLUICE_ERROR;
    }
    return SLUICE_ASYNC;
}

static int dp_data(sluice_ctx *ctx)
{
    struct sluice_dns_request rq = {.size = sizeof rq, .type = SLUICE_DNS_TXT, .name = "x.test"};
    sluice_dns_query *q = sluice_api->dns_query(ctx, &rq, dp_never, NULL);
    if (q)
        sluice_api->dns_cancel(q); /* (would be a host bug) */
    sluice_api->header_add(ctx, "X-Dns-Pool", q ? "accepted" : "refused");
    return SLUICE_CONTINUE;
}

SLUICE_PLUGIN_DEFINE(.name = "dnsplug", .version = "1", .description = "SDK DNS test plugin",
                     .capabilities = SLUICE_CAP_HEADERS,
                     .blocking_phases = SLUICE_PHASE_BIT(SLUICE_PHASE_DATA), .init = dp_init,
                     .shutdown = dp_shutdown, .on_mail = dp_mail, .on_data = dp_data);
