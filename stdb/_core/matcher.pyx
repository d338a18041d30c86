# cython: language_level=3
"""The subscription matcher: which subscriptions a changed row can affect.

Each single-table subscription is indexed by one *anchor* taken from its condition:

* an equality (``col = v`` or ``col IN (v1, v2)``): the subscription is listed under each value
  in a hash map per (table, column) (``_EqIndex``: int values in a table of slots, others in
  a dict);
* a range (``col BETWEEN a AND b``, ``col > a``, ...): an interval in a centred interval tree per
  (table, column), rebuilt lazily after subscriptions change;
* no usable anchor: the subscription is checked for every changed row of its table.

For a changed row the matcher looks up the row's value in each map and tree of its table,
so a commit touching a few rows visits only the subscriptions those rows can affect; each
candidate's *residual* (the rest of its condition, a compiled function; None when the anchor
is the whole condition) decides.  The pure-Python twin (``stdb._core.reference.Matcher``)
checks every subscription and is the oracle and the benchmark's naive baseline.
"""

cimport cython
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free

from stdb._core.index cimport fmix64

from stdb.errors import InternalError

cdef extern from *:
    """
    #include <stdlib.h>
    #include <sys/mman.h>
    /* memory for a slot table: aligned to 2 MiB from that size on, with transparent huge pages
       asked for (where the kernel has them), so that its lookups do not miss the TLB */
    static void *stdb_slots_alloc(size_t n) {
        void *p = NULL;
        size_t huge = (size_t)2 << 20;
        if (posix_memalign(&p, n >= huge ? huge : 64, n) != 0)
            return NULL;
    #ifdef MADV_HUGEPAGE
        if (n >= huge)
            madvise(p, n, MADV_HUGEPAGE);
    #endif
        return p;
    }
    """
    void* stdb_slots_alloc(size_t n) nogil

cdef enum:
    _FREE = -1
    _MULTI = -2


@cython.final
cdef class _Range:

    # lo/hi None: unbounded on that side
    cdef inline bint holds(self, object x) except -1:
        if self.lo is not None:
            if self.lo_incl:
                if not (self.lo <= x):
                    return False
            elif not (self.lo < x):
                return False
        if self.hi is not None:
            if self.hi_incl:
                if not (x <= self.hi):
                    return False
            elif not (x < self.hi):
                return False
        return True


@cython.final
cdef class _Node:
    """A centred interval tree node: by_lo holds the intervals containing center, lo ascending;
    by_hi the same ones, hi descending (unbounded ends first in both)."""


def _lo_key(_Range r):
    return (r.lo is not None, r.lo)          # unbounded first, then ascending


def _hi_key(_Range r):
    return (r.hi is None, r.hi)              # sorted in reverse: unbounded first, then descending


