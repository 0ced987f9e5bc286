"""HTTP Basic helpers shared by the tests of authentication and owner isolation."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp.test_utils import TestClient

__all__ = ["PASSWORDS", "AsUser", "basic"]

PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22"}


def basic(name: str, password: str) -> str:
    """An HTTP Basic ``Authorization`` header value."""
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


class AsUser:
    """A test client whose every request carries one user's HTTP Basic credentials.

    It has the ``get``/``post``/``delete`` methods the helpers of ``tests.support.uws`` call.
    """

    def __init__(self, client: TestClient[Any, Any], name: str, password: str | None = None) -> None:
        self.name = name
        self._client = client
        self._authorization = basic(name, PASSWORDS[name] if password is None else password)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {**kwargs.pop("headers", {}), "Authorization": self._authorization}
        return self._client.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)
