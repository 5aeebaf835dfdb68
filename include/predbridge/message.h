/* predbridge/message.h: read-only view of one consumed prediction, valid during a callback. */
#ifndef PREDBRIDGE_MESSAGE_H
#define PREDBRIDGE_MESSAGE_H

#include <predbridge/error.h>
#include <predbridge/export.h>

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A message view. Ownership: the library owns it and everything its accessors return; all of it is
 * valid only until the callback that received it returns (copy what you keep; json_incref the JSON).
 * Threading: use it only on the thread running the callback. No accessor blocks or allocates.
 * Every accessor accepts NULL and then returns NULL / 0 / -1.
 */
typedef struct pb_message pb_message_t;

/* The parsed prediction, a JSON object (borrowed reference). NULL in on_error for a record that
 * is not a valid prediction. */
PB_API const json_t *pb_message_json(const pb_message_t *msg);
/* The record's "model_version" string, or NULL when absent. */
PB_API const char *pb_message_model_version(const pb_message_t *msg);
/* The message id set by predbridged (header pb-id), or NULL when absent. */
PB_API const char *pb_message_id(const pb_message_t *msg);
/* The producer identity (header pb-producer), or NULL when absent. */
PB_API const char *pb_message_producer(const pb_message_t *msg);
/* Kafka timestamp in milliseconds since the epoch, or -1 when the record has none. */
PB_API int64_t pb_message_timestamp_ms(const pb_message_t *msg);
/* The record key and its length in *len (len may be NULL); NULL when the record has no key. */
PB_API const void *pb_message_key(const pb_message_t *msg, size_t *len);
/* Topic name; never NULL for a non-NULL msg. */
PB_API const char *pb_message_topic(const pb_message_t *msg);
PB_API int32_t pb_message_partition(const pb_message_t *msg);
PB_API int64_t pb_message_offset(const pb_message_t *msg);
/* The raw bytes of the record as received, and their length in *len (len may be NULL). */
PB_API const void *pb_message_value(const pb_message_t *msg, size_t *len);
/* Number of Kafka headers. */
PB_API size_t pb_message_header_count(const pb_message_t *msg);
/* The idx-th header, in record order. Returns PB_OK, or PB_ERR_NOT_FOUND past the end. *value may be
 * NULL for a header without value. */
PB_API pb_err_t pb_message_header_at(const pb_message_t *msg, size_t idx, const char **name,
                                     const void **value, size_t *size);
/* The last header called name. Returns PB_OK or PB_ERR_NOT_FOUND. */
PB_API pb_err_t pb_message_header_get(const pb_message_t *msg, const char *name, const void **value,
                                      size_t *size);

#ifdef __cplusplus
}
#endif
#endif
