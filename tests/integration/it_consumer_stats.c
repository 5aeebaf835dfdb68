/* it_consumer_stats: libpredbridge's counters, lag and log lines against the real mTLS broker: a known
 * workload gives exact counters and a lag that drains to 0 per partition, each commit is counted once,
 * JSON log lines parse and name their events without secrets or payloads, and `predbridge tail
 * --stats --log` prints both. */
#include "it_consumer_util.h"

#include <jansson.h>

/* A valid prediction of more than 256 bytes (message.max_bytes below). */
static const char *large_value(void) {
    static char buf[400];
    snprintf(buf, sizeof buf, "{\"model_version\":\"m\",\"prediction\":1,\"pad\":\"%0300d\"}", 0);
    return buf;
}

/* Polls until every assigned partition of topic (n_parts of them) reports lag 0; fails at the deadline. */
static void poll_until_lag_zero(pb_consumer_t *c, const char *topic, size_t n_parts, int timeout_ms) {
    int64_t deadline = itest_now_ms() + timeout_ms;
    for (;;) {
        pb_stats_t *st = pb_consumer_stats(c);
        size_t zero = 0, seen = 0;
        for (size_t i = 0; i < pb_stats_partition_count(st); i++) {
            const char *t;
            int64_t lag;
            assert_int_equal(pb_stats_partition_at(st, i, &t, NULL, &lag), PB_OK);
            if (strcmp(t, topic) != 0) continue;
            seen++;
            zero += lag == 0;
        }
        pb_stats_destroy(st);
        if (seen == n_parts && zero == n_parts) return;
        if (itest_now_ms() >= deadline)
            fail_msg("lag: %zu of %zu partitions at 0 (%zu reported)", zero, n_parts, seen);
        pb_consumer_poll(c, 100);
    }
}

static void test_consumer_stats_count_a_known_workload_exactly_and_lag_drains_to_zero(void **state) {
    (void)state;
    char topic[256], group[128], err[512];
    itest_create_topic("predictions-it-stats", 2, topic, sizeof topic);
    /* 7 distinct valid predictions (s0-s5, s7), 3 copies of them (s0 in its partition, s2 and s7 in
     * the other one), and one malformed record of every kind; offset 1 of partition 0 is retried. */
    const char *values[] = {
        /* partition 0, offsets 0-6 */
        valid_value(0),
        valid_value(1),
        "not json",
        valid_value(2),
        valid_value(0),
        "[1,2]",
        valid_value(3),
        /* partition 1, offsets 0-8 */
        valid_value(4),
        "{\"model_version\":\"m\"}",
        valid_value(5),
        valid_value(2),
        "{\"model_version\":5,\"prediction\":1}",
        "{\"model_version\":\"\xff\",\"prediction\":1}",
        large_value(),
        valid_value(7),
        valid_value(7),
    };
    const char *ids[] = {"s0", "s1", "x0", "s2", "s0", "x1", "s3", "s4",
                         "x2", "s5", "s2", "x3", "x4", "s6", "s7", "s7"};
    const int parts[] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    enum { RECORDS = 16, VALID = 7, COPIES = 3, BAD = 6 };
    produce_with_ids(topic, values, ids, parts, RECORDS, 1700000000000);

    static sink_t s;
    sink_init(&s);
    s.retry_offset = 1; /* partition 1's offset 1 is malformed, so only s1 is retried */
    unique_group(group, sizeof group, "stats");
    pb_consumer_t *c = new_consumer(topic, group,
                                    "message.max_bytes=256\nconsumer.commit_interval_ms=100\n"
                                    "kafka.statistics.interval.ms=100",
                                    &s);
    poll_until_received(c, RECORDS + 1, 60000);
    poll_until_lag_zero(c, topic, 2, 30000);
    assert_int_equal(s.n, VALID);
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);

    pb_stats_t *st = pb_consumer_stats(c); /* valid after close, until destroy */
    pb_consumer_destroy(c);
    assert_non_null(st);
    assert_int_equal(pb_stats_get(st, PB_STAT_RECEIVED), RECORDS + 1);
    assert_int_equal(pb_stats_get(st, PB_STAT_DELIVERED), VALID + 1);
    assert_int_equal(pb_stats_get(st, PB_STAT_RETRIED), 1);
    assert_int_equal(pb_stats_get(st, PB_STAT_DUPLICATES), COPIES);
    assert_int_equal(pb_stats_get(st, PB_STAT_SKIPPED), BAD);
    static const pb_stat_t kinds[] = {PB_STAT_SKIPPED_NOT_JSON,      PB_STAT_SKIPPED_NOT_OBJECT,
                                      PB_STAT_SKIPPED_MISSING_FIELD, PB_STAT_SKIPPED_BAD_FIELD,
                                      PB_STAT_SKIPPED_INVALID_UTF8,  PB_STAT_SKIPPED_TOO_LARGE};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (pb_stats_get(st, kinds[i]) != 1)
            fail_msg("%s: %llu", pb_stat_name(kinds[i]), (unsigned long long)pb_stats_get(st, kinds[i]));
    }
    assert_int_equal(pb_stats_get(st, PB_STAT_RECEIVED), pb_stats_get(st, PB_STAT_DELIVERED) +
                                                             pb_stats_get(st, PB_STAT_DUPLICATES) +
                                                             pb_stats_get(st, PB_STAT_SKIPPED));
    assert_int_equal(pb_stats_get(st, PB_STAT_TLS_FAILURES), 0);
    assert_int_equal(pb_stats_get(st, PB_STAT_AUTH_FAILURES), 0);
    assert_true(pb_stats_get(st, PB_STAT_COMMITS) >= 1);
    assert_int_equal(pb_stats_get(st, PB_STAT_COMMIT_FAILURES), 0);
    assert_int_equal(count_errors(&s, PB_ERR_PARSE, NULL), BAD);
    pb_stats_destroy(st);
}

