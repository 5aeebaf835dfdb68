/* test_dedup.c: unit tests of the duplicate-id window (src/lib/dedup.c): membership, eviction of the
 * oldest id, hash collisions, ids it cannot hold, and the disabled window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "lib/dedup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pbdedup_key_t key_of(const char *id) {
    return pbdedup_key(id, strlen(id));
}

/* A key with a chosen hash, so tests decide which keys collide. */
static pbdedup_key_t key_hashed(const char *id, uint64_t hash) {
    pbdedup_key_t k = pbdedup_key(id, strlen(id));
    k.hash = hash;
    return k;
}

/* A hash whose home is index slot `slot` (the index takes it from the hash's upper half). */
static uint64_t home(uint64_t slot) {
    return slot << 32;
}

static int seen(const pbdedup_t *d, const char *id) {
    pbdedup_key_t k = key_of(id);
    return pbdedup_contains(d, &k);
}

static void add(pbdedup_t *d, const char *id) {
    pbdedup_key_t k = key_of(id);
    assert_int_equal(pbdedup_insert(d, &k), 1);
}

static void test_dedup_inserted_id_is_contained_and_others_are_not(void **state) {
    (void)state;
    pbdedup_t *d = pbdedup_new(8);
    assert_non_null(d);
    assert_false(seen(d, "0b6f3c1e-8a1d-4c6e-9d2a-1f2e3d4c5b6a"));
    add(d, "0b6f3c1e-8a1d-4c6e-9d2a-1f2e3d4c5b6a");
    assert_true(seen(d, "0b6f3c1e-8a1d-4c6e-9d2a-1f2e3d4c5b6a"));
    assert_false(seen(d, "0b6f3c1e-8a1d-4c6e-9d2a-1f2e3d4c5b6b")); /* last character differs */
    assert_false(seen(d, "0b6f3c1e-8a1d-4c6e-9d2a-1f2e3d4c5b6"));  /* a prefix */
    assert_int_equal(pbdedup_count(d), 1);
    pbdedup_free(d);
}

static void test_dedup_inserting_a_contained_id_again_keeps_one_entry(void **state) {
    (void)state;
    pbdedup_t *d = pbdedup_new(4);
    add(d, "a");
    add(d, "a");
    assert_int_equal(pbdedup_count(d), 1);
    /* It still occupies one slot only: three more fit before "a" is evicted. */
    add(d, "b");
    add(d, "c");
    add(d, "d");
    assert_true(seen(d, "a"));
    pbdedup_free(d);
}

static void test_dedup_full_window_forgets_the_oldest_id_first(void **state) {
    (void)state;
    pbdedup_t *d = pbdedup_new(3);
    add(d, "a");
    add(d, "b");
    add(d, "c");
    assert_int_equal(pbdedup_count(d), 3);
    add(d, "d"); /* evicts a */
    assert_int_equal(pbdedup_count(d), 3);
    assert_false(seen(d, "a"));
    assert_true(seen(d, "b") && seen(d, "c") && seen(d, "d"));
    add(d, "e"); /* evicts b */
    assert_false(seen(d, "b"));
    assert_true(seen(d, "c") && seen(d, "d") && seen(d, "e"));
    /* A forgotten id is new again, and takes the place of the oldest (c). */
    add(d, "a");
    assert_true(seen(d, "a"));
    assert_false(seen(d, "c"));
    pbdedup_free(d);
}

