# cython: language_level=3
"""The direct path into wasmtime's C API: unchecked calls and raw host callbacks."""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from cpython.ref cimport PyObject
from stdb.module._host cimport HostC, NativeHost

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

# the store context and the memory of an instance, for the import callback (no GIL)
ctypedef struct InstC:
    void* ctx                  # wasmtime_context_t* of the store (valid while the store lives)
    memory_t memory

# what the import callback gets as its env: the host, the instance, which import it is
ctypedef struct Env:
    HostC* host
    InstC* inst
    int op
    int result                 # 0 none, 1 i32, 2 i64

# what Instance.run_call did
cdef enum:
    RUN_OK = 0              # the reducer returned; out.packed is its result
    RUN_TRAP = 1            # it trapped (out.err / out.trap: for raise_trap)
    RUN_ALLOC_ZERO = 2      # stdb_alloc returned 0
    RUN_ALLOC_FAULT = 3     # stdb_alloc returned memory outside linear memory
    RUN_NO_FUEL = 4         # the engine does not meter fuel

ctypedef struct RunOut:
    void* err
    void* trap
    int64_t packed
    uint32_t alloc_ptr
    uint64_t size           # linear memory's size (RUN_ALLOC_FAULT)
    uint64_t fuel_left


cdef class Instance:
    cdef InstC c
    cdef func_t f_alloc
    cdef func_t f_call
    cdef func_t f_describe
    cdef func_t f_version
    cdef readonly object store     # keep the wasmtime-py objects alive
    cdef readonly object instance
    cdef readonly object linker
    cdef readonly NativeHost host  # the imports
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
    cdef int run_call(self, int reducer, const unsigned char* args, Py_ssize_t n, uint64_t fuel,
                      uint64_t ticks, RunOut* out) noexcept nogil
    cdef raise_trap(self, void* err, void* trap)
    cdef object outcome(self, int st, RunOut* out, Py_ssize_t n)
