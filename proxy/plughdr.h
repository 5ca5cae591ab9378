/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * plughdr: header folding for plugins (the SDK's api->header_fold). The
 * rule is msg.c's, the one the host applies to every field a plugin adds
 * or changes; this only lets a plugin see the result before handing the
 * value over (the rewrite engine renders the message as the upstream will
 * get it), so no plugin carries a copy of the rule.
 *
 * Pure: no I/O, no globals, any thread.
 */
#ifndef SLUICE_PLUGHDR_H
#define SLUICE_PLUGHDR_H

#include <stddef.h>

/* The raw value a field `name` gets when `value` is added (after the colon,
 * leading space included, CRLF WSP at each fold, no final CRLF), written
 * like snprintf into out[0..outlen). Returns its length, or -EINVAL for a
 * name or value msg.c refuses. */
int plughdr_fold(const char *name, const char *value, char *out, size_t outlen);

#endif
