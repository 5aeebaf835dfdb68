/* it_crl: certificate revocation against the real broker. Its REVOKED listener presents a broker
 * certificate that is valid in every way except that the test CA revoked it (certs/revoked.crl lists
 * it; certs/empty.crl lists nothing). With tls.crl (librdkafka's ssl.crl.location) librdkafka,
 * predbridged, libpredbridge and `predbridge check` refuse it and say why; without tls.crl the same
 * listener is accepted, and a CRL that revokes nothing does not get in the way of a good broker. */
#include "itest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <predbridge/predbridge.h>

#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define VALUE "{\"model_version\":\"crl\",\"prediction\":1}"

/* The REVOKED listener; a broker started by an older kafka-local.sh has none. */
static const char *revoked_listener(void) {
    const char *b = itest_env()->bootstrap_revoked;
    if (!b[0])
        fail_msg("broker.env has no PB_BOOTSTRAP_REVOKED: the broker was started by an older "
                 "scripts/kafka-local.sh; stop it and start it again");
    return b;
}

static void new_topic(char *topic, size_t size) {
    itest_create_topic("predictions-it-crl", 1, topic, size);
}

/* ---- plain librdkafka: what ssl.crl.location does by itself ---- */

/* What OpenSSL reported to librdkafka's certificate-verify hook; the hook changes nothing (it accepts
 * exactly what OpenSSL accepted), it only lets the test see why a handshake failed, which
 * librdkafka's own error ("certificate verify failed") does not say. */
static pthread_mutex_t g_verify_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_verify_errors[4096];

static int record_verify(rd_kafka_t *rk, const char *broker_name, int32_t broker_id, int *x509_error,
                         int depth, const char *buf, size_t size, char *errstr, size_t errstr_size,
                         void *opaque) {
    (void)rk, (void)broker_id, (void)buf, (void)size, (void)opaque;
    if (*x509_error == X509_V_OK) return 1;
    pthread_mutex_lock(&g_verify_lock);
    size_t len = strlen(g_verify_errors);
    snprintf(g_verify_errors + len, sizeof g_verify_errors - len, "%s: %s at depth %d\n", broker_name,
             X509_verify_cert_error_string(*x509_error), depth);
    pthread_mutex_unlock(&g_verify_lock);
    snprintf(errstr, errstr_size, "%s", X509_verify_cert_error_string(*x509_error));
    return 0;
}

/* A librdkafka producer conf as predbridged's principal, with ssl.crl.location = crl (NULL: none). */
static rd_kafka_conf_t *plain_conf(const char *bootstrap, const char *crl) {
    rd_kafka_conf_t *conf = itest_conf(bootstrap, "predbridged");
    if (crl) itest_set(conf, "ssl.crl.location", itest_cert(crl));
    rd_kafka_conf_set_ssl_cert_verify_cb(conf, record_verify);
    pthread_mutex_lock(&g_verify_lock);
    g_verify_errors[0] = '\0';
    pthread_mutex_unlock(&g_verify_lock);
    itest_errors_clear();
    return conf;
}

static rd_kafka_resp_err_t produce(rd_kafka_conf_t *conf, const char *topic, int timeout_ms) {
    return itest_produce_one(conf, topic, VALUE, strlen(VALUE), timeout_ms);
}

static void test_crl_rig_revoked_listener_accepted_without_crl(void **state) {
    (void)state;
    char topic[256];
    new_topic(topic, sizeof topic);
    rd_kafka_resp_err_t err = produce(plain_conf(revoked_listener(), NULL), topic, 20000);
    if (err) fail_msg("produce over REVOKED without a CRL: %s\n%s", rd_kafka_err2name(err), itest_errors());
    assert_int_equal(itest_topic_size(topic), 1);
    assert_string_equal(g_verify_errors, "");
}

static void test_crl_librdkafka_with_revoking_crl_refuses_revoked_listener(void **state) {
    (void)state;
    char topic[256];
    new_topic(topic, sizeof topic);
    rd_kafka_resp_err_t err = produce(plain_conf(revoked_listener(), "revoked.crl"), topic, 4000);
    assert_int_not_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    if (!strstr(itest_errors(), "certificate verify failed"))
        fail_msg("expected librdkafka to report a failed verification; got:\n%s", itest_errors());
    if (!strstr(g_verify_errors, ": certificate revoked at depth 0\n"))
        fail_msg("expected OpenSSL to find the broker's certificate revoked; got:\n%s", g_verify_errors);
    assert_int_equal(itest_topic_size(topic), 0);
}

static void test_crl_librdkafka_with_empty_crl_accepts_mtls_listener(void **state) {
    (void)state;
    char topic[256];
    new_topic(topic, sizeof topic);
    rd_kafka_resp_err_t err = produce(plain_conf(itest_env()->bootstrap, "empty.crl"), topic, 20000);
    if (err)
        fail_msg("produce with a CRL that revokes nothing: %s\n%s", rd_kafka_err2name(err), g_verify_errors);
    assert_int_equal(itest_topic_size(topic), 1);
}

