/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * plugcfg: the host side of the SDK's typed configuration keys
 * (api->config_load, sdk/include/sluice/plugin.h). A plugin hands a table
 * of keys; each value of its [plugin NAME] section is parsed with the
 * daemon's own value grammar (cfg_parse_* in cfg.c), range-checked and
 * stored into the plugin's struct, defaults included, and every problem is
 * reported as "key: message" through the instance's config_error path, so
 * `sluice --check` names the file and line.
 *
 * plugcfg_load() is the pure part: values come from a getter, problems go
 * to a callback (unit tests and the plugins' own engine tests drive it
 * with a table). plugcfg_api_load() is the API member: it wires that to
 * the instance's section.
 *
 * Ownership: nothing is allocated for the caller; PATH and STRING fields
 * point at the getter's strings (for the API: the instance's cfg, which
 * outlives the plugin's shutdown()).
 * Threads: any thread for plugcfg_load; the API member is called by
 * plugins from init() (loop thread).
 */
#ifndef SLUICE_PLUGCFG_H
#define SLUICE_PLUGCFG_H

#include <stddef.h>
#include <stdint.h>

#include <sluice/plugin.h>

#include "cfg.h"

struct plugcfg_io {
    /* The value of `key` in the section, or NULL when unset. */
    const char *(*get)(void *ud, const char *key);
    /* Report one problem with `key` (NULL: the section as a whole). */
    void (*err)(void *ud, const char *key, const char *msg);
    /* The i-th key written in the section (file order, repeats allowed),
     * NULL past the last. Only SLUICE_CONFIG_STRICT uses it; may be NULL. */
    const char *(*key_at)(void *ud, size_t i);
    void *ud;
};

/* Fill `base` from io as `keys` (entries key_size bytes apart) say; flags
 * are config_load()'s. Returns the number of problems reported (0 = every
 * key is valid and stored). */
int plugcfg_load(const struct sluice_config_key *keys, size_t key_size, void *base, uint32_t flags,
                 const struct plugcfg_io *io);

/* Is `key` one of the keys the host itself reads in a [plugin NAME]
 * section (path, timeout, failure, ...)? */
int plugcfg_host_key(const char *key);

/* The host API member config_load (0, or -1 after reporting). */
int plugcfg_api_load(sluice_instance *inst, const struct sluice_config_key *keys, size_t key_size,
                     void *base, uint32_t flags);

#endif
