/* it_consumer_reload: libpredbridge moves to a new client certificate without a restart, against the
 * real mTLS broker: pb_consumer_reload_tls in the middle of a topic, and a tls.watch rotation of an
 * encrypted key, deliver every record exactly once and leave the group's offsets at the end of the
 * topic; bad material is refused while consuming goes on over the old connection; the dedup window
 * carries over; nothing secret reaches errstr, on_error or the log. */
#include "it_consumer_util.h"

#include <errno.h>
#include <fcntl.h>

#define WAIT_MS 60000
#define MAX_PARTS 2
#define MAX_OFFSETS 2048

/* ---- TLS material in a directory of its own ---- */

typedef struct material {
    char dir[256];
    char cert[300], key[300], pass[300]; /* what the consumer is configured with */
} material_t;

/* A passphrase file, readable by its owner only. */
static void write_secret(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) fail_msg("cannot write %s: %s", path, strerror(errno));
    assert_int_equal(dprintf(fd, "%s\n", text), (int)strlen(text) + 1);
    close(fd);
}

/* The consumer's certificate as tls.crt, its key as tls.key: encrypted with passphrase (then in
 * tls.pass) unless that is NULL. */
static void material_new(material_t *m, const char *passphrase) {
    snprintf(m->dir, sizeof m->dir, "/tmp/pbit-creload-XXXXXX");
    assert_non_null(mkdtemp(m->dir));
    snprintf(m->cert, sizeof m->cert, "%s/tls.crt", m->dir);
    snprintf(m->key, sizeof m->key, "%s/tls.key", m->dir);
    snprintf(m->pass, sizeof m->pass, "%s/tls.pass", m->dir);
    if (passphrase) write_secret(m->pass, passphrase);
    const char *crt = itest_cert("predbridge-consumer.crt"), *key = itest_cert("predbridge-consumer.key");
    int rc = itest_system("cp '%s' '%s' && umask 077 && openssl pkey -in '%s' %s%s%s -out '%s'", crt, m->cert,
                          key, passphrase ? "-aes256 -passout 'file:" : "", passphrase ? m->pass : "",
                          passphrase ? "'" : "", m->key);
    assert_int_equal(rc, 0);
}

/* Issues <dir>/<name>.crt and .key now, from the test CA, for the consumer's principal
 * (CN=predbridge-consumer: the same ACLs); the OU `marker` shows in the broker's handshake log, so
 * it tells which certificate a connection used. The key is encrypted with passphrase (in
 * <name>.pass) unless that is NULL. */
static void issue(const material_t *m, const char *name, const char *marker, const char *passphrase) {
    char pass[400];
    snprintf(pass, sizeof pass, "%s/%s.pass", m->dir, name);
    if (passphrase) write_secret(pass, passphrase);
    int rc = itest_system(
        "cd '%s' && umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 %s%s%s "
        "-keyout %s.key -out %s.crt -days 90 -subj '/O=predbridge test/OU=%s/CN=predbridge-consumer' "
        "-CA '%s' -CAkey '%s' -addext basicConstraints=critical,CA:false "
        "-addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=clientAuth 2>/dev/null && "
        "chmod 644 %s.crt",
        m->dir, passphrase ? "-passout 'file:" : "-noenc", passphrase ? pass : "", passphrase ? "'" : "",
        name, name, marker, itest_cert("ca.crt"), itest_cert("ca.key"), name);
    assert_int_equal(rc, 0);
}

/* Atomic replacement, as a certificate manager does it: <from>/<name>.key (.pass) .crt copied beside
 * tls.key (tls.pass) tls.crt, then renamed over them, key first. */
static void rotate(const material_t *m, const char *from, const char *name, int with_pass) {
    int rc = itest_system("cd '%s' && for f in key %s crt; do cp '%s/%s.'$f tls.$f.new && "
                          "chmod 600 tls.$f.new && mv -f tls.$f.new tls.$f; done",
                          m->dir, with_pass ? "pass" : "", from, name);
    assert_int_equal(rc, 0);
}

static void material_free(material_t *m) {
    itest_system("rm -rf '%s'", m->dir);
}

/* ---- a consumer that counts every delivery of every offset ---- */

