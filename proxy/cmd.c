/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cmd: command line assembly, verb splitting, and the MAIL/RCPT path
 * and ESMTP parameter grammar (RFC 5321 §4.1.2, RFC 1870, RFC 3461,
 * RFC 4954, RFC 6152, RFC 6531).
 *
 * Pure functions: nothing here allocates, keeps global state or does I/O.
 * Results point into the caller's input, except cmd_path.addr, which is a
 * copy (the source route is cut out of it, so it cannot be a plain slice).
 *
 * The grammar is strict where a mistake would reach the upstream (the path
 * must be in brackets, the mailbox must be RFC 5321 syntax, parameter
 * values are checked), and lenient where clients are commonly sloppy and no
 * harm follows (spaces after "FROM:", trailing spaces, bare LF).
 */
#include "cmd.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* ---- line assembly ---------------------------------------------------- */

void cmd_reader_init(struct cmd_reader *r, size_t max)
{
    r->max = max ? max : CMD_LINE_MAX;
    r->discarding = false;
}

enum cmd_rd cmd_reader_next(struct cmd_reader *r, const char *in, size_t len, size_t *consumed,
                            const char **line, size_t *line_len)
{
    const char *lf;

    *line = NULL;
    *line_len = 0;
    if (len == 0) {
        *consumed = 0; /* in may be NULL */
        return CMD_RD_AGAIN;
    }
    if (r->discarding) {
        lf = memchr(in, '\n', len);
        if (lf == NULL) {
            *consumed = len;
            return CMD_RD_AGAIN;
        }
        r->discarding = false;
        *consumed = (size_t)(lf - in) + 1;
        return CMD_RD_TOO_LONG;
    }

    /* Only the first `max` bytes may hold the LF of an acceptable line. */
    lf = memchr(in, '\n', len < r->max ? len : r->max);
    if (lf != NULL) {
        size_t n = (size_t)(lf - in);
        *consumed = n + 1;
        if (n > 0 && in[n - 1] == '\r')
            n--;
        *line = in;
        *line_len = n;
        return CMD_RD_LINE;
    }
    if (len < r->max) {
        *consumed = 0;
        return CMD_RD_AGAIN;
    }
    /* Over-long: the LF may already be in the buffer past `max`. */
    lf = memchr(in + r->max, '\n', len - r->max);
    if (lf != NULL) {
        *consumed = (size_t)(lf - in) + 1;
        return CMD_RD_TOO_LONG;
    }
    r->discarding = true;
    *consumed = len;
    return CMD_RD_AGAIN;
}

/* ---- commands --------------------------------------------------------- */

static const char *const cmd__names[CMD_VERB_COUNT] = {
    [CMD_UNKNOWN] = "UNKNOWN", [CMD_HELO] = "HELO",         [CMD_EHLO] = "EHLO",
    [CMD_MAIL] = "MAIL",       [CMD_RCPT] = "RCPT",         [CMD_DATA] = "DATA",
    [CMD_RSET] = "RSET",       [CMD_NOOP] = "NOOP",         [CMD_QUIT] = "QUIT",
    [CMD_HELP] = "HELP",       [CMD_VRFY] = "VRFY",         [CMD_EXPN] = "EXPN",
    [CMD_STARTTLS] = "STARTTLS", [CMD_AUTH] = "AUTH",       [CMD_BDAT] = "BDAT",
    [CMD_ETRN] = "ETRN",       [CMD_TURN] = "TURN",         [CMD_XCLIENT] = "XCLIENT",
    [CMD_XFORWARD] = "XFORWARD",
};

const char *cmd_verb_name(enum cmd_verb v)
{
    if ((unsigned)v >= CMD_VERB_COUNT)
        return "?";
    return cmd__names[v];
}

/* ASCII-only case folding: toupper() depends on the locale. */
static inline unsigned char cmd__upper(unsigned char c)
{
    return (c >= 'a' && c <= 'z') ? (unsigned char)(c - 'a' + 'A') : c;
}

/* s[0..n) equals the upper-case ASCII literal `lit`, ignoring case. */
static bool cmd__eq(const char *s, size_t n, const char *lit)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (lit[i] == '\0' || cmd__upper((unsigned char)s[i]) != (unsigned char)lit[i])
            return false;
    }
    return lit[n] == '\0';
}

