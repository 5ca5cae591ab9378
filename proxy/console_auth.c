/* SPDX-License-Identifier: GPL-2.0-or-later */
/* console_auth: password file, password check, login throttle; see console_auth.h. */
#include "console_auth.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONSOLE_AUTH__MAX_FILE (1024 * 1024)
#define CONSOLE_AUTH__MAX_NAME 63
#define CONSOLE_AUTH__MAX_HASH 255

struct console_auth__user {
    char name[CONSOLE_AUTH__MAX_NAME + 1];
    char hash[CONSOLE_AUTH__MAX_HASH + 1];
};

struct console_auth_users {
    struct console_auth__user *u; /* n entries, owned */
    size_t n;
};

/* What a crypt output may hold: the crypt(3) alphabet plus '$'. */
static bool console_auth__hash_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '/' || c == '$'))
            return false;
    }
    return true;
}

static bool console_auth__name_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '@'))
            return false;
    }
    return true;
}

struct console_auth_users *console_auth_parse(const char *file, const char *text, size_t len,
                                              buf_t *errors)
{
    struct console_auth_users *u = calloc(1, sizeof *u);
    size_t cap = 0;
    bool bad = false;
    int line = 0;
    if (!u) {
        buf_printf(errors, "%s: out of memory\n", file);
        return NULL;
    }
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && text[end] != '\n')
            end++;
        const char *l = text + i;
        size_t n = end - i;
        i = end + 1;
        line++;
        if (n && l[n - 1] == '\r')
            n--;
        size_t lead = 0;
        while (lead < n && (l[lead] == ' ' || l[lead] == '\t'))
            lead++;
        if (lead == n || l[lead] == '#')
            continue;
        const char *colon = memchr(l, ':', n);
        if (!colon) {
            buf_printf(errors, "%s:%d: expected name:HASH\n", file, line);
            bad = true;
            continue;
        }
        size_t nlen = (size_t)(colon - l), hlen = n - nlen - 1;
        const char *h = colon + 1;
        if (nlen == 0 || nlen > CONSOLE_AUTH__MAX_NAME || !console_auth__name_chars(l, nlen)) {
            buf_printf(errors, "%s:%d: bad user name (1 to %d of A-Z a-z 0-9 . _ - @)\n", file,
                       line, CONSOLE_AUTH__MAX_NAME);
            bad = true;
            continue;
        }
        /* shadow-style trailing fields are not ours: one hash, nothing after */
        if (hlen == 0 || hlen > CONSOLE_AUTH__MAX_HASH || !console_auth__hash_chars(h, hlen)) {
            buf_printf(errors, "%s:%d: user %.*s: bad hash (a crypt(3) string expected)\n", file,
                       line, (int)nlen, l);
            bad = true;
            continue;
        }
        bool yes = hlen > 3 && memcmp(h, "$y$", 3) == 0;
        bool sha = hlen > 3 && memcmp(h, "$6$", 3) == 0;
        if (!yes && !sha) {
            buf_printf(errors,
                       "%s:%d: user %.*s: unsupported hash method (use yescrypt \"$y$\" or "
                       "sha512-crypt \"$6$\", e.g. mkpasswd -m yescrypt)\n",
                       file, line, (int)nlen, l);
            bad = true;
            continue;
        }
        for (size_t k = 0; k < u->n; k++)
            if (strlen(u->u[k].name) == nlen && memcmp(u->u[k].name, l, nlen) == 0) {
                buf_printf(errors, "%s:%d: user %.*s listed twice\n", file, line, (int)nlen, l);
                bad = true;
            }
        if (u->n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct console_auth__user *nu = realloc(u->u, ncap * sizeof *nu);
            if (!nu) {
                buf_printf(errors, "%s:%d: out of memory\n", file, line);
                bad = true;
                break;
            }
            u->u = nu, cap = ncap;
        }
        struct console_auth__user *e = &u->u[u->n++];
        memset(e, 0, sizeof *e);
        memcpy(e->name, l, nlen);
        memcpy(e->hash, h, hlen);
    }
    if (!bad && u->n == 0) {
        buf_printf(errors, "%s: no users: nobody could log in\n", file);
        bad = true;
    }
    if (bad) {
        console_auth_free(u);
        return NULL;
    }
    return u;
}

struct console_auth_users *console_auth_load(const char *path, buf_t *errors)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        buf_printf(errors, "%s: %s\n", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CONSOLE_AUTH__MAX_FILE) {
        buf_printf(errors, "%s: not a regular file of at most 1 MiB\n", path);
        close(fd);
        return NULL;
    }
    char *text = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (text && got < (size_t)st.st_size) {
        ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!text) {
        buf_printf(errors, "%s: out of memory\n", path);
        return NULL;
    }
    struct console_auth_users *u = console_auth_parse(path, text, got, errors);
    memset(text, 0, got);
    free(text);
    return u;
}

void console_auth_free(struct console_auth_users *u)
{
    if (!u)
        return;
    free(u->u);
    free(u);
}

size_t console_auth_count(const struct console_auth_users *u)
{
    return u ? u->n : 0;
}

