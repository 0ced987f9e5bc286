"""A synthetic archive shaped like Ondřejov CCD700 H-alpha spectra, for demos and benchmarks.

Why this exists: the real archive (about 13,000 labelled spectra) cannot be
shipped, yet tutorials, ``vocloud serve`` on an empty archive and the
active-learning benchmark need thousands of spectra with known classes. This
module writes them: original-style IRAF 1-D FITS files (1997 float32 pixels,
``CTYPE1 = 'LINEAR'``, about 6253-6777 Å in air, counts in ADU, the CCD700
header keywords) and, kept apart, the true class of each (``labels.csv``, the
later "simulated expert") and every drawn parameter (``truth.csv``).

What the spectra are made of, and what real files each part imitates
(``shared/data/ondrejov-ccd700``):

* A photosphere of one of four groups (B, A, F, G-K): pseudo-Voigt H-alpha with
  group-dependent depth and Stark-like wings, He I 6678, C II, Si II, Ne I,
  Fe II and, for cool stars, about seventy Fe I/Ca I/Ni I/... lines; shifted by
  the star's heliocentric radial velocity and convolved with the rotational
  profile (Gray's kernel with linear limb darkening, integrated exactly over
  each pixel) and the spectrograph's resolution (R ≈ 13,000).
* H-alpha emission for the ``emission`` and ``double-peak`` classes: two
  Gaussians at ±s/2 with width ratio ``r = sigma / (s/2)`` (a disc seen at some
  inclination): ``r`` above about 0.95 gives one peak, 0.8-0.95 a flat top or
  a dip of a few per cent (still ``emission``, like the real BT CMi), below 0.8
  two peaks with a central depression (``double-peak``); with V/R asymmetry,
  electron-scattering wings, optional shell absorption, weak emission that only
  fills in the photospheric line, and narrow P-Cygni-like emission of cool
  supergiants. The classes meet on purpose around ``r`` ≈ 0.8 and where weak
  emission hides in an absorption line, as human labels do.
* Interstellar bands (6284, 6614, ...) scaled with a drawn E(B-V).
* Telluric O2 (gamma band, 6277-6330 Å) and H2O (6455-6600 Å) lines at fixed
  topocentric wavelengths, scaled with airmass and humidity. The real CCD700
  files are corrected to the heliocentric frame (their telluric lines sit at
  ``λ(1 + VHELIO/c)``: on the three originals the telluric shift minus
  ``VHELIO`` agrees to 0.6 km/s), so these files are too, with ``VHELIO``
  computed from the position and the time of the fake observation. Telluric
  lines never move with the star's radial velocity.
* A sloped, slightly curved continuum of thousands to hundreds of thousands of
  ADU, with Poisson noise (gain 1.07 e-/ADU), read noise over the extraction
  aperture (``APNUM1``) and a flat-field floor; a few residual cosmic rays. The
  signal-to-noise ratio is drawn first (median about 140, as in the real files)
  and the counts follow from it.

Stars repeat: each class has a pool of stars observed a few times each (some
often, as real programme stars are), with radial velocities of binaries and the
emission strength and V/R varying between epochs. ``truth.csv`` names the star,
so that analyses can split by star.

Everything is drawn from one seeded generator and written without wall-clock
dates, so the same ``seed`` and ``count`` give byte-identical files. The
spectra are built in vectorised batches and the FITS files are written by a
small card formatter (astropy's writer costs about 12 ms a file, more than
everything else together); the tests read them back with astropy and verify
them. Pure numpy: no web stack, importable from worker processes.
"""

from __future__ import annotations

import csv
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CLASS_WEIGHTS",
    "DEFAULT_COUNT",
    "DEMO_DID_PREFIX",
    "LABELS",
    "N_PIXELS",
    "DemoSummary",
    "generate_demo_archive",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

DEFAULT_COUNT: Final = 3000
"""Spectra in a demo archive unless asked otherwise: enough to train on, written in a few seconds."""

DEMO_DID_PREFIX: Final = "ivo://vocloud.demo/ccd700/"
"""Publisher DIDs of demo spectra; the authority is not the real archive's (``asu.cas.cz``)."""

LABELS: Final = ("absorption", "emission", "double-peak")
"""The classes, as the real Ondřejov labels name them."""

CLASS_WEIGHTS: Final = (6102, 5301, 1533)
"""Class sizes of the real labelled Ondřejov CCD700 set; the demo keeps these proportions."""

N_PIXELS: Final = 1997
"""Pixels of an original CCD700 H-alpha spectrum."""

C_KM_S: Final = 299_792.458
HALPHA: Final = 6562.797
"""H-alpha, air wavelength (Å)."""

HEI_6678: Final = 6678.151
NII_6548, NII_6583 = 6548.05, 6583.45

RESOLVING_POWER: Final = 13_000.0
"""CCD700 with the 700 mm camera and a 0.2 mm slit (two pixels per resolution element)."""

GAIN: Final = 1.07
"""Electrons per ADU (``GAIN`` of the real headers)."""

READ_NOISE: Final = 7.0
"""Electrons per pixel (``READNOIS``)."""

FLAT_FLOOR: Final = 0.0009
"""Relative noise that no exposure beats (flat-field residuals): caps S/N near 1100."""

_SNR_MAX: Final = 550.0
"""Highest S/N drawn: it takes about 370,000 ADU per pixel, as much as the brightest real originals hold."""

ONDREJOV_LAT: Final = 49.910555
ONDREJOV_LON: Final = 14.783611
"""Degrees, east positive (``LATITUDE``/``LONGITUD`` of the real headers)."""

_NFFT: Final = 2048
"""FFT length for the rotational convolution: at least ``N_PIXELS`` plus the widest kernel."""

_KMAX: Final = 48
"""Half-width of the rotational kernel in pixels (vsini 450 km/s is 38 pixels)."""

_SIGMA_INST: Final = HALPHA / RESOLVING_POWER / (2.0 * math.sqrt(2.0 * math.log(2.0)))
"""Gaussian sigma of the instrumental profile, Å."""

_BATCH: Final = 256
"""Spectra built at once: large enough for numpy to amortise, small enough to stay in cache-sized arrays."""

# --- line tables -------------------------------------------------------------------------------

# Photospheric lines other than H-alpha: (air wavelength Å, species group, base depth, intrinsic sigma Å).
# Groups: 0 He I, 1 C II, 2 Si II, 3 Ne I, 4 Fe II, 5 neutral metals (depth for a K giant).
_PHOTO_LINES: Final = (
    (6678.151, 0, 1.0, 0.35),
    (6578.05, 1, 1.0, 0.15), (6582.88, 1, 0.8, 0.15),
    (6347.11, 2, 1.0, 0.20), (6371.37, 2, 0.8, 0.20),
    (6402.25, 3, 1.0, 0.12),
    (6456.38, 4, 1.0, 0.12), (6516.08, 4, 0.9, 0.12), (6432.68, 4, 0.6, 0.12), (6416.92, 4, 0.5, 0.12),
    (6369.46, 4, 0.4, 0.12), (6247.56, 4, 0.6, 0.12),
    (6393.60, 5, 0.40, 0.10), (6400.00, 5, 0.40, 0.10), (6411.65, 5, 0.35, 0.10), (6421.35, 5, 0.35, 0.10),
    (6430.85, 5, 0.35, 0.10), (6494.98, 5, 0.45, 0.10), (6677.99, 5, 0.35, 0.10), (6546.24, 5, 0.30, 0.10),
    (6592.91, 5, 0.35, 0.10), (6750.15, 5, 0.30, 0.10), (6439.07, 5, 0.45, 0.10), (6462.57, 5, 0.40, 0.10),
    (6493.78, 5, 0.35, 0.10), (6717.68, 5, 0.35, 0.10), (6449.81, 5, 0.30, 0.10), (6471.66, 5, 0.25, 0.10),
    (6499.65, 5, 0.25, 0.10), (6455.60, 5, 0.20, 0.10), (6508.85, 5, 0.15, 0.10), (6496.90, 5, 0.40, 0.10),
    (6643.63, 5, 0.35, 0.10), (6767.77, 5, 0.35, 0.10), (6327.59, 5, 0.20, 0.10), (6482.80, 5, 0.20, 0.10),
    (6586.31, 5, 0.20, 0.10), (6772.31, 5, 0.15, 0.10), (6721.85, 5, 0.15, 0.10), (6258.10, 5, 0.25, 0.10),
    (6261.10, 5, 0.25, 0.10), (6743.12, 5, 0.12, 0.10), (6604.60, 5, 0.15, 0.10), (6696.02, 5, 0.12, 0.10),
    (6698.67, 5, 0.10, 0.10), (6301.50, 5, 0.35, 0.10), (6302.49, 5, 0.30, 0.10), (6318.02, 5, 0.25, 0.10),
    (6322.69, 5, 0.20, 0.10), (6335.33, 5, 0.25, 0.10), (6336.82, 5, 0.25, 0.10), (6344.15, 5, 0.20, 0.10),
    (6355.03, 5, 0.25, 0.10), (6358.68, 5, 0.25, 0.10), (6380.74, 5, 0.15, 0.10), (6408.02, 5, 0.25, 0.10),
    (6469.19, 5, 0.15, 0.10), (6475.62, 5, 0.20, 0.10), (6481.87, 5, 0.20, 0.10), (6498.94, 5, 0.20, 0.10),
    (6518.37, 5, 0.15, 0.10), (6533.93, 5, 0.12, 0.10), (6569.21, 5, 0.20, 0.10), (6575.02, 5, 0.20, 0.10),
    (6581.21, 5, 0.15, 0.10), (6593.87, 5, 0.30, 0.10), (6597.56, 5, 0.12, 0.10), (6609.11, 5, 0.20, 0.10),
    (6625.02, 5, 0.12, 0.10), (6633.75, 5, 0.20, 0.10), (6646.93, 5, 0.10, 0.10), (6663.44, 5, 0.20, 0.10),
    (6703.57, 5, 0.15, 0.10), (6705.10, 5, 0.12, 0.10), (6710.32, 5, 0.10, 0.10), (6726.67, 5, 0.15, 0.10),
    (6733.15, 5, 0.12, 0.10), (6739.52, 5, 0.10, 0.10), (6752.71, 5, 0.15, 0.10), (6707.80, 5, 0.05, 0.10),
)  # fmt: skip

