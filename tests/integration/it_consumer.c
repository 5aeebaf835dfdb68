/* it_consumer: libpredbridge against the real mTLS broker: records from an independent producer reach
 * on_prediction with their metadata and in order, commits, redelivery, retries, bad records, refused
 * brokers, clean destruction, and `predbridge tail` end to end. */
#include "it_consumer_util.h"
#include "../support/pb_sockets.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

static void test_consumer_delivers_independent_records_with_metadata_in_partition_order(void **state) {
    (void)state;
    char topic[256], group[128], err[512];
    itest_create_topic("predictions-it-consumer", 3, topic, sizeof topic);
    enum { N = 60 };
    const char *values[N];
    int parts[N];
    for (int i = 0; i < N; i++) values[i] = valid_value(i), parts[i] = i % 3;
    produce(topic, values, parts, N, "order", 1700000000000);

    static sink_t s;
    sink_init(&s);
    unique_group(group, sizeof group, "order");
    pb_consumer_t *c = new_consumer(topic, group, NULL, &s);
    poll_until(c, &s, N, PB_OK, 60000);
    assert_int_equal(s.n, N);
    int64_t last[3] = {-1, -1, -1};
    int last_i[3] = {-1, -1, -1};
    for (int k = 0; k < s.n; k++) {
        rec_t *r = &s.recs[k];
        int i = atoi(strstr(r->value, "\"i\":") + 4);
        assert_true(i >= 0 && i < N);
        assert_string_equal(r->value, values[i]); /* the bytes as produced */
        assert_true(r->has_json);
        assert_string_equal(r->topic, topic);
        assert_int_equal(r->partition, parts[i]);
        char want[64];
        snprintf(want, sizeof want, "id-order-%d", i);
        assert_string_equal(r->id, want);
        assert_string_equal(r->producer, "it-producer");
        snprintf(want, sizeof want, "m-%d", i % 3);
        assert_string_equal(r->model_version, want);
        snprintf(want, sizeof want, "k%d", i);
        assert_string_equal(r->key, want);
        assert_int_equal(r->timestamp_ms, 1700000000000 + i);
        /* In order per partition: offsets and production order both increase. */
        assert_true(r->offset > last[r->partition]);
        assert_true(i > last_i[r->partition]);
        last[r->partition] = r->offset;
        last_i[r->partition] = i;
    }
    assert_int_equal(count_errors(&s, PB_ERR_PARSE, NULL), 0);
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    assert_int_equal(pb_consumer_poll(c, 0), PB_ERR_STATE);
    pb_consumer_destroy(c);

    /* close committed: the same group now gets only what is new. */
    const char *one[] = {valid_value(N)};
    int p0[] = {0};
    produce(topic, one, p0, 1, "after", 1700000001000);
    sink_init(&s);
    c = new_consumer(topic, group, NULL, &s);
    poll_until(c, &s, 1, PB_OK, 60000);
    pb_consumer_poll(c, 500); /* anything wrongly redelivered would be queued right behind it */
    assert_int_equal(s.n, 1);
    assert_string_equal(s.recs[0].id, "id-after-0");
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    pb_consumer_destroy(c);
}

/* The consumer's broker connections have TCP_NODELAY (a fetch or commit does not wait for the
 * broker's delayed ACK), unless kafka.socket.nagle.disable says otherwise. */
static void expect_nodelay(const char *topic, const char *extra, int want_on) {
    char group[128], err[512];
    static sink_t s;
    sink_init(&s);
    unique_group(group, sizeof group, "nodelay");
    pb_consumer_t *c = new_consumer(topic, group, extra, &s);
    poll_until(c, &s, 1, PB_OK, 60000);
    assert_int_equal(s.n, 1);
    const char *why = pbt_tcp_nodelay_mismatch(itest_env()->bootstrap, want_on);
    if (why) fail_msg("%s: %s", extra ? extra : "default", why);
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    pb_consumer_destroy(c);
}

static void test_consumer_connections_have_tcp_nodelay_unless_configured(void **state) {
    (void)state;
    char topic[256];
    itest_create_topic("predictions-it-consumer", 1, topic, sizeof topic);
    const char *values[] = {valid_value(0)};
    produce(topic, values, NULL, 1, "nodelay", 1700000000000);
    expect_nodelay(topic, NULL, 1);
    expect_nodelay(topic, "kafka.socket.nagle.disable=false", 0);
}

