/* test_consumer_config.c: unit tests of libpredbridge's pb_config_t (consumer scope of common/config.c),
 * of pb_consumer_new's configuration errors, and of the error-code mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/config.h"
#include "lib/lib_internal.h"

#include <predbridge/predbridge.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[64];

static const char *path_of(const char *name) {
    static char bufs[4][128];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", g_dir, name);
    return b;
}

static void write_file(const char *name, const char *text) {
    FILE *f = fopen(path_of(name), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/pbcc-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    write_file("ca.pem", "x\n");
    write_file("cert.pem", "x\n");
    write_file("key.pem", "x\n");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static pb_err_t set(pb_config_t *c, const char *k, const char *v, char *err, size_t size) {
    return pb_config_set(c, k, v, err, size);
}

static void test_config_set_consumer_keys_accepted(void **state) {
    (void)state;
    char err[512] = "";
    pb_config_t *c = pb_config_new();
    assert_non_null(c);
    assert_int_equal(set(c, "group.id", "fraud", err, sizeof err), PB_OK);
    assert_int_equal(set(c, "topics", "predictions, predictions-b", err, sizeof err), PB_OK);
    assert_int_equal(set(c, "auto.offset.reset", "latest", err, sizeof err), PB_OK);
    assert_int_equal(set(c, "consumer.retry_backoff_ms", "250", err, sizeof err), PB_OK);
    assert_int_equal(set(c, "tls.ca", path_of("ca.pem"), err, sizeof err), PB_OK);
    assert_int_equal(set(c, "kafka.session.timeout.ms", "6000", err, sizeof err), PB_OK);
    pb_config_destroy(c);
}

static void test_config_set_dedup_window_and_log_keys_accepted_in_range(void **state) {
    (void)state;
    char err[512] = "";
    pb_config_t *c = pb_config_new();
    assert_int_equal(set(c, "consumer.dedup.window", "0", err, sizeof err), PB_OK);
    assert_int_equal(set(c, "consumer.dedup.window", "10000000", err, sizeof err), PB_OK);
    assert_int_equal(set(c, "consumer.dedup.window", "10000001", err, sizeof err), PB_ERR_CONFIG);
    assert_non_null(strstr(err, "key 'consumer.dedup.window'"));
    assert_int_equal(set(c, "consumer.dedup.window", "-1", err, sizeof err), PB_ERR_CONFIG);
    assert_int_equal(set(c, "consumer.dedup.window", "many", err, sizeof err), PB_ERR_CONFIG);
    assert_int_equal(set(c, "log.format", "json", err, sizeof err), PB_OK);
    assert_int_equal(set(c, "log.level", "debug", err, sizeof err), PB_OK);
    assert_int_equal(set(c, "log.format", "xml", err, sizeof err), PB_ERR_CONFIG);
    assert_non_null(strstr(err, "text, json"));
    assert_int_equal(pb_config_set_log_fn(c, NULL, NULL), PB_OK);
    assert_int_equal(pb_config_set_log_fn(NULL, NULL, NULL), PB_ERR_INVALID_ARG);
    pb_config_destroy(c);
}

static void test_consumer_scope_defaults_dedup_window_and_log_settings(void **state) {
    (void)state;
    props_t *p = props_new();
    pbd_config_t cfg;
    char err[512] = "";
    const char *kv[][2] = {{"bootstrap.servers", "localhost:9093"},
                           {"tls.ca", path_of("ca.pem")},
                           {"tls.cert", path_of("cert.pem")},
                           {"tls.key", path_of("key.pem")},
                           {"group.id", "g"}};
    for (int i = 0; i < 5; i++)
        assert_int_equal(props_set(p, kv[i][0], kv[i][1], "c.conf", i + 1), 0);
    assert_int_equal(pbconf_load_scoped(&cfg, p, PBCONF_SCOPE_CONSUMER, err, sizeof err), PB_OK);
    assert_int_equal(cfg.dedup_window, 100000); /* on by default */
    assert_int_equal(cfg.log_level, PBLOG_INFO);
    assert_int_equal(cfg.log_format, PBLOG_TEXT);
    pbd_config_free(&cfg);
    assert_int_equal(props_set(p, "consumer.dedup.window", "0", "c.conf", 6), 0);
    assert_int_equal(props_set(p, "log.format", "json", "c.conf", 7), 0);
    assert_int_equal(pbconf_load_scoped(&cfg, p, PBCONF_SCOPE_CONSUMER, err, sizeof err), PB_OK);
    assert_int_equal(cfg.dedup_window, 0);
    assert_int_equal(cfg.log_format, PBLOG_JSON);
    pbd_config_free(&cfg);
    props_free(p);
}

