"""pyvo's ``AsyncTAPJob`` drives vocloud jobs, and our errors come out of pyvo readable.

The application runs in-process on a real port. pyvo uses ``requests`` (and
even its properties make HTTP calls), so each scenario is a plain function run
in a worker thread, never on the event loop that serves it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pyvo
import requests
from aiohttp.test_utils import TestServer

from tests.support.kinds import ALL
from tests.support.threads import in_thread
from tests.support.uws import dali_error_message
from vocloud.server.app import create_app
from vocloud.server.settings import Settings

USAGE_MESSAGE = "The spectra selection is empty; widen the constraints"
"""What the fail kind says with how=usage (tests.support.kinds)."""


@pytest.fixture
async def server(aiohttp_server, make_settings: Callable[..., Settings]) -> AsyncIterator[TestServer]:
    """The application listening on 127.0.0.1 on a free port."""
    yield await aiohttp_server(create_app(make_settings(), kinds=ALL))



def create_job(session: requests.Session, url: str, **form: Any) -> str:
    """Create a job as the landing page shows (POST, follow the 303); returns the job URL."""
    response = session.post(url, data={k: str(v) for k, v in form.items()}, timeout=10)
    assert response.status_code == 200, response.text
    assert [r.status_code for r in response.history] == [303]
    return response.url



async def test_pyvo_runs_waits_fetches_and_deletes_a_job(server: TestServer, session: requests.Session):
    """run -> wait -> COMPLETED -> result_uri/fetch_result -> delete, all through AsyncTAPJob."""
    list_url = str(server.make_url("/jobs/sleep"))

    def scenario() -> None:
        job_url = create_job(session, list_url, seconds=0.2, label="via pyvo")
        job = pyvo.dal.AsyncTAPJob(job_url, session=session)
        assert job.phase == "PENDING"
        assert job.job_id == job_url.rsplit("/", 1)[1]

        job.run()
        job.wait(timeout=30)

        assert job.phase == "COMPLETED"
        job.raise_if_error()
        assert job.result_uri == f"{job_url}/results/result"
        echoed = {str(row["name"]): str(row["value"]) for row in job.fetch_result().to_table()}
        assert echoed["label"] == "via pyvo"
        assert float(echoed["seconds"]) == pytest.approx(0.2)

        job.delete()

        gone = session.get(job_url, timeout=10)
        assert gone.status_code == 404
        assert "There is no job" in dali_error_message(gone.content)
        with pytest.raises(pyvo.dal.DALServiceError) as excinfo:
            pyvo.dal.AsyncTAPJob(job_url, session=session)
        assert excinfo.value.code == 404
        # pyvo streams job documents and leaves an error's response unread: close its socket.
        excinfo.value.cause.response.close()

    await in_thread(scenario)


async def test_pyvo_context_manager_deletes_the_job(server: TestServer, session: requests.Session):
    """Leaving ``with AsyncTAPJob(...)`` deletes the job on the server."""
    list_url = str(server.make_url("/jobs/sleep"))

    def scenario() -> None:
        job_url = create_job(session, list_url, seconds=0, PHASE="RUN")
        with pyvo.dal.AsyncTAPJob(job_url, session=session) as job:
            job.wait(timeout=30)
            assert job.phase == "COMPLETED"
        assert session.get(job_url, timeout=10).status_code == 404

    await in_thread(scenario)


async def test_failed_job_raises_dal_query_error_with_our_message(server: TestServer, session: requests.Session):
    """A job failing with a usage error surfaces in pyvo as a DALQueryError carrying its message."""
    list_url = str(server.make_url("/jobs/fail"))

    def scenario() -> None:
        job_url = create_job(session, list_url, how="usage", PHASE="RUN")
        job = pyvo.dal.AsyncTAPJob(job_url, session=session)
        job.wait(timeout=30)

        assert job.phase == "ERROR"
        with pytest.raises(pyvo.dal.DALQueryError, match=USAGE_MESSAGE):
            job.raise_if_error()
        with pytest.raises(pyvo.dal.DALQueryError, match=USAGE_MESSAGE):
            job.fetch_result()

    await in_thread(scenario)


async def test_bad_request_reaches_pyvo_with_our_message(server: TestServer, session: requests.Session):
    """A 400 answered to pyvo (RUN without a required parameter) carries our message in pyvo's error."""
    list_url = str(server.make_url("/jobs/fail"))

    def scenario() -> None:
        job = pyvo.dal.AsyncTAPJob(create_job(session, list_url), session=session)

        with pytest.raises(pyvo.dal.DALServiceError) as excinfo:
            job.run()

        assert excinfo.value.code == 400
        assert "Cannot run: missing required parameter(s): how" in str(excinfo.value)
        assert job.phase == "PENDING"

    await in_thread(scenario)


async def test_invalid_execution_duration_reaches_pyvo_with_our_message(server: TestServer, session: requests.Session):
    """Setting a negative execution duration through pyvo fails with our explanation."""
    list_url = str(server.make_url("/jobs/sleep"))

    def scenario() -> None:
        job = pyvo.dal.AsyncTAPJob(create_job(session, list_url, seconds=0), session=session)
        before = job.execution_duration

        with pytest.raises(pyvo.dal.DALServiceError) as excinfo:
            job.execution_duration = -5

        assert excinfo.value.code == 400
        assert "EXECUTIONDURATION must be 0 (as long as allowed) or a positive number" in str(excinfo.value)
        assert job.execution_duration == before

    await in_thread(scenario)


async def test_error_status_line_is_one_printable_ascii_line(server: TestServer, session: requests.Session):
    """The message repeated in the reason phrase cannot break the status line; the body keeps it whole."""
    url = str(server.make_url("/sp%C3%A9ctra%0D%0ASet-Cookie:%20x=1"))

    response = await in_thread(lambda: session.get(url, timeout=10))

    assert response.status_code == 404
    assert "Set-Cookie" not in response.headers
    assert response.reason.isascii()
    assert response.reason.isprintable()
    assert response.reason.startswith("Nothing at /sp?ctra Set-Cookie: x=1")
    message = dali_error_message(response.content)
    assert message.startswith("Nothing at /spéctra")
    assert message.endswith("Set-Cookie: x=1")
