/* test_config.c: unit tests of pbd_config_load (common/config.c) and the kafka.* denylist (kafka_policy). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/config.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[64]; /* per-run directory with the files the tls.* keys point at */

static const char *const g_files[] = {"ca.pem",          "cert.pem",  "key.pem", "pass.txt",
                                      "ks.p12",          "crl.pem",   "ca.crt",  "predbridged.crt",
                                      "predbridged.key", "secret.pem"};

/* Every key the table must define; the reference and the example config are checked against it. */
static const char *const g_keys[] = {
    "socket.path",
    "socket.mode",
    "socket.allowed_uids",
    "socket.allowed_gids",
    "socket.max_connections",
    "bootstrap.servers",
    "topic",
    "tls.ca",
    "tls.cert",
    "tls.key",
    "tls.key_passphrase_file",
    "tls.keystore",
    "tls.keystore_passphrase_file",
    "tls.crl",
    "tls.pins",
    "tls.expiry.warn_days",
    "tls.expiry.check_interval_s",
    "tls.watch",
    "tls.watch_debounce_ms",
    "message.max_bytes",
    "message.required_fields",
    "message.key_field",
    "producer.compression",
    "producer.linger_ms",
    "producer.flush_timeout_ms",
    "spool.dir",
    "spool.fsync",
    "spool.fsync_interval_ms",
    "spool.max_bytes",
    "spool.segment_bytes",
    "log.level",
    "log.format",
    "http.listen",
};
#define N_KEYS (sizeof g_keys / sizeof g_keys[0])

#define BASE                                                                                                 \
    "bootstrap.servers = localhost:9093\ntls.ca = ${DIR}/ca.pem\ntls.cert = ${DIR}/cert.pem\ntls.key = "     \
    "${DIR}/key.pem\n"
/* BASE plus text starting on line 5. */
#define WITH(extra) BASE extra

#define PIN_A "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define PIN_B "//////////////////////////////////////////8="

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/pbconf-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    chmod(g_dir, 0755); /* the unreadable-file test looks from an unprivileged uid */
    char path[128];
    for (size_t i = 0; i < sizeof g_files / sizeof g_files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", g_dir, g_files[i]);
        FILE *f = fopen(path, "w");
        if (!f) return -1;
        fputs("contents are not checked by the config loader\n", f);
        fclose(f);
        chmod(path, strcmp(g_files[i], "secret.pem") == 0 ? 0600 : 0644);
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char path[128];
    for (size_t i = 0; i < sizeof g_files / sizeof g_files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", g_dir, g_files[i]);
        unlink(path);
    }
    rmdir(g_dir);
    return 0;
}

static const char *dir_getenv(const char *name, void *ctx) {
    (void)ctx;
    return strcmp(name, "DIR") == 0 ? g_dir : NULL;
}

static pb_err_t load_props(pbd_config_t *cfg, const char *text, const char *override, char *err, size_t n) {
    props_t *p = props_new();
    assert_non_null(p);
    if (props_parse(p, text, strlen(text), "t.conf", dir_getenv, NULL, err, n) != 0 ||
        (override && props_set_override(p, override, "-o", err, n) != 0)) {
        props_free(p);
        fail_msg("test input: %s", err);
    }
    err[0] = '\0';
    pb_err_t rc = pbd_config_load_ex(cfg, p, err, n);
    props_free(p);
    return rc;
}

static void load_ok(pbd_config_t *cfg, const char *text) {
    char err[1024];
    pb_err_t rc = load_props(cfg, text, NULL, err, sizeof err);
    if (rc != PB_OK) fail_msg("expected success, got %s: %s", pb_err_name(rc), err);
}

static void assert_zeroed(const pbd_config_t *cfg) {
    static const pbd_config_t zero;
    assert_memory_equal(cfg, &zero, sizeof zero);
}

/* Loads text (plus an optional -o override), expects code and exactly the message `expect`. */
static void expect_fail_o(const char *text, const char *override, pb_err_t code, const char *expect) {
    pbd_config_t cfg;
    char err[1024];
    pb_err_t rc = load_props(&cfg, text, override, err, sizeof err);
    if (rc != code) fail_msg("expected %s, got %s: %s", pb_err_name(code), pb_err_name(rc), err);
    assert_string_equal(err, expect);
    assert_zeroed(&cfg);
}

static void expect_fail(const char *text, pb_err_t code, const char *expect) {
    expect_fail_o(text, NULL, code, expect);
}

/* Like expect_fail, for messages with a variable tail (librdkafka's or strerror text). */
static void expect_fail_prefix(const char *text, pb_err_t code, const char *prefix) {
    pbd_config_t cfg;
    char err[1024];
    pb_err_t rc = load_props(&cfg, text, NULL, err, sizeof err);
    if (rc != code) fail_msg("expected %s, got %s: %s", pb_err_name(code), pb_err_name(rc), err);
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("expected prefix \"%s\", got \"%s\"", prefix, err);
    assert_zeroed(&cfg);
}

