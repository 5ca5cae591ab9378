/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * console_page: the console's HTML pages, rendered from plain data into a
 * buf_t. Pure (no I/O, no globals): what a page shows is decided here and
 * unit-tested with hostile data. Every value from mail is escaped with
 * console_html; the only markup is ours. Pages use no script, no external
 * asset, only /console.css (CSP style-src 'self').
 *
 * Accessibility: one h1 per page, labelled form fields, table headers with
 * scope, a skip link, status messages in role="status", visible focus.
 */
#ifndef SLUICE_CONSOLE_PAGE_H
#define SLUICE_CONSOLE_PAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "qstore.h"

/* Who is looking, for the page frame (NULL user: the login page). */
struct console_page_ctx {
    const char *user;          /* signed-in user, or NULL */
    const char *csrf;          /* the session's CSRF token (forms), or NULL */
    const char *dashboard_url; /* the live dashboard, or NULL */
    const char *notice;        /* a status line (our own text), or NULL */
    bool notice_error;         /* shown as an error */
};

/* The search form's values as the user typed them (any may be NULL). */
struct console_page_search {
    const char *sender, *rcpt, *plugin, *reason, *since, *until, *status;
    size_t page; /* 1-based */
    size_t per_page;
};

/* The stylesheet served as /console.css. */
extern const char console_page_css[];

/* The login page; `error` (our own text) shown above the form, or NULL. */
int console_page_login(buf_t *b, const struct console_page_ctx *ctx, const char *error);
/* The list: rows v[0..n) of `total` matches. */
int console_page_list(buf_t *b, const struct console_page_ctx *ctx,
                      const struct console_page_search *s, const struct qstore_msg *v, size_t n,
                      size_t total);
/* One message: its row, the message's header block and its text (either
 * may be NULL when the file is gone; `truncated`: only the start shown). */
int console_page_msg(buf_t *b, const struct console_page_ctx *ctx, const struct qstore_msg *m,
                     const char *headers, size_t hlen, const char *text, size_t tlen,
                     bool truncated);
/* A short page with a heading and a message (errors: 404, 403, 500...). */
int console_page_simple(buf_t *b, const struct console_page_ctx *ctx, const char *title,
                        const char *message);

/* "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM" (UTC) to Unix seconds; -1 if bad.
 * "" is 0 (no bound). */
long long console_page_parse_time(const char *s);

#endif
