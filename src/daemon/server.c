/* server.c: predbridged's event loop: one epoll loop owns the UNIX socket, every connection,
 * signals and the producer's delivery reports (see server.h). */
#include "server.h"

#include "common/clock.h"
#include "common/frame.h"
#include "common/log.h"
#include "common/record.h"
#include "http.h"
#include "metrics.h"
#include "listener.h"
#include "peer.h"
#include "reply.h"
#include "producer.h"
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 65536
#define READS_PER_WAKE 4                  /* fairness between connections */
#define OUT_HIGH_WATER (4u * 1024 * 1024) /* stop reading a writer that does not read its acks */
/* Delivered-mode records only in the spool (librdkafka's queue full): each holds a reply in memory,
 * so reading pauses at this many and memory stays bounded however far the broker falls behind. */
#define MAX_UNSENT_REPLIES 10000

enum ack_mode { ACK_NONE = 0, ACK_ACCEPTED = 1, ACK_DELIVERED = 2 };
enum reply_status { R_PENDING = 0, R_ACCEPTED, R_DELIVERED, R_REJECTED, R_FAILED, R_READY };
static const char *const status_names[] = {"pending", "accepted", "delivered", "rejected", "failed", "ready"};

typedef struct conn conn_t;

/* One acknowledgement owed to a writer, kept in line order. In delivered mode it is also the
 * record's delivery opaque; if the writer goes away first, conn becomes NULL and the delivery
 * report frees it. */
typedef struct reply {
    struct reply *next;
    struct reply *next_unsent; /* delivered mode: in the server's queue of spooled, unsent records */
    conn_t *conn;
    uint64_t seq;
    uint64_t spool_seq; /* accepted mode: sent once the spool made this record durable */
    void *spool_ref;    /* delivered mode: the record's place in the spool */
    enum reply_status status;
    char id[PBREC_ID_LEN + 1];
    char *reason;
} reply_t;

struct conn {
    conn_t *prev, *next;
    int fd;
    pid_t pid;
    uid_t uid;
    pbframe_t frame;
    enum ack_mode ack;
    int handshake_checked;
    /* Bytes read but not yet framed (the producer's queue was full). */
    char *backlog;
    size_t backlog_len;
    /* A validated record that the full spool did not take yet. */
    int has_pending;
    pbd_record_t pending;
    char pending_id[PBREC_ID_LEN + 1];
    char *pending_key, *pending_model;
    reply_t *pending_reply;
    /* Acknowledgements in order; out is what is formatted and not yet written. */
    reply_t *head, *tail;
    char *out;
    size_t out_len, out_cap;
    int eof;        /* the writer finished sending; everything it sent is framed */
    int gone;       /* the writer closed entirely: no more events, nobody reads replies */
    int read_eof;   /* end of stream seen while bytes still wait in the backlog */
    int reading;    /* EPOLLIN is registered */
    int writing;    /* EPOLLOUT is registered */
};

struct pbd_server {
    const pbd_config_t *cfg;
    int epfd, signal_fd;
    pbd_listener_t listener;
    pbd_producer_t *producer;
    pbsp_t *spool;
    int spool_dirty;           /* appended since the last pbsp_commit */
    int acks_waiting;          /* accepted replies wait for the spool to make records durable */
    reply_t *unsent_head, *unsent_tail; /* delivered-mode replies of records still only in the spool */
    size_t n_unsent;
    uint64_t replay_left;      /* records recovered at start, not yet handed to the producer */
    int64_t replay_started_ms;
    int64_t next_material_check_ms; /* tls.expiry.check_interval_s */
    time_t spool_logged;
    conn_t *conns;
    int n_conns;
    int accepting;
    int paused; /* the spool is full: no connection is read */
    int stopping;
    pbd_stats_t stats;
    pbm_metrics_t *metrics; /* the same counts, thread-safe, for /metrics (http.c) */
    pbd_http_t *http;       /* NULL unless http.listen is set */
    int timer_fd;           /* 1 s tick: /healthz sees the loop alive; the spool's housekeeping */
    char rbuf[READ_CHUNK];
    /* Rejected-line logging is rate-limited per second. */
    pblog_limit_t reject_log, fail_log; /* at most 10 lines a second each */
    time_t pause_logged;
};

/* epoll tags: the listener and the signal fd use sentinel pointers, connections their conn_t. */
static char tag_listen, tag_signal, tag_producer, tag_timer, tag_spool;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int epoll_set(pbd_server_t *s, int op, int fd, uint32_t events, void *tag) {
    struct epoll_event ev = {.events = events, .data.ptr = tag};
    return epoll_ctl(s->epfd, op, fd, &ev);
}

static void conn_update_events(pbd_server_t *s, conn_t *c) {
    if (c->gone) return;
    int want_read = !s->paused && !s->stopping && !c->eof && !c->has_pending && !c->backlog_len &&
                    c->out_len < OUT_HIGH_WATER;
    int want_write = c->out_len > 0;
    if (want_read == c->reading && want_write == c->writing) return;
    c->reading = want_read;
    c->writing = want_write;
    uint32_t ev = (want_read ? EPOLLIN : 0) | (want_write ? EPOLLOUT : 0);
    if (epoll_set(s, EPOLL_CTL_MOD, c->fd, ev, c) != 0)
        PBLOG_E("epoll", "epoll_ctl(MOD) on connection %d: %s", c->fd, strerror(errno));
}

/* ---- acknowledgements ---- */

static int out_reserve(conn_t *c, size_t more) {
    if (c->out_len + more <= c->out_cap) return 0;
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + more) cap *= 2;
    char *n = realloc(c->out, cap);
    if (!n) return -1;
    c->out = n;
    c->out_cap = cap;
    return 0;
}

