/* Unit tests of the mosquitto.conf parser (src/broker/config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

static char err[1024];

/* Parse `text` as "hato.conf" into a fresh config; asserts success. */
static void parse_ok(struct hato_config *cfg, const char *text) {
    hato_config_init(cfg);
    err[0] = '\0';
    int rc = hato_config_parse_string(cfg, "hato.conf", text, err, sizeof err);
    if (rc != 0)
        fail_msg("unexpected error: %s", err);
}

static void parse_finish_ok(struct hato_config *cfg, const char *text) {
    parse_ok(cfg, text);
    if (hato_config_finish(cfg, err, sizeof err) != 0)
        fail_msg("unexpected finish error: %s", err);
}

static void expect_error(const char *text, const char *msg) {
    struct hato_config cfg;
    hato_config_init(&cfg);
    err[0] = '\0';
    int rc = hato_config_parse_string(&cfg, "hato.conf", text, err, sizeof err);
    if (rc != -1)
        fail_msg("no error for: %s", text);
    assert_string_equal(err, msg);
    hato_config_free(&cfg);
}

static void expect_finish_error(const char *text, const char *msg) {
    struct hato_config cfg;
    parse_ok(&cfg, text);
    assert_int_equal(hato_config_finish(&cfg, err, sizeof err), -1);
    assert_string_equal(err, msg);
    hato_config_free(&cfg);
}

static void test_defaults(void **state) {
    (void)state;
    struct hato_config c;
    hato_config_init(&c);
    assert_int_equal(c.n_listeners, 0);
    assert_int_equal(c.max_inflight_messages, 20);
    assert_int_equal(c.max_inflight_bytes, 0);
    assert_int_equal(c.max_queued_messages, 1000);
    assert_int_equal(c.max_queued_bytes, 0);
    assert_false(c.queue_qos0_messages);
    assert_int_equal(c.message_size_limit, 0);
    assert_int_equal(c.max_packet_size, 0);
    assert_int_equal(c.max_keepalive, 65535);
    assert_true(c.retain_available);
    assert_true(c.allow_zero_length_clientid);
    assert_string_equal(c.auto_id_prefix, "auto-");
    assert_int_equal(c.persistent_client_expiration, 0);
    assert_false(c.upgrade_outgoing_qos);
    assert_false(c.set_tcp_nodelay);
    assert_null(c.include_dir);
    assert_null(c.pid_file);
    assert_string_equal(c.user, "mosquitto");
    assert_int_equal(c.allow_anonymous, HATO_UNSET);
    assert_null(c.password_file);
    assert_null(c.acl_file);
    assert_false(c.per_listener_settings);
    assert_true(c.allow_duplicate_messages);
    assert_false(c.check_retain_source);
    assert_false(c.persistence);
    assert_null(c.persistence_location);
    assert_string_equal(c.persistence_file, "mosquitto.db");
    assert_int_equal(c.autosave_interval, 1800);
    assert_false(c.autosave_on_changes);
    assert_int_equal(c.log_dest, HATO_LOG_DEST_STDERR);
    assert_int_equal(c.log_type, HATO_LOG_DEFAULT);
    assert_true(c.log_timestamp);
    assert_null(c.log_timestamp_format);
    assert_true(c.connection_messages);
    assert_int_equal(c.sys_interval, 10);
    assert_int_equal(c.memory_limit, 0);
    assert_int_equal(c.threads, 0);
    assert_int_equal(c.persistence_sync, HATO_SYNC_ALWAYS);
    assert_int_equal(c.max_subscriptions_per_client, 0);
    assert_int_equal(c.connect_timeout, 10);
    assert_int_equal(c.global_max_clients, -1);
    assert_int_equal(c.log_facility, -1);
    hato_config_free(&c);
}

static void test_local_only(void **state) {
    (void)state;
    struct hato_config c;
    parse_finish_ok(&c, "# nothing\n\nmax_keepalive 60\n");
    assert_true(c.local_only);
    assert_int_equal(c.allow_anonymous, 1);
    assert_int_equal(c.n_listeners, 2);
    assert_int_equal(c.listeners[0].port, 1883);
    assert_string_equal(c.listeners[0].bind_address, "127.0.0.1");
    assert_int_equal(c.listeners[0].socket_domain, AF_INET);
    assert_int_equal(c.listeners[1].port, 1883);
    assert_string_equal(c.listeners[1].bind_address, "::1");
    assert_int_equal(c.listeners[1].socket_domain, AF_INET6);
    assert_int_equal(c.listeners[0].allow_anonymous, 1);
    assert_string_equal(c.listeners[0].protocol, "mqtt");
    assert_string_equal(c.listeners[0].auto_id_prefix, "auto-");
    assert_int_equal(c.listeners[0].max_connections, -1);
    assert_int_equal(c.n_warnings, 0);
    hato_config_free(&c);

    /* -p keeps local-only mode, on that port. */
    parse_ok(&c, "");
    assert_int_equal(hato_config_set_port(&c, 1884), 0);
    assert_int_equal(hato_config_finish(&c, err, sizeof err), 0);
    assert_true(c.local_only);
    assert_int_equal(c.n_listeners, 2);
    assert_int_equal(c.listeners[0].port, 1884);
    assert_int_equal(c.listeners[1].port, 1884);
    hato_config_free(&c);

    /* -p 0 (ephemeral): a single IPv4 loopback listener. */
    parse_ok(&c, "");
    assert_int_equal(hato_config_set_port(&c, 0), 0);
    assert_int_equal(hato_config_finish(&c, err, sizeof err), 0);
    assert_int_equal(c.n_listeners, 1);
    assert_int_equal(c.listeners[0].port, 0);
    assert_string_equal(c.listeners[0].bind_address, "127.0.0.1");
    hato_config_free(&c);

    hato_config_init(&c);
    assert_int_equal(hato_config_set_port(&c, -1), -1);
    assert_int_equal(hato_config_set_port(&c, 65536), -1);
    hato_config_free(&c);

    /* Listener options before any listener apply to the local-only ones. */
    parse_finish_ok(&c, "max_connections 5\nsocket_domain ipv4\n");
    assert_int_equal(c.n_listeners, 1);
    assert_int_equal(c.listeners[0].max_connections, 5);
    assert_string_equal(c.listeners[0].bind_address, "127.0.0.1");
    hato_config_free(&c);
}

