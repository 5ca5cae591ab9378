/* SPDX-License-Identifier: GPL-2.0-or-later */
/* api: the host API table; see api.h. */
#include "api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "ctx.h"
#include "host.h"
#include "log.h"
#include "msg.h"
#include "plugcfg.h"
#include "plugdone.h"
#include "plughdr.h"
#include "cmd.h"
#include "dns.h"
#include "state.h"
#include "stats.h"
#include "stats_gauge.h"
#include "xalloc.h"

static const struct sluice_host_api host_api;

static const char *api_instance_name(const sluice_instance *inst)
{
    return inst->name;
}

static const char *api_config_get(const sluice_instance *inst, const char *key)
{
    char section[300];
    snprintf(section, sizeof section, "plugin %s", inst->name);
    return cfg_get(inst->cfg, section, key, NULL);
}

static void api_config_error(sluice_instance *inst, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void api_config_error(sluice_instance *inst, const char *key, const char *fmt, ...)
{
    char section[300];
    snprintf(section, sizeof section, "plugin %s", inst->name);
    int line = inst->settings.line;
    if (key)
        cfg_get(inst->cfg, section, key, &line);
    if (!line)
        line = inst->settings.line;
    char msgtxt[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msgtxt, sizeof msgtxt, fmt, ap);
    va_end(ap);
    if (inst->errors) {
        if (key)
            chain_inst_error(inst, line, "%s: %s", key, msgtxt);
        else
            chain_inst_error(inst, line, "%s", msgtxt);
    } else {
        log_error("%s:%d: [plugin %s] %s%s%s", chain_cfg_file(inst->cfg), line, inst->name,
                  key ? key : "", key ? ": " : "", msgtxt);
    }
}

static int api_checking(const sluice_instance *inst)
{
    return inst->checking;
}

static int to_log_level(int level)
{
    switch (level) {
    case SLUICE_LOG_DEBUG:
        return LOG_LVL_DEBUG;
    case SLUICE_LOG_WARN:
        return LOG_LVL_WARN;
    case SLUICE_LOG_ERROR:
        return LOG_LVL_ERROR;
    default:
        return LOG_LVL_INFO;
    }
}

static void api_log(const sluice_instance *inst, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void api_log(const sluice_instance *inst, int level, const char *fmt, ...)
{
    enum log_level l = (enum log_level)to_log_level(level);
    if (!log_enabled(l))
        return;
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    log_msg(l, "plugin=%s %s", inst->name, text);
}

static sluice_counter *api_counter_new(sluice_instance *inst, const char *name, const char *help,
                                       const char *label_name, unsigned max_label_values)
{
    if (inst->checking)
        return NULL;
    char full[256];
    snprintf(full, sizeof full, "plugin_%s_%s", inst->name, name);
    return (sluice_counter *)stats_plugin_counter(full, help, label_name, max_label_values);
}

static sluice_gauge *api_gauge_new(sluice_instance *inst, const char *name, const char *help,
                                   const char *label1, const char *label2, unsigned max_series)
{
    if (inst->checking)
        return NULL;
    char full[256];
    snprintf(full, sizeof full, "plugin_%s_%s", inst->name, name);
    return (sluice_gauge *)stats_gauge_new(full, help, label1, label2, max_series);
}

static int api_gauge_set(sluice_gauge *g, const char *v1, const char *v2, double value,
                         uint64_t expires_ms)
{
    return stats_gauge_set((struct stats_gauge *)g, v1, v2, value, expires_ms);
}

static int api_gauge_remove(sluice_gauge *g, const char *v1, const char *v2)
{
    return stats_gauge_remove((struct stats_gauge *)g, v1, v2);
}

static void api_gauge_clear(sluice_gauge *g)
{
    stats_gauge_clear((struct stats_gauge *)g);
}

static void api_counter_add(sluice_counter *c, const char *label_value, uint64_t n)
{
    stats_counter_add((struct stats_counter *)c, label_value, n);
}

static sluice_instance *api_instance(sluice_ctx *ctx)
{
    return ctx->inst;
}

static void *api_instance_data(sluice_ctx *ctx)
{
    return ctx->inst->data;
}

static enum sluice_phase api_phase(sluice_ctx *ctx)
{
    return ctx->phase;
}

static void api_log_ctx(sluice_ctx *ctx, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void api_log_ctx(sluice_ctx *ctx, int level, const char *fmt, ...)
{
    enum log_level l = (enum log_level)to_log_level(level);
    if (!log_enabled(l))
        return;
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    log_conn_msg(host_conn_log(ctx->hc), l, "plugin=%s %s", ctx->inst->name, text);
}

static const char *api_session_id(sluice_ctx *ctx)
{
    return ctx->tx->client.sid;
}
static const char *api_client_addr(sluice_ctx *ctx)
{
    return ctx->tx->client.client_addr;
}
static int api_client_port(sluice_ctx *ctx)
{
    return ctx->tx->client.client_port;
}
static const char *api_client_name(sluice_ctx *ctx)
{
    return ctx->tx->client.client_name;
}
static const char *api_helo(sluice_ctx *ctx)
{
    return ctx->tx->client.helo;
}
static const char *api_tls_version(sluice_ctx *ctx)
{
    return ctx->tx->client.tls_version;
}
static const char *api_tls_cipher(sluice_ctx *ctx)
{
    return ctx->tx->client.tls_cipher;
}
static const char *api_tls_peer_subject(sluice_ctx *ctx)
{
    return ctx->tx->client.tls_peer_subject;
}
static const char *api_tls_peer_issuer(sluice_ctx *ctx)
{
    return ctx->tx->client.tls_peer_issuer;
}
static const char *api_tls_peer_fingerprint(sluice_ctx *ctx)
{
    return ctx->tx->client.tls_peer_fp;
}
static const char *api_auth_user(sluice_ctx *ctx)
{
    return ctx->tx->client.auth_user;
}

static const char *api_sender(sluice_ctx *ctx)
{
    return ctx->tx->sender ? ctx->tx->sender : "";
}

static const char *api_sender_params(sluice_ctx *ctx)
{
    return ctx->tx->sender_params ? ctx->tx->sender_params : "";
}

/* Recipients visible to plugins: accepted or added, not removed. */
static size_t api_rcpt_count(sluice_ctx *ctx)
{
    return tx_visible_count(ctx->tx);
}

static const char *api_rcpt(sluice_ctx *ctx, size_t i)
{
    const struct tx_rcpt *r = tx_visible_at(ctx->tx, i);
    return r ? r->addr : NULL;
}

static const char *api_rcpt_params(sluice_ctx *ctx, size_t i)
{
    const struct tx_rcpt *r = tx_visible_at(ctx->tx, i);
    return r ? r->params : NULL;
}

static const char *api_current_rcpt(sluice_ctx *ctx)
{
    return ctx->phase == SLUICE_PHASE_RCPT && ctx->tx->cur_set ? ctx->tx->cur.addr : NULL;
}

static const char *api_current_rcpt_params(sluice_ctx *ctx)
{
    if (ctx->phase != SLUICE_PHASE_RCPT || !ctx->tx->cur_set)
        return NULL;
    return ctx->tx->cur.params;
}

static int api_message(sluice_ctx *ctx, const char **data, size_t *len)
{
    if (!ctx->tx->msg)
        return -ENOENT;
    tx_render(ctx->tx, data, len);
    return 0;
}

static size_t api_header_count(sluice_ctx *ctx)
{
    return ctx->tx->msg ? msg_field_count(ctx->tx->msg) : 0;
}

static int api_header_at(sluice_ctx *ctx, size_t i, struct sluice_header *out)
{
    if (!ctx->tx->msg || !out || out->size < sizeof *out)
        return -EINVAL;
    const struct msg_field *f = msg_field_at(ctx->tx->msg, i);
    if (!f)
        return -ENOENT;
    out->name = f->name;
    out->name_len = f->name_len;
    out->value = f->value;
    out->value_len = f->value_len;
    return 0;
}

static const char *api_header_get(sluice_ctx *ctx, const char *name, size_t nth)
{
    if (!ctx->tx->msg || !name)
        return NULL;
    long i = msg_field_find(ctx->tx->msg, name, nth);
    if (i < 0)
        return NULL;
    const struct msg_field *f = msg_field_at(ctx->tx->msg, (size_t)i);
    buf_t b = BUF_INIT;
    msg_unfold(f->value, f->value_len, &b);
    char *s = b.ptr ? b.ptr : xstrdup("");
    return ctx_keep(ctx, s);
}

static int api_body(sluice_ctx *ctx, const char **data, size_t *len)
{
    if (!ctx->tx->msg)
        return -ENOENT;
    msg_body(ctx->tx->msg, data, len);
    return 0;
}

static bool has_cap(sluice_ctx *ctx, uint32_t cap)
{
    if (ctx->inst->desc->capabilities & cap)
        return true;
    log_c_warn(host_conn_log(ctx->hc), "plugin=%s attempted an edit without the capability for it",
               ctx->inst->name);
    return false;
}

/* Validate a header name/value early, so the plugin gets the error. */
static int check_header(const char *name, const char *value)
{
    if (name) {
        size_t n = strlen(name);
        if (n == 0 || n > 76)
            return -EINVAL;
        for (const char *p = name; *p; p++)
            if ((unsigned char)*p <= 32 || (unsigned char)*p >= 127 || *p == ':')
                return -EINVAL;
    }
    if (value) {
        for (const char *p = value; *p; p++) {
            if (*p == '\r' && !(p[1] == '\n' && (p[2] == ' ' || p[2] == '\t')))
                return -EINVAL;
            if (*p == '\n' && !(p > value && p[-1] == '\r'))
                return -EINVAL;
        }
    }
    return 0;
}

static int journal_header(sluice_ctx *ctx, enum ctx_edit_kind k, size_t index, const char *name,
                          const char *value)
{
    if (ctx->phase != SLUICE_PHASE_DATA)
        return -EPERM;
    if (!has_cap(ctx, SLUICE_CAP_HEADERS))
        return -EPERM;
    int rc = check_header(name, value);
    if (rc)
        return rc;
    struct ctx_edit *e = ctx_edit_new(ctx, k);
    e->index = index;
    e->name = xstrdup(name);
    e->value = xstrdup(value);
    return 0;
}

static int api_header_add(sluice_ctx *ctx, const char *name, const char *value)
{
    if (!name || !value)
        return -EINVAL;
    return journal_header(ctx, CTX_E_HDR_ADD, 0, name, value);
}

static int api_header_insert(sluice_ctx *ctx, size_t index, const char *name, const char *value)
{
    if (!name || !value)
        return -EINVAL;
    return journal_header(ctx, CTX_E_HDR_INSERT, index, name, value);
}

static int api_header_change(sluice_ctx *ctx, const char *name, size_t nth, const char *value)
{
    if (!name)
        return -EINVAL;
    if (!ctx->tx->msg || msg_field_find(ctx->tx->msg, name, nth) < 0)
        return -ENOENT;
    return journal_header(ctx, value ? CTX_E_HDR_CHANGE : CTX_E_HDR_DELETE, nth, name, value);
}

static int api_header_delete(sluice_ctx *ctx, const char *name, size_t nth)
{
    return api_header_change(ctx, name, nth, NULL);
}

static int api_body_replace(sluice_ctx *ctx, const char *data, size_t len)
{
    if (ctx->phase != SLUICE_PHASE_DATA || !has_cap(ctx, SLUICE_CAP_BODY))
        return -EPERM;
    if (!data && len)
        return -EINVAL;
    if (memchr(data ? data : "", 0, len))
        return -EINVAL;
    struct ctx_edit *e = ctx_edit_new(ctx, CTX_E_BODY);
    e->data = xmalloc(len ? len : 1);
    if (len)
        memcpy(e->data, data, len);
    e->len = len;
    return 0;
}

static int journal_addr(sluice_ctx *ctx, enum ctx_edit_kind k, uint32_t cap, const char *addr,
                        const char *params)
{
    if (ctx->phase != SLUICE_PHASE_MAIL && ctx->phase != SLUICE_PHASE_RCPT &&
        ctx->phase != SLUICE_PHASE_DATA)
        return -EPERM;
    if (!has_cap(ctx, cap))
        return -EPERM;
    if (!addr)
        return -EINVAL;
    /* Never let a plugin produce a malformed command for the upstream. */
    if (!(k == CTX_E_SENDER && addr[0] == 0) && !cmd_mailbox_valid(addr, strlen(addr), true))
        return -EINVAL;
    if (params) {
        for (const char *p = params; *p; p++)
            if ((unsigned char)*p < 32 || (unsigned char)*p > 126)
                return -EINVAL;
    }
    struct ctx_edit *e = ctx_edit_new(ctx, k);
    e->value = xstrdup(addr);
    e->params = xstrdup(params ? params : "");
    return 0;
}

static int api_sender_change(sluice_ctx *ctx, const char *addr, const char *params)
{
    return journal_addr(ctx, CTX_E_SENDER, SLUICE_CAP_SENDER, addr, params);
}

static int api_rcpt_add(sluice_ctx *ctx, const char *addr, const char *params)
{
    return journal_addr(ctx, CTX_E_RCPT_ADD, SLUICE_CAP_RECIPIENTS, addr, params);
}

static int api_rcpt_remove(sluice_ctx *ctx, const char *addr)
{
    return journal_addr(ctx, CTX_E_RCPT_REMOVE, SLUICE_CAP_RECIPIENTS, addr, NULL);
}

static void api_symbol_add(sluice_ctx *ctx, const char *name, double score, const char *description)
{
    if (!name)
        return;
    struct ctx_edit *e = ctx_edit_new(ctx, CTX_E_SYMBOL);
    e->name = xstrdup(name);
    e->value = xstrdup(description ? description : "");
    e->score = score;
}

static double api_score(sluice_ctx *ctx)
{
    double s = ctx->tx->score;
    for (struct ctx_edit *e = ctx->edits; e; e = e->next)
        if (e->kind == CTX_E_SYMBOL)
            s += e->score;
    return s;
}

static int api_has_symbol(sluice_ctx *ctx, const char *name)
{
    for (size_t i = 0; i < ctx->tx->nsyms; i++)
        if (strcmp(ctx->tx->syms[i].name, name) == 0)
            return 1;
    for (struct ctx_edit *e = ctx->edits; e; e = e->next)
        if (e->kind == CTX_E_SYMBOL && strcmp(e->name, name) == 0)
            return 1;
    return 0;
}

static int api_symbol_at(sluice_ctx *ctx, size_t i, const char **name, double *score)
{
    if (!ctx || !ctx->tx || i >= ctx->tx->nsyms)
        return -ENOENT;
    if (name)
        *name = ctx->tx->syms[i].name;
    if (score)
        *score = ctx->tx->syms[i].score;
    return 0;
}

/* RFC 3463: class "." subject "." detail, 1-3 digits each, the class
 * matching the reply's first digit; checked byte by byte (no scanf, which
 * skips white space and once let CR/LF through). */
static bool api__enh_valid(const char *e, int code)
{
    if (!e || e[0] != '0' + code / 100 || e[1] != '.')
        return false;
    const char *p = e + 2;
    for (int part = 0; part < 2; part++) {
        int n = 0;
        while (*p >= '0' && *p <= '9' && n < 4) {
            p++;
            n++;
        }
        if (n < 1 || n > 3)
            return false;
        if (part == 0 && *p++ != '.')
            return false;
    }
    return *p == 0;
}

static void api_set_reply_lines(sluice_ctx *ctx, int code, const char *enh,
                                const char *const *lines, size_t n)
{
    ctx->code = code;
    if (api__enh_valid(enh, code))
        snprintf(ctx->enh, sizeof ctx->enh, "%s", enh);
    else
        snprintf(ctx->enh, sizeof ctx->enh, "%d.7.1", code / 100);
    /* Printable ASCII only, lines joined with \n (the one separator the
     * session's reply writer splits on): a plugin must not inject reply
     * lines of its own making. Whole lines, except a too long first. */
    size_t j = 0;
    for (size_t i = 0; i < n && i < SLUICE_REPLY_LINES_MAX; i++) {
        const char *t = lines[i] ? lines[i] : "";
        size_t len = strlen(t);
        size_t room = sizeof ctx->text - 1 - j - (i > 0);
        if (len > room) {
            if (i > 0)
                break;
            len = room;
        }
        if (i > 0)
            ctx->text[j++] = '\n';
        for (size_t k = 0; k < len; k++)
            ctx->text[j++] = ((unsigned char)t[k] < 32 || (unsigned char)t[k] >= 127) ? ' ' : t[k];
    }
    ctx->text[j] = 0;
}

static void api_set_reply(sluice_ctx *ctx, int code, const char *enh, const char *text)
{
    api_set_reply_lines(ctx, code, enh, &text, 1);
}

/* Private-data slots: guarded by their owner (plugins may set them from
 * pool threads); a replaced value is freed with its own free function. */
static void api_conn_data_set(sluice_ctx *ctx, void *data, void (*free_fn)(void *))
{
    host_conn_data_set(ctx->hc, ctx->inst->chain, ctx->inst->idx, data, free_fn);
}

static void *api_conn_data_get(sluice_ctx *ctx)
{
    return host_conn_data_get(ctx->hc, ctx->inst->chain, ctx->inst->idx);
}

static void api_tx_data_set(sluice_ctx *ctx, void *data, void (*free_fn)(void *))
{
    tx_data_set(ctx->tx, ctx->inst->idx, data, free_fn);
}

static void *api_tx_data_get(sluice_ctx *ctx)
{
    return tx_data_get(ctx->tx, ctx->inst->idx);
}

static void api_complete(sluice_ctx *ctx, int verdict)
{
    /* From a plugin's own thread: delivered on the loop by plugdone. */
    if (plugdone_post(host_conn_loop(ctx->hc), ctx, verdict, api_complete))
        return;
    host_complete(ctx, verdict);
}

static void *api_event_loop(sluice_ctx *ctx)
{
    return host_conn_loop(ctx->hc);
}

/* ---- DNS: the host's resolver for plugins ---- */

struct sluice_dns_query {
    struct dns_req *r;
    sluice_dns_cb cb;
    void *ud;
};

static void api__dns_cb(void *ud, const struct dns_cache_val *ans)
{
    struct sluice_dns_query *q = ud;
    struct sluice_dns_answer a = {
        .size = sizeof a,
        .status = ans->status,
        .ttl = ans->ttl,
        .count = ans->status == DNS_OK ? ans->n : 0,
        .records = (const char *const *)ans->rr,
    };
    sluice_dns_cb cb = q->cb;
    void *cb_ud = q->ud;
    free(q); /* before the call: the plugin may not cancel it any more */
    cb(cb_ud, &a);
}

static sluice_dns_query *api_dns_query(sluice_ctx *ctx, const struct sluice_dns_request *rq,
                                       sluice_dns_cb cb, void *ud)
{
    (void)ctx;
    if (!rq || !cb || rq->size < offsetof(struct sluice_dns_request, servers) ||
        !dns_on_loop_thread())
        return NULL;
    const char *servers =
        rq->size >= offsetof(struct sluice_dns_request, servers) + sizeof rq->servers ? rq->servers
                                                                                      : NULL;
    struct sluice_dns_query *q = xcalloc(1, sizeof *q);
    q->cb = cb;
    q->ud = ud;
    q->r = dns_query((int)rq->type, rq->name, servers, rq->timeout_ms, api__dns_cb, q);
    if (!q->r) {
        free(q);
        return NULL;
    }
    return q;
}

static void api_dns_cancel(sluice_dns_query *q)
{
    if (!q)
        return;
    dns_cancel(q->r);
    free(q);
}

/* ---- shared state ---- */

struct sluice_state_op {
    struct state_op *op;
    sluice_state_cb cb;
    void *ud;
};

static void api__state_cb(void *ud, const struct state_ans *ans)
{
    struct sluice_state_op *q = ud;
    struct sluice_state_answer a = {
        .size = sizeof a,
        .status = ans->status,
        .num = ans->num,
        .value = ans->value,
        .len = ans->len,
        .ttl_ms = ans->ttl_ms,
        .values = ans->values,
        .lens = ans->lens,
        .count = ans->count,
    };
    sluice_state_cb cb = q->cb;
    void *cb_ud = q->ud;
    free(q); /* before the call: the plugin may not cancel it any more */
    cb(cb_ud, &a);
}

static sluice_state_op *api_state_call(sluice_instance *inst, const struct sluice_state_request *rq,
                                       sluice_state_cb cb, void *ud)
{
    if (!inst || !rq || !cb ||
        rq->size < offsetof(struct sluice_state_request, ttl_ms) + sizeof rq->ttl_ms)
        return NULL;
    /* MGET and MINCR (added later) need the request's multi-key members,
     * and MGET has no key of its own, MINCR's is optional. */
    bool multi = rq->op == SLUICE_STATE_MGET || rq->op == SLUICE_STATE_MINCR;
    if (multi && rq->size < offsetof(struct sluice_state_request, nkeys) + sizeof rq->nkeys)
        return NULL;
    if ((!multi && !rq->key) || (rq->key && strlen(rq->key) > SLUICE_STATE_KEY_MAX) ||
        rq->len > SLUICE_STATE_VALUE_MAX)
        return NULL;
    if (multi)
        for (size_t i = 0; rq->keys && i < rq->nkeys && i < SLUICE_STATE_MULTI_MAX; i++)
            if (!rq->keys[i] ||
                strnlen(rq->keys[i], SLUICE_STATE_KEY_MAX + 1) > SLUICE_STATE_KEY_MAX)
                return NULL;
    struct state_req r = {
        .op = (enum state_opcode)rq->op,
        .ns = inst->name,
        .key = rq->key,
        .value = rq->value,
        .len = rq->len,
        .delta = rq->delta,
        .ttl_ms = rq->ttl_ms,
        .keys = multi ? rq->keys : NULL,
        .deltas = multi ? rq->deltas : NULL,
        .nkeys = multi ? rq->nkeys : 0,
    };
    struct sluice_state_op *q = xcalloc(1, sizeof *q);
    q->cb = cb;
    q->ud = ud;
    q->op = state_call(&r, api__state_cb, q);
    if (!q->op) {
        free(q);
        return NULL;
    }
    return q;
}

static void api_state_cancel(sluice_state_op *q)
{
    if (!q)
        return;
    state_cancel(q->op);
    free(q);
}

static const struct sluice_host_api host_api = {
    .size = sizeof(struct sluice_host_api),
    .version = SLUICE_PLUGIN_ABI_VERSION,
    .instance_name = api_instance_name,
    .config_get = api_config_get,
    .config_error = api_config_error,
    .checking = api_checking,
    .log = api_log,
    .counter_new = api_counter_new,
    .counter_add = api_counter_add,
    .instance = api_instance,
    .instance_data = api_instance_data,
    .phase = api_phase,
    .log_ctx = api_log_ctx,
    .session_id = api_session_id,
    .client_addr = api_client_addr,
    .client_port = api_client_port,
    .client_name = api_client_name,
    .helo = api_helo,
    .tls_version = api_tls_version,
    .tls_cipher = api_tls_cipher,
    .auth_user = api_auth_user,
    .sender = api_sender,
    .sender_params = api_sender_params,
    .rcpt_count = api_rcpt_count,
    .rcpt = api_rcpt,
    .rcpt_params = api_rcpt_params,
    .current_rcpt = api_current_rcpt,
    .message = api_message,
    .header_count = api_header_count,
    .header_at = api_header_at,
    .header_get = api_header_get,
    .body = api_body,
    .header_add = api_header_add,
    .header_insert = api_header_insert,
    .header_change = api_header_change,
    .header_delete = api_header_delete,
    .body_replace = api_body_replace,
    .sender_change = api_sender_change,
    .rcpt_add = api_rcpt_add,
    .rcpt_remove = api_rcpt_remove,
    .symbol_add = api_symbol_add,
    .score = api_score,
    .has_symbol = api_has_symbol,
    .set_reply = api_set_reply,
    .conn_data_set = api_conn_data_set,
    .conn_data_get = api_conn_data_get,
    .tx_data_set = api_tx_data_set,
    .tx_data_get = api_tx_data_get,
    .complete = api_complete,
    .event_loop = api_event_loop,
    .current_rcpt_params = api_current_rcpt_params,
    .config_load = plugcfg_api_load,
    .header_fold = plughdr_fold,
    .dns_query = api_dns_query,
    .symbol_at = api_symbol_at,
    .set_reply_lines = api_set_reply_lines,
    .dns_cancel = api_dns_cancel,
    .state_call = api_state_call,
    .state_cancel = api_state_cancel,
    .gauge_new = api_gauge_new,
    .gauge_set = api_gauge_set,
    .gauge_remove = api_gauge_remove,
    .gauge_clear = api_gauge_clear,
    .tls_peer_subject = api_tls_peer_subject,
    .tls_peer_issuer = api_tls_peer_issuer,
    .tls_peer_fingerprint = api_tls_peer_fingerprint,
};

const struct sluice_host_api *api_table(void)
{
    return &host_api;
}
