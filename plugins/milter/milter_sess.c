/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * milter_sess: one SMTP session's milter conversation on the event loop.
 * See milter_sess.h for the contract.
 *
 * The conversation is a cursor over items (connect, helo, mail, the
 * recipients a new connection missed, the stage's own command, then for
 * the data stage data, each header, end of headers, body chunks, end of
 * message). msess__pump() sends items until one needs an answer; the
 * answer moves the cursor on. Every connection has its own heap object
 * (struct mconn), so a broken one can finish closing while the next one
 * connects; its callbacks check that it still belongs to the session.
 */
#include "milter_sess.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "pstr.h"

#define MSESS_READ_CHUNK 65536
#define MSESS_MACROS_MAX 64
#define MSESS_MODS_MAX 10000u            /* modifications of one message */
#define MSESS_MOD_BYTES_MAX (256u << 20) /* a replacement body and the rest */

struct mconn {
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    uv_connect_t creq;
    uv_write_t wreq;
    struct msess *ms; /* NULL once detached: closing on its own */
    bool writing;
    bool close_after_write; /* QUIT queued: close when it is written */
    struct pstr wbuf;       /* bytes in flight */
    char rbuf[MSESS_READ_CHUNK];
};

enum msess_item {
    IT_CONNECT,
    IT_HELO,
    IT_MAIL,
    IT_OLDRCPT, /* accepted recipients the connection has not seen */
    IT_RCPT,    /* the RCPT stage's own recipient */
    IT_DATA,
    IT_HEADER,
    IT_EOH,
    IT_BODY,
    IT_EOM,
    IT_END,
};

enum msess_state { MS_DOWN, MS_CONNECTING, MS_NEGOTIATING, MS_READY };

struct msess_rcpt {
    char *addr, *params;
};

struct msess {
    uv_loop_t *loop;
    const struct msess_cfg *cfg;
    uv_timer_t timer;
    struct mconn *conn;
    enum msess_state state;
    struct pstr out;     /* packets not yet handed to the connection */
    struct pstr scratch; /* a header value being converted */
    struct milter_reader rd;
    struct milter_optneg neg;                /* what the milter agreed to */
    char *want[MILTER_STAGES];               /* its own macro lists, or NULL */
    char macro_store[MSESS_MACROS_MAX][256]; /* names of one stage's macros */

    /* The session's facts (owned copies). */
    char *cl_name, *cl_addr;
    int cl_port;
    char *helo;
    char *sender, *sender_params; /* NULL outside a transaction */
    char *rcpt, *rcpt_params;     /* the RCPT stage's recipient */
    struct msess_rcpt *rcpts;     /* accepted ones */
    size_t nrcpts, caprcpts;

    /* What this connection has seen. */
    bool sent_connect, sent_helo, sent_mail;
    size_t sent_rcpts;
    bool sess_done; /* the milter accepted the session: ask nothing more */
    bool tx_done;   /* ... or is done with this transaction */

    /* The running stage. */
    bool job;
    enum msess_stage stage;
    const struct msess_source *src;
    void *src_ud;
    msess_mod_fn mod;
    msess_done_fn done;
    void *ud;
    enum msess_item it;
    size_t it_i;
    size_t mod_count, mod_bytes;
    /* what the end of message brought so far */ /* header index, recipient index or body offset
                                                  */
    bool waiting;                                /* for the answer to the last command sent */
    bool in_run;                                 /* msess_run() is on the stack: defer done */
    bool delivering;                             /* the timer delivers res */
    bool freed;      /* msess_free() ran: free when the timer is closed */
    bool reply_why;  /* an answer that comes with a warning in why */
    char itname[24]; /* what is waited for, for messages */
    struct msess_result res;
    char why[200];
    struct milter_replycode code;
};

static void msess__pump(struct msess *ms);
static void msess__forget_tx(struct msess *ms);
static void msess__fail(struct msess *ms, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- small helpers -------------------------------------------------------- */

static void msess__set(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? pstr_xstrdup(src) : NULL;
}

/* "ESMTP params" (" SIZE=10 BODY=8BITMIME") into words, in place. */
static size_t msess__split(char *s, const char **words, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *w = strtok_r(s, " \t", &save); w && n < max; w = strtok_r(NULL, " \t", &save))
        words[n++] = w;
    return n;
}

static void msess__timer_start(struct msess *ms, unsigned ms_timeout);

/* ---- delivering the result -------------------------------------------- */

static void msess__deliver(struct msess *ms)
{
    ms->job = false;
    ms->waiting = false;
    msess_done_fn done = ms->done;
    void *ud = ms->ud;
    ms->done = NULL;
    ms->mod = NULL;
    ms->src = NULL;
    struct msess_result res = ms->res;
    done(ud, &res);
}

