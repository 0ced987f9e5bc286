"""The job record: what the store persists and the service reasons about."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .phases import ExecutionPhase

__all__ = ["ErrorInfo", "JobRecord", "ParameterValue", "Progress", "ResultFile"]


@dataclass(frozen=True, kw_only=True)
class ParameterValue:
    """One parameter as given: its text and, for uploads, the stored file's name."""

    name: str
    value: str
    upload: bool = False


@dataclass(frozen=True, kw_only=True)
class ResultFile:
    """One result of a job: its id (also its file name), media type and size."""

    name: str
    mime_type: str
    size: int


@dataclass(frozen=True, kw_only=True)
class ErrorInfo:
    """The errorSummary of a job in phase ERROR."""

    type: str
    message: str
    has_detail: bool = False


@dataclass(frozen=True, kw_only=True)
class Progress:
    """How far an executing job says it is."""

    fraction: float
    message: str
    updated: datetime


@dataclass(kw_only=True)
class JobRecord:
    """A UWS job as stored.

    Times are timezone-aware UTC datetimes. ``parameters`` keeps the order and
    repetitions of what the client sent (after name normalisation).
    """

    job_id: str
    kind: str
    owner: str | None
    phase: ExecutionPhase
    creation_time: datetime
    destruction_time: datetime
    execution_duration: int
    run_id: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    parameters: list[ParameterValue] = field(default_factory=list)
    results: list[ResultFile] = field(default_factory=list)
    error: ErrorInfo | None = None
    progress: Progress | None = None
