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
        else if (!strcmp(k, "PB_BOOTSTRAP_REVOKED")) copy_value(g_env.bootstrap_revoked, sizeof g_env.bootstrap_revoked, v);
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

static int leader_moving(rd_kafka_resp_err_t err) {
    return err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION || err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
           err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN;
}

int64_t itest_topic_size(const char *topic) {
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, itest_conf(itest_env()->bootstrap, "admin"), errstr, sizeof errstr);
    if (!rk) die("admin client: %s", errstr);
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_metadata(rk, 0, t, &md, 10000)) die("metadata for %s failed", topic);
    int64_t total = 0;
    /* Just after a broker (re)start a partition may have no leader yet: that is waited out. */
    int64_t deadline = itest_now_ms() + 30000;
    for (int i = 0; i < md->topics[0].partition_cnt; i++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t err;
        while ((err = rd_kafka_query_watermark_offsets(rk, topic, md->topics[0].partitions[i].id, &lo, &hi, 10000)) &&
               leader_moving(err) && itest_now_ms() < deadline)
            rd_kafka_poll(rk, 100);
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

static int g_broker_paused;

void itest_broker(const char *verb) {
    if (itest_system("'%s/scripts/kafka-local.sh' %s >/dev/null", getenv("PB_SOURCE_DIR"), verb) != 0)
        die("kafka-local.sh %s failed", verb);
    g_broker_paused = !strcmp(verb, "pause");
}

int itest_broker_resume_if_paused(void **state) {
    (void)state;
    if (g_broker_paused) itest_broker("resume");
    return 0;
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

/* ---- predbridged under test ---- */

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>

void itest_daemon_config(itest_daemon_t *d, const char *topic, const char *extra_lines) {
    memset(d, 0, sizeof *d);
    d->pid = -1;
    snprintf(d->dir, sizeof d->dir, "/tmp/pbit-XXXXXX");
    if (!mkdtemp(d->dir)) die("mkdtemp: %s", strerror(errno));
    snprintf(d->config, sizeof d->config, "%s/predbridged.conf", d->dir);
    snprintf(d->socket_path, sizeof d->socket_path, "%s/predbridged.sock", d->dir);
    snprintf(d->log_path, sizeof d->log_path, "%s/predbridged.log", d->dir);
    snprintf(d->topic, sizeof d->topic, "%s", topic);
    FILE *f = fopen(d->config, "w");
    if (!f) die("cannot write %s: %s", d->config, strerror(errno));
    const itest_env_t *e = itest_env();
    int has = extra_lines != NULL;
#define KEY_SET(k) (has && (strstr(extra_lines, k " =") == extra_lines || strstr(extra_lines, "\n" k " =")))
    fprintf(f, "# written by itest_daemon_config\n");
    if (!KEY_SET("socket.path")) fprintf(f, "socket.path = %s\n", d->socket_path);
    if (!KEY_SET("bootstrap.servers")) fprintf(f, "bootstrap.servers = %s\n", e->bootstrap);
    if (!KEY_SET("topic")) fprintf(f, "topic = %s\n", topic);
    if (!KEY_SET("tls.ca")) fprintf(f, "tls.ca = %s/ca.crt\n", e->cert_dir);
    if (!KEY_SET("tls.cert")) fprintf(f, "tls.cert = %s/predbridged.crt\n", e->cert_dir);
    if (!KEY_SET("tls.key")) fprintf(f, "tls.key = %s/predbridged.key\n", e->cert_dir);
    if (!KEY_SET("log.level")) fprintf(f, "log.level = info\n");
    if (!KEY_SET("spool.dir")) fprintf(f, "spool.dir = %s/spool\n", d->dir);
#undef KEY_SET
    if (extra_lines) fprintf(f, "%s\n", extra_lines);
    fclose(f);
}

static const char *daemon_path(void) {
    static char p[1200];
    const char *b = getenv("PB_BUILD_DIR");
    if (!b) die("PB_BUILD_DIR is not set");
    snprintf(p, sizeof p, "%s/src/daemon/predbridged", b);
    return p;
}

int itest_connect(const char *socket_path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(socket_path) >= sizeof sa.sun_path) return -1;
    memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int itest_write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Waits for an inotify event on fd until deadline. Returns 1 if one came. */
static int wait_inotify(int ifd, int64_t deadline) {
    int64_t left = deadline - itest_now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = ifd, .events = POLLIN};
    int n = poll(&p, 1, (int)(left > 500 ? 500 : left)); /* re-check state at least twice a second */
    if (n > 0) {
        char buf[4096];
        while (read(ifd, buf, sizeof buf) > 0) {
        }
    }
    return n > 0;
}

int itest_daemon_start(itest_daemon_t *d, int *status) {
    int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ifd < 0 || inotify_add_watch(ifd, d->dir, IN_CREATE | IN_ATTRIB | IN_MODIFY) < 0) die("inotify: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        /* Dies with the test, and holds none of the test's pipes open. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (getenv("PB_VALGRIND") && *getenv("PB_VALGRIND"))
            execlp("valgrind", "valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
                   "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite", "--track-fds=no", daemon_path(),
                   "--config", d->config, (char *)NULL);
        else
            execl(daemon_path(), "predbridged", "--config", d->config, (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    int64_t deadline = itest_now_ms() + 30000;
    int rc = -1;
    while (itest_now_ms() < deadline) {
        int fd = itest_connect(d->socket_path);
        if (fd >= 0) {
            close(fd);
            rc = 0;
            break;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = -1;
            if (status) *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        wait_inotify(ifd, deadline);
    }
    close(ifd);
    return rc;
}

int itest_run(char *out, size_t out_size, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd - 5, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cmd - 5) die("command too long: %.80s...", cmd);
    strcat(cmd, " 2>&1");
    FILE *p = popen(cmd, "r");
    if (!p) die("popen: %s", strerror(errno));
    size_t got = fread(out, 1, out_size - 1, p);
    out[got] = '\0';
    while (fgetc(p) != EOF) { /* the rest, so the command is not killed by SIGPIPE */
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int itest_daemon_run(const char *args, char *out, size_t out_size) {
    return itest_run(out, out_size, "'%s' %s", daemon_path(), args);
}

int itest_daemon_stop(itest_daemon_t *d, int timeout_ms) {
    if (d->pid <= 0) return -1;
    kill(d->pid, SIGTERM);
    int64_t deadline = itest_now_ms() + timeout_ms;
    /* A pidfd would let us poll; waitpid with WNOHANG plus the log's inotify keeps it event-driven enough. */
    int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    inotify_add_watch(ifd, d->log_path, IN_MODIFY | IN_CLOSE_WRITE);
    int status = -1;
    while (itest_now_ms() < deadline) {
        int st;
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            d->pid = -1;
            break;
        }
        wait_inotify(ifd, deadline);
    }
    close(ifd);
    if (d->pid > 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        d->pid = -1;
    }
    return status;
}

static int file_contains(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[8192];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

int itest_daemon_log_wait(itest_daemon_t *d, const char *needle, int timeout_ms) {
    int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    inotify_add_watch(ifd, d->log_path, IN_MODIFY);
    int64_t deadline = itest_now_ms() + timeout_ms;
    int found = file_contains(d->log_path, needle);
    while (!found && itest_now_ms() < deadline) {
        wait_inotify(ifd, deadline);
        found = file_contains(d->log_path, needle);
    }
    close(ifd);
    return found;
}

static void header_copy(rd_kafka_headers_t *h, const char *name, char *out, size_t size) {
    const void *v;
    size_t n;
    out[0] = '\0';
    if (h && rd_kafka_header_get_last(h, name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (n >= size) n = size - 1;
        memcpy(out, v, n);
        out[n] = '\0';
    }
}

itest_record_t *itest_consume(const char *topic, size_t want, int timeout_ms, size_t *n) {
    char errstr[512], group[128];
    rd_kafka_conf_t *conf = itest_conf(itest_env()->bootstrap, "predbridge-consumer");
    snprintf(group, sizeof group, "itest-%d-%lld", (int)getpid(), (long long)itest_now_ms());
    itest_set(conf, "group.id", group);
    itest_set(conf, "auto.offset.reset", "earliest");
    itest_set(conf, "enable.auto.commit", "false");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) die("consumer: %s", errstr);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    if (rd_kafka_subscribe(rk, sub)) die("subscribe %s failed", topic);
    rd_kafka_topic_partition_list_destroy(sub);
    size_t cap = want ? want : 16, cnt = 0;
    itest_record_t *out = calloc(cap, sizeof *out);
    int64_t deadline = itest_now_ms() + timeout_ms;
    while (cnt < want && itest_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m) continue;
        if (!m->err) {
            if (cnt == cap) out = realloc(out, (cap *= 2) * sizeof *out);
            itest_record_t *r = &out[cnt++];
            memset(r, 0, sizeof *r);
            r->value = malloc(m->len + 1);
            memcpy(r->value, m->payload, m->len);
            r->value[m->len] = '\0';
            r->value_len = m->len;
            if (m->key) {
                r->key = malloc(m->key_len + 1);
                memcpy(r->key, m->key, m->key_len);
                r->key[m->key_len] = '\0';
            }
            r->partition = m->partition;
            r->offset = m->offset;
            r->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
            rd_kafka_headers_t *h = NULL;
            rd_kafka_message_headers(m, &h);
            header_copy(h, "content-type", r->content_type, sizeof r->content_type);
            header_copy(h, "pb-id", r->id, sizeof r->id);
            header_copy(h, "pb-producer", r->producer, sizeof r->producer);
            header_copy(h, "pb-model-version", r->model_version, sizeof r->model_version);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    *n = cnt;
    return out;
}

void itest_records_free(itest_record_t *r, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(r[i].value);
        free(r[i].key);
    }
    free(r);
}

/* ---- predbridged's HTTP endpoint, and what its logs must not contain ---- */

#include <arpa/inet.h>
#include <netinet/in.h>

int itest_http_request(int port, const char *method, const char *path, int *status, char *body, size_t body_size) {
    *status = 0;
    body[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    if (itest_write_all(fd, req, (size_t)n) != 0) {
        close(fd);
        return -1;
    }
    static char raw[65536 + 4096];
    size_t len = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0) break; /* a deadline, not a delay: the server answers at once */
        ssize_t got = read(fd, raw + len, sizeof raw - 1 - len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        len += (size_t)got;
        if (len == sizeof raw - 1) break;
    }
    close(fd);
    raw[len] = '\0';
    if (sscanf(raw, "HTTP/1.%*d %d", status) != 1) return -1;
    const char *b = strstr(raw, "\r\n\r\n");
    if (b) snprintf(body, body_size, "%s", b + 4);
    return 0;
}

long long itest_metric(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)); p++) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') return atoll(p + n + 1);
    }
    return -1;
}

int itest_daemon_start_http(itest_daemon_t *d, const char *topic, const char *extra) {
    char lines[4096];
    snprintf(lines, sizeof lines, "http.listen = 127.0.0.1:0\nkafka.statistics.interval.ms = 500\n%s",
             extra ? extra : "");
    itest_daemon_config(d, topic, lines);
    int st = -1;
    if (itest_daemon_start(d, &st) != 0) {
        itest_system("cat '%s' >&2", d->log_path);
        die("predbridged did not start (status %d)", st);
    }
    return itest_daemon_http_port(d);
}

int itest_daemon_http_port(itest_daemon_t *d) {
    if (!itest_daemon_log_wait(d, "(port ", 10000)) die("predbridged did not log its HTTP port"); /* text or JSON */
    FILE *f = fopen(d->log_path, "r");
    if (!f) die("cannot read %s: %s", d->log_path, strerror(errno));
    char line[4096];
    int port = -1;
    while (port < 0 && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "(port ");
        if (strstr(line, "http.listen") && p) port = atoi(p + 6);
    }
    fclose(f);
    if (port <= 0) die("no HTTP port in %s", d->log_path);
    return port;
}

static int file_has(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot read %s: %s", path, strerror(errno));
    static char text[1 << 22];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return strstr(text, needle) != NULL;
}

const char *itest_secret_in(const char *path, const char *key_file, const char *passphrase) {
    static char found[128];
    if (passphrase && file_has(path, passphrase)) return "the passphrase";
    if (file_has(path, "PRIVATE KEY")) return "a PEM private key marker";
    FILE *kf = key_file ? fopen(key_file, "r") : NULL;
    if (key_file && !kf) die("cannot read %s: %s", key_file, strerror(errno));
    char kl[256];
    while (kf && fgets(kl, sizeof kl, kf)) {
        kl[strcspn(kl, "\r\n")] = '\0';
        if (strlen(kl) < 16 || kl[0] == '-') continue;
        kl[16] = '\0'; /* any 16 characters of base64 key material */
        if (file_has(path, kl)) {
            snprintf(found, sizeof found, "key material '%.16s'", kl);
            fclose(kf);
            return found;
        }
    }
    if (kf) fclose(kf);
    return NULL;
}
