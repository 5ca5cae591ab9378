/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dnsbl_list: the list file of the dnsbl plugin, and what its answers mean.
 *
 * One line per symbol:
 *
 *   KIND  ZONE              SYMBOL            SCORE  [MATCH ...]
 *   ip    zen.spamhaus.org  RCVD_IN_SBL       3.5    127.0.0.2 127.0.0.3
 *   ip    zen.spamhaus.org  RCVD_IN_PBL       1.0    127.0.0.10-127.0.0.11
 *   ip    list.dnswl.org    RCVD_IN_DNSWL_HI  -5.0   127.0.[0-255].3
 *   uri   multi.surbl.org   URIBL_SURBL_ABUSE 3.0    mask=0x40
 *
 * KIND `ip` looks the client's address up (IPv4 octets reversed, IPv6
 * nibbles reversed, then ZONE); `uri` looks up the registrable domains of
 * the links in the message and of the sender (DOMAIN.ZONE). MATCH says
 * which answers (A records) mean this symbol: an address, a range A-B, a
 * pattern with [lo-hi] octets, or mask=N (N decimal or 0x hex: any answer
 * in 127.0.0.0/8 whose last octet shares a bit with N, as SURBL and URIBL
 * encode their sublists). Without MATCH any answer in 127.0.0.0/8 counts.
 * Several lines may share a zone: it is asked once and every line is
 * matched against the answer. A negative score makes an allow list.
 *
 * Answers outside 127.0.0.0/8 (a resolver that rewrites NXDOMAIN) and in
 * 127.255.255.0/24 (Spamhaus's "you may not query from here" codes) are
 * errors of the list, never a listing.
 *
 * Pure: no I/O, no globals, any thread. A dnsbl_lists owns everything in it.
 */
#ifndef DNSBL_LIST_H
#define DNSBL_LIST_H

#include <stddef.h>
#include <stdint.h>

#define DNSBL_MAX_ZONES 64
#define DNSBL_MAX_ENTRIES 256
#define DNSBL_MAX_MATCH 16
#define DNSBL_ZONE_MAX 200 /* octets of a zone name */
#define DNSBL_NAME_MAX 254 /* a query name, NUL included */
#define DNSBL_SYMBOL_MAX 64

enum dnsbl_kind { DNSBL_KIND_IP = 0, DNSBL_KIND_URI = 1 };

/* One MATCH (an exact address is OCTETS with lo = hi). */
enum dnsbl_match_how {
    DNSBL_MATCH_OCTETS = 0, /* each octet within [lo[k], hi[k]] */
    DNSBL_MATCH_RANGE,      /* the address, as a number, within [lo, hi] */
    DNSBL_MATCH_MASK,       /* the last octet shares a bit with mask */
};
struct dnsbl_match {
    enum dnsbl_match_how how;
    uint8_t lo[4], hi[4];
    uint8_t mask;
};

struct dnsbl_entry {
    size_t zone; /* index into dnsbl_lists.zones */
    char symbol[DNSBL_SYMBOL_MAX];
    double score;
    struct dnsbl_match match[DNSBL_MAX_MATCH];
    size_t nmatch; /* 0: any answer in 127.0.0.0/8 */
    unsigned line;
};

struct dnsbl_zone {
    char name[DNSBL_ZONE_MAX + 1]; /* lower case, no trailing dot */
    enum dnsbl_kind kind;
};

struct dnsbl_lists {
    struct dnsbl_zone zones[DNSBL_MAX_ZONES];
    size_t nzones;
    struct dnsbl_entry *entries; /* owned */
    size_t nentries;
};

/* Parse text[0..len) (the file `fname`, for messages). Every problem goes
 * to errfn as "FNAME:LINE: message" (one line, printable); returns the
 * number of problems (0: *out is complete; otherwise *out is empty). */
size_t dnsbl_lists_parse(const char *text, size_t len, const char *fname, struct dnsbl_lists *out,
                         void (*errfn)(void *arg, const char *msg), void *arg);
void dnsbl_lists_free(struct dnsbl_lists *l);

/* What an answer of a zone is. */
enum dnsbl_answer { DNSBL_ANSWER_LISTED = 0, DNSBL_ANSWER_ERROR = 1 };

/* Classify one A record ("127.0.0.2") of a zone's answer:
 * DNSBL_ANSWER_LISTED (then *out holds it) or DNSBL_ANSWER_ERROR. */
enum dnsbl_answer dnsbl_answer_parse(const char *text, uint8_t out[4]);

/* 1 when the answer addr means entry e. */
int dnsbl_entry_matches(const struct dnsbl_entry *e, const uint8_t addr[4]);

/* The query name of client address `ip` ("192.0.2.1", "2001:db8::1",
 * "::ffff:192.0.2.1" is taken as IPv4) in `zone`. Its length, or -1 when
 * ip is not an address or the name does not fit. */
int dnsbl_ip_qname(const char *ip, const char *zone, char *out, size_t outsz);

/* The query name of domain `dom` in `zone`; -1 when it does not fit in a
 * DNS name or dom is not a plain host name (letters, digits, '-', '.',
 * no empty label). */
int dnsbl_dom_qname(const char *dom, const char *zone, char *out, size_t outsz);

/* A dns_servers value as the host's resolver takes it: "IP[:PORT]" or
 * "[IPv6]:PORT" items separated by commas or blanks, at most 8. 0, or -1
 * with the first bad item named in err. */
int dnsbl_servers_valid(const char *list, char *err, size_t errlen);

#endif
