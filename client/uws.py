"""A generic UWS 1.1 client: create, run, wait (blocking WAIT, never a request storm), fetch, delete.

Works with any UWS 1.1 service (vocloud's job lists, TAP ``/async``), not only
vocloud: it follows the 303s and parses the job documents of the standard.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urljoin

import requests
from lxml import etree

__all__ = ["JobFailedError", "JobSummary", "UWSClient", "UWSError"]

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK_NS = "http://www.w3.org/1999/xlink"
_NS = {"uws": UWS_NS}
TERMINAL = frozenset({"COMPLETED", "ERROR", "ABORTED", "ARCHIVED"})


class UWSError(Exception):
    """The service answered with an error or something that is not UWS."""


@dataclass(frozen=True)
class JobSummary:
    """What a job document says."""

    url: str
    job_id: str
    phase: str
    results: dict[str, str] = field(default_factory=dict)
    """Result id → URL."""
    error_type: str | None = None
    error_message: str | None = None
    progress: tuple[float, str] | None = None


class JobFailedError(UWSError):
    """A job ended in ERROR or ABORTED; the message is the service's errorSummary."""

    def __init__(self, summary: JobSummary) -> None:
        detail = summary.error_message or "no message"
        super().__init__(f"Job {summary.job_id} ended {summary.phase}: {detail}")
        self.summary = summary


def parse_job(body: bytes, url: str) -> JobSummary:
    """Parse a ``uws:job`` document.

    Raises
    ------
    UWSError
        Raised if the document is not a UWS job.
    """
    try:
        root = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as e:
        msg = f"{url} did not return XML: {e}"
        raise UWSError(msg) from e
    if root.tag != f"{{{UWS_NS}}}job":
        msg = f"{url} did not return a UWS job document (got {root.tag})"
        raise UWSError(msg)
    results = {r.get("id"): r.get(f"{{{XLINK_NS}}}href") for r in root.iterfind("uws:results/uws:result", _NS)}
    summary = root.find("uws:errorSummary", _NS)
    progress = root.find("uws:jobInfo/{*}progress", _NS)
    return JobSummary(
        url=url,
        job_id=root.findtext("uws:jobId", namespaces=_NS) or "",
        phase=root.findtext("uws:phase", namespaces=_NS) or "UNKNOWN",
        results={k: v for k, v in results.items() if k and v},
        error_type=None if summary is None else summary.get("type"),
        error_message=None if summary is None else summary.findtext("uws:message", namespaces=_NS),
        progress=None if progress is None else (float(progress.get("fraction", "0")), progress.text or ""),
    )


def _error_text(response: requests.Response) -> str:
    """The message of an error response: a DALI error VOTable's, else the text."""
    try:
        root = etree.fromstring(response.content)
        info = root.find(".//{*}INFO[@name='QUERY_STATUS']")
        if info is not None and info.text:
            return str(info.text).strip()
    except etree.XMLSyntaxError:
        pass
    return response.text.strip()[:500] or response.reason


Upload = tuple[str, tuple[str, IO[bytes]]]
"""A multipart part: (parameter name, (file name, open file))."""


class UWSClient:
    """Drive UWS jobs over HTTP.

    Parameters
    ----------
    session
        The requests session (credentials, proxies, retries) to use.
    timeout
        Seconds to wait for the service to start answering a request,
        besides any blocking WAIT.
    """

    def __init__(self, session: requests.Session | None = None, *, timeout: float = 60.0) -> None:
        self.session = session or requests.Session()
        self.timeout = timeout

    def _check(self, response: requests.Response) -> requests.Response:
        if response.status_code >= 400:
            msg = f"{response.request.method} {response.url}: HTTP {response.status_code}: {_error_text(response)}"
            raise UWSError(msg)
        return response

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
        UWSError
            Raised if the service refuses the job.
        """
        data = list(params) + ([("PHASE", "RUN")] if run else [])
        response = self._check(
            self.session.post(
                list_url, data=data, files=list(files) or None, allow_redirects=False, timeout=self.timeout
            )
        )
        location = response.headers.get("Location")
        if response.status_code not in (201, 302, 303) or not location:
            msg = f"POST {list_url} answered {response.status_code} without a job location"
            raise UWSError(msg)
        return urljoin(list_url, location)

    def job(self, url: str, *, wait: int | None = None, phase: str | None = None) -> JobSummary:
        """The job document; with ``wait``, block up to that many seconds for a phase change."""
        params: dict[str, Any] = {}
        if wait is not None:
            params["WAIT"] = wait
            if phase is not None:
                params["PHASE"] = phase
        timeout = self.timeout + (wait if wait and wait > 0 else 0)
        return parse_job(self._check(self.session.get(url, params=params, timeout=timeout)).content, url)

    def run(self, url: str) -> None:
        """Start a PENDING job."""
        self._check(self.session.post(f"{url}/phase", data={"PHASE": "RUN"}, timeout=self.timeout))

    def abort(self, url: str) -> None:
        """Abort a job."""
        self._check(self.session.post(f"{url}/phase", data={"PHASE": "ABORT"}, timeout=self.timeout))

    def delete(self, url: str) -> None:
        """Destroy a job."""
        self._check(self.session.delete(url, allow_redirects=False, timeout=self.timeout))

    def wait(self, url: str, *, timeout: float | None = None, block: int = 60) -> JobSummary:
        """Wait until the job reaches a terminal phase.

        Uses UWS 1.1 blocking ``WAIT`` with ``PHASE`` so no change is missed. A
        service that does not block (UWS 1.0) is polled with a growing pause
        (0.5 s up to 10 s), never in a tight loop.

        Raises
        ------
        TimeoutError
            Raised if ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        summary = self.job(url)
        pause = 0.5
        while summary.phase not in TERMINAL:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                msg = f"Job {summary.job_id} still {summary.phase} after {timeout} s"
                raise TimeoutError(msg)
            wait = block if remaining is None else max(1, min(block, int(remaining)))
            started = time.monotonic()
            previous = summary.phase
            summary = self.job(url, wait=wait, phase=previous)
            if summary.phase == previous and time.monotonic() - started < 0.5:
                time.sleep(pause)  # the service did not block: back off
                pause = min(pause * 2, 10.0)
        return summary

    def result(self, summary: JobSummary, name: str = "result") -> bytes:
        """Download a result of a finished job.

        Raises
        ------
        JobFailedError
            Raised if the job did not complete.
        UWSError
            Raised if it has no such result.
        """
        if summary.phase != "COMPLETED":
            raise JobFailedError(summary)
        href = summary.results.get(name)
        if href is None:
            msg = f"Job {summary.job_id} has no result {name!r} (it has {sorted(summary.results)})"
            raise UWSError(msg)
        return self._check(self.session.get(href, timeout=self.timeout)).content
