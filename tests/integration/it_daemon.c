/* it_daemon: predbridged against the real mTLS broker: lines in, records out, acknowledgements,
 * the TLS policy refusing bad brokers, the peer policy, and a clean stop. */
#include "itest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define WRITERS 8
#define PER_WRITER 1250

static void new_topic(char *topic, size_t size, int partitions) {
    itest_create_topic("predictions-it-daemon", partitions, topic, size);
}

struct writer_arg {
    const char *socket_path;
    int writer;
    int rc;
};

static void *writer_main(void *p) {
    struct writer_arg *a = p;
    a->rc = -1;
    int fd = itest_connect(a->socket_path);
    if (fd < 0) return NULL;
    /* Write in uneven chunks so lines straddle reads. */
    char *buf = malloc(PER_WRITER * 200);
    size_t len = 0;
    for (int i = 0; i < PER_WRITER; i++)
        len += (size_t)sprintf(buf + len, "{\"model_version\":\"m-%d\",\"prediction\":{\"score\":%d.5},\"w\":%d,\"i\":%d}%s",
                               a->writer, i, a->writer, i, i % 7 == 0 ? "\r\n" : "\n");
    size_t off = 0, step = 997;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        if (itest_write_all(fd, buf + off, n) != 0) break;
        off += n;
    }
    free(buf);
    close(fd);
    a->rc = off == len ? 0 : -1;
    return NULL;
}

static int is_uuid(const char *s) {
    if (strlen(s) != 36) return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return 0;
        } else if (!strchr("0123456789abcdef", s[i])) {
            return 0;
        }
    }
    return s[14] == '4';
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_daemon_eight_writers_ten_thousand_predictions_arrive_exactly_once(void **state) {
    (void)state;
    char topic[256];
    new_topic(topic, sizeof topic, 3);
    itest_daemon_t d;
    itest_daemon_config(&d, topic, "message.key_field = w");
    assert_int_equal(itest_daemon_start(&d, NULL), 0);

    pthread_t th[WRITERS];
    struct writer_arg args[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        args[w] = (struct writer_arg){.socket_path = d.socket_path, .writer = w};
        assert_int_equal(pthread_create(&th[w], NULL, writer_main, &args[w]), 0);
    }
    for (int w = 0; w < WRITERS; w++) {
        pthread_join(th[w], NULL);
        assert_int_equal(args[w].rc, 0);
    }
    size_t n;
    itest_record_t *r = itest_consume(topic, WRITERS * PER_WRITER, 90000, &n);
    assert_int_equal(n, WRITERS * PER_WRITER);

    static unsigned char seen[WRITERS][PER_WRITER];
    memset(seen, 0, sizeof seen);
    char **ids = calloc(n, sizeof *ids);
    int64_t last_offset[WRITERS];
    for (int w = 0; w < WRITERS; w++) last_offset[w] = -1;
    for (size_t k = 0; k < n; k++) {
        json_error_t je;
        json_t *o = json_loads(r[k].value, 0, &je);
        assert_non_null(o);
        int w = (int)json_integer_value(json_object_get(o, "w"));
        int i = (int)json_integer_value(json_object_get(o, "i"));
        assert_true(w >= 0 && w < WRITERS && i >= 0 && i < PER_WRITER);
        seen[w][i]++;
        char mv[32];
        snprintf(mv, sizeof mv, "m-%d", w);
        assert_string_equal(r[k].model_version, mv);
        assert_string_equal(r[k].content_type, "application/json");
        assert_string_equal(r[k].producer, "predbridged");
        assert_true(is_uuid(r[k].id));
        ids[k] = r[k].id;
        /* The key is the configured key field; one writer's records share a partition, in order. */
        char key[16];
        snprintf(key, sizeof key, "%d", w);
        assert_non_null(r[k].key);
        assert_string_equal(r[k].key, key);
        (void)last_offset;
        /* timestamp added by the daemon, and the Kafka timestamp is the same instant. */
        const char *ts = json_string_value(json_object_get(o, "timestamp"));
        assert_non_null(ts);
        assert_int_equal(strlen(ts), 24);
        assert_true(ts[23] == 'Z');
        assert_true(r[k].timestamp_ms > 0);
        json_decref(o);
    }
    for (int w = 0; w < WRITERS; w++)
        for (int i = 0; i < PER_WRITER; i++)
            if (seen[w][i] != 1) fail_msg("writer %d line %d arrived %d times", w, i, seen[w][i]);
    qsort(ids, n, sizeof *ids, cmp_str);
    for (size_t k = 1; k < n; k++)
        if (!strcmp(ids[k - 1], ids[k])) fail_msg("message id %s used twice", ids[k]);
    free(ids);
    itest_records_free(r, n);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
    assert_true(itest_daemon_log_wait(&d, "delivered 10000", 1000));
}

