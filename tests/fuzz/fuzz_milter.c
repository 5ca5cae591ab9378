/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz milter_codec. Input: byte 0 seeds the split pattern, the rest is
 * what a milter sends. The reader must give the same replies and the same
 * error fed whole, in random pieces and byte by byte; nothing comes after
 * a sticky error; every reply keeps the header's promises (strings
 * NUL-terminated inside the reader's buffer, header names and values
 * valid, addresses non-empty, at most one action bit), and so do the
 * replycode and optneg parsers run on each reply and on the raw input.
 * The encoders get the input as header, body and strings: a refused
 * command appends nothing, an accepted one is one well-framed packet.
 */
#include "fuzz.h"

#include <errno.h>
#include <string.h>

#include "milter_codec.h"

/* What a run saw, as a hash: enough to compare two runs. */
struct trace {
    uint64_t h;
    size_t replies;
};

static void trace_add(struct trace *t, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        t->h = (t->h ^ b[i]) * 0x100000001b3ull;
}

/* s is a string that ends inside the reader's buffer. */
static void check_str(const struct milter_reader *r, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    FUZZ_CHECK(u >= r->buf && u < r->buf + r->len);
    FUZZ_CHECK(memchr(u, '\0', (size_t)(r->buf + r->len - u)) != NULL);
}

static bool printable(const char *s, bool tab)
{
    for (; *s; s++)
        if (((unsigned char)*s < ' ' && !(tab && *s == '\t')) || (unsigned char)*s >= 127)
            return false;
    return true;
}

static void check_replycode(const char *text)
{
    static struct milter_replycode rc;
    const char *why = NULL;
    if (milter_replycode_parse(text, &rc, &why) < 0) {
        FUZZ_CHECK(why != NULL);
        return;
    }
    FUZZ_CHECK(rc.code >= 400 && rc.code <= 599);
    FUZZ_CHECK(rc.nlines >= 1 && rc.nlines <= MILTER_REPLY_LINES_MAX);
    size_t e = strlen(rc.enh);
    FUZZ_CHECK(e < sizeof rc.enh);
    if (e > 0)
        FUZZ_CHECK(e >= 5 && rc.enh[0] == '0' + rc.code / 100 && rc.enh[1] == '.');
    for (size_t i = 0; i < rc.nlines; i++) {
        const char *l = rc.lines[i];
        FUZZ_CHECK(l >= rc.storage && l < rc.storage + sizeof rc.storage);
        FUZZ_CHECK(memchr(l, '\0', (size_t)(rc.storage + sizeof rc.storage - l)) != NULL);
        FUZZ_CHECK(strlen(l) <= MILTER_REPLY_TEXT_MAX);
        FUZZ_CHECK(printable(l, true));
    }
}

static void check_macros(const struct milter_optneg *neg)
{
    struct milter_macro_lists lists;
    const char *why = NULL;
    if (milter_optneg_macros(neg, &lists, &why) < 0) {
        FUZZ_CHECK(why != NULL);
        return;
    }
    for (int s = 0; s < MILTER_STAGES; s++) {
        const char *l = lists.names[s];
        if (!l)
            continue;
        FUZZ_CHECK((const unsigned char *)l >= neg->macros &&
                   (const unsigned char *)l < neg->macros + neg->macros_len);
        FUZZ_CHECK(
            memchr(l, '\0', (size_t)(neg->macros + neg->macros_len - (const unsigned char *)l)) !=
            NULL);
        FUZZ_CHECK(printable(l, false));
    }
}

