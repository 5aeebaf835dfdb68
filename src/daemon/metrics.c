/* metrics.c: predbridged's counters and gauges (C11 atomics) and their Prometheus text rendering. */
#include "metrics.h"

#include "common/log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PBM_MAX_BROKERS 32

typedef struct pbm_broker {
    char name[160];
    int up;
    int has_rtt;        /* a round trip was measured in the last statistics window */
    double rtt_seconds; /* their average */
} pbm_broker_t;

/* What the certificate verifier saw negotiated with one broker. */
typedef struct pbm_broker_tls {
    char broker[256];
    char version[16];
    char cipher[64];
} pbm_broker_tls_t;

struct pbm_metrics {
    atomic_ullong received, accepted, delivered, refused_peers, connections_total, pauses;
    atomic_ullong rejected[PBM_REJ_N], failed[PBM_FAIL_N], tls_failures[PBM_TLS_N];
    atomic_ullong authentication_failures, authorization_failures;
    atomic_ullong tls_reloads[2]; /* [0] ok, [1] failed */
    atomic_llong in_flight, connections;
    atomic_llong client_not_after, ca_not_after;
    atomic_llong heartbeat_ms;
    atomic_int ready;
    atomic_int fatal; /* the producer failed for good: not ready until a reload replaces it */
    atomic_int held;  /* records wait out a retry-later cause (pbm_hold): not ready until released */
    atomic_int have_stats;
    atomic_llong queue_messages, queue_bytes;
    atomic_llong spool_bytes, spool_records;
    atomic_int spool_full;
    atomic_ullong spool_set_aside;
    atomic_ullong spool_sync_failures;
    pthread_mutex_t lock; /* guards brokers, n_brokers, tls, n_tls, reason */
    pbm_broker_t brokers[PBM_MAX_BROKERS];
    size_t n_brokers;
    pbm_broker_tls_t tls[PBM_MAX_BROKERS];
    size_t n_tls;
    char reason[512]; /* why not ready */
};

static const char *const reject_names[PBM_REJ_N] = {
    "not_json", "not_object", "invalid_utf8", "missing_field", "bad_field", "too_large", "partial", "other"};
static const char *const fail_names[PBM_FAIL_N] = {"purged",        "too_large", "authorization",
                                                   "unknown_topic", "fatal",     "other"};
static const char *const tls_names[PBM_TLS_N] = {
    "protocol_version", "certificate_verify", "hostname", "pin", "client_cert_refused", "other"};
static const char *const reload_names[2] = {"ok", "failed"};

pbm_metrics_t *pbm_new(void) {
    pbm_metrics_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    snprintf(m->reason, sizeof m->reason, "starting: no broker connection established yet");
    return m;
}

