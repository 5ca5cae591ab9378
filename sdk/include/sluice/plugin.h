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
 * on the thread that runs it. Never block in a non-blocking hook. A hook
 * that returned SLUICE_ASYNC hands its ctx to one thread of the plugin's
 * choosing (the loop, a timer, a worker thread): that thread may use the
 * ctx functions, then calls api->complete() from wherever it is; see
 * `complete` below for the whole contract.
 *
 * EDITS. Changes a hook makes (headers, body, envelope) are recorded and
 * applied when the hook returns (or completes, for asynchronous hooks);
 * later plugins in the chain see them; the message forwarded upstream is
 * the edited one. A hook that timed out has its edits dropped.
 *
 * VERDICTS. Each transaction hook returns a verdict. The first verdict
 * other than SLUICE_CONTINUE decides the phase; plugins after it are not
 * called for that phase. A hook may also return SLUICE_ASYNC and call
 * api->complete() later (from any thread) with the real verdict.
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
    SLUICE_ERROR = 101,  /* the plugin failed: the instance's failure policy
                            applies (and counts for the circuit breaker) */
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
typedef struct sluice_gauge sluice_gauge;       /* a gauge on the stats endpoint */
typedef struct sluice_dns_query sluice_dns_query; /* one DNS lookup in progress */

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
     * On SIGHUP the host loads a whole new chain beside the running one:
     * init() runs for the new instance, then reload() (see the end of this
     * struct) may take over state from the running instance of the same
     * name. shutdown() frees an instance's state once the last transaction
     * using it has ended.
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

    /* Members after on_close are optional: the host checks `size` first. */

    /* SIGHUP: the new instance (new_data, already initialised) may take
     * over state from the running one (old_data): caches, connections.
     * Called on the loop thread; old_data stays in use by transactions in
     * flight, so share or copy, don't steal. May be NULL. */
    void (*reload)(void *old_data, void *new_data);
};

/* The one exported symbol. */
#define SLUICE_PLUGIN_SYMBOL "sluice_plugin"

#define SLUICE_PLUGIN_DEFINE(...)                                                        \
    __attribute__((visibility("default"))) const struct sluice_plugin sluice_plugin = { \
        .abi_version = SLUICE_PLUGIN_ABI_VERSION,                                        \
        .size = sizeof(struct sluice_plugin),                                            \
        __VA_ARGS__}

/* ---- a header field ------------------------------------------------------ */

struct sluice_header {
    uint32_t size;        /* sizeof(struct sluice_header), set by the caller */
    const char *name;     /* field name as written, not NUL-terminated */
    size_t name_len;
    const char *value;    /* raw value after the colon, folding kept, no final CRLF */
    size_t value_len;
};

/* ---- typed configuration keys ---------------------------------------------
 *
 * A plugin describes its keys in a table and lets the host fill its own
 * struct in one call (api->config_load, a member added after ABI 1's first
 * table). Values are read with the grammar of the rest of sluice.conf, so
 * `dns_timeout = 1.5s` in a plugin section is refused exactly like
 * `timeout = 1.5s`; problems are reported like api->config_error does, as
 * "FILE:LINE: [plugin NAME] key: message", every problem of the section at
 * once.
 *
 *   struct my_conf { bool watch; unsigned timeout_ms; uint64_t max; int mode;
 *                    const char *rules; };
 *   static const char *const my_modes[] = {"verify", "sign", NULL};
 *   static const struct sluice_config_key my_keys[] = {
 *       {.name = "watch", .type = SLUICE_CONFIG_BOOL, .def = "yes",
 *        .offset = offsetof(struct my_conf, watch)},
 *       {.name = "timeout", .type = SLUICE_CONFIG_DURATION, .def = "5s",
 *        .min = 100, .max = 60000, .offset = offsetof(struct my_conf, timeout_ms)},
 *       {.name = "mode", .type = SLUICE_CONFIG_ENUM, .choices = my_modes,
 *        .flags = SLUICE_CONFIG_REQUIRED, .offset = offsetof(struct my_conf, mode)},
 *       {.name = NULL}};
 *   if (SLUICE_CONFIG_LOAD(api, inst, my_keys, &conf, SLUICE_CONFIG_STRICT) != 0)
 *       return -1;   (every problem was reported)
 */

