/* it_spool: nothing predbridged acknowledged as accepted is lost: kill -9 at random moments, a
 * broker outage of 30 s, a full disk. What arrived is read back through libpredbridge (duplicate
 * suppression on, as by default), whose callback must see every acknowledged id exactly once. And a
 * failed fdatasync (injected by fault_fdatasync.c) is never answered accepted. */
#include "it_consumer_util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define ID_LEN 36

/* N lines, and the id each got once acknowledged as accepted. */
typedef struct stream {
    int n;
    const char *tag; /* model_version of the lines, to tell runs apart */
    int round;       /* part of each line, so rounds never produce equal lines */
    char (*ids)[ID_LEN + 1];
    int acked;
    /* Called after each acknowledgement (may kill the daemon, pause the broker...). */
    void (*on_ack)(struct stream *st, itest_daemon_t *d);
    /* Called when no acknowledgement came for stall_ms while lines are outstanding; returns 1 to
     * keep waiting (it fixed something), 0 to fail. NULL: a stall fails the test. */
    int (*on_stall)(struct stream *st, itest_daemon_t *d);
    int stall_ms;
    void *ctx;
} stream_t;

static void stream_init(stream_t *st, int n, const char *tag, int round) {
    memset(st, 0, sizeof *st);
    st->n = n;
    st->tag = tag;
    st->round = round;
    st->ids = calloc((size_t)n, sizeof *st->ids);
    st->stall_ms = 60000;
    assert_non_null(st->ids);
}

/* Parses one reply line; returns its seq and copies the id of an accepted record, fails the test
 * on any other status. */
static long parse_reply(const char *line, char *id) {
    long seq = -1;
    if (sscanf(line, "{\"seq\":%ld", &seq) != 1) fail_msg("unexpected reply: %s", line);
    if (seq == 0) return 0; /* the handshake */
    const char *p = strstr(line, "\"id\":\"");
    if (!p || !strstr(line, "\"status\":\"accepted\"")) fail_msg("record not accepted: %s", line);
    memcpy(id, p + 6, ID_LEN);
    id[ID_LEN] = '\0';
    return seq;
}

/* One connection: sends every line not yet acknowledged (accepted mode), reads the replies, until
 * all are acknowledged or the daemon goes away. Acknowledgements already written to the socket
 * before a crash are read and count. */
static void stream_once(stream_t *st, itest_daemon_t *d) {
    int *pending = malloc((size_t)st->n * sizeof *pending), n_pending = 0;
    for (int i = 0; i < st->n; i++)
        if (!st->ids[i][0]) pending[n_pending++] = i;
    size_t cap = (size_t)n_pending * 96 + 64, len = 0, off = 0;
    char *out = malloc(cap);
    len += (size_t)sprintf(out, "{\"ack\":\"accepted\"}\n");
    for (int k = 0; k < n_pending; k++)
        len += (size_t)sprintf(out + len, "{\"model_version\":\"%s\",\"prediction\":%d,\"round\":%d}\n", st->tag,
                               pending[k], st->round);
    int fd = itest_connect(d->socket_path);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    char in[65536];
    size_t in_len = 0;
    int64_t last_progress = itest_now_ms();
    int done = 0, open_ = 1;
    while (open_ && done < n_pending) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (off < len ? POLLOUT : 0)};
        int r = poll(&p, 1, 1000);
        if (r == 0 && itest_now_ms() - last_progress >= st->stall_ms) {
            if (!st->on_stall || !st->on_stall(st, d)) fail_msg("no acknowledgement for %d ms", st->stall_ms);
            last_progress = itest_now_ms();
        }
        if (r <= 0) continue;
        if ((p.revents & POLLOUT) && off < len) {
            ssize_t w = send(fd, out + off, len - off, MSG_NOSIGNAL);
            if (w > 0) off += (size_t)w;
            else if (errno != EAGAIN && errno != EWOULDBLOCK) off = len; /* gone: read what is left */
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t got = recv(fd, in + in_len, sizeof in - in_len - 1, 0);
            if (got <= 0 && !(got < 0 && (errno == EAGAIN || errno == EINTR))) {
                open_ = 0;
                continue;
            }
            if (got < 0) continue;
            in_len += (size_t)got;
            in[in_len] = '\0';
            char *line = in, *nl;
            while ((nl = strchr(line, '\n'))) {
                *nl = '\0';
                char id[ID_LEN + 1];
                long seq = parse_reply(line, id);
                if (seq > 0) {
                    assert_true(seq <= n_pending);
                    memcpy(st->ids[pending[seq - 1]], id, sizeof id);
                    st->acked++;
                    done++;
                    last_progress = itest_now_ms();
                    if (st->on_ack) st->on_ack(st, d);
                }
                line = nl + 1;
            }
            in_len = strlen(line);
            memmove(in, line, in_len);
        }
    }
    close(fd);
    free(out);
    free(pending);
}

