"""`VocloudClient` against real servers: capabilities, job kinds, HTTP Basic on challenge, and sessions.

Sessions run on the fake iteration executor (``tests/support/fake_iteration.py``:
no training, deterministic oracle batches), so a whole active-learning loop
takes about a second once the worker pool is up. The demo archive's
``labels.csv`` is the simulated expert.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import unused_port

from tests.support.app_thread import count_requests, serve_app, vocloud_app
from tests.support.fake_iteration import (
    FAIL_EPOCHS,
    FAIL_MESSAGE,
    HOLD_EPOCHS,
    HOLD_FILE,
    FakeIterationExecutor,
)
from vocloud.client.errors import (
    EXIT_JOB_FAILED,
    AuthenticationError,
    ClientTimeoutError,
    ServerUnreachableError,
    VocloudError,
)
from vocloud.client.labels import LabelRecord
from vocloud.client.service import IterationFailedError, VocloudClient
from vocloud.client.uws import UWSError
from vocloud.server.auth import UserFile

CLASSES = ("absorption", "emission", "double-peak")
DEMO_COUNT = 30
PASSWORDS = {"alice": "alice-secret-1"}
SMALL = {"batch_size": 5, "precision_sample": 3}
"""Session settings of these tests: five spectra a batch, three in the precision sample."""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service") / "data"


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[str]:
    """A server with a 30-spectra demo archive whose iterations run on the fake executor."""
    app = vocloud_app(data_dir, executor=lambda: FakeIterationExecutor(workers=2), demo_spectra=DEMO_COUNT)
    with serve_app(app) as base:
        yield base


@pytest.fixture(scope="module")
def basic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with ``--auth basic`` and the user alice."""
    data = tmp_path_factory.mktemp("basic") / "data"
    users = UserFile(data / "users.json")
    for name, password in PASSWORDS.items():
        users.add(name, password)
    with serve_app(vocloud_app(data, auth="basic")) as base:
        yield base


@pytest.fixture(scope="module")
def truth(server: str, data_dir: Path) -> dict[str, str]:
    """The demo archive's true class of every spectrum, by DID (the server wrote it at start-up)."""
    with (data_dir / "demo" / "labels.csv").open(encoding="utf-8", newline="") as handle:
        return {row["id"]: row["label"] for row in csv.DictReader(handle)}


@pytest.fixture
def client(server: str) -> Iterator[VocloudClient]:
    with VocloudClient(server, timeout=10) as vocloud:
        yield vocloud


def expert(ids: Any, truth: dict[str, str]) -> list[LabelRecord]:
    """The simulated expert's labels for ``ids``."""
    return [LabelRecord(str(did), truth[str(did)], labeller="test expert") for did in ids]


# -- the service ---------------------------------------------------------------------------------


def test_capabilities_of_every_service(client: VocloudClient, server: str) -> None:
    capabilities = client.capabilities()
    standards = {c.standard_id for c in capabilities}
    assert {
        "ivo://ivoa.net/std/UWS#rest-1.1",
        "ivo://ivoa.net/std/SSA",
        "ivo://ivoa.net/std/DataLink#links-1.1",
        "ivo://ivoa.net/std/SODA#sync-1.0",
        "ivo://ivoa.net/std/VOSI#capabilities",
    } <= standards
    assert all(c.access_url.startswith(server) for c in capabilities)
    ssa = next(c for c in capabilities if c.standard_id == "ivo://ivoa.net/std/SSA")
    assert (ssa.service, ssa.access_url) == ("ssa", f"{server}/ssa")
    # A service the server does not have is left out, not an error.
    assert {c.service for c in client.capabilities(["jobs", "no-such-service"])} == {"jobs"}


def test_kinds_and_their_parameters(client: VocloudClient, server: str) -> None:
    kinds = {k.name: k for k in client.kinds()}
    assert {"sleep", "fail", "upload", "active_learning"} <= set(kinds)
    sleep = kinds["sleep"]
    assert sleep.url == f"{server}/jobs/sleep"
    seconds = sleep.parameter("SECONDS")
    assert seconds is not None
    assert (seconds.type, seconds.unit, seconds.minimum, seconds.maximum) == ("real", "s", 0.0, 3600.0)
    colour = sleep.parameter("colour")
    assert colour is not None and colour.choices == ("red", "blue")
    table = kinds["upload"].parameter("table")
    assert table is not None and table.required and table.type == "file"
    assert ("result", "application/x-votable+xml") in sleep.results
    with pytest.raises(VocloudError, match=r"offers no job kind 'nope'; it offers .*sleep"):
        client.kind("nope")


def test_submit_a_job_of_a_kind(client: VocloudClient, tmp_path: Path) -> None:
    table = tmp_path / "lines.txt"
    table.write_text("a\nb\nc\n")
    url = client.submit("upload", files=[("table", table)], run=True)
    summary = client.uws.wait(url, timeout=30)
    assert summary.phase == "COMPLETED"
    assert client.uws.result(summary) == b"3\n"
    assert client.job_url(f"upload/{summary.job_id}") == url


