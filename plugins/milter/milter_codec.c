/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * milter_codec: the milter protocol's bytes, both ways (see
 * milter_codec.h). Encoders check every field before appending, so a
 * refused command leaves the caller's buffer as it was. The reader keeps
 * one growing buffer; replies point into it, which is why it is compacted
 * only when bytes are fed, never while replies are being taken out.
 */
#include "milter_codec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest socket path libmilter takes: its sun_path holds 108 bytes with NUL. */
#define MILTER__UNIX_PATH_MAX 107

/* ---- encoders ----------------------------------------------------------- */

static void milter__put_u32(struct pstr *out, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    pstr_append(out, (const char *)b, sizeof b);
}

/* The length word and command byte of a packet whose payload follows. */
static void milter__frame(struct pstr *out, enum milter_cmd cmd, size_t payload)
{
    milter__put_u32(out, (uint32_t)(payload + 1));
    pstr_putc(out, (char)cmd);
}

/* Add a string field's wire size (with its NUL) to *total. */
static int milter__add(size_t *total, size_t n)
{
    if (n >= MILTER_PAYLOAD_MAX || *total + n + 1 > MILTER_PAYLOAD_MAX)
        return -EMSGSIZE;
    *total += n + 1;
    return 0;
}

static void milter__put_str(struct pstr *out, const char *s, size_t n)
{
    pstr_append(out, s, n);
    pstr_putc(out, '\0');
}

static int milter__put_bare(struct pstr *out, enum milter_cmd cmd)
{
    milter__frame(out, cmd, 0);
    return 0;
}

/* A command whose payload is one string. */
static int milter__put_one(struct pstr *out, enum milter_cmd cmd, const char *s)
{
    size_t n = strlen(s), total = 0;
    if (milter__add(&total, n) < 0)
        return -EMSGSIZE;
    milter__frame(out, cmd, total);
    milter__put_str(out, s, n);
    return 0;
}

int milter_put_optneg(struct pstr *out, uint32_t version, uint32_t actions, uint32_t steps)
{
    if (version < MILTER_VERSION_MIN || actions == 0 || steps == 0)
        return -EINVAL;
    milter__frame(out, MILTER_CMD_OPTNEG, 12);
    milter__put_u32(out, version);
    milter__put_u32(out, actions);
    milter__put_u32(out, steps);
    return 0;
}

int milter_put_macro(struct pstr *out, enum milter_cmd stage, const struct milter_macro *macros,
                     size_t n)
{
    switch (stage) {
    case MILTER_CMD_CONNECT:
    case MILTER_CMD_HELO:
    case MILTER_CMD_MAIL:
    case MILTER_CMD_RCPT:
    case MILTER_CMD_DATA:
    case MILTER_CMD_EOH:
    case MILTER_CMD_EOM:
        break;
    default:
        return -EINVAL; /* libmilter keeps macros for these stages only */
    }
    if (n == 0)
        return 0;
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        if (macros[i].name[0] == '\0')
            return -EINVAL;
        if (milter__add(&total, strlen(macros[i].name)) < 0 ||
            milter__add(&total, strlen(macros[i].value)) < 0)
            return -EMSGSIZE;
    }
    milter__frame(out, MILTER_CMD_MACRO, total);
    pstr_putc(out, (char)stage);
    for (size_t i = 0; i < n; i++) {
        milter__put_str(out, macros[i].name, strlen(macros[i].name));
        milter__put_str(out, macros[i].value, strlen(macros[i].value));
    }
    return 0;
}

