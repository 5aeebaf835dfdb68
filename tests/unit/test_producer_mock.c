/* test_producer_mock: the producer against librdkafka's mock cluster: records wait out a broker outage
 * and are then delivered once each, in order; retriable produce errors add no duplicate and a lost
 * answer no second report; the producer is idempotent; a refused record reaches the delivery callback
 * with its reason; spooled records all retire after an outage; records a retiring producer cannot
 * deliver after a reload, and those of a producer that failed for good, move to a fresh one and are
 * delivered, and what a retiring producer delivers itself is reported as not the current one's;
 * records of a topic unknown for a while wait and are delivered; librdkafka's log lines keep their
 * level; broker errors are logged once per broker and cause. The mock speaks plaintext only, hence
 * producer_test.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
/* cmocka.h needs the three above */
#include <cmocka.h>

#include "common/log.h"
#include "metrics.h"
#include "producer_test.h"
#include "spool.h"
#include "../support/pb_sockets.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define TOPIC "predictions"
#define N_BROKERS 3
#define LEADER 1 /* of every partition */
#define N_PARTITIONS 2
#define MAX_RECORDS 128
/* Request ApiKeys (RD_KAFKAP_* are in a librdkafka header that is not installed). */
#define PRODUCE 0
#define INIT_PRODUCER_ID 22
#define DEADLINE_MS 30000 /* for what must happen: generous, sanitizers and a busy machine */
/* How long an outage lasts: many times each timeout below, and six times message.timeout.ms. */
#define OUTAGE_MS 3000

/* Through the kafka.* pass-through, as an operator would write them. The short timeouts make the
 * outages below outlast many request timeouts and reconnects; message.timeout.ms is one an operator
 * might try: the producer's own message.timeout.ms=0 must win over it. */
static const char *const pass_through[][2] = {
    {"socket.timeout.ms", "300"},        {"request.timeout.ms", "300"}, {"reconnect.backoff.ms", "20"},
    {"reconnect.backoff.max.ms", "200"}, {"retry.backoff.ms", "20"},    {"message.timeout.ms", "500"},
};
#define N_PASS_THROUGH (sizeof pass_through / sizeof pass_through[0])

typedef struct report {
    int i; /* record number, from the value */
    int opaque_ok;
    rd_kafka_resp_err_t err;
    char reason[256];
} report_t;

typedef struct fixture {
    rd_kafka_t *host; /* the mock cluster runs on this handle's thread */
    rd_kafka_mock_cluster_t *mc;
    pbconf_kafka_prop_t props[N_PASS_THROUGH];
    pbd_config_t cfg;
    pbd_producer_t *p;
    report_t reports[MAX_RECORDS];
    int n_reports;
    int n_retiring_reports; /* from a producer retiring after a reload */
    rd_kafka_mock_cluster_t *mc_old; /* the reload test: the cluster the first producer was pointed at */
    pbsp_t *spool; /* the spool test only: reports retire its records, as in server.c */
    char dir[64];
} fixture_t;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk, (void)level, (void)fac, (void)buf;
}

static void *opaque_of(int i) {
    return (void *)(uintptr_t)(i + 1);
}

static int record_number(const void *value, size_t len) {
    char s[64];
    int i = -1;
    snprintf(s, sizeof s, "%.*s", (int)len, (const char *)value);
    return sscanf(s, "{\"i\":%d}", &i) == 1 ? i : -1;
}

/* Runs on the test's thread, inside pbd_producer_serve: records, asserts nothing (a failed assertion
 * would jump out of librdkafka). */
