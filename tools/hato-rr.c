/*
 * hato-rr: request/response as mosquitto_rr. Subscribe to the response
 * topic (-e), publish the request to -t with the MQTT 5 Response Topic and
 * Correlation Data properties, print the first response that carries the
 * same correlation data (or none), exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cliopts.h"
#include "format.h"

struct rr {
    struct cli cli;
    struct hc_client *c;
    const uint8_t *msg;
    size_t msg_len;
    struct mqtt_props req;
    char corr[48];
    bool answered, closed, disconnect_sent;
    int close_err, exit_code;
};

static void stop(struct rr *r) {
    if (!r->disconnect_sent) {
        r->disconnect_sent = true;
        hc_disconnect(r->c, 0, cli_props(&r->cli, PROPS_DISCONNECT));
    }
}

static void on_connect(struct hc_client *c, void *ud, uint8_t reason, bool sp,
                       const struct mqtt_props *props) {
    (void)sp, (void)props;
    struct rr *r = ud;
    if (reason)
        return;
    struct mqtt_sub_entry e = {
        .filter = {(const uint8_t *)r->cli.response_topic, (uint32_t)strlen(r->cli.response_topic)},
        .qos = (uint8_t)r->cli.qos};
    int rc = hc_subscribe(c, 1, &e, cli_props(&r->cli, PROPS_SUBSCRIBE), NULL);
    if (rc != HC_OK)
        cli_die(&r->cli, EXIT_USAGE, "cannot subscribe to '%s': %s", r->cli.response_topic,
                hc_strerror(rc));
}

static void on_subscribe(struct hc_client *c, void *ud, uint16_t mid, uint32_t count,
                         const uint8_t *codes, const struct mqtt_props *props) {
    (void)mid, (void)props;
    struct rr *r = ud;
    if (count && codes[0] >= 0x80) {
        if (!r->cli.quiet)
            fprintf(stderr, "Error: subscription to '%s' denied: %s\n", r->cli.response_topic,
                    hc_version(c) == MQTT_V5 ? mqtt_reason_text(codes[0]) : "Failure");
        r->exit_code = EXIT_PROTOCOL;
        stop(r);
        return;
    }
    int rc = hc_publish(c, r->cli.topics[0], r->msg, r->msg_len, (uint8_t)r->cli.qos, false,
                        hc_version(c) == MQTT_V5 ? &r->req : NULL, NULL);
    if (rc != HC_OK)
        cli_die(&r->cli, EXIT_USAGE, "cannot publish to '%s': %s", r->cli.topics[0],
                hc_strerror(rc));
}

static void on_message(struct hc_client *c, void *ud, const struct hc_message *m) {
    (void)c;
    struct rr *r = ud;
    if (r->answered)
        return;
    if (!mqtt_topic_match((const uint8_t *)r->cli.response_topic, strlen(r->cli.response_topic),
                          (const uint8_t *)m->topic, m->topic_len))
        return;
    if (r->cli.no_retained && m->retain)
        return;
    const struct mqtt_props *p = m->props;
    if (p->present & MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA)) {
        const struct mqtt_str *want = &r->req.correlation_data;
        if (p->correlation_data.len != want->len ||
            memcmp(p->correlation_data.p, want->p, want->len) != 0)
            return; /* an answer to someone else's request */
    }
    r->answered = true;
    fmt_message(&r->cli, m);
    stop(r);
}

static void on_disconnect(struct hc_client *c, void *ud, int err) {
    (void)c;
    struct rr *r = ud;
    r->closed = true;
    r->close_err = err;
}

int main(int argc, char **argv) {
    static struct rr r;
    cli_parse(&r.cli, CLI_RR, argc, argv);
    if (r.cli.format) {
        char why[64];
        const char *bad = fmt_check(r.cli.format, why, sizeof why);
        if (bad)
            cli_die(&r.cli, EXIT_USAGE, "-F: %s", bad);
    }
    struct cli *cli = &r.cli;
    if (cli->have_message) {
        r.msg = (const uint8_t *)cli->message;
        r.msg_len = cli->message_len;
    } else if (cli->file || cli->stdin_whole) {
        int fd = cli->file ? open(cli->file, O_RDONLY | O_CLOEXEC) : 0;
        if (fd < 0)
            cli_die(cli, EXIT_INPUT, "-f %s: %s", cli->file, strerror(errno));
        size_t cap = 4096, n = 0;
        uint8_t *buf = malloc(cap);
        for (;;) {
            if (!buf)
                cli_die(cli, EXIT_INPUT, "out of memory");
            if (n == cap) {
                if (cap > MQTT_MAX_REMAINING_LENGTH / 2)
                    cli_die(cli, EXIT_INPUT, "message too large");
                cap *= 2;
                uint8_t *b = realloc(buf, cap);
                if (!b)
                    cli_die(cli, EXIT_INPUT, "out of memory");
                buf = b;
            }
            ssize_t k = read(fd, buf + n, cap - n);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                cli_die(cli, EXIT_INPUT, "cannot read %s: %s", cli->file ? cli->file : "stdin",
                        strerror(errno));
            if (k == 0)
                break;
            n += (size_t)k;
        }
        if (fd > 0)
            close(fd);
        r.msg = buf;
        r.msg_len = n;
    }
    /* The request: -D publish properties plus Response Topic and
     * Correlation Data (generated unless given with -D). */
    if (cli->version == MQTT_V5) {
        const struct mqtt_props *given = cli_props(cli, PROPS_PUBLISH);
        if (given)
            r.req = *given;
        r.req.response_topic = (struct mqtt_str){(const uint8_t *)cli->response_topic,
                                                 (uint32_t)strlen(cli->response_topic)};
        r.req.present |= MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC);
        if (!(r.req.present & MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA))) {
            snprintf(r.corr, sizeof r.corr, "hato-rr-%d-%llu", (int)getpid(),
                     (unsigned long long)hc_now_ms());
            r.req.correlation_data =
                (struct mqtt_str){(const uint8_t *)r.corr, (uint32_t)strlen(r.corr)};
            r.req.present |= MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA);
        }
    }
    struct hc_callbacks cb = {.on_connect = on_connect,
                              .on_disconnect = on_disconnect,
                              .on_message = on_message,
                              .on_subscribe = on_subscribe};
    uint64_t deadline = cli->timeout_s ? hc_now_ms() + (uint64_t)cli->timeout_s * 1000u : 0;
    r.c = cli_connect(cli, &cb, &r);
    while (!r.closed) {
        int timeout = -1;
        if (deadline) {
            uint64_t now = hc_now_ms();
            if (now >= deadline) {
                if (!cli->quiet)
                    fprintf(stderr, "Timed out\n");
                hc_free(r.c);
                return EXIT_TIMEOUT;
            }
            timeout = (int)(deadline - now);
        }
        int rc = cli_poll(r.c, -1, NULL, timeout);
        if (rc != HC_OK)
            cli_report(cli, r.c, rc);
    }
    if (r.close_err != HC_OK)
        cli_report(cli, r.c, r.close_err);
    hc_free(r.c);
    if (r.msg != (const uint8_t *)cli->message)
        free((void *)r.msg);
    return r.exit_code;
}
