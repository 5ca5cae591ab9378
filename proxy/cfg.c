/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cfg: load sluice's INI configuration (see cfg.h for the contract).
 *
 * libinih does the INI syntax. Debian builds it without line numbers for the
 * handler, so the file is read into memory and handed to ini_parse_stream()
 * one line per reader call by cfg__read_line(); the reader's line counter is
 * then the line inih is working on. Every key of [server], [upstream],
 * [stats] and [chain] is described once in cfg_keys[] (cfg_keys.c: type,
 * field, range);
 * [plugin NAME] sections are kept for their plugin, apart from the few keys
 * the host itself uses (cfg_keys_plugin[]).
 *
 * Problems are collected (not fatal one by one), sorted by line and written
 * to the caller's buffer as "FILE:LINE: message" at the end, so one run
 * shows the administrator everything that is wrong.
 *
 * Ownership: a struct cfg owns every string and array it points to; the
 * last cfg_unref() frees them. Nothing here keeps global state (inih's
 * run-time knobs are left alone).
 */
#include "cfg.h"

#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg_keys.h"
#include "state_redis.h"
#include "cidr.h"
#include "dns_parse.h"
#include "log.h"
#include "tlspol.h"
#include "tlssrv.h"

#define CFG__MAX_FILE (1024 * 1024)  /* a config larger than this is a mistake */
#define CFG__MAX_ERRORS 100          /* then stop listing: the rest is noise */
#define CFG__MAX_PSECS 256           /* [plugin NAME] sections, chained or not */
/* inih copies a section name into a 50-byte buffer and silently cuts it:
 * longer names are refused so "[plugin long...]" never becomes another name. */
#define CFG__INI_SECTION_MAX 49

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)
#define SEC 1000ULL
#define MIN (60ULL * SEC)
#define HOUR (60ULL * MIN)

_Static_assert(sizeof(enum cfg_failure) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum cfg_upstream_tls) == sizeof(int), "enums are stored as int");

/* ---- loader state ------------------------------------------------------- */

struct cfg__err {
    int line;      /* 0: not tied to a line (sorted last) */
    unsigned seq;  /* keeps discovery order among equal lines */
    char *msg;     /* complete "where:line: text" */
};

/* One [plugin NAME] section, chained or not: the host keys parsed so far. */
struct cfg__psec {
    char *name;
    struct cfg_plugin p;  /* name unset, path NULL = default */
    int seen[CFG_KEYS_PLUGIN_N];
};

/* One [listener NAME] section: what the file set so far. */
struct cfg__lsec {
    struct cfg_listener l; /* name, line and the keys set; the rest in cfg__finish */
    int seen[CFG_KEYS_LISTENER_N];
    char *chain[CFG_MAX_PLUGINS]; /* "chain": instance names */
    size_t nchain;
    int chain_line; /* 0: no "chain" key (the listener takes [chain]'s) */
    bool listen_bad;
};

struct cfg__load {
    struct cfg *c;
    const struct cfg_overrides *loaded; /* the TLS files already loaded, or NULL */
    const char *file;  /* label for messages: the path or "(defaults)" */

    struct cfg__err *errs;
    size_t nerrs, caperrs;
    unsigned seq;
    bool too_many;

    /* reader -> handler */
    const char *p, *end;  /* file text not yet handed to inih */
    int line;             /* line inih is parsing */
    int sec_line;         /* last "[...]" header line */
    int skip_upto;        /* syntax re-scans: blank every line up to this */
    bool syntax_pass;     /* re-scan: handler does nothing */

    /* current section, classified once per header */
    int sec_checked;
    enum cfg_keys_sec sec;
    char sec_norm[64];    /* "server", "plugin NAME": kv section */
    size_t cur_psec;

    int seen[CFG_KEYS_N]; /* line a key was set on, 0 = not yet */
    struct cfg__psec *psecs;
    size_t npsecs;
    char *chain[CFG_MAX_PLUGINS];
    size_t nchain;
    int chain_line;
    bool listen_bad, upstream_bad;  /* an address was refused: "none left" says nothing new */
    bool listen_override;           /* --listen was given */
    struct cfg__lsec *lsecs;        /* [listener NAME] sections, in file order */
    size_t nlsecs;
    size_t cur_lsec;
    size_t kvcap;         /* allocated entries of c->kv */
};

static void cfg__verr(struct cfg__load *s, const char *where, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void cfg__err(struct cfg__load *s, const char *where, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void cfg__verr(struct cfg__load *s, const char *where, int line, const char *fmt, va_list ap)
{
    if (s->nerrs >= CFG__MAX_ERRORS) {
        s->too_many = true;
        return;
    }
    if (s->nerrs == s->caperrs) {
        size_t n = s->caperrs ? s->caperrs * 2 : 16;
        struct cfg__err *e = realloc(s->errs, n * sizeof *e);
        if (!e) {
            s->too_many = true;  /* still fails the load */
            return;
        }
        s->errs = e;
        s->caperrs = n;
    }
    buf_t b = BUF_INIT;
    if (line > 0)
        buf_printf(&b, "%s:%d: ", where ? where : s->file, line);
    else
        buf_printf(&b, "%s: ", where ? where : s->file);
    buf_vprintf(&b, fmt, ap);
    if (!b.ptr) {
        s->too_many = true;
        return;
    }
    s->errs[s->nerrs++] = (struct cfg__err){line, s->seq++, b.ptr};
}

static void cfg__err(struct cfg__load *s, const char *where, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg__verr(s, where, line, fmt, ap);
    va_end(ap);
}

static char *cfg__strdup(struct cfg__load *s, const char *text)
{
    char *d = strdup(text);
    if (!d)
        cfg__err(s, NULL, 0, "out of memory");
    return d;
}

static int cfg__err_cmp(const void *a, const void *b)
{
    const struct cfg__err *x = a, *y = b;
    unsigned lx = x->line > 0 ? (unsigned)x->line : UINT_MAX;
    unsigned ly = y->line > 0 ? (unsigned)y->line : UINT_MAX;
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ---- small checks ------------------------------------------------------- */

static bool cfg__is_hostname(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 255)
        return false;
    for (; *h; h++)
        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') ||
              strchr(".-_[]:", *h)))
            return false;
    return true;
}

static bool cfg__is_printable(const char *t)
{
    for (; *t; t++)
        if ((unsigned char)*t < 0x20 || (unsigned char)*t > 0x7e)
            return false;
    return true;
}

/* Plugin instance names end up in section names, metrics and log lines. */
static bool cfg__is_instance_name(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > CFG__INI_SECTION_MAX - 7)  /* 7 = strlen("plugin ") */
        return false;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') ||
              *n == '_' || *n == '-' || *n == '.'))
            return false;
    return true;
}

/* Calls fn for each token of a comma/blank separated list. */
static void cfg__each_token(struct cfg__load *s, const char *value, int line, const char *key,
                            void (*fn)(struct cfg__load *, const char *, int, void *), void *arg)
{
    const char *p = value;
    for (;;) {
        p += strspn(p, ", \t");
        if (!*p)
            break;
        size_t n = strcspn(p, ", \t");
        char tok[sizeof ((struct cfg_addr *)0)->text];
        if (n >= sizeof tok) {
            cfg__err(s, NULL, line, "'%s': entry '%.20s...' is too long", key, p);
        } else {
            memcpy(tok, p, n);
            tok[n] = 0;
            fn(s, tok, line, arg);
        }
        p += n;
    }
}

/* ---- setting one key ---------------------------------------------------- */

struct cfg__addr_list {
    const char *where;  /* NULL: the file */
    const char *key;
    struct cfg_addr *arr;
    size_t *n;
    size_t max;
    bool *bad;          /* set when an entry is refused */
};

static void cfg__add_addr(struct cfg__load *s, const char *tok, int line, void *arg)
{
    struct cfg__addr_list *l = arg;
    char err[400];
    if (*l->n >= l->max) {
        cfg__err(s, l->where, line, "'%s': more than %zu addresses", l->key, l->max);
        *l->bad = true;
        return;
    }
    if (cfg_parse_addr(tok, &l->arr[*l->n], err, sizeof err) != 0) {
        cfg__err(s, l->where, line, "'%s': %s", l->key, err);
        *l->bad = true;
        return;
    }
    for (size_t i = 0; i < *l->n; i++)
        if (strcmp(l->arr[i].text, tok) == 0) {
            cfg__err(s, l->where, line, "'%s': address '%s' given twice", l->key, tok);
            *l->bad = true;
            return;
        }
    (*l->n)++;
}

