# cython: language_level=3
"""The subscription matcher (see matcher.pyx)."""

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
