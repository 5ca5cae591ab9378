/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_bench: messages/s of the spam engine alone (message view + rule
 * evaluation), N threads sharing one compiled rule set.
 *
 *   spam_bench --rules FILE [--extra N] [--threads T] [--seconds S] [--size BYTES]
 *              [--style mixed|smtp-source] [--corpus FILE] [--count N] [--no-prefilter]
 *              [--time-limit MS]
 *
 * --extra N generates N more rules (body, header, uri and meta, in the
 * styles real rules use: word boundaries with (?i), \s+ joins, 4-way
 * alternations, obfuscation-tolerant letter runs) into a temporary file
 * that includes FILE. The message is a multipart/alternative text + HTML
 * mail of about --size bytes with links, built here; --style smtp-source
 * makes the message Postfix's smtp-source sends with "-l SIZE" (a few
 * header fields, then SIZE bytes of 80-column lines of X). --corpus FILE
 * takes the messages of a corpus file instead (plugins/spam/tests/
 * corpus.txt: its "%%" entries, a realistic ham and spam mix), evaluated
 * in turn. --count N evaluates N messages on one thread and stops (for
 * callgrind: instructions per message). --no-prefilter runs PCRE2 on every
 * rule even when the Hyperscan prefilter is built. --time-limit MS sets the
 * rule and message time budgets (under valgrind the defaults stop rules
 * early and the counts would depend on the machine's load).
 */
#include "spam_eval.h"
#include "spam_msg.h"
#include "spam_prefilter.h"
#include "spam_rules.h"
#include "pstr.h"

#include <getopt.h>
#include <stdint.h>
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
static struct pstr *corpus; /* --corpus: the messages; else just msg */
static size_t ncorpus;
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

/* What smtp-source -l SIZE sends: its header fields and 80-column X lines. */
static void build_smtp_source(size_t size)
{
    pstr_puts(&msg,
              "From: <foo@myhostname>\r\nTo: <foo@myhostname>\r\n"
              "Date: Mon, 6 May 2024 10:00:00 +0200\r\nMessage-Id: <1234.5678@myhostname>\r\n\r\n");
    for (size_t i = 0, line = 0; i < size; line++) {
        char l[81];
        memset(l, 'X', 78);
        l[0] = (char)('0' + line % 10);
        size_t n = size - i < 80 ? size - i : 80;
        if (n >= 2) {
            l[n - 2] = '\r';
            l[n - 1] = '\n';
        }
        pstr_append(&msg, l, n);
        i += n;
    }
    pstr_puts(&msg, "\r\n");
}

/* The "%%" entries of a corpus file as messages (CRLF); "@clean" entries
 * get a plain set of header fields first. */
static int load_corpus(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    char line[4096];
    struct pstr *cur = NULL;
    int clean_hdrs = 0;
    while (fgets(line, sizeof(line), fp)) {
        if (strncmp(line, "%% ", 3) == 0) {
            corpus = realloc(corpus, (ncorpus + 1) * sizeof(*corpus));
            cur = &corpus[ncorpus++];
            memset(cur, 0, sizeof(*cur));
            clean_hdrs = 0;
            continue;
        }
        if (!cur)
            continue;
        if (strcmp(line, "@clean\n") == 0 && cur->len == 0) {
            pstr_puts(cur,
                      "Received: from mail.example.org (mail.example.org [192.0.2.10])\r\n"
                      "From: Alice Example <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n"
                      "Subject: Lunch on Thursday\r\nDate: Mon, 6 May 2024 10:00:00 +0200\r\n"
                      "Message-ID: <20240506100000.1234@example.org>\r\nMIME-Version: 1.0\r\n");
            clean_hdrs = 1;
            continue;
        }
        if (clean_hdrs && (line[0] == '@' || line[0] == '-'))
            continue;
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\n') {
            pstr_append(cur, line, n - 1);
            pstr_puts(cur, "\r\n");
        } else {
            pstr_puts(cur, line);
        }
    }
    fclose(fp);
    return ncorpus > 0 ? 0 : -1;
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
    size_t k = (size_t)(uintptr_t)arg;
    while (!atomic_load(&stop)) {
        const struct pstr *cm = &corpus[k++ % ncorpus];
        struct spam_msg *m = spam_msg_parse(cm->ptr, cm->len, NULL, 256 * 1024);
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
    /* clang-format off */
    static const struct option opts[] = {
        {"rules", required_argument, NULL, 'r'},
        {"extra", required_argument, NULL, 'e'},
        {"threads", required_argument, NULL, 't'},
        {"seconds", required_argument, NULL, 's'},
        {"size", required_argument, NULL, 'z'},
        {"style", required_argument, NULL, 'y'},
        {"corpus", required_argument, NULL, 'c'},
        {"count", required_argument, NULL, 'n'},
        {"no-prefilter", no_argument, NULL, 'P'},
        {"no-plain-shortcut", no_argument, NULL, 'G'},
        {"time-limit", required_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    /* clang-format on */
    unsigned time_limit = 0;
    const char *style = "mixed", *corpus_file = NULL;
    unsigned long count = 0;
    int no_prefilter = 0;
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
        case 'y':
            style = optarg;
            break;
        case 'c':
            corpus_file = optarg;
            break;
        case 'n':
            count = strtoul(optarg, NULL, 10);
            break;
        case 'P':
            no_prefilter = 1;
            break;
        case 'G':
            spam_msg_set_plain_shortcut(0);
            break;
        case 'T':
            time_limit = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            fprintf(
                stderr,
                "usage: spam_bench --rules FILE [--extra N] [--threads T] [--seconds S] [--size "
                "B]\n"
                "       [--style mixed|smtp-source] [--corpus FILE] [--count N] [--no-prefilter]\n"
                "       [--no-plain-shortcut]\n"
                "       [--time-limit MS]\n");
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
    if (corpus_file) {
        if (load_corpus(corpus_file) < 0) {
            fprintf(stderr, "spam_bench: no messages in %s\n", corpus_file);
            return 1;
        }
    } else {
        if (strcmp(style, "smtp-source") == 0)
            build_smtp_source(size);
        else
            build_message(size);
        corpus = &msg;
        ncorpus = 1;
    }
    size_t avg = 0;
    for (size_t i = 0; i < ncorpus; i++)
        avg += corpus[i].len;
    avg /= ncorpus;
    struct spam_eval_limits lim = SPAM_EVAL_LIMITS_DEFAULT;
    lim.no_prefilter = no_prefilter;
    if (time_limit)
        lim.rule_time_ms = lim.msg_time_ms = time_limit;
    pool = spam_scratch_pool_new(&lim);
    double el;
    unsigned long n;
    if (count > 0) {
        /* Fixed work on this thread: for instruction counts. */
        threads = 1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (unsigned long i = 0; i < count; i++) {
            const struct pstr *cm = &corpus[i % ncorpus];
            struct spam_msg *m = spam_msg_parse(cm->ptr, cm->len, NULL, 256 * 1024);
            struct spam_result res;
            spam_eval_run(rs, m, pool, &res);
            spam_result_free(&res);
            spam_msg_free(m);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        n = count;
    } else {
        pthread_t th[64];
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < threads; i++)
            pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i * 7919));
        usleep((useconds_t)(seconds * 1e6));
        atomic_store(&stop, 1);
        for (int i = 0; i < threads; i++)
            pthread_join(th[i], NULL);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        n = atomic_load(&done);
    }
    el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("RESULT rules=%zu regex_rules=%zu meta=%zu messages=%zu avg_size=%zu threads=%d "
           "msgs=%lu seconds=%.2f "
           "msgs_per_s=%.0f ms_per_msg_per_thread=%.3f jit=%d prefilter=%s\n",
           rs->nrules, nonmeta, rs->count[SPAM_RULE_META], ncorpus, avg, threads, n, el,
           (double)n / el, el * 1000.0 * threads / (double)(n ? n : 1), rs->jit,
           no_prefilter || !rs->pf ? "off" : spam_prefilter_engine());
    spam_scratch_pool_free(pool);
    spam_ruleset_unref(rs);
    pstr_free(&msg);
    if (corpus != &msg) {
        for (size_t i = 0; i < ncorpus; i++)
            pstr_free(&corpus[i]);
        free(corpus);
    }
    return 0;
}
