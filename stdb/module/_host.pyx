# cython: language_level=3
"""The "stdb" imports in C.

Every import a reducer calls (docs/abi.md) runs here without the GIL, on the native table and
transaction API (stdb/_core/table.pxd, txn.pxd): rows and keys are read from and written to the
module's linear memory as row-codec bytes, and nothing makes a Python object.  Problems are
answered as the ABI says: a negative code and the message ``error_detail`` returns.  A pointer
outside linear memory sets ``h.fault`` (FAULT_TRAP) and the import callback traps the call; so
does a failure of the host itself (FAULT_HOST: no memory, a broken invariant), which the caller
reports as an InternalError after rolling back.  What needs Python — the module's log lines — is
collected here and handed to Python after the call (``NativeHost.flush_logs``).

``stdb.module.host.ModuleHost`` is the pure-Python twin with the same answers and messages;
tests/test_module_host.py runs every import against both.

Conventions inside: a step returns 0 when it went through, else the (negative) result the
import returns; ``STOP`` means a fault was set.
"""

cimport cython
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset, memcmp, strlen
from libc.stdio cimport snprintf
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawCalloc, PyMem_RawFree
from cpython.bytes cimport PyBytes_FromStringAndSize

from stdb._core.rowbytes cimport (
    CBuf, Err, E_BAD_ROW, E_UNIQUE, E_FULL, E_ROW_TOO_LARGE, rowspec_new, rowspec_free,
    rb_check_row, rb_key_value, repr_text, cbuf_put, cbuf_reserve, cbuf_free, rd_u32, wr_u32,
)
from stdb._core.table cimport (
    Table, TableC, IdList, idl_free, tbl_get, tbl_key_of, tbl_find, tbl_seek, tbl_range, tbl_rowids,
    tbl_page, W_ASSIGN, SLOT_MASK,
)
from stdb._core.page cimport page_rc_len
from stdb._core.txn cimport TxC, NativeTx, tx_insert, tx_update, tx_delete
from stdb._core.digest cimport blake2b

import logging
from collections import deque

from stdb.errors import InternalError

# the ABI's error codes (docs/abi.md)
cdef enum:
    NO_SUCH_TABLE = -1
    NO_SUCH_INDEX = -2
    BAD_ROW = -3
    UNIQUE_VIOLATION = -4
    NO_SUCH_ITER = -5
    BUFFER_TOO_SMALL = -6
    ROW_TOO_LARGE = -7
    WRONG_INDEX_KIND = -8
    BAD_ARGUMENT = -9
    NO_TRANSACTION = -10
    TOO_MANY_ITERS = -11
    STOP = -1000              # a fault is set: the call traps

cdef enum:
    MSG = 1024

LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG, 4: logging.DEBUG}
LEVEL_NAMES = {0: "error", 1: "warn", 2: "info", 3: "debug", 4: "trace"}

# ---------------------------------------------------------------- answers

cdef int _fail(HostC* h, int code, const char* msg) noexcept nogil:
    """Answer ``code``, with ``msg`` for error_detail."""
    h.last_error.len = 0
    cbuf_put(&h.last_error, msg, strlen(msg))
    return code


cdef int _fault(HostC* h, int kind, const char* msg) noexcept nogil:
    h.fault = kind
    snprintf(h.fault_msg, sizeof(h.fault_msg), "%s", msg)
    return STOP


cdef int _fail_err(HostC* h, const Err* e) noexcept nogil:
    """Answer a native-lane error; a fault for what is the host's problem, not the module's."""
    if e.code == E_UNIQUE:
        return _fail(h, UNIQUE_VIOLATION, e.msg)
    if e.code == E_BAD_ROW or e.code == E_FULL:
        return _fail(h, BAD_ROW, e.msg)
    if e.code == E_ROW_TOO_LARGE:
        return _fail(h, ROW_TOO_LARGE, e.msg)
    return _fault(h, FAULT_HOST, e.msg)


cdef inline bint _span(HostC* h, uint64_t size, uint32_t ptr, uint32_t n) noexcept nogil:
    """Whether mem[ptr:ptr+n] is inside linear memory; when not, the call traps."""
    if <uint64_t>ptr + n <= size:
        return True
    h.fault = FAULT_TRAP
    snprintf(h.fault_msg, sizeof(h.fault_msg),
             "pointer %u + length %u is outside linear memory (%llu bytes)", ptr, n,
             <unsigned long long>size)
    return False


cdef int _table(HostC* h, int32_t tid) noexcept nogil:
    """0 when ``tid`` is a table of a call in progress."""
    cdef char m[64]
    if h.tx == NULL:
        return _fail(h, NO_TRANSACTION, "table imports work only inside a reducer call")
    if tid < 0 or tid >= h.ntables:
        snprintf(m, 64, "no table with id %d", tid)
        return _fail(h, NO_SUCH_TABLE, m)
    if h.tables[tid].t == NULL:
        return _fault(h, FAULT_HOST, "a module table is not bound to the database's table")
    return 0


