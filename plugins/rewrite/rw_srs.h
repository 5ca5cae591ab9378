/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rw_srs: Sender Rewriting Scheme for forwarded mail.
 *
 * A forwarder that keeps the original MAIL FROM fails the SPF check of the
 * original domain at the next hop. SRS rewrites the sender into an address
 * of the forwarder's domain that encodes the original one, so that bounces
 * come back to the forwarder, which decodes them:
 *
 *   alice@example.org  ->  SRS0=HHHHHHHH=TT=example.org=alice@fwd.example
 *
 * TT is the day (days since the epoch, modulo 1024, two base32 letters);
 * HHHHHHHH is the first 40 bits of HMAC-SHA256(secret, lower-cased
 * "TT=domain=local"), in base32, compared without regard to case (some
 * MTAs change the case of local parts). The reverse refuses addresses
 * with a wrong hash or older than max_age days, so the forwarder is no
 * open relay for forged bounces. An address that already is SRS0 is
 * wrapped again (no SRS1 shortening).
 */
#ifndef RW_SRS_H
#define RW_SRS_H

#include <stddef.h>
#include <time.h>

/* 1 and *out (malloc'ed) when rewritten, always a valid address (see
 * rw_addr_valid); 0 when left alone: null sender, already of `domain`, no
 * valid address, a domain holding '=', or an SRS0 form whose local part
 * would be over 64 octets; -1 when addr has no '@'. */
int rw_srs_forward(const char *secret, size_t secret_len, const char *domain, const char *addr, time_t now,
                   char **out);

/* 1 and *out when addr is a valid, unexpired SRS0 address of `domain`;
 * 0 when it is no SRS0 address of `domain`; -1 when it is one but forged,
 * damaged or expired. */
int rw_srs_reverse(const char *secret, size_t secret_len, const char *domain, const char *addr, time_t now,
                   unsigned max_age_days, char **out);

#endif
