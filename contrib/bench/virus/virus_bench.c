/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virus_bench: scans per second of the virus plugin's two backends on the
 * same messages: libclamav in process (vir_engine, clean cache disabled so
 * every scan does the work) and clamd over INSTREAM (vir_clamd).
 *
 *   virus_bench --db DIR [--clamd unix:/path|IP:port] [--seconds N]
 *               [--threads N] [--size BYTES] [--infected]
 *               [--kind zip|text|attach] [--count N] [--tmpdir DIR]
 *               [--debug] [--dump FILE]
 *
 * --kind picks the message, of about --size bytes:
 *   zip     (default) a multipart mail: a text part and a base64 attachment
 *           (a deflated zip of pseudo-random text, so the MIME and archive
 *           parsers run);
 *   text    a plain-text mail like smtp-source's or sluice-bench's: a
 *           header block and lines of 76 characters of words;
 *   attach  the text mail made multipart/mixed with a small (1 KiB)
 *           base64 application/octet-stream attachment.
 * --infected puts EICAR in the zip member (zip), the body (text) or the
 * attachment (attach). --count N does exactly N scans on one thread and
 * prints the user+system CPU time per scan (for callgrind, strace, perf).
 * --tmpdir sets the engine's scratch directory (default: one made as the
 * plugin makes it, on tmpfs when there is one, removed at exit; its path
 * is printed on stderr); --debug turns on
 * libclamav's debug log (stderr), which names every pass; --dump writes
 * the message to FILE. Prints one line per backend:
 *   backend=libclamav size=4096 threads=2 scans=... seconds=... scans_per_s=...
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <zlib.h>

#include <clamav.h>

#include "vir_clamd.h"
#include "vir_engine.h"
#include "vir_tmp.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t b64(const unsigned char *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, col = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
        if ((col += 4) >= 76) {
            out[o++] = '\r';
            out[o++] = '\n';
            col = 0;
        }
    }
    out[o] = '\0';
    return o;
}

static uint32_t crc_of(const unsigned char *p, size_t n)
{
    return (uint32_t)crc32(0L, p, (uInt)n);
}

static void le16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void le32(unsigned char *p, uint32_t v)
{
    le16(p, v & 0xffff);
    le16(p + 2, v >> 16);
}

/* A one-member zip (deflate) of `data`; returns its length in out. */
static size_t make_zip(const unsigned char *data, size_t n, unsigned char *out, size_t outsz)
{
    static const char name[] = "notes.txt";
    size_t nl = sizeof name - 1;
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    unsigned char *comp = out + 30 + nl;
    z.next_in = (unsigned char *)data;
    z.avail_in = (uInt)n;
    z.next_out = comp;
    z.avail_out = (uInt)(outsz - 30 - nl - 46 - nl - 22);
    deflate(&z, Z_FINISH);
    size_t clen = z.total_out;
    deflateEnd(&z);
    uint32_t crc = crc_of(data, n);
    unsigned char *h = out;
    le32(h, 0x04034b50);
    le16(h + 4, 20);
    le16(h + 6, 0);
    le16(h + 8, 8);
    le16(h + 10, 0);
    le16(h + 12, 0x21);
    le32(h + 14, crc);
    le32(h + 18, (uint32_t)clen);
    le32(h + 22, (uint32_t)n);
    le16(h + 26, (unsigned)nl);
    le16(h + 28, 0);
    memcpy(h + 30, name, nl);
    unsigned char *c = comp + clen;
    le32(c, 0x02014b50);
    le16(c + 4, 20);
    le16(c + 6, 20);
    le16(c + 8, 0);
    le16(c + 10, 8);
    le16(c + 12, 0);
    le16(c + 14, 0x21);
    le32(c + 16, crc);
    le32(c + 20, (uint32_t)clen);
    le32(c + 24, (uint32_t)n);
    le16(c + 28, (unsigned)nl);
    memset(c + 30, 0, 16);
    memcpy(c + 46, name, nl);
    unsigned char *e = c + 46 + nl;
    le32(e, 0x06054b50);
    memset(e + 4, 0, 4);
    le16(e + 8, 1);
    le16(e + 10, 1);
    le32(e + 12, (uint32_t)(46 + nl));
    le32(e + 16, (uint32_t)(c - out));
    le16(e + 20, 0);
    return (size_t)(e + 22 - out);
}

