/* consumer.c: pb_consumer_t: a librdkafka consumer behind predbridge's TLS policy, with
 * at-least-once offsets, ordered retries and error reporting through callbacks. */
#include "consumer_internal.h"
#include "common/clock.h"

#include "common/record.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Messages dispatched per wake-up before poll returns, so a busy topic cannot starve the caller. */
#define PBC_BATCH 500
/* run() caps each wait so librdkafka's max.poll.interval.ms never sees a silent application. */
#define PBC_RUN_SLICE_MS 1000

/* A partition waiting to redeliver `offset` after a PB_RETRY: paused until resume_at, then every
 * message of it other than `offset` is stale (fetched before the seek) and dropped. */
typedef struct pbc_retry {
    char *topic;
    int32_t partition;
    int64_t offset;
    int64_t resume_at_ms;
    int resumed;
} pbc_retry_t;

PBTLS_OPAQUE_HEAD_CHECK(pbc_conn_t, tls);

static void pbc_report(pb_consumer_t *c, pb_err_t code, const char *cause, const pb_message_t *msg) {
    int auth = code == PB_ERR_AUTHENTICATION || code == PB_ERR_AUTHORIZATION;
    if (code == PB_ERR_TLS) pbstats_add(&c->stats, PB_STAT_TLS_FAILURES);
    if (auth) pbstats_add(&c->stats, PB_STAT_AUTH_FAILURES);
    /* A bad record is logged as record.skipped, without this cause: it may quote the record. */
    if (code != PB_ERR_PARSE) {
        pblog_field_t f[] = {{.key = "code", .str = pb_err_name(code)}};
        pblib_log(&c->log, code == PB_ERR_TLS || auth ? PBLOG_ERROR : PBLOG_WARN, "consumer.error", f, 1,
                  "%s", cause);
    }
    if (c->on_error) c->on_error(code, cause, msg, c->opaque);
}

/* librdkafka's text carries timings ("after 32ms in state ...") and generic advice; the cause is the
 * part before them (as predbridged logs it). */
static void pbc_cause_of(const char *reason, char *out, size_t size) {
    snprintf(out, size, "%s", reason ? reason : "");
    char *cut = strstr(out, " (after ");
    if (cut) *cut = '\0';
    cut = strstr(out, ": broker certificate could not be verified, verify that");
    if (cut) *cut = '\0';
}

/* Runs on the thread in poll/run/close: the main queue is forwarded to the consumer queue. */
static void pbc_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    pbc_conn_t *conn = opaque;
    pb_consumer_t *c = conn->c;
    char cause[512], verify[512] = "", text[1100];
    pbc_cause_of(reason, cause, sizeof cause);
    pb_err_t code = pbmsg_classify_error((rd_kafka_resp_err_t)err, cause);
    if (conn->tls.verifier) pbtls_verifier_last_failure(conn->tls.verifier, verify, sizeof verify);
    if (code == PB_ERR_TLS && verify[0])
        snprintf(text, sizeof text, "%s (%s)", verify, cause);
    else
        snprintf(text, sizeof text, "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), cause);
    pbc_report(c, code, text, NULL);
}

/* With a log function, librdkafka's lines are forwarded to the consumer queue (log.queue) and this
 * runs in poll/run/close; without one it may run on librdkafka's threads and does nothing: a library
 * does not write to stderr on its own, and errors reach on_error through error_cb. */
static void pbc_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    const pbc_conn_t *conn = rd_kafka_opaque(rk);
    if (conn && conn->c->log.fn) pblib_log_kafka(&conn->c->log, level, fac, buf);
}

/* Runs in poll/run (the statistics event is served from the consumer queue). */
static int pbc_stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    (void)rk;
    pb_consumer_t *c = ((pbc_conn_t *)opaque)->c;
    pbstats_lag_t *lag;
    size_t n;
    if (pbstats_parse_lag(json, json_len, &lag, &n) == 0) pbstats_set_lag(&c->stats, lag, n);
    return 0; /* librdkafka frees json */
}

/* Counts the result of a commit. librdkafka reports every commit through the commit callback, the
 * synchronous ones (on revocation, in close) too, so this is called from there only. _NO_OFFSET
 * means there was nothing new to commit. */
static void pbc_count_commit(pb_consumer_t *c, rd_kafka_resp_err_t err) {
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
    pbstats_add(&c->stats, err ? PB_STAT_COMMIT_FAILURES : PB_STAT_COMMITS);
}