/* Until every line is acknowledged: (re)start the daemon when it is not running, stream. */
static void stream_all(stream_t *st, itest_daemon_t *d) {
    while (st->acked < st->n) {
        if (d->pid < 0) {
            int status = 0;
            if (itest_daemon_start(d, &status) != 0) {
                itest_system("tail -n 20 '%s' >&2", d->log_path);
                fail_msg("predbridged did not restart (status %d)", status);
            }
        }
        stream_once(st, d);
    }
}

/* ---- reading back ---- */

typedef struct seen {
    char (*ids)[ID_LEN + 1];
    size_t n, cap;
} seen_t;

static pb_action_t collect(const pb_message_t *m, void *opaque) {
    seen_t *s = opaque;
    const char *id = pb_message_id(m);
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->ids = realloc(s->ids, s->cap * sizeof *s->ids);
        assert_non_null(s->ids);
    }
    snprintf(s->ids[s->n++], ID_LEN + 1, "%s", id ? id : "");
    return PB_COMMIT;
}

static int cmp_id(const void *a, const void *b) {
    return memcmp(a, b, ID_LEN + 1);
}

/* Reads the whole topic through libpredbridge and checks: no id delivered twice, and every id in
 * the streams delivered. Returns the number of records the broker holds (duplicates included). */
static int64_t verify_exactly_once(const char *topic, stream_t *const *streams, int n_streams) {
    int64_t size = itest_topic_size(topic);
    char group[128], err[512];
    unique_group(group, sizeof group, "spool");
    seen_t seen = {0};
    pb_config_t *conf = consumer_config(topic, group, NULL);
    pb_consumer_t *c = pb_consumer_new(conf, collect, NULL, &seen, err, sizeof err);
    pb_config_destroy(conf);
    if (!c) fail_msg("pb_consumer_new: %s", err);
    poll_until_received(c, (uint64_t)size, 300000);
    uint64_t dups = stat_of(c, PB_STAT_DUPLICATES);
    pb_consumer_destroy(c);
    qsort(seen.ids, seen.n, sizeof *seen.ids, cmp_id);
    for (size_t i = 1; i < seen.n; i++)
        if (!memcmp(seen.ids[i - 1], seen.ids[i], ID_LEN + 1)) fail_msg("id %s reached the callback twice", seen.ids[i]);
    size_t acked = 0;
    for (int s = 0; s < n_streams; s++) {
        for (int i = 0; i < streams[s]->n; i++) {
            acked++;
            if (!bsearch(streams[s]->ids[i], seen.ids, seen.n, sizeof *seen.ids, cmp_id))
                fail_msg("acknowledged id %s (line %d) never reached the callback", streams[s]->ids[i], i);
        }
    }
    fprintf(stderr, "  %zu acknowledged ids, %lld records on the broker, %zu delivered once, %llu duplicates dropped\n",
            acked, (long long)size, seen.n, (unsigned long long)dups);
    free(seen.ids);
    return size;
}

/* ---- kill -9 ---- */

typedef struct kill_plan {
    int at; /* kill once this many lines of the stream are acknowledged; 0: done */
    int kills;
} kill_plan_t;

