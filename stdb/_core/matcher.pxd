# cython: language_level=3
"""The subscription matcher (see matcher.pyx)."""

from libc.stdint cimport int64_t

cdef class _Range:
    cdef object lo, hi
    cdef bint lo_incl, hi_incl
    cdef Py_ssize_t sid
    cdef inline bint holds(self, object x) except -1

cdef class _Node:
    cdef object center
    cdef list by_lo
    cdef list by_hi
    cdef _Node left, right

cdef class _Intervals:
    cdef dict items
    cdef _Node root
    cdef bint dirty
    cdef int stab(self, object x, list out) except -1

cdef struct _Slot:
    int64_t key
    int64_t val                    # a subscription id; _MULTI: several (in multi); _FREE: empty

cdef class _EqIndex:
    cdef _Slot* slots
    cdef Py_ssize_t capacity       # 0 (nothing allocated) or a power of two
    cdef Py_ssize_t used           # occupied slots
    cdef int shift                 # home slot = fmix64(key) >> shift
    cdef dict multi                # int key -> [sid, ...] for a value several subscriptions share
    cdef dict other                # every other value -> sid, or [sid, ...]
    cdef int lookup(self, object v, list out) except -1
    cdef int add(self, object v, Py_ssize_t sid) except -1
    cdef int remove(self, object v, Py_ssize_t sid) except -1
    cdef Py_ssize_t size(self)
    cdef _Slot* _find(self, int64_t k) noexcept
    cdef int _grow(self) except -1
    cdef void _delete_at(self, Py_ssize_t i) noexcept

cdef class _TableSubs:
    cdef list eq
    cdef list ranges
    cdef list every

cdef class Matcher:
    cdef dict tables
    cdef dict subs
    cdef dict residuals
    cdef _TableSubs _table(self, str table)
    cdef int _set_residual(self, Py_ssize_t sid, residual) except -1
    cdef int _check_new(self, Py_ssize_t sid) except -1