static bool cmd__has_8bit(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80)
            return true;
    }
    return false;
}

void cmd_parse(const char *line, size_t len, struct cmd *out)
{
    size_t vlen = 0, i;
    int v;

    out->verb = CMD_UNKNOWN;
    out->arg = "";
    out->arg_len = 0;
    out->has_nul = len > 0 && memchr(line, '\0', len) != NULL;
    out->has_8bit = cmd__has_8bit(line, len);
    if (len == 0)
        return; /* line may be NULL */

    while (vlen < len && line[vlen] != ' ')
        vlen++;
    for (v = CMD_UNKNOWN + 1; v < CMD_VERB_COUNT; v++) {
        if (cmd__eq(line, vlen, cmd__names[v])) {
            out->verb = (enum cmd_verb)v;
            break;
        }
    }

    /* Trailing spaces are never meaningful in an argument; dropping them
     * here lets MAIL/RCPT parameters and HELO names be parsed strictly. */
    while (len > vlen && line[len - 1] == ' ')
        len--;
    i = vlen;
    while (i < len && line[i] == ' ')
        i++;

    if (out->verb == CMD_MAIL || out->verb == CMD_RCPT) {
        const char *kw = out->verb == CMD_MAIL ? "FROM:" : "TO:";
        size_t kwlen = strlen(kw);

        if (i == vlen || len - i < kwlen || !cmd__eq(line + i, kwlen, kw)) {
            out->arg = NULL;
            return;
        }
        i += kwlen;
        while (i < len && line[i] == ' ')
            i++;
    }
    out->arg = line + i;
    out->arg_len = len - i;
}

/* ---- character classes (RFC 5321 §4.1.2, RFC 5322 §3.2.3) ------------- */