static void kill_on_ack(stream_t *st, itest_daemon_t *d) {
    kill_plan_t *k = st->ctx;
    if (!k->at || st->acked < k->at || d->pid < 0) return;
    k->at = 0;
    assert_int_equal(kill(d->pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(d->pid, &status, 0), d->pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    d->pid = -1;
    k->kills++;
}

static int env_int(const char *name, int def) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static void test_spool_kill9_at_random_moments_loses_no_acknowledged_record(void **state) {
    (void)state;
    int trials = env_int("PB_KILL_TRIALS", 20), n = env_int("PB_KILL_LINES", 50000);
    unsigned seed = (unsigned)env_int("PB_KILL_SEED", (int)(itest_now_ms() & 0x7fffffff));
    fprintf(stderr, "  %d trials of %d predictions, seed %u (PB_KILL_SEED to repeat)\n", trials, n, seed);
    srand(seed);
    char topic[256];
    /* One partition: the log order is the consumer's order. A replayed copy follows its original
     * by at most what was delivered after the spool last wrote its delivery mark, well inside the
     * consumer's duplicate window. */
    itest_create_topic("predictions-it-spool-kill", 1, topic, sizeof topic);
    itest_daemon_t d;
    itest_daemon_config(&d, topic, NULL); /* one spool directory for every trial */
    stream_t *streams[64] = {0};
    assert_true(trials <= 64);
    int recovered_logs = 0;
    for (int t = 0; t < trials; t++) {
        stream_t *st = streams[t] = malloc(sizeof *st);
        stream_init(st, n, "kill", t);
        kill_plan_t k = {.at = 1 + rand() % (n - 1)};
        st->ctx = &k;
        st->on_ack = kill_on_ack;
        stream_all(st, &d); /* the daemon keeps running into the next trial */
        assert_int_equal(k.kills, 1);
    }
    /* The last kill may have come with the last acknowledgement: start again to deliver the rest. */
    if (d.pid < 0) assert_int_equal(itest_daemon_start(&d, NULL), 0);
    assert_int_equal(itest_daemon_stop(&d, 120000), 0);
    recovered_logs = itest_system("grep -q 'spool.recovered' '%s'", d.log_path) == 0;
    /* Some kill left records behind that the next start replayed (else the test proved little). */
    assert_true(recovered_logs);
    verify_exactly_once(topic, streams, trials);
    for (int t = 0; t < trials; t++) free(streams[t]->ids), free(streams[t]);
}

/* ---- broker outage ---- */

typedef struct outage {
    int at; /* pause the broker after this many acknowledgements */
    int64_t paused_at;
} outage_t;

static void pause_on_ack(stream_t *st, itest_daemon_t *d) {
    (void)d;
    outage_t *o = st->ctx;
    if (o->paused_at || st->acked < o->at) return;
    assert_int_equal(itest_system("'%s/scripts/kafka-local.sh' pause >/dev/null", getenv("PB_SOURCE_DIR")), 0);
    o->paused_at = itest_now_ms();
}

static void test_spool_broker_stopped_for_30s_mid_stream_everything_arrives(void **state) {
    (void)state;
    char topic[256];
    itest_create_topic("predictions-it-spool-outage", 3, topic, sizeof topic);
    itest_daemon_t d;
    itest_daemon_config(&d, topic, NULL);
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    int pid = d.pid;
    stream_t st;
    stream_init(&st, 20000, "outage", 0);
    outage_t o = {.at = 5000};
    st.ctx = &o;
    st.on_ack = pause_on_ack;
    stream_all(&st, &d); /* the spool keeps accepting while the broker is away */
    assert_true(o.paused_at > 0);
    /* The outage lasts 30 s from the pause. */
    int64_t left;
    while ((left = o.paused_at + 30000 - itest_now_ms()) > 0) poll(NULL, 0, (int)left);
    assert_int_equal(itest_system("'%s/scripts/kafka-local.sh' resume >/dev/null", getenv("PB_SOURCE_DIR")), 0);
    /* No manual step: the same daemon process delivers the rest on its own. */
    int64_t deadline = itest_now_ms() + 120000;
    while (itest_topic_size(topic) < st.n && itest_now_ms() < deadline) poll(NULL, 0, 500);
    assert_int_equal(d.pid, pid);
    assert_true(itest_daemon_log_wait(&d, "not ready", 1000)); /* the outage was seen */
    assert_int_equal(itest_daemon_stop(&d, 60000), 0);
    stream_t *one = &st;
    verify_exactly_once(topic, &one, 1);
    free(st.ids);
}

/* ---- full disk ---- */

typedef struct diskfull {
    outage_t outage; /* first: pause_on_ack sees an outage_t */
    char filler[700];
    int freed;
} diskfull_t;

static int free_space_on_stall(stream_t *st, itest_daemon_t *d) {
    diskfull_t *f = st->ctx;
    if (f->freed) return 0;
    /* Writers are held back; the daemon says why, and is alive. */
    assert_true(itest_daemon_log_wait(d, "No space left on device", 1000));
    assert_int_equal(kill(d->pid, 0), 0);
    assert_int_equal(unlink(f->filler), 0);
    assert_int_equal(itest_system("'%s/scripts/kafka-local.sh' resume >/dev/null", getenv("PB_SOURCE_DIR")), 0);
    f->freed = 1;
    /* 3 s without an acknowledgement showed the writers held back. Recovery is slower: the stream
     * needs more than the 1 MiB disk, so it goes on only as the broker takes records, and the
     * producer reconnects after a backoff of up to 10 s (librdkafka's reconnect.backoff.max.ms). */
    st->stall_ms = 60000;
    return 1;
}

static void test_spool_full_disk_holds_writers_back_and_recovers(void **state) {
    (void)state;
    char topic[256], mnt[600];
    itest_create_topic("predictions-it-spool-disk", 3, topic, sizeof topic);
    snprintf(mnt, sizeof mnt, "/tmp/pbit-small-XXXXXX");
    assert_non_null(mkdtemp(mnt));
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m,mode=0700") != 0)
        fail_msg("cannot mount a 1 MiB tmpfs at %s (%s): this test needs root", mnt, strerror(errno));
    /* The broker goes away early in the stream, so the spool grows until the disk is full; once
     * the writers are held back, space is freed and the broker comes back. */
    char extra[1024];
    snprintf(extra, sizeof extra, "spool.dir = %s/spool\nspool.segment_bytes = 64k", mnt);
    itest_daemon_t d;
    itest_daemon_config(&d, topic, extra);
    /* Leave about 256 KiB free. */
    diskfull_t f = {0};
    snprintf(f.filler, sizeof f.filler, "%s/filler", mnt);
    assert_int_equal(itest_system("dd if=/dev/zero of='%s' bs=1k count=768 2>/dev/null", f.filler), 0);
    assert_int_equal(itest_daemon_start(&d, NULL), 0);
    stream_t st;
    stream_init(&st, 20000, "disk", 0);
    f.outage.at = 1000;
    st.ctx = &f;
    st.on_ack = pause_on_ack;
    st.on_stall = free_space_on_stall;
    st.stall_ms = 3000;
    stream_all(&st, &d);
    assert_true(f.freed); /* the disk did fill up */
    assert_true(itest_daemon_log_wait(&d, "writing again after the disk was full", 1000));
    assert_int_equal(itest_daemon_stop(&d, 60000), 0);
    assert_int_equal(umount(mnt), 0);
    rmdir(mnt);
    stream_t *one = &st;
    verify_exactly_once(topic, &one, 1);
    free(st.ids);
}

/* ---- a failed fdatasync ---- */

/* Reply lines of one connection, read with a deadline. */
typedef struct replies {
    int fd;
    char buf[16384];
    size_t len;
    char line[4096];
} replies_t;

/* The next reply line, without its newline; NULL if none is complete within timeout_ms. */
static const char *next_reply(replies_t *r, int timeout_ms) {
    int64_t deadline = itest_now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(r->buf, '\n', r->len);
        if (nl) {
            size_t n = (size_t)(nl - r->buf);
            assert_true(n < sizeof r->line);
            memcpy(r->line, r->buf, n);
            r->line[n] = '\0';
            r->len -= n + 1;
            memmove(r->buf, nl + 1, r->len);
            return r->line;
        }
        int64_t left = deadline - itest_now_ms();
        if (left <= 0) return NULL;
        assert_true(r->len < sizeof r->buf);
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0) continue;
        ssize_t got = recv(r->fd, r->buf + r->len, sizeof r->buf - r->len, 0);
        if (got == 0) fail_msg("predbridged closed the connection");
        if (got < 0 && errno != EINTR) fail_msg("recv: %s", strerror(errno));
        if (got > 0) r->len += (size_t)got;
    }
}

