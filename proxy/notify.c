/* SPDX-License-Identifier: GPL-2.0-or-later */
/* notify: see notify.h. sd_notify() sends one datagram to NOTIFY_SOCKET
 * (non-blocking; a full or absent socket loses the message, never blocks
 * the loop). The environment is kept: nothing of ours runs children. */
#include "notify.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "log.h"

static uv_timer_t notify__timer;
static bool notify__timer_on;

static void notify__send(const char *what, const char *status)
{
    char msg[512];
    if (status)
        snprintf(msg, sizeof msg, "%s\nSTATUS=%s", what, status);
    else
        snprintf(msg, sizeof msg, "%s", what);
    int rc = sd_notify(0, msg);
    if (rc < 0)
        log_debug("sd_notify %s: %s", what, strerror(-rc));
}

static void notify__tick(uv_timer_t *t)
{
    (void)t;
    notify__send("WATCHDOG=1", NULL);
}

int notify_init(uv_loop_t *loop)
{
    uint64_t usec = 0;
    /* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID (if set) is us. */
    int rc = sd_watchdog_enabled(0, &usec);
    if (rc < 0) {
        log_error("watchdog: WATCHDOG_USEC: %s", strerror(-rc));
        return -1;
    }
    if (rc == 0 || usec == 0)
        return 0;
    uint64_t ms = usec / 2000; /* half the period: one lost tick is not fatal */
    if (ms == 0)
        ms = 1;
    uv_timer_init(loop, &notify__timer);
    uv_timer_start(&notify__timer, notify__tick, 0, ms);
    uv_unref((uv_handle_t *)&notify__timer);
    notify__timer_on = true;
    log_info("watchdog: keep-alive every %" PRIu64 " ms (WatchdogSec %" PRIu64 " ms)", ms,
             usec / 1000);
    return 0;
}

void notify_ready(const char *status)
{
    notify__send("READY=1", status);
}

void notify_reloading(void)
{
    /* MONOTONIC_USEC: systemd 253+ (Type=notify-reload) matches the reload
     * it asked for by it; older versions ignore it. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char what[96];
    snprintf(what, sizeof what, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
             (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    notify__send(what, "reloading the configuration");
}

void notify_stopping(const char *status)
{
    notify__send("STOPPING=1", status);
}

void notify_status(const char *status)
{
    char msg[512];
    snprintf(msg, sizeof msg, "STATUS=%s", status);
    int rc = sd_notify(0, msg);
    (void)rc;
}

void notify_shutdown(void)
{
    if (!notify__timer_on)
        return;
    notify__timer_on = false;
    uv_timer_stop(&notify__timer);
    uv_close((uv_handle_t *)&notify__timer, NULL);
}