static void test_consumer_stats_count_each_accepted_commit_once(void **state) {
    (void)state;
    char topic[256], group[128], err[512];
    itest_create_topic("predictions-it-stats", 1, topic, sizeof topic);
    const char *values[] = {valid_value(0), valid_value(1)};
    produce(topic, values, NULL, 2, "commits", 1700000000000);
    static sink_t s;
    sink_init(&s);
    unique_group(group, sizeof group, "commits");
    /* No periodic commit within the test: only close commits. */
    pb_consumer_t *c = new_consumer(topic, group, "consumer.commit_interval_ms=60000", &s);
    poll_until(c, &s, 2, PB_OK, 60000);
    assert_int_equal(stat_of(c, PB_STAT_COMMITS), 0);
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    /* close's synchronous commit; the revocation inside close finds nothing new to commit. */
    assert_int_equal(stat_of(c, PB_STAT_COMMITS), 1);
    pb_consumer_destroy(c);
}

/* ---- log lines ---- */

#define MAX_EVENTS 32

typedef struct logsink {
    pthread_t thread; /* where the callbacks must run */
    int lines;
    char failure[1024]; /* first problem found inside the callback, where the test cannot fail */
    char events[MAX_EVENTS][48];
    int n_events;
    const char *forbidden[4]; /* must never appear in a line */
} logsink_t;

static void log_failure(logsink_t *l, const char *what, const char *line) {
    if (!l->failure[0]) snprintf(l->failure, sizeof l->failure, "%s: %.900s", what, line);
}