/* Sends predictions first..first+n-1, one line each (line i of the connection is prediction i - 1),
 * and checks that each reply has the line's seq and `status`; a failed one, the reason of a failed
 * sync. */
static void send_expect(replies_t *r, int first, int n, const char *status) {
    char buf[4096], want[64];
    size_t len = 0;
    for (int i = first; i < first + n; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len,
                                "{\"model_version\":\"fsync\",\"prediction\":%d}\n", i);
    assert_true(len < sizeof buf);
    assert_int_equal(itest_write_all(r->fd, buf, len), 0);
    snprintf(want, sizeof want, "\"status\":\"%s\"", status);
    for (int i = first; i < first + n; i++) {
        const char *line = next_reply(r, 30000);
        if (!line) fail_msg("no reply to line %d (%s expected) within 30 s", i + 1, status);
        long seq = -1;
        if (sscanf(line, "{\"seq\":%ld", &seq) != 1 || seq != i + 1)
            fail_msg("reply to line %d: %s", i + 1, line);
        if (!strstr(line, want)) fail_msg("line %d: expected %s: %s", i + 1, want, line);
        if (!strcmp(status, "failed") &&
            (!strstr(line, "\"reason\":\"spool_fsync: fdatasync of seg-") || !strstr(line, ".pbs failed: ") ||
             !strstr(line, "Input/output error") || !strstr(line, "not durable, send it again")))
            fail_msg("line %d: not the reason of a failed fdatasync: %s", i + 1, line);
    }
}

