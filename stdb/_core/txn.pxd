# cython: language_level=3
"""Transactions in C: a write set with undo over native tables, the commit's delta as encoded
rows, and the commit-log record built straight from it (docs/log-format.md), without the GIL."""

from libc.stdint cimport uint32_t, uint64_t, int64_t
from stdb._core.rowbytes cimport CBuf, Err
from stdb._core.table cimport Table, TableC, SeqC

# a row id the transaction touched, with the row that was there when it first did
ctypedef struct WsEntry:
    uint64_t rowid
    Py_ssize_t off            # the original row's bytes in the write set's arena; -1: the slot was empty
    Py_ssize_t len

# what one transaction did to one table
ctypedef struct WriteSet:
    TableC* t
    WsEntry* entries          # in the order the row ids were first touched
    Py_ssize_t n
    Py_ssize_t cap
    uint64_t* map             # open addressing: entry number + 1 by row id (0: empty)
    Py_ssize_t mapcap
    CBuf arena                # original rows, back to back
    SeqC* seqs                # the table's sequences when the transaction first wrote to it
    int nseq

# one changed table's part of the delta
ctypedef struct DeltaTable:
    int ws                    # its write set
    Py_ssize_t start          # its section in TxC.delta
    Py_ssize_t rows           # where its framed rows begin (deletes, then inserts)
    uint32_t ndel
    uint32_t nins

ctypedef struct TxC:
    WriteSet* sets
    int nsets
    int capsets
    # the delta, as the changes of a log record: per changed table, u16 name length, name,
    # u32 deletes, u32 inserts, then each row as u32 length + row codec bytes, deletes first
    CBuf delta
    DeltaTable* dt
    int ndt
    int capdt
    bint delta_ready          # the delta matches the writes
    CBuf cur                  # scratch: a current row
    CBuf pairs                # scratch: rows of one table, for cancelling delete/insert pairs
    CBuf hashes

cdef void tx_init(TxC* tx) noexcept nogil
cdef void tx_free(TxC* tx) noexcept nogil
# forget the write sets (after commit or rollback); buffers are kept for the next transaction
cdef void tx_reset(TxC* tx) noexcept nogil
cdef WriteSet* tx_set(TxC* tx, TableC* t) noexcept nogil            # NULL: no memory

# Writes through the transaction (0, or -1 with ``e``; a refused write changes nothing)
cdef int tx_insert(TxC* tx, TableC* t, unsigned char* row, Py_ssize_t n, int flags, uint64_t* rowid,
                   Err* e) noexcept nogil
cdef int tx_update(TxC* tx, TableC* t, uint64_t rowid, unsigned char* row, Py_ssize_t n, int flags,
                   uint64_t* newid, Err* e) noexcept nogil
cdef int tx_delete(TxC* tx, TableC* t, uint64_t rowid, Err* e) noexcept nogil

# The delta of the writes so far into tx.delta / tx.dt: per touched row id, the original row
# (if any) deleted and the current row (if any) inserted; identical rows cancel (an update
# that changes nothing, a row deleted and put back).  0, -1 no memory.
cdef int tx_delta(TxC* tx, Err* e) noexcept nogil
# Undo every write (the tables as they were at the start); 0, -1 (an internal error)
cdef int tx_rollback(TxC* tx, Err* e) noexcept nogil
# The TX log record of the delta (tx_delta first): header + body + CRC32C, appended to ``out``.
# ``caller`` NULL: none.
cdef int tx_record(TxC* tx, uint64_t offset, int64_t timestamp, const unsigned char* caller,
                   const unsigned char* reducer, Py_ssize_t rlen, const unsigned char* args,
                   Py_ssize_t alen, CBuf* out, Err* e) noexcept nogil

# the log record framing (logformat.py): version, kind TX, header size
cdef enum:
    LOG_FORMAT_VERSION = 1
    LOG_KIND_TX = 1
    LOG_HEADER = 12
# the 12-byte header in front of a body at out[start:], CRC32C included
cdef void frame_record(unsigned char* rec, int kind, Py_ssize_t body_len) noexcept nogil


cdef class NativeTx:
    cdef TxC tx
    cdef list tables          # the Table objects the write sets point at (kept alive)
    cdef object _table_of(self, TableC* c)
    cdef void _keep(self, Table t)