# Diffuse interstellar bands: (air wavelength Å, FWHM Å, central depth per magnitude of E(B-V)).
_DIBS: Final = (
    (6283.84, 4.0, 0.21), (6613.62, 1.1, 0.19), (6379.32, 0.6, 0.14), (6660.71, 0.7, 0.07),
    (6269.85, 1.2, 0.06), (6376.08, 0.7, 0.04), (6445.28, 0.5, 0.04), (6699.32, 0.6, 0.03),
)  # fmt: skip

# Telluric lines: (topocentric air wavelength Å, depth at airmass 1.3 and median humidity).
# Measured on a median stack of the real CCD700 files after removing each file's
# heliocentric correction; the water lines agree with HITRAN positions to ~0.1 Å.
_O2_LINES: Final = (
    (6276.96, 0.13), (6277.94, 0.16), (6280.24, 0.04), (6281.96, 0.07), (6285.86, 0.027), (6287.80, 0.032),
    (6289.44, 0.03), (6290.24, 0.048), (6292.88, 0.058), (6295.20, 0.05), (6295.96, 0.055), (6298.52, 0.05),
    (6299.18, 0.062), (6302.04, 0.05), (6302.68, 0.056), (6306.54, 0.046), (6310.66, 0.033), (6315.10, 0.027),
    (6316.40, 0.022), (6319.72, 0.034), (6323.84, 0.027), (6329.08, 0.014), (6332.12, 0.012),
)  # fmt: skip
_H2O_LINES: Final = (
    (6391.68, 0.012), (6419.38, 0.013), (6444.10, 0.010), (6454.12, 0.014), (6458.74, 0.025), (6460.08, 0.016),
    (6461.90, 0.016), (6464.40, 0.026), (6466.42, 0.026), (6467.82, 0.020), (6469.58, 0.040), (6472.76, 0.033),
    (6475.26, 0.075), (6477.12, 0.018), (6480.02, 0.054), (6483.56, 0.079), (6486.80, 0.028), (6489.10, 0.020),
    (6490.78, 0.064), (6492.88, 0.065), (6495.84, 0.065), (6497.70, 0.035), (6504.12, 0.022), (6508.68, 0.035),
    (6512.10, 0.030), (6514.76, 0.055), (6516.58, 0.060), (6519.46, 0.045), (6522.02, 0.014), (6523.76, 0.053),
    (6530.78, 0.015), (6532.36, 0.056), (6534.14, 0.030), (6536.78, 0.020), (6542.22, 0.027), (6543.91, 0.070),
    (6545.88, 0.015), (6548.62, 0.050), (6552.63, 0.070), (6554.06, 0.020), (6557.17, 0.060), (6560.56, 0.050),
    (6564.06, 0.045), (6568.81, 0.040), (6570.54, 0.025), (6572.09, 0.060), (6574.85, 0.070), (6579.36, 0.015),
    (6580.78, 0.022), (6583.60, 0.025), (6586.60, 0.035), (6594.37, 0.020), (6599.33, 0.025), (6602.18, 0.012),
    (6612.40, 0.013),
)  # fmt: skip

# --- spectral groups ------------------------------------------------------------------------------

_GROUPS: Final = ("B", "A", "F", "GK")
_GROUP_PROB: Final = {
    "absorption": (0.40, 0.40, 0.12, 0.08),
    "emission": (0.80, 0.10, 0.02, 0.08),
    "double-peak": (0.92, 0.08, 0.0, 0.0),
}
"""Spectral groups per class: the archive's emission-line stars are mostly Be stars."""

# Per group: H-alpha depth, Gaussian sigma (Å), Lorentzian HWHM (Å), Lorentzian fraction (ranges);
# strengths of He I, C II, Si II, Ne I, Fe II, metals (ranges).
_HALPHA_RANGES: Final = (
    ((0.38, 0.52), (1.0, 1.8), (4.0, 7.0), (0.4, 0.6)),
    ((0.55, 0.75), (0.8, 1.5), (5.0, 10.0), (0.5, 0.7)),
    ((0.50, 0.65), (0.6, 1.0), (2.0, 4.0), (0.4, 0.6)),
    ((0.55, 0.75), (0.35, 0.6), (0.4, 1.0), (0.3, 0.5)),
)
_SPECIES_RANGES: Final = (
    ((0.10, 0.30), (0.03, 0.08), (0.03, 0.10), (0.0, 0.05), (0.0, 0.02), (0.0, 0.0)),
    ((0.0, 0.0), (0.0, 0.0), (0.10, 0.25), (0.0, 0.0), (0.05, 0.15), (0.02, 0.10)),
    ((0.0, 0.0), (0.0, 0.0), (0.08, 0.15), (0.0, 0.0), (0.10, 0.20), (0.30, 0.60)),
    ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.05, 0.12), (0.70, 1.20)),
)

# Emission kinds.
_NONE, _DISC, _DOUBLE, _NARROW, _INFILL = 0, 1, 2, 3, 4
_KIND_NAMES: Final = ("none", "disc", "double", "narrow-pcyg", "infill")


@dataclass(frozen=True, kw_only=True)
class DemoSummary:
    """What :func:`generate_demo_archive` wrote.

    Parameters
    ----------
    out_dir
        The archive's folder: ``spectra/*.fit``, ``labels.csv``, ``truth.csv``.
    count
        Spectra written.
    seed
        Seed they were drawn with.
    classes
        Spectra per class label.
    seconds
        Wall-clock time of the generation.
    """

    out_dir: Path
    count: int
    seed: int
    classes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def spectra_dir(self) -> Path:
        """Folder of the FITS files."""
        return self.out_dir / "spectra"

    @property
    def labels_path(self) -> Path:
        """``id,label`` of every spectrum: the simulated expert's answers."""
        return self.out_dir / "labels.csv"

    @property
    def truth_path(self) -> Path:
        """Every drawn parameter of every spectrum."""
        return self.out_dir / "truth.csv"

    @property
    def files_per_s(self) -> float:
        """Generation rate."""
        return self.count / self.seconds if self.seconds > 0 else float("inf")