enum sluice_config_type {
    SLUICE_CONFIG_BOOL = 1, /* bool: yes|no|true|false|on|off|1|0, any case */
    SLUICE_CONFIG_UNSIGNED, /* unsigned: plain decimal digits */
    SLUICE_CONFIG_DURATION, /* unsigned, in milliseconds: 500ms, 30s, 5m, 1h;
                               a plain number is seconds; no fractions */
    SLUICE_CONFIG_SIZE,     /* uint64_t, in bytes: 65536, 64k, 25M, 1G */
    SLUICE_CONFIG_ENUM,     /* int: the index of the value in `choices`
                               (compared exactly, as the daemon's own keys) */
    SLUICE_CONFIG_PATH,     /* const char *: a file system path, not empty */
    SLUICE_CONFIG_STRING,   /* const char *: the value as written */
};

/* sluice_config_key.flags */
#define SLUICE_CONFIG_REQUIRED (1u << 0)   /* unset is an error ("required key missing") */
#define SLUICE_CONFIG_KEEP_EMPTY (1u << 1) /* STRING: "" is a value, not "unset" */
#define SLUICE_CONFIG_ABSOLUTE (1u << 2)   /* PATH: must start with '/' */
#define SLUICE_CONFIG_PRINTABLE (1u << 3)  /* STRING: printable ASCII only (goes on the wire) */

struct sluice_config_key {
    const char *name; /* the key; NULL ends the table */
    uint32_t type;    /* enum sluice_config_type */
    uint32_t flags;   /* SLUICE_CONFIG_REQUIRED ... */
    size_t offset;    /* of the field in the struct handed to config_load */
    /* The value when the key is unset, written in the key's own syntax
     * ("30s", "25M", "yes"), parsed like a value from the file. NULL: the
     * field is left as it is (so a plugin may preset it). */
    const char *def;
    /* UNSIGNED, DURATION (ms), SIZE (bytes): the accepted range, both
     * ends included; min = max = 0 means no limit. STRING, PATH: max is
     * the longest accepted value (0: any). */
    uint64_t min, max;
    const char *const *choices; /* ENUM: NULL-terminated list of values */
};

/* config_load() flags */
#define SLUICE_CONFIG_STRICT                                                                       \
    (1u << 0) /* a key of the section that is neither in                                           \
                 the table nor one of the host's                                                   \
                 (path, timeout, failure, breaker_*,                                               \
                 quarantine_reply) is an error */

/* ---- DNS on the host's resolver ------------------------------------------
 *
 * api->dns_query (a member added later: check SLUICE_API_HAS) looks a name
 * up on the daemon's own asynchronous resolver (c-ares on the event loop,
 * the [server] dns_* keys: deadlines, bounded concurrency and queue, a TTL
 * cache, the counters of sluice_dns_requests_total). Nothing blocks and no
 * thread waits for the network, so a hook does not hold a pool thread:
 *
 *   static void on_key(void *ud, const struct sluice_dns_answer *ans)
 *   {
 *       struct my_tx *t = ud;       (on the loop thread, never inside dns_query)
 *       if (ans->status == SLUICE_DNS_OK) ... ans->records[0] ...
 *       sluice_api->complete(t->ctx, SLUICE_CONTINUE);
 *   }
 *   static int on_data(sluice_ctx *ctx)   (a non-blocking hook)
 *   {
 *       struct sluice_dns_request rq = {.size = sizeof rq, .type = SLUICE_DNS_TXT,
 *                                       .name = "sel._domainkey.example.com"};
 *       t->q = sluice_api->dns_query(ctx, &rq, on_key, t);
 *       return t->q ? SLUICE_ASYNC : SLUICE_CONTINUE;
 *   }
 */

/* Record types (the DNS numbers). */
enum sluice_dns_type {
    SLUICE_DNS_A = 1,
    SLUICE_DNS_PTR = 12,
    SLUICE_DNS_MX = 15, /* added later: a host without it refuses the request (NULL) */
    SLUICE_DNS_TXT = 16,
    SLUICE_DNS_AAAA = 28,
};

