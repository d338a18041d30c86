# cython: language_level=3
"""A table: rows in packed columnar pages, its indexes and auto-increment sequences.

``TableC`` and the ``tbl_*`` functions are the native lane's table API: rows in and out as
row-codec bytes, keys in the key codec, errors as ``Err``, no Python object, no GIL.  ``Table``
is the Python API over the same functions.
"""

from libc.stdint cimport uint64_t, int64_t
from cpython.mem cimport PyMem_RawRealloc, PyMem_RawFree
from stdb._core.codec cimport RowCodec, Buf
from stdb._core.rowbytes cimport RowSpec, CBuf, Err
from stdb._core.page cimport LayoutC, PageC, page_live
from stdb._core.index cimport HashIdx
from stdb._core.ordered cimport OrdIndex

cdef enum:
    SLOT_BITS = 16
    SLOT_MASK = 0xFFFF
    MAX_PAGES = 0xFFFFFE
    NLAYOUTS = 257            # layouts by heap estimate / 4 (4..1024)
    IX_HASH = 1               # unique hash index
    IX_ORD = 2                # ordered index (btree; non-unique hash)

# flags of tbl_insert / tbl_update
cdef enum:
    W_CHECK = 1               # check every value (bytes from outside: a module, a log)
    W_UTF8 = 2                # ... and that strings are UTF-8
    W_ASSIGN = 4              # auto-increment columns given as 0 take the next value (written into the row)

ctypedef struct IndexC:
    int kind
    bint unique
    int ncols
    int* cols                 # column positions
    HashIdx* hash
    OrdIndex* ord
    char* label               # for messages: "primary key (id)", "unique index 'by_name' (name)"

ctypedef struct SeqC:
    int col
    int code
    uint64_t next             # the next value to assign (as the column's bits)
    uint64_t max              # the column type's largest value
    bint over                 # exhausted: the next value would be max + 1

# a growable array of row ids
ctypedef struct IdList:
    uint64_t* ids
    Py_ssize_t n
    Py_ssize_t cap


cdef inline int idl_push(IdList* l, uint64_t v) noexcept nogil:
    cdef Py_ssize_t cap
    cdef uint64_t* nd
    if l.n == l.cap:
        cap = l.cap * 2 if l.cap else 16
        nd = <uint64_t*>PyMem_RawRealloc(l.ids, cap * sizeof(uint64_t))
        if nd == NULL:
            return -1
        l.ids = nd
        l.cap = cap
    l.ids[l.n] = v
    l.n += 1
    return 0


cdef inline void idl_free(IdList* l) noexcept nogil:
    PyMem_RawFree(l.ids)
    l.ids = NULL
    l.n = 0
    l.cap = 0


ctypedef struct TableC:
    void* owner               # the Python Table (borrowed: it owns this struct)
    RowSpec* spec             # owned
    LayoutC* layouts[NLAYOUTS]    # [0]: the first pages' layout; [k]: heap estimate 4k
    PageC** pages
    Py_ssize_t npages
    Py_ssize_t pages_cap
    Py_ssize_t* room          # stack of page numbers that may have a free slot
    Py_ssize_t nroom
    unsigned char* in_room    # per page
    Py_ssize_t rows_seen      # rows inserted so far and their heap bytes: new pages' layouts
    Py_ssize_t heap_seen
    Py_ssize_t nrows
    int nindexes
    IndexC* indexes
    int nseq
    SeqC* seqs
    SeqC* seq_new             # scratch: the sequences after the write being made
    uint64_t* seq_saved       # scratch: auto-increment values as given, restored on failure
    CBuf keys                 # scratch: every index key of the row being written
    Py_ssize_t* keyoff
    CBuf oldkeys              # ... of the row being replaced or deleted
    Py_ssize_t* oldkeyoff
    CBuf entry                # ... an ordered index entry
    CBuf scratch              # ... a row read back
    Py_ssize_t* starts        # ... the column starts of the row being written
    uint64_t* hashes          # ... per hash index: the hash of the key being written, and where
    Py_ssize_t* hslots        # ... it goes in the index (valid until the index changes)
    CBuf pend                 # ... tbl_apply_change: the deletes waiting for their inserts
    CBuf pendkeys
    CBuf pendmap
    bint pairable             # index 0 is a unique hash index and no other index is unique
    # the replay's fast inserts (tbl_apply_change): the only index is a unique hash index on one
    # integer column (pkcol; kind, width), no sequence but maybe on that column, and every
    # column of a shape rb_check_row's fast path takes
    bint fast
    int pkcol
    int pkkind
    int pkwidth
    bint pkseq                # the primary key column is auto-increment (the one sequence)
    Py_ssize_t pkoff          # where the primary key starts in every row (-1: it varies)


