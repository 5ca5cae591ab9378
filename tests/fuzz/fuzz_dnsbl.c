/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz plugins/dnsbl/dnsbl_list: the list file, answers against its lines,
 * query names and the dns_servers check.
 *
 * Invariants: a file is refused exactly when problems are reported, and
 * then leaves nothing behind; each problem is one printable line naming
 * the file and a line of the text; an accepted file has lower-case valid
 * zones, each used by some line and with one kind, symbols unique, scores
 * within -1000..1000, lines in order; an answer outside 127.0.0.0/8 or in
 * 127.255.255.0/24 is never a listing, and no line matches an address
 * outside 127.0.0.0/8; a line without MATCH matches every listing; query
 * names fit a DNS name and end in their zone; the servers check is
 * NUL-terminated and one line.
 *
 * Input: byte 0..3 = an answer address, then the file text.
 */
#include "fuzz.h"

#include <ctype.h>
#include <string.h>

#include "dnsbl_list.h"

struct errs {
    size_t n;
    unsigned max_line;
};

static void on_err(void *arg, const char *msg)
{
    struct errs *e = arg;
    const char *p = strstr(msg, "f.lists:");
    FUZZ_CHECK(p == msg);
    unsigned line = (unsigned)strtoul(msg + 8, NULL, 10);
    FUZZ_CHECK(line >= 1 && line <= e->max_line);
    for (const char *c = msg; *c; c++)
        FUZZ_CHECK((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
    e->n++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint8_t ans[4];
    memcpy(ans, data, 4);
    const char *text = (const char *)data + 4;
    size_t len = size - 4;

    struct errs e = {.max_line = 1};
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            e.max_line++;
    struct dnsbl_lists l;
    size_t n = dnsbl_lists_parse(text, len, "f.lists", &l, on_err, &e);
    FUZZ_CHECK(n == e.n);
    if (n) {
        FUZZ_CHECK(l.nentries == 0 && l.entries == NULL && l.nzones == 0);
        return 0;
    }
    int used[DNSBL_MAX_ZONES] = {0};
    for (size_t i = 0; i < l.nentries; i++) {
        const struct dnsbl_entry *en = &l.entries[i];
        FUZZ_CHECK(en->zone < l.nzones);
        used[en->zone] = 1;
        FUZZ_CHECK(en->score >= -1000 && en->score <= 1000);
        FUZZ_CHECK(en->line >= 1 && en->line <= e.max_line);
        FUZZ_CHECK(i == 0 || en->line > l.entries[i - 1].line);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(l.entries[j].symbol, en->symbol) != 0);
        uint8_t other[4] = {ans[0] == 127 ? 10 : ans[0], ans[1], ans[2], ans[3]};
        FUZZ_CHECK(!dnsbl_entry_matches(en, other));
        if (en->nmatch == 0) {
            uint8_t any[4] = {127, ans[1], ans[2], ans[3]};
            FUZZ_CHECK(dnsbl_entry_matches(en, any));
        }
    }
    for (size_t z = 0; z < l.nzones; z++) {
        const char *zn = l.zones[z].name;
        FUZZ_CHECK(used[z]);
        FUZZ_CHECK(*zn && zn[strlen(zn) - 1] != '.');
        for (const char *c = zn; *c; c++)
            FUZZ_CHECK(!isupper((unsigned char)*c));
        for (size_t y = 0; y < z; y++)
            FUZZ_CHECK(strcmp(l.zones[y].name, zn) != 0);
        char q[DNSBL_NAME_MAX], ip[64];
        snprintf(ip, sizeof ip, "%u.%u.%u.%u", ans[0], ans[1], ans[2], ans[3]);
        int ql = dnsbl_ip_qname(ip, zn, q, sizeof q);
        if (ql >= 0) {
            FUZZ_CHECK((size_t)ql == strlen(q) && ql <= 253);
            FUZZ_CHECK(!strcmp(q + ql - strlen(zn), zn));
        }
        ql = dnsbl_dom_qname(zn, zn, q, sizeof q);
        FUZZ_CHECK(ql < 0 || (size_t)ql == strlen(q));
    }

    char as_text[32];
    uint8_t back[4];
    snprintf(as_text, sizeof as_text, "%u.%u.%u.%u", ans[0], ans[1], ans[2], ans[3]);
    enum dnsbl_answer k = dnsbl_answer_parse(as_text, back);
    if (ans[0] != 127 || (ans[1] == 255 && ans[2] == 255))
        FUZZ_CHECK(k == DNSBL_ANSWER_ERROR);
    else
        FUZZ_CHECK(k == DNSBL_ANSWER_LISTED && !memcmp(back, ans, 4));
    dnsbl_lists_free(&l);

    /* The servers check on the same text (first line only). */
    char srv[600], err[128];
    const char *nl = memchr(text, '\n', len);
    size_t sl = nl ? (size_t)(nl - text) : len;
    if (sl < sizeof srv && !memchr(text, '\0', sl)) {
        memcpy(srv, text, sl);
        srv[sl] = '\0';
        if (dnsbl_servers_valid(srv, err, sizeof err) < 0)
            FUZZ_CHECK(memchr(err, '\0', sizeof err) && !strchr(err, '\n'));
    }
    return 0;
}
