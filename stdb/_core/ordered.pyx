# cython: language_level=3
"""An ordered index in C: sorted byte-string entries in a B+tree, usable without the GIL.

Design
------
A B+tree whose nodes are single byte blocks of 4 KiB (a new index's root leaf starts at 128
bytes and doubles up to that, so small indexes stay small).  A node is a slotted page:

    [header 24 B][b[0] b[1] ... b[n]: u16 boundaries →   free   ← entry n-1 | ... | entry 0]

Entries are stored back to back at the end of the node, entry 0 last, so entry ``i`` is the bytes
``[b[i + 1], b[i])`` (``b[0]`` is the node's size): one 2-byte boundary is the whole per-entry
overhead (no length field), and adding after a node's last entry (ascending keys: row ids,
timestamps) moves no bytes.  A leaf entry is the entry itself; an inner entry is a child pointer
then its separator (entry 0 has none: its child holds everything below separator 1).  Separators
are suffix-truncated — the shortest prefix of the right node's first entry that is above the left
node's last, 1-3 bytes for random keys — so inner nodes fan out ~300 ways and 1M entries sit in
three levels.  Keys longer than ``inline_max`` (256 bytes with 4 KiB nodes) get a block of their
own ([Py_ssize_t length][bytes]) and the node holds a pointer to it, flagged by the top bit of the
entry's boundary: every node holds >= 4 entries whatever their lengths, and no length is limited.
Leaves are doubly linked, so a cursor is just (leaf, slot).  Comparisons take the first 8 bytes as
one big-endian integer (twice as fast as calling memcmp on index-sized keys).

Adding is a descent, a binary search and one memmove inside one node.  A full node splits at its
byte midpoint, or keeps its old entries whole when the new one is its first or last (ascending or
descending loads fill nodes completely).  Every allocation a split chain can need (the new nodes,
a long separator) is made before anything changes, so out of memory leaves the index as it was.
Removing never allocates: an emptied node is dropped, and a node under half full merges with a
neighbour when the two fit in 3/4 of a node; a root with one child gives way to it.  Separators
are never rewritten by a removal (a stale one still separates).

Why: the sorted-chunks design it replaces (Python bytes in lists of lists) costs ~58 bytes per
16-byte entry, compares through Python objects, and its top-level list grows linearly; chunks of
pointers to separately allocated entries would still pay a pointer and a malloc header per entry.
Inline entries in B+tree pages cost 18 bytes per 16-byte entry in a leaf; leaves split at the
middle are ~70 % full under random inserts.  Measured (``python -m bench.ordered_index``, 1M
random 16-byte entries, 2-core VM): 26.8 bytes an entry (tracemalloc; old: 57.7), 36 after
removing half; add ~0.6 us, remove ~1 us, seek ~0.5-0.7 us (old: 1.9 / 2.2 / 10.8 us).  Random
seeks at that size are bound by cache misses in the leaves.

Contract details: entries are unique (ord_add of a present entry returns 1 and changes nothing;
the debug build asserts).  A cursor and every entry pointer ord_next gave are invalidated by any
ord_add / ord_remove.  Readers (seek/next/has_prefix) may share an index with each other, never
with a writer.  The tree has at most MAX_DEPTH (40) levels: the height grows only when a full root
splits (4 levels hold ~100M short entries); a split that would pass the limit fails as out of
memory.
"""

cimport cython
from libc.stdint cimport uint16_t, uint64_t
from libc.string cimport memcmp, memcpy, memmove
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc

cdef extern from "assert.h":
    # C's assert: on in the debug build (-UNDEBUG), compiled out in the release build (-DNDEBUG)
    void c_assert "assert"(bint ok) noexcept nogil

cdef enum:
    OFF_MASK = 0x7FFF           # the offset bits of a boundary
    LONG_FLAG = 0x8000          # set on the start boundary of an entry whose key is out of line
    PTR = sizeof(void*)         # bytes of a pointer stored in a node
    HDR = sizeof(OrdNode)       # bytes of a node's header
    NODE_BYTES = 4096           # default node size
    NODE_BYTES_MIN = 128
    NODE_BYTES_MAX = 8192
    ROOT_BYTES = 128            # a new index's root leaf (it doubles up to node_bytes)
    INLINE_LIMIT = 256          # keys up to this long are stored in the node (less with small nodes)
    SCRATCH_BYTES = NODE_BYTES_MAX + 512    # a full node plus one more entry
    SCRATCH_WORDS = SCRATCH_BYTES >> 3
    MAX_DEPTH = 40              # levels of the tree at most
    ALLOC_OVERHEAD = 16         # bytes the allocator is assumed to add to each allocation


