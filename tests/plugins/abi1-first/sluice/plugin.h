/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice plugin SDK: the whole contract between the sluice daemon (the
 * "host") and a filter plugin. A plugin author needs nothing else.
 *
 * A plugin is a shared object (.so) that exports exactly one symbol,
 * `sluice_plugin`, a `const struct sluice_plugin` descriptor (use the
 * SLUICE_PLUGIN_DEFINE macro). The host dlopen()s the file, finds the
 * symbol, checks `abi_version` and `size` before calling anything, and
 * refuses a plugin it cannot run with an error naming the file.
 *
 * The host hands the plugin a `const struct sluice_host_api *` at init: a
 * table of functions. The daemon exports no symbols of its own; everything
 * goes through that table. The table only grows at the end; check
 * `api->size` before using a member added after ABI version 1 (see
 * SLUICE_API_HAS).
 *
 * THREADS. Every hook runs on the daemon's event loop thread, unless the
 * descriptor marks its phase in `blocking_phases`: then it runs on a thread
 * of the host's thread pool while the session waits (other sessions keep
 * going). Either way, all ctx functions may be used from within the hook,
 * on the thread that runs it. Never block in a non-blocking hook.
 *
 * EDITS. Changes a hook makes (headers, body, envelope) are recorded and
 * applied when the hook returns (or completes, for asynchronous hooks);
 * later plugins in the chain see them; the message forwarded upstream is
 * the edited one. A hook that timed out has its edits dropped.
 *
 * VERDICTS. Each transaction hook returns a verdict. The first verdict
 * other than SLUICE_CONTINUE decides the phase; plugins after it are not
 * called for that phase. A hook may also return SLUICE_ASYNC and call
 * api->complete() later (from the loop thread) with the real verdict.
 *
 * MEMORY. Strings returned by the host are owned by the host and valid
 * during the hook only (copy what you keep). Strings given to the host are
 * copied. Private data set with *_data_set() is freed by the free
 * callback you pass, which the host always calls: at the end of the
 * transaction (tx data) or of the connection (connection data).
 */
#ifndef SLUICE_PLUGIN_H
#define SLUICE_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on every incompatible change of this header. */
#define SLUICE_PLUGIN_ABI_VERSION 1u

/* ---- verdicts --------------------------------------------------------- */

enum sluice_verdict {
    SLUICE_CONTINUE = 0, /* no opinion: next plugin */
    SLUICE_ACCEPT,       /* accept: skip the rest of the chain for this phase */
    SLUICE_REJECT,       /* 5xx; code/text from api->set_reply or a default */
    SLUICE_TEMPFAIL,     /* 4xx; idem */
    SLUICE_DISCARD,      /* accept and drop the message (logged loudly) */
    SLUICE_QUARANTINE,   /* store the message in the quarantine directory
                            instead of delivering; the client's answer is
                            the instance's `quarantine_reply` setting */
    SLUICE_DISCONNECT,   /* 421 and close the connection */
    SLUICE_ASYNC = 100,  /* the answer comes later through api->complete() */
};

/* SMTP phases, one hook each. */
enum sluice_phase {
    SLUICE_PHASE_CONNECT = 0, /* before the greeting */
    SLUICE_PHASE_HELO,        /* HELO/EHLO */
    SLUICE_PHASE_MAIL,        /* MAIL FROM, before the upstream sees it */
    SLUICE_PHASE_RCPT,        /* each RCPT TO, before the upstream sees it */
    SLUICE_PHASE_DATA,        /* end of data: the whole message */
    SLUICE_PHASE_RESET,       /* end of a transaction (notification) */
    SLUICE_PHASE_CLOSE,       /* end of the connection (notification) */
    SLUICE_PHASE_COUNT
};

#define SLUICE_PHASE_BIT(ph) (1u << (ph))

/* Capabilities a plugin needs; edits outside them are refused (-EPERM). */
enum sluice_capability {
    SLUICE_CAP_HEADERS = 1u << 0,    /* add, insert, change, delete header fields */
    SLUICE_CAP_BODY = 1u << 1,       /* replace the body */
    SLUICE_CAP_SENDER = 1u << 2,     /* change the envelope sender */
    SLUICE_CAP_RECIPIENTS = 1u << 3, /* add and remove recipients */
    SLUICE_CAP_QUARANTINE = 1u << 4, /* may answer SLUICE_QUARANTINE */
};

/* Log levels for api->log. */
enum sluice_log_level {
    SLUICE_LOG_DEBUG = 0,
    SLUICE_LOG_INFO,
    SLUICE_LOG_WARN,
    SLUICE_LOG_ERROR,
};

