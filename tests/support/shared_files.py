"""The real spectra of ../shared/data that several test modules read."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SHARED_DATA

__all__ = ["shared_fits_files"]


def shared_fits_files() -> list[Path]:
    """Every FITS file under shared/data, relative to it and sorted; empty when shared/data is absent."""
    if not SHARED_DATA.is_dir():
        return []
    return sorted(path.relative_to(SHARED_DATA) for path in SHARED_DATA.rglob("*.fit*"))
