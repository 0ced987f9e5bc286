"""``vocloud session`` against a real server whose iterations run on the fake executor (no training).

What ``status`` prints is compared with the session document the server
serves (read through `VocloudClient`), never with text copied from a run.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.app_thread import Run, serve_app, vocloud_app
from tests.support.fake_iteration import FAIL_EPOCHS, FAIL_MESSAGE, HOLD_EPOCHS, FakeIterationExecutor
from vocloud.client.errors import EXIT_JOB_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from vocloud.client.labels import LabelRecord
from vocloud.client.service import VocloudClient
from vocloud.client.session_cli import format_status

CLASSES = "absorption,emission,double-peak"
SMALL = ("--batch-size", "5", "--precision-sample", "3")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session-cli") / "data"


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[str]:
    app = vocloud_app(data_dir, executor=lambda: FakeIterationExecutor(workers=2), demo_spectra=30)
    with serve_app(app) as base:
        yield base


@pytest.fixture(scope="module")
def truth(server: str, data_dir: Path) -> dict[str, str]:
    with (data_dir / "demo" / "labels.csv").open(encoding="utf-8", newline="") as handle:
        return {row["id"]: row["label"] for row in csv.DictReader(handle)}


@pytest.fixture
def vocloud(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


@pytest.fixture
def client(server: str) -> Iterator[VocloudClient]:
    with VocloudClient(server, timeout=10) as vocloud:
        yield vocloud


def test_start_wait_and_status(vocloud: Run, server: str, client: VocloudClient, truth: dict[str, str]) -> None:
    code, out, err = vocloud(
        "session", "start", "--classes", CLASSES, "--positive", "emission", *SMALL,
        "--strategy", "entropy", "--title", "cli test", "-s", "max_candidates=50", "--server", server,
    )  # fmt: skip
    assert code == EXIT_OK, err
    session = out.strip()
    document = client.session(session)
    assert session == document["id"] and session[0].isalnum()
    assert f"session {document['url']} started" in err
    settings = document["settings"]
    assert (settings["positive_class"], settings["strategy"], settings["batch_size"]) == ("emission", "entropy", 5)
    assert settings["max_candidates"] == 50
    assert document["title"] == "cli test"

    code, out, _ = vocloud("session", "wait", session, "--server", server)
    assert code == EXIT_OK
    document = client.session(session)
    assert out.strip() == format_status(document)
    assert document["state"] == "waiting_for_labels"
    first = document["iterations"][0]
    row = next(line for line in out.splitlines() if line.lstrip().startswith("1 "))
    assert "completed" in row and "cold start" in row
    assert f"0/{first['outcome']['oracle_size']}" in row

    oracle = client.oracle_batch(session)
    client.post_labels(session, [LabelRecord(str(did), truth[str(did)]) for did in oracle["id"]])
    code, out, _ = vocloud("session", "wait", session, "--iteration", "2", "--server", server)
    assert code == EXIT_OK
    document = client.session(session)
    second = document["iterations"][1]["outcome"]
    row = next(line for line in out.splitlines() if line.lstrip().startswith("2 "))
    assert f"{second['val_accuracy']:.3f}" in row
    assert f"{second['mean_bald']:.4f}" in row
    assert f"labels:   {document['labels']['total']} (" in out
    for name, count in document["labels"]["by_class"].items():
        assert f"{name} {count}" in out
    assert "emission (positive)" in out

    code, out, _ = vocloud("session", "status", session, "--json", "--server", server)
    assert json.loads(out)["url"] == document["url"]
    code, by_url, _ = vocloud("session", "status", document["url"])  # the URL names the server too
    assert (code, by_url) == (EXIT_OK, f"{format_status(document)}\n")
    code, out, _ = vocloud("session", "list", "--server", server)
    listed = f"{session}\t{document['state']}\t2 iterations\t5 labels\t{document['url']}\t{document['title']}"
    assert listed in out.splitlines()


def test_status_shows_the_stopping_sentences(vocloud: Run, server: str, client: VocloudClient) -> None:
    code, out, _ = vocloud(
        "session", "start", "--classes", CLASSES, *SMALL, "--label-budget", "3", "--wait", "--server", server
    )
    assert code == EXIT_OK
    session = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("url:"))
    truth_ids = [str(did) for did in client.oracle_batch(session)["id"]][:3]
    client.post_labels(session, [LabelRecord(did, "absorption") for did in truth_ids])
    document = client.session(session)
    assert document["stopping"], "the label budget of 3 is spent"
    code, out, _ = vocloud("session", "status", session, "--server", server)
    assert code == EXIT_OK
    for sentence in document["stopping"]:
        assert sentence in out


def test_a_failed_iteration_exits_1_with_the_reason(vocloud: Run, server: str) -> None:
    code, out, _ = vocloud(
        "session", "start", "--classes", CLASSES, *SMALL, "--max-epochs", str(FAIL_EPOCHS), "--server", server
    )
    assert code == EXIT_OK
    code, _, err = vocloud("session", "wait", out.strip(), "--server", server)
    assert code == EXIT_JOB_FAILED
    assert FAIL_MESSAGE in err
    code, out, _ = vocloud("session", "status", out.strip(), "--server", server)
    assert "failed" in out and FAIL_MESSAGE in out


def test_a_held_iteration_times_out_and_cannot_be_doubled(vocloud: Run, server: str) -> None:
    code, out, err = vocloud(
        "session", "start", "--classes", CLASSES, *SMALL, "--max-epochs", str(HOLD_EPOCHS), "--server", server
    )
    assert code == EXIT_OK, err
    session = out.strip()
    code, _, err = vocloud("session", "wait", session, "--timeout", "1", "--server", server)
    assert code == EXIT_TIMEOUT, err
    code, _, err = vocloud("session", "next", session, "--server", server)
    assert code == EXIT_USAGE
    assert "(HTTP 409)" in err


def test_bad_input_is_refused_with_exit_2(vocloud: Run, server: str, tmp_path: Path) -> None:
    code, _, err = vocloud("session", "start", "--classes", "emission", "--server", server)
    assert code == EXIT_USAGE
    assert "at least two classes" in err and "(HTTP 400)" in err
    code, _, err = vocloud("session", "start", "--classes", CLASSES, "-s", "batchsize=3", "--server", server)
    assert (code, "batchsize" in err) == (EXIT_USAGE, True)
    code, _, err = vocloud("session", "start", "--classes", CLASSES, "--batch-size", "4", "-s", "batch_size=3")
    assert (code, "given twice" in err) == (EXIT_USAGE, True)
    code, _, err = vocloud("session", "start", "--classes", CLASSES, "--labels", str(tmp_path / "none.csv"))
    assert (code, "no such file" in err) == (EXIT_USAGE, True)
    code, _, err = vocloud("session", "status", "no-such-session", "--server", server)
    assert code == EXIT_USAGE
    assert "no-such-session" in err and "(HTTP 404)" in err


def test_selection_and_initial_labels(vocloud: Run, server: str, client: VocloudClient, tmp_path: Path) -> None:
    inside = client.table(f"{server}/ssa?REQUEST=queryData&POS=180,45&SIZE=120")["ssa_pubDID"]
    everything = client.table(f"{server}/ssa?REQUEST=queryData")["ssa_pubDID"]
    assert 2 <= len(inside) < len(everything), "the selection must select"
    labelled = sorted(str(did) for did in inside)[:2]
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{did},emission\n" for did in labelled))
    code, out, err = vocloud(
        "session", "start", "--classes", CLASSES, *SMALL, "--pos", "180,45", "--size", "120",
        "--labels", str(labels), "--no-auto-advance", "--json", "--server", server,
    )  # fmt: skip
    assert code == EXIT_OK, err
    document = json.loads(out)
    assert document["auto_advance"] is False
    assert document["settings"]["selection"]["radius"] == 60
    assert document["labels"]["total"] == len(labelled) == 2