def test_names_of_jobs_and_sessions(client: VocloudClient, server: str) -> None:
    assert client.job_url("sleep/abc") == f"{server}/jobs/sleep/abc"
    assert client.job_url("/jobs/sleep/abc/") == f"{server}/jobs/sleep/abc"
    assert client.job_url("http://elsewhere/tap/async/1/") == "http://elsewhere/tap/async/1"
    assert client.session_url("s1") == f"{server}/sessions/s1"
    with pytest.raises(VocloudError, match="KIND/ID"):
        client.job_url("justanid")


def test_unreachable_server() -> None:
    with VocloudClient(f"http://127.0.0.1:{unused_port()}", timeout=5) as nowhere:
        with pytest.raises(ServerUnreachableError):
            nowhere.kinds()
        with pytest.raises(ServerUnreachableError):
            nowhere.session("x")


# -- HTTP Basic --------------------------------------------------------------------------------


def test_anonymous_client_is_told_to_authenticate(basic_server: str) -> None:
    with VocloudClient(basic_server) as anonymous:
        # VOSI stays public.
        assert {c.service for c in anonymous.capabilities(["jobs"])} == {"jobs"}
        with pytest.raises(AuthenticationError) as refused:
            anonymous.kinds()
    assert refused.value.status == 401
    assert refused.value.exit_code == 2


def test_credentials_are_sent_after_the_challenge_then_at_once(basic_server: str) -> None:
    with VocloudClient(basic_server, user="alice", password=PASSWORDS["alice"]) as alice:
        seen = count_requests(alice.http)
        assert "sleep" in {k.name for k in alice.kinds()}
        # The first request went without credentials, was challenged, and was sent again with them.
        assert [r.status_code for r in seen] == [200, 401]
        assert "Authorization" not in seen[1].request.headers
        assert "Authorization" in seen[0].request.headers
        seen.clear()
        url = alice.submit("sleep", [("seconds", "0")], run=True)
        assert alice.uws.wait(url, timeout=30).phase == "COMPLETED"
        assert 401 not in {r.status_code for r in seen}, "credentials go at once after the first challenge"
        assert alice.uws.jobs(alice.job_list_url("sleep"))[0].owner == "alice"


def test_wrong_password_is_refused_without_a_loop(basic_server: str) -> None:
    with VocloudClient(basic_server, user="alice", password="not-her-password") as mallory:
        seen = count_requests(mallory.http)
        with pytest.raises(AuthenticationError):
            mallory.kinds()
    assert [r.status_code for r in seen] == [401, 401]


