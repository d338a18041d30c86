# cython: language_level=3
"""Tables.

A row id is ``page number << 16 | slot``; it is stable while the row lives, except that an
update whose new heap data does not fit the row's page moves the row (``update`` returns the
new id).  Every write checks its row (DataError naming table, column and value) and every
unique key (ConstraintError naming the index and key) before it changes anything, so a refused
operation leaves the table as it was.

Two layers.  ``TableC`` and the ``tbl_*`` functions are the native lane (docs/architecture.md):
rows as row-codec bytes, keys in the key codec, errors as ``Err``, no Python object and no GIL,
for the host imports of a reducer call, transactions and recovery.  ``Table`` is the Python API
over them: values are checked by ``RowCodec`` and encoded, then written by the same functions,
and rows are read back as tuples.  ``stdb._core.reference.Table`` is the pure-Python twin.
"""

cimport cython
from libc.stdint cimport uint64_t, uint32_t, int64_t, int32_t, int16_t, int8_t
from libc.string cimport memcpy, memcmp, memset
from libc.stdio cimport snprintf
from cpython.mem cimport PyMem_RawCalloc, PyMem_RawRealloc, PyMem_RawFree
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8String

from stdb._core.codec cimport (
    RowCodec, ColumnType, check_value, encode_key, encode_value, frame_at, buf_init, buf_free,
    T_I8, T_I16, T_I32, T_I64, T_U8, T_U16, T_U32, T_U64, T_F32, T_F64, T_TIMESTAMP,
    T_STRING, T_BYTES,
)
from stdb._core.rowbytes cimport (
    CBuf, ColSpec, Err, E_BAD_ROW, E_UNIQUE, E_FULL, E_INTERNAL, E_MISSING,
    CK_UINT, CK_SINT, CK_BOOL, CK_STRING, CK_BYTES, CK_OTHER,
    rowspec_new, rowspec_free, rb_check_row, rb_walk_row, rb_key_value, rb_repr_value, rb_width,
    rb_ascii, utf8_problem, rd_u32, rd_uint, stdb_bswap64,
    cbuf_put, cbuf_u8, cbuf_free, cbuf_reserve, err_nomem, raise_err,
)
from stdb._core.page cimport (
    LayoutC, PageC, layout_new, layout_free, layout_heap_capacity, page_new, page_free, page_copy,
    page_live, page_alloc_slot, page_has_room, rc_heap_need, page_write, page_rewrite,
    page_release, page_heap_used, page_read_rc, page_key_col, page_read, page_equals_rc,
)
from stdb._core.index cimport (
    HashIdx, hash_bytes, hash_word, hidx_new, hidx_free, hidx_find, hidx_reserve, hidx_presize, hidx_add,
    hidx_remove, hidx_probe, hidx_put, hidx_drop, HX_EMPTY, HX_TOMB, HX_ROW_MASK,
)
from stdb._core.ordered cimport (
    OrdCursor, ord_new, ord_free, ord_add, ord_remove, ord_has_prefix, ord_seek,
    ord_next, ord_memory,
)
from stdb._core.codec import int_range, prefix_successor

from stdb.errors import DataError, SchemaError, InternalError

_OPS = ("==", "!=", "<", "<=", ">", ">=")


# ================================================================ the native table API

cdef int _row_key_cb(void* ctx, uint64_t rowid, int ino, CBuf* out) noexcept nogil:
    return tbl_row_key(<TableC*>ctx, rowid, ino, out)


cdef int tbl_row_key(TableC* t, uint64_t rowid, int ino, CBuf* out) noexcept nogil:
    cdef PageC* p = tbl_page(t, rowid)
    cdef IndexC* ix = &t.indexes[ino]
    cdef int slot = rowid & SLOT_MASK
    cdef int i
    if p == NULL:
        return -1
    for i in range(ix.ncols):
        if page_key_col(p, slot, ix.cols[i], out) < 0:
            return -1
    return 0


cdef int tbl_key_of(TableC* t, int ino, const unsigned char* row, const Py_ssize_t* starts,
                    CBuf* out) noexcept nogil:
    cdef IndexC* ix = &t.indexes[ino]
    cdef int i, c
    for i in range(ix.ncols):
        c = ix.cols[i]
        if rb_key_value(&t.spec.cols[c], row + starts[c], out) < 0:
            return -1
    return 0


cdef int _row_keys(TableC* t, const unsigned char* row, const Py_ssize_t* starts) noexcept nogil:
    """Every index key of a row being written, into t.keys (t.keyoff[i] .. t.keyoff[i + 1])."""
    cdef int i
    t.keys.len = 0
    for i in range(t.nindexes):
        t.keyoff[i] = t.keys.len
        if tbl_key_of(t, i, row, starts, &t.keys) < 0:
            return -1
    t.keyoff[t.nindexes] = t.keys.len
    return 0


cdef int _stored_keys(TableC* t, uint64_t rowid) noexcept nogil:
    """Every index key of stored row ``rowid``, into t.oldkeys / t.oldkeyoff."""
    cdef int i
    t.oldkeys.len = 0
    for i in range(t.nindexes):
        t.oldkeyoff[i] = t.oldkeys.len
        if tbl_row_key(t, rowid, i, &t.oldkeys) < 0:
            return -1
    t.oldkeyoff[t.nindexes] = t.oldkeys.len
    return 0


cdef inline bint _same_key(TableC* t, int i) noexcept nogil:
    """Whether index ``i``'s key is the same in t.keys and t.oldkeys."""
    cdef Py_ssize_t a = t.keyoff[i + 1] - t.keyoff[i]
    cdef Py_ssize_t b = t.oldkeyoff[i + 1] - t.oldkeyoff[i]
    return a == b and memcmp(t.keys.data + t.keyoff[i], t.oldkeys.data + t.oldkeyoff[i], a) == 0


cdef inline int _entry(TableC* t, const unsigned char* key, Py_ssize_t n, uint64_t rowid) noexcept nogil:
    """An ordered index entry, key ‖ row id (8 bytes big-endian), into t.entry."""
    cdef int k
    t.entry.len = 0
    if cbuf_reserve(&t.entry, n + 8) < 0:
        return -1
    memcpy(t.entry.data, key, n)
    for k in range(8):
        t.entry.data[n + k] = <unsigned char>((rowid >> (8 * (7 - k))) & 0xFF)
    t.entry.len = n + 8
    return 0


cdef inline uint64_t _entry_rowid(const unsigned char* e, Py_ssize_t n) noexcept nogil:
    cdef uint64_t r = 0
    cdef int k
    for k in range(8):
        r = (r << 8) | e[n - 8 + k]
    return r


cdef int _violation(TableC* t, int i, const unsigned char* row, const Py_ssize_t* starts,
                    Err* e) noexcept nogil:
    """The ConstraintError of a duplicate key of index ``i`` (the values of ``row``)."""
    cdef IndexC* ix = &t.indexes[i]
    cdef CBuf r
    cdef int k, c
    memset(&r, 0, sizeof(CBuf))
    for k in range(ix.ncols):
        c = ix.cols[k]
        if k and cbuf_put(&r, b", ", 2) < 0:
            break
        if rb_repr_value(&t.spec.cols[c], row + starts[c], &r) < 0:
            break
    if r.len > 80:                  # as _key_repr: 77 characters and "..."
        k = 77
        while k > 0 and (r.data[k] & 0xC0) == 0x80:
            k -= 1
        r.len = k
        cbuf_put(&r, b"...", 3)
    cdef const char* txt = ""
    if cbuf_u8(&r, 0) == 0:
        txt = <const char*>r.data
    e.code = E_UNIQUE
    snprintf(e.msg, sizeof(e.msg), "table '%s': %s already has a row with key (%s)", t.spec.table,
             ix.label, txt)
    cbuf_free(&r)
    return -1


cdef int _check_unique(TableC* t, bint have_old, const unsigned char* row, const Py_ssize_t* starts,
                       Err* e) noexcept nogil:
    """Refuse a row whose key in a unique index is taken (with ``have_old``: keys equal to the
    replaced row's are its own)."""
    cdef int i
    cdef IndexC* ix
    cdef const unsigned char* k
    cdef Py_ssize_t n
    cdef int64_t r
    for i in range(t.nindexes):
        ix = &t.indexes[i]
        if not ix.unique:
            continue
        if have_old and _same_key(t, i):
            continue
        k = t.keys.data + t.keyoff[i]
        n = t.keyoff[i + 1] - t.keyoff[i]
        if ix.kind == IX_HASH:
            # the probe also finds where the key goes: _index_add puts it there (the index is
            # reserved already and does not change before the add)
            t.hashes[i] = hash_bytes(k, n)
            r = hidx_probe(ix.hash, k, n, t.hashes[i], &t.hslots[i])
            if r == -2:
                return err_nomem(e)
            if r >= 0:
                return _violation(t, i, row, starts, e)
        elif ord_has_prefix(ix.ord, k, n):
            return _violation(t, i, row, starts, e)
    return 0


cdef int _reserve_hashes(TableC* t, Err* e) noexcept nogil:
    cdef int i
    for i in range(t.nindexes):
        if t.indexes[i].kind == IX_HASH and hidx_reserve(t.indexes[i].hash, 1) < 0:
            return err_nomem(e)
    return 0


cdef int _index_add(TableC* t, int i, const CBuf* keys, const Py_ssize_t* off, uint64_t rowid,
                    bint probed=False) noexcept nogil:
    """Add ``rowid`` under its key in index ``i`` (hash indexes reserved first; ``probed``: the
    unique check just probed this key, its slot is known): 0, -1."""
    cdef IndexC* ix = &t.indexes[i]
    cdef const unsigned char* k = keys.data + off[i]
    cdef Py_ssize_t n = off[i + 1] - off[i]
    if ix.kind == IX_HASH:
        if probed:
            hidx_put(ix.hash, t.hslots[i], t.hashes[i], rowid)
        else:
            hidx_add(ix.hash, hash_bytes(k, n), rowid)
        return 0
    if _entry(t, k, n, rowid) < 0:
        return -1
    return ord_add(ix.ord, t.entry.data, t.entry.len)


cdef void _index_remove(TableC* t, int i, const CBuf* keys, const Py_ssize_t* off,
                        uint64_t rowid) noexcept nogil:
    cdef IndexC* ix = &t.indexes[i]
    cdef const unsigned char* k = keys.data + off[i]
    cdef Py_ssize_t n = off[i + 1] - off[i]
    if ix.kind == IX_HASH:
        hidx_remove(ix.hash, hash_bytes(k, n), rowid)
    elif _entry(t, k, n, rowid) == 0:
        ord_remove(ix.ord, t.entry.data, t.entry.len)


