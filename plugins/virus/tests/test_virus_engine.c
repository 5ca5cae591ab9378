/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_engine against real libclamav with a database generated here (no
 * signature or EICAR file lives in the repository): an .ndb line for the
 * EICAR string (assembled from pieces at run time) and the .hdb line for
 * clam.exe of Debian's clamav-testfiles. Covers MIME parsing, archives,
 * the recursion limit, a missing database, reload while scanning, and
 * detection with the scratch directory on tmpfs as the plugin makes it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vir_engine.h"
#include "vir_tmp.h"

static char g_dir[64];   /* scratch root */
static char g_db[128];   /* database directory */
static char g_tmp[128];  /* libclamav tmpdir */
static char g_eicar[80]; /* the EICAR test string */

static const char *testfiles(void)
{
    const char *d = getenv("CLAMAV_TESTFILES");
    return d ? d : "/usr/share/clamav-testfiles";
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void write_db(void)
{
    char line[400] = "Test.EICAR.NDB:0:*:";
    for (const char *p = g_eicar; *p; p++) {
        size_t n = strlen(line);
        snprintf(line + n, sizeof line - n, "%02x", (unsigned char)*p);
    }
    strcat(line, "\n");
    write_file(g_db, "test.ndb", line);
    write_file(g_db, "test.hdb", "aa15bcf478d165efd2065190eb473bcb:544:ClamAV-Test-File\n");
}

static int setup(void **state)
{
    (void)state;
    /* EICAR, in pieces so this file is not itself a detection. */
    snprintf(g_eicar, sizeof g_eicar, "%s%s%s%s", "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
             "EICAR-STANDARD-", "ANTIVIRUS-TEST-", "FILE!$H+H*");
    snprintf(g_dir, sizeof g_dir, "/tmp/vir-engine-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_db, sizeof g_db, "%s/db", g_dir);
    snprintf(g_tmp, sizeof g_tmp, "%s/tmp", g_dir);
    mkdir(g_db, 0700);
    mkdir(g_tmp, 0700);
    write_db();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static atomic_int g_errors_logged;

static void log_cb(void *ud, int level, const char *msg)
{
    (void)ud;
    if (level >= 3)
        atomic_fetch_add(&g_errors_logged, 1);
    if (getenv("VIR_TEST_VERBOSE"))
        fprintf(stderr, "log %d: %s\n", level, msg);
}

static struct vir_engine_opts opts(const char *db)
{
    struct vir_engine_opts o = {
        .database = db,
        .tmpdir = g_tmp,
        .cache = false,
        .max_scan_size = 25u << 20,
        .max_file_size = 25u << 20,
        .max_recursion = 16,
        .max_files = 10000,
        .max_scan_time_ms = 20000,
        .reload_check_ms = 0,
        .log = log_cb,
    };
    return o;
}

static char *b64(const unsigned char *in, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(n * 2 + 8);
    size_t o = 0, col = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
        if ((col += 4) >= 76) {
            out[o++] = '\r';
            out[o++] = '\n';
            col = 0;
        }
    }
    out[o] = '\0';
    return out;
}

/* A multipart mail with one base64 attachment. */
static char *mail_with(const unsigned char *att, size_t n, const char *fname)
{
    char *enc = b64(att, n);
    size_t sz = strlen(enc) + 1024;
    char *m = malloc(sz);
    snprintf(m, sz,
             "From: a@example.com\r\nTo: b@example.net\r\nSubject: test\r\n"
             "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n"
             "--BB\r\nContent-Type: text/plain\r\n\r\nSee attachment.\r\n"
             "--BB\r\nContent-Type: application/octet-stream; name=\"%s\"\r\n"
             "Content-Transfer-Encoding: base64\r\n"
             "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n%s\r\n--BB--\r\n",
             fname, fname, enc);
    free(enc);
    return m;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)l + 1);
    *n = fread(b, 1, (size_t)l, f);
    fclose(f);
    return b;
}

struct dcase {
    const char *what;
    char *msg;
    size_t len;
    enum vir_kind kind;
    const char *name_prefix;
};