/* One reply line, formatted directly (this is per line in ack mode: no JSON tree). */
static void format_reply(conn_t *c, const reply_t *r) {
    const char *text_key = r->reason ? (r->status == R_READY ? "ack" : "reason") : NULL;
    if (out_reserve(c, pbd_reply_max_len(r->reason)) != 0) return;
    c->out_len += pbd_reply_format(c->out + c->out_len, r->seq, r->id[0] ? r->id : NULL, status_names[r->status],
                                   text_key, r->reason);
}

static void reply_free(reply_t *r) {
    free(r->reason);
    free(r);
}

/* Moves resolved replies from the head of the queue into the output buffer, in order; an
 * accepted reply waits until the spool made its record durable. */
static void replies_flush(const pbd_server_t *s, conn_t *c) {
    uint64_t durable = pbsp_durable_seq(s->spool);
    while (c->head && c->head->status != R_PENDING &&
           !(c->head->status == R_ACCEPTED && c->head->spool_seq > durable)) {
        reply_t *r = c->head;
        c->head = r->next;
        if (!c->head) c->tail = NULL;
        format_reply(c, r);
        reply_free(r);
    }
}

static reply_t *reply_add(conn_t *c, uint64_t seq, enum reply_status st, const char *id, const char *reason) {
    reply_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->conn = c;
    r->seq = seq;
    r->status = st;
    if (id) snprintf(r->id, sizeof r->id, "%s", id);
    if (reason) r->reason = strdup(reason);
    if (c->tail) c->tail->next = r;
    else c->head = r;
    c->tail = r;
    return r;
}

/* Writes as much output as the socket takes. Returns -1 if the writer is gone. */
static int conn_write(pbd_server_t *s, conn_t *c) {
    (void)s;
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return -1;
        }
    }
    memmove(c->out, c->out + off, c->out_len - off);
    c->out_len -= off;
    return 0;
}

/* ---- connections ---- */

static void conn_close(pbd_server_t *s, conn_t *c, const char *why) {
    PBLOG_D("conn.close", "connection fd %d (pid %d uid %u) closed: %s", c->fd, (int)c->pid, (unsigned)c->uid, why);
    if (!c->gone) epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    pbm_connection_closed(s->metrics); /* before close: a writer seeing EOF sees the gauge updated */
    close(c->fd);
    /* Replies awaiting delivery reports outlive us: the report frees them. */
    for (reply_t *r = c->head, *next; r; r = next) {
        next = r->next;
        if (r->status == R_PENDING && r != c->pending_reply) {
            r->conn = NULL;
            r->next = NULL;
        } else {
            reply_free(r);
        }
    }
    if (c->has_pending) {
        PBLOG_W("conn.lost_pending", "connection closed with a record not yet queued; it was not accepted");
        free(c->pending.value);
        free(c->pending_key);
        free(c->pending_model);
    }
    free(c->backlog);
    free(c->out);
    pbframe_free(&c->frame);
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->n_conns--;
    free(c);
    if (!s->accepting && !s->stopping && s->n_conns < s->cfg->max_connections) {
        if (epoll_set(s, EPOLL_CTL_ADD, s->listener.fd, EPOLLIN, &tag_listen) == 0) s->accepting = 1;
    }
}

/* What the limiters held back: said by the next line of the kind, or by the tick after a quiet second. */
static void log_rejects_dropped(unsigned n) {
    pblog_field_t f[] = {{.key = "suppressed", .num = n}};
    pblog_fields(PBLOG_WARN, "line.rejected", f, 1, "%u more rejected lines in the last second were not logged", n);
}

static void log_failed_dropped(unsigned n) {
    pblog_field_t f[] = {{.key = "suppressed", .num = n}};
    pblog_fields(PBLOG_ERROR, "record.failed", f, 1, "%u more failed records were not logged", n);
}

static void log_reject(pbd_server_t *s, const conn_t *c, uint64_t seq, const char *reason) {
    unsigned dropped;
    int allow = pblog_limit_allow(&s->reject_log, time(NULL), 10, &dropped);
    if (dropped) log_rejects_dropped(dropped);
    if (!allow) return;
    char why[64]; /* the status name before the details: "missing_field: ..." */
    snprintf(why, sizeof why, "%.*s", (int)strcspn(reason, ":"), reason);
    pblog_field_t f[] = {{.key = "pid", .num = c->pid}, {.key = "uid", .num = c->uid},
                         {.key = "line", .num = (long long)seq}, {.key = "reason", .str = why}};
    pblog_fields(PBLOG_WARN, "line.rejected", f, 4, "pid %d uid %u line %llu rejected: %s", (int)c->pid,
                 (unsigned)c->uid, (unsigned long long)seq, reason);
}

static void reject(pbd_server_t *s, conn_t *c, uint64_t seq, const char *reason) {
    s->stats.rejected++;
    pbm_rejected(s->metrics, reason);
    log_reject(s, c, seq, reason);
    if (c->ack) reply_add(c, seq, R_REJECTED, NULL, reason);
}

/* The optional first line {"ack":"accepted"|"delivered"} asks for one reply per line. */
static int try_handshake(pbd_server_t *s, conn_t *c, const char *data, size_t len) {
    (void)s;
    if (len < 6 || data[0] != '{' || !memmem(data, len, "\"ack\"", 5)) return 0;
    json_t *o = json_loadb(data, len, 0, NULL);
    if (!o) return 0;
    json_t *v = json_object_get(o, "ack");
    int handled = 0;
    if (json_object_size(o) == 1 && json_is_string(v)) {
        const char *mode = json_string_value(v);
        handled = 1;
        if (!strcmp(mode, "accepted")) c->ack = ACK_ACCEPTED;
        else if (!strcmp(mode, "delivered")) c->ack = ACK_DELIVERED;
        if (c->ack) {
            reply_add(c, 0, R_READY, NULL, mode);
        } else {
            c->ack = ACK_ACCEPTED; /* so the writer hears why */
            reply_add(c, 0, R_REJECTED, NULL, "ack must be \"accepted\" or \"delivered\"");
            c->ack = ACK_NONE;
        }
    }
    json_decref(o);
    return handled;
}