static void msess__on_timer(uv_timer_t *t);

/* The stage's answer: now, or from the loop when msess_run() is still on
 * the stack (done never runs inside its caller). */
static void msess__finish(struct msess *ms, enum msess_outcome oc, enum milter_reply_type type)
{
    ms->res.outcome = oc;
    ms->res.type = type;
    ms->res.code = type == MILTER_REPLY_REPLYCODE && oc == MSESS_REPLY ? &ms->code : NULL;
    ms->res.why = oc == MSESS_FAILED || ms->reply_why ? ms->why : NULL;
    ms->reply_why = false;
    uv_timer_stop(&ms->timer);
    if (ms->in_run) {
        ms->delivering = true;
        uv_timer_start(&ms->timer, msess__on_timer, 0, 0);
        return;
    }
    msess__deliver(ms);
}

/* ---- the connection ----------------------------------------------------- */

static void mconn__closed(uv_handle_t *h)
{
    struct mconn *c = h->data;
    pstr_free(&c->wbuf);
    free(c);
}

static void mconn__close(struct mconn *c)
{
    c->ms = NULL;
    if (!uv_is_closing(&c->io.h))
        uv_close(&c->io.h, mconn__closed);
}

/* Forget the connection (it closes on its own) and what it had seen. */
static void msess__drop(struct msess *ms)
{
    if (ms->conn)
        mconn__close(ms->conn);
    ms->conn = NULL;
    ms->state = MS_DOWN;
    pstr_clear(&ms->out);
    milter_reader_free(&ms->rd);
    milter_reader_init(&ms->rd);
    ms->sent_connect = ms->sent_helo = ms->sent_mail = false;
    ms->sent_rcpts = 0;
    ms->sess_done = false;
    ms->tx_done = false;
    for (int i = 0; i < MILTER_STAGES; i++) {
        free(ms->want[i]);
        ms->want[i] = NULL;
    }
}

static void msess__fail(struct msess *ms, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ms->why, sizeof ms->why, fmt, ap);
    va_end(ap);
    msess__drop(ms);
    if (ms->job && !ms->delivering)
        msess__finish(ms, MSESS_FAILED, MILTER_REPLY_CONTINUE);
    else if (!ms->delivering)
        uv_timer_stop(&ms->timer);
}

static void mconn__flush(struct mconn *c);

static void mconn__written(uv_write_t *w, int status)
{
    struct mconn *c = w->data;
    c->writing = false;
    pstr_clear(&c->wbuf);
    if (c->close_after_write && !c->ms) {
        if (!uv_is_closing(&c->io.h))
            uv_close(&c->io.h, mconn__closed);
        return;
    }
    if (!c->ms)
        return;
    if (status < 0) {
        msess__fail(c->ms, "writing to the milter: %s", uv_strerror(status));
        return;
    }
    mconn__flush(c);
}

/* Hand the session's pending packets to the socket, one write at a time. */
static void mconn__flush(struct mconn *c)
{
    struct msess *ms = c->ms;
    if (c->writing || !ms || ms->out.len == 0)
        return;
    struct pstr t = c->wbuf;
    c->wbuf = ms->out;
    ms->out = t;
    pstr_clear(&ms->out);
    uv_buf_t b = uv_buf_init(c->wbuf.ptr, (unsigned)c->wbuf.len);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, &c->io.s, &b, 1, mconn__written);
    if (rc < 0) {
        msess__fail(ms, "writing to the milter: %s", uv_strerror(rc));
        return;
    }
    c->writing = true;
}

static void msess__flush(struct msess *ms)
{
    if (ms->conn && ms->state >= MS_NEGOTIATING)
        mconn__flush(ms->conn);
}

static void mconn__alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct mconn *c = h->data;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void msess__on_reply(struct msess *ms, const struct milter_reply *r);

static void mconn__read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct mconn *c = s->data;
    struct msess *ms = c->ms;
    if (!ms) {
        uv_read_stop(s);
        return;
    }
    if (n == 0)
        return;
    if (n < 0) {
        if (ms->job || !milter_reader_idle(&ms->rd))
            msess__fail(ms, "%s %s",
                        n == UV_EOF ? "the milter closed the connection" : uv_strerror((int)n),
                        ms->waiting ? ms->itname : "");
        else
            msess__drop(ms); /* idle: reconnect when next needed */
        return;
    }
    milter_reader_feed(&ms->rd, c->rbuf, (size_t)n);
    for (;;) {
        struct milter_reply r;
        int rc = milter_reader_next(&ms->rd, &r);
        if (rc == 0)
            return;
        if (rc < 0) {
            msess__fail(ms, "protocol error: %s", milter_reader_error(&ms->rd));
            return;
        }
        msess__on_reply(ms, &r);
        if (ms->conn != c) /* failed, or the stage is over and it closed */
            return;
    }
}

