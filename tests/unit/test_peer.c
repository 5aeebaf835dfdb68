/* test_peer: the SO_PEERCRED policy of predbridged's socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "peer.h"

static void test_peer_listed_uid_allowed(void **state) {
    (void)state;
    uid_t uids[] = {1000, 1001};
    assert_true(pbd_peer_allowed(1001, 50, uids, 2, NULL, 0));
}

static void test_peer_listed_gid_allowed_even_if_uid_not(void **state) {
    (void)state;
    uid_t uids[] = {1000};
    gid_t gids[] = {7, 8};
    assert_true(pbd_peer_allowed(4242, 8, uids, 1, gids, 2));
}

static void test_peer_unlisted_uid_and_gid_refused(void **state) {
    (void)state;
    uid_t uids[] = {1000};
    gid_t gids[] = {7};
    assert_false(pbd_peer_allowed(0, 0, uids, 1, gids, 1));
    assert_false(pbd_peer_allowed(1002, 8, uids, 1, gids, 1));
}

static void test_peer_empty_lists_refuse_everyone(void **state) {
    (void)state;
    assert_false(pbd_peer_allowed(0, 0, NULL, 0, NULL, 0));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peer_listed_uid_allowed),
        cmocka_unit_test(test_peer_listed_gid_allowed_even_if_uid_not),
        cmocka_unit_test(test_peer_unlisted_uid_and_gid_refused),
        cmocka_unit_test(test_peer_empty_lists_refuse_everyone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
