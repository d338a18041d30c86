"""The fuzz targets (fuzz/fuzz_*.py) keep working: each accepts its whole seed corpus and some
nasty inputs without failing, and a short real atheris run of every target finds nothing.

The long runs are commands (``make fuzz``, docs/testing.md "Fuzzing"), not part of the suite.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz._harness import TARGETS

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def _seeds(target: str) -> list[Path]:
    return sorted(p for p in (CORPUS / target).iterdir() if p.is_file())


def _nasty(target: str) -> list[bytes]:
    """Hand-made inputs at the edges of each format (on top of the generic ones)."""
    generic = [b"", b"\x00", b"\xff" * 64, b"\x01" + b"\x00" * 300, bytes(range(256))]
    big_count = b"\xff\xff\xff\xff"
    per = {
        "rowcodec": [bytes([s]) + big_count * 4 for s in range(9)]
        + [b"\x02" + b"\x01\x00\x00\x00" * 3, b"\x05\x02\x00\x00\x00\xc0\x80", b"\x03" + b"\x00" * 19],
        "protocol": [b"\x01\xa1dtypekCallReducer", b"\x01\xbf", b"\x00\x9f" * 40,
                     b"\x01\xa4dtypekCallReducerjrequest_id\x01greducerlsend_messagedargs\x81\xd9\xd9\xf7\x00",
                     b"\x01\xa4dtypekCallReducerjrequest_id\x01greducerhset_namedargs\x81"
                     b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00",
                     b"\x01\xa3dtypelUnsubscribejrequest_id\x00iquery_ids\x81\x1b\xff\xff\xff\xff\xff\xff\xff\xff"],
        "sql": ["SELECT * FROM player WHERE " + "NOT " * 80 + "pvp",
                "SELECT * FROM player LIMIT 99999999999999999999",
                "SELECT * FROM player WHERE zone = 1e400", "SELECT * FROM player WHERE id = -1",
                "INSERT INTO player VALUES (1)", "SELECT * FROM player WHERE name = '\x00\ud7ff'",
                "SELECT * FROM player WHERE zone IN (" + ", ".join(map(str, range(300))) + ")",
                "SELECT p.* FROM player p JOIN zone ON p.zone = zone.zid WHERE zone.label = X''",
                "SELECT * FROM player WHERE score = NULL OR score IS NULL", "UPDATE secret SET id = 1"],
        "logrecord": [b"\x01\x01\x01\x00\x00" + b"\x00" * 100, b"\x01\x01\x02\x00\x00" + b"\x00" * 30,
                      b"\x01\x01\x03" + b"\x00" * 40, b"\x01\x01\x01" + b"\x00" * 30 + big_count * 8],
        "snapshot": [b"\x01{}", b'\x01{"format":1,"offset":0,"tables":[]}',
                     b'\x01{"format":1,"offset":0,"tables":[{"schema":{"name":"t","columns":[]}}]}',
                     b'\x01{"format":1,"offset":0,"tables":[null]}' + b"\n#chunk#\n\x00\x00" + big_count],
        "describe": [b'{"abi":1,"tables":[{"name":"t","columns":[{"name":"a","type":"array<array<u8>>"}]}],'
                     b'"reducers":[]}', b'{"abi":1,"tables":"x","reducers":{}}', b'{"abi":true}', b"[1]",
                     b'{"abi":1,"tables":[],"reducers":[{"name":"\\u0000","params":[]}]}',
                     b'{"abi":1,"tables":[],"reducers":[],"visibility":["SELECT * FROM nope"]}',
                     b"\xef\xbb\xbf{}", b"1e999999"],
        # txn: ends and reads with no transaction open, a program cut inside its arguments, the
        # most operations a program runs, every write refused, a sequence run out
        "txn": [b"\x09\x00\x0a\x00\x05\x00", b"\x00\x00\x01", b"\x00\x01" * 200,
                b"\x00\x00\xfd\x01\x03" + b"\x00\x00\x01\x01\xff\x00\x00\x00" * 8,
                b"\x00\x00\xff\x01" + b"\x00" * 6 + b"\x00\x00\x00\x02" + b"\x00" * 4 + b"\x09\x00"],
        # host: every import with no call in progress, a program cut inside its arguments, the
        # most imports a program runs (scans: open iterators drained at the end), raw row bytes
        "host": [b"\x00\x00\x0d\x02" + bytes(range(13)) * 2, b"\x03\x00\x00\x00\x00",
                 b"\x00\x00" + b"\x06\x00" * 60,
                 b"\x00\x00" + b"\x00\x00\x00\x00\x00\x00\xff\x1f" + b"\xff" * 40,
                 b"\x00\x00" + b"\x00\x00\x06\x00\x00\x00\x00" * 3 + b"\x0d\x01" + b"\x00" * 7,
                 # the first libFuzzer find: the harness made a call's timestamp past int64 (fixed there)
                 b"\x00\xb5\xb5\x09\x00" + b"\xb5" * 44 + b"\x01" + b"\x00" * 7 + b"\xb5\xb5;" + b"\xb5" * 24
                 + b"~\xb5\x00\x05"],
        # lane: a map of five, a key twice, an indefinite map, a huge array count, a tag
        "lane": [b"\xa5dtypekCallReducer", b"\xa4dtypekCallReducerdtypekCallReducer",
                 b"\xbfdtypekCallReducer\xff", b"\xa4dargs\x9b\xff\xff\xff\xff\xff\xff\xff\xff",
                 b"\xa4dtypekCallReducerjrequest_id\x01greducerhtransferdargs\x83\x01\x02\xc2\x41\x03"],
        # websocket: a 2**64-1 length, a control frame too long, reserved bits, an unmasked frame,
        # a handshake of headers without values, one with a bad key
        "websocket": [b"\x06\x82\xff" + b"\xff" * 8 + b"\x00" * 8, b"\x06\x89\xfe\x00\x7e" + b"\x00" * 130,
                      b"\x06\xc2\x80\x00\x00\x00\x00", b"\x06\x82\x01x",
                      b"\x01GET / HTTP/1.1\r\n:\r\nUpgrade", b"\x01GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
                      b"Connection: upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: !!"],
    }
    return generic + [x.encode("utf-8", "surrogatepass") if isinstance(x, str) else x for x in per[target]]


@pytest.mark.parametrize("target", TARGETS)
def test_targets_accept_their_seed_corpus_and_nasty_inputs(target):
    mod = importlib.import_module(f"fuzz.fuzz_{target}")
    seeds = _seeds(target)
    assert 5 <= len(seeds) <= 60 and sum(p.stat().st_size for p in seeds) < 64 << 10
    for p in seeds:
        mod.TestOneInput(p.read_bytes())
    for data in _nasty(target):
        mod.TestOneInput(data)


def test_the_rowcodec_reference_decoder_agrees_on_valid_rows():
    """The target's own oracle is checked too: it decodes what the codec encodes."""
    from fuzz import fuzz_rowcodec as f

    for p in _seeds("rowcodec"):
        data = p.read_bytes()
        sel = data[0] % len(f.SCHEMAS)
        try:
            row = f.CODECS[sel].decode(data[1:])
        except Exception:
            continue
        assert f._same(list(f.reference_decode(f.SCHEMAS[sel], data[1:])), list(row))


