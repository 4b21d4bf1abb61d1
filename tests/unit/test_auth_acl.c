/* Unit tests of ACL files (src/auth/acl.c): Mosquitto's syntax and the
 * decisions, including the advisories (wildcards in names, empty file). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth/acl.h"

enum { R = AUTH_ACL_READ, W = AUTH_ACL_WRITE, S = AUTH_ACL_SUBSCRIBE };

static struct auth_acl *parse(const char *text) {
    char err[256];
    struct auth_acl *a = auth_acl_parse(text, strlen(text), "acl", err, sizeof(err));
    if (!a)
        fail_msg("parse failed: %s", err);
    return a;
}

static bool can(struct auth_acl *a, const char *user, const char *cid, const char *topic,
                int access) {
    return auth_acl_check(a, user, cid, topic, strlen(topic), access);
}

static void test_match(void **st) {
    (void)st;
#define M(f, t) auth_acl_match(f, t, strlen(t))
    assert_true(M("a/b", "a/b"));
    assert_false(M("a/b", "a/bc"));
    assert_false(M("a/b", "a"));
    assert_true(M("a/+", "a/b"));
    assert_true(M("a/+", "a/"));
    assert_false(M("a/+", "a/b/c"));
    assert_true(M("a/#", "a"));
    assert_true(M("a/#", "a/b/c"));
    assert_true(M("#", "a/b"));
    assert_true(M("+/+", "/x"));
    assert_false(M("#", "$SYS/broker")); /* MQTT-4.7.2-1 */
    assert_false(M("+/broker", "$SYS/broker"));
    assert_true(M("$SYS/#", "$SYS/broker/load"));
    assert_false(M("a/b/c", "a/b"));
    /* A filter taken as a topic: its wildcards are plain characters. */
    assert_true(M("a/#", "a/+"));
    assert_false(M("a/b", "a/+"));
    assert_false(M("a/+", "#"));
#undef M
}

static void test_anonymous_and_users(void **st) {
    (void)st;
    struct auth_acl *a = parse("# general rules: anonymous clients only\n"
                               "topic read public/#\n"
                               "\n"
                               "user alice\n"
                               "topic readwrite alice/#\n"
                               "topic write in/alice\n"
                               "  topic  public/#  \n"
                               "user bob\n"
                               "topic read alice/status\n");
    assert_int_equal(auth_acl_rules(a), 5);
    assert_true(can(a, NULL, "c", "public/x", R));
    assert_true(can(a, NULL, "c", "public/x", S));
    assert_false(can(a, NULL, "c", "public/x", W));
    assert_false(can(a, NULL, "c", "alice/x", R));
    /* General rules do not apply to named users. */
    assert_false(can(a, "bob", "c", "public/x", R));
    assert_true(can(a, "alice", "c", "public/x", W)); /* readwrite by default */
    assert_true(can(a, "alice", "c", "alice/a/b", W));
    assert_true(can(a, "alice", "c", "in/alice", W));
    assert_false(can(a, "alice", "c", "in/alice", R));
    assert_true(can(a, "bob", "c", "alice/status", R));
    assert_false(can(a, "bob", "c", "alice/status", W));
    assert_false(can(a, "bob", "c", "alice/other", R));
    /* A user not in the file gets nothing (no patterns here). */
    assert_false(can(a, "carol", "c", "public/x", R));
    auth_acl_free(a);
}

static void test_subscribe_filters(void **st) {
    (void)st;
    struct auth_acl *a = parse("user u\ntopic read a/#\ntopic read b/+\n");
    assert_true(can(a, "u", "c", "a/#", S));
    assert_true(can(a, "u", "c", "a/+/c", S));
    assert_true(can(a, "u", "c", "b/+", S));
    assert_false(can(a, "u", "c", "#", S));
    assert_false(can(a, "u", "c", "+/x", S));
    assert_false(can(a, "u", "c", "$SYS/#", S));
    auth_acl_free(a);
}

static void test_deny_wins(void **st) {
    (void)st;
    struct auth_acl *a = parse("user u\n"
                               "topic readwrite #\n"
                               "topic deny secret/#\n"
                               "pattern deny %u/private\n");
    assert_true(can(a, "u", "c", "x/y", R));
    assert_false(can(a, "u", "c", "secret/x", R));
    assert_false(can(a, "u", "c", "secret/x", W));
    assert_false(can(a, "u", "c", "secret/#", S));
    assert_false(can(a, "u", "c", "u/private", W));
    assert_true(can(a, "u", "c", "v/private", W));
    auth_acl_free(a);
}

static void test_sys_only_where_granted(void **st) {
    (void)st;
    struct auth_acl *a = parse("user u\ntopic read #\nuser admin\ntopic read $SYS/#\n");
    assert_false(can(a, "u", "c", "$SYS/broker/uptime", R));
    assert_false(can(a, "u", "c", "$SYS/#", S));
    assert_true(can(a, "admin", "c", "$SYS/broker/uptime", R));
    assert_true(can(a, "admin", "c", "$SYS/#", S));
    auth_acl_free(a);
}

