/* SPDX-License-Identifier: GPL-2.0-or-later */
/* spam_bayes_kv: see spam_bayes_kv.h. */
#include "spam_bayes_kv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void spam_bayes_kv_token_key(uint64_t h, char out[SPAM_BAYES_KV_KEY_MAX])
{
    snprintf(out, SPAM_BAYES_KV_KEY_MAX, "bayes:t:%016" PRIx64, h);
}

void spam_bayes_kv_seen_key(uint64_t id, char out[SPAM_BAYES_KV_KEY_MAX])
{
    snprintf(out, SPAM_BAYES_KV_KEY_MAX, "bayes:seen:%016" PRIx64, id);
}

int64_t spam_bayes_kv_delta(bool spam, bool forget)
{
    int64_t d = spam ? SPAM_BAYES_KV_SPAM_ONE : 1;
    return forget ? -d : d;
}

bool spam_bayes_kv_room(struct spam_bayes_count c, bool spam)
{
    return spam ? c.spam < SPAM_BAYES_KV_SPAM_MAX : c.ham < SPAM_BAYES_KV_HAM_MAX;
}

/* Decimal text of at most 20 bytes as int64; -1 when it is not one. */
static int spam_bayes_kv__parse(const char *v, size_t len, int64_t *out)
{
    char buf[24], *end;
    if (!v || len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, v, len);
    buf[len] = 0;
    errno = 0;
    long long x = strtoll(buf, &end, 10);
    if (*end || errno)
        return -1;
    *out = x;
    return 0;
}

struct spam_bayes_count spam_bayes_kv_decode(const char *v, size_t len)
{
    struct spam_bayes_count c = {0, 0};
    int64_t x;
    if (spam_bayes_kv__parse(v, len, &x) != 0 || x <= 0)
        return c;
    c.spam = (uint32_t)((uint64_t)x >> 32);
    c.ham = (uint32_t)((uint64_t)x & 0xffffffffu);
    return c;
}

uint32_t spam_bayes_kv_total(const char *v, size_t len)
{
    int64_t x;
    if (spam_bayes_kv__parse(v, len, &x) != 0 || x <= 0)
        return 0;
    return x > UINT32_MAX ? UINT32_MAX : (uint32_t)x;
}
