/* SPDX-License-Identifier: GPL-2.0-or-later */
/* populate: which maps are populated, and that a shared library's maps
 * really go through the daemon's mmap (the way libclamav's do): those of a
 * library named as libclamav is are populated, another's are not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "populate.h"

#define RW (PROT_READ | PROT_WRITE)
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)

static void test_wanted(void **state)
{
    (void)state;
    /* libclamav's file map of a 64 KiB extracted file */
    assert_true(populate_wanted(65536, RW, ANON, -1));
    assert_true(populate_wanted(1, RW, ANON, -1));
    assert_true(populate_wanted(POPULATE_MAX, RW, ANON, -1));
    assert_false(populate_wanted(POPULATE_MAX + 1, RW, ANON, -1));
    assert_false(populate_wanted(0, RW, ANON, -1));
    /* files, shared memory, other protections */
    assert_false(populate_wanted(65536, RW, MAP_PRIVATE, 3));
    assert_false(populate_wanted(65536, RW, MAP_SHARED | MAP_ANONYMOUS, -1));
    assert_false(populate_wanted(65536, RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, -1));
    assert_false(populate_wanted(65536, PROT_READ, ANON, -1));
    assert_false(populate_wanted(65536, PROT_NONE, ANON, -1));
    assert_false(populate_wanted(65536, RW | PROT_EXEC, ANON, -1));
    /* placement and commitment the caller chose */
    assert_false(populate_wanted(65536, RW, ANON | MAP_FIXED, -1));
    assert_false(populate_wanted(65536, RW, ANON | MAP_FIXED_NOREPLACE, -1));
    assert_false(populate_wanted(65536, RW, ANON | MAP_NORESERVE, -1));
    assert_false(populate_wanted(65536, RW, ANON | MAP_STACK, -1));
    assert_false(populate_wanted(65536, RW, ANON | MAP_GROWSDOWN, -1));
    assert_false(populate_wanted(65536, RW, ANON | MAP_HUGETLB, -1));
    assert_false(populate_wanted(65536, RW, ANON | MAP_LOCKED, -1));
}

static void test_caller_wanted(void **state)
{
    (void)state;
    assert_true(populate_caller_wanted("/usr/lib/x86_64-linux-gnu/libclamav.so.12"));
    assert_true(populate_caller_wanted("/usr/local/lib/libclamav.so"));
    assert_true(populate_caller_wanted("libclamav.so.12.0.3"));
    assert_false(populate_caller_wanted("/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0"));
    assert_false(populate_caller_wanted("/usr/lib/libclamav.so12"));
    assert_false(populate_caller_wanted("/usr/lib/libclamav.sox"));
    assert_false(populate_caller_wanted("/opt/libclamav.so.12/libfoo.so"));
    assert_false(populate_caller_wanted("/work/build/plugins/virus.so"));
    assert_false(populate_caller_wanted(""));
    assert_false(populate_caller_wanted(NULL));
}

typedef void *(*helper_fn)(size_t len, int prot, int flags, int fd);
struct helper {
    helper_fn mmap, mmap64;
};
static struct helper other, clamav;

static int helper_load(const char *path, struct helper *h)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        return -1;
    }
    *(void **)&h->mmap = dlsym(dl, "populate_helper_mmap");
    *(void **)&h->mmap64 = dlsym(dl, "populate_helper_mmap64");
    return h->mmap && h->mmap64 ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    return helper_load(POPULATE_HELPER_PATH, &other) ||
                   helper_load(POPULATE_HELPER_CLAMAV_PATH, &clamav)
               ? -1
               : 0;
}

/* Pages of [p, p+len) in memory, without touching them. */
static size_t resident(void *p, size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t n = (len + (size_t)pg - 1) / (size_t)pg, in = 0;
    unsigned char *vec = malloc(n);
    assert_non_null(vec);
    assert_int_equal(mincore(p, len, vec), 0);
    for (size_t i = 0; i < n; i++)
        in += vec[i] & 1;
    free(vec);
    return in;
}

static void check_library_map(helper_fn fn, bool populated)
{
    long pg = sysconf(_SC_PAGESIZE);
    /* What libclamav asks for: every page there before the first touch,
     * zeroed and writable. Another library's map is faulted in as read. */
    size_t len = 64 * 1024;
    unsigned char *p = fn(len, RW, ANON, -1);
    assert_true(p != MAP_FAILED);
    assert_int_equal(resident(p, len), populated ? len / (size_t)pg : 0);
    for (size_t i = 0; i < len; i += 4096)
        assert_int_equal(p[i], 0);
    memset(p, 'x', len);
    assert_int_equal(p[len - 1], 'x');
    assert_int_equal(munmap(p, len), 0);

    /* Over the bound, shared, or read-only: left to fault in as read. */
    len = POPULATE_MAX + (size_t)pg;
    p = fn(len, RW, ANON, -1);
    assert_true(p != MAP_FAILED);
    assert_int_equal(resident(p, len), 0);
    assert_int_equal(munmap(p, len), 0);
    len = 64 * 1024;
    p = fn(len, RW, MAP_SHARED | MAP_ANONYMOUS, -1);
    assert_true(p != MAP_FAILED);
    assert_int_equal(resident(p, len), 0);
    assert_int_equal(munmap(p, len), 0);
    p = fn(len, PROT_READ, ANON, -1);
    assert_true(p != MAP_FAILED);
    assert_int_equal(resident(p, len), 0);
    assert_int_equal(munmap(p, len), 0);

    /* A file map is the file's, as before. */
    int fd = memfd_create("test_populate", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "hello", 5), 5);
    p = fn(5, PROT_READ, MAP_PRIVATE, fd);
    assert_true(p != MAP_FAILED);
    assert_memory_equal(p, "hello", 5);
    assert_int_equal(munmap(p, 5), 0);
    close(fd);

    /* A failure is the caller's to see, errno included. */
    errno = 0;
    p = fn(64 * 1024, RW, MAP_PRIVATE, -1);
    assert_true(p == MAP_FAILED);
    assert_int_equal(errno, EBADF);
}

static void test_library_mmap64(void **state)
{
    (void)state;
    check_library_map(clamav.mmap64, true);
    check_library_map(other.mmap64, false);
}

static void test_library_mmap(void **state)
{
    (void)state;
    check_library_map(clamav.mmap, true);
    check_library_map(other.mmap, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wanted),
        cmocka_unit_test(test_caller_wanted),
        cmocka_unit_test(test_library_mmap64),
        cmocka_unit_test(test_library_mmap),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