/* A list of instance names being read: [chain] plugins or a listener's
 * chain. */
struct cfg__chain_list {
    char **names;
    size_t *n;
    const char *what; /* "[chain] plugins", "[listener mx] chain" */
};

static void cfg__add_chain(struct cfg__load *s, const char *tok, int line, void *arg)
{
    struct cfg__chain_list *l = arg;
    if (!cfg__is_instance_name(tok)) {
        cfg__err(s, NULL, line,
                 "bad plugin name '%s' in %s (letters, digits, '_', '-', '.'; at most %d)", tok,
                 l->what, CFG__INI_SECTION_MAX - 7);
        return;
    }
    for (size_t i = 0; i < *l->n; i++)
        if (strcmp(l->names[i], tok) == 0) {
            cfg__err(s, NULL, line, "plugin '%s' listed twice in %s", tok, l->what);
            return;
        }
    if (*l->n >= CFG_MAX_PLUGINS) {
        cfg__err(s, NULL, line, "more than %d plugins in %s", CFG_MAX_PLUGINS, l->what);
        return;
    }
    char *d = cfg__strdup(s, tok);
    if (d)
        l->names[(*l->n)++] = d;
}

/* One "tls_sni = HOST CERT KEY" line (file names without blanks). */
static void cfg__add_sni(struct cfg__load *s, struct cfg_tls_sni **arr, size_t *n,
                         const char *value, int line)
{
    char host[256], cert[1024], key[1024], extra[2];
    if (sscanf(value, "%255s %1023s %1023s %1s", host, cert, key, extra) != 3) {
        cfg__err(s, NULL, line, "'tls_sni': expected HOSTNAME CERTFILE KEYFILE, not '%s'", value);
        return;
    }
    if (!tlspol_sni_pattern_ok(host)) {
        cfg__err(s, NULL, line,
                 "'tls_sni': '%s' is not a host name or a wildcard like *.example.com", host);
        return;
    }
    for (size_t i = 0; i < *n; i++)
        if (strcasecmp((*arr)[i].host, host) == 0) {
            cfg__err(s, NULL, line, "'tls_sni': %s given twice (first at line %d)", host,
                     (*arr)[i].line);
            return;
        }
    if (*n >= CFG_MAX_SNI) {
        cfg__err(s, NULL, line, "'tls_sni': more than %d names", CFG_MAX_SNI);
        return;
    }
    struct cfg_tls_sni *a = realloc(*arr, (*n + 1) * sizeof *a);
    if (!a) {
        cfg__err(s, NULL, line, "out of memory");
        return;
    }
    *arr = a;
    a[*n] =
        (struct cfg_tls_sni){cfg__strdup(s, host), cfg__strdup(s, cert), cfg__strdup(s, key), line};
    (*n)++;
}

/* A number, size or duration key, range-checked. */
static void cfg__set_number(struct cfg__load *s, const struct cfg_key *k, char *field,
                            const char *value, int line)
{
    char lo[32], hi[32];
    uint64_t v = 0;
    int rc;
    if (k->type == T_UINT)
        rc = cfg_parse_u64(value, &v);
    else if (k->type == T_MS)
        rc = cfg_parse_ms64(value, &v);
    else
        rc = cfg_parse_bytes(value, &v);
    if (rc == -EINVAL) {
        cfg__err(s, NULL, line, "'%s': %s '%s'%s", k->name,
                 k->type == T_UINT ? "not a number"
                 : k->type == T_MS ? "not a duration"
                                   : "not a size",
                 value,
                 k->type == T_MS     ? " (use e.g. 500ms, 30s, 5m, 1h)"
                 : k->type == T_UINT ? ""
                                     : " (use e.g. 65536, 64k, 25M, 1G)");
        return;
    }
    if (rc == 0 && v >= k->min && v <= k->max) {
        if (k->type == T_SIZE)
            *(size_t *)field = (size_t)v;
        else if (k->type == T_U64)
            *(uint64_t *)field = v;
        else
            *(unsigned *)field = (unsigned)v;
        return;
    }
    if (k->type == T_MS) {
        cfg_parse_fmt_ms(lo, sizeof lo, k->min);
        cfg_parse_fmt_ms(hi, sizeof hi, k->max);
    } else if (k->type == T_UINT) {
        snprintf(lo, sizeof lo, "%llu", (unsigned long long)k->min);
        snprintf(hi, sizeof hi, "%llu", (unsigned long long)k->max);
    } else {
        cfg_parse_fmt_size(lo, sizeof lo, k->min);
        cfg_parse_fmt_size(hi, sizeof hi, k->max);
    }
    cfg__err(s, NULL, line, "'%s' = %s is out of range (%s..%s)", k->name, value, lo, hi);
}

/* Parses `value` for key `k` into the struct at `base`. */
static void cfg__set(struct cfg__load *s, const struct cfg_key *k, void *base, const char *value,
                     int line)
{
    char *field = (char *)base + k->off;
    switch (k->type) {
    case T_UINT:
    case T_SIZE:
    case T_U64:
    case T_MS:
        cfg__set_number(s, k, field, value, line);
        return;

    case T_BOOL: {
        bool b;
        if (cfg_parse_bool(value, &b) != 0)
            cfg__err(s, NULL, line, "'%s': expected yes or no, not '%s'", k->name, value);
        else
            *(bool *)field = b;
        return;
    }

    case T_ENUM:
        if (cfg_parse_enum(value, k->choices, (int *)field) == 0)
            return;
        {
            buf_t b = BUF_INIT;
            for (int i = 0; k->choices[i]; i++)
                buf_printf(&b, "%s%s", i ? "|" : "", k->choices[i]);
            cfg__err(s, NULL, line, "'%s': expected %s, not '%s'", k->name, b.ptr ? b.ptr : "?", value);
            buf_free(&b);
        }
        return;

    case T_STR: {
        char **sp = (char **)field;
        if ((k->flags & F_HOSTNAME) && *value && !cfg__is_hostname(value)) {
            cfg__err(s, NULL, line, "'%s': '%s' is not a host name", k->name, value);
            return;
        }
        if ((k->flags & F_PRINTABLE) && !cfg__is_printable(value)) {
            cfg__err(s, NULL, line, "'%s': only printable ASCII is allowed", k->name);
            return;
        }
        free(*sp);
        *sp = NULL;
        if (*value || (k->flags & F_KEEP_EMPTY))
            *sp = cfg__strdup(s, value);
        return;
    }

    case T_NAME:
        if (!cfg__is_hostname(value)) {
            cfg__err(s, NULL, line, "'%s': '%s' is not a host name", k->name, value);
            return;
        }
        snprintf(field, 256, "%s", value);
        return;

    case T_ADDRS: {
        size_t *n = (size_t *)((char *)base + k->off2);
        bool *bad = k->sec == SEC_SERVER     ? &s->listen_bad
                    : k->sec == SEC_LISTENER ? &s->lsecs[s->cur_lsec].listen_bad
                                             : &s->upstream_bad;
        struct cfg__addr_list l = {NULL, k->name, (struct cfg_addr *)field, n, (size_t)k->max, bad};
        cfg__each_token(s, value, line, k->name, cfg__add_addr, &l);
        return;
    }

    case T_STATS: {
        struct cfg_addr a;
        char err[400];
        if (!*value || strcmp(value, "no") == 0 || strcmp(value, "off") == 0 || strcmp(value, "none") == 0) {
            field[0] = 0;
            return;
        }
        if (cfg_parse_addr(value, &a, err, sizeof err) != 0) {
            cfg__err(s, NULL, line, "'%s': %s", k->name, err);
            return;
        }
        snprintf(field, sizeof a.text, "%s", a.text);
        return;
    }

    case T_SNI:
        cfg__add_sni(s, (struct cfg_tls_sni **)field, (size_t *)((char *)base + k->off2), value,
                     line);
        return;

    case T_CHAIN:
        if (k->sec == SEC_LISTENER) {
            struct cfg__lsec *ls = &s->lsecs[s->cur_lsec];
            char what[CFG_LISTENER_NAME_MAX + 32];
            snprintf(what, sizeof what, "[listener %s] chain", ls->l.name);
            struct cfg__chain_list l = {ls->chain, &ls->nchain, what};
            ls->chain_line = line;
            cfg__each_token(s, value, line, k->name, cfg__add_chain, &l);
        } else {
            struct cfg__chain_list l = {s->chain, &s->nchain, "[chain] plugins"};
            s->chain_line = line;
            cfg__each_token(s, value, line, k->name, cfg__add_chain, &l);
        }
        return;
    }
}

