"""Identity tokens: stdb/server/identity.py."""

from __future__ import annotations

import base64
import json
import os

import jwt
import pytest

from stdb.errors import AuthError, DataError, StorageError
from stdb.server.identity import KEY_BYTES, KEY_FILE, MAX_TOKEN_CHARS, TokenIssuer

T0 = 1_700_000_000.0
LIFETIME = 100


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(seg: str) -> bytes:
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(clock: FakeClock) -> TokenIssuer:
    return TokenIssuer(b"k" * KEY_BYTES, lifetime_s=LIFETIME, clock=clock)


def test_round_trip(issuer: TokenIssuer) -> None:
    ident, token = issuer.new_identity()
    assert isinstance(ident, bytes) and len(ident) == 32
    assert issuer.verify(token) == ident
    again = issuer.token_for(ident)
    assert issuer.verify(again) == ident
    other, _ = issuer.new_identity()
    assert other != ident                                          # identities are random


def test_claims(issuer: TokenIssuer) -> None:
    ident, token = issuer.new_identity()
    claims = jwt.decode(token, b"k" * KEY_BYTES, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"iss": "stdb", "sub": ident.hex(), "iat": int(T0), "exp": int(T0) + LIFETIME}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_no_lifetime_means_no_exp(clock: FakeClock) -> None:
    forever = TokenIssuer(b"k" * KEY_BYTES, lifetime_s=None, clock=clock)
    ident, token = forever.new_identity()
    assert "exp" not in jwt.decode(token, options={"verify_signature": False})
    clock.now += 100 * 365 * 86400
    assert forever.verify(token) == ident


def test_token_for_wants_32_bytes(issuer: TokenIssuer) -> None:
    for bad in (b"", b"x" * 31, b"x" * 33, "x" * 32, None):
        with pytest.raises(DataError, match="32 bytes"):
            issuer.token_for(bad)  # type: ignore[arg-type]


def test_key_persists(tmp_path, clock: FakeClock) -> None:
    data_dir = tmp_path / "data" / "nested"                       # created if missing
    a = TokenIssuer.load_or_create(str(data_dir), lifetime_s=LIFETIME, clock=clock)
    key_path = data_dir / KEY_FILE
    assert key_path.stat().st_size == KEY_BYTES
    assert os.stat(key_path).st_mode & 0o777 == 0o600
    assert [p.name for p in data_dir.iterdir()] == [KEY_FILE]     # no temp file left behind
    key = key_path.read_bytes()
    ident, token = a.new_identity()
    b = TokenIssuer.load_or_create(str(data_dir), lifetime_s=LIFETIME, clock=clock)
    assert key_path.read_bytes() == key                            # not regenerated
    assert b.verify(token) == ident
    assert a.verify(b.token_for(ident)) == ident
    elsewhere = TokenIssuer.load_or_create(str(tmp_path / "other"), clock=clock)
    with pytest.raises(AuthError, match="signature"):
        elsewhere.verify(token)                                    # each data dir has its own key


@pytest.mark.parametrize("size", [0, 5, KEY_BYTES - 1, KEY_BYTES + 1, 1000])
def test_key_file_of_wrong_size(tmp_path, size: int) -> None:
    (tmp_path / KEY_FILE).write_bytes(b"z" * size)
    with pytest.raises(AuthError, match=f"{KEY_FILE}.*{size} bytes, not {KEY_BYTES}") as info:
        TokenIssuer.load_or_create(str(tmp_path))
    assert str(tmp_path / KEY_FILE) in info.value.detail
    assert (tmp_path / KEY_FILE).read_bytes() == b"z" * size        # left as it was


