/* test_consumer_log.c: unit tests of the log line format shared by predbridged and libpredbridge
 * (src/common/log.c) and of the library's log path (src/lib/logging.c): JSON lines that parse, with
 * their event and fields, levels, librdkafka lines and redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/log.h"
#include "lib/lib_internal.h"

#include <jansson.h>
#include <string.h>
#include <unistd.h>

/* Parses a line (with or without its newline) as one JSON object, failing the test otherwise. */
static json_t *parse_line(const char *line) {
    json_error_t je;
    json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) fail_msg("not a JSON object (%s): %s", je.text, line);
    return o;
}

static const char *str(json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

static void test_log_json_line_has_time_level_event_fields_and_msg(void **state) {
    (void)state;
    char line[1024];
    pblog_field_t f[] = {{.key = "topic", .str = "predictions"}, {.key = "offset", .num = 42}};
    size_t n = pblog_format(line, sizeof line, PBLOG_JSON, PBLOG_WARN, "libpredbridge", "record.skipped", f,
                            2, "not a valid prediction");
    assert_int_equal(n, strlen(line));
    assert_int_equal(line[n - 1], '\n');
    json_t *o = parse_line(line);
    assert_string_equal(str(o, "level"), "warn");
    assert_string_equal(str(o, "program"), "libpredbridge");
    assert_string_equal(str(o, "event"), "record.skipped");
    assert_string_equal(str(o, "topic"), "predictions");
    assert_int_equal(json_integer_value(json_object_get(o, "offset")), 42);
    assert_string_equal(str(o, "msg"), "not a valid prediction");
    const char *t = str(o, "time"); /* RFC 3339, UTC, milliseconds */
    assert_non_null(t);
    assert_int_equal(strlen(t), strlen("2026-01-31T12:00:00.123Z"));
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[23], 'Z');
    json_decref(o);
}

static void test_log_json_escapes_quotes_controls_and_invalid_utf8(void **state) {
    (void)state;
    char line[1024];
    const char *msg =
        "a \"quoted\" back\\slash, new\nline, tab\t, bell\a, bad \xff\xfe, ok \xc3\xa9 \xe2\x82\xac";
    pblog_field_t f[] = {{.key = "we\"ird", .str = "v\x01"}};
    pblog_format(line, sizeof line, PBLOG_JSON, PBLOG_INFO, "p", "e\n", f, 1, msg);
    assert_null(memchr(line, '\n', strlen(line) - 1)); /* one line: the only newline ends it */
    json_t *o = parse_line(line);
    assert_string_equal(str(o, "msg"),
                        "a \"quoted\" back\\slash, new\nline, tab\t, bell\a, bad \xef\xbf\xbd\xef\xbf\xbd, "
                        "ok \xc3\xa9 \xe2\x82\xac");
    assert_string_equal(str(o, "we\"ird"), "v\x01");
    assert_string_equal(str(o, "event"), "e\n");
    json_decref(o);
}

/* What `predbridge check` gives jansson: a path with a 0xFF byte must become a string, not NULL. */
static void test_log_utf8_clean_replaces_invalid_bytes_and_cuts_whole_characters(void **state) {
    (void)state;
    char out[64];
    const char *path = "/etc/pb\xff/client.crt \xc3\xa9 \xed\xa0\x80 \xe2\x82";
    assert_null(json_string(path)); /* the failure being avoided */
    pblog_utf8_clean(out, sizeof out, path);
    assert_string_equal(out, "/etc/pb\xef\xbf\xbd/client.crt \xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
                             "\xef\xbf\xbd\xef\xbf\xbd");
    json_t *j = json_string(out);
    assert_non_null(j);
    json_decref(j);
    /* Room for "ab" and part of "\xc3\xa9": the character is left out whole, not split. */
    pblog_utf8_clean(out, 4, "ab\xc3\xa9");
    assert_string_equal(out, "ab");
    pblog_utf8_clean(out, 1, "ab");
    assert_string_equal(out, "");
}

static void test_log_json_overlong_message_is_cut_and_stays_valid(void **state) {
    (void)state;
    char msg[3000], line[256];
    /* Two-byte characters, so a cut in the middle of one would break the UTF-8. */
    for (size_t i = 0; i + 2 < sizeof msg; i += 2)
        memcpy(msg + i, "\xc3\xa9", 2);
    msg[sizeof msg - 2] = '\0';
    pblog_field_t f[] = {{.key = "facility", .str = "FETCH"}};
    for (size_t cap = 64; cap <= sizeof line; cap += 7) {
        size_t n = pblog_format(line, cap, PBLOG_JSON, PBLOG_DEBUG, "libpredbridge", "kafka.log", f, 1, msg);
        assert_true(n > 0 && n < cap);
        json_t *o = parse_line(line);
        if (cap >= 200) {
            assert_string_equal(str(o, "event"), "kafka.log");
            assert_string_equal(str(o, "facility"), "FETCH");
            assert_non_null(str(o, "msg"));
        }
        json_decref(o);
    }
    assert_int_equal(pblog_format(line, 63, PBLOG_JSON, PBLOG_INFO, "p", "e", NULL, 0, "m"), 0);
}

