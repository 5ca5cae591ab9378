/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * milter.so: an existing milter (rspamd, OpenDKIM, OpenDMARC,
 * clamav-milter, anything built on libmilter) as a member of sluice's
 * chain. Each hook hands its stage to the session's milter conversation
 * (milter_sess.c) and answers SLUICE_ASYNC; the milter's final reply
 * becomes the verdict, its end-of-message modifications become the host's
 * edits, applied through the same functions as a native plugin's. A
 * milter that fails (refused connection, timeout, protocol error) is a
 * plugin failure: the instance's `failure` policy and breaker apply.
 */
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sluice/plugin.h>

#include "milter_sess.h"
#include "pstr.h"

SLUICE_API_DECLARE;

struct mp_conf {
    const char *socket;
    unsigned connect_ms, command_ms, eom_ms;
    const char *macros[MILTER_STAGES];
    const char *hostname, *daemon_name;
};

struct mp_inst {
    sluice_instance *inst;
    struct mp_conf conf;
    struct msess_cfg cfg;
    char hostname[256];
    sluice_counter *c_replies, *c_failures;
};

/* An edit the milter asked for at end of message, kept until its final
 * answer says whether it applies. */
struct mp_mod {
    struct mp_mod *next;
    enum milter_reply_type type;
    uint32_t index;
    char *a, *b, *c; /* name/value, address/args, reason */
};

/* One SMTP session's state (connection data). */
struct mp_sess {
    struct mp_inst *mi;
    struct msess *ms;
    sluice_ctx *ctx; /* the hook waiting for the milter */
    enum msess_stage stage;
    unsigned ntx; /* transactions so far: the `i` macro */
    char qid[64];
    char client_port[16], underscore[320];
    struct mp_mod *mods, **mods_tail;
    struct pstr body; /* a replacement body, chunks joined */
    bool replbody;
};

/* ---- configuration -------------------------------------------------------- */

static const struct sluice_config_key mp_keys[] = {
    {.name = "socket",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_REQUIRED | SLUICE_CONFIG_PRINTABLE,
     .offset = offsetof(struct mp_conf, socket),
     .max = 200},
    {.name = "connect_timeout",
     .type = SLUICE_CONFIG_DURATION,
     .def = "5s",
     .min = 10,
     .max = 600000,
     .offset = offsetof(struct mp_conf, connect_ms)},
    {.name = "command_timeout",
     .type = SLUICE_CONFIG_DURATION,
     .def = "10s",
     .min = 10,
     .max = 600000,
     .offset = offsetof(struct mp_conf, command_ms)},
    {.name = "eom_timeout",
     .type = SLUICE_CONFIG_DURATION,
     .def = "25s",
     .min = 10,
     .max = 3600000,
     .offset = offsetof(struct mp_conf, eom_ms)},
    {.name = "macros_connect",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_KEEP_EMPTY | SLUICE_CONFIG_PRINTABLE,
     .max = 1000,
     .def = "j {daemon_name} v _ {client_addr} {client_name} {client_port}",
     .offset = offsetof(struct mp_conf, macros[MILTER_STAGE_CONNECT])},
    {.name = "macros_helo",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_KEEP_EMPTY | SLUICE_CONFIG_PRINTABLE,
     .max = 1000,
     .def = "{tls_version} {cipher} {cert_subject} {cert_issuer}",
     .offset = offsetof(struct mp_conf, macros[MILTER_STAGE_HELO])},
    {.name = "macros_mail",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_KEEP_EMPTY | SLUICE_CONFIG_PRINTABLE,
     .max = 1000,
     .def = "i {auth_authen} {mail_addr}",
     .offset = offsetof(struct mp_conf, macros[MILTER_STAGE_ENVFROM])},
    {.name = "macros_rcpt",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_KEEP_EMPTY | SLUICE_CONFIG_PRINTABLE,
     .max = 1000,
     .def = "{rcpt_addr}",
     .offset = offsetof(struct mp_conf, macros[MILTER_STAGE_ENVRCPT])},
    {.name = "macros_data",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_KEEP_EMPTY | SLUICE_CONFIG_PRINTABLE,
     .max = 1000,
     .def = "i",
     .offset = offsetof(struct mp_conf, macros[MILTER_STAGE_DATA])},
    {.name = "macros_eoh",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_KEEP_EMPTY | SLUICE_CONFIG_PRINTABLE,
     .max = 1000,
     .def = "i",
     .offset = offsetof(struct mp_conf, macros[MILTER_STAGE_EOH])},
    {.name = "macros_eom",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_KEEP_EMPTY | SLUICE_CONFIG_PRINTABLE,
     .max = 1000,
     .def = "i",
     .offset = offsetof(struct mp_conf, macros[MILTER_STAGE_EOM])},
    {.name = "hostname",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_PRINTABLE,
     .max = 253,
     .offset = offsetof(struct mp_conf, hostname)},
    {.name = "daemon_name",
     .type = SLUICE_CONFIG_STRING,
     .flags = SLUICE_CONFIG_PRINTABLE,
     .def = "sluice",
     .max = 100,
     .offset = offsetof(struct mp_conf, daemon_name)},
    {.name = NULL},
};

