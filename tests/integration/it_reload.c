/* it_reload: predbridged rotates its client certificate without a restart, against the real mTLS
 * broker: a rename over the files during a stream (nothing lost, the new certificate in use), bad
 * material refused while the old keeps delivering, SIGHUP, a Kubernetes secret-volume swap, and
 * records the old producer cannot deliver (the broker down) moved to the new one. */
#include "itest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
/* cmocka needs the three above first */
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WATCH_LINES "tls.watch_debounce_ms = 300\n"
#define WAIT_MS 60000

/* ---- TLS material in a directory of its own ---- */

typedef struct material {
    char dir[256];
    char cert[300], key[300]; /* what the daemon is configured with */
} material_t;

static void material_new(material_t *m) {
    snprintf(m->dir, sizeof m->dir, "/tmp/pbit-reload-XXXXXX");
    assert_non_null(mkdtemp(m->dir));
    snprintf(m->cert, sizeof m->cert, "%s/tls.crt", m->dir);
    snprintf(m->key, sizeof m->key, "%s/tls.key", m->dir);
    assert_int_equal(itest_system("cp '%s' '%s' && cp '%s' '%s' && chmod 600 '%s'", itest_cert("predbridged.crt"),
                                  m->cert, itest_cert("predbridged.key"), m->key, m->key),
                     0);
}

static void material_free(material_t *m) {
    itest_system("rm -rf '%s'", m->dir);
}

/* Issues a client certificate for predbridged (CN=predbridged: the same principal, so the same ACLs)
 * from the test CA, valid for `days`, as <dir>/<name>.crt and .key. ou, if not NULL, is added to the
 * subject: the broker logs the subject of every handshake, so it shows which certificate was used.
 * Its serial, as predbridged logs it (upper-case hex), goes into serial. */
static void issue(const char *dir, const char *name, int days, const char *ou, char serial[40]) {
    snprintf(serial, 40, "%X%015llX", 1 + (unsigned)rand() % 7, (unsigned long long)rand() * (unsigned long long)rand());
    serial[16] = '\0';
    char subject[128];
    snprintf(subject, sizeof subject, "/O=predbridge test%s%s/CN=predbridged", ou ? "/OU=" : "", ou ? ou : "");
    int rc = itest_system(
        "cd '%s' && umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s.key && "
        "openssl req -new -key %s.key -subj '%s' -out %s.csr && "
        "printf 'basicConstraints=critical,CA:false\\nkeyUsage=critical,digitalSignature,keyEncipherment\\n"
        "extendedKeyUsage=clientAuth\\nauthorityKeyIdentifier=keyid\\n' > %s.ext && "
        "openssl x509 -req -in %s.csr -CA '%s' -CAkey '%s' -set_serial 0x%s -days %d -sha256 -extfile %s.ext "
        "-out %s.crt 2>/dev/null && chmod 644 %s.crt && rm -f %s.csr %s.ext",
        dir, name, name, subject, name, name, name, itest_cert("ca.crt"), itest_cert("ca.key"), serial, days, name,
        name, name, name, name);
    assert_int_equal(rc, 0);
}

/* Atomic replacement, as a certificate manager does it: copies written beside the targets, then
 * rename(2) over them, key first. */
static void rotate(const material_t *m, const char *crt, const char *key) {
    assert_int_equal(itest_system("cp '%s' '%s.new' && cp '%s' '%s.new' && chmod 600 '%s.new' && mv -f '%s.new' '%s' "
                                  "&& mv -f '%s.new' '%s'",
                                  crt, m->cert, key, m->key, m->key, m->key, m->key, m->cert, m->cert),
                     0);
}

/* notAfter of a certificate file, Unix time. */
static long long not_after(const char *crt) {
    char out[64];
    assert_int_equal(itest_run(out, sizeof out, "date -u -d \"$(openssl x509 -in '%s' -noout -enddate | cut -d= -f2)\" +%%s",
                               crt),
                     0);
    return atoll(out);
}

