/* itest.c: helpers for integration tests against the local mTLS broker. */
#include "itest.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static itest_env_t g_env;
static int g_env_loaded;
static pthread_mutex_t g_err_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_errors[16384];

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "itest: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

int64_t itest_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void copy_value(char *dst, size_t size, const char *v) {
    size_t n = strcspn(v, "\r\n");
    if (n >= size) die("broker.env value too long: %s", v);
    memcpy(dst, v, n);
    dst[n] = '\0';
}

const itest_env_t *itest_env(void) {
    if (g_env_loaded) return &g_env;
    const char *dir = getenv("PB_LOCAL_DIR");
    char path[1200];
    if (dir && *dir)
        snprintf(g_env.local_dir, sizeof g_env.local_dir, "%s", dir);
    else if (getenv("PB_SOURCE_DIR"))
        snprintf(g_env.local_dir, sizeof g_env.local_dir, "%s/.local", getenv("PB_SOURCE_DIR"));
    else
        die("set PB_LOCAL_DIR or PB_SOURCE_DIR to find broker.env");
    snprintf(path, sizeof path, "%s/broker.env", g_env.local_dir);
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open %s (%s): start the broker with scripts/kafka-local.sh start", path, strerror(errno));
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '=');
        if (line[0] == '#' || !eq) continue;
        *eq = '\0';
        const char *k = line, *v = eq + 1;
        if (!strcmp(k, "PB_BOOTSTRAP")) copy_value(g_env.bootstrap, sizeof g_env.bootstrap, v);
        else if (!strcmp(k, "PB_BOOTSTRAP_TLS12")) copy_value(g_env.bootstrap_tls12, sizeof g_env.bootstrap_tls12, v);
        else if (!strcmp(k, "PB_BOOTSTRAP_BADHOST")) copy_value(g_env.bootstrap_badhost, sizeof g_env.bootstrap_badhost, v);
        else if (!strcmp(k, "PB_CERT_DIR")) copy_value(g_env.cert_dir, sizeof g_env.cert_dir, v);
        else if (!strcmp(k, "PB_TOPIC")) copy_value(g_env.topic, sizeof g_env.topic, v);
    }
    fclose(f);
    if (!g_env.bootstrap[0] || !g_env.cert_dir[0] || !g_env.topic[0]) die("%s lacks PB_BOOTSTRAP, PB_CERT_DIR or PB_TOPIC", path);
    g_env_loaded = 1;
    return &g_env;
}

const char *itest_cert(const char *file) {
    static char bufs[8][1400];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", itest_env()->cert_dir, file);
    return b;
}

void itest_set(rd_kafka_conf_t *conf, const char *key, const char *value) {
    char errstr[512];
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
        die("rd_kafka_conf_set(%s): %s", key, errstr);
}

static void record_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    (void)opaque;
    pthread_mutex_lock(&g_err_lock);
    size_t len = strlen(g_errors);
    snprintf(g_errors + len, sizeof g_errors - len, "%s: %s\n", rd_kafka_err2name(err), reason);
    pthread_mutex_unlock(&g_err_lock);
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    if (getenv("PB_ITEST_VERBOSE")) fprintf(stderr, "rdkafka[%d] %s: %s\n", level, fac, buf);
}

const char *itest_errors(void) {
    return g_errors;
}

void itest_errors_clear(void) {
    pthread_mutex_lock(&g_err_lock);
    g_errors[0] = '\0';
    pthread_mutex_unlock(&g_err_lock);
}

rd_kafka_conf_t *itest_conf(const char *bootstrap, const char *who) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char file[256];
    itest_set(conf, "bootstrap.servers", bootstrap);
    itest_set(conf, "security.protocol", "ssl");
    itest_set(conf, "ssl.ca.location", itest_cert("ca.crt"));
    itest_set(conf, "ssl.endpoint.identification.algorithm", "https");
    if (who) {
        snprintf(file, sizeof file, "%s.crt", who);
        itest_set(conf, "ssl.certificate.location", itest_cert(file));
        snprintf(file, sizeof file, "%s.key", who);
        itest_set(conf, "ssl.key.location", itest_cert(file));
    }
    itest_set(conf, "reconnect.backoff.ms", "100");
    itest_set(conf, "reconnect.backoff.max.ms", "1000");
    rd_kafka_conf_set_error_cb(conf, record_error);
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    return conf;
}

