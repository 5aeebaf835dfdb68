/* spool.h: predbridged's on-disk spool. Every accepted prediction is appended here before it is
 * acknowledged, handed to the producer in order, and retired once the broker acknowledged it.
 *
 * Layout: spool.dir holds segment files "seg-<20-digit number>.pbs", each a 28-byte header
 * ("PBSPOOL" and the format version '2', the segment number, the delivery mark: every record with a
 * lower seq was delivered, and the CRC-32C of those 24 bytes; little-endian) followed by records:
 *     magic "PBR1" | u32 body length | u32 CRC-32C of the body | body
 *     body = u64 seq | i64 timestamp_ms | u8 id length | u16 model length | u32 key length |
 *            u32 value length | id | model_version | key | value
 * A segment's space (segment_bytes) is reserved when it is created (fallocate, FALLOC_FL_KEEP_SIZE:
 * the file's size stays what was written). A segment is deleted once every record in it was
 * delivered; one of at least half a segment's size is kept instead, renamed "spare.pbs", and
 * becomes the next segment: its header is written over and then its records, over the cached
 * pages (a delivered active segment starts over the same way). The old records beyond the new
 * ones' end have lower seqs: recovery stops where seqs stop growing, unless a record further on
 * continues them (then what lies between is damage), and neither replays nor reports them. A
 * spare left by a stop that was not clean is deleted at open. The mark is rewritten after every
 * 1,024 deliveries and once a second. At open, records
 * at or above the mark are replayed: some may be duplicates of records the broker already has
 * (delivered out of order, or after the mark was last written); their pb-id is the same, so
 * libpredbridge drops them. A segment whose header fails
 * its checksum is replayed whole; one of another format version stops pbsp_open.
 *
 * Durability ("accepted" means pbsp_durable_seq() >= the record's seq):
 *   never:    written to the file (the page cache): survives the process being killed, not a
 *             power failure or kernel crash.
 *   interval: as never, and fdatasync'd by a background thread at most spool.fsync_interval_ms
 *             after the write (group commit): survives a power failure once acknowledged.
 *   always:   fdatasync'd by the event loop after each batch of appends, before any of them is
 *             acknowledged: as interval, with the least acknowledgement latency and the most fsyncs.
 *
 * Threading: everything runs on the event loop's thread; only the interval syncer is a thread of
 * its own. It calls fdatasync on the active segment and on a segment just closed (which it makes
 * durable first, so that closing a segment does not wait for the disk unless the one closed before
 * is still being synced), and fsync on the directory before the first sync after a segment was
 * created. */
#ifndef PB_DAEMON_SPOOL_H
#define PB_DAEMON_SPOOL_H

#include "producer.h"

#include <stdint.h>

typedef struct pbsp pbsp_t;

typedef enum { PBSP_FSYNC_ALWAYS = 0, PBSP_FSYNC_INTERVAL = 1, PBSP_FSYNC_NEVER = 2 } pbsp_fsync_t;

typedef struct pbsp_options {
    const char *dir;        /* created (0700) if missing */
    pbsp_fsync_t fsync;
    int fsync_interval_ms;  /* interval only */
    uint64_t max_bytes;     /* bound on the segment files' total size: beyond it, pbsp_append says FULL */
    uint64_t segment_bytes; /* a segment is closed once it reaches this size (at most max_bytes / 4) */
} pbsp_options_t;

/* What pbsp_open found. */
typedef struct pbsp_recovery {
    uint64_t records;    /* records to replay */
    uint64_t segments;   /* segment files holding them */
    uint64_t torn_bytes; /* cut off the end of segments: records whose write never completed */
    uint64_t corrupt;    /* damaged records in the middle of a segment, moved aside to corrupt/ */
    int64_t elapsed_ms;
} pbsp_recovery_t;

typedef enum {
    PBSP_OK = 0,
    PBSP_FULL = 1,  /* spool.max_bytes reached, or the disk is full: retry after records retire */
    PBSP_ERROR = 2, /* the spool cannot be written (I/O error); errstr says why */
} pbsp_status_t;

/* Opens (creating if needed) and locks the spool directory, and recovers what is in it: torn tails
 * are truncated, corrupt records moved aside, the rest queued for replay. Returns NULL with errstr
 * naming the directory or file at fault (also when another predbridged holds the lock, when a segment
 * cannot be read whole: nothing is truncated then, and without memory). */
pbsp_t *pbsp_open(const pbsp_options_t *o, pbsp_recovery_t *rec, char *errstr, size_t errstr_size);