static void test_consumer_destroyed_without_close_redelivers_to_the_group(void **state) {
    (void)state;
    char topic[256], group[128], err[512];
    itest_create_topic("predictions-it-consumer", 1, topic, sizeof topic);
    const char *values[5];
    for (int i = 0; i < 5; i++) values[i] = valid_value(i);
    produce(topic, values, NULL, 5, "crash", 1700000000000);
    unique_group(group, sizeof group, "crash");

    static sink_t s;
    sink_init(&s);
    /* No periodic commit during the test: only close could commit, and it is never called. */
    pb_consumer_t *c = new_consumer(topic, group, "consumer.commit_interval_ms=60000", &s);
    poll_until(c, &s, 5, PB_OK, 60000);
    assert_int_equal(s.n, 5);
    pb_consumer_destroy(c); /* a crash, as far as the group knows */

    sink_init(&s);
    c = new_consumer(topic, group, NULL, &s);
    poll_until(c, &s, 5, PB_OK, 90000);
    assert_int_equal(s.n, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(s.recs[i].offset, i);
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    pb_consumer_destroy(c);
}

static void test_consumer_retry_redelivers_same_message_after_backoff_keeping_order(void **state) {
    (void)state;
    char topic[256], group[128], err[512];
    itest_create_topic("predictions-it-consumer", 1, topic, sizeof topic);
    const char *values[6];
    for (int i = 0; i < 6; i++) values[i] = valid_value(i);
    produce(topic, values, NULL, 6, "retry", 1700000000000);
    unique_group(group, sizeof group, "retry");

    static sink_t s;
    sink_init(&s);
    s.retry_offset = 2;
    pb_consumer_t *c = new_consumer(topic, group, NULL, &s);
    poll_until(c, &s, 6, PB_OK, 60000);
    assert_int_equal(s.n, 6);
    assert_true(s.retried);
    /* Offsets 0..5 each exactly once among the commits, in order: 3 never overtook the retried 2. */
    for (int i = 0; i < 6; i++) assert_int_equal(s.recs[i].offset, i);
    assert_true(s.redelivered_at_ms - s.retry_at_ms >= 250); /* backoff 300 ms, clock granularity aside */
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    pb_consumer_destroy(c);
}

static void test_consumer_malformed_records_reported_skipped_and_committed(void **state) {
    (void)state;
    char topic[256], group[128], err[512];
    itest_create_topic("predictions-it-consumer", 1, topic, sizeof topic);
    const char *values[] = {"not json at all", "[1,2,3]", "{\"model_version\":\"m\"}", valid_value(3)};
    produce(topic, values, NULL, 4, "bad", 1700000000000);
    unique_group(group, sizeof group, "bad");

    static sink_t s;
    sink_init(&s);
    pb_consumer_t *c = new_consumer(topic, group, NULL, &s);
    poll_until(c, &s, 1, PB_OK, 60000);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.recs[0].offset, 3); /* only the valid one reached on_prediction */
    assert_int_equal(count_errors(&s, PB_ERR_PARSE, NULL), 3);
    assert_int_equal(count_errors(&s, PB_ERR_PARSE, "not_json"), 1);
    assert_int_equal(count_errors(&s, PB_ERR_PARSE, "not_object"), 1);
    assert_int_equal(count_errors(&s, PB_ERR_PARSE, "missing required field 'prediction'"), 1);
    for (int i = 0; i < s.n_errs; i++)
        if (s.errs[i].code == PB_ERR_PARSE) assert_true(s.errs[i].offset >= 0 && s.errs[i].offset <= 2);
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    pb_consumer_destroy(c);

    /* Skipped for good: the group does not see them again. */
    const char *one[] = {valid_value(4)};
    produce(topic, one, NULL, 1, "bad-after", 1700000000000);
    sink_init(&s);
    c = new_consumer(topic, group, NULL, &s);
    poll_until(c, &s, 1, PB_OK, 60000);
    pb_consumer_poll(c, 500);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.recs[0].offset, 4);
    assert_int_equal(count_errors(&s, PB_ERR_PARSE, NULL), 0);
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    pb_consumer_destroy(c);
}

