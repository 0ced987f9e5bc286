"""Worker processes share the machine's cores out among themselves instead of each taking them all."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from vocloud.server.app import create_app
from vocloud.server.executor.local import threads_per_worker
from vocloud.server.kinds import JobContext, JobKind, ResultSpec
from vocloud.server.settings import Settings

THREADS_KIND = JobKind(
    name="threads",
    title="Report the worker's thread settings",
    description="Test kind: writes the thread variables its worker process sees.",
    runner="tests.server.test_worker_threads:report_threads",
    results=(ResultSpec(name="result", mime_type="application/json", description="The variables"),),
)

NAMES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def report_threads(params: dict[str, Any], context: JobContext) -> None:
    """Runner of THREADS_KIND (in a worker process)."""
    values = {name: os.environ.get(name) for name in NAMES}
    context.result_path("result").write_text(json.dumps(values), encoding="utf-8")


def test_threads_are_the_cpus_shared_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(8)))
    assert threads_per_worker(1) == 8
    assert threads_per_worker(2) == 4
    assert threads_per_worker(3) == 2
    assert threads_per_worker(16) == 1


async def _run_threads_job(client: TestClient[Any, Any]) -> dict[str, str | None]:
    created = await client.post("/jobs/threads", data={"PHASE": "RUN"}, allow_redirects=False)
    assert created.status == 303, await created.text()
    job = URL(created.headers["Location"]).path
    phase = "QUEUED"
    for _ in range(10):
        # UWS 1.1 blocking: returns when the phase is no longer the one named.
        await client.get(job, params={"WAIT": "30", "PHASE": phase})
        phase = await (await client.get(f"{job}/phase")).text()
        if phase not in ("QUEUED", "EXECUTING"):
            break
    assert phase == "COMPLETED"
    values: dict[str, str | None] = json.loads(await (await client.get(f"{job}/results/result")).text())
    return values


async def test_a_job_sees_its_share_of_threads(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(make_settings(workers=2), kinds=[THREADS_KIND]))

    values = await _run_threads_job(client)

    # An operator's own setting (in the environment the workers inherit) wins over the share.
    share = str(threads_per_worker(2))
    assert values == {name: os.environ.get(name, share) for name in NAMES}
