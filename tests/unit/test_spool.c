/* test_spool: the on-disk spool keeps, replays and retires records, survives torn and damaged
 * writes, and holds its size bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "spool.h"

/* ---- system calls a test makes fail (linked with --wrap, see tests/CMakeLists.txt) ---- */

int __real_fdatasync(int fd);
int __real_fsync(int fd);
int __wrap_fsync(int fd);
ssize_t __real_read(int fd, void *buf, size_t n);
void *__real_realloc(void *p, size_t n);
int __wrap_fdatasync(int fd);
ssize_t __wrap_read(int fd, void *buf, size_t n);
void *__wrap_realloc(void *p, size_t n);

/* The next fdatasync_fails calls fail with fdatasync_errno (the interval syncer calls from its thread). */
static _Atomic int fdatasync_fails, fdatasync_errno;
/* fdatasync_gate: while 1, fdatasync on any thread but the test's waits (5 s at most, then
 * gate_timed_out is set and it goes on); test_thread_syncs counts the calls the test's own thread
 * (the event loop's, in the daemon) makes. */
static int fdatasync_gate; /* under gate_mu */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static _Atomic int gate_timed_out, test_thread_syncs;
static pthread_t test_thread;
/* fdatasync of segment number fail_segment fails once with EIO (then fail_segment is 0 again). */
static _Atomic unsigned long long fail_segment;
/* fsync of a directory: dir_synced_seg is the highest segment number in the fixture's directory
 * when a successful sync of it began (the names it made durable). */
static _Atomic unsigned long long dir_synced_seg;
static char wrap_dir[64];
/* read(): read_chunk > 0: at most that many bytes a call, every other call interrupted (EINTR);
 * read_eio_after >= 0: fails with EIO once that many bytes were read. */
static size_t read_chunk, read_total;
static long read_eio_after = -1;
static int read_calls;
/* > 0: the realloc_fail_at-th realloc from now returns NULL. */
static int realloc_fail_at;

