/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_result: scan outcome helpers. Names are sanitised on the way in
 * because they end up in replies, headers and log lines.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vir_result.h"

const char *vir_result_kind_name(enum vir_kind k)
{
    switch (k) {
    case VIR_CLEAN:
        return "clean";
    case VIR_VIRUS:
        return "virus";
    case VIR_LIMIT:
        return "limit";
    case VIR_ERROR:
        return "error";
    default:
        return "error";
    }
}

static int vir__name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-' || c == ':' || c == '/' || c == '+';
}

size_t vir_result_clean_name(char *out, size_t outsz, const char *in, size_t len)
{
    if (!outsz)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < outsz; i++) {
        unsigned char c = (unsigned char)in[i];
        out[n++] = vir__name_char(c) ? (char)c : '_';
    }
    out[n] = '\0';
    return n;
}

void vir_result_set(struct vir_result *r, enum vir_kind k, const char *name, size_t len)
{
    r->kind = k;
    r->detail[0] = '\0';
    if (!name) {
        r->name[0] = '\0';
        return;
    }
    vir_result_clean_name(r->name, sizeof r->name, name, len);
}

void vir_result_error(struct vir_result *r, const char *code, const char *fmt, ...)
{
    vir_result_set(r, VIR_ERROR, code, strlen(code));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
}
