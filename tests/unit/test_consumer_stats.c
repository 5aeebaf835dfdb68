/* test_consumer_stats.c: unit tests of the consumer's statistics (src/lib/stats.c): the lag read from
 * librdkafka's statistics JSON, snapshots and their accessors, counter names, and thread safety. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "lib/lib_internal.h"

#include <predbridge/predbridge.h>

#include <pthread.h>
#include <string.h>

/* Shaped like librdkafka 2.x's statistics (trimmed): two topics, the internal partition -1, a
 * partition no longer assigned, one whose lag is not known yet. Deliberately out of order. */
static const char g_stats[] =
    "{\"name\":\"libpredbridge#consumer-1\",\"type\":\"consumer\",\"ts\":1,\"brokers\":{},"
    "\"topics\":{"
    " \"predictions-b\":{\"topic\":\"predictions-b\",\"partitions\":{"
    "  "
    "\"1\":{\"partition\":1,\"desired\":true,\"fetch_state\":\"active\",\"hi_offset\":10,\"committed_"
    "offset\":7,"
    "        \"consumer_lag\":3,\"consumer_lag_stored\":0},"
    "  \"0\":{\"partition\":0,\"desired\":true,\"fetch_state\":\"active\",\"consumer_lag\":-1},"
    "  \"-1\":{\"partition\":-1,\"desired\":false,\"fetch_state\":\"none\",\"consumer_lag\":-1}}},"
    " \"predictions-a\":{\"topic\":\"predictions-a\",\"partitions\":{"
    "  \"2\":{\"partition\":2,\"desired\":false,\"fetch_state\":\"none\",\"consumer_lag\":9},"
    "  \"0\":{\"partition\":0,\"desired\":true,\"fetch_state\":\"active\",\"consumer_lag\":0}}}"
    "}}";

