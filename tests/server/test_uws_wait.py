"""Blocking WAIT (UWS 1.1 section 2.2.1.2): woken by phase changes, capped, never blocking needlessly."""

import asyncio
import statistics
import time
from datetime import datetime

import pytest

from tests.support.uws import create, dali_error_message, get_job, wait_for_phase


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_wait_returns_within_50_ms_of_the_phase_change(client):
    """The WAIT is woken by an event, not by a polling loop (median of five jobs)."""
    delays = []
    for _ in range(5):
        path = await create(client, "sleep", seconds=0.3, phase="RUN")
        await wait_for_phase(client, path, "EXECUTING")
        doc = await get_job(client, path, wait=30, phase="EXECUTING")
        arrived = time.time()
        assert doc.phase == "COMPLETED"
        delays.append(arrived - _epoch(doc.text("endTime")))
    assert statistics.median(delays) < 0.05, delays


async def test_wait_returns_at_the_cap_when_nothing_changes(make_client):
    client = await make_client(max_wait=1.0)
    path = await create(client, "sleep")
    for wait in (-1, 30):
        started = time.monotonic()
        doc = await get_job(client, path, wait=wait)
        elapsed = time.monotonic() - started
        assert doc.phase == "PENDING"
        assert 0.9 <= elapsed < 3, elapsed


async def test_wait_returns_after_the_requested_time(client):
    path = await create(client, "sleep")
    started = time.monotonic()
    await get_job(client, path, wait=1)
    assert 0.9 <= time.monotonic() - started < 3


async def test_wait_on_a_finished_job_returns_at_once(client):
    path = await create(client, "sleep", seconds=0, phase="RUN")
    await wait_for_phase(client, path, "COMPLETED")
    started = time.monotonic()
    doc = await get_job(client, path, wait=30)
    assert doc.phase == "COMPLETED"
    assert time.monotonic() - started < 0.5


async def test_wait_with_another_phase_returns_at_once(client):
    path = await create(client, "sleep")
    started = time.monotonic()
    doc = await get_job(client, path, wait=30, phase="EXECUTING")
    assert doc.phase == "PENDING"
    assert time.monotonic() - started < 0.5


async def test_wait_wakes_on_abort_and_on_delete(client):
    path = await create(client, "sleep")
    waiting = asyncio.ensure_future(get_job(client, path, wait=30))
    await asyncio.sleep(0.1)
    await client.post(f"{path}/phase", data={"PHASE": "ABORT"})
    doc = await asyncio.wait_for(waiting, 2)
    assert doc.phase == "ABORTED"

    other = await create(client, "sleep")
    waiting = asyncio.ensure_future(client.get(other, params={"WAIT": "30"}))
    await asyncio.sleep(0.1)
    await client.delete(other)
    response = await asyncio.wait_for(waiting, 2)
    assert response.status == 404


async def test_many_waiters_are_all_woken(client):
    path = await create(client, "sleep", seconds=0.5)
    waiters = [asyncio.ensure_future(get_job(client, path, wait=30, phase="PENDING")) for _ in range(50)]
    await asyncio.sleep(0.2)
    await client.post(f"{path}/phase", data={"PHASE": "RUN"})
    docs = await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert {d.phase for d in docs} <= {"QUEUED", "EXECUTING"}


@pytest.mark.parametrize(
    ("query", "fragment"),
    [({"WAIT": "soon"}, "WAIT"), ({"WAIT": "-7"}, "WAIT"), ({"WAIT": "5", "PHASE": "NAPPING"}, "PHASE")],
)
async def test_bad_wait_parameters_are_400(client, query, fragment):
    path = await create(client, "sleep")
    response = await client.get(path, params=query)
    assert response.status == 400
    assert fragment in dali_error_message(await response.read())


async def test_shutdown_answers_blocked_waits_at_once(make_settings, aiohttp_server):
    """Stopping the server does not wait for long WAITs to run out."""
    import aiohttp

    from tests.support.kinds import ALL
    from vocloud.server.app import create_app

    server = await aiohttp_server(create_app(make_settings(), kinds=ALL))
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/jobs/sleep"), allow_redirects=False) as created:
            job_url = created.headers["Location"]
        waiting = asyncio.ensure_future(session.get(job_url, params={"WAIT": "60"}))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await server.close()
        response = await asyncio.wait_for(waiting, 10)
        assert time.monotonic() - started < 5
        assert response.status == 200
        assert b"PENDING" in await response.read()
