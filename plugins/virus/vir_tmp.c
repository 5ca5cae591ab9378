/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_tmp: libclamav's private scratch directory (contract and the order
 * of candidates in vir_tmp.h). Linux: statfs's f_type tells tmpfs/ramfs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "vir_tmp.h"

/* From <linux/magic.h>, spelled here to need no kernel headers. */
#define VIR__TMPFS_MAGIC 0x01021994L
#define VIR__RAMFS_MAGIC 0x858458f6L

/* Deepest directory nesting vir_tmp_remove() descends (libclamav nests a
 * few levels per recursion step; max_recursion is at most 100). */
#define VIR__RM_DEPTH 512

bool vir_tmp_is_memory(const char *path)
{
    struct statfs sf;
    if (statfs(path, &sf) < 0)
        return false;
    return (long)sf.f_type == VIR__TMPFS_MAGIC || (long)sf.f_type == VIR__RAMFS_MAGIC;
}

/* mkdtemp in base and check what was made; 0 or -1 (why in err). */
static int vir__make_one(struct vir_tmp *t, const char *base, char *err, size_t errsz)
{
    int n = snprintf(t->path, sizeof t->path, "%s/sluice-virus.XXXXXX", base);
    if (n < 0 || (size_t)n >= sizeof t->path) {
        snprintf(err, errsz, "%.400s: path too long", base);
        return -1;
    }
    if (!mkdtemp(t->path)) { /* mode 0700 */
        snprintf(err, errsz, "cannot create a private directory in %.400s: %s", base,
                 strerror(errno));
        return -1;
    }
    /* mkdtemp made it 0700 and ours; check anyway (an odd umask-less
     * file system, or a base that is not what it seems). */
    struct stat st;
    if (lstat(t->path, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 07777) != 0700) {
        snprintf(err, errsz, "%.400s is not a private directory after creation", t->path);
        rmdir(t->path);
        return -1;
    }
    t->memory = vir_tmp_is_memory(t->path);
    return 0;
}

int vir_tmp_make_in(struct vir_tmp *t, const char *const *mem, size_t nmem, const char *const *disk,
                    size_t ndisk, char *err, size_t errsz)
{
    char why[512] = "no usable directory";
    /* First the memory-backed candidates (skipped when they are not),
     * then the disk fallbacks, taken as they are. */
    for (int pass = 0; pass < 2; pass++) {
        const char *const *bases = pass == 0 ? mem : disk;
        size_t n = pass == 0 ? nmem : ndisk;
        for (size_t i = 0; i < n; i++) {
            const char *b = bases[i];
            if (!b || b[0] != '/')
                continue;
            if (pass == 0 && !vir_tmp_is_memory(b))
                continue;
            if (vir__make_one(t, b, why, sizeof why) < 0)
                continue;
            if (pass == 0 && !t->memory) {
                /* The base is tmpfs but the new directory is not (a mount
                 * point in between): not what the first pass wants. */
                rmdir(t->path);
                continue;
            }
            return 0;
        }
    }
    t->path[0] = '\0';
    t->memory = false;
    if (err)
        snprintf(err, errsz, "%s", why);
    return -1;
}

int vir_tmp_make(struct vir_tmp *t, char *err, size_t errsz)
{
    const char *tmpdir = getenv("TMPDIR");
    const char *runtime = getenv("RUNTIME_DIRECTORY");
    /* systemd gives a colon-separated list for several directories. */
    if (runtime && strchr(runtime, ':'))
        runtime = NULL;
    const char *const mem[] = {tmpdir, runtime, getenv("XDG_RUNTIME_DIR"), "/dev/shm"};
    const char *const disk[] = {tmpdir && tmpdir[0] == '/' ? tmpdir : "/tmp"};
    return vir_tmp_make_in(t, mem, sizeof mem / sizeof mem[0], disk, sizeof disk / sizeof disk[0],
                           err, errsz);
}

/* Empty the directory open as dfd (consumed) and everything below it. */
static int vir__empty(int dfd, int depth)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        errno = e;
        return -1;
    }
    int rc = 0, saved = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (!strcmp(n, ".") || !strcmp(n, ".."))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* gone meanwhile */
        if (S_ISDIR(st.st_mode)) {
            int sub = depth < VIR__RM_DEPTH
                          ? openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                          : -1;
            if (sub < 0 || vir__empty(sub, depth + 1) < 0 ||
                unlinkat(dirfd(d), n, AT_REMOVEDIR) < 0) {
                rc = -1;
                saved = errno ? errno : ELOOP;
            }
        } else if (unlinkat(dirfd(d), n, 0) < 0) {
            rc = -1;
            saved = errno;
        }
    }
    closedir(d);
    if (rc < 0)
        errno = saved;
    return rc;
}

int vir_tmp_remove(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (vir__empty(fd, 0) < 0)
        return -1;
    return rmdir(path);
}
