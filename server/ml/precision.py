"""How good the classifier is, and whether to stop labelling: precision with a confidence interval, and stopping rules.

Pure compute (standard library only); importable by worker processes and by the
service without the web stack or numpy.

Precision of the predicted-positive class is estimated from a labelled
*random* sample of the spectra the classifier calls positive: the spectra that
uncertainty sampling sends to the oracle are the hardest ones, and precision
measured on them would be biased low. The interval is the Wilson score interval
(Wilson 1927) rather than Clopper-Pearson: Clopper-Pearson guarantees at least
the nominal coverage and pays for it with intervals that are too wide on the
small samples an oracle labels (n of 20-50), while Wilson's coverage stays close
to nominal on average, it stays inside [0, 1] and is non-degenerate at 0 and n
successes (unlike the textbook Wald interval), and it needs no beta quantiles,
hence no scipy (Brown, Cai & DasGupta 2001 recommend it for small n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

__all__ = ["PrecisionEstimate", "precision_estimate", "stopping_reasons"]


@dataclass(frozen=True, kw_only=True)
class PrecisionEstimate:
    """Precision of the predicted-positive class from a labelled random sample, with its confidence interval.

    Attributes
    ----------
    value
        Share of the sampled predicted positives the oracle confirmed; None when none were labelled.
    low, high
        Bounds of the Wilson score interval, within [0, 1]; (0, 1) when none were labelled.
    n
        How many sampled predicted positives were labelled.
    confidence
        Confidence level of the interval.
    """

    value: float | None
    low: float
    high: float
    n: int
    confidence: float


def precision_estimate(correct: int, total: int, *, confidence: float = 0.95) -> PrecisionEstimate:
    """Precision and its Wilson score interval from ``correct`` confirmed positives out of ``total`` labelled.

    With no labelled sample there is no estimate: ``value`` is None and the interval is the
    whole of [0, 1], which says "nothing known" and never satisfies a precision target.

    Parameters
    ----------
    correct
        Labelled predicted positives the oracle confirmed as positive.
    total
        Labelled predicted positives, drawn at random among all predicted positives.
    confidence
        Confidence level of the interval, in (0, 1).

    Returns
    -------
    PrecisionEstimate
        The point estimate ``correct / total`` and the interval around it.

    Raises
    ------
    ValueError
        Raised if the counts are negative, ``correct`` exceeds ``total``, or ``confidence`` is
        not strictly between 0 and 1.
    """
    if total < 0 or correct < 0 or correct > total:
        msg = f"Need 0 <= correct <= total, not correct={correct}, total={total}"
        raise ValueError(msg)
    if not 0.0 < confidence < 1.0:
        msg = f"confidence must be strictly between 0 and 1, not {confidence}"
        raise ValueError(msg)
    if total == 0:
        return PrecisionEstimate(value=None, low=0.0, high=1.0, n=0, confidence=confidence)
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = correct / total
    z2n = z * z / total
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / total + z2n / (4.0 * total)) / (1.0 + z2n)
    # At 0 and n successes the bounds are exactly 0 and 1; rounding would leave them a hair off.
    return PrecisionEstimate(
        value=p,
        low=0.0 if correct == 0 else max(centre - half, 0.0),
        high=1.0 if correct == total else min(centre + half, 1.0),
        n=total,
        confidence=confidence,
    )


def stopping_reasons(
    *,
    labels_used: int,
    label_budget: int | None,
    mean_uncertainty: float | None,
    uncertainty_threshold: float | None,
    precision: PrecisionEstimate | None,
    precision_target: float | None,
) -> list[str]:
    """The stopping criteria of an active-learning run that hold now, as sentences for the user.

    Each criterion is off when its limit is None, and cannot hold while its measurement is None;
    the caller stops when the list is non-empty (or asks the user), and shows the list either way.
    Precision counts its *lower* bound, so that a lucky small sample does not end labelling early.

    Parameters
    ----------
    labels_used
        Labels the oracle has given so far.
    label_budget
        Most labels the oracle is willing to give.
    mean_uncertainty
        Mean uncertainty (e.g. BALD) over the unlabelled spectra after the latest training.
    uncertainty_threshold
        Stop when the mean uncertainty falls below this: the model has little left to learn.
    precision
        Current precision estimate of the predicted-positive class.
    precision_target
        Stop when the lower bound of the precision interval reaches this, in (0, 1].

    Returns
    -------
    list of str
        One sentence per criterion that holds, in the order budget, uncertainty, precision.

    Raises
    ------
    ValueError
        Raised if a count or limit is negative, or the precision target is outside (0, 1].
    """
    if labels_used < 0 or (label_budget is not None and label_budget < 0):
        msg = f"Label counts must not be negative: labels_used={labels_used}, label_budget={label_budget}"
        raise ValueError(msg)
    if uncertainty_threshold is not None and uncertainty_threshold < 0:
        msg = f"uncertainty_threshold must not be negative, not {uncertainty_threshold}"
        raise ValueError(msg)
    if precision_target is not None and not 0.0 < precision_target <= 1.0:
        msg = f"precision_target must be in (0, 1], not {precision_target}"
        raise ValueError(msg)
    reasons = []
    if label_budget is not None and labels_used >= label_budget:
        reasons.append(f"label budget reached ({labels_used} of {label_budget} labels used)")
    if uncertainty_threshold is not None and mean_uncertainty is not None and mean_uncertainty < uncertainty_threshold:
        reasons.append(f"mean uncertainty below {uncertainty_threshold:.4g} ({mean_uncertainty:.4g})")
    if precision_target is not None and precision is not None and precision.low >= precision_target:
        reasons.append(
            f"precision lower bound ≥ target ({precision.low:.3f} ≥ {precision_target:.3f}"
            f" at {precision.confidence:.0%} confidence, n = {precision.n})"
        )
    return reasons
