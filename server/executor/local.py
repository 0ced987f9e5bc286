"""The embedded executor: a local pool of worker processes (pebble).

Workers are long-lived, so a job kind's heavy imports and models load once per
worker. Cancelling a running task kills its worker process, which pebble
replaces; a job that crashes its worker (segfault, ``os._exit``) fails alone.
The pool uses the ``forkserver`` start method so that workers are never forked
from the threaded, event-looping server process. Workers exit when the server
process dies, however it dies (``kill -9`` included), so that no orphan goes on
running a job whose record the next server start marks as failed.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from typing import Any

import pebble

from .base import FailureType, ProgressCallback, RunningTask, TaskError, TaskSpec
from .worker import run_task

__all__ = ["LocalExecutor", "threads_per_worker"]

_log = logging.getLogger(__name__)

_progress_queue: Queue[Any] | None = None
"""In a worker: the queue progress reports go to (set by the pool initializer)."""

_ORPHAN_EXIT_CODE = 70
"""Exit status of a worker that outlived its server."""

_DRAIN_TIMEOUT_S = 2.0
"""Longest a completed task waits for the end of its progress stream."""


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Read by torch, MKL and OpenBLAS when they load, i.e. when a job first imports them in the worker."""


def threads_per_worker(workers: int) -> int:
    """Compute threads each worker may use: the CPUs this process may run on, shared out among the workers.

    torch and BLAS otherwise start one thread per core in every worker, so
    ``workers`` jobs on ``workers`` cores oversubscribe the machine
    ``workers``-fold; training a CNN on 2 cores ran 1.5-3.5 times slower so.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, workers))


def _init_worker(queue: Queue[Any], server_alive: Connection, threads: int) -> None:
    global _progress_queue  # noqa: PLW0603 - per-process state set once by the pool
    _progress_queue = queue
    for name in _THREAD_VARIABLES:
        # An operator's explicit setting wins.
        os.environ.setdefault(name, str(threads))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    threading.Thread(target=_exit_with_server, args=(server_alive,), name="vocloud-server-watch", daemon=True).start()


def _exit_with_server(server_alive: Connection) -> None:
    # Only the server holds the writing end of this pipe and never writes to it,
    # so it becomes readable (end of file) exactly when the server process is gone.
    # The worker's parent is the forkserver, which outlives the server as long as
    # any worker does, so watching the parent would not do.
    server_alive.poll(None)
    os._exit(_ORPHAN_EXIT_CODE)


def _send_progress(job_id: str, fraction: float, message: str) -> None:
    if _progress_queue is not None:
        _progress_queue.put((job_id, fraction, message))


def _pool_entry(task: TaskSpec) -> None:
    run_task(task, _send_progress)
    if _progress_queue is not None:
        # End of this job's progress stream, on the same FIFO queue: the server
        # resolves the task only after it, so the last report is never lost.
        _progress_queue.put((task.job_id, None, ""))


class LocalExecutor:
    """Runs tasks in a local process pool.

    Parameters
    ----------
    workers
        Number of worker processes, i.e. how many jobs run at once.
    """

    def __init__(self, *, workers: int) -> None:
        if workers < 1:
            msg = "At least one worker is needed"
            raise ValueError(msg)
        self._workers = workers
        self._context = multiprocessing.get_context("forkserver")
        self._queue: Queue[Any] | None = None
        self._alive: tuple[Connection, Connection] | None = None
        self._pool: pebble.ProcessPool | None = None
        self._reader: threading.Thread | None = None
        self._drained: set[str] = set()
        self._awaiting_drain: dict[str, asyncio.Future[None]] = {}

    @property
    def capacity(self) -> int:
        """How many tasks may run at once."""
        return self._workers

    async def start(self, on_progress: ProgressCallback) -> None:
        """Start the pool and the thread that relays progress to the event loop."""
        loop = asyncio.get_running_loop()
        self._context.set_forkserver_preload(["vocloud.server.executor.local"])
        self._queue = self._context.Queue()
        self._alive = self._context.Pipe(duplex=False)
        self._pool = pebble.ProcessPool(
            max_workers=self._workers,
            initializer=_init_worker,
            initargs=(self._queue, self._alive[0], threads_per_worker(self._workers)),
            context=self._context,
        )
        queue = self._queue

        def relay() -> None:
            while True:
                item = queue.get()
                if item is None:
                    return
                job_id, fraction, message = item
                if fraction is None:
                    loop.call_soon_threadsafe(self._progress_ended, job_id)
                else:
                    loop.call_soon_threadsafe(on_progress, job_id, fraction, message)

        self._reader = threading.Thread(target=relay, name="vocloud-progress", daemon=True)
        self._reader.start()

    async def close(self) -> None:
        """Kill running tasks and stop the workers."""
        if self._pool is not None:
            pool = self._pool
            self._pool = None
            pool.stop()  # type: ignore[no-untyped-call]  # pebble leaves stop() unannotated
            await asyncio.to_thread(pool.join, 10)
        if self._alive is not None:
            for end in self._alive:
                end.close()
            self._alive = None
        if self._queue is not None:
            self._queue.put(None)
            if self._reader is not None:
                await asyncio.to_thread(self._reader.join, 5)
            self._queue.close()
            self._queue = None

    def submit(self, task: TaskSpec) -> RunningTask:
        """Schedule ``task`` on the pool."""
        if self._pool is None:
            msg = "Executor is not started"
            raise RuntimeError(msg)
        future = self._pool.schedule(_pool_entry, args=[task])
        done = asyncio.get_running_loop().create_future()

        def settle(f: Any) -> None:
            if done.done():
                return
            if f.cancelled():
                done.cancel()
                return
            error = f.exception()
            if error is None:
                self._resolve_when_drained(task.job_id, done)
            elif isinstance(error, TaskError):
                done.set_exception(error)
            elif isinstance(error, pebble.ProcessExpired):
                message = f"The job's worker process died (exit code {error.exitcode})"
                done.set_exception(TaskError(type=FailureType.FATAL, message=message))
            else:
                message = f"The executor failed: {type(error).__name__}: {error}"
                done.set_exception(TaskError(type=FailureType.FATAL, message=message))

        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(settle, f))
        return RunningTask(done=done, canceller=future.cancel)

    def _resolve_when_drained(self, job_id: str, done: asyncio.Future[None]) -> None:
        if job_id in self._drained:
            self._drained.discard(job_id)
            done.set_result(None)
            return
        self._awaiting_drain[job_id] = done
        asyncio.get_running_loop().call_later(_DRAIN_TIMEOUT_S, self._release, job_id)

    def _progress_ended(self, job_id: str) -> None:
        if not self._release(job_id):
            self._drained.add(job_id)

    def _release(self, job_id: str) -> bool:
        done = self._awaiting_drain.pop(job_id, None)
        if done is None:
            return False
        if not done.done():
            done.set_result(None)
        return True
