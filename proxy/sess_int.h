/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sess_int: the session's private structure, shared by the files that
 * make up the session (sess.c: life, input, timers; sess_cmd.c: the
 * command table and the verbs; sess_reply.c: replies in order;
 * sess_eom.c: end of data). Nothing else includes it.
 * Ownership and threads: see sess.h (loop thread only).
 */
#ifndef SLUICE_SESS_INT_H
#define SLUICE_SESS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <uv.h>

#include "buf.h"
#include "cfg.h"
#include "client_info.h"
#include "defer.h"
#include "host.h"
#include "log.h"
#include "server.h"
#include "sess.h"
#include "authpool.h"
#include "cmd.h"
#include "data.h"
#include "sasl.h"
#include "stats.h"
#include "tx.h"
#include "up.h"

/* The session's states. Which verbs are legal in which state is the
 * command table in sess_cmd.c. */
enum sess_state {
    S_LOOKUP = 0, /* client name lookup before the greeting */
    S_CONNECT,    /* CONNECT phase running, greeting not sent */
    S_GREETED,    /* greeting sent, no HELO yet */
    S_HELO,       /* HELO/EHLO done, no transaction */
    S_MAIL,       /* MAIL sent */
    S_RCPT,       /* at least one RCPT sent */
    S_DATA,       /* reading the message */
    S_EOM,        /* message complete: chain, envelope, upstream running */
    S_TLS,        /* STARTTLS handshake running */
    S_CLOSING,    /* teardown marked; finished from the loop */
    S_BDAT,       /* reading the bytes of a BDAT chunk (sess_bdat.c) */
    S_CHUNKED,    /* between BDAT chunks of a message, LAST not yet seen */
    S_PROXY,      /* reading the PROXY protocol header (proxy_protocol listeners) */
    S_AUTH,       /* SMTP AUTH: lines are SASL responses, then Dovecot's answer (sess_auth.c) */
    S_COUNT
};
#define S_BIT(st) (1u << (st))

struct sess_verb;

/* One reply in the FIFO (pipelining: replies leave in command order). */
struct sess_slot {
    struct sess_slot *next;
    struct sess *s;
    bool filled;
    size_t rcpt_idx; /* RCPT: index of the recipient in s->tx */
    unsigned tx_seq; /* ... of the transaction with that number */
    buf_t text;      /* the reply, CRLF-terminated lines */
};

/* Envelope replay after plugin edits (sess_eom.c): one item per command
 * sent, so each answer knows what it answers. */
struct sess_replay_item {
    struct sess *s;
    size_t rcpt_idx; /* index in s->tx->rcpts; SIZE_MAX for RSET/MAIL */
    bool is_mail;
};

struct sess_replay {
    struct sess_replay_item *items; /* owned; valid while `pending` */
    size_t nitems, capitems;
    unsigned pending;  /* commands in flight */
    bool failed;       /* RSET/MAIL refused or the upstream failed */
    bool told_refused; /* a recipient the client was told 250 for was refused */
    char fail[300];    /* the reply to give when failed */
};

/* A reply decided now and given later (BDAT: after the chunk's bytes). */
struct sess_said {
    int code; /* 0: none */
    char enh[12];
    char text[200];
};

/* BDAT (RFC 3030), sess_bdat.c. A chunk's bytes are always read, whatever
 * the answer: the count is the only thing that keeps the command stream
 * in step, so a refused chunk is read and dropped (mode SKIP). */
enum sess_chunk_mode {
    SESS_CHUNK_KEEP = 0, /* into the message (the data reader) */
    SESS_CHUNK_SKIP,     /* dropped; `said` answers it once read */
};

struct sess_bdat {
    enum sess_chunk_mode mode; /* of the chunk being read */
    uint64_t size;             /* its size, as the client declared it */
    uint64_t left;             /* its bytes still to come */
    bool last;                 /* it ends the message */
    enum sess_state back;      /* SKIP: the state to return to */
    struct sess_said said;     /* SKIP: the reply once read */
    bool skip_counts;          /* SKIP: ... and it counts toward max_errors */
    uint64_t total;            /* bytes of the message's chunks so far */
    /* A message whose chunks failed (too big, bare LF ...): its later
     * chunks, pipelined before the client saw the error, are read and
     * answered with the same error until its LAST, or until any other
     * command. code 0 when none. */
    struct sess_said failed;
};

/* SMTP AUTH (RFC 4954), sess_auth.c. The exchange collects the whole
 * credentials (PLAIN: one response; LOGIN: user name, then password), then
 * asks Dovecot once (dvauth_client.h explains why). */