static void check_reply(const struct milter_reader *r, const struct milter_reply *rep,
                        struct trace *t)
{
    static const struct milter_optneg offer = {MILTER_VERSION, MILTER_ACT_ALL, MILTER_STEP_ALL,
                                               NULL, 0};
    uint32_t act = milter_reply_action(rep->type);
    FUZZ_CHECK(milter_reply_name(rep->type) != NULL);
    FUZZ_CHECK((act & (act - 1)) == 0 && (act & ~MILTER_ACT_ALL) == 0);
    trace_add(t, &rep->type, sizeof rep->type);
    t->replies++;
    switch (rep->type) {
    case MILTER_REPLY_OPTNEG: {
        const char *why = NULL;
        if (milter_optneg_check(&offer, &rep->optneg, &why) == 0)
            FUZZ_CHECK(rep->optneg.version >= MILTER_VERSION_MIN &&
                       rep->optneg.version <= MILTER_VERSION &&
                       (rep->optneg.steps & ~MILTER_STEP_ALL) == 0);
        else
            FUZZ_CHECK(why != NULL);
        check_macros(&rep->optneg);
        trace_add(t, &rep->optneg, 3 * sizeof(uint32_t));
        trace_add(t, rep->optneg.macros, rep->optneg.macros_len);
        break;
    }
    case MILTER_REPLY_REPLYCODE:
    case MILTER_REPLY_QUARANTINE:
        check_str(r, rep->text);
        if (rep->type == MILTER_REPLY_REPLYCODE)
            check_replycode(rep->text);
        trace_add(t, rep->text, strlen(rep->text) + 1);
        break;
    case MILTER_REPLY_ADDHEADER:
    case MILTER_REPLY_INSHEADER:
    case MILTER_REPLY_CHGHEADER:
        check_str(r, rep->header.name);
        check_str(r, rep->header.value);
        FUZZ_CHECK(rep->header.name[0] != '\0' && printable(rep->header.name, false) &&
                   !strpbrk(rep->header.name, ": "));
        for (const char *v = rep->header.value; *v; v++)
            if (*v == '\n')
                FUZZ_CHECK(v[1] == ' ' || v[1] == '\t');
            else if (*v == '\r')
                FUZZ_CHECK(v[1] == '\n');
        if (rep->type == MILTER_REPLY_ADDHEADER)
            FUZZ_CHECK(rep->header.index == 0);
        trace_add(t, &rep->header.index, sizeof rep->header.index);
        trace_add(t, rep->header.name, strlen(rep->header.name) + 1);
        trace_add(t, rep->header.value, strlen(rep->header.value) + 1);
        break;
    case MILTER_REPLY_CHGFROM:
    case MILTER_REPLY_ADDRCPT:
    case MILTER_REPLY_ADDRCPT_PAR:
    case MILTER_REPLY_DELRCPT:
        check_str(r, rep->env.addr);
        FUZZ_CHECK(rep->env.addr[0] != '\0');
        trace_add(t, rep->env.addr, strlen(rep->env.addr) + 1);
        if (rep->env.args) {
            FUZZ_CHECK(rep->type == MILTER_REPLY_CHGFROM || rep->type == MILTER_REPLY_ADDRCPT_PAR);
            check_str(r, rep->env.args);
            trace_add(t, rep->env.args, strlen(rep->env.args) + 1);
        }
        break;
    case MILTER_REPLY_REPLBODY:
        FUZZ_CHECK(rep->body.len <= MILTER_READ_MAX);
        if (rep->body.len > 0)
            FUZZ_CHECK(rep->body.data >= r->buf &&
                       rep->body.data + rep->body.len <= r->buf + r->len);
        trace_add(t, rep->body.data, rep->body.len);
        break;
    case MILTER_REPLY_SETSYMLIST:
        FUZZ_CHECK((unsigned)rep->symlist.stage < MILTER_STAGES);
        check_str(r, rep->symlist.names);
        FUZZ_CHECK(printable(rep->symlist.names, false));
        trace_add(t, rep->symlist.names, strlen(rep->symlist.names) + 1);
        break;
    default:
        break;
    }
}

/* Feed data[0..size) in pieces: whole (seed 0), byte by byte (seed 1) or
 * of pseudo-random lengths drawn from seed. */
static void run(const uint8_t *data, size_t size, uint32_t seed, struct trace *t)
{
    struct milter_reader r;
    struct milter_reply rep;
    int rc = 0;

    t->h = 0xcbf29ce484222325ull;
    t->replies = 0;
    milter_reader_init(&r);
    for (size_t off = 0; off < size && rc >= 0;) {
        size_t n = size - off;
        if (seed == 1) {
            n = 1;
        } else if (seed > 1) {
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % (n < 64 ? n : 64);
        }
        milter_reader_feed(&r, data + off, n);
        off += n;
        while ((rc = milter_reader_next(&r, &rep)) == 1)
            check_reply(&r, &rep, t);
    }
    const char *err = milter_reader_error(&r);
    FUZZ_CHECK((rc < 0) == (err != NULL));
    if (err) {
        FUZZ_CHECK(rc == -EPROTO && err[0] && !strchr(err, '\n'));
        trace_add(t, err, strlen(err) + 1);
        /* Sticky: nothing more comes out, whatever is fed. */
        milter_reader_feed(&r,
                           "\0\0\0\x01"
                           "c",
                           5);
        FUZZ_CHECK(milter_reader_next(&r, &rep) == -EPROTO);
        FUZZ_CHECK(milter_reader_idle(&r));
    } else {
        bool idle = milter_reader_idle(&r);
        trace_add(t, &idle, sizeof idle);
    }
    milter_reader_free(&r);
}

