/* record.h: validation of one prediction (a JSON object) and the envelope predbridged adds to it. */
#ifndef PB_COMMON_RECORD_H
#define PB_COMMON_RECORD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define PBREC_ID_LEN 36 /* UUID text form, without NUL */

typedef enum {
    PBREC_OK = 0,
    PBREC_NOT_JSON,         /* not parseable JSON (includes trailing garbage) */
    PBREC_NOT_OBJECT,       /* valid JSON, but not an object */
    PBREC_INVALID_UTF8,     /* bytes are not valid UTF-8 */
    PBREC_MISSING_FIELD,    /* a required field is absent or null */
    PBREC_BAD_FIELD,        /* a field has the wrong type (model_version not a string, timestamp not RFC 3339) */
    PBREC_TOO_LARGE,        /* over the configured maximum */
} pbrec_status_t;

/* Stable short name of a status, used in acks, logs and metric labels ("not_json"). */
const char *pbrec_status_name(pbrec_status_t st);

/*
 * Validates one line: valid UTF-8, a single JSON object (jansson, duplicate keys rejected), every
 * field in required present and not null, "model_version" (if present) a non-empty string,
 * "timestamp" (if present) an RFC 3339 string. On success *out is the parsed object (caller owns a
 * reference). On failure *out is NULL and reason holds a human-readable cause naming the field or
 * the JSON error position ("missing required field 'prediction'", "not JSON: ... at column 17").
 */
pbrec_status_t pbrec_validate(const char *data, size_t len, const char *const *required, size_t n_required,
                              json_t **out, char *reason, size_t reason_size);

/* Formats time (nanoseconds since the epoch, UTC) as RFC 3339 with millisecond precision and 'Z'
 * ("2026-11-25T13:53:53.123Z"); out must hold 32 bytes. */
void pbrec_format_time(int64_t unix_ns, char *out, size_t out_size);

/* Parses an RFC 3339 timestamp (any offset, optional fraction) into milliseconds since the epoch.
 * Returns 0 or -1. */
int pbrec_parse_time(const char *s, int64_t *unix_ms);

/* Generates a random (version 4) UUID as 36 characters plus NUL into out[37], from a CSPRNG. Returns 0 or -1. */
int pbrec_new_id(char out[PBREC_ID_LEN + 1]);

/*
 * Prepares the record predbridged publishes from a validated object: adds "timestamp" (now, RFC 3339
 * UTC) when absent, and reports the Kafka timestamp in ms (from the record's timestamp). Serialises
 * compactly into a malloc'd buffer (*value, *value_len; caller frees). key_field, if non-NULL and
 * present in obj as a string or number, gives the record key (*key malloc'd, else NULL).
 * Returns 0 or -1 (allocation, or a key field of another type: reason says which).
 */
int pbrec_envelope(json_t *obj, int64_t now_ns, const char *key_field, char **value, size_t *value_len,
                   char **key, size_t *key_len, int64_t *timestamp_ms, char *reason, size_t reason_size);

/*
 * As pbrec_envelope, but the record's bytes are the producer's own line (raw, as validated into obj),
 * not a re-serialisation: numbers, escapes and key order reach Kafka exactly as written (jansson would
 * print 0.1 as 0.10000000000000001). When "timestamp" is absent, `"timestamp":"..."` is inserted
 * before the closing brace. Leading and trailing white space is dropped. Same ownership and errors.
 */
int pbrec_envelope_raw(json_t *obj, const char *raw, size_t raw_len, int64_t now_ns, const char *key_field,
                       char **value, size_t *value_len, char **key, size_t *key_len, int64_t *timestamp_ms,
                       char *reason, size_t reason_size);

/* A record ready to publish, as predbridged needs it. All pointers are malloc'd and owned by the
 * caller (pbrec_prepared_free); key and model_version may be NULL. */
typedef struct pbrec_prepared {
    char *value;
    size_t value_len;
    char *key;
    size_t key_len;
    char *model_version;
    int64_t timestamp_ms;
    int fast; /* 1 if the allocation-free scanner decided, 0 if jansson did (for tests and profiling) */
} pbrec_prepared_t;

/*
 * pbrec_validate + pbrec_envelope_raw in one step, for predbridged's hot path: the common case (a
 * plain, well-formed object) is decided by an allocation-free scanner; anything else is handed to
 * jansson, so statuses and reasons are exactly pbrec_validate's. With force_jansson, always jansson
 * (the reference the scanner is fuzzed against). Returns PBREC_OK and fills out, or a status with
 * reason (out zeroed). A key-field error is reported as PBREC_BAD_FIELD.
 */
pbrec_status_t pbrec_prepare(const char *data, size_t len, const char *const *required, size_t n_required,
                             const char *key_field, int64_t now_ns, int force_jansson, pbrec_prepared_t *out,
                             char *reason, size_t reason_size);
void pbrec_prepared_free(pbrec_prepared_t *p);

/*
 * pbrec_validate's verdict, without building a JSON tree when the allocation-free scanner can decide
 * (then *out is NULL: parse lazily if the object is needed); otherwise jansson decides and *out is
 * the parsed object (caller owns it). model_version (if not NULL) receives the field's value when it
 * fits mv_size, else "". Statuses and reasons are exactly pbrec_validate's.
 */
pbrec_status_t pbrec_check(const char *data, size_t len, const char *const *required, size_t n_required,
                           json_t **out, char *model_version, size_t mv_size, char *reason, size_t reason_size);

#endif
