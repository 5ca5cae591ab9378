/* SPDX-License-Identifier: GPL-2.0-or-later */
/* console_page: the console's pages; see console_page.h. */
#include "console_page.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "console_html.h"

const char console_page_css[] =
    "*{box-sizing:border-box}\n"
    "body{margin:0;font:16px/1.45 system-ui,sans-serif;color:#1b1f24;background:#f6f7f9}\n"
    "a{color:#0b57d0}\n"
    ":focus-visible{outline:3px solid #f59e0b;outline-offset:2px}\n"
    ".skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:#fff;padding:4px}"
    "\n"
    "header{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;padding:.6rem 1rem;"
    "background:#12324a;color:#fff}\n"
    "header a{color:#fff}header .brand{font-weight:700;margin:0}\n"
    "header ul{list-style:none;display:flex;gap:1rem;margin:0;padding:0}\n"
    "header form{margin-left:auto}\n"
    "main{padding:1rem;max-width:80rem}\n"
    "fieldset{display:flex;flex-wrap:wrap;gap:.6rem 1rem;border:1px solid #c8ccd2;padding:.8rem}\n"
    "fieldset div{display:flex;flex-direction:column}\n"
    "input,select,button{font:inherit;padding:.3rem .5rem}\n"
    "button{cursor:pointer;border:1px solid #12324a;background:#12324a;color:#fff;"
    "border-radius:3px}\n"
    "button.danger{background:#a50e0e;border-color:#a50e0e}\n"
    "table{border-collapse:collapse;width:100%;background:#fff}\n"
    "th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #dde1e6;"
    "vertical-align:top}\n"
    "td.num{text-align:right}\n"
    "pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#fff;border:1px solid #dde1e6;"
    "padding:.6rem;max-height:40rem;overflow:auto}\n"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}\n"
    "dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}\n"
    ".notice{padding:.5rem .8rem;background:#e6f4ea;border-left:4px solid #1e8e3e}\n"
    ".notice.error{background:#fce8e6;border-color:#d93025}\n"
    ".actions{display:flex;gap:1rem}\n"
    "nav.pages{display:flex;gap:1rem;margin-top:1rem}\n";

#define P(s) buf_puts(b, s)
#define E(s) console_html_escape_str(b, s)

static void console_page__head(buf_t *b, const struct console_page_ctx *ctx, const char *title)
{
    P("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<meta name=\"referrer\" content=\"no-referrer\"><title>");
    E(title);
    P(" - sluice quarantine</title><link rel=\"stylesheet\" href=\"/console.css\"></head>\n"
      "<body><a class=\"skip\" href=\"#main\">Skip to content</a>\n<header>"
      "<p class=\"brand\">sluice quarantine</p>");
    if (ctx->user) {
        P("<nav aria-label=\"Main\"><ul><li><a href=\"/\">Held messages</a></li>");
        if (ctx->dashboard_url) {
            P("<li><a href=\"");
            E(ctx->dashboard_url);
            P("\">Live dashboard</a></li>");
        }
        P("</ul></nav><form method=\"post\" action=\"/logout\">"
          "<input type=\"hidden\" name=\"csrf\" value=\"");
        E(ctx->csrf);
        P("\"><button type=\"submit\">Sign out ");
        E(ctx->user);
        P("</button></form>");
    }
    P("</header>\n<main id=\"main\">\n");
}

static void console_page__notice(buf_t *b, const struct console_page_ctx *ctx)
{
    if (!ctx->notice)
        return;
    P(ctx->notice_error ? "<p role=\"alert\" class=\"notice error\">"
                        : "<p role=\"status\" class=\"notice\">");
    E(ctx->notice);
    P("</p>\n");
}

static int console_page__end(buf_t *b)
{
    return P("</main>\n</body></html>\n") == 0 ? 0 : -ENOMEM;
}

static void console_page__time(buf_t *b, long long t)
{
    char s[40];
    struct tm tm;
    time_t tt = (time_t)t;
    if (gmtime_r(&tt, &tm) && strftime(s, sizeof s, "%Y-%m-%d %H:%M:%S UTC", &tm))
        P(s);
}

