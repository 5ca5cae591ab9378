/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * plughdr: header folding for plugins; see plughdr.h.
 *
 * The field is built by msg.c itself, on an empty message: one
 * msg_field_add() is exactly what header_add does to the real message, so
 * the answer cannot drift from the host's behaviour.
 */
#include "plughdr.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "msg.h"

int plughdr_fold(const char *name, const char *value, char *out, size_t outlen)
{
    if (!name || !value)
        return -EINVAL;
    struct msg *m = msg_parse("", 0); /* never NULL (xalloc) */
    int rc = msg_field_add(m, name, value);
    if (rc == 0) {
        const struct msg_field *f = msg_field_at(m, 0);
        size_t n = f->value_len;
        if (n > INT_MAX) {
            rc = -EINVAL;
        } else {
            if (out && outlen) {
                size_t c = n < outlen ? n : outlen - 1;
                memcpy(out, f->value, c);
                out[c] = 0;
            }
            rc = (int)n;
        }
    }
    msg_free(m);
    return rc;
}