static inline bool cmd__alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool cmd__digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static inline bool cmd__atext(unsigned char c)
{
    return cmd__alpha(c) || cmd__digit(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Length of a well-formed UTF-8 multi-byte sequence at s[0..n), or 0
 * (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t cmd__utf8_seq(const unsigned char *s, size_t n)
{
    size_t need, i;
    unsigned char lo = 0x80, hi = 0xBF;

    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        need = 1;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        need = 2;
        if (s[0] == 0xE0)
            lo = 0xA0;
        else if (s[0] == 0xED)
            hi = 0x9F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        need = 3;
        if (s[0] == 0xF0)
            lo = 0x90;
        else if (s[0] == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < need + 1)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i <= need; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    return need + 1;
}

/* ---- mailbox grammar --------------------------------------------------- */

#define CMD_LOCAL_MAX 64
#define CMD_DOMAIN_MAX 255
#define CMD_LABEL_MAX 63

/* Snum 3("." Snum), Snum = 1*3DIGIT with value 0..255. */
static bool cmd__ipv4_literal(const char *s, size_t n)
{
    size_t i = 0;
    int part;

    for (part = 0; part < 4; part++) {
        unsigned val = 0;
        size_t digits = 0;

        if (part > 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
        while (i < n && cmd__digit((unsigned char)s[i]) && digits < 3) {
            val = val * 10 + (unsigned)(s[i] - '0');
            digits++;
            i++;
        }
        if (digits == 0 || val > 255)
            return false;
    }
    return i == n;
}

/* "[" (IPv4 / "IPv6:" IPv6) "]". General address literals (a registered
 * Standardized-tag) are refused: none but IPv6 exists. */
static bool cmd__addr_literal(const char *s, size_t n)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    unsigned char bin[16];

    if (n < 3 || s[0] != '[' || s[n - 1] != ']')
        return false;
    s++;
    n -= 2;
    if (n > 5 && strncasecmp(s, "IPv6:", 5) == 0) {
        s += 5;
        n -= 5;
        if (n >= sizeof(tmp) || memchr(s, '\0', n) != NULL)
            return false;
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        return inet_pton(AF_INET6, tmp, bin) == 1;
    }
    return cmd__ipv4_literal(s, n);
}

/* Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str],
 * or a U-label (RFC 6531) when 8-bit bytes are allowed. Sets *utf8. */
static bool cmd__domain(const char *s, size_t n, bool allow_utf8, bool *utf8)
{
    size_t i = 0;

    if (n == 0)
        return false;
    if (s[0] == '[')
        return cmd__addr_literal(s, n);
    while (i < n) {
        size_t start = i;
        bool label_8bit = false;

        while (i < n && s[i] != '.') {
            unsigned char c = (unsigned char)s[i];

            if (c >= 0x80) {
                size_t k = allow_utf8 ? cmd__utf8_seq((const unsigned char *)s + i, n - i) : 0;
                if (k == 0)
                    return false;
                label_8bit = true;
                *utf8 = true;
                i += k;
                continue;
            }
            if (!cmd__alpha(c) && !cmd__digit(c) && c != '-')
                return false;
            i++;
        }
        /* A label neither starts nor ends with a hyphen. */
        if (i == start || s[start] == '-' || s[i - 1] == '-')
            return false;
        if (!label_8bit && i - start > CMD_LABEL_MAX)
            return false;
        if (i < n) {
            i++; /* the dot */
            if (i == n)
                return false; /* trailing dot */
        }
    }
    return true;
}

/* Local-part = Dot-string / Quoted-string. Returns its length (the '@' is
 * at s[len]), or 0 on a syntax error. Sets *utf8. */
static size_t cmd__local_part(const char *s, size_t n, bool allow_utf8, bool *utf8)
{
    size_t i = 0;

    if (n == 0)
        return 0;
    if (s[0] == '"') {
        i = 1;
        for (;;) {
            unsigned char c;

            if (i >= n)
                return 0;
            c = (unsigned char)s[i];
            if (c == '"')
                return i + 1;
            if (c == '\\') {
                /* quoted-pairSMTP = "\" %d32-126 */
                if (i + 1 >= n || (unsigned char)s[i + 1] < 32 || (unsigned char)s[i + 1] > 126)
                    return 0;
                i += 2;
            } else if (c >= 0x80) {
                size_t k = allow_utf8 ? cmd__utf8_seq((const unsigned char *)s + i, n - i) : 0;
                if (k == 0)
                    return 0;
                *utf8 = true;
                i += k;
            } else if (c >= 32 && c <= 126) {
                i++;
            } else
                return 0;
        }
    }
    /* Dot-string: atoms separated by single dots. */
    for (;;) {
        size_t start = i;

        while (i < n) {
            unsigned char c = (unsigned char)s[i];

            if (c >= 0x80) {
                size_t k = allow_utf8 ? cmd__utf8_seq((const unsigned char *)s + i, n - i) : 0;
                if (k == 0)
                    return 0;
                *utf8 = true;
                i += k;
            } else if (cmd__atext(c))
                i++;
            else
                break;
        }
        if (i == start)
            return 0;
        if (i < n && s[i] == '.') {
            i++;
            continue;
        }
        return i;
    }
}

/* Whole mailbox check with the RFC 5321 §4.5.3.1 length limits. */
static enum cmd_path_err cmd__mailbox(const char *s, size_t n, bool allow_utf8, bool *utf8)
{
    size_t local = cmd__local_part(s, n, allow_utf8, utf8);

    if (local == 0 || local >= n || s[local] != '@')
        return CMD_PATH_SYNTAX;
    if (!cmd__domain(s + local + 1, n - local - 1, allow_utf8, utf8))
        return CMD_PATH_SYNTAX;
    if (local > CMD_LOCAL_MAX || n - local - 1 > CMD_DOMAIN_MAX)
        return CMD_PATH_TOO_LONG;
    return CMD_PATH_OK;
}

bool cmd_mailbox_valid(const char *addr, size_t len, bool allow_utf8)
{
    bool utf8 = false;

    return cmd__mailbox(addr, len, allow_utf8, &utf8) == CMD_PATH_OK;
}

bool cmd_helo_valid(const char *arg, size_t len)
{
    size_t i;

    if (arg == NULL || len == 0 || len > CMD_DOMAIN_MAX)
        return false;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)arg[i];
        if (c <= ' ' || c == 0x7f)
            return false;
    }
    return true;
}

/* ---- BDAT ---------------------------------------------------------------- */

bool cmd_parse_bdat(const char *arg, size_t len, uint64_t *size, bool *last)
{
    size_t i = 0, ndig = 0;
    uint64_t v = 0;

    *size = 0;
    *last = false;
    if (arg == NULL)
        return false;
    while (i < len && cmd__digit((unsigned char)arg[i])) {
        if (++ndig > CMD_BDAT_DIGITS_MAX)
            return false;
        v = v * 10 + (uint64_t)(arg[i] - '0');
        i++;
    }
    if (ndig == 0)
        return false;
    if (i < len) {
        size_t sp = i;
        while (i < len && arg[i] == ' ')
            i++;
        if (i == sp || !cmd__eq(arg + i, len - i, "LAST"))
            return false;
        *last = true;
    }
    *size = v;
    return true;
}

/* ---- MAIL / RCPT parameters -------------------------------------------- */

static inline bool cmd__hex(unsigned char c)
{
    return cmd__digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

/* xtext (RFC 3461 §4): printable ASCII except "+" and "=", or "+" and two
 * hex digits (upper case per the RFC; lower case accepted, as it is
 * harmless). Returns the decoded length, or -1. */
static long cmd__xtext(const char *s, size_t n)
{
    size_t i = 0;
    long decoded = 0;

    if (n == 0)
        return -1;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];

        if (c == '+') {
            if (n - i < 3 || !cmd__hex((unsigned char)s[i + 1]) ||
                !cmd__hex((unsigned char)s[i + 2]))
                return -1;
            i += 3;
        } else if (c >= 33 && c <= 126 && c != '=') {
            i++;
        } else
            return -1;
        decoded++;
    }
    return decoded;
}

