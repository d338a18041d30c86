# cython: language_level=3
"""Rows as bytes, in C and without the GIL (the native lane's row codec).

``codec.pyx`` checks, encodes and decodes rows as Python values; this module does what the
engine needs on the encoded bytes themselves, with no Python object: check a row of the row
codec (docs/row-format.md) exactly as ``RowCodec.decode`` would accept it, find where each
column starts, encode index keys (the key codec) straight from the bytes, and write the
messages a refused row gets.  Its Python reference is ``codec.RowCodec``: tests check that both
accept and refuse the same bytes with the same words, and that keys equal ``encode_key``.
"""

cimport cython
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset, strlen, strncpy
from libc.stdio cimport snprintf
from libc.stdlib cimport strtod
from cpython.mem cimport PyMem_RawMalloc, PyMem_RawRealloc, PyMem_RawFree
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

from stdb._core.codec cimport (
    ColumnType, f64_of,
    T_BOOL, T_I8, T_I16, T_I32, T_I64, T_U8, T_U16, T_U32, T_U64, T_F32, T_F64,
    T_STRING, T_BYTES, T_IDENTITY, T_TIMESTAMP, T_OPTION, T_ARRAY,
)
from stdb._core.codec import parse_type

from stdb.errors import ConstraintError, DataError, InternalError, StdbError

cdef extern from "<math.h>" nogil:
    bint isnan(double x)
    bint isinf(double x)

# ---------------------------------------------------------------- errors

cdef int err_set(Err* e, int code, const char* msg) noexcept nogil:
    e.code = code
    strncpy(e.msg, msg, ERR_MSG - 1)
    e.msg[ERR_MSG - 1] = 0
    return -1


cdef int err_nomem(Err* e) noexcept nogil:
    return err_set(e, E_NOMEM, "out of memory")


cdef inline const char* _or_empty(const char* s) noexcept nogil:
    cdef const char* empty = ""
    return s if s != NULL else empty


cdef int err_prefix(Err* e, const char* a, const char* b, const char* c) noexcept nogil:
    """Put ``a`` ``b`` ``c`` (any may be NULL) before the message."""
    cdef char tmp[ERR_MSG]
    memcpy(tmp, e.msg, ERR_MSG)
    snprintf(e.msg, ERR_MSG, "%s%s%s%s", _or_empty(a), _or_empty(b), _or_empty(c), tmp)
    return -1


cdef int raise_err(const Err* e) except -1:
    msg = (<bytes>e.msg).decode("utf-8", "replace")
    if e.code == E_UNIQUE or e.code == E_MISSING:
        raise ConstraintError(msg)
    if e.code == E_BAD_ROW or e.code == E_FULL or e.code == E_ROW_TOO_LARGE:
        raise DataError(msg)
    if e.code == E_NOMEM:
        raise MemoryError(msg)
    if e.code == E_INTERNAL:
        raise InternalError(msg)
    raise StdbError(msg)

# ---------------------------------------------------------------- buffers

cdef int cbuf_grow(CBuf* b, Py_ssize_t need) noexcept nogil:
    cdef Py_ssize_t cap = b.cap if b.cap >= 64 else 64
    cdef unsigned char* nd
    while cap < need:
        cap *= 2
    nd = <unsigned char*>PyMem_RawRealloc(b.data, cap)
    if nd == NULL:
        return -1
    b.data = nd
    b.cap = cap
    return 0

# ---------------------------------------------------------------- column types

cdef const char* _base_name(int code) noexcept nogil:
    if code == T_BOOL:
        return "bool"
    if code == T_I8:
        return "i8"
    if code == T_I16:
        return "i16"
    if code == T_I32:
        return "i32"
    if code == T_I64:
        return "i64"
    if code == T_U8:
        return "u8"
    if code == T_U16:
        return "u16"
    if code == T_U32:
        return "u32"
    if code == T_U64:
        return "u64"
    if code == T_F32:
        return "f32"
    if code == T_F64:
        return "f64"
    if code == T_STRING:
        return "string"
    if code == T_BYTES:
        return "bytes"
    if code == T_IDENTITY:
        return "identity"
    if code == T_TIMESTAMP:
        return "timestamp"
    return "?"


