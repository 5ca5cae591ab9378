/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkim_bench: engine-level DKIM throughput. Signs and verifies a 4 KiB
 * message with RSA-2048 and Ed25519 keys generated at start, on N threads
 * sharing one signer / one verifier (as the plugin does on the thread
 * pool), and prints signatures/s and verifications/s.
 *
 *   dkim_bench [--threads N] [--seconds S] [--size BYTES]
 *              [--alg rsa|ed25519|both] [--sign-only] [--iterations N]
 *
 * Each figure also gives the process CPU time per operation (user + system,
 * all threads), which stays meaningful on a loaded machine. --iterations N
 * makes exactly N signatures per thread instead of running for a time
 * (for valgrind --tool=callgrind: instructions per signature are then the
 * total divided by N, after subtracting a --iterations 0 run).
 *
 * Key records come from an in-memory key file, so no DNS is involved: the
 * figures are the cryptography and canonicalisation cost only.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkp_keyfile.h"
#include "dkp_sign.h"
#include "dkp_verify.h"

struct job {
    int verify;                 /* 0 sign, 1 verify */
    struct dkp_sign *signer;
    struct dkp_verify *verifier;
    const char *pem;
    enum dkp_alg alg;
    const char *msg;            /* unsigned (sign) or signed (verify) */
    size_t len;
    double seconds;
    unsigned long iterations; /* > 0: exactly this many, no clock */
    unsigned long done, errors;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
    struct job *j = arg;
    double end = now_s() + j->seconds;
    char err[256];

    while (j->iterations ? j->done < j->iterations : now_s() < end) {
        for (int k = 0; k < (j->iterations ? 1 : 8); k++) {
            if (j->verify) {
                struct dkp_sigres *res;
                size_t n, skipped;
                if (dkp_verify_message(j->verifier, j->msg, j->len, NULL, 0, &res, &n, &skipped,
                                       err, sizeof err) ||
                    n != 1 || res[0].result != DKP_RES_PASS)
                    j->errors++;
                free(res);
            } else {
                char *v = NULL;
                if (dkp_sign_message(j->signer, "example.com", "sel", j->pem, j->alg, j->msg,
                                     j->len, &v, err, sizeof err))
                    j->errors++;
                free(v);
            }
            j->done++;
        }
    }
    return NULL;
}

