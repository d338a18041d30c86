# cython: language_level=3
"""CRC32C and BLAKE2b in C, usable without the GIL.

``crc32c`` and ``blake2b`` (declared in digest.pxd) are what other Cython modules cimport; the
``def`` functions below are their Python face, for tests and for the occasional Python caller.

CRC32C (Castagnoli, reflected polynomial 0x82F63B78) gives the same value as the ``crc32c``
PyPI package.  On x86-64 with SSE4.2 (detected once, when this module is imported) it uses the
``crc32`` instruction 8 bytes at a time, on three interleaved streams for inputs of 768 bytes
and more (the three partial CRCs are joined with precomputed "shift by L zero bytes" tables).
The instruction is only used from functions compiled with ``target("sse4.2")``, so the module
builds without ``-msse4.2`` and runs on any x86-64.  Everywhere else: slicing-by-8 tables.

BLAKE2b is written from RFC 7693: unkeyed, a digest of 1..64 bytes, the whole input at once.
"""

from libc.stdint cimport uint32_t
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

cdef extern from *:
    """
    #include <stddef.h>
    #include <stdint.h>
    #include <string.h>

    /* -DSTDB_CRC32C_X86=0 builds the portable path only (to try it on x86-64) */
    #ifndef STDB_CRC32C_X86
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #define STDB_CRC32C_X86 1
    #else
    #define STDB_CRC32C_X86 0
    #endif
    #endif
    #if STDB_CRC32C_X86
    #include <nmmintrin.h>
    #endif

    /* ------------------------------------------------------------ CRC32C */

    #define STDB_CRC32C_POLY 0x82F63B78u   /* Castagnoli, bit-reflected */
    #define STDB_CRC32C_SHORT 256          /* bytes per stream, short 3-way blocks */
    #define STDB_CRC32C_LONG 8192          /* bytes per stream, long 3-way blocks */

    /* stdb_crc32c_table[k][b]: the register after byte b then k zero bytes (slicing-by-8) */
    static uint32_t stdb_crc32c_table[8][256];
    static int stdb_crc32c_have_hw = 0;

    static inline uint64_t stdb_le64(const unsigned char *p) {
        uint64_t v;
        memcpy(&v, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap64(v);
    #endif
        return v;
    }

    /* Portable CRC32C, slicing-by-8; ``crc`` is the finished value so far (0 to start). */
    static uint32_t stdb_crc32c_portable(uint32_t crc, const unsigned char *p, size_t n) {
        uint32_t c = ~crc;
        while (n && ((uintptr_t)p & 7)) {
            c = stdb_crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
            n--;
        }
        while (n >= 8) {
            uint64_t w = stdb_le64(p) ^ c;
            c = stdb_crc32c_table[7][w & 0xff] ^ stdb_crc32c_table[6][(w >> 8) & 0xff]
              ^ stdb_crc32c_table[5][(w >> 16) & 0xff] ^ stdb_crc32c_table[4][(w >> 24) & 0xff]
              ^ stdb_crc32c_table[3][(w >> 32) & 0xff] ^ stdb_crc32c_table[2][(w >> 40) & 0xff]
              ^ stdb_crc32c_table[1][(w >> 48) & 0xff] ^ stdb_crc32c_table[0][w >> 56];
            p += 8;
            n -= 8;
        }
        while (n--)
            c = stdb_crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        return ~c;
    }

    #if STDB_CRC32C_X86
    /* shift tables: byte k of a register -> that byte's part of the register after L zero bytes */
    static uint32_t stdb_crc32c_shift_short[4][256];
    static uint32_t stdb_crc32c_shift_long[4][256];

    /* The raw register ``c`` after ``n`` (a multiple of 8) zero bytes, for the shift tables. */
    __attribute__((target("sse4.2")))
    static uint32_t stdb_crc32c_zeros(uint32_t c, size_t n) {
        uint64_t r = c;
        for (; n >= 8; n -= 8)
            r = _mm_crc32_u64(r, 0);
        return (uint32_t)r;
    }

    /* Fill shift[k][b] = register (b << 8k) after n zero bytes; the operation is linear, so
       the image of each of the 32 bits is enough. */
    static void stdb_crc32c_make_shift(uint32_t shift[4][256], size_t n) {
        uint32_t bit[32];
        int i, k, b;
        for (i = 0; i < 32; i++)
            bit[i] = stdb_crc32c_zeros((uint32_t)1 << i, n);
        for (k = 0; k < 4; k++)
            for (b = 0; b < 256; b++) {
                uint32_t v = 0;
                for (i = 0; i < 8; i++)
                    if (b & (1 << i))
                        v ^= bit[8 * k + i];
                shift[k][b] = v;
            }
    }

    static inline uint32_t stdb_crc32c_shift(uint32_t shift[4][256], uint32_t c) {
        return shift[0][c & 0xff] ^ shift[1][(c >> 8) & 0xff]
             ^ shift[2][(c >> 16) & 0xff] ^ shift[3][c >> 24];
    }

    /* CRC32C with the SSE4.2 crc32 instruction; only called when the CPU has it. */
    __attribute__((target("sse4.2")))
    static uint32_t stdb_crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
        uint64_t c0 = (uint32_t)~crc;
        while (n && ((uintptr_t)p & 7)) {
            c0 = _mm_crc32_u8((uint32_t)c0, *p++);
            n--;
        }
        /* three streams of L bytes each: c0 continues, c1 and c2 start from 0, then
           crc(A B C) = shift_L(shift_L(c0) ^ c1) ^ c2 (the register update is linear) */
        while (n >= 3 * STDB_CRC32C_LONG) {
            uint64_t c1 = 0, c2 = 0;
            const unsigned char *end = p + STDB_CRC32C_LONG;
            do {
                c0 = _mm_crc32_u64(c0, stdb_le64(p));
                c1 = _mm_crc32_u64(c1, stdb_le64(p + STDB_CRC32C_LONG));
                c2 = _mm_crc32_u64(c2, stdb_le64(p + 2 * STDB_CRC32C_LONG));
                p += 8;
            } while (p < end);
            c0 = stdb_crc32c_shift(stdb_crc32c_shift_long, (uint32_t)c0) ^ c1;
            c0 = stdb_crc32c_shift(stdb_crc32c_shift_long, (uint32_t)c0) ^ c2;
            p += 2 * STDB_CRC32C_LONG;
            n -= 3 * STDB_CRC32C_LONG;
        }
        while (n >= 3 * STDB_CRC32C_SHORT) {
            uint64_t c1 = 0, c2 = 0;
            const unsigned char *end = p + STDB_CRC32C_SHORT;
            do {
                c0 = _mm_crc32_u64(c0, stdb_le64(p));
                c1 = _mm_crc32_u64(c1, stdb_le64(p + STDB_CRC32C_SHORT));
                c2 = _mm_crc32_u64(c2, stdb_le64(p + 2 * STDB_CRC32C_SHORT));
                p += 8;
            } while (p < end);
            c0 = stdb_crc32c_shift(stdb_crc32c_shift_short, (uint32_t)c0) ^ c1;
            c0 = stdb_crc32c_shift(stdb_crc32c_shift_short, (uint32_t)c0) ^ c2;
            p += 2 * STDB_CRC32C_SHORT;
            n -= 3 * STDB_CRC32C_SHORT;
        }
        while (n >= 8) {
            c0 = _mm_crc32_u64(c0, stdb_le64(p));
            p += 8;
            n -= 8;
        }
        while (n--)
            c0 = _mm_crc32_u8((uint32_t)c0, *p++);
        return ~(uint32_t)c0;
    }
    #else
    static uint32_t stdb_crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
        return stdb_crc32c_portable(crc, p, n);
    }
    #endif

    /* Build the tables and look at the CPU; called once, when the module is imported. */
    static void stdb_crc32c_init(void) {
        uint32_t b, c;
        int k, i;
        for (b = 0; b < 256; b++) {
            c = b;
            for (i = 0; i < 8; i++)
                c = (c >> 1) ^ (STDB_CRC32C_POLY & (0u - (c & 1)));
            stdb_crc32c_table[0][b] = c;
        }
        for (b = 0; b < 256; b++)
            for (k = 1; k < 8; k++)
                stdb_crc32c_table[k][b] = (stdb_crc32c_table[k - 1][b] >> 8)
                                        ^ stdb_crc32c_table[0][stdb_crc32c_table[k - 1][b] & 0xff];
    #if STDB_CRC32C_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("sse4.2")) {
            stdb_crc32c_make_shift(stdb_crc32c_shift_short, STDB_CRC32C_SHORT);
            stdb_crc32c_make_shift(stdb_crc32c_shift_long, STDB_CRC32C_LONG);
            stdb_crc32c_have_hw = 1;
        }
    #endif
    }

    static inline uint32_t stdb_crc32c(uint32_t crc, const unsigned char *p, size_t n) {
        return stdb_crc32c_have_hw ? stdb_crc32c_hw(crc, p, n) : stdb_crc32c_portable(crc, p, n);
    }

    /* ------------------------------------------------------------ BLAKE2b (RFC 7693) */

    static const uint64_t stdb_blake2b_iv[8] = {
        0x6A09E667F3BCC908ull, 0xBB67AE8584CAA73Bull, 0x3C6EF372FE94F82Bull, 0xA54FF53A5F1D36F1ull,
        0x510E527FADE682D1ull, 0x9B05688C2B3E6C1Full, 0x1F83D9ABFB41BD6Bull, 0x5BE0CD19137E2179ull,
    };

    /* message word schedule; rounds 10 and 11 reuse rows 0 and 1 */
    static const uint8_t stdb_blake2b_sigma[12][16] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
        {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
        {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
        {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
        {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
        {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
        {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
        {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
        {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    };

    #define STDB_ROTR64(x, r) (((x) >> (r)) | ((x) << (64 - (r))))

    /* the mixing function G of RFC 7693 section 3.1 */
    #define STDB_B2B_G(a, b, c, d, x, y) do {          \\
        v[a] = v[a] + v[b] + (x);                       \\
        v[d] = STDB_ROTR64(v[d] ^ v[a], 32);            \\
        v[c] = v[c] + v[d];                             \\
        v[b] = STDB_ROTR64(v[b] ^ v[c], 24);            \\
        v[a] = v[a] + v[b] + (y);                       \\
        v[d] = STDB_ROTR64(v[d] ^ v[a], 16);            \\
        v[c] = v[c] + v[d];                             \\
        v[b] = STDB_ROTR64(v[b] ^ v[c], 63);            \\
    } while (0)

    /* the compression function F: one 128-byte block, ``t`` bytes hashed so far including it */
    static void stdb_blake2b_compress(uint64_t h[8], const unsigned char *block, uint64_t t, int last) {
        uint64_t v[16], m[16];
        int i, r;
        for (i = 0; i < 16; i++)
            m[i] = stdb_le64(block + 8 * i);
        for (i = 0; i < 8; i++) {
            v[i] = h[i];
            v[i + 8] = stdb_blake2b_iv[i];
        }
        v[12] ^= t;     /* low word of the 128-bit counter; the high word stays 0 (size_t input) */
        if (last)
            v[14] = ~v[14];
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC unroll 12
    #endif
        for (r = 0; r < 12; r++) {
            const uint8_t *s = stdb_blake2b_sigma[r];
            STDB_B2B_G(0, 4, 8, 12, m[s[0]], m[s[1]]);
            STDB_B2B_G(1, 5, 9, 13, m[s[2]], m[s[3]]);
            STDB_B2B_G(2, 6, 10, 14, m[s[4]], m[s[5]]);
            STDB_B2B_G(3, 7, 11, 15, m[s[6]], m[s[7]]);
            STDB_B2B_G(0, 5, 10, 15, m[s[8]], m[s[9]]);
            STDB_B2B_G(1, 6, 11, 12, m[s[10]], m[s[11]]);
            STDB_B2B_G(2, 7, 8, 13, m[s[12]], m[s[13]]);
            STDB_B2B_G(3, 4, 9, 14, m[s[14]], m[s[15]]);
        }
        for (i = 0; i < 8; i++)
            h[i] ^= v[i] ^ v[i + 8];
    }

    /* Unkeyed BLAKE2b of p[0:n], outlen (1..64) bytes into out; other outlen: nothing written. */
    static void stdb_blake2b(unsigned char *out, size_t outlen, const unsigned char *p, size_t n) {
        uint64_t h[8];
        uint64_t t = 0;
        unsigned char last[128];
        size_t i;
        if (outlen < 1 || outlen > 64)
            return;
        for (i = 0; i < 8; i++)
            h[i] = stdb_blake2b_iv[i];
        h[0] ^= 0x01010000u ^ (uint64_t)outlen;    /* parameter block: fanout 1, depth 1, no key */
        while (n > 128) {                           /* the last block, even when full, is final */
            t += 128;
            stdb_blake2b_compress(h, p, t, 0);
            p += 128;
            n -= 128;
        }
        memset(last, 0, sizeof last);
        if (n)
            memcpy(last, p, n);
        t += n;
        stdb_blake2b_compress(h, last, t, 1);
        for (i = 0; i < outlen; i++)
            out[i] = (unsigned char)(h[i >> 3] >> (8 * (i & 7)));
    }
    """
    int STDB_CRC32C_SHORT
    int STDB_CRC32C_LONG
    int stdb_crc32c_have_hw
    void stdb_crc32c_init() noexcept nogil
    uint32_t stdb_crc32c(uint32_t crc, const unsigned char* p, size_t n) noexcept nogil
    uint32_t stdb_crc32c_hw(uint32_t crc, const unsigned char* p, size_t n) noexcept nogil
    uint32_t stdb_crc32c_portable(uint32_t crc, const unsigned char* p, size_t n) noexcept nogil
    void stdb_blake2b(unsigned char* out, size_t outlen, const unsigned char* p, size_t n) noexcept nogil

