"""``vocloud jobs`` against a real server: the job lifecycle, errorSummary, refusals, timeouts, 401, exit codes.

Commands run in-process through `vocloud.client.cli.main` (what the console
script calls) with their output captured; one runs as a real process to show
that an expected failure ends with its exit code and one line, no traceback.
"""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import unused_port
from astropy.io.votable import parse_single_table

from tests.support.app_thread import Run, serve_app, vocloud_app
from tests.support.live_server import REPO_ROOT, server_environment, vocloud_command
from vocloud.client.cli import main
from vocloud.client.errors import (
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from vocloud.client.progress import ProgressBar, human_bytes
from vocloud.server.auth import UserFile

PASSWORD = "alice-secret-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_app(vocloud_app(tmp_path_factory.mktemp("jobs") / "data")) as base:
        yield base


@pytest.fixture(scope="module")
def basic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("jobs-basic") / "data"
    UserFile(data / "users.json").add("alice", PASSWORD)
    with serve_app(vocloud_app(data, auth="basic")) as base:
        yield base


@pytest.fixture
def vocloud(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def test_kinds_and_their_parameters(vocloud: Run, server: str) -> None:
    code, out, _ = vocloud("jobs", "kinds", "--server", server)
    assert code == EXIT_OK
    names = [line.split("\t")[0] for line in out.splitlines()]
    assert {"sleep", "fail", "upload"} <= set(names)
    code, out, _ = vocloud("jobs", "kinds", "sleep", "--server", server)
    assert code == EXIT_OK
    seconds = next(line for line in out.splitlines() if line.strip().startswith("seconds ("))
    assert "unit s" in seconds and "range [0, 3600]" in seconds
    assert "one of red|blue" in out
    code, out, _ = vocloud("jobs", "kinds", "sleep", "--json", "--server", server)
    assert json.loads(out)["name"] == "sleep"
    code, _, err = vocloud("jobs", "kinds", "nope", "--server", server)
    assert code == EXIT_USAGE
    assert "no job kind 'nope'" in err


def test_submit_list_run_wait_results_delete(vocloud: Run, server: str, tmp_path: Path) -> None:
    code, out, _ = vocloud("jobs", "submit", "sleep", "-p", "seconds=0.2", "-p", "label=hello", "--server", server)
    assert code == EXIT_OK
    url = out.strip()
    assert url.startswith(f"{server}/jobs/sleep/")
    job_id = url.rsplit("/", 1)[-1]

    code, out, _ = vocloud("jobs", "list", "sleep", "--phase", "PENDING", "--server", server)
    assert f"sleep/{job_id}\tPENDING" in out
    code, _, err = vocloud("jobs", "wait", url, "--server", server)
    assert code == EXIT_USAGE
    assert "PENDING" in err and "jobs run" in err

    code, out, _ = vocloud("jobs", "run", f"sleep/{job_id}", "--server", server)
    assert (code, out) == (EXIT_OK, f"started\t{url}\n")
    code, out, _ = vocloud("jobs", "wait", url, "--server", server)
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0] == f"COMPLETED\t{url}"
    assert lines[1].startswith("result\tresult\thttp")

    code, out, _ = vocloud("jobs", "results", url, "--server", server)
    assert [line.split("\t")[0] for line in out.splitlines()] == ["result"]
    target = tmp_path / "echo.xml"
    code, _, _ = vocloud("jobs", "results", url, "result", "-o", str(target), "--server", server)
    assert code == EXIT_OK
    echoed = parse_single_table(str(target)).to_table()
    assert dict(zip(echoed["name"], echoed["value"], strict=True))["label"] == "hello"
    code, out, _ = vocloud("jobs", "results", url, "result", "--server", server)
    assert out.encode() == target.read_bytes()
    code, _, err = vocloud("jobs", "results", url, "nothing", "-o", str(tmp_path / "x"), "--server", server)
    assert code == EXIT_USAGE
    assert "no result 'nothing'" in err
    assert not (tmp_path / "x").exists()

    code, out, _ = vocloud("jobs", "show", f"sleep/{job_id}", "--json", "--server", server)
    shown = json.loads(out)
    assert shown["phase"] == "COMPLETED"
    assert ["label", "hello"] in shown["parameters"]

    code, out, _ = vocloud("jobs", "delete", url, "--server", server)
    assert (code, out) == (EXIT_OK, f"deleted\t{url}\n")
    code, _, err = vocloud("jobs", "show", url, "--server", server)
    assert code == EXIT_USAGE
    assert "(HTTP 404)" in err and "no job" in err.lower()


def test_a_failed_job_prints_its_error_summary_and_exits_1(vocloud: Run, server: str) -> None:
    code, out, err = vocloud("jobs", "submit", "fail", "-p", "how=usage", "--wait", "--server", server)
    assert code == EXIT_JOB_FAILED
    assert out.startswith("ERROR\t")
    assert "ended ERROR (fatal): The spectra selection is empty; widen the constraints" in err


def test_bad_input_and_refusals_exit_2(vocloud: Run, server: str, tmp_path: Path) -> None:
    code, _, err = vocloud("jobs", "submit", "sleep", "-p", "count=99", "--server", server)
    assert code == EXIT_USAGE
    assert "count" in err and "(HTTP 400)" in err
    code, _, err = vocloud("jobs", "submit", "sleep", "-p", "nonsense", "--server", server)
    assert (code, "-p takes NAME=VALUE" in err) == (EXIT_USAGE, True)
    code, _, err = vocloud("jobs", "submit", "upload", "--file", f"table={tmp_path / 'missing'}", "--server", server)
    assert (code, "no such file" in err) == (EXIT_USAGE, True)
    code, _, err = vocloud("jobs", "show", "justanid", "--server", server)
    assert (code, "KIND/ID" in err) == (EXIT_USAGE, True)
    with pytest.raises(SystemExit) as usage:
        main(["jobs", "submit"])
    assert usage.value.code == EXIT_USAGE


def test_timeout_then_abort(vocloud: Run, server: str) -> None:
    code, out, _ = vocloud("jobs", "submit", "sleep", "-p", "seconds=30", "--run", "--server", server)
    url = out.strip()
    started = time.monotonic()
    code, _, err = vocloud("jobs", "wait", url, "--timeout", "1", "--server", server)
    assert code == EXIT_TIMEOUT
    assert time.monotonic() - started < 4
    assert "after 1 s" in err
    code, _, _ = vocloud("jobs", "abort", url, "--server", server)
    assert code == EXIT_OK
    code, out, err = vocloud("jobs", "wait", url, "--server", server)
    assert code == EXIT_JOB_FAILED
    assert out.startswith("ABORTED")


def test_file_parameters_and_json(vocloud: Run, server: str, tmp_path: Path) -> None:
    table = tmp_path / "lines.txt"
    table.write_text("1\n2\n")
    code, out, _ = vocloud(
        "jobs", "submit", "upload", "--file", f"table={table}", "--wait", "--json", "--server", server
    )
    assert code == EXIT_OK
    summary = json.loads(out)
    assert summary["phase"] == "COMPLETED"
    code, out, _ = vocloud("jobs", "results", summary["url"], "result", "--server", server)
    assert out == "2\n"
    code, out, _ = vocloud("jobs", "list", "--json", "--server", server)
    assert {"kind": "upload", "job_id": summary["job_id"]}.items() <= next(
        j for j in json.loads(out) if j["job_id"] == summary["job_id"]
    ).items()


def test_server_from_the_environment(vocloud: Run, server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOCLOUD_URL", server + "/")
    code, out, _ = vocloud("jobs", "kinds")
    assert code == EXIT_OK
    assert "sleep" in out


def test_credentials_when_the_server_asks(vocloud: Run, basic_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = vocloud("jobs", "list", "sleep", "--server", basic_server)
    assert code == EXIT_USAGE
    assert "(HTTP 401)" in err and "--user" in err
    # No password and no terminal to ask on: refused, not hung on a prompt.
    code, _, err = vocloud("jobs", "list", "sleep", "--user", "alice", "--server", basic_server)
    assert code == EXIT_USAGE
    monkeypatch.setenv("VOCLOUD_PASSWORD", PASSWORD)
    code, out, _ = vocloud("jobs", "submit", "sleep", "--run", "--user", "alice", "--server", basic_server)
    assert code == EXIT_OK
    code, out, _ = vocloud("jobs", "list", "sleep", "--json", "--user", "alice", "--server", basic_server)
    assert [job["owner"] for job in json.loads(out)] == ["alice"]


def test_unreachable_server_exits_3_without_a_traceback() -> None:
    nowhere = f"http://127.0.0.1:{unused_port()}"
    process = subprocess.run(
        [*vocloud_command(), "jobs", "list", "--server", nowhere],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=server_environment(), check=False,
    )  # fmt: skip
    assert process.returncode == EXIT_UNREACHABLE, process.stderr
    assert process.stderr.startswith("vocloud jobs list: Cannot reach")
    assert "Traceback" not in process.stderr
    assert len(process.stderr.strip().splitlines()) == 1


def test_ctrl_c_exits_130_in_one_line() -> None:
    """SIGINT while a command waits on a server that never answers: status 130 (128 + SIGINT), no traceback."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections are accepted by the kernel and never answered
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        # A shell's background job (CI started with `&`) ignores SIGINT, and Python keeps an ignored
        # SIGINT ignored: give the command the default disposition a terminal's foreground job has.
        default_sigint = (
            "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", default_sigint, *vocloud_command(), "jobs", "list", "--server", url],
            cwd=REPO_ROOT, env=server_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            connection, _ = silent.accept()  # the command is in its request now
            with connection:
                process.send_signal(signal.SIGINT)
                _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate()  # reaps it and closes its pipes, whatever happened above
    assert process.returncode == EXIT_INTERRUPTED, err
    assert err.strip() == "vocloud: interrupted"


def test_the_top_level_help_imports_neither_astropy_nor_pyvo() -> None:
    """``vocloud --help`` builds every command's parser: the heavy libraries wait until a command needs them."""
    probe = (
        "import sys; from vocloud.client.cli import build_parser; build_parser().format_help();"
        " print(sorted(m for m in ('astropy', 'pyvo', 'numpy', 'torch') if m in sys.modules))"
    )
    process = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=True
    )
    assert process.stdout.strip() == "[]", process.stdout


def test_progress_bar_draws_only_when_asked() -> None:
    stream = io.StringIO()
    with ProgressBar("cutout", stream=stream, enabled=True, width=10) as bar:
        bar.bytes(512, 1024)
        bar.bytes(1024, 1024)
    drawn = stream.getvalue()
    assert "[##########] 100% 1.0 KiB of 1.0 KiB" in drawn
    assert drawn.endswith("\n")
    quiet = io.StringIO()
    with ProgressBar("cutout", stream=quiet) as bar:  # a StringIO is no terminal
        bar.update(0.5, force=True)
    assert quiet.getvalue() == ""
    assert human_bytes(3 * 1024 * 1024) == "3.0 MiB"
