/* pb_rawproducer.c: benchmark ceiling: NDJSON from stdin to Kafka with plain librdkafka. */
#include "bench_common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct stats {
    uint64_t delivered, failed;
    char first_error[256];
} stats_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    stats_t *s = opaque;
    if (m->err) {
        if (!s->failed++) snprintf(s->first_error, sizeof s->first_error, "%s", rd_kafka_err2str(m->err));
    } else {
        s->delivered++;
    }
}

/* --file: each line is appended to a new file the way predbridged's spool appends records (in
 * 256 KiB writes, space reserved 64 MiB at a time; no fdatasync, as with spool.fsync = never), so
 * that a run measures what writing every record to disk costs on top of producing it. */
#define FILE_WRITE (256u * 1024)
#define FILE_RESERVE ((off_t)64 << 20)

typedef struct appender {
    int fd;
    char *buf;
    size_t len;
    off_t off, reserved;
    const char *path;
} appender_t;

static int appender_flush(appender_t *a) {
    size_t done = 0;
    while (done < a->len) {
        if (a->off + (off_t)(a->len - done) > a->reserved) {
            (void)fallocate(a->fd, FALLOC_FL_KEEP_SIZE, a->reserved, FILE_RESERVE);
            a->reserved += FILE_RESERVE;
        }
        ssize_t n = pwrite(a->fd, a->buf + done, a->len - done, a->off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            fprintf(stderr, "pb_rawproducer: %s: %s\n", a->path, strerror(errno));
            return -1;
        }
        done += (size_t)n;
        a->off += n;
    }
    a->len = 0;
    return 0;
}

static int appender_add(appender_t *a, const char *line, size_t n) {
    if (a->len + n + 1 > FILE_WRITE && appender_flush(a) != 0) return -1;
    if (n + 1 > FILE_WRITE) { /* a line longer than a whole write goes on its own */
        ssize_t w = pwrite(a->fd, line, n, a->off);
        if (w != (ssize_t)n) {
            fprintf(stderr, "pb_rawproducer: %s: %s\n", a->path, w < 0 ? strerror(errno) : "short write");
            return -1;
        }
        a->off += w;
        n = 0;
    }
    memcpy(a->buf + a->len, line, n);
    a->len += n;
    a->buf[a->len++] = '\n';
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: pb_rawproducer -b BOOTSTRAP -t TOPIC --ca F --cert F --key F [--compression C] "
               "[--linger-ms N]\n"
               "                      [--headers] [--file PATH] [-X property=value]... [--timeout S]\n"
               "                      < predictions.ndjson\n"
               "Publishes each non-empty line of stdin as one record with predbridged's producer settings.\n"
               "--headers adds the four headers predbridged adds (content-type, pb-id, pb-producer, model "
               "version).\n"
               "--file appends each line to PATH (a new file) before producing it, in 256 KiB writes like\n"
               "predbridged's spool (spool.fsync = never), to measure what a spool costs on its own.\n"
               "-X sets any other librdkafka property (experiments, e.g. queue.buffering.max.messages).\n"
               "Prints one line of key=value results on stderr; exit 1 if a record was not delivered.\n");
}

