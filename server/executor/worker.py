"""Code that runs inside a worker process: imports a job's runner and calls it.

Kept free of the web server so that workers stay small and a crash here never
reaches the server process.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from ..kinds.context import JobContext, JobTransientError, JobUsageError, ProgressSink
from ..kinds.registry import load_object
from .base import FailureType, TaskError, TaskSpec

__all__ = ["run_task"]

_runner_cache: dict[str, Callable[[dict[str, Any], JobContext], object]] = {}
"""Runners already imported in this worker: a worker loads each job's code once."""


def run_task(task: TaskSpec, progress_sink: ProgressSink | None) -> None:
    """Run one job in this process, converting its exceptions to :class:`TaskError`.

    Unknown exceptions are reported as fatal: we cannot tell whether running
    again would help, and a transient label would invite pointless retries.
    Only they carry a traceback (the job's ``/error`` document): they are bugs
    in a job kind, and whoever fixes it needs to know where.
    """
    context = JobContext(
        job_id=task.job_id,
        workdir=task.workdir,
        owner=task.owner,
        server=task.server,
        progress_sink=progress_sink,
        logger=logging.getLogger(f"vocloud.job.{task.job_id}"),
    )
    context.results_dir.mkdir(parents=True, exist_ok=True)
    try:
        runner = _runner_cache.get(task.runner)
        if runner is None:
            loaded = load_object(task.runner)
            if not callable(loaded):
                msg = f"Job runner {task.runner} is not callable"
                raise TypeError(msg)
            runner = _runner_cache[task.runner] = loaded
        runner(task.params, context)
    except JobUsageError as e:
        # The user's fault: the message says what to change; a traceback would only
        # show our internals.
        raise TaskError(type=FailureType.FATAL, message=str(e)) from None
    except JobTransientError as e:
        raise TaskError(type=FailureType.TRANSIENT, message=str(e)) from None
    except Exception as e:  # noqa: BLE001 - the job boundary: every failure becomes an errorSummary
        message = f"Internal error in the job: {type(e).__name__}: {e}"
        raise TaskError(type=FailureType.FATAL, message=message, detail=traceback.format_exc()) from None
