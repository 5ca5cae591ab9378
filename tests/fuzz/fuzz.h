/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared bits of the fuzz drivers. Each driver defines the libFuzzer entry
 * point; built with -fsanitize=fuzzer it is a fuzzer, linked with
 * fuzz_replay.c it is a plain program that replays a corpus (CI).
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Invariant checks must survive -DNDEBUG, hence not assert(). */
#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#endif
