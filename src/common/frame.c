/* frame.c: splits a byte stream into bounded newline-delimited lines (pure, no I/O; see frame.h). */
#include "common/frame.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * Canonical positions. Whatever the chunking of the input, every item is reported when one
 * particular byte of the stream is consumed, and that byte counts as consumed when the callback
 * runs. That is what makes a resumed feed after an early stop (and any split of the input) produce
 * exactly the same sequence of items:
 *   - LINE: at its '\n';
 *   - OVERSIZE: at raw byte index max_line of the line (the first byte past the limit) unless that
 *     byte is '\r', because "<max_line bytes>\r\n" is a valid line; then at the next byte (which
 *     is not '\n'), and the reported length is max_line + 2.
 * So a line being assembled has at most max_line + 1 raw bytes, the last being a pending '\r':
 * the buffer is allocated once with that capacity and never grows.
 */

int pbframe_init(pbframe_t *f, size_t max_line) {
    memset(f, 0, sizeof *f);
    /* max_line + 2 (content, '\r', '\n') must not wrap. */
    if (max_line == 0 || max_line > SIZE_MAX - 2) {
        errno = EINVAL;
        return -1;
    }
    f->buf = malloc(max_line + 1);
    if (!f->buf) return -1;
    f->max_line = max_line;
    f->line_no = 1;
    return 0;
}

void pbframe_free(pbframe_t *f) {
    if (!f) return;
    free(f->buf);
    memset(f, 0, sizeof *f);
}

/* Raw byte i of the line being assembled: buffered bytes first, then the current input. */
static char pbframe_raw_at(const pbframe_t *f, const char *in, size_t i) {
    return i < f->len ? f->buf[i] : in[i - f->len];
}

static size_t pbframe_sat_add(size_t a, size_t b) {
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* Enters the discarding state for an oversize line of which `seen` raw bytes were seen. */
static void pbframe_start_discard(pbframe_t *f, size_t seen) {
    f->len = 0;
    f->discarding = 1;
    f->discarded = seen;
}

int pbframe_feed(pbframe_t *f, const char *data, size_t len, size_t *consumed, pbframe_cb cb, void *ctx) {
    size_t pos = 0;
    int rc = 0;

    while (pos < len && rc == 0) {
        const char *in = data + pos;
        size_t avail = len - pos;

        if (f->discarding) {
            const char *nl = memchr(in, '\n', avail);
            if (!nl) {
                f->discarded = pbframe_sat_add(f->discarded, avail);
                pos = len;
                break;
            }
            /* The oversize line ends here; it was reported when it went over the limit. */
            pos += (size_t)(nl - in) + 1;
            f->discarding = 0;
            f->discarded = 0;
            f->line_no++;
            continue;
        }

        /* A '\n' can come at most at raw index max_line + 1 of a line that is within bounds, so
         * never scan further than that: an oversize line costs O(max_line), not O(its length). */
        size_t limit = f->max_line + 2 - f->len;
        size_t scan = avail < limit ? avail : limit;
        const char *nl = memchr(in, '\n', scan);
        size_t n = nl ? (size_t)(nl - in) : scan; /* raw bytes of this line in the input */
        size_t total = f->len + n;                /* raw bytes of the line so far, without '\n' */

        /* Over the limit? (See the canonical positions above.) */
        if (total > f->max_line && pbframe_raw_at(f, in, f->max_line) != '\r') {
            pos += f->max_line + 1 - f->len;
            pbframe_start_discard(f, f->max_line + 1);
            rc = cb(ctx, PBFRAME_OVERSIZE, f->line_no, NULL, f->max_line + 1);
            continue;
        }
        if (total > f->max_line + 1) { /* '\r' at index max_line, and no '\n' after it */
            pos += f->max_line + 2 - f->len;
            pbframe_start_discard(f, f->max_line + 2);
            rc = cb(ctx, PBFRAME_OVERSIZE, f->line_no, NULL, f->max_line + 2);
            continue;
        }

        if (!nl) {
            /* Incomplete line within bounds: keep it for the next feed. */
            memcpy(f->buf + f->len, in, n);
            f->len = total;
            pos = len;
            break;
        }

        /* A complete line. Zero-copy when nothing is buffered: the daemon's hot path. */
        const char *line = in;
        if (f->len > 0) {
            memcpy(f->buf + f->len, in, n);
            line = f->buf;
        }
        size_t clen = total;
        if (clen > 0 && line[clen - 1] == '\r') clen--;
        uint64_t line_no = f->line_no++;
        f->len = 0;
        pos += n + 1;
        if (clen > 0) rc = cb(ctx, PBFRAME_LINE, line_no, line, clen);
    }

    if (consumed) *consumed = pos;
    return rc;
}

int pbframe_finish(pbframe_t *f, pbframe_cb cb, void *ctx) {
    int rc = 0;

    if (!f->discarding && f->len > 0) {
        /* Only a pending '\r' at index max_line can make the buffer longer than max_line; with no
         * '\n' to follow, that '\r' is content and the line is over the limit. */
        if (f->len > f->max_line)
            rc = cb(ctx, PBFRAME_OVERSIZE, f->line_no, NULL, f->len);
        else
            rc = cb(ctx, PBFRAME_PARTIAL, f->line_no, f->buf, f->len);
    }
    /* Reset for another stream; the buffer is kept. */
    f->len = 0;
    f->discarding = 0;
    f->discarded = 0;
    f->line_no = 1;
    return rc;
}
