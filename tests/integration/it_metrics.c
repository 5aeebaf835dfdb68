/* it_metrics: predbridged's /metrics, /healthz and /readyz against the real mTLS broker: exact
 * counters after a known workload, promtool, readiness while the broker is unreachable and after,
 * TLS failure causes, and no secret in logs or metrics. */
#include "itest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
/* cmocka needs the three above first */
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the HTTP endpoint (itest.h does the work) ---- */

typedef struct http_reply {
    int status;
    char body[65536];
} http_reply_t;

static int http_request(int port, const char *method, const char *path, http_reply_t *r) {
    return itest_http_request(port, method, path, &r->status, r->body, sizeof r->body);
}

static http_reply_t *get(int port, const char *path) {
    static http_reply_t r;
    if (http_request(port, "GET", path, &r) != 0) fail_msg("GET %s on port %d failed", path, port);
    return &r;
}

static long long sample(const char *text, const char *series) {
    return itest_metric(text, series);
}

static void expect_sample(const char *text, const char *series, long long want) {
    long long got = sample(text, series);
    if (got != want) fail_msg("%s is %lld, expected %lld; exposition:\n%s", series, got, want, text);
}

static int start_with_http(itest_daemon_t *d, const char *topic, const char *extra) {
    return itest_daemon_start_http(d, topic, extra);
}

static void new_topic(char *topic, size_t size) {
    itest_create_topic("predictions-it-metrics", 1, topic, size);
}

static char *read_to_eof(int fd) {
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 == cap) buf = realloc(buf, cap *= 2);
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* N valid lines and one of each kind of invalid line, in delivered-ack mode: once every reply is
 * in, every counter is final. */
#define N_VALID 5
static const char *const invalid_lines[] = {
    "this is not json\n",                             /* not_json */
    "[1,2,3]\n",                                      /* not_object */
    "{\"model_version\":\"v\",\"x\":\"\xff\xfe\"}\n", /* invalid_utf8 */
    "{\"model_version\":\"v\"}\n",                    /* missing_field */
    "{\"model_version\":7,\"prediction\":1}\n",       /* bad_field */
};

