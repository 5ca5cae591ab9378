/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ac_map: the access plugin's map files (parser) and their lookups
 * (matcher). A map is one file of `KEY ACTION [TEXT]` lines for one kind
 * of lookup: the client (address and verified reverse name), the HELO
 * name, the envelope sender, the recipient. The format is in README.md.
 *
 * Precedence is by specificity, not file order: the most specific key
 * that matches wins (an exact address before its domain, a domain before
 * its parents, nearest parent first, a longer network before a shorter
 * one); patterns come last, in file order. So a map can be sorted, merged
 * or generated without its meaning changing, and one exception
 * (`boss@example.com allow`) beats the rule (`example.com deny`) wherever
 * it is written, as in Postfix's access(5) tables.
 *
 * Cost of a lookup: exact and domain keys are in one sorted array
 * (binary search; a domain costs one search per label); networks are a
 * list sorted by prefix length, scanned until the first hit (fine for the
 * thousands; single addresses are exact keys, not networks); patterns run
 * one after another, each bounded by the scratch's PCRE2 match limit.
 *
 * Pure: no I/O, no globals. A parsed map is read-only, so any number of
 * threads may look up in it at once, each with its own scratch.
 */
#ifndef AC_MAP_H
#define AC_MAP_H

#include <stddef.h>
#include <stdint.h>

#define AC_LINE_MAX 2048 /* bytes of a line, without its end */
#define AC_KEY_MAX 1000  /* bytes of a key (a pattern included) */
#define AC_TEXT_MAX 200  /* bytes of a reply text */
#define AC_PATTERNS_MAX 10000

enum ac_kind { AC_MAP_CLIENT = 0, AC_MAP_HELO, AC_MAP_SENDER, AC_MAP_RCPT, AC_MAP_KINDS };

enum ac_action { AC_NONE = 0, AC_ALLOW, AC_DENY, AC_TEMPFAIL };

/* What a matching line says. */
struct ac_rule {
    enum ac_action action;
    const char *text; /* the reply text, or NULL for the plugin's default */
    unsigned line;    /* in the map file */
};

struct ac_map;
struct ac_scratch;

typedef void (*ac_err_fn)(void *arg, const char *msg);

/*
 * Parse text (len bytes, any bytes) as a map of `kind`; file names the
 * errors, each one printable line "FILE:LINE: message" handed to err.
 * Returns how many errors there were; *out gets the map only when there
 * were none (else NULL). The map owns copies of everything it needs.
 */
int ac_map_parse(const char *text, size_t len, const char *file, enum ac_kind kind,
                 struct ac_map **out, ac_err_fn err, void *arg);
void ac_map_free(struct ac_map *m);

enum ac_kind ac_map_kind(const struct ac_map *m);
/* Lines that hold a rule. */
size_t ac_map_rules(const struct ac_map *m);
/* 1 when every pattern was JIT-compiled. */
int ac_map_jit(const struct ac_map *m);

/* PCRE2 match state for one thread; every pattern run stops after
 * match_limit steps (a run stopped that way is "no match"). */
struct ac_scratch *ac_scratch_new(uint32_t match_limit);
void ac_scratch_free(struct ac_scratch *sc);
/* Pattern runs stopped by the limit so far. */
uint64_t ac_scratch_limited(const struct ac_scratch *sc);

/*
 * The rule that decides `value`, or NULL when no line matches:
 *   AC_MAP_CLIENT  value: the client's address as text ("192.0.2.1",
 *                  "2001:db8::1", "::ffff:192.0.2.1" counts as IPv4);
 *                  name: its verified reverse name, "" or NULL if none
 *   AC_MAP_HELO    value: the HELO/EHLO argument; name unused
 *   AC_MAP_SENDER  value: the envelope sender without <>, "" for the
 *                  null sender; name unused
 *   AC_MAP_RCPT    value: the recipient without <>; name unused
 * Case does not matter (ASCII letters are compared folded).
 */
const struct ac_rule *ac_map_lookup(const struct ac_map *m, struct ac_scratch *sc,
                                    const char *value, const char *name);

const char *ac_action_name(enum ac_action a);
const char *ac_kind_name(enum ac_kind k);

#endif
