/* pb_benchconsumer.c: benchmark consumer: counts predictions, measures throughput and latency. */
#include "bench_common.h"

#ifdef PB_BENCH_HAVE_LIBPREDBRIDGE
#include <predbridge/consumer.h>

#include "common/record.h"
#endif

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct copts {
    const char *bootstrap, *topic, *ca, *cert, *key;
    const char *group; /* consumer group of the libpredbridge source */
    uint64_t count;
    int timeout_s;
} copts_t;

/* Called for each record's value, on the thread that calls the source's poll. */
typedef void (*record_fn)(void *ctx, const char *value, size_t len, int64_t timestamp_ms);

/* Where records come from: plain librdkafka without and with a group, the group loop with
 * libpredbridge's record check, and (when built) libpredbridge itself. */
typedef struct source_ops {
    const char *name;
    /* Connects and positions at the start of the topic; returns once fetching can start at once. */
    void *(*open)(const copts_t *o, char *err, size_t err_size);
    /* Serves records for up to timeout_ms. Returns -1 on a fatal error (err filled). */
    int (*poll)(void *h, int timeout_ms, record_fn fn, void *ctx, char *err, size_t err_size);
    void (*close)(void *h);
} source_ops_t;

/* ---- source: plain librdkafka, all partitions assigned from the beginning ---- */