static void on_delivery(void *ctx, void *opaque, rd_kafka_resp_err_t err, const char *reason,
                        const void *value, size_t value_len, int current) {
    fixture_t *f = ctx;
    if (!current) f->n_retiring_reports++;
    if (f->spool && !err)
        pbsp_retire(f->spool, opaque);
    else if (f->spool && err != RD_KAFKA_RESP_ERR__PURGE_QUEUE && err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        (void)pbsp_set_aside(f->spool, opaque, value, value_len);
    if (f->n_reports == MAX_RECORDS) return;
    report_t *r = &f->reports[f->n_reports++];
    r->i = record_number(value, value_len);
    r->opaque_ok = f->spool || opaque == opaque_of(r->i);
    r->err = err;
    snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
}

/* The mock cluster, with the topic's partitions all led by LEADER; no producer yet. */
static int setup_cluster(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    char e[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!f || !conf) return -1;
    rd_kafka_conf_set_log_cb(conf, quiet_log); /* it has no bootstrap.servers, and says so */
    if (!(f->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e)) ||
        !(f->mc = rd_kafka_mock_cluster_new(f->host, N_BROKERS)) ||
        rd_kafka_mock_topic_create(f->mc, TOPIC, N_PARTITIONS, N_BROKERS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    for (int32_t part = 0; part < N_PARTITIONS; part++)
        if (rd_kafka_mock_partition_set_leader(f->mc, TOPIC, part, LEADER) != RD_KAFKA_RESP_ERR_NO_ERROR)
            return -1;
    for (size_t k = 0; k < N_PASS_THROUGH; k++)
        f->props[k] = (pbconf_kafka_prop_t){.property = (char *)pass_through[k][0],
                                            .value = (char *)pass_through[k][1],
                                            .file = "test",
                                            .line = (int)k + 1};
    f->cfg = (pbd_config_t){.bootstrap_servers = (char *)rd_kafka_mock_cluster_bootstraps(f->mc),
                            .topic = TOPIC,
                            .compression = "none",
                            .linger_ms = 5,
                            .kafka = f->props,
                            .n_kafka = N_PASS_THROUGH};
    *state = f;
    return 0;
}

/* A record's acceptance order, as the daemon gives it: its spool seq, or here its number. */
static uint64_t record_order(void *ctx, void *opaque) {
    const fixture_t *f = ctx;
    return f->spool ? pbsp_ref_seq(opaque) : (uint64_t)(uintptr_t)opaque;
}

static int start_producer(fixture_t *f) {
    char e[512];
    if ((f->p = pbd_producer_new_plaintext_for_test(&f->cfg, "test", on_delivery, f, e, sizeof e))) {
        pbd_producer_set_order(f->p, record_order);
        return 0;
    }
    print_error("pbd_producer_new_plaintext_for_test: %s\n", e);
    return -1;
}

static int setup(void **state) {
    return setup_cluster(state) == 0 ? start_producer(*state) : -1;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    pbd_producer_free(f->p); /* reports what is left as purged: the spool keeps it */
    if (f->spool) pbsp_close(f->spool);
    if (f->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        if (system(cmd) != 0) return -1;
    }
    rd_kafka_mock_cluster_destroy(f->mc);
    if (f->mc_old) rd_kafka_mock_cluster_destroy(f->mc_old);
    rd_kafka_destroy(f->host);
    free(f);
    return 0;
}

/* Hands record i to the producer: value {"i":i}, key k<i % 3> (records with one key share a partition). */
static pbd_send_result_t try_send(fixture_t *f, int i, char *reason, size_t reason_size) {
    char value[32], key[8], id[32];
    snprintf(value, sizeof value, "{\"i\":%d}", i);
    snprintf(key, sizeof key, "k%d", i % 3);
    snprintf(id, sizeof id, "id-%d", i);
    pbd_record_t rec = {
        .value = strdup(value), .value_len = strlen(value), .key = key, .key_len = strlen(key), .id = id};
    assert_non_null(rec.value);
    rd_kafka_resp_err_t err;
    pbd_send_result_t r = pbd_producer_send(f->p, &rec, opaque_of(i), &err, reason, reason_size);
    if (r != PBD_SEND_OK) free(rec.value); /* still ours */
    return r;
}

static void send_record(fixture_t *f, int i) {
    char reason[256] = "";
    pbd_send_result_t r = try_send(f, i, reason, sizeof reason);
    if (r != PBD_SEND_OK) fail_msg("record %d: send result %d: %s", i, (int)r, reason);
}

static void send_records(fixture_t *f, int from, int to) {
    for (int i = from; i < to; i++)
        send_record(f, i);
}

typedef int (*cond_fn)(const fixture_t *f, int arg);

/* Serves the producer (waiting on its fd, and at least every 100 ms, as the daemon's loop and its
 * tick do) until cond holds or timeout_ms pass. Returns whether cond holds. */
static int serve_until(fixture_t *f, cond_fn cond, int arg, int timeout_ms) {
    int64_t deadline = now_ms() + timeout_ms;
    while (!cond(f, arg)) {
        int64_t left = deadline - now_ms();
        if (left <= 0) return 0;
        struct epoll_event ev;
        (void)epoll_wait(pbd_producer_fd(f->p), &ev, 1, (int)(left < 100 ? left : 100));
        pbd_producer_serve(f->p);
    }
    return 1;
}

static int reports_at_least(const fixture_t *f, int n) {
    return f->n_reports >= n;
}

/* An error report, or a report of record `from` or later. */
static int error_or_report_from(const fixture_t *f, int from) {
    for (int k = 0; k < f->n_reports; k++)
        if (f->reports[k].err || f->reports[k].i >= from) return 1;
    return 0;
}

static void wait_reports(fixture_t *f, int n) {
    if (!serve_until(f, reports_at_least, n, DEADLINE_MS))
        fail_msg("%d delivery reports after %d ms, %d expected", f->n_reports, DEADLINE_MS, n);
}

/* Every record 0..n-1 was reported exactly once, delivered, with its own opaque, in send order among
 * records of one key (one partition) if in_order. */
static void assert_each_delivered_once_in_order_if(const fixture_t *f, int n, int in_order) {
    int seen[MAX_RECORDS] = {0}, last_of_key[3] = {-1, -1, -1};
    assert_int_equal(f->n_reports, n);
    for (int k = 0; k < f->n_reports; k++) {
        const report_t *r = &f->reports[k];
        if (r->err) fail_msg("record %d: delivery failed: %s", r->i, r->reason);
        assert_true(r->i >= 0 && r->i < n);
        assert_true(r->opaque_ok);
        assert_int_equal(seen[r->i]++, 0);
        if (in_order && r->i < last_of_key[r->i % 3])
            fail_msg("record %d reported after record %d", r->i, last_of_key[r->i % 3]);
        last_of_key[r->i % 3] = r->i;
    }
    assert_int_equal(pbd_producer_in_flight(f->p), 0);
}

static void assert_each_delivered_once_in_order(const fixture_t *f, int n) {
    assert_each_delivered_once_in_order_if(f, n, 1);
}

/* Reads the mock topic back: each of records 0..n-1 must be in it exactly once (at least once if
 * dups_allowed), and every partition must hold its records in send order. This is where a duplicate
 * made by a retry would show. */
static void assert_log_holds_each_in_order(const fixture_t *f, int n, int dups_allowed) {
    char e[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", f->cfg.bootstrap_servers, e, sizeof e), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", "test_producer_mock", e, sizeof e), 0);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.partition.eof", "true", e, sizeof e), 0);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(N_PARTITIONS);
    for (int32_t part = 0; part < N_PARTITIONS; part++)
        rd_kafka_topic_partition_list_add(parts, TOPIC, part)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, parts), 0);
    rd_kafka_topic_partition_list_destroy(parts);

    int seen[MAX_RECORDS] = {0}, last[N_PARTITIONS] = {-1, -1}, at_end = 0, total = 0;
    char problem[256] = "";
    int64_t deadline = now_ms() + DEADLINE_MS;
    while (at_end < N_PARTITIONS && now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m) continue;
        int i = m->err ? -1 : record_number(m->payload, m->len);
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            at_end++;
        else if (m->err)
            snprintf(problem, sizeof problem, "consumer: %s", rd_kafka_message_errstr(m));
        else if (i < 0 || i >= n)
            snprintf(problem, sizeof problem, "a record not sent: %d", i);
        else if (seen[i]++ && !dups_allowed)
            snprintf(problem, sizeof problem, "record %d more than once", i);
        else if (seen[i] > 1) { /* a resent copy: its position says nothing about order */
        } else if (i < last[m->partition])
            snprintf(problem, sizeof problem, "partition %d: record %d after %d", (int)m->partition, i,
                     last[m->partition]);
        else
            last[m->partition] = i, total++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    if (problem[0]) fail_msg("%s", problem);
    assert_int_equal(at_end, N_PARTITIONS);
    assert_int_equal(total, n);
}

