/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_html: HTML to text for the spam rules, written to survive the HTML
 * found in spam rather than to be a browser. Pure: bytes in, text out.
 *
 * What it produces: the visible text (tags stripped, common entities
 * decoded to UTF-8, <style>/<script>/<template> skipped, whitespace
 * collapsed, block elements as line breaks); separately the text a reader
 * would not see (display:none, visibility:hidden, opacity:0, font-size:0
 * or 1px, the hidden attribute, or a text colour equal to the background
 * colour, inherited through nested elements); the URIs of href, src and
 * action attributes; and each link's href with its text.
 */
#ifndef SPAM_HTML_H
#define SPAM_HTML_H

#include "pstr.h"

#include <stddef.h>

struct spam_html_link {
    char *href; /* owned, entity-decoded */
    char *text; /* owned, visible and hidden text inside <a>, collapsed */
};

struct spam_html_result {
    struct pstr text;   /* visible text */
    struct pstr hidden; /* hidden text */
    char **uris;            /* owned; href/src/action values */
    size_t nuris;
    struct spam_html_link *links; /* owned */
    size_t nlinks;
};

/* Limits that keep hostile input cheap. */
#define SPAM_HTML_MAX_URIS 1000
#define SPAM_HTML_MAX_DEPTH 256

/* Convert; out must be zeroed (or freed) before. */
void spam_html_parse(const char *html, size_t len, struct spam_html_result *out);
void spam_html_result_free(struct spam_html_result *r);

#endif
