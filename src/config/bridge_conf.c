/*
 * Bridge sections: `connection NAME` and the Mosquitto bridge options that
 * follow it (docs/configuration.md, docs/bridges.md). Each option belongs to
 * the last `connection`; values are checked here, the engine is
 * src/broker/bridge.c.
 */
#include "config/bridge_conf.h"
#include "config/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int berr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int berr(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static bool is_sp(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Next whitespace-separated word of *rest (in place), NULL at the end. */
static char *word(char **rest) {
    char *s = *rest;
    while (*s && is_sp(*s))
        s++;
    if (!*s) {
        *rest = s;
        return NULL;
    }
    char *w = s;
    while (*s && !is_sp(*s))
        s++;
    if (*s)
        *s++ = '\0';
    *rest = s;
    return w;
}

static int one(const char *key, char *value, char **out, char *err, size_t errlen) {
    char *rest = value;
    *out = word(&rest);
    if (!*out)
        return berr(err, errlen, "%s: missing value", key);
    if (word(&rest))
        return berr(err, errlen, "%s: takes one value", key);
    return 0;
}

static int set_str(char **dst, const char *key, char *value, char *err, size_t errlen) {
    if (*value == '\0')
        return berr(err, errlen, "%s: missing value", key);
    char *s = strdup(value);
    if (!s)
        return berr(err, errlen, "out of memory");
    free(*dst);
    *dst = s;
    return 0;
}

static int set_bool(bool *dst, const char *key, char *value, char *err, size_t errlen) {
    char *w;
    if (one(key, value, &w, err, errlen) < 0)
        return -1;
    if (strcmp(w, "true") == 0)
        *dst = true;
    else if (strcmp(w, "false") == 0)
        *dst = false;
    else
        return berr(err, errlen, "%s: '%s' is not true or false", key, w);
    return 0;
}

static int int_word(const char *key, const char *w, long lo, long hi, int *out, char *err,
                    size_t errlen) {
    char *end;
    errno = 0;
    long v = strtol(w, &end, 10);
    if (errno || end == w || *end || v < lo || v > hi)
        return berr(err, errlen, "%s: '%s' is not a whole number from %ld to %ld", key, w, lo, hi);
    *out = (int)v;
    return 0;
}

static int set_int(int *dst, const char *key, char *value, long lo, long hi, char *err,
                   size_t errlen) {
    char *w;
    if (one(key, value, &w, err, errlen) < 0)
        return -1;
    return int_word(key, w, lo, hi, dst, err, errlen);
}

int bridge_conf_new(struct hato_config *cfg, const char *name, const char *file, int line,
                    char *err, size_t errlen) {
    for (size_t i = 0; i < cfg->n_bridges; i++)
        if (strcmp(cfg->bridges[i].name, name) == 0)
            return berr(err, errlen, "connection: a bridge named '%s' is already defined (%s:%d)",
                        name, cfg->bridges[i].file, cfg->bridges[i].line);
    struct hato_bridge *v = realloc(cfg->bridges, (cfg->n_bridges + 1) * sizeof *v);
    if (!v)
        return berr(err, errlen, "out of memory");
    cfg->bridges = v;
    struct hato_bridge *b = &v[cfg->n_bridges];
    memset(b, 0, sizeof *b);
    if (!(b->name = strdup(name)))
        return berr(err, errlen, "out of memory");
    cfg->n_bridges++;
    b->file = file;
    b->line = line;
    b->version = 4;
    b->local_clean = -1;
    b->keepalive = 60;
    b->restart_base = 5;
    b->restart_cap = 30;
    b->idle_timeout = 60;
    b->threshold = 10;
    b->forward_bridged = true;
    b->notifications = true;
    b->try_private = true;
    b->outgoing_retain = true;
    b->attempt_unsubscribe = true;
    return 0;
}