stdb_crc32c_init()

cdef enum:
    NOGIL_FROM = 65536    # inputs from this size on are hashed with the GIL released

#: True when crc32c uses the SSE4.2 instruction (x86-64 CPU with SSE4.2), False for the tables
HAVE_SSE42 = bool(stdb_crc32c_have_hw)
#: bytes per stream of the short and long three-stream blocks of the SSE4.2 path (for tests)
CRC32C_SHORT_BLOCK = STDB_CRC32C_SHORT
CRC32C_LONG_BLOCK = STDB_CRC32C_LONG


cdef uint32_t crc32c(uint32_t crc, const unsigned char* p, size_t n) noexcept nogil:
    """CRC32C of p[0:n] continuing from ``crc`` (0 to start); SSE4.2 when the CPU has it."""
    return stdb_crc32c(crc, p, n)


cdef void blake2b(unsigned char* out, size_t outlen, const unsigned char* p, size_t n) noexcept nogil:
    """Unkeyed BLAKE2b of p[0:n]: ``outlen`` (1..64) bytes into ``out``."""
    stdb_blake2b(out, outlen, p, n)


cdef uint32_t _crc_buffer(object data, uint32_t crc, int path) except? 0xFFFFFFFF:
    """CRC32C of a C-contiguous buffer by ``path`` (0: dispatch, 1: SSE4.2, 2: portable)."""
    cdef Py_buffer view
    cdef uint32_t r
    cdef const unsigned char* p
    cdef size_t n
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    p = <const unsigned char*>view.buf
    n = <size_t>view.len
    try:
        if n >= NOGIL_FROM:
            with nogil:
                r = _crc_path(crc, p, n, path)
        else:
            r = _crc_path(crc, p, n, path)
    finally:
        PyBuffer_Release(&view)
    return r


