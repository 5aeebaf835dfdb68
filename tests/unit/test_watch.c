/* test_watch: the file watch behind certificate reloads, on real temporary directories: rename over
 * a file, the Kubernetes "..data" symlink swap, symlinks into another directory, in-place rewrites,
 * and the debounce that turns a burst into one report. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/watch.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEBOUNCE_MS 200
#define DEADLINE_MS 5000 /* generous: sanitizers and a busy machine */

typedef struct fixture {
    char dir[64];
    char path[4][128];
} fixture_t;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/pbwatch-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static const char *in_dir(const fixture_t *f, const char *name) {
    static char buf[4][256];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 256, "%s/%s", f->dir, name);
    return p;
}

static void write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

/* What a certificate manager does: write a temporary file beside the target, rename it over. */
static void replace_by_rename(const char *path, const char *text) {
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    write_file(tmp, text);
    assert_int_equal(rename(tmp, path), 0);
}

/* Serves the watch until it reports or deadline_ms passes; returns 1 with *mask, or 0. */
static int wait_report(pbwatch_t *w, int deadline_ms, uint32_t *mask) {
    char err[256];
    int64_t deadline = now_ms() + deadline_ms;
    for (int64_t left; (left = deadline - now_ms()) > 0;) {
        struct pollfd p = {.fd = pbwatch_fd(w), .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0) continue;
        int rc = pbwatch_handle(w, mask, err, sizeof err);
        if (rc < 0) fail_msg("pbwatch_handle: %s", err);
        if (rc == 1) return 1;
    }
    return 0;
}

/* Exactly one report, for the paths in want, and then quiet. Returns when the report came. */
static int64_t expect_one_report(pbwatch_t *w, uint32_t want) {
    uint32_t mask = 0;
    assert_true(wait_report(w, DEADLINE_MS, &mask));
    int64_t at = now_ms();
    assert_int_equal(mask, want);
    assert_false(wait_report(w, 3 * DEBOUNCE_MS, &mask));
    return at;
}

static pbwatch_t *watch(const char *const *paths, size_t n) {
    char err[256];
    pbwatch_t *w = pbwatch_new(paths, n, DEBOUNCE_MS, err, sizeof err);
    if (!w) fail_msg("pbwatch_new: %s", err);
    return w;
}

static void test_watch_rename_over_file_reports_that_file_once(void **state) {
    fixture_t *f = *state;
    const char *paths[] = {in_dir(f, "tls.crt"), in_dir(f, "tls.key")};
    write_file(paths[0], "cert 1");
    write_file(paths[1], "key 1");
    pbwatch_t *w = watch(paths, 2);
    replace_by_rename(paths[0], "cert 2");
    expect_one_report(w, 1u);
    pbwatch_free(w);
}

static void test_watch_in_place_rewrite_and_recreation_are_reported(void **state) {
    fixture_t *f = *state;
    const char *paths[] = {in_dir(f, "ca.crt")};
    write_file(paths[0], "ca 1");
    pbwatch_t *w = watch(paths, 1);
    write_file(paths[0], "ca 2, longer");
    uint32_t mask = 0;
    assert_true(wait_report(w, DEADLINE_MS, &mask));
    assert_int_equal(mask, 1u);
    assert_int_equal(unlink(paths[0]), 0);
    write_file(paths[0], "ca 3");
    assert_true(wait_report(w, DEADLINE_MS, &mask));
    pbwatch_free(w);
}

/* A Kubernetes secret volume: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/; an update writes
 * a new timestamped directory, points ..data_tmp at it and renames ..data_tmp over ..data. */
static void k8s_project(const fixture_t *f, const char *stamp, const char *cert, const char *key) {
    char d[300], target[64];
    snprintf(d, sizeof d, "%s/%s", f->dir, stamp);
    assert_int_equal(mkdir(d, 0755), 0);
    write_file(in_dir(f, strcat(strcpy(target, stamp), "/tls.crt")), cert);
    write_file(in_dir(f, strcat(strcpy(target, stamp), "/tls.key")), key);
    assert_int_equal(symlink(stamp, in_dir(f, "..data_tmp")), 0);
    assert_int_equal(rename(in_dir(f, "..data_tmp"), in_dir(f, "..data")), 0);
}

static void test_watch_kubernetes_data_symlink_swap_reports_both_files(void **state) {
    fixture_t *f = *state;
    k8s_project(f, "..2024_01_01_00_00_00.1", "cert 1", "key 1");
    assert_int_equal(symlink("..data/tls.crt", in_dir(f, "tls.crt")), 0);
    assert_int_equal(symlink("..data/tls.key", in_dir(f, "tls.key")), 0);
    const char *paths[] = {in_dir(f, "tls.crt"), in_dir(f, "tls.key")};
    pbwatch_t *w = watch(paths, 2);

    k8s_project(f, "..2024_01_02_00_00_00.2", "cert 2", "key 2");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/..2024_01_01_00_00_00.1'", f->dir);
    assert_int_equal(system(cmd), 0);
    uint32_t mask = 0;
    assert_true(wait_report(w, DEADLINE_MS, &mask));
    assert_int_equal(mask, 3u);
    /* And again: the watch follows the new directory, not the deleted one. */
    k8s_project(f, "..2024_01_03_00_00_00.3", "cert 3", "key 3");
    assert_true(wait_report(w, DEADLINE_MS, &mask));
    assert_int_equal(mask, 3u);
    pbwatch_free(w);
}

