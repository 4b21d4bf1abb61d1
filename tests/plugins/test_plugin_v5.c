/*
 * A Mosquitto plugin (interface version 5) for hato's tests
 * (tests/integration/test_plugins.py). It loads in Mosquitto too.
 *
 *   plugin_opt_*       each is logged: "test-v5[NAME]: option KEY=VALUE"
 *   basic auth         user "bad": refused; any other user with the
 *                      password "pw": allowed; else deferred (to the
 *                      password file, if any)
 *   ACL                a topic under deny/: refused; else allowed
 *   $CONTROL/test-v5/v1  answers on .../response with "echo:PAYLOAD";
 *                      "kick:USER" kicks that user (without will);
 *                      "send:ID" publishes "direct" to direct/x for
 *                      client ID only
 *   message            drop/...: refused; rewrite/X becomes rewritten/X with
 *                      "new:" before the payload
 *   reload             publishes "reload N" to test/v5/reload
 *   tick               publishes "ticking" to test/v5/tick once
 *   disconnect         publishes the client id to test/v5/disconnect
 *
 * Built with -DTEST_PLUGIN_BROKEN it lacks mosquitto_plugin_init, for the
 * error path.
 */
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <stdio.h>
#include <string.h>

#define OK 0
#define ERR_AUTH 11
#define ERR_ACL_DENIED 12
#define ERR_PLUGIN_DEFER 17
#define LOG_NOTICE 0x02

static mosquitto_plugin_id_t *self;
static char name[64] = "?";
static int reloads;
static int ticked;

int mosquitto_plugin_version(int count, const int *versions) {
    for (int i = 0; i < count; i++)
        if (versions[i] == 5)
            return 5;
    return -1;
}

static int on_auth(int event, void *data, void *user) {
    (void)event, (void)user;
    struct mosquitto_evt_basic_auth *ed = data;
    if (!ed->username)
        return ERR_PLUGIN_DEFER;
    if (strcmp(ed->username, "bad") == 0)
        return ERR_AUTH;
    return ed->password && strcmp(ed->password, "pw") == 0 ? OK : ERR_PLUGIN_DEFER;
}

static int on_acl(int event, void *data, void *user) {
    (void)event, (void)user;
    struct mosquitto_evt_acl_check *ed = data;
    return strncmp(ed->topic, "deny/", 5) == 0 ? ERR_ACL_DENIED : OK;
}

static int on_control(int event, void *data, void *user) {
    (void)event, (void)user;
    struct mosquitto_evt_control *ed = data;
    char buf[256];
    int n = snprintf(buf, sizeof buf, "echo:%.*s from %s", (int)ed->payloadlen,
                     (const char *)ed->payload, mosquitto_client_id(ed->client));
    mosquitto_broker_publish_copy(NULL, "$CONTROL/test-v5/v1/response", n, buf, 0, false, NULL);
    if (ed->payloadlen > 5 && memcmp(ed->payload, "kick:", 5) == 0) {
        snprintf(buf, sizeof buf, "%.*s", (int)ed->payloadlen - 5, (const char *)ed->payload + 5);
        mosquitto_kick_client_by_username(buf, false);
    }
    if (ed->payloadlen > 5 && memcmp(ed->payload, "send:", 5) == 0) {
        snprintf(buf, sizeof buf, "%.*s", (int)ed->payloadlen - 5, (const char *)ed->payload + 5);
        mosquitto_broker_publish_copy(buf, "direct/x", 6, "direct", 1, false, NULL);
    }
    return OK;
}