/* The number of the segment file fd is open on, 0 if it is none. */
static unsigned long long segment_of(int fd) {
    char link[64], path[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = '\0';
    const char *base = strrchr(path, '/');
    unsigned long long no = 0;
    return base && sscanf(base, "/seg-%llu.pbs", &no) == 1 ? no : 0;
}

static unsigned long long highest_segment(const char *dir) {
    unsigned long long top = 0, no;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (sscanf(e->d_name, "seg-%llu.pbs", &no) == 1 && no > top) top = no;
    if (d) closedir(d);
    return top;
}

int __wrap_fsync(int fd) {
    struct stat st;
    unsigned long long top = 0;
    if (wrap_dir[0] && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) top = highest_segment(wrap_dir);
    int r = __real_fsync(fd);
    unsigned long long was = dir_synced_seg;
    while (r == 0 && top > was && !atomic_compare_exchange_weak(&dir_synced_seg, &was, top)) {
    }
    return r;
}

int __wrap_fdatasync(int fd) {
    unsigned long long target = fail_segment;
    if (target && segment_of(fd) == target && atomic_compare_exchange_strong(&fail_segment, &target, 0)) {
        errno = EIO;
        return -1;
    }
    if (pthread_equal(pthread_self(), test_thread)) {
        test_thread_syncs++;
    } else {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 5;
        pthread_mutex_lock(&gate_mu);
        while (fdatasync_gate && pthread_cond_timedwait(&gate_cv, &gate_mu, &deadline) == 0) {
        }
        if (fdatasync_gate) gate_timed_out = 1;
        pthread_mutex_unlock(&gate_mu);
    }
    if (fdatasync_fails > 0) {
        fdatasync_fails--;
        errno = fdatasync_errno;
        return -1;
    }
    return __real_fdatasync(fd);
}

ssize_t __wrap_read(int fd, void *buf, size_t n) {
    if (read_chunk && read_calls++ % 2 == 0) return errno = EINTR, -1;
    if (read_chunk && n > read_chunk) n = read_chunk;
    if (read_eio_after >= 0 && read_total >= (size_t)read_eio_after) return errno = EIO, -1;
    if (read_eio_after >= 0 && read_total + n > (size_t)read_eio_after) n = (size_t)read_eio_after - read_total;
    ssize_t got = __real_read(fd, buf, n);
    if (got > 0) read_total += (size_t)got;
    return got;
}

void *__wrap_realloc(void *p, size_t n) {
    if (realloc_fail_at > 0 && --realloc_fail_at == 0) return NULL;
    return __real_realloc(p, n);
}

/* Closes (1) or opens (0) the gate fdatasync waits at on other threads. */
static void set_gate(int closed) {
    pthread_mutex_lock(&gate_mu);
    fdatasync_gate = closed;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static void fail_fdatasync(int err, int times) {
    fdatasync_errno = err;
    fdatasync_fails = times;
}

#define SEG_HEADER 28 /* a segment file's header */

typedef struct fixture {
    char dir[64];
    pbsp_options_t o;
} fixture_t;

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    test_thread = pthread_self();
    snprintf(f->dir, sizeof f->dir, "/tmp/pbspool-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(wrap_dir, sizeof wrap_dir, "%s", f->dir);
    f->o = (pbsp_options_t){.dir = f->dir, .fsync = PBSP_FSYNC_NEVER, .fsync_interval_ms = 5,
                            .max_bytes = 64u << 20, .segment_bytes = 16u << 20};
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    set_gate(0);
    fdatasync_fails = gate_timed_out = test_thread_syncs = 0;
    fail_segment = dir_synced_seg = 0;
    wrap_dir[0] = '\0';
    read_chunk = read_total = 0;
    read_eio_after = -1;
    realloc_fail_at = 0;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

static pbsp_t *open_ok(fixture_t *f, pbsp_recovery_t *rec) {
    char err[512] = "";
    pbsp_recovery_t r;
    pbsp_t *sp = pbsp_open(&f->o, rec ? rec : &r, err, sizeof err);
    if (!sp) fail_msg("pbsp_open: %s", err);
    return sp;
}

/* Record i: value {"i":i}, id id-i, key k-i for even i, model m-i for i % 3 == 0. */
static pbsp_ticket_t append(pbsp_t *sp, int i) {
    char value[80], id[32], key[32], model[32];
    snprintf(value, sizeof value, "{\"i\":%d,\"pad\":\"%040d\"}", i, i);
    snprintf(id, sizeof id, "id-%d", i);
    snprintf(key, sizeof key, "k-%d", i);
    snprintf(model, sizeof model, "m-%d", i);
    pbd_record_t r = {.value = value, .value_len = strlen(value), .key = i % 2 == 0 ? key : NULL,
                      .key_len = strlen(key), .timestamp_ms = 1700000000000 + i, .id = id,
                      .model_version = i % 3 == 0 ? model : NULL};
    pbsp_ticket_t t;
    char err[256];
    assert_int_equal(pbsp_append(sp, &r, &t, err, sizeof err), PBSP_OK);
    return t;
}

static void commit(pbsp_t *sp) {
    char err[256];
    assert_int_equal(pbsp_commit(sp, err, sizeof err), PBSP_OK);
}

/* Reads the next record and checks it is record i. Returns its ref. */
static void *expect_next(pbsp_t *sp, int i) {
    pbd_record_t r;
    void *ref;
    uint64_t seq;
    char err[256], want[96], id[32];
    assert_int_equal(pbsp_peek(sp, &r, &ref, &seq, err, sizeof err), 1);
    snprintf(want, sizeof want, "{\"i\":%d,\"pad\":\"%040d\"}", i, i);
    snprintf(id, sizeof id, "id-%d", i);
    assert_int_equal(r.value_len, strlen(want));
    assert_memory_equal(r.value, want, r.value_len);
    assert_string_equal(r.id, id);
    assert_int_equal(r.timestamp_ms, 1700000000000 + i);
    if (i % 2 == 0) {
        char key[32];
        snprintf(key, sizeof key, "k-%d", i);
        assert_int_equal(r.key_len, strlen(key));
        assert_memory_equal(r.key, key, r.key_len);
    } else {
        assert_null(r.key);
    }
    if (i % 3 == 0) assert_non_null(r.model_version);
    else assert_null(r.model_version);
    free(r.value);
    pbsp_advance(sp);
    return ref;
}

static void expect_end(pbsp_t *sp) {
    pbd_record_t r;
    void *ref;
    uint64_t seq;
    char err[256];
    assert_int_equal(pbsp_peek(sp, &r, &ref, &seq, err, sizeof err), 0);
}

static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d) closedir(d);
    return n;
}

/* The only segment file's path. */
static void segment_path(const char *dir, char *out, size_t size) {
    DIR *d = opendir(dir);
    struct dirent *e;
    out[0] = '\0';
    while (d && (e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "seg-", 4) == 0) snprintf(out, size, "%s/%s", dir, e->d_name);
    if (d) closedir(d);
    assert_true(out[0] != '\0');
}

/* Reopens a spool whose undelivered records are from..to, undamaged, and reads them all back:
 * exactly those, in order, nothing reported torn or damaged (the old records of a segment written
 * over are neither). */
static pbsp_t *reopen_whole(fixture_t *f, int from, int to) {
    pbsp_recovery_t rec;
    pbsp_t *sp = open_ok(f, &rec);
    assert_int_equal(rec.records, to - from + 1);
    assert_int_equal(rec.torn_bytes, 0);
    assert_int_equal(rec.corrupt, 0);
    for (int i = from; i <= to; i++) expect_next(sp, i);
    expect_end(sp);
    char corrupt[128];
    snprintf(corrupt, sizeof corrupt, "%s/corrupt", f->dir);
    assert_int_equal(count_files(corrupt, "seg-"), 0);
    return sp;
}

static void test_spool_replays_every_record_in_order_after_reopen(void **state) {
    fixture_t *f = *state;
    pbsp_t *sp = open_ok(f, NULL);
    for (int i = 0; i < 100; i++) append(sp, i);
    commit(sp);
    pbsp_close(sp); /* nothing delivered: as after a crash */
    sp = reopen_whole(f, 0, 99);
    /* New records follow the replayed ones, with higher sequence numbers. */
    pbsp_ticket_t t = append(sp, 100);
    assert_true(t.seq > 100);
    expect_next(sp, 100);
    pbsp_close(sp);
}

/* 1 if the file system under dir reserves blocks beyond a file's end (fallocate, FALLOC_FL_KEEP_SIZE). */
static int reserves_beyond_end(const char *dir) {
    char path[128];
    snprintf(path, sizeof path, "%s/probe", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    int ok = fd >= 0 && fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4096) == 0;
    if (fd >= 0) close(fd);
    unlink(path);
    return ok;
}

static void test_spool_reserves_a_new_segments_space_beyond_its_end(void **state) {
    fixture_t *f = *state;
    f->o.segment_bytes = 1u << 20;
    if (!reserves_beyond_end(f->dir)) skip();
    pbsp_t *sp = open_ok(f, NULL);
    for (int i = 0; i < 10; i++) append(sp, i);
    commit(sp);
    char seg[600];
    segment_path(f->dir, seg, sizeof seg);
    struct stat st;
    assert_int_equal(stat(seg, &st), 0);
    assert_true(st.st_size < 4096);                                    /* the file holds what was written */
    assert_true((unsigned long long)st.st_blocks * 512 >= 1ull << 20); /* and the segment's blocks */
    pbsp_close(sp);
    /* The reserved space is neither replayed nor taken for a torn tail at the next start. */
    pbsp_close(reopen_whole(f, 0, 9));
}

static void test_spool_first_record_is_next_to_send_only_when_caught_up(void **state) {
    fixture_t *f = *state;
    pbsp_t *sp = open_ok(f, NULL);
    pbsp_ticket_t a = append(sp, 0);
    assert_true(a.next_to_send);
    pbsp_ticket_t b = append(sp, 1); /* a was not handed over yet */
    assert_false(b.next_to_send);
    pbsp_advance(sp); /* a handed over from memory */
    expect_next(sp, 1); /* b comes back from disk */
    pbsp_ticket_t c = append(sp, 2);
    assert_true(c.next_to_send);
    pbsp_close(sp);
}

static void test_spool_deletes_segments_once_all_their_records_are_delivered(void **state) {
    fixture_t *f = *state;
    f->o.segment_bytes = 4096; /* ~50 records per segment */
    pbsp_t *sp = open_ok(f, NULL);
    void *refs[300];
    for (int i = 0; i < 300; i++) append(sp, i);
    commit(sp);
    for (int i = 0; i < 300; i++) refs[i] = expect_next(sp, i);
    int before = count_files(f->dir, "seg-");
    assert_true(before >= 5);
    /* Retiring all but record 10 deletes every full segment except the first one. */
    for (int i = 0; i < 300; i++)
        if (i != 10) pbsp_retire(sp, refs[i]);
    assert_int_equal(count_files(f->dir, "seg-"), 2); /* the first, and the active one */
    pbsp_usage_t u;
    pbsp_get_usage(sp, &u);
    assert_int_equal(u.records, 1);
    pbsp_close(sp);

    /* After a restart the first segment's records from 10 on come back: 0..9 are below its
     * delivery mark, the later ones were delivered out of order, after the record the mark waits for. */
    pbsp_recovery_t rec;
    sp = open_ok(f, &rec);
    assert_int_equal(rec.segments, 1);
    assert_true(rec.records >= 10 && rec.records < 100);
    for (int i = 10; i < 10 + (int)rec.records; i++) pbsp_retire(sp, expect_next(sp, i));
    expect_end(sp);
    pbsp_get_usage(sp, &u);
    assert_int_equal(u.records, 0);
    assert_int_equal(count_files(f->dir, "seg-"), 1);
    pbsp_close(sp);
    assert_int_equal(count_files(f->dir, "seg-"), 0); /* nothing undelivered is left */
}

static void test_spool_crash_replays_only_from_the_last_written_delivery_mark(void **state) {
    fixture_t *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* a daemon that delivers 2,500 of 3,000 records in order, then dies */
        char err[256];
        pbsp_recovery_t rec;
        pbsp_t *sp = pbsp_open(&f->o, &rec, err, sizeof err);
        if (!sp) _exit(2);
        pbd_record_t r = {.value = "{}", .value_len = 2, .id = "x", .timestamp_ms = 1};
        pbsp_ticket_t t;
        void *refs[3000];
        for (int i = 0; i < 3000; i++) {
            if (pbsp_append(sp, &r, &t, err, sizeof err) != PBSP_OK) _exit(3);
            refs[i] = t.ref;
        }
        if (pbsp_commit(sp, err, sizeof err) != PBSP_OK) _exit(4);
        for (int i = 0; i < 2500; i++) pbsp_retire(sp, refs[i]);
        _exit(0); /* no pbsp_close: the mark is what was written along the way */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    pbsp_recovery_t rec;
    pbsp_t *sp = open_ok(f, &rec);
    /* The mark is written every 1,024 deliveries: at 1,024 and 2,048 delivered. */
    assert_int_equal(rec.records, 3000 - 2048);
    pbsp_close(sp);
}

static void test_spool_tick_starts_a_delivered_active_segment_over(void **state) {
    fixture_t *f = *state;
    pbsp_t *sp = open_ok(f, NULL);
    for (int i = 0; i < 10; i++) append(sp, i);
    commit(sp);
    for (int i = 0; i < 10; i++) pbsp_retire(sp, expect_next(sp, i));
    pbsp_usage_t u;
    pbsp_get_usage(sp, &u);
    assert_true(u.bytes > SEG_HEADER + 10 * 50);
    char seg[600];
    segment_path(f->dir, seg, sizeof seg);
    struct stat before, after;
    assert_int_equal(stat(seg, &before), 0);
    pbsp_tick(sp);
    pbsp_get_usage(sp, &u);
    assert_int_equal(u.bytes, SEG_HEADER);
    /* Written over from the start, not truncated: the file keeps its pages. */
    assert_int_equal(stat(seg, &after), 0);
    assert_int_equal(after.st_ino, before.st_ino);
    assert_int_equal(after.st_size, before.st_size);
    append(sp, 10);
    append(sp, 11);
    expect_next(sp, 10);
    expect_next(sp, 11);
    commit(sp);
    pbsp_close(sp); /* 10 and 11 undelivered, records 1..9 of before still in the file after them */
    pbsp_close(reopen_whole(f, 10, 11));
}

static ino_t inode_of(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

static void test_spool_reuses_a_delivered_segment_and_never_replays_its_old_records(void **state) {
    fixture_t *f = *state;
    f->o.segment_bytes = 4096; /* ~50 records per segment */
    pbsp_t *sp = open_ok(f, NULL);
    for (int i = 0; i < 200; i++) append(sp, i);
    commit(sp);
    for (int i = 0; i < 200; i++) pbsp_retire(sp, expect_next(sp, i));
    char spare[128];
    snprintf(spare, sizeof spare, "%s/spare.pbs", f->dir);
    ino_t ino = inode_of(spare);
    assert_true(ino != 0); /* one delivered segment kept, the others deleted */
    assert_int_equal(count_files(f->dir, "seg-"), 1);
    /* The next segment is the spare: three records in it, where it held ~50. */
    int i = 200, in_spare = 0;
    while (in_spare < 3) {
        append(sp, i++);
        if (inode_of(spare) == 0) in_spare++;
        assert_true(i < 400);
    }
    commit(sp);
    DIR *d = opendir(f->dir);
    struct dirent *e;
    int reused = 0;
    while (d && (e = readdir(d)) != NULL) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", f->dir, e->d_name);
        reused |= strncmp(e->d_name, "seg-", 4) == 0 && inode_of(path) == ino;
    }
    if (d) closedir(d);
    assert_true(reused);
    for (int k = 200; k < i; k++) expect_next(sp, k);
    pbsp_close(sp); /* all undelivered */
    sp = reopen_whole(f, 200, i - 1);
    pbsp_close(sp);
    assert_int_equal(count_files(f->dir, "spare"), 0);
}

/* Opening the spool again recovers exactly `records` records, with nothing torn. */
static void reopen_expect(fixture_t *f, uint64_t records) {
    pbsp_recovery_t rec;
    pbsp_t *sp = open_ok(f, &rec);
    assert_int_equal(rec.records, records);
    assert_int_equal(rec.torn_bytes, 0);
    pbsp_close(sp);
}

/* An open spool holding records 0..n-1, written. */
static pbsp_t *spool_of(fixture_t *f, int n) {
    pbsp_t *sp = open_ok(f, NULL);
    for (int i = 0; i < n; i++) append(sp, i);
    commit(sp);
    return sp;
}

/* A closed spool holding records 0..4 in one segment, whose path goes to seg. */
static void spool_of_five(fixture_t *f, char *seg, size_t size) {
    pbsp_close(spool_of(f, 5));
    segment_path(f->dir, seg, size);
}

static void test_spool_cuts_a_torn_tail(void **state) {
    fixture_t *f = *state;
    char seg[600];
    spool_of_five(f, seg, sizeof seg);
    pbsp_t *sp;
    struct stat st;
    assert_int_equal(stat(seg, &st), 0);
    assert_int_equal(truncate(seg, st.st_size - 7), 0); /* the last record's write was cut short */
    pbsp_recovery_t rec;
    sp = open_ok(f, &rec);
    assert_int_equal(rec.records, 4);
    assert_true(rec.torn_bytes > 0);
    assert_int_equal(rec.corrupt, 0);
    for (int i = 0; i < 4; i++) expect_next(sp, i);
    expect_end(sp);
    char corrupt[128];
    snprintf(corrupt, sizeof corrupt, "%s/corrupt", f->dir);
    assert_int_equal(count_files(corrupt, "seg-"), 1); /* the cut bytes are kept for inspection */
    /* Appends after recovery land whole and come back. */
    append(sp, 4);
    expect_next(sp, 4);
    commit(sp);
    pbsp_close(sp);
    reopen_expect(f, 5);
}

static void test_spool_moves_a_damaged_middle_record_aside_and_replays_the_rest(void **state) {
    fixture_t *f = *state;
    char seg[600];
    spool_of_five(f, seg, sizeof seg);
    pbsp_t *sp;
    /* Flip one byte inside record 2's value. */
    FILE *fp = fopen(seg, "r+b");
    assert_non_null(fp);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, fp);
    char *hit = memmem(buf, n, "{\"i\":2,", 7);
    assert_non_null(hit);
    hit[2] ^= 0x20;
    assert_int_equal(fseek(fp, 0, SEEK_SET), 0);
    assert_int_equal(fwrite(buf, 1, n, fp), n);
    fclose(fp);

    pbsp_recovery_t rec;
    sp = open_ok(f, &rec);
    assert_int_equal(rec.records, 4);
    assert_int_equal(rec.corrupt, 1);
    expect_next(sp, 0);
    expect_next(sp, 1);
    expect_next(sp, 3);
    expect_next(sp, 4);
    expect_end(sp);
    pbsp_close(sp);
    char corrupt[128];
    snprintf(corrupt, sizeof corrupt, "%s/corrupt", f->dir);
    assert_int_equal(count_files(corrupt, "seg-"), 1);
    /* The segment was rewritten without it: a second recovery finds nothing damaged. */
    sp = open_ok(f, &rec);
    assert_int_equal(rec.records, 4);
    assert_int_equal(rec.corrupt, 0);
    pbsp_close(sp);
}