/* A broker that fails verification: on_error gets PB_ERR_TLS naming the problem, nothing is delivered
 * although the topic holds a valid record. */
static void expect_tls_refusal(const char *extra, const char *needle) {
    char topic[256], group[128];
    itest_create_topic("predictions-it-consumer", 1, topic, sizeof topic);
    const char *values[] = {valid_value(0)};
    produce(topic, values, NULL, 1, "tls", 1700000000000);
    unique_group(group, sizeof group, "tls");
    static sink_t s;
    sink_init(&s);
    pb_consumer_t *c = new_consumer(topic, group, extra, &s);
    int64_t deadline = itest_now_ms() + 30000;
    while (itest_now_ms() < deadline && count_errors(&s, PB_ERR_TLS, needle) == 0) pb_consumer_poll(c, 200);
    if (count_errors(&s, PB_ERR_TLS, needle) == 0) {
        for (int i = 0; i < s.n_errs; i++) fprintf(stderr, "  seen %s: %s\n", pb_err_name(s.errs[i].code), s.errs[i].cause);
        fail_msg("no PB_ERR_TLS naming '%s'", needle);
    }
    pb_consumer_poll(c, 500);
    assert_int_equal(s.n, 0);
    /* Counted, and nothing was received from the unverified broker. */
    assert_true(stat_of(c, PB_STAT_TLS_FAILURES) >= 1);
    assert_int_equal(stat_of(c, PB_STAT_RECEIVED), 0);
    pb_consumer_destroy(c);
}

static void test_consumer_refuses_broker_from_untrusted_ca(void **state) {
    (void)state;
    char extra[1024];
    /* Our own certificate must chain to tls.ca too, so use the untrusted CA's client. */
    snprintf(extra, sizeof extra, "tls.ca=%s\ntls.cert=%s\ntls.key=%s", itest_cert("untrusted-ca.crt"),
             itest_cert("untrusted-client.crt"), itest_cert("untrusted-client.key"));
    expect_tls_refusal(extra, "tls.ca does not hold the CA that issued the broker's certificate");
}

static void test_consumer_refuses_broker_with_wrong_host_name(void **state) {
    (void)state;
    char extra[512];
    snprintf(extra, sizeof extra, "bootstrap.servers=%s", itest_env()->bootstrap_badhost);
    expect_tls_refusal(extra, "wrong.example.invalid");
}

static void test_consumer_refuses_tls12_listener(void **state) {
    (void)state;
    char extra[512];
    snprintf(extra, sizeof extra, "bootstrap.servers=%s", itest_env()->bootstrap_tls12);
    expect_tls_refusal(extra, "protocol version");
}

static void test_consumer_refuses_broker_whose_key_matches_no_pin(void **state) {
    (void)state;
    expect_tls_refusal("tls.pins=sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "matches none of");
}

static void test_consumer_reports_authorization_failure_for_a_principal_without_read(void **state) {
    (void)state;
    char topic[256], group[128], extra[1024];
    itest_create_topic("predictions-it-consumer", 1, topic, sizeof topic);
    const char *values[] = {valid_value(0)};
    produce(topic, values, NULL, 1, "authz", 1700000000000);
    unique_group(group, sizeof group, "authz");
    /* predbridged may write the topics, not read them nor use groups. */
    snprintf(extra, sizeof extra, "tls.cert=%s\ntls.key=%s", itest_cert("predbridged.crt"),
             itest_cert("predbridged.key"));
    static sink_t s;
    sink_init(&s);
    pb_consumer_t *c = new_consumer(topic, group, extra, &s);
    poll_until(c, &s, 0, PB_ERR_AUTHORIZATION, 30000);
    if (count_errors(&s, PB_ERR_AUTHORIZATION, NULL) == 0) {
        for (int i = 0; i < s.n_errs; i++) fprintf(stderr, "  seen %s: %s\n", pb_err_name(s.errs[i].code), s.errs[i].cause);
        fail_msg("no PB_ERR_AUTHORIZATION");
    }
    assert_int_equal(s.n, 0);
    assert_true(stat_of(c, PB_STAT_AUTH_FAILURES) >= 1);
    pb_consumer_destroy(c);
}

struct stopper {
    sink_t *s;
    int want;
    int64_t stopped_at;
};

/* Waits (condition variable, no sleeping) until the consumer delivered `want` records, then stops it
 * from this other thread while run() waits for more. */
static void *stopper_main(void *p) {
    struct stopper *st = p;
    pthread_mutex_lock(&st->s->lock);
    while (st->s->n < st->want) pthread_cond_wait(&st->s->cond, &st->s->lock);
    pthread_mutex_unlock(&st->s->lock);
    st->stopped_at = itest_now_ms();
    pb_consumer_stop(st->s->c);
    return NULL;
}

static void test_consumer_run_returns_promptly_when_stopped_from_another_thread(void **state) {
    (void)state;
    char topic[256], group[128], err[512];
    itest_create_topic("predictions-it-consumer", 1, topic, sizeof topic);
    const char *values[3];
    for (int i = 0; i < 3; i++) values[i] = valid_value(i);
    produce(topic, values, NULL, 3, "run", 1700000000000);
    unique_group(group, sizeof group, "run");
    static sink_t s;
    sink_init(&s);
    pb_consumer_t *c = new_consumer(topic, group, NULL, &s);
    struct stopper st = {.s = &s, .want = 3};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stopper_main, &st), 0);
    assert_int_equal(pb_consumer_run(c), PB_OK);
    int64_t returned = itest_now_ms();
    pthread_join(th, NULL);
    assert_int_equal(s.n, 3);
    assert_true(returned - st.stopped_at < 900); /* woken by stop, not by run's 1 s slice */
    assert_int_equal(pb_consumer_poll(c, 0), PB_ERR_STOPPED);
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    pb_consumer_destroy(c);
}

