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
    char bootstrap_revoked[256]; /* certificate revoked by cert_dir/revoked.crl; "" if absent */
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

/* The rig's broker: "pause" stops its process (an outage: connections close, ports stay), "resume"
 * starts it again (scripts/kafka-local.sh). Exits the test if the script fails. */
void itest_broker(const char *verb);
/* A cmocka teardown: resumes the broker if the test paused it and failed before resuming. */
int itest_broker_resume_if_paused(void **state);

/* Runs a shell command with stderr joined to stdout, which goes into out (truncated to fit); returns
 * its exit status (or -1). */
int itest_run(char *out, size_t out_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

/* ---- predbridged under test ---- */

typedef struct itest_daemon {
    int pid;
    char dir[512];         /* temporary directory: config, socket, log */
    char config[600];
    char socket_path[600];
    char log_path[600];
    char topic[256];
} itest_daemon_t;

/* Writes a config for the local broker into a fresh temporary directory: socket there, topic
 * `topic`, the predbridged client certificate, plus extra_lines (may override earlier keys:
 * later lines are written after a marker so duplicates must be avoided by the caller). */
void itest_daemon_config(itest_daemon_t *d, const char *topic, const char *extra_lines);

/* Starts predbridged with d->config (stderr to d->log_path) and waits until its socket accepts
 * connections. Returns 0, or -1 if it exited first (its exit status in *status if not NULL). */
int itest_daemon_start(itest_daemon_t *d, int *status);

/* Runs predbridged with args to completion (for --check-config and start-up failures); returns its
 * exit status, stderr in out. */
int itest_daemon_run(const char *args, char *out, size_t out_size);

/* Sends SIGTERM and waits up to timeout_ms for exit; returns the exit status or -1 on time-out (then kills). */
int itest_daemon_stop(itest_daemon_t *d, int timeout_ms);

/* Waits until the daemon's log contains needle (inotify, no polling); returns 1 if found in time. */
int itest_daemon_log_wait(itest_daemon_t *d, const char *needle, int timeout_ms);

/* Connects to the daemon's socket; returns the fd or -1. */
int itest_connect(const char *socket_path);

/* Writes all of buf to fd (blocking). Returns 0 or -1. */
int itest_write_all(int fd, const void *buf, size_t len);

/* A consumed record, copied. */
typedef struct itest_record {
    char *value;
    size_t value_len;
    char *key;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    char content_type[64], id[64], producer[128], model_version[128];
} itest_record_t;

/* Reads topic from the beginning as predbridge-consumer until `want` records arrived or timeout_ms
 * passed; returns the records (caller frees with itest_records_free) and their count in *n. */
itest_record_t *itest_consume(const char *topic, size_t want, int timeout_ms, size_t *n);
void itest_records_free(itest_record_t *r, size_t n);

/* ---- predbridged's HTTP endpoint, and what its logs must not contain ---- */

/* Like itest_daemon_config + itest_daemon_start, with http.listen on a free loopback port (the one it
 * logs is returned) and librdkafka statistics every 500 ms, then extra (config lines, may be NULL).
 * Exits the test if the daemon does not start. */
int itest_daemon_start_http(itest_daemon_t *d, const char *topic, const char *extra);

/* The port a running predbridged configured with http.listen logs it listens on; exits the test if it
 * logs none within 10 s. (itest_daemon_start_http calls it; for tests that start the daemon themselves.) */
int itest_daemon_http_port(itest_daemon_t *d);

/* An HTTP/1.0 request to 127.0.0.1:port: *status and body (NUL-terminated, cut to body_size).
 * Returns 0, or -1 if there was no HTTP answer. */
int itest_http_request(int port, const char *method, const char *path, int *status, char *body, size_t body_size);

/* The value of one sample ("name" or "name{labels}") of a Prometheus text exposition, -1 if absent. */
long long itest_metric(const char *text, const char *series);

/* What secret the file at path contains: the passphrase (if not NULL), a PEM private key marker, or any
 * 16 characters of a base64 line of key_file (if not NULL); NULL if none. */
const char *itest_secret_in(const char *path, const char *key_file, const char *passphrase);