/* ---- inih callbacks ----------------------------------------------------- */

/*
 * inih's reader: one line per call, so s->line is the line being parsed.
 * Leading blanks are removed: inih would take an indented line for the
 * continuation of the previous value (configparser style), which silently
 * turns an indented "hostname = x" under "listen = ..." into a second listen
 * value. Lines that inih cannot hold are reported here and handed over empty.
 */
static char *cfg__read_line(char *str, int num, void *stream)
{
    struct cfg__load *s = stream;
    if (s->p >= s->end || num < 2)
        return NULL;
    const char *b = s->p;
    const char *nl = memchr(b, '\n', (size_t)(s->end - b));
    const char *eol = nl ? nl : s->end;
    s->p = nl ? nl + 1 : s->end;
    int line = ++s->line;

    if (eol > b && eol[-1] == '\r')
        eol--;
    while (b < eol && (*b == ' ' || *b == '\t'))
        b++;
    size_t len = (size_t)(eol - b);
    str[0] = 0;
    if (line <= s->skip_upto)
        return str;
    for (size_t i = 0; i < len; i++) {
        /* a stray CR or escape would also end up in the error messages */
        unsigned char ch = (unsigned char)b[i];
        if (ch < 0x20 && ch != '\t') {
            if (!s->syntax_pass) {
                if (ch == 0)
                    cfg__err(s, NULL, line, "NUL byte in line");
                else
                    cfg__err(s, NULL, line, "control character 0x%02x in line", ch);
            }
            return str;
        }
    }
    if (len > (size_t)num - 1) {
        if (!s->syntax_pass)
            cfg__err(s, NULL, line, "line too long (%zu characters, at most %d)", len, num - 1);
        return str;
    }
    memcpy(str, b, len);
    str[len] = 0;

    const char *t = str;
    if (line == 1 && strncmp(t, "\xEF\xBB\xBF", 3) == 0)
        t += 3;
    if (*t == '[' && strchr(t, ']')) {
        s->sec_line = line;
        if ((size_t)(strchr(t, ']') - t - 1) > CFG__INI_SECTION_MAX && !s->syntax_pass)
            cfg__err(s, NULL, line, "section name longer than %d characters", CFG__INI_SECTION_MAX);
    }
    return str;
}

/* The host keys of a [plugin NAME] section before the file sets any. */
static void cfg__plugin_defaults(struct cfg_plugin *p)
{
    p->timeout_ms = 30 * SEC;
    p->failure = CFG_FAIL_TEMPFAIL;
    p->breaker_failures = 5;
    p->breaker_window_ms = 60 * SEC;
    p->breaker_cooldown_ms = 30 * SEC;
    p->max_threads = 0; /* automatic: the pool less one */
}

static size_t cfg__psec_get(struct cfg__load *s, const char *name, int line)
{
    for (size_t i = 0; i < s->npsecs; i++)
        if (strcmp(s->psecs[i].name, name) == 0)
            return i;
    if (s->npsecs >= CFG__MAX_PSECS) {
        cfg__err(s, NULL, line, "more than %d [plugin] sections", CFG__MAX_PSECS);
        return SIZE_MAX;
    }
    struct cfg__psec *n = realloc(s->psecs, (s->npsecs + 1) * sizeof *n);
    if (!n) {
        cfg__err(s, NULL, line, "out of memory");
        return SIZE_MAX;
    }
    s->psecs = n;
    struct cfg__psec *ps = &s->psecs[s->npsecs];
    memset(ps, 0, sizeof *ps);
    ps->name = cfg__strdup(s, name);
    if (!ps->name)
        return SIZE_MAX;
    cfg__plugin_defaults(&ps->p);
    return s->npsecs++;
}

/* Classifies the section inih reports for the first key after a header. */
static void cfg__enter_section(struct cfg__load *s, const char *section)
{
    char name[64];
    int line = s->sec_line;
    s->sec_checked = line;
    s->sec = SEC_BAD;

    /* inih keeps "[ server ]" as " server ". */
    while (*section == ' ' || *section == '\t')
        section++;
    size_t n = strlen(section);
    while (n && (section[n - 1] == ' ' || section[n - 1] == '\t'))
        n--;
    if (n >= sizeof name)
        n = sizeof name - 1;  /* inih already limits it to 49 */
    memcpy(name, section, n);
    name[n] = 0;

    for (int i = SEC_SERVER; i <= SEC_STATE; i++)
        if (strcmp(name, cfg_keys_sec_names[i]) == 0) {
            s->sec = (enum cfg_keys_sec)i;
            snprintf(s->sec_norm, sizeof s->sec_norm, "%s", name);
            return;
        }
    if (strncmp(name, "plugin", 6) == 0 && (name[6] == 0 || name[6] == ' ' || name[6] == '\t')) {
        const char *inst = name + 6;
        inst += strspn(inst, " \t");
        if (!*inst) {
            cfg__err(s, NULL, line, "[plugin] section needs an instance name: [plugin NAME]");
            return;
        }
        if (!cfg__is_instance_name(inst)) {
            cfg__err(s, NULL, line, "bad plugin instance name '%s' (letters, digits, '_', '-', '.')", inst);
            return;
        }
        size_t idx = cfg__psec_get(s, inst, line);
        if (idx == SIZE_MAX)
            return;
        s->cur_psec = idx;
        s->sec = SEC_PLUGIN;
        snprintf(s->sec_norm, sizeof s->sec_norm, "plugin %s", inst);
        return;
    }
    if (strncmp(name, "listener", 8) == 0 && (name[8] == 0 || name[8] == ' ' || name[8] == '\t')) {
        const char *lname = name + 8;
        lname += strspn(lname, " \t");
        if (!*lname) {
            cfg__err(s, NULL, line, "[listener] section needs a name: [listener NAME]");
            return;
        }
        if (!cfg__is_instance_name(lname) || strlen(lname) > CFG_LISTENER_NAME_MAX ||
            strcmp(lname, "default") == 0) {
            cfg__err(s, NULL, line,
                     "bad listener name '%s' (letters, digits, '_', '-', '.'; at most %d; "
                     "\"default\" is the [server] listener)",
                     lname, CFG_LISTENER_NAME_MAX);
            return;
        }
        size_t i = 0;
        while (i < s->nlsecs && strcmp(s->lsecs[i].l.name, lname) != 0)
            i++;
        if (i == s->nlsecs) {
            if (s->nlsecs >= CFG_MAX_LISTENERS) {
                cfg__err(s, NULL, line, "more than %d [listener] sections", CFG_MAX_LISTENERS);
                return;
            }
            if (!s->lsecs) {
                s->lsecs = calloc(CFG_MAX_LISTENERS, sizeof *s->lsecs);
                if (!s->lsecs) {
                    cfg__err(s, NULL, line, "out of memory");
                    return;
                }
            }
            struct cfg__lsec *ls = &s->lsecs[s->nlsecs++];
            snprintf(ls->l.name, sizeof ls->l.name, "%s", lname);
            ls->l.line = line;
        }
        s->cur_lsec = i;
        s->sec = SEC_LISTENER;
        snprintf(s->sec_norm, sizeof s->sec_norm, "listener %s", lname);
        return;
    }
    cfg__err(s, NULL, line, "unknown section [%s]", name);
}

static void cfg__kv_add(struct cfg__load *s, const char *key, const char *value, int line)
{
    struct cfg *c = s->c;
    if (c->nkv == s->kvcap) {
        size_t cap = s->kvcap ? s->kvcap * 2 : 16;
        struct cfg_kv *n = realloc(c->kv, cap * sizeof *n);
        if (!n) {
            cfg__err(s, NULL, line, "out of memory");
            return;
        }
        c->kv = n;
        s->kvcap = cap;
    }
    struct cfg_kv *kv = &c->kv[c->nkv];
    kv->section = strdup(s->sec_norm);
    kv->key = strdup(key);
    kv->value = strdup(value);
    kv->line = line;
    if (!kv->section || !kv->key || !kv->value) {
        free(kv->section);
        free(kv->key);
        free(kv->value);
        cfg__err(s, NULL, line, "out of memory");
        return;
    }
    c->nkv++;
}

