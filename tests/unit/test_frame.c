/* test_frame.c: unit tests of the line framer (common/frame.c): endings, limits, resumption. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/frame.h"

#define MAX_ITEMS 4096

typedef struct {
    pbframe_kind_t kind;
    uint64_t line_no;
    size_t len;
    char *copy;       /* NUL-terminated copy of data (NULL when data was NULL) */
    const char *data; /* the pointer the framer passed */
} item_t;

typedef struct {
    item_t items[MAX_ITEMS];
    size_t n;
    int stop_every; /* return non-zero after every stop_every-th item (0: never) */
    int stop_value;
} collector_t;

static int collect(void *ctx, pbframe_kind_t kind, uint64_t line_no, const char *data, size_t len) {
    collector_t *c = ctx;
    assert_true(c->n < MAX_ITEMS);
    item_t *it = &c->items[c->n++];
    it->kind = kind;
    it->line_no = line_no;
    it->len = len;
    it->data = data;
    it->copy = NULL;
    if (data) {
        it->copy = malloc(len + 1);
        assert_non_null(it->copy);
        memcpy(it->copy, data, len);
        it->copy[len] = '\0';
    }
    if (c->stop_every > 0 && c->n % (size_t)c->stop_every == 0) return c->stop_value ? c->stop_value : 1;
    return 0;
}

static collector_t *collector_new(void) {
    collector_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    return c;
}

static void collector_free(collector_t *c) {
    for (size_t i = 0; i < c->n; i++)
        free(c->items[i].copy);
    free(c);
}

static void assert_item(const collector_t *c, size_t i, pbframe_kind_t kind, uint64_t line_no,
                        const char *text, size_t len) {
    assert_true(i < c->n);
    assert_int_equal(c->items[i].kind, kind);
    assert_int_equal(c->items[i].line_no, line_no);
    assert_int_equal(c->items[i].len, len);
    if (text) {
        assert_non_null(c->items[i].copy);
        assert_memory_equal(c->items[i].copy, text, len);
    } else {
        assert_null(c->items[i].data);
    }
}

/* Feeds all of s in one call (never stopping) and finishes. */
static void frame_all(size_t max_line, const char *s, size_t len, collector_t *c) {
    pbframe_t f;
    assert_int_equal(pbframe_init(&f, max_line), 0);
    size_t consumed = 99;
    assert_int_equal(pbframe_feed(&f, s, len, &consumed, collect, c), 0);
    assert_int_equal(consumed, len);
    assert_int_equal(pbframe_finish(&f, collect, c), 0);
    pbframe_free(&f);
}

/* Small deterministic PRNG so failures reproduce. */
static uint32_t rng_next(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/*
 * Feeds s in chunks of 1..max_chunk bytes (max_chunk 0: whole), with the collector possibly
 * stopping early; resumes with the unconsumed rest exactly as a caller under backpressure would.
 */
static void frame_split(size_t max_line, const char *s, size_t len, size_t max_chunk, uint32_t seed,
                        collector_t *c) {
    pbframe_t f;
    assert_int_equal(pbframe_init(&f, max_line), 0);
    size_t pos = 0;
    while (pos < len) {
        size_t chunk = len - pos;
        if (max_chunk > 0) {
            size_t want = 1 + rng_next(&seed) % max_chunk;
            if (want < chunk) chunk = want;
        }
        size_t off = 0;
        while (off < chunk) {
            size_t consumed = 0;
            size_t before = c->n;
            int rc = pbframe_feed(&f, s + pos + off, chunk - off, &consumed, collect, c);
            assert_true(consumed <= chunk - off);
            if (rc != 0) {
                /* Stopped by the callback: an item was produced and at least one byte consumed. */
                assert_true(c->n > before);
                assert_true(consumed > 0);
            } else {
                assert_int_equal(consumed, chunk - off);
            }
            off += consumed;
        }
        pos += chunk;
    }
    (void)pbframe_finish(&f, collect, c);
    pbframe_free(&f);
}

static void assert_same_items(const collector_t *a, const collector_t *b) {
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->items[i].kind, b->items[i].kind);
        assert_int_equal(a->items[i].line_no, b->items[i].line_no);
        assert_int_equal(a->items[i].len, b->items[i].len);
        assert_true((a->items[i].copy == NULL) == (b->items[i].copy == NULL));
        if (a->items[i].copy) assert_memory_equal(a->items[i].copy, b->items[i].copy, a->items[i].len);
    }
}