/* Record 0, delivered: the producer has its id and the topic's leaders before the faults begin. */
static void warm_up(fixture_t *f) {
    send_record(f, 0);
    wait_reports(f, 1);
}

/* Sends records 1..n-1 while the leader answers Produce requests from the answers pushed onto its
 * stack, waits for their reports, and checks every pushed answer was given. */
static void send_past_leader_answers(fixture_t *f, int n) {
    send_records(f, 1, n);
    wait_reports(f, n);
    size_t left = 1;
    assert_int_equal(rd_kafka_mock_broker_error_stack_cnt(f->mc, LEADER, PRODUCE, &left), 0);
    assert_int_equal(left, 0);
}

/* Takes brokers down while records are sent, holds the outage for OUTAGE_MS, then brings them back. */
static void records_survive_outage(fixture_t *f, const int32_t *brokers, size_t n_brokers) {
    warm_up(f);
    send_records(f, 1, 10); /* some of these may be on the wire when the broker goes */
    for (size_t b = 0; b < n_brokers; b++)
        assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, brokers[b]), RD_KAFKA_RESP_ERR_NO_ERROR);
    send_records(f, 10, 60);

    /* No report may come: not an error (they never time out), not a delivery (nobody to take it). */
    if (serve_until(f, error_or_report_from, 10, OUTAGE_MS)) {
        const report_t *r = &f->reports[f->n_reports - 1];
        fail_msg("during the outage, record %d was reported: %s", r->i, r->err ? r->reason : "delivered");
    }
    assert_int_equal(pbd_producer_in_flight(f->p), 60 - f->n_reports);

    for (size_t b = 0; b < n_brokers; b++)
        assert_int_equal(rd_kafka_mock_broker_set_up(f->mc, brokers[b]), RD_KAFKA_RESP_ERR_NO_ERROR);
    wait_reports(f, 60);
    assert_each_delivered_once_in_order(f, 60);
    assert_log_holds_each_in_order(f, 60, 0);
}

static void test_producer_leader_down_records_wait_then_are_delivered_once_in_order(void **state) {
    const int32_t leader[] = {LEADER};
    records_survive_outage(*state, leader, 1);
}

static void test_producer_all_brokers_down_records_wait_then_are_delivered_once_in_order(void **state) {
    const int32_t all[N_BROKERS] = {1, 2, 3};
    records_survive_outage(*state, all, N_BROKERS);
}

static void test_producer_retriable_produce_errors_deliver_each_record_once(void **state) {
    fixture_t *f = *state;
    warm_up(f);
    /* Each Produce request to the leader is answered by the next of these until none is left. */
    assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                         f->mc, LEADER, PRODUCE, 6, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                         RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, 0, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, 0,
                         RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0,
                         RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND, 0,
                         RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR, 0),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    send_past_leader_answers(f, 40);
    assert_each_delivered_once_in_order(f, 40);
    assert_log_holds_each_in_order(f, 40, 0);
}

/* The broker appends the records but its answer comes after request.timeout.ms: the producer sends
 * them again and reports each once, delivered. A real broker drops the second copy by producer id and
 * sequence (idempotence); librdkafka 2.0.2's mock checks sequences only for transactional producers
 * and keeps it, so here the log may hold a record twice. That the producer is idempotent is
 * test_producer_requests_a_producer_id_before_producing. */
