/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * log: graded logging to stderr (default) or syslog. One line per call.
 * Lines are "LEVEL message"; callers put "sid=... key=value" context first.
 * Thread-safe (one write(2) per line).
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>

enum log_level {
    LOG_LVL_DEBUG = 0,
    LOG_LVL_INFO,
    LOG_LVL_WARN,  /* peer or resource trouble */
    LOG_LVL_ERROR, /* an operation failed */
    LOG_LVL_FATAL, /* cannot continue */
};

void log_init(const char *ident, int use_syslog, enum log_level min_level);
void log_set_level(enum log_level min_level);
int log_enabled(enum log_level lvl);
/* Parse "debug|info|warn|error"; -1 if unknown. */
int log_level_parse(const char *s);
/* Buffer info/debug lines logged from the calling (event loop) thread;
 * log_flush() writes them (call it once per loop iteration and at exit). */
void log_set_buffered(int on);
void log_flush(void);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_debug(...) do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_fatal(...) log_msg(LOG_LVL_FATAL, __VA_ARGS__)

#endif
