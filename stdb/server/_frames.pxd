# cython: language_level=3
"""The websocket frames in C (stdb/server/_frames.pyx): ``parse_frame``, ``parse_messages``,
``frame_messages`` and ``send_each`` are its contract, Python-level functions; ``unmask`` is what a module may
cimport."""

cdef void unmask(unsigned char* out, const unsigned char* data, Py_ssize_t n,
                 const unsigned char* mask) noexcept nogil
