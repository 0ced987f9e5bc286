"""What a running job sees: its working directory, result paths and a progress channel.

Imported by worker processes; depends on nothing of the web server.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["JobContext", "JobTransientError", "JobUsageError", "ProgressSink", "ServerPaths"]

ProgressSink = Callable[[str, float, str], None]
"""Callable taking ``(job_id, fraction, message)``; supplied by the executor."""

_PROGRESS_INTERVAL_S = 0.2
"""Least time between two progress reports that are sent on; the last one always goes."""

RESULT_TYPES_FILE = "result-types.json"
"""File in a job's directory naming the media types its runner chose for results, by result name."""


@dataclass(frozen=True, kw_only=True)
class ServerPaths:
    """Server-side locations a job may use: set by the operator, never taken from a request.

    Parameters
    ----------
    data_dir
        The server's data directory.
    archive_dir
        The spectra archive (metadata database and stored files).
    ingest_roots
        Directories an ``ingest`` job may read by path; empty means none.
    public_url
        The service's public base URL, for links written into results (DataLink
        service descriptors, access URLs); empty when unknown.
    """

    data_dir: Path
    archive_dir: Path
    ingest_roots: tuple[Path, ...] = ()
    public_url: str = ""


class JobUsageError(Exception):
    """The job cannot succeed with the parameters it was given (the user's fault).

    Reported as a fatal error whose message the user sees verbatim, so the
    message should say what to change.
    """


class JobTransientError(Exception):
    """The job failed for a reason that may go away (a remote service down, a full disk).

    Reported as a transient error: running the same job again may succeed.
    """


@dataclass(kw_only=True)
class JobContext:
    """Handed to a job's runner next to its parameters.

    Parameters
    ----------
    job_id
        The UWS job identifier, for logging.
    workdir
        A directory owned by this job; scratch files go here.
    owner
        Who created the job (``None`` when anonymous).
    server
        Server-side locations (archive, data directory), when the job needs them.
    progress_sink
        Where progress reports go; the executor provides it.
    """

    job_id: str
    workdir: Path
    owner: str | None = None
    server: ServerPaths | None = None
    progress_sink: ProgressSink | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("vocloud.job"))
    _last_report: float = field(default=0.0, repr=False)

    @property
    def results_dir(self) -> Path:
        """Directory whose files become the job's UWS results."""
        return self.workdir / "results"

    def result_path(self, name: str, *, mime_type: str | None = None) -> Path:
        """Path to write the result ``name`` to; the file name is the UWS result id.

        Parameters
        ----------
        name
            The result id.
        mime_type
            Media type to serve this result with, when the runner decides it
            (a format the user chose); it overrides the kind's declared type.

        Raises
        ------
        ValueError
            Raised if the name would leave the results directory.
        """
        if not name or "/" in name or "\\" in name or name.startswith("."):
            msg = f"Invalid result name {name!r}"
            raise ValueError(msg)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        if mime_type is not None:
            types_file = self.workdir / RESULT_TYPES_FILE
            types = json.loads(types_file.read_text(encoding="utf-8")) if types_file.is_file() else {}
            types[name] = mime_type
            types_file.write_text(json.dumps(types), encoding="utf-8")
        return self.results_dir / name

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the job is (0 to 1) with a short message.

        Reports closer together than a fifth of a second are dropped, except the
        final one (fraction 1), so a tight loop can report freely.
        """
        now = time.monotonic()
        fraction = min(max(float(fraction), 0.0), 1.0)
        if fraction < 1.0 and now - self._last_report < _PROGRESS_INTERVAL_S:
            return
        self._last_report = now
        if self.progress_sink is not None:
            self.progress_sink(self.job_id, fraction, message[:500])
