# cython: language_level=3
"""Indexes.

HashIndex (primary keys and unique hash indexes): open addressing with linear probing
over one array of u64 slots.  A slot packs a 24-bit hash fingerprint (the hash's top 24 bits)
and the row id + 1, so the index holds no keys at all: a candidate whose fingerprint matches is
confirmed by asking the table for that row's key.  8 bytes a slot, load ≤ 3/4.  A key's home
slot is taken from the hash's *top* bits, so while the table has ≤ 2^24 slots a rehash places
every entry from its fingerprint alone, without asking the table for any key.

SortedIndex (btree indexes, and non-unique hash indexes): entries are
``key bytes + row id (8 bytes big-endian)`` in the order-preserving key codec, kept in
a list of sorted chunks (each ≤ 2 × LOAD entries) with each chunk's last entry in
``maxes``, so that insert and delete cost O(log n + LOAD) and a range is a walk between
two bisections.  Because key encodings are prefix-free, all entries of one key are
contiguous and ordered by row id.
"""

cimport cython
from libc.stdint cimport uint64_t, int64_t
from libc.string cimport memset
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from bisect import bisect_left, insort

from stdb.errors import InternalError

DEF EMPTY = 0
DEF TOMB = 0xFFFFFFFFFFFFFFFFULL
DEF ROW_MASK = 0xFFFFFFFFFFULL  # low 40 bits: row id + 1
DEF LOAD = 512


cdef class KeySource:
    cdef bytes row_key(self, uint64_t rowid, int ino):
        raise NotImplementedError

    cdef bint key_matches(self, uint64_t rowid, int ino, bytes key) except -1:
        return self.row_key(rowid, ino) == key


