"""SSAP 1.1 ``queryData`` over the spectra archive, at /ssa."""

from __future__ import annotations

from aiohttp import web

from .links import SSA_PATH
from .service_routes import add_vosi_routes
from .vosi import vosi_capabilities

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    """Register the SSA service and its VOSI endpoints."""
    add_vosi_routes(
        app, SSA_PATH, lambda base: vosi_capabilities(base, SSA_PATH), note="vocloud SSA service is accepting queries"
    )
