"""The CBOR protocol's checks (stdb/protocol.py) and identity tokens (stdb/server/identity.py)."""

from __future__ import annotations

import json
import os
import pathlib
import re

import cbor2
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stdb
from stdb.protocol import decode_client, decode_server, encode, join_parts, split_message
from stdb.server.identity import KEY_FILE, TokenIssuer


def test_a_good_message_round_trips():
    raw = encode("CallReducer", request_id=3, reducer="send", args=[1, "x", None, [b"\x00", 2.5]])
    assert decode_client(raw) == {"type": "CallReducer", "request_id": 3, "reducer": "send",
                                  "args": [1, "x", None, [b"\x00", 2.5]]}
    assert decode_client(encode("Logs", request_id=4, limit=0, follow=True))["follow"] is True
    assert decode_client(encode("Describe", request_id=5)) == {"type": "Describe", "request_id": 5}
    assert decode_client(encode("Snapshot", request_id=6)) == {"type": "Snapshot", "request_id": 6}


@pytest.mark.parametrize("msg, words", [
    ({"type": "CallReducer", "request_id": 1, "reducer": "r"}, "missing field 'args'"),
    ({"type": "CallReducer", "request_id": 1, "reducer": "r", "args": [], "x": 1}, "unknown field 'x'"),
    ({"type": "Subscribe", "request_id": 1, "queries": []}, "0 items"),
    ({"type": "Subscribe", "request_id": -1, "queries": ["q"]}, "unsigned 64-bit"),
    ({"type": "Subscribe", "request_id": 1, "queries": [5]}, "queries[0]"),
    ({"type": "CallReducer", "request_id": 1, "reducer": "r", "args": [{"a": 1}]}, "dict"),
    ({"type": "CallReducer", "request_id": 1, "reducer": "r", "args": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]},
     "nested"),
    ({"type": "Publish", "request_id": 1, "wasm": "text"}, "byte string"),
    ({"type": "Logs", "request_id": 1, "limit": 10, "follow": 1}, "boolean"),
    ({"type": "Logs", "request_id": 1, "limit": -1, "follow": False}, "unsigned"),
    ({"type": "Describe", "request_id": 1, "database": "x"}, "unknown field 'database'"),
    ({"type": "DeleteDatabase"}, "missing field 'request_id'"),
    ({"type": "Snapshot", "request_id": 1, "offset": 3}, "unknown field 'offset'"),
    ({"type": "Hello", "request_id": 1}, "unknown message type"),
    ({"request_id": 1}, "'type'"),
])
def test_bad_messages_name_the_problem(msg, words):
    with pytest.raises(stdb.ProtocolError) as e:
        decode_client(cbor2.dumps(msg))
    assert words in e.value.detail
    if msg.get("type") in ("CallReducer", "Subscribe", "Publish") and msg["request_id"] >= 0:
        assert e.value.request_id == 1


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_a_protocol_error_or_a_checked_message(raw):
    try:
        msg = decode_client(raw)
    except stdb.ProtocolError:
        return
    assert msg["type"] in stdb.protocol.CLIENT_MESSAGES


def test_the_documented_vectors():
    """docs/protocol.md's test vectors are what encode produces and what the decoders accept."""
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    vectors = re.findall(r"^\| `(\{.*\})` \| `([0-9a-f]+)` \|$", doc, re.M)
    assert len(vectors) == 4
    for text, h in vectors:                 # each row's two columns say the same
        assert cbor2.loads(bytes.fromhex(h)) == json.loads(text)
    one_off, error, *parts = (bytes.fromhex(h) for _, h in vectors)
    assert encode("OneOffQuery", request_id=1, sql="SELECT * FROM message") == one_off
    assert decode_client(one_off) == {"request_id": 1, "sql": "SELECT * FROM message", "type": "OneOffQuery"}
    assert encode("Error", request_id=7, code="auth_error", detail="no", hint=None) == error
    assert decode_server(error)["code"] == "auth_error"
    # a OneOffQueryResult in two parts, cut at 96 bytes ("Large results: parts")
    whole = {"request_id": 2, "columns": ["id", "text"], "rows": [[1, "hello"], [2, "world"]],
             "plan": ["scan message"]}
    assert len(encode("OneOffQueryResult", **whole, more=False)) == 100
    assert split_message("OneOffQueryResult", whole, 96) == parts
    assert join_parts([decode_server(p) for p in parts]) == dict(whole, more=False, type="OneOffQueryResult")


def test_server_messages_must_have_their_fields():
    assert decode_server(encode("Error", request_id=None, code="x", detail="d", hint=None))["code"] == "x"
    with pytest.raises(stdb.ProtocolError, match="missing field"):
        decode_server(encode("Error", request_id=None))


def test_tokens(tmp_path):
    now = [1_000_000.0]
    a = TokenIssuer.load_or_create(str(tmp_path), lifetime_s=100, clock=lambda: now[0])
    ident, token = a.new_identity()
    assert a.verify(token) == ident and len(ident) == 32
    assert os.stat(tmp_path / KEY_FILE).st_mode & 0o777 == 0o600
    b = TokenIssuer.load_or_create(str(tmp_path), lifetime_s=100, clock=lambda: now[0])
    assert b.verify(a.token_for(ident)) == ident                 # the key persists
    other = TokenIssuer(b"k" * 64, clock=lambda: now[0])
    with pytest.raises(stdb.AuthError, match="signature"):
        other.verify(token)
    head, _, sig = token.split(".")
    claims = {"iss": "stdb", "sub": "00" * 32, "iat": 1}
    altered = jwt.encode(claims, "x" * 32, algorithm="HS256").split(".")[1]
    with pytest.raises(stdb.AuthError, match="signature"):
        a.verify(f"{head}.{altered}.{sig}")
    unsigned = jwt.encode({"iss": "stdb", "sub": ident.hex(), "iat": 1}, None, algorithm="none")
    with pytest.raises(stdb.AuthError):
        a.verify(unsigned)
    with pytest.raises(stdb.AuthError, match="someone else"):
        a.verify(TokenIssuer(a._key, issuer="evil", clock=lambda: now[0]).token_for(ident))
    for junk in ("", "abc", "a.b.c", "x" * 5000, 5, None):
        with pytest.raises(stdb.AuthError):
            a.verify(junk)
    now[0] += 101
    with pytest.raises(stdb.AuthError, match="expired"):
        a.verify(token)
    (tmp_path / KEY_FILE).write_bytes(b"short")
    with pytest.raises(stdb.AuthError, match="bytes"):
        TokenIssuer.load_or_create(str(tmp_path))
