/* Unit tests of the directive table (src/config/config.c keys[]): every row
 * documented, defaults read from the initialised config, the restart rows
 * kept by a reload, stored-only directives warned about. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

static bool get(const char *name, struct hato_directive *d) {
    for (size_t i = 0; i < hato_directive_count(); i++)
        if (hato_directive_get(i, d) && strcmp(d->name, name) == 0)
            return true;
    return false;
}

static void test_every_row_complete(void **state) {
    (void)state;
    size_t n = hato_directive_count();
    assert_true(n > 100);
    struct hato_directive d, e;
    assert_false(hato_directive_get(n, &d));
    for (size_t i = 0; i < n; i++) {
        assert_true(hato_directive_get(i, &d));
        if (!d.doc[0])
            fail_msg("directive %s has no DOC(\"...\") line in keys[]", d.name);
        if (strchr(d.doc, '\n'))
            fail_msg("directive %s: its DOC line has a newline", d.name);
        for (size_t j = 0; j < i; j++) {
            assert_true(hato_directive_get(j, &e));
            if (strcmp(d.name, e.name) == 0)
                fail_msg("directive %s has two rows", d.name);
        }
    }
}

static void test_defaults_and_types(void **state) {
    (void)state;
    struct hato_directive d;
    assert_true(get("max_keepalive", &d));
    assert_string_equal(d.def, "65535");
    assert_string_equal(d.type, "integer 0..65535");
    assert_string_equal(d.scope, "global");
    assert_int_equal(d.reload, HATO_RELOAD_LIVE);
    assert_true(get("protocol", &d));
    assert_string_equal(d.def, "mqtt");
    assert_string_equal(d.type, "mqtt|websockets|metrics|admin");
    assert_int_equal(d.reload, HATO_RELOAD_LISTENER);
    assert_true(get("persistence_sync", &d));
    assert_string_equal(d.def, "always");
    assert_int_equal(d.reload, HATO_RELOAD_RESTART);
    assert_true(get("max_qos", &d));
    assert_int_equal(d.reload, HATO_RELOAD_NEW_CONN);
    assert_string_equal(d.scope, "listener");
    assert_true(get("password_file", &d));
    assert_string_equal(d.scope, "security");
    assert_string_equal(d.def, "none");
    assert_true(get("retain_available", &d));
    assert_string_equal(d.def, "true");
    assert_string_equal(d.type, "bool");
    assert_true(get("bridge_ciphers", &d));
    assert_string_equal(d.status, "refused");
    assert_string_equal(d.scope, "bridge");
    assert_true(get("retry_interval", &d));
    assert_string_equal(d.status, "obsolete");
}

static int nchanged;
static char changed_names[512];

static void on_changed(const char *name, const char *running, void *arg) {
    (void)arg;
    (void)running;
    nchanged++;
    strncat(changed_names, name, sizeof changed_names - strlen(changed_names) - 2);
    strcat(changed_names, " ");
}

/* Every restart row is kept by hato_config_keep_restart (so it must be a
 * generic global row: one of these), and nothing else is. */
static void test_keep_restart(void **state) {
    (void)state;
    static const char *const restart[] = {
        "persistence",
        "retained_persistence",
        "persistence_location",
        "persistence_file",
        "autosave_interval",
        "autosave_on_changes",
        "pid_file",
        "user",
        "threads",
        "persistence_sync",
        "cluster_nats_url",
        "cluster_name",
        "node_name",
        "cluster_nats_user",
        "cluster_nats_password",
        "cluster_nats_cafile",
        "cluster_nats_certfile",
        "cluster_nats_keyfile",
        "cluster_replicas",
        /* Not table fields: the plugin host loads them once and reload.c
         * logs a change (plugins_unchanged). */
        "auth_plugin_deny_special_chars",
        "plugin",
        "auth_plugin",
        "global_plugin",
    };
    size_t nrestart = 0;
    for (size_t i = 0; i < hato_directive_count(); i++) {
        struct hato_directive d;
        hato_directive_get(i, &d);
        if (d.reload != HATO_RELOAD_RESTART)
            continue;
        bool known = false;
        for (size_t k = 0; k < sizeof restart / sizeof restart[0]; k++)
            known |= strcmp(restart[k], d.name) == 0;
        if (!known)
            fail_msg("restart row %s: add it to this test and check that "
                     "hato_config_keep_restart keeps it",
                     d.name);
        nrestart++;
    }
    assert_int_equal(nrestart, sizeof restart / sizeof restart[0]);

    struct hato_config old, n;
    char err[256];
    hato_config_init(&old);
    hato_config_init(&n);
    /* A build without persistence refuses "persistence true" (features.c). */
    const char *on = HATO_WITH_PERSISTENCE ? "persistence true\n" : "";
    char text[512];
    snprintf(text, sizeof text,
             "%spersistence_location /x/\npersistence_file f.db\n"
             "autosave_interval 5\nautosave_on_changes true\npid_file /p\nuser u\n"
             "threads 3\npersistence_sync none\nmax_keepalive 7\n",
             on);
    if (hato_config_parse_string(&n, "new.conf", text, err, sizeof err) != 0)
        fail_msg("%s", err);
    nchanged = 0;
    changed_names[0] = '\0';
    assert_int_equal(hato_config_keep_restart(&n, &old, on_changed, NULL), 0);
    /* retained_persistence shares persistence's field: reported once. */
    assert_int_equal(nchanged, HATO_WITH_PERSISTENCE ? 9 : 8);
    static const char all[] = "persistence persistence_location persistence_file "
                              "autosave_interval autosave_on_changes pid_file user "
                              "threads persistence_sync ";
    assert_string_equal(changed_names, all + (HATO_WITH_PERSISTENCE ? 0 : strlen("persistence ")));
    assert_false(n.persistence);
    assert_null(n.persistence_location);
    assert_string_equal(n.persistence_file, "mosquitto.db");
    assert_int_equal(n.autosave_interval, 1800);
    assert_false(n.autosave_on_changes);
    assert_null(n.pid_file);
    assert_string_equal(n.user, "mosquitto");
    assert_int_equal(n.threads, 0);
    assert_int_equal(n.persistence_sync, HATO_SYNC_ALWAYS);
    assert_int_equal(n.max_keepalive, 7); /* live: the new value */
    nchanged = 0;
    assert_int_equal(hato_config_keep_restart(&n, &old, on_changed, NULL), 0);
    assert_int_equal(nchanged, 0); /* nothing differs any more */
    hato_config_free(&old);
    hato_config_free(&n);
}

