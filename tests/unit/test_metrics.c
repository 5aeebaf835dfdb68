/* test_metrics: predbridged's counters, classifiers, readiness and exact Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
/* cmocka needs the three above first */
#include <cmocka.h>

#include "common/config.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fails unless text has line as one whole line. */
static void assert_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n') return;
    }
    fail_msg("missing line '%s' in:\n%s", line, text);
}

static void assert_no_substring(const char *text, const char *needle) {
    if (strstr(text, needle)) fail_msg("unexpected '%s' in:\n%s", needle, text);
}

static char *render(pbm_metrics_t *m) {
    size_t len = 0;
    char *t = pbm_render(m, &len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    assert_true(len > 0 && t[len - 1] == '\n');
    return t;
}

static void test_metrics_fresh_render_has_every_family_at_zero(void **state) {
    (void)state;
    pbm_metrics_t *m = pbm_new();
    char *t = render(m);
    assert_line(t, "# HELP predbridge_predictions_received_total Prediction lines read from the socket.");
    assert_line(t, "# TYPE predbridge_predictions_received_total counter");
    assert_line(t, "predbridge_predictions_received_total 0");
    assert_line(t, "predbridge_predictions_rejected_total{reason=\"not_json\"} 0");
    assert_line(t, "predbridge_predictions_rejected_total{reason=\"partial\"} 0");
    assert_line(t, "predbridge_predictions_accepted_total 0");
    assert_line(t, "predbridge_predictions_delivered_total 0");
    assert_line(t, "predbridge_predictions_failed_total{reason=\"purged\"} 0");
    assert_line(t, "# TYPE predbridge_predictions_in_flight gauge");
    assert_line(t, "predbridge_predictions_in_flight 0");
    assert_line(t, "predbridge_socket_connections 0");
    assert_line(t, "predbridge_socket_refused_peers_total 0");
    assert_line(t, "predbridge_tls_handshake_failures_total{cause=\"protocol_version\"} 0");
    assert_line(t, "predbridge_tls_handshake_failures_total{cause=\"client_cert_refused\"} 0");
    assert_line(t, "predbridge_broker_authentication_failures_total 0");
    assert_line(t, "predbridge_broker_authorization_failures_total 0");
    assert_line(t, "predbridge_tls_reloads_total{result=\"ok\"} 0");
    assert_line(t, "predbridge_tls_reloads_total{result=\"failed\"} 0");
    assert_line(t, "predbridge_ready 0");
    /* Unknown until set or until librdkafka's first statistics: absent rather than a fake 0. */
    assert_no_substring(t, "expiry_timestamp_seconds");
    assert_no_substring(t, "predbridge_broker_up");
    assert_no_substring(t, "predbridge_producer_queue_messages");
    assert_no_substring(t, "predbridge_broker_tls_info");
    free(t);
    pbm_free(m);
}

static void test_metrics_workload_counts_render_exactly(void **state) {
    (void)state;
    pbm_metrics_t *m = pbm_new();
    for (int i = 0; i < 7; i++)
        pbm_received(m);
    pbm_rejected(m, "not_json: '[' or '{' expected near 'x' at column 1");
    pbm_rejected(m, "missing_field: missing required field 'prediction'");
    pbm_rejected(m, "too_large: line is longer than message.max_bytes (64 bytes)");
    pbm_rejected(m, "partial: 3 bytes without a final newline at end of stream, discarded");
    pbm_rejected(m, "MSG_SIZE_TOO_LARGE: Broker: Message size too large");
    pbm_rejected(m, "key field 'k' is an object");
    for (int i = 0; i < 4; i++)
        pbm_accepted(m);
    pbm_delivery(m, RD_KAFKA_RESP_ERR_NO_ERROR);
    pbm_delivery(m, RD_KAFKA_RESP_ERR_NO_ERROR);
    pbm_delivery(m, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    pbm_connection_opened(m);
    pbm_connection_opened(m);
    pbm_connection_closed(m);
    pbm_refused_peer(m);
    pbm_tls_failure(m, PBM_TLS_HOSTNAME, 3);
    pbm_tls_failure(m, PBM_TLS_PROTOCOL_VERSION, 1);
    pbm_authentication_failure(m);
    pbm_set_cert_expiry(m, 1766894987, 2110974987);
    pbm_tls_reload(m, 0);
    pbm_tls_reload(m, 1);
    pbm_tls_reload(m, 0);
    pbm_set_cert_expiry(m, 1866894987, 2110974987); /* a reload replaces the previous expiry */
    char *t = render(m);
    assert_line(t, "predbridge_predictions_received_total 7");
    assert_line(t, "predbridge_predictions_rejected_total{reason=\"not_json\"} 1");
    assert_line(t, "predbridge_predictions_rejected_total{reason=\"not_object\"} 0");
    assert_line(t, "predbridge_predictions_rejected_total{reason=\"missing_field\"} 1");
    assert_line(t, "predbridge_predictions_rejected_total{reason=\"too_large\"} 2");
    assert_line(t, "predbridge_predictions_rejected_total{reason=\"partial\"} 1");
    assert_line(t, "predbridge_predictions_rejected_total{reason=\"other\"} 1");
    assert_line(t, "predbridge_predictions_accepted_total 4");
    assert_line(t, "predbridge_predictions_delivered_total 2");
    assert_line(t, "predbridge_predictions_failed_total{reason=\"authorization\"} 1");
    assert_line(t, "predbridge_predictions_failed_total{reason=\"other\"} 0");
    assert_line(t, "predbridge_predictions_in_flight 1");
    assert_line(t, "predbridge_socket_connections 1");
    assert_line(t, "predbridge_socket_connections_total 2");
    assert_line(t, "predbridge_socket_refused_peers_total 1");
    assert_line(t, "predbridge_tls_handshake_failures_total{cause=\"hostname\"} 3");
    assert_line(t, "predbridge_tls_handshake_failures_total{cause=\"protocol_version\"} 1");
    assert_line(t, "predbridge_tls_handshake_failures_total{cause=\"pin\"} 0");
    assert_line(t, "predbridge_broker_authentication_failures_total 1");
    assert_line(t, "predbridge_broker_authorization_failures_total 1");
    assert_line(t, "# TYPE predbridge_tls_certificate_expiry_timestamp_seconds gauge");
    assert_line(t, "predbridge_tls_certificate_expiry_timestamp_seconds{certificate=\"client\"} 1866894987");
    assert_line(t, "predbridge_tls_certificate_expiry_timestamp_seconds{certificate=\"ca\"} 2110974987");
    assert_line(t, "predbridge_tls_reloads_total{result=\"ok\"} 1");
    assert_line(t, "predbridge_tls_reloads_total{result=\"failed\"} 2");
    /* A delivery proved the connection. */
    assert_line(t, "predbridge_ready 1");
    free(t);
    pbm_free(m);
}

static const char stats_up[] =
    "{\"name\":\"predbridged#producer-1\",\"type\":\"producer\",\"msg_cnt\":12,\"msg_size\":3456,"
    "\"brokers\":{"
    "\"ssl://localhost:9093/1\":{\"name\":\"ssl://localhost:9093/1\",\"nodeid\":1,\"source\":\"learned\","
    "\"state\":\"UP\",\"rtt\":{\"min\":1000,\"max\":5000,\"avg\":2500,\"cnt\":4}},"
    "\"ssl://localhost:9093/bootstrap\":{\"name\":\"ssl://localhost:9093/bootstrap\",\"nodeid\":-1,"
    "\"source\":\"configured\",\"state\":\"INIT\",\"rtt\":{\"avg\":0}},"
    "\"GroupCoordinator\":{\"name\":\"GroupCoordinator\",\"nodeid\":-1,\"source\":\"logical\",\"state\":"
    "\"UP\"},"
    "\"a\\\"b\":{\"source\":\"learned\",\"state\":\"DOWN\"}"
    "}}";

static void test_metrics_statistics_give_broker_state_rtt_and_queue(void **state) {
    (void)state;
    pbm_metrics_t *m = pbm_new();
    assert_int_equal(pbm_update_from_stats(m, stats_up, strlen(stats_up)), 0);
    char *t = render(m);
    assert_line(t, "predbridge_producer_queue_messages 12");
    assert_line(t, "predbridge_producer_queue_bytes 3456");
    assert_line(t, "# TYPE predbridge_broker_up gauge");
    assert_line(t, "predbridge_broker_up{broker=\"ssl://localhost:9093/1\"} 1");
    assert_line(t, "predbridge_broker_up{broker=\"ssl://localhost:9093/bootstrap\"} 0");
    assert_line(t, "predbridge_broker_up{broker=\"a\\\"b\"} 0"); /* label value escaped */
    assert_line(t, "predbridge_broker_rtt_seconds{broker=\"ssl://localhost:9093/1\"} 0.002500");
    /* No round trip measured (rtt.cnt 0 or no rtt): no series rather than a made-up 0. */
    assert_no_substring(t, "predbridge_broker_rtt_seconds{broker=\"ssl://localhost:9093/bootstrap\"}");
    assert_no_substring(t, "predbridge_broker_rtt_seconds{broker=\"a\\\"b\"}");
    assert_no_substring(t, "GroupCoordinator"); /* logical brokers are not connections */
    assert_line(t, "predbridge_ready 1");
    free(t);
    char why[256];
    assert_int_equal(pbm_ready(m, why, sizeof why), 1);
    assert_string_equal(why, "ok");
    /* A full spool makes it not ready, whatever the broker says, and back once there is room. */
    pbm_set_spool(m, 65536, 400, 1, 0, 2);
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    assert_non_null(strstr(why, "spool is full"));
    t = render(m);
    assert_line(t, "predbridge_ready 0");
    assert_line(t, "predbridge_spool_full 1");
    assert_line(t, "predbridge_spool_records 400");
    assert_line(t, "predbridge_spool_fsync_failures_total 2");
    free(t);
    pbm_set_spool(m, 24, 0, 0, 0, 2);
    assert_int_equal(pbm_ready(m, why, sizeof why), 1);
    pbm_free(m);
}

static size_t count_substring(const char *text, const char *needle) {
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void test_metrics_broker_tls_info_one_series_per_broker_labels_escaped(void **state) {
    (void)state;
    pbm_metrics_t *m = pbm_new();
    pbm_broker_tls(m, "localhost:9093", "TLSv1.3", "TLS_AES_128_GCM_SHA256");
    pbm_broker_tls(m, "b\\\"x\n:1", "TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256");
    pbm_broker_tls(m, "localhost:9093", "TLSv1.3", "TLS_AES_256_GCM_SHA384"); /* renegotiated: replaces */
    char *t = render(m);
    assert_line(t, "# HELP predbridge_broker_tls_info The TLS version and cipher suite last negotiated with "
                   "this broker (its certificate verified); always 1.");
    assert_line(t, "# TYPE predbridge_broker_tls_info gauge");
    assert_line(t, "predbridge_broker_tls_info{broker=\"localhost:9093\",version=\"TLSv1.3\","
                   "cipher=\"TLS_AES_256_GCM_SHA384\"} 1");
    assert_line(t, "predbridge_broker_tls_info{broker=\"b\\\\\\\"x\\n:1\",version=\"TLSv1.3\","
                   "cipher=\"TLS_CHACHA20_POLY1305_SHA256\"} 1");
    assert_int_equal(count_substring(t, "\npredbridge_broker_tls_info{"), 2);
    assert_no_substring(t, "TLS_AES_128_GCM_SHA256");
    free(t);
    /* A bounded table: brokers beyond it are left out, known ones still update. */
    char name[32];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "broker-%d:9093", i);
        pbm_broker_tls(m, name, "TLSv1.3", "TLS_AES_256_GCM_SHA384");
    }
    pbm_broker_tls(m, "localhost:9093", "TLSv1.3", "TLS_AES_128_GCM_SHA256");
    t = render(m);
    assert_int_equal(count_substring(t, "\npredbridge_broker_tls_info{"), 32);
    assert_line(t, "predbridge_broker_tls_info{broker=\"localhost:9093\",version=\"TLSv1.3\","
                   "cipher=\"TLS_AES_128_GCM_SHA256\"} 1");
    assert_no_substring(t, "broker-30:9093");
    free(t);
    pbm_free(m);
}

/* predbridge_broker_tls_info joins broker_up and broker_rtt_seconds: once the statistics name the
 * broker, its label is theirs (the learned broker's, else the bootstrap entry's). */
static void test_metrics_broker_tls_info_takes_the_statistics_broker_label(void **state) {
    (void)state;
    static const char stats_bootstrap_only[] =
        "{\"brokers\":{\"ssl://localhost:9093/bootstrap\":{\"source\":\"configured\",\"state\":\"UP\"}}}";
    pbm_metrics_t *m = pbm_new();
    pbm_broker_tls(m, "localhost:9093", "TLSv1.3", "TLS_AES_256_GCM_SHA384");
    pbm_broker_tls(m, "other:9093", "TLSv1.3", "TLS_AES_256_GCM_SHA384");
    char *t = render(m); /* no statistics yet: the name librdkafka connects to */
    assert_line(t, "predbridge_broker_tls_info{broker=\"localhost:9093\",version=\"TLSv1.3\","
                   "cipher=\"TLS_AES_256_GCM_SHA384\"} 1");
    free(t);
    assert_int_equal(pbm_update_from_stats(m, stats_bootstrap_only, strlen(stats_bootstrap_only)), 0);
    t = render(m);
    assert_line(t, "predbridge_broker_tls_info{broker=\"ssl://localhost:9093/bootstrap\",version=\"TLSv1.3\","
                   "cipher=\"TLS_AES_256_GCM_SHA384\"} 1");
    free(t);
    assert_int_equal(pbm_update_from_stats(m, stats_up, strlen(stats_up)), 0);
    t = render(m);
    assert_line(t, "predbridge_broker_tls_info{broker=\"ssl://localhost:9093/1\",version=\"TLSv1.3\","
                   "cipher=\"TLS_AES_256_GCM_SHA384\"} 1");
    assert_line(t, "predbridge_broker_tls_info{broker=\"other:9093\",version=\"TLSv1.3\","
                   "cipher=\"TLS_AES_256_GCM_SHA384\"} 1"); /* not in the statistics */
    assert_int_equal(count_substring(t, "\npredbridge_broker_tls_info{"), 2);
    free(t);
    pbm_free(m);
}

static void test_metrics_statistics_garbage_is_refused(void **state) {
    (void)state;
    pbm_metrics_t *m = pbm_new();
    assert_int_equal(pbm_update_from_stats(m, "{", 1), -1);
    assert_int_equal(pbm_update_from_stats(m, "[]", 2), -1);
    char *t = render(m);
    assert_no_substring(t, "predbridge_broker_up");
    free(t);
    pbm_free(m);
}

static void test_metrics_readiness_follows_failures_and_recovery(void **state) {
    (void)state;
    pbm_metrics_t *m = pbm_new();
    char why[600];
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    assert_non_null(strstr(why, "no broker connection established yet"));
    assert_int_equal(pbm_update_from_stats(m, stats_up, strlen(stats_up)), 0);
    assert_int_equal(pbm_ready(m, why, sizeof why), 1);
    pbm_not_ready(m, "_SSL: SSL handshake failed: tlsv1 alert protocol version");
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    assert_string_equal(why,
                        "broker connection failed: _SSL: SSL handshake failed: tlsv1 alert protocol version");
    /* Statistics without a broker up keep the specific cause. */
    const char down[] =
        "{\"msg_cnt\":0,\"brokers\":{\"b\":{\"source\":\"configured\",\"state\":\"CONNECT\"}}}";
    assert_int_equal(pbm_update_from_stats(m, down, strlen(down)), 0);
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    assert_non_null(strstr(why, "protocol version"));
    /* "All brokers down" does not hide why. */
    pbm_brokers_down(m, "_ALL_BROKERS_DOWN: 1/1 brokers are down");
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    assert_non_null(strstr(why, "protocol version"));
    pbm_accepted(m);
    pbm_delivery(m, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(pbm_ready(m, why, sizeof why), 1);
    pbm_brokers_down(m, "_ALL_BROKERS_DOWN: 1/1 brokers are down");
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    assert_string_equal(why, "broker connection failed: _ALL_BROKERS_DOWN: 1/1 brokers are down");
    pbm_delivery(m, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(pbm_ready(m, why, sizeof why), 1);
    /* Up, then statistics say no broker is up any more. */
    assert_int_equal(pbm_update_from_stats(m, down, strlen(down)), 0);
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    assert_string_equal(why, "no broker connection is up (1 broker known)");
    pbm_free(m);
}

/* A delivery by a producer retiring after a reload is counted, but says nothing of the connections
 * the current producer makes (its new certificate may be refused): readiness stays as it was. */
static void test_metrics_retiring_producer_delivery_counts_but_does_not_make_ready(void **state) {
    (void)state;
    pbm_metrics_t *m = pbm_new();
    char why[600];
    pbm_not_ready(m, "_SSL: SSL handshake failed: tlsv1 alert unknown ca");
    pbm_accepted(m);
    pbm_accepted(m);
    pbm_delivery_retiring(m, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    assert_non_null(strstr(why, "unknown ca"));
    size_t len;
    char *t = pbm_render(m, &len);
    assert_line(t, "predbridge_predictions_delivered_total 1");
    free(t);
    pbm_delivery(m, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(pbm_ready(m, why, sizeof why), 1);
    pbm_free(m);
}

static void test_metrics_fatal_error_is_not_ready_until_a_reload_replaces_the_producer(void **state) {
    (void)state;
    pbm_metrics_t *m = pbm_new();
    char why[600];
    assert_int_equal(pbm_update_from_stats(m, stats_up, strlen(stats_up)), 0);
    assert_int_equal(pbm_ready(m, why, sizeof why), 1);
    pbm_fatal(m, "_FATAL: Broker: Cluster authorization failed");
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    assert_string_equal(
        why, "the producer failed for good (restart, or reload other TLS material): _FATAL: Broker: Cluster authorization failed");
    /* A connection stays UP, but nothing can be produced any more. */
    assert_int_equal(pbm_update_from_stats(m, stats_up, strlen(stats_up)), 0);
    pbm_delivery(m, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    /* A reload replaced the producer with other material: its deliveries count again. */
    pbm_fresh_producer(m);
    pbm_delivery(m, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(pbm_ready(m, why, sizeof why), 1);
    pbm_free(m);
}

/* Records waiting out a retry-later cause keep /readyz not ready however the connections look, and
 * statistics every few seconds do not flip it back and forth; once released, a delivery makes it ready. */
static void test_metrics_held_records_keep_it_not_ready_until_released(void **state) {
    (void)state;
    pbm_metrics_t *m = pbm_new();
    char why[600];
    assert_int_equal(pbm_update_from_stats(m, stats_up, strlen(stats_up)), 0);
    assert_int_equal(pbm_ready(m, why, sizeof why), 1);
    pbm_hold(m, "UNKNOWN_TOPIC_OR_PART: topic 't'; records are kept and retried");
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    assert_non_null(strstr(why, "records wait: UNKNOWN_TOPIC_OR_PART"));
    assert_int_equal(pbm_update_from_stats(m, stats_up, strlen(stats_up)), 0);
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    pbm_delivery(m, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(pbm_ready(m, why, sizeof why), 0);
    pbm_release(m);
    pbm_delivery(m, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(pbm_ready(m, why, sizeof why), 1);
    pbm_free(m);
}

static void test_metrics_health_needs_a_fresh_heartbeat(void **state) {
    (void)state;
    pbm_metrics_t *m = pbm_new();
    char why[200];
    assert_int_equal(pbm_healthy(m, 1000, why, sizeof why), 0);
    assert_string_equal(why, "the event loop has not started");
    pbm_heartbeat(m, 10000);
    assert_int_equal(pbm_healthy(m, 10000 + PBM_HEALTH_STALE_MS, why, sizeof why), 1);
    assert_int_equal(pbm_healthy(m, 10001 + PBM_HEALTH_STALE_MS, why, sizeof why), 0);
    assert_string_equal(why, "the event loop has not run for 5001 ms");
    pbm_free(m);
}

static void test_metrics_tls_causes_are_classified(void **state) {
    (void)state;
    assert_int_equal(pbm_tls_classify("ssl://localhost:1/bootstrap: SSL handshake failed: error:0A00042E:SSL "
                                      "routines::tlsv1 alert protocol version",
                                      ""),
                     PBM_TLS_PROTOCOL_VERSION);
    assert_int_equal(pbm_tls_classify("SSL handshake failed: unsupported protocol", NULL),
                     PBM_TLS_PROTOCOL_VERSION);
    assert_int_equal(
        pbm_tls_classify("SSL handshake failed: ... certificate verify failed",
                         "broker localhost:1: certificate is for 'DNS:wrong.example.invalid', not "
                         "'localhost'"),
        PBM_TLS_HOSTNAME);
    assert_int_equal(
        pbm_tls_classify("certificate verify failed",
                         "broker b: public key sha256//x matches none of the 1 configured tls.pins"),
        PBM_TLS_PIN);
    assert_int_equal(
        pbm_tls_classify("certificate verify failed", "broker b: unable to get local issuer certificate"),
        PBM_TLS_CERTIFICATE_VERIFY);
    assert_int_equal(pbm_tls_classify("SSL handshake failed: certificate verify failed", ""),
                     PBM_TLS_CERTIFICATE_VERIFY);
    assert_int_equal(pbm_tls_classify("SSL transport error: ssl/tls alert certificate required", ""),
                     PBM_TLS_CLIENT_CERT_REFUSED);
    assert_int_equal(pbm_tls_classify("SSL transport error: tlsv1 alert unknown ca", ""),
                     PBM_TLS_CLIENT_CERT_REFUSED);
    assert_int_equal(pbm_tls_classify("Connection refused", ""), PBM_TLS_OTHER);
    assert_string_equal(pbm_tls_cause_name(PBM_TLS_CLIENT_CERT_REFUSED), "client_cert_refused");
    assert_string_equal(pbm_tls_cause_name((pbm_tls_cause_t)99), "other");
}

static void test_metrics_reject_and_fail_reasons_map_to_labels(void **state) {
    (void)state;
    assert_int_equal(pbm_reject_reason("invalid_utf8: byte 0xff at 3"), PBM_REJ_INVALID_UTF8);
    assert_int_equal(pbm_reject_reason("bad_field: model_version must be a string"), PBM_REJ_BAD_FIELD);
    assert_int_equal(pbm_reject_reason("not_object: an array"), PBM_REJ_NOT_OBJECT);
    assert_int_equal(pbm_reject_reason("not_json"), PBM_REJ_NOT_JSON);
    assert_int_equal(pbm_reject_reason("not_jsonx: y"), PBM_REJ_OTHER);
    assert_int_equal(pbm_reject_reason(NULL), PBM_REJ_OTHER);
    assert_int_equal(pbm_fail_reason(RD_KAFKA_RESP_ERR__PURGE_QUEUE), PBM_FAIL_PURGED);
    assert_int_equal(pbm_fail_reason(RD_KAFKA_RESP_ERR__PURGE_INFLIGHT), PBM_FAIL_PURGED);
    assert_int_equal(pbm_fail_reason(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), PBM_FAIL_TOO_LARGE);
    assert_int_equal(pbm_fail_reason(RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED), PBM_FAIL_AUTHORIZATION);
    assert_int_equal(pbm_fail_reason(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART), PBM_FAIL_UNKNOWN_TOPIC);
    assert_int_equal(pbm_fail_reason(RD_KAFKA_RESP_ERR__FATAL), PBM_FAIL_FATAL);
    assert_int_equal(pbm_fail_reason(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION), PBM_FAIL_OTHER);
}

static pb_err_t check_listen(const char *value, char *err, size_t n) {
    props_entry_t e = {.key = "http.listen", .value = value, .file = "t.conf", .line = 3};
    return pbconf_check_entry(&e, PBCONF_SCOPE_DAEMON, err, n);
}

static void test_metrics_http_listen_accepts_loopback_and_refuses_the_rest(void **state) {
    (void)state;
    char err[600];
    assert_int_equal(check_listen("127.0.0.1:9464", err, sizeof err), PB_OK);
    assert_int_equal(check_listen("127.1.2.3:0", err, sizeof err), PB_OK);
    assert_int_equal(check_listen("localhost:9464", err, sizeof err), PB_OK);
    assert_int_equal(check_listen("[::1]:9464", err, sizeof err), PB_OK);
    assert_int_equal(check_listen("0.0.0.0:9464", err, sizeof err), PB_ERR_INSECURE);
    assert_non_null(strstr(err, "http.listen"));
    assert_non_null(strstr(err, "not a loopback address"));
    assert_int_equal(check_listen("10.0.0.1:9464", err, sizeof err), PB_ERR_INSECURE);
    assert_int_equal(check_listen("[::]:9464", err, sizeof err), PB_ERR_INSECURE);
    assert_int_equal(check_listen("metrics.example.com:9464", err, sizeof err), PB_ERR_INSECURE);
    assert_int_equal(check_listen("127.0.0.1", err, sizeof err), PB_ERR_CONFIG);
    assert_non_null(strstr(err, "host:port"));
    assert_int_equal(check_listen("127.0.0.1:65536", err, sizeof err), PB_ERR_CONFIG);
    assert_int_equal(check_listen(":9464", err, sizeof err), PB_ERR_CONFIG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_fresh_render_has_every_family_at_zero),
        cmocka_unit_test(test_metrics_workload_counts_render_exactly),
        cmocka_unit_test(test_metrics_statistics_give_broker_state_rtt_and_queue),
        cmocka_unit_test(test_metrics_broker_tls_info_one_series_per_broker_labels_escaped),
        cmocka_unit_test(test_metrics_broker_tls_info_takes_the_statistics_broker_label),
        cmocka_unit_test(test_metrics_statistics_garbage_is_refused),
        cmocka_unit_test(test_metrics_readiness_follows_failures_and_recovery),
        cmocka_unit_test(test_metrics_fatal_error_is_not_ready_until_a_reload_replaces_the_producer),
        cmocka_unit_test(test_metrics_held_records_keep_it_not_ready_until_released),
        cmocka_unit_test(test_metrics_retiring_producer_delivery_counts_but_does_not_make_ready),
        cmocka_unit_test(test_metrics_health_needs_a_fresh_heartbeat),
        cmocka_unit_test(test_metrics_tls_causes_are_classified),
        cmocka_unit_test(test_metrics_reject_and_fail_reasons_map_to_labels),
        cmocka_unit_test(test_metrics_http_listen_accepts_loopback_and_refuses_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