cdef char* _cstr(str s) except NULL:
    cdef bytes b = s.encode("utf-8", "replace")
    cdef char* out = <char*>PyMem_RawMalloc(len(b) + 1)
    if out == NULL:
        raise MemoryError()
    memcpy(out, PyBytes_AS_STRING(b), len(b))
    out[len(b)] = 0
    return out


cdef RowSpec* rowspec_new(str table, names, types) except NULL:
    """The RowSpec of columns ``names`` with ``types`` (ColumnType or type names)."""
    cdef RowSpec* s
    cdef ColumnType t
    cdef int i, n
    cdef bytes nm
    names = list(names)
    types = [parse_type(x) for x in types]
    n = len(types)
    s = <RowSpec*>PyMem_RawMalloc(sizeof(RowSpec))
    if s == NULL:
        raise MemoryError()
    memset(s, 0, sizeof(RowSpec))
    s.ncols = n
    s.cols = <ColSpec*>PyMem_RawMalloc(sizeof(ColSpec) * (n if n else 1))
    s.names = <char**>PyMem_RawMalloc(sizeof(char*) * (n if n else 1))
    if s.cols == NULL or s.names == NULL:
        rowspec_free(s)
        raise MemoryError()
    memset(s.names, 0, sizeof(char*) * (n if n else 1))
    try:
        s.table = _cstr(table)
        s.fixed_len = 0
        for i in range(n):
            t = types[i]
            s.names[i] = _cstr(str(names[i]))
            s.cols[i].code = t.code
            s.cols[i].inner = t.inner.code if t.inner is not None else 0
            s.cols[i].page_width = t.page_width
            s.cols[i].in_heap = t.in_heap
            s.cols[i].width = rb_width(t.code)
            s.cols[i].kind = (CK_UINT if t.code in (T_U8, T_U16, T_U32, T_U64) else
                              CK_SINT if t.code in (T_I8, T_I16, T_I32, T_I64, T_TIMESTAMP) else
                              CK_FIXED if t.code in (T_F32, T_F64, T_IDENTITY) else
                              CK_BOOL if t.code == T_BOOL else
                              CK_STRING if t.code == T_STRING else
                              CK_BYTES if t.code == T_BYTES else CK_OTHER)
            nm = t.name.encode()
            memset(s.cols[i].name, 0, 24)
            memcpy(s.cols[i].name, <char*>nm, min(len(nm), 23))
            if s.fixed_len >= 0 and rb_width(t.code):
                s.fixed_len += rb_width(t.code)
            else:
                s.fixed_len = -1
    except BaseException:
        rowspec_free(s)
        raise
    return s


cdef void rowspec_free(RowSpec* s) noexcept:
    cdef int i
    if s == NULL:
        return
    if s.names != NULL:
        for i in range(s.ncols):
            PyMem_RawFree(s.names[i])
        PyMem_RawFree(s.names)
    PyMem_RawFree(s.cols)
    PyMem_RawFree(s.table)
    PyMem_RawFree(s)

# ---------------------------------------------------------------- UTF-8

