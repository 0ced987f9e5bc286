"""DALI 1.1 sync requests: one parameter reader for GET and POST.

Parameter names are case-insensitive and values case-sensitive (DALI 1.1
section 3.1); a POST sends them as a form body (``application/x-www-form-urlencoded``
or ``multipart/form-data``), a GET in the query string, and both may be
combined. Uploads have no place in the sync services that use this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["SyncParams", "read_sync_params"]


@dataclass(kw_only=True)
class SyncParams:
    """Parameters of one request, names lower-cased, in the order given."""

    pairs: list[tuple[str, str]] = field(default_factory=list)

    def all(self, name: str) -> list[str]:
        """Every value of ``name`` (lower-case), in order."""
        return [v for n, v in self.pairs if n == name]


async def read_sync_params(request: web.Request) -> SyncParams:
    """Collect the query string and, for a POST, the form fields (file parts are ignored).

    Raises
    ------
    aiohttp.web.HTTPRequestEntityTooLarge
        Raised (by aiohttp) if the body is over the application's size limit.
    """
    pairs = [(k.lower(), v) for k, v in request.query.items()]
    if request.method == "POST" and request.body_exists:
        form = await request.post()
        pairs.extend((k.lower(), v) for k, v in form.items() if isinstance(v, str))
    return SyncParams(pairs=pairs)