static const char eicar_parts[4][40] = {"X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-",
                                        "ANTIVIRUS-TEST-", "FILE!$H+H*"};

static void eicar(char *out, size_t n)
{
    snprintf(out, n, "%s%s%s%s", eicar_parts[0], eicar_parts[1], eicar_parts[2], eicar_parts[3]);
}

/* A mail of about `size` bytes with a zipped text attachment. */
static char *make_mail(size_t size, bool infected, size_t *len)
{
    size_t textn = size * 10 + 64;
    unsigned char *text = malloc(textn);
    uint32_t x = 12345;
    static const char *const words[] = {"mail ", "filter ", "proxy ", "sluice ", "scan ",
                                        "report ", "quarterly ", "numbers\r\n"};
    size_t n = 0;
    while (n + 16 < textn) {
        x = x * 1103515245u + 12345u;
        const char *w = words[(x >> 16) % 8];
        memcpy(text + n, w, strlen(w));
        n += strlen(w);
        if ((x >> 8) % 2 == 0) { /* some entropy so deflate does not collapse it */
            n += (size_t)snprintf((char *)text + n, 16, "%u ", x % 100000);
        }
    }
    if (infected) {
        char ei[80];
        eicar(ei, sizeof ei);
        memcpy(text, ei, strlen(ei));
    }
    unsigned char *zip = malloc(textn + 1024);
    char *enc = malloc(textn * 2 + 1024);
    char *m = malloc(textn * 3 + 4096);
    /* Grow the text until the mail reaches the size asked for. */
    size_t use = 64;
    size_t ml = 0;
    for (;;) {
        size_t zl = make_zip(text, use, zip, textn + 1024);
        b64(zip, zl, enc);
        ml = (size_t)sprintf(m,
                             "From: bench@example.com\r\nTo: rcpt@example.net\r\n"
                             "Subject: benchmark\r\nMIME-Version: 1.0\r\n"
                             "Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n"
                             "--BB\r\nContent-Type: text/plain\r\n\r\nSee the attached notes.\r\n"
                             "--BB\r\nContent-Type: application/zip; name=\"notes.zip\"\r\n"
                             "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--BB--\r\n",
                             enc);
        if (ml >= size || use >= n)
            break;
        /* Scale by how far off we are; overshoots by a few percent at most. */
        size_t next = (size_t)((double)use * (double)size / (double)ml) + 16;
        use = next > n ? n : next;
    }
    free(text);
    free(zip);
    free(enc);
    *len = ml;
    return m;
}

/* A text mail of about `size` bytes (sluice-bench's shape); with `attach`,
 * multipart/mixed with a 1 KiB base64 attachment (EICAR in it when
 * infected, else in the body when infected). */
