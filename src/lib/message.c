/* message.c: the pb_message_t view over a consumed Kafka message, and error-code mapping. */
#include "lib_internal.h"

#include <string.h>

/* Copies a header's text when it fits and is a clean string; the view never hands out unterminated bytes. */
static const char *header_text(rd_kafka_headers_t *h, const char *name, char *buf, size_t size) {
    const void *v = NULL;
    size_t n = 0;
    if (!h || rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR || !v) return NULL;
    if (n >= size || memchr(v, '\0', n)) return NULL;
    memcpy(buf, v, n);
    buf[n] = '\0';
    return buf;
}

void pbmsg_fill(struct pb_message *msg, const char *topic, int32_t partition, int64_t offset, int64_t timestamp_ms,
                const void *value, size_t value_len, const void *key, size_t key_len, rd_kafka_headers_t *headers,
                json_t *json, int valid) {
    msg->topic = topic ? topic : "";
    msg->partition = partition;
    msg->offset = offset;
    msg->timestamp_ms = timestamp_ms;
    msg->value = value;
    msg->value_len = value ? value_len : 0;
    msg->key = key;
    msg->key_len = key ? key_len : 0;
    msg->headers = headers;
    msg->json = json;
    msg->valid = valid;
    msg->model_version[0] = '\0';
    msg->id = msg->producer = NULL;
    msg->source = NULL;
    msg->headers_loaded = 1;
    msg->ids_loaded = 0;
}

void pbmsg_set_source(struct pb_message *msg, rd_kafka_message_t *source) {
    msg->source = source;
    msg->headers = NULL;
    msg->headers_loaded = 0;
    msg->ids_loaded = 0;
}

/* The headers, parsed on first use: librdkafka allocates while parsing them. The view is the
 * library's own, const only towards the application. */
static rd_kafka_headers_t *msg_headers(const pb_message_t *msg) {
    struct pb_message *m = (struct pb_message *)msg;
    if (!m->headers_loaded) {
        rd_kafka_headers_t *h = NULL;
        if (m->source && rd_kafka_message_headers(m->source, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) m->headers = h;
        m->headers_loaded = 1;
    }
    return m->headers;
}

/* Bits of ids_loaded: which header texts were looked up (each on first use: the consumer asks every
 * message for its id, few applications for the producer). */
#define MSG_ID_LOADED 1
#define MSG_PRODUCER_LOADED 2

static void msg_ids(const pb_message_t *msg, int which) {
    struct pb_message *m = (struct pb_message *)msg;
    if (m->ids_loaded & which) return;
    rd_kafka_headers_t *h = msg_headers(msg);
    if (which == MSG_ID_LOADED)
        m->id = header_text(h, "pb-id", m->id_buf, sizeof m->id_buf);
    else
        m->producer = header_text(h, "pb-producer", m->producer_buf, sizeof m->producer_buf);
    m->ids_loaded |= which;
}

pb_err_t pbmsg_map_kafka_error(rd_kafka_resp_err_t err) {
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return PB_OK;
    case RD_KAFKA_RESP_ERR__SSL:
        return PB_ERR_TLS;
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
        return PB_ERR_AUTHENTICATION;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        return PB_ERR_AUTHORIZATION;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
        return PB_ERR_TIMEOUT;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return PB_ERR_TOO_LARGE;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return PB_ERR_NOT_FOUND;
    default:
        return PB_ERR_BROKER;
    }
}

pb_err_t pbmsg_classify_error(rd_kafka_resp_err_t err, const char *reason) {
    static const char *const refused_us[] = {"alert certificate required", "alert certificate unknown",
                                             "alert bad certificate", "alert unknown ca",
                                             "alert certificate expired", "alert certificate revoked"};
    if (!reason) reason = "";
    int handshake = err == RD_KAFKA_RESP_ERR__SSL ||
                    (err == RD_KAFKA_RESP_ERR__TRANSPORT && (strstr(reason, "SSL") || strstr(reason, "TLS")));
    if (!handshake) return pbmsg_map_kafka_error(err);
    for (size_t i = 0; i < sizeof refused_us / sizeof refused_us[0]; i++)
        if (strstr(reason, refused_us[i])) return PB_ERR_AUTHENTICATION;
    return PB_ERR_TLS;
}

const json_t *pb_message_json(const pb_message_t *msg) {
    if (!msg || !msg->valid) return NULL;
    if (!msg->json) {
        /* Parsed on first use: applications that read only a few fields, or only the bytes, do
         * not pay for a tree. The record was validated, so this parse succeeds. The view is the
         * library's own (const only towards the application). */
        struct pb_message *m = (struct pb_message *)msg;
        m->json = json_loadb(m->value ? m->value : "", m->value_len, JSON_REJECT_DUPLICATES, NULL);
    }
    return msg->json;
}

const char *pb_message_model_version(const pb_message_t *msg) {
    if (!msg || !msg->valid) return NULL;
    if (msg->model_version[0]) return msg->model_version;
    const json_t *j = pb_message_json(msg);
    return j ? json_string_value(json_object_get(j, "model_version")) : NULL;
}

const char *pb_message_id(const pb_message_t *msg) {
    if (!msg) return NULL;
    msg_ids(msg, MSG_ID_LOADED);
    return msg->id;
}

const char *pb_message_producer(const pb_message_t *msg) {
    if (!msg) return NULL;
    msg_ids(msg, MSG_PRODUCER_LOADED);
    return msg->producer;
}

int64_t pb_message_timestamp_ms(const pb_message_t *msg) {
    return msg ? msg->timestamp_ms : -1;
}

const void *pb_message_key(const pb_message_t *msg, size_t *len) {
    if (len) *len = msg ? msg->key_len : 0;
    return msg ? msg->key : NULL;
}

const char *pb_message_topic(const pb_message_t *msg) {
    return msg ? msg->topic : NULL;
}

int32_t pb_message_partition(const pb_message_t *msg) {
    return msg ? msg->partition : -1;
}

int64_t pb_message_offset(const pb_message_t *msg) {
    return msg ? msg->offset : -1;
}

const void *pb_message_value(const pb_message_t *msg, size_t *len) {
    if (len) *len = msg ? msg->value_len : 0;
    return msg ? msg->value : NULL;
}

size_t pb_message_header_count(const pb_message_t *msg) {
    rd_kafka_headers_t *h = msg ? msg_headers(msg) : NULL;
    return h ? rd_kafka_header_cnt(h) : 0;
}

pb_err_t pb_message_header_at(const pb_message_t *msg, size_t idx, const char **name, const void **value,
                              size_t *size) {
    const char *n = NULL;
    const void *v = NULL;
    size_t s = 0;
    rd_kafka_headers_t *h = msg ? msg_headers(msg) : NULL;
    if (!h || rd_kafka_header_get_all(h, idx, &n, &v, &s) != RD_KAFKA_RESP_ERR_NO_ERROR) return PB_ERR_NOT_FOUND;
    if (name) *name = n;
    if (value) *value = v;
    if (size) *size = s;
    return PB_OK;
}

pb_err_t pb_message_header_get(const pb_message_t *msg, const char *name, const void **value, size_t *size) {
    const void *v = NULL;
    size_t s = 0;
    rd_kafka_headers_t *h = msg ? msg_headers(msg) : NULL;
    if (!h || !name || rd_kafka_header_get_last(h, name, &v, &s) != RD_KAFKA_RESP_ERR_NO_ERROR) return PB_ERR_NOT_FOUND;
    if (value) *value = v;
    if (size) *size = s;
    return PB_OK;
}
