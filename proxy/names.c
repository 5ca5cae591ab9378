/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * names: lookups over the X-macro lists of names.h, and the compile-time
 * proof that the SDK's enums have the values the lists give them.
 */
#include "names.h"

#include <stddef.h>
#include <string.h>

#include <sluice/plugin.h>

#define NAMES__WORD(id, word) word,
static const char *const names__phases[] = {NAMES_PHASES(NAMES__WORD)};
static const char *const names__pverdicts[] = {NAMES_PVERDICTS(NAMES__WORD)};
static const char *const names__txverdicts[] = {NAMES_TXVERDICTS(NAMES__WORD)};
#undef NAMES__WORD

_Static_assert(sizeof names__phases / sizeof names__phases[0] == NAMES_PHASE_COUNT, "phases");
_Static_assert(sizeof names__pverdicts / sizeof names__pverdicts[0] == NAMES_PVERDICT_COUNT,
               "plugin verdicts");
_Static_assert(sizeof names__txverdicts / sizeof names__txverdicts[0] == NAMES_TXVERDICT_COUNT,
               "transaction verdicts");

/* The SDK's numbering is ABI: the lists must follow it, entry by entry. */
#define NAMES__SDK_PHASE(id, word)                                                                 \
    _Static_assert((int)SLUICE_PHASE_##id == (int)NAMES_PH_##id, "SLUICE_PHASE_" #id);
#define NAMES__SDK_VERDICT(id, word)                                                               \
    _Static_assert((int)SLUICE_##id == (int)NAMES_PV_##id, "SLUICE_" #id);
NAMES_PHASES(NAMES__SDK_PHASE)
NAMES_PVERDICTS(NAMES__SDK_VERDICT)
#undef NAMES__SDK_PHASE
#undef NAMES__SDK_VERDICT
_Static_assert((int)SLUICE_PHASE_COUNT == (int)NAMES_PHASE_COUNT, "SLUICE_PHASE_COUNT");

static const char *names__get(const char *const *tab, size_t n, int i)
{
    return i >= 0 && (size_t)i < n ? tab[i] : "unknown";
}

static int names__find(const char *const *tab, size_t n, const char *word)
{
    if (word == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(tab[i], word) == 0)
            return (int)i;
    return -1;
}

const char *names_phase(int phase)
{
    return names__get(names__phases, NAMES_PHASE_COUNT, phase);
}

const char *names_pverdict(int verdict)
{
    return names__get(names__pverdicts, NAMES_PVERDICT_COUNT, verdict);
}

const char *names_txverdict(int verdict)
{
    return names__get(names__txverdicts, NAMES_TXVERDICT_COUNT, verdict);
}

int names_phase_find(const char *word)
{
    return names__find(names__phases, NAMES_PHASE_COUNT, word);
}

int names_pverdict_find(const char *word)
{
    return names__find(names__pverdicts, NAMES_PVERDICT_COUNT, word);
}

int names_txverdict_find(const char *word)
{
    return names__find(names__txverdicts, NAMES_TXVERDICT_COUNT, word);
}