/* Postfix's and Sendmail's notations: unix:/path (local:/path),
 * inet:PORT@HOST, inet6:PORT@HOST, inet:HOST:PORT, inet:[IPV6]:PORT. The
 * host is resolved once, here. 0, or -1 with *why set. */
static int mp__parse_socket(const char *s, struct msess_cfg *cfg, const char **why)
{
    const char *path = NULL;
    if (strncmp(s, "unix:", 5) == 0)
        path = s + 5;
    else if (strncmp(s, "local:", 6) == 0)
        path = s + 6;
    if (path) {
        if (*path != '/' || strlen(path) >= sizeof cfg->path) {
            *why = "a unix socket needs an absolute path shorter than 108 bytes";
            return -1;
        }
        cfg->family = AF_UNIX;
        snprintf(cfg->path, sizeof cfg->path, "%s", path);
        return 0;
    }
    int fam = AF_UNSPEC;
    const char *rest;
    if (strncmp(s, "inet:", 5) == 0)
        rest = s + 5;
    else if (strncmp(s, "inet6:", 6) == 0) {
        rest = s + 6;
        fam = AF_INET6;
    } else {
        *why = "expected unix:/path, inet:PORT@HOST or inet:HOST:PORT";
        return -1;
    }
    char host[256], port[16];
    const char *at = strchr(rest, '@');
    if (at) {
        snprintf(port, sizeof port, "%.*s", (int)(at - rest), rest);
        snprintf(host, sizeof host, "%s", at + 1);
    } else {
        const char *colon = strrchr(rest, ':');
        if (!colon) {
            *why = "no port (inet:PORT@HOST)";
            return -1;
        }
        const char *h = rest;
        size_t hl = (size_t)(colon - rest);
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
            h++;
            hl -= 2;
        }
        snprintf(host, sizeof host, "%.*s", (int)hl, h);
        snprintf(port, sizeof port, "%s", colon + 1);
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 1 || p > 65535 || !*host) {
        *why = "bad port or host";
        return -1;
    }
    struct addrinfo hints = {.ai_family = fam, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) {
        *why = "the host does not resolve";
        return -1;
    }
    memcpy(&cfg->addr, ai->ai_addr, ai->ai_addrlen);
    cfg->family = ai->ai_family;
    freeaddrinfo(ai);
    return 0;
}

static int mp__init(const struct sluice_host_api *api, sluice_instance *inst, void **data)
{
    SLUICE_API_STORE(api);
    if (!SLUICE_API_HAS(api, set_reply_lines)) {
        api->config_error(inst, NULL, "this sluice is too old for the milter plugin");
        return -1;
    }
    struct mp_inst *mi = pstr_xcalloc(1, sizeof *mi);
    mi->inst = inst;
    if (SLUICE_CONFIG_LOAD(api, inst, mp_keys, &mi->conf, SLUICE_CONFIG_STRICT) != 0) {
        free(mi);
        return -1;
    }
    const char *why;
    if (mp__parse_socket(mi->conf.socket, &mi->cfg, &why) < 0) {
        api->config_error(inst, "socket", "%s: %s", mi->conf.socket, why);
        free(mi);
        return -1;
    }
    mi->cfg.connect_ms = mi->conf.connect_ms;
    mi->cfg.command_ms = mi->conf.command_ms;
    mi->cfg.eom_ms = mi->conf.eom_ms;
    mi->cfg.actions = MILTER_ACT_ALL;
    /* Every step a milter may ask for except sending refused recipients
     * (sluice tells milters only what it accepts) and the leading space
     * of header values (milter_sess strips it, as milters expect). */
    mi->cfg.steps = MILTER_STEP_ALL & ~(MILTER_STEP_RCPT_REJ | MILTER_STEP_HDR_LEADSPC);
    for (int i = 0; i < MILTER_STAGES; i++)
        mi->cfg.macros[i] = (char *)mi->conf.macros[i];
    if (mi->conf.hostname)
        snprintf(mi->hostname, sizeof mi->hostname, "%s", mi->conf.hostname);
    else if (gethostname(mi->hostname, sizeof mi->hostname - 1) != 0)
        snprintf(mi->hostname, sizeof mi->hostname, "localhost");
    mi->c_replies = api->counter_new(inst, "replies", "Milter answers by kind", "reply", 24);
    mi->c_failures =
        api->counter_new(inst, "failures", "Milter failures (connect, timeout, protocol)", NULL, 0);
    *data = mi;
    return 0;
}