typedef struct run {
    sink_t sink; /* what on_error reported (it_consumer_util.h) */
    pb_consumer_t *c;
    char topic[256], group[128];
    int n_parts;
    unsigned char seen[MAX_PARTS][MAX_OFFSETS];
    int delivered, twice;
    int reload_in_callback; /* on_prediction tries pb_consumer_reload_tls once, result in callback_rc */
    pb_err_t callback_rc;
    char log_path[300]; /* every log line, errstr and on_error cause of the run */
    FILE *log;
} run_t;

static pb_action_t count_prediction(const pb_message_t *m, void *opaque) {
    run_t *r = opaque;
    int32_t p = pb_message_partition(m);
    int64_t off = pb_message_offset(m);
    if (p < 0 || p >= r->n_parts || off < 0 || off >= MAX_OFFSETS)
        fail_msg("unexpected [%d] %lld", p, (long long)off);
    if (r->seen[p][off]++) r->twice++;
    r->delivered++;
    if (r->reload_in_callback) {
        r->reload_in_callback = 0;
        char err[256];
        r->callback_rc = pb_consumer_reload_tls(r->c, err, sizeof err);
    }
    return PB_COMMIT;
}

static void keep(run_t *r, const char *text) {
    fprintf(r->log, "%s\n", text);
    fflush(r->log);
}

static void count_error(pb_err_t code, const char *cause, const pb_message_t *m, void *opaque) {
    run_t *r = opaque;
    keep(r, cause);
    on_error(code, cause, m, &r->sink);
}

static void keep_log(pb_log_level_t level, const char *event, const char *line, void *opaque) {
    (void)level, (void)event;
    keep(opaque, line);
}

static void run_start(run_t *r, const char *topic, int n_parts, const material_t *m, const char *extra) {
    char err[1024];
    memset(r, 0, sizeof *r);
    sink_init(&r->sink);
    r->n_parts = n_parts;
    snprintf(r->topic, sizeof r->topic, "%s", topic);
    snprintf(r->log_path, sizeof r->log_path, "%s/consumer.log", m->dir);
    assert_non_null(r->log = fopen(r->log_path, "w"));
    unique_group(r->group, sizeof r->group, "reload");
    pb_config_t *conf = consumer_config(topic, r->group, extra);
    /* Each delivery counts: no duplicate suppression to hide one, unless extra asks for it. Debug: the
     * most lines to check for secrets. */
    const char *kv[][2] = {{"tls.cert", m->cert}, {"tls.key", m->key}, {"log.level", "debug"},
                           {"consumer.dedup.window", "0"}};
    size_t n = sizeof kv / sizeof kv[0] - (extra && strstr(extra, "consumer.dedup.window") ? 1 : 0);
    for (size_t i = 0; i < n; i++)
        if (pb_config_set(conf, kv[i][0], kv[i][1], err, sizeof err) != PB_OK) fail_msg("%s", err);
    assert_int_equal(pb_config_set_log_fn(conf, keep_log, r), PB_OK);
    r->c = pb_consumer_new(conf, count_prediction, count_error, r, err, sizeof err);
    pb_config_destroy(conf);
    if (!r->c) fail_msg("pb_consumer_new: %s", err);
}

/* Produces records first..first+n-1 of a numbered stream, record i to partition i % n_parts. */
static void produce_numbered(const char *topic, int first, int n, int n_parts) {
    static char values[MAX_OFFSETS][80], ids[MAX_OFFSETS][48];
    static const char *vp[MAX_OFFSETS], *ip[MAX_OFFSETS];
    static int parts[MAX_OFFSETS];
    assert_true(n <= MAX_OFFSETS);
    for (int k = 0; k < n; k++) {
        int i = first + k;
        snprintf(values[k], sizeof values[k], "{\"model_version\":\"m\",\"prediction\":%d,\"i\":%d}", i, i);
        snprintf(ids[k], sizeof ids[k], "reload-%d-%d", (int)getpid(), i);
        vp[k] = values[k], ip[k] = ids[k], parts[k] = i % n_parts;
    }
    produce_with_ids(topic, vp, ip, parts, n, 1700000000000 + first);
}

static uint64_t stat(const run_t *r, pb_stat_t which) {
    return stat_of(r->c, which);
}

