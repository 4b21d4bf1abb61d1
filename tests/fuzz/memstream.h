/*
 * An in-memory lower stream for fuzzing transport layers: read hands out
 * the input in chunks whose sizes come from the input itself (so a header
 * or frame is cut at every place), then EAGAIN, then the end; writev takes
 * everything and keeps nothing. Header-only, for the fuzz targets.
 */
#ifndef HATO_FUZZ_MEMSTREAM_H
#define HATO_FUZZ_MEMSTREAM_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "transport/stream.h"

struct memstream {
    struct stream s;
    const uint8_t *p;
    size_t len, off;
    unsigned step;    /* chunk sizes cycle through 1..step */
    unsigned turn;    /* read calls so far */
    bool eagain_next; /* every other read says EAGAIN, like a socket */
};

static ssize_t mem_read(struct stream *s, void *buf, size_t len) {
    struct memstream *m = (struct memstream *)s;
    if (m->eagain_next) {
        m->eagain_next = false;
        errno = EAGAIN;
        return -1;
    }
    m->eagain_next = true;
    if (m->off == m->len)
        return 0;
    size_t n = 1 + (m->turn++ % m->step);
    if (n > len)
        n = len;
    if (n > m->len - m->off)
        n = m->len - m->off;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    return (ssize_t)n;
}

static ssize_t mem_writev(struct stream *s, const struct iovec *iov, int n) {
    (void)s;
    size_t t = 0;
    for (int i = 0; i < n; i++)
        t += iov[i].iov_len;
    return (ssize_t)t;
}

static int mem_flush(struct stream *s) {
    (void)s;
    return 0;
}

static unsigned mem_wants(const struct stream *s) {
    (void)s;
    return 0;
}

static bool mem_pending(const struct stream *s) {
    (void)s;
    return false;
}

static void mem_shutdown(struct stream *s) {
    (void)s;
}

static void mem_destroy(struct stream *s) {
    (void)s; /* on the caller's stack */
}

static const struct stream_ops mem_ops = {
    .name = "mem",
    .read = mem_read,
    .writev = mem_writev,
    .flush = mem_flush,
    .wants = mem_wants,
    .pending = mem_pending,
    .shutdown = mem_shutdown,
    .destroy = mem_destroy,
};

static inline void memstream_init(struct memstream *m, struct stream_info *info, const uint8_t *p,
                                  size_t len, unsigned step) {
    memset(m, 0, sizeof(*m));
    m->s = (struct stream){.ops = &mem_ops, .info = info, .fd = -1};
    m->p = p;
    m->len = len;
    m->step = step ? step : 1;
}

/* Read the layer until it ends or fails (bounded by the input's size). */
static inline void drain(struct stream *top, struct memstream *m) {
    uint8_t buf[512];
    for (size_t rounds = 0; rounds < 4 * m->len + 16; rounds++) {
        ssize_t r = stream_read(top, buf, 1 + rounds % sizeof(buf));
        stream_flush(top);
        if (r == 0 || (r < 0 && errno != EAGAIN))
            break;
        if (r < 0 && m->off == m->len && !stream_pending(top))
            break;
    }
}

#endif
