"""The transfer check runs on the real labelled spectra when they are present, and steps aside when they are not."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks import transfer_real
from tests.support.live_server import REPO_ROOT

SCRIPT = Path(__file__).with_name("transfer_real.py")


def test_without_the_real_data_it_says_so_and_succeeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No manifest where the data should be: a message on standard error, exit status 0, no table."""
    assert transfer_real.main(["--data", str(tmp_path / "absent")]) == 0
    captured = capsys.readouterr()
    assert "Real data not found" in captured.err
    assert captured.out == ""


def test_reads_the_labelled_real_files_with_their_human_labels(shared_data: Path) -> None:
    """The 29 labelled CCD700 files, labelled from the label file: 21 absorption, 7 emission, 1 double-peak."""
    spectra = transfer_real.read_labelled(shared_data / "ondrejov-ccd700")
    counts = {label: sum(s.label == label for s in spectra) for label in transfer_real.LABEL_CODES.values()}
    assert counts == {"absorption": 21, "emission": 7, "double-peak": 1}
    assert all(s.path.is_file() and s.did.startswith("ivo://asu.cas.cz/") for s in spectra)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_small_run_prints_every_spectrum_and_a_consistent_confusion_matrix(shared_data: Path) -> None:
    """Trained on a small demo archive: one row per real spectrum, a confusion matrix that adds up to them."""
    data = shared_data / "ondrejov-ccd700"
    command = [sys.executable, str(SCRIPT), "--data", str(data), "--count", "500"]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    out = completed.stdout
    rows = [line for line in out.splitlines() if re.match(r"\| \S+\.fits? ", line)]
    assert len(rows) == 29
    verdicts = [line.split("|")[5].strip() for line in rows]
    assert set(verdicts) <= {"yes", "NO"}
    matrix = {}
    for line in out.splitlines():
        match = re.match(r"\| (absorption|emission|double-peak) \((\d+)\) +\|([\d |]+)\|\s*([\d.-]+) \|", line)
        if match:
            cells = [int(v) for v in match.group(3).split("|")]
            assert sum(cells) == int(match.group(2))
            matrix[match.group(1)] = cells
    assert set(matrix) == {"absorption", "emission", "double-peak"}
    assert sum(map(sum, matrix.values())) == 29
    right = sum(matrix[c][k] for k, c in enumerate(("absorption", "emission", "double-peak")))
    assert f"Accuracy {right}/29" in out
    assert verdicts.count("yes") == right
