"""Continuum normalisation of a 1-D spectrum: flux divided by an iteratively sigma-clipped Chebyshev fit.

Pure numpy, importable by worker processes. The method is the classic one of
IRAF ``continuum`` and of most quick-look pipelines, and it is only as good as
its assumptions, which is why every parameter is fixed, documented here and
written into the products (FITS ``CONT*`` keywords):

* the continuum is smooth: a Chebyshev series of degree 3 up to 1000 Å, one
  more for every started 1000 Å beyond, at most 9 (a CCD700 spectrum of 500 Å gets 3,
  a LAMOST spectrum of 5000 Å gets 7);
* lines are departures from it: each round rejects points more than 2 sigma below
  (absorption) or 3 sigma above (emission, cosmic rays) the fit, sigma the robust
  scatter (1.4826 times the median absolute deviation) of the kept points, until the
  kept set stops changing or after 10 rounds.

It is refused, rather than returning something misleading, when too few points
remain to fit (fewer than 20, or under a fifth of the finite points) or when
the fitted continuum is not clearly positive over the spectrum (flux near zero,
emission-dominated spectra), where dividing by it would invent features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import chebyshev
from numpy.typing import NDArray

__all__ = [
    "HIGH_REJECT_SIGMA",
    "LOW_REJECT_SIGMA",
    "ContinuumError",
    "ContinuumFit",
    "continuum_degree",
    "fit_continuum",
]

LOW_REJECT_SIGMA = 2.0
"""Points this many robust sigmas below the fit are taken as absorption and left out of the next round."""

HIGH_REJECT_SIGMA = 3.0
"""Points this many robust sigmas above the fit are taken as emission (or cosmics) and left out."""

MAX_ROUNDS = 10
"""Most fit-and-reject rounds."""

MIN_POINTS = 20
"""Fewest points a fit may rest on."""

MIN_KEPT_FRACTION = 0.2
"""Least fraction of the finite points a fit may rest on."""

MIN_CONTINUUM_FRACTION = 0.01
"""The continuum must stay above this fraction of its median everywhere, or the division is refused."""

_MAD_TO_SIGMA = 1.4826


class ContinuumError(ValueError):
    """The spectrum cannot be normalised honestly; the message says why."""


@dataclass(frozen=True, kw_only=True)
class ContinuumFit:
    """A fitted continuum.

    Parameters
    ----------
    continuum
        The continuum at every wavelength of the spectrum.
    degree
        Degree of the Chebyshev series.
    rounds
        Fit-and-reject rounds done.
    kept
        Points the final fit rests on.
    """

    continuum: NDArray[np.float64]
    degree: int
    rounds: int
    kept: int


def continuum_degree(span_angstrom: float) -> int:
    """Degree of the Chebyshev series for a spectrum covering ``span_angstrom`` Å.

    3 up to 1000 Å, one more for every started 1000 Å beyond, at most 9.
    """
    return min(3 + math.ceil(max(span_angstrom - 1000.0, 0.0) / 1000.0), 9)


def fit_continuum(
    wavelength: NDArray[np.float64],
    flux: NDArray[np.floating],
    *,
    degree: int | None = None,
    low_sigma: float = LOW_REJECT_SIGMA,
    high_sigma: float = HIGH_REJECT_SIGMA,
) -> ContinuumFit:
    """Fit the continuum of a spectrum by iterative asymmetric sigma clipping.

    The defaults are SODA's fixed choices (see the module docstring); the
    preprocessing job lets a user set them, and writes them into its provenance.

    Parameters
    ----------
    wavelength
        Wavelengths in Å, strictly increasing.
    flux
        Fluxes; non-finite values are ignored.
    degree
        Degree of the Chebyshev series; ``None`` chooses it from the span
        (:func:`continuum_degree`).
    low_sigma, high_sigma
        Points this many robust sigmas below (absorption) or above (emission)
        the fit are left out of the next round.

    Raises
    ------
    ContinuumError
        Raised if too few points remain for a fit or the continuum is not
        clearly positive everywhere.
    ValueError
        Raised if the degree is negative or a clip sigma is not positive.
    """
    values = np.asarray(flux, dtype=np.float64)
    finite = np.isfinite(values)
    n_finite = int(finite.sum())
    least = max(MIN_POINTS, int(np.ceil(MIN_KEPT_FRACTION * n_finite)))
    if n_finite < least:
        msg = f"only {n_finite} finite flux values; at least {MIN_POINTS} are needed to fit a continuum"
        raise ContinuumError(msg)
    if degree is None:
        degree = continuum_degree(float(wavelength[-1] - wavelength[0]))
    if degree < 0 or low_sigma <= 0 or high_sigma <= 0:
        msg = f"degree must be >= 0 and clip sigmas > 0, got {degree}, {low_sigma}, {high_sigma}"
        raise ValueError(msg)
    # Chebyshev series on [-1, 1]: well conditioned at every degree used here.
    x = np.interp(wavelength, (wavelength[0], wavelength[-1]), (-1.0, 1.0))
    kept = finite.copy()
    coefficients = chebyshev.chebfit(x[kept], values[kept], degree)
    rounds = 1
    while rounds < MAX_ROUNDS:
        fitted = chebyshev.chebval(x, coefficients)
        residual = values - fitted
        scatter = _MAD_TO_SIGMA * float(np.median(np.abs(residual[kept] - np.median(residual[kept]))))
        if scatter == 0.0:
            break
        with np.errstate(invalid="ignore"):
            new_kept = finite & (residual > -low_sigma * scatter) & (residual < high_sigma * scatter)
        if int(new_kept.sum()) < least:
            msg = (
                f"the sigma clipping left {int(new_kept.sum())} of {n_finite} points, fewer than the {least}"
                " a continuum fit needs (is the spectrum dominated by lines?)"
            )
            raise ContinuumError(msg)
        if np.array_equal(new_kept, kept):
            break
        kept = new_kept
        coefficients = chebyshev.chebfit(x[kept], values[kept], degree)
        rounds += 1
    continuum = np.asarray(chebyshev.chebval(x, coefficients), dtype=np.float64)
    level = float(np.median(continuum))
    if not level > 0.0 or float(continuum.min()) <= MIN_CONTINUUM_FRACTION * level:
        msg = "the fitted continuum is not clearly positive over the whole spectrum (flux near zero?)"
        raise ContinuumError(msg)
    return ContinuumFit(continuum=continuum, degree=degree, rounds=rounds, kept=int(kept.sum()))
