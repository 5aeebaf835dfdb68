/* test_message.c: unit tests of the pb_message_t view (src/lib/message.c) over a Kafka message's parts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "lib/lib_internal.h"

#include <predbridge/message.h>

#include <string.h>

static void test_message_view_returns_every_part(void **state) {
    (void)state;
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
    rd_kafka_header_add(h, "pb-id", -1, "0b6f3c1e-8a1d-4c6e-9d2a-1f2e3d4c5b6a", -1);
    rd_kafka_header_add(h, "pb-producer", -1, "predbridged", -1);
    const char *raw = "{\"model_version\":\"fraud-v7\",\"prediction\":0.5}";
    json_t *j = json_loads(raw, 0, NULL);
    struct pb_message m;
    pbmsg_fill(&m, "predictions", 2, 41, 1700000000123, raw, strlen(raw), "k1", 2, h, j, 1);

    assert_ptr_equal(pb_message_json(&m), j);
    assert_string_equal(pb_message_model_version(&m), "fraud-v7");
    assert_string_equal(pb_message_id(&m), "0b6f3c1e-8a1d-4c6e-9d2a-1f2e3d4c5b6a");
    assert_string_equal(pb_message_producer(&m), "predbridged");
    assert_int_equal(pb_message_timestamp_ms(&m), 1700000000123);
    assert_string_equal(pb_message_topic(&m), "predictions");
    assert_int_equal(pb_message_partition(&m), 2);
    assert_int_equal(pb_message_offset(&m), 41);
    size_t len = 0;
    assert_ptr_equal(pb_message_value(&m, &len), raw);
    assert_int_equal(len, strlen(raw));
    assert_memory_equal(pb_message_key(&m, &len), "k1", 2);
    assert_int_equal(len, 2);

    assert_int_equal(pb_message_header_count(&m), 3);
    const char *name;
    const void *v;
    size_t vs;
    assert_int_equal(pb_message_header_at(&m, 0, &name, &v, &vs), PB_OK);
    assert_string_equal(name, "content-type");
    assert_memory_equal(v, "application/json", vs);
    assert_int_equal(pb_message_header_at(&m, 3, &name, &v, &vs), PB_ERR_NOT_FOUND);
    assert_int_equal(pb_message_header_get(&m, "pb-producer", &v, &vs), PB_OK);
    assert_int_equal(vs, strlen("predbridged"));
    assert_int_equal(pb_message_header_get(&m, "pb-nope", &v, &vs), PB_ERR_NOT_FOUND);

    json_decref(j);
    rd_kafka_headers_destroy(h);
}

static void test_message_view_without_headers_key_or_json(void **state) {
    (void)state;
    struct pb_message m;
    pbmsg_fill(&m, "t", 0, 7, -1, "not json", 8, NULL, 0, NULL, NULL, 0);
    assert_null(pb_message_json(&m));
    assert_null(pb_message_model_version(&m));
    assert_null(pb_message_id(&m));
    assert_null(pb_message_producer(&m));
    assert_int_equal(pb_message_timestamp_ms(&m), -1);
    size_t len = 99;
    assert_null(pb_message_key(&m, &len));
    assert_int_equal(len, 0);
    assert_int_equal(pb_message_header_count(&m), 0);
    assert_int_equal(pb_message_header_get(&m, "pb-id", NULL, NULL), PB_ERR_NOT_FOUND);
}

static void test_message_header_with_nul_or_too_long_is_not_a_string(void **state) {
    (void)state;
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "pb-id", -1, "ab\0cd", 5);
    char longp[400];
    memset(longp, 'p', sizeof longp);
    rd_kafka_header_add(h, "pb-producer", -1, longp, sizeof longp);
    struct pb_message m;
    pbmsg_fill(&m, "t", 0, 0, 0, "{}", 2, NULL, 0, h, NULL, 1);
    assert_null(pb_message_id(&m));
    assert_null(pb_message_producer(&m));
    /* The raw header is still there for whoever wants the bytes. */
    const void *v;
    size_t vs;
    assert_int_equal(pb_message_header_get(&m, "pb-id", &v, &vs), PB_OK);
    assert_int_equal(vs, 5);
    rd_kafka_headers_destroy(h);
}

static void test_message_last_header_of_a_name_wins(void **state) {
    (void)state;
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "pb-id", -1, "first", -1);
    rd_kafka_header_add(h, "pb-id", -1, "second", -1);
    struct pb_message m;
    pbmsg_fill(&m, "t", 0, 0, 0, "{}", 2, NULL, 0, h, NULL, 1);
    assert_string_equal(pb_message_id(&m), "second");
    rd_kafka_headers_destroy(h);
}

static void test_message_accessors_accept_null(void **state) {
    (void)state;
    size_t len = 5;
    assert_null(pb_message_json(NULL));
    assert_null(pb_message_topic(NULL));
    assert_null(pb_message_id(NULL));
    assert_int_equal(pb_message_partition(NULL), -1);
    assert_int_equal(pb_message_offset(NULL), -1);
    assert_int_equal(pb_message_timestamp_ms(NULL), -1);
    assert_null(pb_message_value(NULL, &len));
    assert_int_equal(len, 0);
    assert_int_equal(pb_message_header_count(NULL), 0);
    assert_int_equal(pb_message_header_at(NULL, 0, NULL, NULL, NULL), PB_ERR_NOT_FOUND);
}

static void test_message_json_is_parsed_lazily_once(void **state) {
    (void)state;
    const char *raw = "{\"model_version\":\"m\",\"prediction\":[1,2]}";
    struct pb_message m;
    pbmsg_fill(&m, "t", 0, 0, 0, raw, strlen(raw), NULL, 0, NULL, NULL, 1);
    assert_null(m.json); /* nothing parsed until asked */
    const json_t *j = pb_message_json(&m);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "prediction")), 2);
    assert_ptr_equal(pb_message_json(&m), j); /* parsed once */
    assert_string_equal(pb_message_model_version(&m), "m");
    json_decref(m.json);
}

static void test_message_model_version_from_validation_needs_no_parse(void **state) {
    (void)state;
    struct pb_message m;
    pbmsg_fill(&m, "t", 0, 0, 0, "{\"model_version\":\"v9\",\"prediction\":1}", 37, NULL, 0, NULL, NULL, 1);
    memcpy(m.model_version, "v9", 3);
    assert_string_equal(pb_message_model_version(&m), "v9");
    assert_null(m.json);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_view_returns_every_part),
        cmocka_unit_test(test_message_view_without_headers_key_or_json),
        cmocka_unit_test(test_message_json_is_parsed_lazily_once),
        cmocka_unit_test(test_message_model_version_from_validation_needs_no_parse),
        cmocka_unit_test(test_message_header_with_nul_or_too_long_is_not_a_string),
        cmocka_unit_test(test_message_last_header_of_a_name_wins),
        cmocka_unit_test(test_message_accessors_accept_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
