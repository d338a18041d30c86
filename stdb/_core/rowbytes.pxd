# cython: language_level=3
"""Rows as bytes, in C and without the GIL: checks, key encoding and messages over the row codec.

The contract of the native lane (docs/architecture.md, "The native call path"): every function
here takes and gives bytes, touches no Python object, and reports a problem as an ``Err`` (an
error code and a message) instead of an exception.
"""

from libc.stdint cimport uint8_t, uint32_t, int64_t, uint64_t
from libc.string cimport memcpy
from cpython.mem cimport PyMem_RawRealloc, PyMem_RawFree

# ---------------------------------------------------------------- errors

# Error codes of the native lane.  The module ABI's codes (docs/abi.md) where one applies; the
# Python wrappers turn them into the errors of stdb.errors (see rowbytes.raise_err).
cdef enum:
    E_OK = 0
    E_NO_SUCH_TABLE = -1
    E_NO_SUCH_INDEX = -2
    E_BAD_ROW = -3            # DataError
    E_UNIQUE = -4             # ConstraintError
    E_NO_SUCH_ITER = -5
    E_BUFFER_TOO_SMALL = -6
    E_ROW_TOO_LARGE = -7
    E_WRONG_INDEX_KIND = -8
    E_BAD_ARGUMENT = -9
    E_NO_TRANSACTION = -10
    E_TOO_MANY_ITERS = -11
    E_MISSING = -20           # ConstraintError: the row to delete or update is not there
    E_FULL = -21              # DataError: a table full, an auto-increment sequence exhausted
    E_NOMEM = -100            # MemoryError
    E_INTERNAL = -101         # InternalError: a broken invariant of the engine

cdef enum:
    ERR_MSG = 1024

ctypedef struct Err:
    int code
    char msg[ERR_MSG]         # NUL-terminated UTF-8

cdef int err_set(Err* e, int code, const char* msg) noexcept nogil
cdef int err_nomem(Err* e) noexcept nogil
cdef int err_prefix(Err* e, const char* a, const char* b, const char* c) noexcept nogil

# ---------------------------------------------------------------- growable C buffers

# A byte buffer for the native lane (PyMem_Raw*: no GIL needed).  Zero-initialise it; free
# with cbuf_free.  Every function returns 0, or -1 when memory runs out (the buffer unchanged).
ctypedef struct CBuf:
    unsigned char* data
    Py_ssize_t len
    Py_ssize_t cap

cdef int cbuf_grow(CBuf* b, Py_ssize_t need) noexcept nogil


cdef inline int cbuf_reserve(CBuf* b, Py_ssize_t extra) noexcept nogil:
    if b.len + extra <= b.cap:
        return 0
    return cbuf_grow(b, b.len + extra)


cdef inline int cbuf_put(CBuf* b, const void* src, Py_ssize_t n) noexcept nogil:
    if b.len + n > b.cap and cbuf_grow(b, b.len + n) < 0:
        return -1
    if n:
        memcpy(b.data + b.len, src, n)
    b.len += n
    return 0


cdef inline int cbuf_u8(CBuf* b, uint8_t v) noexcept nogil:
    if b.len + 1 > b.cap and cbuf_grow(b, b.len + 1) < 0:
        return -1
    b.data[b.len] = v
    b.len += 1
    return 0


cdef inline int cbuf_u32(CBuf* b, uint32_t v) noexcept nogil:
    return cbuf_put(b, &v, 4)


cdef inline void cbuf_free(CBuf* b) noexcept nogil:
    if b.data != NULL:
        PyMem_RawFree(b.data)
    b.data = NULL
    b.len = 0
    b.cap = 0


