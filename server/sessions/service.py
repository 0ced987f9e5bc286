"""The policy of active-learning sessions: creating them, taking labels, and running iterations as UWS jobs.

An iteration is an ``active_learning`` job of the session's owner, created
through the job service like any other, whose ``session`` upload is the
`IterationInput`; the job service announces its end (`JobService.add_listener`)
and the outcome is recorded from its ``iteration`` result. Ends that happened
while the server was down, or jobs deleted through UWS, are picked up when the
service starts and whenever a session is looked at.

Everything that changes a session's iterations runs under that session's lock,
so two label posts that both complete an oracle batch start one iteration, not
two. A label post with an idempotency key is applied once: a retry gets the
answer stored with the labels (see `SessionStore.add_labels`), a retry that
arrives while the first is still being handled gets 409 (the draft's
"concurrent request"), a different post under the same key 422.

Bulk work (checking posted ids against the archive, storing thousands of
labels, writing an iteration's input) runs in worker threads; the rest is a
few indexed SQLite queries on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..archive.service import Archive
from ..errors import ConflictError, NotFoundError, UsageError
from ..ml.active_learning_kind import ACTIVE_LEARNING
from ..ml.iteration import IterationInput, IterationOutcome, IterationRecord, SessionSettings
from ..ml.precision import PrecisionEstimate, precision_estimate, stopping_reasons
from ..uws.models import JobRecord
from ..uws.phases import TERMINAL_PHASES, ExecutionPhase
from ..uws.service import JobService, Upload, new_id
from .labels_input import IDEMPOTENCY_HEADER, collapse, describe, fingerprint
from .models import (
    IterationRow,
    IterationStatus,
    LabelEntry,
    MemberCounts,
    NewLabel,
    SessionRecord,
    SessionState,
)
from .params import SessionRequest
from .selection import Selection
from .store import IdempotentAnswer, SessionStore

__all__ = ["ITERATION_RESULT", "IterationView", "LabelPost", "SessionService", "SessionView"]

_log = logging.getLogger(__name__)

ITERATION_RESULT = "iteration"
"""The result of an ``active_learning`` job holding its `IterationOutcome`."""

_SESSION_UPLOAD = "session"
"""The ``active_learning`` parameter carrying the `IterationInput`."""


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True, kw_only=True)
class IterationView:
    """One iteration as a session document shows it.

    Attributes
    ----------
    row
        What the store knows.
    job
        Its UWS job, or None once the job is destroyed.
    counts
        How much of its oracle batch and precision sample is labelled now.
    precision
        Precision estimate from its labelled precision sample (completed iterations only).
    """

    row: IterationRow
    job: JobRecord | None
    counts: MemberCounts
    precision: PrecisionEstimate | None


@dataclass(frozen=True, kw_only=True)
class SessionView:
    """A session with everything derived from its iterations and labels.

    Attributes
    ----------
    record
        The stored session.
    state
        Where it stands.
    iterations
        Its iterations, by number.
    label_counts
        Distinct labelled spectra by class (every class, zeros included).
    labelled
        Distinct labelled spectra.
    stopping
        The stopping criteria that hold, as sentences.
    """

    record: SessionRecord
    state: SessionState
    iterations: tuple[IterationView, ...]
    label_counts: dict[str, int]
    labelled: int
    stopping: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class LabelPost:
    """What a label post did (or, ``replayed``, what the earlier post with its idempotency key did).

    Attributes
    ----------
    accepted
        Labels stored.
    labelled
        Distinct spectra labelled just after the post.
    next_job_id
        The iteration job the post started, or None.
    replayed
        True if nothing was stored now: the answer is that of an earlier post with the same key.
    """

    accepted: int
    labelled: int
    next_job_id: str | None
    replayed: bool = False


class SessionService:
    """All operations on active-learning sessions.

    Parameters
    ----------
    store
        Where sessions persist.
    jobs
        The job service that runs iterations.
    archive_dir
        The spectra archive (a connection of its own is opened, used in worker threads).
    incoming_dir
        Where iteration inputs are written before the job service takes them over.
    """

    def __init__(self, *, store: SessionStore, jobs: JobService, archive_dir: Path, incoming_dir: Path) -> None:
        self._store = store
        self._jobs = jobs
        self._archive = Archive(archive_dir)
        self._archive_lock = threading.Lock()
        self._incoming_dir = incoming_dir
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._keys_in_flight: set[tuple[str, str | None, str]] = set()
        """(session, owner, idempotency key) of the keyed label posts being handled now."""

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow iteration jobs, record those that ended while nobody listened, and advance sessions."""
        self._jobs.add_listener(self._on_job_finished)
        for row in self._store.pending_iterations():
            record = self._store.get_session(row.session_id)
            if record is not None:
                self._settle(record, row)
        for session_id in self._store.session_ids():
            self._schedule_advance(session_id)

    async def close(self) -> None:
        """Stop following jobs and finish background work (iteration jobs go on as UWS jobs)."""
        self._closing = True
        self._jobs.remove_listener(self._on_job_finished)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with self._archive_lock:
            self._archive.close()

    # -- reading --------------------------------------------------------------------------------

    def get(self, session_id: str, owner: str | None) -> SessionRecord:
        """The session, if it exists and belongs to ``owner``.

        Raises
        ------
        NotFoundError
            Raised if there is no such session visible to ``owner``; another owner's
            session is indistinguishable from a missing one.
        """
        record = self._store.get_session(session_id)
        if record is None or record.owner != owner:
            msg = f"There is no session {session_id!r}"
            raise NotFoundError(msg)
        return record

    def list_sessions(self, owner: str | None) -> list[SessionView]:
        """The owner's sessions, oldest first."""
        return [self.view(record) for record in self._store.list_sessions(owner)]

    def view(self, record: SessionRecord) -> SessionView:
        """The session with its iterations, label counts, precision estimates, stopping criteria and state."""
        for row in self._store.iterations(record.session_id):
            if row.status == IterationStatus.PENDING:
                self._settle(record, row)
        settings = record.settings
        counts = self._store.member_counts(record.session_id, settings.positive_class)
        stored_counts = self._store.label_counts(record.session_id)
        iterations = tuple(
            self._iteration_view(record, row, counts.get(row.number, MemberCounts()))
            for row in self._store.iterations(record.session_id)
        )
        labelled = sum(stored_counts.values())
        completed = [v for v in iterations if v.row.outcome is not None]
        latest = completed[-1] if completed else None
        criteria = record.criteria
        stopping = tuple(
            stopping_reasons(
                labels_used=labelled,
                label_budget=criteria.label_budget,
                mean_uncertainty=None if latest is None or latest.row.outcome is None else latest.row.outcome.mean_bald,
                uncertainty_threshold=criteria.uncertainty_threshold,
                precision=None if latest is None else latest.precision,
                precision_target=criteria.precision_target,
            )
        )
        return SessionView(
            record=record,
            state=_state(iterations, stopping),
            iterations=iterations,
            label_counts={name: stored_counts.get(name, 0) for name in settings.classes},
            labelled=labelled,
            stopping=stopping,
        )

    def _iteration_view(self, record: SessionRecord, row: IterationRow, counts: MemberCounts) -> IterationView:
        completed = row.status == IterationStatus.COMPLETED
        return IterationView(
            row=row,
            job=self._job(record, row.job_id),
            counts=counts,
            precision=precision_estimate(counts.sample_positive, counts.sample_labelled) if completed else None,
        )

    async def label_history(self, record: SessionRecord) -> list[LabelEntry]:
        """Every label posted to the session, in posting order."""
        return await asyncio.to_thread(self._store.label_history, record.session_id)

    # -- changing --------------------------------------------------------------------------------

    async def create(self, request: SessionRequest, owner: str | None) -> SessionRecord:
        """Create a session with its initial labels and start its first iteration.

        Everything is checked before anything is stored.

        Raises
        ------
        UsageError
            Raised if the selection is empty, or an initial label names a class the
            session does not have or a spectrum outside the selection.
        ConflictError
            Raised if the server does not offer the ``active_learning`` job kind.
        """
        self._check_offered()
        await asyncio.to_thread(self._check_selection, request.settings)
        try:
            labels = collapse(request.labels)
            await asyncio.to_thread(self._check_labels, request.settings, labels)
        except UsageError as e:
            msg = f"labels refused, no session was created: {e.message}"
            raise UsageError(msg) from e
        record = SessionRecord(
            session_id=new_id(),
            owner=owner,
            title=request.title,
            created=_now(),
            settings=request.settings,
            criteria=request.criteria,
            auto_advance=request.auto_advance,
        )
        await asyncio.to_thread(self._store.add_session, record, labels)
        _log.info("Session %s created for %s with %d label(s)", record.session_id, owner or "anonymous", len(labels))
        async with self._lock(record.session_id):
            await self._start_iteration(record, self.view(record))
        return record

    async def delete(self, record: SessionRecord) -> None:
        """Forget a session, its iterations and labels; its jobs stay UWS jobs of the owner."""
        async with self._lock(record.session_id):
            await asyncio.to_thread(self._store.delete_session, record.session_id)
        self._locks.pop(record.session_id, None)
        _log.info("Session %s deleted", record.session_id)

    async def post_labels(
        self, record: SessionRecord, labels: Sequence[NewLabel], owner: str | None, *, key: str | None = None
    ) -> LabelPost:
        """Store labels, all or nothing, then start the next iteration if they complete the oracle batch.

        With an idempotency ``key`` the post is applied at most once per session
        and owner: a repeat with the same labels returns the first answer
        (``replayed``) and stores nothing. A repeat that fails validation is not
        remembered, so its retry is checked afresh (and fails the same way).

        Raises
        ------
        UsageError
            Raised if an id is given twice with different labels, a label is not one of
            the session's classes, or an id is not a spectrum of its selection; nothing
            is stored then.
        IdempotencyKeyReusedError
            Raised if ``key`` was used on the session by ``owner`` for different labels.
        ConflictError
            Raised if a post with the same ``key`` is still being handled.
        NotFoundError
            Raised if the session was deleted meanwhile.
        """
        if key is None:
            return await self._post_labels(record, labels, owner, key=None, digest="")
        token = (record.session_id, owner, key)
        if token in self._keys_in_flight:
            msg = (
                f"A label post with {IDEMPOTENCY_HEADER} {key!r} is still being handled for this session;"
                " retry once it has answered"
            )
            raise ConflictError(msg)
        self._keys_in_flight.add(token)
        try:
            digest = fingerprint(labels)
            earlier = self._store.idempotent_answer(record.session_id, owner, key, digest)
            if earlier is not None:
                _log.info("Session %s: label post %r replayed", record.session_id, key)
                return _label_post(earlier)
            return await self._post_labels(record, labels, owner, key=key, digest=digest)
        finally:
            self._keys_in_flight.discard(token)

    async def _post_labels(
        self, record: SessionRecord, labels: Sequence[NewLabel], owner: str | None, *, key: str | None, digest: str
    ) -> LabelPost:
        try:
            accepted = collapse(labels)
            await asyncio.to_thread(self._check_labels, record.settings, accepted)
        except UsageError as e:
            msg = f"Labels refused, nothing was stored: {e.message}"
            raise UsageError(msg) from e
        stored = await asyncio.to_thread(
            self._store.add_labels, record.session_id, accepted, owner=owner, posted=_now(), key=key, fingerprint=digest
        )
        if stored is None:
            msg = f"There is no session {record.session_id!r}"
            raise NotFoundError(msg)
        if stored.replayed:
            return _label_post(stored)
        _log.info("Session %s: %d label(s) stored", record.session_id, stored.accepted)
        started = await self._advance(record.session_id)
        if started is not None and key is not None:
            self._store.set_next_job(record.session_id, owner, key, started.job_id)
        return LabelPost(
            accepted=stored.accepted, labelled=stored.labelled, next_job_id=None if started is None else started.job_id
        )

    async def start_next(self, record: SessionRecord) -> IterationRow:
        """Start the next iteration now, whatever auto-advance and the stopping criteria say.

        Raises
        ------
        ConflictError
            Raised if an iteration is queued or running, or the server does not offer
            the ``active_learning`` job kind.
        NotFoundError
            Raised if the session was deleted meanwhile.
        """
        self._check_offered()
        async with self._lock(record.session_id):
            view = self.view(record)
            running = [v.row for v in view.iterations if v.row.status == IterationStatus.PENDING]
            if running:
                msg = (
                    f"Iteration {running[-1].number} of session {record.session_id} is still queued or running"
                    f" (job {running[-1].job_id}); wait for it to finish or abort that job"
                )
                raise ConflictError(msg)
            row = await self._start_iteration(record, view)
        if row is None:
            msg = f"There is no session {record.session_id!r}"
            raise NotFoundError(msg)
        return row

    # -- internals -------------------------------------------------------------------------------

    def _lock(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    def _job(self, record: SessionRecord, job_id: str) -> JobRecord | None:
        try:
            return self._jobs.get(ACTIVE_LEARNING.name, job_id, record.owner)
        except NotFoundError:
            return None

    def _check_offered(self) -> None:
        if self._jobs.kinds.get(ACTIVE_LEARNING.name) is None:
            msg = f"This server does not offer the {ACTIVE_LEARNING.name!r} job kind, so it cannot run sessions"
            raise ConflictError(msg)

    def _check_selection(self, settings: SessionSettings) -> None:
        """Refuse an empty selection (in a worker thread)."""
        query = dataclasses.replace(Selection.from_parameters(settings.selection).query, limit=1)
        with self._archive_lock:
            empty = not self._archive.store.search(query)
        if empty:
            msg = (
                "The selection is empty: no archived spectrum matches POS/SIZE, BAND, COLLECTION and TARGETNAME"
                " together; widen it (SSA at /ssa shows what the archive holds)"
            )
            raise UsageError(msg)

    def _check_labels(self, settings: SessionSettings, labels: Sequence[NewLabel]) -> None:
        """Refuse labels of unknown classes or spectra outside the selection, naming them (in a worker thread)."""
        if not labels:
            return
        problems = []
        classes = set(settings.classes)
        unknown_classes = dict.fromkeys(item.label for item in labels if item.label not in classes)
        if unknown_classes:
            problems.append(
                f"{describe(unknown_classes, 'label')} not among the session's classes {list(settings.classes)}"
            )
        ids = [item.id for item in labels]
        with self._archive_lock:
            records = self._archive.store.get_many(ids)
        selection = Selection.from_parameters(settings.selection)
        outside = [did for did in ids if did not in records or not selection.matches(records[did])]
        if outside:
            problems.append(f"{describe(outside, 'id')} not spectra of the session's selection of the archive")
        if problems:
            raise UsageError("; ".join(problems))

    def _settle(self, record: SessionRecord, row: IterationRow) -> IterationRow | None:
        """Record the end of a pending iteration whose job ended or vanished unannounced."""
        job = self._job(record, row.job_id)
        if job is None:
            message = f"The iteration's job {row.job_id} was deleted before it finished"
            return self._store.finish_iteration(row.job_id, finished=_now(), error=message)
        if job.phase in TERMINAL_PHASES:
            return self._record(job)
        return None

    def _record(self, job: JobRecord) -> IterationRow | None:
        """Record a finished iteration job's outcome or failure; None if it runs no pending iteration."""
        finished = job.end_time or _now()
        error: str | None = None
        outcome: IterationOutcome | None = None
        match job.phase:
            case ExecutionPhase.COMPLETED:
                try:
                    _, path = self._jobs.result_path(job, ITERATION_RESULT)
                    outcome = IterationOutcome.from_json(path.read_bytes())
                except (NotFoundError, OSError, ValueError) as e:
                    error = f"The iteration job completed without a readable {ITERATION_RESULT!r} result: {e}"
            case ExecutionPhase.ERROR:
                error = job.error.message if job.error is not None else "The iteration job failed"
            case ExecutionPhase.ABORTED:
                error = "The iteration job was aborted"
            case _:
                return None
        row = self._store.finish_iteration(job.job_id, finished=finished, outcome=outcome, error=error)
        if row is not None:
            _log.info("Session %s: iteration %d %s", row.session_id, row.number, row.status.value)
        return row

    def _on_job_finished(self, job: JobRecord) -> None:
        if job.kind != ACTIVE_LEARNING.name:
            return
        row = self._record(job)
        if row is not None:
            self._schedule_advance(row.session_id)

    def _schedule_advance(self, session_id: str) -> None:
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._advance_logged(session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _advance_logged(self, session_id: str) -> None:
        try:
            await self._advance(session_id)
        except Exception:  # noqa: BLE001 - a background task: log, the session shows its state
            _log.exception("Session %s: could not start the next iteration", session_id)

    async def _advance(self, session_id: str) -> IterationRow | None:
        """Start the next iteration if auto-advance says so; the started iteration, else None."""
        async with self._lock(session_id):
            record = self._store.get_session(session_id)
            if record is None or not record.auto_advance:
                return None
            view = self.view(record)
            if not _batch_done(view):
                return None
            return await self._start_iteration(record, view)

    async def _start_iteration(self, record: SessionRecord, view: SessionView) -> IterationRow | None:
        """Create and run the next iteration's job (the caller holds the session's lock); None if the session went."""
        session_id = record.session_id
        number = self._store.next_number(session_id)
        history = tuple(_history(v) for v in view.iterations if v.row.outcome is not None)

        def write_input() -> Path:
            # Off the event loop: a session may have a hundred thousand labels to write out.
            labels = self._store.current_labels(session_id)
            given = IterationInput(
                session_id=session_id, iteration=number, settings=record.settings, labels=labels, history=history
            )
            return self._write_input(given.to_json())

        path = await asyncio.to_thread(write_input)
        try:
            job = await self._jobs.create(
                ACTIVE_LEARNING.name,
                record.owner,
                params=[],
                uploads=[Upload(name=_SESSION_UPLOAD, path=path)],
                # Sessions last: keep their iterations as long as the operator allows.
                destruction=_now() + timedelta(seconds=self._jobs.limits.max_lifetime),
                run=True,
            )
        finally:
            path.unlink(missing_ok=True)
        if not self._store.add_iteration(session_id, number, job.job_id, job.creation_time):
            _log.info("Session %s was deleted while iteration %d started; job %s stays", session_id, number, job.job_id)
            return None
        _log.info("Session %s: iteration %d started as job %s", session_id, number, job.job_id)
        row = next(r for r in self._store.iterations(session_id) if r.number == number)
        return self._settle(record, row) or row

    def _write_input(self, document: str) -> Path:
        self._incoming_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=self._incoming_dir, prefix="session-", suffix=".json", delete=False, encoding="utf-8"
        ) as handle:
            handle.write(document)
        return Path(handle.name)


def _label_post(answer: IdempotentAnswer) -> LabelPost:
    return LabelPost(
        accepted=answer.accepted, labelled=answer.labelled, next_job_id=answer.next_job_id, replayed=answer.replayed
    )


def _history(view: IterationView) -> IterationRecord:
    outcome = view.row.outcome
    assert outcome is not None
    estimate = view.precision
    # Without a labelled sample there is no estimate, only the whole of [0, 1].
    known = estimate if estimate is not None and estimate.value is not None else None
    return IterationRecord(
        iteration=view.row.number,
        labels_used=outcome.labels_used,
        val_accuracy=outcome.val_accuracy,
        val_macro_f1=outcome.val_macro_f1,
        mean_bald=outcome.mean_bald,
        mean_entropy=outcome.mean_entropy,
        precision=None if known is None else known.value,
        precision_low=None if known is None else known.low,
        precision_high=None if known is None else known.high,
        precision_n=0 if known is None else known.n,
    )


def _oracle_complete(view: IterationView) -> bool:
    outcome = view.row.outcome
    return outcome is not None and view.counts.oracle_labelled >= len(outcome.oracle)


def _state(iterations: Sequence[IterationView], stopping: Sequence[str]) -> SessionState:
    if any(v.row.status == IterationStatus.PENDING for v in iterations):
        return SessionState.RUNNING
    if not iterations:
        return SessionState.IDLE
    latest = iterations[-1]
    if latest.row.status == IterationStatus.FAILED:
        return SessionState.FAILED
    if stopping:
        return SessionState.STOPPED
    if not _oracle_complete(latest):
        return SessionState.WAITING_FOR_LABELS
    return SessionState.IDLE


def _batch_done(view: SessionView) -> bool:
    """Whether auto-advance starts the next iteration: the latest one completed and its non-empty batch is labelled."""
    if view.state != SessionState.IDLE or not view.iterations:
        return False
    latest = view.iterations[-1]
    # An empty batch means nothing was left to ask; starting again would only repeat that.
    return latest.row.outcome is not None and bool(latest.row.outcome.oracle) and _oracle_complete(latest)
