/* SPDX-License-Identifier: GPL-2.0-or-later */
/* gl_key: see gl_key.h. */
#include "gl_key.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void gl__mask(unsigned char *a, unsigned bits, unsigned prefix)
{
    if (prefix > bits)
        prefix = bits;
    for (unsigned b = prefix; b < bits; b++)
        a[b / 8] &= (unsigned char)~(0x80u >> (b % 8));
}

int gl_net(const char *addr, unsigned v4_prefix, unsigned v6_prefix, char *out, size_t n)
{
    unsigned char a[16];
    char txt[INET6_ADDRSTRLEN];
    if (!addr)
        return -1;
    if (inet_pton(AF_INET, addr, a) == 1) {
        gl__mask(a, 32, v4_prefix);
        inet_ntop(AF_INET, a, txt, sizeof txt);
        return snprintf(out, n, "%s/%u", txt, v4_prefix > 32 ? 32 : v4_prefix) < (int)n ? 0 : -1;
    }
    if (inet_pton(AF_INET6, addr, a) != 1)
        return -1;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, 12) == 0) {
        inet_ntop(AF_INET, a + 12, txt, sizeof txt);
        return gl_net(txt, v4_prefix, v6_prefix, out, n);
    }
    gl__mask(a, 128, v6_prefix);
    inet_ntop(AF_INET6, a, txt, sizeof txt);
    return snprintf(out, n, "%s/%u", txt, v6_prefix > 128 ? 128 : v6_prefix) < (int)n ? 0 : -1;
}

int gl_triplet_key(const char *net, const char *sender, const char *rcpt, char *out, size_t n)
{
    if (!net || !*net || !rcpt || !*rcpt)
        return -1;
    if (!sender || !*sender)
        sender = "<>";
    int w = snprintf(out, n, "t:%s:%s:%s", net, sender, rcpt);
    if (w < 0 || (size_t)w >= n)
        return -1;
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return 0;
}

enum gl_state gl_parse_value(const char *v, size_t len, uint64_t *since_ms)
{
    if (len == 1 && v[0] == 'p')
        return GL_PASSED;
    if (len > 2 && len < 24 && v[0] == 'w' && v[1] == ':') {
        char buf[24], *end;
        memcpy(buf, v + 2, len - 2);
        buf[len - 2] = 0;
        errno = 0;
        unsigned long long ms = strtoull(buf, &end, 10);
        if (!*end && !errno && isdigit((unsigned char)buf[0])) {
            *since_ms = ms;
            return GL_WAITING;
        }
    }
    return GL_NEW;
}
