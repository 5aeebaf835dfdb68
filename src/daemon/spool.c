/* spool.c: the on-disk spool: segment files of checksummed records, recovery, group commit (see
 * spool.h for the format and what each fsync policy guarantees). */
#include "spool.h"

#include "common/clock.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SEG_MAGIC "PBSPOOL" /* followed by the format version, one character */
#define SEG_VERSION '2'
#define SEG_HDR 28u /* magic and version, segment number, delivery mark, CRC-32C of those 24 bytes */
#define MARK_EVERY 1024 /* the delivery mark is written after this many more deliveries */
#define REC_MAGIC "PBR1"
#define REC_HDR 12u                        /* magic, body length, CRC */
#define BODY_FIXED 27u                     /* seq, timestamp, id/model/key/value lengths */
#define MAX_BODY (64u * 1024 * 1024)       /* far above message.max_bytes: anything larger is damage */
#define WBUF_FLUSH (256u * 1024)           /* the write buffer is written once it holds this much */
#define RBUF_MIN (256u * 1024)
#define MIN_SEGMENT 4096u
#define SPARE "spare.pbs" /* a delivered segment kept to be written over as the next one */

typedef struct seg {
    struct seg *next;
    uint64_t no;
    int fd;
    uint64_t size; /* logical: bytes in the file plus, for the active segment, those buffered */
    uint64_t live; /* records not yet delivered */
    /* Delivery state by seq: records first_seq .. first_seq + n_seq - 1 are in this segment; a set
     * bit in done means delivered (or gone). mark: every seq below it is delivered; it is written
     * into the header (mark_saved) so a restart does not replay those. */
    uint64_t first_seq, n_seq, mark, mark_saved;
    uint64_t *done;
    size_t done_words;
} seg_t;

/* The interval policy's group commit: fdatasync on its own thread so the loop does not wait for the
 * disk, also when a segment is closed: the closed one is handed over (old_fd) and made durable first. */
typedef struct syncer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, stop, busy;
    int busy_fd;           /* while busy: the descriptor being synced (the loop does not close it) */
    int fd;                /* the active segment (the loop's descriptor) */
    uint64_t fd_no;        /* its number */
    uint64_t want, done;   /* seqs: written to fd / made durable */
    int failed;            /* errno of a failed sync: no more syncs until the loop seals */
    uint64_t failed_no;    /* the segment whose sync failed */
    int old_fd;            /* a closed segment not yet durable (the syncer's own descriptor), or -1 */
    uint64_t old_last;     /* the seq of its last record */
    uint64_t old_no;       /* its number */
    int dir_fd, dir_dirty; /* dir_dirty: a segment was created since the directory was last synced */
    int interval_ms;
    int event_fd;
} syncer_t;

struct pbsp {
    pbsp_options_t o;
    char *dir;
    int dir_fd, lock_fd, failed_fd;
    int spare_fd; /* SPARE, or -1 */
    seg_t *head, *tail; /* oldest first; tail is the active segment */
    uint64_t next_no, next_seq;
    uint64_t bytes, records, unsent, set_aside, sync_failures;
    /* Bytes of the active segment not yet in the file: [tail_written, tail->size). */
    char *wbuf;
    size_t wlen, wcap;
    uint64_t tail_written;
    uint64_t buffered_seq, written_seq; /* last seq appended / in the file */
    int nospace;     /* appends refused: the disk is full */
    int space_event; /* the disk was full; logged once writing works again */
    int size_full;   /* an append was refused by max_bytes; cleared when space is freed */
    time_t space_logged;
    /* The next record to hand to the producer (at cur_off, with a seq of at least cur_seq), and the
     * length and seq of the one at the head once known. */
    seg_t *cur;
    uint64_t cur_off, cur_seq, head_len, head_seq;
    /* Read-back cache over one segment. */
    char *rbuf;
    size_t rcap, rlen;
    const seg_t *rseg;
    uint64_t roff;
    char peek_id[256];      /* NUL-terminated copies for the record pbsp_peek returned */
    char peek_model[65536];
    uint64_t durable;
    syncer_t sync;
    /* An fdatasync of the active segment failed: it is sealed (appends go to a new one) and the records
     * fail_lo..fail_hi are reported by pbsp_take_failed, never as durable. */
    int sealed;
    uint64_t fail_lo, fail_hi;
    char fail_why[160];
    int sync_nospace; /* nospace came from fdatasync: only a synced probe shows the space is back */
};

/* ---- CRC-32C (Castagnoli), with the SSE4.2 instruction when the CPU has it ---- */

static uint32_t crc_table[256];
static int crc_hw;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t crc_update_hw(uint32_t c, const unsigned char *p, size_t n) {
    uint64_t c64 = c;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
    }
    c = (uint32_t)c64;
    for (; n; n--) c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#endif

