/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * gl_key: what the greylist plugin remembers a delivery attempt by, and
 * what it stores about it.
 *
 * The triplet is the client's network (IPv4 /24, IPv6 /64 by default: big
 * senders retry from another address of the same pool), the envelope
 * sender and the recipient, both lower-cased (the null sender is "<>").
 * The stored value is "w:MS" (first seen at MS, wall clock milliseconds,
 * waiting for the delay to pass) or "p" (passed: let through until the
 * entry expires).
 *
 * Pure: no I/O, no globals, any thread.
 */
#ifndef GL_KEY_H
#define GL_KEY_H

#include <stddef.h>
#include <stdint.h>

#define GL_KEY_MAX 900 /* two addresses of 320 octets and a network */

/* The client's network as text ("192.0.2.0/24", "2001:db8:1:2::/64"; an
 * IPv4-mapped address as IPv4). 0, or -1 (not an address, too long). */
int gl_net(const char *addr, unsigned v4_prefix, unsigned v6_prefix, char *out, size_t n);

/* "t:NET:SENDER:RCPT". 0, or -1 (too long, empty recipient). */
int gl_triplet_key(const char *net, const char *sender, const char *rcpt, char *out, size_t n);

enum gl_state { GL_NEW, GL_WAITING, GL_PASSED };

/* What a stored value says (len bytes); *since_ms: when a waiting triplet
 * was first seen. An unreadable value counts as new. */
enum gl_state gl_parse_value(const char *v, size_t len, uint64_t *since_ms);

#endif
