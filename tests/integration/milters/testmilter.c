/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * testmilter: a libmilter milter for sluice's milter-client tests. One
 * process serves many test cases: what it does is driven by the message.
 *
 *   testmilter -p unix:/path|inet:PORT@127.0.0.1 [-l LOGFILE] [-t SECONDS]
 *              [-N] [-H] [-R]
 *
 * Envelope triggers (the local part of the address, the HELO name or the
 * client address decide the reply at that stage):
 *   connect  {client_addr} 127.0.0.66 reject, 127.0.0.67 tempfail
 *   helo     h-reject, h-tempfail
 *   mail     m-reject, m-tempfail, m-discard, m-accept, m-replycode
 *            (550 5.7.1, three lines), m-replycode4 (451 4.7.1)
 *   rcpt     r-reject, r-tempfail, r-discard, r-accept, r-replycode
 *            (550 5.1.1, two lines), r-replycode4 (452 4.2.2)
 *
 * End-of-message actions: each "X-Milter-Do:" header field holds one
 * action, done in header order at end of message (see README.md for the
 * list). The first verdict (reject, tempfail, discard, replycode) ends
 * the list; later actions are not done.
 *
 * Log (-l): one JSON object per line and callback, with the macros the
 * MTA sent for that stage and what the callback saw. Strings are bytes:
 * each byte >= 0x80 is written as \u00XX (read them back as latin-1).
 *
 * Without -l it is the no-op milter of the benchmark: every callback runs
 * and answers, nothing is logged or hashed.
 *
 * Options: -t sets libmilter's timeout (seconds, default 7210); -N asks
 * for "no reply" at every step before end of message (triggers are then
 * only logged); -H asks for header values with their leading space; -R
 * asks for rejected recipients too.
 *
 * Threads: libmilter runs one thread per MTA connection; the per
 * connection state (struct tm_conn) belongs to that thread and is freed
 * in xxfi_close, which always runs. The log file is shared: one write()
 * per line under tm_log_lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <openssl/evp.h>

#include <libmilter/mfapi.h>

#define TM_BODY_KEEP 65536 /* body bytes copied into the eom log line */
#define TM_MAX_DO 64       /* X-Milter-Do fields honoured per message */
#define TM_MAX_LINES 8     /* lines of a replycode action */

/* ------------------------------------------------------------------ */
/* Options and shared state */

static int tm_logfd = -1;
static pthread_mutex_t tm_log_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long tm_next_conn = 1;
static bool tm_opt_noreply, tm_opt_leadspc, tm_opt_rcptrej;

/* Every action libmilter can negotiate; requested when the MTA offers it. */
#define TM_ACTIONS                                                                                 \
    (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_ADDRCPT_PAR |           \
     SMFIF_DELRCPT | SMFIF_QUARANTINE | SMFIF_CHGFROM | SMFIF_SETSYMLIST)
#define TM_NR_STEPS                                                                                \
    (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA |               \
     SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_HDR)

/* The macros asked for at each stage (smfi_setsymlist), and logged there. */
static char tm_mac_connect[] = "j {daemon_name} {daemon_addr} v {client_addr} {client_name} "
                               "{client_port} {client_ptr} {if_addr} {if_name} _";
static char tm_mac_helo[] = "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}";
static char tm_mac_envfrom[] = "i {auth_type} {auth_authen} {auth_author} {mail_addr} "
                               "{mail_host} {mail_mailer}";
static char tm_mac_envrcpt[] = "i {rcpt_addr} {rcpt_host} {rcpt_mailer}";
static char tm_mac_data[] = "i";
static char tm_mac_eoh[] = "i";
static char tm_mac_eom[] = "i {msg_id}";

/* ------------------------------------------------------------------ */
/* A growing string buffer for log lines */

struct tm_buf {
    char *p;
    size_t len, cap;
    bool off; /* a log line while there is no log: every append is skipped */
};

static void tm_buf_grow(struct tm_buf *b, size_t more)
{
    if (b->off || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        perror("testmilter: realloc");
        abort();
    }
    b->p = p;
    b->cap = cap;
}