/* Reads reply lines until the daemon closes the connection. */
static char *read_all(int fd) {
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0) break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

static void test_daemon_ack_mode_replies_once_per_line_in_order_and_rejects_never_reach_kafka(void **state) {
    (void)state;
    char topic[256];
    new_topic(topic, sizeof topic, 3);
    itest_daemon_t d;
    itest_daemon_config(&d, topic, "message.max_bytes = 200");
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    int fd = itest_connect(d.socket_path);
    assert_true(fd >= 0);
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char input[4096];
    snprintf(input, sizeof input,
             "{\"ack\":\"delivered\"}\n"
             "{\"model_version\":\"v1\",\"prediction\":1}\n"       /* 1 delivered */
             "not json\n"                                          /* 2 rejected */
             "[1,2]\n"                                             /* 3 rejected: not an object */
             "{\"model_version\":\"v1\"}\n"                        /* 4 rejected: missing prediction */
             "\n"                                                  /* 5 empty: ignored, no reply */
             "{\"model_version\":\"v1\",\"prediction\":\"%s\"}\n"  /* 6 rejected: too large */
             "{\"model_version\":\"v1\",\"prediction\":\"\xff\"}\n" /* 7 rejected: invalid UTF-8 */
             "{\"model_version\":\"v2\",\"prediction\":2}\r\n"     /* 8 delivered */
             "{\"model_version\":\"v3\",\"prediction\":3}",        /* 9 partial at EOF: rejected */
             big);
    assert_int_equal(itest_write_all(fd, input, strlen(input)), 0);
    shutdown(fd, SHUT_WR);
    char *out = read_all(fd);
    close(fd);

    struct {
        int seq;
        const char *status, *reason_part;
    } want[] = {{0, "ready", NULL},          {1, "delivered", NULL},       {2, "rejected", "not_json"},
                {3, "rejected", "not_object"}, {4, "rejected", "prediction"}, {6, "rejected", "too_large"},
                {7, "rejected", "utf"},       {8, "delivered", NULL},       {9, "rejected", "partial"}};
    size_t nwant = sizeof want / sizeof want[0], i = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
        if (i >= nwant) fail_msg("unexpected extra reply: %s", line);
        json_t *o = json_loads(line, 0, NULL);
        if (!o) fail_msg("reply is not JSON: %s", line);
        assert_int_equal(json_integer_value(json_object_get(o, "seq")), want[i].seq);
        const char *st = json_string_value(json_object_get(o, "status"));
        if (!st || strcmp(st, want[i].status)) fail_msg("line %d: want %s, got %s", want[i].seq, want[i].status, line);
        if (want[i].reason_part) {
            const char *reason = json_string_value(json_object_get(o, "reason"));
            if (!reason || !strstr(reason, want[i].reason_part))
                fail_msg("line %d: reason should mention '%s': %s", want[i].seq, want[i].reason_part, line);
        }
        if (!strcmp(want[i].status, "delivered"))
            assert_true(is_uuid(json_string_value(json_object_get(o, "id"))));
        json_decref(o);
    }
    assert_int_equal(i, nwant);
    free(out);
    /* Exactly the two valid lines reached Kafka. */
    assert_int_equal(itest_topic_size(topic), 2);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
}