def generate_demo_archive(
    out_dir: Path,
    *,
    count: int = DEFAULT_COUNT,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DemoSummary:
    """Write a demo archive of ``count`` synthetic CCD700 spectra into ``out_dir``.

    Parameters
    ----------
    out_dir
        Created if missing. Receives ``spectra/<name>.fit``, ``labels.csv``
        (``id,label``, the DID and the true class) and ``truth.csv`` (all drawn
        parameters, for analysis; not for the learner).
    count
        Number of spectra; the classes keep the real archive's proportions.
    seed
        Seed of every random draw: the same seed and count give the same bytes.
    overwrite
        Replace the ``demo*.fit`` files of an earlier demo archive in ``spectra/``
        instead of refusing.
    progress
        Called as ``progress(done, count)`` after each batch, e.g. to log.

    Returns
    -------
    DemoSummary
        Counts per class, time taken and the paths.

    Raises
    ------
    ValueError
        Raised if ``count`` is below 1 or ``seed`` is negative, or if
        ``spectra/`` already holds files and ``overwrite`` is false.
    OSError
        Raised if the files cannot be written.
    """
    if count < 1:
        msg = f"count must be at least 1, got {count}"
        raise ValueError(msg)
    if seed < 0:
        msg = f"seed must be zero or positive, got {seed}"
        raise ValueError(msg)
    start = time.perf_counter()
    spectra_dir = out_dir / "spectra"
    if spectra_dir.is_dir() and any(spectra_dir.iterdir()):
        if not overwrite:
            msg = f"{spectra_dir} already holds files; choose an empty folder, or overwrite (--overwrite)"
            raise ValueError(msg)
        for old in spectra_dir.glob("demo*.fit"):
            old.unlink()
    spectra_dir.mkdir(parents=True, exist_ok=True)

    param_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
    draws = _draw(np.random.default_rng(param_seq), count)
    noise_rng = np.random.default_rng(noise_seq)
    for lo in range(0, count, _BATCH):
        hi = min(lo + _BATCH, count)
        flux = _render(draws, slice(lo, hi), noise_rng)
        for i in range(lo, hi):
            _write_fits(spectra_dir / f"{draws.names[i]}.fit", _header(draws, i), flux[i - lo])
        if progress is not None:
            progress(hi, count)
    _write_tables(out_dir, draws)
    classes = {label: int(np.sum(draws.label == k)) for k, label in enumerate(LABELS)}
    return DemoSummary(out_dir=out_dir, count=count, seed=seed, classes=classes, seconds=time.perf_counter() - start)


# --- drawing the parameters ---------------------------------------------------------------------


@dataclass(kw_only=True)
class _Draws:
    """Every per-spectrum parameter, as arrays of length ``count`` (or per line where noted)."""

    names: list[str]
    objects: list[str]
    star: IntArray
    label: IntArray
    group: IntArray
    ra_deg: FloatArray
    dec_deg: FloatArray
    # observation
    jd_start: FloatArray
    exptime: FloatArray
    hour_angle_h: FloatArray
    airmass: FloatArray
    vhelio: FloatArray
    hjd: FloatArray  # mid-exposure
    # wavelength solution
    crval: FloatArray
    cdelt: FloatArray
    # star
    rv: FloatArray
    vsini: FloatArray
    limb: FloatArray
    ha_depth: FloatArray
    ha_sigma: FloatArray
    ha_gamma: FloatArray
    ha_eta: FloatArray
    species: FloatArray  # (count, 6)
    ebv: FloatArray
    v_ism: FloatArray
    # emission
    kind: IntArray
    em_height: FloatArray
    em_half_sep: FloatArray  # km/s
    em_sigma: FloatArray  # km/s
    em_ratio: FloatArray  # sigma / (s/2)
    em_vr: FloatArray
    em_wing: FloatArray
    em_wing_width: FloatArray  # km/s
    hei_em: FloatArray
    nii_em: FloatArray
    abs_depth: FloatArray  # shell / P Cygni absorption, relative
    abs_vel: FloatArray  # km/s
    abs_sigma: FloatArray  # km/s
    # continuum and noise
    snr: FloatArray
    counts: FloatArray  # ADU at 6640 Å
    slope: FloatArray  # (count, 3) polynomial coefficients
    aperture: FloatArray
    aperture_lo: FloatArray
    water: FloatArray
    oxygen: FloatArray
    cosmics: IntArray
    # housekeeping keywords (cosmetic): humidity %, outside °C, dome - outside °C, pressure hPa,
    # CCD °C, overscan mean, flat scale; grating position, dichroic, first CCD row of the aperture
    weather: FloatArray  # (count, 7)
    setup: IntArray  # (count, 3)


@dataclass(kw_only=True)
class _Emission:
    """H-alpha emission of each star; velocities and widths in km/s, heights relative to the continuum.

    ``ratio`` is ``r = sigma / (s/2)``, the width of each of the two Gaussians over
    half their separation: it decides between one peak and two.
    """

    kind: IntArray
    height: FloatArray
    ratio: FloatArray
    half_sep: FloatArray
    sigma: FloatArray
    wing: FloatArray
    wing_width: FloatArray
    hei: FloatArray
    nii: FloatArray
    abs_depth: FloatArray
    abs_vel: FloatArray
    abs_sigma: FloatArray

    @classmethod
    def none(cls, m: int) -> _Emission:
        """No emission for ``m`` stars."""
        return cls(
            kind=np.zeros(m, dtype=np.int64),
            height=np.zeros(m),
            ratio=np.ones(m),
            half_sep=np.zeros(m),
            sigma=np.zeros(m),
            wing=np.zeros(m),
            wing_width=np.zeros(m),
            hei=np.zeros(m),
            nii=np.zeros(m),
            abs_depth=np.zeros(m),
            abs_vel=np.zeros(m),
            abs_sigma=np.full(m, 30.0),
        )


@dataclass(frozen=True, kw_only=True)
class _Stars:
    """Fixed properties of each star of the pools."""

    group: IntArray
    ra: FloatArray
    dec: FloatArray
    names: list[str]
    vsini: FloatArray
    limb: FloatArray
    ha: FloatArray  # (stars, 4): depth, Gaussian sigma Å, Lorentzian HWHM Å, Lorentzian fraction
    species: FloatArray  # (stars, 6)
    gamma: FloatArray
    k_orbit: FloatArray
    ebv: FloatArray
    v_ism: FloatArray
    emission: _Emission


def _class_sizes(count: int) -> list[int]:
    """Spectra per class in the real proportions, rounded by largest remainder so they sum to ``count``."""
    weights = np.asarray(CLASS_WEIGHTS, dtype=np.float64)
    exact = count * weights / weights.sum()
    sizes = np.floor(exact).astype(np.int64)
    for k in np.argsort(-(exact - sizes), kind="stable")[: count - int(sizes.sum())]:
        sizes[k] += 1
    return [int(s) for s in sizes]


def _draw(rng: np.random.Generator, count: int) -> _Draws:
    """Draw stars, observations and every spectrum's parameters."""
    labels: list[IntArray] = []
    stars: list[IntArray] = []
    n_star_total = 0
    star_label: list[int] = []
    for k, size in enumerate(_class_sizes(count)):
        if size == 0:
            continue
        # A pool of stars per class, observed 2.5 times each on average; programme stars far more often.
        n_stars = max(1, round(size / 2.5))
        weights = 1.0 / np.sqrt(np.arange(1, n_stars + 1))
        pick = rng.choice(n_stars, size=size, p=weights / weights.sum())
        labels.append(np.full(size, k, dtype=np.int64))
        stars.append(pick + n_star_total)
        star_label.extend([k] * n_stars)
        n_star_total += n_stars
    order = rng.permutation(count)
    label = np.concatenate(labels)[order]
    star = np.concatenate(stars)[order]
    s_label = np.asarray(star_label, dtype=np.int64)

    st = _draw_stars(rng, s_label)
    n = count
    obs = _draw_observations(rng, st.ra[star], st.dec[star])

    # Epoch-to-epoch changes: binary orbits, emission strength, V/R.
    phase = rng.random(n) * 2.0 * np.pi
    rv = st.gamma[star] + st.k_orbit[star] * np.sin(phase)
    em = st.emission
    kind = em.kind[star]
    em_height = em.height[star] * np.exp(rng.normal(0.0, 0.15, n))
    em_vr = np.where(kind == _DOUBLE, np.exp(rng.normal(0.0, 0.25, n)), np.exp(rng.normal(0.0, 0.08, n)))

    snr = np.clip(np.exp(rng.normal(math.log(140.0), 0.75, n)), 8.0, _SNR_MAX)
    aperture = rng.uniform(14.0, 60.0, n)
    electrons = _electrons_for_snr(snr, aperture)
    slope = np.column_stack([rng.normal(-0.12, 0.06, n), rng.normal(-0.03, 0.03, n), rng.normal(0.0, 0.015, n)]).astype(
        np.float64
    )
    humidity = np.exp(rng.normal(math.log(0.8), 0.45, n))
    cosmics = np.where(rng.random(n) < 0.03, rng.integers(1, 4, n), 0).astype(np.int64)

    names = _names(obs["jd_start"])
    objects = [st.names[j] for j in star]
    return _Draws(
        names=names,
        objects=objects,
        star=star,
        label=label,
        group=st.group[star],
        ra_deg=st.ra[star],
        dec_deg=st.dec[star],
        jd_start=obs["jd_start"],
        exptime=obs["exptime"],
        hour_angle_h=obs["hour_angle"],
        airmass=obs["airmass"],
        vhelio=obs["vhelio"],
        hjd=obs["hjd"],
        crval=rng.uniform(6252.5, 6266.0, n),
        cdelt=0.25668 + rng.normal(0.0, 0.00002, n),
        rv=rv,
        vsini=st.vsini[star],
        limb=st.limb[star],
        ha_depth=st.ha[star, 0],
        ha_sigma=st.ha[star, 1],
        ha_gamma=st.ha[star, 2],
        ha_eta=st.ha[star, 3],
        species=st.species[star],
        ebv=st.ebv[star],
        v_ism=st.v_ism[star],
        kind=kind,
        em_height=em_height,
        em_half_sep=em.half_sep[star],
        em_sigma=em.sigma[star],
        em_ratio=em.ratio[star],
        em_vr=em_vr,
        em_wing=em.wing[star],
        em_wing_width=em.wing_width[star],
        hei_em=em.hei[star],
        nii_em=em.nii[star],
        abs_depth=em.abs_depth[star],
        abs_vel=em.abs_vel[star],
        abs_sigma=em.abs_sigma[star],
        snr=snr,
        counts=electrons / GAIN,
        slope=slope,
        aperture=aperture,
        aperture_lo=rng.uniform(25.0, 90.0, n),
        water=humidity * obs["airmass"] / 1.3,
        oxygen=obs["airmass"] / 1.3 * rng.uniform(0.9, 1.1, n),
        cosmics=cosmics,
        weather=np.column_stack(
            [
                rng.uniform(30.0, 95.0, n),
                rng.uniform(-12.0, 28.0, n),
                rng.uniform(0.0, 4.0, n),
                rng.uniform(945.0, 975.0, n),
                rng.uniform(-100.5, -99.5, n),
                rng.uniform(620.0, 645.0, n),
                rng.uniform(9000.0, 30000.0, n),
            ]
        ),
        setup=np.column_stack(
            [rng.choice([6457, 10889, 10890], n), rng.integers(1, 3, n), rng.integers(400, 440, n)]
        ).astype(np.int64),
    )


def _draw_stars(rng: np.random.Generator, s_label: IntArray) -> _Stars:
    """Fixed properties of each star: position, group, rotation, photosphere and emission disc."""
    m = len(s_label)
    group = np.empty(m, dtype=np.int64)
    for k, label in enumerate(LABELS):
        sel = s_label == k
        group[sel] = rng.choice(len(_GROUPS), size=int(sel.sum()), p=_GROUP_PROB[label])
    # Positions over the sky visible from Ondřejov (Dec -15° to +75°, uniform on the sphere).
    ra = rng.uniform(0.0, 360.0, m)
    dec = np.degrees(np.arcsin(rng.uniform(math.sin(math.radians(-15.0)), math.sin(math.radians(75.0)), m)))
    names = [_object_name(a, d) for a, d in zip(ra, dec, strict=True)]

    emitter = s_label > 0
    median_vsini = np.array([100.0, 90.0, 25.0, 6.0])[group]
    spread = np.array([0.7, 0.8, 0.7, 0.6])[group]
    vsini = np.exp(rng.normal(np.log(median_vsini), spread))
    vsini = np.clip(vsini, np.array([10.0, 8.0, 3.0, 1.0])[group], np.array([400.0, 320.0, 150.0, 30.0])[group])
    be = emitter & (group <= 1)  # Be stars rotate fast, most of them near break-up
    vsini[be] = rng.uniform(150.0, 420.0, int(be.sum()))
    limb = rng.uniform(0.35, 0.75, m)

    ha = np.empty((m, 4))
    species = np.empty((m, 6))
    for g in range(len(_GROUPS)):
        sel = np.flatnonzero(group == g)
        for q in range(4):
            lo, hi = _HALPHA_RANGES[g][q]
            ha[sel, q] = rng.uniform(lo, hi, len(sel))
        for q in range(6):
            lo, hi = _SPECIES_RANGES[g][q]
            species[sel, q] = rng.uniform(lo, hi, len(sel))

    gamma = rng.normal(-5.0, 20.0, m)
    k_orbit = np.where(rng.random(m) < 0.2, rng.uniform(10.0, 60.0, m), 0.0)
    ebv = np.clip(rng.exponential(0.25, m), 0.0, 1.5)
    v_ism = rng.normal(0.0, 8.0, m)

    return _Stars(
        group=group,
        ra=ra,
        dec=dec,
        names=names,
        vsini=vsini,
        limb=limb,
        ha=ha,
        species=species,
        gamma=gamma,
        k_orbit=k_orbit,
        ebv=ebv,
        v_ism=v_ism,
        emission=_draw_emission(rng, s_label, group, vsini),
    )


def _draw_emission(rng: np.random.Generator, s_label: IntArray, group: IntArray, vsini: FloatArray) -> _Emission:
    """The emission (and shell or P Cygni absorption) of each star's H-alpha.

    ``r = sigma / (s/2)`` sets the look: one peak for ``r`` above about 0.95, a
    flat top or a dip of a few per cent for 0.8-0.95 (some ``emission`` stars, like
    BT CMi among the real ones), two clear peaks below about 0.8
    (``double-peak``). Heights are those of the emission alone above the
    continuum, before the photospheric line is added.
    """
    em = _Emission.none(len(s_label))
    u = rng.random((len(s_label), 8))
    lognormal = np.exp(rng.normal(0.0, 1.0, len(s_label)))
    _absorption_traces(em, s_label == 0, u)
    _emission_class(em, s_label == 1, group, u, lognormal)
    _double_peak_class(em, s_label == 2, u, lognormal)
    _disc_geometry(em, rng, vsini, u)
    return em


def _absorption_traces(em: _Emission, sel: NDArray[np.bool_], u: FloatArray) -> None:
    """One absorption star in ten has a trace of emission that fills its line core a little."""
    trace = sel & (u[:, 0] < 0.10)
    em.kind[trace] = _INFILL
    em.height[trace] = 0.02 + 0.08 * u[trace, 1]
    em.ratio[trace] = 0.9 + 1.1 * u[trace, 2]


def _emission_class(
    em: _Emission, sel: NDArray[np.bool_], group: IntArray, u: FloatArray, lognormal: FloatArray
) -> None:
    """Single-peaked emission: Be discs (strong, flat-topped, or weak and only filling the line in)
    and, for F-K stars, narrow emission with a blue-shifted absorption (P Cygni-like, as V509 Cas)."""
    cool = sel & (group >= 2)
    em.kind[cool] = _NARROW
    em.height[cool] = 0.3 + 1.2 * u[cool, 1]
    em.abs_depth[cool] = 0.2 + 0.4 * u[cool, 2]
    em.abs_vel[cool] = -(20.0 + 60.0 * u[cool, 3])
    em.abs_sigma[cool] = 15.0 + 20.0 * u[cool, 4]
    em.nii[cool] = 0.4 * u[cool, 5]
    em.sigma[cool] = 25.0 + 35.0 * u[cool, 6]
    hot = sel & (group < 2)
    weak = hot & (u[:, 0] < 0.12)
    dip = hot & (u[:, 0] >= 0.12) & (u[:, 0] < 0.24)
    single = hot & (u[:, 0] >= 0.24)
    em.kind[hot] = _DISC
    em.kind[weak] = _INFILL
    em.height[weak] = 0.12 + 0.33 * u[weak, 1]
    em.ratio[weak] = 0.9 + 1.1 * u[weak, 2]
    em.height[dip] = np.clip(1.2 * lognormal[dip] ** 0.5, 0.3, 5.0)
    em.ratio[dip] = 0.80 + 0.15 * u[dip, 2]
    em.height[single] = np.clip(2.0 * lognormal[single] ** 0.7, 0.3, 10.0)
    em.ratio[single] = 0.95 + 1.55 * u[single, 2]
    shell = dip & (u[:, 6] < 0.15)
    em.abs_depth[shell] = 0.1 + 0.2 * u[shell, 7]


def _double_peak_class(em: _Emission, sel: NDArray[np.bool_], u: FloatArray, lognormal: FloatArray) -> None:
    """Two peaks with a central depression; a quarter are shell stars with a narrow central absorption."""
    em.kind[sel] = _DOUBLE
    em.height[sel] = np.clip(0.9 * lognormal[sel] ** 0.6, 0.2, 5.0)
    em.ratio[sel] = 0.35 + 0.45 * u[sel, 2] ** 0.8
    shell = sel & (u[:, 6] < 0.25)
    em.abs_depth[shell] = 0.2 + 0.5 * u[shell, 7]


def _disc_geometry(em: _Emission, rng: np.random.Generator, vsini: FloatArray, u: FloatArray) -> None:
    """Peak separations and widths of the disc profiles.

    Single-peaked discs get a FWHM of about 150-500 km/s; the peak separation of
    double-peaked ones follows vsini (0.7-1.4 vsini, cf. Hanuschik 1988).
    """
    disc = (em.kind == _DISC) | (em.kind == _INFILL) | (em.kind == _DOUBLE)
    fwhm = np.exp(rng.normal(math.log(280.0), 0.3, len(vsini)))
    half_single = fwhm / (2.3548 * np.sqrt(1.0 + em.ratio**2))
    half_double = np.clip(vsini * (0.35 + 0.35 * u[:, 3]), 50.0, 250.0)
    em.half_sep[disc] = np.where(em.kind[disc] == _DOUBLE, half_double[disc], half_single[disc])
    em.sigma[disc] = em.ratio[disc] * em.half_sep[disc]
    em.wing[disc] = 0.25 * u[disc, 4]
    em.wing_width[:] = (1.0 + u[:, 5]) * (em.half_sep + em.sigma)
    strong = disc & (em.height > 1.0)
    em.hei[strong] = 0.06 * u[strong, 5]
    em.abs_sigma[disc] = 20.0 + 25.0 * u[disc, 7]


def _electrons_for_snr(snr: FloatArray, aperture: FloatArray) -> FloatArray:
    """Continuum electrons per pixel that give ``snr`` with Poisson, read and flat-field noise.

    Solves ``S² (N + n RN² + f² N²) = N²`` for ``N``.
    """
    s2 = snr**2
    a = 1.0 - s2 * FLAT_FLOOR**2
    b = s2
    c = s2 * aperture * READ_NOISE**2
    return np.asarray((b + np.sqrt(b**2 + 4.0 * a * c)) / (2.0 * a), dtype=np.float64)


def _object_name(ra: float, dec: float) -> str:
    """A plausible but fictitious catalogue name from the position (``VCD J215718.2+611739``)."""
    h = ra / 15.0
    hh, rem = divmod(h * 3600.0, 3600.0)
    mm, ss = divmod(rem, 60.0)
    sign = "+" if dec >= 0 else "-"
    d = abs(dec) * 3600.0
    dd, drem = divmod(d, 3600.0)
    dm, ds = divmod(drem, 60.0)
    return (
        f"VCD J{int(hh):02d}{int(mm):02d}{math.floor(ss * 10) / 10:04.1f}{sign}{int(dd):02d}{int(dm):02d}{int(ds):02d}"
    )


def _draw_observations(rng: np.random.Generator, ra: FloatArray, dec: FloatArray) -> dict[str, FloatArray]:
    """When and how each spectrum was taken: a night in 2003-2015 when the star is up at Ondřejov.

    The hour angle is drawn within the star's time above 20° altitude, the hour
    of the night within ±4.5 h of local midnight; together they fix the Sun's
    right ascension and so the date. ``VHELIO`` (Earth's orbital and rotational
    velocity towards the star) and ``HJD`` use low-precision solar formulae,
    good to about 0.3 km/s and 2 s against the real headers.
    """
    n = len(ra)
    lat = math.radians(ONDREJOV_LAT)
    d = np.radians(dec)
    cos_h_limit = (math.sin(math.radians(20.0)) - math.sin(lat) * np.sin(d)) / (math.cos(lat) * np.cos(d))
    h_limit = np.where(cos_h_limit <= -1.0, 6.0, np.degrees(np.arccos(np.clip(cos_h_limit, -1.0, 1.0))) / 15.0)
    h_limit = np.clip(h_limit, 0.3, 6.0)
    exptime = np.round(np.clip(np.exp(rng.normal(math.log(1200.0), 0.7, n)), 30.0, 7200.0))
    hour_angle_mid = rng.uniform(-1.0, 1.0, n) * h_limit
    night_hour = rng.uniform(-4.5, 4.5, n)
    year = rng.integers(2003, 2016, n)
    # Mean Sun's right ascension at the wanted local time: LST = RA + H = RA_sun + 12 h + night hour.
    ra_sun_deg = ((ra / 15.0 + hour_angle_mid - 12.0 - night_hour) * 15.0) % 360.0
    jd_jan1 = np.array([_jd(datetime(int(y), 1, 1, tzinfo=UTC)) for y in year])
    d0 = jd_jan1 - 2451545.0
    days = ((ra_sun_deg - (280.460 + 0.9856474 * d0)) % 360.0) / 0.9856474
    date_jd0 = np.floor(jd_jan1 + days - 0.5) + 0.5  # 0h UT of that day
    midnight_ut = 24.0 - ONDREJOV_LON / 15.0  # local mean midnight, hours UT of the day before
    jd_mid = date_jd0 - 1.0 + (midnight_ut + night_hour) / 24.0
    jd_start = np.round((jd_mid - exptime / 2.0 / 86400.0) * 86400.0) / 86400.0  # whole seconds
    jd_mid = jd_start + exptime / 2.0 / 86400.0

    hour_angle = _hour_angle(jd_mid, ra)
    sin_alt = math.sin(lat) * np.sin(d) + math.cos(lat) * np.cos(d) * np.cos(np.radians(hour_angle * 15.0))
    zd = 90.0 - np.degrees(np.arcsin(np.clip(sin_alt, 0.05, 1.0)))
    airmass = 1.0 / np.cos(np.radians(zd))
    vhelio = _vhelio(ra, dec, jd_mid, hour_angle)
    lam, beta, sun = _ecliptic(ra, dec, jd_mid)
    hjd = jd_mid - 0.0057755 * np.cos(beta) * np.cos(sun - lam)  # light time Earth-Sun towards the star
    return {
        "hjd": hjd,
        "jd_start": jd_start,
        "exptime": exptime,
        "hour_angle": hour_angle,
        "airmass": airmass,
        "vhelio": vhelio,
    }


def _jd(t: datetime) -> float:
    """Julian date of an aware UTC datetime."""
    return 2440587.5 + t.timestamp() / 86400.0


def _datetime(jd: float) -> datetime:
    """UTC datetime of a Julian date, to the nearest 0.1 s."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=round((jd - 2440587.5) * 864000.0) / 10.0)


def _lst_hours(jd: FloatArray | float) -> FloatArray:
    """Local mean sidereal time at Ondřejov (GMST, low precision), hours."""
    gmst = 18.697374558 + 24.06570982441908 * (np.asarray(jd) - 2451545.0)
    return np.asarray((gmst + ONDREJOV_LON / 15.0) % 24.0, dtype=np.float64)


def _hour_angle(jd: FloatArray, ra: FloatArray) -> FloatArray:
    """Hour angle in hours, in [-12, 12)."""
    return np.asarray((_lst_hours(jd) - ra / 15.0 + 12.0) % 24.0 - 12.0, dtype=np.float64)


def _ecliptic(ra: FloatArray, dec: FloatArray, jd: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Star's ecliptic longitude and latitude and the Sun's true longitude, radians."""
    d = jd - 2451545.0
    mean_lon = np.radians(280.460 + 0.9856474 * d)
    anomaly = np.radians(357.528 + 0.9856003 * d)
    sun = mean_lon + np.radians(1.915) * np.sin(anomaly) + np.radians(0.020) * np.sin(2.0 * anomaly)
    eps = math.radians(23.439)
    a, de = np.radians(ra), np.radians(dec)
    beta = np.arcsin(np.sin(de) * math.cos(eps) - np.cos(de) * math.sin(eps) * np.sin(a))
    lam = np.arctan2(np.sin(a) * math.cos(eps) + np.tan(de) * math.sin(eps), np.cos(a))
    return lam, beta, sun


def _vhelio(ra: FloatArray, dec: FloatArray, jd: FloatArray, hour_angle: FloatArray) -> FloatArray:
    """Heliocentric correction (km/s) to add to a topocentric radial velocity."""
    lam, beta, sun = _ecliptic(ra, dec, jd)
    orbital = 29.79 * np.cos(beta) * np.sin(sun - lam)
    diurnal = (
        -0.4651 * math.cos(math.radians(ONDREJOV_LAT)) * np.cos(np.radians(dec)) * np.sin(np.radians(hour_angle * 15.0))
    )
    return np.asarray(orbital + diurnal, dtype=np.float64)


def _names(jd_start: FloatArray) -> list[str]:
    """File names ``demo<YYYYMMDD><NNNN>``: the night's evening date and a running number in that night.

    Running numbers step by 2-4 as in the real archive, where arcs and flats
    take the numbers in between; the ``demo`` prefix keeps them apart from real
    CCD700 names (``tg160037``, ``a201504150031``).
    """
    n = len(jd_start)
    nights = [(_datetime(float(j)) - timedelta(hours=12)).strftime("%Y%m%d") for j in jd_start]
    order = sorted(range(n), key=lambda i: (nights[i], float(jd_start[i]), i))
    names = [""] * n
    seq = 0
    previous = ""
    for i in order:
        night = nights[i]
        seq = 3 if night != previous else seq + 2 + (i % 3)
        previous = night
        names[i] = f"demo{night}{seq:04d}"
    return names


# --- rendering the spectra -------------------------------------------------------------------------


def _render(d: _Draws, sel: slice, rng: np.random.Generator) -> NDArray[np.float32]:
    """The flux in ADU of the spectra ``sel``, shape (batch, N_PIXELS)."""
    g = _Grid(d, np.arange(sel.start, sel.stop))
    flux = 1.0 - np.clip(_photosphere(d, g), 0.0, 0.97)
    _add_circumstellar(d, g, flux)
    flux *= np.exp(-_interstellar_and_telluric(d, g))
    return _observe(d, g, flux, rng)


class _Grid:
    """Wavelength grids of a batch of spectra and what every step needs of them."""

    def __init__(self, d: _Draws, idx: IntArray) -> None:
        self.idx = idx
        self.b = len(idx)
        self.crval = d.crval[idx, None]
        self.cdelt = d.cdelt[idx, None]
        self.wave = self.crval + self.cdelt * np.arange(N_PIXELS, dtype=np.float64)[None, :]
        self.shift = 1.0 + d.rv[idx, None] / C_KM_S
        """Doppler factor of the star's lines (heliocentric frame, as the files are)."""


def _photosphere(d: _Draws, g: _Grid) -> FloatArray:
    """Depth below the continuum of the stellar lines, rotationally broadened."""
    idx = g.idx
    dl = g.wave - HALPHA * g.shift
    sigma2 = d.ha_sigma[idx, None] ** 2 + _SIGMA_INST**2
    eta = d.ha_eta[idx, None]
    lorentz = eta / (1.0 + (dl / d.ha_gamma[idx, None]) ** 2)
    depth = d.ha_depth[idx, None] * (lorentz + (1.0 - eta) * np.exp(-0.5 * dl**2 / sigma2))
    lines = np.asarray(_PHOTO_LINES, dtype=np.float64)
    line_depth = lines[None, :, 2] * d.species[idx][:, lines[:, 1].astype(np.int64)]
    line_sigma = np.sqrt(lines[None, :, 3] ** 2 + _SIGMA_INST**2) * np.ones((g.b, 1))
    depth += _gaussians(lines[None, :, 0] * g.shift, line_sigma, line_depth, grid=g, half_width=10)
    return _rotate(depth, d.vsini[idx] * HALPHA / C_KM_S / d.cdelt[idx], d.limb[idx])


def _add_circumstellar(d: _Draws, g: _Grid, flux: FloatArray) -> None:
    """Add the emission (H-alpha, He I, [N II]) and apply shell or P Cygni absorption, in place.

    Emission comes from a disc or wind at the star's velocity; it is not
    broadened by the star's rotation, only by the instrument.
    """
    idx = g.idx
    rows = np.arange(g.b)[:, None]
    centre = HALPHA * g.shift
    cols = _window(centre, g)
    w = g.wave[rows, cols]
    emitted = flux[rows, cols] + _emission(d, idx, w, centre, d.em_height[idx])
    a_centre = HALPHA * (1.0 + (d.rv[idx] + d.abs_vel[idx])[:, None] / C_KM_S)
    a_sigma2 = (HALPHA * d.abs_sigma[idx, None] / C_KM_S) ** 2 + _SIGMA_INST**2
    flux[rows, cols] = emitted * (1.0 - d.abs_depth[idx, None] * np.exp(-0.5 * (w - a_centre) ** 2 / a_sigma2))
    he = np.flatnonzero(d.hei_em[idx] > 0)
    if he.size:
        centre = HEI_6678 * g.shift[he]
        cols = _window(centre, g, rows=he)
        height = d.em_height[idx[he]] * d.hei_em[idx[he]]
        flux[he[:, None], cols] += _emission(d, idx[he], g.wave[he[:, None], cols], centre, height)
    nii_sigma = np.sqrt((NII_6583 * 15.0 / C_KM_S) ** 2 + _SIGMA_INST**2) * np.ones((g.b, 2))
    nii = (d.em_height[idx] * d.nii_em[idx])[:, None] * np.array([[1.0 / 3.0, 1.0]])
    flux += _gaussians(np.array([[NII_6548, NII_6583]]) * g.shift, nii_sigma, nii, grid=g, half_width=12)


def _interstellar_and_telluric(d: _Draws, g: _Grid) -> FloatArray:
    """Optical depth of the interstellar bands and of the telluric lines.

    Telluric lines sit at fixed topocentric wavelengths; the files are in the
    heliocentric frame, so they appear shifted by ``VHELIO``, never by the
    star's velocity.
    """
    idx = g.idx
    dibs = np.asarray(_DIBS, dtype=np.float64)
    dib_sigma = np.sqrt((dibs[None, :, 1] / 2.3548) ** 2 + _SIGMA_INST**2) * np.ones((g.b, 1))
    dib_centre = dibs[None, :, 0] * (1.0 + d.v_ism[idx, None] / C_KM_S)
    tau = _gaussians(dib_centre, dib_sigma, dibs[None, :, 2] * d.ebv[idx, None], grid=g, half_width=28)
    topo = 1.0 + d.vhelio[idx, None] / C_KM_S
    for table, scale in ((_O2_LINES, d.oxygen[idx]), (_H2O_LINES, d.water[idx])):
        arr = np.asarray(table, dtype=np.float64)
        strength = -np.log1p(-arr[None, :, 1]) * scale[:, None]
        sigma = _SIGMA_INST * np.ones((g.b, len(arr)))
        tau += _gaussians(arr[None, :, 0] * topo, sigma, strength, grid=g, half_width=6)
    return tau


def _observe(d: _Draws, g: _Grid, flux: FloatArray, rng: np.random.Generator) -> NDArray[np.float32]:
    """Scale to a sloped continuum in ADU and add Poisson, read and flat-field noise and cosmic rays."""
    idx = g.idx
    a1, a2, a3 = (d.slope[idx, k, None] for k in range(3))
    x = (g.wave - 6515.0) / 262.0
    x_ref = (6640.0 - 6515.0) / 262.0
    shape = (1.0 + x * (a1 + x * (a2 + x * a3))) / (1.0 + x_ref * (a1 + x_ref * (a2 + x_ref * a3)))
    electrons = d.counts[idx, None] * GAIN * shape * flux
    # Read noise over the aperture and the flat-field floor are Gaussian: one draw for both.
    noisy = rng.poisson(np.maximum(electrons, 0.0)).astype(np.float64)
    other = np.sqrt(d.aperture[idx, None] * READ_NOISE**2 + (FLAT_FLOOR * electrons) ** 2)
    noisy += rng.standard_normal(electrons.shape) * other
    adu = noisy / GAIN
    for row in np.flatnonzero(d.cosmics[idx]):
        hits = rng.integers(5, N_PIXELS - 5, int(d.cosmics[idx[row]]))
        sigma = np.sqrt(np.maximum(adu[row, hits], 1.0) / GAIN)
        adu[row, hits] += rng.uniform(5.0, 30.0, len(hits)) * sigma
    return np.asarray(adu, dtype=np.float32)


def _gaussians(
    centre: FloatArray, sigma: FloatArray, amplitude: FloatArray, *, grid: _Grid, half_width: int
) -> FloatArray:
    """Sum of Gaussians (per spectrum and line, shapes (b, lines)) on each spectrum's pixel grid.

    Only ``±half_width`` pixels around each line are evaluated and scattered
    with ``bincount``: a hundred narrow lines cost about what one full-row profile does.
    """
    b = centre.shape[0]
    centre_px = (centre - grid.crval) / grid.cdelt
    start = np.rint(centre_px).astype(np.int64) - half_width
    pix = start[:, :, None] + np.arange(2 * half_width + 1)[None, None, :]
    sig_px = (sigma / grid.cdelt)[:, :, None]
    values = amplitude[:, :, None] * np.exp(-0.5 * ((pix - centre_px[:, :, None]) / sig_px) ** 2)
    inside = (pix >= 0) & (pix < N_PIXELS)
    rows = np.broadcast_to(np.arange(b)[:, None, None], pix.shape)
    flat = (rows * N_PIXELS + pix)[inside]
    out = np.bincount(flat, weights=values[inside], minlength=b * N_PIXELS)
    return np.asarray(out.reshape(b, N_PIXELS), dtype=np.float64)


def _rotational_kernels(half_px: FloatArray, limb: FloatArray) -> FloatArray:
    """Gray's rotational profile integrated over each pixel, rows summing to 1, shape (b, 2 _KMAX + 1).

    With ``x = Δλ / Δλ_L`` the profile is ``[2(1-ε)√(1-x²) + πε/2 (1-x²)] / [π Δλ_L (1-ε/3)]``;
    its integral is closed-form, so each pixel gets its exact share, also when
    ``Δλ_L`` is below a pixel and sampling the profile would fail.
    """
    k = np.arange(-_KMAX, _KMAX + 1, dtype=np.float64)
    half = np.maximum(half_px, 1e-6)[:, None]
    eps = limb[:, None]

    def cdf(x: FloatArray) -> FloatArray:
        x = np.clip(x, -1.0, 1.0)
        root = np.sqrt(1.0 - x**2)
        circle = 0.5 * (x * root + np.arcsin(x))
        return np.asarray(
            (2.0 * (1.0 - eps) * circle + 0.5 * np.pi * eps * (x - x**3 / 3.0)) / (np.pi * (1.0 - eps / 3.0)),
            dtype=np.float64,
        )

    weights = cdf((k + 0.5) / half) - cdf((k - 0.5) / half)
    return np.asarray(weights / weights.sum(axis=1, keepdims=True), dtype=np.float64)


def _rotate(depth: FloatArray, half_px: FloatArray, limb: FloatArray) -> FloatArray:
    """Convolve each row with its rotational kernel (FFT, zero-padded so nothing wraps around)."""
    b = depth.shape[0]
    kernels = _rotational_kernels(np.minimum(half_px, _KMAX - 1.0), limb)
    full = np.zeros((b, _NFFT))
    full[:, : _KMAX + 1] = kernels[:, _KMAX:]
    full[:, _NFFT - _KMAX :] = kernels[:, :_KMAX]
    padded = np.zeros((b, _NFFT))
    padded[:, :N_PIXELS] = depth
    out = np.fft.irfft(np.fft.rfft(padded, axis=1) * np.fft.rfft(full, axis=1), n=_NFFT, axis=1)
    return np.asarray(out[:, :N_PIXELS], dtype=np.float64)


_EM_HALF: Final = 300
"""Half-width in pixels (77 Å) of the window where emission lines are evaluated."""


def _window(centre: FloatArray, grid: _Grid, *, rows: IntArray | None = None) -> IntArray:
    """Column indices (b, 2 _EM_HALF + 1) of a window around ``centre``, kept inside the spectrum."""
    crval = grid.crval if rows is None else grid.crval[rows]
    cdelt = grid.cdelt if rows is None else grid.cdelt[rows]
    centre_px = np.rint((centre[:, 0] - crval[:, 0]) / cdelt[:, 0]).astype(np.int64)
    start = np.clip(centre_px - _EM_HALF, 0, N_PIXELS - 2 * _EM_HALF - 1)
    return np.asarray(start[:, None] + np.arange(2 * _EM_HALF + 1)[None, :], dtype=np.int64)


def _emission(d: _Draws, idx: IntArray, wave: FloatArray, centre: FloatArray, height: FloatArray) -> FloatArray:
    """Emission profile above the continuum at ``centre`` (per spectrum, shape (b, 1)), peak ``height``.

    Two Gaussians at ±s/2 with the V/R ratio, plus wings that fall as a squared
    Lorentzian (electron scattering: broad, but gone within the window).
    """
    u = (wave / centre - 1.0) * C_KM_S
    inst_v = _SIGMA_INST / centre * C_KM_S
    sig2 = d.em_sigma[idx, None] ** 2 + inst_v**2
    half = d.em_half_sep[idx, None]
    vr = np.sqrt(d.em_vr[idx, None])
    profile = vr * np.exp(-0.5 * (u + half) ** 2 / sig2) + np.exp(-0.5 * (u - half) ** 2 / sig2) / vr
    wing_w = np.maximum(d.em_wing_width[idx, None], 1.0)
    profile += d.em_wing[idx, None] * 2.0 / (1.0 + (u / wing_w) ** 2) ** 2
    peak = profile.max(axis=1, keepdims=True)
    return np.asarray(height[:, None] * profile / np.maximum(peak, 1e-12), dtype=np.float64)


# --- writing -------------------------------------------------------------------------------------

_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@functools.lru_cache(maxsize=256)
def _fixed(key: str, value: str | None, comment: str = "", *, literal: bool = False) -> str:
    """A card whose text is the same in every file, formatted once."""
    return _card(key, value, comment, literal=literal)


def _card(key: str, value: str | None, comment: str = "", *, literal: bool = False) -> str:
    """One 80-character FITS header card in fixed format.

    ``literal`` values (numbers, ``T``/``F``) are right-justified to column 30;
    others are quoted strings padded to eight characters; ``None`` leaves the
    value blank, as the CCD700 headers do for keywords they do not fill.
    """
    if value is None:
        text = f"{key:<8s}= {'':20s}"
    elif literal:
        text = f"{key:<8s}= {value:>20s}"
    else:
        quoted = "'" + value.ljust(8) + "'"
        text = f"{key:<8s}= {quoted:<20s}"
    if comment:
        text += f" / {comment}"
    return text[:80].ljust(80)


def _sexagesimal(value: float, *, hours: bool, places: int) -> str:
    """``HH:MM:SS.sss`` (or ``+DD:MM:SS.ss``) with ``places`` decimals of seconds."""
    v = value / 15.0 if hours else value
    sign = "-" if v < 0 else ("" if hours else "+")
    scale = 10**places
    total = round(abs(v) * 3600.0 * scale)
    whole, frac = divmod(total, scale)
    deg, rem = divmod(whole, 3600)
    minutes, seconds = divmod(rem, 60)
    tail = f".{frac:0{places}d}" if places else ""
    return f"{sign}{deg:02d}:{minutes:02d}:{seconds:02d}{tail}"


def _header(d: _Draws, i: int) -> bytes:
    """The primary header of spectrum ``i``, CCD700-style, padded to whole FITS blocks."""
    name = d.names[i]
    t0 = _datetime(float(d.jd_start[i]))
    exptime = float(d.exptime[i])
    t1 = t0 + timedelta(seconds=exptime)
    tmid = t0 + timedelta(seconds=exptime / 2.0)
    jd_mid = float(d.jd_start[i]) + exptime / 2.0 / 86400.0
    reduced = (t0 + timedelta(days=1 + (i % 3), hours=-t0.hour + 9 + (i % 7), minutes=(7 * i) % 60)).replace(
        microsecond=0
    )
    stamp = f"{_MONTHS[reduced.month - 1]} {reduced.day:02d} {reduced.hour:2d}:{reduced.minute:02d}"
    hum, out_temp, dome_dt, pressure, ccd_temp, overscan, flat_scale = (float(v) for v in d.weather[i])
    gratpos, dichmir, ccd_lo = (int(v) for v in d.setup[i])
    ra, dec = float(d.ra_deg[i]), float(d.dec_deg[i])
    hour_angle = float(d.hour_angle_h[i])
    lst_start = float(_lst_hours(float(d.jd_start[i])))
    zd = math.degrees(math.acos(min(1.0, 1.0 / float(d.airmass[i]))))
    h_rad, lat, dec_rad = math.radians(hour_angle * 15.0), math.radians(ONDREJOV_LAT), math.radians(dec)
    azimuth = (
        math.degrees(math.atan2(math.sin(h_rad), math.cos(h_rad) * math.sin(lat) - math.tan(dec_rad) * math.cos(lat)))
        + 180.0
    ) % 360.0
    vhelio = float(d.vhelio[i])
    a, de = math.radians(ra), math.radians(dec)
    apex_ra, apex_dec = math.radians(270.0), math.radians(30.0)
    vlsr = vhelio + 20.0 * (
        math.cos(de) * math.cos(apex_dec) * math.cos(a - apex_ra) + math.sin(de) * math.sin(apex_dec)
    )
    year_frac = t0.year + (float(d.jd_start[i]) - _jd(datetime(t0.year, 1, 1, tzinfo=UTC))) / 365.25
    ap_lo = float(d.aperture_lo[i])
    crval, cdelt = float(d.crval[i]), float(d.cdelt[i])
    seq = int(name[-4:])
    prev_arc, next_arc = f"{name[:-4]}{seq - 1:04d}", f"{name[:-4]}{seq + 1:04d}"
    w = 0.35 + 0.3 * ((i * 7919) % 100) / 100.0
    ccdsec = f"[16:2012,{ccd_lo}:{ccd_lo + 140}]"
    expval = float(d.counts[i]) * 2.0e-5 * (0.5 + w)
    cards = [
        _fixed("SIMPLE", "T", "Fits standard", literal=True),
        _fixed("BITPIX", "-32", "Bits per pixel", literal=True),
        _fixed("NAXIS", "1", "Number of axes", literal=True),
        _card("NAXIS1", str(N_PIXELS), "Axis length", literal=True),
        _fixed("EXTEND", "F", "File may contain extensions", literal=True),
        _fixed("ORIGIN", "NOAO-IRAF FITS Image Kernel July 2003", "FITS file originator"),
        _card("IRAF-TLM", reduced.strftime("%Y-%m-%dT%H:%M:%S"), "Time of last modification"),
        _card("OBJECT", d.objects[i], "Title of observation"),
        _card("DATE", reduced.strftime("%Y-%m-%dT%H:%M:%S"), "Date FITS file was generated"),
        _card("DS_IDPUB", DEMO_DID_PREFIX + name, "Publisher dataset ID"),
        _fixed("OBSERVAT", "ONDREJOV", "Name of observatory (IRAF style)"),
        _card("LATITUDE", f"{ONDREJOV_LAT:.6f}", "Telescope latitude  (degrees), +49:54:38.0", literal=True),
        _card("LONGITUD", f"{ONDREJOV_LON:.6f}", "Telescope longitud  (degrees), +14:47:01.0", literal=True),
        _fixed("HEIGHT", "528", "Height above sea level [m].", literal=True),
        _fixed("OBSERVER", "vocloud demo", "Observers"),
        _fixed("IMAGETYP", "object", "Type of observation, eg. FLAT"),
        _card("FILENAME", f"{name}.fit", "Original filename"),
        _fixed("TELESCOP", "ZEISS-2m", "2m Ondrejov observatory telescope"),
        _fixed("TELSYST", "COUDE", "Telescope setup - COUDE or CASSegrain"),
        _card("EXPTIME", f"{exptime:.3f}", "Length of observation excluding pauses", literal=True),
        _card("DARKTIME", f"{exptime:.3f}", "Length of observation including pauses", literal=True),
        _card("EXPVAL", f"{expval:.3f}", "Exposure value in photon counts [Mcounts]", literal=True),
        _card("DATE-OBS", t0.strftime("%Y-%m-%d"), "UTC date start of observation"),
        _card("TM_START", str(t0.hour * 3600 + t0.minute * 60 + t0.second), t0.strftime("%H:%M:%S"), literal=True),
        _card("TM_END", str(t1.hour * 3600 + t1.minute * 60 + t1.second), t1.strftime("%H:%M:%S"), literal=True),
        _fixed("COMMENT1", None),
        _card("UT", t0.strftime("%H:%M:%S"), "UTC of  start of observation"),
        _fixed("INSTRUME", "COUDE700", "Coude spectrograph setup - 1400/700mm focus"),
        _fixed("CAMERA", "BROR", "Camera head name"),
        _fixed("DETECTOR", "SITe 2000x800", "Name of the detector"),
        _fixed("CHIPID", "SITe005 800x2000", "Name of CCD chip"),
        _fixed("BUNIT", "ADU", "Unit of the array of image data"),
        _fixed("GAINM", "HIGH", "Gain mode"),
        _fixed("AMPLM", "A", "Amplifier A,B or AB"),
        _fixed("MPP", "T", "Multiphase pinned mode (T/F)", literal=True),
        _fixed("PREFLASH", "0", "Length of preflash in seconds", literal=True),
        _card("GAIN", f"{GAIN:.2f}", "Electrons per ADU", literal=True),
        _card("READNOIS", f"{READ_NOISE:.2f}", "Readout noise in electrons per pix", literal=True),
        _card("CCDTEMP", f"{ccd_temp:.1f}", "Detector temperature", literal=True),
        _card("LN2TEMP", f"{-185.0 + 10.0 * w:.1f}", literal=True),
        _fixed("CCDXSIZE", "2030", "X Size in pixels of digitised frame", literal=True),
        _fixed("CCDYSIZE", "800", "Y Size in pixels of digitised frame", literal=True),
        _fixed("CCDXIMSI", "2030", "X Size of useful imaging area", literal=True),
        _fixed("CCDYIMSI", "800", "Y Size of useful imaging area", literal=True),
        _fixed("CCDXIMST", "1", "X Start pixel of useful imaging area", literal=True),
        _fixed("CCDYIMST", "1", "Y Start pixel of useful imaging area", literal=True),
        _fixed("CCDXPIXE", "15", "Size in microns of the pixels, in X", literal=True),
        _fixed("CCDYPIXE", "15", "Size in microns of the pixels, in Y", literal=True),
        _fixed("CCDXBIN", "1", "Binning factor, in X", literal=True),
        _fixed("CCDYBIN", "1", "Binning factor, in Y", literal=True),
        _fixed("XOVERSC", "0", literal=True),
        _fixed("YOVERSC", "0", literal=True),
        _fixed("CCDSUM", "1 1", "CCD binning in both axes"),
        _fixed("GRATNAME", "3", "Grating name - ID"),
        _fixed("GRATANG", "30.25", "30:15", literal=True),
        _card("GRATPOS", str(gratpos), "Grating angle in increments", literal=True),
        _fixed("GRATCWAV", None, "Central Wavelength in A"),
        _card("DICHMIR", str(dichmir), "Dichroic mirror number", literal=True),
        _fixed("SPECFILT", "1", "Spectral filter", literal=True),
        _fixed("SLITTYPE", "BLADE", "Type of slit - blade or image slicers"),
        _fixed("SLITWID", "0.20", "Slit width in mm", literal=True),
        _fixed("SLITHEIG", "0.0", "Slit hight in mm", literal=True),
        _fixed("COLIMAT", "OPEN", "Collimator mask status"),
        _fixed("CAMFOCUS", None, "Camera focus position"),
        _fixed("FLATTYPE", "PROJECT", "Flat type (Projector/Dome)"),
        _fixed("COMPLAMP", "ThAr-BS/15mA", "Comparison arc setup"),
        _fixed("COMPMIDA", None, "CCD line at the middle of comp aperture"),
        _fixed("SEEING", None, "Estimate of FWHM of seeing disk in arcsec"),
        _fixed("AUTOGUID", "NO", "Status of autoguider system"),
        _fixed("COMMENT3", None),
        _card("RA", _sexagesimal(ra, hours=True, places=3), f"{ra / 15.0:.6f}"),
        _card("DEC", _sexagesimal(dec, hours=False, places=2), f"{dec:.6f}"),
        _card("EQUINOX", f"{year_frac:.6f}", "Equinox of RA and DEC", literal=True),
        _card("EPOCH", f"{year_frac:.6f}", "Same as EQUINOX - for back compat.", literal=True),
        _card(
            "ST",
            _sexagesimal(lst_start * 15.0, hours=True, places=1).lstrip("+"),
            "Local sidereal time at start of observation",
        ),
        _card("AZIMUTH", f"{azimuth:.1f}", "Mean azimuth of observation (degrees)", literal=True),
        _card("ZD", f"{zd:.1f}", "Mean horizon-distance of observation (degrees)", literal=True),
        _card("TELFOCUS", f"{12.0 + 10.0 * w:.2f}", "Telescope focus (milimeters)", literal=True),
        _card("DOMEAZ", f"{azimuth:.2f}", "Mean dome azimuth during observation", literal=True),
        _card("AIRPRESS", f"{pressure:.2f}", "Atmospheric preasure in (hPa)", literal=True),
        _card("AIRHUMEX", f"{hum:.2f}", "Air humidity outside the dome", literal=True),
        _fixed("AIRHUMIN", None, "Air humidity inside the dome"),
        _card("OUTTEMP", f"{out_temp:.2f}", "Temperature outside of the dome", literal=True),
        _card("DOMETEMP", f"{out_temp + dome_dt:.2f}", "Temperature inside the dome", literal=True),
        _fixed("SPECTEMP", None, "Temperature in spectrograph room"),
        _fixed("CAT-NAME", None, "Target input-catalogue name"),
        _fixed("CAT-RA", None, "Target Right Ascension"),
        _fixed("CAT-DEC", None, "Target Declination"),
        _fixed("CAT-EQUI", None, "Catalogue equinox of the target"),
        _fixed("CAT-EPOC", "2000.00", "Target epoch of proper motions", literal=True),
        _fixed("WCSDIM", "1", literal=True),
        _fixed("LTM1_1", "1.", literal=True),
        _fixed("WAT0_001", "system=equispec"),
        _fixed("WAT1_001", "wtype=linear label=Wavelength units=angstroms"),
        _card("TRIM", f"{stamp} Trim data section is {ccdsec}"),
        _card("OVERSCAN", f"{stamp} Overscan section is [6:12,1:800] with mean={overscan:.4f}"),
        _card("ZEROCOR", f"{stamp} Zero level correction image is Zero"),
        _card("FLATCOR", f"{stamp} Flat field image is Flat{gratpos}.fit with scale={flat_scale:.2f}"),
        _card("CCDSEC", ccdsec),
        _card("CCDPROC", f"{stamp} CCD processing done"),
        _card("JD", f"{jd_mid:.8f}", literal=True),
        _card("LJD", f"{math.floor(jd_mid)}.", literal=True),
        _card("AIRMASS", f"{float(d.airmass[i]):.6f}", literal=True),
        _card("UTMIDDLE", f"{tmid.hour}:{tmid.minute:02d}:{tmid.second:02d}.0"),
        _fixed("BANDID1", "spectrum - background fit, weights variance, clean yes"),
        _card("APNUM1", f"1 1 {ap_lo:.2f} {ap_lo + float(d.aperture[i]):.2f}"),
        _fixed("CTYPE1", "LINEAR"),
        _card("CRVAL1", f"{crval:.11f}", literal=True),
        _fixed("CRPIX1", "1.", literal=True),
        _card("CDELT1", f"{cdelt:.14f}", literal=True),
        _card("CD1_1", f"{cdelt:.14f}", literal=True),
        _fixed("DC-FLAG", "0", literal=True),
        _card("DCLOG1", f"REFSPEC1 = {name}{prev_arc}.ms {w:.8f}"),
        _card("DCLOG2", f"REFSPEC2 = {name}{next_arc}.ms {1.0 - w:.8f}"),
        _fixed("DISPCOR", "0", literal=True),
        _card("HJD", f"{float(d.hjd[i]):.8f}", literal=True),
        _card("VHELIO", f"{vhelio:.10f}", literal=True),
        _card("VLSR", f"{vlsr:.10f}", literal=True),
        _fixed("VSUN", "   20.    18.    30.  1900."),
        "COMMENT   Synthetic spectrum written by vocloud demo-data; not an observation.".ljust(80),
        "END".ljust(80),
    ]
    text = "".join(cards)
    text += " " * (-len(text) % 2880)
    return text.encode("ascii")


def _write_fits(path: Path, header: bytes, flux: NDArray[np.float32]) -> None:
    """Header blocks, big-endian float32 pixels, zero padding to a whole 2880-byte block."""
    data = flux.astype(">f4").tobytes()
    path.write_bytes(header + data + b"\0" * (-len(data) % 2880))


def _write_tables(out_dir: Path, d: _Draws) -> None:
    """``labels.csv`` (the simulated expert) and ``truth.csv`` (every drawn parameter)."""
    ids = [DEMO_DID_PREFIX + name for name in d.names]
    with (out_dir / "labels.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "label"])
        writer.writerows([did, LABELS[int(k)]] for did, k in zip(ids, d.label, strict=True))
    columns: Sequence[tuple[str, Callable[[int], object]]] = (
        ("id", lambda i: ids[i]),
        ("label", lambda i: LABELS[int(d.label[i])]),
        ("star", lambda i: int(d.star[i])),
        ("object", lambda i: d.objects[i]),
        ("spectral_group", lambda i: _GROUPS[int(d.group[i])]),
        ("emission_kind", lambda i: _KIND_NAMES[int(d.kind[i])]),
        ("rv_km_s", lambda i: f"{d.rv[i]:.3f}"),
        ("vsini_km_s", lambda i: f"{d.vsini[i]:.2f}"),
        ("vhelio_km_s", lambda i: f"{d.vhelio[i]:.3f}"),
        ("halpha_abs_depth", lambda i: f"{d.ha_depth[i]:.4f}"),
        ("emission_height", lambda i: f"{d.em_height[i]:.4f}"),
        ("peak_separation_km_s", lambda i: f"{2.0 * d.em_half_sep[i]:.2f}"),
        ("peak_sigma_km_s", lambda i: f"{d.em_sigma[i]:.2f}"),
        ("peak_width_ratio", lambda i: f"{d.em_ratio[i]:.4f}"),
        ("vr_ratio", lambda i: f"{d.em_vr[i]:.4f}"),
        ("shell_depth", lambda i: f"{d.abs_depth[i]:.4f}"),
        ("ebv", lambda i: f"{d.ebv[i]:.4f}"),
        ("snr", lambda i: f"{d.snr[i]:.2f}"),
        ("continuum_adu", lambda i: f"{d.counts[i]:.1f}"),
        ("airmass", lambda i: f"{d.airmass[i]:.4f}"),
        ("water_scale", lambda i: f"{d.water[i]:.4f}"),
        ("cosmic_rays", lambda i: int(d.cosmics[i])),
    )
    with (out_dir / "truth.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([name for name, _ in columns])
        writer.writerows([get(i) for _, get in columns] for i in range(len(ids)))
