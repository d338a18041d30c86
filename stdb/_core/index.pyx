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
        if s == HX_EMPTY:
            return -1
        if s != HX_TOMB and (s >> 40) == fp:
            rowid = (s & HX_ROW_MASK) - 1
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
        if s == HX_EMPTY or s == HX_TOMB:
            continue
        if shift >= 40:      # the fingerprint holds the home slot's bits
            i = (s >> 40) >> (shift - 40)
        else:
            ix.scratch.len = 0
            if ix.key_of(ix.ctx, (s & HX_ROW_MASK) - 1, ix.ino, &ix.scratch) < 0:
                PyMem_RawFree(fresh)
                return -1
            i = hash_bytes(ix.scratch.data, ix.scratch.len) >> shift
        while fresh[i] != HX_EMPTY:
            i = (i + 1) & mask
        fresh[i] = s
    ix.slots = fresh
    ix.capacity = newcap
    ix.shift = shift
    ix.tombs = 0
    PyMem_RawFree(old)
    return 0


cdef int hidx_grow(HashIdx* ix, Py_ssize_t extra) noexcept nogil:
    cdef Py_ssize_t newcap
    newcap = ix.capacity
    while (ix.count + extra) * 2 > newcap:
        newcap *= 2
    return _rehash(ix, newcap)


cdef int hidx_presize(HashIdx* ix, Py_ssize_t total) noexcept nogil:
    cdef Py_ssize_t newcap = ix.capacity
    while total * 4 > newcap * 3:           # hidx_reserve's limit: load ≤ 3/4
        newcap *= 2
    if newcap == ix.capacity:
        return 0
    return _rehash(ix, newcap)


cdef void hidx_add(HashIdx* ix, uint64_t h, uint64_t rowid) noexcept nogil:
    cdef uint64_t mask = ix.capacity - 1
    cdef uint64_t i = h >> ix.shift
    while ix.slots[i] != HX_EMPTY and ix.slots[i] != HX_TOMB:
        i = (i + 1) & mask
    if ix.slots[i] == HX_TOMB:
        ix.tombs -= 1
    ix.slots[i] = ((h >> 40) << 40) | (rowid + 1)
    ix.count += 1


cdef int hidx_remove(HashIdx* ix, uint64_t h, uint64_t rowid) noexcept nogil:
    cdef uint64_t mask = ix.capacity - 1
    cdef uint64_t i = h >> ix.shift
    cdef uint64_t want = ((h >> 40) << 40) | (rowid + 1)
    while ix.slots[i] != HX_EMPTY:
        if ix.slots[i] == want:
            ix.slots[i] = HX_TOMB
            ix.tombs += 1
            ix.count -= 1
            return 0
        i = (i + 1) & mask
    return 1
