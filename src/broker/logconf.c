/* Apply the logging directives of the config to the log module. */
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "broker/broker.h"
#include "config/config.h"

int hato_config_apply_logging(const struct hato_config *cfg) {
    static const struct {
        unsigned cfg, log;
    } map[] = {
        {HATO_LOG_ERR, LOG_ERR},
        {HATO_LOG_WARNING, LOG_WARNING},
        {HATO_LOG_NOTICE, LOG_NOTICE},
        {HATO_LOG_INFO, LOG_INFO},
        {HATO_LOG_SUBSCRIBE, LOG_SUBSCRIBE},
        {HATO_LOG_UNSUBSCRIBE, LOG_UNSUBSCRIBE},
        {HATO_LOG_DEBUG, LOG_DEBUG},
        {HATO_LOG_WEBSOCKETS, LOG_WEBSOCKETS},
        {HATO_LOG_INTERNAL, LOG_INTERNAL},
    };
    struct log_settings s;
    log_settings_default(&s);
    s.mask = 0;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (cfg->log_type & map[i].cfg)
            s.mask |= map[i].log;
    /* Mosquitto's websockets_log_level is libwebsockets' debug mask; hato
     * has no libwebsockets, and any level turns on its WebSocket messages. */
    if (cfg->websockets_log_level > 0)
        s.mask |= LOG_WEBSOCKETS;
    s.to_stderr = cfg->log_dest & HATO_LOG_DEST_STDERR;
    s.to_stdout = cfg->log_dest & HATO_LOG_DEST_STDOUT;
    s.to_syslog = cfg->log_dest & HATO_LOG_DEST_SYSLOG;
    s.to_topic = cfg->log_dest & HATO_LOG_DEST_TOPIC;
    s.file = (cfg->log_dest & HATO_LOG_DEST_FILE) ? cfg->log_file : NULL;
    s.syslog_facility = cfg->log_facility;
    s.timestamps = cfg->log_timestamp;
    s.timestamp_format = cfg->log_timestamp_format;
    s.format = cfg->log_format == 1 ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT;
    s.connection_messages = cfg->connection_messages;
    char err[512];
    if (log_configure(&s, err, sizeof(err)) < 0) {
        log_error("Error: %s.", err);
        return -1;
    }
    return 0;
}

void hato_log_reopen(void) {
    char err[512];
    if (log_reopen(err, sizeof(err)) < 0)
        log_error("Error: %s; logging to the old file.", err);
}