static void test_daemon_sigterm_delivers_records_in_flight_before_exit(void **state) {
    (void)state;
    char topic[256];
    new_topic(topic, sizeof topic, 3);
    itest_daemon_t d;
    /* A long linger keeps accepted records in librdkafka's queue when SIGTERM arrives. */
    itest_daemon_config(&d, topic, "producer.linger_ms = 5000");
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    int fd = itest_connect(d.socket_path);
    assert_true(fd >= 0);
    enum { N = 500 };
    char *buf = malloc(N * 80 + 64), line[80];
    size_t len = (size_t)sprintf(buf, "{\"ack\":\"accepted\"}\n");
    for (int i = 0; i < N; i++) {
        int l = snprintf(line, sizeof line, "{\"model_version\":\"t\",\"prediction\":%d}\n", i);
        memcpy(buf + len, line, (size_t)l);
        len += (size_t)l;
    }
    assert_int_equal(itest_write_all(fd, buf, len), 0);
    free(buf);
    shutdown(fd, SHUT_WR);
    char *out = read_all(fd);
    close(fd);
    int accepted = 0;
    for (char *p = out; (p = strstr(p, "\"status\":\"accepted\"")); p++) accepted++;
    free(out);
    assert_int_equal(accepted, N);
    /* Linger holds them: at most a few can have left yet, so the stop below has work to do. */
    int64_t before = itest_topic_size(topic);
    if (before >= N) fail_msg("all %d records were delivered before SIGTERM; the test proves nothing", N);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
    assert_int_equal(itest_topic_size(topic), N);
    assert_true(itest_daemon_log_wait(&d, "delivered 500", 1000));
    /* The socket file is removed on exit. */
    assert_int_not_equal(access(d.socket_path, F_OK), 0);
}

/* Starts the daemon against a bad broker endpoint and expects it to keep the data, keep running,
 * log `cause`, and deliver nothing. */
static void expect_broker_refused(const char *extra, const char *cause) {
    char topic[256];
    new_topic(topic, sizeof topic, 1);
    itest_daemon_t d;
    itest_daemon_config(&d, topic, extra);
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    int fd = itest_connect(d.socket_path);
    assert_true(fd >= 0);
    const char *in = "{\"ack\":\"accepted\"}\n{\"model_version\":\"v\",\"prediction\":1}\n";
    assert_int_equal(itest_write_all(fd, in, strlen(in)), 0);
    if (!itest_daemon_log_wait(&d, cause, 20000)) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "cat '%s' >&2", d.log_path);
        itest_system("%s", cmd);
        fail_msg("the daemon did not log '%s'", cause);
    }
    close(fd);
    assert_int_equal(itest_topic_size(topic), 0);
    /* Still running; it stops cleanly and says what it could not deliver. */
    itest_daemon_t copy = d;
    assert_int_equal(itest_daemon_stop(&copy, 60000), 0);
}

static void test_daemon_refuses_tls12_listener(void **state) {
    (void)state;
    char extra[512];
    snprintf(extra, sizeof extra, "bootstrap.servers = %s\nproducer.flush_timeout_ms = 1000", itest_env()->bootstrap_tls12);
    expect_broker_refused(extra, "protocol version");
}

static void test_daemon_refuses_broker_with_wrong_host_name(void **state) {
    (void)state;
    char extra[512];
    snprintf(extra, sizeof extra, "bootstrap.servers = %s\nproducer.flush_timeout_ms = 1000",
             itest_env()->bootstrap_badhost);
    expect_broker_refused(extra, "wrong.example.invalid");
}

static void test_daemon_refuses_broker_from_untrusted_ca(void **state) {
    (void)state;
    char extra[512];
    snprintf(extra, sizeof extra, "tls.ca = %s\nproducer.flush_timeout_ms = 1000", itest_cert("untrusted-ca.crt"));
    /* Our client certificate must chain to tls.ca too, so use the untrusted CA's client. */
    snprintf(extra + strlen(extra), sizeof extra - strlen(extra), "\ntls.cert = %s\ntls.key = %s",
             itest_cert("untrusted-client.crt"), itest_cert("untrusted-client.key"));
    expect_broker_refused(extra, "certificate verify failed");
}

