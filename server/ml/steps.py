"""The preprocessing steps of 1-D spectra, one small class each, applied in an explicit order.

Pure numpy (no web stack). Every step is a frozen dataclass holding its
parameters, with ``apply(sample) -> sample`` and ``describe()``: the latter is
written into the feature store's provenance, so a matrix always says how it
was made. A spectrum a step cannot handle honestly (no overlap with the
cutout, a continuum that cannot be fitted, a constant spectrum under min-max
scaling) raises :class:`StepError`; the pipeline skips it and counts why.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..continuum import HIGH_REJECT_SIGMA, LOW_REJECT_SIGMA, ContinuumError, fit_continuum

__all__ = [
    "AirToVacuum",
    "ContinuumNormalise",
    "Cutout",
    "GaussianConvolution",
    "Grid",
    "GridKind",
    "Resample",
    "Sample",
    "Scale",
    "Scaling",
    "Step",
    "StepError",
    "VelocityShift",
    "air_to_vacuum",
]

SPEED_OF_LIGHT_KM_S = 299_792.458

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""FWHM of a Gaussian in units of its sigma (about 2.3548)."""

KERNEL_HALF_WIDTH_SIGMAS = 4.0
"""The convolution kernel is cut this many sigmas from its centre (it keeps 99.994 % of the area)."""

FloatArray = NDArray[np.float64]


class StepError(ValueError):
    """This spectrum cannot go through this step; the message says why (shown per spectrum)."""


@dataclass(frozen=True, kw_only=True)
class Sample:
    """A spectrum on its way through the steps.

    Parameters
    ----------
    wavelength
        Wavelengths in Å, strictly increasing.
    flux
        Fluxes, float64, same length.
    medium
        ``"air"`` or ``"vacuum"``: what the wavelengths are.
    header
        Original header values (e.g. ``VHELIO``), as text.
    resolving_power
        λ/Δλ of the spectrum as archived, when known.
    """

    wavelength: FloatArray
    flux: FloatArray
    medium: str = "air"
    header: dict[str, str] = field(default_factory=dict)
    resolving_power: float | None = None

    def replace(self, **changes: Any) -> Sample:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


class Step(Protocol):
    """One preprocessing step."""

    @property
    def name(self) -> str:
        """Short identifier written into provenance."""
        ...

    def apply(self, sample: Sample) -> Sample:
        """The sample after this step; raises :class:`StepError` when it cannot be done."""
        ...

    def describe(self) -> dict[str, Any]:
        """The step's name, parameters and method, for provenance (JSON-serialisable)."""
        ...


def _describe(step: Any, method: str) -> dict[str, Any]:
    fields = {f.name: getattr(step, f.name) for f in dataclasses.fields(step)}
    out: dict[str, Any] = {"step": step.name}
    for key, value in fields.items():
        described = value.describe() if hasattr(value, "describe") else value
        out[key] = str(described) if isinstance(described, enum.Enum) else described
    out["method"] = method
    return out


# -- wavelength scale ---------------------------------------------------------------------------


def air_to_vacuum(wavelength_air: FloatArray) -> FloatArray:
    """Vacuum wavelengths (Å) of air wavelengths (Å), by the IAU standard of Morton (2000).

    Morton (2000, ApJS 130, 403, eq. 8) gives the refractive index of standard air
    as a function of the vacuum wavenumber; its inversion by N. Piskunov (as used
    by VALD and SDSS) takes the air wavenumber ``s = 10^4 / λ_air`` (µm⁻¹)::

        n = 1 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s²)
              + 1.599740894897e-4 / (38.92568793293 - s²)

    and ``λ_vac = n λ_air``. Valid above 2000 Å (the IAU convention quotes
    air wavelengths only there); H-alpha 6562.80 Å in air is 6564.61 Å in vacuum.
    """
    s2 = (1.0e4 / np.asarray(wavelength_air, dtype=np.float64)) ** 2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) + 1.599740894897e-4 / (38.92568793293 - s2)
    return np.asarray(wavelength_air * n, dtype=np.float64)


@dataclass(frozen=True, kw_only=True)
class AirToVacuum:
    """Convert air wavelengths to vacuum (Morton 2000, IAU standard); vacuum spectra pass unchanged.

    Mixing archives (Ondřejov CCD700 in air, LAMOST in vacuum) on one grid
    otherwise shifts every line by about 1.8 Å at H-alpha, more than a pixel.
    """

    name: str = field(default="air_to_vacuum", init=False)

    def apply(self, sample: Sample) -> Sample:
        """Vacuum wavelengths for an air spectrum, the same sample otherwise."""
        if sample.medium != "air":
            return sample
        if float(sample.wavelength[0]) < 2000.0:
            msg = f"air wavelengths below 2000 Å ({sample.wavelength[0]:.1f}) are outside the IAU convention"
            raise StepError(msg)
        return sample.replace(wavelength=air_to_vacuum(sample.wavelength), medium="vacuum")

    def describe(self) -> dict[str, Any]:
        """Provenance."""
        return _describe(self, "Morton (2000) IAU standard air, inverted by Piskunov; applied to air spectra only")