static int cfg__on_key(void *user, const char *section, const char *name, const char *value)
{
    struct cfg__load *s = user;
    int line = s->line;

    /* Problems are collected in s, never returned: a 0 here would make
     * inih's return value mix our errors with its syntax errors. */
    if (s->syntax_pass)
        return 1;
    if (s->sec_line == 0) {
        cfg__err(s, NULL, line, "'%s' is outside any section", name);
        return 1;
    }
    if (s->sec_checked != s->sec_line)
        cfg__enter_section(s, section);
    if (s->sec == SEC_BAD)
        return 1;  /* reported once, at the header */

    cfg__kv_add(s, name, value, line);

    if (s->sec == SEC_PLUGIN) {
        struct cfg__psec *ps = &s->psecs[s->cur_psec];
        for (size_t i = 0; i < CFG_KEYS_PLUGIN_N; i++) {
            if (strcmp(name, cfg_keys_plugin[i].name) != 0)
                continue;
            if (ps->seen[i]) {
                cfg__err(s, NULL, line, "duplicate key '%s' in [%s] (first set at line %d)", name,
                         s->sec_norm, ps->seen[i]);
                return 1;
            }
            ps->seen[i] = line;
            cfg__set(s, &cfg_keys_plugin[i], &ps->p, value, line);
            return 1;
        }
        return 1;  /* the plugin's own key: it validates it when loaded */
    }

    if (s->sec == SEC_LISTENER) {
        struct cfg__lsec *ls = &s->lsecs[s->cur_lsec];
        for (size_t i = 0; i < CFG_KEYS_LISTENER_N; i++) {
            const struct cfg_key *k = &cfg_keys_listener[i];
            if (strcmp(name, k->name) != 0)
                continue;
            if (ls->seen[i] && k->type != T_ADDRS && k->type != T_SNI) {
                cfg__err(s, NULL, line, "duplicate key '%s' in [%s] (first set at line %d)", name,
                         s->sec_norm, ls->seen[i]);
                return 1;
            }
            ls->seen[i] = line;
            cfg__set(s, k, &ls->l, value, line);
            return 1;
        }
        cfg__err(s, NULL, line, "unknown key '%s' in [%s]", name, s->sec_norm);
        return 1;
    }

    for (size_t i = 0; i < CFG_KEYS_N; i++) {
        const struct cfg_key *k = &cfg_keys[i];
        if (k->sec != s->sec || strcmp(name, k->name) != 0)
            continue;
        if (k->type == T_ADDRS) {
            /* The first listen/servers line replaces the default; repeating
             * the key adds to the list. */
            if (!s->seen[i])
                *(size_t *)((char *)s->c + k->off2) = 0;
        } else if (s->seen[i] && k->type != T_SNI) {
            cfg__err(s, NULL, line, "duplicate key '%s' in [%s] (first set at line %d)", name,
                     s->sec_norm, s->seen[i]);
            return 1;
        }
        s->seen[i] = line;
        cfg__set(s, k, s->c, value, line);
        return 1;
    }
    cfg__err(s, NULL, line, "unknown key '%s' in [%s]", name, s->sec_norm);
    return 1;
}

/* ---- loading ------------------------------------------------------------ */

static int cfg__seen_line(const struct cfg__load *s, enum cfg_keys_sec sec, const char *name)
{
    for (size_t i = 0; i < CFG_KEYS_N; i++)
        if (cfg_keys[i].sec == sec && strcmp(cfg_keys[i].name, name) == 0)
            return s->seen[i];
    return 0;
}

static void cfg__defaults(struct cfg__load *s)
{
    struct cfg *c = s->c;
    char err[400];

    if (cfg_parse_addr("127.0.0.1:2525", &c->listen[0], err, sizeof err) == 0)
        c->nlisten = 1;
    if (cfg_parse_addr("127.0.0.1:25", &c->upstream[0], err, sizeof err) == 0)
        c->nupstream = 1;
    snprintf(c->stats_listen, sizeof c->stats_listen, "127.0.0.1:9025");

    if (gethostname(c->hostname, sizeof c->hostname - 1) != 0 || !cfg__is_hostname(c->hostname))
        snprintf(c->hostname, sizeof c->hostname, "localhost");
    c->banner = cfg__strdup(s, "sluice");
    c->max_connections = 1000;
    c->max_connections_per_ip = 50;
    c->ipv6_prefix = 64;
    c->auth_ip_max_failures = 10;
    c->auth_ip_window_ms = 10 * 60 * 1000;
    c->max_message_size = 25 * MIB;
    c->max_recipients = 100;
    c->max_errors = 10;
    c->junk_command_limit = 100;
    c->max_line_length = 998;
    c->long_lines = CFG_LONG_REJECT;
    c->bare_newline = CFG_BARE_REJECT;
    c->max_header_size = 256 * KIB;
    c->chunking = true;
    c->memory_buffer = MIB;
    c->command_timeout_ms = 300 * SEC;
    c->data_timeout_ms = 180 * SEC;
    c->greeting_timeout_ms = 300 * SEC;
    c->client_output_limit = 256 * KIB;
    c->tlsp.min_protocol = CFG_TLS_V12;
    c->tlsp.verify_client = CFG_TLS_VERIFY_NO;
    c->tlsp.session_tickets = true;
    c->thread_pool_size = 4;
    c->shutdown_timeout_ms = 30 * SEC;
    c->log_syslog = false;
    c->reverse_dns = true;
    c->rdns_wait_ms = 2 * SEC;
    c->dns_timeout_ms = 2 * SEC;
    c->dns_max_inflight = 64;
    c->dns_max_queued = 256;
    c->dns_cache_size = 10000;
    c->log_level = LOG_LVL_INFO;
    c->auth.max_failures = 3;

    c->connect_at = CFG_CONNECT_AT_MAIL;
    c->upstream_tls = CFG_UP_TLS_NO;
    c->upstream_tls_verify = false;
    c->xclient = true;
    c->xforward = true;
    c->upstream_connect_timeout_ms = 30 * SEC;
    c->upstream_command_timeout_ms = 100 * SEC; /* a client waits 5 min for RCPT */
    c->upstream_data_timeout_ms = 100 * SEC;    /* the client waits 10 min: answer it first */
    /* Postfix's default process limit, and its per-client share of it */
    c->upstream_max_sessions = 100;
    c->upstream_max_sessions_per_ip = 50;
    c->upstream_reclaim_idle_ms = 10 * SEC; /* Postfix's smtpd_timeout under stress */
    c->upstream_queue_timeout_ms = 30 * SEC;
    /* Under Postfix's stress timeout (10 s), and its client's own limit on
     * a reused connection's age (smtp_connection_reuse_time_limit). */
    c->upstream_reuse_max_idle = 16;
    c->upstream_reuse_idle_ms = 5 * SEC;
    c->upstream_reuse_age_ms = 300 * SEC;
    /* Some 200 bytes a counter: ~300,000 of them in the memory bound. */
    c->state_max_keys = 1000000;
    c->state_max_memory = 64 * 1024 * 1024;
    c->state_redis_timeout_ms = 500;
    c->state_key_prefix = cfg__strdup(s, "sluice:");
}

static void cfg__parse_file(struct cfg__load *s, const char *path)
{
    buf_t text = BUF_INIT;
    FILE *f = fopen(path, "r");
    if (!f) {
        cfg__err(s, NULL, 0, "cannot open: %s", strerror(errno));
        return;
    }
    char chunk[8192];
    size_t n;
    bool big = false;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (text.len + n > CFG__MAX_FILE) {
            big = true;
            break;
        }
        if (buf_append(&text, chunk, n) != 0) {
            cfg__err(s, NULL, 0, "out of memory");
            break;
        }
    }
    if (ferror(f))
        cfg__err(s, NULL, 0, "read error: %s", strerror(errno));
    fclose(f);
    if (big)
        cfg__err(s, NULL, 0, "file larger than %d bytes", CFG__MAX_FILE);
    if (s->nerrs || s->too_many) {
        buf_free(&text);
        return;
    }

    s->p = text.ptr ? text.ptr : "";
    s->end = s->p + text.len;
    int rc = ini_parse_stream(cfg__read_line, s, cfg__on_key, s);

    /* inih returns only its first syntax error. To list them all, parse
     * again with every line up to the last error blanked out (syntax is
     * per line once indentation is gone), until inih is satisfied. */
    s->syntax_pass = true;
    while (rc > 0 && !s->too_many) {
        cfg__err(s, NULL, rc, "syntax error: expected [section], key = value or a ; comment");
        s->skip_upto = rc;
        s->p = text.ptr ? text.ptr : "";
        s->line = 0;
        rc = ini_parse_stream(cfg__read_line, s, cfg__on_key, s);
        if (rc > 0 && rc <= s->skip_upto)
            break;  /* cannot happen; never loop forever */
    }
    if (rc < 0)
        cfg__err(s, NULL, 0, "out of memory while parsing");
    s->p = s->end = NULL;
    buf_free(&text);
}

