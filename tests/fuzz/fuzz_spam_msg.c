/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz the spam plugin's message view (spam_msg), which sees every
 * message: besides "no crash", the view built without GMime for a plain
 * text message (spam_msg_set_plain_shortcut) is the one GMime gives, in
 * every value rules can see, and header values decoded without GMime are
 * the ones GMime decodes.
 *
 * Input: byte 0 = per-part scan limit (0: none, else 8 << (byte & 15)),
 * then the message.
 */
#include "fuzz.h"

#include <string.h>

#include <gmime/gmime.h>

#include "pstr.h"
#include "spam_msg.h"

static int same(const struct pstr *a, const struct pstr *b)
{
    return a->len == b->len && memcmp(pstr_cstr(a), pstr_cstr(b), a->len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max_scan = data[0] ? (size_t)8 << (data[0] & 15) : 0;
    const char *msg = (const char *)data + 1;
    size_t len = size - 1;

    spam_msg_set_plain_shortcut(1);
    struct spam_msg *m = spam_msg_parse(msg, len, NULL, max_scan);
    if (m->plain) {
        spam_msg_set_plain_shortcut(0);
        struct spam_msg *g = spam_msg_parse(msg, len, NULL, max_scan);
        spam_msg_set_plain_shortcut(1);
        FUZZ_CHECK(!g->plain);
        FUZZ_CHECK(same(&m->text, &g->text));
        FUZZ_CHECK(same(&m->rawtext, &g->rawtext));
        FUZZ_CHECK(same(&m->parts, &g->parts));
        FUZZ_CHECK(same(&m->filenames, &g->filenames));
        FUZZ_CHECK(same(&m->hidden, &g->hidden));
        FUZZ_CHECK(same(&m->mismatch, &g->mismatch));
        FUZZ_CHECK(m->truncated == g->truncated);
        FUZZ_CHECK(m->nuris == g->nuris);
        for (size_t i = 0; i < m->nuris; i++)
            FUZZ_CHECK(strcmp(m->uris[i], g->uris[i]) == 0);
        spam_msg_free(g);
    }
    for (size_t i = 0; i < m->nhdrs; i++) {
        char *dec = g_mime_utils_header_decode_text(NULL, m->hdrs[i].raw);
        FUZZ_CHECK(strcmp(m->hdrs[i].decoded, dec ? dec : m->hdrs[i].raw) == 0);
        g_free(dec);
    }
    spam_msg_free(m);
    return 0;
}
