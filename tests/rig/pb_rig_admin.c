/* pb_rig_admin: probes the local test broker over mTLS and creates its topics and ACLs. */
#include <librdkafka/rdkafka.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct opts {
    const char *bootstrap, *ca, *cert, *key;
    const char *producer, *consumer;
    int partitions;
    int timeout_ms;
};

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    if (level <= 3 && getenv("PB_RIG_VERBOSE")) fprintf(stderr, "rdkafka %s: %s\n", fac, buf);
}

static rd_kafka_t *connect_admin(const struct opts *o) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", o->bootstrap},
        {"security.protocol", "ssl"},
        {"ssl.ca.location", o->ca},
        {"ssl.certificate.location", o->cert},
        {"ssl.key.location", o->key},
        {"ssl.endpoint.identification.algorithm", "https"},
        {"socket.timeout.ms", "5000"},
        {"reconnect.backoff.max.ms", "500"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "pb-rig-admin: %s: %s\n", kv[i][0], errstr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "pb-rig-admin: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* Waits until a metadata request answers; with topic, until it has `partitions` partitions with leaders. */
static int wait_metadata(rd_kafka_t *rk, const char *topic, int partitions, long long deadline) {
    rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR_NO_ERROR;
    while (now_ms() < deadline) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, 2000);
        if (!err) {
            int ok = topic == NULL;
            for (int i = 0; topic && i < md->topic_cnt; i++) {
                const rd_kafka_metadata_topic_t *t = &md->topics[i];
                if (strcmp(t->topic, topic) || t->err || t->partition_cnt != partitions) continue;
                ok = 1;
                for (int p = 0; p < t->partition_cnt; p++)
                    if (t->partitions[p].err || t->partitions[p].leader < 0) ok = 0;
            }
            rd_kafka_metadata_destroy(md);
            if (ok) return 0;
        } else {
            last = err;
        }
        rd_kafka_poll(rk, 200);
    }
    fprintf(stderr, "pb-rig-admin: broker %s did not answer%s%s in time (%s)\n",
            "metadata", topic ? " for topic " : "", topic ? topic : "", rd_kafka_err2str(last));
    return -1;
}

static rd_kafka_event_t *wait_event(rd_kafka_queue_t *q, rd_kafka_event_type_t type, long long deadline) {
    while (now_ms() < deadline) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 500);
        if (!ev) continue;
        if (rd_kafka_event_type(ev) == type) return ev;
        rd_kafka_event_destroy(ev);
    }
    return NULL;
}

