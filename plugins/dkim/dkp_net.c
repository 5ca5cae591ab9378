/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_net: CIDR lists. Host bits in a written network ("10.1.2.3/8") are an
 * error rather than silently cleared: they usually mean a typo in the
 * prefix length, and this list decides what gets signed.
 */
#include "dkp_net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void dkp_net_free(struct dkp_netlist *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int dkp__parse_one(const char *item, struct dkp_cidr *c, char *err, size_t errlen)
{
    char tmp[INET6_ADDRSTRLEN + 8];
    char *slash;
    unsigned max;

    if (strlen(item) >= sizeof tmp) {
        snprintf(err, errlen, "invalid network \"%.60s\"", item);
        return -1;
    }
    strcpy(tmp, item);
    slash = strchr(tmp, '/');
    if (slash)
        *slash++ = '\0';
    memset(c, 0, sizeof *c);
    if (inet_pton(AF_INET, tmp, c->addr) == 1) {
        c->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, tmp, c->addr) == 1) {
        c->family = AF_INET6;
        max = 128;
    } else {
        snprintf(err, errlen, "invalid network \"%s\": not an IP address", item);
        return -1;
    }
    c->prefix = max;
    if (slash) {
        char *end;
        unsigned long p = strtoul(slash, &end, 10);
        if (*slash == '\0' || *end != '\0' || p > max) {
            snprintf(err, errlen, "invalid network \"%s\": prefix length must be 0..%u", item,
                     max);
            return -1;
        }
        c->prefix = (unsigned)p;
    }
    for (unsigned bit = c->prefix; bit < max; bit++) {
        if (c->addr[bit / 8] & (0x80u >> (bit % 8))) {
            snprintf(err, errlen, "invalid network \"%s\": host bits set after /%u", item,
                     c->prefix);
            return -1;
        }
    }
    return 0;
}

int dkp_net_parse(const char *list, struct dkp_netlist *out, char *err, size_t errlen)
{
    const char *p = list;

    out->v = NULL;
    out->n = 0;
    while (*p) {
        char item[INET6_ADDRSTRLEN + 8];
        size_t n = 0;
        struct dkp_cidr *nv;

        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        while (p[n] && p[n] != ' ' && p[n] != '\t' && p[n] != ',')
            n++;
        if (n >= sizeof item) {
            snprintf(err, errlen, "invalid network \"%.60s\"", p);
            goto fail;
        }
        memcpy(item, p, n);
        item[n] = '\0';
        p += n;
        nv = realloc(out->v, (out->n + 1) * sizeof *nv);
        if (!nv) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        out->v = nv;
        if (dkp__parse_one(item, &out->v[out->n], err, errlen) < 0)
            goto fail;
        out->n++;
    }
    return 0;
fail:
    dkp_net_free(out);
    return -1;
}

static int dkp__in(const struct dkp_cidr *c, const unsigned char *a)
{
    unsigned full = c->prefix / 8, rest = c->prefix % 8;

    if (memcmp(c->addr, a, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[full] & mask) == c->addr[full];
}

int dkp_net_match(const struct dkp_netlist *l, const char *addr)
{
    unsigned char a4[4], a6[16];
    int is4 = 0, is6 = 0;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

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
    for (size_t i = 0; i < l->n; i++) {
        const struct dkp_cidr *c = &l->v[i];
        if ((c->family == AF_INET && is4 && dkp__in(c, a4)) ||
            (c->family == AF_INET6 && is6 && dkp__in(c, a6)))
            return 1;
    }
    return 0;
}
