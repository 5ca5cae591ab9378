/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * populate_helper: a shared library that maps memory the way libclamav
 * does (through its PLT), for test_populate to dlopen.
 */
#include <stddef.h>
#include <sys/mman.h>
#include <sys/types.h>

/* mmap and mmap64 by their own names, whatever <sys/mman.h> makes of them
 * with 64-bit file offsets. */
extern void *helper_mmap(void *, size_t, int, int, int, __off_t) __asm__("mmap");
extern void *helper_mmap64(void *, size_t, int, int, int, __off64_t) __asm__("mmap64");

void *populate_helper_mmap64(size_t len, int prot, int flags, int fd);
void *populate_helper_mmap(size_t len, int prot, int flags, int fd);

/* The calls are not tail calls (the barrier after them), as libclamav's
 * are not: the daemon tells the caller by the return address. */
void *populate_helper_mmap64(size_t len, int prot, int flags, int fd)
{
    void *p = helper_mmap64(NULL, len, prot, flags, fd, 0);
    __asm__ volatile("" ::: "memory");
    return p;
}

void *populate_helper_mmap(size_t len, int prot, int flags, int fd)
{
    void *p = helper_mmap(NULL, len, prot, flags, fd, 0);
    __asm__ volatile("" ::: "memory");
    return p;
}