int main(int argc, char **argv) {
    const char *bootstrap = NULL, *topic = NULL, *ca = NULL, *cert = NULL, *key = NULL;
    const char *compression = "lz4", *linger = "5", *file = NULL;
    int headers = 0, timeout_s = 300;
    const char *extra[32];
    int n_extra = 0;
    static const struct option lo[] = {
        {"ca", 1, 0, 'a'},          {"cert", 1, 0, 'c'},      {"key", 1, 0, 'k'},
        {"compression", 1, 0, 'z'}, {"linger-ms", 1, 0, 'l'}, {"headers", 0, 0, 'H'},
        {"timeout", 1, 0, 'T'},     {"file", 1, 0, 'f'},      {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "b:t:X:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'b':
            bootstrap = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'a':
            ca = optarg;
            break;
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'z':
            compression = optarg;
            break;
        case 'l':
            linger = optarg;
            break;
        case 'H':
            headers = 1;
            break;
        case 'f':
            file = optarg;
            break;
        case 'X':
            if (n_extra == 32 || !strchr(optarg, '=')) {
                fprintf(stderr, "pb_rawproducer: -X takes key=value (at most 32)\n");
                return 2;
            }
            extra[n_extra++] = optarg;
            break;
        case 'T':
            timeout_s = atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!bootstrap || !topic || !ca || !cert || !key || optind < argc || timeout_s <= 0) {
        fprintf(stderr, "pb_rawproducer: -b, -t, --ca, --cert and --key are required\n");
        usage(stderr);
        return 2;
    }
    const char *prog = "pb_rawproducer";
    appender_t app = {.fd = -1, .path = file};
    if (file) {
        app.fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        app.buf = malloc(FILE_WRITE);
        if (app.fd < 0 || !app.buf) {
            fprintf(stderr, "%s: --file %s: %s\n", prog, file, app.fd < 0 ? strerror(errno) : "out of memory");
            return 1;
        }
    }
    stats_t st = {0};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    bench_conf_tls(conf, bootstrap, ca, cert, key, prog);
    bench_conf_set(conf, "acks", "all", prog);
    bench_conf_set(conf, "enable.idempotence", "true", prog);
    bench_conf_set(conf, "compression.codec", compression, prog);
    bench_conf_set(conf, "linger.ms", linger, prog);
    bench_conf_set(conf, "message.timeout.ms", "0", prog);
    bench_conf_like_predbridge(conf, 0, prog);
    bench_conf_set(conf, "client.id", "pb_rawproducer", prog);
    for (int i = 0; i < n_extra; i++) {
        char kv[512];
        snprintf(kv, sizeof kv, "%s", extra[i]);
        char *eq = strchr(kv, '=');
        *eq = '\0';
        bench_conf_set(conf, kv, eq + 1, prog);
    }
    rd_kafka_conf_set_opaque(conf, &st);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "%s: %s\n", prog, errstr);
        return 1;
    }
    int64_t deadline = bench_mono_ns() + (int64_t)timeout_s * 1000000000;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t produced = 0, seq = 0;
    int rc = 0;
    char id[32];
    while ((n = getline(&line, &cap, stdin)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (n == 0) continue;
        if (app.fd >= 0 && appender_add(&app, line, (size_t)n) != 0) {
            rc = 1;
            goto done;
        }
        for (;;) {
            rd_kafka_resp_err_t err;
            if (headers) {
                rd_kafka_headers_t *h = rd_kafka_headers_new(4);
                snprintf(id, sizeof id, "%016" PRIx64, seq);
                rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
                rd_kafka_header_add(h, "pb-id", -1, id, -1);
                rd_kafka_header_add(h, "pb-producer", -1, "predbridged", -1);
                rd_kafka_header_add(h, "pb-model-version", -1, "bench-1", -1);
                err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(line, (size_t)n),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                        RD_KAFKA_V_END);
                if (err) rd_kafka_headers_destroy(h);
            } else {
                err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(line, (size_t)n),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            }
            if (!err) break;
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "%s: produce: %s\n", prog, rd_kafka_err2str(err));
                rc = 1;
                goto done;
            }
            if (bench_mono_ns() > deadline) {
                fprintf(stderr, "%s: timed out with the queue full\n", prog);
                rc = 1;
                goto done;
            }
            rd_kafka_poll(rk, 100); /* serves delivery reports, which frees queue space */
        }
        produced++;
        seq++;
        rd_kafka_poll(rk, 0);
    }
done:
    free(line);
    if (app.fd >= 0) {
        if (appender_flush(&app) != 0) rc = 1;
        close(app.fd);
        free(app.buf);
    }
    while (rd_kafka_outq_len(rk) > 0 && bench_mono_ns() < deadline)
        rd_kafka_flush(rk, 100);
    int left = rd_kafka_outq_len(rk);
    fprintf(stderr,
            "rawproducer produced=%" PRIu64 " delivered=%" PRIu64 " failed=%" PRIu64 " undelivered=%d%s%s\n",
            produced, st.delivered, st.failed, left, st.failed ? " first_error=" : "", st.first_error);
    rd_kafka_destroy(rk);
    return rc || st.failed || left || st.delivered != produced ? 1 : 0;
}
