"""The archive benchmark still runs end to end (figures are printed, never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.archive import ROW_LABELS
from tests.support.live_server import REPO_ROOT

SCRIPT = Path(__file__).with_name("archive.py")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_minimal_run_prints_every_row() -> None:
    """A tiny run ingests, fills, starts its three servers, queries every endpoint and prints the table."""
    command = [
        sys.executable, str(SCRIPT), "--quick", "--ingest-files", "12", "--spectra", "12", "--rows", "2000",
        "--requests", "5", "--warmup", "2",
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    out = completed.stdout
    assert "| measure" in out
    for label in ROW_LABELS:
        assert f"| {label}" in out, label
    assert "SSAP cone SIZE=0.05 at 2,000 rows" in out
    assert "of DaCHS 20-45 ms; half or less:" in out
    assert "files/s" in out and "baseline" in out