/* For whoever reads a failure: the consumer's counters, partitions, errors and last log lines. */
static void report_state(run_t *r) {
    pb_stats_t *st = pb_consumer_stats(r->c);
    fprintf(stderr, "  received %llu, delivered %llu, tls failures %llu, %zu partition(s) assigned\n",
            (unsigned long long)pb_stats_get(st, PB_STAT_RECEIVED),
            (unsigned long long)pb_stats_get(st, PB_STAT_DELIVERED),
            (unsigned long long)pb_stats_get(st, PB_STAT_TLS_FAILURES), pb_stats_partition_count(st));
    pb_stats_destroy(st);
    for (int i = 0; i < r->sink.n_errs; i++)
        fprintf(stderr, "  on_error %s: %s\n", pb_err_name(r->sink.errs[i].code), r->sink.errs[i].cause);
    itest_system("tail -n 40 '%s' | sed 's/^/  log: /' >&2", r->log_path);
}

/* Polls until `want` records were delivered in all; fails at the deadline. */
static void poll_until_delivered(run_t *r, int want) {
    int64_t deadline = itest_now_ms() + WAIT_MS;
    while (r->delivered < want) {
        if (itest_now_ms() >= deadline) {
            report_state(r);
            fail_msg("delivered %d of %d records", r->delivered, want);
        }
        pb_err_t rc = pb_consumer_poll(r->c, 200);
        assert_int_equal(rc, PB_OK);
    }
}

/* Records 0..total-1 of the stream were each delivered exactly once, and nothing else was, also after
 * a further while of polling (a late second delivery would show there). */
static void expect_each_once(run_t *r, int total) {
    int64_t until = itest_now_ms() + 1500;
    while (itest_now_ms() < until) pb_consumer_poll(r->c, 100);
    for (int p = 0; p < r->n_parts; p++) {
        int end = (total - p + r->n_parts - 1) / r->n_parts;
        for (int off = 0; off < MAX_OFFSETS; off++)
            if (r->seen[p][off] != (off < end))
                fail_msg("partition %d offset %d delivered %d times (end %d)", p, off, r->seen[p][off], end);
    }
    assert_int_equal(r->twice, 0);
    assert_int_equal(r->delivered, total);
    assert_int_equal(stat(r, PB_STAT_DELIVERED), (uint64_t)total);
    assert_int_equal(stat(r, PB_STAT_RECEIVED), (uint64_t)total); /* nothing was even examined twice */
}

/* Closes the run's consumer; then the group's committed offset of every partition must be its end
 * (read with plain librdkafka), and a new member of the group, once it has its partitions, gets
 * nothing. Also checks that nothing secret was logged. */
