/*
 * Options of hato-pub, hato-sub and hato-rr, as mosquitto_pub/_sub/_rr 2.0
 * take them: an options file first ($XDG_CONFIG_HOME/hato/pub or
 * ~/.config/hato/pub, or -o FILE), then the command line, which wins.
 */
#include "cliopts.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <poll.h>
#include <unistd.h>

#ifndef HATO_VERSION
#define HATO_VERSION "0"
#endif

void cli_die(const struct cli *cli, int code, const char *fmt, ...) {
    if (!cli || !cli->quiet) {
        va_list ap;
        va_start(ap, fmt);
        fputs("Error: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    exit(code);
}

void cli_warn(const struct cli *cli, const char *fmt, ...) {
    if (cli->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("Warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- help ---------------------------------------------------------------- */

static const char *const common_usage =
    "Connection:\n"
    " -h HOST         broker host [localhost]\n"
    " -p PORT         broker port [1883, 8883 with TLS]\n"
    " --unix PATH     connect through a Unix socket\n"
    " -L URL          mqtt(s)://[user[:password]@]host[:port]/topic, or\n"
    "                 ws(s)://[user[:password]@]host[:port]/path (MQTT over WebSocket; topic from "
    "-t)\n"
    " -A ADDRESS      bind the outgoing socket to this local address\n"
    " --nodelay       disable Nagle's algorithm\n"
    " -V VERSION      mqttv5, mqttv311 or mqttv31 (5, 311, 31)\n"
    " -i ID           client id   -I PREFIX  client id = PREFIX + process id\n"
    " -k SECONDS      keep-alive [60]\n"
    " -c              no clean session (persistent session; needs -i)\n"
    " -x SECONDS      session expiry interval (MQTT 5; -1 = never)\n"
    " -u USER         user name   -P PASSWORD  password (or HATO_PASSWORD)\n"
    " -D CMD ID VALUE MQTT 5 property: CMD is connect, publish, subscribe,\n"
    "                 unsubscribe, disconnect or will\n"
    " --will-topic T --will-payload P --will-qos Q --will-retain\n"
    "TLS:\n"
    " --cafile FILE --capath DIR --tls-use-os-certs --cert FILE --key FILE\n"
    " --tls-version tlsv1.3|tlsv1.2|tlsv1.1 --ciphers LIST --tls-alpn PROTO\n"
    " --insecure (no host name check)  --psk HEX --psk-identity ID\n"
    "Other:\n"
    " -o FILE         read options from FILE instead of ~/.config/hato/%s\n"
    " -d              print every packet sent and received\n"
    " --quiet         no error messages\n"
    " --help          this text   --version  the version\n";

static void usage(const struct cli *cli) {
    switch (cli->tool) {
    case CLI_PUB:
        printf("hato-pub: publish a message and exit (options as mosquitto_pub).\n\n"
               "Usage: hato-pub {-t topic | -L URL} {-m message | -f file | -l | -s | -n}\n"
               "                [-q qos] [-r] [--repeat N] [--repeat-delay S] [-M max_inflight]\n"
               "                [connection, TLS and other options]\n\n"
               "Message:\n"
               " -t TOPIC   topic         -m MESSAGE  message text\n"
               " -f FILE    send a file   -l  one message per line of stdin\n"
               " -s         stdin whole   -n  null (empty) message\n"
               " -q QOS     0, 1 or 2     -r  retain (-r -n clears the retained message)\n"
               " --repeat N, --repeat-delay SECONDS: send the message N times\n\n");
        break;
    case CLI_SUB:
        printf(
            "hato-sub: subscribe and print messages (options as mosquitto_sub).\n\n"
            "Usage: hato-sub {-t topic ... | -L URL} [-q qos] [-v] [-N] [-F format] [-C count]\n"
            "                [-W seconds] [-T filter_out] [-R] [-E] [-U topic] [--retained-only]\n"
            "                [--remove-retained] [--pretty] [connection, TLS and other options]\n\n"
            "Subscription and output:\n"
            " -t FILTER  subscribe (repeatable)   -T FILTER  do not print these (repeatable)\n"
            " -U FILTER  unsubscribe first        -q QOS     subscription QoS\n"
            " -v         print 'topic payload'    -N         no newline after a message\n"
            " -F FORMAT  mosquitto_sub's format codes (%%t %%p %%j ...)  --pretty  indented JSON\n"
            " -C COUNT   exit after COUNT messages  -W SECONDS  exit after SECONDS (code 27)\n"
            " -R         skip stale (retained) messages  -E  exit once subscribed\n"
            " --retained-only  print retained messages, exit at the first live one\n"
            " --remove-retained  clear every retained message received\n\n");
        break;
    case CLI_RR:
        printf("hato-rr: send a request and print the response (options as mosquitto_rr).\n\n"
               "Usage: hato-rr {-t topic | -L URL} -e response-topic {-m message | -f file | -s | "
               "-n}\n"
               "               [-q qos] [-v] [-N] [-F format] [-W seconds] [connection, TLS and "
               "other options]\n\n");
        break;
    }
    printf(common_usage, cli->tool == CLI_PUB ? "pub" : cli->tool == CLI_SUB ? "sub" : "rr");
    printf("\nExit codes: 0 ok, 1 bad option, 2 cannot connect, 3 TLS failure, 4 refused by the\n"
           "broker, 5 not authorised, 6 connection lost, 7 protocol error, 8 cannot read input,\n"
           "27 timed out. See the man page for more.\n");
}

/* ---- value parsing ------------------------------------------------------- */

static long parse_long(const struct cli *cli, const char *opt, const char *v, long lo, long hi,
                       const char *what) {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi)
        cli_die(cli, EXIT_USAGE, "%s: expected %s, got '%s'", opt, what, v);
    return n;
}

static double parse_double(const struct cli *cli, const char *opt, const char *v, double lo,
                           double hi, const char *what) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi))
        cli_die(cli, EXIT_USAGE, "%s: expected %s, got '%s'", opt, what, v);
    return d;
}

/* Strings made while parsing live as long as the program: keep them
 * reachable from the cli so leak checkers see them as owned. */
static char *keep(struct cli *cli, char *s) {
    if (!s)
        exit(EXIT_USAGE);
    char **l = realloc(cli->owned, (size_t)(cli->nowned + 1) * sizeof *l);
    if (!l)
        exit(EXIT_USAGE);
    l[cli->nowned++] = s;
    cli->owned = l;
    return s;
}

static void push(const char ***list, int *n, const char *v) {
    const char **l = realloc(*list, (size_t)(*n + 1) * sizeof *l);
    if (!l)
        exit(EXIT_USAGE);
    l[(*n)++] = v;
    *list = l;
}

/* ---- -D properties ------------------------------------------------------- */

struct propdef {
    const char *name;
    uint8_t id;
    char type;       /* b byte, h int16, w int32, v varint, s string, d binary, p pair */
    uint8_t allowed; /* bit per PROPS_* kind */
};

#define K(x) (1u << (x))
static const struct propdef propdefs[] = {
    {"payload-format-indicator", MQTT_PROP_PAYLOAD_FORMAT, 'b', K(PROPS_PUBLISH) | K(PROPS_WILL)},
    {"message-expiry-interval", MQTT_PROP_MESSAGE_EXPIRY, 'w', K(PROPS_PUBLISH) | K(PROPS_WILL)},
    {"content-type", MQTT_PROP_CONTENT_TYPE, 's', K(PROPS_PUBLISH) | K(PROPS_WILL)},
    {"response-topic", MQTT_PROP_RESPONSE_TOPIC, 's', K(PROPS_PUBLISH) | K(PROPS_WILL)},
    {"correlation-data", MQTT_PROP_CORRELATION_DATA, 'd', K(PROPS_PUBLISH) | K(PROPS_WILL)},
    {"subscription-identifier", MQTT_PROP_SUBSCRIPTION_ID, 'v', K(PROPS_SUBSCRIBE)},
    {"session-expiry-interval", MQTT_PROP_SESSION_EXPIRY, 'w',
     K(PROPS_CONNECT) | K(PROPS_DISCONNECT)},
    {"authentication-method", MQTT_PROP_AUTH_METHOD, 's', K(PROPS_CONNECT)},
    {"authentication-data", MQTT_PROP_AUTH_DATA, 'd', K(PROPS_CONNECT)},
    {"request-problem-information", MQTT_PROP_REQUEST_PROBLEM_INFO, 'b', K(PROPS_CONNECT)},
    {"will-delay-interval", MQTT_PROP_WILL_DELAY, 'w', K(PROPS_WILL)},
    {"request-response-information", MQTT_PROP_REQUEST_RESPONSE_INFO, 'b', K(PROPS_CONNECT)},
    {"receive-maximum", MQTT_PROP_RECEIVE_MAXIMUM, 'h', K(PROPS_CONNECT)},
    {"topic-alias-maximum", MQTT_PROP_TOPIC_ALIAS_MAXIMUM, 'h', K(PROPS_CONNECT)},
    {"topic-alias", MQTT_PROP_TOPIC_ALIAS, 'h', K(PROPS_PUBLISH)},
    {"maximum-packet-size", MQTT_PROP_MAXIMUM_PACKET_SIZE, 'w', K(PROPS_CONNECT)},
    {"user-property", MQTT_PROP_USER_PROPERTY, 'p', 0x3f},
};
static const char *const kinds[PROPS_N] = {"connect",     "publish",    "subscribe",
                                           "unsubscribe", "disconnect", "will"};

static struct mqtt_str mstr(const char *s) {
    return (struct mqtt_str){(const uint8_t *)s, (uint32_t)strlen(s)};
}

/* -D CMD ID VALUE [VALUE2]; returns how many of args it used. */
static int parse_property(struct cli *cli, char **args, int nargs) {
    if (nargs < 3)
        cli_die(cli, EXIT_USAGE, "-D: expected 'command identifier value'");
    int kind = -1;
    for (int i = 0; i < PROPS_N; i++)
        if (!strcmp(args[0], kinds[i]))
            kind = i;
    if (kind < 0)
        cli_die(cli, EXIT_USAGE,
                "-D: unknown command '%s' (connect, publish, subscribe, unsubscribe, "
                "disconnect, will)",
                args[0]);
    const struct propdef *d = NULL;
    for (size_t i = 0; i < sizeof propdefs / sizeof *propdefs; i++)
        if (!strcmp(args[1], propdefs[i].name))
            d = &propdefs[i];
    if (!d)
        cli_die(cli, EXIT_USAGE, "-D: unknown property '%s'", args[1]);
    if (!(d->allowed & K(kind)))
        cli_die(cli, EXIT_USAGE, "-D: property '%s' is not allowed in %s", args[1], args[0]);
    struct cli_props *cp = &cli->props[kind];
    const char *v = args[2];
    if (d->type == 'p') {
        if (nargs < 4)
            cli_die(cli, EXIT_USAGE, "-D %s user-property: expected a name and a value", args[0]);
        size_t n = mqtt_encode_user_prop(NULL, 0, mstr(args[2]), mstr(args[3]));
        uint8_t *u = realloc(cp->user, cp->user_len + n);
        if (!u)
            exit(EXIT_USAGE);
        mqtt_encode_user_prop(u + cp->user_len, n, mstr(args[2]), mstr(args[3]));
        cp->user = u;
        cp->user_len += n;
        cp->p.user_props = (struct mqtt_str){cp->user, (uint32_t)cp->user_len};
        cp->p.present |= MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
        return 4;
    }
    if (cp->p.present & MQTT_PROP_BIT(d->id))
        cli_die(cli, EXIT_USAGE, "-D %s %s: given twice", args[0], args[1]);
    long n = 0;
    switch (d->type) {
    case 'b':
        n = parse_long(cli, "-D", v, 0, 255, "a number 0..255");
        break;
    case 'h':
        n = parse_long(cli, "-D", v, 0, 65535, "a number 0..65535");
        break;
    case 'w':
        n = (long)parse_double(cli, "-D", v, 0, 4294967295.0, "a number 0..4294967295");
        break;
    case 'v':
        n = parse_long(cli, "-D", v, 1, 268435455, "a number 1..268435455");
        break;
    }
    struct mqtt_props *p = &cp->p;
    switch (d->id) {
    case MQTT_PROP_PAYLOAD_FORMAT:
        p->payload_format = (uint8_t)n;
        break;
    case MQTT_PROP_MESSAGE_EXPIRY:
        p->message_expiry = (uint32_t)n;
        break;
    case MQTT_PROP_CONTENT_TYPE:
        p->content_type = mstr(v);
        break;
    case MQTT_PROP_RESPONSE_TOPIC:
        p->response_topic = mstr(v);
        break;
    case MQTT_PROP_CORRELATION_DATA:
        p->correlation_data = mstr(v);
        break;
    case MQTT_PROP_SUBSCRIPTION_ID:
        cp->sub_id = (uint32_t)n;
        p->sub_id[0] = (uint32_t)n;
        p->sub_id_count = 1;
        break;
    case MQTT_PROP_SESSION_EXPIRY:
        p->session_expiry = (uint32_t)n;
        break;
    case MQTT_PROP_AUTH_METHOD:
        p->auth_method = mstr(v);
        break;
    case MQTT_PROP_AUTH_DATA:
        p->auth_data = mstr(v);
        break;
    case MQTT_PROP_REQUEST_PROBLEM_INFO:
        p->request_problem_info = (uint8_t)n;
        break;
    case MQTT_PROP_WILL_DELAY:
        p->will_delay = (uint32_t)n;
        break;
    case MQTT_PROP_REQUEST_RESPONSE_INFO:
        p->request_response_info = (uint8_t)n;
        break;
    case MQTT_PROP_RECEIVE_MAXIMUM:
        p->receive_maximum = (uint16_t)n;
        break;
    case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
        p->topic_alias_maximum = (uint16_t)n;
        break;
    case MQTT_PROP_TOPIC_ALIAS:
        p->topic_alias = (uint16_t)n;
        break;
    case MQTT_PROP_MAXIMUM_PACKET_SIZE:
        p->maximum_packet_size = (uint32_t)n;
        break;
    }
    if (d->id != MQTT_PROP_SUBSCRIPTION_ID)
        p->present |= MQTT_PROP_BIT(d->id);
    return 3;
}

const struct mqtt_props *cli_props(struct cli *cli, int kind) {
    struct cli_props *cp = &cli->props[kind];
    if (cli->hc.version != MQTT_V5 || (!cp->p.present && !cp->p.sub_id_count))
        return NULL;
    return &cp->p;
}

/* ---- URL ------------------------------------------------------------------ */

static void parse_url(struct cli *cli, const char *url) {
    const char *rest;
    bool ws = false;
    if (!strncmp(url, "mqtt://", 7)) {
        rest = url + 7;
    } else if (!strncmp(url, "mqtts://", 8)) {
        rest = url + 8;
        cli->hc.tls = true;
    } else if (!strncmp(url, "ws://", 5)) {
        rest = url + 5;
        ws = true;
    } else if (!strncmp(url, "wss://", 6)) {
        rest = url + 6;
        ws = true;
        cli->hc.tls = true;
    } else {
        cli_die(cli, EXIT_USAGE, "-L: expected mqtt://, mqtts://, ws:// or wss://, got '%s'", url);
    }
    char *s = keep(cli, strdup(rest));
    char *slash = strchr(s, '/');
    if (ws) {
        /* ws://host:port/path: the path is the HTTP request's (default /);
         * the topic comes from -t. */
        cli->hc.ws_path = keep(cli, strdup(slash ? slash : "/"));
        if (slash)
            *slash = 0;
    } else if (!slash || !slash[1]) {
        cli_die(cli, EXIT_USAGE, "-L %s: the URL must end with /topic", url);
    } else {
        *slash = 0;
    }
    char *hostport = s;
    char *at = strrchr(s, '@');
    if (at) {
        *at = 0;
        hostport = at + 1;
        char *colon = strchr(s, ':');
        if (colon) {
            *colon = 0;
            cli->hc.password = (const uint8_t *)(colon + 1);
            cli->hc.password_len = strlen(colon + 1);
        }
        cli->hc.username = s;
    }
    char *port = NULL;
    if (hostport[0] == '[') {
        char *end = strchr(hostport, ']');
        if (!end)
            cli_die(cli, EXIT_USAGE, "-L %s: unterminated [IPv6 address]", url);
        *end = 0;
        if (end[1] == ':')
            port = end + 2;
        hostport++;
    } else {
        char *colon = strchr(hostport, ':');
        if (colon) {
            *colon = 0;
            port = colon + 1;
        }
    }
    if (!hostport[0])
        cli_die(cli, EXIT_USAGE, "-L %s: no host", url);
    cli->hc.host = hostport;
    if (port) {
        cli->hc.port = (uint16_t)parse_long(cli, "-L", port, 1, 65535, "a port 1..65535");
        cli->have_port = true;
    } else if (ws) {
        cli->hc.port = cli->hc.tls ? 443 : 80; /* RFC 6455 section 3 */
        cli->have_port = true;
    }
    if (!ws)
        push(&cli->topics, &cli->ntopics, slash + 1);
}

/* ---- one option ------------------------------------------------------------ */

#define PUB K(CLI_PUB)
#define SUB K(CLI_SUB)
#define RR K(CLI_RR)
#define ALL (PUB | SUB | RR)

struct optdef {
    const char *s, *l; /* short and long spellings (NULL if none) */
    int nargs;         /* values taken; -1 for -D */
    unsigned tools;
};

static const struct optdef opts[] = {
    {"-h", "--host", 1, ALL},
    {"-p", "--port", 1, ALL},
    {"-t", "--topic", 1, ALL},
    {"-m", "--message", 1, PUB | RR},
    {"-f", "--file", 1, PUB | RR},
    {"-l", "--stdin-line", 0, PUB},
    {"-s", "--stdin-file", 0, PUB | RR},
    {"-n", "--null-message", 0, PUB | RR},
    {"-q", "--qos", 1, ALL},
    {"-r", "--retain", 0, PUB},
    {"-u", "--username", 1, ALL},
    {"-P", "--pw", 1, ALL},
    {"-i", "--id", 1, ALL},
    {"-I", "--id-prefix", 1, ALL},
    {"-k", "--keepalive", 1, ALL},
    {"-c", "--disable-clean-session", 0, ALL},
    {"-x", "--session-expiry-interval", 1, ALL},
    {"-V", "--protocol-version", 1, ALL},
    {"-d", "--debug", 0, ALL},
    {NULL, "--quiet", 0, ALL},
    {"-D", "--property", -1, ALL},
    {NULL, "--will-topic", 1, ALL},
    {NULL, "--will-payload", 1, ALL},
    {NULL, "--will-qos", 1, ALL},
    {NULL, "--will-retain", 0, ALL},
    {NULL, "--cafile", 1, ALL},
    {NULL, "--capath", 1, ALL},
    {NULL, "--cert", 1, ALL},
    {NULL, "--key", 1, ALL},
    {NULL, "--tls-version", 1, ALL},
    {NULL, "--ciphers", 1, ALL},
    {NULL, "--tls-alpn", 1, ALL},
    {NULL, "--tls-use-os-certs", 0, ALL},
    {NULL, "--insecure", 0, ALL},
    {NULL, "--psk", 1, ALL},
    {NULL, "--psk-identity", 1, ALL},
    {"-L", "--url", 1, ALL},
    {NULL, "--repeat", 1, PUB},
    {NULL, "--repeat-delay", 1, PUB},
    {"-M", "--max-inflight", 1, PUB},
    {NULL, "--unix", 1, ALL},
    {"-A", "--bind-address", 1, ALL},
    {NULL, "--nodelay", 0, ALL},
    {NULL, "--help", 0, ALL},
    {NULL, "--version", 0, ALL},
    {"-o", "--options-file", 1, ALL},
    {"-e", "--response-topic", 1, RR},
    {"-T", "--filter-out", 1, SUB},
    {"-v", "--verbose", 0, SUB | RR},
    {"-N", "--no-eol", 0, SUB | RR},
    {"-F", "--format", 1, SUB | RR},
    {"-C", "--count", 1, SUB},
    {"-W", "--timeout", 1, SUB | RR},
    {"-R", "--no-retained", 0, SUB | RR},
    {"-E", "--exit-after-sub", 0, SUB},
    {"-U", "--unsubscribe", 1, SUB},
    {NULL, "--retained-only", 0, SUB},
    {NULL, "--remove-retained", 0, SUB},
    {NULL, "--pretty", 0, SUB | RR},
    {NULL, "--random-filter", 1, SUB},
};

static const struct optdef *find_opt(const char *a) {
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
        if ((opts[i].s && !strcmp(a, opts[i].s)) || (opts[i].l && !strcmp(a, opts[i].l)))
            return &opts[i];
    return NULL;
}

/* The command line's message replaces one from the options file. */
static void set_message(struct cli *cli) {
    if (!cli->in_file && !cli->cmd_message) {
        cli->cmd_message = true;
        cli->msg_sources = 0;
        cli->have_message = cli->stdin_line = cli->stdin_whole = cli->null_msg = false;
        cli->file = NULL;
    }
    cli->msg_sources++;
}

/* Apply option `o` (as spelled `a`) with values v[]. */
static void apply(struct cli *cli, const struct optdef *o, const char *a, char **v) {
    const char *n = o->l; /* canonical long name */
    if (!strcmp(n, "--host")) {
        cli->hc.host = v[0];
    } else if (!strcmp(n, "--port")) {
        cli->hc.port = (uint16_t)parse_long(cli, a, v[0], 1, 65535, "a port 1..65535");
        cli->have_port = true;
    } else if (!strcmp(n, "--topic")) {
        if (cli->tool == CLI_SUB) {
            push(&cli->topics, &cli->ntopics, v[0]);
        } else {
            cli->ntopics = 0;
            push(&cli->topics, &cli->ntopics, v[0]);
        }
    } else if (!strcmp(n, "--message")) {
        set_message(cli);
        cli->message = v[0];
        cli->message_len = strlen(v[0]);
        cli->have_message = true;
    } else if (!strcmp(n, "--file")) {
        set_message(cli);
        cli->file = v[0];
    } else if (!strcmp(n, "--stdin-line")) {
        set_message(cli);
        cli->stdin_line = true;
    } else if (!strcmp(n, "--stdin-file")) {
        set_message(cli);
        cli->stdin_whole = true;
    } else if (!strcmp(n, "--null-message")) {
        set_message(cli);
        cli->null_msg = true;
    } else if (!strcmp(n, "--qos")) {
        cli->qos = (int)parse_long(cli, a, v[0], 0, 2, "a QoS 0, 1 or 2");
    } else if (!strcmp(n, "--retain")) {
        cli->retain = true;
    } else if (!strcmp(n, "--username")) {
        cli->hc.username = v[0];
    } else if (!strcmp(n, "--pw")) {
        cli->hc.password = (const uint8_t *)v[0];
        cli->hc.password_len = strlen(v[0]);
    } else if (!strcmp(n, "--id")) {
        if (cli->id_prefix)
            cli_die(cli, EXIT_USAGE, "-i and -I cannot be used together");
        cli->hc.client_id = v[0];
    } else if (!strcmp(n, "--id-prefix")) {
        if (cli->hc.client_id)
            cli_die(cli, EXIT_USAGE, "-i and -I cannot be used together");
        cli->id_prefix = v[0];
    } else if (!strcmp(n, "--keepalive")) {
        long k = parse_long(cli, a, v[0], 0, 65535, "seconds: 0 or 5..65535");
        if (k > 0 && k < 5)
            cli_die(cli, EXIT_USAGE, "%s: expected seconds: 0 or 5..65535, got '%s'", a, v[0]);
        cli->hc.keepalive = (uint16_t)k;
    } else if (!strcmp(n, "--disable-clean-session")) {
        cli->hc.clean = false;
        cli->clean_set = true;
    } else if (!strcmp(n, "--session-expiry-interval")) {
        if (!strcmp(v[0], "-1") || !strcmp(v[0], "\xe2\x88\x9e"))
            cli->session_expiry = UINT32_MAX;
        else
            cli->session_expiry = (uint32_t)parse_double(cli, a, v[0], 0, 4294967295.0,
                                                         "seconds 0..4294967295 or -1");
        cli->session_expiry_set = true;
    } else if (!strcmp(n, "--protocol-version")) {
        if (!strcmp(v[0], "mqttv31") || !strcmp(v[0], "31"))
            cli->version = MQTT_V31;
        else if (!strcmp(v[0], "mqttv311") || !strcmp(v[0], "311"))
            cli->version = MQTT_V311;
        else if (!strcmp(v[0], "mqttv5") || !strcmp(v[0], "5"))
            cli->version = MQTT_V5;
        else
            cli_die(cli, EXIT_USAGE,
                    "%s: expected mqttv5, mqttv311 or mqttv31 (5, 311, 31), got '%s'", a, v[0]);
    } else if (!strcmp(n, "--debug")) {
        cli->debug = true;
    } else if (!strcmp(n, "--quiet")) {
        cli->quiet = true;
    } else if (!strcmp(n, "--will-topic")) {
        if (!mqtt_topic_name_valid((const uint8_t *)v[0], strlen(v[0])))
            cli_die(cli, EXIT_USAGE, "--will-topic: invalid topic '%s'", v[0]);
        cli->hc.will_topic = v[0];
    } else if (!strcmp(n, "--will-payload")) {
        cli->hc.will_payload = (const uint8_t *)v[0];
        cli->hc.will_payload_len = strlen(v[0]);
    } else if (!strcmp(n, "--will-qos")) {
        cli->hc.will_qos = (uint8_t)parse_long(cli, a, v[0], 0, 2, "a QoS 0, 1 or 2");
    } else if (!strcmp(n, "--will-retain")) {
        cli->hc.will_retain = true;
    } else if (!strcmp(n, "--cafile")) {
        cli->hc.cafile = v[0];
    } else if (!strcmp(n, "--capath")) {
        cli->hc.capath = v[0];
    } else if (!strcmp(n, "--cert")) {
        cli->hc.certfile = v[0];
    } else if (!strcmp(n, "--key")) {
        cli->hc.keyfile = v[0];
    } else if (!strcmp(n, "--tls-version")) {
        if (strcmp(v[0], "tlsv1.3") && strcmp(v[0], "tlsv1.2") && strcmp(v[0], "tlsv1.1"))
            cli_die(cli, EXIT_USAGE, "%s: expected tlsv1.3, tlsv1.2 or tlsv1.1, got '%s'", a, v[0]);
        cli->hc.tls_version = v[0];
    } else if (!strcmp(n, "--ciphers")) {
        cli->hc.ciphers = v[0];
    } else if (!strcmp(n, "--tls-alpn")) {
        cli->hc.alpn = v[0];
    } else if (!strcmp(n, "--tls-use-os-certs")) {
        cli->hc.tls_use_os_certs = true;
    } else if (!strcmp(n, "--insecure")) {
        cli->hc.insecure = true;
    } else if (!strcmp(n, "--psk")) {
        cli->hc.psk_hex = v[0];
    } else if (!strcmp(n, "--psk-identity")) {
        cli->hc.psk_identity = v[0];
    } else if (!strcmp(n, "--url")) {
        parse_url(cli, v[0]);
    } else if (!strcmp(n, "--repeat")) {
        cli->repeat = parse_long(cli, a, v[0], 1, INT_MAX, "a count >= 1");
    } else if (!strcmp(n, "--repeat-delay")) {
        cli->repeat_delay = parse_double(cli, a, v[0], 0, 86400 * 365, "seconds >= 0");
    } else if (!strcmp(n, "--max-inflight")) {
        cli->max_inflight = (int)parse_long(cli, a, v[0], 1, 65535, "a number 1..65535");
    } else if (!strcmp(n, "--unix")) {
        cli->hc.unix_path = v[0];
    } else if (!strcmp(n, "--bind-address")) {
        cli->hc.bind_address = v[0];
    } else if (!strcmp(n, "--nodelay")) {
        cli->hc.nodelay = true;
    } else if (!strcmp(n, "--help")) {
        usage(cli);
        exit(EXIT_OK);
    } else if (!strcmp(n, "--version")) {
        printf("%s version %s (hato client library, MQTT 5.0/3.1.1/3.1)\n", cli->name,
               HATO_VERSION);
        exit(EXIT_OK);
    } else if (!strcmp(n, "--options-file")) {
        /* handled before the other options */
    } else if (!strcmp(n, "--response-topic")) {
        if (!mqtt_topic_name_valid((const uint8_t *)v[0], strlen(v[0])))
            cli_die(cli, EXIT_USAGE, "-e: invalid response topic '%s'", v[0]);
        cli->response_topic = v[0];
    } else if (!strcmp(n, "--filter-out")) {
        if (!mqtt_topic_filter_valid((const uint8_t *)v[0], strlen(v[0])))
            cli_die(cli, EXIT_USAGE, "-T: invalid filter '%s'", v[0]);
        push(&cli->filter_out, &cli->nfilter_out, v[0]);
    } else if (!strcmp(n, "--verbose")) {
        cli->verbose = true;
    } else if (!strcmp(n, "--no-eol")) {
        cli->no_eol = true;
    } else if (!strcmp(n, "--format")) {
        cli->format = v[0];
    } else if (!strcmp(n, "--count")) {
        cli->msg_count = parse_long(cli, a, v[0], 1, LONG_MAX, "a count >= 1");
    } else if (!strcmp(n, "--timeout")) {
        cli->timeout_s = parse_long(cli, a, v[0], 1, 3600 * 24 * 365, "seconds >= 1");
    } else if (!strcmp(n, "--no-retained")) {
        cli->no_retained = true;
    } else if (!strcmp(n, "--exit-after-sub")) {
        cli->exit_after_sub = true;
    } else if (!strcmp(n, "--unsubscribe")) {
        if (!mqtt_topic_filter_valid((const uint8_t *)v[0], strlen(v[0])))
            cli_die(cli, EXIT_USAGE, "-U: invalid filter '%s'", v[0]);
        push(&cli->unsub, &cli->nunsub, v[0]);
    } else if (!strcmp(n, "--retained-only")) {
        cli->retained_only = true;
    } else if (!strcmp(n, "--remove-retained")) {
        cli->remove_retained = true;
    } else if (!strcmp(n, "--pretty")) {
        cli->pretty = true;
    } else if (!strcmp(n, "--random-filter")) {
        cli->random_filter = parse_double(cli, a, v[0], 0.1, 100, "a percentage 0.1..100");
    }
}

/* Parse argv-like args[0..n); from_file names the options file for errors. */
static void parse_args(struct cli *cli, int n, char **args, const char *from_file) {
    for (int i = 0; i < n; i++) {
        const char *a = args[i];
        const struct optdef *o = find_opt(a);
        if (!o || !(o->tools & K(cli->tool))) {
            if (from_file)
                cli_die(cli, EXIT_USAGE, "%s: unknown option '%s'", from_file, a);
            cli_die(cli, EXIT_USAGE, "unknown option '%s' (see %s --help)", a, cli->name);
        }
        if (o->nargs < 0) {
            int used = parse_property(cli, args + i + 1, n - i - 1);
            i += used;
            continue;
        }
        if (o->nargs && i + o->nargs >= n)
            cli_die(cli, EXIT_USAGE, "%s: expects a value", a);
        apply(cli, o, a, args + i + 1);
        i += o->nargs;
    }
}

/* ---- options file ------------------------------------------------------- */

static void load_options_file(struct cli *cli, const char *path, bool explicit_path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        if (explicit_path)
            cli_die(cli, EXIT_USAGE, "-o %s: %s", path, strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH | S_IWGRP | S_IWOTH)))
        cli_warn(cli,
                 "options file %s is readable by other users (mode %03o) and may hold a "
                 "password: chmod 600 %s",
                 path, (unsigned)(st.st_mode & 0777), path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s || *s == '#')
            continue;
        /* "-opt value with spaces" for one-value options; -D takes words. */
        char *args[8];
        int na = 0;
        char *sp = strpbrk(s, " \t");
        if (sp) {
            *sp++ = 0;
            while (*sp == ' ' || *sp == '\t')
                sp++;
        }
        args[na++] = keep(cli, strdup(s));
        const struct optdef *o = find_opt(s);
        if (sp && *sp) {
            if (o && o->nargs < 0) {
                char *save = NULL;
                for (char *w = strtok_r(sp, " \t", &save); w && na < 8;
                     w = strtok_r(NULL, " \t", &save))
                    args[na++] = keep(cli, strdup(w));
            } else {
                args[na++] = keep(cli, strdup(sp));
            }
        }
        char where[PATH_MAX + 16];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if (o && o->nargs > 0 && na < 2)
            cli_die(cli, EXIT_USAGE, "%s: %s expects a value", where, s);
        if (o && !strcmp(o->l, "--options-file"))
            cli_die(cli, EXIT_USAGE, "%s: -o cannot be used in an options file", where);
        cli->in_file = true;
        parse_args(cli, na, args, where);
        cli->in_file = false;
    }
    free(line);
    fclose(f);
}