static int create_topic(rd_kafka_t *rk, const char *name, int partitions, long long deadline) {
    char errstr[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, partitions, 1, errstr, sizeof errstr);
    if (!nt) {
        fprintf(stderr, "pb-rig-admin: topic %s: %s\n", name, errstr);
        return -1;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = wait_event(q, RD_KAFKA_EVENT_CREATETOPICS_RESULT, deadline);
    int rc = -1;
    if (!ev) {
        fprintf(stderr, "pb-rig-admin: creating topic %s timed out\n", name);
    } else if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "pb-rig-admin: creating topic %s: %s\n", name, rd_kafka_event_error_string(ev));
    } else {
        size_t n;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        rd_kafka_resp_err_t err = n ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR_NO_ERROR;
        if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            fprintf(stderr, "pb-rig-admin: creating topic %s: %s\n", name, rd_kafka_topic_result_error_string(res[0]));
        else
            rc = 0;
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

static int create_acls(rd_kafka_t *rk, const struct opts *o, const char *topic_prefix, long long deadline) {
    char errstr[512], prod[256], cons[256];
    snprintf(prod, sizeof prod, "User:%s", o->producer);
    snprintf(cons, sizeof cons, "User:%s", o->consumer);
    struct {
        rd_kafka_ResourceType_t type;
        const char *name;
        rd_kafka_ResourcePatternType_t pattern;
        const char *principal;
        rd_kafka_AclOperation_t op;
    } acls[] = {
        {RD_KAFKA_RESOURCE_TOPIC, topic_prefix, RD_KAFKA_RESOURCE_PATTERN_PREFIXED, prod, RD_KAFKA_ACL_OPERATION_WRITE},
        {RD_KAFKA_RESOURCE_TOPIC, topic_prefix, RD_KAFKA_RESOURCE_PATTERN_PREFIXED, prod, RD_KAFKA_ACL_OPERATION_DESCRIBE},
        {RD_KAFKA_RESOURCE_BROKER, "kafka-cluster", RD_KAFKA_RESOURCE_PATTERN_LITERAL, prod, RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE},
        {RD_KAFKA_RESOURCE_TOPIC, topic_prefix, RD_KAFKA_RESOURCE_PATTERN_PREFIXED, cons, RD_KAFKA_ACL_OPERATION_READ},
        {RD_KAFKA_RESOURCE_TOPIC, topic_prefix, RD_KAFKA_RESOURCE_PATTERN_PREFIXED, cons, RD_KAFKA_ACL_OPERATION_DESCRIBE},
        {RD_KAFKA_RESOURCE_GROUP, "*", RD_KAFKA_RESOURCE_PATTERN_LITERAL, cons, RD_KAFKA_ACL_OPERATION_READ},
    };
    enum { N = sizeof acls / sizeof acls[0] };
    rd_kafka_AclBinding_t *b[N];
    for (size_t i = 0; i < N; i++) {
        b[i] = rd_kafka_AclBinding_new(acls[i].type, acls[i].name, acls[i].pattern, acls[i].principal, "*",
                                       acls[i].op, RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW, errstr, sizeof errstr);
        if (!b[i]) {
            fprintf(stderr, "pb-rig-admin: ACL %zu: %s\n", i, errstr);
            return -1;
        }
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateAcls(rk, b, N, NULL, q);
    rd_kafka_event_t *ev = wait_event(q, RD_KAFKA_EVENT_CREATEACLS_RESULT, deadline);
    int rc = -1;
    if (!ev) {
        fprintf(stderr, "pb-rig-admin: creating ACLs timed out\n");
    } else if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "pb-rig-admin: creating ACLs: %s\n", rd_kafka_event_error_string(ev));
    } else {
        size_t n;
        const rd_kafka_acl_result_t **res = rd_kafka_CreateAcls_result_acls(rd_kafka_event_CreateAcls_result(ev), &n);
        rc = 0;
        for (size_t i = 0; i < n; i++) {
            const rd_kafka_error_t *e = rd_kafka_acl_result_error(res[i]);
            if (e) {
                fprintf(stderr, "pb-rig-admin: ACL %zu: %s\n", i, rd_kafka_error_string(e));
                rc = -1;
            }
        }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AclBinding_destroy_array(b, N);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: pb-rig-admin --bootstrap B --ca F --cert F --key F [options] probe|setup TOPIC|topic TOPIC\n"
            "  probe          wait until the broker answers a metadata request over mTLS\n"
            "  setup PREFIX   create topic PREFIX and the rig's ACLs on topics starting with PREFIX\n"
            "  topic NAME     create topic NAME and wait until all its partitions have leaders\n"
            "options: --partitions N (3) --timeout-ms N (60000) --producer CN --consumer CN\n");
}

int main(int argc, char **argv) {
    struct opts o = {.partitions = 3, .timeout_ms = 60000, .producer = "predbridged", .consumer = "predbridge-consumer"};
    static const struct option lo[] = {
        {"bootstrap", 1, 0, 'b'}, {"ca", 1, 0, 'a'},       {"cert", 1, 0, 'c'},       {"key", 1, 0, 'k'},
        {"partitions", 1, 0, 'p'}, {"timeout-ms", 1, 0, 't'}, {"producer", 1, 0, 'P'}, {"consumer", 1, 0, 'C'},
        {"help", 0, 0, 'h'},      {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'b': o.bootstrap = optarg; break;
        case 'a': o.ca = optarg; break;
        case 'c': o.cert = optarg; break;
        case 'k': o.key = optarg; break;
        case 'p': o.partitions = atoi(optarg); break;
        case 't': o.timeout_ms = atoi(optarg); break;
        case 'P': o.producer = optarg; break;
        case 'C': o.consumer = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!o.bootstrap || !o.ca || !o.cert || !o.key || optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind], *arg = optind + 1 < argc ? argv[optind + 1] : NULL;
    if (strcmp(cmd, "probe") && !arg) {
        usage(stderr);
        return 2;
    }
    long long deadline = now_ms() + o.timeout_ms;
    rd_kafka_t *rk = connect_admin(&o);
    if (!rk) return 1;
    int rc = wait_metadata(rk, NULL, 0, deadline);
    if (!rc && !strcmp(cmd, "setup")) {
        rc = create_acls(rk, &o, arg, deadline);
        if (!rc) rc = create_topic(rk, arg, o.partitions, deadline);
        if (!rc) rc = wait_metadata(rk, arg, o.partitions, deadline);
    } else if (!rc && !strcmp(cmd, "topic")) {
        rc = create_topic(rk, arg, o.partitions, deadline);
        if (!rc) rc = wait_metadata(rk, arg, o.partitions, deadline);
    } else if (!rc && strcmp(cmd, "probe")) {
        fprintf(stderr, "pb-rig-admin: unknown command '%s'\n", cmd);
        rc = 2;
    }
    rd_kafka_destroy(rk);
    return rc < 0 ? 1 : rc;
}
