/* it_consumer_dedup: libpredbridge's duplicate suppression against the real mTLS broker: records an
 * independent producer wrote twice with the same pb-id reach on_prediction once, in order, and are
 * committed; records without a pb-id, a window of 0, a retried message, the window's bound and copies
 * in two partitions of one consumer. */
#include "it_consumer_util.h"

/* Consumes topic with a fresh group (its name in group[128]) and `extra` settings until `received`
 * records were examined; on_prediction answers PB_RETRY once at retry_offset (-1: never). The
 * caller finishes with expect_duplicates_and_close. */
static pb_consumer_t *consume_all(const char *topic, char *group, const char *name, const char *extra,
                                  sink_t *s, uint64_t received, int retry_offset) {
    unique_group(group, 128, name);
    sink_init(s);
    s->retry_offset = retry_offset;
    pb_consumer_t *c = new_consumer(topic, group, extra, s);
    poll_until_received(c, received, 60000);
    pb_consumer_poll(c, 0); /* nothing may be pending behind the last one */
    return c;
}

static void expect_duplicates_and_close(pb_consumer_t *c, uint64_t duplicates) {
    char err[512];
    assert_int_equal(stat_of(c, PB_STAT_DUPLICATES), duplicates);
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    pb_consumer_destroy(c);
}

/* The ids on_prediction saw, in order ("" for a record without pb-id), are exactly want[0..n). */
static void expect_ids(const sink_t *s, const char *const *want, int n) {
    int ok = s->n == n;
    for (int i = 0; ok && i < n; i++)
        ok = !strcmp(s->recs[i].id, want[i]);
    if (ok) return;
    for (int i = 0; i < s->n; i++)
        fprintf(stderr, "  delivered offset %lld id '%s'\n", (long long)s->recs[i].offset, s->recs[i].id);
    fail_msg("expected %d deliveries with the listed ids, got %d (above)", n, s->n);
}

/* a, b, a, c, b, then two records without pb-id that are byte for byte the same. */
static void produce_with_duplicates(char *topic, size_t size, const char *tag) {
    itest_create_topic("predictions-it-dedup", 1, topic, size);
    char ida[64], idb[64], idc[64];
    snprintf(ida, sizeof ida, "%s-a", tag);
    snprintf(idb, sizeof idb, "%s-b", tag);
    snprintf(idc, sizeof idc, "%s-c", tag);
    const char *values[] = {valid_value(0), valid_value(1), valid_value(0), valid_value(2),
                            valid_value(1), valid_value(3), valid_value(3)};
    const char *ids[] = {ida, idb, ida, idc, idb, NULL, NULL};
    produce_with_ids(topic, values, ids, NULL, 7, 1700000000000);
}

static void test_consumer_dedup_delivers_each_id_once_in_order_and_commits_the_copies(void **state) {
    (void)state;
    char topic[256], group[128];
    static sink_t s;
    produce_with_duplicates(topic, sizeof topic, "once");
    pb_consumer_t *c = consume_all(topic, group, "dedup-once", NULL, &s, 7, -1); /* the default window */
    const char *want[] = {"once-a", "once-b", "once-c", "", ""};
    expect_ids(&s, want, 5);
    const int64_t offsets[] = {0, 1, 3, 5, 6};
    for (int i = 0; i < 5; i++)
        assert_int_equal(s.recs[i].offset, offsets[i]);
    assert_int_equal(stat_of(c, PB_STAT_DELIVERED), 5);
    assert_int_equal(count_errors(&s, PB_ERR_PARSE, NULL), 0);
    expect_duplicates_and_close(c, 2);

    /* The copies were committed like processed records: the group resumes after the last one. */
    const char *one[] = {valid_value(4)};
    const char *one_id[] = {"once-d"};
    produce_with_ids(topic, one, one_id, NULL, 1, 1700000001000);
    sink_init(&s);
    c = new_consumer(topic, group, NULL, &s);
    poll_until(c, &s, 1, PB_OK, 60000);
    pb_consumer_poll(c, 500); /* anything wrongly redelivered would be queued right behind it */
    assert_int_equal(s.n, 1);
    assert_int_equal(s.recs[0].offset, 7);
    assert_int_equal(stat_of(c, PB_STAT_RECEIVED), 1);
    expect_duplicates_and_close(c, 0);
}