static char *make_text_mail(size_t size, bool infected, bool attach, size_t *len)
{
    static const char words[] =
        "the quick brown fox jumps over a lazy dog while sluice relays mail "
        "between client and upstream without a queue of its own and every "
        "filter plugin sees the message once before it is forwarded ";
    char *m = malloc(size + 8192);
    size_t o = (size_t)sprintf(m, "From: Bench Sender <bench@example.com>\r\n"
                                  "To: Bench Recipient <rcpt@example.net>\r\n"
                                  "Subject: virus_bench test message\r\n"
                                  "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
                                  "Message-ID: <000000000001.virus-bench@bench.invalid>\r\n"
                                  "MIME-Version: 1.0\r\n");
    if (attach)
        o += (size_t)sprintf(m + o, "Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n"
                                    "--BB\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n");
    else
        o += (size_t)sprintf(m + o, "Content-Type: text/plain; charset=us-ascii\r\n"
                                    "Content-Transfer-Encoding: 7bit\r\n\r\n");
    if (infected && !attach) {
        eicar(m + o, 80);
        o += strlen(m + o);
        m[o++] = '\r';
        m[o++] = '\n';
    }
    size_t tail = attach ? 1600 : 0; /* room for the attachment */
    size_t w = 0;
    while (o + 78 + tail <= size) {
        for (size_t i = 0; i < 76; i++)
            m[o + i] = words[w++ % (sizeof words - 1)];
        o += 76;
        m[o++] = '\r';
        m[o++] = '\n';
    }
    if (attach) {
        unsigned char bin[1024];
        uint32_t x = 777;
        for (size_t i = 0; i < sizeof bin; i++) {
            x = x * 1103515245u + 12345u;
            bin[i] = (unsigned char)(x >> 16);
        }
        if (infected) {
            char ei[80];
            eicar(ei, sizeof ei);
            memcpy(bin, ei, strlen(ei));
        }
        o += (size_t)sprintf(m + o,
                             "--BB\r\nContent-Type: application/octet-stream; "
                             "name=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n"
                             "Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n");
        o += b64(bin, sizeof bin, m + o);
        o += (size_t)sprintf(m + o, "\r\n--BB--\r\n");
    }
    m[o] = '\0';
    *len = o;
    return m;
}

static void bench_log(void *ud, int level, const char *msg)
{
    (void)ud;
    fprintf(stderr, "[%d] %s\n", level, msg);
}

