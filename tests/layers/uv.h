/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Poison header: the pure layers (parsers, message model, 7-bit downgrade,
 * transaction) are compiled against this directory first, so any include
 * of libuv in them fails the build. See tests/CMakeLists.txt. */
#error "a pure layer includes <uv.h>: keep parsers and models free of I/O"
