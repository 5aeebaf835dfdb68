/* producer.c: predbridged's Kafka producer (see producer.h). */
#include "producer.h"

#include "common/log.h"
#include "common/tls.h"
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct pbd_producer {
    pbtls_opaque_head_t tls; /* first member: the TLS verifier finds itself through the conf opaque */
    rd_kafka_t *rk;
    rd_kafka_queue_t *mainq;
    int event_fd;
    pbd_delivery_fn cb;
    void *cb_ctx;
    char *topic;
    char *identity;
    int in_flight;
    /* Connection-state logging: a failure is logged once per change of cause, then counted. */
    char last_cause[512];    /* same_failure_key of the last cause logged */
    int64_t last_logged_ms;  /* when it was logged (CLOCK_MONOTONIC) */
    unsigned long suppressed;
    int degraded;
    pbm_metrics_t *metrics;      /* NULL until pbd_producer_set_metrics */
    unsigned long verify_seen;   /* verifier failures already accounted */
};

PBTLS_OPAQUE_HEAD_CHECK(struct pbd_producer, tls);

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, const char *origin, char *errstr,
                    size_t errstr_size) {
    char e[512];
    if (rd_kafka_conf_set(conf, key, value, e, sizeof e) == RD_KAFKA_CONF_OK) return 0;
    snprintf(errstr, errstr_size, "%s: %s", origin, e);
    return -1;
}

/* librdkafka's text carries timings ("after 32ms in state ...") that change on every retry; the
 * cause is the part before them. */
static void cause_of(const char *reason, char *out, size_t size) {
    snprintf(out, size, "%s", reason);
    char *cut = strstr(out, " (after ");
    if (cut) *cut = '\0';
    cut = strstr(out, ", ");
    if (cut && strstr(cut, "identical error")) *cut = '\0';
    /* librdkafka's generic advice about ssl.ca.location; the verifier's cause says what is wrong. */
    cut = strstr(out, ": broker certificate could not be verified, verify that");
    if (cut) *cut = '\0';
}

static const char *hint_for(const char *cause) {
    if (strstr(cause, "certificate required") || strstr(cause, "certificate unknown") || strstr(cause, "bad certificate"))
        return "the broker refused our client certificate: check tls.cert/tls.key and that the broker trusts its CA";
    if (strstr(cause, "protocol version") || strstr(cause, "unsupported protocol"))
        return "the broker does not speak TLS 1.3; predbridge requires it";
    if (strstr(cause, "certificate verify failed") || strstr(cause, "verification"))
        return "the broker's certificate did not verify against tls.ca, its host name or tls.pins";
    if (strstr(cause, "Connection refused")) return "nothing listens at bootstrap.servers";
    return NULL;
}

