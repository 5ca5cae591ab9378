/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rl_rules: the ratelimit plugin's rule file, the subjects rules count per,
 * and the sliding-window estimate.
 *
 * One rule per line (`#` starts a comment):
 *
 *   NAME          WHAT         PER            LIMIT  WINDOW
 *   conn_ip       connections  client_ip      60     1m
 *   msgs_sender   messages     sender         100    1h
 *   rcpts_domain  recipients   rcpt_domain    500    10m
 *   bytes_user    bytes        auth_user      200M   1d
 *
 * WHAT is counted when it happens: a connection when it is accepted, a
 * message at MAIL, a recipient at RCPT, bytes at the end of DATA (the
 * message's size). PER is whom it is counted for: the client address
 * (IPv6 addresses by their prefix, ipv6_prefix), the authenticated user
 * (sessions without one are not counted), the envelope sender or its
 * domain (the null sender is not counted), the recipient's domain
 * (recipients only). A refused event is taken back (the plugin adds it,
 * then subtracts it again when a rule refuses it), so a client that retries
 * gets through as soon as the window allows.
 *
 * The window slides: the count is the current fixed bucket's plus the
 * previous bucket's weighted by how much of it the sliding window still
 * covers (the "sliding window counter"). Two counters a rule and subject,
 * no per-event log, and no burst of twice the limit at a bucket's edge as
 * with plain fixed windows; exact enough for mail (it assumes events were
 * spread evenly over the previous bucket).
 *
 * Pure: no I/O, no globals, any thread.
 */
#ifndef RL_RULES_H
#define RL_RULES_H

#include <stddef.h>
#include <stdint.h>

#define RL_MAX_RULES 64
#define RL_NAME_MAX 40
#define RL_SUBJECT_MAX 400 /* an address is at most 64 + 1 + 255 octets */

enum rl_what { RL_CONNECTIONS, RL_MESSAGES, RL_RECIPIENTS, RL_BYTES };
enum rl_per { RL_CLIENT_IP, RL_AUTH_USER, RL_SENDER, RL_SENDER_DOMAIN, RL_RCPT_DOMAIN };

struct rl_rule {
    char name[RL_NAME_MAX + 1];
    enum rl_what what;
    enum rl_per per;
    uint64_t limit;
    uint64_t window_ms;
    unsigned line;
};

struct rl_rules {
    struct rl_rule v[RL_MAX_RULES];
    size_t n;
};

typedef void (*rl_err_fn)(void *arg, const char *msg);

/* Parse text (len bytes; file names the errors "FILE:LINE: ..."). Every
 * error goes to err; returns how many there were (0: out is complete). */
int rl_rules_parse(const char *text, size_t len, const char *file, struct rl_rules *out,
                   rl_err_fn err, void *arg);

const char *rl_what_name(enum rl_what w);
const char *rl_per_name(enum rl_per p);

/* The subject a rule counts per, from the session's value: an address (an
 * IPv6 one cut to its /v6_prefix network, "2001:db8:1::/48"), a user name,
 * a sender address (lower-cased), a domain (the part after the last '@',
 * lower-cased). 0, or -1 when there is nothing to count per (empty value,
 * no domain, too long). */
int rl_subject(enum rl_per per, const char *value, unsigned v6_prefix, char *out, size_t n);

/* The sliding window's count at now_ms: cur counted in the bucket now_ms
 * falls in, prev in the one before. */
uint64_t rl_estimate(uint64_t cur, uint64_t prev, uint64_t now_ms, uint64_t window_ms);

#endif
