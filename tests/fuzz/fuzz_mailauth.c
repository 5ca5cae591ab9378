/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz plugins/mailauth: Authentication-Results values, From fields, and
 * SPF (libspf2 behind ma_spf's table) and DMARC (libopendmarc) over
 * hostile records.
 *
 * Input lines: 0 an A-R value; 1 a From value; 2 the TXT record of
 * example.com (SPF) and the DMARC record; 3 the TXT record of every other
 * name asked.
 *
 * Invariants: a parsed A-R value of ours has printable resinfo texts, at
 * most as many dkim results as resinfos, and each resinfo, put back under
 * our id, parses to itself; a From domain is non-empty, lower case, of
 * host-name characters, without empty labels; an SPF evaluation ends
 * within its round limit with a known result and a printable comment;
 * DMARC gives a known result and a policy only on failure.
 */
#include "fuzz.h"

#include <string.h>

#include "ma_ar.h"
#include "ma_dmarc.h"
#include "ma_spf.h"

static char *line(const uint8_t *data, size_t size, size_t *pos)
{
    size_t start = *pos;
    while (*pos < size && data[*pos] != '\n')
        (*pos)++;
    size_t n = *pos - start;
    if (*pos < size)
        (*pos)++;
    char *s = malloc(n + 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, data + start, n);
    s[n] = '\0';
    return s;
}

static void check_printable(const char *s)
{
    for (; *s; s++)
        FUZZ_CHECK((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f);
}

static struct ma_spf *spf;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    char *ar = line(data, size, &pos), *from = line(data, size, &pos),
         *rec = line(data, size, &pos), *other = line(data, size, &pos);

    struct ma_ar_value v;
    int r = ma_ar_parse(ar, "mx.test", &v);
    FUZZ_CHECK(r >= -1 && r <= 1);
    if (r == 1) {
        FUZZ_CHECK(v.ndkim <= v.nres);
        for (size_t i = 0; i < v.nres; i++) {
            check_printable(v.res[i]);
            size_t n = strlen(v.res[i]) + 16;
            char *again = malloc(n);
            FUZZ_CHECK(again != NULL);
            snprintf(again, n, "mx.test; %s", v.res[i]);
            struct ma_ar_value w;
            FUZZ_CHECK(ma_ar_parse(again, "mx.test", &w) == 1);
            FUZZ_CHECK(w.nres == 1 && strcmp(w.res[0], v.res[i]) == 0);
            ma_ar_value_free(&w);
            free(again);
        }
        ma_ar_value_free(&v);
    }

    char dom[256];
    if (ma_dmarc_from_domain(from, dom, sizeof dom) == 0) {
        FUZZ_CHECK(dom[0] != '\0' && !strstr(dom, "..") && dom[0] != '.');
        for (const char *c = dom; *c; c++)
            FUZZ_CHECK((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                       *c == '.' || *c == '_');
    }

    if (!spf) {
        char err[128];
        spf = ma_spf_new("mx.test", err, sizeof err);
        FUZZ_CHECK(spf != NULL);
        FUZZ_CHECK(
            ma_dmarc_init("/usr/share/publicsuffix/public_suffix_list.dat", err, sizeof err) == 0);
    }
    struct ma_dns *t = ma_dns_new();
    struct ma_spf_out o;
    unsigned round = 0;
    while (ma_spf_check(spf, t, "192.0.2.1", "helo.example", "ann@example.com", round, &o) == 1) {
        FUZZ_CHECK(round < MA_SPF_MAX_ROUNDS);
        size_t i = 0;
        const char *name;
        int type;
        char names[64][256];
        int types[64];
        size_t n = 0;
        while (n < 64 && ma_dns_wanted(t, &i, &name, &type)) {
            snprintf(names[n], sizeof names[n], "%s", name);
            types[n++] = type;
        }
        FUZZ_CHECK(n > 0);
        for (size_t k = 0; k < n; k++) {
            const char *one;
            if (types[k] == MA_DNS_TXT)
                one = strcmp(names[k], "example.com") ? other : rec;
            else if (types[k] == MA_DNS_A)
                one = "192.0.2.1";
            else if (types[k] == MA_DNS_MX)
                one = "10 mx.example.com";
            else if (types[k] == MA_DNS_PTR)
                one = "helo.example";
            else
                one = NULL;
            ma_dns_put(t, names[k], types[k], one ? MA_DNS_FOUND : MA_DNS_NOTFOUND, &one,
                       one ? 1 : 0);
        }
        round++;
    }
    FUZZ_CHECK(o.result >= MA_SPF_NONE && o.result <= MA_SPF_PERMERROR);
    check_printable(o.comment);
    ma_dns_free(t);

    struct ma_ar_dkim k = {"pass", "example.com", "s"};
    struct ma_dmarc_in in = {
        .client_ip = "192.0.2.1",
        .from_domain = "example.com",
        .record = rec,
        .record_domain = "example.com",
        .spf = o.result,
        .spf_domain = "example.com",
        .dkim = &k,
        .ndkim = size & 1,
        .sample = (unsigned)(size % 100),
    };
    struct ma_dmarc_out d;
    ma_dmarc_eval(&in, &d);
    FUZZ_CHECK(d.result >= MA_DMARC_NONE && d.result <= MA_DMARC_PERMERROR);
    FUZZ_CHECK(d.result == MA_DMARC_FAIL || d.policy == '\0');
    check_printable(d.comment);

    free(ar);
    free(from);
    free(rec);
    free(other);
    return 0;
}
