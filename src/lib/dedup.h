/* dedup.h: the most recent message ids in a bounded window (a ring of ids under an open-addressing
 * hash index), so the consumer can drop a record predbridged published twice. Pure: no Kafka, no
 * locks, and no allocation after pbdedup_new. Not installed. */
#ifndef PB_LIB_DEDUP_H
#define PB_LIB_DEDUP_H

#include <stddef.h>
#include <stdint.h>

/* Longest id held (bytes, no NUL); an entry is one 64-byte cache line. predbridged's ids are UUIDs
 * of 36 characters (PBREC_ID_LEN). Longer ids are never tracked, so never wrongly taken as seen. */
#define PBDEDUP_ID_MAX 55
/* Largest window: bounds the memory at about 1 GB. */
#define PBDEDUP_WINDOW_MAX 10000000

/* An id and its hash, computed once per message and used for the lookup and the later insert.
 * id is borrowed: it must stay valid during the call that takes the key. */
typedef struct pbdedup_key {
    uint64_t hash;
    const char *id;
    size_t len;
} pbdedup_key_t;

typedef struct pbdedup pbdedup_t;

/* A window of the `window` most recent distinct ids. 0 makes a disabled window that holds nothing.
 * Allocates everything now (64-96 bytes per id). Returns NULL when out of memory or when
 * window is over PBDEDUP_WINDOW_MAX. */
__attribute__((warn_unused_result)) pbdedup_t *pbdedup_new(size_t window);
void pbdedup_free(pbdedup_t *d);

/* The key of id[0..len) (the bytes, not NUL-terminated). */
pbdedup_key_t pbdedup_key(const char *id, size_t len);

/* Starts loading the memory a lookup and an insert of k will read (a hint; no effect on results),
 * so the cache misses overlap with other work of the caller. */
void pbdedup_prefetch(const pbdedup_t *d, const pbdedup_key_t *k);

/* 1 if k's id is in the window. Always 0 for NULL or a disabled window and for untracked ids
 * (empty, or longer than PBDEDUP_ID_MAX). */
int pbdedup_contains(const pbdedup_t *d, const pbdedup_key_t *k);

/* Remembers k's id (copied); when the window is full the oldest id is forgotten first. An id already
 * in the window keeps its place. Returns 1 if the id is in the window afterwards, 0 if it cannot be
 * (NULL or disabled window, untracked id). */
int pbdedup_insert(pbdedup_t *d, const pbdedup_key_t *k);

/* Ids held now. */
size_t pbdedup_count(const pbdedup_t *d);

/* Bytes allocated for the window. */
size_t pbdedup_memory(const pbdedup_t *d);

#endif
