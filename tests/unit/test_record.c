/* test_record.c: unit tests of record validation, time handling, ids and the envelope (common/record.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/record.h"

static const char *const required_default[] = {"model_version", "prediction"};
#define N_REQ (sizeof required_default / sizeof required_default[0])
#define S_NULL_MV "{\"model_version\":null,\"prediction\":1}"

/* Validates a string literal (length from sizeof, so embedded NULs count) with the default fields. */
#define VALIDATE(lit, outp, reason)                                                                          \
    pbrec_validate(lit, sizeof(lit) - 1, required_default, N_REQ, outp, reason, sizeof reason)

static void assert_status(pbrec_status_t want, const char *data, size_t len, const char *reason_part) {
    json_t *obj = (json_t *)0x1;
    char reason[256];
    pbrec_status_t st = pbrec_validate(data, len, required_default, N_REQ, &obj, reason, sizeof reason);
    if (st != want)
        print_error("status %s, want %s (reason: %s)\n", pbrec_status_name(st), pbrec_status_name(want),
                    reason);
    assert_int_equal(st, want);
    if (want == PBREC_OK) {
        assert_non_null(obj);
        json_decref(obj);
        return;
    }
    assert_null(obj);
    assert_true(strlen(reason) > 0);
    if (reason_part && !strstr(reason, reason_part)) {
        print_error("reason '%s' lacks '%s'\n", reason, reason_part);
        fail();
    }
}
#define ASSERT_STATUS(want, lit, part) assert_status(want, lit, sizeof(lit) - 1, part)

/* ---- status names ---- */

static void test_record_status_names_are_stable(void **state) {
    (void)state;
    assert_string_equal(pbrec_status_name(PBREC_OK), "ok");
    assert_string_equal(pbrec_status_name(PBREC_NOT_JSON), "not_json");
    assert_string_equal(pbrec_status_name(PBREC_NOT_OBJECT), "not_object");
    assert_string_equal(pbrec_status_name(PBREC_INVALID_UTF8), "invalid_utf8");
    assert_string_equal(pbrec_status_name(PBREC_MISSING_FIELD), "missing_field");
    assert_string_equal(pbrec_status_name(PBREC_BAD_FIELD), "bad_field");
    assert_string_equal(pbrec_status_name(PBREC_TOO_LARGE), "too_large");
    assert_string_equal(pbrec_status_name((pbrec_status_t)99), "unknown");
}

/* ---- validate ---- */

static void test_record_valid_object_returns_parsed_object(void **state) {
    (void)state;
    json_t *obj = NULL;
    char reason[128] = "untouched";
    pbrec_status_t st =
        VALIDATE("{\"model_version\":\"v3\",\"prediction\":{\"score\":0.93},\"id\":\"r1\"}", &obj, reason);
    assert_int_equal(st, PBREC_OK);
    assert_non_null(obj);
    assert_string_equal(json_string_value(json_object_get(obj, "model_version")), "v3");
    assert_true(json_is_object(json_object_get(obj, "prediction")));
    assert_string_equal(reason, "");
    json_decref(obj);
}

static void test_record_prediction_of_any_non_null_type_accepted(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_OK, "{\"model_version\":\"v\",\"prediction\":0}", NULL);
    ASSERT_STATUS(PBREC_OK, "{\"model_version\":\"v\",\"prediction\":false}", NULL);
    ASSERT_STATUS(PBREC_OK, "{\"model_version\":\"v\",\"prediction\":[]}", NULL);
    ASSERT_STATUS(PBREC_OK, " {\"model_version\":\"v\",\"prediction\":\"\"} \r\t", NULL);
}

static void test_record_no_required_fields_accepts_any_object(void **state) {
    (void)state;
    json_t *obj = NULL;
    char reason[64];
    assert_int_equal(pbrec_validate("{}", 2, NULL, 0, &obj, reason, sizeof reason), PBREC_OK);
    json_decref(obj);
}

static void test_record_trailing_garbage_not_json_with_column(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_NOT_JSON, "{\"a\":1}x", "column 8");
    ASSERT_STATUS(PBREC_NOT_JSON, "{\"a\":1}{\"b\":2}", "column");
}