static void test_stored_warns(void **state) {
    (void)state;
    struct hato_directive d;
    for (size_t i = 0; i < hato_directive_count(); i++) {
        hato_directive_get(i, &d);
        if (strcmp(d.status, "stored") == 0)
            break;
    }
    if (strcmp(d.status, "stored") != 0)
        skip(); /* no stored-only directive left: nothing to warn about */
    struct hato_config c;
    char err[256], text[128], want[256];
    snprintf(text, sizeof text, "\n%s %s\n", d.name, strcmp(d.type, "bool") == 0 ? "true" : "1");
    hato_config_init(&c);
    assert_int_equal(hato_config_parse_string(&c, "x.conf", text, err, sizeof err), 0);
    assert_int_equal(c.n_warnings, 1);
    snprintf(want, sizeof want,
             "x.conf:2: %s is accepted but has no effect in this version of hato", d.name);
    assert_string_equal(c.warnings[0], want);
    hato_config_free(&c);
}

static void test_print_markdown(void **state) {
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    hato_directives_print(f);
    fclose(f);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    assert_int_equal(lines, hato_directive_count() + 2);
    assert_non_null(strstr(buf, "| `socket_domain` | listener | ipv4\\|ipv6 | both | reopens the "
                                "listener | implemented |"));
    free(buf);
}

/* hato_directive_value: the effective value of a row in a loaded config
 * (the admin API's GET /api/v1/config). */
static size_t row(const char *name) {
    struct hato_directive d;
    for (size_t i = 0; i < hato_directive_count(); i++)
        if (hato_directive_get(i, &d) && strcmp(d.name, name) == 0)
            return i;
    fail_msg("no row %s", name);
    return 0;
}

static void test_directive_value(void **state) {
    (void)state;
    struct hato_config cfg;
    char err[256], v[128];
    hato_config_init(&cfg);
    assert_int_equal(hato_config_parse_string(&cfg, "t.conf",
                                              "max_inflight_messages 7\nretain_available false\n"
                                              "listener 1884 127.0.0.1\nmax_qos 1\n",
                                              err, sizeof(err)),
                     0);
    assert_int_equal(hato_config_finish(&cfg, err, sizeof(err)), 0);
    assert_true(hato_directive_value(&cfg, NULL, row("max_inflight_messages"), v, sizeof(v)));
    assert_string_equal(v, "7");
    assert_true(hato_directive_value(&cfg, NULL, row("retain_available"), v, sizeof(v)));
    assert_string_equal(v, "false");
    assert_true(hato_directive_value(&cfg, NULL, row("password_file"), v, sizeof(v)));
    assert_string_equal(v, "none");
    assert_true(hato_directive_value(&cfg, &cfg.listeners[0], row("max_qos"), v, sizeof(v)));
    assert_string_equal(v, "1");
    assert_true(hato_directive_value(&cfg, &cfg.listeners[0], row("protocol"), v, sizeof(v)));
    assert_string_equal(v, "mqtt");
    /* A listener row needs a listener; FN rows have no single field. */
    assert_false(hato_directive_value(&cfg, NULL, row("max_qos"), v, sizeof(v)));
    assert_false(hato_directive_value(&cfg, NULL, row("listener"), v, sizeof(v)));
    assert_false(hato_directive_value(&cfg, NULL, hato_directive_count(), v, sizeof(v)));
    hato_config_free(&cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_row_complete), cmocka_unit_test(test_defaults_and_types),
        cmocka_unit_test(test_keep_restart),       cmocka_unit_test(test_stored_warns),
        cmocka_unit_test(test_print_markdown),     cmocka_unit_test(test_directive_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