cdef inline uint32_t _crc_path(uint32_t crc, const unsigned char* p, size_t n, int path) noexcept nogil:
    """CRC32C of p[0:n] by ``path`` (0: dispatch, 1: SSE4.2, 2: portable)."""
    if path == 1:
        return stdb_crc32c_hw(crc, p, n)
    if path == 2:
        return stdb_crc32c_portable(crc, p, n)
    return stdb_crc32c(crc, p, n)


def crc32c_py(data, crc=0):
    """CRC32C of ``data`` (any C-contiguous buffer: bytes, bytearray, memoryview) continuing
    from ``crc`` (0..2**32-1; 0 to start): ``crc32c.crc32c(data, crc)`` of the PyPI package."""
    return _crc_buffer(data, crc, 0)


def crc32c_fast(data, crc=0):
    """``crc32c_py`` forced onto the SSE4.2 path (for tests); RuntimeError when the CPU or the
    build has no SSE4.2 (see ``HAVE_SSE42``)."""
    if not stdb_crc32c_have_hw:
        raise RuntimeError("crc32c_fast: no SSE4.2 crc32 instruction on this CPU or build")
    return _crc_buffer(data, crc, 1)


def crc32c_portable(data, crc=0):
    """``crc32c_py`` forced onto the portable slicing-by-8 path (for tests)."""
    return _crc_buffer(data, crc, 2)


def blake2b_py(data, digest_size=64):
    """Unkeyed BLAKE2b of ``data`` (any C-contiguous buffer), ``digest_size`` (1..64) bytes:
    ``hashlib.blake2b(data, digest_size=digest_size).digest()``."""
    cdef Py_buffer view
    cdef const unsigned char* p
    cdef size_t n
    cdef Py_ssize_t k = digest_size
    cdef unsigned char* out
    if k < 1 or k > 64:
        raise ValueError(f"digest_size must be between 1 and 64, not {k}")
    result = PyBytes_FromStringAndSize(NULL, k)
    out = <unsigned char*>PyBytes_AS_STRING(result)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    p = <const unsigned char*>view.buf
    n = <size_t>view.len
    try:
        if n >= NOGIL_FROM:
            with nogil:
                stdb_blake2b(out, <size_t>k, p, n)
        else:
            stdb_blake2b(out, <size_t>k, p, n)
    finally:
        PyBuffer_Release(&view)
    return result
