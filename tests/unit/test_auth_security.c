/* Unit tests of the broker's security glue (src/broker/security.c): login
 * decisions (including a user name given by TLS), per-listener scopes, the
 * login slowdown, and reload keeping the old files on error. No sockets:
 * the structures a worker would hold are built by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker/authpool.h"
#include "broker/broker.h"
#include "broker/security.h"

/* mosquitto_passwd 2.0.11: alice / "apw". */
static const char ALICE[] = "alice:$7$101$VpB+Hg1kyLayjBhb$fd4LwwR2TQWMUIhkEZyBpBoo1RpD1XIEj0YQ/Imt"
                            "aZrOrBoMx993NjNzxoeltHrSihNjcpcZ74bWq1d0n/8lPA==\n";

struct env {
    char dir[64];
    char pw[96], acl[96];
    struct hato_config cfg;
    struct broker b;
    struct worker w;
    struct lsock ls[2];
};

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void env_start(struct env *e, const char *conf_extra) {
    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/hato-sec-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->pw, sizeof(e->pw), "%s/pw", e->dir);
    snprintf(e->acl, sizeof(e->acl), "%s/acl", e->dir);
    put(e->pw, ALICE);
    put(e->acl, "user alice\ntopic read a/#\n");
    char conf[1024], err[256];
    snprintf(conf, sizeof(conf), "%slistener 0 127.0.0.1\n", conf_extra);
    /* Paths in the config text refer to the files made above. */
    char full[2048];
    snprintf(full, sizeof(full), conf, e->pw, e->acl);
    hato_config_init(&e->cfg);
    assert_int_equal(hato_config_parse_string(&e->cfg, "t.conf", full, err, sizeof(err)), 0);
    assert_int_equal(hato_config_finish(&e->cfg, err, sizeof(err)), 0);
    e->b.cfg = &e->cfg;
    assert_int_equal(security_init(&e->b), 0);
    e->w.b = &e->b;
    /* The worker's inbox, where the password pool answers. */
    pthread_mutex_init(&e->w.inbox_lock, NULL);
    e->w.loop = ev_loop_new();
    assert_non_null(e->w.loop);
    assert_int_equal(authpool_start(&e->b), 0);
    security_worker_update(&e->w);
    for (size_t i = 0; i < e->cfg.n_listeners && i < 2; i++)
        e->ls[i].cfg = &e->cfg.listeners[i];
}

static void env_stop(struct env *e) {
    authpool_stop(&e->b);
    ev_loop_free(e->w.loop);
    pthread_mutex_destroy(&e->w.inbox_lock);
    security_worker_release(&e->w);
    security_free(&e->b);
    hato_config_free(&e->cfg);
    unlink(e->pw);
    unlink(e->acl);
    rmdir(e->dir);
}

