/* Printing received messages the way mosquitto_sub does (-v, -N, -F, --pretty). */
#ifndef HATO_TOOLS_FORMAT_H
#define HATO_TOOLS_FORMAT_H

#include "cliopts.h"

/* Print one message to stdout per the -v/-N/-F/--pretty options (not flushed). */
void fmt_message(const struct cli *cli, const struct hc_message *m);

/* NULL if the -F format is valid, else why not (as mosquitto_sub checks it). */
const char *fmt_check(const char *format, char *buf, size_t cap);

#endif