/* Failed records: at most 10 log lines a second. */
static void log_failed(pbd_server_t *s, const char *reason) {
    unsigned dropped;
    int allow = pblog_limit_allow(&s->fail_log, time(NULL), 10, &dropped);
    if (dropped) log_failed_dropped(dropped);
    if (!allow) return;
    char why[64]; /* librdkafka's error name before its text: "MSG_SIZE_TOO_LARGE: ..." */
    snprintf(why, sizeof why, "%.*s", (int)strcspn(reason, ":"), reason);
    pblog_field_t f[] = {{.key = "reason", .str = why}};
    pblog_fields(PBLOG_ERROR, "record.failed", f, 1,
                 "a record was refused for good and written to %s/failed.ndjson: %s", s->cfg->spool_dir, reason);
}

/* The record can never be delivered (the broker or librdkafka refused it for good): it leaves the
 * spool for failed.ndjson, and a writer waiting in delivered mode is told. */
static void refused(pbd_server_t *s, reply_t *dr, void *ref, const void *value, size_t len, const char *reason) {
    s->stats.failed++;
    log_failed(s, reason);
    (void)pbsp_set_aside(s->spool, ref, value, len); /* on failure it stays in the spool (logged) */
    if (!dr) return;
    dr->status = R_FAILED;
    dr->reason = strdup(reason);
    if (!dr->conn) reply_free(dr);
}

/* Hands one spooled record to the producer; its delivery opaque is its reply in delivered mode,
 * otherwise its spool ref. rec->value moves to the producer unless the queue is full. */
static pbd_send_result_t produce(pbd_server_t *s, pbd_record_t *rec, reply_t *dr, void *ref) {
    char reason[256];
    rd_kafka_resp_err_t err;
    pbd_send_result_t r = pbd_producer_send(s->producer, rec, dr ? (void *)dr : ref, &err, reason, sizeof reason);
    if (r == PBD_SEND_FULL) return r;
    pbsp_advance(s->spool);
    if (r == PBD_SEND_ERROR) {
        pbm_delivery(s->metrics, err); /* counted under its reason (too_large, ...) */
        refused(s, dr, ref, rec->value, rec->value_len, reason);
        free(rec->value);
    }
    return r;
}

static void unsent_push(pbd_server_t *s, reply_t *r, int at_head) {
    s->n_unsent++;
    if (at_head) {
        r->next_unsent = s->unsent_head;
        s->unsent_head = r;
        if (!s->unsent_tail) s->unsent_tail = r;
        return;
    }
    r->next_unsent = NULL;
    if (s->unsent_tail) s->unsent_tail->next_unsent = r;
    else s->unsent_head = r;
    s->unsent_tail = r;
}

static reply_t *unsent_pop(pbd_server_t *s, uint64_t spool_seq) {
    reply_t *r = s->unsent_head;
    if (!r || r->spool_seq != spool_seq) return NULL;
    s->unsent_head = r->next_unsent;
    if (!s->unsent_head) s->unsent_tail = NULL;
    s->n_unsent--;
    r->next_unsent = NULL;
    return r;
}

/* Hands records that are only in the spool (recovered at start, or spooled while the producer's
 * queue was full) to the producer, oldest first, until its queue is full. */
static void pump(pbd_server_t *s) {
    pbd_record_t rec;
    void *ref;
    uint64_t seq;
    char err[256];
    for (;;) {
        int got = pbsp_peek(s->spool, &rec, &ref, &seq, err, sizeof err);
        if (got < 0) {
            time_t now = time(NULL);
            if (now - s->spool_logged >= 10) PBLOG_E("spool.read", "%s; retrying", err);
            s->spool_logged = now;
        }
        if (got <= 0) return;
        reply_t *dr = unsent_pop(s, seq);
        if (produce(s, &rec, dr, ref) == PBD_SEND_FULL) {
            free(rec.value);
            if (dr) unsent_push(s, dr, 1);
            return;
        }
        if (s->replay_left && --s->replay_left == 0) {
            long long ms = (long long)(pbclock_mono_ms() - s->replay_started_ms);
            pblog_field_t f[] = {{.key = "ms", .num = ms}};
            pblog_fields(PBLOG_INFO, "spool.replayed", f, 1,
                         "every record recovered from the spool was handed to the producer in %lld ms", ms);
        }
    }
}

/* Spools the pending record and, when nothing spooled waits before it, hands it straight to the
 * producer from memory. Returns 0 if taken (or refused for good), 1 if the spool is full. */
static int send_pending(pbd_server_t *s, conn_t *c) {
    char reason[256];
    pbsp_ticket_t t;
    pbsp_status_t st = pbsp_append(s->spool, &c->pending, &t, reason, sizeof reason);
    if (st == PBSP_FULL) return 1;
    reply_t *rep = c->pending_reply;
    if (st == PBSP_OK) {
        s->spool_dirty = 1;
        s->stats.accepted++;
        pbm_accepted(s->metrics);
        reply_t *dr = c->ack == ACK_DELIVERED ? rep : NULL;
        if (rep) {
            rep->spool_seq = t.seq;
            rep->spool_ref = t.ref;
            if (c->ack == ACK_ACCEPTED) {
                rep->status = R_ACCEPTED; /* written once the spool made it durable */
                s->acks_waiting = 1;
            }
        }
        if (!t.next_to_send || produce(s, &c->pending, dr, t.ref) == PBD_SEND_FULL) {
            free(c->pending.value); /* the spool has it; pump() sends it later */
            if (dr) unsent_push(s, dr, 0);
        }
    } else {
        free(c->pending.value);
        s->stats.rejected++;
        pbm_rejected(s->metrics, reason);
        log_reject(s, c, rep ? rep->seq : 0, reason);
        if (rep) {
            rep->status = R_REJECTED;
            rep->reason = strdup(reason);
        }
    }
    c->pending_reply = NULL;
    c->has_pending = 0;
    free(c->pending_key);
    free(c->pending_model);
    c->pending_key = c->pending_model = NULL;
    return 0;
}