def test_the_native_builds_cover_every_cython_extension():
    """``build-native`` builds (and the targets load instrumented) every .pyx of stdb."""
    from fuzz._harness import NATIVE_MODULES

    pyx = {str(p.relative_to(ROOT).with_suffix("")).replace("/", ".")
           for p in (ROOT / "stdb").rglob("*.pyx")}
    assert set(NATIVE_MODULES) == pyx and len(NATIVE_MODULES) == len(pyx)


def test_the_txn_target_runs_its_seeds_through_both_write_sets(monkeypatch):
    """Every txn seed runs, and between them they commit non-empty deltas, roll back, and write
    more row ids to one table than the native write set searches without its map."""
    from fuzz import fuzz_txn as f
    from stdb.storage import datastore

    seen = {"native": 0, "python": 0, "rows": 0, "rollbacks": 0}
    commit, rollback = datastore.Transaction.commit, datastore.Transaction.rollback

    def counting_commit(tx, delta=None):
        d = commit(tx, delta)
        seen["native" if tx.native else "python"] += 1
        seen["rows"] = max(seen["rows"], d.row_count)
        return d

    def counting_rollback(tx):
        seen["rollbacks"] += 1
        rollback(tx)

    monkeypatch.setattr(datastore.Transaction, "commit", counting_commit)
    monkeypatch.setattr(datastore.Transaction, "rollback", counting_rollback)
    for p in _seeds("txn"):
        f.TestOneInput(p.read_bytes())
    assert seen["native"] == seen["python"] >= 10 and seen["rollbacks"] >= 6
    assert seen["rows"] > 8                  # _MAP_FROM in stdb/_core/txn.pyx


