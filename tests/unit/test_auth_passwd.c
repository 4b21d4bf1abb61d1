/* Unit tests of password file parsing (src/auth/passwd.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth/passwd.h"

#define U7                                                                                         \
    "u7:$7$101$l7zUZLxLrtKVnm6V$"                                                                  \
    "Yy6j4AyiJMW7dv9Hm5r481Fd1tnSzIeaC2Znz1VdpBqL5hE8I4cVLFAoPKyvyZ3Ih5e"                          \
    "8T8tlJVJ3DSP7sn8fLA=="
#define U6                                                                                         \
    "u6:$6$4JWRgKL/"                                                                               \
    "ibmJ2pyc$zeJ797a5Ih0KFpn4f6gjs3g83k67WbaKXsusY5XWYgMZdj4HTq5x4Chr9Qd1wqF8Vsx8xCBB"            \
    "GAsxKY7lBHbDpQ=="

static struct auth_passwd *parse(const char *text, char *err, size_t errlen) {
    return auth_passwd_parse(text, strlen(text), "pw", err, errlen);
}

static bool check(struct auth_passwd *pw, const char *u, const char *p) {
    return auth_passwd_check(pw, u, strlen(u), p, strlen(p));
}

static void test_mosquitto_file(void **st) {
    (void)st;
    char err[256];
    /* As mosquitto_passwd writes it: the last line may lack its newline. */
    struct auth_passwd *pw = parse("# users\n" U7 "\r\n" U6, err, sizeof(err));
    assert_non_null(pw);
    assert_int_equal(auth_passwd_count(pw), 2);
    assert_true(check(pw, "u7", "pässword 7"));
    assert_true(check(pw, "u6", "secret6"));
    assert_false(check(pw, "u6", "pässword 7"));
    assert_false(check(pw, "nobody", "secret6"));
    assert_false(check(pw, "", ""));
    assert_true(auth_passwd_has_user(pw, "u7", 2));
    assert_false(auth_passwd_has_user(pw, "u", 1));
    assert_null(auth_passwd_problem(pw, 0, NULL));
    auth_passwd_free(pw);
}

static void test_blank_line_is_not_a_user(void **st) {
    (void)st;
    char err[256];
    /* Mosquitto advisory: a blank line must not become an empty user with
     * an empty password. It is reported with its line number. */
    struct auth_passwd *pw = parse(U7 "\n\n  \n" U6 "\n", err, sizeof(err));
    assert_non_null(pw);
    assert_int_equal(auth_passwd_count(pw), 2);
    assert_false(check(pw, "", ""));
    assert_false(auth_passwd_has_user(pw, "", 0));
    bool error = true;
    assert_string_equal(auth_passwd_problem(pw, 0, &error),
                        "pw:2: blank line ignored (not a user)");
    assert_false(error);
    assert_string_equal(auth_passwd_problem(pw, 1, NULL), "pw:3: blank line ignored (not a user)");
    assert_null(auth_passwd_problem(pw, 2, NULL));
    auth_passwd_free(pw);
}

/* One malformed line after a good one: the good user stays, the line is
 * reported as an error with its number and is never a user. */
static void expect_skipped(const char *bad, const char *user, const char *msg) {
    char text[512], err[256];
    snprintf(text, sizeof(text), U7 "\n%s\n", bad);
    struct auth_passwd *pw = parse(text, err, sizeof(err));
    assert_non_null(pw);
    assert_int_equal(auth_passwd_count(pw), 1);
    assert_true(check(pw, "u7", "pässword 7"));
    if (user)
        assert_false(auth_passwd_has_user(pw, user, strlen(user)));
    bool error = false;
    const char *p = auth_passwd_problem(pw, 0, &error);
    assert_non_null(p);
    assert_true(error);
    if (!strstr(p, msg))
        fail_msg("problem '%s' lacks '%s'", p, msg);
    assert_true(strncmp(p, "pw:2: ", 6) == 0);
    auth_passwd_free(pw);
}

static void test_malformed_lines(void **st) {
    (void)st;
    expect_skipped("bob", "bob", "not 'user:hash'");
    expect_skipped("bob:", "bob", "user 'bob' has no password hash; line ignored");
    expect_skipped(":$6$4JWRgKL/ibmJ2pyc$zeJ7", NULL, "empty user name");
    expect_skipped("bob:secret", "bob", "user 'bob': unknown hash type");
    expect_skipped("bob:$7$101$abc$def", "bob", "user 'bob': bad salt");
    expect_skipped("b\x01ob:$6$x$y", NULL, "control character in user name");
    expect_skipped("bob:$6$4JWRgKL/ibmJ2pyc$zeJ7 ", "bob", "user 'bob': bad hash");
}

