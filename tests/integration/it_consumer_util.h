/* it_consumer_util.h: what the libpredbridge integration tests (it_consumer*.c) share: callbacks that
 * record what the consumer delivered and reported, an independent librdkafka producer with chosen
 * pb-id headers, and consumer set-up against the local mTLS broker. Header-only (static inline),
 * because every it_*.c is its own executable. */
#ifndef PB_IT_CONSUMER_UTIL_H
#define PB_IT_CONSUMER_UTIL_H

#include "itest.h"

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <predbridge/predbridge.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXREC 512
#define MAXERR 64

typedef struct rec {
    char topic[256], id[128], producer[128], model_version[64], key[64];
    char value[512];
    int32_t partition;
    int64_t offset, timestamp_ms;
    int has_json;
} rec_t;

/* What the callbacks saw, and how on_prediction behaves. */
typedef struct sink {
    rec_t recs[MAXREC];
    int n;
    struct {
        pb_err_t code;
        char cause[1024];
        int64_t offset; /* of the message, -1 without one */
    } errs[MAXERR];
    int n_errs;
    int retry_offset; /* on_prediction answers PB_RETRY once for this offset (-1: never) */
    int retried;
    int64_t retry_at_ms, redelivered_at_ms;
    int stop_after; /* pb_consumer_stop after this many records (0: never) */
    pb_consumer_t *c;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} sink_t;

static inline void sink_init(sink_t *s) {
    memset(s, 0, sizeof *s);
    s->retry_offset = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static inline void copy_text(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src ? src : "");
}

static inline pb_action_t on_prediction(const pb_message_t *m, void *opaque) {
    sink_t *s = opaque;
    if (pb_message_offset(m) == s->retry_offset && !s->retried) {
        s->retried = 1;
        s->retry_at_ms = itest_now_ms();
        return PB_RETRY;
    }
    if (pb_message_offset(m) == s->retry_offset && !s->redelivered_at_ms)
        s->redelivered_at_ms = itest_now_ms();
    pthread_mutex_lock(&s->lock);
    if (s->n < MAXREC) {
        rec_t *r = &s->recs[s->n];
        size_t len, klen;
        const char *v = pb_message_value(m, &len), *k = pb_message_key(m, &klen);
        copy_text(r->topic, sizeof r->topic, pb_message_topic(m));
        copy_text(r->id, sizeof r->id, pb_message_id(m));
        copy_text(r->producer, sizeof r->producer, pb_message_producer(m));
        copy_text(r->model_version, sizeof r->model_version, pb_message_model_version(m));
        snprintf(r->value, sizeof r->value, "%.*s", (int)len, v);
        snprintf(r->key, sizeof r->key, "%.*s", k ? (int)klen : 0, k ? k : "");
        r->partition = pb_message_partition(m);
        r->offset = pb_message_offset(m);
        r->timestamp_ms = pb_message_timestamp_ms(m);
        r->has_json = json_is_object(pb_message_json(m));
        s->n++;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (s->stop_after && s->n >= s->stop_after) pb_consumer_stop(s->c);
    return PB_COMMIT;
}

static inline void on_error(pb_err_t code, const char *cause, const pb_message_t *m, void *opaque) {
    sink_t *s = opaque;
    if (getenv("PB_ITEST_VERBOSE")) fprintf(stderr, "on_error %s: %s\n", pb_err_name(code), cause);
    if (s->n_errs >= MAXERR) return;
    s->errs[s->n_errs].code = code;
    copy_text(s->errs[s->n_errs].cause, sizeof s->errs[0].cause, cause);
    s->errs[s->n_errs].offset = m ? pb_message_offset(m) : -1;
    s->n_errs++;
}

static inline int count_errors(const sink_t *s, pb_err_t code, const char *needle) {
    int n = 0;
    for (int i = 0; i < s->n_errs; i++)
        n += s->errs[i].code == code && (!needle || strstr(s->errs[i].cause, needle));
    return n;
}

/* ---- producing with an independent client (plain librdkafka, predbridged's certificate) ---- */

static inline void dr_count(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk, (void)opaque;
    if (m->err) fail_msg("delivery failed: %s", rd_kafka_err2str(m->err));
}

/* Produces values[i] to partition parts[i] (or partition 0 if parts is NULL), with key "k<i>", headers
 * pb-id ids[i] (none when ids or ids[i] is NULL) and pb-producer "it-producer", and timestamp
 * base_ts + i, with an independent idempotent producer; returns once the broker has them all. */
static inline void produce_with_ids(const char *topic, const char *const *values, const char *const *ids,
                                    const int *parts, int n, int64_t base_ts) {
    char errstr[512];
    rd_kafka_conf_t *conf = itest_conf(itest_env()->bootstrap, "predbridged");
    itest_set(conf, "enable.idempotence", "true");
    rd_kafka_conf_set_dr_msg_cb(conf, dr_count);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    assert_non_null(rk);
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);
        if (ids && ids[i]) rd_kafka_header_add(h, "pb-id", -1, ids[i], -1);
        rd_kafka_header_add(h, "pb-producer", -1, "it-producer", -1);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(parts ? parts[i] : 0),
            RD_KAFKA_V_VALUE((void *)values[i], strlen(values[i])), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_TIMESTAMP(base_ts + i), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        assert_int_equal(err, 0);
    }
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
}

/* As produce_with_ids, with pb-id "id-<tag>-<i>": every record distinct. */
static inline void produce(const char *topic, const char *const *values, const int *parts, int n,
                           const char *tag, int64_t base_ts) {
    static char bufs[MAXREC][64];
    const char *ids[MAXREC];
    assert_true(n <= MAXREC);
    for (int i = 0; i < n; i++) {
        snprintf(bufs[i], sizeof bufs[i], "id-%s-%d", tag, i);
        ids[i] = bufs[i];
    }
    produce_with_ids(topic, values, ids, parts, n, base_ts);
}

