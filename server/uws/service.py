"""The UWS policy: creating, running, aborting, waiting on and destroying jobs.

Handlers call this service and render what it returns; the service owns the
queue, the executor and the phase notifications. Every change of a job happens
on the event loop's thread and is persisted in one store transaction before
anyone is told about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import mimetypes
import secrets
import shutil
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import ForbiddenError, NotFoundError, UsageError
from ..executor.base import Executor, RunningTask, TaskError, TaskSpec
from ..kinds.context import RESULT_TYPES_FILE, ServerPaths
from ..kinds.registry import KindRegistry
from ..kinds.spec import JobKind, ParameterValueError, ParamType, format_value
from .models import ErrorInfo, JobRecord, ParameterValue, Progress, ResultFile
from .phases import ACTIVE_PHASES, TERMINAL_PHASES, ExecutionPhase, check_transition
from .store import JobStore

__all__ = ["ID_BYTES", "JobLimits", "JobListener", "JobService", "Upload", "new_id"]

ID_BYTES = 12
"""Random bytes in a job or session id: 96 bits, 16 URL-safe characters, never guessed by another user."""


def new_id() -> str:
    """A new random id for a job or a session: URL-safe, and starting with a letter or a digit.

    `secrets.token_urlsafe` also draws ``-`` and ``_``; an id starting with
    ``-`` is taken for an option by command lines (argparse, getopt), so
    ``vocloud label ID`` would fail for one id in 32. Drawing again keeps every
    id equally likely among the allowed ones, at the same length.
    """
    while True:
        candidate = secrets.token_urlsafe(ID_BYTES)
        if candidate[0] not in "-_":
            return candidate


_log = logging.getLogger(__name__)

RESTART_MESSAGE = (
    "The server stopped while this job was executing; whatever it had written is kept."
    " Create the job again to rerun it."
)
"""errorSummary of jobs found EXECUTING at start-up (reported as transient)."""

_REAPER_MAX_SLEEP_S = 3600.0
"""Longest the destruction reaper sleeps without looking at the store again."""


@dataclass(frozen=True, kw_only=True)
class JobLimits:
    """Operator limits on jobs, all in seconds.

    Parameters
    ----------
    max_wait
        Cap on a blocking WAIT (also what ``WAIT=-1`` means).
    default_execution_duration
        Execution duration of a new job.
    max_execution_duration
        Largest execution duration a client may ask for; 0 (unlimited) is
        replaced by this.
    default_lifetime
        Time from creation to destruction of a new job.
    max_lifetime
        Latest destruction a client may ask for, counted from now.
    """

    max_wait: float = 120.0
    default_execution_duration: int = 3600
    max_execution_duration: int = 86400
    default_lifetime: int = 7 * 86400
    max_lifetime: int = 30 * 86400


@dataclass(frozen=True, kw_only=True)
class Upload:
    """A file uploaded for a parameter, already stored in a temporary place."""

    name: str
    path: Path


JobListener = Callable[[JobRecord], None]
"""Called on the event loop with a job that has just reached a terminal phase (already persisted)."""


def _now() -> datetime:
    # Millisecond precision, as documents show it: AFTER=<a job's creationTime>
    # must then exclude that job.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class JobService:
    """All operations on UWS jobs.

    Parameters
    ----------
    store
        Where jobs persist.
    executor
        What runs them.
    kinds
        The job kinds on offer.
    jobs_dir
        Directory holding one subdirectory per job (uploads, results, error detail).
    limits
        Operator limits.
    server
        Server-side locations handed to every job.
    """

    def __init__(
        self,
        *,
        store: JobStore,
        executor: Executor,
        kinds: KindRegistry,
        jobs_dir: Path,
        limits: JobLimits,
        server: ServerPaths | None = None,
    ) -> None:
        self._server = server
        self._store = store
        self._executor = executor
        self.kinds = kinds
        self._jobs_dir = jobs_dir
        self.limits = limits
        self._queue: deque[str] = deque()
        self._running: dict[str, RunningTask] = {}
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self._watchers: dict[str, asyncio.Event] = {}
        self._reaper_wakeup = asyncio.Event()
        self._reaper_due: datetime | None = None
        """When the reaper will next look at the store; earlier destructions wake it."""
        self._reaper: asyncio.Task[None] | None = None
        self._closing = False
        self._waits_released = False
        self._listeners: list[JobListener] = []

    # -- life cycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Recover from the previous run, start the executor and the reaper.

        Jobs found EXECUTING died with the previous server process: they become
        ERROR (transient) rather than being rerun, because a job may not be
        safe to run twice and its owner should decide. QUEUED jobs are queued
        again in their original order.
        """
        self._jobs_dir.mkdir(parents=True, exist_ok=True)
        for job in self._store.in_phases([ExecutionPhase.EXECUTING]):
            job.error = ErrorInfo(type="transient", message=RESTART_MESSAGE)
            job.results = self._scan_results(job)
            self._set_phase(job, ExecutionPhase.ERROR)
            _log.warning("Job %s was executing when the server stopped; now ERROR", job.job_id)
        self._queue.extend(job.job_id for job in self._store.in_phases([ExecutionPhase.QUEUED]))
        await self._executor.start(self._on_progress)
        self._reaper = asyncio.create_task(self._reap_forever(), name="vocloud-reaper")
        self._dispatch()

    def release_waiters(self) -> None:
        """Answer every blocked WAIT now and block no more: the server is shutting down.

        Called before the HTTP server drains its connections, which would
        otherwise wait for long WAITs to run out. Jobs keep running and are
        recorded until :meth:`close`.
        """
        self._waits_released = True
        for event in self._watchers.values():
            event.set()

    async def close(self) -> None:
        """Stop the reaper and the executor; running jobs are killed.

        Their records stay EXECUTING, so the next start reports them as ERROR.
        """
        self.release_waiters()
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        for handle in self._deadlines.values():
            handle.cancel()
        await self._executor.close()

    def add_listener(self, listener: JobListener) -> None:
        """Call ``listener`` each time a job reaches COMPLETED, ERROR or ABORTED, after it is persisted.

        Lets services built on jobs (active-learning sessions) follow them
        without polling. A listener runs on the event loop inside the phase
        change, so it must be quick and must not change the job; whatever it
        raises is logged and never disturbs the job service. Jobs that end
        while no listener is registered (before :meth:`start` returns, or while
        the server is down) are not announced: listeners reconcile from the
        store when they start.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: JobListener) -> None:
        """Stop calling ``listener``; unknown listeners are ignored."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    # -- reading --------------------------------------------------------------------

    def kind(self, name: str) -> JobKind:
        """The job kind of that name.

        Raises
        ------
        NotFoundError
            Raised if there is no such kind.
        """
        kind = self.kinds.get(name)
        if kind is None:
            msg = f"There is no job kind {name!r}"
            raise NotFoundError(msg)
        return kind

    def get(self, kind: str, job_id: str, owner: str | None) -> JobRecord:
        """The job, if it exists in that list and belongs to ``owner``.

        Raises
        ------
        NotFoundError
            Raised if there is no such job visible to ``owner``; another
            owner's job is indistinguishable from a missing one.
        """
        job = self._store.get(job_id)
        if job is None or job.kind != kind or job.owner != owner:
            msg = f"There is no job {job_id!r} in /jobs/{kind}"
            raise NotFoundError(msg)
        return job

    def list_jobs(
        self,
        kind: str,
        owner: str | None,
        *,
        phases: Sequence[ExecutionPhase] = (),
        after: datetime | None = None,
        last: int | None = None,
    ) -> list[JobRecord]:
        """The owner's jobs of one kind, filtered as UWS 1.1 section 2.2.2.1 says."""
        self.kind(kind)
        return self._store.list_jobs(kind=kind, owner=owner, phases=phases, after=after, last=last)

    def quote(self, job: JobRecord) -> datetime | None:
        """When the job is likely to complete, or ``None`` for "don't know".

        Estimated from the mean run time of the kind's latest completed jobs
        and the number of jobs queued ahead.
        """
        if job.phase in TERMINAL_PHASES:
            return job.end_time
        mean = self._store.mean_duration(job.kind)
        if mean is None:
            return None
        match job.phase:
            case ExecutionPhase.EXECUTING:
                return (job.start_time or _now()) + timedelta(seconds=mean)
            case ExecutionPhase.QUEUED:
                ahead = self._queue.index(job.job_id) if job.job_id in self._queue else 0
                rounds = 1 + ahead // max(self._executor.capacity, 1)
                return _now() + timedelta(seconds=mean * rounds)
            case _:
                return _now() + timedelta(seconds=mean)

    def workdir(self, job: JobRecord) -> Path:
        """The job's own directory (derived from the server-made id, never from a request)."""
        return self._jobs_dir / job.job_id

    def result_path(self, job: JobRecord, name: str) -> tuple[ResultFile, Path]:
        """The stored result ``name`` of a job and its file.

        Raises
        ------
        NotFoundError
            Raised if the job has no such result.
        """
        for result in job.results:
            if result.name == name:
                return result, self.workdir(job) / "results" / result.name
        msg = f"Job {job.job_id} has no result {name!r}"
        raise NotFoundError(msg)

    def upload_path(self, job: JobRecord, name: str) -> Path:
        """The stored file of an uploaded parameter, by its stored name (the parameter's, numbered if repeated).

        Raises
        ------
        NotFoundError
            Raised if the parameter was not uploaded.
        """
        for param in job.parameters:
            if param.upload and param.value == name:
                return self.workdir(job) / "uploads" / param.value
        msg = f"Job {job.job_id} has no uploaded parameter {name!r}"
        raise NotFoundError(msg)

    def error_detail(self, job: JobRecord) -> str | None:
        """The long error text of a failed job, if it has one."""
        path = self.workdir(job) / "error.txt"
        return path.read_text(encoding="utf-8") if path.is_file() else None

    # -- creating and changing --------------------------------------------------------

    async def create(
        self,
        kind_name: str,
        owner: str | None,
        *,
        params: Sequence[tuple[str, str]],
        uploads: Sequence[Upload] = (),
        run_id: str | None = None,
        execution_duration: int | None = None,
        destruction: datetime | None = None,
        run: bool = False,
    ) -> JobRecord:
        """Create a PENDING job; given values are checked now, required ones when it runs.

        ``params`` are (lower-cased name, text) pairs; names the kind does not
        declare are ignored, as UWS-based protocols do. With ``run`` (``PHASE=RUN``
        at creation) the job is queued at once, and nothing is created if a
        required parameter is missing.

        Raises
        ------
        UsageError
            Raised if a value is invalid or, with ``run``, missing; the message
            names the parameter.
        """
        kind = self.kind(kind_name)
        values = self._checked_parameters(kind, params, uploads)
        if run:
            self._check_required(kind, values)
        now = _now()
        job = JobRecord(
            job_id=new_id(),
            kind=kind.name,
            owner=owner,
            phase=ExecutionPhase.PENDING,
            creation_time=now,
            destruction_time=self._clamp_destruction(destruction, now),
            execution_duration=self._clamp_duration(execution_duration),
            run_id=run_id,
        )
        await asyncio.to_thread(self._store_uploads, self.workdir(job), uploads, values)
        job.parameters = values
        self._store.add(job)
        self._wake_reaper_for(job.destruction_time)
        _log.info("Job %s of kind %s created for %s", job.job_id, kind.name, owner or "anonymous")
        return self.run(job) if run else job

    async def update_parameters(
        self, job: JobRecord, *, params: Sequence[tuple[str, str]], uploads: Sequence[Upload] = ()
    ) -> JobRecord:
        """Replace the values of the given parameters of a PENDING job.

        Raises
        ------
        ForbiddenError
            Raised if the job is no longer PENDING.
        UsageError
            Raised if a value is invalid.
        """
        if job.phase != ExecutionPhase.PENDING:
            msg = f"Parameters can only be changed while the job is PENDING; it is {job.phase.value}"
            raise ForbiddenError(msg)
        kind = self.kind(job.kind)
        new_values = self._checked_parameters(kind, params, uploads)
        replaced = {v.name for v in new_values}
        await asyncio.to_thread(self._store_uploads, self.workdir(job), uploads, new_values)
        job.parameters = [p for p in job.parameters if p.name not in replaced] + new_values
        self._store.save(job)
        return job

    def set_execution_duration(self, job: JobRecord, seconds: int) -> JobRecord:
        """Change the execution duration of a job that has not started.

        Raises
        ------
        ForbiddenError
            Raised if the job is already running or finished.
        """
        if job.phase not in (ExecutionPhase.PENDING, ExecutionPhase.QUEUED):
            msg = f"The execution duration cannot change once the job is {job.phase.value}"
            raise ForbiddenError(msg)
        job.execution_duration = self._clamp_duration(seconds)
        self._store.save(job)
        return job

    def set_destruction(self, job: JobRecord, when: datetime) -> JobRecord:
        """Move a job's destruction time, within the operator's limit (UWS 1.1 section 2.2.3.3)."""
        job.destruction_time = self._clamp_destruction(when, _now())
        self._store.save(job)
        self._wake_reaper_for(job.destruction_time)
        return job

    def run(self, job: JobRecord) -> JobRecord:
        """Queue a PENDING job; RUN on a job already queued or executing changes nothing.

        Raises
        ------
        UsageError
            Raised if required parameters are missing; the job stays PENDING.
        ForbiddenError
            Raised if the job has already finished.
        """
        if job.phase in (ExecutionPhase.QUEUED, ExecutionPhase.EXECUTING):
            return job
        check_transition(job.phase, ExecutionPhase.QUEUED)
        self._check_required(self.kind(job.kind), job.parameters)
        self._set_phase(job, ExecutionPhase.QUEUED)
        self._queue.append(job.job_id)
        self._dispatch()
        return self._store.get(job.job_id) or job

    def abort(self, job: JobRecord) -> JobRecord:
        """Abort a job: a queued one never runs, a running one is killed; its files stay.

        Raises
        ------
        ForbiddenError
            Raised if the job has already finished.
        """
        check_transition(job.phase, ExecutionPhase.ABORTED)
        self._stop(job, ExecutionPhase.ABORTED, error=None)
        return job

    async def delete(self, job: JobRecord) -> None:
        """Destroy a job: stop it if running, forget it, remove its files."""
        await self._destroy(job.job_id)

    async def wait(
        self, kind: str, job_id: str, owner: str | None, *, timeout: float, phase: ExecutionPhase | None
    ) -> JobRecord:
        """Block until the job's phase changes, ``timeout`` passes, or at once if it cannot change.

        Follows UWS 1.1 section 2.2.1.2: no blocking outside the active phases,
        nor when ``phase`` is given and differs from the current one. The wait
        is woken by an event set when the phase changes, not by polling.

        Raises
        ------
        NotFoundError
            Raised if the job does not exist, or is destroyed while waiting.
        """
        job = self.get(kind, job_id, owner)
        if self._waits_released or job.phase not in ACTIVE_PHASES or (phase is not None and job.phase != phase):
            return job
        timeout = min(timeout, self.limits.max_wait) if timeout >= 0 else self.limits.max_wait
        event = self._watchers.get(job_id)
        if event is None:
            event = self._watchers[job_id] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self.get(kind, job_id, owner)

    # -- internals ------------------------------------------------------------------

    def _checked_parameters(
        self, kind: JobKind, params: Sequence[tuple[str, str]], uploads: Sequence[Upload]
    ) -> list[ParameterValue]:
        values: list[ParameterValue] = []
        seen: set[str] = set()
        for name, text in params:
            spec = kind.parameter(name)
            if spec is None:
                continue
            if spec.type == ParamType.FILE:
                msg = f"Parameter {spec.name}: must be uploaded as a file (multipart/form-data)"
                raise UsageError(msg)
            if spec.name in seen and not spec.multiple:
                msg = f"Parameter {spec.name}: given more than once"
                raise UsageError(msg)
            seen.add(spec.name)
            try:
                typed = spec.parse(text)
            except ParameterValueError as e:
                raise UsageError(str(e)) from e
            values.append(ParameterValue(name=spec.name, value=format_value(typed)))
        for upload in uploads:
            spec = kind.parameter(upload.name)
            if spec is None:
                continue
            if spec.type != ParamType.FILE:
                msg = f"Parameter {spec.name}: is a {spec.type.value}, not a file upload"
                raise UsageError(msg)
            if spec.name in seen and not spec.multiple:
                msg = f"Parameter {spec.name}: given more than once"
                raise UsageError(msg)
            seen.add(spec.name)
            # The stored file's name: the parameter's, numbered when it may repeat.
            count = sum(1 for v in values if v.name == spec.name)
            stored = f"{spec.name}-{count + 1}" if spec.multiple else spec.name
            values.append(ParameterValue(name=spec.name, value=stored, upload=True))
        return values

    @staticmethod
    def _check_required(kind: JobKind, values: Sequence[ParameterValue]) -> None:
        missing = kind.missing({v.name for v in values})
        if missing:
            msg = f"Cannot run: missing required parameter(s): {', '.join(missing)}"
            raise UsageError(msg)

    @staticmethod
    def _store_uploads(workdir: Path, uploads: Sequence[Upload], accepted: Sequence[ParameterValue]) -> None:
        # Stored under names made from the declared parameter's, never a name from
        # the request, in the order given; uploads for undeclared names stay
        # behind for the caller to discard.
        stored = iter(v.value for v in accepted if v.upload)
        names = {v.name for v in accepted if v.upload}
        target = workdir / "uploads"
        for upload in uploads:
            if upload.name in names:
                target.mkdir(parents=True, exist_ok=True)
                shutil.move(upload.path, target / next(stored))

    def _clamp_duration(self, seconds: int | None) -> int:
        if seconds is None:
            return self.limits.default_execution_duration
        if seconds < 0:
            msg = "EXECUTIONDURATION must be 0 (as long as allowed) or a positive number of seconds"
            raise UsageError(msg)
        if seconds == 0 or seconds > self.limits.max_execution_duration:
            return self.limits.max_execution_duration
        return seconds

    def _clamp_destruction(self, when: datetime | None, now: datetime) -> datetime:
        if when is None:
            return now + timedelta(seconds=self.limits.default_lifetime)
        return min(max(when, now), now + timedelta(seconds=self.limits.max_lifetime))

    def _set_phase(self, job: JobRecord, phase: ExecutionPhase) -> None:
        check_transition(job.phase, phase)
        job.phase = phase
        now = _now()
        if phase == ExecutionPhase.EXECUTING:
            job.start_time = now
        if phase in TERMINAL_PHASES:
            job.end_time = now
        self._store.save(job)
        self._notify(job.job_id)
        _log.info("Job %s is %s", job.job_id, phase.value)
        if phase in TERMINAL_PHASES:
            for listener in tuple(self._listeners):
                try:
                    listener(job)
                except Exception:  # noqa: BLE001 - a listener's bug must not break the job service
                    _log.exception("Listener %r failed on job %s", listener, job.job_id)

    def _notify(self, job_id: str) -> None:
        event = self._watchers.pop(job_id, None)
        if event is not None:
            event.set()

    def _dispatch(self) -> None:
        """Start queued jobs while the executor has free slots."""
        while not self._closing and self._queue and len(self._running) < self._executor.capacity:
            job_id = self._queue.popleft()
            job = self._store.get(job_id)
            if job is None or job.phase != ExecutionPhase.QUEUED:
                continue
            kind = self.kinds.get(job.kind)
            if kind is None:
                job.error = ErrorInfo(type="fatal", message=f"Job kind {job.kind!r} is no longer offered")
                self._set_phase(job, ExecutionPhase.ERROR)
                continue
            try:
                params = self._runner_params(kind, job)
            except (ParameterValueError, KeyError) as e:
                job.error = ErrorInfo(type="fatal", message=f"Stored parameters are not valid: {e}")
                self._set_phase(job, ExecutionPhase.ERROR)
                continue
            self._set_phase(job, ExecutionPhase.EXECUTING)
            task = self._executor.submit(
                TaskSpec(
                    job_id=job_id,
                    runner=kind.runner,
                    params=params,
                    workdir=self.workdir(job),
                    owner=job.owner,
                    server=self._server,
                )
            )
            self._running[job_id] = task
            if job.execution_duration > 0:
                loop = asyncio.get_running_loop()
                self._deadlines[job_id] = loop.call_later(job.execution_duration, self._overrun, job_id)
            task.done.add_done_callback(functools.partial(self._finished, job_id))

    def _runner_params(self, kind: JobKind, job: JobRecord) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for param in job.parameters:
            spec = kind.parameter(param.name)
            if spec is None:
                continue
            typed: Any = (
                self.workdir(job) / "uploads" / param.value if param.upload else spec.parse(param.value)
            )
            if spec.multiple:
                values.setdefault(spec.name, []).append(typed)
            else:
                values[spec.name] = typed
        return kind.with_defaults(values)

    def _finished(self, job_id: str, outcome: asyncio.Future[None]) -> None:
        self._running.pop(job_id, None)
        deadline = self._deadlines.pop(job_id, None)
        if deadline is not None:
            deadline.cancel()
        # Retrieved in every case, so asyncio never reports a lost exception.
        error = None if outcome.cancelled() else outcome.exception()
        if self._closing:
            return
        job = self._store.get(job_id)
        if job is not None:
            if job.phase == ExecutionPhase.EXECUTING:
                if outcome.cancelled():
                    job.error = ErrorInfo(type="transient", message="The job was cancelled by the executor")
                    new_phase = ExecutionPhase.ERROR
                elif error is None:
                    new_phase = ExecutionPhase.COMPLETED
                else:
                    job.error = self._record_failure(job, error)
                    new_phase = ExecutionPhase.ERROR
                job.results = self._scan_results(job)
                self._set_phase(job, new_phase)
            else:
                # Aborted or overrun: the phase is already final; pick up files
                # the worker wrote before it was killed.
                job.results = self._scan_results(job)
                self._store.save(job)
        self._dispatch()

    def _record_failure(self, job: JobRecord, error: BaseException) -> ErrorInfo:
        if isinstance(error, TaskError):
            etype, message, detail = error.type.value, error.message, error.detail
        else:
            etype, message, detail = "fatal", f"The executor failed: {error}", ""
        if detail:
            (self.workdir(job) / "error.txt").write_text(detail, encoding="utf-8")
        _log.info("Job %s failed: %s", job.job_id, message)
        return ErrorInfo(type=etype, message=message, has_detail=bool(detail))

    def _overrun(self, job_id: str) -> None:
        self._deadlines.pop(job_id, None)
        job = self._store.get(job_id)
        if job is None or job.phase != ExecutionPhase.EXECUTING:
            return
        message = (
            f"The job ran longer than its execution duration of {job.execution_duration} s"
            " and was stopped; ask for a longer EXECUTIONDURATION."
        )
        self._stop(job, ExecutionPhase.ERROR, error=ErrorInfo(type="fatal", message=message))

    def _stop(self, job: JobRecord, phase: ExecutionPhase, *, error: ErrorInfo | None) -> None:
        task = self._running.get(job.job_id)
        if task is not None:
            task.cancel()
        job.error = error
        job.results = self._scan_results(job)
        self._set_phase(job, phase)
        self._dispatch()

    def _scan_results(self, job: JobRecord) -> list[ResultFile]:
        kind = self.kinds.get(job.kind)
        directory = self.workdir(job) / "results"
        if not directory.is_dir():
            return []
        chosen = self._chosen_result_types(job)
        results = []
        for path in sorted(directory.iterdir()):
            if not path.is_file():
                continue
            spec = kind.result(path.name) if kind is not None else None
            mime = chosen.get(path.name) or (spec.mime_type if spec else mimetypes.guess_type(path.name)[0])
            results.append(
                ResultFile(name=path.name, mime_type=mime or "application/octet-stream", size=path.stat().st_size)
            )
        if kind is not None:
            # Declared results first, in declaration order; then anything else.
            order = {r.name: i for i, r in enumerate(kind.results)}
            results.sort(key=lambda r: (order.get(r.name, len(order)), r.name))
        return results

    def _chosen_result_types(self, job: JobRecord) -> dict[str, str]:
        """Media types the runner chose for its results (``JobContext.result_path(mime_type=...)``)."""
        path = self.workdir(job) / RESULT_TYPES_FILE
        try:
            chosen = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(chosen, dict):
            return {}
        return {str(k): str(v) for k, v in chosen.items()}

    def _on_progress(self, job_id: str, fraction: float, message: str) -> None:
        if job_id in self._running:
            self._store.save_progress(job_id, Progress(fraction=fraction, message=message, updated=_now()))

    async def _destroy(self, job_id: str) -> None:
        task = self._running.pop(job_id, None)
        if task is not None:
            task.cancel()
        deadline = self._deadlines.pop(job_id, None)
        if deadline is not None:
            deadline.cancel()
        self._store.delete(job_id)
        self._notify(job_id)
        await asyncio.to_thread(shutil.rmtree, self._jobs_dir / job_id, True)
        _log.info("Job %s destroyed", job_id)
        self._dispatch()

    def _wake_reaper_for(self, destruction: datetime) -> None:
        if self._reaper_due is None or destruction < self._reaper_due:
            self._reaper_wakeup.set()

    async def _reap_forever(self) -> None:
        """Destroy jobs whose destruction time has come, sleeping until the next one."""
        while True:
            self._reaper_wakeup.clear()
            now = _now()
            for job_id in self._store.expired(now):
                await self._destroy(job_id)
            upcoming = self._store.next_destruction()
            sleep = _REAPER_MAX_SLEEP_S
            if upcoming is not None:
                sleep = min(max((upcoming - _now()).total_seconds(), 0.0), _REAPER_MAX_SLEEP_S)
            self._reaper_due = _now() + timedelta(seconds=sleep)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reaper_wakeup.wait(), sleep + 0.01)

