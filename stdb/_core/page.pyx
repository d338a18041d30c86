# cython: language_level=3
"""Packed columnar pages.

A page is one block of (at least) 64 KiB laid out for one table:

    [presence bitmap: capacity bits][col 0: capacity × width0][col 1: ...]...[heap →      ]

Fixed-width values sit in their column's packed array at ``offset + slot × width``
(little-endian; option<T> of a fixed T is a tag byte then T).  Strings, bytes, arrays
and option<heap T> hold an 8-byte (u32 offset, u32 length) pair in their column array and
their bytes in the page heap, which grows upward from the end of the last column array.
Length 0xFFFFFFFF means "none" for option<string|bytes|array>.  A freed slot's heap bytes
become dead; the heap is compacted when a write needs the room.  A row whose heap data
exceeds a standard page's heap gets a page sized for it.
"""

cimport cython
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8String, PyUnicode_DecodeUTF8

from stdb._core.codec cimport (
    ColumnType, Buf, buf_init, buf_free, encode_value, decode_value, f32_of, f64_of,
    key_escaped, key_fixed_int,
    T_BOOL, T_I8, T_I16, T_I32, T_I64, T_U8, T_U16, T_U32, T_U64, T_F32, T_F64,
    T_STRING, T_BYTES, T_IDENTITY, T_TIMESTAMP, T_OPTION,
)
from stdb.errors import InternalError

cdef extern from *:
    """
    #define STDB_NONE_LEN 0xFFFFFFFFu
    """
    # the length stored for a None heap value; a C constant: as a DEF, Cython made it a
    # Python int and boxed the other side of every comparison with it
    const uint32_t NONE_LEN "STDB_NONE_LEN"

# Heap bytes budgeted per heap column per row for a table's first page; later pages use
# what the table's rows have actually needed (Table._new_page_layout).
DEF HEAP_ESTIMATE = 16


@cython.final
cdef class Layout:
    """Where each column lives inside a page of one table."""

    def __cinit__(self, types, int heap_estimate=HEAP_ESTIMATE):
        cdef int i
        cdef ColumnType t
        self.types = tuple(types)
        self.ncols = len(self.types)
        n = self.ncols if self.ncols > 0 else 1
        self.code = <int*>PyMem_Malloc(n * sizeof(int))
        self.width = <int*>PyMem_Malloc(n * sizeof(int))
        self.inner_code = <int*>PyMem_Malloc(n * sizeof(int))
        self.offset = <Py_ssize_t*>PyMem_Malloc(n * sizeof(Py_ssize_t))
        self.in_heap = <bint*>PyMem_Malloc(n * sizeof(bint))
        if not (self.code and self.width and self.inner_code and self.offset and self.in_heap):
            raise MemoryError()
        fixed = 0
        self.nheap = 0
        for i in range(self.ncols):
            t = self.types[i]
            self.code[i] = t.code
            self.inner_code[i] = t.inner.code if t.inner is not None else 0
            self.width[i] = t.page_width
            self.in_heap[i] = t.in_heap
            fixed += t.page_width
            if t.in_heap:
                self.nheap += 1
        self.fixed_row_bytes = fixed
        self.heap_estimate = heap_estimate
        per_row_bits = 8 * (fixed + heap_estimate * self.nheap) + 1
        cap = (PAGE_BYTES * 8) // per_row_bits
        cap = max(1, min(cap, MAX_SLOTS))
        while cap > 1 and (cap + 7) // 8 + cap * fixed > PAGE_BYTES:
            cap -= 1
        self.capacity = cap
        self.bitmap_bytes = (cap + 7) // 8
        pos = (self.bitmap_bytes + 7) & ~7
        for i in range(self.ncols):
            self.offset[i] = pos
            pos += <Py_ssize_t>self.width[i] * cap
        self.heap_start = pos

    def __dealloc__(self):
        PyMem_Free(self.code)
        PyMem_Free(self.width)
        PyMem_Free(self.inner_code)
        PyMem_Free(self.offset)
        PyMem_Free(self.in_heap)

    @property
    def heap_capacity(self):
        return PAGE_BYTES - self.heap_start if PAGE_BYTES > self.heap_start else 0


cdef bytes _heap_bytes(ColumnType t, object v):
    cdef Buf b
    if t.code == T_OPTION:
        if v is None:
            return None
        t = t.inner
    if t.code == T_STRING:
        return PyUnicode_AsUTF8String(v)
    if t.code == T_BYTES:
        return v
    # array: its row-codec encoding
    buf_init(&b, 64)
    try:
        encode_value(t, v, &b)
        return PyBytes_FromStringAndSize(<char*>b.data, b.len)
    finally:
        buf_free(&b)


