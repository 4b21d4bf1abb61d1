/*
 * Names of packet types and reason codes, for logs and tools.
 */
#include "internal.h"

const char *mqtt_type_name(uint8_t type) {
    static const char *const names[] = {
        NULL,      "CONNECT",  "CONNACK",    "PUBLISH", "PUBACK",      "PUBREC",
        "PUBREL",  "PUBCOMP",  "SUBSCRIBE",  "SUBACK",  "UNSUBSCRIBE", "UNSUBACK",
        "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
    };
    if (type >= sizeof names / sizeof names[0] || !names[type])
        return "?";
    return names[type];
}

const char *mqtt_reason_text(uint8_t reason) {
    switch (reason) {
    case MQTT_RC_SUCCESS:
        return "Success";
    case MQTT_RC_GRANTED_QOS1:
        return "Granted QoS 1";
    case MQTT_RC_GRANTED_QOS2:
        return "Granted QoS 2";
    case MQTT_RC_DISCONNECT_WITH_WILL:
        return "Disconnect with Will Message";
    case MQTT_RC_NO_MATCHING_SUBSCRIBERS:
        return "No matching subscribers";
    case MQTT_RC_NO_SUBSCRIPTION_EXISTED:
        return "No subscription existed";
    case MQTT_RC_CONTINUE_AUTHENTICATION:
        return "Continue authentication";
    case MQTT_RC_REAUTHENTICATE:
        return "Re-authenticate";
    case MQTT_RC_UNSPECIFIED:
        return "Unspecified error";
    case MQTT_RC_MALFORMED_PACKET:
        return "Malformed Packet";
    case MQTT_RC_PROTOCOL_ERROR:
        return "Protocol Error";
    case MQTT_RC_IMPLEMENTATION_SPECIFIC:
        return "Implementation specific error";
    case MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION:
        return "Unsupported Protocol Version";
    case MQTT_RC_CLIENT_ID_NOT_VALID:
        return "Client Identifier not valid";
    case MQTT_RC_BAD_USERNAME_OR_PASSWORD:
        return "Bad User Name or Password";
    case MQTT_RC_NOT_AUTHORIZED:
        return "Not authorized";
    case MQTT_RC_SERVER_UNAVAILABLE:
        return "Server unavailable";
    case MQTT_RC_SERVER_BUSY:
        return "Server busy";
    case MQTT_RC_BANNED:
        return "Banned";
    case MQTT_RC_SERVER_SHUTTING_DOWN:
        return "Server shutting down";
    case MQTT_RC_BAD_AUTHENTICATION_METHOD:
        return "Bad authentication method";
    case MQTT_RC_KEEP_ALIVE_TIMEOUT:
        return "Keep Alive timeout";
    case MQTT_RC_SESSION_TAKEN_OVER:
        return "Session taken over";
    case MQTT_RC_TOPIC_FILTER_INVALID:
        return "Topic Filter invalid";
    case MQTT_RC_TOPIC_NAME_INVALID:
        return "Topic Name invalid";
    case MQTT_RC_PACKET_ID_IN_USE:
        return "Packet Identifier in use";
    case MQTT_RC_PACKET_ID_NOT_FOUND:
        return "Packet Identifier not found";
    case MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED:
        return "Receive Maximum exceeded";
    case MQTT_RC_TOPIC_ALIAS_INVALID:
        return "Topic Alias invalid";
    case MQTT_RC_PACKET_TOO_LARGE:
        return "Packet too large";
    case MQTT_RC_MESSAGE_RATE_TOO_HIGH:
        return "Message rate too high";
    case MQTT_RC_QUOTA_EXCEEDED:
        return "Quota exceeded";
    case MQTT_RC_ADMINISTRATIVE_ACTION:
        return "Administrative action";
    case MQTT_RC_PAYLOAD_FORMAT_INVALID:
        return "Payload format invalid";
    case MQTT_RC_RETAIN_NOT_SUPPORTED:
        return "Retain not supported";
    case MQTT_RC_QOS_NOT_SUPPORTED:
        return "QoS not supported";
    case MQTT_RC_USE_ANOTHER_SERVER:
        return "Use another server";
    case MQTT_RC_SERVER_MOVED:
        return "Server moved";
    case MQTT_RC_SHARED_SUBS_NOT_SUPPORTED:
        return "Shared Subscriptions not supported";
    case MQTT_RC_CONNECTION_RATE_EXCEEDED:
        return "Connection rate exceeded";
    case MQTT_RC_MAXIMUM_CONNECT_TIME:
        return "Maximum connect time";
    case MQTT_RC_SUB_IDS_NOT_SUPPORTED:
        return "Subscription Identifiers not supported";
    case MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED:
        return "Wildcard Subscriptions not supported";
    default:
        return "Unknown reason code";
    }
}