static void test_listener_rule(void **state) {
    (void)state;
    struct hato_config c;

    /* Any listener: allow_anonymous defaults to false. */
    parse_finish_ok(&c, "listener 1883\n");
    assert_false(c.local_only);
    assert_int_equal(c.allow_anonymous, 0);
    assert_int_equal(c.n_listeners, 1);
    assert_null(c.listeners[0].bind_address);
    assert_int_equal(c.listeners[0].allow_anonymous, 0);
    hato_config_free(&c);

    parse_finish_ok(&c, "allow_anonymous true\nlistener 1883\n");
    assert_int_equal(c.allow_anonymous, 1);
    assert_int_equal(c.listeners[0].allow_anonymous, 1);
    hato_config_free(&c);

    /* Deprecated `port`/`bind_address`: the default listener. */
    parse_finish_ok(&c, "port 1884\nbind_address 0.0.0.0\nmax_connections 7\n");
    assert_false(c.local_only);
    assert_int_equal(c.allow_anonymous, 0);
    assert_int_equal(c.n_listeners, 1);
    assert_int_equal(c.listeners[0].port, 1884);
    assert_string_equal(c.listeners[0].bind_address, "0.0.0.0");
    assert_int_equal(c.listeners[0].max_connections, 7);
    assert_int_equal(c.listeners[0].line, 1);
    hato_config_free(&c);

    parse_finish_ok(&c, "bind_address 10.0.0.1\n");
    assert_int_equal(c.n_listeners, 1);
    assert_int_equal(c.listeners[0].port, 1883);
    hato_config_free(&c);

    /* -p replaces the port of the default listener. */
    parse_ok(&c, "port 1884\nlistener 8883\n");
    assert_int_equal(hato_config_set_port(&c, 2000), 0);
    assert_int_equal(hato_config_finish(&c, err, sizeof err), 0);
    assert_int_equal(c.n_listeners, 2);
    assert_int_equal(c.listeners[0].port, 2000);
    assert_int_equal(c.listeners[1].port, 8883);
    hato_config_free(&c);

    /* -p with listeners only: one more listener on all addresses. */
    parse_ok(&c, "listener 8883\n");
    assert_int_equal(hato_config_set_port(&c, 0), 0);
    assert_int_equal(hato_config_finish(&c, err, sizeof err), 0);
    assert_int_equal(c.n_listeners, 2);
    assert_int_equal(c.listeners[0].port, 0);
    assert_null(c.listeners[0].bind_address);
    assert_string_equal(c.listeners[0].file, "<command line>");
    assert_int_equal(c.listeners[1].port, 8883);
    hato_config_free(&c);

    /* Listener options before the first listener, without `port`: warning. */
    parse_finish_ok(&c, "max_connections 5\nlistener 1883\n");
    assert_int_equal(c.n_listeners, 1);
    assert_int_equal(c.listeners[0].max_connections, -1);
    assert_int_equal(c.n_warnings, 1);
    assert_non_null(strstr(c.warnings[0], "hato.conf:1: listener options before"));
    hato_config_free(&c);

    /* finish twice is refused. */
    parse_finish_ok(&c, "");
    assert_int_equal(hato_config_finish(&c, err, sizeof err), -1);
    hato_config_free(&c);
}

static void test_listener_scoping(void **state) {
    (void)state;
    struct hato_config c;
    parse_finish_ok(&c, "listener 1883 127.0.0.1\n"
                        "max_connections 10\n"
                        "mount_point a/\n"
                        "protocol mqtt\n"
                        "socket_domain ipv4\n"
                        "bind_interface eth0\n"
                        "max_qos 1\n"
                        "max_topic_alias 3\n"
                        "max_topic_alias_broker 4\n"
                        "use_username_as_clientid true\n"
                        "accept_protocol_versions 4, 5\n"
                        "listener 9001\n"
                        "protocol websockets\n"
                        "socket_domain ipv6\n"
                        "http_dir /tmp\n"
                        "websockets_trusted_proxy 10.0.0.0/8\n"
                        "websockets_trusted_proxy ::1\n"
                        "websockets_origin https://a.example\n"
                        "websockets_origin https://b.example\n"
                        "listener 0 /run/hato.sock   # local clients\n"
                        "maximum_qos 0\n"
                        "enable_proxy_protocol 2\n");
    assert_int_equal(c.n_listeners, 3);
    const struct hato_listener *a = &c.listeners[0], *b = &c.listeners[1], *u = &c.listeners[2];
    assert_int_equal(a->port, 1883);
    assert_string_equal(a->bind_address, "127.0.0.1");
    assert_int_equal(a->max_connections, 10);
    assert_string_equal(a->mount_point, "a/");
    assert_string_equal(a->protocol, "mqtt");
    assert_int_equal(a->socket_domain, AF_INET);
    assert_string_equal(a->bind_interface, "eth0");
    assert_int_equal(a->max_qos, 1);
    assert_int_equal(a->max_topic_alias, 3);
    assert_int_equal(a->max_topic_alias_broker, 4);
    assert_true(a->use_username_as_clientid);
    assert_int_equal(a->accept_protocol_versions, HATO_PROTO_V4 | HATO_PROTO_V5);
    assert_string_equal(a->file, "hato.conf");
    assert_int_equal(a->line, 1);

    assert_int_equal(b->port, 9001);
    assert_null(b->bind_address);
    assert_int_equal(b->max_connections, -1);
    assert_null(b->mount_point);
    assert_string_equal(b->protocol, "websockets");
    assert_int_equal(b->socket_domain, AF_INET6);
    assert_int_equal(b->max_qos, 2);
    assert_int_equal(b->max_topic_alias, 10);
    assert_int_equal(b->accept_protocol_versions, HATO_PROTO_ALL);
    assert_string_equal(b->http_dir, "/tmp");
    assert_int_equal(b->n_websockets_trusted_proxies, 2);
    assert_string_equal(b->websockets_trusted_proxies[0], "10.0.0.0/8");
    assert_int_equal(b->n_websockets_origins, 2);
    assert_string_equal(b->websockets_origins[1], "https://b.example");
    assert_int_equal(b->line, 12);
    assert_int_equal(u->line, 20);

    assert_int_equal(u->port, 0);
    assert_string_equal(u->unix_path, "/run/hato.sock");
    assert_null(u->bind_address);
    assert_int_equal(u->max_qos, 0);
    assert_int_equal(u->enable_proxy_protocol, 2);
    assert_int_equal(u->socket_domain, AF_UNSPEC);
    hato_config_free(&c);
}

