# cython: language_level=3
"""CRC32C and BLAKE2b in C, usable without the GIL."""
from libc.stdint cimport uint8_t, uint32_t, uint64_t

# CRC32C (Castagnoli) of p[0:n] continuing from ``crc`` (0 to start), the same value as the
# `crc32c` PyPI package's crc32c.crc32c(data, crc)
cdef uint32_t crc32c(uint32_t crc, const unsigned char* p, size_t n) noexcept nogil

# BLAKE2b (RFC 7693), unkeyed, digest of outlen bytes (1..64) of p[0:n] into out
cdef void blake2b(unsigned char* out, size_t outlen, const unsigned char* p, size_t n) noexcept nogil
