/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz the configuration: cfg_load() of a whole file (handed over as an
 * in-memory file, /proc/self/fd/N of a memfd) and the value grammar of
 * cfg_parse.
 *
 * File invariants: the load fails exactly when it reports problems; every
 * problem is one line "FILE:LINE: message" or "FILE: message" naming a
 * line of the file (or "(command line)"), without CR; a loaded cfg has its
 * counts within their arrays, at least one listen and upstream address,
 * and cfg_get() finds the last value of every key it kept.
 * Value invariants: durations and sizes survive the message formatters
 * (fmt -> parse gives the same number), a parsed address parses again to
 * the same port and text, error messages are NUL-terminated in their
 * buffer.
 *
 * Input: byte 0 selects: even = configuration file (the rest), odd =
 * value grammar (the rest as one NUL-terminated value).
 *
 * Accounts are looked up through the fakes below, so the fuzzer never
 * reads the system's user database; paths named in the file (spool_dir,
 * tls_cert_file...) are only stat()ed and access()ed.
 */
#include "fuzz.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "cfg_parse.h"

struct passwd *getpwnam(const char *name)
{
    static struct passwd pw = {.pw_name = "sluice", .pw_dir = "/", .pw_shell = "/bin/false"};

    pw.pw_uid = pw.pw_gid = 100;
    return strcmp(name, "sluice") == 0 ? &pw : NULL;
}

struct group *getgrnam(const char *name)
{
    static struct group gr = {.gr_name = "sluice"};

    gr.gr_gid = 100;
    return strcmp(name, "sluice") == 0 ? &gr : NULL;
}

static int memfd = -1;
static char memfd_path[64];

static void check_errors(const buf_t *e, int nlines)
{
    const char *p = e->ptr, *end = e->ptr + e->len;

    FUZZ_CHECK(e->len > 0 && e->ptr[e->len - 1] == '\n');
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t pl = strlen(memfd_path);

        FUZZ_CHECK(nl != NULL);
        FUZZ_CHECK(memchr(p, '\r', (size_t)(nl - p)) == NULL);
        FUZZ_CHECK(memchr(p, '\0', (size_t)(nl - p)) == NULL);
        if ((size_t)(nl - p) > pl && memcmp(p, memfd_path, pl) == 0 && p[pl] == ':') {
            const char *q = p + pl + 1;
            if (*q >= '0' && *q <= '9') {
                long line = strtol(q, NULL, 10);
                FUZZ_CHECK(line >= 1 && line <= nlines);
            }
        } else {
            FUZZ_CHECK(strncmp(p, "(command line)", 14) == 0);
        }
        p = nl + 1;
    }
}

static void check_cfg(struct cfg *c)
{
    FUZZ_CHECK(c->refs == 1);
    FUZZ_CHECK(c->nlisten >= 1 && c->nlisten <= CFG_MAX_LISTEN);
    FUZZ_CHECK(c->nupstream >= 1 && c->nupstream <= CFG_MAX_UPSTREAM);
    FUZZ_CHECK(c->nplugins <= CFG_MAX_PLUGINS);
    FUZZ_CHECK(memchr(c->hostname, '\0', sizeof c->hostname) != NULL);
    FUZZ_CHECK(memchr(c->stats_listen, '\0', sizeof c->stats_listen) != NULL);
    for (size_t i = 0; i < c->nlisten; i++)
        FUZZ_CHECK(c->listen[i].port >= 0 && c->listen[i].port <= 65535);
    for (size_t i = 0; i < c->nupstream; i++)
        FUZZ_CHECK(c->upstream[i].port >= 0 && c->upstream[i].port <= 65535);
    for (size_t i = 0; i < c->nplugins; i++)
        FUZZ_CHECK(c->plugins[i].name && c->plugins[i].path && c->plugins[i].name[0]);
    for (size_t i = 0; i < c->nkv; i++) {
        const struct cfg_kv *kv = &c->kv[i];
        size_t last = i;

        for (size_t j = i + 1; j < c->nkv; j++)
            if (strcmp(c->kv[j].section, kv->section) == 0 && strcmp(c->kv[j].key, kv->key) == 0)
                last = j;
        int line = 0;
        const char *v = cfg_get(c, kv->section, kv->key, &line);
        FUZZ_CHECK(v != NULL && strcmp(v, c->kv[last].value) == 0);
        FUZZ_CHECK(line == c->kv[last].line);
    }
}

