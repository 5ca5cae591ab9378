/* SPDX-License-Identifier: GPL-2.0-or-later */
/* qstore: the quarantine index (rows, filters, paging, the release claim,
 * delete, expiry, counts, the file head parser, reindex), and two writers
 * in two threads on their own connections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qstore.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/test_qstore.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static struct qstore *open_qs(void)
{
    char err[256];
    struct qstore *qs = qstore_open(dir, true, err, sizeof err);
    if (!qs)
        fail_msg("%s", err);
    return qs;
}

/* A body file NAME in dir with `size` bytes; returns its path (static). */
static const char *body(const char *name, size_t size)
{
    static __thread char path[512]; /* the writer threads each have theirs */
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    char *b = calloc(1, size + 1);
    memset(b, 'x', size);
    assert_int_equal(write(fd, b, size), (ssize_t)size);
    close(fd);
    free(b);
    return path;
}

static int64_t add(struct qstore *qs, int64_t t, const char *sender, const char *rcpt,
                   const char *plugin, const char *reason, uint64_t size, const char *file)
{
    char *rc[] = {(char *)rcpt, (char *)"second@example.net"};
    struct qstore_msg m = {.time = t,
                           .sid = (char *)"0000000001",
                           .client_addr = (char *)"192.0.2.1",
                           .sender = (char *)sender,
                           .rcpts = rc,
                           .nrcpts = 2,
                           .size = size,
                           .plugin = (char *)plugin,
                           .reason = (char *)reason,
                           .score = 7.5,
                           .symbols = (char *)"A,B",
                           .record = (char *)"{\"plugin\":\"x\"}",
                           .path = (char *)body(file, size)};
    int64_t id = 0;
    assert_int_equal(qstore_add(qs, &m, &id), 0);
    assert_true(id > 0);
    return id;
}

static void test_add_get_list_filters(void **state)
{
    (void)state;
    struct qstore *qs = open_qs();
    int64_t a =
        add(qs, 1000, "Alice@Example.com", "bob@example.net", "spam", "score 9", 10, "a.eml");
    int64_t b =
        add(qs, 2000, "mallory@example.org", "carol@example.net", "virus", "Eicar", 20, "b.eml");
    int64_t c = add(qs, 3000, "", "bob@example.net", "spam", "", 30, "c.eml");

    struct qstore_msg m;
    assert_int_equal(qstore_get(qs, b, &m), 0);
    assert_string_equal(m.sender, "mallory@example.org");
    assert_int_equal(m.nrcpts, 2);
    assert_string_equal(m.rcpts[0], "carol@example.net");
    assert_string_equal(m.rcpts[1], "second@example.net");
    assert_string_equal(m.plugin, "virus");
    assert_int_equal(m.status, QSTORE_HELD);
    assert_int_equal(m.size, 20);
    assert_true(m.score == 7.5);
    assert_non_null(strstr(m.path, "/b.eml"));
    assert_string_equal(m.record, "{\"plugin\":\"x\"}");
    qstore_msg_free(&m);
    assert_int_equal(qstore_get(qs, 999, &m), QSTORE_ENOTFOUND);

    struct qstore_filter f = {.status = -1};
    struct qstore_msg *v;
    size_t n, total;
    assert_int_equal(qstore_list(qs, &f, &v, &n, &total), 0);
    assert_int_equal(n, 3);
    assert_int_equal(total, 3);
    assert_int_equal(v[0].id, c); /* newest first */
    assert_int_equal(v[2].id, a);
    qstore_msgs_free(v, n);

    f.sender = "alice@EXAMPLE"; /* case-insensitive substring */
    assert_int_equal(qstore_list(qs, &f, &v, &n, &total), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, a);
    qstore_msgs_free(v, n);

    f = (struct qstore_filter){.status = -1, .rcpt = "bob@", .plugin = "spam"};
    assert_int_equal(qstore_list(qs, &f, &v, &n, &total), 0);
    assert_int_equal(n, 2);
    qstore_msgs_free(v, n);

    f = (struct qstore_filter){.status = -1, .reason = "eic"};
    assert_int_equal(qstore_list(qs, &f, &v, &n, &total), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, b);
    qstore_msgs_free(v, n);

    /* LIKE wildcards are plain characters */
    f = (struct qstore_filter){.status = -1, .sender = "%"};
    assert_int_equal(qstore_list(qs, &f, &v, &n, &total), 0);
    assert_int_equal(n, 0);
    qstore_msgs_free(v, n);

    f = (struct qstore_filter){.status = -1, .since = 1500, .until = 3000};
    assert_int_equal(qstore_list(qs, &f, &v, &n, &total), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, b);
    qstore_msgs_free(v, n);

    /* paging: total counts every match */
    f = (struct qstore_filter){.status = -1, .limit = 2, .offset = 2, .oldest_first = true};
    assert_int_equal(qstore_list(qs, &f, &v, &n, &total), 0);
    assert_int_equal(n, 1);
    assert_int_equal(total, 3);
    assert_int_equal(v[0].id, c);
    qstore_msgs_free(v, n);

    f = (struct qstore_filter){.status = -1, .text = "192.0.2"};
    assert_int_equal(qstore_list(qs, &f, &v, &n, &total), 0);
    assert_int_equal(n, 3);
    qstore_msgs_free(v, n);

    assert_int_equal(qstore_has_path(qs, "/elsewhere/a.eml"), 1);
    assert_int_equal(qstore_has_path(qs, "z.eml"), 0);
    qstore_close(qs);
}