static void test_watch_symlink_into_another_directory_sees_the_target_replaced(void **state) {
    fixture_t *f = *state;
    assert_int_equal(mkdir(in_dir(f, "store"), 0755), 0);
    assert_int_equal(mkdir(in_dir(f, "etc"), 0755), 0);
    write_file(in_dir(f, "store/client.crt"), "cert 1");
    assert_int_equal(symlink("../store/client.crt", in_dir(f, "etc/tls.crt")), 0);
    const char *paths[] = {NULL, in_dir(f, "etc/tls.crt")};
    pbwatch_t *w = watch(paths, 2);
    /* Nothing happens in etc/: only the other directory's event can tell. */
    replace_by_rename(in_dir(f, "store/client.crt"), "cert 2");
    uint32_t mask = 0;
    assert_true(wait_report(w, DEADLINE_MS, &mask));
    assert_int_equal(mask, 2u);
    pbwatch_free(w);
}

/* The directory is the symlink: "etc/tls -> v1", re-pointed to v2 by renaming a new symlink over it. */
static void test_watch_directory_symlink_repointed_is_reported(void **state) {
    fixture_t *f = *state;
    assert_int_equal(mkdir(in_dir(f, "etc"), 0755), 0);
    assert_int_equal(mkdir(in_dir(f, "v1"), 0755), 0);
    assert_int_equal(mkdir(in_dir(f, "v2"), 0755), 0);
    write_file(in_dir(f, "v1/tls.crt"), "cert 1");
    write_file(in_dir(f, "v2/tls.crt"), "cert 2");
    assert_int_equal(symlink("../v1", in_dir(f, "etc/tls")), 0);
    const char *paths[] = {in_dir(f, "etc/tls/tls.crt")};
    pbwatch_t *w = watch(paths, 1);
    assert_int_equal(symlink("../v2", in_dir(f, "etc/tls.new")), 0);
    assert_int_equal(rename(in_dir(f, "etc/tls.new"), in_dir(f, "etc/tls")), 0);
    expect_one_report(w, 1u);
    pbwatch_free(w);
}

static void test_watch_burst_of_changes_is_one_report_after_the_quiet_period(void **state) {
    fixture_t *f = *state;
    const char *paths[] = {in_dir(f, "tls.crt"), in_dir(f, "tls.key")};
    write_file(paths[0], "cert 0");
    write_file(paths[1], "key 0");
    pbwatch_t *w = watch(paths, 2);
    /* Changes keep coming for longer than the debounce, each within it of the one before: the
     * watch is served between them (and must not report), so every change restarts the timer. */
    char text[32];
    int64_t start = now_ms(), last = 0;
    uint32_t mask = 0;
    for (int i = 1; i <= 8; i++) {
        snprintf(text, sizeof text, "version %d", i);
        replace_by_rename(paths[i % 2], text);
        last = now_ms();
        if (wait_report(w, DEBOUNCE_MS / 4, &mask)) fail_msg("reported during the burst, after change %d", i);
    }
    assert_true(last - start > DEBOUNCE_MS);
    int64_t at = expect_one_report(w, 3u);
    /* Not before the quiet period (timerfd and this clock may round differently by a millisecond). */
    assert_true(at - last >= DEBOUNCE_MS - 5);
    pbwatch_free(w);
}

static void test_watch_other_files_in_the_directory_are_not_reported(void **state) {
    fixture_t *f = *state;
    const char *paths[] = {in_dir(f, "tls.crt")};
    write_file(paths[0], "cert 1");
    pbwatch_t *w = watch(paths, 1);
    replace_by_rename(in_dir(f, "other.crt"), "unrelated");
    write_file(in_dir(f, "notes.txt"), "unrelated");
    uint32_t mask = 0;
    assert_false(wait_report(w, 3 * DEBOUNCE_MS, &mask));
    pbwatch_free(w);
}

static void test_watch_missing_directory_fails_naming_the_path(void **state) {
    fixture_t *f = *state;
    const char *paths[] = {in_dir(f, "nope/tls.crt")};
    char err[256] = "";
    assert_null(pbwatch_new(paths, 1, DEBOUNCE_MS, err, sizeof err));
    assert_non_null(strstr(err, paths[0]));
    assert_non_null(strstr(err, "No such file"));
}

static void test_watch_describe_names_the_changed_files(void **state) {
    (void)state;
    static const char *const names[] = {"tls.ca", "tls.cert", "tls.key"};
    char out[64];
    pbwatch_describe(0x6, names, 3, out, sizeof out);
    assert_string_equal(out, "tls.cert, tls.key changed");
    pbwatch_describe(0x1, names, 3, out, sizeof out);
    assert_string_equal(out, "tls.ca changed");
    pbwatch_describe(0x7, names, 3, out, 12); /* cut short, still terminated */
    assert_int_equal(strlen(out), 11);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_watch_rename_over_file_reports_that_file_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_in_place_rewrite_and_recreation_are_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_kubernetes_data_symlink_swap_reports_both_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_symlink_into_another_directory_sees_the_target_replaced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_watch_directory_symlink_repointed_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_burst_of_changes_is_one_report_after_the_quiet_period, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_watch_other_files_in_the_directory_are_not_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_missing_directory_fails_naming_the_path, setup, teardown),
        cmocka_unit_test(test_watch_describe_names_the_changed_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
