#include "event/loop.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define EV_BATCH 256

struct ev_loop {
    int epfd;
    int wakefd;
    struct ev_io wake_io;
    atomic_bool stop;
    atomic_bool wake_pending;
    int64_t now;
    int64_t woke_ns;       /* when the last epoll_wait returned, 0 = not yet */
    atomic_ullong busy_ns; /* written by the loop's thread only */
    unsigned tick_ms;
    int64_t next_tick;
    ev_fn tick_fn, after_fn, wake_fn;
    void *tick_data, *after_data, *wake_data;
};

int64_t ev_clock_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_wake(struct ev_loop *loop, struct ev_io *io, uint32_t events) {
    (void)events;
    uint64_t v;
    ssize_t r = read(io->fd, &v, sizeof(v));
    (void)r;
    atomic_store(&loop->wake_pending, false);
    if (loop->wake_fn)
        loop->wake_fn(loop, loop->wake_data);
}

struct ev_loop *ev_loop_new(void) {
    struct ev_loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->epfd < 0 || loop->wakefd < 0 ||
        ev_io_start(loop, &loop->wake_io, loop->wakefd, EV_READ, on_wake, NULL) < 0) {
        int e = errno;
        ev_loop_free(loop);
        errno = e;
        return NULL;
    }
    loop->now = ev_clock_ms();
    return loop;
}

void ev_loop_free(struct ev_loop *loop) {
    if (!loop)
        return;
    if (loop->epfd >= 0)
        close(loop->epfd);
    if (loop->wakefd >= 0)
        close(loop->wakefd);
    free(loop);
}

static int ctl(struct ev_loop *loop, int op, struct ev_io *io, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = io};
    return epoll_ctl(loop->epfd, op, io->fd, &ev);
}

int ev_io_start(struct ev_loop *loop, struct ev_io *io, int fd, uint32_t events, ev_io_fn fn,
                void *data) {
    io->fd = fd;
    io->events = events;
    io->fn = fn;
    io->data = data;
    return ctl(loop, EPOLL_CTL_ADD, io, events);
}

int ev_io_start_exclusive(struct ev_loop *loop, struct ev_io *io, int fd, ev_io_fn fn, void *data) {
    io->fd = fd;
    io->events = EV_READ;
    io->fn = fn;
    io->data = data;
    return ctl(loop, EPOLL_CTL_ADD, io, EPOLLIN | EPOLLEXCLUSIVE);
}

int ev_io_set(struct ev_loop *loop, struct ev_io *io, uint32_t events) {
    if (io->events == events)
        return 0;
    io->events = events;
    return ctl(loop, EPOLL_CTL_MOD, io, events);
}

void ev_io_stop(struct ev_loop *loop, struct ev_io *io) {
    if (io->fd >= 0)
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

void ev_set_tick(struct ev_loop *loop, unsigned ms, ev_fn fn, void *data) {
    loop->tick_ms = ms;
    loop->tick_fn = fn;
    loop->tick_data = data;
    loop->next_tick = ev_clock_ms() + ms;
}

void ev_set_after(struct ev_loop *loop, ev_fn fn, void *data) {
    loop->after_fn = fn;
    loop->after_data = data;
}

void ev_set_wake(struct ev_loop *loop, ev_fn fn, void *data) {
    loop->wake_fn = fn;
    loop->wake_data = data;
}

void ev_wake(struct ev_loop *loop) {
    /* One eventfd write per batch: later wakers see the pending flag. */
    if (atomic_exchange(&loop->wake_pending, true))
        return;
    uint64_t one = 1;
    ssize_t r = write(loop->wakefd, &one, sizeof(one));
    (void)r;
}

void ev_stop(struct ev_loop *loop) {
    atomic_store(&loop->stop, true);
    uint64_t one = 1;
    ssize_t r = write(loop->wakefd, &one, sizeof(one));
    (void)r;
}

int64_t ev_now(struct ev_loop *loop) {
    return loop->now;
}

static int64_t clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t ev_busy_ns(struct ev_loop *loop) {
    return atomic_load_explicit(&loop->busy_ns, memory_order_relaxed);
}

void ev_run_once(struct ev_loop *loop, int timeout_ms) {
    struct epoll_event evs[EV_BATCH];
    int64_t t = clock_ns();
    if (loop->woke_ns) /* the work of the previous turn; plain load + store, one writer */
        atomic_store_explicit(&loop->busy_ns,
                              atomic_load_explicit(&loop->busy_ns, memory_order_relaxed) +
                                  (unsigned long long)(t - loop->woke_ns),
                              memory_order_relaxed);
    if (loop->tick_fn) {
        int64_t left = loop->next_tick - t / 1000000;
        if (left < 0)
            left = 0;
        if (timeout_ms < 0 || left < timeout_ms)
            timeout_ms = (int)left;
    }
    int n = epoll_wait(loop->epfd, evs, EV_BATCH, timeout_ms);
    loop->woke_ns = clock_ns();
    loop->now = loop->woke_ns / 1000000;
    for (int i = 0; i < n; i++) {
        struct ev_io *io = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        if (e & (EPOLLERR | EPOLLHUP))
            e |= EV_READ | (io->events & EV_WRITE);
        io->fn(loop, io, e);
    }
    if (loop->tick_fn && loop->now >= loop->next_tick) {
        loop->next_tick = loop->now + loop->tick_ms;
        loop->tick_fn(loop, loop->tick_data);
    }
    if (loop->after_fn)
        loop->after_fn(loop, loop->after_data);
}

int ev_run(struct ev_loop *loop) {
    while (!atomic_load(&loop->stop))
        ev_run_once(loop, -1);
    return 0;
}
