# cython: language_level=3
"""The "stdb" imports in C (docs/abi.md): what a reducer may do to its tables, run without the
GIL on the native table and transaction API.  stdb/module/_wasm.pyx's import callback calls
``host_dispatch``; ``stdb.module.host.ModuleHost`` is the pure-Python twin."""

from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from stdb._core.rowbytes cimport RowSpec, CBuf, Err
from stdb._core.table cimport TableC
from stdb._core.txn cimport TxC

# the imports, by number (the order _wasm.IMPORTS lists them)
cdef enum Op:
    OP_TABLE_ID, OP_INDEX_ID, OP_INSERT, OP_UPDATE, OP_DELETE, OP_SEEK, OP_RANGE, OP_SCAN,
    OP_ITER_NEXT, OP_ITER_CLOSE, OP_LOG, OP_SENDER, OP_CONNECTION_ID, OP_TIMESTAMP,
    OP_RANDOM_SEED, OP_ERROR_DETAIL, OP_FIND

cdef enum:
    MAX_ITERS = 1024
    MAX_LOG_BYTES = 1048576       # module log text kept per call (the rest is counted)
    FAULT_NONE = 0
    FAULT_TRAP = 1                # the module passed memory outside its linear memory
    FAULT_HOST = 2                # the host failed (out of memory, a broken invariant)

ctypedef struct HostIndex:
    char* name
    int name_len
    bint btree                    # range scans allowed
    int ncols
    RowSpec* key                  # the index columns as a row named "table.index"

ctypedef struct HostTable:
    TableC* t                     # bound to the datastore's table before each call
    char* name
    int name_len
    int nidx
    HostIndex* idx
    int pk                        # the primary key's index number, -1 when none
    int ncols

ctypedef struct HostIter:
    int handle                    # 0: a free slot
    int tid
    uint64_t* ids                 # the row ids it returns, from pos on
    Py_ssize_t n
    Py_ssize_t pos
    bint copied                   # the rows were copied (framed, in rows) before a write
    CBuf rows
    Py_ssize_t rpos

ctypedef struct HostC:
    int ntables
    HostTable* tables
    TxC* tx                       # the call's transaction; NULL outside a call
    unsigned char sender[32]
    unsigned char conn[16]
    int64_t timestamp
    int64_t seed
    bint seed_known
    CBuf reducer                  # the call's reducer name (UTF-8)
    CBuf last_error
    HostIter* iters               # MAX_ITERS slots
    int iters_high                # slots [0, iters_high) have been used
    int open_iters
    int next_handle
    Py_ssize_t max_row_bytes
    Py_ssize_t max_rows_per_batch
    CBuf logs                     # u8 level, u32 length, text; per call
    Py_ssize_t logs_dropped
    Py_ssize_t log_bytes_dropped
    CBuf scratch
    CBuf key_lo
    CBuf key_hi
    Py_ssize_t* starts
    int fault                     # FAULT_*: why the import traps the call
    char fault_msg[256]
    int inject_op                 # tests: the next call of this import fails as the host (-1: none)
    bint timing                   # benchmarks: time every import (host_ns, host_calls)
    int64_t host_ns
    int64_t host_calls

# Run import ``op`` with its i32 arguments over linear memory mem[0:size]; its result (i32 or
# i64, none for log/sender/connection_id).  h.fault set: the call must trap with h.fault_msg.
cdef int64_t host_dispatch(HostC* h, int op, unsigned char* mem, uint64_t size,
                           const int32_t* a) noexcept nogil

# the start and end of a call (what NativeHost.begin_call / end_call do, from C)
cdef int host_begin(HostC* h, TxC* tx, const unsigned char* sender, const unsigned char* conn,
                    int64_t timestamp, const unsigned char* reducer, Py_ssize_t rlen) noexcept nogil
cdef void host_end(HostC* h) noexcept nogil

cdef class NativeHost:
    cdef HostC h
    cdef readonly object schema
    cdef public object limits
    cdef public object logger
    cdef public object sink
    cdef readonly object recent_logs
    cdef list bound               # the Table objects bound (kept alive)
    cdef object bound_ds          # the datastore of the binding, and its generation then
    cdef Py_ssize_t bound_gen
    cdef readonly object reducer
    cdef readonly object tx       # the call's Transaction (None outside a call)
    cdef _run(self, int op, list args, list blobs, Py_ssize_t out_cap)
    cdef int bind_to(self, object datastore, Py_ssize_t generation) except -1
