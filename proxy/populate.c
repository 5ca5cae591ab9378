/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * populate: MAP_POPULATE for small private anonymous maps; see populate.h.
 */
/* We define both mmap and mmap64, with the types libc gives them; with
 * 64-bit file offsets asked for (some pkg-config flags do), the headers
 * would rename our mmap to mmap64. */
#undef _FILE_OFFSET_BITS

#include "populate.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>

bool populate_wanted(size_t len, int prot, int flags, int fd)
{
    const int unwanted = MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_NORESERVE | MAP_STACK |
                         MAP_GROWSDOWN | MAP_HUGETLB | MAP_LOCKED | MAP_POPULATE;
    return fd == -1 && len > 0 && len <= POPULATE_MAX && prot == (PROT_READ | PROT_WRITE) &&
           (flags & MAP_TYPE) == MAP_PRIVATE && (flags & MAP_ANONYMOUS) && !(flags & unwanted);
}

bool populate_caller_wanted(const char *path)
{
    static const char lib[] = "libclamav.so";
    if (!path)
        return false;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strncmp(base, lib, sizeof lib - 1) == 0 &&
           (base[sizeof lib - 1] == '\0' || base[sizeof lib - 1] == '.');
}

/* The object the call at `ret` (a return address) comes from. Asked only
 * for requests populate_wanted() takes, a few per message. */
static bool populate__from_wanted_caller(const void *ret)
{
    Dl_info info;
    return dladdr(ret, &info) != 0 && populate_caller_wanted(info.dli_fname);
}

/* The next definitions after ours (libc's), looked up on first use: a
 * library constructor may map memory before main() runs. Two threads may
 * both look one up; they find the same function. */
typedef void *(*populate__mmap_fn)(void *, size_t, int, int, int, off_t);
typedef void *(*populate__mmap64_fn)(void *, size_t, int, int, int, off64_t);
static _Atomic(void *) populate__mmap_next, populate__mmap64_next;

static void *populate__next(_Atomic(void *) *slot, const char *name)
{
    void *sym = atomic_load_explicit(slot, memory_order_acquire);
    if (!sym) {
        sym = dlsym(RTLD_NEXT, name);
        atomic_store_explicit(slot, sym, memory_order_release);
    }
    return sym;
}

/* The function to call for `name` and the flags to call it with; NULL
 * (errno set) if there is none, which cannot happen in a dynamically
 * linked daemon. */
static void *populate__prepare(_Atomic(void *) *slot, const char *name, const void *ret, size_t len,
                               int prot, int *flags, int fd)
{
    void *sym = populate__next(slot, name);
    if (!sym)
        errno = ENOSYS;
    else if (populate_wanted(len, prot, *flags, fd) && populate__from_wanted_caller(ret))
        *flags |= MAP_POPULATE;
    return sym;
}

/* The definitions shared libraries find (exported by the link options in
 * proxy/CMakeLists.txt). Debian's libclamav calls mmap64. The casts are
 * POSIX's way from dlsym's object pointer to a function pointer. */
__attribute__((visibility("default"))) void *mmap(void *addr, size_t len, int prot, int flags,
                                                  int fd, off_t off)
{
    populate__mmap_fn fn;
    void *sym = populate__prepare(&populate__mmap_next, "mmap", __builtin_return_address(0), len,
                                  prot, &flags, fd);
    if (!sym)
        return MAP_FAILED;
    *(void **)&fn = sym;
    return fn(addr, len, prot, flags, fd, off);
}

__attribute__((visibility("default"))) void *mmap64(void *addr, size_t len, int prot, int flags,
                                                    int fd, off64_t off)
{
    populate__mmap64_fn fn;
    void *sym = populate__prepare(&populate__mmap64_next, "mmap64", __builtin_return_address(0),
                                  len, prot, &flags, fd);
    if (!sym)
        return MAP_FAILED;
    *(void **)&fn = sym;
    return fn(addr, len, prot, flags, fd, off);
}
