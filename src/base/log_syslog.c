#include "base/log_syslog.h"

#include <syslog.h>

void log_syslog_open(const char *ident, int facility) {
    static const int local[] = {LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2, LOG_LOCAL3,
                                LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7};
    int fac = facility >= 0 && facility <= 7 ? local[facility] : LOG_DAEMON;
    openlog(ident, LOG_PID | LOG_NDELAY, fac);
}

void log_syslog_write(int severity, const char *msg) {
    int prio = severity <= 3   ? LOG_ERR
               : severity == 4 ? LOG_WARNING
               : severity == 5 ? LOG_NOTICE
               : severity == 6 ? LOG_INFO
                               : LOG_DEBUG;
    syslog(prio, "%s", msg);
}

void log_syslog_close(void) {
    closelog();
}
