/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-rewrite-lint: check a rewrite rule file the way the plugin loads
 * it, and optionally show what it does to a message.
 *
 *   sluice-rewrite-lint [options] RULEFILE
 *
 * Every error is printed as "FILE:LINE: message" (map files with their own
 * name and line); the exit status is 1 when there was any. With --test
 * MESSAGE the envelope (--from, --rcpt) and the message are run through
 * the rules as sluice would, and the result is printed: the MAIL FROM and
 * RCPT TO lines the upstream would get, then the message.
 */
#include "rw_eval.h"
#include "rw_hdr.h"
#include "rw_rules.h"
#include "pstr.h"
#include "plughdr.h" /* the daemon's folding rule (what header_fold gives the plugin) */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void rw_lint__usage(FILE *fp)
{
    fputs("usage: sluice-rewrite-lint [options] RULEFILE\n"
          "  --test FILE        run a message (RFC 5322, CRLF or LF) through the rules\n"
          "  --from ADDR        envelope sender for --test (default: empty, <>)\n"
          "  --rcpt ADDR        envelope recipient for --test; repeatable\n"
          "  --ip ADDR          client address for --test (default 127.0.0.1)\n"
          "  --auth             the client is authenticated\n"
          "  --symbol NAME      a symbol other plugins recorded; repeatable\n"
          "  --score N          the transaction's score so far\n"
          "  --srs-secret S     secret for srs rules\n"
          "  --srs-separator C  character after SRS0/SRS1: = (default), + or -\n"
          "  -q, --quiet        print errors only\n"
          "  -h, --help\n",
          fp);
}

struct rw_lint__ctx {
    char **symbols;
    size_t nsymbols;
    double score;
};

static int rw_lint__has_symbol(void *ud, const char *name)
{
    struct rw_lint__ctx *c = ud;
    for (size_t i = 0; i < c->nsymbols; i++)
        if (strcmp(c->symbols[i], name) == 0)
            return 1;
    return 0;
}

static double rw_lint__score(void *ud)
{
    return ((struct rw_lint__ctx *)ud)->score;
}

static int rw_lint__read(const char *path, struct pstr *out)
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

/* LF line ends to CRLF (a message saved by an editor). */
static void rw_lint__crlf(const struct pstr *in, struct pstr *out)
{
    for (size_t i = 0; i < in->len; i++) {
        if (in->ptr[i] == '\n' && (i == 0 || in->ptr[i - 1] != '\r'))
            pstr_putc(out, '\r');
        pstr_putc(out, in->ptr[i]);
    }
}

