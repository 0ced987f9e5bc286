"""SODA 1.0 synchronous spectral cutouts of archived spectra, at /soda."""

from __future__ import annotations

from aiohttp import web

from .links import SODA_PATH
from .service_routes import add_vosi_routes
from .vosi import vosi_capabilities

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    """Register the SODA service and its VOSI endpoints."""
    add_vosi_routes(
        app, SODA_PATH, lambda base: vosi_capabilities(base, SODA_PATH), note="vocloud SODA service is answering"
    )
