/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cfg_keys: every key of the configuration, described once: section,
 * name, type, where it is stored, range, choices. The loader (cfg.c) sets
 * keys from it; the plugins' typed keys (plugcfg.c) use the list of keys a
 * [plugin NAME] section holds for the host, so an unknown-key check and
 * the loader can never disagree. Constant data; any thread.
 */
#ifndef SLUICE_CFG_KEYS_H
#define SLUICE_CFG_KEYS_H

#include <stddef.h>
#include <stdint.h>

enum cfg_keys_sec {
    SEC_NONE = 0,
    SEC_SERVER,
    SEC_UPSTREAM,
    SEC_STATS,
    SEC_CHAIN,
    SEC_CONSOLE, /* before SEC_STATE: cfg.c looks up SEC_SERVER..SEC_STATE */
    SEC_STATE,   /* the last fixed-name section (cfg.c looks them up in order) */
    SEC_PLUGIN,
    SEC_LISTENER,
    SEC_BAD
};

enum cfg_keys_type {
    T_UINT,  /* unsigned, decimal */
    T_SIZE,  /* size_t, with k/M/G */
    T_U64,   /* uint64_t, with k/M/G */
    T_MS,    /* unsigned milliseconds, with ms/s/m/h */
    T_BOOL,  /* bool */
    T_ENUM,  /* int-sized enum, value = index in choices */
    T_STR,   /* char *, owned; empty value = unset (NULL) unless F_KEEP_EMPTY */
    T_NAME,  /* char[256] host name */
    T_ADDRS, /* struct cfg_addr[] at off, size_t count at off2 */
    T_STATS, /* char stats_listen[300] */
    T_CHAIN, /* [chain] plugins, [listener NAME] chain */
    T_SNI,   /* repeatable "HOST CERT KEY": struct cfg_tls_sni * at off, size_t count at off2 */
};

#define F_HOSTNAME 1u   /* T_STR: must look like a host name (HELO) */
#define F_PRINTABLE 2u  /* T_STR: printable ASCII only (goes on the wire) */
#define F_KEEP_EMPTY 4u /* T_STR: "" is a value, not "unset" */

struct cfg_key {
    enum cfg_keys_sec sec;
    const char *name;
    enum cfg_keys_type type;
    size_t off, off2;
    uint64_t min, max;
    const char *const *choices; /* T_ENUM, NULL-terminated */
    unsigned flags;
};

extern const char *const cfg_keys_sec_names[];
/* [server], [upstream], [stats] and [chain]; offsets into struct cfg. */
#define CFG_KEYS_N 95
extern const struct cfg_key cfg_keys[CFG_KEYS_N];
/* The keys of a [plugin NAME] section that the host uses; offsets into
 * struct cfg_plugin. Every other key there belongs to the plugin. */
#define CFG_KEYS_PLUGIN_N 7
extern const struct cfg_key cfg_keys_plugin[CFG_KEYS_PLUGIN_N];
/* The keys of a [listener NAME] section; offsets into struct
 * cfg_listener. */
#define CFG_KEYS_LISTENER_N 24
extern const struct cfg_key cfg_keys_listener[CFG_KEYS_LISTENER_N];
/* Host keys of a plugin section that are not in cfg_keys_plugin (read by
 * the chain loader itself), NULL-terminated. */
extern const char *const cfg_keys_plugin_extra[];

#endif