static void test_record_truncated_or_empty_not_json(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_NOT_JSON, "{\"a\":1", "end of input");
    ASSERT_STATUS(PBREC_NOT_JSON, "", NULL);
    ASSERT_STATUS(PBREC_NOT_JSON, "   ", NULL);
    ASSERT_STATUS(PBREC_NOT_JSON, "{\"a\":01}", NULL);
}

static void test_record_duplicate_key_not_json(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_NOT_JSON, "{\"model_version\":\"a\",\"prediction\":1,\"model_version\":\"b\"}",
                  "duplicate object key");
}

static void test_record_nul_escape_not_json(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_NOT_JSON, "{\"model_version\":\"v\",\"prediction\":\"a\\u0000b\"}", "\\u0000");
}

static void test_record_number_out_of_range_not_json(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_NOT_JSON, "{\"model_version\":\"v\",\"prediction\":1e400}", "number out of range");
    ASSERT_STATUS(PBREC_NOT_JSON, "{\"model_version\":\"v\",\"prediction\":99999999999999999999}",
                  "number out of range");
}

static void test_record_nul_in_key_not_json(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_NOT_JSON, "{\"model_version\":\"v\",\"prediction\":1,\"a\\u0000b\":1}", "object key");
}

static void test_record_reason_never_quotes_payload(void **state) {
    (void)state;
    char reason[256];
    json_t *obj;
    /* jansson's own message would be "invalid token near 'hunter2secret'". */
    assert_int_equal(VALIDATE("{\"password\": hunter2secret}", &obj, reason), PBREC_NOT_JSON);
    assert_null(strstr(reason, "hunter2"));
    assert_non_null(strstr(reason, "column"));
    assert_int_equal(VALIDATE("{\"hunter2key\":1,\"hunter2key\":2}", &obj, reason), PBREC_NOT_JSON);
    assert_null(strstr(reason, "hunter2"));
    assert_int_equal(
        VALIDATE("{\"model_version\":\"v\",\"prediction\":1,\"timestamp\":\"hunter2\"}", &obj, reason),
        PBREC_BAD_FIELD);
    assert_null(strstr(reason, "hunter2"));
}

static void test_record_multiline_error_names_line(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_NOT_JSON, "{\n\"a\":\n1,,}", "line 3");
}

static void test_record_deep_nesting_not_json(void **state) {
    (void)state;
    enum { DEPTH = 5000 };
    char *s = malloc(2 * DEPTH);
    assert_non_null(s);
    memset(s, '[', DEPTH);
    memset(s + DEPTH, ']', DEPTH);
    assert_status(PBREC_NOT_JSON, s, 2 * DEPTH, "nesting too deep");
    free(s);
}

static void test_record_top_level_non_object_not_object(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_NOT_OBJECT, "[{\"model_version\":\"v\",\"prediction\":1}]", "array");
    ASSERT_STATUS(PBREC_NOT_OBJECT, "42", "integer");
    ASSERT_STATUS(PBREC_NOT_OBJECT, "-1.5e3", "a number");
    ASSERT_STATUS(PBREC_NOT_OBJECT, "\"text\"", "string");
    ASSERT_STATUS(PBREC_NOT_OBJECT, "null", "null");
    ASSERT_STATUS(PBREC_NOT_OBJECT, "true", "boolean");
}

static void test_record_invalid_utf8_classified_with_offset(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_INVALID_UTF8, "{\"model_version\":\"v\xff\"}", "byte offset 19");
    ASSERT_STATUS(PBREC_INVALID_UTF8, "{\"a\":\"\xc0\xaf\"}", "offset 6");          /* overlong '/' */
    ASSERT_STATUS(PBREC_INVALID_UTF8, "{\"a\":\"\xed\xa0\x80\"}", "offset 6");      /* surrogate */
    ASSERT_STATUS(PBREC_INVALID_UTF8, "{\"a\":\"\xe0\x80\xaf\"}", "byte offset 6"); /* overlong, 3 bytes */
    ASSERT_STATUS(PBREC_INVALID_UTF8, "{\"a\":\"\xf0\x80\x80\xaf\"}",
                  "byte offset 6");                                                /* overlong, 4 bytes */
    ASSERT_STATUS(PBREC_INVALID_UTF8, "{\"a\":\"\xf4\x90\x80\x80\"}", "offset 6"); /* > U+10FFFF */
    ASSERT_STATUS(PBREC_INVALID_UTF8, "{\"a\":\"\xe2\x82\"}", "offset 6");         /* truncated */
    ASSERT_STATUS(PBREC_INVALID_UTF8, "{\"a\":1}\xe2", "offset 7");                /* cut at the end */
    /* Even when the JSON is also broken, bad bytes are what is reported. */
    ASSERT_STATUS(PBREC_INVALID_UTF8, "{\"a\":,\"\x80\"}", "offset 7");
}

