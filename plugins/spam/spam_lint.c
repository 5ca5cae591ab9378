/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-rules-lint: check spam rule files the way the plugin loads them,
 * and optionally show what a message scores.
 *
 *   sluice-rules-lint [options] RULEFILE...
 *
 * The files are read in order into one set (a later file overrides an
 * earlier one, as with include). Every error is printed as
 * "FILE:LINE: message"; the exit status is 1 when there was any.
 * With --test MESSAGE (repeatable) each message is evaluated and the
 * rules hit are printed with the total score.
 */
#include "spam_eval.h"
#include "spam_msg.h"
#include "spam_rules.h"
#include "pstr.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void spam_lint__usage(FILE *fp)
{
    fputs("usage: sluice-rules-lint [options] RULEFILE...\n"
          "  --test FILE       evaluate a message (RFC 5322 file); repeatable\n"
          "  --from ADDR       envelope sender for --test\n"
          "  --rcpt ADDR       envelope recipient for --test; repeatable\n"
          "  --ip ADDR         client address for --test\n"
          "  --helo NAME       HELO name for --test\n"
          "  --max-scan BYTES  decoded text scanned per part (default 262144)\n"
          "  -v, --verbose     with --test, also show the __ sub-rules that hit\n"
          "  -q, --quiet       print errors only\n"
          "  -h, --help\n",
          fp);
}

static int spam_lint__read(const char *path, struct pstr *out)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
        pstr_append(out, buf, n);
    int err = ferror(fp);
    fclose(fp);
    return err ? -1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"test", required_argument, NULL, 't'}, {"from", required_argument, NULL, 'f'},
        {"rcpt", required_argument, NULL, 'r'}, {"ip", required_argument, NULL, 'i'},
        {"helo", required_argument, NULL, 'H'}, {"max-scan", required_argument, NULL, 'm'},
        {"quiet", no_argument, NULL, 'q'},      {"help", no_argument, NULL, 'h'},
        {"verbose", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    const char **tests = calloc((size_t)argc + 1, sizeof(char *));
    const char **rcpts = calloc((size_t)argc + 1, sizeof(char *));
    size_t ntests = 0, nrcpts = 0;
    struct spam_msg_env env;
    memset(&env, 0, sizeof(env));
    size_t max_scan = 256 * 1024;
    int quiet = 0, verbose = 0, c;
    while ((c = getopt_long(argc, argv, "qhv", opts, NULL)) != -1) {
        switch (c) {
        case 't': tests[ntests++] = optarg; break;
        case 'f': env.sender = optarg; break;
        case 'r': rcpts[nrcpts++] = optarg; break;
        case 'i': env.client_ip = optarg; break;
        case 'H': env.helo = optarg; break;
        case 'm': max_scan = strtoul(optarg, NULL, 10); break;
        case 'q': quiet = 1; break;
        case 'v': verbose = 1; break;
        case 'h': spam_lint__usage(stdout); return 0;
        default: spam_lint__usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        spam_lint__usage(stderr);
        return 2;
    }
    env.rcpts = rcpts;
    env.nrcpts = nrcpts;

    struct spam_rules_builder *b = spam_rules_builder_new();
    for (int i = optind; i < argc; i++)
        spam_rules_builder_add_file(b, argv[i]);
    struct spam_rules_errors errs;
    struct spam_ruleset *rs = spam_rules_builder_finish(b, &errs);
    for (size_t i = 0; i < errs.n; i++)
        printf("%s:%u: %s\n", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
    if (!rs) {
        fprintf(stderr, "sluice-rules-lint: %zu error%s\n", errs.n, errs.n == 1 ? "" : "s");
        spam_rules_errors_free(&errs);
        free(tests);
        free(rcpts);
        return 1;
    }
    spam_rules_errors_free(&errs);
    if (!quiet && ntests == 0)
        printf("ok: %zu rules (header %zu, body %zu, rawbody %zu, full %zu, uri %zu, meta %zu)%s\n", rs->nrules,
               rs->count[SPAM_RULE_HEADER], rs->count[SPAM_RULE_BODY], rs->count[SPAM_RULE_RAWBODY],
               rs->count[SPAM_RULE_FULL], rs->count[SPAM_RULE_URI], rs->count[SPAM_RULE_META],
               rs->jit ? "" : " (some without JIT)");

    int status = 0;
    struct spam_eval_limits lim = SPAM_EVAL_LIMITS_DEFAULT;
    struct spam_scratch_pool *pool = spam_scratch_pool_new(&lim);
    for (size_t t = 0; t < ntests; t++) {
        struct pstr data = PSTR_INIT;
        if (spam_lint__read(tests[t], &data) < 0) {
            fprintf(stderr, "sluice-rules-lint: %s: %s\n", tests[t], strerror(errno));
            status = 2;
            pstr_free(&data);
            continue;
        }
        struct spam_msg *m = spam_msg_parse(pstr_cstr(&data), data.len, &env, max_scan);
        struct spam_result res;
        spam_eval_run(rs, m, pool, &res);
        printf("%s: score %.2f\n", tests[t], res.score);
        if (res.gtube)
            printf("  GTUBE %.2f\n", SPAM_GTUBE_SCORE);
        for (size_t i = 0; i < rs->nrules; i++) {
            const struct spam_rule *r = &rs->rules[i];
            if (res.hit[i] && (verbose || strncmp(r->name, "__", 2) != 0))
                printf("  %s %.2f%s%s\n", r->name, r->score, r->describe ? " " : "",
                       r->describe ? r->describe : "");
            if (res.limited[i])
                printf("  limit %s\n", r->name);
        }
        spam_result_free(&res);
        spam_msg_free(m);
        pstr_free(&data);
    }
    spam_scratch_pool_free(pool);
    spam_ruleset_unref(rs);
    free(tests);
    free(rcpts);
    return status;
}