enum cmd_param_id {
    CMD_P_SIZE,
    CMD_P_BODY,
    CMD_P_SMTPUTF8,
    CMD_P_RET,
    CMD_P_ENVID,
    CMD_P_AUTH,
    CMD_P_NOTIFY,
    CMD_P_ORCPT,
    CMD_P_COUNT
};

static const struct {
    const char *name;
    bool rcpt; /* true: RCPT only; false: MAIL only */
} cmd__params[CMD_P_COUNT] = {
    [CMD_P_SIZE] = {"SIZE", false},   [CMD_P_BODY] = {"BODY", false},
    [CMD_P_SMTPUTF8] = {"SMTPUTF8", false}, [CMD_P_RET] = {"RET", false},
    [CMD_P_ENVID] = {"ENVID", false}, [CMD_P_AUTH] = {"AUTH", false},
    [CMD_P_NOTIFY] = {"NOTIFY", true}, [CMD_P_ORCPT] = {"ORCPT", true},
};

#define CMD_ENVID_MAX 100 /* RFC 3461 §4.4 */
#define CMD_ORCPT_MAX 500 /* RFC 3461 §4.2 */

static bool cmd__notify(const char *v, size_t n, unsigned *out)
{
    size_t i = 0;
    unsigned bits = 0;

    while (i <= n) {
        size_t start = i;
        unsigned bit;

        while (i < n && v[i] != ',')
            i++;
        if (cmd__eq(v + start, i - start, "NEVER"))
            bit = CMD_NOTIFY_NEVER;
        else if (cmd__eq(v + start, i - start, "SUCCESS"))
            bit = CMD_NOTIFY_SUCCESS;
        else if (cmd__eq(v + start, i - start, "FAILURE"))
            bit = CMD_NOTIFY_FAILURE;
        else if (cmd__eq(v + start, i - start, "DELAY"))
            bit = CMD_NOTIFY_DELAY;
        else
            return false;
        if (bits & bit)
            return false;
        bits |= bit;
        i++; /* past the comma, or past the end */
    }
    /* NEVER must stand alone (RFC 3461 §4.1). */
    if ((bits & CMD_NOTIFY_NEVER) && bits != CMD_NOTIFY_NEVER)
        return false;
    *out = bits;
    return true;
}

/* ORCPT = addr-type ";" xtext, addr-type an atom ("rfc822", "utf-8"). */
static bool cmd__orcpt(const char *v, size_t n)
{
    const char *semi = memchr(v, ';', n);
    size_t i, tlen;

    if (semi == NULL || n > CMD_ORCPT_MAX)
        return false;
    tlen = (size_t)(semi - v);
    if (tlen == 0)
        return false;
    for (i = 0; i < tlen; i++) {
        if (!cmd__atext((unsigned char)v[i]))
            return false;
    }
    return cmd__xtext(semi + 1, n - tlen - 1) >= 0;
}