cdef int _index(HostC* h, int32_t tid, int32_t iid) noexcept nogil:
    cdef char m[MSG]
    cdef HostTable* ht = &h.tables[tid]
    if iid < 0 or iid >= ht.nidx:
        snprintf(m, MSG, "table '%s' has no index with id %d", ht.name, iid)
        return _fail(h, NO_SUCH_INDEX, m)
    return 0


cdef int _key(HostC* h, int32_t tid, int32_t iid, int k, const unsigned char* p, uint32_t n,
              CBuf* out) noexcept nogil:
    """The key codec form of a key given as a row of the index's first ``k`` columns."""
    cdef HostIndex* ix = &h.tables[tid].idx[iid]
    cdef Err e
    cdef int i
    out.len = 0
    if rb_check_row(ix.key, k, p, n, h.starts, True, &e) < 0:
        return _fail(h, BAD_ROW, e.msg)
    for i in range(k):
        if rb_key_value(&ix.key.cols[i], p + h.starts[i], out) < 0:
            return _fault(h, FAULT_HOST, "out of memory")
    return 0


cdef int _row(HostC* h, int32_t tid, const unsigned char* p, uint32_t n) noexcept nogil:
    """Check a row of table ``tid`` (its column starts into h.starts)."""
    cdef HostTable* ht = &h.tables[tid]
    cdef Err e
    cdef char m[MSG]
    if n > h.max_row_bytes:
        snprintf(m, MSG, "table '%s': a row of %u bytes (at most %zd)", ht.name, n, h.max_row_bytes)
        return _fail(h, ROW_TOO_LARGE, m)
    if rb_check_row(ht.t.spec, ht.t.spec.ncols, p, n, h.starts, True, &e) < 0:
        return _fail(h, BAD_ROW, e.msg)
    return 0


cdef int _lookup(HostC* h, int32_t tid, int32_t iid, const unsigned char* key, uint32_t n,
                 IdList* out) noexcept nogil:
    """The row ids whose key of index ``iid`` is ``key`` (every column of the index)."""
    cdef int r = _table(h, tid)
    if r:
        return r
    r = _index(h, tid, iid)
    if r:
        return r
    r = _key(h, tid, iid, h.tables[tid].idx[iid].ncols, key, n, &h.key_lo)
    if r:
        return r
    if tbl_seek(h.tables[tid].t, iid, h.key_lo.data, h.key_lo.len, out) < 0:
        return _fault(h, FAULT_HOST, "out of memory")
    return 0

# ---------------------------------------------------------------- iterators

cdef HostIter* _iter(HostC* h, int32_t handle) noexcept nogil:
    cdef int i
    if handle <= 0:
        return NULL
    for i in range(h.iters_high):
        if h.iters[i].handle == handle:
            return &h.iters[i]
    return NULL


cdef void _iter_free(HostC* h, HostIter* it) noexcept nogil:
    PyMem_RawFree(it.ids)
    it.ids = NULL
    it.n = 0
    it.pos = 0
    it.rows.len = 0
    it.rpos = 0
    it.copied = False
    it.handle = 0
    h.open_iters -= 1


cdef void _iters_close_all(HostC* h) noexcept nogil:
    cdef int i
    for i in range(h.iters_high):
        if h.iters[i].handle:
            _iter_free(h, &h.iters[i])
    h.iters_high = 0
    h.open_iters = 0


cdef int _new_iter(HostC* h, int32_t tid, IdList* ids) noexcept nogil:
    """An iterator over ``ids`` (taken over): its handle, or TOO_MANY_ITERS."""
    cdef int i
    cdef HostIter* it = NULL
    cdef char m[80]
    if h.open_iters >= MAX_ITERS or h.next_handle >= 0x7FFFFFFF:
        idl_free(ids)
        snprintf(m, 80, "more than %d open iterators in one call", <int>MAX_ITERS)
        return _fail(h, TOO_MANY_ITERS, m)
    if h.iters == NULL:
        h.iters = <HostIter*>PyMem_RawCalloc(MAX_ITERS, sizeof(HostIter))
        if h.iters == NULL:
            idl_free(ids)
            return _fault(h, FAULT_HOST, "out of memory")
    for i in range(h.iters_high):
        if h.iters[i].handle == 0:
            it = &h.iters[i]
            break
    if it == NULL:
        it = &h.iters[h.iters_high]
        h.iters_high += 1
    h.next_handle += 1
    it.handle = h.next_handle
    it.tid = tid
    it.ids = ids.ids
    it.n = ids.n
    it.pos = 0
    it.copied = False
    it.rows.len = 0
    it.rpos = 0
    ids.ids = NULL
    ids.n = 0
    ids.cap = 0
    h.open_iters += 1
    return it.handle


