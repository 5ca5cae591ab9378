/* SPDX-License-Identifier: GPL-2.0-or-later */
/* log: see log.h. Each line is formatted into a stack buffer and written
 * with a single write(2) so concurrent threads never interleave. */
#include "log.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static int log_syslog;
/* Buffered mode: lines logged on the event loop's thread are collected and
 * written once per loop iteration (log_flush from a check handle), so a busy
 * loop pays one write(2) for many transaction lines. Other threads, and
 * warnings and worse, write at once. */
static bool log_buffered;
static pthread_t log_loop_thread;
static char log_buf[32768];
static size_t log_buf_len;
static enum log_level log_min = LOG_LVL_INFO;
static const char *const log_names[] = {"debug", "info", "warning", "error", "fatal"};

void log_init(const char *ident, int use_syslog, enum log_level min_level)
{
    log_min = min_level;
    log_syslog = use_syslog;
    if (use_syslog)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(enum log_level min_level)
{
    log_min = min_level;
}

int log_enabled(enum log_level lvl)
{
    return lvl >= log_min;
}

void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
    if (lvl < log_min)
        return;
    char line[4096];
    if (log_syslog) {
        static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR, LOG_CRIT};
        vsnprintf(line, sizeof line, fmt, ap);
        syslog(prio[lvl], "%s: %s", log_names[lvl], line);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    /* The date and time to the second change once a second: format them
     * then (per thread), and only the milliseconds per line. */
    static __thread time_t cached_sec = -1;
    static __thread char cached[64];
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_sec = ts.tv_sec;
    }
    long msec = ts.tv_nsec / 1000000;
    int n = 19;
    memcpy(line, cached, 19);
    line[n++] = '.';
    line[n++] = (char)('0' + msec / 100);
    line[n++] = (char)('0' + msec / 10 % 10);
    line[n++] = (char)('0' + msec % 10);
    line[n++] = 'Z';
    line[n++] = ' ';
    size_t nl = strlen(log_names[lvl]);
    memcpy(line + n, log_names[lvl], nl);
    n += (int)nl;
    line[n++] = ':';
    line[n++] = ' ';
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    /* Never let peer-supplied text break the one-line-per-record rule. */
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';
    if (log_buffered && lvl <= LOG_LVL_INFO && pthread_equal(pthread_self(), log_loop_thread)) {
        if (log_buf_len + len > sizeof log_buf)
            log_flush();
        memcpy(log_buf + log_buf_len, line, len);
        log_buf_len += len;
        return;
    }
    if (log_buffered && pthread_equal(pthread_self(), log_loop_thread))
        log_flush(); /* keep the order of this thread's lines */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void log_flush(void)
{
    if (!log_buf_len)
        return;
    size_t off = 0;
    while (off < log_buf_len) {
        ssize_t w = write(STDERR_FILENO, log_buf + off, log_buf_len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    log_buf_len = 0;
}

void log_set_buffered(int on)
{
    if (!on)
        log_flush();
    log_loop_thread = pthread_self();
    log_buffered = on != 0;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(lvl, fmt, ap);
    va_end(ap);
}

void log_conn_msg(const struct log_conn *lc, enum log_level lvl, const char *fmt, ...)
{
    if (!log_enabled(lvl))
        return;
    char text[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (lvl >= LOG_LVL_WARN && lc->action)
        log_msg(lvl, "sid=%s %s (while %s)", lc->sid, text, lc->action);
    else
        log_msg(lvl, "sid=%s %s", lc->sid, text);
}

void log_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(LOG_LVL_FATAL, fmt, ap);
    va_end(ap);
    log_flush();
    abort();
}

const char *log_quote(char *dst, size_t dstlen, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t j = 0;
    if (dstlen < 3) {
        if (dstlen)
            dst[0] = 0;
        return dst;
    }
    dst[j++] = '"';
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        /* Runs of plain printable ASCII are copied as they are. */
        const unsigned char *run = p;
        while (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
            p++;
        size_t n = (size_t)(p - run);
        if (j + n + 2 > dstlen)
            n = dstlen - j - 2;
        memcpy(dst + j, run, n);
        j += n;
        if (!*p || j + 2 >= dstlen)
            break;
        char esc[4];
        size_t e = 0;
        esc[e++] = '\\';
        if (*p == '"' || *p == '\\') {
            esc[e++] = (char)*p;
        } else {
            esc[e++] = 'x';
            esc[e++] = hex[*p >> 4];
            esc[e++] = hex[*p & 15];
        }
        if (j + e + 2 > dstlen)
            break; /* room for the closing quote and the NUL */
        memcpy(dst + j, esc, e);
        j += e;
        p++;
    }
    dst[j++] = '"';
    dst[j] = 0;
    return dst;
}
