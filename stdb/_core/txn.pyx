# cython: language_level=3
"""Transactions in C.

Design (docs/architecture.md, "Transactions"): a write transaction changes the tables in place
and remembers, for every row id it touches, the row that was there when it first touched it (or
that the slot was empty) — here as row-codec bytes in a per-table arena.  That one write set
gives everything:

* the delta: per touched row id, the original row (if any) is deleted and the current row (if
  any) inserted, with identical rows cancelled (compared as bytes: equal rows are equal bytes,
  a NaN included, and a row whose bits changed — -0.0 for 0.0 — is a change the log must keep);
* the commit-log record, built from the delta as docs/log-format.md lays it out;
* rollback: delete the current rows of the touched ids, put every original row back at its id,
  restore the sequences.

All of it without the GIL and without a Python object per row.  ``NativeTx`` is the Python
face of one transaction over ``Table`` objects; ``stdb.storage.datastore.Transaction`` wraps it
(and keeps a pure-Python write set as the twin for ``stdb._core.reference`` tables).
"""

cimport cython
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memcmp, memset, memmove, strlen
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawCalloc, PyMem_RawRealloc, PyMem_RawFree
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

from stdb._core.rowbytes cimport (
    CBuf, Err, E_INTERNAL, E_BAD_ARGUMENT, cbuf_put, cbuf_reserve, cbuf_free,
    rd_u32, wr_u32, err_set, err_nomem, raise_err,
)
from stdb._core.table cimport (
    Table, TableC, SeqC, tbl_page, tbl_insert, tbl_insert_at, tbl_update, tbl_delete, tbl_get,
    W_ASSIGN,
)
from stdb._core.index cimport fmix64, hash_bytes
from stdb._core.digest cimport crc32c

from stdb.errors import InternalError, StorageError

DEF _MAP_FROM = 8        # write sets of fewer entries are searched in order, without the map

# ---------------------------------------------------------------- write sets

cdef void tx_init(TxC* tx) noexcept nogil:
    memset(tx, 0, sizeof(TxC))


cdef void _ws_free(WriteSet* ws) noexcept nogil:
    PyMem_RawFree(ws.entries)
    PyMem_RawFree(ws.map)
    PyMem_RawFree(ws.seqs)
    cbuf_free(&ws.arena)
    memset(ws, 0, sizeof(WriteSet))


cdef void tx_free(TxC* tx) noexcept nogil:
    cdef int i
    for i in range(tx.capsets):
        _ws_free(&tx.sets[i])
    PyMem_RawFree(tx.sets)
    PyMem_RawFree(tx.dt)
    cbuf_free(&tx.delta)
    cbuf_free(&tx.cur)
    cbuf_free(&tx.pairs)
    cbuf_free(&tx.hashes)
    memset(tx, 0, sizeof(TxC))


cdef void tx_reset(TxC* tx) noexcept nogil:
    cdef int i
    cdef WriteSet* ws
    for i in range(tx.nsets):
        ws = &tx.sets[i]
        if ws.n >= _MAP_FROM and ws.map != NULL:
            memset(ws.map, 0, ws.mapcap * sizeof(uint64_t))
        ws.n = 0
        ws.arena.len = 0
        ws.t = NULL
    tx.nsets = 0
    tx.ndt = 0
    tx.delta.len = 0
    tx.delta_ready = False


cdef WriteSet* tx_set(TxC* tx, TableC* t) noexcept nogil:
    cdef int i, cap
    cdef WriteSet* ws
    cdef WriteSet* grown
    for i in range(tx.nsets):
        if tx.sets[i].t == t:
            return &tx.sets[i]
    if tx.nsets == tx.capsets:
        cap = tx.capsets * 2 if tx.capsets else 4
        grown = <WriteSet*>PyMem_RawRealloc(tx.sets, cap * sizeof(WriteSet))
        if grown == NULL:
            return NULL
        memset(grown + tx.capsets, 0, (cap - tx.capsets) * sizeof(WriteSet))
        tx.sets = grown
        tx.capsets = cap
    ws = &tx.sets[tx.nsets]
    if t.nseq:
        if ws.nseq < t.nseq:
            PyMem_RawFree(ws.seqs)
            ws.seqs = <SeqC*>PyMem_RawMalloc(t.nseq * sizeof(SeqC))
            if ws.seqs == NULL:
                ws.nseq = 0
                return NULL
        memcpy(ws.seqs, t.seqs, t.nseq * sizeof(SeqC))
    ws.nseq = t.nseq
    ws.t = t
    ws.n = 0
    ws.arena.len = 0
    tx.nsets += 1
    return ws


