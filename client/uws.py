"""A generic UWS 1.1 client: list, create, run, wait (blocking WAIT, never a request storm), fetch, abort, delete.

Works with any UWS service (vocloud's job lists, a TAP service's ``/async``),
not only vocloud: it follows the standard's 303s and reads its job and job-list
documents, nothing vocloud-specific. Services that ignore ``WAIT`` (UWS 1.0)
are polled with a growing pause instead, so a wait costs a handful of requests
whatever the service does.

Every failure is a `vocloud.client.errors.VocloudError`: a refusal carries the
service's own message (DALI error VOTable, or text), a job that ended in ERROR
its errorSummary (`JobFailedError`), a dead connection is a
`ServerUnreachableError` and the client's own deadline a `ClientTimeoutError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar
from urllib.parse import urljoin

import requests
from lxml import etree

from .errors import (
    EXIT_JOB_FAILED,
    ClientTimeoutError,
    ServerUnreachableError,
    VocloudError,
    connection_reason,
    send,
)

__all__ = [
    "TERMINAL",
    "JobFailedError",
    "JobRef",
    "JobSummary",
    "UWSClient",
    "UWSError",
    "Upload",
    "parse_job",
    "parse_job_list",
]

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
"""The namespace of UWS 1.0 and 1.1 documents alike."""
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_NS = {"uws": UWS_NS}
TERMINAL = frozenset({"COMPLETED", "ERROR", "ABORTED", "ARCHIVED"})
"""Phases a job never leaves by itself: waiting ends there."""

DEFAULT_BLOCK_S = 60
"""Seconds asked of each blocking ``WAIT``: well under servers' caps (vocloud's is 120 s) and proxies' timeouts."""

_FIRST_PAUSE_S = 0.5
_MAX_PAUSE_S = 10.0
_BLOCKED_S = 0.5
"""An answer faster than this with the phase unchanged means the service did not block on ``WAIT``."""

_CHUNK = 1 << 16
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


class UWSError(VocloudError):
    """The service answered with an error, or with something that is not UWS."""