static void tm_buf_add(struct tm_buf *b, const char *s, size_t n)
{
    if (b->off)
        return;
    tm_buf_grow(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void tm_buf_str(struct tm_buf *b, const char *s)
{
    tm_buf_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void tm_buf_fmt(struct tm_buf *b, const char *fmt, ...)
{
    if (b->off)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    tm_buf_grow(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A JSON string of n bytes; bytes >= 0x80 become \u00XX. */
static void tm_buf_json(struct tm_buf *b, const char *s, size_t n)
{
    if (b->off)
        return;
    tm_buf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            tm_buf_add(b, e, 2);
        } else if (c == '\n') {
            tm_buf_add(b, "\\n", 2);
        } else if (c == '\r') {
            tm_buf_add(b, "\\r", 2);
        } else if (c == '\t') {
            tm_buf_add(b, "\\t", 2);
        } else if (c < 0x20 || c >= 0x7f) {
            tm_buf_fmt(b, "\\u%04x", c);
        } else {
            tm_buf_add(b, (const char *)&c, 1);
        }
    }
    tm_buf_add(b, "\"", 1);
}

static void tm_buf_jstr(struct tm_buf *b, const char *s)
{
    if (s == NULL)
        tm_buf_str(b, "null");
    else
        tm_buf_json(b, s, strlen(s));
}

/* ------------------------------------------------------------------ */
/* Per connection and per message state */

struct tm_conn {
    unsigned long id;
    unsigned long steps; /* protocol steps granted at negotiation */
    unsigned msgno;      /* messages begun on this connection (MAIL) */
    /* The current message; reset by tm_msg_reset(). */
    char *todo[TM_MAX_DO]; /* X-Milter-Do values, owned */
    size_t ntodo;
    bool skip;
    size_t body_len;
    unsigned body_chunks;
    EVP_MD_CTX *sha;
    struct tm_buf body; /* first TM_BODY_KEEP bytes */
};

static void tm_msg_reset(struct tm_conn *c)
{
    for (size_t i = 0; i < c->ntodo; i++)
        free(c->todo[i]);
    c->ntodo = 0;
    c->skip = false;
    c->body_len = 0;
    c->body_chunks = 0;
    if (c->sha != NULL)
        EVP_MD_CTX_free(c->sha);
    c->sha = NULL;
    free(c->body.p);
    c->body = (struct tm_buf){0};
}

static struct tm_conn *tm_conn_get(SMFICTX *ctx)
{
    struct tm_conn *c = smfi_getpriv(ctx);
    if (c != NULL)
        return c;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        perror("testmilter: calloc");
        abort();
    }
    pthread_mutex_lock(&tm_log_lock);
    c->id = tm_next_conn++;
    pthread_mutex_unlock(&tm_log_lock);
    smfi_setpriv(ctx, c);
    return c;
}

/* ------------------------------------------------------------------ */
/* Log lines */

/* Starts a line: {"t":..., "conn":N, "msg":M, "ev":"EV" */
static void tm_log_begin(struct tm_buf *b, const struct tm_conn *c, const char *ev)
{
    b->off = tm_logfd < 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tm_buf_fmt(b, "{\"t\":%lld.%03ld,\"conn\":%lu,\"msg\":%u,\"ev\":\"%s\"", (long long)ts.tv_sec,
               ts.tv_nsec / 1000000, c ? c->id : 0, c ? c->msgno : 0, ev);
}

/* Appends ,"macros":{...} with every macro of `list` the MTA sent. */
static void tm_log_macros(struct tm_buf *b, SMFICTX *ctx, const char *list)
{
    if (b->off)
        return;
    tm_buf_str(b, ",\"macros\":{");
    bool first = true;
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == 0)
            break;
        char name[64];
        if (n < sizeof(name)) {
            memcpy(name, p, n);
            name[n] = '\0';
            const char *v = smfi_getsymval(ctx, name);
            if (v != NULL) {
                if (!first)
                    tm_buf_str(b, ",");
                tm_buf_jstr(b, name);
                tm_buf_str(b, ":");
                tm_buf_jstr(b, v);
                first = false;
            }
        }
        p += n;
    }
    tm_buf_str(b, "}");
}