static void test_producer_lost_produce_response_is_retried_and_reported_once(void **state) {
    fixture_t *f = *state;
    warm_up(f);
    assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(f->mc, LEADER, PRODUCE, 2,
                                                                  RD_KAFKA_RESP_ERR_NO_ERROR, 1500,
                                                                  RD_KAFKA_RESP_ERR_NO_ERROR, 1500),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    send_past_leader_answers(f, 20);
    assert_each_delivered_once_in_order(f, 20);
    assert_log_holds_each_in_order(f, 20, 1);
}

/* Idempotence (what keeps retries from duplicating records on a real broker) starts with asking for a
 * producer id: each broker answers that request once with a retriable error, which must be used up. */
static void test_producer_requests_a_producer_id_before_producing(void **state) {
    fixture_t *f = *state;
    for (int32_t b = 1; b <= N_BROKERS; b++)
        assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(
                             f->mc, b, INIT_PRODUCER_ID, 1, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, 0),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(start_producer(f), 0);
    send_records(f, 0, 5);
    wait_reports(f, 5);
    assert_each_delivered_once_in_order(f, 5);
    size_t left = 0, cnt;
    for (int32_t b = 1; b <= N_BROKERS; b++) {
        assert_int_equal(rd_kafka_mock_broker_error_stack_cnt(f->mc, b, INIT_PRODUCER_ID, &cnt), 0);
        left += cnt;
    }
    if (left == N_BROKERS)
        fail_msg("no InitProducerId request reached a broker: the producer is not idempotent");
}

/* The producer's broker connections have TCP_NODELAY (a predbridged default: with Nagle's algorithm
 * each small request can wait for the broker's delayed ACK), unless kafka.socket.nagle.disable says
 * otherwise. */
static void expect_nodelay(fixture_t *f, int want_on) {
    warm_up(f);
    const char *why = pbt_tcp_nodelay_mismatch(f->cfg.bootstrap_servers, want_on);
    if (why) fail_msg("%s", why);
}

static void test_producer_connections_have_tcp_nodelay(void **state) {
    expect_nodelay(*state, 1);
}

static void test_producer_nagle_left_on_when_the_pass_through_says_so(void **state) {
    fixture_t *f = *state;
    static pbconf_kafka_prop_t props[N_PASS_THROUGH + 1]; /* outlives the test: teardown frees the producer */
    memcpy(props, f->props, sizeof f->props);
    props[N_PASS_THROUGH] = (pbconf_kafka_prop_t){
        .property = "socket.nagle.disable", .value = "false", .file = "test", .line = (int)N_PASS_THROUGH + 1};
    f->cfg.kafka = props;
    f->cfg.n_kafka = N_PASS_THROUGH + 1;
    assert_int_equal(start_producer(f), 0);
    expect_nodelay(f, 0);
}

/* A Produce error that retrying cannot fix reaches the callback with a readable reason (server.c
 * then sets the record aside), and records after it are delivered again. After a topic-level error
 * librdkafka refuses new records for the topic at once until its next metadata refresh: those come
 * back from pbd_producer_send with the same reason (server.c sets them aside too). */
static void refused_then_delivering(fixture_t *f, rd_kafka_resp_err_t err, const char *name,
                                    const char *words) {
    warm_up(f);
    assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(f->mc, LEADER, PRODUCE, 1, err, 0),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    send_record(f, 1);
    wait_reports(f, 2);
    const report_t *r = &f->reports[1];
    assert_int_equal(r->i, 1);
    assert_true(r->opaque_ok);
    assert_int_equal(r->err, err);
    if (!strstr(r->reason, name) || !strstr(r->reason, words)) fail_msg("reason '%s'", r->reason);
    assert_int_equal(pbd_producer_in_flight(f->p), 0);

    int i = 2;
    char reason[256] = "";
    int64_t deadline = now_ms() + DEADLINE_MS;
    for (; try_send(f, i, reason, sizeof reason) != PBD_SEND_OK; i++) {
        if (!strstr(reason, name)) fail_msg("record %d refused at send: '%s'", i, reason);
        if (now_ms() > deadline) fail_msg("records still refused at send after %d ms", DEADLINE_MS);
        serve_until(f, reports_at_least, f->n_reports + 1,
                    100); /* librdkafka refreshes its metadata meanwhile */
    }
    wait_reports(f, 3);
    r = &f->reports[2];
    if (r->i != i || r->err)
        fail_msg("record %d after the refusal: %s", r->i, r->err ? r->reason : "delivered");
}

static void test_producer_topic_authorization_failure_reported_with_reason(void **state) {
    refused_then_delivering(*state, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                            "TOPIC_AUTHORIZATION_FAILED", "Topic authorization failed");
}

static void test_producer_broker_refusing_size_reported_with_reason(void **state) {
    refused_then_delivering(*state, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, "MSG_SIZE_TOO_LARGE", "too large");
}