static void test_tls_and_security(void **state) {
    (void)state;
    struct hato_config c;
    parse_finish_ok(&c, "password_file /etc/hato/passwd\n"
                        "acl_file /etc/hato/acl\n"
                        "psk_file /etc/hato/psk\n"
                        "allow_zero_length_clientid false\n"
                        "auto_id_prefix gen-\n"
                        "clientid_prefixes secure-\n"
                        "listener 8883\n"
                        "cafile /etc/ca.pem\n"
                        "capath /etc/ssl/certs\n"
                        "certfile /etc/cert.pem\n"
                        "keyfile /etc/key.pem\n"
                        "tls_version tlsv1.2\n"
                        "ciphers HIGH:!aNULL\n"
                        "ciphers_tls1.3 TLS_AES_128_GCM_SHA256\n"
                        "require_certificate true\n"
                        "use_identity_as_username true\n"
                        "use_subject_as_username false\n"
                        "crlfile /etc/crl.pem\n"
                        "dhparamfile /etc/dh.pem\n"
                        "listener_allow_anonymous true\n"
                        "listener_auto_id_prefix tls-\n"
                        "listener 8884\n"
                        "psk_hint hint one\n");
    assert_string_equal(c.password_file, "/etc/hato/passwd");
    assert_string_equal(c.acl_file, "/etc/hato/acl");
    assert_string_equal(c.psk_file, "/etc/hato/psk");
    assert_false(c.allow_zero_length_clientid);
    assert_string_equal(c.auto_id_prefix, "gen-");
    assert_string_equal(c.clientid_prefixes, "secure-");
    assert_int_equal(c.allow_anonymous, 0);
    const struct hato_listener *t = &c.listeners[0];
    assert_string_equal(t->cafile, "/etc/ca.pem");
    assert_string_equal(t->capath, "/etc/ssl/certs");
    assert_string_equal(t->certfile, "/etc/cert.pem");
    assert_string_equal(t->keyfile, "/etc/key.pem");
    assert_string_equal(t->tls_version, "tlsv1.2");
    assert_string_equal(t->ciphers, "HIGH:!aNULL");
    assert_string_equal(t->ciphers_tls13, "TLS_AES_128_GCM_SHA256");
    assert_true(t->require_certificate);
    assert_true(t->use_identity_as_username);
    assert_false(t->use_subject_as_username);
    assert_string_equal(t->crlfile, "/etc/crl.pem");
    assert_string_equal(t->dhparamfile, "/etc/dh.pem");
    assert_int_equal(t->allow_anonymous, 1);
    assert_string_equal(t->auto_id_prefix, "tls-");
    assert_int_equal(t->allow_zero_length_clientid, 0);
    assert_null(t->password_file); /* per_listener_settings false: global */
    assert_true(hato_listener_wants_tls(t));
    const struct hato_listener *q = &c.listeners[1];
    assert_string_equal(q->psk_hint, "hint one");
    assert_int_equal(q->allow_anonymous, 0);
    assert_string_equal(q->auto_id_prefix, "gen-");
    assert_true(hato_listener_wants_tls(q));
    hato_config_free(&c);

    /* per_listener_settings: security options go to the current listener. */
    parse_finish_ok(&c, "per_listener_settings true\n"
                        "listener 1883\n"
                        "allow_anonymous true\n"
                        "listener 1884\n"
                        "password_file /p\n"
                        "acl_file /a\n"
                        "psk_file /k\n"
                        "auto_id_prefix x-\n"
                        "allow_zero_length_clientid false\n");
    assert_true(c.per_listener_settings);
    assert_int_equal(c.allow_anonymous, 0);
    assert_null(c.password_file);
    assert_int_equal(c.listeners[0].allow_anonymous, 1);
    assert_null(c.listeners[0].password_file);
    assert_int_equal(c.listeners[0].allow_zero_length_clientid, 1);
    assert_int_equal(c.listeners[1].allow_anonymous, 0);
    assert_string_equal(c.listeners[1].password_file, "/p");
    assert_string_equal(c.listeners[1].acl_file, "/a");
    assert_string_equal(c.listeners[1].psk_file, "/k");
    assert_string_equal(c.listeners[1].auto_id_prefix, "x-");
    assert_int_equal(c.listeners[1].allow_zero_length_clientid, 0);
    assert_false(hato_listener_wants_tls(&c.listeners[0]));
    hato_config_free(&c);

    /* Once on, per_listener_settings stays on (warning). */
    parse_ok(&c, "per_listener_settings true\nper_listener_settings false\n");
    assert_true(c.per_listener_settings);
    assert_int_equal(c.n_warnings, 1);
    assert_string_equal(
        c.warnings[0], "hato.conf:2: per_listener_settings cannot be turned off once set; ignored");
    hato_config_free(&c);

    expect_error("allow_anonymous false\nper_listener_settings true\n",
                 "hato.conf:2: per_listener_settings: must come before any security option "
                 "(allow_anonymous, password_file, acl_file, psk_file, auto_id_prefix, "
                 "allow_zero_length_clientid)");

    expect_finish_error("listener 1883\nconnection b1\ntopic # out\n",
                        "hato.conf:2: connection b1: no address given");
    {
        struct hato_config c;
        parse_finish_ok(&c, "connection b1\naddress 127.0.0.1:1884 [::1]:1885 other\n"
                            "remote_clientid rc\ntopic a/# both 1 l/ r/\ntopic \"\" in 2 l/x r/y\n"
                            "restart_timeout 2 8\n");
        assert_int_equal(c.n_bridges, 1);
        const struct hato_bridge *b = &c.bridges[0];
        assert_int_equal(b->n_addrs, 3);
        assert_string_equal(b->addrs[1].host, "::1");
        assert_int_equal(b->addrs[1].port, 1885);
        assert_int_equal(b->addrs[2].port, 0);
        assert_string_equal(b->local_clientid, "local.rc");
        assert_string_equal(b->notification_topic, "$SYS/broker/connection/rc/state");
        assert_int_equal(b->topics[0].direction, BRIDGE_BOTH);
        assert_string_equal(b->topics[0].local_prefix, "l/");
        assert_string_equal(b->topics[1].pattern, "");
        assert_int_equal(b->topics[1].qos, 2);
        assert_int_equal(b->restart_cap, 8);
        assert_false(b->clean);
        assert_int_equal(b->local_clean, 0);
        hato_config_free(&c);
    }

    expect_finish_error("listener 8883\ncertfile /c.pem\n",
                        "hato.conf:1: listener 8883: certfile and keyfile must be given together");
    expect_finish_error("listener 8883\ncafile /ca.pem\n",
                        "hato.conf:1: listener 8883: cafile/capath given without certfile and "
                        "keyfile");
    expect_finish_error("listener 8883\ncertfile /c\nkeyfile /k\npsk_hint h\n",
                        "hato.conf:1: listener 8883: cannot use both certificate and PSK "
                        "encryption");
    expect_finish_error("listener 1883\nlistener 1884\nlistener 1883\n",
                        "hato.conf:3: listener 1883 duplicates the one at hato.conf:1");
    expect_finish_error("listener 0 /s\nlistener 0 /s\n",
                        "hato.conf:2: listener 0 /s duplicates the one at hato.conf:1");
    /* WebSocket-only directives elsewhere, http_dir that is not a
     * directory, require_tls without PROXY v2: errors, never ignored. */
    expect_finish_error("listener 1883\nhttp_dir /tmp\n",
                        "hato.conf:1: listener 1883: http_dir applies to WebSocket listeners only "
                        "(add 'protocol websockets')");
    expect_finish_error("listener 1883\nwebsockets_origin http://a\n",
                        "hato.conf:1: listener 1883: websockets_origin applies to WebSocket "
                        "listeners only (add 'protocol websockets')");
    expect_finish_error("listener 1883\nwebsockets_trusted_proxy 127.0.0.1\n",
                        "hato.conf:1: listener 1883: websockets_trusted_proxy applies to "
                        "WebSocket listeners only (add 'protocol websockets')");
    expect_finish_error("listener 8080\nprotocol websockets\nhttp_dir /nonexistent-hato-dir\n",
                        "hato.conf:1: listener 8080: http_dir /nonexistent-hato-dir: No such file "
                        "or directory");
    expect_finish_error("listener 8080\nprotocol websockets\nhttp_dir /etc/passwd\n",
                        "hato.conf:1: listener 8080: http_dir /etc/passwd: not a directory");
    expect_finish_error(
        "listener 1883\nenable_proxy_protocol 1\nproxy_protocol_v2_require_tls true\n",
        "hato.conf:1: listener 1883: proxy_protocol_v2_require_tls needs "
        "enable_proxy_protocol 2");
    expect_error("listener 8080\nprotocol websockets\nwebsockets_trusted_proxy 10.0.0.1/33\n",
                 "hato.conf:3: websockets_trusted_proxy: '10.0.0.1/33': at most /32 for IPv4");
    expect_error("listener 8080\nprotocol websockets\nwebsockets_trusted_proxy example.com\n",
                 "hato.conf:3: websockets_trusted_proxy: 'example.com' is not an IP address or "
                 "ADDRESS/BITS");
    expect_error("listener 8080\nprotocol websockets\nwebsockets_trusted_proxy ::1/x\n",
                 "hato.conf:3: websockets_trusted_proxy: '::1/x': the prefix length after / must "
                 "be a number");
    /* Same port on different addresses is fine. */
    parse_finish_ok(&c, "listener 1883 127.0.0.1\nlistener 1883 ::1\n");
    assert_int_equal(c.n_listeners, 2);
    hato_config_free(&c);
}

