/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rw_rules: the rewrite rule-file parser and the compiled, immutable rule
 * set.
 *
 * The parser takes rule-file text, collects every error as
 * FILE:LINE: message (map files it references report their own
 * MAPFILE:LINE), and on success builds a rw_ruleset: regexes compiled once
 * (PCRE2, UTF with invalid UTF-8 tolerated, JIT when available), networks
 * parsed, map files loaded and sorted, replacement templates checked
 * against their pattern's groups. A rule set is never modified after it is
 * built; it is reference counted so a reload can swap it while
 * transactions that started with the old one finish with it.
 *
 * The format is described in rules/README.md ("Rewrite rules").
 */
#ifndef RW_RULES_H
#define RW_RULES_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "cidr.h"

#include <stdatomic.h>
#include <stddef.h>

enum rw_kind {
    RW_HDR_ADD = 0,    /* header add NAME VALUE */
    RW_HDR_REMOVE,     /* header remove NAME [/re/] */
    RW_HDR_REPLACE,    /* header replace NAME /re/ VALUE */
    RW_HDR_PREPEND,    /* header prepend NAME VALUE */
    RW_HDR_APPEND,     /* header append NAME VALUE */
    RW_SUBJECT_TAG,    /* subject-tag VALUE (once) */
    RW_STRIP_RECEIVED, /* strip-received CIDR|/re/ ... */
    RW_ADDR,           /* sender|recipient OP ... */
    RW_STOP,           /* stop [if ...] */
};

enum rw_target {
    RW_TGT_NONE = 0,
    RW_TGT_SENDER,
    RW_TGT_RCPT,
};

enum rw_addr_op {
    RW_OP_MAP = 0,      /* map FILE */
    RW_OP_REGEX,        /* /re/ REPLACEMENT */
    RW_OP_LOWER_DOMAIN, /* lowercase-domain */
    RW_OP_LOWER,        /* lowercase */
    RW_OP_STRIP_PLUS,   /* strip-plus */
    RW_OP_SRS,          /* srs DOMAIN (sender) */
    RW_OP_SRS_REVERSE,  /* srs-reverse DOMAIN (recipient) */
};

enum rw_cond_kind {
    RW_C_SENDER = 0, /* sender /re/ */
    RW_C_RCPT,       /* recipient /re/ (the current one, or any) */
    RW_C_CLIENT,     /* client CIDR[,CIDR...] */
    RW_C_HEADER,     /* header NAME /re/ */
    RW_C_SYMBOL,     /* symbol NAME */
    RW_C_SCORE,      /* score OP NUMBER */
    RW_C_AUTH,       /* authenticated */
};

struct rw_cond {
    enum rw_cond_kind kind;
    int neg;          /* "not" */
    pcre2_code *re;   /* sender, recipient, header */
    char *name;       /* header NAME, symbol NAME */
    struct cidr *nets;
    size_t nnets;
    char cmp[3];      /* score: ">", ">=", "<", "<=" */
    double num;
};

/* One map file entry; keys lower-cased, sorted for bsearch. */
struct rw_map_entry {
    char *key;   /* "user@domain" or "@domain" */
    char *value; /* "user@domain" or "@domain" */
    unsigned line;
};

struct rw_map {
    char *path;
    struct rw_map_entry *e;
    size_t n;
};

struct rw_rule {
    unsigned line;
    enum rw_kind kind;
    enum rw_target target; /* RW_ADDR */
    enum rw_addr_op op;    /* RW_ADDR */
    char *field;           /* header NAME */
    pcre2_code *re;        /* remove / replace / addr regex */
    char *text;            /* value, replacement, tag, SRS domain */
    struct rw_map *map;    /* RW_OP_MAP */
    struct cidr *nets;     /* strip-received networks */
    size_t nnets;
    pcre2_code **res;      /* strip-received patterns */
    size_t nres;
    int headers;           /* also rewrite From (sender) / To, Cc (recipient) */
    int stop;
    struct rw_cond *conds; /* all must hold ("and") */
    size_t nconds;
};

struct rw_ruleset {
    atomic_int refs;
    struct rw_rule *rules;
    size_t nrules;
    char **files; /* the rule file and map files, for change detection */
    size_t nfiles;
    int uses_srs; /* needs a secret */
    int jit;      /* every regex got JIT code */
};

struct rw_error {
    char *file;
    unsigned line;
    char *msg;
};

struct rw_errors {
    struct rw_error *v;
    size_t n, cap;
};

#define RW_ERRORS_INIT {NULL, 0, 0}

/* Parse rule text; `file` names it in errors and is the base for relative
 * map paths. NULL (errors in errs) or a set with one reference. */
struct rw_ruleset *rw_rules_parse(const char *text, size_t len, const char *file, struct rw_errors *errs);
/* Read and parse a rule file. */
struct rw_ruleset *rw_rules_load(const char *path, struct rw_errors *errs);

void rw_ruleset_ref(struct rw_ruleset *rs);
void rw_ruleset_unref(struct rw_ruleset *rs);

void rw_errors_free(struct rw_errors *errs);

/* Look a (lower-cased) key up in a map; the value or NULL. */
const char *rw_map_get(const struct rw_map *m, const char *key);

#endif
