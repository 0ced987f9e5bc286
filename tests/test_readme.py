"""The README's Python example of the whole active-learning loop runs as written against a real server.

A new user copies that block; if an interface it calls changes, this test
fails rather than the user. The block is taken from the README itself (the one
after the ``tested by tests/test_readme.py`` marker), with only the server URL
and the demo archive's folder pointed at the test's own server.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from astropy.io.votable import parse_single_table

from tests.support.live_server import REPO_ROOT, running_server

MARKER = "<!-- tested by tests/test_readme.py -->"
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_LABELS = "~/.local/share/vocloud/demo/labels.csv"


def readme_block() -> str:
    """The Python block following the marker in README.md."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    after = text.split(MARKER, 1)[1]
    match = re.match(r"\s*```python\n(.*?)```", after, re.DOTALL)
    assert match is not None, "the README marker is not followed by a python block"
    return match.group(1)


def test_the_block_names_the_defaults_it_is_tested_with() -> None:
    block = readme_block()
    assert DEFAULT_URL in block
    assert DEFAULT_LABELS in block


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_readme_loop_runs_against_a_real_server(tmp_path: Path) -> None:
    with running_server(
        data_dir=tmp_path / "data", log_path=tmp_path / "server.log", workers=1, demo_spectra=300
    ) as server:
        labels_csv = server.data_dir / "demo" / "labels.csv"
        block = readme_block().replace(DEFAULT_URL, server.base_url).replace(DEFAULT_LABELS, str(labels_csv))
        done = subprocess.run(
            [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, done.stderr[-3000:]
        # One line per iteration: number, labels used, validation accuracy; labels grow.
        lines = [line.split() for line in done.stdout.splitlines() if line.strip()]
        assert len(lines) >= 2, done.stdout
        assert [int(line[0]) for line in lines] == list(range(1, len(lines) + 1))
        used = [int(line[1]) for line in lines]
        assert used == sorted(used) and used[-1] > used[0]

        with labels_csv.open(newline="") as f:
            truth = {row["id"]: row["label"] for row in csv.DictReader(f)}
        sessions = requests.get(f"{server.base_url}/sessions", timeout=30).json()
        (session,) = sessions["sessions"] if isinstance(sessions, dict) else sessions
        history = requests.get(f"{session['url']}/labels", timeout=30)
        table = parse_single_table(io.BytesIO(history.content)).to_table()
        posted = {str(row["id"]): str(row["label"]) for row in table}
        # Every label the example posted is the true class, each spectrum labelled once.
        assert posted and all(truth[i] == label for i, label in posted.items())
        assert len(table) == len(posted)
