/* it_rig: proves the local broker enforces what every other test relies on: mTLS with a trusted,
 * valid client certificate, TLS 1.3 only, and certificate-based ACLs. Uses librdkafka directly. */
#include "itest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_self[4096];

/* Consumes up to `want` messages of topic from the beginning as `who`; returns how many arrived and
 * copies the first payload into first (NUL-terminated). Records a consumer-side error in *err. */
static int consume(const char *who, const char *topic, int want, int timeout_ms, char *first, size_t first_size,
                   rd_kafka_resp_err_t *err) {
    char errstr[512], group[128];
    rd_kafka_conf_t *conf = itest_conf(itest_env()->bootstrap, who);
    snprintf(group, sizeof group, "it-rig-%d-%lld", (int)getpid(), (long long)itest_now_ms());
    itest_set(conf, "group.id", group);
    itest_set(conf, "auto.offset.reset", "earliest");
    itest_set(conf, "enable.auto.commit", "false");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    assert_non_null(rk);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, sub), 0);
    rd_kafka_topic_partition_list_destroy(sub);
    int got = 0;
    *err = RD_KAFKA_RESP_ERR_NO_ERROR;
    int64_t deadline = itest_now_ms() + timeout_ms;
    while (got < want && itest_now_ms() < deadline && !*err) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        } else if (m->err) {
            *err = m->err;
        } else {
            if (got == 0 && first) {
                size_t n = m->len < first_size - 1 ? m->len : first_size - 1;
                memcpy(first, m->payload, n);
                first[n] = '\0';
            }
            got++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return got;
}

static void test_rig_producer_cert_writes_consumer_cert_reads_same_bytes(void **state) {
    (void)state;
    char topic[256], payload[256], got[256] = "";
    itest_create_topic("predictions-it-rig", 3, topic, sizeof topic);
    snprintf(payload, sizeof payload, "{\"model_version\":\"rig\",\"prediction\":%lld}", (long long)itest_now_ms());
    rd_kafka_resp_err_t err =
        itest_produce_one(itest_conf(itest_env()->bootstrap, "predbridged"), topic, payload, strlen(payload), 20000);
    assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(itest_topic_size(topic), 1);
    rd_kafka_resp_err_t cerr;
    assert_int_equal(consume("predbridge-consumer", topic, 1, 30000, got, sizeof got, &cerr), 1);
    assert_int_equal(cerr, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_string_equal(got, payload);
}

/* The value of a topic's configuration entry `name`, as the broker describes it (admin client). */
static void topic_config(rd_kafka_t *rk, const char *topic, const char *name, char *out, size_t out_size) {
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DescribeConfigs(rk, &res, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 20000);
    if (!ev || rd_kafka_event_error(ev)) fail_msg("describing %s: %s", topic, ev ? rd_kafka_event_error_string(ev) : "timed out");
    size_t n_res, n_cfg;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n_res);
    assert_int_equal(n_res, 1);
    const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(rs[0], &n_cfg);
    snprintf(out, out_size, "(absent)");
    for (size_t i = 0; i < n_cfg; i++)
        if (!strcmp(rd_kafka_ConfigEntry_name(entries[i]), name))
            snprintf(out, out_size, "%s", rd_kafka_ConfigEntry_value(entries[i]) ? rd_kafka_ConfigEntry_value(entries[i]) : "(null)");
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(res);
}

/* Records stamped years ago (as the other tests' are) stay on the broker: no time-based retention
 * (as configured, and as observed: the log start offset stays put through three retention checks,
 * one a second, once the broker's first check has run 30 s after its start). */
static void test_rig_keeps_records_with_old_timestamps(void **state) {
    (void)state;
    char topic[256], errstr[512], retention[64];
    itest_create_topic("predictions-it-rig", 1, topic, sizeof topic);
    rd_kafka_t *admin =
        rd_kafka_new(RD_KAFKA_PRODUCER, itest_conf(itest_env()->bootstrap, "admin"), errstr, sizeof errstr);
    assert_non_null(admin);
    topic_config(admin, topic, "retention.ms", retention, sizeof retention);
    rd_kafka_destroy(admin);
    if (strcmp(retention, "-1")) fail_msg("%s: retention.ms is %s, not -1 (unlimited)", topic, retention);
    rd_kafka_t *rk =
        rd_kafka_new(RD_KAFKA_PRODUCER, itest_conf(itest_env()->bootstrap, "predbridged"), errstr, sizeof errstr);
    assert_non_null(rk);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE("{\"old\":1}", 9), RD_KAFKA_V_TIMESTAMP(1700000000000),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(rk, 20000), RD_KAFKA_RESP_ERR_NO_ERROR);
    int64_t until = itest_now_ms() + 3500, lo = -1, hi = -1;
    do {
        assert_int_equal(rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
        if (lo != 0 || hi != 1) fail_msg("%s [0]: log start %lld, end %lld: the record was deleted", topic,
                                         (long long)lo, (long long)hi);
        rd_kafka_poll(rk, 200);
    } while (itest_now_ms() < until);
    rd_kafka_destroy(rk);
}

/* Whether text contains one of the '|'-separated alternatives. */
static int mentions_one_of(const char *text, const char *alternatives) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", alternatives);
    for (char *save = NULL, *a = strtok_r(buf, "|", &save); a; a = strtok_r(NULL, "|", &save))
        if (strstr(text, a)) return 1;
    return 0;
}

