#include "base/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base/log_syslog.h"

#define DEFAULT_MASK (LOG_ERR | LOG_WARNING | LOG_NOTICE | LOG_INFO)
#define MSG_MAX 2048

/*
 * The settings in force. Writers of a line hold the read lock for as long
 * as they use the descriptors and strings below; log_configure and
 * log_reopen swap them under the write lock. The mask is also kept in an
 * atomic so that log_enabled (called on busy paths) takes no lock.
 */
static pthread_rwlock_t g_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct {
    bool to_stderr, to_stdout, to_syslog, to_topic;
    char *file;
    int file_fd;
    bool syslog_open;
    char syslog_ident[64]; /* openlog keeps the pointer: static storage */
    bool timestamps;
    char *ts_format;
    enum log_format format;
} g = {.to_stderr = true, .file_fd = -1, .timestamps = true};

static atomic_uint g_mask = DEFAULT_MASK; /* 0 when there is no destination */
static atomic_bool g_conn_msgs = true;

/* The topic queue. */
static pthread_mutex_t g_qlock = PTHREAD_MUTEX_INITIALIZER;
static struct log_queued *g_qhead, *g_qtail;
static size_t g_qlen;
static unsigned long g_qdropped;
static void (*g_notify)(void *ctx);
static void *g_notify_ctx;
static _Thread_local bool t_mute;

void log_settings_default(struct log_settings *s) {
    memset(s, 0, sizeof(*s));
    s->mask = DEFAULT_MASK;
    s->to_stderr = true;
    s->syslog_facility = -1;
    s->timestamps = true;
    s->format = LOG_FORMAT_TEXT;
    s->connection_messages = true;
}

/* Open (creating with mode 0640 whatever the umask) for appending. */
static int open_log_file(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
    if (fd >= 0) {
        if (fchmod(fd, 0640) < 0) {
            /* Not fatal: the umask's stricter mode stays. */
        }
        return fd;
    }
    if (errno == EEXIST)
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        snprintf(err, errlen, "cannot open log file %s: %s", path, strerror(errno));
    return fd;
}

static unsigned effective_mask(unsigned mask, bool any_dest) {
    return any_dest ? (mask & LOG_ALL) : 0;
}

int log_configure(const struct log_settings *s, char *err, size_t errlen) {
    int fd = -1;
    char *file = NULL, *fmt = NULL;
    if (s->file) {
        file = strdup(s->file);
        if (!file) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        fd = open_log_file(file, err, errlen);
        if (fd < 0) {
            free(file);
            return -1;
        }
    }
    if (s->timestamp_format && !(fmt = strdup(s->timestamp_format))) {
        snprintf(err, errlen, "out of memory");
        if (fd >= 0)
            close(fd);
        free(file);
        return -1;
    }
    pthread_rwlock_wrlock(&g_lock);
    int old_fd = g.file_fd;
    char *old_file = g.file, *old_fmt = g.ts_format;
    g.file = file;
    g.file_fd = fd;
    g.ts_format = fmt;
    g.to_stderr = s->to_stderr;
    g.to_stdout = s->to_stdout;
    g.to_topic = s->to_topic;
    g.timestamps = s->timestamps;
    g.format = s->format;
    if (g.syslog_open) {
        log_syslog_close();
        g.syslog_open = false;
    }
    g.to_syslog = s->to_syslog;
    if (s->to_syslog) {
        snprintf(g.syslog_ident, sizeof(g.syslog_ident), "%s",
                 s->syslog_ident ? s->syslog_ident : "hato");
        log_syslog_open(g.syslog_ident, s->syslog_facility);
        g.syslog_open = true;
    }
    bool any = g.to_stderr || g.to_stdout || g.to_syslog || g.to_topic || g.file_fd >= 0;
    atomic_store(&g_mask, effective_mask(s->mask, any));
    atomic_store(&g_conn_msgs, s->connection_messages);
    pthread_rwlock_unlock(&g_lock);
    if (old_fd >= 0)
        close(old_fd);
    free(old_file);
    free(old_fmt);
    return 0;
}

