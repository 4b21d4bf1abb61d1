/*
 * Build options as the config reader sees them: a directive asking for a
 * part this build left out stops start-up (and --test-config) at its line,
 * as Mosquitto refuses TLS options when built without TLS, rather than
 * being accepted and silently ignored.
 */
#include "config/features.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#ifndef HATO_WITH_TLS
#error "HATO_WITH_* come from CMakeLists.txt"
#endif

/* Directives that only mean something with TLS. */
static const char *const tls_keys[] = {
    "cafile",      "capath",     "certfile",    "keyfile",
    "tls_version", "ciphers",    "crlfile",     "ciphers_tls1.3",
    "dhparamfile", "tls_engine", "tls_keyform", "tls_engine_kpass_sha1",
};
/* Boolean TLS directives: refused only when turned on. */
static const char *const tls_flags[] = {
    "require_certificate",
    "use_identity_as_username",
    "use_subject_as_username",
    "disable_client_cert_date_checks",
};
static const char *const psk_keys[] = {"psk_hint", "psk_file"};
static const char *const ws_keys[] = {"http_dir", "websockets_origin", "websockets_trusted_proxy",
                                      "websockets_headers_size"};
static const char *const persist_flags[] = {"persistence", "retained_persistence"};
static const char *const plugin_keys[] = {"plugin", "auth_plugin", "global_plugin"};
static const char *const cluster_keys[] = {"cluster_nats_url"};

static bool in(const char *name, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0)
            return true;
    return false;
}

static bool is_true(const char *v) {
    return strcmp(v, "true") == 0 || strcmp(v, "1") == 0;
}

#define IN(name, list) in(name, list, sizeof list / sizeof list[0])

const char *hato_feature_missing(const char *name, const char *value) {
    if (!HATO_WITH_TLS &&
        (IN(name, tls_keys) || IN(name, psk_keys) || (IN(name, tls_flags) && is_true(value))))
        return "hato was built without TLS (WITH_TLS=OFF)";
    if (!HATO_WITH_TLS_PSK && IN(name, psk_keys))
        return "hato was built without TLS-PSK (WITH_TLS_PSK=OFF)";
    if (!HATO_WITH_WEBSOCKETS &&
        (IN(name, ws_keys) || (strcmp(name, "protocol") == 0 && strcmp(value, "websockets") == 0)))
        return "hato was built without WebSockets (WITH_WEBSOCKETS=OFF)";
    if (!HATO_WITH_PERSISTENCE && IN(name, persist_flags) && is_true(value))
        return "hato was built without persistence (WITH_PERSISTENCE=OFF)";
    if (!HATO_WITH_PLUGINS && IN(name, plugin_keys))
        return "hato was built without Mosquitto plugin support (WITH_PLUGINS=OFF, or "
               "mosquitto-dev's headers were missing)";
    if (!HATO_WITH_CLUSTER && IN(name, cluster_keys))
        return "hato was built without clustering (WITH_CLUSTER=OFF)";
    return NULL;
}

const char *hato_features(void) {
    static char buf[96];
    if (!buf[0]) {
        const struct {
            bool on;
            const char *name;
        } parts[] = {
            {HATO_WITH_TLS, "TLS"},         {HATO_WITH_TLS_PSK, "TLS-PSK"},
            {HATO_WITH_EC, "EC"},           {HATO_WITH_WEBSOCKETS, "WebSockets"},
            {HATO_WITH_SYSTEMD, "systemd"}, {HATO_WITH_PERSISTENCE, "persistence"},
            {HATO_WITH_PLUGINS, "plugins"}, {HATO_WITH_CLUSTER, "cluster"},
        };
        size_t len = 0;
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
            if (parts[i].on)
                len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", len ? " " : "",
                                        parts[i].name);
        if (!len)
            snprintf(buf, sizeof buf, "(none)");
    }
    return buf;
}