/* ---- opaque handles ----------------------------------------------------- */

typedef struct sluice_instance sluice_instance; /* one configured plugin instance */
typedef struct sluice_ctx sluice_ctx;           /* one hook call in one session */
typedef struct sluice_counter sluice_counter;   /* a counter on the stats endpoint */

struct sluice_host_api;

/* ---- the descriptor ----------------------------------------------------- */

typedef int (*sluice_hook_fn)(sluice_ctx *ctx);
typedef void (*sluice_notify_fn)(sluice_ctx *ctx);

struct sluice_plugin {
    uint32_t abi_version;     /* SLUICE_PLUGIN_ABI_VERSION */
    uint32_t size;            /* sizeof(struct sluice_plugin) */
    const char *name;         /* short name, [a-z0-9_-] */
    const char *version;      /* the plugin's own version */
    const char *description;  /* one line */
    uint32_t capabilities;    /* SLUICE_CAP_* */
    uint32_t blocking_phases; /* SLUICE_PHASE_BIT(ph) for hooks that may block */

    /*
     * Instance life. init() reads and validates the instance's config keys
     * (api->config_get / api->config_error) and prepares what the hooks
     * need; it returns 0, or -1 after reporting the problems. It also runs
     * under `sluice --check`, where api->checking() is true: validate,
     * don't start anything. *data receives the instance's private state.
     * reload() is called on SIGHUP with the new instance's state already
     * initialised by init(); it may be NULL. shutdown() frees the state
     * once the last transaction using this instance has ended.
     */
    int (*init)(const struct sluice_host_api *api, sluice_instance *inst, void **data);
    void (*shutdown)(void *data);

    /* Hooks; any may be NULL. Transaction hooks return enum sluice_verdict. */
    sluice_hook_fn on_connect;
    sluice_hook_fn on_helo;
    sluice_hook_fn on_mail;
    sluice_hook_fn on_rcpt;
    sluice_hook_fn on_data;
    sluice_notify_fn on_reset;
    sluice_notify_fn on_close;
};

/* The one exported symbol. */
#define SLUICE_PLUGIN_SYMBOL "sluice_plugin"

#define SLUICE_PLUGIN_DEFINE(...)                                                                  \
    __attribute__((visibility("default")))                                                         \
    const struct sluice_plugin sluice_plugin = {.abi_version = SLUICE_PLUGIN_ABI_VERSION,          \
                                                .size = sizeof(struct sluice_plugin),              \
                                                __VA_ARGS__}

/* ---- a header field ------------------------------------------------------ */

struct sluice_header {
    uint32_t size;    /* sizeof(struct sluice_header), set by the caller */
    const char *name; /* field name as written, not NUL-terminated */
    size_t name_len;
    const char *value; /* raw value after the colon, folding kept, no final CRLF */
    size_t value_len;
};

/* ---- the host's function table ------------------------------------------- */

struct sluice_host_api {
    uint32_t size;    /* sizeof the table the host was built with */
    uint32_t version; /* SLUICE_PLUGIN_ABI_VERSION of the host */

    /* -- instance: configuration, logging, counters (any time) -- */

