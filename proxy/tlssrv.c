/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tlssrv: a listener's server-side TLS contexts; see tlssrv.h.
 *
 * One SSL_CTX per certificate: the listener's own (the default, which the
 * session hands to conn_starttls_server) and one per tls_sni line. The
 * servername callback of the default context moves a handshake to the SNI
 * context its name selects (tlspol_sni_pick). Every context of a listener
 * is built by the same function from the same policy, because after
 * SSL_set_SSL_CTX() OpenSSL reads some settings (certificate, CA names,
 * verify store, ciphers) from the new context and others (protocol floor,
 * options, verify mode, session cache and ticket keys) from the one the SSL
 * was made from.
 *
 * Ownership: struct tlssrv (policy and SNI contexts) hangs off the default
 * context as ex_data with a free function, so it lives exactly as long as
 * the default context: the server's reference, and one per SSL made from
 * it (an SSL keeps its first context as its session context even after an
 * SNI switch). The SNI contexts carry a borrowed pointer to the same
 * struct for the verify callback.
 *
 * Sessions: a server cache (SSL_SESS_CACHE_SERVER, 20480 entries, 1 h) and,
 * unless tls_session_tickets = no, stateless tickets with the context's
 * keys, kept across reloads (tlssrv_keep_ticket_keys) and never written
 * anywhere. The session id context is a hash of the listener's name and
 * client-certificate policy: a session made under another policy (another
 * listener, or before a reload that changed the CA or the pinned
 * fingerprints) is never resumed, so resumption cannot skip a check.
 */
#include "tlssrv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "conn.h"
#include "xalloc.h"

#define TLSSRV__CACHE_SIZE 20480 /* OpenSSL's default, said out loud */
#define TLSSRV__CACHE_TIMEOUT 3600
#define TLSSRV__TICKET_KEYS 80 /* name, HMAC and AES keys */

struct tlssrv {
    int verify; /* enum cfg_tls_verify */
    bool has_ca;
    uint8_t (*fps)[TLSPOL_FP_LEN]; /* owned: pinned client certificates */
    size_t nfps;
    char **sni_host;   /* owned: the tls_sni patterns, in file order */
    SSL_CTX **sni_ctx; /* owned references */
    size_t nsni;
};

static int tlssrv__idx_owner = -1;  /* default context: struct tlssrv, freed with it */
static int tlssrv__idx_policy = -1; /* every context: the same pointer, borrowed */

static void tlssrv__free(struct tlssrv *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nsni; i++) {
        SSL_CTX_free(t->sni_ctx[i]);
        free(t->sni_host[i]);
    }
    free(t->sni_ctx);
    free(t->sni_host);
    free(t->fps);
    free(t);
}

static void tlssrv__ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                            void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    tlssrv__free(ptr);
}

static void tlssrv__indexes(void)
{
    if (tlssrv__idx_owner < 0)
        tlssrv__idx_owner = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tlssrv__ex_free);
    if (tlssrv__idx_policy < 0)
        tlssrv__idx_policy = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (tlssrv__idx_owner < 0 || tlssrv__idx_policy < 0)
        xalloc_die(0);
}

/* OpenSSL's reason for the oldest queued error, then clear the queue. */

/* ---- client certificates ------------------------------------------------ */

static bool tlssrv__fp(X509 *cert, uint8_t fp[TLSPOL_FP_LEN])
{
    unsigned len = 0;
    return X509_digest(cert, EVP_sha256(), fp, &len) == 1 && len == TLSPOL_FP_LEN;
}

/* A chain link's verdict under the listener's policy: without a CA file
 * the chain does not count (self-signed certificates are what pinning is
 * for), the pinned list then decides at the leaf. With `optional` nothing
 * fails the handshake: tlssrv_peer() says whether the certificate passed. */
