/* producer.c: predbridged's Kafka producer, and its reload onto new TLS material (see producer.h). */
#include "producer.h"
#include "producer_test.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/watch.h"
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Connection-state logging is per broker: a failure is logged once per change of that broker's
 * cause, then once a minute while it lasts. With one slot for all, several unreachable brokers would
 * take turns at being a "new" cause and each turn would be logged. */
#define N_CAUSES 16
typedef struct pbd_cause {
    char broker[128];        /* librdkafka's broker name ("ssl://host:9093/1"); "" for errors without one */
    char key[512];           /* same_failure_key of the last cause logged */
    int64_t logged_ms;       /* when it was logged (CLOCK_MONOTONIC) */
    unsigned long suppressed;
} pbd_cause_t;

/* One librdkafka producer and the TLS material it was created with. The current instance takes new
 * records; a reload makes a new one current and retires the old one, which keeps delivering what it
 * holds (its delivery reports go to the same callback) for producer.flush_timeout_ms; what it still
 * holds then is purged and moved to the current instance (see purge_overdue). */
typedef struct pbd_instance {
    pbtls_opaque_head_t tls; /* first member: the TLS verifier finds itself through the conf opaque */
    pbd_producer_t *p;
    struct pbd_instance *next; /* in the retiring list */
    rd_kafka_t *rk;
    rd_kafka_queue_t *mainq;
    int event_fd;
    int in_flight;
    unsigned generation;       /* 1 for the one made at start, +1 per reload: named in logs */
    int64_t drain_deadline_ms; /* retiring: when what it still holds is purged and moved */
    int purged;                /* retiring and past its deadline: its purged records move */
    unsigned long moved_out;   /* records it handed to the current instance */
    pbd_cause_t causes[N_CAUSES];
    int degraded;
    unsigned long verify_seen; /* verifier failures already accounted */
    unsigned long tls_seen;    /* verifier TLS-parameter changes already copied to the metrics */
} pbd_instance_t;

/* A record taken back from an instance that will not deliver it (a retiring one past its time, one
 * that failed for good), or whose failure time mends (topic not known yet, a local timeout): the
 * current instance produces it again, in the order taken back. Owned copies of what librdkafka had. */
typedef struct pbd_moved {
    struct pbd_moved *next;
    void *opaque;
    uint64_t order; /* pbd_producer_set_order's key: the list is re-sent in this order */
    char *value;
    size_t value_len;
    char *key; /* NULL for none */
    size_t key_len;
    int64_t timestamp_ms;
    rd_kafka_headers_t *headers;
} pbd_moved_t;

PBTLS_OPAQUE_HEAD_CHECK(pbd_instance_t, tls);

struct pbd_producer {
    const pbd_config_t *cfg;
    pbd_instance_t *cur;
    pbd_instance_t *retiring; /* older instances still delivering */
    unsigned generations;
    int epfd;                 /* every instance's event fd, and the file watch's */
    pbwatch_t *watch;         /* NULL unless tls.watch */
    pbd_delivery_fn cb;
    void *cb_ctx;
    char *topic;
    char *identity;
    pbm_metrics_t *metrics;   /* NULL until pbd_producer_set_metrics */
    int plaintext_for_test;   /* set only by pbd_producer_new_plaintext_for_test (producer_test.h) */
    pbd_moved_t *moved, *moved_tail; /* taken-back records waiting for the current instance */
    int n_moved;
    pbd_order_fn order;      /* NULL: re-sent in the order taken back */
    int moved_unsorted;      /* a record was taken back after one that goes later */
    int64_t retry_at_ms;      /* a retry-later cause: no record is produced before then */
    int backoff_ms;           /* its next wait; 0 after a delivery */
    int64_t retry_logged_ms;
    char retry_why[300];      /* why records wait, for readiness while it lasts */
    unsigned long retry_suppressed;
    int64_t replace_at_ms;    /* a failed producer is not replaced again before then */
    int replace_backoff_ms;
    int closing;              /* pbd_producer_free: what is left is reported purged, not moved */
};

/* The TLS files a reload reads, in the order of the watch's bits. */
#define N_TLS_FILES 7
static const char *const tls_file_keys[N_TLS_FILES] = {
    "tls.ca", "tls.cert", "tls.key", "tls.key_passphrase_file", "tls.keystore", "tls.keystore_passphrase_file",
    "tls.crl"};

static void tls_files(const pbtls_settings_t *s, const char *out[N_TLS_FILES]) {
    const char *files[N_TLS_FILES] = {s->ca,       s->cert, s->key, s->key_passphrase_file,
                                      s->keystore, s->keystore_passphrase_file, s->crl};
    memcpy(out, files, sizeof files);
}

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
    /* "unknown ca": the broker does not trust the CA that issued our certificate. */
    if (strstr(cause, "certificate required") || strstr(cause, "certificate unknown") || strstr(cause, "unknown ca") ||
        strstr(cause, "bad certificate"))
        return "the broker refused our client certificate: check tls.cert/tls.key and that the broker trusts its CA";
    if (strstr(cause, "protocol version") || strstr(cause, "unsupported protocol"))
        return "the broker does not speak TLS 1.3; predbridge requires it";
    if (strstr(cause, "certificate verify failed") || strstr(cause, "verification"))
        return "the broker's certificate did not verify against tls.ca, its host name or tls.pins";
    if (strstr(cause, "Connection refused")) return "nothing listens at bootstrap.servers";
    return NULL;
}

/* A fatal error a fresh producer would hit again: the broker does not let our principal write
 * (the idempotent-write ACL is missing). Records then wait, taken back, until a restart. */
static int unreplaceable(pbd_instance_t *in) {
    return pbm_is_authorization_error(rd_kafka_fatal_error(in->rk, NULL, 0));
}