/* host[:port], [v6]:port, ws://host[:port][/path], wss://... */
static int add_address(struct hato_bridge *b, char *w, char *err, size_t errlen) {
    struct hato_bridge_addr a = {0};
    char *s = w;
    if (strncmp(s, "ws://", 5) == 0 || strncmp(s, "wss://", 6) == 0) {
        a.ws_tls = s[2] == 's';
        s += a.ws_tls ? 6 : 5;
        char *slash = strchr(s, '/');
        a.ws_path = strdup(slash ? slash : "/");
        if (!a.ws_path)
            return berr(err, errlen, "out of memory");
        if (slash)
            *slash = '\0';
    }
    char *port = NULL;
    if (*s == '[') {
        char *close = strchr(s, ']');
        if (!close || (close[1] && close[1] != ':')) {
            free(a.ws_path);
            return berr(err, errlen, "address: '%s' is not [IPv6]:port", w);
        }
        *close = '\0';
        if (close[1] == ':')
            port = close + 2;
        s++;
    } else {
        char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':')) {
            free(a.ws_path);
            return berr(err, errlen, "address: '%s': write an IPv6 address as [ADDRESS]:PORT", w);
        }
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
    }
    if (*s == '\0') {
        free(a.ws_path);
        return berr(err, errlen, "address: '%s' has no host", w);
    }
    if (port) {
        int pv;
        if (int_word("address", port, 1, 65535, &pv, err, errlen) < 0) {
            free(a.ws_path);
            return -1;
        }
        a.port = (uint16_t)pv;
    }
    a.host = strdup(s);
    struct hato_bridge_addr *v = realloc(b->addrs, (b->n_addrs + 1) * sizeof *v);
    if (!a.host || !v) {
        free(a.host);
        free(a.ws_path);
        if (v)
            b->addrs = v;
        return berr(err, errlen, "out of memory");
    }
    b->addrs = v;
    v[b->n_addrs++] = a;
    return 0;
}

static char *dup_or_empty(const char *w) {
    return strdup(strcmp(w, "\"\"") == 0 ? "" : w);
}

/* topic PATTERN [in|out|both [QOS [LOCAL_PREFIX [REMOTE_PREFIX]]]] */
static int add_topic(struct hato_bridge *b, char *value, char *err, size_t errlen) {
    char *rest = value;
    char *pat = word(&rest), *dir = word(&rest), *qos = word(&rest);
    char *lp = word(&rest), *rp = word(&rest);
    if (!pat)
        return berr(err, errlen, "topic: missing value");
    if (word(&rest))
        return berr(err, errlen,
                    "topic: too many values (PATTERN [in|out|both [QOS [LOCAL_PREFIX "
                    "[REMOTE_PREFIX]]]])");
    struct hato_bridge_topic t = {.direction = BRIDGE_OUT};
    if (dir) {
        if (strcmp(dir, "out") == 0)
            t.direction = BRIDGE_OUT;
        else if (strcmp(dir, "in") == 0)
            t.direction = BRIDGE_IN;
        else if (strcmp(dir, "both") == 0)
            t.direction = BRIDGE_BOTH;
        else
            return berr(err, errlen, "topic: direction '%s' is not in, out or both", dir);
    }
    if (qos) {
        int q;
        if (int_word("topic", qos, 0, 2, &q, err, errlen) < 0)
            return -1;
        t.qos = (uint8_t)q;
    }
    bool empty = strcmp(pat, "\"\"") == 0;
    bool lpe = !lp || strcmp(lp, "\"\"") == 0, rpe = !rp || strcmp(rp, "\"\"") == 0;
    if (empty && lpe && rpe)
        return berr(err, errlen, "topic: an empty pattern needs a local or remote prefix");
    /* The prefix forms a topic with the pattern: no wildcards in it. */
    const char *pfx[2] = {lp, rp};
    for (int i = 0; i < 2; i++)
        if (pfx[i] && (strchr(pfx[i], '#') || strchr(pfx[i], '+')))
            return berr(err, errlen, "topic: the prefix '%s' has a wildcard", pfx[i]);
    t.pattern = dup_or_empty(pat);
    t.local_prefix = lpe ? NULL : strdup(lp);
    t.remote_prefix = rpe ? NULL : strdup(rp);
    struct hato_bridge_topic *v = realloc(b->topics, (b->n_topics + 1) * sizeof *v);
    if (!t.pattern || (!lpe && !t.local_prefix) || (!rpe && !t.remote_prefix) || !v) {
        free(t.pattern);
        free(t.local_prefix);
        free(t.remote_prefix);
        if (v)
            b->topics = v;
        return berr(err, errlen, "out of memory");
    }
    b->topics = v;
    v[b->n_topics++] = t;
    return 0;
}

