/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * api: the host API table handed to every plugin (sdk/include/sluice/
 * plugin.h). Each entry reads or journals through the call's ctx; none
 * changes the transaction directly (ctx_apply does, on the loop thread).
 * The table only grows at the end (ABI 1; plugins check api->size).
 *
 * Threads: entries taking a ctx may be called from the thread the hook
 * runs on (loop or pool); `complete` from any thread.
 */
#ifndef SLUICE_API_H
#define SLUICE_API_H

#include <sluice/plugin.h>

const struct sluice_host_api *api_table(void);

#endif
