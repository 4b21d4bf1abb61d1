/*
 * Build options (docs/building.md): a config asking for a part this build
 * left out is refused at its file:line with the option's name; what the
 * build has is accepted. Runs in every configuration (CI builds the full
 * and the smallest one), asserting what HATO_WITH_* says was built.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "config/features.h"

/* Parse text; NULL when accepted, else the error (static buffer). */
static const char *parse(const char *text) {
    static char err[1024];
    struct hato_config cfg;
    hato_config_init(&cfg);
    err[0] = '\0';
    int rc = hato_config_parse_string(&cfg, "hato.conf", text, err, sizeof err);
    hato_config_free(&cfg);
    return rc == 0 ? NULL : err;
}

/* `text` has the directive on line 2; built: it parses; left out: the error names the line,
 * the directive and the option. */
static void check(bool built, const char *text, const char *directive, const char *why) {
    const char *e = parse(text);
    if (built) {
        if (e)
            fail_msg("refused although built in: %s", e);
        return;
    }
    char want[256];
    snprintf(want, sizeof want, "hato.conf:2: %s: %s", directive, why);
    assert_non_null(e);
    assert_string_equal(e, want);
}

static const char no_tls[] = "hato was built without TLS (WITH_TLS=OFF)";
static const char no_psk[] = "hato was built without TLS-PSK (WITH_TLS_PSK=OFF)";
static const char no_ws[] = "hato was built without WebSockets (WITH_WEBSOCKETS=OFF)";
static const char no_persist[] = "hato was built without persistence (WITH_PERSISTENCE=OFF)";

static void test_tls(void **state) {
    (void)state;
    check(HATO_WITH_TLS, "listener 8883\ncertfile /x.crt\n", "certfile", no_tls);
    check(HATO_WITH_TLS, "listener 8883\ncafile /ca.crt\n", "cafile", no_tls);
    check(HATO_WITH_TLS, "listener 8883\ntls_version tlsv1.2\n", "tls_version", no_tls);
    check(HATO_WITH_TLS, "listener 8883\nrequire_certificate true\n", "require_certificate",
          no_tls);
    /* Turning a TLS option off asks for nothing. */
    assert_null(parse("listener 1883\nrequire_certificate false\n"));
}

static void test_psk(void **state) {
    (void)state;
    const char *why = HATO_WITH_TLS ? no_psk : no_tls;
    check(HATO_WITH_TLS_PSK, "listener 8883\npsk_hint hint\n", "psk_hint", why);
    check(HATO_WITH_TLS_PSK, "listener 8883\npsk_file /psk\n", "psk_file", why);
}

static void test_websockets(void **state) {
    (void)state;
    check(HATO_WITH_WEBSOCKETS, "listener 8080\nprotocol websockets\n", "protocol", no_ws);
    check(HATO_WITH_WEBSOCKETS, "listener 8080\nwebsockets_origin https://a.example\n",
          "websockets_origin", no_ws);
    assert_null(parse("listener 1883\nprotocol mqtt\n"));
}

static void test_persistence(void **state) {
    (void)state;
    check(HATO_WITH_PERSISTENCE, "listener 1883\npersistence true\n", "persistence", no_persist);
    assert_null(parse("listener 1883\npersistence false\n"));
}

static const char no_plugins[] = "hato was built without Mosquitto plugin support "
                                 "(WITH_PLUGINS=OFF, or mosquitto-dev's headers were missing)";

static void test_plugins(void **state) {
    (void)state;
    check(HATO_WITH_PLUGINS, "listener 1883\nplugin /x.so\n", "plugin", no_plugins);
    check(HATO_WITH_PLUGINS, "listener 1883\nauth_plugin /x.so\n", "auth_plugin", no_plugins);
    check(HATO_WITH_PLUGINS, "listener 1883\nglobal_plugin /x.so\n", "global_plugin", no_plugins);
}

static void test_features_listed(void **state) {
    (void)state;
    const char *f = hato_features();
    assert_int_equal(strstr(f, "TLS") != NULL, HATO_WITH_TLS);
    assert_int_equal(strstr(f, "TLS-PSK") != NULL, HATO_WITH_TLS_PSK);
    assert_int_equal(strstr(f, "WebSockets") != NULL, HATO_WITH_WEBSOCKETS);
    assert_int_equal(strstr(f, "systemd") != NULL, HATO_WITH_SYSTEMD);
    assert_int_equal(strstr(f, "persistence") != NULL, HATO_WITH_PERSISTENCE);
    assert_int_equal(strstr(f, "EC") != NULL, HATO_WITH_EC);
    assert_int_equal(strstr(f, "plugins") != NULL, HATO_WITH_PLUGINS);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls),        cmocka_unit_test(test_psk),
        cmocka_unit_test(test_websockets), cmocka_unit_test(test_persistence),
        cmocka_unit_test(test_plugins),    cmocka_unit_test(test_features_listed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
