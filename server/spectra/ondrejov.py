"""What the readers know about the Ondřejov 2m Perek telescope's CCD700 archive, and how we know it.

Facts taken from the files in ``shared/data/ondrejov-ccd700`` (see its SOURCE.md):

* Publisher DIDs are ``ivo://asu.cas.cz/stel/ccd700/<file stem>``; the original
  IRAF files name themselves in ``FILENAME`` (``tg160037.fit``), the DataLink
  products carry the DID in ``DS_IDPUB``.
* Wavelengths are air wavelengths (the DataLink column says "Air wavelength").
* ``RA``/``DEC`` in the IRAF headers are catalogue (J2000) positions although
  ``EQUINOX`` holds the date of observation: V509 Cas has the same RA/DEC in
  tg160037 (``EQUINOX = 2010.54``) as in the archive's ICRS DataLink product of
  ue130025 observed a year later. So they are read as ICRS, not precessed.
* The archive's time stamps ``TMID`` and ``ssa_dateObs`` are the exposure start,
  not its middle: for tg160037 ``ssa_dateObs`` equals ``DATE-OBS`` + ``UT`` of the
  original, and ``TMID`` falls on a whole second in all 26 DataLink products,
  also where ``TELAPSE`` is odd or fractional (7340.38 s).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from .model import Medium

__all__ = [
    "CCD700_COLLECTION",
    "CCD700_DID_PREFIX",
    "CCD700_FACILITY",
    "CCD700_INSTRUMENT",
    "CCD700_MEDIUM",
    "ccd700_did",
    "is_ccd700_did",
    "is_ccd700_header",
]

CCD700_DID_PREFIX = "ivo://asu.cas.cz/stel/ccd700/"
"""Publisher DIDs of the CCD700 archive end with the file stem."""

CCD700_FACILITY = "Ondrejov 2m"
"""ObsCore facility_name of the Perek 2m telescope."""

CCD700_INSTRUMENT = "CCD700"
"""ObsCore instrument_name: the Coudé spectrograph's 700 mm camera."""

CCD700_COLLECTION = "ccd700"
"""ObsCore obs_collection, as in the archive's own DIDs."""

CCD700_MEDIUM = Medium.AIR
"""The archive's wavelengths are air wavelengths."""


def is_ccd700_header(observatory: str | None, instrument: str | None) -> bool:
    """Whether ``OBSERVAT``/``INSTRUME`` name the Ondřejov Coudé 700 mm setup (``ONDREJOV``, ``COUDE700``)."""
    return (observatory or "").upper() == "ONDREJOV" and (instrument or "").upper().startswith("COUDE700")


def ccd700_did(filename: str) -> str:
    """The archive's DID of an original CCD700 file: ``tg160037.fit`` → ``ivo://asu.cas.cz/stel/ccd700/tg160037``."""
    return CCD700_DID_PREFIX + PurePosixPath(filename.strip()).name.split(".", 1)[0]


def is_ccd700_did(did: str | None) -> bool:
    """Whether a DID belongs to the CCD700 archive (its products share the conventions above)."""
    return did is not None and did.startswith(CCD700_DID_PREFIX)