static void test_record_valid_multibyte_utf8_accepted(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_OK, "{\"model_version\":\"v\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",\"prediction\":1}",
                  NULL);
    ASSERT_STATUS(PBREC_OK, "{\"model_version\":\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\",\"prediction\":1}", NULL);
}

static void test_record_required_field_absent_missing_field(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_MISSING_FIELD, "{\"model_version\":\"v\"}", "missing required field 'prediction'");
    ASSERT_STATUS(PBREC_MISSING_FIELD, "{\"prediction\":1}", "'model_version'");
}

static void test_record_required_field_null_missing_field(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_MISSING_FIELD, "{\"model_version\":\"v\",\"prediction\":null}", "'prediction'");
}

static void test_record_custom_required_list_applied(void **state) {
    (void)state;
    const char *const req[] = {"request_id"};
    json_t *obj;
    char reason[128];
    assert_int_equal(pbrec_validate("{\"prediction\":1}", 16, req, 1, &obj, reason, sizeof reason),
                     PBREC_MISSING_FIELD);
    assert_non_null(strstr(reason, "'request_id'"));
}

static void test_record_model_version_wrong_type_bad_field(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_BAD_FIELD, "{\"model_version\":3,\"prediction\":1}", "'model_version'");
    ASSERT_STATUS(PBREC_BAD_FIELD, "{\"model_version\":\"\",\"prediction\":1}", "non-empty string");
    /* Optional (not required) but present: must still be a non-empty string. */
    const char *const req[] = {"prediction"};
    json_t *obj;
    char reason[128];
    assert_int_equal(pbrec_validate(S_NULL_MV, sizeof S_NULL_MV - 1, req, 1, &obj, reason, sizeof reason),
                     PBREC_BAD_FIELD);
    assert_int_equal(pbrec_validate("{\"prediction\":1}", 16, req, 1, &obj, reason, sizeof reason), PBREC_OK);
    json_decref(obj);
}

static void test_record_timestamp_valid_forms_accepted(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_OK,
                  "{\"model_version\":\"v\",\"prediction\":1,\"timestamp\":\"2026-01-02T03:04:05Z\"}", NULL);
    ASSERT_STATUS(
        PBREC_OK,
        "{\"model_version\":\"v\",\"prediction\":1,\"timestamp\":\"2026-01-02t03:04:05.123456+05:30\"}",
        NULL);
}

static void test_record_timestamp_invalid_bad_field(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_BAD_FIELD, "{\"model_version\":\"v\",\"prediction\":1,\"timestamp\":1700000000}",
                  "field 'timestamp'");
    ASSERT_STATUS(PBREC_BAD_FIELD,
                  "{\"model_version\":\"v\",\"prediction\":1,\"timestamp\":\"2023-02-29T00:00:00Z\"}",
                  "'timestamp'");
    ASSERT_STATUS(PBREC_BAD_FIELD, "{\"model_version\":\"v\",\"prediction\":1,\"timestamp\":\"yesterday\"}",
                  "'timestamp'");
    ASSERT_STATUS(PBREC_BAD_FIELD, "{\"model_version\":\"v\",\"prediction\":1,\"timestamp\":null}",
                  "'timestamp'");
}

static void test_record_timestamp_before_epoch_bad_field(void **state) {
    (void)state;
    ASSERT_STATUS(PBREC_BAD_FIELD,
                  "{\"model_version\":\"v\",\"prediction\":1,\"timestamp\":\"1969-12-31T23:59:59Z\"}",
                  "before 1970");
    ASSERT_STATUS(PBREC_OK,
                  "{\"model_version\":\"v\",\"prediction\":1,\"timestamp\":\"1970-01-01T01:00:00+01:00\"}",
                  NULL);
}

static void test_record_null_reason_buffer_tolerated(void **state) {
    (void)state;
    json_t *obj;
    assert_int_equal(pbrec_validate("[]", 2, NULL, 0, &obj, NULL, 0), PBREC_NOT_OBJECT);
    assert_null(obj);
}