static void mp__shutdown(void *data)
{
    free(data);
}

/* ---- the session ------------------------------------------------------------ */

static void mp__mods_free(struct mp_sess *s)
{
    while (s->mods) {
        struct mp_mod *m = s->mods;
        s->mods = m->next;
        free(m->a);
        free(m->b);
        free(m->c);
        free(m);
    }
    s->mods_tail = &s->mods;
    pstr_free(&s->body);
    s->replbody = false;
}

static void mp__sess_free(void *p)
{
    struct mp_sess *s = p;
    sluice_ctx *pending = msess_free(s->ms) ? s->ctx : NULL;
    mp__mods_free(s);
    free(s);
    if (pending)
        sluice_api->complete(pending, SLUICE_ERROR);
}

static struct mp_sess *mp__sess(sluice_ctx *ctx)
{
    struct mp_sess *s = sluice_api->conn_data_get(ctx);
    if (s)
        return s;
    s = pstr_xcalloc(1, sizeof *s);
    s->mi = sluice_api->instance_data(ctx);
    s->ms = msess_new(sluice_api->event_loop(ctx), &s->mi->cfg);
    s->mods_tail = &s->mods;
    const char *name = sluice_api->client_name(ctx);
    msess_set_client(s->ms, name && *name ? name : "unknown", sluice_api->client_addr(ctx),
                     sluice_api->client_port(ctx));
    const char *helo = sluice_api->helo(ctx);
    if (helo && *helo)
        msess_set_helo(s->ms, helo);
    sluice_api->conn_data_set(ctx, s, mp__sess_free);
    return s;
}

/* ---- what the milter reads: macros, headers, body ------------------------ */

static const char *mp__macro(void *ud, const char *name)
{
    struct mp_sess *s = ud;
    sluice_ctx *ctx = s->ctx;
    if (strcmp(name, "j") == 0)
        return s->mi->hostname;
    if (strcmp(name, "{daemon_name}") == 0)
        return s->mi->conf.daemon_name;
    if (strcmp(name, "v") == 0)
        return "sluice";
    if (strcmp(name, "_") == 0) {
        const char *n = sluice_api->client_name(ctx);
        snprintf(s->underscore, sizeof s->underscore, "%s [%s]", n && *n ? n : "unknown",
                 sluice_api->client_addr(ctx));
        return s->underscore;
    }
    if (strcmp(name, "{client_addr}") == 0)
        return sluice_api->client_addr(ctx);
    if (strcmp(name, "{client_name}") == 0) {
        const char *n = sluice_api->client_name(ctx);
        return n && *n ? n : "unknown";
    }
    if (strcmp(name, "{client_port}") == 0) {
        snprintf(s->client_port, sizeof s->client_port, "%d", sluice_api->client_port(ctx));
        return s->client_port;
    }
    if (strcmp(name, "i") == 0)
        return s->qid[0] ? s->qid : NULL;
    const char *v = NULL;
    if (strcmp(name, "{auth_authen}") == 0)
        v = sluice_api->auth_user(ctx);
    else if (strcmp(name, "{tls_version}") == 0)
        v = sluice_api->tls_version(ctx);
    else if (strcmp(name, "{cipher}") == 0)
        v = sluice_api->tls_cipher(ctx);
    /* Only a certificate the listener verified (tls_verify_client). */
    else if (strcmp(name, "{cert_subject}") == 0 && SLUICE_API_HAS(sluice_api, tls_peer_subject))
        v = sluice_api->tls_peer_subject(ctx);
    else if (strcmp(name, "{cert_issuer}") == 0 && SLUICE_API_HAS(sluice_api, tls_peer_issuer))
        v = sluice_api->tls_peer_issuer(ctx);
    return v && *v ? v : NULL;
}

