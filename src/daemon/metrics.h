/* metrics.h: predbridged's counters, gauges, health and readiness, and their Prometheus text form. */
#ifndef PB_DAEMON_METRICS_H
#define PB_DAEMON_METRICS_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * Threading: the event loop (and librdkafka callbacks it serves through rd_kafka_poll) writes;
 * the HTTP server's thread reads (pbm_render, pbm_healthy, pbm_ready). Counters are C11 atomics;
 * the per-broker tables and the readiness reason are behind a mutex. No call blocks for long.
 */
typedef struct pbm_metrics pbm_metrics_t;

/* Why a line was rejected: the label values of predbridge_predictions_rejected_total{reason}. */
typedef enum {
    PBM_REJ_NOT_JSON,
    PBM_REJ_NOT_OBJECT,
    PBM_REJ_INVALID_UTF8,
    PBM_REJ_MISSING_FIELD,
    PBM_REJ_BAD_FIELD,
    PBM_REJ_TOO_LARGE,
    PBM_REJ_PARTIAL,
    PBM_REJ_OTHER,
    PBM_REJ_N
} pbm_reject_t;

/* Why the broker did not take a record: predbridge_predictions_failed_total{reason}. */
typedef enum {
    PBM_FAIL_PURGED, /* still queued at shutdown after producer.flush_timeout_ms */
    PBM_FAIL_TOO_LARGE,
    PBM_FAIL_AUTHORIZATION,
    PBM_FAIL_UNKNOWN_TOPIC,
    PBM_FAIL_FATAL,
    PBM_FAIL_OTHER,
    PBM_FAIL_N
} pbm_fail_t;

/* Why a TLS handshake with a broker failed: predbridge_tls_handshake_failures_total{cause}. */
typedef enum {
    PBM_TLS_PROTOCOL_VERSION,    /* the broker does not speak TLS 1.3 */
    PBM_TLS_CERTIFICATE_VERIFY,  /* the broker's chain did not verify against tls.ca (or expired, revoked) */
    PBM_TLS_HOSTNAME,            /* the broker's certificate is for another name */
    PBM_TLS_PIN,                 /* the broker's key matches none of tls.pins */
    PBM_TLS_CLIENT_CERT_REFUSED, /* the broker refused our client certificate */
    PBM_TLS_OTHER,
    PBM_TLS_N
} pbm_tls_cause_t;

/* How long the event loop may stay silent before /healthz fails (it ticks every second). */
#define PBM_HEALTH_STALE_MS 5000

pbm_metrics_t *pbm_new(void);
void pbm_free(pbm_metrics_t *m);

/* ---- writers (event-loop thread) ---- */
void pbm_received(pbm_metrics_t *m);
/* reason_text is the rejection text ("missing_field: ..."): its leading status name is the label. */
void pbm_rejected(pbm_metrics_t *m, const char *reason_text);
void pbm_accepted(pbm_metrics_t *m);
/* A delivery report: err 0 is delivered (and proves a working broker connection: ready). */
void pbm_delivery(pbm_metrics_t *m, rd_kafka_resp_err_t err);
/* As pbm_delivery, for a report from a producer retiring after a reload: counted, but it says nothing
 * about the connections in use, so readiness stays as it is. */
void pbm_delivery_retiring(pbm_metrics_t *m, rd_kafka_resp_err_t err);
void pbm_connection_opened(pbm_metrics_t *m);
void pbm_connection_closed(pbm_metrics_t *m);
void pbm_refused_peer(pbm_metrics_t *m);
void pbm_paused(pbm_metrics_t *m);
/* Records recovered from the spool at start: in flight until delivered. */
void pbm_replaying(pbm_metrics_t *m, unsigned long long records);
/* The spool's size; full makes /readyz answer not ready. */
void pbm_set_spool(pbm_metrics_t *m, unsigned long long bytes, unsigned long long records, int full,
                   unsigned long long set_aside, unsigned long long sync_failures);
