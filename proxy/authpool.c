/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * authpool: Dovecot auth clients by address; see authpool.h.
 * A short list: one entry per distinct auth_socket (a handful at most).
 */
#include "authpool.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

struct authpool__ent {
    struct authpool__ent *next;
    struct authpool *pool;
    char *addr;               /* owned */
    struct dvauth_client *cl; /* owned */
    unsigned pending;         /* requests whose callback has not run */
    bool wanted;              /* the current configuration names it */
};

struct authpool {
    uv_loop_t *loop;
    struct authpool__ent *ents;
};

struct authpool_req {
    struct authpool__ent *ent;
    struct dvauth_client_req *dr;
    dvauth_client_cb cb;
    void *ud;
};

struct authpool *authpool_new(uv_loop_t *loop)
{
    struct authpool *p = xcalloc(1, sizeof *p);
    p->loop = loop;
    return p;
}

static struct authpool__ent *authpool__find(struct authpool *p, const char *addr)
{
    for (struct authpool__ent *e = p->ents; e; e = e->next)
        if (strcmp(e->addr, addr) == 0)
            return e;
    return NULL;
}

static struct authpool__ent *authpool__make(struct authpool *p, const char *addr)
{
    struct dvauth_client *cl = dvauth_client_new(p->loop, addr, AUTHPOOL_TIMEOUT_MS);
    if (!cl) {
        log_error("auth_socket %s: unusable address", addr);
        return NULL;
    }
    struct authpool__ent *e = xcalloc(1, sizeof *e);
    e->pool = p;
    e->addr = xstrdup(addr);
    e->cl = cl;
    e->next = p->ents;
    p->ents = e;
    return e;
}

static void authpool__drop(struct authpool__ent *e)
{
    struct authpool__ent **pp = &e->pool->ents;
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    dvauth_client_free(e->cl);
    free(e->addr);
    free(e);
}

/* A retired client goes once nobody waits on it. */
static void authpool__maybe_drop(struct authpool__ent *e)
{
    if (!e->wanted && e->pending == 0)
        authpool__drop(e);
}

int authpool_sync(struct authpool *p, const struct cfg *c)
{
    int rc = 0;
    for (struct authpool__ent *e = p->ents; e; e = e->next)
        e->wanted = false;
    for (size_t i = 0; i < c->nlisteners; i++) {
        const struct cfg_auth *a = &c->listeners[i].auth;
        if (a->mode != CFG_AUTH_DOVECOT || !a->socket)
            continue;
        struct authpool__ent *e = authpool__find(p, a->socket);
        if (!e)
            e = authpool__make(p, a->socket);
        if (e)
            e->wanted = true;
        else
            rc = -1;
    }
    for (struct authpool__ent *e = p->ents, *next; e; e = next) {
        next = e->next;
        authpool__maybe_drop(e);
    }
    return rc;
}

static void authpool__cb(void *ud, const struct dvauth_client_result *r)
{
    struct authpool_req *q = ud;
    struct authpool__ent *e = q->ent;
    q->cb(q->ud, r);
    free(q);
    e->pending--;
    authpool__maybe_drop(e); /* dvauth_client_free() is allowed from its callback */
}

struct authpool_req *authpool_auth(struct authpool *p, const char *addr,
                                   const struct dvauth_req *req, dvauth_client_cb cb, void *ud)
{
    struct authpool__ent *e = authpool__find(p, addr);
    if (!e)
        e = authpool__make(p, addr); /* wanted = false: a session of an older cfg */
    if (!e)
        return NULL;
    struct authpool_req *q = xcalloc(1, sizeof *q);
    q->ent = e;
    q->cb = cb;
    q->ud = ud;
    q->dr = dvauth_client_auth(e->cl, req, authpool__cb, q);
    if (!q->dr) {
        free(q);
        authpool__maybe_drop(e);
        return NULL;
    }
    e->pending++;
    return q;
}

void authpool_cancel(struct authpool_req *q)
{
    struct authpool__ent *e = q->ent;
    dvauth_client_cancel(q->dr);
    free(q);
    e->pending--;
    authpool__maybe_drop(e);
}

void authpool_free(struct authpool *p)
{
    if (!p)
        return;
    while (p->ents) {
        /* Requests still pending are dropped with their client. */
        p->ents->pending = 0;
        p->ents->wanted = false;
        authpool__drop(p->ents);
    }
    free(p);
}
