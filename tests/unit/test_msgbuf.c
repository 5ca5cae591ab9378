/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for msgbuf: spill threshold, contents, reuse, sticky errors. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "msgbuf.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char spool[64];

static int group_setup(void **state)
{
    (void)state;
    strcpy(spool, "/tmp/test_msgbuf.XXXXXX");
    return mkdtemp(spool) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    return rmdir(spool);
}

/* Deterministic content so equality checks catch reordering or loss. */
static void fill(char *p, size_t n, size_t off)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (off + i) % 23);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Appends `total` bytes in `chunk`-sized pieces, checks everything after. */
static void check_roundtrip(struct msgbuf *m, size_t total, size_t chunk, int want_disk)
{
    char *src = malloc(total + 1);
    assert_non_null(src);
    fill(src, total, 0);
    for (size_t off = 0; off < total; off += chunk) {
        size_t n = total - off < chunk ? total - off : chunk;
        assert_int_equal(msgbuf_append(m, src + off, n), 0);
    }
    assert_int_equal(msgbuf_len(m), total);
    assert_int_equal(msgbuf_on_disk(m), want_disk);
    assert_int_equal(msgbuf_finish(m), 0);
    size_t len = 99;
    const char *d = msgbuf_data(m, &len);
    assert_non_null(d);
    assert_int_equal(len, total);
    if (total)
        assert_memory_equal(d, src, total);
    assert_int_equal(msgbuf_error(m), 0);
    /* Nothing named is left behind in the spool directory. */
    assert_int_equal(count_entries(spool), 0);
    free(src);
}

static void test_threshold_table(void **state)
{
    (void)state;
    static const struct {
        size_t limit, total, chunk;
        int want_disk;
    } cases[] = {
        {100, 0, 1, 0},              /* empty message, in memory */
        {0, 0, 1, 0},                /* empty message, limit 0: nothing to spill */
        {100, 100, 7, 0},            /* exactly at the limit stays in memory */
        {100, 101, 7, 1},            /* one byte over spills */
        {100, 101, 101, 1},          /* one append over the limit spills */
        {0, 1, 1, 1},                /* limit 0: first byte spills */
        {65536, 1 << 20, 1000, 1},   /* many small writes through the write buffer */
        {1000, 300 * 1024, 200 * 1024, 1}, /* appends larger than the write buffer */
        {1 << 20, 1 << 20, 4096, 0}, /* large but within limit */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct msgbuf *m = msgbuf_new(cases[i].limit, spool);
        assert_non_null(m);
        check_roundtrip(m, cases[i].total, cases[i].chunk, cases[i].want_disk);
        msgbuf_free(m);
    }
}

static void test_sink_and_reset_reuse(void **state)
{
    (void)state;
    struct msgbuf *m = msgbuf_new(1000, spool);
    assert_non_null(m);
    /* 1st transaction spills. */
    check_roundtrip(m, 5000, 333, 1);
    msgbuf_reset(m);
    assert_int_equal(msgbuf_len(m), 0);
    assert_int_equal(msgbuf_on_disk(m), 0);
    /* 2nd transaction small: back in memory, through the sink entry point. */
    assert_int_equal(msgbuf_sink(m, "Subject: x\r\n", 12), 0);
    assert_int_equal(msgbuf_on_disk(m), 0);
    assert_int_equal(msgbuf_finish(m), 0);
    size_t len;
    const char *d = msgbuf_data(m, &len);
    assert_int_equal(len, 12);
    assert_memory_equal(d, "Subject: x\r\n", 12);
    /* Appending after finish is a caller bug, refused but not sticky. */
    assert_int_equal(msgbuf_append(m, "x", 1), -EINVAL);
    assert_int_equal(msgbuf_error(m), 0);
    msgbuf_reset(m);
    /* 3rd transaction spills again into a new file. */
    check_roundtrip(m, 4096, 4096, 1);
    msgbuf_reset(m);
    /* 4th: empty message after a spilled one. */
    check_roundtrip(m, 0, 1, 0);
    msgbuf_free(m);
}

