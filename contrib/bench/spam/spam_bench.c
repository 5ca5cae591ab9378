/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_bench: messages/s of the spam engine alone (message view + rule
 * evaluation), N threads sharing one compiled rule set.
 *
 *   spam_bench --rules FILE [--extra N] [--threads T] [--seconds S] [--size BYTES]
 *
 * --extra N generates N more rules (body, header, uri and meta, in the
 * styles real rules use: word boundaries with (?i), \s+ joins, 4-way
 * alternations, obfuscation-tolerant letter runs) into a temporary file
 * that includes FILE. The message is a multipart/alternative text + HTML
 * mail of about --size bytes with links, built here.
 */
#include "spam_eval.h"
#include "spam_msg.h"
#include "spam_rules.h"
#include "pstr.h"

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct spam_ruleset *rs;
static struct spam_scratch_pool *pool;
static struct pstr msg;
static atomic_int stop;
static atomic_ulong done;

static const char *const words[] = {"meeting", "report", "budget", "project", "schedule", "review",
                                    "customer", "quarter", "update", "team", "delivery", "contract",
                                    "invoice", "office", "travel", "agenda"};

static void build_message(size_t size)
{
    pstr_puts(&msg, "Received: from mail.example.org (mail.example.org [192.0.2.10])\r\n"
                        "\tby mx.example.net with ESMTPS id 4AbC; Mon, 6 May 2024 10:00:01 +0200\r\n"
                        "From: Alice Example <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n"
                        "Subject: Quarterly report and schedule\r\nDate: Mon, 6 May 2024 10:00:00 +0200\r\n"
                        "Message-ID: <20240506100000.1234@example.org>\r\nMIME-Version: 1.0\r\n"
                        "Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n"
                        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    size_t half = size / 2;
    unsigned k = 0;
    while (msg.len < half) {
        for (int i = 0; i < 10; i++)
            pstr_printf(&msg, "%s ", words[(k++ * 7) % 16]);
        if (k % 50 == 0)
            pstr_printf(&msg, "https://docs.example.org/p/%u ", k);
        pstr_puts(&msg, "\r\n");
    }
    pstr_puts(&msg, "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n");
    while (msg.len < size - 40) {
        pstr_puts(&msg, "<p>");
        for (int i = 0; i < 8; i++)
            pstr_printf(&msg, "%s ", words[(k++ * 5) % 16]);
        if (k % 40 == 0)
            pstr_printf(&msg, "<a href=\"https://www.example.org/x/%u\">the page</a>", k);
        pstr_puts(&msg, "</p>\r\n");
    }
    pstr_puts(&msg, "</body></html>\r\n--b--\r\n");
}

static char *extra_rules(const char *base, int n)
{
    static char path[] = "/tmp/spam-bench-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    FILE *fp = fdopen(fd, "w");
    fprintf(fp, "include %s\n", base);
    static const char *const stems[] = {"offer", "deal", "price", "bonus", "credit", "loan", "casino",
                                        "diet", "replica", "refund", "prize", "cash"};
    for (int i = 0; i < n; i++) {
        const char *s = stems[i % 12];
        switch (i % 6) {
        case 0: fprintf(fp, "body X_%d /\\b%s\\s+(?:now|today|here|inside)%d\\b/i\n", i, s, i); break;
        case 1: fprintf(fp, "body X_%d /\\b(?:cheap|best|free|instant)\\s+%s%d\\b/i\n", i, s, i); break;
        case 2:
            fprintf(fp, "body X_%d /\\b%c[^a-z]?%c[^a-z]?%c[^a-z]?%c%d/i\n", i, s[0], s[1], s[2], s[3], i);
            break;
        case 3: fprintf(fp, "header X_%d Subject =~ /\\b%s%d\\b/i\n", i, s, i); break;
        case 4: fprintf(fp, "uri X_%d m{^https?://[^/]*%s%d\\.}i\n", i, s, i); break;
        default: fprintf(fp, "meta X_%d X_%d || X_%d\n", i, i - 1, i - 2); break;
        }
    }
    fclose(fp);
    return path;
}

static void *worker(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        struct spam_msg *m = spam_msg_parse(msg.ptr, msg.len, NULL, 256 * 1024);
        struct spam_result res;
        spam_eval_run(rs, m, pool, &res);
        spam_result_free(&res);
        spam_msg_free(m);
        atomic_fetch_add(&done, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"rules", required_argument, NULL, 'r'}, {"extra", required_argument, NULL, 'e'},
        {"threads", required_argument, NULL, 't'}, {"seconds", required_argument, NULL, 's'},
        {"size", required_argument, NULL, 'z'},  {NULL, 0, NULL, 0},
    };
    const char *rules = NULL;
    int extra = 0, threads = 2, c;
    double seconds = 3;
    size_t size = 4096;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'r': rules = optarg; break;
        case 'e': extra = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 'z': size = strtoul(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: spam_bench --rules FILE [--extra N] [--threads T] [--seconds S] [--size B]\n");
            return 2;
        }
    }
    if (!rules || threads < 1 || threads > 64) {
        fprintf(stderr, "spam_bench: --rules FILE is required\n");
        return 2;
    }
    char *gen = extra > 0 ? extra_rules(rules, extra) : NULL;
    struct spam_rules_errors errs;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rs = spam_rules_load(gen ? gen : rules, &errs);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s:%u: %s\n", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
    spam_rules_errors_free(&errs);
    if (gen)
        unlink(gen);
    if (!rs)
        return 1;
    size_t nonmeta = rs->nrules - rs->count[SPAM_RULE_META];
    build_message(size);
    struct spam_eval_limits lim = SPAM_EVAL_LIMITS_DEFAULT;
    pool = spam_scratch_pool_new(&lim);
    pthread_t th[64];
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    usleep((useconds_t)(seconds * 1e6));
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    unsigned long n = atomic_load(&done);
    printf("RESULT rules=%zu regex_rules=%zu meta=%zu size=%zu threads=%d msgs=%lu seconds=%.2f msgs_per_s=%.0f "
           "ms_per_msg_per_thread=%.3f jit=%d\n",
           rs->nrules, nonmeta, rs->count[SPAM_RULE_META], msg.len, threads, n, el, (double)n / el,
           el * 1000.0 * threads / (double)(n ? n : 1), rs->jit);
    spam_scratch_pool_free(pool);
    spam_ruleset_unref(rs);
    pstr_free(&msg);
    return 0;
}
