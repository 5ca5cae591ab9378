/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * esmtp: EHLO capabilities and XCLIENT / XFORWARD lines; see esmtp.h.
 * Attribute names and order follow Postfix's XCLIENT_README and
 * XFORWARD_README.
 */
#include "esmtp.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

unsigned esmtp_caps(const struct smtp_reply *ehlo, unsigned long long *size_limit)
{
    static const struct {
        const char *kw;
        unsigned cap;
    } kws[] = {
        {"PIPELINING", ESMTP_PIPELINING},
        {"8BITMIME", ESMTP_8BITMIME},
        {"SIZE", ESMTP_SIZE},
        {"DSN", ESMTP_DSN},
        {"SMTPUTF8", ESMTP_SMTPUTF8},
        {"ENHANCEDSTATUSCODES", ESMTP_ENHANCED},
        {"STARTTLS", ESMTP_STARTTLS},
        {"XCLIENT", ESMTP_XCLIENT},
        {"XFORWARD", ESMTP_XFORWARD},
        {"CHUNKING", ESMTP_CHUNKING},
        {"BINARYMIME", ESMTP_BINARYMIME},
    };
    unsigned caps = 0;
    *size_limit = 0;
    for (size_t i = 0; i < sizeof kws / sizeof kws[0]; i++) {
        const char *p = NULL;
        if (!reply_has_keyword(ehlo, kws[i].kw, &p))
            continue;
        caps |= kws[i].cap;
        if (kws[i].cap == ESMTP_SIZE && p)
            *size_limit = strtoull(p, NULL, 10);
    }
    return caps;
}

static unsigned esmtp__attrs(const struct smtp_reply *ehlo, const char *keyword)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {
        {"NAME", ESMTP_XA_NAME},
        {"ADDR", ESMTP_XA_ADDR},
        {"PORT", ESMTP_XA_PORT},
        {"PROTO", ESMTP_XA_PROTO},
        {"HELO", ESMTP_XA_HELO},
        {"LOGIN", ESMTP_XA_LOGIN},
        {"REVERSE_NAME", ESMTP_XA_REVERSE_NAME},
    };
    const char *p = NULL;
    if (!reply_has_keyword(ehlo, keyword, &p) || !p)
        return 0;
    unsigned attrs = 0;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (n == strlen(names[i].name) && strncasecmp(p, names[i].name, n) == 0)
                attrs |= names[i].bit;
        p += n;
    }
    return attrs;
}

unsigned esmtp_xclient_attrs(const struct smtp_reply *ehlo)
{
    return esmtp__attrs(ehlo, "XCLIENT");
}

unsigned esmtp_xforward_attrs(const struct smtp_reply *ehlo)
{
    return esmtp__attrs(ehlo, "XFORWARD");
}

void esmtp_xtext(buf_t *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 33 || ch > 126 || ch == '+' || ch == '=')
            buf_printf(b, "+%02X", ch);
        else
            buf_append(b, s, 1);
    }
}

void esmtp_ehlo_name(char *out, size_t n, const char *helo, const char *addr)
{
    size_t len = helo ? strlen(helo) : 0;
    bool usable = len > 0 && len < n;
    for (size_t i = 0; usable && i < len; i++)
        usable = (unsigned char)helo[i] >= 33 && (unsigned char)helo[i] <= 126;
    if (usable)
        snprintf(out, n, "%s", helo);
    else if (addr && strchr(addr, ':'))
        snprintf(out, n, "[IPv6:%s]", addr);
    else
        snprintf(out, n, "[%s]", addr ? addr : "");
}

static void esmtp__addr(buf_t *b, const char *addr)
{
    if (strchr(addr, ':'))
        buf_puts(b, "IPV6:");
    esmtp_xtext(b, addr);
}

static const char *esmtp__name(const struct esmtp_client *w)
{
    return w->name && w->name[0] ? w->name : "[UNAVAILABLE]";
}

static size_t esmtp__xtext_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        n += ch < 33 || ch > 126 || ch == '+' || ch == '=' ? 3 : 1;
    }
    return n;
}

/* A name or HELO as an attribute value. Postfix refuses a whole XCLIENT or
 * XFORWARD command (501, "attribute value too long") when one value as sent
 * is over 255 octets, and a refused XFORWARD stops it on the connection:
 * such a value (a HELO of 86 '=' is one) goes as [UNAVAILABLE] instead. */