@dataclass(frozen=True, kw_only=True)
class VelocityShift:
    """Apply the heliocentric correction the header states: ``λ ← λ (1 + v/c)`` with ``v`` from ``keyword``.

    The Ondřejov CCD700 keyword ``VHELIO`` (km/s, from IRAF ``rvcorrect``) is the
    velocity to *add* to an observed radial velocity to make it heliocentric,
    so an observed (topocentric) spectrum moves to the heliocentric frame by the
    multiplication above (first order in v/c, exact to 10⁻⁸ at 30 km/s). The
    archived CCD700 spectra already have it applied (their telluric lines sit
    at ``λ (1 + VHELIO/c)``), so applying it to them shifts them twice: this
    step is off by default and meant for spectra reduced without the correction.
    It does not remove the star's own radial velocity (that is unknown here).
    Spectra whose header lacks the keyword pass unchanged; the pipeline counts them.
    """

    keyword: str = "VHELIO"
    name: str = field(default="velocity_shift", init=False)

    def velocity(self, sample: Sample) -> float | None:
        """The velocity in km/s the header gives, if any."""
        text = sample.header.get(self.keyword)
        if text is None:
            return None
        try:
            value = float(text)
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    def apply(self, sample: Sample) -> Sample:
        """The shifted sample, or the same one where the header gives no velocity."""
        velocity = self.velocity(sample)
        if velocity is None:
            return sample
        return sample.replace(wavelength=sample.wavelength * (1.0 + velocity / SPEED_OF_LIGHT_KM_S))

    def describe(self) -> dict[str, Any]:
        """Provenance."""
        return _describe(self, f"lambda * (1 + {self.keyword}/c) where the header gives {self.keyword} (km/s)")


@dataclass(frozen=True, kw_only=True)
class Cutout:
    """Keep the pixels whose bins overlap ``[wl_min, wl_max]`` (Å).

    Bins, not centres: the pixel straddling each end is kept, so that a
    resampling onto a grid with exactly these ends still has the flux of its
    outermost bins.
    """

    wl_min: float
    wl_max: float
    name: str = field(default="cutout", init=False)

    def __post_init__(self) -> None:
        if not self.wl_min < self.wl_max:
            msg = f"wl_min ({self.wl_min}) must be below wl_max ({self.wl_max})"
            raise ValueError(msg)

    def apply(self, sample: Sample) -> Sample:
        """The pixels inside the interval; at least two must remain."""
        edges = pixel_edges(sample.wavelength)
        inside = (edges[1:] > self.wl_min) & (edges[:-1] < self.wl_max)
        if int(inside.sum()) < 2:
            lo, hi = float(sample.wavelength[0]), float(sample.wavelength[-1])
            msg = f"the spectrum ({lo:.1f}-{hi:.1f} Å) has no overlap with the cutout {self.wl_min}-{self.wl_max} Å"
            raise StepError(msg)
        return sample.replace(wavelength=sample.wavelength[inside], flux=sample.flux[inside])

    def describe(self) -> dict[str, Any]:
        """Provenance."""
        return _describe(self, "pixels whose bins overlap [wl_min, wl_max]")


# -- the common grid ----------------------------------------------------------------------------


class GridKind(enum.StrEnum):
    """Spacing of the common grid."""

    LINEAR = "linear"
    """Equal steps in wavelength."""
    LOG = "log"
    """Equal steps in ln λ: constant velocity per pixel, so a constant-R kernel is a constant number of pixels."""