static void test_stats_lag_parsed_for_assigned_partitions_sorted(void **state) {
    (void)state;
    pbstats_lag_t *lag;
    size_t n;
    assert_int_equal(pbstats_parse_lag(g_stats, strlen(g_stats), &lag, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(lag[0].topic, "predictions-a");
    assert_int_equal(lag[0].partition, 0);
    assert_int_equal(lag[0].lag, 0);
    assert_string_equal(lag[1].topic, "predictions-b");
    assert_int_equal(lag[1].partition, 0);
    assert_int_equal(lag[1].lag, -1);
    assert_string_equal(lag[2].topic, "predictions-b");
    assert_int_equal(lag[2].partition, 1);
    assert_int_equal(lag[2].lag, 3);
    pbstats_lag_free(lag, n);
}

static void test_stats_lag_without_desired_flag_uses_fetch_state(void **state) {
    (void)state;
    const char *j = "{\"topics\":{\"t\":{\"partitions\":{"
                    "\"0\":{\"partition\":0,\"fetch_state\":\"active\",\"consumer_lag\":4},"
                    "\"1\":{\"partition\":1,\"fetch_state\":\"none\",\"consumer_lag\":5},"
                    "\"2\":{\"partition\":2,\"fetch_state\":\"offset-query\"}}}}}";
    pbstats_lag_t *lag;
    size_t n;
    assert_int_equal(pbstats_parse_lag(j, strlen(j), &lag, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(lag[0].lag, 4);
    assert_int_equal(lag[1].partition, 2);
    assert_int_equal(lag[1].lag, -1); /* no consumer_lag: unknown */
    pbstats_lag_free(lag, n);
}

static void test_stats_lag_of_bad_or_empty_json(void **state) {
    (void)state;
    pbstats_lag_t *lag = (pbstats_lag_t *)1;
    size_t n = 99;
    assert_int_equal(pbstats_parse_lag("not json", 8, &lag, &n), -1);
    assert_null(lag);
    assert_int_equal(n, 0);
    assert_int_equal(pbstats_parse_lag("[1]", 3, &lag, &n), -1);
    assert_int_equal(pbstats_parse_lag("{\"topics\":7}", 12, &lag, &n), -1);
    assert_int_equal(pbstats_parse_lag("{\"type\":\"consumer\"}", 19, &lag, &n), 0);
    assert_null(lag);
    assert_int_equal(n, 0);
}

static void test_stats_snapshot_copies_counters_and_lag(void **state) {
    (void)state;
    pbstats_t s;
    pbstats_init(&s);
    for (int i = 0; i < 5; i++)
        pbstats_add(&s, PB_STAT_RECEIVED);
    for (int i = 0; i < 3; i++)
        pbstats_add(&s, PB_STAT_DELIVERED);
    pbstats_add(&s, PB_STAT_DUPLICATES);
    pbstats_add(&s, PB_STAT_SKIPPED);
    pbstats_add(&s, PB_STAT_SKIPPED_NOT_JSON);
    pbstats_lag_t *lag;
    size_t n;
    assert_int_equal(pbstats_parse_lag(g_stats, strlen(g_stats), &lag, &n), 0);
    pbstats_set_lag(&s, lag, n);
    pb_stats_t *snap = pbstats_snapshot(&s);
    assert_non_null(snap);
    /* The snapshot is a copy: later counts and a new lag table do not change it, nor free its topics. */
    pbstats_add(&s, PB_STAT_RECEIVED);
    pbstats_set_lag(&s, NULL, 0);
    assert_int_equal(pb_stats_get(snap, PB_STAT_RECEIVED), 5);
    assert_int_equal(pb_stats_get(snap, PB_STAT_DELIVERED), 3);
    assert_int_equal(pb_stats_get(snap, PB_STAT_DUPLICATES), 1);
    assert_int_equal(pb_stats_get(snap, PB_STAT_SKIPPED_NOT_JSON), 1);
    assert_int_equal(pb_stats_get(snap, PB_STAT_TLS_FAILURES), 0);
    assert_int_equal(pb_stats_get(snap, (pb_stat_t)999), 0);
    assert_int_equal(pb_stats_partition_count(snap), 3);
    const char *topic;
    int32_t part;
    int64_t l;
    assert_int_equal(pb_stats_partition_at(snap, 2, &topic, &part, &l), PB_OK);
    assert_string_equal(topic, "predictions-b");
    assert_int_equal(part, 1);
    assert_int_equal(l, 3);
    assert_int_equal(pb_stats_partition_at(snap, 0, NULL, NULL, NULL), PB_OK);
    assert_int_equal(pb_stats_partition_at(snap, 3, &topic, &part, &l), PB_ERR_NOT_FOUND);
    pb_stats_destroy(snap);
    pbstats_destroy(&s);
}

static void test_stats_accessors_accept_null(void **state) {
    (void)state;
    assert_int_equal(pb_stats_get(NULL, PB_STAT_RECEIVED), 0);
    assert_int_equal(pb_stats_partition_count(NULL), 0);
    assert_int_equal(pb_stats_partition_at(NULL, 0, NULL, NULL, NULL), PB_ERR_NOT_FOUND);
    assert_null(pb_consumer_stats(NULL));
    pb_stats_destroy(NULL);
}

static void test_stats_every_counter_has_a_unique_name_and_the_list_ends(void **state) {
    (void)state;
    int n = 0;
#define CHECK_(name, value, text)                                                                            \
    assert_string_equal(pb_stat_name(PB_STAT_##name), text);                                                 \
    assert_int_equal(PB_STAT_##name, n);                                                                     \
    n++;
    PB_STAT_MAP(CHECK_)
#undef CHECK_
    assert_null(pb_stat_name((pb_stat_t)n));
    assert_null(pb_stat_name((pb_stat_t)-1));
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            assert_string_not_equal(pb_stat_name(i), pb_stat_name(j));
}

/* One thread counts (as the dispatching thread does) while another takes snapshots: every snapshot
 * sees a count that only grows, and the last one sees them all. */
typedef struct race {
    pbstats_t s;
    atomic_int done;
} race_t;

static void *counting_thread(void *p) {
    race_t *r = p;
    for (int i = 0; i < 200000; i++)
        pbstats_add(&r->s, PB_STAT_RECEIVED);
    atomic_store(&r->done, 1);
    return NULL;
}

static void test_stats_snapshots_from_another_thread_see_a_growing_count(void **state) {
    (void)state;
    static race_t r;
    pbstats_init(&r.s);
    atomic_init(&r.done, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, counting_thread, &r), 0);
    uint64_t last = 0;
    while (!atomic_load(&r.done)) {
        pb_stats_t *snap = pbstats_snapshot(&r.s);
        uint64_t v = pb_stats_get(snap, PB_STAT_RECEIVED);
        assert_true(v >= last);
        last = v;
        pb_stats_destroy(snap);
    }
    pthread_join(th, NULL);
    pb_stats_t *snap = pbstats_snapshot(&r.s);
    assert_int_equal(pb_stats_get(snap, PB_STAT_RECEIVED), 200000);
    pb_stats_destroy(snap);
    pbstats_destroy(&r.s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_lag_parsed_for_assigned_partitions_sorted),
        cmocka_unit_test(test_stats_lag_without_desired_flag_uses_fetch_state),
        cmocka_unit_test(test_stats_lag_of_bad_or_empty_json),
        cmocka_unit_test(test_stats_snapshot_copies_counters_and_lag),
        cmocka_unit_test(test_stats_accessors_accept_null),
        cmocka_unit_test(test_stats_every_counter_has_a_unique_name_and_the_list_ends),
        cmocka_unit_test(test_stats_snapshots_from_another_thread_see_a_growing_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
