/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_dns: the dns_servers key's check (see dkp_dns.h). The lookups
 * themselves are the host's (api->dns_query).
 */
#include "dkp_dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dkp__parse_server(const char *item, struct sockaddr_storage *ss, socklen_t *sl)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port = NULL;
    unsigned long p = 53;
    size_t n;

    if (item[0] == '[') {
        const char *close = strchr(item, ']');
        if (!close || (close[1] != '\0' && close[1] != ':'))
            return -1;
        n = (size_t)(close - item - 1);
        if (n >= sizeof host)
            return -1;
        memcpy(host, item + 1, n);
        host[n] = '\0';
        if (close[1] == ':')
            port = close + 2;
    } else {
        const char *colon = strchr(item, ':');
        if (colon && strchr(colon + 1, ':'))
            colon = NULL; /* bare IPv6 address, no port */
        n = colon ? (size_t)(colon - item) : strlen(item);
        if (n >= sizeof host)
            return -1;
        memcpy(host, item, n);
        host[n] = '\0';
        if (colon)
            port = colon + 1;
    }
    if (port) {
        char *end;
        p = strtoul(port, &end, 10);
        if (*port == '\0' || *end != '\0' || p == 0 || p > 65535)
            return -1;
    }
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)p);
        *sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)p);
        *sl = sizeof *s6;
    } else {
        return -1;
    }
    return 0;
}

int dkp_dns_parse_servers(const char *list, struct dkp_dns_conf *conf, char *err, size_t errlen)
{
    const char *p = list;

    conf->nservers = 0;
    while (*p) {
        char item[INET6_ADDRSTRLEN + 16];
        size_t n = 0;
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        while (p[n] && p[n] != ' ' && p[n] != '\t' && p[n] != ',')
            n++;
        if (n >= sizeof item || conf->nservers == DKP_DNS_MAX_SERVERS) {
            snprintf(err, errlen, n >= sizeof item ? "invalid server \"%.40s\""
                                                   : "at most 3 servers (\"%.40s\")", p);
            return -1;
        }
        memcpy(item, p, n);
        item[n] = '\0';
        p += n;
        if (dkp__parse_server(item, &conf->server[conf->nservers],
                              &conf->server_len[conf->nservers]) < 0) {
            snprintf(err, errlen, "invalid server \"%s\" (want IP, IP:PORT or [IPv6]:PORT)",
                     item);
            return -1;
        }
        conf->nservers++;
    }
    if (conf->nservers == 0) {
        snprintf(err, errlen, "no server given");
        return -1;
    }
    return 0;
}