/* Counts an error for metrics and readiness. Runs for every report, also those not logged again.
 * Readiness follows the current instance only: a retiring one is on its way out. */
static void account_error(pbd_instance_t *in, int err, const char *cause) {
    pbm_metrics_t *m = in->p->metrics;
    if (!m) return;
    pbm_tls_cause_t tls = pbm_tls_classify(cause, "");
    int tls_failed = err == RD_KAFKA_RESP_ERR__SSL || tls != PBM_TLS_OTHER;
    unsigned long fresh = 0;
    char verify[512] = "";
    if (tls_failed && in->tls.verifier) {
        /* "certificate verify failed" means our verifier refused the broker: its cause is the label.
         * It also sees every refused handshake, which librdkafka reports only now and then. */
        unsigned long failures = pbtls_verifier_failures(in->tls.verifier);
        fresh = failures - in->verify_seen;
        in->verify_seen = failures;
        if (fresh || tls == PBM_TLS_CERTIFICATE_VERIFY) {
            pbtls_verifier_last_failure(in->tls.verifier, verify, sizeof verify);
            if (verify[0]) tls = pbm_tls_classify(cause, verify);
        }
    }
    PBLOG_D("metrics", "broker error %s: tls %s, %lu new verifier failure(s)", rd_kafka_err2name((rd_kafka_resp_err_t)err),
            tls_failed ? pbm_tls_cause_name(tls) : "no", fresh);
    if (tls_failed) {
        pbm_tls_failure(m, tls, fresh > 1 ? fresh : 1);
        if (tls == PBM_TLS_CLIENT_CERT_REFUSED) pbm_authentication_failure(m);
    } else if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
        pbm_authentication_failure(m);
    } else if (pbm_is_authorization_error((rd_kafka_resp_err_t)err) ||
               (err == RD_KAFKA_RESP_ERR__FATAL && pbm_is_authorization_error(rd_kafka_fatal_error(in->rk, NULL, 0)))) {
        pbm_authorization_failure(m);
    }
    if (in != in->p->cur) return;
    char why[1200];
    snprintf(why, sizeof why, "%s: %s%s%s", rd_kafka_err2name((rd_kafka_resp_err_t)err), cause, verify[0] ? "; " : "",
             verify);
    if (err == RD_KAFKA_RESP_ERR__FATAL && unreplaceable(in))
        pbm_fatal(m, why);
    else if (err == RD_KAFKA_RESP_ERR__FATAL)
        pbm_not_ready(m, why); /* not for good: replace_failed makes a fresh producer */
    else if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        pbm_brokers_down(m, why);
    else if (tls_failed || err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
             pbm_is_authorization_error((rd_kafka_resp_err_t)err))
        pbm_not_ready(m, why);
}

/* A broker's negotiated TLS version or cipher is new or changed (a librdkafka broker thread). */
static void log_broker_tls(void *ctx, const pbtls_broker_tls_t *b) {
    (void)ctx;
    pblog_field_t f[] = {{.key = "broker", .str = b->broker}, {.key = "version", .str = b->version},
                         {.key = "cipher", .str = b->cipher}};
    pblog_fields(PBLOG_INFO, "broker.tls", f, 3, "broker %s: %s, %s", b->broker, b->version, b->cipher);
}

/* predbridge_broker_tls_info follows the current instance's verifier, like the broker gauges. */
static void copy_broker_tls(pbd_producer_t *p) {
    pbtls_verifier_t *v = p->cur->tls.verifier;
    unsigned long changes = pbtls_verifier_tls_changes(v);
    if (!p->metrics || changes == p->cur->tls_seen) return;
    pbtls_broker_tls_t b[PBTLS_MAX_BROKER_TLS];
    size_t n = pbtls_verifier_broker_tls(v, b, PBTLS_MAX_BROKER_TLS);
    for (size_t i = 0; i < n; i++) pbm_broker_tls(p->metrics, b[i].broker, b[i].version, b[i].cipher);
    p->cur->tls_seen = changes;
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    (void)rk;
    pbd_instance_t *in = opaque;
    /* The broker gauges describe the connections new records use. */
    if (in == in->p->cur && in->p->metrics && pbm_update_from_stats(in->p->metrics, json, json_len) != 0)
        PBLOG_D("metrics", "librdkafka statistics could not be read");
    return 0; /* librdkafka frees json */
}

void pbd_producer_set_order(pbd_producer_t *p, pbd_order_fn order) {
    p->order = order;
}

void pbd_producer_set_metrics(pbd_producer_t *p, pbm_metrics_t *m) {
    p->metrics = m;
}

#define REPEAT_LOG_MS 60000


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

/* librdkafka names the broker first ("ssl://host:9093/1: SSL handshake failed: ..."): that name, or
 * "" if the text does not start with one. */
static void broker_of(const char *reason, char *out, size_t size) {
    const char *colon = strstr(reason, ": ");
    size_t n = colon ? (size_t)(colon - reason) : 0;
    if (!colon || !memchr(reason, '/', n) || memchr(reason, ' ', n)) n = 0;
    snprintf(out, size, "%.*s", (int)n, reason);
}

