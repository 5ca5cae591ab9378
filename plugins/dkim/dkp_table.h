/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_table: the DKIM signing table, a text file of lines
 *
 *     domain  selector  keyfile  [algorithm]
 *
 * algorithm is rsa-sha256 (default) or ed25519-sha256. Several lines for
 * one domain mean several signatures on the same message (RFC 8463 dual
 * signing). '#' starts a comment; blank lines are ignored. Pure parser: it
 * takes the text, never opens the key files (dkp_key does that).
 */
#ifndef DKP_TABLE_H
#define DKP_TABLE_H

#include <stddef.h>

enum dkp_alg {
    DKP_ALG_RSA_SHA256 = 0,
    DKP_ALG_ED25519_SHA256,
};

struct dkp_table_entry {
    char *domain;   /* owned; lower case */
    char *selector; /* owned; lower case */
    char *keyfile;  /* owned; as written (relative paths are the caller's business) */
    enum dkp_alg alg;
    unsigned line;  /* 1-based line in the table file */
};

struct dkp_table {
    struct dkp_table_entry *v; /* owned array */
    size_t n;
};

/* Parse `len` bytes of table text into *out (which it initialises).
 * Returns 0, or -1 with *err_line (1-based) and a message in err; *out is
 * then empty. */
int dkp_table_parse(const char *text, size_t len, struct dkp_table *out, unsigned *err_line,
                    char *err, size_t errlen);

void dkp_table_free(struct dkp_table *t);

/* Index of the first entry for `domain` (case-insensitive) at or after
 * `from`, or t->n when there is none. */
size_t dkp_table_find(const struct dkp_table *t, const char *domain, size_t from);

/* "rsa-sha256" / "ed25519-sha256". */
const char *dkp_alg_name(enum dkp_alg alg);

/* True when s is a syntactically valid domain name or selector
 * (dot-separated labels of letters, digits, '-' and '_', no empty label). */
int dkp_table_valid_name(const char *s, size_t len);

#endif
