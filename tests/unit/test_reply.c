/* test_reply: the acknowledgement lines of predbridged are exact, valid JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"

static char *format(uint64_t seq, const char *id, const char *status, const char *key, const char *text) {
    char *out = malloc(pbd_reply_max_len(text));
    size_t n = pbd_reply_format(out, seq, id, status, key, text);
    assert_true(n < pbd_reply_max_len(text));
    out[n] = '\0';
    return out;
}

static void test_reply_delivered_has_seq_id_and_status(void **state) {
    (void)state;
    char *s = format(7, "0b6f3c1e-8a1d-4c6e-9d2a-1f2e3d4c5b6a", "delivered", NULL, NULL);
    assert_string_equal(s, "{\"seq\":7,\"id\":\"0b6f3c1e-8a1d-4c6e-9d2a-1f2e3d4c5b6a\",\"status\":\"delivered\"}\n");
    free(s);
}

static void test_reply_rejected_reason_is_escaped_and_parses_back(void **state) {
    (void)state;
    const char *reason = "not JSON: \"x\\y\"\t\x01 at column 3";
    char *s = format(42, NULL, "rejected", "reason", reason);
    assert_int_equal(s[strlen(s) - 1], '\n');
    json_error_t e;
    json_t *o = json_loads(s, 0, &e);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "reason")), reason);
    assert_int_equal(json_integer_value(json_object_get(o, "seq")), 42);
    assert_null(json_object_get(o, "id"));
    json_decref(o);
    free(s);
}

static void test_reply_ready_names_the_mode(void **state) {
    (void)state;
    char *s = format(0, NULL, "ready", "ack", "delivered");
    assert_string_equal(s, "{\"seq\":0,\"status\":\"ready\",\"ack\":\"delivered\"}\n");
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_delivered_has_seq_id_and_status),
        cmocka_unit_test(test_reply_rejected_reason_is_escaped_and_parses_back),
        cmocka_unit_test(test_reply_ready_names_the_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