static void pbc_log_partitions(pb_consumer_t *c, const char *event,
                               const rd_kafka_topic_partition_list_t *parts, const char *protocol) {
    if (!pblib_log_on(&c->log, PBLOG_INFO)) return;
    char list[1024] = "";
    size_t used = 0;
    for (int i = 0; i < parts->cnt && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s [%d]", i ? ", " : "",
                                 parts->elems[i].topic, (int)parts->elems[i].partition);
    pblog_field_t f[] = {{.key = "count", .num = parts->cnt}, {.key = "protocol", .str = protocol}};
    pblib_log(&c->log, PBLOG_INFO, event, f, 2, "%s", list);
}

static rd_kafka_topic_partition_list_t *pbc_one(const char *topic, int32_t partition, int64_t offset) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (l) rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    return l;
}

static void pbc_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                             void *opaque) {
    pb_consumer_t *c = ((pbc_conn_t *)opaque)->c;
    int cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    pbc_log_partitions(
        c, err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "partitions.assigned" : "partitions.revoked", parts,
        rd_kafka_rebalance_protocol(rk));
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e) rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, parts);
        }
        return;
    }
    /* Revoked: what was processed is committed now, before the next owner starts from it. */
    rd_kafka_commit(rk, NULL, 0);
    /* Pending retries of those partitions belong to the next owner now (from the committed
     * offset); resume them so a later re-assignment does not find them paused. */
    for (int i = 0; i < parts->cnt; i++) {
        for (size_t j = 0; j < c->n_retries;) {
            pbc_retry_t *r = &c->retries[j];
            if (r->partition == parts->elems[i].partition && !strcmp(r->topic, parts->elems[i].topic)) {
                rd_kafka_topic_partition_list_t *l = pbc_one(r->topic, r->partition, r->offset);
                if (l) rd_kafka_resume_partitions(rk, l);
                if (l) rd_kafka_topic_partition_list_destroy(l);
                free(r->topic);
                c->retries[j] = c->retries[--c->n_retries];
            } else {
                j++;
            }
        }
    }
    if (cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e) rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

/* Result of a periodic (asynchronous) commit: a failure is reported; the offsets stay stored and go
 * with the next commit. */
