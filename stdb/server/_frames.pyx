# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The websocket layer's frames in C (RFC 6455 section 5.2).

- ``parse_frame``: one client frame out of the receive buffer, its header checked and its
  payload unmasked in one pass.
- ``parse_messages``: the run of whole binary messages (one final frame each, the shape every
  request has) at the buffer's position, up to a count: what the poller hands the databases
  from one read, without a Python call per frame.  It stops before anything else (a control
  frame, a fragment, a text message, a frame that breaks the protocol): ``parse_frame`` reads
  that one.
- ``frame_messages``: server frames (unmasked, final, binary) for a list of messages, in one
  buffer: one write for a batch's answers.
- ``send_each``: each of a list of buffers written to its socket without waiting, all in one
  loop without the GIL: a commit's diffs to a thousand subscribers are a thousand ``send``
  calls and no Python between them.

Each is its namesake in ``stdb.server.frames_reference`` — the same arguments, results and
errors — without Python objects per header field and with the unmasking done eight bytes at a
time.  tests/test_websocket.py and the ``websocket`` fuzz target check they agree.
"""

from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE

from libc.errno cimport errno, EINTR, EAGAIN
from libc.stdlib cimport malloc, free

from stdb.server.frames_reference import FrameError

cdef extern from "<errno.h>":
    enum:
        EWOULDBLOCK

cdef extern from "<sys/socket.h>" nogil:
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    enum:
        MSG_DONTWAIT
        MSG_NOSIGNAL

cdef enum:
    OP_CONT = 0x0
    OP_TEXT = 0x1
    OP_BINARY = 0x2
    OP_CLOSE = 0x8
    OP_PING = 0x9
    OP_PONG = 0xA
    PROTOCOL_ERROR = 1002
    MESSAGE_TOO_BIG = 1009


cdef void unmask(unsigned char* out, const unsigned char* data, Py_ssize_t n,
                 const unsigned char* mask) noexcept nogil:
    cdef uint64_t m8, w
    cdef Py_ssize_t i = 0
    cdef unsigned char m4[8]
    memcpy(m4, mask, 4)
    memcpy(m4 + 4, mask, 4)
    memcpy(&m8, m4, 8)
    while i + 8 <= n:
        memcpy(&w, data + i, 8)
        w ^= m8
        memcpy(out + i, &w, 8)
        i += 8
    while i < n:
        out[i] = data[i] ^ mask[i & 3]
        i += 1


cdef const unsigned char* _buffer(buf, Py_ssize_t* size) except NULL:
    if type(buf) is bytearray:
        size[0] = PyByteArray_GET_SIZE(buf)
        return <const unsigned char*>PyByteArray_AS_STRING(buf)
    if type(buf) is bytes:
        size[0] = PyBytes_GET_SIZE(buf)
        return <const unsigned char*>PyBytes_AS_STRING(buf)
    raise TypeError(f"a frame buffer is bytes or a bytearray, not {type(buf).__name__}")


def parse_frame(buf, Py_ssize_t pos, Py_ssize_t max_message, Py_ssize_t parts_size, bint fragmented):
    """The frame at ``buf[pos:]`` (a bytearray or bytes): (opcode, final, unmasked payload,
    where it ends), or None when more bytes are needed; FrameError when it breaks the protocol."""
    cdef const unsigned char* p
    cdef Py_ssize_t size, avail, h = 2, end
    cdef uint64_t n
    cdef int k, op
    cdef uint8_t b0, b1
    cdef bint fin
    cdef bytes payload
    p = _buffer(buf, &size)
    if pos < 0 or pos > size:
        raise ValueError(f"position {pos} outside a buffer of {size} bytes")
    avail = size - pos
    if avail < 2:
        return None
    b0 = p[pos]
    b1 = p[pos + 1]
    n = b1 & 0x7F
    if n == 126:
        if avail < 4:
            return None
        n = (<uint64_t>p[pos + 2] << 8) | p[pos + 3]
        h = 4
    elif n == 127:
        if avail < 10:
            return None
        n = 0
        for k in range(8):
            n = (n << 8) | p[pos + 2 + k]
        h = 10
    op = b0 & 0x0F
    fin = (b0 & 0x80) != 0
    if b0 & 0x70:
        raise FrameError(PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
    if not b1 & 0x80:
        raise FrameError(PROTOCOL_ERROR, "client frames must be masked")
    if op >= 0x8:
        if not fin or n > 125:
            raise FrameError(PROTOCOL_ERROR, "control frames must be final and at most 125 bytes")
        if op != OP_CLOSE and op != OP_PING and op != OP_PONG:
            raise FrameError(PROTOCOL_ERROR, f"unknown opcode {op:#x}")
    elif op == OP_CONT:
        if not fragmented:
            raise FrameError(PROTOCOL_ERROR, "continuation frame without a message to continue")
    elif op == OP_TEXT or op == OP_BINARY:
        if fragmented:
            raise FrameError(PROTOCOL_ERROR, "new message before the fragmented one ended")
    else:
        raise FrameError(PROTOCOL_ERROR, f"unknown opcode {op:#x}")
    # n is at most 2**64 - 1: compared without overflow
    if op < 0x8 and (parts_size > max_message or n > <uint64_t>(max_message - parts_size)):
        raise FrameError(MESSAGE_TOO_BIG, f"message of more than {max_message:,} bytes")
    if avail < h + 4 or n > <uint64_t>(avail - h - 4):
        return None
    end = pos + h + 4 + <Py_ssize_t>n
    payload = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>n)
    unmask(<unsigned char*>PyBytes_AS_STRING(payload), p + pos + h + 4, <Py_ssize_t>n, p + pos + h)
    return op, fin, payload, end


def parse_messages(buf, Py_ssize_t pos, Py_ssize_t max_message, Py_ssize_t limit):
    """The whole binary messages of one final, masked frame each at ``buf[pos:]``, at most
    ``limit`` of them, unmasked: (their payloads, where they end).  Stops before a frame of
    any other kind, one that is not all in the buffer, or one longer than ``max_message`` (the
    caller reads it with ``parse_frame``, which raises what it breaks).  No fragmented message
    may be in progress."""
    cdef const unsigned char* p
    cdef Py_ssize_t size, avail, h, end
    cdef uint64_t n
    cdef int k
    cdef uint8_t b1
    cdef bytes payload
    cdef list out = []
    p = _buffer(buf, &size)
    if pos < 0 or pos > size:
        raise ValueError(f"position {pos} outside a buffer of {size} bytes")
    while limit > 0:
        avail = size - pos
        if avail < 2 or p[pos] != 0x82:           # final, no reserved bits, binary
            break
        b1 = p[pos + 1]
        if not b1 & 0x80:                        # unmasked: parse_frame refuses it
            break
        n = b1 & 0x7F
        h = 2
        if n == 126:
            if avail < 4:
                break
            n = (<uint64_t>p[pos + 2] << 8) | p[pos + 3]
            h = 4
        elif n == 127:
            if avail < 10:
                break
            n = 0
            for k in range(8):
                n = (n << 8) | p[pos + 2 + k]
            h = 10
        if max_message < 0 or n > <uint64_t>max_message or avail < h + 4 or n > <uint64_t>(avail - h - 4):
            break
        end = pos + h + 4 + <Py_ssize_t>n
        payload = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>n)
        unmask(<unsigned char*>PyBytes_AS_STRING(payload), p + pos + h + 4, <Py_ssize_t>n, p + pos + h)
        out.append(payload)
        pos = end
        limit -= 1
    return out, pos


def frame_messages(list messages):
    """One final, unmasked binary frame (server to client) for each of ``messages`` (bytes),
    concatenated."""
    cdef Py_ssize_t i, count = PyList_GET_SIZE(messages), total = 0, n
    cdef int k
    cdef object m
    cdef bytes out
    cdef unsigned char* w
    for i in range(count):
        m = <object>PyList_GET_ITEM(messages, i)
        if not isinstance(m, bytes):
            raise TypeError(f"a message to frame is bytes, not {type(m).__name__}")
        n = PyBytes_GET_SIZE(m)
        total += n + (2 if n < 126 else 4 if n < 65536 else 10)
    out = PyBytes_FromStringAndSize(NULL, total)
    w = <unsigned char*>PyBytes_AS_STRING(out)
    for i in range(count):
        m = <object>PyList_GET_ITEM(messages, i)
        n = PyBytes_GET_SIZE(m)
        w[0] = 0x82
        if n < 126:
            w[1] = <unsigned char>n
            w += 2
        elif n < 65536:
            w[1] = 126
            w[2] = <unsigned char>(n >> 8)
            w[3] = <unsigned char>n
            w += 4
        else:
            w[1] = 127
            for k in range(8):
                w[2 + k] = <unsigned char>((<uint64_t>n) >> (56 - 8 * k))
            w += 10
        memcpy(w, PyBytes_AS_STRING(m), n)
        w += n
    return out


def send_each(list fds, list buffers):
    """Write ``buffers[i]`` (bytes) to the socket ``fds[i]`` without waiting, for each ``i``, in
    order: how many bytes of each were written (0 when its socket takes nothing now, ``-errno``
    when the write failed)."""
    cdef Py_ssize_t i, count = PyList_GET_SIZE(fds)
    cdef int* fd
    cdef const char** data
    cdef Py_ssize_t* size
    cdef ssize_t* done
    cdef ssize_t r
    cdef object b
    if PyList_GET_SIZE(buffers) != count:
        raise ValueError(f"{count} sockets and {PyList_GET_SIZE(buffers)} buffers")
    fd = <int*>malloc(count * sizeof(int) + 1)
    data = <const char**>malloc(count * sizeof(char*) + 1)
    size = <Py_ssize_t*>malloc(count * sizeof(Py_ssize_t) + 1)
    done = <ssize_t*>malloc(count * sizeof(ssize_t) + 1)
    try:
        if fd == NULL or data == NULL or size == NULL or done == NULL:
            raise MemoryError()
        for i in range(count):
            b = <object>PyList_GET_ITEM(buffers, i)
            if not isinstance(b, bytes):
                raise TypeError(f"a buffer to send is bytes, not {type(b).__name__}")
            fd[i] = <object>PyList_GET_ITEM(fds, i)
            data[i] = PyBytes_AS_STRING(b)
            size[i] = PyBytes_GET_SIZE(b)
        with nogil:             # the buffers stay alive: the caller's list holds them
            for i in range(count):
                while True:
                    r = send(fd[i], data[i], size[i], MSG_DONTWAIT | MSG_NOSIGNAL)
                    if r >= 0 or errno != EINTR:
                        break
                if r < 0:
                    r = -errno
                    if errno == EAGAIN:
                        r = 0
                    if errno == EWOULDBLOCK:         # (the same value as EAGAIN on Linux)
                        r = 0
                done[i] = r
        return [done[i] for i in range(count)]
    finally:
        free(fd)
        free(data)
        free(size)
        free(done)