static void test_globals(void **state) {
    (void)state;
    struct hato_config c;
    parse_finish_ok(&c, "max_inflight_messages 0\n"
                        "max_inflight_bytes 1000000\n"
                        "max_queued_messages 5000\n"
                        "max_queued_bytes 9000000000\n"
                        "queue_qos0_messages true\n"
                        "message_size_limit 268435455\n"
                        "max_packet_size 20\n"
                        "max_keepalive 0\n"
                        "retain_available false\n"
                        "allow_zero_length_clientid false\n"
                        "auto_id_prefix id-\n"
                        "persistent_client_expiration 2h\n"
                        "upgrade_outgoing_qos true\n"
                        "set_tcp_nodelay true\n"
                        "pid_file /run/hato.pid\n"
                        "user hato\n"
                        "allow_anonymous false\n"
                        "allow_duplicate_messages false\n"
                        "check_retain_source true\n"
                        "persistence true\n"
                        "persistence_location /var/lib/hato/\n"
                        "persistence_file hato.db\n"
                        "autosave_interval 0\n"
                        "autosave_on_changes true\n"
                        "log_timestamp false\n"
                        "log_timestamp_format %Y-%m-%dT%H:%M:%S\n"
                        "log_facility 3\n"
                        "connection_messages false\n"
                        "sys_interval 0\n"
                        "memory_limit 1073741824\n"
                        "global_max_clients 100\n"
                        "global_max_connections -1\n"
                        "retain_expiry_interval 60\n"
                        "websockets_log_level 255\n"
                        "websockets_headers_size 4096\n"
                        "enable_control_api false\n"
                        "auth_plugin_deny_special_chars false\n"
                        "threads 256\n"
                        "persistence_sync batch\n"
                        "max_subscriptions_per_client 100\n"
                        "connect_timeout 30\n");
    assert_int_equal(c.max_inflight_messages, 0);
    assert_int_equal(c.max_inflight_bytes, 1000000);
    assert_int_equal(c.max_queued_messages, 5000);
    assert_int_equal(c.max_queued_bytes, 9000000000LL);
    assert_true(c.queue_qos0_messages);
    assert_int_equal(c.message_size_limit, 268435455);
    assert_int_equal(c.max_packet_size, 20);
    assert_int_equal(c.max_keepalive, 0);
    assert_false(c.retain_available);
    assert_false(c.allow_zero_length_clientid);
    assert_string_equal(c.auto_id_prefix, "id-");
    assert_int_equal(c.persistent_client_expiration, 7200);
    assert_true(c.upgrade_outgoing_qos);
    assert_true(c.set_tcp_nodelay);
    assert_string_equal(c.pid_file, "/run/hato.pid");
    assert_string_equal(c.user, "hato");
    assert_int_equal(c.allow_anonymous, 0);
    assert_int_equal(c.listeners[0].allow_anonymous, 0); /* local-only, but explicit */
    assert_false(c.allow_duplicate_messages);
    assert_true(c.check_retain_source);
    assert_true(c.persistence);
    assert_string_equal(c.persistence_location, "/var/lib/hato/");
    assert_string_equal(c.persistence_file, "hato.db");
    assert_int_equal(c.autosave_interval, 0);
    assert_true(c.autosave_on_changes);
    assert_false(c.log_timestamp);
    assert_string_equal(c.log_timestamp_format, "%Y-%m-%dT%H:%M:%S");
    assert_int_equal(c.log_facility, 3);
    assert_false(c.connection_messages);
    assert_int_equal(c.sys_interval, 0);
    assert_int_equal(c.memory_limit, 1073741824);
    assert_int_equal(c.global_max_clients, 100);
    assert_int_equal(c.global_max_connections, -1);
    assert_int_equal(c.retain_expiry_interval, 60);
    assert_int_equal(c.websockets_log_level, 255);
    assert_int_equal(c.websockets_headers_size, 4096);
    assert_false(c.enable_control_api);
    assert_false(c.auth_plugin_deny_special_chars);
    assert_int_equal(c.threads, 256);
    assert_int_equal(c.persistence_sync, HATO_SYNC_BATCH);
    assert_int_equal(c.max_subscriptions_per_client, 100);
    assert_int_equal(c.connect_timeout, 30);
    assert_true(c.local_only);
    hato_config_free(&c);

    /* Booleans also as 1/0; the last value wins; strings keep inner spaces. */
    parse_ok(&c, "retain_available 0\nretain_available 1\npid_file  /a b/c.pid  \n"
                 "persistence_sync none\nretained_persistence true\npacket_buffer_size 0\n");
    assert_true(c.retain_available);
    assert_string_equal(c.pid_file, "/a b/c.pid");
    assert_int_equal(c.persistence_sync, HATO_SYNC_NONE);
    assert_true(c.persistence);
    assert_int_equal(c.websockets_headers_size, 0);
    hato_config_free(&c);

    /* allow_duplicate_messages true: accepted, warned about (hato sends one copy). */
    parse_ok(&c, "allow_duplicate_messages true\nallow_duplicate_messages false\n");
    assert_int_equal(c.n_warnings, 1);
    assert_string_equal(c.warnings[0],
                        "hato.conf:1: allow_duplicate_messages true: hato sends one copy per "
                        "client for overlapping subscriptions, as Mosquitto with false");
    assert_false(c.allow_duplicate_messages);
    hato_config_free(&c);

    /* Obsolete directives: warning, no effect. */
    parse_ok(&c, "retry_interval 20\nstore_clean_interval 10\n");
    assert_int_equal(c.n_warnings, 2);
    assert_string_equal(
        c.warnings[0],
        "hato.conf:1: retry_interval was removed in Mosquitto 2.0 and has no effect");
    hato_config_free(&c);
}