cdef int _index_add_all(TableC* t, const CBuf* keys, const Py_ssize_t* off, uint64_t rowid,
                        Err* e, bint probed=False) noexcept nogil:
    """Add ``rowid`` to every index; on failure (no memory) nothing stays added."""
    cdef int i, j
    for i in range(t.nindexes):
        if _index_add(t, i, keys, off, rowid, probed) < 0:
            for j in range(i):
                _index_remove(t, j, keys, off, rowid)
            return err_nomem(e)
    return 0


cdef void _index_remove_all(TableC* t, const CBuf* keys, const Py_ssize_t* off,
                            uint64_t rowid) noexcept nogil:
    cdef int i
    for i in range(t.nindexes):
        _index_remove(t, i, keys, off, rowid)

# ---------------------------------------------------------------- sequences

cdef inline uint64_t _read_uint(const unsigned char* p, int w) noexcept nogil:
    cdef uint64_t v = 0
    memcpy(&v, p, w)
    return v


cdef inline bint _signed(int code) noexcept nogil:
    return code == T_I8 or code == T_I16 or code == T_I32 or code == T_I64


cdef inline int64_t _read_int(const unsigned char* p, int w) noexcept nogil:
    cdef int8_t a
    cdef int16_t b
    cdef int32_t c
    cdef int64_t d
    if w == 1:
        memcpy(&a, p, 1)
        return a
    if w == 2:
        memcpy(&b, p, 2)
        return b
    if w == 4:
        memcpy(&c, p, 4)
        return c
    memcpy(&d, p, 8)
    return d


cdef int _seq_fill(TableC* t, unsigned char* row, const Py_ssize_t* starts, bint assign,
                   Err* e) noexcept nogil:
    """The sequences after writing ``row`` into t.seq_new; with ``assign``, auto-increment
    columns holding 0 get the next value, written into the row (the values as given are kept
    in t.seq_saved for _seq_restore).  An exhausted sequence is E_FULL."""
    cdef int k, w
    cdef SeqC* s
    cdef unsigned char* p
    cdef uint64_t v
    cdef bint at_or_past
    memcpy(t.seq_new, t.seqs, sizeof(SeqC) * t.nseq)
    for k in range(t.nseq):
        s = &t.seq_new[k]
        p = row + starts[s.col]
        w = rb_width(s.code)
        v = _read_uint(p, w)
        t.seq_saved[k] = v
        if assign and v == 0:
            if s.over:
                snprintf(e.msg, sizeof(e.msg), "table '%s', column '%s': auto-increment sequence is "
                         "exhausted at %llu", t.spec.table, t.spec.names[s.col], <unsigned long long>s.max)
                e.code = E_FULL
                return -1
            memcpy(p, &s.next, w)
            v = s.next
            if s.next == s.max:
                s.over = True
            else:
                s.next += 1
            continue
        # an explicit value at or past the next one moves the sequence past it
        if s.over:
            continue
        if _signed(s.code):
            at_or_past = _read_int(p, w) >= <int64_t>s.next
        else:
            at_or_past = v >= s.next
        if at_or_past:
            if v == s.max:
                s.over = True
            else:
                s.next = v + 1
    return 0


cdef void _seq_restore(TableC* t, unsigned char* row, const Py_ssize_t* starts) noexcept nogil:
    cdef int k
    for k in range(t.nseq):
        memcpy(row + starts[t.seqs[k].col], &t.seq_saved[k], rb_width(t.seqs[k].code))

# ---------------------------------------------------------------- placing rows

