"""DALI 1.1 sync requests: one parameter reader for GET and POST.

Parameter names are case-insensitive and values case-sensitive (DALI 1.1
section 3.1); a POST sends them as a form body (``application/x-www-form-urlencoded``
or ``multipart/form-data``), a GET in the query string, and both may be
combined. Uploads have no place in the sync services that use this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .errors import PayloadTooLargeError, UsageError

__all__ = ["SyncParams", "form_pairs", "query_pairs", "read_sync_params"]


@dataclass(kw_only=True)
class SyncParams:
    """Parameters of one request, names lower-cased, in the order given."""

    pairs: list[tuple[str, str]] = field(default_factory=list)

    def all(self, name: str) -> list[str]:
        """Every value of ``name`` (lower-case), in order."""
        return [v for n, v in self.pairs if n == name]


def query_pairs(request: web.Request) -> list[tuple[str, str]]:
    """The query string's parameters, names lower-cased, in order."""
    return [(k.lower(), v) for k, v in request.query.items()]


async def form_pairs(request: web.Request) -> list[tuple[str, str]]:
    """The text fields of a POST's form body, names lower-cased, in order (file parts are ignored).

    Raises
    ------
    PayloadTooLargeError
        Raised if the body is over the application's size limit.
    UsageError
        Raised if the body cannot be parsed as a form.
    """
    if request.method != "POST" or not request.body_exists:
        return []
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge as e:
        msg = f"The request body is over the size limit: {e.text}"
        raise PayloadTooLargeError(msg) from e
    except (ValueError, AssertionError, HttpProcessingError) as e:
        msg = f"Cannot read the request body as a form: {e}"
        raise UsageError(msg) from e
    return [(k.lower(), v) for k, v in form.items() if isinstance(v, str)]


async def read_sync_params(request: web.Request) -> SyncParams:
    """Collect the query string and, for a POST, the form fields (file parts are ignored).

    Raises
    ------
    PayloadTooLargeError
        Raised if the body is over the application's size limit.
    UsageError
        Raised if the body cannot be parsed as a form.
    """
    return SyncParams(pairs=query_pairs(request) + await form_pairs(request))