/* ---- the daemon ---- */

static long long metric(int port, const char *series) {
    static char body[65536];
    int status;
    if (itest_http_request(port, "GET", "/metrics", &status, body, sizeof body) != 0 || status != 200)
        fail_msg("GET /metrics on port %d failed", port);
    return itest_metric(body, series);
}

#define RELOADS_OK "predbridge_tls_reloads_total{result=\"ok\"}"
#define RELOADS_FAILED "predbridge_tls_reloads_total{result=\"failed\"}"
#define CLIENT_EXPIRY "predbridge_tls_certificate_expiry_timestamp_seconds{certificate=\"client\"}"

static void expect_log(itest_daemon_t *d, const char *needle) {
    if (itest_daemon_log_wait(d, needle, WAIT_MS)) return;
    itest_system("cat '%s' >&2", d->log_path);
    fail_msg("predbridged did not log '%s'", needle);
}

/* The first log line with needle, into out. Returns 1 if there is one. */
static int log_line(const itest_daemon_t *d, const char *needle, char *out, size_t size) {
    FILE *f = fopen(d->log_path, "r");
    assert_non_null(f);
    int found = 0;
    while (!found && fgets(out, (int)size, f)) found = strstr(out, needle) != NULL;
    fclose(f);
    return found;
}

static int start(itest_daemon_t *d, const char *topic, const material_t *m, const char *extra) {
    char lines[2048];
    snprintf(lines, sizeof lines, "tls.cert = %s\ntls.key = %s\n" WATCH_LINES "%s", m->cert, m->key, extra ? extra : "");
    return itest_daemon_start_http(d, topic, lines);
}

/* A writer in acknowledgement mode, and the replies it has read but not yet counted. */
typedef struct writer {
    int fd;
    char buf[65536];
    size_t len;
} writer_t;

/* Reads reply lines until n more arrived or the deadline passed. Returns how many said `status`
 * (-1 if the connection ended). */
static int read_replies(writer_t *w, int n, const char *status) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"status\":\"%s\"", status);
    int lines = 0, matched = 0;
    int64_t deadline = itest_now_ms() + WAIT_MS;
    while (lines < n && itest_now_ms() < deadline) {
        char *nl = memchr(w->buf, '\n', w->len);
        if (nl) {
            *nl = '\0';
            if (strstr(w->buf, needle)) matched++;
            else fprintf(stderr, "it_reload: reply %s\n", w->buf);
            lines++;
            w->len -= (size_t)(nl + 1 - w->buf);
            memmove(w->buf, nl + 1, w->len);
            continue;
        }
        struct pollfd p = {.fd = w->fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0) continue;
        ssize_t got = recv(w->fd, w->buf + w->len, sizeof w->buf - w->len, 0);
        if (got <= 0) return -1;
        w->len += (size_t)got;
    }
    return matched;
}

static void writer_open(writer_t *w, const itest_daemon_t *d, const char *mode) {
    memset(w, 0, sizeof *w);
    w->fd = itest_connect(d->socket_path);
    assert_true(w->fd >= 0);
    char hello[64];
    int n = snprintf(hello, sizeof hello, "{\"ack\":\"%s\"}\n", mode);
    assert_int_equal(itest_write_all(w->fd, hello, (size_t)n), 0);
    assert_int_equal(read_replies(w, 1, "ready"), 1);
}

/* Writes predictions first..last-1 and waits for their replies. Returns how many said `status`. */
static int send_batch(writer_t *w, int first, int last, const char *status) {
    char line[128], buf[16384];
    size_t len = 0;
    for (int i = first; i < last; i++) {
        int n = snprintf(line, sizeof line, "{\"model_version\":\"r\",\"prediction\":%d,\"i\":%d}\n", i, i);
        assert_true(len + (size_t)n < sizeof buf);
        memcpy(buf + len, line, (size_t)n);
        len += (size_t)n;
    }
    if (itest_write_all(w->fd, buf, len) != 0) return -1;
    return read_replies(w, last - first, status);
}

