/* frame.h: splits a byte stream into bounded newline-delimited lines (pure, no I/O). */
#ifndef PB_COMMON_FRAME_H
#define PB_COMMON_FRAME_H

#include <stddef.h>
#include <stdint.h>

/*
 * A framer accumulates bytes from reads and yields complete lines:
 *   - '\n' ends a line; a '\r' just before it is dropped (CRLF accepted);
 *   - empty lines (after CR removal) are skipped, not yielded;
 *   - a line longer than max_line bytes (excluding the line ending) is not buffered: it is reported
 *     once as PBFRAME_OVERSIZE (with its length so far) and its remaining bytes are discarded up to
 *     the next '\n', after which framing continues normally (resynchronisation);
 *   - at end of stream, pbframe_finish reports a non-empty partial line as PBFRAME_PARTIAL.
 * Lines are numbered from 1 counting every line of the stream including empty and oversize ones,
 * so acknowledgements and logs can name them.
 */

typedef enum {
    PBFRAME_LINE = 0,     /* data/len is one complete line without its ending */
    PBFRAME_OVERSIZE = 1, /* a line exceeded max_line; len is how many bytes were seen before giving up
                           * (max_line + 1, or max_line + 2 when byte max_line was a '\r'); data is NULL */
    PBFRAME_PARTIAL = 2,  /* end of stream inside a line; data/len is what was received */
} pbframe_kind_t;

/* Called for each framed item. Return 0 to continue, non-zero to stop pbframe_feed early (the
 * unconsumed input is reported through *consumed so the caller can resume later: backpressure). */
typedef int (*pbframe_cb)(void *ctx, pbframe_kind_t kind, uint64_t line_no, const char *data, size_t len);

typedef struct pbframe {
    char *buf; /* partial line, capacity max_line + 1 (room for a '\r' that may precede '\n') */
    size_t len;
    size_t max_line;
    uint64_t line_no;     /* number of the line being assembled */
    int discarding;       /* inside an oversize line */
    size_t discarded;     /* bytes of the oversize line seen so far */
} pbframe_t;

/* Returns 0 or -1 (allocation). max_line >= 1. */
__attribute__((warn_unused_result)) int pbframe_init(pbframe_t *f, size_t max_line);
void pbframe_free(pbframe_t *f);

/* Feeds len bytes. Calls cb for each item; stops early if cb returns non-zero. *consumed is the
 * number of input bytes processed (len unless stopped early). Returns the last non-zero cb result or 0. */
int pbframe_feed(pbframe_t *f, const char *data, size_t len, size_t *consumed, pbframe_cb cb, void *ctx);

/* End of stream: reports a pending partial line (PBFRAME_PARTIAL, raw: a trailing '\r' is kept) or
 * oversize tail, then resets (line numbers restart at 1). Nothing if an oversize line was being
 * discarded: it was already reported. */
int pbframe_finish(pbframe_t *f, pbframe_cb cb, void *ctx);

#endif
