# cython: language_level=3
"""The commit log's queue in C: appends, the writer's hand-offs and the waits for durability,
all without the GIL (stdb/storage/commitlog.py drives it)."""

from libc.stdint cimport uint64_t, int64_t
from stdb._core.rowbytes cimport CBuf

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass

# append_c's answers
cpdef enum:
    LQ_OK = 0
    LQ_FAILED = -1            # the log failed: nothing more is acknowledged
    LQ_CLOSED = -2            # the log is closing or closed
    LQ_OFFSET = -3            # not the next offset
    LQ_NOMEM = -4


cdef class LogQueue:
    cdef pthread_mutex_t mu
    cdef pthread_cond_t work          # the writer waits on it: records, closing, a waiter
    cdef pthread_cond_t done          # waiters for durability wait on it
    cdef CBuf data                    # the queued records, back to back
    cdef Py_ssize_t* ends             # where each queued record ends in data
    cdef Py_ssize_t nq
    cdef Py_ssize_t capq
    cdef readonly uint64_t qfirst     # the offset of the first queued record
    cdef readonly uint64_t next       # the offset the next append gets
    cdef readonly int64_t written     # every record up to here is written (-1: none)
    cdef readonly int64_t durable     # ... and on disk
    cdef readonly bint failed
    cdef readonly bint closing
    cdef bint writer_idle
    cdef readonly int durable_waiters
    cdef readonly Py_ssize_t last_bytes     # the size of the last record appended

    # queue a record built for ``offset`` (which must be the next): an LQ_* answer
    cdef int append_c(self, const unsigned char* rec, Py_ssize_t n, uint64_t offset) noexcept nogil
