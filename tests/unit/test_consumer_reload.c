/* test_consumer_reload.c: pb_consumer_reload_tls and tls.watch without a broker (the consumer points at
 * a closed port): what material is refused and how it is reported, when a reload is not allowed, and
 * that the watch reloads by itself. The real broker's side is tests/integration/it_consumer_reload.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/config.h"

#include <predbridge/predbridge.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[64];       /* per-run directory: pki/ from gen-certs.sh, the consumer's files */
static char g_log[PATH_MAX]; /* every log line and errstr of the run, checked for secrets */

static const char *in_dir(const char *name) {
    static char bufs[8][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", g_dir, name);
    return b;
}

/* Replaces dst by a copy of src the way certificate managers do: written beside it, renamed over it. */
static void replace_file(const char *src, const char *dst) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    FILE *in = fopen(src, "rb"), *out = fopen(tmp, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(rename(tmp, dst), 0);
}

/* Puts pki/<name>.crt and .key in place of the consumer's tls.crt and tls.key, key first. */
static void install(const char *name) {
    char crt[128], key[128];
    snprintf(crt, sizeof crt, "pki/%s.crt", name);
    snprintf(key, sizeof key, "pki/%s.key", name);
    replace_file(in_dir(key), in_dir("tls.key"));
    replace_file(in_dir(crt), in_dir("tls.crt"));
}

static int group_setup(void **state) {
    (void)state;
    const char *src = getenv("PB_SOURCE_DIR");
    char cmd[PATH_MAX * 2];
    snprintf(g_dir, sizeof g_dir, "/tmp/pbreload-XXXXXX");
    if (!src || !mkdtemp(g_dir)) return -1;
    snprintf(g_log, sizeof g_log, "%s/log.txt", g_dir);
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/gen-certs.sh' '%s/pki' >'%s/gen.log' 2>&1", src, g_dir,
             g_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "gen-certs.sh failed, see %s/gen.log\n", g_dir);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- a consumer that never reaches a broker ---- */

typedef struct seen {
    pb_consumer_t *c;
    int certificate_errors;
    pb_err_t last_code;
    char last_cause[2048];
    int reload_from_callback; /* on_error tries pb_consumer_reload_tls once and keeps its result here */
    pb_err_t reload_rc;
} seen_t;

static void append_log(const char *text) {
    FILE *f = fopen(g_log, "a");
    assert_non_null(f);
    fprintf(f, "%s\n", text);
    fclose(f);
}

static void on_log(pb_log_level_t level, const char *event, const char *line, void *opaque) {
    (void)level, (void)event, (void)opaque;
    append_log(line);
}

static pb_action_t on_prediction(const pb_message_t *m, void *opaque) {
    (void)m, (void)opaque;
    return PB_COMMIT;
}

static void on_error(pb_err_t code, const char *cause, const pb_message_t *m, void *opaque) {
    (void)m;
    seen_t *s = opaque;
    s->certificate_errors += code == PB_ERR_CERTIFICATE;
    s->last_code = code;
    snprintf(s->last_cause, sizeof s->last_cause, "%s", cause);
    append_log(cause);
    if (s->reload_from_callback) {
        s->reload_from_callback = 0;
        char err[256];
        s->reload_rc = pb_consumer_reload_tls(s->c, err, sizeof err);
    }
}

/* Set by a test for its next consumer() only: two more settings. */
static const char *g_more[2][2];

static pb_consumer_t *consumer(seen_t *s, const char *extra_key, const char *extra_value) {
    char err[1024];
    const char *kv[][2] = {
        {"bootstrap.servers", "127.0.0.1:1"},
        {"tls.ca", in_dir("pki/ca.crt")},
        {"tls.cert", in_dir("tls.crt")},
        {"tls.key", in_dir("tls.key")},
        {"group.id", "unit-reload"},
        {"log.level", "debug"},
        {"tls.watch_debounce_ms", "50"},
        {extra_key, extra_value},
    };
    install("predbridge-consumer");
    pb_config_t *conf = pb_config_new();
    assert_non_null(conf);
    for (size_t i = 0; i < sizeof kv / sizeof kv[0] && kv[i][0]; i++)
        if (pb_config_set(conf, kv[i][0], kv[i][1], err, sizeof err) != PB_OK) fail_msg("%s", err);
    for (size_t i = 0; i < 2 && g_more[i][0]; i++)
        if (pb_config_set(conf, g_more[i][0], g_more[i][1], err, sizeof err) != PB_OK) fail_msg("%s", err);
    memset(g_more, 0, sizeof g_more);
    assert_int_equal(pb_config_set_log_fn(conf, on_log, NULL), PB_OK);
    memset(s, 0, sizeof *s);
    pb_consumer_t *c = pb_consumer_new(conf, on_prediction, on_error, s, err, sizeof err);
    pb_config_destroy(conf);
    if (!c) fail_msg("pb_consumer_new: %s", err);
    s->c = c;
    return c;
}

static uint64_t stat_of(pb_consumer_t *c, pb_stat_t which) {
    pb_stats_t *st = pb_consumer_stats(c);
    uint64_t v = pb_stats_get(st, which);
    pb_stats_destroy(st);
    return v;
}

static void finish(pb_consumer_t *c) {
    char err[512];
    pb_consumer_close(c, err, sizeof err); /* no broker: the commit has nothing to say */
    pb_consumer_destroy(c);
}

/* ---- configuration ---- */

/* Loads the minimal configuration of scope (the consumer's with a group.id) plus the watch keys that
 * are not NULL, and returns (tls.watch, tls.watch_debounce_ms). */
static void load_watch_settings(pbconf_scope_t scope, const char *watch, const char *debounce, int *watch_out,
                                int *debounce_out) {
    int consumer = scope == PBCONF_SCOPE_CONSUMER;
    const char *kv[][2] = {
        {"bootstrap.servers", "localhost:9093"},
        {"tls.ca", in_dir("pki/ca.crt")},
        {"tls.cert", in_dir(consumer ? "pki/predbridge-consumer.crt" : "pki/predbridged.crt")},
        {"tls.key", in_dir(consumer ? "pki/predbridge-consumer.key" : "pki/predbridged.key")},
        {"group.id", consumer ? "g" : NULL},
        {"tls.watch", watch},
        {"tls.watch_debounce_ms", debounce},
    };
    props_t *p = props_new();
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (kv[i][1]) assert_int_equal(props_set(p, kv[i][0], kv[i][1], "t", (int)i + 1), 0);
    pbd_config_t cfg;
    char err[512];
    if (pbconf_load_scoped(&cfg, p, scope, err, sizeof err) != PB_OK) fail_msg("%s", err);
    *watch_out = cfg.tls_watch;
    *debounce_out = cfg.tls_watch_debounce_ms;
    pbd_config_free(&cfg);
    props_free(p);
}

static void test_reload_config_watch_keys_in_consumer_scope_watch_off_by_default(void **state) {
    (void)state;
    char err[512];
    int watch, debounce;
    load_watch_settings(PBCONF_SCOPE_CONSUMER, NULL, NULL, &watch, &debounce);
    assert_int_equal(watch, 0); /* a reload leaves the group: only when asked for */
    assert_int_equal(debounce, 500);
    load_watch_settings(PBCONF_SCOPE_CONSUMER, "TRUE", "0", &watch, &debounce);
    assert_int_equal(watch, 1);
    assert_int_equal(debounce, 0);
    /* predbridged's default stays on. */
    load_watch_settings(PBCONF_SCOPE_DAEMON, NULL, NULL, &watch, &debounce);
    assert_int_equal(watch, 1);
    assert_int_equal(debounce, 500);

    pb_config_t *c = pb_config_new();
    assert_int_equal(pb_config_set(c, "tls.watch", "false", err, sizeof err), PB_OK);
    assert_int_equal(pb_config_set(c, "tls.watch", "sometimes", err, sizeof err), PB_ERR_CONFIG);
    assert_non_null(strstr(err, "key 'tls.watch'"));
    assert_non_null(strstr(err, "true, false"));
    assert_int_equal(pb_config_set(c, "tls.watch_debounce_ms", "60001", err, sizeof err), PB_ERR_CONFIG);
    assert_non_null(strstr(err, "key 'tls.watch_debounce_ms'"));
    pb_config_destroy(c);
}

static void test_reload_example_consumer_conf_loads_with_its_watch_and_log_keys(void **state) {
    (void)state;
    char path[PATH_MAX], err[1024];
    snprintf(path, sizeof path, "%s/config/consumer.conf", getenv("PB_SOURCE_DIR"));
    assert_int_equal(setenv("PB_CERT_DIR", in_dir("pki"), 1), 0);
    pb_config_t *c = pb_config_new();
    pb_err_t rc = pb_config_load_file(c, path, err, sizeof err);
    unsetenv("PB_CERT_DIR");
    pb_config_destroy(c);
    if (rc != PB_OK) fail_msg("%s", err);
}

/* ---- explicit reloads ---- */

static void test_reload_null_consumer_is_invalid_arg(void **state) {
    (void)state;
    char err[256];
    assert_int_equal(pb_consumer_reload_tls(NULL, err, sizeof err), PB_ERR_INVALID_ARG);
    assert_true(err[0] != '\0');
    assert_int_equal(pb_consumer_reload_tls(NULL, NULL, 0), PB_ERR_INVALID_ARG);
}

static void test_reload_bad_material_is_certificate_error_naming_file_and_counted(void **state) {
    (void)state;
    static const struct {
        const char *name, *key, *cause;
    } bad[] = {
        {"mismatch-client", "tls.key", "does not match"},
        {"expired-client", "tls.cert", "expired"},
        {"untrusted-client", "tls.cert", "tls.ca"},
        {"notyet-client", "tls.cert", "not valid before"},
    };
    seen_t s;
    pb_consumer_t *c = consumer(&s, NULL, NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[1024] = "";
        install(bad[i].name);
        assert_int_equal(pb_consumer_reload_tls(c, err, sizeof err), PB_ERR_CERTIFICATE);
        append_log(err);
        const char *file = in_dir(!strcmp(bad[i].key, "tls.key") ? "tls.key" : "tls.crt");
        if (!strstr(err, bad[i].key) || !strstr(err, file) || !strstr(err, bad[i].cause))
            fail_msg("%s: errstr does not name %s '%s' and '%s': %s", bad[i].name, bad[i].key, file,
                     bad[i].cause, err);
        assert_int_equal(stat_of(c, PB_STAT_TLS_RELOAD_FAILURES), i + 1);
        assert_int_equal(stat_of(c, PB_STAT_TLS_RELOADS), 0);
        /* Still the same consumer, still polling. */
        assert_int_equal(pb_consumer_poll(c, 0), PB_OK);
    }
    /* A file gone (the moment between a delete and a create): refused the same way. */
    assert_int_equal(rename(in_dir("tls.crt"), in_dir("tls.crt.away")), 0);
    char err[1024];
    assert_int_equal(pb_consumer_reload_tls(c, err, sizeof err), PB_ERR_CERTIFICATE);
    assert_non_null(strstr(err, in_dir("tls.crt")));
    assert_int_equal(rename(in_dir("tls.crt.away"), in_dir("tls.crt")), 0);
    /* on_error does not speak for a call that returned the error: the caller has errstr. */
    assert_int_equal(s.certificate_errors, 0);
    finish(c);
}

static void test_reload_good_material_replaces_the_connection_and_is_counted(void **state) {
    (void)state;
    char err[1024];
    seen_t s;
    pb_consumer_t *c = consumer(&s, NULL, NULL);
    assert_int_equal(pb_consumer_poll(c, 100), PB_OK);
    install("predbridge-consumer"); /* a new file with the same material: a rotation */
    assert_int_equal(pb_consumer_reload_tls(c, err, sizeof err), PB_OK);
    assert_int_equal(pb_consumer_reload_tls(c, NULL, 0), PB_OK); /* errstr is optional */
    assert_int_equal(stat_of(c, PB_STAT_TLS_RELOADS), 2);
    assert_int_equal(stat_of(c, PB_STAT_TLS_RELOAD_FAILURES), 0);
    assert_int_equal(pb_consumer_poll(c, 100), PB_OK); /* the new connection serves poll */
    finish(c);
}

static void test_reload_inside_a_callback_or_after_close_is_state_error(void **state) {
    (void)state;
    char err[256];
    seen_t s;
    pb_consumer_t *c = consumer(&s, NULL, NULL);
    /* Nothing listens at 127.0.0.1:1: on_error hears of it inside poll, and tries to reload there. */
    s.reload_from_callback = 1;
    s.reload_rc = PB_OK;
    for (int i = 0; i < 100 && s.reload_from_callback; i++) assert_int_equal(pb_consumer_poll(c, 100), PB_OK);
    assert_int_equal(s.reload_from_callback, 0);
    assert_int_equal(s.reload_rc, PB_ERR_STATE);
    assert_int_equal(stat_of(c, PB_STAT_TLS_RELOADS) + stat_of(c, PB_STAT_TLS_RELOAD_FAILURES), 0);
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    assert_int_equal(pb_consumer_reload_tls(c, err, sizeof err), PB_ERR_STATE);
    assert_non_null(strstr(err, "closed"));
    pb_consumer_destroy(c);
}

/* ---- the file watch ---- */

/* Polls until the counter reaches want (or 10 s passed). */
static void poll_until_stat(pb_consumer_t *c, pb_stat_t which, uint64_t want) {
    for (int i = 0; i < 200 && stat_of(c, which) < want; i++)
        assert_int_equal(pb_consumer_poll(c, 50), PB_OK);
    assert_int_equal(stat_of(c, which), want);
}

static void test_reload_watch_reloads_renamed_files_and_reports_bad_ones_to_on_error(void **state) {
    (void)state;
    seen_t s;
    pb_consumer_t *c = consumer(&s, "tls.watch", "true");
    assert_int_equal(pb_consumer_poll(c, 100), PB_OK);
    assert_int_equal(stat_of(c, PB_STAT_TLS_RELOADS), 0); /* nothing changed yet */
    install("predbridge-consumer");
    poll_until_stat(c, PB_STAT_TLS_RELOADS, 1);
    /* Bad material: refused, the cause (trigger, key, file) goes to on_error. */
    install("mismatch-client");
    poll_until_stat(c, PB_STAT_TLS_RELOAD_FAILURES, 1);
    assert_int_equal(s.certificate_errors, 1);
    assert_int_equal(s.last_code, PB_ERR_CERTIFICATE);
    if (!strstr(s.last_cause, "(tls.cert, tls.key changed) failed; the consumer keeps the previous") ||
        !strstr(s.last_cause, in_dir("tls.key")) || !strstr(s.last_cause, "does not match"))
        fail_msg("on_error cause: %s", s.last_cause);
    /* Fixed: taken. */
    install("predbridge-consumer");
    poll_until_stat(c, PB_STAT_TLS_RELOADS, 2);
    assert_int_equal(stat_of(c, PB_STAT_TLS_RELOAD_FAILURES), 1);
    finish(c);
}

/* Last: everything the runs above logged or put into errstr and on_error. */
static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int log_count(const char *needle) {
    FILE *f = fopen(g_log, "r");
    char line[4096];
    int n = 0;
    while (f && fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
    if (f) fclose(f);
    return n;
}

/* Polls c until log_count(needle) >= want or 10 s passed. */
static void poll_for_log(pb_consumer_t *c, const char *needle, int want) {
    int64_t deadline = now_ms() + 10000;
    while (log_count(needle) < want && now_ms() < deadline) assert_int_equal(pb_consumer_poll(c, 100), PB_OK);
    if (log_count(needle) < want) fail_msg("'%s' logged %d times, wanted %d", needle, log_count(needle), want);
}

static void test_reload_material_is_checked_again_while_polling(void **state) {
    (void)state;
    const char *soon = "renew it before then";
    g_more[0][0] = "tls.expiry.warn_days", g_more[0][1] = "3650"; /* every test certificate is "soon" */
    g_more[1][0] = "tls.expiry.check_interval_s", g_more[1][1] = "1";
    seen_t s;
    int before = log_count(soon);
    pb_consumer_t *c = consumer(&s, NULL, NULL);
    assert_true(log_count(soon) > before); /* at creation */
    poll_for_log(c, soon, log_count(soon) + 2); /* and again, each second */
    assert_int_equal(s.certificate_errors, 0);
    /* The files on disk expire (no reload: the running connection keeps its material): on_error hears. */
    install("expired-client");
    int64_t deadline = now_ms() + 10000;
    while (s.certificate_errors == 0 && now_ms() < deadline) assert_int_equal(pb_consumer_poll(c, 100), PB_OK);
    assert_true(s.certificate_errors >= 1);
    assert_non_null(strstr(s.last_cause, "periodic check"));
    assert_non_null(strstr(s.last_cause, "expired"));
    install("predbridge-consumer");
    finish(c);
}

/* ---- the expiry of the material in use ---- */

/* pki/<name>.crt and .key: the consumer's key in a certificate of the test CA valid until `end`
 * (YYYYMMDDHHMMSSZ), the way gen-certs.sh signs. */
static void sign_until(const char *name, const char *end) {
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof cmd,
             "cd '%s/pki' && export PB_SAN=DNS:localhost && cp -p predbridge-consumer.key %s.key && "
             "openssl req -new -key %s.key -subj '/O=predbridge test/CN=predbridge-consumer' -out %s.csr && "
             "openssl ca -batch -notext -config .ca-ca/ca.cnf -extensions client -in %s.csr -out %s.crt "
             "-enddate %s >>'%s/gen.log' 2>&1",
             g_dir, name, name, name, name, name, end, g_dir);
    assert_int_equal(system(cmd), 0);
}

/* notAfter of a PEM certificate as the openssl command shows it, in Unix seconds. */
static int64_t openssl_not_after(const char *pem) {
    char cmd[PATH_MAX + 64], line[128];
    struct tm tm = {0};
    snprintf(cmd, sizeof cmd, "openssl x509 -enddate -noout -in '%s'", pem);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(line, sizeof line, p));
    pclose(p);
    assert_non_null(strptime(line, "notAfter=%b %d %H:%M:%S %Y GMT", &tm));
    return (int64_t)timegm(&tm);
}