static void close_and_expect_group_at_end(run_t *r, const char *const *key_files,
                                          const char *const *passphrases, int n_secrets) {
    char err[512];
    const char *topic = r->topic;
    const char *group = r->group;
    int n_parts = r->n_parts;
    assert_int_equal(pb_consumer_close(r->c, err, sizeof err), PB_OK);
    assert_int_equal(pb_consumer_reload_tls(r->c, err, sizeof err), PB_ERR_STATE);
    pb_consumer_destroy(r->c);
    r->c = NULL;
    fclose(r->log);
    for (int i = 0; i < n_secrets; i++) {
        const char *leak = itest_secret_in(r->log_path, key_files[i], passphrases ? passphrases[i] : NULL);
        if (leak) fail_msg("%s contains %s", r->log_path, leak);
    }
    rd_kafka_conf_t *conf = itest_conf(itest_env()->bootstrap, "predbridge-consumer");
    itest_set(conf, "group.id", group);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n_parts);
    for (int p = 0; p < n_parts; p++) rd_kafka_topic_partition_list_add(l, topic, p);
    assert_int_equal(rd_kafka_committed(rk, l, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int p = 0; p < n_parts; p++) {
        int64_t lo, hi;
        assert_int_equal(rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
        if (l->elems[p].offset != hi)
            fail_msg("partition %d: group %s committed %lld, the end is %lld", p, group,
                     (long long)l->elems[p].offset, (long long)hi);
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);

    static sink_t s;
    sink_init(&s);
    pb_consumer_t *c =
        new_consumer(topic, group, "kafka.statistics.interval.ms=200\nconsumer.dedup.window=0", &s);
    int64_t deadline = itest_now_ms() + WAIT_MS;
    for (;;) {
        pb_stats_t *st = pb_consumer_stats(c);
        size_t assigned = pb_stats_partition_count(st);
        pb_stats_destroy(st);
        if (assigned == (size_t)n_parts) break;
        if (itest_now_ms() >= deadline)
            fail_msg("the new member got %zu of %d partitions", assigned, n_parts);
        pb_consumer_poll(c, 200);
    }
    int64_t until = itest_now_ms() + 2000;
    while (itest_now_ms() < until) pb_consumer_poll(c, 200);
    assert_int_equal(stat_of(c, PB_STAT_RECEIVED), 0);
    assert_int_equal(pb_consumer_close(c, err, sizeof err), PB_OK);
    pb_consumer_destroy(c);
}

/* How many lines of the run's log contain needle. */
static int log_count(const run_t *r, const char *needle) {
    FILE *f = fopen(r->log_path, "r");
    assert_non_null(f);
    char line[8192];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* A rotation to prepare: a topic of n_parts partitions holding records 0..n-1, the consumer's
 * material (key encrypted with pass_now unless NULL), and beside it next.crt/.key issued now (key
 * encrypted with pass_next unless NULL) with a fresh OU marker. */
typedef struct rotation {
    char topic[256], marker[64], next_key[400];
    material_t m;
} rotation_t;

static void rotation_prepare(rotation_t *t, const char *tag, int n_parts, int n, const char *pass_now,
                             const char *pass_next) {
    itest_create_topic("predictions-it-creload", n_parts, t->topic, sizeof t->topic);
    produce_numbered(t->topic, 0, n, n_parts);
    material_new(&t->m, pass_now);
    snprintf(t->marker, sizeof t->marker, "%s-%d-%lld", tag, (int)getpid(), (long long)itest_now_ms());
    issue(&t->m, "next", t->marker, pass_next);
    snprintf(t->next_key, sizeof t->next_key, "%s/next.key", t->m.dir);
}

/* Polls until the first delivery: one poll that delivers hands over at most a batch (500) of what the
 * first fetches brought; the rest waits, fetched, in librdkafka's queue. */
static void poll_until_first(run_t *r) {
    int64_t deadline = itest_now_ms() + WAIT_MS;
    while (r->delivered == 0 && itest_now_ms() < deadline)
        assert_int_equal(pb_consumer_poll(r->c, 200), PB_OK);
    assert_true(r->delivered > 0);
}

/* ---- (1) pb_consumer_reload_tls in the middle of a topic ---- */

static void test_consumer_reload_mid_topic_delivers_each_record_once_and_commits_to_the_end(void **state) {
    (void)state;
    char err[1024];
    enum { N = 1500, PARTS = 2 };
    static rotation_t t;
    rotation_prepare(&t, "creload", PARTS, N, NULL, NULL);
    static run_t r;
    /* No periodic commit: what is committed comes from the reload and from close. */
    run_start(&r, t.topic, PARTS, &t.m, "consumer.commit_interval_ms=60000");
    poll_until_first(&r);
    int before = r.delivered;
    assert_true(before < N);
    fprintf(stderr, "it_consumer_reload: %d of %d records delivered before the reload\n", before, N);
    assert_int_equal(stat(&r, PB_STAT_COMMITS), 0);
    int handshakes = itest_auth_log_count(t.marker);

    rotate(&t.m, t.m.dir, "next", 0);
    pb_err_t rc = pb_consumer_reload_tls(r.c, err, sizeof err);
    keep(&r, err);
    if (rc != PB_OK) fail_msg("pb_consumer_reload_tls: %s: %s", pb_err_name(rc), err);
    assert_int_equal(r.delivered, before); /* a reload delivers nothing itself */
    assert_int_equal(stat(&r, PB_STAT_COMMITS), 1); /* what was processed, committed before leaving */
    assert_int_equal(stat(&r, PB_STAT_TLS_RELOADS), 1);
    assert_int_equal(stat(&r, PB_STAT_TLS_RELOAD_FAILURES), 0);

    poll_until_delivered(&r, N);
    expect_each_once(&r, N);
    /* The new certificate is the one in use: the broker saw a handshake with its subject. */
    if (itest_auth_log_count(t.marker) <= handshakes)
        fail_msg("the broker saw no handshake with the new certificate (OU %s)", t.marker);
    assert_int_equal(log_count(&r, "(pb_consumer_reload_tls): client certificate CN=predbridge-consumer"), 1);
    assert_int_equal(count_errors(&r.sink, PB_ERR_TLS, NULL), 0);
    assert_int_equal(count_errors(&r.sink, PB_ERR_AUTHENTICATION, NULL), 0);
    const char *keys[] = {t.m.key, itest_cert("predbridge-consumer.key"), t.next_key};
    close_and_expect_group_at_end(&r, keys, NULL, 3);
    material_free(&t.m);
}

/* ---- (2) tls.watch, with an encrypted key and its passphrase file replaced too ---- */

static void test_consumer_reload_watch_takes_renamed_encrypted_key_delivers_each_record_once(void **state) {
    (void)state;
    char extra[512];
    const char *pass1 = "first-consumer-passphrase-5821", *pass2 = "second-consumer-passphrase-9174";
    enum { N1 = 600, N2 = 200 };
    static rotation_t t;
    rotation_prepare(&t, "cwatch", 1, N1, pass1, pass2);
    static run_t r;
    snprintf(extra, sizeof extra, "tls.key_passphrase_file=%s\ntls.watch=true\ntls.watch_debounce_ms=300\n"
                                  "consumer.commit_interval_ms=200",
             t.m.pass);
    run_start(&r, t.topic, 1, &t.m, extra);
    poll_until_first(&r);
    int handshakes = itest_auth_log_count(t.marker);

    /* Key, passphrase and certificate renamed over the configured files, one after the other: one
     * reload, once they have been quiet for the debounce time. */
    rotate(&t.m, t.m.dir, "next", 1);
    int64_t deadline = itest_now_ms() + WAIT_MS;
    while (stat(&r, PB_STAT_TLS_RELOADS) == 0) {
        if (itest_now_ms() >= deadline) fail_msg("no reload after the files changed");
        assert_int_equal(pb_consumer_poll(r.c, 200), PB_OK);
    }
    produce_numbered(t.topic, N1, N2, 1);
    poll_until_delivered(&r, N1 + N2);
    expect_each_once(&r, N1 + N2);
    assert_int_equal(stat(&r, PB_STAT_TLS_RELOADS), 1);
    assert_int_equal(stat(&r, PB_STAT_TLS_RELOAD_FAILURES), 0);
    if (itest_auth_log_count(t.marker) <= handshakes)
        fail_msg("the broker saw no handshake with the new certificate (OU %s)", t.marker);
    assert_int_equal(
        log_count(&r, "reloaded the TLS material (tls.cert, tls.key, tls.key_passphrase_file changed)"), 1);
    /* Neither passphrase nor any line of either key (both encrypted) was logged. */
    const char *keys[] = {t.next_key, t.m.key};
    const char *passes[] = {pass1, pass2};
    close_and_expect_group_at_end(&r, keys, passes, 2);
    material_free(&t.m);
}

/* ---- (3) bad material is refused, and the old connection keeps consuming ---- */

/* Installs <cert dir>/<name>.crt/.key and expects the reload to be refused with PB_ERR_CERTIFICATE and
 * a cause naming key, file and what is wrong; then records total..total+9 must still arrive. */
static void expect_refused(run_t *r, const material_t *m, const char *name, const char *key,
                           const char *cause, int *total) {
    char err[1024];
    rotate(m, itest_env()->cert_dir, name, 0);
    uint64_t failures = stat(r, PB_STAT_TLS_RELOAD_FAILURES);
    pb_err_t rc = pb_consumer_reload_tls(r->c, err, sizeof err);
    keep(r, err);
    if (rc != PB_ERR_CERTIFICATE) fail_msg("%s: %s: %s", name, pb_err_name(rc), err);
    const char *file = !strcmp(key, "tls.key") ? m->key : m->cert;
    if (!strstr(err, key) || !strstr(err, file) || !strstr(err, cause))
        fail_msg("%s: errstr does not name %s '%s' and '%s': %s", name, key, file, cause, err);
    assert_int_equal(stat(r, PB_STAT_TLS_RELOAD_FAILURES), failures + 1);
    assert_int_equal(stat(r, PB_STAT_TLS_RELOADS), 0);
    /* Still consuming, over the connection it had. */
    produce_numbered(r->topic, *total, 10, 1);
    *total += 10;
    poll_until_delivered(r, *total);
}

static void test_consumer_reload_bad_material_is_refused_naming_the_file_and_consuming_goes_on(void **state) {
    (void)state;
    char topic[256], err[1024], mismatch_key[1100], expired_key[1100];
    itest_create_topic("predictions-it-creload", 1, topic, sizeof topic);
    produce_numbered(topic, 0, 20, 1);
    material_t m;
    material_new(&m, NULL);
    static run_t r;
    run_start(&r, topic, 1, &m, "consumer.commit_interval_ms=200");
    r.reload_in_callback = 1; /* not allowed there */
    poll_until_delivered(&r, 20);
    assert_int_equal(r.callback_rc, PB_ERR_STATE);

    int total = 20;
    expect_refused(&r, &m, "mismatch-client", "tls.key", "does not match certificate", &total);
    expect_refused(&r, &m, "expired-client", "tls.cert", "certificate expired on", &total);
    /* The group was never left: no revocation so far. */
    assert_int_equal(log_count(&r, "partitions.revoked"), 0);
    assert_int_equal(
        log_count(&r, "reload of the TLS material (pb_consumer_reload_tls) failed; the consumer keeps"), 2);

    /* Good material again: taken. */
    rotate(&m, itest_env()->cert_dir, "predbridge-consumer", 0);
    assert_int_equal(pb_consumer_reload_tls(r.c, err, sizeof err), PB_OK);
    assert_int_equal(stat(&r, PB_STAT_TLS_RELOADS), 1);
    produce_numbered(topic, total, 10, 1);
    total += 10;
    poll_until_delivered(&r, total);
    expect_each_once(&r, total);
    snprintf(mismatch_key, sizeof mismatch_key, "%s/mismatch-client.key", itest_env()->cert_dir);
    snprintf(expired_key, sizeof expired_key, "%s/expired-client.key", itest_env()->cert_dir);
    const char *keys[] = {mismatch_key, expired_key, m.key};
    close_and_expect_group_at_end(&r, keys, NULL, 3);
    material_free(&m);
}

/* ---- (4) the dedup window carries over ---- */

static void test_consumer_reload_keeps_the_dedup_window(void **state) {
    (void)state;
    char topic[256], err[1024];
    itest_create_topic("predictions-it-creload", 1, topic, sizeof topic);
    const char *values[] = {valid_value(0), valid_value(1), valid_value(0), valid_value(2)};
    const char *ids[] = {"carry-a", "carry-b", "carry-a", "carry-c"};
    produce_with_ids(topic, values, ids, NULL, 2, 1700000000000);
    material_t m;
    material_new(&m, NULL);
    static run_t r;
    run_start(&r, topic, 1, &m, "consumer.dedup.window=1000\nconsumer.commit_interval_ms=200");
    poll_until_delivered(&r, 2);
    rotate(&m, itest_env()->cert_dir, "predbridge-consumer", 0);
    assert_int_equal(pb_consumer_reload_tls(r.c, err, sizeof err), PB_OK);
    /* A copy of carry-a, published again after the reload: the new connection's consumer still
     * knows its id. */
    produce_with_ids(topic, values + 2, ids + 2, NULL, 2, 1700000000002);
    poll_until_received(r.c, 4, WAIT_MS);
    assert_int_equal(r.delivered, 3);
    assert_int_equal(stat(&r, PB_STAT_DUPLICATES), 1);
    assert_int_equal(r.seen[0][2], 0);
    assert_int_equal(r.seen[0][3], 1);
    close_and_expect_group_at_end(&r, NULL, NULL, 0);
    material_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consumer_reload_mid_topic_delivers_each_record_once_and_commits_to_the_end),
        cmocka_unit_test(test_consumer_reload_watch_takes_renamed_encrypted_key_delivers_each_record_once),
        cmocka_unit_test(test_consumer_reload_bad_material_is_refused_naming_the_file_and_consuming_goes_on),
        cmocka_unit_test(test_consumer_reload_keeps_the_dedup_window),
    };
    if (getenv("PB_ITEST_FILTER")) cmocka_set_test_filter(getenv("PB_ITEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
