# cython: language_level=3
"""Column types, value validation, the row codec and the order-preserving key codec."""

from libc.stdint cimport uint8_t, uint32_t, int64_t, uint64_t

cdef enum TypeCode:
    T_BOOL = 1
    T_I8 = 2
    T_I16 = 3
    T_I32 = 4
    T_I64 = 5
    T_U8 = 6
    T_U16 = 7
    T_U32 = 8
    T_U64 = 9
    T_F32 = 10
    T_F64 = 11
    T_STRING = 12
    T_BYTES = 13
    T_IDENTITY = 14
    T_TIMESTAMP = 15
    T_OPTION = 16
    T_ARRAY = 17

# A growable C byte buffer used by the encoders.
cdef struct Buf:
    unsigned char* data
    Py_ssize_t len
    Py_ssize_t cap

cdef int buf_init(Buf* b, Py_ssize_t cap) except -1
cdef void buf_free(Buf* b) noexcept
cdef int buf_reserve(Buf* b, Py_ssize_t extra) except -1
cdef int buf_put(Buf* b, const void* src, Py_ssize_t n) except -1

cdef class ColumnType:
    cdef readonly int code
    cdef readonly str name
    cdef readonly ColumnType inner
    # bytes a value takes in a page's fixed column area; 8 (offset + length) for heap values
    cdef readonly int page_width
    cdef readonly bint in_heap
    cdef readonly bint is_integer

from libc.string cimport memcpy


cdef inline double f64_of(float f) noexcept nogil:
    """Widen an f32 to a double keeping a NaN's sign and payload bit for bit (a C cast
    quiets a signalling NaN, so decode->encode would not give the same bytes back)."""
    cdef uint32_t b
    cdef uint64_t w
    cdef double d
    if f == f:
        return <double>f
    memcpy(&b, &f, 4)
    w = ((<uint64_t>(b >> 31)) << 63) | (<uint64_t>0x7FF << 52) | ((<uint64_t>(b & 0x7FFFFF)) << 29)
    memcpy(&d, &w, 8)
    return d


cdef inline Py_ssize_t frame_at(const unsigned char* p, Py_ssize_t pos, Py_ssize_t n,
                                uint32_t* ln) noexcept nogil:
    """Framed rows (u32 little-endian length, then the row; the log's and the snapshots'): where
    the row framed at ``pos`` of ``p[0:n]`` begins, its length in ``ln``; -1 when fewer than 4
    bytes are left for the length, -2 when the row runs past ``n``."""
    if n - pos < 4:
        return -1
    memcpy(ln, p + pos, 4)          # little-endian hosts only (as the whole engine)
    if ln[0] > n - pos - 4:
        return -2
    return pos + 4


cdef inline float f32_of(double d) noexcept nogil:
    """Narrow a double to f32; a NaN keeps its sign and the top 23 payload bits (the
    inverse of f64_of), and stays a NaN when those bits are all zero."""
    cdef uint64_t w
    cdef uint32_t b, m
    cdef float f
    if d == d:
        return <float>d
    memcpy(&w, &d, 8)
    m = <uint32_t>((w >> 29) & 0x7FFFFF)
    if m == 0:
        m = 0x400000                     # quiet NaN: a zero payload would read as infinity
    b = (<uint32_t>(w >> 63) << 31) | (<uint32_t>0xFF << 23) | m
    memcpy(&f, &b, 4)
    return f


cdef object check_value(ColumnType t, object v)
cpdef tuple int_range(int code)
cdef int encode_value(ColumnType t, object v, Buf* out) except -1
cdef object decode_value(ColumnType t, const unsigned char* p, Py_ssize_t n, Py_ssize_t* pos)
cdef int encode_key_value(ColumnType t, object v, Buf* out) except -1
cdef int key_escaped(const unsigned char* s, Py_ssize_t n, Buf* out) except -1
cpdef bytes encode_key(tuple types, tuple values)
cdef int encode_key_into(tuple types, tuple values, Buf* out) except -1
cpdef bytes prefix_successor(bytes key)

cdef class RowCodec:
    cdef readonly tuple types
    cdef readonly tuple names
    cdef readonly str table
    cdef Py_ssize_t ncols
    cpdef tuple check_row(self, object row)
    cpdef bytes encode(self, tuple row)
    cpdef tuple decode(self, object data)
    cdef tuple _decode(self, const unsigned char* p, Py_ssize_t n)