/* The broker's slot: its own, a free one, or the one logged longest ago. */
static pbd_cause_t *cause_slot(pbd_instance_t *in, const char *broker) {
    pbd_cause_t *oldest = &in->causes[0];
    for (size_t i = 0; i < N_CAUSES; i++) {
        pbd_cause_t *c = &in->causes[i];
        if (!strcmp(c->broker, broker) && (c->key[0] || !broker[0])) return c;
        if (!c->key[0]) return c;
        if (c->logged_ms < oldest->logged_ms) oldest = c;
    }
    return oldest;
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    pbd_instance_t *in = opaque;
    char cause[512], verify[512] = "", who[64] = "", broker[128];
    cause_of(reason, cause, sizeof cause);
    if (in != in->p->cur) snprintf(who, sizeof who, "retiring producer #%u: ", in->generation);
    if (err == RD_KAFKA_RESP_ERR__SSL && in->tls.verifier) pbtls_verifier_last_failure(in->tls.verifier, verify, sizeof verify);
    account_error(in, err, cause);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (!in->degraded) PBLOG_W("broker.down", "%sall brokers are down; records are kept and retried", who);
        in->degraded = 1;
        return;
    }
    char key[512];
    same_failure_key(cause, key, sizeof key);
    broker_of(reason, broker, sizeof broker);
    pbd_cause_t *c = cause_slot(in, broker);
    if (!strcmp(key, c->key) && !strcmp(broker, c->broker)) {
        c->suppressed++;
        int64_t now = pbclock_mono_ms();
        if (now - c->logged_ms >= REPEAT_LOG_MS) {
            /* An outage that lasts: say so now and then, never once per retry. */
            pblog_field_t f[] = {{.key = broker[0] ? "broker" : NULL, .str = broker},
                                 {.key = "error", .str = rd_kafka_err2name(err)},
                                 {.key = "cause", .str = cause},
                                 {.key = "producer", .num = in->generation},
                                 {.key = "repeats", .num = (long long)c->suppressed}};
            pblog_fields(PBLOG_WARN, "broker.error", f, 5, "%sstill failing: %s (%lu repeats in the last %lld s)", who,
                         cause, c->suppressed, (long long)((now - c->logged_ms) / 1000));
            c->suppressed = 0;
            c->logged_ms = now;
        }
        return;
    }
    unsigned long suppressed = strcmp(broker, c->broker) ? 0 : c->suppressed;
    snprintf(c->broker, sizeof c->broker, "%s", broker);
    snprintf(c->key, sizeof c->key, "%s", key);
    c->logged_ms = pbclock_mono_ms();
    c->suppressed = 0;
    const char *hint = hint_for(verify[0] ? verify : cause);
    /* A field the verifier's cause does not fill is dropped (key NULL), as is a broker not named. */
    pblog_field_t f[] = {{.key = broker[0] ? "broker" : NULL, .str = broker},
                         {.key = "error", .str = rd_kafka_err2name(err)},
                         {.key = "cause", .str = cause},
                         {.key = verify[0] ? "verify" : NULL, .str = verify},
                         {.key = "producer", .num = in->generation}};
    pblog_fields(rd_kafka_fatal_error(in->rk, NULL, 0) ? PBLOG_ERROR : PBLOG_WARN, "broker.error", f, 5,
                 "%s%s: %s%s%s%s%s%s", who, rd_kafka_err2name(err), cause, verify[0] ? "; " : "", verify,
                 hint ? " (hint: " : "", hint ? hint : "", hint ? ")" : "");
    pblog_field_t g[] = {f[0], {.key = "suppressed", .num = (long long)suppressed}};
    if (suppressed) pblog_fields(PBLOG_INFO, "broker.error", g, 2, "%lu repeated broker errors were not logged", suppressed);
    in->degraded = 1;
}

/* librdkafka's own log: emerg..err at error, warning at warn, notice..debug at debug. Its "FAIL"
 * lines (a broker connection failed) are the errors error_cb logs once per change and broker, then
 * once a minute: at error here they would repeat on every reconnect, so they stay at debug. No
 * secret can appear:
 * librdkafka prints the properties it marks sensitive (ssl.key.password, ssl.key.pem,
 * ssl.keystore.password, sasl.password) as "[redacted]"; predbridged hands it the key as a path
 * (ssl.key.location), never as text. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    if (!strcmp(fac, "FAIL")) PBLOG_D("rdkafka", "%s: %s", fac, buf);
    else if (level <= 3) PBLOG_E("rdkafka", "%s: %s", fac, buf);
    else if (level == 4) PBLOG_W("rdkafka", "%s: %s", fac, buf);
    else PBLOG_D("rdkafka", "%s: %s", fac, buf);
}

/* Failures that time mends: the topic is not known (yet, or again), or a local timeout passed. The
 * record is not the broker's refusal: it is produced again after a backoff, never set aside. */
static int retry_later(rd_kafka_resp_err_t err) {
    switch (err) {
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
        return 1;
    default:
        return 0;
    }
}

/* Whether a failed record is ours to produce again rather than the caller's to record: the instance
 * will not deliver it (retiring and purged after its time, or failed for good), or time mends the
 * cause. Not while closing: what is left then is reported purged and stays in the spool. */
static int takes_back(const pbd_instance_t *in, rd_kafka_resp_err_t err) {
    if (in->p->closing) return 0;
    return in->purged || rd_kafka_fatal_error(in->rk, NULL, 0) || retry_later(err);
}

#define RETRY_BACKOFF_MIN_MS 100
#define RETRY_BACKOFF_MAX_MS 5000

/* No taken-back record is produced before the backoff passed; readiness is off while it lasts. The
 * log says so once, then once a minute. */
static void back_off(pbd_producer_t *p, rd_kafka_resp_err_t err) {
    int64_t now = pbclock_mono_ms();
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : RETRY_BACKOFF_MIN_MS;
    if (p->backoff_ms > RETRY_BACKOFF_MAX_MS) p->backoff_ms = RETRY_BACKOFF_MAX_MS;
    p->retry_at_ms = now + p->backoff_ms;
    char *why = p->retry_why;
    snprintf(why, sizeof p->retry_why, "%s: %s (topic '%s'); records are kept and retried", rd_kafka_err2name(err),
             rd_kafka_err2str(err), p->topic);
    if (p->metrics) pbm_hold(p->metrics, why); /* a broker up does not make us ready meanwhile */
    if (p->retry_logged_ms && now - p->retry_logged_ms < REPEAT_LOG_MS) {
        p->retry_suppressed++;
        return;
    }
    PBLOG_W("broker.retry", "%s: %d record(s) wait, next try in %d ms (%lu more not logged)", why, p->n_moved,
            p->backoff_ms, p->retry_suppressed);
    p->retry_logged_ms = now;
    p->retry_suppressed = 0;
}