static uint32_t crc_update(uint32_t c, const void *data, size_t n) {
    const unsigned char *p = data;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (crc_hw) return crc_update_hw(c, p, n);
#endif
    for (; n; n--) c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* ---- encoding ---- */

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint64_t get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* A record parsed in place. */
typedef struct view {
    uint64_t seq;
    int64_t timestamp_ms;
    const char *id, *model, *key, *value;
    size_t id_len, model_len, key_len, value_len;
    uint64_t total; /* header and body */
} view_t;

/* Parses the record at p (avail bytes there). Returns 1 if valid, 0 if not a valid record, -1 if
 * it may be valid but is cut short by avail. */
static int parse_record(const unsigned char *p, uint64_t avail, view_t *v) {
    if (avail < REC_HDR) return -1;
    if (memcmp(p, REC_MAGIC, 4) != 0) return 0;
    uint32_t body_len = get32(p + 4);
    if (body_len < BODY_FIXED || body_len > MAX_BODY) return 0;
    if (avail < REC_HDR + (uint64_t)body_len) return -1;
    const unsigned char *b = p + REC_HDR;
    if (crc_update(0xFFFFFFFFu, b, body_len) != get32(p + 8)) return 0;
    v->seq = get64(b);
    v->timestamp_ms = (int64_t)get64(b + 8);
    v->id_len = b[16];
    v->model_len = (size_t)b[17] | (size_t)b[18] << 8;
    v->key_len = get32(b + 19);
    v->value_len = get32(b + 23);
    if ((uint64_t)BODY_FIXED + v->id_len + v->model_len + v->key_len + v->value_len != body_len) return 0;
    v->id = (const char *)b + BODY_FIXED;
    v->model = v->id + v->id_len;
    v->key = v->model + v->model_len;
    v->value = v->key + v->key_len;
    v->total = REC_HDR + (uint64_t)body_len;
    return 1;
}

/* ---- files ---- */

/* A segment's header. Checksummed: a damaged mark could make undelivered records look delivered. */
static void seg_header(unsigned char *h, uint64_t no, uint64_t mark) {
    memcpy(h, SEG_MAGIC, 7);
    h[7] = SEG_VERSION;
    put64(h + 8, no);
    put64(h + 16, mark);
    put32(h + 24, crc_update(0xFFFFFFFFu, h, 24));
}

static void seg_name(char *out, size_t size, uint64_t no) {
    snprintf(out, size, "seg-%020" PRIu64 ".pbs", no);
}

static int write_all_at(int fd, const void *data, size_t len, uint64_t off) {
    const char *p = data;
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Copies damaged bytes into corrupt/ (for inspection) before they are cut out of a segment. */
static void move_aside(pbsp_t *sp, const seg_t *s, uint64_t off, const void *data, size_t len, const char *what) {
    char name[128];
    (void)mkdirat(sp->dir_fd, "corrupt", 0700);
    snprintf(name, sizeof name, "corrupt/seg-%020" PRIu64 "-at-%" PRIu64 ".%s", s->no, off, what);
    int fd = openat(sp->dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write_all_at(fd, data, len, 0) != 0) {
        PBLOG_E("spool.corrupt", "cannot save %zu damaged bytes to %s/%s: %s", len, sp->dir, name, strerror(errno));
    }
    if (fd >= 0) close(fd);
}

static int mkdir_p(const char *path) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return errno = ENAMETOOLONG, -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
    return 0;
}

static void space_recovered(pbsp_t *sp) {
    /* A full disk that fdatasync found is over only when a synced probe says so (pbsp_tick): a
     * write that lands in the page cache meanwhile proves nothing. */
    if (!sp->space_event || sp->sync_nospace) return;
    sp->space_event = 0;
    time_t now = time(NULL);
    if (now - sp->space_logged < 10) return; /* a disk at its limit comes and goes: not every time */
    sp->space_logged = now;
    PBLOG_I("spool.space", "spool.dir '%s': writing again after the disk was full", sp->dir);
}

/* Drops the spare segment: its space is wanted back (the disk is full), or the spool closes. */
static void spare_drop(pbsp_t *sp) {
    if (sp->spare_fd < 0) return;
    close(sp->spare_fd);
    sp->spare_fd = -1;
    (void)unlinkat(sp->dir_fd, SPARE, 0);
}

/* The spare segment as segment `name`, its header hdr written, or -1 (no spare, or it failed: then
 * it is gone and a new file is created). The header goes first: a spare that was not renamed yet
 * is deleted at the next start, whatever it holds. Its old records stay beyond where the new ones
 * end, and recovery tells them apart (recover_segment). Writing over a file's cached pages is
 * cheaper than filling new ones (dd of 64-100 MB on the 2-vCPU test machine: 10-13 GB/s over a
 * cached file, 0.3-2.8 GB/s into a new one). */
static int spare_take(pbsp_t *sp, const char *name, const unsigned char *hdr) {
    int fd = sp->spare_fd;
    if (fd < 0) return -1;
    sp->spare_fd = -1;
    if (write_all_at(fd, hdr, SEG_HDR, 0) != 0 ||
        renameat2(sp->dir_fd, SPARE, sp->dir_fd, name, RENAME_NOREPLACE) != 0) {
        close(fd);
        (void)unlinkat(sp->dir_fd, SPARE, 0);
        return -1;
    }
    return fd;
}

static seg_t *seg_create(pbsp_t *sp, char *errstr, size_t errstr_size) {
    char name[64];
    unsigned char hdr[SEG_HDR];
    seg_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    s->no = sp->next_no++;
    seg_name(name, sizeof name, s->no);
    seg_header(hdr, s->no, sp->next_seq);
    s->first_seq = s->mark = s->mark_saved = sp->next_seq;
    s->fd = spare_take(sp, name, hdr);
    int reused = s->fd >= 0;
    if (!reused && ((s->fd = openat(sp->dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0 ||
                      write_all_at(s->fd, hdr, SEG_HDR, 0) != 0)) {
        snprintf(errstr, errstr_size, "spool.dir '%s': cannot create %s: %s", sp->dir, name, strerror(errno));
        if (errno == ENOSPC || errno == EDQUOT) sp->nospace = sp->space_event = 1;
        if (s->fd >= 0) {
            close(s->fd);
            unlinkat(sp->dir_fd, name, 0);
        }
        free(s);
        sp->next_no--;
        return NULL;
    }
    space_recovered(sp);
    /* Reserves the segment's blocks now (beyond the end of the file, which stays as written):
     * appending into reserved blocks is cheaper than into new ones (ext4: 64 MB written in 256 KiB
     * pieces, 1.5-3.0 GB/s into a new file, 7.2-7.3 into a reserved one). Best effort: a file system
     * without it, or a disk without the room, still takes the appends (or reports them full). A
     * reused spare had its blocks reserved when it was created. */
    if (!reused) (void)fallocate(s->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)sp->o.segment_bytes);
    /* The new name must survive a power failure for the records in it to: the syncer makes it
     * durable before the first sync of the segment (interval), or it is done here. */
    if (sp->sync.started) {
        pthread_mutex_lock(&sp->sync.mu);
        sp->sync.dir_dirty = 1;
        pthread_mutex_unlock(&sp->sync.mu);
    } else if (sp->o.fsync != PBSP_FSYNC_NEVER) {
        (void)fsync(sp->dir_fd);
    }
    s->size = SEG_HDR;
    sp->bytes += SEG_HDR;
    if (sp->tail) sp->tail->next = s;
    else sp->head = s;
    sp->tail = s;
    sp->tail_written = SEG_HDR;
    return s;
}

/* Puts the read cursor at the start of s (NULL: nowhere). */
static void cur_start(pbsp_t *sp, seg_t *s) {
    sp->cur = s;
    sp->cur_off = SEG_HDR;
    sp->cur_seq = s ? s->first_seq : 0;
}

/* Deletes s, whose records are all delivered; one of at least half a segment's size is kept as the
 * spare instead if there is none (and the disk is not full). */
static void seg_delete(pbsp_t *sp, seg_t *s) {
    char name[64];
    seg_name(name, sizeof name, s->no);
    int spare = sp->spare_fd < 0 && !sp->nospace && s->size >= sp->o.segment_bytes / 2 &&
                renameat2(sp->dir_fd, name, sp->dir_fd, SPARE, RENAME_NOREPLACE) == 0;
    if (!spare && unlinkat(sp->dir_fd, name, 0) != 0)
        PBLOG_E("spool.delete", "cannot delete %s/%s: %s (its records are delivered; it will be replayed at the next start)",
                sp->dir, name, strerror(errno));
    if (sp->sync.started) { /* a segment closed a moment ago may still be in the syncer's hands */
        pthread_mutex_lock(&sp->sync.mu);
        while (sp->sync.busy && sp->sync.busy_fd == s->fd) pthread_cond_wait(&sp->sync.cv, &sp->sync.mu);
        pthread_mutex_unlock(&sp->sync.mu);
    }
    if (spare) sp->spare_fd = s->fd;
    else close(s->fd);
    seg_t **pp = &sp->head;
    while (*pp != s) pp = &(*pp)->next;
    *pp = s->next;
    if (sp->cur == s) cur_start(sp, s->next);
    if (sp->rseg == s) sp->rseg = NULL;
    sp->bytes -= s->size;
    sp->size_full = 0;
    free(s->done);
    free(s);
}

/* ---- delivery state ---- */

static int done_get(const seg_t *s, uint64_t seq) {
    uint64_t i = seq - s->first_seq;
    return (s->done[i / 64] >> (i % 64)) & 1u;
}

static void done_set(seg_t *s, uint64_t seq) {
    uint64_t i = seq - s->first_seq;
    s->done[i / 64] |= (uint64_t)1 << (i % 64);
}

/* Room for one more seq in s. Returns -1 without memory. */
static int done_grow(seg_t *s) {
    if ((s->n_seq + 1 + 63) / 64 <= s->done_words) return 0;
    size_t words = s->done_words ? s->done_words * 2 : 64;
    uint64_t *d = realloc(s->done, words * sizeof *d);
    if (!d) return -1;
    memset(d + s->done_words, 0, (words - s->done_words) * sizeof *d);
    s->done = d;
    s->done_words = words;
    return 0;
}

/* Writes s's mark: the whole header, so that its checksum matches. */
static void mark_save(pbsp_t *sp, seg_t *s) {
    unsigned char h[SEG_HDR];
    seg_header(h, s->no, s->mark);
    if (write_all_at(s->fd, h, SEG_HDR, 0) == 0) s->mark_saved = s->mark;
    (void)sp;
}

static seg_t *seg_of(const pbsp_t *sp, uint64_t seq) {
    for (seg_t *s = sp->head; s; s = s->next)
        if (seq >= s->first_seq && seq - s->first_seq < s->n_seq) return s;
    return NULL;
}

/* Records seq as gone from s (delivered, or lost to damage). Returns 0 if it already was. */
static int seg_drop(pbsp_t *sp, seg_t *s, uint64_t seq) {
    if (done_get(s, seq)) return 0;
    done_set(s, seq);
    if (s->live) s->live--, sp->records--;
    return 1;
}

/* After seg_drop: moves s's delivery mark on, and deletes s once nothing in it is left to deliver.
 * Returns 1 if s was deleted. */
static int seg_settle(pbsp_t *sp, seg_t *s) {
    while (s->mark - s->first_seq < s->n_seq && done_get(s, s->mark)) s->mark++;
    if (s->live == 0 && s != sp->tail) {
        seg_delete(sp, s);
        return 1;
    }
    if (s->mark - s->mark_saved >= MARK_EVERY) mark_save(sp, s);
    return 0;
}

/* ---- group commit ---- */

/* With y->mu held (released meanwhile): makes segment seg_no (descriptor fd; closed: the syncer's
 * own, closed here) durable up to target, after the directory if a segment was created since it was
 * last synced: a new segment's name must survive a power failure for the records in it to. Then
 * tells the loop. After a failure a retry would succeed without writing the pages that failed (Linux
 * reports a writeback error once): the loop seals the active segment first (pbsp_serve). */
static void syncer_sync(syncer_t *y, int fd, uint64_t target, uint64_t seg_no, int closed) {
    int dir = y->dir_dirty;
    y->dir_dirty = 0;
    y->busy = 1;
    y->busy_fd = fd;
    pthread_mutex_unlock(&y->mu);
    int r = dir ? fsync(y->dir_fd) : 0;
    if (r == 0) r = fdatasync(fd);
    int e = errno;
    if (closed) close(fd);
    pthread_mutex_lock(&y->mu);
    y->busy = 0;
    if (closed) y->old_fd = -1;
    if (r != 0) {
        y->failed = e;
        y->failed_no = seg_no;
        y->dir_dirty |= dir;
    } else if (target > y->done) {
        y->done = target;
    }
    pthread_cond_broadcast(&y->cv);
    uint64_t one = 1;
    (void)!write(y->event_fd, &one, sizeof one);
}

static void *syncer_main(void *arg) {
    syncer_t *y = arg;
    int64_t last = 0;
    pthread_mutex_lock(&y->mu);
    while (!y->stop) {
        /* busy here: the loop syncs a closed segment itself (hand_over, no descriptor to spare). */
        if (y->failed || y->busy || (y->want <= y->done && y->old_fd < 0)) {
            pthread_cond_wait(&y->cv, &y->mu);
            continue;
        }
        if (y->old_fd >= 0) { /* a closed segment: due now, and before anything in the active one */
            syncer_sync(y, y->old_fd, y->old_last, y->old_no, 1);
            continue;
        }
        int64_t now = pbclock_mono_ms();
        if (now < last + y->interval_ms) {
            int64_t wake = last + y->interval_ms;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += (time_t)((wake - now) / 1000);
            ts.tv_nsec += (long)((wake - now) % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&y->cv, &y->mu, &ts);
            continue;
        }
        syncer_sync(y, y->fd, y->want, y->fd_no, 0);
        last = pbclock_mono_ms();
    }
    pthread_mutex_unlock(&y->mu);
    return NULL;
}

/* Writes the buffer into the active segment. Returns 0, or -1 (nospace set on ENOSPC/EDQUOT). */
static int flush_wbuf(pbsp_t *sp, char *errstr, size_t errstr_size) {
    size_t off = 0;
    while (off < sp->wlen) {
        ssize_t n = pwrite(sp->tail->fd, sp->wbuf + off, sp->wlen - off, (off_t)sp->tail_written);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            memmove(sp->wbuf, sp->wbuf + off, sp->wlen - off);
            sp->wlen -= off;
            char name[64];
            seg_name(name, sizeof name, sp->tail->no);
            snprintf(errstr, errstr_size, "spool.dir '%s': cannot write %s: %s", sp->dir, name, strerror(e));
            if (e == ENOSPC || e == EDQUOT) sp->nospace = sp->space_event = 1;
            errno = e;
            return -1;
        }
        off += (size_t)n;
        sp->tail_written += (uint64_t)n;
    }
    if (sp->wlen) space_recovered(sp);
    sp->wlen = 0;
    sp->nospace = sp->sync_nospace; /* a full disk that fdatasync found: pbsp_tick probes for space */
    sp->written_seq = sp->buffered_seq;
    return 0;
}

/* A sync of segment seg_no (the active one, or with interval one just closed) failed with err. Linux
 * reports a writeback error once and marks the pages that failed clean: a retry succeeds without
 * writing them, and what they held may already be gone from memory. So no record written to this
 * segment since its last successful sync may ever be called durable: they are reported failed
 * (pbsp_take_failed; their writers send them again) and the segment is sealed: appends go to a new
 * one, whose syncs mean something again. */
static void sync_failed(pbsp_t *sp, int err, uint64_t seg_no) {
    sp->sync_failures++;
    char name[64];
    seg_name(name, sizeof name, seg_no);
    sp->sealed = 1;
    if (err == ENOSPC || err == EDQUOT) sp->nospace = sp->space_event = sp->sync_nospace = 1;
    if (sp->buffered_seq <= sp->durable) return; /* nothing was waiting for this sync */
    if (!sp->fail_lo) sp->fail_lo = sp->durable + 1;
    sp->fail_hi = sp->buffered_seq;
    snprintf(sp->fail_why, sizeof sp->fail_why, "spool_fsync: fdatasync of %s failed: %s; not durable, send it again",
             name, strerror(err));
    PBLOG_E("spool.fsync", "spool.dir '%s': fdatasync of %s failed: %s; records %" PRIu64 "..%" PRIu64 " in it are not "
            "durable and are answered failed (writers send them again); appends go to a new segment", sp->dir, name,
            strerror(err), sp->fail_lo, sp->fail_hi);
}

/* Interval policy, closing the active segment old: hands it to the syncer, which makes it durable
 * before anything in the next one, so the loop does not wait for the disk (only while the segment
 * closed before is still being synced). Returns 1 if handed over. Otherwise 0, with *err the errno of
 * a sync that failed (to report, for segment *err_no), or 0 after syncing old here (no descriptor to
 * spare). What the syncer made durable counts first: a failure reports only what came after it. */
static int hand_over(pbsp_t *sp, seg_t *old, int *err, uint64_t *err_no) {
    syncer_t *y = &sp->sync;
    int handed = 0;
    pthread_mutex_lock(&y->mu);
    while (y->old_fd >= 0 && !y->failed) pthread_cond_wait(&y->cv, &y->mu);
    int fd = y->failed ? -1 : fcntl(old->fd, F_DUPFD_CLOEXEC, 0);
    if (fd >= 0) {
        y->old_fd = fd;
        y->old_last = sp->written_seq;
        y->old_no = old->no;
        if (y->want < sp->written_seq) y->want = sp->written_seq;
        pthread_cond_signal(&y->cv);
        handed = 1;
    } else if (!y->failed) {
        while (y->busy) pthread_cond_wait(&y->cv, &y->mu);
        if (!y->failed) syncer_sync(y, old->fd, sp->written_seq, old->no, 0);
    }
    if (y->done > sp->durable) sp->durable = y->done;
    *err = handed ? 0 : y->failed;
    *err_no = y->failed_no;
    pthread_mutex_unlock(&y->mu);
    return handed;
}

/* Closes the active segment for appends: its bytes are written and made durable (interval: by the
 * syncer, later; if that fails or failed before, reported failed), and a new one starts. */
static int rotate(pbsp_t *sp, char *errstr, size_t errstr_size) {
    if (flush_wbuf(sp, errstr, errstr_size) != 0) return -1;
    seg_t *old = sp->tail;
    int interval = sp->o.fsync == PBSP_FSYNC_INTERVAL, handed = 0;
    if (sp->o.fsync != PBSP_FSYNC_NEVER && !sp->sealed) {
        int err = 0;
        uint64_t err_no = old->no;
        if (interval) handed = hand_over(sp, old, &err, &err_no);
        else if (fdatasync(old->fd) != 0) err = errno;
        if (err) sync_failed(sp, err, err_no);
    }
    if (!seg_create(sp, errstr, errstr_size)) {
        /* Handed over: old stays the active segment and the syncer makes it durable all the same. */
        return -1;
    }
    sp->sealed = 0;
    /* Unless handed over, every record in the old segment is durable now, or reported failed. */
    if (!handed) sp->durable = sp->written_seq;
    if (interval) {
        pthread_mutex_lock(&sp->sync.mu);
        sp->sync.fd = sp->tail->fd;
        sp->sync.fd_no = sp->tail->no;
        if (!handed) {
            if (sp->sync.old_fd >= 0) close(sp->sync.old_fd);
            sp->sync.old_fd = -1;
            sp->sync.failed = 0;
            sp->sync.want = sp->sync.done = sp->written_seq;
        }
        pthread_mutex_unlock(&sp->sync.mu);
    }
    /* A cursor at the very end of the old segment moves on; a fully delivered one goes. */
    if (sp->cur == old && sp->cur_off >= old->size) cur_start(sp, sp->tail);
    if (old->live == 0) seg_delete(sp, old);
    return 0;
}

/* After sync_failed: appends move to a new segment now, or (if that fails) at the next append or tick. */
static void seal(pbsp_t *sp) {
    char e[256];
    if (rotate(sp, e, sizeof e) != 0 && !sp->nospace) PBLOG_E("spool.write", "%s; retried at the next append", e);
}

/* Makes everything written durable per the policy (after flush_wbuf). */
static void make_durable(pbsp_t *sp) {
    switch (sp->o.fsync) {
    case PBSP_FSYNC_NEVER:
        sp->durable = sp->written_seq;
        break;
    case PBSP_FSYNC_ALWAYS:
        if (!sp->sealed && sp->durable < sp->written_seq) {
            if (fdatasync(sp->tail->fd) == 0) {
                sp->durable = sp->written_seq;
            } else {
                sync_failed(sp, errno, sp->tail->no);
                seal(sp);
            }
        }
        break;
    case PBSP_FSYNC_INTERVAL:
        pthread_mutex_lock(&sp->sync.mu);
        if (sp->sync.want < sp->written_seq && !sp->sealed) {
            /* Wake the syncer only from its idle wait. Waiting out the interval, or in fdatasync, it
             * sees the new target when it looks next; a signal per append (10,000 a second when
             * writers send lines one by one) only woke it to go back to sleep. */
            int idle = sp->sync.want <= sp->sync.done && !sp->sync.busy;
            sp->sync.want = sp->written_seq;
            if (idle) pthread_cond_signal(&sp->sync.cv);
        }
        pthread_mutex_unlock(&sp->sync.mu);
        break;
    }
}

/* ---- appending ---- */

/* A record's ref is its seq, shifted and tagged with a low bit of 1. */
static void *ref_of(uint64_t seq) {
    return (void *)(uintptr_t)(seq << 1 | 1u);
}
uint64_t pbsp_ref_seq(const void *ref) {
    return (uint64_t)(uintptr_t)ref >> 1;
}

pbsp_status_t pbsp_append(pbsp_t *sp, const pbd_record_t *r, pbsp_ticket_t *t, char *errstr, size_t errstr_size) {
    size_t id_len = strlen(r->id), model_len = r->model_version ? strlen(r->model_version) : 0;
    size_t key_len = r->key ? r->key_len : 0;
    if (id_len > 255 || model_len > 65535) {
        snprintf(errstr, errstr_size, "message id or model_version too long for the spool");
        return PBSP_ERROR;
    }
    uint64_t body = BODY_FIXED + id_len + model_len + key_len + r->value_len;
    uint64_t total = REC_HDR + body;
    if (body > MAX_BODY) {
        snprintf(errstr, errstr_size, "record of %" PRIu64 " bytes is too large for the spool", total);
        return PBSP_ERROR;
    }
    if (sp->nospace) return PBSP_FULL;
    if (sp->records > 0 && sp->bytes + total > sp->o.max_bytes) {
        sp->size_full = 1;
        return PBSP_FULL;
    }
    if (sp->sealed || (sp->tail->size > SEG_HDR && sp->tail->size + total > sp->o.segment_bytes)) {
        if (rotate(sp, errstr, errstr_size) != 0) return sp->nospace ? PBSP_FULL : PBSP_ERROR;
    }
    if (done_grow(sp->tail) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return PBSP_ERROR;
    }
    if (sp->wlen + total > sp->wcap) {
        size_t cap = sp->wcap ? sp->wcap : WBUF_FLUSH * 2;
        while (cap < sp->wlen + total) cap *= 2;
        char *n = realloc(sp->wbuf, cap);
        if (!n) {
            snprintf(errstr, errstr_size, "out of memory");
            return PBSP_ERROR;
        }
        sp->wbuf = n;
        sp->wcap = cap;
    }
    unsigned char *p = (unsigned char *)sp->wbuf + sp->wlen, *b = p + REC_HDR;
    uint64_t seq = sp->next_seq++;
    memcpy(p, REC_MAGIC, 4);
    put32(p + 4, (uint32_t)body);
    put64(b, seq);
    put64(b + 8, (uint64_t)r->timestamp_ms);
    b[16] = (unsigned char)id_len;
    b[17] = (unsigned char)model_len;
    b[18] = (unsigned char)(model_len >> 8);
    put32(b + 19, (uint32_t)key_len);
    put32(b + 23, (uint32_t)r->value_len);
    unsigned char *q = b + BODY_FIXED;
    memcpy(q, r->id, id_len), q += id_len;
    if (model_len) memcpy(q, r->model_version, model_len), q += model_len;
    if (key_len) memcpy(q, r->key, key_len), q += key_len;
    memcpy(q, r->value, r->value_len);
    put32(p + 8, crc_update(0xFFFFFFFFu, b, (size_t)body));
    sp->wlen += (size_t)total;
    sp->buffered_seq = seq;

    t->seq = seq;
    t->ref = ref_of(seq);
    t->next_to_send = sp->unsent == 0;
    if (t->next_to_send) {
        sp->cur = sp->tail;
        sp->cur_off = sp->tail->size;
        sp->cur_seq = sp->head_seq = seq;
        sp->head_len = total;
    }
    sp->tail->size += total;
    sp->tail->live++;
    sp->tail->n_seq++;
    sp->bytes += total;
    sp->records++;
    sp->unsent++;
    if (sp->wlen >= WBUF_FLUSH) {
        char e[256];
        if (flush_wbuf(sp, e, sizeof e) != 0 && !sp->nospace) PBLOG_E("spool.write", "%s", e);
    }
    return PBSP_OK;
}

pbsp_status_t pbsp_commit(pbsp_t *sp, char *errstr, size_t errstr_size) {
    if (sp->wlen && flush_wbuf(sp, errstr, errstr_size) != 0) return sp->nospace ? PBSP_FULL : PBSP_ERROR;
    make_durable(sp);
    return PBSP_OK;
}

uint64_t pbsp_durable_seq(const pbsp_t *sp) {
    return sp->fail_lo ? sp->fail_lo - 1 : sp->durable; /* not past failed records until they are taken */
}

int pbsp_take_failed(pbsp_t *sp, uint64_t *lo, uint64_t *hi, char *why, size_t why_size) {
    if (!sp->fail_lo) return 0;
    *lo = sp->fail_lo;
    *hi = sp->fail_hi;
    snprintf(why, why_size, "%s", sp->fail_why);
    sp->fail_lo = sp->fail_hi = 0;
    return 1;
}

int pbsp_event_fd(const pbsp_t *sp) {
    return sp->o.fsync == PBSP_FSYNC_INTERVAL ? sp->sync.event_fd : -1;
}

void pbsp_serve(pbsp_t *sp) {
    if (sp->o.fsync != PBSP_FSYNC_INTERVAL) return;
    uint64_t v;
    while (read(sp->sync.event_fd, &v, sizeof v) > 0) {
    }
    pthread_mutex_lock(&sp->sync.mu);
    if (sp->sync.done > sp->durable) sp->durable = sp->sync.done;
    int err = sp->sync.failed;
    uint64_t err_no = sp->sync.failed_no;
    pthread_mutex_unlock(&sp->sync.mu);
    if (err && !sp->sealed) {
        sync_failed(sp, err, err_no);
        seal(sp);
    }
}

/* ---- reading back ---- */

/* Makes [off, off + need) of s readable at sp->rbuf + (off - sp->roff), reading ahead. Returns the
 * bytes available from off (less than need at the end of what is written), or -1 on error. */
static int64_t read_at(pbsp_t *sp, const seg_t *s, uint64_t off, uint64_t need, uint64_t limit) {
    if (sp->rseg == s && off >= sp->roff && off + need <= sp->roff + sp->rlen) return (int64_t)(sp->roff + sp->rlen - off);
    uint64_t want = need > RBUF_MIN ? need : RBUF_MIN;
    if (want > limit - off) want = limit - off;
    if (want > sp->rcap) {
        char *n = realloc(sp->rbuf, want);
        if (!n) return -1;
        sp->rbuf = n;
        sp->rcap = want;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(s->fd, sp->rbuf + got, want - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        got += (size_t)n;
    }
    sp->rseg = s;
    sp->roff = off;
    sp->rlen = got;
    return (int64_t)got;
}

/* Length of the first stretch at p that does not parse, up to the next valid record (or len). */
static uint64_t damaged_span(const unsigned char *p, uint64_t len) {
    view_t v;
    for (uint64_t i = 1; i + REC_HDR <= len; i++)
        if (p[i] == 'P' && memcmp(p + i, REC_MAGIC, 4) == 0 && parse_record(p + i, len - i, &v) == 1) return i;
    return len;
}

/* 1 if p[0, len) holds a valid record with a seq above max_seq (seqs start at 1: with max_seq 0,
 * any valid record). */
static int continued(const unsigned char *p, uint64_t len, uint64_t max_seq) {
    view_t v;
    for (uint64_t i = 0; i < len;) {
        if (parse_record(p + i, len - i, &v) != 1) i += damaged_span(p + i, len - i);
        else if (v.seq > max_seq) return 1;
        else i += v.total;
    }
    return 0;
}

/* The damaged span p[0, span) at the cursor in s (avail bytes readable at p) was found at run time:
 * every record it covered is lost. They are the seqs from the cursor's up to the record after the span
 * (or the end of what s holds): each is counted out of the spool as if delivered, so the counts stay
 * true and s can still be deleted. Returns 1 if s was deleted (the cursor moved on). */
static int drop_damaged(pbsp_t *sp, seg_t *s, const unsigned char *p, uint64_t span, uint64_t avail) {
    uint64_t lo = sp->cur_seq > s->first_seq ? sp->cur_seq : s->first_seq, end = s->first_seq + s->n_seq;
    view_t v;
    if (span < avail && parse_record(p + span, avail - span, &v) == 1) end = v.seq;
    else if (s == sp->tail) end = sp->written_seq + 1; /* buffered records are not in the file yet */
    if (end > s->first_seq + s->n_seq) end = s->first_seq + s->n_seq;
    uint64_t lost = 0;
    for (uint64_t q = lo; q < end; q++) {
        if (!seg_drop(sp, s, q)) continue;
        lost++;
        if (sp->unsent) sp->unsent--;
    }
    PBLOG_E("spool.corrupt", "spool.dir '%s': segment %" PRIu64 " is damaged at offset %" PRIu64 " (%" PRIu64
            " bytes, moved aside to corrupt/): %" PRIu64 " records lost from the spool (seqs %" PRIu64 "..%" PRIu64 ")",
            sp->dir, s->no, sp->cur_off, span, lost, lo, end - 1);
    if (end > sp->cur_seq) sp->cur_seq = end;
    return seg_settle(sp, s);
}

int pbsp_peek(pbsp_t *sp, pbd_record_t *r, void **ref, uint64_t *seq, char *errstr, size_t errstr_size) {
    for (;;) {
        seg_t *s = sp->cur;
        if (!s || sp->unsent == 0) return 0;
        uint64_t limit = s == sp->tail ? sp->tail_written : s->size;
        if (s == sp->tail && sp->cur_off >= limit && sp->wlen) {
            if (flush_wbuf(sp, errstr, errstr_size) != 0) return sp->nospace ? 0 : -1;
            limit = sp->tail_written;
        }
        if (sp->cur_off >= limit) {
            if (s == sp->tail) return 0;
            cur_start(sp, s->next);
            continue;
        }
        int64_t avail = read_at(sp, s, sp->cur_off, REC_HDR, limit);
        if (avail < 0) goto read_error;
        view_t v;
        int pr = parse_record((unsigned char *)sp->rbuf + (sp->cur_off - sp->roff), (uint64_t)avail, &v);
        if (pr < 0 && avail >= (int64_t)REC_HDR) {
            uint32_t body = get32((unsigned char *)sp->rbuf + (sp->cur_off - sp->roff) + 4);
            avail = read_at(sp, s, sp->cur_off, REC_HDR + (uint64_t)body, limit);
            if (avail < 0) goto read_error;
            pr = parse_record((unsigned char *)sp->rbuf + (sp->cur_off - sp->roff), (uint64_t)avail, &v);
        }
        if (pr < 0 && s == sp->tail) return 0; /* not fully written yet */
        if (pr <= 0) {
            /* Damaged after it was written (recovery checked everything before): set it aside. */
            avail = read_at(sp, s, sp->cur_off, limit - sp->cur_off, limit);
            if (avail < 0) goto read_error;
            const unsigned char *p = (unsigned char *)sp->rbuf + (sp->cur_off - sp->roff);
            uint64_t span = damaged_span(p, (uint64_t)avail);
            move_aside(sp, s, sp->cur_off, p, (size_t)span, "damaged");
            if (drop_damaged(sp, s, p, span, (uint64_t)avail)) continue; /* s was deleted */
            sp->cur_off += span;
            continue;
        }
        if (v.seq >= s->first_seq && v.seq - s->first_seq < s->n_seq && done_get(s, v.seq)) {
            sp->cur_off += v.total; /* delivered before a restart: not sent again */
            sp->cur_seq = v.seq + 1;
            continue;
        }
        r->value = malloc(v.value_len ? v.value_len : 1);
        if (!r->value) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        memcpy(r->value, v.value, v.value_len);
        r->value_len = v.value_len;
        /* id and model_version are followed by other fields on disk: they get terminated copies. */
        memcpy(sp->peek_id, v.id, v.id_len);
        sp->peek_id[v.id_len] = '\0';
        memcpy(sp->peek_model, v.model, v.model_len);
        sp->peek_model[v.model_len] = '\0';
        r->id = sp->peek_id;
        r->model_version = v.model_len ? sp->peek_model : NULL;
        r->key = v.key_len ? v.key : NULL;
        r->key_len = v.key_len;
        r->timestamp_ms = v.timestamp_ms;
        *ref = ref_of(v.seq);
        *seq = v.seq;
        sp->head_len = v.total;
        sp->head_seq = v.seq;
        return 1;
    read_error:
        snprintf(errstr, errstr_size, "spool.dir '%s': cannot read segment %" PRIu64 ": %s", sp->dir, s->no,
                 strerror(errno));
        return -1;
    }
}

void pbsp_advance(pbsp_t *sp) {
    if (!sp->unsent) return;
    sp->cur_off += sp->head_len;
    sp->cur_seq = sp->head_seq + 1;
    sp->head_len = 0;
    sp->unsent--;
    if (sp->cur != sp->tail && sp->cur_off >= sp->cur->size) cur_start(sp, sp->cur->next);
}

/* ---- retiring ---- */

void pbsp_retire(pbsp_t *sp, void *ref) {
    uint64_t seq = pbsp_ref_seq(ref);
    seg_t *s = seg_of(sp, seq);
    if (!s || !seg_drop(sp, s, seq)) return; /* already retired */
    (void)seg_settle(sp, s);
}

int pbsp_set_aside(pbsp_t *sp, void *ref, const void *value, size_t value_len) {
    if (sp->failed_fd < 0) {
        sp->failed_fd = openat(sp->dir_fd, "failed.ndjson", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (sp->failed_fd < 0) {
            PBLOG_E("spool.failed", "cannot open %s/failed.ndjson: %s; the record stays in the spool", sp->dir,
                    strerror(errno));
            return -1;
        }
    }
    struct iovec iov[2] = {{(void *)value, value_len}, {"\n", 1}};
    ssize_t n = writev(sp->failed_fd, iov, 2);
    if (n != (ssize_t)(value_len + 1) || (sp->o.fsync != PBSP_FSYNC_NEVER && fdatasync(sp->failed_fd) != 0)) {
        PBLOG_E("spool.failed", "cannot write %s/failed.ndjson: %s; the record stays in the spool", sp->dir,
                n < 0 ? strerror(errno) : "short write");
        return -1;
    }
    sp->set_aside++;
    pbsp_retire(sp, ref);
    return 0;
}

/* After fdatasync said the disk is full: 1 once a block can be written and synced again. A scratch
 * file, so that no segment's sync is spent (and its error consumed) on the probe. */
static int space_back(pbsp_t *sp) {
    static const char block[4096];
    int fd = openat(sp->dir_fd, "space-probe", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int ok = fd >= 0 && write_all_at(fd, block, sizeof block, 0) == 0 && fdatasync(fd) == 0;
    if (fd >= 0) close(fd);
    (void)unlinkat(sp->dir_fd, "space-probe", 0);
    return ok;
}

void pbsp_tick(pbsp_t *sp) {
    char e[256];
    if (sp->sync_nospace && space_back(sp)) {
        sp->sync_nospace = sp->nospace = 0;
        space_recovered(sp);
    }
    if (sp->sealed) seal(sp);
    if (sp->nospace && !sp->sync_nospace) {
        /* Nothing buffered: the next append finds out (a segment may need creating). */
        if (sp->wlen == 0) sp->nospace = 0;
        else if (flush_wbuf(sp, e, sizeof e) == 0) make_durable(sp);
    }
    for (seg_t *s = sp->head; s; s = s->next)
        if (s->mark > s->mark_saved) mark_save(sp, s);
    seg_t *t = sp->tail;
    if (sp->nospace) spare_drop(sp);
    if (t->live == 0 && t->size > SEG_HDR && sp->wlen == 0 && sp->unsent == 0) {
        /* Everything in the active segment was delivered: start it over instead of growing it,
         * writing over its records (not truncating it: over its cached pages, as with the spare). */
        sp->bytes -= t->size - SEG_HDR;
        sp->size_full = 0;
        t->size = sp->tail_written = SEG_HDR;
        if (sp->rseg == t) sp->rseg = NULL;
        t->first_seq = t->mark = sp->next_seq;
        t->n_seq = 0;
        cur_start(sp, t);
        memset(t->done, 0, t->done_words * sizeof *t->done);
        mark_save(sp, t);
    }
}

int pbsp_full(const pbsp_t *sp) {
    return sp->nospace || sp->size_full;
}

int pbsp_disk_full(const pbsp_t *sp) {
    return sp->nospace;
}

void pbsp_get_usage(const pbsp_t *sp, pbsp_usage_t *u) {
    u->bytes = sp->bytes;
    u->records = sp->records;
    u->unsent = sp->unsent;
    u->set_aside = sp->set_aside;
    u->sync_failures = sp->sync_failures;
}

int pbsp_fsync_parse(const char *name) {
    if (strcmp(name, "always") == 0) return PBSP_FSYNC_ALWAYS;
    if (strcmp(name, "interval") == 0) return PBSP_FSYNC_INTERVAL;
    if (strcmp(name, "never") == 0) return PBSP_FSYNC_NEVER;
    return -1;
}

/* ---- recovery ---- */

/* Reads a whole segment file. Anything short of all of it is an error (errno set; an unexpected end
 * is EIO): what was not read would look like a torn tail, and recovery would cut valid records off. */
static int read_file(int dir_fd, const char *name, unsigned char **out, uint64_t *len) {
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    unsigned char *b = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    int err = b ? 0 : ENOMEM;
    while (!err && got < (size_t)st.st_size) {
        ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) err = n < 0 ? errno : EIO;
        else got += (size_t)n;
    }
    close(fd);
    if (err) {
        free(b);
        errno = err;
        return -1;
    }
    *out = b;
    *len = got;
    return 0;
}

/* Rewrites a segment with only its valid records (after damaged ones were moved aside). */
static int rewrite_segment(pbsp_t *sp, const char *name, const unsigned char *data, const uint64_t *keep_off,
                           const uint64_t *keep_len, size_t n_keep) {
    char tmp[80];
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    int fd = openat(sp->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    uint64_t off = 0;
    int ok = write_all_at(fd, data, SEG_HDR, 0) == 0;
    off = SEG_HDR;
    for (size_t i = 0; ok && i < n_keep; i++) {
        ok = write_all_at(fd, data + keep_off[i], (size_t)keep_len[i], off) == 0;
        off += keep_len[i];
    }
    ok = ok && fsync(fd) == 0;
    close(fd);
    if (!ok || renameat(sp->dir_fd, tmp, sp->dir_fd, name) != 0) {
        unlinkat(sp->dir_fd, tmp, 0);
        return -1;
    }
    (void)fsync(sp->dir_fd);
    return 0;
}

/* Format 1 (before 2026-12-03) had the same records after a 24-byte header without a checksum
 * ("PBSPOOL1", number, mark). Rewrites such a segment as format 2 (a new file renamed over it), so
 * that an upgrade replays what the older daemon left undelivered. *data and *len then describe the
 * new contents. */
#define SEG_HDR_V1 24u
static int upgrade_v1(pbsp_t *sp, const char *name, unsigned char **data, uint64_t *len) {
    uint64_t body = *len - SEG_HDR_V1, size = SEG_HDR + body;
    unsigned char *b = malloc(size);
    if (!b) return -1;
    seg_header(b, get64(*data + 8), get64(*data + 16));
    memcpy(b + SEG_HDR, *data + SEG_HDR_V1, body);
    uint64_t off = SEG_HDR;
    if (rewrite_segment(sp, name, b, &off, &body, body ? 1 : 0) != 0) {
        free(b);
        return -1;
    }
    PBLOG_I("spool.upgrade", "spool.dir '%s': %s rewritten from spool format 1 to 2", sp->dir, name);
    free(*data);
    *data = b;
    *len = size;
    return 0;
}

/* Recovers one segment file: counts its records, cuts a torn tail, moves damaged records aside. */
static int recover_segment(pbsp_t *sp, uint64_t no, pbsp_recovery_t *rec, char *errstr, size_t errstr_size) {
    char name[64];
    seg_name(name, sizeof name, no);
    unsigned char *data;
    uint64_t len;
    if (read_file(sp->dir_fd, name, &data, &len) != 0) {
        snprintf(errstr, errstr_size, "spool.dir '%s': cannot read %s: %s", sp->dir, name, strerror(errno));
        return -1;
    }
    seg_t tmp_seg = {.no = no};
    if (len >= SEG_HDR_V1 && memcmp(data, SEG_MAGIC, 7) == 0 && data[7] == '1' && upgrade_v1(sp, name, &data, &len)) {
        snprintf(errstr, errstr_size, "spool.dir '%s': cannot rewrite %s from spool format 1 to 2: %s", sp->dir, name,
                 strerror(errno));
        free(data);
        return -1;
    }
    if (len >= SEG_HDR && memcmp(data, SEG_MAGIC, 7) == 0 && data[7] != SEG_VERSION) {
        snprintf(errstr, errstr_size, "spool.dir '%s': %s is in spool format version '%c'; this predbridged reads version "
                 "'%c' only (drain that spool with the version that wrote it, or move it away)", sp->dir, name,
                 data[7] >= 0x20 && data[7] < 0x7F ? data[7] : '?', SEG_VERSION);
        free(data);
        return -1;
    }
    /* A header that fails its checksum is damage to the mark (or the number, which the name gives):
     * the mark is not trusted, every record is replayed, and the header is written again. */
    int hdr_damaged = len >= SEG_HDR && crc_update(0xFFFFFFFFu, data, 24) != get32(data + 24);
    if (len < SEG_HDR || memcmp(data, SEG_MAGIC, 7) != 0 || (!hdr_damaged && get64(data + 8) != no)) {
        if (len > 0) {
            PBLOG_E("spool.corrupt", "spool.dir '%s': %s is not a spool segment (bad header); moved aside to corrupt/",
                    sp->dir, name);
            move_aside(sp, &tmp_seg, 0, data, (size_t)len, "segment");
        }
        unlinkat(sp->dir_fd, name, 0); /* an empty one is a segment whose creation was cut short */
        free(data);
        return 0;
    }
    uint64_t *keep_off = NULL, *keep_len = NULL, n_keep = 0, cap = 0, max_seq = 0, min_seq = UINT64_MAX;
    uint64_t pos = SEG_HDR, live = 0, mark = hdr_damaged ? 0 : get64(data + 16);
    int damaged = 0;
    if (hdr_damaged)
        PBLOG_E("spool.corrupt", "spool.dir '%s': %s has a damaged header (failed checksum): its delivery mark is not "
                "trusted, every record in it is replayed", sp->dir, name);
    while (pos < len) {
        view_t v;
        int pr = parse_record(data + pos, len - pos, &v);
        int behind = pr == 1 && n_keep && v.seq <= max_seq; /* a valid record whose seq does not grow */
        if ((pr != 1 || behind) && !continued(data + pos, len - pos, n_keep ? max_seq : 0)) {
            /* Nothing after this continues the segment's records. Records of a spare segment's earlier
             * use (or of the active one's before it started over) lie beyond where its new ones end:
             * left alone, never replayed. Without such records, what is left is a torn write. */
            if (continued(data + pos, len - pos, 0)) {
                len = pos;
                break;
            }
        } else if (behind) {
            /* Sequence numbers only grow within a segment: an old copy of a record is damage too. */
            PBLOG_E("spool.corrupt", "spool.dir '%s': %s repeats record %" PRIu64 " at offset %" PRIu64
                    "; moved aside to corrupt/", sp->dir, name, v.seq, pos);
            move_aside(sp, &tmp_seg, pos, data + pos, (size_t)v.total, "repeated");
            rec->corrupt++;
            damaged = 1;
            pos += v.total;
            continue;
        }
        if (pr == 1) {
            if (n_keep == cap) {
                cap = cap ? cap * 2 : 1024;
                uint64_t *a = realloc(keep_off, cap * sizeof *a), *b2 = a ? realloc(keep_len, cap * sizeof *b2) : NULL;
                if (a) keep_off = a;
                if (!a || !b2) {
                    free(data), free(keep_off);
                    snprintf(errstr, errstr_size, "out of memory");
                    return -1;
                }
                keep_len = b2;
            }
            keep_off[n_keep] = pos;
            keep_len[n_keep++] = v.total;
            if (v.seq > max_seq) max_seq = v.seq;
            if (v.seq < min_seq) min_seq = v.seq;
            live += v.seq >= mark; /* below the mark: delivered before the restart */
            pos += v.total;
            continue;
        }
        uint64_t span = damaged_span(data + pos, len - pos);
        if (pos + span >= len) { /* nothing valid follows: a write that never completed */
            PBLOG_W("spool.torn", "spool.dir '%s': %s ends with %" PRIu64 " bytes of an incomplete record; cut off "
                    "(saved in corrupt/)", sp->dir, name, len - pos);
            move_aside(sp, &tmp_seg, pos, data + pos, (size_t)(len - pos), "torn");
            rec->torn_bytes += len - pos;
            if (!damaged) {
                int fd = openat(sp->dir_fd, name, O_WRONLY | O_CLOEXEC);
                if (fd < 0 || ftruncate(fd, (off_t)pos) != 0 || fsync(fd) != 0) {
                    snprintf(errstr, errstr_size, "spool.dir '%s': cannot truncate %s: %s", sp->dir, name, strerror(errno));
                    if (fd >= 0) close(fd);
                    free(data), free(keep_off), free(keep_len);
                    return -1;
                }
                close(fd);
            }
            len = pos;
            break;
        }
        PBLOG_E("spool.corrupt", "spool.dir '%s': %s has %" PRIu64 " damaged bytes at offset %" PRIu64
                " (failed checksum); moved aside to corrupt/, replay continues after them", sp->dir, name, span, pos);
        move_aside(sp, &tmp_seg, pos, data + pos, (size_t)span, "damaged");
        rec->corrupt++;
        damaged = 1;
        pos += span;
    }
    if (damaged && rewrite_segment(sp, name, data, keep_off, keep_len, (size_t)n_keep) != 0) {
        snprintf(errstr, errstr_size, "spool.dir '%s': cannot rewrite %s without its damaged records: %s", sp->dir,
                 name, strerror(errno));
        free(data), free(keep_off), free(keep_len);
        return -1;
    }
    uint64_t size = SEG_HDR;
    for (uint64_t i = 0; i < n_keep; i++) size += keep_len[i];
    if (max_seq >= sp->next_seq) sp->next_seq = max_seq + 1;
    /* A segment started over (or a spare reused) may hold only records older than its mark. */
    if (mark > sp->next_seq) sp->next_seq = mark;
    if (live == 0) {
        free(data), free(keep_off), free(keep_len);
        unlinkat(sp->dir_fd, name, 0);
        return 0;
    }
    seg_t *s = calloc(1, sizeof *s);
    if (!s || (s->fd = openat(sp->dir_fd, name, O_RDWR | O_CLOEXEC)) < 0) {
        snprintf(errstr, errstr_size, "spool.dir '%s': cannot open %s: %s", sp->dir, name, strerror(errno));
        free(data), free(keep_off), free(keep_len);
        free(s);
        return -1;
    }
    /* Every seq in the range starts as done; the records still to deliver are cleared. */
    s->first_seq = min_seq;
    s->n_seq = max_seq - min_seq + 1;
    s->done_words = (size_t)((s->n_seq + 63) / 64);
    s->done = malloc(s->done_words * sizeof *s->done);
    if (!s->done) {
        close(s->fd);
        free(s), free(data), free(keep_off), free(keep_len);
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    memset(s->done, 0xFF, s->done_words * sizeof *s->done);
    for (uint64_t i = 0; i < n_keep; i++) {
        uint64_t seq = get64(data + keep_off[i] + REC_HDR);
        if (seq >= mark) {
            uint64_t k = seq - s->first_seq;
            s->done[k / 64] &= ~((uint64_t)1 << (k % 64));
        }
    }
    free(data), free(keep_off), free(keep_len);
    s->mark = s->mark_saved = mark > s->first_seq ? mark : s->first_seq;
    s->no = no;
    if (hdr_damaged) mark_save(sp, s);
    s->size = size;
    s->live = live;
    if (sp->tail) sp->tail->next = s;
    else sp->head = s;
    sp->tail = s;
    sp->bytes += size;
    sp->records += live;
    sp->unsent += live;
    rec->records += live;
    rec->segments++;
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* "seg-" 20 digits ".pbs" -> its number. */
static int parse_seg_name(const char *name, uint64_t *no) {
    if (strlen(name) != 28 || memcmp(name, "seg-", 4) != 0 || strcmp(name + 24, ".pbs") != 0) return 0;
    *no = 0;
    for (int i = 4; i < 24; i++) {
        if (name[i] < '0' || name[i] > '9') return 0;
        *no = *no * 10 + (uint64_t)(name[i] - '0');
    }
    return 1;
}

static int recover(pbsp_t *sp, pbsp_recovery_t *rec, char *errstr, size_t errstr_size) {
    int fd = dup(sp->dir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        snprintf(errstr, errstr_size, "spool.dir '%s': %s", sp->dir, strerror(errno));
        return -1;
    }
    uint64_t *nos = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t no;
        if (parse_seg_name(e->d_name, &no)) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                uint64_t *a = realloc(nos, cap * sizeof *a);
                if (!a) { /* the segments left out would be lost to replay, and their names reused */
                    closedir(d);
                    free(nos);
                    snprintf(errstr, errstr_size, "spool.dir '%s': out of memory listing its segments", sp->dir);
                    return -1;
                }
                nos = a;
            }
            nos[n++] = no;
        } else if (strstr(e->d_name, ".pbs.tmp")) {
            unlinkat(sp->dir_fd, e->d_name, 0); /* an interrupted rewrite: the original is intact */
        }
    }
    closedir(d);
    if (n) qsort(nos, n, sizeof *nos, cmp_u64);
    for (size_t i = 0; i < n; i++) {
        if (recover_segment(sp, nos[i], rec, errstr, errstr_size) != 0) {
            free(nos);
            return -1;
        }
        if (nos[i] >= sp->next_no) sp->next_no = nos[i] + 1;
    }
    free(nos);
    return 0;
}

static int lock_dir(pbsp_t *sp, char *errstr, size_t errstr_size) {
    sp->lock_fd = openat(sp->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sp->lock_fd < 0) {
        snprintf(errstr, errstr_size, "spool.dir '%s': cannot create its lock file: %s", sp->dir, strerror(errno));
        return -1;
    }
    if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(sp->lock_fd, pid, sizeof pid - 1, 0);
        if (n > 0) pid[n] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        snprintf(errstr, errstr_size, "spool.dir '%s' is in use by another predbridged (pid %s); each daemon needs its own",
                 sp->dir, pid[0] ? pid : "unknown");
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(sp->lock_fd, 0) != 0 || write_all_at(sp->lock_fd, pid, (size_t)len, 0) != 0) {
        /* Only informative: the flock is what excludes. */
    }
    return 0;
}

pbsp_t *pbsp_open(const pbsp_options_t *o, pbsp_recovery_t *rec, char *errstr, size_t errstr_size) {
    pthread_once(&crc_once, crc_init);
    int64_t t0 = pbclock_mono_ms();
    memset(rec, 0, sizeof *rec);
    pbsp_t *sp = calloc(1, sizeof *sp);
    if (!sp || !(sp->dir = strdup(o->dir))) {
        free(sp);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    sp->o = *o;
    sp->o.dir = sp->dir;
    uint64_t cap = o->max_bytes / 4;
    if (sp->o.segment_bytes > cap) sp->o.segment_bytes = cap;
    if (sp->o.segment_bytes < MIN_SEGMENT) sp->o.segment_bytes = MIN_SEGMENT;
    sp->dir_fd = sp->lock_fd = sp->failed_fd = sp->spare_fd = sp->sync.event_fd = sp->sync.old_fd = -1;
    sp->next_seq = sp->next_no = 1;
    if (mkdir_p(o->dir) != 0 || (sp->dir_fd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        snprintf(errstr, errstr_size, "spool.dir '%s': %s", o->dir, strerror(errno));
        goto fail;
    }
    if (faccessat(sp->dir_fd, ".", W_OK, AT_EACCESS) != 0) {
        snprintf(errstr, errstr_size, "spool.dir '%s' is not writable: %s", o->dir, strerror(errno));
        goto fail;
    }
    if (lock_dir(sp, errstr, errstr_size) != 0 || recover(sp, rec, errstr, errstr_size) != 0) goto fail;
    /* A spare left by a stop that was not clean is not used: its records may have higher seqs than
     * any segment left, and so could pass for new ones after records written over it. */
    (void)unlinkat(sp->dir_fd, SPARE, 0);
    if (!sp->tail && !seg_create(sp, errstr, errstr_size)) goto fail;
    /* Appends go to a fresh segment; recovered ones are read, replayed and deleted. */
    if (sp->tail->size > SEG_HDR && !seg_create(sp, errstr, errstr_size)) goto fail;
    cur_start(sp, sp->head);
    sp->written_seq = sp->buffered_seq = sp->durable = sp->next_seq - 1;
    if (o->fsync == PBSP_FSYNC_INTERVAL) {
        syncer_t *y = &sp->sync;
        y->fd = sp->tail->fd;
        y->fd_no = sp->tail->no;
        y->dir_fd = sp->dir_fd;
        y->interval_ms = o->fsync_interval_ms;
        y->want = y->done = sp->durable;
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_mutex_init(&y->mu, NULL);
        pthread_cond_init(&y->cv, &ca);
        pthread_condattr_destroy(&ca);
        y->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (y->event_fd < 0 || pthread_create(&y->thread, NULL, syncer_main, y) != 0) {
            snprintf(errstr, errstr_size, "spool: cannot start the fsync thread: %s", strerror(errno));
            goto fail;
        }
        y->started = 1;
    }
    rec->elapsed_ms = pbclock_mono_ms() - t0;
    return sp;
fail:
    pbsp_close(sp);
    return NULL;
}

void pbsp_close(pbsp_t *sp) {
    if (!sp) return;
    if (sp->tail && sp->wlen) {
        char e[256];
        if (flush_wbuf(sp, e, sizeof e) != 0)
            PBLOG_E("spool.close", "%s: %zu bytes of records never acknowledged are lost", e, sp->wlen);
    }
    if (sp->sync.started) {
        pthread_mutex_lock(&sp->sync.mu);
        sp->sync.stop = 1;
        pthread_cond_signal(&sp->sync.cv);
        pthread_mutex_unlock(&sp->sync.mu);
        pthread_join(sp->sync.thread, NULL);
    }
    if (sp->sync.old_fd >= 0) { /* a closed segment the syncer had not got to */
        (void)fdatasync(sp->sync.old_fd);
        close(sp->sync.old_fd);
    }
    if (sp->sync.dir_dirty) (void)fsync(sp->dir_fd);
    if (sp->sync.event_fd >= 0) {
        close(sp->sync.event_fd);
        pthread_mutex_destroy(&sp->sync.mu);
        pthread_cond_destroy(&sp->sync.cv);
    }
    if (sp->tail && sp->o.fsync != PBSP_FSYNC_NEVER) (void)fdatasync(sp->tail->fd);
    /* An active segment with nothing undelivered is not left behind; the others keep their mark. */
    while (sp->head) {
        seg_t *s = sp->head;
        sp->head = s->next;
        if (s->live == 0) {
            char name[64];
            seg_name(name, sizeof name, s->no);
            unlinkat(sp->dir_fd, name, 0);
        } else if (s->mark > s->mark_saved) {
            mark_save(sp, s);
        }
        close(s->fd);
        free(s->done);
        free(s);
    }
    spare_drop(sp);
    if (sp->failed_fd >= 0) close(sp->failed_fd);
    if (sp->lock_fd >= 0) close(sp->lock_fd);
    if (sp->dir_fd >= 0) close(sp->dir_fd);
    free(sp->wbuf);
    free(sp->rbuf);
    free(sp->dir);
    free(sp);
}