static void run_workload(const itest_daemon_t *d) {
    int fd = itest_connect(d->socket_path);
    assert_true(fd >= 0);
    char buf[8192];
    size_t len = (size_t)snprintf(buf, sizeof buf, "{\"ack\":\"delivered\"}\n");
    for (int i = 0; i < N_VALID; i++)
        len +=
            (size_t)snprintf(buf + len, sizeof buf - len, "{\"model_version\":\"m\",\"prediction\":%d}\n", i);
    for (size_t i = 0; i < sizeof invalid_lines / sizeof invalid_lines[0]; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s", invalid_lines[i]);
    len += (size_t)snprintf(buf + len, sizeof buf - len, "{\"model_version\":\"m\",\"prediction\":\"");
    memset(buf + len, 'x', 300); /* too_large: message.max_bytes is 256 */
    len += 300;
    len += (size_t)snprintf(buf + len, sizeof buf - len, "\"}\n{\"model_version\":\"m\""); /* partial */
    assert_int_equal(itest_write_all(fd, buf, len), 0);
    shutdown(fd, SHUT_WR);
    char *out = read_to_eof(fd);
    close(fd);
    int delivered = 0, rejected = 0;
    for (char *p = out; (p = strstr(p, "\"status\":\"delivered\"")); p++)
        delivered++;
    for (char *p = out; (p = strstr(p, "\"status\":\"rejected\"")); p++)
        rejected++;
    if (delivered != N_VALID || rejected != 7) fail_msg("unexpected replies: %s", out);
    free(out);
}

/* Lines of the file at path that contain needle. */
static int count_lines_with(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    char line[8192];
    int n = 0;
    assert_non_null(f);
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* predbridge_broker_tls_info after records went through: exactly one series, for the rig's one broker
 * (it advertises its bootstrap address, so librdkafka keeps that name), labelled as its
 * predbridge_broker_up series is (ssl://host:port/<node id>) so that the two join, with TLS 1.3 and
 * a cipher named; and the daemon logged those parameters for it once. */
static void expect_broker_tls_info(const itest_daemon_t *d, const char *m) {
    static const char family[] = "\npredbridge_broker_tls_info{";
    char want[320], cipher[128] = "", label[320] = "", up[400], log_line[400 + sizeof cipher];
    snprintf(want, sizeof want, "%sbroker=\"ssl://%s/", family + 1, itest_env()->bootstrap);
    int series = 0;
    for (const char *l = m; (l = strstr(l, family)); l++) {
        series++;
        const char *id = l + 1 + strlen(want), *c = strstr(id, "\",version=\"TLSv1.3\",cipher=\"");
        const char *end = strstr(l + 1, "\"} 1\n");
        if (strncmp(l + 1, want, strlen(want)) != 0 || !c || !end || c >= end ||
            strspn(id, "0123456789") != (size_t)(c - id) || c == id)
            fail_msg("unexpected TLS info series (want %s<node id>\",version=\"TLSv1.3\",cipher=...):\n%s", want, m);
        const char *labels = l + strlen(family); /* broker="...": up to c's closing quote */
        snprintf(label, sizeof label, "%.*s", (int)(c + 1 - labels), labels);
        c += strlen("\",version=\"TLSv1.3\",cipher=\"");
        if ((size_t)(end - c) >= sizeof cipher || memchr(c, '\n', (size_t)(end - c)))
            fail_msg("unexpected cipher in:\n%s", m);
        memcpy(cipher, c, (size_t)(end - c));
        cipher[end - c] = '\0';
    }
    if (series != 1) fail_msg("%d predbridge_broker_tls_info series, expected 1:\n%s", series, m);
    snprintf(up, sizeof up, "\npredbridge_broker_up{%s} 1\n", label);
    if (!strstr(m, up)) fail_msg("the TLS info's label %s is not that of an UP broker_up series:\n%s", label, m);
    assert_true(strncmp(cipher, "TLS_", 4) == 0); /* a TLS 1.3 suite name, e.g. TLS_AES_256_GCM_SHA384 */
    snprintf(log_line, sizeof log_line, "broker %s: TLSv1.3, %s", itest_env()->bootstrap, cipher);
    int logged = count_lines_with(d->log_path, log_line);
    if (logged != 1) {
        itest_system("cat '%s' >&2", d->log_path);
        fail_msg("'%s' logged %d times, expected once", log_line, logged);
    }
}

static void test_metrics_counters_are_exact_after_a_known_workload(void **state) {
    (void)state;
    char topic[256];
    new_topic(topic, sizeof topic);
    itest_daemon_t d;
    int port = start_with_http(&d, topic, "message.max_bytes = 256\n");
    run_workload(&d);
    const char *m = get(port, "/metrics")->body;
    expect_sample(m, "predbridge_predictions_received_total", N_VALID + 7);
    expect_sample(m, "predbridge_predictions_accepted_total", N_VALID);
    expect_sample(m, "predbridge_predictions_delivered_total", N_VALID);
    expect_sample(m, "predbridge_predictions_in_flight", 0);
    static const char *const reasons[] = {"not_json",  "not_object", "invalid_utf8", "missing_field",
                                          "bad_field", "too_large",  "partial"};
    char series[256];
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        snprintf(series, sizeof series, "predbridge_predictions_rejected_total{reason=\"%s\"}", reasons[i]);
        expect_sample(m, series, 1);
    }
    expect_sample(m, "predbridge_predictions_rejected_total{reason=\"other\"}", 0);
    static const char *const fails[] = {"purged",        "too_large", "authorization",
                                        "unknown_topic", "fatal",     "other"};
    for (size_t i = 0; i < sizeof fails / sizeof fails[0]; i++) {
        snprintf(series, sizeof series, "predbridge_predictions_failed_total{reason=\"%s\"}", fails[i]);
        expect_sample(m, series, 0);
    }
    expect_sample(m, "predbridge_socket_connections", 0);
    /* itest_daemon_start's readiness probe connected once, the workload once. */
    expect_sample(m, "predbridge_socket_connections_total", 2);
    expect_sample(m, "predbridge_socket_refused_peers_total", 0);
    expect_sample(m, "predbridge_tls_handshake_failures_total{cause=\"other\"}", 0);
    expect_sample(m, "predbridge_broker_authentication_failures_total", 0);
    expect_sample(m, "predbridge_broker_authorization_failures_total", 0);
    expect_sample(m, "predbridge_ready", 1);
    /* Expiry of the test PKI's client certificate and CA, as openssl reads them. */
    assert_true(sample(m, "predbridge_tls_certificate_expiry_timestamp_seconds{certificate=\"client\"}") >
                1700000000);
    assert_true(sample(m, "predbridge_tls_certificate_expiry_timestamp_seconds{certificate=\"ca\"}") >
                1700000000);
    /* The statistics (every 500 ms here) name the broker the TLS info is labelled with. */
    int64_t deadline = itest_now_ms() + 10000;
    while (!strstr(m, "\npredbridge_broker_up{") && itest_now_ms() < deadline) {
        poll(NULL, 0, 100);
        m = get(port, "/metrics")->body;
    }
    expect_broker_tls_info(&d, m);

    /* promtool (Debian's prometheus package) accepts the exposition. */
    char path[700];
    snprintf(path, sizeof path, "%s/metrics.txt", d.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(m, f);
    fclose(f);
    if (itest_system("command -v promtool >/dev/null") != 0) {
        fail_msg("promtool is not installed (Debian package prometheus; scripts/setup.sh installs it)");
    } else if (itest_system("promtool check metrics < '%s' >&2", path) != 0) {
        fail_msg("promtool check metrics refused the exposition:\n%s", m);
    }

    /* The endpoint's other answers. */
    assert_int_equal(get(port, "/healthz")->status, 200);
    assert_int_equal(get(port, "/readyz")->status, 200);
    assert_string_equal(get(port, "/readyz")->body, "ok\n");
    assert_int_equal(get(port, "/nope")->status, 404);
    http_reply_t r;
    assert_int_equal(http_request(port, "POST", "/metrics", &r), 0);
    assert_int_equal(r.status, 405);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
}

/* ---- readiness while the broker is unreachable, then reachable ---- */

typedef struct proxy {
    int listen_fd, target_port, stop_fd[2];
    pthread_t thread;
} proxy_t;

static int connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Forwards each accepted connection to the broker until stopped (bytes both ways). */
static void *proxy_main(void *arg) {
    proxy_t *p = arg;
    enum { MAXP = 16 };
    int a[MAXP], b[MAXP], n = 0;
    char buf[65536];
    for (;;) {
        struct pollfd fds[2 + 2 * MAXP];
        fds[0] = (struct pollfd){.fd = p->listen_fd, .events = POLLIN};
        fds[1] = (struct pollfd){.fd = p->stop_fd[0], .events = POLLIN};
        for (int i = 0; i < n; i++) {
            fds[2 + 2 * i] = (struct pollfd){.fd = a[i], .events = POLLIN};
            fds[3 + 2 * i] = (struct pollfd){.fd = b[i], .events = POLLIN};
        }
        if (poll(fds, (nfds_t)(2 + 2 * n), -1) < 0) continue;
        if (fds[1].revents) break;
        if ((fds[0].revents & POLLIN) && n < MAXP) {
            int c = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            int t = c >= 0 ? connect_port(p->target_port) : -1;
            if (c >= 0 && t >= 0) {
                a[n] = c;
                b[n++] = t;
            } else {
                if (c >= 0) close(c);
            }
        }
        for (int i = n - 1; i >= 0; i--) {
            int dead = 0;
            for (int k = 0; k < 2 && !dead; k++) {
                if (!fds[2 + 2 * i + k].revents) continue;
                int from = k ? b[i] : a[i], to = k ? a[i] : b[i];
                ssize_t got = read(from, buf, sizeof buf);
                dead = got <= 0 || itest_write_all(to, buf, (size_t)got) != 0;
            }
            if (dead) {
                close(a[i]);
                close(b[i]);
                a[i] = a[n - 1];
                b[i] = b[n - 1];
                n--;
            }
        }
    }
    for (int i = 0; i < n; i++)
        close(a[i]), close(b[i]);
    return NULL;
}

/* Reserves a loopback port that refuses connections: bound, not listening, so no other process
 * (nor an outgoing connection's source port) can take it until the proxy listens on it. */
static int reserve_port(proxy_t *p) {
    p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof a;
    assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(p->listen_fd, (struct sockaddr *)&a, &sl), 0);
    return ntohs(a.sin_port);
}

static void proxy_start(proxy_t *p, int target_port) {
    p->target_port = target_port;
    assert_int_equal(listen(p->listen_fd, 16), 0);
    assert_int_equal(pipe(p->stop_fd), 0);
    assert_int_equal(pthread_create(&p->thread, NULL, proxy_main, p), 0);
}

static void proxy_stop(proxy_t *p) {
    assert_int_equal(write(p->stop_fd[1], "x", 1), 1);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    close(p->stop_fd[0]);
    close(p->stop_fd[1]);
}

static void test_metrics_readyz_is_503_while_unreachable_and_200_once_connected(void **state) {
    (void)state;
    char topic[256], extra[512];
    new_topic(topic, sizeof topic);
    proxy_t p;
    int port = reserve_port(&p);
    const char *colon = strrchr(itest_env()->bootstrap, ':');
    assert_non_null(colon);
    /* Bootstrap through a port nobody listens on: "localhost" still matches the broker's certificate. */
    snprintf(extra, sizeof extra, "bootstrap.servers = localhost:%d\nkafka.reconnect.backoff.max.ms = 500\n",
             port);
    itest_daemon_t d;
    int http = start_with_http(&d, topic, extra);
    if (!itest_daemon_log_wait(&d, "Connection refused", 20000)) {
        itest_system("cat '%s' >&2", d.log_path);
        fail_msg("the daemon did not log 'Connection refused'");
    }
    assert_true(itest_daemon_log_wait(&d, "not ready:", 20000));
    http_reply_t *r = get(http, "/readyz");
    assert_int_equal(r->status, 503);
    if (!strstr(r->body, "down") && !strstr(r->body, "no broker"))
        fail_msg("unexpected /readyz reason: %s", r->body);
    assert_int_equal(get(http, "/healthz")->status, 200); /* the loop itself is fine */
    expect_sample(get(http, "/metrics")->body, "predbridge_ready", 0);

    /* The broker becomes reachable: ready once the connection is up. */
    proxy_start(&p, atoi(colon + 1));
    if (!itest_daemon_log_wait(&d, "ready: a broker connection is up", 30000)) {
        itest_system("cat '%s' >&2", d.log_path);
        fail_msg("the daemon did not become ready");
    }
    r = get(http, "/readyz");
    assert_int_equal(r->status, 200);
    /* Ready came from librdkafka's statistics (nothing was sent): their gauges are there too. */
    const char *m = get(http, "/metrics")->body;
    expect_sample(m, "predbridge_ready", 1);
    int up = 0;
    for (const char *l = m; (l = strstr(l, "\npredbridge_broker_up{broker=\"ssl://")); l++) {
        const char *eol = strchr(l + 1, '\n');
        up |= eol && eol - l > 3 && !strncmp(eol - 3, "} 1", 3);
    }
    if (!up) fail_msg("no broker is up in the exposition:\n%s", m);
    assert_non_null(strstr(m, "predbridge_broker_rtt_seconds{broker=\"ssl://"));
    expect_sample(m, "predbridge_producer_queue_messages", 0);
    expect_sample(m, "predbridge_tls_handshake_failures_total{cause=\"other\"}", 0);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
    proxy_stop(&p);
}

/* ---- TLS failures by cause ---- */

/* predbridge_tls_handshake_failures_total counts cause (at least once) and no other. */
static void expect_only_tls_cause(const char *m, const char *cause) {
    static const char *const causes[] = {
        "protocol_version", "certificate_verify", "hostname", "pin", "client_cert_refused", "other"};
    char series[200];
    for (size_t i = 0; i < sizeof causes / sizeof causes[0]; i++) {
        snprintf(series, sizeof series, "predbridge_tls_handshake_failures_total{cause=\"%s\"}", causes[i]);
        long long v = sample(m, series);
        if (!strcmp(causes[i], cause) ? v < 1 : v != 0) fail_msg("%s is %lld:\n%s", series, v, m);
    }
}

static void expect_tls_cause(const char *bootstrap, const char *log_needle, const char *cause) {
    char topic[256], extra[512];
    new_topic(topic, sizeof topic);
    snprintf(extra, sizeof extra, "bootstrap.servers = %s\nproducer.flush_timeout_ms = 1000\n", bootstrap);
    itest_daemon_t d;
    int http = start_with_http(&d, topic, extra);
    if (!itest_daemon_log_wait(&d, log_needle, 20000)) {
        itest_system("cat '%s' >&2", d.log_path);
        fail_msg("the daemon did not log '%s'", log_needle);
    }
    /* Counted before it is logged: the exposition already has it. */
    const char *m = get(http, "/metrics")->body;
    expect_only_tls_cause(m, cause);
    expect_sample(m, "predbridge_ready", 0);
    http_reply_t *r = get(http, "/readyz");
    assert_int_equal(r->status, 503);
    if (!strstr(r->body, log_needle))
        fail_msg("/readyz does not name the cause '%s': %s", log_needle, r->body);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
}

static void test_metrics_tls12_listener_counts_protocol_version(void **state) {
    (void)state;
    expect_tls_cause(itest_env()->bootstrap_tls12, "protocol version", "protocol_version");
}

static void test_metrics_badhost_listener_counts_hostname(void **state) {
    (void)state;
    expect_tls_cause(itest_env()->bootstrap_badhost, "wrong.example.invalid", "hostname");
}

/* A certificate the broker accepts but whose principal may not write (no idempotent-write ACL):
 * an authorization failure, and not ready for good. */
static void test_metrics_principal_without_write_acl_counts_authorization_and_is_not_ready(void **state) {
    (void)state;
    char topic[256], extra[1024];
    new_topic(topic, sizeof topic);
    snprintf(extra, sizeof extra, "tls.cert = %s\ntls.key = %s\nproducer.flush_timeout_ms = 1000\n",
             itest_cert("predbridge-consumer.crt"), itest_cert("predbridge-consumer.key"));
    itest_daemon_t d;
    int http = start_with_http(&d, topic, extra);
    if (!itest_daemon_log_wait(&d, "not ready: the producer failed for good", 30000)) {
        itest_system("cat '%s' >&2", d.log_path);
        fail_msg("no fatal authorization failure");
    }
    const char *m = get(http, "/metrics")->body;
    if (sample(m, "predbridge_broker_authorization_failures_total") < 1) fail_msg("not counted:\n%s", m);
    expect_sample(m, "predbridge_ready", 0);
    http_reply_t *r = get(http, "/readyz");
    assert_int_equal(r->status, 503);
    if (!strstr(r->body, "authorization")) fail_msg("/readyz does not say why: %s", r->body);
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
}

/* ---- readiness follows the connection: refused certificate, broker outage ---- */

/* Polls /readyz until it answers want (deadline_ms from now); fails with the last answer if not. */
static http_reply_t *await_readyz(itest_daemon_t *d, int port, int want, int deadline_ms) {
    int64_t deadline = itest_now_ms() + deadline_ms;
    http_reply_t *r = get(port, "/readyz");
    while (r->status != want && itest_now_ms() < deadline) {
        poll(NULL, 0, 100);
        r = get(port, "/readyz");
    }
    if (r->status != want) {
        itest_system("cat '%s' >&2", d->log_path);
        fail_msg("/readyz is still %d (%s) after %d ms, expected %d", r->status, r->body, deadline_ms, want);
    }
    return r;
}

/* The readiness log lines ("ready", "not_ready") in order, as a string of '+' and '-'. */
static void readiness_sequence(const itest_daemon_t *d, char *out, size_t size) {
    FILE *f = fopen(d->log_path, "r");
    assert_non_null(f);
    char line[8192];
    size_t n = 0;
    while (fgets(line, sizeof line, f) && n + 1 < size) {
        if (strstr(line, " ready: a broker connection is up")) out[n++] = '+';
        else if (strstr(line, " not_ready: not ready: ")) out[n++] = '-';
    }
    out[n] = '\0';
    fclose(f);
}

/* A client certificate from a CA the broker does not trust (tls.ca holds that CA as well, so
 * predbridged's own check of its material passes): the broker refuses it in the handshake. Not
 * ready, naming why, counted as client_cert_refused and an authentication failure; good material
 * renamed into place and SIGHUP make it ready, with no restart. */
static void test_metrics_readyz_while_the_broker_refuses_our_certificate_and_after_the_fix(void **state) {
    (void)state;
    char topic[256], extra[4096], cert[700], key[700], ca[700];
    new_topic(topic, sizeof topic);
    itest_daemon_t d;
    itest_daemon_config(&d, topic, NULL); /* only for its fresh directory */
    snprintf(cert, sizeof cert, "%s/client.crt", d.dir);
    snprintf(key, sizeof key, "%s/client.key", d.dir);
    snprintf(ca, sizeof ca, "%s/cas.crt", d.dir);
    assert_int_equal(itest_system("cp '%s' '%s' && install -m 600 '%s' '%s'", itest_cert("untrusted-client.crt"), cert,
                                  itest_cert("untrusted-client.key"), key),
                     0);
    assert_int_equal(itest_system("cat '%s' '%s' > '%s'", itest_cert("ca.crt"), itest_cert("untrusted-ca.crt"), ca), 0);
    snprintf(extra, sizeof extra,
             "tls.ca = %s\ntls.cert = %s\ntls.key = %s\ntls.watch = false\nkafka.reconnect.backoff.max.ms = 1000\n", ca,
             cert, key);
    itest_daemon_t d2;
    int http = start_with_http(&d2, topic, extra);
    http_reply_t *r = await_readyz(&d2, http, 503, 30000);
    const char *m = get(http, "/metrics")->body;
    int64_t deadline = itest_now_ms() + 30000;
    while (sample(m, "predbridge_broker_authentication_failures_total") < 1 && itest_now_ms() < deadline) {
        poll(NULL, 0, 100);
        m = get(http, "/metrics")->body;
    }
    r = get(http, "/readyz");
    assert_int_equal(r->status, 503);
    /* Kafka's JSSE answers an unknown issuer with certificate_unknown (alert 46). */
    if (!strstr(r->body, "broker connection failed: ") || !strstr(r->body, "alert certificate unknown"))
        fail_msg("/readyz does not name the refusal: %s", r->body);
    m = get(http, "/metrics")->body; /* r and m share get's buffer */
    expect_only_tls_cause(m, "client_cert_refused");
    if (sample(m, "predbridge_broker_authentication_failures_total") < 1) fail_msg("not counted:\n%s", m);
    expect_sample(m, "predbridge_ready", 0);
    assert_int_equal(get(http, "/healthz")->status, 200);

    /* The fix: good material renamed over the files (key first), then SIGHUP. */
    assert_int_equal(itest_system("cp '%s' '%s.new' && install -m 600 '%s' '%s.new' && mv -f '%s.new' '%s' && "
                                  "mv -f '%s.new' '%s'",
                                  itest_cert("predbridged.crt"), cert, itest_cert("predbridged.key"), key, key, key,
                                  cert, cert),
                     0);
    int pid = d2.pid;
    kill(d2.pid, SIGHUP);
    r = await_readyz(&d2, http, 200, 30000);
    assert_string_equal(r->body, "ok\n");
    m = get(http, "/metrics")->body;
    expect_sample(m, "predbridge_ready", 1);
    expect_sample(m, "predbridge_tls_reloads_total{result=\"ok\"}", 1);
    assert_int_equal(d2.pid, pid);
    char seq[16];
    readiness_sequence(&d2, seq, sizeof seq);
    assert_string_equal(seq, "-+");
    assert_int_equal(itest_daemon_stop(&d2, 30000), 0);
    itest_system("rm -rf '%s'", d.dir);
}

/* ready -> the broker goes away (its process stops: connections close) -> not ready -> the broker
 * is back -> ready, each within a deadline, and exactly that sequence logged. */
static void test_metrics_readyz_follows_a_broker_outage_and_recovery(void **state) {
    (void)state;
    char topic[256];
    new_topic(topic, sizeof topic);
    itest_daemon_t d;
    int http = start_with_http(&d, topic, "kafka.reconnect.backoff.max.ms = 1000\n");
    await_readyz(&d, http, 200, 30000);

    itest_broker("pause");
    int64_t down_at = itest_now_ms();
    http_reply_t *r = await_readyz(&d, http, 503, 30000);
    fprintf(stderr, "it_metrics: not ready %lld ms after the broker stopped: %s", (long long)(itest_now_ms() - down_at),
            r->body);
    if (!strstr(r->body, "broker connection failed") && !strstr(r->body, "no broker connection is up"))
        fail_msg("/readyz does not say the broker is down: %s", r->body);
    assert_int_equal(get(http, "/healthz")->status, 200); /* the loop itself is fine */
    expect_sample(get(http, "/metrics")->body, "predbridge_ready", 0);

    itest_broker("resume");
    int64_t up_at = itest_now_ms();
    r = await_readyz(&d, http, 200, 60000);
    fprintf(stderr, "it_metrics: ready again %lld ms after the broker was back\n", (long long)(itest_now_ms() - up_at));
    expect_sample(get(http, "/metrics")->body, "predbridge_ready", 1);
    char seq[16];
    readiness_sequence(&d, seq, sizeof seq);
    assert_string_equal(seq, "+-+");
    assert_int_equal(itest_daemon_stop(&d, 30000), 0);
}

/* ---- secrets ---- */

/* A JSON log line's integer field key, or fails naming the line. */
static long long json_num(json_t *o, const char *key, const char *line) {
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) fail_msg("no integer '%s' in %s", key, line);
    return (long long)json_integer_value(v);
}

static const char *json_str(json_t *o, const char *key, const char *line) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) fail_msg("no string '%s' in %s", key, line);
    return json_string_value(v);
}