cdef list heap_values(Layout layout, tuple row, Py_ssize_t* total):
    """The heap bytes of a (checked) row's heap columns, in column order, and their total size."""
    cdef int i
    cdef list out = []
    cdef Py_ssize_t n = 0
    if layout.nheap == 0:
        total[0] = 0
        return out
    for i in range(layout.ncols):
        if layout.in_heap[i]:
            hb = _heap_bytes(<ColumnType>layout.types[i], row[i])
            out.append(hb)
            if hb is not None:
                n += PyBytes_GET_SIZE(hb)
    total[0] = n
    return out


cdef inline void _write_fixed(unsigned char* p, int code, object v) except *:
    cdef int64_t i64
    cdef uint64_t u64
    cdef double d
    cdef float f
    if code == T_BOOL:
        p[0] = 1 if v else 0
    elif code == T_I64 or code == T_TIMESTAMP:
        i64 = v
        memcpy(p, &i64, 8)
    elif code == T_U64:
        u64 = v
        memcpy(p, &u64, 8)
    elif code == T_I8 or code == T_I16 or code == T_I32:
        i64 = v
        memcpy(p, &i64, 1 if code == T_I8 else (2 if code == T_I16 else 4))
    elif code == T_U8 or code == T_U16 or code == T_U32:
        u64 = v
        memcpy(p, &u64, 1 if code == T_U8 else (2 if code == T_U16 else 4))
    elif code == T_F64:
        d = v
        memcpy(p, &d, 8)
    elif code == T_F32:
        f = f32_of(v)
        memcpy(p, &f, 4)
    elif code == T_IDENTITY:
        memcpy(p, PyBytes_AS_STRING(v), 32)


cdef inline void _write_cell(Layout L, int col, unsigned char* p, object v) except *:
    """Write a fixed-width column's value (option<T>: a tag byte, then T) at ``p``."""
    if L.code[col] != T_OPTION:
        _write_fixed(p, L.code[col], v)
    elif v is None:
        memset(p, 0, L.width[col])
    else:
        p[0] = 1
        _write_fixed(p + 1, L.inner_code[col], v)


cdef inline object _read_fixed(const unsigned char* p, int code):
    cdef int8_t i8
    cdef int16_t i16
    cdef int32_t i32
    cdef int64_t i64
    cdef uint16_t u16
    cdef uint32_t u32
    cdef uint64_t u64
    cdef double d
    cdef float f
    if code == T_I64 or code == T_TIMESTAMP:
        memcpy(&i64, p, 8)
        return i64
    if code == T_U64:
        memcpy(&u64, p, 8)
        return u64
    if code == T_BOOL:
        return p[0] != 0
    if code == T_I32:
        memcpy(&i32, p, 4)
        return i32
    if code == T_U32:
        memcpy(&u32, p, 4)
        return u32
    if code == T_F64:
        memcpy(&d, p, 8)
        return d
    if code == T_F32:
        memcpy(&f, p, 4)
        return f64_of(f)
    if code == T_I8:
        memcpy(&i8, p, 1)
        return i8
    if code == T_U8:
        return p[0]
    if code == T_I16:
        memcpy(&i16, p, 2)
        return i16
    if code == T_U16:
        memcpy(&u16, p, 2)
        return u16
    if code == T_IDENTITY:
        return PyBytes_FromStringAndSize(<const char*>p, 32)
    raise InternalError(f"page: no fixed reader for type code {code}")