struct sess_auth {
    enum sasl_mech mech;           /* of the exchange in progress */
    struct sasl_login login;       /* LOGIN's steps; PLAIN's credentials too (secret: wiped) */
    struct authpool_req *req;      /* Dovecot's answer pending, or NULL */
    char user[SASL_FIELD_MAX + 1]; /* the authcid sent, for the log */
    unsigned failures;             /* 535s in this session */
    struct cmd_reader rd;          /* S_AUTH: response lines (longer than commands) */
};

struct sess {
    struct server_link link; /* in the server's list */
    struct server *srv;
    struct server_listener *sl; /* the listener that accepted it */
    struct cfg *cfg; /* referenced for the session's life */
    const struct cfg_listener *lst; /* sl's settings in cfg */
    struct conn *conn;
    uv_timer_t timer;
    struct client_info info;
    struct log_conn log;

    enum sess_state state;        /* changed by sess_set_state() only */
    const struct sess_verb *busy; /* command waiting for its phase or the upstream */
    bool processing;              /* input loop running (re-entry is a bug) */
    bool read_paused;             /* backpressure */
    bool shutdown;                /* SIGTERM: close at the next idle point */
    bool ip_counted;
    bool tls;
    bool tls_first;       /* implicit TLS: the handshake runs before the greeting */
    char ip_key[64];      /* where the per-address count was taken (server_ip_acquire) */
    char proxy_peer[80];  /* "addr:port" of the proxy on a proxy_protocol listener, else "" */
    bool sl_counted;      /* counted in sl->nconns */
    bool end_after_reply; /* a 421 is queued: close once it is out */
    bool identified;      /* XCLIENT/XFORWARD done for the MAIL in progress */
    bool graceful_close;  /* how sess_close() wants the conn closed */
    bool closing_tx_open; /* a transaction was open when it closed */
    bool up_wait;         /* MAIL waits for the upstream to open/identify */
    unsigned tx_seq;      /* number of the current transaction */
    unsigned busy_seq;    /* tx_seq when the running phase started */
    unsigned errors;
    unsigned offered; /* UP_CAP_* the last EHLO reply offered */
    unsigned junk;    /* junk commands since the last delivered message */

    /* client deadline (sess.c) */
    unsigned ncmds, timer_ncmds;
    size_t timer_bytes;
    uint64_t deadline, timer_due;

    struct cmd_reader rd;
    buf_t in; /* unprocessed client input */
    struct sess_slot *slots_head, *slots_tail;
    size_t nslots;
    size_t slot_bytes; /* reply text waiting in slots (sess_reply.c) */

    /* the command being handled across an asynchronous step */
    char line[CMD_LINE_MAX + 1];
    size_t line_len;
    char addr[CMD_ADDR_MAX + 1]; /* MAIL/RCPT path as the client gave it */
    char dsn[600];               /* RCPT: DSN params to forward */

    struct up *up;      /* opened only while `slot` is held */
    struct upslot slot; /* our share of the upstream's sessions */
    struct host_conn *hc;
    struct dns_name_req *dns; /* the client's name being looked up */
    struct tx *tx; /* the transaction in progress (owned) or NULL */
    struct tx *spare_tx; /* an emptied one kept for the next MAIL (owned) */
    struct data_reader dr;
    struct msgbuf *msg; /* reused message buffer (owned) */
    buf_t mime7_out;
    struct iovec segs[4];
    struct sess_replay replay;
    struct sess_bdat bdat;
    struct sess_auth auth;
    struct quar_req *quar; /* quarantine write in progress */

    char last_upstream[300]; /* for the transaction log line */
    uint64_t conn_started_ns;
    struct defer_ev close_ev; /* teardown */
    struct defer_ev more_ev;  /* more pipelined commands, next loop turn */
};

/* sess.c */
void sess_set_state(struct sess *s, enum sess_state st);
/* Who the client is, as the upstream is told (XCLIENT/XFORWARD). */
void sess_client_info(const struct sess *s, struct up_client_info *ci);
/* The context STARTTLS would use now: NULL when TLS is on already or the
 * listener does not offer STARTTLS. */
