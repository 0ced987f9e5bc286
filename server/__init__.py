"""The vocloud server: UWS job engine, VO protocols and the job kinds behind them.

``create_app`` and ``Settings`` are imported lazily so that worker processes,
which import job code from ``vocloud.server.kinds`` and
``vocloud.server.executor``, never load the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(name)