/* One "keyword[=value]". Returns CMD_PATH_OK or an error with *why set. */
static enum cmd_path_err cmd__param(const char *s, size_t n, bool is_rcpt, unsigned *seen,
                                    struct cmd_params *p, const char **why)
{
    const char *eq = memchr(s, '=', n);
    size_t klen = eq ? (size_t)(eq - s) : n;
    const char *v = eq ? eq + 1 : NULL;
    size_t vlen = eq ? n - klen - 1 : 0;
    int id;

    for (id = 0; id < CMD_P_COUNT; id++) {
        if (cmd__eq(s, klen, cmd__params[id].name))
            break;
    }
    if (id == CMD_P_COUNT || cmd__params[id].rcpt != is_rcpt) {
        *why = "unknown parameter";
        return CMD_PATH_PARAM;
    }
    if (*seen & (1u << id)) {
        *why = "duplicate parameter";
        return CMD_PATH_PARAM_DUP;
    }
    *seen |= 1u << id;

    /* Every parameter but SMTPUTF8 needs a value. */
    if ((id == CMD_P_SMTPUTF8) != (v == NULL) || (v != NULL && vlen == 0)) {
        *why = id == CMD_P_SMTPUTF8 ? "SMTPUTF8 takes no value" : "parameter needs a value";
        return CMD_PATH_PARAM;
    }

    switch ((enum cmd_param_id)id) {
    case CMD_P_SIZE: {
        uint64_t val = 0;
        size_t i;

        for (i = 0; i < vlen; i++) {
            unsigned d = (unsigned)((unsigned char)v[i] - '0');
            if (d > 9 || val > (UINT64_MAX - d) / 10) {
                *why = "bad SIZE value";
                return CMD_PATH_PARAM;
            }
            val = val * 10 + d;
        }
        p->has_size = true;
        p->size = val;
        break;
    }
    case CMD_P_BODY:
        if (cmd__eq(v, vlen, "7BIT"))
            p->body = CMD_BODY_7BIT;
        else if (cmd__eq(v, vlen, "8BITMIME"))
            p->body = CMD_BODY_8BITMIME;
        else if (cmd__eq(v, vlen, "BINARYMIME"))
            p->body = CMD_BODY_BINARYMIME;
        else {
            *why = "bad BODY value";
            return CMD_PATH_PARAM;
        }
        break;
    case CMD_P_SMTPUTF8:
        p->smtputf8 = true;
        break;
    case CMD_P_RET:
        if (cmd__eq(v, vlen, "FULL"))
            p->ret = CMD_RET_FULL;
        else if (cmd__eq(v, vlen, "HDRS"))
            p->ret = CMD_RET_HDRS;
        else {
            *why = "bad RET value";
            return CMD_PATH_PARAM;
        }
        break;
    case CMD_P_ENVID: {
        long dlen = cmd__xtext(v, vlen);
        if (dlen < 0 || dlen > CMD_ENVID_MAX) {
            *why = "bad ENVID value";
            return CMD_PATH_PARAM;
        }
        p->envid = v;
        p->envid_len = vlen;
        break;
    }
    case CMD_P_AUTH:
        if (!(vlen == 2 && v[0] == '<' && v[1] == '>') && cmd__xtext(v, vlen) < 0) {
            *why = "bad AUTH value";
            return CMD_PATH_PARAM;
        }
        p->auth = v;
        p->auth_len = vlen;
        break;
    case CMD_P_NOTIFY:
        if (!cmd__notify(v, vlen, &p->notify)) {
            *why = "bad NOTIFY value";
            return CMD_PATH_PARAM;
        }
        break;
    case CMD_P_ORCPT:
        if (!cmd__orcpt(v, vlen)) {
            *why = "bad ORCPT value";
            return CMD_PATH_PARAM;
        }
        p->orcpt = v;
        p->orcpt_len = vlen;
        break;
    case CMD_P_COUNT:
        break;
    }
    return CMD_PATH_OK;
}

/* Skip an optional source route "@a,@b:" (RFC 5321 §4.1.2 A-d-l, which
 * must be accepted and ignored). Returns the offset of the mailbox, or
 * (size_t)-1 on a malformed route. */