int milter_put_connect(struct pstr *out, const char *hostname, enum milter_family family,
                       uint16_t port, const char *address)
{
    unsigned char addr[16];
    size_t total = 1; /* the family byte */
    if (milter__add(&total, strlen(hostname)) < 0)
        return -EMSGSIZE;
    switch (family) {
    case MILTER_FAMILY_UNKNOWN:
        break;
    case MILTER_FAMILY_INET:
    case MILTER_FAMILY_INET6:
        if (!address ||
            inet_pton(family == MILTER_FAMILY_INET ? AF_INET : AF_INET6, address, addr) != 1)
            return -EINVAL;
        total += 2 + strlen(address) + 1;
        break;
    case MILTER_FAMILY_UNIX:
        if (!address || address[0] == '\0' || strlen(address) > MILTER__UNIX_PATH_MAX || port != 0)
            return -EINVAL;
        total += 2 + strlen(address) + 1;
        break;
    default:
        return -EINVAL;
    }
    if (total > MILTER_PAYLOAD_MAX)
        return -EMSGSIZE;
    milter__frame(out, MILTER_CMD_CONNECT, total);
    milter__put_str(out, hostname, strlen(hostname));
    pstr_putc(out, (char)family);
    if (family != MILTER_FAMILY_UNKNOWN) {
        pstr_putc(out, (char)(port >> 8));
        pstr_putc(out, (char)port);
        milter__put_str(out, address, strlen(address));
    }
    return 0;
}

int milter_put_helo(struct pstr *out, const char *helo)
{
    return milter__put_one(out, MILTER_CMD_HELO, helo);
}

/* MAIL and RCPT: the address, then each ESMTP parameter, as strings. */
static int milter__put_env(struct pstr *out, enum milter_cmd cmd, const char *addr,
                           const char *const *args, size_t nargs)
{
    size_t total = 0;
    if (addr[0] == '\0')
        return -EINVAL;
    if (milter__add(&total, strlen(addr)) < 0)
        return -EMSGSIZE;
    for (size_t i = 0; i < nargs; i++) {
        if (args[i][0] == '\0')
            return -EINVAL;
        if (milter__add(&total, strlen(args[i])) < 0)
            return -EMSGSIZE;
    }
    milter__frame(out, cmd, total);
    milter__put_str(out, addr, strlen(addr));
    for (size_t i = 0; i < nargs; i++)
        milter__put_str(out, args[i], strlen(args[i]));
    return 0;
}

int milter_put_envfrom(struct pstr *out, const char *addr, const char *const *args, size_t nargs)
{
    return milter__put_env(out, MILTER_CMD_MAIL, addr, args, nargs);
}

int milter_put_envrcpt(struct pstr *out, const char *addr, const char *const *args, size_t nargs)
{
    return milter__put_env(out, MILTER_CMD_RCPT, addr, args, nargs);
}

int milter_put_data(struct pstr *out)
{
    return milter__put_bare(out, MILTER_CMD_DATA);
}

int milter_put_header(struct pstr *out, const char *name, size_t name_len, const char *value,
                      size_t value_len)
{
    size_t total = 0;
    if (name_len == 0 || memchr(name, '\0', name_len) || memchr(value, '\0', value_len))
        return -EINVAL;
    if (milter__add(&total, name_len) < 0 || milter__add(&total, value_len) < 0)
        return -EMSGSIZE;
    milter__frame(out, MILTER_CMD_HEADER, total);
    milter__put_str(out, name, name_len);
    milter__put_str(out, value, value_len);
    return 0;
}

int milter_put_eoh(struct pstr *out)
{
    return milter__put_bare(out, MILTER_CMD_EOH);
}

int milter_put_body(struct pstr *out, const void *chunk, size_t len)
{
    if (len == 0)
        return -EINVAL;
    if (len > MILTER_PAYLOAD_MAX)
        return -EMSGSIZE;
    milter__frame(out, MILTER_CMD_BODY, len);
    pstr_append(out, chunk, len);
    return 0;
}

int milter_put_eom(struct pstr *out)
{
    return milter__put_bare(out, MILTER_CMD_EOM);
}

int milter_put_abort(struct pstr *out)
{
    return milter__put_bare(out, MILTER_CMD_ABORT);
}

int milter_put_quit(struct pstr *out)
{
    return milter__put_bare(out, MILTER_CMD_QUIT);
}

