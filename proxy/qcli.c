/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice-quarantine: the admin's command line for the quarantine (list,
 * show, release, delete, purge, reindex). Reads the daemon's config file
 * for the directory and the upstream MTA; works on the same index the
 * daemon writes (qstore.h), safely while the daemon runs.
 *
 * Exit codes (also in usage()):
 *   0 done; 1 failure (index, file, I/O); 2 usage or configuration error;
 *   3 no such message; 4 not held (already released, being released,
 *   deleted or expired: nothing was sent); 5 the MTA refused or could not
 *   be reached (the message is still held); 6 the message was sent but no
 *   reply came (left "releasing": check the MTA's log, then --force).
 */
#include <ctype.h>
#include <errno.h>
#include <gmime/gmime.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "json.h"
#include "log.h"
#include "qrelease.h"
#include "qstore.h"

enum {
    EX_OK = 0,
    EX_FAIL = 1,
    EX_USAGE = 2,
    EX_NOTFOUND = 3,
    EX_NOTHELD = 4,
    EX_MTA = 5,
    EX_UNKNOWN = 6
};

static void usage(FILE *f)
{
    fputs("usage: sluice-quarantine [-c CONFIG] COMMAND [ARGS]\n"
          "  list [--since T] [--until T] [--sender S] [--rcpt R] [--plugin P] [--reason R]\n"
          "       [--status held|releasing|released|deleted|expired|all] [--limit N] [--json]\n"
          "  show ID\n"
          "  release ID [--to ADDR] [--force]\n"
          "  delete ID\n"
          "  purge --older-than DURATION\n"
          "  reindex\n"
          "T: Unix seconds, YYYY-MM-DD[THH:MM[:SS]] (UTC) or a DURATION ago (30m, 2h, 7d).\n"
          "Exit: 0 done, 1 failure, 2 usage/config, 3 no such message, 4 not held,\n"
          "      5 MTA refused or unreachable (still held), 6 sent, no reply (left releasing).\n",
          f);
}

/* NUMBER[smhdw] in seconds; -1 if not one. */
static int64_t parse_duration(const char *s)
{
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (e == s || v < 0 || errno)
        return -1;
    int64_t mul = 1;
    switch (*e) {
    case 0:
    case 's':
        break;
    case 'm':
        mul = 60;
        break;
    case 'h':
        mul = 3600;
        break;
    case 'd':
        mul = 86400;
        break;
    case 'w':
        mul = 7 * 86400;
        break;
    default:
        return -1;
    }
    if (*e && e[1])
        return -1;
    return (int64_t)v * mul;
}

static int64_t parse_time(const char *s)
{
    struct tm tm = {0};
    const char *e;
    if ((e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) && !*e)
        return (int64_t)timegm(&tm);
    memset(&tm, 0, sizeof tm);
    if ((e = strptime(s, "%Y-%m-%dT%H:%M", &tm)) && !*e)
        return (int64_t)timegm(&tm);
    memset(&tm, 0, sizeof tm);
    if ((e = strptime(s, "%Y-%m-%d", &tm)) && !*e)
        return (int64_t)timegm(&tm);
    bool digits = *s != 0;
    for (const char *p = s; *p; p++)
        digits &= isdigit((unsigned char)*p) != 0;
    if (digits && strlen(s) >= 9)
        return strtoll(s, NULL, 10);
    int64_t d = parse_duration(s);
    return d < 0 ? -1 : (int64_t)time(NULL) - d;
}

/* Bytes a terminal must not interpret: controls and DEL as \xNN
 * (keeps \n and \t when `lines`), and the C1 controls U+0080..U+009F
 * written in UTF-8 (C2 80..C2 9F: CSI, OSC, which terminals in UTF-8 mode
 * act on) as \xc2\xNN. */
static void put_visible(FILE *f, const char *s, size_t n, bool lines)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (lines && c == '\r' && i + 1 < n && s[i + 1] == '\n')
            continue; /* CRLF is a line end */
        if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
            (unsigned char)s[i + 1] <= 0x9f) {
            fprintf(f, "\\xc2\\x%02x", (unsigned char)s[i + 1]);
            i++;
        } else if ((c < 0x20 && !(lines && (c == '\n' || c == '\t'))) || c == 0x7f) {
            fprintf(f, "\\x%02x", c);
        } else {
            fputc(c, f);
        }
    }
}

static void puts_visible(FILE *f, const char *s)
{
    put_visible(f, s, strlen(s), false);
}

