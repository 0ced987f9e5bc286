"""The generic UWS client against a real vocloud server and against a UWS 1.0-style stub that never blocks.

The client is blocking (requests), so the servers run on their own event loop
in a background thread (`serve_app`) and the tests are plain functions. The
stub shows what vocloud cannot: a service that ignores ``WAIT`` gets a handful
of requests with growing pauses, not a storm; requests are counted at the
server for that, and on the client (a response hook) for the blocking case.
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import unused_port
from astropy.io.votable import parse_single_table

from tests.support.app_thread import count_requests, serve_app, vocloud_app
from vocloud.client.errors import (
    EXIT_JOB_FAILED,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    ClientTimeoutError,
    ServerUnreachableError,
    VocloudError,
)
from vocloud.client.uws import JobFailedError, UWSClient, UWSError


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A vocloud server with the test job kinds, shared by the module."""
    with serve_app(vocloud_app(tmp_path_factory.mktemp("uws") / "data")) as base:
        yield base


@pytest.fixture
def uws() -> Iterator[UWSClient]:
    with requests.Session() as http:
        yield UWSClient(http, timeout=10)


# -- against vocloud -------------------------------------------------------------------------------


def test_job_lifecycle(server: str, uws: UWSClient, tmp_path: Path) -> None:
    jobs = f"{server}/jobs/sleep"
    url = uws.create(jobs, [("seconds", "0.1"), ("label", "lifecycle"), ("band", "1e-7"), ("band", "2e-7")])
    assert url.startswith(f"{jobs}/")
    pending = uws.job(url)
    assert pending.phase == "PENDING"
    assert ("label", "lifecycle") in pending.parameters
    assert [float(v) for k, v in pending.parameters if k == "band"] == [1e-7, 2e-7]
    listed = {ref.job_id: ref for ref in uws.jobs(jobs, phases=["PENDING"])}
    assert listed[pending.job_id].url == url
    assert listed[pending.job_id].phase == "PENDING"

    uws.run(url)
    done = uws.wait(url, timeout=30)
    assert done.phase == "COMPLETED"
    assert done.start_time is not None and done.end_time is not None
    assert pending.job_id not in {ref.job_id for ref in uws.jobs(jobs, phases=["PENDING"])}

    echoed = parse_single_table(io.BytesIO(uws.result(done))).to_table()
    assert dict(zip(echoed["name"], echoed["value"], strict=True))["label"] == "lifecycle"
    saved = uws.download(done, "result", tmp_path / "result.xml")
    assert saved.read_bytes() == uws.result(done)
    assert list(tmp_path.iterdir()) == [saved], "no partial file is left behind"

    uws.delete(url)
    with pytest.raises(VocloudError) as gone:
        uws.job(url)
    assert gone.value.status == 404
    assert "no job" in str(gone.value).lower()


def test_blocking_wait_makes_one_request_per_phase_change(server: str, uws: UWSClient) -> None:
    url = uws.create(f"{server}/jobs/sleep", [("seconds", "1.5")], run=True)
    seen = count_requests(uws.session)
    started = time.monotonic()
    summary = uws.wait(url, timeout=30)
    elapsed = time.monotonic() - started
    assert summary.phase == "COMPLETED"
    # One read, then one blocking WAIT per change (QUEUED → EXECUTING → COMPLETED at most).
    assert len(seen) <= 4, [r.url for r in seen]
    assert all("WAIT=" in r.url for r in seen[1:])
    assert elapsed < 5, "the wait ends with the job, not on a polling period"


def test_error_summary_becomes_job_failed_error(server: str, uws: UWSClient) -> None:
    url = uws.create(f"{server}/jobs/fail", [("how", "usage")], run=True)
    summary = uws.wait(url, timeout=30)
    assert summary.phase == "ERROR"
    assert summary.error_type == "fatal"
    with pytest.raises(JobFailedError) as failed:
        uws.result(summary)
    # The service's own message, from the errorSummary of the job document.
    assert summary.error_message
    assert summary.error_message in str(failed.value)
    assert "selection is empty" in summary.error_message
    assert failed.value.exit_code == EXIT_JOB_FAILED
    assert failed.value.summary.job_id == summary.job_id


def test_client_side_timeout_leaves_the_job_running(server: str, uws: UWSClient) -> None:
    url = uws.create(f"{server}/jobs/sleep", [("seconds", "30")], run=True)
    try:
        started = time.monotonic()
        with pytest.raises(ClientTimeoutError) as late:
            uws.wait(url, timeout=1.5)
        assert 1.4 < time.monotonic() - started < 4
        assert isinstance(late.value, TimeoutError)
        assert late.value.exit_code == EXIT_TIMEOUT
        assert uws.job(url).phase in {"QUEUED", "EXECUTING"}
        uws.abort(url)
        assert uws.wait(url, timeout=30).phase == "ABORTED"
    finally:
        uws.delete(url)


