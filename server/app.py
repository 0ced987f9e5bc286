"""The application factory: ``create_app(settings) -> web.Application``."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Iterable

from aiohttp import web

from . import datalink, service_routes, soda, ssa, vodml_routes
from .archive.demo_bootstrap import fill_with_demo
from .archive.service import Archive
from .auth import UserFile, auth_middleware
from .executor.base import Executor
from .executor.local import LocalExecutor
from .keys import ARCHIVE, SERVICE, SETTINGS, STARTED
from .kinds.context import ServerPaths
from .kinds.registry import KindRegistry
from .kinds.spec import JobKind
from .middleware import error_middleware
from .sessions import handlers as session_handlers
from .settings import Settings
from .uws import handlers as uws_handlers
from .uws.service import JobLimits, JobService
from .uws.store import JobStore

__all__ = ["RESERVED_KIND_NAMES", "create_app"]

_log = logging.getLogger(__name__)

RESERVED_KIND_NAMES = frozenset({"availability", "capabilities"})
"""Names under /jobs taken by VOSI, so no job kind may use them."""


def create_app(
    settings: Settings,
    *,
    kinds: Iterable[JobKind] = (),
    executor: Executor | None = None,
) -> web.Application:
    """Build the vocloud web application.

    Parameters
    ----------
    settings
        The server settings.
    kinds
        Job kinds to offer besides those found through entry points and
        ``settings.kinds`` (tests register their own this way).
    executor
        What runs jobs; by default a local process pool of ``settings.workers``.

    Raises
    ------
    ValueError
        Raised if two kinds share a name or a kind uses a reserved name.
    """
    registry = _registry(settings, kinds)
    users = UserFile(settings.users_file) if settings.auth == "basic" else None
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(users)],
        client_max_size=settings.max_upload,
    )
    app[SETTINGS] = settings

    async def job_service(app: web.Application) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Uploads a crash interrupted belong to no job.
        shutil.rmtree(settings.incoming_dir, ignore_errors=True)
        store = JobStore(settings.database)
        service = JobService(
            store=store,
            executor=executor or LocalExecutor(workers=settings.workers),
            kinds=registry,
            jobs_dir=settings.data_dir / "jobs",
            limits=JobLimits(
                max_wait=settings.max_wait,
                default_execution_duration=settings.default_execution_duration,
                max_execution_duration=settings.max_execution_duration,
                default_lifetime=settings.default_lifetime,
                max_lifetime=settings.max_lifetime,
            ),
            server=ServerPaths(
                data_dir=settings.data_dir,
                archive_dir=settings.archive_dir,
                ingest_roots=tuple(p.resolve() for p in settings.ingest_roots),
                public_url=settings.public_url,
            ),
        )
        await service.start()
        app[SERVICE] = service
        app[STARTED] = time.time()
        _log.info("Job service started with %d kind(s) in %s", len(registry), settings.data_dir)
        try:
            yield
        finally:
            await service.close()
            store.close()

    async def archive(app: web.Application) -> AsyncIterator[None]:
        app[ARCHIVE] = Archive(settings.archive_dir)
        if settings.demo_spectra and app[ARCHIVE].store.count() == 0:
            # A separate connection: the bootstrap runs in a thread.
            demo_archive = Archive(settings.archive_dir)
            try:
                await asyncio.to_thread(
                    fill_with_demo, demo_archive, settings.demo_dir, count=settings.demo_spectra
                )
            finally:
                demo_archive.close()
        try:
            yield
        finally:
            app[ARCHIVE].close()

    async def release_waiters(app: web.Application) -> None:
        app[SERVICE].release_waiters()

    app.cleanup_ctx.append(archive)
    app.cleanup_ctx.append(job_service)
    app.on_shutdown.append(release_waiters)
    _add_routes(app)
    # After the job service's cleanup_ctx: sessions run their iterations on it.
    session_handlers.setup(app)
    return app


def _registry(settings: Settings, kinds: Iterable[JobKind]) -> KindRegistry:
    """The job kinds on offer: entry points, the operator's, and the caller's."""
    registry = KindRegistry.discover(settings.kinds)
    for kind in kinds:
        registry.add(kind)
    reserved = RESERVED_KIND_NAMES.intersection(k.name for k in registry)
    if reserved:
        msg = f"Job kind names {sorted(reserved)} are reserved for VOSI"
        raise ValueError(msg)
    return registry


def _add_routes(app: web.Application) -> None:
    service_routes.add_routes(app)
    uws_handlers.add_routes(app)
    ssa.add_routes(app)
    datalink.add_routes(app)
    soda.add_routes(app)
    vodml_routes.add_routes(app)
