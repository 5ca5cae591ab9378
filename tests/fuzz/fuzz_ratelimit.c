/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz plugins/ratelimit/rl_rules: the rule file, subjects and the
 * sliding-window estimate.
 *
 * Invariants: every problem is one printable line naming the file and a
 * line of the text, and a file is accepted exactly when none is reported;
 * accepted rules have valid unique names, limits and windows in range and
 * only the allowed WHAT/PER pairs, lines in order; a subject, when there is
 * one, is NUL-terminated, fits, and has no upper-case letter unless it is a
 * user name; the estimate lies between the current count and the sum of
 * both counts.
 *
 * Input: the file text; its first bytes also serve as a subject value.
 */
#include "fuzz.h"

#include <ctype.h>
#include <string.h>

#include "rl_rules.h"

struct errs {
    size_t n;
    unsigned max_line;
};

static void on_err(void *arg, const char *msg)
{
    struct errs *e = arg;
    FUZZ_CHECK(strncmp(msg, "f.rules:", 8) == 0);
    unsigned line = (unsigned)strtoul(msg + 8, NULL, 10);
    FUZZ_CHECK(line >= 1 && line <= e->max_line);
    for (const char *c = msg; *c; c++)
        FUZZ_CHECK((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
    e->n++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct errs e = {.max_line = 1};
    for (size_t i = 0; i < size; i++)
        if (data[i] == '\n')
            e.max_line++;
    static struct rl_rules r;
    int n = rl_rules_parse(text, size, "f.rules", &r, on_err, &e);
    FUZZ_CHECK(n >= 0 && (size_t)n == e.n);
    unsigned last = 0;
    for (size_t i = 0; i < r.n; i++) {
        const struct rl_rule *x = &r.v[i];
        FUZZ_CHECK(x->name[0] && strlen(x->name) <= RL_NAME_MAX);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(r.v[j].name, x->name) != 0);
        FUZZ_CHECK(x->limit >= 1 && x->limit <= (1ULL << 50));
        FUZZ_CHECK(x->window_ms >= 1000 && x->window_ms <= 7ULL * 86400 * 1000);
        FUZZ_CHECK(x->what != RL_CONNECTIONS || x->per == RL_CLIENT_IP);
        FUZZ_CHECK(x->per != RL_RCPT_DOMAIN || x->what == RL_RECIPIENTS);
        FUZZ_CHECK(x->line > last);
        last = x->line;
    }

    char value[128];
    size_t vl = size < sizeof value - 1 ? size : sizeof value - 1;
    memcpy(value, data, vl);
    value[vl] = 0;
    for (int per = RL_CLIENT_IP; per <= RL_RCPT_DOMAIN; per++) {
        char out[RL_SUBJECT_MAX];
        memset(out, 'Z', sizeof out);
        if (rl_subject((enum rl_per)per, value, 48 + (unsigned)(size % 81), out, sizeof out) == 0) {
            FUZZ_CHECK(memchr(out, 0, sizeof out) != NULL);
            if (per == RL_SENDER || per == RL_SENDER_DOMAIN || per == RL_RCPT_DOMAIN)
                for (const char *c = out; *c; c++)
                    FUZZ_CHECK(!isupper((unsigned char)*c));
        }
    }
    uint64_t cur = size, prev = size > 0 ? data[0] : 0, win = 1000 + size;
    uint64_t est = rl_estimate(cur, prev, size * 7919u, win);
    FUZZ_CHECK(est >= cur && est <= cur + prev);
    return 0;
}