/* Consumes the topic and checks that predictions 0..n-1 each arrived exactly once. */
static void expect_exactly_once(const char *topic, int n) {
    size_t got;
    itest_record_t *r = itest_consume(topic, (size_t)n, 90000, &got);
    unsigned char *seen = calloc((size_t)n, 1);
    for (size_t k = 0; k < got; k++) {
        json_t *o = json_loads(r[k].value, 0, NULL);
        assert_non_null(o);
        json_int_t i = json_integer_value(json_object_get(o, "i"));
        json_decref(o);
        if (i < 0 || i >= n) fail_msg("unexpected prediction %lld", (long long)i);
        seen[i]++;
        assert_string_equal(r[k].producer, "predbridged");
    }
    for (int i = 0; i < n; i++)
        if (seen[i] != 1) fail_msg("prediction %d arrived %d times (%zu records consumed)", i, seen[i], got);
    assert_int_equal(got, (size_t)n);
    free(seen);
    itest_records_free(r, got);
}

/* Proves the daemon still delivers (predictions first..last-1, on w), that predictions 0..last-1 each
 * arrived exactly once, and that it stops cleanly. */
static void deliver_and_stop(itest_daemon_t *d, writer_t *w, const char *topic, int first, int last) {
    assert_int_equal(send_batch(w, first, last, "delivered"), last - first);
    close(w->fd);
    expect_exactly_once(topic, last);
    assert_int_equal(itest_daemon_stop(d, 30000), 0);
}

/* ---- (1) rotation during a stream ---- */

typedef struct stream {
    const itest_daemon_t *d;
    pthread_mutex_t lock;
    pthread_cond_t progress;
    int sent; /* accepted so far */
    int stop, failed;
    int stop_pipe[2];
} stream_t;

/* Writes batches of predictions, each accepted before the next, until told to stop. The pause
 * between batches only spreads the stream out in time; nothing waits on it. */
static void *stream_main(void *arg) {
    stream_t *s = arg;
    writer_t *w = malloc(sizeof *w);
    writer_open(w, s->d, "accepted");
    for (int i = 0;; i += 20) {
        pthread_mutex_lock(&s->lock);
        int stop = s->stop;
        pthread_mutex_unlock(&s->lock);
        if (stop) break;
        int ok = send_batch(w, i, i + 20, "accepted") == 20;
        pthread_mutex_lock(&s->lock);
        if (ok) s->sent = i + 20;
        else s->failed = 1;
        pthread_cond_broadcast(&s->progress);
        pthread_mutex_unlock(&s->lock);
        if (!ok) break;
        struct pollfd p = {.fd = s->stop_pipe[0], .events = POLLIN};
        poll(&p, 1, 20);
    }
    close(w->fd);
    free(w);
    return NULL;
}

/* Waits until the stream has had at least n predictions accepted. */
static int stream_wait(stream_t *s, int n) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&s->lock);
    while (s->sent < n && !s->failed && pthread_cond_timedwait(&s->progress, &s->lock, &until) == 0) {
    }
    int sent = s->sent;
    pthread_mutex_unlock(&s->lock);
    return sent;
}

