# cython: language_level=3
"""The commit log's queue in C.

``CommitLog`` (stdb/storage/commitlog.py) appends records here and its writer thread takes
them, group by group, to write them into LMDB; callers wait here until their offset is durable.
Every step takes this queue's own mutex and none needs the GIL: a reducer call appends its
commit record from C (stdb/module/_call.pyx), the writer sleeps in C until there is work, and a
``wait_durable`` caller sleeps in C until the writer says its offset is on disk.  With the
queue in Python (a list and a threading.Condition), every append and every hand-off needed the
GIL, and the writer's wake-ups took it from the thread running reducers.

The records of a group reach the writer as one ``Group``: one bytes object and where each
record ends, cut into LMDB values of at most ``batch_bytes`` in C (log layout 2,
docs/log-format.md).
"""

cimport cython
from libc.stdint cimport uint64_t, int64_t
from libc.string cimport memcpy, memmove, memset
from cpython.mem cimport PyMem_RawRealloc, PyMem_RawFree
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

from stdb._core.rowbytes cimport CBuf, cbuf_reserve, cbuf_free

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_condattr_t:
        pass
    int pthread_mutex_init(pthread_mutex_t* m, void* attr)
    int pthread_mutex_destroy(pthread_mutex_t* m)
    int pthread_mutex_lock(pthread_mutex_t* m)
    int pthread_mutex_unlock(pthread_mutex_t* m)
    int pthread_condattr_init(pthread_condattr_t* a)
    int pthread_condattr_setclock(pthread_condattr_t* a, int clock)
    int pthread_condattr_destroy(pthread_condattr_t* a)
    int pthread_cond_init(pthread_cond_t* c, pthread_condattr_t* a)
    int pthread_cond_destroy(pthread_cond_t* c)
    int pthread_cond_wait(pthread_cond_t* c, pthread_mutex_t* m)
    int pthread_cond_signal(pthread_cond_t* c)
    int pthread_cond_broadcast(pthread_cond_t* c)

from stdb._core.clock cimport CLOCK_MONOTONIC, time_t, timespec, mono_s as _now

cdef extern from "<pthread.h>" nogil:
    int pthread_cond_timedwait(pthread_cond_t* c, pthread_mutex_t* m, const timespec* abstime)


cdef inline void _timed_wait(pthread_cond_t* c, pthread_mutex_t* m, double until) noexcept nogil:
    """Wait on ``c`` until signalled or until ``until`` (monotonic seconds; < 0: no limit)."""
    cdef timespec ts
    if until < 0:
        pthread_cond_wait(c, m)
        return
    ts.tv_sec = <time_t>until
    ts.tv_nsec = <long>((until - <double>ts.tv_sec) * 1e9)
    if ts.tv_nsec >= 1000000000:
        ts.tv_nsec = 999999999
    pthread_cond_timedwait(c, m, &ts)


def monotonic():
    """The clock the queue's deadlines use (CLOCK_MONOTONIC, seconds)."""
    return _now()


@cython.final
cdef class Group:
    """The records a writer took: one bytes object (``data``) and where each record ends."""

    cdef readonly uint64_t first      # the offset of the first record
    cdef readonly bytes data
    cdef Py_ssize_t* ends
    cdef Py_ssize_t n

    def __dealloc__(self):
        PyMem_RawFree(self.ends)

    def __len__(self):
        return self.n

    def __getitem__(self, Py_ssize_t i):
        """Record ``i`` (bytes)."""
        cdef Py_ssize_t start
        if i < 0:
            i += self.n
        if i < 0 or i >= self.n:
            raise IndexError("group index out of range")
        start = self.ends[i - 1] if i else 0
        return self.data[start:self.ends[i]]

    @property
    def nbytes(self):
        return PyBytes_GET_SIZE(self.data)

    def values(self, Py_ssize_t batch_bytes):
        """(key, value) items that store the group: runs of consecutive records joined into
        values of at most ``batch_bytes`` (a bigger record alone), each under the offset of its
        first record as the log's key (u64 big-endian)."""
        cdef list items = []
        cdef Py_ssize_t i, run = 0, lo
        cdef Py_ssize_t total = PyBytes_GET_SIZE(self.data)
        if self.n == 1 or total <= batch_bytes:
            return [(_key(self.first), self.data)]
        for i in range(self.n):
            lo = self.ends[i - 1] if i else 0
            if i > run and self.ends[i] - (self.ends[run - 1] if run else 0) > batch_bytes:
                items.append((_key(self.first + run), self.data[(self.ends[run - 1] if run else 0):lo]))
                run = i
        items.append((_key(self.first + run), self.data[(self.ends[run - 1] if run else 0):]))
        return items