static void cfg__apply_overrides(struct cfg__load *s, const struct cfg_overrides *ov)
{
    struct cfg *c = s->c;
    const char *where = "(command line)";
    if (ov->listen) {
        s->listen_override = true;
        struct cfg__addr_list l = {where, "--listen", c->listen, &c->nlisten, CFG_MAX_LISTEN, &s->listen_bad};
        c->nlisten = 0;
        s->listen_bad = false;
        cfg__each_token(s, ov->listen, 0, "--listen", cfg__add_addr, &l);
        if (c->nlisten == 0 && !*ov->listen)
            cfg__err(s, where, 0, "--listen: empty address");
    }
    if (ov->upstream) {
        struct cfg__addr_list l = {where, "--upstream", c->upstream, &c->nupstream, CFG_MAX_UPSTREAM,
                                   &s->upstream_bad};
        c->nupstream = 0;
        s->upstream_bad = false;
        cfg__each_token(s, ov->upstream, 0, "--upstream", cfg__add_addr, &l);
        if (c->nupstream == 0 && !*ov->upstream)
            cfg__err(s, where, 0, "--upstream: empty address");
    }
    if (ov->stats_listen) {
        const char *v = ov->stats_listen;
        struct cfg_addr a;
        char err[400];
        if (!*v || strcmp(v, "no") == 0 || strcmp(v, "off") == 0 || strcmp(v, "none") == 0)
            c->stats_listen[0] = 0;
        else if (cfg_parse_addr(v, &a, err, sizeof err) != 0)
            cfg__err(s, where, 0, "--stats-listen: %s", err);
        else
            snprintf(c->stats_listen, sizeof c->stats_listen, "%s", a.text);
    }
    if (ov->plugin_dir) {
        free(c->plugin_dir);
        c->plugin_dir = *ov->plugin_dir ? cfg__strdup(s, ov->plugin_dir) : NULL;
    }
}

/* The index in c->plugins of instance `name`, added when it is new (the
 * first chain that names it gives its line). SIZE_MAX when full. */
static size_t cfg__instance(struct cfg__load *s, const char *name, int line)
{
    struct cfg *c = s->c;
    for (size_t i = 0; i < c->nplugins; i++)
        if (strcmp(c->plugins[i].name, name) == 0)
            return i;
    if (c->nplugins >= CFG_MAX_PLUGINS) {
        cfg__err(s, NULL, line, "more than %d plugin instances in all chains", CFG_MAX_PLUGINS);
        return SIZE_MAX;
    }
    struct cfg_plugin *p = &c->plugins[c->nplugins];
    const struct cfg__psec *ps = NULL;
    for (size_t j = 0; j < s->npsecs; j++)
        if (strcmp(s->psecs[j].name, name) == 0)
            ps = &s->psecs[j];
    if (ps) {
        *p = ps->p;
        p->path = NULL;
    } else {
        cfg__plugin_defaults(p);
    }
    p->name = cfg__strdup(s, name);
    p->path = cfg__strdup(s, ps && ps->p.path ? ps->p.path : name);
    p->line = line;
    return c->nplugins++;
}

/* A listener's chain as indexes into c->plugins. */
static void cfg__listener_chain(struct cfg__load *s, struct cfg_listener *l, char **names, size_t n,
                                int line)
{
    l->nchain = 0;
    for (size_t i = 0; i < n; i++) {
        size_t idx = cfg__instance(s, names[i], line);
        if (idx != SIZE_MAX)
            l->chain[l->nchain++] = idx;
    }
}

static int cfg__lseen(const struct cfg__lsec *ls, const char *key);

static char *cfg__strdup_or_null(struct cfg__load *s, const char *text)
{
    return text ? cfg__strdup(s, text) : NULL;
}

static void cfg__tls_free(struct cfg_tls_policy *p)
{
    free(p->ciphers);
    free(p->ciphersuites);
    for (size_t i = 0; i < p->nsni; i++) {
        free(p->sni[i].host);
        free(p->sni[i].cert_file);
        free(p->sni[i].key_file);
    }
    free(p->sni);
    free(p->client_ca_file);
    free(p->client_fingerprints);
    memset(p, 0, sizeof *p);
}

/* The TLS policy keys section `ls` (NULL: the "default" listener) left
 * unset take [server]'s values. */
static void cfg__tls_inherit(struct cfg__load *s, struct cfg_tls_policy *p,
                             const struct cfg__lsec *ls)
{
    const struct cfg_tls_policy *d = &s->c->tlsp;
#define CFG__TLS_UNSET(key) (!ls || !cfg__lseen(ls, key))
    if (CFG__TLS_UNSET("tls_min_protocol"))
        p->min_protocol = d->min_protocol;
    if (CFG__TLS_UNSET("tls_ciphers"))
        p->ciphers = cfg__strdup_or_null(s, d->ciphers);
    if (CFG__TLS_UNSET("tls_ciphersuites"))
        p->ciphersuites = cfg__strdup_or_null(s, d->ciphersuites);
    if (CFG__TLS_UNSET("tls_sni") && d->nsni && (p->sni = calloc(d->nsni, sizeof *p->sni))) {
        for (size_t i = 0; i < d->nsni; i++)
            p->sni[i] = (struct cfg_tls_sni){cfg__strdup(s, d->sni[i].host),
                                             cfg__strdup(s, d->sni[i].cert_file),
                                             cfg__strdup(s, d->sni[i].key_file), d->sni[i].line};
        p->nsni = d->nsni;
    }
    if (CFG__TLS_UNSET("tls_verify_client"))
        p->verify_client = d->verify_client;
    if (CFG__TLS_UNSET("tls_client_ca_file"))
        p->client_ca_file = cfg__strdup_or_null(s, d->client_ca_file);
    if (CFG__TLS_UNSET("tls_client_fingerprints"))
        p->client_fingerprints = cfg__strdup_or_null(s, d->client_fingerprints);
    if (CFG__TLS_UNSET("tls_session_tickets"))
        p->session_tickets = d->session_tickets;
#undef CFG__TLS_UNSET
}

/* Effective values: what a listener leaves unset is [server]'s. */
static void cfg__listener_inherit(struct cfg__load *s, struct cfg_listener *l)
{
    struct cfg *c = s->c;
    if (!l->tls_cert_file && !l->tls_key_file) {
        if (c->tls_cert_file)
            l->tls_cert_file = cfg__strdup(s, c->tls_cert_file);
        if (c->tls_key_file)
            l->tls_key_file = cfg__strdup(s, c->tls_key_file);
    }
    if (l->tls == CFG_TLS_AUTO)
        l->tls = l->tls_cert_file && l->tls_key_file ? CFG_TLS_STARTTLS : CFG_TLS_NONE;
    if (!l->max_message_size)
        l->max_message_size = c->max_message_size;
    if (!l->max_recipients)
        l->max_recipients = c->max_recipients;
}

/* ---- SMTP AUTH keys ([server] defaults, [listener NAME] overrides) ---- */

/* Where an AUTH key of listener l was set: its section's line, else
 * [server]'s, else l's header. ls is NULL for "default". */
static int cfg__auth_own(const struct cfg__lsec *ls, const char *key)
{
    for (size_t i = 0; ls && i < CFG_KEYS_LISTENER_N; i++)
        if (strcmp(cfg_keys_listener[i].name, key) == 0)
            return ls->seen[i];
    return 0;
}

static int cfg__auth_line(const struct cfg__load *s, const struct cfg__lsec *ls,
                          const struct cfg_listener *l, const char *key)
{
    int line = cfg__auth_own(ls, key);
    if (!line)
        line = cfg__seen_line(s, SEC_SERVER, key);
    return line ? line : l->line;
}