#define S(lit) lit, sizeof(lit) - 1

static void test_frame_init_zero_max_line_fails(void **state) {
    (void)state;
    pbframe_t f;
    assert_int_equal(pbframe_init(&f, 0), -1);
    assert_null(f.buf);
    pbframe_free(&f); /* safe after a failed init */
    assert_int_equal(pbframe_init(&f, SIZE_MAX), -1);
    pbframe_free(&f);
}

static void test_frame_free_twice_is_safe(void **state) {
    (void)state;
    pbframe_t f;
    assert_int_equal(pbframe_init(&f, 8), 0);
    assert_non_null(f.buf);
    pbframe_free(&f);
    assert_null(f.buf);
    pbframe_free(&f);
    pbframe_free(NULL);
}

static void test_frame_lines_yielded_in_order_with_numbers(void **state) {
    (void)state;
    collector_t *c = collector_new();
    frame_all(64, S("{\"a\":1}\n{\"b\":2}\nthird\n"), c);
    assert_int_equal(c->n, 3);
    assert_item(c, 0, PBFRAME_LINE, 1, S("{\"a\":1}"));
    assert_item(c, 1, PBFRAME_LINE, 2, S("{\"b\":2}"));
    assert_item(c, 2, PBFRAME_LINE, 3, S("third"));
    collector_free(c);
}

static void test_frame_crlf_cr_dropped_only_before_lf(void **state) {
    (void)state;
    collector_t *c = collector_new();
    frame_all(64, S("one\r\na\rb\n\r\r\nx\r\r\n"), c);
    assert_int_equal(c->n, 4);
    assert_item(c, 0, PBFRAME_LINE, 1, S("one"));
    assert_item(c, 1, PBFRAME_LINE, 2, S("a\rb"));
    assert_item(c, 2, PBFRAME_LINE, 3, S("\r")); /* "\r\r\n": only the last CR is a line ending */
    assert_item(c, 3, PBFRAME_LINE, 4, S("x\r"));
    collector_free(c);
}

static void test_frame_empty_lines_skipped_but_counted(void **state) {
    (void)state;
    collector_t *c = collector_new();
    frame_all(64, S("\na\n\n\r\nb\n\n"), c);
    assert_int_equal(c->n, 2);
    assert_item(c, 0, PBFRAME_LINE, 2, S("a"));
    assert_item(c, 1, PBFRAME_LINE, 5, S("b"));
    collector_free(c);
}

static void test_frame_line_of_exactly_max_line_accepted(void **state) {
    (void)state;
    collector_t *c = collector_new();
    frame_all(4, S("abcd\nefgh\r\n"), c);
    assert_int_equal(c->n, 2);
    assert_item(c, 0, PBFRAME_LINE, 1, S("abcd"));
    assert_item(c, 1, PBFRAME_LINE, 2, S("efgh"));
    collector_free(c);
}

static void test_frame_max_line_crlf_split_across_feeds_accepted(void **state) {
    (void)state;
    collector_t *c = collector_new();
    pbframe_t f;
    size_t consumed;
    assert_int_equal(pbframe_init(&f, 4), 0);
    assert_int_equal(pbframe_feed(&f, S("abcd\r"), &consumed, collect, c), 0);
    assert_int_equal(consumed, 5);
    assert_int_equal(c->n, 0); /* undecided: the '\r' may be a line ending */
    assert_int_equal(pbframe_feed(&f, S("\n"), &consumed, collect, c), 0);
    assert_int_equal(c->n, 1);
    assert_item(c, 0, PBFRAME_LINE, 1, S("abcd"));
    pbframe_free(&f);
    collector_free(c);
}