@dataclass(frozen=True, kw_only=True)
class Grid:
    """A wavelength grid of ``n_points`` bins whose edges span ``[wl_min, wl_max]`` Å exactly.

    Bins, not points, are what a flux-conserving resampling needs; the centres
    (arithmetic for linear, geometric for log) are the stored wavelengths.
    """

    wl_min: float
    wl_max: float
    n_points: int
    kind: GridKind = GridKind.LINEAR

    def __post_init__(self) -> None:
        if not 0.0 < self.wl_min < self.wl_max or self.n_points < 2:
            given = f"{self.wl_min}, {self.wl_max}, {self.n_points}"
            msg = f"a grid needs 0 < wl_min < wl_max and at least 2 points, got {given}"
            raise ValueError(msg)

    @property
    def edges(self) -> FloatArray:
        """The ``n_points + 1`` bin edges."""
        match self.kind:
            case GridKind.LINEAR:
                return np.linspace(self.wl_min, self.wl_max, self.n_points + 1)
            case GridKind.LOG:
                return np.geomspace(self.wl_min, self.wl_max, self.n_points + 1)
            case _:
                msg = f"Unknown grid kind {self.kind!r}"
                raise ValueError(msg)

    @property
    def centres(self) -> FloatArray:
        """The bin centres: the feature store's wavelength axis."""
        edges = self.edges
        match self.kind:
            case GridKind.LINEAR:
                return np.asarray(0.5 * (edges[:-1] + edges[1:]), dtype=np.float64)
            case GridKind.LOG:
                return np.asarray(np.sqrt(edges[:-1] * edges[1:]), dtype=np.float64)
            case _:
                msg = f"Unknown grid kind {self.kind!r}"
                raise ValueError(msg)

    def describe(self) -> dict[str, Any]:
        """Provenance."""
        return {"wl_min": self.wl_min, "wl_max": self.wl_max, "n_points": self.n_points, "kind": str(self.kind)}


def pixel_edges(wavelength: FloatArray) -> FloatArray:
    """Edges of the pixels around the given centres: midpoints, the outer ones half a step beyond."""
    mid = 0.5 * (wavelength[:-1] + wavelength[1:])
    first = wavelength[0] - (mid[0] - wavelength[0])
    last = wavelength[-1] + (wavelength[-1] - mid[-1])
    return np.concatenate(([first], mid, [last]))


@dataclass(frozen=True, kw_only=True)
class Resample:
    """Flux-conserving resampling onto a common grid.

    Each input pixel is a bin of constant flux density; the cumulative integral
    over the input bins is interpolated (exactly, as it is piecewise linear) at
    the output bin edges, and the difference divided by each output bin's
    width. The integral of the flux over any union of output bins is therefore
    that of the input, and a flat spectrum stays flat. A spectrum must cover
    the whole grid: extrapolating flux would invent data.
    """

    grid: Grid
    name: str = field(default="resample", init=False)

    def apply(self, sample: Sample) -> Sample:
        """The sample on the grid."""
        flux = _fill_gaps(sample.flux, sample.wavelength)
        in_edges = pixel_edges(sample.wavelength)
        out_edges = self.grid.edges
        tolerance = 1e-9 * float(out_edges[-1])
        if in_edges[0] > out_edges[0] + tolerance or in_edges[-1] < out_edges[-1] - tolerance:
            msg = (
                f"the spectrum ({in_edges[0]:.2f}-{in_edges[-1]:.2f} Å) does not cover the grid"
                f" {out_edges[0]:.2f}-{out_edges[-1]:.2f} Å"
            )
            raise StepError(msg)
        cumulative = np.concatenate(([0.0], np.cumsum(flux * np.diff(in_edges))))
        at_edges = np.interp(out_edges, in_edges, cumulative)
        resampled = np.diff(at_edges) / np.diff(out_edges)
        return sample.replace(wavelength=self.grid.centres, flux=np.asarray(resampled, dtype=np.float64))

    def describe(self) -> dict[str, Any]:
        """Provenance."""
        return _describe(self, "flux-conserving: cumulative integral over pixel bins interpolated at grid bin edges")


def _fill_gaps(flux: FloatArray, wavelength: FloatArray) -> FloatArray:
    """Non-finite fluxes replaced by linear interpolation between their finite neighbours."""
    finite = np.isfinite(flux)
    if bool(finite.all()):
        return flux
    if int(finite.sum()) < 2:
        msg = "fewer than two finite flux values"
        raise StepError(msg)
    return np.asarray(np.interp(wavelength, wavelength[finite], flux[finite]), dtype=np.float64)


# -- shape of the spectrum ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ContinuumNormalise:
    """Divide by an iteratively sigma-clipped Chebyshev continuum (:mod:`vocloud.server.continuum`, as SODA does).

    ``degree = None`` chooses the degree from the span as SODA's NORMALIZE does;
    the clip sigmas are asymmetric because absorption lines are deeper than the
    noise on one side only.
    """

    degree: int | None = None
    low_sigma: float = LOW_REJECT_SIGMA
    high_sigma: float = HIGH_REJECT_SIGMA
    name: str = field(default="continuum_normalise", init=False)

    def apply(self, sample: Sample) -> Sample:
        """The flux divided by its fitted continuum."""
        try:
            fit = fit_continuum(
                sample.wavelength, sample.flux, degree=self.degree, low_sigma=self.low_sigma, high_sigma=self.high_sigma
            )
        except ContinuumError as e:
            msg = f"continuum normalisation failed: {e}"
            raise StepError(msg) from e
        return sample.replace(flux=sample.flux / fit.continuum)

    def describe(self) -> dict[str, Any]:
        """Provenance."""
        return _describe(self, "Chebyshev series fitted with iterative asymmetric robust sigma clipping")


