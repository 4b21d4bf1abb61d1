#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static unsigned g_mask = LOG_ERR | LOG_WARNING | LOG_NOTICE | LOG_INFO;
static bool g_timestamps = true;
static int g_fd = 2;

void log_set_mask(unsigned mask) {
    g_mask = mask;
}

void log_set_timestamps(bool on) {
    g_timestamps = on;
}

void log_set_fd(int fd) {
    g_fd = fd;
}

bool log_enabled(enum log_level level) {
    return g_fd >= 0 && (g_mask & level);
}

void log_msg(enum log_level level, const char *fmt, ...) {
    if (!log_enabled(level))
        return;
    char line[2048];
    int n = 0;
    if (g_timestamps)
        n = snprintf(line, sizeof(line), "%lld: ", (long long)time(NULL));
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += m;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(g_fd, line, (size_t)n);
    (void)w;
}
