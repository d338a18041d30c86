"""Identities and their signed tokens.

An identity is 32 random bytes.  Its token is a JWT (HS256) signed with the server's key, with
the claims ``iss`` (the issuer), ``sub`` (the identity as 64 hex digits), ``iat`` and ``exp``.
The key is 64 random bytes in ``<data_dir>/server.key`` (mode 0600), created on first start.
``verify`` refuses, with an AuthError naming why, anything that is not a well-formed token
this server signed and that is still valid: a forged signature, another algorithm (``none``
included), an expired token, another issuer, a malformed subject.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jwt

from stdb.errors import AuthError, DataError

__all__ = ["TokenIssuer", "KEY_FILE"]

KEY_FILE = "server.key"
KEY_BYTES = 64
MAX_TOKEN_CHARS = 4096


class TokenIssuer:
    def __init__(self, key: bytes, *, issuer: str = "stdb", lifetime_s: int | None = 365 * 86400,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self.issuer = issuer
        self.lifetime_s = lifetime_s
        self.clock = clock

    @classmethod
    def load_or_create(cls, data_dir: str, **kw: Any) -> TokenIssuer:
        path = os.path.join(data_dir, KEY_FILE)
        os.makedirs(data_dir, exist_ok=True)
        if not os.path.exists(path):
            fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".server.key.")
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, secrets.token_bytes(KEY_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        with open(path, "rb") as f:
            key = f.read()
        if len(key) != KEY_BYTES:
            raise AuthError(f"the token key {path} is {len(key)} bytes, not {KEY_BYTES}",
                            hint="restore it from a backup (deleting it invalidates every token)")
        return cls(key, **kw)

    def new_identity(self) -> tuple[bytes, str]:
        identity = secrets.token_bytes(32)
        return identity, self.token_for(identity)

    def token_for(self, identity: bytes) -> str:
        if not isinstance(identity, bytes) or len(identity) != 32:
            raise DataError("an identity is 32 bytes")
        now = int(self.clock())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": identity.hex(), "iat": now}
        if self.lifetime_s is not None:
            claims["exp"] = now + self.lifetime_s
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: Any) -> bytes:
        """The identity a token names; AuthError if it is not valid."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise AuthError("malformed token", hint="connect without a token to get a new identity")
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], issuer=self.issuer, leeway=0,
                                options={"require": ["iss", "sub", "iat"], "verify_exp": False,
                                         "verify_iat": False})
        except jwt.InvalidSignatureError:
            raise AuthError("the token's signature does not verify (forged, or from another server)") \
                from None
        except jwt.InvalidIssuerError:
            raise AuthError("the token was issued by someone else") from None
        except jwt.InvalidTokenError as e:
            raise AuthError(f"malformed token: {e}") from None
        exp = claims.get("exp")
        if exp is not None and (not isinstance(exp, int) or exp <= self.clock()):
            raise AuthError("the token has expired", hint="connect without a token to get a new identity")
        sub = claims["sub"]
        if not isinstance(sub, str) or len(sub) != 64 or any(c not in "0123456789abcdef" for c in sub):
            raise AuthError("malformed token: its subject is not an identity")
        return bytes.fromhex(sub)
