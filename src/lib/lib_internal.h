/* lib_internal.h: what libpredbridge's own files share, not installed. */
#ifndef PB_LIB_INTERNAL_H
#define PB_LIB_INTERNAL_H

#include "common/config.h"
#include "common/log.h"
#include "common/props.h"

#include <predbridge/consumer.h>
#include <librdkafka/rdkafka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct pb_config {
    props_t *props;
    pb_log_fn log_fn; /* pb_config_set_log_fn */
    void *log_opaque;
};

/* ---- logging (logging.c): the consumer's diagnostics, to the application's pb_log_fn ---- */

typedef struct pblib_log {
    pb_log_fn fn; /* NULL: nothing is logged */
    void *opaque;
    pblog_level_t level;
    pblog_format_t format;
} pblib_log_t;

/* 1 if a line at level would reach the application (so its fields are worth building). */
int pblib_log_on(const pblib_log_t *l, pblog_level_t level);

/* Formats a line (common/log.c's format, program "libpredbridge") and hands it to l->fn. */
void pblib_log(const pblib_log_t *l, pblog_level_t level, const char *event, const pblog_field_t *fields,
               size_t n_fields, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* A librdkafka log line (syslog level, facility) as event kafka.log, after pblib_redact. */
void pblib_log_kafka(const pblib_log_t *l, int syslog_level, const char *facility, const char *text);

/* Our level for a syslog level: 0-3 error, 4 warn, 5-6 info, 7 debug. */
pblog_level_t pblib_kafka_level(int syslog_level);

/* Defence in depth for text we did not write: from the first word that announces a secret
 * ("password", "passphrase", "secret", "PRIVATE KEY"), the rest of text becomes "[redacted]".
 * librdkafka already redacts its sensitive properties. text is modified in place; size is its buffer. */
void pblib_redact(char *text, size_t size);

/* ---- statistics (stats.c): counters and lag behind pb_consumer_stats ---- */

#define PBSTATS_ONE_(name, value, text) +1
enum { PBSTATS_N = 0 PB_STAT_MAP(PBSTATS_ONE_) };
#undef PBSTATS_ONE_

typedef struct pbstats_lag {
    char *topic;
    int32_t partition;
    int64_t lag;
} pbstats_lag_t;

/* Counters and expiry times are atomics (any thread reads them); the lag table is replaced under lock. */
#define PBSTATS_CERTS 2 /* PB_CERT_CLIENT, PB_CERT_CA */
typedef struct pbstats {
    _Atomic uint64_t counters[PBSTATS_N];
    _Atomic int64_t not_after[PBSTATS_CERTS]; /* by pb_cert_t; 0 while unknown */
    pthread_mutex_t lock;
    pbstats_lag_t *lag;
    size_t n_lag;
} pbstats_t;

void pbstats_init(pbstats_t *s);
void pbstats_destroy(pbstats_t *s);

static inline void pbstats_add(pbstats_t *s, pb_stat_t which) {
    atomic_fetch_add_explicit(&s->counters[which], 1, memory_order_relaxed);
}

/* Sets the expiry times of the material in use (Unix seconds, 0 if unknown). */
void pbstats_set_not_after(pbstats_t *s, int64_t client, int64_t ca);

/* The per-partition lag in librdkafka's statistics JSON: partitions of the assignment ("desired"),
 * sorted by topic and partition. Returns 0 with *out (caller frees with pbstats_lag_free; NULL when
 * there are none) and *n, or -1 if json is not a statistics object or memory ran out. Pure. */
__attribute__((warn_unused_result)) int pbstats_parse_lag(const char *json, size_t len, pbstats_lag_t **out,
                                                          size_t *n);
void pbstats_lag_free(pbstats_lag_t *lag, size_t n);

/* Replaces the lag table with lag[n] (taken over). */
void pbstats_set_lag(pbstats_t *s, pbstats_lag_t *lag, size_t n);

/* A pb_stats_t copy of s, or NULL when out of memory. */
pb_stats_t *pbstats_snapshot(pbstats_t *s);

/* The view behind pb_message_t: filled from one rd_kafka_message_t, pointing into it. */
struct pb_message {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    const void *value, *key;
    size_t value_len, key_len;
    rd_kafka_headers_t *headers; /* borrowed from the Kafka message; may be NULL */
    json_t *json;                /* parsed on first use (pb_message_json); freed after the callback */
    int valid;                   /* the record passed validation, so json can be parsed */
    char model_version[256];     /* from validation; "" if absent or longer */
    const char *id, *producer;   /* point into id_buf/producer_buf, or NULL */
    rd_kafka_message_t *source;  /* headers are parsed from it on first use (most callbacks never ask) */
    int headers_loaded, ids_loaded;
    char id_buf[128], producer_buf[256];
};

/* Fills msg from the parts of a Kafka message. Header texts (pb-id, pb-producer) are copied into msg
 * when they are shorter than its buffers and contain no NUL, else left NULL. */
void pbmsg_fill(struct pb_message *msg, const char *topic, int32_t partition, int64_t offset, int64_t timestamp_ms,
                const void *value, size_t value_len, const void *key, size_t key_len, rd_kafka_headers_t *headers,
                json_t *json, int valid);

/* Makes the view read its headers lazily from the Kafka message (instead of pbmsg_fill's headers). */
void pbmsg_set_source(struct pb_message *msg, rd_kafka_message_t *source);

/* The pb_err_t for a librdkafka error seen by a consumer (authentication, authorization, TLS, broker). */
pb_err_t pbmsg_map_kafka_error(rd_kafka_resp_err_t err);

/* As pbmsg_map_kafka_error, for a client-level error with librdkafka's text: a failed handshake is
 * PB_ERR_TLS whatever librdkafka calls it, except when the broker's alert says it refused our client
 * certificate, which is PB_ERR_AUTHENTICATION. */
pb_err_t pbmsg_classify_error(rd_kafka_resp_err_t err, const char *reason);

#endif
