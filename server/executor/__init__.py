"""Executors run job tasks outside the server process; see :class:`Executor`."""

from .base import Executor, FailureType, RunningTask, TaskFailure, TaskSpec
from .local import LocalExecutor

__all__ = ["Executor", "FailureType", "LocalExecutor", "RunningTask", "TaskFailure", "TaskSpec"]
