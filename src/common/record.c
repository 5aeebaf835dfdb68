/* record.c: validates one prediction (a JSON object) and builds the envelope predbridged publishes. */
#include "common/record.h"

#include "common/jscan.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define PBREC_FIELD_MODEL_VERSION "model_version"
#define PBREC_FIELD_TIMESTAMP "timestamp"

const char *pbrec_status_name(pbrec_status_t st) {
    switch (st) {
    case PBREC_OK:
        return "ok";
    case PBREC_NOT_JSON:
        return "not_json";
    case PBREC_NOT_OBJECT:
        return "not_object";
    case PBREC_INVALID_UTF8:
        return "invalid_utf8";
    case PBREC_MISSING_FIELD:
        return "missing_field";
    case PBREC_BAD_FIELD:
        return "bad_field";
    case PBREC_TOO_LARGE:
        return "too_large";
    }
    return "unknown";
}

__attribute__((format(printf, 3, 4))) static void pbrec_reason(char *reason, size_t reason_size,
                                                               const char *fmt, ...) {
    if (!reason || reason_size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, reason_size, fmt, ap);
    va_end(ap);
}

/*
 * Strict UTF-8 check (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). jansson
 * checks too, but it stops at the first error of any kind; checking first makes the status
 * deterministic ("invalid_utf8" whenever the bytes are not UTF-8) and gives the exact offset.
 * Returns the offset of the first bad sequence, or len if all is well.
 */
static size_t pbrec_utf8_bad_offset(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        /* Sixteen (SSE2), then eight ASCII bytes at a time: lines are mostly ASCII. */
#if defined(__SSE2__)
        while (len - i >= 16 && _mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(const void *)(s + i))) == 0)
            i += 16;
#endif
        uint64_t w;
        while (len - i >= 8 && (memcpy(&w, s + i, 8), (w & 0x8080808080808080ULL) == 0)) i += 8;
        if (i >= len) break;
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0; /* overlong */
            if (c == 0xED) hi = 0x9F; /* UTF-16 surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90; /* overlong */
            if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
        } else {
            return i; /* continuation byte, overlong C0/C1, or F5..FF */
        }
        if (len - i - 1 < need) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += need + 1;
    }
    return len;
}

/* Our own words for jansson's errors: its error text quotes the offending token ("near '...'"),
 * which is payload and must not reach acks or logs. */
static const char *pbrec_json_error_text(const json_error_t *err) {
    switch (json_error_code(err)) {
    case json_error_out_of_memory:
        return "out of memory";
    case json_error_stack_overflow:
        return "nesting too deep";
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_premature_end_of_input:
        return "unexpected end of input";
    case json_error_end_of_input_expected:
        return "unexpected data after the JSON value";
    case json_error_invalid_syntax:
        return "invalid syntax";
    case json_error_null_character:
        return "\\u0000 in a string is not supported";
    case json_error_null_byte_in_key:
        return "\\u0000 in an object key is not supported";
    case json_error_duplicate_key:
        return "duplicate object key";
    case json_error_numeric_overflow:
        return "number out of range";
    default:
        return "invalid JSON";
    }
}

static const char *pbrec_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "an unknown type";
}

/* Parses a JSON string value as a timestamp; embedded NULs (possible only with JSON_ALLOW_NUL) fail. */
static int pbrec_json_time(const json_t *v, int64_t *unix_ms) {
    if (!json_is_string(v)) return -1;
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) return -1;
    return pbrec_parse_time(s, unix_ms);
}

