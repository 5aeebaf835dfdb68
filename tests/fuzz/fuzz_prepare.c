/* fuzz_prepare: differential fuzzing of predbridged's hot path: the allocation-free scanner must
 * agree with jansson (pbrec_prepare with force_jansson) on every input: status, reason and bytes. */
#include "common/record.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int cond, const char *what, const uint8_t *data, size_t size) {
    if (cond) return;
    fprintf(stderr, "fuzz_prepare: %s differs for input of %zu bytes: %.*s\n", what, size, (int)size, (const char *)data);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const char *const req_sets[][2] = {{"model_version", "prediction"}, {"k", NULL}, {NULL, NULL}};
    static const char *const key_fields[] = {NULL, "k", "model_version", "prediction"};
    unsigned sel = data[0];
    const char *const *required = req_sets[sel % 3];
    size_t n_required = sel % 3 == 0 ? 2 : sel % 3 == 1 ? 1 : 0;
    const char *key_field = key_fields[(sel / 3) % 4];
    const char *line = (const char *)data + 1;
    size_t len = size - 1;
    int64_t now = 1700000000123456789LL;

    pbrec_prepared_t a, b;
    char ra[256], rb[256];
    pbrec_status_t sa = pbrec_prepare(line, len, required, n_required, key_field, now, 0, &a, ra, sizeof ra);
    pbrec_status_t sb = pbrec_prepare(line, len, required, n_required, key_field, now, 1, &b, rb, sizeof rb);
    check(sa == sb, "status", data, size);

    /* pbrec_check (the consumer's lazy path) gives pbrec_validate's verdict and model_version. */
    json_t *jc = NULL, *jv = NULL;
    char rc_[256], rv[256], mvc[64];
    pbrec_status_t sc = pbrec_check(line, len, required, n_required, &jc, mvc, sizeof mvc, rc_, sizeof rc_);
    pbrec_status_t sv = pbrec_validate(line, len, required, n_required, &jv, rv, sizeof rv);
    check(sc == sv, "check status", data, size);
    if (sc != PBREC_OK) check(strcmp(rc_, rv) == 0, "check reason", data, size);
    if (sc == PBREC_OK) {
        const char *mv = json_string_value(json_object_get(jv, "model_version"));
        if (mv && strlen(mv) < sizeof mvc) check(strcmp(mv, mvc) == 0, "check model_version", data, size);
        if (!mv) check(mvc[0] == '\0', "check model_version absent", data, size);
    }
    json_decref(jc);
    json_decref(jv);

    if (sa != PBREC_OK) {
        check(strcmp(ra, rb) == 0, "reason", data, size);
        return 0;
    }
    check(a.value_len == b.value_len && memcmp(a.value, b.value, a.value_len) == 0, "value", data, size);
    check((a.key == NULL) == (b.key == NULL), "key presence", data, size);
    if (a.key) check(a.key_len == b.key_len && memcmp(a.key, b.key, a.key_len) == 0, "key", data, size);
    check((a.model_version == NULL) == (b.model_version == NULL), "model_version presence", data, size);
    if (a.model_version) check(strcmp(a.model_version, b.model_version) == 0, "model_version", data, size);
    check(a.timestamp_ms == b.timestamp_ms, "timestamp", data, size);
    pbrec_prepared_free(&a);
    pbrec_prepared_free(&b);
    return 0;
}
