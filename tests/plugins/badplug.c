/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Deliberately broken plugins: a wrong ABI version, or no descriptor. */
#include <stddef.h>

#include <sluice/plugin.h>

static int bad_init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    (void)api;
    (void)inst;
    *data = NULL;
    return 0;
}

#ifdef BAD_ABI
__attribute__((visibility("default"))) const struct sluice_plugin sluice_plugin = {
    .abi_version = 99,
    .size = sizeof(struct sluice_plugin),
    .name = "badabi",
    .init = bad_init,
};
#else
__attribute__((visibility("default"))) const struct sluice_plugin not_the_symbol = {
    .abi_version = SLUICE_PLUGIN_ABI_VERSION,
    .size = sizeof(struct sluice_plugin),
    .name = "nosymbol",
    .init = bad_init,
};
#endif
