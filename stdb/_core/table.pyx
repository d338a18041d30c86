# cython: language_level=3
"""Tables.

A row id is ``page number << 16 | slot``; it is stable while the row lives, except that an
update whose new heap data does not fit the row's page moves the row (``update`` returns
the new id).  The table checks every value (DataError naming table, column and value) and
every unique key (ConstraintError naming the index and key) before it changes anything,
so a refused operation leaves the table as it was.
"""

cimport cython
from libc.stdint cimport uint64_t, uint32_t, int64_t, int32_t, int16_t, int8_t
from libc.string cimport memcpy, memcmp
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8String

from stdb._core.codec cimport (
    RowCodec, ColumnType, check_value, int_range, encode_key, encode_key_into, encode_row_key,
    encode_value, frame_at, buf_init, buf_free, buf_reserve, Buf,
    T_I8, T_I16, T_I32, T_I64, T_U8, T_U16, T_U32, T_U64, T_F32, T_F64, T_TIMESTAMP, T_STRING, T_BYTES,
)
from stdb._core.page cimport Layout, Page, heap_values
from stdb._core.index cimport KeySource, HashIndex, SortedIndex, hash_key, entry_of
from stdb._core.codec import prefix_successor

from stdb.errors import ConstraintError, DataError, SchemaError, InternalError

DEF SLOT_BITS = 16
DEF SLOT_MASK = 0xFFFF
DEF MAX_PAGES = 0xFFFFFE

_OPS = ("==", "!=", "<", "<=", ">", ">=")


cdef str _key_repr(tuple values):
    r = ", ".join(repr(v) for v in values)
    return r if len(r) <= 80 else r[:77] + "..."