static void console_page__size(buf_t *b, uint64_t n)
{
    if (n < 10240)
        buf_printf(b, "%" PRIu64 " B", n);
    else if (n < 10 * 1024 * 1024)
        buf_printf(b, "%" PRIu64 " KiB", n / 1024);
    else
        buf_printf(b, "%" PRIu64 " MiB", n / (1024 * 1024));
}

int console_page_login(buf_t *b, const struct console_page_ctx *ctx, const char *error)
{
    console_page__head(b, ctx, "Sign in");
    P("<h1>Sign in</h1>\n");
    console_page__notice(b, ctx);
    if (error) {
        P("<p role=\"alert\" class=\"notice error\">");
        E(error);
        P("</p>\n");
    }
    P("<form method=\"post\" action=\"/login\"><fieldset><legend>Quarantine console</legend>"
      "<div><label for=\"user\">User name</label><input id=\"user\" name=\"user\" "
      "autocomplete=\"username\" required maxlength=\"63\"></div>"
      "<div><label for=\"password\">Password</label><input id=\"password\" name=\"password\" "
      "type=\"password\" autocomplete=\"current-password\" required maxlength=\"1024\"></div>"
      "<div><button type=\"submit\">Sign in</button></div></fieldset></form>\n");
    return console_page__end(b);
}

/* A query string for the same search on another page. */
static void console_page__query(buf_t *b, const struct console_page_search *s, size_t page)
{
    const char *names[] = {"sender", "rcpt", "plugin", "reason", "since", "until", "status"};
    const char *vals[] = {s->sender, s->rcpt, s->plugin, s->reason, s->since, s->until, s->status};
    P("/?");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!vals[i] || !*vals[i])
            continue;
        P(names[i]);
        P("=");
        buf_t enc = BUF_INIT;
        console_html_urlenc(&enc, vals[i]);
        console_html_escape(b, enc.ptr ? enc.ptr : "", enc.len);
        buf_free(&enc);
        P("&amp;");
    }
    buf_printf(b, "page=%zu", page);
}

static void console_page__field(buf_t *b, const char *id, const char *label, const char *type,
                                const char *value, const char *hint)
{
    buf_printf(b, "<div><label for=\"f-%s\">%s</label><input id=\"f-%s\" name=\"%s\" type=\"%s\"",
               id, label, id, id, type);
    if (hint) {
        P(" placeholder=\"");
        E(hint);
        P("\"");
    }
    P(" value=\"");
    E(value);
    P("\"></div>");
}

