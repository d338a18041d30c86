# cython: language_level=3
"""An ordered index in C: sorted byte-string entries, usable without the GIL.

A B+tree of byte nodes (see ordered.pyx for the layout).  Order is bytewise like memcmp, a
prefix before any longer entry it starts (Python's bytes order).  Entries are unique.
Nothing here touches a Python object: every function may run without the GIL.  The index is
not synchronised: one writer at a time, and no reader while it writes (readers alone may
share it).
"""

from libc.stdint cimport uint16_t

cdef struct OrdNode:
    uint16_t n                  # entries (a leaf) or children (an inner node)
    uint16_t cap                # bytes allocated for the node, this header included
    uint16_t level              # 0 for a leaf; a parent is one level above its children
    uint16_t unused
    OrdNode* prev               # leaves only: the neighbours in entry order (NULL at the ends)
    OrdNode* next

ctypedef struct OrdIndex:
    Py_ssize_t count            # entries held
    OrdNode* root               # a leaf (possibly empty) or an inner node with >= 2 children
    Py_ssize_t mem              # bytes allocated (see ord_memory)
    Py_ssize_t longs            # entries and separators whose bytes have a block of their own
    int node_bytes              # the size of every node but a small root leaf
    int inline_max              # longer keys are stored out of line

ctypedef struct OrdCursor:
    OrdNode* leaf               # NULL at the end
    Py_ssize_t i                # the entry of leaf under the cursor

cdef OrdIndex* ord_new() noexcept nogil                       # NULL when out of memory
cdef void ord_free(OrdIndex* ix) noexcept nogil               # frees everything (NULL is fine)
# add an entry (bytes e[0:n], n >= 1) that is not present; 0, or -1 out of memory (index unchanged)
cdef int ord_add(OrdIndex* ix, const unsigned char* e, Py_ssize_t n) noexcept nogil
# remove an entry equal to e[0:n]; 0, or 1 when there is none (index unchanged)
cdef int ord_remove(OrdIndex* ix, const unsigned char* e, Py_ssize_t n) noexcept nogil
# whether some entry starts with key[0:n] (n >= 1)
cdef bint ord_has_prefix(OrdIndex* ix, const unsigned char* key, Py_ssize_t n) noexcept nogil
# put the cursor on the first entry >= key[0:n] (bytewise order; n may be 0: the first entry)
cdef void ord_seek(OrdIndex* ix, const unsigned char* key, Py_ssize_t n, OrdCursor* c) noexcept nogil
# the entry under the cursor (pointer valid until the next add/remove) and advance; False at the end
cdef bint ord_next(OrdIndex* ix, OrdCursor* c, const unsigned char** e, Py_ssize_t* n) noexcept nogil
# bytes of memory the index holds (all its allocations, approximately including allocator headers)
cdef Py_ssize_t ord_memory(OrdIndex* ix) noexcept nogil

# --- beyond the contract ---
# an index whose nodes are node_bytes long (clamped to [128, 8192]; ord_new uses 4096)
cdef OrdIndex* ord_new_sized(Py_ssize_t node_bytes) noexcept nogil
# ord_add that tolerates a present entry: 0 added, 1 already present (index unchanged), -1 out of memory
cdef int ord_insert(OrdIndex* ix, const unsigned char* e, Py_ssize_t n) noexcept nogil
# whether an entry equal to e[0:n] is present
cdef bint ord_contains(OrdIndex* ix, const unsigned char* e, Py_ssize_t n) noexcept nogil
# levels of the tree (1: the root is a leaf)
cdef int ord_height(OrdIndex* ix) noexcept nogil
# 0 when every invariant holds, else the number of the first broken one (see CHECKS in ordered.pyx)
cdef int ord_check(OrdIndex* ix) noexcept nogil