static void test_logging(void **state) {
    (void)state;
    struct hato_config c;
    parse_ok(&c, "log_dest syslog\nlog_dest stdout\nlog_dest file /var/log/hato log.txt\n"
                 "log_type error\nlog_type warning\nlog_type subscribe\n");
    assert_int_equal(c.log_dest, HATO_LOG_DEST_SYSLOG | HATO_LOG_DEST_STDOUT | HATO_LOG_DEST_FILE);
    assert_string_equal(c.log_file, "/var/log/hato log.txt");
    assert_int_equal(c.log_type, HATO_LOG_ERR | HATO_LOG_WARNING | HATO_LOG_SUBSCRIBE);
    hato_config_free(&c);

    parse_ok(&c, "log_format json\n");
    assert_int_equal(c.log_format, 1);
    hato_config_free(&c);
    parse_ok(&c, "log_dest topic\nlog_dest none\nlog_type all\n");
    assert_int_equal(c.log_dest, 0);
    assert_int_equal(c.log_type, HATO_LOG_ALL);
    hato_config_free(&c);

    parse_ok(&c, "log_type debug\nlog_type none\nlog_dest stderr\nlog_type websockets\n"
                 "log_type unsubscribe\nlog_type notice\nlog_type information\n");
    assert_int_equal(c.log_dest, HATO_LOG_DEST_STDERR);
    assert_int_equal(c.log_type,
                     HATO_LOG_WEBSOCKETS | HATO_LOG_UNSUBSCRIBE | HATO_LOG_NOTICE | HATO_LOG_INFO);
    hato_config_free(&c);

    expect_error("log_dest file /a\nlog_dest file /b\n",
                 "hato.conf:2: log_dest: only one file destination may be given");
    expect_error("log_dest file\n",
                 "hato.conf:1: log_dest: file needs a path (log_dest file /var/log/hato.log)");
    expect_error("log_dest printer\n", "hato.conf:1: log_dest: expected one of stderr, stdout, "
                                       "syslog, topic, file, dlt, none, got 'printer'");
    expect_error("log_dest dlt\n",
                 "hato.conf:1: log_dest: dlt (GENIVI Diagnostic Log and Trace) is not supported by "
                 "hato; use syslog, file or stderr");
    expect_error("log_format yaml\n", "hato.conf:1: log_format: expected one of text, json, got "
                                      "'yaml'");
    expect_error("log_type loud\n",
                 "hato.conf:1: log_type: expected one of error, warning, notice, information, "
                 "subscribe, unsubscribe, websockets, debug, internal, all, none, got 'loud'");
    expect_error("log_dest stderr stdout\n",
                 "hato.conf:1: log_dest: unexpected 'stdout' after the value");
}

static void test_durations(void **state) {
    (void)state;
    static const struct {
        const char *text;
        int64_t seconds;
    } ok[] = {
        {"0", 0},
        {"3600", 3600},
        {"45s", 45},
        {"2h", 7200},
        {"1d", 86400},
        {"3w", 3 * 7 * 86400},
        {"2m", 2 * 30 * 86400},
        {"1y", 365 * 86400},
        {"100y", 100LL * 365 * 86400},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char text[128];
        struct hato_config c;
        snprintf(text, sizeof text, "persistent_client_expiration %s\n", ok[i].text);
        parse_ok(&c, text);
        assert_int_equal(c.persistent_client_expiration, ok[i].seconds);
        hato_config_free(&c);
    }
    const char *bad[] = {"h", "1x", "-1d", "1.5d", "d1", "99999999999999999999y", "1hh"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128], msg[256];
        snprintf(text, sizeof text, "persistent_client_expiration %s\n", bad[i]);
        snprintf(msg, sizeof msg,
                 "hato.conf:1: persistent_client_expiration: expected a duration such as "
                 "3600s, 2h, 1d, 3w, 2m or 1y, got '%s'",
                 bad[i]);
        expect_error(text, msg);
    }
}

