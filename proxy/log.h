/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * log: graded logging to stderr (default), journald or syslog. One line per
 * call. Lines are "TIME LEVEL: message", or one JSON object (log_format).
 * Thread-safe (one write(2) per line).
 *
 * Context: a connection's lines go through its `struct log_conn`, which
 * prefixes every line with "sid=ID" and, for warnings and worse, ends it
 * with what the connection was doing ("(while sending RCPT to upstream)"),
 * so callers never paste the session id into format strings.
 * log_panic() is for our own bugs: it logs and aborts.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
    LOG_LVL_DEBUG = 0,
    LOG_LVL_INFO,
    LOG_LVL_WARN,  /* peer or resource trouble */
    LOG_LVL_ERROR, /* an operation failed */
    LOG_LVL_FATAL, /* cannot continue */
};

/* Format of the lines written to stderr ([server] log_format). JSON: one
 * object per line with the key=value fields as members (logfmt.h). */
enum log_format {
    LOG_FORMAT_TEXT = 0,
    LOG_FORMAT_JSON,
};

/* ident: a static string. Without syslog, when stderr is the journal
 * stream systemd gave the service (JOURNAL_STREAM), records go to journald
 * with their fields as SLUICE_* fields, whatever the format; stderr only if
 * journald refuses one. */
void log_init(const char *ident, int use_syslog, enum log_level min_level);
void log_set_format(enum log_format f); /* loop thread (flushes its batch); reload switches */
int log_journald(void);                 /* records go to journald */
void log_set_level(enum log_level min_level);
int log_enabled(enum log_level lvl);
/* Buffer info/debug lines logged from the calling (event loop) thread;
 * log_flush() writes them (call it once per loop iteration and at exit). */
void log_set_buffered(int on);
void log_flush(void);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* A connection's logging context (owned by the connection). */
struct log_conn {
    char sid[24];
    const char *action; /* static string: what the connection is doing now */
};
void log_conn_msg(const struct log_conn *lc, enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Write s into dst as one key=value-safe token: "..." with '"' and '\\'
 * escaped by a backslash and bytes outside printable ASCII as \xHH, so a
 * key=value parser reads back exactly s (attacker-supplied values:
 * addresses, HELO, upstream replies). Truncated to fit; returns dst. */
const char *log_quote(char *dst, size_t dstlen, const char *s);
void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define log_c_debug(lc, ...) do { if (log_enabled(LOG_LVL_DEBUG)) log_conn_msg(lc, LOG_LVL_DEBUG, __VA_ARGS__); } while (0)
#define log_c_info(lc, ...) log_conn_msg(lc, LOG_LVL_INFO, __VA_ARGS__)
#define log_c_warn(lc, ...) log_conn_msg(lc, LOG_LVL_WARN, __VA_ARGS__)
#define log_c_error(lc, ...) log_conn_msg(lc, LOG_LVL_ERROR, __VA_ARGS__)

#define log_debug(...) do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_fatal(...) log_msg(LOG_LVL_FATAL, __VA_ARGS__)

#endif
