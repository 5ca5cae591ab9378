/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tlssrv: the server side of inbound TLS, per listener: the SSL_CTX set a
 * listener's policy (struct cfg_tls_policy) asks for, i.e. the default
 * certificate plus one context per tls_sni line chosen by the client's
 * server name, protocol floor, cipher lists, session cache and tickets, and
 * client certificates (CA and/or pinned fingerprints); and what a finished
 * handshake tells about the client (tlssrv_peer()).
 *
 * Ownership: tlssrv_ctx_new() returns the listener's default SSL_CTX with
 * one reference for the caller. Everything else (the SNI contexts, the
 * parsed policy) belongs to that context and is freed with its last
 * reference, so a handshake that started before a reload keeps what it
 * needs (an SSL holds a reference to the context it was made from).
 * Threads: contexts are built and used on the loop thread.
 */
#ifndef SLUICE_TLSSRV_H
#define SLUICE_TLSSRV_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "cfg.h"
#include "tlspol.h"

/*
 * The contexts for listener `l` (tls != none, with a certificate). On
 * error NULL, a message in err and in *line the configuration line of the
 * tls_sni entry that failed (0: the listener's own certificate or key).
 */
SSL_CTX *tlssrv_ctx_new(const struct cfg_listener *l, char *err, size_t errlen, int *line);

/* Session tickets survive a reload: the new context takes the running
 * one's ticket keys (both must be tlssrv contexts; a no-op when either
 * has tickets off). A restart makes new keys; they never leave the
 * process. */
void tlssrv_keep_ticket_keys(SSL_CTX *from, SSL_CTX *to);
/* A digest of everything in the listener's TLS policy but its certificate
 * files (the client CA file's contents included): equal digests, equal
 * behaviour. */
void tlssrv_policy_digest(const struct cfg_listener *l, unsigned char out[32]);

/* Check a cipher list at load time: tls13 false: "tls_ciphers" (each
 * name that adds ciphers must select at least one); true:
 * "tls_ciphersuites" (each must be a TLS 1.3 suite). 0 or -1 with err. */
int tlssrv_check_ciphers(const char *list, bool tls13, char *err, size_t errlen);

/* What a completed server handshake says about the client. */
struct tlssrv_peer {
    char sni[256];           /* the server name it sent, "" if none */
    bool cert;               /* it presented a certificate */
    bool verified;           /* ... that passed the listener's tls_verify_client policy */
    char subject[256];       /* RFC 2253, "" unless verified */
    char issuer[256];        /* "" unless verified */
    char fp[TLSPOL_FP_TEXT]; /* "sha256:<hex>" of any presented certificate, or "" */
};
void tlssrv_peer(SSL *ssl, struct tlssrv_peer *p);

#endif
