/* fuzz_frame_record.c: libFuzzer target for the daemon's input path: framing (any chunking, with
 * backpressure stops) checked against a naive model, then validation and envelope of every line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/frame.h"
#include "common/record.h"

/*
 * Input layout: 3 header bytes, then the stream.
 *   byte 0: max_line: 256 if < 0x80, else 1 + (byte & 0x3f) (small limits hit the edges);
 *   byte 1: chunking: 0 = whole stream in one feed, else chunks of 1..byte bytes (xorshift);
 *   byte 2: backpressure: the callback stops the feed after every (byte % 8)-th item (0: never).
 * Each chunk is copied into its own exactly-sized heap block so that ASan catches any read past the
 * end of a chunk, e.g. by a zero-copy line.
 */

#define FUZZ_NOW_NS 1764078833123456789LL /* 2025-11-25T13:53:53.123Z */
#define FUZZ_CHECK(cond)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) abort();                                                                                \
    } while (0)

typedef struct {
    pbframe_kind_t kind;
    uint64_t line_no;
    size_t len;
    size_t off; /* into bytes, when data was non-NULL */
    int has_data;
} fitem_t;

typedef struct {
    fitem_t *items;
    size_t n, cap;
    char *bytes;
    size_t blen, bcap;
} fitems_t;

typedef struct {
    fitems_t got;
    size_t max_line;
    unsigned stop_every;
    uint64_t last_line;
} fctx_t;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fitems_push(fitems_t *v, pbframe_kind_t kind, uint64_t line_no, const char *data, size_t len) {
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 64;
        v->items = realloc(v->items, v->cap * sizeof *v->items);
        FUZZ_CHECK(v->items);
    }
    fitem_t *it = &v->items[v->n++];
    it->kind = kind;
    it->line_no = line_no;
    it->len = len;
    it->has_data = data != NULL;
    it->off = v->blen;
    if (data) {
        if (v->blen + len > v->bcap) {
            v->bcap = 2 * (v->blen + len) + 64;
            v->bytes = realloc(v->bytes, v->bcap);
            FUZZ_CHECK(v->bytes);
        }
        memcpy(v->bytes + v->blen, data, len);
        v->blen += len;
    }
}

static void fitems_free(fitems_t *v) {
    free(v->items);
    free(v->bytes);
}

/* An envelope must be a valid record itself, and enveloping it again must change nothing. */
static void check_envelope(json_t *obj, int had_timestamp, int64_t orig_ts_ms) {
    static const char *const required[] = {"model_version", "prediction"};
    char *value, *key;
    size_t vlen, klen;
    int64_t ts = -1;
    char reason[256];

    json_t *key_v = json_object_get(obj, "id");
    int key_ok = !key_v || json_is_string(key_v) || json_is_number(key_v);
    int rc = pbrec_envelope(obj, FUZZ_NOW_NS, "id", &value, &vlen, &key, &klen, &ts, reason, sizeof reason);
    if (rc != 0) {
        FUZZ_CHECK(!key_ok && reason[0] != '\0' && !value && !key);
        FUZZ_CHECK(json_object_get(obj, "timestamp") == NULL || had_timestamp); /* untouched */
        return;
    }
    FUZZ_CHECK(key_ok);
    FUZZ_CHECK(value && vlen == strlen(value) && !memchr(value, '\n', vlen));
    FUZZ_CHECK((key != NULL) == (key_v != NULL));
    FUZZ_CHECK(ts == (had_timestamp ? orig_ts_ms : FUZZ_NOW_NS / 1000000));

    json_t *again = NULL;
    FUZZ_CHECK(pbrec_validate(value, vlen, required, 2, &again, reason, sizeof reason) == PBREC_OK);
    char *value2, *key2;
    size_t vlen2, klen2;
    int64_t ts2;
    FUZZ_CHECK(pbrec_envelope(again, FUZZ_NOW_NS + 86400000000000LL, "id", &value2, &vlen2, &key2, &klen2,
                              &ts2, reason, sizeof reason) == 0);
    FUZZ_CHECK(vlen2 == vlen && memcmp(value, value2, vlen) == 0 && ts2 == ts);
    FUZZ_CHECK(klen2 == klen && (klen == 0 || memcmp(key, key2, klen) == 0));
    free(value2);
    free(key2);
    json_decref(again);
    free(value);
    free(key);
}

static void check_record(const char *data, size_t len) {
    static const char *const required[] = {"model_version", "prediction"};
    json_t *obj = (json_t *)1;
    char reason[256];

    pbrec_status_t st = pbrec_validate(data, len, required, 2, &obj, reason, sizeof reason);
    FUZZ_CHECK(st >= PBREC_OK && st <= PBREC_TOO_LARGE);
    FUZZ_CHECK(strcmp(pbrec_status_name(st), "unknown") != 0);
    if (st != PBREC_OK) {
        FUZZ_CHECK(obj == NULL && reason[0] != '\0');
        return;
    }
    FUZZ_CHECK(json_is_object(obj));
    json_t *mv = json_object_get(obj, "model_version");
    FUZZ_CHECK(json_is_string(mv) && json_string_length(mv) > 0);
    FUZZ_CHECK(!json_is_null(json_object_get(obj, "prediction")));
    json_t *tsv = json_object_get(obj, "timestamp");
    int64_t ts_ms = -1;
    if (tsv)
        FUZZ_CHECK(json_is_string(tsv) && pbrec_parse_time(json_string_value(tsv), &ts_ms) == 0 &&
                   ts_ms >= 0);
    check_envelope(obj, tsv != NULL, ts_ms);
    json_decref(obj);
}