def test_refusals_carry_the_server_message(server: str, uws: UWSClient) -> None:
    with pytest.raises(VocloudError) as refused:
        uws.create(f"{server}/jobs/sleep", [("count", "99")])
    assert refused.value.status == 400
    assert "count" in str(refused.value)
    assert "<" not in str(refused.value), "the message, not the error document"
    with pytest.raises(UWSError, match="has no result 'nothing'"):
        uws.result(uws.wait(uws.create(f"{server}/jobs/sleep", run=True), timeout=30), "nothing")


def test_an_answer_that_is_not_uws_is_refused(server: str, uws: UWSClient) -> None:
    with pytest.raises(UWSError, match="UWS job document"):
        uws.job(f"{server}/jobs/availability")


def test_unreachable_service() -> None:
    with requests.Session() as http:
        client = UWSClient(http, timeout=5)
        with pytest.raises(ServerUnreachableError) as down:
            client.jobs(f"http://127.0.0.1:{unused_port()}/jobs/sleep")
    assert down.value.exit_code == EXIT_UNREACHABLE
    assert isinstance(down.value, ConnectionError)
    assert "Connection refused" in str(down.value)


# -- against a service that never blocks --------------------------------------------------------

_JOB = """<?xml version="1.0" encoding="UTF-8"?>
<uws:job xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" xmlns:xlink="http://www.w3.org/1999/xlink">
  <uws:jobId>j1</uws:jobId><uws:phase>{phase}</uws:phase>
  <uws:results>{results}</uws:results>
</uws:job>"""

_JOBS = """<?xml version="1.0" encoding="UTF-8"?>
<uws:jobs xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" xmlns:xlink="http://www.w3.org/1999/xlink">
  <uws:jobref id="j1" xlink:href="async/j1"><uws:phase>{phase}</uws:phase></uws:jobref>
</uws:jobs>"""


class NonBlockingStub:
    """A UWS 1.0-style service: answers ``WAIT`` at once; its one job completes ``run_s`` after it is started."""

    def __init__(self, run_s: float) -> None:
        self.run_s = run_s
        self.started: float | None = None
        self.reads: list[tuple[float, dict[str, str]]] = []

    def phase(self) -> str:
        if self.started is None:
            return "PENDING"
        return "COMPLETED" if time.monotonic() - self.started >= self.run_s else "EXECUTING"

    def app(self, base: str) -> web.Application:
        async def create(request: web.Request) -> web.Response:
            form = await request.post()
            if form.get("PHASE") == "RUN":
                self.started = time.monotonic()
            raise web.HTTPSeeOther("/tap/async/j1")  # relative, as some services answer

        async def job(request: web.Request) -> web.Response:
            self.reads.append((time.monotonic(), dict(request.query)))
            phase = self.phase()
            results = (
                '<uws:result id="result" xlink:href="/tap/async/j1/results/result"/>' if phase == "COMPLETED" else ""
            )
            return web.Response(text=_JOB.format(phase=phase, results=results), content_type="text/xml")

        async def listing(request: web.Request) -> web.Response:
            return web.Response(text=_JOBS.format(phase=self.phase()), content_type="text/xml")

        async def result(request: web.Request) -> web.Response:
            return web.Response(text="done\n")

        app = web.Application()
        app.router.add_post("/tap/async", create)
        app.router.add_get("/tap/async", listing)
        app.router.add_get("/tap/async/j1", job)
        app.router.add_get("/tap/async/j1/results/result", result)
        return app


def test_a_service_that_ignores_wait_is_polled_with_backoff_not_stormed() -> None:
    stub = NonBlockingStub(run_s=3.2)
    with serve_app(stub.app) as base, requests.Session() as http:
        client = UWSClient(http, timeout=5)
        url = client.create(f"{base}/tap/async", run=True)
        assert url == f"{base}/tap/async/j1"
        summary = client.wait(url, timeout=30)
        assert summary.phase == "COMPLETED"
        assert client.result(summary) == b"done\n"
        assert [ref.url for ref in client.jobs(f"{base}/tap/async")] == [url]

    times = [t for t, _ in stub.reads]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Pauses of 0.5, 1, 2 s... cover the 3.2 s run in about five reads; a storm would be thousands.
    assert 3 <= len(stub.reads) <= 7, gaps
    assert all(gap >= 0.4 for gap in gaps[1:]), gaps
    assert gaps[-1] > gaps[1], "the pause grows"
    assert all("WAIT" in query for _, query in stub.reads[1:]), "it asked to block first"


def test_timeout_against_a_service_that_ignores_wait_is_kept() -> None:
    stub = NonBlockingStub(run_s=60)
    with serve_app(stub.app) as base, requests.Session() as http:
        client = UWSClient(http, timeout=5)
        url = client.create(f"{base}/tap/async", run=True)
        started = time.monotonic()
        with pytest.raises(ClientTimeoutError, match="still EXECUTING"):
            client.wait(url, timeout=2)
        assert time.monotonic() - started < 3, "the backoff pause never runs past the deadline"
    assert len(stub.reads) <= 5
