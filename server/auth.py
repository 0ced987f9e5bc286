"""Who is calling: anonymous on loopback, or HTTP Basic users with salted scrypt hashes.

The users file is JSON ``{"name": "scrypt$n$r$p$salt$hash"}`` written by
``vocloud user add``. Verified credentials are cached in memory (keyed by a
hash of the header) so that scrypt's deliberate cost is paid once per user,
not once per request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from .errors import AuthenticationError
from .keys import OWNER

__all__ = ["UserFile", "auth_middleware", "hash_password", "verify_password"]

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
"""scrypt cost (OWASP's minimum recommendation: N=2^14, r=8, p=1 takes ~50 ms)."""

_USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

PUBLIC_PREFIXES = ("/static/", "/vodml/")
PUBLIC_PATHS = frozenset({"/", "/jobs/availability", "/jobs/capabilities"})
"""Reachable without credentials: the landing page, VOSI (which registries poll) and the published data model."""


def hash_password(password: str) -> str:
    """A salted scrypt hash in the users-file format."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    encoded = [base64.b64encode(x).decode() for x in (salt, digest)]
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${encoded[0]}${encoded[1]}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a stored hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class UserFile:
    """The users file: names and password hashes.

    Parameters
    ----------
    path
        Location of the JSON file; it is created on the first ``add``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, str]:
        """All users and their hashes (empty if the file does not exist)."""
        if not self.path.exists():
            return {}
        users = json.loads(self.path.read_text(encoding="utf-8"))
        if not isinstance(users, dict):
            msg = f"{self.path} is not a users file"
            raise ValueError(msg)
        return {str(k): str(v) for k, v in users.items()}

    def add(self, name: str, password: str) -> None:
        """Add or replace a user; the file is rewritten atomically and readable by its owner only."""
        if not _USER_RE.match(name):
            msg = "User names are 1-64 characters of letters, digits and _ . @ -"
            raise ValueError(msg)
        if len(password) < 8:
            msg = "Passwords need at least 8 characters"
            raise ValueError(msg)
        users = self.load()
        users[name] = hash_password(password)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(users, handle, indent=1, sort_keys=True)
        tmp.replace(self.path)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(users: UserFile | None) -> Middleware:
    """Middleware setting the request's owner; with ``users``, HTTP Basic is required.

    Parameters
    ----------
    users
        The users file for ``--auth basic``; ``None`` for anonymous use.
    """
    verified: dict[bytes, str] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if users is None:
            request[OWNER] = None
            return await handler(request)
        header = request.headers.get("Authorization", "")
        key = hashlib.sha256(header.encode()).digest()
        owner = verified.get(key)
        if owner is None and header.startswith("Basic "):
            owner = await _check_basic(header, users)
            if owner is not None:
                verified[key] = owner
        if owner is None and not (
            request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES)
        ):
            msg = "This service needs a user name and password (HTTP Basic)"
            raise AuthenticationError(msg)
        request[OWNER] = owner
        return await handler(request)

    return middleware


async def _check_basic(header: str, users: UserFile) -> str | None:
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    if not sep:
        return None
    stored = users.load().get(name)
    if stored is None:
        return None
    ok = await asyncio.to_thread(verify_password, password, stored)
    return name if ok else None