/* ---- parse everything ---------------------------------------------------- */

void cli_parse(struct cli *cli, enum cli_tool tool, int argc, char **argv) {
    memset(cli, 0, sizeof *cli);
    cli->tool = tool;
    cli->name = tool == CLI_PUB ? "hato-pub" : tool == CLI_SUB ? "hato-sub" : "hato-rr";
    cli->hc.clean = true;
    cli->hc.keepalive = 60;
    cli->repeat = 1;
    cli->random_filter = 100;
    /* --quiet applies to the options file's warnings too. */
    const char *ofile = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quiet"))
            cli->quiet = true;
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--options-file"))) {
            if (i + 1 >= argc)
                cli_die(cli, EXIT_USAGE, "%s: expects a file name", argv[i]);
            ofile = argv[++i];
        }
    }
    if (ofile) {
        load_options_file(cli, ofile, true);
    } else {
        const char *base = tool == CLI_PUB ? "pub" : tool == CLI_SUB ? "sub" : "rr";
        char path[PATH_MAX];
        const char *xdg = getenv("XDG_CONFIG_HOME");
        const char *home = getenv("HOME");
        int n = -1;
        if (xdg && *xdg)
            n = snprintf(path, sizeof path, "%s/hato/%s", xdg, base);
        else if (home && *home)
            n = snprintf(path, sizeof path, "%s/.config/hato/%s", home, base);
        if (n > 0 && (size_t)n < sizeof path)
            load_options_file(cli, path, false);
    }
    parse_args(cli, argc - 1, argv + 1, NULL);

    /* Cross-option rules, as mosquitto's clients check them. */
    if (!cli->version)
        cli->version = tool == CLI_RR ? MQTT_V5 : MQTT_V311;
    cli->hc.version = (uint8_t)cli->version;
    if (!cli->hc.password) {
        const char *env = getenv("HATO_PASSWORD");
        if (env) {
            cli->hc.password = (const uint8_t *)env;
            cli->hc.password_len = strlen(env);
        }
    }
    if (cli->hc.password && !cli->hc.username && cli->version != MQTT_V5)
        cli_die(cli, EXIT_USAGE, "-P (or HATO_PASSWORD) needs -u in MQTT %s",
                cli->version == MQTT_V31 ? "3.1" : "3.1.1");
    if (cli->hc.will_payload && !cli->hc.will_topic)
        cli_die(cli, EXIT_USAGE, "--will-payload needs --will-topic");
    if ((cli->hc.will_qos || cli->hc.will_retain) && !cli->hc.will_topic)
        cli_die(cli, EXIT_USAGE, "--will-qos and --will-retain need --will-topic");
    if ((cli->hc.cafile || cli->hc.capath) && cli->hc.psk_hex)
        cli_die(cli, EXIT_USAGE, "--psk cannot be used with --cafile or --capath");
    if (cli->hc.psk_hex && !cli->hc.psk_identity)
        cli_die(cli, EXIT_USAGE, "--psk needs --psk-identity");
    if ((cli->hc.certfile != NULL) != (cli->hc.keyfile != NULL))
        cli_die(cli, EXIT_USAGE, "--cert and --key must be given together");
    if (cli->id_prefix) {
        static char idbuf[256];
        snprintf(idbuf, sizeof idbuf, "%s%d", cli->id_prefix, (int)getpid());
        cli->hc.client_id = idbuf;
    }
    if (!cli->hc.clean && (!cli->hc.client_id || !cli->hc.client_id[0]))
        cli_die(cli, EXIT_USAGE, "-c needs a client id (-i or -I)");
    if (!cli->hc.client_id && cli->version == MQTT_V31) {
        /* 3.1 has no server-assigned ids. */
        static char idbuf[64];
        snprintf(idbuf, sizeof idbuf, "%s_%d",
                 tool == CLI_PUB   ? "hato_pub"
                 : tool == CLI_SUB ? "hato_sub"
                                   : "hato_rr",
                 (int)getpid());
        cli->hc.client_id = idbuf;
    }
    if (cli->hc.client_id && strlen(cli->hc.client_id) > 65535)
        cli_die(cli, EXIT_USAGE, "-i: client id too long");
    if (cli->ntopics == 0 && !(tool == CLI_SUB && cli->nunsub))
        cli_die(cli, EXIT_USAGE,
                tool == CLI_SUB ? "give a topic to subscribe to (-t or -L)"
                                : "give a topic (-t or -L)");
    for (int i = 0; i < cli->ntopics; i++) {
        const uint8_t *t = (const uint8_t *)cli->topics[i];
        bool ok = tool == CLI_SUB ? mqtt_topic_filter_valid(t, strlen(cli->topics[i]))
                                  : mqtt_topic_name_valid(t, strlen(cli->topics[i]));
        if (!ok)
            cli_die(cli, EXIT_USAGE, "-t: invalid %s '%s'",
                    tool == CLI_SUB ? "topic filter" : "topic (no + or # in a publish topic)",
                    cli->topics[i]);
    }
    if (tool == CLI_PUB || tool == CLI_RR) {
        if (cli->msg_sources == 0)
            cli_die(cli, EXIT_USAGE, "give the message: -m, -f, %s-s or -n",
                    tool == CLI_PUB ? "-l, " : "");
        if (cli->msg_sources > 1)
            cli_die(cli, EXIT_USAGE, "give only one of -m, -f, -l, -s, -n");
    }
    if (tool == CLI_RR && !cli->response_topic)
        cli_die(cli, EXIT_USAGE, "give the response topic with -e");
    if (tool == CLI_RR && cli->version != MQTT_V5)
        cli_warn(cli,
                 "MQTT %s has no response topic property: the responder must know where "
                 "to answer",
                 cli->version == MQTT_V31 ? "3.1" : "3.1.1");
    if (cli->session_expiry_set && cli->version != MQTT_V5)
        cli_die(cli, EXIT_USAGE, "-x needs MQTT 5 (-V 5)");
    for (int k = 0; k < PROPS_N; k++)
        if ((cli->props[k].p.present || cli->props[k].p.sub_id_count) && cli->version != MQTT_V5)
            cli_die(cli, EXIT_USAGE, "-D needs MQTT 5 (-V 5)");
    if (cli->version == MQTT_V5) {
        struct mqtt_props *cp = &cli->props[PROPS_CONNECT].p;
        if (!(cp->present & MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY))) {
            if (cli->session_expiry_set) {
                cp->session_expiry = cli->session_expiry;
                cp->present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
            } else if (!cli->hc.clean) {
                cp->session_expiry = UINT32_MAX;
                cp->present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
            }
        }
        cli->hc.connect_props = cli_props(cli, PROPS_CONNECT);
        cli->hc.will_props = cli_props(cli, PROPS_WILL);
    }
    if (cli->max_inflight)
        cli->hc.max_inflight = (uint16_t)cli->max_inflight;
}

