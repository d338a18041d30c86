# cython: language_level=3
"""Packed columnar pages as C structs: rows go in and out as row-codec bytes, without the GIL."""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset
from stdb._core.rowbytes cimport ColSpec, CBuf, rd_u32, wr_u32
from stdb._core.codec cimport T_OPTION, T_ARRAY

cdef enum:
    PAGE_BYTES = 65536
    MAX_SLOTS = 65535

cdef extern from *:
    """
    #define STDB_NONE_LEN 0xFFFFFFFFu
    """
    # the length stored for a None heap value (a C constant: as a DEF, Cython made it a Python
    # int and boxed the other side of every comparison with it)
    const uint32_t NONE_LEN "STDB_NONE_LEN"

# Where each column lives inside a page of one table.
ctypedef struct LayoutC:
    int ncols
    int capacity              # row slots per page
    int bitmap_bytes
    int nheap                 # heap columns
    int heap_estimate         # heap bytes per heap column per row this layout budgets
    int fixed_row_bytes
    Py_ssize_t heap_start
    const ColSpec* cols       # the table's column types (not owned)
    Py_ssize_t* offset        # start of each column's packed array (owned)

# One page of rows of one table.
ctypedef struct PageC:
    unsigned char* data
    Py_ssize_t size
    LayoutC* layout           # not owned (the table's)
    int count                 # live rows
    int high                  # slots [0, high) have been used at some point
    int hint                  # no free slot below this
    Py_ssize_t heap_top
    Py_ssize_t heap_dead
    Py_ssize_t compactions    # heap rewrites so far (Table.stats)

cdef LayoutC* layout_new(const ColSpec* cols, int ncols, int heap_estimate) noexcept nogil
cdef void layout_free(LayoutC* L) noexcept nogil


cdef inline Py_ssize_t layout_heap_capacity(const LayoutC* L) noexcept nogil:
    return PAGE_BYTES - L.heap_start if PAGE_BYTES > L.heap_start else 0


cdef PageC* page_new(LayoutC* L, Py_ssize_t heap_need) noexcept nogil
cdef void page_free(PageC* p) noexcept nogil
cdef PageC* page_copy(const PageC* p) noexcept nogil


cdef inline bint page_live(const PageC* p, int slot) noexcept nogil:
    return (p.data[slot >> 3] >> (slot & 7)) & 1


cdef inline unsigned char* page_cell(const PageC* p, int slot, int col) noexcept nogil:
    return p.data + p.layout.offset[col] + <Py_ssize_t>slot * p.layout.cols[col].page_width


# overwrite a live slot in place: 1 done, 0 the heap data does not fit (nothing changed),
# -1 out of memory
cdef int page_rewrite(PageC* p, int slot, const unsigned char* row, const Py_ssize_t* starts) noexcept nogil
cdef void page_release(PageC* p, int slot) noexcept nogil
cdef int page_compact(PageC* p) noexcept nogil
cdef Py_ssize_t page_heap_used(const PageC* p, int slot) noexcept nogil
# append the row in the row codec
cdef int page_read_rc(const PageC* p, int slot, CBuf* out) noexcept nogil
# the row codec length of the row
cdef Py_ssize_t page_rc_len(const PageC* p, int slot) noexcept nogil
# append the key codec form of one column
cdef int page_key_col(const PageC* p, int slot, int col, CBuf* out) noexcept nogil


# Python values (with the GIL)
cdef object page_read_col(const PageC* p, int slot, int col)
cdef tuple page_read(const PageC* p, int slot)


# ---------------------------------------------------------------- the hot path, inline

# alloc_slot: a free slot (not yet marked live), or -1 when the page is full; has_room: a free
# slot and heap_bytes of heap (compacting if that frees at least 1/16 of the heap);
# rc_heap_need: the heap bytes a row (row codec, its column starts) needs in a page;
# page_write: claim the free slot and write the row there (has_room checked), 0 or -1 out of
# memory; page_equals_rc: whether the row in ``slot`` is exactly this row

cdef inline int page_alloc_slot(PageC* p) noexcept nogil:
    cdef int cap = p.layout.capacity
    cdef int s
    if p.count >= cap:
        return -1
    if p.hint >= p.high:
        return p.high if p.high < cap else -1
    s = p.hint
    while s < p.high:
        if (s & 7) == 0 and p.data[s >> 3] == 0xFF:
            s += 8
            continue
        if not page_live(p, s):
            p.hint = s
            return s
        s += 1
    p.hint = p.high
    return p.high if p.high < cap else -1


cdef inline bint page_has_room(const PageC* p, Py_ssize_t heap_bytes) noexcept nogil:
    """A free slot, and ``heap_bytes`` at the top of the heap, or after compacting when that
    frees at least 1/16 of the heap.  (Compacting for less rewrote the whole heap for each
    row put in place of a deleted one: replaying updates, which the log holds as a delete
    and an insert, spent most of its time there.)"""
    if p.count >= p.layout.capacity:
        return False
    if p.heap_top + heap_bytes <= p.size:
        return True
    return (p.heap_top - p.heap_dead + heap_bytes <= p.size
            and p.heap_dead * 16 >= p.size - p.layout.heap_start)


