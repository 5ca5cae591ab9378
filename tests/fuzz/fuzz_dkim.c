/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz the DKIM plugin's file parsers: the signing table (dkp_table), the
 * test-mode key file (dkp_keyfile) and the private key loader (dkp_key,
 * which reads the in-memory file of fuzz_file.h); and its
 * Authentication-Results code (dkp_ar), which writes what signers put in
 * d=, s=, b= and a= into a header and reads incoming A-R fields.
 *
 * Invariants: on failure the error line lies within the text, the message
 * is NUL-terminated in its buffer and the result is empty. A table's
 * domains and selectors are lower case and valid names, key files are
 * named, every entry is found by dkp_table_find() at or before its index
 * (any case). A key file's names are lower case without a trailing dot
 * and dkp_keyfile_find() gives the first record of a name in any case and
 * with a trailing dot. A loaded key comes back as the file's text, with a
 * size fitting its algorithm. An A-R value fits its buffer, holds no CR,
 * LF or other control character, and carries our authserv-id as
 * dkp_ar_has_authserv_id() reads it; an incoming value's id check does not
 * depend on the id's case.
 *
 * Input: byte 0 = parser (0 table, 1 key file, 2 RSA key, 3 Ed25519 key,
 * 4 A-R format: result, then ID NUL D NUL S NUL B NUL A NUL REASON;
 * 5 incoming A-R value: ID NUL VALUE; modulo 6), then the text.
 */
#include "fuzz.h"
#include "fuzz_file.h"

#include <ctype.h>
#include <string.h>
#include <sys/stat.h>

#include "dkp_ar.h"
#include "dkp_key.h"
#include "dkp_keyfile.h"
#include "dkp_table.h"

static size_t nlines(const char *p, size_t n)
{
    size_t l = 1;
    for (size_t i = 0; i < n; i++)
        l += p[i] == '\n';
    return l;
}

static char *flip_case(const char *s, int dot)
{
    size_t n = strlen(s);
    char *f = malloc(n + 2);

    FUZZ_CHECK(f != NULL);
    for (size_t i = 0; i < n; i++)
        f[i] = (char)toupper((unsigned char)s[i]);
    f[n] = dot ? '.' : '\0';
    f[n + 1] = '\0';
    return f;
}

static void lower_only(const char *s)
{
    for (; *s; s++)
        FUZZ_CHECK(!isupper((unsigned char)*s));
}

static void fuzz_table(const char *text, size_t len)
{
    struct dkp_table t;
    unsigned line = 0;
    char err[200];

    memset(err, 'Z', sizeof err);
    if (dkp_table_parse(text, len, &t, &line, err, sizeof err) != 0) {
        FUZZ_CHECK(line >= 1 && line <= nlines(text, len));
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
        FUZZ_CHECK(t.n == 0);
        dkp_table_free(&t);
        return;
    }
    for (size_t i = 0; i < t.n; i++) {
        const struct dkp_table_entry *e = &t.v[i];

        lower_only(e->domain);
        lower_only(e->selector);
        FUZZ_CHECK(dkp_table_valid_name(e->domain, strlen(e->domain)));
        FUZZ_CHECK(dkp_table_valid_name(e->selector, strlen(e->selector)));
        FUZZ_CHECK(e->keyfile && e->keyfile[0]);
        FUZZ_CHECK(e->alg == DKP_ALG_RSA_SHA256 || e->alg == DKP_ALG_ED25519_SHA256);
        FUZZ_CHECK(dkp_alg_name(e->alg) != NULL);
        FUZZ_CHECK(e->line >= 1 && e->line <= nlines(text, len));
        FUZZ_CHECK(i == 0 || t.v[i - 1].line < e->line);
        char *up = flip_case(e->domain, 0);
        size_t at = dkp_table_find(&t, up, 0);
        FUZZ_CHECK(at <= i);
        FUZZ_CHECK(strcmp(t.v[at].domain, e->domain) == 0);
        FUZZ_CHECK(dkp_table_find(&t, up, i) == i);
        free(up);
    }
    dkp_table_free(&t);
}