static void moved_free(pbd_moved_t *r) {
    free(r->value);
    free(r->key);
    if (r->headers) rd_kafka_headers_destroy(r->headers);
    free(r);
}

/* Keeps a copy of a record the instance gave back; NULL if memory ran out. */
static pbd_moved_t *moved_copy(const rd_kafka_message_t *m) {
    pbd_moved_t *r = calloc(1, sizeof *r);
    rd_kafka_headers_t *h = NULL;
    if (!r) return NULL;
    r->opaque = m->_private;
    r->value_len = m->len;
    r->key_len = m->key_len;
    r->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
    r->value = malloc(m->len + 1);
    if (m->key) r->key = malloc(m->key_len + 1);
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) r->headers = rd_kafka_headers_copy(h);
    if (!r->value || (m->key && !r->key) || (h && !r->headers)) {
        moved_free(r);
        return NULL;
    }
    if (m->len) memcpy(r->value, m->payload, m->len);
    if (m->key) memcpy(r->key, m->key, m->key_len);
    return r;
}

/* Takes a record back for the current instance, after the ones taken back before it. Returns -1 if
 * it could not be copied: the caller reports it purged (it stays in the spool for the next start). */
static int take_back(pbd_instance_t *in, const rd_kafka_message_t *m) {
    pbd_producer_t *p = in->p;
    pbd_moved_t *r = moved_copy(m);
    if (!r) {
        PBLOG_E("oom", "out of memory moving a record to the current producer: it stays in the spool until restart");
        return -1;
    }
    if (p->order) r->order = p->order(p->cb_ctx, r->opaque);
    if (p->moved_tail && r->order < p->moved_tail->order) p->moved_unsorted = 1;
    if (p->moved_tail) p->moved_tail->next = r;
    else p->moved = r;
    p->moved_tail = r;
    p->n_moved++;
    if (in != p->cur || rd_kafka_fatal_error(in->rk, NULL, 0)) in->moved_out++;
    /* One backoff per wait, not one per record of a failed batch; a retiring instance's failures do
     * not hold the current one back. */
    if (retry_later(m->err) && in == p->cur && pbclock_mono_ms() >= p->retry_at_ms) back_off(p, m->err);
    return 0;
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    pbd_instance_t *in = opaque;
    pbd_producer_t *p = in->p;
    in->in_flight--;
    if (m->err && takes_back(in, m->err) && take_back(in, m) == 0) return;
    if (!m->err) {
        if (p->backoff_ms && p->metrics) pbm_release(p->metrics);
        p->backoff_ms = 0;
        if (in == p->cur) p->replace_backoff_ms = 0;
    }
    if (!m->err && in->degraded) {
        pblog_field_t f[] = {{.key = "producer", .num = in->generation}};
        pblog_fields(PBLOG_INFO, "broker.recovered", f, 1, "records are being delivered again");
        in->degraded = 0;
        memset(in->causes, 0, sizeof in->causes);
    }
    /* A record that could not be taken back (no memory) stays in the spool: say purged. */
    rd_kafka_resp_err_t err = m->err && takes_back(in, m->err) ? RD_KAFKA_RESP_ERR__PURGE_QUEUE : m->err;
    char reason[256] = "";
    if (err) snprintf(reason, sizeof reason, "%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
    p->cb(p->cb_ctx, m->_private, err, reason, m->payload, m->len, in == p->cur);
}

/* Destroys an instance; records it still holds are purged and reported as failed first. Blocks
 * while librdkafka stops its threads. */
static void instance_free(pbd_producer_t *p, pbd_instance_t *in) {
    if (!in) return;
    if (in->rk) {
        /* Anything still queued is reported as failed (purged) so callers can account for it. */
        if (in->in_flight > 0) {
            rd_kafka_purge(in->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_flush(in->rk, 1000); /* serves the purged records' reports */
        }
        if (in->mainq) rd_kafka_queue_destroy(in->mainq);
        rd_kafka_destroy(in->rk);
    }
    pbtls_verifier_free(in->tls.verifier);
    if (in->event_fd >= 0) {
        if (p->epfd >= 0) epoll_ctl(p->epfd, EPOLL_CTL_DEL, in->event_fd, NULL);
        close(in->event_fd);
    }
    free(in);
}

/* A librdkafka producer with the TLS material the files hold now. Returns NULL with errstr. */
static pbd_instance_t *instance_new(pbd_producer_t *p, char *errstr, size_t errstr_size) {
    const pbd_config_t *cfg = p->cfg;
    pbd_instance_t *in = calloc(1, sizeof *in);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char linger[32], origin[600];
    if (!in || !conf) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    in->p = p;
    in->event_fd = -1;

    /* Defaults the pass-through may change: every client's, and a bounded queue that keeps memory
     * small (predbridged stops reading its sockets while the queue is full, so nothing is dropped). */
    if (pbtls_kafka_client_defaults(conf, errstr, errstr_size)) goto fail;
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
    /* TLS, always; only the mock-cluster unit tests speak plaintext, to loopback (producer_test.h). */
    pbtls_verifier_t *verifier = NULL;
    if (p->plaintext_for_test
            ? conf_set(conf, "security.protocol", "plaintext", "test seam", errstr, errstr_size)
            : pbtls_apply(conf, &cfg->tls, &verifier, errstr, errstr_size))
        goto fail;
    pbtls_opaque_bind(&in->tls, verifier);
    pbtls_verifier_on_tls_change(verifier, log_broker_tls, NULL);
    rd_kafka_conf_set_opaque(conf, in);
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
    in->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (!in->rk) {
        snprintf(errstr, errstr_size, "cannot create the Kafka producer: %s", e);
        goto fail;
    }
    conf = NULL; /* owned by rk */
    in->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = in};
    if (in->event_fd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, in->event_fd, &ev) != 0) {
        snprintf(errstr, errstr_size, "eventfd: %s", strerror(errno));
        goto fail;
    }
    in->mainq = rd_kafka_queue_get_main(in->rk);
    /* librdkafka writes these bytes to the fd whenever the main queue goes from empty to non-empty. */
    static const uint64_t one = 1;
    rd_kafka_queue_io_event_enable(in->mainq, in->event_fd, &one, sizeof one);
    /* Broker threads run since rd_kafka_new: an error (e.g. connection refused) may already be
     * queued, and the queue would then never go from empty to non-empty again. Look once. */
    if (write(in->event_fd, &one, sizeof one) != (ssize_t)sizeof one) {
        snprintf(errstr, errstr_size, "eventfd write: %s", strerror(errno));
        goto fail;
    }
    return in;

fail:
    if (conf) rd_kafka_conf_destroy(conf);
    instance_free(p, in);
    return NULL;
}

