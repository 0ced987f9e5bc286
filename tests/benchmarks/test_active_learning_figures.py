"""The benchmark's figures: where a curve crosses a target, the mean curve over seeds, and the ratio cells."""

from __future__ import annotations

import pytest

from tests.benchmarks.active_learning import CurvePoint, _reach_cells, labels_to_reach, mean_curve


def _curve(strategy: str, seed: int, accuracies: list[float], *, step: int = 20) -> list[CurvePoint]:
    return [
        CurvePoint(
            strategy=strategy,
            seed=seed,
            iteration=i + 2,
            labels=step * (i + 1),
            accuracy=accuracy,
            macro_f1=accuracy,
            precision=None,
            precision_low=0.0,
            precision_high=1.0,
            precision_n=0,
            true_precision=None,
            seconds=1.0,
        )
        for i, accuracy in enumerate(accuracies)
    ]


def test_labels_to_reach_interpolates_between_iterations() -> None:
    assert labels_to_reach([(20, 0.80), (40, 0.90), (60, 0.95)], 0.925) == (pytest.approx(50.0), False)
    # The first point reaching the target is only an upper bound.
    assert labels_to_reach([(20, 0.95), (40, 0.96)], 0.93) == (20.0, True)
    assert labels_to_reach([(40, 0.90), (20, 0.80)], 0.99) is None


def test_the_first_crossing_counts_even_if_the_curve_drops_again() -> None:
    jumpy = [(20, 0.80), (40, 0.94), (60, 0.85), (80, 0.96)]
    assert labels_to_reach(jumpy, 0.93) == (pytest.approx(38.57, abs=0.01), False)


def test_mean_curve_averages_seeds_and_keeps_only_label_counts_all_reached() -> None:
    curves = {("random", 0): _curve("random", 0, [0.8, 0.9, 0.94]), ("random", 1): _curve("random", 1, [0.7, 0.8])}
    assert mean_curve(curves, "random", [0, 1]) == [(20, pytest.approx(0.75)), (40, pytest.approx(0.85))]


def test_reach_cells_give_the_mean_curves_ratio_then_the_seeds() -> None:
    # Seed 0 lucky for random (it crosses 0.93 at 38.6), seed 1 not (at 86.7); so is their mean curve
    # (0.89 at 60, 0.92 at 80, 0.95 at 100), while every other strategy crosses at 50.
    curves = {
        ("random", 0): _curve("random", 0, [0.80, 0.94, 0.90, 0.92, 0.95]),
        ("random", 1): _curve("random", 1, [0.80, 0.84, 0.88, 0.92, 0.95]),
    }
    for strategy in ("entropy", "bald", "diverse"):
        for seed in (0, 1):
            curves[strategy, seed] = _curve(strategy, seed, [0.80, 0.90, 0.96, 0.97, 0.97])
    labels, ratios = _reach_cells(curves, [0, 1], 0.93, budget=100)
    assert labels["random"] == "87 (seeds 63 [39-87])"
    assert labels["diverse"] == "50 (seeds 50 [50-50])"
    assert ratios["random"] == "1.00"
    # 50 / 86.7 on the mean curves; the single seeds give 50 / 38.6 and 50 / 86.7.
    assert ratios["diverse"] == "0.58 (seeds 0.94 [0.58-1.30])"
    single, single_ratios = _reach_cells(curves, [1], 0.93, budget=100)
    assert single["random"] == "87" and single_ratios["diverse"] == "0.58"
