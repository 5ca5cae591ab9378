/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * resolve: see resolve.h. A job queue (mutex + condition variable) feeds N
 * threads that run getnameinfo(NI_NAMEREQD) and getaddrinfo() on the name;
 * finished jobs go on a done list and a uv_async wakes the loop, which
 * calls the callbacks. A cancelled job is still completed by its thread but
 * freed without a callback.
 */
#include "resolve.h"
#include "xalloc.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct resolve_req {
    struct resolve_req *next;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    resolve_cb cb;
    void *ud;
    bool cancelled;     /* loop thread only */
    bool ok;            /* set by the worker */
    char name[NI_MAXHOST];
};

static pthread_mutex_t rs_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rs_cv = PTHREAD_COND_INITIALIZER;
static struct resolve_req *rs_todo, *rs_todo_tail;
static struct resolve_req *rs_done;
static bool rs_stop;
static pthread_t rs_threads[8];
static unsigned rs_nthreads;
static uv_async_t rs_async;
static bool rs_started;

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr *b)
{
    if (a->ss_family != b->sa_family)
        return false;
    if (b->sa_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr)) == 0;
    if (b->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return false;
}

static void rs_lookup(struct resolve_req *r)
{
    if (getnameinfo((struct sockaddr *)&r->addr, r->addrlen, r->name, sizeof r->name, NULL, 0,
                    NI_NAMEREQD) != 0)
        return;
    struct addrinfo hints = {.ai_family = r->addr.ss_family, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(r->name, NULL, &hints, &res) != 0)
        return;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (same_addr(&r->addr, a->ai_addr))
            r->ok = true;
    freeaddrinfo(res);
}

static void *rs_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&rs_mu);
    for (;;) {
        while (!rs_todo && !rs_stop)
            pthread_cond_wait(&rs_cv, &rs_mu);
        if (rs_stop)
            break;
        struct resolve_req *r = rs_todo;
        rs_todo = r->next;
        if (!rs_todo)
            rs_todo_tail = NULL;
        pthread_mutex_unlock(&rs_mu);
        rs_lookup(r);
        pthread_mutex_lock(&rs_mu);
        r->next = rs_done;
        rs_done = r;
        uv_async_send(&rs_async);
    }
    pthread_mutex_unlock(&rs_mu);
    return NULL;
}

static void rs_async_cb(uv_async_t *h)
{
    (void)h;
    pthread_mutex_lock(&rs_mu);
    struct resolve_req *list = rs_done;
    rs_done = NULL;
    pthread_mutex_unlock(&rs_mu);
    while (list) {
        struct resolve_req *r = list;
        list = r->next;
        if (!r->cancelled)
            r->cb(r->ud, r->ok ? r->name : NULL);
        free(r);
    }
}

int resolve_init(uv_loop_t *loop, unsigned nthreads)
{
    if (rs_started)
        return 0;
    if (nthreads == 0 || nthreads > sizeof rs_threads / sizeof rs_threads[0])
        nthreads = 4;
    int rc = uv_async_init(loop, &rs_async, rs_async_cb);
    if (rc)
        return rc;
    uv_unref((uv_handle_t *)&rs_async);
    rs_stop = false;
    for (rs_nthreads = 0; rs_nthreads < nthreads; rs_nthreads++) {
        if (pthread_create(&rs_threads[rs_nthreads], NULL, rs_thread, NULL) != 0) {
            log_error("resolver: cannot start thread: %s", strerror(errno));
            break;
        }
    }
    rs_started = rs_nthreads > 0;
    return rs_started ? 0 : -EAGAIN;
}

void resolve_shutdown(void)
{
    if (!rs_started)
        return;
    pthread_mutex_lock(&rs_mu);
    rs_stop = true;
    pthread_cond_broadcast(&rs_cv);
    pthread_mutex_unlock(&rs_mu);
    /* A thread stuck in a slow DNS query is not waited for: detach it. */
    for (unsigned i = 0; i < rs_nthreads; i++)
        pthread_detach(rs_threads[i]);
    rs_started = false;
    uv_close((uv_handle_t *)&rs_async, NULL);
}

struct resolve_req *resolve_client(const struct sockaddr *addr, resolve_cb cb, void *ud)
{
    if (!rs_started || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return NULL;
    struct resolve_req *r = xcalloc(1, sizeof *r);
    r->addrlen = addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                            : sizeof(struct sockaddr_in6);
    memcpy(&r->addr, addr, r->addrlen);
    r->cb = cb;
    r->ud = ud;
    pthread_mutex_lock(&rs_mu);
    if (rs_todo_tail)
        rs_todo_tail->next = r;
    else
        rs_todo = r;
    rs_todo_tail = r;
    pthread_cond_signal(&rs_cv);
    pthread_mutex_unlock(&rs_mu);
    return r;
}

void resolve_cancel(struct resolve_req *r)
{
    /* The flag is only read on the loop thread (rs_async_cb), like here. */
    if (r)
        r->cancelled = true;
}
