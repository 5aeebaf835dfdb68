/* it_consumer: libpredbridge against the real mTLS broker: records from an independent producer reach
 * on_prediction with their metadata and in order, commits, redelivery, retries, bad records, refused
 * brokers, clean destruction, and `predbridge tail` end to end. */
#include "itest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <predbridge/predbridge.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXREC 512
#define MAXERR 64

typedef struct rec {
    char topic[256], id[128], producer[128], model_version[64], key[64];
    char value[512];
    int32_t partition;
    int64_t offset, timestamp_ms;
    int has_json;
} rec_t;

/* What the callbacks saw, and how on_prediction behaves. */
typedef struct sink {
    rec_t recs[MAXREC];
    int n;
    struct {
        pb_err_t code;
        char cause[1024];
        int64_t offset; /* of the message, -1 without one */
    } errs[MAXERR];
    int n_errs;
    int retry_offset;        /* on_prediction answers PB_RETRY once for this offset (-1: never) */
    int retried;
    int64_t retry_at_ms, redelivered_at_ms;
    int stop_after;          /* pb_consumer_stop after this many records (0: never) */
    pb_consumer_t *c;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} sink_t;

static void sink_init(sink_t *s) {
    memset(s, 0, sizeof *s);
    s->retry_offset = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static void copy_text(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src ? src : "");
}

static pb_action_t on_prediction(const pb_message_t *m, void *opaque) {
    sink_t *s = opaque;
    if (pb_message_offset(m) == s->retry_offset && !s->retried) {
        s->retried = 1;
        s->retry_at_ms = itest_now_ms();
        return PB_RETRY;
    }
    if (pb_message_offset(m) == s->retry_offset && !s->redelivered_at_ms) s->redelivered_at_ms = itest_now_ms();
    pthread_mutex_lock(&s->lock);
    if (s->n < MAXREC) {
        rec_t *r = &s->recs[s->n];
        size_t len, klen;
        const char *v = pb_message_value(m, &len), *k = pb_message_key(m, &klen);
        copy_text(r->topic, sizeof r->topic, pb_message_topic(m));
        copy_text(r->id, sizeof r->id, pb_message_id(m));
        copy_text(r->producer, sizeof r->producer, pb_message_producer(m));
        copy_text(r->model_version, sizeof r->model_version, pb_message_model_version(m));
        snprintf(r->value, sizeof r->value, "%.*s", (int)len, v);
        snprintf(r->key, sizeof r->key, "%.*s", k ? (int)klen : 0, k ? k : "");
        r->partition = pb_message_partition(m);
        r->offset = pb_message_offset(m);
        r->timestamp_ms = pb_message_timestamp_ms(m);
        r->has_json = json_is_object(pb_message_json(m));
        s->n++;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (s->stop_after && s->n >= s->stop_after) pb_consumer_stop(s->c);
    return PB_COMMIT;
}

static void on_error(pb_err_t code, const char *cause, const pb_message_t *m, void *opaque) {
    sink_t *s = opaque;
    if (getenv("PB_ITEST_VERBOSE")) fprintf(stderr, "on_error %s: %s\n", pb_err_name(code), cause);
    if (s->n_errs >= MAXERR) return;
    s->errs[s->n_errs].code = code;
    copy_text(s->errs[s->n_errs].cause, sizeof s->errs[0].cause, cause);
    s->errs[s->n_errs].offset = m ? pb_message_offset(m) : -1;
    s->n_errs++;
}

static int count_errors(const sink_t *s, pb_err_t code, const char *needle) {
    int n = 0;
    for (int i = 0; i < s->n_errs; i++)
        n += s->errs[i].code == code && (!needle || strstr(s->errs[i].cause, needle));
    return n;
}

/* ---- producing with an independent client (plain librdkafka, predbridged's certificate) ---- */

static void dr_count(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk, (void)opaque;
    if (m->err) fail_msg("delivery failed: %s", rd_kafka_err2str(m->err));
}

/* Produces values[i] to partition parts[i] (or partition 0 if parts is NULL), with key "k<i>", headers
 * pb-id "id-<tag>-<i>" and pb-producer "it-producer", and timestamp base_ts + i. */
static void produce(const char *topic, const char *const *values, const int *parts, int n, const char *tag,
                    int64_t base_ts) {
    char errstr[512];
    rd_kafka_conf_t *conf = itest_conf(itest_env()->bootstrap, "predbridged");
    itest_set(conf, "enable.idempotence", "true");
    rd_kafka_conf_set_dr_msg_cb(conf, dr_count);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    assert_non_null(rk);
    for (int i = 0; i < n; i++) {
        char key[32], id[64];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(id, sizeof id, "id-%s-%d", tag, i);
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, "pb-id", -1, id, -1);
        rd_kafka_header_add(h, "pb-producer", -1, "it-producer", -1);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(parts ? parts[i] : 0),
            RD_KAFKA_V_VALUE((void *)values[i], strlen(values[i])), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_TIMESTAMP(base_ts + i), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        assert_int_equal(err, 0);
    }
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
}

