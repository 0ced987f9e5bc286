"""Typed application and request keys shared by the web modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .archive.service import Archive
    from .sessions.service import SessionService
    from .settings import Settings
    from .uws.service import JobService

__all__ = ["ARCHIVE", "OWNER", "SERVICE", "SESSIONS", "SETTINGS", "STARTED"]

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
SERVICE: web.AppKey[JobService] = web.AppKey("service")
ARCHIVE: web.AppKey[Archive] = web.AppKey("archive")
SESSIONS: web.AppKey[SessionService] = web.AppKey("sessions")
"""The active-learning sessions (``/sessions``)."""
STARTED: web.AppKey[float] = web.AppKey("started")
"""Start time of the server (epoch seconds), for VOSI availability ``upSince``."""

OWNER: web.RequestKey[str | None] = web.RequestKey("owner")
"""Request key holding the authenticated owner's name, or ``None`` when anonymous."""