/* What a lookup came to. */
enum sluice_dns_status {
    SLUICE_DNS_OK = 0,       /* count >= 1 records */
    SLUICE_DNS_NXDOMAIN = 1, /* the name does not exist */
    SLUICE_DNS_NODATA = 2,   /* the name exists, no record of that type */
    SLUICE_DNS_TEMPFAIL = 3, /* SERVFAIL, REFUSED, network trouble, or the host's
                                queue of waiting lookups was full */
    SLUICE_DNS_TIMEOUT = 4,  /* no answer before the deadline */
    SLUICE_DNS_BADREPLY = 5, /* an answer that could not be parsed */
};

struct sluice_dns_request {
    uint32_t size;       /* sizeof(struct sluice_dns_request), set by the caller */
    uint32_t type;       /* enum sluice_dns_type */
    const char *name;    /* "sel._domainkey.example.com" (no search domains) */
    unsigned timeout_ms; /* the deadline; 0: the daemon's dns_timeout */
    /* NULL: the daemon's servers ([server] dns_servers or resolv.conf).
     * Else "IP[:PORT], [IPv6]:PORT" for servers of the plugin's own (a
     * few distinct lists at most; each gets its own cache and bounds). */
    const char *servers;
};

struct sluice_dns_answer {
    uint32_t size; /* sizeof(struct sluice_dns_answer) as the host has it */
    int status;    /* enum sluice_dns_status */
    uint32_t ttl;  /* seconds the answer stays valid (what is left of it) */
    size_t count;  /* records; 0 unless SLUICE_DNS_OK */
    /* A and AAAA: addresses as text; PTR: names; MX: "PREFERENCE HOST"
     * ("10 mx.example.com"); TXT: each record's character-strings joined
     * into one string. Host-owned, valid during the callback only. */
    const char *const *records;
};

typedef void (*sluice_dns_cb)(void *ud, const struct sluice_dns_answer *ans);

/* ---- shared state ----------------------------------------------------------
 *
 * api->state_call (a member added later: check SLUICE_API_HAS) keeps state
 * across sessions in the daemon's store ([state] section): counters over a
 * window (rate limits), values with a time to live (greylisting), sets
 * (lists). The same calls work whichever store the admin configures, the
 * in-process one or one shared by several sluice instances, so a plugin
 * never assumes the answer is local. Keys are the plugin instance's own:
 * the host puts the instance name in front ("NAME:" + key), so the same
 * instance name on every sluice instance shares its keys and two plugins
 * never see each other's. Semantics are Redis's (INCRBY, GET, SET PX, DEL,
 * SADD, SISMEMBER); a counter's window starts at its first increment and
 * later increments keep it (a fixed window).
 *
 *   static void on_count(void *ud, const struct sluice_state_answer *a)
 *   {
 *       struct my_tx *t = ud;       (loop thread, never inside state_call)
 *       t->op = NULL;
 *       if (a->status == 0 && a->num > t->limit)
 *           sluice_api->set_reply(t->ctx, 451, "4.7.0", "Too many messages, slow down");
 *       sluice_api->complete(t->ctx, a->status == 0 && a->num > t->limit
 *                                        ? SLUICE_TEMPFAIL : SLUICE_CONTINUE);
 *   }
 *   static int on_mail(sluice_ctx *ctx)   (a non-blocking hook)
 *   {
 *       char key[300];
 *       snprintf(key, sizeof key, "msgs:%s", sluice_api->client_addr(ctx));
 *       struct sluice_state_request rq = {.size = sizeof rq, .op = SLUICE_STATE_INCR,
 *                                         .key = key, .delta = 1, .ttl_ms = 60000};
 *       t->op = sluice_api->state_call(sluice_api->instance(ctx), &rq, on_count, t);
 *       return t->op ? SLUICE_ASYNC : SLUICE_CONTINUE;
 *   }
 */

