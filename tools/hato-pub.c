/*
 * hato-pub: publish one message (-m, -f, -s, -n), optionally repeated, or
 * one message per line of standard input (-l) on one connection, then
 * disconnect once every message is acknowledged. Options as mosquitto_pub.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cliopts.h"

struct pub {
    struct cli cli;
    struct hc_client *c;
    uint8_t *msg;
    size_t msg_len;
    long sent;
    bool connected, eof, disconnect_sent, failed;
    uint64_t next_send;
    /* -l: bytes read from stdin not yet sent as a line */
    char *line;
    size_t line_len, line_cap;
    int close_err;
    bool closed;
    bool ever_connected, reconnecting;
    uint64_t retry_at;
};

#define RECONNECT_MS 1000

static uint8_t *read_all(int fd, size_t *len, const char *what, struct cli *cli) {
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        cli_die(cli, EXIT_INPUT, "out of memory reading %s", what);
    for (;;) {
        if (n == cap) {
            if (cap >= MQTT_MAX_REMAINING_LENGTH)
                cli_die(cli, EXIT_INPUT, "%s: too large for an MQTT message", what);
            cap *= 2;
            uint8_t *b = realloc(buf, cap);
            if (!b)
                cli_die(cli, EXIT_INPUT, "out of memory reading %s", what);
            buf = b;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            cli_die(cli, EXIT_INPUT, "cannot read %s: %s", what, strerror(errno));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > MQTT_MAX_REMAINING_LENGTH - 65536)
        cli_die(cli, EXIT_INPUT, "%s: too large for an MQTT message", what);
    *len = n;
    return buf;
}

static void on_connect(struct hc_client *c, void *ud, uint8_t reason, bool sp,
                       const struct mqtt_props *props) {
    (void)c, (void)sp, (void)props;
    struct pub *p = ud;
    if (reason == 0) {
        p->connected = p->ever_connected = true;
        p->next_send = hc_now_ms();
    }
}

static void on_disconnect(struct hc_client *c, void *ud, int err) {
    (void)c;
    struct pub *p = ud;
    p->closed = true;
    p->connected = false;
    p->close_err = err;
}

static void on_publish(struct hc_client *c, void *ud, uint16_t mid, uint8_t reason) {
    struct pub *p = ud;
    if (reason >= 0x80) {
        p->failed = true;
        if (!p->cli.quiet)
            fprintf(stderr, "Warning: Publish %u failed: %s.\n", mid, mqtt_reason_text(reason));
    }
    (void)c;
}

static void publish(struct pub *p, const void *data, size_t len) {
    int rc = hc_publish(p->c, p->cli.topics[0], data, len, (uint8_t)p->cli.qos, p->cli.retain,
                        cli_props(&p->cli, PROPS_PUBLISH), NULL);
    if (rc != HC_OK)
        cli_die(&p->cli, rc == HC_ERR_INVAL ? EXIT_USAGE : EXIT_PROTOCOL,
                "cannot publish to '%s': %s", p->cli.topics[0], hc_strerror(rc));
    p->sent++;
}

/* -l: read what stdin has, publish each complete line (without its \n). */
static void read_lines(struct pub *p) {
    if (p->line_cap - p->line_len < 4096) {
        size_t n = p->line_cap ? p->line_cap * 2 : 8192;
        char *b = realloc(p->line, n);
        if (!b)
            cli_die(&p->cli, EXIT_INPUT, "out of memory reading stdin");
        p->line = b;
        p->line_cap = n;
    }
    ssize_t r = read(0, p->line + p->line_len, p->line_cap - p->line_len);
    if (r < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return;
        cli_die(&p->cli, EXIT_INPUT, "cannot read stdin: %s", strerror(errno));
    }
    if (r == 0) {
        p->eof = true;
        if (p->line_len) /* a last line without newline is sent too */
            publish(p, p->line, p->line_len);
        p->line_len = 0;
        return;
    }
    p->line_len += (size_t)r;
    size_t start = 0;
    for (size_t i = 0; i < p->line_len; i++) {
        if (p->line[i] == '\n') {
            size_t end = i;
            publish(p, p->line + start, end - start);
            start = i + 1;
        }
    }
    memmove(p->line, p->line + start, p->line_len - start);
    p->line_len -= start;
    if (p->line_len > MQTT_MAX_REMAINING_LENGTH - 65536)
        cli_die(&p->cli, EXIT_INPUT, "stdin: line too long for an MQTT message");
}

int main(int argc, char **argv) {
    static struct pub p;
    cli_parse(&p.cli, CLI_PUB, argc, argv);
    struct cli *cli = &p.cli;
    if (cli->have_message) {
        p.msg = (uint8_t *)cli->message;
        p.msg_len = cli->message_len;
    } else if (cli->file) {
        int fd = open(cli->file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            cli_die(cli, EXIT_INPUT, "-f %s: %s", cli->file, strerror(errno));
        p.msg = read_all(fd, &p.msg_len, cli->file, cli);
        close(fd);
    } else if (cli->stdin_whole) {
        p.msg = read_all(0, &p.msg_len, "stdin", cli);
    }
    struct hc_callbacks cb = {
        .on_connect = on_connect, .on_disconnect = on_disconnect, .on_publish = on_publish};
    p.c = cli_connect(cli, &cb, &p);
    uint16_t window = cli->max_inflight ? (uint16_t)cli->max_inflight : 20;
    for (;;) {
        uint64_t now = hc_now_ms();
        int timeout = -1;
        bool want_stdin = false;
        if (p.connected && !p.disconnect_sent) {
            if (cli->stdin_line) {
                want_stdin = !p.eof && hc_pending(p.c) < (size_t)window * 4 &&
                             hc_out_pending(p.c) < (1u << 20);
            } else {
                while (p.sent < cli->repeat && now >= p.next_send && hc_pending(p.c) < window) {
                    publish(&p, p.msg, p.msg_len);
                    p.next_send = now + (uint64_t)(cli->repeat_delay * 1000.0);
                }
                if (p.sent < cli->repeat && p.next_send > now)
                    timeout = (int)(p.next_send - now);
            }
            bool all_sent = cli->stdin_line ? p.eof : p.sent >= cli->repeat;
            if (all_sent && hc_pending(p.c) == 0) {
                hc_disconnect(p.c, 0, cli_props(cli, PROPS_DISCONNECT));
                p.disconnect_sent = true;
            }
        }
        if (p.reconnecting) {
            /* -l keeps going across a lost connection, as mosquitto_pub -l
             * does: QoS 1/2 lines not yet acknowledged are re-sent. */
            if (now < p.retry_at) {
                poll(NULL, 0, (int)(p.retry_at - now));
                continue;
            }
            p.retry_at = now + RECONNECT_MS;
            if (hc_connect(p.c, now) == HC_OK) {
                p.reconnecting = false;
                p.closed = false;
            } else if (cli->debug) {
                printf("Client %s reconnect failed: %s\n",
                       hc_client_id(p.c)[0] ? hc_client_id(p.c) : "(null)", hc_error_text(p.c));
                fflush(stdout);
            }
            continue;
        }
        if (p.closed)
            break;
        short rev = 0;
        int rc = cli_poll(p.c, want_stdin ? 0 : -1, &rev, timeout);
        if (rc != HC_OK || p.closed) {
            if (rc == HC_OK)
                rc = p.close_err;
            if (rc != HC_OK && cli->stdin_line && p.ever_connected && !p.disconnect_sent &&
                (rc == HC_ERR_CLOSED || rc == HC_ERR_IO || rc == HC_ERR_TIMEOUT ||
                 rc == HC_ERR_DISCONNECTED)) {
                if (cli->debug) {
                    printf("Client %s lost the connection: %s; reconnecting\n",
                           hc_client_id(p.c)[0] ? hc_client_id(p.c) : "(null)", hc_error_text(p.c));
                    fflush(stdout);
                }
                p.reconnecting = true;
                p.retry_at = hc_now_ms() + RECONNECT_MS;
                continue;
            }
            if (rc != HC_OK)
                cli_report(cli, p.c, rc);
            break;
        }
        if (rev & (POLLIN | POLLHUP | POLLERR))
            read_lines(&p);
    }
    hc_free(p.c);
    if (p.msg != (uint8_t *)cli->message)
        free(p.msg);
    free(p.line);
    return p.failed ? EXIT_PROTOCOL : EXIT_OK;
}