SSL_CTX *sess_starttls_ctx(const struct sess *s);
const char *sess_state_name(enum sess_state st);
void sess_close(struct sess *s, bool graceful); /* mark; finished from the loop */
void sess_kick(struct sess *s);                 /* resume input after async work */
void sess_arm_timer(struct sess *s);
bool sess_error(struct sess *s); /* count an error; false: closed */
unsigned sess_upstream_caps(struct sess *s);
void sess_tx_end(struct sess *s, bool abort_upstream);
bool sess_tx_open(const struct sess *s); /* MAIL was sent for the tx */
void sess_log_tx(struct sess *s, enum stats_verdict v, uint64_t size_out);
void sess_last_upstream(struct sess *s, const struct up_result *r);
/* Open the upstream if there is none (or it failed): false while waiting
 * for a slot; the open callback (sess_cmd_up_open_cb) follows either way,
 * or sess_cmd_up_wait_expired() when no slot came. */
bool sess_up_start(struct sess *s);
void sess_up_drop(struct sess *s); /* close the upstream, give the slot back */

/* sess_reply.c */
void sess_reply(struct sess *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sess_reply_raw(struct sess *s, const char *p, size_t n); /* now, in order */
void sess_reply_text(struct sess *s, int code, const char *enh, const char *text);
struct sess_slot *sess_reply_slot(struct sess *s);
void sess_reply_fill_relay(struct sess_slot *sl, const struct smtp_reply *r);
void sess_reply_fill_error(struct sess_slot *sl, enum up_err e);
void sess_reply_slot_done(struct sess_slot *sl);
void sess_reply_flush(struct sess *s);
/* Reply bytes produced and not yet taken by the kernel: waiting in order
 * behind an upstream answer, or in the connection's output queue. */
size_t sess_reply_queued(const struct sess *s);
void sess_reply_drop_all(struct sess *s);
void sess_reply_relay(buf_t *b, const struct smtp_reply *r);
void sess_reply_up_error(buf_t *b, enum up_err e);
const char *sess_reply_default_enh(int code);
void sess_reply_ehlo(struct sess *s, const char *helo);

/* sess_cmd.c */
/* Handle one command line; true: discard the rest of the input (STARTTLS). */
bool sess_cmd_handle(struct sess *s, const char *line, size_t len);
bool sess_cmd_is_barrier(enum cmd_verb v);
const struct sess_verb *sess_cmd_verb(enum cmd_verb v); /* its table entry (s->busy) */
void sess_cmd_connect(struct sess *s); /* CONNECT phase, then the greeting */
void sess_cmd_up_open_cb(void *ud, const struct up_result *r);
void sess_cmd_up_wait_expired(struct sess *s); /* no upstream slot in queue_timeout */
/* A new message buffer and the reader for it, DATA or BDAT (chunked),
 * with the limits of [server]; false: no buffer (the caller replies). */
bool sess_cmd_msg_begin(struct sess *s, bool chunked);

/* sess_bdat.c: the BDAT verb (its command-table entry) and chunk bytes */
bool sess_bdat_check(struct sess *s, const struct cmd *c);
void sess_bdat_proceed(struct sess *s, const struct host_result *r);
size_t sess_bdat_feed(struct sess *s, const char *in, size_t len); /* in S_BDAT */
void sess_bdat_forget(struct sess *s); /* a command other than BDAT came */
const char *sess_bdat_seq_text(void);  /* 503 text for MAIL/RCPT/DATA in S_CHUNKED */
/* Refuse a BDAT before its check ran (530 before STARTTLS): its chunk is
 * still read and dropped when its size parses. False: answer it yourself. */
bool sess_bdat_refuse(struct sess *s, const struct cmd *c, int code, const char *enh,
                      const char *text);

/* sess_auth.c: the AUTH verb (its command-table entry) and the exchange */
bool sess_auth_check(struct sess *s, const struct cmd *c);
void sess_auth_proceed(struct sess *s, const struct host_result *r);
/* One response line in S_AUTH (NULL: a line over the bound of s->auth.rd). */
void sess_auth_feed(struct sess *s, const char *line, size_t len);
bool sess_auth_offered(const struct sess *s); /* EHLO lists AUTH */
void sess_auth_forget(struct sess *s);        /* STARTTLS: what was learnt before is void */
void sess_auth_cancel(struct sess *s);        /* teardown: no callback after this */

/* sess_eom.c */
void sess_eom_begin(struct sess *s);  /* the whole message is in */
void sess_eom_cancel(struct sess *s); /* teardown: drop pending work */
/* What the data reader or the spool saw wrong so far, as the reply DATA
 * would give at its end (*said) and a short reason for the log; NULL if
 * nothing. Logs spool trouble. */
const char *sess_eom_reader_error(struct sess *s, struct sess_said *said, enum stats_verdict *v);

#endif
