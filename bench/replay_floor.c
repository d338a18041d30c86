/* A floor for recovery (bench/durability.py): the least any replay of the benchmark's log must
 * do, in plain C, to compare with stdb's replay and the raw LMDB cursor scan in the same run.
 *
 * Per record: check the header's length and the CRC32C (docs/log-format.md), walk the framing of
 * every row, and keep the rows findable by primary key: each inserted row is copied once into an
 * arena and its key stored; each deleted row's key is removed.  The key is the row's first 8
 * bytes (the benchmark's table starts with a u64 primary key).  Nothing else our engine does is
 * here: no decoding into columns, no check that a deleted row equals the stored one, no
 * sequences, no Python.
 *
 * Two ways to keep the keys:
 *   mode 0: an open-addressing hash table of (key, row), linear probing, backward-shift delete:
 *           what a primary-key index costs when it does not fit in the caches;
 *   mode 1: an array indexed by the key itself (the benchmark's keys are 0..rows-1): no index
 *           work at all, only what the log's bytes themselves cost.
 *
 * Built by the benchmark with the system C compiler and loaded with ctypes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE4_2__
#include <nmmintrin.h>
#endif

static uint32_t crc32c(uint32_t crc, const uint8_t* p, size_t n) {
    uint64_t c = ~crc & 0xffffffffu;
#ifdef __SSE4_2__
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    while (n--) c = _mm_crc32_u8((uint32_t)c, *p++);
#else
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82f63b78u & (0u - (uint32_t)(c & 1)));
    }
#endif
    return ~(uint32_t)c;
}

static inline uint64_t fmix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

typedef struct { uint64_t key; const uint8_t* row; } slot_t;

static slot_t* tab;
static uint64_t cap, mask, count;
static int direct;
static uint8_t* arena;
static size_t arena_used, arena_cap;

/* Empty state: ``capacity`` slots (a power of two), ``arena_bytes`` for rows; both are touched
 * here so that page faults are not counted in the timed pass.  Returns 0, or -1 out of memory. */
int floor_reset(uint64_t capacity, size_t arena_bytes, int mode) {
    free(tab);
    free(arena);
    cap = capacity;
    mask = cap - 1;
    count = 0;
    direct = mode;
    tab = calloc(cap, sizeof(slot_t));
    arena = malloc(arena_bytes);
    if (!tab || !arena) return -1;
    memset(tab, 0, cap * sizeof(slot_t));
    memset(arena, 0, arena_bytes);
    arena_cap = arena_bytes;
    arena_used = 0;
    return 0;
}

uint64_t floor_count(void) { return count; }

static int put(const uint8_t* row, uint32_t n) {
    uint64_t k, i;
    if (n < 8 || arena_used + n > arena_cap) return -20;
    memcpy(&k, row, 8);
    uint8_t* dst = arena + arena_used;
    memcpy(dst, row, n);
    arena_used += n;
    if (direct) {
        if (k >= cap) return -21;
        i = k;
        if (tab[i].row) return -22;
    } else {
        if (count * 4 >= cap * 3) return -21;
        i = fmix64(k) & mask;
        while (tab[i].row) {
            if (tab[i].key == k) return -22;
            i = (i + 1) & mask;
        }
    }
    tab[i].key = k;
    tab[i].row = dst;
    count++;
    return 0;
}

static int del(const uint8_t* row, uint32_t n) {
    uint64_t k, i, j;
    if (n < 8) return -23;
    memcpy(&k, row, 8);
    if (direct) {
        if (k >= cap || !tab[k].row) return -24;
        tab[k].row = NULL;
        count--;
        return 0;
    }
    i = fmix64(k) & mask;
    while (tab[i].row && tab[i].key != k) i = (i + 1) & mask;
    if (!tab[i].row) return -24;
    for (j = (i + 1) & mask; tab[j].row; j = (j + 1) & mask) {
        uint64_t home = fmix64(tab[j].key) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {  /* tab[j] may move back to i */
            tab[i] = tab[j];
            i = j;
        }
    }
    tab[i].row = NULL;
    count--;
    return 0;
}

#define NEED(k) do { if (q + (k) > len) return -13; } while (0)

/* One log value (records back to back).  Returns the row operations applied, or a negative
 * code: -10 short header, -11 length past the value, -12 CRC, -13 framing, -20.. state. */
int64_t floor_value(const uint8_t* v, size_t n) {
    size_t pos = 0;
    int64_t ops = 0;
    while (pos < n) {
        uint32_t len, crc, w, nd, ni, rl;
        uint16_t s, nt;
        size_t q;
        int e;
        if (n - pos < 12) return -10;
        memcpy(&len, v + pos + 4, 4);
        memcpy(&crc, v + pos + 8, 4);
        if (len > n - pos - 12) return -11;
        const uint8_t* b = v + pos + 12;
        if (crc32c(crc32c(0, v + pos, 8), b, len) != crc) return -12;
        int kind = v[pos + 1];
        pos += 12 + (size_t)len;
        if (kind != 1) continue;                    /* only TX records carry rows */
        q = 17;                                     /* offset, timestamp, has_caller */
        NEED(0);
        if (b[16]) q += 32;
        NEED(2); memcpy(&s, b + q, 2); q += 2 + s;
        NEED(4); memcpy(&w, b + q, 4); q += 4 + w;
        NEED(2); memcpy(&nt, b + q, 2); q += 2;
        for (int t = 0; t < nt; t++) {
            NEED(2); memcpy(&s, b + q, 2); q += 2 + s;
            NEED(8); memcpy(&nd, b + q, 4); memcpy(&ni, b + q + 4, 4); q += 8;
            for (uint64_t r = 0; r < (uint64_t)nd + ni; r++) {
                NEED(4); memcpy(&rl, b + q, 4); q += 4;
                NEED(rl);
                e = r < nd ? del(b + q, rl) : put(b + q, rl);
                if (e) return e;
                q += rl;
                ops++;
            }
        }
    }
    return ops;
}