bool console_auth_verify(const struct console_auth_users *u, const char *user, const char *password)
{
    if (!u || u->n == 0)
        return false;
    /* an unknown user is hashed against the first user's setting: it costs
     * what a known one does, and the answer is no in any case */
    const char *want = u->u[0].hash;
    bool known = false;
    for (size_t i = 0; user && i < u->n; i++)
        if (strcmp(u->u[i].name, user) == 0) {
            want = u->u[i].hash;
            known = true;
            break;
        }
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (!cd)
        return false;
    const char *got = crypt_rn(password ? password : "", want, cd, (int)sizeof *cd);
    bool ok = false;
    if (got && got[0] != '*') {
        size_t wl = strlen(want), gl = strlen(got);
        unsigned char d = (unsigned char)(wl != gl);
        for (size_t i = 0; i < wl; i++)
            d |= (unsigned char)(want[i] ^ (i < gl ? got[i] : 0));
        ok = d == 0 && known;
    }
    explicit_bzero(cd, sizeof *cd);
    free(cd);
    return ok;
}

/* ---- the login throttle ------------------------------------------------ */

struct console_auth__slot {
    char addr[64];
    unsigned failures;
    uint64_t first; /* the window's start */
    uint64_t last;
};

struct console_auth_throttle {
    pthread_mutex_t mu;
    struct console_auth__slot *s; /* n slots, owned */
    size_t n;
    unsigned max_failures;
    uint64_t window_ms;
};

struct console_auth_throttle *console_auth_throttle_new(size_t slots, unsigned max_failures,
                                                        uint64_t window_ms)
{
    struct console_auth_throttle *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->n = slots ? slots : 1;
    t->s = calloc(t->n, sizeof *t->s);
    if (!t->s) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->max_failures = max_failures;
    t->window_ms = window_ms;
    return t;
}

void console_auth_throttle_free(struct console_auth_throttle *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t->s);
    free(t);
}

/* The slot of addr, or NULL (locked). */
static struct console_auth__slot *console_auth__slot(struct console_auth_throttle *t,
                                                     const char *addr)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->s[i].addr[0] && strcmp(t->s[i].addr, addr) == 0)
            return &t->s[i];
    return NULL;
}

/* Time since s->first; 0 when now is earlier (a request that read the
 * clock before another created the slot must not see a wrapped, huge
 * difference and reset the count). */
static uint64_t console_auth__elapsed(const struct console_auth__slot *s, uint64_t now)
{
    return now > s->first ? now - s->first : 0;
}

/* The slot to count a failure of addr in (a free one, else the one idle
 * longest), cleared when its window has passed. Locked. */
static struct console_auth__slot *console_auth__fail_slot(struct console_auth_throttle *t,
                                                          const char *addr, uint64_t now)
{
    struct console_auth__slot *s = console_auth__slot(t, addr);
    if (s && console_auth__elapsed(s, now) >= t->window_ms)
        memset(s, 0, sizeof *s);
    if (!s || !s->addr[0]) {
        size_t pick = 0;
        for (size_t i = 0; i < t->n; i++) {
            if (!t->s[i].addr[0]) {
                pick = i;
                break;
            }
            if (t->s[i].last < t->s[pick].last)
                pick = i;
        }
        s = &t->s[pick];
        memset(s, 0, sizeof *s);
        snprintf(s->addr, sizeof s->addr, "%s", addr);
        s->first = now;
    }
    return s;
}

uint64_t console_auth_throttle_wait(struct console_auth_throttle *t, const char *addr, uint64_t now)
{
    if (t->max_failures == 0)
        return 0;
    uint64_t wait = 0;
    pthread_mutex_lock(&t->mu);
    struct console_auth__slot *s = console_auth__slot(t, addr ? addr : "");
    if (s && console_auth__elapsed(s, now) >= t->window_ms)
        memset(s, 0, sizeof *s); /* the window has passed */
    else if (s && s->failures >= t->max_failures)
        wait = t->window_ms - console_auth__elapsed(s, now);
    pthread_mutex_unlock(&t->mu);
    return wait;
}

uint64_t console_auth_throttle_begin(struct console_auth_throttle *t, const char *addr,
                                     uint64_t now)
{
    if (t->max_failures == 0)
        return 0;
    addr = addr ? addr : "";
    uint64_t wait = 0;
    pthread_mutex_lock(&t->mu);
    struct console_auth__slot *s = console_auth__slot(t, addr);
    if (s && console_auth__elapsed(s, now) < t->window_ms && s->failures >= t->max_failures) {
        wait = t->window_ms - console_auth__elapsed(s, now);
    } else {
        /* counted now, before the password is checked: attempts in
         * flight count, so parallel requests cannot pass the limit */
        s = console_auth__fail_slot(t, addr, now);
        s->failures++;
        s->last = now;
    }
    pthread_mutex_unlock(&t->mu);
    return wait;
}

void console_auth_throttle_end(struct console_auth_throttle *t, const char *addr, bool ok)
{
    if (t->max_failures == 0 || !ok)
        return; /* a failure was counted by begin */
    pthread_mutex_lock(&t->mu);
    struct console_auth__slot *s = console_auth__slot(t, addr ? addr : "");
    if (s)
        memset(s, 0, sizeof *s);
    pthread_mutex_unlock(&t->mu);
}

void console_auth_throttle_note(struct console_auth_throttle *t, const char *addr, bool ok,
                                uint64_t now)
{
    if (t->max_failures == 0)
        return;
    addr = addr ? addr : "";
    pthread_mutex_lock(&t->mu);
    if (ok) {
        struct console_auth__slot *s = console_auth__slot(t, addr);
        if (s)
            memset(s, 0, sizeof *s);
    } else {
        struct console_auth__slot *s = console_auth__fail_slot(t, addr, now);
        s->failures++;
        s->last = now;
    }
    pthread_mutex_unlock(&t->mu);
}
