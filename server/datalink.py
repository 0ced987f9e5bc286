"""DataLink 1.1 ``{links}`` of archived spectra, at /datalink; the original files at /data and previews at /preview."""

from __future__ import annotations

from aiohttp import web

from .links import DATALINK_PATH
from .service_routes import add_vosi_routes
from .vosi import vosi_capabilities

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    """Register the DataLink service and its VOSI endpoints."""
    add_vosi_routes(
        app,
        DATALINK_PATH,
        lambda base: vosi_capabilities(base, DATALINK_PATH),
        note="vocloud DataLink service is answering",
    )