/* Watches the TLS files. Without the watch (no inotify instance left, say) predbridged still
 * delivers, and SIGHUP still reloads: say so rather than refuse to start. */
static void start_watch(pbd_producer_t *p) {
    const char *files[N_TLS_FILES];
    char err[512];
    tls_files(&p->cfg->tls, files);
    p->watch = pbwatch_new(files, N_TLS_FILES, p->cfg->tls_watch_debounce_ms, err, sizeof err);
    struct epoll_event ev = {.events = EPOLLIN};
    if (p->watch && epoll_ctl(p->epfd, EPOLL_CTL_ADD, pbwatch_fd(p->watch), &ev) != 0)
        snprintf(err, sizeof err, "epoll_ctl: %s", strerror(errno));
    else if (p->watch)
        return;
    PBLOG_E("tls.watch", "cannot watch the TLS files for changes (%s); reload them with SIGHUP", err);
    pbwatch_free(p->watch);
    p->watch = NULL;
}

static pbd_producer_t *producer_new(const pbd_config_t *cfg, const char *identity, pbd_delivery_fn cb,
                                    void *cb_ctx, int plaintext_for_test, char *errstr, size_t errstr_size) {
    pbd_producer_t *p = calloc(1, sizeof *p);
    if (!p) goto fail_nomem;
    p->epfd = -1;
    p->plaintext_for_test = plaintext_for_test;
    p->cfg = cfg;
    p->cb = cb;
    p->cb_ctx = cb_ctx;
    p->topic = strdup(cfg->topic);
    p->identity = strdup(identity ? identity : "");
    if (!p->topic || !p->identity) goto fail_nomem;
    if ((p->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        snprintf(errstr, errstr_size, "epoll_create1: %s", strerror(errno));
        goto fail;
    }
    if (!(p->cur = instance_new(p, errstr, errstr_size))) goto fail;
    p->cur->generation = ++p->generations;
    if (cfg->tls_watch) start_watch(p);
    return p;

fail_nomem:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    pbd_producer_free(p);
    return NULL;
}

pbd_producer_t *pbd_producer_new(const pbd_config_t *cfg, const char *identity, pbd_delivery_fn cb, void *cb_ctx,
                                 char *errstr, size_t errstr_size) {
    return producer_new(cfg, identity, cb, cb_ctx, 0, errstr, errstr_size);
}

/* Every address in a comma-separated bootstrap list is 127.0.0.1:<port>. */
static int loopback_only(const char *servers) {
    static const char lo[] = "127.0.0.1:";
    for (const char *s = servers; s; s = strchr(s, ',') ? strchr(s, ',') + 1 : NULL)
        if (strncmp(s, lo, sizeof lo - 1) != 0) return 0;
    return servers != NULL;
}

pbd_producer_t *pbd_producer_new_plaintext_for_test(const pbd_config_t *cfg, const char *identity,
                                                    pbd_delivery_fn cb, void *cb_ctx, char *errstr,
                                                    size_t errstr_size) {
    if (!loopback_only(cfg->bootstrap_servers) || cfg->tls_watch) {
        snprintf(errstr, errstr_size, "the plaintext test producer needs 127.0.0.1 brokers and no tls.watch");
        return NULL;
    }
    return producer_new(cfg, identity, cb, cb_ctx, 1, errstr, errstr_size);
}

int pbd_producer_fd(const pbd_producer_t *p) {
    return p->epfd;
}

int pbd_producer_check_material(pbd_producer_t *p) {
    char errstr[1024];
    pbtls_cert_info_t info;
    if (pbtls_check_material(&p->cfg->tls, time(NULL), &info, pblog_warn_to, (void *)"tls.material", errstr, sizeof errstr) == 0) return 0;
    PBLOG_E("tls.material", "periodic check of the TLS material failed: %s", errstr);
    return -1;
}

/* Destroys retiring instances that hold no more records (delivered, or moved to the current one). */
static void retire_drained(pbd_producer_t *p) {
    for (pbd_instance_t **link = &p->retiring; *link;) {
        pbd_instance_t *in = *link;
        if (in->in_flight > 0) {
            link = &in->next;
            continue;
        }
        *link = in->next;
        unsigned generation = in->generation;
        unsigned long moved = in->moved_out;
        int64_t start = pbclock_mono_ms();
        instance_free(p, in);
        long long ms = (long long)(pbclock_mono_ms() - start);
        pblog_field_t f[] = {{.key = "producer", .num = generation}, {.key = "ms", .num = ms},
                             {.key = "result", .str = "closed"}, {.key = "records", .num = (long long)moved},
                             {.key = "to", .num = p->cur->generation}};
        if (moved)
            pblog_fields(PBLOG_WARN, "producer.moved", f, 5,
                         "producer #%u did not deliver %lu record(s) in time; they were moved to producer #%u, which "
                         "sends them again (any it had sent may reach the broker twice, with the same pb-id), and it "
                         "was closed (in %lld ms)",
                         generation, moved, p->cur->generation, ms);
        else
            pblog_fields(PBLOG_INFO, "tls.reload", f, 3,
                         "producer #%u (previous TLS material) delivered all its records and was closed (in %lld ms)",
                         generation, ms);
    }
}

static void *instance_create(void *p, char *errstr, size_t errstr_size) {
    return instance_new(p, errstr, errstr_size);
}

static void instance_destroy(void *p, void *in) {
    instance_free(p, in);
}

/* A producer from the TLS files as they are now, checked before and after librdkafka read them. */
static pbd_instance_t *instance_from_checked_files(pbd_producer_t *p, pbtls_cert_info_t *info, char *errstr,
                                                   size_t errstr_size) {
    return pbtls_create_checked(&p->cfg->tls, info, pblog_warn_to, (void *)"tls.material", instance_create,
                                instance_destroy, p, NULL, errstr, errstr_size);
}

/* Makes fresh the current instance; the previous one retires, with drain_ms to deliver what it holds. */
static pbd_instance_t *install(pbd_producer_t *p, pbd_instance_t *fresh, int drain_ms) {
    pbd_instance_t *old = p->cur;
    fresh->generation = ++p->generations;
    p->cur = fresh;
    old->drain_deadline_ms = pbclock_mono_ms() + drain_ms;
    old->next = p->retiring;
    p->retiring = old;
    return old;
}

/* The test seam's reload: a plaintext instance from the config as it is now (loopback brokers only). */
static pbd_instance_t *instance_for_test(pbd_producer_t *p, char *errstr, size_t errstr_size) {
    if (loopback_only(p->cfg->bootstrap_servers)) return instance_new(p, errstr, errstr_size);
    snprintf(errstr, errstr_size, "the plaintext test producer needs 127.0.0.1 brokers");
    return NULL;
}

int pbd_producer_reload(pbd_producer_t *p, const char *trigger) {
    char errstr[1024], until[32];
    pbtls_cert_info_t info = {0};
    pbd_instance_t *fresh = p->plaintext_for_test ? instance_for_test(p, errstr, sizeof errstr)
                                                  : instance_from_checked_files(p, &info, errstr, sizeof errstr);
    if (!fresh) {
        pblog_field_t f[] = {{.key = "trigger", .str = trigger}, {.key = "result", .str = "failed"},
                             {.key = "producer", .num = p->cur->generation}};
        pblog_fields(PBLOG_ERROR, "tls.reload", f, 3,
                     "reload of the TLS material (%s) failed; producer #%u keeps the previous material: %s", trigger,
                     p->cur->generation, errstr);
        if (p->metrics) pbm_tls_reload(p->metrics, 0);
        return -1;
    }
    /* The old producer may never connect again (its certificate expired, was revoked, or the CA
     * changed: the reasons to rotate), and its records never time out: it gets
     * producer.flush_timeout_ms, then what it holds moves to the new one (purge_overdue). */
    pbd_instance_t *old = install(p, fresh, p->cfg->flush_timeout_ms);
    if (!p->plaintext_for_test && strcmp(info.common_name, p->identity) != 0) {
        pblog_field_t f[] = {{.key = "from", .str = p->identity}, {.key = "to", .str = info.common_name}};
        pblog_fields(PBLOG_WARN, "tls.reload", f, 2,
                     "the client certificate's CN changed from '%s' to '%s': the broker's ACLs are keyed on it",
                     p->identity, info.common_name);
        char *id = strdup(info.common_name);
        if (id) free(p->identity), p->identity = id;
    }
    if (p->metrics) {
        pbm_set_cert_expiry(p->metrics, info.not_after, info.ca_not_after);
        pbm_tls_reload(p->metrics, 1);
        pbm_fresh_producer(p->metrics);
    }
    struct tm tm;
    gmtime_r(&info.not_after, &tm);
    strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm); /* as at start-up */
    pblog_field_t f[] = {{.key = "trigger", .str = trigger},       {.key = "result", .str = "ok"},
                         {.key = "serial", .str = info.serial},     {.key = "producer", .num = fresh->generation},
                         {.key = "previous", .num = old->generation}, {.key = "records", .num = old->in_flight}};
    pblog_fields(PBLOG_INFO, "tls.reload", f, 6,
                 "reloaded the TLS material (%s): client certificate CN=%s serial %s valid until %s; producer #%u "
                 "takes new records, producer #%u delivers its %d record(s) in flight within "
                 "producer.flush_timeout_ms (%d ms) and then closes; what it has not delivered by then moves to "
                 "producer #%u",
                 trigger, info.common_name, info.serial, until, fresh->generation, old->generation, old->in_flight,
                 p->cfg->flush_timeout_ms, fresh->generation);
    retire_drained(p);
    return 0;
}

