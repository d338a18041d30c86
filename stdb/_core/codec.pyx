# cython: language_level=3
"""Column types, value validation, the row codec and the order-preserving key codec.

Row codec (docs/row-format.md): a row is its columns in schema order, each encoded
little-endian at its natural width; string/bytes are a u32 length then the bytes;
option is a u8 tag (0 none, 1 some) then the value; array is a u32 count then the
elements.  No header: the schema says what comes next.

Key codec: an encoding whose bytewise order equals the value order, so that btree
indexes compare keys with memcmp and range bounds on a column prefix are byte
prefixes.  Each component is prefix-free.
"""

cimport cython
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy
from libc.math cimport isnan, isinf
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8String, PyUnicode_DecodeUTF8
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF

from stdb.errors import DataError, SchemaError

cdef extern from "float.h":
    double FLT_MAX

# ---------------------------------------------------------------- buffers

cdef int buf_init(Buf* b, Py_ssize_t cap) except -1:
    if cap < 16:
        cap = 16
    b.data = <unsigned char*>PyMem_Malloc(cap)
    if b.data == NULL:
        raise MemoryError()
    b.len = 0
    b.cap = cap
    return 0

cdef void buf_free(Buf* b) noexcept:
    if b.data != NULL:
        PyMem_Free(b.data)
        b.data = NULL
    b.len = 0
    b.cap = 0

