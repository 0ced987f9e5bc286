"""The interface between the UWS engine and whatever runs jobs.

The engine only ever calls :meth:`Executor.submit` and :meth:`RunningTask.cancel`,
so the local process pool can be replaced by a distributed engine (Dask) without
touching protocol code.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..kinds.context import ServerPaths

__all__ = [
    "Executor",
    "FailureType",
    "ProgressCallback",
    "RunningTask",
    "TaskError",
    "TaskSpec",
]


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """Everything a worker needs to run one job; plain and picklable.

    Parameters
    ----------
    job_id
        The UWS job id (for progress and logs).
    runner
        ``"module:function"`` of the job kind.
    params
        Typed parameter values, defaults filled in; uploads are file names in ``workdir``.
    workdir
        The job's directory; results go to ``workdir/results``.
    owner
        Who created the job.
    server
        Server-side locations the job may use.
    """

    job_id: str
    runner: str
    params: dict[str, Any]
    workdir: Path
    owner: str | None = None
    server: ServerPaths | None = None


class FailureType(enum.StrEnum):
    """How a failed task is reported in the UWS errorSummary."""

    FATAL = "fatal"
    TRANSIENT = "transient"


class TaskError(Exception):
    """A task ended without completing.

    Parameters
    ----------
    type
        Fatal or transient, as the UWS errorSummary says.
    message
        Short message for the errorSummary.
    detail
        Longer text (e.g. a traceback) for the job's error document.
    """

    def __init__(self, *, type: FailureType, message: str, detail: str = "") -> None:  # noqa: A002
        super().__init__(message)
        self.type = type
        self.message = message
        self.detail = detail

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructors do not survive the default exception pickling,
        # and failures cross process boundaries.
        return (_rebuild_task_error, (self.type, self.message, self.detail))


def _rebuild_task_error(type_: FailureType, message: str, detail: str) -> TaskError:
    return TaskError(type=type_, message=message, detail=detail)


ProgressCallback = Callable[[str, float, str], None]
"""Called on the event loop with ``(job_id, fraction, message)``."""


@dataclass(kw_only=True)
class RunningTask:
    """A submitted task: await :attr:`done` for the outcome, call :meth:`cancel` to kill it.

    ``done`` resolves to ``None`` on success, or raises :class:`TaskError`
    (or :class:`asyncio.CancelledError` after :meth:`cancel`).
    """

    done: asyncio.Future[None]
    canceller: Callable[[], None] = field(repr=False)

    def cancel(self) -> None:
        """Stop the task now, killing whatever runs it; files it wrote stay."""
        self.canceller()


class Executor(Protocol):
    """Something that runs job tasks outside the server process."""

    async def start(self, on_progress: ProgressCallback) -> None:
        """Start workers; progress reports are delivered to ``on_progress``."""

    async def close(self) -> None:
        """Stop all workers, killing running tasks."""

    def submit(self, task: TaskSpec) -> RunningTask:
        """Start running ``task`` now (the engine keeps the queue)."""
        ...

    @property
    def capacity(self) -> int:
        """How many tasks may run at once."""
        ...
