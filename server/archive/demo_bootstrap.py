"""Filling an empty archive with the demo archive, so a new server has spectra to show.

Runs once, when ``vocloud serve`` starts on an empty archive with
``demo_spectra`` > 0: the seeded generator writes its files under the data
directory (``demo/``, with the true labels the simulated expert uses later),
and each file is archived as an ``ingest`` job would.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..spectra.demo import generate_demo_archive
from .ingest import IngestStatus, ingest_bytes
from .service import Archive

__all__ = ["DEMO_SEED", "fill_with_demo"]

DEMO_SEED = 0
"""Seed of the demo archive a server generates (``vocloud demo-data`` uses the same default)."""

_log = logging.getLogger(__name__)


def fill_with_demo(archive: Archive, out_dir: Path, *, count: int) -> int:
    """Generate ``count`` demo spectra into ``out_dir`` unless there, archive them; returns how many were added."""
    spectra_dir = out_dir / "spectra"
    # labels.csv is written last: without it an earlier generation was interrupted.
    if not (out_dir / "labels.csv").is_file():
        summary = generate_demo_archive(out_dir, count=count, seed=DEMO_SEED, overwrite=True)
        _log.info("Generated %d demo spectra in %.1f s", summary.count, summary.seconds)
    added = 0
    for path in sorted(spectra_dir.iterdir()):
        outcome = ingest_bytes(archive, path.read_bytes(), source=f"demo/{path.name}")
        if outcome.status == IngestStatus.ADDED:
            added += 1
        elif outcome.status == IngestStatus.FAILED:
            _log.warning("Demo spectrum %s not archived: %s", path.name, outcome.message)
    _log.info("Archived %d demo spectra", added)
    return added