cdef int buf_reserve(Buf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t need = b.len + extra
    cdef Py_ssize_t cap = b.cap
    cdef unsigned char* nd
    if need <= cap:
        return 0
    while cap < need:
        cap = cap * 2
    nd = <unsigned char*>PyMem_Realloc(b.data, cap)
    if nd == NULL:
        raise MemoryError()
    b.data = nd
    b.cap = cap
    return 0

cdef int buf_put(Buf* b, const void* src, Py_ssize_t n) except -1:
    buf_reserve(b, n)
    memcpy(b.data + b.len, src, n)
    b.len += n
    return 0

cdef inline int buf_u8(Buf* b, uint8_t v) except -1:
    buf_reserve(b, 1)
    b.data[b.len] = v
    b.len += 1
    return 0

cdef inline int buf_u32(Buf* b, uint32_t v) except -1:
    return buf_put(b, &v, 4)

cdef inline int buf_be(Buf* b, uint64_t v, int width) except -1:
    cdef int i
    buf_reserve(b, width)
    for i in range(width):
        b.data[b.len + i] = <unsigned char>((v >> (8 * (width - 1 - i))) & 0xFF)
    b.len += width
    return 0

# ---------------------------------------------------------------- types

cdef dict _BASE_NAMES = {
    "bool": T_BOOL, "i8": T_I8, "i16": T_I16, "i32": T_I32, "i64": T_I64,
    "u8": T_U8, "u16": T_U16, "u32": T_U32, "u64": T_U64, "f32": T_F32, "f64": T_F64,
    "string": T_STRING, "bytes": T_BYTES, "identity": T_IDENTITY, "timestamp": T_TIMESTAMP,
}
cdef dict _WIDTH = {
    T_BOOL: 1, T_I8: 1, T_I16: 2, T_I32: 4, T_I64: 8, T_U8: 1, T_U16: 2, T_U32: 4,
    T_U64: 8, T_F32: 4, T_F64: 8, T_IDENTITY: 32, T_TIMESTAMP: 8,
}


cdef inline int _width(int code) noexcept:
    if code == T_I64 or code == T_U64 or code == T_F64 or code == T_TIMESTAMP:
        return 8
    if code == T_I32 or code == T_U32 or code == T_F32:
        return 4
    if code == T_I16 or code == T_U16:
        return 2
    if code == T_IDENTITY:
        return 32
    return 1


# inclusive integer ranges
cdef dict _RANGE = {
    T_I8: (-(1 << 7), (1 << 7) - 1), T_I16: (-(1 << 15), (1 << 15) - 1),
    T_I32: (-(1 << 31), (1 << 31) - 1), T_I64: (-(1 << 63), (1 << 63) - 1),
    T_U8: (0, (1 << 8) - 1), T_U16: (0, (1 << 16) - 1),
    T_U32: (0, (1 << 32) - 1), T_U64: (0, (1 << 64) - 1),
    T_TIMESTAMP: (-(1 << 63), (1 << 63) - 1),
}


@cython.final
cdef class ColumnType:
    """A column's type: a base type, or option<T> / array<T> of a base type.

    Build with :func:`parse_type` (``"u64"``, ``"option<string>"``, ``"array<i32>"``).
    """

    def __init__(self, int code, ColumnType inner=None):
        if code < T_BOOL or code > T_ARRAY:
            raise SchemaError(f"unknown column type code {code}")
        if (code == T_OPTION or code == T_ARRAY) != (inner is not None):
            raise SchemaError("option and array types need exactly one inner type")
        if inner is not None and (inner.code == T_OPTION or inner.code == T_ARRAY):
            raise SchemaError(
                f"nested type {_CODE_NAMES[code]}<{inner.name}> is not supported",
                hint="option<T> and array<T> take a base type such as i32 or string")
        self.code = code
        self.inner = inner
        if inner is None:
            self.name = _CODE_NAMES[code]
        else:
            self.name = f"{_CODE_NAMES[code]}<{inner.name}>"
        self.is_integer = T_I8 <= code <= T_U64
        if code == T_OPTION and not inner.in_heap:
            self.in_heap = False
            self.page_width = 1 + inner.page_width
        elif code in _WIDTH:
            self.in_heap = False
            self.page_width = _WIDTH[code]
        else:
            self.in_heap = True
            self.page_width = 8

    def __eq__(self, other):
        return isinstance(other, ColumnType) and (<ColumnType>other).name == self.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f"ColumnType({self.name!r})"

    def __str__(self):
        return self.name

    def __reduce__(self):
        return (parse_type, (self.name,))

    def check(self, value):
        """Return ``value`` normalised for this type, or raise DataError."""
        return check_value(self, value)


cdef dict _CODE_NAMES = {v: k for k, v in _BASE_NAMES.items()}
_CODE_NAMES[T_OPTION] = "option"
_CODE_NAMES[T_ARRAY] = "array"
cdef dict _PARSED = {}


def parse_type(spec):
    """Parse a type name: a base type, ``option<T>`` or ``array<T>``."""
    cdef ColumnType t
    if isinstance(spec, ColumnType):
        return spec
    if not isinstance(spec, str):
        raise SchemaError(f"a column type must be a type name string, got {type(spec).__name__}")
    key = spec.replace(" ", "").lower()
    t = _PARSED.get(key)
    if t is not None:
        return t
    if key in _BASE_NAMES:
        t = ColumnType(_BASE_NAMES[key])
    elif key.endswith(">") and (key.startswith("option<") or key.startswith("array<")):
        outer, _, rest = key.partition("<")
        inner = parse_type(rest[:len(rest) - 1])
        t = ColumnType(T_OPTION if outer == "option" else T_ARRAY, inner)
    else:
        raise SchemaError(
            f"unknown column type {spec!r}",
            hint="types are bool, i8..i64, u8..u64, f32, f64, string, bytes, identity, "
                 "timestamp, option<T>, array<T>")
    _PARSED[key] = t
    return t


def type_names():
    """The base type names, in type-code order."""
    return sorted(_BASE_NAMES, key=_BASE_NAMES.get)


cdef str _show(object v):
    r = repr(v)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{type(v).__name__} {r}"


cpdef tuple int_range(int code):
    """(lowest, highest) value of an integer or timestamp type code."""
    return _RANGE[code]


cdef bint _int_in_range(int code, object v) except -1:
    """Whether the int ``v`` fits ``code``'s range, without Python-level comparisons."""
    cdef int overflow = 0
    cdef long long x = PyLong_AsLongLongAndOverflow(v, &overflow)
    if overflow != 0:
        if overflow > 0 and code == T_U64:
            return v <= 0xFFFFFFFFFFFFFFFF
        return False
    if code == T_I64 or code == T_TIMESTAMP:
        return True
    if code == T_I32:
        return -2147483648 <= x <= 2147483647
    if code == T_I16:
        return -32768 <= x <= 32767
    if code == T_I8:
        return -128 <= x <= 127
    if x < 0:
        return False
    if code == T_U64:
        return True
    if code == T_U32:
        return x <= 4294967295
    if code == T_U16:
        return x <= 65535
    return x <= 255


cdef object check_value(ColumnType t, object v):
    cdef int code = t.code
    cdef double d
    if code == T_BOOL:
        if v is True or v is False:
            return v
    elif t.is_integer or code == T_TIMESTAMP:
        if type(v) is int:
            if _int_in_range(code, v):
                return v
            lo, hi = _RANGE[code]
            raise DataError(f"value {v} is out of range for {t.name} ({lo}..{hi})")
        if isinstance(v, int) and not isinstance(v, bool):
            lo, hi = _RANGE[code]
            if lo <= v <= hi:
                return int(v)
            raise DataError(f"value {v} is out of range for {t.name} ({lo}..{hi})")
    elif code == T_F64 or code == T_F32:
        if isinstance(v, (float, int)) and not isinstance(v, bool):
            try:
                d = v
            except OverflowError:
                raise DataError(f"value {_show(v)} is too large for {t.name}")
            if code == T_F32:
                if not isnan(d) and not isinf(d) and (d > FLT_MAX or d < -FLT_MAX):
                    raise DataError(f"value {v!r} is out of range for f32")
                d = f64_of(f32_of(d))
            return d
    elif code == T_STRING:
        if isinstance(v, str):
            try:
                PyUnicode_AsUTF8String(v)
            except UnicodeEncodeError as e:
                raise DataError(f"string is not valid UTF-8 text ({e.reason} at {e.start})")
            return v
    elif code == T_BYTES:
        if isinstance(v, (bytes, bytearray, memoryview)):
            return bytes(v)
    elif code == T_IDENTITY:
        if isinstance(v, (bytes, bytearray, memoryview)):
            b = bytes(v)
            if len(b) == 32:
                return b
            raise DataError(f"an identity is 32 bytes, got {len(b)}")
    elif code == T_OPTION:
        if v is None:
            return None
        return check_value(t.inner, v)
    elif code == T_ARRAY:
        if isinstance(v, (list, tuple)):
            out = []
            for i, item in enumerate(v):
                try:
                    out.append(check_value(t.inner, item))
                except DataError as e:
                    raise DataError(f"element {i}: {e.detail}") from None
            return out
    raise DataError(f"expected {t.name}, got {_show(v)}")


# ---------------------------------------------------------------- row codec

cdef inline int _fits_u32(Py_ssize_t n, ColumnType t) except -1:
    if n > <Py_ssize_t>0xFFFFFFFF:
        raise DataError(f"{t.name} of length {n} does not fit the row format's u32 length")
    return 0


cdef int encode_value(ColumnType t, object v, Buf* out) except -1:
    cdef int code = t.code
    cdef int64_t i64
    cdef uint64_t u64
    cdef double d
    cdef float f
    cdef bytes bs
    if code == T_BOOL:
        return buf_u8(out, 1 if v else 0)
    if code == T_I8 or code == T_I16 or code == T_I32 or code == T_I64 or code == T_TIMESTAMP:
        i64 = v
        return buf_put(out, &i64, _width(code))
    if code == T_U8 or code == T_U16 or code == T_U32 or code == T_U64:
        u64 = v
        return buf_put(out, &u64, _width(code))
    if code == T_F32:
        f = f32_of(v)
        return buf_put(out, &f, 4)
    if code == T_F64:
        d = v
        return buf_put(out, &d, 8)
    if code == T_STRING:
        bs = PyUnicode_AsUTF8String(v)
        _fits_u32(len(bs), t)
        buf_u32(out, <uint32_t>len(bs))
        return buf_put(out, PyBytes_AS_STRING(bs), PyBytes_GET_SIZE(bs))
    if code == T_BYTES:
        _fits_u32(len(v), t)
        buf_u32(out, <uint32_t>len(v))
        return buf_put(out, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v))
    if code == T_IDENTITY:
        return buf_put(out, PyBytes_AS_STRING(v), 32)
    if code == T_OPTION:
        if v is None:
            return buf_u8(out, 0)
        buf_u8(out, 1)
        return encode_value(t.inner, v, out)
    if code == T_ARRAY:
        _fits_u32(len(v), t)
        buf_u32(out, <uint32_t>len(v))
        for item in v:
            encode_value(t.inner, item, out)
        return 0
    raise SchemaError(f"cannot encode type {t.name}")


