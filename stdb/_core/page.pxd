# cython: language_level=3
"""Packed columnar pages: fixed-width columns as packed arrays, a per-page heap."""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from stdb._core.codec cimport ColumnType, Buf

cdef enum:
    PAGE_BYTES = 65536
    MAX_SLOTS = 65535

cdef class Layout:
    cdef readonly int ncols
    cdef readonly int capacity       # row slots per page
    cdef readonly int bitmap_bytes
    cdef readonly Py_ssize_t heap_start
    cdef readonly int fixed_row_bytes
    cdef readonly tuple types
    cdef int* code
    cdef int* width
    cdef int* inner_code
    cdef Py_ssize_t* offset          # start of each column's packed array
    cdef bint* in_heap
    cdef readonly int nheap          # number of heap columns
    cdef readonly int heap_estimate  # heap bytes per heap column per row this layout budgets

cdef class Page:
    cdef unsigned char* data
    cdef readonly Py_ssize_t size
    cdef Layout layout
    cdef readonly int count          # live rows
    cdef readonly int high           # slots [0, high) have been used at some point
    cdef int hint                    # no free slot below this
    cdef readonly Py_ssize_t heap_top
    cdef readonly Py_ssize_t heap_dead
    cdef readonly Py_ssize_t compactions   # heap rewrites so far (Table.stats)

    cdef inline bint live(self, int slot) noexcept:
        return (self.data[slot >> 3] >> (slot & 7)) & 1

    cdef int alloc_slot(self) noexcept
    cdef bint has_room(self, Py_ssize_t heap_bytes) noexcept
    cdef int _put_heap(self, int slot, int col, bytes hb) except -1
    cdef int write(self, int slot, tuple row, list heap) except -1
    cdef int claim(self, int slot) except -1
    cdef tuple read(self, int slot)
    cdef object read_col(self, int slot, int col)
    cdef int key_col(self, int slot, int col, Buf* out) except -1
    cdef void release(self, int slot) noexcept
    cdef bint rewrite(self, int slot, tuple row, list heap) except -1
    cdef int compact(self) except -1
    cdef Page copy(self)
    cdef Py_ssize_t heap_used(self, int slot) noexcept

cdef list heap_values(Layout layout, tuple row, Py_ssize_t* total)
