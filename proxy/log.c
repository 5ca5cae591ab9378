/* SPDX-License-Identifier: GPL-2.0-or-later */
/* log: see log.h. Each line is formatted into a stack buffer and written
 * with a single write(2) so concurrent threads never interleave. */
#include "log.h"

#include <pthread.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* No CODE_FILE=log.c on every record: the place that logged is ours. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "logfmt.h"

/* The message part of a line (after "TIME level: "), at most. */
#define LOG__TEXT_MAX 4032

static int log_syslog;
/* stderr is systemd's journal stream: records go to journald with fields. */
static bool log_journal;
static int log_json; /* log_format = json; read atomically (set on reload) */
static const char *log_ident = "sluice";
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

static bool log__journal_stream(void);
static void log__emit(enum log_level lvl, const char *line, size_t len);

void log_init(const char *ident, int use_syslog, enum log_level min_level)
{
    log_min = min_level;
    log_syslog = use_syslog;
    log_ident = ident;
    log_journal = !use_syslog && log__journal_stream();
    if (use_syslog)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_format(enum log_format f)
{
    log_flush(); /* the batch keeps one format */
    __atomic_store_n(&log_json, f == LOG_FORMAT_JSON, __ATOMIC_RELAXED);
}

int log_journald(void)
{
    return log_journal;
}

void log_set_level(enum log_level min_level)
{
    log_min = min_level;
}

int log_enabled(enum log_level lvl)
{
    return lvl >= log_min;
}

/* Under systemd, stderr connected to the journal: systemd puts the
 * stream's device:inode in JOURNAL_STREAM (systemd.exec(5)), and a child
 * whose stderr was redirected elsewhere inherits the variable, hence the
 * comparison with stderr itself. journald's socket must exist too:
 * sd_journal_sendv() reports success when it does not (records would be
 * lost), so without it the lines stay on stderr. */
static bool log__journal_stream(void)
{
    if (access("/run/systemd/journal/socket", F_OK) != 0)
        return false;
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    char extra;
    struct stat st;
    if (!e || sscanf(e, "%llu:%llu%c", &dev, &ino, &extra) != 2)
        return false;
    if (fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* One record to journald with its fields (SLUICE_SID=..., see logfmt.h).
 * 0, or -1 when journald did not take it (the caller writes stderr). */
__attribute__((noinline)) static int log__journal(enum log_level lvl, const char *text, size_t len)
{
    static const char *const prio[] = {"PRIORITY=7", "PRIORITY=6", "PRIORITY=4", "PRIORITY=3",
                                       "PRIORITY=2"};
    struct logfmt_field f[LOGFMT_FIELDS_MAX];
    size_t nf = logfmt_fields(text, len, f, LOGFMT_FIELDS_MAX);
    struct iovec iov[LOGFMT_FIELDS_MAX + 3];
    char msg[sizeof "MESSAGE=" + LOG__TEXT_MAX], ident[sizeof "SYSLOG_IDENTIFIER=" + 64];
    char vals[8192];
    size_t n = 0, used = 0;
    memcpy(msg, "MESSAGE=", 8);
    memcpy(msg + 8, text, len);
    iov[n++] = (struct iovec){msg, 8 + len};
    iov[n++] = (struct iovec){(void *)prio[lvl], strlen(prio[lvl])};
    int il = snprintf(ident, sizeof ident, "SYSLOG_IDENTIFIER=%s", log_ident);
    iov[n++] = (struct iovec){ident, (size_t)il < sizeof ident ? (size_t)il : sizeof ident - 1};
    for (size_t i = 0; i < nf; i++) {
        size_t kl = logfmt_journal_name(vals + used, sizeof vals - used, f[i].key, f[i].keylen);
        if (!kl || used + kl + 2 > sizeof vals)
            break;
        vals[used + kl] = '=';
        size_t vl = logfmt_value(&f[i], vals + used + kl + 1, sizeof vals - used - kl - 1);
        iov[n++] = (struct iovec){vals + used, kl + 1 + vl};
        used += kl + 1 + vl + 1;
    }
    return sd_journal_sendv(iov, (int)n) < 0 ? -1 : 0;
}

/* The line to stderr: at once, or into the loop thread's batch. */
static void log__emit(enum log_level lvl, const char *line, size_t len)
{
    if (log_buffered && lvl <= LOG_LVL_INFO && pthread_equal(pthread_self(), log_loop_thread)) {
        if (log_buf_len + len > sizeof log_buf)
            log_flush();
        if (len <= sizeof log_buf) {
            memcpy(log_buf + log_buf_len, line, len);
            log_buf_len += len;
            return;
        }
    }
    if (log_buffered && pthread_equal(pthread_self(), log_loop_thread))
        log_flush(); /* keep the order of this thread's lines */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

/* Out of line: its 16 KiB buffer is on the stack only in JSON mode. */
__attribute__((noinline)) static void log__json(enum log_level lvl, const char *stamp,
                                                const char *text, size_t tlen)
{
    char js[16384];
    struct logfmt_rec r = {stamp, log_names[lvl], log_ident, text, tlen};
    size_t jl = logfmt_json(js, sizeof js, &r);
    log__emit(lvl, js, jl);
}

void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
    if (lvl < log_min)
        return;
    char text[LOG__TEXT_MAX];
    int m = vsnprintf(text, sizeof text, fmt, ap);
    size_t tlen = m < 0 ? 0 : (size_t)m < sizeof text ? (size_t)m : sizeof text - 1;
    if (log_syslog) {
        static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR, LOG_CRIT};
        syslog(prio[lvl], "%s: %s", log_names[lvl], text);
        return;
    }
    if (log_journal && log__journal(lvl, text, tlen) == 0)
        return;
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
    char stamp[32];
    int n = 19;
    memcpy(stamp, cached, 19);
    stamp[n++] = '.';
    stamp[n++] = (char)('0' + msec / 100);
    stamp[n++] = (char)('0' + msec / 10 % 10);
    stamp[n++] = (char)('0' + msec % 10);
    stamp[n++] = 'Z';
    stamp[n] = 0;
    if (__atomic_load_n(&log_json, __ATOMIC_RELAXED)) {
        log__json(lvl, stamp, text, tlen);
        return;
    }
    char line[LOG__TEXT_MAX + 64];
    stamp[n++] = ' ';
    memcpy(line, stamp, (size_t)n);
    size_t nl = strlen(log_names[lvl]);
    memcpy(line + n, log_names[lvl], nl);
    n += (int)nl;
    line[n++] = ':';
    line[n++] = ' ';
    /* Never let peer-supplied text break the one-line-per-record rule. */
    for (size_t i = 0; i < tlen; i++)
        line[n++] = text[i] == '\n' || text[i] == '\r' ? ' ' : text[i];
    line[n++] = '\n';
    log__emit(lvl, line, (size_t)n);
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