static char *b64(const unsigned char *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

/* A key pair: *pem the private PEM, *rec the TXT record. */
static int make_key(int ed, char **pem, char **rec)
{
    EVP_PKEY *k = ed ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
                     : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    if (!k)
        return -1;
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    *pem = strndup(data, (size_t)n);
    BIO_free(b);
    char *p;
    if (ed) {
        unsigned char raw[32];
        size_t rl = sizeof raw;
        EVP_PKEY_get_raw_public_key(k, raw, &rl);
        p = b64(raw, rl);
    } else {
        unsigned char *der = NULL;
        int dl = i2d_PUBKEY(k, &der);
        p = b64(der, (size_t)dl);
        OPENSSL_free(der);
    }
    *rec = malloc(strlen(p) + 80);
    sprintf(*rec, "sel._domainkey.example.com v=DKIM1; k=%s; p=%s\n", ed ? "ed25519" : "rsa", p);
    free(p);
    EVP_PKEY_free(k);
    return 0;
}

static char *make_message(size_t size)
{
    static const char head[] = "From: Ann <ann@example.com>\r\n"
                               "To: bob@example.net\r\n"
                               "Subject: benchmark\r\n"
                               "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
                               "Message-ID: <bench@example.com>\r\n"
                               "\r\n";
    char *m = malloc(size + 80);
    size_t w = strlen(head);
    memcpy(m, head, w);
    while (w + 78 <= size) {
        for (int i = 0; i < 76; i++, w++)
            m[w] = (char)('a' + (w + (size_t)i) % 26);
        m[w++] = '\r';
        m[w++] = '\n';
    }
    m[w] = '\0';
    return m;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Operations per second; *cpu_us = process CPU microseconds per operation. */
static double run(struct job *proto, int threads, double *cpu_us)
{
    pthread_t t[64];
    struct job j[64];
    unsigned long done = 0, errors = 0;
    double t0 = now_s(), c0 = cpu_s();

    for (int i = 0; i < threads; i++) {
        j[i] = *proto;
        pthread_create(&t[i], NULL, worker, &j[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        done += j[i].done;
        errors += j[i].errors;
    }
    double el = now_s() - t0;
    *cpu_us = done ? (cpu_s() - c0) * 1e6 / (double)done : 0;
    if (errors)
        fprintf(stderr, "dkim_bench: %lu errors\n", errors);
    return errors ? -1 : el > 0 ? (double)done / el : 0;
}

int main(int argc, char **argv)
{
    int threads = 2;
    double seconds = 3;
    size_t size = 4096;
    unsigned long iterations = 0;
    int sign_only = 0, algs = 3; /* bit 0 RSA, bit 1 Ed25519 */
    char err[256];

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sign-only")) {
            sign_only = 1;
            continue;
        }
        if (i + 1 == argc)
            break;
        if (!strcmp(argv[i], "--iterations"))
            iterations = strtoul(argv[++i], NULL, 10), sign_only = 1;
        else if (!strcmp(argv[i], "--alg"))
            i++, algs = !strcmp(argv[i], "rsa") ? 1 : !strcmp(argv[i], "ed25519") ? 2 : 3;
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--size"))
            size = (size_t)atol(argv[++i]);
    }
    if (threads < 1 || threads > 64 || seconds <= 0 || size < 512) {
        fprintf(stderr, "usage: dkim_bench [--threads 1..64] [--seconds S] [--size BYTES>=512]"
                        " [--alg rsa|ed25519|both] [--sign-only] [--iterations N]\n");
        return 2;
    }
    char *msg = make_message(size);
    struct dkp_sign_conf sc = {.header_relaxed = 1, .body_relaxed = 1};
    struct dkp_sign *signer = dkp_sign_new(&sc, err, sizeof err);
    if (!signer) {
        fprintf(stderr, "dkim_bench: %s\n", err);
        return 1;
    }
    printf("dkim_bench: %zu-byte message, %d threads, %.1f s per figure\n", strlen(msg), threads,
           seconds);
    int rc = 0;
    for (int ed = 0; ed < 2; ed++) {
        if (!(algs & (1 << ed)))
            continue;
        char *pem, *rec, *sig = NULL;
        const char *name = ed ? "Ed25519" : "RSA-2048";
        if (make_key(ed, &pem, &rec) < 0)
            return 1;
        enum dkp_alg alg = ed ? DKP_ALG_ED25519_SHA256 : DKP_ALG_RSA_SHA256;
        struct job js = {.signer = signer,
                         .pem = pem,
                         .alg = alg,
                         .msg = msg,
                         .len = strlen(msg),
                         .seconds = seconds,
                         .iterations = iterations};
        double scpu, vcpu = 0, vps = 0;
        double sps = run(&js, threads, &scpu);
        if (sign_only) {
            printf("%-9s signatures/s: %8.0f (%.1f us CPU each)\n", name, sps, scpu);
            if (sps < 0)
                rc = 1;
            free(pem);
            free(rec);
            continue;
        }

        struct dkp_keyfile kf;
        unsigned line;
        dkp_keyfile_parse(rec, strlen(rec), &kf, &line, err, sizeof err);
        struct dkp_verify_conf vc = {.keyfile = &kf, .min_key_bits = 1024};
        struct dkp_verify *v = dkp_verify_new(&vc, err, sizeof err);
        dkp_sign_message(signer, "example.com", "sel", pem, alg, msg, strlen(msg), &sig, err,
                         sizeof err);
        char *signed_msg = malloc(strlen(sig) + strlen(msg) + 32);
        sprintf(signed_msg, "DKIM-Signature: %s\r\n%s", sig, msg);
        struct job jv = {.verify = 1, .verifier = v, .msg = signed_msg,
                         .len = strlen(signed_msg), .seconds = seconds};
        vps = run(&jv, threads, &vcpu);
        printf("%-9s signatures/s: %8.0f (%.1f us CPU each)   verifications/s: %8.0f (%.1f us CPU"
               " each)\n",
               name, sps, scpu, vps, vcpu);
        if (sps < 0 || vps < 0)
            rc = 1;
        dkp_verify_free(v);
        dkp_keyfile_free(&kf);
        free(signed_msg);
        free(sig);
        free(pem);
        free(rec);
    }
    dkp_sign_free(signer);
    free(msg);
    return rc;
}
