/* tail.c: `predbridge tail`: consumes verified predictions through libpredbridge and prints them as
 * JSON lines. Uses only the public API, like any application would. */
#include "cli.h"

#include <predbridge/predbridge.h>

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/etc/predbridge/consumer.conf"

static void usage(FILE *f) {
    fprintf(f,
            "usage: predbridge tail [--config FILE] [--group ID] [--from-beginning] [--max N] [--metadata]\n"
            "                       [--stats] [--log] [-o key=value]...\n"
            "\n"
            "Consumes predictions from Kafka over mTLS, verifying the broker exactly as predbridged does\n"
            "(TLS 1.3, CA, host name, pins), and prints each valid one as a JSON line on standard output.\n"
            "\n"
            "  -c, --config FILE     consumer configuration: bootstrap.servers, tls.*, topics, ...\n"
            "                        (default $PREDBRIDGE_CONSUMER_CONFIG or " DEFAULT_CONFIG ")\n"
            "  -g, --group ID        consumer group (default: group.id of the config, else a fresh\n"
            "                        group of this run, predbridge-tail-<pid>-<time>)\n"
            "  -b, --from-beginning  a group without committed offsets starts at the oldest record\n"
            "                        (default: only records that arrive from now on)\n"
            "  -n, --max N           exit after N predictions\n"
            "  -m, --metadata        print {\"topic\",\"partition\",\"offset\",\"timestamp_ms\",\"id\",\n"
            "                        \"producer\",\"key\",\"record\"} instead of the bare record\n"
            "  -s, --stats           at exit, print the consumer's counters and lag per partition as one\n"
            "                        JSON object on standard error\n"
            "  -l, --log             write the library's diagnostics to standard error, as log.format and\n"
            "                        log.level say (e.g. -o log.format=json -o log.level=debug)\n"
            "  -o key=value          set a configuration key (after the file)\n"
            "  -h, --help            this text\n"
            "\n"
            "Offsets of printed predictions are committed to the group. Invalid records are reported on\n"
            "standard error and skipped. SIGINT or SIGTERM stop cleanly.\n"
            "Exit codes: 0 success (N printed, or stopped), 1 failure (configuration, TLS verification,\n"
            "authentication or authorization), 2 usage.\n");
}

typedef struct tail {
    pb_consumer_t *consumer;
    int metadata, stats, log;
    long max, printed;
    int failed;
} tail_t;

/* The signal handler's only way to the consumer; pb_consumer_stop is async-signal-safe. */
static pb_consumer_t *volatile g_consumer;

static void on_signal(int sig) {
    (void)sig;
    if (g_consumer) pb_consumer_stop(g_consumer);
}

/* A record as one line: its own bytes when they hold no line break, else re-serialised. */
static int print_record(const pb_message_t *msg, FILE *out) {
    size_t len;
    const char *raw = pb_message_value(msg, &len);
    if (raw && !memchr(raw, '\n', len) && !memchr(raw, '\r', len)) return fwrite(raw, 1, len, out) == len ? 0 : -1;
    char *s = json_dumps(pb_message_json(msg), JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!s) return -1;
    int rc = fputs(s, out) < 0 ? -1 : 0;
    free(s);
    return rc;
}

static int print_metadata(const pb_message_t *msg, FILE *out) {
    json_t *o = json_object();
    size_t klen;
    const char *key = pb_message_key(msg, &klen);
    int rc = -1;
    if (!o) return -1;
    json_object_set_new(o, "topic", json_string(pb_message_topic(msg)));
    json_object_set_new(o, "partition", json_integer(pb_message_partition(msg)));
    json_object_set_new(o, "offset", json_integer(pb_message_offset(msg)));
    json_object_set_new(o, "timestamp_ms", json_integer(pb_message_timestamp_ms(msg)));
    json_object_set_new(o, "id", pb_message_id(msg) ? json_string(pb_message_id(msg)) : json_null());
    json_object_set_new(o, "producer", pb_message_producer(msg) ? json_string(pb_message_producer(msg)) : json_null());
    /* json_stringn refuses invalid UTF-8: such a key is shown as null rather than mangled. */
    json_t *k = key ? json_stringn(key, klen) : NULL;
    json_object_set_new(o, "key", k ? k : json_null());
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s) {
        /* The record goes in last, with its own bytes: "...,"record":{...}}". */
        size_t n = strlen(s);
        rc = fwrite(s, 1, n - 1, out) == n - 1 && fputs(",\"record\":", out) >= 0 && print_record(msg, out) == 0 &&
                     fputc('}', out) != EOF
                 ? 0
                 : -1;
        free(s);
    }
    json_decref(o);
    return rc;
}