static char *valid_value(int i) {
    static char bufs[MAXREC][96];
    snprintf(bufs[i], sizeof bufs[i], "{\"model_version\":\"m-%d\",\"prediction\":{\"score\":%d.25},\"i\":%d}", i % 3,
             i, i);
    return bufs[i];
}

/* ---- consumers ---- */

static pb_config_t *consumer_config(const char *topic, const char *group, const char *extra_kv) {
    char err[1024];
    pb_config_t *c = pb_config_new();
    const char *kv[][2] = {
        {"bootstrap.servers", itest_env()->bootstrap},
        {"tls.ca", itest_cert("ca.crt")},
        {"tls.cert", itest_cert("predbridge-consumer.crt")},
        {"tls.key", itest_cert("predbridge-consumer.key")},
        {"group.id", group},
        {"topics", topic},
        {"auto.offset.reset", "earliest"},
        /* A destroyed member's partitions move on after this, not after the default 45 s. */
        {"kafka.session.timeout.ms", "6000"},
        {"kafka.heartbeat.interval.ms", "500"},
        {"consumer.retry_backoff_ms", "300"},
        /* A topic created just before may be unknown to the first metadata answer; look again soon. */
        {"kafka.topic.metadata.refresh.interval.ms", "2000"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (pb_config_set(c, kv[i][0], kv[i][1], err, sizeof err) != PB_OK) fail_msg("%s", err);
    /* extra_kv: "key=value\nkey=value" */
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", extra_kv ? extra_kv : "");
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        assert_non_null(eq);
        *eq = '\0';
        if (pb_config_set(c, line, eq + 1, err, sizeof err) != PB_OK) fail_msg("%s", err);
    }
    return c;
}

static pb_consumer_t *new_consumer(const char *topic, const char *group, const char *extra, sink_t *s) {
    char err[1024];
    pb_config_t *conf = consumer_config(topic, group, extra);
    pb_consumer_t *c = pb_consumer_new(conf, on_prediction, on_error, s, err, sizeof err);
    pb_config_destroy(conf); /* the consumer keeps a copy of what it needs */
    if (!c) fail_msg("pb_consumer_new: %s", err);
    s->c = c;
    return c;
}

/* Polls until s has `want` records (or an error of code `err_code` when != PB_OK), or timeout. */
static void poll_until(pb_consumer_t *c, sink_t *s, int want, pb_err_t err_code, int timeout_ms) {
    int64_t deadline = itest_now_ms() + timeout_ms;
    while (itest_now_ms() < deadline) {
        if (want > 0 && s->n >= want) return;
        if (err_code != PB_OK && count_errors(s, err_code, NULL) > 0) return;
        pb_err_t rc = pb_consumer_poll(c, 200);
        assert_true(rc == PB_OK || rc == PB_ERR_STOPPED);
    }
    /* Timed out: say what the consumer saw, for whoever reads the failure. */
    for (int i = 0; i < s->n_errs; i++) fprintf(stderr, "  seen %s: %s\n", pb_err_name(s->errs[i].code), s->errs[i].cause);
}

static void unique_group(char *out, size_t size, const char *name) {
    snprintf(out, size, "it-consumer-%s-%d-%lld", name, (int)getpid(), (long long)itest_now_ms());
}

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

static int run_tail(const char *args, char *out, size_t out_size) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "timeout 120 '%s/src/cli/predbridge' tail %s 2>&1", getenv("PB_BUILD_DIR"), args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, out_size - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_tail_config(char *path, size_t size, const char *topic) {
    snprintf(path, size, "/tmp/pbit-tail-%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "bootstrap.servers = %s\ntls.ca = %s\ntls.cert = %s\ntls.key = %s\ntopics = %s\n",
            itest_env()->bootstrap, itest_cert("ca.crt"), itest_cert("predbridge-consumer.crt"),
            itest_cert("predbridge-consumer.key"), topic);
    fclose(f);
}

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
