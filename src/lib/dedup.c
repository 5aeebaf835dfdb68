/* dedup.c: the window of recent message ids: a ring of fixed-size entries in arrival order (the
 * oldest is overwritten) and a linear-probing index of ring positions, at most half full. An index
 * slot also holds 32 bits of the id's hash, which give its home slot and tell most ids apart, so a
 * lookup reads the ring (a cache miss of its own) only for a likely match. */
#include "lib/dedup.h"

#include <stdlib.h>
#include <string.h>

typedef struct pbdedup_entry {
    uint64_t hash;
    uint8_t len;
    char id[PBDEDUP_ID_MAX];
} pbdedup_entry_t;

_Static_assert(sizeof(pbdedup_entry_t) == 64, "an entry is one cache line");
_Static_assert(PBDEDUP_ID_MAX <= UINT8_MAX, "entry lengths fit a byte");
_Static_assert(PBDEDUP_WINDOW_MAX < UINT32_MAX / 4, "ring positions and the index size fit 32 bits");

typedef struct pbdedup_slot {
    uint32_t at;  /* ring position + 1; 0: empty */
    uint32_t tag; /* the hash's upper half: the home slot is tag & mask */
} pbdedup_slot_t;

struct pbdedup {
    size_t window; /* ring capacity; 0: disabled */
    size_t count;  /* entries in the ring */
    size_t next;   /* ring position written next: the oldest entry once the ring is full */
    size_t mask;   /* index size - 1 (a power of two) */
    pbdedup_entry_t *ring;
    pbdedup_slot_t *index;
};

static uint32_t pbdedup_tag(uint64_t hash) {
    return (uint32_t)(hash >> 32);
}

/* FNV-1a over the bytes, then a 64-bit finaliser so every bit (the index uses the upper half) depends on them
 * all. */
pbdedup_key_t pbdedup_key(const char *id, size_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (pbdedup_key_t){.hash = h, .id = id, .len = len};
}

static int pbdedup_tracked(const pbdedup_t *d, const pbdedup_key_t *k) {
    return d && d->window && k && k->id && k->len > 0 && k->len <= PBDEDUP_ID_MAX;
}

pbdedup_t *pbdedup_new(size_t window) {
    if (window > PBDEDUP_WINDOW_MAX) return NULL;
    pbdedup_t *d = calloc(1, sizeof *d);
    if (!d || window == 0) return d;
    size_t slots = 2;
    while (slots < 2 * window)
        slots *= 2;
    d->window = window;
    d->mask = slots - 1;
    d->ring = malloc(window * sizeof *d->ring);
    d->index = calloc(slots, sizeof *d->index);
    if (!d->ring || !d->index) {
        pbdedup_free(d);
        return NULL;
    }
    return d;
}

void pbdedup_free(pbdedup_t *d) {
    if (!d) return;
    free(d->ring);
    free(d->index);
    free(d);
}

/* The index slot holding k, or the empty slot where k would go; *found says which. Terminates: the
 * index is never more than half full. */
static size_t pbdedup_probe(const pbdedup_t *d, const pbdedup_key_t *k, int *found) {
    uint32_t tag = pbdedup_tag(k->hash);
    for (size_t i = tag & d->mask;; i = (i + 1) & d->mask) {
        const pbdedup_slot_t *slot = &d->index[i];
        if (!slot->at) {
            *found = 0;
            return i;
        }
        if (slot->tag != tag) continue;
        const pbdedup_entry_t *e = &d->ring[slot->at - 1];
        if (e->hash == k->hash && e->len == k->len && memcmp(e->id, k->id, k->len) == 0) {
            *found = 1;
            return i;
        }
    }
}

/* Empties index slot i by shifting later members of its probe run back (no tombstones, so lookups
 * stay as short as at insertion). A member may move to i when its home slot is not in (i, j]. */
static void pbdedup_unslot(pbdedup_t *d, size_t i) {
    for (size_t j = (i + 1) & d->mask; d->index[j].at; j = (j + 1) & d->mask) {
        size_t home = d->index[j].tag & d->mask;
        if (((j - home) & d->mask) >= ((j - i) & d->mask)) {
            d->index[i] = d->index[j];
            i = j;
        }
    }
    d->index[i] = (pbdedup_slot_t){0};
}

/* Forgets the ring entry at position pos. */
static void pbdedup_evict(pbdedup_t *d, size_t pos) {
    size_t i = pbdedup_tag(d->ring[pos].hash) & d->mask;
    while (d->index[i].at != pos + 1)
        i = (i + 1) & d->mask;
    pbdedup_unslot(d, i);
}

void pbdedup_prefetch(const pbdedup_t *d, const pbdedup_key_t *k) {
    if (!pbdedup_tracked(d, k)) return;
    __builtin_prefetch(&d->index[pbdedup_tag(k->hash) & d->mask]);
    if (d->count < d->window) return;
    /* The next insert evicts the oldest entry: its index slot, found from its hash. That entry was
     * prefetched by the call before, as the one after it; the one after it now is next time's. */
    __builtin_prefetch(&d->index[pbdedup_tag(d->ring[d->next].hash) & d->mask]);
    __builtin_prefetch(&d->ring[d->next + 1 == d->window ? 0 : d->next + 1]);
}

int pbdedup_contains(const pbdedup_t *d, const pbdedup_key_t *k) {
    int found = 0;
    if (pbdedup_tracked(d, k)) pbdedup_probe(d, k, &found);
    return found;
}

int pbdedup_insert(pbdedup_t *d, const pbdedup_key_t *k) {
    int found;
    if (!pbdedup_tracked(d, k)) return 0;
    size_t slot = pbdedup_probe(d, k, &found);
    if (found) return 1;
    if (d->count == d->window) {
        pbdedup_evict(d, d->next);
        slot = pbdedup_probe(d, k, &found); /* the shift may have opened a slot earlier in k's run */
    } else {
        d->count++;
    }
    pbdedup_entry_t *e = &d->ring[d->next];
    e->hash = k->hash;
    e->len = (uint8_t)k->len;
    memcpy(e->id, k->id, k->len);
    d->index[slot] = (pbdedup_slot_t){.at = (uint32_t)(d->next + 1), .tag = pbdedup_tag(k->hash)};
    d->next = d->next + 1 == d->window ? 0 : d->next + 1;
    return 1;
}

size_t pbdedup_count(const pbdedup_t *d) {
    return d ? d->count : 0;
}

size_t pbdedup_memory(const pbdedup_t *d) {
    if (!d) return 0;
    return sizeof *d + d->window * sizeof *d->ring + (d->window ? (d->mask + 1) * sizeof *d->index : 0);
}
