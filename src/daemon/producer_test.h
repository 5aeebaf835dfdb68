/* producer_test.h: test-only entry to the producer, for the librdkafka mock-cluster unit tests
 * (tests/unit/test_producer_mock.c). Not installed; nothing in predbridged includes it.
 *
 * The mock cluster (rdkafka_mock.h) speaks PLAINTEXT only, and predbridged never does: no config key,
 * kafka.* pass-through or environment variable reaches this function. */
#ifndef PB_DAEMON_PRODUCER_TEST_H
#define PB_DAEMON_PRODUCER_TEST_H

#include "producer.h"

/* As pbd_producer_new, with every setting the same (defaults, cfg's kafka.* pass-through, acks=all,
 * idempotence, message.timeout.ms=0, callbacks, event fd) except that security.protocol is plaintext
 * and no TLS setting is applied. Refuses (NULL, errstr) unless every cfg->bootstrap_servers entry is
 * 127.0.0.1:<port> and cfg->tls_watch is off. pbd_producer_reload then makes a new plaintext producer
 * from cfg as it is at that moment (a test may point cfg->bootstrap_servers at another loopback
 * cluster first, and set cfg->flush_timeout_ms), as does the replacement after a fatal error. */
pbd_producer_t *pbd_producer_new_plaintext_for_test(const pbd_config_t *cfg, const char *identity,
                                                    pbd_delivery_fn cb, void *cb_ctx, char *errstr,
                                                    size_t errstr_size);

/* Raises a fatal error (OUT_OF_ORDER_SEQUENCE_NUMBER, with reason) in the current librdkafka producer,
 * as rd_kafka_test_fatal_error does. Returns its result (0 if raised). */
int pbd_producer_fatal_error_for_test(pbd_producer_t *p, const char *reason);

/* The current librdkafka producer's number: 1 at start, +1 per reload or replacement. */
unsigned pbd_producer_generation_for_test(const pbd_producer_t *p);

/* Hands a line to the current librdkafka producer's log callback, as librdkafka would (level 0-7,
 * syslog's numbering): the mock cluster cannot be made to log at every level. */
void pbd_producer_rdkafka_log_for_test(pbd_producer_t *p, int level, const char *fac, const char *buf);

/* Hands an error to the current librdkafka producer's error callback, as librdkafka would (reason
 * names the broker first: "ssl://host:9093/1: ..."): the mock cluster fails every broker the same way. */
void pbd_producer_broker_error_for_test(pbd_producer_t *p, int err, const char *reason);

#endif