static void test_detects(void **state)
{
    (void)state;
    struct vir_engine_opts o = opts(g_db);
    struct vir_engine *e = vir_engine_new(&o);
    assert_non_null(e);
    assert_int_equal(vir_engine_signatures(e), 2);

    char *plain_eicar = mail_with((const unsigned char *)g_eicar, strlen(g_eicar), "eicar.com");
    static const char clean[] = "From: a@example.com\r\nSubject: hi\r\n\r\nJust text.\r\n";
    struct dcase cases[8];
    size_t nc = 0;
    cases[nc++] = (struct dcase){"eicar raw", g_eicar, strlen(g_eicar), VIR_VIRUS,
                                     "Test.EICAR.NDB"};
    cases[nc++] = (struct dcase){"eicar base64 attachment", plain_eicar, strlen(plain_eicar),
                                     VIR_VIRUS, "Test.EICAR.NDB"};
    cases[nc++] = (struct dcase){"clean", (char *)clean, strlen(clean), VIR_CLEAN, ""};
    static const char *const files[] = {"clam.zip", "clam.tar.gz", "clam.pdf", "clam.ole.doc"};
    char *owned[4] = {0};
    for (size_t i = 0; i < 4; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%s", testfiles(), files[i]);
        size_t n;
        unsigned char *b = slurp(p, &n);
        if (!b)
            continue; /* package missing: those cases are skipped */
        owned[i] = mail_with(b, n, files[i]);
        free(b);
        cases[nc++] = (struct dcase){files[i], owned[i], strlen(owned[i]), VIR_VIRUS,
                                         "ClamAV-Test-File"};
    }
    for (size_t i = 0; i < nc; i++) {
        struct vir_result r;
        vir_engine_scan(e, cases[i].msg, cases[i].len, &r);
        if (r.kind != cases[i].kind ||
            strncmp(r.name, cases[i].name_prefix, strlen(cases[i].name_prefix)))
            fail_msg("%s: got %s \"%s\" (%s), want %s \"%s*\"", cases[i].what,
                     vir_result_kind_name(r.kind), r.name, r.detail,
                     vir_result_kind_name(cases[i].kind), cases[i].name_prefix);
    }
    /* libclamav appends .UNOFFICIAL to names from non-official files. */
    struct vir_result r;
    vir_engine_scan(e, g_eicar, strlen(g_eicar), &r);
    assert_string_equal(r.name, "Test.EICAR.NDB.UNOFFICIAL");
    for (size_t i = 0; i < 4; i++)
        free(owned[i]);
    free(plain_eicar);
    vir_engine_free(e);

    /* Nothing left behind in the private tmpdir. */
    DIR *d = opendir(g_tmp);
    assert_non_null(d);
    struct dirent *de;
    int left = 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            left++;
    closedir(d);
    assert_int_equal(left, 0);
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    size_t n = 0;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* The scratch directory made as the plugin makes it by default (tmpfs when
 * there is one): every way EICAR or clam.exe reaches a part is still found,
 * nothing is left behind, and the directory goes with vir_tmp_remove(). */
static void test_detects_memory_tmpdir(void **state)
{
    (void)state;
    struct vir_tmp t;
    char err[256];
    const char *const mem[] = {"/dev/shm"};
    const char *const disk[] = {g_tmp};
    assert_int_equal(vir_tmp_make_in(&t, mem, 1, disk, 1, err, sizeof err), 0);
    if (vir_tmp_is_memory("/dev/shm"))
        assert_true(t.memory);
    struct vir_engine_opts o = opts(g_db);
    o.tmpdir = t.path;
    struct vir_engine *e = vir_engine_new(&o);
    assert_non_null(e);

    char *att = mail_with((const unsigned char *)g_eicar, strlen(g_eicar), "eicar.com");
    /* message/rfc822 inside multipart, the inner mail with the attachment */
    size_t nsz = strlen(att) + 1024;
    char *nested = malloc(nsz);
    snprintf(nested, nsz,
             "From: c@example.com\r\nTo: d@example.net\r\nSubject: fwd\r\n"
             "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\n"
             "--OUT\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n"
             "--OUT\r\nContent-Type: message/rfc822\r\n\r\n%s\r\n--OUT--\r\n",
             att);
    /* the string in a plain-text body, and in quoted-printable HTML */
    char plain[512], qp[768];
    snprintf(plain, sizeof plain,
             "From: a@example.com\r\nSubject: text\r\n\r\nHello\r\n%s\r\nBye\r\n", g_eicar);
    char qpe[200] = "";
    for (const char *p = g_eicar; *p; p++) {
        size_t n = strlen(qpe);
        if (*p == '=')
            snprintf(qpe + n, sizeof qpe - n, "=3D");
        else
            snprintf(qpe + n, sizeof qpe - n, "%c", *p);
    }
    snprintf(
        qp, sizeof qp,
        "From: a@example.com\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/alternative; boundary=\"AA\"\r\n\r\n"
        "--AA\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
        "--AA\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        "<html><body><p>%s</p></body></html>\r\n--AA--\r\n",
        qpe);
    char zp[256];
    snprintf(zp, sizeof zp, "%s/clam.zip", testfiles());
    size_t zn;
    unsigned char *zip = slurp(zp, &zn);
    char *zmail = zip ? mail_with(zip, zn, "clam.zip") : NULL;
    static const char clean[] = "From: a@example.com\r\nSubject: hi\r\n\r\nJust text.\r\n";

    struct dcase cases[] = {
        {"base64 attachment", att, strlen(att), VIR_VIRUS, "Test.EICAR.NDB"},
        {"nested message/rfc822", nested, strlen(nested), VIR_VIRUS, "Test.EICAR.NDB"},
        {"plain-text body", plain, strlen(plain), VIR_VIRUS, "Test.EICAR.NDB"},
        {"quoted-printable html", qp, strlen(qp), VIR_VIRUS, "Test.EICAR.NDB"},
        {"clean", (char *)clean, strlen(clean), VIR_CLEAN, ""},
        {"zip attachment", zmail, zmail ? strlen(zmail) : 0, VIR_VIRUS, "ClamAV-Test-File"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!cases[i].msg)
            continue; /* clamav-testfiles missing */
        struct vir_result r;
        vir_engine_scan(e, cases[i].msg, cases[i].len, &r);
        if (r.kind != cases[i].kind ||
            strncmp(r.name, cases[i].name_prefix, strlen(cases[i].name_prefix)))
            fail_msg("%s: got %s \"%s\" (%s), want %s \"%s*\"", cases[i].what,
                     vir_result_kind_name(r.kind), r.name, r.detail,
                     vir_result_kind_name(cases[i].kind), cases[i].name_prefix);
        assert_int_equal(count_entries(t.path), 0);
    }
    vir_engine_free(e);
    free(att);
    free(nested);
    free(zip);
    free(zmail);
    assert_int_equal(vir_tmp_remove(t.path), 0);
    struct stat st;
    assert_int_equal(lstat(t.path, &st), -1);
}

/* uuencode: "begin 644 NAME", lines of 45 bytes, "`", "end" (CRLF). */
static char *uuencode(const unsigned char *in, size_t n, const char *name)
{
    char *out = malloc(n * 2 + 256);
    size_t o = (size_t)sprintf(out, "begin 644 %s\r\n", name);
    for (size_t i = 0; i < n; i += 45) {
        size_t l = n - i < 45 ? n - i : 45;
        out[o++] = (char)(' ' + l);
        for (size_t k = 0; k < l; k += 3) {
            unsigned char b[3] = {in[i + k], k + 1 < l ? in[i + k + 1] : 0,
                                  k + 2 < l ? in[i + k + 2] : 0};
            unsigned v[4] = {b[0] >> 2, (b[0] & 3) << 4 | b[1] >> 4, (b[1] & 15) << 2 | b[2] >> 6,
                             b[2] & 63};
            for (int j = 0; j < 4; j++)
                out[o++] = v[j] ? (char)(' ' + v[j]) : '`';
        }
        out[o++] = '\r';
        out[o++] = '\n';
    }
    o += (size_t)sprintf(out + o, "`\r\nend\r\n");
    out[o] = '\0';
    return out;
}

/*
 * libclamav takes a message for mail by its first bytes. A message that
 * begins with a field it does not know (one a client chose, or the
 * Authentication-Results dkim_verify puts on top) was scanned as plain
 * text: a uuencoded virus in a mail without MIME fields went through.
 * Whatever the first field, every one of these is found.
 */
static void test_detects_whatever_the_first_field(void **state)
{
    (void)state;
    struct vir_engine_opts o = opts(g_db);
    struct vir_engine *e = vir_engine_new(&o);
    assert_non_null(e);
    char *uu = uuencode((const unsigned char *)g_eicar, strlen(g_eicar), "eicar.com");
    char *att = mail_with((const unsigned char *)g_eicar, strlen(g_eicar), "eicar.com");
    static const char *const first[] = {
        "",
        "Authentication-Results: mx.example.org; dkim=none\r\n",
        "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s; bh=x; b=y\r\n",
        "X-Mailer: something\r\n",
        "Foo: bar\r\n",
        "Authentication-Results: mx.example.org; dkim=none\r\n"
        "Received: from a by b; Mon, 7 Dec 2026 10:00:00 +0000\r\n",
    };
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++) {
        size_t sz = strlen(first[i]) + strlen(uu) + strlen(att) + 256;
        char *m = malloc(sz);
        snprintf(
            m, sz,
            "%sFrom: a@example.com\r\nTo: b@example.net\r\nSubject: uu\r\n\r\nSee below.\r\n\r\n%s",
            first[i], uu);
        struct vir_result r;
        vir_engine_scan(e, m, strlen(m), &r);
        if (r.kind != VIR_VIRUS || strncmp(r.name, "Test.EICAR.NDB", 14) != 0)
            fail_msg("uuencoded, first field \"%.30s\": got %s \"%s\" (%s)", first[i],
                     vir_result_kind_name(r.kind), r.name, r.detail);
        snprintf(m, sz, "%s%s", first[i], att);
        vir_engine_scan(e, m, strlen(m), &r);
        if (r.kind != VIR_VIRUS || strncmp(r.name, "Test.EICAR.NDB", 14) != 0)
            fail_msg("base64 attachment, first field \"%.30s\": got %s \"%s\" (%s)", first[i],
                     vir_result_kind_name(r.kind), r.name, r.detail);
        free(m);
    }
    free(uu);
    free(att);
    vir_engine_free(e);
}