static int64_t parse_id(const char *s)
{
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    return (e == s || *e || v <= 0 || errno) ? -1 : (int64_t)v;
}

static void fmt_time(char *out, size_t n, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void json_msg(buf_t *b, const struct qstore_msg *m)
{
    char t[32];
    buf_printf(b, "{\"id\":%" PRId64 ",\"time\":%" PRId64 ",\"date\":", m->id, m->time);
    fmt_time(t, sizeof t, m->time);
    json_escape(b, t);
    buf_puts(b, ",\"status\":");
    json_escape(b, qstore_status_name(m->status));
    buf_printf(b, ",\"status_time\":%" PRId64 ",\"sid\":", m->status_time);
    json_escape(b, m->sid);
    buf_puts(b, ",\"client\":");
    json_escape(b, m->client_addr);
    buf_puts(b, ",\"client_name\":");
    json_escape(b, m->client_name);
    buf_puts(b, ",\"helo\":");
    json_escape(b, m->helo);
    buf_puts(b, ",\"tls\":");
    json_escape(b, m->tls);
    buf_puts(b, ",\"auth_user\":");
    json_escape(b, m->auth_user);
    buf_puts(b, ",\"sender\":");
    json_escape(b, m->sender);
    buf_puts(b, ",\"rcpts\":[");
    for (size_t i = 0; i < m->nrcpts; i++) {
        if (i)
            buf_puts(b, ",");
        json_escape(b, m->rcpts[i]);
    }
    buf_printf(b, "],\"size\":%" PRIu64 ",\"plugin\":", m->size);
    json_escape(b, m->plugin);
    buf_puts(b, ",\"reason\":");
    json_escape(b, m->reason);
    buf_printf(b, ",\"score\":%.3f,\"symbols\":", m->score);
    json_escape(b, m->symbols);
    buf_puts(b, ",\"note\":");
    json_escape(b, m->note);
    buf_puts(b, ",\"path\":");
    json_escape(b, m->path);
    /* the record was written by sluice as one JSON object */
    buf_puts(b, ",\"record\":");
    if (json_is_object(m->record))
        buf_puts(b, m->record);
    else
        json_escape(b, m->record);
    buf_puts(b, "}");
}

static int cmd_list(struct qstore *qs, int argc, char **argv)
{
    struct qstore_filter f = {.status = QSTORE_HELD, .limit = 100};
    bool json = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "sluice-quarantine list: %s needs a value\n", a);
            return EX_USAGE;
        }
        i++;
        if (strcmp(a, "--since") == 0 || strcmp(a, "--until") == 0) {
            int64_t t = parse_time(v);
            if (t < 0) {
                fprintf(stderr, "sluice-quarantine list: %s: bad time '%s'\n", a, v);
                return EX_USAGE;
            }
            *(a[2] == 's' ? &f.since : &f.until) = t;
        } else if (strcmp(a, "--sender") == 0) {
            f.sender = v;
        } else if (strcmp(a, "--rcpt") == 0) {
            f.rcpt = v;
        } else if (strcmp(a, "--plugin") == 0) {
            f.plugin = v;
        } else if (strcmp(a, "--reason") == 0) {
            f.reason = v;
        } else if (strcmp(a, "--status") == 0) {
            f.status = strcmp(v, "all") == 0 ? -1 : qstore_status_parse(v);
            if (f.status < 0 && strcmp(v, "all") != 0) {
                fprintf(stderr, "sluice-quarantine list: unknown status '%s'\n", v);
                return EX_USAGE;
            }
        } else if (strcmp(a, "--limit") == 0) {
            f.limit = (size_t)strtoul(v, NULL, 10);
        } else {
            fprintf(stderr, "sluice-quarantine list: unknown option %s\n", a);
            return EX_USAGE;
        }
    }
    struct qstore_msg *v;
    size_t n, total;
    if (qstore_list(qs, &f, &v, &n, &total) != 0) {
        fprintf(stderr, "sluice-quarantine: %s\n", qstore_error(qs));
        return EX_FAIL;
    }
    if (json) {
        buf_t b = BUF_INIT;
        buf_printf(&b, "{\"total\":%zu,\"messages\":[", total);
        for (size_t i = 0; i < n; i++) {
            if (i)
                buf_puts(&b, ",");
            json_msg(&b, &v[i]);
        }
        buf_puts(&b, "]}\n");
        fwrite(b.ptr, 1, b.len, stdout);
        buf_free(&b);
    } else {
        printf("%-6s %-20s %-9s %-8s %-28s %-28s %-12s %s\n", "ID", "TIME", "STATUS", "SIZE",
               "SENDER", "RECIPIENTS", "PLUGIN", "REASON");
        for (size_t i = 0; i < n; i++) {
            char t[32];
            fmt_time(t, sizeof t, v[i].time);
            printf("%-6" PRId64 " %-20s %-9s %-8" PRIu64 " ", v[i].id, t,
                   qstore_status_name(v[i].status), v[i].size);
            puts_visible(stdout, *v[i].sender ? v[i].sender : "<>");
            printf(" ");
            for (size_t k = 0; k < v[i].nrcpts; k++) {
                if (k)
                    printf(",");
                puts_visible(stdout, v[i].rcpts[k]);
            }
            printf(" ");
            puts_visible(stdout, *v[i].plugin ? v[i].plugin : "-");
            printf(" ");
            puts_visible(stdout, v[i].reason);
            printf("\n");
        }
        printf("(%zu of %zu)\n", n, total);
    }
    qstore_msgs_free(v, n);
    return EX_OK;
}