/* librdkafka refuses a record over message.max.bytes at once: the value stays the caller's. */
static void test_producer_record_over_max_bytes_refused_at_send_with_reason(void **state) {
    fixture_t *f = *state;
    size_t len = 2u << 20; /* message.max.bytes defaults to 1 MB */
    pbd_record_t rec = {.value = malloc(len), .value_len = len, .id = "id-big"};
    char reason[256] = "";
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    assert_non_null(rec.value);
    memset(rec.value, 'x', len);
    assert_int_equal(pbd_producer_send(f->p, &rec, opaque_of(0), &err, reason, sizeof reason), PBD_SEND_ERROR);
    assert_non_null(strstr(reason, "MSG_SIZE_TOO_LARGE"));
    assert_int_equal(pbd_producer_in_flight(f->p), 0);
    free(rec.value);
    /* server.c counts it with this code: failed{reason="too_large"}, not "other". */
    assert_int_equal(err, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    pbm_metrics_t *m = pbm_new();
    assert_non_null(m);
    pbm_accepted(m);
    pbm_delivery(m, err);
    size_t n;
    char *text = pbm_render(m, &n);
    assert_non_null(text);
    if (!strstr(text, "predbridge_predictions_failed_total{reason=\"too_large\"} 1"))
        fail_msg("failed{too_large} not counted:\n%s", text);
    free(text);
    pbm_free(m);
}

/* ---- what the producer logs ---- */

/* From here until capture_end, the log is JSON lines at debug, written to a file instead of stderr.
 * Returns the saved stderr for capture_end. */
static int capture_begin(char *path, size_t size) {
    snprintf(path, size, "/tmp/pbmock-log-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
    pblog_setup(PBLOG_DEBUG, PBLOG_JSON, "test_producer_mock");
    return saved;
}

/* Restores stderr and main's log settings; returns what was logged meanwhile (static: a failed
 * assertion leaks nothing). */
static const char *capture_end(int saved, const char *path) {
    static char text[1 << 20];
    pblog_setup(PBLOG_ERROR, PBLOG_TEXT, "test_producer_mock");
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    FILE *in = fopen(path, "rb");
    assert_non_null(in);
    text[fread(text, 1, sizeof text - 1, in)] = '\0';
    fclose(in);
    unlink(path);
    return text;
}

/* How many lines of log hold every one of needles (NULL-terminated). */
static int count_lines(const char *log, const char *const *needles) {
    int count = 0;
    for (const char *line = log; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char one[4608];
        snprintf(one, sizeof one, "%.*s", (int)len, line);
        int all = 1;
        for (const char *const *n = needles; *n && all; n++)
            all = strstr(one, *n) != NULL;
        count += all;
        line += len + (end != NULL);
    }
    return count;
}

/* A mock cluster like the fixture's: the topic, every partition led by LEADER. */
static rd_kafka_mock_cluster_t *another_cluster(fixture_t *f) {
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(f->host, N_BROKERS);
    assert_non_null(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, TOPIC, N_PARTITIONS, N_BROKERS), 0);
    for (int32_t part = 0; part < N_PARTITIONS; part++)
        assert_int_equal(rd_kafka_mock_partition_set_leader(mc, TOPIC, part, LEADER), 0);
    return mc;
}

/* Sends record i, serving the producer while it says "not now" (records it took back go first). */
static void send_when_taken(fixture_t *f, int i) {
    char reason[256] = "";
    int64_t deadline = now_ms() + DEADLINE_MS;
    pbd_send_result_t r;
    while ((r = try_send(f, i, reason, sizeof reason)) == PBD_SEND_FULL && now_ms() < deadline)
        serve_until(f, reports_at_least, f->n_reports + 1, 100);
    if (r != PBD_SEND_OK) fail_msg("record %d: send result %d: %s", i, (int)r, reason);
}

/* After a reload, the retiring producer cannot reach its brokers (as when the broker no longer takes
 * its certificate): after producer.flush_timeout_ms its records move to the new producer, which
 * delivers each once, in order per key; none is reported failed, none by the retiring producer. */
static void test_producer_reload_moves_records_the_retiring_producer_cannot_deliver(void **state) {
    fixture_t *f = *state;
    for (int32_t b = 1; b <= N_BROKERS; b++)
        assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, b), 0);
    send_records(f, 0, 40);
    if (serve_until(f, reports_at_least, 1, 500)) fail_msg("a report while the brokers are down");

    f->mc_old = f->mc;
    f->mc = another_cluster(f);
    f->cfg.bootstrap_servers = (char *)rd_kafka_mock_cluster_bootstraps(f->mc);
    f->cfg.flush_timeout_ms = 300;
    assert_int_equal(pbd_producer_reload(f->p, "test"), 0);
    assert_int_equal(pbd_producer_generation_for_test(f->p), 2);
    wait_reports(f, 40);
    assert_int_equal(f->n_retiring_reports, 0);
    assert_each_delivered_once_in_order(f, 40);
    assert_log_holds_each_in_order(f, 40, 0); /* the new producer's cluster */
    send_when_taken(f, 40);                   /* and new records flow */
    wait_reports(f, 41);
    assert_int_equal(f->reports[40].err, 0);
}

/* Records a producer held at a reload, delivered by it after the reload (its brokers came back in
 * time): reported as the retiring producer's (server.c then counts them without making the daemon
 * ready: pbm_delivery_retiring), and records sent after the reload as the current one's. */
