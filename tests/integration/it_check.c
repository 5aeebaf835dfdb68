/* it_check: `predbridge check` against the real mTLS broker: verdict and exit code for a good config,
 * the TLS12 and BADHOST listeners, unauthorised and refused principals, expired material, pins, JSON. */
#include "itest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h> /* after the three above, which it needs */

#include "common/tls.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct run {
    int status;
    char out[65536];
} run_t;

static const char *cli_path(void) {
    static char p[1200];
    const char *b = getenv("PB_BUILD_DIR");
    assert_non_null(b);
    snprintf(p, sizeof p, "%s/src/cli/predbridge", b);
    return p;
}

/* Runs `predbridge check --config FILE [args]`, stdout in r->out, stderr appended. */
static void run_check(run_t *r, const char *config, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' check --config '%s' %s 2>&1", cli_path(), config, args ? args : "");
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(r->out, 1, sizeof r->out - 1, f);
    r->out[n] = '\0';
    int st = pclose(f);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (getenv("PB_ITEST_VERBOSE")) fprintf(stderr, "%s\n", r->out);
    /* The CLI is built with ASan/UBSan: an error there may exit 1 like a verdict, so look for it. */
    if (strstr(r->out, "Sanitizer") || strstr(r->out, "runtime error:")) {
        fprintf(stderr, "%s\n", r->out);
        fail_msg("sanitizer report in predbridge check's output");
    }
}

static void expect(const run_t *r, int status, const char *needle) {
    if (r->status != status || (needle && !strstr(r->out, needle))) {
        fprintf(stderr, "expected exit %d and '%s', got exit %d:\n%s\n", status, needle ? needle : "",
                r->status, r->out);
        fail();
    }
}

/* A producer config (predbridged) for bootstrap, as `who`, plus extra lines. */
static void producer_config(itest_daemon_t *d, const char *bootstrap, const char *who, const char *extra) {
    char lines[4096];
    const itest_env_t *e = itest_env();
    snprintf(lines, sizeof lines, "bootstrap.servers = %s\ntls.cert = %s/%s.crt\ntls.key = %s/%s.key\n%s",
             bootstrap, e->cert_dir, who, e->cert_dir, who, extra ? extra : "");
    itest_daemon_config(d, e->topic, lines);
}

/* A consumer config (libpredbridge) in a fresh directory; path written into d->config. */
static void consumer_config(itest_daemon_t *d, const char *who) {
    const itest_env_t *e = itest_env();
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "/tmp/pbit-check-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->config, sizeof d->config, "%s/consumer.conf", d->dir);
    FILE *f = fopen(d->config, "w");
    assert_non_null(f);
    fprintf(f,
            "bootstrap.servers = %s\ngroup.id = it-check\ntopics = %s\ntls.ca = %s/ca.crt\n"
            "tls.cert = %s/%s.crt\ntls.key = %s/%s.key\n",
            e->bootstrap, e->topic, e->cert_dir, e->cert_dir, who, e->cert_dir, who);
    fclose(f);
}

static void cleanup(itest_daemon_t *d) {
    unlink(d->config);
    rmdir(d->dir);
}

/* The SPKI pin of the broker's certificate in the test PKI. */
static void broker_pin(char *out, size_t size) {
    FILE *f = fopen(itest_cert("broker.crt"), "rb");
    assert_non_null(f);
    unsigned char buf[16384];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    pbtls_cert_info_t info;
    assert_int_equal(pbtls_describe_der(buf, n, &info), 0);
    snprintf(out, size, "%s", info.spki_pin);
}

static void test_check_mtls_listener_good_config_is_ok_exit_0(void **state) {
    (void)state;
    itest_daemon_t d;
    run_t r;
    itest_daemon_config(&d, itest_env()->topic, NULL);
    run_check(&r, d.config, NULL);
    expect(&r, 0, "verdict: OK");
    expect(&r, 0, "negotiated TLSv1.3");
    expect(&r, 0, "client certificate accepted");
    expect(&r, 0, "principal may write topic");
    expect(&r, 0, "subject   O=predbridge test,CN=predbridged");
    expect(&r, 0, "sha256    ");
    expect(&r, 0, "private key matches the client certificate");
    expect(&r, 0, "this is the pin to add");
    cleanup(&d);
}

static void test_check_tls12_listener_refused_for_tls_version_exit_1(void **state) {
    (void)state;
    itest_daemon_t d;
    run_t r;
    producer_config(&d, itest_env()->bootstrap_tls12, "predbridged", NULL);
    run_check(&r, d.config, NULL);
    expect(&r, 1, "does not speak TLS 1.3");
    expect(&r, 1, "verdict: PROBLEMS");
    cleanup(&d);
}