static void msess__negotiate(struct msess *ms)
{
    ms->state = MS_NEGOTIATING;
    milter_put_optneg(&ms->out, MILTER_VERSION, ms->cfg->actions, ms->cfg->steps);
    snprintf(ms->itname, sizeof ms->itname, "optneg");
    ms->waiting = true;
    msess__timer_start(ms, ms->cfg->command_ms);
    msess__flush(ms);
}

static void mconn__connected(uv_connect_t *req, int status)
{
    struct mconn *c = req->data;
    struct msess *ms = c->ms;
    if (!ms)
        return;
    if (status < 0) {
        msess__fail(ms, "cannot connect to the milter: %s", uv_strerror(status));
        return;
    }
    int rc = uv_read_start(&c->io.s, mconn__alloc, mconn__read);
    if (rc < 0) {
        msess__fail(ms, "reading from the milter: %s", uv_strerror(rc));
        return;
    }
    msess__negotiate(ms);
}

static void msess__connect(struct msess *ms)
{
    struct mconn *c = pstr_xcalloc(1, sizeof *c);
    c->ms = ms;
    int rc;
    if (ms->cfg->family == AF_UNIX)
        rc = uv_pipe_init(ms->loop, &c->io.pipe, 0);
    else
        rc = uv_tcp_init(ms->loop, &c->io.tcp);
    if (rc < 0) {
        free(c);
        msess__fail(ms, "milter socket: %s", uv_strerror(rc));
        return;
    }
    c->io.h.data = c;
    c->creq.data = c;
    ms->conn = c;
    ms->state = MS_CONNECTING;
    if (ms->cfg->family == AF_UNIX) {
        uv_pipe_connect(&c->creq, &c->io.pipe, ms->cfg->path, mconn__connected);
        rc = 0;
    } else {
        uv_tcp_nodelay(&c->io.tcp, 1);
        rc = uv_tcp_connect(&c->creq, &c->io.tcp, (const struct sockaddr *)&ms->cfg->addr,
                            mconn__connected);
    }
    if (rc < 0) {
        msess__fail(ms, "cannot connect to the milter: %s", uv_strerror(rc));
        return;
    }
    snprintf(ms->itname, sizeof ms->itname, "connect");
    msess__timer_start(ms, ms->cfg->connect_ms);
}

/* ---- timer: timeouts and deferred answers --------------------------------- */

static void msess__timer_closed(uv_handle_t *h)
{
    struct msess *ms = h->data;
    free(ms);
}

static void msess__on_timer(uv_timer_t *t)
{
    struct msess *ms = t->data;
    if (ms->delivering) {
        ms->delivering = false;
        msess__deliver(ms);
        return;
    }
    unsigned after = ms->state == MS_CONNECTING ? ms->cfg->connect_ms
                     : ms->it == IT_EOM         ? ms->cfg->eom_ms
                                                : ms->cfg->command_ms;
    msess__fail(ms, "the milter did not answer %s within %u ms", ms->itname, after);
}

static void msess__timer_start(struct msess *ms, unsigned ms_timeout)
{
    uv_timer_start(&ms->timer, msess__on_timer, ms_timeout, 0);
}

/* ---- sending items ---------------------------------------------------------- */

static bool msess__step(const struct msess *ms, uint32_t bit)
{
    return (ms->neg.steps & bit) != 0;
}

/* The macros of `stage` just before command `cmd`. */
static void msess__macros(struct msess *ms, enum milter_cmd cmd, enum milter_stage stage,
                          const char *mail_addr, const char *rcpt_addr)
{
    const char *list = ms->want[stage] ? ms->want[stage] : ms->cfg->macros[stage];
    if (!list || !*list || !ms->src)
        return;
    struct milter_macro m[MSESS_MACROS_MAX] = {{0}};
    size_t n = 0;
    const char *p = list;
    while (*p && n < MSESS_MACROS_MAX) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " ");
        if (len == 0)
            break;
        if (len < sizeof ms->macro_store[0]) {
            char *name = ms->macro_store[n];
            memcpy(name, p, len);
            name[len] = 0;
            const char *v;
            if (strcmp(name, "{mail_addr}") == 0)
                v = mail_addr;
            else if (strcmp(name, "{rcpt_addr}") == 0)
                v = rcpt_addr;
            else
                v = ms->src->macro(ms->src_ud, name);
            if (v) {
                m[n].name = name;
                m[n].value = v;
                n++;
            }
        }
        p += len;
    }
    /* One packet per command (a second one would replace the first at the
     * milter). A value the encoder refuses (a byte the protocol cannot
     * carry) is left out, so it costs only itself. */
    if (n > 0 && milter_put_macro(&ms->out, cmd, m, n) < 0) {
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            pstr_clear(&ms->scratch);
            if (milter_put_macro(&ms->scratch, cmd, &m[i], 1) == 0)
                m[kept++] = m[i];
        }
        (void)milter_put_macro(&ms->out, cmd, m, kept);
    }
}

