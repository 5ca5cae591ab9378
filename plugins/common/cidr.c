/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cidr: text networks and address membership; see cidr.h.
 */
#include "cidr.h"
#include "pstr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int cidr_parse(const char *text, unsigned flags, struct cidr *out, char *err, size_t errlen)
{
    char tmp[INET6_ADDRSTRLEN + 8];
    unsigned max;

    if (strlen(text) >= sizeof tmp) {
        snprintf(err, errlen, "invalid network \"%.60s\"", text);
        return -1;
    }
    strcpy(tmp, text);
    char *slash = strchr(tmp, '/');
    if (slash)
        *slash++ = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, tmp, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, tmp, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        snprintf(err, errlen, "invalid network \"%s\": not an IP address", text);
        return -1;
    }
    out->prefix = max;
    if (slash) {
        char *end;
        errno = 0;
        unsigned long p = strtoul(slash, &end, 10);
        if (*slash < '0' || *slash > '9' || *end != '\0' || errno || p > max) {
            snprintf(err, errlen, "invalid network \"%s\": prefix length must be 0..%u", text, max);
            return -1;
        }
        out->prefix = (unsigned)p;
    }
    for (unsigned bit = out->prefix; bit < max; bit++) {
        unsigned char m = (unsigned char)(0x80u >> (bit % 8));
        if (!(out->addr[bit / 8] & m))
            continue;
        if (!(flags & CIDR_HOST_BITS_OK)) {
            snprintf(err, errlen, "invalid network \"%s\": host bits set after /%u", text,
                     out->prefix);
            return -1;
        }
        out->addr[bit / 8] &= (unsigned char)~m;
    }
    return 0;
}

void cidr_list_free(struct cidr_list *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int cidr_list_parse(const char *list, unsigned flags, struct cidr_list *out, char *err,
                    size_t errlen)
{
    const char *p = list;
    out->v = NULL;
    out->n = 0;
    while (*p) {
        p += strspn(p, " \t,");
        if (!*p)
            break;
        size_t n = strcspn(p, " \t,");
        char item[INET6_ADDRSTRLEN + 8];
        if (n >= sizeof item) {
            snprintf(err, errlen, "invalid network \"%.60s\"", p);
            cidr_list_free(out);
            return -1;
        }
        memcpy(item, p, n);
        item[n] = '\0';
        p += n;
        out->v = pstr_xrealloc(out->v, (out->n + 1) * sizeof *out->v);
        if (cidr_parse(item, flags, &out->v[out->n], err, errlen) < 0) {
            cidr_list_free(out);
            return -1;
        }
        out->n++;
    }
    return 0;
}

static int cidr__in(const struct cidr *c, const unsigned char *a)
{
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, a, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[full] & mask) == c->addr[full];
}

int cidr_match(const struct cidr *v, size_t n, const char *addr)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    unsigned char a4[4], a6[16];
    int is4 = 0, is6 = 0;

    if (!addr)
        return 0;
    if (inet_pton(AF_INET, addr, a4) == 1) {
        is4 = 1;
    } else if (inet_pton(AF_INET6, addr, a6) == 1) {
        is6 = 1;
        if (memcmp(a6, mapped, sizeof mapped) == 0) {
            memcpy(a4, a6 + 12, 4);
            is4 = 1;
        }
    } else {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if ((v[i].family == AF_INET && is4 && cidr__in(&v[i], a4)) ||
            (v[i].family == AF_INET6 && is6 && cidr__in(&v[i], a6)))
            return 1;
    }
    return 0;
}
