/*
 * Logging: one line per call, written with a single write(2) so lines from
 * different threads never interleave. Levels follow mosquitto's log_type.
 */
#ifndef HATO_BASE_LOG_H
#define HATO_BASE_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_ERR = 1 << 0,
    LOG_WARNING = 1 << 1,
    LOG_NOTICE = 1 << 2,
    LOG_INFO = 1 << 3,
    LOG_SUBSCRIBE = 1 << 4,
    LOG_UNSUBSCRIBE = 1 << 5,
    LOG_DEBUG = 1 << 6,
    LOG_WEBSOCKETS = 1 << 7, /* WebSocket upgrades (log_type websockets) */
    LOG_ALL = 0xff,
};

/* Which levels are written (bit mask of enum log_level); default: error,
 * warning, notice, information. Set before threads start. */
void log_set_mask(unsigned mask);
/* Timestamps on each line (default true). */
void log_set_timestamps(bool on);
/* Write to this descriptor (default 2, stderr); -1 disables output. */
void log_set_fd(int fd);
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)

#endif