cdef const char* utf8_problem(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = 0, k
    cdef int need
    cdef unsigned char c, lo, hi
    cdef uint64_t w
    while i < n:
        # ASCII runs eight bytes at a time
        while i + 8 <= n:
            memcpy(&w, s + i, 8)
            if w & 0x8080808080808080ULL:
                break
            i += 8
        if i >= n:
            break
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if c < 0xC2:
            return "invalid start byte"
        elif c < 0xE0:
            need = 1
        elif c < 0xF0:
            need = 2
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F
        elif c < 0xF5:
            need = 3
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F
        else:
            return "invalid start byte"
        if i + 1 >= n:
            return "unexpected end of data"
        if s[i + 1] < lo or s[i + 1] > hi:
            return "invalid continuation byte"
        for k in range(2, need + 1):
            if i + k >= n:
                return "unexpected end of data"
            if s[i + k] < 0x80 or s[i + k] > 0xBF:
                return "invalid continuation byte"
        i += need + 1
    return NULL

# ---------------------------------------------------------------- checks

cdef inline int _short(Err* e, const char* tname, Py_ssize_t want, Py_ssize_t at,
                       Py_ssize_t n) noexcept nogil:
    cdef char m[200]
    snprintf(m, 200, "truncated %s: needs %zd bytes at byte %zd, only %zd left", tname, want, at, n - at)
    return err_set(e, E_BAD_ROW, m)


cdef Py_ssize_t _base_end(int code, const char* tname, const unsigned char* p, Py_ssize_t n,
                          Py_ssize_t at, bint utf8, Err* e) noexcept nogil:
    """A base value (not option / array) at p[at:n]: its end, or -1."""
    cdef int w = rb_width(code)
    cdef uint32_t ln
    cdef const char* why
    cdef char m[200]
    if w:
        if n - at < w:
            return _short(e, tname, w, at, n)
        if code == T_BOOL and p[at] > 1:
            snprintf(m, 200, "bad bool byte %d at byte %zd (must be 0 or 1)", <int>p[at], at)
            return err_set(e, E_BAD_ROW, m)
        return at + w
    # string / bytes
    if n - at < 4:
        return _short(e, tname, 4, at, n)
    ln = rd_u32(p + at)
    at += 4
    if <uint64_t>(n - at) < ln:
        return _short(e, tname, ln, at, n)
    if utf8 and code == T_STRING:
        why = utf8_problem(p + at, ln)
        if why != NULL:
            snprintf(m, 200, "string at byte %zd is not valid UTF-8 (%s)", at, why)
            return err_set(e, E_BAD_ROW, m)
    return at + ln


cdef Py_ssize_t rb_value_end(const ColSpec* c, const unsigned char* p, Py_ssize_t n, Py_ssize_t at,
                             bint utf8, Err* e) noexcept nogil:
    cdef uint32_t ln
    cdef uint32_t _i
    cdef char m[200]
    cdef const char* iname
    if c.code == T_OPTION:
        if n - at < 1:
            return _short(e, c.name, 1, at, n)
        if p[at] == 0:
            return at + 1
        if p[at] != 1:
            snprintf(m, 200, "bad option tag %d at byte %zd (must be 0 or 1)", <int>p[at], at)
            return err_set(e, E_BAD_ROW, m)
        return _base_end(c.inner, _base_name(c.inner), p, n, at + 1, utf8, e)
    if c.code == T_ARRAY:
        if n - at < 4:
            return _short(e, c.name, 4, at, n)
        ln = rd_u32(p + at)
        if ln > n - at - 4:          # every element takes at least one byte
            snprintf(m, 200, "array count %u at byte %zd exceeds the %zd bytes left", ln, at, n - at - 4)
            return err_set(e, E_BAD_ROW, m)
        at += 4
        iname = _base_name(c.inner)
        for _i in range(ln):
            at = _base_end(c.inner, iname, p, n, at, utf8, e)
            if at < 0:
                return -1
        return at
    return _base_end(c.code, c.name, p, n, at, utf8, e)


cdef int _col_prefix(Err* e, const RowSpec* s, int i) noexcept nogil:
    """Put "table 'T', column 'C': " before the message (rb_check_row's words)."""
    cdef char tmp[ERR_MSG]
    memcpy(tmp, e.msg, ERR_MSG)
    snprintf(e.msg, ERR_MSG, "table '%s', column '%s': %s", s.table, s.names[i], tmp)
    return -1


cdef int rb_check_row_slow(const RowSpec* s, int ncols, const unsigned char* p, Py_ssize_t n,
                           Py_ssize_t* starts, bint utf8, Err* e) noexcept nogil:
    cdef Py_ssize_t pos = 0
    cdef int i
    cdef char m[200]
    for i in range(ncols):
        starts[i] = pos
        pos = rb_value_end(&s.cols[i], p, n, pos, utf8, e)
        if pos < 0:
            return _col_prefix(e, s, i)
    starts[ncols] = pos
    if pos != n:
        snprintf(m, 200, "': %zd trailing bytes after the row (row ends at byte %zd of %zd)", n - pos, pos, n)
        err_set(e, E_BAD_ROW, m)
        return err_prefix(e, "table '", s.table, NULL)
    return 0


cdef int rb_walk_row(const RowSpec* s, const unsigned char* p, Py_ssize_t n, Py_ssize_t* starts,
                     Err* e) noexcept nogil:
    cdef Py_ssize_t pos = 0
    cdef int i, code, w
    cdef uint32_t ln
    cdef uint32_t _k
    cdef const ColSpec* c
    for i in range(s.ncols):
        starts[i] = pos
        c = &s.cols[i]
        code = c.code
        if code == T_OPTION:
            if pos >= n:
                return err_set(e, E_BAD_ROW, "row framing runs past its end")
            if p[pos] == 0:
                pos += 1
                continue
            pos += 1
            code = c.inner
        w = rb_width(code)
        if w:
            pos += w
        elif code == T_ARRAY:
            if n - pos < 4:
                return err_set(e, E_BAD_ROW, "row framing runs past its end")
            ln = rd_u32(p + pos)
            pos += 4
            w = rb_width(c.inner)
            if w:
                pos += <Py_ssize_t>ln * w
            else:
                for _k in range(ln):
                    if n - pos < 4:
                        return err_set(e, E_BAD_ROW, "row framing runs past its end")
                    pos += 4 + <Py_ssize_t>rd_u32(p + pos)
        else:
            if n - pos < 4:
                return err_set(e, E_BAD_ROW, "row framing runs past its end")
            pos += 4 + <Py_ssize_t>rd_u32(p + pos)
        if pos > n:
            return err_set(e, E_BAD_ROW, "row framing runs past its end")
    starts[s.ncols] = pos
    if pos != n:
        return err_set(e, E_BAD_ROW, "row framing does not end at the row's end")
    return 0

# ---------------------------------------------------------------- the key codec

cdef int key_scalar(int code, const unsigned char* p, CBuf* out) noexcept nogil:
    cdef uint64_t u64 = 0
    cdef uint32_t u32
    cdef double d
    cdef float f
    cdef int w
    if code == T_BOOL:
        return cbuf_u8(out, 1 if p[0] else 0)
    if code == T_I64 or code == T_TIMESTAMP or code == T_I32 or code == T_I16 or code == T_I8:
        w = rb_width(code)
        memcpy(&u64, p, w)           # the low w bytes on a little-endian machine
        return rb_put_be(out, u64 ^ (<uint64_t>1 << (8 * w - 1)), w)
    if code == T_U64 or code == T_U32 or code == T_U16 or code == T_U8:
        w = rb_width(code)
        memcpy(&u64, p, w)
        return rb_put_be(out, u64, w)
    if code == T_F64:
        memcpy(&d, p, 8)
        if d == 0.0:
            d = 0.0                  # -0.0 and 0.0 are one key
        if isnan(d):
            return rb_put_be(out, 0xFFF8000000000000ULL, 8)
        memcpy(&u64, &d, 8)
        u64 = ~u64 if (u64 >> 63) else (u64 | (<uint64_t>1 << 63))
        return rb_put_be(out, u64, 8)
    if code == T_F32:
        memcpy(&f, p, 4)
        if f == 0.0:
            f = 0.0
        if isnan(f):
            return rb_put_be(out, 0xFFC00000, 4)
        memcpy(&u32, &f, 4)
        u32 = ~u32 if (u32 >> 31) else (u32 | (<uint32_t>1 << 31))
        return rb_put_be(out, u32, 4)
    if code == T_IDENTITY:
        return cbuf_put(out, p, 32)
    return -1


cdef int key_bytes(const unsigned char* s, Py_ssize_t n, CBuf* out) noexcept nogil:
    """0x00 escaped as 00 FF, ended by 00 00."""
    cdef Py_ssize_t i
    cdef unsigned char* d
    if cbuf_reserve(out, 2 * n + 2) < 0:
        return -1
    d = out.data + out.len
    for i in range(n):
        d[0] = s[i]
        d += 1
        if s[i] == 0:
            d[0] = 0xFF
            d += 1
    d[0] = 0
    d[1] = 0
    out.len = (d + 2) - out.data
    return 0


cdef inline const unsigned char* _key_base(int code, const unsigned char* p, CBuf* out) noexcept nogil:
    """The key of a base value at ``p`` (row codec); the position after it, NULL on no memory."""
    cdef int w = rb_width(code)
    cdef uint32_t ln
    if w:
        if key_scalar(code, p, out) < 0:
            return NULL
        return p + w
    ln = rd_u32(p)
    if key_bytes(p + 4, ln, out) < 0:
        return NULL
    return p + 4 + ln


cdef int key_array(int inner, const unsigned char* p, CBuf* out) noexcept nogil:
    cdef uint32_t ln = rd_u32(p)
    cdef uint32_t _i
    p += 4
    for _i in range(ln):
        if cbuf_u8(out, 1) < 0:
            return -1
        p = _key_base(inner, p, out)
        if p == NULL:
            return -1
    return cbuf_u8(out, 0)


cdef int rb_key_value_slow(const ColSpec* c, const unsigned char* p, CBuf* out) noexcept nogil:
    if c.code == T_OPTION:
        if p[0] == 0:
            return cbuf_u8(out, 0)
        if cbuf_u8(out, 1) < 0:
            return -1
        return 0 if _key_base(c.inner, p + 1, out) != NULL else -1
    if c.code == T_ARRAY:
        return key_array(c.inner, p, out)
    return 0 if _key_base(c.code, p, out) != NULL else -1

# ---------------------------------------------------------------- messages

cdef int _puts(CBuf* out, const char* s) noexcept nogil:
    return cbuf_put(out, s, strlen(s))


cdef bint _digits_read_back(const char* digits, int nd, int exp, bint neg, double d) noexcept nogil:
    """Whether ``[-]d.ddd`` e ``exp`` reads back as ``d``."""
    cdef char tmp[48]
    cdef int k = 0, i
    if neg:
        tmp[k] = 45
        k += 1
    tmp[k] = digits[0]
    k += 1
    tmp[k] = 46
    k += 1
    for i in range(1, nd):
        tmp[k] = digits[i]
        k += 1
    snprintf(tmp + k, 48 - k, "e%d", exp)
    return strtod(tmp, NULL) == d


cdef bint _step_last(char* digits, int nd, int* exp, int delta) noexcept nogil:
    """Add ``delta`` (+1 or -1) to the last of ``nd`` decimal digits, with carry; False when
    that leaves the significand's range (all nines up, or a leading zero down)."""
    cdef int i = nd - 1
    while i >= 0:
        digits[i] += delta
        if 48 <= digits[i] <= 57:
            return digits[0] != 48
        digits[i] = 48 if delta > 0 else 57
        i -= 1
    return False


cdef int repr_double(double d, CBuf* out) noexcept nogil:
    """Python's repr of a float: the shortest digits that read back as ``d``, fixed notation
    for exponents -4..15, scientific otherwise, ".0" on integral values."""
    cdef char tmp[48]
    cdef char digits[24]
    cdef char alt[24]
    cdef char res[64]
    cdef int prec, nd = 0, exp = 0, i, k, delta, aexp
    cdef int _i
    cdef bint neg, found = False
    if isnan(d):
        return _puts(out, "nan")
    if isinf(d):
        return _puts(out, "inf" if d > 0 else "-inf")
    neg = tmp[0] == 45
    for prec in range(1, 18):
        snprintf(tmp, 48, "%.*e", prec - 1, d)
        # tmp: [-]D[.DDD]e[+-]XX
        neg = tmp[0] == 45
        i = 1 if neg else 0
        nd = 0
        while tmp[i] != 101:         # 'e'
            if tmp[i] != 46:         # '.'
                digits[nd] = tmp[i]
                nd += 1
            i += 1
        exp = <int>strtod(tmp + i + 1, NULL)
        if _digits_read_back(digits, nd, exp, neg, d):
            break
        # a tie that printf rounded to even may read back as a neighbour: try the digits one
        # unit above and below in the last place
        for k in range(2):
            delta = 1 - 2 * k
            memcpy(alt, digits, nd)
            aexp = exp
            if _step_last(alt, nd, &aexp, delta) and _digits_read_back(alt, nd, aexp, neg, d):
                memcpy(digits, alt, nd)
                found = True
                break
        if found:
            break
    while nd > 1 and digits[nd - 1] == 48:    # trailing zeros of the significand
        nd -= 1
    k = 0
    if neg:
        res[k] = 45
        k += 1
    if -4 <= exp < 16:
        if exp < 0:
            res[k] = 48
            res[k + 1] = 46
            k += 2
            for _i in range(-exp - 1):
                res[k] = 48
                k += 1
            for i in range(nd):
                res[k] = digits[i]
                k += 1
        else:
            for i in range(exp + 1):
                res[k] = digits[i] if i < nd else 48
                k += 1
            res[k] = 46
            k += 1
            if nd > exp + 1:
                for i in range(exp + 1, nd):
                    res[k] = digits[i]
                    k += 1
            else:
                res[k] = 48
                k += 1
        res[k] = 0
    else:
        res[k] = digits[0]
        k += 1
        if nd > 1:
            res[k] = 46
            k += 1
            for i in range(1, nd):
                res[k] = digits[i]
                k += 1
        snprintf(res + k, 64 - k, "e%c%02d", <int>(45 if exp < 0 else 43), <int>(exp if exp >= 0 else -exp))
    return _puts(out, res)


cdef int repr_text(const unsigned char* s, Py_ssize_t n, bint is_bytes, CBuf* out) noexcept nogil:
    """repr() of a str (given as UTF-8) or of bytes."""
    cdef Py_ssize_t i
    cdef bint sq = False, dq = False
    cdef unsigned char c, q
    cdef char esc[8]
    for i in range(n):
        if s[i] == 39:
            sq = True
        elif s[i] == 34:
            dq = True
    q = 34 if (sq and not dq) else 39
    if is_bytes and cbuf_u8(out, 98) < 0:      # b
        return -1
    if cbuf_u8(out, q) < 0:
        return -1
    for i in range(n):
        c = s[i]
        if c == q or c == 92:
            esc[0] = 92
            esc[1] = c
            esc[2] = 0
        elif c == 9:
            memcpy(esc, b"\\t", 3)
        elif c == 10:
            memcpy(esc, b"\\n", 3)
        elif c == 13:
            memcpy(esc, b"\\r", 3)
        elif c < 32 or c == 127 or (is_bytes and c >= 128):
            snprintf(esc, 8, "\\x%02x", c)
        else:
            esc[0] = c
            esc[1] = 0
        if _puts(out, esc) < 0:
            return -1
    return cbuf_u8(out, q)


cdef const unsigned char* _repr_base(int code, const unsigned char* p, CBuf* out) noexcept nogil:
    cdef char tmp[48]
    cdef int64_t i64 = 0
    cdef uint64_t u64 = 0
    cdef int8_t i8
    cdef int16_t i16
    cdef int32_t i32
    cdef float f
    cdef double d
    cdef uint32_t ln
    cdef int w = rb_width(code)
    if code == T_BOOL:
        return p + 1 if _puts(out, "True" if p[0] else "False") == 0 else NULL
    if code == T_I8 or code == T_I16 or code == T_I32 or code == T_I64 or code == T_TIMESTAMP:
        if w == 1:
            memcpy(&i8, p, 1)
            i64 = i8
        elif w == 2:
            memcpy(&i16, p, 2)
            i64 = i16
        elif w == 4:
            memcpy(&i32, p, 4)
            i64 = i32
        else:
            memcpy(&i64, p, 8)
        snprintf(tmp, 48, "%lld", <long long>i64)
        return p + w if _puts(out, tmp) == 0 else NULL
    if code == T_U8 or code == T_U16 or code == T_U32 or code == T_U64:
        memcpy(&u64, p, w)
        snprintf(tmp, 48, "%llu", <unsigned long long>u64)
        return p + w if _puts(out, tmp) == 0 else NULL
    if code == T_F32:
        memcpy(&f, p, 4)
        return p + 4 if repr_double(f64_of(f), out) == 0 else NULL
    if code == T_F64:
        memcpy(&d, p, 8)
        return p + 8 if repr_double(d, out) == 0 else NULL
    if code == T_IDENTITY:
        return p + 32 if repr_text(p, 32, True, out) == 0 else NULL
    ln = rd_u32(p)
    if repr_text(p + 4, ln, code == T_BYTES, out) < 0:
        return NULL
    return p + 4 + ln


cdef int rb_repr_value(const ColSpec* c, const unsigned char* p, CBuf* out) noexcept nogil:
    cdef uint32_t ln, i
    if c.code == T_OPTION:
        if p[0] == 0:
            return _puts(out, "None")
        return 0 if _repr_base(c.inner, p + 1, out) != NULL else -1
    if c.code == T_ARRAY:
        ln = rd_u32(p)
        p += 4
        if cbuf_u8(out, 91) < 0:
            return -1
        for i in range(ln):
            if i and _puts(out, ", ") < 0:
                return -1
            p = _repr_base(c.inner, p, out)
            if p == NULL:
                return -1
        return cbuf_u8(out, 93)
    return 0 if _repr_base(c.code, p, out) != NULL else -1


# ---------------------------------------------------------------- Python access (tests)

@cython.final
cdef class RowChecker:
    """The native checks of one row schema, from Python (tests, fuzzing): ``check(data)``
    returns each column's start, or raises DataError with the native lane's message;
    ``key(data, k)`` is the key codec form of the first ``k`` columns of a valid row."""

    cdef RowSpec* spec
    cdef Py_ssize_t* starts

    def __cinit__(self, str table, names, types):
        self.spec = rowspec_new(table, names, types)
        self.starts = <Py_ssize_t*>PyMem_RawMalloc(sizeof(Py_ssize_t) * (self.spec.ncols + 1))
        if self.starts == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_RawFree(self.starts)
        rowspec_free(self.spec)

    @property
    def fixed_len(self):
        return self.spec.fixed_len

    def check(self, data, int ncols=-1, bint utf8=True):
        cdef const unsigned char[:] v = data
        cdef Err e
        cdef const unsigned char* p = <const unsigned char*>b"" if v.shape[0] == 0 else &v[0]
        if ncols < 0:
            ncols = self.spec.ncols
        if ncols > self.spec.ncols:
            raise ValueError("more columns than the schema has")
        if rb_check_row(self.spec, ncols, p, v.shape[0], self.starts, utf8, &e) < 0:
            raise_err(&e)
        return [self.starts[i] for i in range(ncols + 1)]

    def walk(self, data):
        cdef const unsigned char[:] v = data
        cdef Err e
        cdef const unsigned char* p = <const unsigned char*>b"" if v.shape[0] == 0 else &v[0]
        if rb_walk_row(self.spec, p, v.shape[0], self.starts, &e) < 0:
            raise_err(&e)
        return [self.starts[i] for i in range(self.spec.ncols + 1)]

    def key(self, data, int k=-1):
        cdef CBuf out
        cdef int i
        starts = self.check(data)
        cdef const unsigned char[:] v = data
        if k < 0:
            k = self.spec.ncols
        memset(&out, 0, sizeof(CBuf))
        try:
            for i in range(k):
                if rb_key_value(&self.spec.cols[i], &v[0] + <Py_ssize_t>starts[i], &out) < 0:
                    raise MemoryError()
            return PyBytes_FromStringAndSize(<char*>out.data, out.len) if out.len else b""
        finally:
            cbuf_free(&out)

    def repr_values(self, data):
        """", ".join(repr(v) for v in the row), as the native lane writes it."""
        cdef CBuf out
        cdef int i
        starts = self.check(data)
        cdef const unsigned char[:] v = data
        memset(&out, 0, sizeof(CBuf))
        try:
            for i in range(self.spec.ncols):
                if i and _puts(&out, ", ") < 0:
                    raise MemoryError()
                if rb_repr_value(&self.spec.cols[i], &v[0] + <Py_ssize_t>starts[i], &out) < 0:
                    raise MemoryError()
            return (<bytes>PyBytes_FromStringAndSize(<char*>out.data, out.len)).decode("utf-8")
        finally:
            cbuf_free(&out)


def utf8_reason(data):
    """utf8_problem from Python: None for valid UTF-8, else the reason Python's decoder gives."""
    cdef const unsigned char[:] v = data
    cdef const char* why
    if v.shape[0] == 0:
        return None
    why = utf8_problem(&v[0], v.shape[0])
    return None if why == NULL else (<bytes>why).decode()


def float_repr(double d):
    """repr_double from Python (tests)."""
    cdef CBuf out
    memset(&out, 0, sizeof(CBuf))
    try:
        if repr_double(d, &out) < 0:
            raise MemoryError()
        return (<bytes>PyBytes_FromStringAndSize(<char*>out.data, out.len)).decode()
    finally:
        cbuf_free(&out)