static void test_patterns(void **st) {
    (void)st;
    struct auth_acl *a = parse("pattern readwrite devices/%c/#\n"
                               "pattern read users/%u/inbox\n"
                               "pattern write %u/%c\n");
    assert_true(can(a, NULL, "d1", "devices/d1/temp", W));
    assert_false(can(a, NULL, "d1", "devices/d2/temp", W));
    assert_false(can(a, NULL, "d1", "users//inbox", R)); /* %u needs a user name */
    assert_true(can(a, "al", "d1", "users/al/inbox", R));
    assert_true(can(a, "al", "d1", "al/d1", W));
    assert_false(can(a, "al", "d1", "al/d2", W));
    auth_acl_free(a);
}

static void test_wildcards_in_names_never_widen(void **st) {
    (void)st;
    /* Mosquitto advisory: a client id or user name of '+' or '#' must not
     * turn a pattern into a wildcard rule. */
    struct auth_acl *a = parse("pattern readwrite devices/%c/#\n"
                               "pattern read users/%u\n"
                               "pattern deny private/%c/#\n"
                               "user x\n"
                               "topic readwrite private/#\n");
    assert_false(can(a, NULL, "+", "devices/other/temp", R));
    assert_false(can(a, NULL, "#", "devices/other/temp", W));
    assert_false(can(a, NULL, "+", "devices/+/#", S));
    assert_false(can(a, NULL, "a+b", "devices/a+b/x", R)); /* names with wildcards grant nothing */
    assert_false(can(a, "#", "c", "users/alice", R));
    assert_false(can(a, "+", "c", "users/+", S));
    /* Deny patterns still apply (they can only deny more). */
    assert_true(can(a, "x", "c1", "private/c2/a", R));
    assert_false(can(a, "x", "c1", "private/c1/a", R));
    assert_false(can(a, "x", "+", "private/c2/a", R));
    auth_acl_free(a);
}

static void test_empty_file_denies_everything(void **st) {
    (void)st;
    struct auth_acl *a = parse("");
    assert_int_equal(auth_acl_rules(a), 0);
    assert_false(can(a, NULL, "c", "a", R));
    assert_false(can(a, "u", "c", "a", W));
    assert_false(can(a, "u", "c", "#", S));
    auth_acl_free(a);
    a = parse("# only comments\n\n   \n");
    assert_false(can(a, NULL, "c", "a", R));
    auth_acl_free(a);
}

static void expect_error(const char *text, const char *msg) {
    char err[256] = "";
    struct auth_acl *a = auth_acl_parse(text, strlen(text), "acl", err, sizeof(err));
    assert_null(a);
    if (!strstr(err, msg))
        fail_msg("error '%s' lacks '%s'", err, msg);
}

static void test_errors(void **st) {
    (void)st;
    expect_error("topic read a\nusr bob\n", "acl:2: unknown keyword 'usr'");
    expect_error("user\n", "acl:1: 'user' needs a user name");
    expect_error("topic read\n", "acl:1: 'topic' needs a topic");
    expect_error("\npattern\n", "acl:2: 'pattern' needs a topic");
    expect_error("topic read a/#/b\n", "acl:1: invalid topic filter 'a/#/b'");
    expect_error("topic a+\n", "acl:1: invalid topic filter 'a+'");
    expect_error("topicread a\n", "acl:1: unknown keyword 'topicread'");
}

static void test_topic_with_spaces(void **st) {
    (void)st;
    struct auth_acl *a = parse("user u\ntopic read my topic/x\ntopic readwrite\tother one\n");
    assert_true(can(a, "u", "c", "my topic/x", R));
    assert_true(can(a, "u", "c", "other one", W));
    auth_acl_free(a);
}

/* Saved by a Windows editor: BOM, CRLF, trailing blanks (Mosquitto 2.0
 * trims the line ends; it refuses the BOM, hato skips it). */
static void test_windows_file(void **st) {
    (void)st;
    struct auth_acl *a = parse("\xEF\xBB\xBFuser alice \r\ntopic read a/#\t \r\n  user bob\r\n"
                               "topic write b\r\n");
    assert_true(can(a, "alice", "c", "a/x", R));
    assert_false(can(a, "alice", "c", "b", W));
    assert_true(can(a, "bob", "c", "b", W));
    assert_false(can(a, "bob", "c", "a/x", R));
    auth_acl_free(a);
    expect_error("topic read a\n\xEF\xBB\xBFuser b\n", "acl:2: unknown keyword '\xEF\xBB\xBFuser'");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_anonymous_and_users),
        cmocka_unit_test(test_subscribe_filters),
        cmocka_unit_test(test_deny_wins),
        cmocka_unit_test(test_sys_only_where_granted),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_wildcards_in_names_never_widen),
        cmocka_unit_test(test_empty_file_denies_everything),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_topic_with_spaces),
        cmocka_unit_test(test_windows_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