static void wait_durable(pbsp_t *sp, uint64_t seq) {
    for (int i = 0; i < 500 && pbsp_durable_seq(sp) < seq; i++) {
        struct pollfd p = {.fd = pbsp_event_fd(sp), .events = POLLIN};
        (void)poll(&p, 1, 10);
        pbsp_serve(sp);
    }
}

/* Overwrites len bytes of a file at off. */
static void patch_file(const char *path, long off, const void *bytes, size_t len) {
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, bytes, len, off), (ssize_t)len);
    close(fd);
}

/* Offsets of the records in a segment file (its first n_max), from their magic. */
static size_t record_offsets(const char *path, long *off, size_t n_max, char *buf, size_t size, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    *len = fread(buf, 1, size, fp);
    fclose(fp);
    size_t n = 0;
    for (size_t i = SEG_HEADER; i + 4 <= *len && n < n_max; i++)
        if (memcmp(buf + i, "PBR1", 4) == 0) off[n++] = (long)i;
    return n;
}

static void test_spool_always_never_acknowledges_records_whose_fdatasync_failed(void **state) {
    fixture_t *f = *state;
    f->o.fsync = PBSP_FSYNC_ALWAYS;
    pbsp_t *sp = open_ok(f, NULL);
    pbsp_ticket_t a = append(sp, 0), b = append(sp, 1);
    fail_fdatasync(EIO, 1);
    commit(sp);
    assert_true(pbsp_durable_seq(sp) < a.seq);
    /* A later sync of the same file would succeed without writing what failed: it must not count. */
    pbsp_ticket_t c = append(sp, 2);
    commit(sp);
    assert_true(pbsp_durable_seq(sp) < a.seq);
    uint64_t lo, hi;
    char why[200];
    assert_int_equal(pbsp_take_failed(sp, &lo, &hi, why, sizeof why), 1);
    assert_true(lo <= a.seq && hi >= b.seq && hi < c.seq);
    assert_non_null(strstr(why, "seg-"));
    assert_non_null(strstr(why, strerror(EIO)));
    assert_int_equal(pbsp_take_failed(sp, &lo, &hi, why, sizeof why), 0); /* reported once */
    pbsp_usage_t u;
    pbsp_get_usage(sp, &u);
    assert_int_equal(u.sync_failures, 1); /* predbridge_spool_fsync_failures_total */
    /* c went to a new segment, whose sync is trusted. */
    assert_true(pbsp_durable_seq(sp) >= c.seq);
    assert_int_equal(count_files(f->dir, "seg-"), 2);
    /* The failed records stay in the spool and are still sent. */
    for (int i = 0; i < 3; i++) pbsp_retire(sp, expect_next(sp, i));
    expect_end(sp);
    pbsp_close(sp);
}

