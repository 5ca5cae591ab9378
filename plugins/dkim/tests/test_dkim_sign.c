/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of dkp_sign, sluice's own DKIM signer. RSA PKCS#1 v1.5 and
 * Ed25519 signatures are deterministic, so the strongest check is byte
 * equality with what libopendkim's signer (the previous implementation,
 * kept here as ref_sign()) makes of the same message, key, configuration
 * and time: a table of awkward messages x four canonicalisations x header
 * lists x keys. New signatures are also verified with libopendkim's
 * verifier (dkp_verify with a key file), and the key cache is exercised:
 * reuse, changed key text, eviction, threads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dkim.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkp_keyfile.h"
#include "dkp_sign.h"
#include "dkp_verify.h"

#define FIXED_TIME 1700000000ull

struct keypair {
    const char *name;
    char *pem;    /* private key text */
    char *record; /* TXT record text */
    enum dkp_alg alg;
};

/* RSA-2048 (PKCS#8 PEM), RSA-1024 ("BEGIN RSA PRIVATE KEY"), RSA-3072, Ed25519 */
static struct keypair keys[4] = {
    {.name = "rsa2048"}, {.name = "rsa1024-traditional"}, {.name = "rsa3072"}, {.name = "ed25519"}};

static char *b64(const unsigned char *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

static void make_key(struct keypair *kp, EVP_PKEY *k, int traditional)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(traditional
                         ? PEM_write_bio_PrivateKey_traditional(b, k, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL),
                     1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    kp->pem = strndup(data, (size_t)n);
    BIO_free(b);
    char *p;
    if (EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519) {
        unsigned char raw[32];
        size_t rl = sizeof raw;
        assert_int_equal(EVP_PKEY_get_raw_public_key(k, raw, &rl), 1);
        p = b64(raw, rl);
        kp->alg = DKP_ALG_ED25519_SHA256;
    } else {
        unsigned char *der = NULL;
        int dl = i2d_PUBKEY(k, &der);
        assert_true(dl > 0);
        p = b64(der, (size_t)dl);
        OPENSSL_free(der);
        kp->alg = DKP_ALG_RSA_SHA256;
    }
    kp->record = malloc(strlen(p) + 64);
    sprintf(kp->record, "v=DKIM1; k=%s; p=%s", kp->alg == DKP_ALG_RSA_SHA256 ? "rsa" : "ed25519",
            p);
    free(p);
    EVP_PKEY_free(k);
}

static int group_setup(void **state)
{
    (void)state;
    make_key(&keys[0], EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), 0);
    make_key(&keys[1], EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024), 1);
    make_key(&keys[2], EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072), 0);
    make_key(&keys[3], EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), 0);
    assert_non_null(strstr(keys[1].pem, "BEGIN RSA PRIVATE KEY"));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < 4; i++) {
        free(keys[i].pem);
        free(keys[i].record);
    }
    return 0;
}

/* ---- the reference: the libopendkim signing path sluice used before ------- */