pbrec_status_t pbrec_validate(const char *data, size_t len, const char *const *required, size_t n_required,
                              json_t **out, char *reason, size_t reason_size) {
    pbrec_status_t st = PBREC_OK;
    json_t *obj = NULL;
    json_error_t err;

    *out = NULL;
    if (reason && reason_size > 0) reason[0] = '\0';

    size_t bad = pbrec_utf8_bad_offset((const unsigned char *)data, len);
    if (bad < len) {
        st = PBREC_INVALID_UTF8;
        pbrec_reason(reason, reason_size, "invalid UTF-8 at byte offset %zu", bad);
        goto out;
    }

    /* JSON_DECODE_ANY so that a scalar top level parses and is reported as not_object rather than
     * not_json; JSON_ALLOW_NUL is deliberately off: consumers parsing with jansson's defaults would
     * fail on \u0000, so it is refused here, at the door, with a clear reason. */
    obj = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!obj) {
        st = json_error_code(&err) == json_error_invalid_utf8 ? PBREC_INVALID_UTF8 : PBREC_NOT_JSON;
        if (err.line > 1)
            pbrec_reason(reason, reason_size, "not JSON: %s at line %d, column %d",
                         pbrec_json_error_text(&err), err.line, err.column);
        else
            pbrec_reason(reason, reason_size, "not JSON: %s at column %d", pbrec_json_error_text(&err),
                         err.column);
        goto out;
    }
    if (!json_is_object(obj)) {
        st = PBREC_NOT_OBJECT;
        pbrec_reason(reason, reason_size, "not a JSON object: got %s", pbrec_type_name(obj));
        goto out;
    }

    for (size_t i = 0; i < n_required; i++) {
        json_t *v = json_object_get(obj, required[i]);
        if (!v || json_is_null(v)) {
            st = PBREC_MISSING_FIELD;
            pbrec_reason(reason, reason_size, "missing required field '%s'%s", required[i],
                         v ? " (null)" : "");
            goto out;
        }
    }

    /* Present means the key exists: a null here is a wrong type, not an absent field. */
    json_t *mv = json_object_get(obj, PBREC_FIELD_MODEL_VERSION);
    if (mv && (!json_is_string(mv) || json_string_length(mv) == 0)) {
        st = PBREC_BAD_FIELD;
        pbrec_reason(reason, reason_size, "field '%s' must be a non-empty string, got %s",
                     PBREC_FIELD_MODEL_VERSION, json_is_string(mv) ? "an empty string" : pbrec_type_name(mv));
        goto out;
    }

    json_t *ts = json_object_get(obj, PBREC_FIELD_TIMESTAMP);
    int64_t ts_ms = 0;
    if (ts && pbrec_json_time(ts, &ts_ms) != 0) {
        st = PBREC_BAD_FIELD;
        pbrec_reason(reason, reason_size, "field '%s' must be an RFC 3339 date-time string",
                     PBREC_FIELD_TIMESTAMP);
        goto out;
    }
    /* Kafka rejects negative timestamps on the broker, long after the record was acknowledged. */
    if (ts && ts_ms < 0) {
        st = PBREC_BAD_FIELD;
        pbrec_reason(reason, reason_size, "field '%s' is before 1970-01-01T00:00:00Z", PBREC_FIELD_TIMESTAMP);
        goto out;
    }

out:
    if (st == PBREC_OK)
        *out = obj;
    else
        json_decref(obj);
    return st;
}

/* Floor division, so that times before the epoch still round towards the past. */
static int64_t pbrec_floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

