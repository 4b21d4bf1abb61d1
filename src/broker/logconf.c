/* Apply the logging directives of the config to the log module. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

#include "base/log.h"
#include "broker/config.h"

void hato_config_apply_logging(const struct hato_config *cfg);

void hato_config_apply_logging(const struct hato_config *cfg) {
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
    };
    unsigned mask = 0;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (cfg->log_type & map[i].cfg)
            mask |= map[i].log;
    /* Mosquitto's websockets_log_level is libwebsockets' debug mask; hato
     * has no libwebsockets, and any level turns on its WebSocket messages. */
    if (cfg->websockets_log_level > 0)
        mask |= LOG_WEBSOCKETS;
    log_set_mask(mask);
    log_set_timestamps(cfg->log_timestamp);
    if (cfg->log_dest & HATO_LOG_DEST_STDERR)
        log_set_fd(2);
    else if (cfg->log_dest & HATO_LOG_DEST_STDOUT)
        log_set_fd(1);
    else if ((cfg->log_dest & HATO_LOG_DEST_FILE) && cfg->log_file) {
        int fd = open(cfg->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0)
            log_error("Error: cannot open log file %s: %s", cfg->log_file, strerror(errno));
        else
            log_set_fd(fd);
    } else if (cfg->log_dest & HATO_LOG_DEST_SYSLOG) {
        log_set_fd(2); /* syslog output is not implemented yet: stderr (journald) */
    } else {
        log_set_fd(-1);
    }
}
