/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_dns: blocking TXT lookups with a hard deadline.
 *
 * Servers are tried in order, each with an equal share of what is left of
 * the deadline; a server that answers with SERVFAIL does not stop the next
 * one from being tried. The UDP socket is connect()ed, so the kernel drops
 * datagrams from anyone but the server; the id is checked on top.
 */
#include "dkp_dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

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

int dkp_dns_parse_resolv(const char *text, size_t len, struct dkp_dns_conf *conf)
{
    size_t pos = 0;

    conf->nservers = 0;
    while (pos < len && conf->nservers < DKP_DNS_MAX_SERVERS) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        char line[256];
        size_t n = end - pos < sizeof line - 1 ? end - pos : sizeof line - 1;
        char word[32], addr[INET6_ADDRSTRLEN + 1];

        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos = nl ? end + 1 : len;
        if (sscanf(line, "%31s %46s", word, addr) == 2 && strcmp(word, "nameserver") == 0) {
            /* a scope suffix (fe80::1%eth0) is not supported: skip it */
            if (strchr(addr, '%'))
                continue;
            if (dkp__parse_server(addr, &conf->server[conf->nservers],
                                  &conf->server_len[conf->nservers]) == 0)
                conf->nservers++;
        }
    }
    return conf->nservers ? 0 : -1;
}

int dkp_dns_build_query(const char *name, uint16_t id, unsigned char *buf, size_t buflen)
{
    size_t pos = 12, namelen = strlen(name);
    const char *p = name;

    if (namelen == 0 || namelen > 253 || buflen < 12 + namelen + 2 + 4 + 11)
        return -1;
    memset(buf, 0, 12);
    buf[0] = (unsigned char)(id >> 8);
    buf[1] = (unsigned char)id;
    buf[2] = 0x01; /* RD */
    buf[5] = 1;    /* QDCOUNT */
    buf[11] = 1;   /* ARCOUNT: the OPT record */
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        if (l == 0 || l > 63) {
            if (l == 0 && !dot[1])
                break; /* trailing dot */
            return -1;
        }
        buf[pos++] = (unsigned char)l;
        memcpy(buf + pos, p, l);
        pos += l;
        p += l;
        if (*p == '.')
            p++;
    }
    buf[pos++] = 0;
    buf[pos++] = 0;
    buf[pos++] = ns_t_txt;
    buf[pos++] = 0;
    buf[pos++] = ns_c_in;
    /* OPT: root name, type 41, UDP payload 1232, no extended flags */
    buf[pos++] = 0;
    buf[pos++] = 0;
    buf[pos++] = 41;
    buf[pos++] = 1232 >> 8;
    buf[pos++] = 1232 & 0xff;
    memset(buf + pos, 0, 6);
    pos += 6;
    return (int)pos;
}

enum dkp_keystat dkp_dns_parse_answer(const unsigned char *msg, size_t len, uint16_t id,
                                      char *out, size_t outlen, uint32_t *ttl, int *truncated)
{
    ns_msg h;
    ns_rr rr;

    *truncated = 0;
    if (len < 12 || len > 65535 || ((uint16_t)(msg[0] << 8 | msg[1])) != id || !(msg[2] & 0x80))
        return DKP_KEY_BADREPLY;
    if (msg[2] & 0x02) {
        *truncated = 1;
        return DKP_KEY_BADREPLY;
    }
    if (ns_initparse(msg, (int)len, &h) < 0)
        return DKP_KEY_BADREPLY;
    switch (ns_msg_getflag(h, ns_f_rcode)) {
    case ns_r_noerror:
        break;
    case ns_r_nxdomain:
        return DKP_KEY_NONE;
    default:
        return DKP_KEY_TEMPFAIL;
    }
    for (int i = 0; i < ns_msg_count(h, ns_s_an); i++) {
        if (ns_parserr(&h, ns_s_an, i, &rr) < 0)
            return DKP_KEY_BADREPLY;
        if (ns_rr_type(rr) != ns_t_txt || ns_rr_class(rr) != ns_c_in)
            continue; /* CNAME chain records */
        const unsigned char *d = ns_rr_rdata(rr);
        size_t dl = ns_rr_rdlen(rr), o = 0, w = 0;
        while (o < dl) {
            size_t sl = d[o++];
            if (o + sl > dl)
                return DKP_KEY_BADREPLY;
            if (w + sl >= outlen)
                return DKP_KEY_BADREPLY;
            memcpy(out + w, d + o, sl);
            w += sl;
            o += sl;
        }
        out[w] = '\0';
        if (memchr(out, '\0', w))
            return DKP_KEY_BADREPLY;
        *ttl = ns_rr_ttl(rr);
        return DKP_KEY_FOUND;
    }
    return DKP_KEY_NONE;
}