cdef int _before_write(HostC* h, int32_t tid) noexcept nogil:
    """Iterators see the rows as they were when created: copy what they still have to return
    before the table changes (copy on write)."""
    cdef int i
    cdef HostIter* it
    cdef TableC* t = h.tables[tid].t
    cdef Py_ssize_t start
    for i in range(h.iters_high):
        it = &h.iters[i]
        if it.handle == 0 or it.tid != tid or it.copied:
            continue
        it.rows.len = 0
        while it.pos < it.n:
            start = it.rows.len
            if cbuf_reserve(&it.rows, 4) < 0:
                return _fault(h, FAULT_HOST, "out of memory")
            it.rows.len += 4
            if tbl_get(t, it.ids[it.pos], &it.rows) < 0:
                return _fault(h, FAULT_HOST, "an iterator's row vanished before it was copied")
            wr_u32(it.rows.data + start, <uint32_t>(it.rows.len - start - 4))
            it.pos += 1
        it.copied = True
        it.rpos = 0
    return 0

# ---------------------------------------------------------------- the imports

cdef int _table_id(HostC* h, const unsigned char* name, uint32_t n) noexcept nogil:
    cdef int i
    for i in range(h.ntables):
        if h.tables[i].name_len == <int>n and memcmp(h.tables[i].name, name, n) == 0:
            return i
    h.last_error.len = 0
    cbuf_put(&h.last_error, b"no table named ", 15)
    cbuf_put(&h.last_error, name, n)
    return NO_SUCH_TABLE


cdef int _index_id(HostC* h, int32_t tid, const unsigned char* name, uint32_t n) noexcept nogil:
    cdef int i
    cdef HostTable* ht
    cdef char m[64]
    if tid < 0 or tid >= h.ntables:
        snprintf(m, 64, "no table with id %d", tid)
        return _fail(h, NO_SUCH_TABLE, m)
    ht = &h.tables[tid]
    for i in range(ht.nidx):
        if ht.idx[i].name_len == <int>n and memcmp(ht.idx[i].name, name, n) == 0:
            return i
    h.last_error.len = 0
    cbuf_put(&h.last_error, b"table '", 7)
    cbuf_put(&h.last_error, ht.name, ht.name_len)
    cbuf_put(&h.last_error, b"' has no index named ", 21)
    repr_text(name, n, True, &h.last_error)
    return NO_SUCH_INDEX


cdef int _insert(HostC* h, int32_t tid, unsigned char* row, uint32_t n) noexcept nogil:
    cdef int r = _table(h, tid)
    cdef uint64_t rid
    cdef Err e
    if r:
        return r
    r = _row(h, tid, row, n)
    if r:
        return r
    r = _before_write(h, tid)
    if r:
        return r
    # checked above: the table only walks the row again (auto-increment values are written
    # into the row bytes, the module's memory, in place)
    if tx_insert(h.tx, h.tables[tid].t, row, n, W_ASSIGN, &rid, &e) < 0:
        return _fail_err(h, &e)
    return 0


cdef int _update(HostC* h, int32_t tid, unsigned char* row, uint32_t n) noexcept nogil:
    cdef int r = _table(h, tid)
    cdef HostTable* ht
    cdef int64_t rid
    cdef uint64_t nid
    cdef Err e
    cdef char m[MSG]
    if r:
        return r
    ht = &h.tables[tid]
    if ht.pk < 0:
        snprintf(m, MSG, "table '%s' has no primary key to update by", ht.name)
        return _fail(h, BAD_ARGUMENT, m)
    r = _row(h, tid, row, n)
    if r:
        return r
    h.key_lo.len = 0
    if tbl_key_of(ht.t, ht.pk, row, h.starts, &h.key_lo) < 0:
        return _fault(h, FAULT_HOST, "out of memory")
    rid = tbl_find(ht.t, ht.pk, h.key_lo.data, h.key_lo.len)
    if rid == -2:
        return _fault(h, FAULT_HOST, "out of memory")
    if rid < 0:
        return 0
    r = _before_write(h, tid)
    if r:
        return r
    if tx_update(h.tx, ht.t, <uint64_t>rid, row, n, 0, &nid, &e) < 0:
        return _fail_err(h, &e)
    return 1


cdef int _delete(HostC* h, int32_t tid, int32_t iid, const unsigned char* key, uint32_t n) noexcept nogil:
    cdef IdList ids
    cdef Py_ssize_t i
    cdef Err e
    cdef int r
    memset(&ids, 0, sizeof(IdList))
    r = _lookup(h, tid, iid, key, n, &ids)
    if r == 0 and ids.n:
        r = _before_write(h, tid)
        i = 0
        while r == 0 and i < ids.n:
            if tx_delete(h.tx, h.tables[tid].t, ids.ids[i], &e) < 0:
                r = _fail_err(h, &e)
            i += 1
    if r == 0:
        r = <int>ids.n
    idl_free(&ids)
    return r


cdef int _seek(HostC* h, int32_t tid, int32_t iid, const unsigned char* key, uint32_t n) noexcept nogil:
    cdef IdList ids
    cdef int r
    memset(&ids, 0, sizeof(IdList))
    r = _lookup(h, tid, iid, key, n, &ids)
    if r:
        idl_free(&ids)
        return r
    return _new_iter(h, tid, &ids)


