"""``vocloud ingest`` against a real server: files, a directory and a bad file, with exit codes."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live_server import REPO_ROOT, free_port, running_server, server_environment
from vocloud.client.errors import EXIT_JOB_FAILED, EXIT_UNREACHABLE, EXIT_USAGE
from vocloud.server.spectra.demo import generate_demo_archive


def _vocloud(*args: str, server: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vocloud.client.cli", "ingest", *args, "--server", server],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=server_environment(),
        check=False,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("server")
    with running_server(data_dir=data / "data", log_path=data / "server.log", workers=1) as live:
        yield live


def test_files_and_a_directory_are_archived(server, tmp_path: Path):
    generate_demo_archive(tmp_path / "demo", count=6, seed=9)
    files = sorted((tmp_path / "demo" / "spectra").glob("*.fit"))
    result = _vocloud(str(files[0]), str(files[1]), server=server.base_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("added\t") == 2
    assert "2 added, 0 duplicate, 0 failed" in result.stderr

    again = _vocloud(str(tmp_path / "demo" / "spectra"), server=server.base_url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("duplicate\t") == 2
    assert again.stdout.count("added\t") == 4


def test_a_bad_file_gives_exit_status_1(server, tmp_path: Path):
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"SIMPLE  = T\ngarbage")
    result = _vocloud(str(bad), server=server.base_url)
    assert result.returncode == EXIT_JOB_FAILED
    assert result.stdout.startswith("failed\t")


def test_a_missing_path_exits_2_and_an_unreachable_server_3_without_a_traceback(tmp_path: Path):
    result = _vocloud(str(tmp_path / "nothing.fits"), server="http://127.0.0.1:9")
    assert result.returncode == EXIT_USAGE
    assert "no such file" in result.stderr
    real = tmp_path / "x.fits"
    real.write_bytes(b"x")
    result = _vocloud(str(real), server=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == EXIT_UNREACHABLE, result.stderr
    assert result.stderr.startswith("vocloud ingest: Cannot reach") and "Traceback" not in result.stderr