static size_t mp__header_count(void *ud)
{
    struct mp_sess *s = ud;
    return sluice_api->header_count(s->ctx);
}

static int mp__header_at(void *ud, size_t i, const char **name, size_t *nl, const char **value,
                         size_t *vl)
{
    struct mp_sess *s = ud;
    struct sluice_header h = {.size = sizeof h};
    if (sluice_api->header_at(s->ctx, i, &h) != 0)
        return -1;
    *name = h.name;
    *nl = h.name_len;
    *value = h.value;
    *vl = h.value_len;
    return 0;
}

static void mp__body(void *ud, const char **data, size_t *len)
{
    struct mp_sess *s = ud;
    if (sluice_api->body(s->ctx, data, len) != 0) {
        *data = "";
        *len = 0;
    }
}

static const struct msess_source mp_source = {
    .macro = mp__macro,
    .header_count = mp__header_count,
    .header_at = mp__header_at,
    .body = mp__body,
};

/* ---- modifications ------------------------------------------------------------ */

static char *mp__dup(const char *s)
{
    return s ? pstr_xstrdup(s) : NULL;
}

/* An address as the milter gives it, without angle brackets. */
static char *mp__addr(const char *a)
{
    size_t n = strlen(a);
    if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
        return pstr_xstrndup(a + 1, n - 2);
    return pstr_xstrdup(a);
}

/* A header value from the milter: folding with LF alone becomes CRLF. */
static char *mp__value(const char *v)
{
    struct pstr o = PSTR_INIT;
    for (const char *p = v; *p; p++) {
        if (*p == '\n' && (p == v || p[-1] != '\r'))
            pstr_putc(&o, '\r');
        pstr_putc(&o, *p);
    }
    return pstr_steal(&o);
}

static void mp__on_mod(void *ud, const struct milter_reply *r)
{
    struct mp_sess *s = ud;
    if (r->type == MILTER_REPLY_REPLBODY) {
        pstr_append(&s->body, (const char *)r->body.data, r->body.len);
        s->replbody = true;
        return;
    }
    struct mp_mod *m = pstr_xcalloc(1, sizeof *m);
    m->type = r->type;
    switch (r->type) {
    case MILTER_REPLY_ADDHEADER:
    case MILTER_REPLY_INSHEADER:
    case MILTER_REPLY_CHGHEADER:
        m->index = r->header.index;
        m->a = mp__dup(r->header.name);
        m->b = mp__value(r->header.value);
        break;
    case MILTER_REPLY_CHGFROM:
    case MILTER_REPLY_ADDRCPT:
    case MILTER_REPLY_ADDRCPT_PAR:
    case MILTER_REPLY_DELRCPT:
        m->a = mp__addr(r->env.addr);
        m->b = mp__dup(r->env.args);
        break;
    case MILTER_REPLY_QUARANTINE:
        m->c = mp__dup(r->text);
        break;
    default:
        break;
    }
    *s->mods_tail = m;
    s->mods_tail = &m->next;
}

/* Apply the edits in the order the milter sent them. Returns true when
 * the milter asked for quarantine. */