void pbm_tls_failure(pbm_metrics_t *m, pbm_tls_cause_t cause, unsigned long count);
void pbm_authentication_failure(pbm_metrics_t *m);
void pbm_authorization_failure(pbm_metrics_t *m);
/* The broker connection failed in a way that makes us not ready (TLS, authentication, all
 * brokers down); cause is the text /readyz shows. Ready again after a delivery or statistics
 * showing a broker up. */
void pbm_not_ready(pbm_metrics_t *m, const char *cause);
/* librdkafka's producer hit a fatal error (e.g. the idempotent-write ACL is missing): not ready
 * for good, whatever the connections' state. */
void pbm_fatal(pbm_metrics_t *m, const char *cause);
/* A new producer took over with reloaded material: what made the old one fail for good (pbm_fatal)
 * may not hold for it. */
void pbm_fresh_producer(pbm_metrics_t *m);
/* Records wait out a retry-later cause (cause is the text /readyz shows): not ready, whatever the
 * connections' state, until pbm_release. */
void pbm_hold(pbm_metrics_t *m, const char *cause);
void pbm_release(pbm_metrics_t *m);
/* As pbm_not_ready, for librdkafka's "all brokers are down", which follows the error that says
 * why: an earlier, more specific cause is kept as the reason. */
void pbm_brokers_down(pbm_metrics_t *m, const char *cause);
/* A reload of the TLS material (predbridge_tls_reloads_total{result}): ok 1 if it took effect,
 * 0 if it was refused and the previous material stays in use. */
void pbm_tls_reload(pbm_metrics_t *m, int ok);
/* Expiry of our client certificate and of the CA (0: unknown), from pbtls_check_material; set again
 * after each successful reload. */
void pbm_set_cert_expiry(pbm_metrics_t *m, time_t client_not_after, time_t ca_not_after);
/* The TLS version and cipher suite last negotiated with a broker ("host:port"), for
 * predbridge_broker_tls_info; replaces what an earlier call said about the same broker. At most 32
 * brokers; later ones are left out. */
void pbm_broker_tls(pbm_metrics_t *m, const char *broker, const char *version, const char *cipher);
/* The event loop ran at mono_ms (CLOCK_MONOTONIC milliseconds). */
void pbm_heartbeat(pbm_metrics_t *m, int64_t mono_ms);
/* librdkafka's statistics JSON: per-broker state and round-trip time, queue depth. Updates
 * readiness (ready if a broker is UP, i.e. connected over TLS with our certificate accepted).
 * Returns 0, or -1 if the JSON is not what librdkafka emits. */
__attribute__((warn_unused_result)) int pbm_update_from_stats(pbm_metrics_t *m, const char *json, size_t len);

/* ---- pure classifiers ---- */
pbm_reject_t pbm_reject_reason(const char *reason_text);
pbm_fail_t pbm_fail_reason(rd_kafka_resp_err_t err);
/* From librdkafka's error text and, if the verifier refused the broker, its cause ("" if not). */
pbm_tls_cause_t pbm_tls_classify(const char *error_text, const char *verifier_failure);
/* 1 if err (from error_cb or a delivery report) is an authorization refusal by the broker. */
int pbm_is_authorization_error(rd_kafka_resp_err_t err);
const char *pbm_tls_cause_name(pbm_tls_cause_t c);

/* ---- readers (any thread) ---- */
/* The Prometheus text exposition (format 0.0.4), malloc'd and NUL-terminated; *len its length. NULL on OOM.
 */
char *pbm_render(pbm_metrics_t *m, size_t *len);
/* 1 if the event loop ran within PBM_HEALTH_STALE_MS of now_mono_ms; else 0 with why. */
int pbm_healthy(pbm_metrics_t *m, int64_t now_mono_ms, char *why, size_t why_size);
/* 1 if a broker connection is up (TLS, our certificate accepted); else 0 with why. */
int pbm_ready(pbm_metrics_t *m, char *why, size_t why_size);

#endif