static void test_config_minimal_defaults_applied(void **state) {
    (void)state;
    pbd_config_t cfg;
    load_ok(&cfg, BASE);
    assert_string_equal(cfg.socket_path, "/run/predbridge/predbridged.sock");
    assert_int_equal(cfg.socket_mode, 0660);
    assert_int_equal(cfg.n_allowed_uids, 1);
    assert_int_equal(cfg.allowed_uids[0], geteuid());
    assert_int_equal(cfg.n_allowed_gids, 0);
    assert_int_equal(cfg.max_connections, 4096);
    assert_string_equal(cfg.bootstrap_servers, "localhost:9093");
    assert_string_equal(cfg.topic, "predictions");
    assert_int_equal(cfg.max_message_bytes, 1048576);
    assert_int_equal(cfg.n_required_fields, 2);
    assert_string_equal(cfg.required_fields[0], "model_version");
    assert_string_equal(cfg.required_fields[1], "prediction");
    assert_null(cfg.key_field);
    assert_string_equal(cfg.compression, "lz4");
    assert_int_equal(cfg.linger_ms, 5);
    assert_int_equal(cfg.flush_timeout_ms, 30000);
    assert_int_equal(cfg.log_level, PBLOG_INFO);
    assert_int_equal(cfg.log_format, PBLOG_TEXT);
    assert_int_equal(cfg.tls.expiry_warn_days, 30);
    assert_int_equal(cfg.tls.pin_count, 0);
    assert_int_equal(cfg.n_kafka, 0);
    pbd_config_free(&cfg);
    assert_zeroed(&cfg);
    pbd_config_free(&cfg); /* twice is harmless */
}

static void test_config_load_wrapper_returns_minus_one_on_error(void **state) {
    (void)state;
    props_t *p = props_new();
    pbd_config_t cfg;
    char err[256];
    assert_int_equal(props_set(p, "bootstrap.servers", "h:1", "x", 1), 0);
    assert_int_equal(pbd_config_load(&cfg, p, err, sizeof err), -1);
    assert_string_equal(err, "missing required key 'tls.ca'");
    assert_zeroed(&cfg);
    char ca[128];
    snprintf(ca, sizeof ca, "%s/ca.pem", g_dir);
    assert_int_equal(props_set(p, "tls.ca", ca, "x", 2), 0);
    assert_int_equal(props_set(p, "tls.keystore", ca, "x", 3), 0);
    assert_int_equal(pbd_config_load(&cfg, p, err, sizeof err), 0);
    assert_string_equal(cfg.tls.keystore, ca);
    pbd_config_free(&cfg);
    props_free(p);
}

static void test_config_tls_strings_owned_by_config(void **state) {
    (void)state;
    pbd_config_t cfg;
    char ca[128], cert[128], key[128], pass[128], crl[128];
    snprintf(ca, sizeof ca, "%s/ca.pem", g_dir);
    snprintf(cert, sizeof cert, "%s/cert.pem", g_dir);
    snprintf(key, sizeof key, "%s/key.pem", g_dir);
    snprintf(pass, sizeof pass, "%s/pass.txt", g_dir);
    snprintf(crl, sizeof crl, "%s/crl.pem", g_dir);
    load_ok(&cfg, WITH("tls.key_passphrase_file = ${DIR}/pass.txt\ntls.crl = ${DIR}/crl.pem\n"));
    assert_string_equal(cfg.tls.ca, ca);
    assert_string_equal(cfg.tls.cert, cert);
    assert_string_equal(cfg.tls.key, key);
    assert_string_equal(cfg.tls.key_passphrase_file, pass);
    assert_string_equal(cfg.tls.crl, crl);
    assert_null(cfg.tls.keystore);
    assert_null(cfg.tls.keystore_passphrase_file);
    assert_ptr_equal(cfg.tls.ca, cfg.tls_strings[0]);
    assert_ptr_equal(cfg.tls.crl, cfg.tls_strings[6]);
    pbd_config_free(&cfg);
}

static void test_config_missing_required_key_fails(void **state) {
    (void)state;
    expect_fail("tls.ca = ${DIR}/ca.pem\ntls.cert = ${DIR}/cert.pem\ntls.key = ${DIR}/key.pem\n",
                PB_ERR_CONFIG, "missing required key 'bootstrap.servers'");
    expect_fail("bootstrap.servers = h:1\ntls.cert = ${DIR}/cert.pem\ntls.key = ${DIR}/key.pem\n",
                PB_ERR_CONFIG, "missing required key 'tls.ca'");
    expect_fail_o(BASE, "tls.ca=", PB_ERR_CONFIG, "-o: key 'tls.ca': must not be empty");
}

static void test_config_unknown_key_fails_with_suggestion(void **state) {
    (void)state;
    expect_fail(WITH("topik = x\n"), PB_ERR_CONFIG, "t.conf:5: unknown key 'topik' (did you mean 'topic'?)");
    expect_fail(WITH("socket.moed = 0600\n"), PB_ERR_CONFIG,
                "t.conf:5: unknown key 'socket.moed' (did you mean 'socket.mode'?)");
    expect_fail(WITH("tls.keystor = x\n"), PB_ERR_CONFIG,
                "t.conf:5: unknown key 'tls.keystor' (did you mean 'tls.keystore'?)");
    expect_fail(WITH("completely.different = 1\n"), PB_ERR_CONFIG,
                "t.conf:5: unknown key 'completely.different'");
    expect_fail(WITH("tls.verify = false\n"), PB_ERR_CONFIG, "t.conf:5: unknown key 'tls.verify'");
}

static void test_config_override_error_names_origin(void **state) {
    (void)state;
    expect_fail_o(BASE, "socket.max_connections=0", PB_ERR_CONFIG,
                  "-o: key 'socket.max_connections': 0 is out of range 1..65536");
    expect_fail_o(BASE, "topicc=x", PB_ERR_CONFIG, "-o: unknown key 'topicc' (did you mean 'topic'?)");
    pbd_config_t cfg;
    char err[512];
    assert_int_equal(load_props(&cfg, BASE, "topic=from-cli", err, sizeof err), PB_OK);
    assert_string_equal(cfg.topic, "from-cli");
    pbd_config_free(&cfg);
}

