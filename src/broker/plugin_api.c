/*
 * The mosquitto_* functions a Mosquitto plugin calls (mosquitto_broker.h,
 * and the few of libmosquitto's mosquitto.h that plugins use without
 * linking libmosquitto). The hato executable exports them (ENABLE_EXPORTS),
 * so that a dlopen'ed plugin resolves them against the broker.
 *
 * Which functions exist and which do not, and why: docs/plugins.md.
 */
#include "broker/broker.h"

#if HATO_WITH_PLUGINS

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "broker/plugin_internal.h"

/* The prototypes of the libmosquitto functions provided here (mosquitto.h
 * is not installed with mosquitto-dev). */
int mosquitto_topic_matches_sub(const char *sub, const char *topic, bool *result);
int mosquitto_topic_matches_sub2(const char *sub, size_t sublen, const char *topic, size_t topiclen,
                                 bool *result);
int mosquitto_sub_topic_check(const char *sub);
int mosquitto_sub_topic_check2(const char *sub, size_t len);
int mosquitto_pub_topic_check(const char *topic);
int mosquitto_pub_topic_check2(const char *topic, size_t len);
int mosquitto_validate_utf8(const char *str, int len);
const char *mosquitto_strerror(int err);

/* ---- callbacks ------------------------------------------------------------ */

int mosquitto_callback_register(mosquitto_plugin_id_t *identifier, int event,
                                MOSQ_FUNC_generic_callback cb_func, const void *event_data,
                                void *userdata) {
    struct plugin_host *h = plugin_host;
    if (!h || !identifier || !cb_func || event < MOSQ_EVT_RELOAD || event > MOSQ_EVT_DISCONNECT)
        return MOSQ_ERR_INVAL;
    if (event == MOSQ_EVT_EXT_AUTH_START || event == MOSQ_EVT_EXT_AUTH_CONTINUE ||
        event == MOSQ_EVT_PSK_KEY) {
        log_warn("Warning: a plugin registered for event %d, which hato does not run "
                 "(docs/plugins.md).",
                 event);
        return MOSQ_ERR_NOT_SUPPORTED;
    }
    struct plugin *p = (struct plugin *)identifier;
    const char *topic = event == MOSQ_EVT_CONTROL ? event_data : NULL;
    if (event == MOSQ_EVT_CONTROL) {
        /* A topic of its own under $CONTROL/, at least $CONTROL/A/v1 (Mosquitto's rule). */
        if (!topic || strncmp(topic, "$CONTROL/", 9) != 0 || strlen(topic) < 13)
            return MOSQ_ERR_INVAL;
    }
    int rc = MOSQ_ERR_SUCCESS;
    pthread_mutex_lock(&plugin_lock);
    for (size_t i = 0; i < h->ncbs; i++) {
        struct plugin_cb *cb = &h->cbs[i];
        if (cb->event != event)
            continue;
        if (topic ? strcmp(cb->topic, topic) == 0 && cb->p->lfile == p->lfile &&
                        cb->p->lline == p->lline
                  : cb->p == p && cb->cb == cb_func) {
            rc = MOSQ_ERR_ALREADY_EXISTS;
            goto out;
        }
    }
    if (h->ncbs == h->capcbs) {
        size_t cap = h->capcbs ? h->capcbs * 2 : 8;
        struct plugin_cb *v = realloc(h->cbs, cap * sizeof(*v));
        if (!v) {
            rc = MOSQ_ERR_NOMEM;
            goto out;
        }
        h->cbs = v;
        h->capcbs = cap;
    }
    struct plugin_cb *cb = &h->cbs[h->ncbs];
    *cb = (struct plugin_cb){.p = p, .event = event, .cb = cb_func, .userdata = userdata};
    if (topic && !(cb->topic = strdup(topic))) {
        rc = MOSQ_ERR_NOMEM;
        goto out;
    }
    h->ncbs++;
    atomic_fetch_add(&h->nevents[event], 1);
    if (event == MOSQ_EVT_BASIC_AUTH)
        atomic_fetch_add(&p->auth_cbs, 1);
out:
    pthread_mutex_unlock(&plugin_lock);
    return rc;
}

