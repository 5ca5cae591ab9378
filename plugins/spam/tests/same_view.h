/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared by the spam tests: two views of one message (spam_msg.h) must
 * give rules the same values: one read without GMime, one with it.
 * Include after cmocka.h.
 */
#ifndef SPAM_TEST_SAME_VIEW_H
#define SPAM_TEST_SAME_VIEW_H
#include "spam_msg.h"
#include "pstr.h"

#include <string.h>

static void same_pstr(const char *what, const struct pstr *a, const struct pstr *b)
{
    if (a->len != b->len || memcmp(pstr_cstr(a), pstr_cstr(b), a->len) != 0)
        fail_msg("%s: without GMime '%s', GMime '%s'", what, pstr_cstr(a), pstr_cstr(b));
}

static void same_view(const struct spam_msg *a, const struct spam_msg *b)
{
    same_pstr("text", &a->text, &b->text);
    same_pstr("rawtext", &a->rawtext, &b->rawtext);
    same_pstr("MIME:parts", &a->parts, &b->parts);
    same_pstr("MIME:filenames", &a->filenames, &b->filenames);
    same_pstr("HTML:hidden", &a->hidden, &b->hidden);
    same_pstr("HTML:linkmismatch", &a->mismatch, &b->mismatch);
    assert_int_equal(a->truncated, b->truncated);
    assert_int_equal(a->nuris, b->nuris);
    for (size_t i = 0; i < a->nuris; i++)
        assert_string_equal(a->uris[i], b->uris[i]);
    assert_int_equal(a->nhdrs, b->nhdrs);
    for (size_t i = 0; i < a->nhdrs; i++) {
        assert_string_equal(a->hdrs[i].name, b->hdrs[i].name);
        assert_string_equal(a->hdrs[i].raw, b->hdrs[i].raw);
        assert_string_equal(a->hdrs[i].decoded, b->hdrs[i].decoded);
    }
}
#endif