int milter_put_quit_nc(struct pstr *out)
{
    return milter__put_bare(out, MILTER_CMD_QUIT_NC);
}

int milter_put_unknown(struct pstr *out, const char *line)
{
    return milter__put_one(out, MILTER_CMD_UNKNOWN, line);
}

/* ---- decoding replies ----------------------------------------------------- */

static uint32_t milter__get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Split data[0..len) into NUL-terminated strings: between min and max of
 * them, filling the payload exactly. */
static int milter__strings(const unsigned char *data, size_t len, size_t min, size_t max,
                           const char **s, size_t *count, const char **why)
{
    size_t n = 0, at = 0;
    while (at < len) {
        const unsigned char *nul = memchr(data + at, '\0', len - at);
        if (!nul) {
            *why = "string without NUL";
            return -EPROTO;
        }
        if (n == max) {
            *why = "data after the last string";
            return -EPROTO;
        }
        s[n++] = (const char *)data + at;
        at = (size_t)(nul - data) + 1;
    }
    if (n < min) {
        *why = "string missing";
        return -EPROTO;
    }
    *count = n;
    return 0;
}

/* RFC 5322 field name: printable ASCII but ':', at least one. */
static bool milter__field_name(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 127 || *s == ':')
            return false;
    return true;
}

/* A field value may break lines (LF or CRLF) only to fold, so a milter
 * cannot start a new field inside it. */
static bool milter__field_value(const char *s)
{
    for (; *s; s++) {
        if (*s == '\r' && s[1] != '\n')
            return false;
        if (*s == '\n' && s[1] != ' ' && s[1] != '\t')
            return false;
    }
    return true;
}

static bool milter__printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < ' ' || (unsigned char)*s >= 127)
            return false;
    return true;
}

const char *milter_reply_name(int cmd)
{
    static const char *const names[128] = {
        [MILTER_REPLY_ADDRCPT] = "addrcpt",
        [MILTER_REPLY_DELRCPT] = "delrcpt",
        [MILTER_REPLY_ADDRCPT_PAR] = "addrcpt_par",
        [MILTER_REPLY_SHUTDOWN] = "shutdown",
        [MILTER_REPLY_OPTNEG] = "optneg",
        [MILTER_REPLY_ACCEPT] = "accept",
        [MILTER_REPLY_REPLBODY] = "replbody",
        [MILTER_REPLY_CONTINUE] = "continue",
        [MILTER_REPLY_DISCARD] = "discard",
        [MILTER_REPLY_CHGFROM] = "chgfrom",
        [MILTER_REPLY_CONNFAIL] = "connfail",
        [MILTER_REPLY_ADDHEADER] = "addheader",
        [MILTER_REPLY_INSHEADER] = "insheader",
        [MILTER_REPLY_SETSYMLIST] = "setsymlist",
        [MILTER_REPLY_CHGHEADER] = "chgheader",
        [MILTER_REPLY_PROGRESS] = "progress",
        [MILTER_REPLY_QUARANTINE] = "quarantine",
        [MILTER_REPLY_REJECT] = "reject",
        [MILTER_REPLY_SKIP] = "skip",
        [MILTER_REPLY_TEMPFAIL] = "tempfail",
        [MILTER_REPLY_REPLYCODE] = "replycode",
    };
    return cmd > 0 && cmd < 128 ? names[cmd] : NULL;
}

int milter_reply_decode(unsigned char cmd, const unsigned char *data, size_t len,
                        struct milter_reply *out, const char **why)
{
    const char *s[2];
    size_t n;