static void test_reload_rename_during_a_stream_loses_nothing_and_uses_the_new_certificate(void **state) {
    (void)state;
    char topic[256], serial[40], marker[64], needle[256], line[4096];
    itest_create_topic("predictions-it-reload", 3, topic, sizeof topic);
    material_t m;
    material_new(&m);
    snprintf(marker, sizeof marker, "rotated-%d-%ld", (int)getpid(), (long)itest_now_ms());
    issue(m.dir, "next", 400, marker, serial); /* 400 days: the old one has 825 */
    char next_crt[300], next_key[300];
    snprintf(next_crt, sizeof next_crt, "%s/next.crt", m.dir);
    snprintf(next_key, sizeof next_key, "%s/next.key", m.dir);
    long long old_expiry = not_after(m.cert), new_expiry = not_after(next_crt);
    assert_true(old_expiry != new_expiry);

    itest_daemon_t d;
    /* Linger keeps records in the old producer when the reload comes, so its draining is exercised. */
    int port = start(&d, topic, &m, "producer.linger_ms = 2000\n");
    assert_int_equal(metric(port, CLIENT_EXPIRY), old_expiry);
    stream_t s = {.d = &d};
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.progress, NULL);
    assert_int_equal(pipe(s.stop_pipe), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stream_main, &s), 0);
    assert_true(stream_wait(&s, 200) >= 200);
    int handshakes_before = itest_auth_log_count(marker);

    rotate(&m, next_crt, next_key);
    snprintf(needle, sizeof needle, "serial %s valid until", serial);
    expect_log(&d, needle);
    int at_reload = stream_wait(&s, 0);
    assert_true(stream_wait(&s, at_reload + 200) >= at_reload + 200); /* produced by the new producer */
    pthread_mutex_lock(&s.lock);
    s.stop = 1;
    pthread_mutex_unlock(&s.lock);
    assert_int_equal(write(s.stop_pipe[1], "x", 1), 1);
    pthread_join(th, NULL);
    assert_false(s.failed);
    int total = s.sent;

    /* The log: both files seen as one change, the new serial, records left in the old producer. */
    assert_true(log_line(&d, needle, line, sizeof line));
    assert_non_null(strstr(line, "(tls.cert, tls.key changed)"));
    const char *held = strstr(line, "producer #1 delivers its ");
    assert_non_null(held);
    if (atoi(held + strlen("producer #1 delivers its ")) <= 0) fail_msg("no record was in flight at the reload: %s", line);
    expect_log(&d, "producer #1 (previous TLS material) delivered all its records and was closed");
    expect_exactly_once(topic, total);

    /* What shows that the new certificate is the one in use, not just loaded:
     * - the broker's own log has a successful handshake by a client whose subject carries the new
     *   certificate's marker (only that certificate has it; it never existed before this test),
     * - the old producer is closed (logged above), yet predictions accepted after the reload were
     *   delivered, so a producer made with the new files did it: librdkafka reads them only in
     *   rd_kafka_new;
     * - the expiry gauge moved to the new certificate's notAfter, and the reload was counted. */
    if (itest_auth_log_count(marker) <= handshakes_before)
        fail_msg("the broker saw no handshake with the new certificate (subject marker %s)", marker);
    assert_int_equal(metric(port, CLIENT_EXPIRY), new_expiry);
    assert_int_equal(metric(port, RELOADS_OK), 1);
    assert_int_equal(metric(port, RELOADS_FAILED), 0);
    assert_int_equal(metric(port, "predbridge_predictions_delivered_total"), total);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
    close(s.stop_pipe[0]);
    close(s.stop_pipe[1]);
    material_free(&m);
}

/* ---- (2) bad material is refused; the old keeps delivering ---- */

