# cython: language_level=3
"""The direct path into wasmtime's C API: unchecked calls and raw host callbacks."""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from cpython.ref cimport PyObject

ctypedef union val_raw:
    int32_t i32
    int64_t i64
    float f32
    double f64
    uint8_t v128[16]

ctypedef struct func_t:
    uint64_t store_id
    void* priv

ctypedef struct memory_head:
    uint64_t store_id
    uint32_t priv1

ctypedef struct memory_t:
    memory_head head
    uint32_t priv2

# what a host callback gets as its env: the instance (borrowed) and which import it is
ctypedef struct Env:
    PyObject* inst
    int op


cdef class Instance:
    cdef void* ctx                 # wasmtime_context_t* of the store (valid while store lives)
    cdef memory_t memory
    cdef func_t f_alloc
    cdef func_t f_call
    cdef func_t f_describe
    cdef func_t f_version
    cdef readonly object store     # keep the wasmtime-py objects alive
    cdef readonly object instance
    cdef readonly object linker
    cdef public object host        # the Python object whose methods implement the imports
    cdef public object host_error  # an unexpected exception raised by the host during a call
    cdef public str trap_note      # why the host trapped the call (bad pointer, ...)
    cdef uint64_t fuel_limit
    cdef Env* envs
    cdef int nenvs

    cdef uint8_t* span(self, int64_t ptr, int64_t length) except NULL
    cdef bytes read(self, int64_t ptr, int64_t length)
    cdef int write(self, int64_t ptr, bytes data) except -1
    cdef _invoke(self, func_t* f, val_raw* vals, size_t n, uint64_t fuel, uint64_t ticks)
    cdef int64_t _call3(self, int32_t a, int32_t b, int32_t c, uint64_t fuel, uint64_t ticks) except? -1
    cdef val_raw _call0(self, func_t* f, uint64_t fuel, uint64_t ticks) except *
