"""Persistence of UWS jobs in SQLite (WAL); no policy lives here.

One connection, used only from the event loop's thread: each call is a short
transaction (tens of microseconds), cheaper than handing work to a thread.
Durability across ``kill -9`` comes from :mod:`vocloud.server.sqlite`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..sqlite import open_database, transaction
from .models import ErrorInfo, JobRecord, ParameterValue, Progress, ResultFile
from .phases import ExecutionPhase

__all__ = ["JobStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT,
    run_id TEXT,
    phase TEXT NOT NULL,
    creation_time REAL NOT NULL,
    start_time REAL,
    end_time REAL,
    destruction_time REAL NOT NULL,
    execution_duration INTEGER NOT NULL,
    parameters TEXT NOT NULL,
    results TEXT NOT NULL,
    error TEXT,
    progress TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_list ON jobs (kind, owner, creation_time);
CREATE INDEX IF NOT EXISTS jobs_by_destruction ON jobs (destruction_time);
CREATE INDEX IF NOT EXISTS jobs_by_phase ON jobs (phase);
"""

_COLUMNS = (
    "job_id, kind, owner, run_id, phase, creation_time, start_time, end_time, destruction_time,"
    " execution_duration, parameters, results, error, progress"
)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else _utc(value)


def _utc(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


class JobStore:
    """SQLite-backed storage of job records.

    Parameters
    ----------
    path
        The database file; created with its schema if absent.
    """

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def add(self, job: JobRecord) -> None:
        """Insert a new job."""
        with transaction(self._db) as db:
            db.execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * 14)})", _row(job))

    def save(self, job: JobRecord) -> None:
        """Write every field of an existing job in one transaction."""
        row = _row(job)
        with transaction(self._db) as db:
            db.execute(
                "UPDATE jobs SET kind=?, owner=?, run_id=?, phase=?, creation_time=?, start_time=?,"
                " end_time=?, destruction_time=?, execution_duration=?, parameters=?,"
                " results=?, error=?, progress=? WHERE job_id=?",
                (*row[1:], row[0]),
            )

    def save_progress(self, job_id: str, progress: Progress) -> None:
        """Record a progress report without touching anything else of the job."""
        value = json.dumps([progress.fraction, progress.message, progress.updated.timestamp()])
        with transaction(self._db) as db:
            db.execute("UPDATE jobs SET progress=? WHERE job_id=?", (value, job_id))

    def get(self, job_id: str) -> JobRecord | None:
        """The job of that id, if it exists."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return None if row is None else _record(row)

    def delete(self, job_id: str) -> None:
        """Forget a job."""
        with transaction(self._db) as db:
            db.execute("DELETE FROM jobs WHERE job_id=?", (job_id,))

    def list_jobs(
        self,
        *,
        kind: str,
        owner: str | None,
        phases: Iterable[ExecutionPhase] = (),
        after: datetime | None = None,
        last: int | None = None,
    ) -> list[JobRecord]:
        """Jobs of one kind and owner, filtered as UWS 1.1 section 2.2.2.1 describes.

        Without ``last`` they come in creation order; with it, the ``last``
        most recent come newest first.
        """
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE kind=? AND owner IS ?"
        args: list[object] = [kind, owner]
        phase_values = [p.value for p in phases]
        if phase_values:
            sql += f" AND phase IN ({', '.join('?' * len(phase_values))})"
            args += phase_values
        if after is not None:
            sql += " AND creation_time > ?"
            args.append(after.timestamp())
        if last is not None:
            sql += " ORDER BY creation_time DESC, rowid DESC LIMIT ?"
            args.append(last)
        else:
            sql += " ORDER BY creation_time, rowid"
        return [_record(row) for row in self._db.execute(sql, args)]

    def in_phases(self, phases: Iterable[ExecutionPhase]) -> list[JobRecord]:
        """Every job in one of ``phases``, oldest first (used when the server starts)."""
        values = [p.value for p in phases]
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE phase IN ({', '.join('?' * len(values))})"
        return [_record(row) for row in self._db.execute(sql + " ORDER BY creation_time, rowid", values)]

    def next_destruction(self) -> datetime | None:
        """The earliest destruction time of any job."""
        row = self._db.execute("SELECT MIN(destruction_time) FROM jobs").fetchone()
        return _dt(row[0])

    def expired(self, now: datetime) -> list[str]:
        """Ids of jobs whose destruction time has come."""
        rows = self._db.execute("SELECT job_id FROM jobs WHERE destruction_time <= ?", (now.timestamp(),))
        return [row[0] for row in rows]

    def mean_duration(self, kind: str, *, sample: int = 50) -> float | None:
        """Mean run time in seconds of the kind's latest completed jobs (for quotes)."""
        row = self._db.execute(
            "SELECT AVG(end_time - start_time) FROM (SELECT start_time, end_time FROM jobs"
            " WHERE kind=? AND phase=? AND start_time IS NOT NULL AND end_time IS NOT NULL"
            " ORDER BY end_time DESC LIMIT ?)",
            (kind, ExecutionPhase.COMPLETED.value, sample),
        ).fetchone()
        return None if row[0] is None else float(row[0])


def _row(job: JobRecord) -> tuple[object, ...]:
    return (
        job.job_id,
        job.kind,
        job.owner,
        job.run_id,
        job.phase.value,
        _ts(job.creation_time),
        _ts(job.start_time),
        _ts(job.end_time),
        _ts(job.destruction_time),
        job.execution_duration,
        json.dumps([[p.name, p.value, p.upload] for p in job.parameters]),
        json.dumps([[r.name, r.mime_type, r.size] for r in job.results]),
        None if job.error is None else json.dumps([job.error.type, job.error.message, job.error.has_detail]),
        None
        if job.progress is None
        else json.dumps([job.progress.fraction, job.progress.message, job.progress.updated.timestamp()]),
    )


def _record(row: Any) -> JobRecord:
    (job_id, kind, owner, run_id, phase, created, started, ended, destruction, duration,
     parameters, results, error, progress) = row  # fmt: skip
    error_info = None
    if error is not None:
        etype, emessage, edetail = json.loads(error)
        error_info = ErrorInfo(type=etype, message=emessage, has_detail=edetail)
    progress_info = None
    if progress is not None:
        fraction, pmessage, updated = json.loads(progress)
        progress_info = Progress(fraction=fraction, message=pmessage, updated=_utc(updated))
    return JobRecord(
        job_id=str(job_id),
        kind=str(kind),
        owner=None if owner is None else str(owner),
        run_id=None if run_id is None else str(run_id),
        phase=ExecutionPhase(phase),
        creation_time=_utc(created),
        start_time=_dt(started),
        end_time=_dt(ended),
        destruction_time=_utc(destruction),
        execution_duration=int(duration),
        parameters=[ParameterValue(name=n, value=v, upload=u) for n, v, u in json.loads(parameters)],
        results=[ResultFile(name=n, mime_type=m, size=s) for n, m, s in json.loads(results)],
        error=error_info,
        progress=progress_info,
    )
