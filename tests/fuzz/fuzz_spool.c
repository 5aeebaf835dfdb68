/* fuzz_spool.c: libFuzzer target for spool recovery (segment files are read back after crashes and
 * disk damage): the input is a segment's records after a valid header. Recovery must never crash,
 * every record it hands back must be whole, and a second recovery must find nothing left to repair. */
#include "common/log.h"
#include "spool.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static uint64_t drain(const char *dir, pbsp_recovery_t *rec) {
    pbsp_options_t o = {.dir = dir, .fsync = PBSP_FSYNC_NEVER, .max_bytes = 1u << 30, .segment_bytes = 1u << 26};
    char err[512];
    pbsp_t *sp = pbsp_open(&o, rec, err, sizeof err);
    if (!sp) abort(); /* damage inside a segment is repaired, never a reason to refuse to start */
    pbd_record_t r;
    void *ref;
    uint64_t seq, n = 0, prev = 0;
    while (pbsp_peek(sp, &r, &ref, &seq, err, sizeof err) == 1) {
        if (!r.id || strlen(r.id) > 255 || (r.key == NULL) != (r.key_len == 0) || seq <= prev) abort();
        prev = seq;
        free(r.value);
        pbsp_advance(sp);
        n++;
    }
    if (n != rec->records) abort();
    pbsp_close(sp); /* nothing retired: everything stays for the next open */
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int quiet;
    if (!quiet++) pblog_setup(PBLOG_ERROR + 0, PBLOG_TEXT, "fuzz_spool");
    char dir[] = "/tmp/pbfuzz-spool-XXXXXX", path[128];
    if (!mkdtemp(dir)) return 0;
    snprintf(path, sizeof path, "%s/seg-00000000000000000001.pbs", dir);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    /* Format version 2: magic and version, segment 1, mark 0, and the CRC-32C of those 24 bytes. */
    unsigned char hdr[28] = {'P', 'B', 'S', 'P', 'O', 'O', 'L', '2', 1};
    uint32_t crc = 0xFFFFFFFFu;
    for (int i = 0; i < 24; i++) {
        crc ^= hdr[i];
        for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    for (int i = 0; i < 4; i++) hdr[24 + i] = (unsigned char)(crc >> (8 * i));
    fwrite(hdr, 1, sizeof hdr, f);
    fwrite(data, 1, size, f);
    fclose(f);
    pbsp_recovery_t first, second;
    uint64_t n1 = drain(dir, &first);
    uint64_t n2 = drain(dir, &second);
    if (n1 != n2 || second.torn_bytes || second.corrupt) abort();
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
