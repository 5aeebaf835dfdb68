/* jscan.h: an allocation-free JSON scanner for predbridged's hot path. It only ever says "this
 * line is a well-formed JSON object jansson would accept, and here are its top-level members", or
 * "ask jansson": every error and every unusual case falls back to the full parser, so reasons and
 * edge cases stay exactly those of pbrec_validate. */
#ifndef PB_COMMON_JSCAN_H
#define PB_COMMON_JSCAN_H

#include <stddef.h>

typedef enum {
    JSCAN_STRING,
    JSCAN_NUMBER,
    JSCAN_OBJECT,
    JSCAN_ARRAY,
    JSCAN_TRUE,
    JSCAN_FALSE,
    JSCAN_NULL,
} jscan_type_t;

/* One top-level member. Key bytes are those between the quotes and never contain escapes (a key
 * with an escape makes the scan fall back). value/value_len: for strings the bytes between the
 * quotes, for everything else the raw JSON text. */
typedef struct jscan_member {
    const char *key;
    size_t key_len;
    jscan_type_t type;
    const char *value;
    size_t value_len;
    int value_escaped; /* a string value containing backslash escapes */
} jscan_member_t;

#define JSCAN_MAX_MEMBERS 64

typedef enum {
    JSCAN_OK = 0,       /* one JSON object, accepted by jansson with JSON_REJECT_DUPLICATES */
    JSCAN_FALLBACK = 1, /* anything else: let jansson decide (and explain) */
} jscan_result_t;

/*
 * Scans data (len bytes, which the caller has already checked to be valid UTF-8). On JSCAN_OK,
 * members[0..*n) are the object's top-level members in order. Falls back on: syntax errors,
 * anything but an object at the top, duplicate keys, escaped keys, \u0000, invalid surrogates,
 * numbers jansson might reject as out of range, nesting deeper than 64, more than
 * JSCAN_MAX_MEMBERS top-level members or too many keys open at once. Pure; never allocates.
 */
jscan_result_t jscan_object(const char *data, size_t len, jscan_member_t members[JSCAN_MAX_MEMBERS], size_t *n);

#endif