static void test_frame_oversize_reported_once_then_resyncs(void **state) {
    (void)state;
    collector_t *c = collector_new();
    frame_all(4, S("ok\nabcdefghijklmnop\nnext\n"), c);
    assert_int_equal(c->n, 3);
    assert_item(c, 0, PBFRAME_LINE, 1, S("ok"));
    assert_item(c, 1, PBFRAME_OVERSIZE, 2, NULL, 5); /* max_line + 1 bytes seen */
    assert_item(c, 2, PBFRAME_LINE, 3, S("next"));
    collector_free(c);
}

static void test_frame_oversize_by_one_byte_reported(void **state) {
    (void)state;
    collector_t *c = collector_new();
    frame_all(4, S("abcde\nz\n"), c);
    assert_int_equal(c->n, 2);
    assert_item(c, 0, PBFRAME_OVERSIZE, 1, NULL, 5);
    assert_item(c, 1, PBFRAME_LINE, 2, S("z"));
    collector_free(c);
}

static void test_frame_oversize_cr_not_before_lf_counts_as_content(void **state) {
    (void)state;
    collector_t *c = collector_new();
    /* "abcd\r" then 'x': the CR is content, so the line is over 4 bytes; seen 6 bytes. */
    frame_all(4, S("abcd\rx\nok\nabcd\r\r\n"), c);
    assert_int_equal(c->n, 3);
    assert_item(c, 0, PBFRAME_OVERSIZE, 1, NULL, 6);
    assert_item(c, 1, PBFRAME_LINE, 2, S("ok"));
    assert_item(c, 2, PBFRAME_OVERSIZE, 3, NULL, 6); /* "abcd\r" content is 5 bytes */
    collector_free(c);
}

static void test_frame_oversize_across_many_feeds_reported_once(void **state) {
    (void)state;
    collector_t *c = collector_new();
    pbframe_t f;
    size_t consumed;
    assert_int_equal(pbframe_init(&f, 8), 0);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(pbframe_feed(&f, S("0123456789"), &consumed, collect, c), 0);
        assert_int_equal(consumed, 10);
    }
    assert_int_equal(c->n, 1);
    assert_item(c, 0, PBFRAME_OVERSIZE, 1, NULL, 9);
    assert_int_equal(f.discarding, 1);
    assert_int_equal(f.discarded, 1000);
    assert_int_equal(pbframe_feed(&f, S("tail\nnew\n"), &consumed, collect, c), 0);
    assert_int_equal(c->n, 2);
    assert_item(c, 1, PBFRAME_LINE, 2, S("new"));
    pbframe_free(&f);
    collector_free(c);
}

static void test_frame_finish_partial_line_reported(void **state) {
    (void)state;
    collector_t *c = collector_new();
    frame_all(16, S("a\n\n{\"x\":"), c);
    assert_int_equal(c->n, 2);
    assert_item(c, 0, PBFRAME_LINE, 1, S("a"));
    assert_item(c, 1, PBFRAME_PARTIAL, 3, S("{\"x\":"));
    collector_free(c);
}

static void test_frame_finish_partial_keeps_trailing_cr(void **state) {
    (void)state;
    collector_t *c = collector_new();
    frame_all(16, S("abc\r"), c);
    assert_int_equal(c->n, 1);
    assert_item(c, 0, PBFRAME_PARTIAL, 1, S("abc\r"));
    collector_free(c);
}

static void test_frame_finish_max_line_plus_cr_is_oversize(void **state) {
    (void)state;
    collector_t *c = collector_new();
    frame_all(4, S("abcd\r"), c);
    assert_int_equal(c->n, 1);
    assert_item(c, 0, PBFRAME_OVERSIZE, 1, NULL, 5);
    collector_free(c);
}

static void test_frame_finish_while_discarding_reports_nothing(void **state) {
    (void)state;
    collector_t *c = collector_new();
    frame_all(4, S("abcdefgh"), c);
    assert_int_equal(c->n, 1); /* the oversize report from feed, nothing from finish */
    assert_item(c, 0, PBFRAME_OVERSIZE, 1, NULL, 5);
    collector_free(c);
}

