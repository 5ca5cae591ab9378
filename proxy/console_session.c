/* SPDX-License-Identifier: GPL-2.0-or-later */
/* console_session: sessions and CSRF tokens; see console_session.h. */
#include "console_session.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct console_session__entry {
    bool used;
    char id[CONSOLE_SESSION_HEX];
    char csrf[CONSOLE_SESSION_HEX];
    char user[CONSOLE_SESSION_USER];
    uint64_t created, last;
};

struct console_sessions {
    pthread_mutex_t mu;
    size_t max;
    uint64_t idle_ms, max_age_ms;
    struct console_session__entry *e; /* max entries, owned */
};

struct console_sessions *console_session_table_new(size_t max, uint64_t idle_ms,
                                                   uint64_t max_age_ms)
{
    struct console_sessions *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->e = calloc(max ? max : 1, sizeof *t->e);
    if (!t->e) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->max = max ? max : 1;
    t->idle_ms = idle_ms;
    t->max_age_ms = max_age_ms;
    return t;
}

void console_session_table_free(struct console_sessions *t)
{
    if (!t)
        return;
    /* ids are credentials: do not leave them in freed memory */
    memset(t->e, 0, t->max * sizeof *t->e);
    free(t->e);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static bool console_session__random_hex(char out[CONSOLE_SESSION_HEX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[32];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[64] = '\0';
    memset(raw, 0, sizeof raw);
    return true;
}

static bool console_session__expired(const struct console_sessions *t,
                                     const struct console_session__entry *e, uint64_t now)
{
    /* now may be earlier than last: a request that read the clock before
     * another refreshed the session (a sign-in reads it before hashing).
     * That is no time at all, not a wrapped, huge one. */
    uint64_t idle = now > e->last ? now - e->last : 0;
    uint64_t age = now > e->created ? now - e->created : 0;
    return idle >= t->idle_ms || age >= t->max_age_ms;
}

/* 64 lower-case hex digits exactly. */
static bool console_session__is_id(const char *s)
{
    if (!s)
        return false;
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= 64 || !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == 64;
}

/* Constant-time equality of two 64-digit strings. */
static bool console_session__eq64(const char *a, const char *b)
{
    unsigned char d = 0;
    for (size_t i = 0; i < 64; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

int console_session_create(struct console_sessions *t, const char *user, uint64_t now,
                           char id[CONSOLE_SESSION_HEX], char csrf[CONSOLE_SESSION_HEX])
{
    struct console_session__entry ne = {.used = true, .created = now, .last = now};
    if (!console_session__random_hex(ne.id) || !console_session__random_hex(ne.csrf))
        return -EIO;
    snprintf(ne.user, sizeof ne.user, "%s", user ? user : "");
    pthread_mutex_lock(&t->mu);
    /* a free or expired slot, else the least recently used */
    size_t pick = 0;
    bool found = false;
    for (size_t i = 0; i < t->max && !found; i++)
        if (!t->e[i].used || console_session__expired(t, &t->e[i], now))
            pick = i, found = true;
    for (size_t i = 1; i < t->max && !found; i++)
        if (t->e[i].last < t->e[pick].last)
            pick = i;
    t->e[pick] = ne;
    pthread_mutex_unlock(&t->mu);
    memcpy(id, ne.id, CONSOLE_SESSION_HEX);
    memcpy(csrf, ne.csrf, CONSOLE_SESSION_HEX);
    memset(&ne, 0, sizeof ne);
    return 0;
}

bool console_session_find(struct console_sessions *t, const char *id, uint64_t now,
                          char user[CONSOLE_SESSION_USER], char csrf[CONSOLE_SESSION_HEX])
{
    if (!console_session__is_id(id))
        return false;
    bool ok = false;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->max; i++) {
        struct console_session__entry *e = &t->e[i];
        /* every slot compared, in constant time each */
        if (!e->used || !console_session__eq64(e->id, id))
            continue;
        if (console_session__expired(t, e, now)) {
            memset(e, 0, sizeof *e);
            continue;
        }
        if (now > e->last)
            e->last = now;
        if (user)
            memcpy(user, e->user, CONSOLE_SESSION_USER);
        if (csrf)
            memcpy(csrf, e->csrf, CONSOLE_SESSION_HEX);
        ok = true;
    }
    pthread_mutex_unlock(&t->mu);
    return ok;
}

void console_session_destroy(struct console_sessions *t, const char *id)
{
    if (!console_session__is_id(id))
        return;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->max; i++)
        if (t->e[i].used && console_session__eq64(t->e[i].id, id))
            memset(&t->e[i], 0, sizeof t->e[i]);
    pthread_mutex_unlock(&t->mu);
}

size_t console_session_count(struct console_sessions *t, uint64_t now)
{
    size_t n = 0;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->max; i++)
        if (t->e[i].used && !console_session__expired(t, &t->e[i], now))
            n++;
    pthread_mutex_unlock(&t->mu);
    return n;
}

bool console_session_csrf_ok(const char *want, const char *given)
{
    if (!console_session__is_id(want) || !console_session__is_id(given))
        return false;
    return console_session__eq64(want, given);
}

bool console_session_cookie(const char *header, char out[CONSOLE_SESSION_HEX])
{
    static const char name[] = CONSOLE_SESSION_COOKIE;
    const size_t nlen = sizeof name - 1;
    bool found = false;
    out[0] = '\0';
    if (!header)
        return false;
    const char *p = header;
    while (*p) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, ";");
        /* control characters anywhere: a forged header, not a browser's */
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)p[i] < 0x20 && p[i] != '\t')
                goto bad;
        if (n > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            size_t vlen = n - nlen - 1;
            while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
            if (found || vlen != 64)
                goto bad;
            memcpy(out, v, 64);
            out[64] = '\0';
            if (!console_session__is_id(out))
                goto bad;
            found = true;
        }
        p += n;
        if (*p == ';')
            p++;
    }
    return found;
bad:
    memset(out, 0, CONSOLE_SESSION_HEX);
    return false;
}