@dataclass(frozen=True)
class JobSummary:
    """What a job document says, as plain values.

    Attributes
    ----------
    url
        The job's URL.
    job_id
        Its identifier.
    phase
        Its UWS phase.
    results
        Result id → absolute URL.
    error_type
        ``fatal`` or ``transient`` when the job has an errorSummary.
    error_message
        The errorSummary's message.
    progress
        vocloud's progress (fraction, text) from ``jobInfo``, when the service reports any.
    parameters
        The job's parameters (id, value), in document order.
    """

    url: str
    job_id: str
    phase: str
    results: dict[str, str] = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    progress: tuple[float, str] | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    run_id: str | None = None
    owner: str | None = None
    creation_time: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    execution_duration: int | None = None
    destruction: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values (for ``--json`` output)."""
        values = asdict(self)
        values["parameters"] = [list(p) for p in self.parameters]
        values["progress"] = None if self.progress is None else {"fraction": self.progress[0], "text": self.progress[1]}
        return values


@dataclass(frozen=True)
class JobRef:
    """One job of a job list (UWS ``jobref``)."""

    job_id: str
    url: str
    phase: str
    run_id: str | None = None
    owner: str | None = None
    creation_time: str | None = None


class JobFailedError(UWSError):
    """A job ended in ERROR or ABORTED; the message is the service's errorSummary.

    Parameters
    ----------
    summary
        The job as it ended.
    """

    exit_code: ClassVar[int] = EXIT_JOB_FAILED

    def __init__(self, summary: JobSummary) -> None:
        detail = summary.error_message or "no error message"
        kind = f" ({summary.error_type})" if summary.error_type else ""
        super().__init__(f"Job {summary.job_id} ended {summary.phase}{kind}: {detail}", url=summary.url)
        self.summary = summary


def _text(element: Any, tag: str) -> str | None:
    """Text of a UWS child element; None when absent or ``xsi:nil``."""
    child = element.find(f"uws:{tag}", _NS)
    if child is None or child.get(f"{{{XSI_NS}}}nil") == "true":
        return None
    text: str = child.text or ""
    return text.strip()


def _xml(body: bytes, url: str, tag: str) -> Any:
    try:
        root = etree.fromstring(body, parser=_PARSER)
    except etree.XMLSyntaxError as e:
        msg = f"{url} did not return XML: {e}"
        raise UWSError(msg, url=url) from e
    if root.tag != f"{{{UWS_NS}}}{tag}":
        msg = f"{url} did not return a UWS {tag} document (got {root.tag})"
        raise UWSError(msg, url=url)
    return root


def parse_job(body: bytes, url: str) -> JobSummary:
    """Parse a ``uws:job`` document fetched from ``url``.

    Raises
    ------
    UWSError
        Raised if the document is not a UWS job.
    """
    root = _xml(body, url, "job")
    results = {
        r.get("id"): urljoin(url, r.get(f"{{{XLINK_NS}}}href") or "")
        for r in root.iterfind("uws:results/uws:result", _NS)
        if r.get("id") and r.get(f"{{{XLINK_NS}}}href")
    }
    summary = root.find("uws:errorSummary", _NS)
    progress = root.find("uws:jobInfo/{*}progress", _NS)
    duration = _text(root, "executionDuration")
    return JobSummary(
        url=url,
        job_id=_text(root, "jobId") or "",
        phase=_text(root, "phase") or "UNKNOWN",
        results=results,
        error_type=None if summary is None else summary.get("type"),
        error_message=None if summary is None else (summary.findtext("uws:message", namespaces=_NS) or "").strip(),
        progress=None if progress is None else (float(progress.get("fraction", "0")), progress.text or ""),
        parameters=tuple(
            (p.get("id") or "", (p.text or "").strip()) for p in root.iterfind("uws:parameters/uws:parameter", _NS)
        ),
        run_id=_text(root, "runId"),
        owner=_text(root, "ownerId"),
        creation_time=_text(root, "creationTime"),
        start_time=_text(root, "startTime"),
        end_time=_text(root, "endTime"),
        execution_duration=int(duration) if duration and duration.lstrip("-").isdigit() else None,
        destruction=_text(root, "destruction"),
    )


def parse_job_list(body: bytes, url: str) -> list[JobRef]:
    """Parse a ``uws:jobs`` document fetched from ``url``.

    Raises
    ------
    UWSError
        Raised if the document is not a UWS job list.
    """
    root = _xml(body, url, "jobs")
    refs = []
    for ref in root.iterfind("uws:jobref", _NS):
        job_id = ref.get("id") or ""
        href = ref.get(f"{{{XLINK_NS}}}href")
        refs.append(
            JobRef(
                job_id=job_id,
                url=urljoin(url, href) if href else f"{url.rstrip('/')}/{job_id}",
                phase=_text(ref, "phase") or "UNKNOWN",
                run_id=_text(ref, "runId"),
                owner=_text(ref, "ownerId"),
                creation_time=_text(ref, "creationTime"),
            )
        )
    return refs


Upload = tuple[str, tuple[str, IO[bytes]]]
"""A multipart part: (parameter name, (file name, open file))."""


class UWSClient:
    """Drive UWS jobs over HTTP.

    Parameters
    ----------
    session
        The requests session (credentials, proxies, retries) to use.
    timeout
        Seconds to wait for the service to connect and start answering a
        request, on top of any blocking ``WAIT``.
    """

    def __init__(self, session: requests.Session | None = None, *, timeout: float = 60.0) -> None:
        self.session = session or requests.Session()
        self.timeout = timeout

    def request(self, method: str, url: str, *, wait: float = 0.0, **kwargs: Any) -> requests.Response:
        """Send a request; return the response if it succeeded.

        Parameters
        ----------
        method, url
            What to send where.
        wait
            Seconds the service may legitimately hold the answer (a blocking
            ``WAIT``), added to the read timeout.
        **kwargs
            Passed to `requests.Session.request`.

        Raises
        ------
        ServerUnreachableError
            Raised if no connection could be made.
        ClientTimeoutError
            Raised if the service did not answer in time.
        VocloudError
            Raised if it refused the request (the message is its own).
        """
        kwargs.setdefault("timeout", (self.timeout, self.timeout + max(wait, 0.0)))
        return send(self.session, method, url, **kwargs)

    def jobs(
        self, list_url: str, *, phases: Sequence[str] = (), after: str | None = None, last: int | None = None
    ) -> list[JobRef]:
        """The jobs of a job list, filtered as UWS 1.1 allows (``PHASE``, ``AFTER``, ``LAST``).

        Raises
        ------
        VocloudError
            Raised if the service refuses the request or answers something else than a job list.
        """
        params: list[tuple[str, str]] = [("PHASE", p) for p in phases]
        if after is not None:
            params.append(("AFTER", after))
        if last is not None:
            params.append(("LAST", str(last)))
        response = self.request("GET", list_url, params=params)
        return parse_job_list(response.content, list_url)

    def create(
        self,
        list_url: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        files: Sequence[Upload] = (),
        run: bool = False,
    ) -> str:
        """Create a job and return its URL (from the 303's Location).

        Raises
        ------
        VocloudError
            Raised if the service refuses the job (its message says why).
        """
        data = list(params) + ([("PHASE", "RUN")] if run else [])
        response = self.request("POST", list_url, data=data, files=list(files) or None, allow_redirects=False)
        location = response.headers.get("Location")
        if response.status_code not in (201, 302, 303) or not location:
            msg = f"POST {list_url} answered {response.status_code} without a job location"
            raise UWSError(msg, status=response.status_code, url=list_url)
        return urljoin(list_url, location)

    def job(self, url: str, *, wait: int | None = None, phase: str | None = None) -> JobSummary:
        """The job document; with ``wait``, block up to that many seconds for a change from ``phase``.

        Raises
        ------
        VocloudError
            Raised if the service refuses the request or answers something else than a job.
        """
        params: dict[str, Any] = {}
        if wait is not None:
            params["WAIT"] = wait
            if phase is not None:
                params["PHASE"] = phase
        return parse_job(self.request("GET", url, params=params, wait=max(wait or 0, 0)).content, url)

    def run(self, url: str) -> None:
        """Start a PENDING job."""
        self.request("POST", f"{url}/phase", data={"PHASE": "RUN"}, allow_redirects=False)

    def abort(self, url: str) -> None:
        """Abort a job (the service keeps what it had written)."""
        self.request("POST", f"{url}/phase", data={"PHASE": "ABORT"}, allow_redirects=False)

    def delete(self, url: str) -> None:
        """Destroy a job and its results."""
        self.request("DELETE", url, allow_redirects=False)

    def wait(
        self,
        url: str,
        *,
        timeout: float | None = None,
        block: int = DEFAULT_BLOCK_S,
        on_change: Callable[[JobSummary], None] | None = None,
    ) -> JobSummary:
        """Wait until the job reaches a phase it cannot leave by itself; return it then.

        Uses UWS 1.1 blocking ``WAIT`` with ``PHASE`` (so no change between
        two requests is missed): one request per phase change, or per
        ``block`` seconds. A service that answers at once with the phase
        unchanged (UWS 1.0, or one that ignores ``WAIT``) is polled with a
        pause doubling from 0.5 s to 10 s, never in a tight loop.

        Parameters
        ----------
        url
            The job.
        timeout
            Seconds to wait at most; None waits as long as it takes.
        block
            Seconds asked of each ``WAIT``.
        on_change
            Called with every job document read (for a progress display).

        Raises
        ------
        ClientTimeoutError
            Raised if ``timeout`` seconds pass first; the job goes on.
        VocloudError
            Raised if the service fails or refuses a request.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        summary = self.job(url)
        pause = _FIRST_PAUSE_S
        while True:
            if on_change is not None:
                on_change(summary)
            if summary.phase in TERMINAL:
                return summary
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                msg = f"Job {summary.job_id} is still {summary.phase} after {timeout:g} s"
                raise ClientTimeoutError(msg, url=url)
            # WAIT takes whole seconds; round up so that the last one does not return early and spin.
            wait = block if remaining is None else max(1, min(block, int(remaining + 0.999)))
            started = time.monotonic()
            previous = summary.phase
            summary = self.job(url, wait=wait, phase=previous)
            if summary.phase != previous:
                pause = _FIRST_PAUSE_S
            elif time.monotonic() - started < _BLOCKED_S:
                # The service did not block: back off, but never past the caller's deadline.
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                time.sleep(pause if left is None else min(pause, left))
                pause = min(pause * 2, _MAX_PAUSE_S)

    def result_url(self, summary: JobSummary, name: str = "result") -> str:
        """The URL of a result of a completed job.

        Raises
        ------
        JobFailedError
            Raised if the job did not complete.
        UWSError
            Raised if it has no such result.
        """
        if summary.phase != "COMPLETED":
            if summary.phase in TERMINAL:
                raise JobFailedError(summary)
            msg = f"Job {summary.job_id} is {summary.phase}, not COMPLETED: its results are not final"
            raise UWSError(msg, url=summary.url)
        href = summary.results.get(name)
        if href is None:
            msg = f"Job {summary.job_id} has no result {name!r} (it has {', '.join(sorted(summary.results)) or 'none'})"
            raise UWSError(msg, url=summary.url)
        return href

    def result(self, summary: JobSummary, name: str = "result") -> bytes:
        """Download a result of a completed job into memory (see `download` for large ones).

        Raises
        ------
        JobFailedError
            Raised if the job did not complete.
        VocloudError
            Raised if it has no such result or the download fails.
        """
        return self.request("GET", self.result_url(summary, name)).content

    def download(
        self,
        summary: JobSummary,
        name: str,
        destination: Path,
        *,
        on_chunk: Callable[[int, int | None], None] | None = None,
    ) -> Path:
        """Stream a result into a file, written under a temporary name and renamed when complete.

        Parameters
        ----------
        summary, name
            The completed job and the result's id.
        destination
            The file to write.
        on_chunk
            Called with (bytes so far, total or None) after each chunk, for a progress bar.

        Raises
        ------
        JobFailedError
            Raised if the job did not complete.
        VocloudError
            Raised if it has no such result or the download fails.
        """
        response = self.request("GET", self.result_url(summary, name), stream=True)
        total = _length(response)
        partial = destination.with_name(f".{destination.name}.part")
        done = 0
        try:
            with response, partial.open("wb") as out:
                for chunk in _chunks(response):
                    out.write(chunk)
                    done += len(chunk)
                    if on_chunk is not None:
                        on_chunk(done, total)
            partial.replace(destination)
        finally:
            partial.unlink(missing_ok=True)
        return destination


def _chunks(response: requests.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_content(_CHUNK)
    except requests.RequestException as e:
        msg = f"The download of {response.url} broke off: {connection_reason(e)}"
        raise ServerUnreachableError(msg, url=response.url) from e


def _length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None