static pb_action_t on_prediction(const pb_message_t *msg, void *opaque) {
    tail_t *t = opaque;
    if (t->max > 0 && t->printed >= t->max) return PB_RETRY; /* not ours to take: leave it for the group */
    int rc = t->metadata ? print_metadata(msg, stdout) : print_record(msg, stdout);
    if (rc == 0 && (fputc('\n', stdout) == EOF || fflush(stdout) != 0)) rc = -1;
    if (rc != 0) {
        fprintf(stderr, "predbridge tail: cannot write to standard output: %s\n", strerror(errno));
        t->failed = 1;
        pb_consumer_stop(t->consumer);
        return PB_RETRY;
    }
    if (t->max > 0 && ++t->printed >= t->max) pb_consumer_stop(t->consumer);
    return PB_COMMIT;
}

static void on_error(pb_err_t code, const char *cause, const pb_message_t *msg, void *opaque) {
    tail_t *t = opaque;
    (void)msg;
    fprintf(stderr, "predbridge tail: %s: %s\n", pb_err_name(code), cause);
    /* The broker's identity or our right to read failed: retrying cannot fix that, so give up. */
    if (code == PB_ERR_TLS || code == PB_ERR_AUTHENTICATION || code == PB_ERR_AUTHORIZATION) {
        t->failed = 1;
        if (t->consumer) pb_consumer_stop(t->consumer);
    }
}

/* --log: one line per write(2), so lines from different sources never interleave mid-line. */
static void on_log(pb_log_level_t level, const char *event, const char *line, void *opaque) {
    (void)level, (void)event, (void)opaque;
    size_t n = strlen(line);
    char buf[4200];
    if (n >= sizeof buf) n = sizeof buf - 1;
    memcpy(buf, line, n);
    buf[n] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, n + 1);
    (void)w;
}

/* --stats: {"received":N,...,"partitions":[{"topic":"t","partition":0,"lag":0},...]} on stderr. */
static void print_stats(pb_consumer_t *c) {
    pb_stats_t *st = pb_consumer_stats(c);
    json_t *o = json_object(), *parts = json_array();
    if (!st || !o || !parts) goto out;
    for (int i = 0; pb_stat_name((pb_stat_t)i); i++)
        json_object_set_new(o, pb_stat_name((pb_stat_t)i),
                            json_integer((json_int_t)pb_stats_get(st, (pb_stat_t)i)));
    for (size_t i = 0; i < pb_stats_partition_count(st); i++) {
        const char *topic;
        int32_t partition;
        int64_t lag;
        if (pb_stats_partition_at(st, i, &topic, &partition, &lag) != PB_OK) break;
        json_array_append_new(parts, json_pack("{s:s, s:i, s:I}", "topic", topic, "partition", (int)partition,
                                               "lag", (json_int_t)lag));
    }
    json_object_set(o, "partitions", parts);
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text) fprintf(stderr, "%s\n", text);
    free(text);
out:
    json_decref(parts);
    json_decref(o);
    pb_stats_destroy(st);
}

static int set_or_fail(pb_config_t *conf, const char *key, const char *value) {
    char err[1024];
    if (pb_config_set(conf, key, value, err, sizeof err) == PB_OK) return 0;
    fprintf(stderr, "predbridge tail: %s\n", err);
    return -1;
}