static void test_errors(void **state) {
    (void)state;
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"foo bar\n", "hato.conf:1: unknown directive 'foo'"},
        {"\n\n# c\nmax_keepalive abc\n",
         "hato.conf:4: max_keepalive: expected an integer 0..65535, got 'abc'"},
        {"max_keepalive 65536\n",
         "hato.conf:1: max_keepalive: expected an integer 0..65535, got '65536'"},
        {"max_keepalive -1\n",
         "hato.conf:1: max_keepalive: expected an integer 0..65535, got '-1'"},
        {"max_keepalive 10abc\n",
         "hato.conf:1: max_keepalive: expected an integer 0..65535, got '10abc'"},
        {"max_keepalive 0x10\n",
         "hato.conf:1: max_keepalive: expected an integer 0..65535, got '0x10'"},
        {"max_keepalive\n", "hato.conf:1: max_keepalive: missing value"},
        {"max_keepalive    \n", "hato.conf:1: max_keepalive: missing value"},
        {"max_keepalive 10 20\n", "hato.conf:1: max_keepalive: unexpected '20' after the value"},
        {"max_inflight_messages 65536\n",
         "hato.conf:1: max_inflight_messages: expected an integer 0..65535, got '65536'"},
        {"max_queued_messages 99999999999\n",
         "hato.conf:1: max_queued_messages: expected an integer 0..2147483647, got "
         "'99999999999'"},
        {"enable_control_api true\n",
         "hato.conf:1: enable_control_api: hato has no $CONTROL/broker/v1 API (Mosquitto 2.1); "
         "remove the line or set it to false"},
        {"memory_limit -1\n",
         "hato.conf:1: memory_limit: expected an integer 0..9223372036854775807, got '-1'"},
        {"message_size_limit 556000000\n",
         "hato.conf:1: message_size_limit: expected an integer 0..268435455, got '556000000'"},
        {"max_packet_size 19\n",
         "hato.conf:1: max_packet_size: expected 0 or an integer 20..268435460, got '19'"},
        {"sys_interval 65536\n",
         "hato.conf:1: sys_interval: expected an integer 0..65535, got '65536'"},
        {"threads 257\n", "hato.conf:1: threads: expected an integer 0..256, got '257'"},
        {"connect_timeout 0\n",
         "hato.conf:1: connect_timeout: expected an integer 1..3600, got '0'"},
        {"allow_anonymous yes\n",
         "hato.conf:1: allow_anonymous: expected true or false, got 'yes'"},
        {"allow_anonymous\n", "hato.conf:1: allow_anonymous: missing value"},
        {"persistence TRUE\n", "hato.conf:1: persistence: expected true or false, got 'TRUE'"},
        {"persistence_sync sometimes\n",
         "hato.conf:1: persistence_sync: expected one of always, batch, none, got 'sometimes'"},
        {"pid_file\n", "hato.conf:1: pid_file: missing value"},
        {"user  \t \n", "hato.conf:1: user: missing value"},
        {"listener\n", "hato.conf:1: listener: missing value"},
        {"listener 100000\n", "hato.conf:1: listener: expected a port 0..65535, got '100000'"},
        {"listener abc\n", "hato.conf:1: listener: expected a port 0..65535, got 'abc'"},
        {"listener 0\n",
         "hato.conf:1: listener: port 0 needs a Unix socket path (listener 0 /path/to/socket)"},
        {"listener 1883 1.2.3.4 extra\n",
         "hato.conf:1: listener: unexpected 'extra' after the value"},
        {"port 0\n", "hato.conf:1: port: expected an integer 1..65535, got '0'"},
        {"listener 1883\nprotocol test\n",
         "hato.conf:2: protocol: expected one of mqtt, websockets, metrics, admin, got 'test'"},
        {"listener 1883\nsocket_domain ipv5\n",
         "hato.conf:2: socket_domain: expected one of ipv4, ipv6, got 'ipv5'"},
        {"listener 1883\nmount_point test/+/\n",
         "hato.conf:2: mount_point: must not contain the wildcards + or #, got 'test/+/'"},
        {"listener 1883\nmax_connections -2\n",
         "hato.conf:2: max_connections: expected an integer -1..2147483647, got '-2'"},
        {"maximum_qos 3\n", "hato.conf:1: maximum_qos: expected an integer 0..2, got '3'"},
        {"listener 1883\nmax_topic_alias 65536\n",
         "hato.conf:2: max_topic_alias: expected an integer 0..65535, got '65536'"},
        {"listener 1883\naccept_protocol_versions 3,6\n",
         "hato.conf:2: accept_protocol_versions: expected a list of 3, 4 and 5, got '6'"},
        {"listener 1883\naccept_protocol_versions\n",
         "hato.conf:2: accept_protocol_versions: missing value"},
        {"listener 1883\ntls_version tlsv1.0\n",
         "hato.conf:2: tls_version: expected one of tlsv1.3, tlsv1.2, got 'tlsv1.0'"},
        {"listener 1883\ntls_version tlsv1.1\n",
         "hato.conf:2: tls_version: expected one of tlsv1.3, tlsv1.2, got 'tlsv1.1'"},
        {"listener 1883\nenable_proxy_protocol 3\n",
         "hato.conf:2: enable_proxy_protocol: expected an integer 1..2, got '3'"},
        {"auto_id_prefix aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
         "hato.conf:1: auto_id_prefix: at most 50 characters, got 51"},
        {"listener_auto_id_prefix a/b\n",
         "hato.conf:1: listener_auto_id_prefix: must not contain +, # or /, got 'a/b'"},
        {"connection b1\naddress 10.0.0.1:1883\nbridge_ciphers ALL\n",
         "hato.conf:3: bridge_ciphers: bridge option hato does not implement: the cipher list "
         "of bridge connections is OpenSSL's default"},
        {"connection b1\nconnection b1\n",
         "hato.conf:2: connection: a bridge named 'b1' is already defined (hato.conf:1)"},
        {"connection b1\ntopic # sideways\n",
         "hato.conf:2: topic: direction 'sideways' is not in, out or both"},
        {"connection b1\ntopic \"\" in 0\n",
         "hato.conf:2: topic: an empty pattern needs a local or remote prefix"},
        {"connection b1\naddress h:0\n",
         "hato.conf:2: address: '0' is not a whole number from 1 to 65535"},
        {"connection\n", "hato.conf:1: connection: missing value"},
        {"topic # both 0\n",
         "hato.conf:1: topic: a bridge option, but no 'connection' line comes before it"},
        {"plugin_load dynsec /usr/lib/mosquitto_dynamic_security.so\n",
         "hato.conf:1: plugin_load: is Mosquitto 2.1's; hato loads plugins with 'plugin PATH' "
         "and 'plugin_opt_*' lines (docs/plugins.md)"},
        {"auth_opt_db mysql\n",
         "hato.conf:1: auth_opt_db: an option of a plugin, but no 'plugin' line comes before it"},
        {"plugin_opt_config_file /x\n", "hato.conf:1: plugin_opt_config_file: an option of a "
                                        "plugin, but no 'plugin' line comes before it"},
        {"max_keepalive 60\nmax_keepalive\xff 1\n", "hato.conf:2: invalid UTF-8"},
        {"Listener 1883\n", "hato.conf:1: unknown directive 'Listener'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i].text, cases[i].msg);

    /* An embedded NUL byte. */
    struct hato_config c;
    hato_config_init(&c);
    char path[] = "/tmp/hato_test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "max_keepalive 6\0\n", 17), 17);
    close(fd);
    assert_int_equal(hato_config_load(&c, path, err, sizeof err), -1);
    char want[256];
    snprintf(want, sizeof want, "%s:1: NUL byte in line", path);
    assert_string_equal(err, want);
    hato_config_free(&c);
    unlink(path);

    /* A missing file. */
    hato_config_init(&c);
    assert_int_equal(hato_config_load(&c, "/nonexistent/hato.conf", err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/hato.conf: cannot read: No such file or directory");
    hato_config_free(&c);

    /* A tiny error buffer is truncated, not overrun. */
    hato_config_init(&c);
    char small[8];
    assert_int_equal(hato_config_parse_string(&c, "hato.conf", "foo\n", small, sizeof small), -1);
    assert_string_equal(small, "hato.co");
    hato_config_free(&c);
}

static void test_syntax(void **state) {
    (void)state;
    struct hato_config c;
    /* CRLF, tabs, leading/trailing blanks, indented comments, trailing comments
     * after one-word values, no final newline, a byte order mark. */
    parse_finish_ok(&c, "\xEF\xBB\xBF# hato\r\n"
                        "\r\n"
                        "   max_keepalive\t 120  \r\n"
                        "  # indented comment\r\n"
                        "listener 1883 0.0.0.0 # the main one\r\n"
                        "mount_point  m/  \r\n"
                        "password_file /etc/p w\r\n"
                        "max_queued_messages 10 # ten\r\n"
                        "# caf\xe9 latin-1 in a comment is fine\n"
                        "allow_anonymous true");
    assert_int_equal(c.max_keepalive, 120);
    assert_int_equal(c.n_listeners, 1);
    assert_string_equal(c.listeners[0].bind_address, "0.0.0.0");
    assert_string_equal(c.listeners[0].mount_point, "m/");
    assert_string_equal(c.password_file, "/etc/p w");
    assert_int_equal(c.max_queued_messages, 10);
    assert_int_equal(c.allow_anonymous, 1);
    hato_config_free(&c);

    /* Line numbers count CRLF lines. */
    expect_error("a_b 1\r\n", "hato.conf:1: unknown directive 'a_b'");
    expect_error("max_keepalive 1\r\n\r\nbogus\r\n", "hato.conf:3: unknown directive 'bogus'");
}

/* ---- files and include_dir ---------------------------------------------- */

static char tmpdir[64];

static void write_file(const char *rel, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void rm_tree(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
}

static void test_include_dir(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/hato_test_conf_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char sub[128], main_path[128];
    snprintf(sub, sizeof sub, "%s/conf.d", tmpdir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(sub, sizeof sub, "%s/conf.d/z.conf", tmpdir);
    assert_int_equal(mkdir(sub, 0700), 0); /* a directory named .conf: skipped */
    write_file("conf.d/20-b.conf", "listener 1002\nmax_connections 2\n");
    write_file("conf.d/10-a.conf", "max_connections 9\nlistener 1001\n");
    write_file("conf.d/30-c.conf.disabled", "this is not read\n");
    write_file("conf.d/README", "nor this\n");
    char text[256];
    snprintf(text, sizeof text, "listener 1000\ninclude_dir %s/conf.d\nmax_connections 1\n",
             tmpdir);
    write_file("hato.conf", text);
    snprintf(main_path, sizeof main_path, "%s/hato.conf", tmpdir);

    struct hato_config c;
    hato_config_init(&c);
    if (hato_config_load(&c, main_path, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(hato_config_finish(&c, err, sizeof err), 0);
    assert_int_equal(c.n_listeners, 3);
    assert_int_equal(c.listeners[0].port, 1000);
    assert_int_equal(c.listeners[1].port, 1001);
    assert_int_equal(c.listeners[2].port, 1002);
    /* Listener scope is per file: the main file's listener continues after. */
    assert_int_equal(c.listeners[0].max_connections, 1);
    assert_int_equal(c.listeners[1].max_connections, -1);
    assert_int_equal(c.listeners[2].max_connections, 2);
    char want[256];
    snprintf(want, sizeof want, "%s/conf.d/20-b.conf", tmpdir);
    assert_string_equal(c.listeners[2].file, want);
    assert_int_equal(c.listeners[2].line, 1);
    assert_non_null(c.include_dir);
    /* 10-a.conf set max_connections before its listener: default listener,
     * warned; the directory z.conf is not read, warned (Mosquitto stops). */
    assert_int_equal(c.n_warnings, 2);
    snprintf(want, sizeof want,
             "hato.conf:2: include_dir: '%s/conf.d/z.conf' is not a regular file; not read",
             tmpdir);
    const char *w = c.warnings[0];
    assert_non_null(strstr(w, "include_dir: '"));
    assert_string_equal(strstr(w, "include_dir:"), strstr(want, "include_dir:"));
    hato_config_free(&c);

    /* An error in an included file names that file and line. */
    write_file("conf.d/40-bad.conf", "\nmax_keepalive 70000\n");
    hato_config_init(&c);
    assert_int_equal(hato_config_load(&c, main_path, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "%s/conf.d/40-bad.conf:2: max_keepalive: expected an integer 0..65535, got '70000'",
             tmpdir);
    assert_string_equal(err, want);
    hato_config_free(&c);

    /* include_dir inside an included file is refused. */
    snprintf(text, sizeof text, "include_dir %s\n", tmpdir);
    write_file("conf.d/40-bad.conf", text);
    hato_config_init(&c);
    assert_int_equal(hato_config_load(&c, main_path, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "%s/conf.d/40-bad.conf:1: include_dir: only allowed in the main configuration file",
             tmpdir);
    assert_string_equal(err, want);
    hato_config_free(&c);
    snprintf(want, sizeof want, "%s/conf.d/40-bad.conf", tmpdir);
    unlink(want);

    /* The included directory must not hold the main file. */
    snprintf(text, sizeof text, "include_dir %s/conf.d\n", tmpdir);
    write_file("conf.d/main.conf", text);
    snprintf(main_path, sizeof main_path, "%s/conf.d/main.conf", tmpdir);
    hato_config_init(&c);
    assert_int_equal(hato_config_load(&c, main_path, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "%s:1: include_dir: '%s/conf.d' contains the main configuration file", main_path,
             tmpdir);
    assert_string_equal(err, want);
    hato_config_free(&c);

    /* A missing directory. */
    hato_config_init(&c);
    assert_int_equal(
        hato_config_parse_string(&c, "hato.conf", "include_dir /nonexistent/d\n", err, sizeof err),
        -1);
    assert_string_equal(err, "hato.conf:1: include_dir: cannot open '/nonexistent/d': No such "
                             "file or directory");
    hato_config_free(&c);

    /* A directory given as the config file. */
    hato_config_init(&c);
    assert_int_equal(hato_config_load(&c, tmpdir, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot read: is a directory", tmpdir);
    assert_string_equal(err, want);
    hato_config_free(&c);
    rm_tree();
}

/* protocol metrics: loopback unless told otherwise; metrics_auth checked. */
/* plugin, auth_plugin, global_plugin and their options (docs/plugins.md). */
static void test_plugins(void **state) {
    (void)state;
    if (!HATO_WITH_PLUGINS)
        skip(); /* test_build_options checks the refusal */
    expect_error("plugin\n", "hato.conf:1: plugin: missing value");
    expect_error("plugin /x.so\nplugin_opt_ y\n",
                 "hato.conf:2: plugin_opt_: the option has no name");
    expect_error("plugin /x.so\nplugin_opt_y\n", "hato.conf:2: plugin_opt_y: missing value");
    struct hato_config c;
    parse_finish_ok(&c, "plugin /a.so\n"
                        "plugin_opt_config_file /etc/x.json\n"
                        "auth_opt_db  my sql  \n"
                        "auth_plugin_deny_special_chars false\n"
                        "auth_plugin /b.so\n"
                        "listener 1883\n");
    assert_int_equal(c.n_plugins, 2);
    assert_string_equal(c.plugins[0].path, "/a.so");
    assert_int_equal(c.plugins[0].n_opts, 2);
    assert_string_equal(c.plugins[0].opts[0].key, "config_file");
    assert_string_equal(c.plugins[0].opts[0].value, "/etc/x.json");
    assert_string_equal(c.plugins[0].opts[1].key, "db");
    assert_string_equal(c.plugins[0].opts[1].value, "my sql");
    assert_false(c.plugins[0].deny_special_chars); /* the plugin it follows */
    assert_true(c.plugins[1].deny_special_chars);  /* the default */
    assert_null(c.plugins[0].lfile);               /* global without per_listener_settings */
    assert_null(c.plugins[1].lfile);
    hato_config_free(&c);

    /* per_listener_settings: a plugin belongs to the listener above it,
     * global_plugin to all; one before any listener to the default one. */
    parse_finish_ok(&c, "per_listener_settings true\n"
                        "port 1884\n"
                        "plugin /d.so\n"
                        "listener 1883\n"
                        "plugin /a.so\n"
                        "global_plugin /g.so\n"
                        "listener 1885\n"
                        "auth_plugin /b.so\n");
    assert_int_equal(c.n_plugins, 4);
    assert_int_equal(c.n_listeners, 3);
    assert_ptr_equal(c.plugins[0].lfile, c.listeners[0].file); /* the default listener, first */
    assert_int_equal(c.plugins[0].lline, c.listeners[0].line);
    assert_int_equal(c.listeners[0].port, 1884);
    assert_int_equal(c.plugins[1].lline, 4);
    assert_null(c.plugins[2].lfile);
    assert_int_equal(c.plugins[3].lline, 7);
    hato_config_free(&c);
}

static void test_metrics_listener(void **state) {
    (void)state;
    struct hato_config c;
    parse_finish_ok(&c, "listener 1883\n"
                        "listener 9090\nprotocol metrics\n"
                        "listener 9091 0.0.0.0\nprotocol metrics\n"
                        "listener 9092\nprotocol metrics\nsocket_domain ipv6\n"
                        "listener 9093\nprotocol metrics\nbind_interface lo\n");
    assert_int_equal(c.n_listeners, 5);
    assert_null(c.listeners[0].bind_address); /* MQTT: every address, as before */
    assert_string_equal(c.listeners[1].protocol, "metrics");
    assert_string_equal(c.listeners[1].bind_address, "127.0.0.1");
    assert_string_equal(c.listeners[2].bind_address, "0.0.0.0");
    assert_string_equal(c.listeners[3].bind_address, "::1");
    assert_null(c.listeners[4].bind_address);
    assert_false(c.listeners[1].metrics_auth);
    hato_config_free(&c);

    parse_finish_ok(&c, "password_file /p\nlistener 9090\nprotocol metrics\nmetrics_auth true\n");
    assert_true(c.listeners[0].metrics_auth);
    hato_config_free(&c);
    parse_finish_ok(&c, "per_listener_settings true\nlistener 9090\nprotocol metrics\n"
                        "metrics_auth true\npassword_file /p\n");
    assert_true(c.listeners[0].metrics_auth);
    hato_config_free(&c);

    expect_finish_error("listener 1883\nmetrics_auth true\n",
                        "hato.conf:1: listener 1883: metrics_auth applies to metrics listeners "
                        "only (add 'protocol metrics')");
    expect_finish_error("listener 9090\nprotocol metrics\nmetrics_auth true\n",
                        "hato.conf:1: listener 9090: metrics_auth true needs a password_file");
    expect_finish_error("per_listener_settings true\npassword_file /p\nlistener 9090\n"
                        "protocol metrics\nmetrics_auth true\n",
                        "hato.conf:3: listener 9090: metrics_auth true needs a password_file");
    expect_finish_error("listener 9090\nprotocol metrics\nhttp_dir /tmp\n",
                        "hato.conf:1: listener 9090: http_dir applies to WebSocket listeners only "
                        "(add 'protocol websockets')");
    expect_error("listener 9090\nprotocol prometheus\n",
                 "hato.conf:2: protocol: expected one of mqtt, websockets, metrics, admin, got "
                 "'prometheus'");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),         cmocka_unit_test(test_local_only),
        cmocka_unit_test(test_listener_rule),    cmocka_unit_test(test_listener_scoping),
        cmocka_unit_test(test_tls_and_security), cmocka_unit_test(test_globals),
        cmocka_unit_test(test_logging),          cmocka_unit_test(test_durations),
        cmocka_unit_test(test_errors),           cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_include_dir),      cmocka_unit_test(test_metrics_listener),
        cmocka_unit_test(test_plugins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