static bool mp__apply(struct mp_sess *s, sluice_ctx *ctx)
{
    bool quarantine = false;
    for (struct mp_mod *m = s->mods; m; m = m->next) {
        int rc = 0;
        switch (m->type) {
        case MILTER_REPLY_ADDHEADER:
            rc = sluice_api->header_add(ctx, m->a, m->b);
            break;
        case MILTER_REPLY_INSHEADER:
            rc = sluice_api->header_insert(ctx, m->index, m->a, m->b);
            break;
        case MILTER_REPLY_CHGHEADER:
            /* The index-th field of that name, from 1 (0 read as 1, as
             * sendmail does); an empty value deletes it. */
            rc = sluice_api->header_change(ctx, m->a, m->index ? m->index - 1 : 0,
                                           *m->b ? m->b : NULL);
            /* Past the last field of that name: libmilter's smfi_chgheader
             * adds it then. */
            if (rc == -ENOENT && *m->b)
                rc = sluice_api->header_add(ctx, m->a, m->b);
            else if (rc == -ENOENT)
                rc = 0;
            break;
        case MILTER_REPLY_CHGFROM:
            rc = sluice_api->sender_change(ctx, m->a, m->b);
            break;
        case MILTER_REPLY_ADDRCPT:
        case MILTER_REPLY_ADDRCPT_PAR:
            rc = sluice_api->rcpt_add(ctx, m->a, m->b);
            break;
        case MILTER_REPLY_DELRCPT:
            rc = sluice_api->rcpt_remove(ctx, m->a);
            break;
        case MILTER_REPLY_QUARANTINE:
            quarantine = true;
            sluice_api->symbol_add(ctx, "MILTER_QUARANTINE", 0,
                                   m->c && *m->c ? m->c : "quarantined by milter");
            break;
        default:
            break;
        }
        if (rc < 0)
            sluice_api->log_ctx(ctx, SLUICE_LOG_WARN, "milter %s %s%s%s: refused (%s)",
                                milter_reply_name(m->type), m->a ? m->a : "", m->b ? " " : "",
                                m->b ? m->b : "", strerror(-rc));
    }
    if (s->replbody) {
        /* The milter's bytes as it sent them; lone LF made CRLF, the
         * host's canonical form. */
        struct pstr b = PSTR_INIT;
        for (size_t i = 0; i < s->body.len; i++) {
            if (s->body.ptr[i] == '\n' && (i == 0 || s->body.ptr[i - 1] != '\r'))
                pstr_putc(&b, '\r');
            pstr_putc(&b, s->body.ptr[i]);
        }
        int rc = sluice_api->body_replace(ctx, b.ptr ? b.ptr : "", b.len);
        if (rc < 0)
            sluice_api->log_ctx(ctx, SLUICE_LOG_WARN, "milter replbody: refused (%s)",
                                strerror(-rc));
        pstr_free(&b);
    }
    return quarantine;
}

/* ---- verdicts ------------------------------------------------------------------ */

static int mp__verdict(struct mp_sess *s, sluice_ctx *ctx, const struct msess_result *res)
{
    struct mp_inst *mi = s->mi;
    if (res->outcome == MSESS_FAILED) {
        sluice_api->counter_add(mi->c_failures, NULL, 1);
        sluice_api->log_ctx(ctx, SLUICE_LOG_WARN, "milter %s: %s", mi->conf.socket, res->why);
        return SLUICE_ERROR;
    }
    const char *name = milter_reply_name(res->type);
    sluice_api->counter_add(mi->c_replies, name ? name : "?", 1);
    if (res->why)
        sluice_api->log_ctx(ctx, SLUICE_LOG_WARN, "milter %s: %s", mi->conf.socket, res->why);
    switch (res->type) {
    case MILTER_REPLY_CONTINUE:
    case MILTER_REPLY_ACCEPT:
        if (s->stage == MSESS_RCPT)
            msess_rcpt_accepted(s->ms);
        if (s->stage == MSESS_DATA && mp__apply(s, ctx))
            return SLUICE_QUARANTINE;
        return SLUICE_CONTINUE;
    case MILTER_REPLY_REJECT:
        return SLUICE_REJECT;
    case MILTER_REPLY_TEMPFAIL:
        return SLUICE_TEMPFAIL;
    case MILTER_REPLY_DISCARD:
        if (s->stage <= MSESS_HELO) {
            sluice_api->log_ctx(ctx, SLUICE_LOG_WARN,
                                "milter %s: discard before a transaction, ignored",
                                mi->conf.socket);
            return SLUICE_CONTINUE;
        }
        return SLUICE_DISCARD;
    case MILTER_REPLY_REPLYCODE: {
        const struct milter_replycode *rc = res->code;
        sluice_api->set_reply_lines(ctx, rc->code, rc->enh[0] ? rc->enh : NULL, rc->lines,
                                    rc->nlines);
        if (rc->code == 421)
            return SLUICE_DISCONNECT;
        return rc->code >= 500 ? SLUICE_REJECT : SLUICE_TEMPFAIL;
    }
    case MILTER_REPLY_SHUTDOWN:
    case MILTER_REPLY_CONNFAIL:
        return SLUICE_DISCONNECT;
    default:
        return SLUICE_ERROR;
    }
}