void pbm_free(pbm_metrics_t *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

#define INC(x) atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)
#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

void pbm_received(pbm_metrics_t *m) {
    INC(m->received);
}

void pbm_rejected(pbm_metrics_t *m, const char *reason_text) {
    INC(m->rejected[pbm_reject_reason(reason_text)]);
}

void pbm_accepted(pbm_metrics_t *m) {
    INC(m->accepted);
    INC(m->in_flight);
}

/* Changes readiness under m->lock; a change is logged (once per transition, so no flood). */
static void transition_locked(pbm_metrics_t *m, int ready, const char *reason) {
    if (ready && (atomic_load(&m->fatal) || atomic_load(&m->held))) return;
    int first_cause = !ready && reason && !strncmp(m->reason, "starting", 8);
    if (reason) snprintf(m->reason, sizeof m->reason, "%s", reason);
    if (atomic_exchange(&m->ready, ready) == ready && !first_cause) return;
    if (ready)
        PBLOG_I("ready", "a broker connection is up (TLS, client certificate accepted): ready");
    else
        pblog_fields(PBLOG_WARN, "not_ready", (pblog_field_t[]){{.key = "cause", .str = m->reason}}, 1, "not ready: %s",
                     m->reason);
}

static void set_ready(pbm_metrics_t *m, int ready, const char *reason) {
    pthread_mutex_lock(&m->lock);
    transition_locked(m, ready, reason);
    pthread_mutex_unlock(&m->lock);
}

void pbm_delivery_retiring(pbm_metrics_t *m, rd_kafka_resp_err_t err) {
    atomic_fetch_sub_explicit(&m->in_flight, 1, memory_order_relaxed);
    if (!err) {
        INC(m->delivered);
        return;
    }
    INC(m->failed[pbm_fail_reason(err)]);
    if (pbm_is_authorization_error(err)) INC(m->authorization_failures);
}

void pbm_delivery(pbm_metrics_t *m, rd_kafka_resp_err_t err) {
    pbm_delivery_retiring(m, err);
    if (!err && !LOAD(m->ready)) set_ready(m, 1, NULL);
}

void pbm_connection_opened(pbm_metrics_t *m) {
    INC(m->connections);
    INC(m->connections_total);
}

void pbm_connection_closed(pbm_metrics_t *m) {
    atomic_fetch_sub_explicit(&m->connections, 1, memory_order_relaxed);
}

void pbm_refused_peer(pbm_metrics_t *m) {
    INC(m->refused_peers);
}

void pbm_paused(pbm_metrics_t *m) {
    INC(m->pauses);
}

void pbm_replaying(pbm_metrics_t *m, unsigned long long records) {
    atomic_fetch_add_explicit(&m->in_flight, (long long)records, memory_order_relaxed);
}

void pbm_set_spool(pbm_metrics_t *m, unsigned long long bytes, unsigned long long records, int full,
                   unsigned long long set_aside, unsigned long long sync_failures) {
    atomic_store(&m->spool_bytes, (long long)bytes);
    atomic_store(&m->spool_records, (long long)records);
    atomic_store(&m->spool_set_aside, set_aside);
    atomic_store(&m->spool_sync_failures, sync_failures);
    atomic_store(&m->spool_full, full);
}

void pbm_tls_failure(pbm_metrics_t *m, pbm_tls_cause_t cause, unsigned long count) {
    if ((unsigned)cause >= PBM_TLS_N) cause = PBM_TLS_OTHER;
    atomic_fetch_add_explicit(&m->tls_failures[cause], count, memory_order_relaxed);
}

void pbm_authentication_failure(pbm_metrics_t *m) {
    INC(m->authentication_failures);
}

void pbm_authorization_failure(pbm_metrics_t *m) {
    INC(m->authorization_failures);
}

void pbm_not_ready(pbm_metrics_t *m, const char *cause) {
    char why[512];
    snprintf(why, sizeof why, "broker connection failed: %s", cause);
    set_ready(m, 0, why);
}

/* Not ready, and kept so by latch (fatal, held) whatever the connections say until it is cleared. */
static void latch_not_ready(pbm_metrics_t *m, atomic_int *latch, const char *prefix, const char *cause) {
    char why[512];
    snprintf(why, sizeof why, "%s: %s", prefix, cause);
    pthread_mutex_lock(&m->lock);
    transition_locked(m, 0, why);
    atomic_store(latch, 1);
    pthread_mutex_unlock(&m->lock);
}

void pbm_fatal(pbm_metrics_t *m, const char *cause) {
    latch_not_ready(m, &m->fatal, "the producer failed for good (restart, or reload other TLS material)", cause);
}

void pbm_fresh_producer(pbm_metrics_t *m) {
    atomic_store(&m->fatal, 0);
}

void pbm_hold(pbm_metrics_t *m, const char *cause) {
    latch_not_ready(m, &m->held, "records wait", cause);
}

void pbm_release(pbm_metrics_t *m) {
    atomic_store(&m->held, 0);
}

void pbm_brokers_down(pbm_metrics_t *m, const char *cause) {
    pthread_mutex_lock(&m->lock);
    /* "All brokers are down" follows the failure that says why: keep that one. */
    if (LOAD(m->ready) || !strncmp(m->reason, "starting", 8)) {
        char why[512];
        snprintf(why, sizeof why, "broker connection failed: %s", cause);
        transition_locked(m, 0, why);
    }
    pthread_mutex_unlock(&m->lock);
}

void pbm_set_cert_expiry(pbm_metrics_t *m, time_t client_not_after, time_t ca_not_after) {
    atomic_store(&m->client_not_after, (long long)client_not_after);
    atomic_store(&m->ca_not_after, (long long)ca_not_after);
}

void pbm_tls_reload(pbm_metrics_t *m, int ok) {
    INC(m->tls_reloads[ok ? 0 : 1]);
}

void pbm_broker_tls(pbm_metrics_t *m, const char *broker, const char *version, const char *cipher) {
    pthread_mutex_lock(&m->lock);
    size_t i = 0;
    while (i < m->n_tls && strcmp(m->tls[i].broker, broker) != 0) i++;
    if (i < PBM_MAX_BROKERS) {
        snprintf(m->tls[i].broker, sizeof m->tls[i].broker, "%s", broker);
        snprintf(m->tls[i].version, sizeof m->tls[i].version, "%s", version);
        snprintf(m->tls[i].cipher, sizeof m->tls[i].cipher, "%s", cipher);
        m->n_tls += i == m->n_tls;
    }
    pthread_mutex_unlock(&m->lock);
}

void pbm_heartbeat(pbm_metrics_t *m, int64_t mono_ms) {
    atomic_store_explicit(&m->heartbeat_ms, mono_ms, memory_order_relaxed);
}

/* ---- librdkafka statistics ---- */

int pbm_update_from_stats(pbm_metrics_t *m, const char *json, size_t len) {
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *brokers = root ? json_object_get(root, "brokers") : NULL;
    if (!json_is_object(brokers)) {
        json_decref(root);
        return -1;
    }
    pbm_broker_t table[PBM_MAX_BROKERS];
    size_t n = 0, up = 0;
    const char *key;
    json_t *b;
    json_object_foreach(brokers, key, b) {
        const char *source = json_string_value(json_object_get(b, "source"));
        /* Internal and logical brokers are librdkafka's own bookkeeping, not connections. */
        if (source && (!strcmp(source, "internal") || !strcmp(source, "logical"))) continue;
        if (n == PBM_MAX_BROKERS) break;
        const char *state = json_string_value(json_object_get(b, "state"));
        table[n].up = state && !strcmp(state, "UP");
        up += (size_t)table[n].up;
        json_t *rtt = json_object_get(b, "rtt"), *avg = json_object_get(rtt, "avg");
        /* Without samples librdkafka says 0, which would read as an instant round trip. */
        table[n].has_rtt = json_integer_value(json_object_get(rtt, "cnt")) > 0 && json_is_number(avg);
        table[n].rtt_seconds = table[n].has_rtt ? json_number_value(avg) / 1e6 : 0.0;
        snprintf(table[n].name, sizeof table[n].name, "%s", key);
        n++;
    }
    atomic_store(&m->queue_messages, (long long)json_integer_value(json_object_get(root, "msg_cnt")));
    atomic_store(&m->queue_bytes, (long long)json_integer_value(json_object_get(root, "msg_size")));
    json_decref(root);

    pthread_mutex_lock(&m->lock);
    atomic_store(&m->have_stats, 1); /* before a transition is logged: a reader then sees the gauges */
    memcpy(m->brokers, table, n * sizeof table[0]);
    m->n_brokers = n;
    if (up) {
        transition_locked(m, 1, NULL);
    } else if (LOAD(m->ready) || !strncmp(m->reason, "starting", 8)) {
        /* Keep a more specific failure cause when there is one. */
        char why[128];
        snprintf(why, sizeof why, "no broker connection is up (%zu broker%s known)", n, n == 1 ? "" : "s");
        transition_locked(m, 0, why);
    }
    pthread_mutex_unlock(&m->lock);
    return 0;
}

/* ---- classifiers ---- */

pbm_reject_t pbm_reject_reason(const char *text) {
    if (!text) return PBM_REJ_OTHER;
    size_t n = strcspn(text, ":");
    for (int i = 0; i < PBM_REJ_OTHER; i++)
        if (strlen(reject_names[i]) == n && !strncmp(text, reject_names[i], n)) return (pbm_reject_t)i;
    /* The producer's own refusal of an oversized record ("MSG_SIZE_TOO_LARGE: ..."). */
    if (!strncmp(text, "MSG_SIZE_TOO_LARGE", 18)) return PBM_REJ_TOO_LARGE;
    return PBM_REJ_OTHER;
}

int pbm_is_authorization_error(rd_kafka_resp_err_t err) {
    return err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
           err == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED ||
           err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED;
}

pbm_fail_t pbm_fail_reason(rd_kafka_resp_err_t err) {
    switch (err) {
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        return PBM_FAIL_PURGED;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return PBM_FAIL_TOO_LARGE;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        return PBM_FAIL_UNKNOWN_TOPIC;
    case RD_KAFKA_RESP_ERR__FATAL:
        return PBM_FAIL_FATAL;
    default:
        return pbm_is_authorization_error(err) ? PBM_FAIL_AUTHORIZATION : PBM_FAIL_OTHER;
    }
}

pbm_tls_cause_t pbm_tls_classify(const char *error_text, const char *verifier_failure) {
    if (verifier_failure && *verifier_failure) {
        if (strstr(verifier_failure, "certificate is for")) return PBM_TLS_HOSTNAME;
        if (strstr(verifier_failure, "tls.pins")) return PBM_TLS_PIN;
        return PBM_TLS_CERTIFICATE_VERIFY;
    }
    const char *t = error_text ? error_text : "";
    /* Alerts the broker sent about our certificate (OpenSSL: "... alert certificate required"). */
    if (strstr(t, "alert certificate required") || strstr(t, "alert certificate unknown") ||
        strstr(t, "alert bad certificate") || strstr(t, "alert unknown ca") ||
        strstr(t, "alert certificate expired") || strstr(t, "alert certificate revoked") ||
        strstr(t, "alert unsupported certificate") || strstr(t, "alert access denied"))
        return PBM_TLS_CLIENT_CERT_REFUSED;
    if (strstr(t, "protocol version") || strstr(t, "unsupported protocol") ||
        strstr(t, "no protocols available") || strstr(t, "wrong version number"))
        return PBM_TLS_PROTOCOL_VERSION;
    if (strstr(t, "certificate verify failed") || strstr(t, "certificate could not be verified"))
        return PBM_TLS_CERTIFICATE_VERIFY;
    return PBM_TLS_OTHER;
}

const char *pbm_tls_cause_name(pbm_tls_cause_t c) {
    return (unsigned)c < PBM_TLS_N ? tls_names[c] : "other";
}

/* ---- readers ---- */

int pbm_healthy(pbm_metrics_t *m, int64_t now_mono_ms, char *why, size_t why_size) {
    int64_t beat = atomic_load(&m->heartbeat_ms);
    if (beat == 0) {
        snprintf(why, why_size, "the event loop has not started");
        return 0;
    }
    if (now_mono_ms - beat > PBM_HEALTH_STALE_MS) {
        snprintf(why, why_size, "the event loop has not run for %lld ms", (long long)(now_mono_ms - beat));
        return 0;
    }
    snprintf(why, why_size, "ok");
    return 1;
}

int pbm_ready(pbm_metrics_t *m, char *why, size_t why_size) {
    pthread_mutex_lock(&m->lock);
    int ready = atomic_load(&m->ready);
    snprintf(why, why_size, "%s", ready ? "ok" : m->reason);
    if (ready && atomic_load(&m->spool_full)) {
        ready = 0;
        snprintf(why, why_size, "the spool is full (spool.max_bytes or the disk): writers are held back");
    }
    pthread_mutex_unlock(&m->lock);
    return ready;
}

/* Label values: backslash, double quote and newline escaped (text format 0.0.4). */
static void label_value(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f), fputc(*s, f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* The statistics' name for the broker librdkafka connects to as host_port ("localhost:9093" is
 * "ssl://localhost:9093/1", or ".../bootstrap" until the broker is learned), so that the TLS info
 * joins broker_up and broker_rtt_seconds; host_port itself if the statistics do not name it.
 * Called with m->lock held. */
static const char *stats_broker_name(const pbm_metrics_t *m, const char *host_port) {
    const char *found = host_port;
    size_t n = strlen(host_port);
    for (size_t i = 0; i < m->n_brokers; i++) {
        const char *name = m->brokers[i].name, *sep = strstr(name, "://");
        if (!sep || strncmp(sep + 3, host_port, n) != 0 || sep[3 + n] != '/') continue;
        found = name;
        if (strcmp(sep + 3 + n, "/bootstrap") != 0) break; /* the learned broker wins */
    }
    return found;
}

/* Begins a per-broker series: name{broker="..." (the caller adds labels, "}" and the value). */
static void broker_series(FILE *f, const char *name, const char *broker) {
    fprintf(f, "%s{broker=\"", name);
    label_value(f, broker);
    fputc('"', f);
}

static void head(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(FILE *f, const char *name, const char *help, unsigned long long v) {
    head(f, name, "counter", help);
    fprintf(f, "%s %llu\n", name, v);
}

static void gauge(FILE *f, const char *name, const char *help, long long v) {
    head(f, name, "gauge", help);
    fprintf(f, "%s %lld\n", name, v);
}

static void labelled(FILE *f, const char *name, const char *help, const char *label, const char *const *names,
                     const atomic_ullong *values, int n) {
    head(f, name, "counter", help);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s{%s=\"%s\"} %llu\n", name, label, names[i], (unsigned long long)LOAD(values[i]));
}

char *pbm_render(pbm_metrics_t *m, size_t *len) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    counter(f, "predbridge_predictions_received_total", "Prediction lines read from the socket.",
            LOAD(m->received));
    labelled(f, "predbridge_predictions_rejected_total", "Prediction lines rejected, by reason.", "reason",
             reject_names, m->rejected, PBM_REJ_N);
    counter(f, "predbridge_predictions_accepted_total", "Predictions validated and queued for Kafka.",
            LOAD(m->accepted));
    counter(f, "predbridge_predictions_delivered_total", "Predictions the broker acknowledged (acks=all).",
            LOAD(m->delivered));
    labelled(f, "predbridge_predictions_failed_total", "Predictions the broker did not take, by reason.",
             "reason", fail_names, m->failed, PBM_FAIL_N);
    long long in_flight = LOAD(m->in_flight);
    gauge(f, "predbridge_predictions_in_flight", "Predictions queued for Kafka and not yet acknowledged.",
          in_flight < 0 ? 0 : in_flight);
    gauge(f, "predbridge_spool_bytes", "Size of the spool's segment files.", LOAD(m->spool_bytes));
    gauge(f, "predbridge_spool_records", "Accepted predictions in the spool not yet acknowledged by the broker.",
          LOAD(m->spool_records));
    gauge(f, "predbridge_spool_full", "1 while the spool is full and reading is paused.", atomic_load(&m->spool_full));
    counter(f, "predbridge_spool_set_aside_total",
            "Predictions the broker refused for good, written to failed.ndjson in spool.dir.",
            LOAD(m->spool_set_aside));
    counter(f, "predbridge_spool_fsync_failures_total",
            "fdatasyncs of the spool that failed; the records they covered were answered failed, not accepted.",
            LOAD(m->spool_sync_failures));
    gauge(f, "predbridge_socket_connections", "Writers connected to the socket now.", LOAD(m->connections));
    counter(f, "predbridge_socket_connections_total", "Writers accepted on the socket since start.",
            LOAD(m->connections_total));
    counter(f, "predbridge_socket_refused_peers_total", "Connections refused by the peer-credential policy.",
            LOAD(m->refused_peers));
    counter(f, "predbridge_reading_paused_total",
            "Times reading paused: the spool full, or too many delivered-mode records waiting.", LOAD(m->pauses));
    labelled(f, "predbridge_tls_handshake_failures_total",
             "TLS handshakes with a broker that failed, by cause.", "cause", tls_names, m->tls_failures,
             PBM_TLS_N);
    counter(f, "predbridge_broker_authentication_failures_total",
            "Authentication failures reported by librdkafka.", LOAD(m->authentication_failures));
    counter(f, "predbridge_broker_authorization_failures_total",
            "Requests the broker refused for lack of an ACL.", LOAD(m->authorization_failures));
    labelled(f, "predbridge_tls_reloads_total",
             "Reloads of the TLS files (SIGHUP or a change on disk), by result; failed keeps the old material.",
             "result", reload_names, m->tls_reloads, 2);
    gauge(f, "predbridge_ready", "1 if a broker connection is up with TLS and our certificate accepted.",
          atomic_load(&m->ready) && !atomic_load(&m->spool_full));
    long long client = LOAD(m->client_not_after), ca = LOAD(m->ca_not_after);
    if (client || ca) {
        head(f, "predbridge_tls_certificate_expiry_timestamp_seconds", "gauge",
             "When a certificate expires (Unix time): client is tls.cert, ca the CA of tls.ca that expires "
             "first.");
        if (client)
            fprintf(f, "predbridge_tls_certificate_expiry_timestamp_seconds{certificate=\"client\"} %lld\n",
                    client);
        if (ca)
            fprintf(f, "predbridge_tls_certificate_expiry_timestamp_seconds{certificate=\"ca\"} %lld\n", ca);
    }
    if (LOAD(m->have_stats)) {
        gauge(f, "predbridge_producer_queue_messages", "Records in librdkafka's producer queue (msg_cnt).",
              LOAD(m->queue_messages));
        gauge(f, "predbridge_producer_queue_bytes",
              "Bytes of records in librdkafka's producer queue (msg_size).", LOAD(m->queue_bytes));
        pthread_mutex_lock(&m->lock);
        head(f, "predbridge_broker_up", "gauge",
             "1 if the connection to this broker is up (librdkafka state UP).");
        for (size_t i = 0; i < m->n_brokers; i++) {
            broker_series(f, "predbridge_broker_up", m->brokers[i].name);
            fprintf(f, "} %d\n", m->brokers[i].up);
        }
        head(f, "predbridge_broker_rtt_seconds", "gauge",
             "Average request round-trip time to this broker over the last statistics interval.");
        for (size_t i = 0; i < m->n_brokers; i++) {
            if (!m->brokers[i].has_rtt) continue;
            broker_series(f, "predbridge_broker_rtt_seconds", m->brokers[i].name);
            fprintf(f, "} %.6f\n", m->brokers[i].rtt_seconds);
        }
        pthread_mutex_unlock(&m->lock);
    }
    pthread_mutex_lock(&m->lock);
    if (m->n_tls)
        head(f, "predbridge_broker_tls_info", "gauge",
             "The TLS version and cipher suite last negotiated with this broker (its certificate verified); "
             "always 1.");
    for (size_t i = 0; i < m->n_tls; i++) {
        broker_series(f, "predbridge_broker_tls_info", stats_broker_name(m, m->tls[i].broker));
        fputs(",version=\"", f);
        label_value(f, m->tls[i].version);
        fputs("\",cipher=\"", f);
        label_value(f, m->tls[i].cipher);
        fputs("\"} 1\n", f);
    }
    pthread_mutex_unlock(&m->lock);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    if (len) *len = size;
    return buf;
}