static int tlssrv__verify_cb(int ok, X509_STORE_CTX *st)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(st, SSL_get_ex_data_X509_STORE_CTX_idx());
    const struct tlssrv *t =
        ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tlssrv__idx_policy) : NULL;
    if (!t)
        return ok;
    if (!t->has_ca)
        ok = 1;
    if (ok && t->nfps && X509_STORE_CTX_get_error_depth(st) == 0) {
        uint8_t fp[TLSPOL_FP_LEN];
        X509 *cert = X509_STORE_CTX_get_current_cert(st);
        if (!cert || !tlssrv__fp(cert, fp) || !tlspol_fp_in(fp, t->fps, t->nfps)) {
            X509_STORE_CTX_set_error(st, X509_V_ERR_CERT_REJECTED);
            ok = 0;
        }
    }
    return t->verify == CFG_TLS_VERIFY_OPTIONAL ? 1 : ok;
}

/* ---- SNI ------------------------------------------------------------------ */

static int tlssrv__servername_cb(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    const struct tlssrv *t = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    size_t i = tlspol_sni_pick((const char *const *)t->sni_host, t->nsni, host);
    if (i == SIZE_MAX)
        return SSL_TLSEXT_ERR_NOACK; /* the default certificate */
    if (SSL_set_SSL_CTX(ssl, t->sni_ctx[i]) != t->sni_ctx[i])
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

/* ---- contexts --------------------------------------------------------- */

/* The bytes of a file into a digest (a CA file: its path says nothing of
 * what it holds now). Unreadable: nothing added; the context build that
 * follows reports it. */
static void tlssrv__digest_file(EVP_MD_CTX *md, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    char buf[8192];
    size_t n, total = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0 && total < (64u << 20)) {
        EVP_DigestUpdate(md, buf, n);
        total += n;
    }
    fclose(f);
}

/* The session id context: the listener and its client-certificate policy,
 * the CA file's contents included, so that no session verified under an
 * earlier policy or CA resumes under a new one. */
static void tlssrv__sid_ctx(const struct cfg_listener *l, unsigned char out[32])
{
    const struct cfg_tls_policy *p = &l->tlsp;
    char buf[512];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned len = 0;
    if (!md)
        xalloc_die(0);
    int n = snprintf(buf, sizeof buf, "sluice|%s|%d|", l->name, p->verify_client);
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, buf, (size_t)n);
    if (p->client_ca_file) {
        EVP_DigestUpdate(md, p->client_ca_file, strlen(p->client_ca_file));
        tlssrv__digest_file(md, p->client_ca_file);
    }
    EVP_DigestUpdate(md, "|", 1);
    if (p->client_fingerprints)
        EVP_DigestUpdate(md, p->client_fingerprints, strlen(p->client_fingerprints));
    EVP_DigestFinal_ex(md, out, &len);
    EVP_MD_CTX_free(md);
}

void tlssrv_policy_digest(const struct cfg_listener *l, unsigned char out[32])
{
    const struct cfg_tls_policy *p = &l->tlsp;
    unsigned char sid[32];
    tlssrv__sid_ctx(l, sid);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned len = 0;
    if (!md)
        xalloc_die(0);
    char buf[64];
    int n =
        snprintf(buf, sizeof buf, "%d|%d|%zu|", p->min_protocol, (int)p->session_tickets, p->nsni);
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, sid, sizeof sid);
    EVP_DigestUpdate(md, buf, (size_t)n);
    const char *strs[] = {p->ciphers, p->ciphersuites};
    for (size_t i = 0; i < 2; i++) {
        if (strs[i])
            EVP_DigestUpdate(md, strs[i], strlen(strs[i]));
        EVP_DigestUpdate(md, "|", 1);
    }
    for (size_t i = 0; i < p->nsni; i++) {
        EVP_DigestUpdate(md, p->sni[i].host, strlen(p->sni[i].host));
        EVP_DigestUpdate(md, "|", 1);
    }
    EVP_DigestFinal_ex(md, out, &len);
    EVP_MD_CTX_free(md);
}