static void tm_log_end(struct tm_buf *b)
{
    tm_buf_str(b, "}\n");
    if (tm_logfd >= 0) {
        pthread_mutex_lock(&tm_log_lock);
        size_t off = 0;
        while (off < b->len) {
            ssize_t w = write(tm_logfd, b->p + off, b->len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        pthread_mutex_unlock(&tm_log_lock);
    }
    free(b->p);
    *b = (struct tm_buf){0};
}

static void tm_log_argv(struct tm_buf *b, char **argv)
{
    tm_buf_str(b, ",\"args\":[");
    for (size_t i = 0; argv != NULL && argv[i] != NULL; i++) {
        if (i > 0)
            tm_buf_str(b, ",");
        tm_buf_jstr(b, argv[i]);
    }
    tm_buf_str(b, "]");
}

/* ------------------------------------------------------------------ */
/* Envelope triggers */

struct tm_trigger {
    const char *word;
    sfsistat verdict;
    const char *code, *enh; /* NULL: the MTA's own reply */
    const char *lines[3];
};

static const struct tm_trigger tm_helo_triggers[] = {
    {"h-reject", SMFIS_REJECT, NULL, NULL, {NULL}},
    {"h-tempfail", SMFIS_TEMPFAIL, NULL, NULL, {NULL}},
    {NULL, 0, NULL, NULL, {NULL}},
};

static const struct tm_trigger tm_mail_triggers[] = {
    {"m-reject", SMFIS_REJECT, NULL, NULL, {NULL}},
    {"m-tempfail", SMFIS_TEMPFAIL, NULL, NULL, {NULL}},
    {"m-discard", SMFIS_DISCARD, NULL, NULL, {NULL}},
    {"m-accept", SMFIS_ACCEPT, NULL, NULL, {NULL}},
    {"m-replycode",
     SMFIS_REJECT,
     "550",
     "5.7.1",
     {"testmilter: sender refused", "second line of the MAIL reply", "third line"}},
    {"m-replycode4", SMFIS_TEMPFAIL, "451", "4.7.1", {"testmilter: sender deferred"}},
    {NULL, 0, NULL, NULL, {NULL}},
};

static const struct tm_trigger tm_rcpt_triggers[] = {
    {"r-reject", SMFIS_REJECT, NULL, NULL, {NULL}},
    {"r-tempfail", SMFIS_TEMPFAIL, NULL, NULL, {NULL}},
    {"r-discard", SMFIS_DISCARD, NULL, NULL, {NULL}},
    {"r-accept", SMFIS_ACCEPT, NULL, NULL, {NULL}},
    {"r-replycode",
     SMFIS_REJECT,
     "550",
     "5.1.1",
     {"testmilter: recipient refused", "second line of the RCPT reply"}},
    {"r-replycode4", SMFIS_TEMPFAIL, "452", "4.2.2", {"testmilter: mailbox full"}},
    {NULL, 0, NULL, NULL, {NULL}},
};

/* The local part of "<local@domain>" (or of a bare address) into out. */
static void tm_local_part(const char *addr, char *out, size_t outsz)
{
    if (*addr == '<')
        addr++;
    size_t n = strcspn(addr, "@>");
    if (n >= outsz)
        n = outsz - 1;
    memcpy(out, addr, n);
    out[n] = '\0';
}

static const struct tm_trigger *tm_trigger_find(const struct tm_trigger *t, const char *word)
{
    for (; t->word != NULL; t++)
        if (strcasecmp(t->word, word) == 0)
            return t;
    return NULL;
}

/* Sets the trigger's reply text and returns its verdict. */
static sfsistat tm_trigger_apply(SMFICTX *ctx, const struct tm_trigger *t, struct tm_buf *log)
{
    int rc = MI_SUCCESS;
    if (t->code != NULL && t->lines[1] == NULL) {
        rc = smfi_setreply(ctx, (char *)t->code, (char *)t->enh, (char *)t->lines[0]);
    } else if (t->code != NULL) {
        rc = smfi_setmlreply(ctx, t->code, t->enh, t->lines[0], t->lines[1], t->lines[2],
                             (char *)NULL);
    }
    tm_buf_str(log, ",\"trigger\":");
    tm_buf_jstr(log, t->word);
    tm_buf_fmt(log, ",\"setreply\":%d", rc);
    return t->verdict;
}

/* CONTINUE, or NOREPLY when the step was negotiated without a reply. */
static sfsistat tm_cont(const struct tm_conn *c, unsigned long nr)
{
    return (c->steps & nr) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

/* ------------------------------------------------------------------ */
/* Callbacks */

static sfsistat tm_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    struct tm_conn *c = tm_conn_get(ctx);
    (void)f2;
    (void)f3;
    *pf0 = f0 & TM_ACTIONS;
    unsigned long want = SMFIP_SKIP;
    if (tm_opt_noreply)
        want |= TM_NR_STEPS;
    if (tm_opt_leadspc)
        want |= SMFIP_HDR_LEADSPC;
    if (tm_opt_rcptrej)
        want |= SMFIP_RCPT_REJ;
    *pf1 = f1 & want;
    *pf2 = 0;
    *pf3 = 0;
    c->steps = *pf1;
    int symrc = 0;
    if (f0 & SMFIF_SETSYMLIST) {
        symrc |= smfi_setsymlist(ctx, SMFIM_CONNECT, tm_mac_connect);
        symrc |= smfi_setsymlist(ctx, SMFIM_HELO, tm_mac_helo);
        symrc |= smfi_setsymlist(ctx, SMFIM_ENVFROM, tm_mac_envfrom);
        symrc |= smfi_setsymlist(ctx, SMFIM_ENVRCPT, tm_mac_envrcpt);
        symrc |= smfi_setsymlist(ctx, SMFIM_DATA, tm_mac_data);
        symrc |= smfi_setsymlist(ctx, SMFIM_EOH, tm_mac_eoh);
        symrc |= smfi_setsymlist(ctx, SMFIM_EOM, tm_mac_eom);
    }
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "negotiate");
    tm_buf_fmt(&b,
               ",\"offered_actions\":%lu,\"offered_steps\":%lu,\"actions\":%lu,\"steps\":%lu,"
               "\"setsymlist\":%d",
               f0, f1, *pf0, *pf1, symrc);
    tm_log_end(&b);
    return SMFIS_CONTINUE;
}

static void tm_sockaddr(struct tm_buf *b, const struct sockaddr *sa)
{
    char txt[INET6_ADDRSTRLEN] = "";
    if (sa == NULL) {
        tm_buf_str(b, ",\"family\":null");
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, txt, sizeof(txt));
        tm_buf_fmt(b, ",\"family\":\"inet\",\"addr\":\"%s\",\"port\":%u", txt, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, txt, sizeof(txt));
        tm_buf_fmt(b, ",\"family\":\"inet6\",\"addr\":\"%s\",\"port\":%u", txt,
                   ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        tm_buf_str(b, ",\"family\":\"unix\",\"addr\":");
        tm_buf_json(b, un->sun_path, strnlen(un->sun_path, sizeof(un->sun_path)));
    } else {
        tm_buf_fmt(b, ",\"family\":%d", sa->sa_family);
    }
}

static sfsistat tm_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
    struct tm_conn *c = tm_conn_get(ctx);
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "connect");
    tm_buf_str(&b, ",\"hostname\":");
    tm_buf_jstr(&b, hostname);
    tm_sockaddr(&b, hostaddr);
    tm_log_macros(&b, ctx, tm_mac_connect);
    sfsistat r = tm_cont(c, SMFIP_NR_CONN);
    const char *addr = smfi_getsymval(ctx, "{client_addr}");
    if (addr != NULL && !(c->steps & SMFIP_NR_CONN)) {
        if (strcmp(addr, "127.0.0.66") == 0) {
            tm_buf_str(&b, ",\"trigger\":\"connect-reject\"");
            r = SMFIS_REJECT;
        } else if (strcmp(addr, "127.0.0.67") == 0) {
            tm_buf_str(&b, ",\"trigger\":\"connect-tempfail\"");
            r = SMFIS_TEMPFAIL;
        }
    }
    tm_log_end(&b);
    return r;
}