static char *env_save(const char *name) {
    const char *v = getenv(name);
    return v ? strdup(v) : NULL;
}

static void env_restore(const char *name, char *saved) {
    if (saved) setenv(name, saved, 1);
    else unsetenv(name);
    free(saved);
}

/* Starts d with fault_fdatasync.c preloaded, its fdatasyncs failing while `trigger` exists. The
 * environment is the test's own again afterwards: nothing else the test runs loads the module. */
static void start_with_failing_fdatasync(itest_daemon_t *d, const char *trigger) {
    char *preload = env_save("LD_PRELOAD"), *asan = env_save("ASAN_OPTIONS");
    char *fault = env_save("PB_FAULT_FDATASYNC");
    char opts[2048];
    /* The module comes before the ASan runtime in the load order, which ASan refuses unless told. */
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "", asan && *asan ? ":" : "");
    assert_int_equal(setenv("ASAN_OPTIONS", opts, 1), 0);
    assert_int_equal(setenv("LD_PRELOAD", PB_FAULT_FDATASYNC_SO, 1), 0);
    assert_int_equal(setenv("PB_FAULT_FDATASYNC", trigger, 1), 0);
    int status = -1, rc = itest_daemon_start(d, &status);
    env_restore("LD_PRELOAD", preload);
    env_restore("ASAN_OPTIONS", asan);
    env_restore("PB_FAULT_FDATASYNC", fault);
    if (rc != 0) {
        itest_system("cat '%s' >&2", d->log_path);
        fail_msg("predbridged with %s preloaded did not start (status %d)", PB_FAULT_FDATASYNC_SO, status);
    }
}

/* predbridge_spool_fsync_failures_total once it is at least min (the spool's numbers are published
 * once a second), or what it is after 10 s. */