cdef LayoutC* _new_page_layout(TableC* t) noexcept nogil:
    """The layout for a new page: slots budgeted for the heap bytes rows have really used so
    far (rounded up to 4 bytes a heap column), so pages fill their slots and their heap
    together.  Layouts are shared between pages with the same budget."""
    cdef LayoutC* L = t.layouts[0]
    cdef Py_ssize_t est
    if L.nheap == 0 or t.rows_seen < 64:
        return L
    est = (t.heap_seen + t.rows_seen * L.nheap - 1) // (t.rows_seen * L.nheap)
    est = (est + 3) & ~3
    if est < 4:
        est = 4
    if est > 1024:
        est = 1024
    if t.layouts[est // 4] == NULL:
        t.layouts[est // 4] = layout_new(t.spec.cols, t.spec.ncols, <int>est)
    return t.layouts[est // 4]


cdef int _room_push(TableC* t, Py_ssize_t pno) noexcept nogil:
    if t.in_room[pno]:
        return 0
    t.room[t.nroom] = pno          # room has pages_cap entries: never full
    t.nroom += 1
    t.in_room[pno] = 1
    return 0


cdef int _grow_pages(TableC* t) noexcept nogil:
    """Room for one more page in pages / room / in_room."""
    cdef Py_ssize_t cap
    cdef PageC** np
    cdef Py_ssize_t* nr
    cdef unsigned char* ni
    if t.npages < t.pages_cap:
        return 0
    cap = t.pages_cap * 2 if t.pages_cap else 4
    np = <PageC**>PyMem_RawRealloc(t.pages, cap * sizeof(PageC*))
    if np == NULL:
        return -1
    t.pages = np
    nr = <Py_ssize_t*>PyMem_RawRealloc(t.room, cap * sizeof(Py_ssize_t))
    if nr == NULL:
        return -1
    t.room = nr
    ni = <unsigned char*>PyMem_RawRealloc(t.in_room, cap)
    if ni == NULL:
        return -1
    memset(ni + t.pages_cap, 0, cap - t.pages_cap)
    t.in_room = ni
    t.pages_cap = cap
    return 0


cdef int _add_page(TableC* t, LayoutC* L, Py_ssize_t need) noexcept nogil:
    """Append a new page; its number, or -1 (no memory), -2 (the table is full)."""
    cdef PageC* p
    cdef Py_ssize_t pno = t.npages
    if pno > MAX_PAGES:
        return -2
    if L == NULL or _grow_pages(t) < 0:
        return -1
    p = page_new(L, need)
    if p == NULL:
        return -1
    t.pages[pno] = p
    t.in_room[pno] = 0
    t.npages += 1
    return <int>pno


cdef int _place(TableC* t, const unsigned char* row, const Py_ssize_t* starts, Py_ssize_t need,
                uint64_t* rowid, Err* e) noexcept nogil:
    """Write a checked row into some page with room."""
    cdef PageC* p
    cdef Py_ssize_t pno
    cdef int slot, got
    cdef LayoutC* L
    while t.nroom:
        pno = t.room[t.nroom - 1]
        p = t.pages[pno]
        if page_has_room(p, need):
            slot = page_alloc_slot(p)
            if page_write(p, slot, row, starts, need) < 0:
                return err_nomem(e)
            rowid[0] = (<uint64_t>pno << SLOT_BITS) | slot
            return 0
        if p.count >= p.layout.capacity or need <= layout_heap_capacity(p.layout):
            # full, or too little heap left for an ordinary row: stop offering it
            t.nroom -= 1
            t.in_room[pno] = 0
        else:
            break  # an oversized row: give it a page of its own below
    L = _new_page_layout(t)
    got = _add_page(t, L, need)
    if got == -2:
        e.code = E_FULL
        snprintf(e.msg, sizeof(e.msg), "table '%s' is full (%zd pages)", t.spec.table, t.npages)
        return -1
    if got < 0:
        return err_nomem(e)
    pno = got
    p = t.pages[pno]
    if need <= layout_heap_capacity(L):
        _room_push(t, pno)
    slot = page_alloc_slot(p)
    if page_write(p, slot, row, starts, need) < 0:
        return err_nomem(e)
    rowid[0] = (<uint64_t>pno << SLOT_BITS) | slot
    return 0


cdef void _unplace(TableC* t, uint64_t rowid) noexcept nogil:
    cdef Py_ssize_t pno = rowid >> SLOT_BITS
    page_release(t.pages[pno], rowid & SLOT_MASK)
    _room_push(t, pno)

# ---------------------------------------------------------------- writes

cdef inline int _starts(TableC* t, const unsigned char* row, Py_ssize_t n, int flags, Err* e) noexcept nogil:
    if flags & W_CHECK:
        return rb_check_row(t.spec, t.spec.ncols, row, n, t.starts, (flags & W_UTF8) != 0, e)
    return rb_walk_row(t.spec, row, n, t.starts, e)


cdef int tbl_insert(TableC* t, unsigned char* row, Py_ssize_t n, int flags, uint64_t* rowid,
                    Err* e) noexcept nogil:
    cdef Py_ssize_t need
    cdef uint64_t rid
    if _starts(t, row, n, flags, e) < 0:
        return -1
    cdef bint assign = t.nseq and (flags & W_ASSIGN)
    if t.nseq and _seq_fill(t, row, t.starts, assign, e) < 0:
        return -1
    if _row_keys(t, row, t.starts) < 0 or _reserve_hashes(t, e) < 0:
        if assign:
            _seq_restore(t, row, t.starts)
        return err_nomem(e)
    if _check_unique(t, False, row, t.starts, e) < 0:
        if assign:
            _seq_restore(t, row, t.starts)
        return -1
    need = rc_heap_need(t.spec.cols, t.spec.ncols, row, t.starts)
    if _place(t, row, t.starts, need, &rid, e) < 0:
        if assign:
            _seq_restore(t, row, t.starts)
        return -1
    if _index_add_all(t, &t.keys, t.keyoff, rid, e, True) < 0:
        _unplace(t, rid)
        if assign:
            _seq_restore(t, row, t.starts)
        return -1
    t.nrows += 1
    t.rows_seen += 1
    t.heap_seen += need
    if t.nseq:
        memcpy(t.seqs, t.seq_new, sizeof(SeqC) * t.nseq)
    rowid[0] = rid
    return 0


cdef int tbl_insert_at(TableC* t, uint64_t rowid, const unsigned char* row, Py_ssize_t n,
                       Err* e) noexcept nogil:
    """Put a row back at a free ``rowid`` (rollback); the sequences are unchanged."""
    cdef Py_ssize_t pno = rowid >> SLOT_BITS, need
    cdef int slot = rowid & SLOT_MASK
    cdef PageC* p
    cdef int got
    if rb_walk_row(t.spec, row, n, t.starts, e) < 0:
        return -1
    if _row_keys(t, row, t.starts) < 0 or _reserve_hashes(t, e) < 0:
        return err_nomem(e)
    if _check_unique(t, False, row, t.starts, e) < 0:
        return -1
    need = rc_heap_need(t.spec.cols, t.spec.ncols, row, t.starts)
    while pno >= t.npages:
        got = _add_page(t, t.layouts[0], 0)
        if got < 0:
            return err_nomem(e)
        _room_push(t, got)
    p = t.pages[pno]
    if slot >= p.layout.capacity or page_live(p, slot):
        e.code = E_INTERNAL
        snprintf(e.msg, sizeof(e.msg), "table '%s': row id %llu is not free", t.spec.table,
                 <unsigned long long>rowid)
        return -1
    if p.heap_top - p.heap_dead + need > p.size:
        e.code = E_INTERNAL
        snprintf(e.msg, sizeof(e.msg), "table '%s': row does not fit back at id %llu", t.spec.table,
                 <unsigned long long>rowid)
        return -1
    if page_write(p, slot, row, t.starts, need) < 0:
        return err_nomem(e)
    if _index_add_all(t, &t.keys, t.keyoff, rowid, e, True) < 0:
        page_release(p, slot)
        return -1
    t.nrows += 1
    if p.count < p.layout.capacity:
        _room_push(t, pno)
    return 0


cdef int _no_row(TableC* t, uint64_t rowid, Err* e) noexcept nogil:
    e.code = E_INTERNAL
    snprintf(e.msg, sizeof(e.msg), "table '%s': no row at id %llu", t.spec.table, <unsigned long long>rowid)
    return -1


cdef int tbl_delete(TableC* t, uint64_t rowid, Err* e) noexcept nogil:
    if tbl_page(t, rowid) == NULL:
        return _no_row(t, rowid, e)
    if _stored_keys(t, rowid) < 0:
        return err_nomem(e)
    _index_remove_all(t, &t.oldkeys, t.oldkeyoff, rowid)
    _unplace(t, rowid)
    t.nrows -= 1
    return 0


cdef int tbl_update(TableC* t, uint64_t rowid, unsigned char* row, Py_ssize_t n, int flags,
                    uint64_t* newid, Err* e) noexcept nogil:
    """Replace the row at ``rowid`` in place where it fits, else move it (``newid``).  Auto-
    increment columns are taken as given (an explicit value moves the sequence past it)."""
    cdef PageC* p = tbl_page(t, rowid)
    cdef int slot = rowid & SLOT_MASK
    cdef int i, r
    cdef Py_ssize_t need
    cdef uint64_t nid
    cdef IndexC* ix
    if p == NULL:
        return _no_row(t, rowid, e)
    if _starts(t, row, n, flags, e) < 0:
        return -1
    if t.nseq and _seq_fill(t, row, t.starts, False, e) < 0:
        return -1
    if _row_keys(t, row, t.starts) < 0 or _stored_keys(t, rowid) < 0 or _reserve_hashes(t, e) < 0:
        return err_nomem(e)
    if _check_unique(t, True, row, t.starts, e) < 0:
        return -1
    need = rc_heap_need(t.spec.cols, t.spec.ncols, row, t.starts)
    # in place: first the new entries of ordered indexes whose key changes (the only step that
    # can fail), then the page, then everything else (which cannot fail)
    for i in range(t.nindexes):
        ix = &t.indexes[i]
        if ix.kind == IX_ORD and not _same_key(t, i) and _index_add(t, i, &t.keys, t.keyoff, rowid) < 0:
            for r in range(i):
                if t.indexes[r].kind == IX_ORD and not _same_key(t, r):
                    _index_remove(t, r, &t.keys, t.keyoff, rowid)
            return err_nomem(e)
    r = page_rewrite(p, slot, row, t.starts)
    if r == 1:
        for i in range(t.nindexes):
            if _same_key(t, i):
                continue
            _index_remove(t, i, &t.oldkeys, t.oldkeyoff, rowid)
            if t.indexes[i].kind == IX_HASH:
                _index_add(t, i, &t.keys, t.keyoff, rowid)
        nid = rowid
    else:
        for i in range(t.nindexes):        # the ordered entries added above go again
            if t.indexes[i].kind == IX_ORD and not _same_key(t, i):
                _index_remove(t, i, &t.keys, t.keyoff, rowid)
        if r < 0:
            return err_nomem(e)
        # does not fit this page any more: move the row (the new place and its entries first)
        if _place(t, row, t.starts, need, &nid, e) < 0:
            return -1
        if _index_add_all(t, &t.keys, t.keyoff, nid, e) < 0:
            _unplace(t, nid)
            return -1
        _index_remove_all(t, &t.oldkeys, t.oldkeyoff, rowid)
        _unplace(t, rowid)
    if t.nseq:
        memcpy(t.seqs, t.seq_new, sizeof(SeqC) * t.nseq)
    newid[0] = nid
    return 0

# ---------------------------------------------------------------- reads

cdef int tbl_get(TableC* t, uint64_t rowid, CBuf* out) noexcept nogil:
    cdef PageC* p = tbl_page(t, rowid)
    if p == NULL:
        return -1
    return page_read_rc(p, rowid & SLOT_MASK, out)


cdef int64_t tbl_find(TableC* t, int ino, const unsigned char* key, Py_ssize_t n) noexcept nogil:
    cdef IndexC* ix = &t.indexes[ino]
    cdef OrdCursor c
    cdef const unsigned char* e
    cdef Py_ssize_t en
    if ix.kind == IX_HASH:
        return hidx_find(ix.hash, key, n, hash_bytes(key, n))
    ord_seek(ix.ord, key, n, &c)
    if ord_next(ix.ord, &c, &e, &en) and en >= n + 8 and memcmp(e, key, n) == 0:
        return <int64_t>_entry_rowid(e, en)
    return -1


cdef int tbl_seek(TableC* t, int ino, const unsigned char* key, Py_ssize_t n, IdList* out) noexcept nogil:
    """Row ids whose key of index ``ino`` starts with ``key`` (a whole key, or for an ordered
    index a prefix of its columns), in index order."""
    cdef IndexC* ix = &t.indexes[ino]
    cdef OrdCursor c
    cdef const unsigned char* e
    cdef Py_ssize_t en
    cdef int64_t r
    if ix.kind == IX_HASH:
        r = hidx_find(ix.hash, key, n, hash_bytes(key, n))
        if r == -2:
            return -1
        return idl_push(out, <uint64_t>r) if r >= 0 else 0
    ord_seek(ix.ord, key, n, &c)
    while ord_next(ix.ord, &c, &e, &en):
        if en < n or memcmp(e, key, n) != 0:
            break
        if idl_push(out, _entry_rowid(e, en)) < 0:
            return -1
    return 0


cdef inline bint _below(const unsigned char* a, Py_ssize_t an, const unsigned char* b,
                        Py_ssize_t bn) noexcept nogil:
    """a < b as Python orders bytes."""
    cdef int c = memcmp(a, b, an if an < bn else bn)
    return c < 0 or (c == 0 and an < bn)


cdef int tbl_range(TableC* t, int ino, const unsigned char* start, Py_ssize_t sn,
                   const unsigned char* end, Py_ssize_t en, Py_ssize_t limit, IdList* out) noexcept nogil:
    cdef IndexC* ix = &t.indexes[ino]
    cdef OrdCursor c
    cdef const unsigned char* e
    cdef Py_ssize_t n
    if limit == 0:
        return 0
    ord_seek(ix.ord, start, sn, &c)
    while ord_next(ix.ord, &c, &e, &n):
        if en and not _below(e, n, end, en):
            break
        if idl_push(out, _entry_rowid(e, n)) < 0:
            return -1
        if out.n == limit:
            break
    return 0


cdef Py_ssize_t tbl_count(TableC* t, int ino, const unsigned char* start, Py_ssize_t sn,
                          const unsigned char* end, Py_ssize_t en, bint prefix,
                          Py_ssize_t limit) noexcept nogil:
    """How many entries tbl_seek (``prefix``: those starting with start[0:sn]) or tbl_range
    (start <= e < end) would give, counting no further than ``limit`` (all when < 0), without
    collecting them: the planner's estimates.  -1 out of memory (a hash index's probe)."""
    cdef IndexC* ix = &t.indexes[ino]
    cdef OrdCursor c
    cdef const unsigned char* e
    cdef Py_ssize_t n, count = 0
    cdef int64_t r
    if limit == 0:
        return 0
    if ix.kind == IX_HASH:
        r = hidx_find(ix.hash, start, sn, hash_bytes(start, sn))
        return -1 if r == -2 else (1 if r >= 0 else 0)
    ord_seek(ix.ord, start, sn, &c)
    while ord_next(ix.ord, &c, &e, &n):
        if prefix:
            if n < sn or memcmp(e, start, sn) != 0:
                break
        elif en and not _below(e, n, end, en):
            break
        count += 1
        if count == limit:
            break
    return count


cdef void tbl_key_runs(TableC* t, int ino, Py_ssize_t sample, Py_ssize_t* entries,
                       Py_ssize_t* distinct) noexcept nogil:
    """Of the first ``sample`` entries of index ``ino`` in key order, how many there are and
    how many distinct keys they hold (an ordered entry is its key then 8 bytes of row id; a
    hash index is unique): rows per key for the planner, exact when the index has at most
    ``sample`` entries."""
    cdef IndexC* ix = &t.indexes[ino]
    cdef OrdCursor c
    cdef const unsigned char* e
    cdef const unsigned char* prev = NULL
    cdef Py_ssize_t n, pn = 0
    cdef unsigned char nothing = 0
    entries[0] = 0
    distinct[0] = 0
    if ix.kind == IX_HASH:
        entries[0] = distinct[0] = ix.hash.count if ix.hash.count < sample else sample
        return
    ord_seek(ix.ord, &nothing, 0, &c)
    while entries[0] < sample and ord_next(ix.ord, &c, &e, &n):
        if prev == NULL or pn != n - 8 or memcmp(prev, e, pn) != 0:
            distinct[0] += 1
        prev = e
        pn = n - 8
        entries[0] += 1


cdef int tbl_rowids(TableC* t, IdList* out) noexcept nogil:
    cdef Py_ssize_t pno
    cdef int s
    cdef PageC* p
    for pno in range(t.npages):
        p = t.pages[pno]
        for s in range(p.high):
            if page_live(p, s) and idl_push(out, (<uint64_t>pno << SLOT_BITS) | s) < 0:
                return -1
    return 0


cdef inline int _is_row(TableC* t, uint64_t rowid, const unsigned char* row, Py_ssize_t n) noexcept nogil:
    """1 when stored row ``rowid`` is exactly these bytes, 0 when not, -1 out of memory."""
    t.scratch.len = 0
    if tbl_get(t, rowid, &t.scratch) < 0:
        return -1
    return t.scratch.len == n and memcmp(t.scratch.data, row, n) == 0


cdef int64_t tbl_find_row(TableC* t, const unsigned char* row, Py_ssize_t n, Err* e) noexcept nogil:
    """By its primary key (or first index) where the table has one, else by a scan."""
    cdef IdList ids
    cdef Py_ssize_t i
    cdef int64_t found = -1
    cdef int m
    memset(&ids, 0, sizeof(IdList))
    if rb_walk_row(t.spec, row, n, t.starts, e) < 0:
        return -2
    if t.nindexes:
        t.keys.len = 0
        if tbl_key_of(t, 0, row, t.starts, &t.keys) < 0 or \
                tbl_seek(t, 0, t.keys.data, t.keys.len, &ids) < 0:
            idl_free(&ids)
            err_nomem(e)
            return -2
    elif tbl_rowids(t, &ids) < 0:
        idl_free(&ids)
        err_nomem(e)
        return -2
    for i in range(ids.n):
        m = _is_row(t, ids.ids[i], row, n)
        if m < 0:
            err_nomem(e)
            found = -2
            break
        if m:
            found = <int64_t>ids.ids[i]
            break
    idl_free(&ids)
    return found

cdef inline uint64_t _pk_value(TableC* t, const unsigned char* row) noexcept nogil:
    """The primary key column's bits (t.fast tables; t.starts set)."""
    return rd_uint(row + t.starts[t.pkcol], t.pkwidth)


cdef inline uint64_t _pk_word(const TableC* t, uint64_t v) noexcept nogil:
    """The key codec form of a primary key value ``v`` as the little-endian word its t.pkwidth
    bytes load as (the bytes past them zero): what hash_word takes."""
    if t.pkkind == CK_SINT:
        v ^= <uint64_t>1 << (8 * t.pkwidth - 1)
    return stdb_bswap64(v << (8 * (8 - t.pkwidth)))


cdef inline void _pk_key(const TableC* t, uint64_t v, unsigned char* key) noexcept nogil:
    """The key codec form of a primary key value ``v`` (t.pkwidth bytes into ``key``)."""
    v = _pk_word(t, v)
    memcpy(key, &v, 8)


cdef int64_t _locate_by_pk(TableC* t, const unsigned char* row, Py_ssize_t* slotpos,
                           uint64_t* hp, bint hashed) noexcept nogil:
    """The row id of the stored row equal to ``row`` (its column starts in t.starts), found
    through a unique hash index 0 with one probe: a candidate whose stored bytes equal the row
    is the row (its key is then equal too); its slot in the index in ``slotpos``.  The key is
    left in t.keys and its hash in ``hp`` (given there already when ``hashed``).  -1: none,
    -2: no memory."""
    cdef HashIdx* ix = t.indexes[0].hash
    cdef uint64_t h, i, mask, fp, s, rid
    cdef PageC* p
    cdef uint64_t w
    t.keys.len = 0
    if t.fast:
        if cbuf_reserve(&t.keys, 8) < 0:
            return -2
        w = _pk_word(t, _pk_value(t, row))
        memcpy(t.keys.data, &w, 8)
        t.keys.len = t.pkwidth
        if not hashed:
            hp[0] = hash_word(w, t.pkwidth)
    elif tbl_key_of(t, 0, row, t.starts, &t.keys) < 0:
        return -2
    elif not hashed:
        hp[0] = hash_bytes(t.keys.data, t.keys.len)
    h = hp[0]
    mask = ix.capacity - 1
    i = h >> ix.shift
    fp = h >> 40
    while True:
        s = ix.slots[i]
        if s == HX_EMPTY:
            return -1
        if s != HX_TOMB and (s >> 40) == fp:
            rid = (s & HX_ROW_MASK) - 1
            p = tbl_page(t, rid)
            if p != NULL and page_equals_rc(p, rid & SLOT_MASK, row, t.starts):
                slotpos[0] = <Py_ssize_t>i
                return <int64_t>rid
        i = (i + 1) & mask


ctypedef struct _Pending:
    int64_t rid               # the stored row the delete names
    uint64_t h                # the hash of its primary key
    Py_ssize_t key            # the key, in t.pendkeys
    Py_ssize_t klen
    bint paired


cdef extern from *:
    """
    #define stdb_prefetch(p) __builtin_prefetch(p)
    """
    void stdb_prefetch(const void* p) nogil


DEF AHEAD = 8            # rows the replay looks ahead to prefetch their index slots
DEF RING = 16            # the rows looked ahead at (a power of two > AHEAD)


ctypedef struct _Ahead:
    Py_ssize_t start          # where the framed row begins (< 0: its framing is broken)
    uint32_t rl               # its length
    bint hashed               # h holds the hash of its primary key
    uint64_t h


cdef inline void _look_ahead(TableC* t, const unsigned char* p, Py_ssize_t n, Py_ssize_t* ahead,
                             _Ahead* a) noexcept nogil:
    """The framed row at ``ahead`` into ``a``, ``ahead`` moved past it.  For t.fast tables whose
    key sits at a fixed place, also its key's hash, and a prefetch of the index slot it hashes
    to: by the time the replay reaches that row, the slot is in the cache."""
    cdef uint32_t rl = 0
    cdef uint64_t v = 0
    cdef HashIdx* ix
    a.hashed = False
    if ahead[0] < 0:
        a.start = -1
        return
    a.start = frame_at(p, ahead[0], n, &rl)
    a.rl = rl
    if a.start < 0:
        ahead[0] = -1
        return
    ahead[0] = a.start + rl
    if not t.fast or t.pkoff < 0 or rl < t.pkoff + t.pkwidth:
        return
    v = rd_uint(p + a.start + t.pkoff, t.pkwidth)
    ix = t.indexes[0].hash
    a.h = hash_word(_pk_word(t, v), t.pkwidth)
    a.hashed = True
    stdb_prefetch(&ix.slots[a.h >> ix.shift])


cdef uint64_t* _pend_map(TableC* t, uint64_t nd, uint64_t* mask) noexcept nogil:
    """t.pendmap emptied into an open-addressing table (zeros: free) of a power of two ≥ 2·nd
    slots for the ``nd`` deletes of a change, its mask in ``mask``; NULL: no memory."""
    cdef Py_ssize_t cap = 16
    while cap < 2 * <Py_ssize_t>nd:
        cap *= 2
    t.pendmap.len = 0
    if cbuf_reserve(&t.pendmap, cap * sizeof(uint64_t)) < 0:
        return NULL
    memset(t.pendmap.data, 0, cap * sizeof(uint64_t))
    mask[0] = <uint64_t>(cap - 1)
    return <uint64_t*>t.pendmap.data


cdef int tbl_apply_change(TableC* t, const unsigned char* p, Py_ssize_t n, uint64_t nd, uint64_t ni,
                          Py_ssize_t* done, Py_ssize_t* used, Err* e) noexcept nogil:
    cdef Py_ssize_t pos = 0, start, slotpos, j
    cdef uint64_t r, mask, s, total, lead
    cdef uint32_t rl
    cdef _Pending* pd
    cdef uint64_t* map = NULL
    cdef uint64_t* seen = NULL
    cdef uint64_t h, nid, rid
    cdef int64_t found
    cdef Py_ssize_t ahead = 0
    cdef _Ahead ring[RING]
    cdef _Ahead* a
    cdef bint pairing = t.pairable and nd != 0 and ni != 0
    # rows are looked at AHEAD rows before they are applied: all of them on the one-at-a-time
    # path, the deletes on the pairing path
    total = nd if pairing else nd + ni
    lead = min(<uint64_t>AHEAD, total)
    for r in range(lead):
        _look_ahead(t, p, n, &ahead, &ring[r & (RING - 1)])
    if not pairing:
        # one row at a time, deletes first
        for r in range(total):
            if r + lead < total:
                _look_ahead(t, p, n, &ahead, &ring[(r + lead) & (RING - 1)])
            a = &ring[r & (RING - 1)]
            if a.start < 0:
                return _framing(t, e)
            start = a.start
            rl = a.rl
            if r < nd:
                if tbl_delete_row(t, p + start, rl, W_CHECK | W_UTF8, e) < 0:
                    return -1
            elif t.fast:
                if _replay_insert(t, p + start, rl, a.h, a.hashed, e) < 0:
                    return -1
            elif tbl_insert(t, <unsigned char*>(p + start), rl, W_CHECK | W_UTF8, &rid, e) < 0:
                return -1
            pos = start + rl
            done[0] += 1
        used[0] = pos
        return 0
    # 1. find every deleted row (all must be there: nothing changes before that holds).  A row
    # named by two deletes is refused as the one-at-a-time path does (the second finds nothing):
    # paired or not, both would act on the one row id.  The deletes' row ids are kept in a set
    # in t.pendmap (step 2 makes its map of keys there afresh) by their keys' hashes.
    t.pend.len = 0
    t.pendkeys.len = 0
    if cbuf_reserve(&t.pend, nd * sizeof(_Pending)) < 0:
        return err_nomem(e)
    pd = <_Pending*>t.pend.data
    if nd > 1:
        seen = _pend_map(t, nd, &mask)
        if seen == NULL:
            return err_nomem(e)
    for r in range(nd):
        if r + lead < nd:
            _look_ahead(t, p, n, &ahead, &ring[(r + lead) & (RING - 1)])
        a = &ring[r & (RING - 1)]
        if a.start < 0:
            return _framing(t, e)
        start = a.start
        rl = a.rl
        # no UTF-8 check: the row must equal a stored row byte for byte, and those are checked
        if rb_check_row(t.spec, t.spec.ncols, p + start, rl, t.starts, False, e) < 0:
            return -1
        h = a.h
        found = _locate_by_pk(t, p + start, &slotpos, &h, a.hashed)
        if found == -2:
            return err_nomem(e)
        if found == -1:
            return tbl_delete_row(t, p + start, rl, 0, e)      # says which row is not there
        pd[r].rid = found
        pd[r].h = h
        pd[r].key = t.pendkeys.len
        pd[r].klen = t.keys.len
        pd[r].paired = False
        if seen != NULL:
            j = h & mask
            while seen[j]:
                if pd[seen[j] - 1].rid == found:
                    return _not_there(t, p + start, e)
                j = (j + 1) & mask
            seen[j] = r + 1
        if cbuf_put(&t.pendkeys, t.keys.data, t.keys.len) < 0:
            return err_nomem(e)
        pos = start + rl
    # 2. each insert: an update in place of the deleted row with its key, else an insert.  An
    # update is logged as its delete and its insert at the same place of the two lists: while
    # insert r has the key of delete r, that is its pair, and no map of the keys is needed
    mask = 0
    for r in range(ni):
        start = frame_at(p, pos, n, &rl)
        if start < 0:
            return _framing(t, e)
        if rb_check_row(t.spec, t.spec.ncols, p + start, rl, t.starts, True, e) < 0:
            return -1
        t.keys.len = 0
        if t.fast:
            if cbuf_reserve(&t.keys, 8) < 0:
                return err_nomem(e)
            _pk_key(t, _pk_value(t, p + start), t.keys.data)
            t.keys.len = t.pkwidth
        elif tbl_key_of(t, 0, p + start, t.starts, &t.keys) < 0:
            return err_nomem(e)
        found = -1
        if map == NULL and r < nd and not pd[r].paired and pd[r].klen == t.keys.len \
                and memcmp(t.pendkeys.data + pd[r].key, t.keys.data, t.keys.len) == 0:
            found = <int64_t>r
        else:
            if map == NULL:                        # out of step: a map of the deletes' keys
                map = _pend_map(t, nd, &mask)
                if map == NULL:
                    return err_nomem(e)
                for s in range(nd):
                    j = pd[s].h & mask
                    while map[j]:
                        j = (j + 1) & mask
                    map[j] = s + 1
            h = hash_bytes(t.keys.data, t.keys.len)
            j = h & mask
            while map[j]:
                s = map[j] - 1
                if (not pd[s].paired and pd[s].h == h and pd[s].klen == t.keys.len
                        and memcmp(t.pendkeys.data + pd[s].key, t.keys.data, t.keys.len) == 0):
                    found = <int64_t>s
                    break
                j = (j + 1) & mask
        if found >= 0:
            pd[found].paired = True
            rid = <uint64_t>pd[found].rid
            # the primary key is the same: with no other index and no sequence, nothing but the
            # row's bytes changes (an update that does not fit its page moves, the general way)
            if not (t.nindexes == 1 and t.nseq == 0 and _rewrite_in_place(t, rid, p + start)):
                if tbl_update(t, rid, <unsigned char*>(p + start), rl, 0, &nid, e) < 0:
                    return -1
            done[0] += 2                            # the delete and the insert it stands for
        elif t.fast:
            if _replay_insert(t, p + start, rl, 0, False, e) < 0:
                return -1
            done[0] += 1
        else:
            if tbl_insert(t, <unsigned char*>(p + start), rl, 0, &nid, e) < 0:
                return -1
            done[0] += 1
        pos = start + rl
    # 3. the deletes no insert replaced
    for r in range(nd):
        if not pd[r].paired:
            if tbl_delete(t, <uint64_t>pd[r].rid, e) < 0:
                return -1
            done[0] += 1
    used[0] = pos
    return 0


cdef inline bint _rewrite_in_place(TableC* t, uint64_t rowid, const unsigned char* row) noexcept nogil:
    """Overwrite live row ``rowid`` with ``row`` (its column starts in t.starts) when it fits its
    page; False (nothing changed) otherwise, or when compaction found no memory."""
    cdef PageC* p = tbl_page(t, rowid)
    if p == NULL:
        return False
    return page_rewrite(p, rowid & SLOT_MASK, row, t.starts) == 1


cdef int _replay_insert(TableC* t, const unsigned char* row, Py_ssize_t n, uint64_t h, bint hashed,
                        Err* e) noexcept nogil:
    """tbl_insert(W_CHECK | W_UTF8) of a logged row into a table of the fast shape (t.fast), in
    one pass and with one probe; anything out of the ordinary (a row it does not accept at once,
    a key already there, a full page) goes through tbl_insert, which does it or names the problem.
    ``h``: the hash of its primary key when ``hashed`` (from _look_ahead)."""
    cdef Py_ssize_t pos = 0, need = 0, slotpos, pno
    cdef uint32_t ln
    cdef int i, k, slot
    cdef const ColSpec* c
    cdef uint64_t v = 0, rid
    cdef unsigned char key[8]
    cdef HashIdx* ix = t.indexes[0].hash
    cdef SeqC* s
    cdef PageC* p
    for i in range(t.spec.ncols):
        t.starts[i] = pos
        c = &t.spec.cols[i]
        k = c.kind
        if k == CK_STRING or k == CK_BYTES:
            if n - pos < 4:
                return _insert_slow(t, row, n, e)
            ln = rd_u32(row + pos)
            pos += 4
            if <uint64_t>(n - pos) < ln or (k == CK_STRING and not rb_ascii(row + pos, ln)
                                            and utf8_problem(row + pos, ln) != NULL):
                return _insert_slow(t, row, n, e)
            pos += ln
            need += ln
        else:
            if n - pos < c.width or (k == CK_BOOL and row[pos] > 1):
                return _insert_slow(t, row, n, e)
            pos += c.width
    t.starts[t.spec.ncols] = pos
    if pos != n:
        return _insert_slow(t, row, n, e)
    v = _pk_value(t, row)
    i = t.pkwidth
    if t.pkseq:
        s = &t.seqs[0]
        if not s.over and (<int64_t>(v << (64 - 8 * i)) >> (64 - 8 * i) >= <int64_t>s.next
                           if t.pkkind == CK_SINT else v >= s.next):
            if v == s.max:
                s.over = True
            else:
                s.next = v + 1
    v = _pk_word(t, v)
    memcpy(key, &v, 8)
    if hidx_reserve(ix, 1) < 0:
        return err_nomem(e)
    if not hashed:
        h = hash_word(v, i)
    if hidx_probe(ix, key, i, h, &slotpos) != -1:
        return _insert_slow(t, row, n, e)          # there already (or no memory): say so
    # a page with room: the one on top of the room stack, usually
    if t.nroom:
        pno = t.room[t.nroom - 1]
        p = t.pages[pno]
        if page_has_room(p, need) and p.heap_top + need <= p.size:
            slot = page_alloc_slot(p)
            _write_plain(t, p, slot, row)
            rid = (<uint64_t>pno << SLOT_BITS) | slot
            hidx_put(ix, slotpos, h, rid)
            t.nrows += 1
            t.rows_seen += 1
            t.heap_seen += need
            return 0
    return _insert_slow(t, row, n, e)


cdef inline void _write_plain(TableC* t, PageC* p, int slot, const unsigned char* row) noexcept nogil:
    """page_write for a t.fast table's row (fixed-width, bool, string and bytes columns only)
    into a free slot whose page has the heap room at its top."""
    cdef LayoutC* L = p.layout
    cdef unsigned char* base = p.data
    cdef int i, w
    cdef uint32_t ln, off
    cdef const unsigned char* v
    cdef unsigned char* cell
    base[slot >> 3] |= <unsigned char>(1 << (slot & 7))
    p.count += 1
    if slot >= p.high:
        p.high = slot + 1
    if slot == p.hint:
        p.hint = slot + 1
    for i in range(L.ncols):
        v = row + t.starts[i]
        w = L.cols[i].page_width
        cell = base + L.offset[i] + <Py_ssize_t>slot * w
        if L.cols[i].in_heap:
            ln = rd_u32(v)
            off = <uint32_t>p.heap_top
            if ln:
                memcpy(base + off, v + 4, ln)
            p.heap_top += ln
            memcpy(cell, &off, 4)
            memcpy(cell + 4, &ln, 4)
        elif w == 8:
            memcpy(cell, v, 8)
        elif w == 4:
            memcpy(cell, v, 4)
        elif w == 1:
            cell[0] = v[0]
        else:
            memcpy(cell, v, w)


cdef int _insert_slow(TableC* t, const unsigned char* row, Py_ssize_t n, Err* e) noexcept nogil:
    cdef uint64_t rid
    return tbl_insert(t, <unsigned char*>row, n, W_CHECK | W_UTF8, &rid, e)


cdef int _framing(TableC* t, Err* e) noexcept nogil:
    e.code = E_BAD_ROW
    snprintf(e.msg, sizeof(e.msg), "table '%s': the rows of a log record run past its end", t.spec.table)
    return -1


cdef int tbl_delete_row(TableC* t, const unsigned char* row, Py_ssize_t n, int flags, Err* e) noexcept nogil:
    cdef int64_t rid
    cdef uint64_t h
    cdef int i
    cdef Py_ssize_t slotpos
    if flags & W_CHECK:
        if rb_check_row(t.spec, t.spec.ncols, row, n, t.starts, (flags & W_UTF8) != 0, e) < 0:
            return -1
    elif rb_walk_row(t.spec, row, n, t.starts, e) < 0:
        return -1
    if t.nindexes and t.indexes[0].kind == IX_HASH:
        rid = _locate_by_pk(t, row, &slotpos, &h, False)
        if rid == -2:
            return err_nomem(e)
        if rid >= 0:
            # every index's key of the row is the stored row's: take them from the bytes given
            if _row_keys(t, row, t.starts) < 0:
                return err_nomem(e)
            hidx_drop(t.indexes[0].hash, slotpos)
            for i in range(1, t.nindexes):
                _index_remove(t, i, &t.keys, t.keyoff, <uint64_t>rid)
            _unplace(t, <uint64_t>rid)
            t.nrows -= 1
            return 0
    else:
        rid = tbl_find_row(t, row, n, e)
        if rid == -2:
            return -1
    if rid == -1:
        return _not_there(t, row, e)
    return tbl_delete(t, <uint64_t>rid, e)          # found by a scan or an ordered index


cdef int _not_there(TableC* t, const unsigned char* row, Err* e) noexcept nogil:
    """-1 with E_MISSING: the row to delete (its column starts in t.starts) is not there."""
    cdef CBuf r
    cdef int i
    cdef const char* txt = ""
    # the row's values as Python writes a tuple
    memset(&r, 0, sizeof(CBuf))
    cbuf_u8(&r, 40)
    for i in range(t.spec.ncols):
        if i:
            cbuf_put(&r, b", ", 2)
        rb_repr_value(&t.spec.cols[i], row + t.starts[i], &r)
    if t.spec.ncols == 1:
        cbuf_u8(&r, 44)
    cbuf_u8(&r, 41)
    if cbuf_u8(&r, 0) == 0:
        txt = <const char*>r.data
    e.code = E_MISSING
    snprintf(e.msg, sizeof(e.msg), "table '%s': the row to delete is not there: %s", t.spec.table, txt)
    cbuf_free(&r)
    return -1

# ---------------------------------------------------------------- life

cdef void tbl_free(TableC* t) noexcept:
    cdef int i
    cdef Py_ssize_t p
    if t == NULL:
        return
    for p in range(t.npages):
        page_free(t.pages[p])
    PyMem_RawFree(t.pages)
    PyMem_RawFree(t.room)
    PyMem_RawFree(t.in_room)
    for i in range(NLAYOUTS):
        layout_free(t.layouts[i])
    if t.indexes != NULL:
        for i in range(t.nindexes):
            hidx_free(t.indexes[i].hash)
            ord_free(t.indexes[i].ord)
            PyMem_RawFree(t.indexes[i].cols)
            PyMem_RawFree(t.indexes[i].label)
        PyMem_RawFree(t.indexes)
    PyMem_RawFree(t.seqs)
    PyMem_RawFree(t.seq_new)
    PyMem_RawFree(t.seq_saved)
    cbuf_free(&t.keys)
    cbuf_free(&t.oldkeys)
    cbuf_free(&t.entry)
    cbuf_free(&t.scratch)
    cbuf_free(&t.pend)
    cbuf_free(&t.pendkeys)
    cbuf_free(&t.pendmap)
    PyMem_RawFree(t.keyoff)
    PyMem_RawFree(t.oldkeyoff)
    PyMem_RawFree(t.starts)
    PyMem_RawFree(t.hashes)
    PyMem_RawFree(t.hslots)
    rowspec_free(t.spec)
    PyMem_RawFree(t)


cdef void* _alloc(size_t n) except NULL:
    cdef void* p = PyMem_RawCalloc(1, n if n else 1)
    if p == NULL:
        raise MemoryError()
    return p


cdef TableC* _table_new(schema, RowCodec codec) except NULL:
    cdef TableC* t = <TableC*>_alloc(sizeof(TableC))
    cdef int i, k, ni
    cdef IndexC* ix
    cdef bytes label
    try:
        t.spec = rowspec_new(schema.name, codec.names, codec.types)
        t.layouts[0] = layout_new(t.spec.cols, t.spec.ncols, 0)
        if t.layouts[0] == NULL:
            raise MemoryError()
        defs = list(schema.all_indexes())
        ni = len(defs)
        t.indexes = <IndexC*>_alloc(sizeof(IndexC) * ni)
        t.nindexes = ni
        for i, d in enumerate(defs):
            ix = &t.indexes[i]
            cols = [schema.column_index(c) for c in d.columns]
            ix.ncols = len(cols)
            ix.cols = <int*>_alloc(sizeof(int) * len(cols))
            for k in range(len(cols)):
                ix.cols[k] = cols[k]
            ix.unique = d.unique
            what = "primary key" if d.name == "pk" else f"unique index '{d.name}'"
            label = f"{what} ({', '.join(d.columns)})".encode()
            ix.label = <char*>_alloc(len(label) + 1)
            memcpy(ix.label, <char*>label, len(label))
            if d.kind == "hash" and d.unique:
                ix.kind = IX_HASH
                ix.hash = hidx_new(t, _row_key_cb, i)
                if ix.hash == NULL:
                    raise MemoryError()
            else:
                ix.kind = IX_ORD
                ix.ord = ord_new()
                if ix.ord == NULL:
                    raise MemoryError()
        t.keyoff = <Py_ssize_t*>_alloc(sizeof(Py_ssize_t) * (ni + 1))
        t.oldkeyoff = <Py_ssize_t*>_alloc(sizeof(Py_ssize_t) * (ni + 1))
        t.starts = <Py_ssize_t*>_alloc(sizeof(Py_ssize_t) * (t.spec.ncols + 1))
        t.hashes = <uint64_t*>_alloc(sizeof(uint64_t) * (ni + 1))
        t.hslots = <Py_ssize_t*>_alloc(sizeof(Py_ssize_t) * (ni + 1))
        seq = [i for i, c in enumerate(schema.columns) if c.auto_inc]
        t.nseq = len(seq)
        t.seqs = <SeqC*>_alloc(sizeof(SeqC) * len(seq))
        t.seq_new = <SeqC*>_alloc(sizeof(SeqC) * len(seq))
        t.seq_saved = <uint64_t*>_alloc(sizeof(uint64_t) * len(seq))
        for k, c in enumerate(seq):
            t.seqs[k].col = c
            t.seqs[k].code = t.spec.cols[c].code
            t.seqs[k].next = 1
            t.seqs[k].max = int_range(t.spec.cols[c].code)[1]
            t.seqs[k].over = False
        t.pairable = (ni > 0 and t.indexes[0].kind == IX_HASH
                      and not any(d.unique for d in defs[1:]))
        if ni == 1 and t.indexes[0].kind == IX_HASH and t.indexes[0].ncols == 1:
            c = t.indexes[0].cols[0]
            t.pkcol = c
            t.pkkind = t.spec.cols[c].kind
            t.pkwidth = t.spec.cols[c].width
            t.pkseq = t.nseq == 1 and t.seqs[0].col == c
            t.fast = ((t.pkkind == CK_UINT or t.pkkind == CK_SINT) and (t.nseq == 0 or t.pkseq)
                      and all(t.spec.cols[k].kind != CK_OTHER for k in range(t.spec.ncols)))
            t.pkoff = -1
            if all(t.spec.cols[k].width > 0 for k in range(c)):
                t.pkoff = sum(t.spec.cols[k].width for k in range(c))
    except BaseException:
        tbl_free(t)
        raise
    return t


# ================================================================ the Python API

cdef str _key_repr(tuple values):
    r = ", ".join(repr(v) for v in values)
    return r if len(r) <= 80 else r[:77] + "..."


cdef inline int _check(int r, Err* e) except -1:
    if r < 0:
        raise_err(e)
    return 0


cdef list _ids(IdList* l):
    cdef Py_ssize_t i
    cdef list out = [l.ids[i] for i in range(l.n)]
    idl_free(l)
    return out


@cython.final
cdef class Table:
    """The rows of one table and its indexes.  See ``stdb._core.reference.Table`` for the twin."""

    def __cinit__(self, *args, **kwargs):
        buf_init(&self.buf, 256)

    def __dealloc__(self):
        buf_free(&self.buf)
        tbl_free(self.c)
        self.c = NULL

    def __init__(self, schema):
        cdef int i
        if self.c != NULL:
            raise InternalError("Table.__init__ called twice")
        self.schema = schema
        self.name = schema.name
        self.codec = RowCodec(schema.name, schema.column_names, schema.column_types)
        self.index_defs = list(schema.all_indexes())
        self.index_types = []
        self.index_no = {}
        for i, ix in enumerate(self.index_defs):
            cols = tuple(schema.column_index(c) for c in ix.columns)
            self.index_types.append(tuple(self.codec.types[c] for c in cols))
            self.index_no[ix.name] = i
        self.c = _table_new(schema, self.codec)
        self.c.owner = <void*>self

    # ------------------------------------------------------------ plumbing

    cdef const unsigned char* _encode_into(self, tuple row, Py_ssize_t* n) except NULL:
        """Encode a checked row into self.buf."""
        cdef Py_ssize_t i
        cdef tuple types = self.codec.types
        self.buf.len = 0
        for i in range(len(types)):
            encode_value(<ColumnType>types[i], row[i], &self.buf)
        n[0] = self.buf.len
        return self.buf.data

    cdef bytes _encode(self, tuple row):
        cdef Py_ssize_t n
        cdef const unsigned char* p = self._encode_into(row, &n)
        return PyBytes_FromStringAndSize(<const char*>p, n)

    def row_bytes(self, uint64_t rowid):
        """The row stored at ``rowid`` in the row codec (InternalError if there is none)."""
        cdef CBuf out
        memset(&out, 0, sizeof(CBuf))
        try:
            if tbl_page(self.c, rowid) == NULL:
                raise InternalError(f"table '{self.name}': no row at id {rowid}")
            if tbl_get(self.c, rowid, &out) < 0:
                raise MemoryError()
            return PyBytes_FromStringAndSize(<char*>out.data, out.len) if out.len else b""
        finally:
            cbuf_free(&out)

    @property
    def nrows(self):
        return self.c.nrows

    def reserve(self, Py_ssize_t rows):
        """Room for ``rows`` more rows in every unique hash index, made now in one rehash
        rather than by doubling as they come (the capacity they would have grown to): for
        loaders that know how many rows follow (recovery: the log's count, docs/log-format.md)."""
        cdef int i
        if rows <= 0:
            return
        for i in range(self.c.nindexes):
            if self.c.indexes[i].kind == IX_HASH and \
                    hidx_presize(self.c.indexes[i].hash, self.c.nrows + rows) < 0:
                raise MemoryError()

    # ------------------------------------------------------------ reads

    def __len__(self):
        return self.c.nrows

    cpdef tuple get(self, uint64_t rowid):
        """The row stored at ``rowid`` (InternalError if there is none)."""
        cdef PageC* p = tbl_page(self.c, rowid)
        if p == NULL:
            raise InternalError(f"table '{self.name}': no row at id {rowid}")
        return page_read(p, rowid & SLOT_MASK)

    def contains(self, uint64_t rowid):
        return tbl_page(self.c, rowid) != NULL

    def scan(self):
        """Yield ``(rowid, row)`` for every row, in storage order."""
        cdef Py_ssize_t pno
        cdef int s
        cdef PageC* p
        pno = 0
        while pno < self.c.npages:
            p = self.c.pages[pno]
            s = 0
            while s < p.high:
                if page_live(p, s):
                    yield (<uint64_t>pno << SLOT_BITS) | s, page_read(p, s)
                    p = self.c.pages[pno]      # the caller may have changed the table
                s += 1
            pno += 1

    def framed_chunks(self, Py_ssize_t limit):
        """The rows as snapshot chunks (see ``_framed_chunks``).  On a live table, only from
        the thread that changes it (rows changed meanwhile would make the chunks a mix of two
        states: ``frozen()`` first)."""
        return _framed_chunks(self.c.pages, self.c.npages, limit)

    def load_framed(self, data):
        """Insert every row of a snapshot chunk — each row in the row codec after its length
        (u32 little-endian) — exactly as given, like ``load`` (no auto-increment assignment),
        each row checked as the row codec's decoder checks it.  Returns the number of rows."""
        cdef const unsigned char[:] v = data
        cdef Py_ssize_t n = v.shape[0], pos = 0, count = 0
        cdef uint32_t ln
        cdef const unsigned char* p
        cdef uint64_t rid
        cdef Err e
        if n == 0:
            return 0
        p = &v[0]
        while pos < n:
            pos = frame_at(p, pos, n, &ln)
            if pos == -1:
                raise DataError(f"table '{self.name}': a snapshot chunk ends inside a row length")
            if pos == -2:
                raise DataError(f"table '{self.name}': a snapshot chunk ends inside a row")
            if tbl_insert(self.c, <unsigned char*>p + pos, ln, W_CHECK | W_UTF8, &rid, &e) < 0:
                raise_err(&e)
            pos += ln
            count += 1
        return count

    def frozen(self):
        """The rows as they are now, in a copy that later changes to the table do not touch
        (a snapshot is encoded from it on another thread)."""
        return TableCopy(self)

    def rowids(self):
        """Every row id, in storage order."""
        cdef IdList ids
        memset(&ids, 0, sizeof(IdList))
        if tbl_rowids(self.c, &ids) < 0:
            idl_free(&ids)
            raise MemoryError()
        return _ids(&ids)

    def rows(self, rowids):
        """The rows at ``rowids``, in that order."""
        return [self.get(r) for r in rowids]

    def _index(self, str name):
        try:
            return self.index_no[name]
        except KeyError:
            raise SchemaError(f"table '{self.name}' has no index '{name}'",
                              hint="indexes are " + (", ".join(self.index_no) or "none")) from None

    def _index_key(self, int i, key, bint allow_prefix):
        types = self.index_types[i]
        if not isinstance(key, tuple):
            key = (key,)
        if len(key) > len(types) or (not allow_prefix and len(key) != len(types)) or not key:
            raise DataError(
                f"table '{self.name}', index '{self.index_defs[i].name}' "
                f"({', '.join(self.index_defs[i].columns)}): a key has "
                f"{'1 to ' if allow_prefix else ''}{len(types)} values, got {len(key)}")
        vals = []
        for j, v in enumerate(key):
            try:
                vals.append(check_value(<ColumnType>types[j], v))
            except DataError as e:
                raise DataError(f"table '{self.name}', index '{self.index_defs[i].name}', "
                                f"column '{self.index_defs[i].columns[j]}': {e.detail}") from None
        return encode_key(types, tuple(vals))

    def seek(self, str index, key):
        """Row ids whose ``index`` key equals ``key`` (a tuple; a scalar for one column).

        A btree index also takes a prefix of its columns.
        """
        cdef int i = self._index(index)
        cdef bytes k
        cdef IdList ids
        k = self._index_key(i, key, self.index_defs[i].kind == "btree")
        memset(&ids, 0, sizeof(IdList))
        if tbl_seek(self.c, i, <const unsigned char*>PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k), &ids) < 0:
            idl_free(&ids)
            raise MemoryError()
        return _ids(&ids)

    def _range_keys(self, int i, str index, lo, hi, bint lo_inclusive, bint hi_inclusive):
        """(start, end) index keys of ``range``'s interval on btree index ``i`` (b"": unbounded;
        end excluded), or None when the interval is empty."""
        if self.index_defs[i].kind != "btree":
            raise SchemaError(f"table '{self.name}': index '{index}' is a hash index; "
                              "range scans need a btree index")
        start = b""
        end = b""
        if lo is not None:
            k = self._index_key(i, lo, True)
            start = k if lo_inclusive else prefix_successor(k)
            if not start:               # nothing follows an all-0xff key: 'b > max' is empty
                return None
        if hi is not None:
            k = self._index_key(i, hi, True)
            end = prefix_successor(k) if hi_inclusive else k
            if not end and not hi_inclusive:
                return None
            if end and start >= end:
                return None
        return start, end

    def range(self, str index, lo=None, hi=None, bint lo_inclusive=True, bint hi_inclusive=True,
              Py_ssize_t limit=-1):
        """Row ids in key order with ``lo <(=) key <(=) hi`` on a btree index.

        Bounds are tuples over a prefix of the index columns (a scalar for one column) or
        None for unbounded; a bound on a prefix compares only those columns.
        """
        cdef int i = self._index(index)
        cdef bytes start, end
        cdef IdList ids
        bounds = self._range_keys(i, index, lo, hi, lo_inclusive, hi_inclusive)
        if bounds is None:
            return []
        start, end = bounds
        memset(&ids, 0, sizeof(IdList))
        if tbl_range(self.c, i, <const unsigned char*>PyBytes_AS_STRING(start), len(start),
                     <const unsigned char*>PyBytes_AS_STRING(end), len(end), limit, &ids) < 0:
            idl_free(&ids)
            raise MemoryError()
        return _ids(&ids)

    def seek_count(self, str index, key, Py_ssize_t limit=-1):
        """``len(self.seek(index, key))`` without collecting the row ids, counting no further
        than ``limit`` (all when < 0)."""
        cdef int i = self._index(index)
        cdef bytes k = self._index_key(i, key, self.index_defs[i].kind == "btree")
        cdef Py_ssize_t n = tbl_count(self.c, i, <const unsigned char*>PyBytes_AS_STRING(k),
                                      PyBytes_GET_SIZE(k), NULL, 0, True, limit)
        if n < 0:
            raise MemoryError()
        return n

    def range_count(self, str index, lo=None, hi=None, bint lo_inclusive=True,
                    bint hi_inclusive=True, Py_ssize_t limit=-1):
        """``len(self.range(index, lo, hi, lo_inclusive, hi_inclusive, limit))`` without
        collecting the row ids."""
        cdef int i = self._index(index)
        cdef bytes start, end
        bounds = self._range_keys(i, index, lo, hi, lo_inclusive, hi_inclusive)
        if bounds is None:
            return 0
        start, end = bounds
        return tbl_count(self.c, i, <const unsigned char*>PyBytes_AS_STRING(start), len(start),
                         <const unsigned char*>PyBytes_AS_STRING(end), len(end), False, limit)

    def key_runs(self, str index, Py_ssize_t sample=4096):
        """(entries, distinct keys) among the first ``sample`` entries of ``index`` in key
        order: the planner's rows per key, exact when the table has at most ``sample`` rows."""
        cdef int i = self._index(index)
        cdef Py_ssize_t entries, distinct
        tbl_key_runs(self.c, i, sample, &entries, &distinct)
        return entries, distinct

    def scan_where(self, str column, str op, value):
        """Row ids whose ``column op value`` holds (op one of == != < <= > >=), by a
        straight pass over the column's packed array where the column is numeric, or over its
        stored bytes in place for string and bytes columns.

        ``value`` must be a valid value of the column's type (DataError otherwise); with an
        option column, None compares equal to None and false under the ordering operators."""
        cdef int col = self.schema.column_index(column)
        cdef int code = self.c.spec.cols[col].code
        if op not in _OPS:
            raise DataError(f"unknown comparison {op!r}", hint="use one of " + " ".join(_OPS))
        cdef int opn = _OPS.index(op)
        t = self.codec.types[col]
        try:
            value = check_value(<ColumnType>t, value)
        except DataError as e:
            raise DataError(f"table '{self.name}', column '{column}': {e.detail}") from None
        if code in (T_I8, T_I16, T_I32, T_I64, T_TIMESTAMP):
            return _scan_signed(self.c, col, opn, value)
        if code in (T_U8, T_U16, T_U32, T_U64):
            return _scan_unsigned(self.c, col, opn, value)
        if code in (T_F32, T_F64):
            return _scan_float(self.c, col, opn, value)
        if code == T_STRING:
            return _scan_heap(self.c, col, opn, PyUnicode_AsUTF8String(value))
        if code == T_BYTES:
            return _scan_heap(self.c, col, opn, value)
        # anything else: compare Python values
        out = []
        for rowid, row in self.scan():
            if _py_cmp(opn, row[col], value):
                out.append(rowid)
        return out

    # ------------------------------------------------------------ writes

    cpdef uint64_t insert(self, object row) except? 0xFFFFFFFFFFFFFFFF:
        """Check and insert a row; auto-increment columns given as 0 get the next value.

        Returns the row id; ``get(rowid)`` gives the row as stored.
        """
        cdef Py_ssize_t n
        cdef const unsigned char* p = self._encode_into(self.codec.check_row(row), &n)
        cdef uint64_t rid
        cdef Err e
        if tbl_insert(self.c, <unsigned char*>p, n, W_ASSIGN, &rid, &e) < 0:
            raise_err(&e)
        return rid

    def load(self, object row):
        """Insert a row exactly as given (replay of the log or a snapshot): no auto-increment
        assignment, but explicit values still move the sequences past them."""
        cdef Py_ssize_t n
        cdef const unsigned char* p = self._encode_into(self.codec.check_row(row), &n)
        cdef uint64_t rid
        cdef Err e
        if tbl_insert(self.c, <unsigned char*>p, n, 0, &rid, &e) < 0:
            raise_err(&e)
        return rid

    def insert_bytes(self, data, bint assign=True):
        """Insert a row given in the row codec (checked first); returns the row id."""
        cdef bytearray b = bytearray(data)
        cdef unsigned char* p = <unsigned char*>(<char*>b) if len(b) else <unsigned char*>b""
        cdef uint64_t rid
        cdef Err e
        if tbl_insert(self.c, p, len(b), W_CHECK | W_UTF8 | (W_ASSIGN if assign else 0), &rid, &e) < 0:
            raise_err(&e)
        return rid

    def find_row(self, object row):
        """The row id of a row equal to ``row`` (checked first), or None.  Equal: == on the
        values, or the same encoding (a row holding NaN is not == itself)."""
        cdef tuple r = self.codec.check_row(row)
        cdef bytes enc = self._encode(r)
        if self.index_defs:
            cands = self.seek(self.index_defs[0].name,
                              tuple(r[self.schema.column_index(c)] for c in self.index_defs[0].columns))
        else:
            cands = self.rowids()
        for rid in cands:
            if self.get(rid) == r or self.row_bytes(rid) == enc:
                return rid
        return None

    def apply_encoded(self, list deletes, list inserts):
        """Apply a logged change: delete each row (row codec bytes) — which must be present,
        byte for byte — then insert each as given (no auto-increment assignment).  Every row is
        checked first.  Returns the number of row operations."""
        cdef uint64_t nid
        cdef Err e
        cdef const unsigned char[:] v
        cdef const unsigned char* p
        for raw in deletes:
            v = raw
            p = &v[0] if v.shape[0] else <const unsigned char*>b""
            if tbl_delete_row(self.c, p, v.shape[0], W_CHECK | W_UTF8, &e) < 0:
                raise_err(&e)
        for raw in inserts:
            b = bytearray(raw)
            if tbl_insert(self.c, <unsigned char*>(<char*>b) if len(b) else <unsigned char*>b"",
                          len(b), W_CHECK | W_UTF8, &nid, &e) < 0:
                raise_err(&e)
        return len(deletes) + len(inserts)

    def insert_at(self, uint64_t rowid, object row):
        """Put a row back at a free ``rowid`` (rollback and recovery); sequences unchanged."""
        cdef Py_ssize_t n
        cdef const unsigned char* p = self._encode_into(self.codec.check_row(row), &n)
        cdef Err e
        if tbl_insert_at(self.c, rowid, p, n, &e) < 0:
            raise_err(&e)
        return rowid

    cpdef tuple delete(self, uint64_t rowid):
        """Delete the row at ``rowid`` and return it."""
        cdef Err e
        cdef tuple row = self.get(rowid)
        if tbl_delete(self.c, rowid, &e) < 0:
            raise_err(&e)
        return row

    def update(self, uint64_t rowid, object row):
        """Replace the row at ``rowid`` in place where it fits; returns the (maybe new) row id.

        Auto-increment columns are taken as given (no assignment on update).
        """
        cdef Py_ssize_t n
        cdef const unsigned char* p
        cdef uint64_t nid
        cdef Err e
        if tbl_page(self.c, rowid) == NULL:
            raise InternalError(f"table '{self.name}': no row at id {rowid}")
        p = self._encode_into(self.codec.check_row(row), &n)
        if tbl_update(self.c, rowid, <unsigned char*>p, n, 0, &nid, &e) < 0:
            raise_err(&e)
        return nid

    def clear(self):
        """Delete every row (sequences unchanged)."""
        for rowid in self.rowids():
            self.delete(rowid)

    # ------------------------------------------------------------ sequences, stats

    def sequence_state(self):
        """Per sequence the next value; an exhausted one is its type's largest value + 1 (a
        Python int: for u64, 2**64, which the C max + 1 would wrap to 0)."""
        cdef int k
        return tuple(<object>self.c.seqs[k].max + 1 if self.c.seqs[k].over else self.c.seqs[k].next
                     for k in range(self.c.nseq))

    def restore_sequences(self, state):
        cdef int k
        if len(state) != self.c.nseq:
            raise InternalError(f"table '{self.name}': sequence state has the wrong length")
        for k in range(self.c.nseq):
            v = state[k]
            if v > self.c.seqs[k].max:
                self.c.seqs[k].over = True
                self.c.seqs[k].next = self.c.seqs[k].max
            else:
                self.c.seqs[k].over = False
                self.c.seqs[k].next = v

    def memory_bytes(self):
        """Bytes held by pages and indexes (allocations, not counting small object headers)."""
        cdef Py_ssize_t p, n = 0
        cdef int i
        for p in range(self.c.npages):
            n += self.c.pages[p].size
        for i in range(self.c.nindexes):
            n += self._index_bytes(i)
        return n

    def _index_bytes(self, int i):
        cdef IndexC* ix = &self.c.indexes[i]
        if ix.kind == IX_HASH:
            return ix.hash.capacity * 8
        return ord_memory(ix.ord)

    def stats(self):
        cdef Py_ssize_t p
        cdef int i
        return {
            "rows": self.c.nrows,
            "pages": self.c.npages,
            "slots_per_page": sorted({self.c.pages[p].layout.capacity for p in range(self.c.npages)}),
            "page_bytes": sum(self.c.pages[p].size for p in range(self.c.npages)),
            "index_bytes": {d.name: self._index_bytes(i) for i, d in enumerate(self.index_defs)},
            "heap_compactions": sum(self.c.pages[p].compactions for p in range(self.c.npages)),
        }

    def check_invariants(self):
        """Verify counts and that every index entry matches a live row (tests, debug)."""
        cdef Py_ssize_t p
        cdef int i, s
        cdef PageC* pg
        cdef IndexC* ix
        live = self.rowids()
        if len(live) != self.c.nrows:
            raise InternalError(f"table '{self.name}': nrows {self.c.nrows} but {len(live)} live slots")
        for i in range(self.c.nindexes):
            ix = &self.c.indexes[i]
            count = ix.hash.count if ix.kind == IX_HASH else ix.ord.count
            if count != self.c.nrows:
                raise InternalError(f"table '{self.name}': index '{self.index_defs[i].name}' has "
                                    f"{count} entries for {self.c.nrows} rows")
        for rowid in live:
            row = self.get(rowid)
            for i in range(self.c.nindexes):
                key = tuple([row[self.schema.column_index(c)] for c in self.index_defs[i].columns])
                if rowid not in self.seek(self.index_defs[i].name, key):
                    raise InternalError(f"table '{self.name}': row {rowid} missing from index "
                                        f"'{self.index_defs[i].name}'")
        for p in range(self.c.npages):
            pg = self.c.pages[p]
            used = 0
            for s in range(pg.high):
                if page_live(pg, s):
                    used += page_heap_used(pg, s)
            if pg.heap_top - pg.layout.heap_start - pg.heap_dead != used:
                raise InternalError(f"table '{self.name}': heap accounting is off")
        return True


ctypedef fused number:
    int64_t
    uint64_t
    double


cdef inline bint _holds(int opn, number v, number x) noexcept nogil:
    """``v op x`` for op number ``opn`` (the order of _OPS)."""
    if opn == 0:
        return v == x
    if opn == 1:
        return v != x
    if opn == 2:
        return v < x
    if opn == 3:
        return v <= x
    if opn == 4:
        return v > x
    return v >= x


cdef bint _py_cmp(int opn, object a, object b) except -1:
    if opn == 0:
        return a == b
    if opn == 1:
        return a != b
    if a is None or b is None:
        return False
    if opn == 2:
        return a < b
    if opn == 3:
        return a <= b
    if opn == 4:
        return a > b
    return a >= b


cdef list _scan_signed(TableC* t, int col, int opn, int64_t x):
    cdef Py_ssize_t pno
    cdef int s, w = t.spec.cols[col].page_width
    cdef const unsigned char* base
    cdef PageC* p
    cdef int64_t v
    cdef int8_t v8
    cdef int16_t v16
    cdef int32_t v32
    cdef list out = []
    for pno in range(t.npages):
        p = t.pages[pno]
        base = p.data + p.layout.offset[col]
        for s in range(p.high):
            if not page_live(p, s):
                continue
            if w == 8:
                memcpy(&v, base + s * 8, 8)
            elif w == 4:
                memcpy(&v32, base + s * 4, 4)
                v = v32
            elif w == 2:
                memcpy(&v16, base + s * 2, 2)
                v = v16
            else:
                memcpy(&v8, base + s, 1)
                v = v8
            if _holds(opn, v, x):
                out.append((<uint64_t>pno << SLOT_BITS) | s)
    return out


cdef list _scan_unsigned(TableC* t, int col, int opn, uint64_t x):
    cdef Py_ssize_t pno
    cdef int s, w = t.spec.cols[col].page_width
    cdef const unsigned char* base
    cdef PageC* p
    cdef uint64_t v
    cdef list out = []
    for pno in range(t.npages):
        p = t.pages[pno]
        base = p.data + p.layout.offset[col]
        for s in range(p.high):
            if not page_live(p, s):
                continue
            v = 0
            memcpy(&v, base + <Py_ssize_t>s * w, w)
            if _holds(opn, v, x):
                out.append((<uint64_t>pno << SLOT_BITS) | s)
    return out


cdef list _scan_float(TableC* t, int col, int opn, double x):
    cdef Py_ssize_t pno
    cdef int s, w = t.spec.cols[col].page_width
    cdef const unsigned char* base
    cdef PageC* p
    cdef double v
    cdef float f
    cdef list out = []
    for pno in range(t.npages):
        p = t.pages[pno]
        base = p.data + p.layout.offset[col]
        for s in range(p.high):
            if not page_live(p, s):
                continue
            if w == 8:
                memcpy(&v, base + s * 8, 8)
            else:
                memcpy(&f, base + s * 4, 4)
                v = f
            if _holds(opn, v, x):
                out.append((<uint64_t>pno << SLOT_BITS) | s)
    return out


cdef list _scan_heap(TableC* t, int col, int opn, bytes x):
    # UTF-8 orders strings as their code points do, so a byte comparison of the stored
    # text orders like Python's str comparison (and bytes compare as bytes)
    cdef Py_ssize_t pno
    cdef int s, c
    cdef const unsigned char* base
    cdef PageC* p
    cdef uint32_t off, ln
    cdef const char* xp = PyBytes_AS_STRING(x)
    cdef Py_ssize_t xl = PyBytes_GET_SIZE(x)
    cdef int64_t order
    cdef list out = []
    for pno in range(t.npages):
        p = t.pages[pno]
        base = p.data + p.layout.offset[col]
        for s in range(p.high):
            if not page_live(p, s):
                continue
            memcpy(&off, base + s * 8, 4)
            memcpy(&ln, base + s * 8 + 4, 4)
            c = memcmp(p.data + off, xp, ln if ln < xl else xl)
            order = c if c != 0 else <int64_t>ln - xl
            if _holds(opn, order, <int64_t>0):
                out.append((<uint64_t>pno << SLOT_BITS) | s)
    return out


cdef tuple _framed_chunks(PageC** pages, Py_ssize_t npages, Py_ssize_t limit):
    """(chunks, rows): every live row of ``pages`` in the row codec after its length (u32
    little-endian), in storage order, cut into chunks once one reaches ``limit`` bytes.  The
    rows are encoded without the GIL (a snapshot is encoded by a background thread while the
    server's thread wants to run)."""
    cdef CBuf b
    cdef PageC* p
    cdef Py_ssize_t pno = 0, start, nrows = 0
    cdef int s = 0, failed = 0
    cdef uint32_t ln
    cdef list chunks = []
    memset(&b, 0, sizeof(CBuf))
    try:
        while pno < npages:
            b.len = 0
            with nogil:
                while pno < npages and b.len < limit:
                    p = pages[pno]
                    while s < p.high and b.len < limit:
                        if page_live(p, s):
                            start = b.len
                            if cbuf_reserve(&b, 4) < 0:
                                failed = 1
                                break
                            b.len += 4
                            if page_read_rc(p, s, &b) < 0:
                                failed = 1
                                break
                            ln = <uint32_t>(b.len - start - 4)
                            memcpy(b.data + start, &ln, 4)
                            nrows += 1
                        s += 1
                    if failed:
                        break
                    if s >= p.high:
                        pno += 1
                        s = 0
            if failed:
                raise MemoryError()
            if b.len:
                chunks.append(PyBytes_FromStringAndSize(<char*>b.data, b.len))
    finally:
        cbuf_free(&b)
    return chunks, nrows


@cython.final
cdef class TableCopy:
    """A table's rows at one moment — its pages copied (a memcpy each), no indexes — with its
    schema, codec and sequence state: what a snapshot needs, readable from another thread while
    the table goes on changing.  It costs about the table's page memory while it lives."""

    cdef readonly object schema
    cdef readonly str name
    cdef readonly RowCodec codec
    cdef readonly Py_ssize_t nrows
    cdef Table owner              # keeps the layouts the copied pages point at
    cdef PageC** pages
    cdef Py_ssize_t npages
    cdef tuple seq

    def __cinit__(self, Table t):
        cdef Py_ssize_t p
        self.schema, self.name, self.codec, self.nrows = t.schema, t.name, t.codec, t.c.nrows
        self.owner = t
        self.seq = t.sequence_state()
        self.pages = <PageC**>PyMem_RawCalloc(t.c.npages if t.c.npages else 1, sizeof(PageC*))
        if self.pages == NULL:
            raise MemoryError()
        for p in range(t.c.npages):
            self.pages[p] = page_copy(t.c.pages[p])
            if self.pages[p] == NULL:
                raise MemoryError()
            self.npages = p + 1

    def __dealloc__(self):
        cdef Py_ssize_t p
        if self.pages != NULL:
            for p in range(self.npages):
                page_free(self.pages[p])
            PyMem_RawFree(self.pages)

    def __len__(self):
        return self.nrows

    def scan(self):
        """Yield ``(rowid, row)`` for every row, in the table's storage order at the copy."""
        cdef Py_ssize_t pno
        cdef int s
        cdef PageC* p
        for pno in range(self.npages):
            p = self.pages[pno]
            for s in range(p.high):
                if page_live(p, s):
                    yield (<uint64_t>pno << SLOT_BITS) | s, page_read(p, s)

    def sequence_state(self):
        return self.seq

    def framed_chunks(self, Py_ssize_t limit):
        """The rows as snapshot chunks (see ``_framed_chunks``)."""
        return _framed_chunks(self.pages, self.npages, limit)