int mosquitto_callback_unregister(mosquitto_plugin_id_t *identifier, int event,
                                  MOSQ_FUNC_generic_callback cb_func, const void *event_data) {
    struct plugin_host *h = plugin_host;
    if (!h || !identifier || event < MOSQ_EVT_RELOAD || event > MOSQ_EVT_DISCONNECT)
        return MOSQ_ERR_INVAL;
    struct plugin *p = (struct plugin *)identifier;
    const char *topic = event == MOSQ_EVT_CONTROL ? event_data : NULL;
    int rc = MOSQ_ERR_NOT_FOUND;
    pthread_mutex_lock(&plugin_lock);
    for (size_t i = 0; i < h->ncbs; i++) {
        struct plugin_cb *cb = &h->cbs[i];
        if (cb->p != p || cb->event != event || cb->cb != cb_func ||
            (topic && (!cb->topic || strcmp(cb->topic, topic) != 0)))
            continue;
        free(cb->topic);
        memmove(cb, cb + 1, (h->ncbs - i - 1) * sizeof(*cb));
        h->ncbs--;
        atomic_fetch_sub(&h->nevents[event], 1);
        if (event == MOSQ_EVT_BASIC_AUTH)
            atomic_fetch_sub(&p->auth_cbs, 1);
        rc = MOSQ_ERR_SUCCESS;
        break;
    }
    pthread_mutex_unlock(&plugin_lock);
    return rc;
}

/* ---- memory ----------------------------------------------------------------- */

void *mosquitto_calloc(size_t nmemb, size_t size) {
    return calloc(nmemb, size);
}
void mosquitto_free(void *mem) {
    free(mem);
}
void *mosquitto_malloc(size_t size) {
    return malloc(size);
}
void *mosquitto_realloc(void *ptr, size_t size) {
    return realloc(ptr, size);
}
char *mosquitto_strdup(const char *s) {
    return s ? strdup(s) : NULL;
}

/* ---- log ------------------------------------------------------------------- */

void mosquitto_log_printf(int level, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    unsigned l = level & MOSQ_LOG_ERR           ? LOG_ERR
                 : level & MOSQ_LOG_WARNING     ? LOG_WARNING
                 : level & MOSQ_LOG_NOTICE      ? LOG_NOTICE
                 : level & MOSQ_LOG_INFO        ? LOG_INFO
                 : level & MOSQ_LOG_SUBSCRIBE   ? LOG_SUBSCRIBE
                 : level & MOSQ_LOG_UNSUBSCRIBE ? LOG_UNSUBSCRIBE
                 : level & MOSQ_LOG_WEBSOCKETS  ? LOG_WEBSOCKETS
                                                : LOG_DEBUG;
    log_msg(l, "%s", buf);
}

/* ---- clients ------------------------------------------------------------------ */

const char *mosquitto_client_address(const struct mosquitto *client) {
    return client ? client->address : NULL;
}
bool mosquitto_client_clean_session(const struct mosquitto *client) {
    return client ? client->clean_start : true;
}
const char *mosquitto_client_id(const struct mosquitto *client) {
    return client ? client->id : NULL;
}
int mosquitto_client_keepalive(const struct mosquitto *client) {
    return client ? client->keepalive : -1;
}
/* The client's X509 certificate: not kept by hato after the handshake. */
void *mosquitto_client_certificate(const struct mosquitto *client) {
    (void)client;
    return NULL;
}
int mosquitto_client_protocol(const struct mosquitto *client) {
    return client && client->websockets ? mp_websockets : mp_mqtt;
}
int mosquitto_client_protocol_version(const struct mosquitto *client) {
    return client ? client->protocol_version : 0;
}
int mosquitto_client_sub_count(const struct mosquitto *client) {
    return client ? client->sub_count : 0;
}
const char *mosquitto_client_username(const struct mosquitto *client) {
    if (!client)
        return NULL;
    return client->username_changed ? client->new_username : client->username;
}

