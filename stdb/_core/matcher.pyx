# cython: language_level=3
"""The subscription matcher: which subscriptions a changed row can affect.

Each single-table subscription is indexed by one *anchor* taken from its condition:

* an equality (``col = v`` or ``col IN (v1, v2)``): the subscription is listed under each value
  in a hash map per (table, column);
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

from stdb.errors import InternalError


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
        ts = self._table(table)
        for col, m in ts.eq:
            if col == column:
                break
        else:
            m = {}
            ts.eq.append((column, m))
        for v in vals:
            # one subscription under a value (the usual case) is stored as its bare id: a
            # lookup then reads no list (at 100k values every object read is a cache miss)
            old = m.get(v)
            if old is None:
                m[v] = sid
            elif type(old) is int:
                m[v] = [old, sid]
            else:
                (<list>old).append(sid)
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
                        old = m[v]
                        if type(old) is int:
                            del m[v]
                        else:
                            (<list>old).remove(sid)
                            if len(<list>old) == 1:
                                m[v] = (<list>old)[0]
                    if not m:
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
                hit = (<dict>m).get(row[<Py_ssize_t>col])
                if hit is not None:
                    if type(hit) is int:
                        cand.append(hit)
                    else:
                        cand.extend(<list>hit)
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
