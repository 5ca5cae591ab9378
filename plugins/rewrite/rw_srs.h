/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rw_srs: Sender Rewriting Scheme for forwarded mail, in the standard
 * form libsrs2 and postsrsd write, so that bounces can be reversed by any
 * of them and their addresses by us.
 *
 * A forwarder that keeps the original MAIL FROM fails the SPF check of the
 * original domain at the next hop. SRS rewrites the sender into an address
 * of the forwarder's domain that encodes the original one, so that bounces
 * come back to the forwarder, which decodes them:
 *
 *   alice@example.org  ->  SRS0=HHHH=TT=example.org=alice@fwd.example
 *
 * TT: the day (days since the epoch, modulo 1024) in two base32 letters
 * (A-Z 2-7, most significant first). HHHH: the first 4 characters of the
 * base64 of HMAC-SHA1(secret, lower(TT domain local)), the three strings
 * concatenated without separators. The character after SRS0 (and SRS1) is
 * the configurable separator ('=', '+' or '-'); the later ones are '='.
 *
 * An SRS0 (or SRS1) address of another forwarder is not wrapped again but
 * shortened into SRS1, which points at the first forwarder:
 *
 *   SRS0=HHHH=TT=example.org=alice@fwd1.example
 *     ->  SRS1=GGGG=fwd1.example==HHHH=TT=example.org=alice@fwd2.example
 *
 * GGGG is the hash over lower(fwd1.example "=HHHH=TT=example.org=alice")
 * (the SRS0 part keeps its own separator, hence the "=="). The reverse of
 * an SRS1 address is the SRS0 address at the first forwarder, which
 * reverses it in turn (we do both steps when the first forwarder is us).
 *
 * The reverse compares hashes without regard to case (some MTAs change the
 * case of local parts), tries every secret (the first one signs: rotation)
 * and refuses SRS0 addresses older than max_age days, so the forwarder is
 * no open relay for forged bounces. SRS1 carries no time stamp (as in
 * libsrs2): its SRS0 part is checked where it goes.
 *
 * Migration: addresses of the format before (SRS0=HHHHHHHH=TT=..., an
 * 8-letter base32 hash of HMAC-SHA256 over lower("TT=domain=local")) are
 * still reversed, with the same secrets and max_age, so bounces to mail
 * forwarded before the upgrade come back for max_age days.
 */
#ifndef RW_SRS_H
#define RW_SRS_H

#include <stddef.h>
#include <time.h>

struct pstr;

#define RW_SRS_SECRET_MIN 16   /* octets of one secret */
#define RW_SRS_SECRET_MAX 1023 /* postsrsd reads lines of up to 1023 */
#define RW_SRS_SECRETS_MAX 64  /* secrets in one set */
#define RW_SRS_FILE_MAX 65536  /* octets of a secrets file */

/* Secrets, separator and max age; immutable once built. */
struct rw_srs;

/* A set without secrets; separator one of '=', '+', '-' (else NULL). */
struct rw_srs *rw_srs_new(char separator, unsigned max_age_days);
/* Zeroes the secrets. NULL is fine. */
void rw_srs_free(struct rw_srs *k);

/* Add a secret (the first one added signs). 0, or -1 with *why (static
 * text) when it is too short, too long, holds a NUL, CR or LF, or the set
 * is full. */
int rw_srs_add_secret(struct rw_srs *k, const char *s, size_t len, const char **why);

/* The text of a secrets file, as postsrsd reads it: one secret per line
 * (LF or CRLF ends a line), blank lines skipped, nothing else special.
 * The number of secrets added, or -1 with "FILE:LINE: message\n" lines
 * appended to err (every problem, not only the first). A file without any
 * secret is an error. */
int rw_srs_parse_secrets(struct rw_srs *k, const char *text, size_t len, const char *file,
                         struct pstr *err);

size_t rw_srs_nsecrets(const struct rw_srs *k);

/* Forward: 1 and *out (malloc'ed) when rewritten, always a valid address
 * (see rw_addr_valid) of `domain`; 0 when left alone: null sender, already
 * of `domain`, no valid address, a domain holding '=', a damaged SRS1
 * address, or a result whose local part would be over 64 octets; -1 when
 * addr has no '@' or k has no secret. */
int rw_srs_forward(const struct rw_srs *k, const char *domain, const char *addr, time_t now,
                   char **out);

/* Reverse: 1 and *out (a valid address) when addr is an SRS0 or SRS1
 * address of `domain` with a good hash (and, for SRS0, not expired); 0
 * when it is no SRS address of `domain`; -1 when it is one but forged,
 * damaged or expired. */
int rw_srs_reverse(const struct rw_srs *k, const char *domain, const char *addr, time_t now,
                   char **out);

#endif
