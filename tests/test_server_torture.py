"""The short server crash-torture run (the long one: `python -m fuzz.server_torture --rounds 10000`):
a server under reducer load from confirmed-mode clients is SIGKILLed, restarted and checked; every
third round it is also stopped with SIGTERM and restarted, and nothing may change."""

import os

from fuzz.server_torture import ACCOUNTS, START_BALANCE, run
from stdb.storage.commitlog import log_bounds
from stdb.storage.lmdbenv import Env
from stdb.storage.snapshot import list_snapshots


def test_server_kill_9_loses_no_confirmed_transfer(tmp_path):
    rounds = int(os.environ.get("STDB_SERVER_TORTURE_ROUNDS", "6"))
    stats = run(rounds, str(tmp_path), clients=4, seed=11, graceful_every=3, progress=False)
    assert stats.rounds == rounds
    assert stats.graceful_restarts == (rounds - 1) // 3    # SIGTERM restarts changed nothing
    assert stats.kills_while_loaded == rounds          # every kill landed while clients were calling
    assert stats.acked > 0
    assert sum(stats.balances.values()) == START_BALANCE * ACCOUNTS
    # the server snapshots every 200 records and compacts its log: recovery used them
    env = Env(str(tmp_path / "data" / "databases" / "bank"), readonly=True)
    try:
        snaps = list_snapshots(env)
        assert snaps and log_bounds(env)[0] > 0          # the log starts after a compacted part
    finally:
        env.close()