/* The spool is full, or too many delivered-mode writers wait: no socket is read until the broker
 * takes records. */
static void pause_reading(pbd_server_t *s) {
    if (s->paused) return;
    s->paused = 1;
    s->stats.pauses++;
    pbm_paused(s->metrics);
    time_t now = time(NULL);
    if (now - s->pause_logged >= 10) {
        pbsp_usage_t u;
        pbsp_get_usage(s->spool, &u);
        if (s->n_unsent >= MAX_UNSENT_REPLIES)
            PBLOG_I("backpressure", "%zu records of writers waiting for delivery are queued behind the producer: "
                    "reading paused until the broker catches up (%llu pauses so far)", s->n_unsent,
                    (unsigned long long)s->stats.pauses);
        else if (pbsp_disk_full(s->spool))
            PBLOG_W("backpressure", "the disk under spool.dir '%s' is full (%llu records, %llu bytes spooled): reading "
                    "paused until space returns (%llu pauses so far)", s->cfg->spool_dir, (unsigned long long)u.records,
                    (unsigned long long)u.bytes, (unsigned long long)s->stats.pauses);
        else
            PBLOG_W("backpressure", "spool full (%llu records, %llu bytes; spool.max_bytes %zu): reading paused until "
                    "the broker takes records (%llu pauses so far)", (unsigned long long)u.records,
                    (unsigned long long)u.bytes, s->cfg->spool_max_bytes, (unsigned long long)s->stats.pauses);
        s->pause_logged = now;
    }
}

static int on_line(pbd_server_t *s, conn_t *c, uint64_t line_no, const char *data, size_t len) {
    if (!c->handshake_checked) {
        c->handshake_checked = 1;
        if (line_no == 1 && try_handshake(s, c, data, len)) return 0;
    }
    uint64_t seq = c->ack ? line_no - 1 : line_no;
    s->stats.received++;
    pbm_received(s->metrics);
    char reason[256];
    pbrec_prepared_t rec;
    pbrec_status_t st = pbrec_prepare(data, len, (const char *const *)s->cfg->required_fields,
                                      s->cfg->n_required_fields, s->cfg->key_field, now_ns(), 0, &rec, reason,
                                      sizeof reason);
    if (st != PBREC_OK) {
        char full[300];
        snprintf(full, sizeof full, "%s: %s", pbrec_status_name(st), reason);
        reject(s, c, seq, full);
        return 0;
    }
    if (pbrec_new_id(c->pending_id) != 0) {
        pbrec_prepared_free(&rec);
        reject(s, c, seq, "cannot generate a message id");
        return 0;
    }
    /* Ownership of the value moves to the pending record (and on to librdkafka). */
    c->pending_key = rec.key;
    c->pending_model = rec.model_version;
    c->pending = (pbd_record_t){.value = rec.value,
                                .value_len = rec.value_len,
                                .key = rec.key,
                                .key_len = rec.key_len,
                                .timestamp_ms = rec.timestamp_ms,
                                .id = c->pending_id,
                                .model_version = rec.model_version};
    c->pending_reply = c->ack ? reply_add(c, seq, R_PENDING, c->pending_id, NULL) : NULL;
    c->has_pending = 1;
    if (send_pending(s, c) || s->n_unsent >= MAX_UNSENT_REPLIES) {
        pause_reading(s);
        return 1; /* stop framing: the rest of the input waits in the backlog */
    }
    return 0;
}

struct frame_ctx {
    pbd_server_t *s;
    conn_t *c;
};

static int frame_cb(void *ctx, pbframe_kind_t kind, uint64_t line_no, const char *data, size_t len) {
    struct frame_ctx *fc = ctx;
    conn_t *c = fc->c;
    char reason[160];
    switch (kind) {
    case PBFRAME_LINE:
        return on_line(fc->s, c, line_no, data, len);
    case PBFRAME_OVERSIZE:
        c->handshake_checked = 1;
        fc->s->stats.received++;
        pbm_received(fc->s->metrics);
        snprintf(reason, sizeof reason, "too_large: line is longer than message.max_bytes (%zu bytes)",
                 fc->s->cfg->max_message_bytes);
        reject(fc->s, c, c->ack ? line_no - 1 : line_no, reason);
        return 0;
    case PBFRAME_PARTIAL:
        fc->s->stats.received++;
        pbm_received(fc->s->metrics);
        snprintf(reason, sizeof reason, "partial: %zu bytes without a final newline at end of stream, discarded", len);
        reject(fc->s, c, c->ack ? line_no - 1 : line_no, reason);
        return 0;
    }
    return 0;
}

static void backlog_append(conn_t *c, const char *data, size_t len) {
    char *b = realloc(c->backlog, c->backlog_len + len);
    if (!b) {
        PBLOG_E("oom", "cannot keep %zu read bytes of pid %d: they are lost", len, (int)c->pid);
        return;
    }
    memcpy(b + c->backlog_len, data, len);
    c->backlog = b;
    c->backlog_len += len;
}

/* Frames bytes; what the full producer queue did not take is kept in the backlog, in order. */
static void conn_feed(pbd_server_t *s, conn_t *c, const char *data, size_t len) {
    if (c->has_pending || c->backlog_len) {
        backlog_append(c, data, len);
        return;
    }
    struct frame_ctx fc = {s, c};
    size_t used = 0;
    int stopped = pbframe_feed(&c->frame, data, len, &used, frame_cb, &fc);
    if (stopped && used < len) backlog_append(c, data + used, len - used);
}

