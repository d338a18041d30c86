# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The CallReducer lane: a client's reducer call read straight from its CBOR bytes into the
reducer's row-codec argument bytes, and the caller's TransactionUpdate written straight to CBOR.

What it replaces for the common call is ``decode_client`` (cbor2 into dicts and lists, then
the protocol's checks in Python), the argument tuple checked and encoded by the row codec, and
``encode`` (a dict through cbor2).  ``CallLane.parse`` takes a message only when it is exactly
a CallReducer as docs/protocol.md defines it — a definite map of the four fields ``type``,
``request_id``, ``reducer`` and ``args``, each once, nothing after it — naming a reducer a
client may call, with one argument per parameter, each of a CBOR type that encodes to the
parameter's type without any conversion:

| parameter | CBOR accepted here |
| --- | --- |
| bool | false, true |
| i8 … i64, timestamp | an integer (major 0 or 1) within the type's range |
| u8 … u64 | an unsigned integer (major 0) within the type's range |
| f64 | a float (64, 32 or 16 bits) that is not a NaN |
| string | a text string of ASCII characters |
| bytes | a byte string |
| identity | a byte string of 32 bytes |
| option<T> | null, or what T accepts |
| array<T> | an array of at most 65,536 items T accepts |

Anything else (tags, indefinite lengths, f32 parameters, non-ASCII text, a value out of range,
a message that is not a CallReducer, a malformed one) returns None and the message takes the
general path (``decode_client`` and the row codec), which accepts it or names the problem:
the lane never refuses anything itself, so the protocol's behaviour is the general path's.
Its reference is that path: tests/test_lane.py and fuzz/fuzz_lane.py check that whenever the
lane answers, it answers exactly what the general path gives (request id, reducer, argument
bytes), and that ``committed`` writes the same bytes as ``protocol.encode``.
"""

cimport cython
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy
from libc.math cimport ldexp, INFINITY
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

from stdb._core.codec cimport (Buf, buf_init, buf_free, buf_put, RowCodec, ColumnType,
                               T_BOOL, T_I8, T_I16, T_I32, T_I64, T_U8, T_U16, T_U32, T_U64,
                               T_F64, T_STRING, T_BYTES, T_IDENTITY, T_TIMESTAMP,
                               T_OPTION, T_ARRAY)

cdef enum:
    MAX_ITEMS = 65536           # stdb.protocol.MAX_ITEMS
    MAX_NAME = 128              # the protocol's bound on a reducer name
    MAX_SKIP_DEPTH = 16

cdef enum:
    OK = 0
    NO = -1                     # not for the lane: the general path takes it

cdef enum:
    K_TYPE = 1
    K_RID = 2
    K_REDUCER = 4
    K_ARGS = 8


cdef struct Rd:
    const unsigned char* p
    Py_ssize_t n
    Py_ssize_t pos


cdef inline int rd_head(Rd* r, int* major, int* ai, uint64_t* val) noexcept nogil:
    """One item's initial byte and its argument (big-endian, any width); NO for indefinite
    lengths, reserved values and truncation."""
    cdef uint8_t b
    cdef int k, w
    cdef uint64_t v
    if r.pos >= r.n:
        return NO
    b = r.p[r.pos]
    r.pos += 1
    major[0] = b >> 5
    ai[0] = b & 31
    if ai[0] < 24:
        val[0] = ai[0]
        return OK
    if ai[0] > 27:
        return NO
    w = 1 << (ai[0] - 24)
    if r.n - r.pos < w:
        return NO
    v = 0
    for k in range(w):
        v = (v << 8) | r.p[r.pos + k]
    r.pos += w
    val[0] = v
    return OK


cdef int rd_skip(Rd* r, int depth) noexcept nogil:
    """Skip one whole item (definite lengths only)."""
    cdef int major, ai
    cdef uint64_t val, _i
    if depth > MAX_SKIP_DEPTH or rd_head(r, &major, &ai, &val) < 0:
        return NO
    if major == 2 or major == 3:
        if val > <uint64_t>(r.n - r.pos):
            return NO
        r.pos += <Py_ssize_t>val
    elif major == 4 or major == 5:
        if val > <uint64_t>(r.n - r.pos):        # every item takes a byte at least
            return NO
        if major == 5:
            val *= 2
        for _i in range(val):
            if rd_skip(r, depth + 1) < 0:
                return NO
    elif major == 6:
        return rd_skip(r, depth + 1)
    return OK


cdef inline int rd_text(Rd* r, const unsigned char** s, Py_ssize_t* ln) noexcept nogil:
    """A text string (its bytes in place); NO for anything else or truncation."""
    cdef int major, ai
    cdef uint64_t val
    if rd_head(r, &major, &ai, &val) < 0 or major != 3 or val > <uint64_t>(r.n - r.pos):
        return NO
    s[0] = r.p + r.pos
    ln[0] = <Py_ssize_t>val
    r.pos += <Py_ssize_t>val
    return OK


cdef inline bint ascii(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] >= 0x80:
            return False
    return True


cdef inline bint is_key(const unsigned char* s, Py_ssize_t n, const char* key, Py_ssize_t kn) noexcept nogil:
    return n == kn and memcmp(s, key, kn) == 0


cdef int put_le(Buf* b, uint64_t v, int width) except -1:
    cdef unsigned char tmp[8]
    cdef int k
    for k in range(width):
        tmp[k] = <unsigned char>(v >> (8 * k))
    buf_put(b, tmp, width)
    return 0


cdef int put_u32(Buf* b, uint64_t v) except -1:
    return put_le(b, v, 4)


cdef inline uint64_t f16_bits_as_f64_bits(uint32_t bits) noexcept nogil:
    """A binary16 that is not a NaN, widened exactly."""
    cdef int e = (bits >> 10) & 0x1F
    cdef double m = bits & 0x3FF
    cdef double d
    cdef uint64_t out
    if e == 0x1F:
        d = INFINITY
    elif e == 0:
        d = ldexp(m, -24)
    else:
        d = ldexp(m + 1024.0, e - 25)
    if bits & 0x8000:
        d = -d
    memcpy(&out, &d, 8)
    return out


cdef inline uint64_t f32_bits_as_f64_bits(uint32_t bits) noexcept nogil:
    cdef float f
    cdef double d
    cdef uint64_t out
    memcpy(&f, &bits, 4)
    d = <double>f                # exact for every f32 that is not a NaN
    memcpy(&out, &d, 8)
    return out


cdef int enc_value(Rd* r, Buf* b, int code, int inner) except -2:
    """One argument of type ``code`` (``inner`` for option/array) from CBOR to the row codec;
    NO when the lane does not take it."""
    cdef int major, ai, width
    cdef uint64_t val, _i, limit
    if code == T_OPTION:
        if r.pos < r.n and r.p[r.pos] == 0xF6:          # null
            r.pos += 1
            buf_put(b, b"\x00", 1)
            return OK
        buf_put(b, b"\x01", 1)
        return enc_value(r, b, inner, 0)
    if code == T_ARRAY:
        if rd_head(r, &major, &ai, &val) < 0 or major != 4 or val > MAX_ITEMS \
                or val > <uint64_t>(r.n - r.pos):
            return NO
        put_u32(b, val)
        for _i in range(val):
            if enc_value(r, b, inner, 0) < 0:
                return NO
        return OK
    if rd_head(r, &major, &ai, &val) < 0:
        return NO
    if code == T_BOOL:
        if major != 7 or (ai != 20 and ai != 21):
            return NO
        buf_put(b, b"\x01" if ai == 21 else b"\x00", 1)
        return OK
    if code == T_U8 or code == T_U16 or code == T_U32 or code == T_U64:
        width = 1 if code == T_U8 else 2 if code == T_U16 else 4 if code == T_U32 else 8
        if major != 0 or (width < 8 and val >> (8 * width)):
            return NO
        put_le(b, val, width)
        return OK
    if code == T_I8 or code == T_I16 or code == T_I32 or code == T_I64 or code == T_TIMESTAMP:
        width = 1 if code == T_I8 else 2 if code == T_I16 else 4 if code == T_I32 else 8
        limit = (<uint64_t>1 << (8 * width - 1)) - 1     # the largest value, and the largest n of -1-n
        if (major != 0 and major != 1) or val > limit:
            return NO
        put_le(b, val if major == 0 else ~val, width)    # -1 - n is ~n in two's complement
        return OK
    if code == T_F64:
        if major != 7 or (ai != 25 and ai != 26 and ai != 27):
            return NO
        if ai == 25:                                                    # a half (cbor2 writes infinities so)
            if (val >> 10) & 0x1F == 0x1F and val & 0x3FF:              # a NaN
                return NO
            put_le(b, f16_bits_as_f64_bits(<uint32_t>val), 8)
            return OK
        if ai == 27:
            if (val >> 52) & 0x7FF == 0x7FF and val & 0xFFFFFFFFFFFFF:   # a NaN
                return NO
            put_le(b, val, 8)
            return OK
        if (val >> 23) & 0xFF == 0xFF and val & 0x7FFFFF:                # a NaN
            return NO
        put_le(b, f32_bits_as_f64_bits(<uint32_t>val), 8)
        return OK
    if code == T_STRING or code == T_BYTES or code == T_IDENTITY:
        if major != (3 if code == T_STRING else 2) or val > <uint64_t>(r.n - r.pos):
            return NO
        if code == T_IDENTITY:
            if val != 32:
                return NO
        else:
            if code == T_STRING and not ascii(r.p + r.pos, <Py_ssize_t>val):
                return NO
            put_u32(b, val)
        buf_put(b, r.p + r.pos, <Py_ssize_t>val)
        r.pos += <Py_ssize_t>val
        return OK
    return NO                   # f32, or a type the lane does not know


cdef int put_head(Buf* b, int major, uint64_t v) except -1:
    """A CBOR head in its shortest form (as cbor2 writes it)."""
    cdef unsigned char tmp[9]
    cdef int k, w
    if v < 24:
        tmp[0] = <unsigned char>((major << 5) | v)
        return buf_put(b, tmp, 1)
    w = 1 if v <= 0xFF else 2 if v <= 0xFFFF else 4 if v <= 0xFFFFFFFF else 8
    tmp[0] = <unsigned char>((major << 5) | (24 + (0 if w == 1 else 1 if w == 2 else 2 if w == 4 else 3)))
    for k in range(w):
        tmp[1 + k] = <unsigned char>(v >> (8 * (w - 1 - k)))
    return buf_put(b, tmp, 1 + w)


cdef int put_text(Buf* b, const char* s, Py_ssize_t n) except -1:
    put_head(b, 3, <uint64_t>n)
    return buf_put(b, s, n)


cdef int put_int(Buf* b, object v) except -1:
    """None as null, else a Python int of at most 64 bits either way."""
    if v is None:
        return buf_put(b, b"\xf6", 1)
    if v >= 0:
        return put_head(b, 0, <uint64_t>v)
    return put_head(b, 1, <uint64_t>(-1 - v))


@cython.final
cdef class CallLane:
    """The lane for one published module: its callable reducers' parameter types
    (``by_name``: name as UTF-8 bytes -> (reducer number, name, types as bytes))."""

    def __cinit__(self):
        buf_init(&self.out, 256)
        self.by_name = {}

    def __dealloc__(self):
        buf_free(&self.out)

    def __init__(self, dict reducers):
        """``reducers``: name -> (reducer number, the parameters' RowCodec), as
        ``CallPath.callable_reducers`` gives them."""
        cdef RowCodec codec
        cdef ColumnType t
        for name, (idx, codec) in reducers.items():
            spec = bytearray()
            for t in codec.types:
                spec.append(t.code)
                spec.append(t.inner.code if t.inner is not None else 0)
            self.by_name[name.encode("utf-8")] = (idx, name, bytes(spec))

    def parse(self, data):
        """``(request_id, reducer number, reducer name, argument bytes)`` for a CallReducer the
        lane takes, else None (see the module docstring)."""
        cdef Rd r
        cdef int major, ai, seen = 0, k
        cdef uint64_t val, rid = 0, _i
        cdef const unsigned char* s
        cdef const unsigned char* name = NULL
        cdef Py_ssize_t ln, name_len = 0, args_at = -1
        cdef const unsigned char* spec
        cdef Py_ssize_t ncols
        if type(data) is not bytes:
            return None
        r.p = <const unsigned char*>PyBytes_AS_STRING(data)
        r.n = PyBytes_GET_SIZE(data)
        r.pos = 0
        if rd_head(&r, &major, &ai, &val) < 0 or major != 5 or val != 4:
            return None
        for _i in range(4):
            if rd_text(&r, &s, &ln) < 0:
                return None
            if is_key(s, ln, b"type", 4):
                k = K_TYPE
                if rd_text(&r, &s, &ln) < 0 or not is_key(s, ln, b"CallReducer", 11):
                    return None
            elif is_key(s, ln, b"request_id", 10):
                k = K_RID
                if rd_head(&r, &major, &ai, &rid) < 0 or major != 0:
                    return None
            elif is_key(s, ln, b"reducer", 7):
                k = K_REDUCER
                if rd_text(&r, &name, &name_len) < 0 or name_len > MAX_NAME or not ascii(name, name_len):
                    return None
            elif is_key(s, ln, b"args", 4):
                k = K_ARGS
                args_at = r.pos
                if rd_skip(&r, 0) < 0:
                    return None
            else:
                return None
            if seen & k:
                return None             # a key twice
            seen |= k
        if r.pos != r.n:
            return None
        found = self.by_name.get(PyBytes_FromStringAndSize(<const char*>name, name_len))
        if found is None:
            return None
        idx, rname, specb = found
        spec = <const unsigned char*>PyBytes_AS_STRING(specb)
        ncols = PyBytes_GET_SIZE(specb) // 2
        r.pos = args_at
        if rd_head(&r, &major, &ai, &val) < 0 or major != 4 or val != <uint64_t>ncols:
            return None
        self.out.len = 0
        for k in range(ncols):
            if enc_value(&r, &self.out, spec[2 * k], spec[2 * k + 1]) < 0:
                return None
        return (rid, idx, rname,
                PyBytes_FromStringAndSize(<const char*>self.out.data, self.out.len))

    def committed(self, offset, timestamp, str reducer, bytes caller, request_id):
        """The caller's TransactionUpdate of a committed call with no subscribed query changed:
        the bytes ``protocol.encode`` writes for it."""
        cdef Buf* b = &self.out
        cdef bytes rn = reducer.encode("utf-8")
        b.len = 0
        put_head(b, 5, 10)
        put_text(b, b"offset", 6)
        put_int(b, offset)
        put_text(b, b"timestamp", 9)
        put_int(b, timestamp)
        put_text(b, b"reducer", 7)
        put_text(b, PyBytes_AS_STRING(rn), PyBytes_GET_SIZE(rn))
        put_text(b, b"caller", 6)
        put_head(b, 2, <uint64_t>PyBytes_GET_SIZE(caller))
        buf_put(b, PyBytes_AS_STRING(caller), PyBytes_GET_SIZE(caller))
        put_text(b, b"status", 6)
        put_text(b, b"committed", 9)
        put_text(b, b"message", 7)
        buf_put(b, b"\xf6", 1)
        put_text(b, b"request_id", 10)
        put_int(b, request_id)
        put_text(b, b"updates", 7)
        buf_put(b, b"\x80", 1)
        put_text(b, b"more", 4)
        buf_put(b, b"\xf4", 1)                  # false: it is whole
        put_text(b, b"type", 4)
        put_text(b, b"TransactionUpdate", 17)
        return PyBytes_FromStringAndSize(<const char*>b.data, b.len)
