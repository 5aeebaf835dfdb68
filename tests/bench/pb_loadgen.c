/* pb_loadgen.c: benchmark load generator: timestamped NDJSON predictions into predbridged's socket. */
#include "bench_common.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define WBUF_SIZE 65536

enum ack_mode { ACK_NONE, ACK_ACCEPTED, ACK_DELIVERED };

typedef struct opts {
    const char *socket_path; /* NULL: write to stdout */
    uint64_t count;
    size_t size;
    int writers;
    enum ack_mode ack;
    double rate; /* predictions/s over all writers; 0: as fast as possible */
    int64_t tick_ns; /* paced: a writer wakes at most once per tick (0: once per line) */
    int timeout_s;
    uint64_t first_seq; /* seq of the first line (a warm-up uses seq >= the run's N) */
} opts_t;

typedef struct writer {
    pthread_t thread;
    const opts_t *o;
    int index;
    uint64_t first_seq, n; /* this writer's share: seq first_seq + index + i * writers, i < n */
    int fd;
    /* results */
    uint64_t sent, replies, ok, rejected, failed;
    int ready;
    char error[256];
    /* reply parsing */
    char rbuf[65536];
    size_t rlen;
} writer_t;

static int64_t g_deadline_ns; /* monotonic */

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: pb_loadgen (--socket PATH | --stdout) [-n N] [-s BYTES] [-w WRITERS] [--ack "
        "accepted|delivered]\n"
        "                  [--rate PER_SECOND] [--timeout SECONDS] [--first-seq K] [--tick-us T]\n"
        "\n"
        "Writes N predictions (one JSON object per line, BYTES each including the newline) carrying\n"
        "\"seq\" (0..N-1) and \"sent_ns\" (CLOCK_REALTIME when the line was handed to write()).\n"
        "  --socket PATH   predbridged's socket; WRITERS connections share the N lines\n"
        "  --stdout        write to standard output instead (one writer), e.g. into kcat -P\n"
        "  -n N            predictions in total (default 50000)\n"
        "  -s BYTES        size of each line (default 300, at least 128)\n"
        "  -w WRITERS      concurrent connections (default 4)\n"
        "  --ack MODE      ask for replies (accepted|delivered) and check that each line got one\n"
        "  --rate R        pace to R predictions/s in total (default: as fast as possible)\n"
        "  --timeout S     give up after S seconds (default 300)\n"
        "  --first-seq K   number the lines K..K+N-1 (default 0), e.g. for a warm-up the consumer ignores\n"
        "  --tick-us T     paced: each writer wakes at most every T microseconds and writes the lines due\n"
        "                  by then, one write each (default 1000; 0: a wake-up per line)\n"
        "Prints one line of key=value results on stderr; exit 1 if a line was not sent or not OK.\n");
}

/* Formats one prediction of exactly size bytes (newline included) into out. */
static size_t format_line(char *out, size_t size, uint64_t seq, int writer) {
    int64_t sent = bench_realtime_ns();
    int n =
        snprintf(out, size,
                 "{\"model_version\":\"bench-1\",\"prediction\":{\"label\":\"fraud\",\"score\":0.%06" PRIu64
                 "},\"writer\":%d,\"seq\":%" PRIu64 ",\"sent_ns\":%" PRId64 ",\"pad\":\"",
                 (seq * 7919) % 1000000, writer, seq, sent);
    size_t used = (size_t)n;
    size_t tail = 3; /* "}\n */
    if (used + tail < size) {
        memset(out + used, 'x', size - used - tail);
        used = size - tail;
    }
    memcpy(out + used, "\"}\n", 3);
    return used + 3;
}

