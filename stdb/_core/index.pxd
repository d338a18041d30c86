# cython: language_level=3
"""The unique hash index in C (primary keys and unique hash indexes), usable without the GIL.

The ordered index (btree indexes, non-unique hash indexes) is stdb/_core/ordered.pxd.
"""

from libc.stdint cimport uint64_t, int64_t
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
    """FNV-1a over the key bytes, finished with murmur3's fmix64."""
    cdef uint64_t h = 0xcbf29ce484222325ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ p[i]) * 0x100000001b3ULL
    return fmix64(h)


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
cdef int hidx_reserve(HashIdx* ix, Py_ssize_t extra) noexcept nogil
# store ``rowid`` under a key of hash ``h`` that is absent (after hidx_reserve)
cdef void hidx_add(HashIdx* ix, uint64_t h, uint64_t rowid) noexcept nogil
# drop the entry of ``rowid`` under hash ``h``: 0, or 1 when it is not there
cdef int hidx_remove(HashIdx* ix, uint64_t h, uint64_t rowid) noexcept nogil