int console_page_list(buf_t *b, const struct console_page_ctx *ctx,
                      const struct console_page_search *s, const struct qstore_msg *v, size_t n,
                      size_t total)
{
    static const char *const statuses[][2] = {
        {"held", "Held"},       {"released", "Released"}, {"releasing", "Releasing"},
        {"deleted", "Deleted"}, {"expired", "Expired"},   {"any", "Any status"},
    };
    console_page__head(b, ctx, "Held messages");
    P("<h1>Quarantined messages</h1>\n");
    console_page__notice(b, ctx);
    P("<form method=\"get\" action=\"/\" role=\"search\"><fieldset><legend>Search</legend>");
    console_page__field(b, "sender", "Sender", "text", s->sender, NULL);
    console_page__field(b, "rcpt", "Recipient", "text", s->rcpt, NULL);
    console_page__field(b, "plugin", "Plugin", "text", s->plugin, NULL);
    console_page__field(b, "reason", "Reason", "text", s->reason, NULL);
    console_page__field(b, "since", "Held since (UTC)", "text", s->since, "YYYY-MM-DD");
    console_page__field(b, "until", "Held before (UTC)", "text", s->until, "YYYY-MM-DD");
    P("<div><label for=\"f-status\">Status</label><select id=\"f-status\" name=\"status\">");
    const char *cur = s->status && *s->status ? s->status : "held";
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        buf_printf(b, "<option value=\"%s\"%s>%s</option>", statuses[i][0],
                   strcmp(cur, statuses[i][0]) == 0 ? " selected" : "", statuses[i][1]);
    P("</select></div><div><button type=\"submit\">Search</button></div></fieldset></form>\n");

    size_t per = s->per_page ? s->per_page : 50, page = s->page ? s->page : 1;
    size_t first = (page - 1) * per;
    if (total == 0) {
        P("<p id=\"count\">No message matches.</p>\n");
    } else if (n == 0) {
        buf_printf(b, "<p id=\"count\">%zu message%s match; none on this page.</p>\n", total,
                   total == 1 ? "" : "s");
    } else {
        buf_printf(b, "<p id=\"count\">%zu message%s match; showing %zu to %zu.</p>\n", total,
                   total == 1 ? "" : "s", first + 1, first + n);
    }
    if (n) {
        P("<table><caption>Matching messages, newest first</caption><thead><tr>"
          "<th scope=\"col\">Held at</th><th scope=\"col\">Sender</th>"
          "<th scope=\"col\">Recipients</th><th scope=\"col\">Plugin</th>"
          "<th scope=\"col\">Reason</th><th scope=\"col\">Score</th>"
          "<th scope=\"col\">Size</th><th scope=\"col\">Status</th></tr></thead><tbody>\n");
        for (size_t i = 0; i < n; i++) {
            const struct qstore_msg *m = &v[i];
            buf_printf(b, "<tr><td><a href=\"/msg?id=%" PRId64 "\">", m->id);
            console_page__time(b, m->time);
            P("</a></td><td>");
            if (m->sender && *m->sender)
                E(m->sender);
            else
                P("&lt;&gt; (null sender)");
            P("</td><td>");
            for (size_t r = 0; r < m->nrcpts; r++) {
                if (r)
                    P(", ");
                if (r == 3) {
                    buf_printf(b, "and %zu more", m->nrcpts - 3);
                    break;
                }
                E(m->rcpts[r]);
            }
            P("</td><td>");
            E(m->plugin);
            P("</td><td>");
            E(m->reason);
            buf_printf(b, "</td><td class=\"num\">%.2f</td><td class=\"num\">", m->score);
            console_page__size(b, m->size);
            P("</td><td>");
            P(qstore_status_name(m->status));
            P("</td></tr>\n");
        }
        P("</tbody></table>\n");
    }
    size_t pages = (total + per - 1) / per;
    if (pages > 1) {
        P("<nav class=\"pages\" aria-label=\"Pages\">");
        if (page > 1) {
            P("<a rel=\"prev\" href=\"");
            console_page__query(b, s, page - 1);
            P("\">Previous page</a>");
        }
        buf_printf(b, "<span>Page %zu of %zu</span>", page, pages);
        if (page < pages) {
            P("<a rel=\"next\" href=\"");
            console_page__query(b, s, page + 1);
            P("\">Next page</a>");
        }
        P("</nav>\n");
    }
    return console_page__end(b);
}

static void console_page__dt(buf_t *b, const char *term, const char *value)
{
    P("<dt>");
    P(term);
    P("</dt><dd>");
    E(value && *value ? value : "-");
    P("</dd>");
}

