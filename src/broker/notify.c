/*
 * systemd notification and watchdog (notify.h).
 */
#include "broker/notify.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef HATO_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "base/log.h"
#include "broker/broker.h"
#include "broker/reload.h"

#define STATUS_MS 5000    /* STATUS= line period */
#define STALE_MIN_MS 1000 /* a worker whose tick (every 250 ms) is older is not healthy */

static struct {
    bool init;
    bool on;             /* NOTIFY_SOCKET set (and libsystemd built in) */
    int64_t wd_ms;       /* ping period (half of WATCHDOG_USEC), 0 = no watchdog */
    int64_t stale_ms;    /* a worker tick older than this stops the pings */
    int64_t next_status; /* monotonic ms */
    int64_t next_ping;
    int64_t rate_at; /* msgs/s: the last sample */
    unsigned long rate_in;
    double rate;
    int wedged; /* worker id reported as wedged, -1 = none */
} N = {.wedged = -1};

static void notify_init(void) {
    if (N.init)
        return;
    N.init = true;
#ifdef HATO_HAVE_SYSTEMD
    const char *sock = getenv("NOTIFY_SOCKET");
    N.on = sock && *sock;
    uint64_t usec = 0;
    if (N.on && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        N.wd_ms = (int64_t)(usec / 2000);
        if (N.wd_ms < 1)
            N.wd_ms = 1;
        N.stale_ms = N.wd_ms > STALE_MIN_MS ? N.wd_ms : STALE_MIN_MS;
        log_info("systemd watchdog: pinging every %lld ms while every worker is responsive.",
                 (long long)N.wd_ms);
    }
#endif
}

static void notify_send(const char *text) {
#ifdef HATO_HAVE_SYSTEMD
    if (N.on) {
        int r = sd_notify(0, text);
        if (r < 0)
            log_warn("Warning: systemd notification failed: %s", strerror(-r));
    }
#else
    (void)text;
#endif
}

static void status_line(struct broker *b, int64_t now) {
    unsigned long in = 0;
    unsigned clients = 0;
    for (int i = 0; i < b->nworkers; i++) {
        in += atomic_load_explicit(&b->workers[i].msgs_in, memory_order_relaxed);
        clients += atomic_load_explicit(&b->workers[i].nclients, memory_order_relaxed);
    }
    if (N.rate_at && now > N.rate_at)
        N.rate = (double)(in - N.rate_in) * 1000.0 / (double)(now - N.rate_at);
    N.rate_at = now;
    N.rate_in = in;
    char text[128];
    snprintf(text, sizeof(text), "STATUS=%u client%s, %.0f msgs/s", clients,
             clients == 1 ? "" : "s", N.rate);
    notify_send(text);
    N.next_status = now + STATUS_MS;
}

/* WATCHDOG=1 when every worker's tick is recent. */
static void watchdog(struct broker *b, int64_t now) {
    N.next_ping = now + N.wd_ms;
    for (int i = 0; i < b->nworkers; i++) {
        int64_t t = atomic_load_explicit(&b->workers[i].last_tick_ms, memory_order_relaxed);
        if (now - t > N.stale_ms) {
            if (N.wedged != i)
                log_warn("Warning: worker %d has not run for %lld ms: not pinging the systemd "
                         "watchdog.",
                         i, (long long)(now - t));
            N.wedged = i;
            return;
        }
    }
    if (N.wedged >= 0)
        log_notice("Worker %d runs again: pinging the systemd watchdog.", N.wedged);
    N.wedged = -1;
    notify_send("WATCHDOG=1");
}

void notify_ready(struct broker *b) {
    notify_init();
    notify_send("READY=1");
    if (N.on)
        status_line(b, ev_clock_ms());
}

void notify_reloading(void) {
    notify_init();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char text[96];
    snprintf(text, sizeof(text), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u);
    notify_send(text);
}

void notify_ready_after_reload(struct broker *b) {
    notify_init();
    if (b) {
        notify_send("READY=1");
        if (N.on)
            status_line(b, ev_clock_ms());
    } else {
        notify_send("READY=1\nSTATUS=Reload failed: running the previous configuration");
    }
}

void notify_stopping(void) {
    notify_init();
    notify_send("STOPPING=1\nSTATUS=Stopping");
}

int notify_wait_signal(struct broker *b, const sigset_t *set) {
    notify_init();
    for (;;) {
        int64_t now = ev_clock_ms();
        if (N.on && now >= N.next_status)
            status_line(b, now);
        if (N.wd_ms && now >= N.next_ping)
            watchdog(b, now);
        reload_tick(b);
        int64_t next = now + 1000; /* reload_tick */
        if (N.on && N.next_status < next)
            next = N.next_status;
        if (N.wd_ms && N.next_ping < next)
            next = N.next_ping;
        int64_t wait = next > now ? next - now : 0;
        struct timespec ts = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000L};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig > 0)
            return sig;
        /* EAGAIN: time for the periodic work; EINTR: again. */
    }
}
