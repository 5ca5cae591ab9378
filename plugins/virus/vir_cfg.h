/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_cfg: the virus plugin's configuration keys. vir_cfg_keys is the
 * typed key table the plugin hands to api->config_load (the daemon parses
 * and range-checks every value with its own grammar and fills struct
 * vir_config, defaults included); vir_cfg_check() adds what a table cannot
 * say (the reply template, a clamd address for backend clamd), reporting
 * through an error callback (the plugin wires it to api->config_error, the
 * unit tests to a table). Pure: no file system, no sockets (checks that
 * touch the disk are the plugin's, under init).
 */
#ifndef VIR_CFG_H
#define VIR_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/plugin.h>

enum vir_backend { VIR_BACKEND_LIBCLAMAV = 0, VIR_BACKEND_CLAMD };
/* What to do with a virus. */
enum vir_action { VIR_ACT_REJECT = 0, VIR_ACT_QUARANTINE, VIR_ACT_TAG };
/* What to do when a scan limit was exceeded. */
enum vir_limit_action { VIR_LIM_TEMPFAIL = 0, VIR_LIM_TAG, VIR_LIM_REJECT };
/* The host's `failure` key, which this plugin applies itself to scanner
 * errors (rather than answering SLUICE_ERROR) so that its reply and tag
 * name what went wrong with the scanner. */
enum vir_failure { VIR_FAIL_TEMPFAIL = 0, VIR_FAIL_ACCEPT, VIR_FAIL_TAG };

#define VIR_PATH_MAX 4096
#define VIR_TEXT_MAX 256

/* Strings point into the host's configuration (valid for the instance's
 * life); enums are stored as int by the key table. */
struct vir_config {
    enum vir_backend backend;
    const char *database;        /* libclamav: signature directory */
    const char *tmpdir;          /* libclamav scratch dir; NULL = make a private one */
    unsigned reload_check_ms;    /* database change check interval; 0 = never */
    bool cache;                  /* libclamav clean-result cache */

    const char *clamd; /* "unix:/path" or "IP:port"; NULL when unset */
    unsigned clamd_connect_timeout_ms;
    unsigned clamd_timeout_ms; /* whole INSTREAM exchange */

    uint64_t max_scan_size;      /* bytes; larger messages get limit_action */
    uint64_t max_file_size;
    unsigned max_recursion;
    unsigned max_files;
    unsigned max_scan_time_ms;

    enum vir_action action;
    enum vir_limit_action limit_action;
    enum vir_failure failure;
    const char *reject_text; /* template, one "%s" = signature name */
    bool scanned_header;     /* add X-Virus-Scanned */
};

/* The keys and their defaults (see README.md), in the order problems are
 * reported. */
extern const struct sluice_config_key vir_cfg_keys[];

/* Report one problem with `key`. */
typedef void (*vir_cfg_err_fn)(void *ud, const char *key, const char *msg);

/* Checks across keys, after the table filled c; each problem through
 * err(). Returns the number of problems. */
int vir_cfg_check(const struct vir_config *c, vir_cfg_err_fn err, void *ud);

/* A reject_text template is valid when it has at most one "%s", no other
 * '%' except "%%", only printable ASCII, and fits VIR_TEXT_MAX. */
int vir_cfg_check_template(const char *t, const char **why);

#endif
