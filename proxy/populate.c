/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * populate: MAP_POPULATE for libclamav's small anonymous maps; see
 * populate.h.
 */
#include "populate.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
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

/* The object the call at `ret` (a return address) comes from. libclamav
 * maps while holding its own global mutex: glibc's _dl_find_object takes
 * no lock, where dladdr waits for any dlopen in progress (a plugin's
 * reload, an iconv or NSS module). */
static bool populate__from_wanted_caller(void *ret)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
    struct dl_find_object obj;
    return _dl_find_object(ret, &obj) == 0 && obj.dlfo_link_map &&
           populate_caller_wanted(obj.dlfo_link_map->l_name);
#else
    Dl_info info;
    return dladdr(ret, &info) != 0 && populate_caller_wanted(info.dli_fname);
#endif
}

/* The next definitions after ours (libc's, or a preloaded tool's): looked
 * up before main() runs, and on first use by whoever maps memory before
 * that (another library's constructor). Two threads may both look one up;
 * they find the same function. */
typedef void *(*populate__mmap_fn)(void *, size_t, int, int, int, __off_t);
typedef void *(*populate__mmap64_fn)(void *, size_t, int, int, int, __off64_t);
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

__attribute__((constructor)) static void populate__init(void)
{
    (void)populate__next(&populate__mmap_next, "mmap");
    (void)populate__next(&populate__mmap64_next, "mmap64");
}

/* The function to call for `name` and the flags to call it with; NULL
 * (errno set) if there is none, which cannot happen in a dynamically
 * linked daemon. */
static void *populate__prepare(_Atomic(void *) *slot, const char *name, void *ret, size_t len,
                               int prot, int *flags, int fd)
{
    void *sym = populate__next(slot, name);
    if (!sym)
        errno = ENOSYS;
    else if (populate_wanted(len, prot, *flags, fd) && populate__from_wanted_caller(ret))
        *flags |= MAP_POPULATE;
    return sym;
}

/* The definitions shared libraries find. The assembler names keep them
 * mmap and mmap64 whatever <sys/mman.h> makes of those names (with 64-bit
 * file offsets asked for, its mmap is mmap64). Never inlined: the return
 * address must be the library's. The casts are POSIX's way from dlsym's
 * object pointer to a function pointer. */
__attribute__((visibility("default"), noinline)) void *
populate__mmap(void *addr, size_t len, int prot, int flags, int fd, __off_t off) __asm__("mmap");
__attribute__((visibility("default"), noinline)) void *
populate__mmap64(void *addr, size_t len, int prot, int flags, int fd,
                 __off64_t off) __asm__("mmap64");

void *populate__mmap(void *addr, size_t len, int prot, int flags, int fd, __off_t off)
{
    populate__mmap_fn fn;
    void *sym = populate__prepare(&populate__mmap_next, "mmap", __builtin_return_address(0), len,
                                  prot, &flags, fd);
    if (!sym)
        return MAP_FAILED;
    *(void **)&fn = sym;
    return fn(addr, len, prot, flags, fd, off);
}

void *populate__mmap64(void *addr, size_t len, int prot, int flags, int fd, __off64_t off)
{
    populate__mmap64_fn fn;
    void *sym = populate__prepare(&populate__mmap64_next, "mmap64", __builtin_return_address(0),
                                  len, prot, &flags, fd);
    if (!sym)
        return MAP_FAILED;
    *(void **)&fn = sym;
    return fn(addr, len, prot, flags, fd, off);
}