void pbrec_format_time(int64_t unix_ns, char *out, size_t out_size) {
    if (!out || out_size == 0) return;
    out[0] = '\0';
    int64_t ms_total = pbrec_floor_div(unix_ns, 1000000);
    /* Records arrive many per millisecond: the same instant is formatted once (per thread). */
    static _Thread_local int64_t cached_ms = INT64_MIN;
    static _Thread_local char cached[32];
    if (ms_total == cached_ms) {
        if (strlen(cached) < out_size) memcpy(out, cached, strlen(cached) + 1);
        return;
    }
    time_t secs = (time_t)pbrec_floor_div(ms_total, 1000);
    int ms = (int)(ms_total - (int64_t)secs * 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) return;
    int n = snprintf(out, out_size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    if (n < 0 || (size_t)n >= out_size) {
        out[0] = '\0'; /* never hand out a truncated timestamp */
        return;
    }
    if ((size_t)n < sizeof cached) {
        memcpy(cached, out, (size_t)n + 1);
        cached_ms = ms_total;
    }
}

static bool pbrec_is_leap(int64_t y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int pbrec_days_in_month(int64_t y, int m) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && pbrec_is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t pbrec_days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Reads exactly n decimal digits. */
static int pbrec_digits(const char **p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int pbrec_expect(const char **p, char c) {
    if (**p != c) return -1;
    (*p)++;
    return 0;
}

/*
 * RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), 'T' and 'Z' in either case.
 * Leap seconds (:60) are refused: they cannot be told apart from a typo without a leap-second
 * table, and Kafka timestamps (ms since the epoch) cannot represent them anyway. Fractions beyond
 * milliseconds are truncated.
 */
int pbrec_parse_time(const char *s, int64_t *unix_ms) {
    int year, mon, day, hour, min, sec, oh = 0, om = 0;
    int64_t frac_ms = 0;
    const char *p = s;

    if (!s || !unix_ms) return -1;
    if (pbrec_digits(&p, 4, &year) || pbrec_expect(&p, '-') || pbrec_digits(&p, 2, &mon) ||
        pbrec_expect(&p, '-') || pbrec_digits(&p, 2, &day))
        return -1;
    if (*p != 'T' && *p != 't') return -1;
    p++;
    if (pbrec_digits(&p, 2, &hour) || pbrec_expect(&p, ':') || pbrec_digits(&p, 2, &min) ||
        pbrec_expect(&p, ':') || pbrec_digits(&p, 2, &sec))
        return -1;
    if (*p == '.') {
        p++;
        int n = 0;
        for (; *p >= '0' && *p <= '9'; p++, n++)
            if (n < 3) frac_ms = frac_ms * 10 + (*p - '0');
        if (n == 0) return -1;
        for (; n < 3; n++)
            frac_ms *= 10;
    }
    int sign = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        p++;
        if (pbrec_digits(&p, 2, &oh) || pbrec_expect(&p, ':') || pbrec_digits(&p, 2, &om)) return -1;
    } else {
        return -1;
    }
    if (*p != '\0') return -1;

    if (mon < 1 || mon > 12 || day < 1 || day > pbrec_days_in_month(year, mon)) return -1;
    if (hour > 23 || min > 59 || sec > 59 || oh > 23 || om > 59) return -1;

    int64_t secs = pbrec_days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec;
    secs -= sign * (oh * 3600 + om * 60); /* local time = UTC + offset */
    *unix_ms = secs * 1000 + frac_ms;
    return 0;
}

/* Random bytes for ids, fetched from the kernel's CSPRNG 32 ids at a time: one getrandom(2) per id
 * was 3% of the daemon's event loop. Per thread, so no lock; bytes are used once and then wiped. */
static _Thread_local unsigned char id_pool[16 * 32];
static _Thread_local size_t id_pool_left;

int pbrec_new_id(char out[PBREC_ID_LEN + 1]) {
    unsigned char b[16];
    if (id_pool_left < sizeof b) {
        size_t got = 0;
        while (got < sizeof id_pool) {
            ssize_t n = getrandom(id_pool + got, sizeof id_pool - got, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                return -1;
            }
            got += (size_t)n;
        }
        id_pool_left = sizeof id_pool;
    }
    id_pool_left -= sizeof b;
    memcpy(b, id_pool + id_pool_left, sizeof b);
    memset(id_pool + id_pool_left, 0, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40); /* version 4: random */
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80); /* variant 10: RFC 4122 */

    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (size_t i = 0; i < sizeof b; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 0x0F];
    }
    *o = '\0';
    return 0;
}

/* The record key: a string's bytes, or a number's JSON text; NULL when absent. */
static int pbrec_key(json_t *obj, const char *key_field, char **key, size_t *key_len, char *reason,
                     size_t reason_size) {
    json_t *v = key_field ? json_object_get(obj, key_field) : NULL;
    if (!v) return 0;

    char *k = NULL;
    size_t klen = 0;
    if (json_is_string(v)) {
        klen = json_string_length(v);
        k = malloc(klen + 1);
        if (k) {
            memcpy(k, json_string_value(v), klen);
            k[klen] = '\0';
        }
    } else if (json_is_number(v)) {
        /* The same text jansson writes into the value, so key and payload agree. */
        k = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (k) klen = strlen(k);
    } else {
        pbrec_reason(reason, reason_size, "key field '%s' must be a string or number, got %s", key_field,
                     pbrec_type_name(v));
        return -1;
    }
    if (!k) {
        pbrec_reason(reason, reason_size, "out of memory");
        return -1;
    }
    *key = k;
    *key_len = klen;
    return 0;
}