static int restart_timeout(struct hato_bridge *b, char *value, char *err, size_t errlen) {
    char *rest = value, *w1 = word(&rest), *w2 = word(&rest);
    if (!w1)
        return berr(err, errlen, "restart_timeout: missing value");
    if (word(&rest))
        return berr(err, errlen, "restart_timeout: takes SECONDS or BASE CAP");
    if (int_word("restart_timeout", w1, 1, 86400, &b->restart_base, err, errlen) < 0)
        return -1;
    b->restart_cap = 0;
    if (w2) {
        if (int_word("restart_timeout", w2, 1, 86400, &b->restart_cap, err, errlen) < 0)
            return -1;
        if (b->restart_cap < b->restart_base)
            return berr(err, errlen, "restart_timeout: the cap %d is below the base %d",
                        b->restart_cap, b->restart_base);
    }
    return 0;
}

int bridge_conf_option(struct hato_config *cfg, const char *key, char *value, char *err,
                       size_t errlen) {
    if (cfg->n_bridges == 0)
        return berr(err, errlen, "%s: a bridge option, but no 'connection' line comes before it",
                    key);
    struct hato_bridge *b = &cfg->bridges[cfg->n_bridges - 1];
    char *w;
#define IS(n) (strcmp(key, n) == 0)
    if (IS("address") || IS("addresses")) {
        char *rest = value;
        int n = 0;
        while ((w = word(&rest)) != NULL) {
            if (add_address(b, w, err, errlen) < 0)
                return -1;
            n++;
        }
        if (!n)
            return berr(err, errlen, "%s: missing value", key);
        return 0;
    }
    if (IS("topic"))
        return add_topic(b, value, err, errlen);
    if (IS("round_robin"))
        return set_bool(&b->round_robin, key, value, err, errlen);
    if (IS("bridge_protocol_version")) {
        if (one(key, value, &w, err, errlen) < 0)
            return -1;
        if (strcmp(w, "mqttv31") == 0)
            b->version = 3;
        else if (strcmp(w, "mqttv311") == 0)
            b->version = 4;
        else if (strcmp(w, "mqttv50") == 0)
            b->version = 5;
        else
            return berr(err, errlen, "%s: '%s' is not mqttv31, mqttv311 or mqttv50", key, w);
        return 0;
    }
    if (IS("cleansession"))
        return set_bool(&b->clean, key, value, err, errlen);
    if (IS("local_cleansession")) {
        bool v;
        if (set_bool(&v, key, value, err, errlen) < 0)
            return -1;
        b->local_clean = v;
        return 0;
    }
    if (IS("remote_clientid") || IS("clientid"))
        return set_str(&b->remote_clientid, key, value, err, errlen);
    if (IS("local_clientid"))
        return set_str(&b->local_clientid, key, value, err, errlen);
    if (IS("remote_username") || IS("username"))
        return set_str(&b->remote_username, key, value, err, errlen);
    if (IS("remote_password") || IS("password"))
        return set_str(&b->remote_password, key, value, err, errlen);
    if (IS("local_username"))
        return set_str(&b->local_username, key, value, err, errlen);
    if (IS("local_password"))
        return set_str(&b->local_password, key, value, err, errlen);
    if (IS("keepalive_interval"))
        return set_int(&b->keepalive, key, value, 5, 65535, err, errlen);
    if (IS("restart_timeout"))
        return restart_timeout(b, value, err, errlen);
    if (IS("idle_timeout"))
        return set_int(&b->idle_timeout, key, value, 1, 86400 * 365, err, errlen);
    if (IS("threshold"))
        return set_int(&b->threshold, key, value, 1, 65534, err, errlen);
    if (IS("start_type")) {
        if (one(key, value, &w, err, errlen) < 0)
            return -1;
        if (strcmp(w, "automatic") == 0)
            b->start_type = BRIDGE_START_AUTOMATIC;
        else if (strcmp(w, "lazy") == 0)
            b->start_type = BRIDGE_START_LAZY;
        else if (strcmp(w, "once") == 0)
            b->start_type = BRIDGE_START_ONCE;
        else
            return berr(err, errlen, "%s: '%s' is not automatic, lazy or once", key, w);
        return 0;
    }
    if (IS("notifications"))
        return set_bool(&b->notifications, key, value, err, errlen);
    if (IS("notification_topic"))
        return set_str(&b->notification_topic, key, value, err, errlen);
    if (IS("notifications_local_only"))
        return set_bool(&b->notifications_local_only, key, value, err, errlen);
    if (IS("try_private"))
        return set_bool(&b->try_private, key, value, err, errlen);
    if (IS("bridge_forward_bridged"))
        return set_bool(&b->forward_bridged, key, value, err, errlen);
    if (IS("bridge_max_queued_messages")) {
        int v;
        if (set_int(&v, key, value, 0, INT32_MAX, err, errlen) < 0)
            return -1;
        b->max_queued = (uint32_t)v;
        return 0;
    }
    if (IS("bridge_outgoing_retain"))
        return set_bool(&b->outgoing_retain, key, value, err, errlen);
    if (IS("bridge_attempt_unsubscribe"))
        return set_bool(&b->attempt_unsubscribe, key, value, err, errlen);
    if (IS("bridge_max_packet_size")) {
        int v;
        if (set_int(&v, key, value, 0, 268435460, err, errlen) < 0)
            return -1;
        b->max_packet_size = (uint32_t)v;
        return 0;
    }
    if (IS("bridge_cafile"))
        return set_str(&b->cafile, key, value, err, errlen);
    if (IS("bridge_capath"))
        return set_str(&b->capath, key, value, err, errlen);
    if (IS("bridge_certfile"))
        return set_str(&b->certfile, key, value, err, errlen);
    if (IS("bridge_keyfile"))
        return set_str(&b->keyfile, key, value, err, errlen);
    if (IS("bridge_insecure"))
        return set_bool(&b->insecure, key, value, err, errlen);
    if (IS("bridge_tls_use_os_certs"))
        return set_bool(&b->tls_use_os_certs, key, value, err, errlen);
    if (IS("bridge_bind_address"))
        return set_str(&b->bind_address, key, value, err, errlen);
    if (IS("bridge_tls_version")) {
        if (one(key, value, &w, err, errlen) < 0)
            return -1;
        if (strcmp(w, "tlsv1.3") && strcmp(w, "tlsv1.2") && strcmp(w, "tlsv1.1"))
            return berr(err, errlen, "%s: '%s' is not tlsv1.3, tlsv1.2 or tlsv1.1", key, w);
        return set_str(&b->tls_version, key, w, err, errlen);
    }
    if (IS("bridge_alpn"))
        return set_str(&b->alpn, key, value, err, errlen);
    if (IS("bridge_identity"))
        return set_str(&b->identity, key, value, err, errlen);
    if (IS("bridge_psk")) {
        for (const char *s = value; *s; s++)
            if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F')))
                return berr(err, errlen, "%s: the key must be hexadecimal", key);
        return set_str(&b->psk, key, value, err, errlen);
    }
#undef IS
    return berr(err, errlen, "%s: is a bridge option hato does not implement", key);
}

