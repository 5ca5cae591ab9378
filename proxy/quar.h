/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * quar: writing a quarantined message to the quarantine directory, off
 * the event loop (open, write, fsync on the libuv thread pool).
 *
 * The file is created exclusively, 0600, named TIME-SID.eml, with the
 * envelope and client as X-Sluice-* header lines before the message.
 *
 * Ownership: quar_write() takes a reference to the tx (the message is
 * read from it on the pool thread; nothing changes it meanwhile, the
 * session waits) and the request owns itself until its callback. After
 * quar_cancel() the callback is never called; the request still frees
 * itself when the pool is done with it.
 * Threads: call from the loop; the callback runs on the loop.
 */
#ifndef SLUICE_QUAR_H
#define SLUICE_QUAR_H

#include <uv.h>

#include "tx.h"

struct quar_req;
/* rc: 0, or negative errno; path: the file written (or attempted). */
typedef void (*quar_cb)(void *ud, int rc, const char *path);

struct quar_req *quar_write(uv_loop_t *loop, const char *dir, struct tx *tx, quar_cb cb, void *ud);
void quar_cancel(struct quar_req *q);

/*
 * The expiry sweep: every [server] quarantine_sweep_interval (60 s) a
 * timer on the loop queues one job on the pool that expires held mail past
 * quarantine_max_age / quarantine_max_size (qstore_expire) and reads the
 * index's counts for the sluice_quarantine_* gauges. At most one job at a
 * time; a tick while one runs is skipped. Call start again on reload (the
 * new limits apply from the next tick); stop before the loop's last run.
 * Nothing is done without quarantine_dir.
 */
struct cfg;
void quar_sweep_start(uv_loop_t *loop, const struct cfg *cfg);
void quar_sweep_stop(void);

#endif