static char *raw_value(const char *body_text, size_t body_len, const char *added_ts, int has_members, size_t *out_len);

/* The record's bytes: the producer's own text with `"timestamp":"..."` inserted before the object's
 * closing brace when it was absent (raw != NULL), or obj re-serialised (raw == NULL). */
static char *envelope_value(json_t *obj, const char *raw, size_t raw_len, const char *added_ts, size_t *out_len) {
    if (!raw) {
        char *v = json_dumps(obj, JSON_COMPACT);
        if (v) *out_len = strlen(v); /* jansson escapes U+0000, so the text has no NUL */
        return v;
    }
    size_t end = raw_len;
    while (end > 0 && (raw[end - 1] == ' ' || raw[end - 1] == '\t' || raw[end - 1] == '\r' || raw[end - 1] == '\n'))
        end--;
    if (end == 0 || raw[end - 1] != '}') return NULL; /* validated input always ends with '}' */
    size_t start = 0;
    while (start < end && (raw[start] == ' ' || raw[start] == '\t' || raw[start] == '\r' || raw[start] == '\n')) start++;
    return raw_value(raw + start, end - start, added_ts, json_object_size(obj) > 1, out_len);
}

/* body: the object's text, '{' to '}'. Inserts the added timestamp before the closing brace. */
static char *raw_value(const char *body, size_t body_len, const char *added_ts, int has_members, size_t *out_len) {
    if (!added_ts) {
        char *v = malloc(body_len);
        if (v) memcpy(v, body, body_len);
        *out_len = body_len;
        return v;
    }
    /* ,"timestamp":"<added_ts>"} appended by hand: this runs once per record. */
    static const char field[] = "\"" PBREC_FIELD_TIMESTAMP "\":\"";
    size_t ts_len = strlen(added_ts), head = body_len - 1; /* up to, not including, the closing brace */
    size_t total = head + (has_members ? 1 : 0) + sizeof field - 1 + ts_len + 2;
    char *v = malloc(total);
    if (!v) return NULL;
    char *o = v;
    memcpy(o, body, head);
    o += head;
    if (has_members) *o++ = ',';
    memcpy(o, field, sizeof field - 1);
    o += sizeof field - 1;
    memcpy(o, added_ts, ts_len);
    o += ts_len;
    *o++ = '"';
    *o++ = '}';
    *out_len = total;
    return v;
}

static int envelope(json_t *obj, const char *raw, size_t raw_len, int64_t now_ns, const char *key_field, char **value,
                    size_t *value_len, char **key, size_t *key_len, int64_t *timestamp_ms, char *reason,
                    size_t reason_size);

int pbrec_envelope(json_t *obj, int64_t now_ns, const char *key_field, char **value, size_t *value_len,
                   char **key, size_t *key_len, int64_t *timestamp_ms, char *reason, size_t reason_size) {
    return envelope(obj, NULL, 0, now_ns, key_field, value, value_len, key, key_len, timestamp_ms, reason,
                    reason_size);
}

int pbrec_envelope_raw(json_t *obj, const char *raw, size_t raw_len, int64_t now_ns, const char *key_field,
                       char **value, size_t *value_len, char **key, size_t *key_len, int64_t *timestamp_ms,
                       char *reason, size_t reason_size) {
    return envelope(obj, raw, raw_len, now_ns, key_field, value, value_len, key, key_len, timestamp_ms, reason,
                    reason_size);
}

