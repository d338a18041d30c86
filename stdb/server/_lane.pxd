# cython: language_level=3
"""The CallReducer lane (stdb/server/_lane.pyx): CBOR CallReducer in, row-codec arguments out;
a committed call's TransactionUpdate written as CBOR."""

from stdb._core.codec cimport Buf
cimport cython


@cython.final
cdef class CallLane:
    cdef dict by_name
    cdef Buf out