/* Counts an error for metrics and readiness. Runs for every report, also those not logged again. */
static void account_error(pbd_producer_t *p, int err, const char *cause) {
    if (!p->metrics) return;
    pbm_tls_cause_t tls = pbm_tls_classify(cause, "");
    int tls_failed = err == RD_KAFKA_RESP_ERR__SSL || tls != PBM_TLS_OTHER;
    unsigned long fresh = 0;
    char verify[512] = "";
    if (tls_failed && p->tls.verifier) {
        /* "certificate verify failed" means our verifier refused the broker: its cause is the label.
         * It also sees every refused handshake, which librdkafka reports only now and then. */
        unsigned long failures = pbtls_verifier_failures(p->tls.verifier);
        fresh = failures - p->verify_seen;
        p->verify_seen = failures;
        if (fresh || tls == PBM_TLS_CERTIFICATE_VERIFY) {
            pbtls_verifier_last_failure(p->tls.verifier, verify, sizeof verify);
            if (verify[0]) tls = pbm_tls_classify(cause, verify);
        }
    }
    PBLOG_D("metrics", "broker error %s: tls %s, %lu new verifier failure(s)", rd_kafka_err2name((rd_kafka_resp_err_t)err),
            tls_failed ? pbm_tls_cause_name(tls) : "no", fresh);
    if (tls_failed) {
        pbm_tls_failure(p->metrics, tls, fresh > 1 ? fresh : 1);
        if (tls == PBM_TLS_CLIENT_CERT_REFUSED) pbm_authentication_failure(p->metrics);
    } else if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
        pbm_authentication_failure(p->metrics);
    } else if (pbm_is_authorization_error((rd_kafka_resp_err_t)err) ||
               (err == RD_KAFKA_RESP_ERR__FATAL && pbm_is_authorization_error(rd_kafka_fatal_error(p->rk, NULL, 0)))) {
        pbm_authorization_failure(p->metrics);
    }
    char why[1200];
    snprintf(why, sizeof why, "%s: %s%s%s", rd_kafka_err2name((rd_kafka_resp_err_t)err), cause, verify[0] ? "; " : "",
             verify);
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        pbm_fatal(p->metrics, why);
    else if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        pbm_brokers_down(p->metrics, why);
    else if (tls_failed || err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
             pbm_is_authorization_error((rd_kafka_resp_err_t)err))
        pbm_not_ready(p->metrics, why);
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    (void)rk;
    pbd_producer_t *p = opaque;
    if (p->metrics && pbm_update_from_stats(p->metrics, json, json_len) != 0)
        PBLOG_D("metrics", "librdkafka statistics could not be read");
    return 0; /* librdkafka frees json */
}

void pbd_producer_set_metrics(pbd_producer_t *p, pbm_metrics_t *m) {
    p->metrics = m;
}

#define REPEAT_LOG_MS 60000

static int64_t mono_ms(void);

/* One failure reads differently depending on where librdkafka saw it ("SSL handshake failed: X" or
 * just X, with or without OpenSSL's source location "../ssl/...:1602:fn "): compare without those. */
static void same_failure_key(const char *cause, char *out, size_t size) {
    static const char handshake[] = "SSL handshake failed: ";
    size_t n = 0;
    for (const char *c = cause; *c && n + 1 < size;) {
        if (!strncmp(c, handshake, sizeof handshake - 1)) {
            c += sizeof handshake - 1;
        } else if (!strncmp(c, "../", 3) && (c == cause || c[-1] == ' ')) {
            c += strcspn(c, " ");
            c += *c == ' ';
        } else {
            out[n++] = *c++;
        }
    }
    out[n] = '\0';
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    pbd_producer_t *p = opaque;
    char cause[512], verify[512] = "";
    cause_of(reason, cause, sizeof cause);
    if (err == RD_KAFKA_RESP_ERR__SSL && p->tls.verifier) pbtls_verifier_last_failure(p->tls.verifier, verify, sizeof verify);
    account_error(p, err, cause);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (!p->degraded) PBLOG_W("broker.down", "all brokers are down; records are kept and retried");
        p->degraded = 1;
        return;
    }
    char key[512];
    same_failure_key(cause, key, sizeof key);
    if (!strcmp(key, p->last_cause)) {
        p->suppressed++;
        int64_t now = mono_ms();
        if (now - p->last_logged_ms >= REPEAT_LOG_MS) {
            /* An outage that lasts: say so now and then, never once per retry. */
            PBLOG_W("broker.error", "still failing: %s (%lu repeats in the last %lld s)", cause, p->suppressed,
                    (long long)((now - p->last_logged_ms) / 1000));
            p->suppressed = 0;
            p->last_logged_ms = now;
        }
        return;
    }
    snprintf(p->last_cause, sizeof p->last_cause, "%s", key);
    p->last_logged_ms = mono_ms();
    const char *hint = hint_for(verify[0] ? verify : cause);
    pblog(rd_kafka_fatal_error(p->rk, NULL, 0) ? PBLOG_ERROR : PBLOG_WARN, "broker.error", "%s: %s%s%s%s%s%s",
          rd_kafka_err2name(err), cause, verify[0] ? "; " : "", verify, hint ? " (hint: " : "", hint ? hint : "",
          hint ? ")" : "");
    if (p->suppressed) PBLOG_I("broker.error", "%lu repeated broker errors were not logged", p->suppressed);
    p->suppressed = 0;
    p->degraded = 1;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    /* librdkafka's own log: warnings and worse only, debug when asked. Errors reach error_cb too. */
    if (level <= 4) PBLOG_D("rdkafka", "%s: %s", fac, buf);
    else if (level == 7) PBLOG_D("rdkafka", "%s: %s", fac, buf);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    pbd_producer_t *p = opaque;
    p->in_flight--;
    if (!m->err && p->degraded) {
        PBLOG_I("broker.recovered", "records are being delivered again");
        p->degraded = 0;
        p->last_cause[0] = '\0';
    }
    char reason[256] = "";
    if (m->err) snprintf(reason, sizeof reason, "%s: %s", rd_kafka_err2name(m->err), rd_kafka_err2str(m->err));
    p->cb(p->cb_ctx, m->_private, m->err, reason);
}