static int64_t not_after_of(pb_consumer_t *c, pb_cert_t which) {
    pb_stats_t *st = pb_consumer_stats(c);
    int64_t v = pb_stats_cert_not_after(st, which);
    pb_stats_destroy(st);
    return v;
}

static void test_reload_stats_carry_the_expiry_of_the_material_in_use(void **state) {
    (void)state;
    char err[1024];
    seen_t s;
    sign_until("until-2030", "20300101000000Z");
    pb_consumer_t *c = consumer(&s, NULL, NULL);
    int64_t ca = openssl_not_after(in_dir("pki/ca.crt"));
    assert_true(ca > 0);
    assert_int_equal(not_after_of(c, PB_CERT_CLIENT), openssl_not_after(in_dir("pki/predbridge-consumer.crt")));
    assert_int_equal(not_after_of(c, PB_CERT_CA), ca);
    /* New material: its expiry. */
    install("until-2030");
    assert_int_equal(pb_consumer_reload_tls(c, err, sizeof err), PB_OK);
    assert_int_equal(not_after_of(c, PB_CERT_CLIENT), 1893456000); /* 2030-01-01 00:00:00 UTC */
    assert_int_equal(not_after_of(c, PB_CERT_CA), ca);
    /* Refused material: still the expiry of what is in use. */
    install("expired-client");
    assert_int_equal(pb_consumer_reload_tls(c, err, sizeof err), PB_ERR_CERTIFICATE);
    assert_int_equal(not_after_of(c, PB_CERT_CLIENT), 1893456000);
    assert_int_equal(not_after_of(c, PB_CERT_CA), ca);
    pb_stats_t *st = pb_consumer_stats(c);
    assert_int_equal(pb_stats_cert_not_after(st, (pb_cert_t)2), 0); /* a value this library does not know */
    pb_stats_destroy(st);
    assert_int_equal(pb_stats_cert_not_after(NULL, PB_CERT_CLIENT), 0);
    install("predbridge-consumer");
    finish(c);
}

