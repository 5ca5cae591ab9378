/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * notify: what systemd learns from the daemon (sd_notify(3), Type=notify):
 * READY=1 once the listeners are bound and the chain is loaded, STATUS=
 * lines, RELOADING=1 ... READY=1 around a SIGHUP reload, STOPPING=1, and
 * WATCHDOG=1 from a loop timer at half the WatchdogSec= systemd asks for
 * (WATCHDOG_USEC): a loop that stops turning stops the keep-alives and
 * systemd restarts the service. Without NOTIFY_SOCKET (not under systemd)
 * every call does nothing. Event loop thread only.
 */
#ifndef SLUICE_NOTIFY_H
#define SLUICE_NOTIFY_H

#include <uv.h>

/* Start the watchdog timer if systemd asked for one (an unreferenced
 * handle: it never keeps the loop alive). 0, or -1 (logged). */
int notify_init(uv_loop_t *loop);
void notify_ready(const char *status);
void notify_reloading(void);
void notify_stopping(const char *status);
void notify_status(const char *status);
/* Stop the watchdog and close its handle (before the loop is closed). */
void notify_shutdown(void);

#endif