static void test_config_set_unknown_key_names_it_and_suggests(void **state) {
    (void)state;
    char err[512] = "";
    pb_config_t *c = pb_config_new();
    assert_int_equal(set(c, "group.idd", "x", err, sizeof err), PB_ERR_CONFIG);
    assert_non_null(strstr(err, "'group.idd'"));
    assert_non_null(strstr(err, "did you mean 'group.id'"));
    pb_config_destroy(c);
}

static void test_config_set_daemon_only_key_is_unknown_to_consumer(void **state) {
    (void)state;
    char err[512] = "";
    pb_config_t *c = pb_config_new();
    assert_int_equal(set(c, "socket.path", "/tmp/x.sock", err, sizeof err), PB_ERR_CONFIG);
    assert_non_null(strstr(err, "unknown key 'socket.path'"));
    assert_int_equal(set(c, "producer.linger_ms", "5", err, sizeof err), PB_ERR_CONFIG);
    pb_config_destroy(c);
}

static void test_config_set_bad_values_name_key(void **state) {
    (void)state;
    char err[512] = "";
    pb_config_t *c = pb_config_new();
    assert_int_equal(set(c, "auto.offset.reset", "smallest", err, sizeof err), PB_ERR_CONFIG);
    assert_non_null(strstr(err, "key 'auto.offset.reset'"));
    assert_non_null(strstr(err, "earliest, latest"));
    assert_int_equal(set(c, "consumer.retry_backoff_ms", "-1", err, sizeof err), PB_ERR_CONFIG);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(set(c, "tls.ca", "/nonexistent/ca.pem", err, sizeof err), PB_ERR_CONFIG);
    assert_non_null(strstr(err, "key 'tls.ca'"));
    assert_int_equal(set(c, "bootstrap.servers", "plaintext://localhost:9092", err, sizeof err), PB_ERR_INSECURE);
    assert_int_equal(set(NULL, "group.id", "x", err, sizeof err), PB_ERR_INVALID_ARG);
    pb_config_destroy(c);
}

static void test_config_set_refuses_insecure_and_commit_breaking_pass_through(void **state) {
    (void)state;
    static const char *const refused[] = {
        "kafka.security.protocol",   "kafka.ssl.ca.location",          "kafka.enable.ssl.certificate.verification",
        "kafka.enable.auto.commit",  "kafka.enable.auto.offset.store", "kafka.ENABLE.AUTO.COMMIT",
        "kafka.group.id",            "kafka.auto.offset.reset",        "kafka.sasl.mechanisms",
        "kafka.bootstrap.servers",
    };
    char err[512] = "";
    pb_config_t *c = pb_config_new();
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        err[0] = '\0';
        assert_int_equal(set(c, refused[i], "false", err, sizeof err), PB_ERR_INSECURE);
        char want[128];
        snprintf(want, sizeof want, "key '%s'", refused[i]);
        if (!strstr(err, want)) fail_msg("%s: error does not name the key: %s", refused[i], err);
    }
    pb_config_destroy(c);
}

