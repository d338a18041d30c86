# cython: language_level=3
"""Packed columnar pages.

A page is one block of (at least) 64 KiB laid out for one table:

    [presence bitmap: capacity bits][col 0: capacity × width0][col 1: ...]...[heap →      ]

Fixed-width values sit in their column's packed array at ``offset + slot × width``
(little-endian, as in the row codec; option<T> of a fixed T is a tag byte then T).  Strings,
bytes, arrays and option<heap T> hold an 8-byte (u32 offset, u32 length) pair in their column
array and their bytes in the page heap, which grows upward from the end of the last column
array: a string's UTF-8, a byte string's bytes, an array's row-codec encoding (count and
elements).  Length 0xFFFFFFFF means "none" for option<string|bytes|array>.  A freed slot's heap
bytes become dead; the heap is compacted when a write needs the room.  A row whose heap data
exceeds a standard page's heap gets a page sized for it.

Everything here is C over C structs (``PageC``, ``LayoutC``): a row is written from its
row-codec bytes and read back as row-codec bytes without the GIL.  ``page_read`` builds the
Python tuple of a row for the Python API.
"""

from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawCalloc, PyMem_RawFree
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF

from stdb._core.codec cimport (
    f64_of, T_BOOL, T_I8, T_I16, T_I32, T_I64, T_U8, T_U16, T_U32, T_U64, T_F32, T_F64,
    T_STRING, T_BYTES, T_IDENTITY, T_TIMESTAMP, T_OPTION, T_ARRAY,
)
from stdb._core.rowbytes cimport (
    CBuf, ColSpec, cbuf_put, cbuf_u8, cbuf_u32, rd_u32, wr_u32, rb_width,
    key_scalar, key_bytes, key_array,
)
from stdb.errors import InternalError

# Heap bytes budgeted per heap column per row for a table's first page; later pages use
# what the table's rows have actually needed (table.pyx, _new_page_layout).
DEF HEAP_ESTIMATE = 16

# ---------------------------------------------------------------- layouts