@dataclass(frozen=True, kw_only=True)
class GaussianConvolution:
    """Degrade the spectrum to resolving power ``resolving_power`` with a Gaussian of varying width.

    The kernel's FWHM at λ is ``λ sqrt(1/R² - 1/R_in²)``: Gaussians add in
    quadrature, so the result has FWHM ``λ/R`` when the spectrum's own line
    spread was Gaussian with ``R_in`` (the archive's ``em_res_power``). When
    ``R_in`` is unknown it is taken as infinite, which over-smooths by at most
    a factor ``sqrt(1 + (R/R_in)²)`` in width; a spectrum already coarser than
    ``R`` passes unchanged. The sum is done directly over neighbouring pixels
    with per-pixel weights, so it is exact on linear and log grids alike; the
    kernel is cut at 4 sigma and renormalised at the ends of the spectrum.
    """

    resolving_power: float
    name: str = field(default="gaussian_convolution", init=False)

    def __post_init__(self) -> None:
        if not self.resolving_power > 0:
            msg = f"resolving_power must be positive, got {self.resolving_power}"
            raise ValueError(msg)

    def apply(self, sample: Sample) -> Sample:
        """The convolved sample."""
        own = sample.resolving_power
        inverse_square = 1.0 / self.resolving_power**2 - (1.0 / own**2 if own else 0.0)
        if inverse_square <= 0.0:
            return sample
        wavelength = sample.wavelength
        sigma = wavelength * math.sqrt(inverse_square) / FWHM_PER_SIGMA
        step = float(np.min(np.diff(wavelength)))
        half = max(1, math.ceil(KERNEL_HALF_WIDTH_SIGMAS * float(sigma.max()) / step))
        n = len(wavelength)
        half = min(half, n - 1)
        total = np.zeros(n)
        weights = np.zeros(n)
        flux = sample.flux
        for offset in range(-half, half + 1):
            lo, hi = max(0, -offset), min(n, n - offset)
            distance = wavelength[lo + offset : hi + offset] - wavelength[lo:hi]
            w = np.exp(-0.5 * (distance / sigma[lo:hi]) ** 2)
            total[lo:hi] += w * flux[lo + offset : hi + offset]
            weights[lo:hi] += w
        return sample.replace(flux=total / weights, resolving_power=self.resolving_power)

    def describe(self) -> dict[str, Any]:
        """Provenance."""
        return _describe(self, "Gaussian kernel, FWHM = lambda*sqrt(1/R^2 - 1/R_in^2), cut at 4 sigma")


# -- scaling ------------------------------------------------------------------------------------


class Scaling(enum.StrEnum):
    """How each spectrum's flux is scaled, each spectrum on its own (so no second pass is needed)."""

    NONE = "none"
    L2 = "l2"
    """Divided by its Euclidean norm."""
    MINMAX = "minmax"
    """Mapped linearly onto [0, 1]."""
    MINMAX_SYMMETRIC = "minmax_symmetric"
    """Mapped linearly onto [-1, 1]."""
    ZSCORE = "zscore"
    """Mean subtracted, divided by the standard deviation."""


@dataclass(frozen=True, kw_only=True)
class Scale:
    """Scale each spectrum's flux on its own (see :class:`Scaling`)."""

    scaling: Scaling
    name: str = field(default="scale", init=False)

    def apply(self, sample: Sample) -> Sample:
        """The scaled sample; a spectrum without spread cannot be min-max or z-scored."""
        flux = sample.flux
        match self.scaling:
            case Scaling.NONE:
                return sample
            case Scaling.L2:
                scale = float(np.linalg.norm(flux))
                if scale == 0.0:
                    raise StepError("the spectrum is zero everywhere: no L2 norm to divide by")
                out = flux / scale
            case Scaling.MINMAX | Scaling.MINMAX_SYMMETRIC:
                lo, hi = float(flux.min()), float(flux.max())
                if hi <= lo:
                    raise StepError("the spectrum is constant: min-max scaling is undefined")
                out = (flux - lo) / (hi - lo)
                if self.scaling is Scaling.MINMAX_SYMMETRIC:
                    out = 2.0 * out - 1.0
            case Scaling.ZSCORE:
                spread = float(flux.std())
                if spread == 0.0:
                    raise StepError("the spectrum is constant: z-score scaling is undefined")
                out = (flux - float(flux.mean())) / spread
            case _:
                msg = f"Unknown scaling {self.scaling!r}"
                raise ValueError(msg)
        return sample.replace(flux=np.asarray(out, dtype=np.float64))

    def describe(self) -> dict[str, Any]:
        """Provenance."""
        return _describe(self, "per spectrum")