static void show_part(GMimeObject *parent, GMimeObject *part, gpointer ud)
{
    (void)parent;
    int *np = ud;
    GMimeContentType *ct = g_mime_object_get_content_type(part);
    char *mt = ct ? g_mime_content_type_get_mime_type(ct) : g_strdup("text/plain");
    const char *fn = GMIME_IS_PART(part) ? g_mime_part_get_filename(GMIME_PART(part)) : NULL;
    printf("\n--- part %d: ", ++*np);
    puts_visible(stdout, mt);
    if (fn) {
        printf(" name=");
        puts_visible(stdout, fn);
    }
    if (GMIME_IS_TEXT_PART(part)) {
        /* decoded (transfer encoding, charset to UTF-8); HTML shown as
         * its source, never rendered */
        char *text = g_mime_text_part_get_text(GMIME_TEXT_PART(part));
        printf(" ---\n");
        if (text) {
            size_t l = strlen(text);
            put_visible(stdout, text, l > 65536 ? 65536 : l, true);
            if (l > 65536)
                printf("\n[... %zu more bytes not shown]", l - 65536);
        }
        printf("\n");
        g_free(text);
    } else {
        printf(" (not shown)\n");
    }
    g_free(mt);
}

static int cmd_show(struct qstore *qs, int argc, char **argv)
{
    if (argc != 1 || parse_id(argv[0]) < 0) {
        usage(stderr);
        return EX_USAGE;
    }
    struct qstore_msg m;
    int rc = qstore_get(qs, parse_id(argv[0]), &m);
    if (rc == QSTORE_ENOTFOUND) {
        fprintf(stderr, "sluice-quarantine: no message %s\n", argv[0]);
        return EX_NOTFOUND;
    }
    if (rc != 0) {
        fprintf(stderr, "sluice-quarantine: %s\n", qstore_error(qs));
        return EX_FAIL;
    }
    char t[32];
    fmt_time(t, sizeof t, m.time);
    printf("id: %" PRId64 "\ntime: %s\nstatus: %s\nsession: ", m.id, t,
           qstore_status_name(m.status));
    puts_visible(stdout, m.sid);
    printf("\nclient: ");
    puts_visible(stdout, m.client_addr);
    printf(" name=");
    puts_visible(stdout, *m.client_name ? m.client_name : "unknown");
    printf(" helo=");
    puts_visible(stdout, m.helo);
    printf("\ntls: ");
    puts_visible(stdout, *m.tls ? m.tls : "no");
    printf("\nsender: <");
    puts_visible(stdout, m.sender);
    printf(">\n");
    for (size_t i = 0; i < m.nrcpts; i++) {
        printf("recipient: <");
        puts_visible(stdout, m.rcpts[i]);
        printf(">\n");
    }
    printf("size: %" PRIu64 "\nplugin: ", m.size);
    puts_visible(stdout, m.plugin);
    printf("\nreason: ");
    puts_visible(stdout, m.reason);
    printf("\nscore: %.3f\nsymbols: ", m.score);
    puts_visible(stdout, m.symbols);
    printf("\nrecord: ");
    puts_visible(stdout, m.record);
    if (*m.note) {
        printf("\nnote: ");
        puts_visible(stdout, m.note);
    }
    printf("\n");
    int ret = EX_OK;
    FILE *f = fopen(m.path, "rb");
    if (!f) {
        printf("\n(body file %s: %s)\n", m.path, strerror(errno));
        bool held = m.status == QSTORE_HELD; /* only then must the file be there */
        qstore_msg_free(&m);
        return held ? EX_FAIL : EX_OK;
    }
    /* skip sluice's own head lines */
    char line[65536];
    long start = 0;
    while (fgets(line, sizeof line, f) && strncasecmp(line, "X-Sluice-", 9) == 0)
        start = ftell(f);
    fseek(f, start, SEEK_SET);
    g_mime_init();
    GMimeStream *st = g_mime_stream_file_new(f); /* owns f */
    GMimeParser *p = g_mime_parser_new_with_stream(st);
    GMimeMessage *msg = g_mime_parser_construct_message(p, NULL);
    if (!msg) {
        printf("\n(the body is not a parsable message)\n");
    } else {
        printf("\n--- headers ---\n");
        GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(msg));
        int nh = g_mime_header_list_get_count(hl);
        for (int i = 0; i < nh; i++) {
            GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
            puts_visible(stdout, g_mime_header_get_name(h));
            printf(": ");
            const char *raw = g_mime_header_get_raw_value(h);
            /* unfolded, decoded for display only */
            char *dec = g_mime_utils_header_decode_text(NULL, raw ? raw : "");
            char *s = dec ? dec : g_strdup(raw ? raw : "");
            for (char *c = s; *c; c++)
                if (*c == '\r' || *c == '\n' || *c == '\t')
                    *c = ' ';
            char *b = s;
            while (*b == ' ')
                b++;
            size_t bl = strlen(b);
            while (bl && b[bl - 1] == ' ')
                b[--bl] = 0;
            puts_visible(stdout, b);
            g_free(s);
            printf("\n");
        }
        int np = 0;
        g_mime_message_foreach(msg, show_part, &np);
        g_object_unref(msg);
    }
    g_object_unref(p);
    g_object_unref(st);
    qstore_msg_free(&m);
    return ret;
}

