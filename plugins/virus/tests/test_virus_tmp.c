/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_tmp: where libclamav's scratch directory goes (memory-backed
 * candidates first, disk fallback, bad candidates skipped), that it is
 * made 0700 and ours, and that vir_tmp_remove() deletes it with whatever a
 * scan left in it without following symlinks out of it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "vir_tmp.h"

static char g_disk[128]; /* a scratch directory on a disk file system, or "" */

static int setup(void **state)
{
    (void)state;
    /* The build tree is on disk on every machine we know; /tmp may be
     * tmpfs. Only used when it really is not memory-backed. */
    char cwd[64];
    if (!getcwd(cwd, sizeof cwd))
        return -1;
    snprintf(g_disk, sizeof g_disk, "%s/vir-tmp-XXXXXX", cwd);
    if (!mkdtemp(g_disk))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return vir_tmp_remove(g_disk);
}

static void assert_private(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(st.st_uid, geteuid());
    assert_non_null(strstr(path, "/sluice-virus."));
}

static bool exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static void test_prefers_memory(void **state)
{
    (void)state;
    if (!vir_tmp_is_memory("/dev/shm"))
        skip();
    const char *const mem[] = {NULL, "", "relative/dir", g_disk, "/dev/shm"};
    const char *const disk[] = {g_disk};
    struct vir_tmp t;
    char err[256];
    assert_int_equal(vir_tmp_make_in(&t, mem, 5, disk, 1, err, sizeof err), 0);
    assert_true(t.memory);
    assert_true(!strncmp(t.path, "/dev/shm/sluice-virus.", 22));
    assert_true(vir_tmp_is_memory(t.path));
    assert_private(t.path);
    assert_int_equal(vir_tmp_remove(t.path), 0);
    assert_false(exists(t.path));
}

static void test_disk_fallback(void **state)
{
    (void)state;
    if (vir_tmp_is_memory(g_disk))
        skip(); /* no disk file system to test with */
    /* A disk directory among the memory candidates is skipped there, and
     * taken as the fallback. */
    const char *const mem[] = {g_disk, "/nonexistent-vir-tmp"};
    const char *const disk[] = {"/nonexistent-vir-tmp", g_disk};
    struct vir_tmp t;
    char err[256];
    assert_int_equal(vir_tmp_make_in(&t, mem, 2, disk, 2, err, sizeof err), 0);
    assert_false(t.memory);
    assert_true(!strncmp(t.path, g_disk, strlen(g_disk)));
    assert_private(t.path);
    assert_int_equal(vir_tmp_remove(t.path), 0);
    assert_false(exists(t.path));
}

static void test_nothing_usable(void **state)
{
    (void)state;
    const char *const mem[] = {NULL, "rel"};
    const char *const disk[] = {"/nonexistent-vir-tmp/a"};
    struct vir_tmp t;
    char err[256] = "";
    assert_int_equal(vir_tmp_make_in(&t, mem, 2, disk, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent-vir-tmp/a"));
    assert_string_equal(t.path, "");
}

/* The default list: $TMPDIR first when it is memory-backed, else
 * /dev/shm (XDG_RUNTIME_DIR and RUNTIME_DIRECTORY unset), else $TMPDIR. */
static void test_default_candidates(void **state)
{
    (void)state;
    unsetenv("XDG_RUNTIME_DIR");
    unsetenv("RUNTIME_DIRECTORY");
    struct vir_tmp t;
    char err[256];

    setenv("TMPDIR", g_disk, 1);
    assert_int_equal(vir_tmp_make(&t, err, sizeof err), 0);
    assert_private(t.path);
    if (vir_tmp_is_memory("/dev/shm") && !vir_tmp_is_memory(g_disk)) {
        assert_true(t.memory);
        assert_true(!strncmp(t.path, "/dev/shm/", 9));
    } else if (!vir_tmp_is_memory(g_disk)) {
        assert_false(t.memory);
        assert_true(!strncmp(t.path, g_disk, strlen(g_disk)));
    }
    assert_int_equal(vir_tmp_remove(t.path), 0);

    if (vir_tmp_is_memory("/dev/shm")) {
        /* A memory-backed $TMPDIR is the admin's choice: taken first. */
        char shm[64] = "/dev/shm/vir-tmp-base-XXXXXX";
        assert_non_null(mkdtemp(shm));
        setenv("TMPDIR", shm, 1);
        assert_int_equal(vir_tmp_make(&t, err, sizeof err), 0);
        assert_true(t.memory);
        assert_true(!strncmp(t.path, shm, strlen(shm)));
        assert_int_equal(vir_tmp_remove(t.path), 0);
        /* $XDG_RUNTIME_DIR before /dev/shm. */
        unsetenv("TMPDIR");
        setenv("XDG_RUNTIME_DIR", shm, 1);
        assert_int_equal(vir_tmp_make(&t, err, sizeof err), 0);
        assert_true(!strncmp(t.path, shm, strlen(shm)));
        assert_int_equal(vir_tmp_remove(t.path), 0);
        unsetenv("XDG_RUNTIME_DIR");
        assert_int_equal(rmdir(shm), 0);
    }
    unsetenv("TMPDIR");
}

/* What an aborted scan leaves (nested directories, files), and a symlink
 * to something outside that must survive. */
static void test_remove_contents(void **state)
{
    (void)state;
    const char *const disk[] = {g_disk};
    struct vir_tmp t;
    char err[256];
    assert_int_equal(vir_tmp_make_in(&t, NULL, 0, disk, 1, err, sizeof err), 0);
    char p[4400], outside[512];
    snprintf(outside, sizeof outside, "%s/keep.txt", g_disk);
    int fd = open(outside, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(p, sizeof p, "%s/20240101_000000-scantemp.abc", t.path);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/20240101_000000-scantemp.abc/mail-tmp.def", t.path);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/20240101_000000-scantemp.abc/mail-tmp.def/clamav-1.tmp", t.path);
    fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "part", 4), 4);
    close(fd);
    snprintf(p, sizeof p, "%s/link", t.path);
    assert_int_equal(symlink(g_disk, p), 0);
    snprintf(p, sizeof p, "%s/filelink", t.path);
    assert_int_equal(symlink(outside, p), 0);

    assert_int_equal(vir_tmp_remove(t.path), 0);
    assert_false(exists(t.path));
    assert_true(exists(outside));
    assert_true(exists(g_disk));
    assert_int_equal(unlink(outside), 0);
    /* Gone already: -1 ENOENT (the plugin ignores that). */
    assert_int_equal(vir_tmp_remove(t.path), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefers_memory),  cmocka_unit_test(test_disk_fallback),
        cmocka_unit_test(test_nothing_usable),  cmocka_unit_test(test_default_candidates),
        cmocka_unit_test(test_remove_contents),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