cdef inline bint page_heap_src(const ColSpec* c, const unsigned char* v, const unsigned char* end,
                               const unsigned char** src, uint32_t* ln) noexcept nogil:
    """The heap bytes of a heap column's value ``v`` (row codec, ending at ``end``): False for
    None."""
    cdef int code = c.code
    if code == T_OPTION:
        if v[0] == 0:
            return False
        v += 1
        code = c.inner
    if code == T_ARRAY:
        src[0] = v
        ln[0] = <uint32_t>(end - v)
    else:
        src[0] = v + 4
        ln[0] = rd_u32(v)
    return True


cdef inline Py_ssize_t rc_heap_need(const ColSpec* cols, int ncols, const unsigned char* row,
                                    const Py_ssize_t* starts) noexcept nogil:
    cdef int i
    cdef Py_ssize_t need = 0
    cdef const unsigned char* src
    cdef uint32_t ln
    for i in range(ncols):
        if cols[i].in_heap and page_heap_src(&cols[i], row + starts[i], row + starts[i + 1], &src, &ln):
            need += ln
    return need


cdef inline void page_put_heap(PageC* p, unsigned char* cell, const unsigned char* src, uint32_t ln,
                               bint present) noexcept nogil:
    cdef uint32_t off = 0
    if not present:
        ln = NONE_LEN
    else:
        off = <uint32_t>p.heap_top
        if ln:
            memcpy(p.data + p.heap_top, src, ln)
        p.heap_top += ln
    wr_u32(cell, off)
    wr_u32(cell + 4, ln)


cdef inline void page_copy_w(unsigned char* d, const unsigned char* s, int w) noexcept nogil:
    """memcpy for a column's width: the common ones as single moves (no call)."""
    if w == 8:
        memcpy(d, s, 8)
    elif w == 4:
        memcpy(d, s, 4)
    elif w == 1:
        d[0] = s[0]
    elif w == 2:
        memcpy(d, s, 2)
    else:
        memcpy(d, s, w)


cdef inline void page_write_fixed(const ColSpec* c, unsigned char* cell,
                                  const unsigned char* v) noexcept nogil:
    """A fixed-width value (row codec at ``v``) into its cell."""
    if c.code == T_OPTION:
        if v[0] == 0:
            memset(cell, 0, c.page_width)
        else:
            cell[0] = 1
            memcpy(cell + 1, v + 1, c.page_width - 1)
    else:
        page_copy_w(cell, v, c.page_width)


cdef inline int page_write(PageC* p, int slot, const unsigned char* row, const Py_ssize_t* starts,
                           Py_ssize_t need) noexcept nogil:
    cdef LayoutC* L = p.layout
    cdef int i
    cdef const unsigned char* src
    cdef uint32_t ln
    cdef bint present
    if p.heap_top + need > p.size:
        if page_compact(p) < 0:
            return -1
    p.data[slot >> 3] |= <unsigned char>(1 << (slot & 7))
    p.count += 1
    if slot >= p.high:
        p.high = slot + 1
    if slot == p.hint:
        p.hint = slot + 1
    for i in range(L.ncols):
        if L.cols[i].in_heap:
            present = page_heap_src(&L.cols[i], row + starts[i], row + starts[i + 1], &src, &ln)
            page_put_heap(p, page_cell(p, slot, i), src, ln, present)
        else:
            page_write_fixed(&L.cols[i], page_cell(p, slot, i), row + starts[i])
    return 0


cdef inline bint page_same(const unsigned char* a, const unsigned char* b, int w) noexcept nogil:
    """a[0:w] == b[0:w], the common widths without a call."""
    cdef uint64_t x, y
    cdef uint32_t x4, y4
    if w == 8:
        memcpy(&x, a, 8)
        memcpy(&y, b, 8)
        return x == y
    if w == 4:
        memcpy(&x4, a, 4)
        memcpy(&y4, b, 4)
        return x4 == y4
    if w == 1:
        return a[0] == b[0]
    return memcmp(a, b, w) == 0


cdef inline bint page_equals_rc(const PageC* p, int slot, const unsigned char* row,
                                const Py_ssize_t* starts) noexcept nogil:
    cdef LayoutC* L = p.layout
    cdef const ColSpec* c
    cdef const unsigned char* cell
    cdef const unsigned char* v
    cdef const unsigned char* src
    cdef uint32_t ln, sl
    cdef int i
    cdef bint present
    for i in range(L.ncols):
        c = &L.cols[i]
        cell = page_cell(p, slot, i)
        v = row + starts[i]
        if not c.in_heap:
            if c.code == T_OPTION:
                if v[0] != cell[0]:
                    return False
                if v[0] and memcmp(cell + 1, v + 1, c.page_width - 1) != 0:
                    return False
            elif not page_same(cell, v, c.page_width):
                return False
            continue
        present = page_heap_src(c, v, row + starts[i + 1], &src, &sl)
        ln = rd_u32(cell + 4)
        if not present:
            if ln != NONE_LEN:
                return False
        elif ln != sl or (sl and memcmp(p.data + rd_u32(cell), src, sl) != 0):
            return False
    return True
