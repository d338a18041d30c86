"""The C ordered index (stdb/_core/ordered.pyx) vs the old SortedIndex algorithm, in one run.

Workload (fixed seed): add N (1M) random 16-byte entries, remove half of them in random order,
seek 100k random keys (the first entry >= key, read), memory per entry.

* **old**: SortedIndex's algorithm (stdb/_core/index.pyx) reproduced in Python — a list of sorted
  lists of ``bytes`` (chunks of <= 2 x 512) with each chunk's last entry in ``maxes``, bisect +
  list insert/delete, a seek is ``rowids_between(key, b"", 1)`` (also timed: two bisections
  alone).  SortedIndex itself is Cython whose add/remove are ``cdef`` (not callable from Python);
  this twin pays some extra interpreter time per operation, its memory is the same.
* **new, Python loop**: ``OrderedIndex.add / remove / between(key, b"", 1)`` called from Python,
  one call per operation, like the old one.
* **new, C loop**: ``add_many / remove_many / seek_many``: the same operations looped in C —
  what a Cython caller (the engine) pays.

Times are the best of ``--reps`` runs, in ns per operation.  Memory: bytes traced by
``tracemalloc`` for the index alone (entries are generated inside the traced region, so the old
index's ``bytes`` objects count and the new index's transient inputs do not), per entry held, at
N entries and again after removing half; for the new index also its own ``memory_bytes``
(allocations + 16 bytes of allocator header each).

``python -m bench.ordered_index [--n 1000000] [--seeks 100000] [--reps 3] [--quick]`` prints a
Markdown table and writes bench/results/ordered_index.{json,md}.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time
import tracemalloc
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator

from bench.machine import machine, save_results
from stdb._core.ordered import OrderedIndex

SEED = 16
LOAD = 512
ENTRY_BYTES = 16


class OldSortedIndex:
    """SortedIndex's data structure and algorithm (stdb/_core/index.pyx), in Python."""

    def __init__(self) -> None:
        self.lists: list[list[bytes]] = []
        self.maxes: list[bytes] = []
        self.count = 0

    def add(self, entry: bytes) -> None:
        if not self.maxes:
            self.lists.append([entry])
            self.maxes.append(entry)
            self.count += 1
            return
        i = bisect_left(self.maxes, entry)
        if i == len(self.maxes):
            i -= 1
            lst = self.lists[i]
            lst.append(entry)
            self.maxes[i] = entry
        else:
            lst = self.lists[i]
            insort(lst, entry)
        if len(lst) > 2 * LOAD:
            self.lists.insert(i + 1, lst[LOAD:])
            del lst[LOAD:]
            self.maxes.insert(i, lst[-1])
        self.count += 1

    def remove(self, entry: bytes) -> None:
        i = bisect_left(self.maxes, entry)
        lst = self.lists[i]
        j = bisect_left(lst, entry)
        if lst[j] != entry:
            raise KeyError(entry)
        del lst[j]
        self.count -= 1
        if not lst:
            del self.lists[i]
            del self.maxes[i]
        elif j == len(lst):
            self.maxes[i] = lst[-1]

    def between(self, start: bytes, end: bytes, limit: int) -> list[bytes]:
        """``rowids_between`` returning the entries themselves."""
        out: list[bytes] = []
        i = bisect_left(self.maxes, start)
        if limit == 0 or i == len(self.maxes):
            return out
        j = bisect_left(self.lists[i], start)
        while i < len(self.maxes):
            for e in self.lists[i][j:]:
                if end and e >= end:
                    return out
                out.append(e)
                if len(out) == limit:
                    return out
            i += 1
            j = 0
        return out


