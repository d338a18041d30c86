"""examples/arena/arena.c: the arena game module, in-process (a fake clock drives its 20 Hz
tick through Database.run_due) and published with `stdb publish` on a real server."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
import urllib.request

import pytest
import trio
from click.testing import CliRunner

import stdb
from stdb import Database, build_module
from stdb.cli import main
from stdb.client import connect

ROOT = pathlib.Path(__file__).resolve().parents[1]
ALICE, BOB, OWNER = b"\xaa" * 32, b"\xbb" * 32, b"\x01" * 32
TICK = 50_000
START = 1_000_000_000_000          # a multiple of TICK * 100: the food top-up falls on tick 100
WORLD, FOOD, START_SIZE = 4000, 300, 20
REGION = "WHERE x >= 100 AND x < 400 AND y >= 0 AND y < 300"


@pytest.fixture(scope="module")
def arena_wasm(tmp_path_factory):
    out = tmp_path_factory.mktemp("wasm") / "arena.wasm"
    return pathlib.Path(build_module(str(ROOT / "examples/arena/arena.c"), str(out))).read_bytes()


class Arena:
    """A published arena with a fake clock: ``tick()`` advances it one period and runs what is due."""

    def __init__(self, path, wasm):
        self.clock = [START]
        self.db = Database(str(path), clock=lambda: self.clock[0])
        self.db.publish(wasm, owner=OWNER)

    def tick(self, n=1):
        results = []
        for _ in range(n):
            self.clock[0] += TICK
            fired = self.db.run_due()
            assert [r.reducer for r in fired] == ["tick"], fired
            results += fired
        return results

    def players(self):
        return {r[0]: r for r in self.db.store.datastore.scan("player")}

    def food(self):
        return sorted(self.db.store.datastore.scan("food"))

    def sql(self, text):
        return self.db.sql(text, sender=OWNER)

    def place(self, who, x, y, size=START_SIZE):
        self.sql(f"UPDATE player SET x = {x}, y = {y}, size = {size} WHERE id = X'{who.hex()}'")

    def close(self):
        self.db.close()


@pytest.fixture
def arena(tmp_path, arena_wasm):
    a = Arena(tmp_path / "arena", arena_wasm)
    yield a
    a.close()


def test_init_spawns_food_and_the_schedule_and_players_come_and_go(arena):
    db = arena.db
    assert db.schema.schedules == {"tick_schedule": "tick"}
    [(sid, at, repeat, target)] = list(db.store.datastore.scan("tick_schedule"))
    assert (repeat, target) == (TICK, FOOD) and at == START + TICK
    food = arena.food()
    assert len(food) == FOOD and all(0 <= f[1] < WORLD and 0 <= f[2] < WORLD for f in food)
    db.client_connected(ALICE)
    db.client_connected(BOB)
    db.client_connected(ALICE)                       # a second connection: still one player
    players = arena.players()
    assert set(players) == {ALICE, BOB}
    for p in players.values():
        assert p[1] == "" and 0 <= p[2] < WORLD and 0 <= p[3] < WORLD and p[4:] == (0, 0, START_SIZE, 0)
    db.call("set_name", ("alice",), sender=ALICE)
    assert arena.players()[ALICE][1] == "alice"
    with pytest.raises(stdb.ReducerError, match="a name is 1 to 32 bytes"):
        db.call("set_name", ("",), sender=ALICE)
    with pytest.raises(stdb.ReducerError, match="connect first"):
        db.call("set_direction", (1, 0), sender=b"\xcc" * 32)
    with pytest.raises(stdb.ReducerError, match="by the schedule only"):
        db.call("tick", (sid, at, repeat, target), sender=ALICE)
    db.client_disconnected(BOB)
    assert set(arena.players()) == {ALICE}


def test_the_same_calls_at_the_same_times_give_the_same_world(tmp_path, arena_wasm):
    worlds = []
    for name in ("one", "two"):
        a = Arena(tmp_path / name, arena_wasm)
        try:
            a.db.client_connected(ALICE)
            a.db.client_connected(BOB)
            a.db.call("set_direction", (1, 1), sender=ALICE)
            a.db.call("set_direction", (-3, 1), sender=BOB)
            a.tick(30)
            worlds.append((a.players(), a.food()))
        finally:
            a.close()
    assert worlds[0] == worlds[1]


def test_players_move_along_their_direction_slower_when_bigger(arena):
    db = arena.db
    arena.sql("DELETE FROM food")                    # nothing to eat on the way
    db.client_connected(ALICE)
    db.client_connected(BOB)
    arena.place(ALICE, 1000, 1000)
    arena.place(BOB, 3000, 3000, size=200)
    db.call("set_direction", (3, 4), sender=ALICE)   # normalised to (600, 800) per mille
    db.call("set_direction", (-5, 0), sender=BOB)
    assert arena.players()[ALICE][4:6] == (600, 800)
    arena.tick()
    p = arena.players()
    speed = 2 + 360 // START_SIZE                    # 20 units a tick at the start size
    assert p[ALICE][2:4] == (1000 + speed * 600 // 1000, 1000 + speed * 800 // 1000)
    assert p[BOB][2:4] == (3000 - (2 + 360 // 200), 3000)
    db.call("set_direction", (0, 0), sender=ALICE)   # standing still: no update at all
    res = arena.tick()[0]
    assert arena.players()[ALICE][2:4] == p[ALICE][2:4]
    assert [r[0] for r in res.delta.tables["player"].inserts] == [BOB]
    arena.place(BOB, 5, 5, size=200)                 # the world's edge holds
    arena.tick(3)
    assert arena.players()[BOB][2:4] == (0, 5)


def test_eating_food_grows_scores_and_respawns_it(arena):
    db = arena.db
    arena.sql("DELETE FROM food")
    arena.sql("INSERT INTO food (x, y) VALUES (1030, 1000)")
    arena.sql("INSERT INTO food (x, y) VALUES (1100, 1000)")
    [eaten_id, far_id] = [f[0] for f in arena.food()]
    db.client_connected(ALICE)
    arena.place(ALICE, 1000, 1000)
    db.call("set_direction", (1, 0), sender=ALICE)
    arena.tick()                                     # at 1020: the food at 1030 is inside (r 20)
    p = arena.players()[ALICE]
    assert (p[2], p[6], p[7]) == (1020, START_SIZE + 1, 1)
    food = arena.food()
    assert len(food) == 2 and eaten_id not in [f[0] for f in food] and far_id in [f[0] for f in food]
    arena.sql(f"DELETE FROM food WHERE id <> {far_id}")   # the respawned piece is somewhere else
    db.call("set_direction", (0, 0), sender=ALICE)
    arena.tick()
    assert arena.players()[ALICE][6:] == (START_SIZE + 1, 1)   # 1100 is out of reach


def test_a_bigger_player_eats_a_smaller_one_which_respawns(arena):
    db = arena.db
    arena.sql("DELETE FROM food")
    db.client_connected(ALICE)
    db.client_connected(BOB)
    arena.place(ALICE, 1000, 1000, size=21)
    arena.place(BOB, 1010, 1000, size=20)            # 21 is not 10% bigger than 20: no meal
    arena.tick()
    p = arena.players()
    assert p[ALICE][6:] == (21, 0) and p[BOB][2:4] == (1010, 1000)
    arena.place(ALICE, 1000, 1000, size=30)
    arena.tick()
    p = arena.players()
    assert p[ALICE][6:] == (36, 10)                  # isqrt(30² + 20²); 10 + the victim's score
    assert p[BOB][6:] == (START_SIZE, 0) and p[BOB][2:4] != (1010, 1000)
    arena.place(BOB, 1000, 1000, size=30)            # the same size: nobody eats anybody
    arena.place(ALICE, 1005, 1000, size=30)
    arena.tick()
    assert {k: v[6] for k, v in arena.players().items()} == {ALICE: 30, BOB: 30}


def test_food_is_topped_up_every_hundredth_tick(arena):
    arena.sql("DELETE FROM food WHERE x < 2000")
    left = len(arena.food())
    assert left < FOOD
    arena.tick(99)
    assert len(arena.food()) == left
    arena.tick()
    assert len(arena.food()) == FOOD


def test_region_subscriptions_receive_the_diffs(arena):
    db = arena.db
    [food_sub, player_sub] = db.subscribe([f"SELECT * FROM food {REGION}", f"SELECT * FROM player {REGION}"],
                                          subscriber="viewer")
    inside = lambda x, y: 100 <= x < 400 and 0 <= y < 300  # noqa: E731
    assert sorted(food_sub.rows) == [f for f in arena.food() if inside(f[1], f[2])]
    arena.sql("INSERT INTO food (x, y) VALUES (230, 100)")
    meal = [f for f in arena.food() if (f[1], f[2]) == (230, 100)][0]
    db.client_connected(ALICE)
    db.client_connected(BOB)
    arena.place(ALICE, 200, 100)
    arena.place(BOB, 3000, 3000)
    db.call("set_direction", (1, 0), sender=ALICE)
    res = arena.tick()[0]
    food_diff, player_diff = res.updates[food_sub.query_id], res.updates[player_sub.query_id]
    assert meal in food_diff.deletes
    assert all(inside(f[1], f[2]) for f in food_diff.inserts + food_diff.deletes)
    [old] = player_diff.deletes
    [new] = player_diff.inserts
    assert (old[0], old[2:4]) == (ALICE, (200, 100)) and (new[0], new[2:4]) == (ALICE, (220, 100))
    arena.place(ALICE, 390, 100)                     # leaving the region: a delete only
    res = arena.tick()[0]
    diff = res.updates[player_sub.query_id]
    assert [r[0] for r in diff.deletes] == [ALICE] and diff.inserts == []
    assert arena.players()[ALICE][2] >= 400


def _port_from(port_file, proc):
    end = time.monotonic() + 60
    while not port_file.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < end, "no port file"
        time.sleep(0.05)
    return int(port_file.read_text())


def test_published_on_a_real_server_it_ticks_by_itself(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<canvas></canvas>")
    port_file = tmp_path / "port"
    env = dict(os.environ, STDB_CONFIG_DIR=str(tmp_path / "cfg"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "stdb", "start", "--data", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
         "--port-file", str(port_file), "--static", str(site), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = _port_from(port_file, proc)
        url = f"ws://127.0.0.1:{port}"
        env["STDB_SERVER"] = url
        r = CliRunner().invoke(main, ["publish", "arena", str(ROOT / "examples/arena/arena.c")], env=env,
                               catch_exceptions=False)
        assert r.exit_code == 0 and "published arena" in r.output, r.output
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30)
        assert page.read() == b"<canvas></canvas>" and page.headers["Content-Type"].startswith("text/html")

        async def play():
            async with connect(url, "arena") as conn:
                moved = trio.Event()
                me = conn.identity

                def on_update(old, new, event):
                    if new[0] == me and event.reducer == "tick" and new[2:4] != old[2:4]:
                        moved.set()
                conn.on_update("player", on_update)
                await conn.subscribe("SELECT * FROM player", "SELECT * FROM food WHERE x >= 0 AND x < 2000")
                assert conn.table("player").get(me) is not None          # spawned on connect
                assert 0 < len(conn.table("food")) <= 300
                (await conn.call("set_name", "ada")).raise_for_status()
                x, y = conn.table("player").get(me)[2:4]                  # toward the middle
                toward = (1 if x < 2000 else -1, 1 if y < 2000 else -1)
                (await conn.call("set_direction", *toward)).raise_for_status()
                with trio.fail_after(30):
                    await moved.wait()                                   # the schedule moved us
                assert conn.table("player").get(me)[1] == "ada"
        trio.run(play)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