static char **dup_list(const char *const *l)
{
    size_t n = 0;
    while (l[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = strdup(l[i]);
    return out;
}

static void free_list(char **l)
{
    for (size_t i = 0; l && l[i]; i++)
        free(l[i]);
    free(l);
}

static const char *const default_sign[] = {"from",
                                           "sender",
                                           "reply-to",
                                           "subject",
                                           "date",
                                           "message-id",
                                           "to",
                                           "cc",
                                           "mime-version",
                                           "content-type",
                                           "content-transfer-encoding",
                                           "content-id",
                                           "content-description",
                                           "resent-date",
                                           "resent-from",
                                           "resent-sender",
                                           "resent-to",
                                           "resent-cc",
                                           "resent-message-id",
                                           "in-reply-to",
                                           "references",
                                           "list-id",
                                           "list-help",
                                           "list-unsubscribe",
                                           "list-unsubscribe-post",
                                           "list-subscribe",
                                           "list-post",
                                           "list-owner",
                                           "list-archive",
                                           NULL};
static const char *const default_oversign[] = {
    "from",   "to",         "cc",           "subject",      "date", "reply-to",
    "sender", "message-id", "mime-version", "content-type", NULL};

/* The old dkp_sign_message() on libopendkim, in two halves: the library
 * with the header lists of conf (ref_lib, made once per list case: dkim_init
 * compiles regular expressions, which under AddressSanitizer cost more than
 * all the signing), and one signature with it (ref_sign). */
struct ref_lib {
    DKIM_LIB *lib;
    char **sign, **over;
};

static void ref_lib_open(struct ref_lib *r, const struct dkp_sign_conf *conf)
{
    uint32_t flags = DKIM_LIBFLAGS_DEFAULT;
    r->lib = dkim_init(NULL, NULL);
    r->sign = dup_list(conf->sign_headers ? conf->sign_headers : default_sign);
    r->over = dup_list(conf->oversign_headers ? conf->oversign_headers : default_oversign);
    assert_non_null(r->lib);
    assert_int_equal(dkim_options(r->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags),
                     DKIM_STAT_OK);
    assert_int_equal(
        dkim_options(r->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, r->sign, sizeof r->sign),
        DKIM_STAT_OK);
    assert_int_equal(
        dkim_options(r->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, r->over, sizeof r->over),
        DKIM_STAT_OK);
    assert_int_equal(dkim_options(r->lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME,
                                  (void *)&conf->fixed_time, sizeof conf->fixed_time),
                     DKIM_STAT_OK);
}

static void ref_lib_close(struct ref_lib *r)
{
    dkim_close(r->lib);
    free_list(r->sign);
    free_list(r->over);
}

/* conf: the canonicalisations; its lists are those r was opened with. */
static int ref_sign(const struct ref_lib *r, const struct dkp_sign_conf *conf, const char *domain,
                    const char *selector, const char *pem, enum dkp_alg alg, const char *msg,
                    size_t len, char **value)
{
    DKIM_LIB *lib = r->lib;
    DKIM_STAT st;
    int rc = -1;

    *value = NULL;
    DKIM *d = dkim_sign(
        lib, (const unsigned char *)"sluice", NULL, (dkim_sigkey_t)pem,
        (const unsigned char *)selector, (const unsigned char *)domain,
        conf->header_relaxed ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE,
        conf->body_relaxed ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE,
        alg == DKP_ALG_ED25519_SHA256 ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256, -1, &st);
    assert_non_null(d);
    st = dkim_chunk(d, (unsigned char *)msg, len);
    if (st == DKIM_STAT_OK)
        st = dkim_chunk(d, NULL, 0);
    if (st == DKIM_STAT_OK)
        st = dkim_eom(d, NULL);
    unsigned char *hdr;
    size_t hl;
    if (st == DKIM_STAT_OK && dkim_getsighdr_d(d, 16, &hdr, &hl) == DKIM_STAT_OK) {
        *value = strndup((const char *)hdr, hl);
        rc = 0;
    }
    dkim_free(d);
    return rc;
}

/* ---- the messages --------------------------------------------------------- */

#define HDRS                                                                                       \
    "From: Ann Example <ann@example.com>\r\n"                                                      \
    "To: bob@example.net\r\n"                                                                      \
    "Subject: hello\r\n"                                                                           \
    "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"                                                    \
    "Message-ID: <1@example.com>\r\n"

#define NUL_MSG "From: ann@example.com\r\nSubject: a\0b c\r\n\r\nx\r\n"

struct msgcase {
    const char *name;
    const char *text; /* NULL: built by build_msg() */
    size_t len;       /* 0: strlen(text) */
    int verifies;     /* a libopendkim signature of it verifies (well-formed) */
};

static struct msgcase msgs[] = {
    {"plain", HDRS "\r\nHello Bob,\r\n\r\nthis is a test.\r\n", 0, 1},
    {"folded headers",
     "From: Ann Example\r\n <ann@example.com>\r\n"
     "To:\r\n bob@example.net,\r\n\tcarol@example.net\r\n"
     "Subject: a\r\n  folded\r\n\tsubject  line \r\n"
     "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
     "Content-Type: multipart/alternative;\r\n\tboundary=\"b1\";\r\n charset=utf-8\r\n"
     "\r\nbody\r\n",
     0, 1},
    {"repeated headers",
     "Received: from a by b; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
     "Received: from c by d; Tue, 14 Nov 2023 22:13:19 +0000\r\n"
     "To: first@example.net\r\n"
     "From: ann@example.com\r\n"
     "To: second@example.net\r\n"
     "Subject: one\r\n"
     "Cc: x@example.org\r\n"
     "Subject: two\r\n"
     "To: third@example.net\r\n"
     "\r\nbody\r\n",
     0, 1},
    {"from only", "From: ann@example.com\r\n\r\nx\r\n", 0, 1},
    {"trailing white space",
     "From: ann@example.com \t \r\n"
     "To : bob@example.net\r\n"
     "Subject:\t\t  spaced \t out\t\r\n"
     "Cc:  a   b\t\tc  \r\n"
     "X-Empty:\r\n"
     "X-Tabs:\t\t\r\n"
     "\r\nline with trailing space \t \r\n  leading and  inner \t white\r\n",
     0, 1},
    {"empty body", HDRS "\r\n", 0, 1},
    {"no empty line", HDRS, 0, 1},
    {"body only blank lines", HDRS "\r\n\r\n\r\n\r\n", 0, 1},
    {"many trailing blank lines", HDRS "\r\na\r\n\r\nb\r\n\r\n\r\n\r\n\r\n\r\n", 0, 1},
    {"trailing white space lines", HDRS "\r\na\r\n \r\n\t\r\n  \t \r\n", 0, 1},
    {"no final CRLF", HDRS "\r\nfirst\r\nlast line", 0, 0},
    {"no final CRLF, white space", HDRS "\r\nfirst\r\nlast line  ", 0, 0},
    {"8-bit",
     "From: =?utf-8?q?Ren=C3=A9?= <rene@example.com>\r\n"
     "Subject: caf\xc3\xa9 \xe2\x82\xac\r\n"
     "To: \xff\xfe@example.net\r\n"
     "\r\n\xc3\xa9t\xc3\xa9\r\n\xff\xfe\x80 bytes\r\n",
     0, 1},
    {"case of names",
     "FROM: ann@example.com\r\n"
     "to: bob@example.net\r\n"
     "sUbJeCt: case\r\n"
     "message-id: <2@example.com>\r\n"
     "MIME-VERSION: 1.0\r\n"
     "\r\nbody\r\n",
     0, 1},
    {"white space in body", HDRS "\r\na  \t b\t\r\n   x\r\n\t\ty  z \r\n", 0, 1},
    {"bare CR and LF", HDRS "X-Odd: a\rb\nc\r\n\r\na\rb\r\nc\nd\r\n\r\r\n", 0, 0},
    {"VT and FF continuation", "From: ann@example.com\r\nSubject: a\r\n\vb\r\n\fc\r\n\r\nx\r\n", 0,
     0},
    {"empty field name", "From: ann@example.com\r\n: no name\r\n\r\nx\r\n", 0, 0},
    {"NUL in header", NUL_MSG, sizeof NUL_MSG - 1, 0},
    {"header without colon", "From: ann@example.com\r\nNo colon here\r\n\r\nx\r\n", 0, 0},
    {"semicolon in name", "From: ann@example.com\r\nX;Y: z\r\n\r\nx\r\n", 0, 0},
    {"8-bit name", "From: ann@example.com\r\nX-\xc3\xa9: z\r\n\r\nx\r\n", 0, 0},
    {"no From", "To: bob@example.net\r\n\r\nx\r\n", 0, 0},
    {"starts with CRLF", "\r\nFrom: ann@example.com\r\n\r\nx\r\n", 0, 0},
    {"empty", "", 0, 0},
    {"custom headers",
     "From: ann@example.com\r\n"
     "X-Custom: one\r\n"
     "x-custom: two\r\n"
     "X-Mailer: m\r\n"
     "List-Id: <l.example.com>\r\n"
     "Received: r\r\n"
     "\r\nx\r\n",
     0, 1},
    {"previous signature",
     "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s;\r\n"
     "\tt=1; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; h=From; b=AAAA\r\n" HDRS "\r\nx\r\n",
     0, 1},
    /* built at run time */
    {"long lines", NULL, 0, 1},
    {"many signed fields", NULL, 0, 1},
    {"big body, no final CRLF", NULL, 0, 0},
    {"big body", NULL, 0, 1},
};

static char *build_msg(const char *name, size_t *len)
{
    size_t cap = 64 * 1024, w = 0;
    char *m = malloc(cap);
#define PUT(s) (w += (size_t)snprintf(m + w, cap - w, "%s", (s)))
    if (!strcmp(name, "long lines")) {
        PUT(HDRS "X-Long: ");
        for (int i = 0; i < 1500; i++)
            m[w++] = (char)('a' + i % 26);
        PUT("\r\nReferences: ");
        for (int i = 0; i < 40; i++)
            w += (size_t)snprintf(m + w, cap - w, "%s<%d.long.message.id@example.com>",
                                  i ? "\r\n " : "", i);
        PUT("\r\n\r\n");
        for (int i = 0; i < 2000; i++)
            m[w++] = (char)(i % 50 ? 'a' + i % 26 : ' ');
        PUT("\r\nshort\r\n");
    } else if (!strcmp(name, "many signed fields")) {
        PUT("From: ann@example.com\r\n");
        for (int i = 0; i < 30; i++)
            w += (size_t)snprintf(m + w, cap - w, "%s: v%d\r\n",
                                  i % 3 == 0   ? "To"
                                  : i % 3 == 1 ? "Cc"
                                               : "Resent-Message-ID",
                                  i);
        PUT("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nContent-Description: d\r\n");
        PUT("\r\nbody\r\n");
    } else { /* big body (maybe without final CRLF): past libopendkim's 4 KiB hash buffer */
        PUT(HDRS "\r\n");
        for (int l = 0; l < 100; l++) {
            for (int i = 0; i < 70; i++)
                m[w++] = (char)('A' + (l + i) % 26);
            PUT("\r\n");
        }
        if (strstr(name, "no final"))
            PUT("the end");
    }
#undef PUT
    *len = w;
    return m;
}

/* ---- configurations ------------------------------------------------------- */

static const char *const custom_sign[] = {"From",     "To",      "Subject", "X-Custom",
                                          "Received", "list-id", NULL};
static const char *const custom_over[] = {"From", "Subject", "X-Missing", NULL};
static const char *const wild_sign[] = {"from", "x-*", "subject", "list.id", NULL};
static const char *const no_over[] = {NULL};

struct listcase {
    const char *name;
    const char *const *sign, *const *over;
};

static const struct listcase lists[] = {
    {"default lists", NULL, NULL},
    {"custom lists", custom_sign, custom_over},
    {"wildcard sign list", wild_sign, NULL},
    {"no over-signing", NULL, no_over},
};

struct idcase {
    const char *domain, *selector;
};

static const struct idcase ids[] = {
    {"example.com", "sel"},
    {"mail.subdomain.some-long-organisation-name.example", "a-very-long-selector-2024-01"},
};

/* ---- tests -------------------------------------------------------------- */

/* Under AddressSanitizer OpenSSL's PEM decoders (each signature parses its
 * key twice, once per signer) make the full matrix take ~90 s: there each
 * message, canonicalisation and list is signed with one of the keys in
 * turn, which still runs every code path of ours; the other builds compare
 * every combination. */
#if defined(__SANITIZE_ADDRESS__)
#define SAMPLE_KEYS 1
#else
#define SAMPLE_KEYS 0
#endif

/* libopendkim's verdict on msg signed with value (key record from kp):
 * a DKP_RES_*, or -1 when the verifier refuses the whole message. */
static int verify_result(const struct keypair *kp, const struct idcase *id, const char *value,
                         const char *msg, size_t len)
{
    char name[512], *text = malloc(strlen(kp->record) + 600);
    snprintf(name, sizeof name, "%s._domainkey.%s", id->selector, id->domain);
    sprintf(text, "%s %s\n", name, kp->record);
    struct dkp_keyfile kf = {0};
    unsigned line;
    char err[256];
    assert_int_equal(dkp_keyfile_parse(text, strlen(text), &kf, &line, err, sizeof err), 0);
    struct dkp_verify_conf vc = {.keyfile = &kf, .max_sigs = 4, .min_key_bits = 1024};
    struct dkp_verify *v = dkp_verify_new(&vc, err, sizeof err);
    assert_non_null(v);
    char *signed_msg = malloc(strlen(value) + len + 32);
    int hl = sprintf(signed_msg, "DKIM-Signature: %s\r\n", value);
    memcpy(signed_msg + hl, msg, len);
    struct dkp_sigres *res = NULL;
    size_t n = 0, skipped = 0;
    int rc = -1;
    if (dkp_verify_message(v, signed_msg, (size_t)hl + len, NULL, 0, &res, &n, &skipped, err,
                           sizeof err) == 0 &&
        n >= 1)
        rc = (int)res[0].result;
    free(res);
    free(signed_msg);
    dkp_verify_free(v);
    dkp_keyfile_free(&kf);
    free(text);
    return rc;
}

static void check_verifies(const struct keypair *kp, const struct idcase *id, const char *value,
                           const char *msg, size_t len)
{
    int r = verify_result(kp, id, value, msg, len);
    if (r != DKP_RES_PASS)
        fail_msg("%s: new signature does not verify (%d): %s", kp->name, r, value);
}

/* Offset just after the "b=" of a DKIM-Signature value. */
static size_t b_tag_end(const char *v)
{
    const char *b = strstr(v, ";\r\n\tb=");
    if (!b)
        b = strstr(v, "; b=");
    assert_non_null(b);
    return (size_t)(strstr(b, "b=") - v) + 2;
}

/* got: the new signer's DKIM-Signature; want: libopendkim's, byte for byte
 * (or both refuse the message). */
static void test_same_as_libopendkim(void **state)
{
    (void)state;
    size_t compared = 0, refused = 0, verified = 0, ed_simple_fixed = 0;
    struct ref_lib refs[sizeof lists / sizeof lists[0]];
    for (size_t li = 0; li < sizeof lists / sizeof lists[0]; li++) {
        struct dkp_sign_conf lc = {.sign_headers = lists[li].sign,
                                   .oversign_headers = lists[li].over,
                                   .fixed_time = FIXED_TIME};
        ref_lib_open(&refs[li], &lc);
    }
    for (size_t mi = 0; mi < sizeof msgs / sizeof msgs[0]; mi++) {
        struct msgcase *mc = &msgs[mi];
        char *built = NULL;
        const char *msg = mc->text;
        size_t len = mc->len ? mc->len : msg ? strlen(msg) : 0;
        if (!msg)
            msg = built = build_msg(mc->name, &len);
        for (int canon = 0; canon < 4; canon++)
            for (size_t li = 0; li < sizeof lists / sizeof lists[0]; li++)
                for (size_t ki = 0; ki < 4; ki++) {
                    if (SAMPLE_KEYS && ki != (mi + (size_t)canon + li) % 4)
                        continue;
                    const struct idcase *id = &ids[(mi + li + ki) % 2];
                    const struct keypair *kp = &keys[ki];
                    struct dkp_sign_conf sc = {.header_relaxed = canon & 1,
                                               .body_relaxed = (canon >> 1) & 1,
                                               .sign_headers = lists[li].sign,
                                               .oversign_headers = lists[li].over,
                                               .fixed_time = FIXED_TIME};
                    char err[256] = "", *want = NULL, *got = NULL;
                    int wrc = ref_sign(&refs[li], &sc, id->domain, id->selector, kp->pem, kp->alg,
                                       msg, len, &want);
                    struct dkp_sign *s = dkp_sign_new(&sc, err, sizeof err);
                    assert_non_null(s);
                    int grc = dkp_sign_message(s, id->domain, id->selector, kp->pem, kp->alg, msg,
                                               len, &got, err, sizeof err);
                    /* libopendkim hashed an Ed25519 signature with b= folded
                     * differently from the b= it wrote; with simple header
                     * canonicalisation they never verified. Ours differ
                     * there in b= only, and verify (below). */
                    int ed_simple = kp->alg == DKP_ALG_ED25519_SHA256 && !sc.header_relaxed;
                    size_t cmp = ed_simple && wrc == 0 ? b_tag_end(want) : SIZE_MAX / 2;
                    if (wrc != grc || (wrc == 0 && strncmp(want, got, cmp) != 0))
                        fail_msg("message \"%s\", c=%s/%s, %s, %s:\n"
                                 "libopendkim (%d): %s\nours (%d): %s %s",
                                 mc->name, sc.header_relaxed ? "relaxed" : "simple",
                                 sc.body_relaxed ? "relaxed" : "simple", lists[li].name, kp->name,
                                 wrc, want ? want : "-", grc, got ? got : "-", err);
                    if (ed_simple && wrc == 0 && mc->verifies && li == 0) {
                        assert_int_not_equal(verify_result(kp, id, want, msg, len), DKP_RES_PASS);
                        ed_simple_fixed++;
                    }
                    if (grc == 0) {
                        compared++;
                        /* Verify a subset (each message, canonicalisation and key once). */
                        if (mc->verifies && li == 0) {
                            check_verifies(kp, id, got, msg, len);
                            verified++;
                        }
                    } else {
                        refused++;
                    }
                    free(want);
                    free(got);
                    dkp_sign_free(s);
                }
        free(built);
    }
    printf("  %zu signatures compared, %zu messages refused by both, %zu verified"
           " (%zu Ed25519 c=simple/* that libopendkim got wrong)\n",
           compared, refused, verified, ed_simple_fixed);
    for (size_t li = 0; li < sizeof lists / sizeof lists[0]; li++)
        ref_lib_close(&refs[li]);
    assert_true(compared > (SAMPLE_KEYS ? 250 : 1000));
}

/* A DKIM-Signature already in the message is not parsed: libopendkim
 * refused to sign when it was malformed; we sign, and it verifies. */
static void test_malformed_old_signature(void **state)
{
    (void)state;
    static const char msg[] = "DKIM-Signature: this is not a tag list\r\n" HDRS "\r\nx\r\n";
    struct dkp_sign_conf sc = {.header_relaxed = 1, .body_relaxed = 1, .fixed_time = FIXED_TIME};
    char err[256], *want = NULL, *got = NULL;
    struct ref_lib ref;
    ref_lib_open(&ref, &sc);
    assert_int_equal(ref_sign(&ref, &sc, "example.com", "sel", keys[3].pem, keys[3].alg, msg,
                              strlen(msg), &want),
                     -1);
    ref_lib_close(&ref);
    struct dkp_sign *s = dkp_sign_new(&sc, err, sizeof err);
    assert_int_equal(dkp_sign_message(s, "example.com", "sel", keys[3].pem, keys[3].alg, msg,
                                      strlen(msg), &got, err, sizeof err),
                     0);
    /* libopendkim's verifier refuses the message as a whole too; our
     * signature does not cover that field, so verify without it. */
    const char *rest = strstr(msg, "\r\n") + 2;
    check_verifies(&keys[3], &ids[0], got, rest, strlen(rest));
    free(got);
    dkp_sign_free(s);
}

static char *sign1(struct dkp_sign *s, const char *pem, enum dkp_alg alg, const char *msg)
{
    char err[256], *v = NULL;
    if (dkp_sign_message(s, "example.com", "sel", pem, alg, msg, strlen(msg), &v, err,
                         sizeof err) != 0)
        fail_msg("sign: %s", err);
    return v;
}

/* The key cache: one signer, keys alternating, a changed key text under
 * the same selector, more keys than the cache holds, a bad key. */
static void test_key_cache(void **state)
{
    (void)state;
    static const char msg[] = HDRS "\r\nx\r\n";
    struct dkp_sign_conf sc = {.header_relaxed = 1, .body_relaxed = 1, .fixed_time = FIXED_TIME};
    char err[256];
    struct dkp_sign *s = dkp_sign_new(&sc, err, sizeof err);
    char *first[4];

    for (int round = 0; round < 3; round++)
        for (size_t k = 0; k < 4; k++) {
            char *v = sign1(s, keys[k].pem, keys[k].alg, msg);
            if (round == 0) {
                first[k] = v;
                check_verifies(&keys[k], &ids[0], v, msg, strlen(msg));
            } else {
                assert_string_equal(v, first[k]);
                free(v);
            }
        }
    /* 70 distinct Ed25519 keys through a 64-entry cache, twice: each
     * signature verifies with its own key, evicted ones are parsed again. */
    struct keypair many[70];
    for (size_t i = 0; i < 70; i++) {
        many[i].name = "ed25519 (many)";
        make_key(&many[i], EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), 0);
    }
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < 70; i += round ? 7 : 1) {
            char *v = sign1(s, many[i].pem, many[i].alg, msg);
            check_verifies(&many[i], &ids[0], v, msg, strlen(msg));
            free(v);
        }
    for (size_t i = 0; i < 70; i++) {
        free(many[i].pem);
        free(many[i].record);
    }
    /* The first keys still sign as before. */
    for (size_t k = 0; k < 4; k++) {
        char *v = sign1(s, keys[k].pem, keys[k].alg, msg);
        assert_string_equal(v, first[k]);
        free(v);
        free(first[k]);
    }
    /* Bad key text, wrong key type: refused with a message. */
    char *v = NULL;
    assert_int_equal(
        dkp_sign_message(s, "example.com", "sel",
                         "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
                         DKP_ALG_RSA_SHA256, msg, strlen(msg), &v, err, sizeof err),
        -1);
    assert_null(v);
    assert_int_equal(dkp_sign_message(s, "example.com", "sel", keys[3].pem, DKP_ALG_RSA_SHA256, msg,
                                      strlen(msg), &v, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "rsa-sha256"));
    dkp_sign_free(s);
}