/* After run_workload with log.format = json and log.level = debug: every line is a JSON object
 * with time, level, program, event and msg, and the events a machine reads have their fields:
 * tls.material (file, result), conn.open (pid, uid), line.rejected (pid, uid, line, reason), broker.tls
 * (broker, version, cipher). */
static void expect_structured_json_log(const itest_daemon_t *d) {
    FILE *f = fopen(d->log_path, "r");
    assert_non_null(f);
    char line[8192], reasons[512] = "";
    int lines = 0, material = 0, opened = 0, rejected = 0, tls = 0;
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    while (fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL);
        if (!json_is_object(o)) fail_msg("not a JSON log line: %s", line);
        const char *time = json_str(o, "time", line), *level = json_str(o, "level", line);
        const char *event = json_str(o, "event", line);
        (void)json_str(o, "msg", line);
        assert_string_equal(json_str(o, "program", line), "predbridged");
        if (strlen(time) != 24 || time[10] != 'T' || time[23] != 'Z') fail_msg("time is not RFC 3339 UTC: %s", line);
        int known = 0;
        for (int i = 0; i < 4; i++) known |= !strcmp(level, levels[i]);
        if (!known) fail_msg("unknown level in %s", line);
        if (!strcmp(event, "tls.material") && !strcmp(level, "info")) {
            assert_string_equal(json_str(o, "file", line), itest_cert("predbridged.crt"));
            assert_string_equal(json_str(o, "result", line), "ok");
            material++;
        } else if (!strcmp(event, "conn.open")) {
            assert_int_equal(json_num(o, "pid", line), getpid());
            assert_int_equal(json_num(o, "uid", line), getuid());
            opened++;
        } else if (!strcmp(event, "line.rejected")) {
            assert_int_equal(json_num(o, "pid", line), getpid());
            assert_int_equal(json_num(o, "uid", line), getuid());
            assert_true(json_num(o, "line", line) > N_VALID);
            snprintf(reasons + strlen(reasons), sizeof reasons - strlen(reasons), "%s ", json_str(o, "reason", line));
            rejected++;
        } else if (!strcmp(event, "broker.tls")) {
            /* The broker's host:port (the rig's one broker is its bootstrap), what the handshake negotiated. */
            assert_string_equal(json_str(o, "broker", line), itest_env()->bootstrap);
            assert_string_equal(json_str(o, "version", line), "TLSv1.3");
            if (strncmp(json_str(o, "cipher", line), "TLS_", 4)) fail_msg("not a TLS 1.3 cipher suite: %s", line);
            tls++;
        }
        json_decref(o);
        lines++;
    }
    fclose(f);
    assert_true(lines > 3);
    assert_int_equal(material, 1);
    assert_true(tls >= 1);
    assert_int_equal(opened, 2); /* itest_daemon_start's probe, the workload */
    assert_int_equal(rejected, 7);
    assert_string_equal(reasons, "not_json not_object invalid_utf8 missing_field bad_field too_large partial ");
}

