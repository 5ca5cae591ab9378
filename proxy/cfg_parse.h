/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cfg_parse: the value grammar of the configuration, one for every section
 * (the daemon's keys and the plugins' typed keys). Pure: no I/O, no DNS,
 * no allocation, no globals; any thread.
 */
#ifndef SLUICE_CFG_PARSE_H
#define SLUICE_CFG_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct cfg_addr {
    char text[300]; /* as written: "127.0.0.1:2525", "[::1]:25", "unix:/path" */
    struct sockaddr_storage
        sa; /* resolved numerically (no DNS): IPv4/IPv6 literal or "localhost" */
    socklen_t salen;
    char host[256]; /* host part as written (for SNI/verify of upstreams) */
    int port;
};

/* The raw forms the key table uses: 0, -EINVAL (not a value of the kind)
 * or -ERANGE (too large for 64 bits). Durations are in milliseconds. */
int cfg_parse_u64(const char *text, uint64_t *out);
int cfg_parse_ms64(const char *text, uint64_t *out);
int cfg_parse_bytes(const char *text, uint64_t *out);

/* Parse "ADDR:PORT" / "[v6]:PORT" / "unix:/path" numerically (no DNS,
 * "localhost" allowed). 0 or -1 with a message in err. */
int cfg_parse_addr(const char *text, struct cfg_addr *out, char *err, size_t errlen);
/*
 * The value grammar of the whole file, shared with the plugins' typed keys
 * (proxy/plugcfg.c), so one syntax holds in every section. Each returns 0,
 * or -1 when `text` is not a value of its kind (NULL included).
 */
/* "30s", "500ms", "5m", "1h", plain number = seconds; fits in unsigned. */
int cfg_parse_duration_ms(const char *text, unsigned *out);
/* "25M", "64k", "1G", plain number = bytes. */
int cfg_parse_size(const char *text, uint64_t *out);
/* yes|true|on|1 and no|false|off|0, any case. */
int cfg_parse_bool(const char *text, bool *out);
/* Plain decimal digits, no sign, no blanks. */
int cfg_parse_uint(const char *text, uint64_t *out);
/* One of the NULL-terminated `choices`, exactly as written; *out is its index. */
int cfg_parse_enum(const char *text, const char *const *choices, int *out);

/* The inverse, for "out of range (1s..24h)" messages: the largest exact
 * unit ("30s", "5m", "64k", "25M"). */
void cfg_parse_fmt_ms(char *out, size_t n, uint64_t ms);
void cfg_parse_fmt_size(char *out, size_t n, uint64_t v);

#endif
