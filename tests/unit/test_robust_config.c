/*
 * The robustness directives of hato (issue 7): max_output_buffer and
 * max_topic_levels, their defaults, ranges and error messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"

static int parse(struct hato_config *cfg, const char *text, char *err, size_t len) {
    hato_config_init(cfg);
    err[0] = 0;
    return hato_config_parse_string(cfg, "t.conf", text, err, len);
}

static void test_defaults(void **state) {
    (void)state;
    struct hato_config cfg;
    hato_config_init(&cfg);
    assert_int_equal(cfg.max_output_buffer, 4 << 20);
    assert_int_equal(cfg.max_topic_levels, 201);
    hato_config_free(&cfg);
}

static void test_values(void **state) {
    (void)state;
    struct hato_config cfg;
    char err[256];
    assert_int_equal(parse(&cfg, "max_output_buffer 0\nmax_topic_levels 0\n", err, sizeof err), 0);
    assert_int_equal(cfg.max_output_buffer, 0);
    assert_int_equal(cfg.max_topic_levels, 0);
    hato_config_free(&cfg);
    assert_int_equal(
        parse(&cfg, "max_output_buffer 1073741824\nmax_topic_levels 65536\n", err, sizeof err), 0);
    assert_true(cfg.max_output_buffer == 1073741824LL);
    assert_int_equal(cfg.max_topic_levels, 65536);
    hato_config_free(&cfg);
}

static void test_errors_name_file_and_line(void **state) {
    (void)state;
    struct hato_config cfg;
    char err[256];
    assert_int_equal(parse(&cfg, "# c\nmax_output_buffer -1\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "t.conf:2: max_output_buffer"));
    hato_config_free(&cfg);
    assert_int_equal(parse(&cfg, "max_output_buffer 1073741825\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "t.conf:1: max_output_buffer"));
    hato_config_free(&cfg);
    assert_int_equal(parse(&cfg, "max_topic_levels 65537\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "t.conf:1: max_topic_levels"));
    hato_config_free(&cfg);
    assert_int_equal(parse(&cfg, "max_topic_levels ten\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "t.conf:1:"));
    hato_config_free(&cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors_name_file_and_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