static int write_all(int fd, const char *p, size_t n, char *err, size_t err_size) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            int left = (int)((g_deadline_ns - bench_mono_ns()) / 1000000);
            if (left <= 0 || poll(&pf, 1, left) == 0) {
                snprintf(err, err_size, "timed out writing");
                return -1;
            }
        } else {
            snprintf(err, err_size, "write: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Consumes complete reply lines in w->rbuf. Returns -1 on a protocol error. */
static int parse_replies(writer_t *w) {
    char *start = w->rbuf, *end = w->rbuf + w->rlen, *nl;
    while ((nl = memchr(start, '\n', (size_t)(end - start)))) {
        size_t len = (size_t)(nl - start);
        if (!w->ready) {
            if (!memmem(start, len, "\"status\":\"ready\"", 16)) {
                snprintf(w->error, sizeof w->error, "handshake refused: %.*s", (int)(len > 200 ? 200 : len),
                         start);
                return -1;
            }
            w->ready = 1;
        } else {
            w->replies++;
            if (memmem(start, len, "\"status\":\"delivered\"", 20) ||
                memmem(start, len, "\"status\":\"accepted\"", 19))
                w->ok++;
            else if (memmem(start, len, "\"status\":\"rejected\"", 19))
                w->rejected++;
            else
                w->failed++;
        }
        start = nl + 1;
    }
    w->rlen = (size_t)(end - start);
    memmove(w->rbuf, start, w->rlen);
    if (w->rlen == sizeof w->rbuf) {
        snprintf(w->error, sizeof w->error, "reply line longer than %zu bytes", sizeof w->rbuf);
        return -1;
    }
    return 0;
}

/* Reads whatever replies are there; blocks up to timeout_ms for the first. Returns -1 on error or EOF. */
static int read_replies(writer_t *w, int timeout_ms) {
    struct pollfd pf = {.fd = w->fd, .events = POLLIN};
    int r = poll(&pf, 1, timeout_ms);
    if (r <= 0) return 0;
    ssize_t n = recv(w->fd, w->rbuf + w->rlen, sizeof w->rbuf - w->rlen, MSG_DONTWAIT);
    if (n == 0) {
        snprintf(w->error, sizeof w->error, "daemon closed the connection after %" PRIu64 " replies",
                 w->replies);
        return -1;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return 0;
        snprintf(w->error, sizeof w->error, "recv: %s", strerror(errno));
        return -1;
    }
    w->rlen += (size_t)n;
    return parse_replies(w);
}

static int connect_socket(const char *path, char *err, size_t err_size) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, err_size, "socket path too long: %s", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        snprintf(err, err_size, "connect %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static void *writer_main(void *arg) {
    writer_t *w = arg;
    const opts_t *o = w->o;
    char *buf = malloc(WBUF_SIZE + o->size);
    if (!buf) {
        snprintf(w->error, sizeof w->error, "out of memory");
        return NULL;
    }
    if (o->ack != ACK_NONE) {
        const char *hs = o->ack == ACK_DELIVERED ? "{\"ack\":\"delivered\"}\n" : "{\"ack\":\"accepted\"}\n";
        if (write_all(w->fd, hs, strlen(hs), w->error, sizeof w->error)) goto out;
    }
    /* Paced: this writer's share of the rate, each line at its scheduled time. */
    double per_writer = o->rate > 0 ? o->rate / o->writers : 0;
    int64_t start = bench_mono_ns();
    size_t len = 0;
    for (uint64_t i = 0; i < w->n; i++) {
        if (bench_mono_ns() > g_deadline_ns) {
            snprintf(w->error, sizeof w->error, "timed out after %" PRIu64 " lines", w->sent);
            goto out;
        }
        if (per_writer > 0) {
            /* A line goes out once it is due. Sleeping to each line's own time cost this process about
             * a quarter of the two CPUs at 10,000 lines/s (a timer wake-up per line), taken from the
             * broker and the tool under test alike: a writer sleeps to the next tick instead, and
             * writes the lines due by then one after another, each stamped when it is written. */
            int64_t due = start + (int64_t)((double)i * 1e9 / per_writer);
            if (due > bench_mono_ns()) {
                int64_t tick = o->tick_ns;
                int64_t wake = tick > 0 ? start + (due - start + tick - 1) / tick * tick : due;
                struct timespec ts = {.tv_sec = wake / 1000000000, .tv_nsec = wake % 1000000000};
                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
                }
            }
        }
        /* Interleaved, so that every stretch of seq (e.g. the warm-up) is spread over all writers. */
        len += format_line(buf + len, o->size, w->first_seq + (uint64_t)w->index + i * (uint64_t)o->writers,
                           w->index);
        /* Paced lines go out one by one (their send time must be true); otherwise in 64 KiB writes. */
        if (per_writer > 0 || len >= WBUF_SIZE || i + 1 == w->n) {
            if (write_all(w->fd, buf, len, w->error, sizeof w->error)) goto out;
            w->sent = i + 1;
            len = 0;
        }
        if (o->ack != ACK_NONE && read_replies(w, 0)) goto out;
    }
    if (o->ack != ACK_NONE) {
        shutdown(w->fd, SHUT_WR);
        while (w->replies < w->n) {
            int left = (int)((g_deadline_ns - bench_mono_ns()) / 1000000);
            if (left <= 0) {
                snprintf(w->error, sizeof w->error, "timed out with %" PRIu64 " of %" PRIu64 " replies",
                         w->replies, w->n);
                break;
            }
            if (read_replies(w, left > 1000 ? 1000 : left)) break;
        }
    }
out:
    free(buf);
    return NULL;
}

static int parse_ack(const char *s, enum ack_mode *out) {
    if (!strcmp(s, "accepted"))
        *out = ACK_ACCEPTED;
    else if (!strcmp(s, "delivered"))
        *out = ACK_DELIVERED;
    else if (!strcmp(s, "none"))
        *out = ACK_NONE;
    else
        return -1;
    return 0;
}

int main(int argc, char **argv) {
    opts_t o = {.count = 50000, .size = 300, .writers = 4, .timeout_s = 300, .tick_ns = 1000000};
    int to_stdout = 0;
    enum { OPT_ACK = 256, OPT_RATE, OPT_TIMEOUT, OPT_STDOUT, OPT_FIRST, OPT_TICK };
    static const struct option lo[] = {{"socket", required_argument, NULL, 'S'},
                                       {"stdout", no_argument, NULL, OPT_STDOUT},
                                       {"ack", required_argument, NULL, OPT_ACK},
                                       {"rate", required_argument, NULL, OPT_RATE},
                                       {"timeout", required_argument, NULL, OPT_TIMEOUT},
                                       {"first-seq", required_argument, NULL, OPT_FIRST},
                                       {"tick-us", required_argument, NULL, OPT_TICK},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "n:s:w:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'S':
            o.socket_path = optarg;
            break;
        case OPT_STDOUT:
            to_stdout = 1;
            break;
        case 'n':
            o.count = strtoull(optarg, NULL, 10);
            break;
        case 's':
            o.size = strtoul(optarg, NULL, 10);
            break;
        case 'w':
            o.writers = atoi(optarg);
            break;
        case OPT_ACK:
            if (parse_ack(optarg, &o.ack)) {
                fprintf(stderr, "pb_loadgen: --ack must be accepted, delivered or none, not '%s'\n", optarg);
                return 2;
            }
            break;
        case OPT_RATE:
            o.rate = strtod(optarg, NULL);
            break;
        case OPT_TIMEOUT:
            o.timeout_s = atoi(optarg);
            break;
        case OPT_FIRST:
            o.first_seq = strtoull(optarg, NULL, 10);
            break;
        case OPT_TICK:
            o.tick_ns = strtoll(optarg, NULL, 10) * 1000;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || (!o.socket_path == !to_stdout) || o.count == 0 || o.size < 128 || o.size > 1048576 ||
        o.writers < 1 || o.writers > 1024 || o.rate < 0 || o.timeout_s <= 0 || o.tick_ns < 0 ||
        (to_stdout && o.ack != ACK_NONE)) {
        fprintf(stderr, "pb_loadgen: bad arguments: need exactly one of --socket/--stdout, -n >= 1, "
                        "128 <= -s <= 1048576, 1 <= -w <= 1024, --ack only with --socket\n");
        usage(stderr);
        return 2;
    }
    if (to_stdout) o.writers = 1;
    if ((uint64_t)o.writers > o.count) o.writers = (int)o.count;
    signal(SIGPIPE, SIG_IGN);
    g_deadline_ns = bench_mono_ns() + (int64_t)o.timeout_s * 1000000000;

    writer_t *w = calloc((size_t)o.writers, sizeof *w);
    if (!w) {
        fprintf(stderr, "pb_loadgen: out of memory\n");
        return 1;
    }
    uint64_t per = o.count / (uint64_t)o.writers, extra = o.count % (uint64_t)o.writers;
    for (int i = 0; i < o.writers; i++) {
        w[i].o = &o;
        w[i].index = i;
        w[i].first_seq = o.first_seq;
        w[i].n = per + ((uint64_t)i < extra ? 1 : 0);
        if (to_stdout) {
            w[i].fd = STDOUT_FILENO;
        } else {
            char err[300];
            w[i].fd = connect_socket(o.socket_path, err, sizeof err);
            if (w[i].fd < 0) {
                fprintf(stderr, "pb_loadgen: %s\n", err);
                return 1;
            }
        }
    }
    int64_t t0 = bench_mono_ns();
    for (int i = 0; i < o.writers; i++) {
        if (pthread_create(&w[i].thread, NULL, writer_main, &w[i]) != 0) {
            fprintf(stderr, "pb_loadgen: cannot start writer thread %d\n", i);
            return 1;
        }
    }
    uint64_t sent = 0, replies = 0, ok = 0, rejected = 0, failed = 0;
    int errors = 0;
    for (int i = 0; i < o.writers; i++) {
        pthread_join(w[i].thread, NULL);
        if (!to_stdout) close(w[i].fd);
        sent += w[i].sent;
        replies += w[i].replies;
        ok += w[i].ok;
        rejected += w[i].rejected;
        failed += w[i].failed;
        if (w[i].error[0]) {
            fprintf(stderr, "pb_loadgen: writer %d: %s\n", i, w[i].error);
            errors++;
        }
    }
    double secs = (double)(bench_mono_ns() - t0) / 1e9;
    fprintf(stderr,
            "loadgen sent=%" PRIu64 " secs=%.3f rate=%.0f replies=%" PRIu64 " ok=%" PRIu64
            " rejected=%" PRIu64 " failed=%" PRIu64 "\n",
            sent, secs, secs > 0 ? (double)sent / secs : 0.0, replies, ok, rejected, failed);
    free(w);
    int bad = errors || sent != o.count || (o.ack != ACK_NONE && (ok != o.count));
    return bad ? 1 : 0;
}