static int64_t dkp__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd to be ready for `events` until `deadline`; 1, 0 (timeout), -1. */
static int dkp__wait(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - dkp__now_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {.fd = fd, .events = events};
        int rc = poll(&pfd, 1, (int)left);
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

static int dkp__io_all(int fd, unsigned char *buf, size_t len, int writing, int64_t deadline)
{
    size_t done = 0;
    while (done < len) {
        if (dkp__wait(fd, writing ? POLLOUT : POLLIN, deadline) != 1)
            return -1;
        ssize_t n = writing ? send(fd, buf + done, len - done, MSG_NOSIGNAL)
                            : recv(fd, buf + done, len - done, 0);
        if (n <= 0) {
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

/* The same query over TCP (after a truncated UDP answer). */
static enum dkp_keystat dkp__tcp(const struct sockaddr_storage *ss, socklen_t sl,
                                 const unsigned char *q, size_t qlen, uint16_t id, char *out,
                                 size_t outlen, uint32_t *ttl, int64_t deadline)
{
    enum dkp_keystat st = DKP_KEY_TEMPFAIL;
    unsigned char lenbuf[2], *ans = NULL;
    unsigned char qbuf[2 + 512];
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int trunc;

    if (fd < 0 || qlen > 512)
        goto out;
    if (connect(fd, (const struct sockaddr *)ss, sl) < 0 && errno != EINPROGRESS)
        goto out;
    qbuf[0] = (unsigned char)(qlen >> 8);
    qbuf[1] = (unsigned char)qlen;
    memcpy(qbuf + 2, q, qlen);
    if (dkp__io_all(fd, qbuf, qlen + 2, 1, deadline) < 0 ||
        dkp__io_all(fd, lenbuf, 2, 0, deadline) < 0)
        goto out;
    size_t alen = (size_t)lenbuf[0] << 8 | lenbuf[1];
    ans = malloc(alen ? alen : 1);
    if (!ans || dkp__io_all(fd, ans, alen, 0, deadline) < 0)
        goto out;
    st = dkp_dns_parse_answer(ans, alen, id, out, outlen, ttl, &trunc);
out:
    free(ans);
    if (fd >= 0)
        close(fd);
    return st;
}

static enum dkp_keystat dkp__udp(const struct sockaddr_storage *ss, socklen_t sl,
                                 const unsigned char *q, size_t qlen, uint16_t id, char *out,
                                 size_t outlen, uint32_t *ttl, int64_t deadline)
{
    unsigned char ans[4096];
    enum dkp_keystat st = DKP_KEY_TEMPFAIL;
    int fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return DKP_KEY_TEMPFAIL;
    if (connect(fd, (const struct sockaddr *)ss, sl) < 0 || send(fd, q, qlen, 0) < 0)
        goto out;
    for (;;) {
        if (dkp__wait(fd, POLLIN, deadline) != 1)
            goto out;
        ssize_t n = recv(fd, ans, sizeof ans, 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            goto out; /* ECONNREFUSED: nobody listens there */
        }
        int trunc = 0;
        st = dkp_dns_parse_answer(ans, (size_t)n, id, out, outlen, ttl, &trunc);
        if (trunc) {
            st = dkp__tcp(ss, sl, q, qlen, id, out, outlen, ttl, deadline);
            goto out;
        }
        /* A datagram with a wrong id is noise (or spoofing): keep waiting. */
        if (st == DKP_KEY_BADREPLY && (size_t)n >= 2 && ((uint16_t)(ans[0] << 8 | ans[1])) != id) {
            st = DKP_KEY_TEMPFAIL;
            continue;
        }
        goto out;
    }
out:
    close(fd);
    return st;
}

enum dkp_keystat dkp_dns_lookup_txt(const struct dkp_dns_conf *conf, const char *name, char *out,
                                    size_t outlen, uint32_t *ttl)
{
    unsigned char q[512];
    uint16_t id;
    enum dkp_keystat st = DKP_KEY_TEMPFAIL;
    int64_t start = dkp__now_ms(), end = start + conf->timeout_ms;

    if (getrandom(&id, sizeof id, 0) != sizeof id)
        id = (uint16_t)(start ^ (int64_t)(uintptr_t)&id);
    int qlen = dkp_dns_build_query(name, id, q, sizeof q);
    if (qlen < 0)
        return DKP_KEY_NONE; /* a name that cannot exist in the DNS */
    for (size_t i = 0; i < conf->nservers; i++) {
        int64_t now = dkp__now_ms();
        if (now >= end)
            break;
        int64_t share = (end - now) / (int64_t)(conf->nservers - i);
        st = dkp__udp(&conf->server[i], conf->server_len[i], q, (size_t)qlen, id, out, outlen,
                      ttl, now + share);
        if (st == DKP_KEY_FOUND || st == DKP_KEY_NONE)
            return st;
    }
    return st == DKP_KEY_BADREPLY ? DKP_KEY_BADREPLY : DKP_KEY_TEMPFAIL;
}