cdef inline PageC* tbl_page(const TableC* t, uint64_t rowid) noexcept nogil:
    """The page holding live row ``rowid``, NULL when there is none."""
    cdef uint64_t pno = rowid >> SLOT_BITS
    cdef int slot = rowid & SLOT_MASK
    cdef PageC* p
    if pno >= <uint64_t>t.npages:
        return NULL
    p = t.pages[pno]
    if slot >= p.layout.capacity or not page_live(p, slot):
        return NULL
    return p


# Writes (0, or -1 with ``e`` set; a refused write changes nothing)
cdef int tbl_insert(TableC* t, unsigned char* row, Py_ssize_t n, int flags, uint64_t* rowid,
                    Err* e) noexcept nogil
cdef int tbl_insert_at(TableC* t, uint64_t rowid, const unsigned char* row, Py_ssize_t n,
                       Err* e) noexcept nogil
cdef int tbl_update(TableC* t, uint64_t rowid, unsigned char* row, Py_ssize_t n, int flags,
                    uint64_t* newid, Err* e) noexcept nogil
cdef int tbl_delete(TableC* t, uint64_t rowid, Err* e) noexcept nogil

# Reads
cdef int tbl_get(TableC* t, uint64_t rowid, CBuf* out) noexcept nogil     # append the row's bytes
cdef int tbl_row_key(TableC* t, uint64_t rowid, int ino, CBuf* out) noexcept nogil
# the key of index ``ino`` of a row in the row codec with its column starts
cdef int tbl_key_of(TableC* t, int ino, const unsigned char* row, const Py_ssize_t* starts,
                    CBuf* out) noexcept nogil
# the first row id whose index key is ``key``: -1 none, -2 out of memory
cdef int64_t tbl_find(TableC* t, int ino, const unsigned char* key, Py_ssize_t n) noexcept nogil
cdef int tbl_seek(TableC* t, int ino, const unsigned char* key, Py_ssize_t n, IdList* out) noexcept nogil
# entries start <= e < end (end empty: no bound), at most limit (all when < 0), of an ordered index
cdef int tbl_range(TableC* t, int ino, const unsigned char* start, Py_ssize_t sn,
                   const unsigned char* end, Py_ssize_t en, Py_ssize_t limit, IdList* out) noexcept nogil
# how many entries tbl_seek (``prefix``) or tbl_range would give, at most limit (all when < 0);
# -1 out of memory
cdef Py_ssize_t tbl_count(TableC* t, int ino, const unsigned char* start, Py_ssize_t sn,
                          const unsigned char* end, Py_ssize_t en, bint prefix,
                          Py_ssize_t limit) noexcept nogil
# of the first ``sample`` entries of index ``ino`` in key order: how many, how many distinct keys
cdef void tbl_key_runs(TableC* t, int ino, Py_ssize_t sample, Py_ssize_t* entries,
                       Py_ssize_t* distinct) noexcept nogil
cdef int tbl_rowids(TableC* t, IdList* out) noexcept nogil
# a row id holding exactly these row bytes: -1 none, -2 error (``e`` set)
cdef int64_t tbl_find_row(TableC* t, const unsigned char* row, Py_ssize_t n, Err* e) noexcept nogil
# Apply one table's change of a log record: ``nd`` deleted then ``ni`` inserted rows, framed
# (u32 length, row) at p[0:n].  A delete and an insert of the same primary key become one
# update in place (the same rows result; replaying updates costs about half).  0, or -1 with
# ``e``; ``done`` counts the row operations applied.
cdef int tbl_apply_change(TableC* t, const unsigned char* p, Py_ssize_t n, uint64_t nd, uint64_t ni,
                          Py_ssize_t* done, Py_ssize_t* used, Err* e) noexcept nogil
# delete the row holding exactly these bytes (checked first when ``flags`` has W_CHECK): 0, or
# -1 with ``e`` (E_MISSING when there is none, naming its values)
cdef int tbl_delete_row(TableC* t, const unsigned char* row, Py_ssize_t n, int flags, Err* e) noexcept nogil


cdef class Table:
    cdef TableC* c
    cdef readonly object schema
    cdef readonly str name
    cdef readonly RowCodec codec
    cdef list index_defs
    cdef list index_types     # tuple of ColumnType per index
    cdef dict index_no        # index name -> position
    cdef Buf buf              # a row being encoded
    cdef bytes _encode(self, tuple row)
    cdef const unsigned char* _encode_into(self, tuple row, Py_ssize_t* n) except NULL
    cpdef tuple get(self, uint64_t rowid)
    cpdef uint64_t insert(self, object row) except? 0xFFFFFFFFFFFFFFFF
    cpdef tuple delete(self, uint64_t rowid)
