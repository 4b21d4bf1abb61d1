/*
 * What every fuzz target shares: CHECK(c) stops the run (abort, so the
 * fuzzer keeps the input) when a property the target asserts is false.
 * Unlike assert() it stays in release builds.
 */
#ifndef HATO_FUZZ_CHECK_H
#define HATO_FUZZ_CHECK_H

#include <stdlib.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#endif
