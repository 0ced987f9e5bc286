"""The label journal: written before sending, sent once with its key, kept on network errors, refusals reported.

The unit tests drive `Journal` with a fake poster; the end-to-end tests kill a
real ``vocloud label`` process (SIGKILL) between journalling and sending, and
while its post is in flight, against the real server (in-process, iterations
by the fake runner), and check the server's label history has every label once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.server.sessions.support import DEMO_COUNT
from tests.support.fake_iteration import FakeIterationExecutor
from tests.support.kinds import ALL
from tests.support.labelling import (
    client_environment,
    label_command,
    label_history,
    labelled_session,
    read_until,
    run_to_end,
)
from vocloud.client.errors import ServerUnreachableError, VocloudError
from vocloud.client.journal import BatchState, Journal, journal_path, session_url
from vocloud.client.labels import LabelRecord
from vocloud.client.samp import SampClient, private_hub
from vocloud.server.app import create_app
from vocloud.server.settings import Settings

pytestmark = pytest.mark.timeout(120)

SERVER = "http://vocloud.example:8080"
SESSION = session_url(SERVER, "s1")


class FakePoster:
    """Answers posts like the server would, or fails as told; records every post with its key."""

    def __init__(self, url: str = SERVER) -> None:
        self.url = url
        self.posts: list[tuple[str, tuple[LabelRecord, ...], str | None]] = []
        self.failures: list[BaseException] = []

    def post_labels(
        self, session_id: str, records: Sequence[LabelRecord], *, key: str | None = None
    ) -> Mapping[str, Any]:
        self.posts.append((session_id, tuple(records), key))
        if self.failures:
            raise self.failures.pop(0)
        return {"accepted": len(records), "labels": len(self.posts), "next_iteration": None, "session": SESSION}


def _records(*pairs: str) -> list[LabelRecord]:
    return [LabelRecord(id=f"ivo://demo?{p}", label="emission", labeller="Ann") for p in pairs]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "state" / "journal.sqlite") as opened:
        yield opened


def test_the_journal_path_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """VOCLOUD_JOURNAL first, then XDG_STATE_HOME, then ~/.local/state."""
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert journal_path() == tmp_path / ".local" / "state" / "vocloud" / "journal.sqlite"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert journal_path() == tmp_path / "xdg" / "vocloud" / "journal.sqlite"
    monkeypatch.setenv("VOCLOUD_JOURNAL", str(tmp_path / "mine.sqlite"))
    assert journal_path() == tmp_path / "mine.sqlite"


def test_a_batch_is_sent_once_with_its_key_and_survives_reopening(journal: Journal) -> None:
    """Journalled batches are sent oldest first, each with its own key, and marked sent; a reopened file agrees."""
    first = journal.record(SESSION, _records("a", "b"))
    second = journal.record(SESSION, _records("c"))
    poster = FakePoster()

    report = journal.flush(poster)

    assert [key for _, _, key in poster.posts] == [first, second]
    assert [(sid, [r.id for r in recs]) for sid, recs, _ in poster.posts] == [
        ("s1", ["ivo://demo?a", "ivo://demo?b"]),
        ("s1", ["ivo://demo?c"]),
    ]
    assert report.labels_sent == 3 and not report.left and not report.refused
    assert journal.flush(poster).sent == []
    assert len(poster.posts) == 2
    with Journal(journal.path) as again:
        states = {b.key: (b.state, b.answer["accepted"] if b.answer else None) for b in again.batches()}
    assert states == {first: (BatchState.SENT, 2), second: (BatchState.SENT, 1)}


@pytest.mark.parametrize(
    "failure",
    [
        ServerUnreachableError("connection refused"),
        requests.ConnectionError("connection reset"),
        VocloudError("Service unavailable", status=503),
        VocloudError("A label post with this key is still being handled", status=409),
        VocloudError("Too many requests", status=429),
        VocloudError("Credentials needed", status=401),
    ],
)
def test_errors_that_retrying_cures_leave_the_batches_pending(journal: Journal, failure: BaseException) -> None:
    """Nothing is lost: the failing batch and the later ones stay pending, in order, and go out next time."""
    first = journal.record(SESSION, _records("a"))
    second = journal.record(SESSION, _records("b"))
    poster = FakePoster()
    poster.failures.append(failure)

    report = journal.flush(poster)

    assert [b.key for b in report.left] == [first, second] and not report.sent
    assert report.error is not None
    assert len(poster.posts) == 1  # the next batch was not tried against a failing server
    assert {b.state for b in journal.batches()} == {BatchState.PENDING}
    retry = journal.flush(poster)
    assert [b.key for b in retry.sent] == [first, second]
    assert [key for _, _, key in poster.posts] == [first, first, second]


def test_a_refusal_is_kept_with_the_message_and_not_retried(journal: Journal) -> None:
    """A 4xx that retrying cannot cure marks the batch refused; later batches still go out."""
    bad = journal.record(SESSION, _records("a"))
    good = journal.record(SESSION, _records("b"))
    poster = FakePoster()
    poster.failures.append(VocloudError("Labels refused, nothing was stored: 1 label ('nova')", status=400))

    report = journal.flush(poster)

    assert [b.key for b in report.refused] == [bad] and [b.key for b in report.sent] == [good]
    assert "nova" in (report.refused[0].message or "")
    assert journal.flush(poster).sent == [] and len(poster.posts) == 2
    refused = journal.batches(states=(BatchState.REFUSED,))
    assert [b.key for b in refused] == [bad] and "nova" in (refused[0].message or "")
    assert journal.labelled(SESSION) == {"ivo://demo?b": "emission"}


def test_only_the_clients_server_is_flushed(journal: Journal) -> None:
    """Labels for another server wait for a client of that server."""
    journal.record(session_url("http://other:1", "s1"), _records("a"))
    mine = journal.record(SESSION, _records("b"))
    poster = FakePoster()
    assert [b.key for b in journal.flush(poster).sent] == [mine]
    assert len(journal.batches(states=(BatchState.PENDING,))) == 1


def test_open_batches_take_undo_and_are_not_sent_until_sealed(journal: Journal) -> None:
    """A label in the open batch can be taken back; once sealed it cannot, and only then is it sent."""
    first = journal.add(SESSION, _records("a")[0])
    second = journal.add(SESSION, _records("b")[0])
    assert first.key == second.key
    poster = FakePoster()
    assert journal.flush(poster).sent == [] and poster.posts == []
    assert journal.labelled(SESSION) == {"ivo://demo?a": "emission", "ivo://demo?b": "emission"}

    assert journal.remove(second)
    assert journal.labelled(SESSION) == {"ivo://demo?a": "emission"}
    assert journal.seal(SESSION) == 1
    assert not journal.remove(first)
    assert [[r.id for r in b.records] for b in journal.flush(poster).sent] == [["ivo://demo?a"]]
    # Undoing the only label of an open batch removes the batch.
    third = journal.add(SESSION, _records("c")[0])
    assert third.key != first.key
    assert journal.remove(third)
    assert journal.batches(states=(BatchState.OPEN,)) == []


def test_open_batches_of_dead_processes_are_sealed_not_those_of_live_ones(journal: Journal) -> None:
    """A crashed labeller's open batch is delivered by the next run; a running labeller's is left to it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid, name in ((dead.pid, "dead"), (os.getppid(), "alive")):
        journal._db.execute(
            "INSERT INTO batches (key, session_url, state, pid, created) VALUES (?, ?, 'open', ?, 0)",
            (name, SESSION, pid),
        )
        journal._db.execute("INSERT INTO labels (key, id, label) VALUES (?, ?, 'emission')", (name, name))
    assert journal.seal(SESSION) == 1
    assert {b.key: b.state for b in journal.batches()} == {"dead": BatchState.PENDING, "alive": BatchState.OPEN}