cdef Py_ssize_t _find(WriteSet* ws, uint64_t rowid) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t mask, h, s
    if ws.n < _MAP_FROM:
        for i in range(ws.n):
            if ws.entries[i].rowid == rowid:
                return i
        return -1
    mask = ws.mapcap - 1
    h = fmix64(rowid) & mask
    while True:
        s = ws.map[h]
        if s == 0:
            return -1
        if ws.entries[s - 1].rowid == rowid:
            return <Py_ssize_t>(s - 1)
        h = (h + 1) & mask


cdef inline void _map_put(WriteSet* ws, Py_ssize_t i) noexcept nogil:
    cdef uint64_t mask = ws.mapcap - 1
    cdef uint64_t h = fmix64(ws.entries[i].rowid) & mask
    while ws.map[h] != 0:
        h = (h + 1) & mask
    ws.map[h] = <uint64_t>(i + 1)


cdef int _reserve(WriteSet* ws, Py_ssize_t extra) noexcept nogil:
    """Room for ``extra`` more entries (entries array and map), so that touching cannot fail
    for lack of it."""
    cdef Py_ssize_t cap, i, want = ws.n + extra
    cdef WsEntry* ne
    cdef uint64_t* nm
    if want > ws.cap:
        cap = ws.cap * 2 if ws.cap else 8
        while cap < want:
            cap *= 2
        ne = <WsEntry*>PyMem_RawRealloc(ws.entries, cap * sizeof(WsEntry))
        if ne == NULL:
            return -1
        ws.entries = ne
        ws.cap = cap
    if want >= _MAP_FROM and want * 2 > ws.mapcap:
        cap = ws.mapcap * 2 if ws.mapcap else 32
        while cap < want * 2:
            cap *= 2
        nm = <uint64_t*>PyMem_RawCalloc(cap, sizeof(uint64_t))
        if nm == NULL:
            return -1
        PyMem_RawFree(ws.map)
        ws.map = nm
        ws.mapcap = cap
        if ws.n >= _MAP_FROM:
            for i in range(ws.n):
                _map_put(ws, i)
    return 0


cdef int _touch(WriteSet* ws, uint64_t rowid, bint present) noexcept nogil:
    """Remember what was at ``rowid`` before this transaction first touched it (after
    _reserve: only reading a present row can fail, for memory)."""
    cdef WsEntry* en
    cdef Py_ssize_t off, i
    if _find(ws, rowid) >= 0:
        return 0
    off = -1
    if present:
        off = ws.arena.len
        if tbl_get(ws.t, rowid, &ws.arena) < 0:
            ws.arena.len = off
            return -1
    en = &ws.entries[ws.n]
    en.rowid = rowid
    en.off = off
    en.len = ws.arena.len - off if present else 0
    ws.n += 1
    if ws.n == _MAP_FROM:
        for i in range(ws.n):
            _map_put(ws, i)
    elif ws.n > _MAP_FROM:
        _map_put(ws, ws.n - 1)
    return 0

# ---------------------------------------------------------------- writes

cdef int tx_insert(TxC* tx, TableC* t, unsigned char* row, Py_ssize_t n, int flags, uint64_t* rowid,
                   Err* e) noexcept nogil:
    cdef WriteSet* ws = tx_set(tx, t)
    if ws == NULL or _reserve(ws, 1) < 0:
        return err_nomem(e)
    if tbl_insert(t, row, n, flags, rowid, e) < 0:
        return -1
    _touch(ws, rowid[0], False)          # reserved: cannot fail
    tx.delta_ready = False
    return 0