static void test_frame_finish_after_complete_lines_reports_nothing(void **state) {
    (void)state;
    collector_t *c = collector_new();
    frame_all(4, S("ab\n"), c);
    assert_int_equal(c->n, 1);
    collector_free(c);
}

static void test_frame_finish_resets_line_numbers(void **state) {
    (void)state;
    collector_t *c = collector_new();
    pbframe_t f;
    size_t consumed;
    assert_int_equal(pbframe_init(&f, 8), 0);
    assert_int_equal(pbframe_feed(&f, S("a\nb\npart"), &consumed, collect, c), 0);
    assert_int_equal(pbframe_finish(&f, collect, c), 0);
    assert_int_equal(pbframe_feed(&f, S("c\n"), &consumed, collect, c), 0);
    assert_int_equal(c->n, 4);
    assert_item(c, 2, PBFRAME_PARTIAL, 3, S("part"));
    assert_item(c, 3, PBFRAME_LINE, 1, S("c"));
    pbframe_free(&f);
    collector_free(c);
}

static void test_frame_complete_line_in_chunk_is_zero_copy(void **state) {
    (void)state;
    collector_t *c = collector_new();
    pbframe_t f;
    size_t consumed;
    static const char in[] = "first\nsecond\nthi";
    assert_int_equal(pbframe_init(&f, 64), 0);
    assert_int_equal(pbframe_feed(&f, in, sizeof in - 1, &consumed, collect, c), 0);
    assert_int_equal(c->n, 2);
    assert_ptr_equal(c->items[0].data, in);
    assert_ptr_equal(c->items[1].data, in + 6);
    /* A line completed across feeds comes from the framer's own buffer. */
    assert_int_equal(pbframe_feed(&f, S("rd\n"), &consumed, collect, c), 0);
    assert_int_equal(c->n, 3);
    assert_ptr_equal(c->items[2].data, f.buf);
    assert_item(c, 2, PBFRAME_LINE, 3, S("third"));
    pbframe_free(&f);
    collector_free(c);
}

static void test_frame_many_lines_one_chunk_never_copied(void **state) {
    (void)state;
    enum { LINES = 2000, LEN = 300 };
    char *in = malloc((size_t)LINES * (LEN + 1));
    assert_non_null(in);
    for (size_t i = 0; i < LINES; i++) {
        memset(in + i * (LEN + 1), 'a' + (int)(i % 26), LEN);
        in[i * (LEN + 1) + LEN] = '\n';
    }
    collector_t *c = collector_new();
    pbframe_t f;
    size_t consumed;
    assert_int_equal(pbframe_init(&f, 1024), 0);
    assert_int_equal(pbframe_feed(&f, in, (size_t)LINES * (LEN + 1), &consumed, collect, c), 0);
    assert_int_equal(c->n, LINES);
    for (size_t i = 0; i < LINES; i++) {
        assert_ptr_equal(c->items[i].data, in + i * (LEN + 1));
        assert_int_equal(c->items[i].len, LEN);
        assert_int_equal(c->items[i].line_no, i + 1);
    }
    pbframe_free(&f);
    collector_free(c);
    free(in);
}

static void test_frame_callback_stop_reports_consumed_and_value(void **state) {
    (void)state;
    collector_t *c = collector_new();
    c->stop_every = 1;
    c->stop_value = 7;
    pbframe_t f;
    size_t consumed = 0;
    static const char in[] = "aa\nbb\ncc\n";
    assert_int_equal(pbframe_init(&f, 8), 0);
    assert_int_equal(pbframe_feed(&f, in, sizeof in - 1, &consumed, collect, c), 7);
    assert_int_equal(consumed, 3); /* just past the first '\n' */
    assert_int_equal(c->n, 1);
    assert_int_equal(pbframe_feed(&f, in + 3, sizeof in - 1 - 3, &consumed, collect, c), 7);
    assert_int_equal(consumed, 3);
    assert_item(c, 1, PBFRAME_LINE, 2, S("bb"));
    c->stop_every = 0;
    assert_int_equal(pbframe_feed(&f, in + 6, 3, &consumed, collect, c), 0);
    assert_int_equal(consumed, 3);
    assert_item(c, 2, PBFRAME_LINE, 3, S("cc"));
    pbframe_free(&f);
    collector_free(c);
}

