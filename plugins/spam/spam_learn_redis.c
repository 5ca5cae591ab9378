/* SPDX-License-Identifier: GPL-2.0-or-later */
/* spam_learn_redis: see spam_learn_redis.h. */
#include "spam_learn_redis.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "pstr.h"
#include "spam_bayes_kv.h"

struct spam_learn_redis {
    redisContext *c;
    char *base;        /* key_prefix + instance + ":" */
    char seen_ttl[24]; /* ms, for SET PX of the guard keys */
    char err[512];
};

/* KEYS: seen, nspam, nham, tokens...; ARGV[1]: s, h or f (forget);
 * ARGV[2], ARGV[3]: the caps of the spam and ham halves (saturating: a
 * half at its cap stays there; with spam * 2^32 + ham kept under 2^53,
 * the arithmetic in Lua's doubles stays exact); ARGV[4]: the guard key's
 * time to live (ms). Returns enum spam_bayes_learn: 0 learned, 1 moved, 2
 * already, 3 forgotten, 4 unknown.
 *
 * A script's writes are not rolled back when it stops: every value is
 * read and checked first (a guard of s or h; counts in Redis's integer
 * grammar under 2^53, a negative one read as 0 like spam_bayes_kv_decode),
 * the error names the key, and only then is anything written. */
static const char SPAM_LEARN_REDIS__SCRIPT[] =
    "local P = 4294967296 "
    "local SMAX = tonumber(ARGV[2]) local HMAX = tonumber(ARGV[3]) "
    "local prev = redis.call('GET', KEYS[1]) "
    "if prev and prev ~= 's' and prev ~= 'h' then "
    "  return redis.error_reply('ERR ' .. KEYS[1] .. ' holds neither s nor h') end "
    "local val = {} "
    "for i = 2, #KEYS do "
    "  local v = redis.call('GET', KEYS[i]) local x = 0 "
    "  if v and v ~= '0' then "
    "    local neg, d = string.match(v, '^(%-?)([1-9]%d*)$') "
    "    if not d or #d > 16 or (#d == 16 and d > '9007199254740991') then "
    "      return redis.error_reply('ERR ' .. KEYS[i] .. ' does not hold a count') end "
    "    if neg == '' then x = tonumber(d) end end "
    "  val[i] = x end "
    "local function apply(cls, sign) "
    "  local ti = 3 if cls == 's' then ti = 2 end "
    "  val[ti] = val[ti] + sign if val[ti] < 0 then val[ti] = 0 end "
    "  for i = 4, #KEYS do "
    "    local v = val[i] "
    "    local s = math.floor(v / P) local h = v - s * P "
    "    if cls == 's' then if sign < 0 or s < SMAX then s = s + sign end "
    "    elseif sign < 0 or h < HMAX then h = h + sign end "
    "    if s < 0 then s = 0 end if h < 0 then h = 0 end "
    "    val[i] = s * P + h "
    "  end "
    "end "
    "local function store() "
    "  for i = 2, 3 do redis.call('SET', KEYS[i], string.format('%d', val[i])) end "
    "  for i = 4, #KEYS do "
    "    if val[i] == 0 then redis.call('DEL', KEYS[i]) "
    "    else redis.call('SET', KEYS[i], string.format('%d', val[i])) end "
    "  end "
    "end "
    "local mode = ARGV[1] "
    "if mode == 'f' then "
    "  if not prev then return 4 end "
    "  apply(prev, -1) store() redis.call('DEL', KEYS[1]) return 3 end "
    "if prev == mode then return 2 end "
    "if prev then apply(prev, -1) apply(mode, 1) store() "
    "  redis.call('SET', KEYS[1], mode, 'PX', ARGV[4]) return 1 end "
    "apply(mode, 1) store() redis.call('SET', KEYS[1], mode, 'PX', ARGV[4]) return 0";

static int spam_learn_redis__parse_addr(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(addr, ':');
    char *end;
    long p = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || colon == addr || *end || p < 1 || p > 65535)
        return -1;
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= hostlen)
        return -1;
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (int)p;
    return 0;
}

