/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * populate: small private anonymous maps that libclamav asks for are
 * populated at once (MAP_POPULATE).
 *
 * Why: libclamav 1.4 reads every file it extracts from a message (the
 * "textportion" of plain mail, every decoded attachment) through a file
 * map of its own: an anonymous mapping whose pages it first touches with a
 * read, which maps the kernel's shared zero page, and then pread()s into.
 * Each page so takes a second, write-protect fault, and the kernel must
 * flush the zero-page mapping from every other CPU that runs a thread of
 * sluice, by inter-processor interrupt (an exit in a VM). Under the full
 * chain at 32 x 64 KiB that was 10 % of sluice's CPU. A populated mapping
 * has its own zeroed pages from the start: no fault, no flush. (libclamav's
 * source notes that MAP_POPULATE is faster but takes more memory: on a
 * large file only the pages read would be allocated; the bound below.)
 *
 * How: the daemon defines mmap() and mmap64() and exports them. A shared
 * library's call (through its PLT) finds the executable's definition
 * first; it adds MAP_POPULATE when populate_wanted() says so of the
 * request and populate_caller_wanted() of the object the call returns to,
 * and calls the next definition (libc's, or a preloaded tool's). glibc's
 * own maps (malloc, thread stacks, dlopen) do not go through the PLT.
 * What the caller gets is the same mapping; its pages are allocated and
 * zeroed in the call instead of at first touch.
 *
 * Only libclamav's requests: other libraries map memory they will not
 * touch all of. PCRE2's JIT stack, for one, reserves its maximum (1 MiB
 * for the spam, rewrite and access plugins, per scratch space) and uses a
 * few pages; populated, it would add that much to the daemon's RSS.
 * libclamav's requests that qualify are its file maps and, while a
 * database loads, its memory pool's chunks (256 KiB and more), which it
 * fills anyway. libclamav maps a file while holding a mutex of its own, so
 * the zeroing now happens under it: 14 us for 64 KiB, 0.14 ms for 1 MiB,
 * against the milliseconds the scan of such a file takes.
 *
 * Built into the daemon only (not sluice_core), and not with sanitizers
 * (their runtimes define mmap themselves); -DSLUICE_POPULATE_MAPS=OFF
 * leaves it out.
 *
 * Threads: any. The next definitions are looked up before main() (or at
 * first use, if a library maps memory earlier); telling the caller takes
 * no lock (glibc >= 2.35: _dl_find_object).
 */
#ifndef SLUICE_POPULATE_H
#define SLUICE_POPULATE_H

#include <stdbool.h>
#include <stddef.h>

/* The largest mapping populated at once. libclamav maps a whole extracted
 * file and reads all of it; beyond this a large attachment's pages are
 * left to be faulted in as they are read, as before. */
#define POPULATE_MAX ((size_t)1 << 20)

/* True for a request that gets MAP_POPULATE: anonymous (no file), private,
 * read-write and nothing else (not executable: JIT code pages are written
 * once through another view or mprotect'ed), at most POPULATE_MAX bytes,
 * placed by the kernel (not MAP_FIXED), and none of the flags that ask for
 * memory to be committed late or differently (MAP_NORESERVE, MAP_STACK,
 * MAP_GROWSDOWN, MAP_HUGETLB) or that already populate (MAP_LOCKED). */
bool populate_wanted(size_t len, int prot, int flags, int fd);
/* True if a map asked for from the shared object at `path` (as dladdr
 * names it) may be populated: libclamav's ("libclamav.so" + version). */
bool populate_caller_wanted(const char *path);

#endif