/* ---- tracing (-d) -------------------------------------------------------- */

static const char *trace_id(struct hc_client *c) {
    const char *id = hc_client_id(c);
    return id && id[0] ? id : "(null)";
}

void cli_trace(struct hc_client *c, void *ud, bool sent, const struct mqtt_packet *p) {
    struct cli *cli = ud;
    static unsigned qos0_mid;
    const char *id = trace_id(c);
    const char *dir = sent ? "sending" : "received";
    const char *name = mqtt_type_name(p->type);
    switch (p->type) {
    case MQTT_CONNACK:
        printf("Client %s %s %s (%u)\n", id, dir, name, p->reason);
        break;
    case MQTT_PUBLISH: {
        unsigned mid = p->packet_id;
        if (!mid && sent)
            mid = ++qos0_mid;
        printf("Client %s %s PUBLISH (d%d, q%u, r%d, m%u, '%.*s', ... (%u bytes))\n", id, dir,
               p->publish.dup, p->publish.qos, p->publish.retain, mid, (int)p->publish.topic.len,
               (const char *)p->publish.topic.p, p->publish.payload.len);
        break;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        if (sent) {
            if (p->type == MQTT_PUBACK || p->type == MQTT_PUBREC)
                printf("Client %s sending %s (m%u, rc%u)\n", id, name, p->packet_id, p->reason);
            else
                printf("Client %s sending %s (m%u)\n", id, name, p->packet_id);
        } else {
            if (p->type == MQTT_PUBACK || p->type == MQTT_PUBCOMP)
                printf("Client %s received %s (Mid: %u, RC:%u)\n", id, name, p->packet_id,
                       p->reason);
            else
                printf("Client %s received %s (Mid: %u)\n", id, name, p->packet_id);
        }
        break;
    case MQTT_SUBSCRIBE: {
        uint32_t off = 0;
        struct mqtt_sub_entry e;
        while (mqtt_sub_next(p, &off, &e))
            printf("Client %s sending SUBSCRIBE (Mid: %u, Topic: %.*s, QoS: %u, Options: 0x%02x)\n",
                   id, p->packet_id, (int)e.filter.len, (const char *)e.filter.p, e.qos,
                   (unsigned)((e.no_local ? 0x04 : 0) | (e.retain_as_published ? 0x08 : 0) |
                              (e.retain_handling << 4)));
        break;
    }
    case MQTT_UNSUBSCRIBE: {
        uint32_t off = 0;
        struct mqtt_str f;
        while (mqtt_unsub_next(p, &off, &f))
            printf("Client %s sending UNSUBSCRIBE (Mid: %u, Topic: %.*s)\n", id, p->packet_id,
                   (int)f.len, (const char *)f.p);
        break;
    }
    case MQTT_DISCONNECT:
        if (sent || hc_version(c) != MQTT_V5)
            printf("Client %s %s DISCONNECT\n", id, dir);
        else
            printf("Client %s received DISCONNECT (%u)\n", id, p->reason);
        break;
    default:
        printf("Client %s %s %s\n", id, dir, name);
        break;
    }
    (void)cli;
    fflush(stdout);
}

/* ---- connecting and errors ------------------------------------------------ */

int cli_exit_code(const struct hc_client *c, int err) {
    switch (err) {
    case HC_OK:
        return EXIT_OK;
    case HC_ERR_RESOLVE:
    case HC_ERR_CONNECT:
        return EXIT_CONNECT;
    case HC_ERR_TLS:
        return EXIT_TLS;
    case HC_ERR_REFUSED: {
        uint8_t code = hc_connack_code(c);
        if (hc_version(c) == MQTT_V5)
            return (code == MQTT_RC_NOT_AUTHORIZED || code == MQTT_RC_BAD_USERNAME_OR_PASSWORD ||
                    code == MQTT_RC_BAD_AUTHENTICATION_METHOD || code == MQTT_RC_BANNED)
                       ? EXIT_AUTH
                       : EXIT_REFUSED;
        return (code == MQTT_CONNACK_NOT_AUTHORIZED || code == MQTT_CONNACK_BAD_CREDENTIALS)
                   ? EXIT_AUTH
                   : EXIT_REFUSED;
    }
    case HC_ERR_TIMEOUT:
        return EXIT_TIMEOUT;
    case HC_ERR_PROTOCOL:
        return EXIT_PROTOCOL;
    case HC_ERR_INVAL:
        return EXIT_USAGE;
    default:
        return EXIT_LOST;
    }
}

int cli_report(struct cli *cli, struct hc_client *c, int err) {
    int code = cli_exit_code(c, err);
    const char *text = hc_error_text(c);
    if (code == EXIT_REFUSED || code == EXIT_AUTH)
        cli_die(cli, code, "connection refused by the broker: %s", text);
    if (err == HC_ERR_CONNECT)
        cli_die(cli, code, "cannot connect to %s", text);
    cli_die(cli, code, "%s", text[0] ? text : hc_strerror(err));
}

struct hc_client *cli_connect(struct cli *cli, const struct hc_callbacks *cb0, void *ud) {
    struct hc_callbacks cb = *cb0;
    if (cli->debug)
        cb.on_packet = cli_trace;
    int err;
    struct hc_client *c = hc_new(&cli->hc, &cb, ud, &err);
    if (!c)
        cli_die(cli, err == HC_ERR_TLS ? EXIT_TLS : EXIT_USAGE, "%s", hc_config_error());
    int rc = hc_connect(c, hc_now_ms());
    if (rc != HC_OK)
        cli_report(cli, c, rc);
    return c;
}

int cli_poll(struct hc_client *c, int extra_fd, short *extra_revents, int timeout_ms) {
    uint64_t now = hc_now_ms();
    int t = hc_tick(c, now);
    if (hc_fd(c) < 0)
        return HC_ERR_TIMEOUT;
    if (t < 0 || (timeout_ms >= 0 && timeout_ms < t))
        t = timeout_ms;
    struct pollfd pfd[2] = {
        {.fd = hc_fd(c), .events = (short)(POLLIN | (hc_want_write(c) ? POLLOUT : 0))},
        {.fd = extra_fd, .events = POLLIN},
    };
    int n = poll(pfd, extra_fd >= 0 ? 2 : 1, t);
    if (n < 0 && errno != EINTR)
        return HC_ERR_IO;
    if (extra_revents)
        *extra_revents = extra_fd >= 0 && n > 0 ? pfd[1].revents : 0;
    int rc = hc_handle_events(c, n > 0 ? pfd[0].revents : 0, hc_now_ms());
    /* Messages printed while handling this batch of input appear now: one
     * write per batch instead of one per message. */
    fflush(stdout);
    return rc;
}
