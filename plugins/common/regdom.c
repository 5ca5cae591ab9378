/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * regdom: registrable domains through libpsl (see regdom.h).
 */
#include "regdom.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <libpsl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const psl_ctx_t *regdom__psl;
static pthread_once_t regdom__once = PTHREAD_ONCE_INIT;

static void regdom__load(void)
{
    /* The distribution's file when present (newer), else the built-in
     * copy. Loaded once and never freed: every instance shares it. */
    const psl_ctx_t *p = psl_latest(NULL);
    regdom__psl = p ? p : psl_builtin();
}

int regdom_init(void)
{
    pthread_once(&regdom__once, regdom__load);
    return regdom__psl ? 0 : -1;
}

int regdom_registrable(const char *host, char *out, size_t outsz)
{
    char buf[256];
    struct in6_addr a6;
    size_t n = host ? strlen(host) : 0;

    if (!regdom__psl || n == 0 || n >= sizeof buf)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)host[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_')
            return -1; /* IDNs come as A-labels from the URI parser */
        buf[i] = (char)tolower(c);
    }
    buf[n] = '\0';
    if (buf[n - 1] == '.')
        buf[--n] = '\0';
    if (n == 0 || inet_pton(AF_INET, buf, &a6) == 1 || strstr(buf, ".."))
        return -1;
    /* A dotted quad with a trailing label is still an address to a
     * browser ("1.2.3.4.") and never a domain a list holds. */
    int digits_dots = 1;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)buf[i]) && buf[i] != '.')
            digits_dots = 0;
    if (digits_dots)
        return -1;
    const char *reg = psl_registrable_domain(regdom__psl, buf);
    if (!reg)
        return -1;
    int len = snprintf(out, outsz, "%s", reg);
    return len < 0 || (size_t)len >= outsz ? -1 : 0;
}
