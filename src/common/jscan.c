/* jscan.c: an allocation-free JSON scanner for predbridged's hot path (see jscan.h). */
#include "common/jscan.h"

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_DEPTH 64
#define MAX_OPEN_KEYS 512

typedef struct key_span {
    const char *p;
    size_t len;
} key_span_t;

typedef struct scanner {
    const char *p, *end;
    int depth;
    key_span_t keys[MAX_OPEN_KEYS]; /* keys of the objects currently open, for duplicate checks */
    size_t n_keys;
} scanner_t;

/* -1 everywhere below means "fall back". */

static void skip_ws(scanner_t *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* At the opening quote. Leaves p after the closing quote; body is what is between them. */
/* 1 if none of the 8 bytes of w ends or escapes a string: no '"', no '\\', no control character.
 * (Bytes >= 0x80 are plain here: the caller has checked the line is UTF-8.) */
static int plain8(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
    uint64_t has_quote = (q - ones) & ~q & high;
    uint64_t has_backslash = (b - ones) & ~b & high;
    uint64_t has_control = (w - ones * 0x20) & ~w & high;
    return (has_quote | has_backslash | has_control) == 0;
}

/* The first byte at or after p that ends or escapes a string (or end): 16 bytes a step where SSE2
 * is there (every x86-64), then 8. */
static const char *skip_plain(const char *p, const char *end) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1F);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                   _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl)); /* bytes <= 0x1F */
        int mask = _mm_movemask_epi8(hit);
        if (mask) return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
    uint64_t w;
    while (end - p >= 8 && (memcpy(&w, p, 8), plain8(w))) p += 8;
    return p;
}

static int scan_string(scanner_t *s, const char **body, size_t *body_len, int *escaped) {
    const char *p = ++s->p;
    *escaped = 0;
    for (;;) {
        p = skip_plain(p, s->end);
        if (p >= s->end) return -1;
        unsigned char c = (unsigned char)*p;
        if (c == '"') break;
        if (c < 0x20) return -1; /* control characters must be escaped */
        if (c != '\\') {
            p++;
            continue;
        }
        *escaped = 1;
        if (p + 1 >= s->end) return -1;
        char e = p[1];
        if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
            p += 2;
            continue;
        }
        if (e != 'u' || s->end - p < 6) return -1;
        unsigned cp;
        if (hex4(p + 2, &cp)) return -1;
        p += 6;
        if (cp == 0) return -1; /* jansson refuses \u0000 without JSON_ALLOW_NUL */
        if (cp >= 0xDC00 && cp <= 0xDFFF) return -1;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (s->end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            p += 6;
        }
    }
    *body = s->p;
    *body_len = (size_t)(p - s->p);
    s->p = p + 1;
    return 0;
}

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* RFC 8259 number; falls back where jansson could find it out of range (long integers,
 * exponents of more than two digits, very long mantissas). */
static int scan_number(scanner_t *s) {
    const char *p = s->p, *start = p;
    if (p < s->end && *p == '-') p++;
    if (p >= s->end) return -1;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < s->end && is_digit(*p)) p++;
    } else {
        return -1;
    }
    size_t int_digits = (size_t)(p - start) - (*start == '-');
    int is_real = 0;
    if (p < s->end && *p == '.') {
        p++;
        if (p >= s->end || !is_digit(*p)) return -1;
        while (p < s->end && is_digit(*p)) p++;
        is_real = 1;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < s->end && (*p == '+' || *p == '-')) p++;
        const char *ed = p;
        while (p < s->end && is_digit(*p)) p++;
        if (p == ed || p - ed > 2) return -1;
        is_real = 1;
    }
    if (!is_real && int_digits >= 19) {
        /* jansson refuses integers outside int64: 19 digits fit up to 9223372036854775807
         * (-9223372036854775808); nanosecond timestamps have 19 digits, so this is common. */
        const char *digits = start + (*start == '-');
        const char *limit = *start == '-' ? "9223372036854775808" : "9223372036854775807";
        if (int_digits > 19 || memcmp(digits, limit, 19) > 0) return -1;
    }
    if (p - start > 40) return -1;
    s->p = p;
    return 0;
}