cdef uint64_t hash_key(bytes key) noexcept:
    """FNV-1a over the key bytes, finished with murmur3's fmix64."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(key)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(key), i
    cdef uint64_t h = 0xcbf29ce484222325ULL
    for i in range(n):
        h = (h ^ p[i]) * 0x100000001b3ULL
    return fmix64(h)


@cython.final
cdef class HashIndex:
    """Unique hash index (not constructible from Python; the table owns it)."""

    def __cinit__(self, str name, KeySource source, int ino):
        self.name = name
        self.source = source
        self.ino = ino
        self.capacity = 16
        self.shift = 60
        self.slots = <uint64_t*>PyMem_Malloc(self.capacity * sizeof(uint64_t))
        if self.slots == NULL:
            raise MemoryError()
        memset(self.slots, 0, self.capacity * sizeof(uint64_t))

    def __dealloc__(self):
        PyMem_Free(self.slots)

    cdef int64_t find(self, bytes key, uint64_t h) except -2:
        """The row id stored under ``key``, or -1."""
        cdef uint64_t mask = self.capacity - 1
        cdef uint64_t i = h >> self.shift
        cdef uint64_t fp = h >> 40
        cdef uint64_t s
        while True:
            s = self.slots[i]
            if s == EMPTY:
                return -1
            if s != TOMB and (s >> 40) == fp:
                if self.source.key_matches((s & ROW_MASK) - 1, self.ino, key):
                    return <int64_t>((s & ROW_MASK) - 1)
            i = (i + 1) & mask

    cdef int add(self, bytes key, uint64_t h, uint64_t rowid) except -1:
        """Store ``rowid`` under ``key`` (the caller checked the key is absent)."""
        cdef uint64_t mask, i
        if (self.count + self.tombs + 1) * 4 > self.capacity * 3:
            newcap = self.capacity
            while (self.count + 1) * 2 > newcap:
                newcap *= 2
            self._rehash(newcap)
        mask = self.capacity - 1
        i = h >> self.shift
        while self.slots[i] != EMPTY and self.slots[i] != TOMB:
            i = (i + 1) & mask
        if self.slots[i] == TOMB:
            self.tombs -= 1
        self.slots[i] = ((h >> 40) << 40) | (rowid + 1)
        self.count += 1
        return 0

    cdef int remove(self, bytes key, uint64_t h, uint64_t rowid) except -1:
        cdef uint64_t mask = self.capacity - 1
        cdef uint64_t i = h >> self.shift
        cdef uint64_t want = ((h >> 40) << 40) | (rowid + 1)
        while self.slots[i] != EMPTY:
            if self.slots[i] == want:
                self.slots[i] = TOMB
                self.tombs += 1
                self.count -= 1
                return 0
            i = (i + 1) & mask
        raise InternalError(f"index '{self.name}': row {rowid} is not under its key")

    cdef int _rehash(self, Py_ssize_t newcap) except -1:
        cdef uint64_t* old = self.slots
        cdef Py_ssize_t oldcap = self.capacity, j
        cdef uint64_t s, i, mask, rowid
        cdef int shift = 64
        cdef uint64_t* fresh = <uint64_t*>PyMem_Malloc(newcap * sizeof(uint64_t))
        while (<Py_ssize_t>1 << (64 - shift)) < newcap:
            shift -= 1
        if fresh == NULL:
            raise MemoryError()
        memset(fresh, 0, newcap * sizeof(uint64_t))
        mask = newcap - 1
        try:
            for j in range(oldcap):
                s = old[j]
                if s == EMPTY or s == TOMB:
                    continue
                if shift >= 40:      # the fingerprint holds the home slot's bits
                    i = (s >> 40) >> (shift - 40)
                else:
                    rowid = (s & ROW_MASK) - 1
                    i = hash_key(self.source.row_key(rowid, self.ino)) >> shift
                while fresh[i] != EMPTY:
                    i = (i + 1) & mask
                fresh[i] = s
        except BaseException:
            PyMem_Free(fresh)
            raise
        self.slots = fresh
        self.capacity = newcap
        self.shift = shift
        self.tombs = 0
        PyMem_Free(old)
        return 0

    @property
    def memory_bytes(self):
        return self.capacity * 8


cdef bytes entry_of(bytes key, uint64_t rowid):
    return key + rowid.to_bytes(8, "big")


cdef inline uint64_t _rowid_of(bytes entry):
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(entry) + PyBytes_GET_SIZE(entry) - 8
    cdef uint64_t r = 0
    cdef int k
    for k in range(8):
        r = (r << 8) | p[k]
    return r


@cython.final
cdef class SortedIndex:
    """Ordered index of (key, row id) entries (not constructible from Python)."""

    def __cinit__(self, str name, bint unique):
        self.name = name
        self.unique = unique
        self.lists = []
        self.maxes = []

    cdef int add(self, bytes entry) except -1:
        cdef Py_ssize_t i
        cdef list lst
        if not self.maxes:
            self.lists.append([entry])
            self.maxes.append(entry)
            self.count += 1
            return 0
        i = bisect_left(self.maxes, entry)
        if i == len(self.maxes):
            i -= 1
            lst = self.lists[i]
            lst.append(entry)
            self.maxes[i] = entry
        else:
            lst = self.lists[i]
            insort(lst, entry)
        if len(lst) > 2 * LOAD:
            self.lists.insert(i + 1, lst[LOAD:])
            del lst[LOAD:]
            self.maxes.insert(i, lst[len(lst) - 1])
        self.count += 1
        return 0

    cdef int remove(self, bytes entry) except -1:
        cdef Py_ssize_t i, j
        cdef list lst
        i = bisect_left(self.maxes, entry)
        if i < len(self.maxes):
            lst = self.lists[i]
            j = bisect_left(lst, entry)
            if j < len(lst) and lst[j] == entry:
                del lst[j]
                self.count -= 1
                if not lst:
                    del self.lists[i]
                    del self.maxes[i]
                elif j == len(lst):
                    self.maxes[i] = lst[len(lst) - 1]
                return 0
        raise InternalError(f"index '{self.name}': entry for row {_rowid_of(entry)} is missing")

    cdef bint has_prefix(self, bytes key) except -1:
        """Whether some entry's key is ``key``."""
        cdef Py_ssize_t i = bisect_left(self.maxes, key)
        cdef list lst
        if i == len(self.maxes):
            return False
        lst = self.lists[i]
        e = lst[bisect_left(lst, key)]
        return e.startswith(key)

    cdef list rowids_between(self, bytes start, bytes end, Py_ssize_t limit):
        """Row ids of entries ``start <= e < end`` in order (``end`` b"" is unbounded), at most
        ``limit`` of them (all when ``limit`` < 0)."""
        cdef list out = []
        cdef Py_ssize_t i = bisect_left(self.maxes, start), j, nl = len(self.maxes)
        cdef list lst
        cdef bytes e
        cdef bint bounded = len(end) > 0
        if limit == 0 or i == nl:
            return out
        j = bisect_left(<list>self.lists[i], start)
        while i < nl:
            lst = self.lists[i]
            for e in lst[j:]:
                if bounded and e >= end:
                    return out
                out.append(_rowid_of(e))
                if len(out) == limit:
                    return out
            i += 1
            j = 0
        return out

    cdef list rowids_with_prefix(self, bytes key):
        """Row ids of the entries whose key starts with ``key`` (a whole key or a column prefix)."""
        cdef list out = []
        cdef Py_ssize_t i = bisect_left(self.maxes, key), j, nl = len(self.maxes)
        cdef list lst
        cdef bytes e
        if i == nl:
            return out
        j = bisect_left(<list>self.lists[i], key)
        while i < nl:
            lst = self.lists[i]
            for e in lst[j:]:
                if not e.startswith(key):
                    return out
                out.append(_rowid_of(e))
            i += 1
            j = 0
        return out

    @property
    def memory_bytes(self):
        import sys
        n = sys.getsizeof(self.lists) + sys.getsizeof(self.maxes)
        for lst in self.lists:
            n += sys.getsizeof(lst) + sum(sys.getsizeof(e) for e in lst)
        return n
