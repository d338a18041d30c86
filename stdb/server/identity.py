"""Identities and their signed tokens.

An identity is 32 random bytes, handed to a client the first time it connects.  Its token is a
JWT signed with HS256 under the server's secret key, carrying the claims ``iss`` (the issuer,
``"stdb"`` by default), ``sub`` (the identity as 64 lowercase hex digits), ``iat`` (when it was
issued) and, unless tokens are issued without a lifetime, ``exp`` (when it stops being valid).
A client proves it owns an identity by presenting the token again.

The key is 64 random bytes in ``<data_dir>/server.key`` (mode 0600), created atomically on
first start and read on every later one; losing or replacing it invalidates every token issued.

``TokenIssuer.verify`` accepts only a well-formed token this server signed that is still valid,
and refuses everything else with an AuthError naming why: a token that is not a string or is
longer than 4096 characters, a bad signature (forged, altered, or from another server), any
algorithm other than HS256 (``"alg": "none"`` included), an expired token (judged by the
issuer's own clock), another issuer, a missing claim, or a subject that is not an identity.
No exception of the jwt library escapes.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jwt

from stdb.errors import AuthError, DataError, StorageError

__all__ = ["TokenIssuer", "KEY_FILE", "KEY_BYTES", "IDENTITY_BYTES", "MAX_TOKEN_CHARS"]

KEY_FILE = "server.key"
KEY_BYTES = 64
MIN_KEY_BYTES = 32                  # RFC 7518 3.2: an HS256 key is at least as long as the hash
IDENTITY_BYTES = 32
MAX_TOKEN_CHARS = 4096
ALGORITHM = "HS256"
_HEX = frozenset("0123456789abcdef")
_NEW_IDENTITY_HINT = "connect without a token to get a new identity"


class TokenIssuer:
    """Issues and verifies identity tokens signed with one secret key.

    ``clock`` returns the current time in seconds since the epoch; it stamps ``iat`` and
    ``exp`` and decides whether a token has expired (tests pass a fake one)."""

    def __init__(self, key: bytes, *, issuer: str = "stdb", lifetime_s: int | None = 365 * 86400,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            got = f"{len(key)} bytes" if isinstance(key, bytes) else type(key).__name__
            raise DataError(f"the token key must be at least {MIN_KEY_BYTES} bytes, got {got}")
        if not isinstance(issuer, str) or not issuer:
            raise DataError(f"the token issuer must be a non-empty string, got {issuer!r}")
        if lifetime_s is not None and (isinstance(lifetime_s, bool) or not isinstance(lifetime_s, int)
                                       or lifetime_s <= 0):
            raise DataError(f"the token lifetime must be a positive number of seconds or None, "
                            f"got {lifetime_s!r}")
        self._key = key
        self.issuer = issuer
        self.lifetime_s = lifetime_s
        self.clock = clock

    @property
    def key(self) -> bytes:
        """The signing key (a replicated cluster's nodes share one: docs/replication.md)."""
        return self._key

    def adopt(self, data_dir: str, key: bytes) -> None:
        """Sign and check with ``key`` from now on, kept as ``<data_dir>/server.key``."""
        if len(key) != KEY_BYTES:
            raise AuthError(f"a shared token key of {len(key)} bytes, not {KEY_BYTES}")
        try:
            _write_key_atomically(data_dir, os.path.join(data_dir, KEY_FILE), key)
        except OSError as e:
            raise StorageError(f"cannot write the shared token key: {e.strerror or e}") from None
        self._key = key

    @classmethod
    def load_or_create(cls, data_dir: str, **kw: Any) -> TokenIssuer:
        """The issuer whose key is ``<data_dir>/server.key``, creating the directory and the key
        (64 random bytes, mode 0600, written atomically) if they do not exist yet.

        A key file of the wrong size raises AuthError; one that cannot be read or written raises
        StorageError.  ``kw`` goes to the constructor."""
        path = os.path.join(data_dir, KEY_FILE)
        try:
            os.makedirs(data_dir, exist_ok=True)
            if not os.path.exists(path):
                _write_key_atomically(data_dir, path, secrets.token_bytes(KEY_BYTES))
            with open(path, "rb") as f:
                key = f.read(KEY_BYTES + 1)
                size = os.fstat(f.fileno()).st_size
        except OSError as e:
            raise StorageError(f"cannot read or create the token key {path}: {e.strerror or e}",
                               hint="check that the data directory exists and is writable") from None
        if len(key) != KEY_BYTES:
            raise AuthError(f"the token key {path} is {size} bytes, not {KEY_BYTES}",
                            hint="restore it from a backup (deleting it invalidates every token)")
        return cls(key, **kw)

    def new_identity(self) -> tuple[bytes, str]:
        """A fresh identity (32 random bytes) and its token."""
        identity = secrets.token_bytes(IDENTITY_BYTES)
        return identity, self.token_for(identity)

    def token_for(self, identity: bytes) -> str:
        """A token for ``identity``, issued now; DataError unless it is 32 bytes."""
        if not isinstance(identity, bytes) or len(identity) != IDENTITY_BYTES:
            got = f"{len(identity)} bytes" if isinstance(identity, bytes) else type(identity).__name__
            raise DataError(f"an identity is {IDENTITY_BYTES} bytes, got {got}")
        now = int(self.clock())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": identity.hex(), "iat": now}
        if self.lifetime_s is not None:
            claims["exp"] = now + self.lifetime_s
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: object) -> bytes:
        """The identity a token names; AuthError saying why if it is not valid."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            what = (f"a {type(token).__name__}, not a string" if not isinstance(token, str)
                    else "empty" if not token else f"{len(token)} characters, over {MAX_TOKEN_CHARS}")
            raise AuthError(f"malformed token: {what}", hint=_NEW_IDENTITY_HINT)
        if not token.isascii():
            raise AuthError("malformed token: it has characters outside ASCII", hint=_NEW_IDENTITY_HINT)
        try:
            claims = jwt.decode(
                token, self._key, algorithms=[ALGORITHM], issuer=self.issuer, leeway=0,
                # Time claims are judged below with self.clock(): PyJWT would use the real time.
                options={"require": ["iss", "sub", "iat"], "verify_signature": True,
                         "verify_exp": False, "verify_iat": False, "verify_nbf": False})
        except jwt.InvalidSignatureError:
            raise AuthError("the token's signature does not verify (forged, altered, or from another "
                            "server)", hint=_NEW_IDENTITY_HINT) from None
        except jwt.InvalidAlgorithmError:
            raise AuthError(f"malformed token: it is not signed with {ALGORITHM}",
                            hint=_NEW_IDENTITY_HINT) from None
        except jwt.InvalidIssuerError:
            raise AuthError(f"the token was issued by someone else, not {self.issuer!r}",
                            hint=_NEW_IDENTITY_HINT) from None
        except jwt.InvalidTokenError as e:
            raise AuthError(f"malformed token: {e}", hint=_NEW_IDENTITY_HINT) from None
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as e:
            # Not expected from a string token and an HMAC key, but nothing from jwt may escape.
            raise AuthError(f"malformed token: {type(e).__name__}: {e}", hint=_NEW_IDENTITY_HINT) from None
        now = self.clock()
        iat = claims["iat"]
        if not _is_int(iat):
            raise AuthError("malformed token: its issued-at time (iat) is not an integer")
        if "nbf" in claims and (not _is_int(claims["nbf"]) or claims["nbf"] > now):
            raise AuthError("the token is not valid yet (nbf)", hint=_NEW_IDENTITY_HINT)
        if "exp" in claims:
            exp = claims["exp"]
            if not _is_int(exp):
                raise AuthError("malformed token: its expiry time (exp) is not an integer")
            if exp <= now:
                raise AuthError("the token has expired", hint=_NEW_IDENTITY_HINT)
        sub = claims["sub"]
        if not isinstance(sub, str) or len(sub) != 2 * IDENTITY_BYTES or not _HEX.issuperset(sub):
            raise AuthError(f"malformed token: its subject is not an identity "
                            f"({2 * IDENTITY_BYTES} lowercase hex digits)", hint=_NEW_IDENTITY_HINT)
        return bytes.fromhex(sub)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _write_key_atomically(data_dir: str, path: str, key: bytes) -> None:
    """Write ``key`` to ``path`` (mode 0600) so that it is either absent or complete."""
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".server.key.")   # mkstemp creates it 0600
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(key)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                          # make the rename itself durable
        dfd = os.open(data_dir, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