/* Serves the interval syncer until it reports failed records (5 s at most); meanwhile seq must never
 * look durable. */
static int wait_failed(pbsp_t *sp, uint64_t seq, uint64_t *lo, uint64_t *hi, char *why, size_t size) {
    for (int i = 0; i < 500; i++) {
        struct pollfd p = {.fd = pbsp_event_fd(sp), .events = POLLIN};
        (void)poll(&p, 1, 10);
        pbsp_serve(sp);
        assert_true(pbsp_durable_seq(sp) < seq);
        if (pbsp_take_failed(sp, lo, hi, why, size)) return 1;
    }
    return 0;
}

static void test_spool_interval_never_acknowledges_records_whose_fdatasync_failed(void **state) {
    fixture_t *f = *state;
    f->o.fsync = PBSP_FSYNC_INTERVAL;
    pbsp_t *sp = open_ok(f, NULL);
    fail_fdatasync(EIO, 1);
    pbsp_ticket_t a = append(sp, 0);
    commit(sp);
    uint64_t lo, hi;
    char why[200];
    assert_true(wait_failed(sp, a.seq, &lo, &hi, why, sizeof why));
    assert_true(lo <= a.seq && hi >= a.seq);
    assert_non_null(strstr(why, strerror(EIO)));
    pbsp_ticket_t b = append(sp, 1);
    commit(sp);
    wait_durable(sp, b.seq);
    assert_true(pbsp_durable_seq(sp) >= b.seq);
    assert_int_equal(count_files(f->dir, "seg-"), 2); /* b is in a new segment */
    pbsp_close(sp);
}

