# cython: language_level=3
"""The websocket frame parser (stdb/server/_frames.pyx): ``parse_frame`` is its whole contract,
a Python-level function (nothing is cimported from it)."""

cdef void unmask(unsigned char* out, const unsigned char* data, Py_ssize_t n,
                 const unsigned char* mask) noexcept nogil