int log_reopen(char *err, size_t errlen) {
    pthread_rwlock_rdlock(&g_lock);
    char *path = g.file ? strdup(g.file) : NULL;
    bool had = g.file != NULL;
    pthread_rwlock_unlock(&g_lock);
    if (!had)
        return 0;
    if (!path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int fd = open_log_file(path, err, errlen);
    if (fd < 0) {
        free(path);
        return -1;
    }
    pthread_rwlock_wrlock(&g_lock);
    int old = -1;
    if (g.file && strcmp(g.file, path) == 0) {
        old = g.file_fd;
        g.file_fd = fd;
        fd = -1;
    }
    pthread_rwlock_unlock(&g_lock);
    if (old >= 0)
        close(old);
    if (fd >= 0)
        close(fd); /* reconfigured meanwhile */
    free(path);
    return 0;
}

void log_shutdown(void) {
    pthread_rwlock_wrlock(&g_lock);
    if (g.file_fd >= 0)
        close(g.file_fd);
    g.file_fd = -1;
    free(g.file);
    g.file = NULL;
    free(g.ts_format);
    g.ts_format = NULL;
    if (g.syslog_open)
        log_syslog_close();
    g.syslog_open = g.to_syslog = g.to_topic = false;
    pthread_rwlock_unlock(&g_lock);
    log_topic_set_notify(NULL, NULL);
    for (struct log_queued *q = log_topic_take(), *next; q; q = next) {
        next = q->next;
        free(q);
    }
}

void log_set_mask(unsigned mask) {
    pthread_rwlock_rdlock(&g_lock);
    bool any = g.to_stderr || g.to_stdout || g.to_syslog || g.to_topic || g.file_fd >= 0;
    atomic_store(&g_mask, effective_mask(mask, any));
    pthread_rwlock_unlock(&g_lock);
}

void log_set_timestamps(bool on) {
    pthread_rwlock_wrlock(&g_lock);
    g.timestamps = on;
    pthread_rwlock_unlock(&g_lock);
}

void log_set_fd(int fd) {
    struct log_settings s;
    log_settings_default(&s);
    pthread_rwlock_rdlock(&g_lock);
    s.timestamps = g.timestamps;
    pthread_rwlock_unlock(&g_lock);
    unsigned mask = atomic_load(&g_mask);
    s.mask = mask ? mask : DEFAULT_MASK;
    s.to_stderr = fd == 2;
    s.to_stdout = fd == 1;
    char err[8];
    log_configure(&s, err, sizeof(err)); /* no file: cannot fail */
    if (fd < 0)
        atomic_store(&g_mask, 0);
}

bool log_enabled(unsigned level) {
    if (!(atomic_load_explicit(&g_mask, memory_order_relaxed) & level & LOG_ALL))
        return false;
    return !(level & LOG_CONN) || atomic_load_explicit(&g_conn_msgs, memory_order_relaxed);
}

const char *log_level_name(unsigned level) {
    switch (level & LOG_ALL) {
    case LOG_ERR:
        return "error";
    case LOG_WARNING:
        return "warning";
    case LOG_NOTICE:
        return "notice";
    case LOG_INFO:
        return "information";
    case LOG_SUBSCRIBE:
        return "subscribe";
    case LOG_UNSUBSCRIBE:
        return "unsubscribe";
    case LOG_DEBUG:
        return "debug";
    case LOG_WEBSOCKETS:
        return "websockets";
    case LOG_INTERNAL:
        return "internal";
    default:
        return "error";
    }
}

/* Mosquitto's table (its logging.c): topic and syslog priority per type;
 * anything else is published as an error. */
const char *log_level_topic(unsigned level) {
    switch (level & LOG_ALL) {
    case LOG_WARNING:
        return "$SYS/broker/log/W";
    case LOG_NOTICE:
        return "$SYS/broker/log/N";
    case LOG_INFO:
        return "$SYS/broker/log/I";
    case LOG_SUBSCRIBE:
        return "$SYS/broker/log/M/subscribe";
    case LOG_UNSUBSCRIBE:
        return "$SYS/broker/log/M/unsubscribe";
    case LOG_DEBUG:
        return "$SYS/broker/log/D";
    case LOG_WEBSOCKETS:
        return "$SYS/broker/log/WS";
    default:
        return "$SYS/broker/log/E";
    }
}

/* RFC 5424 severity: subscribe and unsubscribe are notices, WebSocket and
 * internal lines debug, as in Mosquitto (which sends internal ones as
 * errors; hato has none it would want there). */
static int severity_of(unsigned level) {
    switch (level & LOG_ALL) {
    case LOG_WARNING:
        return 4;
    case LOG_NOTICE:
    case LOG_SUBSCRIBE:
    case LOG_UNSUBSCRIBE:
        return 5;
    case LOG_INFO:
        return 6;
    case LOG_DEBUG:
    case LOG_WEBSOCKETS:
    case LOG_INTERNAL:
        return 7;
    default:
        return 3;
    }
}

/* "TIMESTAMP: " as Mosquitto writes it, into buf (g's read lock held). */
static size_t text_prefix(char *buf, size_t cap, const struct timespec *now) {
    if (!g.timestamps)
        return 0;
    size_t n;
    if (g.ts_format) {
        struct tm tm;
        time_t t = now->tv_sec;
        localtime_r(&t, &tm);
        n = strftime(buf, cap - 3, g.ts_format, &tm);
        if (n == 0)
            n = (size_t)snprintf(buf, cap - 3, "Time error");
    } else {
        n = (size_t)snprintf(buf, cap - 3, "%lld", (long long)now->tv_sec);
    }
    buf[n++] = ':';
    buf[n++] = ' ';
    buf[n] = 0;
    return n;
}

/* The JSON object of one line (malloc'd, or NULL when out of memory). */
static char *json_line(unsigned level, const struct timespec *now, const char *msg,
                       const char *client_id, const char *user, const char *address) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    struct tm tm;
    time_t t = now->tv_sec;
    gmtime_r(&t, &tm);
    char ts[40];
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now->tv_nsec / 1000000);
    bool ok = cJSON_AddStringToObject(o, "time", ts) &&
              cJSON_AddStringToObject(o, "level", log_level_name(level)) &&
              cJSON_AddStringToObject(o, "message", msg);
    if (ok && client_id)
        ok = cJSON_AddStringToObject(o, "client_id", client_id) != NULL;
    if (ok && user)
        ok = cJSON_AddStringToObject(o, "user", user) != NULL;
    if (ok && address)
        ok = cJSON_AddStringToObject(o, "address", address) != NULL;
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static void put(int fd, const char *line, size_t len) {
    struct iovec iov[2] = {{(void *)line, len}, {(void *)"\n", 1}};
    ssize_t w = writev(fd, iov, 2);
    (void)w;
}