/* ---- time ---- */

static void assert_parse(const char *s, int64_t want_ms) {
    int64_t ms = -12345;
    if (pbrec_parse_time(s, &ms) != 0) {
        print_error("parse failed: %s\n", s ? s : "(null)");
        fail();
    }
    assert_int_equal(ms, want_ms);
}

static void assert_parse_fails(const char *s) {
    int64_t ms = 77;
    if (pbrec_parse_time(s, &ms) == 0) {
        print_error("parse accepted: %s\n", s ? s : "(null)");
        fail();
    }
}

static void test_record_parse_time_valid_exact_ms(void **state) {
    (void)state;
    assert_parse("1970-01-01T00:00:00Z", 0);
    assert_parse("1970-01-01t00:00:00z", 0);
    assert_parse("1970-01-01T00:00:00.001Z", 1);
    assert_parse("1970-01-01T00:00:00.5Z", 500);
    assert_parse("1970-01-01T00:00:00.123999999Z", 123); /* truncated, not rounded */
    assert_parse("2024-02-29T12:34:56.789Z", 1709210096789LL);
    assert_parse("2023-12-31T23:59:59.999Z", 1704067199999LL);
    assert_parse("2024-01-01T01:00:00+01:00", 1704067200000LL);
    assert_parse("2023-12-31T18:30:00-05:30", 1704067200000LL);
    assert_parse("2000-02-29T00:00:00Z", 951782400000LL); /* divisible by 400: leap */
    assert_parse("1969-12-31T23:59:59Z", -1000);
    assert_parse("9999-12-31T23:59:59.999Z", 253402300799999LL);
}

static void test_record_parse_time_invalid_rejected(void **state) {
    (void)state;
    assert_parse_fails("");
    assert_parse_fails("2024-01-01T00:00:00");  /* no offset */
    assert_parse_fails("2024-01-01 00:00:00Z"); /* space separator */
    assert_parse_fails("2024-01-01T00:00Z");    /* no seconds */
    assert_parse_fails("24-01-01T00:00:00Z");   /* two-digit year */
    assert_parse_fails("2024-1-01T00:00:00Z");
    assert_parse_fails("2024-13-01T00:00:00Z");
    assert_parse_fails("2024-00-01T00:00:00Z");
    assert_parse_fails("2024-01-00T00:00:00Z");
    assert_parse_fails("2024-04-31T00:00:00Z");
    assert_parse_fails("2023-02-29T00:00:00Z"); /* not a leap year */
    assert_parse_fails("1900-02-29T00:00:00Z"); /* century, not leap */
    assert_parse_fails("2024-01-01T24:00:00Z");
    assert_parse_fails("2024-01-01T00:60:00Z");
    assert_parse_fails("2016-12-31T23:59:60Z");  /* leap second: refused by design */
    assert_parse_fails("2024-01-01T00:00:00.Z"); /* empty fraction */
    assert_parse_fails("2024-01-01T00:00:00+24:00");
    assert_parse_fails("2024-01-01T00:00:00+01:60");
    assert_parse_fails("2024-01-01T00:00:00+0100");
    assert_parse_fails("2024-01-01T00:00:00Zjunk");
    assert_parse_fails("2024-01-01T00:00:00ZZ");
    assert_parse_fails("+024-01-01T00:00:00Z");
    assert_parse_fails(NULL);
}

static void assert_format(int64_t ns, const char *want) {
    char out[32];
    memset(out, 'x', sizeof out);
    pbrec_format_time(ns, out, sizeof out);
    assert_string_equal(out, want);
}

static void test_record_format_time_exact_strings(void **state) {
    (void)state;
    assert_format(0, "1970-01-01T00:00:00.000Z");
    assert_format(999999, "1970-01-01T00:00:00.000Z"); /* truncated to ms */
    assert_format(1000000, "1970-01-01T00:00:00.001Z");
    assert_format(1709210096789000000LL, "2024-02-29T12:34:56.789Z");
    assert_format(1704067199999999999LL, "2023-12-31T23:59:59.999Z");
    assert_format(1704067200000000000LL, "2024-01-01T00:00:00.000Z");
}

