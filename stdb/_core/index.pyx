# cython: language_level=3
"""The unique hash index (primary keys and unique hash indexes), in C.

Open addressing with linear probing over one array of u64 slots.  A slot packs a 24-bit hash
fingerprint (the hash's top 24 bits) and the row id + 1, so the index holds no keys at all: a
candidate whose fingerprint matches is confirmed by asking the table for that row's key (the
``rowkey_fn`` it was made with).  8 bytes a slot, load ≤ 3/4.  A key's home slot is taken from
the hash's *top* bits, so while the table has ≤ 2^24 slots a rehash places every entry from its
fingerprint alone, without asking the table for any key.  Deletes leave tombstones, cleared by
the next rehash.

Growing happens in ``hidx_reserve`` only, so that a caller can make room before it changes
anything and ``hidx_add`` never fails.
"""

from libc.stdint cimport uint64_t, int64_t
from libc.string cimport memcmp
from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree

from stdb._core.rowbytes cimport cbuf_free

cdef extern from *:
    """
    #define STDB_HX_EMPTY ((uint64_t)0)
    #define STDB_HX_TOMB ((uint64_t)0xFFFFFFFFFFFFFFFFULL)
    #define STDB_HX_ROW_MASK ((uint64_t)0xFFFFFFFFFFULL)
    """
    const uint64_t EMPTY "STDB_HX_EMPTY"
    const uint64_t TOMB "STDB_HX_TOMB"
    const uint64_t ROW_MASK "STDB_HX_ROW_MASK"     # low 40 bits: row id + 1


cdef HashIdx* hidx_new(void* ctx, rowkey_fn key_of, int ino) noexcept nogil:
    cdef HashIdx* ix = <HashIdx*>PyMem_RawCalloc(1, sizeof(HashIdx))
    if ix == NULL:
        return NULL
    ix.capacity = 16
    ix.shift = 60
    ix.slots = <uint64_t*>PyMem_RawCalloc(ix.capacity, sizeof(uint64_t))
    if ix.slots == NULL:
        PyMem_RawFree(ix)
        return NULL
    ix.ctx = ctx
    ix.key_of = key_of
    ix.ino = ino
    return ix


cdef void hidx_free(HashIdx* ix) noexcept nogil:
    if ix != NULL:
        PyMem_RawFree(ix.slots)
        cbuf_free(&ix.scratch)
        PyMem_RawFree(ix)


cdef int64_t hidx_find(HashIdx* ix, const unsigned char* key, Py_ssize_t n, uint64_t h) noexcept nogil:
    cdef uint64_t mask = ix.capacity - 1
    cdef uint64_t i = h >> ix.shift
    cdef uint64_t fp = h >> 40
    cdef uint64_t s, rowid
    while True:
        s = ix.slots[i]
        if s == EMPTY:
            return -1
        if s != TOMB and (s >> 40) == fp:
            rowid = (s & ROW_MASK) - 1
            ix.scratch.len = 0
            if ix.key_of(ix.ctx, rowid, ix.ino, &ix.scratch) < 0:
                return -2
            if ix.scratch.len == n and memcmp(ix.scratch.data, key, n) == 0:
                return <int64_t>rowid
        i = (i + 1) & mask


cdef int _rehash(HashIdx* ix, Py_ssize_t newcap) noexcept nogil:
    cdef uint64_t* old = ix.slots
    cdef Py_ssize_t oldcap = ix.capacity, j
    cdef uint64_t s, i, mask
    cdef int shift = 64
    cdef uint64_t* fresh = <uint64_t*>PyMem_RawCalloc(newcap, sizeof(uint64_t))
    if fresh == NULL:
        return -1
    while (<Py_ssize_t>1 << (64 - shift)) < newcap:
        shift -= 1
    mask = newcap - 1
    for j in range(oldcap):
        s = old[j]
        if s == EMPTY or s == TOMB:
            continue
        if shift >= 40:      # the fingerprint holds the home slot's bits
            i = (s >> 40) >> (shift - 40)
        else:
            ix.scratch.len = 0
            if ix.key_of(ix.ctx, (s & ROW_MASK) - 1, ix.ino, &ix.scratch) < 0:
                PyMem_RawFree(fresh)
                return -1
            i = hash_bytes(ix.scratch.data, ix.scratch.len) >> shift
        while fresh[i] != EMPTY:
            i = (i + 1) & mask
        fresh[i] = s
    ix.slots = fresh
    ix.capacity = newcap
    ix.shift = shift
    ix.tombs = 0
    PyMem_RawFree(old)
    return 0


cdef int hidx_reserve(HashIdx* ix, Py_ssize_t extra) noexcept nogil:
    cdef Py_ssize_t newcap
    if (ix.count + ix.tombs + extra) * 4 <= ix.capacity * 3:
        return 0
    newcap = ix.capacity
    while (ix.count + extra) * 2 > newcap:
        newcap *= 2
    return _rehash(ix, newcap)


cdef void hidx_add(HashIdx* ix, uint64_t h, uint64_t rowid) noexcept nogil:
    cdef uint64_t mask = ix.capacity - 1
    cdef uint64_t i = h >> ix.shift
    while ix.slots[i] != EMPTY and ix.slots[i] != TOMB:
        i = (i + 1) & mask
    if ix.slots[i] == TOMB:
        ix.tombs -= 1
    ix.slots[i] = ((h >> 40) << 40) | (rowid + 1)
    ix.count += 1


cdef int hidx_remove(HashIdx* ix, uint64_t h, uint64_t rowid) noexcept nogil:
    cdef uint64_t mask = ix.capacity - 1
    cdef uint64_t i = h >> ix.shift
    cdef uint64_t want = ((h >> 40) << 40) | (rowid + 1)
    while ix.slots[i] != EMPTY:
        if ix.slots[i] == want:
            ix.slots[i] = TOMB
            ix.tombs += 1
            ix.count -= 1
            return 0
        i = (i + 1) & mask
    return 1
