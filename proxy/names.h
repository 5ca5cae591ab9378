/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * names: the daemon's words for plugin phases, plugin verdicts and
 * transaction verdicts, written once as X-macros.
 *
 * These strings are an interface: they are metric label values
 * (`phase="rcpt"`, `verdict="tempfail"`), keys of the /stats JSON, words
 * in log lines and in decision records, so dashboards and tests depend on
 * them byte for byte. Each list is in the order of the enum it names:
 *
 *   NAMES_PHASES      enum sluice_phase (SDK) and enum stats_phase
 *   NAMES_PVERDICTS   enum sluice_verdict 0..SLUICE_DISCONNECT (SDK) and
 *                     enum stats_pverdict
 *   NAMES_TXVERDICTS  enum stats_verdict
 *
 * names.c checks at compile time that every SDK enumerator has the value
 * of its entry here, and stats.c does the same for the stats enums, so a
 * list and an enum cannot drift apart. To use a list, define
 * X(ID, "word") and expand the list with it.
 *
 * Constant data only: any thread.
 */
#ifndef SLUICE_NAMES_H
#define SLUICE_NAMES_H

/* The SMTP phase a plugin hook runs in. */
#define NAMES_PHASES(X)                                                                            \
    X(CONNECT, "connect")                                                                          \
    X(HELO, "helo")                                                                                \
    X(MAIL, "mail")                                                                                \
    X(RCPT, "rcpt")                                                                                \
    X(DATA, "data")                                                                                \
    X(RESET, "reset")                                                                              \
    X(CLOSE, "close")

/* A plugin's answer to one hook. */
#define NAMES_PVERDICTS(X)                                                                         \
    X(CONTINUE, "continue")                                                                        \
    X(ACCEPT, "accept")                                                                            \
    X(REJECT, "reject")                                                                            \
    X(TEMPFAIL, "tempfail")                                                                        \
    X(DISCARD, "discard")                                                                          \
    X(QUARANTINE, "quarantine")                                                                    \
    X(DISCONNECT, "disconnect")

/* How a whole transaction ended. */
#define NAMES_TXVERDICTS(X)                                                                        \
    X(ACCEPTED, "accepted")                                                                        \
    X(REJECTED, "rejected")                                                                        \
    X(TEMPFAILED, "tempfailed")                                                                    \
    X(DISCARDED, "discarded")                                                                      \
    X(QUARANTINED, "quarantined")                                                                  \
    X(ABORTED, "aborted")

/* NAMES_PH_CONNECT.., NAMES_PV_CONTINUE.., NAMES_TX_ACCEPTED.. and the counts. */
#define NAMES__ENUM_PH(id, word) NAMES_PH_##id,
#define NAMES__ENUM_PV(id, word) NAMES_PV_##id,
#define NAMES__ENUM_TX(id, word) NAMES_TX_##id,
enum names_phase { NAMES_PHASES(NAMES__ENUM_PH) NAMES_PHASE_COUNT };
enum names_pverdict { NAMES_PVERDICTS(NAMES__ENUM_PV) NAMES_PVERDICT_COUNT };
enum names_txverdict { NAMES_TXVERDICTS(NAMES__ENUM_TX) NAMES_TXVERDICT_COUNT };
#undef NAMES__ENUM_PH
#undef NAMES__ENUM_PV
#undef NAMES__ENUM_TX

/* The word for a value; "unknown" for anything outside the list (never NULL). */
const char *names_phase(int phase);
const char *names_pverdict(int verdict);
const char *names_txverdict(int verdict);

/* The value for a word (exact, case-sensitive); -1 if the word is not in the list. */
int names_phase_find(const char *word);
int names_pverdict_find(const char *word);
int names_txverdict_find(const char *word);

#endif
