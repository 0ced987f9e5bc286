"""The one error hierarchy of the web layer; each error carries its HTTP status.

The error middleware renders every :class:`VocloudError` in the protocol's own
form (a DALI error VOTable), so handlers and services just raise.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "PayloadTooLargeError",
    "UsageError",
    "VocloudError",
]


class VocloudError(Exception):
    """Base of errors that reach the client with a message.

    Parameters
    ----------
    message
        What went wrong and, where possible, what to do about it.
    """

    status = 500
    """HTTP status the error is rendered with."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(VocloudError):
    """The request is malformed or a value is invalid (HTTP 400)."""

    status = 400


class AuthenticationError(VocloudError):
    """No or wrong credentials where they are needed (HTTP 401)."""

    status = 401


class ForbiddenError(VocloudError):
    """The request is illegal in the resource's current state (HTTP 403, UWS 1.1 section 2.2)."""

    status = 403


class NotFoundError(VocloudError):
    """No such resource, or not one the caller may see (HTTP 404)."""

    status = 404


class ConflictError(VocloudError):
    """The request conflicts with the state of the service (HTTP 409)."""

    status = 409


class PayloadTooLargeError(VocloudError):
    """An upload or request body is over the configured bound (HTTP 413)."""

    status = 413