def test_the_host_target_runs_its_seeds_through_both_hosts(monkeypatch):
    """Every host seed runs, and between them they reach every import with a good answer and
    the usual refusals, drain iterators with a buffer that grows, commit and roll back calls."""
    from fuzz import fuzz_host as f
    from stdb.module.host import ERR

    seen: dict[str, set] = {}
    same, end = f.Pair.same, f.Pair.end

    def counting_same(pair, name, *args):
        got = same(pair, name, *args)
        code = got[0] if isinstance(got, tuple) else got
        seen.setdefault(name, set()).add(code if code is None or code <= 0 else "ok")
        return got

    def counting_end(pair, commit, again):
        seen.setdefault("end", set()).add(commit)
        return end(pair, commit, again)

    monkeypatch.setattr(f.Pair, "same", counting_same)
    monkeypatch.setattr(f.Pair, "end", counting_end)
    for p in _seeds("host"):
        f.TestOneInput(p.read_bytes())
    for name in ("insert", "update", "delete", "seek", "find", "range", "scan", "table_id", "index_id",
                 "iter_close"):
        assert "ok" in seen[name] or 0 in seen[name], name
    assert 0 in seen["insert"] and "ok" in seen["update"] and "ok" in seen["delete"]
    assert "ok" in seen["find"] and ERR["BUFFER_TOO_SMALL"] in seen["find"]
    errs = set().union(*seen.values())
    for code in ("NO_SUCH_TABLE", "NO_SUCH_INDEX", "BAD_ROW", "UNIQUE_VIOLATION", "NO_SUCH_ITER",
                 "BUFFER_TOO_SMALL", "ROW_TOO_LARGE", "WRONG_INDEX_KIND", "BAD_ARGUMENT", "NO_TRANSACTION"):
        assert ERR[code] in errs, code
    assert seen["end"] == {True, False}


def test_seed_corpus_is_what_make_corpus_writes(tmp_path, monkeypatch):
    """fuzz/corpus is generated (``python -m fuzz seed``): regenerate it and compare, so a
    format change that stales the seeds is noticed.  Snapshot manifests hold a creation time
    and are compared without it."""
    import json

    from fuzz import fuzz_snapshot, make_corpus

    for target, gen in make_corpus.GENERATORS.items():
        want = gen()
        have = {p.name: p.read_bytes() for p in _seeds(target)}
        assert set(have) == set(want), target
        for name, data in want.items():
            if target == "snapshot":
                (fa, ma, ca), (fb, mb, cb) = fuzz_snapshot.split(data), fuzz_snapshot.split(have[name])
                strip = lambda m: {k: v for k, v in json.loads(m).items() if k not in ("created_us", "hash")}  # noqa: E731
                assert (fa, strip(ma), ca) == (fb, strip(mb), cb), name
            else:
                assert have[name] == data, f"{target}/{name}"


def test_repro_command_runs_an_input(tmp_path):
    f = tmp_path / "input"
    f.write_bytes(b"SELECT * FROM player")
    proc = subprocess.run([sys.executable, "-m", "fuzz", "repro", "sql", str(f)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "passes" in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (pip install -e '.[fuzz]'); "
                           "the corpus tests above still ran")
def test_short_atheris_run_of_every_target(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fuzz", "run", "--runs", "3000", "--jobs", "2",
                           "--scratch", str(tmp_path / "scratch")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for target in TARGETS:
        line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith(target))
        assert " ok " in line and "3,000 execs" in line, line