# -- against the real server, killing the real client --------------------------------------


Middleware = Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[Any]]


@pytest.fixture
def start_server(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], make_settings: Callable[..., Settings]
) -> Callable[..., Awaitable[TestClient[Any, Any]]]:
    """The real app on a loopback port (demo archive, fake iterations), with optional extra middleware."""

    async def factory(*middlewares: Middleware) -> TestClient[Any, Any]:
        app = create_app(make_settings(demo_spectra=DEMO_COUNT), kinds=ALL, executor=FakeIterationExecutor(workers=1))
        app.middlewares.extend(web.middleware(m) for m in middlewares)
        return await aiohttp_client(app)

    return factory


async def test_a_client_killed_after_journalling_delivers_every_label_once_when_restarted(start_server, tmp_path):
    """SIGKILL after three labels were journalled (none sent): the next run sends them, once, and skips them."""
    server = await start_server()
    base, session_id, oracle = await labelled_session(server, auto_advance="false")
    env = client_environment(tmp_path / "journal.sqlite")
    classes = ["absorption", "emission", "double-peak"]

    process = await asyncio.create_subprocess_exec(
        *label_command(base, session_id, "--batch", "10"),
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert process.stdin is not None
        process.stdin.write(b"1\n2\n1\n")
        await process.stdin.drain()
        await read_until(process, "(journalled)", 3)
        process.send_signal(signal.SIGKILL)
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == -signal.SIGKILL
    assert await label_history(server, session_id) == []  # journalled, not sent

    # The restart also tries SAMP: with no hub running it says so and labels on.
    no_hub = {**env, "SAMP_HUB": f"std-lockurl:{(tmp_path / 'no-such-lockfile').as_uri()}", "HOME": str(tmp_path)}
    status, output = await run_to_end(label_command(base, session_id, samp=True), no_hub, "q\n")

    assert status == 0, output
    assert "no SAMP hub, candidates are shown here only" in output
    intended = [(oracle[0], classes[0]), (oracle[1], classes[1]), (oracle[2], classes[0])]
    assert await label_history(server, session_id) == intended
    assert "sent 3 label(s)" in output and "3 candidate(s) already labelled are left out" in output
    assert f"[1/{len(oracle) - 3}] {oracle[3]}" in output
    # A third run sends nothing again.
    status, output = await run_to_end(label_command(base, session_id, "--send-only"), env, "")
    assert status == 0 and "sent" not in output
    assert await label_history(server, session_id) == intended


async def test_a_post_whose_answer_was_lost_is_not_applied_twice(start_server, tmp_path):
    """SIGKILL while the post is in flight (the server applied it): the re-send with its key is replayed."""
    applied = asyncio.Event()
    release = asyncio.Event()
    replays: list[str] = []

    async def hold_label_posts(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "POST" and request.path.endswith("/labels"):
            if response.headers.get("Idempotent-Replayed") == "true":
                replays.append(request.headers.get("Idempotency-Key", ""))
            elif not applied.is_set():
                applied.set()
                # The client dies before this answer reaches it.
                async with asyncio.timeout(60):
                    await release.wait()
        return response

    server = await start_server(hold_label_posts)
    try:
        base, session_id, oracle = await labelled_session(server, auto_advance="false")
        env = client_environment(tmp_path / "journal.sqlite")
        process = await asyncio.create_subprocess_exec(
            *label_command(base, session_id, "--batch", "2"),
            env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert process.stdin is not None
            process.stdin.write(b"2\n3\n")
            await process.stdin.drain()
            async with asyncio.timeout(60):
                await applied.wait()
            process.send_signal(signal.SIGKILL)
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        intended = [(oracle[0], "emission"), (oracle[1], "double-peak")]
        assert await label_history(server, session_id) == intended
        with Journal(tmp_path / "journal.sqlite") as journal:
            (batch,) = journal.batches()
        assert batch.state == BatchState.PENDING  # the client never saw the answer

        status, output = await run_to_end(label_command(base, session_id, "--send-only"), env, "")

        assert status == 0, output
        assert replays == [batch.key]
        assert await label_history(server, session_id) == intended
        with Journal(tmp_path / "journal.sqlite") as journal:
            assert [b.state for b in journal.batches()] == [BatchState.SENT]
    finally:
        release.set()


async def test_the_labeller_sends_the_batch_and_each_candidate_over_samp(start_server, tmp_path):
    """With a hub (SAMP_HUB), the oracle batch goes to table viewers and the shown candidate's row is highlighted."""
    server = await start_server()
    base, session_id, oracle = await labelled_session(server, auto_advance="false")
    loads: list[tuple[str, str | None]] = []
    highlights: list[tuple[str | None, int]] = []
    with private_hub(tmp_path / "samp-lock") as hub, SampClient(name="recorder") as recorder:
        recorder.on_table_load(lambda url, table_id, name: loads.append((url, table_id)))
        recorder.on_highlight(lambda table_id, url, row: highlights.append((table_id, row)))
        recorder.connect(hub.samp_hub)
        env = {**client_environment(tmp_path / "journal.sqlite"), "SAMP_HUB": hub.samp_hub}

        status, output = await run_to_end(label_command(base, session_id, samp=True), env, "1\nq\n")

    assert status == 0, output
    table_id = f"vocloud-{session_id}-1"
    assert [(url.endswith("/results/oracle"), tid) for url, tid in loads] == [(True, table_id)]
    assert highlights[:2] == [(table_id, 0), (table_id, 1)]
    assert await label_history(server, session_id) == [(oracle[0], "absorption")]