static void test_log_text_line_is_the_daemon_format_with_fields(void **state) {
    (void)state;
    char line[512], want[128];
    pblog_field_t f[] = {{.key = "topic", .str = "t"}, {.key = "partition", .num = 3}};
    size_t n = pblog_format(line, sizeof line, PBLOG_TEXT, PBLOG_ERROR, "libpredbridge", "consumer.error", f,
                            2, "broker unreachable");
    assert_int_equal(line[n - 1], '\n');
    snprintf(want, sizeof want,
             " error libpredbridge[%d] consumer.error: broker unreachable topic=t partition=3\n",
             (int)getpid());
    assert_non_null(strstr(line, want));
    /* Cut, it still ends with its newline. */
    n = pblog_format(line, 80, PBLOG_TEXT, PBLOG_ERROR, "p", "e", f, 2,
                     "a long message that does not fit into the eighty bytes given to the formatter at all");
    assert_true(n < 80);
    assert_int_equal(line[n - 1], '\n');
}

/* ---- the library's path: level filter, callback, librdkafka lines ---- */

typedef struct captured {
    int n;
    pb_log_level_t level[8];
    char event[8][64], line[8][1024];
} captured_t;

static void capture(pb_log_level_t level, const char *event, const char *line, void *opaque) {
    captured_t *c = opaque;
    if (c->n >= 8) return;
    c->level[c->n] = level;
    snprintf(c->event[c->n], sizeof c->event[0], "%s", event);
    snprintf(c->line[c->n], sizeof c->line[0], "%s", line);
    c->n++;
}

static void test_lib_log_filters_by_level_and_hands_lines_without_newline(void **state) {
    (void)state;
    captured_t got = {0};
    pblib_log_t l = {.fn = capture, .opaque = &got, .level = PBLOG_INFO, .format = PBLOG_JSON};
    pblog_field_t f[] = {{.key = "group", .str = "fraud"}};
    pblib_log(&l, PBLOG_DEBUG, "record.duplicate", NULL, 0, "hidden");
    pblib_log(&l, PBLOG_INFO, "consumer.started", f, 1, "subscribed to %d topic(s)", 2);
    pblib_log(&l, PBLOG_ERROR, "consumer.error", NULL, 0, "bad");
    assert_int_equal(got.n, 2);
    assert_int_equal(got.level[0], PB_LOG_INFO);
    assert_string_equal(got.event[0], "consumer.started");
    assert_null(strchr(got.line[0], '\n'));
    json_t *o = parse_line(got.line[0]);
    assert_string_equal(str(o, "event"), "consumer.started");
    assert_string_equal(str(o, "group"), "fraud");
    assert_string_equal(str(o, "msg"), "subscribed to 2 topic(s)");
    json_decref(o);
    assert_int_equal(got.level[1], PB_LOG_ERROR);
    /* No function: nothing happens, nothing is formatted. */
    pblib_log_t none = {.level = PBLOG_DEBUG};
    assert_false(pblib_log_on(&none, PBLOG_ERROR));
    pblib_log(&none, PBLOG_ERROR, "consumer.error", NULL, 0, "x");
}

static void test_lib_log_kafka_lines_map_syslog_levels_and_name_the_facility(void **state) {
    (void)state;
    assert_int_equal(pblib_kafka_level(0), PBLOG_ERROR);
    assert_int_equal(pblib_kafka_level(3), PBLOG_ERROR);
    assert_int_equal(pblib_kafka_level(4), PBLOG_WARN);
    assert_int_equal(pblib_kafka_level(5), PBLOG_INFO);
    assert_int_equal(pblib_kafka_level(6), PBLOG_INFO);
    assert_int_equal(pblib_kafka_level(7), PBLOG_DEBUG);
    captured_t got = {0};
    pblib_log_t l = {.fn = capture, .opaque = &got, .level = PBLOG_WARN, .format = PBLOG_JSON};
    pblib_log_kafka(&l, 7, "FETCH", "fetching");            /* below warn: dropped */
    pblib_log_kafka(&l, 4, "CONFWARN", "property ignored"); /* warn */
    assert_int_equal(got.n, 1);
    assert_string_equal(got.event[0], "kafka.log");
    json_t *o = parse_line(got.line[0]);
    assert_string_equal(str(o, "level"), "warn");
    assert_string_equal(str(o, "facility"), "CONFWARN");
    assert_string_equal(str(o, "msg"), "property ignored");
    json_decref(o);
}

