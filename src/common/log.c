/* log.c: leveled logging as text or JSON lines: the one line format of predbridged (to stderr, one
 * write(2) per line) and of libpredbridge (to the application's callback). */
#include "common/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static pblog_level_t g_level = PBLOG_INFO;
static pblog_format_t g_format = PBLOG_TEXT;
static const char *g_program = "predbridge";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void pblog_setup(pblog_level_t level, pblog_format_t format, const char *program) {
    g_level = level;
    g_format = format;
    if (program) g_program = program;
}

pblog_level_t pblog_level(void) {
    return g_level;
}

int pblog_level_parse(const char *s, pblog_level_t *out) {
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(s, level_names[i])) {
            *out = (pblog_level_t)i;
            return 0;
        }
    }
    if (!strcasecmp(s, "warning")) {
        *out = PBLOG_WARN;
        return 0;
    }
    return -1;
}

int pblog_format_parse(const char *s, pblog_format_t *out) {
    if (!strcasecmp(s, "text")) *out = PBLOG_TEXT;
    else if (!strcasecmp(s, "json")) *out = PBLOG_JSON;
    else return -1;
    return 0;
}

const char *pblog_level_name(pblog_level_t level) {
    return (unsigned)level < 4 ? level_names[level] : "info";
}

/* A line being built. Every append keeps PBLOG_TAIL bytes free for what closes the line: the quote
 * of a cut string, '}', '\n' and the NUL. */
#define PBLOG_TAIL 4
typedef struct pblog_buf {
    char *p;
    size_t cap, len;
} pblog_buf_t;

static int buf_put(pblog_buf_t *b, const char *s, size_t n) {
    if (b->len + n + PBLOG_TAIL > b->cap) return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, surrogates or values past
 * U+10FFFF), or 0 if there is none. */
static size_t utf8_seq(const unsigned char *s) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (n && (s[1] < lo || s[1] > hi)) return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

char *pblog_utf8_clean(char *dst, size_t size, const char *src) {
    const unsigned char *s = (const unsigned char *)src;
    size_t j = 0;
    if (size == 0) return dst;
    while (*s) {
        size_t n = utf8_seq(s);
        const char *out = n ? (const char *)s : "\xEF\xBF\xBD"; /* U+FFFD */
        size_t out_len = n ? n : 3;
        if (j + out_len >= size) break;
        memcpy(dst + j, out, out_len);
        j += out_len;
        s += n ? n : 1;
    }
    dst[j] = '\0';
    return dst;
}

/* Appends s as JSON string content, whole characters only. Returns -1 if it had to stop early. */
static int buf_put_escaped(pblog_buf_t *b, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        char esc[8];
        const char *out = esc;
        size_t n = utf8_seq(s), used = n ? n : 1;
        if (*s == '"' || *s == '\\') {
            esc[0] = '\\', esc[1] = (char)*s, n = 2;
        } else if (*s == '\n') {
            memcpy(esc, "\\n", 2), n = 2;
        } else if (*s < 0x20) {
            n = (size_t)snprintf(esc, sizeof esc, "\\u%04x", *s);
        } else if (n == 0) {
            memcpy(esc, "\\ufffd", 6), n = 6;
        } else {
            out = (const char *)s;
        }
        if (buf_put(b, out, n) != 0) return -1;
        s += used;
    }
    return 0;
}

/* Appends `,"key":"value"` (or a number when str is NULL), whole or not at all. */
static void buf_member(pblog_buf_t *b, const char *key, const char *str, long long num) {
    size_t mark = b->len;
    char digits[32];
    int ok = buf_put(b, b->len > 1 ? ",\"" : "\"", b->len > 1 ? 2 : 1) == 0 && buf_put_escaped(b, key) == 0;
    if (ok && str)
        ok = buf_put(b, "\":\"", 3) == 0 && buf_put_escaped(b, str) == 0 && buf_put(b, "\"", 1) == 0;
    else if (ok)
        ok = buf_put(b, "\":", 2) == 0 &&
             buf_put(b, digits, (size_t)snprintf(digits, sizeof digits, "%lld", num)) == 0;
    if (!ok) b->len = mark;
}

