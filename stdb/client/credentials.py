"""Saved identity tokens: one JSON file mapping a server URL to the token it issued.

    {"version": 1, "tokens": {"ws://127.0.0.1:3000": "eyJ..."}}

Written atomically (a temporary file renamed over the old one) with mode 0600: a token is a
password for its identity.
"""

from __future__ import annotations

import json
import os
import tempfile
from urllib.parse import urlsplit

from stdb.errors import StdbError

__all__ = ["load_token", "save_token", "server_key"]


def server_key(url: str) -> str:
    """The server part of a URL (``ws://host:port``): tokens belong to a server, not to one
    of its databases."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}".lower()


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {"version": 1, "tokens": {}}
    except (OSError, ValueError) as e:
        raise StdbError(f"cannot read the credentials file {path}: {e}", code="bad_credentials",
                        hint="fix or delete it (a new identity is made on the next connect)") from None
    if not isinstance(data, dict) or not isinstance(data.get("tokens"), dict):
        raise StdbError(f"{path} is not a credentials file (no 'tokens' object)", code="bad_credentials",
                        hint="fix or delete it")
    return data


def load_token(path: str, url: str) -> str | None:
    tok = _read(path)["tokens"].get(server_key(url))
    return tok if isinstance(tok, str) else None


def save_token(path: str, url: str, token: str | None) -> None:
    """Save (or with None, forget) the token for ``url``'s server."""
    data = _read(path)
    if token is None:
        data["tokens"].pop(server_key(url), None)
    else:
        data["tokens"][server_key(url)] = token
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".credentials-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