static int cmd_release(struct qstore *qs, const struct cfg *cfg, int argc, char **argv)
{
    int64_t id = -1;
    struct qrelease_opts o = {0};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
            o.to = argv[++i];
            if (!*o.to || strpbrk(o.to, "<> \r\n\t") || strlen(o.to) > 998) {
                fprintf(stderr, "sluice-quarantine release: bad address '%s'\n", o.to);
                return EX_USAGE;
            }
        } else if (strcmp(argv[i], "--force") == 0) {
            o.force = true;
        } else if (id < 0 && (id = parse_id(argv[i])) > 0) {
        } else {
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (id <= 0) {
        usage(stderr);
        return EX_USAGE;
    }
    if (cfg->nupstream == 0) {
        fprintf(stderr, "sluice-quarantine: no [upstream] servers in the configuration\n");
        return EX_USAGE;
    }
    o.upstream = (const struct sockaddr *)&cfg->upstream[0].sa;
    o.upstream_len = cfg->upstream[0].salen;
    o.helo = cfg->upstream_helo;
    o.timeout_ms = cfg->upstream_data_timeout_ms;
    char why[700];
    int rc = qrelease_send(qs, id, &o, why, sizeof why);
    FILE *out = rc == QRELEASE_OK ? stdout : stderr;
    fprintf(out, "sluice-quarantine: release %" PRId64 ": ", id);
    puts_visible(out, why);
    fputc('\n', out);
    switch (rc) {
    case QRELEASE_OK:
        return EX_OK;
    case QRELEASE_ENOTFOUND:
        return EX_NOTFOUND;
    case QRELEASE_EALREADY:
        return EX_NOTHELD;
    case QRELEASE_ETEMP:
    case QRELEASE_EREFUSED:
        return EX_MTA;
    case QRELEASE_EUNKNOWN:
        return EX_UNKNOWN;
    default:
        return EX_FAIL;
    }
}

static int cmd_delete(struct qstore *qs, int argc, char **argv)
{
    if (argc != 1 || parse_id(argv[0]) < 0) {
        usage(stderr);
        return EX_USAGE;
    }
    int rc = qstore_delete(qs, parse_id(argv[0]));
    if (rc == QSTORE_ENOTFOUND) {
        fprintf(stderr, "sluice-quarantine: no message %s\n", argv[0]);
        return EX_NOTFOUND;
    }
    if (rc == QSTORE_ESTATE) {
        fprintf(stderr, "sluice-quarantine: message %s is not held\n", argv[0]);
        return EX_NOTHELD;
    }
    if (rc != 0) {
        fprintf(stderr, "sluice-quarantine: %s\n", qstore_error(qs));
        return EX_FAIL;
    }
    printf("sluice-quarantine: deleted %s\n", argv[0]);
    return EX_OK;
}

