/*
 * syslog(3) for log.c, in a file of its own: <syslog.h> defines LOG_ERR,
 * LOG_INFO, ... as macros, which would clash with enum log_level.
 * Severities are RFC 5424's numbers (3 error, 4 warning, 5 notice,
 * 6 informational, 7 debug).
 */
#ifndef HATO_BASE_LOG_SYSLOG_H
#define HATO_BASE_LOG_SYSLOG_H

/* openlog(ident, LOG_PID | LOG_NDELAY, facility): -1 = LOG_DAEMON,
 * 0..7 = LOG_LOCAL0..7. The socket is connected at once (before a
 * privilege drop). */
void log_syslog_open(const char *ident, int facility);
void log_syslog_write(int severity, const char *msg);
void log_syslog_close(void);

#endif