    const char *(*instance_name)(const sluice_instance *inst);
    /* Value of `key` in the instance's [plugin NAME] section, or NULL. */
    const char *(*config_get)(const sluice_instance *inst, const char *key);
    /* Report a configuration problem; printed as "FILE:LINE: [NAME] key: msg"
     * (the line of `key`, or of the section when key is NULL or unset). */
    void (*config_error)(sluice_instance *inst, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /* True under `sluice --check`. */
    int (*checking)(const sluice_instance *inst);
    /* Log through sluice's logger, prefixed with the instance name (and the
     * session id when given a ctx via log_ctx). Thread-safe. */
    void (*log)(const sluice_instance *inst, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /* A counter named sluice_plugin_<instance>_<name>_total on /metrics,
     * optionally with one label of bounded cardinality (values past
     * max_label_values are counted as "other"). Create at init. */
    sluice_counter *(*counter_new)(sluice_instance *inst, const char *name, const char *help,
                                   const char *label_name, unsigned max_label_values);
    /* Thread-safe; label_value NULL when the counter has no label. */
    void (*counter_add)(sluice_counter *c, const char *label_value, uint64_t n);

    /* -- hook context: the session -- */

    sluice_instance *(*instance)(sluice_ctx *ctx);
    void *(*instance_data)(sluice_ctx *ctx);
    enum sluice_phase (*phase)(sluice_ctx *ctx);
    void (*log_ctx)(sluice_ctx *ctx, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    const char *(*session_id)(sluice_ctx *ctx);
    const char *(*client_addr)(sluice_ctx *ctx); /* "192.0.2.1" */
    int (*client_port)(sluice_ctx *ctx);
    const char *(*client_name)(sluice_ctx *ctx); /* verified reverse name or "" */
    const char *(*helo)(sluice_ctx *ctx);        /* "" before HELO/EHLO */
    const char *(*tls_version)(sluice_ctx *ctx); /* "" without TLS */
    const char *(*tls_cipher)(sluice_ctx *ctx);
    const char *(*auth_user)(sluice_ctx *ctx); /* "" when not authenticated */

    /* -- hook context: the envelope -- */

    const char *(*sender)(sluice_ctx *ctx);        /* without <>; "" for the null sender */
    const char *(*sender_params)(sluice_ctx *ctx); /* ESMTP params of MAIL, "" if none */
    size_t (*rcpt_count)(sluice_ctx *ctx);         /* accepted recipients so far */
    const char *(*rcpt)(sluice_ctx *ctx, size_t i);
    const char *(*rcpt_params)(sluice_ctx *ctx, size_t i);
    /* In the RCPT phase: the recipient being decided. */
    const char *(*current_rcpt)(sluice_ctx *ctx);

    /* -- hook context: the message (DATA phase) --
     * The message as it stands after the edits of earlier plugins:
     * canonical form (CRLF line ends, not dot-stuffed). */
    int (*message)(sluice_ctx *ctx, const char **data, size_t *len);
    size_t (*header_count)(sluice_ctx *ctx);
    /* The i-th header field in message order; 0 or -ENOENT. */
    int (*header_at)(sluice_ctx *ctx, size_t i, struct sluice_header *out);
    /* The nth (0-based) field called `name` (case-insensitive); its value
     * unfolded (CRLF before WSP removed, leading WSP trimmed) into a
     * host-owned string, or NULL. */
    const char *(*header_get)(sluice_ctx *ctx, const char *name, size_t nth);
    int (*body)(sluice_ctx *ctx, const char **data, size_t *len);

    /* -- edits (need the matching capability; 0 or negative errno) --
     * Values are given unfolded or folded; the host folds long values at
     * 78 columns and refuses values with bare CR/LF or NUL. */
    int (*header_add)(sluice_ctx *ctx, const char *name, const char *value); /* at the end */
    int (*header_insert)(sluice_ctx *ctx, size_t index, const char *name, const char *value);
    /* Change the nth field called `name`; value NULL deletes it. */
    int (*header_change)(sluice_ctx *ctx, const char *name, size_t nth, const char *value);
    int (*header_delete)(sluice_ctx *ctx, const char *name, size_t nth);
    int (*body_replace)(sluice_ctx *ctx, const char *data, size_t len);
    int (*sender_change)(sluice_ctx *ctx, const char *addr, const char *params);
    int (*rcpt_add)(sluice_ctx *ctx, const char *addr, const char *params);
    int (*rcpt_remove)(sluice_ctx *ctx, const char *addr);

    /* -- the transaction's verdict record -- */

    /* Add to the transaction's score and record a symbol (name + why). */
    void (*symbol_add)(sluice_ctx *ctx, const char *name, double score, const char *description);
    double (*score)(sluice_ctx *ctx);
    int (*has_symbol)(sluice_ctx *ctx, const char *name);
    /* The reply for a REJECT / TEMPFAIL / DISCONNECT verdict. code must
     * match the verdict class (5xx / 4xx); enh is "x.y.z"; text one line. */
    void (*set_reply)(sluice_ctx *ctx, int code, const char *enh, const char *text);

    /* -- private data -- */

    void (*conn_data_set)(sluice_ctx *ctx, void *data, void (*free_fn)(void *));
    void *(*conn_data_get)(sluice_ctx *ctx);
    void (*tx_data_set)(sluice_ctx *ctx, void *data, void (*free_fn)(void *));
    void *(*tx_data_get)(sluice_ctx *ctx);

    /* -- asynchronous completion --
     * For hooks that returned SLUICE_ASYNC: deliver the verdict. Call it
     * exactly once, on the loop thread. The ctx stays valid until then,
     * even if the host gave up waiting (timeout); the late verdict and
     * edits are then ignored. */
    void (*complete)(sluice_ctx *ctx, int verdict);
    /* The host's libuv loop (uv_loop_t *) for the plugin's own I/O. */
    void *(*event_loop)(sluice_ctx *ctx);
};

/* True when the host's table has member `m` (for members added later). */
#define SLUICE_API_HAS(api, m)                                                                     \
    ((api)->size >= offsetof(struct sluice_host_api, m) + sizeof((api)->m))

#ifdef __cplusplus
}
#endif

#endif