static void test_reload_bad_material_is_refused_and_the_old_certificate_keeps_delivering(void **state) {
    (void)state;
    char topic[256], line[4096];
    itest_create_topic("predictions-it-reload", 1, topic, sizeof topic);
    material_t m;
    material_new(&m);
    itest_daemon_t d;
    int port = start(&d, topic, &m, NULL);
    long long expiry = metric(port, CLIENT_EXPIRY);
    static writer_t w;
    writer_open(&w, &d, "delivered");
    assert_int_equal(send_batch(&w, 0, 10, "delivered"), 10);
    static const struct {
        const char *name, *cause, *file;
    } bad[] = {
        {"mismatch-client", "does not match", "tls.key"},
        {"expired-client", "certificate expired on", "tls.cert"},
        {"untrusted-client", "does not verify against tls.ca", "tls.cert"},
    };
    int sent = 10;
    for (int k = 0; k < 3; k++) {
        char crt[64], key[64];
        snprintf(crt, sizeof crt, "%s.crt", bad[k].name);
        snprintf(key, sizeof key, "%s.key", bad[k].name);
        rotate(&m, itest_cert(crt), itest_cert(key));
        expect_log(&d, bad[k].cause);
        assert_true(log_line(&d, bad[k].cause, line, sizeof line));
        /* An error, saying that nothing changed, naming the key and the file. */
        if (!strstr(line, "error") || !strstr(line, "tls.reload") || !strstr(line, "keeps the previous material") ||
            !strstr(line, bad[k].file) || !strstr(line, !strcmp(bad[k].file, "tls.key") ? m.key : m.cert))
            fail_msg("%s: unexpected log line: %s", bad[k].name, line);
        assert_int_equal(metric(port, RELOADS_FAILED), k + 1);
        assert_int_equal(metric(port, RELOADS_OK), 0);
        assert_int_equal(metric(port, CLIENT_EXPIRY), expiry);
        /* Still running, still delivering, with the material it had. */
        assert_int_equal(send_batch(&w, sent, sent + 10, "delivered"), 10);
        sent += 10;
    }
    /* Good material again: taken. */
    rotate(&m, itest_cert("predbridged.crt"), itest_cert("predbridged.key"));
    expect_log(&d, "reloaded the TLS material (tls.cert, tls.key changed)");
    assert_int_equal(metric(port, RELOADS_OK), 1);
    deliver_and_stop(&d, &w, topic, sent, sent + 10);
    material_free(&m);
}

/* ---- (3) SIGHUP ---- */

static void test_reload_sighup_reloads_unchanged_material_and_is_the_only_trigger_without_watch(void **state) {
    (void)state;
    char topic[256], serial[40], needle[512], out[256];
    itest_create_topic("predictions-it-reload", 1, topic, sizeof topic);
    material_t m;
    material_new(&m);
    itest_daemon_t d;
    int port = start(&d, topic, &m, "tls.watch = false\n");
    static writer_t w;
    writer_open(&w, &d, "delivered");
    assert_int_equal(send_batch(&w, 0, 5, "delivered"), 5);

    kill(d.pid, SIGHUP);
    assert_int_equal(itest_run(out, sizeof out, "openssl x509 -in '%s' -noout -serial | cut -d= -f2", m.cert), 0);
    out[strcspn(out, "\n")] = '\0';
    snprintf(needle, sizeof needle, "reloaded the TLS material (SIGHUP): client certificate CN=predbridged serial %s", out);
    expect_log(&d, needle);
    /* It held nothing: closed at once. */
    expect_log(&d, "producer #1 (previous TLS material) delivered all its records and was closed");
    assert_int_equal(metric(port, RELOADS_OK), 1);
    assert_int_equal(send_batch(&w, 5, 10, "delivered"), 5);

    /* tls.watch = false: a change on disk waits for the next SIGHUP. */
    issue(m.dir, "next", 300, NULL, serial);
    char crt[300], key[300];
    snprintf(crt, sizeof crt, "%s/next.crt", m.dir);
    snprintf(key, sizeof key, "%s/next.key", m.dir);
    rotate(&m, crt, key);
    snprintf(needle, sizeof needle, "serial %s", serial);
    assert_false(itest_daemon_log_wait(&d, needle, 1500)); /* five debounce periods */
    assert_int_equal(metric(port, RELOADS_OK), 1);
    kill(d.pid, SIGHUP);
    expect_log(&d, needle);
    assert_int_equal(metric(port, RELOADS_OK), 2);
    assert_int_equal(metric(port, CLIENT_EXPIRY), not_after(crt));
    deliver_and_stop(&d, &w, topic, 10, 15);
    material_free(&m);
}

/* ---- (4) a Kubernetes secret volume ---- */

/* Projects a secret as the kubelet does: files in a new timestamped directory, then "..data" swapped
 * to it by one rename, then the old directory removed. The key is encrypted with its own passphrase. */
