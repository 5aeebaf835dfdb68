/* lib_internal.h: what libpredbridge's own files share, not installed. */
#ifndef PB_LIB_INTERNAL_H
#define PB_LIB_INTERNAL_H

#include "common/config.h"
#include "common/props.h"

#include <predbridge/consumer.h>
#include <librdkafka/rdkafka.h>

struct pb_config {
    props_t *props;
};

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