static void conn_finish_input(pbd_server_t *s, conn_t *c);

/* Continues a connection held up by a full queue. Returns 1 if it is still held up. */
static int conn_resume(pbd_server_t *s, conn_t *c) {
    if (c->has_pending && send_pending(s, c)) return 1;
    if (c->backlog_len) {
        char *b = c->backlog;
        size_t n = c->backlog_len;
        c->backlog = NULL;
        c->backlog_len = 0;
        conn_feed(s, c, b, n);
        free(b);
        if (c->has_pending || c->backlog_len) return 1; /* stopped again (spool full, or too many waiting) */
    }
    if ((c->gone || c->read_eof) && !c->eof) conn_finish_input(s, c);
    return 0;
}

static void conn_finish_input(pbd_server_t *s, conn_t *c) {
    struct frame_ctx fc = {s, c};
    (void)pbframe_finish(&c->frame, frame_cb, &fc);
    c->eof = 1;
}

/* After any change: write replies, close a finished connection, update epoll interest. Returns 1
 * if the connection was closed (c is freed). */
static int conn_settle(pbd_server_t *s, conn_t *c) {
    replies_flush(s, c);
    if (c->gone) c->out_len = 0;
    if (c->out_len && conn_write(s, c) != 0) {
        conn_close(s, c, "writer went away");
        return 1;
    }
    if (c->eof && !c->has_pending && !c->backlog_len && !c->head && !c->out_len) {
        conn_close(s, c, "end of stream");
        return 1;
    }
    conn_update_events(s, c);
    return 0;
}

/* The writer closed entirely (EPOLLHUP): take what it sent, stop watching the fd (a hung-up fd
 * stays ready and would spin the loop), and finish once everything is framed. */
static void conn_hangup(pbd_server_t *s, conn_t *c) {
    for (;;) {
        ssize_t n = recv(c->fd, s->rbuf, sizeof s->rbuf, MSG_DONTWAIT);
        if (n > 0) conn_feed(s, c, s->rbuf, (size_t)n);
        else if (n < 0 && errno == EINTR) continue;
        else break;
    }
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->gone = 1;
    c->out_len = 0;
    if (!c->has_pending && !c->backlog_len && !c->eof) conn_finish_input(s, c);
}

/* Reads everything the writer has sent so far, without waiting for more. */
static void conn_take_sent_input(pbd_server_t *s, conn_t *c) {
    while (!c->eof && !c->read_eof) {
        ssize_t n = recv(c->fd, s->rbuf, sizeof s->rbuf, MSG_DONTWAIT);
        if (n > 0) {
            conn_feed(s, c, s->rbuf, (size_t)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else if (c->has_pending || c->backlog_len) {
            c->read_eof = 1; /* finished once the backlog is framed */
        } else {
            conn_finish_input(s, c);
        }
    }
}

static void conn_readable(pbd_server_t *s, conn_t *c) {
    for (int i = 0; i < READS_PER_WAKE && !c->eof && !c->has_pending && !s->paused; i++) {
        ssize_t n = recv(c->fd, s->rbuf, sizeof s->rbuf, MSG_DONTWAIT);
        if (n > 0) {
            conn_feed(s, c, s->rbuf, (size_t)n);
            if ((size_t)n < sizeof s->rbuf) break;
        } else if (n == 0) {
            conn_finish_input(s, c);
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            conn_finish_input(s, c);
        }
    }
}

static void pause_all(pbd_server_t *s) {
    for (conn_t *c = s->conns; c; c = c->next) conn_update_events(s, c);
}

/* The producer made progress: give held-up connections another go, in order of arrival. */
static void try_resume(pbd_server_t *s) {
    if (!s->paused || s->n_unsent >= MAX_UNSENT_REPLIES) return;
    s->paused = 0;
    for (conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (conn_resume(s, c)) {
            s->paused = 1; /* still full: stays paused (already counted) */
            break;
        }
    }
    for (conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_settle(s, c);
    }
}

static void on_accept(pbd_server_t *s) {
    for (;;) {
        if (s->n_conns >= s->cfg->max_connections) {
            epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listener.fd, NULL);
            s->accepting = 0;
            PBLOG_W("socket.limit", "socket.max_connections (%d) reached; new writers wait", s->cfg->max_connections);
            return;
        }
        int fd = accept4(s->listener.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) PBLOG_E("socket.accept", "accept: %s", strerror(errno));
            return;
        }
        struct ucred cred;
        socklen_t cl = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
            PBLOG_E("socket.peercred", "SO_PEERCRED: %s; refusing the connection", strerror(errno));
            close(fd);
            continue;
        }
        if (!pbd_peer_allowed(cred.uid, cred.gid, s->cfg->allowed_uids, s->cfg->n_allowed_uids, s->cfg->allowed_gids,
                              s->cfg->n_allowed_gids)) {
            s->stats.refused_peers++;
            pbm_refused_peer(s->metrics);
            pblog_field_t f[] = {{.key = "pid", .num = cred.pid}, {.key = "uid", .num = cred.uid},
                                 {.key = "gid", .num = cred.gid}};
            pblog_fields(PBLOG_WARN, "socket.refused", f, 3,
                         "refused a writer: pid %d uid %u gid %u is not in socket.allowed_uids/gids", (int)cred.pid,
                         (unsigned)cred.uid, (unsigned)cred.gid);
            close(fd);
            continue;
        }
        conn_t *c = calloc(1, sizeof *c);
        if (!c || pbframe_init(&c->frame, s->cfg->max_message_bytes) != 0) {
            PBLOG_E("oom", "out of memory accepting a writer");
            free(c);
            close(fd);
            return;
        }
        c->fd = fd;
        c->pid = cred.pid;
        c->uid = cred.uid;
        c->reading = !s->paused;
        if (epoll_set(s, EPOLL_CTL_ADD, fd, c->reading ? EPOLLIN : 0, c) != 0) {
            PBLOG_E("epoll", "epoll_ctl(ADD): %s", strerror(errno));
            pbframe_free(&c->frame);
            free(c);
            close(fd);
            continue;
        }
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        s->stats.connections++;
        pbm_connection_opened(s->metrics);
        pblog_field_t f[] = {{.key = "pid", .num = cred.pid}, {.key = "uid", .num = cred.uid}};
        if (pblog_level() >= PBLOG_DEBUG)
            pblog_fields(PBLOG_DEBUG, "conn.open", f, 2, "writer pid %d uid %u connected (fd %d)", (int)cred.pid,
                         (unsigned)cred.uid, fd);
    }
}