/* Queue a line for the topic; true when the queue was empty before. */
static bool enqueue(unsigned level, const char *line, size_t len) {
    struct log_queued *q = malloc(sizeof(*q) + len + 1);
    if (!q)
        return false;
    q->next = NULL;
    q->level = level & LOG_ALL;
    q->len = len;
    memcpy(q->text, line, len);
    q->text[len] = 0;
    pthread_mutex_lock(&g_qlock);
    if (g_qlen >= LOG_TOPIC_MAX) {
        g_qdropped++;
        pthread_mutex_unlock(&g_qlock);
        free(q);
        return false;
    }
    bool was_empty = g_qhead == NULL;
    if (g_qtail)
        g_qtail->next = q;
    else
        g_qhead = q;
    g_qtail = q;
    g_qlen++;
    pthread_mutex_unlock(&g_qlock);
    return was_empty;
}

static void emit(unsigned level, const char *client_id, const char *user, const char *address,
                 const char *fmt, va_list ap) {
    if (!log_enabled(level))
        return;
    char msg[MSG_MAX];
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (m < 0)
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    bool notify = false;

    pthread_rwlock_rdlock(&g_lock);
    char text[MSG_MAX + 128];
    char *json =
        g.format == LOG_FORMAT_JSON ? json_line(level, &now, msg, client_id, user, address) : NULL;
    const char *line = json;
    size_t len;
    if (json) {
        len = strlen(json);
    } else {
        /* Text (also when JSON could not be made: out of memory). */
        size_t p = text_prefix(text, 128, &now);
        len = p + (size_t)snprintf(text + p, sizeof(text) - p, "%s", msg);
        if (len >= sizeof(text))
            len = sizeof(text) - 1;
        line = text;
    }
    if (g.to_stderr)
        put(2, line, len);
    if (g.to_stdout)
        put(1, line, len);
    if (g.file_fd >= 0)
        put(g.file_fd, line, len);
    if (g.to_syslog)
        log_syslog_write(severity_of(level), msg); /* syslog stamps lines itself */
    /* Mosquitto publishes neither debug nor internal lines. */
    if (g.to_topic && !t_mute && !(level & (LOG_DEBUG | LOG_INTERNAL)))
        notify = enqueue(level, line, len);
    pthread_rwlock_unlock(&g_lock);
    free(json);

    if (notify) {
        /* Called with the queue's lock held, so that log_topic_set_notify(NULL)
         * returning means the old function is no longer running. */
        pthread_mutex_lock(&g_qlock);
        if (g_notify)
            g_notify(g_notify_ctx);
        pthread_mutex_unlock(&g_qlock);
    }
}

void log_msg(unsigned level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emit(level, NULL, NULL, NULL, fmt, ap);
    va_end(ap);
}

void log_client(unsigned level, const char *client_id, const char *user, const char *address,
                const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emit(level, client_id, user, address, fmt, ap);
    va_end(ap);
}

/* ---- topic queue ------------------------------------------------------------- */

void log_topic_set_notify(void (*fn)(void *ctx), void *ctx) {
    pthread_mutex_lock(&g_qlock);
    g_notify = fn;
    g_notify_ctx = ctx;
    pthread_mutex_unlock(&g_qlock);
}

struct log_queued *log_topic_take(void) {
    pthread_mutex_lock(&g_qlock);
    struct log_queued *h = g_qhead;
    g_qhead = g_qtail = NULL;
    g_qlen = 0;
    pthread_mutex_unlock(&g_qlock);
    return h;
}

unsigned long log_topic_dropped(void) {
    pthread_mutex_lock(&g_qlock);
    unsigned long n = g_qdropped;
    pthread_mutex_unlock(&g_qlock);
    return n;
}

void log_topic_mute_thread(bool mute) {
    t_mute = mute;
}