enum sluice_state_opcode {
    SLUICE_STATE_INCR = 1,  /* add delta; a new counter expires ttl_ms later (0: never) */
    SLUICE_STATE_GET,       /* the value (a counter as decimal text) */
    SLUICE_STATE_SET,       /* store value (any bytes), expiring ttl_ms later (0: never) */
    SLUICE_STATE_DEL,       /* num = 1 when the key was there */
    SLUICE_STATE_SADD,      /* add member value; num = 1 when new; ttl_ms > 0 renews
                               the set's expiry */
    SLUICE_STATE_SISMEMBER, /* num = 1 when value is a member */
    /* Added later (a host without them refuses the request: NULL). Several
     * keys in one round trip (keys, nkeys below; `key` is not used by MGET
     * and may be NULL): */
    SLUICE_STATE_MGET,  /* the values of keys[0..nkeys) (MGET): answer's values[i] is
                           NULL when keys[i] is not there or holds a set */
    SLUICE_STATE_MINCR, /* add deltas[i] to counter keys[i], all in one atomic step:
                           nothing is applied when one of them holds a non-number
                           (-EPROTOTYPE) or would leave +-2^53 (-ERANGE), or when
                           the in-process store cannot hold all the keys at once
                           (-ENOSPC; its max_keys, max_memory). With a `key`
                           (may be NULL): only when that key is not there, and it is
                           then set to `value` expiring ttl_ms later (0: never), in the
                           same step; num = 1 when applied, 0 when the key was there.
                           The counters get no expiry. Keys must be distinct,
                           and `key` not one of them: refused (NULL) otherwise. */
};

/* Keys in one MGET or MINCR (a message's Bayes tokens fit in one call). */
#define SLUICE_STATE_MULTI_MAX 4096

#define SLUICE_STATE_KEY_MAX 1000          /* bytes of key (the host adds the name) */
#define SLUICE_STATE_VALUE_MAX (64 * 1024) /* bytes of a value or member */

struct sluice_state_request {
    uint32_t size;     /* sizeof(struct sluice_state_request), set by the caller */
    uint32_t op;       /* enum sluice_state_opcode */
    const char *key;   /* NUL-terminated, not empty */
    const char *value; /* SET: the value; SADD, SISMEMBER: the member */
    size_t len;        /* bytes of value */
    int64_t delta;     /* INCR */
    uint64_t ttl_ms;   /* see the opcodes */
    /* Added later: MGET, MINCR (the host reads them when size covers them). */
    const char *const *keys; /* nkeys keys, each like `key` (namespaced the same way) */
    const int64_t *deltas;   /* MINCR: one per key, each within +-2^53 */
    size_t nkeys;            /* 1 .. SLUICE_STATE_MULTI_MAX */
};

struct sluice_state_answer {
    uint32_t size; /* sizeof(struct sluice_state_answer) as the host has it */
    /* 0; -ENOENT: GET of a key that is not there (or expired); -EPROTOTYPE:
     * the key holds another type; -ERANGE: the counter would overflow;
     * -ENOSPC: the set is full; -EAGAIN: the store cannot be reached or
     * did not answer in time, -EIO: it answered something unexpected (the
     * plugin decides: allow, or tempfail) */
    int status;
    int64_t num;       /* INCR: the value after it; DEL, SADD, SISMEMBER: see above */
    const char *value; /* GET: host-owned, valid during the callback only */
    size_t len;        /* GET: bytes of value */
    int64_t ttl_ms;    /* INCR, GET: time left; -1: no expiry */
    /* Added later (check size): MGET: count = nkeys values in key order,
     * values[i] NULL when absent, lens[i] its bytes; host-owned, valid
     * during the callback only. */
    const char *const *values;
    const size_t *lens;
    size_t count;
};