static void test_record_format_time_small_buffer_empty(void **state) {
    (void)state;
    char out[10] = "xxxxxxxxx";
    pbrec_format_time(0, out, sizeof out);
    assert_string_equal(out, ""); /* never a truncated timestamp */
}

static void test_record_format_parse_round_trip(void **state) {
    (void)state;
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 2000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ms = (int64_t)(x % 9223372036854ULL); /* 1970 .. 2262: what int64 ns can hold */
        char buf[32];
        int64_t back;
        pbrec_format_time(ms * 1000000, buf, sizeof buf);
        assert_int_equal(strlen(buf), 24);
        assert_int_equal(pbrec_parse_time(buf, &back), 0);
        assert_int_equal(back, ms);
    }
}

/* ---- ids ---- */

static int cmp_id(const void *a, const void *b) {
    return memcmp(a, b, PBREC_ID_LEN);
}

static void test_record_new_id_is_uuid_v4_format(void **state) {
    (void)state;
    for (int i = 0; i < 1000; i++) {
        char id[PBREC_ID_LEN + 1];
        memset(id, 'X', sizeof id);
        assert_int_equal(pbrec_new_id(id), 0);
        assert_int_equal(strlen(id), PBREC_ID_LEN);
        for (int k = 0; k < PBREC_ID_LEN; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23)
                assert_int_equal(id[k], '-');
            else
                assert_non_null(strchr("0123456789abcdef", id[k]));
        }
        assert_int_equal(id[14], '4');
        assert_non_null(strchr("89ab", id[19]));
    }
}

static void test_record_new_id_100000_unique(void **state) {
    (void)state;
    enum { N = 100000 };
    char(*ids)[PBREC_ID_LEN + 1] = malloc(sizeof(*ids) * N);
    assert_non_null(ids);
    for (int i = 0; i < N; i++)
        assert_int_equal(pbrec_new_id(ids[i]), 0);
    qsort(ids, N, sizeof *ids, cmp_id);
    for (int i = 1; i < N; i++)
        assert_int_not_equal(memcmp(ids[i - 1], ids[i], PBREC_ID_LEN), 0);
    free(ids);
}

/* ---- envelope ---- */

static json_t *parse_obj(const char *s) {
    json_error_t err;
    json_t *o = json_loads(s, 0, &err);
    assert_non_null(o);
    return o;
}

static void test_record_envelope_adds_timestamp_when_absent(void **state) {
    (void)state;
    json_t *obj = parse_obj("{\"model_version\":\"v1\",\"prediction\": {\"p\": 1}}");
    char *value, *key;
    size_t vlen, klen;
    int64_t ts = 0;
    char reason[128];
    const int64_t now = 1709210096789123456LL;
    assert_int_equal(pbrec_envelope(obj, now, NULL, &value, &vlen, &key, &klen, &ts, reason, sizeof reason),
                     0);
    assert_string_equal(
        value,
        "{\"model_version\":\"v1\",\"prediction\":{\"p\":1},\"timestamp\":\"2024-02-29T12:34:56.789Z\"}");
    assert_int_equal(vlen, strlen(value));
    assert_int_equal(ts, 1709210096789LL);
    assert_null(key);
    assert_int_equal(klen, 0);
    assert_string_equal(json_string_value(json_object_get(obj, "timestamp")), "2024-02-29T12:34:56.789Z");
    free(value);
    json_decref(obj);
}

static void test_record_envelope_keeps_existing_timestamp(void **state) {
    (void)state;
    json_t *obj = parse_obj("{\"timestamp\":\"2024-01-01T01:00:00.250+01:00\",\"x\":1}");
    char *value, *key;
    size_t vlen, klen;
    int64_t ts = 0;
    char reason[128];
    assert_int_equal(
        pbrec_envelope(obj, 42, "absent", &value, &vlen, &key, &klen, &ts, reason, sizeof reason), 0);
    assert_int_equal(ts, 1704067200250LL);
    assert_string_equal(value, "{\"timestamp\":\"2024-01-01T01:00:00.250+01:00\",\"x\":1}");
    assert_null(key);
    free(value);
    json_decref(obj);
}