static void pbc_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets,
                          void *opaque) {
    (void)rk, (void)offsets;
    pb_consumer_t *c = ((pbc_conn_t *)opaque)->c;
    char cause[512];
    pbc_count_commit(c, err);
    if (!err || err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
    pblog_field_t f[] = {{.key = "code", .str = rd_kafka_err2name(err)}};
    pblib_log(&c->log, PBLOG_WARN, "commit.failed", f, 1,
              "committing offsets failed, retried with the next commit");
    snprintf(cause, sizeof cause, "committing offsets failed: %s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
    pbc_report(c, pbmsg_map_kafka_error(err), cause, NULL);
}

static int pbc_set(rd_kafka_conf_t *conf, const char *key, const char *value, const char *origin, char *errstr,
                   size_t errstr_size) {
    char e[512];
    if (rd_kafka_conf_set(conf, key, value, e, sizeof e) == RD_KAFKA_CONF_OK) return 0;
    snprintf(errstr, errstr_size, "%s: %s", origin, e);
    return -1;
}

/* Builds the librdkafka configuration: pass-through first, then what the library owns, then TLS, whose
 * verifier is bound to conn. Returns NULL with *code and errstr. */
static rd_kafka_conf_t *pbc_kafka_conf(pbc_conn_t *conn, pb_err_t *code, char *errstr, size_t errstr_size) {
    const pb_consumer_t *c = conn->c;
    const pbd_config_t *cfg = &c->cfg;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char origin[600];
    *code = PB_ERR_CONFIG;
    if (!conf) {
        *code = PB_ERR_NOMEM;
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    /* Defaults that kafka.* may change: every client's (pbtls_kafka_client_defaults), statistics
     * (for the lag in pb_consumer_stats) every 5 s, librdkafka's own log filter at ours, so it does
     * not format lines nobody will see, and a pre-fetch bound in bytes only
     * (queued.max.messages.kbytes, 64 MiB): librdkafka 2.0 compares queued.min.messages (100,000)
     * with the whole consumer queue and then stops fetching for up to a second, so an application
     * a little slower than the network found the queue empty, and waited, half of the time. */
    const char *log_level = !c->log.fn                    ? "3"
                            : c->log.level >= PBLOG_DEBUG ? "7"
                            : c->log.level == PBLOG_INFO  ? "6"
                                                          : "4";
    if (pbtls_kafka_client_defaults(conf, errstr, errstr_size) ||
        pbc_set(conf, "statistics.interval.ms", "5000", "setting 'statistics.interval.ms'", errstr,
                errstr_size) ||
        pbc_set(conf, "queued.min.messages", "10000000", "setting 'queued.min.messages'", errstr, errstr_size) ||
        pbc_set(conf, "log_level", log_level, "setting 'log_level'", errstr, errstr_size))
        goto fail;
    for (size_t i = 0; i < cfg->n_kafka; i++) {
        const pbconf_kafka_prop_t *k = &cfg->kafka[i];
        snprintf(origin, sizeof origin, "%s:%d: key 'kafka.%s'", k->file ? k->file : "-o", k->line, k->property);
        if (pbc_set(conf, k->property, k->value, origin, errstr, errstr_size)) goto fail;
    }
    const char *fixed[][2] = {
        {"bootstrap.servers", cfg->bootstrap_servers},
        {"group.id", cfg->group_id},
        {"auto.offset.reset", cfg->auto_offset_reset},
        /* Offsets are stored only after PB_COMMIT and committed by us: every interval from poll, on
         * revocation and on close. Not librdkafka's auto-commit, which would also commit inside
         * rd_kafka_destroy and so turn a crash-like destroy into a commit. */
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "false"},
        {"client.id", "libpredbridge"},
        /* Log lines are served in poll/run/close, on the application's thread (see pbc_log_cb). */
        {"log.queue", c->log.fn ? "true" : "false"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        snprintf(origin, sizeof origin, "setting '%s'", fixed[i][0]);
        if (pbc_set(conf, fixed[i][0], fixed[i][1], origin, errstr, errstr_size)) goto fail;
    }
    pbtls_verifier_t *verifier = NULL;
    *code = PB_ERR_CERTIFICATE; /* reading the passphrase files */
    if (pbtls_apply(conf, &cfg->tls, &verifier, errstr, errstr_size)) goto fail;
    pbtls_opaque_bind(&conn->tls, verifier);
    rd_kafka_conf_set_opaque(conf, conn);
    rd_kafka_conf_set_error_cb(conf, pbc_error_cb);
    rd_kafka_conf_set_log_cb(conf, pbc_log_cb);
    rd_kafka_conf_set_rebalance_cb(conf, pbc_rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, pbc_commit_cb);
    rd_kafka_conf_set_stats_cb(conf, pbc_stats_cb);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

pbc_conn_t *pbc_conn_new(pb_consumer_t *c, pb_err_t *code, char *errstr, size_t errstr_size) {
    char e[512];
    rd_kafka_conf_t *kconf = NULL;
    pbc_conn_t *conn = calloc(1, sizeof *conn);
    if (!conn) goto nomem;
    conn->c = c;
    if (!(kconf = pbc_kafka_conf(conn, code, errstr, errstr_size))) goto fail;
    if (!(conn->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kconf, e, sizeof e))) {
        /* With settings that passed the configuration check, what fails here is loading the material. */
        *code = PB_ERR_CERTIFICATE;
        snprintf(errstr, errstr_size, "cannot create the Kafka consumer: %s", e);
        goto fail;
    }
    kconf = NULL; /* owned by rk */
    rd_kafka_poll_set_consumer(conn->rk);
    if (c->log.fn) rd_kafka_set_log_queue(conn->rk, NULL); /* the main queue: the consumer queue now */
    if (!(conn->queue = rd_kafka_queue_get_consumer(conn->rk))) goto nomem;
    return conn;
nomem:
    *code = PB_ERR_NOMEM;
    snprintf(errstr, errstr_size, "out of memory");
fail:
    if (kconf) rd_kafka_conf_destroy(kconf);
    pbc_conn_free(conn, 0);
    return NULL;
}

pb_err_t pbc_conn_start(pb_consumer_t *c, pbc_conn_t *conn, char *errstr, size_t errstr_size) {
    static const uint64_t one = 1;
    rd_kafka_queue_io_event_enable(conn->queue, c->queue_fd, &one, sizeof one);
    /* librdkafka writes only when the queue goes from empty to non-empty, and this one may hold
     * events already (an error from a broker thread): look once. */
    ssize_t w = write(c->queue_fd, &one, sizeof one);
    (void)w; /* EAGAIN: the counter is non-zero, poll wakes anyway */
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new((int)c->cfg.n_topics);
    if (!topics) {
        snprintf(errstr, errstr_size, "out of memory");
        return PB_ERR_NOMEM;
    }
    for (size_t i = 0; i < c->cfg.n_topics; i++)
        rd_kafka_topic_partition_list_add(topics, c->cfg.topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(conn->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        snprintf(errstr, errstr_size, "cannot subscribe: %s", rd_kafka_err2str(err));
        return PB_ERR_BROKER;
    }
    return PB_OK;
}

pb_err_t pbc_conn_leave(pbc_conn_t *conn, char *errstr, size_t errstr_size) {
    pb_err_t rc = PB_OK;
    /* Synchronous commit of everything stored; _NO_OFFSET just means nothing new was processed. */
    rd_kafka_resp_err_t err = rd_kafka_commit(conn->rk, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        snprintf(errstr, errstr_size, "committing offsets failed: %s", rd_kafka_err2str(err));
        rc = pbmsg_map_kafka_error(err);
    }
    /* Leaves the group; the rebalance callback runs here for the revocation. Messages still queued are
     * dropped: they were not stored, so whoever consumes the partitions next fetches them again. */
    err = rd_kafka_consumer_close(conn->rk);
    if (err && rc == PB_OK) {
        snprintf(errstr, errstr_size, "leaving the group failed: %s", rd_kafka_err2str(err));
        rc = pbmsg_map_kafka_error(err);
    }
    return rc;
}

void pbc_conn_free(pbc_conn_t *conn, int left) {
    if (!conn) return;
    if (conn->queue) {
        rd_kafka_queue_io_event_enable(conn->queue, -1, NULL, 0);
        rd_kafka_queue_destroy(conn->queue);
    }
    /* Not left: behave like a crash, so uncommitted work is redelivered to the group. */
    if (conn->rk) rd_kafka_destroy_flags(conn->rk, left ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    pbtls_verifier_free(conn->tls.verifier);
    free(conn);
}

pb_consumer_t *pb_consumer_new(const pb_config_t *conf, pb_prediction_fn on_prediction, pb_error_fn on_error,
                               void *opaque, char *errstr, size_t errstr_size) {
    pb_consumer_t *c = NULL;
    pbtls_cert_info_t info;
    pb_err_t code;
    char sink[1];
    if (!errstr || errstr_size == 0) errstr = sink, errstr_size = sizeof sink;
    errstr[0] = '\0';
    if (!conf || !on_prediction) {
        snprintf(errstr, errstr_size, "pb_consumer_new: conf and on_prediction are required");
        return NULL;
    }
    if (!(c = calloc(1, sizeof *c))) goto fail_nomem;
    c->queue_fd = c->stop_fd = -1;
    atomic_init(&c->stopped, 0);
    pbstats_init(&c->stats);
    if (pbconf_load_scoped(&c->cfg, conf->props, PBCONF_SCOPE_CONSUMER, errstr, errstr_size) != PB_OK)
        goto fail;
    c->on_prediction = on_prediction;
    c->on_error = on_error;
    c->opaque = opaque;
    c->log = (pblib_log_t){.fn = conf->log_fn, .opaque = conf->log_opaque, .level = c->cfg.log_level,
                           .format = c->cfg.log_format};
    c->next_commit_ms = pbclock_mono_ms() + c->cfg.commit_interval_ms;
    c->material_check_ms = pbclock_mono_ms() + (int64_t)c->cfg.tls_check_interval_s * 1000; /* checked at creation */
    if (c->cfg.dedup_window > 0 && !(c->dedup = pbdedup_new((size_t)c->cfg.dedup_window))) goto fail_nomem;
    c->queue_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->queue_fd < 0 || c->stop_fd < 0) {
        snprintf(errstr, errstr_size, "eventfd: %s", strerror(errno));
        goto fail;
    }
    if (c->cfg.tls_watch && pbc_watch_start(c, errstr, errstr_size) != PB_OK) goto fail;
    /* Unusable client material fails here, with the file named, rather than as a handshake later. */
    if (!(c->conn = pbc_conn_checked(c, &info, &code, errstr, errstr_size))) goto fail;
    if (pbc_conn_start(c, c->conn, errstr, errstr_size) != PB_OK) goto fail;
    pbc_material_in_use(c, &info);
    pblog_field_t f[] = {{.key = "group", .str = c->cfg.group_id},
                         {.key = "dedup_window", .num = c->cfg.dedup_window},
                         {.key = "tls_watch", .num = c->watch != NULL}};
    pblib_log(&c->log, PBLOG_INFO, "consumer.started", f, 3, "subscribed to %zu topic(s), librdkafka %s",
              c->cfg.n_topics, rd_kafka_version_str());
    return c;

fail_nomem:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    if (c) c->closed = 1; /* nothing was consumed: nothing to commit */
    pb_consumer_destroy(c);
    return NULL;
}

static pbc_retry_t *pbc_retry_find(pb_consumer_t *c, const char *topic, int32_t partition) {
    for (size_t i = 0; i < c->n_retries; i++)
        if (c->retries[i].partition == partition && !strcmp(c->retries[i].topic, topic)) return &c->retries[i];
    return NULL;
}

/* PB_RETRY: stop the partition where it is and rewind it to the message, to be resumed later. */
static void pbc_retry_start(pb_consumer_t *c, const rd_kafka_message_t *m, const char *topic) {
    pbc_retry_t *r = realloc(c->retries, (c->n_retries + 1) * sizeof *r);
    char *name = strdup(topic);
    rd_kafka_topic_partition_list_t *l = pbc_one(topic, m->partition, m->offset);
    if (!r || !name || !l) {
        /* Without memory for the bookkeeping, redeliver through the group instead: never skip. */
        if (r) c->retries = r;
        free(name);
        if (l) rd_kafka_topic_partition_list_destroy(l);
        pbc_report(c, PB_ERR_NOMEM, "out of memory arranging a retry", NULL);
        return;
    }
    c->retries = r;
    c->retries[c->n_retries++] =
        (pbc_retry_t){.topic = name, .partition = m->partition, .offset = m->offset,
                      .resume_at_ms = pbclock_mono_ms() + c->cfg.retry_backoff_ms};
    rd_kafka_pause_partitions(c->conn->rk, l);
    rd_kafka_error_t *err = rd_kafka_seek_partitions(c->conn->rk, l, -1);
    if (err) {
        pbc_report(c, PB_ERR_BROKER, rd_kafka_error_string(err), NULL);
        rd_kafka_error_destroy(err);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Resumes partitions whose backoff is over; returns ms until the next one is due, or -1 if none. */
static int pbc_retry_resume_due(pb_consumer_t *c) {
    int64_t now = pbclock_mono_ms(), next = -1;
    for (size_t i = 0; i < c->n_retries; i++) {
        pbc_retry_t *r = &c->retries[i];
        if (r->resumed) continue;
        if (r->resume_at_ms <= now) {
            rd_kafka_topic_partition_list_t *l = pbc_one(r->topic, r->partition, r->offset);
            if (!l) continue;
            rd_kafka_resume_partitions(c->conn->rk, l);
            rd_kafka_topic_partition_list_destroy(l);
            r->resumed = 1;
        } else if (next < 0 || r->resume_at_ms - now < next) {
            next = r->resume_at_ms - now;
        }
    }
    return (int)next;
}

/* Returns 1 if m must not be dispatched because its partition waits out a retry backoff. librdkafka
 * already discards what was fetched before the seek (pause and seek move the partition's version);
 * this is the second line of defence. After the resume the first message ends the retry: normally
 * the retried one, else the retried record is gone (retention) and that is reported, not waited on. */
static int pbc_retry_blocks(pb_consumer_t *c, const rd_kafka_message_t *m, const char *topic) {
    pbc_retry_t *r = pbc_retry_find(c, topic, m->partition);
    if (!r) return 0;
    if (!r->resumed) return 1;
    if (m->offset != r->offset) {
        char cause[600];
        snprintf(cause, sizeof cause, "%s [%d]: resumed at offset %lld, not at the retried offset %lld",
                 topic, (int)m->partition, (long long)m->offset, (long long)r->offset);
        pbc_report(c, PB_ERR_BROKER, cause, NULL);
    }
    free(r->topic);
    *r = c->retries[--c->n_retries];
    return 0;
}

static void pbc_store(pb_consumer_t *c, const rd_kafka_message_t *m) {
    /* Stores m->offset + 1, the next one to read; no allocation on this per-message path. */
    rd_kafka_resp_err_t err = rd_kafka_offset_store(m->rkt, m->partition, m->offset);
    /* _STATE: the partition was revoked meanwhile; its next owner gets the message again. */
    if (err && err != RD_KAFKA_RESP_ERR__STATE) pbc_report(c, PB_ERR_BROKER, rd_kafka_err2str(err), NULL);
}

/* Logs an event about one record: topic, partition, offset and one more field (NULL: none). */
static void pbc_log_record(pb_consumer_t *c, pblog_level_t level, const char *event,
                           const rd_kafka_message_t *m, const char *topic, const pblog_field_t *extra,
                           const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void pbc_log_record(pb_consumer_t *c, pblog_level_t level, const char *event,
                           const rd_kafka_message_t *m, const char *topic, const pblog_field_t *extra,
                           const char *fmt, ...) {
    if (!pblib_log_on(&c->log, level)) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pblog_field_t f[] = {{.key = "topic", .str = topic},
                         {.key = "partition", .num = m->partition},
                         {.key = "offset", .num = m->offset},
                         extra ? *extra : (pblog_field_t){0}};
    pblib_log(&c->log, level, event, f, 4, "%s", msg);
}

static pb_stat_t pbc_skip_stat(pbrec_status_t st) {
    switch (st) {
    case PBREC_NOT_JSON:
        return PB_STAT_SKIPPED_NOT_JSON;
    case PBREC_NOT_OBJECT:
        return PB_STAT_SKIPPED_NOT_OBJECT;
    case PBREC_INVALID_UTF8:
        return PB_STAT_SKIPPED_INVALID_UTF8;
    case PBREC_MISSING_FIELD:
        return PB_STAT_SKIPPED_MISSING_FIELD;
    case PBREC_BAD_FIELD:
        return PB_STAT_SKIPPED_BAD_FIELD;
    case PBREC_TOO_LARGE:
    case PBREC_OK:
        break;
    }
    return PB_STAT_SKIPPED_TOO_LARGE;
}

/* A record that is not a valid prediction: reported, counted, and committed (it never gets better). */
static void pbc_skip(pb_consumer_t *c, const rd_kafka_message_t *m, const char *topic,
                     const pb_message_t *view, pbrec_status_t st, const char *reason) {
    char cause[700];
    pbstats_add(&c->stats, PB_STAT_SKIPPED);
    pbstats_add(&c->stats, pbc_skip_stat(st));
    /* The log line names the reason's kind, not its text: jansson's text can quote the record. */
    pblog_field_t why = {.key = "reason", .str = pbrec_status_name(st)};
    pbc_log_record(c, PBLOG_WARN, "record.skipped", m, topic, &why, "not a valid prediction; skipped");
    snprintf(cause, sizeof cause, "%s [%d] offset %lld: %s (%s); skipped", topic, (int)m->partition,
             (long long)m->offset, reason, pbrec_status_name(st));
    pbc_report(c, PB_ERR_PARSE, cause, view);
    pbc_store(c, m);
}

/* A valid prediction whose pb-id is in the window: committed without delivery, counted. */
static void pbc_duplicate(pb_consumer_t *c, const rd_kafka_message_t *m, const char *topic, const char *id) {
    pbstats_add(&c->stats, PB_STAT_DUPLICATES);
    pblog_field_t f = {.key = "id", .str = id};
    pbc_log_record(c, PBLOG_DEBUG, "record.duplicate", m, topic, &f,
                   "duplicate pb-id; committed, not delivered");
    pbc_store(c, m);
}

static void pbc_dispatch(pb_consumer_t *c, rd_kafka_message_t *m) {
    const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
    if (m->err) {
        char cause[600];
        snprintf(cause, sizeof cause, "%s: %s%s%s", rd_kafka_err2name(m->err), rd_kafka_message_errstr(m),
                 m->rkt ? " (topic " : "", m->rkt ? topic : "");
        if (m->rkt) strncat(cause, ")", sizeof cause - strlen(cause) - 1);
        pbc_report(c, pbmsg_map_kafka_error(m->err), cause, NULL);
        return;
    }
    if (pbc_retry_blocks(c, m, topic)) return;
    pbstats_add(&c->stats, PB_STAT_RECEIVED);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    struct pb_message view;
    pbmsg_fill(&view, topic, m->partition, m->offset, tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts,
               m->payload, m->len, m->key, m->key_len, NULL, NULL, 0);
    pbmsg_set_source(&view, m); /* headers parsed only if the application (or dedup) asks */
    /* The record's id, and the window's memory its lookup needs loading while the record is validated. */
    const char *id = c->dedup ? pb_message_id(&view) : NULL;
    pbdedup_key_t key = id ? pbdedup_key(id, strlen(id)) : (pbdedup_key_t){0};
    if (id) pbdedup_prefetch(c->dedup, &key);
    json_t *json = NULL;
    char reason[512]; /* set by pbrec_check or below; not zero-filled: this runs for every record */
    pbrec_status_t st = PBREC_TOO_LARGE;
    char model_version[sizeof view.model_version];
    if (m->len <= c->cfg.max_message_bytes)
        st = pbrec_check(m->payload ? m->payload : "", m->len, (const char *const *)c->cfg.required_fields,
                         c->cfg.n_required_fields, &json, model_version, sizeof model_version, reason,
                         sizeof reason);
    else
        snprintf(reason, sizeof reason, "record of %zu bytes is over message.max_bytes (%zu)", m->len,
                 c->cfg.max_message_bytes);
    view.json = json;
    view.valid = st == PBREC_OK;
    if (st == PBREC_OK) memcpy(view.model_version, model_version, sizeof model_version);
    if (st != PBREC_OK) {
        pbc_skip(c, m, topic, &view, st, reason);
        return;
    }
    /* The id is looked up before the call and remembered only after PB_COMMIT, so a retried
     * message is delivered again rather than taken for its own duplicate. */
    if (id && pbdedup_contains(c->dedup, &key)) {
        pbc_duplicate(c, m, topic, id);
        json_decref(view.json);
        return;
    }
    pbstats_add(&c->stats, PB_STAT_DELIVERED);
    pb_action_t action = c->on_prediction(&view, c->opaque);
    json_decref(view.json); /* parsed by the validation or lazily by the application, or NULL */
    if (action == PB_RETRY) {
        pbstats_add(&c->stats, PB_STAT_RETRIED);
        pbc_log_record(c, PBLOG_DEBUG, "record.retry", m, topic, NULL, "retry after %d ms",
                       c->cfg.retry_backoff_ms);
        pbc_retry_start(c, m, topic);
    } else {
        if (id) pbdedup_insert(c->dedup, &key);
        pbc_store(c, m);
    }
}

/* Dispatches what is queued, up to a batch. Returns the number of queue entries served. */
static int pbc_drain(pb_consumer_t *c) {
    int served = 0;
    uint64_t v;
    while (read(c->queue_fd, &v, sizeof v) > 0) {
    }
    if (atomic_load(&c->stopped)) return 0;
    /* One lock of librdkafka's queue for up to a batch, rather than one per message (the broker
     * thread waits on that lock while it hands over fetched messages). Rebalances, errors, logs and
     * statistics queued meanwhile are served by their callbacks from inside this call. */
    rd_kafka_message_t *batch[PBC_BATCH];
    ssize_t n = rd_kafka_consume_batch_queue(c->conn->queue, 0, batch, PBC_BATCH);
    for (ssize_t i = 0; i < n; i++) {
        /* Once stopped, the rest are dropped unstored: the group delivers them again. */
        if (!atomic_load(&c->stopped)) {
            pbc_dispatch(c, batch[i]);
            served++;
        }
        rd_kafka_message_destroy(batch[i]);
    }
    return served;
}

/* Commits stored offsets when the interval is over (asynchronously: a failure is retried next time
 * and the final commit in close is synchronous). Returns ms until the next commit is due. */
static int pbc_commit_due(pb_consumer_t *c) {
    int64_t now = pbclock_mono_ms();
    if (now >= c->next_commit_ms) {
        rd_kafka_commit(c->conn->rk, NULL, 1);
        c->next_commit_ms = now + c->cfg.commit_interval_ms;
    }
    return (int)(c->next_commit_ms - now);
}

static pb_err_t pbc_poll(pb_consumer_t *c, int timeout_ms) {
    int64_t deadline = timeout_ms < 0 ? -1 : pbclock_mono_ms() + timeout_ms;
    int watch_ready = 0;
    for (;;) {
        if (atomic_load(&c->stopped)) return PB_ERR_STOPPED;
        pbc_watch_serve(c, watch_ready); /* may reload: before anything uses the connection */
        pbc_material_periodic(c);
        int due = pbc_retry_resume_due(c), commit = pbc_commit_due(c);
        if (pbc_drain(c) > 0) return atomic_load(&c->stopped) ? PB_ERR_STOPPED : PB_OK;
        if (due < 0 || commit < due) due = commit;
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - pbclock_mono_ms();
            if (left <= 0) return PB_OK;
            wait = (int)left;
        }
        if (due >= 0 && (wait < 0 || due < wait)) wait = due;
        struct pollfd fds[3] = {{.fd = c->queue_fd, .events = POLLIN},
                                {.fd = c->stop_fd, .events = POLLIN},
                                {.fd = pbc_watch_fd(c), .events = POLLIN}}; /* -1: ignored */
        if (poll(fds, 3, wait) < 0 && errno != EINTR) return PB_ERR_IO;
        watch_ready = fds[2].fd >= 0 && (fds[2].revents & POLLIN);
    }
}

pb_err_t pb_consumer_poll(pb_consumer_t *c, int timeout_ms) {
    if (!c) return PB_ERR_INVALID_ARG;
    if (c->closed) return PB_ERR_STATE;
    c->busy++;
    pb_err_t rc = pbc_poll(c, timeout_ms);
    c->busy--;
    return rc;
}

pb_err_t pb_consumer_run(pb_consumer_t *c) {
    if (!c) return PB_ERR_INVALID_ARG;
    for (;;) {
        pb_err_t rc = pb_consumer_poll(c, PBC_RUN_SLICE_MS);
        if (rc == PB_ERR_STOPPED) return PB_OK;
        if (rc != PB_OK) return rc;
    }
}

void pb_consumer_stop(pb_consumer_t *c) {
    if (!c) return;
    int saved = errno; /* a signal handler must not change errno under the code it interrupted */
    atomic_store(&c->stopped, 1);
    uint64_t one = 1;
    ssize_t w = write(c->stop_fd, &one, sizeof one);
    (void)w; /* EAGAIN means the counter is already non-zero: poll wakes anyway */
    errno = saved;
}

pb_err_t pb_consumer_close(pb_consumer_t *c, char *errstr, size_t errstr_size) {
    char sink[1];
    pb_err_t rc = PB_OK;
    if (!errstr || errstr_size == 0) errstr = sink, errstr_size = sizeof sink;
    errstr[0] = '\0';
    if (!c) return PB_ERR_INVALID_ARG;
    if (c->closed) return PB_ERR_STATE;
    c->closed = 1;
    c->busy++;
    rc = pbc_conn_leave(c->conn, errstr, errstr_size);
    c->busy--;
    if (pblib_log_on(&c->log, PBLOG_INFO)) {
        pb_stats_t *st = pbstats_snapshot(&c->stats);
        pblog_field_t f[] = {{.key = "received", .num = (long long)pb_stats_get(st, PB_STAT_RECEIVED)},
                             {.key = "delivered", .num = (long long)pb_stats_get(st, PB_STAT_DELIVERED)},
                             {.key = "duplicates", .num = (long long)pb_stats_get(st, PB_STAT_DUPLICATES)},
                             {.key = "skipped", .num = (long long)pb_stats_get(st, PB_STAT_SKIPPED)}};
        pblib_log(&c->log, PBLOG_INFO, "consumer.closed", f, 4, "%s", rc == PB_OK ? "closed" : errstr);
        pb_stats_destroy(st);
    }
    return rc;
}

void pb_consumer_destroy(pb_consumer_t *c) {
    if (!c) return;
    pbc_conn_free(c->conn, c->closed);
    pbwatch_free(c->watch);
    pbdedup_free(c->dedup);
    pbstats_destroy(&c->stats);
    for (size_t i = 0; i < c->n_retries; i++)
        free(c->retries[i].topic);
    free(c->retries);
    pbd_config_free(&c->cfg);
    if (c->queue_fd >= 0) close(c->queue_fd);
    if (c->stop_fd >= 0) close(c->stop_fd);
    free(c);
}

pb_stats_t *pb_consumer_stats(pb_consumer_t *c) {
    return c ? pbstats_snapshot(&c->stats) : NULL;
}