static int cmd_purge(struct qstore *qs, int argc, char **argv)
{
    int64_t d = -1;
    if (argc == 2 && strcmp(argv[0], "--older-than") == 0)
        d = parse_duration(argv[1]);
    if (d < 0) {
        usage(stderr);
        return EX_USAGE;
    }
    struct qstore_counts c;
    int64_t before = (int64_t)time(NULL) - d;
    if (qstore_expire(qs, before > 0 ? before : 1, 0, &c) != 0) {
        fprintf(stderr, "sluice-quarantine: %s\n", qstore_error(qs));
        return EX_FAIL;
    }
    printf("sluice-quarantine: purged %" PRIu64 " messages, %" PRIu64 " bytes\n",
           c.n[QSTORE_EXPIRED], c.bytes[QSTORE_EXPIRED]);
    return EX_OK;
}

static int cmd_reindex(struct qstore *qs)
{
    size_t added = 0, bad = 0;
    if (qstore_reindex(qs, &added, &bad) != 0) {
        fprintf(stderr, "sluice-quarantine: %s\n", qstore_error(qs));
        return EX_FAIL;
    }
    printf("sluice-quarantine: %zu files indexed, %zu skipped (not quarantine files)\n", added,
           bad);
    return EX_OK;
}

int main(int argc, char **argv)
{
    const char *config = "/etc/sluice/sluice.conf";
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return EX_OK;
        } else
            break;
    }
    if (i >= argc) {
        usage(stderr);
        return EX_USAGE;
    }
    const char *cmd = argv[i++];
    log_init("sluice-quarantine", 0, LOG_LVL_WARN);
    buf_t errs = BUF_INIT;
    struct cfg *cfg = cfg_load(config, NULL, &errs);
    if (!cfg) {
        fprintf(stderr, "%s", errs.ptr ? errs.ptr : "cannot load the configuration\n");
        buf_free(&errs);
        return EX_USAGE;
    }
    buf_free(&errs);
    const char *dir = cfg->quarantine_dir;
    if (!dir) {
        fprintf(stderr, "sluice-quarantine: %s sets no quarantine directory ([quarantine] dir)\n",
                config);
        cfg_unref(cfg);
        return EX_USAGE;
    }
    /* Run as root, become the directory's owner (the daemon's user) first:
     * SQLite creates index.db-wal and -shm as whoever opens the database
     * first, and root-owned ones lock the daemon out of its own index. */
    struct stat sb;
    if (geteuid() == 0 && stat(dir, &sb) == 0 && sb.st_uid != 0) {
        if (setgroups(0, NULL) != 0 || setgid(sb.st_gid) != 0 || setuid(sb.st_uid) != 0) {
            fprintf(stderr, "sluice-quarantine: cannot become uid %u (owner of %s): %s\n",
                    (unsigned)sb.st_uid, dir, strerror(errno));
            cfg_unref(cfg);
            return EX_FAIL;
        }
    }
    char err[600];
    struct qstore *qs = qstore_open(dir, true, err, sizeof err);
    if (!qs) {
        fprintf(stderr, "sluice-quarantine: %s\n", err);
        cfg_unref(cfg);
        return EX_FAIL;
    }
    int rc;
    int n = argc - i;
    char **v = argv + i;
    if (strcmp(cmd, "list") == 0)
        rc = cmd_list(qs, n, v);
    else if (strcmp(cmd, "show") == 0)
        rc = cmd_show(qs, n, v);
    else if (strcmp(cmd, "release") == 0)
        rc = cmd_release(qs, cfg, n, v);
    else if (strcmp(cmd, "delete") == 0)
        rc = cmd_delete(qs, n, v);
    else if (strcmp(cmd, "purge") == 0)
        rc = cmd_purge(qs, n, v);
    else if (strcmp(cmd, "reindex") == 0 && n == 0)
        rc = cmd_reindex(qs);
    else {
        usage(stderr);
        rc = EX_USAGE;
    }
    qstore_close(qs);
    cfg_unref(cfg);
    return rc;
}