/* The one item the password pool posts to the worker's inbox (polled, 10 s at most). */
static struct item *inbox_wait(struct env *e) {
    struct item *it = NULL;
    for (int i = 0; i < 10000 && !it; i++) {
        pthread_mutex_lock(&e->w.inbox_lock);
        it = e->w.inbox_head;
        e->w.inbox_head = e->w.inbox_tail = NULL;
        pthread_mutex_unlock(&e->w.inbox_lock);
        if (!it)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    assert_non_null(it);
    assert_null(it->next);
    return it;
}

static enum sec_auth login(struct env *e, int li, const char *user, const char *pass, bool tls) {
    struct conn c = {.w = &e->w, .ls = &e->ls[li], .lcfg = e->ls[li].cfg, .username_from_tls = tls};
    c.username = user ? strdup(user) : NULL;
    struct mqtt_packet p = {.type = MQTT_CONNECT};
    if (pass) {
        p.connect.has_password = true;
        p.connect.password = (struct mqtt_str){(const uint8_t *)pass, (uint32_t)strlen(pass)};
    }
    enum sec_auth r = security_authenticate(&c, &p);
    if (r == SEC_AUTH_PENDING) {
        /* Parked; the verdict comes to the worker's inbox. */
        assert_true(c.auth_id != 0);
        struct item *it = inbox_wait(e);
        assert_int_equal(it->kind, IT_AUTH);
        assert_ptr_equal(authpool_verdict(&e->w, it), &c);
        assert_int_equal(c.auth_id, 0);
        /* The CONNECT's second run gets the verdict. */
        r = security_authenticate(&c, &p);
        assert_int_not_equal(r, SEC_AUTH_PENDING);
    }
    free(c.username);
    return r;
}

static void test_login_decisions(void **st) {
    (void)st;
    struct env e;
    env_start(&e, "password_file %s\nacl_file %s\n");
    assert_int_equal(login(&e, 0, "alice", "apw", false), SEC_AUTH_OK);
    assert_int_equal(login(&e, 0, "alice", "bad", false), SEC_AUTH_BAD_CREDENTIALS);
    assert_int_equal(login(&e, 0, "alice", NULL, false), SEC_AUTH_NO_PASSWORD);
    assert_int_equal(login(&e, 0, "bob", "apw", false), SEC_AUTH_UNKNOWN_USER);
    assert_int_equal(login(&e, 0, "bob", NULL, false), SEC_AUTH_UNKNOWN_USER);
    assert_int_equal(login(&e, 0, NULL, NULL, false), SEC_AUTH_NOT_AUTHORISED);
    /* The log's reasons (the client is told less). */
    assert_string_equal(security_auth_reason(SEC_AUTH_BAD_CREDENTIALS), "wrong password");
    assert_string_equal(security_auth_reason(SEC_AUTH_UNKNOWN_USER), "unknown user");
    assert_string_equal(security_auth_reason(SEC_AUTH_NO_PASSWORD), "no password given");
    assert_string_equal(security_auth_reason(SEC_AUTH_NOT_AUTHORISED),
                        "anonymous clients not allowed");
    assert_null(security_auth_reason(SEC_AUTH_OK));
    /* A user name from the TLS layer (use_identity_as_username) needs no password. */
    assert_int_equal(login(&e, 0, "CN-device-7", NULL, true), SEC_AUTH_OK);
    env_stop(&e);
}

/* A connection closed while its password is checked (conn_close unparks it):
 * the verdict finds nobody and is dropped. */
static void test_verdict_for_closed_connection(void **st) {
    (void)st;
    struct env e;
    env_start(&e, "password_file %s\n");
    struct conn c = {.w = &e.w, .ls = &e.ls[0], .lcfg = e.ls[0].cfg, .username = strdup("alice")};
    struct mqtt_packet p = {.type = MQTT_CONNECT};
    p.connect.has_password = true;
    p.connect.password = (struct mqtt_str){(const uint8_t *)"apw", 3};
    assert_int_equal(security_authenticate(&c, &p), SEC_AUTH_PENDING);
    assert_ptr_equal(e.w.parked, &c);
    authpool_unpark(&c);
    assert_null(e.w.parked);
    struct item *it = inbox_wait(&e);
    assert_null(authpool_verdict(&e.w, it)); /* frees it */
    assert_int_equal(c.auth_done, AUTH_DONE_NONE);
    free(c.username);
    env_stop(&e);
}

static void test_acl_scope_and_reload(void **st) {
    (void)st;
    struct env e;
    env_start(&e, "password_file %s\nacl_file %s\n");
    const struct hato_listener *l = e.ls[0].cfg;
    assert_true(security_acl_active(&e.w));
    assert_true(security_acl(&e.w, l, "alice", "c", "a/b", 3, AUTH_ACL_READ));
    assert_false(security_acl(&e.w, l, "alice", "c", "b/b", 3, AUTH_ACL_READ));
    /* A bad ACL on reload keeps the old one. */
    put(e.acl, "user alice\ntopic read b/#\nbogus\n");
    security_reload(&e.b);
    assert_true(security_acl(&e.w, l, "alice", "c", "a/b", 3, AUTH_ACL_READ));
    /* A good one is seen by the next check, before any tick. */
    put(e.acl, "user alice\ntopic read b/#\n");
    security_reload(&e.b);
    assert_true(security_acl_active(&e.w));
    assert_false(security_acl(&e.w, l, "alice", "c", "a/b", 3, AUTH_ACL_READ));
    assert_true(security_acl(&e.w, l, "alice", "c", "b/b", 3, AUTH_ACL_READ));
    env_stop(&e);
}

static void test_no_acl_is_one_branch(void **st) {
    (void)st;
    struct env e;
    env_start(&e, "password_file %s\n");
    assert_false(security_acl_active(&e.w));
    assert_true(security_acl(&e.w, e.ls[0].cfg, NULL, "c", "x", 1, AUTH_ACL_WRITE));
    env_stop(&e);
}

static void test_per_listener_scopes(void **st) {
    (void)st;
    struct env e;
    /* Listener 0 has the files; listener 1 (added below) has none. */
    env_start(&e, "per_listener_settings true\nlistener 0 127.0.0.2\npassword_file %s\n"
                  "acl_file %s\n");
    assert_int_equal(e.cfg.n_listeners, 2);
    int with = e.cfg.listeners[0].password_file ? 0 : 1, without = 1 - with;
    assert_int_equal(login(&e, with, "alice", "apw", false), SEC_AUTH_OK);
    assert_int_equal(login(&e, with, "alice", "bad", false), SEC_AUTH_BAD_CREDENTIALS);
    /* No password file there and anonymous refused: a user name alone is not enough. */
    assert_int_equal(login(&e, without, "alice", "apw", false), SEC_AUTH_NOT_AUTHORISED);
    assert_false(security_acl(&e.w, e.ls[with].cfg, "alice", "c", "z", 1, AUTH_ACL_READ));
    assert_true(security_acl(&e.w, e.ls[without].cfg, "alice", "c", "z", 1, AUTH_ACL_READ));
    env_stop(&e);
}

static void test_fail_delay(void **st) {
    (void)st;
    struct env e;
    env_start(&e, "auth_fail_delay 100\nauth_fail_delay_max 500\n");
    assert_false(security_fail_pending(&e.b, "192.0.2.1:1000"));
    assert_int_equal(security_fail_delay(&e.b, "192.0.2.1:1000"), 100);
    assert_true(security_fail_pending(&e.b, "192.0.2.1:2000")); /* same address, other port */
    assert_false(security_fail_pending(&e.b, "192.0.2.2:1000"));
    assert_int_equal(security_fail_delay(&e.b, "192.0.2.1:1001"), 200);
    assert_int_equal(security_fail_delay(&e.b, "192.0.2.1:1002"), 400);
    assert_int_equal(security_fail_delay(&e.b, "192.0.2.1:1003"), 500);
    assert_int_equal(security_fail_delay(&e.b, "192.0.2.1:1004"), 500);
    assert_int_equal(security_fail_delay(&e.b, "[2001:db8::1]:1883"), 100);
    assert_int_equal(security_fail_delay(&e.b, "[2001:db8::1]:1884"), 200);
    assert_int_equal(security_fail_delay(&e.b, "/run/hato.sock"), 100);
    env_stop(&e);
    env_start(&e, "auth_fail_delay 0\n");
    assert_int_equal(security_fail_delay(&e.b, "192.0.2.1:1000"), 0);
    assert_false(security_fail_pending(&e.b, "192.0.2.1:1000"));
    env_stop(&e);
}

static void test_printable(void **st) {
    (void)st;
    char buf[8];
    assert_string_equal(security_printable("a\nb\x1b", buf, sizeof(buf)), "a?b?");
    assert_string_equal(security_printable("123456789", buf, sizeof(buf)), "1234567");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_login_decisions),
        cmocka_unit_test(test_acl_scope_and_reload),
        cmocka_unit_test(test_no_acl_is_one_branch),
        cmocka_unit_test(test_per_listener_scopes),
        cmocka_unit_test(test_fail_delay),
        cmocka_unit_test(test_printable),
        cmocka_unit_test(test_verdict_for_closed_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