static char *fmt_dup(const char *fmt, const char *a, const char *b) {
    size_t n = strlen(fmt) + strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, fmt, a, b);
    return s;
}

int bridge_conf_finish(struct hato_config *cfg, char *err, size_t errlen) {
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "hato");
    host[sizeof host - 1] = '\0';
    for (size_t i = 0; i < cfg->n_bridges; i++) {
        struct hato_bridge *b = &cfg->bridges[i];
        if (b->n_addrs == 0)
            return berr(err, errlen, "%s:%d: connection %s: no address given", b->file, b->line,
                        b->name);
        if ((b->certfile != NULL) != (b->keyfile != NULL))
            return berr(err, errlen,
                        "%s:%d: connection %s: bridge_certfile and bridge_keyfile go together",
                        b->file, b->line, b->name);
        if ((b->psk != NULL) != (b->identity != NULL))
            return berr(err, errlen,
                        "%s:%d: connection %s: bridge_identity and bridge_psk go together", b->file,
                        b->line, b->name);
        if (b->psk && (b->cafile || b->capath))
            return berr(err, errlen,
                        "%s:%d: connection %s: bridge_psk and bridge_cafile/bridge_capath cannot "
                        "both be used",
                        b->file, b->line, b->name);
        if (b->local_clean < 0)
            b->local_clean = b->clean;
        if (!b->remote_clientid && !(b->remote_clientid = fmt_dup("%s.%s", host, b->name)))
            goto oom;
        if (!b->local_clientid &&
            !(b->local_clientid = fmt_dup("%slocal.%s", "", b->remote_clientid)))
            goto oom;
        if (!b->notification_topic &&
            !(b->notification_topic =
                  fmt_dup("$SYS/broker/connection/%s%s/state", b->remote_clientid, "")))
            goto oom;
    }
    return 0;
