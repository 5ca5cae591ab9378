/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_rules: the rule-file parser and the compiled, immutable rule set.
 *
 * A builder takes rule-file text (or files, following `include`), collects
 * every error as FILE:LINE: message, and on success produces a
 * spam_ruleset: regexes compiled once (with JIT when available), meta
 * expressions resolved to rule indices and ordered so that each meta comes
 * after the metas it uses. A ruleset is never modified after it is built,
 * so any number of threads may evaluate it at once; it is reference
 * counted so that a reload can swap it while evaluations are in flight.
 *
 * The format is described in rules/README.md ("Spam rules").
 */
#ifndef SPAM_RULES_H
#define SPAM_RULES_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum spam_rule_type {
    SPAM_RULE_HEADER = 0,
    SPAM_RULE_BODY,    /* decoded text parts, HTML converted to text */
    SPAM_RULE_RAWBODY, /* decoded text parts, HTML kept */
    SPAM_RULE_FULL,    /* the raw message */
    SPAM_RULE_URI,     /* each URI found in text and HTML */
    SPAM_RULE_META,
    SPAM_RULE_TYPE_COUNT
};

/* What a header rule looks at. */
enum spam_field_kind {
    SPAM_FIELD_HEADER = 0,    /* a named header field */
    SPAM_FIELD_ALL,           /* ALL: every field, "Name: value" per line */
    SPAM_FIELD_TOCC,          /* ToCc: To and Cc together */
    SPAM_FIELD_ENV_FROM,      /* ENV:from: envelope sender */
    SPAM_FIELD_ENV_RCPT,      /* ENV:rcpt: envelope recipients, one per line */
    SPAM_FIELD_CLIENT_IP,     /* CLIENT:ip */
    SPAM_FIELD_CLIENT_HELO,   /* CLIENT:helo */
    SPAM_FIELD_CLIENT_NAME,   /* CLIENT:name: verified reverse name or "" */
    SPAM_FIELD_MIME_PARTS,    /* MIME:parts: "type/sub encoding disposition" per leaf */
    SPAM_FIELD_MIME_FILENAMES,/* MIME:filenames: attachment names, one per line */
    SPAM_FIELD_HTML_HIDDEN,   /* HTML:hidden: text the reader cannot see */
    SPAM_FIELD_HTML_MISMATCH, /* HTML:linkmismatch: "textdomain hrefdomain" per link */
    SPAM_FIELD_KIND_COUNT
};

/* How the value of a named field (or ToCc) is presented. */
enum spam_field_mod {
    SPAM_MOD_DECODED = 0, /* unfolded, RFC 2047 words decoded */
    SPAM_MOD_RAW,         /* :raw   unfolded, not decoded */
    SPAM_MOD_ADDR,        /* :addr  addresses, one per line */
    SPAM_MOD_NAME,        /* :name  display names, one per line */
    SPAM_MOD_COUNT,       /* :count number of fields, in decimal */
};

enum spam_header_op {
    SPAM_OP_MATCH = 0, /* =~ */
    SPAM_OP_NOMATCH,   /* !~ */
    SPAM_OP_EXISTS,    /* exists: */
};

/* Meta expressions are stored in postfix (RPN) form. */
enum spam_meta_opcode {
    SPAM_META_RULE = 0, /* push 1 if rule `arg` hit, else 0 */
    SPAM_META_NUM,      /* push `num` */
    SPAM_META_NOT,
    SPAM_META_NEG,
    SPAM_META_AND,
    SPAM_META_OR,
    SPAM_META_ADD,
    SPAM_META_SUB,
    SPAM_META_MUL,
    SPAM_META_LT,
    SPAM_META_LE,
    SPAM_META_GT,
    SPAM_META_GE,
    SPAM_META_EQ,
    SPAM_META_NE,
};

struct spam_meta_op {
    enum spam_meta_opcode op;
    size_t arg;   /* rule index for SPAM_META_RULE */
    double num;   /* for SPAM_META_NUM */
};

struct spam_rule {
    char *name;
    enum spam_rule_type type;
    /* header rules */
    enum spam_field_kind field;
    enum spam_field_mod mod;
    char *field_name;        /* the header field for SPAM_FIELD_HEADER, else NULL */
    enum spam_header_op op;
    /* regex rules (all but meta and exists:) */
    char *pattern;           /* as written, for messages */
    uint32_t opts;           /* PCRE2 options from the rule's flags (i m s x) */
    pcre2_code *re;          /* owned; JIT-compiled when possible */
    /* meta rules */
    struct spam_meta_op *prog; /* owned */
    size_t prog_len;
    double score;            /* default: 1, or 0 for "__" sub-rules */
    char *describe;          /* owned, may be NULL */
    const char *file;        /* owned by the ruleset's file table */
    unsigned line;
};

/* A file the set was read from, to notice changes. */
struct spam_rules_file {
    char *path; /* or the label of text given by the caller */
};

struct spam_prefilter;

#define SPAM_RULES_BAYES_BANDS 10 /* SPAM_BAYES_NBANDS, without the include */

struct spam_ruleset {
    atomic_uint refs;
    struct spam_rule *rules;   /* owned; indices are stable */
    size_t nrules;
    size_t *meta_order;        /* meta rule indices, dependencies first */
    size_t nmeta;
    size_t count[SPAM_RULE_TYPE_COUNT];
    struct spam_rules_file *files; /* owned; files[0] is the main file */
    size_t nfiles;
    int jit;                   /* 1 when every regex got JIT code */
    struct spam_prefilter *pf; /* owned; NULL without Hyperscan (see spam_prefilter.h) */
    char pf_why[128];          /* why pf is NULL after a failed compile, else "" */
    /* Each Bayes band's score, BAYES_00 first (spam_bayes_band_index): the
     * default table of spam_bayes.c unless a `score BAYES_95 3.5` line set it. */
    double bayes_score[SPAM_RULES_BAYES_BANDS];
};

struct spam_rules_error {
    char *file; /* owned */
    unsigned line;
    char *msg;  /* owned */
};

struct spam_rules_errors {
    struct spam_rules_error *v; /* owned */
    size_t n;
    size_t cap;
};

struct spam_rules_builder;

struct spam_rules_builder *spam_rules_builder_new(void);
/*
 * Parse rule text named `file` (used in errors and to resolve `include`,
 * relative to its directory). Errors go to the builder's list.
 */
void spam_rules_builder_add_text(struct spam_rules_builder *b, const char *file, const char *text,
                                 size_t len);
/* Read and parse a file; an unreadable file is an error at `file`:0. */
void spam_rules_builder_add_file(struct spam_rules_builder *b, const char *path);
/*
 * Check everything that needs the whole set (unknown or circular metas,
 * scores for rules never defined). Returns the set (one reference, to be
 * released with spam_ruleset_unref) when there were no errors, else NULL.
 * All errors are moved to *errs (which the caller frees with
 * spam_rules_errors_free) in file order. Frees the builder.
 */
struct spam_ruleset *spam_rules_builder_finish(struct spam_rules_builder *b,
                                               struct spam_rules_errors *errs);

/* Convenience: load `path` (and its includes). */
struct spam_ruleset *spam_rules_load(const char *path, struct spam_rules_errors *errs);

void spam_rules_errors_free(struct spam_rules_errors *errs);

void spam_ruleset_ref(struct spam_ruleset *rs);
void spam_ruleset_unref(struct spam_ruleset *rs);
/* Index of rule `name`, or -1. */
long spam_ruleset_find(const struct spam_ruleset *rs, const char *name);

#endif
