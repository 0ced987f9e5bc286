"""The UWS throughput benchmark still runs end to end (figures are printed, never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.uws_throughput import ROW_LABELS
from tests.support.live_server import REPO_ROOT

SCRIPT = Path(__file__).with_name("uws_throughput.py")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_quick_run_prints_every_row() -> None:
    """A very short run starts the server, drives every measurement and prints the table."""
    command = [
        sys.executable, str(SCRIPT), "--quick", "--duration", "0.5", "--warmup", "2", "--concurrency", "1,8",
        "--wake-repeats", "2", "--waiters", "10", "--probes", "5",
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=200, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    out = completed.stdout
    assert "| measure" in out
    for clients in (1, 8):
        assert ROW_LABELS[0].format(n=clients) in out
    for label in ROW_LABELS[1:]:
        assert f"| {label}" in out
    assert "10 waiters in WAIT" in out
    assert "x DaCHS 0.37 jobs/s" in out