static size_t cmd__skip_route(const char *s, size_t n)
{
    size_t i = 0;
    bool utf8 = false;

    if (n == 0 || s[0] != '@')
        return 0;
    for (;;) {
        size_t start;

        if (i >= n || s[i] != '@')
            return (size_t)-1;
        start = ++i;
        while (i < n && s[i] != ',' && s[i] != ':')
            i++;
        if (i >= n || !cmd__domain(s + start, i - start, true, &utf8))
            return (size_t)-1;
        if (s[i++] == ':')
            return i;
    }
}

enum cmd_path_err cmd_parse_mailrcpt_ex(const char *arg, size_t len, bool is_rcpt,
                                        struct cmd_path *path, struct cmd_params *params,
                                        const char **err_text, const char **bad_param,
                                        size_t *bad_param_len)
{
    const char *why = "ok";
    enum cmd_path_err err = CMD_PATH_OK;
    size_t i, close, mb, mblen;
    bool quoted = false;
    unsigned seen = 0;

    memset(path, 0, sizeof(*path));
    memset(params, 0, sizeof(*params));
    if (bad_param != NULL)
        *bad_param = NULL;
    if (bad_param_len != NULL)
        *bad_param_len = 0;

    if (arg == NULL) {
        why = is_rcpt ? "missing TO:" : "missing FROM:";
        err = CMD_PATH_SYNTAX;
        goto out;
    }
    while (len > 0 && arg[len - 1] == ' ')
        len--;
    if (len == 0 || arg[0] != '<') {
        why = "address must be in angle brackets";
        err = CMD_PATH_SYNTAX;
        goto out;
    }
    /* Find the closing bracket; a quoted local part may contain '>'. */
    for (close = 1; close < len; close++) {
        char c = arg[close];

        if (quoted && c == '\\' && close + 1 < len)
            close++;
        else if (c == '"')
            quoted = !quoted;
        else if (c == '>' && !quoted)
            break;
    }
    if (close >= len) {
        why = "bad address syntax";
        err = CMD_PATH_SYNTAX;
        goto out;
    }

    if (close == 1) {
        if (is_rcpt) {
            why = "null recipient";
            err = CMD_PATH_NULL_RCPT;
            goto out;
        }
        path->null_path = true;
    } else {
        mb = cmd__skip_route(arg + 1, close - 1);
        if (mb == (size_t)-1) {
            why = "bad source route";
            err = CMD_PATH_SYNTAX;
            goto out;
        }
        mb += 1;
        mblen = close - mb;
        if (is_rcpt && cmd__eq(arg + mb, mblen, "POSTMASTER")) {
            path->postmaster = true;
        } else {
            err = cmd__mailbox(arg + mb, mblen, true, &path->utf8);
            if (err != CMD_PATH_OK) {
                why = err == CMD_PATH_TOO_LONG ? "address too long" : "bad address syntax";
                goto out;
            }
        }
        /* Bounded by the length checks above (64 + 1 + 255 < CMD_ADDR_MAX). */
        memcpy(path->addr, arg + mb, mblen);
        path->addr_len = mblen;
    }
    path->addr[path->addr_len] = '\0';

    /* Parameters: SP-separated after the path. */
    i = close + 1;
    if (i < len && arg[i] != ' ') {
        why = "bad address syntax";
        err = CMD_PATH_SYNTAX;
        goto out;
    }
    while (i < len) {
        size_t start;

        while (i < len && arg[i] == ' ')
            i++;
        start = i;
        while (i < len && arg[i] != ' ')
            i++;
        if (i == start)
            break;
        err = cmd__param(arg + start, i - start, is_rcpt, &seen, params, &why);
        if (err != CMD_PATH_OK) {
            if (bad_param != NULL)
                *bad_param = arg + start;
            if (bad_param_len != NULL)
                *bad_param_len = i - start;
            goto out;
        }
    }

out:
    if (err != CMD_PATH_OK) {
        /* Leave no half-parsed result behind for a careless caller. */
        memset(path, 0, sizeof(*path));
        memset(params, 0, sizeof(*params));
    }
    if (err_text != NULL)
        *err_text = why;
    return err;
}

enum cmd_path_err cmd_parse_mailrcpt(const char *arg, size_t len, bool is_rcpt,
                                     struct cmd_path *path, struct cmd_params *params,
                                     const char **err_text)
{
    return cmd_parse_mailrcpt_ex(arg, len, is_rcpt, path, params, err_text, NULL, NULL);
}
