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
 * keeps retrying), and with tls.watch: PB_ERR_CERTIFICATE (a reload of changed TLS files was refused;
 * the cause names the file) or PB_ERR_IO (the file watch failed and stopped). cause is a readable
 * text, valid during the call; msg is NULL unless the error is about one record.
 */
typedef void (*pb_error_fn)(pb_err_t code, const char *cause, const pb_message_t *msg, void *opaque);

/*
 * The consumer. Threading: pb_consumer_poll, pb_consumer_run, pb_consumer_reload_tls,
 * pb_consumer_close and pb_consumer_destroy must be called from one thread at a time (normally one
 * application thread); both callbacks run on that thread, inside poll/run/close (on_error also inside
 * reload_tls), and so does the log function (see predbridge/log.h; also inside pb_consumer_new and
 * reload_tls). pb_consumer_stop may be called from any thread and from a signal handler,
 * pb_consumer_stats from any thread. A callback may call pb_consumer_stop and pb_consumer_stats, never
 * reload_tls (it returns PB_ERR_STATE), close or destroy.
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
 * was called, or PB_ERR_STATE after pb_consumer_close. With tls.watch, a reload of changed TLS files
 * runs inside (see pb_consumer_reload_tls), and may keep it past timeout_ms while the group is left. */
PB_API pb_err_t pb_consumer_poll(pb_consumer_t *c, int timeout_ms);

/* Dispatches until pb_consumer_stop is called. Blocks. Returns PB_OK when stopped, PB_ERR_STATE after
 * pb_consumer_close. Does not close: call pb_consumer_close afterwards to commit and leave. */
PB_API pb_err_t pb_consumer_run(pb_consumer_t *c);

/* Makes run return and poll return PB_ERR_STOPPED, promptly, from now on. Thread-safe and
 * async-signal-safe (an atomic flag and one write(2)); never blocks; c must stay alive. */
PB_API void pb_consumer_stop(pb_consumer_t *c);

/*
 * Moves the consumer to new TLS material without a restart and without losing its place. Reads the
 * configured TLS files again (the same paths: tls.ca, tls.cert, tls.key or tls.keystore, their
 * passphrase files, tls.crl; the configuration itself is not read again) and checks them as
 * pb_consumer_new does: readable, key matches certificate, chain to tls.ca, within its validity,
 * usable for client authentication.
 *  - If the check fails, nothing changes: the consumer keeps consuming over its current connection,
 *    the failure is logged (event tls.reload) and counted (PB_STAT_TLS_RELOAD_FAILURES), and errstr
 *    has the cause naming the key and the file ("tls.key '/etc/tls/tls.key': does not match ...").
 *  - If it passes: what on_prediction processed is committed (synchronously), the current librdkafka
 *    consumer leaves the group, and a new one made with the new material joins it and resumes from the
 *    committed offsets (counted as PB_STAT_TLS_RELOADS). Messages fetched but not yet delivered are
 *    fetched again from there: none is lost, none delivered twice. The dedup window, the counters and
 *    the callbacks carry over. A message waiting out a PB_RETRY backoff comes again at once, as after
 *    a rebalance. Should that commit fail (a broken connection is often why one reloads), the reload
 *    still happens and what was processed since the last commit may come again (the dedup window drops
 *    those with a pb-id); the log says so and commit_failures counts it.
 * With tls.watch = true, pb_consumer_poll and pb_consumer_run do this by themselves once changed files
 * have been quiet for tls.watch_debounce_ms (a failure then reaches on_error with the same cause).
 * Returns PB_OK; PB_ERR_CERTIFICATE (the material is unusable, or librdkafka could not load it),
 * PB_ERR_NOMEM, PB_ERR_STATE (after pb_consumer_close, or from inside a callback), or
 * PB_ERR_INVALID_ARG; the cause in errstr (may be NULL), which never holds key material or
 * passphrases. Threading: as pb_consumer_poll; on_error and the log function may run inside it,
 * on_prediction does not. Blocks while the old consumer commits and leaves the group (normally well
 * under a second; at most about kafka.session.timeout.ms); the new one joins during the next polls.
 */
PB_API pb_err_t pb_consumer_reload_tls(pb_consumer_t *c, char *errstr, size_t errstr_size);

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