/* A command's reply, or NULL with r->err filled. */
static redisReply *spam_learn_redis__cmd(struct spam_learn_redis *r, int argc, const char **argv,
                                         const size_t *len)
{
    redisReply *rp = redisCommandArgv(r->c, argc, argv, len);
    if (!rp) {
        snprintf(r->err, sizeof r->err, "redis: %s", r->c->errstr);
        return NULL;
    }
    if (rp->type == REDIS_REPLY_ERROR) {
        snprintf(r->err, sizeof r->err, "redis: %.400s", rp->str);
        freeReplyObject(rp);
        return NULL;
    }
    return rp;
}

struct spam_learn_redis *spam_learn_redis_open(const struct spam_learn_redis_conf *c, char *err,
                                               size_t errlen)
{
    struct timeval tv = {5, 0};
    redisContext *rc;
    if (strncmp(c->addr, "unix:", 5) == 0) {
        rc = redisConnectUnixWithTimeout(c->addr + 5, tv);
    } else {
        char host[256];
        int port;
        if (spam_learn_redis__parse_addr(c->addr, host, sizeof host, &port) != 0) {
            snprintf(err, errlen, "--redis %s: expected HOST:PORT, [IPv6]:PORT or unix:/PATH",
                     c->addr);
            return NULL;
        }
        rc = redisConnectWithTimeout(host, port, tv);
    }
    if (!rc || rc->err) {
        snprintf(err, errlen, "redis %s: %s", c->addr, rc ? rc->errstr : "out of memory");
        redisFree(rc);
        return NULL;
    }
    redisSetTimeout(rc, tv);
    struct spam_learn_redis *r = pstr_xcalloc(1, sizeof *r);
    r->c = rc;
    snprintf(r->seen_ttl, sizeof r->seen_ttl, "%" PRIu64,
             (uint64_t)(c->seen_days ? c->seen_days : 30) * 86400000u);
    struct pstr b = PSTR_INIT;
    pstr_printf(&b, "%s%s:", c->key_prefix, c->instance);
    r->base = pstr_steal(&b);
    if (c->password_file) {
        char pw[1024];
        FILE *f = fopen(c->password_file, "r");
        if (!f || !fgets(pw, sizeof pw, f)) {
            snprintf(err, errlen, "%s: %s", c->password_file, f ? "empty" : strerror(errno));
            if (f)
                fclose(f);
            spam_learn_redis_close(r);
            return NULL;
        }
        fclose(f);
        pw[strcspn(pw, "\r\n")] = 0;
        const char *argv[3] = {"AUTH", c->user ? c->user : pw, pw};
        redisReply *rp = spam_learn_redis__cmd(r, c->user ? 3 : 2, argv, NULL);
        memset(pw, 0, sizeof pw);
        if (!rp) {
            snprintf(err, errlen, "AUTH: %s", r->err);
            spam_learn_redis_close(r);
            return NULL;
        }
        freeReplyObject(rp);
    }
    if (c->db) {
        char db[16];
        snprintf(db, sizeof db, "%u", c->db);
        const char *argv[2] = {"SELECT", db};
        redisReply *rp = spam_learn_redis__cmd(r, 2, argv, NULL);
        if (!rp) {
            snprintf(err, errlen, "SELECT: %s", r->err);
            spam_learn_redis_close(r);
            return NULL;
        }
        freeReplyObject(rp);
    }
    return r;
}

void spam_learn_redis_close(struct spam_learn_redis *r)
{
    if (!r)
        return;
    redisFree(r->c);
    free(r->base);
    free(r);
}

const char *spam_learn_redis_error(const struct spam_learn_redis *r)
{
    return r->err;
}

/* base + key for each of n keys into one block: the pointer array first. */
static char **spam_learn_redis__keys(const struct spam_learn_redis *r, const char *const *k,
                                     size_t n)
{
    size_t bl = strlen(r->base), bytes = n * sizeof(char *);
    for (size_t i = 0; i < n; i++)
        bytes += bl + strlen(k[i]) + 1;
    char **out = pstr_xmalloc(bytes);
    char *p = (char *)(out + n);
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(k[i]);
        memcpy(p, r->base, bl);
        memcpy(p + bl, k[i], kl + 1);
        out[i] = p;
        p += bl + kl + 1;
    }
    return out;
}

