# cython: language_level=3
"""The unique hash index in C (primary keys and unique hash indexes), usable without the GIL.

The ordered index (btree indexes, non-unique hash indexes) is stdb/_core/ordered.pxd.
"""

from libc.stdint cimport uint64_t, int64_t
from libc.string cimport memcmp, memcpy
from stdb._core.rowbytes cimport CBuf


cdef inline uint64_t fmix64(uint64_t h) noexcept nogil:
    """murmur3's 64-bit finaliser: every input bit moves every output bit."""
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    h *= 0xc4ceb9fe1a85ec53ULL
    h ^= h >> 33
    return h


cdef inline uint64_t hash_bytes(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """The key bytes eight at a time, each word mixed in with murmur3's fmix64 (an 8-byte key,
    the commonest, costs two mixes; FNV-1a, which this replaced, one multiply per byte)."""
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL ^ <uint64_t>n
    cdef uint64_t w
    cdef int k
    while n >= 8:
        memcpy(&w, p, 8)
        h = fmix64(h ^ w)
        p += 8
        n -= 8
    if n:
        w = 0
        for k in range(n):
            w |= (<uint64_t>p[k]) << (8 * k)
        h = fmix64(h ^ w)
    return fmix64(h + 0x632BE59BD9B4E019ULL)


cdef inline uint64_t hash_word(uint64_t w, Py_ssize_t n) noexcept nogil:
    """hash_bytes of a key of ``n`` ≤ 8 bytes given as the little-endian word they load as
    (the bytes past ``n`` zero): the same two mixes without the loops."""
    return fmix64(fmix64((0x9E3779B97F4A7C15ULL ^ <uint64_t>n) ^ w) + 0x632BE59BD9B4E019ULL)


cdef extern from *:
    """
    #define STDB_HX_EMPTY ((uint64_t)0)
    #define STDB_HX_TOMB ((uint64_t)0xFFFFFFFFFFFFFFFFULL)
    #define STDB_HX_ROW_MASK ((uint64_t)0xFFFFFFFFFFULL)
    """
    const uint64_t HX_EMPTY "STDB_HX_EMPTY"
    const uint64_t HX_TOMB "STDB_HX_TOMB"
    const uint64_t HX_ROW_MASK "STDB_HX_ROW_MASK"     # low 40 bits of a slot: row id + 1


# The key of stored row ``rowid`` for index ``ino``, appended to ``out``: 0, or -1 (no memory,
# or no such row)
ctypedef int (*rowkey_fn)(void* ctx, uint64_t rowid, int ino, CBuf* out) noexcept nogil

ctypedef struct HashIdx:
    Py_ssize_t count
    Py_ssize_t capacity
    Py_ssize_t tombs
    int shift                 # home slot = hash >> shift (capacity = 2^(64 - shift))
    uint64_t* slots           # 24-bit fingerprint << 40 | (row id + 1); 0 empty; ~0 tombstone
    void* ctx                 # the table, for rowkey_fn
    rowkey_fn key_of
    int ino
    CBuf scratch              # a candidate's key, rebuilt from its row

cdef HashIdx* hidx_new(void* ctx, rowkey_fn key_of, int ino) noexcept nogil
cdef void hidx_free(HashIdx* ix) noexcept nogil
# the row id stored under the key (hash ``h`` = hash_bytes of it), -1 when none, -2 on error
cdef int64_t hidx_find(HashIdx* ix, const unsigned char* key, Py_ssize_t n, uint64_t h) noexcept nogil
# room for ``extra`` more entries without growing (so that hidx_add cannot fail): 0, -1
cdef int hidx_grow(HashIdx* ix, Py_ssize_t extra) noexcept nogil
# grow (never shrink) to the capacity that ``total`` entries would reach by growing one at a
# time, in one rehash: for loaders that know how many rows follow.  0, -1 (no memory)
cdef int hidx_presize(HashIdx* ix, Py_ssize_t total) noexcept nogil


cdef inline int hidx_reserve(HashIdx* ix, Py_ssize_t extra) noexcept nogil:
    if (ix.count + ix.tombs + extra) * 4 <= ix.capacity * 3:
        return 0
    return hidx_grow(ix, extra)


# store ``rowid`` under a key of hash ``h`` that is absent (after hidx_reserve)
cdef void hidx_add(HashIdx* ix, uint64_t h, uint64_t rowid) noexcept nogil
# drop the entry of ``rowid`` under hash ``h``: 0, or 1 when it is not there
cdef int hidx_remove(HashIdx* ix, uint64_t h, uint64_t rowid) noexcept nogil
# hidx_find that also says, in ``slot``, where hidx_put would store this hash (the first
# tombstone or empty slot of its probe sequence): valid until the index changes
cdef inline int64_t hidx_probe(HashIdx* ix, const unsigned char* key, Py_ssize_t n, uint64_t h,
                               Py_ssize_t* slot) noexcept nogil:
    cdef uint64_t mask = ix.capacity - 1
    cdef uint64_t i = h >> ix.shift
    cdef uint64_t fp = h >> 40
    cdef uint64_t s, rowid
    cdef Py_ssize_t free = -1
    while True:
        s = ix.slots[i]
        if s == HX_EMPTY:
            slot[0] = free if free >= 0 else <Py_ssize_t>i
            return -1
        if s == HX_TOMB:
            if free < 0:
                free = i
        elif (s >> 40) == fp:
            rowid = (s & HX_ROW_MASK) - 1
            ix.scratch.len = 0
            if ix.key_of(ix.ctx, rowid, ix.ino, &ix.scratch) < 0:
                return -2
            if ix.scratch.len == n and memcmp(ix.scratch.data, key, n) == 0:
                return <int64_t>rowid
        i = (i + 1) & mask


cdef inline void hidx_put(HashIdx* ix, Py_ssize_t slot, uint64_t h, uint64_t rowid) noexcept nogil:
    """Store ``rowid`` under hash ``h`` at ``slot`` (from hidx_probe, after hidx_reserve)."""
    if ix.slots[slot] == HX_TOMB:
        ix.tombs -= 1
    ix.slots[slot] = ((h >> 40) << 40) | (rowid + 1)
    ix.count += 1


cdef inline void hidx_drop(HashIdx* ix, Py_ssize_t slot) noexcept nogil:
    """Remove the entry at ``slot`` (found by a probe)."""
    ix.slots[slot] = HX_TOMB
    ix.tombs += 1
    ix.count -= 1