static void on_log(pb_log_level_t level, const char *event, const char *line, void *opaque) {
    static const char *const level_names[] = {"error", "warn", "info", "debug"};
    logsink_t *l = opaque;
    l->lines++;
    if (!pthread_equal(pthread_self(), l->thread))
        log_failure(l, "log function called on another thread", line);
    json_error_t je;
    json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) log_failure(l, "not a JSON object", line);
    const char *keys[] = {"time", "level", "program", "event", "msg"};
    for (size_t i = 0; o && i < sizeof keys / sizeof keys[0]; i++)
        if (!json_is_string(json_object_get(o, keys[i]))) log_failure(l, "a member is missing", line);
    const char *ev = json_string_value(json_object_get(o, "event"));
    const char *lv = json_string_value(json_object_get(o, "level"));
    if (!ev || strcmp(ev, event) != 0) log_failure(l, "event differs from the argument", line);
    if (!lv || (unsigned)level > 3 || strcmp(lv, level_names[level]) != 0)
        log_failure(l, "level differs", line);
    for (size_t i = 0; i < sizeof l->forbidden / sizeof l->forbidden[0]; i++)
        if (l->forbidden[i] && strstr(line, l->forbidden[i]))
            log_failure(l, "a secret or payload is logged", line);
    int known = 0;
    for (int i = 0; i < l->n_events; i++)
        known |= !strcmp(l->events[i], event);
    if (!known && l->n_events < MAX_EVENTS)
        snprintf(l->events[l->n_events++], sizeof l->events[0], "%s", event);
    json_decref(o);
}

static int logged(const logsink_t *l, const char *event) {
    for (int i = 0; i < l->n_events; i++)
        if (!strcmp(l->events[i], event)) return 1;
    return 0;
}

/* The first line of base64 in a PEM file: what a leaked key would show. */
static void pem_body_line(const char *path, char *out, size_t size) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256];
    out[0] = '\0';
    while (fgets(line, sizeof line, f))
        if (!strchr(line, '-') && !strchr(line, ':') && strlen(line) > 40) {
            snprintf(out, size, "%.40s", line);
            break;
        }
    fclose(f);
    assert_true(out[0] != '\0');
}

static void test_consumer_json_log_lines_parse_name_their_events_and_hold_no_secrets(void **state) {
    (void)state;
    char topic[256], group[128], err[512], extra[2048], key[256], pass[256], key_body[64];
    /* An encrypted client key, so a passphrase passes through the configuration. */
    const char *passphrase = "it-log-passphrase-7c1e5a";
    snprintf(key, sizeof key, "/tmp/pbit-log-%d.key", (int)getpid());
    snprintf(pass, sizeof pass, "/tmp/pbit-log-%d.pass", (int)getpid());
    FILE *pf = fopen(pass, "w");
    assert_non_null(pf);
    fprintf(pf, "%s\n", passphrase);
    fclose(pf);
    assert_int_equal(itest_system("openssl pkey -in '%s' -aes256 -passout 'file:%s' -out '%s'",
                                  itest_cert("predbridge-consumer.key"), pass, key),
                     0);
    pem_body_line(key, key_body, sizeof key_body);

    itest_create_topic("predictions-it-log", 1, topic, sizeof topic);
    const char *values[] = {valid_value(0), "SECRET-PAYLOAD is not json", valid_value(0), valid_value(1)};
    const char *ids[] = {"log-a", "log-x", "log-a", "log-b"};
    produce_with_ids(topic, values, ids, NULL, 4, 1700000000000);

    static logsink_t l;
    memset(&l, 0, sizeof l);
    l.thread = pthread_self();
    l.forbidden[0] = passphrase;
    l.forbidden[1] = "PRIVATE KEY";
    l.forbidden[2] = key_body;
    l.forbidden[3] = "SECRET-PAYLOAD";
    snprintf(extra, sizeof extra,
             "tls.key=%s\ntls.key_passphrase_file=%s\nlog.format=json\nlog.level=debug\n"
             "kafka.debug=conf,security,cgrp",
             key, pass);
    pb_config_t *conf = consumer_config(topic, "unused", extra);
    unique_group(group, sizeof group, "log");
    assert_int_equal(pb_config_set(conf, "group.id", group, err, sizeof err), PB_OK);
    assert_int_equal(pb_config_set_log_fn(conf, on_log, &l), PB_OK);
    static sink_t s;
    sink_init(&s);
    s.retry_offset = 0;
    pb_consumer_t *c = pb_consumer_new(conf, on_prediction, on_error, &s, err, sizeof err);
    pb_config_destroy(conf);
    if (!c) fail_msg("pb_consumer_new: %s", err);
    s.c = c;
    poll_until_received(c, 5, 60000); /* 4 records, the first one twice */
    assert_int_equal(s.n, 2);
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    pb_consumer_destroy(c);
    unlink(key);
    unlink(pass);

    if (l.failure[0]) fail_msg("%s", l.failure);
    assert_true(l.lines > 0);
    const char *want[] = {"consumer.started", "partitions.assigned", "record.retry",       "record.duplicate",
                          "record.skipped",   "kafka.log",           "partitions.revoked", "consumer.closed"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!logged(&l, want[i])) fail_msg("no %s line among %d lines", want[i], l.lines);
}

