/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * clock: the daemon's one monotonic clock reading, in nanoseconds.
 * Pure (no libuv): usable from the parsers' tests and from pool threads.
 */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
