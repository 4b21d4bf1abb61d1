/*
 * base_zero: clear n bytes with libc's memset.
 *
 * GCC expands memset(p, 0, sizeof *p) of a constant size in the hundreds of
 * bytes into `rep stosq`, whose start-up cost dominated the clearing of a
 * decoded packet (680 bytes) and of a new message (352 bytes) in the fan-in
 * profile (docs/internals/performance.md). Hiding the size from the
 * optimiser makes it call libc's memset, which clears such sizes with a few
 * vector stores. Header-only, so the codec (src/mqtt) can use it without
 * linking src/base.
 */
#ifndef HATO_BASE_ZERO_H
#define HATO_BASE_ZERO_H

#include <stddef.h>
#include <string.h>

static inline void base_zero(void *p, size_t n) {
    __asm__("" : "+r"(n)); /* n is now unknown to the compiler: a call, not an expansion */
    memset(p, 0, n);
}

#endif
