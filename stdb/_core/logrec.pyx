# cython: language_level=3
"""Commit-log records (docs/log-format.md): the checks and the TX body parse, in C.

``stdb.storage.logformat`` is the authority on the format and on what a damaged record's
error says; these are its fast paths for the common case, a record that is intact.
``record_kind`` checks a header and its CRC32C, ``tx_body`` parses a TX body, and
``check_value`` / ``decode_value`` do both for every record of a whole log value.  Each returns
0, -1 or None when anything is off, and the caller checks or parses again record by record,
step by step, to name the problem.  ``apply_value`` is recovery's replay: it applies the TX
records of a log value to the native tables (stdb/_core/table.pxd) straight from their bytes,
with no Python object per record or row.
"""

from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcmp
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawFree
from cpython.unicode cimport PyUnicode_DecodeUTF8

from stdb._core.codec cimport frame_at
from stdb._core.digest cimport crc32c
from stdb._core.rowbytes cimport Err, E_INTERNAL
from stdb._core.table cimport Table, TableC, tbl_apply_change

# logformat's FORMAT_VERSION and record kinds (TX, CREATE/DROP/ALTER TABLE)
DEF FORMAT_VERSION = 1
DEF KIND_MIN = 1
DEF KIND_TX = 1
DEF KIND_MAX = 4
DEF HEADER = 12


cdef inline uint64_t _le(const unsigned char* p, int n) noexcept nogil:
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


cdef int _kind_at(const unsigned char* p, Py_ssize_t pos, Py_ssize_t n, Py_ssize_t* end) noexcept nogil:
    """The kind of the record at ``pos`` of a value of ``n`` bytes when it checks out, with its
    end in ``end``; 0 when it does not."""
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
    if crc32c(crc32c(0, p, 8), p + HEADER, body) != <uint32_t>_le(p + 8, 4):
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
    kind = _kind_at(&v[0], 0, n, &end)
    return kind if end == n else 0


DEF NCOUNT = 8           # tables counted at once (check_value's row counts)


ctypedef struct _Count:
    const unsigned char* name
    Py_ssize_t len
    int64_t net


