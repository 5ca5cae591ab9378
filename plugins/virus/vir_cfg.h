/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_cfg: the virus plugin's configuration keys, parsed and validated
 * without the host: values come from a getter callback and problems go to
 * an error callback (the plugin wires them to api->config_get and
 * api->config_error; the unit tests to a table). Pure: no file system,
 * no sockets (checks that touch the disk are the plugin's, under init).
 */
#ifndef VIR_CFG_H
#define VIR_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vir_backend { VIR_BACKEND_LIBCLAMAV = 0, VIR_BACKEND_CLAMD };
/* What to do with a virus. */
enum vir_action { VIR_ACT_REJECT = 0, VIR_ACT_QUARANTINE, VIR_ACT_TAG };
/* What to do when a scan limit was exceeded. */
enum vir_limit_action { VIR_LIM_TEMPFAIL = 0, VIR_LIM_TAG, VIR_LIM_REJECT };
/* The host's `failure` key, which this plugin applies itself to scanner
 * errors (the SDK has no "error" verdict). */
enum vir_failure { VIR_FAIL_TEMPFAIL = 0, VIR_FAIL_ACCEPT, VIR_FAIL_TAG };

#define VIR_PATH_MAX 4096
#define VIR_TEXT_MAX 256

struct vir_config {
    enum vir_backend backend;
    char database[VIR_PATH_MAX]; /* libclamav: signature directory */
    char tmpdir[VIR_PATH_MAX];   /* libclamav scratch dir; "" = make a private one */
    uint32_t reload_check_ms;    /* database change check interval; 0 = never */
    bool cache;                  /* libclamav clean-result cache */

    char clamd[VIR_PATH_MAX];    /* "unix:/path" or "IP:port" */
    uint32_t clamd_connect_timeout_ms;
    uint32_t clamd_timeout_ms;   /* whole INSTREAM exchange */

    uint64_t max_scan_size;      /* bytes; larger messages get limit_action */
    uint64_t max_file_size;
    uint32_t max_recursion;
    uint32_t max_files;
    uint32_t max_scan_time_ms;

    enum vir_action action;
    enum vir_limit_action limit_action;
    enum vir_failure failure;
    char reject_text[VIR_TEXT_MAX]; /* template, one "%s" = signature name */
    bool scanned_header;            /* add X-Virus-Scanned */
};

/* Value of `key`, or NULL when unset. */
typedef const char *(*vir_cfg_get_fn)(void *ud, const char *key);
/* Report one problem with `key`. */
typedef void (*vir_cfg_err_fn)(void *ud, const char *key, const char *msg);

/* Defaults (see README.md). */
void vir_cfg_defaults(struct vir_config *c);

/* Read every key through get(); each problem is reported through err().
 * Returns the number of problems (0 = c is complete and valid). */
int vir_cfg_parse(struct vir_config *c, vir_cfg_get_fn get, vir_cfg_err_fn err, void *ud);

/* Value parsers, exposed for the tests. 0 ok, -1 invalid. */
/* "25M", "512k", "1G", "1000" (bytes; binary multiples). */
int vir_cfg_size(const char *s, uint64_t *out);
/* "250ms", "5s", "2m", "1h", "3" (seconds). */
int vir_cfg_duration_ms(const char *s, uint64_t *out);
int vir_cfg_bool(const char *s, bool *out);

/* A reject_text template is valid when it has at most one "%s", no other
 * '%' except "%%", only printable ASCII, and fits VIR_TEXT_MAX. */
int vir_cfg_check_template(const char *t, const char **why);

#endif
