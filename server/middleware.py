"""The one error path: every failure leaves as a DALI error VOTable with a 4xx/5xx status.

Handlers raise :class:`~vocloud.server.errors.VocloudError` (or aiohttp's HTTP
errors for routing problems); nothing else reaches the client, and unexpected
exceptions are logged with their traceback and answered with a bare 500.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web

from .auth import Handler
from .errors import AuthenticationError, VocloudError
from .votable import VOTABLE_MIME, error_document

__all__ = ["error_middleware"]

_log = logging.getLogger(__name__)


_REASON_MAX_CHARS = 200
"""Longest message repeated as the HTTP reason phrase."""


def _reason(status: int, message: str) -> str:
    """The message as an HTTP reason phrase: one line of printable ASCII, bounded.

    Clients that only report the status line (``requests``' ``raise_for_status``
    and so pyvo's ``DALServiceError``) then still say what went wrong; the body
    keeps the full message.
    """
    text = "".join(c if " " <= c <= "~" else "?" for c in " ".join(message.split()))
    if len(text) > _REASON_MAX_CHARS:
        text = text[: _REASON_MAX_CHARS - 3] + "..."
    return text or HTTPStatus(status).phrase


def _error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        reason=_reason(status, message),
        body=error_document(message),
        content_type=VOTABLE_MIME,
        headers=headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render errors in the protocol's own form."""
    try:
        return await handler(request)
    except AuthenticationError as e:
        return _error_response(e.status, e.message, {"WWW-Authenticate": 'Basic realm="vocloud"'})
    except VocloudError as e:
        return _error_response(e.status, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        message = e.text if e.text and not e.text.startswith(f"{e.status}:") else e.reason
        if e.status == 405:
            message = f"Method {request.method} is not allowed on {request.path}"
        elif e.status == 404 and message == e.reason:
            message = f"Nothing at {request.path}"
        return _error_response(e.status, message or e.reason)
    except Exception:  # noqa: BLE001 - the last line of defence: no traceback reaches a client
        _log.exception("Unexpected error answering %s %s", request.method, request.path)
        return _error_response(500, "Internal server error; the operator can find details in the log")
