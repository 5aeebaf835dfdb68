/* logging.c: the consumer's diagnostics as predbridged's log lines (text or JSON), handed to the
 * application's pb_log_fn instead of written to stderr; librdkafka's own lines join them. */
#include "lib_internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

_Static_assert((int)PB_LOG_ERROR == (int)PBLOG_ERROR && (int)PB_LOG_WARN == (int)PBLOG_WARN &&
                   (int)PB_LOG_INFO == (int)PBLOG_INFO && (int)PB_LOG_DEBUG == (int)PBLOG_DEBUG,
               "pb_log_level_t and pblog_level_t agree");

int pblib_log_on(const pblib_log_t *l, pblog_level_t level) {
    return l && l->fn && level <= l->level;
}

static void pblib_emit(const pblib_log_t *l, pblog_level_t level, const char *event,
                       const pblog_field_t *fields, size_t n_fields, const char *msg) {
    char line[4096];
    size_t len =
        pblog_format(line, sizeof line, l->format, level, "libpredbridge", event, fields, n_fields, msg);
    if (len == 0) return;
    line[len - 1] = '\0'; /* the application gets the line without its newline */
    l->fn((pb_log_level_t)level, event, line, l->opaque);
}

void pblib_log(const pblib_log_t *l, pblog_level_t level, const char *event, const pblog_field_t *fields,
               size_t n_fields, const char *fmt, ...) {
    if (!pblib_log_on(l, level)) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pblib_emit(l, level, event, fields, n_fields, msg);
}

pblog_level_t pblib_kafka_level(int syslog_level) {
    if (syslog_level <= 3) return PBLOG_ERROR;
    if (syslog_level == 4) return PBLOG_WARN;
    if (syslog_level <= 6) return PBLOG_INFO;
    return PBLOG_DEBUG;
}

void pblib_redact(char *text, size_t size) {
    static const char *const words[] = {"password", "passphrase", "secret", "private key"};
    char *cut = NULL;
    size_t word = 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char *hit = strcasestr(text, words[i]);
        if (hit && (!cut || hit < cut)) cut = hit, word = strlen(words[i]);
    }
    /* Keep the word ("ssl.key.password=[redacted]" says what was there), never what follows it;
     * without room for the mark the text is still cut there. */
    if (cut) snprintf(cut + word, size - (size_t)(cut - text) - word, "=[redacted]");
}

void pblib_log_kafka(const pblib_log_t *l, int syslog_level, const char *facility, const char *text) {
    pblog_level_t level = pblib_kafka_level(syslog_level);
    if (!pblib_log_on(l, level)) return;
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", text ? text : "");
    pblib_redact(msg, sizeof msg);
    pblog_field_t f[] = {{.key = "facility", .str = facility ? facility : ""}};
    pblib_emit(l, level, "kafka.log", f, 1, msg);
}
