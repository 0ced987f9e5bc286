"""The active-learning benchmark still runs end to end and prints a complete, sane table (figures never timed)."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.active_learning import ROW_LABELS, STRATEGY_ORDER
from tests.support.live_server import REPO_ROOT

SCRIPT = Path(__file__).with_name("active_learning.py")

_FRACTION_PAIR = re.compile(r"^(\d\.\d{3}) / (\d\.\d{3})$")


def _table(out: str) -> dict[str, list[str]]:
    """Table rows by their first cell; each row's cells after it."""
    rows: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.startswith("| ") and not line.startswith("| measure"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_tiny_run_prints_a_complete_table(tmp_path: Path) -> None:
    """A tiny session per strategy gives a learning curve, label counts, coverage, throughput and memory rows."""
    curve_csv = tmp_path / "curves.csv"
    command = [
        sys.executable, str(SCRIPT), "--quick", "--count", "500", "--seed-size", "20", "--batch-size", "20",
        "--budget", "60", "--seeds", "1", "--memory-factors", "1,2", "--csv", str(curve_csv),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    rows = _table(completed.stdout)
    for label in ROW_LABELS:
        assert any(name.startswith(label) for name in rows), f"no row {label!r} in\n{completed.stdout}"

    # The curve: one row per label count of the grid (seed batch, then one batch more each iteration).
    for labels in (20, 40, 60):
        cells = rows[f"accuracy / macro-F1 at {labels} labels"]
        for strategy, cell in zip(STRATEGY_ORDER, cells, strict=False):
            match = _FRACTION_PAIR.match(cell)
            assert match, f"{strategy} at {labels} labels: {cell!r}"
            assert all(0.0 <= float(v) <= 1.0 for v in match.groups())
    # Every strategy starts from the same seed batch, hence the same first model and figures.
    first = rows["accuracy / macro-F1 at 20 labels"][: len(STRATEGY_ORDER)]
    assert len(set(first)) == 1, first

    with curve_csv.open(encoding="utf-8") as f:
        points = list(csv.DictReader(f))
    assert {p["strategy"] for p in points} == set(STRATEGY_ORDER)
    for strategy in STRATEGY_ORDER:
        assert [int(p["labels"]) for p in points if p["strategy"] == strategy] == [20, 40, 60]

    # Coverage: k of n trained iterations, with n at most the iterations run and k at most n.
    covered, total = map(int, re.findall(r"(\d+)/(\d+) =", rows["precision interval covers truth"][4])[0])
    assert 0 < total <= 3 * len(STRATEGY_ORDER)
    assert 0 <= covered <= total
    checked = [p for p in points if p["precision_n"] != "0" and p["true_precision"]]
    assert len(checked) == total

    # Ratios to random: random's own is 1 when measured; every cell is a number, a bound or says why not.
    ratio_cell = re.compile(r"^(n/a|seed batch enough|[<>≤] ?\d+\.\d\d|\d+\.\d\d)( \(seeds .*\))?$")
    for cell in rows["ratio to random (95 %)"][: len(STRATEGY_ORDER)]:
        assert ratio_cell.match(cell), cell
    assert rows["ratio to random (95 %)"][0] in {"1.00", "n/a", "seed batch enough"}

    # Throughput and memory: positive figures, one memory figure per pool multiple.
    head = rows["MC-dropout head (server's)"][4]
    assert float(head.split()[0]) > 0, head
    memory = rows["peak RSS of one iteration"][4]
    peaks = [float(v) for v in memory.split(" MiB")[0].split(" / ")]
    assert len(peaks) == 2 and min(peaks) > 0, memory
    split = next((cells[4] for name, cells in rows.items() if name.startswith("peak RSS training")), None)
    if split is not None:  # only where /proc/self/clear_refs lets the peak be reset
        phases = re.findall(r"(\d+) / (\d+)", split.split(" MiB")[0])
        assert len(phases) == 2 and all(float(v) > 0 for pair in phases for v in pair), split
    assert "load average before" in completed.stdout