static inline char *valid_value(int i) {
    static char bufs[MAXREC][96];
    snprintf(bufs[i], sizeof bufs[i],
             "{\"model_version\":\"m-%d\",\"prediction\":{\"score\":%d.25},\"i\":%d}", i % 3, i, i);
    return bufs[i];
}

/* ---- consumers ---- */

static inline pb_config_t *consumer_config(const char *topic, const char *group, const char *extra_kv) {
    char err[1024];
    pb_config_t *c = pb_config_new();
    const char *kv[][2] = {
        {"bootstrap.servers", itest_env()->bootstrap},
        {"tls.ca", itest_cert("ca.crt")},
        {"tls.cert", itest_cert("predbridge-consumer.crt")},
        {"tls.key", itest_cert("predbridge-consumer.key")},
        {"group.id", group},
        {"topics", topic},
        {"auto.offset.reset", "earliest"},
        /* A destroyed member's partitions move on after this, not after the default 45 s. */
        {"kafka.session.timeout.ms", "6000"},
        {"kafka.heartbeat.interval.ms", "500"},
        {"consumer.retry_backoff_ms", "300"},
        /* A topic created just before may be unknown to the first metadata answer; look again soon. */
        {"kafka.topic.metadata.refresh.interval.ms", "2000"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (pb_config_set(c, kv[i][0], kv[i][1], err, sizeof err) != PB_OK) fail_msg("%s", err);
    /* extra_kv: "key=value\nkey=value" */
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", extra_kv ? extra_kv : "");
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        assert_non_null(eq);
        *eq = '\0';
        if (pb_config_set(c, line, eq + 1, err, sizeof err) != PB_OK) fail_msg("%s", err);
    }
    return c;
}

static inline pb_consumer_t *new_consumer(const char *topic, const char *group, const char *extra,
                                          sink_t *s) {
    char err[1024];
    pb_config_t *conf = consumer_config(topic, group, extra);
    pb_consumer_t *c = pb_consumer_new(conf, on_prediction, on_error, s, err, sizeof err);
    pb_config_destroy(conf); /* the consumer keeps a copy of what it needs */
    if (!c) fail_msg("pb_consumer_new: %s", err);
    s->c = c;
    return c;
}

/* Polls until s has `want` records (or an error of code `err_code` when != PB_OK), or timeout. */
static inline void poll_until(pb_consumer_t *c, sink_t *s, int want, pb_err_t err_code, int timeout_ms) {
    int64_t deadline = itest_now_ms() + timeout_ms;
    while (itest_now_ms() < deadline) {
        if (want > 0 && s->n >= want) return;
        if (err_code != PB_OK && count_errors(s, err_code, NULL) > 0) return;
        pb_err_t rc = pb_consumer_poll(c, 200);
        assert_true(rc == PB_OK || rc == PB_ERR_STOPPED);
    }
    /* Timed out: say what the consumer saw, for whoever reads the failure. */
    for (int i = 0; i < s->n_errs; i++)
        fprintf(stderr, "  seen %s: %s\n", pb_err_name(s->errs[i].code), s->errs[i].cause);
}

/* One counter of c, read through the public snapshot. */
static inline uint64_t stat_of(pb_consumer_t *c, pb_stat_t which) {
    pb_stats_t *st = pb_consumer_stats(c);
    assert_non_null(st);
    uint64_t v = pb_stats_get(st, which);
    pb_stats_destroy(st);
    return v;
}

/* Polls until the consumer has examined `want` records (PB_STAT_RECEIVED), so that records which are
 * not delivered (duplicates, skipped ones) are known to be handled, not merely not yet fetched.
 * Fails the test at the deadline. */
static inline void poll_until_received(pb_consumer_t *c, uint64_t want, int timeout_ms) {
    int64_t deadline = itest_now_ms() + timeout_ms;
    while (stat_of(c, PB_STAT_RECEIVED) < want) {
        if (itest_now_ms() >= deadline)
            fail_msg("received %llu of %llu records", (unsigned long long)stat_of(c, PB_STAT_RECEIVED),
                     (unsigned long long)want);
        pb_err_t rc = pb_consumer_poll(c, 200);
        assert_true(rc == PB_OK || rc == PB_ERR_STOPPED);
    }
}

static inline void unique_group(char *out, size_t size, const char *name) {
    snprintf(out, size, "it-consumer-%s-%d-%lld", name, (int)getpid(), (long long)itest_now_ms());
}

/* ---- predbridge tail ---- */

/* Runs `predbridge tail args redirect` (redirect: "2>&1", or "2>'file'" to keep stderr apart) and
 * returns its exit status, with its standard output (and what redirect sends there) in out. */
static inline int run_tail_redirect(const char *args, const char *redirect, char *out, size_t out_size) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "timeout 120 '%s/src/cli/predbridge' tail %s %s", getenv("PB_BUILD_DIR"), args,
             redirect);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, out_size - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline int run_tail(const char *args, char *out, size_t out_size) {
    return run_tail_redirect(args, "2>&1", out, out_size);
}

/* A consumer config file for tail: the local broker, the consumer's certificate, topic. */
static inline void write_tail_config(char *path, size_t size, const char *topic) {
    snprintf(path, size, "/tmp/pbit-tail-%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "bootstrap.servers = %s\ntls.ca = %s\ntls.cert = %s\ntls.key = %s\ntopics = %s\n",
            itest_env()->bootstrap, itest_cert("ca.crt"), itest_cert("predbridge-consumer.crt"),
            itest_cert("predbridge-consumer.key"), topic);
    fclose(f);
}

#endif
