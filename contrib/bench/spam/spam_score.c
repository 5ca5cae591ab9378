/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_score: what the spam plugin would score each message, offline, for
 * evaluations (contrib/bench/spam/eval.sh).
 *
 *   spam_score --rules FILE [--bayes-db DB] [--min-learned N] [--max-scan BYTES] FILE|DIR...
 *
 * For each message (a FILE is one message; a DIR is walked, every regular
 * file one message): the message view and the rule evaluation of the
 * engine (spam_msg_parse, spam_eval_run) and, with --bayes-db, the Bayes
 * probability and its BAYES_* band with the rule set's score for it
 * (spam_bayes_score, spam_bayes_band_index, spam_ruleset.bayes_score),
 * as the plugin does; the total is what the plugin compares with its
 * thresholds when it is the only plugin that scores. There is no SMTP
 * envelope (sender, recipients, client address, HELO are empty). Prints
 *
 *   TOTAL <tab> RULES <tab> BAYES_P <tab> SYMBOLS <tab> PATH
 *
 * (BAYES_P is -1 when Bayes is off or had too few messages learned;
 * SYMBOLS are the rules hit, comma-separated, as in X-Spam-Status), and
 * at the end, on stderr, the CPU time (user + system) spent on the
 * messages, without loading the rules and the Bayes store.
 */
#include "spam_bayes.h"
#include "spam_bayes_db.h"
#include "spam_eval.h"
#include "spam_msg.h"
#include "spam_rules.h"
#include "pstr.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

struct score {
    struct spam_ruleset *rs;
    struct spam_scratch_pool *pool;
    struct spam_bayes_snap *snap; /* NULL: Bayes off */
    unsigned min_learned;
    size_t max_scan;
    unsigned long messages;
};

static int score_read(const char *path, struct pstr *out)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        pstr_append(out, buf, n);
    int err = ferror(fp);
    fclose(fp);
    return err ? -1 : 0;
}

static void score_one(struct score *sc, const char *path, const char *data, size_t len)
{
    struct spam_msg *m = spam_msg_parse(data, len, NULL, sc->max_scan);
    struct spam_result res;
    spam_eval_run(sc->rs, m, sc->pool, &res);
    struct pstr sym = PSTR_INIT;
    if (res.gtube)
        pstr_puts(&sym, "GTUBE");
    for (size_t i = 0; i < sc->rs->nrules; i++) {
        const struct spam_rule *r = &sc->rs->rules[i];
        if (!res.hit[i] || (strncmp(r->name, "__", 2) == 0 && r->score == 0))
            continue;
        if (sym.len)
            pstr_putc(&sym, ',');
        pstr_puts(&sym, r->name);
    }
    double total = res.score, p = -1;
    if (sc->snap) {
        size_t ntok, used;
        p = spam_bayes_score(sc->snap, m, sc->min_learned, &ntok, &used);
        if (p >= 0) {
            /* The rule set's band score, as the plugin adds it. */
            size_t bi = spam_bayes_band_index(p);
            total += sc->rs->bayes_score[bi];
            if (sym.len)
                pstr_putc(&sym, ',');
            pstr_puts(&sym, spam_bayes_band_at(bi)->name);
        }
    }
    printf("%.2f\t%.2f\t%.4f\t%s\t%s\n", total, res.score, p, sym.len ? pstr_cstr(&sym) : "none",
           path);
    sc->messages++;
    pstr_free(&sym);
    spam_result_free(&res);
    spam_msg_free(m);
}

static int score_path(struct score *sc, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "spam_score: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        struct dirent **names;
        int n = scandir(path, &names, NULL, alphasort);
        if (n < 0) {
            fprintf(stderr, "spam_score: %s: %s\n", path, strerror(errno));
            return -1;
        }
        int rc = 0;
        for (int i = 0; i < n; i++) {
            char sub[4096];
            if (names[i]->d_name[0] != '.' &&
                snprintf(sub, sizeof sub, "%s/%s", path, names[i]->d_name) < (int)sizeof sub)
                rc |= score_path(sc, sub);
            free(names[i]);
        }
        free(names);
        return rc;
    }
    if (!S_ISREG(st.st_mode))
        return 0;
    struct pstr data = PSTR_INIT;
    int rc = score_read(path, &data);
    if (rc != 0)
        fprintf(stderr, "spam_score: %s: %s\n", path, strerror(errno));
    else
        score_one(sc, path, pstr_cstr(&data), data.len);
    pstr_free(&data);
    return rc;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void usage(FILE *f)
{
    fputs("usage: spam_score --rules FILE [--bayes-db DB] [--min-learned N] [--max-scan BYTES] "
          "FILE|DIR...\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"rules", required_argument, NULL, 'r'},
        {"bayes-db", required_argument, NULL, 'b'},
        {"min-learned", required_argument, NULL, 'n'},
        {"max-scan", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *rules = NULL, *db_path = NULL;
    struct score sc = {.min_learned = 200, .max_scan = 256 * 1024};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            rules = optarg;
            break;
        case 'b':
            db_path = optarg;
            break;
        case 'n':
            sc.min_learned = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'm':
            sc.max_scan = strtoul(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!rules || optind >= argc) {
        usage(stderr);
        return 2;
    }
    spam_msg_global_init();
    struct spam_rules_errors errs;
    sc.rs = spam_rules_load(rules, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s:%u: %s\n", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
    spam_rules_errors_free(&errs);
    if (!sc.rs)
        return 1;
    if (db_path) {
        char err[512];
        struct spam_bayes_db *db = spam_bayes_db_open(db_path, false, true, err, sizeof err);
        if (!db) {
            fprintf(stderr, "spam_score: %s\n", err);
            return 1;
        }
        sc.snap = spam_bayes_db_snapshot(db);
        if (!sc.snap) {
            fprintf(stderr, "spam_score: %s: %s\n", db_path, spam_bayes_db_error(db));
            spam_bayes_db_close(db);
            return 1;
        }
        spam_bayes_db_close(db);
    }
    struct spam_eval_limits lim = SPAM_EVAL_LIMITS_DEFAULT;
    sc.pool = spam_scratch_pool_new(&lim);
    if (!sc.pool) {
        fputs("spam_score: out of memory\n", stderr);
        return 1;
    }
    int rc = 0;
    double t0 = cpu_seconds();
    for (int i = optind; i < argc; i++)
        rc |= score_path(&sc, argv[i]) != 0;
    double t1 = cpu_seconds();
    fflush(stdout);
    fprintf(stderr, "spam_score: %lu messages, cpu %.3f s\n", sc.messages, t1 - t0);
    spam_scratch_pool_free(sc.pool);
    spam_bayes_snap_free(sc.snap);
    spam_ruleset_unref(sc.rs);
    return rc;
}