/* ---- predbridge tail --stats --log ---- */

static json_t *stats_line(const char *text) {
    static char buf[65536];
    snprintf(buf, sizeof buf, "%.*s", (int)sizeof buf - 1, text);
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(line, 0, NULL);
        if (json_object_get(o, "partitions") && !json_object_get(o, "event")) return o; /* not a log line */
        json_decref(o);
    }
    return NULL;
}

static void test_tail_prints_stats_and_json_log_lines_on_stderr(void **state) {
    (void)state;
    char topic[256], conf[256], args[2048], errfile[256];
    static char out[65536], errs[65536];
    itest_create_topic("predictions-it-stats", 1, topic, sizeof topic);
    const char *values[] = {valid_value(0), "oops", valid_value(2)};
    produce(topic, values, NULL, 3, "tailstats", 1700000000000);
    write_tail_config(conf, sizeof conf, topic);
    snprintf(errfile, sizeof errfile, "/tmp/pbit-tail-%d.err", (int)getpid());
    char redirect[300];
    snprintf(redirect, sizeof redirect, "2>'%s'", errfile);

    /* Without --log and --stats, stderr has the bad record's report only: the library itself is silent. */
    snprintf(args, sizeof args, "--config %s --from-beginning --max 2", conf);
    assert_int_equal(run_tail_redirect(args, redirect, out, sizeof out), 0);
    FILE *f = fopen(errfile, "r");
    assert_non_null(f);
    errs[fread(errs, 1, sizeof errs - 1, f)] = '\0';
    fclose(f);
    assert_non_null(strstr(errs, "PB_ERR_PARSE"));
    for (char *save = NULL, *line = strtok_r(errs, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if (strncmp(line, "predbridge tail: ", 17) != 0) fail_msg("not tail's own report: %s", line);

    snprintf(args, sizeof args, "--config %s --from-beginning --max 2 --stats --log -o log.format=json",
             conf);
    assert_int_equal(run_tail_redirect(args, redirect, out, sizeof out), 0);
    f = fopen(errfile, "r");
    assert_non_null(f);
    errs[fread(errs, 1, sizeof errs - 1, f)] = '\0';
    fclose(f);
    unlink(errfile);
    unlink(conf);
    assert_non_null(strstr(errs, "\"event\":\"consumer.started\""));
    assert_non_null(strstr(errs, "\"event\":\"record.skipped\""));
    json_t *st = stats_line(errs);
    if (!st) fail_msg("no stats line in: %s", errs);
    assert_int_equal(json_integer_value(json_object_get(st, "received")), 3);
    assert_int_equal(json_integer_value(json_object_get(st, "delivered")), 2);
    assert_int_equal(json_integer_value(json_object_get(st, "skipped_not_json")), 1);
    assert_int_equal(json_integer_value(json_object_get(st, "duplicates")), 0);
    assert_true(json_is_array(json_object_get(st, "partitions")));
    json_decref(st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consumer_stats_count_a_known_workload_exactly_and_lag_drains_to_zero),
        cmocka_unit_test(test_consumer_stats_count_each_accepted_commit_once),
        cmocka_unit_test(test_consumer_json_log_lines_parse_name_their_events_and_hold_no_secrets),
        cmocka_unit_test(test_tail_prints_stats_and_json_log_lines_on_stderr),
    };
    if (getenv("PB_ITEST_FILTER")) cmocka_set_test_filter(getenv("PB_ITEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
