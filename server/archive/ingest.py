"""Adding one spectrum file to the archive: read it, store the original bytes, add its row.

Runs in worker processes (no web stack). The stored file is content-addressed
(``files/<aa>/<sha256>.<ext>``): a name made here, never taken from the
source, and writing it twice is harmless. The metadata row is added in one
transaction after the file is complete, so a failure never leaves a row
without its file, and a publisher DID that is already archived is reported as
a duplicate and changes nothing.
"""

from __future__ import annotations

import enum
import hashlib
import os
import tempfile
from dataclasses import dataclass

from ..spectra.readers import SpectrumFormat, SpectrumFormatError, read_spectrum, sniff_format
from .service import Archive

__all__ = ["IngestOutcome", "IngestStatus", "ingest_bytes", "media_type"]

_MEDIA_TYPES = {
    SpectrumFormat.FITS: "application/fits",
    SpectrumFormat.VOTABLE: "application/x-votable+xml",
    SpectrumFormat.TEXT: "text/plain",
    SpectrumFormat.GZIP: "application/gzip",
}
_EXTENSIONS = {
    "application/fits": ".fits",
    "application/x-votable+xml": ".vot",
    "text/plain": ".txt",
    "application/gzip": ".gz",
}


class IngestStatus(enum.StrEnum):
    """What happened to one source."""

    ADDED = "added"
    DUPLICATE = "duplicate"
    """Its publisher DID was already archived; nothing changed."""
    FAILED = "failed"
    """It could not be read or stored; nothing was archived."""


@dataclass(frozen=True, kw_only=True)
class IngestOutcome:
    """The report line of one source."""

    source: str
    status: IngestStatus
    publisher_did: str | None = None
    message: str = ""


def media_type(data: bytes) -> str:
    """The media type an original file is served with."""
    return _MEDIA_TYPES[sniff_format(data)]


def ingest_bytes(archive: Archive, data: bytes, *, source: str) -> IngestOutcome:
    """Archive one spectrum file given as bytes.

    Parameters
    ----------
    archive
        The archive to add to.
    data
        The file's content.
    source
        Where it came from (a URL, an uploaded file's name); only reported and
        stored as provenance, never used as a path.
    """
    try:
        spectrum = read_spectrum(data, name=source)
    except SpectrumFormatError as e:
        return IngestOutcome(source=source, status=IngestStatus.FAILED, message=str(e))
    did = spectrum.meta.publisher_did
    if archive.store.get(did) is not None:
        return IngestOutcome(source=source, status=IngestStatus.DUPLICATE, publisher_did=did)
    mime = media_type(data)
    digest = hashlib.sha256(data).hexdigest()
    relative = f"{digest[:2]}/{digest}{_EXTENSIONS[mime]}"
    try:
        _write_once(archive, relative, data)
        _, created = archive.store.add(
            spectrum.meta,
            em_min=spectrum.em_min,
            em_max=spectrum.em_max,
            n_points=len(spectrum.wavelength),
            access_format=mime,
            size=len(data),
            file=relative,
            source=source,
        )
    except OSError as e:
        return IngestOutcome(source=source, status=IngestStatus.FAILED, publisher_did=did, message=f"Not stored: {e}")
    status = IngestStatus.ADDED if created else IngestStatus.DUPLICATE
    return IngestOutcome(source=source, status=status, publisher_did=did)


def _write_once(archive: Archive, relative: str, data: bytes) -> None:
    target = archive.files_dir / relative
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