/* ---- predbridged ---- */

/* predbridged with tls.crl: it starts (the CRL does not revoke its own certificate), takes the line,
 * refuses the broker with the cause in its log, delivers nothing, and still stops cleanly. */
static void test_crl_daemon_with_tls_crl_refuses_revoked_listener_naming_revocation(void **state) {
    (void)state;
    char topic[256], extra[1024];
    new_topic(topic, sizeof topic);
    snprintf(extra, sizeof extra, "bootstrap.servers = %s\ntls.crl = %s\nproducer.flush_timeout_ms = 1000",
             revoked_listener(), itest_cert("revoked.crl"));
    itest_daemon_t d;
    itest_daemon_config(&d, topic, extra);
    int status = -1;
    if (itest_daemon_start(&d, &status) != 0)
        fail_msg("predbridged did not start (exit %d); log: %s", status, d.log_path);
    int fd = itest_connect(d.socket_path);
    assert_true(fd >= 0);
    assert_int_equal(itest_write_all(fd, VALUE "\n", strlen(VALUE) + 1), 0);
    close(fd);
    if (!itest_daemon_log_wait(&d, "tls.crl lists it as revoked", 20000)) {
        itest_system("cat '%s' >&2", d.log_path);
        fail_msg("predbridged did not log the revocation");
    }
    assert_true(
        itest_daemon_log_wait(&d, "certificate revoked (certificate 'O=predbridge test,CN=kafka-broker'", 0));
    assert_int_equal(itest_topic_size(topic), 0);
    assert_int_equal(itest_daemon_stop(&d, 60000), 0);
    assert_true(itest_daemon_log_wait(&d, "delivered 0", 1000));
}

static void test_crl_daemon_with_empty_crl_delivers_over_mtls(void **state) {
    (void)state;
    char topic[256], extra[1024];
    new_topic(topic, sizeof topic);
    snprintf(extra, sizeof extra, "tls.crl = %s", itest_cert("empty.crl"));
    itest_daemon_t d;
    itest_daemon_config(&d, topic, extra);
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    int fd = itest_connect(d.socket_path);
    assert_true(fd >= 0);
    /* The daemon closes the connection once the broker acknowledged the line. */
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    static const char in[] = "{\"ack\":\"delivered\"}\n" VALUE "\n";
    assert_int_equal(itest_write_all(fd, in, strlen(in)), 0);
    shutdown(fd, SHUT_WR);
    char replies[1024];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof replies - 1 && (n = read(fd, replies + len, sizeof replies - 1 - len)) > 0)
        len += (size_t)n;
    replies[len] = '\0';
    close(fd);
    if (!strstr(replies, "{\"seq\":1,\"id\":") || !strstr(replies, "\"status\":\"delivered\"}"))
        fail_msg("expected the line delivered; replies:\n%s", replies);
    assert_int_equal(itest_topic_size(topic), 1);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
}

/* ---- libpredbridge ---- */

typedef struct seen {
    int predictions, tls_errors;
    char causes[8192];
} seen_t;

static pb_action_t count_prediction(const pb_message_t *m, void *opaque) {
    (void)m;
    ((seen_t *)opaque)->predictions++;
    return PB_COMMIT;
}

static void keep_error(pb_err_t code, const char *cause, const pb_message_t *m, void *opaque) {
    seen_t *s = opaque;
    size_t len = strlen(s->causes);
    (void)m;
    s->tls_errors += code == PB_ERR_TLS;
    snprintf(s->causes + len, sizeof s->causes - len, "%s: %s\n", pb_err_name(code), cause);
}

/* A consumer of topic over the REVOKED listener, with tls.crl = crl (NULL: none), configured from a file
 * as applications do. */
static pb_consumer_t *revoked_consumer(const char *topic, const char *crl, seen_t *s) {
    char err[1024], path[] = "/tmp/pbit-crl-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    assert_non_null(f);
    fprintf(f,
            "bootstrap.servers = %s\ntls.ca = %s\ntls.cert = %s\ntls.key = %s\ngroup.id = it-crl-%d-%lld\n"
            "topics = %s\nauto.offset.reset = earliest\n"
            "kafka.topic.metadata.refresh.interval.ms = 2000\n%s%s\n",
            revoked_listener(), itest_cert("ca.crt"), itest_cert("predbridge-consumer.crt"),
            itest_cert("predbridge-consumer.key"), (int)getpid(), (long long)itest_now_ms(), topic,
            crl ? "tls.crl = " : "", crl ? itest_cert(crl) : "");
    fclose(f);
    pb_config_t *conf = pb_config_new();
    if (pb_config_load_file(conf, path, err, sizeof err) != PB_OK) fail_msg("%s", err);
    unlink(path);
    memset(s, 0, sizeof *s);
    pb_consumer_t *c = pb_consumer_new(conf, count_prediction, keep_error, s, err, sizeof err);
    pb_config_destroy(conf);
    if (!c) fail_msg("pb_consumer_new: %s", err);
    return c;
}