/* Appends records from i on, committing each, until the spool has `files` segment files (none is
 * deleted: nothing is retired). Returns the next i; *last is the seq of the last record in the
 * segment before the newest. */
static int fill_until_segments(fixture_t *f, pbsp_t *sp, int i, int files, uint64_t *last) {
    for (; count_files(f->dir, "seg-") < files; i++) {
        assert_true(i < 1000);
        pbsp_ticket_t t = append(sp, i);
        *last = t.seq;
        commit(sp);
    }
    *last -= 1; /* the append that found the segment full went to the new one */
    return i;
}

static int fill_first_segment(fixture_t *f, pbsp_t *sp, int i, uint64_t *last) {
    return fill_until_segments(f, sp, i, 2, last);
}

/* interval policy, segments of the smallest size: a few dozen records fill one. */
static pbsp_t *open_interval_small_segments(fixture_t *f) {
    f->o.fsync = PBSP_FSYNC_INTERVAL;
    f->o.segment_bytes = 4096;
    return open_ok(f, NULL);
}

/* Appends record n, which (in a new segment) must become durable, then reads back and retires
 * records 0..n in order: nothing was lost on the way. */
static void append_durable_then_replay_all(pbsp_t *sp, int n) {
    pbsp_ticket_t b = append(sp, n);
    commit(sp);
    wait_durable(sp, b.seq);
    assert_true(pbsp_durable_seq(sp) >= b.seq);
    for (int i = 0; i <= n; i++) pbsp_retire(sp, expect_next(sp, i));
    expect_end(sp);
}

static void test_spool_interval_rotation_leaves_the_closed_segment_to_the_syncer(void **state) {
    fixture_t *f = *state;
    pbsp_t *sp = open_interval_small_segments(f);
    pbsp_ticket_t a = append(sp, 0);
    commit(sp);
    wait_durable(sp, a.seq);
    assert_true(pbsp_durable_seq(sp) >= a.seq);
    /* The disk stalls: the event loop must go on appending into a new segment, not wait for it. */
    set_gate(1);
    uint64_t last_old = 0;
    int n = fill_first_segment(f, sp, 1, &last_old);
    assert_false(gate_timed_out);
    assert_int_equal(test_thread_syncs, 0);
    /* Nothing of the closed segment counts as durable before its sync is done. */
    for (int k = 0; k < 5; k++) {
        struct pollfd p = {.fd = pbsp_event_fd(sp), .events = POLLIN};
        (void)poll(&p, 1, 10);
        pbsp_serve(sp);
        assert_true(pbsp_durable_seq(sp) < last_old);
    }
    set_gate(0);
    uint64_t lo, hi;
    char why[200];
    append_durable_then_replay_all(sp, n);
    assert_false(gate_timed_out);
    assert_int_equal(test_thread_syncs, 0);
    assert_int_equal(pbsp_take_failed(sp, &lo, &hi, why, sizeof why), 0);
    pbsp_close(sp);
}