typedef void (*sluice_state_cb)(void *ud, const struct sluice_state_answer *ans);
typedef struct sluice_state_op sluice_state_op; /* one state call in progress */

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
    const char *(*auth_user)(sluice_ctx *ctx);   /* "" when not authenticated */

    /* -- hook context: the envelope -- */

    const char *(*sender)(sluice_ctx *ctx); /* without <>; "" for the null sender */
    const char *(*sender_params)(sluice_ctx *ctx); /* ESMTP params of MAIL, "" if none */
    size_t (*rcpt_count)(sluice_ctx *ctx);  /* accepted recipients so far */
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
    int (*header_add)(sluice_ctx *ctx, const char *name, const char *value);    /* at the end */
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
     * exactly once per SLUICE_ASYNC, never for a hook that returned
     * anything else, from any thread: the loop thread (inside the hook, a
     * timer or an I/O callback of the plugin) or a thread of the plugin's
     * own. Called off the loop thread, it queues the answer and returns at
     * once; the host applies it on the loop thread a moment later.
     * Until complete() the ctx belongs to whoever will call it: that one
     * thread may use every ctx function (read the transaction, edit,
     * set_reply, tx_data), as a blocking hook does on its pool thread;
     * after complete() the ctx must not be touched. The ctx stays valid
     * until complete() even if the host gave up waiting (timeout): the
     * instance's failure policy has then applied and the late verdict and
     * edits are dropped, so a plugin must still call complete() once to
     * let the host free the ctx. */
    void (*complete)(sluice_ctx *ctx, int verdict);
    /* The host's libuv loop (uv_loop_t *) for the plugin's own I/O. */
    void *(*event_loop)(sluice_ctx *ctx);

    /* ---- added after ABI 1's first table: check SLUICE_API_HAS() ---- */

    /* In the RCPT phase: the ESMTP parameters of the recipient being
     * decided (" NOTIFY=... ORCPT=...", as forwarded), "" if none. A rewrite
     * (rcpt_remove(current) + rcpt_add(new, NULL)) keeps them. */
    const char *(*current_rcpt_params)(sluice_ctx *ctx);

    /* Fill the struct at `base` from the instance's [plugin NAME] section
     * as `keys` says (see "typed configuration keys" above): each key
     * present is parsed with the daemon's grammar and range-checked, an
     * unset key gets its default. key_size is sizeof(struct
     * sluice_config_key) as the plugin was built (SLUICE_CONFIG_LOAD passes
     * it). Every problem is reported through the config_error path; then
     * -1 (the struct may be partly filled), else 0. PATH and STRING values
     * point into the host's copy of the configuration and stay valid until
     * the instance's shutdown() has returned. Call it from init() (or
     * later on the loop thread). */
    int (*config_load)(sluice_instance *inst, const struct sluice_config_key *keys, size_t key_size,
                       void *base, uint32_t flags);

    /* Fold a header field value exactly as the host folds what header_add
     * and header_change receive (at white space before column 78, never a
     * line over 998 octets, an already folded value kept as is), for a
     * field called `name`. Writes the raw value as the field will carry it
     * after the colon (leading space included, CRLF + WSP at each fold, no
     * final CRLF) into out[0..outlen) NUL-terminated, like snprintf, and
     * returns its length (a return >= outlen means out was too small), or
     * -EINVAL when the name or value is not acceptable (bare CR/LF, NUL, a
     * word that cannot be folded under 998 octets). Pure and thread-safe:
     * any thread, any time, no ctx needed. */
    int (*header_fold)(const char *name, const char *value, char *out, size_t outlen);

    /* Start a DNS lookup (see "DNS on the host's resolver" above). Loop
     * thread only: from a non-blocking hook, or from the plugin's own
     * loop callbacks (a hook that returned SLUICE_ASYNC, a timer, another
     * DNS callback); ctx may be NULL there. Never from a blocking hook or
     * a thread of the plugin's: then NULL. cb runs exactly once, on the
     * loop thread, never inside dns_query() itself (not even for a cached
     * answer), unless dns_cancel() came first. NULL when the request is
     * unusable (bad name or type, bad servers, resolver not running): then
     * cb is never called. The lookup does not belong to the ctx: cancel
     * what you no longer wait for before complete() frees what ud points
     * to. */
    sluice_dns_query *(*dns_query)(sluice_ctx *ctx, const struct sluice_dns_request *rq,
                                   sluice_dns_cb cb, void *ud);
    /* Loop thread only, before the callback ran: it never will. */
    void (*dns_cancel)(sluice_dns_query *q);

    /* The i-th symbol (0-based) that earlier plugins recorded in this
     * transaction, in order (this hook's own symbol_add calls are not in
     * it until the hook is done): its name (host-owned, valid during the
     * hook) and score. 0, or -ENOENT past the last. Any hook context. */
    int (*symbol_at)(sluice_ctx *ctx, size_t i, const char **name, double *score);

    /* set_reply with several lines (a multi-line SMTP reply: "550-5.7.1
     * first", "550 5.7.1 last"), e.g. a milter's own reply. Each line is
     * printable ASCII (anything else becomes a space); the host keeps the
     * first SLUICE_REPLY_LINES_MAX lines and SLUICE_REPLY_TEXT_MAX bytes
     * of text in all, whole lines only (at least part of the first).
     * n == 0 is set_reply with an empty text. */
    void (*set_reply_lines)(sluice_ctx *ctx, int code, const char *enh, const char *const *lines,
                            size_t n);

    /* The client certificate of the inbound TLS session, when the
     * listener asked for one (tls_verify_client) and it passed the
     * listener's checks (its CA, its pinned fingerprints); "" otherwise
     * (no TLS, no certificate, or one that did not pass under
     * `optional`). Subject and issuer are RFC 2253 strings
     * ("CN=client.example,O=Example"), printable ASCII; the fingerprint
     * is "sha256:" and 64 lower-case hex digits of the DER certificate,
     * the form tls_client_fingerprints takes. Host-owned, valid during
     * the hook. Any hook context. */
    const char *(*tls_peer_subject)(sluice_ctx *ctx);
    const char *(*tls_peer_issuer)(sluice_ctx *ctx);
    const char *(*tls_peer_fingerprint)(sluice_ctx *ctx);

    /* One operation on the shared state (see "shared state" above). Loop
     * thread only, like dns_query: from a non-blocking hook or the
     * plugin's own loop callbacks; inst is the plugin's own instance. cb
     * runs exactly once, on the loop thread, never inside state_call
     * itself, unless state_cancel() came first. NULL when the request is
     * unusable (bad opcode, empty or too long key, too long value, not on
     * the loop thread): then cb is never called. Cancel what you no longer
     * wait for before complete() frees what ud points to; a cancelled
     * write may still have been applied. */
    sluice_state_op *(*state_call)(sluice_instance *inst, const struct sluice_state_request *rq,
                                   sluice_state_cb cb, void *ud);
    /* Loop thread only, before the callback ran: it never will. */
    void (*state_cancel)(sluice_state_op *op);

    /* A gauge sluice_plugin_<instance>_<name> on /metrics (and under
     * "gauges" in /stats): series the plugin sets and removes, for
     * current values a counter cannot show (a top-N list, a connection's
     * state). label1 and label2 name up to two labels (NULL for none);
     * names follow counter_new's rules, and a name ending in _total,
     * _bucket, _sum, _count, _info or _created is refused. At most
     * max_series series (1..1000) live at once. The same instance and name
     * again (a reload) returns the same gauge with its series, bounded by
     * the new max_series: clear it to start afresh. NULL when refused, under --check, or when the
     * host has 64 gauges. Create at init. */
    sluice_gauge *(*gauge_new)(sluice_instance *inst, const char *name, const char *help,
                               const char *label1, const char *label2, unsigned max_series);
    /* Set series (v1, v2) to value (label values are copied as printable
     * ASCII, at most 95 bytes; values of labels the gauge lacks are
     * ignored). expires_ms is the Unix time in ms at which the series
     * disappears by itself (0: never), so a list stays honest when no
     * event comes to update it. 0, -ENOSPC when max_series live series
     * exist and this one is new, -EINVAL for a NaN or infinite value.
     * Label values longer than 95 bytes or with other bytes than
     * printable ASCII can meet in one series: make them distinct first
     * (a hash suffix). Any thread. */
    int (*gauge_set)(sluice_gauge *g, const char *v1, const char *v2, double value,
                     uint64_t expires_ms);
    /* 0, or -ENOENT. Any thread. */
    int (*gauge_remove)(sluice_gauge *g, const char *v1, const char *v2);
    void (*gauge_clear)(sluice_gauge *g); /* every series; any thread */
};

/* What set_reply_lines keeps. */
#define SLUICE_REPLY_LINES_MAX 16
#define SLUICE_REPLY_TEXT_MAX 960

/* True when the host's table has member `m` (for members added later). */
#define SLUICE_API_HAS(api, m) \
    ((api)->size >= offsetof(struct sluice_host_api, m) + sizeof((api)->m))

/*
 * The host hands every instance the same table. Hooks only get a ctx, so a
 * plugin keeps the table in one place: SLUICE_API_DECLARE; at file scope
 * declares `sluice_api` (private to the plugin), SLUICE_API_STORE(api) in
 * init() sets it. Written on the loop thread before any hook of the
 * instance can run, read from every thread afterwards.
 */
#define SLUICE_API_DECLARE static const struct sluice_host_api *sluice_api
#define SLUICE_API_STORE(host) ((void)(sluice_api = (host)))

/* api->config_load with the key size this plugin was built with. */
#define SLUICE_CONFIG_LOAD(api, inst, keys, base, flags)                                           \
    ((api)->config_load((inst), (keys), sizeof(struct sluice_config_key), (base), (flags)))

#ifdef __cplusplus
}
#endif

#endif