static void fuzz_file(const uint8_t *data, size_t size)
{
    buf_t errors = BUF_INIT;
    int nlines = 1;

    if (memfd < 0) {
        memfd = memfd_create("sluice-fuzz-cfg", MFD_CLOEXEC);
        FUZZ_CHECK(memfd >= 0);
        snprintf(memfd_path, sizeof memfd_path, "/proc/self/fd/%d", memfd);
    }
    FUZZ_CHECK(ftruncate(memfd, 0) == 0);
    FUZZ_CHECK(pwrite(memfd, data, size, 0) == (ssize_t)size);
    for (size_t i = 0; i < size; i++)
        nlines += data[i] == '\n';

    struct cfg *c = cfg_load(memfd_path, NULL, &errors);
    FUZZ_CHECK((c == NULL) == (errors.len > 0));
    if (c) {
        check_cfg(c);
        FUZZ_CHECK(cfg_ref(c) == c);
        cfg_unref(c);
        cfg_unref(c);
    } else {
        check_errors(&errors, nlines);
    }
    buf_free(&errors);
}

static void fuzz_value(const char *v)
{
    uint64_t u;
    unsigned ms;
    bool b;
    int idx, rc;
    char fmt[64], err[400];
    static const char *const choices[] = {"reject", "pass", "normalize", NULL};
    struct cfg_addr a, a2;

    rc = cfg_parse_u64(v, &u);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
    rc = cfg_parse_ms64(v, &u);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);
    rc = cfg_parse_bytes(v, &u);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE);

    if (cfg_parse_duration_ms(v, &ms) == 0) {
        unsigned back;

        cfg_parse_fmt_ms(fmt, sizeof fmt, ms);
        FUZZ_CHECK(cfg_parse_duration_ms(fmt, &back) == 0 && back == ms);
    }
    if (cfg_parse_size(v, &u) == 0) {
        uint64_t back;

        cfg_parse_fmt_size(fmt, sizeof fmt, u);
        FUZZ_CHECK(cfg_parse_size(fmt, &back) == 0 && back == u);
    }
    if (cfg_parse_bool(v, &b) == 0)
        FUZZ_CHECK(strlen(v) <= 5);
    if (cfg_parse_uint(v, &u) == 0)
        FUZZ_CHECK(v[0] >= '0' && v[0] <= '9');
    if (cfg_parse_enum(v, choices, &idx) == 0)
        FUZZ_CHECK(idx >= 0 && idx < 3 && strcmp(choices[idx], v) == 0);

    memset(err, 'Z', sizeof err);
    if (cfg_parse_addr(v, &a, err, sizeof err) == 0) {
        FUZZ_CHECK(memchr(a.text, '\0', sizeof a.text) && memchr(a.host, '\0', sizeof a.host));
        FUZZ_CHECK(a.port >= 0 && a.port <= 65535);
        FUZZ_CHECK(a.salen > 0 && a.salen <= sizeof a.sa);
        FUZZ_CHECK(cfg_parse_addr(a.text, &a2, err, sizeof err) == 0);
        FUZZ_CHECK(a2.port == a.port && strcmp(a2.text, a.text) == 0 && a2.salen == a.salen &&
                   memcmp(&a2.sa, &a.sa, a.salen) == 0);
    } else {
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if ((data[0] & 1) == 0) {
        fuzz_file(data + 1, size - 1);
    } else {
        char *v = malloc(size);

        FUZZ_CHECK(v != NULL);
        memcpy(v, data + 1, size - 1);
        v[size - 1] = 0;
        fuzz_value(v);
        free(v);
    }
    return 0;
}
