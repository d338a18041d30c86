"""The C ordered index (stdb/_core/ordered.pyx) against a sorted Python list of bytes.

Small nodes (128-512 bytes: a few entries each, keys over 10-80 bytes out of line) make deep
trees out of a few hundred entries, so splits, merges, root growth and collapse, long
separators and the leaf chain are crossed many times; every test checks the tree's invariants
(``OrderedIndex.check``) as well as its answers.
"""

import bisect
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bench import ordered_index as bench_ordered
from stdb._core.ordered import OrderedIndex, _fail_allocations

NODE_SIZES = [128, 256, 512, 4096]


class Ref:
    """The reference: a sorted list of bytes with the index's operations."""

    def __init__(self):
        self.items: list[bytes] = []

    def add(self, e):
        i = bisect.bisect_left(self.items, e)
        assert i == len(self.items) or self.items[i] != e
        self.items.insert(i, e)

    def remove(self, e):
        i = bisect.bisect_left(self.items, e)
        assert self.items[i] == e
        del self.items[i]

    def between(self, start, end, limit=-1):
        i = bisect.bisect_left(self.items, start)
        j = bisect.bisect_left(self.items, end) if end else len(self.items)
        out = self.items[i:max(i, j)]
        return out if limit < 0 else out[:limit]

    def with_prefix(self, key):
        out = []
        for e in self.items[bisect.bisect_left(self.items, key):]:
            if not e.startswith(key):
                break
            out.append(e)
        return out

    def has_prefix(self, key):
        return bool(self.with_prefix(key))


def same(ix, ref):
    ix.check()
    assert len(ix) == len(ref.items)
    assert ix.between(b"", b"") == ref.items


def filled(entries, node_bytes=4096):
    ix = OrderedIndex(node_bytes)
    for e in entries:
        ix.add(e)
    return ix


# --- unit tests --------------------------------------------------------------------------------

@pytest.mark.parametrize("node_bytes", NODE_SIZES)
def test_an_empty_index_holds_nothing(node_bytes):
    ix = OrderedIndex(node_bytes)
    ix.check()
    assert len(ix) == 0 and ix.height == 1 and ix.long_keys == 0
    assert ix.between(b"", b"") == [] and ix.between(b"a", b"z", 5) == []
    assert ix.with_prefix(b"a") == [] and ix.with_prefix(b"") == []
    assert not ix.has_prefix(b"\x00")
    assert b"a" not in ix
    with pytest.raises(KeyError):
        ix.remove(b"a")
    assert ix.seek_many([b"", b"a"]) == 0
    assert 0 < ix.memory_bytes <= 400


def test_node_size_is_clamped():
    assert OrderedIndex(1).node_bytes == 128
    assert OrderedIndex(10**6).node_bytes == 8192
    assert OrderedIndex().node_bytes == 4096


def test_add_remove_and_membership():
    ix = OrderedIndex()
    for e in [b"b", b"a", b"c"]:
        ix.add(e)
    assert ix.between(b"", b"") == [b"a", b"b", b"c"] and len(ix) == 3
    assert b"b" in ix and b"bb" not in ix
    ix.remove(b"b")
    assert ix.between(b"", b"") == [b"a", b"c"]
    with pytest.raises(KeyError):
        ix.remove(b"b")
    with pytest.raises(ValueError, match="present"):
        ix.add(b"a")
    with pytest.raises(ValueError):
        ix.add(b"")
    with pytest.raises(TypeError):
        ix.add(None)
    assert ix.between(b"", b"") == [b"a", b"c"]
    ix.check()


def test_order_is_pythons_bytes_order_with_prefixes_first():
    entries = [b"a", b"aa", b"aaa", b"ab", b"a\x00", b"\x00", b"\xff", b"\xff\xff", b"b", b"a\xff",
               b"\x00\x00", b"\x00\x01", b"abc" * 3, b"abc" * 3 + b"\x00"]
    for order in (entries, entries[::-1], sorted(entries)):
        ix = filled(order)
        assert ix.between(b"", b"") == sorted(entries)
        ix.check()


