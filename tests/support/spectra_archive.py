"""Synthetic Ondřejov-style spectra for the DataLink and SODA tests, archived through the real ingest path.

Each spectrum is an IRAF ``onedspec`` 1-D FITS image, as the CCD700 archive
writes them: a linear wavelength WCS (Å), ``FILENAME`` giving the DID
``ivo://asu.cas.cz/stel/ccd700/<stem>``, flux in ADU with a sloping continuum
and an H-alpha absorption line whose depth the normalisation tests know.
"""

from __future__ import annotations

import io

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from vocloud.server.archive.ingest import IngestStatus, ingest_bytes
from vocloud.server.archive.service import Archive

CCD700 = "ivo://asu.cas.cz/stel/ccd700/"

START, STEP, POINTS = 6250.0, 0.25, 2001
"""The wavelength grid in Å: 6250 to 6750."""

LINE_CENTRE, LINE_DEPTH, LINE_SIGMA = 6562.8, 0.6, 3.0
"""The H-alpha absorption: centre (Å), depth as a fraction of the continuum, Gaussian width (Å)."""


def continuum(wavelength: NDArray[np.float64]) -> NDArray[np.float64]:
    """The continuum of the synthetic spectra, in ADU."""
    return 1000.0 + 0.3 * (wavelength - 6500.0) - 2e-4 * (wavelength - 6500.0) ** 2


def iraf_fits(
    stem: str, *, target: str = "HD 1", seed: int = 1, flux_cal: str | None = None, start: float = START
) -> bytes:
    """An IRAF 1-D FITS spectrum (float32 ADU) named ``<stem>.fit``, its first pixel at ``start`` Å."""
    wavelength = start + STEP * np.arange(POINTS)
    line = 1.0 - LINE_DEPTH * np.exp(-0.5 * ((wavelength - LINE_CENTRE) / LINE_SIGMA) ** 2)
    noise = np.random.default_rng(seed).normal(0.0, 3.0, POINTS)
    flux = continuum(wavelength) * line + noise
    header = fits.Header()
    header["OBJECT"] = target
    header["OBSERVAT"] = "ONDREJOV"
    header["INSTRUME"] = "COUDE700"
    header["FILENAME"] = f"{stem}.fit"
    header["DATE-OBS"] = "2013-04-09"
    header["UT"] = "20:00:00"
    header["EXPTIME"] = 600.0
    header["RA"] = "01:02:03.4"
    header["DEC"] = "+45:06:07"
    header["BUNIT"] = "ADU"
    header["CTYPE1"] = "LINEAR"
    header["CRVAL1"] = start
    header["CRPIX1"] = 1.0
    header["CDELT1"] = STEP
    header["CD1_1"] = STEP
    if flux_cal is not None:
        header["FLUX_CAL"] = flux_cal
    buffer = io.BytesIO()
    fits.PrimaryHDU(flux.astype(np.float32), header=header).writeto(buffer)
    return buffer.getvalue()


def archive_spectra(archive: Archive, *files: tuple[str, bytes]) -> list[str]:
    """Ingest ``(stem, FITS bytes)`` pairs; returns their publisher DIDs."""
    dids = []
    for stem, data in files:
        outcome = ingest_bytes(archive, data, source=f"{stem}.fit")
        assert outcome.status == IngestStatus.ADDED, outcome
        assert outcome.publisher_did == CCD700 + stem
        dids.append(outcome.publisher_did)
    return dids