oom:
    return berr(err, errlen, "out of memory");
}

void bridge_conf_free(struct hato_bridge *b) {
    free(b->name);
    for (size_t i = 0; i < b->n_addrs; i++) {
        free(b->addrs[i].host);
        free(b->addrs[i].ws_path);
    }
    free(b->addrs);
    for (size_t i = 0; i < b->n_topics; i++) {
        free(b->topics[i].pattern);
        free(b->topics[i].local_prefix);
        free(b->topics[i].remote_prefix);
    }
    free(b->topics);
    char **s[] = {&b->remote_clientid,
                  &b->local_clientid,
                  &b->remote_username,
                  &b->remote_password,
                  &b->local_username,
                  &b->local_password,
                  &b->notification_topic,
                  &b->cafile,
                  &b->capath,
                  &b->certfile,
                  &b->keyfile,
                  &b->tls_version,
                  &b->alpn,
                  &b->identity,
                  &b->psk,
                  &b->bind_address};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        free(*s[i]);
    memset(b, 0, sizeof *b);
}

static bool seq(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

bool bridge_conf_equal(const struct hato_bridge *a, const struct hato_bridge *b) {
    if (!seq(a->name, b->name) || a->n_addrs != b->n_addrs || a->n_topics != b->n_topics ||
        a->round_robin != b->round_robin || a->version != b->version || a->clean != b->clean ||
        a->local_clean != b->local_clean || a->keepalive != b->keepalive ||
        a->restart_base != b->restart_base || a->restart_cap != b->restart_cap ||
        a->idle_timeout != b->idle_timeout || a->start_type != b->start_type ||
        a->threshold != b->threshold || a->notifications != b->notifications ||
        a->notifications_local_only != b->notifications_local_only ||
        a->try_private != b->try_private || a->outgoing_retain != b->outgoing_retain ||
        a->max_packet_size != b->max_packet_size ||
        a->attempt_unsubscribe != b->attempt_unsubscribe || a->insecure != b->insecure ||
        a->tls_use_os_certs != b->tls_use_os_certs || a->forward_bridged != b->forward_bridged ||
        a->max_queued != b->max_queued)
        return false;
    for (size_t i = 0; i < a->n_addrs; i++)
        if (!seq(a->addrs[i].host, b->addrs[i].host) || a->addrs[i].port != b->addrs[i].port ||
            !seq(a->addrs[i].ws_path, b->addrs[i].ws_path) ||
            a->addrs[i].ws_tls != b->addrs[i].ws_tls)
            return false;
    for (size_t i = 0; i < a->n_topics; i++)
        if (!seq(a->topics[i].pattern, b->topics[i].pattern) ||
            !seq(a->topics[i].local_prefix, b->topics[i].local_prefix) ||
            !seq(a->topics[i].remote_prefix, b->topics[i].remote_prefix) ||
            a->topics[i].direction != b->topics[i].direction ||
            a->topics[i].qos != b->topics[i].qos)
            return false;
    return seq(a->remote_clientid, b->remote_clientid) &&
           seq(a->local_clientid, b->local_clientid) &&
           seq(a->remote_username, b->remote_username) &&
           seq(a->remote_password, b->remote_password) &&
           seq(a->local_username, b->local_username) && seq(a->local_password, b->local_password) &&
           seq(a->notification_topic, b->notification_topic) && seq(a->cafile, b->cafile) &&
           seq(a->capath, b->capath) && seq(a->certfile, b->certfile) &&
           seq(a->keyfile, b->keyfile) && seq(a->tls_version, b->tls_version) &&
           seq(a->alpn, b->alpn) && seq(a->identity, b->identity) && seq(a->psk, b->psk) &&
           seq(a->bind_address, b->bind_address);
}