    memset(out, 0, sizeof *out);
    out->type = (enum milter_reply_type)cmd;
    switch (cmd) {
    case MILTER_REPLY_ACCEPT:
    case MILTER_REPLY_CONTINUE:
    case MILTER_REPLY_REJECT:
    case MILTER_REPLY_TEMPFAIL:
    case MILTER_REPLY_DISCARD:
    case MILTER_REPLY_SKIP:
    case MILTER_REPLY_PROGRESS:
    case MILTER_REPLY_SHUTDOWN:
    case MILTER_REPLY_CONNFAIL:
        if (len != 0) {
            *why = "data after a reply that has none";
            return -EPROTO;
        }
        return 0;
    case MILTER_REPLY_OPTNEG:
        if (len < 12) {
            *why = "optneg shorter than 12 bytes";
            return -EPROTO;
        }
        out->optneg.version = milter__get_u32(data);
        out->optneg.actions = milter__get_u32(data + 4);
        out->optneg.steps = milter__get_u32(data + 8);
        out->optneg.macros = data + 12;
        out->optneg.macros_len = len - 12;
        return 0;
    case MILTER_REPLY_REPLYCODE:
    case MILTER_REPLY_QUARANTINE:
        if (milter__strings(data, len, 1, 1, s, &n, why) < 0)
            return -EPROTO;
        out->text = s[0];
        return 0;
    case MILTER_REPLY_INSHEADER:
    case MILTER_REPLY_CHGHEADER:
    case MILTER_REPLY_ADDHEADER:
        if (cmd != MILTER_REPLY_ADDHEADER) {
            if (len < 4) {
                *why = "header index missing";
                return -EPROTO;
            }
            out->header.index = milter__get_u32(data);
            data += 4;
            len -= 4;
        }
        if (milter__strings(data, len, 2, 2, s, &n, why) < 0)
            return -EPROTO;
        if (!milter__field_name(s[0])) {
            *why = "header name empty or not printable ASCII without ':'";
            return -EPROTO;
        }
        if (!milter__field_value(s[1])) {
            *why = "line break in a header value not followed by a blank";
            return -EPROTO;
        }
        out->header.name = s[0];
        out->header.value = s[1];
        return 0;
    case MILTER_REPLY_CHGFROM:
    case MILTER_REPLY_ADDRCPT_PAR:
    case MILTER_REPLY_ADDRCPT:
    case MILTER_REPLY_DELRCPT: {
        size_t max = cmd == MILTER_REPLY_CHGFROM || cmd == MILTER_REPLY_ADDRCPT_PAR ? 2 : 1;
        if (milter__strings(data, len, 1, max, s, &n, why) < 0)
            return -EPROTO;
        if (s[0][0] == '\0') {
            *why = "empty address";
            return -EPROTO;
        }
        out->env.addr = s[0];
        out->env.args = n == 2 ? s[1] : NULL;
        return 0;
    }
    case MILTER_REPLY_REPLBODY:
        out->body.data = data;
        out->body.len = len;
        return 0;
    case MILTER_REPLY_SETSYMLIST:
        if (len < 4 || milter__get_u32(data) >= MILTER_STAGES) {
            *why = "setsymlist without a known stage";
            return -EPROTO;
        }
        out->symlist.stage = (enum milter_stage)milter__get_u32(data);
        if (milter__strings(data + 4, len - 4, 1, 1, s, &n, why) < 0)
            return -EPROTO;
        if (!milter__printable(s[0])) {
            *why = "macro names not printable ASCII";
            return -EPROTO;
        }
        out->symlist.names = s[0];
        return 0;
    default:
        *why = "unknown reply command";
        return -EPROTO;
    }
}

uint32_t milter_reply_action(enum milter_reply_type type)
{
    switch (type) {
    case MILTER_REPLY_ADDHEADER:
    case MILTER_REPLY_INSHEADER:
        return MILTER_ACT_ADDHDRS;
    case MILTER_REPLY_CHGHEADER:
        return MILTER_ACT_CHGHDRS;
    case MILTER_REPLY_REPLBODY:
        return MILTER_ACT_CHGBODY;
    case MILTER_REPLY_ADDRCPT:
        return MILTER_ACT_ADDRCPT;
    case MILTER_REPLY_ADDRCPT_PAR:
        return MILTER_ACT_ADDRCPT_PAR;
    case MILTER_REPLY_DELRCPT:
        return MILTER_ACT_DELRCPT;
    case MILTER_REPLY_QUARANTINE:
        return MILTER_ACT_QUARANTINE;
    case MILTER_REPLY_CHGFROM:
        return MILTER_ACT_CHGFROM;
    case MILTER_REPLY_SETSYMLIST:
        return MILTER_ACT_SETSYMLIST;
    default:
        return 0;
    }
}