static void test_frame_stop_on_oversize_resumes_discarding(void **state) {
    (void)state;
    collector_t *c = collector_new();
    c->stop_every = 1;
    pbframe_t f;
    size_t consumed = 0;
    static const char in[] = "abcdefgh\nok\n";
    assert_int_equal(pbframe_init(&f, 4), 0);
    assert_int_equal(pbframe_feed(&f, in, sizeof in - 1, &consumed, collect, c), 1);
    assert_int_equal(consumed, 5); /* the byte that went over the limit was consumed */
    assert_item(c, 0, PBFRAME_OVERSIZE, 1, NULL, 5);
    c->stop_every = 0;
    assert_int_equal(pbframe_feed(&f, in + 5, sizeof in - 1 - 5, &consumed, collect, c), 0);
    assert_int_equal(c->n, 2);
    assert_item(c, 1, PBFRAME_LINE, 2, S("ok"));
    pbframe_free(&f);
    collector_free(c);
}

static void test_frame_empty_feed_consumes_nothing(void **state) {
    (void)state;
    collector_t *c = collector_new();
    pbframe_t f;
    size_t consumed = 5;
    assert_int_equal(pbframe_init(&f, 4), 0);
    assert_int_equal(pbframe_feed(&f, NULL, 0, &consumed, collect, c), 0);
    assert_int_equal(consumed, 0);
    assert_int_equal(c->n, 0);
    pbframe_free(&f);
    collector_free(c);
}

static void test_frame_max_line_one_edge_cases(void **state) {
    (void)state;
    collector_t *c = collector_new();
    frame_all(1, S("a\nab\n\r\nb\rx\nc\r\n\r"), c);
    assert_int_equal(c->n, 5);
    assert_item(c, 0, PBFRAME_LINE, 1, S("a"));
    assert_item(c, 1, PBFRAME_OVERSIZE, 2, NULL, 2);
    assert_item(c, 2, PBFRAME_OVERSIZE, 4, NULL, 3); /* "b\rx": byte 1 is CR, then 'x' */
    assert_item(c, 3, PBFRAME_LINE, 5, S("c"));
    assert_item(c, 4, PBFRAME_PARTIAL, 6, S("\r"));
    collector_free(c);
}

/* A stream with every feature: CRLF, empty lines, lines at and around the limit, oversize, CRs. */
static size_t build_mixed_stream(char *out, size_t cap, size_t max_line, uint32_t seed) {
    size_t n = 0;
    for (int line = 0; line < 300; line++) {
        size_t len;
        uint32_t r = rng_next(&seed) % 10;
        if (r < 4)
            len = rng_next(&seed) % (max_line + 1);
        else if (r < 6)
            len = max_line - 1 + rng_next(&seed) % 4; /* max_line - 1 .. max_line + 2 */
        else if (r < 7)
            len = 0;
        else
            len = rng_next(&seed) % (3 * max_line + 1);
        for (size_t i = 0; i < len && n < cap; i++)
            out[n++] = (rng_next(&seed) % 13 == 0) ? '\r' : (char)('a' + rng_next(&seed) % 26);
        if (n < cap && rng_next(&seed) % 3 == 0) out[n++] = '\r';
        if (n < cap) out[n++] = '\n';
    }
    /* A tail without '\n'. */
    size_t tail = rng_next(&seed) % (max_line + 3);
    for (size_t i = 0; i < tail && n < cap; i++)
        out[n++] = (i % 5 == 4) ? '\r' : 'z';
    return n;
}

/* Item for the naive model: appended as the framer would report it. */
static void model_push(collector_t *c, pbframe_kind_t kind, uint64_t line_no, const char *data, size_t len) {
    (void)collect(c, kind, line_no, data, len);
}