cdef int tx_update(TxC* tx, TableC* t, uint64_t rowid, unsigned char* row, Py_ssize_t n, int flags,
                   uint64_t* newid, Err* e) noexcept nogil:
    cdef WriteSet* ws = tx_set(tx, t)
    if ws == NULL or _reserve(ws, 2) < 0:
        return err_nomem(e)
    if tbl_page(t, rowid) == NULL:
        e.code = E_INTERNAL
        err_set(e, E_INTERNAL, "update of a row id that holds no row")
        return -1
    if _touch(ws, rowid, True) < 0:
        return err_nomem(e)
    tx.delta_ready = False
    if tbl_update(t, rowid, row, n, flags, newid, e) < 0:
        return -1
    if newid[0] != rowid:
        _touch(ws, newid[0], False)
    return 0


cdef int tx_delete(TxC* tx, TableC* t, uint64_t rowid, Err* e) noexcept nogil:
    cdef WriteSet* ws = tx_set(tx, t)
    if ws == NULL or _reserve(ws, 1) < 0:
        return err_nomem(e)
    if tbl_page(t, rowid) == NULL:
        return err_set(e, E_INTERNAL, "delete of a row id that holds no row")
    if _touch(ws, rowid, True) < 0:
        return err_nomem(e)
    tx.delta_ready = False
    return tbl_delete(t, rowid, e)

# ---------------------------------------------------------------- the delta

cdef inline int _framed(CBuf* out, const unsigned char* row, Py_ssize_t n) noexcept nogil:
    if cbuf_reserve(out, 4 + n) < 0:
        return -1
    wr_u32(out.data + out.len, <uint32_t>n)
    if n:
        memcpy(out.data + out.len + 4, row, n)
    out.len += 4 + n
    return 0


ctypedef struct _Row:
    Py_ssize_t off            # the framed row's start (its length field) in the delta
    Py_ssize_t n              # the row's length
    uint64_t h
    bint gone


cdef int _rows_of(const CBuf* d, Py_ssize_t pos, uint32_t count, _Row* out) noexcept nogil:
    cdef uint32_t i
    for i in range(count):
        out[i].off = pos
        out[i].n = rd_u32(d.data + pos)
        out[i].h = hash_bytes(d.data + pos + 4, out[i].n)
        out[i].gone = False
        pos += 4 + out[i].n
    return 0


cdef int _cancel_pairs(TxC* tx, Py_ssize_t rows, uint32_t* ndel, uint32_t* nins) noexcept nogil:
    """Drop rows both deleted and inserted (as a multiset of byte strings) from the framed rows
    at tx.delta[rows:], deletes then inserts, keeping the order of the rest."""
    cdef uint32_t nd = ndel[0], ni = nins[0], i, j, kept_d = 0, kept_i = 0
    cdef _Row* r
    cdef uint64_t* slots
    cdef uint64_t mask, h, s
    cdef Py_ssize_t cap = 16, pos, w
    cdef const unsigned char* d
    cdef bint any_gone = False
    tx.pairs.len = 0
    if cbuf_reserve(&tx.pairs, (nd + ni) * sizeof(_Row)) < 0:
        return -1
    r = <_Row*>tx.pairs.data
    pos = rows
    _rows_of(&tx.delta, pos, nd, r)
    if nd:
        pos = r[nd - 1].off + 4 + r[nd - 1].n
    _rows_of(&tx.delta, pos, ni, r + nd)
    while cap < 2 * nd:
        cap *= 2
    tx.hashes.len = 0
    if cbuf_reserve(&tx.hashes, cap * sizeof(uint64_t)) < 0:
        return -1
    slots = <uint64_t*>tx.hashes.data
    memset(slots, 0, cap * sizeof(uint64_t))
    mask = cap - 1
    for i in range(nd):
        h = r[i].h & mask
        while slots[h] != 0:
            h = (h + 1) & mask
        slots[h] = i + 1
    d = tx.delta.data
    for j in range(nd, nd + ni):
        h = r[j].h & mask
        while slots[h] != 0:
            s = slots[h] - 1
            if (not r[s].gone and r[s].h == r[j].h and r[s].n == r[j].n
                    and memcmp(d + r[s].off + 4, d + r[j].off + 4, r[j].n) == 0):
                r[s].gone = True
                r[j].gone = True
                any_gone = True
                break
            h = (h + 1) & mask
    if not any_gone:
        return 0
    w = rows
    for i in range(nd + ni):
        if r[i].gone:
            continue
        if w != r[i].off:
            memmove(tx.delta.data + w, tx.delta.data + r[i].off, 4 + r[i].n)
        w += 4 + r[i].n
        if i < nd:
            kept_d += 1
        else:
            kept_i += 1
    tx.delta.len = w
    ndel[0] = kept_d
    nins[0] = kept_i
    return 0