static void test_dedup_colliding_hashes_are_told_apart_by_the_id(void **state) {
    (void)state;
    pbdedup_t *d = pbdedup_new(16);
    const char *ids[] = {"id-0", "id-1", "id-2", "id-3", "id-4", "id-5"};
    for (size_t i = 0; i < 6; i++) {
        pbdedup_key_t k = key_hashed(ids[i], 42);
        assert_false(pbdedup_contains(d, &k));
        assert_int_equal(pbdedup_insert(d, &k), 1);
    }
    assert_int_equal(pbdedup_count(d), 6);
    for (size_t i = 0; i < 6; i++) {
        pbdedup_key_t k = key_hashed(ids[i], 42);
        assert_true(pbdedup_contains(d, &k));
    }
    /* Same home slot and same upper half, other hash: the full hash still tells them apart. */
    pbdedup_key_t other = key_hashed("id-6", 42), same_id_other_hash = key_hashed("id-0", 43);
    assert_false(pbdedup_contains(d, &other));
    assert_false(pbdedup_contains(d, &same_id_other_hash));
    pbdedup_free(d);
}

static void test_dedup_evicting_from_a_collision_chain_keeps_the_rest_findable(void **state) {
    (void)state;
    /* Window 4: the oldest is evicted while it sits first in a chain of colliding ids, with ids of
     * other buckets wrapped in between; what follows it in the chain must move up, not get lost. */
    pbdedup_t *d = pbdedup_new(4);
    pbdedup_key_t a = key_hashed("a", home(5)), b = key_hashed("b", home(5)), c = key_hashed("c", home(6)),
                  e = key_hashed("e", home(5));
    assert_int_equal(pbdedup_insert(d, &a), 1);
    assert_int_equal(pbdedup_insert(d, &b), 1);
    assert_int_equal(pbdedup_insert(d, &c), 1);
    assert_int_equal(pbdedup_insert(d, &e), 1);
    pbdedup_key_t f = key_hashed("f", home(7));
    assert_int_equal(pbdedup_insert(d, &f), 1); /* evicts a */
    assert_false(pbdedup_contains(d, &a));
    assert_true(pbdedup_contains(d, &b));
    assert_true(pbdedup_contains(d, &c));
    assert_true(pbdedup_contains(d, &e));
    assert_true(pbdedup_contains(d, &f));
    /* Hashes near the top of the table wrap around to its start. */
    pbdedup_key_t top1 = key_hashed("t1", UINT64_MAX), top2 = key_hashed("t2", UINT64_MAX);
    assert_int_equal(pbdedup_insert(d, &top1), 1); /* evicts b */
    assert_int_equal(pbdedup_insert(d, &top2), 1); /* evicts c */
    assert_true(pbdedup_contains(d, &top1) && pbdedup_contains(d, &top2));
    assert_true(pbdedup_contains(d, &e) && pbdedup_contains(d, &f));
    assert_false(pbdedup_contains(d, &b) || pbdedup_contains(d, &c));
    /* Same home slot, another upper half: found past its neighbours, never taken for them. */
    pbdedup_key_t g = key_hashed("e", home(5 + 8));
    assert_false(pbdedup_contains(d, &g));
    assert_int_equal(pbdedup_insert(d, &g), 1); /* evicts e */
    assert_true(pbdedup_contains(d, &g));
    assert_false(pbdedup_contains(d, &e));
    pbdedup_free(d);
}

static void test_dedup_window_zero_is_disabled_and_remembers_nothing(void **state) {
    (void)state;
    pbdedup_t *d = pbdedup_new(0);
    assert_non_null(d);
    pbdedup_key_t k = key_of("a");
    assert_int_equal(pbdedup_insert(d, &k), 0);
    assert_false(pbdedup_contains(d, &k));
    assert_int_equal(pbdedup_count(d), 0);
    pbdedup_free(d);
    pbdedup_free(NULL);
    assert_false(pbdedup_contains(NULL, &k));
    assert_int_equal(pbdedup_insert(NULL, &k), 0);
}

