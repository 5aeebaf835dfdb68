/* test_props.c: unit tests of the `key = value` properties parser (src/common/props.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/props.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fixed environment so tests never depend on the caller's. */
static const char *fake_getenv(const char *name, void *ctx) {
    const char *const *env = ctx;
    for (size_t i = 0; env && env[i]; i += 2)
        if (strcmp(env[i], name) == 0) return env[i + 1];
    return NULL;
}

static const char *const test_env[] = {"HOME_DIR", "/home/pb", "EMPTY", "",  "WITH_SPACE",
                                       "a b",      "CTRL",     "x\ny",  NULL};

/* Parses text with the fake environment into a fresh props; returns the result, errstr in err. */
static int parse(props_t **out, const char *text, size_t len, char *err, size_t err_size) {
    *out = props_new();
    assert_non_null(*out);
    err[0] = '\0';
    return props_parse(*out, text, len, "test.conf", fake_getenv, (void *)test_env, err, err_size);
}

static int parse_str(props_t **out, const char *text, char *err, size_t err_size) {
    return parse(out, text, strlen(text), err, err_size);
}

static const char *value_of(const props_t *p, const char *key) {
    const props_entry_t *e = props_find(p, key);
    return e ? e->value : NULL;
}

/* Expects text to fail with exactly `expect` as the message. */
static void expect_error(const char *text, size_t len, const char *expect) {
    props_t *p;
    char err[512];
    assert_int_equal(parse(&p, text, len, err, sizeof err), -1);
    assert_string_equal(err, expect);
    props_free(p);
}

static void test_props_parse_key_value_whitespace_trimmed(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p, "  a.b-c_D9 \t=\t  some value  \n", err, sizeof err), 0);
    assert_int_equal(props_count(p), 1);
    const props_entry_t *e = props_at(p, 0);
    assert_string_equal(e->key, "a.b-c_D9");
    assert_string_equal(e->value, "some value");
    assert_string_equal(e->file, "test.conf");
    assert_int_equal(e->line, 1);
    props_free(p);
}

static void test_props_parse_comments_and_blank_lines_ignored(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    const char *text = "# comment\n\n   \t\n  # indented comment = not a key\nk = v\n";
    assert_int_equal(parse_str(&p, text, err, sizeof err), 0);
    assert_int_equal(props_count(p), 1);
    assert_int_equal(props_find(p, "k")->line, 5);
    props_free(p);
}

static void test_props_parse_hash_inside_value_kept(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p, "k = a # not a comment\n", err, sizeof err), 0);
    assert_string_equal(value_of(p, "k"), "a # not a comment");
    props_free(p);
}

static void test_props_parse_equals_in_value_kept(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p, "k = a=b==c\nempty =\n", err, sizeof err), 0);
    assert_string_equal(value_of(p, "k"), "a=b==c");
    assert_string_equal(value_of(p, "empty"), "");
    props_free(p);
}

static void test_props_parse_env_expanded(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p, "k = ${HOME_DIR}/x/${WITH_SPACE}\n", err, sizeof err), 0);
    assert_string_equal(value_of(p, "k"), "/home/pb/x/a b");
    props_free(p);
}

static void test_props_parse_env_default_used_when_unset_or_empty(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    const char *text = "a = ${NOPE:-/d/f}\nb = ${EMPTY:-dflt}\nc = ${HOME_DIR:-unused}\nd = ${NOPE:-}\n";
    assert_int_equal(parse_str(&p, text, err, sizeof err), 0);
    assert_string_equal(value_of(p, "a"), "/d/f");
    assert_string_equal(value_of(p, "b"), "dflt");
    assert_string_equal(value_of(p, "c"), "/home/pb");
    assert_string_equal(value_of(p, "d"), "");
    props_free(p);
}

static void test_props_parse_empty_env_without_default_expands_empty(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p, "k = <${EMPTY}>\n", err, sizeof err), 0);
    assert_string_equal(value_of(p, "k"), "<>");
    props_free(p);
}

static void test_props_parse_unset_env_fails_naming_variable(void **state) {
    (void)state;
    const char *t = "a = 1\nk = ${NOT_SET}/x\n";
    expect_error(
        t, strlen(t),
        "test.conf:2: environment variable 'NOT_SET' is not set (write ${NOT_SET:-default} to give a "
        "default)");
}

static void test_props_parse_double_dollar_is_literal(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p, "k = cost $$5 and $${HOME_DIR}\n", err, sizeof err), 0);
    assert_string_equal(value_of(p, "k"), "cost $5 and ${HOME_DIR}");
    props_free(p);
}

static void test_props_parse_lone_dollar_fails(void **state) {
    (void)state;
    expect_error("k = $HOME\n", 10, "test.conf:1: '$' must start ${NAME} or be written '$$'");
    expect_error("k = a$\n", 7, "test.conf:1: '$' must start ${NAME} or be written '$$'");
}