static void test_metrics_no_private_key_or_passphrase_in_logs_or_metrics(void **state) {
    (void)state;
    char topic[256], extra[2048], key[700], pass[700];
    new_topic(topic, sizeof topic);
    itest_daemon_t d;
    /* An encrypted copy of the client key, its passphrase in a file. */
    const char *secret = "correct-horse-battery-staple-4711";
    itest_daemon_config(&d, topic, NULL); /* only for its fresh directory */
    snprintf(pass, sizeof pass, "%s/key.pass", d.dir);
    snprintf(key, sizeof key, "%s/client.key", d.dir);
    FILE *f = fopen(pass, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", secret);
    fclose(f);
    assert_int_equal(
        itest_system(
            "chmod 600 '%s' && openssl pkey -in '%s' -aes256 -passout 'file:%s' -out '%s' && chmod 600 '%s'",
            pass, itest_cert("predbridged.key"), pass, key, key),
        0);
    snprintf(extra, sizeof extra,
             "tls.key = %s\ntls.key_passphrase_file = %s\nlog.level = debug\nlog.format = "
             "json\nmessage.max_bytes = 256\n",
             key, pass);
    itest_daemon_t d2;
    int http = start_with_http(&d2, topic, extra);
    run_workload(&d2);
    const char *m = get(http, "/metrics")->body;
    expect_sample(m, "predbridge_predictions_delivered_total", N_VALID);
    char mpath[700];
    snprintf(mpath, sizeof mpath, "%s/metrics.txt", d2.dir);
    f = fopen(mpath, "w");
    assert_non_null(f);
    fputs(m, f);
    fclose(f);
    assert_int_equal(itest_daemon_stop(&d2, 30000), 0);

    expect_structured_json_log(&d2);

    /* Neither the passphrase nor any part of either key's PEM text appears. */
    const char *files[] = {d2.log_path, mpath};
    const char *keys[] = {key, itest_cert("predbridged.key")};
    for (int i = 0; i < 2; i++) {
        for (int k = 0; k < 2; k++) {
            const char *leak = itest_secret_in(files[i], keys[k], secret);
            if (leak) fail_msg("%s contains %s", files[i], leak);
        }
    }
    itest_system("rm -rf '%s'", d.dir);
}

/* ---- configuration ---- */

static void test_metrics_http_listen_refuses_a_non_loopback_address(void **state) {
    (void)state;
    itest_daemon_t d;
    itest_daemon_config(&d, "predictions", NULL);
    char args[1024], out[8192];
    snprintf(args, sizeof args, "--config '%s' -o http.listen=0.0.0.0:9464 --check-config", d.config);
    assert_int_not_equal(itest_daemon_run(args, out, sizeof out), 0);
    if (!strstr(out, "http.listen") || !strstr(out, "not a loopback address"))
        fail_msg("unclear error: %s", out);
    itest_system("rm -rf '%s'", d.dir);
}

static void test_metrics_http_listen_on_a_busy_port_refuses_to_start(void **state) {
    (void)state;
    proxy_t busy;
    int port = reserve_port(&busy);
    assert_int_equal(listen(busy.listen_fd, 1), 0);
    char extra[128];
    snprintf(extra, sizeof extra, "http.listen = 127.0.0.1:%d", port);
    itest_daemon_t d;
    itest_daemon_config(&d, "predictions", extra);
    int status = -1;
    /* The endpoint starts before the socket is created: the socket never appears. */
    if (itest_daemon_start(&d, &status) != -1) {
        itest_system("cat '%s' >&2", d.log_path);
        itest_daemon_stop(&d, 10000);
        fail_msg("predbridged started although port %d is taken", port);
    }
    assert_int_equal(status, 1);
    assert_true(itest_daemon_log_wait(&d, "cannot listen: Address already in use", 1000));
    assert_true(itest_daemon_log_wait(&d, "http.listen '127.0.0.1:", 1000));
    close(busy.listen_fd);
    itest_system("rm -rf '%s'", d.dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_http_listen_refuses_a_non_loopback_address),
        cmocka_unit_test(test_metrics_http_listen_on_a_busy_port_refuses_to_start),
        cmocka_unit_test(test_metrics_counters_are_exact_after_a_known_workload),
        cmocka_unit_test(test_metrics_readyz_is_503_while_unreachable_and_200_once_connected),
        cmocka_unit_test(test_metrics_tls12_listener_counts_protocol_version),
        cmocka_unit_test(test_metrics_badhost_listener_counts_hostname),
        cmocka_unit_test(test_metrics_principal_without_write_acl_counts_authorization_and_is_not_ready),
        cmocka_unit_test(test_metrics_readyz_while_the_broker_refuses_our_certificate_and_after_the_fix),
        cmocka_unit_test_teardown(test_metrics_readyz_follows_a_broker_outage_and_recovery, itest_broker_resume_if_paused),
        cmocka_unit_test(test_metrics_no_private_key_or_passphrase_in_logs_or_metrics),
    };
    if (getenv("PB_ITEST_FILTER")) cmocka_set_test_filter(getenv("PB_ITEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