@cython.final
cdef class Table(KeySource):
    """The rows of one table and its indexes.  See ``stdb._core.reference.Table`` for the twin."""

    def __cinit__(self, *args, **kwargs):
        buf_init(&self.keybuf, 64)

    def __dealloc__(self):
        buf_free(&self.keybuf)

    def __init__(self, schema):
        cdef int i
        self.schema = schema
        self.name = schema.name
        self.codec = RowCodec(schema.name, schema.column_names, schema.column_types)
        self.layout = Layout(self.codec.types)
        self.pages = []
        self.layouts = {self.layout.heap_estimate: self.layout}
        self.rows_seen = 0
        self.heap_seen = 0
        self.room = []
        self.in_room = bytearray()
        self.indexes = []
        self.index_defs = list(schema.all_indexes())
        self.index_cols = []
        self.index_types = []
        self.index_no = {}
        self.index_unique = [ix.unique for ix in self.index_defs]
        for i, ix in enumerate(self.index_defs):
            cols = tuple(schema.column_index(c) for c in ix.columns)
            self.index_cols.append(cols)
            self.index_types.append(tuple(self.codec.types[c] for c in cols))
            self.index_no[ix.name] = i
            if ix.kind == "hash" and ix.unique:
                self.indexes.append(HashIndex(ix.name, self, i))
            else:
                self.indexes.append(SortedIndex(ix.name, ix.unique))
        self.seq_cols = []
        self.seq_next = []
        self.seq_max = []
        for i, c in enumerate(schema.columns):
            if c.auto_inc:
                self.seq_cols.append(i)
                self.seq_next.append(1)
                self.seq_max.append(int_range(c.type.code)[1])

    # ------------------------------------------------------------ plumbing

    cdef inline Page _page(self, uint64_t rowid):
        cdef uint64_t pno = rowid >> SLOT_BITS
        cdef int slot = rowid & SLOT_MASK
        cdef Page page
        if pno >= <uint64_t>len(self.pages):
            return None
        page = self.pages[pno]
        if slot >= page.layout.capacity or not page.live(slot):
            return None
        return page

    cdef int _row_key_into(self, uint64_t rowid, int ino) except -1:
        """Build the key of stored row ``rowid`` for index ``ino`` in ``keybuf``."""
        cdef Page page = self._page(rowid)
        if page is None:
            raise InternalError(f"table '{self.name}': index points at missing row {rowid}")
        cdef int slot = rowid & SLOT_MASK
        cdef tuple cols = self.index_cols[ino]
        cdef Py_ssize_t i
        self.keybuf.len = 0
        for i in range(len(cols)):
            if page.key_col(slot, <int>cols[i], &self.keybuf):
                # a type the page cannot key directly: go through the Python values
                return encode_key_into(self.index_types[ino],
                                       tuple([page.read_col(slot, c) for c in cols]), &self.keybuf)
        return 0

    cdef bytes row_key(self, uint64_t rowid, int ino):
        self._row_key_into(rowid, ino)
        return PyBytes_FromStringAndSize(<char*>self.keybuf.data, self.keybuf.len)

    cdef bint key_matches(self, uint64_t rowid, int ino, bytes key) except -1:
        self._row_key_into(rowid, ino)
        return (self.keybuf.len == PyBytes_GET_SIZE(key)
                and memcmp(self.keybuf.data, PyBytes_AS_STRING(key), self.keybuf.len) == 0)

    cdef tuple _keys(self, tuple row):
        cdef Py_ssize_t i, n = len(self.indexes)
        cdef tuple out = PyTuple_New(n)
        for i in range(n):
            k = encode_row_key(self.index_types[i], self.index_cols[i], row, &self.keybuf)
            Py_INCREF(k)
            PyTuple_SET_ITEM(out, i, k)
        return out

    cdef int _check_unique(self, tuple keys, tuple old_keys, tuple row) except -1:
        cdef int i
        cdef bytes k
        cdef bint found
        for i in range(len(self.indexes)):
            if not self.index_unique[i]:
                continue
            k = keys[i]
            if old_keys is not None and old_keys[i] == k:
                continue
            idx = self.indexes[i]
            if isinstance(idx, HashIndex):
                found = (<HashIndex>idx).find(k, hash_key(k)) >= 0
            else:
                found = (<SortedIndex>idx).has_prefix(k)
            if found:
                ix = self.index_defs[i]
                what = "primary key" if ix.name == "pk" else f"unique index '{ix.name}'"
                key = _key_repr(tuple([row[c] for c in self.index_cols[i]]))
                raise ConstraintError(f"table '{self.name}': {what} ({', '.join(ix.columns)}) "
                                      f"already has a row with key ({key})")
        return 0

    cdef int _index_add(self, tuple keys, uint64_t rowid) except -1:
        cdef int i
        cdef bytes k
        for i in range(len(self.indexes)):
            k = keys[i]
            idx = self.indexes[i]
            if isinstance(idx, HashIndex):
                (<HashIndex>idx).add(k, hash_key(k), rowid)
            else:
                (<SortedIndex>idx).add(entry_of(k, rowid))
        return 0

    cdef int _index_remove(self, tuple keys, uint64_t rowid) except -1:
        cdef int i
        cdef bytes k
        for i in range(len(self.indexes)):
            k = keys[i]
            idx = self.indexes[i]
            if isinstance(idx, HashIndex):
                (<HashIndex>idx).remove(k, hash_key(k), rowid)
            else:
                (<SortedIndex>idx).remove(entry_of(k, rowid))
        return 0

    cdef Layout _new_page_layout(self):
        """The layout for a new page: slots budgeted for the heap bytes rows have really used
        so far (rounded up to 4 bytes a heap column), so pages fill their slots and their heap
        together.  Layouts are shared between pages with the same budget."""
        cdef Layout L = self.layout
        cdef int est
        if L.nheap == 0 or self.rows_seen < 64:
            return L
        est = <int>((self.heap_seen + self.rows_seen * L.nheap - 1) // (self.rows_seen * L.nheap))
        est = min(max((est + 3) & ~3, 4), 1024)
        layout = self.layouts.get(est)
        if layout is None:
            layout = Layout(self.codec.types, est)
            self.layouts[est] = layout
        return layout

    cdef uint64_t _place(self, tuple row, list heap, Py_ssize_t need) except? 0xFFFFFFFFFFFFFFFF:
        """Write a checked row into some page with room; return its row id."""
        cdef Page page
        cdef Py_ssize_t pno
        cdef int slot
        while self.room:
            pno = self.room[len(self.room) - 1]
            page = self.pages[pno]
            if page.has_room(need):
                slot = page.alloc_slot()
                page.write(slot, row, heap)
                return (<uint64_t>pno << SLOT_BITS) | slot
            if page.count >= page.layout.capacity or need <= page.layout.heap_capacity:
                # full, or too little heap left for an ordinary row: stop offering it
                self.room.pop()
                self.in_room[pno] = 0
            else:
                break  # an oversized row: give it a page of its own below
        pno = len(self.pages)
        if pno > MAX_PAGES:
            raise DataError(f"table '{self.name}' is full ({pno} pages)")
        layout = self._new_page_layout()
        page = Page(layout, need)
        self.pages.append(page)
        self.in_room.append(0)
        if need <= layout.heap_capacity:
            self.room.append(pno)
            self.in_room[pno] = 1
        slot = page.alloc_slot()
        page.write(slot, row, heap)
        return (<uint64_t>pno << SLOT_BITS) | slot

    # ------------------------------------------------------------ reads

    def __len__(self):
        return self.nrows

    cpdef tuple get(self, uint64_t rowid):
        """The row stored at ``rowid`` (InternalError if there is none)."""
        cdef Page page = self._page(rowid)
        if page is None:
            raise InternalError(f"table '{self.name}': no row at id {rowid}")
        return page.read(rowid & SLOT_MASK)

    def contains(self, uint64_t rowid):
        return self._page(rowid) is not None

    def scan(self):
        """Yield ``(rowid, row)`` for every row, in storage order."""
        return _scan_pages(self.pages)

    def framed_chunks(self, Py_ssize_t limit):
        """The rows as snapshot chunks (see ``_framed_chunks``).  On a live table, only from
        the thread that changes it: the encoder lets other threads run every 1024 rows, and
        rows changed meanwhile would make the chunks a mix of two states (``frozen()`` first)."""
        return _framed_chunks(self.pages, self.codec, limit)

    def load_framed(self, data):
        """Insert every row of a snapshot chunk — each row in the row codec after its length
        (u32 little-endian) — exactly as given, like ``load`` (no auto-increment assignment);
        decoded rows are valid by construction.  Returns the number of rows."""
        cdef const unsigned char[:] v = data
        cdef Py_ssize_t n = v.shape[0], pos = 0, count = 0
        cdef uint32_t ln
        cdef RowCodec codec = self.codec
        cdef const unsigned char* p
        if n == 0:
            return 0
        p = &v[0]
        while pos < n:
            pos = frame_at(p, pos, n, &ln)
            if pos == -1:
                raise DataError(f"table '{self.name}': a snapshot chunk ends inside a row length")
            if pos == -2:
                raise DataError(f"table '{self.name}': a snapshot chunk ends inside a row")
            self._insert(codec._decode(p + pos, ln), False, False)
            pos += ln
            count += 1
        return count

    def frozen(self):
        """The rows as they are now, in a copy that later changes to the table do not touch
        (a snapshot is encoded from it on another thread)."""
        return TableCopy(self)

    def rowids(self):
        """Every row id, in storage order."""
        cdef Page page
        cdef int s
        cdef Py_ssize_t pno
        cdef list out = []
        for pno in range(len(self.pages)):
            page = self.pages[pno]
            for s in range(page.high):
                if page.live(s):
                    out.append((<uint64_t>pno << SLOT_BITS) | s)
        return out

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
        idx = self.indexes[i]
        if isinstance(idx, HashIndex):
            k = self._index_key(i, key, False)
            r = (<HashIndex>idx).find(k, hash_key(k))
            return [] if r < 0 else [<uint64_t>r]
        k = self._index_key(i, key, self.index_defs[i].kind == "btree")
        return (<SortedIndex>idx).rowids_with_prefix(k)

    def range(self, str index, lo=None, hi=None, bint lo_inclusive=True, bint hi_inclusive=True,
              Py_ssize_t limit=-1):
        """Row ids in key order with ``lo <(=) key <(=) hi`` on a btree index.

        Bounds are tuples over a prefix of the index columns (a scalar for one column) or
        None for unbounded; a bound on a prefix compares only those columns.
        """
        cdef int i = self._index(index)
        if self.index_defs[i].kind != "btree":
            raise SchemaError(f"table '{self.name}': index '{index}' is a hash index; "
                              "range scans need a btree index")
        start = b""
        end = b""
        if lo is not None:
            k = self._index_key(i, lo, True)
            start = k if lo_inclusive else prefix_successor(k)
            if not start:               # nothing follows an all-0xff key: 'b > max' is empty
                return []
        if hi is not None:
            k = self._index_key(i, hi, True)
            end = prefix_successor(k) if hi_inclusive else k
            if not end and not hi_inclusive:
                return []
            if end and start >= end:
                return []
        return (<SortedIndex>self.indexes[i]).rowids_between(start, end, limit)

    def scan_where(self, str column, str op, value):
        """Row ids whose ``column op value`` holds (op one of == != < <= > >=), by a
        straight pass over the column's packed array where the column is numeric, or over its
        stored bytes in place for string and bytes columns.

        ``value`` must be a valid value of the column's type (DataError otherwise); with an
        option column, None compares equal to None and false under the ordering operators."""
        cdef int col = self.schema.column_index(column)
        cdef int code = self.layout.code[col]
        if op not in _OPS:
            raise DataError(f"unknown comparison {op!r}", hint="use one of " + " ".join(_OPS))
        cdef int opn = _OPS.index(op)
        t = self.codec.types[col]
        try:
            value = check_value(<ColumnType>t, value)
        except DataError as e:
            raise DataError(f"table '{self.name}', column '{column}': {e.detail}") from None
        if code in (T_I8, T_I16, T_I32, T_I64, T_TIMESTAMP):
            return self._scan_signed(col, opn, value)
        if code in (T_U8, T_U16, T_U32, T_U64):
            return self._scan_unsigned(col, opn, value)
        if code in (T_F32, T_F64):
            return self._scan_float(col, opn, value)
        if code == T_STRING:
            return self._scan_heap(col, opn, PyUnicode_AsUTF8String(value))
        if code == T_BYTES:
            return self._scan_heap(col, opn, value)
        # anything else: compare Python values
        out = []
        for rowid, row in self.scan():
            if _py_cmp(opn, row[col], value):
                out.append(rowid)
        return out

    cdef list _scan_signed(self, int col, int opn, int64_t x):
        cdef Page page
        cdef Py_ssize_t pno
        cdef int s, w = self.layout.width[col]
        cdef const unsigned char* base
        cdef int64_t v
        cdef int8_t v8
        cdef int16_t v16
        cdef int32_t v32
        cdef list out = []
        for pno in range(len(self.pages)):
            page = self.pages[pno]
            base = page.data + page.layout.offset[col]
            for s in range(page.high):
                if not page.live(s):
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

    cdef list _scan_heap(self, int col, int opn, bytes x):
        # UTF-8 orders strings as their code points do, so a byte comparison of the stored
        # text orders like Python's str comparison (and bytes compare as bytes)
        cdef Page page
        cdef Py_ssize_t pno
        cdef int s, c
        cdef const unsigned char* base
        cdef uint32_t off, ln
        cdef const char* xp = PyBytes_AS_STRING(x)
        cdef Py_ssize_t xl = PyBytes_GET_SIZE(x)
        cdef int64_t order
        cdef list out = []
        for pno in range(len(self.pages)):
            page = self.pages[pno]
            base = page.data + page.layout.offset[col]
            for s in range(page.high):
                if not page.live(s):
                    continue
                memcpy(&off, base + s * 8, 4)
                memcpy(&ln, base + s * 8 + 4, 4)
                c = memcmp(page.data + off, xp, ln if ln < xl else xl)
                order = c if c != 0 else <int64_t>ln - xl
                if _holds(opn, order, <int64_t>0):
                    out.append((<uint64_t>pno << SLOT_BITS) | s)
        return out

    cdef list _scan_unsigned(self, int col, int opn, uint64_t x):
        cdef Page page
        cdef Py_ssize_t pno
        cdef int s, w = self.layout.width[col]
        cdef const unsigned char* base
        cdef uint64_t v
        cdef list out = []
        for pno in range(len(self.pages)):
            page = self.pages[pno]
            base = page.data + page.layout.offset[col]
            for s in range(page.high):
                if not page.live(s):
                    continue
                v = 0
                memcpy(&v, base + <Py_ssize_t>s * w, w)
                if _holds(opn, v, x):
                    out.append((<uint64_t>pno << SLOT_BITS) | s)
        return out

    cdef list _scan_float(self, int col, int opn, double x):
        cdef Page page
        cdef Py_ssize_t pno
        cdef int s, w = self.layout.width[col]
        cdef const unsigned char* base
        cdef double v
        cdef float f
        cdef list out = []
        for pno in range(len(self.pages)):
            page = self.pages[pno]
            base = page.data + page.layout.offset[col]
            for s in range(page.high):
                if not page.live(s):
                    continue
                if w == 8:
                    memcpy(&v, base + s * 8, 8)
                else:
                    memcpy(&f, base + s * 4, 4)
                    v = f
                if _holds(opn, v, x):
                    out.append((<uint64_t>pno << SLOT_BITS) | s)
        return out

    # ------------------------------------------------------------ writes

    def _fill_sequences(self, tuple row, bint assign):
        """Assign auto-increment values where the row has 0 (on insert); return the row and
        the sequence values to keep if the write goes through."""
        cdef int k
        if not self.seq_cols:
            return row, None
        vals = list(row)
        nxt = list(self.seq_next)
        for k in range(len(self.seq_cols)):
            c = self.seq_cols[k]
            if assign and vals[c] == 0:
                if nxt[k] > self.seq_max[k]:
                    raise DataError(f"table '{self.name}', column '{self.schema.columns[c].name}': "
                                    f"auto-increment sequence is exhausted at {self.seq_max[k]}")
                vals[c] = nxt[k]
                nxt[k] += 1
            elif vals[c] >= nxt[k]:
                nxt[k] = vals[c] + 1
        return tuple(vals), nxt

    cpdef uint64_t insert(self, object row) except? 0xFFFFFFFFFFFFFFFF:
        """Check and insert a row; auto-increment columns given as 0 get the next value.

        Returns the row id; ``get(rowid)`` gives the row as stored.
        """
        return self._insert(row, True, True)

    def load(self, object row):
        """Insert a row exactly as given (replay of the log or a snapshot): no auto-increment
        assignment, but explicit values still move the sequences past them."""
        return self._insert(row, False, True)

    def find_row(self, object row):
        """The row id of a row equal to ``row`` (checked first), or None."""
        cdef int64_t r = self._find_row(self.codec.check_row(row))
        return None if r < 0 else r

    cdef int64_t _find_row(self, tuple row) except -2:
        """Look a whole row up by its primary key, else its first index, else a scan."""
        cdef bytes k
        if self.indexes:
            k = encode_row_key(self.index_types[0], self.index_cols[0], row, &self.keybuf)
            idx = self.indexes[0]
            if isinstance(idx, HashIndex):
                r = (<HashIndex>idx).find(k, hash_key(k))
                if r >= 0 and self._same_row(self.get(r), row):
                    return r
                return -1
            for r in (<SortedIndex>idx).rowids_with_prefix(k):
                if self._same_row(self.get(r), row):
                    return r
            return -1
        for r, other in self.scan():
            if self._same_row(other, row):
                return r
        return -1

    cdef bint _same_row(self, tuple a, tuple b) except -1:
        """Equal rows, or rows with the same encoding (a row holding NaN is not == itself;
        a logged delete of it must still find it)."""
        return a == b or self.codec.encode(a) == self.codec.encode(b)

    def apply_encoded(self, list deletes, list inserts):
        """Apply a logged change: delete each row (row codec bytes) — which must be present —
        then insert each as given.  Returns the number of row operations."""
        cdef RowCodec codec = self.codec
        cdef int64_t rid
        for raw in deletes:
            row = codec.decode(raw)
            rid = self._find_row(row)
            if rid < 0:
                raise ConstraintError(f"table '{self.name}': the row to delete is not there: {row!r}")
            self._delete_at(self._page(<uint64_t>rid), <uint64_t>rid, row)
        for raw in inserts:
            # decoded rows are valid values by construction: no second check
            self._insert(codec.decode(raw), False, False)
        return len(deletes) + len(inserts)

    cdef uint64_t _insert(self, object row, bint assign, bint check) except? 0xFFFFFFFFFFFFFFFF:
        cdef tuple r = self.codec.check_row(row) if check else <tuple>row
        cdef Py_ssize_t need
        nxt = None
        if self.seq_cols:
            r, nxt = self._fill_sequences(r, assign)
        keys = self._keys(r)
        self._check_unique(keys, None, r)
        heap = heap_values(self.layout, r, &need)
        rowid = self._place(r, heap, need)
        self._index_add(keys, rowid)
        self.nrows += 1
        self.rows_seen += 1
        self.heap_seen += need
        if nxt is not None:
            self.seq_next = nxt
        return rowid

    def insert_at(self, uint64_t rowid, object row):
        """Put a row back at a free ``rowid`` (rollback and recovery); sequences unchanged."""
        cdef tuple r = self.codec.check_row(row)
        cdef Py_ssize_t need
        cdef uint64_t pno = rowid >> SLOT_BITS
        cdef int slot = rowid & SLOT_MASK
        cdef Page page
        keys = self._keys(r)
        self._check_unique(keys, None, r)
        heap = heap_values(self.layout, r, &need)
        while pno >= <uint64_t>len(self.pages):
            self.pages.append(Page(self.layout, 0))
            self.in_room.append(1)
            self.room.insert(0, len(self.pages) - 1)
        page = self.pages[pno]
        if slot >= page.layout.capacity or page.live(slot):
            raise InternalError(f"table '{self.name}': row id {rowid} is not free")
        if page.heap_top - page.heap_dead + need > page.size:
            raise InternalError(f"table '{self.name}': row does not fit back at id {rowid}")
        page.write(slot, r, heap)
        self._index_add(keys, rowid)
        self.nrows += 1
        if not self.in_room[pno] and page.count < page.layout.capacity:
            self.room.append(pno)
            self.in_room[pno] = 1
        return rowid

    cpdef tuple delete(self, uint64_t rowid):
        """Delete the row at ``rowid`` and return it."""
        cdef Page page = self._page(rowid)
        if page is None:
            raise InternalError(f"table '{self.name}': no row at id {rowid}")
        return self._delete_at(page, rowid, page.read(rowid & SLOT_MASK))

    cdef tuple _delete_at(self, Page page, uint64_t rowid, tuple row):
        """Delete the row at ``rowid`` of ``page``, which holds ``row`` (already read)."""
        cdef uint64_t pno = rowid >> SLOT_BITS
        self._index_remove(self._keys(row), rowid)
        page.release(rowid & SLOT_MASK)
        self.nrows -= 1
        if not self.in_room[pno]:
            self.room.append(pno)
            self.in_room[pno] = 1
        return row

    def update(self, uint64_t rowid, object row):
        """Replace the row at ``rowid`` in place where it fits; returns the (maybe new) row id.

        Auto-increment columns are taken as given (no assignment on update).
        """
        cdef Page page = self._page(rowid)
        cdef Py_ssize_t need
        cdef uint64_t newid = rowid
        cdef uint64_t pno = rowid >> SLOT_BITS
        cdef int i
        if page is None:
            raise InternalError(f"table '{self.name}': no row at id {rowid}")
        cdef tuple r = self.codec.check_row(row)
        r, nxt = self._fill_sequences(r, False)
        old = page.read(rowid & SLOT_MASK)
        old_keys = self._keys(old)
        keys = self._keys(r)
        self._check_unique(keys, old_keys, r)
        heap = heap_values(self.layout, r, &need)
        if page.rewrite(rowid & SLOT_MASK, r, heap):
            for i in range(len(self.indexes)):
                if keys[i] != old_keys[i]:
                    idx = self.indexes[i]
                    if isinstance(idx, HashIndex):
                        (<HashIndex>idx).remove(old_keys[i], hash_key(old_keys[i]), rowid)
                        (<HashIndex>idx).add(keys[i], hash_key(keys[i]), rowid)
                    else:
                        (<SortedIndex>idx).remove(entry_of(old_keys[i], rowid))
                        (<SortedIndex>idx).add(entry_of(keys[i], rowid))
        else:
            # does not fit this page any more: move the row
            self._index_remove(old_keys, rowid)
            page.release(rowid & SLOT_MASK)
            if not self.in_room[pno]:
                self.room.append(pno)
                self.in_room[pno] = 1
            newid = self._place(r, heap, need)
            self._index_add(keys, newid)
        if nxt is not None:
            self.seq_next = nxt
        return newid

    def clear(self):
        """Delete every row (sequences unchanged)."""
        for rowid in self.rowids():
            self.delete(rowid)

    # ------------------------------------------------------------ sequences, stats

    def sequence_state(self):
        return tuple(self.seq_next)

    def restore_sequences(self, state):
        if len(state) != len(self.seq_next):
            raise InternalError(f"table '{self.name}': sequence state has the wrong length")
        self.seq_next = list(state)

    def memory_bytes(self):
        """Bytes held by pages and indexes (allocations, not counting small object headers)."""
        cdef Page page
        n = 0
        for page in self.pages:
            n += page.size
        for idx in self.indexes:
            n += idx.memory_bytes
        return n

    def stats(self):
        cdef Page page
        return {
            "rows": self.nrows,
            "pages": len(self.pages),
            "slots_per_page": sorted({page.layout.capacity for page in self.pages}),
            "page_bytes": sum(page.size for page in self.pages),
            "index_bytes": {d.name: idx.memory_bytes for d, idx in zip(self.index_defs, self.indexes)},
            "heap_compactions": sum(page.compactions for page in self.pages),
        }

    def check_invariants(self):
        """Verify counts and that every index entry matches a live row (tests, debug)."""
        cdef Page page
        live = self.rowids()
        if len(live) != self.nrows:
            raise InternalError(f"table '{self.name}': nrows {self.nrows} but {len(live)} live slots")
        for idx in self.indexes:
            if idx.count != self.nrows:
                raise InternalError(f"table '{self.name}': index '{idx.name}' has {idx.count} "
                                    f"entries for {self.nrows} rows")
        for rowid in live:
            row = self.get(rowid)
            for i in range(len(self.indexes)):
                key = tuple([row[c] for c in self.index_cols[i]])
                if rowid not in self.seek(self.index_defs[i].name, key):
                    raise InternalError(f"table '{self.name}': row {rowid} missing from index "
                                        f"'{self.index_defs[i].name}'")
        for page in self.pages:
            used = sum(page.heap_used(s) for s in range(page.high) if page.live(s))
            if page.heap_top - page.layout.heap_start - page.heap_dead != used:
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


from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF


cdef tuple _framed_chunks(list pages, RowCodec codec, Py_ssize_t limit):
    """(chunks, rows): every live row of ``pages`` in the row codec after its length (u32
    little-endian), in storage order, cut into chunks once one reaches ``limit`` bytes.
    Releases the GIL for a moment every 1024 rows."""
    cdef Buf b
    cdef Page page
    cdef Py_ssize_t pno, start, i
    cdef Py_ssize_t nrows = 0
    cdef int s
    cdef uint32_t ln
    cdef tuple row
    cdef list chunks = []
    buf_init(&b, limit + 4096)
    try:
        for pno in range(len(pages)):
            page = pages[pno]
            for s in range(page.high):
                if not page.live(s):
                    continue
                row = page.read(s)
                buf_reserve(&b, 4)
                start = b.len
                b.len += 4
                for i in range(codec.ncols):
                    encode_value(<ColumnType>codec.types[i], row[i], &b)
                ln = <uint32_t>(b.len - start - 4)
                b.data[start] = ln & 0xFF
                b.data[start + 1] = (ln >> 8) & 0xFF
                b.data[start + 2] = (ln >> 16) & 0xFF
                b.data[start + 3] = ln >> 24
                nrows += 1
                if nrows & 1023 == 0:
                    # a breath: C code never hands the GIL over by itself, and a snapshot is
                    # encoded by a background thread while the server's thread wants to run
                    with nogil:
                        pass
                if b.len >= limit:
                    chunks.append(PyBytes_FromStringAndSize(<char*>b.data, b.len))
                    b.len = 0
        if b.len:
            chunks.append(PyBytes_FromStringAndSize(<char*>b.data, b.len))
    finally:
        buf_free(&b)
    return chunks, nrows


def _scan_pages(list pages):
    """``(rowid, row)`` for every live slot of ``pages``, in storage order."""
    cdef Page page
    cdef int s
    cdef Py_ssize_t pno
    for pno in range(len(pages)):
        page = pages[pno]
        for s in range(page.high):
            if page.live(s):
                yield (<uint64_t>pno << SLOT_BITS) | s, page.read(s)


@cython.final
cdef class TableCopy:
    """A table's rows at one moment — its pages copied (a memcpy each), no indexes — with its
    schema, codec and sequence state: what a snapshot needs, readable from another thread while
    the table goes on changing.  It costs about the table's page memory while it lives."""

    cdef readonly object schema
    cdef readonly str name
    cdef readonly RowCodec codec
    cdef readonly Py_ssize_t nrows
    cdef list pages
    cdef tuple seq

    def __cinit__(self, Table t):
        cdef Page p
        self.schema, self.name, self.codec, self.nrows = t.schema, t.name, t.codec, t.nrows
        self.seq = tuple(t.seq_next)
        self.pages = [p.copy() for p in t.pages]

    def __len__(self):
        return self.nrows

    def scan(self):
        """Yield ``(rowid, row)`` for every row, in the table's storage order at the copy."""
        return _scan_pages(self.pages)

    def sequence_state(self):
        return self.seq

    def framed_chunks(self, Py_ssize_t limit):
        """The rows as snapshot chunks (see ``_framed_chunks``)."""
        return _framed_chunks(self.pages, self.codec, limit)
