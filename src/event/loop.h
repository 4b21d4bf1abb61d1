/*
 * The event loop: one per worker thread, Linux epoll, level-triggered.
 * Knows nothing of MQTT: descriptors with a callback and an opaque pointer,
 * a periodic tick, an end-of-turn hook (where output is flushed once per
 * turn), and a thread-safe wake-up (eventfd) for cross-thread queues.
 *
 * Only the owning thread calls these functions, except ev_wake and ev_stop.
 */
#ifndef HATO_EVENT_LOOP_H
#define HATO_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct ev_loop;

enum { EV_READ = 1, EV_WRITE = 4 }; /* EPOLLIN, EPOLLOUT */

struct ev_io;
typedef void (*ev_io_fn)(struct ev_loop *loop, struct ev_io *io, uint32_t events);
typedef void (*ev_fn)(struct ev_loop *loop, void *data);

/* A watched descriptor; embedded in its owner's struct, owned by it. */
struct ev_io {
    int fd;
    uint32_t events;
    ev_io_fn fn;
    void *data;
};

/* A new loop, or NULL with errno set. */
struct ev_loop *ev_loop_new(void);
/* Free the loop; watched descriptors are not closed. */
void ev_loop_free(struct ev_loop *loop);

/* Start watching io->fd for events (EV_READ|EV_WRITE). 0 or -1 (errno). */
int ev_io_start(struct ev_loop *loop, struct ev_io *io, int fd, uint32_t events, ev_io_fn fn,
                void *data);
/* Change the watched events; no system call if unchanged. */
int ev_io_set(struct ev_loop *loop, struct ev_io *io, uint32_t events);
/* Stop watching (before close(2), or before handing the fd to another loop). */
void ev_io_stop(struct ev_loop *loop, struct ev_io *io);
/* Watch a descriptor shared by several loops (listening sockets): one loop is woken. */
int ev_io_start_exclusive(struct ev_loop *loop, struct ev_io *io, int fd, ev_io_fn fn, void *data);

/* fn(loop, data) runs every `ms` milliseconds (at most one tick per turn). */
void ev_set_tick(struct ev_loop *loop, unsigned ms, ev_fn fn, void *data);
/* fn(loop, data) runs at the end of every loop turn. */
void ev_set_after(struct ev_loop *loop, ev_fn fn, void *data);
/* fn(loop, data) runs in the loop's thread after any ev_wake. */
void ev_set_wake(struct ev_loop *loop, ev_fn fn, void *data);

/* Thread-safe: make the loop call its wake function soon. */
void ev_wake(struct ev_loop *loop);
/* Thread-safe: make ev_run return after the current turn. */
void ev_stop(struct ev_loop *loop);
/* Run until ev_stop. Returns 0, or -1 if epoll fails. */
int ev_run(struct ev_loop *loop);
/* Run one turn, waiting at most timeout_ms (used during shutdown). */
void ev_run_once(struct ev_loop *loop, int timeout_ms);

/* Monotonic time in milliseconds, cached at the start of the turn. */
int64_t ev_now(struct ev_loop *loop);
/* Monotonic time now (not cached). */
int64_t ev_clock_ms(void);
/* Nanoseconds the loop spent outside epoll_wait since it was made (handling
 * events, ticks, end-of-turn work). Any thread; a little late. */
uint64_t ev_busy_ns(struct ev_loop *loop);

#endif