static void test_nul_byte(void **st) {
    (void)st;
    char err[256];
    static const char text[] = "u\0x:$6$a$b\n";
    struct auth_passwd *pw = auth_passwd_parse(text, sizeof(text) - 1, "pw", err, sizeof(err));
    assert_non_null(pw);
    assert_int_equal(auth_passwd_count(pw), 0);
    assert_string_equal(auth_passwd_problem(pw, 0, NULL), "pw:1: NUL byte in line; line ignored");
    auth_passwd_free(pw);
}

static void test_empty_file(void **st) {
    (void)st;
    char err[64];
    struct auth_passwd *pw = parse("", err, sizeof(err));
    assert_non_null(pw);
    assert_int_equal(auth_passwd_count(pw), 0);
    assert_false(check(pw, "a", "b"));
    auth_passwd_free(pw);
}

/* Files edited on Windows or by hand, as Mosquitto 2.0 reads them: a UTF-8
 * byte order mark, CRLF, blanks around the line, the user name and the hash. */
static void test_windows_and_blanks(void **st) {
    (void)st;
    char err[256];
    struct auth_passwd *pw =
        parse("\xEF\xBB\xBF" U7 " \t\r\n  # indented comment\r\n\t" U6 "\r\n", err, sizeof(err));
    assert_non_null(pw);
    assert_int_equal(auth_passwd_count(pw), 2);
    assert_true(check(pw, "u7", "pässword 7")); /* not "\xEF\xBB\xBFu7" */
    assert_true(check(pw, "u6", "secret6"));
    assert_null(auth_passwd_problem(pw, 0, NULL));
    auth_passwd_free(pw);
    /* "user : hash": blanks around the colon are not part of either. */
    pw = parse(
        "u6 :\t$6$4JWRgKL/ibmJ2pyc$zeJ797a5Ih0KFpn4f6gjs3g83k67WbaKXsusY5XWYgMZdj4HTq5x4Chr9Qd1w"
        "qF8Vsx8xCBBGAsxKY7lBHbDpQ==\n",
        err, sizeof(err));
    assert_non_null(pw);
    assert_true(check(pw, "u6", "secret6"));
    assert_false(auth_passwd_has_user(pw, "u6 ", 3));
    auth_passwd_free(pw);
    /* A BOM only counts at the very start. */
    pw = parse(U7 "\n\xEF\xBB\xBF" U6 "\n", err, sizeof(err));
    assert_non_null(pw);
    assert_false(auth_passwd_has_user(pw, "u6", 2));
    auth_passwd_free(pw);
}

/* A user given twice: the later line is the password (as Mosquitto), reported. */
static void test_duplicate_user_later_line_wins(void **st) {
    (void)st;
    char err[256];
    struct auth_passwd *pw =
        parse(U7 "\nu7:$6$4JWRgKL/ibmJ2pyc$zeJ797a5Ih0KFpn4f6gjs3g83k67WbaKXsusY5XWYgMZdj4HTq5x4Chr"
                 "9Qd1wqF8Vsx8xCBBGAsxKY7lBHbDpQ==\n",
              err, sizeof(err));
    assert_non_null(pw);
    assert_int_equal(auth_passwd_count(pw), 1);
    assert_true(check(pw, "u7", "secret6"));
    assert_false(check(pw, "u7", "pässword 7")); /* the replaced password no longer works */
    bool error = true;
    assert_string_equal(auth_passwd_problem(pw, 0, &error),
                        "pw:2: user 'u7' appears again; this line replaces line 1");
    assert_false(error);
    auth_passwd_free(pw);
}

static void test_missing_file(void **st) {
    (void)st;
    char err[256];
    assert_null(auth_passwd_load("/nonexistent/hato-pw", err, sizeof(err)));
    assert_string_equal(
        err, "/nonexistent/hato-pw: cannot read password file: No such file or directory");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mosquitto_file),
        cmocka_unit_test(test_blank_line_is_not_a_user),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_windows_and_blanks),
        cmocka_unit_test(test_duplicate_user_later_line_wins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