# ---------------------------------------------------------------------------------------------
# Byte strings

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* the 8 bytes at p as a big-endian integer: comparing two of them compares the bytes */
    static inline uint64_t stdb_ord_be64(const unsigned char* p) {
        uint64_t v;
        memcpy(&v, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        v = __builtin_bswap64(v);
    #elif !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_BIG_ENDIAN__
        v = ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40)
            | ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16)
            | ((uint64_t)p[6] << 8) | (uint64_t)p[7];
    #endif
        return v;
    }
    """
    uint64_t be64 "stdb_ord_be64"(const unsigned char* p) noexcept nogil


cdef inline int cmp(const unsigned char* a, Py_ssize_t na,
                    const unsigned char* b, Py_ssize_t nb) noexcept nogil:
    """<0, 0 or >0 as a[0:na] sorts before, equal to or after b[0:nb] (Python's bytes order).

    The first 8 bytes are compared as one integer, short keys byte by byte: both beat a call
    to memcmp on the 1-40 byte keys of an index."""
    cdef Py_ssize_t m = na if na < nb else nb, i
    cdef uint64_t x, y
    cdef int r
    if m >= 8:
        x = be64(a)
        y = be64(b)
        if x != y:
            return 1 if x > y else -1
        r = memcmp(a + 8, b + 8, m - 8)
        if r != 0:
            return r
    else:
        for i in range(m):
            if a[i] != b[i]:
                return <int>a[i] - <int>b[i]
    return (na > nb) - (na < nb)


cdef inline bint starts_with(const unsigned char* p, Py_ssize_t n,
                             const unsigned char* key, Py_ssize_t nk) noexcept nogil:
    return n >= nk and memcmp(p, key, nk) == 0


cdef inline Py_ssize_t common_prefix(const unsigned char* a, Py_ssize_t na,
                                     const unsigned char* b, Py_ssize_t nb) noexcept nogil:
    cdef Py_ssize_t i = 0, m = na if na < nb else nb
    while i < m and a[i] == b[i]:
        i += 1
    return i


cdef inline void* load_ptr(const unsigned char* p) noexcept nogil:
    """A pointer stored (unaligned) at p."""
    cdef void* v
    memcpy(&v, p, PTR)
    return v


# ---------------------------------------------------------------------------------------------
# Allocation (PyMem_Raw*: thread-safe without the GIL and traced by tracemalloc)

cdef Py_ssize_t alloc_pass = -1     # tests: allocations still allowed (-1: no limit)
cdef Py_ssize_t alloc_fail = 0      # tests: allocations to fail once alloc_pass reaches 0


cdef inline bint refuse() noexcept nogil:
    """Whether a test asked this allocation to fail (see _fail_allocations)."""
    global alloc_pass, alloc_fail
    if alloc_pass < 0:
        return False
    if alloc_pass > 0:
        alloc_pass -= 1
        return False
    if alloc_fail > 0:
        alloc_fail -= 1
        return True
    alloc_pass = -1
    return False


cdef inline void* raw_malloc(Py_ssize_t n) noexcept nogil:
    return NULL if refuse() else PyMem_RawMalloc(n)


cdef inline void* raw_realloc(void* p, Py_ssize_t n) noexcept nogil:
    return NULL if refuse() else PyMem_RawRealloc(p, n)


def _fail_allocations(Py_ssize_t after, Py_ssize_t count=1):
    """Tests: let the next ``after`` allocations of every index succeed and fail the ``count``
    after them (after < 0: back to normal)."""
    global alloc_pass, alloc_fail
    alloc_pass = after
    alloc_fail = count if after >= 0 else 0


# ---------------------------------------------------------------------------------------------
# Long keys: a block [Py_ssize_t length][bytes] of their own

cdef inline Py_ssize_t long_len(const unsigned char* blk) noexcept nogil:
    return (<const Py_ssize_t*>blk)[0]


cdef inline const unsigned char* long_bytes(const unsigned char* blk) noexcept nogil:
    return blk + sizeof(Py_ssize_t)


cdef inline Py_ssize_t long_size(Py_ssize_t n) noexcept nogil:
    return <Py_ssize_t>sizeof(Py_ssize_t) + n


cdef unsigned char* long_new(OrdIndex* ix, const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """A block holding p[0:n], or NULL out of memory."""
    cdef unsigned char* blk = <unsigned char*>raw_malloc(long_size(n))
    if blk == NULL:
        return NULL
    (<Py_ssize_t*>blk)[0] = n
    memcpy(blk + sizeof(Py_ssize_t), p, n)
    ix.mem += long_size(n) + ALLOC_OVERHEAD
    ix.longs += 1
    return blk


cdef void long_free(OrdIndex* ix, unsigned char* blk) noexcept nogil:
    ix.mem -= long_size(long_len(blk)) + ALLOC_OVERHEAD
    ix.longs -= 1
    PyMem_RawFree(blk)


# ---------------------------------------------------------------------------------------------
# Nodes: a header, the boundaries b[0..n] (u16) after it, the entries at the end
#
# b[0] = cap and b[i + 1] = the offset of entry i's first byte, so entry i is [b[i + 1], b[i])
# and the entries occupy [b[n], cap).  LONG_FLAG on b[i + 1]: entry i's key is a long block
# pointer.  A leaf entry is its key; an inner entry is a child pointer then a key (none for i = 0).

cdef inline uint16_t* bounds(OrdNode* nd) noexcept nogil:
    return <uint16_t*>(<unsigned char*>nd + HDR)


cdef inline unsigned char* at(OrdNode* nd, Py_ssize_t off) noexcept nogil:
    return <unsigned char*>nd + off


cdef inline Py_ssize_t heap_start(OrdNode* nd) noexcept nogil:
    return bounds(nd)[nd.n] & OFF_MASK


cdef inline Py_ssize_t room(OrdNode* nd) noexcept nogil:
    """Free bytes between the boundaries and the entries."""
    return heap_start(nd) - HDR - 2 * (nd.n + 1)


cdef inline Py_ssize_t payload(OrdNode* nd) noexcept nogil:
    """Bytes the entries take: their stored bytes and a boundary each."""
    return nd.cap - heap_start(nd) + 2 * nd.n


cdef inline unsigned char* stored(OrdNode* nd, Py_ssize_t i) noexcept nogil:
    """Entry i as stored in the node."""
    return at(nd, bounds(nd)[i + 1] & OFF_MASK)


cdef inline Py_ssize_t stored_len(OrdNode* nd, Py_ssize_t i) noexcept nogil:
    cdef uint16_t* b = bounds(nd)
    return (b[i] & OFF_MASK) - (b[i + 1] & OFF_MASK)


cdef inline bint is_long(OrdNode* nd, Py_ssize_t i) noexcept nogil:
    return (bounds(nd)[i + 1] & LONG_FLAG) != 0


cdef inline Py_ssize_t key_skip(OrdNode* nd) noexcept nogil:
    """Bytes before an entry's key: an inner entry starts with its child pointer."""
    return PTR if nd.level else 0


cdef inline OrdNode* child(OrdNode* nd, Py_ssize_t i) noexcept nogil:
    return <OrdNode*>load_ptr(stored(nd, i))


cdef inline unsigned char* long_of(OrdNode* nd, Py_ssize_t i) noexcept nogil:
    """The block of entry i's long key."""
    return <unsigned char*>load_ptr(stored(nd, i) + key_skip(nd))


cdef inline const unsigned char* key_of(OrdNode* nd, Py_ssize_t i, Py_ssize_t* n) noexcept nogil:
    """Entry i's key (a leaf's entry, an inner node's separator) and its length in n."""
    cdef Py_ssize_t k = key_skip(nd)
    cdef const unsigned char* p = stored(nd, i) + k
    if is_long(nd, i):
        p = <const unsigned char*>load_ptr(p)
        n[0] = long_len(p)
        return long_bytes(p)
    n[0] = stored_len(nd, i) - k
    return p


cdef inline void node_reset(OrdNode* nd, Py_ssize_t cap, int level) noexcept nogil:
    """Make nd an empty node of cap bytes (its leaf links are left alone)."""
    nd.n = 0
    nd.cap = <uint16_t>cap
    nd.level = <uint16_t>level
    bounds(nd)[0] = <uint16_t>cap


cdef OrdNode* node_new(OrdIndex* ix, Py_ssize_t cap, int level) noexcept nogil:
    """An empty unlinked node, or NULL out of memory."""
    cdef OrdNode* nd = <OrdNode*>raw_malloc(cap)
    if nd == NULL:
        return NULL
    node_reset(nd, cap, level)
    nd.unused = 0
    nd.prev = NULL
    nd.next = NULL
    ix.mem += cap + ALLOC_OVERHEAD
    return nd


cdef void node_free(OrdIndex* ix, OrdNode* nd) noexcept nogil:
    ix.mem -= nd.cap + ALLOC_OVERHEAD
    PyMem_RawFree(nd)


cdef void put(OrdNode* nd, Py_ssize_t i, const unsigned char* data, Py_ssize_t ln,
              bint long_key) noexcept nogil:
    """Insert data[0:ln] as entry i (room(nd) >= ln + 2 is the caller's to check)."""
    cdef uint16_t* b = bounds(nd)
    cdef Py_ssize_t n = nd.n, k
    cdef Py_ssize_t hs = b[n] & OFF_MASK, end = b[i] & OFF_MASK
    c_assert(room(nd) >= ln + 2)
    memmove(at(nd, hs - ln), at(nd, hs), end - hs)          # entries i.. move down
    memcpy(at(nd, end - ln), data, ln)
    k = n
    while k > i:
        b[k + 1] = <uint16_t>(b[k] - ln)
        k -= 1
    b[i + 1] = <uint16_t>((end - ln) | (LONG_FLAG if long_key else 0))
    nd.n = <uint16_t>(n + 1)


cdef void put_run(OrdNode* dst, Py_ssize_t i, OrdNode* src, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Insert src's entries lo..hi-1, as stored, at dst's entry i (the caller checked the room)."""
    cdef uint16_t* sb = bounds(src)
    cdef uint16_t* db = bounds(dst)
    cdef Py_ssize_t n = dst.n, c = hi - lo, k, t, v
    cdef Py_ssize_t s_end = sb[lo] & OFF_MASK, s_start = sb[hi] & OFF_MASK, ln = s_end - s_start
    cdef Py_ssize_t hs = db[n] & OFF_MASK, end = db[i] & OFF_MASK
    if c <= 0:
        return
    c_assert(room(dst) >= ln + 2 * c)
    memmove(at(dst, hs - ln), at(dst, hs), end - hs)
    memcpy(at(dst, end - ln), at(src, s_start), ln)
    k = n
    while k > i:
        db[k + c] = <uint16_t>(db[k] - ln)
        k -= 1
    for t in range(c):
        v = sb[lo + 1 + t]
        db[i + 1 + t] = <uint16_t>(((v & OFF_MASK) - s_end + end) | (v & LONG_FLAG))
    dst.n = <uint16_t>(n + c)


cdef void cut(OrdNode* nd, Py_ssize_t i) noexcept nogil:
    """Remove entry i (a long block it points to is the caller's)."""
    cdef uint16_t* b = bounds(nd)
    cdef Py_ssize_t n = nd.n, k
    cdef Py_ssize_t hs = b[n] & OFF_MASK, start = b[i + 1] & OFF_MASK
    cdef Py_ssize_t ln = (b[i] & OFF_MASK) - start
    memmove(at(nd, hs + ln), at(nd, hs), start - hs)        # entries i+1.. move up
    for k in range(i + 1, n):
        b[k] = <uint16_t>(b[k + 1] + ln)
    nd.n = <uint16_t>(n - 1)


cdef void drop_key0(OrdIndex* ix, OrdNode* nd, bint free_long) noexcept nogil:
    """Reduce an inner node's entry 0 to its child pointer (entry 0 has no separator)."""
    cdef OrdNode* c = child(nd, 0)
    if free_long and is_long(nd, 0):
        long_free(ix, long_of(nd, 0))
    cut(nd, 0)
    put(nd, 0, <const unsigned char*>&c, PTR, False)


# ---------------------------------------------------------------------------------------------
# Searching

ctypedef struct Path:
    OrdNode* node[MAX_DEPTH]    # node[level]: the inner node passed at that level (level >= 1)
    Py_ssize_t idx[MAX_DEPTH]   # idx[level]: the child taken there


cdef Py_ssize_t lower_bound(OrdNode* nd, const unsigned char* key, Py_ssize_t n) noexcept nogil:
    """The first entry of leaf nd that is >= key (nd.n when none is)."""
    cdef Py_ssize_t lo = 0, hi = nd.n, mid, m
    cdef const unsigned char* p
    while lo < hi:
        mid = (lo + hi) >> 1
        p = key_of(nd, mid, &m)
        if cmp(p, m, key, n) < 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef Py_ssize_t child_index(OrdNode* nd, const unsigned char* key, Py_ssize_t n) noexcept nogil:
    """The child of inner node nd whose range holds key: the last j with separator j <= key."""
    cdef Py_ssize_t lo = 1, hi = nd.n, mid, m
    cdef const unsigned char* p
    while lo < hi:
        mid = (lo + hi) >> 1
        p = key_of(nd, mid, &m)
        if cmp(p, m, key, n) <= 0:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


cdef OrdNode* descend(OrdIndex* ix, const unsigned char* key, Py_ssize_t n, Path* path) noexcept nogil:
    """The leaf whose range holds key; the inner nodes passed go to path (when not NULL)."""
    cdef OrdNode* nd = ix.root
    cdef Py_ssize_t j
    while nd.level > 0:
        j = child_index(nd, key, n)
        if path != NULL:
            path.node[nd.level] = nd
            path.idx[nd.level] = j
        nd = child(nd, j)
    return nd


cdef bint holds(OrdNode* leaf, Py_ssize_t i, const unsigned char* e, Py_ssize_t n) noexcept nogil:
    """Whether leaf entry i exists and equals e[0:n]."""
    cdef Py_ssize_t m
    cdef const unsigned char* p
    if i >= leaf.n:
        return False
    p = key_of(leaf, i, &m)
    return cmp(p, m, e, n) == 0


# ---------------------------------------------------------------------------------------------
# Adding

ctypedef struct Item:
    # an entry to insert into a node, in its stored form
    const unsigned char* data
    Py_ssize_t len
    bint long_key               # data holds a long block pointer where the key goes
    unsigned char* blk          # a long block this item owns until it is in the tree (else NULL)
    unsigned char buf[PTR + INLINE_LIMIT]   # stored bytes built here: child pointer, then key

ctypedef struct Spares:
    # the nodes a split chain will need, allocated before anything changes
    OrdNode* node[MAX_DEPTH + 1]
    int n


cdef int leaf_item(OrdIndex* ix, Item* it, const unsigned char* e, Py_ssize_t n) noexcept nogil:
    """The stored form of leaf entry e[0:n]; -1 out of memory."""
    it.blk = NULL
    it.long_key = n > ix.inline_max
    if not it.long_key:
        it.data = e
        it.len = n
        return 0
    it.blk = long_new(ix, e, n)
    if it.blk == NULL:
        return -1
    memcpy(it.buf, &it.blk, PTR)
    it.data = it.buf
    it.len = PTR
    return 0


cdef void inner_item(Item* it, OrdNode* c, const unsigned char* key, Py_ssize_t n,
                     bint long_key) noexcept nogil:
    """The stored form of an inner entry: child c, then key[0:n] (a block pointer when long_key)."""
    memcpy(it.buf, &c, PTR)
    memcpy(it.buf + PTR, key, n)
    it.data = it.buf
    it.len = PTR + n
    it.long_key = long_key
    it.blk = NULL


cdef int grow_root(OrdIndex* ix, Py_ssize_t need) noexcept nogil:
    """Enlarge the root leaf (doubling, up to node_bytes) to give it need free bytes if it can.

    -1 out of memory (the root unchanged)."""
    cdef OrdNode* nd = ix.root
    cdef Py_ssize_t cap = nd.cap, newcap = nd.cap, hs, k, d
    cdef uint16_t* b
    while room(nd) + newcap - cap < need and newcap < ix.node_bytes:
        newcap = min(2 * newcap, ix.node_bytes)
    nd = <OrdNode*>raw_realloc(nd, newcap)
    if nd == NULL:
        return -1
    d = newcap - cap
    b = bounds(nd)
    hs = b[nd.n] & OFF_MASK
    memmove(at(nd, hs + d), at(nd, hs), cap - hs)           # the entries stay at the end
    for k in range(nd.n + 1):
        b[k] = <uint16_t>(b[k] + d)
    nd.cap = <uint16_t>newcap
    ix.mem += d
    ix.root = nd
    return 0


cdef Py_ssize_t split_point(OrdNode* s, Py_ssize_t i) noexcept nogil:
    """How many of s's entries (an overfull node, just given entry i) go to the left node."""
    cdef Py_ssize_t m = s.n, half = payload(s) >> 1, acc = 0, k = 0
    if i == m - 1:
        return m - 1            # the new entry is the last: the old ones stay together, full
    if i == 0 and s.level == 0:
        return 1                # likewise when it is the first
    while k < m - 1 and acc < half:
        acc += stored_len(s, k) + 2
        k += 1
    return k if k > 0 else 1


cdef int reserve(OrdIndex* ix, Path* path, Py_ssize_t need, Spares* sp) noexcept nogil:
    """Allocate the nodes a leaf split needs: the new leaf, one per ancestor that may have to
    split (need = the room the first one must give), and a new root when the root splits."""
    cdef int height = ix.root.level, lvl = 1, k = 1
    cdef Py_ssize_t worst = PTR + max(<Py_ssize_t>PTR, <Py_ssize_t>ix.inline_max) + 2
    while lvl <= height and room(path.node[lvl]) < need:
        k += 1
        need = worst
        lvl += 1
    if lvl > height:
        if height + 2 > MAX_DEPTH:
            return -1
        k += 1
    sp.n = 0
    while sp.n < k:
        sp.node[sp.n] = node_new(ix, ix.node_bytes, 0)
        if sp.node[sp.n] == NULL:
            release(ix, sp)
            return -1
        sp.n += 1
    return 0


cdef inline OrdNode* take(Spares* sp, int level) noexcept nogil:
    c_assert(sp.n > 0)
    sp.n -= 1
    sp.node[sp.n].level = <uint16_t>level
    return sp.node[sp.n]


cdef void release(OrdIndex* ix, Spares* sp) noexcept nogil:
    while sp.n > 0:
        sp.n -= 1
        node_free(ix, sp.node[sp.n])


cdef void fill_halves(OrdNode* a, OrdNode* b, OrdNode* s, Py_ssize_t k) noexcept nogil:
    """Make a hold s's entries before k and b those from k on."""
    node_reset(a, a.cap, a.level)
    put_run(a, 0, s, 0, k)
    put_run(b, 0, s, k, s.n)


cdef void link_after(OrdNode* a, OrdNode* b) noexcept nogil:
    """Insert leaf b after leaf a in the leaf chain."""
    b.prev = a
    b.next = a.next
    if a.next != NULL:
        a.next.prev = b
    a.next = b


cdef int split_leaf(OrdIndex* ix, Path* path, OrdNode* leaf, Py_ssize_t i, Item* it) noexcept nogil:
    """Add entry it at leaf slot i by splitting the full leaf; -1 out of memory (nothing changed)."""
    cdef uint64_t scratch[SCRATCH_WORDS]
    cdef OrdNode* s = <OrdNode*>scratch
    cdef OrdNode* b
    cdef Spares sp
    cdef Item up
    cdef Py_ssize_t k, na, nb, sl
    cdef const unsigned char* pa
    cdef const unsigned char* pb
    cdef unsigned char* blk = NULL
    node_reset(s, SCRATCH_BYTES, 0)
    put_run(s, 0, leaf, 0, leaf.n)
    put(s, i, it.data, it.len, it.long_key)
    k = split_point(s, i)
    # the separator: the shortest prefix of the right's first entry above the left's last
    pa = key_of(s, k - 1, &na)
    pb = key_of(s, k, &nb)
    sl = common_prefix(pa, na, pb, nb) + 1
    c_assert(sl <= nb)
    if reserve(ix, path, PTR + (PTR if sl > ix.inline_max else sl) + 2, &sp) < 0:
        return -1
    if sl > ix.inline_max:
        blk = long_new(ix, pb, sl)
        if blk == NULL:
            release(ix, &sp)
            return -1
    # nothing can fail from here on
    b = take(&sp, 0)
    if blk != NULL:
        inner_item(&up, b, <const unsigned char*>&blk, PTR, True)
    else:
        inner_item(&up, b, pb, sl, False)
    fill_halves(leaf, b, s, k)
    link_after(leaf, b)
    climb(ix, path, leaf, &up, &sp, s)
    release(ix, &sp)
    return 0


cdef void split_inner(OrdNode* nd, Py_ssize_t i, Item* up, Spares* sp, OrdNode* s) noexcept nogil:
    """Add entry up at slot i of the full inner node nd by splitting it; up becomes the entry
    for the new right node, to go to nd's parent (its key moves up from that node's entry 0).
    s: scratch of SCRATCH_BYTES."""
    cdef OrdNode* b = take(sp, nd.level)
    cdef Py_ssize_t k
    node_reset(s, SCRATCH_BYTES, nd.level)
    put_run(s, 0, nd, 0, nd.n)
    put(s, i, up.data, up.len, up.long_key)
    k = split_point(s, i)
    fill_halves(nd, b, s, k)
    inner_item(up, b, stored(b, 0) + PTR, stored_len(b, 0) - PTR, is_long(b, 0))
    drop_key0(NULL, b, False)


cdef void climb(OrdIndex* ix, Path* path, OrdNode* a, Item* up, Spares* sp, OrdNode* s) noexcept nogil:
    """Insert up (the entry of a's new right sibling) into a's parent, splitting upwards as needed."""
    cdef int lvl = a.level + 1
    cdef OrdNode* p
    cdef OrdNode* root
    while lvl <= ix.root.level:
        p = path.node[lvl]
        if room(p) >= up.len + 2:
            put(p, path.idx[lvl] + 1, up.data, up.len, up.long_key)
            return
        split_inner(p, path.idx[lvl] + 1, up, sp, s)
        a = p
        lvl += 1
    root = take(sp, lvl)
    put(root, 0, <const unsigned char*>&a, PTR, False)
    put(root, 1, up.data, up.len, up.long_key)
    ix.root = root


cdef int insert(OrdIndex* ix, const unsigned char* e, Py_ssize_t n) noexcept nogil:
    """Add e[0:n]: 0, 1 when present (nothing changed), -1 out of memory (nothing changed)."""
    cdef Path path
    cdef Item it
    cdef OrdNode* leaf = descend(ix, e, n, &path)
    cdef Py_ssize_t i = lower_bound(leaf, e, n)
    c_assert(n >= 1)
    if holds(leaf, i, e, n):
        return 1
    if leaf_item(ix, &it, e, n) < 0:
        return -1
    if room(leaf) < it.len + 2 and leaf == ix.root and leaf.cap < ix.node_bytes:
        if grow_root(ix, it.len + 2) < 0:
            drop_item(ix, &it)
            return -1
        leaf = ix.root
    if room(leaf) >= it.len + 2:
        put(leaf, i, it.data, it.len, it.long_key)
    elif split_leaf(ix, &path, leaf, i, &it) < 0:
        drop_item(ix, &it)
        return -1
    ix.count += 1
    return 0


cdef inline void drop_item(OrdIndex* ix, Item* it) noexcept nogil:
    if it.blk != NULL:
        long_free(ix, it.blk)


# ---------------------------------------------------------------------------------------------
# Removing

cdef void drop_child(OrdIndex* ix, OrdNode* p, Py_ssize_t j) noexcept nogil:
    """Remove p's child j (an emptied node) and its entry."""
    cdef OrdNode* c = child(p, j)
    if c.level == 0:
        if c.prev != NULL:
            c.prev.next = c.next
        if c.next != NULL:
            c.next.prev = c.prev
    node_free(ix, c)
    if is_long(p, j):
        long_free(ix, long_of(p, j))
    cut(p, j)
    if j == 0 and p.n > 0:
        drop_key0(ix, p, True)


cdef Py_ssize_t merged_size(OrdNode* p, Py_ssize_t j) noexcept nogil:
    """Bytes one node would need for p's children j and j + 1 together."""
    cdef OrdNode* a = child(p, j)
    cdef OrdNode* b = child(p, j + 1)
    cdef Py_ssize_t size = HDR + 2 + payload(a) + payload(b)
    if a.level > 0:
        size += stored_len(p, j + 1) - PTR      # b's entry 0 takes the separator from p
    return size


cdef void merge(OrdIndex* ix, OrdNode* p, Py_ssize_t j) noexcept nogil:
    """Move child j + 1 of p into child j and drop it."""
    cdef OrdNode* a = child(p, j)
    cdef OrdNode* b = child(p, j + 1)
    cdef OrdNode* c
    cdef Item it
    if a.level == 0:
        put_run(a, a.n, b, 0, b.n)
        a.next = b.next
        if b.next != NULL:
            b.next.prev = a
        if is_long(p, j + 1):
            long_free(ix, long_of(p, j + 1))
    else:
        c = child(b, 0)             # it takes the separator between a and b from p (block and all)
        inner_item(&it, c, stored(p, j + 1) + PTR, stored_len(p, j + 1) - PTR, is_long(p, j + 1))
        put(a, a.n, it.data, it.len, it.long_key)
        put_run(a, a.n, b, 1, b.n)
    cut(p, j + 1)
    node_free(ix, b)


cdef bint merge_some(OrdIndex* ix, OrdNode* p, Py_ssize_t j) noexcept nogil:
    """Merge p's child j with a neighbour when the two fit in 3/4 of a node; whether it did."""
    cdef Py_ssize_t limit = ix.node_bytes * 3 // 4
    if j > 0 and merged_size(p, j - 1) <= limit:
        merge(ix, p, j - 1)
        return True
    if j + 1 < p.n and merged_size(p, j) <= limit:
        merge(ix, p, j)
        return True
    return False


cdef void rebalance(OrdIndex* ix, Path* path, OrdNode* nd) noexcept nogil:
    """After a removal from nd: drop it if empty or merge it if small, and so up the tree."""
    cdef OrdNode* p
    cdef Py_ssize_t j
    while nd != ix.root:
        p = path.node[nd.level + 1]
        j = path.idx[nd.level + 1]
        if nd.n == 0:
            drop_child(ix, p, j)
        elif nd.cap - room(nd) >= ix.node_bytes // 2 or not merge_some(ix, p, j):
            break
        nd = p
    while ix.root.level > 0 and ix.root.n == 1:         # a root with one child gives way to it
        nd = ix.root
        ix.root = child(nd, 0)
        node_free(ix, nd)
    c_assert(ix.root.level == 0 or ix.root.n >= 2)


# ---------------------------------------------------------------------------------------------
# The contract (ordered.pxd)

cdef OrdIndex* ord_new() noexcept nogil:
    return ord_new_sized(NODE_BYTES)


cdef OrdIndex* ord_new_sized(Py_ssize_t node_bytes) noexcept nogil:
    cdef OrdIndex* ix = <OrdIndex*>raw_malloc(sizeof(OrdIndex))
    if ix == NULL:
        return NULL
    node_bytes = min(max(node_bytes, <Py_ssize_t>NODE_BYTES_MIN), <Py_ssize_t>NODE_BYTES_MAX)
    ix.count = 0
    ix.longs = 0
    ix.mem = sizeof(OrdIndex) + ALLOC_OVERHEAD
    ix.node_bytes = <int>node_bytes
    # small enough that any 4 entries fit in a node (so a split leaves >= 2 entries a side)
    ix.inline_max = <int>min(<Py_ssize_t>INLINE_LIMIT, (node_bytes - 64) // 6)
    ix.root = node_new(ix, min(<Py_ssize_t>ROOT_BYTES, node_bytes), 0)
    if ix.root == NULL:
        PyMem_RawFree(ix)
        return NULL
    return ix


cdef void free_tree(OrdIndex* ix, OrdNode* nd) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(nd.n):
        if is_long(nd, i):
            long_free(ix, long_of(nd, i))
        if nd.level > 0:
            free_tree(ix, child(nd, i))
    node_free(ix, nd)


cdef void ord_free(OrdIndex* ix) noexcept nogil:
    if ix == NULL:
        return
    free_tree(ix, ix.root)
    PyMem_RawFree(ix)


cdef int ord_add(OrdIndex* ix, const unsigned char* e, Py_ssize_t n) noexcept nogil:
    cdef int r = insert(ix, e, n)
    c_assert(r != 1)            # the entry was present
    return r


cdef int ord_insert(OrdIndex* ix, const unsigned char* e, Py_ssize_t n) noexcept nogil:
    return insert(ix, e, n)


cdef int ord_remove(OrdIndex* ix, const unsigned char* e, Py_ssize_t n) noexcept nogil:
    cdef Path path
    cdef OrdNode* leaf = descend(ix, e, n, &path)
    cdef Py_ssize_t i = lower_bound(leaf, e, n)
    if not holds(leaf, i, e, n):
        return 1
    if is_long(leaf, i):
        long_free(ix, long_of(leaf, i))
    cut(leaf, i)
    ix.count -= 1
    rebalance(ix, &path, leaf)
    return 0


cdef bint ord_contains(OrdIndex* ix, const unsigned char* e, Py_ssize_t n) noexcept nogil:
    cdef OrdNode* leaf = descend(ix, e, n, NULL)
    return holds(leaf, lower_bound(leaf, e, n), e, n)


cdef inline void settle(OrdCursor* c) noexcept nogil:
    """Move a cursor past the end of its leaf to the next leaf's first entry."""
    while c.leaf != NULL and c.i >= c.leaf.n:
        c.leaf = c.leaf.next
        c.i = 0


cdef void ord_seek(OrdIndex* ix, const unsigned char* key, Py_ssize_t n, OrdCursor* c) noexcept nogil:
    c.leaf = descend(ix, key, n, NULL)
    c.i = lower_bound(c.leaf, key, n)
    settle(c)


cdef bint ord_next(OrdIndex* ix, OrdCursor* c, const unsigned char** e, Py_ssize_t* n) noexcept nogil:
    if c.leaf == NULL:
        return False
    e[0] = key_of(c.leaf, c.i, n)
    c.i += 1
    settle(c)
    return True


cdef bint ord_has_prefix(OrdIndex* ix, const unsigned char* key, Py_ssize_t n) noexcept nogil:
    cdef OrdCursor c
    cdef const unsigned char* p
    cdef Py_ssize_t m
    ord_seek(ix, key, n, &c)
    return ord_next(ix, &c, &p, &m) and starts_with(p, m, key, n)


cdef Py_ssize_t ord_memory(OrdIndex* ix) noexcept nogil:
    return ix.mem


cdef int ord_height(OrdIndex* ix) noexcept nogil:
    return ix.root.level + 1


# ---------------------------------------------------------------------------------------------
# Checking every invariant (tests, debugging)

CHECKS = {
    1: "a node's level is not one below its parent's",
    2: "a node's capacity is wrong (not node_bytes, or out of range for the root)",
    3: "a node's boundaries are broken (b[0] != cap, an entry of negative size, or no room left)",
    4: "an entry's stored size breaks the inline/long rule",
    5: "a node other than the root is empty, or an inner root has < 2 children",
    6: "entries or separators out of order inside a node",
    7: "a key outside the range its parent's separators give it",
    8: "the leaf chain does not follow the tree's leaves in order",
    9: "count does not match the entries held",
    10: "memory accounting does not match the allocations",
    11: "an inner node's entry 0 has a separator",
    12: "longs does not match the long blocks held",
}

ctypedef struct Walk:
    OrdNode* last_leaf          # the leaf before the one visited next
    Py_ssize_t count
    Py_ssize_t mem
    Py_ssize_t longs


cdef int check_entry(OrdIndex* ix, OrdNode* nd, Py_ssize_t i, Walk* w) noexcept nogil:
    """The stored form of entry i of nd."""
    cdef Py_ssize_t skip = key_skip(nd), ln = stored_len(nd, i) - skip, n
    if nd.level > 0 and i == 0:
        return 0 if ln == 0 and not is_long(nd, 0) else 11
    if is_long(nd, i):
        n = long_len(long_of(nd, i))
        w.mem += long_size(n) + ALLOC_OVERHEAD
        w.longs += 1
        return 0 if ln == PTR and n > ix.inline_max else 4
    return 0 if 1 <= ln <= ix.inline_max else 4


cdef int check_node(OrdIndex* ix, OrdNode* nd, int level, const unsigned char* lo, Py_ssize_t nlo,
                    const unsigned char* hi, Py_ssize_t nhi, Walk* w) noexcept nogil:
    """nd and its subtree, whose keys must lie in [lo, hi) (NULL: unbounded)."""
    cdef uint16_t* b = bounds(nd)
    cdef Py_ssize_t i, n, pn = 0, sn, r
    cdef const unsigned char* p
    cdef const unsigned char* prev = NULL
    cdef const unsigned char* s
    if nd.level != level:
        return 1
    if (nd != ix.root and nd.cap != ix.node_bytes) or nd.cap > ix.node_bytes or nd.cap < HDR + 2:
        return 2
    if b[0] != nd.cap or room(nd) < 0:
        return 3
    for i in range(nd.n):
        if (b[i + 1] & OFF_MASK) > (b[i] & OFF_MASK):
            return 3
    if nd.n == 0 and nd != ix.root or nd == ix.root and level > 0 and nd.n < 2:
        return 5
    w.mem += nd.cap + ALLOC_OVERHEAD
    for i in range(nd.n):
        r = check_entry(ix, nd, i, w)
        if r:
            return r
        if level > 0 and i == 0:
            continue
        p = key_of(nd, i, &n)
        if prev != NULL and cmp(prev, pn, p, n) >= 0:
            return 6
        if (lo != NULL and cmp(p, n, lo, nlo) < 0) or (hi != NULL and cmp(p, n, hi, nhi) >= 0):
            return 7
        if level > 0 and lo != NULL and cmp(p, n, lo, nlo) == 0:
            return 7            # a separator above a non-empty child must exceed its parent's bound
        prev = p
        pn = n
    if level == 0:
        if nd.prev != w.last_leaf or (w.last_leaf != NULL and w.last_leaf.next != nd):
            return 8
        w.last_leaf = nd
        w.count += nd.n
        return 0
    for i in range(nd.n):
        s = lo
        sn = nlo
        if i > 0:
            s = key_of(nd, i, &sn)
        if i + 1 < nd.n:
            p = key_of(nd, i + 1, &n)
            r = check_node(ix, child(nd, i), level - 1, s, sn, p, n, w)
        else:
            r = check_node(ix, child(nd, i), level - 1, s, sn, hi, nhi, w)
        if r:
            return r
    return 0


cdef int ord_check(OrdIndex* ix) noexcept nogil:
    cdef Walk w
    cdef int r
    w.last_leaf = NULL
    w.count = 0
    w.mem = sizeof(OrdIndex) + ALLOC_OVERHEAD
    w.longs = 0
    r = check_node(ix, ix.root, ix.root.level, NULL, 0, NULL, 0, &w)
    if r:
        return r
    if w.last_leaf != NULL and w.last_leaf.next != NULL:
        return 8
    if w.count != ix.count:
        return 9
    if w.mem != ix.mem:
        return 10
    if w.longs != ix.longs:
        return 12
    return 0


# ---------------------------------------------------------------------------------------------
# The Python wrapper (tests and benchmarks; the engine uses the C functions)

cdef inline const unsigned char* ubytes(bytes b) noexcept:
    return <const unsigned char*>PyBytes_AS_STRING(b)


@cython.final
cdef class OrderedIndex:
    """A sorted set of non-empty byte strings (the C index behind a Python face)."""

    cdef OrdIndex* ix

    def __cinit__(self, Py_ssize_t node_bytes=NODE_BYTES):
        self.ix = ord_new_sized(node_bytes)
        if self.ix == NULL:
            raise MemoryError()

    def __dealloc__(self):
        ord_free(self.ix)

    def __len__(self):
        return self.ix.count

    @property
    def memory_bytes(self):
        """Bytes the index holds (its allocations plus ~16 bytes of allocator header each)."""
        return ord_memory(self.ix)

    @property
    def height(self):
        """Levels of the tree (1: the root is a leaf)."""
        return ord_height(self.ix)

    @property
    def node_bytes(self):
        return self.ix.node_bytes

    @property
    def long_keys(self):
        """Entries and separators stored out of line."""
        return self.ix.longs

    def add(self, bytes e not None):
        """Add e; ValueError when it is present or empty, MemoryError out of memory."""
        cdef int r
        if PyBytes_GET_SIZE(e) == 0:
            raise ValueError("an entry is at least one byte")
        r = ord_insert(self.ix, ubytes(e), PyBytes_GET_SIZE(e))
        if r == 1:
            raise ValueError(f"{e!r} is present")
        if r < 0:
            raise MemoryError()

    def remove(self, bytes e not None):
        """Remove e; KeyError when it is absent."""
        if ord_remove(self.ix, ubytes(e), PyBytes_GET_SIZE(e)) != 0:
            raise KeyError(e)

    def __contains__(self, bytes e not None):
        return ord_contains(self.ix, ubytes(e), PyBytes_GET_SIZE(e))

    def has_prefix(self, bytes key not None):
        """Whether some entry starts with key (non-empty)."""
        if PyBytes_GET_SIZE(key) == 0:
            raise ValueError("a prefix is at least one byte")
        return ord_has_prefix(self.ix, ubytes(key), PyBytes_GET_SIZE(key))

    def between(self, bytes start not None, bytes end not None, Py_ssize_t limit=-1):
        """The entries start <= e < end in order (end b"": unbounded), at most limit (all when < 0)."""
        cdef OrdCursor c
        cdef const unsigned char* p
        cdef Py_ssize_t m, nend = PyBytes_GET_SIZE(end)
        cdef list out = []
        if limit == 0:
            return out
        ord_seek(self.ix, ubytes(start), PyBytes_GET_SIZE(start), &c)
        while ord_next(self.ix, &c, &p, &m):
            if nend > 0 and cmp(p, m, ubytes(end), nend) >= 0:
                break
            out.append(PyBytes_FromStringAndSize(<const char*>p, m))
            if len(out) == limit:
                break
        return out

    def with_prefix(self, bytes key not None):
        """The entries that start with key, in order."""
        cdef OrdCursor c
        cdef const unsigned char* p
        cdef Py_ssize_t m, nk = PyBytes_GET_SIZE(key)
        cdef list out = []
        ord_seek(self.ix, ubytes(key), nk, &c)
        while ord_next(self.ix, &c, &p, &m) and starts_with(p, m, ubytes(key), nk):
            out.append(PyBytes_FromStringAndSize(<const char*>p, m))
        return out

    def check(self):
        """Verify every invariant of the tree; AssertionError naming the first broken one."""
        cdef int r = ord_check(self.ix)
        if r:
            raise AssertionError(f"ordered index invariant {r}: {CHECKS[r]}")

    # bulk loops at C speed, for benchmarks

    def add_many(self, list entries not None):
        """add() each of entries (bytes) in turn."""
        cdef bytes e
        cdef int r
        for e in entries:
            r = ord_insert(self.ix, ubytes(e), PyBytes_GET_SIZE(e))
            if r == 1:
                raise ValueError(f"{e!r} is present")
            if r < 0:
                raise MemoryError()

    def remove_many(self, list entries not None):
        """remove() each of entries (bytes) in turn."""
        cdef bytes e
        for e in entries:
            if ord_remove(self.ix, ubytes(e), PyBytes_GET_SIZE(e)) != 0:
                raise KeyError(e)

    def seek_many(self, list keys not None):
        """Seek each key and read the entry there; the total length of the entries read."""
        cdef bytes k
        cdef OrdCursor c
        cdef const unsigned char* p
        cdef Py_ssize_t m, total = 0
        for k in keys:
            ord_seek(self.ix, ubytes(k), PyBytes_GET_SIZE(k), &c)
            if ord_next(self.ix, &c, &p, &m):
                total += m
        return total