static void test_spool_interval_failed_sync_of_a_closed_segment_fails_its_records(void **state) {
    fixture_t *f = *state;
    pbsp_t *sp = open_interval_small_segments(f);
    set_gate(1); /* the syncer's next sync waits, then fails */
    fail_fdatasync(EIO, 1);
    uint64_t last_old = 0;
    int n = fill_first_segment(f, sp, 0, &last_old);
    set_gate(0);
    uint64_t lo, hi;
    char why[200];
    assert_true(wait_failed(sp, 1, &lo, &hi, why, sizeof why));
    assert_true(lo <= 1 && hi >= last_old);
    assert_non_null(strstr(why, strerror(EIO)));
    append_durable_then_replay_all(sp, n); /* records whose sync failed are still sent */
    pbsp_close(sp);
}

static void test_spool_interval_syncs_the_directory_before_a_closed_segment_counts(void **state) {
    fixture_t *f = *state;
    f->o.fsync_interval_ms = 10000; /* after the first, only closed segments are synced in this test */
    pbsp_t *sp = open_interval_small_segments(f);
    pbsp_ticket_t a = append(sp, 0);
    commit(sp);
    wait_durable(sp, a.seq);
    assert_true(pbsp_durable_seq(sp) >= a.seq);
    /* Segment 2 is created, filled and closed: its records count only once its name is durable. */
    uint64_t last1 = 0, last2 = 0;
    int n = fill_first_segment(f, sp, 1, &last1);
    n = fill_until_segments(f, sp, n, 3, &last2);
    wait_durable(sp, last2);
    assert_true(pbsp_durable_seq(sp) >= last2);
    assert_true(dir_synced_seg >= 2);
    pbsp_close(sp);
}

static void test_spool_interval_failure_after_a_good_sync_reports_only_later_records(void **state) {
    fixture_t *f = *state;
    pbsp_t *sp = open_interval_small_segments(f);
    fail_segment = 2;
    uint64_t last1 = 0, last2 = 0;
    int n = fill_first_segment(f, sp, 0, &last1);
    /* Segment 1 is synced and a sync of segment 2 fails before the loop serves the syncer. */
    pbsp_ticket_t t = append(sp, n++);
    commit(sp);
    for (int i = 0; i < 500 && fail_segment; i++) (void)poll(NULL, 0, 10);
    assert_int_equal(fail_segment, 0);
    /* Closing segment 2 finds the failure: only records after segment 1 are reported. */
    n = fill_until_segments(f, sp, n, 3, &last2);
    uint64_t lo, hi;
    char why[200];
    assert_true(wait_failed(sp, t.seq, &lo, &hi, why, sizeof why));
    assert_int_equal(lo, last1 + 1);
    assert_true(hi >= last2);
    assert_non_null(strstr(why, "seg-00000000000000000002.pbs"));
    append_durable_then_replay_all(sp, n);
    pbsp_close(sp);
}

static void test_spool_full_disk_reported_by_fdatasync_pauses_until_space_returns(void **state) {
    fixture_t *f = *state;
    f->o.fsync = PBSP_FSYNC_ALWAYS;
    pbsp_t *sp = open_ok(f, NULL);
    pbsp_ticket_t a = append(sp, 0);
    fail_fdatasync(ENOSPC, 2); /* the commit's sync, and the first probe for space */
    commit(sp);
    assert_true(pbsp_disk_full(sp));
    assert_true(pbsp_full(sp));
    uint64_t lo, hi;
    char why[200];
    assert_int_equal(pbsp_take_failed(sp, &lo, &hi, why, sizeof why), 1);
    assert_true(lo <= a.seq && hi >= a.seq);
    pbd_record_t r = {.value = "{}", .value_len = 2, .id = "x", .timestamp_ms = 1};
    pbsp_ticket_t t;
    char err[256];
    assert_int_equal(pbsp_append(sp, &r, &t, err, sizeof err), PBSP_FULL);
    pbsp_tick(sp); /* still full */
    assert_true(pbsp_disk_full(sp));
    assert_int_equal(pbsp_append(sp, &r, &t, err, sizeof err), PBSP_FULL);
    pbsp_tick(sp); /* space is back */
    assert_false(pbsp_full(sp));
    assert_int_equal(pbsp_append(sp, &r, &t, err, sizeof err), PBSP_OK);
    commit(sp);
    assert_true(pbsp_durable_seq(sp) >= t.seq);
    pbsp_close(sp);
}

static void test_spool_refuses_to_open_when_a_segment_cannot_be_read_whole(void **state) {
    fixture_t *f = *state;
    char seg[600];
    spool_of_five(f, seg, sizeof seg);
    struct stat before, after;
    assert_int_equal(stat(seg, &before), 0);
    read_eio_after = 100; /* within the first record */
    char err[512] = "";
    pbsp_recovery_t rec;
    assert_null(pbsp_open(&f->o, &rec, err, sizeof err));
    assert_non_null(strstr(err, strrchr(seg, '/') + 1));
    assert_non_null(strstr(err, strerror(EIO)));
    assert_int_equal(stat(seg, &after), 0);
    assert_int_equal(after.st_size, before.st_size); /* nothing was cut off */
    read_eio_after = -1;
    reopen_expect(f, 5);
}

static void test_spool_recovers_through_short_and_interrupted_reads(void **state) {
    fixture_t *f = *state;
    char seg[600];
    spool_of_five(f, seg, sizeof seg);
    read_chunk = 7;
    pbsp_recovery_t rec;
    pbsp_t *sp = open_ok(f, &rec);
    read_chunk = 0;
    assert_int_equal(rec.records, 5);
    assert_int_equal(rec.torn_bytes, 0);
    for (int i = 0; i < 5; i++) expect_next(sp, i);
    pbsp_close(sp);
}