static int on_message(int event, void *data, void *user) {
    (void)event, (void)user;
    struct mosquitto_evt_message *ed = data;
    if (strncmp(ed->topic, "drop/", 5) == 0)
        return ERR_ACL_DENIED;
    if (strncmp(ed->topic, "rewrite/", 8) == 0) {
        size_t n = strlen(ed->topic) + 3;
        char *t = mosquitto_malloc(n);
        snprintf(t, n, "rewritten/%s", ed->topic + 8);
        mosquitto_free(ed->topic);
        ed->topic = t;
        char *p = mosquitto_malloc(ed->payloadlen + 4);
        memcpy(p, "new:", 4);
        memcpy(p + 4, ed->payload, ed->payloadlen);
        ed->payload = p; /* the broker frees the old payload, the plugin the old topic */
        ed->payloadlen += 4;
    }
    return OK;
}

static int on_reload(int event, void *data, void *user) {
    (void)event, (void)data, (void)user;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "reload %d", ++reloads);
    mosquitto_log_printf(LOG_NOTICE, "test-v5[%s]: reload", name);
    mosquitto_broker_publish_copy(NULL, "test/v5/reload", n, buf, 1, true, NULL);
    return OK;
}

static int on_tick(int event, void *data, void *user) {
    (void)event, (void)user;
    struct mosquitto_evt_tick *ed = data;
    if (!ticked++ && ed->now_s > 0) {
        mosquitto_log_printf(LOG_NOTICE, "test-v5[%s]: tick", name);
        mosquitto_broker_publish_copy(NULL, "test/v5/tick", 7, "ticking", 1, true, NULL);
    }
    return OK;
}

static int on_disconnect(int event, void *data, void *user) {
    (void)event, (void)user;
    struct mosquitto_evt_disconnect *ed = data;
    const char *id = mosquitto_client_id(ed->client);
    if (id && strncmp(id, "watch", 5) != 0) {
        char *copy = mosquitto_strdup(id);
        mosquitto_broker_publish(NULL, "test/v5/disconnect", (int)strlen(copy), copy, 1, false,
                                 NULL);
    }
    return OK;
}

#ifndef TEST_PLUGIN_BROKEN
int mosquitto_plugin_init(mosquitto_plugin_id_t *id, void **userdata, struct mosquitto_opt *opts,
                          int n) {
    (void)userdata;
    self = id;
    for (int i = 0; i < n; i++)
        if (strcmp(opts[i].key, "name") == 0)
            snprintf(name, sizeof name, "%s", opts[i].value);
    for (int i = 0; i < n; i++)
        mosquitto_log_printf(LOG_NOTICE, "test-v5[%s]: option %s=%s", name, opts[i].key,
                             opts[i].value);
    mosquitto_callback_register(self, MOSQ_EVT_BASIC_AUTH, on_auth, NULL, NULL);
    mosquitto_callback_register(self, MOSQ_EVT_ACL_CHECK, on_acl, NULL, NULL);
    mosquitto_callback_register(self, MOSQ_EVT_CONTROL, on_control, "$CONTROL/test-v5/v1", NULL);
    mosquitto_callback_register(self, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
    mosquitto_callback_register(self, MOSQ_EVT_RELOAD, on_reload, NULL, NULL);
    mosquitto_callback_register(self, MOSQ_EVT_TICK, on_tick, NULL, NULL);
    mosquitto_callback_register(self, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, NULL);
    return OK;
}
#endif

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int n) {
    (void)userdata, (void)opts, (void)n;
    mosquitto_callback_unregister(self, MOSQ_EVT_BASIC_AUTH, on_auth, NULL);
    mosquitto_callback_unregister(self, MOSQ_EVT_ACL_CHECK, on_acl, NULL);
    mosquitto_callback_unregister(self, MOSQ_EVT_CONTROL, on_control, "$CONTROL/test-v5/v1");
    mosquitto_callback_unregister(self, MOSQ_EVT_MESSAGE, on_message, NULL);
    mosquitto_callback_unregister(self, MOSQ_EVT_RELOAD, on_reload, NULL);
    mosquitto_callback_unregister(self, MOSQ_EVT_TICK, on_tick, NULL);
    mosquitto_callback_unregister(self, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
    return OK;
}
