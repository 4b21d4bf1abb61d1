/*
 * Logging, as Mosquitto's log_dest / log_type / log_timestamp directives
 * describe it: one line per call, sent to every configured destination at
 * once (stderr, stdout, a file, syslog, and a queue the broker publishes to
 * $SYS/broker/log/...). Each line goes to a descriptor with a single
 * write(2), so lines from different threads never interleave; the file is
 * opened in append mode and can be reopened (SIGHUP, for logrotate).
 *
 * Two formats: Mosquitto's text ("TIMESTAMP: message") and JSON lines
 * (time, level, message, and client_id / user / address where the caller
 * knows them, see log_client).
 *
 * This module knows nothing of the broker: the topic destination is a
 * bounded queue that the broker drains (log_topic_take) on one of its
 * threads, woken by the notify function it registers.
 */
#ifndef HATO_BASE_LOG_H
#define HATO_BASE_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
    LOG_ERR = 1 << 0,
    LOG_WARNING = 1 << 1,
    LOG_NOTICE = 1 << 2,
    LOG_INFO = 1 << 3,
    LOG_SUBSCRIBE = 1 << 4,
    LOG_UNSUBSCRIBE = 1 << 5,
    LOG_DEBUG = 1 << 6,
    LOG_WEBSOCKETS = 1 << 7, /* WebSocket upgrades (log_type websockets) */
    LOG_INTERNAL = 1 << 8,   /* Mosquitto's "internal" type; never sent to the topic */
    LOG_ALL = (1 << 9) - 1,
    /* Flag, OR-ed into a level: a connect or disconnect line, which
     * connection_messages false silences. */
    LOG_CONN = 1 << 16,
};

enum log_format {
    LOG_FORMAT_TEXT = 0, /* Mosquitto's: "TIMESTAMP: message" */
    LOG_FORMAT_JSON,     /* one JSON object per line */
};

struct log_settings {
    unsigned mask; /* enum log_level bits written */
    bool to_stderr, to_stdout, to_syslog, to_topic;
    const char *file;             /* append to this file (copied), NULL = none */
    int syslog_facility;          /* -1 = LOG_DAEMON, 0..7 = LOG_LOCAL0..7 */
    const char *syslog_ident;     /* NULL = "hato" */
    bool timestamps;              /* prefix text lines with the time */
    const char *timestamp_format; /* strftime(3) format (copied); NULL = seconds since epoch */
    enum log_format format;
    bool connection_messages; /* false: drop lines logged with LOG_CONN */
};

/* The settings before any log_configure: stderr, error to information,
 * epoch timestamps, text, connection messages on. */
void log_settings_default(struct log_settings *s);

/* Apply settings (any thread; lines being written meanwhile finish with
 * the old ones). The file is opened first (created with mode 0640, append);
 * if it cannot be, -1 with the reason in err and nothing changes. */
int log_configure(const struct log_settings *s, char *err, size_t errlen);

/* Reopen the log file by its name (SIGHUP, after logrotate renamed it).
 * 0 (also when there is no file), or -1 with the reason in err: the old
 * descriptor is kept. */
int log_reopen(char *err, size_t errlen);

/* Close the file and syslog, drop the topic queue (exit). */
void log_shutdown(void);

/* Compatibility shorthands: the level mask only (-v), timestamps only,
 * and fd 2 = stderr only, 1 = stdout only, -1 = no destination. */
void log_set_mask(unsigned mask);
void log_set_timestamps(bool on);
void log_set_fd(int fd);

bool log_enabled(unsigned level);

void log_msg(unsigned level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line about one client: the fields go into the JSON format as
 * client_id, user and address (NULL = unknown, left out). The text format
 * writes the message only, so it should name them too. */
void log_client(unsigned level, const char *client_id, const char *user, const char *address,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Mosquitto's name of a level ("error", "warning", ..., "websockets"). */
const char *log_level_name(unsigned level);
/* Mosquitto's $SYS topic for a level: "$SYS/broker/log/E", .../W, /N, /I,
 * /D, /M/subscribe, /M/unsubscribe, /WS. */
const char *log_level_topic(unsigned level);

/* ---- the topic destination ---------------------------------------------------- */

struct log_queued {
    struct log_queued *next;
    unsigned level;
    size_t len;
    char text[]; /* the formatted line, no newline, NUL-terminated */
};

/* Called from the logging thread after a line was queued into an empty
 * queue, with the queue's lock held: it must not log. NULL = nobody is
 * told. */
void log_topic_set_notify(void (*fn)(void *ctx), void *ctx);
/* Take every queued line, oldest first; the caller frees each with free(). */
struct log_queued *log_topic_take(void);
/* Lines not queued because the queue was full (it holds LOG_TOPIC_MAX). */
unsigned long log_topic_dropped(void);
#define LOG_TOPIC_MAX 1024
/* While true on a thread, its lines are not queued for the topic (the
 * thread that publishes them must not feed itself). */
void log_topic_mute_thread(bool mute);

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