static void test_config_int_range_enforced(void **state) {
    (void)state;
    expect_fail(WITH("socket.max_connections = 0\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'socket.max_connections': 0 is out of range 1..65536");
    expect_fail(WITH("socket.max_connections = 65537\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'socket.max_connections': 65537 is out of range 1..65536");
    expect_fail(WITH("producer.linger_ms = -1\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'producer.linger_ms': -1 is out of range 0..10000");
    expect_fail(WITH("producer.linger_ms = 99999999999999999999999\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'producer.linger_ms': '99999999999999999999999' is not an integer");
    expect_fail(WITH("tls.expiry.warn_days = 3651\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'tls.expiry.warn_days': 3651 is out of range 0..3650");
    expect_fail(WITH("producer.flush_timeout_ms = 12abc\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'producer.flush_timeout_ms': '12abc' is not an integer");
    expect_fail(WITH("producer.flush_timeout_ms = +5\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'producer.flush_timeout_ms': '+5' is not an integer");
    expect_fail(WITH("producer.flush_timeout_ms =\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'producer.flush_timeout_ms': '' is not an integer");

    pbd_config_t cfg;
    load_ok(&cfg, WITH("socket.max_connections = 65536\nproducer.linger_ms = 0\ntls.expiry.warn_days = 3650\n"
                       "producer.flush_timeout_ms = 600000\n"));
    assert_int_equal(cfg.max_connections, 65536);
    assert_int_equal(cfg.linger_ms, 0);
    assert_int_equal(cfg.tls.expiry_warn_days, 3650);
    assert_int_equal(cfg.flush_timeout_ms, 600000);
    pbd_config_free(&cfg);
    load_ok(&cfg, WITH("socket.max_connections = 1\n"));
    assert_int_equal(cfg.max_connections, 1);
    pbd_config_free(&cfg);
}

static void test_config_size_suffixes_and_range(void **state) {
    (void)state;
    pbd_config_t cfg;
    load_ok(&cfg, WITH("message.max_bytes = 64k\n"));
    assert_int_equal(cfg.max_message_bytes, 65536);
    pbd_config_free(&cfg);
    load_ok(&cfg, WITH("message.max_bytes = 2M\n"));
    assert_int_equal(cfg.max_message_bytes, 2097152);
    pbd_config_free(&cfg);
    load_ok(&cfg, WITH("message.max_bytes = 16m\n"));
    assert_int_equal(cfg.max_message_bytes, 16777216);
    pbd_config_free(&cfg);
    load_ok(&cfg, WITH("message.max_bytes = 64\n"));
    assert_int_equal(cfg.max_message_bytes, 64);
    pbd_config_free(&cfg);
    expect_fail(WITH("message.max_bytes = 17m\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'message.max_bytes': 17m is out of range 64..16777216 bytes");
    expect_fail(WITH("message.max_bytes = 63\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'message.max_bytes': 63 is out of range 64..16777216 bytes");
    expect_fail(
        WITH("message.max_bytes = 10x\n"), PB_ERR_CONFIG,
        "t.conf:5: key 'message.max_bytes': '10x' is not a size (bytes, with an optional k or m suffix)");
    expect_fail(
        WITH("message.max_bytes = k\n"), PB_ERR_CONFIG,
        "t.conf:5: key 'message.max_bytes': 'k' is not a size (bytes, with an optional k or m suffix)");
    expect_fail(WITH("message.max_bytes = 18014398509481984m\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'message.max_bytes': 18014398509481984m is out of range 64..16777216 bytes");
}

static void test_config_mode_octal_parsed(void **state) {
    (void)state;
    pbd_config_t cfg;
    load_ok(&cfg, WITH("socket.mode = 0640\n"));
    assert_int_equal(cfg.socket_mode, 0640);
    pbd_config_free(&cfg);
    load_ok(&cfg, WITH("socket.mode = 600\n"));
    assert_int_equal(cfg.socket_mode, 0600);
    pbd_config_free(&cfg);
    expect_fail(WITH("socket.mode = 0680\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'socket.mode': '0680' is not an octal mode (like 0660)");
    expect_fail(WITH("socket.mode = 4660\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'socket.mode': mode 4660 is out of range 0000..0777");
    expect_fail(WITH("socket.mode = rw-rw----\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'socket.mode': 'rw-rw----' is not an octal mode (like 0660)");
}

static void test_config_mode_world_writable_refused_as_insecure(void **state) {
    (void)state;
    expect_fail(WITH("socket.mode = 0666\n"), PB_ERR_INSECURE,
                "t.conf:5: key 'socket.mode': socket.mode 0666 lets every local user write predictions "
                "(o+w is refused; admit clients with socket.allowed_uids/socket.allowed_gids)");
    expect_fail(WITH("socket.mode = 0602\n"), PB_ERR_INSECURE,
                "t.conf:5: key 'socket.mode': socket.mode 0602 lets every local user write predictions "
                "(o+w is refused; admit clients with socket.allowed_uids/socket.allowed_gids)");
    pbd_config_t cfg;
    load_ok(&cfg, WITH("socket.mode = 0664\n")); /* o+r alone cannot connect */
    pbd_config_free(&cfg);
}

static void test_config_enum_values_parsed(void **state) {
    (void)state;
    pbd_config_t cfg;
    load_ok(&cfg, WITH("producer.compression = ZSTD\nlog.level = debug\nlog.format = json\n"));
    assert_string_equal(cfg.compression, "zstd");
    assert_int_equal(cfg.log_level, PBLOG_DEBUG);
    assert_int_equal(cfg.log_format, PBLOG_JSON);
    pbd_config_free(&cfg);
    load_ok(&cfg, WITH("producer.compression = none\nlog.level = error\n"));
    assert_string_equal(cfg.compression, "none");
    assert_int_equal(cfg.log_level, PBLOG_ERROR);
    pbd_config_free(&cfg);
    expect_fail(
        WITH("producer.compression = brotli\n"), PB_ERR_CONFIG,
        "t.conf:5: key 'producer.compression': 'brotli' is not one of: none, gzip, snappy, lz4, zstd");
    expect_fail(WITH("log.level = verbose\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'log.level': 'verbose' is not one of: error, warn, info, debug");
    expect_fail(WITH("log.format = xml\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'log.format': 'xml' is not one of: text, json");
}

static void test_config_spool_keys(void **state) {
    (void)state;
    pbd_config_t cfg;
    load_ok(&cfg, WITH(""));
    assert_string_equal(cfg.spool_dir, "/var/lib/predbridge/spool");
    assert_string_equal(cfg.spool_fsync, "interval");
    assert_int_equal(cfg.spool_fsync_interval_ms, 20);
    assert_int_equal(cfg.spool_max_bytes, 1024u * 1024 * 1024);
    assert_int_equal(cfg.spool_segment_bytes, 16u * 1024 * 1024);
    pbd_config_free(&cfg);
    load_ok(&cfg, WITH("spool.dir = /srv/spool\nspool.fsync = always\nspool.max_bytes = 64k\n"));
    assert_string_equal(cfg.spool_dir, "/srv/spool");
    assert_string_equal(cfg.spool_fsync, "always");
    assert_int_equal(cfg.spool_max_bytes, 65536);
    pbd_config_free(&cfg);
    expect_fail(WITH("spool.fsync = sometimes\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'spool.fsync': 'sometimes' is not one of: always, interval, never");
    expect_fail_prefix(WITH("spool.max_bytes = 1k\n"), PB_ERR_CONFIG, "t.conf:5: key 'spool.max_bytes': ");
}

static void test_config_list_parsed(void **state) {
    (void)state;
    pbd_config_t cfg;
    load_ok(&cfg, WITH("message.required_fields = a, b ,c\n"));
    assert_int_equal(cfg.n_required_fields, 3);
    assert_string_equal(cfg.required_fields[0], "a");
    assert_string_equal(cfg.required_fields[1], "b");
    assert_string_equal(cfg.required_fields[2], "c");
    pbd_config_free(&cfg);
    load_ok(&cfg, WITH("message.required_fields =\n"));
    assert_int_equal(cfg.n_required_fields, 0);
    assert_null(cfg.required_fields);
    pbd_config_free(&cfg);
    expect_fail(WITH("message.required_fields = a,,b\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'message.required_fields': item 2 of the list is empty");
    expect_fail(WITH("message.required_fields = a,\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'message.required_fields': item 2 of the list is empty");
}

static void test_config_uids_numbers_and_names_resolved(void **state) {
    (void)state;
    struct passwd *nobody = getpwnam("nobody");
    assert_non_null(nobody);
    uid_t nobody_uid = nobody->pw_uid;
    pbd_config_t cfg;
    load_ok(&cfg, WITH("socket.allowed_uids = 0, root ,1234, nobody\n"));
    assert_int_equal(cfg.n_allowed_uids, 4);
    assert_int_equal(cfg.allowed_uids[0], 0);
    assert_int_equal(cfg.allowed_uids[1], 0);
    assert_int_equal(cfg.allowed_uids[2], 1234);
    assert_int_equal(cfg.allowed_uids[3], nobody_uid);
    pbd_config_free(&cfg);
    expect_fail(WITH("socket.allowed_uids = root, pb-no-such-user-zz\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'socket.allowed_uids': no user 'pb-no-such-user-zz'");
    expect_fail(WITH("socket.allowed_uids = 4294967295\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'socket.allowed_uids': user id 4294967295 is out of range");
}

static void test_config_gids_numbers_and_names_resolved(void **state) {
    (void)state;
    struct group *gr = getgrnam("nogroup");
    assert_non_null(gr);
    gid_t nogroup = gr->gr_gid;
    pbd_config_t cfg;
    load_ok(&cfg, WITH("socket.allowed_gids = root, 77, nogroup\n"));
    assert_int_equal(cfg.n_allowed_gids, 3);
    assert_int_equal(cfg.allowed_gids[0], 0);
    assert_int_equal(cfg.allowed_gids[1], 77);
    assert_int_equal(cfg.allowed_gids[2], nogroup);
    assert_int_equal(cfg.n_allowed_uids, 1); /* uids keep their default */
    pbd_config_free(&cfg);
    expect_fail(WITH("socket.allowed_gids = pb-no-such-group-zz\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'socket.allowed_gids': no group 'pb-no-such-group-zz'");
}

static void test_config_no_allowed_peers_fails(void **state) {
    (void)state;
    expect_fail(
        WITH("socket.allowed_uids =\n"), PB_ERR_CONFIG,
        "t.conf:5: key 'socket.allowed_uids': socket.allowed_uids and socket.allowed_gids are both empty: "
        "no client could connect");
    pbd_config_t cfg;
    load_ok(&cfg, WITH("socket.allowed_uids =\nsocket.allowed_gids = root\n"));
    assert_int_equal(cfg.n_allowed_uids, 0);
    assert_int_equal(cfg.n_allowed_gids, 1);
    pbd_config_free(&cfg);
}

static void test_config_missing_file_fails_naming_path_and_errno(void **state) {
    (void)state;
    char expect[512];
    snprintf(expect, sizeof expect,
             "t.conf:5: key 'tls.crl': cannot read '%s/nope.pem': No such file or directory", g_dir);
    expect_fail(WITH("tls.crl = ${DIR}/nope.pem\n"), PB_ERR_CONFIG, expect);
    snprintf(expect, sizeof expect, "t.conf:2: key 'tls.ca': '%s' is a directory, not a file", g_dir);
    expect_fail("bootstrap.servers = h:1\ntls.ca = ${DIR}\n", PB_ERR_CONFIG, expect);
}

/* Runs check(text, arg) in a child whose effective uid is nobody's (real uid too, unless real_uid is
 * given): as root, access(2) would find every file readable and every euid would be 0. Returns the
 * child's exit status. */
static int run_as_nobody(int (*check)(const char *text, const char *arg), const char *text, const char *arg,
                         uid_t real_uid) {
    struct passwd *nobody = getpwnam("nobody");
    assert_non_null(nobody);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uid_t ruid = real_uid ? real_uid : nobody->pw_uid;
        if (setgid(nobody->pw_gid) != 0 || setresuid(ruid, nobody->pw_uid, nobody->pw_uid) != 0) _exit(100);
        _exit(check(text, arg));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* Child side: loads text; 0 if it fails with exactly the message expect. */
static int child_expect_error(const char *text, const char *expect) {
    pbd_config_t cfg;
    char err[1024];
    props_t *p = props_new();
    if (props_parse(p, text, strlen(text), "t.conf", dir_getenv, NULL, err, sizeof err) != 0) return 3;
    pb_err_t rc = pbd_config_load_ex(&cfg, p, err, sizeof err);
    props_free(p);
    if (rc != PB_ERR_CONFIG) return 4;
    if (strcmp(err, expect) != 0) {
        fprintf(stderr, "got: %s\n", err);
        return 5;
    }
    return 0;
}

/* Child side: loads text; 0 if socket.allowed_uids defaulted to this process's euid alone. */
static int child_expect_own_euid(const char *text, const char *unused) {
    (void)unused;
    pbd_config_t cfg;
    char err[1024];
    props_t *p = props_new();
    if (props_parse(p, text, strlen(text), "t.conf", dir_getenv, NULL, err, sizeof err) != 0) return 3;
    int rc = pbd_config_load(&cfg, p, err, sizeof err);
    props_free(p);
    if (rc != 0) return 4;
    rc = cfg.n_allowed_uids == 1 && cfg.allowed_uids[0] == geteuid() && geteuid() != getuid() ? 0 : 5;
    pbd_config_free(&cfg);
    return rc;
}

static void test_config_unreadable_file_fails(void **state) {
    (void)state;
    char text[512], expect[512];
    snprintf(text, sizeof text, "%s", WITH("tls.key_passphrase_file = ${DIR}/secret.pem\n"));
    snprintf(expect, sizeof expect,
             "t.conf:5: key 'tls.key_passphrase_file': cannot read '%s/secret.pem': Permission denied",
             g_dir);
    if (geteuid() != 0)
        assert_int_equal(child_expect_error(text, expect), 0);
    else
        assert_int_equal(run_as_nobody(child_expect_error, text, expect, 0), 0);
}

static void test_config_allowed_uids_default_is_effective_uid(void **state) {
    (void)state;
    if (geteuid() != 0)
        skip(); /* needs root to give the process distinct real and effective uids */
    else
        assert_int_equal(run_as_nobody(child_expect_own_euid, BASE, NULL, 12345), 0);
}

static void test_config_keystore_replaces_pem_pair(void **state) {
    (void)state;
    pbd_config_t cfg;
    load_ok(&cfg, "bootstrap.servers = h:1\ntls.ca = ${DIR}/ca.pem\ntls.keystore = ${DIR}/ks.p12\n"
                  "tls.keystore_passphrase_file = ${DIR}/pass.txt\n");
    assert_non_null(cfg.tls.keystore);
    assert_non_null(cfg.tls.keystore_passphrase_file);
    assert_null(cfg.tls.cert);
    assert_null(cfg.tls.key);
    pbd_config_free(&cfg);
}

static void test_config_tls_identity_rules_enforced(void **state) {
    (void)state;
    expect_fail(
        WITH("tls.keystore = ${DIR}/ks.p12\n"), PB_ERR_CONFIG,
        "t.conf:5: key 'tls.keystore': cannot be combined with tls.cert/tls.key: give a keystore or a PEM "
        "pair, not both");
    expect_fail(
        "bootstrap.servers = h:1\ntls.ca = ${DIR}/ca.pem\n", PB_ERR_CONFIG,
        "missing required key 'tls.cert' and 'tls.key' (or 'tls.keystore'): predbridge always presents a "
        "client certificate");
    expect_fail("bootstrap.servers = h:1\ntls.ca = ${DIR}/ca.pem\ntls.cert = ${DIR}/cert.pem\n",
                PB_ERR_CONFIG, "t.conf:3: key 'tls.cert': needs tls.key");
    expect_fail("bootstrap.servers = h:1\ntls.ca = ${DIR}/ca.pem\ntls.key = ${DIR}/key.pem\n", PB_ERR_CONFIG,
                "t.conf:3: key 'tls.key': needs tls.cert");
    expect_fail("bootstrap.servers = h:1\ntls.ca = ${DIR}/ca.pem\ntls.keystore = ${DIR}/ks.p12\n"
                "tls.key_passphrase_file = ${DIR}/pass.txt\n",
                PB_ERR_CONFIG, "t.conf:4: key 'tls.key_passphrase_file': is only used with tls.key");
    expect_fail(WITH("tls.keystore_passphrase_file = ${DIR}/pass.txt\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'tls.keystore_passphrase_file': is only used with tls.keystore");
}

static void test_config_pins_parsed(void **state) {
    (void)state;
    pbd_config_t cfg;
    load_ok(&cfg, WITH("tls.pins = sha256//" PIN_A ", " PIN_B "\n"));
    assert_int_equal(cfg.tls.pin_count, 2);
    for (int i = 0; i < PBTLS_PIN_LEN; i++) {
        assert_int_equal(cfg.tls.pins[0][i], i);
        assert_int_equal(cfg.tls.pins[1][i], 0xff);
    }
    pbd_config_free(&cfg);
    expect_fail_prefix(WITH("tls.pins = " PIN_A ", sha256//not-base64\n"), PB_ERR_CONFIG,
                       "t.conf:5: key 'tls.pins': pin 2: ");
    char text[2048] = WITH("tls.pins = ");
    for (int i = 0; i <= PBTLS_MAX_PINS; i++)
        strcat(strcat(text, i ? "," : ""), PIN_A);
    strcat(text, "\n");
    expect_fail(text, PB_ERR_CONFIG, "t.conf:5: key 'tls.pins': 17 items, at most 16 allowed");
}

static void test_config_bootstrap_servers_validated(void **state) {
    (void)state;
    pbd_config_t cfg;
    load_ok(&cfg, "bootstrap.servers = a.example:9093, [::1]:9094,10.0.0.1:1\ntls.ca = ${DIR}/ca.pem\n"
                  "tls.cert = ${DIR}/cert.pem\ntls.key = ${DIR}/key.pem\n");
    assert_string_equal(cfg.bootstrap_servers, "a.example:9093, [::1]:9094,10.0.0.1:1");
    pbd_config_free(&cfg);
    expect_fail_o(BASE, "bootstrap.servers=plaintext://h:9092", PB_ERR_INSECURE,
                  "-o: key 'bootstrap.servers': 'plaintext://h:9092': give host:port without a scheme; the "
                  "connection is always TLS");
    expect_fail_o(BASE, "bootstrap.servers=h", PB_ERR_CONFIG,
                  "-o: key 'bootstrap.servers': 'h' has no port (expected host:port)");
    expect_fail_o(BASE, "bootstrap.servers=h:0", PB_ERR_CONFIG,
                  "-o: key 'bootstrap.servers': 'h:0': port must be 1..65535");
    expect_fail_o(BASE, "bootstrap.servers=h:65536", PB_ERR_CONFIG,
                  "-o: key 'bootstrap.servers': 'h:65536': port must be 1..65535");
    expect_fail_o(
        BASE, "bootstrap.servers=::1:9093", PB_ERR_CONFIG,
        "-o: key 'bootstrap.servers': '::1:9093': invalid host (a name, an IPv4 address or [IPv6]:port)");
    expect_fail_o(BASE, "bootstrap.servers=h:1,,h:2", PB_ERR_CONFIG,
                  "-o: key 'bootstrap.servers': item 2 of the list is empty");
    expect_fail_o(BASE, "bootstrap.servers=", PB_ERR_CONFIG,
                  "-o: key 'bootstrap.servers': must not be empty");
}

static void test_config_topic_and_socket_path_validated(void **state) {
    (void)state;
    expect_fail(WITH("topic = bad topic\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'topic': 'bad topic' is not a Kafka topic name (1..249 of A-Z a-z 0-9 . _ -)");
    expect_fail(WITH("topic = ..\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'topic': '..' is not a Kafka topic name (1..249 of A-Z a-z 0-9 . _ -)");
    expect_fail(WITH("topic =\n"), PB_ERR_CONFIG, "t.conf:5: key 'topic': must not be empty");
    char text[1024], path[200];
    memset(path, 'p', 108);
    path[0] = '/';
    path[108] = '\0';
    snprintf(text, sizeof text, WITH("socket.path = %s\n"), path);
    expect_fail(text, PB_ERR_CONFIG,
                "t.conf:5: key 'socket.path': a UNIX socket path holds at most 107 bytes, this one has 108");
    path[107] = '\0';
    snprintf(text, sizeof text, WITH("socket.path = %s\n"), path);
    pbd_config_t cfg;
    load_ok(&cfg, text);
    assert_string_equal(cfg.socket_path, path);
    pbd_config_free(&cfg);
}

static void test_config_empty_optional_value_leaves_unset(void **state) {
    (void)state;
    pbd_config_t cfg;
    load_ok(&cfg, WITH("message.key_field =\ntls.crl =\ntls.pins =\n"));
    assert_null(cfg.key_field);
    assert_null(cfg.tls.crl);
    assert_int_equal(cfg.tls.pin_count, 0);
    pbd_config_free(&cfg);
    load_ok(&cfg, WITH("message.key_field = request_id\n"));
    assert_string_equal(cfg.key_field, "request_id");
    pbd_config_free(&cfg);
}

static void test_config_kafka_allowed_properties_kept_in_order(void **state) {
    (void)state;
    pbd_config_t cfg;
    load_ok(&cfg, WITH("kafka.message.timeout.ms = 120000\ntopic = t1\nkafka.client.id = pb-1\n"));
    assert_int_equal(cfg.n_kafka, 2);
    assert_string_equal(cfg.kafka[0].property, "message.timeout.ms");
    assert_string_equal(cfg.kafka[0].value, "120000");
    assert_string_equal(cfg.kafka[0].file, "t.conf");
    assert_int_equal(cfg.kafka[0].line, 5);
    assert_string_equal(cfg.kafka[1].property, "client.id");
    assert_string_equal(cfg.kafka[1].value, "pb-1");
    assert_int_equal(cfg.kafka[1].line, 7);
    pbd_config_free(&cfg);
}

static void test_config_kafka_denied_property_refused_as_insecure(void **state) {
    (void)state;
    expect_fail(WITH("kafka.security.protocol = plaintext\n"), PB_ERR_INSECURE,
                "t.conf:5: key 'kafka.security.protocol': refused (PB_ERR_INSECURE): TLS is always on: "
                "security.protocol is always ssl");
    expect_fail(
        WITH("kafka.Enable.SSL.Certificate.Verification = false\n"), PB_ERR_INSECURE,
        "t.conf:5: key 'kafka.Enable.SSL.Certificate.Verification': refused (PB_ERR_INSECURE): broker "
        "certificate verification cannot be turned off");
    expect_fail_o(BASE, "kafka.ssl.endpoint.identification.algorithm=none", PB_ERR_INSECURE,
                  "-o: key 'kafka.ssl.endpoint.identification.algorithm': refused (PB_ERR_INSECURE): broker "
                  "host-name verification cannot be turned off");
    expect_fail(
        WITH("kafka.acks = 1\n"), PB_ERR_INSECURE,
        "t.conf:5: key 'kafka.acks': refused (PB_ERR_INSECURE): predbridged always uses acks=all with "
        "idempotence");
}

static void test_config_kafka_unknown_property_rejected_by_librdkafka(void **state) {
    (void)state;
    expect_fail_prefix(WITH("kafka.no.such.property = 1\n"), PB_ERR_CONFIG,
                       "t.conf:5: key 'kafka.no.such.property': librdkafka: No such configuration property");
    expect_fail_prefix(WITH("kafka.message.timeout.ms = soon\n"), PB_ERR_CONFIG,
                       "t.conf:5: key 'kafka.message.timeout.ms': librdkafka: ");
    expect_fail(WITH("kafka. = 1\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'kafka.': no librdkafka property after 'kafka.'");
}

static void test_config_kafka_property_with_own_key_refused(void **state) {
    (void)state;
    expect_fail(WITH("kafka.linger.ms = 10\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'kafka.linger.ms': use the producer.linger_ms key");
    expect_fail(WITH("kafka.compression.type = gzip\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'kafka.compression.type': use the producer.compression key");
    expect_fail(WITH("kafka.Compression.Codec = gzip\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'kafka.Compression.Codec': use the producer.compression key");
    expect_fail(WITH("kafka.queue.buffering.max.ms = 10\n"), PB_ERR_CONFIG,
                "t.conf:5: key 'kafka.queue.buffering.max.ms': use the producer.linger_ms key");
}

static void test_kafka_policy_denylist_matches_case_insensitively(void **state) {
    (void)state;
    static const struct {
        const char *property, *reason_part;
    } denied[] = {
        {"security.protocol", "TLS is always on"},
        {"SECURITY.PROTOCOL", "TLS is always on"},
        {"ssl.ca.location", "tls.* keys"},
        {"SSL.Key.Password", "tls.* keys"},
        {"ssl_key", "tls.* keys"},
        {"ssl.endpoint.identification.algorithm", "host-name verification"},
        {"enable.ssl.certificate.verification", "verification cannot be turned off"},
        {"sasl.mechanisms", "not SASL"},
        {"SASL.kerberos.kinit.cmd", "not SASL"},
        {"enable.sasl.oauthbearer.unsecure.jwt", "unsigned tokens"},
        {"bootstrap.servers", "use the bootstrap.servers key"},
        {"Metadata.Broker.List", "use the bootstrap.servers key"},
        {"enable.idempotence", "acks=all with idempotence"},
        {"acks", "acks=all with idempotence"},
        {"request.required.acks", "acks=all with idempotence"},
        {"plugin.library.paths", "loads code into the process"},
        {"delivery.report.only.error", "delivery report"},
        {"transactional.id", "not transactional"},
        {"https.ca.location", "tls.* keys"},
        {"internal.termination.signal", "signal handling"},
        {"test.mock.num.brokers", "mock cluster"},
        {"TEST.mock.broker.rtt", "mock cluster"},
    };
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        const char *r = pbtls_denied_kafka_property(denied[i].property);
        if (!r || !strstr(r, denied[i].reason_part))
            fail_msg("%s: expected a reason with \"%s\", got \"%s\"", denied[i].property,
                     denied[i].reason_part, r ? r : "(allowed)");
    }
    static const char *const allowed[] = {"client.id",
                                          "message.timeout.ms",
                                          "builtin.features",
                                          "client.dns.lookup",
                                          "socket.keepalive.enable",
                                          "sslx",
                                          "debug",
                                          "acks.extra"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (pbtls_denied_kafka_property(allowed[i])) fail_msg("%s should be allowed", allowed[i]);
    assert_null(pbtls_denied_kafka_property(NULL));
}

static char *reference_text(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    pbd_config_write_reference(f);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void test_config_reference_lists_every_key_with_default(void **state) {
    (void)state;
    char *ref = reference_text();
    assert_non_null(strstr(ref, "| key | default | meaning |\n|---|---|---|\n"));
    for (size_t i = 0; i < N_KEYS; i++) {
        char row[128];
        snprintf(row, sizeof row, "\n| `%s` | ", g_keys[i]);
        if (!strstr(ref, row)) fail_msg("reference lacks key %s", g_keys[i]);
    }
    size_t rows = 0;
    for (const char *s = ref; (s = strstr(s, "\n| `")); s++)
        rows++;
    assert_int_equal(rows, N_KEYS + 1); /* plus kafka.<property>, nothing unexpected */
    assert_non_null(strstr(ref, "| `kafka.<property>` |"));
    assert_non_null(strstr(ref, "| `socket.mode` | `0660` |"));
    assert_non_null(strstr(ref, "| `bootstrap.servers` | (required) |"));
    assert_non_null(strstr(ref, "| `tls.ca` | (required) |"));
    assert_non_null(strstr(ref, "| `producer.compression` | `lz4` |"));
    assert_non_null(strstr(ref, "| `socket.allowed_uids` | predbridged's effective uid |"));
    assert_non_null(strstr(ref, "| `message.key_field` | (unset) |"));
    assert_non_null(strstr(ref, "Integer, 1..65536."));
    assert_non_null(strstr(ref, "One of: `none`, `gzip`, `snappy`, `lz4`, `zstd`."));
    /* every line is a complete table row */
    for (const char *s = ref; *s;) {
        const char *nl = strchr(s, '\n');
        assert_non_null(nl);
        assert_true(s[0] == '|' && nl[-1] == '|');
        s = nl + 1;
    }
    free(ref);
}

/* The shipped example must load, set every key (the computed default of socket.allowed_uids as a
 * comment), and give the same values as the built-in defaults. */
static void test_config_example_file_loads_with_defaults(void **state) {
    (void)state;
    const char *src = getenv("PB_SOURCE_DIR");
    if (!src) skip();
    char path[512], err[1024];
    snprintf(path, sizeof path, "%s/config/predbridged.conf", src);
    assert_int_equal(setenv("PB_CERT_DIR", g_dir, 1), 0);
    unsetenv("PB_BOOTSTRAP");
    unsetenv("PB_TOPIC");
    unsetenv("PB_SOCKET");
    props_t *p = props_new();
    if (props_load_file(p, path, err, sizeof err) != 0) fail_msg("%s", err);
    for (size_t i = 0; i < N_KEYS; i++)
        if (!props_find(p, g_keys[i]) && strcmp(g_keys[i], "socket.allowed_uids") != 0)
            fail_msg("example config does not set %s", g_keys[i]);
    pbd_config_t ex, def;
    if (pbd_config_load(&ex, p, err, sizeof err) != 0) fail_msg("example: %s", err);
    props_free(p);
    load_ok(&def, BASE);
    assert_string_equal(ex.socket_path, def.socket_path);
    assert_int_equal(ex.socket_mode, def.socket_mode);
    assert_int_equal(ex.n_allowed_uids, def.n_allowed_uids);
    assert_int_equal(ex.n_allowed_gids, def.n_allowed_gids);
    assert_int_equal(ex.max_connections, def.max_connections);
    assert_string_equal(ex.bootstrap_servers, def.bootstrap_servers);
    assert_string_equal(ex.topic, def.topic);
    assert_int_equal(ex.max_message_bytes, def.max_message_bytes);
    assert_int_equal(ex.n_required_fields, def.n_required_fields);
    for (size_t i = 0; i < def.n_required_fields; i++)
        assert_string_equal(ex.required_fields[i], def.required_fields[i]);
    assert_null(ex.key_field);
    assert_string_equal(ex.compression, def.compression);
    assert_int_equal(ex.linger_ms, def.linger_ms);
    assert_int_equal(ex.flush_timeout_ms, def.flush_timeout_ms);
    assert_int_equal(ex.log_level, def.log_level);
    assert_int_equal(ex.log_format, def.log_format);
    assert_int_equal(ex.tls.expiry_warn_days, def.tls.expiry_warn_days);
    assert_int_equal(ex.tls_watch, def.tls_watch);
    assert_int_equal(ex.tls_watch_debounce_ms, def.tls_watch_debounce_ms);
    assert_int_equal(ex.tls.pin_count, 0);
    assert_null(ex.tls.keystore);
    assert_null(ex.tls.crl);
    assert_non_null(strstr(ex.tls.ca, "/ca.crt"));
    assert_non_null(strstr(ex.tls.cert, "/predbridged.crt"));
    assert_non_null(strstr(ex.tls.key, "/predbridged.key"));
    pbd_config_free(&ex);
    pbd_config_free(&def);
    unsetenv("PB_CERT_DIR");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_minimal_defaults_applied),
        cmocka_unit_test(test_config_load_wrapper_returns_minus_one_on_error),
        cmocka_unit_test(test_config_tls_strings_owned_by_config),
        cmocka_unit_test(test_config_missing_required_key_fails),
        cmocka_unit_test(test_config_unknown_key_fails_with_suggestion),
        cmocka_unit_test(test_config_override_error_names_origin),
        cmocka_unit_test(test_config_int_range_enforced),
        cmocka_unit_test(test_config_size_suffixes_and_range),
        cmocka_unit_test(test_config_mode_octal_parsed),
        cmocka_unit_test(test_config_mode_world_writable_refused_as_insecure),
        cmocka_unit_test(test_config_enum_values_parsed),
        cmocka_unit_test(test_config_spool_keys),
        cmocka_unit_test(test_config_list_parsed),
        cmocka_unit_test(test_config_uids_numbers_and_names_resolved),
        cmocka_unit_test(test_config_gids_numbers_and_names_resolved),
        cmocka_unit_test(test_config_no_allowed_peers_fails),
        cmocka_unit_test(test_config_missing_file_fails_naming_path_and_errno),
        cmocka_unit_test(test_config_unreadable_file_fails),
        cmocka_unit_test(test_config_allowed_uids_default_is_effective_uid),
        cmocka_unit_test(test_config_keystore_replaces_pem_pair),
        cmocka_unit_test(test_config_tls_identity_rules_enforced),
        cmocka_unit_test(test_config_pins_parsed),
        cmocka_unit_test(test_config_bootstrap_servers_validated),
        cmocka_unit_test(test_config_topic_and_socket_path_validated),
        cmocka_unit_test(test_config_empty_optional_value_leaves_unset),
        cmocka_unit_test(test_config_kafka_allowed_properties_kept_in_order),
        cmocka_unit_test(test_config_kafka_denied_property_refused_as_insecure),
        cmocka_unit_test(test_config_kafka_unknown_property_rejected_by_librdkafka),
        cmocka_unit_test(test_config_kafka_property_with_own_key_refused),
        cmocka_unit_test(test_kafka_policy_denylist_matches_case_insensitively),
        cmocka_unit_test(test_config_reference_lists_every_key_with_default),
        cmocka_unit_test(test_config_example_file_loads_with_defaults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