static void test_config_load_file_error_names_file_line_and_leaves_conf_unchanged(void **state) {
    (void)state;
    char err[512] = "", text[512];
    snprintf(text, sizeof text, "group.id = g\n# comment\n\nkafka.enable.auto.offset.store = true\n");
    write_file("bad.conf", text);
    pb_config_t *c = pb_config_new();
    assert_int_equal(pb_config_load_file(c, path_of("bad.conf"), err, sizeof err), PB_ERR_INSECURE);
    char want[256];
    snprintf(want, sizeof want, "%s:4: key 'kafka.enable.auto.offset.store'", path_of("bad.conf"));
    assert_non_null(strstr(err, want));
    /* group.id of line 1 was not taken: the consumer still misses it. */
    assert_null(pb_consumer_new(c, (pb_prediction_fn)1, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "bootstrap.servers"));
    assert_int_equal(pb_config_load_file(c, path_of("missing.conf"), err, sizeof err), PB_ERR_CONFIG);
    assert_non_null(strstr(err, "missing.conf"));
    pb_config_destroy(c);
}

static pb_action_t never(const pb_message_t *m, void *o) {
    (void)m, (void)o;
    fail_msg("on_prediction called");
    return PB_COMMIT;
}

static void test_consumer_new_missing_group_id_is_named(void **state) {
    (void)state;
    char err[512] = "", text[1024];
    snprintf(text, sizeof text,
             "bootstrap.servers = localhost:9093\ntls.ca = %s\ntls.cert = %s\ntls.key = %s\n",
             path_of("ca.pem"), path_of("cert.pem"), path_of("key.pem"));
    write_file("nogroup.conf", text);
    pb_config_t *c = pb_config_new();
    assert_int_equal(pb_config_load_file(c, path_of("nogroup.conf"), err, sizeof err), PB_OK);
    assert_null(pb_consumer_new(c, never, NULL, NULL, err, sizeof err));
    assert_string_equal(err, "missing required key 'group.id'");
    /* With a group, the (fake) certificate is what fails, naming its key: config checks passed. */
    assert_int_equal(set(c, "group.id", "g", err, sizeof err), PB_OK);
    assert_null(pb_consumer_new(c, never, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "tls."));
    assert_null(pb_consumer_new(c, NULL, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "on_prediction"));
    pb_config_destroy(c);
}

static void test_consumer_new_cert_without_key_is_named(void **state) {
    (void)state;
    char err[512] = "";
    pb_config_t *c = pb_config_new();
    assert_int_equal(set(c, "bootstrap.servers", "localhost:9093", err, sizeof err), PB_OK);
    assert_int_equal(set(c, "group.id", "g", err, sizeof err), PB_OK);
    assert_int_equal(set(c, "tls.ca", path_of("ca.pem"), err, sizeof err), PB_OK);
    assert_int_equal(set(c, "tls.cert", path_of("cert.pem"), err, sizeof err), PB_OK);
    assert_null(pb_consumer_new(c, never, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "key 'tls.cert': needs tls.key"));
    pb_config_destroy(c);
}

static void test_daemon_scope_keeps_refusing_consumer_keys(void **state) {
    (void)state;
    props_t *p = props_new();
    pbd_config_t cfg;
    char err[512] = "";
    assert_int_equal(props_set(p, "group.id", "g", "d.conf", 3), 0);
    assert_int_equal(pbd_config_load_ex(&cfg, p, err, sizeof err), PB_ERR_CONFIG);
    assert_non_null(strstr(err, "d.conf:3: unknown key 'group.id'"));
    props_free(p);
    /* ... while the daemon may still pass enable.auto.commit through (a producer ignores it). */
    props_entry_t e = {.key = "kafka.enable.auto.commit", .value = "false", .file = "d.conf", .line = 1};
    assert_int_equal(pbconf_check_entry(&e, PBCONF_SCOPE_DAEMON, err, sizeof err), PB_OK);
    assert_int_equal(pbconf_check_entry(&e, PBCONF_SCOPE_CONSUMER, err, sizeof err), PB_ERR_INSECURE);
}

