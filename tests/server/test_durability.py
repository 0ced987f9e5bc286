"""The real ``vocloud serve`` process: jobs survive kill -9 and restarts, and a crashing job stays contained.

Each server runs in its own session (process group, see ``tests.support.live_server``)
so that the test can see every process it started, the forkserver and the pool's
workers included, and kill whatever is left when the test ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.live_server import LiveServer
from tests.support.uws import JobDoc, dali_error_message, parse_job, parse_job_list
from vocloud.server.kinds.spec import format_timestamp
from vocloud.server.uws.service import RESTART_MESSAGE

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="finding a server's processes reads /proc (Linux)"
)

START_TIMEOUT_S = 30.0
"""Longest a server may take to answer its first request."""


def _wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting until {what}"
        time.sleep(0.05)


@pytest.fixture
def start_server(tmp_path: Path, data_dir: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start real servers on the test's data directory, ready to answer; every one is stopped at the end."""
    started: list[LiveServer] = []

    def start(*, workers: int = 1) -> LiveServer:
        server = LiveServer.start(data_dir=data_dir, log_path=tmp_path / "server.log", workers=workers)
        started.append(server)
        server.wait_ready(timeout=START_TIMEOUT_S)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
        leftover = {pid for server in started for pid in server.group_members()}
        assert not leftover, f"processes of the test servers still running: {sorted(leftover)}"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A requests session, closed at the end."""
    with requests.Session() as session:
        yield session


# -- talking UWS over HTTP ------------------------------------------------------------


def create_job(http: requests.Session, server: LiveServer, kind: str, **form: Any) -> str:
    """Create a job; returns its path (stable across restarts on other ports)."""
    data = {k.upper() if k == "phase" else k: str(v) for k, v in form.items()}
    with http.post(server.url(f"/jobs/{kind}"), data=data, allow_redirects=False, timeout=10) as response:
        assert response.status_code == 303, response.text
        location = response.headers["Location"]
    return location[location.index("/jobs/") :]


def get_job(http: requests.Session, server: LiveServer, path: str, **query: Any) -> JobDoc:
    """Fetch and parse a job document."""
    params = {k.upper(): str(v) for k, v in query.items()}
    with http.get(server.url(path), params=params, timeout=30) as response:
        assert response.status_code == 200, response.text
        return parse_job(response.content)


def wait_for_phase(http: requests.Session, server: LiveServer, path: str, *phases: str, timeout: float = 30) -> JobDoc:
    """Block with WAIT until the job is in one of ``phases``."""
    deadline = time.monotonic() + timeout
    while True:
        doc = get_job(http, server, path, wait=5)
        if doc.phase in phases:
            return doc
        assert time.monotonic() < deadline, f"job {path} stuck in {doc.phase}"


def fetch(http: requests.Session, server: LiveServer, path: str) -> requests.Response:
    """GET a path, the body read in full."""
    with http.get(server.url(path), timeout=10) as response:
        _ = response.content
        return response


# -- the tests ------------------------------------------------------------------------


def test_kill_9_keeps_finished_jobs_fails_running_ones_and_requeues_queued_ones(start_server, http, data_dir):
    """After SIGKILL and a restart: COMPLETED intact, EXECUTING -> ERROR (transient), QUEUED runs."""
    server = start_server(workers=1)

    completed = create_job(http, server, "sleep", seconds=0.1, label="kept", phase="RUN")
    before = wait_for_phase(http, server, completed, "COMPLETED")
    result_before = fetch(http, server, f"{completed}/results/result")
    assert result_before.status_code == 200
    assert b"kept" in result_before.content

    executing = create_job(http, server, "sleep", seconds=30, label="interrupted", phase="RUN")
    wait_for_phase(http, server, executing, "EXECUTING")
    queued = create_job(http, server, "sleep", seconds=0.1, label="requeued", phase="RUN")
    assert get_job(http, server, queued).phase == "QUEUED"
    # Progress proves the worker is really inside the job when the server dies.
    _wait_until(
        lambda: get_job(http, server, executing).progress is not None, timeout=20, what="the job reports progress"
    )
    assert len(server.group_members()) > 1, "the server should have started worker processes"

    server.kill_server_only()
    # Nothing may go on running the dead server's job: its worker, the forkserver
    # and the resource tracker must all go, long before the 30 s job would end.
    _wait_until(lambda: not server.group_members(), timeout=10, what="the killed server's processes have exited")

    restarted = start_server(workers=1)

    failed = get_job(http, restarted, executing)
    assert failed.phase == "ERROR"
    assert failed.error_type == "transient"
    assert failed.error_message == RESTART_MESSAGE
    assert "result" not in failed.results
    error = fetch(http, restarted, f"{executing}/error")
    assert error.status_code == 200
    assert RESTART_MESSAGE in dali_error_message(error.content)

    rerun = wait_for_phase(http, restarted, queued, "COMPLETED", "ERROR")
    assert rerun.phase == "COMPLETED", rerun.error_message
    assert b"requeued" in fetch(http, restarted, f"{queued}/results/result").content

    after = get_job(http, restarted, completed)
    assert after.phase == "COMPLETED"
    assert after.parameters == before.parameters
    assert ("label", "kept", False) in after.parameters
    assert after.results.keys() == before.results.keys()
    assert after.results["result"]["size"] == before.results["result"]["size"]
    result_after = fetch(http, restarted, f"{completed}/results/result")
    assert result_after.status_code == 200
    assert result_after.content == result_before.content
    assert (data_dir / "jobs" / completed.rsplit("/", 1)[1] / "results" / "result").read_bytes() == (
        result_before.content
    )


def test_destruction_time_passed_while_stopped_is_honoured_at_restart(start_server, http, data_dir):
    """A job whose destruction time passes while the server is down is gone after restart, files too."""
    server = start_server()
    doomed = create_job(http, server, "sleep", seconds=0, label="doomed", phase="RUN")
    kept = create_job(http, server, "sleep", seconds=0, label="kept", phase="RUN")
    wait_for_phase(http, server, doomed, "COMPLETED")
    wait_for_phase(http, server, kept, "COMPLETED")
    doomed_dir = data_dir / "jobs" / doomed.rsplit("/", 1)[1]
    kept_dir = data_dir / "jobs" / kept.rsplit("/", 1)[1]
    assert (doomed_dir / "results" / "result").is_file()

    destruction = datetime.now(UTC) + timedelta(seconds=5)
    with http.post(
        server.url(f"{doomed}/destruction"),
        data={"DESTRUCTION": format_timestamp(destruction)},
        allow_redirects=False,
        timeout=10,
    ) as response:
        assert response.status_code == 303, response.text
    with http.get(server.url(f"{doomed}/destruction"), timeout=10) as response:
        assert response.text == format_timestamp(destruction)

    assert server.terminate() == 0, server.output()
    assert datetime.now(UTC) < destruction, "the server took too long to stop for this test to mean anything"
    assert doomed_dir.is_dir(), "the job was destroyed before its time"
    time.sleep(max((destruction - datetime.now(UTC)).total_seconds(), 0) + 0.5)

    restarted = start_server()
    gone = fetch(http, restarted, doomed)
    assert gone.status_code == 404
    assert doomed.rsplit("/", 1)[1] in dali_error_message(gone.content)
    _wait_until(lambda: not doomed_dir.exists(), timeout=10, what=f"{doomed_dir} is removed")
    listed = parse_job_list(fetch(http, restarted, "/jobs/sleep").content)
    assert [job_id for job_id, _ in listed] == [kept.rsplit("/", 1)[1]]
    assert get_job(http, restarted, kept).phase == "COMPLETED"
    assert kept_dir.is_dir()


def test_job_that_kills_its_worker_fails_alone(start_server, http):
    """A job that SIGKILLs its worker is ERROR; the server survives and runs the next jobs."""
    server = start_server(workers=1)

    crash = create_job(http, server, "fail", how="crash", phase="RUN")
    doc = wait_for_phase(http, server, crash, "COMPLETED", "ERROR")
    assert doc.phase == "ERROR"
    assert doc.error_type == "fatal"
    assert "worker process died" in (doc.error_message or "")
    assert server.process.poll() is None, server.output()

    # With one worker, these can only run if the pool replaced the dead worker.
    for label in ("after-crash-1", "after-crash-2"):
        path = create_job(http, server, "sleep", seconds=0, label=label, phase="RUN")
        after = wait_for_phase(http, server, path, "COMPLETED", "ERROR")
        assert after.phase == "COMPLETED", after.error_message
        assert label.encode() in fetch(http, server, f"{path}/results/result").content
    assert fetch(http, server, "/jobs/availability").status_code == 200
