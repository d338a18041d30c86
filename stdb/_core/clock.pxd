# The clocks the C paths read without the GIL: monotonic (deadlines, timings) and real time
# (transaction timestamps).  Inline only: each module that cimports them compiles its own copy.

from libc.stdint cimport int64_t

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    int CLOCK_REALTIME
    int CLOCK_MONOTONIC


# Monotonic seconds
cdef inline double mono_s() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec + t.tv_nsec * 1e-9


# Monotonic nanoseconds
cdef inline int64_t mono_ns() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return <int64_t>t.tv_sec * 1000000000 + t.tv_nsec


# Microseconds since the Unix epoch
cdef inline int64_t real_us() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_REALTIME, &t)
    return <int64_t>t.tv_sec * 1000000 + t.tv_nsec // 1000
