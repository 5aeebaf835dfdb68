/* itest.h: helpers for integration tests against the local mTLS broker (scripts/kafka-local.sh). */
#ifndef PB_ITEST_H
#define PB_ITEST_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct itest_env {
    char bootstrap[256];         /* MTLS listener */
    char bootstrap_tls12[256];   /* TLS 1.2-only listener */
    char bootstrap_badhost[256]; /* listener with a wrong-host-name certificate */
    char cert_dir[1024];
    char topic[256];
    char local_dir[1024];
} itest_env_t;

/* Reads $PB_LOCAL_DIR/broker.env (default: <source>/.local). Fails the test if absent. */
const itest_env_t *itest_env(void);

/* Path of a file in the test PKI; static buffer rotated over 8 calls. */
const char *itest_cert(const char *file);

/* A librdkafka configuration for bootstrap with mTLS as `who` (cert/key files "<who>.crt/.key";
 * NULL: no client certificate). Records errors for itest_errors(). Caller owns the result. */
rd_kafka_conf_t *itest_conf(const char *bootstrap, const char *who);

/* Sets key=value on conf, failing the test on error. */
void itest_set(rd_kafka_conf_t *conf, const char *key, const char *value);

/* All error strings reported by error callbacks of clients made with itest_conf, joined by '\n'. */
const char *itest_errors(void);
void itest_errors_clear(void);

/* Creates a topic with the admin certificate and waits until it has leaders. Name is made
 * unique: "<prefix>-<pid>-<n>", written into out. */
void itest_create_topic(const char *prefix, int partitions, char *out, size_t out_size);

/* Sum of the high watermarks of all partitions of topic, read with the admin certificate. */
int64_t itest_topic_size(const char *topic);

/* Produces one message; returns the delivery report's error, or RD_KAFKA_RESP_ERR__TIMED_OUT
 * if none arrived within timeout_ms. */
rd_kafka_resp_err_t itest_produce_one(rd_kafka_conf_t *conf, const char *topic, const void *value,
                                      size_t len, int timeout_ms);

/* Number of lines of the broker's authentication log (auth.log) that contain needle. */
int itest_auth_log_count(const char *needle);

/* Monotonic clock in milliseconds. */
int64_t itest_now_ms(void);

/* Runs a shell command, returns its exit status (or -1). */
int itest_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