cdef int _table_delta(TxC* tx, int w) noexcept nogil:
    """Append write set ``w``'s section to the delta (nothing when nothing changed)."""
    cdef WriteSet* ws = &tx.sets[w]
    cdef TableC* t = ws.t
    cdef Py_ssize_t start = tx.delta.len, rows, i, nlen
    cdef uint32_t ndel = 0, nins = 0
    cdef WsEntry* en
    cdef bint live
    cdef DeltaTable* dt
    cdef int cap
    nlen = strlen(t.spec.table)
    if cbuf_reserve(&tx.delta, 2 + nlen + 8) < 0:
        return -1
    tx.delta.data[start] = nlen & 0xFF
    tx.delta.data[start + 1] = (nlen >> 8) & 0xFF
    memcpy(tx.delta.data + start + 2, t.spec.table, nlen)
    tx.delta.len = start + 2 + nlen + 8
    rows = tx.delta.len
    tx.cur.len = 0                       # the inserted rows, framed, until the deletes are in
    for i in range(ws.n):
        en = &ws.entries[i]
        live = tbl_page(t, en.rowid) != NULL
        if live:
            tx.pairs.len = 0
            if tbl_get(t, en.rowid, &tx.pairs) < 0:
                return -1
            if en.off >= 0 and en.len == tx.pairs.len and \
                    memcmp(ws.arena.data + en.off, tx.pairs.data, en.len) == 0:
                continue                 # unchanged
            if _framed(&tx.cur, tx.pairs.data, tx.pairs.len) < 0:
                return -1
            nins += 1
        if en.off >= 0:
            if _framed(&tx.delta, ws.arena.data + en.off, en.len) < 0:
                return -1
            ndel += 1
    if cbuf_put(&tx.delta, tx.cur.data, tx.cur.len) < 0:
        return -1
    if ndel and nins and _cancel_pairs(tx, rows, &ndel, &nins) < 0:
        return -1
    if ndel + nins == 0:
        tx.delta.len = start
        return 0
    wr_u32(tx.delta.data + start + 2 + nlen, ndel)
    wr_u32(tx.delta.data + start + 2 + nlen + 4, nins)
    if tx.ndt == tx.capdt:
        cap = tx.capdt * 2 if tx.capdt else 4
        dt = <DeltaTable*>PyMem_RawRealloc(tx.dt, cap * sizeof(DeltaTable))
        if dt == NULL:
            return -1
        tx.dt = dt
        tx.capdt = cap
    dt = &tx.dt[tx.ndt]
    dt.ws = w
    dt.start = start
    dt.rows = rows
    dt.ndel = ndel
    dt.nins = nins
    tx.ndt += 1
    return 0


cdef int tx_delta(TxC* tx, Err* e) noexcept nogil:
    cdef int w
    if tx.delta_ready:
        return 0
    tx.delta.len = 0
    tx.ndt = 0
    for w in range(tx.nsets):
        if _table_delta(tx, w) < 0:
            tx.delta.len = 0
            tx.ndt = 0
            return err_nomem(e)
    tx.delta_ready = True
    return 0