/* What the section (ls; NULL: "default") left unset is [server]'s. */
static void cfg__auth_inherit(struct cfg__load *s, const struct cfg__lsec *ls,
                              struct cfg_listener *l)
{
    const struct cfg_auth *d = &s->c->auth;
    struct cfg_auth *a = &l->auth;
#define CFG__SET(key) (cfg__auth_own(ls, key) != 0)
    if (!CFG__SET("auth"))
        a->mode = d->mode;
    if (!CFG__SET("auth_socket"))
        a->socket = d->socket ? cfg__strdup(s, d->socket) : NULL;
    if (!CFG__SET("auth_plaintext"))
        a->plaintext = d->plaintext;
    if (!CFG__SET("require_auth"))
        a->require = d->require;
    if (!CFG__SET("auth_max_failures"))
        a->max_failures = d->max_failures;
#undef CFG__SET
}

/* "/path" (a unix socket) or a numeric "ip:port" / "[v6]:port", as
 * dvauth_client_new() takes it. */
static bool cfg__auth_socket_ok(const char *v, char *err, size_t errlen)
{
    if (v[0] == '/') {
        if (strlen(v) >= 108)
            snprintf(err, errlen, "socket path too long");
        return strlen(v) < 108;
    }
    struct cfg_addr a;
    if (strncmp(v, "unix:", 5) == 0 || cfg_parse_addr(v, &a, err, errlen) != 0 ||
        strcmp(a.host, "localhost") == 0) {
        snprintf(err, errlen, "'%s' is neither /path nor a numeric ip:port", v);
        return false;
    }
    return true;
}

static void cfg__check_auth(struct cfg__load *s, const struct cfg__lsec *ls,
                            const struct cfg_listener *l)
{
    const struct cfg_auth *a = &l->auth;
    const char *n = l->name;
    char err[300] = "";
    if (a->mode == CFG_AUTH_DOVECOT && !a->socket)
        cfg__err(s, NULL, cfg__auth_line(s, ls, l, "auth"),
                 "[listener %s] auth = dovecot needs auth_socket (Dovecot's auth-client socket)",
                 n);
    if (a->socket && !cfg__auth_socket_ok(a->socket, err, sizeof err))
        cfg__err(s, NULL, cfg__auth_line(s, ls, l, "auth_socket"), "[listener %s] auth_socket: %s",
                 n, err);
    if (a->require && a->mode == CFG_AUTH_NONE)
        cfg__err(s, NULL, cfg__auth_line(s, ls, l, "require_auth"),
                 "[listener %s] require_auth = yes with auth = none: no client could send mail", n);
    if (a->mode == CFG_AUTH_DOVECOT && !a->plaintext && l->tls == CFG_TLS_NONE &&
        !l->proxy_protocol) /* a proxy that ends TLS says so in its header */
        cfg__err(s, NULL, cfg__auth_line(s, ls, l, "auth"),
                 "[listener %s] auth = dovecot with tls = none and auth_plaintext = no: AUTH "
                 "would never be offered",
                 n);
}

/* The listeners: "default" from [server] listen (unless only [listener]
 * sections listen: a [server] listen left at its default then binds
 * nothing), then the sections in file order. */
static void cfg__listeners(struct cfg__load *s)
{
    struct cfg *c = s->c;
    bool with_default =
        s->nlsecs == 0 || s->listen_override || cfg__seen_line(s, SEC_SERVER, "listen") != 0;
    c->listeners = calloc(s->nlsecs + 1, sizeof *c->listeners);
    if (!c->listeners) {
        cfg__err(s, NULL, 0, "out of memory");
        return;
    }
    if (with_default) {
        struct cfg_listener *l = &c->listeners[c->nlisteners++];
        snprintf(l->name, sizeof l->name, "default");
        memcpy(l->listen, c->listen, c->nlisten * sizeof c->listen[0]);
        l->nlisten = c->nlisten;
        for (size_t i = 0; i < c->nchain_plugins; i++)
            l->chain[l->nchain++] = i; /* [chain] plugins come first in c->plugins */
        cfg__listener_inherit(s, l);
        cfg__auth_inherit(s, NULL, l);
        cfg__tls_inherit(s, &l->tlsp, NULL);
    }
    for (size_t i = 0; i < s->nlsecs; i++) {
        struct cfg__lsec *ls = &s->lsecs[i];
        struct cfg_listener *l = &c->listeners[c->nlisteners++];
        *l = ls->l;
        /* the strings move to the cfg */
        ls->l.tls_cert_file = ls->l.tls_key_file = ls->l.proxy_trusted = NULL;
        ls->l.auth.socket = NULL;
        memset(&ls->l.tlsp, 0, sizeof ls->l.tlsp);
        if (ls->chain_line)
            cfg__listener_chain(s, l, ls->chain, ls->nchain, ls->chain_line);
        else
            for (size_t j = 0; j < c->nchain_plugins; j++)
                l->chain[l->nchain++] = j;
        cfg__listener_inherit(s, l);
        cfg__auth_inherit(s, ls, l);
        cfg__tls_inherit(s, &l->tlsp, ls);
    }
}

/* Defaults that depend on other keys, and the plugin chain. */
static void cfg__finish(struct cfg__load *s)
{
    struct cfg *c = s->c;
    struct stat st;

    if (!c->upstream_helo)
        c->upstream_helo = cfg__strdup(s, c->hostname);
    if (!c->spool_dir) {
        const char *tmp = getenv("TMPDIR");
        if (stat("/var/spool/sluice", &st) == 0 && S_ISDIR(st.st_mode))
            c->spool_dir = cfg__strdup(s, "/var/spool/sluice");
        else
            c->spool_dir = cfg__strdup(s, tmp && *tmp ? tmp : "/tmp");
    }

    for (size_t i = 0; i < s->nchain; i++)
        cfg__instance(s, s->chain[i], s->chain_line);
    c->nchain_plugins = c->nplugins;
    for (size_t i = 0; i < s->nlsecs; i++)
        for (size_t j = 0; j < s->lsecs[i].nchain; j++)
            cfg__instance(s, s->lsecs[i].chain[j], s->lsecs[i].chain_line);
    cfg__listeners(s);
}

/* Checks against the system: files, directories, accounts. */
static void cfg__check_dir(struct cfg__load *s, const char *key, const char *dir, int line, int mode)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        cfg__err(s, NULL, line, "%s '%s': %s", key, dir, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        cfg__err(s, NULL, line, "%s '%s': not a directory", key, dir);
    else if (mode && access(dir, mode) != 0)
        cfg__err(s, NULL, line, "%s '%s': not writable: %s", key, dir, strerror(errno));
}

static bool cfg__same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* A TLS file the running configuration names (so the server loaded it). */
static bool cfg__tls_loaded(const struct cfg *run, const char *file)
{
    if (!run)
        return false;
    if (cfg__same(file, run->tls_cert_file) || cfg__same(file, run->tls_key_file))
        return true;
    for (size_t i = 0; i < run->nlisteners; i++) {
        const struct cfg_listener *l = &run->listeners[i];
        if (l->tls == CFG_TLS_NONE)
            continue;
        if (cfg__same(file, l->tls_cert_file) || cfg__same(file, l->tls_key_file))
            return true;
        for (size_t j = 0; j < l->tlsp.nsni; j++)
            if (cfg__same(file, l->tlsp.sni[j].cert_file) ||
                cfg__same(file, l->tlsp.sni[j].key_file))
                return true;
    }
    return false;
}

/* tls_file: a TLS certificate or key the server may keep from start. */
static void cfg__check_file(struct cfg__load *s, const char *key, const char *file, int line,
                            bool tls_file)
{
    struct stat st;
    if (tls_file && access(file, R_OK) != 0 && errno == EACCES && s->loaded &&
        cfg__tls_loaded(s->loaded->loaded_tls, file))
        return; /* loaded before the privilege drop; the server keeps it */
    if (access(file, R_OK) != 0)
        cfg__err(s, NULL, line, "%s '%s': cannot read: %s", key, file, strerror(errno));
    else if (stat(file, &st) == 0 && S_ISDIR(st.st_mode))
        cfg__err(s, NULL, line, "%s '%s': is a directory", key, file);
}