static int literal(scanner_t *s, const char *word, size_t n) {
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return -1;
    s->p += n;
    return 0;
}

static int scan_value(scanner_t *s, jscan_type_t *type);

/* At '{'. top: members go to out (at most JSCAN_MAX_MEMBERS). */
static int scan_object(scanner_t *s, jscan_member_t *out, size_t *n_out) {
    if (++s->depth > MAX_DEPTH) return -1;
    s->p++;
    size_t first_key = s->n_keys, n = 0;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        s->depth--;
        if (n_out) *n_out = 0;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"') return -1;
        const char *key;
        size_t key_len;
        int esc;
        if (scan_string(s, &key, &key_len, &esc) || esc) return -1;
        for (size_t i = first_key; i < s->n_keys; i++)
            if (s->keys[i].len == key_len && memcmp(s->keys[i].p, key, key_len) == 0) return -1; /* duplicate */
        if (s->n_keys == MAX_OPEN_KEYS) return -1;
        s->keys[s->n_keys++] = (key_span_t){key, key_len};
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') return -1;
        s->p++;
        skip_ws(s);
        const char *vstart = s->p;
        jscan_type_t type;
        const char *sbody = NULL;
        size_t slen = 0;
        int sesc = 0;
        if (s->p < s->end && *s->p == '"') {
            if (scan_string(s, &sbody, &slen, &sesc)) return -1;
            type = JSCAN_STRING;
        } else if (scan_value(s, &type)) {
            return -1;
        }
        if (out) {
            if (n == JSCAN_MAX_MEMBERS) return -1;
            out[n] = (jscan_member_t){.key = key, .key_len = key_len, .type = type};
            if (type == JSCAN_STRING) {
                out[n].value = sbody;
                out[n].value_len = slen;
                out[n].value_escaped = sesc;
            } else {
                out[n].value = vstart;
                out[n].value_len = (size_t)(s->p - vstart);
            }
        }
        n++;
        skip_ws(s);
        if (s->p >= s->end) return -1;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p != '}') return -1;
        s->p++;
        break;
    }
    s->n_keys = first_key; /* this object's keys are no longer open */
    s->depth--;
    if (n_out) *n_out = n;
    return 0;
}

static int scan_array(scanner_t *s) {
    if (++s->depth > MAX_DEPTH) return -1;
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        s->depth--;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        jscan_type_t t;
        if (scan_value(s, &t)) return -1;
        skip_ws(s);
        if (s->p >= s->end) return -1;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p != ']') return -1;
        s->p++;
        break;
    }
    s->depth--;
    return 0;
}

static int scan_value(scanner_t *s, jscan_type_t *type) {
    if (s->p >= s->end) return -1;
    const char *b;
    size_t l;
    int e;
    switch (*s->p) {
    case '"': *type = JSCAN_STRING; return scan_string(s, &b, &l, &e);
    case '{': *type = JSCAN_OBJECT; return scan_object(s, NULL, NULL);
    case '[': *type = JSCAN_ARRAY; return scan_array(s);
    case 't': *type = JSCAN_TRUE; return literal(s, "true", 4);
    case 'f': *type = JSCAN_FALSE; return literal(s, "false", 5);
    case 'n': *type = JSCAN_NULL; return literal(s, "null", 4);
    default: *type = JSCAN_NUMBER; return scan_number(s);
    }
}

jscan_result_t jscan_object(const char *data, size_t len, jscan_member_t members[JSCAN_MAX_MEMBERS], size_t *n) {
    scanner_t s;
    s.p = data;
    s.end = data + len;
    s.depth = 0;
    s.n_keys = 0;
    *n = 0;
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{') return JSCAN_FALLBACK;
    if (scan_object(&s, members, n)) return JSCAN_FALLBACK;
    skip_ws(&s);
    if (s.p != s.end) return JSCAN_FALLBACK;
    return JSCAN_OK;
}
