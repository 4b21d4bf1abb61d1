/*
 * mosquitto.conf parser. One table lists every directive hato recognises,
 * with its scope (global, listener, security, bridge...) and value kind;
 * generic code validates and stores the value, a few directives have their
 * own handler. Lines are "KEY VALUE"; the value is the rest of the line,
 * trimmed. Any doubt stops the load with "FILE:LINE: reason".
 */
#include "config/config.h"
#include "config/bridge_conf.h"
#include "config/features.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define MAX_LINE 65536
#define MAX_FILE_SIZE (16L * 1024 * 1024)
#define MQTT_MAX_PAYLOAD 268435455
#define MQTT_MAX_PACKET 268435460 /* 1 + 4 + 268435455 */
#define MAX_AUTO_ID_PREFIX 50

/* ---- parser state and messages ---------------------------------------- */

struct parser {
    struct hato_config *cfg;
    const char *file; /* interned in cfg->files */
    int line;
    int level; /* 0 = main file, 1 = included */
    long cur;  /* index into cfg->listeners, -1 = the default listener */
    char *err;
    size_t errlen;
    char *main_real; /* realpath of the main file, NULL for strings */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct parser *p, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    set_err(p->err, p->errlen, "%s:%d: %s", p->file, p->line, msg);
    return -1;
}

static int add_warning_at(struct hato_config *cfg, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int add_warning_at(struct hato_config *cfg, const char *file, int line, const char *fmt,
                          ...) {
    char msg[768], full[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s:%d: %s", file, line, msg);
    char **w = realloc(cfg->warnings, (cfg->n_warnings + 1) * sizeof *w);
    if (!w)
        return -1;
    cfg->warnings = w;
    if (!(w[cfg->n_warnings] = strdup(full)))
        return -1;
    cfg->n_warnings++;
    return 0;
}

static const char *intern_file(struct hato_config *cfg, const char *name) {
    for (size_t i = 0; i < cfg->n_files; i++)
        if (strcmp(cfg->files[i], name) == 0)
            return cfg->files[i];
    char **f = realloc(cfg->files, (cfg->n_files + 1) * sizeof *f);
    if (!f)
        return NULL;
    cfg->files = f;
    if (!(f[cfg->n_files] = strdup(name)))
        return NULL;
    return f[cfg->n_files++];
}

/* ---- listeners ---------------------------------------------------------- */

static const size_t listener_strings[] = {
    offsetof(struct hato_listener, bind_address),
    offsetof(struct hato_listener, unix_path),
    offsetof(struct hato_listener, bind_interface),
    offsetof(struct hato_listener, mount_point),
    offsetof(struct hato_listener, protocol),
    offsetof(struct hato_listener, http_dir),
    offsetof(struct hato_listener, cafile),
    offsetof(struct hato_listener, capath),
    offsetof(struct hato_listener, certfile),
    offsetof(struct hato_listener, keyfile),
    offsetof(struct hato_listener, tls_version),
    offsetof(struct hato_listener, ciphers),
    offsetof(struct hato_listener, ciphers_tls13),
    offsetof(struct hato_listener, crlfile),
    offsetof(struct hato_listener, dhparamfile),
    offsetof(struct hato_listener, psk_hint),
    offsetof(struct hato_listener, tls_engine),
    offsetof(struct hato_listener, tls_engine_kpass_sha1),
    offsetof(struct hato_listener, tls_keyform),
    offsetof(struct hato_listener, auto_id_prefix),
    offsetof(struct hato_listener, password_file),
    offsetof(struct hato_listener, acl_file),
    offsetof(struct hato_listener, psk_file),
};
#define N_LISTENER_STRINGS (sizeof listener_strings / sizeof listener_strings[0])

static char **lstr(struct hato_listener *l, size_t off) {
    return (char **)(void *)((char *)l + off);
}

static void listener_init(struct hato_listener *l, const char *file, int line) {
    memset(l, 0, sizeof *l);
    l->socket_domain = AF_UNSPEC;
    l->max_connections = -1;
    l->protocol = strdup("mqtt"); /* NULL after OOM is repaired by finish */
    l->max_qos = 2;
    l->max_topic_alias = 10;
    l->max_topic_alias_broker = 10;
    l->accept_protocol_versions = HATO_PROTO_ALL;
    l->allow_anonymous = HATO_UNSET;
    l->allow_zero_length_clientid = HATO_UNSET;
    l->file = file;
    l->line = line;
}

static void strlist_free(char **v, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* A deep copy of a list of n strings, or NULL (also for n == 0). */
static int strlist_copy(char ***dst, size_t *ndst, char *const *src, size_t n) {
    *dst = NULL;
    *ndst = 0;
    if (!n)
        return 0;
    if (!(*dst = calloc(n, sizeof(char *))))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!((*dst)[i] = strdup(src[i])))
            return -1;
        (*ndst)++;
    }
    return 0;
}

static int strlist_add(char ***v, size_t *n, const char *value) {
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv)
        return -1;
    *v = nv;
    if (!(nv[*n] = strdup(value)))
        return -1;
    (*n)++;
    return 0;
}

static void listener_free(struct hato_listener *l) {
    for (size_t i = 0; i < N_LISTENER_STRINGS; i++)
        free(*lstr(l, listener_strings[i]));
    strlist_free(l->websockets_origins, l->n_websockets_origins);
    strlist_free(l->websockets_trusted_proxies, l->n_websockets_trusted_proxies);
    memset(l, 0, sizeof *l);
}

/* Deep copy of src into dst (uninitialised). Returns -1 on OOM (dst freed). */
static int listener_copy(struct hato_listener *dst, const struct hato_listener *src) {
    *dst = *src;
    for (size_t i = 0; i < N_LISTENER_STRINGS; i++)
        *lstr(dst, listener_strings[i]) = NULL;
    dst->websockets_origins = dst->websockets_trusted_proxies = NULL;
    dst->n_websockets_origins = dst->n_websockets_trusted_proxies = 0;
    for (size_t i = 0; i < N_LISTENER_STRINGS; i++) {
        const char *s = *lstr((struct hato_listener *)src, listener_strings[i]);
        if (s && !(*lstr(dst, listener_strings[i]) = strdup(s)))
            goto oom;
    }
    if (strlist_copy(&dst->websockets_origins, &dst->n_websockets_origins, src->websockets_origins,
                     src->n_websockets_origins) < 0 ||
        strlist_copy(&dst->websockets_trusted_proxies, &dst->n_websockets_trusted_proxies,
                     src->websockets_trusted_proxies, src->n_websockets_trusted_proxies) < 0)
        goto oom;
    return 0;
oom:
    listener_free(dst);
    return -1;
}

/* Append a slot to cfg->listeners; returns it (uninitialised) or NULL. */
static struct hato_listener *listener_append(struct hato_config *cfg) {
    struct hato_listener *v = realloc(cfg->listeners, (cfg->n_listeners + 1) * sizeof *v);
    if (!v)
        return NULL;
    cfg->listeners = v;
    return &v[cfg->n_listeners++];
}

static struct hato_listener *cur_listener(struct parser *p) {
    if (p->cur >= 0)
        return &p->cfg->listeners[p->cur];
    if (!p->cfg->default_touched_file) {
        p->cfg->default_touched_file = p->file;
        p->cfg->default_touched_line = p->line;
    }
    return &p->cfg->default_listener;
}

/* ---- value helpers ------------------------------------------------------ */

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static char *trim(char *s) {
    while (is_space(*s))
        s++;
    size_t n = strlen(s);
    while (n && is_space(s[n - 1]))
        s[--n] = '\0';
    return s;
}

/*
 * Split the first whitespace-separated word off *rest. Returns the word
 * (NUL-terminated in place) or NULL at the end; a word starting with '#'
 * ends the line (a trailing comment, as Mosquitto allows after listener).
 */
static char *next_word(char **rest) {
    char *s = *rest;
    while (is_space(*s))
        s++;
    if (*s == '\0' || *s == '#') {
        *rest = s + strlen(s);
        return NULL;
    }
    char *w = s;
    while (*s && !is_space(*s))
        s++;
    if (*s)
        *s++ = '\0';
    *rest = s;
    return w;
}

/* The value must be exactly one word (a trailing "# comment" is allowed). */
static int one_word(struct parser *p, const char *key, char *value, char **word) {
    char *rest = value;
    *word = next_word(&rest);
    if (!*word)
        return fail(p, "%s: missing value", key);
    char *extra = next_word(&rest);
    if (extra)
        return fail(p, "%s: unexpected '%s' after the value", key, extra);
    return 0;
}

static int parse_bool_word(const char *w, bool *out) {
    if (strcmp(w, "true") == 0 || strcmp(w, "1") == 0)
        *out = true;
    else if (strcmp(w, "false") == 0 || strcmp(w, "0") == 0)
        *out = false;
    else
        return -1;
    return 0;
}

/* Strict decimal integer in [lo, hi]: optional '-', digits, nothing else. */
/* A handler's one-word boolean value; a bad one fails with its line. */
static int bool_value(struct parser *p, const char *key, char *value, bool *out) {
    char *w;
    if (one_word(p, key, value, &w) < 0)
        return -1;
    if (parse_bool_word(w, out) < 0)
        return fail(p, "%s: expected true or false, got '%s'", key, w);
    return 0;
}