int milter_optneg_check(const struct milter_optneg *offer, const struct milter_optneg *reply,
                        const char **why)
{
    if (reply->version < MILTER_VERSION_MIN) {
        *why = "milter protocol version below 2";
        return -EPROTO;
    }
    if (reply->version > offer->version) {
        *why = "milter protocol version above the one offered";
        return -EPROTO;
    }
    if (reply->actions & ~offer->actions) {
        *why = "milter asks for actions not offered";
        return -EPROTO;
    }
    if (reply->steps & ~offer->steps) {
        *why = "milter asks for protocol steps not offered";
        return -EPROTO;
    }
    return 0;
}

int milter_optneg_macros(const struct milter_optneg *neg, struct milter_macro_lists *out,
                         const char **why)
{
    const unsigned char *p = neg->macros;
    size_t left = neg->macros_len;

    memset(out, 0, sizeof *out);
    while (left > 0) {
        if (left < 4 || milter__get_u32(p) >= MILTER_STAGES) {
            *why = "macro list without a known stage";
            return -EPROTO;
        }
        uint32_t stage = milter__get_u32(p);
        const unsigned char *nul = memchr(p + 4, '\0', left - 4);
        if (!nul) {
            *why = "macro list without NUL";
            return -EPROTO;
        }
        if (out->names[stage]) {
            *why = "two macro lists for one stage";
            return -EPROTO;
        }
        out->names[stage] = (const char *)p + 4;
        if (!milter__printable(out->names[stage])) {
            *why = "macro names not printable ASCII";
            return -EPROTO;
        }
        left -= (size_t)(nul + 1 - p);
        p = nul + 1;
    }
    return 0;
}

/* ---- SMTP replies --------------------------------------------------------- */

static bool milter__digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Length of the RFC 3463 code "c.s.d" at p (1-3 digits for s and d), or 0. */
static size_t milter__enh_len(const char *p)
{
    size_t i = 2, n;
    if (!milter__digit(p[0]) || p[1] != '.')
        return 0;
    for (n = 0; n < 3 && milter__digit(p[i]); n++)
        i++;
    if (n == 0 || p[i] != '.')
        return 0;
    i++;
    for (n = 0; n < 3 && milter__digit(p[i]); n++)
        i++;
    return n == 0 ? 0 : i;
}

/* One line of a reply, from after its code to its end; appends the text
 * to *st. */
static int milter__reply_line(struct milter_replycode *out, const char *p, const char *end,
                              bool last, char **st, const char **why)
{
    if (last ? p < end && *p != ' ' : *p != '-') {
        *why = "code not followed by '-' on a continued line or ' ' on the last";
        return -EPROTO;
    }
    if (p < end)
        p++;
    size_t enh = milter__enh_len(p);
    if (p < end && milter__digit(*p)) {
        if (enh == 0 || (p + enh < end && p[enh] != ' ')) {
            *why = "malformed enhanced status code";
            return -EPROTO;
        }
        if (p[0] != '0' + out->code / 100) {
            *why = "enhanced code class differs from the reply code's";
            return -EPROTO;
        }
    }
    if (out->nlines == 0) {
        memcpy(out->enh, p, enh);
        out->enh[enh] = '\0';
    } else if (strlen(out->enh) != enh || memcmp(out->enh, p, enh) != 0) {
        *why = "lines with different enhanced codes";
        return -EPROTO;
    }
    p += enh;
    if (enh > 0 && p < end)
        p++;
    if ((size_t)(end - p) > MILTER_REPLY_TEXT_MAX) {
        *why = "line text over 980 octets";
        return -EPROTO;
    }
    out->lines[out->nlines++] = *st;
    for (; p < end; p++) {
        if (*p != '\t' && ((unsigned char)*p < ' ' || (unsigned char)*p >= 127)) {
            *why = "text not printable ASCII";
            return -EPROTO;
        }
        if (*p == '%' && p + 1 < end && p[1] == '%')
            *(*st)++ = *p++;
        else if (*p != '%')
            *(*st)++ = *p;
    }
    *(*st)++ = '\0';
    return 0;
}