static void test_check_badhost_listener_names_host_name_mismatch_exit_1(void **state) {
    (void)state;
    itest_daemon_t d;
    run_t r;
    producer_config(&d, itest_env()->bootstrap_badhost, "predbridged", NULL);
    run_check(&r, d.config, NULL);
    expect(
        &r, 1,
        "host name MISMATCH: the broker's certificate is for 'DNS:wrong.example.invalid', not 'localhost'");
    expect(&r, 1, "broker certificate chain verifies against tls.ca");
    assert_null(strstr(r.out, "client certificate accepted")); /* nothing is sent to a wrong host */
    cleanup(&d);
}

static void test_check_consumer_principal_in_producer_config_cannot_write_exit_1(void **state) {
    (void)state;
    itest_daemon_t d;
    run_t r;
    int64_t before = itest_topic_size(itest_env()->topic);
    producer_config(&d, itest_env()->bootstrap, "predbridge-consumer", NULL);
    run_check(&r, d.config, NULL);
    expect(&r, 1, "client certificate accepted");
    expect(&r, 1, "principal may NOT write topic 'predictions' (broker: TOPIC_AUTHORIZATION_FAILED)");
    /* The probes of all tests write nothing. */
    itest_daemon_config(&d, itest_env()->topic, NULL);
    run_check(&r, d.config, NULL);
    expect(&r, 0, "nothing written");
    assert_int_equal(itest_topic_size(itest_env()->topic), before);
    cleanup(&d);
}

static void test_check_client_cert_from_untrusted_ca_refused_by_broker_exit_1(void **state) {
    (void)state;
    itest_daemon_t d;
    run_t r;
    producer_config(&d, itest_env()->bootstrap, "untrusted-client", NULL);
    run_check(&r, d.config, NULL);
    expect(&r, 1, "does not verify against tls.ca");
    expect(&r, 1, "client certificate REFUSED by the broker");
    cleanup(&d);
}

static void test_check_expired_client_cert_reported_exit_1(void **state) {
    (void)state;
    itest_daemon_t d;
    run_t r;
    producer_config(&d, itest_env()->bootstrap, "expired-client", NULL);
    run_check(&r, d.config, NULL);
    expect(&r, 1, "certificate expired on 2020-02-01");
    expect(&r, 1, "EXPIRED");
    expect(&r, 1, "client certificate REFUSED by the broker");
    cleanup(&d);
}

/* Counts the lines of the human report that begin with "  FAIL ". */
static size_t fail_lines(const char *out) {
    size_t n = 0;
    for (const char *p = out; (p = strstr(p, "\n  FAIL ")) != NULL; p++)
        n++;
    return n;
}

/* A path with a byte that is not UTF-8 (jansson refuses such text) must not hide the problem it is in:
 * every problem is counted and shown, and the certificate stays in the JSON report. */
static void test_check_expired_cert_at_non_utf8_path_counts_every_problem_exit_1(void **state) {
    (void)state;
    itest_daemon_t d;
    run_t r;
    json_error_t jerr;
    char dir[64] = "/tmp/pbit-check-XXXXXX", bad[128], extra[512];
    assert_non_null(mkdtemp(dir));
    snprintf(bad, sizeof bad, "%s/certs-\xff", dir);
    assert_int_equal(itest_system("mkdir '%s' && cp -p '%s' '%s' '%s'", bad, itest_cert("expired-client.crt"),
                                  itest_cert("expired-client.key"), bad),
                     0);
    snprintf(extra, sizeof extra, "tls.cert = %s/expired-client.crt\ntls.key = %s/expired-client.key\n", bad,
             bad);
    itest_daemon_config(&d, itest_env()->topic, extra);

    run_check(&r, d.config, NULL);
    expect(&r, 1, "certificate expired on 2020-02-01");
    expect(&r, 1, "client certificate REFUSED by the broker");
    assert_int_equal(fail_lines(r.out), 2);
    expect(&r, 1, "verdict: PROBLEMS: the config does not work as it is (2 problems");
    expect(&r, 1, "  - tls.cert '"); /* the material's problem is listed too */

    run_check(&r, d.config, "--json");
    assert_int_equal(r.status, 1);
    json_t *j = json_loads(r.out, 0, &jerr);
    if (!j) fail_msg("not JSON (%s): %s", jerr.text, r.out);
    assert_string_equal(json_string_value(json_object_get(j, "verdict")), "problems");
    json_t *problems = json_object_get(j, "problems");
    assert_int_equal(json_array_size(problems), 2);
    assert_non_null(strstr(json_string_value(json_array_get(problems, 0)), "certificate expired on 2020-02-01"));
    assert_non_null(strstr(json_string_value(json_array_get(problems, 0)), "certs-\xef\xbf\xbd/")); /* U+FFFD */
    json_t *client = json_object_get(json_object_get(j, "certificates"), "client");
    assert_non_null(client);
    assert_string_equal(json_string_value(json_object_get(client, "status")), "EXPIRED");
    json_decref(j);
    cleanup(&d);
    itest_system("rm -rf '%s'", dir);
}

static void test_check_mismatched_key_reported_exit_1(void **state) {
    (void)state;
    itest_daemon_t d;
    run_t r;
    producer_config(&d, itest_env()->bootstrap, "mismatch-client", NULL);
    run_check(&r, d.config, NULL);
    expect(&r, 1, "does not match certificate");
    cleanup(&d);
}

