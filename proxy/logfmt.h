/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * logfmt: the structured forms of one log record, built from the text of
 * today's line ("sid=... event=tx client=... from=\"<a@b>\" ..."):
 *  - one JSON object on one line (log_format = json),
 *  - the fields journald stores beside MESSAGE (SLUICE_SID=..., ...).
 * A field is a word KEY=VALUE of the text: KEY is a letter then letters,
 * digits, '_', '.' or '-' (at most LOGFMT_KEY_MAX bytes); VALUE runs to the
 * next space, or is a "..." token written by log_quote() (its \" \\ \xHH
 * escapes are undone). Values stay strings (a field's JSON type never
 * changes from line to line). The first field of a name wins; the names
 * time, level, program and msg belong to the record itself.
 * Hostile bytes: everything comes from the text, which holds what clients
 * sent. Output is always valid JSON / UTF-8: control bytes are escaped, a
 * byte that does not start well-formed UTF-8 is read as Latin-1 (as
 * json_escape does, so no byte is lost).
 * Pure functions: no I/O, no allocation, no globals; any thread.
 */
#ifndef SLUICE_LOGFMT_H
#define SLUICE_LOGFMT_H

#include <stdbool.h>
#include <stddef.h>

#define LOGFMT_KEY_MAX 32
#define LOGFMT_FIELDS_MAX 48
/* Smallest useful JSON buffer: the record's own members always fit. */
#define LOGFMT_JSON_MIN 256

struct logfmt_field {
    const char *key; /* into the text, not NUL-terminated */
    size_t keylen;
    const char *val; /* the raw value in the text: inside the quotes if quoted */
    size_t vallen;
    bool quoted;
};

/* The fields of text[0..len) into out (at most max of them, in order);
 * returns how many. */
size_t logfmt_fields(const char *text, size_t len, struct logfmt_field *out, size_t max);

/* A field's value as UTF-8 into dst (NUL-terminated): escapes of a quoted
 * value undone, ill-formed bytes read as Latin-1, control bytes kept. Cut
 * at a character boundary to fit cap (cap >= 1); returns the length. */
size_t logfmt_value(const struct logfmt_field *f, char *dst, size_t cap);

/* journald's name of a field into dst: "SLUICE_" then the key upper-cased,
 * any other byte as '_' (journald allows [A-Z0-9_], at most 64 bytes).
 * Returns the length, 0 if cap is too small. */
size_t logfmt_journal_name(char *dst, size_t cap, const char *key, size_t keylen);

struct logfmt_rec {
    const char *time;    /* "2026-12-06T22:01:29.123Z" */
    const char *level;   /* "info", "warning", ... */
    const char *program; /* "sluice" */
    const char *text;    /* the message: what the text line holds after "level: " */
    size_t len;
};

/*
 * The record as one JSON object and '\n' into dst, NUL-terminated:
 *   {"time":..,"level":..,"program":..,<fields>..,"msg":<text>}
 * cap >= LOGFMT_JSON_MIN. What does not fit is left out whole (a field)
 * or cut (msg) and the object then ends with "truncated":true; the result
 * is valid JSON whatever the input. Returns the length (without the NUL).
 */
size_t logfmt_json(char *dst, size_t cap, const struct logfmt_rec *r);

#endif
