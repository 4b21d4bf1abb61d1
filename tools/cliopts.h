/*
 * Shared parts of hato-pub, hato-sub and hato-rr: the mosquitto-compatible
 * options (command line, options file, -L URL, -D properties), the exit
 * codes, -d packet tracing and the connect/run loop.
 */
#ifndef HATO_TOOLS_CLIOPTS_H
#define HATO_TOOLS_CLIOPTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "hato/client.h"

enum cli_tool { CLI_PUB, CLI_SUB, CLI_RR };

/* Exit codes (documented in the man pages and docs/clients.md). */
enum cli_exit {
    EXIT_OK = 0,
    EXIT_USAGE = 1,    /* bad option or option value */
    EXIT_CONNECT = 2,  /* connection failed: refused, unreachable, name not found */
    EXIT_TLS = 3,      /* TLS setup or handshake failed */
    EXIT_REFUSED = 4,  /* the broker refused the connection (CONNACK != 0) */
    EXIT_AUTH = 5,     /* not authorized / bad user name or password */
    EXIT_LOST = 6,     /* connection lost or closed by the broker */
    EXIT_PROTOCOL = 7, /* protocol error (bad packet, refused subscription/publish) */
    EXIT_INPUT = 8,    /* cannot read the message (-f, stdin) */
    EXIT_TIMEOUT = 27, /* timed out (-W, connect, keep-alive): mosquitto_sub's code */
};

/* MQTT 5 properties given with -D for one packet kind. */
struct cli_props {
    struct mqtt_props p;
    uint8_t *user; /* encoded user properties */
    size_t user_len;
    uint32_t sub_id;
};

enum {
    PROPS_CONNECT,
    PROPS_PUBLISH,
    PROPS_SUBSCRIBE,
    PROPS_UNSUBSCRIBE,
    PROPS_DISCONNECT,
    PROPS_WILL,
    PROPS_N
};

struct cli {
    enum cli_tool tool;
    const char *name; /* program name for messages: hato-pub, ... */

    /* connection */
    struct hc_config hc;
    int version; /* as given; 0: tool default */
    const char *id_prefix;
    bool clean_set;
    bool session_expiry_set;
    uint32_t session_expiry;
    bool have_port;
    char *password_buf;
    bool debug, quiet;

    /* topics & messages */
    const char **topics;
    int ntopics;
    const char **filter_out; /* -T */
    int nfilter_out;
    const char **unsub; /* -U */
    int nunsub;
    int qos;
    bool retain;
    const char *message;
    size_t message_len;
    bool have_message;
    const char *file; /* -f */
    bool stdin_line;  /* -l */
    bool stdin_whole; /* -s */
    bool null_msg;    /* -n */
    int msg_sources;
    long repeat;
    double repeat_delay;
    int max_inflight;

    /* sub output */
    bool verbose, no_eol, pretty;
    const char *format;
    long msg_count;
    long timeout_s;
    bool no_retained;    /* -R */
    bool exit_after_sub; /* -E */
    bool retained_only, remove_retained;
    double random_filter;
    const char *response_topic; /* rr -e */

    struct cli_props props[PROPS_N];
    char **owned; /* strings from the options file and -L */
    int nowned;
    bool in_file, cmd_message;
};

/* Parse options file (default or -o) then argv; exits on error or --help. */
void cli_parse(struct cli *cli, enum cli_tool tool, int argc, char **argv);

/* Print an error (unless --quiet) as "NAME: message" and exit with code. */
void cli_die(const struct cli *cli, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
void cli_warn(const struct cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Exit code for an hc_err and the connection's state. */
int cli_exit_code(const struct hc_client *c, int err);

/* Props for one kind or NULL if none were given (or not MQTT 5). */
const struct mqtt_props *cli_props(struct cli *cli, int kind);

/* The -d tracer (struct hc_callbacks.on_packet); ud must be the struct cli. */
void cli_trace(struct hc_client *c, void *ud, bool sent, const struct mqtt_packet *p);

/* Create the client and connect; exits with a message on failure. */
struct hc_client *cli_connect(struct cli *cli, const struct hc_callbacks *cb, void *ud);

/* Report a closed connection (error text) and return the exit code. */
int cli_report(struct cli *cli, struct hc_client *c, int err);

/*
 * One turn: poll the client (and extra_fd for reading, if >= 0) for at most
 * timeout_ms (-1: until the next timer), handle what is ready. Returns HC_OK
 * or the error that closed the connection; *extra_revents gets extra_fd's
 * poll result. Flushes stdout afterwards.
 */
int cli_poll(struct hc_client *c, int extra_fd, short *extra_revents, int timeout_ms);

#endif
