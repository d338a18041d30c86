# cython: language_level=3
"""Packed columnar pages as C structs: rows go in and out as row-codec bytes, without the GIL."""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from stdb._core.rowbytes cimport ColSpec, CBuf

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


# a free slot (not yet marked live), or -1 when the page is full
cdef int page_alloc_slot(PageC* p) noexcept nogil
# a free slot and heap_bytes of heap (compacting if that frees at least 1/16 of the heap)
cdef bint page_has_room(const PageC* p, Py_ssize_t heap_bytes) noexcept nogil
# the heap bytes a row (row codec, its column starts) needs in a page
cdef Py_ssize_t rc_heap_need(const ColSpec* cols, int ncols, const unsigned char* row,
                             const Py_ssize_t* starts) noexcept nogil
# claim the free slot and write the row there (has_room checked); 0, -1 out of memory
cdef int page_write(PageC* p, int slot, const unsigned char* row, const Py_ssize_t* starts,
                    Py_ssize_t need) noexcept nogil
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
# whether the row in ``slot`` is exactly this row (row codec, its column starts)
cdef bint page_equals_rc(const PageC* p, int slot, const unsigned char* row,
                         const Py_ssize_t* starts) noexcept nogil

# Python values (with the GIL)
cdef object page_read_col(const PageC* p, int slot, int col)
cdef tuple page_read(const PageC* p, int slot)