static void test_missing_spool_dir(void **state)
{
    (void)state;
    struct msgbuf *m = msgbuf_new(10, "/nonexistent/sluice-spool");
    assert_non_null(m);
    assert_int_equal(msgbuf_append(m, "0123456789", 10), 0); /* still in memory */
    assert_int_equal(msgbuf_append(m, "x", 1), -ENOENT);
    assert_int_equal(msgbuf_error(m), -ENOENT);
    assert_int_equal(msgbuf_append(m, "y", 1), -ENOENT); /* sticky */
    assert_int_equal(msgbuf_finish(m), -ENOENT);
    size_t len = 1;
    assert_null(msgbuf_data(m, &len));
    assert_int_equal(len, 0);
    /* reset clears the error for the next transaction */
    msgbuf_reset(m);
    assert_int_equal(msgbuf_error(m), 0);
    assert_int_equal(msgbuf_append(m, "abc", 3), 0);
    msgbuf_free(m);
}

/* Write failure without privileges: RLIMIT_FSIZE makes write(2) fail with
 * EFBIG once the file would grow past the limit. */
static void test_write_error_fsize(void **state)
{
    (void)state;
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {100 * 1024, old.rlim_max};
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < lim.rlim_cur)
        lim.rlim_cur = old.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

    struct msgbuf *m = msgbuf_new(0, spool);
    assert_non_null(m);
    char chunk[1000];
    fill(chunk, sizeof chunk, 0);
    int rc = 0;
    size_t i;
    for (i = 0; i < 1000 && rc == 0; i++)
        rc = msgbuf_append(m, chunk, sizeof chunk);
    if (rc == 0)
        rc = msgbuf_finish(m);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, oldsig);

    assert_int_equal(rc, -EFBIG);
    assert_int_equal(msgbuf_error(m), -EFBIG);
    assert_int_equal(msgbuf_append(m, "x", 1), -EFBIG);
    assert_int_equal(msgbuf_finish(m), -EFBIG);
    assert_null(msgbuf_data(m, NULL));
    msgbuf_free(m);
}

/* ENOSPC for real: a 64 KiB tmpfs in a private mount namespace. Needs root
 * (CAP_SYS_ADMIN); skipped otherwise. Runs last since it unshares the
 * mount namespace of the whole test process. */
static void test_write_error_enospc(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        print_message("cannot create a private mount namespace: %s\n", strerror(errno));
        skip();
    }
    char dir[128];
    snprintf(dir, sizeof dir, "%s/tiny", spool);
    assert_int_equal(mkdir(dir, 0700), 0);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=64k") != 0) {
        print_message("cannot mount tmpfs: %s\n", strerror(errno));
        rmdir(dir);
        skip();
    }
    struct msgbuf *m = msgbuf_new(4096, dir);
    assert_non_null(m);
    char chunk[4096];
    fill(chunk, sizeof chunk, 0);
    int rc = 0;
    for (int i = 0; i < 256 && rc == 0; i++) /* 1 MiB into 64 KiB */
        rc = msgbuf_append(m, chunk, sizeof chunk);
    if (rc == 0)
        rc = msgbuf_finish(m);
    assert_int_equal(rc, -ENOSPC);
    assert_int_equal(msgbuf_error(m), -ENOSPC);
    assert_int_equal(msgbuf_append(m, "x", 1), -ENOSPC);
    assert_int_equal(msgbuf_finish(m), -ENOSPC);
    /* After reset the space is released and a small message fits again. */
    msgbuf_reset(m);
    assert_int_equal(msgbuf_append(m, chunk, sizeof chunk), 0);
    assert_int_equal(msgbuf_append(m, chunk, sizeof chunk), 0);
    assert_int_equal(msgbuf_on_disk(m), 1);
    assert_int_equal(msgbuf_finish(m), 0);
    msgbuf_free(m);
    assert_int_equal(umount(dir), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threshold_table),
        cmocka_unit_test(test_sink_and_reset_reuse),
        cmocka_unit_test(test_missing_spool_dir),
        cmocka_unit_test(test_write_error_fsize),
        cmocka_unit_test(test_write_error_enospc),
    };
    return cmocka_run_group_tests_name("msgbuf", tests, group_setup, group_teardown);
}