static int envelope(json_t *obj, const char *raw, size_t raw_len, int64_t now_ns, const char *key_field, char **value,
                    size_t *value_len, char **key, size_t *key_len, int64_t *timestamp_ms, char *reason,
                    size_t reason_size) {
    int rc = -1;
    char *k = NULL;
    size_t klen = 0;
    int64_t ts_ms = 0;

    *value = NULL;
    *value_len = 0;
    *key = NULL;
    *key_len = 0;
    if (reason && reason_size > 0) reason[0] = '\0';

    if (!json_is_object(obj)) {
        pbrec_reason(reason, reason_size, "not a JSON object");
        goto out;
    }
    /* Everything that can be refused is checked before obj is modified. */
    if (pbrec_key(obj, key_field, &k, &klen, reason, reason_size) != 0) goto out;

    char added[32] = "";
    json_t *ts = json_object_get(obj, PBREC_FIELD_TIMESTAMP);
    if (ts) {
        if (pbrec_json_time(ts, &ts_ms) != 0) {
            pbrec_reason(reason, reason_size, "field '%s' must be an RFC 3339 date-time string",
                         PBREC_FIELD_TIMESTAMP);
            goto out;
        }
    } else {
        char buf[32];
        pbrec_format_time(now_ns, buf, sizeof buf);
        /* Derived from the text, so that the Kafka timestamp and the field always agree. */
        if (buf[0] == '\0' || pbrec_parse_time(buf, &ts_ms) != 0) {
            pbrec_reason(reason, reason_size, "cannot represent the current time");
            goto out;
        }
        if (json_object_set_new(obj, PBREC_FIELD_TIMESTAMP, json_string(buf)) != 0) {
            pbrec_reason(reason, reason_size, "out of memory");
            goto out;
        }
        memcpy(added, buf, sizeof added);
    }

    size_t vlen = 0;
    char *v = envelope_value(obj, raw, raw_len, added[0] ? added : NULL, &vlen);
    if (!v) {
        pbrec_reason(reason, reason_size, raw ? "not a single JSON object" : "out of memory");
        goto out;
    }
    *value = v;
    *value_len = vlen;
    *key = k;
    *key_len = klen;
    *timestamp_ms = ts_ms;
    k = NULL;
    rc = 0;

out:
    free(k);
    return rc;
}

/* ---- the hot path: scanner first, jansson for everything else ---- */

static const jscan_member_t *find_member(const jscan_member_t *m, size_t n, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (m[i].key_len == len && memcmp(m[i].key, name, len) == 0) return &m[i];
    return NULL;
}