static void test_record_envelope_string_key_bytes(void **state) {
    (void)state;
    json_t *obj = parse_obj("{\"id\":\"cust-\\u00e9\",\"timestamp\":\"2024-01-01T00:00:00Z\"}");
    char *value, *key;
    size_t vlen, klen;
    int64_t ts;
    char reason[128];
    assert_int_equal(pbrec_envelope(obj, 0, "id", &value, &vlen, &key, &klen, &ts, reason, sizeof reason), 0);
    assert_int_equal(klen, 7);
    assert_memory_equal(key, "cust-\xc3\xa9", 7);
    free(value);
    free(key);
    json_decref(obj);
}

static void test_record_envelope_number_key_json_text(void **state) {
    (void)state;
    json_t *obj = parse_obj("{\"n\":42,\"r\":1.5,\"neg\":-7}");
    char *value, *key;
    size_t vlen, klen;
    int64_t ts;
    char reason[128];
    assert_int_equal(pbrec_envelope(obj, 0, "n", &value, &vlen, &key, &klen, &ts, reason, sizeof reason), 0);
    assert_int_equal(klen, 2);
    assert_memory_equal(key, "42", 2);
    free(value);
    free(key);
    assert_int_equal(pbrec_envelope(obj, 0, "r", &value, &vlen, &key, &klen, &ts, reason, sizeof reason), 0);
    assert_string_equal(key, "1.5");
    free(value);
    free(key);
    assert_int_equal(pbrec_envelope(obj, 0, "neg", &value, &vlen, &key, &klen, &ts, reason, sizeof reason),
                     0);
    assert_string_equal(key, "-7");
    free(value);
    free(key);
    json_decref(obj);
}

static void test_record_envelope_key_wrong_type_fails_unmodified(void **state) {
    (void)state;
    const char *bad[] = {"{\"k\":{\"a\":1}}", "{\"k\":[1]}", "{\"k\":true}", "{\"k\":null}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *obj = parse_obj(bad[i]);
        char *value = (char *)0x1, *key = (char *)0x1;
        size_t vlen = 9, klen = 9;
        int64_t ts;
        char reason[128] = "";
        assert_int_equal(pbrec_envelope(obj, 0, "k", &value, &vlen, &key, &klen, &ts, reason, sizeof reason),
                         -1);
        assert_null(value);
        assert_null(key);
        assert_non_null(strstr(reason, "key field 'k' must be a string or number"));
        assert_null(json_object_get(obj, "timestamp")); /* not modified on failure */
        json_decref(obj);
    }
}

static void test_record_envelope_bad_timestamp_fails(void **state) {
    (void)state;
    json_t *obj = parse_obj("{\"timestamp\":12}");
    char *value, *key;
    size_t vlen, klen;
    int64_t ts;
    char reason[128];
    assert_int_equal(pbrec_envelope(obj, 0, NULL, &value, &vlen, &key, &klen, &ts, reason, sizeof reason),
                     -1);
    assert_non_null(strstr(reason, "'timestamp'"));
    assert_null(value);
    json_decref(obj);
}

static void test_record_envelope_non_object_fails(void **state) {
    (void)state;
    json_t *arr = json_array();
    char *value = (char *)0x1, *key = (char *)0x1;
    size_t vlen, klen;
    int64_t ts;
    char reason[128] = "";
    assert_int_equal(pbrec_envelope(arr, 0, NULL, &value, &vlen, &key, &klen, &ts, reason, sizeof reason),
                     -1);
    assert_null(value);
    assert_null(key);
    assert_non_null(strstr(reason, "object"));
    json_decref(arr);
}

static void test_record_envelope_output_revalidates(void **state) {
    (void)state;
    json_t *obj = NULL;
    char reason[128];
    assert_int_equal(
        VALIDATE("{ \"model_version\" : \"v\", \"prediction\" : [1, 2.5, \"\\u00e9\\n\"] }", &obj, reason),
        PBREC_OK);
    char *value, *key;
    size_t vlen, klen;
    int64_t ts;
    assert_int_equal(
        pbrec_envelope(obj, 5000000, NULL, &value, &vlen, &key, &klen, &ts, reason, sizeof reason), 0);
    assert_null(memchr(value, ' ', vlen));  /* compact */
    assert_null(memchr(value, '\n', vlen)); /* one line on the wire */
    json_t *again = NULL;
    assert_int_equal(pbrec_validate(value, vlen, required_default, N_REQ, &again, reason, sizeof reason),
                     PBREC_OK);
    assert_int_equal(ts, 5);
    json_decref(again);
    free(value);
    json_decref(obj);
}