static void esmtp__value(buf_t *b, const char *v)
{
    esmtp_xtext(b, esmtp__xtext_len(v) <= ESMTP_VALUE_MAX ? v : "[UNAVAILABLE]");
}

void esmtp_xclient_line(buf_t *b, const struct esmtp_client *w)
{
    /* Only what the MTA lists (Postfix answers 501 to any other name). */
#define ESMTP__LISTED(bit) (!w->attrs || (w->attrs & (bit)))
    buf_puts(b, "XCLIENT");
    if (ESMTP__LISTED(ESMTP_XA_ADDR)) {
        buf_puts(b, " ADDR=");
        esmtp__addr(b, w->addr);
    }
    if (ESMTP__LISTED(ESMTP_XA_PORT))
        buf_printf(b, " PORT=%d", w->port);
    if (ESMTP__LISTED(ESMTP_XA_NAME)) {
        buf_puts(b, " NAME=");
        esmtp__value(b, esmtp__name(w));
    }
    if (ESMTP__LISTED(ESMTP_XA_PROTO))
        buf_printf(b, " PROTO=%s", w->esmtp ? "ESMTP" : "SMTP");
    if (w->reset && (w->attrs & ESMTP_XA_REVERSE_NAME)) {
        /* What Postfix sets itself from a real NAME; on [UNAVAILABLE] it
         * would keep the last client's. */
        buf_puts(b, " REVERSE_NAME=");
        esmtp__value(b, esmtp__name(w));
    }
    if (ESMTP__LISTED(ESMTP_XA_HELO)) {
        if (w->helo && w->helo[0]) {
            buf_puts(b, " HELO=");
            esmtp__value(b, w->helo);
        } else if (w->reset) {
            buf_puts(b, " HELO=[UNAVAILABLE]");
        }
    }
    /* Postfix then takes the client as authenticated under that name
     * (permit_sasl_authenticated, reject_sender_login_mismatch). */
    if (ESMTP__LISTED(ESMTP_XA_LOGIN)) {
        if (w->login && w->login[0]) {
            buf_puts(b, " LOGIN=");
            esmtp_xtext(b, w->login);
        } else if (w->reset) {
            buf_puts(b, " LOGIN=[UNAVAILABLE]");
        }
    }
#undef ESMTP__LISTED
}

void esmtp_xforward_lines(buf_t *addr_line, buf_t *helo_line, const struct esmtp_client *w)
{
    /* Only what the MTA lists (Postfix answers 501 to any other name);
     * a line with nothing to say stays empty. */
#define ESMTP__LISTED(bit) (!w->attrs || (w->attrs & (bit)))
    const char *sep = "XFORWARD ";
    if (ESMTP__LISTED(ESMTP_XA_ADDR)) {
        buf_printf(addr_line, "%sADDR=", sep);
        esmtp__addr(addr_line, w->addr);
        sep = " ";
    }
    if (ESMTP__LISTED(ESMTP_XA_PORT)) {
        buf_printf(addr_line, "%sPORT=%d", sep, w->port);
        sep = " ";
    }
    if (ESMTP__LISTED(ESMTP_XA_PROTO)) {
        buf_printf(addr_line, "%sPROTO=%s", sep, w->esmtp ? "ESMTP" : "SMTP");
        sep = " ";
    }
    if (ESMTP__LISTED(ESMTP_XA_NAME)) {
        buf_printf(addr_line, "%sNAME=", sep);
        esmtp__value(addr_line, esmtp__name(w));
    }
    if (ESMTP__LISTED(ESMTP_XA_HELO)) {
        buf_puts(helo_line, "XFORWARD HELO=");
        esmtp__value(helo_line, w->helo && w->helo[0] ? w->helo : "[UNAVAILABLE]");
    }
#undef ESMTP__LISTED
    /* One command when both fit in one line: the MTA parses and answers
     * one command less per transaction (XFORWARD takes any number of
     * attributes). Long names keep two. */
    static const char verb[] = "XFORWARD";
    size_t tail = helo_line->len > sizeof verb - 1 ? helo_line->len - (sizeof verb - 1) : 0;
    if (addr_line->len && tail && addr_line->len + tail <= ESMTP_LINE_MAX) {
        buf_append(addr_line, helo_line->ptr + sizeof verb - 1, tail);
        buf_reset(helo_line);
    }
}