struct thread_job {
    struct dkp_sign *s;
    const struct keypair *kp;
    const char *want;
    int bad;
};

static void *thread_main(void *arg)
{
    struct thread_job *j = arg;
    static const char msg[] = HDRS "\r\nthreads\r\n";
    for (int i = 0; i < 40; i++) {
        char err[256], *v = NULL;
        if (dkp_sign_message(j->s, "example.com", "sel", j->kp->pem, j->kp->alg, msg, strlen(msg),
                             &v, err, sizeof err) != 0 ||
            strcmp(v, j->want) != 0)
            j->bad++;
        free(v);
    }
    return NULL;
}

/* Four threads share one signer (as the pool threads do), two keys each
 * time first used concurrently: every signature is the expected one. */
static void test_threads(void **state)
{
    (void)state;
    static const char msg[] = HDRS "\r\nthreads\r\n";
    struct dkp_sign_conf sc = {.header_relaxed = 1, .body_relaxed = 1, .fixed_time = FIXED_TIME};
    char err[256];
    struct dkp_sign *ref = dkp_sign_new(&sc, err, sizeof err);
    char *want[2] = {sign1(ref, keys[0].pem, keys[0].alg, msg),
                     sign1(ref, keys[3].pem, keys[3].alg, msg)};
    dkp_sign_free(ref);

    struct dkp_sign *s = dkp_sign_new(&sc, err, sizeof err);
    pthread_t t[4];
    struct thread_job j[4];
    for (int i = 0; i < 4; i++) {
        j[i] = (struct thread_job){.s = s, .kp = &keys[i % 2 ? 3 : 0], .want = want[i % 2]};
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, &j[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(j[i].bad, 0);
    }
    dkp_sign_free(s);
    free(want[0]);
    free(want[1]);
}

/* Sign lists libopendkim refused (regex longer than its buffer) are
 * refused at dkp_sign_new. */
static void test_sign_list_limits(void **state)
{
    (void)state;
    const char *many[200];
    char names[199][16];
    for (int i = 0; i < 199; i++) {
        snprintf(names[i], sizeof names[i], "x-header-%03d", i);
        many[i] = names[i];
    }
    many[199] = NULL;
    struct dkp_sign_conf sc = {.sign_headers = many};
    char err[256];
    assert_null(dkp_sign_new(&sc, err, sizeof err));
    many[60] = NULL;
    struct dkp_sign *s = dkp_sign_new(&sc, err, sizeof err);
    assert_non_null(s);
    dkp_sign_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_libopendkim), cmocka_unit_test(test_malformed_old_signature),
        cmocka_unit_test(test_key_cache),           cmocka_unit_test(test_threads),
        cmocka_unit_test(test_sign_list_limits),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