/* Runs validate + envelope_raw on line; returns the value (caller frees). */
static char *raw_envelope(const char *line, int64_t now_ns, int64_t *ts_ms) {
    json_t *obj = NULL;
    char reason[256], *value = NULL, *key = NULL;
    size_t vlen = 0, klen = 0;
    assert_int_equal(pbrec_validate(line, strlen(line), required_default, 2, &obj, reason, sizeof reason), PBREC_OK);
    assert_int_equal(pbrec_envelope_raw(obj, line, strlen(line), now_ns, NULL, &value, &vlen, &key, &klen, ts_ms,
                                        reason, sizeof reason),
                     0);
    json_decref(obj);
    assert_null(key);
    char *z = malloc(vlen + 1);
    memcpy(z, value, vlen);
    z[vlen] = '\0';
    free(value);
    return z;
}

static void test_record_envelope_raw_keeps_producer_bytes_and_inserts_timestamp(void **state) {
    (void)state;
    int64_t ts;
    char *v = raw_envelope("{\"model_version\": \"v1\", \"prediction\": 0.1, \"z\": 1e2, \"s\": \"\\u00e9\"}",
                           1700000000123000000LL, &ts);
    assert_string_equal(v, "{\"model_version\": \"v1\", \"prediction\": 0.1, \"z\": 1e2, \"s\": \"\\u00e9\","
                           "\"timestamp\":\"2023-11-14T22:13:20.123Z\"}");
    assert_int_equal(ts, 1700000000123LL);
    free(v);
}

static void test_record_envelope_raw_existing_timestamp_leaves_bytes_unchanged(void **state) {
    (void)state;
    int64_t ts;
    char *v = raw_envelope("  {\"timestamp\":\"2024-02-29T12:00:00+01:00\",\"model_version\":\"v\",\"prediction\":[1, 2]} \t",
                           1700000000123000000LL, &ts);
    assert_string_equal(v, "{\"timestamp\":\"2024-02-29T12:00:00+01:00\",\"model_version\":\"v\",\"prediction\":[1, 2]}");
    assert_int_equal(ts, 1709204400000LL);
    free(v);
}

static void test_record_envelope_raw_empty_object_gets_no_leading_comma(void **state) {
    (void)state;
    json_t *obj = NULL;
    char reason[128], *value = NULL, *key = NULL;
    size_t vlen = 0, klen = 0;
    int64_t ts;
    const char *line = "{ }";
    assert_int_equal(pbrec_validate(line, 3, NULL, 0, &obj, reason, sizeof reason), PBREC_OK);
    assert_int_equal(pbrec_envelope_raw(obj, line, 3, 0, NULL, &value, &vlen, &key, &klen, &ts, reason, sizeof reason),
                     0);
    assert_int_equal(vlen, strlen("{ \"timestamp\":\"1970-01-01T00:00:00.000Z\"}"));
    assert_memory_equal(value, "{ \"timestamp\":\"1970-01-01T00:00:00.000Z\"}", vlen);
    json_decref(obj);
    free(value);
}

static void test_record_envelope_raw_output_revalidates(void **state) {
    (void)state;
    int64_t ts;
    char *v = raw_envelope("{\"model_version\":\"v\",\"prediction\":{\"a\":[1,{\"b\":null}]}}", 5000000, &ts);
    json_t *obj = NULL;
    char reason[128];
    assert_int_equal(pbrec_validate(v, strlen(v), required_default, 2, &obj, reason, sizeof reason), PBREC_OK);
    assert_string_equal(json_string_value(json_object_get(obj, "timestamp")), "1970-01-01T00:00:00.005Z");
    json_decref(obj);
    free(v);
}

