/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sess_bdat: the BDAT verb (RFC 3030 CHUNKING) and the bytes of its chunks.
 *
 * "BDAT <size> [LAST]" is followed by exactly <size> bytes of message
 * content: no dot-stuffing, no terminator. The byte count is all that keeps
 * the command stream in step, so every BDAT whose size parsed has its bytes
 * read, whatever its answer (RFC 3030 §3): a refused chunk is read and
 * dropped (SESS_CHUNK_SKIP) and answered once read; an accepted one goes to
 * the data reader in chunked mode (SESS_CHUNK_KEEP), which applies DATA's
 * limits and line-end policy and stores the same canonical message, so
 * the upstream cannot be told a different message boundary whichever way
 * it arrived. A chunk is answered after its last byte: 250 with its size,
 * or for LAST the final verdict, exactly as for DATA (sess_eom.c).
 *
 * States (sess_set_state; the command table in sess_cmd.c says what is
 * legal in S_CHUNKED: BDAT, RSET, NOOP, QUIT, EHLO ...; MAIL, RCPT and DATA
 * get 503):
 *   MAIL/RCPT --BDAT, recipients accepted--> BDAT --bytes in--> CHUNKED
 *   CHUNKED   --BDAT--> BDAT;  BDAT --the LAST chunk's bytes in--> EOM
 *   any command state --refused BDAT--> BDAT (SKIP) --bytes in--> back
 *   CHUNKED   --RSET, EHLO, QUIT--> (sess_tx_end) HELO
 * A chunk that makes the message fail (too large, a bare LF under
 * bare_newline = reject, ...) ends the transaction at once with the reply
 * DATA gives at its end; the chunks the client pipelined behind it are read
 * and get the same reply (s->bdat.failed), up to its LAST or until any
 * other command.
 *
 * Ownership: the message buffer and the reader are the session's, as for
 * DATA; nothing here allocates. Loop thread only.
 */
#include <stdio.h>
#include <string.h>

#include "sess_int.h"

static void sess_bdat__say(struct sess_said *said, int code, const char *enh, const char *text)
{
    said->code = code;
    snprintf(said->enh, sizeof said->enh, "%s", enh);
    snprintf(said->text, sizeof said->text, "%s", text);
}

const char *sess_bdat_seq_text(void)
{
    return "Error: BDAT transaction in progress, send BDAT ... LAST or RSET";
}

void sess_bdat_forget(struct sess *s)
{
    s->bdat.failed.code = 0;
}

/* The message failed at a chunk: the transaction ends now (log line,
 * upstream RSET), and the chunks pipelined behind this one, if it was not
 * the LAST, get the same answer. The state must not be S_BDAT here. */
static void sess_bdat__fail(struct sess *s, const struct sess_said *said, const char *why,
                            enum stats_verdict v, uint64_t bytes)
{
    s->tx->bytes_in = bytes;
    snprintf(s->last_upstream, sizeof s->last_upstream, "not sent: %.280s", why);
    sess_log_tx(s, v, 0);
    sess_tx_end(s, true);
    if (!s->bdat.last)
        s->bdat.failed = *said;
}

/* All bytes of the current chunk are in. */
static void sess_bdat__chunk_done(struct sess *s)
{
    struct sess_bdat *b = &s->bdat;
    s->log.action = NULL;
    if (b->mode == SESS_CHUNK_SKIP) {
        sess_set_state(s, b->back);
        if (b->last)
            b->failed.code = 0; /* the failed message's run ends with it */
        sess_reply(s, b->said.code, b->said.enh, "%s", b->said.text);
        if (b->skip_counts)
            sess_error(s);
        return;
    }
    b->total += b->size;
    if (b->last) {
        /* One reply for the message, as for DATA: the reader's verdict, the
         * plugins' and the upstream's. */
        data_reader_finish(&s->dr);
        sess_eom_begin(s);
        return;
    }
    sess_set_state(s, S_CHUNKED);
    struct sess_said said;
    enum stats_verdict v;
    const char *why = sess_eom_reader_error(s, &said, &v);
    if (why) {
        bool client_error = data_reader_errors(&s->dr) != 0;
        sess_bdat__fail(s, &said, why, v, s->dr.out_bytes);
        sess_reply(s, said.code, said.enh, "%s", said.text);
        if (client_error)
            sess_error(s);
        return;
    }
    sess_reply(s, 250, "2.0.0", "%llu octets received", (unsigned long long)b->size);
}