static int msess__put_addr(struct msess *ms, bool mail, const char *addr, const char *params)
{
    char a[1024];
    snprintf(a, sizeof a, "<%s>", addr ? addr : "");
    char *p = pstr_xstrdup(params ? params : "");
    const char *args[64];
    size_t n = msess__split(p, args, 64);
    int rc =
        mail ? milter_put_envfrom(&ms->out, a, args, n) : milter_put_envrcpt(&ms->out, a, args, n);
    free(p);
    return rc;
}

/* The client's address family for the connect command. */
static enum milter_family msess__family(const char *addr)
{
    unsigned char b[16];
    if (addr && inet_pton(AF_INET, addr, b) == 1)
        return MILTER_FAMILY_INET;
    if (addr && inet_pton(AF_INET6, addr, b) == 1)
        return MILTER_FAMILY_INET6;
    return MILTER_FAMILY_UNKNOWN;
}

/* A header field as the milter expects it without SMFIP_HDR_LEADSPC: the
 * blanks after the colon dropped, folding with LF alone. */
static int msess__put_header(struct msess *ms, const char *name, size_t nlen, const char *v,
                             size_t vlen)
{
    size_t i = 0;
    while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n'))
        i++;
    pstr_clear(&ms->scratch);
    for (; i < vlen; i++)
        if (!(v[i] == '\r' && i + 1 < vlen && v[i + 1] == '\n'))
            pstr_putc(&ms->scratch, v[i]);
    /* A field longer than one packet can carry is cut to fit, as Postfix
     * cuts at header_size_limit: message content must never make the
     * milter fail (under failure = accept that would let the message past
     * it, and it would count against the breaker). */
    size_t room = MILTER_PAYLOAD_MAX - 2;
    if (nlen >= room)
        return -EMSGSIZE; /* a field name of 64 KiB: the host refuses those */
    if (ms->scratch.len > room - nlen)
        ms->scratch.len = room - nlen;
    return milter_put_header(&ms->out, name, nlen, ms->scratch.ptr ? ms->scratch.ptr : "",
                             ms->scratch.len);
}

/* Send the current item if it applies. Returns true when its answer must be
 * waited for (ms->waiting set), false to go on with the next item. */