/* After a refused reload the files hold another certificate than the connection uses; the periodic
 * check watches the one in use too: a certificate valid for a few seconds is reported once expired. */
static void test_reload_expiry_of_the_certificate_in_use_is_watched_when_the_files_hold_another(void **state) {
    (void)state;
    char err[1024], end[32];
    time_t until = time(NULL) + 5;
    struct tm tm;
    strftime(end, sizeof end, "%Y%m%d%H%M%SZ", gmtime_r(&until, &tm));
    sign_until("five-seconds", end);
    g_more[0][0] = "tls.expiry.check_interval_s", g_more[0][1] = "1";
    seen_t s;
    pb_consumer_t *c = consumer(&s, NULL, NULL);
    install("five-seconds");
    assert_int_equal(pb_consumer_reload_tls(c, err, sizeof err), PB_OK);
    assert_int_equal(not_after_of(c, PB_CERT_CLIENT), (int64_t)until);
    install("predbridge-consumer"); /* good files, not loaded */
    int64_t deadline = now_ms() + 15000;
    while (s.certificate_errors == 0 && now_ms() < deadline) assert_int_equal(pb_consumer_poll(c, 100), PB_OK);
    if (s.certificate_errors == 0) fail_msg("no error for the expired certificate in use");
    assert_true(time(NULL) > until); /* not before it expired */
    assert_non_null(strstr(s.last_cause, "periodic check of the TLS material: the client certificate in use "
                                         "(CN=predbridge-consumer serial "));
    assert_non_null(strstr(s.last_cause, "the TLS files hold another, not loaded) expired on "));
    /* Before that, within tls.expiry.warn_days: warned. */
    assert_true(log_count("client certificate in use (CN=predbridge-consumer") >= 2);
    assert_true(log_count("in less than a day; renew it now") >= 1);
    finish(c);
}