static void test_props_parse_bad_expansion_fails(void **state) {
    (void)state;
    const char *t1 = "k = ${HOME_DIR\n";
    expect_error(t1, strlen(t1), "test.conf:1: unterminated '${'");
    const char *t2 = "k = ${1BAD}\n";
    expect_error(t2, strlen(t2), "test.conf:1: invalid variable name '1BAD' (use [A-Za-z_][A-Za-z0-9_]*)");
    const char *t3 = "k = ${}\n";
    expect_error(t3, strlen(t3), "test.conf:1: invalid variable name '' (use [A-Za-z_][A-Za-z0-9_]*)");
    const char *t4 = "k = ${A:x}\n";
    expect_error(t4, strlen(t4), "test.conf:1: expected ${NAME} or ${NAME:-default}");
    const char *t5 = "k = ${A:-$$}\n";
    expect_error(t5, strlen(t5), "test.conf:1: '$' is not allowed in the default of ${NAME:-default}");
}

static void test_props_parse_env_with_control_char_fails(void **state) {
    (void)state;
    const char *t = "k = ${CTRL}\n";
    expect_error(t, strlen(t), "test.conf:1: environment variable 'CTRL' contains a control character");
}

static void test_props_parse_duplicate_key_fails_naming_both_lines(void **state) {
    (void)state;
    const char *t = "a = 1\nb = 2\n\n# x\nb = 3\n";
    expect_error(t, strlen(t), "test.conf:5: key 'b' given twice (first on line 2)");
}

static void test_props_parse_crlf_line_endings_stripped(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p, "a = 1\r\n# c\r\n\r\nb = two words \r\nc=3\r", err, sizeof err), 0);
    assert_string_equal(value_of(p, "a"), "1");
    assert_string_equal(value_of(p, "b"), "two words");
    assert_string_equal(value_of(p, "c"), "3");
    assert_int_equal(props_find(p, "b")->line, 4);
    props_free(p);
}

static void test_props_parse_bare_cr_fails(void **state) {
    (void)state;
    const char *t = "a = 1\nb = x\ry\n";
    expect_error(t, strlen(t), "test.conf:2: carriage return inside a line (line endings are LF or CRLF)");
}

static void test_props_parse_nul_byte_fails_with_line(void **state) {
    (void)state;
    static const char t[] = "a = 1\n# ok\nb = x\0y\nc = 3\n";
    expect_error(t, sizeof t - 1, "test.conf:3: NUL byte");
    static const char t2[] = "a = 1\n# comment \0 too\n";
    expect_error(t2, sizeof t2 - 1, "test.conf:2: NUL byte");
}

static void test_props_parse_control_char_fails(void **state) {
    (void)state;
    const char *t = "a = \x1b[31m\n";
    expect_error(t, strlen(t), "test.conf:1: control character 0x1b");
}

static void test_props_parse_tab_in_value_kept(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p, "a = x\ty\n", err, sizeof err), 0);
    assert_string_equal(value_of(p, "a"), "x\ty");
    props_free(p);
}

static void test_props_parse_invalid_key_fails(void **state) {
    (void)state;
    const char *t1 = "ok = 1\nbad key = 2\n";
    expect_error(t1, strlen(t1), "test.conf:2: invalid character ' ' in key (keys use A-Z a-z 0-9 . _ -)");
    const char *t2 = "a/b = 2\n";
    expect_error(t2, strlen(t2), "test.conf:1: invalid character '/' in key (keys use A-Z a-z 0-9 . _ -)");
    const char *t3 = "k\xc3\xa9 = 2\n";
    expect_error(t3, strlen(t3), "test.conf:1: invalid byte 0xc3 in key (keys use A-Z a-z 0-9 . _ -)");
    const char *t4 = "  = 2\n";
    expect_error(t4, strlen(t4), "test.conf:1: missing key before '='");
    const char *t5 = "a = 1\njust words\n";
    expect_error(t5, strlen(t5), "test.conf:2: expected 'key = value'");
}

static void test_props_parse_overlong_key_fails(void **state) {
    (void)state;
    char t[300];
    memset(t, 'k', 129);
    strcpy(t + 129, " = v\n");
    expect_error(t, strlen(t), "test.conf:1: key longer than 128 characters");
    t[128] = ' '; /* 128 characters is fine */
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p, t, err, sizeof err), 0);
    props_free(p);
}

static void test_props_parse_over_1mib_fails(void **state) {
    (void)state;
    size_t len = (1u << 20) + 1;
    char *t = malloc(len);
    assert_non_null(t);
    memset(t, '\n', len);
    expect_error(t, len, "test.conf: larger than the 1 MiB limit (1048577 bytes)");
    props_t *p;
    char err[256];
    assert_int_equal(parse(&p, t, len - 1, err, sizeof err), 0); /* exactly 1 MiB is accepted */
    props_free(p);
    free(t);
}