static void test_check_pins_match_ok_and_mismatch_fails(void **state) {
    (void)state;
    itest_daemon_t d;
    run_t r;
    char pin[80], extra[300];
    broker_pin(pin, sizeof pin);
    /* A backup pin first, the broker's second: a match on any is enough. */
    snprintf(extra, sizeof extra, "tls.pins = sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,%s\n",
             pin);
    producer_config(&d, itest_env()->bootstrap, "predbridged", extra);
    run_check(&r, d.config, NULL);
    expect(&r, 0, "matches tls.pins #2");
    cleanup(&d);
    producer_config(&d, itest_env()->bootstrap, "predbridged",
                    "tls.pins = sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
    run_check(&r, d.config, NULL);
    expect(&r, 1, "matches none of the 1 configured tls.pins");
    assert_non_null(strstr(r.out, pin)); /* the broker's actual pin is shown, ready to paste */
    assert_null(strstr(r.out, "client certificate accepted"));
    cleanup(&d);
}

static void test_check_consumer_config_read_allowed_and_refused(void **state) {
    (void)state;
    itest_daemon_t d;
    run_t r;
    consumer_config(&d, "predbridge-consumer");
    run_check(&r, d.config, NULL);
    expect(&r, 0, "consumer (libpredbridge) config loaded");
    expect(&r, 0, "principal may read topic 'predictions'");
    expect(&r, 0, "principal may describe consumer group 'it-check'");
    cleanup(&d);
    consumer_config(&d, "predbridged"); /* the producer's principal may write, not read */
    run_check(&r, d.config, NULL);
    expect(&r, 1, "principal may NOT read topic 'predictions'");
    expect(&r, 1, "principal may NOT use consumer group 'it-check'");
    cleanup(&d);
}

static void test_check_json_parses_and_carries_verdict(void **state) {
    (void)state;
    itest_daemon_t d;
    run_t r;
    json_error_t jerr;
    itest_daemon_config(&d, itest_env()->topic, NULL);
    run_check(&r, d.config, "--json");
    assert_int_equal(r.status, 0);
    json_t *j = json_loads(r.out, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "verdict")), "ok");
    assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 0);
    assert_string_equal(json_string_value(json_object_get(j, "scope")), "producer");
    json_t *b = json_array_get(json_object_get(j, "brokers"), 0);
    assert_string_equal(json_string_value(json_object_get(b, "tls_version")), "TLSv1.3");
    assert_true(json_array_size(json_object_get(b, "chain")) >= 1);
    assert_non_null(json_object_get(json_object_get(j, "certificates"), "client"));
    json_decref(j);
    cleanup(&d);

    producer_config(&d, itest_env()->bootstrap_badhost, "predbridged", NULL);
    run_check(&r, d.config, "--json");
    assert_int_equal(r.status, 1);
    j = json_loads(r.out, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "verdict")), "problems");
    const char *p = json_string_value(json_array_get(json_object_get(j, "problems"), 0));
    assert_non_null(p);
    assert_non_null(strstr(p, "wrong.example.invalid"));
    json_decref(j);
    cleanup(&d);
}

static void test_check_missing_topic_and_usage_errors(void **state) {
    (void)state;
    itest_daemon_t d;
    run_t r;
    itest_daemon_config(&d, "predictions-it-check-absent", NULL);
    run_check(&r, d.config, NULL);
    expect(&r, 1, "topic 'predictions-it-check-absent' does not exist");
    cleanup(&d);
    run_check(&r, "/nonexistent/predbridged.conf", NULL);
    expect(&r, 1, "/nonexistent/predbridged.conf");
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "'%s' check >/dev/null 2>&1", cli_path());
    assert_int_equal(itest_system("%s", cmd), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_mtls_listener_good_config_is_ok_exit_0),
        cmocka_unit_test(test_check_tls12_listener_refused_for_tls_version_exit_1),
        cmocka_unit_test(test_check_badhost_listener_names_host_name_mismatch_exit_1),
        cmocka_unit_test(test_check_consumer_principal_in_producer_config_cannot_write_exit_1),
        cmocka_unit_test(test_check_client_cert_from_untrusted_ca_refused_by_broker_exit_1),
        cmocka_unit_test(test_check_expired_client_cert_reported_exit_1),
        cmocka_unit_test(test_check_expired_cert_at_non_utf8_path_counts_every_problem_exit_1),
        cmocka_unit_test(test_check_mismatched_key_reported_exit_1),
        cmocka_unit_test(test_check_pins_match_ok_and_mismatch_fails),
        cmocka_unit_test(test_check_consumer_config_read_allowed_and_refused),
        cmocka_unit_test(test_check_json_parses_and_carries_verdict),
        cmocka_unit_test(test_check_missing_topic_and_usage_errors),
    };
    if (getenv("PB_ITEST_FILTER")) cmocka_set_test_filter(getenv("PB_ITEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