static void test_spool_refuses_to_open_without_memory_to_list_its_segments(void **state) {
    fixture_t *f = *state;
    f->o.segment_bytes = 4096;
    pbsp_close(spool_of(f, 3000));
    assert_true(count_files(f->dir, "seg-") > 64); /* the listing grows past its first 64 entries */
    realloc_fail_at = 2;
    char err[512] = "";
    pbsp_recovery_t rec;
    assert_null(pbsp_open(&f->o, &rec, err, sizeof err));
    assert_non_null(strstr(err, "out of memory"));
    assert_non_null(strstr(err, f->dir));
    realloc_fail_at = 0;
    reopen_expect(f, 3000);
}

static void test_spool_damage_found_at_run_time_accounts_for_every_record_it_covers(void **state) {
    fixture_t *f = *state;
    f->o.segment_bytes = 4096;
    pbsp_t *sp = spool_of(f, 60);
    assert_int_equal(count_files(f->dir, "seg-"), 2);
    /* Records 5, 6 and half of 7 of the first segment are overwritten after they were written. */
    char first[600], buf[8192];
    snprintf(first, sizeof first, "%s/seg-00000000000000000001.pbs", f->dir);
    long off[9];
    size_t len;
    assert_int_equal(record_offsets(first, off, 9, buf, sizeof buf, &len), 9);
    size_t n = (size_t)((off[7] + off[8]) / 2 - off[5]);
    memset(buf, 'x', n);
    patch_file(first, off[5], buf, n);

    for (int i = 0; i < 5; i++) pbsp_retire(sp, expect_next(sp, i));
    for (int i = 8; i < 60; i++) pbsp_retire(sp, expect_next(sp, i));
    expect_end(sp);
    pbsp_usage_t u;
    pbsp_get_usage(sp, &u);
    assert_int_equal(u.unsent, 0);
    assert_int_equal(u.records, 0);
    assert_int_equal(count_files(f->dir, "seg-"), 1); /* the damaged segment was deleted */
    char corrupt[128];
    snprintf(corrupt, sizeof corrupt, "%s/corrupt", f->dir);
    assert_int_equal(count_files(corrupt, "seg-"), 1);
    pbsp_close(sp);
}

static void test_spool_replays_every_record_when_a_segment_header_is_damaged(void **state) {
    fixture_t *f = *state;
    pbsp_t *sp = spool_of(f, 5);
    for (int i = 0; i < 2; i++) pbsp_retire(sp, expect_next(sp, i));
    pbsp_close(sp); /* the mark says 0 and 1 were delivered */
    char seg[600];
    segment_path(f->dir, seg, sizeof seg);
    patch_file(seg, 23, "\x7f", 1); /* the mark's top byte: every record would look delivered */
    pbsp_recovery_t rec;
    sp = open_ok(f, &rec);
    assert_int_equal(rec.records, 5); /* the mark is not trusted: 0 and 1 come again too */
    for (int i = 0; i < 5; i++) expect_next(sp, i);
    pbsp_close(sp);
    reopen_expect(f, 5); /* the header was written again, with a valid checksum */
}

static void test_spool_refuses_a_segment_of_another_format_version(void **state) {
    fixture_t *f = *state;
    char seg[600];
    spool_of_five(f, seg, sizeof seg);
    patch_file(seg, 7, "3", 1); /* "PBSPOOL3": a later version */
    char err[512] = "";
    pbsp_recovery_t rec;
    assert_null(pbsp_open(&f->o, &rec, err, sizeof err));
    assert_non_null(strstr(err, strrchr(seg, '/') + 1));
    assert_non_null(strstr(err, "format version '3'"));
    struct stat st;
    assert_int_equal(stat(seg, &st), 0); /* left as it is */
}

/* A segment an older predbridged wrote (format 1: "PBSPOOL1", number, mark, no checksum, the same
 * records) is rewritten as format 2 and every record in it is replayed. */
static void test_spool_upgrades_a_format_1_segment_and_replays_it(void **state) {
    fixture_t *f = *state;
    char seg[600];
    spool_of_five(f, seg, sizeof seg);
    FILE *in = fopen(seg, "rb");
    assert_non_null(in);
    unsigned char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    assert_true(n > 28 && n < sizeof buf);
    buf[7] = '1';
    memmove(buf + 24, buf + 28, n - 28); /* the header without its checksum */
    FILE *out = fopen(seg, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(buf, 1, n - 4, out), n - 4);
    fclose(out);
    pbsp_recovery_t rec;
    pbsp_t *sp = open_ok(f, &rec);
    assert_int_equal(rec.records, 5);
    assert_int_equal(rec.corrupt, 0);
    assert_int_equal(rec.torn_bytes, 0);
    for (int i = 0; i < 5; i++) expect_next(sp, i);
    expect_end(sp);
    pbsp_close(sp);
    char head[8];
    in = fopen(seg, "rb");
    assert_non_null(in);
    assert_int_equal(fread(head, 1, 8, in), 8);
    fclose(in);
    assert_memory_equal(head, "PBSPOOL2", 8);
}

