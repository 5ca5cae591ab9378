/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz smtp_cmd: the line reader (whole input vs. byte by byte must give
 * the same lines), then every line through cmd_parse and, for MAIL/RCPT,
 * cmd_parse_mailrcpt, checking what the results promise.
 */
#include "fuzz.h"

#include <string.h>

#include "cmd.h"

#define FUZZ_MAX_EVENTS 4096

struct event {
    enum cmd_rd rd;
    size_t off, len; /* line position in the input (LINE) */
};

static bool in_range(const void *p, size_t n, const uint8_t *base, size_t size)
{
    const uint8_t *q = p;
    return q >= base && n <= size && q - base <= (ptrdiff_t)(size - n);
}

static void check_path(const char *arg, size_t len, bool is_rcpt)
{
    struct cmd_path path;
    struct cmd_params params;
    const char *why = NULL, *bad = NULL;
    size_t bad_len = 0;
    enum cmd_path_err e =
        cmd_parse_mailrcpt_ex(arg, len, is_rcpt, &path, &params, &why, &bad, &bad_len);

    FUZZ_CHECK(why != NULL);
    if (e != CMD_PATH_OK) {
        FUZZ_CHECK(path.addr_len == 0 && !params.has_size);
        if (e == CMD_PATH_PARAM || e == CMD_PATH_PARAM_DUP) {
            FUZZ_CHECK(bad != NULL);
            FUZZ_CHECK(in_range(bad, bad_len, (const uint8_t *)arg, len));
        }
        return;
    }
    FUZZ_CHECK(path.addr_len <= CMD_ADDR_MAX);
    FUZZ_CHECK(path.addr[path.addr_len] == '\0');
    FUZZ_CHECK(strlen(path.addr) == path.addr_len);
    FUZZ_CHECK(path.null_path == (path.addr_len == 0));
    FUZZ_CHECK(!(is_rcpt && path.null_path));
    if (!path.null_path && !path.postmaster) {
        /* What the path parser accepted, the mailbox validator accepts. */
        FUZZ_CHECK(cmd_mailbox_valid(path.addr, path.addr_len, true));
        FUZZ_CHECK(cmd_mailbox_valid(path.addr, path.addr_len, false) == !path.utf8);
    }
    if (params.envid != NULL)
        FUZZ_CHECK(in_range(params.envid, params.envid_len, (const uint8_t *)arg, len));
    if (params.orcpt != NULL)
        FUZZ_CHECK(is_rcpt && in_range(params.orcpt, params.orcpt_len, (const uint8_t *)arg, len));
    if (params.auth != NULL)
        FUZZ_CHECK(!is_rcpt && in_range(params.auth, params.auth_len, (const uint8_t *)arg, len));
    if (params.notify & CMD_NOTIFY_NEVER)
        FUZZ_CHECK(params.notify == CMD_NOTIFY_NEVER);
}

static void check_line(const char *line, size_t len)
{
    struct cmd c;

    cmd_parse(line, len, &c);
    FUZZ_CHECK((unsigned)c.verb < CMD_VERB_COUNT);
    FUZZ_CHECK(cmd_verb_name(c.verb) != NULL);
    FUZZ_CHECK(c.has_nul == (memchr(line, '\0', len) != NULL));
    if (c.arg == NULL) {
        FUZZ_CHECK(c.verb == CMD_MAIL || c.verb == CMD_RCPT);
    } else {
        FUZZ_CHECK(c.arg_len == 0 || in_range(c.arg, c.arg_len, (const uint8_t *)line, len));
        FUZZ_CHECK(c.arg_len == 0 || c.arg[c.arg_len - 1] != ' ');
    }
    if (c.verb == CMD_MAIL || c.verb == CMD_RCPT)
        check_path(c.arg, c.arg_len, c.verb == CMD_RCPT);
    /* Also the raw line as an argument, to reach the grammar directly. */
    check_path(line, len, false);
    check_path(line, len, true);
    (void)cmd_helo_valid(line, len);
    (void)cmd_mailbox_valid(line, len, true);
}

/* Run the reader with pieces of at most `step` new bytes, keeping the
 * unconsumed rest like a connection does. Records the events. */
static size_t read_all(const uint8_t *data, size_t size, size_t step, size_t max,
                       struct event *ev)
{
    struct cmd_reader r;
    size_t base = 0, avail = 0, nev = 0;

    cmd_reader_init(&r, max);
    while (base + avail < size || avail > 0) {
        size_t add = size - base - avail < step ? size - base - avail : step;
        size_t consumed, line_len;
        const char *line;
        enum cmd_rd rd;

        avail += add;
        for (;;) {
            rd = cmd_reader_next(&r, (const char *)data + base, avail, &consumed, &line,
                                 &line_len);
            FUZZ_CHECK(consumed <= avail);
            if (rd == CMD_RD_LINE) {
                FUZZ_CHECK(line == (const char *)data + base);
                FUZZ_CHECK(line_len < consumed && line_len + 1 <= r.max);
                FUZZ_CHECK(memchr(line, '\n', line_len) == NULL);
            }
            if (rd != CMD_RD_AGAIN && nev < FUZZ_MAX_EVENTS) {
                ev[nev].rd = rd;
                ev[nev].off = base;
                ev[nev].len = rd == CMD_RD_LINE ? line_len : 0;
                nev++;
            }
            base += consumed;
            avail -= consumed;
            if (rd == CMD_RD_AGAIN)
                break;
        }
        if (add == 0)
            break;
    }
    return nev;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct event a[FUZZ_MAX_EVENTS], b[FUZZ_MAX_EVENTS];
    size_t max, na, nb, i;

    if (size < 1)
        return 0;
    /* First byte: line limit, small ones to reach the discard path. */
    max = data[0] < 16 ? 2 + data[0] : CMD_LINE_MAX;
    data++;
    size--;

    na = read_all(data, size, size ? size : 1, max, a);
    nb = read_all(data, size, 1, max, b);
    FUZZ_CHECK(na == nb);
    for (i = 0; i < na; i++) {
        FUZZ_CHECK(a[i].rd == b[i].rd);
        if (a[i].rd == CMD_RD_LINE) {
            FUZZ_CHECK(a[i].off == b[i].off && a[i].len == b[i].len);
            check_line((const char *)data + a[i].off, a[i].len);
        }
    }
    return 0;
}