static void test_record_prepare_fast_path_takes_plain_objects_and_int64_edges(void **state) {
    (void)state;
    pbrec_prepared_t p;
    char reason[256];
    const char *ok = "{\"model_version\":\"v\",\"prediction\":0.5,\"sent_ns\":1795620000123456789,"
                     "\"max\":9223372036854775807,\"min\":-9223372036854775808}";
    assert_int_equal(pbrec_prepare(ok, strlen(ok), required_default, 2, NULL, 0, 0, &p, reason, sizeof reason),
                     PBREC_OK);
    assert_int_equal(p.fast, 1); /* no JSON tree was built */
    assert_string_equal(p.model_version, "v");
    pbrec_prepared_free(&p);
    /* One past int64: jansson refuses it, so the scanner must not accept it. */
    const char *big = "{\"model_version\":\"v\",\"prediction\":9223372036854775808}";
    assert_int_equal(pbrec_prepare(big, strlen(big), required_default, 2, NULL, 0, 0, &p, reason, sizeof reason),
                     PBREC_NOT_JSON);
    /* An escaped key is legal JSON: decided by jansson, and still accepted. */
    const char *esc = "{\"model_\\u0076ersion\":\"v\",\"prediction\":1}";
    assert_int_equal(pbrec_prepare(esc, strlen(esc), required_default, 2, NULL, 0, 0, &p, reason, sizeof reason),
                     PBREC_OK);
    assert_int_equal(p.fast, 0);
    assert_string_equal(p.model_version, "v");
    pbrec_prepared_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_status_names_are_stable),
        cmocka_unit_test(test_record_valid_object_returns_parsed_object),
        cmocka_unit_test(test_record_prediction_of_any_non_null_type_accepted),
        cmocka_unit_test(test_record_no_required_fields_accepts_any_object),
        cmocka_unit_test(test_record_trailing_garbage_not_json_with_column),
        cmocka_unit_test(test_record_truncated_or_empty_not_json),
        cmocka_unit_test(test_record_duplicate_key_not_json),
        cmocka_unit_test(test_record_nul_escape_not_json),
        cmocka_unit_test(test_record_number_out_of_range_not_json),
        cmocka_unit_test(test_record_nul_in_key_not_json),
        cmocka_unit_test(test_record_reason_never_quotes_payload),
        cmocka_unit_test(test_record_multiline_error_names_line),
        cmocka_unit_test(test_record_deep_nesting_not_json),
        cmocka_unit_test(test_record_top_level_non_object_not_object),
        cmocka_unit_test(test_record_invalid_utf8_classified_with_offset),
        cmocka_unit_test(test_record_valid_multibyte_utf8_accepted),
        cmocka_unit_test(test_record_required_field_absent_missing_field),
        cmocka_unit_test(test_record_required_field_null_missing_field),
        cmocka_unit_test(test_record_custom_required_list_applied),
        cmocka_unit_test(test_record_model_version_wrong_type_bad_field),
        cmocka_unit_test(test_record_timestamp_valid_forms_accepted),
        cmocka_unit_test(test_record_timestamp_invalid_bad_field),
        cmocka_unit_test(test_record_timestamp_before_epoch_bad_field),
        cmocka_unit_test(test_record_null_reason_buffer_tolerated),
        cmocka_unit_test(test_record_parse_time_valid_exact_ms),
        cmocka_unit_test(test_record_parse_time_invalid_rejected),
        cmocka_unit_test(test_record_format_time_exact_strings),
        cmocka_unit_test(test_record_format_time_small_buffer_empty),
        cmocka_unit_test(test_record_format_parse_round_trip),
        cmocka_unit_test(test_record_new_id_is_uuid_v4_format),
        cmocka_unit_test(test_record_new_id_100000_unique),
        cmocka_unit_test(test_record_envelope_adds_timestamp_when_absent),
        cmocka_unit_test(test_record_envelope_keeps_existing_timestamp),
        cmocka_unit_test(test_record_envelope_string_key_bytes),
        cmocka_unit_test(test_record_envelope_number_key_json_text),
        cmocka_unit_test(test_record_envelope_key_wrong_type_fails_unmodified),
        cmocka_unit_test(test_record_envelope_bad_timestamp_fails),
        cmocka_unit_test(test_record_envelope_non_object_fails),
        cmocka_unit_test(test_record_envelope_output_revalidates),
        cmocka_unit_test(test_record_envelope_raw_keeps_producer_bytes_and_inserts_timestamp),
        cmocka_unit_test(test_record_envelope_raw_existing_timestamp_leaves_bytes_unchanged),
        cmocka_unit_test(test_record_envelope_raw_empty_object_gets_no_leading_comma),
        cmocka_unit_test(test_record_envelope_raw_output_revalidates),
        cmocka_unit_test(test_record_prepare_fast_path_takes_plain_objects_and_int64_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
