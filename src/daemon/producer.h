/* producer.h: predbridged's Kafka producer: acks=all, idempotent, TLS policy applied, delivery
 * reports served on the daemon's event loop through librdkafka's queue event fd.
 *
 * Certificate rotation: pbd_producer_reload (on SIGHUP, and by itself when tls.watch sees the TLS
 * files change) checks the new material like start-up does and, if it is good, creates a new
 * librdkafka producer with it; new records go to that one. The previous producer keeps delivering
 * the records it holds (their reports reach the same callback, with the same opaques) for
 * producer.flush_timeout_ms; then what it still holds is purged and handed to the new one (the
 * previous one may never connect again: its certificate expired, was revoked, or the CA changed), and
 * it is destroyed once it holds none. If the material is bad, nothing changes but a log line and a count.
 * Each librdkafka producer is idempotent on its own: records are ordered per producer, and a record
 * handed to the new one may reach the broker before records the old one still retries. A purged
 * record that was in flight may have reached the broker already: sent again, it is a duplicate with
 * the same pb-id (libpredbridge drops it).
 *
 * Nothing accepted is given up because time passed or the producer broke: a fatal librdkafka error
 * (e.g. the idempotent producer's OUT_OF_ORDER_SEQUENCE_NUMBER) replaces the producer with a fresh one
 * (same material) that sends every record not delivered again; a record librdkafka fails because the
 * topic is not known (yet) or a local timeout passed is sent again after a backoff. Neither reaches
 * the delivery callback. Only the broker's refusals for good (too large, not authorised, invalid) do. */
#ifndef PB_DAEMON_PRODUCER_H
#define PB_DAEMON_PRODUCER_H

#include "common/config.h"

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pbd_producer pbd_producer_t;

/* One record to publish. value is malloc'd and owned by the producer once pbd_producer_send
 * returns PBD_SEND_OK (librdkafka frees it); on any other result it stays the caller's. */
typedef struct pbd_record {
    char *value;
    size_t value_len;
    const char *key; /* copied; NULL for none */
    size_t key_len;
    int64_t timestamp_ms;
    const char *id;            /* pb-id header */
    const char *model_version; /* pb-model-version header; NULL if absent */
} pbd_record_t;

typedef enum {
    PBD_SEND_OK = 0,    /* queued in librdkafka; its delivery report will follow */
    PBD_SEND_FULL = 1,  /* not now (librdkafka's queue is full, the topic is not known yet, records taken
                           back go first): stop reading and retry after deliveries or a second */
    PBD_SEND_ERROR = 2, /* refused for good (e.g. too large); reason says why */
} pbd_send_result_t;

/* Called on the event-loop thread for each delivery report: err 0 means the broker acknowledged
 * the record with acks=all. reason is readable text for failures; value is the record's value
 * (valid during the call), so a record refused for good can be kept somewhere. current is 1 if the
 * report comes from the producer that takes new records (not one retiring after a reload): only
 * such a delivery says the connections in use work. _PURGE_QUEUE/_PURGE_INFLIGHT: not delivered,
 * to be sent at the next start (shutdown). */
typedef void (*pbd_delivery_fn)(void *ctx, void *msg_opaque, rd_kafka_resp_err_t err, const char *reason,
                                const void *value, size_t value_len, int current);

/* Creates the producer. identity is our certificate's CN (pb-producer header). cfg must outlive the
 * producer (reloads read its TLS settings again). With cfg->tls_watch the TLS files are watched. Returns
 * NULL with errstr (naming the key or file at fault). Non-blocking: connecting happens in the background. */
pbd_producer_t *pbd_producer_new(const pbd_config_t *cfg, const char *identity, pbd_delivery_fn cb, void *cb_ctx,
                                 char *errstr, size_t errstr_size);

/* The acceptance order of a record, from its delivery opaque (ascending: earlier first). Records a
 * producer gives back (after a fatal error, a rotation's drain time, a retry-later failure) are sent
 * again in this order; without it, in the order librdkafka reported them, which puts a failed
 * producer's queued records before those it was transmitting. Runs on the event-loop thread. */
typedef uint64_t (*pbd_order_fn)(void *ctx, void *msg_opaque);
void pbd_producer_set_order(pbd_producer_t *p, pbd_order_fn order);

/* Where broker errors, TLS failure causes and librdkafka statistics (emitted when cfg->http_listen is
 * set) are counted; call before the first pbd_producer_serve. Callbacks run on the event loop. */
struct pbm_metrics;
void pbd_producer_set_metrics(pbd_producer_t *p, struct pbm_metrics *m);

/* A file descriptor that becomes readable when delivery reports or errors are waiting (of any of
 * its librdkafka producers), or when the watched TLS files changed. */
int pbd_producer_fd(const pbd_producer_t *p);

/* Serves everything waiting (delivery reports, errors) without blocking, replaces a producer that
 * failed for good, moves what retiring producers still hold after producer.flush_timeout_ms, closes
 * retired producers that hold no more records (this waits for librdkafka's threads to stop), sends
 * records taken back, and reloads the TLS material once changed files have been quiet for
 * tls.watch_debounce_ms. Call it also every second or so: the timed steps need no event. */
void pbd_producer_serve(pbd_producer_t *p);

/* Hands a record to the current producer. PBD_SEND_ERROR sets *err to librdkafka's reason (e.g.
 * MSG_SIZE_TOO_LARGE) and reason to its text; otherwise *err is 0. */
pbd_send_result_t pbd_producer_send(pbd_producer_t *p, pbd_record_t *rec, void *msg_opaque, rd_kafka_resp_err_t *err,
                                    char *reason, size_t reason_size);

/* Records handed to librdkafka and not yet reported, by the current and by retiring producers, and
 * records taken back to be sent again. */
int pbd_producer_in_flight(const pbd_producer_t *p);

/* Waits up to timeout_ms for every record to be reported (serving reports). Returns how many remain. */
int pbd_producer_flush(pbd_producer_t *p, int timeout_ms);

/* Reloads the TLS files (see the top of this file). trigger says why, for the log ("SIGHUP").
 * Logs the outcome (info: the new certificate's serial and expiry; error: the cause, naming the file),
 * counts it in predbridge_tls_reloads_total and, on success, sets the certificate expiry gauges.
 * Returns 0 if the new material is in use, -1 if the previous one stays. Event-loop thread; blocks
 * while the files are read and checked. */
int pbd_producer_reload(pbd_producer_t *p, const char *trigger);

/* Checks the TLS files again (expiry within tls.expiry.warn_days is a warning, an expired or
 * unusable certificate an error); called every tls.expiry.check_interval_s. Returns 0 if usable. */
int pbd_producer_check_material(pbd_producer_t *p);

/* Destroys the producer; records still in flight are purged and reported as failed first. */
void pbd_producer_free(pbd_producer_t *p);

#endif