/* User and system CPU seconds of the process so far. */
static void cpu_s(double *user, double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

struct job {
    struct vir_engine *e;
    const struct vir_clamd_addr *clamd;
    const char *msg;
    size_t len;
    double until;
    atomic_ulong scans;
    atomic_ulong unexpected;
    enum vir_kind want;
};

static void *worker(void *arg)
{
    struct job *j = arg;
    while (now_s() < j->until) {
        struct vir_result r;
        if (j->e)
            vir_engine_scan(j->e, j->msg, j->len, &r);
        else
            vir_clamd_scan(j->clamd, j->msg, j->len, 2000, 30000, &r);
        if (r.kind != j->want)
            atomic_fetch_add(&j->unexpected, 1);
        atomic_fetch_add(&j->scans, 1);
    }
    return NULL;
}

static void run(const char *backend, struct vir_engine *e, const struct vir_clamd_addr *a,
                const char *msg, size_t len, enum vir_kind want, int threads, double secs,
                unsigned long count)
{
    struct job j = {.e = e, .clamd = a, .msg = msg, .len = len, .want = want};
    /* one warm-up scan, not counted */
    struct vir_result r;
    if (e)
        vir_engine_scan(e, msg, len, &r);
    else
        vir_clamd_scan(a, msg, len, 2000, 30000, &r);
    if (r.kind != want) {
        fprintf(stderr, "%s: warm-up scan gave %s %s %s\n", backend, vir_result_kind_name(r.kind),
                r.name, r.detail);
    }
    if (count) {
        double u0, s0, u1, s1, t0 = now_s();
        cpu_s(&u0, &s0);
        unsigned long bad = 0;
        for (unsigned long i = 0; i < count; i++) {
            if (e)
                vir_engine_scan(e, msg, len, &r);
            else
                vir_clamd_scan(a, msg, len, 2000, 30000, &r);
            bad += r.kind != want;
        }
        double el = now_s() - t0;
        cpu_s(&u1, &s1);
        printf("backend=%s size=%zu scans=%lu seconds=%.2f scans_per_s=%.0f cpu_ms_per_scan=%.3f "
               "(user %.3f sys %.3f) unexpected=%lu\n",
               backend, len, count, el, (double)count / el,
               (u1 - u0 + s1 - s0) * 1000.0 / (double)count, (u1 - u0) * 1000.0 / (double)count,
               (s1 - s0) * 1000.0 / (double)count, bad);
        fflush(stdout);
        return;
    }
    pthread_t t[64];
    double t0 = now_s();
    j.until = t0 + secs;
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, &j);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double el = now_s() - t0;
    unsigned long n = atomic_load(&j.scans);
    printf("backend=%s size=%zu threads=%d scans=%lu seconds=%.2f scans_per_s=%.0f "
           "ms_per_scan=%.2f unexpected=%lu\n",
           backend, len, threads, n, el, (double)n / el, el * 1000.0 * threads / (double)n,
           atomic_load(&j.unexpected));
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *db = NULL, *clamd = NULL, *kind = "zip", *tmpdir = NULL, *dump = NULL;
    unsigned long count = 0;
    bool debug = false;
    double secs = 3;
    int threads = 2;
    size_t size = 4096;
    bool infected = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc)
            db = argv[++i];
        else if (!strcmp(argv[i], "--clamd") && i + 1 < argc)
            clamd = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            secs = atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--infected"))
            infected = true;
        else if (!strcmp(argv[i], "--kind") && i + 1 < argc)
            kind = argv[++i];
        else if (!strcmp(argv[i], "--count") && i + 1 < argc)
            count = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--tmpdir") && i + 1 < argc)
            tmpdir = argv[++i];
        else if (!strcmp(argv[i], "--dump") && i + 1 < argc)
            dump = argv[++i];
        else if (!strcmp(argv[i], "--debug"))
            debug = true;
        else {
            fprintf(stderr,
                    "usage: %s --db DIR [--clamd ADDR] [--seconds N] [--threads N] "
                    "[--size BYTES] [--infected] [--kind zip|text|attach] [--count N] "
                    "[--tmpdir DIR] [--debug] [--dump FILE]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!db || threads < 1 || threads > 64) {
        fprintf(stderr, "virus_bench: --db DIR is required (threads 1-64)\n");
        return 2;
    }
    size_t len;
    char *msg;
    if (!strcmp(kind, "zip"))
        msg = make_mail(size, infected, &len);
    else if (!strcmp(kind, "text") || !strcmp(kind, "attach"))
        msg = make_text_mail(size, infected, !strcmp(kind, "attach"), &len);
    else {
        fprintf(stderr, "virus_bench: --kind zip, text or attach\n");
        return 2;
    }
    if (dump) {
        FILE *f = fopen(dump, "wb");
        if (!f || fwrite(msg, 1, len, f) != len || fclose(f) != 0) {
            fprintf(stderr, "virus_bench: cannot write %s\n", dump);
            return 1;
        }
    }
    if (debug)
        cl_debug();
    struct vir_tmp own = {.path = ""};
    if (!tmpdir) {
        char why[600];
        if (vir_tmp_make(&own, why, sizeof why) < 0) {
            fprintf(stderr, "virus_bench: %s\n", why);
            return 1;
        }
        tmpdir = own.path;
        fprintf(stderr, "virus_bench: scratch directory %s (%s)\n", own.path,
                own.memory ? "memory-backed" : "on disk");
    }
    enum vir_kind want = infected ? VIR_VIRUS : VIR_CLEAN;

    struct vir_engine_opts o = {
        .database = db,
        .cache = false, /* every scan does the work */
        .max_scan_size = 100u << 20,
        .max_file_size = 100u << 20,
        .max_recursion = 16,
        .max_files = 10000,
        .max_scan_time_ms = 60000,
        .tmpdir = tmpdir,
        .log = debug ? bench_log : NULL,
    };
    struct vir_engine *e = vir_engine_new(&o);
    if (!e || !vir_engine_signatures(e)) {
        fprintf(stderr, "virus_bench: no signatures in %s\n", db);
        if (own.path[0])
            vir_tmp_remove(own.path);
        return 1;
    }
    run("libclamav", e, NULL, msg, len, want, threads, secs, count);
    if (clamd) {
        struct vir_clamd_addr a;
        const char *why;
        if (vir_clamd_parse_addr(clamd, &a, &why) < 0) {
            fprintf(stderr, "virus_bench: --clamd %s: %s\n", clamd, why);
            return 2;
        }
        run("clamd", NULL, &a, msg, len, want, threads, secs, count);
    }
    vir_engine_free(e);
    if (own.path[0])
        vir_tmp_remove(own.path);
    free(msg);
    return 0;
}