pbd_producer_t *pbd_producer_new(const pbd_config_t *cfg, const char *identity, pbd_delivery_fn cb, void *cb_ctx,
                                 char *errstr, size_t errstr_size) {
    pbd_producer_t *p = calloc(1, sizeof *p);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char linger[32], origin[600];
    if (!p || !conf) goto fail_nomem;
    p->event_fd = -1;
    p->cb = cb;
    p->cb_ctx = cb_ctx;
    p->topic = strdup(cfg->topic);
    p->identity = strdup(identity ? identity : "");
    if (!p->topic || !p->identity) goto fail_nomem;

    /* Defaults the pass-through may change: a bounded queue keeps memory small (predbridged stops
     * reading its sockets while the queue is full, so nothing is dropped). */
    const char *defaults[][2] = {
        {"queue.buffering.max.messages", "10000"},
        {"queue.buffering.max.kbytes", "4096"},
    };
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        snprintf(origin, sizeof origin, "default '%s'", defaults[i][0]);
        if (conf_set(conf, defaults[i][0], defaults[i][1], origin, errstr, errstr_size)) goto fail;
    }
    /* Pass-through next, so nothing below can be overridden by it. */
    for (size_t i = 0; i < cfg->n_kafka; i++) {
        const pbconf_kafka_prop_t *k = &cfg->kafka[i];
        snprintf(origin, sizeof origin, "%s:%d: key 'kafka.%s'", k->file ? k->file : "-o", k->line, k->property);
        if (conf_set(conf, k->property, k->value, origin, errstr, errstr_size)) goto fail;
    }
    snprintf(linger, sizeof linger, "%d", cfg->linger_ms);
    const char *fixed[][2] = {
        {"bootstrap.servers", cfg->bootstrap_servers},
        {"acks", "all"},
        {"enable.idempotence", "true"},
        {"compression.codec", cfg->compression},
        {"linger.ms", linger},
        /* Never give up on a record because time passed: it waits for the broker to come back. */
        {"message.timeout.ms", "0"},
        {"client.id", "predbridged"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        snprintf(origin, sizeof origin, "setting '%s'", fixed[i][0]);
        if (conf_set(conf, fixed[i][0], fixed[i][1], origin, errstr, errstr_size)) goto fail;
    }
    pbtls_verifier_t *verifier = NULL;
    if (pbtls_apply(conf, &cfg->tls, &verifier, errstr, errstr_size)) goto fail;
    pbtls_opaque_bind(&p->tls, verifier);
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    if (cfg->http_listen) {
        /* Broker state, round-trip time and queue depth for /metrics and /readyz, unless the
         * operator chose an interval with kafka.statistics.interval.ms. */
        int own = 0;
        for (size_t i = 0; i < cfg->n_kafka; i++) own |= !strcmp(cfg->kafka[i].property, "statistics.interval.ms");
        if (!own && conf_set(conf, "statistics.interval.ms", "5000", "setting 'statistics.interval.ms'", errstr,
                             errstr_size))
            goto fail;
        rd_kafka_conf_set_stats_cb(conf, stats_cb);
    }

    char e[512];
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (!p->rk) {
        snprintf(errstr, errstr_size, "cannot create the Kafka producer: %s", e);
        goto fail;
    }
    conf = NULL; /* owned by rk */
    p->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->event_fd < 0) {
        snprintf(errstr, errstr_size, "eventfd: %s", strerror(errno));
        goto fail;
    }
    p->mainq = rd_kafka_queue_get_main(p->rk);
    /* librdkafka writes these bytes to the fd whenever the main queue goes from empty to non-empty. */
    static const uint64_t one = 1;
    rd_kafka_queue_io_event_enable(p->mainq, p->event_fd, &one, sizeof one);
    /* Broker threads run since rd_kafka_new: an error (e.g. connection refused) may already be
     * queued, and the queue would then never go from empty to non-empty again. Look once. */
    if (write(p->event_fd, &one, sizeof one) != (ssize_t)sizeof one) {
        snprintf(errstr, errstr_size, "eventfd write: %s", strerror(errno));
        goto fail;
    }
    return p;

