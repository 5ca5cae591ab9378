/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sess_reply: the session's replies, in command order.
 *
 * Every command produces exactly one reply. A reply known at once goes out
 * (or queues behind pending slots); a reply that depends on the upstream
 * reserves a slot, filled when the upstream answers. Upstream replies are
 * relayed with their code and text (always with an enhanced code, since
 * sluice offers ENHANCEDSTATUSCODES); upstream failures become sluice's
 * own 4xx, never relayed (Postfix's before-queue proxy rule).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "server.h"
#include "sess_int.h"
#include "xalloc.h"

/* Write a complete reply (CRLF-terminated lines) to the client now. */
static void sess_reply__emit(struct sess *s, const char *p, size_t n)
{
    if (s->state == S_CLOSING || !s->conn || s->end_after_reply)
        return; /* nothing follows a 421 (RFC 5321 §3.8) */
    int code = atoi(p);
    stats_smtp_reply(code);
    if (code == 421)
        s->end_after_reply = true; /* 421 means the session ends (RFC 5321 §3.8) */
    log_c_debug(&s->log, "client< %.*s", (int)(n > 2 ? n - 2 : n), p);
    conn_write(s->conn, p, n);
}

static void sess_reply__free(struct sess_slot *sl)
{
    sl->s->slot_bytes -= sizeof *sl + (sl->filled ? sl->text.len : 0);
    buf_free(&sl->text);
    free(sl);
}

size_t sess_reply_queued(const struct sess *s)
{
    return s->slot_bytes + (s->conn ? conn_pending(s->conn) : 0);
}

void sess_reply_flush(struct sess *s)
{
    while (s->slots_head && s->slots_head->filled) {
        struct sess_slot *sl = s->slots_head;
        s->slots_head = sl->next;
        if (!s->slots_head)
            s->slots_tail = NULL;
        s->nslots--;
        sess_reply__emit(s, sl->text.ptr, sl->text.len);
        sess_reply__free(sl);
    }
}

void sess_reply_drop_all(struct sess *s)
{
    while (s->slots_head) {
        struct sess_slot *sl = s->slots_head;
        s->slots_head = sl->next;
        sess_reply__free(sl);
    }
    s->slots_tail = NULL;
    s->nslots = 0;
}

static struct sess_slot *sess_reply__push(struct sess *s)
{
    struct sess_slot *sl = xcalloc(1, sizeof *sl);
    sl->s = s;
    if (s->slots_tail)
        s->slots_tail->next = sl;
    else
        s->slots_head = sl;
    s->slots_tail = sl;
    s->nslots++;
    s->slot_bytes += sizeof *sl; /* a reply on its way, counted before its text */
    return sl;
}

struct sess_slot *sess_reply_slot(struct sess *s)
{
    return sess_reply__push(s);
}

void sess_reply_raw(struct sess *s, const char *p, size_t n)
{
    if (!s->slots_head) {
        sess_reply__emit(s, p, n);
        return;
    }
    struct sess_slot *sl = sess_reply__push(s);
    buf_append(&sl->text, p, n);
    sl->filled = true;
    s->slot_bytes += sl->text.len;
}

void sess_reply(struct sess *s, int code, const char *enh, const char *fmt, ...)
{
    buf_t b = BUF_INIT;
    if (enh && *enh)
        buf_printf(&b, "%d %s ", code, enh);
    else
        buf_printf(&b, "%d ", code);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    buf_puts(&b, "\r\n");
    sess_reply_raw(s, b.ptr, b.len);
    buf_free(&b);
}

/* A plugin's reply text: lines separated by \n (host_result.text), each
 * sent with the code and enhanced code, "-" after the code on all but the
 * last (RFC 5321 4.2.1). */
void sess_reply_text(struct sess *s, int code, const char *enh, const char *text)
{
    buf_t b = BUF_INIT;
    const char *p = text;
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        buf_printf(&b, "%d%c", code, nl ? '-' : ' ');
        if (enh && *enh)
            buf_printf(&b, "%s ", enh);
        buf_append(&b, p, n);
        buf_puts(&b, "\r\n");
        if (!nl)
            break;
        p = nl + 1;
    }
    sess_reply_raw(s, b.ptr, b.len);
    buf_free(&b);
}

