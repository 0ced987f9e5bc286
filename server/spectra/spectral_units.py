"""Units of spectral and flux axes as the readers meet them, turned into Ångström and VOUnit.

The common spellings are looked up in a table (fast, and tolerant of the
``'Angstrom'``, ``'angstroms'``, ``'Count'`` and ``'ADU'`` that real files use);
anything else goes through :mod:`astropy.units`, with the spectral equivalency
so that frequency or energy axes become wavelengths too.
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy import units as u
from numpy.typing import NDArray

__all__ = ["UnknownUnitError", "flux_vounit", "to_angstrom"]

_ANGSTROM_PER_UNIT = {
    "": 1.0,
    "a": 1.0,
    "aa": 1.0,
    "angstrom": 1.0,
    "angstroms": 1.0,
    "\N{LATIN CAPITAL LETTER A WITH RING ABOVE}": 1.0,
    "\N{ANGSTROM SIGN}": 1.0,
    "0.1nm": 1.0,
    "nm": 10.0,
    "nanometer": 10.0,
    "nanometers": 10.0,
    "nanometre": 10.0,
    "nanometres": 10.0,
    "um": 1e4,
    "\N{MICRO SIGN}m": 1e4,
    "micron": 1e4,
    "microns": 1e4,
    "mm": 1e7,
    "cm": 1e8,
    "m": 1e10,
    "meter": 1e10,
    "meters": 1e10,
    "metre": 1e10,
    "metres": 1e10,
}
"""Ångström per unit of the spellings met in practice; a missing unit means Ångström."""

_FLUX_VOUNIT = {
    "": "",
    "adu": "adu",
    "count": "ct",
    "counts": "ct",
    "ct": "ct",
    "cts": "ct",
}
"""VOUnit of the flux units met in practice (FITS writes ``ADU`` and ``Count``, VOUnit ``adu`` and ``ct``)."""


class UnknownUnitError(ValueError):
    """A unit string that is not a spectral unit; the readers report it with the file's name."""


def to_angstrom(values: NDArray[np.floating], unit: str | None) -> NDArray[np.float64]:
    """Spectral coordinates in ``unit`` as wavelengths in Ångström (float64).

    Parameters
    ----------
    values
        Spectral coordinates.
    unit
        Their unit; ``None`` or empty means Ångström.

    Returns
    -------
    numpy.ndarray
        Wavelengths in Ångström. Frequencies or energies come out in reverse
        order; the caller sorts.

    Raises
    ------
    UnknownUnitError
        Raised if ``unit`` does not parse or is not a wavelength, frequency,
        energy or wavenumber.
    """
    array = np.asarray(values, dtype=np.float64)
    key = (unit or "").strip().lower()
    factor = _ANGSTROM_PER_UNIT.get(key)
    if factor is not None:
        return array * factor if factor != 1.0 else array
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)  # 'erg/s/cm2/A': legal enough, we read it
            parsed = u.Unit(unit.strip() if unit else "", parse_strict="raise")
        converted: NDArray[np.float64] = (array * parsed).to_value(u.AA, equivalencies=u.spectral())
    except (ValueError, TypeError, u.UnitsError) as e:
        msg = f"spectral unit {unit!r} is not a wavelength, frequency or energy unit"
        raise UnknownUnitError(msg) from e
    return converted


def flux_vounit(unit: str | None) -> str | None:
    """A flux unit as VOUnit text; ``None`` when unknown, unparseable units kept as written.

    Parameters
    ----------
    unit
        The unit as the file writes it; ``None`` when the file gives none.
    """
    if unit is None:
        return None
    text = unit.strip()
    known = _FLUX_VOUNIT.get(text.lower())
    if known is not None:
        return known
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            vounit: str = u.Unit(text, parse_strict="raise").to_string("vounit")
    except (ValueError, TypeError):
        return text
    return vounit