static int cfg__lseen(const struct cfg__lsec *ls, const char *key)
{
    for (size_t i = 0; i < CFG_KEYS_LISTENER_N; i++)
        if (strcmp(cfg_keys_listener[i].name, key) == 0)
            return ls->seen[i];
    return 0;
}

/* The TLS policy keys set in [server] (ls NULL) or in section ls: each
 * value is checked once, on the line that sets it. */
static void cfg__check_tls_keys(struct cfg__load *s, const struct cfg__lsec *ls,
                                const struct cfg_tls_policy *p)
{
#define CFG__TLS_LINE(key) (ls ? cfg__lseen(ls, key) : cfg__seen_line(s, SEC_SERVER, key))
    char err[300];
    int line;
    if ((line = CFG__TLS_LINE("tls_ciphers")) && p->ciphers &&
        tlssrv_check_ciphers(p->ciphers, false, err, sizeof err) != 0)
        cfg__err(s, NULL, line, "'tls_ciphers': %s", err);
    if ((line = CFG__TLS_LINE("tls_ciphersuites")) && p->ciphersuites &&
        tlssrv_check_ciphers(p->ciphersuites, true, err, sizeof err) != 0)
        cfg__err(s, NULL, line, "'tls_ciphersuites': %s", err);
    if (CFG__TLS_LINE("tls_sni"))
        for (size_t i = 0; i < p->nsni; i++) {
            cfg__check_file(s, "tls_sni certificate", p->sni[i].cert_file, p->sni[i].line, true);
            cfg__check_file(s, "tls_sni key", p->sni[i].key_file, p->sni[i].line, true);
        }
    if ((line = CFG__TLS_LINE("tls_client_ca_file")) && p->client_ca_file)
        cfg__check_file(s, "tls_client_ca_file", p->client_ca_file, line, false);
    if ((line = CFG__TLS_LINE("tls_client_fingerprints")) && p->client_fingerprints) {
        uint8_t fps[TLSPOL_MAX_FPS][TLSPOL_FP_LEN];
        size_t n;
        if (tlspol_fp_parse(p->client_fingerprints, fps, TLSPOL_MAX_FPS, &n, err, sizeof err))
            cfg__err(s, NULL, line, "'tls_client_fingerprints': %s", err);
    }
#undef CFG__TLS_LINE
}

/* A listener's effective policy: client certificates need something to
 * be checked against. */
static void cfg__check_tls_listener(struct cfg__load *s, const struct cfg_listener *l)
{
    const struct cfg_tls_policy *p = &l->tlsp;
    if (l->tls == CFG_TLS_NONE || p->verify_client == CFG_TLS_VERIFY_NO || p->client_ca_file ||
        p->client_fingerprints)
        return;
    const struct cfg__lsec *ls = NULL;
    for (size_t i = 0; i < s->nlsecs; i++)
        if (strcmp(s->lsecs[i].l.name, l->name) == 0)
            ls = &s->lsecs[i];
    int line = ls ? cfg__lseen(ls, "tls_verify_client") : 0;
    if (!line)
        line = cfg__seen_line(s, SEC_SERVER, "tls_verify_client");
    cfg__err(s, NULL, line,
             "[listener %s] tls_verify_client = %s needs tls_client_ca_file or "
             "tls_client_fingerprints (here or in [server])",
             l->name, p->verify_client == CFG_TLS_VERIFY_REQUIRE ? "require" : "optional");
}

/* One [listener NAME] section (l is its loaded form). */
static void cfg__check_listener(struct cfg__load *s, const struct cfg__lsec *ls,
                                struct cfg_listener *l)
{
    const char *n = l->name;
    if (l->nlisten == 0 && !ls->listen_bad)
        cfg__err(s, NULL, cfg__lseen(ls, "listen") ? cfg__lseen(ls, "listen") : l->line,
                 "[listener %s] no listen address", n);
    int lc = cfg__lseen(ls, "tls_cert_file"), lk = cfg__lseen(ls, "tls_key_file");
    if (!lc != !lk)
        cfg__err(s, NULL, lc ? lc : lk,
                 "[listener %s] tls_cert_file and tls_key_file go together: set both or neither",
                 n);
    if (lc && l->tls_cert_file)
        cfg__check_file(s, "tls_cert_file", l->tls_cert_file, lc, true);
    if (lk && l->tls_key_file)
        cfg__check_file(s, "tls_key_file", l->tls_key_file, lk, true);
    int lt = cfg__lseen(ls, "tls");
    if ((l->tls == CFG_TLS_STARTTLS || l->tls == CFG_TLS_IMPLICIT) &&
        (!l->tls_cert_file || !l->tls_key_file))
        cfg__err(s, NULL, lt ? lt : l->line,
                 "[listener %s] tls = %s needs a certificate: tls_cert_file and tls_key_file "
                 "here or in [server]",
                 n, l->tls == CFG_TLS_IMPLICIT ? "implicit" : "starttls");
    int lr = cfg__lseen(ls, "require_tls");
    if (l->require_tls && l->tls == CFG_TLS_NONE && !l->proxy_protocol)
        /* Behind a proxy that ends TLS (its PROXY v2 header says so) the
         * combination is the point; anywhere else nobody could send. */
        cfg__err(s, NULL, lr,
                 "[listener %s] require_tls = yes with tls = none: no client could send mail", n);
    int lp = cfg__lseen(ls, "proxy_protocol"), lpt = cfg__lseen(ls, "proxy_trusted");
    if (l->proxy_trusted) {
        char err[300];
        if (cidr_list_parse(l->proxy_trusted, 0, &l->proxy_nets, err, sizeof err) != 0)
            cfg__err(s, NULL, lpt, "[listener %s] proxy_trusted: %s", n, err);
        else if (l->proxy_nets.n == 0)
            cfg__err(s, NULL, lpt, "[listener %s] proxy_trusted: no network given", n);
    }
    cfg__check_tls_keys(s, ls, &l->tlsp);
    if (l->proxy_protocol && !l->proxy_trusted)
        cfg__err(s, NULL, lp,
                 "[listener %s] proxy_protocol = yes needs proxy_trusted: the addresses of the "
                 "proxies allowed to name the client",
                 n);
}

/* An address two listeners (or one twice) would bind. */
static void cfg__check_listen_unique(struct cfg__load *s)
{
    const struct cfg *c = s->c;
    for (size_t i = 0; i < c->nlisteners; i++)
        for (size_t a = 0; a < c->listeners[i].nlisten; a++)
            for (size_t j = i + 1; j < c->nlisteners; j++)
                for (size_t b = 0; b < c->listeners[j].nlisten; b++)
                    if (strcmp(c->listeners[i].listen[a].text, c->listeners[j].listen[b].text) ==
                        0) {
                        const struct cfg_listener *lj = &c->listeners[j];
                        size_t k = 0;
                        while (k < s->nlsecs && strcmp(s->lsecs[k].l.name, lj->name) != 0)
                            k++;
                        int line = k < s->nlsecs ? cfg__lseen(&s->lsecs[k], "listen") : 0;
                        cfg__err(s, NULL, line, "[listener %s] listen %s: already used by %s%s%s",
                                 lj->name, lj->listen[b].text,
                                 strcmp(c->listeners[i].name, "default") == 0 ? "[server] listen"
                                                                              : "[listener ",
                                 strcmp(c->listeners[i].name, "default") == 0
                                     ? ""
                                     : c->listeners[i].name,
                                 strcmp(c->listeners[i].name, "default") == 0 ? "" : "]");
                    }
}

