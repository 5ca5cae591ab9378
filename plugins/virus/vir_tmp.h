/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vir_tmp: the private scratch directory libclamav writes decoded mail
 * parts to, when [plugin virus] tmpdir is not set.
 *
 * libclamav (1.4.6, and every 1.x) has no way to keep MIME parts in
 * memory: each scan of a mail makes <tmp>/YYYYMMDD_HHMMSS-scantemp.X/
 * mail-tmp.Y/, writes every decoded part (and the text body, twice: as is
 * and decoded as base64 on a guess) to a file there, scans the files and
 * unlinks them. So the directory is put where those files cost no disk
 * I/O: on a memory-backed file system (tmpfs or ramfs, checked with
 * statfs on the directory made) when one is at hand, in this order:
 *
 *   $TMPDIR, $RUNTIME_DIRECTORY (systemd's RuntimeDirectory=),
 *   $XDG_RUNTIME_DIR, /dev/shm
 *
 * and else on disk in $TMPDIR (absolute), or /tmp. The directory is a fresh
 * "sluice-virus.XXXXXX" made by mkdtemp (mode 0700), checked after
 * creation (a directory, ours, 0700); vir_tmp_remove() deletes it and
 * whatever an aborted scan left in it. A candidate that fails any check
 * is skipped (the directory made in it removed again).
 */
#ifndef VIR_TMP_H
#define VIR_TMP_H

#include <stdbool.h>
#include <stddef.h>

struct vir_tmp {
    char path[4096]; /* the directory made */
    bool memory;     /* on tmpfs/ramfs */
};

/* True when `path` is on a memory-backed file system (tmpfs, ramfs). */
bool vir_tmp_is_memory(const char *path);

/* Make the directory in the first of `mem` that is memory-backed and
 * works, else in the first of `disk` that works (absolute paths; NULL, ""
 * and relative entries are skipped). 0, or -1 with a message in err. */
int vir_tmp_make_in(struct vir_tmp *t, const char *const *mem, size_t nmem, const char *const *disk,
                    size_t ndisk, char *err, size_t errsz);

/* The same with the default candidates above (read from the environment). */
int vir_tmp_make(struct vir_tmp *t, char *err, size_t errsz);

/* Remove the directory and everything in it (not following symlinks;
 * nothing outside it is touched). 0, or -1 with errno set. */
int vir_tmp_remove(const char *path);

#endif