def test_eight_byte_boundaries_compare_like_bytes():
    # the comparison reads 8 bytes as an integer: lengths around 8 and bytes that differ late
    rng = random.Random(8)
    entries = set()
    for n in range(1, 20):
        base = bytes(rng.randrange(3) for _ in range(n))
        entries.update([base, base + b"\x00", base[:-1] + b"\xff", base + b"\x80"])
    entries = sorted(entries)
    shuffled = entries[:]
    rng.shuffle(shuffled)
    ix = filled(shuffled, 128)
    assert ix.between(b"", b"") == entries
    for e in entries:
        assert ix.between(e, b"", 1) == [e]


def test_between_bounds_and_limit():
    items = [bytes([i]) for i in range(1, 200, 2)]
    ix, ref = filled(items, 128), Ref()
    for e in items:
        ref.add(e)
    cases = [(b"", b"", -1), (b"\x05", b"\x11", -1), (b"\x04", b"\x10", -1), (b"\x05", b"", 3),
             (b"\x05", b"\x05", -1), (b"\x10", b"\x05", -1), (b"\xff", b"", -1), (b"", b"\x01", -1),
             (b"", b"\x01\x00", -1), (b"\x01\x00", b"", 0), (b"", b"", 1000)]
    for start, end, limit in cases:
        assert ix.between(start, end, limit) == ref.between(start, end, limit), (start, end, limit)


def test_seek_with_an_empty_key_starts_at_the_first_entry():
    ix = filled([b"m", b"c", b"x"])
    assert ix.between(b"", b"", 1) == [b"c"]
    assert ix.seek_many([b"", b"d", b"y"]) == 2


def test_prefix_queries_over_entries_that_are_prefixes_of_each_other():
    entries = [b"k", b"ka", b"kab", b"kb", b"l", b"j\xff", b"k\x00", b"kaa" * 40]
    ix = filled(entries, 128)
    ref = Ref()
    for e in entries:
        ref.add(e)
    for key in [b"k", b"ka", b"kab", b"kabc", b"kc", b"j", b"j\xff", b"j\xff\x00", b"\x00", b"\xff", b"kaa",
                b"kaa" * 40, b"kaa" * 41]:
        assert ix.with_prefix(key) == ref.with_prefix(key), key
        assert ix.has_prefix(key) == ref.has_prefix(key), key
    with pytest.raises(ValueError):
        ix.has_prefix(b"")


@pytest.mark.parametrize("node_bytes", [128, 4096])
def test_very_long_entries(node_bytes):
    rng = random.Random(5)
    big = [rng.randbytes(100_000), b"\x00" * 100_000, b"\x00" * 100_000 + b"\x01", b"\x00" * 99_999 + b"\x01"]
    # long entries sharing a 5000-byte prefix: the separators between them are long too
    shared = [b"P" * 5000 + bytes([i]) + rng.randbytes(rng.randrange(0, 40)) for i in range(60)]
    small = [rng.randbytes(rng.randrange(1, 30)) for _ in range(300)]
    everything = big + shared + small
    rng.shuffle(everything)
    ix, ref = OrderedIndex(node_bytes), Ref()
    for e in everything:
        ix.add(e)
        ref.add(e)
    same(ix, ref)
    assert ix.long_keys >= len(big) + len(shared)
    assert ix.memory_bytes >= sum(map(len, big + shared))
    assert ix.has_prefix(b"\x00" * 100_000) and ix.has_prefix(b"P" * 5000 + b"\x07")
    assert ix.with_prefix(b"\x00" * 99_999) == sorted(big[1:])
    assert ix.with_prefix(b"P" * 4000) == sorted(shared)
    for e in big + shared:
        ix.remove(e)
        ref.remove(e)
    same(ix, ref)
    for e in small:
        ix.remove(e)
    ix.check()
    assert len(ix) == 0 and ix.long_keys == 0 and ix.height == 1


