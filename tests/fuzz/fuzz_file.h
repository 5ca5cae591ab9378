/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * An in-memory file for the drivers of parsers that open files (rule
 * includes, map files, key files): a memfd, reachable as DIR/m through a
 * symlink in a private temporary directory made once per process. Each
 * input rewrites the memfd; nothing else touches the disk.
 *
 * fuzz_file_safe() refuses inputs that name device, proc or sys paths
 * (or climb with ".."), which a parser told to open a file would read
 * without end: the drivers skip those inputs.
 */
#ifndef SLUICE_FUZZ_FILE_H
#define SLUICE_FUZZ_FILE_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

static int fuzz__memfd = -1;
static char fuzz__dir[256];
static char fuzz__link[300];

static void fuzz__file_cleanup(void)
{
    unlink(fuzz__link);
    rmdir(fuzz__dir);
}

/* The directory holding "m"; its content is set to data[0..size). */
static inline const char *fuzz_file_set(const void *data, size_t size)
{
    if (fuzz__memfd < 0) {
        char target[64];
        const char *tmp = getenv("TMPDIR");

        fuzz__memfd = memfd_create("sluice-fuzz", MFD_CLOEXEC);
        FUZZ_CHECK(fuzz__memfd >= 0);
        snprintf(fuzz__dir, sizeof fuzz__dir, "%s/sluice-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        FUZZ_CHECK(mkdtemp(fuzz__dir) != NULL);
        snprintf(fuzz__link, sizeof fuzz__link, "%s/m", fuzz__dir);
        snprintf(target, sizeof target, "/proc/%d/fd/%d", (int)getpid(), fuzz__memfd);
        FUZZ_CHECK(symlink(target, fuzz__link) == 0);
        atexit(fuzz__file_cleanup);
    }
    FUZZ_CHECK(ftruncate(fuzz__memfd, 0) == 0);
    FUZZ_CHECK(size == 0 || pwrite(fuzz__memfd, data, size, 0) == (ssize_t)size);
    return fuzz__dir;
}

static inline bool fuzz_file_safe(const void *data, size_t size)
{
    static const char *const bad[] = {"/dev", "/proc", "/sys", "/run", ".."};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (memmem(data, size, bad[i], strlen(bad[i])) != NULL)
            return false;
    return true;
}

#endif