static void test_props_parse_bom_and_missing_final_newline_accepted(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p,
                               "\xEF\xBB\xBF"
                               "a = 1\nb = 2",
                               err, sizeof err),
                     0);
    assert_string_equal(value_of(p, "a"), "1");
    assert_string_equal(value_of(p, "b"), "2");
    props_free(p);
}

static void test_props_parse_null_getenv_reads_environment(void **state) {
    (void)state;
    props_t *p = props_new();
    char err[256];
    assert_int_equal(setenv("PB_TEST_PROPS_VAR", "from-env", 1), 0);
    const char *t = "k = ${PB_TEST_PROPS_VAR}\n";
    assert_int_equal(props_parse(p, t, strlen(t), "x.conf", NULL, NULL, err, sizeof err), 0);
    assert_string_equal(value_of(p, "k"), "from-env");
    unsetenv("PB_TEST_PROPS_VAR");
    props_free(p);
}

static void test_props_parse_keeps_insertion_order(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p, "z = 1\na = 2\nm = 3\n", err, sizeof err), 0);
    assert_int_equal(props_count(p), 3);
    assert_string_equal(props_at(p, 0)->key, "z");
    assert_string_equal(props_at(p, 1)->key, "a");
    assert_string_equal(props_at(p, 2)->key, "m");
    assert_null(props_at(p, 3));
    assert_null(props_find(p, "nope"));
    props_free(p);
}

static void test_props_parse_second_file_replaces_first(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p, "a = 1\nb = 2\n", err, sizeof err), 0);
    const char *t = "b = 20\n";
    assert_int_equal(
        props_parse(p, t, strlen(t), "drop-in.conf", fake_getenv, (void *)test_env, err, sizeof err), 0);
    const props_entry_t *e = props_find(p, "b");
    assert_string_equal(e->value, "20");
    assert_string_equal(e->file, "drop-in.conf");
    assert_int_equal(e->line, 1);
    assert_string_equal(props_at(p, 1)->key, "b");
    props_free(p);
}

static void test_props_override_replaces_value_keeps_position(void **state) {
    (void)state;
    props_t *p;
    char err[256];
    assert_int_equal(parse_str(&p, "a = 1\nb = 2\n", err, sizeof err), 0);
    assert_int_equal(props_set_override(p, " a = ${HOME_DIR} ", "-o", err, sizeof err), 0);
    assert_int_equal(props_set_override(p, "c=new", "-o", err, sizeof err), 0);
    const props_entry_t *e = props_at(p, 0);
    assert_string_equal(e->key, "a");
    assert_string_equal(e->value, "${HOME_DIR}"); /* no expansion */
    assert_string_equal(e->file, "-o");
    assert_int_equal(e->line, 0);
    assert_string_equal(props_at(p, 2)->key, "c");
    assert_string_equal(props_at(p, 2)->value, "new");
    props_free(p);
}

static void test_props_override_malformed_fails(void **state) {
    (void)state;
    props_t *p = props_new();
    char err[256];
    assert_int_equal(props_set_override(p, "novalue", "-o", err, sizeof err), -1);
    assert_string_equal(err, "-o: expected key=value, got 'novalue'");
    assert_int_equal(props_set_override(p, "bad key=1", "-o", err, sizeof err), -1);
    assert_string_equal(err, "-o: invalid character ' ' in key (keys use A-Z a-z 0-9 . _ -)");
    assert_int_equal(props_set_override(p, "=1", "--set", err, sizeof err), -1);
    assert_string_equal(err, "--set: missing key before '='");
    assert_int_equal(props_set_override(p, "k=a\x1b", "-o", err, sizeof err), -1);
    assert_string_equal(err, "-o: key 'k': control character 0x1b in value");
    assert_int_equal(props_count(p), 0);
    props_free(p);
}

static void test_props_set_replaces_value(void **state) {
    (void)state;
    props_t *p = props_new();
    assert_int_equal(props_set(p, "k", "1", "prog", 0), 0);
    assert_int_equal(props_set(p, "k", "2", "prog2", 7), 0);
    assert_int_equal(props_count(p), 1);
    assert_string_equal(value_of(p, "k"), "2");
    assert_string_equal(props_find(p, "k")->file, "prog2");
    assert_int_equal(props_find(p, "k")->line, 7);
    props_free(p);
}