static long long fsync_failures(int port, long long min) {
    static char body[65536];
    long long v = -1;
    for (int64_t deadline = itest_now_ms() + 10000;; poll(NULL, 0, 100)) {
        int status = 0;
        if (itest_http_request(port, "GET", "/metrics", &status, body, sizeof body) != 0 || status != 200)
            fail_msg("GET /metrics on port %d: status %d", port, status);
        v = itest_metric(body, "predbridge_spool_fsync_failures_total");
        if (v >= min || itest_now_ms() >= deadline) return v;
    }
}

static void test_spool_failed_fdatasync_answers_failed_and_still_delivers(void **state) {
    (void)state;
    enum { PER_PHASE = 5, N = 3 * PER_PHASE };
    char topic[256], trigger[700];
    itest_create_topic("predictions-it-spool-fsync", 1, topic, sizeof topic);
    itest_daemon_t d;
    itest_daemon_config(&d, topic,
                        "http.listen = 127.0.0.1:0\nspool.fsync = interval\nspool.fsync_interval_ms = 10");
    snprintf(trigger, sizeof trigger, "%s/fail-fdatasync", d.dir);
    start_with_failing_fdatasync(&d, trigger);
    int port = itest_daemon_http_port(&d);
    replies_t r = {.fd = itest_connect(d.socket_path)};
    assert_true(r.fd >= 0);
    const char *hello = "{\"ack\":\"accepted\"}\n";
    assert_int_equal(itest_write_all(r.fd, hello, strlen(hello)), 0);
    const char *ready = next_reply(&r, 30000);
    if (!ready || !strstr(ready, "{\"seq\":0,") || !strstr(ready, "\"status\":\"ready\""))
        fail_msg("handshake: %s", ready ? ready : "none within 30 s");

    /* Syncs work: accepted (spool seqs 1..5). */
    send_expect(&r, 0, PER_PHASE, "accepted");
    assert_int_equal(fsync_failures(port, 0), 0);

    /* Syncs fail: the lines written since the last good one are answered failed, and logged. */
    int fd = open(trigger, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    send_expect(&r, PER_PHASE, PER_PHASE, "failed");
    assert_true(itest_daemon_log_wait(&d, "spool.fsync", 10000));
    assert_true(itest_daemon_log_wait(&d, "failed: Input/output error; records 6..", 1000));
    long long failures = fsync_failures(port, 1);
    if (failures < 1)
        fail_msg("predbridge_spool_fsync_failures_total is %lld after a failed fdatasync", failures);

    /* Syncs work again: the failed segment was sealed, the new one is trusted. */
    assert_int_equal(unlink(trigger), 0);
    send_expect(&r, 2 * PER_PHASE, PER_PHASE, "accepted");
    close(r.fd);

    /* Every line reached the topic exactly once, those answered failed too (they stayed in the spool). */
    size_t n = 0;
    itest_record_t *recs = itest_consume(topic, N, 60000, &n);
    assert_int_equal(n, N);
    int seen[N] = {0};
    for (size_t k = 0; k < n; k++) {
        json_t *o = json_loads(recs[k].value, 0, NULL);
        assert_non_null(o);
        json_int_t v = json_integer_value(json_object_get(o, "prediction"));
        json_decref(o);
        if (v < 0 || v >= N) fail_msg("unexpected record: %s", recs[k].value);
        seen[v]++;
    }
    itest_records_free(recs, n);
    for (int i = 0; i < N; i++)
        if (seen[i] != 1) fail_msg("prediction %d arrived %d times", i, seen[i]);
    assert_int_equal(itest_daemon_stop(&d, 60000), 0);
    assert_int_equal(itest_topic_size(topic), N); /* nothing more was sent before the daemon stopped */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spool_kill9_at_random_moments_loses_no_acknowledged_record),
        cmocka_unit_test(test_spool_full_disk_holds_writers_back_and_recovers),
        cmocka_unit_test(test_spool_broker_stopped_for_30s_mid_stream_everything_arrives),
        cmocka_unit_test(test_spool_failed_fdatasync_answers_failed_and_still_delivers),
    };
    const char *filter = getenv("PB_ITEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