/* ---- delivery reports ---- */

/* A delivery opaque is a reply (delivered mode) or a spool ref, whose low bit is set. Returns the
 * record's spool ref, and its reply (NULL for none) in *reply. */
static void *opaque_ref(void *opaque, reply_t **reply) {
    reply_t *r = ((uintptr_t)opaque & 1u) ? NULL : opaque;
    if (reply) *reply = r;
    return r ? r->spool_ref : opaque;
}

static void on_delivery(void *ctx, void *opaque, rd_kafka_resp_err_t err, const char *reason, const void *value,
                        size_t value_len, int current) {
    pbd_server_t *s = ctx;
    /* Readiness follows the producer in use: one retiring after a reload may deliver over connections
     * the new material cannot make. */
    if (current) pbm_delivery(s->metrics, err);
    else pbm_delivery_retiring(s->metrics, err);
    reply_t *r;
    void *ref = opaque_ref(opaque, &r);
    if (!err) {
        s->stats.delivered++;
        pbsp_retire(s->spool, ref);
        if (r) r->status = R_DELIVERED;
    } else if (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        /* Shutting down: the record stays in the spool and is sent at the next start. */
        if (r) r->status = R_ACCEPTED;
    } else {
        refused(s, r, ref, value, value_len, reason);
        return; /* refused() settled the reply */
    }
    if (r && !r->conn) reply_free(r); /* the writer went away */
    /* The owning connection settles in the loop (after serving all reports). */
}

/* A record's acceptance order, from its delivery opaque: records a producer gives back are sent
 * again in this order (see pbd_producer_set_order). */
static uint64_t record_order(void *ctx, void *opaque) {
    (void)ctx;
    return pbsp_ref_seq(opaque_ref(opaque, NULL));
}

/* ---- lifecycle ---- */