/* Syncs what is written (per the policy) and closes. Undelivered records stay for the next start. */
void pbsp_close(pbsp_t *sp);

/* Where an appended record stands. ref identifies it to pbsp_retire / pbsp_set_aside (it is a
 * tagged pointer: its low bit is 1, so it can share a void * with ordinary, aligned pointers). */
typedef struct pbsp_ticket {
    uint64_t seq;
    void *ref;
    int next_to_send; /* 1: every earlier record was handed to the producer; the caller may hand this
                         one over from memory and then call pbsp_advance */
} pbsp_ticket_t;

/* Appends a record to the write buffer (written to the file by pbsp_commit, or sooner when the
 * buffer fills). Returns PBSP_OK with *t, PBSP_FULL (nothing appended), or PBSP_ERROR. */
pbsp_status_t pbsp_append(pbsp_t *sp, const pbd_record_t *r, pbsp_ticket_t *t, char *errstr, size_t errstr_size);

/* Ends a batch of appends: writes the buffer and applies the fsync policy (always: fdatasync now;
 * interval: wakes the syncer). Returns PBSP_OK, PBSP_FULL (the disk is full: what is buffered stays
 * and is written later; pbsp_full() is true meanwhile) or PBSP_ERROR. */
pbsp_status_t pbsp_commit(pbsp_t *sp, char *errstr, size_t errstr_size);

/* Every record with seq <= this is durable per the policy, or was reported by pbsp_take_failed. */
uint64_t pbsp_durable_seq(const pbsp_t *sp);

/* Records whose fdatasync failed (interval, always): 1 with the seqs lo..hi and why (for the writers'
 * replies), once per failure; 0 if there is none. They must not be acknowledged as accepted: a later
 * successful sync of the same file does not write them (Linux reports a writeback error only once),
 * which is why pbsp_durable_seq stays below lo until they are taken. They stay in the spool and are
 * still sent if they can be read back. The segment holding them is sealed: appends go to a new one. */
int pbsp_take_failed(pbsp_t *sp, uint64_t *lo, uint64_t *hi, char *why, size_t why_size);

/* Interval policy: readable when pbsp_durable_seq advanced; call pbsp_serve then. -1 otherwise. */
int pbsp_event_fd(const pbsp_t *sp);
void pbsp_serve(pbsp_t *sp);

/* The next record not yet handed to the producer, read back from disk: returns 1 with *r (r->value
 * is malloc'd and becomes the caller's; id, key and model_version point into the spool and stay
 * valid until the next call), *ref and *seq, 0 when there is none, -1 on a read error (errstr). */
int pbsp_peek(pbsp_t *sp, pbd_record_t *r, void **ref, uint64_t *seq, char *errstr, size_t errstr_size);

/* The record at the head (the one pbsp_peek returned, or the one whose ticket said next_to_send) was
 * handed to the producer. */
void pbsp_advance(pbsp_t *sp);

/* The seq of the record a ref stands for (its acceptance order). */
uint64_t pbsp_ref_seq(const void *ref);

/* The broker acknowledged the record: it no longer needs the spool. */
void pbsp_retire(pbsp_t *sp, void *ref);

/* The broker refused the record for good: its value is appended as one line to failed.ndjson in the
 * spool directory (so it can be inspected and sent again), then it is retired. Returns 0, or -1 if it
 * could not be written (it is then kept in the spool and replayed at the next start). */
int pbsp_set_aside(pbsp_t *sp, void *ref, const void *value, size_t value_len);

/* Once a second: empties the active segment when everything in it was delivered, retries a write
 * that failed because the disk was full (or, if fdatasync said so, checks whether space is back), and
 * retries moving appends off a segment whose sync failed. */
void pbsp_tick(pbsp_t *sp);

/* 1 while appends would return PBSP_FULL (size bound or disk full); pbsp_disk_full: the disk. */
int pbsp_full(const pbsp_t *sp);
int pbsp_disk_full(const pbsp_t *sp);

typedef struct pbsp_usage {
    uint64_t bytes;   /* segment files' total size, buffered bytes included */
    uint64_t records; /* not yet delivered */
    uint64_t unsent;  /* not yet handed to the producer */
    uint64_t set_aside;
    uint64_t sync_failures; /* fdatasyncs that failed: their records were answered failed, not accepted */
} pbsp_usage_t;
void pbsp_get_usage(const pbsp_t *sp, pbsp_usage_t *u);

/* "always", "interval", "never" -> policy; -1 for anything else. */
int pbsp_fsync_parse(const char *name);

#endif
