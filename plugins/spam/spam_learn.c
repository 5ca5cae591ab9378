/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-spam-learn: train the spam plugin's Bayes store.
 *
 *   sluice-spam-learn --db PATH --spam|--ham|--forget FILE|DIR|MBOX...
 *   sluice-spam-learn --db PATH --classify FILE|DIR|MBOX...
 *   sluice-spam-learn --db PATH --stats | --dump | --expire [--min N --days D]
 *
 * With --redis ADDR instead of --db, the store is the daemon's shared
 * state in Redis (bayes_store = state, [state] backend = redis): the same
 * learning, classifying, --stats and --dump (no --expire: Redis keeps what
 * it is given), under the keys the daemon uses for the plugin instance
 * (--key-prefix as [state] key_prefix, default "sluice:"; --instance as
 * the [plugin NAME], default "spam"); --redis-user, --redis-password-file
 * and --redis-db as the [state] keys of the same names; --seen-days as the
 * plugin's bayes_seen_days (default 30): how long a message stays "already
 * learned".
 *
 * A FILE is one message; a DIR is walked (Maildir cur/ and new/ included),
 * every regular file one message; a file whose first line starts with
 * "From " is an mbox (split at "From " lines, ">From " unquoted). The
 * daemon picks the new counts up within a second or so (it reloads its
 * snapshot when the store changes).
 */
#include "spam_bayes.h"
#include "spam_bayes_db.h"
#include "spam_learn_redis.h"
#include "spam_msg.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pstr.h"

enum learn_mode { MODE_NONE, MODE_SPAM, MODE_HAM, MODE_FORGET, MODE_CLASSIFY };

struct learn {
    struct spam_bayes_db *db;
    struct spam_learn_redis *redis;  /* instead of db */
    struct spam_bayes_count *counts; /* redis classify */
    struct spam_bayes_snap *snap;    /* classify */
    enum learn_mode mode;
    unsigned long counts_by[SPAM_BAYES_ERROR + 1];
    unsigned long messages;
    uint64_t *tok;
};

static void learn_one(struct learn *l, const char *data, size_t len, const char *label)
{
    struct spam_msg *m = spam_msg_parse(data, len, NULL, 256 * 1024);
    size_t n = spam_bayes_tokens(m, l->tok, SPAM_BAYES_MAX_TOKENS);
    l->messages++;
    if (l->mode == MODE_CLASSIFY && l->redis) {
        uint32_t ns, nh;
        size_t used = 0;
        double p = -1;
        if (spam_learn_redis_counts(l->redis, l->tok, n, l->counts, &ns, &nh) != 0)
            fprintf(stderr, "sluice-spam-learn: %s: %s\n", label, spam_learn_redis_error(l->redis));
        else if (ns && nh)
            p = spam_bayes_classify(l->counts, n, ns, nh, &used);
        printf("%.4f\t%zu\t%zu\t%s\n", p, n, used, label);
    } else if (l->redis) {
        uint64_t id = spam_bayes_msg_id(m, l->tok, n);
        enum spam_bayes_learn r = spam_learn_redis_learn(
            l->redis, id, l->tok, n, l->mode == MODE_SPAM, l->mode == MODE_FORGET);
        l->counts_by[r]++;
        if (r == SPAM_BAYES_ERROR)
            fprintf(stderr, "sluice-spam-learn: %s: %s\n", label, spam_learn_redis_error(l->redis));
    } else if (l->mode == MODE_CLASSIFY) {
        size_t nt, used;
        double p = spam_bayes_score(l->snap, m, 1, &nt, &used);
        printf("%.4f\t%zu\t%zu\t%s\n", p, nt, used, label);
    } else {
        uint64_t id = spam_bayes_msg_id(m, l->tok, n);
        enum spam_bayes_learn r =
            spam_bayes_db_learn(l->db, id, l->tok, n, l->mode == MODE_SPAM, l->mode == MODE_FORGET);
        l->counts_by[r]++;
        if (r == SPAM_BAYES_ERROR)
            fprintf(stderr, "sluice-spam-learn: %s: %s\n", label, spam_bayes_db_error(l->db));
    }
    spam_msg_free(m);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct pstr s = PSTR_INIT;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        pstr_append(&s, buf, n);
    fclose(f);
    *len = s.len;
    return pstr_steal(&s);
}

