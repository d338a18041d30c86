"""The Cython matcher's equality index against the naive twin, at sizes where its slot table
grows, probes long runs and moves slots back on removal."""

import random

import pytest

from stdb._core import reference
from stdb._core.matcher import Matcher
from stdb.errors import InternalError

EXTREMES = [0, -1, 1, 2**63 - 1, -2**63, 2**63, 2**64 - 1, -2**63 - 1]   # the last three: not int64


def _both():
    return Matcher(), reference.Matcher()


def _same(fast, naive, rows):
    got, want = fast.match("t", rows), naive.match("t", rows)
    assert got == want
    return got


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_int_values_added_and_removed_at_random_match_like_the_twin(seed):
    rng = random.Random(seed)
    fast, naive = _both()
    # few distinct values: many subscriptions share one, long probe runs form
    pool = EXTREMES + [rng.randrange(-5000, 5000) for _ in range(3000)] + list(range(64))
    live = []
    for sid in range(6000):
        values = [rng.choice(pool) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        fast.add_eq(sid, "t", 0, values, None)
        naive.add_eq(sid, "t", 0, values, None)
        live.append(sid)
        if rng.random() < 0.4:                     # remove one at random
            gone = live.pop(rng.randrange(len(live)))
            fast.remove(gone)
            naive.remove(gone)
        if sid % 1000 == 0:
            _same(fast, naive, [(v, "x") for v in rng.sample(pool, 30)])
    rows = [(v, "x") for v in EXTREMES + rng.sample(pool, 150) + [7777777, -7777777]]
    assert _same(fast, naive, rows)
    # remove everything: each step still agrees, and an emptied matcher matches nothing
    rng.shuffle(live)
    for i, sid in enumerate(live):
        fast.remove(sid)
        naive.remove(sid)
        if i % 1000 == 0:
            _same(fast, naive, rows)
    assert fast.match("t", [(v, "x") for v in pool]) == {} and len(fast) == 0


def test_values_of_other_types_and_big_u64_share_a_column_index_with_ints():
    fast, naive = _both()
    fast.add_eq(1, "t", 0, [5, 2**64 - 1], None)
    naive.add_eq(1, "t", 0, [5, 2**64 - 1], None)
    fast.add_eq(2, "t", 1, ["a", "b"], None)
    naive.add_eq(2, "t", 1, ["a", "b"], None)
    fast.add_eq(3, "t", 1, ["b"], None)
    naive.add_eq(3, "t", 1, ["b"], None)
    fast.add_eq(4, "t", 2, [True], None)
    naive.add_eq(4, "t", 2, [True], None)
    rows = [(5, "z", False), (2**64 - 1, "a", True), (6, "b", None), (None, None, True)]
    assert _same(fast, naive, rows) == {1: rows[:2], 2: rows[1:3], 3: [rows[2]], 4: [rows[1], rows[3]]}
    for sid in (1, 3):
        fast.remove(sid)
        naive.remove(sid)
    assert _same(fast, naive, rows) == {2: rows[1:3], 4: [rows[1], rows[3]]}


def test_removing_a_subscription_twice_or_a_negative_id_is_an_internal_error():
    m = Matcher()
    m.add_eq(1, "t", 0, [10], None)
    m.remove(1)
    with pytest.raises(InternalError):
        m.remove(1)
    with pytest.raises(InternalError, match="negative"):
        m.add_eq(-2, "t", 0, [10], None)
    assert m.match("t", [(10,)]) == {}