static bool msess__send_item(struct msess *ms)
{
    const struct msess_cfg *cfg = ms->cfg;
    (void)cfg;
    int rc = 0;
    bool reply = false;
    switch (ms->it) {
    case IT_CONNECT:
        if (ms->sent_connect)
            return false;
        ms->sent_connect = true;
        if (msess__step(ms, MILTER_STEP_NOCONNECT))
            return false;
        msess__macros(ms, MILTER_CMD_CONNECT, MILTER_STAGE_CONNECT, NULL, NULL);
        {
            enum milter_family f = msess__family(ms->cl_addr);
            rc = milter_put_connect(&ms->out, ms->cl_name && *ms->cl_name ? ms->cl_name : "unknown",
                                    f, (uint16_t)(f == MILTER_FAMILY_UNKNOWN ? 0 : ms->cl_port),
                                    f == MILTER_FAMILY_UNKNOWN ? NULL : ms->cl_addr);
        }
        reply = !msess__step(ms, MILTER_STEP_NR_CONN);
        snprintf(ms->itname, sizeof ms->itname, "connect");
        break;
    case IT_HELO:
        if (ms->sent_helo || !ms->helo || ms->stage < MSESS_HELO)
            return false;
        ms->sent_helo = true;
        if (msess__step(ms, MILTER_STEP_NOHELO))
            return false;
        msess__macros(ms, MILTER_CMD_HELO, MILTER_STAGE_HELO, NULL, NULL);
        rc = milter_put_helo(&ms->out, ms->helo);
        reply = !msess__step(ms, MILTER_STEP_NR_HELO);
        snprintf(ms->itname, sizeof ms->itname, "helo");
        break;
    case IT_MAIL:
        if (ms->sent_mail || !ms->sender || ms->stage < MSESS_MAIL)
            return false;
        ms->sent_mail = true;
        if (msess__step(ms, MILTER_STEP_NOMAIL))
            return false;
        msess__macros(ms, MILTER_CMD_MAIL, MILTER_STAGE_ENVFROM, ms->sender, NULL);
        rc = msess__put_addr(ms, true, ms->sender, ms->sender_params);
        reply = !msess__step(ms, MILTER_STEP_NR_MAIL);
        snprintf(ms->itname, sizeof ms->itname, "envfrom");
        break;
    case IT_OLDRCPT:
        if (ms->sent_rcpts >= ms->nrcpts || ms->stage < MSESS_RCPT)
            return false;
        {
            const struct msess_rcpt *r = &ms->rcpts[ms->sent_rcpts++];
            if (msess__step(ms, MILTER_STEP_NORCPT))
                return false;
            msess__macros(ms, MILTER_CMD_RCPT, MILTER_STAGE_ENVRCPT, ms->sender, r->addr);
            rc = msess__put_addr(ms, false, r->addr, r->params);
        }
        reply = !msess__step(ms, MILTER_STEP_NR_RCPT);
        snprintf(ms->itname, sizeof ms->itname, "envrcpt");
        break;
    case IT_RCPT:
        if (ms->stage != MSESS_RCPT || msess__step(ms, MILTER_STEP_NORCPT))
            return false;
        msess__macros(ms, MILTER_CMD_RCPT, MILTER_STAGE_ENVRCPT, ms->sender, ms->rcpt);
        rc = msess__put_addr(ms, false, ms->rcpt, ms->rcpt_params);
        reply = !msess__step(ms, MILTER_STEP_NR_RCPT);
        snprintf(ms->itname, sizeof ms->itname, "envrcpt");
        break;
    case IT_DATA:
        if (ms->stage != MSESS_DATA || msess__step(ms, MILTER_STEP_NODATA))
            return false;
        msess__macros(ms, MILTER_CMD_DATA, MILTER_STAGE_DATA, ms->sender, NULL);
        rc = milter_put_data(&ms->out);
        reply = !msess__step(ms, MILTER_STEP_NR_DATA);
        snprintf(ms->itname, sizeof ms->itname, "data");
        break;
    case IT_HEADER:
        if (ms->stage != MSESS_DATA || msess__step(ms, MILTER_STEP_NOHDRS) ||
            ms->it_i >= ms->src->header_count(ms->src_ud))
            return false;
        {
            const char *n, *v;
            size_t nl, vl;
            if (ms->src->header_at(ms->src_ud, ms->it_i++, &n, &nl, &v, &vl) < 0)
                return false;
            rc = msess__put_header(ms, n, nl, v, vl);
        }
        reply = !msess__step(ms, MILTER_STEP_NR_HDR);
        snprintf(ms->itname, sizeof ms->itname, "header");
        break;
    case IT_EOH:
        if (ms->stage != MSESS_DATA || msess__step(ms, MILTER_STEP_NOEOH))
            return false;
        msess__macros(ms, MILTER_CMD_EOH, MILTER_STAGE_EOH, ms->sender, NULL);
        rc = milter_put_eoh(&ms->out);
        reply = !msess__step(ms, MILTER_STEP_NR_EOH);
        snprintf(ms->itname, sizeof ms->itname, "eoh");
        break;
    case IT_BODY:
        if (ms->stage != MSESS_DATA || msess__step(ms, MILTER_STEP_NOBODY))
            return false;
        {
            const char *b;
            size_t len;
            ms->src->body(ms->src_ud, &b, &len);
            if (ms->it_i >= len)
                return false;
            size_t n = len - ms->it_i;
            if (n > MILTER_PAYLOAD_MAX)
                n = MILTER_PAYLOAD_MAX;
            rc = milter_put_body(&ms->out, b + ms->it_i, n);
            ms->it_i += n;
        }
        reply = !msess__step(ms, MILTER_STEP_NR_BODY);
        snprintf(ms->itname, sizeof ms->itname, "body");
        break;
    case IT_EOM:
        if (ms->stage != MSESS_DATA)
            return false;
        msess__macros(ms, MILTER_CMD_EOM, MILTER_STAGE_EOM, ms->sender, NULL);
        rc = milter_put_eom(&ms->out);
        reply = true;
        snprintf(ms->itname, sizeof ms->itname, "end of message");
        break;
    case IT_END:
        return false;
    }
    if (rc < 0) {
        msess__fail(ms, "cannot send %s to the milter: %s", ms->itname,
                    rc == -EMSGSIZE ? "too long" : "a byte the protocol cannot carry");
        return true;
    }
    if (reply) {
        ms->waiting = true;
        msess__timer_start(ms, ms->it == IT_EOM ? ms->cfg->eom_ms : ms->cfg->command_ms);
    }
    return reply;
}