static void test_consumer_destroy_with_messages_in_flight_is_clean(void **state) {
    (void)state;
    char topic[256], group[128];
    itest_create_topic("predictions-it-consumer", 2, topic, sizeof topic);
    enum { N = 400 };
    const char *values[N];
    int parts[N];
    for (int i = 0; i < N; i++) values[i] = valid_value(i), parts[i] = i % 2;
    produce(topic, values, parts, N, "inflight", 1700000000000);
    unique_group(group, sizeof group, "inflight");
    static sink_t s;
    sink_init(&s);
    s.stop_after = 5; /* dispatch stops mid-batch: the rest stays fetched and queued */
    s.retry_offset = 2;
    pb_consumer_t *c = new_consumer(topic, group, NULL, &s);
    poll_until(c, &s, 5, PB_OK, 60000);
    assert_true(s.n >= 5 && s.n < N);
    pb_consumer_destroy(c); /* ASan/LSan (and valgrind) judge this one */
}

/* ---- predbridge tail ---- */

static void test_tail_prints_max_predictions_with_metadata_and_exits_zero(void **state) {
    (void)state;
    char topic[256], conf[256], args[1024];
    static char out[65536];
    itest_create_topic("predictions-it-consumer", 1, topic, sizeof topic);
    const char *values[] = {valid_value(0), "oops", valid_value(2), valid_value(3), valid_value(4)};
    produce(topic, values, NULL, 5, "tail", 1700000000000);
    write_tail_config(conf, sizeof conf, topic);

    snprintf(args, sizeof args, "--config %s --from-beginning --max 3 --metadata", conf);
    assert_int_equal(run_tail(args, out, sizeof out), 0);
    int lines = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strstr(l, "PB_ERR_PARSE")) continue; /* the bad record, reported on stderr */
        json_error_t je;
        json_t *o = json_loads(l, 0, &je);
        if (!o) fail_msg("not a JSON line: %s", l);
        int i = (int)json_integer_value(json_object_get(o, "offset")); /* record i is at offset i */
        assert_string_equal(json_string_value(json_object_get(o, "topic")), topic);
        char id[64];
        snprintf(id, sizeof id, "id-tail-%d", i);
        assert_string_equal(json_string_value(json_object_get(o, "id")), id);
        assert_string_equal(json_string_value(json_object_get(o, "producer")), "it-producer");
        assert_int_equal(json_integer_value(json_object_get(o, "timestamp_ms")), 1700000000000 + i);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "record"), "i")), i);
        json_decref(o);
        lines++;
    }
    assert_int_equal(lines, 3);

    /* Bare records, and a usage error. */
    snprintf(args, sizeof args, "--config %s --from-beginning --max 1", conf);
    assert_int_equal(run_tail(args, out, sizeof out), 0);
    assert_non_null(strstr(out, valid_value(0)));
    assert_int_equal(run_tail("--max 0", out, sizeof out), 2);
    unlink(conf);
}

