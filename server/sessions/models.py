"""What the session store persists and the session service reasons about.

A session is a long-lived resource of one owner: its settings (fixed at
creation), its iterations (each a UWS job of kind ``active_learning``) and the
expert's labels (an append-only history; the latest label of a spectrum
counts). The JSON exchanged with iteration jobs is defined apart, in
:mod:`vocloud.server.ml.iteration`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from ..ml.iteration import IterationOutcome, SessionSettings

__all__ = [
    "IterationRow",
    "IterationStatus",
    "LabelEntry",
    "MemberCounts",
    "NewLabel",
    "SessionRecord",
    "SessionState",
    "StoppingCriteria",
]


class SessionState(enum.StrEnum):
    """Where a session stands, as its document shows it."""

    RUNNING = "running"
    """An iteration is queued or executing."""
    WAITING_FOR_LABELS = "waiting_for_labels"
    """The latest iteration completed and its oracle batch is not fully labelled yet."""
    STOPPED = "stopped"
    """A stopping criterion holds: auto-advance starts no more iterations (one can still be started by hand)."""
    FAILED = "failed"
    """The latest iteration failed; start another by hand once the cause is fixed."""
    IDLE = "idle"
    """Nothing runs and nothing is awaited (no iteration yet, or auto-advance is off and the batch is done)."""


class IterationStatus(enum.StrEnum):
    """What the session knows of an iteration's job."""

    PENDING = "pending"
    """The job is queued or executing (or its end has not been seen yet)."""
    COMPLETED = "completed"
    """The job completed and its outcome is recorded."""
    FAILED = "failed"
    """The job ended in ERROR or ABORTED, was deleted, or completed without a readable outcome."""


@dataclass(frozen=True, kw_only=True)
class StoppingCriteria:
    """Optional limits that stop auto-advance (see `vocloud.server.ml.precision.stopping_reasons`).

    Attributes
    ----------
    label_budget
        Most labels the expert is willing to give.
    uncertainty_threshold
        Stop when the latest iteration's mean BALD falls below this.
    precision_target
        Stop when the lower bound of the latest precision estimate reaches this, in (0, 1].
    """

    label_budget: int | None = None
    uncertainty_threshold: float | None = None
    precision_target: float | None = None


@dataclass(frozen=True, kw_only=True)
class SessionRecord:
    """A session as stored.

    Attributes
    ----------
    session_id
        Server-made identifier (the path segment of ``/sessions/{id}``).
    owner
        Who created it (``None`` when anonymous); nobody else sees it.
    title
        Optional human title.
    created
        Creation time (UTC).
    settings
        How its iterations run.
    criteria
        When auto-advance stops.
    auto_advance
        Whether the next iteration starts by itself once the oracle batch is labelled.
    """

    session_id: str
    owner: str | None
    title: str | None
    created: datetime
    settings: SessionSettings
    criteria: StoppingCriteria
    auto_advance: bool


@dataclass(frozen=True, kw_only=True)
class IterationRow:
    """One iteration of a session and what is known of its job.

    Attributes
    ----------
    session_id, number
        The session and the iteration's number (from 1; a failed iteration keeps its number).
    job_id
        The ``active_learning`` UWS job running it.
    created
        When the job was created.
    status
        Pending, completed or failed.
    finished
        When its end was recorded.
    outcome
        What the job reported (completed iterations only).
    error
        Why it failed (failed iterations only).
    """

    session_id: str
    number: int
    job_id: str
    created: datetime
    status: IterationStatus
    finished: datetime | None = None
    outcome: IterationOutcome | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class MemberCounts:
    """How much of an iteration's oracle batch and precision sample is labelled now (latest labels).

    Attributes
    ----------
    oracle_labelled
        Spectra of the oracle batch with a label.
    sample_labelled
        Spectra of the precision sample with a label.
    sample_positive
        Of those, how many are labelled as the positive class.
    """

    oracle_labelled: int = 0
    sample_labelled: int = 0
    sample_positive: int = 0


@dataclass(frozen=True, kw_only=True)
class NewLabel:
    """One label as posted (before it is checked and stored)."""

    id: str
    label: str
    labeller: str | None = None
    comment: str | None = None


@dataclass(frozen=True, kw_only=True)
class LabelEntry:
    """One stored label: a row of the history (`vocloud.server.ml.iteration.LABEL_COLUMNS`).

    Attributes
    ----------
    seq
        Order of posting within the session, from 1.
    id, label, labeller, comment
        What was posted.
    owner
        Who was authenticated when it was posted (``None`` when anonymous).
    posted
        When the service stored it (UTC).
    iteration
        The session's latest iteration number at that moment (0 before the first).
    """

    seq: int
    id: str
    label: str
    labeller: str | None
    comment: str | None
    owner: str | None
    posted: datetime
    iteration: int