static void *rdk_open(const copts_t *o, char *err, size_t err_size) {
    const char *prog = "pb_benchconsumer";
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    bench_conf_tls(conf, o->bootstrap, o->ca, o->cert, o->key, prog);
    bench_conf_like_predbridge(conf, 1, prog);
    bench_conf_set(conf, "group.id", "predictions-bench", prog);
    bench_conf_set(conf, "enable.auto.commit", "false", prog);
    bench_conf_set(conf, "enable.partition.eof", "false", prog);
    bench_conf_set(conf, "client.id", "pb_benchconsumer", prog);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, err_size);
    if (!rk) return NULL;
    rd_kafka_poll_set_consumer(rk);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, o->topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 30000);
    rd_kafka_topic_destroy(t);
    if (e || md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(err, err_size, "metadata of topic %s: %s", o->topic,
                 rd_kafka_err2str(e               ? e
                                  : md->topic_cnt ? md->topics[0].err
                                                  : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        if (md) rd_kafka_metadata_destroy(md);
        rd_kafka_destroy(rk);
        return NULL;
    }
    int parts = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int i = 0; i < parts; i++)
        rd_kafka_topic_partition_list_add(l, o->topic, md->topics[0].partitions[i].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    e = rd_kafka_assign(rk, l);
    /* Querying each partition's offsets opens the connection to its leader before we say "ready".
     * Right after the topic was created the broker may still answer "not leader": refresh the
     * metadata (a round trip) and ask again, for up to 30 s. */
    int64_t deadline = bench_mono_ns() + 30000000000LL;
    for (int i = 0; !e && i < l->cnt; i++) {
        int64_t lo, hi;
        for (;;) {
            e = rd_kafka_query_watermark_offsets(rk, o->topic, l->elems[i].partition, &lo, &hi, 30000);
            int retriable = e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                            e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                            e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__TRANSPORT;
            if (!retriable || bench_mono_ns() > deadline) break;
            rd_kafka_topic_t *rt = rd_kafka_topic_new(rk, o->topic, NULL);
            const struct rd_kafka_metadata *rmd = NULL;
            if (!rd_kafka_metadata(rk, 0, rt, &rmd, 2000)) rd_kafka_metadata_destroy(rmd);
            rd_kafka_topic_destroy(rt);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(err, err_size, "assigning %s: %s", o->topic, rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

/* How a source's loop treats each record: store its offset after handling it (a group's loop);
 * check it is a prediction first, with the check libpredbridge makes (see rdkgc_poll). */
enum { SERVE_STORE = 1, SERVE_CHECK = 2 };

#ifdef PB_BENCH_HAVE_LIBPREDBRIDGE
static int record_is_prediction(const rd_kafka_message_t *m) {
    static const char *const required[] = {"model_version", "prediction"}; /* message.required_fields */
    json_t *json = NULL;
    char model_version[256], reason[512];
    pbrec_status_t st = pbrec_check(m->payload ? m->payload : "", m->len, required, 2, &json, model_version,
                                    sizeof model_version, reason, sizeof reason);
    json_decref(json);
    return st == PBREC_OK;
}
#else
static int record_is_prediction(const rd_kafka_message_t *m) {
    (void)m;
    return 1;
}
#endif

/* Serves records as `how` says (SERVE_*). */
static int rdk_serve(rd_kafka_t *rk, int timeout_ms, record_fn fn, void *ctx, char *err, size_t err_size,
                     int how) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, timeout_ms);
    while (m) {
        if (m->err) {
            snprintf(err, err_size, "%s", rd_kafka_message_errstr(m));
            int fatal = m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && m->err != RD_KAFKA_RESP_ERR__TRANSPORT;
            rd_kafka_message_destroy(m);
            if (fatal) return -1;
        } else {
            if (!(how & SERVE_CHECK) || record_is_prediction(m))
                fn(ctx, m->payload, m->len, rd_kafka_message_timestamp(m, NULL));
            if (how & SERVE_STORE) rd_kafka_offset_store(m->rkt, m->partition, m->offset);
            rd_kafka_message_destroy(m);
        }
        m = rd_kafka_consumer_poll(rk, 0);
    }
    return 0;
}

static int rdk_poll(void *h, int timeout_ms, record_fn fn, void *ctx, char *err, size_t err_size) {
    return rdk_serve(h, timeout_ms, fn, ctx, err, err_size, 0);
}

static void rdk_close(void *h) {
    rd_kafka_t *rk = h;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* ---- source: plain librdkafka as an application would use it with a group: subscribe, poll, store
 * each offset after handling the record, commit on close. The like-for-like ceiling for
 * libpredbridge (which adds validation, the message view and the callback). ---- */

static void *rdkg_open(const copts_t *o, char *err, size_t err_size) {
    const char *prog = "pb_benchconsumer";
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    bench_conf_tls(conf, o->bootstrap, o->ca, o->cert, o->key, prog);
    bench_conf_like_predbridge(conf, 1, prog);
    bench_conf_set(conf, "group.id", o->group, prog);
    bench_conf_set(conf, "auto.offset.reset", "earliest", prog);
    bench_conf_set(conf, "enable.auto.commit", "false", prog);
    bench_conf_set(conf, "enable.auto.offset.store", "false", prog);
    bench_conf_set(conf, "client.id", "pb_benchconsumer", prog);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, err_size);
    if (!rk) return NULL;
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, o->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(err, err_size, "subscribe %s: %s", o->topic, rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

static int rdkg_poll(void *h, int timeout_ms, record_fn fn, void *ctx, char *err, size_t err_size) {
    return rdk_serve(h, timeout_ms, fn, ctx, err, err_size, SERVE_STORE);
}

/* The same loop checking each record the way libpredbridge does before its callback (valid UTF-8
 * JSON object with the required fields: pbrec_check, the library's own code) and skipping those that
 * are not. libpredbridge / this is what the library's dispatch costs on top of a loop that an
 * application would need anyway before trusting a record. */
static int rdkgc_poll(void *h, int timeout_ms, record_fn fn, void *ctx, char *err, size_t err_size) {
    return rdk_serve(h, timeout_ms, fn, ctx, err, err_size, SERVE_STORE | SERVE_CHECK);
}

static void rdkg_close(void *h) {
    rd_kafka_t *rk = h;
    rd_kafka_commit(rk, NULL, 0);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

#ifdef PB_BENCH_HAVE_LIBPREDBRIDGE
/* ---- source: libpredbridge (pb_consumer_*): subscribes with a fresh group, from the earliest offset ---- */

typedef struct lib_source {
    pb_consumer_t *c;
    record_fn fn;
    void *ctx;
    char error[512];
} lib_source_t;

static pb_action_t lib_on_prediction(const pb_message_t *msg, void *opaque) {
    lib_source_t *ls = opaque;
    size_t len = 0;
    const void *v = pb_message_value(msg, &len);
    ls->fn(ls->ctx, v, len, pb_message_timestamp_ms(msg));
    return PB_COMMIT;
}

static void lib_on_error(pb_err_t code, const char *cause, const pb_message_t *msg, void *opaque) {
    (void)msg;
    lib_source_t *ls = opaque;
    /* Broker hiccups are retried by the library; anything else ends the run with its cause. */
    if (code != PB_ERR_BROKER && !ls->error[0]) snprintf(ls->error, sizeof ls->error, "%s", cause);
}

static void *lib_open(const copts_t *o, char *err, size_t err_size) {
    lib_source_t *ls = calloc(1, sizeof *ls);
    pb_config_t *conf = pb_config_new();
    if (!ls || !conf) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    const char *kv[][2] = {{"bootstrap.servers", o->bootstrap},
                           {"tls.ca", o->ca},
                           {"tls.cert", o->cert},
                           {"tls.key", o->key},
                           {"topics", o->topic},
                           {"group.id", o->group},
                           {"auto.offset.reset", "earliest"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (pb_config_set(conf, kv[i][0], kv[i][1], err, err_size) != PB_OK) goto fail;
    ls->c = pb_consumer_new(conf, lib_on_prediction, lib_on_error, ls, err, err_size);
    if (!ls->c) goto fail;
    pb_config_destroy(conf);
    return ls;
fail:
    pb_config_destroy(conf);
    free(ls);
    return NULL;
}

static int lib_poll(void *h, int timeout_ms, record_fn fn, void *ctx, char *err, size_t err_size) {
    lib_source_t *ls = h;
    ls->fn = fn;
    ls->ctx = ctx;
    pb_err_t e = pb_consumer_poll(ls->c, timeout_ms);
    if (e != PB_OK || ls->error[0]) {
        snprintf(err, err_size, "%s", ls->error[0] ? ls->error : pb_strerror(e));
        return -1;
    }
    return 0;
}

static void lib_close(void *h) {
    lib_source_t *ls = h;
    pb_consumer_close(ls->c, NULL, 0);
    pb_consumer_destroy(ls->c);
    free(ls);
}
#endif

static const source_ops_t sources[] = {
    {"rdkafka", rdk_open, rdk_poll, rdk_close},
    {"rdkafka-group", rdkg_open, rdkg_poll, rdkg_close},
#ifdef PB_BENCH_HAVE_LIBPREDBRIDGE
    {"rdkafka-group-check", rdkg_open, rdkgc_poll, rdkg_close},
    {"libpredbridge", lib_open, lib_poll, lib_close},
#endif
};

/* ---- measurement ---- */

typedef struct measure {
    uint64_t expected, warmup; /* seq 0..warmup-1 must arrive but are not measured */
    uint64_t count, unique, unparsed, extra, value_bytes, measured;
    int64_t *latency_ns; /* one per measured record */
    uint8_t *seen;       /* by seq */
    int64_t first_sent_ns, first_arrival_ns, last_arrival_ns;
    /* CPU time of the thread that polls (the application's), at the first measured arrival and when
     * the last record arrived: its cost per record, which the hypervisor's steal does not inflate. */
    int64_t first_cpu_ns, last_cpu_ns;
    FILE *dump; /* optional: "seq sent_ns arrival_ns kafka_timestamp_ms" per record */
} measure_t;

static int64_t field_int(const char *v, size_t len, const char *name, size_t name_len, int *ok) {
    const char *p = memmem(v, len, name, name_len);
    *ok = 0;
    if (!p) return 0;
    p += name_len;
    int64_t x = 0;
    const char *end = v + len;
    while (p < end && *p >= '0' && *p <= '9') {
        x = x * 10 + (*p - '0');
        p++;
        *ok = 1;
    }
    return x;
}

static int64_t thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_record(void *ctx, const char *value, size_t len, int64_t timestamp_ms) {
    measure_t *m = ctx;
    int64_t now = bench_realtime_ns();
    int ok1, ok2;
    int64_t sent = field_int(value, len, "\"sent_ns\":", 10, &ok1);
    int64_t seq = field_int(value, len, "\"seq\":", 6, &ok2);
    if (!ok1 || !ok2) {
        m->unparsed++;
        return;
    }
    if ((uint64_t)seq >= m->expected) { /* a warm-up record sent before the measured run */
        m->extra++;
        return;
    }
    m->count++;
    m->value_bytes += len;
    if (m->seen[seq]) return; /* a duplicate: counted, not measured */
    m->seen[seq] = 1;
    m->unique++;
    if ((uint64_t)seq < m->warmup) return;
    m->latency_ns[m->measured++] = now - sent;
    if (!m->first_sent_ns || sent < m->first_sent_ns) m->first_sent_ns = sent;
    if (!m->first_arrival_ns) {
        m->first_arrival_ns = now;
        m->first_cpu_ns = thread_cpu_ns();
    }
    m->last_arrival_ns = now;
    if (m->unique == m->expected) m->last_cpu_ns = thread_cpu_ns();
    if (m->dump)
        fprintf(m->dump, "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 "\n", seq, sent, now, timestamp_ms);
}

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(const int64_t *sorted, uint64_t n, double p) {
    if (!n) return 0;
    uint64_t i = (uint64_t)(p * (double)(n - 1) + 0.5);
    return (double)sorted[i] / 1e6;
}

static void usage(FILE *f) {
    fprintf(
        f, "usage: pb_benchconsumer -b BOOTSTRAP -t TOPIC --ca F --cert F --key F -n N [--timeout S]\n"
           "                        [--source S] [--group G] [--warmup K] [--dump FILE]\n"
           "       pb_benchconsumer --list-sources\n"
           "--source rdkafka (the default) assigns every partition from the start; rdkafka-group,\n"
           "rdkafka-group-check (the same, checking each record as libpredbridge does) and libpredbridge\n"
           "(both when the library is built) subscribe with group G (default: a fresh one) from the\n"
           "earliest offset, and their READY comes before the group join, so use them to drain a filled\n"
           "topic (consumer throughput), not for latency. --list-sources prints the built ones.\n"
           "Prints READY once it reads the topic from the start, then waits for N records (or the timeout)\n"
           "and prints: RESULT count unique unparsed e2e_secs (first send to last arrival) secs (first to\n"
           "last arrival) rate (measured / secs) drain_secs drain_rate (from opening the consumer) value_mb "
           "p50_ms p99_ms p999_ms max_ms (arrival - sent_ns) app_cpu_us (CPU time of the thread that\n"
           "polls, per record, from the first to the last arrival).\n"
           "--warmup K: seq 0..K-1 must arrive but are left out of rate and latency; seq >= N (a\n"
           "producer's warm-up before the run) is ignored (extra).\n"
           "--dump FILE writes \"seq sent_ns arrival_ns kafka_timestamp_ms\" per record. Exit 1 if fewer\n"
           "than N distinct arrived.\n");
}

int main(int argc, char **argv) {
    copts_t o = {.timeout_s = 120};
    const char *source = "rdkafka", *dump = NULL;
    uint64_t warmup = 0;
    static const struct option lo[] = {
        {"ca", 1, 0, 'a'},     {"cert", 1, 0, 'c'},         {"key", 1, 0, 'k'},  {"timeout", 1, 0, 'T'},
        {"source", 1, 0, 'S'}, {"help", 0, 0, 'h'},         {"dump", 1, 0, 'D'}, {"warmup", 1, 0, 'W'},
        {"group", 1, 0, 'G'},  {"list-sources", 0, 0, 'L'}, {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "b:t:n:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'b':
            o.bootstrap = optarg;
            break;
        case 't':
            o.topic = optarg;
            break;
        case 'n':
            o.count = strtoull(optarg, NULL, 10);
            break;
        case 'a':
            o.ca = optarg;
            break;
        case 'c':
            o.cert = optarg;
            break;
        case 'k':
            o.key = optarg;
            break;
        case 'T':
            o.timeout_s = atoi(optarg);
            break;
        case 'S':
            source = optarg;
            break;
        case 'D':
            dump = optarg;
            break;
        case 'W':
            warmup = strtoull(optarg, NULL, 10);
            break;
        case 'G':
            o.group = optarg;
            break;
        case 'L':
            for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++)
                printf("%s\n", sources[i].name);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!o.bootstrap || !o.topic || !o.ca || !o.cert || !o.key || !o.count || o.timeout_s <= 0 ||
        optind < argc) {
        fprintf(stderr, "pb_benchconsumer: -b, -t, --ca, --cert, --key and -n are required\n");
        usage(stderr);
        return 2;
    }
    char group[128];
    if (!o.group) {
        snprintf(group, sizeof group, "predictions-bench-%ld-%d", (long)time(NULL), (int)getpid());
        o.group = group;
    }
    const source_ops_t *ops = NULL;
    for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++)
        if (!strcmp(sources[i].name, source)) ops = &sources[i];
    if (!ops) {
        fprintf(stderr, "pb_benchconsumer: unknown --source '%s' (built:", source);
        for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++)
            fprintf(stderr, " %s", sources[i].name);
        fprintf(stderr, ")\n");
        return 2;
    }
    if (warmup >= o.count) {
        fprintf(stderr, "pb_benchconsumer: --warmup must be less than -n\n");
        return 2;
    }
    measure_t m = {.expected = o.count, .warmup = warmup};
    m.latency_ns = malloc(o.count * sizeof *m.latency_ns);
    m.seen = calloc(o.count, 1);
    if (!m.latency_ns || !m.seen) {
        fprintf(stderr, "pb_benchconsumer: out of memory for %" PRIu64 " records\n", o.count);
        return 1;
    }
    if (dump && !(m.dump = fopen(dump, "w"))) {
        fprintf(stderr, "pb_benchconsumer: cannot write %s\n", dump);
        return 1;
    }
    char err[512] = "";
    int64_t deadline = bench_mono_ns() + (int64_t)o.timeout_s * 1000000000;
    int64_t open_ns = bench_realtime_ns();
    void *h = ops->open(&o, err, sizeof err);
    if (!h) {
        fprintf(stderr, "pb_benchconsumer: %s\n", err);
        return 1;
    }
    printf("READY\n");
    fflush(stdout);
    int rc = 0;
    /* SIGTERM/SIGINT end the wait early (the producer side failed) with a partial result. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (m.unique < o.count) {
        if (g_stop) {
            fprintf(stderr,
                    "pb_benchconsumer: stopped by a signal with %" PRIu64 " of %" PRIu64 " predictions\n",
                    m.unique, o.count);
            rc = 1;
            break;
        }
        int64_t left_ms = (deadline - bench_mono_ns()) / 1000000;
        if (left_ms <= 0) {
            fprintf(stderr, "pb_benchconsumer: timed out with %" PRIu64 " of %" PRIu64 " predictions\n",
                    m.unique, o.count);
            rc = 1;
            break;
        }
        if (ops->poll(h, left_ms > 200 ? 200 : (int)left_ms, on_record, &m, err, sizeof err) != 0) {
            fprintf(stderr, "pb_benchconsumer: %s\n", err);
            rc = 1;
            break;
        }
    }
    ops->close(h);
    uint64_t n = m.measured;
    qsort(m.latency_ns, n, sizeof *m.latency_ns, cmp_i64);
    /* Throughput over the delivery window (first to last arrival): the producers' start-up (connect,
     * idempotent PID) is not counted against any of them. e2e_secs is first send to last arrival. */
    double secs = m.count ? (double)(m.last_arrival_ns - m.first_arrival_ns) / 1e9 : 0;
    double e2e = m.count ? (double)(m.last_arrival_ns - m.first_sent_ns) / 1e9 : 0;
    /* Draining a filled topic: from opening the consumer (connect, join) to the last record. */
    double drain = m.count ? (double)(m.last_arrival_ns - open_ns) / 1e9 : 0;
    if (m.dump) fclose(m.dump);
    printf("RESULT count=%" PRIu64 " unique=%" PRIu64 " unparsed=%" PRIu64 " extra=%" PRIu64
           " measured=%" PRIu64
           " e2e_secs=%.3f secs=%.3f rate=%.0f drain_secs=%.3f drain_rate=%.0f value_mb=%.1f "
           "p50_ms=%.2f p99_ms=%.2f p999_ms=%.2f max_ms=%.2f app_cpu_us=%.3f\n",
           m.count, m.unique, m.unparsed, m.extra, m.measured, e2e, secs,
           secs > 0 ? (double)m.measured / secs : 0.0, drain, drain > 0 ? (double)m.measured / drain : 0.0,
           (double)m.value_bytes / 1e6, pct_ms(m.latency_ns, n, 0.50), pct_ms(m.latency_ns, n, 0.99),
           pct_ms(m.latency_ns, n, 0.999), n ? (double)m.latency_ns[n - 1] / 1e6 : 0.0,
           n > 1 && m.last_cpu_ns ? (double)(m.last_cpu_ns - m.first_cpu_ns) / 1e3 / (double)(n - 1) : 0.0);
    fflush(stdout);
    free(m.latency_ns);
    free(m.seen);
    return rc;
}