/* Any accepted timestamp that int64 nanoseconds can hold survives format -> parse. */
static void check_time(const char *data, size_t len) {
    char *s = malloc(len + 1);
    FUZZ_CHECK(s);
    memcpy(s, data, len);
    s[len] = '\0';
    int64_t ms;
    if (pbrec_parse_time(s, &ms) == 0 && ms >= 0 && ms < INT64_MAX / 1000000) {
        char buf[32];
        int64_t back;
        pbrec_format_time(ms * 1000000, buf, sizeof buf);
        FUZZ_CHECK(pbrec_parse_time(buf, &back) == 0 && back == ms);
    }
    free(s);
}

static int on_item(void *vctx, pbframe_kind_t kind, uint64_t line_no, const char *data, size_t len) {
    fctx_t *ctx = vctx;

    FUZZ_CHECK(line_no > ctx->last_line); /* strictly increasing */
    ctx->last_line = line_no;
    switch (kind) {
    case PBFRAME_LINE:
        FUZZ_CHECK(data && len > 0 && len <= ctx->max_line);
        /* No '\n'; the '\r' of a CRLF is gone. Only that one '\r' is dropped (frame.h), so a line may
         * still end in '\r' when the stream had "\r\r\n": the model comparison checks that exactly. */
        FUZZ_CHECK(!memchr(data, '\n', len));
        check_record(data, len);
        check_time(data, len);
        break;
    case PBFRAME_PARTIAL:
        FUZZ_CHECK(data && len > 0 && len <= ctx->max_line && !memchr(data, '\n', len));
        break;
    case PBFRAME_OVERSIZE:
        FUZZ_CHECK(!data && (len == ctx->max_line + 1 || len == ctx->max_line + 2));
        break;
    default:
        abort();
    }
    fitems_push(&ctx->got, kind, line_no, data, len);
    return ctx->stop_every && ctx->got.n % ctx->stop_every == 0;
}

/* The rules of frame.h applied the obvious way: split on '\n' first, judge each line after. */
static void frame_model(size_t max_line, const char *s, size_t len, fitems_t *out) {
    uint64_t line_no = 1;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '\n') continue;
        const char *raw = s + start;
        size_t raw_len = i - start;
        if (i == len) {
            if (raw_len > max_line) {
                size_t seen = max_line + 1;
                if (raw[max_line] == '\r') seen = raw_len < max_line + 2 ? raw_len : max_line + 2;
                fitems_push(out, PBFRAME_OVERSIZE, line_no, NULL, seen);
            } else if (raw_len > 0) {
                fitems_push(out, PBFRAME_PARTIAL, line_no, raw, raw_len);
            }
            break;
        }
        size_t content = raw_len > 0 && raw[raw_len - 1] == '\r' ? raw_len - 1 : raw_len;
        if (content > max_line)
            fitems_push(out, PBFRAME_OVERSIZE, line_no, NULL,
                        raw[max_line] == '\r' ? max_line + 2 : max_line + 1);
        else if (content > 0)
            fitems_push(out, PBFRAME_LINE, line_no, raw, content);
        line_no++;
        start = i + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    size_t max_line = data[0] < 0x80 ? 256 : 1 + (size_t)(data[0] & 0x3f);
    uint32_t chunk_seed = data[1];
    fctx_t ctx = {.max_line = max_line, .stop_every = data[2] % 8u};
    const char *in = (const char *)data + 3;
    size_t len = size - 3;

    pbframe_t f;
    FUZZ_CHECK(pbframe_init(&f, max_line) == 0);

    size_t pos = 0, newlines = 0;
    uint32_t rng = chunk_seed * 2654435761u + 1;
    while (pos < len) {
        size_t chunk = len - pos;
        if (chunk_seed) {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            size_t want = 1 + rng % chunk_seed;
            if (want < chunk) chunk = want;
        }
        char *copy = malloc(chunk);
        FUZZ_CHECK(copy);
        memcpy(copy, in + pos, chunk);
        size_t off = 0;
        while (off < chunk) {
            size_t consumed = (size_t)-1, before = ctx.got.n;
            int rc = pbframe_feed(&f, copy + off, chunk - off, &consumed, on_item, &ctx);
            FUZZ_CHECK(consumed <= chunk - off);
            if (rc == 0)
                FUZZ_CHECK(consumed == chunk - off);
            else
                FUZZ_CHECK(rc == 1 && consumed > 0 && ctx.got.n > before); /* progress, so no livelock */
            off += consumed;
        }
        free(copy);
        pos += chunk;
    }
    FUZZ_CHECK(pos == len); /* every byte accounted for */
    for (size_t i = 0; i < len; i++)
        newlines += in[i] == '\n';
    FUZZ_CHECK(f.line_no == newlines + 1); /* every line counted, empty and oversize ones too */
    (void)pbframe_finish(&f, on_item, &ctx);
    FUZZ_CHECK(f.len == 0 && !f.discarding && f.line_no == 1);
    pbframe_free(&f);

    fitems_t want = {0};
    frame_model(max_line, in, len, &want);
    FUZZ_CHECK(want.n == ctx.got.n);
    for (size_t i = 0; i < want.n; i++) {
        const fitem_t *a = &want.items[i], *b = &ctx.got.items[i];
        FUZZ_CHECK(a->kind == b->kind && a->line_no == b->line_no && a->len == b->len &&
                   a->has_data == b->has_data);
        if (a->has_data) FUZZ_CHECK(memcmp(want.bytes + a->off, ctx.got.bytes + b->off, a->len) == 0);
    }
    fitems_free(&want);
    fitems_free(&ctx.got);
    return 0;
}