def test_credentials_from_the_environment(basic_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOCLOUD_USER", "alice")
    monkeypatch.setenv("VOCLOUD_PASSWORD", PASSWORDS["alice"])
    with VocloudClient(basic_server) as client:
        assert client.user == "alice"
        assert client.kinds()


def test_the_prompt_is_asked_once_and_only_when_the_server_wants_it(basic_server: str, server: str) -> None:
    asked: list[str] = []

    def prompt() -> str:
        asked.append("asked")
        return PASSWORDS["alice"]

    with VocloudClient(server, user="alice", password_prompt=prompt) as anonymous_server:
        assert anonymous_server.kinds()
    assert asked == [], "an anonymous server never asks"
    with VocloudClient(basic_server, user="alice", password_prompt=prompt) as client:
        client.kinds()
        client.kinds()
    assert asked == ["asked"]


def test_credentials_never_go_to_another_origin(basic_server: str, server: str) -> None:
    with VocloudClient(basic_server, user="alice", password=PASSWORDS["alice"]) as client:
        client.kinds()  # challenged: credentials now go to basic_server at once
        seen = count_requests(client.http)
        client.http.get(f"{server}/jobs", timeout=10).raise_for_status()
        client.http.get(f"{basic_server}/jobs", timeout=10).raise_for_status()
    assert [("Authorization" in r.request.headers) for r in seen] == [False, True]


# -- active-learning sessions ------------------------------------------------------------------


def test_the_active_learning_loop(client: VocloudClient, truth: dict[str, str]) -> None:
    document = client.start_session(CLASSES, "emission", title="loop", **SMALL)
    session = document["id"]
    assert document["settings"]["positive_class"] == "emission"
    assert document["settings"]["batch_size"] == 5
    assert document["title"] == "loop"

    first = client.wait_for_iteration(session, timeout=60)
    assert (first["number"], first["status"]) == (1, "completed")
    oracle = client.oracle_batch(session)
    assert "id" in oracle.colnames
    # The fake picks the first unlabelled DIDs in order: a cold start takes seed_size (= batch_size) of them.
    assert [str(did) for did in oracle["id"]] == sorted(truth)[:5]

    answer = client.post_labels(session, expert(oracle["id"], truth))
    assert answer["accepted"] == 5
    assert answer["labels"] == 5
    assert answer["next_iteration"], "labelling the whole batch starts the next iteration"

    second = client.wait_for_iteration(session, timeout=60)
    assert second["number"] == 2
    assert second["job_url"] == answer["next_iteration"]
    assert second["outcome"]["labels_used"] == 5
    history = client.label_history(session)
    assert [str(x) for x in history["id"]] == [str(x) for x in oracle["id"]]
    assert [str(x) for x in history["label"]] == [truth[str(x)] for x in oracle["id"]]
    assert set(history["iteration"]) == {1}
    assert set(history["labeller"]) == {"test expert"}

    candidates = client.candidates(session)
    new_batch = [str(did) for did in client.oracle_batch(session)["id"]]
    assert not set(new_batch) & {str(did) for did in oracle["id"]}, "labelled spectra are not asked again"
    assert set(new_batch) <= {str(did) for did in candidates["id"]}
    # The fake writes no learning curve: the error names the results there are.
    with pytest.raises(UWSError, match=r"no 'learning_curve' result \(it has candidates, oracle\)"):
        client.iteration_table(session, "learning_curve")
    assert [str(d) for d in client.oracle_batch(session, number=1)["id"]] == [str(d) for d in oracle["id"]]
    assert session in {s["id"] for s in client.sessions()}


def test_waiting_on_an_iteration_uses_its_job_not_the_session(client: VocloudClient, data_dir: Path) -> None:
    session = client.start_session(CLASSES, max_epochs=HOLD_EPOCHS, **SMALL)["id"]
    with pytest.raises(VocloudError, match="no completed iteration yet"):
        client.oracle_batch(session)
    with pytest.raises(ClientTimeoutError):
        client.wait_for_iteration(session, timeout=1)

    release = threading.Timer(2.0, (data_dir / HOLD_FILE).touch)
    release.start()
    try:
        seen = count_requests(client.http)
        started = time.monotonic()
        iteration = client.wait_for_iteration(session, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        release.cancel()
    assert iteration["status"] == "completed"
    assert elapsed < 10
    waits = [r for r in seen if "WAIT=" in r.url]
    reads = [r for r in seen if "/sessions/" in r.url]
    assert waits, "it blocked on the job"
    assert all("/jobs/active_learning/" in r.url for r in waits)
    assert len(seen) <= 6, [r.url for r in seen]
    assert len(reads) <= 2, "the session is read before and after, not polled"


def test_a_failed_iteration_raises_with_the_servers_reason(client: VocloudClient) -> None:
    session = client.start_session(CLASSES, max_epochs=FAIL_EPOCHS, **SMALL)["id"]
    with pytest.raises(IterationFailedError) as failed:
        client.wait_for_iteration(session, timeout=60)
    assert FAIL_MESSAGE in str(failed.value)
    assert failed.value.exit_code == EXIT_JOB_FAILED


def test_refused_labels_store_nothing(client: VocloudClient, truth: dict[str, str]) -> None:
    session = client.start_session(CLASSES, **SMALL)["id"]
    good, bad = sorted(truth)[:2]
    with pytest.raises(VocloudError) as refused:
        client.post_labels(session, [LabelRecord(good, truth[good]), LabelRecord(bad, "quasar")])
    assert refused.value.status == 400
    assert "quasar" in str(refused.value)
    assert len(client.label_history(session)) == 0
    assert client.session(session)["labels"]["total"] == 0


def test_labels_carry_the_idempotency_key(client: VocloudClient, truth: dict[str, str]) -> None:
    session = client.start_session(CLASSES, auto_advance=False, **SMALL)["id"]
    assert client.session(session)["auto_advance"] is False
    seen = count_requests(client.http)
    did = sorted(truth)[1]
    client.post_labels(session, [LabelRecord(did, truth[did])], key="batch-0001")
    posts = [r for r in seen if r.request.method == "POST"]
    assert [r.request.headers.get("Idempotency-Key") for r in posts] == ["batch-0001"]
    assert posts[0].request.headers["Content-Type"].startswith("text/csv")


def test_a_session_with_initial_labels_from_a_file(
    client: VocloudClient, truth: dict[str, str], tmp_path: Path
) -> None:
    chosen = sorted(truth)[-4:]
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{did},{truth[did]}\n" for did in chosen))
    document = client.start_session(CLASSES, labels=labels, **SMALL)
    assert document["labels"]["total"] == 4
    assert sorted(str(x) for x in client.label_history(document["id"])["id"]) == chosen


def test_a_refused_session_names_the_problem(client: VocloudClient) -> None:
    with pytest.raises(VocloudError, match="at least two classes") as refused:
        client.start_session(["emission"])
    assert refused.value.status == 400
    with pytest.raises(VocloudError, match="batchsize"):
        client.start_session(CLASSES, batchsize=5)
    with pytest.raises(VocloudError) as missing:
        client.session("no-such-session")
    assert missing.value.status == 404
    assert "no-such-session" in str(missing.value)


def test_settings_are_sent_as_the_server_reads_them(client: VocloudClient) -> None:
    document = client.start_session(
        CLASSES, strategy="entropy", precision_target=0.8, auto_advance=False, seed=3, **SMALL
    )
    assert document["settings"]["strategy"] == "entropy"
    assert document["settings"]["seed"] == 3
    assert document["criteria"]["precision_target"] == 0.8
    assert document["auto_advance"] is False
