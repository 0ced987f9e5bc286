"""Publishes vocloud's VO-DML model, which the MIVOT annotations of results name by URL.

The model's source is ``vodml/vocloud-ml.vo-dml.xml`` at the top of the
repository; ``server/static/`` links to it so that it ships as package data
(a wheel carries the file's content) and the server finds it however it was
installed.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from .ml.mivot import MODEL_PATH

__all__ = ["add_routes", "model_document"]

_MODEL_FILE = "vocloud-ml.vo-dml.xml"


def model_document() -> bytes:
    """The VO-DML/XML of the ``vcml`` model, as shipped with this installation."""
    return resources.files("vocloud.server").joinpath("static", _MODEL_FILE).read_bytes()


def add_routes(app: web.Application) -> None:
    """Register ``GET /vodml/vocloud-ml.vo-dml.xml``."""
    body = model_document()

    async def model(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/xml", charset="utf-8")

    app.router.add_get(MODEL_PATH, model)