static void test_producer_deliveries_of_a_retiring_producer_are_reported_as_not_current(void **state) {
    fixture_t *f = *state;
    warm_up(f);
    for (int32_t b = 1; b <= N_BROKERS; b++)
        assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, b), 0);
    send_records(f, 1, 20);
    f->cfg.flush_timeout_ms = DEADLINE_MS; /* time enough to deliver them itself */
    assert_int_equal(pbd_producer_reload(f->p, "test"), 0);
    for (int32_t b = 1; b <= N_BROKERS; b++)
        assert_int_equal(rd_kafka_mock_broker_set_up(f->mc, b), 0);
    wait_reports(f, 20);
    assert_int_equal(f->n_retiring_reports, 19);
    send_when_taken(f, 20);
    wait_reports(f, 21);
    assert_int_equal(f->n_retiring_reports, 19);
    assert_each_delivered_once_in_order(f, 21);
}

/* A fatal error of librdkafka's idempotent producer: the producer is replaced by a fresh one and every
 * record not delivered, held then or sent after, is delivered once and in order; none is reported
 * failed. The failed producer reports its queued records before those it was transmitting: they are
 * sent again in acceptance order (pbd_producer_set_order). */
static void test_producer_fatal_error_replaces_producer_and_delivers_every_record(void **state) {
    fixture_t *f = *state;
    warm_up(f);
    assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, LEADER), 0);
    send_records(f, 1, 30);
    assert_int_equal(pbd_producer_fatal_error_for_test(f->p, "test: sequence lost"), 0);
    char path[64];
    int saved = capture_begin(path, sizeof path);
    send_when_taken(f, 30); /* the replacement happens here */
    const char *log = capture_end(saved, path);
    /* Its log line counts the records taken back, and names both producers. */
    const char *replaced[] = {"\"event\":\"producer.fatal\"", "\"result\":\"replaced\"", "\"producer\":1",
                              "\"to\":2", "\"records\":29", "sends again the 29 record(s)", NULL};
    if (count_lines(log, replaced) != 1) fail_msg("no producer.fatal line with its fields:\n%s", log);
    for (int i = 31; i < 40; i++) send_when_taken(f, i);
    assert_int_equal(rd_kafka_mock_broker_set_up(f->mc, LEADER), 0);
    wait_reports(f, 40);
    assert_int_equal(pbd_producer_generation_for_test(f->p), 2);
    assert_each_delivered_once_in_order(f, 40);
    assert_log_holds_each_in_order(f, 40, 0);
}

static int never(const fixture_t *f, int arg) {
    (void)f, (void)arg;
    return 0;
}

/* As above, with records in flight when the producer fails: librdkafka reports its queued records
 * first, and those in flight after them; they are all sent again in acceptance order. */
static void test_producer_fatal_error_with_records_in_flight_resends_them_in_order(void **state) {
    fixture_t *f = *state;
    warm_up(f);
    /* The leader answers after a second: bursts 20 ms apart fill the five requests librdkafka keeps
     * in flight, and the last bursts wait behind them. */
    assert_int_equal(rd_kafka_mock_broker_set_rtt(f->mc, LEADER, 1000), 0);
    for (int burst = 0; burst < 8; burst++) {
        send_records(f, 1 + burst * 4, 5 + burst * 4);
        (void)serve_until(f, never, 0, 20);
    }
    assert_int_equal(f->n_reports, 1);
    assert_int_equal(pbd_producer_fatal_error_for_test(f->p, "test: sequence lost"), 0);
    send_when_taken(f, 33); /* the replacement happens here */
    assert_int_equal(rd_kafka_mock_broker_set_rtt(f->mc, LEADER, 0), 0);
    wait_reports(f, 34);
    assert_int_equal(pbd_producer_generation_for_test(f->p), 2);
    assert_each_delivered_once_in_order(f, 34);
}

/* The topic is unknown to the cluster for a while (longer than topic.metadata.propagation.max.ms, after
 * which librdkafka fails its records with _UNKNOWN_TOPIC): the records wait and are retried, and are
 * delivered once the topic is back; none is reported failed. */