cdef int tx_rollback(TxC* tx, Err* e) noexcept nogil:
    cdef int w
    cdef Py_ssize_t i
    cdef WriteSet* ws
    cdef WsEntry* en
    for w in range(tx.nsets):
        ws = &tx.sets[w]
        for i in range(ws.n):
            en = &ws.entries[i]
            if tbl_page(ws.t, en.rowid) != NULL and tbl_delete(ws.t, en.rowid, e) < 0:
                return -1
        for i in range(ws.n):
            en = &ws.entries[i]
            if en.off >= 0 and tbl_insert_at(ws.t, en.rowid, ws.arena.data + en.off, en.len, e) < 0:
                return -1
        if ws.nseq:
            memcpy(ws.t.seqs, ws.seqs, ws.nseq * sizeof(SeqC))
    tx.delta_ready = False
    return 0

# ---------------------------------------------------------------- the log record

cdef void frame_record(unsigned char* rec, int kind, Py_ssize_t body_len) noexcept nogil:
    cdef uint32_t crc
    rec[0] = LOG_FORMAT_VERSION
    rec[1] = <unsigned char>kind
    rec[2] = 0
    rec[3] = 0
    wr_u32(rec + 4, <uint32_t>body_len)
    crc = crc32c(crc32c(0, rec, 8), rec + LOG_HEADER, body_len)
    wr_u32(rec + 8, crc)


cdef int tx_record(TxC* tx, uint64_t offset, int64_t timestamp, const unsigned char* caller,
                   const unsigned char* reducer, Py_ssize_t rlen, const unsigned char* args,
                   Py_ssize_t alen, CBuf* out, Err* e) noexcept nogil:
    cdef Py_ssize_t start = out.len, need
    cdef unsigned char* p
    if rlen > 0xFFFF:
        return err_set(e, E_BAD_ARGUMENT, "reducer name longer than 65535 bytes in a log record")
    if tx.ndt > 0xFFFF:
        return err_set(e, E_BAD_ARGUMENT, "more than 65535 tables in one transaction")
    if <uint64_t>alen > <uint64_t>0xFFFFFFFFU:
        return err_set(e, E_BAD_ARGUMENT, "reducer arguments longer than 4 GiB in a log record")
    need = LOG_HEADER + 17 + (32 if caller != NULL else 0) + 2 + rlen + 4 + alen + 2 + tx.delta.len
    if cbuf_reserve(out, need) < 0:
        return err_nomem(e)
    p = out.data + start + LOG_HEADER
    memcpy(p, &offset, 8)
    memcpy(p + 8, &timestamp, 8)
    p += 16
    if caller != NULL:
        p[0] = 1
        memcpy(p + 1, caller, 32)
        p += 33
    else:
        p[0] = 0
        p += 1
    p[0] = rlen & 0xFF
    p[1] = (rlen >> 8) & 0xFF
    if rlen:
        memcpy(p + 2, reducer, rlen)
    p += 2 + rlen
    wr_u32(p, <uint32_t>alen)
    if alen:
        memcpy(p + 4, args, alen)
    p += 4 + alen
    p[0] = tx.ndt & 0xFF
    p[1] = (tx.ndt >> 8) & 0xFF
    p += 2
    if tx.delta.len:
        memcpy(p, tx.delta.data, tx.delta.len)
    frame_record(out.data + start, LOG_KIND_TX, need - LOG_HEADER)
    out.len = start + need
    return 0

# ---------------------------------------------------------------- Python

cdef inline const unsigned char* _ptr(object b, Py_ssize_t* n) except? NULL:
    if b is None:
        n[0] = 0
        return NULL
    n[0] = PyBytes_GET_SIZE(b)
    return <const unsigned char*>PyBytes_AS_STRING(b)