@pytest.mark.parametrize("node_bytes", NODE_SIZES)
@pytest.mark.parametrize("order", ["ascending", "descending", "random"])
def test_splits_then_merges_down_to_an_empty_root(node_bytes, order):
    rng = random.Random(node_bytes)
    n = 6000 if node_bytes < 4096 else 40_000
    entries = sorted({rng.randbytes(rng.choice([4, 8, 12, 16, 30])) for _ in range(n)})
    if order == "descending":
        entries.reverse()
    elif order == "random":
        rng.shuffle(entries)
    ix = OrderedIndex(node_bytes)
    heights = set()
    for i, e in enumerate(entries):
        ix.add(e)
        heights.add(ix.height)
        if i % 997 == 0:
            ix.check()
    ix.check()
    assert ix.between(b"", b"") == sorted(entries)
    assert max(heights) >= (3 if node_bytes < 4096 else 2)
    removal = entries[:]
    rng.shuffle(removal)
    for i, e in enumerate(removal):
        ix.remove(e)
        if i % 997 == 0:
            ix.check()
            assert len(ix) == len(entries) - i - 1
    ix.check()
    assert len(ix) == 0 and ix.height == 1
    assert ix.memory_bytes <= node_bytes + 200


def test_ascending_and_descending_loads_fill_nodes():
    # the node that receives a new first/last entry keeps its old entries whole
    n = 100_000
    up = OrderedIndex()
    up.add_many([i.to_bytes(8, "big") for i in range(n)])
    down = OrderedIndex()
    down.add_many([i.to_bytes(8, "big") for i in range(n - 1, -1, -1)])
    for ix in (up, down):
        ix.check()
        assert ix.memory_bytes / n < 11.5           # 10 bytes an entry in a full leaf


@pytest.mark.parametrize("node_bytes", [128, 256])
def test_removing_first_and_last_entries(node_bytes):
    entries = [i.to_bytes(3, "big") for i in range(3000)]
    ix, ref = filled(entries, node_bytes), Ref()
    ref.items = sorted(entries)
    step = 0
    while ref.items:
        e = ref.items[0] if step % 2 else ref.items[-1]
        ix.remove(e)
        ref.remove(e)
        step += 1
        if step % 101 == 0:
            same(ix, ref)
            if ref.items:
                assert ix.between(b"", b"", 1) == ref.items[:1]
    same(ix, ref)


def test_entries_sharing_long_prefixes_with_small_nodes():
    # index-style entries: key ‖ 8-byte row id, many rows per key, keys over 10 bytes (out of line
    # with 128-byte nodes) so the separators between rows of one key are long
    rng = random.Random(3)
    keys = [b"key-%04d-" % k * rng.choice([1, 3, 10]) for k in range(40)]
    entries = [k + r.to_bytes(8, "big") for k in keys for r in rng.sample(range(10**6), 60)]
    rng.shuffle(entries)
    ix, ref = OrderedIndex(128), Ref()
    for e in entries:
        ix.add(e)
        ref.add(e)
    same(ix, ref)
    for k in keys:
        assert ix.with_prefix(k) == ref.with_prefix(k)
    for e in entries[::2]:
        ix.remove(e)
        ref.remove(e)
    same(ix, ref)
    for k in keys:
        assert ix.with_prefix(k) == ref.with_prefix(k)
        assert ix.has_prefix(k) == ref.has_prefix(k)