/* A retiring instance past its drain time: its records are purged (queued and in flight) and its
 * delivery reports hand them to the current instance (take_back), in the order librdkafka reports
 * them, which is each partition's order as far as librdkafka keeps it. A purged in-flight record may
 * already be on the broker: sending it again makes a duplicate with the same pb-id, which
 * libpredbridge drops; the alternative, waiting for an instance that may never connect, holds the
 * record until a restart. */
static void purge_overdue(pbd_instance_t *in) {
    if (in->purged || in->in_flight == 0 || pbclock_mono_ms() < in->drain_deadline_ms) return;
    in->purged = 1;
    rd_kafka_purge(in->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

static void instance_serve(pbd_instance_t *in) {
    uint64_t v;
    while (read(in->event_fd, &v, sizeof v) > 0) {
    }
    while (rd_kafka_poll(in->rk, 0) > 0) {
    }
}

#define REPLACE_BACKOFF_MIN_MS 1000
#define REPLACE_BACKOFF_MAX_MS 60000

/* librdkafka's producer failed for good (e.g. the idempotent producer lost its sequence: an
 * OUT_OF_ORDER_SEQUENCE_NUMBER) and refuses every record from now on. A fresh one with the current
 * material (as a reload) takes over, and what the failed one did not deliver moves to it at once. If a
 * fresh one fails the same way (an ACL missing, say), the next is made after a growing wait. */
static void replace_failed(pbd_producer_t *p) {
    char cause[512], errstr[1024];
    rd_kafka_resp_err_t err = rd_kafka_fatal_error(p->cur->rk, cause, sizeof cause);
    if (!err) return;
    int64_t now = pbclock_mono_ms();
    if (now < p->replace_at_ms || unreplaceable(p->cur)) return;
    p->replace_backoff_ms = p->replace_backoff_ms ? p->replace_backoff_ms * 2 : REPLACE_BACKOFF_MIN_MS;
    if (p->replace_backoff_ms > REPLACE_BACKOFF_MAX_MS) p->replace_backoff_ms = REPLACE_BACKOFF_MAX_MS;
    p->replace_at_ms = now + p->replace_backoff_ms;
    pbtls_cert_info_t info;
    pbd_instance_t *fresh = p->plaintext_for_test ? instance_for_test(p, errstr, sizeof errstr)
                                                  : instance_from_checked_files(p, &info, errstr, sizeof errstr);
    if (!fresh) {
        pblog_field_t f[] = {{.key = "producer", .num = p->cur->generation},
                             {.key = "error", .str = rd_kafka_err2name(err)},
                             {.key = "result", .str = "not_replaced"}};
        pblog_fields(PBLOG_ERROR, "producer.fatal", f, 3,
                     "producer #%u failed for good (%s: %s) and could not be replaced (tried again in %d ms): %s",
                     p->cur->generation, rd_kafka_err2name(err), cause, p->replace_backoff_ms, errstr);
        return;
    }
    pbd_instance_t *old = install(p, fresh, 0);
    /* Its records are taken back now, so that they go before any record sent from here on. */
    purge_overdue(old);
    instance_serve(old);
    /* Served: most of its records are taken back already (moved_out), the rest when reported. */
    long long records = (long long)old->moved_out + old->in_flight;
    pblog_field_t f[] = {{.key = "producer", .num = old->generation},  {.key = "error", .str = rd_kafka_err2name(err)},
                         {.key = "result", .str = "replaced"},         {.key = "to", .num = fresh->generation},
                         {.key = "records", .num = records}};
    pblog_fields(PBLOG_ERROR, "producer.fatal", f, 5,
                 "producer #%u failed for good (%s: %s); producer #%u replaces it with the same TLS material and "
                 "sends again the %lld record(s) it had not delivered",
                 old->generation, rd_kafka_err2name(err), cause, fresh->generation, records);
}

static rd_kafka_resp_err_t instance_produce(pbd_instance_t *in, const char *topic, char *value, size_t value_len,
                                            const char *key, size_t key_len, int64_t timestamp_ms,
                                            rd_kafka_headers_t *h, void *msg_opaque) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        in->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(value, value_len), RD_KAFKA_V_KEY(key, key ? key_len : 0),
        RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
        RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
    if (!err) in->in_flight++;
    return err;
}

/* Merge sort of a list of taken-back records by order key; equal keys keep their order. */
static pbd_moved_t *moved_sort(pbd_moved_t *list, int n) {
    if (n < 2) return list;
    pbd_moved_t *mid = list;
    for (int i = 1; i < n / 2; i++) mid = mid->next;
    pbd_moved_t *rest = mid->next;
    mid->next = NULL;
    pbd_moved_t *a = moved_sort(list, n / 2), *b = moved_sort(rest, n - n / 2);
    pbd_moved_t head = {0}, *t = &head;
    while (a && b) {
        pbd_moved_t **from = b->order < a->order ? &b : &a;
        t = t->next = *from;
        *from = (*from)->next;
    }
    t->next = a ? a : b;
    return head.next;
}

/* Hands taken-back records to the current instance, in acceptance order (pbd_producer_set_order:
 * librdkafka reports a failed producer's queued records before those it was transmitting), until
 * its queue is full or the backoff of a retry-later cause has not passed. One refused for good at
 * once goes to the caller. */
static void resend_moved(pbd_producer_t *p) {
    if (p->moved_unsorted) {
        p->moved = moved_sort(p->moved, p->n_moved);
        for (p->moved_tail = p->moved; p->moved_tail && p->moved_tail->next;) p->moved_tail = p->moved_tail->next;
        p->moved_unsorted = 0;
    }
    while (p->moved && pbclock_mono_ms() >= p->retry_at_ms) {
        pbd_moved_t *r = p->moved;
        rd_kafka_resp_err_t err = instance_produce(p->cur, p->topic, r->value, r->value_len, r->key, r->key_len,
                                                   r->timestamp_ms, r->headers, r->opaque);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL || err == RD_KAFKA_RESP_ERR__FATAL) return;
        if (retry_later(err)) {
            back_off(p, err);
            return;
        }
        p->moved = r->next;
        if (!p->moved) p->moved_tail = NULL;
        p->n_moved--;
        if (!err) {
            r->value = NULL, r->headers = NULL; /* librdkafka's now */
        } else {
            char reason[256];
            snprintf(reason, sizeof reason, "%s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
            p->cb(p->cb_ctx, r->opaque, err, reason, r->value, r->value_len, 1);
        }
        moved_free(r);
    }
}

/* The watch said files changed and stayed unchanged for the debounce time: reload. */
static void serve_watch(pbd_producer_t *p) {
    char err[256], trigger[512] = "";
    uint32_t changed = 0;
    int rc = pbwatch_handle(p->watch, &changed, err, sizeof err);
    if (rc < 0) {
        /* Reading inotify failed: stop, or the loop would spin on a ready fd. */
        PBLOG_E("tls.watch", "%s; watching the TLS files stopped (SIGHUP still reloads)", err);
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, pbwatch_fd(p->watch), NULL);
        pbwatch_free(p->watch);
        p->watch = NULL;
        return;
    }
    if (rc == 0) return;
    pbwatch_describe(changed, tls_file_keys, N_TLS_FILES, trigger, sizeof trigger);
    pbd_producer_reload(p, trigger);
}


