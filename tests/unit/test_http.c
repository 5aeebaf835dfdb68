/* test_http: predbridged's HTTP endpoint on loopback, no broker: status codes, content type, health. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
/* cmocka needs the three above first */
#include <cmocka.h>

#include "http.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char g_raw[1 << 16];

/* Sends one HTTP/1.0 request and returns the whole raw response (status line, headers, body). */
static const char *request(int port, const char *method, const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t len = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0) break; /* deadline only */
        ssize_t got = read(fd, g_raw + len, sizeof g_raw - 1 - len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        len += (size_t)got;
    }
    close(fd);
    g_raw[len] = '\0';
    return g_raw;
}

static int status_of(const char *raw) {
    int st = 0;
    return sscanf(raw, "HTTP/1.%*d %d", &st) == 1 ? st : -1;
}

static const char *body_of(const char *raw) {
    const char *b = strstr(raw, "\r\n\r\n");
    return b ? b + 4 : "";
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    pbm_metrics_t *m;
    pbd_http_t *h;
    int port;
} fixture_t;

static int setup(void **state) {
    static fixture_t f;
    char err[300];
    f.m = pbm_new();
    f.h = pbd_http_start("127.0.0.1:0", f.m, err, sizeof err);
    if (!f.h) fail_msg("%s", err);
    f.port = pbd_http_port(f.h);
    *state = &f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    pbd_http_stop(f->h);
    pbm_free(f->m);
    return 0;
}

static void test_http_metrics_is_prometheus_text(void **state) {
    fixture_t *f = *state;
    pbm_received(f->m);
    const char *r = request(f->port, "GET", "/metrics");
    assert_int_equal(status_of(r), 200);
    assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_non_null(strstr(body_of(r), "\npredbridge_predictions_received_total 1\n"));
    r = request(f->port, "HEAD", "/metrics");
    assert_int_equal(status_of(r), 200);
    assert_string_equal(body_of(r), "");
}

static void test_http_healthz_follows_the_heartbeat(void **state) {
    fixture_t *f = *state;
    const char *r = request(f->port, "GET", "/healthz");
    assert_int_equal(status_of(r), 503);
    assert_string_equal(body_of(r), "the event loop has not started\n");
    pbm_heartbeat(f->m, mono_ms());
    r = request(f->port, "GET", "/healthz");
    assert_int_equal(status_of(r), 200);
    assert_string_equal(body_of(r), "ok\n");
    pbm_heartbeat(f->m, mono_ms() - PBM_HEALTH_STALE_MS - 1000); /* a stuck loop */
    r = request(f->port, "GET", "/healthz");
    assert_int_equal(status_of(r), 503);
    assert_non_null(strstr(body_of(r), "the event loop has not run for"));
}

static void test_http_readyz_says_why_not(void **state) {
    fixture_t *f = *state;
    const char *r = request(f->port, "GET", "/readyz");
    assert_int_equal(status_of(r), 503);
    assert_string_equal(body_of(r), "starting: no broker connection established yet\n");
    pbm_not_ready(f->m, "_SSL: tlsv1 alert protocol version");
    r = request(f->port, "GET", "/readyz");
    assert_int_equal(status_of(r), 503);
    assert_string_equal(body_of(r), "broker connection failed: _SSL: tlsv1 alert protocol version\n");
    pbm_accepted(f->m);
    pbm_delivery(f->m, RD_KAFKA_RESP_ERR_NO_ERROR);
    r = request(f->port, "GET", "/readyz");
    assert_int_equal(status_of(r), 200);
}

static void test_http_other_paths_and_methods_are_refused(void **state) {
    fixture_t *f = *state;
    assert_int_equal(status_of(request(f->port, "GET", "/")), 404);
    assert_int_equal(status_of(request(f->port, "GET", "/metrics/x")), 404);
    assert_int_equal(status_of(request(f->port, "POST", "/metrics")), 405);
    assert_int_equal(status_of(request(f->port, "DELETE", "/readyz")), 405);
    /* RFC 9110 15.5.6: a 405 says which methods are served. */
    assert_non_null(strstr(request(f->port, "PUT", "/metrics"), "\r\nAllow: GET, HEAD\r\n"));
}

static void test_http_start_refuses_non_loopback_and_busy_ports(void **state) {
    fixture_t *f = *state;
    char err[300], addr[64];
    assert_null(pbd_http_start("0.0.0.0:0", f->m, err, sizeof err));
    assert_non_null(strstr(err, "http.listen '0.0.0.0:0': not a loopback address"));
    snprintf(addr, sizeof addr, "127.0.0.1:%d", f->port);
    assert_null(pbd_http_start(addr, f->m, err, sizeof err));
    assert_non_null(strstr(err, "cannot listen: Address already in use"));
    assert_null(pbd_http_start("127.0.0.1", f->m, err, sizeof err));
    assert_non_null(strstr(err, "expected host:port"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_metrics_is_prometheus_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_healthz_follows_the_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_readyz_says_why_not, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_other_paths_and_methods_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_start_refuses_non_loopback_and_busy_ports, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
