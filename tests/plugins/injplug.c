/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * injplug: a hostile plugin for the reply-injection test. At RCPT it
 * refuses with set_reply() values that try to smuggle reply lines: an
 * enhanced code with leading CR/LF (a scanf that skips white space once
 * took it for valid), and a text with CR/LF/NUL-free control bytes. The
 * client must see exactly one well-formed reply line. Modes `lines` and
 * `many` use set_reply_lines(): three lines, one trying to inject, or 20
 * lines (more than the host keeps).
 * Key: mode = enh | text | both | lines | many (default both).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <sluice/plugin.h>

SLUICE_API_DECLARE;

struct inj {
    int mode; /* 0 both, 1 enh, 2 text, 3 lines, 4 many */
};

static struct inj inj_conf;

static int inj_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    const char *m = api->config_get(inst, "mode");
    static const char *const modes[] = {"both", "enh", "text", "lines", "many"};
    inj_conf.mode = 0;
    for (int i = 0; m && i < 5; i++)
        if (strcmp(m, modes[i]) == 0)
            inj_conf.mode = i;
    *data = &inj_conf;
    return 0;
}

static int inj_rcpt(sluice_ctx *ctx)
{
    const struct inj *c = sluice_api->instance_data(ctx);
    if (c->mode == 3) {
        const char *lines[] = {"first", "second\r\n250 2.0.0 injected", "third"};
        sluice_api->set_reply_lines(ctx, 550, "5.7.2", lines, 3);
        return SLUICE_REJECT;
    }
    if (c->mode == 4) {
        char buf[20][16];
        const char *lines[20];
        for (int i = 0; i < 20; i++) {
            snprintf(buf[i], sizeof buf[i], "line %d", i + 1);
            lines[i] = buf[i];
        }
        sluice_api->set_reply_lines(ctx, 451, "4.7.2", lines, 20);
        return SLUICE_TEMPFAIL;
    }
    const char *enh = c->mode == 2 ? "5.7.1" : "\r\n250 2.0.0 injected\r\n5.7.1";
    const char *text = c->mode == 1 ? "refused" : "no\r\n250 2.0.0 injected too";
    if (c->mode == 0)
        enh = "\r\n5.7.1";
    sluice_api->set_reply(ctx, 550, enh, text);
    return SLUICE_REJECT;
}

__attribute__((visibility("default"))) const struct sluice_plugin sluice_plugin = {
    .abi_version = SLUICE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct sluice_plugin),
    .name = "injplug",
    .version = "1",
    .init = inj_init,
    .on_rcpt = inj_rcpt,
};
