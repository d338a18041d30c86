# cython: language_level=3
"""A table: rows in packed columnar pages, its indexes and auto-increment sequences."""

from libc.stdint cimport uint64_t, int64_t
from stdb._core.codec cimport RowCodec, Buf
from stdb._core.page cimport Layout, Page
from stdb._core.index cimport KeySource, HashIndex, SortedIndex

cdef class Table(KeySource):
    cdef readonly object schema
    cdef readonly str name
    cdef readonly RowCodec codec
    cdef readonly Layout layout
    cdef list pages
    cdef dict layouts           # heap estimate -> Layout, shared by pages
    cdef Py_ssize_t rows_seen   # rows inserted so far, and their heap bytes: for new pages' layouts
    cdef Py_ssize_t heap_seen
    cdef list room              # stack of page numbers that may have a free slot
    cdef bytearray in_room
    cdef readonly Py_ssize_t nrows
    cdef list indexes           # HashIndex or SortedIndex, in schema.all_indexes() order
    cdef list index_defs
    cdef list index_cols        # tuple of column positions per index
    cdef list index_types       # tuple of ColumnType per index
    cdef dict index_no          # index name -> position
    cdef list index_unique      # bool per index
    cdef list seq_cols          # positions of auto_inc columns
    cdef list seq_next          # next value of each sequence
    cdef list seq_max
    cdef Buf keybuf
    cdef int64_t _find_row(self, tuple row) except -2
    cdef bint _same_row(self, tuple a, tuple b) except -1
    cdef tuple _delete_at(self, Page page, uint64_t rowid, tuple row)

    cdef Page _page(self, uint64_t rowid)
    cdef int _row_key_into(self, uint64_t rowid, int ino) except -1
    cdef Layout _new_page_layout(self)
    cdef tuple _keys(self, tuple row)
    cdef int _check_unique(self, tuple keys, tuple old_keys, tuple row) except -1
    cdef int _index_add(self, tuple keys, uint64_t rowid) except -1
    cdef int _index_remove(self, tuple keys, uint64_t rowid) except -1
    cdef uint64_t _place(self, tuple row, list heap, Py_ssize_t need) except? 0xFFFFFFFFFFFFFFFF
    cpdef tuple get(self, uint64_t rowid)
    cdef list _scan_signed(self, int col, int opn, int64_t x)
    cdef list _scan_unsigned(self, int col, int opn, uint64_t x)
    cdef list _scan_float(self, int col, int opn, double x)
    cdef list _scan_heap(self, int col, int opn, bytes x)
    cpdef uint64_t insert(self, object row) except? 0xFFFFFFFFFFFFFFFF
    cdef uint64_t _insert(self, object row, bint assign, bint check) except? 0xFFFFFFFFFFFFFFFF
    cpdef tuple delete(self, uint64_t rowid)