static void test_consumer_dedup_window_zero_delivers_every_copy(void **state) {
    (void)state;
    char topic[256], group[128];
    static sink_t s;
    produce_with_duplicates(topic, sizeof topic, "off");
    pb_consumer_t *c = consume_all(topic, group, "dedup-off", "consumer.dedup.window=0", &s, 7, -1);
    const char *want[] = {"off-a", "off-b", "off-a", "off-c", "off-b", "", ""};
    expect_ids(&s, want, 7);
    expect_duplicates_and_close(c, 0);
}

static void test_consumer_dedup_retried_message_is_not_its_own_duplicate(void **state) {
    (void)state;
    char topic[256], group[128];
    static sink_t s;
    produce_with_duplicates(topic, sizeof topic, "retry");
    /* "retry-a" is answered PB_RETRY once, then delivered again: 7 records, one of them twice. */
    pb_consumer_t *c = consume_all(topic, group, "dedup-retry", NULL, &s, 8, 0);
    assert_true(s.retried);
    const char *want[] = {"retry-a", "retry-b", "retry-c", "", ""};
    expect_ids(&s, want, 5);
    assert_int_equal(s.recs[0].offset, 0); /* the redelivery, after the backoff */
    assert_int_equal(stat_of(c, PB_STAT_RETRIED), 1);
    assert_int_equal(stat_of(c, PB_STAT_DELIVERED), 6);
    expect_duplicates_and_close(c, 2);
}

static void test_consumer_dedup_forgets_ids_older_than_the_window(void **state) {
    (void)state;
    char topic[256], group[128];
    static sink_t s;
    itest_create_topic("predictions-it-dedup", 1, topic, sizeof topic);
    /* Window 2: the second "a" is within it, the third is not (c and d pushed it out). */
    const char *values[] = {valid_value(0), valid_value(1), valid_value(0),
                            valid_value(2), valid_value(3), valid_value(0)};
    const char *ids[] = {"win-a", "win-b", "win-a", "win-c", "win-d", "win-a"};
    produce_with_ids(topic, values, ids, NULL, 6, 1700000000000);
    pb_consumer_t *c = consume_all(topic, group, "dedup-window", "consumer.dedup.window=2", &s, 6, -1);
    const char *want[] = {"win-a", "win-b", "win-c", "win-d", "win-a"};
    expect_ids(&s, want, 5);
    assert_int_equal(s.recs[4].offset, 5);
    expect_duplicates_and_close(c, 1);
}

static void test_consumer_dedup_catches_copies_in_another_partition_of_the_same_consumer(void **state) {
    (void)state;
    char topic[256], group[128];
    static sink_t s;
    itest_create_topic("predictions-it-dedup", 2, topic, sizeof topic);
    /* An unkeyed replay can land in another partition than the original. */
    const char *values[] = {valid_value(0), valid_value(1), valid_value(0), valid_value(1), valid_value(2)};
    const char *ids[] = {"part-a", "part-b", "part-a", "part-b", "part-c"};
    const int parts[] = {0, 0, 1, 1, 1};
    produce_with_ids(topic, values, ids, parts, 5, 1700000000000);
    pb_consumer_t *c = consume_all(topic, group, "dedup-parts", NULL, &s, 5, -1);
    assert_int_equal(s.n, 3);
    int seen_a = 0, seen_b = 0, seen_c = 0;
    for (int i = 0; i < s.n; i++) {
        seen_a += !strcmp(s.recs[i].id, "part-a");
        seen_b += !strcmp(s.recs[i].id, "part-b");
        seen_c += !strcmp(s.recs[i].id, "part-c");
    }
    assert_true(seen_a == 1 && seen_b == 1 && seen_c == 1);
    expect_duplicates_and_close(c, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consumer_dedup_delivers_each_id_once_in_order_and_commits_the_copies),
        cmocka_unit_test(test_consumer_dedup_window_zero_delivers_every_copy),
        cmocka_unit_test(test_consumer_dedup_retried_message_is_not_its_own_duplicate),
        cmocka_unit_test(test_consumer_dedup_forgets_ids_older_than_the_window),
        cmocka_unit_test(test_consumer_dedup_catches_copies_in_another_partition_of_the_same_consumer),
    };
    if (getenv("PB_ITEST_FILTER")) cmocka_set_test_filter(getenv("PB_ITEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