cdef int _find(HostC* h, int32_t tid, int32_t iid, const unsigned char* key, uint32_t n,
               unsigned char* buf, uint32_t cap) noexcept nogil:
    """The first row whose key of index ``iid`` is ``key``, written at ``buf``: its length; 0
    when there is none."""
    cdef int r = _table(h, tid)
    cdef int64_t rid
    cdef Py_ssize_t ln
    cdef HostTable* ht
    cdef char m[MSG]
    if r:
        return r
    r = _index(h, tid, iid)
    if r:
        return r
    ht = &h.tables[tid]
    r = _key(h, tid, iid, ht.idx[iid].ncols, key, n, &h.key_lo)
    if r:
        return r
    rid = tbl_find(ht.t, iid, h.key_lo.data, h.key_lo.len)
    if rid == -2:
        return _fault(h, FAULT_HOST, "out of memory")
    if rid < 0:
        return 0
    ln = page_rc_len(tbl_page(ht.t, <uint64_t>rid), rid & SLOT_MASK)
    if ln > cap:
        snprintf(m, MSG, "the row needs %zd bytes, the buffer has %u", ln, cap)
        if cap >= 4:
            wr_u32(buf, <uint32_t>ln)
        return _fail(h, BUFFER_TOO_SMALL, m)
    h.scratch.len = 0
    if tbl_get(ht.t, <uint64_t>rid, &h.scratch) < 0:
        return _fault(h, FAULT_HOST, "out of memory")
    memcpy(buf, h.scratch.data, ln)
    return <int>ln


cdef inline bint _succ(CBuf* k) noexcept nogil:
    """``k`` := the smallest string above every string starting with ``k``; False when there is
    none (empty, or all 0xFF)."""
    cdef Py_ssize_t i = k.len - 1
    while i >= 0 and k.data[i] == 0xFF:
        i -= 1
    if i < 0:
        k.len = 0
        return False
    k.data[i] += 1
    k.len = i + 1
    return True


cdef inline bint _below(const CBuf* a, const CBuf* b) noexcept nogil:
    cdef Py_ssize_t n = a.len if a.len < b.len else b.len
    cdef int c = memcmp(a.data, b.data, n)
    return c < 0 or (c == 0 and a.len < b.len)


cdef int _range(HostC* h, int32_t tid, int32_t iid, const unsigned char* lo, uint32_t lon,
                const unsigned char* hi, uint32_t hin, int32_t flags) noexcept nogil:
    cdef int r = _table(h, tid)
    cdef HostTable* ht
    cdef HostIndex* ix
    cdef int klo, khi
    cdef IdList ids
    cdef char m[MSG]
    cdef bint empty = False
    if r:
        return r
    r = _index(h, tid, iid)
    if r:
        return r
    ht = &h.tables[tid]
    ix = &ht.idx[iid]
    if not ix.btree:
        snprintf(m, MSG, "index '%s' of table '%s' is a hash index; range needs a btree index",
                 ix.name, ht.name)
        return _fail(h, WRONG_INDEX_KIND, m)
    if flags & ~0xFFFF0F:
        snprintf(m, MSG, "unknown range flags 0x%x", <unsigned int>flags)
        return _fail(h, BAD_ARGUMENT, m)
    klo = (flags >> 8) & 0xFF
    khi = (flags >> 16) & 0xFF
    h.key_lo.len = 0
    h.key_hi.len = 0
    if flags & 1:
        if klo < 1 or klo > ix.ncols:
            snprintf(m, MSG, "a bound of %d columns on index '%s' (%d columns)", klo, ix.name, ix.ncols)
            return _fail(h, BAD_ARGUMENT, m)
        r = _key(h, tid, iid, klo, lo, lon, &h.key_lo)
        if r:
            return r
    if flags & 4:
        if khi < 1 or khi > ix.ncols:
            snprintf(m, MSG, "a bound of %d columns on index '%s' (%d columns)", khi, ix.name, ix.ncols)
            return _fail(h, BAD_ARGUMENT, m)
        r = _key(h, tid, iid, khi, hi, hin, &h.key_hi)
        if r:
            return r
    # the bounds as Table.range makes them: start <= entry < end
    if flags & 1 and not (flags & 2):
        empty = not _succ(&h.key_lo)           # 'b > max' is empty
    if flags & 4 and not empty:
        if flags & 8:
            _succ(&h.key_hi)
        elif h.key_hi.len == 0:
            empty = True
        if h.key_hi.len and not _below(&h.key_lo, &h.key_hi):
            empty = True
    memset(&ids, 0, sizeof(IdList))
    if not empty and tbl_range(ht.t, iid, h.key_lo.data, h.key_lo.len, h.key_hi.data, h.key_hi.len,
                               -1, &ids) < 0:
        idl_free(&ids)
        return _fault(h, FAULT_HOST, "out of memory")
    return _new_iter(h, tid, &ids)