@cython.final
cdef class NativeTx:
    """One write transaction over native ``Table`` objects (not constructible from Python
    usefully on its own: ``stdb.storage.datastore.Transaction`` drives it)."""

    def __cinit__(self):
        tx_init(&self.tx)
        self.tables = []

    def __dealloc__(self):
        tx_free(&self.tx)

    cdef void _keep(self, Table t):
        if t not in self.tables:
            self.tables.append(t)

    def insert(self, Table t, row):
        """Check and insert ``row``; returns it as stored (auto-increment filled in)."""
        cdef Py_ssize_t n
        cdef const unsigned char* p = t._encode_into(t.codec.check_row(row), &n)
        cdef uint64_t rid
        cdef Err e
        self._keep(t)
        if tx_insert(&self.tx, t.c, <unsigned char*>p, n, W_ASSIGN, &rid, &e) < 0:
            raise_err(&e)
        return t.get(rid)

    def update_rowid(self, Table t, uint64_t rowid, row):
        """Replace the row at ``rowid``; returns the old row."""
        cdef Py_ssize_t n
        cdef const unsigned char* p
        cdef uint64_t nid
        cdef Err e
        old = t.get(rowid)
        p = t._encode_into(t.codec.check_row(row), &n)
        self._keep(t)
        if tx_update(&self.tx, t.c, rowid, <unsigned char*>p, n, 0, &nid, &e) < 0:
            raise_err(&e)
        return old

    def delete_rowid(self, Table t, uint64_t rowid):
        """Delete the row at ``rowid``; returns it."""
        cdef Err e
        old = t.get(rowid)
        self._keep(t)
        if tx_delete(&self.tx, t.c, rowid, &e) < 0:
            raise_err(&e)
        return old

    def delta_parts(self):
        """(changes, [(table, section start, rows start, deletes, inserts), ...]): the delta of
        the writes so far as the changes of a log record (bytes) and, per changed table in
        write order, its Table and where its rows are in ``changes``."""
        cdef Err e
        cdef int i
        cdef DeltaTable* dt
        if tx_delta(&self.tx, &e) < 0:
            raise_err(&e)
        changes = PyBytes_FromStringAndSize(<char*>self.tx.delta.data, self.tx.delta.len) \
            if self.tx.delta.len else b""
        parts = []
        for i in range(self.tx.ndt):
            dt = &self.tx.dt[i]
            parts.append((self._table_of(self.tx.sets[dt.ws].t), dt.start, dt.rows, dt.ndel, dt.nins))
        return changes, parts

    cdef object _table_of(self, TableC* c):
        return <object>c.owner

    def rollback(self):
        cdef Err e
        if tx_rollback(&self.tx, &e) < 0:
            tx_reset(&self.tx)
            raise InternalError(f"rollback failed: {(<bytes>e.msg).decode('utf-8', 'replace')}")
        tx_reset(&self.tx)
        self.tables = []

    def finish(self):
        tx_reset(&self.tx)
        self.tables = []

    def encode_record(self, uint64_t offset, int64_t timestamp, caller, str reducer, args):
        """The TX log record of the delta (docs/log-format.md), as logformat.encode_tx builds it."""
        cdef CBuf out
        cdef Err e
        cdef bytes rb = reducer.encode("utf-8")
        cdef bytes ab = bytes(args)
        cdef const unsigned char* cp = NULL
        if caller is not None:
            if len(caller) != 32:
                raise StorageError(f"caller identity of {len(caller)} bytes (must be 32)")
            caller = bytes(caller)
            cp = <const unsigned char*>PyBytes_AS_STRING(caller)
        if tx_delta(&self.tx, &e) < 0:
            raise_err(&e)
        memset(&out, 0, sizeof(CBuf))
        try:
            if tx_record(&self.tx, offset, timestamp, cp, <const unsigned char*>PyBytes_AS_STRING(rb),
                         len(rb), <const unsigned char*>PyBytes_AS_STRING(ab), len(ab), &out, &e) < 0:
                if e.code == E_BAD_ARGUMENT:
                    raise StorageError((<bytes>e.msg).decode("utf-8", "replace"))
                raise_err(&e)
            return PyBytes_FromStringAndSize(<char*>out.data, out.len)
        finally:
            cbuf_free(&out)