static sfsistat tm_helo(SMFICTX *ctx, char *name)
{
    struct tm_conn *c = tm_conn_get(ctx);
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "helo");
    tm_buf_str(&b, ",\"helo\":");
    tm_buf_jstr(&b, name);
    tm_log_macros(&b, ctx, tm_mac_helo);
    sfsistat r = tm_cont(c, SMFIP_NR_HELO);
    const struct tm_trigger *t = tm_trigger_find(tm_helo_triggers, name ? name : "");
    if (t != NULL && !(c->steps & SMFIP_NR_HELO))
        r = tm_trigger_apply(ctx, t, &b);
    tm_log_end(&b);
    return r;
}

static sfsistat tm_envfrom(SMFICTX *ctx, char **argv)
{
    struct tm_conn *c = tm_conn_get(ctx);
    tm_msg_reset(c);
    c->msgno++;
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "envfrom");
    tm_log_argv(&b, argv);
    tm_log_macros(&b, ctx, tm_mac_envfrom);
    sfsistat r = tm_cont(c, SMFIP_NR_MAIL);
    char local[128];
    tm_local_part(argv && argv[0] ? argv[0] : "", local, sizeof(local));
    const struct tm_trigger *t = tm_trigger_find(tm_mail_triggers, local);
    if (t != NULL && !(c->steps & SMFIP_NR_MAIL))
        r = tm_trigger_apply(ctx, t, &b);
    tm_log_end(&b);
    return r;
}