static void test_error_mapping_kafka_errors_to_pb_codes(void **state) {
    (void)state;
    assert_int_equal(pbmsg_map_kafka_error(RD_KAFKA_RESP_ERR_NO_ERROR), PB_OK);
    assert_int_equal(pbmsg_map_kafka_error(RD_KAFKA_RESP_ERR__SSL), PB_ERR_TLS);
    assert_int_equal(pbmsg_map_kafka_error(RD_KAFKA_RESP_ERR__AUTHENTICATION), PB_ERR_AUTHENTICATION);
    assert_int_equal(pbmsg_map_kafka_error(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED), PB_ERR_AUTHORIZATION);
    assert_int_equal(pbmsg_map_kafka_error(RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED), PB_ERR_AUTHORIZATION);
    assert_int_equal(pbmsg_map_kafka_error(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN), PB_ERR_BROKER);
    assert_int_equal(pbmsg_map_kafka_error(RD_KAFKA_RESP_ERR__TRANSPORT), PB_ERR_BROKER);
    assert_int_equal(pbmsg_map_kafka_error(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART), PB_ERR_NOT_FOUND);
}

static void test_error_classify_handshake_failures(void **state) {
    (void)state;
    assert_int_equal(pbmsg_classify_error(RD_KAFKA_RESP_ERR__SSL, "SSL handshake failed: certificate verify failed"),
                     PB_ERR_TLS);
    assert_int_equal(pbmsg_classify_error(RD_KAFKA_RESP_ERR__TRANSPORT, "SSL routines::tlsv1 alert protocol version"),
                     PB_ERR_TLS);
    assert_int_equal(pbmsg_classify_error(RD_KAFKA_RESP_ERR__SSL, "error:0A000418:SSL routines::tlsv1 alert unknown ca"),
                     PB_ERR_AUTHENTICATION);
    assert_int_equal(pbmsg_classify_error(RD_KAFKA_RESP_ERR__TRANSPORT,
                                          "SSL routines::ssl/tls alert certificate unknown"),
                     PB_ERR_AUTHENTICATION);
    assert_int_equal(pbmsg_classify_error(RD_KAFKA_RESP_ERR__TRANSPORT, "Connection refused"), PB_ERR_BROKER);
    assert_int_equal(pbmsg_classify_error(RD_KAFKA_RESP_ERR__AUTHENTICATION, NULL), PB_ERR_AUTHENTICATION);
}

static void test_error_every_code_has_name_and_message(void **state) {
    (void)state;
#define CHECK_(name, value, msg)                                         \
    assert_string_equal(pb_err_name(PB_##name), "PB_" #name);            \
    assert_string_equal(pb_strerror(PB_##name), msg);                    \
    assert_true((value) <= 0);
    PB_ERRNO_MAP(CHECK_)
#undef CHECK_
    assert_string_equal(pb_err_name((pb_err_t)-999), "PB_ERR_UNKNOWN");
    assert_string_equal(pb_strerror((pb_err_t)-999), "unknown error");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_set_consumer_keys_accepted),
        cmocka_unit_test(test_config_set_dedup_window_and_log_keys_accepted_in_range),
        cmocka_unit_test(test_consumer_scope_defaults_dedup_window_and_log_settings),
        cmocka_unit_test(test_config_set_unknown_key_names_it_and_suggests),
        cmocka_unit_test(test_config_set_daemon_only_key_is_unknown_to_consumer),
        cmocka_unit_test(test_config_set_bad_values_name_key),
        cmocka_unit_test(test_config_set_refuses_insecure_and_commit_breaking_pass_through),
        cmocka_unit_test(test_config_load_file_error_names_file_line_and_leaves_conf_unchanged),
        cmocka_unit_test(test_consumer_new_missing_group_id_is_named),
        cmocka_unit_test(test_consumer_new_cert_without_key_is_named),
        cmocka_unit_test(test_daemon_scope_keeps_refusing_consumer_keys),
        cmocka_unit_test(test_error_mapping_kafka_errors_to_pb_codes),
        cmocka_unit_test(test_error_classify_handshake_failures),
        cmocka_unit_test(test_error_every_code_has_name_and_message),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
