/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the libopendkim glue (dkp_sign, dkp_verify, dkp_key):
 * keys are generated in memory at test time, public records go through a
 * dkp_keyfile, and the clock is fixed so signatures are byte-identical.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dkim.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkp_key.h"
#include "dkp_keyfile.h"
#include "dkp_sign.h"
#include "dkp_verify.h"

#define FIXED_TIME 1700000000ull

struct keypair {
    char *pem;    /* private key PEM */
    char *record; /* TXT record text */
};

static struct keypair rsa2048, rsa2048b, rsa512, ed;
static char tmpdir[] = "/tmp/dkp-test-XXXXXX";

static char *b64(const unsigned char *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

static void make_key(struct keypair *kp, const char *type, size_t bits)
{
    EVP_PKEY *k = bits ? EVP_PKEY_Q_keygen(NULL, NULL, type, bits)
                       : EVP_PKEY_Q_keygen(NULL, NULL, type);
    assert_non_null(k);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    kp->pem = strndup(data, (size_t)n);
    BIO_free(b);

    char *p;
    if (!strcmp(type, "ED25519")) {
        unsigned char raw[32];
        size_t rl = sizeof raw;
        assert_int_equal(EVP_PKEY_get_raw_public_key(k, raw, &rl), 1);
        p = b64(raw, rl);
        kp->record = malloc(strlen(p) + 64);
        sprintf(kp->record, "v=DKIM1; k=ed25519; p=%s", p);
    } else {
        unsigned char *der = NULL;
        int dl = i2d_PUBKEY(k, &der);
        assert_true(dl > 0);
        p = b64(der, (size_t)dl);
        OPENSSL_free(der);
        kp->record = malloc(strlen(p) + 64);
        sprintf(kp->record, "v=DKIM1; k=rsa; p=%s", p);
    }
    free(p);
    EVP_PKEY_free(k);
}

static int group_setup(void **state)
{
    (void)state;
    make_key(&rsa2048, "RSA", 2048);
    make_key(&rsa2048b, "RSA", 2048);
    make_key(&rsa512, "RSA", 512);
    make_key(&ed, "ED25519", 0);
    if (!mkdtemp(tmpdir))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    struct keypair *all[] = {&rsa2048, &rsa2048b, &rsa512, &ed};
    for (size_t i = 0; i < 4; i++) {
        free(all[i]->pem);
        free(all[i]->record);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char MSG[] =
    "From: Ann Example <ann@example.com>\r\n"
    "To: bob@example.net\r\n"
    "Subject: hello\r\n"
    "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    "Message-ID: <1@example.com>\r\n"
    "\r\n"
    "Hello Bob,\r\n"
    "\r\n"
    "this is a test.\r\n";

/* msg with "DKIM-Signature: value" prepended; caller frees. */
static char *with_sig(const char *value, const char *msg)
{
    char *out = malloc(strlen(value) + strlen(msg) + 32);
    sprintf(out, "DKIM-Signature: %s\r\n%s", value, msg);
    return out;
}

static char *sign(const char *domain, const char *sel, const struct keypair *kp,
                  enum dkp_alg alg, const char *msg)
{
    struct dkp_sign_conf sc = {.header_relaxed = 1, .body_relaxed = 1, .fixed_time = FIXED_TIME};
    char err[256];
    char *value = NULL;
    struct dkp_sign *s = dkp_sign_new(&sc, err, sizeof err);
    assert_non_null(s);
    int rc = dkp_sign_message(s, domain, sel, kp->pem, alg, msg, strlen(msg), &value, err,
                              sizeof err);
    if (rc != 0)
        fail_msg("sign: %s", err);
    dkp_sign_free(s);
    return value;
}

/* Sign with libopendkim directly: for what our signer refuses (rsa-sha1,
 * keys under 1024 bits). Returns the header value; caller frees. */
static char *sign_raw(const struct keypair *kp, dkim_alg_t alg, unsigned minbits, const char *msg)
{
    DKIM_LIB *lib = dkim_init(NULL, NULL);
    DKIM_STAT st;
    assert_int_equal(dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits,
                                  sizeof minbits), DKIM_STAT_OK);
    DKIM *d = dkim_sign(lib, (const unsigned char *)"t", NULL, (dkim_sigkey_t)kp->pem,
                        (const unsigned char *)"sel", (const unsigned char *)"example.com",
                        DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, alg, -1, &st);
    assert_non_null(d);
    assert_int_equal(dkim_chunk(d, (unsigned char *)msg, strlen(msg)), DKIM_STAT_OK);
    assert_int_equal(dkim_chunk(d, NULL, 0), DKIM_STAT_OK);
    assert_int_equal(dkim_eom(d, NULL), DKIM_STAT_OK);
    unsigned char *hdr;
    size_t hl;
    assert_int_equal(dkim_getsighdr_d(d, 16, &hdr, &hl), DKIM_STAT_OK);
    char *out = strndup((const char *)hdr, hl);
    dkim_free(d);
    dkim_close(lib);
    return out;
}

/* Verify msg against a key file text (NULL: the prefetched keys[0..nkeys)
 * instead), evaluating at most max_sigs signatures; results into res/n. */
static void verify_with(const char *keyfile_text, const struct dkp_verify_key *keys, size_t nkeys,
                        unsigned max_sigs, const char *msg, struct dkp_sigres **res, size_t *n,
                        size_t *skipped)
{
    struct dkp_keyfile kf = {0};
    unsigned line;
    char err[256];
    if (keyfile_text)
        assert_int_equal(
            dkp_keyfile_parse(keyfile_text, strlen(keyfile_text), &kf, &line, err, sizeof err), 0);
    struct dkp_verify_conf vc = {
        .keyfile = keyfile_text ? &kf : NULL, .max_sigs = max_sigs, .min_key_bits = 1024};
    struct dkp_verify *v = dkp_verify_new(&vc, err, sizeof err);
    assert_non_null(v);
    int rc = dkp_verify_message(v, msg, strlen(msg), keys, nkeys, res, n, skipped, err, sizeof err);
    if (rc != 0)
        fail_msg("verify: %s", err);
    dkp_verify_free(v);
    if (keyfile_text)
        dkp_keyfile_free(&kf);
}

static void verify(const char *keyfile_text, const char *msg, struct dkp_sigres **res, size_t *n)
{
    size_t skipped;
    verify_with(keyfile_text, NULL, 0, DKP_VERIFY_MAX_SIGS, msg, res, n, &skipped);
    assert_int_equal(skipped, 0);
}

static char *keyline(const char *name, const char *record)
{
    char *out = malloc(strlen(name) + strlen(record) + 4);
    sprintf(out, "%s %s\n", name, record);
    return out;
}

static void test_sign_deterministic(void **state)
{
    (void)state;
    /* got: two signatures of the same message at a fixed time; want: identical bytes */
    for (int alg = 0; alg < 2; alg++) {
        const struct keypair *kp = alg ? &ed : &rsa2048;
        char *a = sign("example.com", "sel", kp, (enum dkp_alg)alg, MSG);
        char *b = sign("example.com", "sel", kp, (enum dkp_alg)alg, MSG);
        assert_string_equal(a, b);
        assert_non_null(strstr(a, alg ? "a=ed25519-sha256" : "a=rsa-sha256"));
        assert_non_null(strstr(a, "c=relaxed/relaxed"));
        assert_non_null(strstr(a, "d=example.com"));
        assert_non_null(strstr(a, "s=sel"));
        assert_non_null(strstr(a, "t=1700000000"));
        assert_null(strstr(a, "l="));
        free(a);
        free(b);
    }
}

static void test_sign_oversigns(void **state)
{
    (void)state;
    char *v = sign("example.com", "sel", &rsa2048, DKP_ALG_RSA_SHA256, MSG);
    /* unfold the h= list and count names */
    char flat[4096];
    size_t w = 0;
    for (const char *p = v; *p && w + 1 < sizeof flat; p++)
        if (*p != '\r' && *p != '\n' && *p != '\t' && *p != ' ')
            flat[w++] = *p;
    flat[w] = '\0';
    char *h = strstr(flat, ";h=");
    assert_non_null(h);
    char *end = strchr(h + 3, ';');
    assert_non_null(end);
    *end = '\0';
    struct {
        const char *name;
        int want;
    } cases[] = {
        {"from", 2}, {"to", 2}, {"subject", 2}, {"date", 2}, {"message-id", 2}, {"cc", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = 0;
        for (char *tok = strtok(h + 3, ":"); tok; tok = strtok(NULL, ":"))
            if (!strcasecmp(tok, cases[i].name))
                got++;
        /* strtok modified the list: restore the separators */
        for (char *p = h + 3; p < end; p++)
            if (*p == '\0')
                *p = ':';
        if (got != cases[i].want)
            fail_msg("%s in h=: got %d, want %d (%s)", cases[i].name, got, cases[i].want, h);
    }
    free(v);
}

struct vcase {
    const char *what;
    const struct keypair *kp;
    enum dkp_alg alg;
    const char *record_override; /* NULL = the key's record */
    int tamper;                  /* 0 none, 1 body, 2 header */
    enum dkp_result want;
    const char *want_reason;     /* substring, or NULL */
};

static void test_verify_table(void **state)
{
    (void)state;
    const struct vcase cases[] = {
        {"rsa pass", &rsa2048, DKP_ALG_RSA_SHA256, NULL, 0, DKP_RES_PASS, NULL},
        {"ed25519 pass", &ed, DKP_ALG_ED25519_SHA256, NULL, 0, DKP_RES_PASS, NULL},
        {"rsa body tampered", &rsa2048, DKP_ALG_RSA_SHA256, NULL, 1, DKP_RES_FAIL, "body hash"},
        {"rsa header tampered", &rsa2048, DKP_ALG_RSA_SHA256, NULL, 2, DKP_RES_FAIL,
         "signature did not verify"},
        {"ed25519 body tampered", &ed, DKP_ALG_ED25519_SHA256, NULL, 1, DKP_RES_FAIL, "body hash"},
        {"missing key", &rsa2048, DKP_ALG_RSA_SHA256, "", 0, DKP_RES_PERMERROR, "no key"},
        {"malformed key record", &rsa2048, DKP_ALG_RSA_SHA256, "v=DKIM1; k=rsa; p=@@@notbase64",
         0, DKP_RES_PERMERROR, NULL},
        {"key record garbage", &rsa2048, DKP_ALG_RSA_SHA256, "this is not a key", 0,
         DKP_RES_PERMERROR, NULL},
        {"revoked key", &rsa2048, DKP_ALG_RSA_SHA256, "v=DKIM1; k=rsa; p=", 0, DKP_RES_PERMERROR,
         NULL},
        {"ed25519 key for rsa signature", &rsa2048, DKP_ALG_RSA_SHA256, NULL /* below */, 3,
         DKP_RES_PERMERROR, "key record"},
        {"another rsa key", &rsa2048, DKP_ALG_RSA_SHA256, NULL /* below */, 4, DKP_RES_FAIL,
         "signature did not verify"},
        {"short rsa key", &rsa512, DKP_ALG_RSA_SHA256, NULL, 0, DKP_RES_POLICY, "small"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct vcase *c = &cases[i];
        char *value = c->kp == &rsa512 ? sign_raw(c->kp, DKIM_SIGN_RSASHA256, 512, MSG)
                                       : sign("example.com", "sel", c->kp, c->alg, MSG);
        char *msg = with_sig(value, MSG);
        if (c->tamper == 1) {
            char *p = strstr(msg, "this is a test");
            p[0] = 'T';
        } else if (c->tamper == 2) {
            char *p = strstr(msg, "Subject: hello");
            p[9] = 'H';
        }
        const char *rec = c->record_override ? c->record_override : c->kp->record;
        if (c->tamper == 3)
            rec = ed.record; /* an Ed25519 key for an RSA signature */
        if (c->tamper == 4)
            rec = rsa2048b.record;
        char *kf = *rec ? keyline("sel._domainkey.example.com", rec)
                        : keyline("other._domainkey.example.com", c->kp->record);
        struct dkp_sigres *res;
        size_t n;
        verify(kf, msg, &res, &n);
        if (n != 1)
            fail_msg("%s: got %zu results, want 1", c->what, n);
        if (res[0].result != c->want)
            fail_msg("%s: got %s (%s), want %s", c->what, dkp_ar_result_name(res[0].result),
                     res[0].reason, dkp_ar_result_name(c->want));
        if (c->want_reason && !strstr(res[0].reason, c->want_reason))
            fail_msg("%s: reason \"%s\" lacks \"%s\"", c->what, res[0].reason, c->want_reason);
        assert_string_equal(res[0].domain, "example.com");
        assert_string_equal(res[0].selector, "sel");
        assert_int_equal(strlen(res[0].b), 8);
        free(res);
        free(kf);
        free(msg);
        free(value);
    }
}

static void test_verify_unsigned(void **state)
{
    (void)state;
    struct dkp_sigres *res = (void *)1;
    size_t n = 99;
    verify("", MSG, &res, &n);
    assert_int_equal(n, 0);
    assert_null(res);
}

static void test_verify_dual(void **state)
{
    (void)state;
    /* RFC 8463 dual signing: one RSA, one Ed25519 signature, both pass;
     * a third from another domain without a key gives permerror. */
    char *v1 = sign("example.com", "rsa", &rsa2048, DKP_ALG_RSA_SHA256, MSG);
    char *v2 = sign("example.com", "ed", &ed, DKP_ALG_ED25519_SHA256, MSG);
    char *v3 = sign("other.example", "x", &rsa2048, DKP_ALG_RSA_SHA256, MSG);
    char *m1 = with_sig(v3, MSG);
    char *m2 = with_sig(v2, m1);
    char *m3 = with_sig(v1, m2);
    char kf[8192];
    snprintf(kf, sizeof kf, "rsa._domainkey.example.com %s\ned._domainkey.example.com %s\n",
             rsa2048.record, ed.record);
    struct dkp_sigres *res;
    size_t n;
    verify(kf, m3, &res, &n);
    assert_int_equal(n, 3);
    struct {
        const char *d, *s;
        enum dkp_result want;
    } want[] = {
        {"example.com", "rsa", DKP_RES_PASS},
        {"example.com", "ed", DKP_RES_PASS},
        {"other.example", "x", DKP_RES_PERMERROR},
    };
    for (size_t i = 0; i < 3; i++) {
        int found = 0;
        for (size_t k = 0; k < n; k++) {
            if (!strcmp(res[k].domain, want[i].d) && !strcmp(res[k].selector, want[i].s)) {
                found = 1;
                if (res[k].result != want[i].want)
                    fail_msg("%s/%s: got %s, want %s", want[i].d, want[i].s,
                             dkp_ar_result_name(res[k].result), dkp_ar_result_name(want[i].want));
            }
        }
        assert_true(found);
    }
    free(res);
    free(m1);
    free(m2);
    free(m3);
    free(v1);
    free(v2);
    free(v3);
}

/* rsa-sha1 is signed with libopendkim directly (our signer refuses it). */
static void test_verify_sha1_policy(void **state)
{
    (void)state;
    char *value = sign_raw(&rsa2048, DKIM_SIGN_RSASHA1, 1024, MSG);
    char *msg = with_sig(value, MSG);
    free(value);
    char *kf = keyline("sel._domainkey.example.com", rsa2048.record);
    struct dkp_sigres *res;
    size_t n;
    verify(kf, msg, &res, &n);
    assert_int_equal(n, 1);
    assert_int_equal(res[0].result, DKP_RES_POLICY);
    assert_non_null(strstr(res[0].reason, "rsa-sha1"));
    free(res);
    free(kf);
    free(msg);
}

static char *write_file(const char *name, const char *text, mode_t mode)
{
    char *path = malloc(strlen(tmpdir) + strlen(name) + 2);
    sprintf(path, "%s/%s", tmpdir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
    return path;
}

static void test_key_load(void **state)
{
    (void)state;
    struct {
        const char *what;
        const char *text;
        mode_t mode;
        enum dkp_alg alg;
        int want_rc;
        const char *want_err;
    } cases[] = {
        {"rsa ok", rsa2048.pem, 0600, DKP_ALG_RSA_SHA256, 0, NULL},
        {"ed25519 ok", ed.pem, 0400, DKP_ALG_ED25519_SHA256, 0, NULL},
        {"group readable", rsa2048.pem, 0640, DKP_ALG_RSA_SHA256, -1, "group or others"},
        {"world readable", ed.pem, 0604, DKP_ALG_ED25519_SHA256, -1, "group or others"},
        {"bad pem", "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", 0600,
         DKP_ALG_RSA_SHA256, -1, "PEM"},
        {"type mismatch", ed.pem, 0600, DKP_ALG_RSA_SHA256, -1, "Ed25519"},
        {"type mismatch 2", rsa2048.pem, 0600, DKP_ALG_ED25519_SHA256, -1, "RSA"},
        {"too small", rsa512.pem, 0600, DKP_ALG_RSA_SHA256, -1, "too small"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = write_file("k.pem", cases[i].text, cases[i].mode);
        char *pem = NULL, err[256] = "";
        unsigned bits = 0;
        int rc = dkp_key_load(path, cases[i].alg, &pem, &bits, err, sizeof err);
        if (rc != cases[i].want_rc)
            fail_msg("%s: got rc %d (%s), want %d", cases[i].what, rc, err, cases[i].want_rc);
        if (cases[i].want_err && !strstr(err, cases[i].want_err))
            fail_msg("%s: error \"%s\" lacks \"%s\"", cases[i].what, err, cases[i].want_err);
        if (rc == 0)
            assert_true(bits == 2048 || bits == 256);
        free(pem);
        unlink(path);
        free(path);
    }
    char *pem = NULL, err[256];
    unsigned bits;
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope.pem", tmpdir);
    assert_int_equal(dkp_key_load(missing, DKP_ALG_RSA_SHA256, &pem, &bits, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
}

static void test_from_domain(void **state)
{
    (void)state;
    struct {
        const char *in, *want; /* want NULL: -1 */
    } cases[] = {
        {"Ann <ann@Example.COM>", "example.com"},
        {"ann@example.org", "example.org"},
        {"\"Doe, John\" <john@example.net>", "example.net"},
        {"(comment) bob@sub.example.com (x)", "sub.example.com"},
        {"a@one.example, b@two.example", "one.example"},
        {"undisclosed-recipients:;", NULL},
        {"", NULL},
        {"no-at-sign", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        int rc = dkp_sign_addr_domain(cases[i].in, out, sizeof out);
        if (cases[i].want == NULL) {
            if (rc != -1)
                fail_msg("%s: got %s, want none", cases[i].in, out);
        } else {
            if (rc != 0)
                fail_msg("%s: got none, want %s", cases[i].in, cases[i].want);
            assert_string_equal(out, cases[i].want);
        }
    }
}

/* Keys looked up beforehand (the plugin's DNS path): found, temporarily
 * failed, absent, and not looked up at all. */
static void test_verify_prefetched(void **state)
{
    (void)state;
    char *sig = sign("example.com", "sel", &rsa2048, DKP_ALG_RSA_SHA256, MSG);
    char *msg = with_sig(sig, MSG);
    struct {
        const char *what;
        struct dkp_verify_key key;
        size_t nkeys;
        enum dkp_result want;
    } cases[] = {
        {"found", {"sel._domainkey.example.com", DKP_KEY_FOUND, rsa2048.record}, 1, DKP_RES_PASS},
        {"found, other case",
         {"SEL._domainkey.Example.COM", DKP_KEY_FOUND, rsa2048.record},
         1,
         DKP_RES_PASS},
        {"timeout", {"sel._domainkey.example.com", DKP_KEY_TEMPFAIL, NULL}, 1, DKP_RES_TEMPERROR},
        {"nxdomain", {"sel._domainkey.example.com", DKP_KEY_NONE, NULL}, 1, DKP_RES_PERMERROR},
        {"not looked up", {"x", DKP_KEY_FOUND, NULL}, 0, DKP_RES_TEMPERROR},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dkp_sigres *res;
        size_t n, skipped;
        verify_with(NULL, &cases[i].key, cases[i].nkeys, 5, msg, &res, &n, &skipped);
        assert_int_equal(n, 1);
        if (res[0].result != cases[i].want)
            fail_msg("%s: got %s (%s), want %s", cases[i].what, dkp_ar_result_name(res[0].result),
                     res[0].reason, dkp_ar_result_name(cases[i].want));
        free(res);
    }
    free(msg);
    free(sig);
}

/* Eight signatures, max_sigs 5: five evaluated (all pass), three skipped
 * without a key lookup (only the first five names are known here: a lookup
 * of another would give temperror). */
static void test_verify_signature_cap(void **state)
{
    (void)state;
    char *msg = strdup(MSG);
    struct dkp_verify_key keys[8];
    for (int i = 7; i >= 0; i--) {
        char sel[16];
        snprintf(sel, sizeof sel, "s%d", i);
        char *sig = sign("example.com", sel, &rsa2048, DKP_ALG_RSA_SHA256, MSG);
        char *m = with_sig(sig, msg);
        free(msg);
        free(sig);
        msg = m;
        snprintf(keys[i].name, sizeof keys[i].name, "s%d._domainkey.example.com", i);
        keys[i].st = DKP_KEY_FOUND;
        keys[i].rec = rsa2048.record;
    }
    struct dkp_sigres *res;
    size_t n, skipped;
    verify_with(NULL, keys, 5, 5, msg, &res, &n, &skipped);
    assert_int_equal(n, 5);
    assert_int_equal(skipped, 3);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "s%zu", i);
        assert_string_equal(res[i].selector, want);
        if (res[i].result != DKP_RES_PASS)
            fail_msg("s%zu: got %s (%s)", i, dkp_ar_result_name(res[i].result), res[i].reason);
    }
    free(res);
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_prefetched),  cmocka_unit_test(test_verify_signature_cap),
        cmocka_unit_test(test_sign_deterministic), cmocka_unit_test(test_sign_oversigns),
        cmocka_unit_test(test_verify_table),       cmocka_unit_test(test_verify_unsigned),
        cmocka_unit_test(test_verify_dual),        cmocka_unit_test(test_verify_sha1_policy),
        cmocka_unit_test(test_key_load),           cmocka_unit_test(test_from_domain),
    };
    return cmocka_run_group_tests_name("dkim_engine", tests, group_setup, group_teardown);
}