static size_t format_json(pblog_buf_t *b, const char *ts, pblog_level_t level, const char *program,
                          const char *event, const pblog_field_t *fields, size_t n_fields, const char *msg) {
    b->p[b->len++] = '{';
    buf_member(b, "time", ts, 0);
    buf_member(b, "level", pblog_level_name(level), 0);
    buf_member(b, "program", program, 0);
    buf_member(b, "event", event, 0);
    for (size_t i = 0; i < n_fields; i++)
        if (fields[i].key) buf_member(b, fields[i].key, fields[i].str, fields[i].num);
    /* msg comes last and is cut rather than dropped: the tail has room for its closing quote. */
    size_t mark = b->len;
    if (buf_put(b, b->len > 1 ? ",\"msg\":\"" : "\"msg\":\"", b->len > 1 ? 8 : 7) == 0) {
        (void)buf_put_escaped(b, msg); /* cut at a character if need be */
        b->p[b->len++] = '"';
    } else {
        b->len = mark;
    }
    b->p[b->len++] = '}';
    b->p[b->len++] = '\n';
    b->p[b->len] = '\0';
    return b->len;
}

static size_t format_text(pblog_buf_t *b, const char *ts, pblog_level_t level, const char *program,
                          const char *event, const pblog_field_t *fields, size_t n_fields, const char *msg) {
    size_t cap = b->cap - 1; /* room for the newline */
    int w = snprintf(b->p, cap, "%s %s %s[%d] %s: %s", ts, pblog_level_name(level), program, (int)getpid(),
                     event, msg);
    size_t len = w < 0 ? 0 : (size_t)w >= cap ? cap - 1 : (size_t)w;
    for (size_t i = 0; i < n_fields && len < cap - 1; i++) {
        if (!fields[i].key) continue;
        w = fields[i].str ? snprintf(b->p + len, cap - len, " %s=%s", fields[i].key, fields[i].str)
                          : snprintf(b->p + len, cap - len, " %s=%lld", fields[i].key, fields[i].num);
        len = w < 0 ? len : len + (size_t)w >= cap ? cap - 1 : len + (size_t)w;
    }
    b->p[len++] = '\n';
    b->p[len] = '\0';
    return len;
}

size_t pblog_format(char *line, size_t cap, pblog_format_t format, pblog_level_t level, const char *program,
                    const char *event, const pblog_field_t *fields, size_t n_fields, const char *msg) {
    char ts[40];
    if (!line || cap < 64) return 0;
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", now.tv_nsec / 1000000);
    pblog_buf_t b = {.p = line, .cap = cap, .len = 0};
    if (!program) program = "";
    if (!event) event = "";
    if (!msg) msg = "";
    if (format == PBLOG_JSON) return format_json(&b, ts, level, program, event, fields, n_fields, msg);
    return format_text(&b, ts, level, program, event, fields, n_fields, msg);
}

static void emit(pblog_level_t level, const char *event, const pblog_field_t *fields, size_t n_fields,
                 const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
static void emit(pblog_level_t level, const char *event, const pblog_field_t *fields, size_t n_fields,
                 const char *fmt, va_list ap) {
    if (level > g_level) return;
    char msg[2048], line[4608];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (g_format != PBLOG_JSON) n_fields = 0; /* the text already names them */
    size_t len = pblog_format(line, sizeof line, g_format, level, g_program, event, fields, n_fields, msg);
    ssize_t r = write(STDERR_FILENO, line, len);
    (void)r;
}

void pblogv(pblog_level_t level, const char *event, const char *fmt, va_list ap) {
    emit(level, event, NULL, 0, fmt, ap);
}

void pblog_fields(pblog_level_t level, const char *event, const pblog_field_t *fields, size_t n_fields,
                  const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emit(level, event, fields, n_fields, fmt, ap);
    va_end(ap);
}

void pblog(pblog_level_t level, const char *event, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pblogv(level, event, fmt, ap);
    va_end(ap);
}

int pblog_limit_allow(pblog_limit_t *l, time_t now, unsigned per_sec, unsigned *dropped) {
    *dropped = 0;
    if (now != l->sec) {
        *dropped = l->suppressed;
        l->sec = now;
        l->logged = l->suppressed = 0;
    }
    if (l->logged < per_sec) {
        l->logged++;
        return 1;
    }
    l->suppressed++;
    return 0;
}

unsigned pblog_limit_flush(pblog_limit_t *l, time_t now) {
    if (now == l->sec) return 0;
    unsigned n = l->suppressed;
    l->suppressed = 0;
    return n;
}

void pblog_warn_to(void *event, const char *message) {
    pblog(PBLOG_WARN, (const char *)event, "%s", message);
}