static void test_dedup_empty_and_overlong_ids_are_not_tracked(void **state) {
    (void)state;
    pbdedup_t *d = pbdedup_new(4);
    char longest[PBDEDUP_ID_MAX + 1], too_long[PBDEDUP_ID_MAX + 2];
    memset(longest, 'x', PBDEDUP_ID_MAX);
    longest[PBDEDUP_ID_MAX] = '\0';
    memset(too_long, 'x', PBDEDUP_ID_MAX + 1);
    too_long[PBDEDUP_ID_MAX + 1] = '\0';
    pbdedup_key_t empty = key_of(""), over = key_of(too_long);
    assert_int_equal(pbdedup_insert(d, &empty), 0);
    assert_int_equal(pbdedup_insert(d, &over), 0);
    assert_false(pbdedup_contains(d, &empty) || pbdedup_contains(d, &over));
    /* The longest trackable id is held whole: the overlong one sharing its prefix is not it. */
    add(d, longest);
    assert_true(seen(d, longest));
    assert_false(seen(d, too_long));
    assert_int_equal(pbdedup_count(d), 1);
    pbdedup_free(d);
}

static void test_dedup_id_bytes_are_copied_not_borrowed(void **state) {
    (void)state;
    pbdedup_t *d = pbdedup_new(4);
    char buf[16];
    snprintf(buf, sizeof buf, "abc");
    pbdedup_key_t k = key_of(buf);
    assert_int_equal(pbdedup_insert(d, &k), 1);
    snprintf(buf, sizeof buf, "xyz"); /* the caller's buffer is reused for the next message */
    assert_true(seen(d, "abc"));
    assert_false(seen(d, "xyz"));
    pbdedup_free(d);
}

/* Against a plain model (the last `window` distinct ids inserted, in a list), over many ids drawn
 * from a small pool so that hits, misses, evictions and re-insertions all happen often. */
static void test_dedup_matches_a_reference_model_over_random_traffic(void **state) {
    (void)state;
    enum { WINDOW = 97, POOL = 300, STEPS = 200000 };
    pbdedup_t *d = pbdedup_new(WINDOW);
    int model[WINDOW], n = 0, head = 0; /* ring of pool indices, oldest at head when full */
    unsigned seed = 12345;
    for (int step = 0; step < STEPS; step++) {
        seed = seed * 1103515245u + 12345u;
        int id = (int)((seed >> 8) % POOL);
        char text[32];
        snprintf(text, sizeof text, "%08x-%d", (unsigned)id * 2654435761u, id);
        int in_model = 0;
        for (int i = 0; i < n; i++)
            in_model |= model[i] == id;
        assert_int_equal(seen(d, text), in_model);
        if (!in_model) {
            add(d, text);
            if (n < WINDOW) {
                model[n++] = id;
            } else {
                model[head] = id;
                head = (head + 1) % WINDOW;
            }
        }
        assert_int_equal(pbdedup_count(d), (size_t)n);
    }
    pbdedup_free(d);
}

static void test_dedup_window_is_bounded(void **state) {
    (void)state;
    assert_null(pbdedup_new(PBDEDUP_WINDOW_MAX + 1));
    pbdedup_t *d = pbdedup_new(100000);
    assert_non_null(d);
    /* At most 96 bytes per id: a 64-byte entry plus up to four 8-byte index slots (the index is a
     * power of two, at most half full). */
    assert_true(pbdedup_memory(d) <= (size_t)100000 * 96 + 4096);
    pbdedup_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedup_inserted_id_is_contained_and_others_are_not),
        cmocka_unit_test(test_dedup_inserting_a_contained_id_again_keeps_one_entry),
        cmocka_unit_test(test_dedup_full_window_forgets_the_oldest_id_first),
        cmocka_unit_test(test_dedup_colliding_hashes_are_told_apart_by_the_id),
        cmocka_unit_test(test_dedup_evicting_from_a_collision_chain_keeps_the_rest_findable),
        cmocka_unit_test(test_dedup_window_zero_is_disabled_and_remembers_nothing),
        cmocka_unit_test(test_dedup_empty_and_overlong_ids_are_not_tracked),
        cmocka_unit_test(test_dedup_id_bytes_are_copied_not_borrowed),
        cmocka_unit_test(test_dedup_matches_a_reference_model_over_random_traffic),
        cmocka_unit_test(test_dedup_window_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
