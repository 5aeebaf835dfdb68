/* log.h: leveled logging as text or JSON lines to stderr; never given secrets or payloads. */
#ifndef PB_COMMON_LOG_H
#define PB_COMMON_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <time.h>

typedef enum { PBLOG_ERROR = 0, PBLOG_WARN = 1, PBLOG_INFO = 2, PBLOG_DEBUG = 3 } pblog_level_t;
typedef enum { PBLOG_TEXT = 0, PBLOG_JSON = 1 } pblog_format_t;

/* Process-wide settings; call before threads start. */
void pblog_setup(pblog_level_t level, pblog_format_t format, const char *program);
pblog_level_t pblog_level(void);

/* A structured field of a log line: a string (str != NULL) or an integer (num). Never a secret or
 * a payload. */
typedef struct pblog_field {
    const char *key;
    const char *str;
    long long num;
} pblog_field_t;

/* Logs an event: `event` is a short stable identifier ("socket.refused"), fmt the human text.
 * Thread-safe: one write(2) per line. */
void pblog(pblog_level_t level, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void pblogv(pblog_level_t level, const char *event, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
/* As pblog, with fields for a machine to read: JSON lines carry them as members; text
 * lines stay as pblog writes them, since the message already says what the fields hold. */
void pblog_fields(pblog_level_t level, const char *event, const pblog_field_t *fields, size_t n_fields,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * Formats one line, newline included, into line[cap] (cap >= 64) and returns its length. JSON:
 * {"time","level","program","event", the fields in order, "msg"}, always a valid JSON object with
 * valid UTF-8 (invalid bytes become U+FFFD; what does not fit is cut from the end of msg, or a field
 * is dropped whole). Text: "time level program[pid] event: msg key=value...". Pure but for the
 * clock and pid.
 */
size_t pblog_format(char *line, size_t cap, pblog_format_t format, pblog_level_t level, const char *program,
                    const char *event, const pblog_field_t *fields, size_t n_fields, const char *msg);

/* Copies src into dst[size] as valid UTF-8, by the rule of the JSON lines: a byte that begins no
 * well-formed sequence becomes U+FFFD; what does not fit is cut at a whole character. For text given
 * to jansson, whose json_string() returns NULL for invalid UTF-8 (3 * strlen(src) + 1 bytes always
 * suffice). Returns dst. */
char *pblog_utf8_clean(char *dst, size_t size, const char *src);

/* "error", "warn", "info" or "debug". */
const char *pblog_level_name(pblog_level_t level);

int pblog_level_parse(const char *s, pblog_level_t *out);
int pblog_format_parse(const char *s, pblog_format_t *out);

/* A callback-shaped sink (e.g. for pbtls_check_material's warnings): logs message as a warning
 * under the event name ctx points to. */
void pblog_warn_to(void *event, const char *message);

/* At most `per_sec` lines a second for one kind of event; the rest are counted. Returns 1 when a
 * line may be logged now. When a new second begins, *dropped gets how many lines the previous one
 * suppressed (0 if none), for the caller to say so. */
typedef struct pblog_limit {
    time_t sec;
    unsigned logged, suppressed;
} pblog_limit_t;
int pblog_limit_allow(pblog_limit_t *l, time_t now, unsigned per_sec, unsigned *dropped);
/* For a periodic tick: once the second of the last suppressed line is over, returns how many it
 * suppressed (and forgets them, so pblog_limit_allow does not report them again); else 0. Without
 * it a burst followed by silence is never reported. */
unsigned pblog_limit_flush(pblog_limit_t *l, time_t now);

#define PBLOG_E(ev, ...) pblog(PBLOG_ERROR, ev, __VA_ARGS__)
#define PBLOG_W(ev, ...) pblog(PBLOG_WARN, ev, __VA_ARGS__)
#define PBLOG_I(ev, ...) pblog(PBLOG_INFO, ev, __VA_ARGS__)
#define PBLOG_D(ev, ...) \
    do { if (pblog_level() >= PBLOG_DEBUG) pblog(PBLOG_DEBUG, ev, __VA_ARGS__); } while (0)

#endif