static void test_reload_logs_and_errors_hold_no_key_material(void **state) {
    (void)state;
    FILE *f = fopen(g_log, "r");
    assert_non_null(f);
    static char text[1 << 20];
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    assert_non_null(strstr(text, "reloaded the TLS material"));
    assert_null(strstr(text, "PRIVATE KEY"));
    static const char *const keys[] = {"pki/predbridge-consumer.key", "pki/mismatch-client.key",
                                       "pki/expired-client.key", "pki/untrusted-client.key"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        FILE *k = fopen(in_dir(keys[i]), "r");
        assert_non_null(k);
        char line[256];
        while (fgets(line, sizeof line, k)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (line[0] == '-' || strlen(line) < 16) continue;
            line[16] = '\0';
            if (strstr(text, line)) fail_msg("%s: key material '%s' was logged", keys[i], line);
        }
        fclose(k);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_config_watch_keys_in_consumer_scope_watch_off_by_default),
        cmocka_unit_test(test_reload_example_consumer_conf_loads_with_its_watch_and_log_keys),
        cmocka_unit_test(test_reload_null_consumer_is_invalid_arg),
        cmocka_unit_test(test_reload_bad_material_is_certificate_error_naming_file_and_counted),
        cmocka_unit_test(test_reload_good_material_replaces_the_connection_and_is_counted),
        cmocka_unit_test(test_reload_inside_a_callback_or_after_close_is_state_error),
        cmocka_unit_test(test_reload_watch_reloads_renamed_files_and_reports_bad_ones_to_on_error),
        cmocka_unit_test(test_reload_material_is_checked_again_while_polling),
        cmocka_unit_test(test_reload_stats_carry_the_expiry_of_the_material_in_use),
        cmocka_unit_test(test_reload_expiry_of_the_certificate_in_use_is_watched_when_the_files_hold_another),
        cmocka_unit_test(test_reload_logs_and_errors_hold_no_key_material),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