def test_memory_bytes_agrees_with_tracemalloc():
    rng = random.Random(9)
    entries = [rng.randbytes(16) for _ in range(50_000)] + [rng.randbytes(1000) for _ in range(50)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ix = OrderedIndex()
        ix.add_many(entries)
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    ix.check()
    # memory_bytes adds 16 bytes of allocator header to each allocation
    assert traced <= ix.memory_bytes <= traced * 1.02 + 200
    assert ix.memory_bytes / len(entries) < 32


@pytest.mark.parametrize("node_bytes", [128, 256, 4096])
def test_out_of_memory_leaves_the_index_unchanged(node_bytes):
    rng = random.Random(node_bytes)
    ix, ref = OrderedIndex(node_bytes), Ref()
    failures = 0
    try:
        for step in range(3000):
            e = rng.choice([rng.randbytes(rng.randrange(1, 8)), rng.randbytes(rng.randrange(1, 600)),
                            b"S" * rng.randrange(20, 200) + rng.randbytes(3)])
            if e in ref.items:
                continue
            _fail_allocations(rng.randrange(0, 4), rng.randrange(1, 3))
            mem = ix.memory_bytes
            try:
                ix.add(e)
            except MemoryError:
                failures += 1
                _fail_allocations(-1)
                ix.check()
                assert ix.memory_bytes <= mem + node_bytes       # at most a root leaf grew
                assert len(ix) == len(ref.items) and e not in ix
                if step % 50 == 0:
                    assert ix.between(b"", b"") == ref.items
                continue
            _fail_allocations(-1)
            ref.add(e)
            if rng.random() < 0.3:
                gone = rng.choice(ref.items)
                _fail_allocations(0, 1000)      # removing never allocates
                ix.remove(gone)
                _fail_allocations(-1)
                ref.remove(gone)
    finally:
        _fail_allocations(-1)
    assert failures > 100
    same(ix, ref)


def test_out_of_memory_at_creation():
    _fail_allocations(0)
    try:
        with pytest.raises(MemoryError):
            OrderedIndex()
        _fail_allocations(1)
        with pytest.raises(MemoryError):
            OrderedIndex()
    finally:
        _fail_allocations(-1)
    OrderedIndex().check()


def test_bulk_helpers():
    ix = OrderedIndex(256)
    ix.add_many([b"a", b"b", b"c"])
    with pytest.raises(ValueError):
        ix.add_many([b"d", b"a"])
    assert ix.between(b"", b"") == [b"a", b"b", b"c", b"d"]
    assert ix.seek_many([b"", b"bb", b"z"]) == 2
    ix.remove_many([b"a", b"d"])
    with pytest.raises(KeyError):
        ix.remove_many([b"b", b"zz"])
    assert ix.between(b"", b"") == [b"c"]


def test_draining_a_large_random_workload_gives_sorted_order():
    rng = random.Random(2024)
    pool = [rng.randbytes(rng.choice([8, 12, 16, 24, 40])) for _ in range(200_000)]
    pool += [b"shared-prefix/" + rng.randbytes(6) for _ in range(5_000)]
    pool += [rng.randbytes(400) for _ in range(200)]
    entries = list(dict.fromkeys(pool))
    rng.shuffle(entries)
    ix = OrderedIndex()
    ix.add_many(entries)
    gone = rng.sample(entries, 100_000)
    ix.remove_many(gone)
    ix.check()
    want = sorted(set(entries) - set(gone))
    assert len(ix) == len(want)
    assert ix.between(b"", b"") == want
    assert ix.with_prefix(b"shared-prefix/") == [e for e in want if e.startswith(b"shared-prefix/")]
    starts = [rng.randbytes(3) for _ in range(200)]
    for s in starts:
        i = bisect.bisect_left(want, s)
        assert ix.between(s, b"", 5) == want[i:i + 5]


# --- differential tests against the reference ----------------------------------------------------

# few distinct bytes and varied lengths: many entries share prefixes or are prefixes of others
small_entries = st.lists(st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFF]), min_size=1, max_size=14).map(bytes)
long_entries = st.builds(lambda n, tail: b"\x01" * n + tail, st.integers(0, 700),
                         st.binary(min_size=1, max_size=4))
entries_st = st.one_of(small_entries, small_entries, small_entries, long_entries,
                       st.binary(min_size=1, max_size=60))
keys_st = st.one_of(small_entries, long_entries, st.binary(max_size=20))


class OrderedMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.ix = None
        self.ref = Ref()

    @precondition(lambda self: self.ix is None)
    @rule(node_bytes=st.sampled_from([128, 128, 160, 256, 512, 4096]))
    def create(self, node_bytes):
        self.ix = OrderedIndex(node_bytes)

    @precondition(lambda self: self.ix is not None)
    @rule(e=entries_st)
    def add(self, e):
        if e in self.ref.items:
            with pytest.raises(ValueError):
                self.ix.add(e)
        else:
            self.ix.add(e)
            self.ref.add(e)

    @precondition(lambda self: self.ix is not None)
    @rule(seed=st.integers(0, 2**32), count=st.integers(1, 400), width=st.integers(1, 6))
    def add_many(self, seed, count, width):
        rng = random.Random(seed)
        new = {bytes(rng.choice(b"\x00\x01\x02\xfe\xff") for _ in range(rng.randrange(1, width + 1)))
               + rng.randbytes(rng.randrange(0, 3)) for _ in range(count)}
        new -= set(self.ref.items)
        for e in new:
            self.ix.add(e)
            self.ref.add(e)

    @precondition(lambda self: self.ix is not None and self.ref.items)
    @rule(data=st.data())
    def remove(self, data):
        e = data.draw(st.sampled_from(self.ref.items))
        self.ix.remove(e)
        self.ref.remove(e)

    @precondition(lambda self: self.ix is not None and self.ref.items)
    @rule(seed=st.integers(0, 2**32), fraction=st.floats(0.1, 1.0), contiguous=st.booleans())
    def remove_many(self, seed, fraction, contiguous):
        rng = random.Random(seed)
        k = max(1, int(len(self.ref.items) * fraction))
        if contiguous:
            i = rng.randrange(len(self.ref.items) - k + 1)
            gone = self.ref.items[i:i + k]
        else:
            gone = rng.sample(self.ref.items, k)
        for e in gone:
            self.ix.remove(e)
            self.ref.remove(e)

    @precondition(lambda self: self.ix is not None)
    @rule(e=entries_st)
    def remove_absent(self, e):
        if e not in self.ref.items:
            with pytest.raises(KeyError):
                self.ix.remove(e)

    @precondition(lambda self: self.ix is not None)
    @rule(key=keys_st.filter(bool))
    def has_prefix(self, key):
        assert self.ix.has_prefix(key) == self.ref.has_prefix(key)

    @precondition(lambda self: self.ix is not None)
    @rule(key=keys_st)
    def with_prefix(self, key):
        assert self.ix.with_prefix(key) == self.ref.with_prefix(key)

    @precondition(lambda self: self.ix is not None)
    @rule(start=keys_st, end=keys_st, limit=st.integers(-1, 30))
    def between(self, start, end, limit):
        assert self.ix.between(start, end, limit) == self.ref.between(start, end, limit)

    @precondition(lambda self: self.ix is not None)
    @rule(e=entries_st)
    def contains(self, e):
        assert (e in self.ix) == (e in self.ref.items)

    @invariant()
    def agrees(self):
        if self.ix is not None:
            same(self.ix, self.ref)


TestOrderedMachine = OrderedMachine.TestCase
TestOrderedMachine.settings = settings(max_examples=150, stateful_step_count=40)


@settings(max_examples=300)
@given(node_bytes=st.sampled_from([128, 200, 256, 4096]),
       ops=st.lists(st.tuples(st.sampled_from(["add", "add", "add", "remove", "between", "prefix"]),
                              entries_st, keys_st), max_size=200))
def test_random_operations_match_a_sorted_list(node_bytes, ops):
    ix, ref = OrderedIndex(node_bytes), Ref()
    for op, e, k in ops:
        present = e in ref.items
        if op == "add" and not present:
            ix.add(e)
            ref.add(e)
        elif op == "remove" and present:
            ix.remove(e)
            ref.remove(e)
        elif op == "between":
            lo, hi = sorted([e, k])
            assert ix.between(lo, hi) == ref.between(lo, hi)
        elif op == "prefix":
            assert ix.with_prefix(k) == ref.with_prefix(k)
            if k:
                assert ix.has_prefix(k) == ref.has_prefix(k)
    same(ix, ref)


def test_the_benchmark_runs_at_a_small_size(tmp_path, capsys):
    result = bench_ordered.run(3000, 300, 1, str(tmp_path))
    assert (tmp_path / "ordered_index.json").exists() and "OrderedIndex" in capsys.readouterr().out
    assert result["memory_new"]["bytes_per_entry"] < result["memory_old"]["bytes_per_entry"]
