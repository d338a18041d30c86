# cython: language_level=3
"""Indexes over a table's rows: a unique hash index and an ordered (btree-like) index."""

from libc.stdint cimport uint64_t, int64_t

cdef class KeySource:
    """What an index needs of its table: the encoded key of a stored row."""
    cdef bytes row_key(self, uint64_t rowid, int ino)
    cdef bint key_matches(self, uint64_t rowid, int ino, bytes key) except -1

cdef uint64_t hash_key(bytes key) noexcept


cdef inline uint64_t fmix64(uint64_t h) noexcept:
    """murmur3's 64-bit finaliser: every input bit moves every output bit."""
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    h *= 0xc4ceb9fe1a85ec53ULL
    h ^= h >> 33
    return h

cdef class HashIndex:
    cdef readonly str name
    cdef readonly Py_ssize_t count
    cdef readonly Py_ssize_t capacity
    cdef int shift                 # home slot = hash >> shift (capacity = 2^(64 - shift))
    cdef Py_ssize_t tombs
    cdef uint64_t* slots
    cdef KeySource source
    cdef int ino
    cdef int64_t find(self, bytes key, uint64_t h) except -2
    cdef int add(self, bytes key, uint64_t h, uint64_t rowid) except -1
    cdef int remove(self, bytes key, uint64_t h, uint64_t rowid) except -1
    cdef int _rehash(self, Py_ssize_t newcap) except -1

cdef class SortedIndex:
    cdef readonly str name
    cdef readonly Py_ssize_t count
    cdef readonly bint unique
    cdef list lists
    cdef list maxes
    cdef int add(self, bytes entry) except -1
    cdef int remove(self, bytes entry) except -1
    cdef bint has_prefix(self, bytes key) except -1
    cdef list rowids_between(self, bytes start, bytes end, Py_ssize_t limit)
    cdef list rowids_with_prefix(self, bytes key)

cdef bytes entry_of(bytes key, uint64_t rowid)