static void test_daemon_refuses_broker_whose_key_matches_no_pin(void **state) {
    (void)state;
    expect_broker_refused("tls.pins = sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nproducer.flush_timeout_ms = 1000",
                          "matches none");
}

static void test_daemon_delivers_when_a_backup_pin_matches(void **state) {
    (void)state;
    char topic[256], pin[256] = "", extra[600];
    new_topic(topic, sizeof topic, 1);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "openssl x509 -in '%s' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
             itest_cert("broker.crt"));
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(pin, sizeof pin, p));
    pclose(p);
    pin[strcspn(pin, "\n")] = '\0';
    /* The match first and a backup after it: a matcher that kept only the last comparison would refuse. */
    snprintf(extra, sizeof extra, "tls.pins = sha256//%s, sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", pin);
    itest_daemon_t d;
    itest_daemon_config(&d, topic, extra);
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    int fd = itest_connect(d.socket_path);
    /* A deadline for the reply: a refused broker would otherwise leave the test waiting for ever. */
    struct timeval tv = {.tv_sec = 30};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    const char *in = "{\"ack\":\"delivered\"}\n{\"model_version\":\"v\",\"prediction\":1}\n";
    assert_int_equal(itest_write_all(fd, in, strlen(in)), 0);
    shutdown(fd, SHUT_WR);
    char *out = read_all(fd);
    close(fd);
    int stopped = itest_daemon_stop(&d, 30000);
    if (!strstr(out, "\"delivered\"")) fail_msg("not delivered with a matching backup pin: %s", out);
    free(out);
    assert_int_equal(itest_topic_size(topic), 1);
    assert_int_equal(stopped, 0);
}

static void test_daemon_refuses_writer_with_disallowed_uid(void **state) {
    (void)state;
    char topic[256];
    new_topic(topic, sizeof topic, 1);
    itest_daemon_t d;
    /* We run as some uid; allow only another one. */
    char extra[128];
    snprintf(extra, sizeof extra, "socket.allowed_uids = %u", (unsigned)getuid() + 4242);
    itest_daemon_config(&d, topic, extra);
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    int fd = itest_connect(d.socket_path);
    assert_true(fd >= 0);
    const char *in = "{\"ack\":\"delivered\"}\n{\"model_version\":\"v\",\"prediction\":1}\n";
    (void)itest_write_all(fd, in, strlen(in));
    char *out = read_all(fd); /* the daemon closes at once: no reply */
    assert_string_equal(out, "");
    free(out);
    close(fd);
    assert_true(itest_daemon_log_wait(&d, "refused a writer", 10000));
    assert_int_equal(itest_topic_size(topic), 0);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
}

