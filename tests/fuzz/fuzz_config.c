/*
 * libFuzzer target for the configuration parser (mosquitto.conf syntax).
 * Every input is one configuration text, parsed and finished like a file
 * given with -c. The parser must never crash or leak, and a refusal must
 * name the file and line ("fuzz.conf:LINE: reason", as the broker prints
 * it at start-up). A text that loads once must load again to the same
 * result (parsing has no hidden state).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "config/config.h"
#include "check.h"

/* "NAME:LINE: " with LINE a positive number. */
static void check_where(const char *err, const char *name) {
    size_t n = strlen(name);
    CHECK(strncmp(err, name, n) == 0 && err[n] == ':');
    char *end;
    long line = strtol(err + n + 1, &end, 10);
    CHECK(line > 0 && *end == ':');
}

static int load(const char *text, struct hato_config *cfg, char *err, size_t errlen) {
    hato_config_init(cfg);
    err[0] = 0;
    int rc = hato_config_parse_string(cfg, "fuzz.conf", text, err, errlen);
    if (rc < 0) {
        check_where(err, "fuzz.conf");
        return -1;
    }
    CHECK(rc == 0);
    rc = hato_config_finish(cfg, err, errlen);
    if (rc < 0)
        CHECK(err[0] != 0);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once) {
        log_set_fd(-1); /* warnings on stderr would only slow the fuzzer */
        once = 1;
    }
    if (size > 1 << 16)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    char err[512], err2[512];
    struct hato_config a, b;
    int ra = load(text, &a, err, sizeof err);
    int rb = load(text, &b, err2, sizeof err2);
    CHECK(ra == rb && strcmp(err, err2) == 0);
    if (ra == 0) {
        CHECK(a.n_listeners == b.n_listeners && a.n_listeners > 0);
        CHECK(a.max_packet_size == b.max_packet_size);
        CHECK(a.max_queued_messages == b.max_queued_messages);
        CHECK(a.max_packet_size == 0 || a.max_packet_size >= 20);
    }
    hato_config_free(&a);
    hato_config_free(&b);
    free(text);
    return 0;
}