static void fuzz_keyfile(const char *text, size_t len)
{
    struct dkp_keyfile kf;
    unsigned line = 0;
    char err[200];

    memset(&kf, 0, sizeof kf);
    memset(err, 'Z', sizeof err);
    if (dkp_keyfile_parse(text, len, &kf, &line, err, sizeof err) != 0) {
        FUZZ_CHECK(line >= 1 && line <= nlines(text, len));
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
        FUZZ_CHECK(kf.n == 0);
        dkp_keyfile_free(&kf);
        return;
    }
    for (size_t i = 0; i < kf.n; i++) {
        const struct dkp_keyfile_rec *r = &kf.v[i];
        size_t first = i;

        FUZZ_CHECK(r->name && r->name[0] && r->record);
        lower_only(r->name);
        FUZZ_CHECK(strcmp(r->name, ".") == 0 || r->name[strlen(r->name) - 1] != '.');
        for (size_t j = 0; j < i; j++)
            if (strcmp(kf.v[j].name, r->name) == 0) {
                first = j;
                break;
            }
        char *up = flip_case(r->name, 1);
        FUZZ_CHECK(dkp_keyfile_find(&kf, up) == kf.v[first].record);
        FUZZ_CHECK(dkp_keyfile_find(&kf, r->name) == kf.v[first].record);
        free(up);
    }
    dkp_keyfile_free(&kf);
}

static void fuzz_key(const char *text, size_t len, enum dkp_alg alg)
{
    char path[400], err[200], *pem = (char *)1;
    unsigned bits = 0;

    snprintf(path, sizeof path, "%s/m", fuzz_file_set(text, len));
    FUZZ_CHECK(fchmod(fuzz__memfd, 0600) == 0);
    memset(err, 'Z', sizeof err);
    if (dkp_key_load(path, alg, &pem, &bits, err, sizeof err) != 0) {
        FUZZ_CHECK(pem == NULL);
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
        return;
    }
    FUZZ_CHECK(pem != NULL && strlen(pem) <= len && memcmp(pem, text, strlen(pem)) == 0);
    if (alg == DKP_ALG_RSA_SHA256)
        FUZZ_CHECK(bits >= 1024);
    else
        FUZZ_CHECK(bits == 253 || bits == 256);
    free(pem);
}

/* The i-th NUL-separated field of p[0..n) into out (truncated). */
static void field(const char *p, size_t n, int i, char *out, size_t outsz)
{
    const char *end = p + n;

    for (; i > 0 && p < end; i--) {
        const char *z = memchr(p, '\0', (size_t)(end - p));
        p = z ? z + 1 : end;
    }
    size_t l = strnlen(p, (size_t)(end - p));
    if (l >= outsz)
        l = outsz - 1;
    memcpy(out, p, l);
    out[l] = '\0';
}

static void fuzz_ar_format(const char *text, size_t len)
{
    struct dkp_sigres r;
    char id[300], out[1024];

    if (len == 0)
        return;
    memset(&r, 0, sizeof r);
    r.result = (enum dkp_result)(text[0] % 7);
    r.keybits = (unsigned char)text[0] * 16u;
    text++;
    len--;
    field(text, len, 0, id, sizeof id);
    field(text, len, 1, r.domain, sizeof r.domain);
    field(text, len, 2, r.selector, sizeof r.selector);
    field(text, len, 3, r.b, sizeof r.b);
    field(text, len, 4, r.alg, sizeof r.alg);
    field(text, len, 5, r.reason, sizeof r.reason);
    FUZZ_CHECK(dkp_ar_result_name(r.result) != NULL);

    for (int none = 0; none < 2; none++) {
        size_t outlen = sizeof out - (size_t)(unsigned char)r.b[0] % 512;
        memset(out, 'Z', sizeof out);
        int n = dkp_ar_format(id, none ? NULL : &r, out, outlen);
        if (n < 0)
            continue;
        FUZZ_CHECK((size_t)n < outlen && strlen(out) == (size_t)n);
        /* the authserv-id is the administrator's, checked at configuration */
        if (!dkp_ar_valid_authserv_id(id))
            continue;
        for (int i = 0; i < n; i++)
            FUZZ_CHECK((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
        FUZZ_CHECK(dkp_ar_has_authserv_id(out, (size_t)n, id) == 1);
    }
}

static void fuzz_ar_value(const char *text, size_t len)
{
    char id[300];
    const char *z = memchr(text, '\0', len);

    field(text, len, 0, id, sizeof id);
    if (!z)
        return;
    const char *v = z + 1;
    size_t vl = len - (size_t)(v - text);
    int has = dkp_ar_has_authserv_id(v, vl, id);
    FUZZ_CHECK(has == 0 || has == 1);
    char *up = flip_case(id, 0);
    FUZZ_CHECK(dkp_ar_has_authserv_id(v, vl, up) == has);
    free(up);
    (void)dkp_ar_valid_authserv_id(id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    switch (data[0] % 6) {
    case 0:
        fuzz_table(text, len);
        break;
    case 1:
        fuzz_keyfile(text, len);
        break;
    case 2:
        fuzz_key(text, len, DKP_ALG_RSA_SHA256);
        break;
    case 3:
        fuzz_key(text, len, DKP_ALG_ED25519_SHA256);
        break;
    case 4:
        fuzz_ar_format(text, len);
        break;
    default:
        fuzz_ar_value(text, len);
        break;
    }
    return 0;
}