static void mp__done(void *ud, const struct msess_result *res)
{
    struct mp_sess *s = ud;
    sluice_ctx *ctx = s->ctx;
    int v = mp__verdict(s, ctx, res);
    mp__mods_free(s);
    s->ctx = NULL;
    sluice_api->complete(ctx, v);
}

static int mp__run(sluice_ctx *ctx, struct mp_sess *s, enum msess_stage st)
{
    /* The previous hook still waits for the milter although the session
     * went on: the host gave up on it (its timeout). Finish it (its
     * complete() is still owed) and start afresh. */
    if (s->ctx)
        msess_abandon(s->ms);
    s->ctx = ctx;
    s->stage = st;
    mp__mods_free(s);
    int rc = msess_run(s->ms, st, &mp_source, s, mp__on_mod, mp__done, s);
    if (rc == 1)
        return SLUICE_ASYNC;
    s->ctx = NULL;
    return rc == 0 ? SLUICE_CONTINUE : SLUICE_ERROR;
}

/* ---- hooks ----------------------------------------------------------------------- */

static int mp__on_connect(sluice_ctx *ctx)
{
    return mp__run(ctx, mp__sess(ctx), MSESS_CONNECT);
}

static int mp__on_helo(sluice_ctx *ctx)
{
    struct mp_sess *s = mp__sess(ctx);
    msess_set_helo(s->ms, sluice_api->helo(ctx));
    return mp__run(ctx, s, MSESS_HELO);
}

static int mp__on_mail(sluice_ctx *ctx)
{
    struct mp_sess *s = mp__sess(ctx);
    s->ntx++;
    snprintf(s->qid, sizeof s->qid, "%s.%u", sluice_api->session_id(ctx), s->ntx);
    msess_set_sender(s->ms, sluice_api->sender(ctx), sluice_api->sender_params(ctx));
    return mp__run(ctx, s, MSESS_MAIL);
}

static int mp__on_rcpt(sluice_ctx *ctx)
{
    struct mp_sess *s = mp__sess(ctx);
    msess_ensure_sender(s->ms, sluice_api->sender(ctx), sluice_api->sender_params(ctx));
    msess_set_rcpt(s->ms, sluice_api->current_rcpt(ctx), sluice_api->current_rcpt_params(ctx));
    return mp__run(ctx, s, MSESS_RCPT);
}

static int mp__on_data(sluice_ctx *ctx)
{
    struct mp_sess *s = mp__sess(ctx);
    msess_ensure_sender(s->ms, sluice_api->sender(ctx), sluice_api->sender_params(ctx));
    return mp__run(ctx, s, MSESS_DATA);
}

static void mp__on_reset(sluice_ctx *ctx)
{
    struct mp_sess *s = sluice_api->conn_data_get(ctx);
    if (s) {
        /* A hook still waiting here was given up by the host: finish it
         * first, or the reset would leave its transaction behind. */
        if (s->ctx)
            msess_abandon(s->ms);
        msess_abort(s->ms);
        s->qid[0] = 0;
    }
}

static void mp__on_close(sluice_ctx *ctx)
{
    /* Frees the session (mp__sess_free): quit and close. */
    if (sluice_api->conn_data_get(ctx))
        sluice_api->conn_data_set(ctx, NULL, NULL);
}

SLUICE_PLUGIN_DEFINE(.name = "milter", .version = "1.0",
                     .description = "an existing milter (Sendmail milter protocol 6) in the chain",
                     .capabilities = SLUICE_CAP_HEADERS | SLUICE_CAP_BODY | SLUICE_CAP_SENDER |
                                     SLUICE_CAP_RECIPIENTS | SLUICE_CAP_QUARANTINE,
                     .init = mp__init, .shutdown = mp__shutdown, .on_connect = mp__on_connect,
                     .on_helo = mp__on_helo, .on_mail = mp__on_mail, .on_rcpt = mp__on_rcpt,
                     .on_data = mp__on_data, .on_reset = mp__on_reset, .on_close = mp__on_close);