/* Fills conf from defaults, the file and the command line, in that order of precedence (last wins). */
static int build_config(pb_config_t *conf, const char *path, const char *group, int from_beginning, char **sets,
                        int n_sets) {
    char fresh[128], err[1024];
    snprintf(fresh, sizeof fresh, "predbridge-tail-%ld-%lld", (long)getpid(), (long long)time(NULL));
    if (set_or_fail(conf, "group.id", fresh) || set_or_fail(conf, "auto.offset.reset", "latest")) return -1;
    if (pb_config_load_file(conf, path, err, sizeof err) != PB_OK) {
        fprintf(stderr, "predbridge tail: %s\n", err);
        return -1;
    }
    if (group && set_or_fail(conf, "group.id", group)) return -1;
    if (from_beginning && set_or_fail(conf, "auto.offset.reset", "earliest")) return -1;
    for (int i = 0; i < n_sets; i++) {
        char *eq = strchr(sets[i], '=');
        if (!eq) {
            fprintf(stderr, "predbridge tail: -o %s: expected key=value\n", sets[i]);
            return -1;
        }
        *eq = '\0';
        int rc = set_or_fail(conf, sets[i], eq + 1);
        *eq = '=';
        if (rc) return -1;
    }
    return 0;
}

int pbcli_tail(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"group", required_argument, NULL, 'g'},
        {"from-beginning", no_argument, NULL, 'b'}, {"max", required_argument, NULL, 'n'},
        {"metadata", no_argument, NULL, 'm'},       {"help", no_argument, NULL, 'h'},
        {"stats", no_argument, NULL, 's'},          {"log", no_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    const char *path = getenv("PREDBRIDGE_CONSUMER_CONFIG"), *group = NULL;
    int from_beginning = 0, n_sets = 0, c, rc = 1;
    char **sets = calloc((size_t)argc, sizeof *sets), err[1024];
    tail_t t = {0};
    pb_config_t *conf = NULL;
    if (!sets) return 1;
    if (!path || !*path) path = DEFAULT_CONFIG;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:g:bn:mslo:h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'c': path = optarg; break;
        case 'g': group = optarg; break;
        case 'b': from_beginning = 1; break;
        case 'm': t.metadata = 1; break;
        case 's': t.stats = 1; break;
        case 'l': t.log = 1; break;
        case 'o': sets[n_sets++] = optarg; break;
        case 'n':
            errno = 0;
            t.max = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || t.max <= 0) {
                fprintf(stderr, "predbridge tail: --max wants a positive number, not '%s'\n", optarg);
                rc = 2;
                goto out;
            }
            break;
        case 'h': usage(stdout); rc = 0; goto out;
        default: usage(stderr); rc = 2; goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "predbridge tail: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        rc = 2;
        goto out;
    }
    if (!(conf = pb_config_new())) goto out;
    if (build_config(conf, path, group, from_beginning, sets, n_sets) != 0) goto out;
    if (t.log) pb_config_set_log_fn(conf, on_log, NULL);
    t.consumer = pb_consumer_new(conf, on_prediction, on_error, &t, err, sizeof err);
    if (!t.consumer) {
        fprintf(stderr, "predbridge tail: %s\n", err);
        goto out;
    }
    g_consumer = t.consumer;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pb_err_t prc = pb_consumer_run(t.consumer);
    if (prc != PB_OK) {
        fprintf(stderr, "predbridge tail: %s\n", pb_strerror(prc));
        t.failed = 1;
    }
    if (pb_consumer_close(t.consumer, err, sizeof err) != PB_OK) {
        fprintf(stderr, "predbridge tail: %s\n", err);
        t.failed = 1;
    }
    if (t.stats) print_stats(t.consumer);
    rc = t.failed ? 1 : 0;
out:
    g_consumer = NULL;
    pb_consumer_destroy(t.consumer);
    pb_config_destroy(conf);
    free(sets);
    return rc;
}
