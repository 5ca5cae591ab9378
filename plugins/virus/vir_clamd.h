/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_clamd: the clamd backend. Sends the message with INSTREAM
 * ("zINSTREAM\0", then chunks of <4-byte big-endian length><bytes>, then a
 * zero-length chunk) and reads one NUL-terminated reply:
 *
 *   "stream: OK"                          -> VIR_CLEAN
 *   "stream: NAME FOUND"                  -> VIR_VIRUS NAME
 *   "INSTREAM size limit exceeded. ERROR" -> VIR_LIMIT StreamMaxLength
 *   "... ERROR", anything else            -> VIR_ERROR
 *
 * Blocking (the plugin calls it on a pool thread), every wait bounded by
 * poll() against one deadline. A fresh connection per scan: clamd closes
 * INSTREAM connections after the reply unless IDSESSION is used, and a new
 * connection per message keeps failures independent.
 *
 * Framing and reply parsing are pure functions (tested on their own); the
 * exchange over an already connected fd is separate from connecting, so
 * the tests can run it against a fake server on a socketpair.
 */
#ifndef VIR_CLAMD_H
#define VIR_CLAMD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "vir_result.h"

struct vir_clamd_addr {
    struct sockaddr_storage sa;
    socklen_t salen;
    char text[128]; /* for logs */
};

/* "unix:/abs/path", "127.0.0.1:3310", "[::1]:3310" (numeric only: no DNS
 * on a pool thread). 0, or -1 with *why set. */
int vir_clamd_parse_addr(const char *s, struct vir_clamd_addr *out, const char **why);

/* Chunk header for a chunk of len bytes. */
void vir_clamd_chunk_header(uint32_t len, unsigned char out[4]);

/* Parse one reply (without its terminating NUL / newline; a trailing one
 * is tolerated). */
void vir_clamd_parse_reply(const char *reply, size_t len, struct vir_result *out);

/* Largest chunk sent (clamd's default StreamMaxLength is 25M; the chunk
 * size only bounds one write). */
#define VIR_CLAMD_CHUNK (64u * 1024u)

/* The INSTREAM exchange on a connected stream socket fd (blocking or not;
 * it is made non-blocking). deadline_ms is CLOCK_MONOTONIC time in ms. */
void vir_clamd_exchange(int fd, const void *data, size_t len, uint64_t deadline_ms,
                        struct vir_result *out);

/* Connect (bounded by connect_timeout_ms), exchange (bounded by
 * timeout_ms from the start), close. */
void vir_clamd_scan(const struct vir_clamd_addr *addr, const void *data, size_t len,
                    uint32_t connect_timeout_ms, uint32_t timeout_ms, struct vir_result *out);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t vir_clamd_now_ms(void);

#endif
