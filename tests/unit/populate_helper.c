/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * populate_helper: a shared library that maps memory the way libclamav
 * does (through its PLT), for test_populate to dlopen.
 */
#undef _FILE_OFFSET_BITS /* call mmap and mmap64 by their own names */

#include <stddef.h>
#include <sys/mman.h>
#include <sys/types.h>

void *populate_helper_mmap64(size_t len, int prot, int flags, int fd);
void *populate_helper_mmap(size_t len, int prot, int flags, int fd);

/* The calls are not tail calls (the barrier after them), as libclamav's
 * are not: the daemon tells the caller by the return address. */
void *populate_helper_mmap64(size_t len, int prot, int flags, int fd)
{
    void *p = mmap64(NULL, len, prot, flags, fd, 0);
    __asm__ volatile("" ::: "memory");
    return p;
}

void *populate_helper_mmap(size_t len, int prot, int flags, int fd)
{
    void *p = mmap(NULL, len, prot, flags, fd, 0);
    __asm__ volatile("" ::: "memory");
    return p;
}