/* During MOSQ_EVT_BASIC_AUTH (unpwd_check): the user name the client gets. */
int mosquitto_set_username(struct mosquitto *client, const char *username) {
    if (!client)
        return MOSQ_ERR_INVAL;
    char *u = NULL;
    if (username) {
        if (!mqtt_utf8_valid((const uint8_t *)username, strlen(username)))
            return MOSQ_ERR_MALFORMED_UTF8;
        u = strdup(username);
        if (!u)
            return MOSQ_ERR_NOMEM;
    }
    free(client->new_username);
    client->new_username = u;
    client->username_changed = true;
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_kick_client_by_clientid(const char *clientid, bool with_will) {
    return plugin_kick(clientid, true, with_will);
}

int mosquitto_kick_client_by_username(const char *username, bool with_will) {
    return plugin_kick(username, false, with_will);
}

/* ---- publishing ------------------------------------------------------------------ */

/* Properties are libmosquitto's lists: freed with its function when the
 * plugin brought libmosquitto along, else left (none is used). */
static void free_props(mosquitto_property *props) {
    if (!props)
        return;
    void (*f)(mosquitto_property **) =
        (void (*)(mosquitto_property **))dlsym(RTLD_DEFAULT, "mosquitto_property_free_all");
    if (f)
        f(&props);
}

int mosquitto_broker_publish_copy(const char *clientid, const char *topic, int payloadlen,
                                  const void *payload, int qos, bool retain,
                                  mosquitto_property *properties) {
    struct plugin_host *h = plugin_host;
    free_props(properties);
    if (!h || !topic || payloadlen < 0 || (payloadlen && !payload) || qos < 0 || qos > 2)
        return MOSQ_ERR_INVAL;
    size_t tlen = strlen(topic);
    if (!mqtt_topic_name_valid((const uint8_t *)topic, tlen))
        return MOSQ_ERR_INVAL;
    if (clientid) {
        struct msg *m =
            msg_new(topic, tlen, payload, (size_t)payloadlen, (uint8_t)qos, retain, NULL, 0, NULL);
        return m ? plugin_send_to(clientid, m) : MOSQ_ERR_NOMEM;
    }
    return broker_publish_internal(h->b, topic, payload, (size_t)payloadlen, qos, retain) == 0
               ? MOSQ_ERR_SUCCESS
               : MOSQ_ERR_NOMEM;
}

/* payload was allocated by the plugin with mosquitto_malloc: the broker owns it. */
int mosquitto_broker_publish(const char *clientid, const char *topic, int payloadlen, void *payload,
                             int qos, bool retain, mosquitto_property *properties) {
    int rc = mosquitto_broker_publish_copy(clientid, topic, payloadlen, payload, qos, retain,
                                           properties);
    free(payload);
    return rc;
}

/* ---- libmosquitto's helpers --------------------------------------------------------- */

int mosquitto_topic_matches_sub2(const char *sub, size_t sublen, const char *topic, size_t topiclen,
                                 bool *result) {
    if (!result)
        return MOSQ_ERR_INVAL;
    *result = false;
    if (!sub || !topic || !mqtt_topic_filter_valid((const uint8_t *)sub, sublen) ||
        !mqtt_topic_name_valid((const uint8_t *)topic, topiclen))
        return MOSQ_ERR_INVAL;
    *result = mqtt_topic_match((const uint8_t *)sub, sublen, (const uint8_t *)topic, topiclen);
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_topic_matches_sub(const char *sub, const char *topic, bool *result) {
    if (!sub || !topic)
        return MOSQ_ERR_INVAL;
    return mosquitto_topic_matches_sub2(sub, strlen(sub), topic, strlen(topic), result);
}

int mosquitto_sub_topic_check2(const char *sub, size_t len) {
    return sub && mqtt_topic_filter_valid((const uint8_t *)sub, len) ? MOSQ_ERR_SUCCESS
                                                                     : MOSQ_ERR_INVAL;
}
int mosquitto_sub_topic_check(const char *sub) {
    return sub ? mosquitto_sub_topic_check2(sub, strlen(sub)) : MOSQ_ERR_INVAL;
}
int mosquitto_pub_topic_check2(const char *topic, size_t len) {
    return topic && mqtt_topic_name_valid((const uint8_t *)topic, len) ? MOSQ_ERR_SUCCESS
                                                                       : MOSQ_ERR_INVAL;
}
int mosquitto_pub_topic_check(const char *topic) {
    return topic ? mosquitto_pub_topic_check2(topic, strlen(topic)) : MOSQ_ERR_INVAL;
}

int mosquitto_validate_utf8(const char *str, int len) {
    if (!str || len < 0 || len > 65536)
        return MOSQ_ERR_INVAL;
    return mqtt_utf8_valid((const uint8_t *)str, (size_t)len) ? MOSQ_ERR_SUCCESS
                                                              : MOSQ_ERR_MALFORMED_UTF8;
}

const char *mosquitto_strerror(int err) {
    switch (err) {
    case MOSQ_ERR_SUCCESS:
        return "No error.";
    case MOSQ_ERR_NOMEM:
        return "Out of memory.";
    case MOSQ_ERR_INVAL:
        return "Invalid function arguments provided.";
    case MOSQ_ERR_NOT_SUPPORTED:
        return "This feature is not supported.";
    case MOSQ_ERR_AUTH:
        return "Authorisation failed.";
    case MOSQ_ERR_ACL_DENIED:
        return "Access denied by ACL.";
    case MOSQ_ERR_NOT_FOUND:
        return "Not found.";
    case MOSQ_ERR_MALFORMED_UTF8:
        return "Malformed UTF-8.";
    default:
        return "Unknown error.";
    }
}

/* Keeps this file in the link (plugin.c reads it). */
void *const plugin_api_anchor[] = {(void *)mosquitto_callback_register,
                                   (void *)mosquitto_broker_publish};

#endif
