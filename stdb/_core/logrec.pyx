# cython: language_level=3
"""The body of a commit-log TX record (docs/log-format.md), parsed in C.

``stdb.storage.logformat.decode_record`` is the authority on the format and on what a damaged
record's error says; ``tx_body`` is its fast path for the common case, a body that parses.
When anything in a body does not parse it returns None, and ``decode_record`` parses it again
step by step to name the problem.  Recovery decodes every record it replays: for small
transactions the Python parse was most of the time a record took (~6 µs of ~10).
"""

from libc.stdint cimport int64_t, uint32_t, uint64_t
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8

from stdb._core.codec cimport frame_at


cdef inline uint64_t _le(const unsigned char* p, int n) noexcept:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n - 1, -1, -1):
        v = (v << 8) | p[i]
    return v


cdef inline object _utf8(const unsigned char* p, Py_ssize_t n):
    """The text, or None when the bytes are not UTF-8."""
    try:
        return PyUnicode_DecodeUTF8(<const char*>p, n, NULL)
    except UnicodeDecodeError:
        return None


def tx_body(const unsigned char[:] body):
    """``(offset, timestamp, caller, reducer, args, [(table, deletes, inserts), ...])`` of a TX
    record's body, rows as row-codec bytes; None when any part of it does not parse."""
    cdef Py_ssize_t n = body.shape[0], pos, start, r
    cdef const unsigned char* p
    cdef uint64_t ln, nt, nd, ni, _t
    cdef uint32_t rl
    cdef list changes = [], rows
    if n < 17:
        return None
    p = &body[0]
    offset = _le(p, 8)
    timestamp = <int64_t>_le(p + 8, 8)
    if p[16] > 1:
        return None
    pos = 17
    caller = None
    if p[16]:
        if n - pos < 32:
            return None
        caller = PyBytes_FromStringAndSize(<const char*>p + pos, 32)
        pos += 32
    if n - pos < 2:
        return None
    ln = _le(p + pos, 2)
    pos += 2
    if <uint64_t>(n - pos) < ln:
        return None
    reducer = _utf8(p + pos, ln)
    if reducer is None:
        return None
    pos += ln
    if n - pos < 4:
        return None
    ln = _le(p + pos, 4)
    pos += 4
    if <uint64_t>(n - pos) < ln:
        return None
    args = PyBytes_FromStringAndSize(<const char*>p + pos, ln)
    pos += ln
    if n - pos < 2:
        return None
    nt = _le(p + pos, 2)
    pos += 2
    for _t in range(nt):
        if n - pos < 2:
            return None
        ln = _le(p + pos, 2)
        pos += 2
        if <uint64_t>(n - pos) < ln:
            return None
        name = _utf8(p + pos, ln)
        if name is None:
            return None
        pos += ln
        if n - pos < 8:
            return None
        nd = _le(p + pos, 4)
        ni = _le(p + pos + 4, 4)
        pos += 8
        if nd + ni > <uint64_t>((n - pos) // 4):
            return None
        dels = []
        ins = []
        for r in range(<Py_ssize_t>(nd + ni)):
            start = frame_at(p, pos, n, &rl)
            if start < 0:
                return None
            rows = dels if <uint64_t>r < nd else ins
            rows.append(PyBytes_FromStringAndSize(<const char*>p + start, rl) if rl else b"")
            pos = start + rl
        changes.append((name, dels, ins))
    if pos != n:
        return None
    return offset, timestamp, caller, reducer, args, changes