static void cfg__check(struct cfg__load *s)
{
    struct cfg *c = s->c;
    int l;

    if (c->nlisten == 0 && !s->listen_bad && cfg_listener_find(c, "default"))
        cfg__err(s, NULL, cfg__seen_line(s, SEC_SERVER, "listen"), "no listen address");
    for (size_t i = 0; i < s->nlsecs; i++) {
        for (size_t j = 0; j < c->nlisteners; j++)
            if (strcmp(c->listeners[j].name, s->lsecs[i].l.name) == 0)
                cfg__check_listener(s, &s->lsecs[i], &c->listeners[j]);
    }
    for (size_t i = 0; i < c->nlisteners; i++) {
        const struct cfg__lsec *ls = NULL;
        for (size_t j = 0; j < s->nlsecs; j++)
            if (strcmp(s->lsecs[j].l.name, c->listeners[i].name) == 0)
                ls = &s->lsecs[j];
        cfg__check_auth(s, ls, &c->listeners[i]);
    }
    cfg__check_listen_unique(s);
    cfg__check_tls_keys(s, NULL, &c->tlsp);
    for (size_t i = 0; i < c->nlisteners; i++)
        cfg__check_tls_listener(s, &c->listeners[i]);
    if (c->nupstream == 0 && !s->upstream_bad)
        cfg__err(s, NULL, cfg__seen_line(s, SEC_UPSTREAM, "servers"), "no upstream server");
    if (c->state_backend == 1 /* redis */ && !c->state_redis)
        cfg__err(s, NULL, cfg__seen_line(s, SEC_STATE, "backend"),
                 "[state] backend = redis needs 'redis' (IP:PORT or unix:/PATH)");
    if (c->state_redis) {
        char rerr[256];
        if (state_redis_addr_check(c->state_redis, rerr, sizeof rerr) != 0)
            cfg__err(s, NULL, cfg__seen_line(s, SEC_STATE, "redis"), "%s", rerr);
    }
    if (c->state_redis_user && !c->state_redis_password_file)
        cfg__err(s, NULL, cfg__seen_line(s, SEC_STATE, "redis_user"),
                 "'redis_user' needs 'redis_password_file' (AUTH user password)");

    int lc = cfg__seen_line(s, SEC_SERVER, "tls_cert_file");
    int lk = cfg__seen_line(s, SEC_SERVER, "tls_key_file");
    if (!c->tls_cert_file != !c->tls_key_file)
        cfg__err(s, NULL, c->tls_cert_file ? lc : lk,
                 "tls_cert_file and tls_key_file go together: set both (STARTTLS) or neither");
    if (c->tls_cert_file)
        cfg__check_file(s, "tls_cert_file", c->tls_cert_file, lc, true);
    if (c->tls_key_file)
        cfg__check_file(s, "tls_key_file", c->tls_key_file, lk, true);
    if (c->upstream_tls_ca_file)
        cfg__check_file(s, "tls_ca_file", c->upstream_tls_ca_file,
                        cfg__seen_line(s, SEC_UPSTREAM, "tls_ca_file"), false);

    if (c->spool_dir)
        cfg__check_dir(s, "spool_dir", c->spool_dir, cfg__seen_line(s, SEC_SERVER, "spool_dir"),
                       W_OK | X_OK);
    if (c->quarantine_dir)
        cfg__check_dir(s, "quarantine_dir", c->quarantine_dir,
                       cfg__seen_line(s, SEC_SERVER, "quarantine_dir"), W_OK | X_OK);
    if (c->plugin_dir) {
        l = cfg__seen_line(s, SEC_SERVER, "plugin_dir");
        cfg__check_dir(s, "plugin_dir", c->plugin_dir, l, 0);
    }

    if (c->dns_servers) {
        char csv[DNS_SERVERS_MAX], err[200];
        if (dns_parse_servers(c->dns_servers, csv, sizeof csv, err, sizeof err) != 0)
            cfg__err(s, NULL, cfg__seen_line(s, SEC_SERVER, "dns_servers"), "'dns_servers': %s",
                     err);
    }

    if (c->user) {
        errno = 0;
        if (!getpwnam(c->user))
            cfg__err(s, NULL, cfg__seen_line(s, SEC_SERVER, "user"), "user '%s' does not exist%s%s",
                     c->user, errno ? ": " : "", errno ? strerror(errno) : "");
    }
    if (c->group) {
        errno = 0;
        if (!getgrnam(c->group))
            cfg__err(s, NULL, cfg__seen_line(s, SEC_SERVER, "group"), "group '%s' does not exist%s%s",
                     c->group, errno ? ": " : "", errno ? strerror(errno) : "");
    }
}

static void cfg__free(struct cfg *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nlisteners; i++) {
        free(c->listeners[i].tls_cert_file);
        free(c->listeners[i].tls_key_file);
        free(c->listeners[i].proxy_trusted);
        cidr_list_free(&c->listeners[i].proxy_nets);
        free(c->listeners[i].auth.socket);
        cfg__tls_free(&c->listeners[i].tlsp);
    }
    free(c->listeners);
    free(c->auth.socket);
    cfg__tls_free(&c->tlsp);
    free(c->path);
    free(c->banner);
    free(c->spool_dir);
    free(c->tls_cert_file);
    free(c->tls_key_file);
    free(c->user);
    free(c->group);
    free(c->plugin_dir);
    free(c->quarantine_dir);
    free(c->dns_servers);
    free(c->stats_allowed_hosts);
    free(c->console_users); /* [console] */
    free(c->console_allowed_hosts);
    free(c->stats_token_file);
    free(c->state_redis);
    free(c->state_redis_user);
    free(c->state_redis_password_file);
    free(c->state_key_prefix);
    free(c->upstream_helo);
    free(c->upstream_tls_ca_file);
    free(c->upstream_tls_verify_name);
    for (size_t i = 0; i < c->nplugins; i++) {
        free(c->plugins[i].name);
        free(c->plugins[i].path);
    }
    for (size_t i = 0; i < c->nkv; i++) {
        free(c->kv[i].section);
        free(c->kv[i].key);
        free(c->kv[i].value);
    }
    free(c->kv);
    free(c);
}

struct cfg *cfg_load(const char *path, const struct cfg_overrides *ov, buf_t *errors)
{
    struct cfg__load s;
    memset(&s, 0, sizeof s);
    s.file = path ? path : "(defaults)";
    s.sec_checked = -1;

    struct cfg *c = calloc(1, sizeof *c);
    if (!c) {
        if (errors)
            buf_printf(errors, "%s: out of memory\n", s.file);
        return NULL;
    }
    c->refs = 1;
    s.c = c;

    cfg__defaults(&s);
    if (path) {
        c->path = cfg__strdup(&s, path);
        cfg__parse_file(&s, path);
    }
    if (ov)
        cfg__apply_overrides(&s, ov);
    s.loaded = ov;
    cfg__finish(&s);
    cfg__check(&s);

    bool ok = s.nerrs == 0 && !s.too_many;
    if (s.nerrs)
        qsort(s.errs, s.nerrs, sizeof *s.errs, cfg__err_cmp);
    for (size_t i = 0; i < s.nerrs; i++) {
        if (errors)
            buf_printf(errors, "%s\n", s.errs[i].msg);
        free(s.errs[i].msg);
    }
    if (s.too_many && errors)
        buf_printf(errors, "%s: too many errors, stopped after %d\n", s.file, CFG__MAX_ERRORS);
    free(s.errs);
    for (size_t i = 0; i < s.npsecs; i++) {
        free(s.psecs[i].name);
        free(s.psecs[i].p.path);
    }
    free(s.psecs);
    for (size_t i = 0; i < s.nchain; i++)
        free(s.chain[i]);
    for (size_t i = 0; i < s.nlsecs; i++) {
        for (size_t j = 0; j < s.lsecs[i].nchain; j++)
            free(s.lsecs[i].chain[j]);
        free(s.lsecs[i].l.tls_cert_file);
        free(s.lsecs[i].l.tls_key_file);
        free(s.lsecs[i].l.proxy_trusted);
        free(s.lsecs[i].l.auth.socket);
        cfg__tls_free(&s.lsecs[i].l.tlsp);
    }
    free(s.lsecs);

    if (!ok) {
        cfg__free(c);
        return NULL;
    }
    return c;
}

struct cfg *cfg_ref(struct cfg *c)
{
    if (c)
        c->refs++;
    return c;
}

void cfg_unref(struct cfg *c)
{
    if (c && --c->refs <= 0)
        cfg__free(c);
}

const struct cfg_listener *cfg_listener_find(const struct cfg *c, const char *name)
{
    for (size_t i = 0; i < c->nlisteners; i++)
        if (strcmp(c->listeners[i].name, name) == 0)
            return &c->listeners[i];
    return NULL;
}

const char *cfg_get(const struct cfg *c, const char *section, const char *key, int *line)
{
    /* The last occurrence wins, as for any repeated INI key. */
    for (size_t i = c->nkv; i-- > 0;) {
        const struct cfg_kv *kv = &c->kv[i];
        if (strcmp(kv->section, section) == 0 && strcmp(kv->key, key) == 0) {
            if (line)
                *line = kv->line;
            return kv->value;
        }
    }
    return NULL;
}