/* Set a row's status time by hand (the stuck-release case). */
static void age_status(int64_t id, int64_t t)
{
    char path[300], sql[200];
    sqlite3 *h;
    snprintf(path, sizeof path, "%s/" QSTORE_INDEX_NAME, dir);
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    snprintf(sql, sizeof sql, "UPDATE msgs SET status_time=%lld WHERE id=%lld", (long long)t,
             (long long)id);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
}

static void test_claim_once_settle(void **state)
{
    (void)state;
    struct qstore *qs = open_qs();
    struct qstore *qs2 = open_qs(); /* another process, as far as SQLite cares */
    int64_t id = add(qs, 1000, "a@x", "b@y", "spam", "", 5, "r.eml");
    enum qstore_status now = QSTORE_HELD;
    assert_int_equal(qstore_claim(qs, id, false, &now), 0);
    assert_int_equal(qstore_claim(qs2, id, false, &now), QSTORE_ESTATE);
    assert_int_equal(now, QSTORE_RELEASING);
    /* force does not take a release that is still going on */
    assert_int_equal(qstore_claim(qs2, id, true, &now), QSTORE_ESTATE);
    assert_int_equal(qstore_delete(qs2, id), QSTORE_ESTATE);
    /* a refusal puts it back: claimable again */
    assert_int_equal(qstore_settle(qs, id, false, "550 no"), 0);
    assert_int_equal(qstore_claim(qs2, id, false, &now), 0);
    /* a crash left it releasing long ago: only force takes it */
    age_status(id, (int64_t)time(NULL) - QSTORE_STUCK_SECS - 10);
    assert_int_equal(qstore_claim(qs, id, false, &now), QSTORE_ESTATE);
    assert_int_equal(qstore_claim(qs, id, true, &now), 0);
    assert_int_equal(qstore_settle(qs, id, true, "250 ok"), 0);
    struct qstore_msg m;
    assert_int_equal(qstore_get(qs, id, &m), 0);
    assert_int_equal(m.status, QSTORE_RELEASED);
    assert_string_equal(m.note, "250 ok");
    assert_int_equal(access(m.path, F_OK), -1); /* the body went */
    qstore_msg_free(&m);
    assert_int_equal(qstore_claim(qs2, id, true, &now), QSTORE_ESTATE);
    assert_int_equal(now, QSTORE_RELEASED);
    assert_int_equal(qstore_settle(qs2, id, true, "again"), QSTORE_ESTATE);
    assert_int_equal(qstore_claim(qs, 12345, false, &now), QSTORE_ENOTFOUND);
    qstore_close(qs2);
    qstore_close(qs);
}