void pbd_producer_serve(pbd_producer_t *p) {
    instance_serve(p->cur);
    replace_failed(p);
    copy_broker_tls(p);
    for (pbd_instance_t *in = p->retiring; in; in = in->next) {
        purge_overdue(in);
        instance_serve(in);
    }
    retire_drained(p);
    resend_moved(p);
    if (p->watch) serve_watch(p);
}

pbd_send_result_t pbd_producer_send(pbd_producer_t *p, pbd_record_t *rec, void *msg_opaque, rd_kafka_resp_err_t *err,
                                    char *reason, size_t reason_size) {
    *err = RD_KAFKA_RESP_ERR_NO_ERROR;
    /* Records taken back go first, and a retry-later cause holds new records back too: both are
     * served by pbd_producer_serve (replacing a failed producer too), never from here, where a
     * delivery report served re-entrantly would land in the middle of the caller's send. */
    if (p->moved || (p->retry_at_ms && pbclock_mono_ms() < p->retry_at_ms)) return PBD_SEND_FULL;
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    if (!h) {
        snprintf(reason, reason_size, "out of memory");
        return PBD_SEND_FULL;
    }
    rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
    rd_kafka_header_add(h, "pb-id", -1, rec->id, -1);
    rd_kafka_header_add(h, "pb-producer", -1, p->identity, -1);
    if (rec->model_version) rd_kafka_header_add(h, "pb-model-version", -1, rec->model_version, -1);
    rd_kafka_resp_err_t e = instance_produce(p->cur, p->topic, rec->value, rec->value_len, rec->key, rec->key_len,
                                             rec->timestamp_ms, h, msg_opaque);
    if (!e) return PBD_SEND_OK;
    rd_kafka_headers_destroy(h); /* not taken over on failure */
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL || e == RD_KAFKA_RESP_ERR__FATAL) return PBD_SEND_FULL; /* FATAL: replaced */
    if (retry_later(e)) {
        back_off(p, e);
        return PBD_SEND_FULL;
    }
    *err = e;
    snprintf(reason, reason_size, "%s: %s", rd_kafka_err2name(e), rd_kafka_err2str(e));
    return PBD_SEND_ERROR;
}

