# cython: language_level=3
"""Commit-log records (docs/log-format.md): the checks and the TX body parse, in C.

``stdb.storage.logformat`` is the authority on the format and on what a damaged record's
error says; these are its fast paths for the common case, a record that is intact.
``record_kind`` checks a header and its CRC32C, ``tx_body`` parses a TX body, and
``check_value`` / ``decode_value`` do both for every record of a whole log value (recovery's
two passes).  Each returns 0, -1 or None when anything is off, and the caller checks or parses
again record by record, step by step, to name the problem.  For small transactions the Python
versions were most of the time recovery took per record.
"""

from libc.stdint cimport int64_t, uint32_t, uint64_t
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8

from stdb._core.codec cimport frame_at

import crc32c

# logformat's FORMAT_VERSION and record kinds (TX, CREATE/DROP/ALTER TABLE)
DEF FORMAT_VERSION = 1
DEF KIND_MIN = 1
DEF KIND_TX = 1
DEF KIND_MAX = 4
DEF HEADER = 12


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


cdef int _kind_at(const unsigned char* p, Py_ssize_t pos, Py_ssize_t n, object mv,
                  Py_ssize_t* end) except -1:
    """The kind of the record at ``pos`` of a value of ``n`` bytes (``mv``: the value) when it
    checks out, with its end in ``end``; 0 when it does not."""
    cdef Py_ssize_t body
    if n - pos < HEADER:
        return 0
    p += pos
    if p[0] != FORMAT_VERSION or p[1] < KIND_MIN or p[1] > KIND_MAX or p[2] or p[3]:
        return 0
    body = <Py_ssize_t>_le(p + 4, 4)
    if body > n - pos - HEADER:
        return 0
    end[0] = pos + HEADER + body
    if crc32c.crc32c(mv[pos + HEADER:end[0]], crc32c.crc32c(mv[pos:pos + 8])) != _le(p + 8, 4):
        return 0
    return p[1]


cdef object _name(const unsigned char* p, Py_ssize_t n, Py_ssize_t* pos):
    """The name at ``pos`` (u16 length, UTF-8) with ``pos`` moved past it, or None when it
    runs past ``n`` or is not UTF-8."""
    cdef uint64_t ln
    if n - pos[0] < 2:
        return None
    ln = _le(p + pos[0], 2)
    if <uint64_t>(n - pos[0] - 2) < ln:
        return None
    name = _utf8(p + pos[0] + 2, ln)
    if name is not None:
        pos[0] += 2 + ln
    return name


def record_kind(value):
    """The kind of a stored record whose header checks out (version, body length, CRC32C over
    the first 8 header bytes and the body, a known kind, flags 0); 0 when anything fails."""
    cdef const unsigned char[::1] v = value
    cdef Py_ssize_t n = v.shape[0], end = 0
    cdef int kind
    if n == 0:
        return 0
    kind = _kind_at(&v[0], 0, n, memoryview(value), &end)
    return kind if end == n else 0


def check_value(value):
    """How many records a log value holds (records back to back) when every one checks out
    (``record_kind``) and they end exactly at its end; -1 otherwise."""
    cdef const unsigned char[::1] v = value
    cdef Py_ssize_t n = v.shape[0], pos = 0, end = 0, count = 0
    if n == 0:
        return -1
    mv = memoryview(value)
    while pos < n:
        if not _kind_at(&v[0], pos, n, mv, &end):
            return -1
        pos = end
        count += 1
    return count


def decode_value(uint64_t first, value):
    """``tx_body`` of every record of a log value stored under offset ``first`` when each
    checks out (``record_kind``), is a TX record and says it is offset first, first + 1, ...,
    and they end exactly at the value's end; None otherwise."""
    cdef const unsigned char[::1] v = value
    cdef Py_ssize_t n = v.shape[0], pos = 0, end = 0
    cdef list out = []
    cdef uint64_t off = first
    if n == 0:
        return None
    mv = memoryview(value)
    while pos < n:
        if _kind_at(&v[0], pos, n, mv, &end) != KIND_TX:
            return None
        if end - pos - HEADER < 8 or _le(&v[0] + pos + HEADER, 8) != off:
            return None
        rec = _tx_body(&v[0] + pos + HEADER, end - pos - HEADER)
        if rec is None:
            return None
        out.append(rec)
        pos = end
        off += 1
    return out


def tx_body(const unsigned char[::1] body):
    """``(offset, timestamp, caller, reducer, args, [(table, deletes, inserts), ...])`` of a TX
    record's body, rows as row-codec bytes; None when any part of it does not parse."""
    if body.shape[0] == 0:
        return None
    return _tx_body(&body[0], body.shape[0])


cdef object _tx_body(const unsigned char* p, Py_ssize_t n):
    cdef Py_ssize_t pos, start, r
    cdef uint64_t ln, nt, nd, ni, _t
    cdef uint32_t rl
    cdef list changes = [], rows
    if n < 17:
        return None
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
    reducer = _name(p, n, &pos)
    if reducer is None or n - pos < 4:
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
        name = _name(p, n, &pos)
        if name is None or n - pos < 8:
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