static void test_props_many_keys_all_found(void **state) {
    (void)state;
    props_t *p = props_new();
    char key[32], val[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "key.%d", i);
        snprintf(val, sizeof val, "v%d", i);
        assert_int_equal(props_set(p, key, val, "f", i + 1), 0);
    }
    assert_int_equal(props_count(p), 5000);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "key.%d", i);
        snprintf(val, sizeof val, "v%d", i);
        assert_string_equal(value_of(p, key), val);
        assert_string_equal(props_at(p, (size_t)i)->key, key);
    }
    props_free(p);
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_props_load_file_reads_and_names_file(void **state) {
    (void)state;
    char dir[] = "/tmp/pbprops-XXXXXX", path[128], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/p.conf", dir);
    write_file(path, "a = 1\nb = 2\n", 12);
    props_t *p = props_new();
    assert_int_equal(props_load_file(p, path, err, sizeof err), 0);
    assert_string_equal(props_find(p, "b")->file, path);
    assert_int_equal(props_find(p, "b")->line, 2);
    props_free(p);

    write_file(path, "a = 1\nb c\n", 10);
    p = props_new();
    assert_int_equal(props_load_file(p, path, err, sizeof err), -1);
    char expect[256];
    snprintf(expect, sizeof expect, "%s:2: expected 'key = value'", path);
    assert_string_equal(err, expect);
    props_free(p);
    unlink(path);
    rmdir(dir);
}

static void test_props_load_file_missing_names_path_and_errno(void **state) {
    (void)state;
    props_t *p = props_new();
    char err[512];
    assert_int_equal(props_load_file(p, "/nonexistent/pb.conf", err, sizeof err), -1);
    assert_string_equal(err, "cannot open '/nonexistent/pb.conf': No such file or directory");
    assert_int_equal(props_load_file(p, "/tmp", err, sizeof err), -1);
    assert_string_equal(err, "cannot read '/tmp': Is a directory");
    props_free(p);
}

static void test_props_load_file_over_1mib_fails(void **state) {
    (void)state;
    char dir[] = "/tmp/pbprops-XXXXXX", path[128], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/big.conf", dir);
    size_t len = (1u << 20) + 10;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, '#', len);
    write_file(path, big, len);
    free(big);
    props_t *p = props_new();
    assert_int_equal(props_load_file(p, path, err, sizeof err), -1);
    char expect[256];
    snprintf(expect, sizeof expect, "%s: larger than the 1 MiB limit", path);
    assert_string_equal(err, expect);
    props_free(p);
    unlink(path);
    rmdir(dir);
}

static void test_props_free_null_is_noop(void **state) {
    (void)state;
    props_free(NULL);
    assert_int_equal(props_count(NULL), 0);
    assert_null(props_find(NULL, "a"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_props_parse_key_value_whitespace_trimmed),
        cmocka_unit_test(test_props_parse_comments_and_blank_lines_ignored),
        cmocka_unit_test(test_props_parse_hash_inside_value_kept),
        cmocka_unit_test(test_props_parse_equals_in_value_kept),
        cmocka_unit_test(test_props_parse_env_expanded),
        cmocka_unit_test(test_props_parse_env_default_used_when_unset_or_empty),
        cmocka_unit_test(test_props_parse_empty_env_without_default_expands_empty),
        cmocka_unit_test(test_props_parse_unset_env_fails_naming_variable),
        cmocka_unit_test(test_props_parse_double_dollar_is_literal),
        cmocka_unit_test(test_props_parse_lone_dollar_fails),
        cmocka_unit_test(test_props_parse_bad_expansion_fails),
        cmocka_unit_test(test_props_parse_env_with_control_char_fails),
        cmocka_unit_test(test_props_parse_duplicate_key_fails_naming_both_lines),
        cmocka_unit_test(test_props_parse_crlf_line_endings_stripped),
        cmocka_unit_test(test_props_parse_bare_cr_fails),
        cmocka_unit_test(test_props_parse_nul_byte_fails_with_line),
        cmocka_unit_test(test_props_parse_control_char_fails),
        cmocka_unit_test(test_props_parse_tab_in_value_kept),
        cmocka_unit_test(test_props_parse_invalid_key_fails),
        cmocka_unit_test(test_props_parse_overlong_key_fails),
        cmocka_unit_test(test_props_parse_over_1mib_fails),
        cmocka_unit_test(test_props_parse_bom_and_missing_final_newline_accepted),
        cmocka_unit_test(test_props_parse_null_getenv_reads_environment),
        cmocka_unit_test(test_props_parse_keeps_insertion_order),
        cmocka_unit_test(test_props_parse_second_file_replaces_first),
        cmocka_unit_test(test_props_override_replaces_value_keeps_position),
        cmocka_unit_test(test_props_override_malformed_fails),
        cmocka_unit_test(test_props_set_replaces_value),
        cmocka_unit_test(test_props_many_keys_all_found),
        cmocka_unit_test(test_props_load_file_reads_and_names_file),
        cmocka_unit_test(test_props_load_file_missing_names_path_and_errno),
        cmocka_unit_test(test_props_load_file_over_1mib_fails),
        cmocka_unit_test(test_props_free_null_is_noop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