static void test_producer_unknown_topic_records_wait_then_are_delivered(void **state) {
    fixture_t *f = *state;
    static pbconf_kafka_prop_t props[N_PASS_THROUGH + 1]; /* outlives the test: teardown frees the producer */
    memcpy(props, f->props, sizeof f->props);
    props[N_PASS_THROUGH] = (pbconf_kafka_prop_t){.property = "topic.metadata.propagation.max.ms",
                                                  .value = "100", .file = "test", .line = (int)N_PASS_THROUGH + 1};
    f->cfg.kafka = props;
    f->cfg.n_kafka = N_PASS_THROUGH + 1;
    rd_kafka_mock_topic_set_error(f->mc, TOPIC, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    assert_int_equal(start_producer(f), 0);
    send_records(f, 0, 10);
    if (serve_until(f, reports_at_least, 1, OUTAGE_MS))
        fail_msg("while the topic is unknown, record %d was reported: %s", f->reports[0].i, f->reports[0].reason);
    assert_int_equal(pbd_producer_in_flight(f->p), 10);
    rd_kafka_mock_topic_set_error(f->mc, TOPIC, RD_KAFKA_RESP_ERR_NO_ERROR);
    wait_reports(f, 10);
    assert_each_delivered_once_in_order(f, 10);
}

static int spool_empty(const fixture_t *f, int unused) {
    (void)unused;
    pbsp_usage_t u;
    pbsp_get_usage(f->spool, &u);
    return u.records == 0;
}

/* Spool and producer wired as in server.c (append, commit, hand over read back from disk, retire on
 * the report), through an outage of every broker: afterwards no record is left in the spool. */
static void test_producer_spooled_records_all_retire_after_outage(void **state) {
    fixture_t *f = *state;
    char err[256] = "";
    snprintf(f->dir, sizeof f->dir, "/tmp/pbmock-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    pbsp_options_t o = {
        .dir = f->dir, .fsync = PBSP_FSYNC_NEVER, .max_bytes = 64u << 20, .segment_bytes = 16u << 20};
    pbsp_recovery_t rec;
    f->spool = pbsp_open(&o, &rec, err, sizeof err);
    if (!f->spool) fail_msg("pbsp_open: %s", err);

    for (int32_t b = 1; b <= N_BROKERS; b++)
        assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, b), 0);
    for (int i = 0; i < 50; i++) {
        char value[32], key[8], id[32];
        snprintf(value, sizeof value, "{\"i\":%d}", i);
        snprintf(key, sizeof key, "k%d", i % 3);
        snprintf(id, sizeof id, "id-%d", i);
        pbd_record_t r = {
            .value = value, .value_len = strlen(value), .key = key, .key_len = strlen(key), .id = id};
        pbsp_ticket_t t;
        assert_int_equal(pbsp_append(f->spool, &r, &t, err, sizeof err), PBSP_OK);
    }
    assert_int_equal(pbsp_commit(f->spool, err, sizeof err), PBSP_OK);
    pbd_record_t r;
    void *ref;
    uint64_t seq;
    while (pbsp_peek(f->spool, &r, &ref, &seq, err, sizeof err) == 1) {
        rd_kafka_resp_err_t e;
        assert_int_equal(pbd_producer_send(f->p, &r, ref, &e, err, sizeof err), PBD_SEND_OK);
        pbsp_advance(f->spool);
    }
    pbsp_usage_t u;
    pbsp_get_usage(f->spool, &u);
    assert_int_equal(u.records, 50);
    assert_int_equal(u.unsent, 0);

    if (serve_until(f, reports_at_least, 1, OUTAGE_MS))
        fail_msg("a report during the outage: %s", f->reports[0].reason);
    for (int32_t b = 1; b <= N_BROKERS; b++)
        assert_int_equal(rd_kafka_mock_broker_set_up(f->mc, b), 0);
    if (!serve_until(f, spool_empty, 0, DEADLINE_MS))
        fail_msg("records left in the spool after %d ms", DEADLINE_MS);
    pbsp_get_usage(f->spool, &u);
    assert_int_equal(u.set_aside, 0);
    assert_each_delivered_once_in_order(f, 50);
    assert_log_holds_each_in_order(f, 50, 0);
}

/* librdkafka's levels are syslog's: emerg..err (0-3) are errors, warning (4) a warning, notice..debug
 * (5-7) debug; its "FAIL" lines (a failed connection, which error_cb logs once per cause) stay at debug
 * whatever their level. */
static void test_producer_rdkafka_log_levels_map_to_error_warn_debug(void **state) {
    fixture_t *f = *state;
    static const char *const expected[8] = {"error", "error", "error", "error", "warn", "debug", "debug", "debug"};
    char path[64];
    int saved = capture_begin(path, sizeof path);
    for (int level = 0; level < 8; level++) {
        char buf[64];
        snprintf(buf, sizeof buf, "marker line at level %d", level);
        pbd_producer_rdkafka_log_for_test(f->p, level, "TESTFAC", buf);
    }
    pbd_producer_rdkafka_log_for_test(f->p, 3, "FAIL", "marker connection failed");
    const char *log = capture_end(saved, path);
    for (int level = 0; level < 8; level++) {
        char buf[64], want[32];
        snprintf(buf, sizeof buf, "TESTFAC: marker line at level %d", level);
        snprintf(want, sizeof want, "\"level\":\"%s\"", expected[level]);
        const char *line[] = {buf, "\"event\":\"rdkafka\"", NULL}, *at_level[] = {buf, want, NULL};
        if (count_lines(log, line) != 1 || count_lines(log, at_level) != 1)
            fail_msg("librdkafka level %d: not one line at %s:\n%s", level, expected[level], log);
    }
    const char *fail_line[] = {"FAIL: marker connection failed", "\"level\":\"debug\"", NULL};
    if (count_lines(log, fail_line) != 1) fail_msg("FAIL not at debug:\n%s", log);
}

/* Two brokers failing in turns, each with its own cause (a whole cluster behind one load balancer
 * name would look the same): each broker's cause is logged once, not once per turn. A third cause of
 * one of them is new, hence logged. */