cdef inline Py_ssize_t _tx_tables(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """Where a TX body's u16 table count is: past its offset, timestamp, caller, reducer name
    and arguments (docs/log-format.md); -1 when the body does not parse that far."""
    cdef Py_ssize_t pos = 17
    cdef uint64_t ln
    if n < 17 or p[16] > 1:
        return -1
    if p[16]:
        pos += 32                                       # the caller's identity
    if n - pos < 2:
        return -1
    pos += 2 + <Py_ssize_t>_le(p + pos, 2)              # the reducer's name
    if n - pos < 4:
        return -1
    ln = _le(p + pos, 4)
    pos += 4
    if <uint64_t>(n - pos) < ln:
        return -1
    pos += ln                                           # its arguments
    if n - pos < 2:
        return -1
    return pos


cdef int _count_tx(const unsigned char* p, Py_ssize_t n, _Count* c, int* nc) noexcept nogil:
    """Add each table's inserts minus deletes in a TX body to ``c`` (``nc`` used, at most
    NCOUNT; a table past that is not counted): 0, or -1 when the body does not parse."""
    cdef Py_ssize_t pos = _tx_tables(p, n), start
    cdef uint64_t ln, nt, nd, ni, _k, _r
    cdef uint32_t rl
    cdef int i
    if pos < 0:
        return -1
    nt = _le(p + pos, 2)
    pos += 2
    for _k in range(nt):
        if n - pos < 2:
            return -1
        ln = _le(p + pos, 2)
        if <uint64_t>(n - pos - 2) < ln + 8:
            return -1
        nd = _le(p + pos + 2 + ln, 4)
        ni = _le(p + pos + 6 + ln, 4)
        for i in range(nc[0] + 1):
            if i == nc[0]:
                if i == NCOUNT:
                    break
                c[i].name = p + pos + 2
                c[i].len = <Py_ssize_t>ln
                c[i].net = 0
                nc[0] += 1
            if c[i].len == <Py_ssize_t>ln and memcmp(c[i].name, p + pos + 2, ln) == 0:
                c[i].net += <int64_t>ni - <int64_t>nd
                break
        pos += 10 + ln
        for _r in range(nd + ni):
            start = frame_at(p, pos, n, &rl)
            if start < 0:
                return -1
            pos = start + rl
    return 0 if pos == n else -1


def check_value(value, dict counts=None):
    """How many records a log value holds (records back to back) when every one checks out
    (``record_kind``) and they end exactly at its end; -1 otherwise.

    ``counts``: each table's rows inserted minus rows deleted by the value's TX records are
    added to ``counts[name]`` (recovery sizes the tables' indexes from them before replaying)."""
    cdef const unsigned char[::1] v = value
    cdef Py_ssize_t n = v.shape[0], pos = 0, end = 0, count = 0
    cdef _Count c[NCOUNT]
    cdef int nc = 0, i, kind
    cdef bint counting = counts is not None
    if n == 0:
        return -1
    while pos < n:
        kind = _kind_at(&v[0], pos, n, &end)
        if not kind:
            return -1
        if counting and kind == KIND_TX and \
                _count_tx(&v[0] + pos + HEADER, end - pos - HEADER, c, &nc) < 0:
            return -1
        pos = end
        count += 1
    for i in range(nc):
        name = _utf8(c[i].name, c[i].len)
        if name is not None:
            counts[name] = counts.get(name, 0) + c[i].net
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
    while pos < n:
        if _kind_at(&v[0], pos, n, &end) != KIND_TX:
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


# ---------------------------------------------------------------- replay

ctypedef struct _Named:
    const char* name
    Py_ssize_t len
    TableC* t


cdef int _apply_tx(const unsigned char* p, Py_ssize_t n, _Named* tables, int ntables,
                   Py_ssize_t* ops, Err* e, Py_ssize_t* bad_table) noexcept nogil:
    """Apply the changes of a TX body (already checked by its CRC): 0; -1 an error applying a
    row (``e``, ``bad_table`` the table's number); -2 the body does not parse; -3 a table the
    datastore does not have (``bad_table``: where its name starts in the body)."""
    cdef Py_ssize_t pos = _tx_tables(p, n), used = 0
    cdef uint64_t ln, nt, nd, ni, _k
    cdef int ti
    cdef TableC* t
    if pos < 0:
        return -2
    nt = _le(p + pos, 2)
    pos += 2
    for _k in range(nt):
        if n - pos < 2:
            return -2
        ln = _le(p + pos, 2)
        if <uint64_t>(n - pos - 2) < ln:
            return -2
        t = NULL
        for ti in range(ntables):
            if tables[ti].len == <Py_ssize_t>ln and memcmp(tables[ti].name, p + pos + 2, ln) == 0:
                t = tables[ti].t
                bad_table[0] = ti
                break
        if t == NULL:
            bad_table[0] = pos
            return -3
        pos += 2 + ln
        if n - pos < 8:
            return -2
        nd = _le(p + pos, 4)
        ni = _le(p + pos + 4, 4)
        pos += 8
        # every row takes at least its 4-byte length (as in _tx_body): counts past that are a
        # body that does not parse, refused before the table sizes anything by them
        if nd + ni > <uint64_t>((n - pos) // 4):
            return -2
        if tbl_apply_change(t, p + pos, n - pos, nd, ni, ops, &used, e) < 0:
            return -1
        pos += used
    return 0 if pos == n else -2


def apply_value(uint64_t first, value, uint64_t start, uint64_t stop, dict tables):
    """Replay the records of a log value stored under offset ``first`` whose offsets lie in
    [start, stop]: (records applied, row operations, status, detail), where status is

    * 0: done — every record of the value in range was a TX record and is applied;
    * 1: stopped before record ``detail`` (an offset), which is not a TX record: the caller
      applies it its own way and calls again from the next offset;
    * 2: ``detail`` = (offset, table name or None, message, native error code): a record
      cannot be applied (the records before it are);
    * 3: stopped before record ``detail``, which does not check out or does not parse: the
      caller reads it again step by step to name the problem.

    ``tables``: the datastore's tables by name (native Table objects)."""
    cdef const unsigned char[::1] v = value
    cdef Py_ssize_t n = v.shape[0], pos = 0, end = 0, ops = 0, bad = -1
    cdef uint64_t off = first
    cdef Py_ssize_t applied = 0
    cdef int kind, r = 0, i = 0
    cdef Err e
    cdef _Named* named
    cdef Table tb
    cdef list keep = []
    if n == 0:
        return 0, 0, 3, first
    named = <_Named*>PyMem_RawMalloc(sizeof(_Named) * (len(tables) + 1))
    if named == NULL:
        raise MemoryError()
    try:
        for name, tb in tables.items():
            b = name.encode("utf-8")
            keep.append(b)
            named[i].name = <const char*>b
            named[i].len = len(b)
            named[i].t = tb.c
            i += 1
        with nogil:
            while pos < n and off <= stop:
                kind = _kind_at(&v[0], pos, n, &end)
                if kind == 0 or end - pos - HEADER < 8 or _le(&v[0] + pos + HEADER, 8) != off:
                    r = 3
                    break
                if off >= start:
                    if kind != KIND_TX:
                        r = 1
                        break
                    r = _apply_tx(&v[0] + pos + HEADER, end - pos - HEADER, named, i, &ops, &e, &bad)
                    if r < 0:
                        break
                    applied += 1
                pos = end
                off += 1
    finally:
        PyMem_RawFree(named)
    if r == 1 or r == 3:
        return applied, ops, r, off
    if r == -1:
        return applied, ops, 2, (off, list(tables)[bad], (<bytes>e.msg).decode("utf-8", "replace"), e.code)
    if r == -2:
        return applied, ops, 3, off
    if r == -3:
        p = &v[0] + pos + HEADER + bad
        name = PyBytes_FromStringAndSize(<const char*>p + 2, _le(p, 2)).decode("utf-8", "replace")
        return applied, ops, 2, (off, name, f"no table '{name}'", E_INTERNAL)
    return applied, ops, 0, off