/* Items that repeat (old recipients, headers, body chunks) stay current
 * until they have nothing more to send. */
static void msess__advance(struct msess *ms)
{
    switch (ms->it) {
    case IT_OLDRCPT:
        if (ms->sent_rcpts < ms->nrcpts && ms->stage >= MSESS_RCPT)
            return;
        break;
    case IT_HEADER:
        if (ms->stage == MSESS_DATA && !msess__step(ms, MILTER_STEP_NOHDRS) &&
            ms->it_i < ms->src->header_count(ms->src_ud))
            return;
        break;
    case IT_BODY:
        if (ms->stage == MSESS_DATA && !msess__step(ms, MILTER_STEP_NOBODY)) {
            const char *b;
            size_t len;
            ms->src->body(ms->src_ud, &b, &len);
            if (ms->it_i < len)
                return;
        }
        break;
    default:
        break;
    }
    ms->it++;
    ms->it_i = 0;
}

/* The last item of each stage: its answer is the stage's. */
static enum msess_item msess__last_item(enum msess_stage st)
{
    switch (st) {
    case MSESS_CONNECT:
        return IT_CONNECT;
    case MSESS_HELO:
        return IT_HELO;
    case MSESS_MAIL:
        return IT_MAIL;
    case MSESS_RCPT:
        return IT_RCPT;
    case MSESS_DATA:
        break;
    }
    return IT_EOM;
}

static void msess__pump(struct msess *ms)
{
    while (ms->job && !ms->waiting && ms->state == MS_READY) {
        if (ms->it > msess__last_item(ms->stage) || ms->it == IT_END) {
            msess__flush(ms);
            if (!ms->job || ms->state != MS_READY) /* the write failed */
                return;
            msess__finish(ms, MSESS_REPLY, MILTER_REPLY_CONTINUE);
            return;
        }
        bool wait = msess__send_item(ms);
        if (ms->state != MS_READY) /* failed while encoding */
            return;
        if (wait) {
            msess__flush(ms);
            return;
        }
        msess__advance(ms);
    }
}

/* ---- answers ----------------------------------------------------------------- */

static void msess__on_optneg(struct msess *ms, const struct milter_reply *r)
{
    struct milter_optneg offer = {
        .version = MILTER_VERSION, .actions = ms->cfg->actions, .steps = ms->cfg->steps};
    const char *why;
    if (milter_optneg_check(&offer, &r->optneg, &why) < 0) {
        msess__fail(ms, "option negotiation: %s", why);
        return;
    }
    struct milter_macro_lists ml;
    if (r->optneg.macros_len && (ms->cfg->actions & MILTER_ACT_SETSYMLIST)) {
        if (milter_optneg_macros(&r->optneg, &ml, &why) < 0) {
            msess__fail(ms, "option negotiation: %s", why);
            return;
        }
        for (int i = 0; i < MILTER_STAGES; i++)
            msess__set(&ms->want[i], ml.names[i]);
    }
    ms->neg = r->optneg;
    ms->neg.macros = NULL;
    ms->neg.macros_len = 0;
    ms->state = MS_READY;
    ms->waiting = false;
    uv_timer_stop(&ms->timer);
    msess__pump(ms);
}