static void test_producer_broker_errors_logged_once_per_broker_and_cause(void **state) {
    fixture_t *f = *state;
    const char *a = "ssl://broker-a.test:9093/1: Connect to ipv4#192.0.2.1:9093 failed: Connection refused "
                    "(after 0ms in state CONNECT)";
    const char *b = "ssl://broker-b.test:9093/2: SSL handshake failed: ssl/record/rec_layer_s3.c:1605: "
                    "error:0A000418:SSL routines::tlsv1 alert unknown ca (after 4ms in state SSL_HANDSHAKE)";
    char path[64];
    int saved = capture_begin(path, sizeof path);
    for (int turn = 0; turn < 5; turn++) {
        pbd_producer_broker_error_for_test(f->p, RD_KAFKA_RESP_ERR__TRANSPORT, a);
        pbd_producer_broker_error_for_test(f->p, RD_KAFKA_RESP_ERR__SSL, b);
    }
    pbd_producer_broker_error_for_test(
        f->p, RD_KAFKA_RESP_ERR__TRANSPORT,
        "ssl://broker-a.test:9093/1: Connect to ipv4#192.0.2.1:9093 failed: No route to host (after 3000ms in "
        "state CONNECT)");
    const char *log = capture_end(saved, path);
    const char *refused[] = {"\"event\":\"broker.error\"", "broker-a.test", "Connection refused", NULL};
    const char *unknown_ca[] = {"\"event\":\"broker.error\"", "broker-b.test", "unknown ca", NULL};
    const char *no_route[] = {"\"event\":\"broker.error\"", "broker-a.test", "No route to host", NULL};
    if (count_lines(log, refused) != 1 || count_lines(log, unknown_ca) != 1 || count_lines(log, no_route) != 1)
        fail_msg("not each broker's cause once:\n%s", log);
    /* JSON lines carry the broker, the error and the producer as fields. */
    const char *fields[] = {"\"broker\":\"ssl://broker-b.test:9093/2\"", "\"error\":\"_SSL\"", "\"producer\":1",
                            "\"cause\":\"ssl://broker-b.test:9093/2: SSL handshake failed", NULL};
    if (count_lines(log, fields) != 1) fail_msg("broker.error without its fields:\n%s", log);
    /* A broker rejecting our CA says "unknown ca": the hint names the client certificate. */
    const char *hinted[] = {"broker-b.test", "hint: the broker refused our client certificate", NULL};
    if (count_lines(log, hinted) != 1) fail_msg("no client-certificate hint for 'unknown ca':\n%s", log);
}

/* The seam cannot send plaintext off the machine, nor watch TLS files it does not use. */
static void test_producer_plaintext_seam_refuses_non_loopback_brokers(void **state) {
    (void)state;
    char e[256] = "";
    const char *refused[] = {"kafka.example.com:9092", "127.0.0.1:9092,10.0.0.1:9092", "127.0.0.10:9092", ""};
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
        pbd_config_t cfg = {.bootstrap_servers = (char *)refused[k], .topic = TOPIC, .compression = "none"};
        assert_null(pbd_producer_new_plaintext_for_test(&cfg, "test", on_delivery, NULL, e, sizeof e));
        assert_non_null(strstr(e, "127.0.0.1"));
    }
    pbd_config_t watched = {
        .bootstrap_servers = "127.0.0.1:9092", .topic = TOPIC, .compression = "none", .tls_watch = 1};
    assert_null(pbd_producer_new_plaintext_for_test(&watched, "test", on_delivery, NULL, e, sizeof e));
}

/* The daemon's entry, given the config the seam accepts, still insists on TLS material. */
static void test_producer_daemon_entry_refuses_config_without_tls_material(void **state) {
    fixture_t *f = *state;
    char e[512] = "";
    pbd_producer_t *p = pbd_producer_new(&f->cfg, "test", on_delivery, f, e, sizeof e);
    pbd_producer_free(p);
    assert_null(p);
    if (!strstr(e, "tls.")) fail_msg("refused for another reason: %s", e);
}

int main(void) {
    pblog_setup(PBLOG_ERROR, PBLOG_TEXT, "test_producer_mock");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_producer_leader_down_records_wait_then_are_delivered_once_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_producer_all_brokers_down_records_wait_then_are_delivered_once_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_retriable_produce_errors_deliver_each_record_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_lost_produce_response_is_retried_and_reported_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_requests_a_producer_id_before_producing, setup_cluster,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_producer_topic_authorization_failure_reported_with_reason, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_producer_broker_refusing_size_reported_with_reason, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_producer_record_over_max_bytes_refused_at_send_with_reason,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_spooled_records_all_retire_after_outage, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_producer_reload_moves_records_the_retiring_producer_cannot_deliver,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_deliveries_of_a_retiring_producer_are_reported_as_not_current,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_fatal_error_replaces_producer_and_delivers_every_record,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_fatal_error_with_records_in_flight_resends_them_in_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_rdkafka_log_levels_map_to_error_warn_debug, setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_broker_errors_logged_once_per_broker_and_cause, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_producer_unknown_topic_records_wait_then_are_delivered,
                                        setup_cluster, teardown),
        cmocka_unit_test_setup_teardown(test_producer_connections_have_tcp_nodelay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_nagle_left_on_when_the_pass_through_says_so, setup_cluster,
                                        teardown),
        cmocka_unit_test(test_producer_plaintext_seam_refuses_non_loopback_brokers),
        cmocka_unit_test_setup_teardown(test_producer_daemon_entry_refuses_config_without_tls_material,
                                        setup_cluster, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