cdef int _scan(HostC* h, int32_t tid) noexcept nogil:
    cdef int r = _table(h, tid)
    cdef IdList ids
    if r:
        return r
    memset(&ids, 0, sizeof(IdList))
    if tbl_rowids(h.tables[tid].t, &ids) < 0:
        idl_free(&ids)
        return _fault(h, FAULT_HOST, "out of memory")
    return _new_iter(h, tid, &ids)


cdef int _iter_next(HostC* h, int32_t handle, unsigned char* buf, uint32_t cap) noexcept nogil:
    cdef HostIter* it = _iter(h, handle)
    cdef Py_ssize_t used = 0, n = 0, ln, need
    cdef const unsigned char* row
    cdef TableC* t
    cdef char m[MSG]
    if it == NULL:
        snprintf(m, MSG, "no open iterator %d", handle)
        return _fail(h, NO_SUCH_ITER, m)
    t = h.tables[it.tid].t
    while n < h.max_rows_per_batch:
        if it.copied:
            if it.rpos >= it.rows.len:
                break
            ln = rd_u32(it.rows.data + it.rpos)
            row = it.rows.data + it.rpos + 4
        else:
            if it.pos >= it.n:
                break
            h.scratch.len = 0
            if tbl_get(t, it.ids[it.pos], &h.scratch) < 0:
                return _fault(h, FAULT_HOST, "an iterator's row vanished")
            ln = h.scratch.len
            row = h.scratch.data
        need = 4 + ln
        if used + need > cap:
            if n == 0:
                snprintf(m, MSG, "the next row needs %zd bytes, the buffer has %u", need, cap)
                if cap >= 4:
                    wr_u32(buf, <uint32_t>need)
                return _fail(h, BUFFER_TOO_SMALL, m)
            break
        wr_u32(buf + used, <uint32_t>ln)
        if ln:
            memcpy(buf + used + 4, row, ln)
        used += need
        n += 1
        if it.copied:
            it.rpos += need
        else:
            it.pos += 1
    if n == 0:
        _iter_free(h, it)
        return 0
    return <int>used


cdef int _iter_close(HostC* h, int32_t handle) noexcept nogil:
    cdef HostIter* it = _iter(h, handle)
    cdef char m[64]
    if it == NULL:
        snprintf(m, 64, "no open iterator %d", handle)
        return _fail(h, NO_SUCH_ITER, m)
    _iter_free(h, it)
    return 0


cdef void _log(HostC* h, int32_t level, const unsigned char* msg, uint32_t n) noexcept nogil:
    """Keep a log line for after the call: at most MAX_LOG_BYTES of them (each line's text and
    its 5-byte head); from the first line that does not fit, every later one is only counted,
    so the lines kept are the first ones, in order."""
    cdef unsigned char head[5]
    if h.logs_dropped or h.logs.len + 5 + n > MAX_LOG_BYTES or cbuf_reserve(&h.logs, 5 + n) < 0:
        h.logs_dropped += 1
        h.log_bytes_dropped += n
        return
    head[0] = <unsigned char>(level if 0 <= level <= 255 else 255)
    wr_u32(head + 1, n)
    cbuf_put(&h.logs, head, 5)
    cbuf_put(&h.logs, msg, n)


cdef int64_t _random_seed(HostC* h) noexcept nogil:
    """blake2b(timestamp (8 bytes LE) ‖ sender ‖ reducer name), 8 bytes, as a signed LE int:
    the same call (time, caller, reducer) gives the same seed (host.call_seed)."""
    cdef CBuf b
    cdef unsigned char out[8]
    cdef int64_t seed
    if h.seed_known:
        return h.seed
    memset(&b, 0, sizeof(CBuf))
    if cbuf_put(&b, &h.timestamp, 8) < 0 or cbuf_put(&b, h.sender, 32) < 0 or \
            cbuf_put(&b, h.reducer.data, h.reducer.len) < 0:
        cbuf_free(&b)
        return _fault(h, FAULT_HOST, "out of memory")
    blake2b(out, 8, b.data, b.len)
    cbuf_free(&b)
    memcpy(&seed, out, 8)
    h.seed = seed
    h.seed_known = True
    return seed


