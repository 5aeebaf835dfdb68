/* log.c: leveled logging as text or JSON lines to stderr, one write(2) per line. */
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

/* Appends s to buf as JSON string content (without quotes). Returns the new length. */
static size_t json_escape(char *buf, size_t len, size_t cap, const char *s) {
    for (; *s && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c == '\n') {
            buf[len++] = '\\';
            buf[len++] = 'n';
        } else if (c < 0x20) {
            len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
        } else {
            buf[len++] = (char)c;
        }
    }
    return len;
}

void pblogv(pblog_level_t level, const char *event, const char *fmt, va_list ap) {
    if (level > g_level) return;
    char msg[2048], line[4608], ts[40];
    vsnprintf(msg, sizeof msg, fmt, ap);
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", now.tv_nsec / 1000000);
    size_t len;
    if (g_format == PBLOG_JSON) {
        len = (size_t)snprintf(line, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\",\"program\":\"%s\",\"event\":\"", ts,
                               level_names[level], g_program);
        len = json_escape(line, len, sizeof line, event);
        len += (size_t)snprintf(line + len, sizeof line - len, "\",\"msg\":\"");
        len = json_escape(line, len, sizeof line, msg);
        if (len + 3 > sizeof line) len = sizeof line - 3;
        line[len++] = '"';
        line[len++] = '}';
        line[len++] = '\n';
    } else {
        int w = snprintf(line, sizeof line, "%s %s %s[%d] %s: %s\n", ts, level_names[level], g_program, (int)getpid(),
                         event, msg);
        len = w < 0 ? 0 : (size_t)w >= sizeof line ? sizeof line - 1 : (size_t)w;
        if (len == sizeof line - 1) line[len - 1] = '\n';
    }
    ssize_t r = write(STDERR_FILENO, line, len);
    (void)r;
}

void pblog(pblog_level_t level, const char *event, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pblogv(level, event, fmt, ap);
    va_end(ap);
}
