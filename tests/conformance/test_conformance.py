"""The conformance runner as CI runs it: every document vocloud serves through STILTS.

Deselected by default (``-m conformance`` selects it). A machine without STILTS
fails here rather than skipping: CI installs it first with
``conformance/install-validators``, and a silent skip would hide a broken install.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TOTALS = re.compile(r"^TOTAL: (\d+) checks, (\d+) errors, (\d+) warnings$", re.MULTILINE)


@pytest.mark.conformance
@pytest.mark.timeout(600)
def test_every_document_passes_the_validators() -> None:
    assert shutil.which("stilts"), "stilts is not on PATH: run conformance/install-validators"
    result = subprocess.run(
        [sys.executable, str(REPO / "conformance" / "run.py")],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, output
    totals = TOTALS.search(result.stdout)
    assert totals is not None, output
    checks, errors = int(totals[1]), int(totals[2])
    assert checks > 0, output
    assert errors == 0, output