static void test_lib_log_redacts_what_follows_a_secret_word(void **state) {
    (void)state;
    char t1[128] = "Client config: ssl.key.password = hunter2, client.id = x";
    pblib_redact(t1, sizeof t1);
    assert_string_equal(t1, "Client config: ssl.key.password=[redacted]");
    char t2[128] = "loaded PRIVATE KEY MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
    pblib_redact(t2, sizeof t2);
    assert_string_equal(t2, "loaded PRIVATE KEY=[redacted]");
    char t3[128] = "Broker is up";
    pblib_redact(t3, sizeof t3);
    assert_string_equal(t3, "Broker is up");
    char t4[20] = "passphrase: abcdefg"; /* no room for the mark: still cut */
    pblib_redact(t4, sizeof t4);
    assert_null(strstr(t4, "abc"));
    captured_t got = {0};
    pblib_log_t l = {.fn = capture, .opaque = &got, .level = PBLOG_DEBUG, .format = PBLOG_TEXT};
    pblib_log_kafka(&l, 7, "CONF", "sasl.password=topsecret");
    assert_int_equal(got.n, 1);
    assert_null(strstr(got.line[0], "topsecret"));
    assert_non_null(strstr(got.line[0], "kafka.log: sasl.password=[redacted] facility=CONF"));
}

static void test_log_limit_allows_per_second_and_counts_the_rest(void **state) {
    (void)state;
    pblog_limit_t l = {0};
    unsigned dropped, allowed = 0;
    for (int i = 0; i < 25; i++) {
        allowed += (unsigned)pblog_limit_allow(&l, 1000, 10, &dropped);
        assert_int_equal(dropped, 0);
    }
    assert_int_equal(allowed, 10);
    /* The next second reports the 15 dropped ones once, and allows again. */
    assert_int_equal(pblog_limit_allow(&l, 1001, 10, &dropped), 1);
    assert_int_equal(dropped, 15);
    assert_int_equal(pblog_limit_allow(&l, 1001, 10, &dropped), 1);
    assert_int_equal(dropped, 0);
}

/* A quiet second after a burst: the periodic tick gets the count, once, without a new event. */
static void test_log_limit_flush_reports_a_finished_seconds_suppressed_count_once(void **state) {
    (void)state;
    pblog_limit_t l = {0};
    unsigned dropped;
    for (int i = 0; i < 13; i++) (void)pblog_limit_allow(&l, 1000, 10, &dropped);
    assert_int_equal(pblog_limit_flush(&l, 1000), 0); /* the second is not over: more may come */
    assert_int_equal(pblog_limit_flush(&l, 1001), 3);
    assert_int_equal(pblog_limit_flush(&l, 1002), 0); /* said once */
    /* Nor again by the next allowed line, which still finds its own second's budget. */
    assert_int_equal(pblog_limit_allow(&l, 1002, 10, &dropped), 1);
    assert_int_equal(dropped, 0);
    for (int i = 0; i < 11; i++) (void)pblog_limit_allow(&l, 1002, 10, &dropped);
    assert_int_equal(pblog_limit_allow(&l, 1003, 10, &dropped), 1); /* an event first: it reports */
    assert_int_equal(dropped, 2);
    assert_int_equal(pblog_limit_flush(&l, 1004), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_limit_flush_reports_a_finished_seconds_suppressed_count_once),
        cmocka_unit_test(test_log_json_line_has_time_level_event_fields_and_msg),
        cmocka_unit_test(test_log_json_escapes_quotes_controls_and_invalid_utf8),
        cmocka_unit_test(test_log_utf8_clean_replaces_invalid_bytes_and_cuts_whole_characters),
        cmocka_unit_test(test_log_json_overlong_message_is_cut_and_stays_valid),
        cmocka_unit_test(test_log_limit_allows_per_second_and_counts_the_rest),
        cmocka_unit_test(test_log_text_line_is_the_daemon_format_with_fields),
        cmocka_unit_test(test_lib_log_filters_by_level_and_hands_lines_without_newline),
        cmocka_unit_test(test_lib_log_kafka_lines_map_syslog_levels_and_name_the_facility),
        cmocka_unit_test(test_lib_log_redacts_what_follows_a_secret_word),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