/* A 1 s tick: the spool's housekeeping, and the loop proves it is alive while idle. */
static int start_timer(pbd_server_t *s, char *errstr, size_t errstr_size) {
    struct itimerspec every_second = {.it_interval = {1, 0}, .it_value = {1, 0}};
    s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (s->timer_fd < 0 || timerfd_settime(s->timer_fd, 0, &every_second, NULL) != 0 ||
        epoll_set(s, EPOLL_CTL_ADD, s->timer_fd, EPOLLIN, &tag_timer) != 0) {
        snprintf(errstr, errstr_size, "timerfd: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void publish_spool(pbd_server_t *s) {
    pbsp_usage_t u;
    pbsp_get_usage(s->spool, &u);
    pbm_set_spool(s->metrics, u.bytes, u.records, pbsp_full(s->spool), u.set_aside, u.sync_failures);
}

/* Opens the spool (its lock keeps a second daemon out) and reports what it recovered. */
static int open_spool(pbd_server_t *s, char *errstr, size_t errstr_size) {
    const pbd_config_t *cfg = s->cfg;
    pbsp_options_t o = {.dir = cfg->spool_dir,
                        .fsync = (pbsp_fsync_t)pbsp_fsync_parse(cfg->spool_fsync),
                        .fsync_interval_ms = cfg->spool_fsync_interval_ms,
                        .max_bytes = cfg->spool_max_bytes,
                        .segment_bytes = cfg->spool_segment_bytes};
    pbsp_recovery_t rec;
    if (!(s->spool = pbsp_open(&o, &rec, errstr, errstr_size))) return -1;
    pblog_field_t f[] = {{.key = "records", .num = (long long)rec.records},
                         {.key = "segments", .num = (long long)rec.segments},
                         {.key = "torn_bytes", .num = (long long)rec.torn_bytes},
                         {.key = "corrupt", .num = (long long)rec.corrupt},
                         {.key = "ms", .num = (long long)rec.elapsed_ms}};
    if (rec.records || rec.torn_bytes || rec.corrupt)
        pblog_fields(PBLOG_INFO, "spool.recovered", f, 5,
                     "spool.dir '%s': %llu undelivered records in %llu segments to replay before new ones "
                     "(%llu torn bytes cut, %llu damaged records moved aside; scanned in %lld ms)", cfg->spool_dir,
                     (unsigned long long)rec.records, (unsigned long long)rec.segments,
                     (unsigned long long)rec.torn_bytes, (unsigned long long)rec.corrupt, (long long)rec.elapsed_ms);
    s->replay_left = rec.records;
    s->replay_started_ms = pbclock_mono_ms();
    pbm_replaying(s->metrics, rec.records);
    publish_spool(s);
    int fd = pbsp_event_fd(s->spool);
    if (fd >= 0 && epoll_set(s, EPOLL_CTL_ADD, fd, EPOLLIN, &tag_spool) != 0) {
        snprintf(errstr, errstr_size, "epoll_ctl: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The HTTP endpoint. Signals are blocked already, so libmicrohttpd's thread inherits the mask. */
static int start_http(pbd_server_t *s, char *errstr, size_t errstr_size) {
    s->http = pbd_http_start(s->cfg->http_listen, s->metrics, errstr, errstr_size);
    if (!s->http) return -1;
    PBLOG_I("http.listen", "serving /metrics, /healthz and /readyz on %s (port %d)", s->cfg->http_listen,
            pbd_http_port(s->http));
    return 0;
}

pbd_server_t *pbd_server_new(const pbd_config_t *cfg, const char *identity, char *errstr, size_t errstr_size) {
    pbd_server_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    s->cfg = cfg;
    s->epfd = s->listener.fd = s->signal_fd = s->timer_fd = -1;
    if (!(s->metrics = pbm_new())) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        snprintf(errstr, errstr_size, "epoll_create1: %s", strerror(errno));
        goto fail;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 ||
        (s->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        snprintf(errstr, errstr_size, "signalfd: %s", strerror(errno));
        goto fail;
    }
    signal(SIGPIPE, SIG_IGN);
    if (open_spool(s, errstr, errstr_size) != 0 || start_timer(s, errstr, errstr_size) != 0) goto fail;
    s->producer = pbd_producer_new(cfg, identity, on_delivery, s, errstr, errstr_size);
    if (!s->producer) goto fail;
    pbd_producer_set_metrics(s->producer, s->metrics);
    pbd_producer_set_order(s->producer, record_order);
    /* Before the socket exists: writers only find a daemon that is fully up. */
    if (cfg->http_listen && start_http(s, errstr, errstr_size) != 0) goto fail;
    if (pbd_listener_bind(&s->listener, cfg->socket_path, cfg->socket_mode, errstr, errstr_size) != 0) goto fail;
    if (epoll_set(s, EPOLL_CTL_ADD, s->listener.fd, EPOLLIN, &tag_listen) != 0 ||
        epoll_set(s, EPOLL_CTL_ADD, s->signal_fd, EPOLLIN, &tag_signal) != 0 ||
        epoll_set(s, EPOLL_CTL_ADD, pbd_producer_fd(s->producer), EPOLLIN, &tag_producer) != 0) {
        snprintf(errstr, errstr_size, "epoll_ctl: %s", strerror(errno));
        pbd_listener_unlink(&s->listener);
        goto fail;
    }
    s->accepting = 1;
    s->next_material_check_ms = pbclock_mono_ms() + (int64_t)cfg->tls_check_interval_s * 1000; /* checked at start */
    return s;
fail:
    pbd_server_free(s);
    return NULL;
}

static void serve_producer(pbd_server_t *s) {
    pbd_producer_serve(s->producer);
    pump(s);
    try_resume(s);
    for (conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->head && c->head->status != R_PENDING) conn_settle(s, c);
    }
}

static int held_up(const pbd_server_t *s) {
    for (const conn_t *c = s->conns; c; c = c->next)
        if (c->has_pending || c->backlog_len) return 1;
    pbsp_usage_t u;
    pbsp_get_usage(s->spool, &u);
    return u.unsent > 0;
}

/* Records whose fdatasync failed are never acknowledged as accepted: their replies say failed, with
 * the spool's reason, so their writers send them again. */
static void fail_unsynced(pbd_server_t *s) {
    uint64_t lo, hi;
    char why[200];
    if (!pbsp_take_failed(s->spool, &lo, &hi, why, sizeof why)) return;
    for (conn_t *c = s->conns; c; c = c->next)
        for (reply_t *r = c->head; r; r = r->next)
            if (r->status == R_ACCEPTED && r->spool_seq >= lo && r->spool_seq <= hi) {
                r->status = R_FAILED;
                free(r->reason);
                r->reason = strdup(why);
            }
    s->acks_waiting = 1;
}

/* Accepted replies waiting for durability go out once the spool says so. */
static void settle_waiting(pbd_server_t *s) {
    fail_unsynced(s);
    if (!s->acks_waiting) return;
    s->acks_waiting = 0;
    for (conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (!c->head || conn_settle(s, c)) continue;
        for (reply_t *r = c->head; r && !s->acks_waiting; r = r->next) s->acks_waiting = r->status == R_ACCEPTED;
    }
}

/* Ends a batch of appends: writes them and applies the fsync policy. */
static void spool_commit(pbd_server_t *s) {
    if (!s->spool_dirty) return;
    s->spool_dirty = 0;
    char err[300];
    if (pbsp_commit(s->spool, err, sizeof err) != PBSP_OK) {
        time_t now = time(NULL);
        if (now - s->spool_logged >= 10) {
            PBLOG_E("spool.write", "%s; records stay in memory, unacknowledged, and reading pauses until it can be "
                    "written (retried every second)", err);
            s->spool_logged = now;
        }
        pause_reading(s);
    }
    settle_waiting(s);
}

static void on_tick(pbd_server_t *s) {
    uint64_t ticks;
    (void)!read(s->timer_fd, &ticks, sizeof ticks);
    pbsp_tick(s->spool);
    if (pbclock_mono_ms() >= s->next_material_check_ms) {
        s->next_material_check_ms = pbclock_mono_ms() + (int64_t)s->cfg->tls_check_interval_s * 1000;
        (void)pbd_producer_check_material(s->producer); /* logs; the running material stays in use */
    }
    serve_producer(s); /* its timed steps (a retiring producer's deadline, a retry's backoff); pumps */
    spool_commit(s);
    settle_waiting(s);
    publish_spool(s);
    /* A burst of refusals followed by silence is still counted in the log. */
    unsigned dropped;
    if ((dropped = pblog_limit_flush(&s->reject_log, time(NULL)))) log_rejects_dropped(dropped);
    if ((dropped = pblog_limit_flush(&s->fail_log, time(NULL)))) log_failed_dropped(dropped);
}

/* Stop: no new writers or bytes; lines already read are still queued; then wait for delivery. */
static void shutdown_drain(pbd_server_t *s) {
    s->stopping = 1;
    if (s->accepting) epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listener.fd, NULL);
    s->accepting = 0;
    close(s->listener.fd);
    s->listener.fd = -1;
    pbd_listener_unlink(&s->listener);
    /* Whatever writers already sent is taken (framed now, or kept in order in the backlog): a
     * fire-and-forget writer that wrote before SIGTERM does not lose it. Later bytes are not read. */
    for (conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (!c->gone) conn_take_sent_input(s, c);
        conn_update_events(s, c);
    }
    spool_commit(s);
    PBLOG_I("shutdown", "stopping: %d records in flight, waiting up to %d ms for delivery",
            pbd_producer_in_flight(s->producer), s->cfg->flush_timeout_ms);
    int64_t deadline = pbclock_mono_ms() + s->cfg->flush_timeout_ms;
    while ((pbd_producer_in_flight(s->producer) > 0 || held_up(s)) && pbclock_mono_ms() < deadline) {
        int64_t left = deadline - pbclock_mono_ms();
        /* Blocks up to 100 ms serving delivery reports; then held-up lines get queued and
         * writers in ack mode get their replies (best effort: we no longer wait for EPOLLOUT). */
        pbd_producer_flush(s->producer, (int)(left < 100 ? left : 100));
        serve_producer(s);
        if (s->spool_dirty) spool_commit(s);
        if (pbsp_event_fd(s->spool) >= 0) pbsp_serve(s->spool);
        settle_waiting(s);
        pbm_heartbeat(s->metrics, pbclock_mono_ms());
    }
    unsigned long held = 0;
    for (conn_t *c = s->conns; c; c = c->next) held += (unsigned long)c->has_pending;
    pbsp_usage_t u;
    pbsp_get_usage(s->spool, &u);
    if (u.records)
        PBLOG_W("shutdown", "%llu accepted records were not delivered within producer.flush_timeout_ms (%d ms); they "
                "stay in spool.dir '%s' and are sent at the next start", (unsigned long long)u.records,
                s->cfg->flush_timeout_ms, s->cfg->spool_dir);
    if (held)
        PBLOG_E("shutdown", "%lu records read from writers could not be spooled (spool full) and were not accepted", held);
    PBLOG_I("shutdown", "stopped: received %llu, rejected %llu, accepted %llu, delivered %llu, failed %llu",
            (unsigned long long)s->stats.received, (unsigned long long)s->stats.rejected,
            (unsigned long long)s->stats.accepted, (unsigned long long)s->stats.delivered,
            (unsigned long long)s->stats.failed);
}

int pbd_server_run(pbd_server_t *s) {
    PBLOG_I("start", "listening on %s (mode %04o), publishing to topic '%s' at %s", s->cfg->socket_path,
            s->cfg->socket_mode, s->cfg->topic, s->cfg->bootstrap_servers);
    struct epoll_event ev[64];
    pbm_heartbeat(s->metrics, pbclock_mono_ms());
    while (!s->stopping) {
        int n = epoll_wait(s->epfd, ev, 64, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            PBLOG_E("epoll", "epoll_wait: %s", strerror(errno));
            return 1;
        }
        pbm_heartbeat(s->metrics, pbclock_mono_ms());
        int producer_ready = 0;
        for (int i = 0; i < n && !s->stopping; i++) {
            void *tag = ev[i].data.ptr;
            if (tag == &tag_listen) {
                on_accept(s);
            } else if (tag == &tag_producer) {
                producer_ready = 1;
            } else if (tag == &tag_timer) {
                on_tick(s);
            } else if (tag == &tag_spool) {
                pbsp_serve(s->spool);
                s->acks_waiting = 1;
            } else if (tag == &tag_signal) {
                struct signalfd_siginfo si;
                while (read(s->signal_fd, &si, sizeof si) == (ssize_t)sizeof si) {
                    if (si.ssi_signo == SIGHUP) {
                        PBLOG_I("signal", "SIGHUP received: reloading the TLS material");
                        (void)pbd_producer_reload(s->producer, "SIGHUP"); /* logs and counts the outcome */
                    } else {
                        PBLOG_I("signal", "%s received", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                        s->stopping = 1;
                    }
                }
            } else {
                conn_t *c = tag;
                if (ev[i].events & (EPOLLHUP | EPOLLERR)) conn_hangup(s, c);
                else if (ev[i].events & EPOLLIN) conn_readable(s, c);
                conn_settle(s, c);
                if (s->paused) pause_all(s);
            }
        }
        if (producer_ready || s->paused) serve_producer(s);
        spool_commit(s);
        settle_waiting(s);
    }
    shutdown_drain(s);
    return 0;
}

const pbd_stats_t *pbd_server_stats(const pbd_server_t *s) {
    return &s->stats;
}

pbm_metrics_t *pbd_server_metrics(pbd_server_t *s) {
    return s->metrics;
}

void pbd_server_free(pbd_server_t *s) {
    if (!s) return;
    pbd_http_stop(s->http);
    while (s->conns) conn_close(s, s->conns, "shutdown");
    /* Purged records report through on_delivery, which frees orphaned replies; they stay spooled. */
    pbd_producer_free(s->producer);
    while (s->unsent_head) reply_free(unsent_pop(s, s->unsent_head->spool_seq));
    pbsp_close(s->spool);
    if (s->listener.fd >= 0) {
        close(s->listener.fd);
        pbd_listener_unlink(&s->listener);
    }
    if (s->signal_fd >= 0) close(s->signal_fd);
    if (s->timer_fd >= 0) close(s->timer_fd);
    if (s->epfd >= 0) close(s->epfd);
    pbm_free(s->metrics); /* after the producer: purged records still report */
    free(s);
}