static char *dup_bytes(const char *p, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

/* The checks of pbrec_validate on the scanner's view. Returns 1 if the line certainly passes them
 * (mv/ts point to model_version and timestamp members or are NULL), 0 to ask jansson. */
static int fast_check(const char *data, size_t len, const char *const *required, size_t n_required,
                      jscan_member_t m[JSCAN_MAX_MEMBERS], size_t *n_out, const jscan_member_t **mv_out,
                      const jscan_member_t **ts_out, int64_t *ts_ms) {
    size_t n;
    if (pbrec_utf8_bad_offset((const unsigned char *)data, len) < len) return 0;
    if (jscan_object(data, len, m, &n) != JSCAN_OK) return 0;
    for (size_t i = 0; i < n_required; i++) {
        const jscan_member_t *f = find_member(m, n, required[i]);
        if (!f || f->type == JSCAN_NULL) return 0;
    }
    const jscan_member_t *mv = find_member(m, n, PBREC_FIELD_MODEL_VERSION);
    if (mv && (mv->type != JSCAN_STRING || mv->value_escaped || mv->value_len == 0)) return 0;
    const jscan_member_t *ts = find_member(m, n, PBREC_FIELD_TIMESTAMP);
    *ts_ms = 0;
    if (ts) {
        char buf[64];
        if (ts->type != JSCAN_STRING || ts->value_escaped || ts->value_len >= sizeof buf) return 0;
        memcpy(buf, ts->value, ts->value_len);
        buf[ts->value_len] = '\0';
        if (pbrec_parse_time(buf, ts_ms) != 0 || *ts_ms < 0) return 0;
    }
    *n_out = n;
    *mv_out = mv;
    *ts_out = ts;
    return 1;
}

pbrec_status_t pbrec_check(const char *data, size_t len, const char *const *required, size_t n_required,
                           json_t **out, char *model_version, size_t mv_size, char *reason, size_t reason_size) {
    jscan_member_t m[JSCAN_MAX_MEMBERS];
    size_t n;
    const jscan_member_t *mv, *ts;
    int64_t ts_ms;
    *out = NULL;
    if (model_version && mv_size) model_version[0] = '\0';
    if (reason && reason_size > 0) reason[0] = '\0';
    if (fast_check(data, len, required, n_required, m, &n, &mv, &ts, &ts_ms)) {
        if (mv && model_version && mv->value_len < mv_size) {
            memcpy(model_version, mv->value, mv->value_len);
            model_version[mv->value_len] = '\0';
        }
        return PBREC_OK;
    }
    pbrec_status_t st = pbrec_validate(data, len, required, n_required, out, reason, reason_size);
    if (st == PBREC_OK && model_version) {
        const char *v = json_string_value(json_object_get(*out, PBREC_FIELD_MODEL_VERSION));
        if (v && strlen(v) < mv_size) memcpy(model_version, v, strlen(v) + 1);
    }
    return st;
}

/* Returns 1 if the scanner could decide everything (and filled out), 0 to ask jansson, -1 on OOM. */
static int prepare_fast(const char *data, size_t len, const char *const *required, size_t n_required,
                        const char *key_field, int64_t now_ns, pbrec_prepared_t *out) {
    jscan_member_t m[JSCAN_MAX_MEMBERS];
    size_t n;
    const jscan_member_t *mv, *ts;
    int64_t ts_ms;
    if (!fast_check(data, len, required, n_required, m, &n, &mv, &ts, &ts_ms)) return 0;
    const jscan_member_t *key = key_field ? find_member(m, n, key_field) : NULL;
    if (key && (key->type != JSCAN_STRING || key->value_escaped)) return 0; /* numbers: jansson's text */

    char added[32] = "";
    if (!ts) {
        pbrec_format_time(now_ns, added, sizeof added);
        if (added[0] == '\0' || pbrec_parse_time(added, &ts_ms) != 0) return 0;
    }
    /* The object's text without surrounding white space ('{' ... '}'). */
    size_t start = 0, end = len;
    while (start < end && data[start] != '{') start++;
    while (end > start && data[end - 1] != '}') end--;
    out->value = raw_value(data + start, end - start, ts ? NULL : added, n > 0, &out->value_len);
    out->key = key ? dup_bytes(key->value, key->value_len) : NULL;
    out->key_len = key ? key->value_len : 0;
    out->model_version = mv ? dup_bytes(mv->value, mv->value_len) : NULL;
    out->timestamp_ms = ts_ms;
    out->fast = 1;
    if (!out->value || (key && !out->key) || (mv && !out->model_version)) return -1;
    return 1;
}

pbrec_status_t pbrec_prepare(const char *data, size_t len, const char *const *required, size_t n_required,
                             const char *key_field, int64_t now_ns, int force_jansson, pbrec_prepared_t *out,
                             char *reason, size_t reason_size) {
    memset(out, 0, sizeof *out);
    if (reason && reason_size > 0) reason[0] = '\0';
    if (!force_jansson) {
        int r = prepare_fast(data, len, required, n_required, key_field, now_ns, out);
        if (r == 1) return PBREC_OK;
        pbrec_prepared_free(out);
        if (r < 0) {
            pbrec_reason(reason, reason_size, "out of memory");
            return PBREC_TOO_LARGE;
        }
    }
    json_t *obj = NULL;
    pbrec_status_t st = pbrec_validate(data, len, required, n_required, &obj, reason, reason_size);
    if (st != PBREC_OK) return st;
    if (pbrec_envelope_raw(obj, data, len, now_ns, key_field, &out->value, &out->value_len, &out->key,
                           &out->key_len, &out->timestamp_ms, reason, reason_size) != 0) {
        json_decref(obj);
        pbrec_prepared_free(out);
        return PBREC_BAD_FIELD;
    }
    const char *mv = json_string_value(json_object_get(obj, PBREC_FIELD_MODEL_VERSION));
    if (mv) {
        out->model_version = strdup(mv);
        if (!out->model_version) {
            json_decref(obj);
            pbrec_prepared_free(out);
            pbrec_reason(reason, reason_size, "out of memory");
            return PBREC_TOO_LARGE;
        }
    }
    json_decref(obj);
    return PBREC_OK;
}

void pbrec_prepared_free(pbrec_prepared_t *p) {
    free(p->value);
    free(p->key);
    free(p->model_version);
    memset(p, 0, sizeof *p);
}
