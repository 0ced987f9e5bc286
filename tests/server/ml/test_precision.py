"""The Wilson interval matches published values and its coverage; stopping rules report what holds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vocloud.server.ml.precision import PrecisionEstimate, precision_estimate, stopping_reasons

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("correct", "total", "confidence", "low", "high"),
    [
        (8, 10, 0.95, 0.4902, 0.9433),
        (15, 20, 0.95, 0.5313, 0.8881),
        (81, 263, 0.95, 0.2553, 0.3662),  # Newcombe (1998), Table I, example (a) with Wilson's method
        (8, 10, 0.90, 0.5408, 0.9314),  # by hand: z = 1.6449
    ],
)
def test_wilson_interval_matches_known_values(
    correct: int, total: int, confidence: float, low: float, high: float
) -> None:
    estimate = precision_estimate(correct, total, confidence=confidence)
    assert estimate.value == pytest.approx(correct / total)
    assert estimate.low == pytest.approx(low, abs=5e-4)
    assert estimate.high == pytest.approx(high, abs=5e-4)
    assert estimate.n == total
    assert estimate.confidence == confidence


def test_all_wrong_and_all_right_stay_within_the_unit_interval() -> None:
    none = precision_estimate(0, 10)
    assert none.value == 0.0
    assert none.low == 0.0
    assert 0.0 < none.high < 0.35
    everything = precision_estimate(10, 10)
    assert everything.value == 1.0
    assert 0.65 < everything.low < 1.0
    assert everything.high == 1.0


def test_no_labelled_sample_gives_no_value_and_the_whole_interval() -> None:
    assert precision_estimate(0, 0) == PrecisionEstimate(value=None, low=0.0, high=1.0, n=0, confidence=0.95)


def test_interval_narrows_with_more_labels() -> None:
    widths = [e.high - e.low for e in (precision_estimate(4 * k, 5 * k) for k in (2, 8, 32))]
    assert widths[0] > widths[1] > widths[2]


def test_coverage_is_close_to_nominal() -> None:
    p, n, repetitions = 0.8, 30, 2000
    successes = np.random.default_rng(12345).binomial(n, p, size=repetitions)
    covered = 0
    for k in successes:
        estimate = precision_estimate(int(k), n)
        covered += estimate.low <= p <= estimate.high
    assert 0.92 <= covered / repetitions <= 0.97


def test_exact_coverage_is_close_to_nominal() -> None:
    # The binomial sum behind the simulation above: 0.964 at p = 0.8, n = 30. The simulated figure
    # (0.966 with this seed) scatters around it by about 0.004, so the 0.97 bound there is tight by nature.
    p, n = 0.8, 30
    coverage = sum(
        math.comb(n, k) * p**k * (1 - p) ** (n - k)
        for k in range(n + 1)
        if precision_estimate(k, n).low <= p <= precision_estimate(k, n).high
    )
    assert 0.95 <= coverage <= 0.97


@pytest.mark.parametrize(
    ("correct", "total", "confidence"),
    [(-1, 10, 0.95), (11, 10, 0.95), (0, -1, 0.95), (5, 10, 0.0), (5, 10, 1.0)],
)
def test_bad_counts_or_confidence_raise(correct: int, total: int, confidence: float) -> None:
    with pytest.raises(ValueError, match=r"correct <= total|confidence must be"):
        precision_estimate(correct, total, confidence=confidence)


def reasons(**overrides: object) -> list[str]:
    """Stopping reasons with every criterion off unless overridden."""
    arguments: dict[str, object] = {
        "labels_used": 10,
        "label_budget": None,
        "mean_uncertainty": None,
        "uncertainty_threshold": None,
        "precision": None,
        "precision_target": None,
    } | overrides
    return stopping_reasons(**arguments)  # type: ignore[arg-type]


def test_no_criterion_set_means_no_reason_to_stop() -> None:
    assert reasons() == []


def test_label_budget() -> None:
    assert reasons(labels_used=99, label_budget=100) == []
    assert reasons(labels_used=100, label_budget=100) == ["label budget reached (100 of 100 labels used)"]


def test_mean_uncertainty() -> None:
    assert reasons(mean_uncertainty=0.05, uncertainty_threshold=0.05) == []
    assert reasons(mean_uncertainty=None, uncertainty_threshold=0.05) == []
    assert reasons(mean_uncertainty=0.031, uncertainty_threshold=0.05) == ["mean uncertainty below 0.05 (0.031)"]


def test_precision_counts_the_lower_bound() -> None:
    # 8 of 10 is a point estimate of 0.8 but a lower bound of 0.49: not enough for a target of 0.75.
    assert reasons(precision=precision_estimate(8, 10), precision_target=0.75) == []
    assert reasons(precision=precision_estimate(0, 0), precision_target=0.01) == []
    (reason,) = reasons(precision=precision_estimate(195, 200), precision_target=0.9)
    assert reason.startswith("precision lower bound ≥ target (0.943 ≥ 0.900")
    assert "n = 200" in reason


def test_all_criteria_are_reported_in_order() -> None:
    found = reasons(
        labels_used=300,
        label_budget=200,
        mean_uncertainty=0.01,
        uncertainty_threshold=0.02,
        precision=precision_estimate(195, 200),
        precision_target=0.9,
    )
    assert [r.split(" (")[0] for r in found] == [
        "label budget reached",
        "mean uncertainty below 0.02",
        "precision lower bound ≥ target",
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {"labels_used": -1},
        {"label_budget": -5},
        {"uncertainty_threshold": -0.1},
        {"precision_target": 0.0},
        {"precision_target": 1.5},
    ],
)
def test_bad_limits_raise(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"negative|precision_target"):
        reasons(**overrides)