/* The short keys (without the base) of a message: first `fixed`, then the
 * tokens; *buf holds the token keys. */
static const char **spam_learn_redis__short(const char *const *fixed, size_t nf,
                                            const uint64_t *tok, size_t n, char **buf)
{
    const char **k = pstr_xcalloc(nf + n + 1, sizeof *k);
    *buf = pstr_xmalloc((n ? n : 1) * SPAM_BAYES_KV_KEY_MAX);
    for (size_t i = 0; i < nf; i++)
        k[i] = fixed[i];
    for (size_t i = 0; i < n; i++) {
        spam_bayes_kv_token_key(tok[i], *buf + i * SPAM_BAYES_KV_KEY_MAX);
        k[nf + i] = *buf + i * SPAM_BAYES_KV_KEY_MAX;
    }
    return k;
}

enum spam_bayes_learn spam_learn_redis_learn(struct spam_learn_redis *r, uint64_t id,
                                             const uint64_t *tok, size_t n, bool spam, bool forget)
{
    char seen[SPAM_BAYES_KV_KEY_MAX], nk[24];
    spam_bayes_kv_seen_key(id, seen);
    const char *fixed[3] = {seen, SPAM_BAYES_KV_NSPAM, SPAM_BAYES_KV_NHAM};
    char *buf;
    const char **k = spam_learn_redis__short(fixed, 3, tok, n, &buf);
    char **full = spam_learn_redis__keys(r, k, n + 3);
    const char **argv = pstr_xcalloc(n + 10, sizeof *argv);
    size_t argc = 0;
    snprintf(nk, sizeof nk, "%zu", n + 3);
    argv[argc++] = "EVAL";
    argv[argc++] = SPAM_LEARN_REDIS__SCRIPT;
    argv[argc++] = nk;
    for (size_t i = 0; i < n + 3; i++)
        argv[argc++] = full[i];
    argv[argc++] = forget ? "f" : spam ? "s" : "h";
    char smax[24], hmax[24];
    snprintf(smax, sizeof smax, "%" PRIu32, (uint32_t)SPAM_BAYES_KV_SPAM_MAX);
    snprintf(hmax, sizeof hmax, "%" PRIu32, (uint32_t)SPAM_BAYES_KV_HAM_MAX);
    argv[argc++] = smax;
    argv[argc++] = hmax;
    argv[argc++] = r->seen_ttl;
    redisReply *rp = spam_learn_redis__cmd(r, (int)argc, argv, NULL);
    free(argv);
    free(full);
    free(k);
    free(buf);
    if (!rp)
        return SPAM_BAYES_ERROR;
    enum spam_bayes_learn res = SPAM_BAYES_ERROR;
    if (rp->type == REDIS_REPLY_INTEGER && rp->integer >= 0 && rp->integer <= 4) {
        static const enum spam_bayes_learn map[5] = {SPAM_BAYES_LEARNED, SPAM_BAYES_RELEARNED,
                                                     SPAM_BAYES_ALREADY, SPAM_BAYES_FORGOTTEN,
                                                     SPAM_BAYES_UNKNOWN};
        res = map[rp->integer];
    } else {
        snprintf(r->err, sizeof r->err, "redis: unexpected answer to the learning script");
    }
    freeReplyObject(rp);
    return res;
}