/* A message of exactly max_file_size bytes is scanned: the Received: line
 * in front does not count (from a review; libclamav refused the file as
 * over the limit, a "virus" without a name). max_scan_size is no such
 * bound: libclamav counts what it extracts too. */
static void test_limits_exclude_the_mark(void **state)
{
    (void)state;
    char m[2048];
    int n = snprintf(m, sizeof m, "From: a@example.com\r\nSubject: limit\r\n\r\n");
    for (; n < (int)sizeof m - 1; n++)
        m[n] = n % 80 ? 'x' : '\n';
    m[n] = '\0';
    struct vir_engine_opts o = opts(g_db);
    o.max_file_size = (uint64_t)n;
    struct vir_engine *e = vir_engine_new(&o);
    assert_non_null(e);
    struct vir_result r;
    vir_engine_scan(e, m, (size_t)n, &r);
    if (r.kind != VIR_CLEAN)
        fail_msg("%d bytes with max_file_size %d: got %s \"%s\"", n, n,
                 vir_result_kind_name(r.kind), r.name);
    vir_engine_free(e);
    /* One byte more: a limit by name, not an unnamed virus. */
    o.max_file_size = (uint64_t)n - 1;
    e = vir_engine_new(&o);
    assert_non_null(e);
    vir_engine_scan(e, m, (size_t)n, &r);
    assert_int_equal(r.kind, VIR_LIMIT);
    assert_string_equal(r.name, "MaxFileSize");
    vir_engine_free(e);
}