def test_unusable_data_dir(tmp_path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    with pytest.raises(StorageError, match=KEY_FILE):
        TokenIssuer.load_or_create(str(not_a_dir))


def test_other_key_is_refused(issuer: TokenIssuer, clock: FakeClock) -> None:
    ident, token = issuer.new_identity()
    other = TokenIssuer(b"o" * KEY_BYTES, lifetime_s=LIFETIME, clock=clock)
    with pytest.raises(AuthError, match="signature does not verify"):
        other.verify(token)
    with pytest.raises(AuthError, match="signature does not verify"):
        issuer.verify(other.token_for(ident))


def test_altered_payload_is_refused(issuer: TokenIssuer) -> None:
    ident, token = issuer.new_identity()
    head, payload, sig = token.split(".")
    claims = json.loads(b64url_decode(payload))
    assert claims["sub"] == ident.hex()
    claims["sub"] = "ab" * 32
    altered = f"{head}.{b64url(json.dumps(claims).encode())}.{sig}"
    with pytest.raises(AuthError, match="signature does not verify"):
        issuer.verify(altered)
    claims["sub"] = ident.hex()
    claims["exp"] += 10**6                                         # extend its own life
    with pytest.raises(AuthError, match="signature does not verify"):
        issuer.verify(f"{head}.{b64url(json.dumps(claims).encode())}.{sig}")


def test_expired_token_is_refused(issuer: TokenIssuer, clock: FakeClock) -> None:
    ident, token = issuer.new_identity()
    clock.now = T0 + LIFETIME - 1
    assert issuer.verify(token) == ident                           # still valid just before
    clock.now = T0 + LIFETIME + 1
    with pytest.raises(AuthError, match="expired"):
        issuer.verify(token)
    assert issuer.verify(issuer.token_for(ident)) == ident         # a fresh one works again


def test_fake_clock_far_from_real_time(clock: FakeClock) -> None:
    # Issued and verified in the year 2286 by the fake clock: PyJWT's real-time checks must not apply.
    clock.now = 1e10
    future = TokenIssuer(b"k" * KEY_BYTES, lifetime_s=LIFETIME, clock=clock)
    ident, token = future.new_identity()
    assert future.verify(token) == ident
    # and a token whose exp is long past in real time is fine if the fake clock says so
    clock.now = 1_000.0
    old = TokenIssuer(b"k" * KEY_BYTES, lifetime_s=LIFETIME, clock=clock)
    ident, token = old.new_identity()
    assert old.verify(token) == ident


def test_alg_none_is_refused(issuer: TokenIssuer) -> None:
    ident, _ = issuer.new_identity()
    claims = {"iss": "stdb", "sub": ident.hex(), "iat": int(T0)}
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    by_hand = f"{header}.{b64url(json.dumps(claims).encode())}."
    tokens = [by_hand]
    try:
        tokens.append(jwt.encode(claims, None, algorithm="none"))
    except Exception:                                              # a PyJWT that refuses to make one
        pass
    for token in tokens:
        assert jwt.decode(token, options={"verify_signature": False})["sub"] == ident.hex()
        with pytest.raises(AuthError, match="HS256"):
            issuer.verify(token)


def test_other_algorithm_is_refused(issuer: TokenIssuer) -> None:
    ident, _ = issuer.new_identity()
    claims = {"iss": "stdb", "sub": ident.hex(), "iat": int(T0)}
    token = jwt.encode(claims, b"k" * KEY_BYTES, algorithm="HS512")  # right key, other algorithm
    with pytest.raises(AuthError, match="HS256"):
        issuer.verify(token)


def test_wrong_issuer_is_refused(issuer: TokenIssuer, clock: FakeClock) -> None:
    evil = TokenIssuer(b"k" * KEY_BYTES, issuer="evil", lifetime_s=LIFETIME, clock=clock)
    ident, token = evil.new_identity()
    assert evil.verify(token) == ident
    with pytest.raises(AuthError, match="issued by someone else"):
        issuer.verify(token)


def signed(claims: dict) -> str:
    return jwt.encode(claims, b"k" * KEY_BYTES, algorithm="HS256")


@pytest.mark.parametrize("sub", ["", "ab" * 31, "ab" * 33, "AB" * 32, "zz" * 32, " " + "a" * 63, 5, None])
def test_subject_must_be_an_identity(issuer: TokenIssuer, sub: object) -> None:
    # Correctly signed, so only the subject check can refuse it.
    token = signed({"iss": "stdb", "sub": sub, "iat": int(T0)})
    with pytest.raises(AuthError, match="malformed token"):
        issuer.verify(token)


@pytest.mark.parametrize("missing", ["iss", "sub", "iat"])
def test_required_claims(issuer: TokenIssuer, missing: str) -> None:
    claims = {"iss": "stdb", "sub": "ab" * 32, "iat": int(T0)}
    assert issuer.verify(signed(claims)) == bytes.fromhex("ab" * 32)
    del claims[missing]
    with pytest.raises(AuthError, match=f"malformed token.*{missing}"):
        issuer.verify(signed(claims))


@pytest.mark.parametrize("claim, value", [("iat", "yesterday"), ("exp", "tomorrow"), ("exp", 1.5e20),
                                          ("iat", True)])
def test_time_claims_must_be_integers(issuer: TokenIssuer, claim: str, value: object) -> None:
    claims = {"iss": "stdb", "sub": "ab" * 32, "iat": int(T0), claim: value}
    with pytest.raises(AuthError, match="malformed token"):
        issuer.verify(signed(claims))


def deep_header() -> str:
    return b64url(b"[" * 2000) + ".e30.c2ln"


@pytest.mark.parametrize("garbage", [
    "", "abc", "a.b.c", "..", "a.b", "a.b.c.d", "x" * 5000, "x" * (MAX_TOKEN_CHARS + 1),
    "é.é.é", "\ud800.a.b", "\x00", b64url(b"[1]") + ".e30.c2ln", b64url(b'{"alg":5}') + ".e30.c2ln",
    "e30.W10.c2ln", deep_header(),
    5, None, b"a.b.c", ["a", "b"], 3.5,
])
def test_garbage_gives_auth_error(issuer: TokenIssuer, garbage: object) -> None:
    with pytest.raises(AuthError) as info:
        issuer.verify(garbage)  # type: ignore[arg-type]
    assert info.value.code == "auth_error"
    assert info.value.detail                                       # says something


def test_garbage_messages(issuer: TokenIssuer) -> None:
    with pytest.raises(AuthError, match="malformed"):
        issuer.verify(5)  # type: ignore[arg-type]
    with pytest.raises(AuthError, match="malformed.*4096"):
        issuer.verify("x" * 5000)
    with pytest.raises(AuthError, match="malformed"):
        issuer.verify("a.b.c")


def test_oversized_token_is_refused_even_if_signed(issuer: TokenIssuer) -> None:
    claims = {"iss": "stdb", "sub": "ab" * 32, "iat": int(T0), "pad": ""}
    assert issuer.verify(signed(claims)) == bytes.fromhex("ab" * 32)
    claims["pad"] = "p" * MAX_TOKEN_CHARS
    token = signed(claims)
    assert len(token) > MAX_TOKEN_CHARS
    with pytest.raises(AuthError, match="malformed token.*over 4096"):
        issuer.verify(token)


def test_non_ascii_is_refused_before_decoding(issuer: TokenIssuer) -> None:
    for token in ("\ud800.a.b", "é.é.é"):
        with pytest.raises(AuthError, match="malformed token.*ASCII"):
            issuer.verify(token)


@pytest.mark.parametrize("exc", [jwt.exceptions.InvalidKeyError("bad key"), ValueError("odd"),
                                 RecursionError("deep")])
def test_no_jwt_exception_escapes(issuer: TokenIssuer, monkeypatch, exc: Exception) -> None:
    # Errors PyJWT is not expected to raise for a string token still come out as AuthError.
    _, token = issuer.new_identity()

    def decode(*args: object, **kw: object) -> None:
        raise exc

    monkeypatch.setattr(jwt, "decode", decode)
    with pytest.raises(AuthError, match=f"malformed token: {type(exc).__name__}"):
        issuer.verify(token)


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(DataError, match="key"):
        TokenIssuer(b"short")
    with pytest.raises(DataError, match="key"):
        TokenIssuer("k" * 64)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="lifetime"):
        TokenIssuer(b"k" * 64, lifetime_s=0)
    with pytest.raises(DataError, match="issuer"):
        TokenIssuer(b"k" * 64, issuer="")