int console_page_msg(buf_t *b, const struct console_page_ctx *ctx, const struct qstore_msg *m,
                     const char *headers, size_t hlen, const char *text, size_t tlen,
                     bool truncated)
{
    char title[48];
    snprintf(title, sizeof title, "Message %" PRId64, m->id);
    console_page__head(b, ctx, title);
    buf_printf(b, "<h1>Message %" PRId64 "</h1>\n", m->id);
    console_page__notice(b, ctx);

    P("<section aria-labelledby=\"h-env\"><h2 id=\"h-env\">Envelope</h2><dl>");
    P("<dt>Sender</dt><dd id=\"sender\">");
    if (m->sender && *m->sender)
        E(m->sender);
    else
        P("&lt;&gt; (null sender)");
    P("</dd><dt>Recipients</dt><dd><ul id=\"rcpts\">");
    for (size_t r = 0; r < m->nrcpts; r++) {
        P("<li>");
        E(m->rcpts[r]);
        P("</li>");
    }
    P("</ul></dd><dt>Held at</dt><dd>");
    console_page__time(b, m->time);
    P("</dd>");
    console_page__dt(b, "Client address", m->client_addr);
    console_page__dt(b, "Client name", m->client_name);
    console_page__dt(b, "HELO", m->helo);
    console_page__dt(b, "TLS", m->tls);
    console_page__dt(b, "Authenticated as", m->auth_user);
    console_page__dt(b, "Session", m->sid);
    P("<dt>Size</dt><dd>");
    console_page__size(b, m->size);
    P("</dd><dt>Status</dt><dd id=\"status\">");
    P(qstore_status_name(m->status));
    if (m->status != QSTORE_HELD) {
        P(" at ");
        console_page__time(b, m->status_time);
    }
    if (m->note && *m->note) {
        P(": ");
        E(m->note);
    }
    P("</dd></dl></section>\n");

    P("<section aria-labelledby=\"h-dec\"><h2 id=\"h-dec\">Decision</h2><dl>");
    console_page__dt(b, "Plugin", m->plugin);
    console_page__dt(b, "Reason", m->reason);
    buf_printf(b, "<dt>Score</dt><dd>%.2f</dd>", m->score);
    console_page__dt(b, "Symbols", m->symbols);
    P("</dl>");
    if (m->record && *m->record) {
        P("<details><summary>Decision record (JSON)</summary><pre>");
        E(m->record);
        P("</pre></details>");
    }
    P("</section>\n");

    if (m->status == QSTORE_HELD && ctx->csrf) {
        P("<section aria-labelledby=\"h-act\"><h2 id=\"h-act\">Actions</h2><div "
          "class=\"actions\">");
        buf_printf(b,
                   "<form method=\"post\" action=\"/release\"><input type=\"hidden\" name=\"id\" "
                   "value=\"%" PRId64 "\"><input type=\"hidden\" name=\"csrf\" value=\"",
                   m->id);
        E(ctx->csrf);
        buf_printf(b,
                   "\"><button type=\"submit\" id=\"release\">Release to %zu recipient%s</button>"
                   "</form>",
                   m->nrcpts, m->nrcpts == 1 ? "" : "s");
        buf_printf(b,
                   "<form method=\"post\" action=\"/delete\"><input type=\"hidden\" name=\"id\" "
                   "value=\"%" PRId64 "\"><input type=\"hidden\" name=\"csrf\" value=\"",
                   m->id);
        E(ctx->csrf);
        P("\"><button type=\"submit\" id=\"delete\" class=\"danger\">Delete</button></form>"
          "</div></section>\n");
    }

    P("<section aria-labelledby=\"h-hdr\"><h2 id=\"h-hdr\">Headers</h2>");
    if (headers) {
        P("<pre id=\"headers\">");
        console_html_escape(b, headers, hlen);
        P("</pre>");
    } else {
        P(m->status == QSTORE_HELD ? "<p>The message file cannot be read; see the daemon's log.</p>"
                                   : "<p>The message itself is no longer kept.</p>");
    }
    P("</section>\n<section aria-labelledby=\"h-body\"><h2 id=\"h-body\">Body, as text</h2>");
    if (text) {
        P("<pre id=\"body\">");
        console_html_escape(b, text, tlen);
        P("</pre>");
        if (truncated)
            P("<p>Only the start of the message is shown.</p>");
    }
    P("</section>\n");
    return console_page__end(b);
}

int console_page_simple(buf_t *b, const struct console_page_ctx *ctx, const char *title,
                        const char *message)
{
    console_page__head(b, ctx, title);
    P("<h1>");
    E(title);
    P("</h1>\n");
    console_page__notice(b, ctx);
    P("<p>");
    E(message);
    P("</p>\n<p><a href=\"/\">Back to the list</a></p>\n");
    return console_page__end(b);
}

long long console_page_parse_time(const char *s)
{
    if (!s || !*s)
        return 0;
    int y, mo, d, h = 0, mi = 0, n = 0;
    size_t len = strlen(s);
    if (len == 10) {
        if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
            return -1;
    } else if (len == 16 && (s[10] == 'T' || s[10] == ' ')) {
        if (sscanf(s, "%4d-%2d-%2d%*c%2d:%2d%n", &y, &mo, &d, &h, &mi, &n) != 5 || n != 16)
            return -1;
    } else {
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        if (i != 4 && i != 7 && i != 10 && i != 13 && (s[i] < '0' || s[i] > '9'))
            return -1;
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59)
        return -1;
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    time_t t = timegm(&tm);
    if (tm.tm_mday != d) /* 2026-02-31 */
        return -1;
    return (long long)t;
}