static void learn_mbox(struct learn *l, const char *data, size_t len, const char *path)
{
    struct pstr msg = PSTR_INIT;
    size_t i = 0, idx = 0;
    char label[4200];
    while (i < len) {
        size_t e = i;
        while (e < len && data[e] != '\n')
            e++;
        size_t ll = e - i + (e < len);
        bool from = ll >= 5 && memcmp(data + i, "From ", 5) == 0;
        if (from) {
            if (msg.len) {
                snprintf(label, sizeof label, "%s#%zu", path, idx++);
                learn_one(l, msg.ptr, msg.len, label);
            }
            pstr_clear(&msg);
        } else if (ll >= 6 && data[i] == '>' && memcmp(data + i + 1, "From ", 5) == 0) {
            pstr_append(&msg, data + i + 1, ll - 1);
        } else {
            pstr_append(&msg, data + i, ll);
        }
        i += ll;
    }
    if (msg.len) {
        snprintf(label, sizeof label, "%s#%zu", path, idx);
        learn_one(l, msg.ptr, msg.len, label);
    }
    pstr_free(&msg);
}

static int learn_path(struct learn *l, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "sluice-spam-learn: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) {
            fprintf(stderr, "sluice-spam-learn: %s: %s\n", path, strerror(errno));
            return -1;
        }
        int rc = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char sub[4096];
            if (snprintf(sub, sizeof sub, "%s/%s", path, de->d_name) >= (int)sizeof sub)
                continue;
            rc |= learn_path(l, sub);
        }
        closedir(d);
        return rc;
    }
    if (!S_ISREG(st.st_mode))
        return 0;
    size_t len;
    char *data = read_file(path, &len);
    if (!data) {
        fprintf(stderr, "sluice-spam-learn: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (len >= 5 && memcmp(data, "From ", 5) == 0)
        learn_mbox(l, data, len, path);
    else
        learn_one(l, data, len, path);
    free(data);
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: sluice-spam-learn --db PATH --spam|--ham|--forget|--classify FILE|DIR|MBOX...\n"
          "       sluice-spam-learn --db PATH --stats | --expire [--min N] [--days D]\n"
          "       sluice-spam-learn --redis ADDR [--redis-user U] [--redis-password-file F]\n"
          "                         [--redis-db N] [--key-prefix P] [--instance NAME]\n"
          "                         [--seen-days N]\n"
          "                         --spam|--ham|--forget|--classify FILE|DIR|MBOX... | --stats | "
          "--dump\n",
          f);
}

static void print_counts(const struct learn *l)
{
    printf("%lu messages: %lu learned, %lu moved from the other class, %lu already "
           "learned, %lu forgotten, %lu unknown, %lu errors\n",
           l->messages, l->counts_by[SPAM_BAYES_LEARNED], l->counts_by[SPAM_BAYES_RELEARNED],
           l->counts_by[SPAM_BAYES_ALREADY], l->counts_by[SPAM_BAYES_FORGOTTEN],
           l->counts_by[SPAM_BAYES_UNKNOWN], l->counts_by[SPAM_BAYES_ERROR]);
}