cdef int64_t host_dispatch(HostC* h, int op, unsigned char* mem, uint64_t size,
                           const int32_t* a) noexcept nogil:
    cdef uint32_t p1 = <uint32_t>a[1], p2 = <uint32_t>a[2], p3 = <uint32_t>a[3]
    cdef uint32_t p4 = <uint32_t>a[4], p5 = <uint32_t>a[5]
    cdef uint32_t p0 = <uint32_t>a[0]
    cdef uint32_t ln
    if op == h.inject_op:
        h.inject_op = -1
        return _fault(h, FAULT_HOST, "an injected host failure (tests)")
    if op == OP_FIND:
        # the whole buffer must be in memory, then the key
        if not _span(h, size, p4, p5) or not _span(h, size, p2, p3):
            return STOP
        return _find(h, a[0], a[1], mem + p2, p3, mem + p4, p5)
    if op == OP_INSERT:
        if not _span(h, size, p1, p2):
            return STOP
        return _insert(h, a[0], mem + p1, p2)
    if op == OP_UPDATE:
        if not _span(h, size, p1, p2):
            return STOP
        return _update(h, a[0], mem + p1, p2)
    if op == OP_ITER_NEXT:
        if not _span(h, size, p1, p2):
            return STOP
        return _iter_next(h, a[0], mem + p1, p2)
    if op == OP_SEEK or op == OP_DELETE:
        if not _span(h, size, p2, p3):
            return STOP
        if op == OP_SEEK:
            return _seek(h, a[0], a[1], mem + p2, p3)
        return _delete(h, a[0], a[1], mem + p2, p3)
    if op == OP_TABLE_ID:
        if not _span(h, size, p0, p1):
            return STOP
        return _table_id(h, mem + p0, p1)
    if op == OP_INDEX_ID:
        if not _span(h, size, p1, p2):
            return STOP
        return _index_id(h, a[0], mem + p1, p2)
    if op == OP_RANGE:
        if not _span(h, size, p2, p3) or not _span(h, size, p4, p5):
            return STOP
        return _range(h, a[0], a[1], mem + p2, p3, mem + p4, p5, a[6])
    if op == OP_SCAN:
        return _scan(h, a[0])
    if op == OP_ITER_CLOSE:
        return _iter_close(h, a[0])
    if op == OP_LOG:
        if not _span(h, size, p1, p2):
            return STOP
        _log(h, a[0], mem + p1, p2)
        return 0
    if op == OP_SENDER:
        if not _span(h, size, p0, 32):
            return STOP
        memcpy(mem + p0, h.sender, 32)
        return 0
    if op == OP_CONNECTION_ID:
        if not _span(h, size, p0, 16):
            return STOP
        memcpy(mem + p0, h.conn, 16)
        return 0
    if op == OP_TIMESTAMP:
        return h.timestamp
    if op == OP_RANDOM_SEED:
        return _random_seed(h)
    if op == OP_ERROR_DETAIL:
        if not _span(h, size, p0, p1):
            return STOP
        ln = <uint32_t>h.last_error.len
        if ln:
            memcpy(mem + p0, h.last_error.data, ln if ln < p1 else p1)
        return ln
    return _fault(h, FAULT_HOST, "unknown import")

# ---------------------------------------------------------------- a call

cdef int host_begin(HostC* h, TxC* tx, const unsigned char* sender, const unsigned char* conn,
                    int64_t timestamp, const unsigned char* reducer, Py_ssize_t rlen) noexcept nogil:
    """Start a call (the tables bound already): 0, -1 out of memory."""
    h.reducer.len = 0
    if cbuf_put(&h.reducer, reducer, rlen) < 0:
        return -1
    h.tx = tx
    memcpy(h.sender, sender, 32)
    memcpy(h.conn, conn, 16)
    h.timestamp = timestamp
    h.seed_known = False
    h.seed = 0
    h.last_error.len = 0
    h.fault = FAULT_NONE
    _iters_close_all(h)
    h.next_handle = 0
    return 0


cdef void host_end(HostC* h) noexcept nogil:
    h.tx = NULL
    _iters_close_all(h)
    h.last_error.len = 0

# ---------------------------------------------------------------- Python

cdef char* _cstr(str s, int* n) except NULL:
    cdef bytes b = s.encode("utf-8")
    cdef char* out = <char*>PyMem_RawMalloc(len(b) + 1)
    if out == NULL:
        raise MemoryError()
    memcpy(out, <char*>b, len(b))
    out[len(b)] = 0
    if n != NULL:
        n[0] = len(b)
    return out