/* Mail > zip > EICAR with max_recursion 1: a limit, not a silent clean. */
static void test_recursion_limit(void **state)
{
    (void)state;
    char p[256];
    snprintf(p, sizeof p, "%s/clam.zip", testfiles());
    size_t n;
    unsigned char *zip = slurp(p, &n);
    if (!zip)
        skip();
    char *m = mail_with(zip, n, "clam.zip");
    struct vir_engine_opts o = opts(g_db);
    o.max_recursion = 1;
    struct vir_engine *e = vir_engine_new(&o);
    struct vir_result r;
    vir_engine_scan(e, m, strlen(m), &r);
    assert_int_equal(r.kind, VIR_LIMIT);
    assert_string_equal(r.name, "MaxRecursion");
    vir_engine_free(e);
    free(m);
    free(zip);
}

static void test_not_ready(void **state)
{
    (void)state;
    static const char *const subdirs[] = {"missing", "empty"};
    char empty[160];
    snprintf(empty, sizeof empty, "%s/empty", g_dir);
    mkdir(empty, 0700);
    for (size_t i = 0; i < 2; i++) {
        char dir[160];
        snprintf(dir, sizeof dir, "%s/%s", g_dir, subdirs[i]);
        atomic_store(&g_errors_logged, 0);
        struct vir_engine_opts o = opts(dir);
        struct vir_engine *e = vir_engine_new(&o);
        assert_non_null(e);
        assert_int_equal(vir_engine_signatures(e), 0);
        assert_true(atomic_load(&g_errors_logged) >= 1); /* said so in the log */
        struct vir_result r;
        vir_engine_scan(e, g_eicar, strlen(g_eicar), &r);
        assert_int_equal(r.kind, VIR_ERROR);
        assert_string_equal(r.name, VIR_ERR_NOT_READY);
        vir_engine_free(e);
    }
    rmdir(empty);
}

