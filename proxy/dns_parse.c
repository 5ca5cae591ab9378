/* SPDX-License-Identifier: GPL-2.0-or-later */
/* dns_parse: see dns_parse.h. */
#include "dns_parse.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dns_parse_servers(const char *list, char *csv, size_t csvlen, char *err, size_t errlen)
{
    size_t w = 0;
    unsigned n = 0;
    const char *p = list;
    if (csvlen)
        csv[0] = '\0';
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *s = p;
        while (*p && *p != ' ' && *p != '\t' && *p != ',')
            p++;
        char item[128], host[128];
        size_t l = (size_t)(p - s);
        unsigned long port = 53;
        bool v6 = false;
        if (l >= sizeof item) {
            snprintf(err, errlen, "server entry too long: %.40s...", s);
            return -1;
        }
        memcpy(item, s, l);
        item[l] = '\0';
        const char *portp = NULL;
        if (item[0] == '[') {
            char *close = strchr(item, ']');
            if (!close || (close[1] && close[1] != ':')) {
                snprintf(err, errlen, "bad server '%s': want [IPv6]:PORT", item);
                return -1;
            }
            snprintf(host, sizeof host, "%.*s", (int)(close - item - 1), item + 1);
            portp = close[1] ? close + 2 : NULL;
            v6 = true;
        } else {
            char *colon = strchr(item, ':');
            if (colon && strchr(colon + 1, ':')) { /* bare IPv6, no port */
                snprintf(host, sizeof host, "%s", item);
                v6 = true;
            } else {
                snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - item) : (int)l, item);
                portp = colon ? colon + 1 : NULL;
            }
        }
        unsigned char abuf[sizeof(struct in6_addr)];
        if (inet_pton(v6 ? AF_INET6 : AF_INET, host, abuf) != 1) {
            snprintf(err, errlen, "bad server '%s': not an IP address", item);
            return -1;
        }
        if (portp) {
            char *end;
            errno = 0;
            port = strtoul(portp, &end, 10);
            if (!*portp || *end || errno || port == 0 || port > 65535 || !isdigit(*portp)) {
                snprintf(err, errlen, "bad server '%s': port must be 1..65535", item);
                return -1;
            }
        }
        char one[160];
        int ol = v6 ? snprintf(one, sizeof one, "[%s]:%lu", host, port)
                    : snprintf(one, sizeof one, "%s:%lu", host, port);
        if (w + (n ? 1 : 0) + (size_t)ol + 1 > csvlen) {
            snprintf(err, errlen, "server list too long");
            return -1;
        }
        if (n)
            csv[w++] = ',';
        memcpy(csv + w, one, (size_t)ol + 1);
        w += (size_t)ol;
        n++;
    }
    if (n == 0) {
        snprintf(err, errlen, "no server given");
        return -1;
    }
    return 0;
}

int dns_parse_ptr_name(const struct sockaddr *sa, char *out, size_t outlen)
{
    if (sa->sa_family == AF_INET) {
        const unsigned char *a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        int l = snprintf(out, outlen, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
        return l > 0 && (size_t)l < outlen ? 0 : -1;
    }
    if (sa->sa_family == AF_INET6) {
        const unsigned char *a =
            (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        static const char hex[] = "0123456789abcdef";
        if (outlen < 16 * 4 + sizeof "ip6.arpa")
            return -1;
        char *p = out;
        for (int i = 15; i >= 0; i--) {
            *p++ = hex[a[i] & 15];
            *p++ = '.';
            *p++ = hex[a[i] >> 4];
            *p++ = '.';
        }
        memcpy(p, "ip6.arpa", sizeof "ip6.arpa");
        return 0;
    }
    return -1;
}

/* Past one (possibly compressed) name at msg[*off]; false if malformed. */
static bool dns__skip_name(const unsigned char *msg, size_t len, size_t *off)
{
    size_t o = *off;
    for (unsigned guard = 0; guard < 128; guard++) {
        if (o >= len)
            return false;
        unsigned c = msg[o];
        if (c == 0) {
            *off = o + 1;
            return true;
        }
        if ((c & 0xC0) == 0xC0) {
            if (o + 2 > len)
                return false;
            *off = o + 2;
            return true;
        }
        if (c & 0xC0)
            return false;
        o += 1 + c;
    }
    return false;
}

uint32_t dns_parse_answer_ttl(const unsigned char *msg, size_t len)
{
    if (len < 12)
        return 0;
    unsigned qd = (unsigned)msg[4] << 8 | msg[5];
    unsigned an = (unsigned)msg[6] << 8 | msg[7];
    size_t o = 12;
    for (unsigned i = 0; i < qd; i++) {
        if (!dns__skip_name(msg, len, &o) || o + 4 > len)
            return 0;
        o += 4;
    }
    uint32_t min = 0;
    bool any = false;
    for (unsigned i = 0; i < an; i++) {
        if (!dns__skip_name(msg, len, &o) || o + 10 > len)
            return 0;
        uint32_t ttl = (uint32_t)msg[o + 4] << 24 | (uint32_t)msg[o + 5] << 16 |
                       (uint32_t)msg[o + 6] << 8 | msg[o + 7];
        size_t rdlen = (size_t)msg[o + 8] << 8 | msg[o + 9];
        o += 10 + rdlen;
        if (o > len)
            return 0;
        if (ttl > 0x7fffffffu) /* RFC 2181 8: treat as zero */
            ttl = 0;
        if (!any || ttl < min)
            min = ttl;
        any = true;
    }
    return any ? min : 0;
}