@cython.final
cdef class NativeHost:
    """The imports of one published module (``schema``: its ModuleSchema; None while a module
    describes itself, when no table exists).  Per call, ``begin_call`` binds the database's
    tables and the transaction, ``end_call`` ends it; ``flush_logs`` hands the call's log lines
    to Python.  The methods named like the imports (``table_id``, ``insert``, ...) run one
    import from Python over a scratch memory, for tests and comparison with ModuleHost."""

    def __cinit__(self, schema, limits, logger, sink=None):
        cdef int i, j, maxcols = 1
        cdef HostTable* ht
        cdef HostIndex* hi
        memset(&self.h, 0, sizeof(HostC))
        self.h.inject_op = -1
        self.schema = schema
        self.limits = limits
        self.logger = logger
        self.sink = sink
        self.recent_logs = deque(maxlen=1000)
        self.bound = []
        self.bound_ds = None
        self.bound_gen = -1
        self.reducer = ""
        self.h.max_row_bytes = limits.max_row_bytes
        self.h.max_rows_per_batch = limits.max_rows_per_batch
        tables = list(schema.tables) if schema is not None else []
        self.h.tables = <HostTable*>PyMem_RawCalloc(len(tables) if tables else 1, sizeof(HostTable))
        if self.h.tables == NULL:
            raise MemoryError()
        for i, t in enumerate(tables):
            ht = &self.h.tables[i]
            self.h.ntables = i + 1
            ht.name = _cstr(t.name, &ht.name_len)
            ht.ncols = len(t.columns)
            maxcols = max(maxcols, ht.ncols)
            defs = list(t.all_indexes())
            ht.pk = next((k for k, d in enumerate(defs) if d.name == "pk"), -1) if t.primary_key else -1
            ht.idx = <HostIndex*>PyMem_RawCalloc(len(defs) if defs else 1, sizeof(HostIndex))
            if ht.idx == NULL:
                raise MemoryError()
            for j, d in enumerate(defs):
                hi = &ht.idx[j]
                ht.nidx = j + 1
                hi.name = _cstr(d.name, &hi.name_len)
                hi.btree = d.kind == "btree"
                hi.ncols = len(d.columns)
                hi.key = rowspec_new(f"{t.name}.{d.name}", list(d.columns),
                                     [t.column_types[t.column_index(c)] for c in d.columns])
        self.h.starts = <Py_ssize_t*>PyMem_RawMalloc(sizeof(Py_ssize_t) * (maxcols + 1))
        if self.h.starts == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef int i, j
        _iters_close_all(&self.h)
        if self.h.iters != NULL:
            for i in range(MAX_ITERS):
                cbuf_free(&self.h.iters[i].rows)
            PyMem_RawFree(self.h.iters)
        if self.h.tables != NULL:
            for i in range(self.h.ntables):
                PyMem_RawFree(self.h.tables[i].name)
                if self.h.tables[i].idx != NULL:
                    for j in range(self.h.tables[i].nidx):
                        PyMem_RawFree(self.h.tables[i].idx[j].name)
                        rowspec_free(self.h.tables[i].idx[j].key)
                    PyMem_RawFree(self.h.tables[i].idx)
            PyMem_RawFree(self.h.tables)
        PyMem_RawFree(self.h.starts)
        cbuf_free(&self.h.reducer)
        cbuf_free(&self.h.last_error)
        cbuf_free(&self.h.logs)
        cbuf_free(&self.h.scratch)
        cbuf_free(&self.h.key_lo)
        cbuf_free(&self.h.key_hi)

    # ---- per call

    def bind(self, datastore, generation=None):
        """Point every module table at the datastore's table of that name (again only when
        ``generation`` changed: tables are replaced by create / alter / drop)."""
        self.bind_to(datastore, -1 if generation is None else generation)

    cdef int bind_to(self, object datastore, Py_ssize_t generation) except -1:
        cdef int i
        cdef Table t
        if generation >= 0 and datastore is self.bound_ds and generation == self.bound_gen:
            return 0
        bound = []
        for i in range(self.h.ntables):
            t = datastore.table(self.h.tables[i].name.decode("utf-8"))
            bound.append(t)
            self.h.tables[i].t = t.c
        self.bound = bound
        self.bound_ds = datastore
        self.bound_gen = generation
        return 0

    def begin_call(self, tx, str reducer, bytes sender, bytes connection_id, int64_t timestamp, seed=None):
        """``tx``: the call's (native) Transaction; ``seed`` the call's random_seed, None to
        derive it when the module first asks."""
        cdef NativeTx core = tx._w
        if len(sender) != 32 or len(connection_id) != 16:
            raise InternalError("a call's sender is 32 bytes and its connection id 16")
        self.bind(tx._store, getattr(tx._store, "generation", None))
        rb = reducer.encode("utf-8")
        if host_begin(&self.h, &core.tx, <unsigned char*>(<char*>sender),
                      <unsigned char*>(<char*>connection_id), timestamp, <unsigned char*>(<char*>rb),
                      len(rb)) < 0:
            raise MemoryError()
        if seed is not None:
            self.h.seed_known = True
            self.h.seed = seed
        self.tx = tx
        self.reducer = reducer

    def end_call(self):
        host_end(&self.h)
        self.tx = None

    def inject_fault(self, str name):
        """Tests: the next call of import ``name`` fails as the host itself would (the call
        traps and the caller reports an InternalError)."""
        from stdb.module._wasm import IMPORTS
        self.h.inject_op = IMPORTS[name][0]

    def take_fault(self):
        """(kind, message) of the fault that trapped the last call ("trap", "host"), or None;
        cleared."""
        if self.h.fault == FAULT_NONE:
            return None
        kind = "trap" if self.h.fault == FAULT_TRAP else "host"
        msg = (<bytes>self.h.fault_msg).decode("utf-8", "replace")
        self.h.fault = FAULT_NONE
        return kind, msg

    def flush_logs(self):
        """Hand the call's log lines to Python: recent_logs, the sink, the logger."""
        cdef Py_ssize_t pos = 0, n
        cdef int level
        if self.h.logs.len == 0 and self.h.logs_dropped == 0:
            return
        try:
            while pos < self.h.logs.len:
                level = self.h.logs.data[pos]
                n = rd_u32(self.h.logs.data + pos + 1)
                text = PyBytes_FromStringAndSize(<char*>self.h.logs.data + pos + 5, n).decode(
                    "utf-8", "replace")
                pos += 5 + n
                self._log_entry(level, text)
            if self.h.logs_dropped:
                self._log_entry(1, f"{self.h.logs_dropped} more log lines ({self.h.log_bytes_dropped} bytes) "
                                   f"were dropped: a call keeps at most {MAX_LOG_BYTES} bytes of log lines")
        finally:
            self.h.logs.len = 0
            self.h.logs_dropped = 0
            self.h.log_bytes_dropped = 0

    def _log_entry(self, int level, str text):
        entry = {"ts": self.h.timestamp, "level": LEVEL_NAMES.get(level, str(level)),
                 "reducer": self.reducer, "message": text}
        self.recent_logs.append(entry)
        try:
            if self.sink is not None:
                self.sink(entry)
            self.logger.log(LEVELS.get(level, logging.INFO), "[%s] %s", self.reducer or "-", text)
        except Exception:
            # the call is decided by now (maybe committed): a failing listener must not undo it
            logging.getLogger("stdb.module").exception("a module log listener failed")

    # ---- the call's context (as ModuleHost has it)

    @property
    def sender(self):
        return PyBytes_FromStringAndSize(<char*>self.h.sender, 32)

    @property
    def connection_id(self):
        return PyBytes_FromStringAndSize(<char*>self.h.conn, 16)

    @property
    def timestamp(self):
        return self.h.timestamp

    @property
    def random_seed(self):
        cdef int64_t s = _random_seed(&self.h)
        return s

    @property
    def last_error(self):
        return PyBytes_FromStringAndSize(<char*>self.h.last_error.data, self.h.last_error.len) \
            if self.h.last_error.len else b""

    # ---- one import from Python (tests): inputs at the start of a scratch memory, outputs after

    cdef _run(self, int op, list args, list blobs, Py_ssize_t out_cap):
        """Lay ``blobs`` out in a scratch memory, put their pointers and lengths into ``args``
        where they are None, run the import, and return (result, memory, out pointer)."""
        cdef int32_t a[7]
        cdef Py_ssize_t pos = 0, i, k = 0
        cdef bytearray mem
        total = sum(len(b) for b in blobs) + out_cap + 8
        mem = bytearray(total)
        ptrs = []
        for b in blobs:
            mem[pos:pos + len(b)] = b
            ptrs.append((pos, len(b)))
            pos += len(b)
        out = pos
        memset(a, 0, sizeof(a))
        for i, v in enumerate(args):
            if v is None:
                p, n = ptrs[k // 2]
                a[i] = p if k % 2 == 0 else n
                k += 1
            elif v == "out":
                a[i] = <int32_t>out
            else:
                a[i] = <int32_t>v
        self.h.fault = FAULT_NONE
        r = host_dispatch(&self.h, op, <unsigned char*>(<char*>mem), len(mem), a)
        if self.h.fault != FAULT_NONE:
            kind, msg = self.take_fault()
            raise InternalError(f"the import faulted ({kind}): {msg}")
        return r, mem, out

    def table_id(self, bytes name):
        return self._run(OP_TABLE_ID, [None, None], [name], 0)[0]

    def index_id(self, int tid, bytes name):
        return self._run(OP_INDEX_ID, [tid, None, None], [name], 0)[0]

    def insert(self, int tid, bytes data):
        r, mem, _ = self._run(OP_INSERT, [tid, None, None], [data], 0)
        if r == 0 and self.h.tables[tid].t.nseq:
            return r, bytes(mem[:len(data)])       # the row with its auto-increment values
        return r, None

    def update(self, int tid, bytes data):
        return self._run(OP_UPDATE, [tid, None, None], [data], 0)[0], None

    def delete(self, int tid, int iid, bytes key):
        return self._run(OP_DELETE, [tid, iid, None, None], [key], 0)[0]

    def seek(self, int tid, int iid, bytes key):
        return self._run(OP_SEEK, [tid, iid, None, None], [key], 0)[0]

    def find(self, int tid, int iid, bytes key, int cap):
        r, mem, out = self._run(OP_FIND, [tid, iid, None, None, "out", cap], [key], cap)
        if r > 0:
            return r, bytes(mem[out:out + r])
        if r == BUFFER_TOO_SMALL and cap >= 4:
            return r, bytes(mem[out:out + 4])
        return r, None

    def range(self, int tid, int iid, bytes lo, bytes hi, int flags):
        return self._run(OP_RANGE, [tid, iid, None, None, None, None, flags], [lo, hi], 0)[0]

    def scan(self, int tid):
        return self._run(OP_SCAN, [tid], [], 0)[0]

    def iter_next(self, int handle, int cap):
        r, mem, out = self._run(OP_ITER_NEXT, [handle, "out", cap], [], cap)
        if r > 0:
            return r, bytes(mem[out:out + r])
        if r == BUFFER_TOO_SMALL and cap >= 4:
            return r, bytes(mem[out:out + 4])
        return r, None

    def iter_close(self, int handle):
        return self._run(OP_ITER_CLOSE, [handle], [], 0)[0]

    def log(self, int level, bytes message):
        self._run(OP_LOG, [level, None, None], [message], 0)
        self.flush_logs()