cdef bytes _key(uint64_t offset):
    cdef unsigned char k[8]
    cdef int i
    for i in range(8):
        k[i] = (offset >> (8 * (7 - i))) & 0xFF
    return PyBytes_FromStringAndSize(<char*>k, 8)


@cython.final
cdef class LogQueue:
    """Records of offsets qfirst, qfirst + 1, ... waiting for the writer; the written and
    durable offsets; the failed and closing flags.  Thread-safe."""

    def __cinit__(self, uint64_t next_offset):
        cdef pthread_condattr_t a
        pthread_mutex_init(&self.mu, NULL)
        pthread_condattr_init(&a)
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC)
        pthread_cond_init(&self.work, &a)
        pthread_cond_init(&self.done, &a)
        pthread_condattr_destroy(&a)
        memset(&self.data, 0, sizeof(CBuf))
        self.qfirst = next_offset
        self.next = next_offset
        self.written = <int64_t>next_offset - 1
        self.durable = <int64_t>next_offset - 1

    def __dealloc__(self):
        cbuf_free(&self.data)
        PyMem_RawFree(self.ends)
        pthread_cond_destroy(&self.work)
        pthread_cond_destroy(&self.done)
        pthread_mutex_destroy(&self.mu)

    # ---- appending

    cdef int append_c(self, const unsigned char* rec, Py_ssize_t n, uint64_t offset) noexcept nogil:
        cdef Py_ssize_t cap
        cdef Py_ssize_t* ne
        cdef int r = LQ_OK
        pthread_mutex_lock(&self.mu)
        if self.failed:
            r = LQ_FAILED
        elif self.closing:
            r = LQ_CLOSED
        elif offset != self.next:
            r = LQ_OFFSET
        elif cbuf_reserve(&self.data, n) < 0:
            r = LQ_NOMEM
        elif self.nq == self.capq:
            cap = self.capq * 2 if self.capq else 1024
            ne = <Py_ssize_t*>PyMem_RawRealloc(self.ends, cap * sizeof(Py_ssize_t))
            if ne == NULL:
                r = LQ_NOMEM
            else:
                self.ends = ne
                self.capq = cap
        if r == LQ_OK:
            memcpy(self.data.data + self.data.len, rec, n)
            self.data.len += n
            self.ends[self.nq] = self.data.len
            self.nq += 1
            self.next = offset + 1
            self.last_bytes = n
            if self.writer_idle:
                self.writer_idle = False
                pthread_cond_signal(&self.work)
        pthread_mutex_unlock(&self.mu)
        return r

    def append(self, bytes rec, uint64_t offset):
        """Queue ``rec`` for ``offset``: an LQ_* answer (0: queued)."""
        cdef int r
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(rec)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(rec)
        with nogil:
            r = self.append_c(p, n, offset)
        return r

    # ---- the writer

    def wait_work(self, double until):
        """The writer: wait until records are queued or the log closes, or until ``until``
        (monotonic seconds; < 0: no limit).  Whether there is something to do."""
        cdef bint any
        with nogil:
            pthread_mutex_lock(&self.mu)
            while self.nq == 0 and not self.closing:
                self.writer_idle = True
                if until >= 0 and _now() >= until:
                    break
                _timed_wait(&self.work, &self.mu, until)
            self.writer_idle = False
            any = self.nq > 0 or self.closing
            pthread_mutex_unlock(&self.mu)
        return any

    def pace(self, double until):
        """The writer, between groups under load: wait until ``until`` unless the log closes
        or someone waits for durability (appends do not end it)."""
        with nogil:
            pthread_mutex_lock(&self.mu)
            while not self.closing and self.durable_waiters == 0 and _now() < until:
                _timed_wait(&self.work, &self.mu, until)
            pthread_mutex_unlock(&self.mu)

    def take(self, Py_ssize_t max_records):
        """Take up to ``max_records`` queued records as a Group (None when none are queued).
        Only the writer takes, and appends only add at the end, so the records counted first
        are still the first ones when they are copied out."""
        cdef Group g
        cdef Py_ssize_t k, nbytes, i
        with nogil:
            pthread_mutex_lock(&self.mu)
            k = self.nq if self.nq < max_records else max_records
            nbytes = self.ends[k - 1] if k else 0
            pthread_mutex_unlock(&self.mu)
        if k == 0:
            return None
        g = Group.__new__(Group)
        g.first = self.qfirst
        g.n = k
        g.data = PyBytes_FromStringAndSize(NULL, nbytes)
        g.ends = <Py_ssize_t*>PyMem_RawRealloc(NULL, k * sizeof(Py_ssize_t))
        if g.ends == NULL:
            raise MemoryError()
        cdef char* dst = PyBytes_AS_STRING(g.data)
        with nogil:
            pthread_mutex_lock(&self.mu)
            memcpy(dst, self.data.data, nbytes)
            memcpy(g.ends, self.ends, k * sizeof(Py_ssize_t))
            # what stays queued moves to the front
            memmove(self.data.data, self.data.data + nbytes, self.data.len - nbytes)
            self.data.len -= nbytes
            for i in range(self.nq - k):
                self.ends[i] = self.ends[i + k] - nbytes
            self.nq -= k
            self.qfirst += k
            pthread_mutex_unlock(&self.mu)
        return g

    @property
    def queued(self):
        return self.nq

    def is_closing_and_empty(self):
        cdef bint r
        with nogil:
            pthread_mutex_lock(&self.mu)
            r = self.closing and self.nq == 0
            pthread_mutex_unlock(&self.mu)
        return r

    def mark_written(self, int64_t last, bint durable):
        """The writer wrote every record up to ``last`` (``durable``: and it is on disk)."""
        with nogil:
            pthread_mutex_lock(&self.mu)
            self.written = last
            if durable:
                self.durable = last
                pthread_cond_broadcast(&self.done)
            pthread_mutex_unlock(&self.mu)

    def mark_durable(self, int64_t last):
        with nogil:
            pthread_mutex_lock(&self.mu)
            if last > self.durable:
                self.durable = last
            pthread_cond_broadcast(&self.done)
            pthread_mutex_unlock(&self.mu)

    def fail(self):
        """The writer failed: nothing more is acknowledged; what was queued is dropped."""
        with nogil:
            pthread_mutex_lock(&self.mu)
            self.failed = True
            self.data.len = 0
            self.nq = 0
            pthread_cond_broadcast(&self.done)
            pthread_cond_broadcast(&self.work)
            pthread_mutex_unlock(&self.mu)

    def close(self):
        """Ask the writer to write what is queued and stop."""
        with nogil:
            pthread_mutex_lock(&self.mu)
            self.closing = True
            pthread_cond_broadcast(&self.work)
            pthread_cond_broadcast(&self.done)
            pthread_mutex_unlock(&self.mu)

    def finished(self):
        """The writer stopped: wake every waiter."""
        with nogil:
            pthread_mutex_lock(&self.mu)
            pthread_cond_broadcast(&self.done)
            pthread_mutex_unlock(&self.mu)

    # ---- waiting for durability

    def wait_durable(self, int64_t offset, double until):
        """Wait until ``offset`` is durable, the log fails, ``offset`` turns out never appended,
        or ``until`` passes (monotonic seconds; < 0: no limit): 0 durable, -1 failed,
        -2 never appended, -3 timed out, -4 the writer stopped (closed) first."""
        cdef int r = 0
        with nogil:
            pthread_mutex_lock(&self.mu)
            self.durable_waiters += 1
            pthread_cond_broadcast(&self.work)        # a pacing writer must not delay
            while self.durable < offset:
                if self.failed:
                    r = -1
                    break
                if <uint64_t>offset >= self.next:
                    r = -2
                    break
                if until >= 0 and _now() >= until:
                    r = -3
                    break
                _timed_wait(&self.done, &self.mu, until)
            self.durable_waiters -= 1
            pthread_mutex_unlock(&self.mu)
        return r