const char *sess_reply_default_enh(int code)
{
    if (code >= 500)
        return "5.0.0";
    if (code >= 400)
        return "4.0.0";
    return "2.0.0";
}

void sess_reply_relay(buf_t *b, const struct smtp_reply *r)
{
    const char *enh = r->enh[0] ? r->enh : sess_reply_default_enh(r->code);
    size_t n = r->nlines ? r->nlines : 1;
    for (size_t i = 0; i < n; i++) {
        const char *t = r->nlines ? r->lines[i] : "";
        buf_printf(b, "%d%c%s%s%s\r\n", r->code, i + 1 < n ? '-' : ' ', enh, *t ? " " : "", t);
    }
}

void sess_reply_up_error(buf_t *b, enum up_err e)
{
    static const char *const text[] = {
        [UP_ERR_CONNECT] = "451 4.4.1 Upstream server unavailable, try again later\r\n",
        [UP_ERR_TIMEOUT] = "451 4.4.2 Upstream server timed out, try again later\r\n",
        [UP_ERR_LOST] = "451 4.4.2 Connection to upstream server lost, try again later\r\n",
        [UP_ERR_PROTOCOL] = "451 4.4.0 Upstream protocol error, try again later\r\n",
        [UP_ERR_TLS] = "451 4.7.5 Secure connection to upstream server failed, try again later\r\n",
        [UP_ERR_LOCAL] = "451 4.3.0 Local error in processing, try again later\r\n",
    };
    const char *t = (e > UP_OK && e <= UP_ERR_LOCAL && text[e]) ? text[e] : text[UP_ERR_PROTOCOL];
    buf_puts(b, t);
}

void sess_reply_fill_relay(struct sess_slot *sl, const struct smtp_reply *r)
{
    sess_reply_relay(&sl->text, r);
}

void sess_reply_fill_error(struct sess_slot *sl, enum up_err e)
{
    sess_reply_up_error(&sl->text, e);
}

void sess_reply_slot_done(struct sess_slot *sl)
{
    sl->filled = true;
    sl->s->slot_bytes += sl->text.len;
    sess_reply_flush(sl->s);
}

void sess_reply_ehlo(struct sess *s, const char *helo)
{
    buf_t b = BUF_INIT;
    unsigned caps = sess_upstream_caps(s);
    s->offered = caps & (UP_CAP_DSN | UP_CAP_SMTPUTF8);
    buf_printf(&b, "250-%s Hello %s\r\n", s->cfg->hostname, helo);
    buf_puts(&b, "250-PIPELINING\r\n");
    buf_printf(&b, "250-SIZE %llu\r\n", (unsigned long long)s->lst->max_message_size);
    buf_puts(&b, "250-8BITMIME\r\n");
    if (s->cfg->chunking) {
        /* Ours, whatever the upstream offers: BDAT content is taken into
         * the same canonical message as DATA and goes on as DATA (dots
         * stuffed) to an upstream without CHUNKING. */
        buf_puts(&b, "250-CHUNKING\r\n");
        s->offered |= UP_CAP_CHUNKING;
        if ((caps & (UP_CAP_CHUNKING | UP_CAP_BINARYMIME)) ==
            (UP_CAP_CHUNKING | UP_CAP_BINARYMIME)) {
            /* Only passed through: the body goes on byte for byte as BDAT. */
            buf_puts(&b, "250-BINARYMIME\r\n");
            s->offered |= UP_CAP_BINARYMIME;
        }
    }
    if (sess_starttls_ctx(s))
        buf_puts(&b, "250-STARTTLS\r\n");
    if (sess_auth_offered(s))
        buf_puts(&b, "250-AUTH PLAIN LOGIN\r\n");
    if (caps & UP_CAP_DSN)
        buf_puts(&b, "250-DSN\r\n");
    if (caps & UP_CAP_SMTPUTF8)
        buf_puts(&b, "250-SMTPUTF8\r\n");
    buf_puts(&b, "250 ENHANCEDSTATUSCODES\r\n");
    sess_reply_raw(s, b.ptr, b.len);
    buf_free(&b);
}