/* --redis: the store is the daemon's shared state in Redis. */
static int learn_redis_main(struct learn *l, const struct spam_learn_redis_conf *c, bool stats,
                            bool dump, bool bad, int argc, char **argv)
{
    if (bad || (l->mode == MODE_NONE && !stats && !dump) ||
        (l->mode != MODE_NONE && optind >= argc)) {
        fprintf(stderr, "sluice-spam-learn: --redis goes without --db and --expire\n");
        usage(stderr);
        return 2;
    }
    char err[600];
    l->redis = spam_learn_redis_open(c, err, sizeof err);
    if (!l->redis) {
        fprintf(stderr, "sluice-spam-learn: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (l->mode != MODE_NONE) {
        spam_msg_global_init();
        l->tok = pstr_xmalloc(SPAM_BAYES_MAX_TOKENS * sizeof *l->tok);
        l->counts = pstr_xmalloc(SPAM_BAYES_MAX_TOKENS * sizeof *l->counts);
        for (int i = optind; i < argc; i++)
            rc |= learn_path(l, argv[i]) != 0;
        if (l->mode != MODE_CLASSIFY)
            print_counts(l);
        if (l->counts_by[SPAM_BAYES_ERROR])
            rc = 1;
        free(l->tok);
        free(l->counts);
    }
    if (stats) {
        uint32_t ns, nh;
        uint64_t nt;
        if (spam_learn_redis_totals(l->redis, &ns, &nh, &nt) != 0) {
            fprintf(stderr, "sluice-spam-learn: %s\n", spam_learn_redis_error(l->redis));
            rc = 1;
        } else {
            printf("spam %u\nham %u\ntokens %llu\n", ns, nh, (unsigned long long)nt);
        }
    }
    if (dump && spam_learn_redis_dump(l->redis, stdout) != 0) {
        fprintf(stderr, "sluice-spam-learn: %s\n", spam_learn_redis_error(l->redis));
        rc = 1;
    }
    spam_learn_redis_close(l->redis);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"spam", no_argument, NULL, 's'},
        {"ham", no_argument, NULL, 'h'},
        {"forget", no_argument, NULL, 'f'},
        {"classify", no_argument, NULL, 'c'},
        {"stats", no_argument, NULL, 'S'},
        {"expire", no_argument, NULL, 'E'},
        {"min", required_argument, NULL, 'm'},
        {"days", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'H'},
        {"redis", required_argument, NULL, 'r'},
        {"redis-user", required_argument, NULL, 'u'},
        {"redis-password-file", required_argument, NULL, 'p'},
        {"redis-db", required_argument, NULL, 'n'},
        {"key-prefix", required_argument, NULL, 'k'},
        {"instance", required_argument, NULL, 'i'},
        {"dump", no_argument, NULL, 'U'},
        {"seen-days", required_argument, NULL, 'e'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    struct learn l = {.mode = MODE_NONE};
    bool stats = false, expire = false, dump = false;
    struct spam_learn_redis_conf rc_conf = {.key_prefix = "sluice:", .instance = "spam"};
    unsigned min = 3, days = 90;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            path = optarg;
            break;
        case 's':
            l.mode = MODE_SPAM;
            break;
        case 'h':
            l.mode = MODE_HAM;
            break;
        case 'f':
            l.mode = MODE_FORGET;
            break;
        case 'c':
            l.mode = MODE_CLASSIFY;
            break;
        case 'S':
            stats = true;
            break;
        case 'E':
            expire = true;
            break;
        case 'm':
            min = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'D':
            days = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'H':
            usage(stdout);
            return 0;
        case 'r':
            rc_conf.addr = optarg;
            break;
        case 'u':
            rc_conf.user = optarg;
            break;
        case 'p':
            rc_conf.password_file = optarg;
            break;
        case 'n':
            rc_conf.db = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'k':
            rc_conf.key_prefix = optarg;
            break;
        case 'i':
            rc_conf.instance = optarg;
            break;
        case 'U':
            dump = true;
            break;
        case 'e': {
            char *end;
            unsigned long d = strtoul(optarg, &end, 10);
            if (*end || d < 1 || d > 3650) {
                fprintf(stderr, "sluice-spam-learn: --seen-days wants 1 to 3650, got '%s'\n",
                        optarg);
                return 2;
            }
            rc_conf.seen_days = (unsigned)d;
            break;
        }
        default:
            usage(stderr);
            return 2;
        }
    }
    if (rc_conf.addr)
        return learn_redis_main(&l, &rc_conf, stats, dump, expire || path, argc, argv);
    if (!path || (l.mode == MODE_NONE && !stats && !expire) ||
        (l.mode != MODE_NONE && optind >= argc)) {
        usage(stderr);
        return 2;
    }
    char err[512];
    bool writes = l.mode == MODE_SPAM || l.mode == MODE_HAM || l.mode == MODE_FORGET || expire;
    l.db = spam_bayes_db_open(path, writes, !writes, err, sizeof err);
    if (!l.db) {
        fprintf(stderr, "sluice-spam-learn: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (expire) {
        uint64_t dropped;
        if (spam_bayes_db_expire(l.db, min, days, &dropped) != 0) {
            fprintf(stderr, "sluice-spam-learn: %s\n", spam_bayes_db_error(l.db));
            rc = 1;
        } else {
            printf("expired %llu tokens\n", (unsigned long long)dropped);
        }
    }
    if (l.mode != MODE_NONE) {
        spam_msg_global_init();
        l.tok = pstr_xmalloc(SPAM_BAYES_MAX_TOKENS * sizeof *l.tok);
        if (l.mode == MODE_CLASSIFY && !(l.snap = spam_bayes_db_snapshot(l.db))) {
            fprintf(stderr, "sluice-spam-learn: %s\n", spam_bayes_db_error(l.db));
            rc = 1;
        } else {
            if (l.mode != MODE_CLASSIFY && spam_bayes_db_begin(l.db) != 0) {
                fprintf(stderr, "sluice-spam-learn: %s\n", spam_bayes_db_error(l.db));
                return 1;
            }
            for (int i = optind; i < argc; i++)
                rc |= learn_path(&l, argv[i]) != 0;
            if (l.mode != MODE_CLASSIFY && spam_bayes_db_commit(l.db) != 0) {
                fprintf(stderr, "sluice-spam-learn: %s\n", spam_bayes_db_error(l.db));
                rc = 1;
            }
        }
        if (l.mode != MODE_CLASSIFY)
            print_counts(&l);
        if (l.counts_by[SPAM_BAYES_ERROR])
            rc = 1;
        spam_bayes_snap_free(l.snap);
        free(l.tok);
    }
    if (stats) {
        uint32_t ns, nh;
        uint64_t nt;
        if (spam_bayes_db_totals(l.db, &ns, &nh, &nt) != 0) {
            fprintf(stderr, "sluice-spam-learn: %s\n", spam_bayes_db_error(l.db));
            rc = 1;
        } else {
            printf("spam %u\nham %u\ntokens %llu\n", ns, nh, (unsigned long long)nt);
        }
    }
    spam_bayes_db_close(l.db);
    return rc;
}