cdef inline int _need(Py_ssize_t pos, Py_ssize_t want, Py_ssize_t n, ColumnType t) except -1:
    if pos + want > n:
        raise DataError(f"truncated {t.name}: needs {want} bytes at byte {pos}, only {n - pos} left")
    return 0


cdef object decode_value(ColumnType t, const unsigned char* p, Py_ssize_t n, Py_ssize_t* pos):
    cdef int code = t.code
    cdef Py_ssize_t at = pos[0]
    cdef int64_t i64 = 0
    cdef uint64_t u64 = 0
    cdef int8_t i8
    cdef int16_t i16
    cdef int32_t i32
    cdef float f
    cdef double d
    cdef uint32_t ln
    cdef int w
    if code == T_BOOL:
        _need(at, 1, n, t)
        pos[0] = at + 1
        if p[at] > 1:
            raise DataError(f"bad bool byte {p[at]} at byte {at} (must be 0 or 1)")
        return p[at] == 1
    if code == T_I64 or code == T_TIMESTAMP or code == T_I32 or code == T_I16 or code == T_I8:
        w = _width(code)
        _need(at, w, n, t)
        pos[0] = at + w
        if w == 1:
            memcpy(&i8, p + at, 1)
            return i8
        if w == 2:
            memcpy(&i16, p + at, 2)
            return i16
        if w == 4:
            memcpy(&i32, p + at, 4)
            return i32
        memcpy(&i64, p + at, 8)
        return i64
    if code == T_U64 or code == T_U32 or code == T_U16 or code == T_U8:
        w = _width(code)
        _need(at, w, n, t)
        pos[0] = at + w
        memcpy(&u64, p + at, w)
        return u64
    if code == T_F32:
        _need(at, 4, n, t)
        memcpy(&f, p + at, 4)
        pos[0] = at + 4
        return f64_of(f)
    if code == T_F64:
        _need(at, 8, n, t)
        memcpy(&d, p + at, 8)
        pos[0] = at + 8
        return d
    if code == T_STRING or code == T_BYTES:
        _need(at, 4, n, t)
        memcpy(&ln, p + at, 4)
        at += 4
        _need(at, ln, n, t)
        pos[0] = at + ln
        if code == T_BYTES:
            return PyBytes_FromStringAndSize(<const char*>p + at, ln)
        try:
            return PyUnicode_DecodeUTF8(<const char*>p + at, ln, NULL)
        except UnicodeDecodeError as e:
            raise DataError(f"string at byte {at} is not valid UTF-8 ({e.reason})") from None
    if code == T_IDENTITY:
        _need(at, 32, n, t)
        pos[0] = at + 32
        return PyBytes_FromStringAndSize(<const char*>p + at, 32)
    if code == T_OPTION:
        _need(at, 1, n, t)
        pos[0] = at + 1
        if p[at] == 0:
            return None
        if p[at] != 1:
            raise DataError(f"bad option tag {p[at]} at byte {at} (must be 0 or 1)")
        return decode_value(t.inner, p, n, pos)
    if code == T_ARRAY:
        _need(at, 4, n, t)
        memcpy(&ln, p + at, 4)
        pos[0] = at + 4
        if ln > n - at - 4:  # every element takes at least one byte
            raise DataError(f"array count {ln} at byte {at} exceeds the {n - at - 4} bytes left")
        return [decode_value(t.inner, p, n, pos) for _ in range(ln)]
    raise SchemaError(f"cannot decode type {t.name}")