/* One context with the listener's whole policy and certificate `cert`. */
static SSL_CTX *tlssrv__ctx(const struct cfg_listener *l, struct tlssrv *t, const char *cert,
                            const char *key, char *err, size_t errlen)
{
    const struct cfg_tls_policy *p = &l->tlsp;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        conn_tls_err(err, errlen, "cannot create TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_ex_data(ctx, tlssrv__idx_policy, t);
    SSL_CTX_set_min_proto_version(ctx,
                                  p->min_protocol == CFG_TLS_V13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 (p->session_tickets ? 0 : SSL_OP_NO_TICKET));
    /* Idle connections should not keep 2 x 17 KiB of record buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (p->ciphers && SSL_CTX_set_cipher_list(ctx, p->ciphers) != 1) {
        conn_tls_err(err, errlen, "tls_ciphers", p->ciphers);
        goto fail;
    }
    if (p->ciphersuites && SSL_CTX_set_ciphersuites(ctx, p->ciphersuites) != 1) {
        conn_tls_err(err, errlen, "tls_ciphersuites", p->ciphersuites);
        goto fail;
    }
    if (conn_tls_use_cert(ctx, cert, key, err, errlen) != 0)
        goto fail;
    unsigned char sid[32];
    tlssrv__sid_ctx(l, sid);
    SSL_CTX_set_session_id_context(ctx, sid, sizeof sid);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, TLSSRV__CACHE_SIZE);
    SSL_CTX_set_timeout(ctx, TLSSRV__CACHE_TIMEOUT);
    if (p->verify_client == CFG_TLS_VERIFY_NO)
        return ctx;
    if (p->client_ca_file) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(p->client_ca_file);
        if (!names || SSL_CTX_load_verify_locations(ctx, p->client_ca_file, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            conn_tls_err(err, errlen, "cannot load client CA certificates", p->client_ca_file);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* takes them */
    }
    SSL_CTX_set_verify(
        ctx,
        SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE |
            (p->verify_client == CFG_TLS_VERIFY_REQUIRE ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        tlssrv__verify_cb);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *tlssrv_ctx_new(const struct cfg_listener *l, char *err, size_t errlen, int *line)
{
    const struct cfg_tls_policy *p = &l->tlsp;
    *line = 0;
    if (!l->tls_cert_file || !l->tls_key_file) {
        snprintf(err, errlen, "no certificate");
        return NULL;
    }
    tlssrv__indexes();
    ERR_clear_error();
    struct tlssrv *t = xcalloc(1, sizeof *t);
    t->verify = p->verify_client;
    t->has_ca = p->client_ca_file != NULL;
    if (p->verify_client != CFG_TLS_VERIFY_NO && p->client_fingerprints) {
        t->fps = xcalloc(TLSPOL_MAX_FPS, sizeof *t->fps);
        if (tlspol_fp_parse(p->client_fingerprints, t->fps, TLSPOL_MAX_FPS, &t->nfps, err,
                            errlen) != 0) {
            tlssrv__free(t);
            return NULL;
        }
    }
    SSL_CTX *ctx = tlssrv__ctx(l, t, l->tls_cert_file, l->tls_key_file, err, errlen);
    if (!ctx) {
        tlssrv__free(t);
        return NULL;
    }
    /* From here on the default context owns t. */
    SSL_CTX_set_ex_data(ctx, tlssrv__idx_owner, t);
    if (p->nsni) {
        t->sni_host = xcalloc(p->nsni, sizeof *t->sni_host);
        t->sni_ctx = xcalloc(p->nsni, sizeof *t->sni_ctx);
    }
    for (size_t i = 0; i < p->nsni; i++) {
        SSL_CTX *sc = tlssrv__ctx(l, t, p->sni[i].cert_file, p->sni[i].key_file, err, errlen);
        if (!sc) {
            *line = p->sni[i].line;
            SSL_CTX_free(ctx);
            return NULL;
        }
        t->sni_ctx[t->nsni] = sc;
        t->sni_host[t->nsni++] = xstrdup(p->sni[i].host); /* the cfg may go first */
    }
    if (t->nsni) {
        SSL_CTX_set_tlsext_servername_callback(ctx, tlssrv__servername_cb);
        SSL_CTX_set_tlsext_servername_arg(ctx, t);
    }
    return ctx;
}

void tlssrv_keep_ticket_keys(SSL_CTX *from, SSL_CTX *to)
{
    unsigned char keys[TLSSRV__TICKET_KEYS];
    if (!from || !to || from == to || (SSL_CTX_get_options(from) & SSL_OP_NO_TICKET) ||
        (SSL_CTX_get_options(to) & SSL_OP_NO_TICKET))
        return;
    if (SSL_CTX_get_tlsext_ticket_keys(from, keys, sizeof keys) == 1)
        SSL_CTX_set_tlsext_ticket_keys(to, keys, sizeof keys);
    OPENSSL_cleanse(keys, sizeof keys);
}

int tlssrv_check_ciphers(const char *list, bool tls13, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        conn_tls_err(err, errlen, "cannot create TLS context", NULL);
        return -1;
    }
    int rc = 0;
    ERR_clear_error();
    /* OpenSSL skips names it does not know as long as one is left: check
     * each name alone, then the whole list. Exclusions (!X, -X) and
     * reordering (+X, @STRENGTH) select nothing by themselves. */
    const char *seps = tls13 ? ":" : ":, ";
    for (const char *p = list; *p && rc == 0;) {
        p += strspn(p, seps);
        size_t n = strcspn(p, seps);
        if (n == 0)
            break;
        char tok[128];
        snprintf(tok, sizeof tok, "%.*s", (int)(n < sizeof tok ? n : sizeof tok - 1), p);
        p += n;
        if (!tls13 && strchr("!-+@", tok[0]))
            continue;
        int ok = tls13 ? SSL_CTX_set_ciphersuites(ctx, tok) : SSL_CTX_set_cipher_list(ctx, tok);
        if (ok != 1) {
            snprintf(err, errlen, "'%s' is not a %s", tok,
                     tls13 ? "TLS 1.3 cipher suite (e.g. TLS_AES_256_GCM_SHA384)"
                           : "cipher name or group that selects any cipher");
            rc = -1;
        }
    }
    if (rc == 0 &&
        (tls13 ? SSL_CTX_set_ciphersuites(ctx, list) : SSL_CTX_set_cipher_list(ctx, list)) != 1) {
        snprintf(err, errlen, "'%s' selects no cipher", list);
        rc = -1;
    }
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return rc;
}

/* Printable ASCII only: the name goes to log lines and milter macros. */
static void tlssrv__name(X509_NAME *name, char *out, size_t n)
{
    out[0] = 0;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        int len = BIO_read(b, out, (int)n - 1);
        out[len > 0 ? len : 0] = 0;
        for (char *c = out; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
                *c = '?';
    }
    BIO_free(b);
}

void tlssrv_peer(SSL *ssl, struct tlssrv_peer *p)
{
    memset(p, 0, sizeof *p);
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (sni)
        snprintf(p->sni, sizeof p->sni, "%s", sni);
    X509 *cert = SSL_get0_peer_certificate(ssl);
    uint8_t fp[TLSPOL_FP_LEN];
    if (!cert || !tlssrv__fp(cert, fp))
        return;
    p->cert = true;
    tlspol_fp_format(fp, p->fp);
    const struct tlssrv *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tlssrv__idx_policy);
    /* The same rule as the verify callback, for `optional` (which lets
     * any certificate through) and for resumed sessions alike. */
    p->verified = t && t->verify != CFG_TLS_VERIFY_NO &&
                  (!t->has_ca || SSL_get_verify_result(ssl) == X509_V_OK) &&
                  (!t->nfps || tlspol_fp_in(fp, t->fps, t->nfps));
    if (!p->verified)
        return;
    tlssrv__name(X509_get_subject_name(cert), p->subject, sizeof p->subject);
    tlssrv__name(X509_get_issuer_name(cert), p->issuer, sizeof p->issuer);
}