cdef LayoutC* layout_new(const ColSpec* cols, int ncols, int heap_estimate) noexcept nogil:
    cdef LayoutC* L = <LayoutC*>PyMem_RawCalloc(1, sizeof(LayoutC))
    cdef int i, fixed = 0, cap
    cdef Py_ssize_t pos, per_row_bits
    if L == NULL:
        return NULL
    L.offset = <Py_ssize_t*>PyMem_RawMalloc(sizeof(Py_ssize_t) * (ncols if ncols > 0 else 1))
    if L.offset == NULL:
        PyMem_RawFree(L)
        return NULL
    L.ncols = ncols
    L.cols = cols
    for i in range(ncols):
        fixed += cols[i].page_width
        if cols[i].in_heap:
            L.nheap += 1
    L.fixed_row_bytes = fixed
    L.heap_estimate = heap_estimate if heap_estimate > 0 else HEAP_ESTIMATE
    per_row_bits = 8 * (fixed + L.heap_estimate * L.nheap) + 1
    cap = <int>((PAGE_BYTES * 8) // per_row_bits)
    if cap > MAX_SLOTS:
        cap = MAX_SLOTS
    if cap < 1:
        cap = 1
    while cap > 1 and (cap + 7) // 8 + <Py_ssize_t>cap * fixed > PAGE_BYTES:
        cap -= 1
    L.capacity = cap
    L.bitmap_bytes = (cap + 7) // 8
    pos = (L.bitmap_bytes + 7) & ~7
    for i in range(ncols):
        L.offset[i] = pos
        pos += <Py_ssize_t>cols[i].page_width * cap
    L.heap_start = pos
    return L


cdef void layout_free(LayoutC* L) noexcept nogil:
    if L != NULL:
        PyMem_RawFree(L.offset)
        PyMem_RawFree(L)

# ---------------------------------------------------------------- pages

cdef PageC* page_new(LayoutC* L, Py_ssize_t heap_need) noexcept nogil:
    cdef PageC* p = <PageC*>PyMem_RawCalloc(1, sizeof(PageC))
    if p == NULL:
        return NULL
    p.layout = L
    p.size = PAGE_BYTES
    if L.heap_start + heap_need > p.size:
        p.size = L.heap_start + heap_need
    p.data = <unsigned char*>PyMem_RawMalloc(p.size)
    if p.data == NULL:
        PyMem_RawFree(p)
        return NULL
    memset(p.data, 0, L.heap_start)
    p.heap_top = L.heap_start
    return p


cdef void page_free(PageC* p) noexcept nogil:
    if p != NULL:
        PyMem_RawFree(p.data)
        PyMem_RawFree(p)


cdef PageC* page_copy(const PageC* p) noexcept nogil:
    """An independent copy of ``p`` (same layout, slots and heap)."""
    cdef PageC* c = <PageC*>PyMem_RawMalloc(sizeof(PageC))
    if c == NULL:
        return NULL
    memcpy(c, p, sizeof(PageC))
    c.data = <unsigned char*>PyMem_RawMalloc(p.size)
    if c.data == NULL:
        PyMem_RawFree(c)
        return NULL
    memcpy(c.data, p.data, p.size)
    return c


cdef Py_ssize_t page_heap_used(const PageC* p, int slot) noexcept nogil:
    cdef LayoutC* L = p.layout
    cdef int i
    cdef uint32_t ln
    cdef Py_ssize_t n = 0
    for i in range(L.ncols):
        if L.cols[i].in_heap:
            ln = rd_u32(page_cell(p, slot, i) + 4)
            if ln != NONE_LEN:
                n += ln
    return n


cdef void page_release(PageC* p, int slot) noexcept nogil:
    p.heap_dead += page_heap_used(p, slot)
    p.data[slot >> 3] &= <unsigned char>~(1 << (slot & 7))
    p.count -= 1
    if slot < p.hint:
        p.hint = slot
    if p.count == 0:
        p.heap_top = p.layout.heap_start
        p.heap_dead = 0


cdef int page_rewrite(PageC* p, int slot, const unsigned char* row, const Py_ssize_t* starts) noexcept nogil:
    """Heap values that fit their old place are overwritten there; others go to the top."""
    cdef LayoutC* L = p.layout
    cdef int i
    cdef Py_ssize_t grow = 0
    cdef uint32_t off, ln, nl
    cdef unsigned char* cell
    cdef const unsigned char* src
    cdef bint present
    for i in range(L.ncols):
        if L.cols[i].in_heap:
            present = page_heap_src(&L.cols[i], row + starts[i], row + starts[i + 1], &src, &nl)
            ln = rd_u32(page_cell(p, slot, i) + 4)
            if present and (ln == NONE_LEN or nl > ln):
                grow += nl
    if grow and p.heap_top + grow > p.size:
        if p.heap_top - p.heap_dead + grow > p.size:
            return 0
        if page_compact(p) < 0:
            return -1
    for i in range(L.ncols):
        cell = page_cell(p, slot, i)
        if not L.cols[i].in_heap:
            page_write_fixed(&L.cols[i], cell, row + starts[i])
            continue
        present = page_heap_src(&L.cols[i], row + starts[i], row + starts[i + 1], &src, &nl)
        off = rd_u32(cell)
        ln = rd_u32(cell + 4)
        if present and ln != NONE_LEN and nl <= ln:
            if nl:
                memcpy(p.data + off, src, nl)
            p.heap_dead += ln - nl
            wr_u32(cell + 4, nl)
        else:
            if ln != NONE_LEN:
                p.heap_dead += ln
            page_put_heap(p, cell, src, nl, present)
    return 1


cdef int page_compact(PageC* p) noexcept nogil:
    """Rewrite the heap with only live values, in slot order."""
    cdef LayoutC* L = p.layout
    cdef Py_ssize_t live_bytes = p.heap_top - L.heap_start - p.heap_dead
    cdef unsigned char* tmp
    cdef Py_ssize_t top = 0
    cdef int s, i
    cdef uint32_t off, ln
    cdef unsigned char* cell
    if p.heap_dead == 0 or L.nheap == 0:
        return 0
    tmp = <unsigned char*>PyMem_RawMalloc(live_bytes if live_bytes > 0 else 1)
    if tmp == NULL:
        return -1
    for s in range(p.high):
        if not page_live(p, s):
            continue
        for i in range(L.ncols):
            if not L.cols[i].in_heap:
                continue
            cell = page_cell(p, s, i)
            off = rd_u32(cell)
            ln = rd_u32(cell + 4)
            if ln == NONE_LEN:
                continue
            if top + ln > live_bytes:        # heap accounting broken: never write past tmp
                PyMem_RawFree(tmp)
                return -2
            memcpy(tmp + top, p.data + off, ln)
            wr_u32(cell, <uint32_t>(L.heap_start + top))
            top += ln
    memcpy(p.data + L.heap_start, tmp, top)
    p.heap_top = L.heap_start + top
    p.heap_dead = 0
    p.compactions += 1
    PyMem_RawFree(tmp)
    return 0

# ---------------------------------------------------------------- reading as bytes

cdef int page_read_rc(const PageC* p, int slot, CBuf* out) noexcept nogil:
    cdef LayoutC* L = p.layout
    cdef const ColSpec* c
    cdef int i, code
    cdef unsigned char* cell
    cdef uint32_t off, ln
    for i in range(L.ncols):
        c = &L.cols[i]
        cell = page_cell(p, slot, i)
        if not c.in_heap:
            if c.code == T_OPTION:
                if cell[0] == 0:
                    if cbuf_u8(out, 0) < 0:
                        return -1
                elif cbuf_put(out, cell, c.page_width) < 0:
                    return -1
            elif cbuf_put(out, cell, c.page_width) < 0:
                return -1
            continue
        off = rd_u32(cell)
        ln = rd_u32(cell + 4)
        code = c.code
        if code == T_OPTION:
            if ln == NONE_LEN:
                if cbuf_u8(out, 0) < 0:
                    return -1
                continue
            if cbuf_u8(out, 1) < 0:
                return -1
            code = c.inner
        if code != T_ARRAY and cbuf_u32(out, ln) < 0:
            return -1
        if cbuf_put(out, p.data + off, ln) < 0:
            return -1
    return 0


cdef Py_ssize_t page_rc_len(const PageC* p, int slot) noexcept nogil:
    cdef LayoutC* L = p.layout
    cdef const ColSpec* c
    cdef int i, code
    cdef uint32_t ln
    cdef Py_ssize_t n = 0
    for i in range(L.ncols):
        c = &L.cols[i]
        if not c.in_heap:
            if c.code == T_OPTION and page_cell(p, slot, i)[0] == 0:
                n += 1
            else:
                n += c.page_width
            continue
        ln = rd_u32(page_cell(p, slot, i) + 4)
        code = c.code
        if code == T_OPTION:
            n += 1
            if ln == NONE_LEN:
                continue
            code = c.inner
        n += ln + (4 if code != T_ARRAY else 0)
    return n


cdef int page_key_col(const PageC* p, int slot, int col, CBuf* out) noexcept nogil:
    cdef const ColSpec* c = &p.layout.cols[col]
    cdef unsigned char* cell = page_cell(p, slot, col)
    cdef uint32_t off, ln
    cdef int code = c.code
    if not c.in_heap:
        if code == T_OPTION:
            if cell[0] == 0:
                return cbuf_u8(out, 0)
            if cbuf_u8(out, 1) < 0:
                return -1
            return key_scalar(c.inner, cell + 1, out)
        return key_scalar(code, cell, out)
    off = rd_u32(cell)
    ln = rd_u32(cell + 4)
    if code == T_OPTION:
        if ln == NONE_LEN:
            return cbuf_u8(out, 0)
        if cbuf_u8(out, 1) < 0:
            return -1
        code = c.inner
    if code == T_ARRAY:
        return key_array(c.inner, p.data + off, out)
    return key_bytes(p.data + off, ln, out)

# ---------------------------------------------------------------- reading as Python values

cdef object _read_fixed(const unsigned char* p, int code):
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


cdef object _read_heap(int code, int inner, const unsigned char* p, uint32_t ln):
    cdef uint32_t n
    cdef uint32_t _i
    cdef int w
    if code == T_STRING:
        return PyUnicode_DecodeUTF8(<const char*>p, ln, NULL)
    if code == T_BYTES:
        return PyBytes_FromStringAndSize(<const char*>p, ln)
    # an array: its row codec (count, elements)
    n = rd_u32(p)
    p += 4
    out = []
    w = rb_width(inner)
    for _i in range(n):
        if w:
            out.append(_read_fixed(p, inner))
            p += w
        else:
            ln = rd_u32(p)
            out.append(_read_heap(inner, 0, p + 4, ln))
            p += 4 + ln
    return out


cdef object page_read_col(const PageC* p, int slot, int col):
    cdef const ColSpec* c = &p.layout.cols[col]
    cdef const unsigned char* cell = page_cell(p, slot, col)
    cdef uint32_t off, ln
    cdef int code = c.code
    if not c.in_heap:
        if code == T_OPTION:
            if cell[0] == 0:
                return None
            return _read_fixed(cell + 1, c.inner)
        return _read_fixed(cell, code)
    off = rd_u32(cell)
    ln = rd_u32(cell + 4)
    if code == T_OPTION:
        if ln == NONE_LEN:
            return None
        return _read_heap(c.inner, 0, p.data + off, ln)     # option<T> has a base T
    return _read_heap(code, c.inner, p.data + off, ln)


cdef tuple page_read(const PageC* p, int slot):
    cdef int i
    cdef int n = p.layout.ncols
    cdef tuple out = PyTuple_New(n)
    for i in range(n):
        v = page_read_col(p, slot, i)
        Py_INCREF(v)
        PyTuple_SET_ITEM(out, i, v)
    return out