static sfsistat tm_envrcpt(SMFICTX *ctx, char **argv)
{
    struct tm_conn *c = tm_conn_get(ctx);
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "envrcpt");
    tm_log_argv(&b, argv);
    tm_log_macros(&b, ctx, tm_mac_envrcpt);
    sfsistat r = tm_cont(c, SMFIP_NR_RCPT);
    char local[128];
    tm_local_part(argv && argv[0] ? argv[0] : "", local, sizeof(local));
    const struct tm_trigger *t = tm_trigger_find(tm_rcpt_triggers, local);
    if (t != NULL && !(c->steps & SMFIP_NR_RCPT))
        r = tm_trigger_apply(ctx, t, &b);
    tm_log_end(&b);
    return r;
}

static sfsistat tm_data(SMFICTX *ctx)
{
    struct tm_conn *c = tm_conn_get(ctx);
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "data");
    tm_log_macros(&b, ctx, tm_mac_data);
    tm_log_end(&b);
    return tm_cont(c, SMFIP_NR_DATA);
}

static sfsistat tm_unknown(SMFICTX *ctx, const char *cmd)
{
    struct tm_conn *c = tm_conn_get(ctx);
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "unknown");
    tm_buf_str(&b, ",\"cmd\":");
    tm_buf_jstr(&b, cmd);
    tm_log_end(&b);
    return tm_cont(c, SMFIP_NR_UNKN);
}

static sfsistat tm_header(SMFICTX *ctx, char *name, char *value)
{
    struct tm_conn *c = tm_conn_get(ctx);
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "header");
    tm_buf_str(&b, ",\"name\":");
    tm_buf_jstr(&b, name);
    tm_buf_str(&b, ",\"value\":");
    tm_buf_jstr(&b, value);
    tm_log_end(&b);
    if (name != NULL && value != NULL && strcasecmp(name, "X-Milter-Do") == 0 &&
        c->ntodo < TM_MAX_DO) {
        char *v = strdup(value);
        if (v == NULL) {
            perror("testmilter: strdup");
            abort();
        }
        c->todo[c->ntodo++] = v;
        /* skip is decided before the body arrives, so it is read here. */
        const char *p = v + strspn(v, " \t\r\n");
        if (strncasecmp(p, "skip", 4) == 0 && (p[4] == '\0' || strchr(" \t\r\n", p[4])))
            c->skip = true;
    }
    return tm_cont(c, SMFIP_NR_HDR);
}

static sfsistat tm_eoh(SMFICTX *ctx)
{
    struct tm_conn *c = tm_conn_get(ctx);
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "eoh");
    tm_log_macros(&b, ctx, tm_mac_eoh);
    tm_log_end(&b);
    return tm_cont(c, SMFIP_NR_EOH);
}

/* Hash the chunk and keep the first TM_BODY_KEEP bytes for the eom line. */
static void tm_body_keep(struct tm_conn *c, const unsigned char *chunk, size_t len)
{
    if (c->sha == NULL) {
        c->sha = EVP_MD_CTX_new();
        if (c->sha == NULL || EVP_DigestInit_ex(c->sha, EVP_sha256(), NULL) != 1) {
            fprintf(stderr, "testmilter: EVP_DigestInit_ex failed\n");
            abort();
        }
    }
    EVP_DigestUpdate(c->sha, chunk, len);
    if (c->body.len < TM_BODY_KEEP) {
        size_t keep = TM_BODY_KEEP - c->body.len;
        tm_buf_add(&c->body, (const char *)chunk, len < keep ? len : keep);
    }
}

static sfsistat tm_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct tm_conn *c = tm_conn_get(ctx);
    c->body_len += len;
    c->body_chunks++;
    /* Without a log this is the benchmark's no-op milter: no hashing. */
    if (tm_logfd >= 0)
        tm_body_keep(c, chunk, len);
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "body");
    tm_buf_fmt(&b, ",\"len\":%zu", len);
    sfsistat r = tm_cont(c, SMFIP_NR_BODY);
    if (c->skip && (c->steps & SMFIP_SKIP)) {
        tm_buf_str(&b, ",\"reply\":\"skip\"");
        r = SMFIS_SKIP;
    }
    tm_log_end(&b);
    return r;
}

/* "\n" -> CRLF, "\t" -> TAB, "\\" -> backslash; the result is malloc'ed. */
static char *tm_unescape(const char *s, size_t *outlen)
{
    char *out = malloc(2 * strlen(s) + 1);
    if (out == NULL) {
        perror("testmilter: malloc");
        abort();
    }
    size_t n = 0;
    for (; *s != '\0'; s++) {
        if (s[0] == '\\' && s[1] == 'n') {
            out[n++] = '\r';
            out[n++] = '\n';
            s++;
        } else if (s[0] == '\\' && s[1] == 't') {
            out[n++] = '\t';
            s++;
        } else if (s[0] == '\\' && s[1] == '\\') {
            out[n++] = '\\';
            s++;
        } else {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
    if (outlen != NULL)
        *outlen = n;
    return out;
}

/* The next space-separated word of *p (NUL-terminated in place), or NULL. */
static char *tm_word(char **p)
{
    char *s = *p + strspn(*p, " \t");
    if (*s == '\0')
        return NULL;
    char *e = s + strcspn(s, " \t");
    if (*e != '\0')
        *e++ = '\0';
    *p = e;
    return s;
}

/* What follows the words already taken, leading blanks skipped. */
static char *tm_rest(char *p)
{
    return p + strspn(p, " \t");
}

/* Does one X-Milter-Do action. Returns -1 to go on with the next one, or
 * the verdict that ends the message. */
static int tm_do(SMFICTX *ctx, struct tm_conn *c, char *line, struct tm_buf *b)
{
    char *p = line;
    char *verb = tm_word(&p);
    int rc = MI_SUCCESS;
    int verdict = -1;
    if (verb == NULL)
        return -1;
    if (strcasecmp(verb, "addheader") == 0) {
        char *name = tm_word(&p);
        rc = name ? smfi_addheader(ctx, name, tm_rest(p)) : MI_FAILURE;
    } else if (strcasecmp(verb, "insheader") == 0) {
        char *idx = tm_word(&p), *name = tm_word(&p);
        rc = idx && name ? smfi_insheader(ctx, atoi(idx), name, tm_rest(p)) : MI_FAILURE;
    } else if (strcasecmp(verb, "chgheader") == 0) {
        char *name = tm_word(&p), *idx = tm_word(&p);
        char *value = tm_rest(p);
        rc = name && idx ? smfi_chgheader(ctx, name, atoi(idx), *value ? value : NULL) : MI_FAILURE;
    } else if (strcasecmp(verb, "chgfrom") == 0) {
        char *addr = tm_word(&p);
        char *args = tm_rest(p);
        rc = addr ? smfi_chgfrom(ctx, addr, *args ? args : NULL) : MI_FAILURE;
    } else if (strcasecmp(verb, "addrcpt") == 0) {
        char *addr = tm_word(&p);
        rc = addr ? smfi_addrcpt(ctx, addr) : MI_FAILURE;
    } else if (strcasecmp(verb, "addrcpt_par") == 0) {
        char *addr = tm_word(&p);
        char *args = tm_rest(p);
        rc = addr ? smfi_addrcpt_par(ctx, addr, *args ? args : NULL) : MI_FAILURE;
    } else if (strcasecmp(verb, "delrcpt") == 0) {
        char *addr = tm_word(&p);
        rc = addr ? smfi_delrcpt(ctx, addr) : MI_FAILURE;
    } else if (strcasecmp(verb, "replbody") == 0) {
        size_t n;
        char *body = tm_unescape(tm_rest(p), &n);
        rc = smfi_replacebody(ctx, (unsigned char *)body, (int)n);
        free(body);
    } else if (strcasecmp(verb, "quarantine") == 0) {
        rc = smfi_quarantine(ctx, tm_rest(p));
    } else if (strcasecmp(verb, "reject") == 0) {
        verdict = SMFIS_REJECT;
    } else if (strcasecmp(verb, "tempfail") == 0) {
        verdict = SMFIS_TEMPFAIL;
    } else if (strcasecmp(verb, "discard") == 0) {
        verdict = SMFIS_DISCARD;
    } else if (strcasecmp(verb, "accept") == 0) {
        verdict = SMFIS_ACCEPT;
    } else if (strcasecmp(verb, "replycode") == 0) {
        char *code = tm_word(&p), *enh = tm_word(&p);
        char *text = tm_unescape(tm_rest(p), NULL);
        char *lines[TM_MAX_LINES + 1] = {NULL};
        size_t nl = 0;
        for (char *s = text; s != NULL && nl < TM_MAX_LINES;) {
            lines[nl++] = s;
            char *e = strstr(s, "\r\n");
            if (e != NULL) {
                *e = '\0';
                s = e + 2;
            } else {
                s = NULL;
            }
        }
        if (enh != NULL && strcmp(enh, "-") == 0)
            enh = NULL;
        if (code == NULL) {
            rc = MI_FAILURE;
        } else if (nl <= 1) {
            rc = smfi_setreply(ctx, code, enh, lines[0]);
        } else {
            rc = smfi_setmlreply(ctx, code, enh, lines[0], lines[1], lines[2], lines[3], lines[4],
                                 lines[5], lines[6], lines[7], (char *)NULL);
        }
        free(text);
        if (rc == MI_SUCCESS)
            verdict = code[0] == '4' ? SMFIS_TEMPFAIL : SMFIS_REJECT;
    } else if (strcasecmp(verb, "progress") == 0) {
        rc = smfi_progress(ctx);
    } else if (strcasecmp(verb, "sleep") == 0) {
        char *secs = tm_word(&p);
        double d = secs ? strtod(secs, NULL) : 0;
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    } else if (strcasecmp(verb, "skip") == 0) {
        /* handled in tm_body */
        rc = (c->steps & SMFIP_SKIP) ? MI_SUCCESS : MI_FAILURE;
    } else {
        rc = MI_FAILURE;
        tm_buf_str(b, ",\"error\":\"unknown action\"");
    }
    tm_buf_fmt(b, ",\"rc\":%d", rc);
    return verdict;
}

static sfsistat tm_eom(SMFICTX *ctx)
{
    struct tm_conn *c = tm_conn_get(ctx);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (c->sha != NULL) {
        EVP_DigestFinal_ex(c->sha, md, &mdlen);
    } else if (tm_logfd >= 0) {
        EVP_Digest("", 0, md, &mdlen, EVP_sha256(), NULL);
    }
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "eom");
    tm_log_macros(&b, ctx, tm_mac_eom);
    tm_buf_fmt(&b, ",\"body_len\":%zu,\"body_chunks\":%u,\"body_sha256\":\"", c->body_len,
               c->body_chunks);
    for (unsigned i = 0; i < mdlen; i++)
        tm_buf_fmt(&b, "%02x", md[i]);
    tm_buf_str(&b, "\",\"body\":");
    tm_buf_json(&b, c->body.p ? c->body.p : "", c->body.len);
    tm_buf_fmt(&b, ",\"body_truncated\":%s", c->body_len > c->body.len ? "true" : "false");
    tm_log_end(&b);

    sfsistat verdict = SMFIS_CONTINUE;
    for (size_t i = 0; i < c->ntodo; i++) {
        char *line = strdup(c->todo[i]);
        if (line == NULL) {
            perror("testmilter: strdup");
            abort();
        }
        line[strcspn(line, "\r\n")] = '\0';
        tm_log_begin(&b, c, "action");
        tm_buf_str(&b, ",\"do\":");
        tm_buf_jstr(&b, line + strspn(line, " \t"));
        int v = tm_do(ctx, c, line, &b);
        tm_log_end(&b);
        free(line);
        if (v >= 0) {
            verdict = v;
            break;
        }
    }
    tm_log_begin(&b, c, "eom-reply");
    tm_buf_fmt(&b, ",\"verdict\":%d", verdict);
    tm_log_end(&b);
    tm_msg_reset(c);
    return verdict;
}

static sfsistat tm_abort(SMFICTX *ctx)
{
    struct tm_conn *c = tm_conn_get(ctx);
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "abort");
    tm_log_end(&b);
    tm_msg_reset(c);
    return SMFIS_CONTINUE;
}

static sfsistat tm_close(SMFICTX *ctx)
{
    struct tm_conn *c = smfi_getpriv(ctx);
    struct tm_buf b = {0};
    tm_log_begin(&b, c, "close");
    tm_log_end(&b);
    if (c != NULL) {
        tm_msg_reset(c);
        free(c);
        smfi_setpriv(ctx, NULL);
    }
    return SMFIS_CONTINUE;
}

/* ------------------------------------------------------------------ */

static char tm_name[] = "testmilter";

static void tm_usage(void)
{
    fprintf(stderr, "usage: testmilter -p unix:/path|inet:PORT@127.0.0.1 [-l LOGFILE] "
                    "[-t SECONDS] [-N] [-H] [-R]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    char *conn = NULL;
    const char *logfile = NULL;
    int timeout = -1;
    int opt;
    while ((opt = getopt(argc, argv, "p:l:t:NHR")) != -1) {
        switch (opt) {
        case 'p':
            conn = optarg;
            break;
        case 'l':
            logfile = optarg;
            break;
        case 't':
            timeout = atoi(optarg);
            break;
        case 'N':
            tm_opt_noreply = true;
            break;
        case 'H':
            tm_opt_leadspc = true;
            break;
        case 'R':
            tm_opt_rcptrej = true;
            break;
        default:
            tm_usage();
        }
    }
    if (conn == NULL || optind != argc)
        tm_usage();
    if (logfile != NULL) {
        tm_logfd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (tm_logfd < 0) {
            fprintf(stderr, "testmilter: %s: %s\n", logfile, strerror(errno));
            return 1;
        }
    }
    struct smfiDesc desc = {
        .xxfi_name = tm_name,
        .xxfi_version = SMFI_VERSION,
        .xxfi_flags = TM_ACTIONS,
        .xxfi_connect = tm_connect,
        .xxfi_helo = tm_helo,
        .xxfi_envfrom = tm_envfrom,
        .xxfi_envrcpt = tm_envrcpt,
        .xxfi_header = tm_header,
        .xxfi_eoh = tm_eoh,
        .xxfi_body = tm_body,
        .xxfi_eom = tm_eom,
        .xxfi_abort = tm_abort,
        .xxfi_close = tm_close,
        .xxfi_unknown = tm_unknown,
        .xxfi_data = tm_data,
        .xxfi_negotiate = tm_negotiate,
    };
    if (smfi_setconn(conn) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS) {
        fprintf(stderr, "testmilter: bad socket %s or registration failed\n", conn);
        return 1;
    }
    if (timeout >= 0)
        smfi_settimeout(timeout);
    if (smfi_opensocket(true) != MI_SUCCESS) {
        fprintf(stderr, "testmilter: cannot open %s\n", conn);
        return 1;
    }
    /* An MTA running as another user (Postfix's smtpd) must be able to
     * connect to a unix socket created under root's umask. */
    if (strncmp(conn, "unix:", 5) == 0 || strncmp(conn, "local:", 6) == 0)
        chmod(strchr(conn, ':') + 1, 0666);
    struct tm_buf b = {0};
    tm_log_begin(&b, NULL, "listening");
    tm_buf_str(&b, ",\"socket\":");
    tm_buf_jstr(&b, conn);
    tm_buf_fmt(&b, ",\"pid\":%ld", (long)getpid());
    tm_log_end(&b);
    int rc = smfi_main();
    tm_log_begin(&b, NULL, "exit");
    tm_buf_fmt(&b, ",\"rc\":%d", rc);
    tm_log_end(&b);
    return rc == MI_SUCCESS ? 0 : 1;
}