int pbd_producer_in_flight(const pbd_producer_t *p) {
    int n = p->cur->in_flight + p->n_moved;
    for (const pbd_instance_t *in = p->retiring; in; in = in->next) n += in->in_flight;
    return n;
}

/* rd_kafka_flush sends at once (ignoring linger.ms) and serves delivery reports meanwhile. */
static void instance_flush(pbd_instance_t *in, int64_t deadline) {
    int64_t left = deadline - pbclock_mono_ms();
    if (in->in_flight > 0 && left > 0) rd_kafka_flush(in->rk, (int)(left < 100 ? left : 100));
}

/* 1 if an instance holds records (queued or in flight), not counting those taken back. */
static int instances_hold_records(const pbd_producer_t *p) {
    if (p->cur->in_flight > 0) return 1;
    for (const pbd_instance_t *in = p->retiring; in; in = in->next)
        if (in->in_flight > 0) return 1;
    return 0;
}

int pbd_producer_flush(pbd_producer_t *p, int timeout_ms) {
    int64_t deadline = pbclock_mono_ms() + timeout_ms;
    while (pbd_producer_in_flight(p) > 0 && pbclock_mono_ms() < deadline) {
        resend_moved(p);
        /* Taken-back records that cannot be produced now (a backoff, a producer failed for good)
         * would make this loop spin: they stay in the spool for the next start. */
        if (!instances_hold_records(p)) break;
        instance_flush(p->cur, deadline);
        for (pbd_instance_t *in = p->retiring; in; in = in->next) instance_flush(in, deadline);
    }
    return pbd_producer_in_flight(p);
}

void pbd_producer_free(pbd_producer_t *p) {
    if (!p) return;
    p->closing = 1;
    instance_free(p, p->cur);
    while (p->retiring) {
        pbd_instance_t *in = p->retiring;
        p->retiring = in->next;
        instance_free(p, in);
    }
    while (p->moved) { /* reported purged: they stay in the spool */
        pbd_moved_t *r = p->moved;
        p->moved = r->next;
        p->cb(p->cb_ctx, r->opaque, RD_KAFKA_RESP_ERR__PURGE_QUEUE, "_PURGE_QUEUE: Purged in queue", r->value,
              r->value_len, 1);
        moved_free(r);
    }
    pbwatch_free(p->watch);
    if (p->epfd >= 0) close(p->epfd);
    free(p->topic);
    free(p->identity);
    free(p);
}

int pbd_producer_fatal_error_for_test(pbd_producer_t *p, const char *reason) {
    return (int)rd_kafka_test_fatal_error(p->cur->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, reason);
}

unsigned pbd_producer_generation_for_test(const pbd_producer_t *p) {
    return p->cur->generation;
}

void pbd_producer_rdkafka_log_for_test(pbd_producer_t *p, int level, const char *fac, const char *buf) {
    log_cb(p->cur->rk, level, fac, buf);
}

void pbd_producer_broker_error_for_test(pbd_producer_t *p, int err, const char *reason) {
    error_cb(p->cur->rk, err, reason, p->cur);
}