static rd_kafka_event_t *wait_event(rd_kafka_queue_t *q, rd_kafka_event_type_t type, int64_t deadline) {
    while (itest_now_ms() < deadline) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 200);
        if (!ev) continue;
        if (rd_kafka_event_type(ev) == type) return ev;
        rd_kafka_event_destroy(ev);
    }
    return NULL;
}

void itest_create_topic(const char *prefix, int partitions, char *out, size_t out_size) {
    static int n;
    char errstr[512];
    snprintf(out, out_size, "%s-%d-%d", prefix, (int)getpid(), n++);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, itest_conf(itest_env()->bootstrap, "admin"), errstr, sizeof errstr);
    if (!rk) die("admin client: %s", errstr);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(out, partitions, 1, errstr, sizeof errstr);
    if (!nt) die("NewTopic: %s", errstr);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    int64_t deadline = itest_now_ms() + 30000;
    rd_kafka_event_t *ev = wait_event(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT, deadline);
    if (!ev) die("creating topic %s timed out", out);
    size_t cnt;
    const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    if (rd_kafka_event_error(ev) || (cnt && rd_kafka_topic_result_error(res[0])))
        die("creating topic %s: %s", out,
            rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev) : rd_kafka_topic_result_error_string(res[0]));
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    /* Wait until every partition has a leader. */
    for (;;) {
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, out, NULL);
        int ok = 0;
        if (!rd_kafka_metadata(rk, 0, t, &md, 2000)) {
            ok = md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt == partitions;
            for (int i = 0; ok && i < md->topics[0].partition_cnt; i++)
                ok = md->topics[0].partitions[i].leader >= 0 && !md->topics[0].partitions[i].err;
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(t);
        if (ok) break;
        if (itest_now_ms() > deadline) die("topic %s has no leaders after 30 s", out);
        rd_kafka_poll(rk, 100);
    }
    rd_kafka_destroy(rk);
}

int64_t itest_topic_size(const char *topic) {
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, itest_conf(itest_env()->bootstrap, "admin"), errstr, sizeof errstr);
    if (!rk) die("admin client: %s", errstr);
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_metadata(rk, 0, t, &md, 10000)) die("metadata for %s failed", topic);
    int64_t total = 0;
    for (int i = 0; i < md->topics[0].partition_cnt; i++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, topic, md->topics[0].partitions[i].id, &lo, &hi, 10000);
        if (err) die("watermarks of %s[%d]: %s", topic, i, rd_kafka_err2str(err));
        total += hi;
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(rk);
    return total;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    *(rd_kafka_resp_err_t *)m->_private = m->err;
}

rd_kafka_resp_err_t itest_produce_one(rd_kafka_conf_t *conf, const char *topic, const void *value, size_t len,
                                      int timeout_ms) {
    char errstr[512], tmo[32];
    snprintf(tmo, sizeof tmo, "%d", timeout_ms);
    itest_set(conf, "message.timeout.ms", tmo);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) die("producer: %s", errstr);
    rd_kafka_resp_err_t result = RD_KAFKA_RESP_ERR__TIMED_OUT, pending = (rd_kafka_resp_err_t)-12345;
    rd_kafka_resp_err_t err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE((void *)value, len),
                                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&pending),
                                                RD_KAFKA_V_END);
    if (err) {
        rd_kafka_destroy(rk);
        return err;
    }
    int64_t deadline = itest_now_ms() + timeout_ms + 5000;
    while (pending == (rd_kafka_resp_err_t)-12345 && itest_now_ms() < deadline) rd_kafka_poll(rk, 100);
    if (pending != (rd_kafka_resp_err_t)-12345) result = pending;
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk, 0);
    rd_kafka_destroy(rk);
    return result;
}

int itest_system(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

int itest_auth_log_count(const char *needle) {
    char path[1200], line[8192];
    snprintf(path, sizeof path, "%s/kafka/auth.log", itest_env()->local_dir);
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle)) n++;
    fclose(f);
    return n;
}
