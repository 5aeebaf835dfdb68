/* bench_common.h: small helpers shared by the benchmark programs: clocks and librdkafka TLS settings. */
#ifndef PB_BENCH_COMMON_H
#define PB_BENCH_COMMON_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline int64_t bench_clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
static inline int64_t bench_realtime_ns(void) {
    return bench_clock_ns(CLOCK_REALTIME);
}
static inline int64_t bench_mono_ns(void) {
    return bench_clock_ns(CLOCK_MONOTONIC);
}

/* Sets one property or exits with the key and librdkafka's reason (benchmark tools only). */
static inline void bench_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                                  const char *prog) {
    char errstr[512];
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: cannot set %s=%s: %s\n", prog, key, value, errstr);
        exit(2);
    }
}

/* The TLS settings predbridge uses: mTLS, CA chain and host name verified. */
static inline void bench_conf_tls(rd_kafka_conf_t *conf, const char *bootstrap, const char *ca,
                                  const char *cert, const char *key, const char *prog) {
    bench_conf_set(conf, "bootstrap.servers", bootstrap, prog);
    bench_conf_set(conf, "security.protocol", "ssl", prog);
    bench_conf_set(conf, "ssl.ca.location", ca, prog);
    bench_conf_set(conf, "ssl.certificate.location", cert, prog);
    bench_conf_set(conf, "ssl.key.location", key, prog);
    bench_conf_set(conf, "ssl.endpoint.identification.algorithm", "https", prog);
    bench_conf_set(conf, "enable.ssl.certificate.verification", "true", prog);
}

/* The librdkafka defaults predbridge's own clients start from (pbtls_kafka_client_defaults, and
 * libpredbridge's pre-fetch bound for a consumer), so that the raw tools are measured alike. */
static inline void bench_conf_like_predbridge(rd_kafka_conf_t *conf, int consumer, const char *prog) {
    bench_conf_set(conf, "socket.nagle.disable", "true", prog);
    if (consumer) bench_conf_set(conf, "queued.min.messages", "10000000", prog);
}

#endif