/* Read the chunk and drop it; `said` answers it once read. */
static void sess_bdat__skip(struct sess *s, int code, const char *enh, const char *text,
                            bool counts)
{
    struct sess_bdat *b = &s->bdat;
    b->mode = SESS_CHUNK_SKIP;
    if (text)
        sess_bdat__say(&b->said, code, enh, text);
    b->skip_counts = counts;
    b->back = s->state;
    sess_set_state(s, S_BDAT);
    s->log.action = "reading a refused BDAT chunk";
    sess_arm_timer(s); /* data_timeout for its bytes */
    if (b->left == 0)
        sess_bdat__chunk_done(s);
}

bool sess_bdat_check(struct sess *s, const struct cmd *c)
{
    uint64_t size;
    bool last;
    if (!(s->offered & UP_CAP_CHUNKING)) {
        /* Not offered (chunking = no, HELO, no EHLO yet): an unknown
         * command, as before; nothing says bytes follow. */
        sess_reply(s, 502, "5.5.1", "Error: command not implemented");
        sess_error(s);
        return false;
    }
    if (!cmd_parse_bdat(c->arg, c->arg_len, &size, &last)) {
        /* No count, so nothing can be skipped: what follows is read as
         * commands, and the client hears why. */
        sess_reply(s, 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
        sess_error(s);
        return false;
    }
    s->bdat.size = s->bdat.left = size;
    s->bdat.last = last;
    return true;
}

bool sess_bdat_refuse(struct sess *s, const struct cmd *c, int code, const char *enh,
                      const char *text)
{
    uint64_t size;
    bool last;
    if (!(s->offered & UP_CAP_CHUNKING) || !cmd_parse_bdat(c->arg, c->arg_len, &size, &last))
        return false;
    s->bdat.size = s->bdat.left = size;
    s->bdat.last = last;
    sess_bdat__skip(s, code, enh, text, true);
    return true;
}

void sess_bdat_proceed(struct sess *s, const struct host_result *r)
{
    (void)r;
    struct sess_bdat *b = &s->bdat;
    uint64_t max = s->lst->max_message_size;
    unsigned junk_max = s->cfg->junk_command_limit;
    if (b->size == 0 && !b->last && junk_max && ++s->junk > junk_max) {
        /* "BDAT 0" moves nothing on; repeated, it would hold the session
         * open for ever within data_timeout. It counts like NOOP. */
        sess_reply(s, 421, "4.7.0", "%s Error: too many commands without mail", s->cfg->hostname);
        sess_close(s, true);
        return;
    }
    if (b->failed.code) {
        b->said = b->failed;
        sess_bdat__skip(s, 0, NULL, NULL, false);
        return;
    }
    if (!s->tx) {
        sess_bdat__skip(s, 503, "5.5.1", "Error: need MAIL command", true);
        return;
    }
    if (s->state != S_CHUNKED) {
        /* The message's first chunk (state MAIL or RCPT). BDAT waits for
         * every earlier reply, so the recipients are all answered. */
        if (tx_accepted(s->tx) == 0) {
            sess_bdat__skip(s, 554, "5.5.1", "Error: no valid recipients", true);
            return;
        }
        if (!sess_cmd_msg_begin(s, true)) {
            sess_bdat__skip(s, 451, "4.3.0", "Local error in processing", false);
            return;
        }
        b->total = 0;
    }
    if (max && (b->size > max || b->total + b->size > max)) {
        /* RFC 3030 §3: a chunk that takes the message over the limit is
         * refused at once (552 5.3.4, as DATA says it at its end); the
         * message is over, its bytes are still read. */
        struct sess_said said;
        sess_bdat__say(&said, 552, "5.3.4", "Error: message too large");
        sess_bdat__fail(s, &said, "too large", STATS_V_REJECTED, b->total + b->size);
        b->said = said;
        sess_bdat__skip(s, 0, NULL, NULL, true);
        return;
    }
    b->mode = SESS_CHUNK_KEEP;
    sess_set_state(s, S_BDAT);
    s->log.action = "reading a BDAT chunk";
    sess_arm_timer(s); /* data_timeout for its bytes, as for DATA */
    if (b->left == 0)
        sess_bdat__chunk_done(s);
}

size_t sess_bdat_feed(struct sess *s, const char *in, size_t len)
{
    struct sess_bdat *b = &s->bdat;
    size_t n = b->left < len ? (size_t)b->left : len;
    if (b->mode == SESS_CHUNK_KEEP && n > 0)
        data_reader_feed(&s->dr, in, n);
    b->left -= n;
    if (b->left == 0)
        sess_bdat__chunk_done(s);
    return n;
}