/* An independent, obviously-correct model of frame.h's rules: split on '\n' first, judge later. */
static void frame_model(size_t max_line, const char *s, size_t len, collector_t *c) {
    uint64_t line_no = 1;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        int end = i == len;
        if (!end && s[i] != '\n') continue;
        const char *raw = s + start;
        size_t raw_len = i - start;
        if (end) {
            if (raw_len > max_line) {
                size_t seen =
                    raw[max_line] == '\r' ? (raw_len < max_line + 2 ? raw_len : max_line + 2) : max_line + 1;
                model_push(c, PBFRAME_OVERSIZE, line_no, NULL, seen);
            } else if (raw_len > 0) {
                model_push(c, PBFRAME_PARTIAL, line_no, raw, raw_len);
            }
            break;
        }
        size_t content = raw_len > 0 && raw[raw_len - 1] == '\r' ? raw_len - 1 : raw_len;
        if (content > max_line)
            model_push(c, PBFRAME_OVERSIZE, line_no, NULL,
                       raw[max_line] == '\r' ? max_line + 2 : max_line + 1);
        else if (content > 0)
            model_push(c, PBFRAME_LINE, line_no, raw, content);
        line_no++;
        start = i + 1;
    }
}

static void test_frame_any_split_or_stop_yields_identical_sequence(void **state) {
    (void)state;
    static char stream[200000];
    const size_t max_lines[] = {1, 2, 3, 7, 16, 64};
    for (size_t m = 0; m < sizeof max_lines / sizeof max_lines[0]; m++) {
        for (uint32_t seed = 1; seed <= 4; seed++) {
            size_t len = build_mixed_stream(stream, sizeof stream, max_lines[m], seed * 7919);
            collector_t *ref = collector_new();
            frame_all(max_lines[m], stream, len, ref);
            assert_true(ref->n > 0);
            collector_t *model = collector_new();
            frame_model(max_lines[m], stream, len, model);
            assert_same_items(model, ref);
            collector_free(model);

            const size_t chunks[] = {1, 2, 3, 5, 17, 64, 1000};
            for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
                for (int stop = 0; stop <= 3; stop += 3) {
                    collector_t *c = collector_new();
                    c->stop_every = stop;
                    frame_split(max_lines[m], stream, len, chunks[k], seed, c);
                    assert_same_items(ref, c);
                    collector_free(c);
                }
            }
            collector_free(ref);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_init_zero_max_line_fails),
        cmocka_unit_test(test_frame_free_twice_is_safe),
        cmocka_unit_test(test_frame_lines_yielded_in_order_with_numbers),
        cmocka_unit_test(test_frame_crlf_cr_dropped_only_before_lf),
        cmocka_unit_test(test_frame_empty_lines_skipped_but_counted),
        cmocka_unit_test(test_frame_line_of_exactly_max_line_accepted),
        cmocka_unit_test(test_frame_max_line_crlf_split_across_feeds_accepted),
        cmocka_unit_test(test_frame_oversize_reported_once_then_resyncs),
        cmocka_unit_test(test_frame_oversize_by_one_byte_reported),
        cmocka_unit_test(test_frame_oversize_cr_not_before_lf_counts_as_content),
        cmocka_unit_test(test_frame_oversize_across_many_feeds_reported_once),
        cmocka_unit_test(test_frame_finish_partial_line_reported),
        cmocka_unit_test(test_frame_finish_partial_keeps_trailing_cr),
        cmocka_unit_test(test_frame_finish_max_line_plus_cr_is_oversize),
        cmocka_unit_test(test_frame_finish_while_discarding_reports_nothing),
        cmocka_unit_test(test_frame_finish_after_complete_lines_reports_nothing),
        cmocka_unit_test(test_frame_finish_resets_line_numbers),
        cmocka_unit_test(test_frame_complete_line_in_chunk_is_zero_copy),
        cmocka_unit_test(test_frame_many_lines_one_chunk_never_copied),
        cmocka_unit_test(test_frame_callback_stop_reports_consumed_and_value),
        cmocka_unit_test(test_frame_stop_on_oversize_resumes_discarding),
        cmocka_unit_test(test_frame_empty_feed_consumes_nothing),
        cmocka_unit_test(test_frame_max_line_one_edge_cases),
        cmocka_unit_test(test_frame_any_split_or_stop_yields_identical_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
