"""The short crash-torture run (the long one: `python -m fuzz.torture --rounds 10000`)."""

import os

from fuzz.torture import run


def test_kill_9_loses_no_acknowledged_commit(tmp_path):
    rounds = int(os.environ.get("STDB_TORTURE_ROUNDS", "50"))
    stats = run(rounds, str(tmp_path / "db"), seed=7, min_delay=0.0, max_delay=0.2, progress=False)
    assert stats.rounds == rounds
    assert stats.acked >= 0 and stats.max_offset >= stats.acked
    assert stats.snapshots_used > 0        # kills also landed after snapshots were taken