fail_nomem:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    pbd_producer_free(p);
    return NULL;
}

int pbd_producer_fd(const pbd_producer_t *p) {
    return p->event_fd;
}

void pbd_producer_serve(pbd_producer_t *p) {
    uint64_t v;
    while (read(p->event_fd, &v, sizeof v) > 0) {
    }
    while (rd_kafka_poll(p->rk, 0) > 0) {
    }
}

pbd_send_result_t pbd_producer_send(pbd_producer_t *p, pbd_record_t *rec, void *msg_opaque, char *reason,
                                    size_t reason_size) {
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    if (!h) {
        snprintf(reason, reason_size, "out of memory");
        return PBD_SEND_FULL;
    }
    rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
    rd_kafka_header_add(h, "pb-id", -1, rec->id, -1);
    rd_kafka_header_add(h, "pb-producer", -1, p->identity, -1);
    if (rec->model_version) rd_kafka_header_add(h, "pb-model-version", -1, rec->model_version, -1);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(p->topic), RD_KAFKA_V_VALUE(rec->value, rec->value_len),
        RD_KAFKA_V_KEY(rec->key, rec->key ? rec->key_len : 0), RD_KAFKA_V_TIMESTAMP(rec->timestamp_ms),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_OPAQUE(msg_opaque),
        RD_KAFKA_V_END);
    if (!err) {
        p->in_flight++;
        return PBD_SEND_OK;
    }
    rd_kafka_headers_destroy(h); /* not taken over on failure */
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return PBD_SEND_FULL;
    snprintf(reason, reason_size, "%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
    return PBD_SEND_ERROR;
}

int pbd_producer_in_flight(const pbd_producer_t *p) {
    return p->in_flight;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pbd_producer_flush(pbd_producer_t *p, int timeout_ms) {
    /* rd_kafka_flush sends at once (ignoring linger.ms) and serves delivery reports meanwhile. */
    int64_t deadline = mono_ms() + timeout_ms;
    while (p->in_flight > 0) {
        int64_t left = deadline - mono_ms();
        if (left <= 0) break;
        rd_kafka_flush(p->rk, (int)(left < 100 ? left : 100));
    }
    return p->in_flight;
}

void pbd_producer_free(pbd_producer_t *p) {
    if (!p) return;
    if (p->rk) {
        /* Anything still queued is reported as failed (purged) so callers can account for it. */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(p->rk, 1000); /* serves the purged records' reports */
        if (p->mainq) rd_kafka_queue_destroy(p->mainq);
        rd_kafka_destroy(p->rk);
    }
    pbtls_verifier_free(p->tls.verifier);
    if (p->event_fd >= 0) close(p->event_fd);
    free(p->topic);
    free(p->identity);
    free(p);
}