static void msess__on_reply(struct msess *ms, const struct milter_reply *r)
{
    const char *name = milter_reply_name(r->type);
    if (!ms->waiting) {
        msess__fail(ms, "protocol error: %s without a command to answer", name);
        return;
    }
    if (ms->state == MS_NEGOTIATING) {
        if (r->type != MILTER_REPLY_OPTNEG)
            msess__fail(ms, "protocol error: %s instead of option negotiation", name);
        else
            msess__on_optneg(ms, r);
        return;
    }
    switch (r->type) {
    case MILTER_REPLY_PROGRESS:
        msess__timer_start(ms, ms->it == IT_EOM ? ms->cfg->eom_ms : ms->cfg->command_ms);
        return;
    case MILTER_REPLY_ADDHEADER:
    case MILTER_REPLY_INSHEADER:
    case MILTER_REPLY_CHGHEADER:
    case MILTER_REPLY_CHGFROM:
    case MILTER_REPLY_ADDRCPT:
    case MILTER_REPLY_ADDRCPT_PAR:
    case MILTER_REPLY_DELRCPT:
    case MILTER_REPLY_REPLBODY:
    case MILTER_REPLY_QUARANTINE:
        if (ms->it != IT_EOM) {
            msess__fail(ms, "protocol error: %s before end of message", name);
            return;
        }
        if (!(ms->neg.actions & milter_reply_action(r->type))) {
            msess__fail(ms, "protocol error: %s was not negotiated", name);
            return;
        }
        /* A milter must not make the daemon hold unbounded memory. */
        ms->mod_count++;
        ms->mod_bytes += r->type == MILTER_REPLY_REPLBODY ? r->body.len : 256;
        if (ms->mod_count > MSESS_MODS_MAX || ms->mod_bytes > MSESS_MOD_BYTES_MAX) {
            msess__fail(ms, "the milter sent more than %u modifications or %u MiB", MSESS_MODS_MAX,
                        MSESS_MOD_BYTES_MAX >> 20);
            return;
        }
        ms->mod(ms->ud, r);
        return;
    case MILTER_REPLY_CONTINUE:
        break;
    case MILTER_REPLY_SKIP:
        if (ms->it != IT_BODY || !(ms->neg.steps & MILTER_STEP_SKIP)) {
            msess__fail(ms, "protocol error: skip outside the body");
            return;
        }
        ms->waiting = false;
        ms->it = IT_EOM;
        ms->it_i = 0;
        uv_timer_stop(&ms->timer);
        msess__pump(ms);
        return;
    case MILTER_REPLY_REPLYCODE: {
        const char *why;
        if (milter_replycode_parse(r->text, &ms->code, &why) < 0) {
            /* The milter meant to refuse: a broken refusal must not let
             * the message through under an accepting failure policy, so
             * it tempfails, as Postfix does. */
            snprintf(ms->why, sizeof ms->why, "bad reply code from the milter: %s", why);
            ms->waiting = false;
            uv_timer_stop(&ms->timer);
            ms->reply_why = true;
            msess__finish(ms, MSESS_REPLY, MILTER_REPLY_TEMPFAIL);
            return;
        }
        break;
    }
    case MILTER_REPLY_ACCEPT:
    case MILTER_REPLY_REJECT:
    case MILTER_REPLY_TEMPFAIL:
    case MILTER_REPLY_DISCARD:
    case MILTER_REPLY_SHUTDOWN:
    case MILTER_REPLY_CONNFAIL:
        break;
    default:
        msess__fail(ms, "protocol error: %s is not an answer to %s", name, ms->itname);
        return;
    }
    ms->waiting = false;
    uv_timer_stop(&ms->timer);
    if (r->type == MILTER_REPLY_CONTINUE) {
        msess__advance(ms);
        msess__pump(ms);
        return;
    }
    /* A final answer other than continue ends the stage. An answer to a
     * command replayed on a new connection is not the current command's:
     * a milter that now refuses what it let through before has changed
     * its mind about the past, which sluice cannot act on; a failure. */
    bool replay = ms->it < IT_DATA && ms->it != msess__last_item(ms->stage);
    bool refusal = r->type != MILTER_REPLY_ACCEPT && r->type != MILTER_REPLY_DISCARD;
    if (replay && refusal) {
        msess__fail(ms, "the milter refused the replayed %s", ms->itname);
        return;
    }
    /* What the milter is then done with: accept at connect or helo, the
     * session; accept or discard later, the transaction. A refusal ends
     * nothing: the next command is asked again. */
    if (r->type == MILTER_REPLY_ACCEPT && ms->it <= IT_HELO)
        ms->sess_done = true;
    else if (ms->it >= IT_MAIL && !refusal)
        ms->tx_done = true;
    msess__finish(ms, MSESS_REPLY, r->type);
}

/* ---- the API ---------------------------------------------------------------- */

struct msess *msess_new(uv_loop_t *loop, const struct msess_cfg *cfg)
{
    struct msess *ms = pstr_xcalloc(1, sizeof *ms);
    ms->loop = loop;
    ms->cfg = cfg;
    uv_timer_init(loop, &ms->timer);
    ms->timer.data = ms;
    milter_reader_init(&ms->rd);
    return ms;
}

void msess_set_client(struct msess *ms, const char *name, const char *addr, int port)
{
    msess__set(&ms->cl_name, name);
    msess__set(&ms->cl_addr, addr);
    ms->cl_port = port;
}

void msess_set_helo(struct msess *ms, const char *helo)
{
    /* A second HELO/EHLO (after STARTTLS) is sent again. */
    msess__set(&ms->helo, helo);
    ms->sent_helo = false;
}

void msess_set_sender(struct msess *ms, const char *addr, const char *params)
{
    /* A MAIL the milter saw without an abort after it (the sender was
     * refused): end that transaction at the milter first. */
    if (ms->sent_mail)
        msess_abort(ms);
    msess__set(&ms->sender, addr ? addr : "");
    msess__set(&ms->sender_params, params);
}

