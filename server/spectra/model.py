"""One 1-D spectrum in memory: wavelengths, fluxes and the metadata the archive needs.

Pure data (numpy + dataclasses); importable by worker processes and by the
readers without the web stack. Wavelengths are always in Ångström, increasing;
``medium`` says whether they are air or vacuum wavelengths, so that later steps
(air→vacuum in preprocessing, SSA/ObsCore ``em_min``/``em_max`` in metres) never
guess.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["FluxCalibration", "Medium", "Spectrum", "SpectrumMeta"]

ANGSTROM_IN_M = 1e-10


class Medium(enum.StrEnum):
    """Whether wavelengths were measured in air or are vacuum wavelengths."""

    AIR = "air"
    VACUUM = "vacuum"


class FluxCalibration(enum.StrEnum):
    """Flux calibration, with the values of the SSA/Spectrum DM ``Char.FluxAxis.Calibration``."""

    ABSOLUTE = "ABSOLUTE"
    RELATIVE = "RELATIVE"
    NORMALIZED = "NORMALIZED"
    UNCALIBRATED = "UNCALIBRATED"


@dataclass(frozen=True, kw_only=True)
class SpectrumMeta:
    """Metadata of a spectrum, shaped after ObsCore 1.1 / SSA 1.1.

    Parameters
    ----------
    publisher_did
        The publisher's dataset identifier (``ivo://...``); the archive's key:
        the same DID ingested twice is one spectrum.
    target_name
        Object name as the observer gave it.
    ra, dec
        ICRS position in degrees.
    t_min, t_max
        Start and end of the exposure, MJD (UTC).
    exposure
        Exposure time in seconds.
    facility_name, instrument_name, obs_collection
        Telescope, instrument and collection (e.g. ``Ondrejov 2m``,
        ``CCD700``, ``ccd700``).
    em_res_power
        Spectral resolving power λ/Δλ, when known.
    flux_unit
        VOUnit of the flux (``adu``, ``ct``, ``""`` for normalised flux, ...).
    flux_calibration
        How the flux is calibrated.
    medium
        Air or vacuum wavelengths.
    header
        Original header values worth keeping (e.g. ``VHELIO``, ``CLASS``,
        ``SUBCLASS``, ``Z``), as text.
    """

    publisher_did: str
    target_name: str | None = None
    ra: float | None = None
    dec: float | None = None
    t_min: float | None = None
    t_max: float | None = None
    exposure: float | None = None
    facility_name: str | None = None
    instrument_name: str | None = None
    obs_collection: str | None = None
    em_res_power: float | None = None
    flux_unit: str | None = None
    flux_calibration: FluxCalibration = FluxCalibration.UNCALIBRATED
    medium: Medium = Medium.AIR
    header: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Spectrum:
    """A 1-D spectrum.

    Parameters
    ----------
    wavelength
        Wavelengths in Ångström, strictly increasing, float64.
    flux
        Flux values, same length as ``wavelength``.
    meta
        Metadata.

    Raises
    ------
    ValueError
        Raised if the arrays are not 1-D, differ in length, are empty, or the
        wavelengths are not strictly increasing and finite.
    """

    wavelength: NDArray[np.float64]
    flux: NDArray[np.floating]
    meta: SpectrumMeta

    def __post_init__(self) -> None:
        if self.wavelength.ndim != 1 or self.flux.ndim != 1:
            msg = "Spectrum arrays must be one-dimensional"
            raise ValueError(msg)
        if len(self.wavelength) != len(self.flux) or len(self.wavelength) < 2:
            sizes = f"{len(self.wavelength)} and {len(self.flux)}"
            msg = f"Spectrum needs at least two points and equal lengths, got {sizes}"
            raise ValueError(msg)
        if not np.all(np.isfinite(self.wavelength)) or not np.all(np.diff(self.wavelength) > 0):
            msg = "Spectrum wavelengths must be finite and strictly increasing"
            raise ValueError(msg)

    @property
    def em_min(self) -> float:
        """Shortest wavelength in metres (ObsCore ``em_min``)."""
        return float(self.wavelength[0]) * ANGSTROM_IN_M

    @property
    def em_max(self) -> float:
        """Longest wavelength in metres (ObsCore ``em_max``)."""
        return float(self.wavelength[-1]) * ANGSTROM_IN_M
