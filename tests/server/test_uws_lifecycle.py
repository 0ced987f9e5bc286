"""Phase transitions of running jobs: queueing, abort, overrun, failures, deletion, destruction."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.uws import create, dali_error_message, get_job, parse_job_list, wait_for_phase


async def _post_phase(client, path, phase):
    return await client.post(f"{path}/phase", data={"PHASE": phase}, allow_redirects=False)


async def test_completed_job_has_times_results_and_progress(client):
    path = await create(client, "sleep", seconds=0.2, label="x")
    response = await _post_phase(client, path, "RUN")
    assert response.status == 303
    assert response.headers["Location"].endswith(path)
    doc = await wait_for_phase(client, path, "COMPLETED")
    start, end = doc.text("startTime"), doc.text("endTime")
    assert start is not None and end is not None and start <= end
    assert list(doc.results) == ["result"]
    assert doc.results["result"]["mime-type"] == "application/x-votable+xml"
    assert doc.results["result"]["href"].endswith(f"{path}/results/result")
    assert doc.progress == (1.0, "step 4 of 4")
    result = await client.get(f"{path}/results/result")
    assert result.headers["Content-Type"] == "application/x-votable+xml"
    body = await result.read()
    assert int(doc.results["result"]["size"]) == len(body)
    listing = await client.get(f"{path}/results")
    assert b'id="result"' in await listing.read()
    # A job that has completed quotes its end time; a new one now has a basis for an estimate.
    assert await (await client.get(f"{path}/quote")).text() == end
    fresh = await create(client, "sleep")
    assert await (await client.get(f"{fresh}/quote")).text() != ""


async def test_run_is_idempotent_while_running_and_forbidden_after(client):
    path = await create(client, "sleep", seconds=30, phase="RUN")
    await wait_for_phase(client, path, "EXECUTING")
    assert (await _post_phase(client, path, "RUN")).status == 303
    assert (await get_job(client, path)).phase == "EXECUTING"
    await _post_phase(client, path, "ABORT")
    response = await _post_phase(client, path, "RUN")
    assert response.status == 403
    assert "ABORTED" in dali_error_message(await response.read())


async def test_unknown_phase_value_is_400(client):
    path = await create(client, "sleep")
    response = await _post_phase(client, path, "SUSPEND")
    assert response.status == 400
    assert "RUN or ABORT" in dali_error_message(await response.read())
    response = await client.post(f"{path}/phase", data={}, allow_redirects=False)
    assert response.status == 400
    assert (await get_job(client, path)).phase == "PENDING"


async def test_abort_pending_job(client):
    path = await create(client, "sleep")
    assert (await _post_phase(client, path, "ABORT")).status == 303
    doc = await get_job(client, path)
    assert doc.phase == "ABORTED"
    assert doc.results == {}


async def test_abort_kills_the_running_worker_and_keeps_partial_results(make_client, data_dir):
    client = await make_client(workers=1)
    path = await create(client, "sleep", seconds=60, partial="true", phase="RUN")
    await wait_for_phase(client, path, "EXECUTING")
    partial = data_dir / "jobs" / path.rsplit("/", 1)[1] / "results" / "partial"
    for _ in range(200):  # the worker writes the partial file first thing
        if partial.exists():
            break
        await asyncio.sleep(0.025)
    assert (await _post_phase(client, path, "ABORT")).status == 303
    doc = await get_job(client, path)
    assert doc.phase == "ABORTED"
    assert "partial" in doc.results
    assert (await (await client.get(f"{path}/results/partial")).text()) == "written before the end\n"
    # The only worker is free again at once: a new job completes long before the aborted one would have.
    follower = await create(client, "sleep", seconds=0, phase="RUN")
    done = await wait_for_phase(client, follower, "COMPLETED", timeout=20)
    assert done.phase == "COMPLETED"
    assert (await get_job(client, path)).phase == "ABORTED"
    assert (await _post_phase(client, path, "ABORT")).status == 403


async def test_queued_jobs_wait_for_a_free_worker(make_client):
    client = await make_client(workers=1)
    first = await create(client, "sleep", seconds=60, phase="RUN")
    await wait_for_phase(client, first, "EXECUTING")
    second = await create(client, "sleep", seconds=0, phase="RUN")
    assert (await get_job(client, second)).phase == "QUEUED"
    queued = parse_job_list(await (await client.get("/jobs/sleep", params={"PHASE": "QUEUED"})).read())
    assert [i for i, _ in queued] == [second.rsplit("/", 1)[1]]
    await _post_phase(client, first, "ABORT")
    await wait_for_phase(client, second, "COMPLETED")


async def test_abort_queued_job_never_runs(make_client):
    client = await make_client(workers=1)
    first = await create(client, "sleep", seconds=60, phase="RUN")
    await wait_for_phase(client, first, "EXECUTING")
    second = await create(client, "sleep", seconds=0, phase="RUN")
    await _post_phase(client, second, "ABORT")
    await _post_phase(client, first, "ABORT")
    doc = await get_job(client, second)
    assert doc.phase == "ABORTED"
    assert doc.text("startTime") is None


async def test_execution_duration_overrun_kills_the_job(client):
    path = await create(client, "sleep", seconds=60, EXECUTIONDURATION=1, phase="RUN")
    doc = await wait_for_phase(client, path, "ERROR", timeout=20)
    assert doc.error_type == "fatal"
    assert "execution duration of 1 s" in doc.error_message
    started = datetime.fromisoformat(doc.text("startTime").replace("Z", "+00:00"))
    ended = datetime.fromisoformat(doc.text("endTime").replace("Z", "+00:00"))
    assert timedelta(seconds=0.9) < ended - started < timedelta(seconds=10)
    error = await client.get(f"{path}/error")
    assert "execution duration" in dali_error_message(await error.read())


@pytest.mark.parametrize(
    ("how", "etype", "fragment", "detail"),
    [
        ("usage", "fatal", "The spectra selection is empty; widen the constraints", False),
        ("transient", "transient", "The remote archive did not answer; try again later", False),
        ("bug", "fatal", "Internal error in the job: ZeroDivisionError", True),
        ("crash", "fatal", "worker process died", False),
    ],
)
async def test_job_failures_are_reported_in_error_summary(client, how, etype, fragment, detail):
    path = await create(client, "fail", how=how, phase="RUN")
    doc = await wait_for_phase(client, path, "ERROR")
    assert doc.error_type == etype
    assert fragment in doc.error_message
    summary = doc.root.find("{http://www.ivoa.net/xml/UWS/v1.0}errorSummary")
    assert summary.get("hasDetail") == ("true" if detail else "false")
    response = await client.get(f"{path}/error")
    assert response.status == 200
    assert response.content_type == "application/x-votable+xml"
    message = dali_error_message(await response.read())
    assert fragment in message
    assert ("Traceback" in message) == detail
    # The server survives every kind of failure and keeps running jobs.
    after = await create(client, "sleep", seconds=0, phase="RUN")
    assert (await wait_for_phase(client, after, "COMPLETED")).phase == "COMPLETED"


async def test_error_resource_of_a_job_without_error_is_404(client):
    path = await create(client, "sleep")
    response = await client.get(f"{path}/error")
    assert response.status == 404
    assert "no error" in dali_error_message(await response.read())


async def test_progress_is_visible_while_executing(client):
    path = await create(client, "sleep", seconds=3, phase="RUN")
    await wait_for_phase(client, path, "EXECUTING")
    seen = None
    for _ in range(60):
        doc = await get_job(client, path)
        if doc.progress is not None and doc.progress[0] < 1:
            seen = doc.progress
            break
        await asyncio.sleep(0.05)
    assert seen is not None, "no progress reported while executing"
    assert 0 < seen[0] < 1
    assert seen[1].startswith("step ")
    await _post_phase(client, path, "ABORT")


async def test_delete_removes_job_and_files(client, data_dir):
    path = await create(client, "sleep", seconds=0, phase="RUN")
    await wait_for_phase(client, path, "COMPLETED")
    job_id = path.rsplit("/", 1)[1]
    assert (data_dir / "jobs" / job_id / "results" / "result").is_file()
    response = await client.delete(path, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].endswith("/jobs/sleep")
    assert (await client.get(path)).status == 404
    assert not (data_dir / "jobs" / job_id).exists()
    assert parse_job_list(await (await client.get("/jobs/sleep")).read()) == []


async def test_post_action_delete_stops_a_running_job(client, data_dir):
    path = await create(client, "sleep", seconds=60, phase="RUN")
    await wait_for_phase(client, path, "EXECUTING")
    response = await client.post(path, data={"ACTION": "DELETE"}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].endswith("/jobs/sleep")
    assert (await client.get(path)).status == 404
    # Its worker slot is free again.
    follower = await create(client, "sleep", seconds=0, phase="RUN")
    await wait_for_phase(client, follower, "COMPLETED")


async def test_post_to_job_without_delete_action_is_400(client):
    path = await create(client, "sleep")
    for data in ({"ACTION": "EXPLODE"}, {}):
        response = await client.post(path, data=data, allow_redirects=False)
        assert response.status == 400
    assert (await get_job(client, path)).phase == "PENDING"


async def test_destruction_time_destroys_the_job(client, data_dir):
    path = await create(client, "sleep", seconds=0, phase="RUN")
    await wait_for_phase(client, path, "COMPLETED")
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await client.post(f"{path}/destruction", data={"DESTRUCTION": soon.isoformat()})
    job_id = path.rsplit("/", 1)[1]
    for _ in range(100):
        if (await client.get(path)).status == 404:
            break
        await asyncio.sleep(0.1)
    assert (await client.get(path)).status == 404
    assert not (data_dir / "jobs" / job_id).exists()


async def test_destruction_of_an_executing_job_stops_it(client):
    path = await create(client, "sleep", seconds=60, phase="RUN")
    await wait_for_phase(client, path, "EXECUTING")
    await client.post(f"{path}/destruction", data={"DESTRUCTION": "2000-01-01T00:00:00Z"})
    for _ in range(50):
        if (await client.get(path)).status == 404:
            break
        await asyncio.sleep(0.1)
    assert (await client.get(path)).status == 404
    follower = await create(client, "sleep", seconds=0, phase="RUN")
    await wait_for_phase(client, follower, "COMPLETED")


async def test_unknown_job_is_404_on_every_endpoint(client):
    base = "/jobs/sleep/doesnotexist"
    for method, suffix in [("GET", ""), ("GET", "/phase"), ("POST", "/phase"), ("GET", "/results"),
                           ("GET", "/results/result"), ("GET", "/error"), ("GET", "/quote"),
                           ("DELETE", ""), ("GET", "/parameters"), ("POST", "/parameters"),
                           ("GET", "/executionduration"), ("GET", "/destruction"), ("GET", "/owner")]:
        response = await client.request(method, base + suffix, data={"PHASE": "RUN"}, allow_redirects=False)
        assert response.status == 404, (method, suffix)
        assert "doesnotexist" in dali_error_message(await response.read())
    # A job is only found under its own kind's list.
    path = await create(client, "sleep")
    other = path.replace("/jobs/sleep/", "/jobs/fail/")
    assert (await client.get(other)).status == 404


async def test_missing_result_is_404(client):
    path = await create(client, "sleep", seconds=0, phase="RUN")
    await wait_for_phase(client, path, "COMPLETED")
    for name in ("nothing", "..", "%2e%2e%2fvocloud.sqlite"):
        response = await client.get(f"{path}/results/{name}")
        assert response.status == 404