void msess_ensure_sender(struct msess *ms, const char *addr, const char *params)
{
    if (!ms->sender)
        msess_set_sender(ms, addr, params);
}

void msess_set_rcpt(struct msess *ms, const char *addr, const char *params)
{
    msess__set(&ms->rcpt, addr);
    msess__set(&ms->rcpt_params, params);
}

void msess_rcpt_accepted(struct msess *ms)
{
    if (!ms->rcpt)
        return;
    if (ms->nrcpts == ms->caprcpts) {
        ms->caprcpts = ms->caprcpts ? 2 * ms->caprcpts : 8;
        ms->rcpts = pstr_xrealloc(ms->rcpts, ms->caprcpts * sizeof *ms->rcpts);
    }
    ms->rcpts[ms->nrcpts].addr = ms->rcpt;
    ms->rcpts[ms->nrcpts].params = ms->rcpt_params;
    ms->rcpt = ms->rcpt_params = NULL;
    ms->nrcpts++;
    /* This connection saw it as the RCPT stage. */
    if (ms->state == MS_READY && ms->sent_rcpts == ms->nrcpts - 1 && ms->sent_mail)
        ms->sent_rcpts = ms->nrcpts;
}

int msess_run(struct msess *ms, enum msess_stage st, const struct msess_source *src, void *src_ud,
              msess_mod_fn mod, msess_done_fn done, void *ud)
{
    if (ms->job)
        return -1;
    if (ms->sess_done || (st >= MSESS_MAIL && ms->tx_done))
        return 0;
    ms->job = true;
    ms->stage = st;
    ms->src = src;
    ms->src_ud = src_ud;
    ms->mod = mod;
    ms->done = done;
    ms->ud = ud;
    ms->it = IT_CONNECT;
    ms->it_i = 0;
    ms->waiting = false;
    ms->mod_count = 0;
    ms->mod_bytes = 0;
    ms->in_run = true;
    if (ms->state == MS_DOWN)
        msess__connect(ms);
    else
        msess__pump(ms);
    ms->in_run = false;
    return 1;
}

static void msess__forget_tx(struct msess *ms)
{
    for (size_t i = 0; i < ms->nrcpts; i++) {
        free(ms->rcpts[i].addr);
        free(ms->rcpts[i].params);
    }
    ms->nrcpts = 0;
    ms->sent_rcpts = 0;
    msess__set(&ms->sender, NULL);
    msess__set(&ms->sender_params, NULL);
    msess__set(&ms->rcpt, NULL);
    msess__set(&ms->rcpt_params, NULL);
    ms->tx_done = false;
}

void msess_abandon(struct msess *ms)
{
    if (!ms->job)
        return;
    snprintf(ms->why, sizeof ms->why, "abandoned at %s: the host stopped waiting", ms->itname);
    msess__drop(ms);
    uv_timer_stop(&ms->timer);
    ms->delivering = false;
    ms->res.outcome = MSESS_FAILED;
    ms->res.type = MILTER_REPLY_CONTINUE;
    ms->res.code = NULL;
    ms->res.why = ms->why;
    msess__deliver(ms);
}

void msess_abort(struct msess *ms)
{
    if (ms->job) /* the host ends a transaction only after its stages */
        return;
    if (ms->state == MS_READY && ms->sent_mail) {
        milter_put_abort(&ms->out);
        msess__flush(ms);
    }
    ms->sent_mail = false;
    msess__forget_tx(ms);
}

void *msess_free(struct msess *ms)
{
    void *pending = ms->job && !ms->delivering ? ms->ud : NULL;
    if (ms->delivering) {
        /* An answer was about to be delivered: deliver it now, the caller
         * still waits for it. */
        ms->delivering = false;
        pending = ms->ud;
    }
    ms->job = false;
    struct mconn *c = ms->conn;
    if (c && ms->state == MS_READY && !ms->waiting) {
        milter_put_quit(&ms->out);
        mconn__flush(c);
        c->ms = NULL;
        c->close_after_write = true;
        if (!c->writing)
            mconn__close(c);
        ms->conn = NULL;
    }
    msess__drop(ms);
    msess__forget_tx(ms);
    milter_reader_free(&ms->rd);
    pstr_free(&ms->out);
    pstr_free(&ms->scratch);
    free(ms->rcpts);
    free(ms->cl_name);
    free(ms->cl_addr);
    free(ms->helo);
    ms->freed = true;
    uv_close((uv_handle_t *)&ms->timer, msess__timer_closed);
    return pending;
}