def _entries(seed: int, n: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(n):
        yield rng.randbytes(ENTRY_BYTES)


def _best(fn: Callable[[], object], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _times(make: Callable[[], object], ents: list[bytes], gone: list[bytes], keys: list[bytes],
           add: Callable, remove: Callable, seek: Callable, reps: int) -> dict[str, float]:
    """ns per add (into an empty index), remove (half, random order), seek (on the half left)."""
    built: list = []

    def adding() -> None:
        built[:] = [make()]
        add(built[0], ents)

    t_add = _best(adding, reps)
    ix = built[0]
    t_seek_full = _best(lambda: seek(ix, keys), reps)
    removals = []
    for _ in range(reps):                   # each run removes from a fresh full index
        ix = make()
        add(ix, ents)
        removals.append(_best(lambda ix=ix: remove(ix, gone), 1))
    t_seek = _best(lambda: seek(ix, keys), reps)
    return {"add_ns": t_add / len(ents) * 1e9, "remove_ns": min(removals) / len(gone) * 1e9,
            "seek_ns": t_seek / len(keys) * 1e9, "seek_full_ns": t_seek_full / len(keys) * 1e9}


def _old_add(ix: OldSortedIndex, ents: list[bytes]) -> None:
    for e in ents:
        ix.add(e)


def _old_remove(ix: OldSortedIndex, ents: list[bytes]) -> None:
    for e in ents:
        ix.remove(e)


def _old_seek(ix: OldSortedIndex, keys: list[bytes]) -> None:
    for k in keys:
        ix.between(k, b"", 1)


def _old_seek_bisect(ix: OldSortedIndex, keys: list[bytes]) -> None:
    """The old structure's cheapest seek: two bisections and an index (no ``lst[j:]`` copy)."""
    maxes, lists = ix.maxes, ix.lists
    for k in keys:
        i = bisect_left(maxes, k)
        if i < len(maxes):
            lst = lists[i]
            lst[bisect_left(lst, k)]


def _new_add(ix: OrderedIndex, ents: list[bytes]) -> None:
    for e in ents:
        ix.add(e)


def _new_remove(ix: OrderedIndex, ents: list[bytes]) -> None:
    for e in ents:
        ix.remove(e)


def _new_seek(ix: OrderedIndex, keys: list[bytes]) -> None:
    for k in keys:
        ix.between(k, b"", 1)


def _memory(make: Callable[[], object], add_one: Callable, remove_one: Callable, n: int) -> dict[str, float]:
    """Traced bytes per entry held: after n adds, and after removing every other one."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        ix = make()
        for e in _entries(SEED, n):
            add_one(ix, e)
        full = tracemalloc.get_traced_memory()[0] - base
        for i, e in enumerate(_entries(SEED, n)):  # equal, fresh objects: only the index's die
            if i % 2 == 0:
                remove_one(ix, e)
        gc.collect()
        half = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    out = {"bytes_per_entry": full / n, "bytes_per_entry_after_removing_half": half / (n - (n + 1) // 2)}
    if isinstance(ix, OrderedIndex):
        out["own_bytes_per_entry_after_removing_half"] = ix.memory_bytes / len(ix)
        ix.check()
    del ix
    return out


def run(n: int, seeks: int, reps: int, out_dir: str) -> dict:
    ents = list(_entries(SEED, n))
    rng = random.Random(SEED + 1)
    gone = ents[::2]
    rng.shuffle(gone)
    keys = [rng.randbytes(ENTRY_BYTES) for _ in range(seeks)]

    old = _times(OldSortedIndex, ents, gone, keys, _old_add, _old_remove, _old_seek, reps)
    twin = OldSortedIndex()
    _old_add(twin, ents)
    old["seek_bisect_ns"] = _best(lambda: _old_seek_bisect(twin, keys), reps) / seeks * 1e9
    twin = None
    new_py = _times(OrderedIndex, ents, gone, keys, _new_add, _new_remove, _new_seek, reps)
    new_c = _times(OrderedIndex, ents, gone, keys, OrderedIndex.add_many, OrderedIndex.remove_many,
                   OrderedIndex.seek_many, reps)
    mem_old = _memory(OldSortedIndex, OldSortedIndex.add, OldSortedIndex.remove, n)
    mem_new = _memory(OrderedIndex, OrderedIndex.add, OrderedIndex.remove, n)
    probe = OrderedIndex()
    probe.add_many(ents)
    mem_new["own_bytes_per_entry"] = probe.memory_bytes / n
    height = probe.height
    del probe

    def row(label: str, key: str, fmt: str = "{:,.0f}") -> str:
        cells = [fmt.format(d[key]) for d in (old, new_py, new_c)]
        return f"| {label} | " + " | ".join(cells) + f" | {old[key] / new_c[key]:.1f}x |"

    lines = [
        f"### Ordered index: {n:,} random {ENTRY_BYTES}-byte entries (best of {reps})",
        "",
        "| per operation, ns | old SortedIndex (Python twin) | OrderedIndex, Python loop | "
        "OrderedIndex, C loop | old / C loop |",
        "| --- | ---: | ---: | ---: | ---: |",
        row(f"add {n:,}", "add_ns"),
        row(f"remove {len(gone):,} (random order)", "remove_ns"),
        row(f"seek {seeks:,} at {n:,} entries", "seek_full_ns"),
        row(f"seek {seeks:,} at {n - len(gone):,} entries", "seek_ns"),
        "",
        f"The old structure's cheapest seek (two bisections, no ``lst[j:]`` copy as rowids_between makes) "
        f"at {n:,} entries: {old['seek_bisect_ns']:,.0f} ns.",
        "",
        "| memory, bytes per entry held | old SortedIndex | OrderedIndex |",
        "| --- | ---: | ---: |",
        f"| at {n:,} entries (tracemalloc) | {mem_old['bytes_per_entry']:.1f} | "
        f"{mem_new['bytes_per_entry']:.1f} |",
        f"| after removing half (tracemalloc) | {mem_old['bytes_per_entry_after_removing_half']:.1f} | "
        f"{mem_new['bytes_per_entry_after_removing_half']:.1f} |",
        f"| OrderedIndex.memory_bytes (incl. 16 B allocator header per allocation) | | "
        f"{mem_new['own_bytes_per_entry']:.1f} / {mem_new['own_bytes_per_entry_after_removing_half']:.1f} "
        "after removing half |",
        "",
        f"Tree height at {n:,} entries: {height}.",
    ]
    result = {"machine": machine(), "n": n, "seeks": seeks, "reps": reps, "entry_bytes": ENTRY_BYTES,
              "old_python_twin": old, "new_python_loop": new_py, "new_c_loop": new_c,
              "memory_old": mem_old, "memory_new": mem_new, "height": height}
    save_results(out_dir, "ordered_index", result, "\n".join(lines))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ordered_index")
    p.add_argument("--n", type=int, default=1_000_000, help="entries added")
    p.add_argument("--seeks", type=int, default=100_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="50k entries, 10k seeks, 1 rep")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.seeks, a.reps = 50_000, 10_000, 1
    run(a.n, a.seeks, a.reps, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
