/* predbridge/stats.h: a consumer's counters and per-partition lag, as a snapshot read through accessors. */
#ifndef PREDBRIDGE_STATS_H
#define PREDBRIDGE_STATS_H

#include <predbridge/error.h>
#include <predbridge/export.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * X-macro table of the counters: name, value, text name. Values never change; new counters are
 * added at the end. Every counter counts since pb_consumer_new and never decreases:
 *   received      records taken from Kafka and examined (a redelivery after PB_RETRY counts again)
 *   delivered     calls of on_prediction;  retried: of those, the ones that returned PB_RETRY
 *   duplicates    valid predictions dropped because their pb-id was in consumer.dedup.window
 *   skipped       records that are not valid predictions (PB_ERR_PARSE), and by reason:
 *                 skipped_not_json ... skipped_too_large (pbrec's classification, as on_error says)
 *   tls_failures  PB_ERR_TLS reports (handshake or broker verification failed)
 *   auth_failures PB_ERR_AUTHENTICATION and PB_ERR_AUTHORIZATION reports
 *   commits       offset commits the broker accepted; commit_failures: the ones that failed (their
 *                 offsets go with the next commit)
 *   tls_reloads   reloads of the TLS files that took effect (pb_consumer_reload_tls, or tls.watch);
 *                 tls_reload_failures: the ones refused (bad material: the connection kept its own)
 * So received = delivered + duplicates + skipped, and skipped = the sum of the skipped_* counters.
 */
#define PB_STAT_MAP(X)                                                                                       \
    X(RECEIVED, 0, "received")                                                                               \
    X(DELIVERED, 1, "delivered")                                                                             \
    X(RETRIED, 2, "retried")                                                                                 \
    X(DUPLICATES, 3, "duplicates")                                                                           \
    X(SKIPPED, 4, "skipped")                                                                                 \
    X(SKIPPED_NOT_JSON, 5, "skipped_not_json")                                                               \
    X(SKIPPED_NOT_OBJECT, 6, "skipped_not_object")                                                           \
    X(SKIPPED_INVALID_UTF8, 7, "skipped_invalid_utf8")                                                       \
    X(SKIPPED_MISSING_FIELD, 8, "skipped_missing_field")                                                     \
    X(SKIPPED_BAD_FIELD, 9, "skipped_bad_field")                                                             \
    X(SKIPPED_TOO_LARGE, 10, "skipped_too_large")                                                            \
    X(TLS_FAILURES, 11, "tls_failures")                                                                      \
    X(AUTH_FAILURES, 12, "auth_failures")                                                                    \
    X(COMMITS, 13, "commits")                                                                                \
    X(COMMIT_FAILURES, 14, "commit_failures")                                                                \
    X(TLS_RELOADS, 15, "tls_reloads")                                                                        \
    X(TLS_RELOAD_FAILURES, 16, "tls_reload_failures")

typedef enum pb_stat {
#define PB_STAT_ENUM_(name, value, text) PB_STAT_##name = value,
    PB_STAT_MAP(PB_STAT_ENUM_)
#undef PB_STAT_ENUM_
} pb_stat_t;

/* The counter's text name ("received"), or NULL past the last counter this library knows, so
 * `for (int i = 0; pb_stat_name(i); i++)` visits them all. Thread-safe, non-blocking. */
PB_API const char *pb_stat_name(pb_stat_t which);

/*
 * A snapshot taken by pb_consumer_stats (consumer.h). Ownership: the caller's; free it with
 * pb_stats_destroy. It is a copy: it does not change and may be read from any thread, also after the
 * consumer is destroyed. No accessor blocks or allocates; every one accepts NULL.
 */
typedef struct pb_stats pb_stats_t;

/* The counter's value; 0 for NULL or a counter this library does not know. */
PB_API uint64_t pb_stats_get(const pb_stats_t *s, pb_stat_t which);

/*
 * Consumer lag per assigned partition, from librdkafka's statistics (emitted every
 * kafka.statistics.interval.ms, 5000 unless configured; 0 turns them off and leaves no partitions):
 * the partition's end offset minus the group's committed offset, so 0 once everything fetched was
 * processed and committed. -1 while unknown (nothing committed yet, or no end offset yet). The figures
 * are as of the last statistics report, which is served inside poll/run.
 */
PB_API size_t pb_stats_partition_count(const pb_stats_t *s);
/* The idx-th partition (sorted by topic, then partition). topic stays valid until pb_stats_destroy.
 * Any out-pointer may be NULL. Returns PB_OK, or PB_ERR_NOT_FOUND past the end. */
PB_API pb_err_t pb_stats_partition_at(const pb_stats_t *s, size_t idx, const char **topic, int32_t *partition,
                                      int64_t *lag);

/*
 * The TLS certificates the consumer's connection uses, for their expiry times. Values never change;
 * new ones are added at the end.
 *   PB_CERT_CLIENT  the client certificate (tls.cert, or the one in tls.keystore)
 *   PB_CERT_CA      the CA of its verified chain (tls.ca and any chain in tls.cert) that expires first
 */
typedef enum pb_cert { PB_CERT_CLIENT = 0, PB_CERT_CA = 1 } pb_cert_t;

/*
 * When the certificate expires (its notAfter) as Unix time in seconds, for expiry alerts; 0 for NULL,
 * for a value this library does not know, or while unknown. It describes the material in use: set
 * by pb_consumer_new, changed by a TLS reload that took effect (pb_consumer_reload_tls, tls.watch),
 * kept by one that was refused, even though the files on disk then hold something else.
 */
PB_API int64_t pb_stats_cert_not_after(const pb_stats_t *s, pb_cert_t which);

/* Frees s. NULL is a no-op. */
PB_API void pb_stats_destroy(pb_stats_t *s);

#ifdef __cplusplus
}
#endif
#endif