cdef int _spill(Buf* b, unsigned char* small) except -1:
    """Move a Buf off its stack buffer ``small`` onto the heap (before it could outgrow it)."""
    cdef unsigned char* d = <unsigned char*>PyMem_Malloc(b.cap * 2)
    if d == NULL:
        raise MemoryError()
    memcpy(d, small, b.len)
    b.data = d
    b.cap *= 2
    return 0


@cython.final
cdef class RowCodec:
    """Checks, encodes and decodes rows of one table's schema."""

    def __init__(self, str table, names, types):
        self.table = table
        self.names = tuple(names)
        self.types = tuple(parse_type(t) for t in types)
        if len(self.names) != len(self.types):
            raise SchemaError("a row codec needs one type per column name")
        self.ncols = len(self.types)

    cpdef tuple check_row(self, object row):
        """Return the row as a tuple of normalised values, or raise DataError naming the column."""
        cdef Py_ssize_t i
        if not isinstance(row, (tuple, list)):
            raise DataError(f"table '{self.table}': a row is a tuple of {self.ncols} values, "
                            f"got {_show(row)}")
        if len(row) != self.ncols:
            raise DataError(
                f"table '{self.table}' has {self.ncols} columns ({', '.join(self.names)}), "
                f"the row has {len(row)} values")
        out = [None] * self.ncols
        for i in range(self.ncols):
            try:
                out[i] = check_value(<ColumnType>self.types[i], row[i])
            except DataError as e:
                raise DataError(f"table '{self.table}', column '{self.names[i]}': {e.detail}",
                                hint=e.hint) from None
        return tuple(out)

    cpdef bytes encode(self, tuple row):
        """Encode a row (checked first, as ``check_row`` checks it) in the row codec."""
        cdef Buf b
        cdef Py_ssize_t i
        cdef unsigned char small[256]
        if len(row) != self.ncols:
            self.check_row(row)                   # raises, naming the problem
        b.data = small                            # most rows fit: no allocation
        b.len = 0
        b.cap = 256
        try:
            for i in range(self.ncols):
                try:
                    v = check_value(<ColumnType>self.types[i], row[i])
                except DataError as e:
                    raise DataError(f"table '{self.table}', column '{self.names[i]}': {e.detail}",
                                    hint=e.hint) from None
                if b.data == small and ((<ColumnType>self.types[i]).in_heap or b.len + 64 > b.cap):
                    _spill(&b, small)             # a value of unknown size: onto the heap first
                encode_value(<ColumnType>self.types[i], v, &b)
            return PyBytes_FromStringAndSize(<char*>b.data, b.len)
        finally:
            if b.data != small:
                buf_free(&b)

    cpdef tuple decode(self, object data):
        """Decode one row; raise DataError naming the column and byte on malformed input."""
        cdef const unsigned char[:] view
        if type(data) is bytes:
            return self._decode(<const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        view = data
        if view.shape[0] == 0:
            return self._decode(<const unsigned char*>b"", 0)
        return self._decode(&view[0], view.shape[0])

    cdef tuple _decode(self, const unsigned char* p, Py_ssize_t n):
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t i
        cdef tuple out = PyTuple_New(self.ncols)
        for i in range(self.ncols):
            try:
                v = decode_value(<ColumnType>self.types[i], p, n, &pos)
            except DataError as e:
                raise DataError(f"table '{self.table}', column '{self.names[i]}': {e.detail}") from None
            Py_INCREF(v)
            PyTuple_SET_ITEM(out, i, v)
        if pos != n:
            raise DataError(f"table '{self.table}': {n - pos} trailing bytes after the row "
                            f"(row ends at byte {pos} of {n})")
        return out

    def encode_many(self, rows):
        """Encode rows back to back (each checked)."""
        return b"".join([self.encode(tuple(r)) for r in rows])


# ---------------------------------------------------------------- key codec

cdef int encode_key_value(ColumnType t, object v, Buf* out) except -1:
    cdef int code = t.code
    cdef int64_t i64
    cdef uint64_t u64
    cdef double d
    cdef float f
    cdef uint32_t u32
    cdef int w
    cdef bytes bs
    if code == T_BOOL:
        return buf_u8(out, 1 if v else 0)
    if code == T_I64 or code == T_TIMESTAMP or code == T_I32 or code == T_I16 or code == T_I8:
        w = _width(code)
        i64 = v
        u64 = (<uint64_t>i64) ^ (<uint64_t>1 << (8 * w - 1))
        return buf_be(out, u64, w)
    if code == T_U64 or code == T_U32 or code == T_U16 or code == T_U8:
        u64 = v
        return buf_be(out, u64, _width(code))
    if code == T_F64 or code == T_F32:
        d = v
        if d == 0.0:
            d = 0.0          # -0.0 and 0.0 are one key
        if isnan(d):
            u64 = 0xFFF8000000000000ULL if code == T_F64 else 0xFFC00000  # all NaNs are one key, above +inf
            return buf_be(out, u64, 8 if code == T_F64 else 4)
        if code == T_F64:
            memcpy(&u64, &d, 8)
            u64 = ~u64 if (u64 >> 63) else (u64 | (<uint64_t>1 << 63))
            return buf_be(out, u64, 8)
        f = <float>d
        memcpy(&u32, &f, 4)
        u32 = ~u32 if (u32 >> 31) else (u32 | (<uint32_t>1 << 31))
        return buf_be(out, u32, 4)
    if code == T_STRING or code == T_BYTES:
        bs = PyUnicode_AsUTF8String(v) if code == T_STRING else v
        return key_escaped(<const unsigned char*>PyBytes_AS_STRING(bs), PyBytes_GET_SIZE(bs), out)
    if code == T_IDENTITY:
        return buf_put(out, PyBytes_AS_STRING(v), 32)
    if code == T_OPTION:
        if v is None:
            return buf_u8(out, 0)
        buf_u8(out, 1)
        return encode_key_value(t.inner, v, out)
    if code == T_ARRAY:
        for item in v:
            buf_u8(out, 1)
            encode_key_value(t.inner, item, out)
        return buf_u8(out, 0)
    raise SchemaError(f"cannot key-encode type {t.name}")


cdef int key_escaped(const unsigned char* s, Py_ssize_t n, Buf* out) except -1:
    """Key form of a string's UTF-8 or of bytes: 0x00 escaped as 00 FF, ended by 00 00."""
    cdef Py_ssize_t i
    buf_reserve(out, 2 * n + 2)
    for i in range(n):
        out.data[out.len] = s[i]
        out.len += 1
        if s[i] == 0:
            out.data[out.len] = 0xFF
            out.len += 1
    out.data[out.len] = 0
    out.data[out.len + 1] = 0
    out.len += 2
    return 0


cpdef bytes encode_key(tuple types, tuple values):
    """Order-preserving key of ``values`` (already checked) under ``types`` (a prefix is fine)."""
    cdef Buf b
    buf_init(&b, 32)
    try:
        encode_key_into(types, values, &b)
        return PyBytes_FromStringAndSize(<char*>b.data, b.len)
    finally:
        buf_free(&b)


cdef int encode_key_into(tuple types, tuple values, Buf* out) except -1:
    """``encode_key`` into a caller's buffer (emptied first)."""
    cdef Py_ssize_t i
    out.len = 0
    for i in range(len(values)):
        encode_key_value(<ColumnType>types[i], values[i], out)
    return 0


cpdef bytes prefix_successor(bytes key):
    """The smallest byte string greater than every string that starts with ``key``.

    Returns b"" when there is none (``key`` is empty or all 0xFF): no upper bound.
    """
    cdef Py_ssize_t i = len(key) - 1
    while i >= 0 and key[i] == 0xFF:
        i -= 1
    if i < 0:
        return b""
    return key[:i] + bytes((key[i] + 1,))


def read_framed(const unsigned char[:] buf, Py_ssize_t pos, Py_ssize_t count):
    """Split ``count`` rows framed as (u32 LE length, bytes) starting at ``pos``.

    Returns (list of bytes, position after them); DataError if the frames run past the end."""
    cdef Py_ssize_t n = buf.shape[0], i, start
    cdef uint32_t ln
    cdef list out = []
    cdef const unsigned char* p
    if count < 0 or pos < 0 or pos > n:
        raise DataError(f"bad framed-row request at byte {pos}")
    if count > (n - pos) // 4:
        raise DataError(f"{count} framed rows cannot fit in the {n - pos} bytes left at byte {pos}")
    if count == 0:
        return out, pos
    p = &buf[0]
    for i in range(count):
        start = frame_at(p, pos, n, &ln)
        if start == -1:
            raise DataError(f"framed row {i} of {count}: truncated length at byte {pos}")
        if start == -2:
            raise DataError(f"framed row {i} of {count}: {ln} bytes at byte {pos + 4}, "
                            f"only {n - pos - 4} left")
        out.append(PyBytes_FromStringAndSize(<const char*>p + start, ln) if ln else b"")
        pos = start + ln
    return out, pos


def count_framed(data):
    """The rows in a snapshot chunk (each row after its length, u32 little-endian), or -1 when
    the framing does not end exactly at the chunk's end."""
    cdef const unsigned char[:] v = data
    cdef Py_ssize_t n = v.shape[0], pos = 0, count = 0
    cdef uint32_t ln
    while pos < n:
        pos = frame_at(&v[0], pos, n, &ln)
        if pos < 0:
            return -1
        pos += ln
        count += 1
    return count