static void test_delete(void **state)
{
    (void)state;
    struct qstore *qs = open_qs();
    int64_t id = add(qs, 1000, "a@x", "b@y", "spam", "", 5, "d.eml");
    char path[300];
    snprintf(path, sizeof path, "%s/d.eml", dir);
    assert_int_equal(qstore_delete(qs, id), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(qstore_delete(qs, id), QSTORE_ESTATE);
    assert_int_equal(qstore_delete(qs, 777), QSTORE_ENOTFOUND);
    enum qstore_status now;
    assert_int_equal(qstore_claim(qs, id, true, &now), QSTORE_ESTATE);
    assert_int_equal(now, QSTORE_DELETED);
    struct qstore_counts c;
    assert_int_equal(qstore_counts(qs, &c), 0);
    assert_int_equal(c.n[QSTORE_DELETED], 1);
    assert_int_equal(c.bytes[QSTORE_DELETED], 5);
    assert_int_equal(c.n[QSTORE_HELD], 0);
    qstore_close(qs);
}

static void test_expire_age_size_history(void **state)
{
    (void)state;
    struct qstore *qs = open_qs();
    int64_t now = (int64_t)time(NULL);
    int64_t old = add(qs, now - 1000, "a@x", "b@y", "spam", "", 100, "e1.eml");
    int64_t mid = add(qs, now - 500, "a@x", "b@y", "spam", "", 100, "e2.eml");
    int64_t young = add(qs, now - 10, "a@x", "b@y", "spam", "", 100, "e3.eml");
    int64_t gone = add(qs, now - 2000, "a@x", "b@y", "spam", "", 1, "e4.eml");
    assert_int_equal(qstore_delete(qs, gone), 0);
    age_status(gone, now - 2000);
    struct qstore_counts x;
    /* by age: only the one older than 800 s; the old deleted row leaves */
    assert_int_equal(qstore_expire(qs, now - 800, 0, &x), 0);
    assert_int_equal(x.n[QSTORE_EXPIRED], 1);
    assert_int_equal(x.bytes[QSTORE_EXPIRED], 100);
    struct qstore_msg m;
    assert_int_equal(qstore_get(qs, old, &m), 0);
    assert_int_equal(m.status, QSTORE_EXPIRED);
    assert_int_equal(access(m.path, F_OK), -1);
    qstore_msg_free(&m);
    assert_int_equal(qstore_get(qs, gone, &m), QSTORE_ENOTFOUND);
    /* by size: 200 held bytes, limit 150: the oldest goes */
    assert_int_equal(qstore_expire(qs, 0, 150, &x), 0);
    assert_int_equal(x.n[QSTORE_EXPIRED], 1);
    assert_int_equal(qstore_get(qs, mid, &m), 0);
    assert_int_equal(m.status, QSTORE_EXPIRED);
    qstore_msg_free(&m);
    assert_int_equal(qstore_get(qs, young, &m), 0);
    assert_int_equal(m.status, QSTORE_HELD);
    assert_int_equal(access(m.path, F_OK), 0);
    qstore_msg_free(&m);
    struct qstore_counts c;
    assert_int_equal(qstore_counts(qs, &c), 0);
    assert_int_equal(c.n[QSTORE_HELD], 1);
    assert_int_equal(c.n[QSTORE_EXPIRED], 2);
    assert_int_equal(c.bytes[QSTORE_EXPIRED], 200);
    qstore_close(qs);
}

static const char head[] =
    "X-Sluice-Quarantine: sid=00000042 client=2001:db8::1\r\n"
    "X-Sluice-Envelope-From: <s@example.com>\r\n"
    "X-Sluice-Envelope-To: <r1@example.net>\r\n"
    "X-Sluice-Envelope-To: <r2@example.net>\r\n"
    "X-Sluice-Decision: {\"sid\":\"00000042\",\"client_name\":\"mx.example\",\"helo\":\"h\\\"q\","
    "\"plugin\":\"spam\",\"reason\":\"line\\u0001x\",\"score\":12.500,\"symbols\":[{\"name\":"
    "\"S1\",\"score\":1.000,\"plugin\":\"spam\"},{\"name\":\"S2\",\"score\":2.000,\"plugin\":"
    "\"spam\"}]}\r\n"
    "From: someone\r\n\r\nbody\r\n";

static void test_parse_head(void **state)
{
    (void)state;
    struct qstore_msg m;
    long n = qstore_parse_head(head, sizeof head - 1, &m);
    assert_true(n > 0);
    assert_memory_equal(head + n, "From: someone", 13);
    assert_string_equal(m.sid, "00000042");
    assert_string_equal(m.client_addr, "2001:db8::1");
    assert_string_equal(m.sender, "s@example.com");
    assert_int_equal(m.nrcpts, 2);
    assert_string_equal(m.rcpts[1], "r2@example.net");
    assert_string_equal(m.plugin, "spam");
    assert_string_equal(m.helo, "h\"q");
    assert_string_equal(m.reason, "line\001x");
    assert_string_equal(m.client_name, "mx.example");
    assert_true(m.score == 12.5);
    assert_string_equal(m.symbols, "S1,S2");
    qstore_msg_free(&m);
    /* not a quarantine file: nothing allocated */
    static const char plain[] = "From: a\r\nX-Sluice-Quarantine: sid=1\r\n\r\n";
    assert_int_equal(qstore_parse_head(plain, sizeof plain - 1, &m), -1);
    static const char other[] = "X-Sluice-Envelope-From: <a>\r\n";
    assert_int_equal(qstore_parse_head(other, sizeof other - 1, &m), -1);
    /* cut short anywhere: never reads past the end */
    for (size_t i = 0; i < sizeof head - 1; i++) {
        char *cp = malloc(i ? i : 1);
        memcpy(cp, head, i);
        if (qstore_parse_head(cp, i, &m) >= 0)
            qstore_msg_free(&m);
        free(cp);
    }
}

/* The head ends with sluice's X-Sluice-Decision line: X-Sluice-* fields
 * of the message's own are message, not envelope. */
static void test_parse_head_ends_at_decision(void **state)
{
    (void)state;
    static const char file[] = "X-Sluice-Quarantine: sid=7 client=192.0.2.1\r\n"
                               "X-Sluice-Envelope-From: <real@example.com>\r\n"
                               "X-Sluice-Envelope-To: <y@example.net>\r\n"
                               "X-Sluice-Decision: {\"plugin\":\"spam\"}\r\n"
                               "X-Sluice-Envelope-To: <evil@example.net>\r\n"
                               "X-Sluice-Envelope-From: <spoof@example.com>\r\n"
                               "X-Sluice-Decision: {\"plugin\":\"none\"}\r\n"
                               "Subject: hi\r\n\r\nbody\r\n";
    struct qstore_msg m;
    long n = qstore_parse_head(file, sizeof file - 1, &m);
    assert_true(n > 0);
    assert_memory_equal(file + n, "X-Sluice-Envelope-To: <evil", 27);
    assert_string_equal(m.sender, "real@example.com");
    assert_int_equal(m.nrcpts, 1);
    assert_string_equal(m.rcpts[0], "y@example.net");
    assert_string_equal(m.plugin, "spam");
    qstore_msg_free(&m);
}

static void test_reindex(void **state)
{
    (void)state;
    struct qstore *qs = open_qs();
    char path[300];
    snprintf(path, sizeof path, "%s/1700000000-00000042.eml", dir);
    FILE *f = fopen(path, "w");
    fputs(head, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/junk.eml", dir);
    f = fopen(path, "w");
    fputs("From: a\r\n\r\nno head\r\n", f);
    fclose(f);
    size_t added = 0, bad = 0;
    assert_int_equal(qstore_reindex(qs, &added, &bad), 0);
    assert_int_equal(added, 1);
    assert_int_equal(bad, 1);
    assert_int_equal(qstore_reindex(qs, &added, &bad), 0);
    assert_int_equal(added, 0);
    struct qstore_filter flt = {.status = QSTORE_HELD};
    struct qstore_msg *v;
    size_t n;
    assert_int_equal(qstore_list(qs, &flt, &v, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].time, 1700000000);
    assert_string_equal(v[0].plugin, "spam");
    assert_int_equal(v[0].size, sizeof head - 1);
    qstore_msgs_free(v, n);
    qstore_close(qs);
}

static void test_newer_schema_refused(void **state)
{
    (void)state;
    qstore_close(open_qs());
    char path[300];
    sqlite3 *h;
    snprintf(path, sizeof path, "%s/" QSTORE_INDEX_NAME, dir);
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "PRAGMA user_version=99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    char err[256];
    assert_null(qstore_open(dir, true, err, sizeof err));
    assert_non_null(strstr(err, "schema version 99"));
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

/* ---- two writers, and racing claims ---------------------------------------- */

#define PER_THREAD 150

struct writer {
    int no;
    int64_t ids[PER_THREAD];
    int claimed;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct qstore *qs = open_qs();
    for (int i = 0; i < PER_THREAD; i++) {
        char name[64];
        snprintf(name, sizeof name, "w%d-%d.eml", w->no, i);
        w->ids[i] = add(qs, 1000 + i, "a@x", "b@y", "spam", "", 1, name);
    }
    qstore_close(qs);
    return NULL;
}

static void *claimer_main(void *arg)
{
    struct writer *w = arg;
    struct qstore *qs = open_qs();
    for (int64_t id = 1; id <= 2 * PER_THREAD; id++) {
        enum qstore_status now;
        int rc = qstore_claim(qs, id, false, &now);
        if (rc == 0)
            w->claimed++;
        else
            assert_int_equal(rc, QSTORE_ESTATE);
    }
    qstore_close(qs);
    return NULL;
}

static void test_two_writers_and_racing_claims(void **state)
{
    (void)state;
    qstore_close(open_qs()); /* the schema first: both threads then only write rows */
    struct writer w[2] = {{.no = 0}, {.no = 1}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    struct qstore *qs = open_qs();
    struct qstore_counts c;
    assert_int_equal(qstore_counts(qs, &c), 0);
    assert_int_equal(c.n[QSTORE_HELD], 2 * PER_THREAD);
    for (int i = 0; i < PER_THREAD; i++)
        assert_true(w[0].ids[i] != w[1].ids[i]);
    /* every row claimed by exactly one of two racing claimers */
    struct writer r[2] = {{.no = 0}, {.no = 1}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, claimer_main, &r[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(r[0].claimed + r[1].claimed, 2 * PER_THREAD);
    assert_int_equal(qstore_counts(qs, &c), 0);
    assert_int_equal(c.n[QSTORE_RELEASING], 2 * PER_THREAD);
    qstore_close(qs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_get_list_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_once_settle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_age_size_history, setup, teardown),
        cmocka_unit_test(test_parse_head),
        cmocka_unit_test(test_parse_head_ends_at_decision),
        cmocka_unit_test_setup_teardown(test_reindex, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_writers_and_racing_claims, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