static void k8s_project(const material_t *m, const char *stamp, const char *plain_key, const char *crt,
                        const char *passphrase) {
    assert_int_equal(itest_system("cd '%s' && mkdir %s && cp '%s' %s/tls.crt && umask 077 && printf '%%s\\n' '%s' > "
                                  "%s/tls.pass && openssl pkey -in '%s' -aes256 -passout file:%s/tls.pass -out "
                                  "%s/tls.key && ln -s %s ..data_tmp && old=$(readlink ..data || true) && "
                                  "mv -T ..data_tmp ..data && if [ -n \"$old\" ]; then rm -rf \"$old\"; fi",
                                  m->dir, stamp, crt, stamp, passphrase, stamp, plain_key, stamp, stamp, stamp),
                     0);
}

static void test_reload_kubernetes_secret_swap_reloads_and_logs_no_secret(void **state) {
    (void)state;
    char topic[256], serial[40], needle[128], extra[1024];
    itest_create_topic("predictions-it-reload", 1, topic, sizeof topic);
    material_t m;
    material_new(&m); /* tls.crt and tls.key become symlinks below */
    const char *pass1 = "first-secret-passphrase-8431", *pass2 = "second-secret-passphrase-2957";
    /* Plain copies of both keys and certificates, outside the projected volume. */
    char plain[300], key1[320], crt1[320], key2[320], crt2[320];
    snprintf(plain, sizeof plain, "%s/plain", m.dir);
    assert_int_equal(itest_system("mkdir '%s' && mv '%s' '%s/first.crt' && mv '%s' '%s/first.key'", plain, m.cert, plain,
                                  m.key, plain),
                     0);
    issue(plain, "next", 300, NULL, serial);
    snprintf(crt1, sizeof crt1, "%s/first.crt", plain);
    snprintf(key1, sizeof key1, "%s/first.key", plain);
    snprintf(crt2, sizeof crt2, "%s/next.crt", plain);
    snprintf(key2, sizeof key2, "%s/next.key", plain);
    k8s_project(&m, "..2024_01_01_00_00_00.1", key1, crt1, pass1);
    assert_int_equal(
        itest_system("cd '%s' && for f in tls.crt tls.key tls.pass; do ln -s ..data/$f $f; done", m.dir), 0);
    snprintf(extra, sizeof extra, "tls.key_passphrase_file = %s/tls.pass\nlog.level = debug\n", m.dir);
    itest_daemon_t d;
    int port = start(&d, topic, &m, extra);
    static writer_t w;
    writer_open(&w, &d, "delivered");
    assert_int_equal(send_batch(&w, 0, 5, "delivered"), 5);

    k8s_project(&m, "..2024_01_02_00_00_00.2", key2, crt2, pass2);
    snprintf(needle, sizeof needle, "serial %s valid until", serial);
    expect_log(&d, needle);
    expect_log(&d, "(tls.cert, tls.key, tls.key_passphrase_file changed)");
    assert_int_equal(metric(port, RELOADS_OK), 1);
    assert_int_equal(metric(port, RELOADS_FAILED), 0);
    assert_int_equal(metric(port, CLIENT_EXPIRY), not_after(crt2));
    deliver_and_stop(&d, &w, topic, 5, 10);

    /* Neither passphrase nor any part of either key, in plain or encrypted form, was logged. */
    const char *keys[] = {key1, key2, m.key};
    for (int k = 0; k < 3; k++) {
        const char *leak = itest_secret_in(d.log_path, keys[k], k == 0 ? pass1 : pass2);
        if (leak) fail_msg("the log %s contains %s", d.log_path, leak);
    }
    material_free(&m);
}

/* ---- (5) the broker unreachable across a reload ---- */

/* Predictions accepted while no broker is reachable wait in the producer. A reload then makes a new
 * producer; the old one, still unable to connect after producer.flush_timeout_ms (the broker stays
 * down for all of it: as when the broker no longer takes the old certificate), hands its records to
 * the new one and is closed, before the broker is back. The new producer delivers each once: nothing
 * waits for a restart. */
