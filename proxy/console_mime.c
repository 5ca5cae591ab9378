/* SPDX-License-Identifier: GPL-2.0-or-later */
/* console_mime: text rendering of a message; see console_mime.h. */
#include "console_mime.h"

#include <gmime/gmime.h>
#include <string.h>

struct console_mime__walk {
    buf_t *b;
    size_t left; /* bytes of part text still allowed */
    bool *truncated;
    int n;
};

static void console_mime__part(GMimeObject *parent, GMimeObject *part, gpointer data)
{
    (void)parent;
    struct console_mime__walk *w = data;
    if (GMIME_IS_MULTIPART(part))
        return; /* its parts come next */
    GMimeContentType *ct = g_mime_object_get_content_type(part);
    char *type = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
    const char *name = GMIME_IS_PART(part) ? g_mime_part_get_filename(GMIME_PART(part)) : NULL;
    const char *sep = w->n ? "\n" : "";
    w->n++;
    buf_printf(w->b, "%s--- part %d: %s", sep, w->n, type ? type : "text/plain");
    if (name) {
        buf_puts(w->b, ", file ");
        buf_puts(w->b, name);
    }
    g_free(type);
    if (GMIME_IS_MESSAGE_PART(part)) {
        buf_puts(w->b, " (an attached message, not shown) ---\n");
        return;
    }
    if (!GMIME_IS_TEXT_PART(part)) {
        buf_puts(w->b, " (not shown) ---\n");
        return;
    }
    buf_puts(w->b, " ---\n");
    char *text = g_mime_text_part_get_text(GMIME_TEXT_PART(part));
    if (!text)
        return;
    size_t len = strlen(text);
    if (len > w->left) {
        len = w->left;
        *w->truncated = true;
    }
    buf_append(w->b, text, len);
    if (len && text[len - 1] != '\n')
        buf_puts(w->b, "\n");
    w->left -= len;
    g_free(text);
}

int console_mime_text(buf_t *b, const char *msg, size_t len, size_t max, bool *truncated)
{
    GMimeStream *st = g_mime_stream_mem_new_with_buffer(msg, len);
    GMimeParser *p = g_mime_parser_new_with_stream(st);
    g_object_unref(st);
    GMimeMessage *m = g_mime_parser_construct_message(p, NULL);
    g_object_unref(p);
    if (!m)
        return -1;
    struct console_mime__walk w = {b, max, truncated, 0};
    g_mime_message_foreach(m, console_mime__part, &w);
    g_object_unref(m);
    return 0;
}