/* The topic holds a valid prediction: with tls.crl none of it reaches the application, the error does
 * and names the revocation; without tls.crl the same listener delivers it. */
static void test_crl_consumer_with_tls_crl_reports_revocation_delivers_nothing(void **state) {
    (void)state;
    char topic[256];
    static seen_t s;
    new_topic(topic, sizeof topic);
    assert_int_equal(produce(itest_conf(itest_env()->bootstrap, "predbridged"), topic, 20000),
                     RD_KAFKA_RESP_ERR_NO_ERROR);

    pb_consumer_t *c = revoked_consumer(topic, "revoked.crl", &s);
    int64_t deadline = itest_now_ms() + 30000;
    while (itest_now_ms() < deadline && !s.tls_errors) pb_consumer_poll(c, 200);
    pb_consumer_poll(c, 1000);
    pb_consumer_destroy(c);
    if (!s.tls_errors || !strstr(s.causes, "PB_ERR_TLS: broker localhost:") ||
        !strstr(s.causes, "certificate revoked") || !strstr(s.causes, "tls.crl lists it as revoked"))
        fail_msg("expected PB_ERR_TLS naming the revocation; got:\n%s", s.causes);
    assert_int_equal(s.predictions, 0);

    c = revoked_consumer(topic, NULL, &s);
    deadline = itest_now_ms() + 60000;
    while (itest_now_ms() < deadline && !s.predictions) pb_consumer_poll(c, 200);
    pb_consumer_destroy(c);
    if (s.predictions != 1) fail_msg("without tls.crl: %d predictions; errors:\n%s", s.predictions, s.causes);
}

/* ---- predbridge check ---- */

/* Runs `predbridge check` on a producer config for bootstrap with tls.crl = crl (NULL: none). */
static int run_check(const char *bootstrap, const char *crl, char *out, size_t out_size) {
    char extra[1024];
    itest_daemon_t d;
    snprintf(extra, sizeof extra, "bootstrap.servers = %s\n%s%s", bootstrap, crl ? "tls.crl = " : "",
             crl ? itest_cert(crl) : "");
    itest_daemon_config(&d, itest_env()->topic, extra);
    int status = itest_run(out, out_size, "'%s/src/cli/predbridge' check --config '%s'",
                           getenv("PB_BUILD_DIR"), d.config);
    unlink(d.config);
    rmdir(d.dir);
    if (strstr(out, "Sanitizer") || strstr(out, "runtime error:")) fail_msg("sanitizer report:\n%s", out);
    return status;
}

/* The report is longer than cmocka prints: show it whole, then fail. */
static void check_failed(const char *what, int status, const char *out) {
    fprintf(stderr, "%s\n", out);
    fail_msg("predbridge check %s: exit %d (report above)", what, status);
}

static void test_crl_check_with_tls_crl_fails_naming_revocation(void **state) {
    (void)state;
    static char out[65536];
    int status = run_check(revoked_listener(), "revoked.crl", out, sizeof out);
    if (status != 1 || !strstr(out, "FAIL  broker certificate refused by tls.crl '") ||
        !strstr(out, "': certificate revoked (certificate 'O=predbridge test,CN=kafka-broker' at depth 0); "
                     "tls.crl lists it as revoked") ||
        !strstr(out, "verdict: PROBLEMS") || strstr(out, "client certificate accepted"))
        check_failed("with the revoking CRL", status, out);

    status = run_check(revoked_listener(), NULL, out, sizeof out);
    if (status != 0 || !strstr(out, "verdict: OK")) check_failed("without tls.crl", status, out);

    status = run_check(itest_env()->bootstrap, "empty.crl", out, sizeof out);
    if (status != 0 || !strstr(out, "chain verifies against tls.ca; tls.crl does not revoke it"))
        check_failed("with a CRL that revokes nothing", status, out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crl_rig_revoked_listener_accepted_without_crl),
        cmocka_unit_test(test_crl_librdkafka_with_revoking_crl_refuses_revoked_listener),
        cmocka_unit_test(test_crl_librdkafka_with_empty_crl_accepts_mtls_listener),
        cmocka_unit_test(test_crl_daemon_with_tls_crl_refuses_revoked_listener_naming_revocation),
        cmocka_unit_test(test_crl_daemon_with_empty_crl_delivers_over_mtls),
        cmocka_unit_test(test_crl_consumer_with_tls_crl_reports_revocation_delivers_nothing),
        cmocka_unit_test(test_crl_check_with_tls_crl_fails_naming_revocation),
    };
    if (getenv("PB_ITEST_FILTER")) cmocka_set_test_filter(getenv("PB_ITEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
