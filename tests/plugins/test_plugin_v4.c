/*
 * An auth plugin of the older interface (version 4, `auth_plugin` style)
 * for hato's tests (tests/integration/test_plugins.py). It loads in
 * Mosquitto too.
 *
 *   auth_opt_*     each is logged: "test-v4: option KEY=VALUE"
 *   unpwd_check    user "v4user" with password "v4pw": allowed; no user
 *                  name: deferred; anything else: refused
 *   acl_check      topics under secret/: refused; else allowed
 *   security_init  logs "test-v4: security_init reload=R"
 *
 * Built with -DTEST_PLUGIN_VERSION=3 or 2 it is an auth plugin of that
 * version (version 2 has other signatures, and both require
 * mosquitto_auth_psk_key_get).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#ifndef TEST_PLUGIN_VERSION
#define TEST_PLUGIN_VERSION 4
#endif

#if TEST_PLUGIN_VERSION == 2
/* mosquitto_plugin.h declares the version 4 functions: version 2's are declared here. */
struct mosquitto_opt {
    char *key;
    char *value;
};
void mosquitto_log_printf(int level, const char *fmt, ...);
#else
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#endif

#define OK 0
#define ERR_AUTH 11
#define ERR_ACL_DENIED 12
#define ERR_PLUGIN_DEFER 17
#define LOG_NOTICE 0x02

int mosquitto_auth_plugin_version(void) {
    return TEST_PLUGIN_VERSION;
}

int mosquitto_auth_plugin_init(void **user_data, struct mosquitto_opt *opts, int n) {
    (void)user_data;
    for (int i = 0; i < n; i++)
        mosquitto_log_printf(LOG_NOTICE, "test-v4: option %s=%s", opts[i].key, opts[i].value);
    return OK;
}

int mosquitto_auth_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int n) {
    (void)user_data, (void)opts, (void)n;
    return OK;
}

int mosquitto_auth_security_init(void *user_data, struct mosquitto_opt *opts, int n, bool reload) {
    (void)user_data, (void)opts, (void)n;
    mosquitto_log_printf(LOG_NOTICE, "test-v4: security_init reload=%d", reload ? 1 : 0);
    return OK;
}

int mosquitto_auth_security_cleanup(void *user_data, struct mosquitto_opt *opts, int n,
                                    bool reload) {
    (void)user_data, (void)opts, (void)n, (void)reload;
    return OK;
}

#if TEST_PLUGIN_VERSION == 2
int mosquitto_auth_acl_check(void *user_data, const char *clientid, const char *username,
                             const char *topic, int access) {
    (void)user_data, (void)clientid, (void)username, (void)access;
    return strncmp(topic, "secret/", 7) == 0 ? ERR_ACL_DENIED : OK;
}

int mosquitto_auth_unpwd_check(void *user_data, const char *username, const char *password) {
    (void)user_data;
    if (!username)
        return ERR_PLUGIN_DEFER;
    return strcmp(username, "v4user") == 0 && password && strcmp(password, "v4pw") == 0 ? OK
                                                                                        : ERR_AUTH;
}

int mosquitto_auth_psk_key_get(void *user_data, const char *hint, const char *identity, char *key,
                               int max_key_len) {
    (void)user_data, (void)hint, (void)identity, (void)key, (void)max_key_len;
    return ERR_PLUGIN_DEFER;
}
#else
int mosquitto_auth_acl_check(void *user_data, int access, struct mosquitto *client,
                             const struct mosquitto_acl_msg *msg) {
    (void)user_data, (void)access, (void)client;
    return strncmp(msg->topic, "secret/", 7) == 0 ? ERR_ACL_DENIED : OK;
}

int mosquitto_auth_unpwd_check(void *user_data, struct mosquitto *client, const char *username,
                               const char *password) {
    (void)user_data, (void)client;
    if (!username)
        return ERR_PLUGIN_DEFER;
    return strcmp(username, "v4user") == 0 && password && strcmp(password, "v4pw") == 0 ? OK
                                                                                        : ERR_AUTH;
}

#if TEST_PLUGIN_VERSION == 3
int mosquitto_auth_psk_key_get(void *user_data, struct mosquitto *client, const char *hint,
                               const char *identity, char *key, int max_key_len) {
    (void)user_data, (void)client, (void)hint, (void)identity, (void)key, (void)max_key_len;
    return ERR_PLUGIN_DEFER;
}
#endif
#endif