cdef inline uint32_t rd_u32(const unsigned char* p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline void wr_u32(unsigned char* p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)


# The unsigned little-endian integer of ``w`` bytes (1, 2, 4 or 8) at ``p``
cdef inline uint64_t rd_uint(const unsigned char* p, int w) noexcept nogil:
    cdef uint64_t v = 0
    if w == 8:
        memcpy(&v, p, 8)
    elif w == 4:
        memcpy(&v, p, 4)
    elif w == 2:
        memcpy(&v, p, 2)
    else:
        v = p[0]
    return v


# ---------------------------------------------------------------- column types

# The type of one column as the native lane needs it (codes are codec.TypeCode).
ctypedef struct ColSpec:
    int code
    int inner                 # the element type of option<T> / array<T>, else 0
    int page_width            # bytes in a page's fixed column area (8 for heap values)
    bint in_heap              # strings, bytes, arrays and options of those live in the page heap
    int kind                  # how the fast paths treat it (CK_*)
    int width                 # CK_FIXED: its width in the row codec (and in a page)
    char name[24]             # the type's name, for messages ("option<string>")

# ColSpec.kind: the shapes the fast paths of checks, keys and pages know; the rest (options,
# arrays, floats in keys) take the general path
cdef enum:
    CK_OTHER = 0
    CK_UINT = 1               # u8..u64: fixed, any bits valid, key = big-endian
    CK_SINT = 2               # i8..i64, timestamp: fixed, any bits valid, key = big-endian, sign flipped
    CK_FIXED = 3              # f32, f64, identity: fixed, any bits valid
    CK_BOOL = 4
    CK_STRING = 5
    CK_BYTES = 6

# A row's schema: its columns, with the names messages give.
ctypedef struct RowSpec:
    int ncols
    ColSpec* cols
    char* table               # NUL-terminated names (UTF-8), owned
    char** names
    Py_ssize_t fixed_len      # the encoded length of every row when no column varies, else -1

cdef RowSpec* rowspec_new(str table, names, types) except NULL
cdef void rowspec_free(RowSpec* s) noexcept

# the width of a fixed-size base type in the row codec (and in pages); 0 for string, bytes,
# option and array (codes: codec.TypeCode)
cdef inline int rb_width(int code) noexcept nogil:
    if code == 5 or code == 9 or code == 11 or code == 15:         # i64 u64 f64 timestamp
        return 8
    if code == 4 or code == 8 or code == 10:                       # i32 u32 f32
        return 4
    if code == 3 or code == 7:                                     # i16 u16
        return 2
    if code == 1 or code == 2 or code == 6:                        # bool i8 u8
        return 1
    if code == 14:                                                 # identity
        return 32
    return 0

# ---------------------------------------------------------------- checks

# Validate the value of type ``c`` at p[at:n]; its end, or -1 with ``e`` set (DataError text as
# codec.decode_value words it, without the table and column).  ``utf8``: check strings are UTF-8.
cdef Py_ssize_t rb_value_end(const ColSpec* c, const unsigned char* p, Py_ssize_t n, Py_ssize_t at,
                             bint utf8, Err* e) noexcept nogil

# rb_check_row's general path (it also names the problem of a row the fast one refuses)
cdef int rb_check_row_slow(const RowSpec* s, int ncols, const unsigned char* p, Py_ssize_t n,
                           Py_ssize_t* starts, bint utf8, Err* e) noexcept nogil

# The start of each column of a row already known to be valid (no checks of values; lengths
# are still bounded by n).  0, or -1 (E_BAD_ROW) when the framing does not fit n.
cdef int rb_walk_row(const RowSpec* s, const unsigned char* p, Py_ssize_t n, Py_ssize_t* starts,
                     Err* e) noexcept nogil

# NULL when s[0:n] is UTF-8 as Python's strict decoder accepts it, else the decoder's reason
cdef const char* utf8_problem(const unsigned char* s, Py_ssize_t n) noexcept nogil


cdef inline bint rb_ascii(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Every byte < 0x80: eight at a time, the last (partial) word read overlapping the one
    before it, so no byte loop."""
    cdef uint64_t w, acc = 0
    cdef uint32_t h
    cdef Py_ssize_t i = 0
    if n >= 8:
        while i + 8 <= n:
            memcpy(&w, s + i, 8)
            acc |= w
            i += 8
        if i < n:
            memcpy(&w, s + n - 8, 8)
            acc |= w
    elif n >= 4:
        memcpy(&h, s, 4)
        acc = h
        memcpy(&h, s + n - 4, 4)
        acc |= h
    elif n:
        acc = s[0] | s[n >> 1] | s[n - 1]
    return (acc & 0x8080808080808080ULL) == 0


# Validate a whole row of ``s`` in p[0:n] (all of it); starts[i] gets where column i's value
# begins and starts[ncols] = n.  0, or -1 with ``e`` naming the table and column (code E_BAD_ROW).
# ``ncols`` < s.ncols checks a prefix of the columns (an index key of k columns).  Inline: the
# common column shapes in the caller's code; the rest, and every refusal, in rb_check_row_slow.
cdef inline int rb_check_row(const RowSpec* s, int ncols, const unsigned char* p, Py_ssize_t n,
                             Py_ssize_t* starts, bint utf8, Err* e) noexcept nogil:
    cdef Py_ssize_t pos = 0
    cdef int i, k
    cdef uint32_t ln
    cdef const ColSpec* c
    for i in range(ncols):
        starts[i] = pos
        c = &s.cols[i]
        k = c.kind
        if k == CK_UINT or k == CK_SINT or k == CK_FIXED:
            if n - pos < c.width:
                return rb_check_row_slow(s, ncols, p, n, starts, utf8, e)
            pos += c.width
        elif k == CK_STRING or k == CK_BYTES:
            if n - pos < 4:
                return rb_check_row_slow(s, ncols, p, n, starts, utf8, e)
            ln = rd_u32(p + pos)
            pos += 4
            if <uint64_t>(n - pos) < ln:
                return rb_check_row_slow(s, ncols, p, n, starts, utf8, e)
            if k == CK_STRING and utf8 and not rb_ascii(p + pos, ln) and utf8_problem(p + pos, ln) != NULL:
                return rb_check_row_slow(s, ncols, p, n, starts, utf8, e)
            pos += ln
        elif k == CK_BOOL:
            if n - pos < 1 or p[pos] > 1:
                return rb_check_row_slow(s, ncols, p, n, starts, utf8, e)
            pos += 1
        else:
            return rb_check_row_slow(s, ncols, p, n, starts, utf8, e)
    starts[ncols] = pos
    if pos != n:
        return rb_check_row_slow(s, ncols, p, n, starts, utf8, e)
    return 0

# ---------------------------------------------------------------- the key codec

# the key form of a fixed-size base value stored as in the row codec / a page (little-endian)
cdef int key_scalar(int code, const unsigned char* p, CBuf* out) noexcept nogil
# ... of string / bytes contents
cdef int key_bytes(const unsigned char* s, Py_ssize_t n, CBuf* out) noexcept nogil
# ... of an array value in the row codec (u32 count, then the elements of type ``inner``)
cdef int key_array(int inner, const unsigned char* p, CBuf* out) noexcept nogil


cdef extern from *:
    """
    #define stdb_bswap64(x) __builtin_bswap64(x)
    """
    uint64_t stdb_bswap64(uint64_t x) nogil


cdef inline int rb_put_be(CBuf* out, uint64_t v, int w) noexcept nogil:
    """Append the low ``w`` bytes of ``v``, most significant first."""
    cdef uint64_t be
    if out.len + 8 > out.cap and cbuf_grow(out, out.len + 8) < 0:
        return -1
    be = stdb_bswap64(v << (8 * (8 - w)))
    memcpy(out.data + out.len, &be, 8)          # 8 bytes written, w of them kept
    out.len += w
    return 0


# rb_key_value for the shapes its inline part does not take (options, arrays, floats, ...)
cdef int rb_key_value_slow(const ColSpec* c, const unsigned char* p, CBuf* out) noexcept nogil


# Append the key form (docs/row-format.md, key codec) of the valid value of type ``c`` at ``p``
cdef inline int rb_key_value(const ColSpec* c, const unsigned char* p, CBuf* out) noexcept nogil:
    cdef uint64_t u64 = 0
    cdef int k = c.kind
    if k == CK_UINT or k == CK_SINT:
        u64 = rd_uint(p, c.width)
        if k == CK_SINT:
            u64 ^= <uint64_t>1 << (8 * c.width - 1)
        return rb_put_be(out, u64, c.width)
    if k == CK_STRING or k == CK_BYTES:
        return key_bytes(p + 4, rd_u32(p), out)
    return rb_key_value_slow(c, p, out)

# ---------------------------------------------------------------- messages

# Append Python's repr() of the valid value of type ``c`` at ``p`` (for messages)
cdef int rb_repr_value(const ColSpec* c, const unsigned char* p, CBuf* out) noexcept nogil
# Append repr() of a double as Python writes it (shortest round trip)
cdef int repr_double(double d, CBuf* out) noexcept nogil
# Append repr() of a str given as UTF-8 (``is_bytes`` False) or of bytes
cdef int repr_text(const unsigned char* s, Py_ssize_t n, bint is_bytes, CBuf* out) noexcept nogil

# Raise the Python error for a native-lane error (needs the GIL)
cdef int raise_err(const Err* e) except -1
