"""Executors run job tasks outside the server process; see :class:`Executor`."""

from .base import Executor, FailureType, RunningTask, TaskError, TaskSpec
from .local import LocalExecutor

__all__ = ["Executor", "FailureType", "LocalExecutor", "RunningTask", "TaskError", "TaskSpec"]