static int parse_int_word(const char *w, int64_t lo, int64_t hi, int64_t *out) {
    const char *s = w;
    if (*s == '-')
        s++;
    if (*s < '0' || *s > '9')
        return -1;
    for (const char *q = s; *q; q++)
        if (*q < '0' || *q > '9')
            return -1;
    errno = 0;
    char *end;
    long long v = strtoll(w, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int bad_int(struct parser *p, const char *key, int64_t lo, int64_t hi, const char *w) {
    return fail(p, "%s: expected an integer %" PRId64 "..%" PRId64 ", got '%s'", key, lo, hi, w);
}

static int set_string(struct parser *p, char **dst, const char *value) {
    char *s = strdup(value);
    if (!s)
        return fail(p, "out of memory");
    free(*dst);
    *dst = s;
    return 0;
}

static int bad_choice(struct parser *p, const char *key, const char *const *choices,
                      const char *w) {
    char list[256] = "";
    size_t n = 0;
    for (size_t i = 0; choices[i]; i++)
        n += (size_t)snprintf(list + n, n < sizeof list ? sizeof list - n : 0, "%s%s",
                              i ? ", " : "", choices[i]);
    return fail(p, "%s: expected one of %s, got '%s'", key, list, w);
}

static int find_choice(const char *const *choices, const char *w) {
    for (int i = 0; choices[i]; i++)
        if (strcmp(choices[i], w) == 0)
            return i;
    return -1;
}

/* "3600", "3600s", "2h", "1d", "3w", "2m" (30 days), "1y" (365 days). */
static int parse_duration(const char *w, int64_t *out) {
    size_t n = strlen(w);
    if (n == 0)
        return -1;
    int64_t mult = 1;
    size_t digits = n;
    switch (w[n - 1]) {
    case 's':
        mult = 1;
        digits = n - 1;
        break;
    case 'h':
        mult = 3600;
        digits = n - 1;
        break;
    case 'd':
        mult = 86400;
        digits = n - 1;
        break;
    case 'w':
        mult = 86400 * 7;
        digits = n - 1;
        break;
    case 'm':
        mult = 86400 * 30;
        digits = n - 1;
        break;
    case 'y':
        mult = 86400 * 365;
        digits = n - 1;
        break;
    default:
        break;
    }
    if (digits == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < digits; i++) {
        if (w[i] < '0' || w[i] > '9')
            return -1;
        int d = w[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v > INT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

static bool utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* ---- the directive table ------------------------------------------------ */

/*
 * One row per directive: everything hato knows about it. The parser,
 * `hato --list-directives`, the reload (which directives keep their running
 * value) and the check of docs/configuration.md (tests/integration/
 * test_config_table.py) all read this table, so adding a directive is
 * adding a row, e.g.
 *
 *   G_INT("max_keepalive", max_keepalive, 0, 65535, DOC("longest keep-alive ...")),
 *
 * and, optionally after the value arguments: RESTART (SIGHUP keeps the
 * running value), IDENT (part of a listener's identity), STORED (accepted,
 * no effect yet: a warning when used), ACCEPTED (accepted, nothing to do),
 * REFUSED (start-up stops), DEF("text") (the default, when it is not the
 * value hato_config_init leaves in the field), TYPE("text") (for FN rows),
 * IN(SC_...) (the scope of an FN row). Reload defaults: listener options
 * apply to new connections, everything else live.
 */
enum scope {
    SC_NONE,     /* FN row without IN(): shown as global */
    SC_GLOBAL,   /* field of hato_config */
    SC_LISTENER, /* field of the current listener (or the default one) */
    SC_SECURITY, /* global, or the listener's when per_listener_settings */
    SC_BRIDGE,   /* bridge option (bridge_conf.c) */
    SC_PLUGIN,   /* plugin loading: refused */
};

enum kind {
    K_BOOL,     /* bool (listener tri-state int for SC_SECURITY) */
    K_TRI,      /* int HATO_UNSET/0/1 */
    K_INT,      /* int in [min, max] */
    K_I64,      /* int64_t in [min, max] */
    K_STR,      /* char *, the rest of the line */
    K_ENUM_STR, /* char *, one of choices */
    K_ENUM_INT, /* int index into choices */
    K_FN,       /* custom handler */
    K_BRIDGE,   /* bridge option: bridge_conf_option, or refused */
    K_PLUGIN,   /* plugin loading: error */
    K_OBSOLETE, /* removed in Mosquitto 2.0: warning, ignored */
};

/* Row status (docs/configuration.md's status column). */
enum status {
    ST_IMPLEMENTED, /* parsed and acted on */
    ST_STORED,      /* parsed, no effect yet: a warning when used */
    ST_ACCEPTED,    /* parsed, nothing to do in hato (autosave_*) */
    ST_REFUSED,     /* start-up stops */
    ST_OBSOLETE,    /* removed in Mosquitto 2.0: warning */
};

/* Reload class of a row; RL_DEFAULT resolves by scope (key_reload). */
enum reload_row {
    RL_DEFAULT, /* listener options: new connections; everything else: live */
    RL_LIVE,
    RL_NEW_CONN,
    RL_IDENT,   /* part of a listener's identity: a change reopens it */
    RL_RESTART, /* SIGHUP keeps the running value */
};

struct key;
typedef int (*key_fn)(struct parser *p, const struct key *k, char *value);

struct key {
    const char *name;
    unsigned char scope;
    unsigned char kind;
    size_t goff; /* offset in struct hato_config */
    size_t loff; /* offset in struct hato_listener */
    int64_t min, max;
    const char *const *choices;
    key_fn fn;
    unsigned char reload; /* enum reload_row */
    unsigned char status; /* enum status */
    const char *def;      /* default as text; NULL = the initialised field's value */
    const char *type;     /* value as text for FN rows; NULL = from kind */
    const char *doc;      /* one line for --list-directives */
};

/* Row options (after the value arguments of the row macros). */
#define DOC(text) .doc = (text)
#define DEF(text) .def = (text)
#define TYPE(text) .type = (text)
#define IN(sc) .scope = (sc)
#define RESTART .reload = RL_RESTART
#define IDENT .reload = RL_IDENT
#define LIVE .reload = RL_LIVE
#define NEW_CONN .reload = RL_NEW_CONN
#define STORED .status = ST_STORED
#define ACCEPTED .status = ST_ACCEPTED
#define REFUSED .status = ST_REFUSED

#define CO(f) offsetof(struct hato_config, f)
#define LO(f) offsetof(struct hato_listener, f)
#define G_BOOL(n, f, ...)                                                                          \
    { .name = n, .scope = SC_GLOBAL, .kind = K_BOOL, .goff = CO(f), __VA_ARGS__ }
#define G_INT(n, f, lo, hi, ...)                                                                   \
    {                                                                                              \
        .name = n, .scope = SC_GLOBAL, .kind = K_INT, .goff = CO(f), .min = lo, .max = hi,         \
        __VA_ARGS__                                                                                \
    }
#define G_I64(n, f, lo, hi, ...)                                                                   \
    {                                                                                              \
        .name = n, .scope = SC_GLOBAL, .kind = K_I64, .goff = CO(f), .min = lo, .max = hi,         \
        __VA_ARGS__                                                                                \
    }
#define G_STR(n, f, ...)                                                                           \
    { .name = n, .scope = SC_GLOBAL, .kind = K_STR, .goff = CO(f), __VA_ARGS__ }
#define G_ENUM(n, f, c, ...)                                                                       \
    { .name = n, .scope = SC_GLOBAL, .kind = K_ENUM_INT, .goff = CO(f), .choices = c, __VA_ARGS__ }
#define L_BOOL(n, f, ...)                                                                          \
    { .name = n, .scope = SC_LISTENER, .kind = K_BOOL, .loff = LO(f), __VA_ARGS__ }
#define L_TRI(n, f, ...)                                                                           \
    { .name = n, .scope = SC_LISTENER, .kind = K_TRI, .loff = LO(f), __VA_ARGS__ }
#define L_INT(n, f, lo, hi, ...)                                                                   \
    {                                                                                              \
        .name = n, .scope = SC_LISTENER, .kind = K_INT, .loff = LO(f), .min = lo, .max = hi,       \
        __VA_ARGS__                                                                                \
    }
#define L_STR(n, f, ...)                                                                           \
    { .name = n, .scope = SC_LISTENER, .kind = K_STR, .loff = LO(f), __VA_ARGS__ }
#define L_ENUM(n, f, c, ...)                                                                       \
    {                                                                                              \
        .name = n, .scope = SC_LISTENER, .kind = K_ENUM_STR, .loff = LO(f), .choices = c,          \
        __VA_ARGS__                                                                                \
    }
#define S_STR(n, f, ...)                                                                           \
    { .name = n, .scope = SC_SECURITY, .kind = K_STR, .goff = CO(f), .loff = LO(f), __VA_ARGS__ }
#define S_TRI(n, f, ...)                                                                           \
    { .name = n, .scope = SC_SECURITY, .kind = K_TRI, .goff = CO(f), .loff = LO(f), __VA_ARGS__ }
#define S_BOOL(n, f, ...)                                                                          \
    { .name = n, .scope = SC_SECURITY, .kind = K_BOOL, .goff = CO(f), .loff = LO(f), __VA_ARGS__ }
#define FN(n, h, ...)                                                                              \
    { .name = n, .kind = K_FN, .fn = h, __VA_ARGS__ }
#define BRIDGE(n, ty, text)                                                                        \
    { .name = n, .scope = SC_BRIDGE, .kind = K_BRIDGE, .type = ty, .doc = text }
#define BRIDGE_NO(n, why)                                                                          \
    {                                                                                              \
        .name = n, .scope = SC_BRIDGE, .kind = K_BRIDGE, .status = ST_REFUSED,                     \
        .doc = "bridge option hato does not implement: " why                                       \
    }
#define PLUGIN(n)                                                                                  \
    {                                                                                              \
        .name = n, .scope = SC_PLUGIN, .kind = K_PLUGIN, .status = ST_REFUSED,                     \
        .doc = "plugin loading: start-up stops (plugins are not supported)"                        \
    }
#define OBSOLETE(n)                                                                                \
    {                                                                                              \
        .name = n, .scope = SC_GLOBAL, .kind = K_OBSOLETE, .status = ST_OBSOLETE,                  \
        .doc = "removed in Mosquitto 2.0: a warning, no effect"                                    \
    }

static const char *const protocols[] = {"mqtt", "websockets", "metrics", "admin", NULL};
/* TLS 1.1 and older are refused (a config error with its line). */
static const char *const tls_versions[] = {"tlsv1.3", "tlsv1.2", NULL};
static const char *const keyforms[] = {"pem", "engine", NULL};
static const char *const sync_modes[] = {"always", "batch", "none", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

static int h_listener(struct parser *p, const struct key *k, char *value);
static int h_port(struct parser *p, const struct key *k, char *value);
static int h_bind_address(struct parser *p, const struct key *k, char *value);
static int h_socket_domain(struct parser *p, const struct key *k, char *value);
static int h_mount_point(struct parser *p, const struct key *k, char *value);
static int h_accept_versions(struct parser *p, const struct key *k, char *value);
static int h_ws_origin(struct parser *p, const struct key *k, char *value);
static int h_ws_trusted(struct parser *p, const struct key *k, char *value);
static int h_auto_id_prefix(struct parser *p, const struct key *k, char *value);
static int h_listener_auto_id_prefix(struct parser *p, const struct key *k, char *value);
static int h_max_packet_size(struct parser *p, const struct key *k, char *value);
static int h_expiration(struct parser *p, const struct key *k, char *value);
static int h_per_listener(struct parser *p, const struct key *k, char *value);
static int h_control_api(struct parser *p, const struct key *k, char *value);
static int h_admin_console_dir(struct parser *p, const struct key *k, char *value);
/* A cluster name or node name: one NATS token and part of stream and bucket names. */
static bool cluster_name_ok(const char *s) {
    size_t n = strlen(s);
    if (!n || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

static int h_dup_messages(struct parser *p, const struct key *k, char *value);
static int h_log_dest(struct parser *p, const struct key *k, char *value);
static int h_log_type(struct parser *p, const struct key *k, char *value);
static int h_include_dir(struct parser *p, const struct key *k, char *value);
static int h_connection(struct parser *p, const struct key *k, char *value);
static int h_proxy(struct parser *p, const struct key *k, char *value);
static int h_plugin(struct parser *p, const struct key *k, char *value);
static int h_deny_special(struct parser *p, const struct key *k, char *value);

/* A row written positionally (name, scope, kind, offsets, range, choices,
 * handler) leaves the later fields zero: the defaults. Allowed, so that rows
 * and macros from before the table had them still compile. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct key keys[] = {
    /* Listeners. */
    FN("listener", h_listener, IN(SC_LISTENER), IDENT, TYPE("PORT [ADDRESS] or 0 PATH"),
       DEF("none"),
       DOC("starts a listener on PORT (all addresses, or ADDRESS; 0 PATH: a Unix socket)")),
    FN("port", h_port, IN(SC_LISTENER), IDENT, TYPE("integer 1..65535"), DEF("1883"),
       DOC("the default listener's port (deprecated in Mosquitto)")),
    FN("bind_address", h_bind_address, IN(SC_LISTENER), IDENT, TYPE("host or IP"), DEF("all"),
       DOC("the default listener's address (deprecated in Mosquitto)")),
    FN("socket_domain", h_socket_domain, IN(SC_LISTENER), IDENT, TYPE("ipv4|ipv6"), DEF("both"),
       DOC("address family of the listener (AF_INET or AF_INET6 only)")),
    L_STR("bind_interface", bind_interface, IDENT,
          DOC("bind the listener to a network interface (SO_BINDTODEVICE)")),
    FN("mount_point", h_mount_point, IN(SC_LISTENER), TYPE("topic prefix, no + or #"), DEF("none"),
       DOC("prefix put before every topic of the listener's clients")),
    L_INT("max_connections", max_connections, -1, INT_MAX,
          DOC("most connections open at once on the listener; -1 = unlimited")),
    L_ENUM(
        "protocol", protocol, protocols, IDENT,
        DOC("what the listener speaks: MQTT, MQTT over WebSocket, HTTP /metrics or the admin API "
            "(hato)")),
    L_INT("max_qos", max_qos, 0, 2, DOC("highest QoS granted and accepted on the listener")),
    L_INT("maximum_qos", max_qos, 0, 2, DOC("alias of max_qos")),
    L_INT("max_topic_alias", max_topic_alias, 0, 65535,
          DOC("topic aliases an MQTT 5 client may use towards the broker")),
    L_INT("max_topic_alias_broker", max_topic_alias_broker, 0, 65535,
          DOC("topic aliases the broker may use towards a client")),
    L_BOOL("use_username_as_clientid", use_username_as_clientid,
           DOC("the user name replaces the client id")),
    FN("accept_protocol_versions", h_accept_versions, IN(SC_LISTENER), TYPE("list of 3, 4, 5"),
       DEF("3, 4, 5"), DOC("MQTT protocol levels accepted on the listener")),
    FN("enable_proxy_protocol", h_proxy, IN(SC_LISTENER), TYPE("integer 1..2"), DEF("off"),
       DOC("every connection starts with a PROXY protocol header of that version")),
    L_BOOL("proxy_protocol_v2_require_tls", proxy_protocol_v2_require_tls,
           DOC("a PROXY v2 header must say the client used TLS to the proxy")),
    L_STR("http_dir", http_dir, DOC("files served to plain HTTP GET/HEAD on a WebSocket listener")),
    L_BOOL("metrics_auth", metrics_auth,
           DOC("a metrics listener asks for HTTP basic auth against the password file (hato)")),
    FN("websockets_origin", h_ws_origin, IN(SC_LISTENER), TYPE("string, may repeat"), DEF("any"),
       DOC("Origin values a WebSocket upgrade may carry")),
    FN("websockets_trusted_proxy", h_ws_trusted, IN(SC_LISTENER), TYPE("ADDR[/BITS], may repeat"),
       DEF("none"), DOC("proxies whose X-Forwarded-For names the WebSocket client (hato)")),
    /* TLS, per listener. */
    L_STR("cafile", cafile, DOC("CA certificates for client certificates")),
    L_STR("capath", capath, DOC("directory of CA certificates for client certificates")),
    L_STR("certfile", certfile, DOC("the listener's certificate chain (PEM)")),
    L_STR("keyfile", keyfile, DOC("the listener's private key (PEM, not encrypted)")),
    L_ENUM("tls_version", tls_version, tls_versions, DEF("tlsv1.2"),
           DOC("lowest TLS version accepted")),
    L_STR("ciphers", ciphers, DOC("TLS 1.2 cipher list (OpenSSL syntax)")),
    L_STR("ciphers_tls1.3", ciphers_tls13, DOC("TLS 1.3 cipher suites (OpenSSL syntax)")),
    L_STR("crlfile", crlfile, DOC("certificate revocation list (PEM) for client certificates")),
    L_STR("dhparamfile", dhparamfile, DOC("Diffie-Hellman parameters (PEM)")),
    L_STR("psk_hint", psk_hint, DOC("TLS-PSK hint; turns on PSK with psk_file")),
    L_STR("tls_engine", tls_engine, REFUSED, DOC("OpenSSL engine: start-up stops (no engines)")),
    L_STR("tls_engine_kpass_sha1", tls_engine_kpass_sha1, REFUSED,
          DOC("engine key password: start-up stops (no engines)")),
    L_ENUM("tls_keyform", tls_keyform, keyforms, REFUSED, DEF("pem"),
           DOC("key form pem or engine: start-up stops (no engines)")),
    L_BOOL("require_certificate", require_certificate,
           DOC("clients must present a certificate the CA signed")),
    L_BOOL("use_identity_as_username", use_identity_as_username,
           DOC("the certificate's CN (or the PSK identity) is the user name")),
    L_BOOL("use_subject_as_username", use_subject_as_username,
           DOC("the certificate's subject (RFC 2253) is the user name")),
    L_BOOL("disable_client_cert_date_checks", disable_client_cert_date_checks,
           DOC("client certificates are accepted outside their validity dates")),
    /* Security. */
    FN("per_listener_settings", h_per_listener, IN(SC_GLOBAL), TYPE("bool"), DEF("false"),
       DOC("security directives apply to the current listener instead of all")),
    S_TRI("allow_anonymous", allow_anonymous, DEF("true local-only, else false"),
          DOC("clients without a user name may connect")),
    S_BOOL("allow_zero_length_clientid", allow_zero_length_clientid,
           DOC("a client may send an empty client id and get one assigned")),
    FN("auto_id_prefix", h_auto_id_prefix, IN(SC_SECURITY), TYPE("1..50 chars, no + # /"),
       DEF("auto-"), DOC("prefix of assigned client ids")),
    S_STR("password_file", password_file,
          DOC("mosquitto_passwd file of users and password hashes")),
    S_STR("acl_file", acl_file, DOC("Mosquitto ACL file: topics each user may read and write")),
    G_STR("admin_password_file", admin_password_file,
          DOC("accounts of the admin API (protocol admin), hato-passwd format (hato)")),
    FN("admin_console_dir", h_admin_console_dir, IN(SC_GLOBAL), TYPE("path"),
       DEF("the installed console (DATADIR/hato/console)"),
       DOC("directory of the web console's files served under /console/ on admin listeners "
           "(hato)")),
    S_STR("psk_file", psk_file, DOC("identity:hexkey lines for TLS-PSK listeners")),
    L_TRI("listener_allow_anonymous", allow_anonymous, DEF("the global value"),
          DOC("allow_anonymous for this listener only")),
    FN("listener_auto_id_prefix", h_listener_auto_id_prefix, IN(SC_LISTENER),
       TYPE("1..50 chars, no + # /"), DEF("the global value"),
       DOC("auto_id_prefix for this listener only")),
    G_STR("clientid_prefixes", clientid_prefixes,
          DOC("only client ids starting with this may connect (deprecated in Mosquitto)")),
    FN("auth_plugin_deny_special_chars", h_deny_special, IN(SC_PLUGIN), TYPE("bool"), DEF("true"),
       RESTART, DOC("refuse + and # in user names and client ids given to auth plugins (v2-4)")),
    FN("plugin", h_plugin, IN(SC_PLUGIN), TYPE("path"), RESTART,
       DOC("load a Mosquitto plugin (API v5, or an auth plugin v2-4); docs/plugins.md")),
    FN("auth_plugin", h_plugin, IN(SC_PLUGIN), TYPE("path"), RESTART,
       DOC("load a Mosquitto plugin (the older name of 'plugin')")),
    FN("global_plugin", h_plugin, IN(SC_PLUGIN), TYPE("path"), RESTART,
       DOC("load a plugin for every listener even with per_listener_settings true")),
    PLUGIN("plugin_load"),
    PLUGIN("plugin_use"),
    /* Limits. */
    G_INT("max_inflight_messages", max_inflight_messages, 0, 65535,
          DOC("QoS 1/2 messages in flight per client; 0 = no limit")),
    G_I64("max_inflight_bytes", max_inflight_bytes, 0, INT64_MAX,
          DOC("payload bytes in flight per client; 0 = no limit")),
    G_INT("max_queued_messages", max_queued_messages, 0, INT_MAX,
          DOC("messages queued per client beyond the in-flight window; 0 = no limit")),
    G_I64("max_queued_bytes", max_queued_bytes, 0, INT64_MAX,
          DOC("payload bytes queued per client; 0 = no limit")),
    G_BOOL("queue_qos0_messages", queue_qos0_messages,
           DOC("QoS 0 messages are queued for offline persistent sessions")),
    G_INT("message_size_limit", message_size_limit, 0, MQTT_MAX_PAYLOAD,
          DOC("largest PUBLISH payload accepted; 0 = the MQTT maximum")),
    FN("max_packet_size", h_max_packet_size, IN(SC_GLOBAL), TYPE("0 or integer 20..268435460"),
       DEF("0"), DOC("largest packet accepted; 0 = the MQTT maximum")),
    G_INT("max_keepalive", max_keepalive, 0, 65535,
          DOC("longest keep-alive a client may ask for (MQTT 5: Server Keep Alive)")),
    G_BOOL("retain_available", retain_available, DOC("retained messages are supported")),
    FN("persistent_client_expiration", h_expiration, IN(SC_GLOBAL),
       TYPE("duration (s, h, d, w, m, y)"), DEF("never"),
       DOC("persistent sessions of clients gone this long are removed")),
    G_BOOL("upgrade_outgoing_qos", upgrade_outgoing_qos,
           DOC("deliver at the subscription's QoS even when published lower")),
    G_BOOL("set_tcp_nodelay", set_tcp_nodelay, DOC("TCP_NODELAY on client sockets")),
    G_I64("memory_limit", memory_limit, 0, INT64_MAX,
          DOC("payload bytes of the messages held; a PUBLISH beyond is refused; 0 = no limit")),
    G_INT("global_max_clients", global_max_clients, -1, INT_MAX,
          DOC("most client sessions in total; -1 = unlimited")),
    G_INT("global_max_connections", global_max_connections, -1, INT_MAX,
          DOC("most connections in total; -1 = unlimited")),
    G_INT("retain_expiry_interval", retain_expiry_interval, 0, 10000000,
          DOC("Mosquitto's sweep period for expired retained messages; hato removes them as they "
              "expire")),
    FN("allow_duplicate_messages", h_dup_messages, IN(SC_GLOBAL), TYPE("bool"), DEF("true"),
       ACCEPTED,
       DOC("hato sends one copy per client for overlapping subscriptions; true is warned about")),
    G_BOOL("check_retain_source", check_retain_source,
           DOC("a retained message is re-checked against its publisher's ACL")),
    G_INT("sys_interval", sys_interval, 0, 65535, DOC("seconds between $SYS updates; 0 = none")),
    /* Persistence. */
    G_BOOL("persistence", persistence, RESTART,
           DOC("sessions, queued and retained messages are kept on disk (LMDB)")),
    G_BOOL("retained_persistence", persistence, RESTART, DOC("alias of persistence")),
    G_STR("persistence_location", persistence_location, RESTART, DEF("current directory"),
          DOC("directory of the store")),
    G_STR("persistence_file", persistence_file, RESTART, DOC("name of the store file")),
    G_INT("autosave_interval", autosave_interval, 0, INT_MAX, RESTART, ACCEPTED,
          DOC("unnecessary: every change is committed as it happens")),
    G_BOOL("autosave_on_changes", autosave_on_changes, RESTART, ACCEPTED,
           DOC("unnecessary: every change is committed as it happens")),
    /* Process. */
    FN("include_dir", h_include_dir, IN(SC_GLOBAL), TYPE("directory"), DEF("none"),
       DOC("read DIR/*.conf, sorted by name, at this point")),
    G_STR("pid_file", pid_file, RESTART, DOC("file the process id is written to")),
    G_STR("user", user, RESTART, DOC("account hato becomes when started as root")),
    /* Logging. */
    FN("log_dest", h_log_dest, IN(SC_GLOBAL), TYPE("stderr|stdout|syslog|topic|file PATH|none"),
       DEF("stderr"), DOC("where log lines go; may repeat")),
    FN("log_type", h_log_type, IN(SC_GLOBAL), TYPE("error|warning|notice|information|...|all|none"),
       DEF("error, warning, notice, information"), DOC("which log lines are written; may repeat")),
    G_INT("log_facility", log_facility, 0, 7, DEF("daemon"), DOC("syslog facility LOG_LOCAL0..7")),
    G_BOOL("log_timestamp", log_timestamp, DOC("a timestamp before each log line")),
    G_STR("log_timestamp_format", log_timestamp_format, DEF("seconds since epoch"),
          DOC("strftime format of the timestamp")),
    G_BOOL("connection_messages", connection_messages,
           DOC("log connections, disconnections and takeovers")),
    G_INT("websockets_log_level", websockets_log_level, 0, INT_MAX,
          DOC("above 0: the websockets log type (one line per upgrade)")),
    G_INT("websockets_headers_size", websockets_headers_size, 0, 65535, DEF("0 (4096)"),
          DOC("largest HTTP request head a WebSocket listener reads")),
    G_INT("packet_buffer_size", websockets_headers_size, 0, 65535, DEF("0 (4096)"),
          DOC("alias of websockets_headers_size")),
    FN("enable_control_api", h_control_api, IN(SC_GLOBAL), TYPE("bool"), DEF("false"),
       DOC("Mosquitto 2.1's $CONTROL/broker/v1 API: true is refused (hato has none)")),
    /* hato's own. */
    G_INT("threads", threads, 0, 256, RESTART, DOC("worker threads; 0 = one per CPU (hato)")),
    /* Clustering over NATS (hato's own; docs/cluster.md). */
    G_STR("cluster_nats_url", cluster_nats_url, RESTART, DEF("none (alone)"),
          DOC("NATS servers of the cluster, comma-separated nats:// or tls:// URLs (hato)")),
    G_STR("cluster_name", cluster_name, RESTART, DEF("hato"),
          DOC("nodes with the same cluster name are one broker (hato)")),
    G_STR("node_name", node_name, RESTART, DEF("the host name"),
          DOC("this node's name, unique in its cluster (hato)")),
    G_STR("cluster_nats_user", cluster_nats_user, RESTART, DOC("user name for NATS (hato)")),
    G_STR("cluster_nats_password", cluster_nats_password, RESTART, DOC("password for NATS (hato)")),
    G_STR("cluster_nats_cafile", cluster_nats_cafile, RESTART,
          DOC("CA certificates NATS servers are checked against; turns TLS on (hato)")),
    G_STR("cluster_nats_certfile", cluster_nats_certfile, RESTART,
          DOC("client certificate for NATS (hato)")),
    G_STR("cluster_nats_keyfile", cluster_nats_keyfile, RESTART,
          DOC("key of cluster_nats_certfile (hato)")),
    G_INT("cluster_replicas", cluster_replicas, 1, 5, RESTART, DEF("1"),
          DOC("JetStream replicas of the cluster's streams and buckets (hato)")),
    G_ENUM("persistence_sync", persistence_sync, sync_modes, RESTART,
           DOC("whether a commit waits for fsync before acknowledging (hato)")),
    G_ENUM("log_format", log_format, log_formats, DOC("log lines as text or JSON objects (hato)")),
    G_INT("max_subscriptions_per_client", max_subscriptions_per_client, 0, INT_MAX,
          DOC("most subscriptions one session may hold; 0 = unlimited (hato)")),
    G_INT("connect_timeout", connect_timeout, 1, 3600,
          DOC("seconds a new connection has to send CONNECT (hato)")),
    G_INT("auth_fail_delay", auth_fail_delay, 0, 60000,
          DOC("ms before a failed login is answered, doubling per failure (hato)")),
    G_INT("auth_fail_delay_max", auth_fail_delay_max, 0, 3600000,
          DOC("longest failed-login delay in ms (hato)")),
    G_I64("max_output_buffer", max_output_buffer, 0, 1 << 30,
          DOC("unsent bytes per connection above which QoS 0 is dropped (hato)")),
    G_I64("output_soft_limit", output_soft_limit, 0, 1 << 30,
          DOC("unsent bytes of a subscriber above which its publishers are not read; "
              "0 = max_output_buffer / 4 (hato)")),
    G_INT("output_stall_timeout", output_stall_timeout, 0, 3600,
          DOC("seconds without progress after which a held-back subscriber is stalled (hato)")),
    G_INT("max_topic_levels", max_topic_levels, 0, 65536,
          DOC("levels in a topic name or filter; 0 = no limit (hato)")),
    /* Removed from Mosquitto 2.0: accepted with a warning. */
    OBSOLETE("retry_interval"),
    OBSOLETE("store_clean_interval"),
    /* Bridges. */
    FN("connection", h_connection, IN(SC_BRIDGE), TYPE("name"), DEF("none"),
       DOC("starts a bridge section: the options after it belong to bridge NAME "
           "(docs/bridges.md)")),
    BRIDGE("address", "host[:port] ...",
           "the remote broker: a fail-over list; ws:// wss:// URLs too"),
    BRIDGE("addresses", "host[:port] ...", "alias of address"),
    BRIDGE("bridge_alpn", "protocol", "ALPN protocol of the TLS connection to the remote broker"),
    BRIDGE("bridge_attempt_unsubscribe", "bool",
           "unsubscribe on the remote from out-only topics after connecting [true]"),
    BRIDGE("bridge_bind_address", "address", "local address the remote connection binds to"),
    BRIDGE("bridge_cafile", "path", "CA certificates to check the remote broker with (TLS on)"),
    BRIDGE("bridge_capath", "path", "directory of CA certificates (TLS on)"),
    BRIDGE("bridge_certfile", "path", "client certificate for the remote broker (PEM)"),
    BRIDGE_NO("bridge_ciphers", "the cipher list of bridge connections is OpenSSL's default"),
    BRIDGE_NO("bridge_ciphers_tls1.3", "the TLS 1.3 suites of bridges are OpenSSL's default"),
    BRIDGE("bridge_identity", "text", "TLS-PSK identity (with bridge_psk)"),
    BRIDGE("bridge_insecure", "bool", "do not check the remote broker's host name [false]"),
    BRIDGE("bridge_keyfile", "path", "private key of bridge_certfile (PEM)"),
    BRIDGE("bridge_forward_bridged", "bool",
           "ours: send out messages that reached this broker over a bridge; false breaks "
           "loops of two connections each way [true]"),
    BRIDGE("bridge_max_queued_messages", "count",
           "ours: messages queued for the remote broker while it is away; 0 = "
           "max_queued_messages [0]"),
    BRIDGE("bridge_max_packet_size", "bytes",
           "largest packet to or from the remote broker; 0 = no limit [0]"),
    BRIDGE_NO("bridge_max_topic_alias", "bridges use no topic aliases"),
    BRIDGE("bridge_outgoing_retain", "bool", "keep the retain flag on messages sent out [true]"),
    BRIDGE("bridge_protocol_version", "mqttv31|mqttv311|mqttv50",
           "MQTT version towards the remote broker [mqttv311]"),
    BRIDGE("bridge_psk", "hex", "TLS-PSK key in hexadecimal (with bridge_identity)"),
    BRIDGE_NO("bridge_receive_maximum", "the bridge's Receive Maximum is the client library's"),
    BRIDGE_NO("bridge_reload_type", "a SIGHUP restarts changed bridges and keeps the others"),
    BRIDGE_NO("bridge_require_ocsp", "OCSP stapling is not checked"),
    BRIDGE_NO("bridge_session_expiry_interval", "MQTT 5 bridges ask for no session expiry"),
    BRIDGE_NO("bridge_tcp_keepalive", "TCP keep-alive is not set on bridge sockets"),
    BRIDGE_NO("bridge_tcp_user_timeout", "TCP_USER_TIMEOUT is not set on bridge sockets"),
    BRIDGE("bridge_tls_use_os_certs", "bool", "trust the system's CA store (TLS on) [false]"),
    BRIDGE("bridge_tls_version", "tlsv1.3|tlsv1.2|tlsv1.1",
           "lowest TLS version towards the remote broker [tlsv1.2]"),
    BRIDGE("cleansession", "bool", "clean session on the remote broker [false]"),
    BRIDGE("clientid", "id", "alias of remote_clientid"),
    BRIDGE("idle_timeout", "seconds",
           "start_type lazy: disconnect after this long without a message [60]"),
    BRIDGE("keepalive_interval", "seconds", "keep-alive towards the remote broker [60]"),
    BRIDGE("local_cleansession", "bool",
           "clean session of the bridge's local session [as cleansession]"),
    BRIDGE("local_clientid", "id", "client id of the local side [local.<remote_clientid>]"),
    BRIDGE("local_password", "text",
           "password of the local side; when set, checked like a client's (else trusted)"),
    BRIDGE("local_username", "name", "user name of the local side, for ACLs"),
    BRIDGE("notification_topic", "topic",
           "where 1/0 connection state goes [$SYS/broker/connection/<remote_clientid>/state]"),
    BRIDGE("notifications", "bool", "publish the connection state, retained [true]"),
    BRIDGE("notifications_local_only", "bool", "the state only locally, not on the remote [false]"),
    BRIDGE("password", "text", "alias of remote_password"),
    BRIDGE("remote_clientid", "id", "client id on the remote broker [<hostname>.<connection>]"),
    BRIDGE("remote_password", "text", "password on the remote broker"),
    BRIDGE("remote_username", "name", "user name on the remote broker"),
    BRIDGE("restart_timeout", "seconds | base cap",
           "wait before reconnecting: constant, or jittered back-off [5 30]"),
    BRIDGE("round_robin", "bool", "after a fail-over, stay on the address that works [false]"),
    BRIDGE("start_type", "automatic|lazy|once",
           "connect at once and stay; lazy: when messages wait; once: one attempt [automatic]"),
    BRIDGE("threshold", "count",
           "start_type lazy: connect when more than this many messages wait [10]"),
    BRIDGE("topic", "pattern [in|out|both [qos [local_prefix [remote_prefix]]]]",
           "topics the bridge carries, with their direction, QoS and prefixes"),
    BRIDGE("try_private", "bool", "tell the remote broker it is a bridge (loop prevention) [true]"),
    BRIDGE("username", "name", "alias of remote_username"),
};
#pragma GCC diagnostic pop

static const struct key *find_key(const char *name) {
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* ---- generic storage ---------------------------------------------------- */

static int apply_generic(struct parser *p, const struct key *k, char *value) {
    struct hato_config *cfg = p->cfg;
    char *base;
    size_t off;
    bool in_listener;

    if (k->scope == SC_GLOBAL) {
        base = (char *)cfg;
        off = k->goff;
        in_listener = false;
    } else if (k->scope == SC_LISTENER) {
        base = (char *)cur_listener(p);
        off = k->loff;
        in_listener = true;
    } else if (k->scope == SC_SECURITY) {
        cfg->security_set = true;
        in_listener = cfg->per_listener_settings;
        base = in_listener ? (char *)cur_listener(p) : (char *)cfg;
        off = in_listener ? k->loff : k->goff;
    } else {
        return fail(p, "%s: internal error (scope %d)", k->name, k->scope);
    }
    void *field = base + off;

    if (k->kind == K_STR) {
        if (*value == '\0')
            return fail(p, "%s: missing value", k->name);
        /* A NATS token and part of stream and bucket names (docs/cluster.md). */
        if (k->scope == SC_GLOBAL && (k->goff == CO(cluster_name) || k->goff == CO(node_name)) &&
            !cluster_name_ok(value))
            return fail(p, "%s '%s': 1 to 64 of A-Z a-z 0-9 - _", k->name, value);
        return set_string(p, (char **)field, value);
    }

    char *w;
    if (one_word(p, k->name, value, &w) < 0)
        return -1;
    switch (k->kind) {
    case K_BOOL:
    case K_TRI: {
        bool b;
        if (parse_bool_word(w, &b) < 0)
            return fail(p, "%s: expected true or false, got '%s'", k->name, w);
        /* Listener security values are tri-state ints, resolved by finish. */
        if (k->kind == K_TRI || (k->scope == SC_SECURITY && in_listener))
            *(int *)field = b;
        else
            *(bool *)field = b;
        return 0;
    }
    case K_INT: {
        int64_t v;
        if (parse_int_word(w, k->min, k->max, &v) < 0)
            return bad_int(p, k->name, k->min, k->max, w);
        *(int *)field = (int)v;
        return 0;
    }
    case K_I64: {
        int64_t v;
        if (parse_int_word(w, k->min, k->max, &v) < 0)
            return bad_int(p, k->name, k->min, k->max, w);
        *(int64_t *)field = v;
        return 0;
    }
    case K_ENUM_STR:
        if (find_choice(k->choices, w) < 0)
            return bad_choice(p, k->name, k->choices, w);
        return set_string(p, (char **)field, w);
    case K_ENUM_INT: {
        int i = find_choice(k->choices, w);
        if (i < 0)
            return bad_choice(p, k->name, k->choices, w);
        *(int *)field = i;
        return 0;
    }
    default:
        return fail(p, "%s: internal error (kind %d)", k->name, k->kind);
    }
}

/* ---- handlers ----------------------------------------------------------- */

static int h_listener(struct parser *p, const struct key *k, char *value) {
    char *rest = value;
    char *w = next_word(&rest);
    if (!w)
        return fail(p, "%s: missing value", k->name);
    int64_t port;
    if (parse_int_word(w, 0, 65535, &port) < 0)
        return fail(p, "listener: expected a port 0..65535, got '%s'", w);
    char *addr = next_word(&rest);
    char *extra = next_word(&rest);
    if (extra)
        return fail(p, "listener: unexpected '%s' after the value", extra);
    if (port == 0 && !addr)
        return fail(p, "listener: port 0 needs a Unix socket path (listener 0 /path/to/socket)");

    struct hato_listener *l = listener_append(p->cfg);
    if (!l)
        return fail(p, "out of memory");
    listener_init(l, p->file, p->line);
    l->port = (int)port;
    if (addr) {
        char **dst = port == 0 ? &l->unix_path : &l->bind_address;
        if (!(*dst = strdup(addr))) {
            listener_free(l);
            p->cfg->n_listeners--;
            return fail(p, "out of memory");
        }
    }
    p->cur = (long)p->cfg->n_listeners - 1;
    return 0;
}

static int h_port(struct parser *p, const struct key *k, char *value) {
    char *w;
    if (one_word(p, k->name, value, &w) < 0)
        return -1;
    int64_t port;
    if (parse_int_word(w, 1, 65535, &port) < 0)
        return bad_int(p, k->name, 1, 65535, w);
    struct hato_config *cfg = p->cfg;
    if (cfg->default_listener.port > 0 &&
        add_warning_at(cfg, p->file, p->line,
                       "port given more than once; only the last one (%d) is used", (int)port) < 0)
        return fail(p, "out of memory");
    cfg->default_listener.port = (int)port;
    cfg->default_listener.file = p->file;
    cfg->default_listener.line = p->line;
    cfg->default_listener_used = true;
    p->cur = -1;
    return 0;
}

static int h_bind_address(struct parser *p, const struct key *k, char *value) {
    char *w;
    if (one_word(p, k->name, value, &w) < 0)
        return -1;
    struct hato_config *cfg = p->cfg;
    if (set_string(p, &cfg->default_listener.bind_address, w) < 0)
        return -1;
    if (!cfg->default_listener_used) {
        cfg->default_listener.file = p->file;
        cfg->default_listener.line = p->line;
    }
    cfg->default_listener_used = true;
    p->cur = -1;
    return 0;
}

static int h_socket_domain(struct parser *p, const struct key *k, char *value) {
    static const char *const domains[] = {"ipv4", "ipv6", NULL};
    char *w;
    if (one_word(p, k->name, value, &w) < 0)
        return -1;
    int i = find_choice(domains, w);
    if (i < 0)
        return bad_choice(p, k->name, domains, w);
    cur_listener(p)->socket_domain = i == 0 ? AF_INET : AF_INET6;
    return 0;
}

static int h_mount_point(struct parser *p, const struct key *k, char *value) {
    if (*value == '\0')
        return fail(p, "%s: missing value", k->name);
    if (strpbrk(value, "+#"))
        return fail(p, "mount_point: must not contain the wildcards + or #, got '%s'", value);
    return set_string(p, &cur_listener(p)->mount_point, value);
}

static int h_accept_versions(struct parser *p, const struct key *k, char *value) {
    unsigned bits = 0;
    char *save = NULL;
    for (char *t = strtok_r(value, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        if (t[0] == '#')
            break;
        if (strcmp(t, "3") == 0)
            bits |= HATO_PROTO_V3;
        else if (strcmp(t, "4") == 0)
            bits |= HATO_PROTO_V4;
        else if (strcmp(t, "5") == 0)
            bits |= HATO_PROTO_V5;
        else
            return fail(p, "%s: expected a list of 3, 4 and 5, got '%s'", k->name, t);
    }
    if (!bits)
        return fail(p, "%s: missing value", k->name);
    cur_listener(p)->accept_protocol_versions = bits;
    return 0;
}

static int h_ws_origin(struct parser *p, const struct key *k, char *value) {
    if (*value == '\0')
        return fail(p, "%s: missing value", k->name);
    struct hato_listener *l = cur_listener(p);
    if (strlist_add(&l->websockets_origins, &l->n_websockets_origins, value) < 0)
        return fail(p, "out of memory");
    return 0;
}

/* websockets_trusted_proxy ADDR or ADDR/BITS (IPv4 or IPv6). */
static int h_ws_trusted(struct parser *p, const struct key *k, char *value) {
    if (*value == '\0')
        return fail(p, "%s: missing value", k->name);
    char addr[INET6_ADDRSTRLEN + 8];
    if (strlen(value) >= sizeof(addr))
        return fail(p, "%s: '%s' is not an IP address or ADDRESS/BITS", k->name, value);
    strcpy(addr, value);
    char *slash = strchr(addr, '/');
    long bits = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        errno = 0;
        bits = strtol(slash + 1, &end, 10);
        if (errno || end == slash + 1 || *end || bits < 0)
            return fail(p, "%s: '%s': the prefix length after / must be a number", k->name, value);
    }
    unsigned char buf[16];
    int fam = inet_pton(AF_INET, addr, buf) == 1    ? AF_INET
              : inet_pton(AF_INET6, addr, buf) == 1 ? AF_INET6
                                                    : 0;
    if (!fam)
        return fail(p, "%s: '%s' is not an IP address or ADDRESS/BITS", k->name, value);
    if (bits > (fam == AF_INET ? 32 : 128))
        return fail(p, "%s: '%s': at most /%d for %s", k->name, value, fam == AF_INET ? 32 : 128,
                    fam == AF_INET ? "IPv4" : "IPv6");
    struct hato_listener *l = cur_listener(p);
    if (strlist_add(&l->websockets_trusted_proxies, &l->n_websockets_trusted_proxies, value) < 0)
        return fail(p, "out of memory");
    return 0;
}

static int check_prefix(struct parser *p, const char *key, const char *value) {
    if (*value == '\0')
        return fail(p, "%s: missing value", key);
    if (strlen(value) > MAX_AUTO_ID_PREFIX)
        return fail(p, "%s: at most %d characters, got %zu", key, MAX_AUTO_ID_PREFIX,
                    strlen(value));
    if (strpbrk(value, "+#/"))
        return fail(p, "%s: must not contain +, # or /, got '%s'", key, value);
    return 0;
}

static int h_auto_id_prefix(struct parser *p, const struct key *k, char *value) {
    if (check_prefix(p, k->name, value) < 0)
        return -1;
    struct hato_config *cfg = p->cfg;
    cfg->security_set = true;
    char **dst =
        cfg->per_listener_settings ? &cur_listener(p)->auto_id_prefix : &cfg->auto_id_prefix;
    return set_string(p, dst, value);
}

static int h_listener_auto_id_prefix(struct parser *p, const struct key *k, char *value) {
    if (check_prefix(p, k->name, value) < 0)
        return -1;
    return set_string(p, &cur_listener(p)->auto_id_prefix, value);
}

static int h_max_packet_size(struct parser *p, const struct key *k, char *value) {
    char *w;
    if (one_word(p, k->name, value, &w) < 0)
        return -1;
    int64_t v;
    if (parse_int_word(w, 0, MQTT_MAX_PACKET, &v) < 0 || (v > 0 && v < 20))
        return fail(p, "%s: expected 0 or an integer 20..%d, got '%s'", k->name, MQTT_MAX_PACKET,
                    w);
    p->cfg->max_packet_size = (int)v;
    return 0;
}

static int h_expiration(struct parser *p, const struct key *k, char *value) {
    char *w;
    if (one_word(p, k->name, value, &w) < 0)
        return -1;
    int64_t v;
    if (parse_duration(w, &v) < 0)
        return fail(p, "%s: expected a duration such as 3600s, 2h, 1d, 3w, 2m or 1y, got '%s'",
                    k->name, w);
    p->cfg->persistent_client_expiration = v;
    return 0;
}

/* allow_duplicate_messages: hato always sends one copy per client for
 * overlapping subscriptions (docs/migration.md). Mosquitto 2.0's false
 * does the same; an explicit true (one copy per subscription there) is
 * accepted with a warning at its line, so that it does not pass unnoticed. */
static int h_dup_messages(struct parser *p, const struct key *k, char *value) {
    bool b;
    if (bool_value(p, k->name, value, &b) < 0)
        return -1;
    p->cfg->allow_duplicate_messages = b;
    if (b && add_warning_at(p->cfg, p->file, p->line,
                            "allow_duplicate_messages true: hato sends one copy per client for "
                            "overlapping subscriptions, as Mosquitto with false") < 0)
        return fail(p, "out of memory");
    return 0;
}

/* Mosquitto 2.1's $CONTROL/broker/v1 API is not in hato: false is accepted,
 * true refused (a directive that would do nothing must not pass for one). */
/* admin_console_dir: a directory, checked here so a wrong one names its line. */
static int h_admin_console_dir(struct parser *p, const struct key *k, char *value) {
    struct stat st;
    const char *why = !*value                ? "missing value"
                      : stat(value, &st) < 0 ? strerror(errno)
                      : !S_ISDIR(st.st_mode) ? "not a directory"
                                             : NULL;
    if (why)
        return fail(p, "%s %s: %s", k->name, value, why);
    return set_string(p, &p->cfg->admin_console_dir, value);
}

static int h_control_api(struct parser *p, const struct key *k, char *value) {
    bool b;
    if (bool_value(p, k->name, value, &b) < 0)
        return -1;
    if (b)
        return fail(p,
                    "%s: hato has no $CONTROL/broker/v1 API (Mosquitto 2.1); remove the line "
                    "or set it to false",
                    k->name);
    p->cfg->enable_control_api = false;
    return 0;
}

static int h_per_listener(struct parser *p, const struct key *k, char *value) {
    bool b;
    if (bool_value(p, k->name, value, &b) < 0)
        return -1;
    struct hato_config *cfg = p->cfg;
    if (cfg->per_listener_settings) {
        if (!b && add_warning_at(cfg, p->file, p->line,
                                 "per_listener_settings cannot be turned off once set; "
                                 "ignored") < 0)
            return fail(p, "out of memory");
        return 0;
    }
    if (b && cfg->security_set)
        return fail(p, "per_listener_settings: must come before any security option "
                       "(allow_anonymous, password_file, acl_file, psk_file, auto_id_prefix, "
                       "allow_zero_length_clientid)");
    cfg->per_listener_settings = b;
    return 0;
}

static int h_log_dest(struct parser *p, const struct key *k, char *value) {
    static const char *const dests[] = {"stderr", "stdout", "syslog", "topic",
                                        "file",   "dlt",    "none",   NULL};
    struct hato_config *cfg = p->cfg;
    char *rest = value;
    char *w = next_word(&rest);
    if (!w)
        return fail(p, "%s: missing value", k->name);
    int i = find_choice(dests, w);
    if (i < 0)
        return bad_choice(p, k->name, dests, w);
    unsigned bit = 0;
    if (strcmp(w, "file") == 0) {
        char *path = trim(rest);
        if (*path == '\0')
            return fail(p, "log_dest: file needs a path (log_dest file /var/log/hato.log)");
        if (cfg->log_file)
            return fail(p, "log_dest: only one file destination may be given");
        if (set_string(p, &cfg->log_file, path) < 0)
            return -1;
        bit = HATO_LOG_DEST_FILE;
    } else {
        char *extra = next_word(&rest);
        if (extra)
            return fail(p, "%s: unexpected '%s' after the value", k->name, extra);
        bit = strcmp(w, "stderr") == 0   ? HATO_LOG_DEST_STDERR
              : strcmp(w, "stdout") == 0 ? HATO_LOG_DEST_STDOUT
              : strcmp(w, "syslog") == 0 ? HATO_LOG_DEST_SYSLOG
              : strcmp(w, "topic") == 0  ? HATO_LOG_DEST_TOPIC
              : strcmp(w, "dlt") == 0    ? HATO_LOG_DEST_DLT
                                         : 0;
    }
    /* Mosquitto's dlt is GENIVI's Diagnostic Log and Trace daemon, only in
     * builds made WITH_DLT; hato has no DLT client. Refused rather than
     * accepted: a config whose only destination it is would log nothing. */
    if (bit == HATO_LOG_DEST_DLT)
        return fail(p, "log_dest: dlt (GENIVI Diagnostic Log and Trace) is not supported by hato; "
                       "use syslog, file or stderr");
    /* The first log_dest replaces the default (stderr); "none" clears. */
    if (!cfg->log_dest_set)
        cfg->log_dest = 0;
    cfg->log_dest_set = true;
    if (strcmp(w, "none") == 0) {
        cfg->log_dest = 0;
        free(cfg->log_file);
        cfg->log_file = NULL;
    } else {
        cfg->log_dest |= bit;
    }
    return 0;
}

static int h_log_type(struct parser *p, const struct key *k, char *value) {
    static const char *const types[] = {"error",     "warning",     "notice",     "information",
                                        "subscribe", "unsubscribe", "websockets", "debug",
                                        "internal",  "all",         "none",       NULL};
    static const unsigned bits[] = {HATO_LOG_ERR,
                                    HATO_LOG_WARNING,
                                    HATO_LOG_NOTICE,
                                    HATO_LOG_INFO,
                                    HATO_LOG_SUBSCRIBE,
                                    HATO_LOG_UNSUBSCRIBE,
                                    HATO_LOG_WEBSOCKETS,
                                    HATO_LOG_DEBUG,
                                    HATO_LOG_INTERNAL,
                                    HATO_LOG_ALL,
                                    0};
    char *w;
    if (one_word(p, k->name, value, &w) < 0)
        return -1;
    int i = find_choice(types, w);
    if (i < 0)
        return bad_choice(p, k->name, types, w);
    struct hato_config *cfg = p->cfg;
    if (!cfg->log_type_set)
        cfg->log_type = 0;
    cfg->log_type_set = true;
    if (bits[i] == 0)
        cfg->log_type = 0;
    else
        cfg->log_type |= bits[i];
    return 0;
}

static int h_connection(struct parser *p, const struct key *k, char *value) {
    char *rest = value;
    char *name = next_word(&rest);
    if (!name)
        return fail(p, "%s: missing value", k->name);
    if (next_word(&rest))
        return fail(p, "%s: takes one name", k->name);
    char msg[512];
    if (bridge_conf_new(p->cfg, name, p->file, p->line, msg, sizeof msg) < 0)
        return fail(p, "%s", msg);
    return 0;
}

static int h_proxy(struct parser *p, const struct key *k, char *value) {
    char *w;
    if (one_word(p, k->name, value, &w) < 0)
        return -1;
    int64_t v;
    if (parse_int_word(w, 1, 2, &v) < 0)
        return bad_int(p, k->name, 1, 2, w);
    cur_listener(p)->enable_proxy_protocol = (int)v;
    return 0;
}

/* ---- plugins (docs/plugins.md) ------------------------------------------- */

/* plugin PATH, auth_plugin PATH (the same in Mosquitto 2.0), global_plugin
 * PATH: with per_listener_settings true the first two belong to the current
 * listener, global_plugin always to every listener. */
static int h_plugin(struct parser *p, const struct key *k, char *value) {
    struct hato_config *cfg = p->cfg;
    if (*value == '\0')
        return fail(p, "%s: missing value", k->name);
    struct hato_plugin_conf *v = realloc(cfg->plugins, (cfg->n_plugins + 1) * sizeof *v);
    if (!v)
        return fail(p, "out of memory");
    cfg->plugins = v;
    struct hato_plugin_conf *pc = &v[cfg->n_plugins];
    memset(pc, 0, sizeof *pc);
    pc->path = strdup(value);
    if (!pc->path)
        return fail(p, "out of memory");
    cfg->n_plugins++;
    pc->deny_special_chars = cfg->auth_plugin_deny_special_chars;
    pc->file = p->file;
    pc->line = p->line;
    if (cfg->per_listener_settings && strcmp(k->name, "global_plugin") != 0) {
        struct hato_listener *l = cur_listener(p);
        pc->on_default = p->cur < 0;
        pc->lfile = l->file;
        pc->lline = l->line;
    }
    return 0;
}

/* plugin_opt_KEY VALUE / auth_opt_KEY VALUE: an option of the last plugin. */
static int plugin_opt(struct parser *p, const char *name, char *value) {
    struct hato_config *cfg = p->cfg;
    const char *key = name + (name[0] == 'a' ? 9 : 11);
    if (!cfg->n_plugins)
        return fail(p, "%s: an option of a plugin, but no 'plugin' line comes before it", name);
    if (*key == '\0')
        return fail(p, "%s: the option has no name", name);
    if (*value == '\0')
        return fail(p, "%s: missing value", name);
    struct hato_plugin_conf *pc = &cfg->plugins[cfg->n_plugins - 1];
    struct hato_plugin_opt *o = realloc(pc->opts, (pc->n_opts + 1) * sizeof *o);
    if (!o)
        return fail(p, "out of memory");
    pc->opts = o;
    o[pc->n_opts].key = strdup(key);
    o[pc->n_opts].value = strdup(value);
    if (!o[pc->n_opts].key || !o[pc->n_opts].value) {
        free(o[pc->n_opts].key);
        free(o[pc->n_opts].value);
        return fail(p, "out of memory");
    }
    pc->n_opts++;
    return 0;
}

/* Mosquitto: a setting of the plugin it follows. Before any plugin it sets
 * the default of the plugins that follow (hato accepted it so before). */
static int h_deny_special(struct parser *p, const struct key *k, char *value) {
    bool b;
    if (bool_value(p, k->name, value, &b) < 0)
        return -1;
    if (p->cfg->n_plugins)
        p->cfg->plugins[p->cfg->n_plugins - 1].deny_special_chars = b;
    else
        p->cfg->auth_plugin_deny_special_chars = b;
    return 0;
}

/* ---- lines, files, include_dir ------------------------------------------ */

static int parse_text(struct parser *p, char *text, size_t len);

static int parse_line(struct parser *p, char *line) {
    line = trim(line);
    if (*line == '\0' || *line == '#')
        return 0;
    char *value = line;
    while (*value && !is_space(*value))
        value++;
    if (*value)
        *value++ = '\0';
    value = trim(value);
    const char *name = line;

    if (strncmp(name, "auth_opt_", 9) == 0 || strncmp(name, "plugin_opt_", 11) == 0)
        return plugin_opt(p, name, value);
    const struct key *k = find_key(name);
    if (!k)
        return fail(p, "unknown directive '%s'", name);
    const char *left_out = hato_feature_missing(name, value); /* build options */
    if (left_out)
        return fail(p, "%s: %s", name, left_out);
    if (k->status == ST_STORED &&
        add_warning_at(p->cfg, p->file, p->line,
                       "%s is accepted but has no effect in this version of hato", name) < 0)
        return fail(p, "out of memory");

    switch (k->kind) {
    case K_FN:
        return k->fn(p, k, value);
    case K_BRIDGE: {
        if (k->status == ST_REFUSED)
            return fail(p, "%s: %s", name, k->doc);
        char msg[512];
        if (bridge_conf_option(p->cfg, name, value, msg, sizeof msg) < 0)
            return fail(p, "%s", msg);
        return 0;
    }
    case K_PLUGIN:
        return fail(p,
                    "%s: is Mosquitto 2.1's; hato loads plugins with 'plugin PATH' and "
                    "'plugin_opt_*' lines (docs/plugins.md)",
                    name);
    case K_OBSOLETE:
        if (add_warning_at(p->cfg, p->file, p->line,
                           "%s was removed in Mosquitto 2.0 and has no effect", name) < 0)
            return fail(p, "out of memory");
        return 0;
    default:
        return apply_generic(p, k, value);
    }
}

/* Parse text[0..len) in place; text[len] must be writable (the NUL). */
static int parse_text(struct parser *p, char *text, size_t len) {
    size_t pos = 0;
    p->line = 0;
    p->cur = -1;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        pos = 3; /* UTF-8 byte order mark */
    while (pos < len) {
        char *start = text + pos;
        char *nl = memchr(start, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - start) : len - pos;
        pos += n + (nl ? 1 : 0);
        p->line++;
        if (p->line == INT_MAX)
            return fail(p, "too many lines");
        if (n > MAX_LINE)
            return fail(p, "line longer than %d bytes", MAX_LINE);
        if (memchr(start, '\0', n))
            return fail(p, "NUL byte in line");
        start[n] = '\0';
        char *s = start;
        while (is_space(*s))
            s++;
        if (*s == '#')
            continue; /* comments may hold any bytes */
        if (!utf8_valid((const unsigned char *)start, n))
            return fail(p, "invalid UTF-8");
        if (parse_line(p, start) < 0)
            return -1;
    }
    return 0;
}

/* Read a whole regular file into a NUL-terminated heap buffer. */
static int read_file(const char *path, char **out, size_t *outlen, char *why, size_t whylen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, whylen, "%s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        fclose(f);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "%s", S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
        fclose(f);
        return -1;
    }
    if (st.st_size > MAX_FILE_SIZE) {
        snprintf(why, whylen, "larger than %ld bytes", MAX_FILE_SIZE);
        fclose(f);
        return -1;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        snprintf(why, whylen, "out of memory");
        fclose(f);
        return -1;
    }
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len == cap - 1) { /* file grew while reading: follow, within the cap */
            if (cap > (size_t)MAX_FILE_SIZE) {
                snprintf(why, whylen, "larger than %ld bytes", MAX_FILE_SIZE);
                free(buf);
                fclose(f);
                return -1;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                snprintf(why, whylen, "out of memory");
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (ferror(f)) {
        snprintf(why, whylen, "%s", strerror(errno));
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
}

static int parse_file(struct hato_config *cfg, const char *path, int level, char *main_real,
                      char *err, size_t errlen) {
    struct parser p = {.cfg = cfg,
                       .level = level,
                       .cur = -1,
                       .err = err,
                       .errlen = errlen,
                       .main_real = main_real};
    if (!(p.file = intern_file(cfg, path))) {
        set_err(err, errlen, "%s: out of memory", path);
        return -1;
    }
    char *buf;
    size_t len;
    char why[256];
    if (read_file(path, &buf, &len, why, sizeof why) < 0) {
        set_err(err, errlen, "%s: cannot read: %s", path, why);
        return -1;
    }
    int rc = parse_text(&p, buf, len);
    free(buf);
    return rc;
}

/*
 * include_dir's order, Mosquitto's: byte by byte, ASCII letters compared
 * without case first ('B' after 'a', '_' after 'B' as it is after 'Z'),
 * then the exact byte ('A' before 'a'); bytes are unsigned, so UTF-8 names
 * come after ASCII ones. Not the locale's order: the same on every machine.
 */
static int cmp_include(const void *a, const void *b) {
    const unsigned char *x = *(const unsigned char *const *)a;
    const unsigned char *y = *(const unsigned char *const *)b;
    for (; *x && *y; x++, y++) {
        int ux = *x >= 'a' && *x <= 'z' ? *x - 'a' + 'A' : *x;
        int uy = *y >= 'a' && *y <= 'z' ? *y - 'a' + 'A' : *y;
        if (ux != uy)
            return ux - uy;
        if (*x != *y)
            return *x - *y;
    }
    return *x - *y;
}

static int h_include_dir(struct parser *p, const struct key *k, char *value) {
    if (*value == '\0')
        return fail(p, "%s: missing value", k->name);
    if (p->level > 0)
        return fail(p, "include_dir: only allowed in the main configuration file");
    if (set_string(p, &p->cfg->include_dir, value) < 0)
        return -1;

    DIR *d = opendir(value);
    if (!d)
        return fail(p, "include_dir: cannot open '%s': %s", value, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        /* NAME.conf with a NAME, as Mosquitto: ".conf" alone is not read. */
        if (len <= 5 || strcmp(de->d_name + len - 5, ".conf") != 0)
            continue;
        size_t plen = strlen(value) + 1 + len + 1;
        char *path = malloc(plen);
        char **nn = realloc(names, (n + 1) * sizeof *nn);
        if (!path || !nn) {
            free(path);
            if (nn)
                names = nn;
            rc = fail(p, "out of memory");
            break;
        }
        names = nn;
        snprintf(path, plen, "%s%s%s", value, value[strlen(value) - 1] == '/' ? "" : "/",
                 de->d_name);
        struct stat st;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
            /* Mosquitto tries to read it and stops; hato says so and goes on. */
            int w = add_warning_at(p->cfg, p->file, p->line,
                                   "include_dir: '%s' is not a regular file; not read", path);
            free(path);
            if (w < 0) {
                rc = fail(p, "out of memory");
                break;
            }
            continue;
        }
        names[n++] = path;
    }
    closedir(d);
    if (rc == 0 && n)
        qsort(names, n, sizeof *names, cmp_include);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (p->main_real) {
            char *real = realpath(names[i], NULL);
            bool same = real && strcmp(real, p->main_real) == 0;
            free(real);
            if (same) {
                rc = fail(p, "include_dir: '%s' contains the main configuration file", value);
                break;
            }
        }
        rc = parse_file(p->cfg, names[i], p->level + 1, NULL, p->err, p->errlen);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ---- public API --------------------------------------------------------- */

void hato_config_init(struct hato_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->max_inflight_messages = 20;
    cfg->max_queued_messages = 1000;
    cfg->max_keepalive = 65535;
    cfg->retain_available = true;
    cfg->global_max_clients = -1;
    cfg->global_max_connections = -1;
    cfg->allow_duplicate_messages = true;
    cfg->sys_interval = 10;
    cfg->allow_anonymous = HATO_UNSET;
    cfg->allow_zero_length_clientid = true;
    cfg->auto_id_prefix = strdup("auto-");
    cfg->auth_plugin_deny_special_chars = true;
    cfg->persistence_file = strdup("mosquitto.db");
    cfg->autosave_interval = 1800;
    cfg->user = strdup("mosquitto");
    cfg->log_dest = HATO_LOG_DEST_STDERR;
    cfg->log_type = HATO_LOG_DEFAULT;
    cfg->log_facility = -1;
    cfg->log_timestamp = true;
    cfg->connection_messages = true;
    cfg->threads = 0;
    cfg->cluster_replicas = 1;
    cfg->persistence_sync = HATO_SYNC_ALWAYS;
    cfg->connect_timeout = 10;
    cfg->auth_fail_delay = 1000;
    cfg->auth_fail_delay_max = 30000;
    cfg->max_output_buffer = 4 << 20;
    cfg->output_stall_timeout = 2;
    cfg->max_topic_levels = 201;
    listener_init(&cfg->default_listener, "<default>", 0);
    cfg->default_listener.port = -1; /* not given */
    cfg->cmd_port = -1;
}

int hato_config_load(struct hato_config *cfg, const char *path, char *err, size_t errlen) {
    char *real = realpath(path, NULL); /* NULL is fine: read_file reports */
    int rc = parse_file(cfg, path, 0, real, err, errlen);
    free(real);
    return rc;
}

int hato_config_parse_string(struct hato_config *cfg, const char *name, const char *text, char *err,
                             size_t errlen) {
    struct parser p = {.cfg = cfg, .cur = -1, .err = err, .errlen = errlen};
    if (!(p.file = intern_file(cfg, name))) {
        set_err(err, errlen, "%s: out of memory", name);
        return -1;
    }
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    if (!buf) {
        set_err(err, errlen, "%s: out of memory", name);
        return -1;
    }
    memcpy(buf, text, len + 1);
    int rc = parse_text(&p, buf, len);
    free(buf);
    return rc;
}

int hato_config_set_port(struct hato_config *cfg, int port) {
    if (port < 0 || port > 65535)
        return -1;
    cfg->cmd_port = port;
    return 0;
}

bool hato_listener_wants_tls(const struct hato_listener *l) {
    return l->certfile || l->keyfile || l->cafile || l->capath || l->psk_hint || l->tls_engine;
}

/* Add a copy of the default listener with the given port and address. */
static int add_from_default(struct hato_config *cfg, int port, const char *bind, int domain,
                            const char *file, int line) {
    struct hato_listener tmp;
    if (listener_copy(&tmp, &cfg->default_listener) < 0)
        return -1;
    tmp.port = port;
    if (bind) {
        free(tmp.bind_address);
        if (!(tmp.bind_address = strdup(bind))) {
            listener_free(&tmp);
            return -1;
        }
    }
    if (domain != AF_UNSPEC)
        tmp.socket_domain = domain;
    tmp.file = file;
    tmp.line = line;
    struct hato_listener *l = listener_append(cfg);
    if (!l) {
        listener_free(&tmp);
        return -1;
    }
    *l = tmp;
    return 0;
}

static bool same_str(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int fill_string(char **dst, const char *def) {
    if (!*dst && !(*dst = strdup(def)))
        return -1;
    return 0;
}

/* An HTTP listener (metrics, admin) without an address, Unix path or
 * interface binds to loopback, unlike an MQTT one. 0, or -1 with err. */
static int loopback_by_default(struct hato_listener *l, char *err, size_t errlen) {
    if (!l->bind_address && !l->unix_path && !l->bind_interface &&
        !(l->bind_address = strdup(l->socket_domain == AF_INET6 ? "::1" : "127.0.0.1"))) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/*
 * A `protocol metrics` listener (hato's Prometheus endpoint): loopback unless
 * an address or interface is given, since metrics tell a lot about a broker;
 * metrics_auth only there, and only with a password file to check against.
 * 0, or -1 with err set.
 */
static int finish_metrics_listener(const struct hato_config *cfg, struct hato_listener *l,
                                   char *err, size_t errlen) {
    bool metrics = strcmp(l->protocol, "metrics") == 0;
    if (!metrics) {
        if (l->metrics_auth) {
            set_err(err, errlen,
                    "%s:%d: listener %d: metrics_auth applies to metrics listeners only (add "
                    "'protocol metrics')",
                    l->file, l->line, l->port);
            return -1;
        }
        return 0;
    }
    if (l->metrics_auth && !(cfg->per_listener_settings ? l->password_file : cfg->password_file)) {
        set_err(err, errlen, "%s:%d: listener %d: metrics_auth true needs a password_file", l->file,
                l->line, l->port);
        return -1;
    }
    return loopback_by_default(l, err, errlen);
}

/* A bind address on the loopback interface (127.0.0.0/8, ::1, localhost). */
static bool loopback_address(const char *a) {
    struct in_addr v4;
    struct in6_addr v6;
    if (strcmp(a, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, a, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, a, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

/*
 * A `protocol admin` listener (the HTTP API, admin.c): loopback by default;
 * any other address or interface only with TLS (the API takes passwords and
 * changes the broker); and never without admin accounts. 0, or -1 with err.
 */
static int finish_admin_listener(const struct hato_config *cfg, struct hato_listener *l, char *err,
                                 size_t errlen) {
    if (strcmp(l->protocol, "admin") != 0)
        return 0;
    if (!cfg->admin_password_file) {
        set_err(err, errlen,
                "%s:%d: listener %d: protocol admin needs admin_password_file (admin accounts, "
                "made with hato-passwd; there is no default password)",
                l->file, l->line, l->port);
        return -1;
    }
    bool tls = l->certfile && l->keyfile;
    const char *open = l->bind_interface && strcmp(l->bind_interface, "lo") != 0 ? "bind_interface"
                       : l->bind_address && !loopback_address(l->bind_address)   ? "address"
                                                                                 : NULL;
    if (open && !tls) {
        set_err(err, errlen,
                "%s:%d: listener %d: protocol admin on a non-loopback %s needs TLS (certfile and "
                "keyfile): admin passwords and session cookies must not cross a network in clear",
                l->file, l->line, l->port, open);
        return -1;
    }
    return loopback_by_default(l, err, errlen);
}

/* Clustering settings that cannot work (docs/cluster.md). */
static int cluster_conf_check(const struct hato_config *cfg, char *err, size_t errlen) {
    if (!cfg->cluster_nats_url) {
        if (cfg->cluster_name || cfg->node_name || cfg->cluster_nats_user ||
            cfg->cluster_nats_password || cfg->cluster_nats_cafile || cfg->cluster_nats_certfile ||
            cfg->cluster_nats_keyfile || cfg->cluster_replicas != 1) {
            set_err(err, errlen, "cluster_* and node_name settings need cluster_nats_url");
            return -1;
        }
        return 0;
    }
    if (cfg->persistence) {
        set_err(err, errlen,
                "persistence true with cluster_nats_url: in a cluster, sessions, queued and "
                "retained messages live in JetStream (docs/cluster.md), and a node's own store "
                "would disagree with the cluster after a takeover");
        return -1;
    }
    if (!!cfg->cluster_nats_certfile != !!cfg->cluster_nats_keyfile) {
        set_err(err, errlen, "cluster_nats_certfile and cluster_nats_keyfile go together");
        return -1;
    }
    if (cfg->cluster_nats_certfile && !cfg->cluster_nats_cafile) {
        set_err(err, errlen, "cluster_nats_certfile needs cluster_nats_cafile (TLS to NATS)");
        return -1;
    }
    return 0;
}

int hato_config_finish(struct hato_config *cfg, char *err, size_t errlen) {
    if (cfg->finished) {
        set_err(err, errlen, "configuration already finished");
        return -1;
    }
    if (fill_string(&cfg->auto_id_prefix, "auto-") < 0 ||
        fill_string(&cfg->persistence_file, "mosquitto.db") < 0 ||
        fill_string(&cfg->user, "mosquitto") < 0 ||
        fill_string(&cfg->default_listener.protocol, "mqtt") < 0)
        goto oom;

    const char *cmdline = intern_file(cfg, "<command line>");
    if (!cmdline)
        goto oom;
    const int def_port = cfg->cmd_port >= 0               ? cfg->cmd_port
                         : cfg->default_listener.port > 0 ? cfg->default_listener.port
                                                          : 1883;
    if (cfg->n_listeners == 0 && !cfg->default_listener_used) {
        /* Nothing configured a listener: loopback only (Mosquitto 2.0). With
         * an ephemeral port only IPv4, so that there is one port to find. */
        const char *local = intern_file(cfg, "<local-only>");
        if (!local)
            goto oom;
        int dom = cfg->default_listener.socket_domain;
        cfg->local_only = true;
        if (dom != AF_INET6 && add_from_default(cfg, def_port, "127.0.0.1", AF_INET, local, 0) < 0)
            goto oom;
        if (dom != AF_INET && def_port != 0 &&
            add_from_default(cfg, def_port, "::1", AF_INET6, local, 0) < 0)
            goto oom;
    } else if (cfg->default_listener_used || cfg->cmd_port >= 0) {
        const char *file = cfg->default_listener_used ? cfg->default_listener.file : cmdline;
        int line = cfg->default_listener_used ? cfg->default_listener.line : 0;
        if (add_from_default(cfg, def_port, NULL, AF_UNSPEC, file, line) < 0)
            goto oom;
        /* The default listener comes first, as it is the one -p or port names. */
        struct hato_listener d = cfg->listeners[cfg->n_listeners - 1];
        memmove(&cfg->listeners[1], &cfg->listeners[0],
                (cfg->n_listeners - 1) * sizeof cfg->listeners[0]);
        cfg->listeners[0] = d;
    } else if (cfg->default_touched_file) {
        if (add_warning_at(cfg, cfg->default_touched_file, cfg->default_touched_line,
                           "listener options before the first 'listener' line apply to the "
                           "default listener, which is not created (no 'port' line); "
                           "they have no effect") < 0)
            goto oom;
    }

    /* Plugins of the default listener (per_listener_settings, before any
     * `listener` line): the listener made from it above is now known. */
    for (size_t i = 0; i < cfg->n_plugins && cfg->n_listeners; i++) {
        struct hato_plugin_conf *pc = &cfg->plugins[i];
        if (pc->on_default) {
            pc->lfile = cfg->listeners[0].file;
            pc->lline = cfg->listeners[0].line;
        }
    }

    if (cfg->allow_anonymous == HATO_UNSET)
        cfg->allow_anonymous = cfg->local_only ? 1 : 0;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct hato_listener *l = &cfg->listeners[i];
        if (l->allow_anonymous == HATO_UNSET)
            l->allow_anonymous = cfg->allow_anonymous;
        if (l->allow_zero_length_clientid == HATO_UNSET)
            l->allow_zero_length_clientid = cfg->allow_zero_length_clientid;
        if (fill_string(&l->auto_id_prefix, cfg->auto_id_prefix) < 0 ||
            fill_string(&l->protocol, "mqtt") < 0)
            goto oom;

        if (!l->certfile != !l->keyfile) {
            set_err(err, errlen, "%s:%d: listener %d: certfile and keyfile must be given together",
                    l->file, l->line, l->port);
            return -1;
        }
        if ((l->cafile || l->capath) && !l->certfile) {
            set_err(err, errlen,
                    "%s:%d: listener %d: cafile/capath given without certfile and "
                    "keyfile",
                    l->file, l->line, l->port);
            return -1;
        }
        bool ws = strcmp(l->protocol, "websockets") == 0;
        const char *ws_only = !ws && l->http_dir                       ? "http_dir"
                              : !ws && l->n_websockets_origins         ? "websockets_origin"
                              : !ws && l->n_websockets_trusted_proxies ? "websockets_trusted_proxy"
                                                                       : NULL;
        if (ws_only) {
            set_err(err, errlen,
                    "%s:%d: listener %d: %s applies to WebSocket listeners only (add "
                    "'protocol websockets')",
                    l->file, l->line, l->port, ws_only);
            return -1;
        }
        if (finish_metrics_listener(cfg, l, err, errlen) < 0)
            return -1;
        if (finish_admin_listener(cfg, l, err, errlen) < 0)
            return -1;
        if (l->http_dir) {
            struct stat st;
            const char *why = stat(l->http_dir, &st) < 0 ? strerror(errno)
                              : !S_ISDIR(st.st_mode)     ? "not a directory"
                                                         : NULL;
            if (why) {
                set_err(err, errlen, "%s:%d: listener %d: http_dir %s: %s", l->file, l->line,
                        l->port, l->http_dir, why);
                return -1;
            }
        }
        if (l->proxy_protocol_v2_require_tls && l->enable_proxy_protocol != 2) {
            set_err(
                err, errlen,
                "%s:%d: listener %d: proxy_protocol_v2_require_tls needs enable_proxy_protocol 2",
                l->file, l->line, l->port);
            return -1;
        }
        if (l->psk_hint && l->certfile) {
            set_err(err, errlen,
                    "%s:%d: listener %d: cannot use both certificate and PSK "
                    "encryption",
                    l->file, l->line, l->port);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            const struct hato_listener *o = &cfg->listeners[j];
            bool dup = l->unix_path ? same_str(l->unix_path, o->unix_path)
                                    : (!o->unix_path && l->port != 0 && l->port == o->port &&
                                       same_str(l->bind_address, o->bind_address) &&
                                       l->socket_domain == o->socket_domain);
            if (dup) {
                if (l->unix_path)
                    set_err(err, errlen, "%s:%d: listener 0 %s duplicates the one at %s:%d",
                            l->file, l->line, l->unix_path, o->file, o->line);
                else
                    set_err(err, errlen, "%s:%d: listener %d duplicates the one at %s:%d", l->file,
                            l->line, l->port, o->file, o->line);
                return -1;
            }
        }
    }
    if (bridge_conf_finish(cfg, err, errlen) < 0)
        return -1;
    if (cluster_conf_check(cfg, err, errlen) < 0)
        return -1;
    cfg->finished = true;
    return 0;
oom:
    set_err(err, errlen, "out of memory");
    return -1;
}

void hato_config_free(struct hato_config *cfg) {
    static const size_t strings[] = {
        CO(clientid_prefixes),
        CO(auto_id_prefix),
        CO(password_file),
        CO(acl_file),
        CO(psk_file),
        CO(admin_password_file),
        CO(admin_console_dir),
        CO(persistence_location),
        CO(persistence_file),
        CO(include_dir),
        CO(pid_file),
        CO(user),
        CO(log_file),
        CO(log_timestamp_format),
        CO(cluster_nats_url),
        CO(cluster_name),
        CO(node_name),
        CO(cluster_nats_user),
        CO(cluster_nats_password),
        CO(cluster_nats_cafile),
        CO(cluster_nats_certfile),
        CO(cluster_nats_keyfile),
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        free(*(char **)(void *)((char *)cfg + strings[i]));
    for (size_t i = 0; i < cfg->n_listeners; i++)
        listener_free(&cfg->listeners[i]);
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->n_bridges; i++)
        bridge_conf_free(&cfg->bridges[i]);
    free(cfg->bridges);
    listener_free(&cfg->default_listener);
    for (size_t i = 0; i < cfg->n_warnings; i++)
        free(cfg->warnings[i]);
    free(cfg->warnings);
    for (size_t i = 0; i < cfg->n_plugins; i++) {
        for (size_t j = 0; j < cfg->plugins[i].n_opts; j++) {
            free(cfg->plugins[i].opts[j].key);
            free(cfg->plugins[i].opts[j].value);
        }
        free(cfg->plugins[i].opts);
        free(cfg->plugins[i].path);
    }
    free(cfg->plugins);
    for (size_t i = 0; i < cfg->n_files; i++)
        free(cfg->files[i]);
    free(cfg->files);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- the table as data: --list-directives, reload, docs ----------------- */

#define N_KEYS (sizeof keys / sizeof keys[0])

static enum hato_reload key_reload(const struct key *k) {
    switch (k->reload) {
    case RL_LIVE:
        return HATO_RELOAD_LIVE;
    case RL_NEW_CONN:
        return HATO_RELOAD_NEW_CONN;
    case RL_IDENT:
        return HATO_RELOAD_LISTENER;
    case RL_RESTART:
        return HATO_RELOAD_RESTART;
    default:
        return k->scope == SC_LISTENER ? HATO_RELOAD_NEW_CONN : HATO_RELOAD_LIVE;
    }
}

const char *hato_reload_name(enum hato_reload r) {
    switch (r) {
    case HATO_RELOAD_LIVE:
        return "live";
    case HATO_RELOAD_NEW_CONN:
        return "new connections";
    case HATO_RELOAD_LISTENER:
        return "reopens the listener";
    case HATO_RELOAD_RESTART:
        return "restart";
    }
    return "?";
}

size_t hato_directive_count(void) {
    return N_KEYS;
}

/* The default of a generic row: the value hato_config_init leaves in its field. */
/* The field of row k in cfg (listener rows: in l) as text; false when the
 * row has no field of its own (FN, bridge, plugin rows). */
static bool format_field(const struct key *k, const struct hato_config *cfg,
                         const struct hato_listener *l, char *out, size_t len) {
    out[0] = '\0';
    if (k->scope != SC_GLOBAL && k->scope != SC_LISTENER && k->scope != SC_SECURITY)
        return false;
    if (k->kind == K_FN || k->kind == K_BRIDGE || k->kind == K_PLUGIN || k->kind == K_OBSOLETE)
        return false;
    const char *base = k->scope == SC_LISTENER ? (const char *)l : (const char *)cfg;
    const void *f = base + (k->scope == SC_LISTENER ? k->loff : k->goff);
    switch (k->kind) {
    case K_BOOL:
        snprintf(out, len, "%s", *(const bool *)f ? "true" : "false");
        break;
    case K_TRI:
        if (*(const int *)f != HATO_UNSET)
            snprintf(out, len, "%s", *(const int *)f ? "true" : "false");
        break;
    case K_INT:
        snprintf(out, len, "%d", *(const int *)f);
        break;
    case K_I64:
        snprintf(out, len, "%" PRId64, *(const int64_t *)f);
        break;
    case K_STR:
    case K_ENUM_STR: {
        const char *s = *(char *const *)f;
        snprintf(out, len, "%s", s ? s : "none");
        break;
    }
    case K_ENUM_INT: {
        int v = *(const int *)f;
        int n = 0;
        while (k->choices[n])
            n++;
        if (v >= 0 && v < n)
            snprintf(out, len, "%s", k->choices[v]);
        break;
    }
    default:
        break;
    }
    return true;
}

static void key_default(const struct key *k, char *out, size_t len) {
    struct hato_config cfg;
    hato_config_init(&cfg);
    format_field(k, &cfg, &cfg.default_listener, out, len);
    hato_config_free(&cfg);
}

bool hato_directive_value(const struct hato_config *cfg, const struct hato_listener *l, size_t i,
                          char *out, size_t len) {
    if (i >= N_KEYS || (keys[i].scope == SC_LISTENER && !l)) {
        if (len)
            out[0] = '\0';
        return false;
    }
    return format_field(&keys[i], cfg, l, out, len);
}

bool hato_directive_get(size_t i, struct hato_directive *d) {
    static const char *const scopes[] = {
        [SC_NONE] = "global",       [SC_GLOBAL] = "global", [SC_LISTENER] = "listener",
        [SC_SECURITY] = "security", [SC_BRIDGE] = "bridge", [SC_PLUGIN] = "plugin",
    };
    static const char *const statuses[] = {
        [ST_IMPLEMENTED] = "implemented", [ST_STORED] = "stored",     [ST_ACCEPTED] = "accepted",
        [ST_REFUSED] = "refused",         [ST_OBSOLETE] = "obsolete",
    };
    if (i >= N_KEYS)
        return false;
    const struct key *k = &keys[i];
    d->name = k->name;
    d->scope = scopes[k->scope];
    d->reload = key_reload(k);
    d->status = statuses[k->status];
    d->doc = k->doc ? k->doc : "";
    d->type[0] = '\0';
    if (k->type) {
        snprintf(d->type, sizeof d->type, "%s", k->type);
    } else if (k->kind == K_BOOL || k->kind == K_TRI) {
        snprintf(d->type, sizeof d->type, "bool");
    } else if (k->kind == K_INT || k->kind == K_I64) {
        snprintf(d->type, sizeof d->type, "integer %" PRId64 "..%" PRId64, k->min, k->max);
    } else if (k->kind == K_STR) {
        snprintf(d->type, sizeof d->type, "string");
    } else if (k->kind == K_ENUM_STR || k->kind == K_ENUM_INT) {
        size_t n = 0;
        for (size_t c = 0; k->choices[c] && n < sizeof d->type; c++)
            n += (size_t)snprintf(d->type + n, sizeof d->type - n, "%s%s", c ? "|" : "",
                                  k->choices[c]);
    }
    if (k->def)
        snprintf(d->def, sizeof d->def, "%s", k->def);
    else
        key_default(k, d->def, sizeof d->def);
    return true;
}

/* s with | escaped, for a Markdown table cell. */
static void print_cell(FILE *out, const char *s) {
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', out);
        fputc(*s, out);
    }
}

void hato_directives_print(FILE *out) {
    fprintf(out, "| Directive | Scope | Value | Default | On SIGHUP | Status | Description |\n"
                 "| --- | --- | --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        struct hato_directive d;
        hato_directive_get(i, &d);
        bool inert = !strcmp(d.status, "refused") || !strcmp(d.status, "obsolete");
        const char *cells[] = {
            d.scope,  d.type, d.def[0] ? d.def : "-", inert ? "-" : hato_reload_name(d.reload),
            d.status, d.doc};
        fprintf(out, "| `%s` |", d.name);
        for (size_t c = 0; c < sizeof cells / sizeof cells[0]; c++) {
            fputc(' ', out);
            print_cell(out, cells[c]);
            fprintf(out, " |");
        }
        fputc('\n', out);
    }
}

int hato_config_keep_restart(struct hato_config *n, const struct hato_config *old,
                             void (*changed)(const char *name, const char *running, void *arg),
                             void *arg) {
    int rc = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        if (key_reload(k) != HATO_RELOAD_RESTART || k->scope != SC_GLOBAL)
            continue;
        bool alias = false; /* an earlier row of the same field was handled */
        for (size_t j = 0; j < i && !alias; j++)
            alias = key_reload(&keys[j]) == HATO_RELOAD_RESTART && keys[j].scope == SC_GLOBAL &&
                    keys[j].goff == k->goff;
        if (alias)
            continue;
        char *nf = (char *)n + k->goff;
        const char *of = (const char *)old + k->goff;
        char running[64];
        switch (k->kind) {
        case K_BOOL:
            if (*(bool *)nf == *(const bool *)of)
                continue;
            *(bool *)nf = *(const bool *)of;
            snprintf(running, sizeof running, "%s", *(const bool *)of ? "true" : "false");
            break;
        case K_INT:
        case K_ENUM_INT:
            if (*(int *)nf == *(const int *)of)
                continue;
            *(int *)nf = *(const int *)of;
            if (k->kind == K_ENUM_INT)
                snprintf(running, sizeof running, "%s", k->choices[*(const int *)of]);
            else
                snprintf(running, sizeof running, "%d", *(const int *)of);
            break;
        case K_I64:
            if (*(int64_t *)nf == *(const int64_t *)of)
                continue;
            *(int64_t *)nf = *(const int64_t *)of;
            snprintf(running, sizeof running, "%" PRId64, *(const int64_t *)of);
            break;
        case K_STR:
        case K_ENUM_STR: {
            char **ns = (char **)(void *)nf;
            char *const *os = (char *const *)(const void *)of;
            if ((!*ns && !*os) || (*ns && *os && strcmp(*ns, *os) == 0))
                continue;
            char *copy = NULL;
            if (*os && !(copy = strdup(*os))) {
                rc = -1;
                continue;
            }
            free(*ns);
            *ns = copy;
            /* A secret is not written to the log. */
            changed(k->name, !*os ? "" : strstr(k->name, "password") ? "(hidden)" : *os, arg);
            continue;
        }
        default:
            continue; /* restart rows are generic (tests/unit/test_config.c) */
        }
        changed(k->name, running, arg);
    }
    return rc;
}