static int rw_lint__test(struct rw_ruleset *rs, const char *msgfile, struct rw_env *env, char **rcpts, size_t nrcpts)
{
    struct pstr raw = PSTR_INIT, msg = PSTR_INIT;
    if (rw_lint__read(msgfile, &raw) < 0) {
        fprintf(stderr, "sluice-rewrite-lint: cannot read %s\n", msgfile);
        return 2;
    }
    rw_lint__crlf(&raw, &msg);
    pstr_free(&raw);
    struct rw_scratch *sc = rw_scratch_new(100000);
    struct rw_tx *tx = rw_tx_new(rs);
    int status = 0;

    char *sender = pstr_xstrdup(env->sender);
    char *out = NULL;
    unsigned line = 0;
    int rc = rw_eval_sender(tx, env, sc, &out, &line);
    if (rc == RW_CHANGED) {
        printf("# sender <%s> -> <%s> (line %u)\n", sender, out, line);
        free(sender);
        sender = out;
    } else if (rc == RW_INVALID) {
        printf("# sender <%s> -> <%s> (line %u): not a valid address: 451 4.3.0\n", sender, out, line);
        free(out);
        status = 1;
    }
    env->sender = sender;
    const char **final = calloc(nrcpts + 1, sizeof(char *));
    char **owned = calloc(nrcpts + 1, sizeof(char *));
    size_t nfinal = 0;
    for (size_t i = 0; i < nrcpts; i++) {
        env->rcpt = rcpts[i];
        out = NULL;
        rc = rw_eval_rcpt(tx, env, sc, &out, &line);
        if (rc == RW_CHANGED) {
            printf("# recipient <%s> -> <%s> (line %u)\n", rcpts[i], out, line);
            owned[i] = out;
            final[nfinal++] = out;
        } else if (rc == RW_INVALID || rc == RW_SRS_BAD) {
            printf("# recipient <%s>%s%s%s (line %u): refused: %s\n", rcpts[i], out ? " -> <" : "", out ? out : "",
                   out ? ">" : "", line, rc == RW_INVALID ? "451 4.3.0 invalid address" : "550 5.1.1 bad SRS");
            if (out != rcpts[i])
                free(out);
            status = 1;
        } else {
            final[nfinal++] = rcpts[i];
        }
    }
    env->rcpt = NULL;
    env->rcpts = final;
    env->nrcpts = nfinal;
    struct rw_hdrs h = RW_HDRS_INIT(plughdr_fold);
    size_t body_off = 0;
    rw_hdrs_parse(&h, msg.ptr ? msg.ptr : "", msg.len, &body_off);
    struct pstr warn = PSTR_INIT;
    rw_eval_headers(tx, env, sc, &h, &warn);
    if (warn.len)
        printf("# warning: %s\n", pstr_cstr(&warn));
    printf("MAIL FROM:<%s>\n", sender);
    for (size_t i = 0; i < nfinal; i++)
        printf("RCPT TO:<%s>\n", final[i]);
    struct pstr hdr = PSTR_INIT;
    rw_hdrs_render(&h, &hdr);
    fwrite(hdr.ptr ? hdr.ptr : "", 1, hdr.len, stdout);
    /* the separator and body as they came */
    const char *b = msg.ptr ? msg.ptr : "";
    size_t hdr_end = body_off;
    size_t k = hdr_end;
    /* body_off is after the blank line; find where the fields ended */
    if (k >= 2 && b[k - 1] == '\n' && b[k - 2] == '\r' && k >= 4 && b[k - 3] == '\n')
        fputs("\r\n", stdout);
    fwrite(b + body_off, 1, msg.len - body_off, stdout);

    pstr_free(&hdr);
    pstr_free(&warn);
    rw_hdrs_free(&h);
    for (size_t i = 0; i < nrcpts; i++)
        free(owned[i]);
    free(owned);
    free(final);
    free(sender);
    rw_tx_free(tx);
    rw_scratch_free(sc);
    pstr_free(&msg);
    return status;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"test", required_argument, NULL, 't'},
        {"from", required_argument, NULL, 'f'},
        {"rcpt", required_argument, NULL, 'r'},
        {"ip", required_argument, NULL, 'i'},
        {"auth", no_argument, NULL, 'a'},
        {"symbol", required_argument, NULL, 'S'},
        {"score", required_argument, NULL, 's'},
        {"srs-secret", required_argument, NULL, 'k'},
        {"srs-separator", required_argument, NULL, 'e'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *test = NULL, *from = "", *ip = "127.0.0.1", *secret = NULL, *sep = "=";
    char **rcpts = NULL;
    size_t nrcpts = 0;
    int quiet = 0, auth = 0;
    struct rw_lint__ctx lc = {NULL, 0, 0.0};
    int c;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 't': test = optarg; break;
        case 'f': from = optarg; break;
        case 'r':
            rcpts = pstr_xrealloc(rcpts, (nrcpts + 1) * sizeof(char *));
            rcpts[nrcpts++] = optarg;
            break;
        case 'i': ip = optarg; break;
        case 'a': auth = 1; break;
        case 'S':
            lc.symbols = pstr_xrealloc(lc.symbols, (lc.nsymbols + 1) * sizeof(char *));
            lc.symbols[lc.nsymbols++] = optarg;
            break;
        case 's': lc.score = strtod(optarg, NULL); break;
        case 'k': secret = optarg; break;
        case 'e':
            sep = optarg;
            break;
        case 'q': quiet = 1; break;
        case 'h': rw_lint__usage(stdout); return 0;
        default: rw_lint__usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        rw_lint__usage(stderr);
        return 2;
    }
    const char *path = argv[optind];
    struct rw_errors errs = RW_ERRORS_INIT;
    struct rw_ruleset *rs = rw_rules_load(path, &errs);
    for (size_t i = 0; i < errs.n; i++) {
        if (errs.v[i].line)
            fprintf(stderr, "%s:%u: %s\n", errs.v[i].file, errs.v[i].line, errs.v[i].msg);
        else
            fprintf(stderr, "%s: %s\n", errs.v[i].file, errs.v[i].msg);
    }
    int status = errs.n ? 1 : 0;
    rw_errors_free(&errs);
    if (rs && !quiet && !test)
        printf("%s: %zu rules, ok\n", path, rs->nrules);
    struct rw_srs *srs = NULL;
    if (rs && test && secret) {
        const char *why = NULL;
        srs = strlen(sep) == 1 ? rw_srs_new(sep[0], 21) : NULL;
        if (!srs) {
            fprintf(stderr, "--srs-separator: want =, + or -\n");
            rw_ruleset_unref(rs);
            return 2;
        }
        if (rw_srs_add_secret(srs, secret, strlen(secret), &why) != 0) {
            fprintf(stderr, "--srs-secret: %s\n", why);
            rw_srs_free(srs);
            rw_ruleset_unref(rs);
            return 2;
        }
    }
    if (rs && test) {
        struct rw_env env = {
            .sender = from,
            .client_ip = ip,
            .authenticated = auth,
            .has_symbol = rw_lint__has_symbol,
            .score = rw_lint__score,
            .ud = &lc,
            .now = time(NULL),
            .srs = srs,
        };
        rw_hdr_global_init();
        status = rw_lint__test(rs, test, &env, rcpts, nrcpts);
    }
    rw_srs_free(srs);
    rw_ruleset_unref(rs);
    free(rcpts);
    free(lc.symbols);
    return status;
}
