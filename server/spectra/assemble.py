"""The last step of every reader: arrays checked and put in order, metadata attached, one Spectrum out.

All readers end here so that every format gives the same guarantees (float64
wavelengths, strictly increasing, finite and positive; flux in native byte order;
not all NaN) and the same messages when a file breaks them. Also makes the
publisher DID of files that carry no identity of their own.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import NDArray

from .format_error import SpectrumFormatError
from .model import Spectrum, SpectrumMeta

__all__ = ["CONTENT_DID_PREFIX", "assemble", "content_did"]

CONTENT_DID_PREFIX = "ivo://vocloud.local/spectrum/"
"""Prefix of DIDs made from a file's content, for files without an identifier."""


def content_did(content: bytes) -> str:
    """A publisher DID from the SHA-256 of a file's bytes: the same file always gets the same DID.

    Parameters
    ----------
    content
        The file as uploaded.

    Returns
    -------
    str
        ``ivo://vocloud.local/spectrum/<first 16 hex digits of the SHA-256>``.
    """
    return CONTENT_DID_PREFIX + hashlib.sha256(content).hexdigest()[:16]


def assemble(
    wavelength: NDArray[np.floating], flux: NDArray[np.number], meta: SpectrumMeta, *, source: str
) -> Spectrum:
    """Check the arrays of a spectrum, put them in increasing wavelength, and build it.

    Parameters
    ----------
    wavelength
        Wavelengths in Ångström, increasing or decreasing.
    flux
        Fluxes, one per wavelength.
    meta
        Metadata.
    source
        The file's name, for messages.

    Returns
    -------
    Spectrum
        Wavelengths as float64 increasing; flux as native-endian floats
        (float32 stays float32, integers become float64).

    Raises
    ------
    SpectrumFormatError
        Raised if the arrays are not 1-D, differ in length, have fewer than two
        points, a wavelength is not finite or not positive, the wavelengths are
        not monotonic, or no flux value is finite.
    """
    waves = np.asarray(wavelength, dtype=np.float64)
    values = np.asarray(flux)
    if waves.ndim != 1 or values.ndim != 1:
        problem = f"expected 1-D wavelength and flux arrays, got shapes {waves.shape} and {values.shape}"
        raise SpectrumFormatError(source, problem)
    if len(waves) != len(values):
        problem = f"{len(waves)} wavelengths but {len(values)} flux values"
        raise SpectrumFormatError(source, problem)
    if len(waves) < 2:
        raise SpectrumFormatError(source, f"a spectrum needs at least two points, found {len(waves)}")
    if values.dtype.kind not in "iuf":
        raise SpectrumFormatError(source, f"flux values of type {values.dtype} are not real numbers")
    values = _native_float(values)
    bad = ~np.isfinite(waves)
    if bad.any():
        problem = f"{int(bad.sum())} of {len(waves)} wavelengths are not finite (first at index {int(np.argmax(bad))})"
        raise SpectrumFormatError(source, problem)
    if waves.min() <= 0.0:
        problem = f"wavelengths must be positive, found {waves.min():g} \N{ANGSTROM SIGN}: no wavelength calibration?"
        raise SpectrumFormatError(source, problem)
    steps = np.diff(waves)
    if not (steps > 0).all():
        if (steps < 0).all():
            waves, values = waves[::-1].copy(), values[::-1].copy()
        else:
            at = int(np.argmax(steps <= 0)) if (steps[0] > 0) else int(np.argmax(steps >= 0))
            pair = f"{waves[at]:.6g}, {waves[at + 1]:.6g}"
            problem = f"wavelengths are not strictly monotonic (at index {at + 1}: {pair})"
            raise SpectrumFormatError(source, problem)
    if not np.isfinite(values).any():
        raise SpectrumFormatError(source, f"no finite flux value among {len(values)} points (all NaN or infinite)")
    return Spectrum(wavelength=waves, flux=values, meta=meta)


def _native_float(values: NDArray[np.generic]) -> NDArray[np.floating]:
    """Flux as a native-endian float array (FITS data are big-endian); integers become float64."""
    if values.dtype.kind == "f" and values.dtype.itemsize in (4, 8):
        return values.astype(values.dtype.newbyteorder("="), copy=False)
    return values.astype(np.float64)