int spam_learn_redis_counts(struct spam_learn_redis *r, const uint64_t *tok, size_t n,
                            struct spam_bayes_count *c, uint32_t *nspam, uint32_t *nham)
{
    const char *fixed[2] = {SPAM_BAYES_KV_NSPAM, SPAM_BAYES_KV_NHAM};
    char *buf;
    const char **k = spam_learn_redis__short(fixed, 2, tok, n, &buf);
    char **full = spam_learn_redis__keys(r, k, n + 2);
    const char **argv = pstr_xcalloc(n + 3, sizeof *argv);
    argv[0] = "MGET";
    for (size_t i = 0; i < n + 2; i++)
        argv[i + 1] = full[i];
    redisReply *rp = spam_learn_redis__cmd(r, (int)(n + 3), argv, NULL);
    free(argv);
    free(full);
    free(k);
    free(buf);
    if (!rp)
        return -1;
    int rc = -1;
    if (rp->type == REDIS_REPLY_ARRAY && rp->elements == n + 2) {
        const redisReply *const *e = (const redisReply *const *)rp->element;
#define SPAM_LEARN_REDIS__V(x) ((x)->type == REDIS_REPLY_STRING ? (x)->str : NULL), (x)->len
        *nspam = spam_bayes_kv_total(SPAM_LEARN_REDIS__V(e[0]));
        *nham = spam_bayes_kv_total(SPAM_LEARN_REDIS__V(e[1]));
        for (size_t i = 0; i < n; i++)
            c[i] = spam_bayes_kv_decode(SPAM_LEARN_REDIS__V(e[i + 2]));
#undef SPAM_LEARN_REDIS__V
        rc = 0;
    } else {
        snprintf(r->err, sizeof r->err, "redis: unexpected answer to MGET");
    }
    freeReplyObject(rp);
    return rc;
}

/* SCAN over the token keys; each one's value to `each` (NULL: count only). */
static int spam_learn_redis__scan(struct spam_learn_redis *r, uint64_t *n, FILE *out)
{
    char cursor[32] = "0";
    /* MATCH takes a glob: the prefix and instance name are literal text */
    struct pstr pat = PSTR_INIT, lit = PSTR_INIT;
    pstr_printf(&lit, "%sbayes:t:", r->base);
    for (const char *p = r->base; *p; p++) {
        if (strchr("*?[]\\", *p))
            pstr_putc(&pat, '\\');
        pstr_putc(&pat, *p);
    }
    pstr_puts(&pat, "bayes:t:*");
    size_t bl = lit.len;
    *n = 0;
    int rc = 0;
    do {
        const char *argv[6] = {"SCAN", cursor, "MATCH", pstr_cstr(&pat), "COUNT", "1000"};
        redisReply *rp = spam_learn_redis__cmd(r, 6, argv, NULL);
        if (!rp || rp->type != REDIS_REPLY_ARRAY || rp->elements != 2 ||
            rp->element[0]->type != REDIS_REPLY_STRING ||
            rp->element[1]->type != REDIS_REPLY_ARRAY) {
            if (rp)
                snprintf(r->err, sizeof r->err, "redis: unexpected answer to SCAN");
            freeReplyObject(rp);
            rc = -1;
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", rp->element[0]->str);
        const redisReply *keys = rp->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            /* what a hostile or broken server might send: only our keys */
            const redisReply *k = keys->element[i];
            if (!k || k->type != REDIS_REPLY_STRING || k->len < bl ||
                memcmp(k->str, pstr_cstr(&lit), bl) != 0)
                continue;
            ++*n;
            if (!out)
                continue;
            const char *argv2[2] = {"GET", k->str};
            size_t len2[2] = {3, k->len};
            redisReply *v = spam_learn_redis__cmd(r, 2, argv2, len2);
            if (v && v->type == REDIS_REPLY_STRING) {
                struct spam_bayes_count c = spam_bayes_kv_decode(v->str, v->len);
                fprintf(out, "%.*s %u %u\n", (int)(k->len - bl), k->str + bl, c.spam, c.ham);
            }
            freeReplyObject(v);
        }
        freeReplyObject(rp);
    } while (strcmp(cursor, "0") != 0);
    pstr_free(&pat);
    pstr_free(&lit);
    return rc;
}

int spam_learn_redis_totals(struct spam_learn_redis *r, uint32_t *nspam, uint32_t *nham,
                            uint64_t *ntokens)
{
    struct spam_bayes_count dummy;
    if (spam_learn_redis_counts(r, NULL, 0, &dummy, nspam, nham) != 0)
        return -1;
    return spam_learn_redis__scan(r, ntokens, NULL);
}

int spam_learn_redis_dump(struct spam_learn_redis *r, FILE *out)
{
    uint64_t n;
    return spam_learn_redis__scan(r, &n, out);
}