/* Produces with conf and asserts the attempt fails, the client reported an error mentioning `cause`
 * (or one of its '|'-separated alternatives),
 * the broker logged `broker_cause` (if not NULL) for it, and nothing reached the topic. */
static void assert_refused(rd_kafka_conf_t *conf, const char *cause, const char *broker_cause) {
    char topic[256];
    itest_create_topic("predictions-it-rig", 1, topic, sizeof topic);
    int before = broker_cause ? itest_auth_log_count(broker_cause) : 0;
    itest_errors_clear();
    rd_kafka_resp_err_t err = itest_produce_one(conf, topic, "x", 1, 4000);
    assert_int_not_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    const char *errors = itest_errors();
    if (!mentions_one_of(errors, cause)) fail_msg("expected an error mentioning '%s'; got:\n%s", cause, errors);
    if (broker_cause && itest_auth_log_count(broker_cause) <= before)
        fail_msg("the broker's auth.log does not show '%s'", broker_cause);
    assert_int_equal(itest_topic_size(topic), 0);
}

static void test_rig_no_client_certificate_is_refused(void **state) {
    (void)state;
    /* The alert depends on the broker's Java: TLS 1.3's certificate_required, or bad_certificate. */
    assert_refused(itest_conf(itest_env()->bootstrap, NULL), "certificate required|bad certificate",
                   "Empty client certificate chain");
}

static void test_rig_untrusted_ca_client_is_refused(void **state) {
    (void)state;
    assert_refused(itest_conf(itest_env()->bootstrap, "untrusted-client"), "certificate unknown",
                   "unable to find valid certification path");
}

static void test_rig_expired_client_certificate_is_refused(void **state) {
    (void)state;
    assert_refused(itest_conf(itest_env()->bootstrap, "expired-client"), "certificate unknown", "validity check failed");
}

static void test_rig_plaintext_client_fails_on_mtls_port(void **state) {
    (void)state;
    rd_kafka_conf_t *conf = itest_conf(itest_env()->bootstrap, NULL);
    itest_set(conf, "security.protocol", "plaintext");
    assert_refused(conf, "Disconnected", NULL);
}

static void test_rig_consumer_cert_cannot_write(void **state) {
    (void)state;
    char topic[256];
    itest_create_topic("predictions-it-rig", 1, topic, sizeof topic);
    rd_kafka_resp_err_t err =
        itest_produce_one(itest_conf(itest_env()->bootstrap, "predbridge-consumer"), topic, "x", 1, 10000);
    assert_int_equal(err, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    assert_int_equal(itest_topic_size(topic), 0);
}

static void test_rig_producer_cert_cannot_read(void **state) {
    (void)state;
    char topic[256];
    itest_create_topic("predictions-it-rig", 1, topic, sizeof topic);
    assert_int_equal(itest_produce_one(itest_conf(itest_env()->bootstrap, "predbridged"), topic, "x", 1, 20000),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_resp_err_t err;
    int got = consume("predbridged", topic, 1, 20000, NULL, 0, &err);
    assert_int_equal(got, 0);
    /* Without group rights the group coordinator refuses first; either way: not authorized. */
    if (err != RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED && err != RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED)
        fail_msg("expected an authorization error, got %s", rd_kafka_err2name(err));
}

/* A client whose OpenSSL is limited to TLS 1.2 (OPENSSL_CONF, so it must run in a fresh process). */
static void test_rig_tls12_only_client_is_refused_by_mtls_listener(void **state) {
    (void)state;
    char topic[256], cmd[8192];
    itest_create_topic("predictions-it-rig", 1, topic, sizeof topic);
    snprintf(cmd, sizeof cmd, "OPENSSL_CONF='%s/tests/integration/data/openssl-tls12-only.cnf' '%s' --tls12-producer '%s'",
             getenv("PB_SOURCE_DIR"), g_self, topic);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[16384];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) != 0) fail_msg("TLS 1.2 client was not refused:\n%s", out);
    if (!strstr(out, "protocol version")) fail_msg("expected a protocol version alert, got:\n%s", out);
    assert_int_equal(itest_topic_size(topic), 0);
}

/* Child mode: produce one message with TLS <= 1.2; exit 0 if refused, print what was reported. */
static int tls12_producer(const char *topic) {
    rd_kafka_conf_t *conf = itest_conf(itest_env()->bootstrap, "predbridged");
    rd_kafka_resp_err_t err = itest_produce_one(conf, topic, "x", 1, 4000);
    printf("delivery: %s\n%s", rd_kafka_err2name(err), itest_errors());
    return err == RD_KAFKA_RESP_ERR_NO_ERROR ? 1 : 0;
}

int main(int argc, char **argv) {
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (n > 0) g_self[n] = '\0';
    if (argc == 3 && !strcmp(argv[1], "--tls12-producer")) return tls12_producer(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rig_producer_cert_writes_consumer_cert_reads_same_bytes),
        cmocka_unit_test(test_rig_no_client_certificate_is_refused),
        cmocka_unit_test(test_rig_untrusted_ca_client_is_refused),
        cmocka_unit_test(test_rig_expired_client_certificate_is_refused),
        cmocka_unit_test(test_rig_plaintext_client_fails_on_mtls_port),
        cmocka_unit_test(test_rig_tls12_only_client_is_refused_by_mtls_listener),
        cmocka_unit_test(test_rig_consumer_cert_cannot_write),
        cmocka_unit_test(test_rig_producer_cert_cannot_read),
        cmocka_unit_test(test_rig_keeps_records_with_old_timestamps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