static void test_spool_refuses_appends_beyond_its_size_bound_until_records_retire(void **state) {
    fixture_t *f = *state;
    f->o.max_bytes = 16384;
    pbsp_t *sp = open_ok(f, NULL);
    int n = 0;
    pbd_record_t r = {.value = "{\"x\":1}", .value_len = 7, .id = "id", .timestamp_ms = 1};
    pbsp_ticket_t t;
    char err[256];
    pbsp_status_t st;
    while ((st = pbsp_append(sp, &r, &t, err, sizeof err)) == PBSP_OK) n++;
    assert_int_equal(st, PBSP_FULL);
    assert_true(n > 100 && n < 16384 / 40);
    assert_true(pbsp_full(sp));
    commit(sp);
    pbsp_usage_t u;
    pbsp_get_usage(sp, &u);
    assert_true(u.bytes <= 16384);
    /* Delivering everything frees the space. */
    pbd_record_t got;
    void *ref;
    uint64_t seq;
    while (pbsp_peek(sp, &got, &ref, &seq, err, sizeof err) == 1) {
        free(got.value);
        pbsp_advance(sp);
        pbsp_retire(sp, ref);
    }
    pbsp_tick(sp);
    assert_false(pbsp_full(sp));
    assert_int_equal(pbsp_append(sp, &r, &t, err, sizeof err), PBSP_OK);
    pbsp_close(sp);
}

static void test_spool_acknowledges_only_what_the_policy_made_durable(void **state) {
    fixture_t *f = *state;
    static const pbsp_fsync_t policies[] = {PBSP_FSYNC_NEVER, PBSP_FSYNC_ALWAYS, PBSP_FSYNC_INTERVAL};
    for (size_t p = 0; p < 3; p++) {
        f->o.fsync = policies[p];
        pbsp_t *sp = open_ok(f, NULL);
        pbsp_ticket_t t = append(sp, (int)p);
        assert_true(pbsp_durable_seq(sp) < t.seq); /* appended is not yet accepted */
        commit(sp);
        if (policies[p] == PBSP_FSYNC_INTERVAL) {
            assert_true(pbsp_event_fd(sp) >= 0);
            wait_durable(sp, t.seq);
        } else {
            assert_int_equal(pbsp_event_fd(sp), -1);
        }
        assert_true(pbsp_durable_seq(sp) >= t.seq);
        pbsp_close(sp);
    }
}

static void test_spool_directory_is_locked_against_a_second_daemon(void **state) {
    fixture_t *f = *state;
    pbsp_t *sp = open_ok(f, NULL);
    char err[512] = "";
    pbsp_recovery_t rec;
    assert_null(pbsp_open(&f->o, &rec, err, sizeof err));
    assert_non_null(strstr(err, "in use by another predbridged"));
    assert_non_null(strstr(err, f->dir));
    pbsp_close(sp);
    sp = open_ok(f, NULL); /* released on close */
    pbsp_close(sp);
}

static void test_spool_names_an_unusable_directory(void **state) {
    fixture_t *f = *state;
    char file[128], err[512] = "";
    snprintf(file, sizeof file, "%s/plainfile", f->dir);
    FILE *fp = fopen(file, "w");
    fclose(fp);
    f->o.dir = file;
    pbsp_recovery_t rec;
    assert_null(pbsp_open(&f->o, &rec, err, sizeof err));
    assert_non_null(strstr(err, "spool.dir"));
    assert_non_null(strstr(err, file));
}

static void test_spool_sets_refused_records_aside(void **state) {
    fixture_t *f = *state;
    pbsp_t *sp = open_ok(f, NULL);
    append(sp, 0);
    commit(sp);
    void *ref = expect_next(sp, 0);
    assert_int_equal(pbsp_set_aside(sp, ref, "{\"i\":0}", 7), 0);
    pbsp_usage_t u;
    pbsp_get_usage(sp, &u);
    assert_int_equal(u.records, 0);
    assert_int_equal(u.set_aside, 1);
    pbsp_close(sp);
    char path[128], line[64] = "";
    snprintf(path, sizeof path, "%s/failed.ndjson", f->dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(line, sizeof line, fp));
    fclose(fp);
    assert_string_equal(line, "{\"i\":0}\n");
}

static void test_spool_fsync_policy_names(void **state) {
    (void)state;
    assert_int_equal(pbsp_fsync_parse("always"), PBSP_FSYNC_ALWAYS);
    assert_int_equal(pbsp_fsync_parse("interval"), PBSP_FSYNC_INTERVAL);
    assert_int_equal(pbsp_fsync_parse("never"), PBSP_FSYNC_NEVER);
    assert_int_equal(pbsp_fsync_parse("sometimes"), -1);
}

int main(void) {
    pblog_setup(PBLOG_ERROR, PBLOG_TEXT, "test_spool");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_spool_replays_every_record_in_order_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_reserves_a_new_segments_space_beyond_its_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_first_record_is_next_to_send_only_when_caught_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_deletes_segments_once_all_their_records_are_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_tick_starts_a_delivered_active_segment_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_reuses_a_delivered_segment_and_never_replays_its_old_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_crash_replays_only_from_the_last_written_delivery_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_cuts_a_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_moves_a_damaged_middle_record_aside_and_replays_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_refuses_appends_beyond_its_size_bound_until_records_retire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_acknowledges_only_what_the_policy_made_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_directory_is_locked_against_a_second_daemon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_names_an_unusable_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_sets_refused_records_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_always_never_acknowledges_records_whose_fdatasync_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_interval_never_acknowledges_records_whose_fdatasync_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_interval_rotation_leaves_the_closed_segment_to_the_syncer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_interval_failed_sync_of_a_closed_segment_fails_its_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_interval_syncs_the_directory_before_a_closed_segment_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_interval_failure_after_a_good_sync_reports_only_later_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_full_disk_reported_by_fdatasync_pauses_until_space_returns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_refuses_to_open_when_a_segment_cannot_be_read_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_recovers_through_short_and_interrupted_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_refuses_to_open_without_memory_to_list_its_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_damage_found_at_run_time_accounts_for_every_record_it_covers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_replays_every_record_when_a_segment_header_is_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_refuses_a_segment_of_another_format_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_upgrades_a_format_1_segment_and_replays_it, setup, teardown),
        cmocka_unit_test(test_spool_fsync_policy_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
