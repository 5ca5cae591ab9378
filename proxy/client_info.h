/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * client_info: the facts of one client connection that plugins may read
 * (through the host API) and that the upstream is told (XCLIENT). A plain
 * value type: the session owns the live copy and changes it only between
 * phases (HELO, TLS); each transaction keeps a snapshot of it. Threads:
 * a plain value, read from any thread while its owner is alive.
 */
#ifndef SLUICE_CLIENT_INFO_H
#define SLUICE_CLIENT_INFO_H

#include <stdbool.h>

struct client_info {
    char sid[24];
    char client_addr[64];
    int client_port;
    char client_name[256]; /* verified reverse name, "" if unknown */
    char helo[256];
    bool esmtp;
    char tls_version[32]; /* "" when no TLS */
    char tls_cipher[64];
    /* the client certificate, when the listener's tls_verify_client
     * policy verified one (tlssrv_peer); "" otherwise */
    char tls_peer_subject[256];
    char tls_peer_issuer[256];
    char tls_peer_fp[72]; /* "sha256:" + 64 hex */
    char auth_user[256]; /* "" (sluice does not offer AUTH itself) */
    char local_addr[64];
    int local_port;
    char listener[33]; /* the listener's name (cfg_listener), "default" for [server] listen */
};

#endif