/* An accepted command is one packet of 5 + payload bytes whose length word
 * says so; a refused one appended nothing. */
static void check_frame(const struct pstr *out, size_t before, int rc, char cmd)
{
    if (rc < 0) {
        FUZZ_CHECK(rc == -EINVAL || rc == -EMSGSIZE);
        FUZZ_CHECK(out->len == before);
        return;
    }
    FUZZ_CHECK(rc == 0 && out->len >= before + 5);
    const unsigned char *p = (const unsigned char *)out->ptr + before;
    size_t plen = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    FUZZ_CHECK(plen == out->len - before - 4 && plen - 1 <= MILTER_PAYLOAD_MAX);
    FUZZ_CHECK(p[4] == (unsigned char)cmd);
}

static void encoders(const uint8_t *data, size_t size)
{
    struct pstr out = PSTR_INIT;
    const char *s = (const char *)data;
    size_t cut = size ? data[0] % (size + 1) : 0;

    size_t before = out.len;
    int rc = milter_put_header(&out, s, cut, s + cut, size - cut);
    check_frame(&out, before, rc, MILTER_CMD_HEADER);
    if (rc == 0)
        FUZZ_CHECK(cut > 0 && !memchr(s, '\0', size) && memcmp(out.ptr + before + 5, s, cut) == 0 &&
                   out.ptr[before + 5 + cut] == '\0' &&
                   memcmp(out.ptr + before + 6 + cut, s + cut, size - cut) == 0);
    else
        FUZZ_CHECK(cut == 0 || memchr(s, '\0', size) || size + 2 > MILTER_PAYLOAD_MAX);

    before = out.len;
    rc = milter_put_body(&out, data, size);
    check_frame(&out, before, rc, MILTER_CMD_BODY);
    FUZZ_CHECK((rc == 0) == (size > 0 && size <= MILTER_PAYLOAD_MAX));

    /* The input up to its first NUL as a C string. */
    char *str = pstr_xstrndup(s, size);
    before = out.len;
    check_frame(&out, before, milter_put_helo(&out, str), MILTER_CMD_HELO);
    before = out.len;
    check_frame(&out, before, milter_put_unknown(&out, str), MILTER_CMD_UNKNOWN);
    before = out.len;
    rc = milter_put_connect(&out, "h", MILTER_FAMILY_INET6, 25, str);
    check_frame(&out, before, rc, MILTER_CMD_CONNECT);
    before = out.len;
    const char *args[] = {str};
    rc = milter_put_envrcpt(&out, "<a@b>", args, 1);
    check_frame(&out, before, rc, MILTER_CMD_RCPT);
    FUZZ_CHECK((rc == 0) == (str[0] != '\0'));
    before = out.len;
    const struct milter_macro m[] = {{"{x}", str}};
    check_frame(&out, before, milter_put_macro(&out, MILTER_CMD_EOH, m, 1), MILTER_CMD_MACRO);
    free(str);
    pstr_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct trace whole, split;

    if (size == 0)
        return 0;
    uint32_t seed = 2 + data[0];
    data++;
    size--;

    run(data, size, 0, &whole);
    run(data, size, 1, &split);
    FUZZ_CHECK(whole.h == split.h && whole.replies == split.replies);
    run(data, size, seed, &split);
    FUZZ_CHECK(whole.h == split.h && whole.replies == split.replies);

    /* The text parsers on the raw input too. */
    char *text = pstr_xstrndup((const char *)data, size);
    check_replycode(text);
    free(text);
    const struct milter_optneg neg = {MILTER_VERSION, 0, 0, data, size};
    check_macros(&neg);

    encoders(data, size);
    return 0;
}