int milter_replycode_parse(const char *text, struct milter_replycode *out, const char **why)
{
    char *st = out->storage;

    memset(out, 0, offsetof(struct milter_replycode, storage));
    for (const char *p = text;;) {
        if (out->nlines == MILTER_REPLY_LINES_MAX) {
            *why = "more than 32 lines";
            return -EPROTO;
        }
        if ((p[0] != '4' && p[0] != '5') || !milter__digit(p[1]) || !milter__digit(p[2])) {
            *why = "line without a 4xx or 5xx code";
            return -EPROTO;
        }
        int code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
        if (out->nlines > 0 && code != out->code) {
            *why = "lines with different codes";
            return -EPROTO;
        }
        out->code = code;
        const char *eol = strstr(p + 3, "\r\n");
        const char *end = eol ? eol : p + 3 + strlen(p + 3);
        if (milter__reply_line(out, p + 3, end, eol == NULL, &st, why) < 0)
            return -EPROTO;
        if (!eol)
            return 0;
        p = eol + 2;
    }
}

/* ---- the reader --------------------------------------------------------- */

void milter_reader_init(struct milter_reader *r)
{
    memset(r, 0, sizeof *r);
}

void milter_reader_free(struct milter_reader *r)
{
    free(r->buf);
    milter_reader_init(r);
}

void milter_reader_feed(struct milter_reader *r, const void *data, size_t len)
{
    if (r->error[0] || len == 0)
        return;
    /* The replies taken out so far are dropped only now (see the top). */
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->len + len > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + len)
            cap *= 2;
        r->buf = pstr_xrealloc(r->buf, cap);
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, len);
    r->len += len;
}

/* The error message is in r->error; the buffered bytes are of no use any
 * more. */
static int milter__fail(struct milter_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->len = r->cap = r->pos = 0;
    return -EPROTO;
}

int milter_reader_next(struct milter_reader *r, struct milter_reply *out)
{
    if (r->error[0])
        return -EPROTO;
    size_t avail = r->len - r->pos;
    if (avail < 4)
        return 0;
    const unsigned char *p = r->buf + r->pos;
    uint32_t plen = milter__get_u32(p);
    if (plen == 0 || plen > 1 + MILTER_READ_MAX) {
        snprintf(r->error, sizeof r->error, "milter packet length %" PRIu32 " not in 1..%u", plen,
                 1 + MILTER_READ_MAX);
        return milter__fail(r);
    }
    if (avail < 5)
        return 0;
    const char *name = milter_reply_name(p[4]);
    if (!name) {
        snprintf(r->error, sizeof r->error, "unknown milter reply command 0x%02x", p[4]);
        return milter__fail(r);
    }
    if (avail < 4 + (size_t)plen)
        return 0;
    const char *why;
    if (milter_reply_decode(p[4], p + 5, plen - 1, out, &why) < 0) {
        snprintf(r->error, sizeof r->error, "bad milter %s reply: %s", name, why);
        return milter__fail(r);
    }
    r->pos += 4 + (size_t)plen;
    return 1;
}

const char *milter_reader_error(const struct milter_reader *r)
{
    return r->error[0] ? r->error : NULL;
}

bool milter_reader_idle(const struct milter_reader *r)
{
    return r->pos == r->len;
}