static void test_reload_records_the_old_producer_cannot_deliver_move_to_the_new_one(void **state) {
    (void)state;
    char topic[256], serial[40], crt[300], key[300], needle[256];
    itest_create_topic("predictions-it-reload", 3, topic, sizeof topic);
    material_t m;
    material_new(&m);
    issue(m.dir, "next", 300, NULL, serial);
    snprintf(crt, sizeof crt, "%s/next.crt", m.dir);
    snprintf(key, sizeof key, "%s/next.key", m.dir);
    itest_daemon_t d;
    int port = start(&d, topic, &m, "producer.flush_timeout_ms = 2000\n");
    static writer_t w;
    writer_open(&w, &d, "delivered");
    assert_int_equal(send_batch(&w, 0, 5, "delivered"), 5); /* connected before the outage */
    close(w.fd);

    itest_broker("pause");
    writer_open(&w, &d, "accepted");
    assert_int_equal(send_batch(&w, 5, 55, "accepted"), 50);
    rotate(&m, crt, key);
    snprintf(needle, sizeof needle, "serial %s valid until", serial);
    expect_log(&d, needle);
    expect_log(&d, "producer #1 did not deliver 50 record(s) in time; they were moved to producer #2");
    assert_int_equal(metric(port, "predbridge_predictions_delivered_total"), 5);
    itest_broker("resume");

    expect_exactly_once(topic, 55);
    char line[4096];
    assert_true(log_line(&d, "did not deliver 50 record(s)", line, sizeof line));
    assert_non_null(strstr(line, "producer.moved"));
    /* The old producer was closed with the records it moved, not after delivering them. */
    assert_false(log_line(&d, "producer #1 (previous TLS material) delivered all its records", line, sizeof line));
    assert_int_equal(send_batch(&w, 55, 60, "accepted"), 5);
    close(w.fd);
    expect_exactly_once(topic, 60);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
    material_free(&m);
}

/* Lines of path containing needle. */
static int count_lines(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    char line[8192];
    int n = 0;
    while (f && fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
    if (f) fclose(f);
    return n;
}

static void test_reload_material_is_checked_again_while_running(void **state) {
    (void)state;
    char topic[256];
    itest_create_topic("predictions-it-reload", 1, topic, sizeof topic);
    itest_daemon_t d;
    /* Every certificate of the rig expires within ten years: each check warns. */
    itest_daemon_config(&d, topic, "tls.expiry.warn_days = 3650\ntls.expiry.check_interval_s = 1\ntls.watch = false");
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    int at_start = count_lines(d.log_path, "renew it before then");
    assert_true(at_start >= 1);
    /* Two more checks, a second apart, each warning again (a check, not a wait: polled with a deadline). */
    int64_t deadline = itest_now_ms() + 15000;
    while (count_lines(d.log_path, "renew it before then") < at_start + 2 && itest_now_ms() < deadline)
        poll(NULL, 0, 100);
    assert_true(count_lines(d.log_path, "renew it before then") >= at_start + 2);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
}

int main(void) {
    srand((unsigned)getpid() ^ (unsigned)itest_now_ms());
    /* PB_ITEST_FILTER=glob runs a subset. */
    if (getenv("PB_ITEST_FILTER")) cmocka_set_test_filter(getenv("PB_ITEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_rename_during_a_stream_loses_nothing_and_uses_the_new_certificate),
        cmocka_unit_test(test_reload_bad_material_is_refused_and_the_old_certificate_keeps_delivering),
        cmocka_unit_test(test_reload_sighup_reloads_unchanged_material_and_is_the_only_trigger_without_watch),
        cmocka_unit_test(test_reload_kubernetes_secret_swap_reloads_and_logs_no_secret),
        cmocka_unit_test(test_reload_material_is_checked_again_while_running),
        cmocka_unit_test_teardown(test_reload_records_the_old_producer_cannot_deliver_move_to_the_new_one,
                                  itest_broker_resume_if_paused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