static void test_daemon_replaces_stale_socket_but_not_a_live_one(void **state) {
    (void)state;
    char topic[256];
    new_topic(topic, sizeof topic, 1);
    itest_daemon_t d;
    itest_daemon_config(&d, topic, NULL);
    /* A stale socket: bound, then its owner closed it without removing the file. */
    int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(d.socket_path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, d.socket_path, strlen(d.socket_path) + 1);
    assert_int_equal(bind(sfd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(sfd);
    assert_int_equal(access(d.socket_path, F_OK), 0);
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    assert_true(itest_daemon_log_wait(&d, "removed stale socket", 5000));
    struct stat st;
    assert_int_equal(stat(d.socket_path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0660); /* the default socket.mode */
    /* A second daemon on the same path (with a spool of its own) must not disturb the first. */
    char out[8192], args[1200];
    snprintf(args, sizeof args, "--config '%s' -o 'spool.dir=%s/spool2'", d.config, d.dir);
    assert_int_equal(itest_daemon_run(args, out, sizeof out), 1);
    if (!strstr(out, "in use by a running process")) fail_msg("unexpected output: %s", out);
    int fd = itest_connect(d.socket_path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
}

static void test_daemon_refuses_to_start_with_bad_configuration(void **state) {
    (void)state;
    char out[8192], args[1400];
    itest_daemon_t d;
    itest_daemon_config(&d, "predictions", "no.such.key = 1");
    snprintf(args, sizeof args, "--check-config --config '%s'", d.config);
    assert_int_equal(itest_daemon_run(args, out, sizeof out), 1);
    if (!strstr(out, "predbridged.conf:") || !strstr(out, "no.such.key")) fail_msg("unexpected output: %s", out);

    itest_daemon_config(&d, "predictions", "kafka.enable.ssl.certificate.verification = false");
    snprintf(args, sizeof args, "--check-config --config '%s'", d.config);
    assert_int_equal(itest_daemon_run(args, out, sizeof out), 1);
    if (!strstr(out, "kafka.enable.ssl.certificate.verification")) fail_msg("unexpected output: %s", out);

    char extra[1200];
    snprintf(extra, sizeof extra, "tls.cert = %s\ntls.key = %s", itest_cert("expired-client.crt"),
             itest_cert("expired-client.key"));
    itest_daemon_config(&d, "predictions", extra);
    snprintf(args, sizeof args, "--check-config --config '%s'", d.config);
    assert_int_equal(itest_daemon_run(args, out, sizeof out), 1);
    if (!strstr(out, "expired")) fail_msg("unexpected output: %s", out);

    snprintf(extra, sizeof extra, "tls.cert = %s\ntls.key = %s", itest_cert("mismatch-client.crt"),
             itest_cert("mismatch-client.key"));
    itest_daemon_config(&d, "predictions", extra);
    snprintf(args, sizeof args, "--check-config --config '%s'", d.config);
    assert_int_equal(itest_daemon_run(args, out, sizeof out), 1);
    if (!strstr(out, "does not match")) fail_msg("unexpected output: %s", out);

    itest_daemon_config(&d, "predictions", NULL);
    snprintf(args, sizeof args, "--check-config --config '%s'", d.config);
    assert_int_equal(itest_daemon_run(args, out, sizeof out), 0);
    if (!strstr(out, "configuration OK")) fail_msg("unexpected output: %s", out);
}

static void test_daemon_thousand_concurrent_writers_all_arrive(void **state) {
    (void)state;
    enum { CONNS = 1000 };
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < CONNS + 200) {
        rl.rlim_cur = rl.rlim_max;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    if (rl.rlim_cur < CONNS + 200) skip();
    char topic[256];
    new_topic(topic, sizeof topic, 3);
    itest_daemon_t d;
    itest_daemon_config(&d, topic, NULL);
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    static int fds[CONNS];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = itest_connect(d.socket_path);
        if (fds[i] < 0) fail_msg("connection %d failed: %s", i, strerror(errno));
    }
    /* Every connection is open at once; now each writes a line, half of it first. */
    char line[128];
    for (int i = 0; i < CONNS; i++) {
        int n = snprintf(line, sizeof line, "{\"model_version\":\"c\",\"prediction\":%d}\n", i);
        assert_int_equal(itest_write_all(fds[i], line, (size_t)n / 2), 0);
    }
    for (int i = 0; i < CONNS; i++) {
        int n = snprintf(line, sizeof line, "{\"model_version\":\"c\",\"prediction\":%d}\n", i);
        assert_int_equal(itest_write_all(fds[i], line + n / 2, (size_t)(n - n / 2)), 0);
        close(fds[i]);
    }
    size_t n;
    itest_record_t *r = itest_consume(topic, CONNS, 60000, &n);
    assert_int_equal(n, CONNS);
    static unsigned char seen[CONNS];
    memset(seen, 0, sizeof seen);
    for (size_t k = 0; k < n; k++) {
        json_t *o = json_loads(r[k].value, 0, NULL);
        assert_non_null(o);
        json_int_t v = json_integer_value(json_object_get(o, "prediction"));
        assert_true(v >= 0 && v < CONNS);
        seen[v]++;
        json_decref(o);
    }
    for (int i = 0; i < CONNS; i++) assert_int_equal(seen[i], 1);
    itest_records_free(r, n);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
}

static void test_daemon_full_queue_pauses_reading_and_loses_nothing(void **state) {
    (void)state;
    char topic[256];
    new_topic(topic, sizeof topic, 3);
    itest_daemon_t d;
    /* A tiny librdkafka queue drains slowly into a tiny spool: it fills all the time, so reading
     * pauses and resumes often. */
    itest_daemon_config(&d, topic, "kafka.queue.buffering.max.messages = 50\nspool.max_bytes = 64k");
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    pthread_t th[4];
    struct writer_arg args[4];
    for (int w = 0; w < 4; w++) {
        args[w] = (struct writer_arg){.socket_path = d.socket_path, .writer = w};
        assert_int_equal(pthread_create(&th[w], NULL, writer_main, &args[w]), 0);
    }
    for (int w = 0; w < 4; w++) {
        pthread_join(th[w], NULL);
        assert_int_equal(args[w].rc, 0);
    }
    assert_true(itest_daemon_log_wait(&d, "reading paused", 30000));
    assert_int_equal(itest_daemon_stop(&d, 60000), 0);
    assert_true(itest_daemon_log_wait(&d, "delivered 5000,", 1000));
    assert_int_equal(itest_topic_size(topic), 4 * PER_WRITER);
}

/* CPU seconds (user + system) used so far by pid, from /proc. */
static double cpu_seconds(int pid) {
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    assert_non_null(p);
    unsigned long ut = 0, st = 0;
    /* Fields after the command: state(3) ... utime(14) stime(15). */
    assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st), 2);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void test_daemon_paused_on_unreachable_broker_does_not_spin(void **state) {
    (void)state;
    itest_daemon_t d;
    /* Nothing listens on port 1: nothing drains, so the spool stays full. */
    itest_daemon_config(&d, "predictions-nowhere",
                        "bootstrap.servers = 127.0.0.1:1\nkafka.queue.buffering.max.messages = 20\n"
                        "producer.flush_timeout_ms = 0\nspool.max_bytes = 64k");
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    int fd = itest_connect(d.socket_path);
    assert_true(fd >= 0);
    /* More than the 64 KiB spool holds. Once reading pauses the socket fills: write without
     * blocking, waiting for room while the daemon still reads, and stop when it no longer does. */
    char *buf = malloc(2000 * 64), *p = buf;
    for (int i = 0; i < 2000; i++) p += sprintf(p, "{\"model_version\":\"p\",\"prediction\":%d}\n", i);
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    for (size_t off = 0, len = (size_t)(p - buf); off < len;) {
        ssize_t w = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        assert_true(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        struct pollfd pw = {.fd = fd, .events = POLLOUT};
        if (poll(&pw, 1, 2000) == 0) break; /* the daemon stopped reading */
    }
    free(buf);
    assert_true(itest_daemon_log_wait(&d, "reading paused", 10000));
    /* Measure over a fixed window: a spinning loop would burn about the whole window. */
    double before = cpu_seconds(d.pid);
    int64_t end = itest_now_ms() + 1500;
    while (itest_now_ms() < end) poll(NULL, 0, (int)(end - itest_now_ms()));
    double used = cpu_seconds(d.pid) - before;
    if (used > 0.5) fail_msg("the paused daemon used %.2f s of CPU in 1.5 s", used);
    close(fd);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
    assert_true(itest_daemon_log_wait(&d, "were not delivered", 1000));
}

/* Runs `predbridge send ARGS` with input on stdin; returns its exit status, stdout+stderr in out. */
static int run_send(const char *args, const char *input, char *out, size_t out_size) {
    char path[1200], cmd[4096], in_path[] = "/tmp/pbit-send-XXXXXX";
    int fd = mkstemp(in_path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(fputs(input, f) < 0, 0);
    assert_int_equal(fclose(f), 0);
    snprintf(path, sizeof path, "%s/src/cli/predbridge", getenv("PB_BUILD_DIR"));
    snprintf(cmd, sizeof cmd, "'%s' send %s < '%s' 2>&1", path, args, in_path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, out_size - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    unlink(in_path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_daemon_send_cli_reports_each_line_and_exit_code(void **state) {
    (void)state;
    char topic[256], args[1400], out[16384];
    new_topic(topic, sizeof topic, 3);
    itest_daemon_t d;
    itest_daemon_config(&d, topic, NULL);
    assert_int_equal(itest_daemon_start(&d, NULL), 0);

    /* All valid, delivered mode: exit 0, one "delivered" per line. */
    snprintf(args, sizeof args, "--socket '%s' --ack delivered", d.socket_path);
    const char *good = "{\"model_version\":\"a\",\"prediction\":1}\n{\"model_version\":\"a\",\"prediction\":2}\n"
                       "{\"model_version\":\"a\",\"prediction\":3}"; /* no final newline: send adds it */
    assert_int_equal(run_send(args, good, out, sizeof out), 0);
    int delivered = 0;
    for (char *q = out; (q = strstr(q, "\"status\":\"delivered\"")); q++) delivered++;
    if (delivered != 3) fail_msg("expected 3 delivered replies:\n%s", out);
    assert_non_null(strstr(out, "3 lines: 3 delivered, 0 rejected, 0 failed"));

    /* One invalid line: exit 1, the rejection is printed with its line number. */
    const char *mixed = "{\"model_version\":\"a\",\"prediction\":4}\n{\"model_version\":\"a\"}\n";
    assert_int_equal(run_send(args, mixed, out, sizeof out), 1);
    if (!strstr(out, "{\"seq\":2,\"status\":\"rejected\"")) fail_msg("rejection not reported:\n%s", out);

    /* Fire-and-forget: exit 0 and the line still arrives. */
    snprintf(args, sizeof args, "--socket '%s'", d.socket_path);
    assert_int_equal(run_send(args, "{\"model_version\":\"a\",\"prediction\":5}\n", out, sizeof out), 0);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
    assert_int_equal(itest_topic_size(topic), 5);

    /* No daemon: exit 1 naming the socket. */
    snprintf(args, sizeof args, "--socket '%s'", d.socket_path);
    assert_int_equal(run_send(args, "{}\n", out, sizeof out), 1);
    if (!strstr(out, "cannot connect to") || !strstr(out, d.socket_path)) fail_msg("unexpected output:\n%s", out);
    assert_int_equal(run_send("--ack sometimes", "", out, sizeof out), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_daemon_refuses_to_start_with_bad_configuration),
        cmocka_unit_test(test_daemon_eight_writers_ten_thousand_predictions_arrive_exactly_once),
        cmocka_unit_test(test_daemon_ack_mode_replies_once_per_line_in_order_and_rejects_never_reach_kafka),
        cmocka_unit_test(test_daemon_sigterm_delivers_records_in_flight_before_exit),
        cmocka_unit_test(test_daemon_refuses_tls12_listener),
        cmocka_unit_test(test_daemon_refuses_broker_with_wrong_host_name),
        cmocka_unit_test(test_daemon_refuses_broker_from_untrusted_ca),
        cmocka_unit_test(test_daemon_refuses_broker_whose_key_matches_no_pin),
        cmocka_unit_test(test_daemon_delivers_when_a_backup_pin_matches),
        cmocka_unit_test(test_daemon_refuses_writer_with_disallowed_uid),
        cmocka_unit_test(test_daemon_replaces_stale_socket_but_not_a_live_one),
        cmocka_unit_test(test_daemon_send_cli_reports_each_line_and_exit_code),
        cmocka_unit_test(test_daemon_thousand_concurrent_writers_all_arrive),
        cmocka_unit_test(test_daemon_full_queue_pauses_reading_and_loses_nothing),
        cmocka_unit_test(test_daemon_paused_on_unreachable_broker_does_not_spin),
    };
    /* PB_ITEST_FILTER=glob runs a subset (the valgrind pass uses it). */
    if (getenv("PB_ITEST_FILTER")) cmocka_set_test_filter(getenv("PB_ITEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
