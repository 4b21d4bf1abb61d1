/*
 * hato-sub: subscribe to one or more filters and print what arrives, as
 * mosquitto_sub does (-v, -N, -F, -C, -W, -R, -E, -T, -U, --retained-only,
 * --remove-retained).
 */
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cliopts.h"
#include "format.h"

struct sub {
    struct cli cli;
    struct hc_client *c;
    long received;
    bool done, closed, disconnect_sent, ever_connected;
    int close_err;
    int exit_code;
    uint16_t sub_mid;
};

#define RECONNECT_MS 1000

/* SIGINT: disconnect cleanly and exit 0, as mosquitto_sub does. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static const char *cli_id(struct sub *s) {
    const char *id = hc_client_id(s->c);
    return id && id[0] ? id : "(null)";
}

static void stop(struct sub *s) {
    if (!s->disconnect_sent) {
        s->disconnect_sent = true;
        hc_disconnect(s->c, 0, cli_props(&s->cli, PROPS_DISCONNECT));
    }
}

static void on_connect(struct hc_client *c, void *ud, uint8_t reason, bool sp,
                       const struct mqtt_props *props) {
    (void)sp, (void)props;
    struct sub *s = ud;
    if (reason)
        return;
    s->ever_connected = true;
    struct cli *cli = &s->cli;
    if (cli->nunsub)
        hc_unsubscribe(c, (uint32_t)cli->nunsub, cli->unsub, cli_props(cli, PROPS_UNSUBSCRIBE),
                       NULL);
    if (!cli->ntopics) {
        if (!cli->nunsub)
            stop(s);
        return;
    }
    struct mqtt_sub_entry *e = calloc((size_t)cli->ntopics, sizeof *e);
    if (!e)
        cli_die(cli, EXIT_LOST, "out of memory");
    for (int i = 0; i < cli->ntopics; i++) {
        e[i].filter =
            (struct mqtt_str){(const uint8_t *)cli->topics[i], (uint32_t)strlen(cli->topics[i])};
        e[i].qos = (uint8_t)cli->qos;
    }
    int rc =
        hc_subscribe(c, (uint32_t)cli->ntopics, e, cli_props(cli, PROPS_SUBSCRIBE), &s->sub_mid);
    free(e);
    if (rc != HC_OK)
        cli_die(cli, EXIT_USAGE, "cannot subscribe: %s", hc_strerror(rc));
}

static void on_subscribe(struct hc_client *c, void *ud, uint16_t mid, uint32_t count,
                         const uint8_t *codes, const struct mqtt_props *props) {
    (void)c, (void)props;
    struct sub *s = ud;
    if (s->cli.debug) {
        printf("Subscribed (mid: %u):", mid);
        for (uint32_t i = 0; i < count; i++)
            printf(i ? ", %u" : " %u", codes[i]);
        printf("\n");
        fflush(stdout);
    }
    uint32_t denied = 0;
    for (uint32_t i = 0; i < count; i++)
        if (codes[i] >= 0x80) {
            denied++;
            if (!s->cli.quiet && i < (uint32_t)s->cli.ntopics)
                fprintf(stderr, "Warning: subscription to '%s' denied: %s\n", s->cli.topics[i],
                        hc_version(c) == MQTT_V5 ? mqtt_reason_text(codes[i]) : "Failure");
        }
    if (count && denied == count) {
        if (!s->cli.quiet)
            fprintf(stderr, "Error: All subscription requests were denied.\n");
        s->exit_code = EXIT_PROTOCOL;
        stop(s);
        return;
    }
    if (s->cli.exit_after_sub)
        stop(s);
}

static void on_unsubscribe(struct hc_client *c, void *ud, uint16_t mid, uint32_t count,
                           const uint8_t *codes, const struct mqtt_props *props) {
    (void)c, (void)mid, (void)count, (void)codes, (void)props;
    struct sub *s = ud;
    if (!s->cli.ntopics)
        stop(s);
}

static bool filtered_out(const struct cli *cli, const struct hc_message *m) {
    for (int i = 0; i < cli->nfilter_out; i++)
        if (mqtt_topic_match((const uint8_t *)cli->filter_out[i], strlen(cli->filter_out[i]),
                             (const uint8_t *)m->topic, m->topic_len))
            return true;
    return false;
}

static void on_message(struct hc_client *c, void *ud, const struct hc_message *m) {
    struct sub *s = ud;
    struct cli *cli = &s->cli;
    if (s->disconnect_sent)
        return;
    if (cli->retained_only && !m->retain) {
        stop(s);
        return;
    }
    if (cli->nfilter_out && filtered_out(cli, m))
        return;
    if (cli->remove_retained && m->retain && m->payload_len)
        hc_publish(c, m->topic, NULL, 0, 0, true, NULL, NULL);
    if (cli->no_retained && m->retain)
        return;
    if (cli->random_filter < 100 && (double)(random() % 10000) >= cli->random_filter * 100)
        return;
    fmt_message(cli, m);
    s->received++;
    if (cli->msg_count && s->received >= cli->msg_count)
        stop(s);
}

static void on_disconnect(struct hc_client *c, void *ud, int err) {
    (void)c;
    struct sub *s = ud;
    s->closed = true;
    s->close_err = err;
}

int main(int argc, char **argv) {
    static struct sub s;
    cli_parse(&s.cli, CLI_SUB, argc, argv);
    if (s.cli.format) {
        char why[64];
        const char *bad = fmt_check(s.cli.format, why, sizeof why);
        if (bad)
            cli_die(&s.cli, EXIT_USAGE, "-F: %s", bad);
    }
    struct cli *cli = &s.cli;
    srandom((unsigned)hc_now_ms());
    struct hc_callbacks cb = {.on_connect = on_connect,
                              .on_disconnect = on_disconnect,
                              .on_message = on_message,
                              .on_subscribe = on_subscribe,
                              .on_unsubscribe = on_unsubscribe};
    uint64_t deadline = cli->timeout_s ? hc_now_ms() + (uint64_t)cli->timeout_s * 1000u : 0;
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    s.c = cli_connect(cli, &cb, &s);
    uint64_t retry_at = 0;
    for (;;) {
        uint64_t now = hc_now_ms();
        if (interrupted && !s.disconnect_sent) {
            if (hc_state(s.c) != HC_ST_CONNECTED)
                break;
            stop(&s);
        }
        int timeout = -1;
        if (deadline) {
            if (now >= deadline) {
                if (!cli->quiet)
                    fprintf(stderr, "Timed out\n");
                hc_free(s.c);
                return EXIT_TIMEOUT;
            }
            timeout = (int)(deadline - now);
        }
        if (hc_state(s.c) == HC_ST_IDLE) {
            if (s.disconnect_sent || s.close_err == HC_OK)
                break; /* we asked for it */
            /* Lost after being connected: reconnect every second, as
             * mosquitto_sub does, and subscribe again in on_connect. */
            if (now < retry_at) {
                int wait = (int)(retry_at - now);
                poll(NULL, 0, timeout >= 0 && timeout < wait ? timeout : wait);
                continue;
            }
            retry_at = now + RECONNECT_MS;
            if (hc_connect(s.c, now) == HC_OK)
                s.close_err = HC_OK;
            else if (cli->debug)
                printf("Client %s reconnect failed: %s\n", cli_id(&s), hc_error_text(s.c));
            continue;
        }
        int rc = cli_poll(s.c, -1, NULL, timeout);
        if (rc == HC_OK)
            continue;
        /* Refusals and protocol errors end hato-sub; so does a failure
         * before the first CONNACK. A lost connection is retried. */
        if (!s.ever_connected || rc == HC_ERR_REFUSED || rc == HC_ERR_PROTOCOL ||
            rc == HC_ERR_TLS || s.disconnect_sent)
            cli_report(cli, s.c, rc);
        if (cli->debug) {
            printf("Client %s lost the connection: %s; reconnecting\n", cli_id(&s),
                   hc_error_text(s.c));
            fflush(stdout);
        }
        s.close_err = rc;
        retry_at = hc_now_ms() + RECONNECT_MS;
    }
    hc_free(s.c);
    return s.exit_code;
}
