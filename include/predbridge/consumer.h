/* predbridge/consumer.h: a Kafka consumer that verifies the broker and hands predictions to callbacks. */
#ifndef PREDBRIDGE_CONSUMER_H
#define PREDBRIDGE_CONSUMER_H

#include <predbridge/config.h>
#include <predbridge/error.h>
#include <predbridge/export.h>
#include <predbridge/message.h>
#include <predbridge/stats.h>

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What on_prediction wants done with a message. */
typedef enum pb_action {
    PB_COMMIT = 0, /* processed: its offset may be committed */
    PB_RETRY = 1,  /* not processed: deliver this same message again after consumer.retry_backoff_ms;
                      later messages of its partition wait (order is kept) */
} pb_action_t;

/* Called once per valid prediction, in offset order within a partition. */
typedef pb_action_t (*pb_prediction_fn)(const pb_message_t *msg, void *opaque);

/*
 * Called for problems: PB_ERR_TLS (handshake or broker verification failed; the cause names what:
 * CA, host name, pin, protocol version), PB_ERR_AUTHENTICATION, PB_ERR_AUTHORIZATION (topic or group
 * ACL), PB_ERR_PARSE (a record that is not a valid prediction; msg is its view, without JSON; the
 * record is skipped and committed), PB_ERR_BROKER (other broker or network errors; the consumer
 * keeps retrying). cause is a readable text, valid during the call; msg is NULL unless the error is
 * about one record.
 */
typedef void (*pb_error_fn)(pb_err_t code, const char *cause, const pb_message_t *msg, void *opaque);

/*
 * The consumer. Threading: pb_consumer_poll, pb_consumer_run, pb_consumer_close and
 * pb_consumer_destroy must be called from one thread at a time (normally one application thread);
 * both callbacks run on that thread, inside poll/run/close, and so does the log function (see
 * predbridge/log.h; also inside pb_consumer_new). pb_consumer_stop may be called from any thread
 * and from a signal handler, pb_consumer_stats from any thread. A callback may call
 * pb_consumer_stop and pb_consumer_stats, never close or destroy.
 * The application must call poll or run at least every max.poll.interval.ms (kafka.*, 300 s by
 * default), or the group considers it dead and moves its partitions.
 * Guarantees: at-least-once. An offset is committed only after on_prediction returned PB_COMMIT
 * (periodically, every consumer.commit_interval_ms, and synchronously in pb_consumer_close). Nothing
 * is delivered from a broker that did not pass verification (TLS 1.3, CA chain, host name, pins).
 *
 * Duplicate suppression (on by default): predbridged gives each prediction a unique id (header
 * pb-id) and, after a crash, publishes again from its spool what the broker may already hold, so a
 * topic can hold the same id twice. The consumer remembers the ids of the last consumer.dedup.window
 * predictions it handled (default 100000, over all its partitions together; 0 turns this off), and a
 * valid prediction whose id is among them is not handed to on_prediction: it is committed like a
 * processed one (never redelivered) and counted (PB_STAT_DUPLICATES). Precisely:
 *  - an id is remembered once on_prediction returned PB_COMMIT for it; after PB_RETRY it is not,
 *    so the redelivery of a retried message is delivered, never taken for its own duplicate;
 *  - records without a pb-id (or with one longer than 55 bytes) are never suppressed; records that
 *    are not valid predictions are skipped as PB_ERR_PARSE whatever their id;
 *  - the window belongs to this consumer instance and lives in memory (64-96 bytes per id,
 *    allocated in pb_consumer_new). Copies consumed by different instances (another process of the
 *    group after a rebalance, or a restart) are both delivered. predbridged's message.key_field puts
 *    both copies in the same partition, hence the same consumer;
 *  - a partition rewound on purpose (offsets reset to re-process) is suppressed too while its ids
 *    are in the window: set consumer.dedup.window = 0 for such a replay.
 */
typedef struct pb_consumer pb_consumer_t;

/* Creates a consumer from conf (read, not kept: the caller still destroys conf) and subscribes to
 * the configured topics. on_prediction is required; on_error may be NULL; opaque is passed to both.
 * Checks the whole configuration and the client certificate files; does not wait for the broker
 * (connection failures arrive later through on_error). Returns NULL with the cause in errstr
 * (naming key and file:line for configuration errors). Does not call the callbacks. */
PB_API pb_consumer_t *pb_consumer_new(const pb_config_t *conf, pb_prediction_fn on_prediction,
                                      pb_error_fn on_error, void *opaque, char *errstr, size_t errstr_size);

/* Waits up to timeout_ms (-1: forever) for messages and events, and dispatches what is there to the
 * callbacks. Blocks. Returns PB_OK (also when nothing came), PB_ERR_STOPPED once pb_consumer_stop
 * was called, or PB_ERR_STATE after pb_consumer_close. */
PB_API pb_err_t pb_consumer_poll(pb_consumer_t *c, int timeout_ms);

/* Dispatches until pb_consumer_stop is called. Blocks. Returns PB_OK when stopped, PB_ERR_STATE after
 * pb_consumer_close. Does not close: call pb_consumer_close afterwards to commit and leave. */
PB_API pb_err_t pb_consumer_run(pb_consumer_t *c);

/* Makes run return and poll return PB_ERR_STOPPED, promptly, from now on. Thread-safe and
 * async-signal-safe (an atomic flag and one write(2)); never blocks; c must stay alive. */
PB_API void pb_consumer_stop(pb_consumer_t *c);

/* Commits the offsets of everything processed, synchronously, and leaves the group, so the
 * partitions move to other members at once. Blocks until the broker answered (or the group
 * session times out). Returns PB_OK, or the error of the commit with the cause in errstr (may be
 * NULL). Messages fetched but not yet delivered are not committed. Afterwards only
 * pb_consumer_destroy is valid. */
PB_API pb_err_t pb_consumer_close(pb_consumer_t *c, char *errstr, size_t errstr_size);

/* A snapshot of c's counters and per-partition lag (predbridge/stats.h), which the caller frees with
 * pb_stats_destroy; NULL for a NULL c or when out of memory. Thread-safe: may be called from any
 * thread at any time between pb_consumer_new and pb_consumer_destroy, also during poll/run/close and
 * inside the callbacks. Every counter is read atomically; a snapshot taken while another thread
 * dispatches may show a record in one counter and not yet in the next (received before delivered),
 * one taken on the dispatching thread between polls, or after close, is consistent. Does not block
 * on the network (a short mutex guards the lag table); allocates. */
PB_API pb_stats_t *pb_consumer_stats(pb_consumer_t *c);

/* Frees the consumer. Without a prior pb_consumer_close it behaves like a crash as far as the group
 * is concerned: nothing more is committed, and what was delivered since the last periodic commit is
 * delivered again to the group. Blocks while librdkafka's threads stop. NULL is a no-op. */
PB_API void pb_consumer_destroy(pb_consumer_t *c);

#ifdef __cplusplus
}
#endif
#endif