static void test_tail_exits_one_on_unverified_broker(void **state) {
    (void)state;
    char conf[256], args[1024];
    static char out[65536];
    write_tail_config(conf, sizeof conf, itest_env()->topic);
    snprintf(args, sizeof args, "--config %s --from-beginning --max 1 -o bootstrap.servers=%s", conf,
             itest_env()->bootstrap_badhost);
    assert_int_equal(run_tail(args, out, sizeof out), 1);
    assert_non_null(strstr(out, "PB_ERR_TLS"));
    assert_non_null(strstr(out, "wrong.example.invalid"));
    assert_null(strstr(out, "\"model_version\""));
    unlink(conf);
}

static void test_tail_stops_cleanly_on_sigterm_and_exits_zero(void **state) {
    (void)state;
    char topic[256], conf[256], bin[1200], line[4096] = "";
    itest_create_topic("predictions-it-consumer", 1, topic, sizeof topic);
    const char *values[] = {valid_value(0)};
    produce(topic, values, NULL, 1, "sig", 1700000000000);
    write_tail_config(conf, sizeof conf, topic);
    snprintf(bin, sizeof bin, "%s/src/cli/predbridge", getenv("PB_BUILD_DIR"));
    int out[2];
    assert_int_equal(pipe(out), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execl(bin, "predbridge", "tail", "--config", conf, "--from-beginning", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    /* Once the record is printed, tail is inside pb_consumer_run waiting for more: stop it there. */
    size_t len = 0;
    int64_t deadline = itest_now_ms() + 60000;
    while (!memchr(line, '\n', len) && itest_now_ms() < deadline && len < sizeof line - 1) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0) continue;
        ssize_t n = read(out[0], line + len, sizeof line - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
        line[len] = '\0';
    }
    assert_non_null(strstr(line, valid_value(0)));
    assert_int_equal(kill(pid, SIGTERM), 0);
    int st = -1;
    deadline = itest_now_ms() + 30000;
    while (itest_now_ms() < deadline && waitpid(pid, &st, WNOHANG) == 0) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        poll(&p, 1, 100); /* wakes on EOF when tail exits */
        char sink[256];
        if (p.revents) (void)!read(out[0], sink, sizeof sink);
    }
    close(out[0]);
    if (!WIFEXITED(st)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("tail did not exit on SIGTERM");
    }
    assert_int_equal(WEXITSTATUS(st), 0);
    unlink(conf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consumer_delivers_independent_records_with_metadata_in_partition_order),
        cmocka_unit_test(test_consumer_connections_have_tcp_nodelay_unless_configured),
        cmocka_unit_test(test_consumer_destroyed_without_close_redelivers_to_the_group),
        cmocka_unit_test(test_consumer_retry_redelivers_same_message_after_backoff_keeping_order),
        cmocka_unit_test(test_consumer_malformed_records_reported_skipped_and_committed),
        cmocka_unit_test(test_consumer_refuses_broker_from_untrusted_ca),
        cmocka_unit_test(test_consumer_refuses_broker_with_wrong_host_name),
        cmocka_unit_test(test_consumer_refuses_tls12_listener),
        cmocka_unit_test(test_consumer_refuses_broker_whose_key_matches_no_pin),
        cmocka_unit_test(test_consumer_reports_authorization_failure_for_a_principal_without_read),
        cmocka_unit_test(test_consumer_run_returns_promptly_when_stopped_from_another_thread),
        cmocka_unit_test(test_consumer_destroy_with_messages_in_flight_is_clean),
        cmocka_unit_test(test_tail_prints_max_predictions_with_metadata_and_exits_zero),
        cmocka_unit_test(test_tail_exits_one_on_unverified_broker),
        cmocka_unit_test(test_tail_stops_cleanly_on_sigterm_and_exits_zero),
    };
    /* PB_ITEST_FILTER=glob runs a subset (the valgrind pass uses it). */
    if (getenv("PB_ITEST_FILTER")) cmocka_set_test_filter(getenv("PB_ITEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