cdef _Node _build(list items):
    cdef _Range r
    cdef list ends = []
    cdef list left = [], right = [], mid = []
    if not items:
        return None
    for r in items:
        if r.lo is not None:
            ends.append(r.lo)
        if r.hi is not None:
            ends.append(r.hi)
    cdef _Node node = _Node()
    ends.sort()                      # never empty: every stored interval has a bound
    c = ends[len(ends) // 2]
    node.center = c
    for r in items:
        if r.hi is not None and r.hi < c:
            left.append(r)
        elif r.lo is not None and r.lo > c:
            right.append(r)
        else:
            mid.append(r)
    node.by_lo = sorted(mid, key=_lo_key)
    node.by_hi = sorted(mid, key=_hi_key, reverse=True)
    node.left = _build(left)
    node.right = _build(right)
    return node


@cython.final
cdef class _Intervals:
    """Intervals over one column: stabbing queries in O(log n + hits)."""

    def __cinit__(self):
        self.items = {}
        self.dirty = False

    cdef int stab(self, object x, list out) except -1:
        cdef _Node node
        cdef _Range r
        if self.dirty:
            self.root = _build(list(self.items.values()))
            self.dirty = False
        node = self.root
        if x is None:
            return 0
        while node is not None:
            if x < node.center:
                for r in node.by_lo:
                    if r.lo is not None and r.lo > x:
                        break
                    if r.holds(x):
                        out.append(r.sid)
                node = node.left
            elif x > node.center:
                for r in node.by_hi:
                    if r.hi is not None and r.hi < x:
                        break
                    if r.holds(x):
                        out.append(r.sid)
                node = node.right
            else:
                for r in node.by_lo:
                    if r.holds(x):
                        out.append(r.sid)
                return 0
        return 0


cdef inline bint _int_key(object v, int64_t* k) except -1:
    """Whether ``v`` is a slot table key — an int (not a bool) that fits in 64 bits — put in ``k``."""
    cdef int ovf = 0
    if not PyLong_CheckExact(v):
        return False
    k[0] = PyLong_AsLongLongAndOverflow(v, &ovf)
    return not ovf


@cython.final
cdef class _EqIndex:
    """The subscriptions anchored on one column's equalities, by value.

    Int values that fit in 64 bits (an integer column's, but for u64 values of 2^63 and more)
    are keys of an open-addressing table of (key, subscription id) slots, linear probing, load
    ≤ 1/2: a lookup reads one run of slots, where a dict reads its index, its entry, the key
    object and the value object — at 100k values each read is a cache and a TLB miss.  Other
    values (strings, bytes, bools, big u64) are in a dict.  A value's subscriptions are all in
    one place, since a column's values all have the column's type."""

    def __cinit__(self):
        self.multi = {}
        self.other = {}

    def __dealloc__(self):
        free(self.slots)

    cdef Py_ssize_t size(self):
        return self.used + len(self.other)

    cdef _Slot* _find(self, int64_t k) noexcept:
        """The slot holding ``k``, else the free slot that ends its run (capacity > 0)."""
        cdef uint64_t mask = self.capacity - 1
        cdef uint64_t i = fmix64(<uint64_t>k) >> self.shift
        cdef _Slot* s
        while True:
            s = &self.slots[i]
            if s.val == _FREE or s.key == k:
                return s
            i = (i + 1) & mask

    cdef int _grow(self) except -1:
        cdef Py_ssize_t oldcap = self.capacity, newcap = 16 if self.capacity == 0 else self.capacity * 2
        cdef _Slot* old = self.slots
        cdef _Slot* fresh = <_Slot*>stdb_slots_alloc(newcap * sizeof(_Slot))
        cdef Py_ssize_t j
        cdef int bits = 0
        if fresh == NULL:
            raise MemoryError()
        for j in range(newcap):
            fresh[j].val = _FREE
        while (<Py_ssize_t>1 << bits) < newcap:
            bits += 1
        self.slots, self.capacity, self.shift = fresh, newcap, 64 - bits
        for j in range(oldcap):
            if old[j].val != _FREE:
                self._find(old[j].key)[0] = old[j]
        free(old)
        return 0

    cdef void _delete_at(self, Py_ssize_t i) noexcept:
        """Empty slot ``i``, moving later slots of its run back (no tombstones)."""
        cdef uint64_t mask = self.capacity - 1
        cdef uint64_t j = i, home
        while True:
            j = (j + 1) & mask
            if self.slots[j].val == _FREE:
                break
            home = fmix64(<uint64_t>self.slots[j].key) >> self.shift
            if ((j - home) & mask) >= ((j - <uint64_t>i) & mask):     # slot i lies on its probe path
                self.slots[i] = self.slots[j]
                i = j
        self.slots[i].val = _FREE
        self.used -= 1

    cdef int lookup(self, object v, list out) except -1:
        """Append the ids of the subscriptions under ``v`` to ``out``."""
        cdef int64_t k
        cdef _Slot* s
        if _int_key(v, &k):
            if self.capacity:
                s = self._find(k)
                if s.val >= 0:
                    out.append(s.val)
                elif s.val == _MULTI:
                    out.extend(<list>self.multi[k])
            return 0
        if self.other:
            hit = self.other.get(v)
            if hit is not None:
                if type(hit) is int:
                    out.append(hit)
                else:
                    out.extend(<list>hit)
        return 0

    cdef int add(self, object v, Py_ssize_t sid) except -1:
        cdef int64_t k
        cdef _Slot* s
        if _int_key(v, &k):
            if (self.used + 1) * 2 > self.capacity:
                self._grow()
            s = self._find(k)
            if s.val == _FREE:
                s.key, s.val = k, sid
                self.used += 1
            elif s.val == _MULTI:
                (<list>self.multi[k]).append(sid)
            else:
                self.multi[k] = [s.val, sid]
                s.val = _MULTI
            return 0
        # one subscription under a value (the usual case) is stored as its bare id
        old = self.other.get(v)
        if old is None:
            self.other[v] = sid
        elif type(old) is int:
            self.other[v] = [old, sid]
        else:
            (<list>old).append(sid)
        return 0

    cdef int remove(self, object v, Py_ssize_t sid) except -1:
        cdef int64_t k
        cdef _Slot* s
        cdef list several
        if _int_key(v, &k):
            s = self._find(k) if self.capacity else NULL
            if s == NULL or s.val == _FREE or (s.val >= 0 and s.val != sid):
                raise InternalError(f"subscription {sid} is not under value {v!r}")
            if s.val == sid:
                self._delete_at(s - self.slots)
            else:
                several = self.multi[k]
                several.remove(sid)
                if len(several) == 1:
                    s.val = several[0]
                    del self.multi[k]
            return 0
        old = self.other[v]
        if type(old) is int:
            del self.other[v]
        else:
            (<list>old).remove(sid)
            if len(<list>old) == 1:
                self.other[v] = (<list>old)[0]
        return 0


@cython.final
cdef class _TableSubs:
    """The subscriptions of one table."""

    def __cinit__(self):
        self.eq = []
        self.ranges = []
        self.every = []


@cython.final
cdef class Matcher:
    """Subscriptions indexed by their anchors (see the module docstring)."""

    def __cinit__(self):
        self.tables = {}
        self.subs = {}
        self.residuals = {}

    def __len__(self):
        return len(self.subs)

    def __contains__(self, sid):
        return sid in self.subs

    cdef _TableSubs _table(self, str table):
        ts = self.tables.get(table)
        if ts is None:
            ts = _TableSubs()
            self.tables[table] = ts
        return <_TableSubs>ts

    def add_every(self, Py_ssize_t sid, str table, residual):
        """A subscription with no anchor: ``residual`` is checked for every changed row."""
        self._check_new(sid)
        self._table(table).every.append(sid)
        self.subs[sid] = (table, "every", -1, None)
        self._set_residual(sid, residual)

    def add_eq(self, Py_ssize_t sid, str table, int column, values, residual):
        """Anchored on ``row[column]`` being one of ``values`` (hashable, typed like the column)."""
        cdef _TableSubs ts
        self._check_new(sid)
        vals = tuple(set(values))
        cdef _EqIndex e
        ts = self._table(table)
        for col, m in ts.eq:
            if col == column:
                e = m
                break
        else:
            e = _EqIndex()
            ts.eq.append((column, e))
        for v in vals:
            e.add(v, sid)
        self.subs[sid] = (table, "eq", column, vals)
        self._set_residual(sid, residual)

    def add_range(self, Py_ssize_t sid, str table, int column, lo, bint lo_incl, hi, bint hi_incl,
                  residual):
        """Anchored on ``row[column]`` in an interval (None: unbounded on that side)."""
        cdef _TableSubs ts
        cdef _Range r
        cdef _Intervals iv
        self._check_new(sid)
        if lo is None and hi is None:
            raise InternalError("a range anchor needs at least one bound")
        if lo is not None and hi is not None and (hi < lo or (hi == lo and not (lo_incl and hi_incl))):
            # an empty interval (x > 3 AND x < 1) matches nothing; keeping it out of the tree
            # also keeps the tree's construction finite (every stored interval holds a point)
            self.subs[sid] = (table, "never", column, None)
            self._set_residual(sid, residual)
            return
        ts = self._table(table)
        for col, ivs in ts.ranges:
            if col == column:
                iv = ivs
                break
        else:
            iv = _Intervals()
            ts.ranges.append((column, iv))
        r = _Range()
        r.lo, r.hi, r.lo_incl, r.hi_incl, r.sid = lo, hi, lo_incl, hi_incl, sid
        iv.items[sid] = r
        iv.dirty = True
        self.subs[sid] = (table, "range", column, r)
        self._set_residual(sid, residual)

    cdef int _set_residual(self, Py_ssize_t sid, residual) except -1:
        # only subscriptions with a residual are in the dict: with many plain `col = v`
        # subscriptions, a changed row then touches one big hash table, not two
        if residual is not None:
            self.residuals[sid] = residual
        return 0

    cdef int _check_new(self, Py_ssize_t sid) except -1:
        if sid < 0:         # the equality index keeps negative values in its slots as markers
            raise InternalError(f"subscription id {sid} is negative")
        if sid in self.subs:
            raise InternalError(f"subscription {sid} is already in the matcher")
        return 0

    def remove(self, Py_ssize_t sid):
        cdef _TableSubs ts
        cdef _Intervals iv
        entry = self.subs.pop(sid, None)
        if entry is None:
            raise InternalError(f"subscription {sid} is not in the matcher")
        self.residuals.pop(sid, None)
        table, kind, column, data = entry
        if kind == "never":
            return
        ts = self.tables[table]
        if kind == "every":
            ts.every.remove(sid)
        elif kind == "eq":
            for col, m in ts.eq:
                if col == column:
                    for v in data:
                        (<_EqIndex>m).remove(v, sid)
                    if (<_EqIndex>m).size() == 0:
                        ts.eq.remove((col, m))
                    break
        else:
            for col, ivs in ts.ranges:
                if col == column:
                    iv = ivs
                    del iv.items[sid]
                    iv.dirty = True
                    if not iv.items:
                        ts.ranges.remove((col, ivs))
                    break
        if not ts.eq and not ts.ranges and not ts.every:
            del self.tables[table]

    def match(self, str table, list rows):
        """{sid: [rows of ``rows`` that satisfy subscription sid]} (only sids with a match)."""
        cdef _TableSubs ts
        cdef _Intervals iv
        cdef dict out = {}
        cdef list cand = []
        cdef tuple row
        cdef Py_ssize_t i
        cdef dict residuals = self.residuals
        t = self.tables.get(table)
        if t is None or not rows:
            return out
        ts = <_TableSubs>t
        for row in rows:
            del cand[:]
            for col, m in ts.eq:
                (<_EqIndex>m).lookup(row[<Py_ssize_t>col], cand)
            for col, ivs in ts.ranges:
                iv = ivs
                iv.stab(row[<Py_ssize_t>col], cand)
            cand.extend(ts.every)
            for i in range(len(cand)):
                sid = cand[i]
                f = residuals.get(sid) if residuals else None
                if f is None or f(row):
                    hit = out.get(sid)
                    if hit is None:
                        out[sid] = [row]
                    else:
                        (<list>hit).append(row)
        return out