struct scanner {
    struct vir_engine *e;
    atomic_bool stop;
    atomic_int scans, wrong;
};

static void *scan_loop(void *arg)
{
    struct scanner *s = arg;
    while (!atomic_load(&s->stop)) {
        struct vir_result r;
        vir_engine_scan(s->e, g_eicar, strlen(g_eicar), &r);
        if (r.kind != VIR_VIRUS)
            atomic_fetch_add(&s->wrong, 1);
        atomic_fetch_add(&s->scans, 1);
    }
    return NULL;
}

/* A new signature appears while two threads scan: the background reload
 * swaps it in, no scan fails, and the new signature is found afterwards. */
static void test_reload_while_scanning(void **state)
{
    (void)state;
    char db[160];
    snprintf(db, sizeof db, "%s/db2", g_dir);
    mkdir(db, 0700);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "cp '%s'/test.ndb '%s'/", g_db, db);
    assert_int_equal(system(cmd), 0);
    struct vir_engine_opts o = opts(db);
    o.reload_check_ms = 1;
    struct vir_engine *e = vir_engine_new(&o);
    assert_int_equal(vir_engine_signatures(e), 1);
    uint64_t gen0 = vir_engine_generation(e);

    static const char fresh[] = "sluice-virus-reload-marker-20260101";
    char line[200] = "Test.Fresh.NDB:0:*:";
    for (const char *p = fresh; *p; p++) {
        size_t n = strlen(line);
        snprintf(line + n, sizeof line - n, "%02x", (unsigned char)*p);
    }
    strcat(line, "\n");

    struct vir_result r;
    vir_engine_scan(e, fresh, strlen(fresh), &r);
    assert_int_equal(r.kind, VIR_CLEAN);

    struct scanner s = {.e = e};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, scan_loop, &s);
    usleep(50000);
    write_file(db, "fresh.ndb", line);
    for (int i = 0; i < 200 && vir_engine_generation(e) == gen0; i++) {
        usleep(10000);
        vir_engine_maybe_reload(e);
    }
    assert_true(vir_engine_wait_idle(e, 10000));
    usleep(50000);
    atomic_store(&s.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_true(vir_engine_generation(e) > gen0);
    assert_int_equal(vir_engine_signatures(e), 2);
    assert_int_equal(atomic_load(&s.wrong), 0);
    assert_true(atomic_load(&s.scans) > 0);
    vir_engine_scan(e, fresh, strlen(fresh), &r);
    assert_int_equal(r.kind, VIR_VIRUS);
    assert_string_equal(r.name, "Test.Fresh.NDB.UNOFFICIAL");

    /* Unchanged directory: no further reload. */
    uint64_t gen1 = vir_engine_generation(e);
    usleep(5000);
    vir_engine_maybe_reload(e);
    assert_true(vir_engine_wait_idle(e, 5000));
    assert_int_equal(vir_engine_generation(e), gen1);

    /* A broken file: the old engine stays. */
    write_file(db, "broken.ndb", "this is not a signature\n");
    usleep(5000);
    vir_engine_maybe_reload(e);
    assert_true(vir_engine_wait_idle(e, 10000));
    assert_int_equal(vir_engine_generation(e), gen1);
    vir_engine_scan(e, fresh, strlen(fresh), &r);
    assert_int_equal(r.kind, VIR_VIRUS);
    vir_engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detects),
        cmocka_unit_test(test_detects_memory_tmpdir),
        cmocka_unit_test(test_detects_whatever_the_first_field),
        cmocka_unit_test(test_limits_exclude_the_mark),
        cmocka_unit_test(test_recursion_limit),
        cmocka_unit_test(test_not_ready),
        cmocka_unit_test(test_reload_while_scanning),
    };
    return cmocka_run_group_tests_name("virus_engine", tests, setup, teardown);
}
