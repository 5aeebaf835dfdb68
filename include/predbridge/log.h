/* predbridge/log.h: the library's diagnostics, handed to the application one formatted line at a time. */
#ifndef PREDBRIDGE_LOG_H
#define PREDBRIDGE_LOG_H

#include <predbridge/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Severity, most severe first (the order of the log.level key). */
typedef enum pb_log_level {
    PB_LOG_ERROR = 0,
    PB_LOG_WARN = 1,
    PB_LOG_INFO = 2,
    PB_LOG_DEBUG = 3,
} pb_log_level_t;

/*
 * Receives one diagnostic line of a consumer, set with pb_config_set_log_fn. Without one the library
 * logs nothing (it never writes to stderr on its own). Only lines at log.level or more severe arrive.
 *
 * line: complete, without the final newline, formatted as log.format says:
 *   json: {"time":"2026-01-31T12:00:00.123Z","level":"warn","program":"libpredbridge",
 *          "event":"record.skipped", <fields>, "msg":"..."}, always valid JSON (UTF-8).
 *   text: "2026-01-31T12:00:00.123Z warn libpredbridge[pid] record.skipped: ... key=value ..."
 * event: the stable name of what happened, also in line:
 *   consumer.started (info)      group
 *   partitions.assigned (info), partitions.revoked (info)   count, protocol
 *   record.skipped (warn)        topic, partition, offset, reason (not_json, not_object, ...)
 *   record.duplicate (debug)     topic, partition, offset, id
 *   record.retry (debug)         topic, partition, offset
 *   consumer.error (error for PB_ERR_TLS and the authentication/authorization codes, else warn)
 *                                code (PB_ERR_...): what on_error also gets
 *   commit.failed (warn)         code
 *   consumer.closed (info)       received, delivered, duplicates, skipped
 *   kafka.log (librdkafka's own level)  facility: librdkafka's lines (kafka.debug=... adds more)
 * Lines never hold private keys, passphrases or record contents: a skipped record is named by
 * topic, partition, offset and reason only.
 *
 * Thread: the thread inside pb_consumer_new, poll, run or close (librdkafka's lines are forwarded
 * there too), so never concurrently for one consumer. line and event are valid during the call. The
 * function must not call pb_consumer_close or pb_consumer_destroy.
 */
typedef void (*pb_log_fn)(pb_log_level_t level, const char *event, const char *line, void *opaque);

#ifdef __cplusplus
}
#endif
#endif