@cython.final
cdef class Page:
    """One page of rows of one table (not constructible from Python)."""

    def __cinit__(self, Layout layout, Py_ssize_t heap_need=0):
        self.layout = layout
        self.size = PAGE_BYTES
        if layout.heap_start + heap_need > self.size:
            self.size = layout.heap_start + heap_need
        self.data = <unsigned char*>PyMem_Malloc(self.size)
        if self.data == NULL:
            raise MemoryError()
        memset(self.data, 0, layout.heap_start)
        self.heap_top = layout.heap_start

    def __dealloc__(self):
        PyMem_Free(self.data)

    cdef Page copy(self):
        """An independent copy of this page (same layout, same slots, same heap)."""
        cdef Page p = Page(self.layout, self.size - self.layout.heap_start)
        memcpy(p.data, self.data, self.size)
        p.count, p.high, p.hint = self.count, self.high, self.hint
        p.heap_top, p.heap_dead = self.heap_top, self.heap_dead
        return p

    cdef int alloc_slot(self) noexcept:
        """A free slot (not yet marked live), or -1 when the page is full."""
        cdef int cap = self.layout.capacity
        cdef int s
        if self.count >= cap:
            return -1
        if self.hint >= self.high:
            return self.high if self.high < cap else -1
        s = self.hint
        while s < self.high:
            if (s & 7) == 0 and self.data[s >> 3] == 0xFF:
                s += 8
                continue
            if not self.live(s):
                self.hint = s
                return s
            s += 1
        self.hint = self.high
        return self.high if self.high < cap else -1

    cdef bint has_room(self, Py_ssize_t heap_bytes) noexcept:
        """A free slot, and ``heap_bytes`` at the top of the heap, or after compacting when that
        frees at least 1/16 of the heap.  (Compacting for less rewrote the whole heap for each
        row put in place of a deleted one: replaying updates, which the log holds as a delete
        and an insert, spent most of its time there.)"""
        if self.count >= self.layout.capacity:
            return False
        if self.heap_top + heap_bytes <= self.size:
            return True
        return (self.heap_top - self.heap_dead + heap_bytes <= self.size
                and self.heap_dead * 16 >= self.size - self.layout.heap_start)

    cdef int claim(self, int slot) except -1:
        """Mark a free slot live (the row is written by ``write`` right after)."""
        if slot < 0 or slot >= self.layout.capacity or self.live(slot):
            raise InternalError(f"page: slot {slot} is not free")
        self.data[slot >> 3] |= <unsigned char>(1 << (slot & 7))
        self.count += 1
        if slot >= self.high:
            self.high = slot + 1
        if slot == self.hint:
            self.hint = slot + 1
        return 0

    cdef int _put_heap(self, int slot, int col, bytes hb) except -1:
        cdef Layout L = self.layout
        cdef unsigned char* cell = self.data + L.offset[col] + <Py_ssize_t>slot * 8
        cdef uint32_t off, ln
        if hb is None:
            off = 0
            ln = NONE_LEN
        else:
            ln = <uint32_t>PyBytes_GET_SIZE(hb)
            off = <uint32_t>self.heap_top
            memcpy(self.data + self.heap_top, PyBytes_AS_STRING(hb), ln)
            self.heap_top += ln
        memcpy(cell, &off, 4)
        memcpy(cell + 4, &ln, 4)
        return 0

    cdef int write(self, int slot, tuple row, list heap) except -1:
        """Claim a free slot and write a checked row into it; ``heap`` is from ``heap_values``."""
        cdef Layout L = self.layout
        cdef int i, h = 0
        cdef Py_ssize_t need = 0
        for hb in heap:
            if hb is not None:
                need += PyBytes_GET_SIZE(hb)
        if self.heap_top + need > self.size:
            self.compact()
            if self.heap_top + need > self.size:
                raise InternalError("page: heap overflow (has_room was not checked)")
        self.claim(slot)
        for i in range(L.ncols):
            if L.in_heap[i]:
                self._put_heap(slot, i, heap[h])
                h += 1
            else:
                _write_cell(L, i, self.data + L.offset[i] + <Py_ssize_t>slot * L.width[i], row[i])
        return 0

    cdef object read_col(self, int slot, int col):
        cdef Layout L = self.layout
        cdef const unsigned char* p = self.data + L.offset[col] + <Py_ssize_t>slot * L.width[col]
        cdef uint32_t off, ln
        cdef int code = L.code[col]
        cdef Py_ssize_t pos
        if not L.in_heap[col]:
            if code == T_OPTION:
                if p[0] == 0:
                    return None
                return _read_fixed(p + 1, L.inner_code[col])
            return _read_fixed(p, code)
        memcpy(&off, p, 4)
        memcpy(&ln, p + 4, 4)
        if code == T_OPTION:
            if ln == NONE_LEN:
                return None
            code = L.inner_code[col]
        if code == T_STRING:
            return PyUnicode_DecodeUTF8(<const char*>self.data + off, ln, NULL)
        if code == T_BYTES:
            return PyBytes_FromStringAndSize(<const char*>self.data + off, ln)
        pos = 0
        t = <ColumnType>L.types[col]
        if t.code == T_OPTION:
            t = t.inner
        return decode_value(t, self.data + off, ln, &pos)

    cdef int key_col(self, int slot, int col, Buf* out) except -1:
        """Append the key form of column ``col`` of ``slot`` straight from the page (integers,
        bools, strings and bytes).  Returns 1, writing nothing, for other types."""
        cdef Layout L = self.layout
        cdef const unsigned char* p = self.data + L.offset[col] + <Py_ssize_t>slot * L.width[col]
        cdef uint32_t off, ln
        cdef int code = L.code[col]
        if not L.in_heap[col]:
            return key_fixed_int(code, p, out)
        if code != T_STRING and code != T_BYTES:
            return 1
        memcpy(&off, p, 4)
        memcpy(&ln, p + 4, 4)
        return key_escaped(self.data + off, ln, out)

    cdef tuple read(self, int slot):
        cdef int i
        cdef int n = self.layout.ncols
        cdef tuple out = PyTuple_New(n)
        for i in range(n):
            v = self.read_col(slot, i)
            Py_INCREF(v)
            PyTuple_SET_ITEM(out, i, v)
        return out

    cdef Py_ssize_t heap_used(self, int slot) noexcept:
        cdef Layout L = self.layout
        cdef int i
        cdef uint32_t ln
        cdef Py_ssize_t n = 0
        for i in range(L.ncols):
            if L.in_heap[i]:
                memcpy(&ln, self.data + L.offset[i] + <Py_ssize_t>slot * 8 + 4, 4)
                if ln != NONE_LEN:
                    n += ln
        return n

    cdef void release(self, int slot) noexcept:
        self.heap_dead += self.heap_used(slot)
        self.data[slot >> 3] &= <unsigned char>~(1 << (slot & 7))
        self.count -= 1
        if slot < self.hint:
            self.hint = slot
        if self.count == 0:
            self.heap_top = self.layout.heap_start
            self.heap_dead = 0

    cdef bint rewrite(self, int slot, tuple row, list heap) except -1:
        """Update a live slot in place.  False (nothing changed) when the new heap data
        does not fit this page even after compaction."""
        cdef Layout L = self.layout
        cdef int i, h = 0
        cdef Py_ssize_t grow = 0
        cdef uint32_t off, ln
        cdef unsigned char* cell
        # heap values that fit their old place are overwritten there; others go to the top
        for i in range(L.ncols):
            if L.in_heap[i]:
                hb = heap[h]
                h += 1
                memcpy(&ln, self.data + L.offset[i] + <Py_ssize_t>slot * 8 + 4, 4)
                if hb is not None and (ln == NONE_LEN or PyBytes_GET_SIZE(hb) > ln):
                    grow += PyBytes_GET_SIZE(hb)
        if grow and self.heap_top + grow > self.size:
            if self.heap_top - self.heap_dead + grow > self.size:
                return False
            self.compact()
        h = 0
        for i in range(L.ncols):
            if L.in_heap[i]:
                hb = heap[h]
                h += 1
                cell = self.data + L.offset[i] + <Py_ssize_t>slot * 8
                memcpy(&off, cell, 4)
                memcpy(&ln, cell + 4, 4)
                if hb is not None and ln != NONE_LEN and PyBytes_GET_SIZE(hb) <= ln:
                    memcpy(self.data + off, PyBytes_AS_STRING(hb), PyBytes_GET_SIZE(hb))
                    self.heap_dead += ln - PyBytes_GET_SIZE(hb)
                    ln = <uint32_t>PyBytes_GET_SIZE(hb)
                    memcpy(cell + 4, &ln, 4)
                else:
                    if ln != NONE_LEN:
                        self.heap_dead += ln
                    self._put_heap(slot, i, hb)
        # fixed columns
        for i in range(L.ncols):
            if not L.in_heap[i]:
                _write_cell(L, i, self.data + L.offset[i] + <Py_ssize_t>slot * L.width[i], row[i])
        return True

    cdef int compact(self) except -1:
        """Rewrite the heap with only live values, in slot order."""
        cdef Layout L = self.layout
        cdef Py_ssize_t live_bytes = self.heap_top - L.heap_start - self.heap_dead
        cdef unsigned char* tmp
        cdef Py_ssize_t top = 0
        cdef int s, i
        cdef uint32_t off, ln
        cdef unsigned char* cell
        if self.heap_dead == 0 or L.nheap == 0:
            return 0
        tmp = <unsigned char*>PyMem_Malloc(live_bytes if live_bytes > 0 else 1)
        if tmp == NULL:
            raise MemoryError()
        try:
            for s in range(self.high):
                if not self.live(s):
                    continue
                for i in range(L.ncols):
                    if not L.in_heap[i]:
                        continue
                    cell = self.data + L.offset[i] + <Py_ssize_t>s * 8
                    memcpy(&off, cell, 4)
                    memcpy(&ln, cell + 4, 4)
                    if ln == NONE_LEN:
                        continue
                    if top + ln > live_bytes:
                        raise InternalError("page: heap accounting is off during compaction")
                    memcpy(tmp + top, self.data + off, ln)
                    off = <uint32_t>(L.heap_start + top)
                    memcpy(cell, &off, 4)
                    top += ln
            memcpy(self.data + L.heap_start, tmp, top)
            self.heap_top = L.heap_start + top
            self.heap_dead = 0
            self.compactions += 1
        finally:
            PyMem_Free(tmp)
        return 0


from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF
